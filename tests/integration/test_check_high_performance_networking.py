"""high_performance_networking on the sandbox: the real scheduler against a simulated NIC ResourceSlice.

The sandbox has no NIC driver. Tests publish a NIC ResourceSlice (standard PCI/NUMA attributes, vendor ``ifName`` and
``rdma``) for ONE node plus a DeviceClass selecting its driver, and remove them afterwards. Positive: the claim
requiring RDMA lands on that node and stays Pending elsewhere; attach and data path stay UNKNOWN (no container runs
on kwok nodes), so the verdict is UNKNOWN, never PASS. Broken: no NIC at all (NOT_APPLICABLE), NIC slices without
the capability, a NIC DeviceClass with no slices, and a NIC published for the real node where nothing attaches it.
"""

from __future__ import annotations

import time
import uuid

import pytest

from aiconf.context import LABEL_RUN_ID
from aiconf.execute import new_run_id, run_check
from aiconf.kube import Kube
from aiconf.model import Verdict
from aiconf.params import load_parameters

pytestmark = pytest.mark.sandbox

DRA = "resource.k8s.io/v1"
NIC_DRIVER = "nic.sandbox.aiconf.io"
CREATED_KINDS = (("v1", "Namespace"), ("v1", "Pod"), (DRA, "ResourceClaim"), (DRA, "ResourceClaimTemplate"))


@pytest.fixture(scope="module")
def kube(kube_sandbox) -> Kube:
    return Kube.connect(str(kube_sandbox.kubeconfig))


def run(kube_sandbox, tmp_path, **overrides):
    run_id = new_run_id()
    params = load_parameters(
        "sandbox", {"kubeconfig": str(kube_sandbox.kubeconfig), "checklist_version": "1.36", **overrides}
    )
    started = time.monotonic()
    result = run_check("high_performance_networking", params, run_id=run_id, run_dir=tmp_path)
    return result, run_id, time.monotonic() - started


def leftovers(kube: Kube, run_id: str) -> list[str]:
    return [
        f"{kind}/{o['metadata'].get('namespace', '')}/{o['metadata']['name']}"
        for api_version, kind in CREATED_KINDS
        for o in kube.list(api_version, kind, label_selector=f"{LABEL_RUN_ID}={run_id}")
    ]


def subs(result) -> dict[str, Verdict]:
    return {s.id: s.verdict for s in result.subchecks}


def node_named(kube: Kube, *, simulated: bool) -> str:
    for n in kube.list("v1", "Node"):
        if ((n["metadata"].get("annotations") or {}).get("kwok.x-k8s.io/node") == "fake") is simulated:
            if simulated and "gpu" not in n["metadata"]["name"]:
                continue
            return n["metadata"]["name"]
    pytest.skip("the sandbox has no such node")


