# %% [markdown]
# # AI inference traffic through the Gateway API (`ai_inference`)
#
# **What the requirement asks.** The platform must support the Kubernetes Gateway API with an implementation that
# offers weighted traffic splitting and header-based routing for OpenAI protocol headers; integration with a service
# mesh is optional (MUST in every checklist version; no KAR: the checklist text is the only specification).
#
# **Why it matters.** Rolling out a new model version means sending a share of the traffic to it, and serving many
# models behind one endpoint means routing on the model a request names. The reference suites stop at "the CRDs
# exist" or "the route is Accepted": a Gateway whose controller accepts a route but never splits it passes them. This
# notebook sends real requests and counts where they went.
#
# **How this notebook demonstrates it.**
# 1. *Gateway API (read-only).* `gateway.networking.k8s.io/v1` serves GatewayClass, Gateway and HTTPRoute; the five
#    standard CRDs are Established (bundle version and channel recorded); existing Gateways saved as evidence.
# 2. *Implementation.* GatewayClasses and their controllers; one must be **Accepted** (`inference_gateway_class`, the
#    class of `inference_gateway`, or the first Accepted one). A class nobody accepted means no implementation runs.
# 3. *Backends.* Two versions (`v1`, `v2`) of the toolkit's TEST inference server (`aiconf.workloads.inference_stub`),
#    each behind its own Service. Every answer says which version served it (`X-Aiconf-Version`).
# 4. *Gateway.* The configured existing Gateway (`inference_gateway`) or one the check creates on the class (one HTTP
#    listener on `inference_gateway_port`); it must become Accepted and **Programmed** with an address.
# 5. *HTTPRoute.* Rule 1: header `inference_model_header: inference_header_model` → v2 only. Rule 2: everything else
#    → v1/v2 weighted `100 - inference_canary_weight` / `inference_canary_weight`. The route must be Accepted with its
#    references resolved.
# 6. *Traffic.* OpenAI-shaped `POST /v1/chat/completions` requests through the Gateway's address: from the runner
#    when the address accepts a connection, otherwise from a client pod (`inference_client`). A bounded warm-up waits
#    for one answer on each rule (data planes program routes after accepting them); then `inference_requests`
#    requests without the header and `inference_header_requests` with it, over one kept-alive connection.
# 7. *Verdict.* The split passes when every request was answered and v2's configured share lies inside the exact
#    (Clopper-Pearson) interval of the observed share at `inference_confidence` (or within
#    `inference_split_tolerance`); header routing must be exact (every header request served by v2).
# 8. *Cross-check (informational).* Each backend pod's own request counter, read through the API server's pod proxy,
#    must equal the answers the client attributed to it: the answers came from the pods, not from something in
#    between that only sets the version header. A service mesh, if any, is reported (optional in the requirement).

# %% tags=["parameters"]
profile = ""          # parameter profile (interactive use); the runner injects final values instead
run_id = ""
output_dir = ""
kubeconfig = ""
context = ""
checklist_version = ""
inference_gateway = ""
inference_gateway_class = ""
inference_gateway_port = 80
inference_gateway_url = ""
inference_client = "auto"
inference_model = "aiconf-demo"
inference_model_header = "x-gateway-model-name"
inference_header_model = "aiconf-demo-canary"
inference_canary_weight = 20
inference_requests = 200
inference_header_requests = 50
inference_confidence = 0.99
inference_split_tolerance = 0.05
inference_gateway_timeout_s = 120
inference_route_timeout_s = 60
inference_traffic_timeout_s = 120
inference_request_timeout_s = 5
image_python = "python:3.12-slim"
image_pull_policy = "IfNotPresent"
pod_start_timeout_s = 300

# %%
from aiconf import display
from aiconf.execute import run_from_notebook

result = run_from_notebook("ai_inference", globals())
display.verdict(result)

# %% [markdown]
# ## The Gateway API and its implementations
#
# The standard CRDs (Established, names accepted, bundle version, channel) and every GatewayClass with its
# controller and whether the controller accepted it.

# %%
display.series(result, "crds").drop(columns=["t_s", "time"], errors="ignore")

# %%
display.series(result, "gateway_classes").drop(columns=["t_s", "time"], errors="ignore")

# %%
{k: result.metrics.get(k) for k in ("gateway_api", "gateway_class", "backend_node", "client")}

# %% [markdown]
# ## Where the traffic went
#
# Grey: the share of requests the route sends to v2 (the weight for requests without the header; 100 % for requests
# with it). Blue: the share v2 served, with its exact interval. A route that is Accepted but not split, or a header
# rule the data plane ignores, shows up here.

# %%
display.chart(result, "split")

# %% [markdown]
# ## Per-request latency
#
# Time for each request through the Gateway to a backend and back, by rule and by the version that served it. The
# backends add no service time of their own, so this is the data plane's (and the network's) share. Warm-up requests
# are left out. On your own backends, a group of requests near 40 ms usually is a TCP delayed-ACK stall (a server
# writing the response headers and the body in two small writes waits for the peer's delayed ACK), not time the
# Gateway spent routing; the toolkit's own TEST server writes each answer at once.

# %%
display.chart(result, "latency")

# %%
result.metrics.get("traffic")

# %% [markdown]
# ## Sub-checks

# %%
display.subchecks(result)

# %% [markdown]
# ## What this proves and what it does not
#
# A PASS proves that a Gateway API implementation accepted a GatewayClass, programmed a Gateway with an address, and
# carried real OpenAI-shaped requests to two backend versions in the configured proportion (within the stated
# statistical interval) while sending every request with the model header to the version its rule names. It does not
# prove anything about a real model server (the backends return canned answers), about routing on the request body or
# through an endpoint picker (Gateway API Inference Extension, see `advanced_inference_ingress`), about HTTPS
# listeners, or about behaviour under concurrent load. Mesh integration is reported, never required.

# %%
display.proves(result)
