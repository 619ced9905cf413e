# %% [markdown]
# # Virtualised accelerators (`virtualized_accelerator`)
#
# **What the requirement asks.** Where the platform offers virtual GPUs (vGPU), they are exposed and managed
# consistently with physical fractional GPUs, requested through the same mechanism, with DRA as the forward-looking
# way (SHOULD in checklists 1.35 and 1.36, KAR-0004). A platform without a virtualization layer answers N/A with a
# justification.
#
# **How this notebook demonstrates it.**
# 1. *Search.* Node labels (`nvidia.com/vgpu.*`, vGPU product names such as `GRID-A100-40C` or a `-<n>Q/C/B/A`
#    profile suffix), extended resources named after vGPU/vfio devices, DRA ResourceSlice device attributes (NVML's
#    vGPU brands such as `NvidiaVCS`, vGPU product names, device type `vgpu`/`vfio`) and DeviceClasses that select
#    vfio/vGPU devices. Nothing found: NOT_APPLICABLE, with a drafted justification naming what was searched and the
#    hypervisor hints of the accelerator nodes (providerID, instance type, simulated nodes).
# 2. *Same request API.* The vGPU node advertises `gpu_resource_name`, or the vGPU devices belong to the driver
#    `dra_device_class` selects: the same request as a physical GPU. Anything else is UNKNOWN (attach evidence).
# 3. *Behaviour.* On a vGPU node that runs processes, a pod requests one `gpu_resource_name` exactly as for a
#    physical GPU (for DRA-published vGPUs: a ResourceClaim of `dra_device_class`, narrowed by a CEL selector on the
#    vGPU attribute found) and lists what it sees (`aiconf/workloads/device_probe.py` + `nvidia-smi`): exactly one
#    device, and a virtual one. Labels alone never PASS: a node labelled vGPU whose pod sees a physical GPU FAILs; a
#    vGPU offered only on simulated nodes (kwok) or under another request API is UNKNOWN.
#
# **What runs where.** In the local sandbox nothing is virtualised: the verdict is NOT_APPLICABLE, and the
# justification below is the drafted PRODUCT.yaml note.

# %% tags=["parameters"]
profile = ""          # parameter profile (interactive use); the runner injects final values instead
run_id = ""
output_dir = ""
kubeconfig = ""
context = ""
checklist_version = ""
accelerator_vendor = "nvidia"
gpu_resource_name = "nvidia.com/gpu"
gpu_taint_key = "nvidia.com/gpu"
runtime_class_name = ""
dra_device_class = "gpu.nvidia.com"
image_python = "python:3.12-slim"
image_pull_policy = "IfNotPresent"
driver_probe_image = ""
driver_probe_timeout_s = 120
vgpu_node = ""

# %%
from aiconf import display
from aiconf.execute import run_from_notebook

result = run_from_notebook("virtualized_accelerator", globals())
display.verdict(result)

# %% [markdown]
# ## What was searched, and what was found
#
# Each vGPU signal by kind (node labels, extended resources, DRA devices, DeviceClasses), and the hypervisor hints.

# %%
display.chart(result, "signals", figsize=(9, 3.2))

# %% [markdown]
# ## Sub-checks

# %%
display.subchecks(result)

# %% [markdown]
# ## What this proves and what it does not
#
# NOT_APPLICABLE says that Kubernetes shows no virtual accelerator (no label, resource, DRA device or class); it
# does not prove that no hypervisor sits below the nodes. A PASS proves that one pod, requesting an accelerator as for
# a physical GPU, received exactly one virtual GPU; it does not prove identical scheduling, isolation and accounting
# for mixed vGPU and physical fractional workloads.

# %%
display.proves(result)
