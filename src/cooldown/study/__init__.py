"""Scaling-law studies: a sweep of sizes x budgets x methods as a resumable graph of runs.

    cooldown study plan study.toml      # the graph, its compute per method, the savings
    cooldown study run study.toml       # run it (resumable; several workers; local or SLURM)
    cooldown study status study.toml    # progress
    cooldown study results study.toml   # one row per point, CSV (+ Parquet)

Modules: `spec` (the typed study.toml), `plan` (the graph and compute accounting), `plan_table`
(the printed plan, device-hours), `state` (the SQLite state and transactional claims),
`node_config` (a node's RunConfig), `node` (the process that trains one node), `runner` (local
and submitit backends), `status`, `results`, `predicted_points` (the predicted method's losses),
`predicted` (its scaling fit against the cooldown method's). Importing any of them loads no
torch; only building run configs and training do.
"""

from cooldown.study.plan import Plan, PlanNode, build_plan
from cooldown.study.plan_table import Throughput, format_plan, plan_study
from cooldown.study.results import Results, collect_results, study_results, write_results
from cooldown.study.runner import RunReport, run_study
from cooldown.study.spec import StudySpec, load_study, study_from_dict
from cooldown.study.status import study_status

__all__ = [
    "Plan",
    "PlanNode",
    "Results",
    "RunReport",
    "StudySpec",
    "Throughput",
    "build_plan",
    "collect_results",
    "format_plan",
    "load_study",
    "plan_study",
    "run_study",
    "study_from_dict",
    "study_results",
    "study_status",
    "write_results",
]
