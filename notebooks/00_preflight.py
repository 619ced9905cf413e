# %% [markdown]
# # Preflight: what this cluster offers
#
# Read-only facts about the cluster under evaluation, collected before any check creates anything: the server and
# the checklist version it maps to, the nodes and their accelerators (extended resources and DRA ResourceSlices),
# the API groups served, and the components the checks can use (gang schedulers, Gateway API, monitoring,
# operators, autoscalers). Nodes marked *simulated* are kwok-managed: their pods run no processes.

# %% tags=["parameters"]
profile = ""
run_id = ""
output_dir = ""
kubeconfig = ""
context = ""
checklist_version = ""
gpu_resource_name = "nvidia.com/gpu"

# %%
import pandas as pd

from aiconf import checklists, facts
from aiconf.execute import connect, resolve_version
from aiconf.params import load_defaults, load_parameters

_defaults = load_defaults()
params = load_parameters(profile or None, {k: v for k, v in globals().items() if k in _defaults and v != _defaults[k]})
kube = connect(params)
server = kube.version()
version = resolve_version(params, kube)
pd.DataFrame([{"API server": kube.server, "Kubernetes": server.get("gitVersion"), "platform": server.get("platform"),
               "checklist version": version}])

# %% [markdown]
# ## Nodes and accelerators

# %%
node_rows = facts.nodes(kube, params)
pd.DataFrame(node_rows)

# %%
pd.DataFrame([{"accelerator": k, "count": v} for k, v in facts.accelerators(kube, node_rows, params).items()])

# %% [markdown]
# ## Components detected from the API groups served

# %%
groups = facts.api_groups(kube)
pd.DataFrame(facts.components(groups))

# %% [markdown]
# ## Requirements of checklist the cluster maps to

# %%
pd.DataFrame([{"requirement": r.id, "category": r.category, "level": r.level(version), "needs": ", ".join(r.needs)}
              for r in checklists.load().for_version(version)])
