"""The Multi-Power Law paper's benchmark on its own real GPU loss curves.

Luo et al. 2025 ("A Multi-Power Law for Loss Curve Prediction Across Learning Rate Schedules",
arXiv 2503.12811) released the training-loss curves of 25M, 100M and 400M-parameter models under
nine schedules each (vendored in `cooldown/predict/examples/mpl/`, MIT, see its LICENSE and
README). This module fits our schedule-aware law on them and predicts the runs left out:

- split "paper": the paper's own split, fit on cosine_24000 + constant_24000 + wsdcon_9, predict
  the other six runs. The paper reports, over those six, a mean relative error over the whole
  curves of 0.110% / 0.142% / 0.168% and an MAE of 0.00376 / 0.00435 / 0.00484 nats (25M / 100M /
  400M; its repository's README and logs). Its metric, which we use too: for each test run the
  mean over all logged points of |predicted - measured| / measured, then the mean over the runs.
- split "wsd": the paper's recipe for a new setup, fit on a constant-LR run plus one WSD cooldown
  (constant_24000 + wsd_20000_24000) and predict the seven others.

The CSVs log the LR only every 128 steps, while the laws need the LR of every update. The LR
sequences are therefore rebuilt from the schedules of the paper's code (linear warmup from 0 over
2,160 steps, peak 3e-4, cosine and WSD decays to 3e-5, two-stage drops at step 8,000) and checked
against every logged LR (`load_mpl_curves` refuses a mismatch). Index convention: the paper's
array lrs_p[0..N-1] starts with lrs_p[0] = 0 and its loss at logged step s uses lrs_p[0..s]; our
LR sequence (update n has `lrs[n - 1]`) is lrs_p[1:], so the logged step is our step unchanged.

Our MPL counts LR drops after the warmup only (see `cooldown.predict.laws`). The paper's code also
sums the warmup's rising LR into its loss-drop term (as negative drops); that term is nearly a
constant (absorbed by L0), so its published L0 is about B * 3e-4 lower than ours for the same
curve. Its published parameters are therefore not comparable one to one with ours.

Why our errors are above the paper's (measured, see the README's table): our fit converges (grid
starts, L-BFGS-B to tight tolerances) and reaches a lower error on the fitted curves than the
paper's published fit (0.02-0.06% vs 0.11-0.18%), but the extra freedom goes into the loss-drop
term (B large with beta small, or C small with gamma large), which extrapolates the 3x longer
cosine_72000 worse. The paper's fit (AdamW, at most 200 steps from C = 1, beta = gamma = 0.5) is
far from the optimum of its own objective: fully fitted, its own form (warmup drops included)
predicts no better than ours (0.137% / 0.194% / 0.322%). Neither fitting from step 5,000, nor
weighting the curves equally, nor the paper's start, nor the exact double sum changed this by more
than 0.01 points, so the fitter is left as it is: early stopping is a prior we cannot justify.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Optional

import numpy as np

from cooldown.errors import CooldownError
from cooldown.fileio import atomic_write_text
from cooldown.predict.curves import LossCurve
from cooldown.predict.fit import LawFit, fit_law
from cooldown.predict.prediction import PredictedCurve, predict_lrs

__all__ = [
    "MPL_PAPER_ERRORS",
    "MPL_RUNS",
    "MPL_SIZES",
    "MPL_SPLITS",
    "MPLBenchmark",
    "MPLBenchmarkRow",
    "MPLSplitResult",
    "load_mpl_curves",
    "mpl_benchmark",
    "mpl_example_dir",
    "mpl_lrs",
    "mpl_selection",
    "output_folder",
    "run_to_run_difference",
]

# Model size -> folder of the vendored curves.
MPL_SIZES: dict[str, str] = {"25M": "25", "100M": "100", "400M": "400"}
MPL_RUNS: tuple[str, ...] = (
    "constant_24000",
    "constant_72000",
    "cosine_24000",
    "cosine_72000",
    "wsd_20000_24000",
    "wsdld_20000_24000",
    "wsdcon_3",
    "wsdcon_9",
    "wsdcon_18",
)
# Split name -> (what the split is, the runs fitted on); every other run is predicted.
MPL_SPLITS: dict[str, tuple[str, tuple[str, ...]]] = {
    "paper": ("the MPL paper's split", ("cosine_24000", "constant_24000", "wsdcon_9")),
    "wsd": ("constant + one WSD cooldown", ("constant_24000", "wsd_20000_24000")),
}
# The MPL paper's own errors on its split (mean relative error over the curves, MAE in nats),
# from its repository's README (the "PredE" and "MAE" of its fitted law on the six test runs).
MPL_PAPER_ERRORS: dict[str, tuple[float, float]] = {
    "25M": (0.00110, 0.00376),
    "100M": (0.00142, 0.00435),
    "400M": (0.00168, 0.00484),
}

# The schedules of the paper's code.
_WARMUP = 2160
_PEAK_LR = 3e-4
_END_LR = 3e-5
_TWO_STAGE_TOTAL = 16000  # wsdcon runs: two-stage schedule of 16k steps (logged to ~14k)
_TWO_STAGE_DROP = 8000
# The fit merges the ~22k drop steps of a 24k-step cosine into at most this many groups per curve
# (predictions are always exact). Measured on the paper split: the same errors as 1,024 groups
# (fit_law's default) and as the exact sum, to 0.0001 percentage points, at a third of the time.
FIT_TERMS = 256
_LR_TOLERANCE = 1e-9  # relative: the logged LRs are the schedule's values printed in full


def mpl_example_dir():
    """The vendored curves (an importlib.resources Traversable: works from a wheel too)."""
    return resources.files("cooldown.predict").joinpath("examples", "mpl")


def mpl_lrs(run: str) -> np.ndarray:
    """The paper's LR array lrs_p[0..N-1] of `run` (lrs_p[0] = 0: the warmup starts at 0)."""
    kind, _, rest = run.partition("_")
    if run not in MPL_RUNS:
        raise CooldownError(f"run: {run!r} is not one of {', '.join(MPL_RUNS)}")
    total = _TWO_STAGE_TOTAL if kind == "wsdcon" else int(rest.split("_")[-1])
    warmup = np.linspace(0.0, _PEAK_LR, _WARMUP)
    i = np.arange(_WARMUP, total)
    if kind == "constant":
        after = np.full(i.size, _PEAK_LR)
    elif kind == "cosine":
        after = _END_LR + 0.5 * (_PEAK_LR - _END_LR) * (
            1 + np.cos(np.pi * (i - _WARMUP) / (total - _WARMUP))
        )
    elif kind == "wsdcon":
        after = np.where(i < _TWO_STAGE_DROP, _PEAK_LR, int(rest) * 1e-5)
    else:  # wsd (exponential interpolation to the end LR) or wsdld (linear)
        decay = int(rest.split("_")[0])
        frac = np.clip((i - decay) / (total - decay), 0.0, None)
        if kind == "wsd":
            after = _PEAK_LR ** (1 - frac) * _END_LR**frac
        else:
            after = _PEAK_LR * (1 - frac) + _END_LR * frac
    return np.concatenate([warmup, after])