class FakeNics:
    """Publishes NIC ResourceSlices and DeviceClasses for a test, and deletes them afterwards."""

    def __init__(self, kube: Kube):
        self.kube, self.made = kube, []
        self.tag = uuid.uuid4().hex[:6]

    def device_class(self, driver: str = NIC_DRIVER) -> str:
        name = f"aiconf-test-nic-{self.tag}"
        self.kube.create(
            {
                "apiVersion": DRA,
                "kind": "DeviceClass",
                "metadata": {"name": name, "labels": {"aiconf.io/test": "nic"}},
                "spec": {"selectors": [{"cel": {"expression": f'device.driver == "{driver}"'}}]},
            }
        )
        self.made.append(("DeviceClass", name))
        return name

    def slice(self, node: str, *, rdma: bool | None) -> None:
        attrs = {
            "ifName": {"string": "eth1"},
            "resource.kubernetes.io/pciBusID": {"string": "0000:3b:00.0"},
            "resource.kubernetes.io/numaNode": {"int": 0},
        }
        if rdma is not None:
            attrs["rdma"] = {"bool": rdma}
        name = f"{node}-nic-{self.tag}"
        self.kube.create(
            {
                "apiVersion": DRA,
                "kind": "ResourceSlice",
                "metadata": {"name": name, "labels": {"aiconf.io/test": "nic"}},
                "spec": {
                    "driver": NIC_DRIVER,
                    "nodeName": node,
                    "pool": {"name": f"{node}-nic", "generation": 1, "resourceSliceCount": 1},
                    "devices": [{"name": "nic-0", "attributes": attrs}],
                },
            }
        )
        self.made.append(("ResourceSlice", name))

    def device_plugin_resource(self, node: str, resource: str = "rdma/hca_shared_devices_a") -> str:
        """Advertise an RDMA device-plugin resource on a (kwok) node's status, as the RDMA shared device plugin does."""
        self._set_resource(node, resource, "4")
        self.made.append(("resource", f"{node}={resource}"))
        return resource

    def _set_resource(self, node: str, resource: str, value: str | None) -> None:
        body = {"status": {"capacity": {resource: value}, "allocatable": {resource: value}}}
        self.kube.patch("v1", "Node", node, body, subresource="status")

    def remove(self) -> None:
        for kind, name in reversed(self.made):
            if kind == "resource":
                self._set_resource(*name.split("=", 1), None)
            else:
                self.kube.delete(DRA, kind, name)


@pytest.fixture
def nics(kube):
    made = FakeNics(kube)
    try:
        yield made
    finally:
        made.remove()


def test_no_nic_is_not_applicable_and_says_what_was_searched(kube_sandbox, kube, tmp_path):
    result, run_id, took = run(kube_sandbox, tmp_path)
    assert result.verdict is Verdict.NOT_APPLICABLE, (result.reason, result.error)
    assert set(subs(result).values()) == {Verdict.NOT_APPLICABLE}
    text = result.not_applicable.justification
    assert "ResourceSlices" in text and "NetworkAttachmentDefinition" in text and "RDMA/SR-IOV" in text
    assert took < 30, took
    assert leftovers(kube, run_id) == []


def test_rdma_claim_lands_only_on_the_nic_node_but_attach_stays_unknown(kube_sandbox, kube, tmp_path, nics):
    target = node_named(kube, simulated=True)
    nics.device_class()
    nics.slice(target, rdma=True)
    result, run_id, took = run(kube_sandbox, tmp_path)
    v = subs(result)
    assert v["nics_published"] is Verdict.PASS, result.subcheck("nics_published").summary
    assert v["capability_scheduling"] is Verdict.PASS, result.subcheck("capability_scheduling").summary
    assert result.metrics["hpn_probe_node"] == target
    assert v["capability_enforced"] is Verdict.PASS, result.subcheck("capability_enforced").summary
    assert "cannot allocate all claims" in result.subcheck("capability_enforced").summary
    assert v["secondary_interface_attached"] is Verdict.UNKNOWN and v["data_path"] is Verdict.UNKNOWN
    assert result.verdict is Verdict.UNKNOWN  # discovery and scheduling never make a PASS on their own
    assert any("simulated" in n for n in result.notes)
    assert took < 60, took
    assert leftovers(kube, run_id) == []


def test_nic_slices_without_the_capability_fail(kube_sandbox, kube, tmp_path, nics):
    nics.device_class()
    nics.slice(node_named(kube, simulated=True), rdma=None)
    result, run_id, _ = run(kube_sandbox, tmp_path, hpn_schedule_timeout_s=15)
    assert subs(result)["capability_scheduling"] is Verdict.FAIL
    assert "Unschedulable" in result.subcheck("capability_scheduling").summary
    assert result.verdict is Verdict.FAIL
    assert leftovers(kube, run_id) == []


def test_nic_device_class_without_slices_fails(kube_sandbox, kube, tmp_path, nics):
    nics.device_class(driver="dra.net")  # DRANET's driver name: recognised as a NIC class without any parameter
    result, run_id, _ = run(kube_sandbox, tmp_path, hpn_schedule_timeout_s=15)
    assert subs(result)["nics_published"] is Verdict.FAIL, result.subcheck("nics_published").summary
    assert result.verdict is Verdict.FAIL
    assert leftovers(kube, run_id) == []


