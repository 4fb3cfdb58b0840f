"""Checkpoint merging in place of a cooldown: a weighted average of stable-phase checkpoints.

    cooldown merge runs/stable --steps 3000 3500 4000 --weighting decay:1-sqrt
    merge("runs/stable", [3000, 3500, 4000], "ema", ema_decay=0.8)   # from Python

Checkpoints at steps t_1 < ... < t_n (n >= 2) of one model are merged into sum_i c_i theta_i,
sum_i c_i = 1, with the weights c of `weighting`:

- `uniform`: c_i = 1 / n (PMA's SMA; Li et al. 2025).
- `ema`: the EMA over the checkpoints in order, ema <- d * ema + (1 - d) * theta_i from
  ema = theta_1, with decay d = `ema_decay` (default 0.8; PMA's alpha is 1 - d): c_1 = d^(n-1),
  c_i = (1 - d) d^(n-i) for i >= 2.
- `decay:SHAPE` (WSM; Tian et al. 2025): the weights that give the updates the LR multipliers of a
  cooldown of shape SHAPE (`cooldown.decay_shapes`). Merging keeps the updates up to t_1 at full
  weight and scales those between t_(i-1) and t_i by M_i = c_i + ... + c_n; choosing
  M_i = f(x_i), x_i = (n - 1) / n * (t_i - t_1) / (t_n - t_1) (= (i - 1) / n at equal spacing:
  a cooldown of n segments without its last, zero-LR one) gives c_i = M_i - M_(i+1), M_(n+1) = 0.
  Shapes that never rise give c_i >= 0, and M_1 = f(0) = 1 makes them sum to 1. At equal spacing
  `decay:linear` is `uniform` exactly (a uniform average is a linear decay to zero).

The result is a folder that reads as a finished run, so `export`, `interpolate`, `eval` and
`compare` load it as they load any run (default `RUN/merges/<weighting>-s<t_1>-<t_n>-n<n>`):
config.toml (the source run's), manifest.json (the source's data fingerprint and tokenizer, steps =
t_n, a `merge` record of the sources and weights) and checkpoints/step_<t_n>/ with the merged
weights (state.pt holds the `merge` record and no optimizer: it resumes nothing). The folder is
built beside its final place and renamed into it, so a killed merge leaves no half-written folder.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cooldown.checkpoint import (
    RAW_WEIGHTS,
    check_weights_fit,
    find_checkpoint,
    load_checkpoint,
    save_checkpoint,
    select_weights,
)
from cooldown.config import config_differences
from cooldown.decay_shapes import decay_shape
from cooldown.errors import CooldownError
from cooldown.fileio import fsync_dir
from cooldown.run_dir import RunDir

__all__ = ["DEFAULT_EMA_DECAY", "MergeResult", "merge", "merge_coefficients"]

DEFAULT_EMA_DECAY = 0.8


@dataclass
class MergeResult:
    out_dir: Path  # the merged run folder
    checkpoint: Path  # its checkpoint (what export / interpolate / eval / compare read)
    steps: list[int]
    coefficients: list[float]


def merge_coefficients(
    steps: list[int], weighting: str, ema_decay: float = DEFAULT_EMA_DECAY
) -> np.ndarray:
    """The weights c_i of the checkpoints at `steps` (ascending) under `weighting` (see the top)."""
    t = np.asarray(steps, dtype=np.float64)
    n = len(t)
    if weighting == "uniform":
        return np.full(n, 1.0 / n)
    if weighting == "ema":
        if not 0.0 < ema_decay < 1.0:
            raise CooldownError(f"--ema-decay: must be in (0, 1) (got {ema_decay})")
        c = (1.0 - ema_decay) * ema_decay ** np.arange(n - 1, -1, -1, dtype=np.float64)
        c[0] = ema_decay ** (n - 1)
        return c
    kind, _, shape = weighting.partition(":")
    if kind != "decay" or not shape:
        raise CooldownError(
            f"--weighting: must be uniform, ema or decay:SHAPE (e.g. decay:1-sqrt), got "
            f"{weighting!r}"
        )
    x = (n - 1) / n * (t - t[0]) / (t[-1] - t[0])
    try:
        m = np.append(np.asarray(decay_shape(shape, x), dtype=np.float64), 0.0)
    except CooldownError as e:
        raise CooldownError(f"--weighting {weighting}: {e}") from None
    c = m[:-1] - m[1:]
    if np.any(c < 0):
        raise CooldownError(f"--weighting {weighting}: the shape rises, giving negative weights")
    return c


def _resolve(sources: list[str | Path], steps: list[int] | None) -> list[tuple[RunDir, int, Path]]:
    """(run, step, checkpoint folder) of every checkpoint to merge, ascending by step."""
    if steps:
        if len(sources) != 1:
            raise CooldownError("--steps: give exactly one run folder with it")
        run = RunDir(sources[0]).require()
        found = [(run, int(s), find_checkpoint(run.path, int(s))) for s in steps]
    else:
        found = []
        for src in sources:
            of = RunDir.of_checkpoint(src)
            if of is None:
                raise CooldownError(
                    f"{src}: not a checkpoint folder of a run (RUN/checkpoints/step_NNNNNNN); to "
                    "merge checkpoints of one run give the run folder and --steps"
                )
            found.append((of[0], of[1], Path(src)))
    found.sort(key=lambda f: f[1])
    if len(found) < 2:
        raise CooldownError(
            f"merging needs at least two checkpoints (got {len(found)}): a single checkpoint is "
            "already its own average"
        )
    repeated = [b[1] for a, b in pairwise(found) if a[1] == b[1]]
    if repeated:
        raise CooldownError(f"step {repeated[0]} is given twice")
    return found


def _check_stable(run: RunDir, step: int) -> None:
    sched = run.config.schedule
    m = sched.multiplier(step)
    if step < sched.warmup_steps or m != 1.0:
        raise CooldownError(
            f"step {step} of {run.path} is not in its stable phase (the LR is x{m:.4g} of its "
            "peak there); merging replaces a cooldown, so it takes stable-phase checkpoints: pass "
            "--force to merge it anyway"
        )


def _check_same_model(first: tuple, other: tuple, weights: dict, ref: dict) -> None:
    (run_a, _, path_a), (run_b, _, path_b) = first, other
    diff = config_differences(
        run_a.config.model.model_dump(mode="json", exclude_none=True),
        run_b.config.model.model_dump(mode="json", exclude_none=True),
        "model.",
    )
    try:
        check_weights_fit({k: tuple(v.shape) for k, v in ref.items()}, weights, source=path_b)
    except CooldownError as e:
        diff.append(str(e).split(": ", 1)[-1])
    if diff:
        raise CooldownError(
            f"{path_a} and {path_b} hold different models ({'; '.join(diff[:3])}): merging needs "
            "checkpoints of one model"
        )


def merge(
    sources: str | Path | list[str | Path],
    steps: list[int] | None = None,
    weighting: str = "uniform",
    *,
    ema_decay: float = DEFAULT_EMA_DECAY,
    out: str | Path | None = None,
    weights: str = RAW_WEIGHTS,
    force: bool = False,
    overwrite: bool = False,
) -> MergeResult:
    """Merge the checkpoints of a run at `steps` (or the checkpoint folders `sources`) and write
    the merged run folder (see the module docstring)."""
    sources = [sources] if isinstance(sources, (str, Path)) else list(sources)
    found = _resolve(sources, steps)
    coefficients = merge_coefficients([f[1] for f in found], weighting, ema_decay)
    if not force:
        for run, step, _ in found:
            _check_stable(run, step)
    base_run, last = found[0][0], found[-1][1]
    out_dir = Path(out) if out is not None else base_run.path / "merges" / _name(found, weighting)
    if out_dir.exists() and not overwrite:
        raise CooldownError(f"{out_dir} exists; pass --overwrite to replace it, or choose --out")
    merged: dict[str, torch.Tensor] = {}
    ref: dict[str, torch.Tensor] = {}
    for i, (entry, c) in enumerate(zip(found, coefficients, strict=True)):
        w = select_weights(load_checkpoint(entry[2]), weights)
        if i == 0:
            ref = w
        _check_same_model(found[0], entry, w, ref)
        for k, v in w.items():  # float64 sums: the merge adds no rounding of its own
            merged[k] = merged.get(k, 0.0) + float(c) * v.to(torch.float64)
    merged = {k: v.to(ref[k].dtype) for k, v in merged.items()}
    record = {
        "sources": [{"checkpoint": str(p.absolute()), "step": s} for _, s, p in found],
        "weighting": weighting,
        "ema_decay": ema_decay if weighting == "ema" else None,
        "coefficients": [float(c) for c in coefficients],
        "weights": weights,
    }
    _write(out_dir, base_run, last, merged, record, overwrite)
    ckpt = RunDir(out_dir).checkpoint_path(last)
    return MergeResult(out_dir, ckpt, [f[1] for f in found], record["coefficients"])


def _name(found: list[tuple], weighting: str) -> str:
    label = weighting.replace(":", "-")
    return f"{label}-s{found[0][1]}-{found[-1][1]}-n{len(found)}"


def _manifest(base: RunDir, step: int, record: dict[str, Any]) -> dict[str, Any]:
    source = base.manifest()
    src = source.as_dict() if source is not None else {}
    keep = ("package", "version", "data_fingerprint", "data_source", "tokenizer", "vocab_size")
    keep += ("params", "non_embedding_params", "tokens_per_step", "flop_convention")
    out = {k: src[k] for k in keep if k in src}
    tps = src.get("tokens_per_step") or base.config.train.tokens_per_step
    out.update(status="complete", steps=step, total_steps=step, tokens=step * tps)
    if src.get("compute_flops") and src.get("tokens"):
        # The compute to reach the last merged checkpoint (the merge itself costs no training).
        out["compute_flops"] = src["compute_flops"] * step * tps / src["tokens"]
    out["merge"] = {"run_dir": str(base.path.absolute()), **record}
    return out


def _write(out_dir: Path, base: RunDir, step: int, merged: dict, record: dict, overwrite: bool):
    """Build the folder beside `out_dir`, then rename it into place."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".tmp-{out_dir.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        shutil.copyfile(base.config_path, tmp / base.config_path.name)
        save_checkpoint(tmp, step, merged, {"merge": record})
        RunDir(tmp).write_manifest(_manifest(base, step, record))
        fsync_dir(tmp)
        if overwrite and out_dir.exists():
            shutil.rmtree(out_dir)
        os.rename(tmp, out_dir)
        fsync_dir(out_dir.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
