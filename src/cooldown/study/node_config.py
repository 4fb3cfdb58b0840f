"""A study node's RunConfig: the study's shared tables plus what the node's method sets.

- every run: the size's model (at `model_vocab_size` when set), `data`, `[optim]` with the
  method's LR, `[train]` with the study's batch size, sequence length, seed and FLOP convention,
  `[averaging]`, and the study's warmup;
- `cosine`: a cosine schedule over the budget to `final_lr_frac`;
- a trunk (`constant`): a constant schedule to its last branch point (or largest swa budget), with
  a permanent checkpoint at every branch point;
- a cooldown branch: `cooldown.branch.make_branch_config` from the trunk's checkpoint at the branch
  step, over `cooldown_steps` updates of the method's shape (a measured branch of
  `cooldown-predicted`: its one shape, to 0).

Run folders are `STUDY_DIR/runs/NODE_ID`, and a branch names its parent as `runs/TRUNK_ID`, a path
relative to the study folder (node processes run there), so a study folder can be moved.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cooldown.config import RunConfig
from cooldown.configio import validate
from cooldown.errors import CooldownError
from cooldown.study.methods import REGISTRY
from cooldown.study.plan import Plan, PlanNode
from cooldown.study.run_dirs import run_dir_name
from cooldown.study.spec import StudySpec


def _shared(spec: StudySpec, plan: Plan, node: PlanNode) -> dict[str, Any]:
    info = plan.sizes[node.size]
    model = info.model.model_dump(mode="json", exclude_none=True)
    if spec.model_vocab_size is None:
        model.pop("vocab_size", None)  # the trainer takes the tokenizer's
    train = {
        **spec.train,
        "batch_size": info.batch_size,
        "seq_len": spec.seq_len,
        "seed": node.seed,
        "flop_convention": spec.flop_convention,
    }
    out: dict[str, Any] = {
        "model": model,
        "data": spec.data.model_dump(mode="json", exclude_none=True),
        "optim": {**spec.optim, "lr": node.lr},
        "train": train,
    }
    if spec.averaging is not None:
        out["averaging"] = dict(spec.averaging)
    return out


def node_run_config(spec: StudySpec, plan: Plan, node: PlanNode, study_dir: Path) -> RunConfig:
    """The RunConfig that trains `node` (a branch's starts from its trunk's checkpoint at the
    branch step, looked for when it trains)."""
    if not node.runnable:
        raise CooldownError(f"node {node.id} is a read-off of its trunk, not a training run")
    data = _shared(spec, plan, node)
    if node.kind == "branch":
        return _branch_config(spec, plan, node, study_dir)
    if node.method == "constant":  # a trunk: what every trunk method branches off
        data["schedule"] = {
            "kind": "constant",
            "total_steps": node.total_steps,
            "warmup_steps": spec.warmup_steps,
        }
        data["train"]["permanent_steps"] = list(node.branch_points)
    else:
        data["schedule"] = REGISTRY[node.method].run_schedule(spec, node)
    try:
        return validate(RunConfig, data)
    except CooldownError as e:
        raise CooldownError(f"study node {node.id}: {e}") from None


def _branch_config(spec: StudySpec, plan: Plan, node: PlanNode, study_dir: Path) -> RunConfig:
    from cooldown.branch import make_branch_config
    from cooldown.config import ParentRef

    assert node.parent is not None and node.parent_step is not None
    cooldown = REGISTRY[node.method].branch_cooldown(spec)
    trunk = plan.by_id[node.parent]
    trunk_cfg = node_run_config(spec, plan, trunk, study_dir)
    try:
        cfg = make_branch_config(
            trunk_cfg,
            str(Path(study_dir) / run_dir_name(trunk.id)),
            node.parent_step,
            cooldown_steps=node.cooldown_steps,
            shape=node.shape or "linear",
            final_lr_frac=cooldown["final_lr_frac"],
            power=cooldown["power"],
        )
    except CooldownError as e:
        raise CooldownError(f"study node {node.id}: {e}") from None
    # Relative to the study folder, where node processes run.
    parent = ParentRef(run_dir=run_dir_name(trunk.id), step=node.parent_step)
    return validate(
        RunConfig, {**cfg.model_dump(mode="json", exclude_none=True), "parent": parent.model_dump()}
    )
