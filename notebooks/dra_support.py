# %% [markdown]
# # Dynamic Resource Allocation (`dra_support`)
#
# **What the requirement asks.** "Support Dynamic Resource Allocation (DRA) APIs to enable more flexible and
# fine-grained resource requests beyond simple counts." It is a SHOULD in the 1.33 checklist (DRA was beta then), a
# MUST in 1.34 and 1.35, and it is absent from 1.36 because the upstream Kubernetes conformance suite covers the DRA
# API CRUD tests from 1.35 on (KAR-0051). On 1.36 this notebook is informational.
#
# **Why it matters.** With DRA a workload asks for *a device with properties* (a model, a minimum of memory) instead
# of "N of `nvidia.com/gpu`"; the scheduler picks a device that matches, and the claim is released when the
# workload ends.
#
# **How this notebook demonstrates it.**
# 1. *API (required, read-only).* Read discovery of `resource.k8s.io`: which versions are served and, for the version
#    the checklist needs (`v1` from 1.34; a beta version is accepted on 1.33 and then suggested as "Partially
#    Implemented"), whether DeviceClass, ResourceClaim, ResourceClaimTemplate and ResourceSlice are served with every
#    verb a client needs (create, delete, deletecollection, get, list, patch, update, watch). Existing suites check
#    only that the version answers or that the names appear; a missing verb passes them and fails here.
# 2. *Inventory (informational).* DeviceClasses and ResourceSlices: which driver publishes how many devices on which
#    node, and with which attributes and capacities.
# 3. *Functional (informational by default; `dra_functional_required: true` makes it count).* When the DeviceClass
#    `dra_device_class` exists and a driver publishes devices, the check creates in its own namespace a
#    ResourceClaimTemplate asking for exactly one device **with a CEL selector on a device attribute** (built from
#    an attribute the driver publishes, e.g. `productName`, plus a minimum memory capacity when published; or
#    `dra_cel_selector`), and a pod consuming it. It waits (watch) for the real scheduler to allocate the claim,
#    records the driver/pool/device and checks that the device has the attribute value asked for; waits for the pod
#    to run; then asks for a device *no* published device satisfies and expects the pod to be reported
#    Unschedulable (so the selector is enforced, not ignored); finally deletes the pod and watches the generated
#    claim being deleted.
#
# **What runs where.** Everything the check creates is labelled with the run id and deleted at the end (the
# namespace after its objects, events and logs are saved as evidence). In the local sandbox the GPUs are
# simulated: kwok nodes, with ResourceSlices published by the sandbox for a driver named `gpu.sandbox.aiconf.io`.
# The scheduler's allocation is real; the device preparation on the node and the pod's process are not.

# %% tags=["parameters"]
profile = ""          # parameter profile (interactive use); the runner injects final values instead
run_id = ""
output_dir = ""
kubeconfig = ""
context = ""
checklist_version = ""
dra_device_class = "gpu.nvidia.com"
dra_functional = True
dra_functional_required = False
dra_cel_selector = ""
dra_allocation_timeout_s = 120
pod_start_timeout_s = 300
gpu_taint_key = "nvidia.com/gpu"
runtime_class_name = ""
image_utility = "busybox:1.36"
image_pull_policy = "IfNotPresent"

# %%
from aiconf import display
from aiconf.execute import run_from_notebook

result = run_from_notebook("dra_support", globals())
display.verdict(result)

# %% [markdown]
# ## The API as discovery reports it
#
# One row per served version and resource, with the verbs and subresources discovery lists. The required sub-checks
# judge the version the checklist needs.

# %%
display.series(result, "api_resources").drop(columns=["t_s", "time"], errors="ignore")

# %% [markdown]
# ## Devices published by DRA drivers
#
# DeviceClasses (with their CEL selectors) and ResourceSlices (driver, node, pool, devices, attribute and capacity
# names). The chart counts devices per node, stacked by driver.

# %%
display.series(result, "device_classes").drop(columns=["t_s", "time"], errors="ignore")

# %%
display.series(result, "resource_slices").drop(columns=["t_s", "time"], errors="ignore")

# %%
display.chart(result, "devices_per_node")

# %% [markdown]
# ## The claim's lifecycle
#
# Objects created: ResourceClaimTemplate `accelerator` (one device of `dra_device_class`, with the CEL selector shown
# below), pod `dra-probe` consuming it, then ResourceClaimTemplate `no-such-device` and pod `dra-negative` with a
# selector no device satisfies. Waits: claim allocated (`dra_allocation_timeout_s`), pod running
# (`pod_start_timeout_s`), scheduler verdict on the unsatisfiable claim and the claim's deletion after its pod is
# deleted (`dra_allocation_timeout_s`). All waits are watches.

# %%
{"CEL selector": result.metrics.get("dra_cel_selector"), "allocation": result.metrics.get("dra_allocation")}

# %%
display.chart(result, "claim_timeline")

# %% [markdown]
# ## Sub-checks

# %%
display.subchecks(result)

# %% [markdown]
# ## What this proves and what it does not
#
# A PASS proves the DRA API surface the checklist names is served (with all verbs) at the right version. The
# functional sub-checks add that the platform's DRA driver and scheduler satisfy an attribute-based request and
# release it; on simulated nodes they prove the scheduler side only. None of this runs a kernel on a device.

# %%
display.proves(result)
