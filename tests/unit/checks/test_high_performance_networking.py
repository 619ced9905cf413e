"""high_performance_networking without a cluster: NIC discovery rules, the probe's log, manifests, and whole runs
against a fake client whose "scheduler" is either honest (binds a claim only where a capable NIC is published) or
broken (ignores the claim's selector), with pods on simulated or real nodes."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import pytest

from aiconf.checks import high_performance_networking as hpn
from aiconf.errors import WaitTimeout
from aiconf.execute import run_check
from aiconf.model import Verdict
from aiconf.params import load_parameters

NIC_DRIVER = "nic.example.com"


def nic(name: str, *, rdma: bool | None = True, standard: bool = True, if_name: bool = True) -> dict:
    attrs: dict[str, Any] = {}
    if if_name:
        attrs["ifName"] = {"string": name.replace("nic", "eth")}
    if rdma is not None:
        attrs["rdma"] = {"bool": rdma}
    if standard:
        attrs["resource.kubernetes.io/pciBusID"] = {"string": "0000:3b:00.0"}
        attrs["resource.kubernetes.io/numaNode"] = {"int": 0}
    return {"name": name, "attributes": attrs}


def rslice(node: str, driver: str, devices: list[dict]) -> dict:
    return {
        "metadata": {"name": f"{node}-{driver}"},
        "spec": {"driver": driver, "nodeName": node, "pool": {"name": node}, "devices": devices},
    }


def gpu_slice(node: str) -> dict:
    return rslice(node, "gpu.example.com", [{"name": "gpu-0", "attributes": {"productName": {"string": "H100"}}}])


def device_class(name: str, driver: str) -> dict:
    return {
        "metadata": {"name": name},
        "spec": {"selectors": [{"cel": {"expression": f'device.driver == "{driver}"'}}]},
    }


def node(name: str, *, kwok: bool = True, allocatable: dict | None = None) -> dict:
    ann = {"kwok.x-k8s.io/node": "fake"} if kwok else {}
    return {"metadata": {"name": name, "annotations": ann}, "status": {"allocatable": allocatable or {"cpu": "8"}}}


NODES = [node("gpu-0"), node("gpu-1"), node("real-0", kwok=False)]


class FakeKube:
    """Serves discovery/lists from constructed objects and plays the scheduler for the check's pods.

    ``scheduler``: "honest" binds a NIC-claiming pod to the first node (not excluded by its affinity) publishing a
    device of the class's driver with the capability, "broken" to the first node its affinity allows, whatever it
    publishes. ``logs``: what a running probe pod prints (None: the pod never runs).
    """

    def __init__(self, *, slices=(), classes=(), nads=None, nodes=NODES, scheduler="honest", logs: str | None = None):
        self.slices, self.classes, self.nads, self.nodes = list(slices), list(classes), nads, list(nodes)
        self.scheduler, self.logs = scheduler, logs
        self.pods: dict[str, dict] = {}
        self.templates: dict[str, dict] = {}
        self.claims: list[dict] = []
        self.created: list[dict] = []

    def version(self) -> dict:
        return {"gitVersion": "v1.36.0"}

    def served_versions(self, group: str) -> list[str]:
        if group == hpn.NAD_GROUP:
            return ["v1"] if self.nads is not None else []
        return ["v1"]

    def events(self, namespace: str) -> list[dict]:
        return []

    def list(self, api_version: str, kind: str, namespace: str | None = None, **_: Any) -> list[dict]:
        table = {
            "ResourceSlice": self.slices,
            "DeviceClass": self.classes,
            "Node": self.nodes,
            "NetworkAttachmentDefinition": self.nads or [],
            "ResourceClaim": self.claims,
            "Pod": list(self.pods.values()),
        }
        return copy.deepcopy(table.get(kind, []))

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict | None:
        return next((o for o in self.list(api_version, kind) if o["metadata"]["name"] == name), None)

    def create(self, obj: dict, **_: Any) -> dict:
        obj = copy.deepcopy(obj)
        self.created.append(obj)
        if obj["kind"] == "ResourceClaimTemplate":
            self.templates[obj["metadata"]["name"]] = obj
        if obj["kind"] == "Pod":
            self._schedule(obj)
            self.pods[obj["metadata"]["name"]] = obj
        return obj

    def _schedule(self, pod: dict) -> None:
        spec = pod["spec"]
        terms = (spec.get("affinity") or {}).get("nodeAffinity", {})
        avoid = set()
        for t in terms.get("requiredDuringSchedulingIgnoredDuringExecution", {}).get("nodeSelectorTerms", []):
            for e in t["matchExpressions"]:
                avoid |= set(e["values"])
        allowed = [n["metadata"]["name"] for n in self.nodes if n["metadata"]["name"] not in avoid]
        choice = None
        device = None
        tpl_name = (spec.get("resourceClaims") or [{}])[0].get("resourceClaimTemplateName")
        if tpl_name:
            req = self.templates[tpl_name]["spec"]["spec"]["devices"]["requests"][0]["exactly"]
            dc = next(c for c in self.classes if c["metadata"]["name"] == req["deviceClassName"])
            driver = hpn.class_driver(dc)
            for s in self.slices:
                if s["spec"]["driver"] != driver or s["spec"]["nodeName"] not in allowed:
                    continue
                for d in s["spec"]["devices"]:
                    if self.scheduler == "broken" or hpn.has_capability(d, driver, "rdma"):
                        choice, device = s["spec"]["nodeName"], (driver, s["spec"]["pool"]["name"], d["name"])
                        break
                if choice:
                    break
            if choice is None and self.scheduler == "broken" and allowed:
                choice = allowed[0]
        elif limits := spec["containers"][0].get("resources", {}).get("limits"):
            resource = next(iter(limits))
            offering = [n["metadata"]["name"] for n in self.nodes if resource in n["status"]["allocatable"]]
            choice = next((n for n in allowed if self.scheduler == "broken" or n in offering), None)
        elif allowed:
            choice = allowed[0]
        if choice:
            spec["nodeName"] = choice
            pod["status"] = {"phase": "Running" if self.logs is not None else "Pending"}
            if device:
                self.claims.append(
                    {
                        "metadata": {
                            "name": f"{pod['metadata']['name']}-nic",
                            "ownerReferences": [{"name": pod["metadata"]["name"]}],
                        },
                        "status": {
                            "allocation": {
                                "devices": {
                                    "results": [
                                        {"request": "nic", "driver": device[0], "pool": device[1], "device": device[2]}
                                    ]
                                }
                            }
                        },
                    }
                )
        else:
            pod["status"] = {
                "phase": "Pending",
                "conditions": [
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": "0/3 nodes are available: cannot allocate all claims",
                    }
                ],
            }

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None, **_: Any) -> bool:
        return self.pods.pop(name, None) is not None if kind == "Pod" else True

    def delete_namespace(self, name: str, timeout_s: float = 0) -> None:
        self.pods.clear()

    def wait_for(self, api_version, kind, name, namespace, predicate, timeout_s, what, describe=None) -> dict | None:
        obj = self.get(api_version, kind, name, namespace)
        if predicate(obj):
            return obj
        raise WaitTimeout(what, timeout_s, str((obj or {}).get("status")))

    def sample(self, fn: Any, interval_s: float, until: Any, timeout_s: float, what: str) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            value = fn()
            if until(value):
                return value
            if time.monotonic() > deadline:
                raise WaitTimeout(what, timeout_s, str(value)[:200])
            time.sleep(0.01)

    def pod_logs(self, name: str, namespace: str, container: str | None = None, tail_lines: int = 500) -> str:
        if isinstance(self.logs, dict):
            return self.logs.get(name, "")
        return self.logs or ""


def run_fake(tmp_path: Path, kube: FakeKube, **overrides: Any):
    params = load_parameters(
        None,
        {
            "checklist_version": "1.36",
            "hpn_attach_timeout_s": 1,
            "sample_interval_s": 1,
            "hpn_dra_drivers": ["dra.net"],
            **overrides,
        },
    )
    return run_check("high_performance_networking", params, kube=kube, run_dir=tmp_path, progress=lambda m: None)


def verdicts(result) -> dict[str, Verdict]:
    return {s.id: s.verdict for s in result.subchecks}


# --- pure rules --------------------------------------------------------------------------------------------------


def test_nic_devices_are_found_by_driver_or_network_attributes_and_gpus_are_not():
    slices = [
        gpu_slice("gpu-0"),
        rslice("gpu-0", NIC_DRIVER, [nic("nic-0")]),
        rslice("gpu-1", "dra.net", [{"name": "x", "attributes": {"dra.net/alias": {"string": "a"}}}]),
    ]
    found = hpn.nic_devices(slices, ["dra.net"], "rdma")
    assert [(d.node, d.driver, d.device, d.capable) for d in found] == [
        ("gpu-0", NIC_DRIVER, "nic-0", True),
        ("gpu-1", "dra.net", "x", False),
    ]
    assert found[0].standard == ["numaNode", "pciBusID"]


@pytest.mark.parametrize(
    ("attrs", "capable"),
    [
        ({"rdma": {"bool": True}}, True),
        ({"rdma": {"bool": False}}, False),
        ({}, False),
        ({"dra.net/rdma": {"bool": True}}, True),
        ({"rdma": {"string": "false"}}, False),
        ({"rdma": {"int": 2}}, True),
    ],
    ids=["true", "false", "absent", "qualified", "string-false", "int"],
)
def test_capability_reading(attrs, capable):
    assert hpn.has_capability({"attributes": attrs}, "dra.net", "rdma") is capable


def test_capability_selector_guards_absent_attributes():
    sel = hpn.capability_selector("dra.net", "rdma")
    assert (
        sel
        == 'device.driver == "dra.net" && has(device.attributes["dra.net"].rdma) && device.attributes["dra.net"].rdma == true'
    )
    assert 'attributes["example.org"].rdma' in hpn.capability_selector("dra.net", "example.org/rdma")


def test_extended_resources_match_patterns_and_skip_zero():
    nodes = [
        node("a", allocatable={"rdma/hca_shared_devices_a": "63", "cpu": "8"}),
        node("b", allocatable={"openshift.io/sriov_netdevice": "0"}),
        node("c"),
    ]
    assert hpn.extended_nic_resources(nodes, ["^rdma/", "sriov"]) == {"a": {"rdma/hca_shared_devices_a": "63"}}


def test_probe_log_parsing_and_extra_interfaces():
    log = "aiconf-ifaces: lo eth0 net1 \naiconf-default: eth0\naiconf-ib: mlx5_0\naiconf-addr: net1 192.168.5.2/24\n"
    seen = hpn.parse_probe_log(log)
    assert seen["seen"] and hpn.extra_interfaces(seen) == ["net1"] and seen["infiniband"] == ["mlx5_0"]
    assert seen["addresses"]["net1"] == "192.168.5.2/24"
    only_primary = hpn.parse_probe_log("aiconf-ifaces: lo eth0\naiconf-default: \n")
    assert hpn.extra_interfaces(only_primary) == []
    assert not hpn.parse_probe_log("sh: ls: not found")["seen"]


def test_probe_pod_claims_the_nic_and_can_be_kept_off_nodes():
    p = load_parameters(None, {})
    pod = hpn.probe_pod("p", "ns", p, template="nic", avoid_nodes=["b", "a"])
    assert pod["spec"]["resourceClaims"] == [{"name": "nic", "resourceClaimTemplateName": "nic"}]
    assert pod["spec"]["containers"][0]["resources"] == {"claims": [{"name": "nic"}]}
    expr = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ][0]
    assert expr["matchExpressions"][0] == {"key": "kubernetes.io/hostname", "operator": "NotIn", "values": ["a", "b"]}
    multus = hpn.probe_pod("p", "ns", p, nad="net/sriov-a")
    assert multus["metadata"]["annotations"] == {hpn.MULTUS_ANNOTATION: "net/sriov-a"}
    assert "resourceClaims" not in multus["spec"]


# --- whole runs ----------------------------------------------------------------------------------------------------


def test_nothing_offered_is_not_applicable_with_what_was_searched(tmp_path):
    kube = FakeKube(slices=[gpu_slice("gpu-0")], classes=[device_class("gpu", "gpu.example.com")])
    result = run_fake(tmp_path, kube)
    assert result.verdict is Verdict.NOT_APPLICABLE
    assert set(verdicts(result).values()) == {Verdict.NOT_APPLICABLE} and len(result.subchecks) == len(hpn.SUBCHECKS)
    text = result.not_applicable.justification
    assert "ResourceSlices" in text and "Multus" in text and "RDMA/SR-IOV" in text
    assert not [o for o in kube.created if o["kind"] == "Pod"]


def test_capable_nic_on_a_simulated_node_schedules_correctly_but_attach_stays_unknown(tmp_path):
    kube = FakeKube(
        slices=[gpu_slice("gpu-0"), rslice("gpu-1", NIC_DRIVER, [nic("nic-0")])],
        classes=[device_class("nics", NIC_DRIVER)],
    )
    result = run_fake(tmp_path, kube)
    v = verdicts(result)
    assert v["nics_published"] is Verdict.PASS
    assert v["capability_scheduling"] is Verdict.PASS and "gpu-1" in result.subcheck("capability_scheduling").summary
    assert v["capability_enforced"] is Verdict.PASS
    assert v["secondary_interface_attached"] is Verdict.UNKNOWN and v["data_path"] is Verdict.UNKNOWN
    assert result.verdict is Verdict.UNKNOWN  # never PASS without an attached interface
    elsewhere = next(o for o in kube.created if o["metadata"]["name"] == hpn.ELSEWHERE)
    assert "gpu-1" in str(elsewhere["spec"]["affinity"])
    assert result.metrics["hpn_capable_nodes"] == ["gpu-1"]


def test_a_scheduler_ignoring_the_capability_fails(tmp_path):
    """NICs on two nodes, only one with RDMA: a scheduler that ignores the selector binds the off-capability pod."""
    kube = FakeKube(
        slices=[rslice("gpu-0", NIC_DRIVER, [nic("nic-0", rdma=False)]), rslice("gpu-1", NIC_DRIVER, [nic("nic-0")])],
        classes=[device_class("nics", NIC_DRIVER)],
        scheduler="broken",
    )
    result = run_fake(tmp_path, kube)
    assert verdicts(result)["capability_scheduling"] is Verdict.FAIL
    assert "gpu-0 publishes no NIC with rdma" in result.subcheck("capability_scheduling").summary
    assert verdicts(result)["capability_enforced"] is Verdict.FAIL
    assert result.verdict is Verdict.FAIL


def test_slices_without_the_capability_attribute_fail(tmp_path):
    kube = FakeKube(
        slices=[rslice("gpu-0", NIC_DRIVER, [nic("nic-0", rdma=None)])], classes=[device_class("nics", NIC_DRIVER)]
    )
    result = run_fake(tmp_path, kube)
    assert verdicts(result)["capability_scheduling"] is Verdict.FAIL
    assert "Unschedulable" in result.subcheck("capability_scheduling").summary
    assert verdicts(result)["capability_enforced"] is Verdict.UNKNOWN
    assert result.verdict is Verdict.FAIL


def test_nic_device_class_without_slices_fails(tmp_path):
    kube = FakeKube(slices=[gpu_slice("gpu-0")], classes=[device_class("dranet", "dra.net")])
    result = run_fake(tmp_path, kube)
    assert verdicts(result)["nics_published"] is Verdict.FAIL
    assert "no ResourceSlice publishes a NIC" in result.subcheck("nics_published").summary
    assert result.verdict is Verdict.FAIL


def test_nics_without_a_device_class_cannot_be_claimed(tmp_path):
    kube = FakeKube(slices=[rslice("gpu-0", "dra.net", [nic("nic-0")])])
    result = run_fake(tmp_path, kube)
    assert verdicts(result)["capability_scheduling"] is Verdict.UNKNOWN
    assert "hpn_device_class" in result.subcheck("capability_scheduling").summary
    assert result.verdict is Verdict.UNKNOWN


@pytest.mark.parametrize(
    ("log", "attached"),
    [
        ("aiconf-ifaces: lo eth0 net1\naiconf-default: eth0\naiconf-ib: \n", Verdict.PASS),
        ("aiconf-ifaces: lo eth0\naiconf-default: eth0\naiconf-ib: \n", Verdict.FAIL),
        (None, Verdict.FAIL),
    ],
    ids=["extra-interface", "primary-only", "never-runs"],
)
def test_attach_on_a_real_node_reads_the_pods_interfaces(tmp_path, log, attached):
    kube = FakeKube(
        slices=[rslice("real-0", NIC_DRIVER, [nic("nic-0")])], classes=[device_class("nics", NIC_DRIVER)], logs=log
    )
    result = run_fake(tmp_path, kube)
    assert verdicts(result)["capability_scheduling"] is Verdict.PASS
    assert verdicts(result)["secondary_interface_attached"] is attached
    assert verdicts(result)["data_path"] is Verdict.UNKNOWN
    assert result.verdict is (Verdict.UNKNOWN if attached is Verdict.PASS else Verdict.FAIL)


def test_multus_only_is_unknown_and_partially_implemented(tmp_path):
    kube = FakeKube(
        nads=[{"metadata": {"name": "sriov-a", "namespace": "net"}}],
        logs="aiconf-ifaces: lo eth0 net1\naiconf-default: eth0\n",
    )
    result = run_fake(tmp_path, kube)
    v = verdicts(result)
    assert v["nics_published"] is Verdict.UNKNOWN and result.status_suggestion == "Partially Implemented"
    assert v["capability_scheduling"] is Verdict.UNKNOWN
    assert v["secondary_interface_attached"] is Verdict.UNKNOWN  # the pod was bound to a simulated node
    probe = next(o for o in kube.created if o["kind"] == "Pod")
    assert probe["metadata"]["annotations"][hpn.MULTUS_ANNOTATION] == "net/sriov-a"


# --- the data path -------------------------------------------------------------------------------------------------

SERVER_LOG = "aiconf-ifaces: lo eth0 net1\naiconf-default: eth0\naiconf-addr: net1 192.168.5.2/24\n"
CLIENT_LOG = "aiconf-ifaces: lo eth0 net1\naiconf-default: eth0\naiconf-addr: net1 192.168.5.3/24\n"
FULL = f"aiconf-received: {64 * 1048576}\n"


def test_transfer_judgement():
    client = hpn.parse_probe_log(
        CLIENT_LOG + "aiconf-route: 192.168.5.2 dev net1  src 192.168.5.3\naiconf-sent: rc=0 start=1 end=2"
    )
    server = hpn.parse_probe_log(SERVER_LOG + FULL)
    assert hpn.secondary_target(server) == ("net1", "192.168.5.2")
    assert hpn.judge_transfer(client, server, "192.168.5.2", 64)[0]
    over_primary = {**client, "route": "192.168.5.2 via 10.244.0.1 dev eth0  src 10.244.0.3"}
    ok, why = hpn.judge_transfer(over_primary, server, "192.168.5.2", 64)
    assert not ok and "eth0" in why
    short = hpn.parse_probe_log(SERVER_LOG + "aiconf-received: 1024\n")
    assert not hpn.judge_transfer(client, short, "192.168.5.2", 64)[0]
    failed = {**client, "sent": {"rc": "1"}}
    assert not hpn.judge_transfer(failed, server, "192.168.5.2", 64)[0]


def two_real_nic_nodes(logs: dict) -> FakeKube:
    nodes = [node("gpu-0"), node("real-0", kwok=False), node("real-1", kwok=False)]
    return FakeKube(
        slices=[rslice("real-0", NIC_DRIVER, [nic("nic-0")]), rslice("real-1", NIC_DRIVER, [nic("nic-0")])],
        classes=[device_class("nics", NIC_DRIVER)],
        nodes=nodes,
        logs=logs,
    )


@pytest.mark.parametrize(
    ("route", "received", "verdict"),
    [
        ("192.168.5.2 dev net1  src 192.168.5.3", FULL, Verdict.PASS),
        ("192.168.5.2 via 10.244.0.1 dev eth0  src 10.244.0.3", FULL, Verdict.FAIL),
        ("192.168.5.2 dev net1  src 192.168.5.3", "aiconf-received: 1024\n", Verdict.FAIL),
    ],
    ids=["over-secondary", "over-primary", "bytes-lost"],
)
def test_data_path_between_two_real_nodes(tmp_path, route, received, verdict):
    client = CLIENT_LOG + f"aiconf-route: {route}\naiconf-sent: rc=0 start=10.00 end=10.50\n"
    kube = two_real_nic_nodes({hpn.PROBE: SERVER_LOG + received, "nic-peer": client})
    result = run_fake(tmp_path, kube)
    assert verdicts(result)["secondary_interface_attached"] is Verdict.PASS
    assert verdicts(result)["data_path"] is verdict, result.subcheck("data_path").summary
    assert result.verdict is verdict
    peer = next(o for o in kube.created if o["kind"] == "Pod" and o["metadata"]["name"] == "nic-peer")
    assert "real-0" in str(peer["spec"]["affinity"])  # kept off the server's node: the transfer crosses nodes
    assert "nc -w 10 192.168.5.2 5201" in peer["spec"]["containers"][0]["command"][2]
    if verdict is Verdict.PASS:
        assert result.metrics["hpn_data_path_mib_per_s"] == 128.0


def test_data_path_without_an_address_on_the_secondary_interface_is_unknown(tmp_path):
    kube = two_real_nic_nodes({hpn.PROBE: "aiconf-ifaces: lo eth0 ib0\naiconf-default: eth0\naiconf-ib: mlx5_0\n"})
    result = run_fake(tmp_path, kube)
    assert verdicts(result)["secondary_interface_attached"] is Verdict.PASS
    assert verdicts(result)["data_path"] is Verdict.UNKNOWN and "RDMA-only" in result.subcheck("data_path").summary
    assert not [o for o in kube.created if o["metadata"]["name"] == "nic-peer"]


def test_chart_shows_every_node_and_where_the_probe_was_bound(tmp_path):
    import matplotlib

    matplotlib.use("agg")
    import matplotlib.pyplot as plt

    kube = FakeKube(
        slices=[rslice("gpu-1", NIC_DRIVER, [nic("nic-0"), nic("nic-1", rdma=False)])],
        classes=[device_class("nics", NIC_DRIVER)],
    )
    result = run_fake(tmp_path, kube)
    fig, ax = plt.subplots()
    hpn.draw_nics(ax, result)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["gpu-0", "gpu-1", "real-0"]
    widths = [(p.get_y(), p.get_width()) for p in ax.patches]
    assert sorted(w for _, w in widths) == [0, 0, 0, 0, 1, 1]  # gpu-1: one capable NIC, one without
    assert [t.get_text() for t in ax.texts] == ["probe pod bound here"]
    plt.close(fig)
    empty, ax = plt.subplots()
    hpn.draw_nics(ax, run_fake(tmp_path / "none", FakeKube()))
    assert "no NIC devices" in ax.texts[0].get_text()
    plt.close(empty)


# --- device-plugin NICs and RDMA device nodes -----------------------------------------------------------------------

RDMA = "rdma/hca_shared_devices_a"


def rdma_nodes(**kw: Any) -> FakeKube:
    nodes = [node("gpu-0", allocatable={RDMA: "4"}), node("gpu-1"), node("real-0", kwok=False)]
    return FakeKube(nodes=nodes, **kw)


def test_device_plugin_rdma_resource_is_scheduled_only_where_advertised(tmp_path):
    kube = rdma_nodes()
    result = run_fake(tmp_path, kube)
    v = verdicts(result)
    assert v["nics_published"] is Verdict.UNKNOWN and result.status_suggestion == "Partially Implemented"
    assert v["capability_scheduling"] is Verdict.PASS and result.metrics["hpn_probe_node"] == "gpu-0"
    assert v["capability_enforced"] is Verdict.PASS
    assert result.metrics["hpn_extended_resource"] == RDMA
    probe = next(o for o in kube.created if o["kind"] == "Pod")
    assert probe["spec"]["containers"][0]["resources"]["limits"] == {RDMA: "1"}
    assert result.verdict is Verdict.UNKNOWN


def test_device_plugin_resource_ignored_by_the_scheduler_fails(tmp_path):
    result = run_fake(tmp_path, rdma_nodes(scheduler="broken"))
    assert verdicts(result)["capability_enforced"] is Verdict.FAIL
    assert result.verdict is Verdict.FAIL


@pytest.mark.parametrize(
    ("log", "attached"),
    [
        (
            "aiconf-ifaces: lo eth0\naiconf-default: eth0\naiconf-ib: mlx5_0\naiconf-verbs: rdma_cm uverbs0\n",
            Verdict.PASS,
        ),
        ("aiconf-ifaces: lo eth0\naiconf-default: eth0\naiconf-ib: mlx5_0\naiconf-verbs: \n", Verdict.FAIL),
    ],
    ids=["uverbs-injected", "host-sysfs-only"],
)
def test_rdma_attach_needs_a_device_node_not_the_hosts_sysfs(tmp_path, log, attached):
    nodes = [node("real-0", kwok=False, allocatable={RDMA: "4"}), node("gpu-0")]
    result = run_fake(tmp_path, FakeKube(nodes=nodes, logs=log))
    assert verdicts(result)["capability_scheduling"] is Verdict.PASS
    assert verdicts(result)["secondary_interface_attached"] is attached
