"""Figures of `cooldown reproduce` that no other module draws: loss curves, ablation bars with
their seed spread, cooldown lengths, compute by method, the LR sensitivity of both schedules and
paired differences with their 95% intervals. Losses are nats/token; compute is training FLOPs
under the convention given."""

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


def plot_lr_sensitivity(sweep: Mapping, out: str | Path) -> Path:
    """The paper's LR-sensitivity figure: final loss against peak LR for cosine and constant +
    cooldown (top), and each LR's paired difference from its schedule's best LR with its 95%
    interval over validation documents (bottom: the absolute losses' own intervals are mostly
    which documents are hard, the same for every LR)."""
    figure_format(Path(out))
    fig = new_figure(height=7.0)
    top, bottom = fig.subplots(2, 1, sharex=True)
    for i, (name, label) in enumerate(
        (("cosine", "cosine (to 10%)"), ("constant", "constant + cooldown"))
    ):
        rows = sweep[name]
        lrs = [r["lr"] for r in rows]
        top.plot(lrs, [r["loss"] for r in rows], marker="o", color=f"C{i}", label=label)
        best = min(rows, key=lambda r: r["loss"])
        top.scatter([best["lr"]], [best["loss"]], s=120, facecolors="none", edgecolors=f"C{i}")
        d = [r["vs_best"] for r in rows]
        shift = 1.04 if i else 1 / 1.04  # side by side at each LR
        bottom.errorbar(
            [x * shift for x in lrs],
            [x["diff"] for x in d],
            yerr=[[x["diff"] - x["low"] for x in d], [x["high"] - x["diff"] for x in d]],
            marker="o",
            capsize=3,
            ls="none",
            color=f"C{i}",
            label=label,
        )
    top.set_ylabel(LOSS)
    top.set_title(f"LR sensitivity at {sweep['budget']} updates (circled: each schedule's best)")
    top.legend()
    top.grid(alpha=0.3)
    bottom.axhline(0.0, color="k", lw=0.8)
    bottom.set_xscale("log")
    bottom.set_xlabel("peak learning rate")
    bottom.set_ylabel("loss - loss at the best LR (nats/token)")
    bottom.set_title("paired difference from the schedule's best LR (95% interval, documents)")
    bottom.grid(alpha=0.3)
    return save_figure(fig, out)


def plot_differences(
    diffs: Mapping[str, Mapping],
    out: str | Path,
    title: str,
    ylabel: str,
    margin: float | None = None,
) -> Path:
    """One point per comparison: the paired difference (nats/token) with its 95% interval as an
    error bar, and the zero line; the noise each interval covers is in the x labels."""
    figure_format(Path(out))
    fig = new_figure()
    ax = fig.add_subplot()
    labels = list(diffs)
    for i, k in enumerate(labels):
        d = diffs[k]
        color = "C2" if d["high"] < 0 else ("C3" if d["low"] > 0 else "C7")
        ax.errorbar(
            [i],
            [d["diff"]],
            yerr=[[d["diff"] - d["low"]], [d["high"] - d["diff"]]],
            marker="o",
            capsize=4,
            color=color,
        )
    ax.axhline(0.0, color="k", lw=0.8)
    if margin is not None:
        ax.axhline(margin, color="k", lw=0.8, ls="--")
    ax.set_xticks(
        range(len(labels)),
        [f"{k}\n({diffs[k]['noise']})" for k in labels],
        rotation=0 if len(labels) <= 5 else 30,  # many comparisons: slanted, so none overlap
        ha="center" if len(labels) <= 5 else "right",
        fontsize=7,
    )
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, out)
