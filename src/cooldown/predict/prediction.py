"""Predicting loss curves of schedules that were not run, and checking them on runs that were.

`predict(fit, schedule, peak_lr)` evaluates a fitted law on the LR sequence of any schedule of
`cooldown.schedules`; the interval at each step is the central 95% of the bootstrap replicates'
predictions. `evaluate_holdout(fit_runs, heldout_runs)` fits on some runs and reports, for each
other run, the relative error of its predicted final loss (and the mean along its curve).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from cooldown.errors import CooldownError
from cooldown.predict.curves import LossCurve, check_same_setup, load_curves
from cooldown.predict.fit import MAX_FIT_TERMS, LawFit, fit_law
from cooldown.predict.laws import peak_step

__all__ = [
    "HoldoutEvaluation",
    "HoldoutRow",
    "PredictedCurve",
    "evaluate_fit",
    "evaluate_holdout",
    "predict",
    "predict_lrs",
]

INTERVAL = (2.5, 97.5)  # percentiles of the bootstrap predictions: a 95% interval
_PLOT_POINTS = 300


@dataclass(frozen=True)
class PredictedCurve:
    """A law's loss (nats/token) at `steps` for one LR sequence, with bootstrap bounds."""

    label: str
    steps: np.ndarray = field(repr=False)
    loss: np.ndarray = field(repr=False)
    low: Optional[np.ndarray] = field(default=None, repr=False)
    high: Optional[np.ndarray] = field(default=None, repr=False)
    peak_lr: float = 0.0
    schedule: Any = field(default=None, repr=False)
    name: str = ""  # the measured run this predicts, for a held-out run

    @property
    def final_step(self) -> int:
        return int(self.steps[-1])

    @property
    def final_loss(self) -> float:
        return float(self.loss[-1])

    @property
    def final_interval(self) -> Optional[tuple[float, float]]:
        if self.low is None or self.high is None:
            return None
        return float(self.low[-1]), float(self.high[-1])


def _default_steps(n: int, lrs: np.ndarray) -> np.ndarray:
    # An even grid plus both sides of every LR kink, so a cooldown's start is drawn sharply.
    grid = np.linspace(1, n, min(n, _PLOT_POINTS)).round().astype(np.int64)
    kinks = np.flatnonzero(np.abs(np.diff(lrs, 2)) > 1e-12 * lrs.max()) + 2
    if kinks.size > 50:
        kinks = kinks[[0, -1]]
    edges = np.concatenate([kinks, kinks + 1, [peak_step(lrs), n]])
    return np.unique(np.concatenate([grid, edges[(edges >= 1) & (edges <= n)]]))


def predict_lrs(
    fit: LawFit,
    lrs: Sequence[float] | np.ndarray,
    steps: Optional[Sequence[int] | np.ndarray] = None,
    label: str = "",
    schedule: Any = None,
    name: str = "",
) -> PredictedCurve:
    """The fitted law on an explicit LR sequence (`lrs[n - 1]` for update n)."""
    lrs = np.asarray(lrs, dtype=np.float64)
    steps = _default_steps(lrs.size, lrs) if steps is None else np.asarray(steps, dtype=np.int64)
    loss = fit.law.loss(fit.params, lrs, steps)
    low = high = None
    if fit.bootstrap.size:
        # One table of the double sum for all replicates; merged drop groups on very long
        # schedules, as in the fit (the central prediction above is always exact).
        terms = fit.law.terms(lrs, steps, MAX_FIT_TERMS)
        replicas = np.array([terms.value(t) for t in fit.bootstrap])
        low, high = np.percentile(replicas, INTERVAL, axis=0)
    return PredictedCurve(label, steps, loss, low, high, float(lrs.max()), schedule, name)


def predict(
    fit: LawFit,
    schedule: Any,
    peak_lr: Optional[float] = None,
    steps: Optional[Sequence[int] | np.ndarray] = None,
) -> PredictedCurve:
    """The loss curve the fitted law predicts for `schedule` (a `cooldown.schedules` schedule) at
    peak LR `peak_lr` (default: the first fitted run's), at `steps` (default: a grid over 1..N
    ending at N)."""
    from cooldown.schedule_specs import label

    peak_lr = fit.peak_lr if peak_lr is None else float(peak_lr)
    if not (np.isfinite(peak_lr) and peak_lr > 0):
        raise CooldownError(f"peak_lr: must be a number > 0 (got {peak_lr!r})")
    lrs = peak_lr * schedule.multipliers(1, schedule.total_steps + 1)
    return predict_lrs(fit, lrs, steps, label=label(schedule), schedule=schedule)


# --- held-out evaluation -----------------------------------------------------------------------


