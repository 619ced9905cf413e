"""The real node's configuration without a cluster: names and addresses per slot, the kubelet/containerd/CNI/
kube-proxy/CoreDNS configs, process argv, labels, manifests, the dry-run plan and the CLI wiring."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from aiconf.sandbox import cluster, images, realnode
from aiconf.sandbox.cli import sandbox as sandbox_cli

STATE = Path("/state")
BINS = {"kubelet": Path("/bin/kubelet"), "kube-proxy": Path("/bin/kube-proxy"), "coredns": Path("/bin/coredns")}


def make_cfg(slot: int = 3, **spec) -> realnode.RealNodeConfig:
    return realnode.RealNodeConfig(state_dir=STATE, slot=slot, apiserver_port=40000,
                                   service_cidr=f"10.96.{slot * 16}.0/20", bins=BINS,
                                   spec=realnode.RealNodeSpec(**spec), dns_ports=(40001, 40002),
                                   python="/venv/bin/python")


@pytest.fixture
def cfg() -> realnode.RealNodeConfig:
    return make_cfg()


def test_slot_follows_the_sandbox_cidr_pair():
    assert realnode.slot_of("10.99.0.0/20") == 0
    assert realnode.slot_of("10.99.48.0/20") == 3
    assert realnode.slot_of("10.99.240.0/20") == 15


@pytest.mark.parametrize("slot", [0, 7, 15])
def test_names_and_addresses_are_per_slot_and_inside_the_sandbox_ranges(slot):
    c = make_cfg(slot)
    assert c.netns == f"aiconf-node-{slot}"
    assert len(c.veth_host) <= 15 and len(c.veth_node) <= 15 and c.veth_host != c.veth_node
    link = ipaddress.ip_network(c.link_cidr)
    assert link.prefixlen == 30 and ipaddress.ip_address(c.host_ip) in link and ipaddress.ip_address(c.node_ip) in link
    assert ipaddress.ip_network(c.pod_cidr).subnet_of(ipaddress.ip_network("10.244.0.0/16"))
    assert ipaddress.ip_address(c.pod_gateway) in ipaddress.ip_network(c.pod_cidr)
    assert c.cgroup_root.startswith(f"/aiconf-node-{slot}-")
    assert c.service_ip == f"10.96.{slot * 16}.1"


def test_two_slots_share_nothing():
    a, b = make_cfg(1), make_cfg(2)
    for attr in ("netns", "veth_host", "veth_node", "host_ip", "node_ip", "pod_cidr", "cgroup_root", "cni_network"):
        assert getattr(a, attr) != getattr(b, attr), attr


def test_kubelet_config_fits_this_host(cfg):
    k = realnode.kubelet_config(cfg)
    assert k["failCgroupV1"] is False and k["cgroupDriver"] == "cgroupfs"
    assert k["cgroupRoot"] == cfg.cgroup_root
    assert k["protectKernelDefaults"] is True  # never writes the shared VM's kernel tunables
    assert k["address"] == k["healthzBindAddress"] == cfg.node_ip
    assert k["readOnlyPort"] == 0 and k["authentication"]["anonymous"]["enabled"] is False
    assert k["authorization"]["mode"] == "Webhook"
    assert k["containerRuntimeEndpoint"] == f"unix://{cfg.containerd_sock}"
    assert k["imageGCHighThresholdPercent"] == 100
    assert k["clusterDNS"] == [cfg.host_ip]
    assert "clusterDNS" not in realnode.kubelet_config(make_cfg(dns=False))
    assert str(STATE) in k["tlsCertFile"] and str(STATE) in k["podLogsDir"]


def test_kernel_tunables_are_the_kubelets_own():
    # The kubelet checks exactly these (container_manager_linux.go setupKernelTunables); with
    # protectKernelDefaults a mismatch is fatal, so the faked values must be the ones it wants.
    assert realnode.KERNEL_TUNABLES == {
        "vm/overcommit_memory": "1", "vm/panic_on_oom": "0", "kernel/panic": "10", "kernel/panic_on_oops": "1",
        "kernel/keys/root_maxkeys": "1000000", "kernel/keys/root_maxbytes": "25000000",
    }


def test_containerd_config_keeps_state_in_the_node_dir(cfg):
    text = realnode.containerd_config_text(cfg)
    assert "restrict_oom_score_adj = true" in text
    assert "SystemdCgroup = false" in text
    assert f'sandbox_image = "{images.PAUSE}"' in text
    assert f'bin_dir = "{realnode.CNI_BIN_DIR}"' in text
    assert "netns_mounts_under_state_dir = true" in text
    assert '"io.containerd.internal.v1.opt"' in text  # would create /opt/containerd on the host
    paths = re.findall(r'^\s*(?:root|state|address|conf_dir) = "([^"]+)"', text, re.M)
    assert paths and all(p.startswith(str(cfg.node_dir)) for p in paths), paths


def test_cni_conflist_gives_pods_a_default_route_via_the_node(cfg):
    conf = realnode.cni_conflist(cfg)
    bridge = conf["plugins"][0]
    assert bridge["type"] == "bridge" and bridge["bridge"] == cfg.bridge
    assert bridge["isDefaultGateway"] is True and bridge["ipMasq"] is False
    ipam = bridge["ipam"]
    assert ipam["ranges"] == [[{"subnet": cfg.pod_cidr, "gateway": cfg.pod_gateway}]]
    assert ipam["dataDir"] == str(cfg.cni_ipam_dir)
    assert conf["name"] == cfg.cni_network


def test_kube_proxy_leaves_conntrack_sysctls_alone(cfg):
    k = realnode.kube_proxy_config(cfg)
    assert k["mode"] == "iptables" and k["clusterCIDR"] == cfg.pod_cidr
    assert k["conntrack"]["maxPerCore"] == 0 and k["conntrack"]["min"] == 0
    assert k["healthzBindAddress"].startswith(cfg.node_ip + ":")
    assert k["nodePortAddresses"] == [f"{cfg.node_ip}/32"]
    assert k["clientConnection"]["kubeconfig"] == str(cfg.kubeconfig("kube-proxy"))


def test_corefile_serves_cluster_names_only(cfg):
    text = realnode.corefile_text(cfg, STATE / "kubeconfig")
    assert f"bind {cfg.host_ip}" in text
    assert not re.search(r"^\s*forward\b", text, re.M)  # nothing outside cluster.local is ever sent anywhere
    assert "health 127.0.0.1:40001" in text and "ready 127.0.0.1:40002" in text
    assert "nameserver " + cfg.host_ip in realnode.resolv_conf_text(cfg)
    assert "nameserver" not in realnode.resolv_conf_text(make_cfg(dns=False))


def test_node_processes_run_in_the_node_namespaces(cfg):
    procs = {p.name: p for p in realnode.processes(cfg)}
    assert list(procs) == ["node-apiserver-proxy", "containerd", "kubelet", "gpu-device-plugin", "kube-proxy",
                           "coredns"]
    for name in ("containerd", "kubelet", "gpu-device-plugin", "kube-proxy"):
        argv = procs[name].argv
        assert argv[:4] == ["nsenter", f"--net=/run/netns/{cfg.netns}", f"--mount={cfg.mnt_ns}", "--"], name
        assert procs[name].netns is None  # the runtime must not wrap it again
    kubelet = procs["kubelet"].argv
    assert f"--node-ip={cfg.node_ip}" in kubelet and "--root-dir=/var/lib/kubelet" in kubelet
    assert realnode.kubelet_config(cfg)["registerWithTaints"] == [
        {"key": "sandbox.aiconf.io/real-node", "value": "true", "effect": "NoSchedule"}]
    assert "registerWithTaints" not in realnode.kubelet_config(make_cfg(taint=False))
    relay = procs["node-apiserver-proxy"].argv
    assert f"--listen={cfg.host_ip}:40000" in relay and "--to=127.0.0.1:40000" in relay
    assert "gpu-device-plugin" not in {p.name for p in realnode.processes(make_cfg(gpus=0))}
    assert "coredns" not in {p.name for p in realnode.processes(make_cfg(dns=False))}


def test_every_address_is_loopback_or_the_sandbox_own(cfg):
    """The network rule: servers on 127.0.0.1 or on addresses the sandbox made (veth, bridge, pod range)."""
    allowed = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network(cfg.link_cidr),
               ipaddress.ip_network(cfg.pod_cidr)]
    texts = [" ".join(p.argv) for p in realnode.processes(cfg)]
    texts += [str(realnode.kubelet_config(cfg)), str(realnode.kube_proxy_config(cfg)),
              realnode.corefile_text(cfg, STATE / "kc"), realnode.containerd_config_text(cfg)]
    for text in texts:
        assert "0.0.0.0" not in text
        for ip in re.findall(r"\b(\d+\.\d+\.\d+\.\d+)(?:[:/]\d+)?", text):
            addr = ipaddress.ip_address(ip)
            assert any(addr in n for n in allowed), (ip, text[:120])


def test_kubelet_sets_only_labels_node_restriction_allows(cfg):
    labels = realnode.node_labels(cfg)
    assert labels["sandbox.aiconf.io/node"] == labels[realnode.REAL_NODE_LABEL] == "true"
    assert labels["nvidia.com/gpu.present"] == "true" and labels["nvidia.com/gpu.count"] == "2"
    assert labels["feature.node.kubernetes.io/pci-10de.present"] == "true"
    settable = realnode.kubelet_settable_labels(labels)
    assert "feature.node.kubernetes.io/pci-10de.present" not in settable  # set by the admin afterwards
    assert settable["node.kubernetes.io/instance-type"] == "sandbox-real-gpu-2x"
    assert "nvidia.com/gpu.present" in settable
    no_gpu = realnode.node_labels(make_cfg(gpus=0))
    assert "nvidia.com/gpu.present" not in no_gpu and no_gpu[realnode.REAL_NODE_LABEL] == "true"


def test_dcgm_manifests_are_labelled_as_a_simulation_and_pinned_to_the_node(cfg):
    ns, ds, svc = realnode.dcgm_manifests(cfg)
    assert ns["kind"] == "Namespace" and ds["kind"] == "DaemonSet" and svc["kind"] == "Service"
    tmpl = ds["spec"]["template"]
    assert tmpl["metadata"]["labels"]["sandbox.aiconf.io/simulated"] == "true"
    assert "SIMULATED" in tmpl["metadata"]["annotations"]["sandbox.aiconf.io/note"]
    c = tmpl["spec"]["containers"][0]
    assert c["image"] == images.PYTHON and c["imagePullPolicy"] == "Never"
    assert c["command"][:3] == ["python3", "-m", "aiconf.workloads.dcgm_sim"]
    assert tmpl["spec"]["nodeSelector"] == {realnode.REAL_NODE_LABEL: "true"}
    assert tmpl["spec"]["volumes"][0]["hostPath"]["path"] == str(cfg.gpu_dir)
    assert svc["spec"]["ports"][0]["port"] == realnode.DCGM_PORT == 9400


def test_kubernetes_endpointslice_points_at_the_relay(cfg):
    es = realnode.kubernetes_endpointslice(cfg)
    assert es["metadata"]["labels"]["kubernetes.io/service-name"] == "kubernetes"
    assert es["endpoints"][0]["addresses"] == [cfg.host_ip]
    assert es["ports"] == [{"name": "https", "port": 40000, "protocol": "TCP"}]


def test_plan_lists_the_node_without_touching_anything(tmp_path):
    sb = cluster.Sandbox(tmp_path / "sb", progress=lambda m: None)
    lines = sb.plan(gpu_nodes=1, cpu_nodes=0, real_node=True)
    text = "\n".join(lines)
    assert "real node sandbox-real-0: netns aiconf-node-0" in text
    assert "start kubelet: nsenter --net=/run/netns/aiconf-node-0" in text
    assert "route replace 10.96.0.0/20 via 10.200.0.2" in text
    assert "real node" not in "\n".join(sb.plan(gpu_nodes=1, cpu_nodes=0))
    assert not (tmp_path / "sb").exists()


def test_cli_plan_has_real_node_switches(tmp_path):
    runner = CliRunner()
    on = runner.invoke(sandbox_cli, ["--state-dir", str(tmp_path / "s"), "plan", "--no-addons", "--real-node",
                                     "--real-node-gpus", "3"])
    assert on.exit_code == 0, on.output
    assert "--count=3" in on.output and "sandbox-real-0" in on.output
    off = runner.invoke(sandbox_cli, ["--state-dir", str(tmp_path / "s"), "plan", "--no-addons", "--no-real-node"])
    assert off.exit_code == 0 and "sandbox-real-0" not in off.output


def test_teardown_of_nothing_is_a_no_op():
    assert realnode.teardown(None) == []
    assert realnode.teardown({}) == []


def test_time_sliced_gpus_are_labelled_as_gfd_does_and_passed_to_the_plugin():
    shared = make_cfg(gpus=2, gpu_replicas=3)
    labels = realnode.node_labels(shared)
    assert labels["nvidia.com/gpu.count"] == "2"  # the physical count stays
    assert labels["nvidia.com/gpu.replicas"] == "3"
    assert labels["nvidia.com/gpu.sharing-strategy"] == "time-slicing"
    assert labels["nvidia.com/gpu.product"].endswith("-SHARED")
    assert shared.spec.gpu_units == 6
    argv = {p.name: p.argv for p in realnode.processes(shared)}["gpu-device-plugin"]
    assert "--replicas=3" in argv
    assert any("nvidia.com/gpu: 6" in line for line in realnode.plan_lines(shared))
    # Unshared (the default): no replica argument, no sharing labels changed.
    plain = make_cfg()
    assert not any(a.startswith("--replicas") for a in {p.name: p.argv for p in realnode.processes(plain)}[
        "gpu-device-plugin"])
    assert realnode.node_labels(plain)["nvidia.com/gpu.sharing-strategy"] == "none"
    with pytest.raises(Exception, match="replicas"):
        realnode.RealNodeSpec(gpu_replicas=0).validate()


def test_cli_has_the_replicas_switch(tmp_path):
    out = CliRunner().invoke(sandbox_cli, ["--state-dir", str(tmp_path), "plan", "--no-addons",
                                           "--real-node-gpu-replicas", "2"])
    assert out.exit_code == 0, out.output
    assert "--replicas=2" in out.output and "nvidia.com/gpu: 4" in out.output
