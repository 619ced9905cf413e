# %% [markdown]
# # Isolated accelerator access (`secure_accelerator_access`)
#
# **What the requirement asks.** "Ensure that access to accelerators from within containers is properly isolated and
# mediated by the Kubernetes resource management framework (device plugin or DRA) and container runtime, preventing
# unauthorized access or interference between workloads" (MUST in every checklist version, KAR-0049). The test plan:
# a pod on an accelerator node *without* a request finds no device; of two pods with one accelerator each, one cannot
# reach the other's.
#
# **Why it matters.** A container that can open a GPU it was never given can read another tenant's model weights and
# prompts from device memory, or disturb its jobs. The classic leak is the NVIDIA runtime honouring
# `NVIDIA_VISIBLE_DEVICES=all` in any pod's environment.
#
# **How this notebook demonstrates it.** Probe pods run `aiconf/workloads/device_probe.py` (mounted from a ConfigMap;
# any image with `python3`, `secure_access_probe_image`) on one accelerator node that runs processes. Each probe
# prints a JSON document: the device nodes it sees, its environment, `nvidia-smi -L`, NVML and CUDA device lists, and
# an `open()` of every GPU device node of the node and of `/dev/nvidiactl` - created first with `mknod` when absent,
# so the devices cgroup, not a missing file, must be what refuses it. The check reads it from the pod log.
#
# | test | pods | must hold |
# |---|---|---|
# | T1 `no_request_no_device` | `t1-none`, `t1-env-all` (with `NVIDIA_VISIBLE_DEVICES=all`), no request | no accelerator node, no UUID, nvidia-smi finds nothing, every open refused |
# | T2 `one_request_one_device` | `t2` with one accelerator | exactly one node and one UUID (recorded) |
# | T3 `distinct_devices_no_cross_access` | `t3-pod-a`, `t3-pod-b`, one accelerator each, side by side | distinct UUIDs; each refused the other's node |
# | T4 `only_requesting_container` | `t4`: container `with-gpu` requests one, `without-gpu` none | only `with-gpu` sees it |
# | matrix `visibility_matrix_diagonal` | every row above | no row sees more than granted; no UUID seen twice side by side |
#
# Pods that can hold their accelerators at the same time run together (with two free accelerators: T1+T2+T4, then
# T3); with fewer than two free accelerators on every node T3 runs across two nodes and is labelled weaker. When a
# DRA driver publishes devices of `dra_device_class` for a node that runs processes, T2-T4 run again with
# ResourceClaims (`dra_isolation`); otherwise that sub-check is NOT_APPLICABLE with the reason.
#
# **The probes' security context, and why.** Unlike the toolkit's other pods, probes run as **root with the
# container runtime's default capabilities** (containerd's include CAP_MKNOD): root so that file modes never hide a
# devices-cgroup leak, CAP_MKNOD so a probe can create another accelerator's device node and show the cgroup still
# refuses it. They are never privileged (`privileged: false`), never escalate, add no capability, mount no host path,
# keep a read-only root file system and the runtime's default seccomp profile: Pod Security "baseline" admits them.
#
# **What runs where.** Probes run only on nodes that run processes; simulated (kwok) accelerator nodes are skipped
# with the reason, and a cluster with only simulated accelerator nodes is UNKNOWN (cannot demonstrate), never PASS.
# In the local sandbox the node is its one real node: kubelet + containerd + runc, a fake NVIDIA device plugin that
# grants real device nodes (char 195:N) through the devices cgroup, and a fake `nvidia-smi`; no GPU or driver sits
# behind the nodes (an allowed open ends in ENXIO, a refused one in EPERM). The same probe and judgement ran in real
# runc containers on two H200s: `docs/evidence/README.md`.

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
pod_start_timeout_s = 300
cleanup_timeout_s = 180
secure_access_probe_image = ""
secure_access_node = ""
secure_access_probe_timeout_s = 120
secure_access_dra = "auto"

# %%
from aiconf import display
from aiconf.execute import run_from_notebook

result = run_from_notebook("secure_accelerator_access", globals())
display.verdict(result)

# %% [markdown]
# ## Accelerator nodes
#
# Which nodes advertise accelerators, which are simulated (skipped: no processes run there) and where the probes ran.

# %%
display.series(result, "nodes").drop(columns=["t_s", "time"], errors="ignore")

# %% [markdown]
# ## What each container saw
#
# One row per probed container: what it was granted, the accelerator nodes and UUIDs it saw, `nvidia-smi`'s exit
# code, the device nodes it could open (or reach past the devices cgroup: ENXIO/ENODEV) and those refused, with the
# errno. The full JSON of every probe is in the evidence (`probes/<label>.json`).

# %%
display.series(result, "probes").drop(columns=["t_s", "time"], errors="ignore")

# %% [markdown]
# ## Visibility matrix
#
# Containers x GPU UUIDs: green = seen and granted, red = seen without being granted, or seen by two containers that
# ran side by side (grey lines separate the groups that ran together). Isolation holds when the matrix is diagonal.

# %%
display.chart(result, "visibility_matrix", figsize=(9, 4.2))

# %% [markdown]
# ## Sub-checks

# %%
display.subchecks(result)

# %% [markdown]
# ## What this proves and what it does not
#
# A PASS proves, on the node probed, that the device plugin (and DRA, when it ran) and the container runtime give a
# container exactly the accelerators it requested - nothing without a request even when the environment asks for
# all of them, one of one, not the neighbour's even by creating its device node - and that the other container of a
# pod gets nothing. It does not prove that device memory is cleared between tenants, nor isolation on node types or
# runtime configurations that were not probed.

# %%
display.proves(result)