def _read_csv(size: str, run: str) -> tuple[str, np.ndarray]:
    folder = MPL_SIZES[size]
    path = mpl_example_dir().joinpath(folder, f"{run}.csv")
    text = path.read_text(encoding="utf-8")
    header, _, body = text.partition("\n")
    if header.strip() != "step,lr,loss":
        raise CooldownError(f"{path}: expected the columns step,lr,loss (got {header.strip()!r})")
    return str(path), np.loadtxt(io.StringIO(body), delimiter=",", ndmin=2)


def load_mpl_curves(size: str) -> dict[str, LossCurve]:
    """The nine curves of one model size (`MPL_SIZES`), run name -> LossCurve (training loss,
    nats/token), each with the full LR sequence of its schedule."""
    if size not in MPL_SIZES:
        raise CooldownError(f"size: {size!r} is not one of {', '.join(MPL_SIZES)}")
    curves = {}
    for run in MPL_RUNS:
        source, table = _read_csv(size, run)
        steps, logged_lr, loss = table[:, 0].astype(np.int64), table[:, 1], table[:, 2]
        lrs_p = mpl_lrs(run)
        if steps.max() >= lrs_p.size:
            raise CooldownError(f"{source}: step {steps.max()} beyond its schedule's {lrs_p.size}")
        mismatch = np.abs(lrs_p[steps] - logged_lr) / logged_lr
        if mismatch.max() > _LR_TOLERANCE:
            at = int(steps[np.argmax(mismatch)])
            raise CooldownError(
                f"{source}: the logged LR at step {at} differs from the rebuilt schedule's "
                f"({logged_lr[np.argmax(mismatch)]:.6g} vs {lrs_p[at]:.6g})"
            )
        curves[run] = LossCurve(
            name=run,
            lrs=lrs_p[1:],
            steps=steps,
            losses=loss,
            loss_name="train_loss",
            setup={"model.params": size},
            source=source,
        )
    return curves