def test_nic_published_for_the_real_node_but_never_attached_fails(kube_sandbox, kube, tmp_path, nics):
    """A slice for the real node with no driver behind it: the pod is bound there and never starts."""
    nics.device_class()
    nics.slice(node_named(kube, simulated=False), rdma=True)
    result, run_id, _ = run(kube_sandbox, tmp_path, hpn_attach_timeout_s=10)
    v = subs(result)
    assert v["capability_scheduling"] is Verdict.PASS
    attach = result.subcheck("secondary_interface_attached")
    assert attach.verdict is Verdict.FAIL, attach.summary
    assert "not registered" in attach.summary  # the kubelet found no driver to prepare the NIC
    assert result.verdict is Verdict.FAIL
    assert leftovers(kube, run_id) == []


def test_transfer_scripts_on_the_real_node_count_bytes_and_reject_a_non_secondary_route(kube, nics):
    """The data path's busybox scripts, run for real: server and client containers of one pod on the real node
    (one network namespace, so the client dials 127.0.0.1 and nothing leaves the pod). Every byte is counted, and the
    judgement refuses the transfer because its route is loopback, not a secondary interface."""
    from aiconf.checks import high_performance_networking as hpn

    real = node_named(kube, simulated=False)
    params = load_parameters("sandbox", {})
    ns = f"aiconf-test-hpn-{nics.tag}"
    kube.create(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"aiconf.io/test": "nic"}}}
    )
    try:
        pod = hpn.probe_pod("transfer", ns, params)
        client = hpn.probe_pod("x", ns, params, script=hpn.client_script("127.0.0.1", params.hpn_data_port, 8))
        client["spec"]["containers"][0]["name"] = "client"
        pod["spec"]["containers"].append(client["spec"]["containers"][0])
        pod["spec"]["nodeSelector"] = {"kubernetes.io/hostname": real}
        kube.create(pod)
        kube.wait_for(
            "v1",
            "Pod",
            "transfer",
            ns,
            lambda o: (o or {}).get("status", {}).get("phase") == "Running",
            params.pod_start_timeout_s,
            "the transfer pod to run",
        )
        sent = kube.sample(
            lambda: hpn.parse_probe_log(kube.pod_logs("transfer", ns, "client")),
            1,
            lambda seen: bool(seen["sent"]),
            30,
            "the client's send result",
        )
        received = kube.sample(
            lambda: hpn.parse_probe_log(kube.pod_logs("transfer", ns, "probe")),
            1,
            lambda seen: seen["received"] is not None,
            30,
            "the server's byte count",
        )
    finally:
        kube.delete_namespace(ns, 60)
    assert sent["sent"]["rc"] == "0" and received["received"] == 8 * 1048576
    assert "dev lo" in sent["route"]
    ok, why = hpn.judge_transfer(sent, received, "127.0.0.1", 8)
    assert not ok and "lo" in why


def test_rdma_device_plugin_resource_is_scheduled_only_where_advertised(kube_sandbox, kube, tmp_path, nics):
    target = node_named(kube, simulated=True)
    resource = nics.device_plugin_resource(target)
    result, run_id, took = run(kube_sandbox, tmp_path)
    v = subs(result)
    assert result.metrics["hpn_extended_resource"] == resource
    assert v["nics_published"] is Verdict.UNKNOWN and result.status_suggestion == "Partially Implemented"
    assert v["capability_scheduling"] is Verdict.PASS and result.metrics["hpn_probe_node"] == target
    assert v["capability_enforced"] is Verdict.PASS
    assert f"Insufficient {resource}" in result.subcheck("capability_enforced").summary
    assert result.verdict is Verdict.UNKNOWN
    assert took < 60, took
    assert leftovers(kube, run_id) == []
