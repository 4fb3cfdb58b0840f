"""Paired loss differences against a baseline with their bootstrap intervals (`cooldown compare`).

One row per compared run: the difference in validation loss (nats/token) as a point, its interval
as an error bar, and a line at zero, so a bar that crosses zero is a difference the evaluation
cannot tell from no difference. The title says what noise the interval covers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cooldown.errors import CooldownError
from cooldown.report.figures import figure_format, new_figure, save_figure


def plot_differences(differences: Sequence, out: str | Path, title: str | None = None) -> Path:
    """Draw `cooldown.compare.Difference`s (all against the same baseline) to a .png or .svg."""
    out = Path(out)
    figure_format(out)
    if not differences:
        raise CooldownError("plot_differences: no differences to plot")
    first = differences[0]
    n = len(differences)
    fig = new_figure(7.5, 1.6 + 0.45 * n)
    ax = fig.add_subplot()
    ys = list(range(n))[::-1]  # the first compared run on top, as in the table
    diffs = [d.diff for d in differences]
    below = [d.diff - d.low for d in differences]
    above = [d.high - d.diff for d in differences]
    colors = ["C2" if d.high < 0 else "C3" if d.low > 0 else "C7" for d in differences]
    for y, x, lo, hi, c in zip(ys, diffs, below, above, colors, strict=True):
        ax.errorbar(x, y, xerr=[[lo], [hi]], fmt="o", color=c, capsize=4, markersize=5)
    ax.axvline(0.0, color="black", linewidth=0.9)
    ax.set_yticks(ys, [d.b for d in differences])
    ax.set_ylim(-0.7, n - 0.3)
    ax.set_xlabel(
        f"validation loss minus {first.a}'s (nats/token; below 0: lower loss)", fontsize=10
    )
    ax.grid(True, axis="x", alpha=0.3)
    level = f"{first.level:.0%}".replace(".0%", "%")
    seeds = "" if first.n_seeds == 1 else f" and {first.n_seeds} seed pairs"
    ax.set_title(
        title
        or f"Paired differences, {level} intervals: bootstrap over {first.n_docs} validation "
        f"documents{seeds}",
        fontsize=10,
    )
    return save_figure(fig, out)
