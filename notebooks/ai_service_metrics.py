# %% [markdown]
# # AI service metrics (`ai_service_metrics`)
#
# **What the requirement asks.** The platform's monitoring system must be able to discover and collect metrics from
# workloads that expose them in a standard format such as Prometheus exposition (MUST in every checklist version,
# KAR-0061). The test plan: deploy an AI application, configure metrics collection for it, send sample traffic, then
# query the platform's monitoring system and verify that key metrics (request count, latency, queue depth) were
# collected and reflect the traffic.
#
# **Why it matters.** Autoscaling on queue depth, SLOs on latency and capacity planning all read an inference
# service's own metrics through the platform's monitoring. A monitoring stack that runs but never picks up a new
# workload (a monitor with the wrong labels, a namespace its selectors ignore) looks healthy to a "Prometheus is
# installed" test.
#
# **How this notebook demonstrates it.**
# 1. *Monitoring system.* `service_metrics_prometheus`, else a Prometheus Operator instance (its `prometheus-operated`
#    Service), else a Service labelled `app.kubernetes.io/name=prometheus` or `app=prometheus`. ServiceMonitor /
#    PodMonitor CRDs, the instances' monitor selectors and OpenTelemetry collectors are listed beside it. A
#    Prometheus the toolkit deployed itself never counts as the platform's.
# 2. *Query endpoint.* An instant query (`count(up)`) through the API server's service proxy: the runner needs no
#    network path to the monitoring system.
# 3. *Workload.* aiconf's test inference server (`aiconf/workloads/inference_stub.py`, stdlib Python mounted from a
#    ConfigMap, OpenAI-shaped answers without a model) exposes `aiconf_requests_total` (counter),
#    `aiconf_request_duration_seconds` (histogram) and `aiconf_requests_running` (gauge). It is registered the
#    platform's way: a ServiceMonitor or PodMonitor labelled for the Operator instance's selectors, or the
#    `prometheus.io/*` annotations; the discovery latency is measured (pod Ready → first sample queried).
# 4. *Traffic.* Exactly `service_metrics_requests` (K) completions through the API server's service proxy, spread
#    over `service_metrics_send_s` seconds, never retried; the monitoring system is queried every
#    `service_metrics_query_interval_s` seconds until the counter of this run's namespace equals K (and the
#    histogram's count is at least K), at most `service_metrics_query_timeout_s` after the last send.
#
# **What runs where.** One Deployment (one pod, non-root, read-only root file system, every capability dropped), a
# Service and the monitor in a labelled namespace of the check's own, captured as evidence, then deleted. In the
# local sandbox the monitoring system is the sandbox's Prometheus 3.16 (built from upstream) on its real node; it
# reads PodMonitors/ServiceMonitors through a small translator instead of the Prometheus Operator: the result says
# so.

# %% tags=["parameters"]
profile = ""  # parameter profile (interactive use); the runner injects final values instead
run_id = ""
output_dir = ""
kubeconfig = ""
context = ""
checklist_version = ""
image_python = "python:3.12-slim"
image_pull_policy = "IfNotPresent"
pod_start_timeout_s = 300
request_timeout_s = 30
service_metrics_prometheus = ""
service_metrics_registration = "auto"
service_metrics_monitor_labels = {}
service_metrics_node_selector = ""
service_metrics_requests = 20
service_metrics_send_s = 10
service_metrics_query_interval_s = 5
service_metrics_discovery_timeout_s = 300
service_metrics_query_timeout_s = 120

# %%
from aiconf import display
from aiconf.execute import run_from_notebook

result = run_from_notebook("ai_service_metrics", globals())
display.verdict(result)

# %% [markdown]
# ## The monitoring system found
#
# The query endpoint the check used, how it was found, and what else the cluster shows of its monitoring (Operator
# instances with their monitor selectors, monitor CRDs, OpenTelemetry collectors), then how the workload was
# registered and why.

# %%
{
    "registration": result.metrics.get("registration"),
    "discovery_latency_s": result.metrics.get("discovery_latency_s"),
    "collection_latency_s": result.metrics.get("collection_latency_s"),
    "requests_sent": result.metrics.get("requests_sent"),
    "send_failures": result.metrics.get("send_failures"),
}

# %% [markdown]
# ## The counter follows the traffic
#
# The grey steps are the completions the runner sent (client side); the points are what the monitoring system
# returned for this run's series at each query: the request counter and the latency histogram's count. They lag by
# up to a scrape interval and must end exactly at K.

# %%
display.chart(result, "counter")

# %% [markdown]
# ## Discovery latency
#
# Seconds from the workload's creation to its pod being Ready, to the first sample the monitoring system returned
# (service discovery plus a scrape), and to the counter reaching K.

# %%
display.chart(result, "discovery", figsize=(9, 2.6))

# %% [markdown]
# ## Sub-checks

# %%
display.subchecks(result)

# %% [markdown]
# ## What this proves and what it does not
#
# A PASS proves that the platform's own monitoring system discovered a newly deployed workload through its standard
# registration mechanism and collected its request counter exactly (K sent, K queried), its latency histogram and its
# queue-depth gauge. It does not prove that a particular model server's metrics (vLLM, Triton, ...) are collected,
# nor anything about alerting, retention or dashboards. A Prometheus the toolkit deployed itself never yields a PASS.

# %%
display.proves(result)
