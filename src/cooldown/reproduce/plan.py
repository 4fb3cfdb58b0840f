"""The runs of a reproduction: their configs, and the study engine that trains them.

Every run is a node of the study engine (`cooldown.study.engine`) in the reproduction's folder:
`OUT/runs/KEY`, trained by one of `workers` long-lived processes (`PoolBackend`: no Python and
torch start-up per run), its state in `OUT/study.sqlite`.
So a reproduction has the study's kill-and-resume story: a rerun records finished runs without
training them, resumes interrupted ones from their last checkpoint, and starts a branch as soon
as its parent's checkpoint at the branch step exists. On CPU two single-threaded processes train
two tiny models at once, which on 2 cores is nearly twice the throughput of one two-threaded run.
Each run ends with its paired evaluation (`train.final_doc_eval_tokens`, see
`cooldown.reproduce.evidence`), computed in its own process.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cooldown.branch import make_branch_config
from cooldown.config import RunConfig
from cooldown.configio import to_toml
from cooldown.errors import CooldownError
from cooldown.fileio import atomic_write_text
from cooldown.reproduce.presets import Preset
from cooldown.study.backends import PoolBackend
from cooldown.study.engine import execute
from cooldown.study.run_dirs import node_run

# Run folders are planned relative to the reproduction's folder, where the engine's processes run.
RUNS = Path("runs")


@dataclass
class Task:
    key: str  # relative run folder under OUT/runs
    experiment: str  # the experiment letter(s) it serves, for progress lines
    config: dict  # a RunConfig as plain data
    parent: str | None = None  # key of the run it branches from
    steps: int = 0  # updates this run itself trains (for ordering and the compute plan)
    deps: list[str] = field(default_factory=list)


def base_config(p: Preset, *, model: dict | None = None, seed: int = 0) -> dict:
    return {
        "model": dict(model or p.model),
        "data": dict(p.data),
        "optim": {},
        "train": {
            "batch_size": p.batch_size,
            "seq_len": p.seq_len,
            "seed": seed,
            "device": p.device,
            "precision": p.precision,
            "eval_interval": p.eval_interval,
            "eval_batches": p.eval_batches,
            "log_interval": p.eval_interval,
            "checkpoint_interval": max(p.eval_interval * 4, 100),
            "keep_last": 1,
            "progress": False,
            # The final loss every claim uses is the paired evaluation the worker runs after
            # training (`cooldown.reproduce.evidence`); a full pass over ~300 documents would
            # cost more than a small run's training.
            "final_full_eval": False,
            "final_doc_eval_tokens": p.val_doc_tokens,
        },
    }


def cosine_config(p: Preset, steps: int, *, lr: float, model=None, seed=0, swa=False) -> dict:
    cfg = base_config(p, model=model, seed=seed)
    cfg["optim"]["lr"] = lr
    cfg["schedule"] = {
        "kind": "cosine",
        "total_steps": steps,
        "warmup_steps": p.warmup_steps,
        "final_lr_frac": 0.1,
    }
    if swa:
        cfg["averaging"] = _averaging(p)
    return cfg


def constant_config(p: Preset, steps: int, *, lr: float, branch_at, model=None, seed=0, swa=False):
    cfg = base_config(p, model=model, seed=seed)
    cfg["optim"]["lr"] = lr
    cfg["schedule"] = {"kind": "constant", "total_steps": steps, "warmup_steps": p.warmup_steps}
    cfg["train"]["permanent_steps"] = sorted(set(branch_at))
    if swa:
        cfg["averaging"] = _averaging(p)
    return cfg


def _averaging(p: Preset) -> dict:
    return {
        "swa_window": p.swa_window,
        "swa_interval": 1,
        "lawa_windows": list(p.lawa_windows),
    }


def branch_config(parent: dict, parent_dir: Path, step: int, cooldown_steps: int, shape: str):
    cfg = make_branch_config(
        RunConfig.model_validate(parent),
        parent_dir,
        step,
        cooldown_steps=cooldown_steps,
        shape=shape,
    ).model_dump(mode="json", exclude_none=True)
    # Relative to the reproduction's folder, where the runs' processes start (as a study's
    # branches name their trunks): the folder can be moved.
    cfg["parent"]["run_dir"] = str(parent_dir)
    # The last weights are kept: (f) interpolates to them.
    cfg["train"]["permanent_steps"] = [step + cooldown_steps]
    return cfg


def _node(t: Task, parents: set[str]) -> dict:
    """A task as a study-engine node; its definition is its whole config."""
    cfg = RunConfig.model_validate(t.config)
    model = t.config["model"]
    return {
        "id": t.key,
        "kind": "branch" if t.parent else "run",
        "method": "constant" if t.key in parents else t.experiment,  # trunks are claimed first
        "size": model.get("preset") or f"{model.get('n_layers')}x{model.get('d_model')}",
        "parent": t.parent,
        "parent_step": cfg.parent.step if cfg.parent is not None else None,
        "steps": t.steps,
        "total_steps": cfg.total_steps,
        "definition": t.config,
    }


def run_tasks(tasks: list[Task], out: Path, p: Preset, log: Callable[[str], None] = print) -> None:
    """Train every task not yet done in `out` (parents before their branches, `p.workers` at a
    time); a run that fails stops the reproduction with its error once the others have ended."""
    by_key = {t.key: t for t in tasks}
    parents = {t.parent for t in tasks if t.parent}
    out = out.resolve()  # the runs' processes start in it
    log(f"  training {len(tasks)} run(s) with {p.workers} worker(s)")

    def prepare(key: str) -> None:
        run = node_run(out, key)
        if not run.exists():
            atomic_write_text(
                run.config_path, to_toml(RunConfig.model_validate(by_key[key].config))
            )

    threads = max(1, (os.cpu_count() or 1) // p.workers)
    report = execute(
        out,
        [_node(t, parents) for t in tasks],
        prepare,
        PoolBackend(out, p.workers, threads),
        workers=p.workers,
        what="reproduction",
        source="the reproduction's plan",
        log=lambda line: log(f"  {line}"),
    )
    if report.failed:
        node, error = next(iter(report.failed.items()))
        raise CooldownError(
            f"run {node} of the reproduction failed: {error}"
            + (f" ({len(report.failed) - 1} more failed)" if len(report.failed) > 1 else "")
            + "; rerun the same command to retry (runs resume from their last checkpoints)"
        )
