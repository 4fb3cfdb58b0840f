"""Predicted loss curves beside measured ones (`cooldown predict --out`).

Measured curves are points, predictions are lines with their bootstrap interval shaded. A
prediction for a run that was also measured (a held-out run: the prediction's `name` is the run's)
shares its colour, so the gap between the line and the points is the prediction error.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import numpy as np

from cooldown.errors import CooldownError
from cooldown.report.figures import figure_format, new_figure, save_figure

_LOSS_NAMES = {"val_loss": "validation loss", "train_loss": "training loss"}


def _loss_axis(loss_name: str) -> str:
    return f"{_LOSS_NAMES.get(loss_name, loss_name)} (nats/token)"


def _y_limits(series: list[tuple[np.ndarray, np.ndarray]]) -> Optional[tuple[float, float]]:
    # Early losses are far above the rest (log V at step 0): scale the axis to the part after the
    # first 10% of the longest curve, where the schedules differ.
    end = max(int(steps.max()) for steps, _ in series if steps.size)
    late = [loss[steps >= 0.1 * end] for steps, loss in series]
    late = [v for v in late if v.size]
    if not late:
        return None
    low = min(float(v.min()) for v in late)
    high = max(float(v.max()) for v in late)
    pad = 0.05 * (high - low or abs(high) * 0.01 or 1.0)
    return low - pad, high + pad


def plot_predictions(
    measured: Sequence,
    predicted: Sequence,
    out: str | Path,
    loss_name: str = "val_loss",
    title: Optional[str] = None,
) -> Path:
    """Plot measured curves (`cooldown.predict.LossCurve`, as points) and predicted ones
    (`cooldown.predict.PredictedCurve`, lines with their interval) to `out` (.png or .svg)."""
    out = Path(out)
    figure_format(out)
    measured, predicted = list(measured), list(predicted)
    if not measured and not predicted:
        raise CooldownError("curves: nothing to plot (give measured or predicted curves)")

    fig = new_figure()
    ax = fig.add_subplot()
    import matplotlib

    # More than ten colors needed: tab20's twenty, so no two runs share one.
    n_colors = len(measured) + len(predicted)
    tab20 = [matplotlib.colormaps["tab20"](i) for i in range(20)]
    palette = iter(f"C{i % 10}" if n_colors <= 10 else tab20[i % 20] for i in range(n_colors))
    color_of: dict[str, str] = {}
    series = []
    # A held-out run has its measured points and its prediction in one color and ONE legend
    # entry (the run's name): with a dozen runs, two entries each would not fit under the axes.
    paired = {getattr(c, "name", "") for c in predicted} - {""}
    for curve in measured:
        color_of[curve.name] = color = next(palette)
        label = (
            f"{curve.name}: {curve.label} (measured)" if curve.name not in paired else "_nolegend_"
        )
        ax.plot(curve.steps, curve.losses, "o", markersize=3.5, color=color, label=label)
        series.append((curve.steps, curve.losses))
    for curve in predicted:
        name = getattr(curve, "name", "")
        color = color_of.get(name) if name else None
        color = color or next(palette)
        if name in color_of:  # the title says points are measured and lines predicted
            label = name
        else:
            label = f"{f'{name}: ' if name else ''}{curve.label} (predicted)"
        ax.plot(curve.steps, curve.loss, "-", linewidth=1.8, color=color, label=label)
        if curve.low is not None and curve.high is not None:
            ax.fill_between(curve.steps, curve.low, curve.high, color=color, alpha=0.2, linewidth=0)
        series.append((curve.steps, curve.loss))
    ax.set_xlabel("step (optimizer updates)", fontsize=12)
    ax.set_ylabel(_loss_axis(loss_name), fontsize=12)
    ax.set_title(
        title or "Loss curves: measured (points) and predicted (lines, 95% band)", fontsize=12
    )
    limits = _y_limits(series)
    if limits is not None:
        ax.set_ylim(*limits)
    ax.set_xlim(left=0)
    ax.grid(True, alpha=0.3)
    ax.tick_params(labelsize=10)
    entries = len(ax.get_legend_handles_labels()[1])
    fig.legend(fontsize=9, loc="outside lower center", ncols=1 if entries < 4 else 2)
    return save_figure(fig, out)
