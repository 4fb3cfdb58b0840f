"""Cooldowns branched from a stable run: one constant-LR run, many cooldowns.

    cooldown branch runs/stable --at 4000 6000 --fraction 0.2 --shape 1-sqrt linear

Each (step, shape) becomes a child run in `PARENT/branches/s{step}-{shape}-k{k}` (k: the cooldown's
length in steps; `-m{final_lr_frac}` is appended for a non-zero final LR and `-mix{hash}` for a data
mixture). A child's config is the parent's with `parent = {run_dir, step}` and a `branch` schedule:
the parent's warmup, the stable phase up to the branch step, then the cooldown. Training it starts
from the parent's checkpoint at that step (weights, optimizer state, data position, averages) and
runs only the cooldown, updates step+1 .. step+k. With `fraction` F the cooldown is F of the
branch's own length, as in the paper: k = round(F / (1 - F) * step).

A branch that keeps the parent's data is, on CPU, bitwise the run trained from scratch with the
WSD schedule (cooldown start = step, length k): the schedule gives the same LR at every step and
the checkpoint carries everything else.

Running `branch` again finishes unfinished children and returns the finished ones unchanged.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cooldown.config import RunConfig, load_run_config, step_for_tokens
from cooldown.configio import validate
from cooldown.data.mixture import MixtureComponent
from cooldown.decay_shapes import canonical_shape
from cooldown.errors import CooldownError
from cooldown.run_dir import CONFIG_FILE
from cooldown.schedule_specs import label, schedule_from_config

__all__ = ["branch", "branch_dir_name", "make_branch_config", "steps_for_tokens"]


def _check_branch_point(parent_cfg: RunConfig, step: int, force: bool) -> None:
    sched = parent_cfg.schedule
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 1:
        raise CooldownError(f"branch step must be a positive integer (got {step!r})")
    if step > parent_cfg.total_steps:
        raise CooldownError(
            f"branch step {step} is after the parent's end (schedule.total_steps "
            f"{parent_cfg.total_steps})"
        )
    warmup = sched.warmup_steps
    if step < warmup:
        raise CooldownError(
            f"checkpoint at step {step} is inside the parent's warmup ({warmup} steps); a "
            f"cooldown branches from step {warmup} or later"
        )
    # The stable phase: every update from the end of the warmup up to the branch step at the peak.
    multipliers = sched.multipliers(warmup, step + 1)
    if not force and np.any(multipliers != 1.0):
        first = warmup + int(np.flatnonzero(multipliers != 1.0)[0])
        raise CooldownError(
            f"checkpoint at step {step} is inside the parent's cooldown ({label(sched)}: the LR "
            f"left its peak at step {first} and is x{multipliers[-1]:.4g} at step {step}); pass "
            "--force to branch from it anyway"
        )


def _mixture(data: Any) -> list[dict] | None:
    if data is None:
        return None
    items = []
    for comp in data:
        items.append(comp.model_dump(mode="json") if isinstance(comp, MixtureComponent) else comp)
    return items


def make_branch_config(
    parent_cfg: RunConfig,
    parent_run_dir: str | Path,
    step: int,
    *,
    cooldown_steps: int | None = None,
    fraction: float | None = None,
    shape: str = "linear",
    final_lr_frac: float = 0.0,
    power: float | None = None,
    data: Sequence[MixtureComponent | dict] | None = None,
    force: bool = False,
    optim_cooldown: dict[str, Any] | None = None,
) -> RunConfig:
    """The child config of a cooldown from `parent_run_dir`'s checkpoint at `step`.

    Exactly one of `cooldown_steps` (k) and `fraction` (F: k = round(F / (1 - F) * step)). `data`:
    a data mixture for the cooldown (None keeps the parent's training data). `optim_cooldown`: the
    `[optim.cooldown]` settings of the cooldown (e.g. {"betas": [0.9, 0.99]}). The parent's schedule
    must still be at its peak from the end of its warmup to `step`, unless `force`. The checkpoint
    itself is looked for when the child trains (so children can be planned before the parent ran).
    """
    if (cooldown_steps is None) == (fraction is None):
        raise CooldownError(
            "give exactly one of cooldown_steps (--length) and fraction (--fraction)"
        )
    if parent_cfg.optim.name == "schedule-free":
        raise CooldownError(
            "the parent uses schedule-free AdamW, which has no LR schedule to cool down; branch "
            "from a constant-LR AdamW run"
        )
    _check_branch_point(parent_cfg, step, force)
    sched = parent_cfg.schedule
    branch_sched: dict[str, Any] = {
        "kind": "branch",
        "branch_step": int(step),
        "warmup_steps": sched.warmup_steps,
        "warmup_shape": sched.warmup_shape,
        "warmup_start_frac": sched.warmup_start_frac,
        "shape": shape,
        "final_lr_frac": final_lr_frac,
    }
    if power is not None:
        branch_sched["power"] = power
    if cooldown_steps is not None:
        branch_sched["cooldown_steps"] = cooldown_steps
    else:
        branch_sched["cooldown_frac"] = fraction
    config = parent_cfg.model_dump(mode="json", exclude_none=True)
    config["schedule"] = schedule_from_config(branch_sched).to_config()
    # An absolute path: the child (inside or outside the parent) resumes from any directory.
    config["parent"] = {"run_dir": str(Path(parent_run_dir).absolute()), "step": int(step)}
    # The parent's branch points mean nothing inside a cooldown.
    config["train"].update(permanent_steps=[], branch_tokens=[])
    mixture = _mixture(data)
    if mixture is not None:
        config["data_mixture"] = mixture
    if optim_cooldown is not None:
        config["optim"]["cooldown"] = dict(optim_cooldown)
    return validate(RunConfig, config)


def branch_dir_name(cfg: RunConfig) -> str:
    """`s{step}-{shape}-k{k}`, with `-m{final}`, `-mix{hash}` and `-opt{hash}` (of
    `[optim.cooldown]`) when those are set."""
    sched = cfg.schedule
    shape = sched.shape if sched.shape != "power" else f"power{sched.power:g}"
    name = f"s{sched.branch_step}-{shape}-k{sched.cooldown_length_steps}"
    if sched.final_lr_frac:
        name += f"-m{sched.final_lr_frac:g}"
    if cfg.data_mixture:
        text = json.dumps([c.model_dump(mode="json") for c in cfg.data_mixture], sort_keys=True)
        name += f"-mix{hashlib.sha256(text.encode()).hexdigest()[:8]}"
    if cfg.optim.cooldown is not None:
        text = json.dumps(cfg.optim.cooldown.model_dump(mode="json"), sort_keys=True)
        name += f"-opt{hashlib.sha256(text.encode()).hexdigest()[:8]}"
    return name


def steps_for_tokens(parent_cfg: RunConfig, tokens: Sequence[int]) -> list[int]:
    """Branch steps for token counts (each a whole number of the parent's steps)."""
    tc = parent_cfg.train
    out = []
    for t in tokens:
        try:
            out.append(step_for_tokens(int(t), tc.batch_size, tc.seq_len))
        except CooldownError as e:
            raise CooldownError(f"--at-tokens: {e}") from None
    return out


def _no_repeats(values: Sequence, what: str) -> None:
    for i, v in enumerate(values):
        if v in values[:i]:
            raise CooldownError(f"{what}: {v} is given twice")


def branch(
    parent_run_dir: str | Path,
    at_steps: Sequence[int],
    *,
    at_tokens: Sequence[int] | None = None,
    cooldown_steps: int | None = None,
    fraction: float | None = None,
    shapes: Sequence[str] = ("linear",),
    final_lr_frac: float = 0.0,
    force: bool = False,
    out_root: str | Path | None = None,
    data_mixture: Sequence[MixtureComponent | dict] | None = None,
    optim_cooldown: dict[str, Any] | None = None,
) -> list:
    """Train the child of every (step, shape) (see the module docstring); returns their
    `RunResult`s in that order. `at_tokens` adds branch points given as token counts;
    `optim_cooldown` the cooldown's `[optim.cooldown]` settings. Every branch
    point and config is checked before any training."""
    from cooldown.checkpoint import find_checkpoint
    from cooldown.train import train

    parent_dir = Path(parent_run_dir)
    if not (parent_dir / CONFIG_FILE).is_file():
        raise CooldownError(f"{parent_dir} is not a run folder (config.toml is missing)")
    parent_cfg = load_run_config(parent_dir / CONFIG_FILE)
    at_steps = [*at_steps, *steps_for_tokens(parent_cfg, at_tokens or [])]
    if not at_steps:
        raise CooldownError("--at: give at least one branch step (or --at-tokens)")
    if not shapes:
        raise CooldownError("--shape: give at least one cooldown shape")
    _no_repeats(at_steps, "--at")
    shapes = [canonical_shape(s) for s in shapes]
    _no_repeats(shapes, "--shape")
    root = Path(out_root) if out_root is not None else parent_dir / "branches"
    children = []
    for step in at_steps:
        find_checkpoint(parent_dir, step)
        for shape in shapes:
            cfg = make_branch_config(
                parent_cfg,
                parent_dir,
                step,
                cooldown_steps=cooldown_steps,
                fraction=fraction,
                shape=shape,
                final_lr_frac=final_lr_frac,
                data=data_mixture,
                force=force,
                optim_cooldown=optim_cooldown,
            )
            children.append((cfg, root / branch_dir_name(cfg)))
    return [train(cfg, run_dir) for cfg, run_dir in children]
