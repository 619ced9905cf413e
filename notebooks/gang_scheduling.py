# %% [markdown]
# # Gang scheduling (`gang_scheduling`)
#
# **What the requirement asks.** The platform "must allow for the installation and successful operation of at least
# one gang scheduling solution that ensures all-or-nothing scheduling" (e.g. Kueue, Volcano). It is a MUST in every
# checklist version (1.33-1.36; test plan KAR-0053).
#
# **Why it matters.** A distributed training job whose workers start one by one holds accelerators while it waits
# for the rest; two such jobs can deadlock a cluster. A gang scheduler admits a multi-pod workload only when *all* of
# its pods fit, and then starts them together.
#
# **How this notebook demonstrates it.** Existing suites only run a job that fits and wait for it to complete, which
# any scheduler passes. This check also runs the case a non-gang scheduler fails: a gang one pod too large.
# 1. *Detect* the gang solution by the APIs the cluster serves (Kueue `kueue.x-k8s.io` v1beta2/v1beta1, Volcano,
#    KAI, coscheduling) and check that it *works*: Kueue's fail-closed webhook must answer a server-side dry-run
#    create, and its controller must activate the check's own ClusterQueue. No solution: FAIL.
# 2. *Size the gang.* N pods (`gang_size`; 0 = the free accelerators less one, at most 4). Each pod asks for one
#    accelerator when N+1 are free (`gang_use_gpus`), else 50m CPU. The result says which.
# 3. *Create a private queue:* a ResourceFlavor and a ClusterQueue (cluster-scoped, labelled, deleted afterwards)
#    whose nominal quota of the gang resource is exactly N, usable only from the check's namespace, and a LocalQueue.
# 4. *Positive:* a Job with parallelism = completions = N. Every pod must be Running at the same moment; each pod's
#    created / scheduled / started / finished times and the start skew are recorded (watch-observed, and from the
#    API's timestamps, which have 1 s resolution). The check waits until the Job's pods finish and the queue is empty.
# 5. *Negative:* with the queue empty, a Job of N+1 pods. N of its pods *would* fit, so a scheduler without gang
#    semantics would start them. For `gang_negative_hold_s` a watch records every change: no pod may be bound to a
#    node or Running. Kueue keeps the Job suspended and its Workload not admitted.
# 6. *Release:* the quota is raised to N+1 and the same Job must run, all N+1 pods together. Without this step a
#    queue that admits nothing would pass the negative case.
#
# **What runs where.** Everything is labelled with the run id and deleted at the end (the namespace after its
# objects, events and logs are saved). In the local sandbox Kueue runs as a host process outside the cluster (its
# webhook on 127.0.0.1) and the accelerator nodes are simulated by kwok: pods on them are marked Running without
# running a process. Quota, admission and scheduling are real.

# %% tags=["parameters"]
profile = ""          # parameter profile (interactive use); the runner injects final values instead
run_id = ""
output_dir = ""
kubeconfig = ""
context = ""
checklist_version = ""
gang_scheduler = "auto"
gang_size = 0
gang_use_gpus = True
gang_negative_hold_s = 30
gang_timeout_s = 300
gang_pod_run_s = 20
gang_node_selector = ""
gpu_resource_name = "nvidia.com/gpu"
gpu_node_selector = "nvidia.com/gpu.present=true"
gpu_taint_key = "nvidia.com/gpu"
runtime_class_name = ""
image_utility = "busybox:1.36"
image_pull_policy = "IfNotPresent"

# %%
from aiconf import display
from aiconf.checks import gang_scheduling
from aiconf.execute import run_from_notebook

result = run_from_notebook("gang_scheduling", globals())
display.verdict(result)

# %% [markdown]
# ## The gang solution and the gang
#
# Which solutions the cluster serves, how the one tested showed it works (webhook answer, controller pods or host
# process), and the gang: its size N, the resource its quota is about, and the free accelerators it was sized from.

# %%
gang_scheduling.summary_frame(result)

# %% [markdown]
# ## Every pod's life
#
# Objects created: ResourceFlavor and ClusterQueue `aiconf-gang-<run>` (quota N, raised to N+1 at the end), LocalQueue
# `aiconf-gang`, Job `gang-fits` (N pods) and Job `gang-too-big` (N+1 pods). One bar per pod, from creation (grey)
# through scheduling (amber) to running (green); the shaded band is the hold, during which the N+1 gang must not
# appear at all. Times are seconds since the check started, as a watch saw them (`gang_timeout_s` bounds each gang).

# %%
display.chart(result, "gantt", figsize=(10, 4.5))

# %%
display.series(result, "pod_timeline").drop(columns=["t_s", "time"], errors="ignore")

# %% [markdown]
# ## All or nothing
#
# Running pods over time. The fitting gang goes from 0 to N at once. The capacity+1 gang stays at zero for the whole
# hold (scheduled pods dotted: also zero) although N of its pods would fit, then goes to N+1 at once when the quota is
# raised. A scheduler that admits part of a gang shows a step between 0 and N+1 in the band.

# %%
display.chart(result, "running_pods", figsize=(10, 4))

# %% [markdown]
# ## Sub-checks

# %%
display.subchecks(result)

# %% [markdown]
# ## What this proves and what it does not
#
# A PASS proves that a gang solution is installed and its controller works, that it admits a multi-pod workload as
# a whole and starts its pods together, and that it holds back, entirely, a workload that does not fit, until it
# fits. Admission and quota are Kueue's real behaviour even on simulated nodes. It does not prove that the
# workload's processes meet (on kwok nodes no container runs), nor gang behaviour when the *scheduler* rather than
# quota is the limit (Kueue's `waitForPodsReady` covers that by evicting a gang whose pods do not all start; the
# `gang_config` row reports whether it is on).

# %%
display.proves(result)
