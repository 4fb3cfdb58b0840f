"""Loss curves to fit: the LR of every update plus the observed (step, loss) points.

From a run folder (`read_run_curve`): the LR sequence is `optim.lr` times the schedule of its
`config.toml` at updates 1..N (computed from the config, as the trainer does, never read back from
the log), and the observed points are the `val_loss` rows of `metrics.jsonl` (or another logged
loss such as `train_loss`). A branch (a config with a `[parent]` table: run_dir, step) logs only
the steps after its branch point; its curve is the parent's points up to that step followed by its
own, and its `branch` schedule already covers updates 1..N from the start.

From a log written by other training code (`read_log_curve`): a CSV or JSONL file with one row
per logged step and a column mapping for step, lr and loss (and optionally tokens). The LR is
needed at every update: between logged steps it is linearly interpolated, and before the first
logged step it holds the first logged value, so log the LR every step where you can.

Losses are in nats/token. `setup` is what must agree between curves fitted together (the model's
shape and parameter count): a law's parameters belong to one model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from cooldown.errors import CooldownError
from cooldown.metrics import read_metrics
from cooldown.run_dir import RunDir
from cooldown.tables import read_table

__all__ = [
    "LOG_COLUMNS",
    "LossCurve",
    "check_same_setup",
    "load_curves",
    "parse_columns",
    "read_log_curve",
    "read_run_curve",
]

LOG_COLUMNS = ("step", "lr", "loss", "tokens")
_REQUIRED_COLUMNS = ("step", "lr", "loss")


@dataclass(frozen=True)
class LossCurve:
    """One training curve: `lrs[n - 1]` is the LR of update n; losses observed at `steps`."""

    name: str
    lrs: np.ndarray = field(repr=False)
    steps: np.ndarray = field(repr=False)
    losses: np.ndarray = field(repr=False)
    loss_name: str = "val_loss"
    setup: Optional[Mapping[str, Any]] = field(default=None, repr=False)
    schedule: Any = field(default=None, repr=False)  # a cooldown.schedules schedule, when known
    source: str = ""
    tokens_per_step: Optional[int] = None

    def __post_init__(self):
        lrs = np.asarray(self.lrs, dtype=np.float64)
        steps = np.asarray(self.steps, dtype=np.int64)
        losses = np.asarray(self.losses, dtype=np.float64)
        where = self.source or self.name
        if lrs.ndim != 1 or lrs.size == 0 or not np.all(np.isfinite(lrs)) or lrs.min() < 0:
            raise CooldownError(f"{where}: learning rates must be finite and >= 0")
        if lrs.max() <= 0:
            raise CooldownError(f"{where}: every learning rate is 0")
        if steps.shape != losses.shape or steps.ndim != 1:
            raise CooldownError(f"{where}: steps and losses must be 1-D and of equal length")
        if steps.size:
            if np.any(np.diff(steps) <= 0):
                raise CooldownError(f"{where}: observed steps must be strictly increasing")
            if steps[0] < 1 or steps[-1] > lrs.size:
                raise CooldownError(
                    f"{where}: observed steps {int(steps[0])}..{int(steps[-1])} fall outside the "
                    f"LR sequence's updates 1..{lrs.size}"
                )
            if not np.all(np.isfinite(losses)) or losses.min() <= 0:
                raise CooldownError(f"{where}: {self.loss_name} values must be finite and > 0")
        object.__setattr__(self, "lrs", lrs)
        object.__setattr__(self, "steps", steps)
        object.__setattr__(self, "losses", losses)

    @property
    def total_steps(self) -> int:
        return int(self.lrs.size)

    @property
    def peak_lr(self) -> float:
        return float(self.lrs.max())

    @property
    def warmup_steps(self) -> int:
        if self.schedule is not None:
            return int(self.schedule.warmup_steps)
        peak = int(np.argmax(self.lrs)) + 1
        return peak if self.lrs[0] < self.lrs[peak - 1] else 0

    @property
    def final_step(self) -> int:
        return int(self.steps[-1])

    @property
    def final_loss(self) -> float:
        return float(self.losses[-1])

    @property
    def label(self) -> str:
        if self.schedule is not None:
            from cooldown.schedule_specs import label

            return label(self.schedule)
        return self.name


# --- run folders -------------------------------------------------------------------------------


def _logged_losses(metrics: Path, loss: str) -> tuple[list[int], list[float], set[str]]:
    if not metrics.is_file():
        raise CooldownError(f"{metrics}: missing (not a finished or started run folder?)")
    steps, values, keys = [], [], set()
    for row in read_metrics(metrics):
        keys.update(row)
        value = row.get(loss)
        if value is None or row.get("step", 0) < 1:
            continue  # the step-0 row has no LR area; rows without this loss are not evaluations
        steps.append(int(row["step"]))
        values.append(float(value))
    return steps, values, keys


def _setup(run: RunDir) -> dict[str, Any]:
    # The resolved shape fields say what the model is; `preset` is only a name for some of them.
    fields = run.config.model.model_dump(mode="json", exclude_none=True)
    model = {f"model.{k}": v for k, v in sorted(fields.items()) if k != "preset"}
    manifest = run.manifest()
    for key in ("vocab_size", "params"):
        value = manifest.get(key) if manifest is not None else None
        if value is not None:
            model[f"model.{key}"] = value
    return model


def read_run_curve(run_dir: str | Path, loss: str = "val_loss", name: Optional[str] = None):
    """The curve of a run folder: LRs from its config.toml, `loss` points from metrics.jsonl."""
    run = RunDir(run_dir).require()
    config = run.config
    schedule = config.schedule
    lrs = config.optim.lr * schedule.multipliers(1, schedule.total_steps + 1)

    steps, values, keys = _logged_losses(run.metrics_path, loss)
    parent = run.parent()
    if parent is not None:
        parent_run, branch_step = parent
        p_steps, p_values, p_keys = _logged_losses(parent_run.metrics_path, loss)
        keys |= p_keys
        own = [(s, v) for s, v in zip(steps, values, strict=True) if s > branch_step]
        inherited = [(s, v) for s, v in zip(p_steps, p_values, strict=True) if s <= branch_step]
        steps = [s for s, _ in inherited + own]
        values = [v for _, v in inherited + own]
    if not steps:
        present = ", ".join(sorted(k for k in keys if "loss" in k)) or "none"
        raise CooldownError(
            f"{run.metrics_path}: no {loss!r} values after step 0 (losses logged: {present})"
        )
    if steps[-1] > lrs.size:
        raise CooldownError(
            f"{run.metrics_path}: {loss} logged at step {steps[-1]}, after the "
            f"schedule's last update {lrs.size}"
        )
    return LossCurve(
        name=name or run.path.name,
        lrs=lrs,
        steps=np.array(steps),
        losses=np.array(values),
        loss_name=loss,
        setup=_setup(run),
        schedule=schedule,
        source=str(run.path),
        tokens_per_step=config.train.tokens_per_step,
    )


# --- logs from other training code -------------------------------------------------------------


def parse_columns(text: Optional[str]) -> dict[str, str]:
    """'step=iter,lr=learning_rate,loss=val/loss' -> {'step': 'iter', ...} (keys: LOG_COLUMNS)."""
    if not text:
        return {}
    mapping: dict[str, str] = {}
    for item in text.split(","):
        key, eq, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not key or not value:
            raise CooldownError(f"columns: {item.strip()!r} is not KEY=COLUMN (in {text!r})")
        if key not in LOG_COLUMNS:
            raise CooldownError(f"columns: {key!r} is not one of {', '.join(LOG_COLUMNS)}")
        if key in mapping:
            raise CooldownError(f"columns: {key} is given twice (in {text!r})")
        mapping[key] = value
    return mapping


def _number(value: Any, path: Path, line: int, column: str) -> Optional[float]:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise CooldownError(f"{path}:{line}: column {column!r} is a boolean, expected a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise CooldownError(
            f"{path}:{line}: column {column!r} is {value!r}, expected a number"
        ) from None
    if not math.isfinite(number):
        raise CooldownError(
            f"{path}:{line}: column {column!r} is {value!r}, expected a finite number"
        )
    return number


def read_log_curve(
    path: str | Path,
    columns: Optional[Mapping[str, str]] = None,
    name: Optional[str] = None,
    loss_column: str = "loss",
) -> LossCurve:
    """A curve from a CSV/JSONL log. `columns` maps step, lr, loss (and tokens) to the file's
    column names; unmapped keys use their own name (loss: `loss_column`)."""
    path = Path(path)
    if not path.is_file():
        raise CooldownError(f"{path}: no such log file")
    mapping = {"step": "step", "lr": "lr", "loss": loss_column, **dict(columns or {})}
    bad = sorted(set(mapping) - set(LOG_COLUMNS))
    if bad:
        raise CooldownError(f"columns: {', '.join(bad)} not among {', '.join(LOG_COLUMNS)}")
    names, rows = read_table(path)
    needed = [k for k in LOG_COLUMNS if k in _REQUIRED_COLUMNS or k in (columns or {})]
    missing = [k for k in needed if mapping[k] not in names]
    if missing:
        which = ", ".join(f"{mapping[k]!r} (for {k})" for k in missing)
        raise CooldownError(
            f"{path}: no column {which}; the file has: {', '.join(names) or 'no columns'} "
            "(map yours with --columns step=NAME,lr=NAME,loss=NAME)"
        )
    offset = 2 if path.suffix.lower() == ".csv" else 1  # file line of rows[0]
    lr_steps, lr_values, loss_steps, loss_values, tokens = [], [], [], [], []
    seen: set[int] = set()
    for i, row in enumerate(rows):
        line = i + offset
        step = _number(row.get(mapping["step"]), path, line, mapping["step"])
        if step is None:
            raise CooldownError(f"{path}:{line}: column {mapping['step']!r} is empty")
        if step != int(step) or step < 0:
            raise CooldownError(f"{path}:{line}: step {step:g} is not an integer >= 0")
        step = int(step)
        if step in seen:
            raise CooldownError(
                f"{path}:{line}: step {step} appears twice (a resumed log? keep one row per step)"
            )
        seen.add(step)
        lr = _number(row.get(mapping["lr"]), path, line, mapping["lr"])
        if lr is not None and step >= 1:
            lr_steps.append(step)
            lr_values.append(lr)
        value = _number(row.get(mapping["loss"]), path, line, mapping["loss"])
        if value is not None and step >= 1:
            loss_steps.append(step)
            loss_values.append(value)
        if "tokens" in (columns or {}):
            count = _number(row.get(mapping["tokens"]), path, line, mapping["tokens"])
            if count is not None and step >= 1:
                tokens.append((step, count))
    if not lr_steps:
        raise CooldownError(f"{path}: column {mapping['lr']!r} has no values after step 0")
    if not loss_steps:
        raise CooldownError(f"{path}: column {mapping['loss']!r} has no values after step 0")
    order = np.argsort(lr_steps)
    lr_steps_arr, lr_arr = np.array(lr_steps)[order], np.array(lr_values)[order]
    if lr_arr.min() < 0:
        raise CooldownError(f"{path}: column {mapping['lr']!r} has negative learning rates")
    last = int(lr_steps_arr[-1])
    lrs = np.interp(np.arange(1, last + 1), lr_steps_arr, lr_arr)
    order = np.argsort(loss_steps)
    steps, losses = np.array(loss_steps)[order], np.array(loss_values)[order]
    if steps[-1] > last:
        raise CooldownError(
            f"{path}: {mapping['loss']!r} logged at step {int(steps[-1])}, after the last "
            f"logged LR (step {last}); the LR of every fitted step is needed"
        )
    tokens_per_step = None
    if tokens:
        ratios = {count / step for step, count in tokens}
        if max(ratios) - min(ratios) > 1e-9 * max(ratios):
            raise CooldownError(
                f"{path}: column {mapping['tokens']!r} is not a constant multiple of the step "
                "(batch-size ramps are not supported: the laws count optimizer steps)"
            )
        tokens_per_step = round(min(ratios))
    return LossCurve(
        name=name or path.stem,
        lrs=lrs,
        steps=steps,
        losses=losses,
        loss_name=mapping["loss"],
        source=str(path),
        tokens_per_step=tokens_per_step,
    )


def load_curves(
    paths: Sequence[str | Path],
    loss: str = "val_loss",
    columns: Optional[Mapping[str, str]] = None,
) -> list[LossCurve]:
    """Run folders and log files alike; a folder is a run, a .csv/.jsonl file a log. A curve is
    named after its folder or file, or after its whole path where two names would be the same."""
    paths = [Path(p) for p in paths]
    stems = [p.name if p.is_dir() else p.stem for p in paths]
    curves = []
    for p, stem in zip(paths, stems, strict=True):
        name = stem if stems.count(stem) == 1 else str(p)
        if p.is_dir():
            curves.append(read_run_curve(p, loss, name=name))
        elif p.is_file():
            curves.append(read_log_curve(p, columns, name=name, loss_column=loss))
        else:
            raise CooldownError(f"{p}: no such run folder or log file")
    return curves


def check_same_setup(curves: Sequence[LossCurve]) -> None:
    """Refuse to mix curves of different models in one fit (curves without a setup are trusted)."""
    known = [c for c in curves if c.setup is not None]
    for other in known[1:]:
        first = known[0]
        keys = sorted(set(first.setup) | set(other.setup))
        diff = [k for k in keys if first.setup.get(k) != other.setup.get(k)]
        if diff:
            shown = "; ".join(
                f"{k} ({first.setup.get(k)!r} vs {other.setup.get(k)!r})" for k in diff[:3]
            )
            raise CooldownError(
                f"runs of different models in one fit: {first.name} and {other.name} differ in "
                f"{shown}; a law's parameters belong to one model, so fit each model separately"
            )
