"""Sandbox specs without a cluster: process argv, the dry-run plan (golden), PKI, node manifests, CLI wiring.

Regenerate the plan golden with ``AICONF_UPDATE_GOLDENS=1 pytest tests/sandbox``.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from ruamel.yaml import YAML

from aiconf.errors import SandboxError
from aiconf.sandbox import cluster, components, nodes, pki
from aiconf.sandbox.addon import Process
from aiconf.sandbox.cli import sandbox as sandbox_cli

GOLDENS = Path(__file__).parent / "goldens"
STATE = Path("/state")
PORTS = components.Ports(etcd_client=30001, etcd_peer=30002, apiserver=30003, controller_manager=30004,
                         scheduler=30005, kwok=30006)
BINS = {b: Path("/bin") / b for b in cluster.CORE_BINARIES}


@pytest.fixture
def cfg() -> components.ClusterConfig:
    return components.ClusterConfig(state_dir=STATE, bins=BINS, ports=PORTS)


def flags(proc: Process) -> dict[str, str]:
    return dict(a[2:].split("=", 1) for a in proc.argv[1:] if a.startswith("--") and "=" in a)


# --- process specs ---------------------------------------------------------------------------------------------


def test_core_processes_start_in_dependency_order(cfg):
    procs = components.core(cfg)
    assert [p.name for p in procs] == list(components.CORE_ORDER)
    ordered = cluster._topological(list(reversed(procs)), running=())
    seen: set[str] = set()
    for p in ordered:
        assert set(p.depends_on) <= seen, p.name
        seen.add(p.name)


def test_every_listener_is_loopback(cfg):
    for proc in components.core(cfg):
        text = " ".join(proc.argv)
        assert "0.0.0.0" not in text, proc.name
        for url in re.findall(r"(?:https?://)?(\d+\.\d+\.\d+\.\d+):\d+", text):
            assert url == "127.0.0.1", (proc.name, url)
        assert getattr(proc.ready, "url", "").startswith(("http://127.0.0.1:", "https://127.0.0.1:")), proc.name


def test_etcd_is_unsynced_and_on_chosen_ports(cfg):
    f = flags(components.etcd(cfg))
    assert f["unsafe-no-fsync"] == "true"
    assert f["listen-client-urls"] == "http://127.0.0.1:30001"
    assert f["listen-peer-urls"] == "http://127.0.0.1:30002"
    assert f["data-dir"] == "/state/etcd"


def test_apiserver_binds_loopback_and_enables_aggregation(cfg):
    f = flags(components.apiserver(cfg))
    assert f["bind-address"] == "127.0.0.1"
    assert f["advertise-address"] == "127.0.0.1"
    # A loopback advertise address would be written into the kubernetes EndpointSlice, which validation rejects.
    assert f["endpoint-reconciler-type"] == "none"
    assert f["secure-port"] == "30003"
    assert f["etcd-servers"] == "http://127.0.0.1:30001"
    assert f["authorization-mode"] == "Node,RBAC"
    assert f["service-cluster-ip-range"] == "10.96.0.0/20"
    assert f["requestheader-allowed-names"] == "front-proxy-client"
    assert f["proxy-client-cert-file"].endswith("front-proxy-client.crt")
    assert f["requestheader-client-ca-file"].endswith("front-proxy-ca.crt")
    # ExternalName Services (-> 127.0.0.1) back APIServices only with aggregator routing off.
    assert f["enable-aggregator-routing"] == "false"
    assert f["cert-dir"].startswith("/state/")  # never /var/run/kubernetes


def test_controller_manager_flags(cfg):
    f = flags(components.controller_manager(cfg))
    assert f["leader-elect"] == "false"
    assert f["controllers"] == "*"
    assert f["use-service-account-credentials"] == "true"
    assert f["horizontal-pod-autoscaler-sync-period"] == "5s"
    assert f["kubeconfig"] == "/state/kubeconfigs/kube-controller-manager.kubeconfig"
    assert f["bind-address"] == "127.0.0.1"


def test_scheduler_flags(cfg):
    f = flags(components.scheduler(cfg))
    assert f["leader-elect"] == "false"
    assert f["secure-port"] == "30005"
    assert f["bind-address"] == "127.0.0.1"


def test_kwok_manages_annotated_nodes_with_fenced_cidr(cfg):
    proc = components.kwok(cfg)
    f = flags(proc)
    assert f["manage-nodes-with-annotation-selector"] == "kwok.x-k8s.io/node=fake"
    assert f["cidr"] == cfg.pod_cidr
    assert f["server-address"] == "127.0.0.1:30006"
    assert f["node-ip"] == "127.0.0.1"
    assert f["node-port"] == "30006"
    assert int(f["node-lease-duration-seconds"]) > 0
    assert proc.env["KWOK_WORKDIR"] == "/state/kwok"


def test_service_ip_is_first_address_of_range(cfg):
    assert cfg.service_ip == "10.96.0.1"
    other = components.ClusterConfig(state_dir=STATE, bins=BINS, ports=PORTS, service_cidr="10.96.32.0/20")
    assert other.service_ip == "10.96.32.1"


def test_missing_binary_is_named():
    c = components.ClusterConfig(state_dir=STATE, bins={}, ports=PORTS)
    with pytest.raises(KeyError, match="etcd"):
        components.etcd(c)


def test_kwok_config_has_lifecycle_stages_and_delayed_completion():
    docs = [d for d in YAML(typ="safe", pure=True).load_all(components.kwok_config_text()) if d]
    stages = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Stage"}
    assert set(stages) == {"node-initialize", "node-heartbeat-with-lease", "pod-ready", "pod-complete", "pod-delete"}
    delay = stages["pod-complete"]["spec"]["delay"]
    assert delay["durationMilliseconds"] == 1000
    assert "pod-complete.stage.kwok.x-k8s.io/delay" in delay["durationFrom"]["expressionFrom"]
    assert {d["kind"] for d in docs} == {"Stage", "Metric", "ClusterResourceUsage"}


# --- plan golden -------------------------------------------------------------------------------------------------


def test_plan_matches_golden(cfg):
    lines = cluster.plan_lines(cfg, nodes.NodeSpec())
    text = "\n".join(lines) + "\n"
    golden = GOLDENS / "plan.txt"
    if os.environ.get("AICONF_UPDATE_GOLDENS"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text)
    assert text == golden.read_text()


def test_plan_has_no_side_effects(tmp_path):
    sb = cluster.Sandbox(tmp_path / "sb", cache_root=tmp_path / "cache", progress=lambda m: None)
    lines = sb.plan(gpu_nodes=1, cpu_nodes=1)
    assert not (tmp_path / "sb").exists()
    assert not (tmp_path / "cache").exists()
    assert any(line.startswith("start kube-apiserver: ") for line in lines)
    assert any("not cached yet" in line for line in lines)


# --- PKI ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    pki.create_pki(d)
    return d


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_apiserver_cert_sans(pki_dir):
    san = load(pki_dir / "apiserver.crt").extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {
        "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    }
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("10.96.0.1"),
    }


def test_client_identities(pki_dir):
    def subject(name):
        s = load(pki_dir / f"{name}.crt").subject
        return (s.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value,
                [a.value for a in s.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)])

    assert subject("admin") == ("kubernetes-admin", ["system:masters"])
    assert subject("kube-controller-manager") == ("system:kube-controller-manager", [])
    assert subject("kube-scheduler") == ("system:kube-scheduler", [])
    assert subject("front-proxy-client")[0] == "front-proxy-client"
    eku = load(pki_dir / "admin.crt").extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_certs_chain_to_their_ca(pki_dir):
    ca, fp = load(pki_dir / "ca.crt"), load(pki_dir / "front-proxy-ca.crt")
    for name in ("apiserver", "admin", "kwok", "apiserver-kubelet-client", "kwok-serving"):
        load(pki_dir / f"{name}.crt").verify_directly_issued_by(ca)
    load(pki_dir / "front-proxy-client.crt").verify_directly_issued_by(fp)
    with pytest.raises(ValueError):
        load(pki_dir / "front-proxy-client.crt").verify_directly_issued_by(ca)


def test_keys_are_private(pki_dir):
    for key in pki_dir.glob("*.key"):
        assert key.stat().st_mode & 0o077 == 0, key.name


def test_issue_cert_for_addon(pki_dir, tmp_path):
    crt, key = pki.issue_cert(tmp_path, "webhook", ca_cert=pki_dir / "ca.crt", ca_key=pki_dir / "ca.key",
                              dns_names=["svc.ns.svc"], ip_addresses=["127.0.0.1"])
    cert = load(crt)
    cert.verify_directly_issued_by(load(pki_dir / "ca.crt"))
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    assert key.is_file()


def test_kubeconfig_embeds_credentials(pki_dir, tmp_path):
    path = pki.write_kubeconfig(tmp_path / "kc", "https://127.0.0.1:1", pki_dir / "ca.crt", pki_dir / "admin.crt",
                                pki_dir / "admin.key", user="admin")
    kc = json.loads(path.read_text())
    assert kc["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:1"
    assert kc["users"][0]["user"]["client-key-data"]
    assert path.stat().st_mode & 0o077 == 0


def test_sandbox_refuses_to_overwrite_core_certs(tmp_path):
    sb = cluster.Sandbox(tmp_path, progress=lambda m: None)
    with pytest.raises(SandboxError, match="control-plane certificate"):
        sb.issue_cert("apiserver", dns_names=["x"])


# --- nodes -------------------------------------------------------------------------------------------------------


def test_gpu_nodes_look_like_gpu_operator_nodes():
    spec = nodes.NodeSpec(gpu_nodes=2, gpus_per_node=4, cpu_nodes=1)
    ns = nodes.nodes(spec)
    assert [n["metadata"]["name"] for n in ns] == ["sandbox-gpu-0", "sandbox-gpu-1", "sandbox-cpu-0"]
    gpu = ns[0]
    labels = gpu["metadata"]["labels"]
    assert gpu["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
    assert gpu["status"]["allocatable"]["nvidia.com/gpu"] == "4"
    assert gpu["status"]["capacity"]["nvidia.com/gpu"] == "4"
    for key, value in {
        "nvidia.com/gpu.present": "true", "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
        "nvidia.com/gpu.count": "4", "nvidia.com/gpu.memory": "81559", "nvidia.com/gpu.family": "hopper",
    }.items():
        assert labels[key] == value
    for key in ("nvidia.com/cuda.driver.major", "nvidia.com/cuda.driver.minor", "nvidia.com/cuda.driver.rev",
                "nvidia.com/cuda.runtime.major", "nvidia.com/cuda.runtime.minor", "node.kubernetes.io/instance-type"):
        assert labels[key]
    assert "taints" not in gpu["spec"]
    cpu = ns[2]
    assert "nvidia.com/gpu" not in cpu["status"]["capacity"]
    assert not any(k.startswith("nvidia.com/") for k in cpu["metadata"]["labels"])


def test_gpu_taint_is_optional():
    gpu = nodes.nodes(nodes.NodeSpec(gpu_taint=True))[0]
    assert gpu["spec"]["taints"] == [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]


def test_dra_slices_publish_each_gpu():
    spec = nodes.NodeSpec(gpu_nodes=2, gpus_per_node=3)
    objs = nodes.dra_objects(spec)
    dc, slices = objs[0], objs[1:]
    assert dc["kind"] == "DeviceClass" and dc["metadata"]["name"] == "gpu.sandbox.aiconf.io"
    assert dc["spec"]["selectors"][0]["cel"]["expression"] == 'device.driver == "gpu.sandbox.aiconf.io"'
    assert [s["spec"]["nodeName"] for s in slices] == ["sandbox-gpu-0", "sandbox-gpu-1"]
    devices = slices[0]["spec"]["devices"]
    assert len(devices) == 3
    assert set(devices[0]["attributes"]) >= {"productName", "uuid", "index", "architecture"}
    assert devices[0]["capacity"]["memory"]["value"] == "80Gi"
    uuids = {d["attributes"]["uuid"]["string"] for s in slices for d in s["spec"]["devices"]}
    assert len(uuids) == 6
    assert nodes.dra_objects(nodes.NodeSpec(gpu_nodes=0, cpu_nodes=1)) == []


@pytest.mark.parametrize("kwargs", [dict(gpu_nodes=0, cpu_nodes=0), dict(gpus_per_node=0), dict(cpu_nodes=-1)],
                         ids=["no-nodes", "zero-gpus", "negative"])
def test_bad_node_counts_are_config_errors(kwargs):
    from aiconf.errors import ConfigError

    with pytest.raises(ConfigError):
        nodes.NodeSpec(**kwargs).validate()


# --- runtime helpers ---------------------------------------------------------------------------------------------


def test_dependency_cycle_and_unknown_dependency_are_errors():
    a = Process("a", ["x"], depends_on=("b",))
    b = Process("b", ["x"], depends_on=("a",))
    with pytest.raises(SandboxError, match="cycle"):
        cluster._topological([a, b], running=())
    with pytest.raises(SandboxError, match="nothing starts"):
        cluster._topological([Process("c", ["x"], depends_on=("zzz",))], running=())
    assert [p.name for p in cluster._topological([a], running=("b",))] == ["a"]


def test_recycled_pid_is_not_ours():
    me = os.getpid()
    assert cluster.is_alive(me, cluster.proc_start_time(me))
    assert not cluster.is_alive(me, cluster.proc_start_time(me) + 1)
    assert not cluster.is_alive(None, None)


def test_free_ports_are_distinct():
    taken: set[int] = set()
    ports = [cluster._free_port(taken) for _ in range(20)]
    assert len(set(ports)) == 20


def test_down_without_sandbox_is_a_no_op(tmp_path):
    sb = cluster.Sandbox(tmp_path / "nothing", progress=lambda m: None)
    assert sb.down() == {"stopped": [], "routes_removed": []}
    assert sb.status()["state"] == "absent"


def test_default_state_dir_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("AICONF_SANDBOX_DIR", str(tmp_path / "x"))
    assert cluster.default_state_dir() == tmp_path / "x"
    monkeypatch.delenv("AICONF_SANDBOX_DIR")
    assert cluster.default_state_dir() == Path.home() / ".local" / "share" / "aiconf" / "sandbox"


# --- CLI ---------------------------------------------------------------------------------------------------------


def test_cli_plan_and_kubeconfig(tmp_path):
    runner = CliRunner()
    res = runner.invoke(sandbox_cli, ["--state-dir", str(tmp_path / "sb"), "plan", "--no-addons", "--gpu-nodes", "1"])
    assert res.exit_code == 0, res.output
    assert "start etcd: " in res.output and "sandbox-gpu-0" in res.output
    res = runner.invoke(sandbox_cli, ["--state-dir", str(tmp_path / "sb"), "kubeconfig"])
    assert res.output.strip() == str(tmp_path / "sb" / "kubeconfig")
    assert not (tmp_path / "sb").exists()


def test_cli_errors_are_one_line_exit_2(tmp_path):
    res = CliRunner().invoke(sandbox_cli, ["--state-dir", str(tmp_path), "logs", "nope"])
    assert res.exit_code == 2
    assert res.output.startswith("error: no log for 'nope'") and res.output.count("\n") == 1


def test_cli_unknown_addon_is_config_error(tmp_path):
    res = CliRunner().invoke(sandbox_cli, ["--state-dir", str(tmp_path), "plan", "--addons", "no-such-addon"])
    assert res.exit_code == 2
    assert "unknown add-on" in res.output


def test_cli_status_absent_exits_1(tmp_path):
    res = CliRunner().invoke(sandbox_cli, ["--state-dir", str(tmp_path / "none"), "status"])
    assert res.exit_code == 1
    assert "state: absent" in res.output


def test_python_dash_m_entry_point(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "aiconf.sandbox", "--state-dir", str(tmp_path), "kubeconfig"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(tmp_path / "kubeconfig")
