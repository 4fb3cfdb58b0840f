"""Study nodes trained through a trainer adapter (`cooldown.adapters`): a study.toml with an
`[adapter]` table has every node trained by that trainer instead of `cooldown train`.

    [adapter]
    kind = "nanochat"                  # or "command"; the rest are that adapter's own settings
    nanochat_dir = "../nanochat"       # (relative paths: relative to the study.toml)
    base_dir = "nanochat-base"
    save_every = 10
    args = ["--device-type=cpu", "--weight-decay=0"]
    [adapter.size_args]                # per size: the trainer's own flags for that model
    d2 = ["--depth=2"]

A node becomes one adapter run in `runs/NODE_ID` (manifest.json, stdout.log, curve.csv):
the `constant` trunk is `RunRequest.trunk`, a `cooldown` branch is `RunRequest.branch` from
the trunk's checkpoint at its branch step, and a `cosine` point is the trainer's own run from
scratch with the same cooldown (fraction and first shape of [methods.cooldown]): a foreign
trainer decays as it decays, and this is the run its own sweep makes. A branch is ready when the
adapter says the trunk's checkpoint at its step is complete (`checkpoint_ready`).

Results come from the run's record: the final validation metric (in the trainer's unit, e.g.
nanochat's bits per byte) and its parameter and FLOP counts under the trainer's own convention
(`adapter_counts` says which). Torch-free.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cooldown.adapters import RunRequest, TrainerAdapter, adapter_from_config, read_manifest
from cooldown.adapters.base import CURVE, adapter_manifest
from cooldown.configio import read_toml
from cooldown.errors import CooldownError
from cooldown.study.plan import Plan, PlanNode, build_plan
from cooldown.study.run_dirs import node_run
from cooldown.study.spec import StudySpec, load_study

__all__ = [
    "adapter_columns",
    "adapter_result",
    "is_adapter_run",
    "node_request",
    "study_adapter",
    "train_adapter_node",
]

STUDY_KEYS = ("kind", "size_args")  # the study's own keys of [adapter]; the rest is the adapter's


def study_adapter(spec: StudySpec, study_dir: str | Path) -> TrainerAdapter:
    """The study's adapter; relative paths in [adapter] are relative to the study folder."""
    assert spec.adapter is not None
    config = {k: v for k, v in spec.adapter.items() if k not in STUDY_KEYS}
    return adapter_from_config({**config, "adapter": spec.adapter["kind"]}, study_dir)


def node_request(spec: StudySpec, plan: Plan, node: PlanNode, study_dir: Path) -> RunRequest:
    """The adapter run one study node is."""
    extra = tuple(str(a) for a in (spec.adapter or {}).get("size_args", {}).get(node.size, []))
    kw: dict[str, Any] = {"lr": node.lr, "extra_args": extra}
    if node.method == "constant":
        return RunRequest(node.total_steps, node.total_steps, **kw)
    cooldown = spec.methods.get("cooldown")
    if node.kind == "branch":
        parent = node_run(study_dir, node.parent or "").path
        return RunRequest.branch(
            parent,
            node.parent_step,
            node.cooldown_steps,
            shape=node.shape or "linear",
            final_lr_frac=cooldown.final_lr_frac if cooldown else 0.0,
            **kw,
        )
    if cooldown is None:
        raise CooldownError(
            "methods.cosine: with an [adapter] a run from scratch takes the cooldown of "
            "[methods.cooldown] (fraction, shape); add that table"
        )
    k = max(1, round(cooldown.fraction * node.total_steps))
    return RunRequest.scratch(
        node.total_steps,
        k,
        shape=cooldown.shapes[0],
        final_lr_frac=cooldown.final_lr_frac,
        **kw,
    )


def train_adapter_node(study_dir: Path, node_id: str) -> dict[str, Any]:
    """Train one node through the study's adapter (in the node process); its result."""
    spec = load_study(study_dir / "study.toml")
    plan = build_plan(spec)
    if node_id not in plan.by_id:
        raise CooldownError(f"node {node_id}: not in the study's plan")
    adapter = study_adapter(spec, study_dir)
    request = node_request(spec, plan, plan.by_id[node_id], study_dir)
    run = node_run(study_dir, node_id).path
    adapter.finish(run, adapter.launch(run, request))
    return adapter_result(run, request.total_steps)


def checkpoint_ready(spec: StudySpec, study_dir: Path) -> Callable[[str, int], bool]:
    """For the engine: whether the trunk node `parent` has its checkpoint at `step`."""
    adapter = study_adapter(spec, study_dir)

    def ready(parent: str, step: int) -> bool:
        return adapter.checkpoint_ready(node_run(study_dir, parent).path, step)

    return ready


def is_adapter_run(run_dir: str | Path) -> bool:
    """Whether `run_dir` is a run made through an adapter (its manifest names one)."""
    return adapter_manifest(run_dir) is not None


def adapter_result(run_dir: str | Path, expect_steps: int | None = None) -> dict[str, Any]:
    """A finished adapter run's result as the study state stores it: `manifest` with the keys the
    study reads (`final_val_loss` is the trainer's final validation metric), `eval_rows` from its
    curve, and the adapter's record (`adapter`: counts, exactness, final)."""
    record = read_manifest(run_dir)
    last = record.get("final", {}).get("step")
    if record.get("status") != "complete" or (expect_steps is not None and last != expect_steps):
        raise CooldownError(
            f"{run_dir}: the run is not complete (status {record.get('status')!r}, "
            f"last logged step {last} of {expect_steps})"
        )
    rows = _curve_rows(Path(run_dir) / CURVE)
    return {
        "manifest": {
            "final_val_loss": record["final"].get("val_metric"),
            "steps": last,
            "vocab_size": None,
        },
        "eval_rows": [
            {"step": int(r["step"]), "val_loss": r["val_metric"]}
            for r in rows
            if r.get("val_metric") is not None
        ],
        "tokens_per_s": None,
        "adapter": {k: record.get(k) for k in ("adapter", "role", "counts", "exactness", "final")},
    }


def _curve_rows(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [{k: float(v) if v else None for k, v in r.items()} for r in csv.DictReader(f)]


def adapter_columns(result: dict[str, Any], steps: int, method_steps: int) -> dict[str, Any]:
    """A point's parameter, token and compute columns from its run's adapter counts (the
    trainer's own convention, named in `flop_convention`): compute = FLOPs per token x tokens,
    tokens = the trainer's tokens per step x steps."""
    counts = (result.get("adapter") or {}).get("counts") or {}
    per_token, per_step = counts.get("flops_per_token"), counts.get("tokens_per_step")
    if not per_step:
        return {"flop_convention": "adapter: no counts (the study's own plan counts stand)"}
    tokens, method_tokens = per_step * steps, per_step * method_steps
    out: dict[str, Any] = {
        "params": counts.get("params"),
        "tokens": tokens,
        "loss_evaluation": f"{result['adapter']['adapter']}: the trainer's validation metric",
        "flop_convention": f"adapter: {counts.get('convention', 'unstated')}",
    }
    if per_token:
        out["compute_flops"] = per_token * tokens
        out["method_compute_flops"] = per_token * method_tokens
    else:
        out["compute_flops"] = out["method_compute_flops"] = None
    return out


def uses_adapter(study_dir: Path) -> bool:
    """Whether the study in `study_dir` trains through an adapter (its study.toml says so)."""
    path = Path(study_dir) / "study.toml"  # (a reproduction's folder has none)
    return path.is_file() and "adapter" in read_toml(path)
