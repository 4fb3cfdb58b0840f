"""Figures of `cooldown reproduce` that no other module draws: loss curves, ablation bars with
their seed spread, cooldown lengths, and compute by method. Losses are nats/token; compute is
training FLOPs under the convention given."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from cooldown.report.figures import figure_format, new_figure, save_figure

LOSS = "final validation loss (nats/token)"


def plot_loss_curves(curves: Mapping[str, Sequence], out: str | Path, title: str) -> Path:
    """Validation loss against step for each named curve of (step, loss, lr) rows."""
    figure_format(Path(out))
    fig = new_figure()
    ax = fig.add_subplot()
    lows = []
    for name, rows in curves.items():
        rows = [r for r in rows if r[0] > 0]
        ax.plot([r[0] for r in rows], [r[1] for r in rows], marker=".", label=name)
        lows.append(min(r[1] for r in rows))
    if lows:
        ax.set_ylim(min(lows) - 0.05, min(lows) + 1.0)
    ax.set_xlabel("step (optimizer updates)")
    ax.set_ylabel("validation loss (nats/token)")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    return save_figure(fig, out)


def plot_bars(
    values: Mapping[str, float | Sequence[float]],
    out: str | Path,
    title: str,
    ylabel: str = LOSS,
    colors: Sequence[str] | None = None,
) -> Path:
    """One bar per label (the mean), with every seed's value as a dot when there are several."""
    figure_format(Path(out))
    fig = new_figure()
    ax = fig.add_subplot()
    labels = list(values)
    means, finite = [], []
    for i, k in enumerate(labels):
        v = values[k]
        vs = list(v) if isinstance(v, (list, tuple)) else [v]
        means.append(sum(vs) / len(vs))
        finite += vs
        if len(vs) > 1:
            ax.scatter([i] * len(vs), vs, color="k", zorder=3, s=12)
    colors = list(colors) if colors else [f"C{i % 10}" for i in range(len(labels))]
    ax.bar(range(len(labels)), means, color=colors)
    if finite:
        lo, hi = min(finite), max(finite)
        pad = max(hi - lo, 1e-3) * 0.5
        ax.set_ylim(lo - pad, hi + pad)
    ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, out)


def plot_lengths(lengths: Mapping[float, float], out: str | Path, title: str) -> Path:
    figure_format(Path(out))
    fig = new_figure()
    ax = fig.add_subplot()
    ks = sorted(lengths)
    ax.plot([100 * k for k in ks], [lengths[k] for k in ks], marker="o")
    ax.set_xlabel("cooldown length (% of the run's updates)")
    ax.set_ylabel(LOSS)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return save_figure(fig, out)


def plot_compute_by_method(compute: Mapping[str, float], convention: str, out: str | Path) -> Path:
    figure_format(Path(out))
    fig = new_figure(width=6.0, height=4.5)
    ax = fig.add_subplot()
    names = list(compute)
    ax.bar(names, [compute[n] for n in names], color=[f"C{i}" for i in range(len(names))])
    for i, n in enumerate(names):
        ax.text(i, compute[n], f"{compute[n]:.3g}", ha="center", va="bottom")
    ax.set_ylabel(f"training compute of the sweep (FLOPs, {convention} convention)")
    ax.set_title("Compute of the scaling sweep by method")
    return save_figure(fig, out)


def plot_scaling_points(points: Sequence[Mapping], convention: str, out: str | Path) -> Path:
    """Final loss against compute by method (cosine, cooldown, and cooldown-predicted when
    given), one line per size and method."""
    figure_format(Path(out))
    fig = new_figure()
    ax = fig.add_subplot()
    sizes = sorted(
        {p["size"] for p in points},
        key=lambda s: min(q["params"] for q in points if q["size"] == s),
    )
    for i, size in enumerate(sizes):
        for method, style in (("cosine", "o-"), ("cooldown", "s--"), ("cooldown-predicted", "^:")):
            pts = sorted(
                (p["compute_flops"], p["loss"])
                for p in points
                if p["size"] == size and p["method"] == method
            )
            if not pts:
                continue
            ax.plot(
                [c for c, _ in pts],
                [loss for _, loss in pts],
                style,
                color=f"C{i % 10}",
                label=f"{size} {method}",
            )
    ax.set_xscale("log")
    ax.set_xlabel(f"training compute (FLOPs, {convention} convention)")
    ax.set_ylabel(LOSS)
    ax.set_title(
        "Scaling sweep: cosine from scratch (o), cooldown branches (s), predicted cooldowns (^)"
        if any(p["method"] == "cooldown-predicted" for p in points)
        else "Scaling sweep: cosine from scratch (o) vs cooldown branches (s)"
    )
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    return save_figure(fig, out)
