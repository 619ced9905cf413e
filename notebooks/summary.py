# %% [markdown]
# # Kubernetes AI Conformance: evaluation summary
#
# This report collects the results of one `aiconf run`: which requirements of the CNCF Kubernetes AI Conformance
# checklist were evaluated on which cluster, what each check observed, and what a submission's `PRODUCT.yaml` would
# say. Every requirement has its own section below with its charts, its sub-checks, what the verdict does and does
# not prove, and links to the executed notebook and the evidence files (the links are relative to this file's
# folder). The report reads only the run folder; it never contacts the cluster.

# %% tags=["parameters"]
run_dir = ""  # the run folder (outputs/<run-id>); empty: outputs/latest. The report builder injects it
baseline_dir = ""  # an earlier run folder to compare with (empty: no comparison)

# %%
from aiconf.report import summary

run = summary.load(run_dir)
summary.header(run)

# %% [markdown]
# ## Requirements at a glance
#
# One row per requirement evaluated in this run, in the checklist's order. The suggested status is what
# `aiconf submission build` would write into `PRODUCT.yaml` (see "Suggested PRODUCT.yaml statuses" below).

# %%
summary.overview(run)

# %%
summary.legend()

# %%
summary.durations_chart(run)

# %% [markdown]
# ## Suggested PRODUCT.yaml statuses
#
# PASS becomes *Implemented*; FAIL becomes *Not Implemented*, or *Partially Implemented* when some required
# sub-checks passed; NOT_APPLICABLE becomes *N/A* with the drafted justification as notes; UNKNOWN, ERROR and SKIPPED
# are left for the auditor to decide with manual evidence.

# %%
summary.product_statuses(run)

# %% [markdown]
# ## Changes since the baseline run

# %%
summary.baseline(run, baseline_dir)

# %% [markdown]
# ## Requirements in detail

# %%
summary.toc(run)

# %%
summary.requirement_sections(run)

# %% [markdown]
# ## Run parameters
#
# The parameter values every check ran with (secrets redacted). Re-running with the same profile and these values
# reproduces the run.

# %%
summary.parameters_table(run)
