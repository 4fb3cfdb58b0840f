"""The MPL benchmark's figure (`cooldown predict-benchmark mpl`): for each split and model size,
the measured training loss of every predicted run (points) with the law's prediction (line), and
below it the relative error of the prediction along the run."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cooldown.report.figures import figure_format, new_figure, save_figure


def _color(run: str) -> str:
    # One colour per run name in every panel, so a run is the same colour in both splits.
    from cooldown.predict.mpl_benchmark import MPL_RUNS

    return f"C{MPL_RUNS.index(run) % 10}" if run in MPL_RUNS else "k"


def plot_mpl_benchmark(benchmark, out: str | Path) -> Path:
    """Plot an `MPLBenchmark` (cooldown.predict.mpl_benchmark) to `out` (.png or .svg)."""
    out = Path(out)
    figure_format(out)
    splits = list(dict.fromkeys(r.split for r in benchmark.results))
    sizes = list(dict.fromkeys(r.size for r in benchmark.results))
    fig = new_figure(4.2 * len(sizes), 3.6 * 2 * len(splits))
    grid = fig.add_gridspec(2 * len(splits), len(sizes), height_ratios=[2, 1] * len(splits))
    for i, split in enumerate(splits):
        for j, size in enumerate(sizes):
            result = benchmark.result(split, size)
            ax_loss = fig.add_subplot(grid[2 * i, j])
            ax_err = fig.add_subplot(grid[2 * i + 1, j], sharex=ax_loss)
            for curve, predicted in zip(result.curves, result.predictions, strict=True):
                color = _color(curve.name)
                ax_loss.plot(curve.steps, curve.losses, "o", markersize=1.5, color=color)
                ax_loss.plot(
                    predicted.steps, predicted.loss, "-", lw=1.0, color=color, label=curve.name
                )
                if predicted.low is not None:  # bootstrap 95% band, when asked for
                    ax_loss.fill_between(
                        predicted.steps, predicted.low, predicted.high, color=color, alpha=0.2, lw=0
                    )
                rel = 100 * (predicted.loss - curve.losses) / curve.losses
                ax_err.plot(curve.steps, rel, "-", lw=0.9, color=color)
            # The first few thousand steps are far above the rest: show the part that differs.
            late = np.concatenate([c.losses[c.steps >= 6000] for c in result.curves])
            if late.size:
                pad = 0.05 * float(late.max() - late.min())
                ax_loss.set_ylim(float(late.min()) - pad, float(late.max()) + pad)
            ax_err.axhline(0.0, color="0.5", lw=0.6)
            ours = 100 * result.mean_rel_error
            paper = result.paper
            versus = f", MPL paper {100 * paper[0]:.3f}%" if paper else ""
            ax_loss.set_title(
                f"{size}, fit on {' + '.join(result.fit.curve_names)}\n"
                f"mean rel. error {ours:.3f}%{versus}",
                fontsize=8,
            )
            ax_loss.set_ylabel("training loss (nats/token)")
            ax_err.set_ylabel("(predicted - measured)\n/ measured (%)")
            ax_err.set_xlabel("step")
            ax_loss.legend(fontsize=6, title="points: measured, lines: predicted", title_fontsize=6)
    fig.suptitle(
        f"{benchmark.law} law on the MPL paper's GPU runs\n(Luo et al. 2025): runs not fitted",
        fontsize=10,
    )
    return save_figure(fig, out)