# --- the benchmark ------------------------------------------------------------------------------


@dataclass(frozen=True)
class MPLBenchmarkRow:
    """One predicted test run: errors over its whole logged curve and at its last point."""

    split: str
    size: str
    run: str
    points: int
    mean_rel_error: float  # mean over the points of |predicted - measured| / measured
    mae: float  # mean |predicted - measured|, nats/token
    worst_rel_error: float
    final_step: int
    final_measured: float  # nats/token
    final_predicted: float

    @property
    def final_rel_error(self) -> float:
        """(predicted - measured) / measured at the last logged step (signed)."""
        return (self.final_predicted - self.final_measured) / self.final_measured


@dataclass(frozen=True)
class MPLSplitResult:
    """One fit (a split at one model size) and its predictions of the runs it did not see."""

    split: str
    size: str
    fit: LawFit
    rows: tuple[MPLBenchmarkRow, ...]
    predictions: tuple[PredictedCurve, ...] = field(repr=False)
    curves: tuple[LossCurve, ...] = field(repr=False)  # the measured test runs
    fit_seconds: float = 0.0
    run_to_run: float = float("nan")  # see `run_to_run_difference`

    @property
    def mean_rel_error(self) -> float:
        return float(np.mean([r.mean_rel_error for r in self.rows]))

    @property
    def mae(self) -> float:
        return float(np.mean([r.mae for r in self.rows]))

    @property
    def mean_abs_final_error(self) -> float:
        return float(np.mean([abs(r.final_rel_error) for r in self.rows]))

    @property
    def worst_rel_error(self) -> float:
        return float(max(r.worst_rel_error for r in self.rows))

    @property
    def paper(self) -> Optional[tuple[float, float]]:
        """The MPL paper's (mean relative error, MAE) for this fit, on its own split only."""
        return MPL_PAPER_ERRORS[self.size] if self.split == "paper" else None


_SUMMARY_COLUMNS = (
    "fit on",
    "size",
    "test runs",
    "mean rel. error",
    "MPL paper",
    "MAE (nats)",
    "MPL paper MAE",
    "mean abs. final-loss error",
    "worst point",
    "two runs, same schedule",
)
_ROW_COLUMNS = (
    "split",
    "size",
    "run",
    "points",
    "mean_rel_error",
    "mae_nats",
    "worst_rel_error",
    "final_step",
    "final_measured",
    "final_predicted",
    "final_rel_error",
    "paper_mean_rel_error",
    "paper_mae_nats",
    "run_to_run_rel_diff",
)


def _pct(x: float, digits: int = 3) -> str:
    return f"{100 * x:.{digits}f}%"