@dataclass(frozen=True)
class HoldoutRow:
    name: str
    label: str
    final_step: int
    measured: float  # final observed loss, nats/token
    predicted: float
    interval: Optional[tuple[float, float]]
    curve_mare: float  # mean |relative error| over the run's points after warmup

    @property
    def relative_error(self) -> float:
        """(predicted - measured) / measured at the final observed step."""
        return (self.predicted - self.measured) / self.measured


@dataclass(frozen=True)
class HoldoutEvaluation:
    fit: LawFit
    rows: tuple[HoldoutRow, ...]
    curves: tuple[LossCurve, ...] = field(repr=False)
    predictions: tuple[PredictedCurve, ...] = field(repr=False)

    @property
    def mare(self) -> float:
        """Mean absolute relative error of the final losses."""
        return float(np.mean([abs(r.relative_error) for r in self.rows]))

    @property
    def worst(self) -> float:
        """Largest absolute relative error of a final loss."""
        return float(max(abs(r.relative_error) for r in self.rows))

    def table(self) -> str:
        lines = [
            f"held-out runs: {self.fit.law.name} law fitted on {', '.join(self.fit.curve_names)}",
            f"{'run':<24} {'final step':>10} {'measured':>9} {'predicted':>9} {'95% interval':>19}"
            f" {'rel. error':>10} {'curve MARE':>10}",
        ]
        for r in self.rows:
            interval = f"[{r.interval[0]:.4f}, {r.interval[1]:.4f}]" if r.interval else "n/a"
            lines.append(
                f"{r.name:<24} {r.final_step:>10} {r.measured:>9.4f} {r.predicted:>9.4f} "
                f"{interval:>19} {100 * r.relative_error:>+9.2f}% {100 * r.curve_mare:>9.2f}%"
            )
        lines.append(
            f"final loss (nats/token): MARE {100 * self.mare:.2f}%, worst {100 * self.worst:.2f}%"
        )
        return "\n".join(lines)


def _as_curves(runs: Sequence[str | Path | LossCurve], loss: str) -> list[LossCurve]:
    paths = [r for r in runs if not isinstance(r, LossCurve)]
    loaded = iter(load_curves(paths, loss) if paths else [])
    return [r if isinstance(r, LossCurve) else next(loaded) for r in runs]


def evaluate_fit(fit: LawFit, heldout: Sequence[LossCurve]) -> HoldoutEvaluation:
    """Predict each held-out curve from its own LR sequence with `fit` and compare: the relative
    error of its final loss (the last observed point) and the mean along its curve."""
    if not heldout:
        raise CooldownError("heldout_runs: give at least one run to predict")
    overlap = set(fit.curve_names) & {c.name for c in heldout}
    if overlap:
        raise CooldownError(f"heldout_runs: {', '.join(sorted(overlap))} also used in the fit")
    rows, predictions = [], []
    for curve in heldout:
        prediction = predict_lrs(
            fit, curve.lrs, curve.steps, curve.label, curve.schedule, name=curve.name
        )
        after = curve.steps > peak_step(curve.lrs)
        errors = np.abs(prediction.loss[after] - curve.losses[after]) / curve.losses[after]
        rows.append(
            HoldoutRow(
                name=curve.name,
                label=curve.label,
                final_step=curve.final_step,
                measured=curve.final_loss,
                predicted=prediction.final_loss,
                interval=prediction.final_interval,
                curve_mare=float(errors.mean()) if errors.size else float("nan"),
            )
        )
        predictions.append(prediction)
    return HoldoutEvaluation(fit, tuple(rows), tuple(heldout), tuple(predictions))


def evaluate_holdout(
    fit_runs: Sequence[str | Path | LossCurve],
    heldout_runs: Sequence[str | Path | LossCurve],
    law: str = "mpl",
    *,
    loss: str = "val_loss",
    n_bootstrap: int = 50,
    seed: int = 0,
    fit_from_step: int = 0,
) -> HoldoutEvaluation:
    """Fit `law` on `fit_runs` (run folders, logs or curves), predict each of `heldout_runs` from
    its own schedule and report the errors (see `evaluate_fit`)."""
    everything = _as_curves([*fit_runs, *heldout_runs], loss)
    fit_curves, heldout = everything[: len(fit_runs)], everything[len(fit_runs) :]
    if not heldout:
        raise CooldownError("heldout_runs: give at least one run to predict")
    check_same_setup([*fit_curves, *heldout])
    fit = fit_law(fit_curves, law, n_bootstrap=n_bootstrap, seed=seed, fit_from_step=fit_from_step)
    return evaluate_fit(fit, heldout)
