"""The learning-rate schedule plot (`cooldown schedule plot`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import numpy as np

from cooldown.errors import CooldownError
from cooldown.report.figures import figure_format, new_figure, save_figure

_MAX_POINTS = 4000  # per curve; beyond this a line plot looks the same and renders slower


def _plot_steps(schedule) -> np.ndarray:
    """Updates 1..N, thinned for long runs but always keeping both sides of each phase boundary so
    steps (multistep drops, cooldown starts) stay sharp."""
    n = schedule.total_steps
    if n <= _MAX_POINTS:
        return np.arange(1, n + 1)
    grid = np.linspace(1, n, _MAX_POINTS).round().astype(np.int64)
    edges = [b + d for b in schedule.phase_boundaries for d in (0, 1) if 1 <= b + d <= n]
    return np.unique(np.concatenate([grid, np.asarray(edges, dtype=np.int64)]))


def _shared_setup(schedules: Sequence) -> str:
    """What all the schedules share (length, warmup), stated once in the title."""
    parts = []
    lengths = {s.total_steps for s in schedules}
    if len(lengths) == 1:
        parts.append(f"{lengths.pop()} updates")
    warmups = {(s.warmup_steps, s.warmup_shape, s.warmup_start_frac) for s in schedules}
    if len(warmups) == 1:
        w, shape, start = warmups.pop()
        if w == 0:
            parts.append("no warmup")
        else:
            frm = f" from {start:g}" if start else ""
            parts.append(f"{shape} warmup {w} steps{frm}")
    return ", ".join(parts)


def plot_schedules(
    schedules: Sequence,
    out: str | Path,
    labels: Optional[Sequence[str]] = None,
    peak_lr: Optional[float] = None,
    title: Optional[str] = None,
) -> Path:
    """Plot the LR multiplier (or the LR, given `peak_lr`) of each schedule over its updates 1..N.

    `out` ends in .png or .svg. Labels default to `cooldown.schedule_specs.label`; the title states the
    length and warmup the schedules share. Returns the path written.
    """
    from cooldown.schedule_specs import label

    out = Path(out)
    figure_format(out)  # a bad suffix fails before any drawing
    schedules = list(schedules)
    if not schedules:
        raise CooldownError("schedules: nothing to plot (give at least one schedule)")
    if labels is None:
        labels = [label(s) for s in schedules]
    elif len(labels) != len(schedules):
        raise CooldownError(
            f"labels: got {len(labels)} labels for {len(schedules)} schedules (need one each)"
        )
    if peak_lr is not None and not peak_lr > 0:
        raise CooldownError(f"peak_lr: must be > 0 (got {peak_lr!r})")

    fig = new_figure()
    ax = fig.add_subplot()
    for schedule, name in zip(schedules, labels, strict=True):
        steps = _plot_steps(schedule)
        values = schedule.multipliers_at(steps)
        ax.plot(steps, values * peak_lr if peak_lr else values, label=name, linewidth=1.8)
    ax.set_xlabel("step (optimizer updates)", fontsize=12)
    ax.set_ylabel("learning rate" if peak_lr else "LR multiplier (x peak LR)", fontsize=12)
    shared = _shared_setup(schedules)
    default_title = "Learning-rate schedules" + (f" ({shared})" if shared else "")
    if peak_lr:
        default_title += f", peak LR {peak_lr:g}"
    ax.set_title(title or default_title, fontsize=13)
    ax.set_xlim(0, max(s.total_steps for s in schedules))
    ax.set_ylim(bottom=0)
    ax.tick_params(labelsize=10)
    ax.grid(True, alpha=0.3)
    # Below the axes: every corner of a schedule plot has a curve in it.
    two_columns = len(labels) > 1 and max(len(name) for name in labels) <= 40
    fig.legend(fontsize=10, loc="outside lower center", ncols=2 if two_columns else 1)

    return save_figure(fig, out)
