# %% [markdown]
# # Pod autoscaling on AI metrics (`pod_autoscaling`)
#
# **What the requirement asks.** "If the platform supports the HorizontalPodAutoscaler, it must function correctly
# for pods utilizing accelerators", including scaling them "based on custom metrics relevant to AI/ML workloads"
# (MUST in every checklist version, KAR-0057).
#
# **Why it matters.** Inference services scale on workload signals such as queue depth, not CPU. The chain that makes
# that work - the workload's metric, an adapter behind the custom metrics API, the HPA controller, the scheduler
# placing new replicas on accelerator nodes - breaks in many places; a platform passes only when the whole chain works,
# in both directions.
#
# **How this notebook demonstrates it.**
# 1. *Metrics APIs (read-only).* autoscaling/v2 is served; the APIServices `v1beta2`/`v1beta1.custom.metrics.k8s.io`,
#    `v1beta1.external.metrics.k8s.io` and `v1beta1.metrics.k8s.io` and whether each is Available (with the reason
#    when not); the metric names the custom metrics API lists. No Available custom metrics API is a FAIL with the
#    APIService's own message.
# 2. *Workload.* A Deployment at `hpa_min_replicas` whose pods request one accelerator (`gpu_resource_name`) when
#    accelerator nodes exist, and carry the workload metric `hpa_metric_name` (an inference queue depth).
# 3. *Metric first.* The check waits until the custom metrics API returns the metric for the workload's pods
#    (`hpa_metric_timeout_s`) *before* creating the HPA, so a later failure to scale is never a missing metric.
# 4. *HPA.* autoscaling/v2 HPA, `type: Pods` metric, target `hpa_target_value` per pod, `behavior` set so scale-up is
#    immediate and scale-down waits only `hpa_scale_down_window_s` (not the 5-minute default). The check waits for
#    `ScalingActive=True` with a current value.
# 5. *Load on.* The total queue depth is raised to 1.5 x target x maxReplicas and spread over the pods (new pods get
#    their share: the same total over more pods is less per pod, as with a real queue). Waits (watches): desiredReplicas
#    reaches `hpa_max_replicas`, the new pods are Ready; where each landed is recorded. The load stays on for
#    `hpa_peak_hold_s` while the HPA is watched for a drop.
# 6. *Load off.* The metric goes to zero; waits: desiredReplicas back to `hpa_min_replicas` and the extra pods gone.
#
# Throughout, a sampler records the metric as the custom metrics API serves it, the HPA's desired/current replicas,
# the Deployment's ready replicas and where pods run: the scaling curve below.
#
# **How the metric is produced.** The check sets each pod's annotation `metrics.aiconf.io/<metric>` to its share of
# the load. With `hpa_metric_source: workload` (or `auto`) every pod also runs a small exporter that serves that
# value on `:8080/metrics` in Prometheus format (read from its own annotations through the downward API), for the
# platform's adapter (e.g. prometheus-adapter) to publish as a Pods metric. In the local sandbox the nodes are kwok
# nodes, no process runs in the pods, and the sandbox's adapter reads the annotation directly: the result then says
# **simulated metric source**. Either way the *value* is driven by the check, not by real inference traffic.

# %% tags=["parameters"]
profile = ""          # parameter profile (interactive use); the runner injects final values instead
run_id = ""
output_dir = ""
kubeconfig = ""
context = ""
checklist_version = ""
hpa_metric_name = "aiconf_inference_queue_depth"
hpa_metric_source = "auto"
hpa_target_value = 10
hpa_min_replicas = 1
hpa_max_replicas = 3
hpa_metric_timeout_s = 180
hpa_scale_up_timeout_s = 300
hpa_scale_down_timeout_s = 300
hpa_scale_down_window_s = 30
hpa_peak_hold_s = 20
gpu_resource_name = "nvidia.com/gpu"
gpu_taint_key = "nvidia.com/gpu"
runtime_class_name = ""
image_utility = "busybox:1.36"
image_python = "python:3.12-slim"
image_pull_policy = "IfNotPresent"
pod_start_timeout_s = 300
sample_interval_s = 2

# %%
from aiconf import display
from aiconf.execute import run_from_notebook

result = run_from_notebook("pod_autoscaling", globals())
display.verdict(result)

# %% [markdown]
# ## Metrics APIs
#
# Each APIService the HPA can read from, whether the aggregator reports it Available, and where it points.

# %%
display.series(result, "metrics_apis").drop(columns=["t_s", "time"], errors="ignore")

# %%
{"metric source": result.metrics.get("metric_source"), "custom metric names listed": result.metrics.get("custom_metric_names"),
 "accelerator nodes": result.metrics.get("accelerator_nodes"), "free accelerators at start": result.metrics.get("free_accelerators")}

# %% [markdown]
# ## The HPA scaling curve
#
# Left axis: the metric per pod as the custom metrics API served it, and the target. Right axis: the HPA's desired
# and current replicas and the Deployment's ready replicas. Dotted lines mark the phases (HPA created, load on, HPA
# scaled up, replicas ready, load off, HPA scaled down, replicas at minimum).

# %%
display.chart(result, "hpa_curve")

# %%
{k: result.metrics.get(k) for k in ("hpa_scale_up_decision_s", "hpa_scale_up_s", "hpa_scale_down_decision_s",
                                    "hpa_scale_down_s", "hpa_held_peak", "hpa_curve_summary")}

# %% [markdown]
# ## Where the replicas ran
#
# Every pod at the peak: its node, whether that node has allocatable accelerators and whether the pod requests one.

# %%
display.series(result, "placements").drop(columns=["t_s", "time"], errors="ignore")

# %% [markdown]
# ## Sub-checks

# %%
display.subchecks(result)

# %% [markdown]
# ## What this proves and what it does not
#
# A PASS proves that the HPA read a per-pod custom metric through `custom.metrics.k8s.io`, scaled a Deployment of
# accelerator pods up to its maximum with the new pods on accelerator nodes, held it under steady load, and scaled it
# back down. It does not prove that real inference traffic drives the metric (the check sets the value), nor, with a
# simulated source, that the platform's own metrics pipeline works. A run without accelerator nodes can never PASS.

# %%
display.proves(result)
