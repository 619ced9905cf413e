# %% [markdown]
# # Accelerator driver and runtime management (`driver_runtime_management`)
#
# **What the requirement asks.** The platform provides a verifiable mechanism ensuring that compatible accelerator
# drivers and the matching container runtime configuration are installed on accelerator nodes; once accelerators
# expose driver and runtime versions through DRA, the platform should verify through DRA (SHOULD in checklists 1.35
# and 1.36, KAR-0001). KAR-0001's test idea: a pod on each accelerator node reads the versions actually installed and
# compares them with what the platform declares; an unrecognised accelerator is "Unknown".
#
# **Why it matters.** A node that says "driver 580" while running 550 breaks every workload built for the declared
# version, and scheduling by those labels (or DRA attributes) sends workloads to the wrong nodes.
#
# **How this notebook demonstrates it.**
# 1. *Declared.* Per accelerator node: GPU Feature Discovery's labels (`nvidia.com/cuda.driver.major/minor/rev` =
#    the driver version, `nvidia.com/cuda.runtime.major/minor` = the CUDA driver API version, or their `*-version.full`
#    forms), `driver_version_label` if set, and DRA ResourceSlice device attributes `driverVersion` /
#    `cudaDriverVersion`.
# 2. *Installer and runtime.* A GPU Operator `ClusterPolicy` (state `ready`) and its driver, container toolkit,
#    device plugin, feature discovery and validator DaemonSets (every pod Ready); the RuntimeClasses (and
#    `runtime_class_name`, which the probe pods then use).
# 3. *Actual.* One probe pod per accelerator node that runs processes, pinned to it, requesting **one accelerator the
#    way any workload does** (so the runtime injects the driver's tooling). It runs `aiconf/workloads/device_probe.py`
#    (mounted from a ConfigMap) with `nvidia-smi --query-gpu=driver_version,name,uuid`, which also asks NVML when its
#    library loads, then plain `nvidia-smi` for the CUDA version. The probe needs no privilege (restricted Pod
#    Security). A probe that cannot run or reads no version is UNKNOWN, never PASS.
# 4. *Compare.* Declared vs actual per node and source, numerically (`580.95.5` = `580.95.05`).
#
# **What runs where.** Simulated (kwok) accelerator nodes run no processes: only their declared side is shown and
# they are left out of the verdict. In the local sandbox the probe runs on its one real node, whose GPUs are
# simulated: the fake device plugin mounts a fake `nvidia-smi` that reports the sandbox's model driver (580.95.05,
# CUDA 13.0); the labels and the mechanism are what is demonstrated, not a real driver.

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
image_python = "python:3.12-slim"
image_pull_policy = "IfNotPresent"
driver_probe_image = ""
driver_probe_timeout_s = 120
driver_probe_max_nodes = 10
driver_version_label = ""
gpu_operator_namespace = ""

# %%
from aiconf import display
from aiconf.execute import run_from_notebook

result = run_from_notebook("driver_runtime_management", globals())
display.verdict(result)

# %% [markdown]
# ## Declared vs actual, per node
#
# One cell per node and version: green = every declaration equals what the probe read, red = a declaration differs,
# amber = declared but not verified (simulated node, or the probe read nothing), grey = nothing declared.

# %%
display.chart(result, "versions", figsize=(10, 3.8))

# %%
display.series(result, "versions").drop(columns=["t_s", "time"], errors="ignore")

# %% [markdown]
# ## Sub-checks

# %%
display.subchecks(result)

# %% [markdown]
# ## What this proves and what it does not
#
# A PASS proves that on every probed node a pod granted one accelerator found the driver (and CUDA) version the
# node declares, through labels or DRA attributes, and that the installer, where there is one, is healthy. It does
# not prove compatibility with every CUDA application or framework, and says nothing about nodes that were not
# probed (simulated ones, or beyond `driver_probe_max_nodes`).

# %%
display.proves(result)