@dataclass(frozen=True)
class MPLBenchmark:
    """The benchmark's results: one `MPLSplitResult` per (split, size), fitted with `law`."""

    law: str
    results: tuple[MPLSplitResult, ...]
    wall_seconds: float

    @property
    def rows(self) -> list[MPLBenchmarkRow]:
        return [row for result in self.results for row in result.rows]

    def result(self, split: str, size: str) -> MPLSplitResult:
        for r in self.results:
            if r.split == split and r.size == size:
                return r
        raise CooldownError(f"no result for split {split!r} at size {size!r}")

    def summary_markdown(self) -> str:
        """One line per fit: our errors on its test runs beside the MPL paper's."""
        lines = ["| " + " | ".join(_SUMMARY_COLUMNS) + " |", "|" + "---|" * len(_SUMMARY_COLUMNS)]
        for r in self.results:
            paper = r.paper
            cells = [
                " + ".join(r.fit.curve_names),
                r.size,
                str(len(r.rows)),
                _pct(r.mean_rel_error),
                _pct(paper[0]) if paper else "n/a",
                f"{r.mae:.4f}",
                f"{paper[1]:.4f}" if paper else "n/a",
                _pct(r.mean_abs_final_error),
                _pct(r.worst_rel_error, 2),
                _pct(r.run_to_run),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def runs_markdown(self) -> str:
        """One line per predicted run."""
        head = (
            "| fit on | size | test run | points | mean rel. error | MAE (nats) | final step "
            "| final measured | final predicted | final-loss error |"
        )
        lines = [head, "|" + "---|" * 10]
        for r in self.rows:
            lines.append(
                f"| {r.split} | {r.size} | {r.run} | {r.points} | {_pct(r.mean_rel_error)} "
                f"| {r.mae:.4f} | {r.final_step} | {r.final_measured:.4f} "
                f"| {r.final_predicted:.4f} | {100 * r.final_rel_error:+.3f}% |"
            )
        return "\n".join(lines)

    def to_markdown(self) -> str:
        """The summary table and the per-run table, with what they measure."""
        splits = "; ".join(f"{name}: {what}" for name, (what, _) in MPL_SPLITS.items())
        return "\n".join(
            [
                f"Law: {self.law}. Training loss (nats/token) of the MPL paper's GPU runs; errors "
                "over every logged point of each predicted run (mean relative error, MAE), "
                f"averaged over the runs. Splits: {splits}. The last column is the noise floor: "
                "the mean relative difference of two runs of the same schedule (constant_24000 "
                "and constant_72000) over their shared steps, which no law can predict. "
                f"Wall time {self.wall_seconds:.1f} s.",
                "",
                self.summary_markdown(),
                "",
                self.runs_markdown(),
                "",
            ]
        )

    def csv_rows(self) -> list[dict[str, object]]:
        out = []
        for result in self.results:
            paper = result.paper or (None, None)
            for r in result.rows:
                out.append(
                    {
                        "split": r.split,
                        "size": r.size,
                        "run": r.run,
                        "points": r.points,
                        "mean_rel_error": f"{r.mean_rel_error:.6g}",
                        "mae_nats": f"{r.mae:.6g}",
                        "worst_rel_error": f"{r.worst_rel_error:.6g}",
                        "final_step": r.final_step,
                        "final_measured": f"{r.final_measured:.6g}",
                        "final_predicted": f"{r.final_predicted:.6g}",
                        "final_rel_error": f"{r.final_rel_error:.6g}",
                        "paper_mean_rel_error": "",
                        "paper_mae_nats": "",
                        "run_to_run_rel_diff": "",
                    }
                )
            out.append(
                {
                    "split": result.split,
                    "size": result.size,
                    "run": "mean",
                    "points": sum(r.points for r in result.rows),
                    "mean_rel_error": f"{result.mean_rel_error:.6g}",
                    "mae_nats": f"{result.mae:.6g}",
                    "worst_rel_error": f"{result.worst_rel_error:.6g}",
                    "final_step": "",
                    "final_measured": "",
                    "final_predicted": "",
                    "final_rel_error": f"{result.mean_abs_final_error:.6g}",
                    "paper_mean_rel_error": "" if paper[0] is None else f"{paper[0]:.6g}",
                    "paper_mae_nats": "" if paper[1] is None else f"{paper[1]:.6g}",
                    "run_to_run_rel_diff": f"{result.run_to_run:.6g}",
                }
            )
        return out

    def to_csv(self) -> str:
        """One row per predicted run plus a 'mean' row per fit (its final_rel_error is the mean
        absolute final-loss error); errors are fractions, losses nats/token."""
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=_ROW_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.csv_rows())
        return buf.getvalue()

    def write(self, out: str | Path, figure: bool = True) -> list[Path]:
        """Write mpl.csv, mpl.md and (with `figure`) mpl.png into the folder `out`."""
        out = output_folder(out)
        paths = [
            atomic_write_text(out / "mpl.csv", self.to_csv()),
            atomic_write_text(out / "mpl.md", self.to_markdown()),
        ]
        if figure:
            from cooldown.report.mpl_plot import plot_mpl_benchmark

            paths.append(plot_mpl_benchmark(self, out / "mpl.png"))
        return paths


