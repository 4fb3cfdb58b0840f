"""`cooldown study run`: the study's plan trained by the engine (`cooldown.study.engine`), on
local processes or through submitit (`cooldown.study.backends`).

Before anything trains, every node's run config is built (a bad table fails naming its field),
and the study.toml is placed in the study folder. Each claimed node gets its config.toml from
`node_run_config`; see the engine for the kill-and-resume guarantees.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cooldown.configio import to_toml
from cooldown.errors import CooldownError
from cooldown.fileio import atomic_write_text
from cooldown.study.adapter_nodes import checkpoint_ready
from cooldown.study.backends import BACKENDS, LocalBackend, PoolBackend, SubmititBackend
from cooldown.study.engine import RunReport, execute
from cooldown.study.node_config import node_run_config
from cooldown.study.plan import Plan, build_plan
from cooldown.study.run_dirs import node_run
from cooldown.study.spec import StudySpec, load_study, study_dir_for

__all__ = ["BACKENDS", "RunReport", "run_study"]


def _place_study_toml(study_path: Path, study_dir: Path) -> None:
    """A study folder holds its study.toml; copy it there when --out names another folder."""
    target = study_dir / "study.toml"
    text = study_path.read_text(encoding="utf-8")
    if target.exists():
        if target.resolve() != study_path.resolve() and target.read_text(encoding="utf-8") != text:
            raise CooldownError(
                f"--out: {study_dir} holds a different study.toml; use another folder"
            )
        return
    atomic_write_text(target, text)


def _prepare(spec: StudySpec, plan: Plan, node_id: str, study_dir: Path) -> None:
    """Write the node's config.toml (a run folder that exists keeps its own)."""
    run = node_run(study_dir, node_id)
    cfg = node_run_config(spec, plan, plan.by_id[node_id], study_dir)
    if not run.exists():
        atomic_write_text(run.config_path, to_toml(cfg))


def check_configs(spec: StudySpec, plan: Plan, study_dir: Path) -> None:
    """Build every run's config before training anything: a bad [optim], [train] or [averaging]
    table fails here, naming the field, not in the first node's log."""
    for node in plan.runnable():
        node_run_config(spec, plan, node, study_dir)


def run_study(
    study_path: str | Path,
    *,
    out: str | Path | None = None,
    workers: int = 1,
    backend: str = "local",
    threads: int | None = None,
    poll_s: float = 0.2,
    stale_after_s: float = 120.0,
    log: Callable[[str], None] = print,
) -> RunReport:
    """Run (or finish) the study in `study_path`'s folder (or `out`); see the module docstring."""
    if workers < 1:
        raise CooldownError(f"--workers must be at least 1 (got {workers})")
    if backend not in BACKENDS:
        raise CooldownError(f"--backend must be one of {', '.join(BACKENDS)} (got {backend!r})")
    study_path = Path(study_path)
    spec = load_study(study_path)
    plan = build_plan(spec)
    study_dir = study_dir_for(study_path, out)
    study_dir.mkdir(parents=True, exist_ok=True)
    _place_study_toml(study_path, study_dir)
    ready = None
    if spec.adapter is not None:  # each node is an adapter run: no config.toml of ours
        ready = checkpoint_ready(spec, study_dir)
    else:
        check_configs(spec, plan, study_dir)
    if threads is None and backend != "slurm":  # a cluster node's cores are not ours to count
        threads = max(1, (os.cpu_count() or 1) // workers)
    if backend == "local":
        runner_backend: Any = LocalBackend(study_dir, threads)
    elif backend == "local-pool":
        runner_backend = PoolBackend(study_dir, workers, threads)
    else:
        runner_backend = SubmititBackend(study_dir, spec.slurm, threads, local=backend != "slurm")
    nodes = [
        {"id": n.id, **n.definition(), "definition": plan.definition(n)} for n in plan.runnable()
    ]
    return execute(
        study_dir,
        nodes,
        (lambda node_id: None) if spec.adapter else lambda n: _prepare(spec, plan, n, study_dir),
        runner_backend,
        workers=workers,
        poll_s=poll_s,
        stale_after_s=stale_after_s,
        log=log,
        checkpoint_ready=ready,
    )
