# %% [markdown]
# # Disaggregated inference (`disaggregated_inference`)
#
# **What the requirement asks.** A platform that offers disaggregated inference (SHOULD in checklist 1.36, KAR-0041)
# can run a model whose prefill and decode phases run in separate pods, serve a request through a gateway, and show
# that the request really passed through both phases: the same request id appears in the logs of the pods of each
# role.
#
# **Why it matters.** Splitting prefill (compute bound) from decode (memory bound) lets each scale on its own; it only
# helps if requests are handed from one role to the other (KV cache transfer). A deployment that merely *labels* pods
# as prefill and decode but serves everything in one of them is not disaggregated.
#
# **How this notebook demonstrates it.**
# 1. *Detect (read-only).* The API kinds of the P/D frameworks (NVIDIA Dynamo, llm-d, LeaderWorkerSet, SGLang
#    RoleBasedGroup) and pods whose role label (`disagg_role_labels`, e.g. llm-d's `llm-d.ai/role`) names prefill
#    or decode. Nothing found: NOT_APPLICABLE, with a drafted justification naming what was searched. A framework
#    installed but nothing deployed on it: UNKNOWN.
# 2. *Roles.* At least one Ready prefill pod and one Ready decode pod; which node runs each (the topology chart).
# 3. *Route.* The HTTPRoute serving the deployment (`disagg_route`, else one whose backend Service or InferencePool
#    selects role pods, else the only route in the role pods' namespace, e.g. to a frontend) and the address and
#    listener of its Gateway.
# 4. *Request.* One OpenAI-style completion (`disagg_request_path`) through the Gateway with a unique
#    `disagg_request_id_header`; HTTP 200 and generated text are expected.
# 5. *Correlation.* The request id is searched in the logs of each role's pods for up to `disagg_log_wait_s`.
#
# The check creates nothing in the cluster: the P/D deployment is the platform's. In the local sandbox the
# integration tests stand one up from two small HTTP servers that play llm-d's roles (a **simulation**: no model, no
# KV cache).

# %% tags=["parameters"]
profile = ""          # parameter profile (interactive use); the runner injects final values instead
run_id = ""
output_dir = ""
kubeconfig = ""
context = ""
checklist_version = ""
disagg_role_labels = ["llm-d.ai/role", "nvidia.com/dynamo-sub-component-type"]
disagg_namespace = ""
disagg_route = ""
disagg_model = ""
disagg_request_path = "/v1/completions"
disagg_request_id_header = "X-Request-Id"
disagg_request_timeout_s = 60
disagg_log_wait_s = 20
disagg_max_pods_per_role = 8

# %%
from aiconf import display
from aiconf.execute import run_from_notebook

result = run_from_notebook("disaggregated_inference", globals())
display.verdict(result)

# %% [markdown]
# ## What was found
#
# The P/D frameworks whose APIs the cluster serves, and the request sent through the gateway (route, Gateway,
# request id, HTTP status, latency).

# %%
{"frameworks": result.metrics.get("frameworks"), "request": result.metrics.get("request")}

# %% [markdown]
# ## Topology: role x node
#
# How many pods of each role run on each node. Where the request id was found, the pod is named on its node's bar.
# Prefill and decode on different nodes means the request crossed nodes between the phases.

# %%
display.chart(result, "topology")

# %%
display.series(result, "request_path").drop(columns=["t_s", "time"], errors="ignore")

# %% [markdown]
# ## Sub-checks

# %%
display.subchecks(result)

# %% [markdown]
# ## What this proves and what it does not
#
# A PASS proves that a request sent through the platform's gateway was served and that pods of both roles logged its
# id: the phases ran in separate pods and the request was handed between them. It does not prove that KV cache was
# transferred (only that both phases saw the request), how fast the hand-over is, or that the roles run on
# accelerators. A request id found in one role only is a FAIL; found in neither, UNKNOWN (the framework may not log
# request ids: attach its request trace).

# %%
display.proves(result)
