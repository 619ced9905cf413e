# %% [markdown]
# # GPU sharing (`gpu_sharing`)
#
# **What the requirement asks.** A SHOULD of checklists 1.35 and 1.36 (KAR-0003): a single physical GPU can be
# exposed as several allocatable GPU resources that Kubernetes schedules, and several workloads requesting those
# logical GPUs are scheduled and run on the same physical GPU. NVIDIA offers this as time-slicing or MPS (the
# device plugin advertises N replicas per GPU), as MIG partitions (`nvidia.com/mig-<profile>` resources), and through
# DRA (partitionable or shareable devices).
#
# **Why it matters.** Small inference services, notebooks and CI jobs rarely need a whole GPU; sharing lets a platform
# pack them instead of leaving most of each GPU idle.
#
# **How this notebook demonstrates it.**
#
# 1. *Detection, read only.* For every accelerator node: the units of `gpu_resource_name` (or its `.shared` rename)
#    against the physical count GPU Feature Discovery labels (`nvidia.com/gpu.count`), the sharing labels
#    (`nvidia.com/gpu.replicas`, `nvidia.com/gpu.sharing-strategy`, the `-SHARED` product suffix), MIG resources, and
#    DRA ResourceSlices with shared counters or multiple allocations. Labels that claim sharing while the node
#    advertises no more units than GPUs are a FAIL. No sharing anywhere: NOT_APPLICABLE, with a drafted justification.
# 2. *Behaviour.* On a node that runs processes and shares by time-slicing or MPS, `physical + gpu_sharing_extra_pods`
#    pods each request one unit and are pinned to the node. All must be Running at the same time. Each runs the
#    device probe (`nvidia-smi -L`, NVML, CUDA) and reports the GPU UUIDs it sees; more pods than GPUs means, by the
#    pigeonhole principle, that at least one GPU must be seen by two pods, unless the units are not really replicas.
# 3. *Tally.* Pods per physical GPU UUID (the chart below); every pod must see exactly one GPU, and no more distinct
#    GPUs may appear than the node declares.
#
# **What runs where.** MIG and DRA sharing are detected, but their behavioural proof is not automated (UNKNOWN: attach
# `nvidia-smi -L` evidence). Sharing advertised only on nodes simulated by kwok is UNKNOWN: they run no processes. In
# the local sandbox (`aiconf sandbox up --real-node-gpu-replicas 2`) the real node's fake device plugin advertises
# two replicas per simulated GPU (IDs `<uuid>::<k>`, as NVIDIA's plugin does) and labels the node as GFD labels a
# time-sliced node; each pod holding a replica gets that GPU's device node through the devices cgroup, and the fake
# `nvidia-smi` lists the GPUs the container may open. No GPU or driver sits behind those device nodes.

# %% tags=["parameters"]
profile = ""  # parameter profile (interactive use); the runner injects final values instead
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
pod_start_timeout_s = 300
cleanup_timeout_s = 180
gpu_sharing_node = ""
gpu_sharing_extra_pods = 1
gpu_sharing_max_pods = 17
gpu_sharing_probe_timeout_s = 60
gpu_sharing_hold_s = 600

# %%
from aiconf import display
from aiconf.execute import run_from_notebook

result = run_from_notebook("gpu_sharing", globals())
display.verdict(result)

# %% [markdown]
# ## Accelerator nodes and how they share
#
# One row per accelerator node: the resource and units it advertises, the physical GPU count from its labels, the
# time-slicing replicas and strategy, MIG resources, whether it shares (units > GPUs) and whether its labels
# contradict its units.

# %%
display.series(result, "nodes").drop(columns=["t_s", "time"], errors="ignore")

# %% [markdown]
# ## The shared pods
#
# One row per pod of the behavioural test: its state and the GPU UUIDs its probe saw (full probe documents are in
# the evidence, `probes/<pod>.json`).

# %%
display.series(result, "pods").drop(columns=["t_s", "time"], errors="ignore")

# %% [markdown]
# ## Pods per physical GPU
#
# Green bars are GPUs held by several pods at the same time; the dashed line is what exclusive allocation would give.

# %%
display.chart(result, "pods_per_gpu")

# %% [markdown]
# ## Sub-checks

# %%
display.subchecks(result)

# %% [markdown]
# ## What this proves and what it does not
#
# A PASS proves that on the node tested more pods than GPUs, one unit each, ran at the same time, each saw exactly
# one GPU, and some GPU was seen by several of them: the units are shares of physical GPUs that Kubernetes schedules.
# It does not prove a fair or guaranteed share of compute or memory (time-slicing isolates neither), that CUDA work
# runs on the shared GPU (the probe lists devices and runs no kernel), nor sharing on node types that were not tested.

# %%
display.proves(result)
