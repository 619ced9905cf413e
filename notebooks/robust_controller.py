# %% [markdown]
# # A robust AI operator (`robust_controller`)
#
# **What the requirement asks.** "At least one complex AI operator with a CRD (e.g., Ray, Kubeflow) can be installed
# and functions reliably": the "operator's pods run correctly, its webhooks are operational, and its custom
# resources can be reconciled". It is a MUST in every checklist version (1.33-1.36; test plan KAR-0063).
#
# **Why it matters.** AI platforms are run through operators: a RayCluster or a TrainJob is only as reliable as the
# controller that turns it into pods, and the webhook that refuses a wrong spec before it half-deploys.
#
# **How this notebook demonstrates it.** The operator is described by a profile (`operator_profile`: KubeRay by
# default, or `custom` from the `operator_*` parameters).
# 1. *CRDs:* every CRD of the profile is Established and its names accepted.
# 2. *Webhooks:* a validating admission webhook of the operator covers CREATE of its custom resource, carries a
#    caBundle, and the Service it names exists with ready endpoints (or points outside the cluster). Webhooks of other
#    components on the same kind (Kueue registers `vraycluster.kb.io` too) are listed but do not count.
# 3. *Operator:* its pods are Ready. The sandbox runs KubeRay as a host process, so there are no pods; the notebook
#    says so, and judges it by what it does (webhook answering, controller reconciling).
# 4. *Webhook refusal:* a custom resource the CRD schema accepts but that is wrong (KubeRay: two worker groups with
#    the same name) is created with a **server-side dry run**. The API server's answer is classified: refused by an
#    admission webhook (passes only if it is the operator's, for the operator's reason), refused by the schema or CEL
#    rules, by a ValidatingAdmissionPolicy, webhook not callable, or accepted. Other suites count a schema refusal
#    ("Required value") as a webhook test; here it fails. The valid resource must pass the same dry run.
# 5. *Reconcile:* a valid, CPU-only custom resource is created; a watch records its state until it is ready
#    (`status.state == ready` for RayCluster) and the reconcile latency. Its children (Pods, Services) must carry
#    ownerReferences to it.
# 6. *Clean-up:* it is deleted; a watch waits until it and every child it owned are gone.
#
# **What runs where.** Everything is created in the check's own namespace, labelled with the run id, saved as
# evidence and deleted. In the sandbox the RayCluster's pods land on simulated (kwok) nodes: "ready" means the
# operator saw its pods Running and Ready as kwok reports them; no Ray process runs.

# %% tags=["parameters"]
profile = ""          # parameter profile (interactive use); the runner injects final values instead
run_id = ""
output_dir = ""
kubeconfig = ""
context = ""
checklist_version = ""
operator_profile = "kuberay"
operator_reconcile_timeout_s = 180
operator_gc_timeout_s = 120
operator_namespace = ""
operator_pod_selector = ""
operator_node_selector = ""
operator_ray_image = "rayproject/ray:2.46.0"
operator_crd_group = ""
operator_crds = []
operator_valid_cr = ""
operator_invalid_cr = ""
operator_denial_contains = ""
operator_ready_field = ""
operator_ready_value = ""
operator_child_kinds = []
operator_webhook_match = ""
image_pull_policy = "IfNotPresent"

# %%
from aiconf import display
from aiconf.checks import robust_controller
from aiconf.execute import run_from_notebook

result = run_from_notebook("robust_controller", globals())
display.verdict(result)

# %% [markdown]
# ## CRDs and admission webhooks found
#
# The CRDs of the profile with their conditions, and every admission webhook whose rules cover CREATE of the custom
# resource: its configuration, failure policy, caBundle, where calls go, and whether it is the operator's own.

# %%
robust_controller.webhooks_frame(result)

# %% [markdown]
# ## The webhook's answer to an invalid resource
#
# What the API server answered to the server-side dry-run create of the invalid resource (and of the valid one), as
# classified. The full manifest and answer are in the evidence (`admission.yaml`).

# %%
robust_controller.admission_frame(result)

# %% [markdown]
# ## The custom resource's lifecycle
#
# Objects created: the valid custom resource `aiconf-valid` (for KubeRay a RayCluster with one head and one worker,
# CPU requests only); the operator creates its children. The chart shows its state as a watch saw it, from creation
# to ready (reconcile latency) and from deletion until the children it owned are gone (garbage-collection latency).
# Waits: `operator_reconcile_timeout_s`, `operator_gc_timeout_s`.

# %%
display.chart(result, "cr_timeline", figsize=(10, 4))

# %%
robust_controller.lifecycle_frame(result)

# %% [markdown]
# ## Sub-checks

# %%
display.subchecks(result)

# %% [markdown]
# ## What this proves and what it does not
#
# A PASS proves the operator's API is registered, its admission webhook is wired *and answers* (it refused a
# resource the schema allows), and its controller reconciles a resource to ready with owned children that vanish
# when it is deleted. It does not prove that the workloads it manages do useful work (on simulated nodes no
# container runs), nor resilience to operator restarts or upgrades, nor that every rule of its webhook is right.

# %%
display.proves(result)