def run_to_run_difference(curves: dict[str, LossCurve]) -> float:
    """Mean |L_a - L_b| / L_b over the shared steps of constant_24000 (a) and constant_72000 (b):
    two training runs of the same schedule, so their difference is run-to-run noise (data order,
    initialisation) that a law of the schedule cannot predict."""
    a, b = curves["constant_24000"], curves["constant_72000"]
    _, ia, ib = np.intersect1d(a.steps, b.steps, return_indices=True)
    return float(np.mean(np.abs(a.losses[ia] - b.losses[ib]) / b.losses[ib]))


def mpl_selection(
    sizes: Optional[Sequence[str]] = None, splits: Optional[Sequence[str]] = None
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The model sizes and splits asked for (None: all), checked, each once, in order."""
    sizes = tuple(dict.fromkeys(MPL_SIZES if sizes is None else sizes))
    splits = tuple(dict.fromkeys(MPL_SPLITS if splits is None else splits))
    bad = [s for s in sizes if s not in MPL_SIZES]
    if bad or not sizes:
        raise CooldownError(f"size: give some of {', '.join(MPL_SIZES)} (got {', '.join(bad)})")
    bad = [s for s in splits if s not in MPL_SPLITS]
    if bad or not splits:
        raise CooldownError(f"split: give some of {', '.join(MPL_SPLITS)} (got {', '.join(bad)})")
    return sizes, splits


def output_folder(out: str | Path) -> Path:
    """Create the folder `out` (and its parents) for the benchmark's files, or say why not."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CooldownError(f"--out: {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CooldownError(f"--out: cannot create the folder {out} ({e.strerror})") from None
    return out


def _evaluate(
    split: str, size: str, fit: LawFit, curves: Sequence[LossCurve], seconds: float, noise: float
):
    rows, predictions = [], []
    for curve in curves:
        predicted = predict_lrs(fit, curve.lrs, curve.steps, label=curve.name, name=curve.name)
        error = predicted.loss - curve.losses
        rel = np.abs(error) / curve.losses
        rows.append(
            MPLBenchmarkRow(
                split=split,
                size=size,
                run=curve.name,
                points=int(curve.steps.size),
                mean_rel_error=float(rel.mean()),
                mae=float(np.abs(error).mean()),
                worst_rel_error=float(rel.max()),
                final_step=curve.final_step,
                final_measured=curve.final_loss,
                final_predicted=float(predicted.loss[-1]),
            )
        )
        predictions.append(predicted)
    return MPLSplitResult(
        split, size, fit, tuple(rows), tuple(predictions), tuple(curves), seconds, noise
    )


def mpl_benchmark(
    sizes: Sequence[str] = tuple(MPL_SIZES),
    splits: Sequence[str] = tuple(MPL_SPLITS),
    law: str = "mpl",
    *,
    n_bootstrap: int = 0,
    seed: int = 0,
    max_terms: Optional[int] = FIT_TERMS,
) -> MPLBenchmark:
    """Fit `law` ('mpl' or 'tissue') per model size and split (`MPL_SPLITS`) on the vendored MPL
    curves and predict the runs left out. `n_bootstrap` > 0 adds bootstrap intervals to the
    predictions (slower; off by default). `max_terms`: drop steps per curve beyond which the
    fit merges the MPL's double sum into groups (`fit_law`; None: exact). Returns an `MPLBenchmark` (`.write(folder)` writes
    mpl.csv, mpl.md and mpl.png)."""
    sizes, splits = mpl_selection(sizes, splits)
    start = time.perf_counter()
    results = []
    for split in splits:
        _, fit_on = MPL_SPLITS[split]
        for size in sizes:
            curves = load_mpl_curves(size)
            t0 = time.perf_counter()
            fit = fit_law(
                [curves[r] for r in fit_on],
                law,
                n_bootstrap=n_bootstrap,
                seed=seed,
                max_terms=max_terms,
            )
            seconds = time.perf_counter() - t0
            test = [c for name, c in curves.items() if name not in fit_on]
            noise = run_to_run_difference(curves)
            results.append(_evaluate(split, size, fit, test, seconds, noise))
    return MPLBenchmark(law, tuple(results), time.perf_counter() - start)


def readme_text(bench: MPLBenchmark) -> str:
    """The README's MPL block: what was fitted, when, and the summary table."""
    import datetime

    day = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    return (
        f"Output of `cooldown predict-benchmark mpl` on {day} (law {bench.law}; mean over the "
        "predicted runs of each run's mean relative error over its whole curve; MAE in "
        "nats/token):\n\n" + bench.summary_markdown()
    )
