"""`cooldown predict`: fit a law on runs or logs, predict schedules, check held-out runs, report.

One call does what the command does: load the curves, fit once, predict each `--schedule` (its
length, warmup and peak LR default to the first fitted run's), evaluate held-out runs against the
same fit, rank the WSD cooldowns of a run of that length (`--search`), and with an output folder
write `predictions.json`, `predicted_curves.csv` and the figure
`predictions.png` (atomically).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from cooldown.errors import CooldownError
from cooldown.fileio import atomic_write_json, atomic_write_text
from cooldown.predict.curves import LossCurve, check_same_setup, load_curves
from cooldown.predict.fit import LawFit, fit_law
from cooldown.predict.prediction import (
    HoldoutEvaluation,
    PredictedCurve,
    evaluate_fit,
    predict,
)
from cooldown.predict.search import ScheduleCandidate, search_cooldown

__all__ = ["PredictionReport", "predict_schedules"]


@dataclass(frozen=True)
class PredictionReport:
    fit: LawFit
    curves: tuple[LossCurve, ...] = field(repr=False)
    predictions: tuple[PredictedCurve, ...] = field(repr=False)
    holdout: Optional[HoldoutEvaluation] = None
    files: tuple[Path, ...] = ()
    search: tuple[ScheduleCandidate, ...] = field(default=(), repr=False)

    def text(self) -> str:
        loss_name = self.curves[0].loss_name
        replicates = self.fit.bootstrap.shape[0]
        lines = [self.fit.describe()]
        if self.predictions:
            band = (
                f"95% bootstrap interval, {replicates} replicates" if replicates else "no bootstrap"
            )
            lines.append(f"predicted final {loss_name} (nats/token; {band}):")
            width = max(len(p.label) for p in self.predictions)
            for p in self.predictions:
                interval = p.final_interval
                shown = f"[{interval[0]:.4f}, {interval[1]:.4f}]" if interval else ""
                lines.append(
                    f"  {p.label:<{width}}  step {p.final_step:>7}  {p.final_loss:.4f} {shown}  "
                    f"peak LR {p.peak_lr:g}"
                )
        if self.holdout is not None:
            lines.append(self.holdout.table())
        if self.search:
            lines.append(_search_table(self.search, loss_name))
        lines.extend(f"wrote {path}" for path in self.files)
        return "\n".join(lines)

    def to_json(self) -> dict:
        fit = self.fit
        out = {
            "law": fit.law.name,
            "law_title": fit.law.title,
            "params": fit.params,
            "fitted_curves": list(fit.curve_names),
            "n_points": fit.n_points,
            "rms_log_residual": fit.rms_log_residual,
            "bootstrap_replicates": int(fit.bootstrap.shape[0]),
            "loss": self.curves[0].loss_name,
            "loss_units": "nats/token",
            "predictions": [
                {
                    "schedule": p.label,
                    "schedule_config": p.schedule.to_config() if p.schedule is not None else None,
                    "peak_lr": p.peak_lr,
                    "final_step": p.final_step,
                    "final_loss": p.final_loss,
                    "interval_95": list(p.final_interval) if p.final_interval else None,
                }
                for p in self.predictions
            ],
        }
        if fit.bootstrap.size:
            low, high = np.percentile(fit.bootstrap, (2.5, 97.5), axis=0)
            out["params_interval_95"] = {
                k: [float(a), float(b)]
                for k, a, b in zip(fit.law.param_names, low, high, strict=True)
            }
        if self.search:
            out["search"] = [
                {
                    "shape": c.shape,
                    "cooldown_frac": c.cooldown_frac,
                    "cooldown_start": c.cooldown_start,
                    "cooldown_steps": c.cooldown_steps,
                    "final_loss": c.final_loss,
                    "schedule_config": c.schedule.to_config(),
                }
                for c in self.search
            ]
        if self.holdout is not None:
            out["holdout"] = {
                "mare": self.holdout.mare,
                "worst": self.holdout.worst,
                "runs": [
                    {
                        "name": r.name,
                        "schedule": r.label,
                        "final_step": r.final_step,
                        "measured": r.measured,
                        "predicted": r.predicted,
                        "interval_95": list(r.interval) if r.interval else None,
                        "relative_error": r.relative_error,
                        "curve_mare": r.curve_mare,
                    }
                    for r in self.holdout.rows
                ],
            }
        return out


def _search_table(search: Sequence[ScheduleCandidate], loss_name: str, top: int = 10) -> str:
    total = search[0].cooldown_start + search[0].cooldown_steps
    lines = [
        f"best WSD cooldowns of a {total}-step run by predicted final {loss_name} (nats/token; "
        f"{min(top, len(search))} of {len(search)} candidates):"
    ]
    for rank, c in enumerate(search[:top], 1):
        lines.append(
            f"  {rank:>2}. {c.shape:<14} last {c.cooldown_frac:>4.0%} ({c.cooldown_steps} steps from "
            f"step {c.cooldown_start})  {c.final_loss:.4f}"
        )
    return "\n".join(lines)


def _curves_csv(predictions: Sequence[PredictedCurve]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["schedule", "step", "loss", "low", "high"])
    for p in predictions:
        for i, step in enumerate(p.steps):
            low = "" if p.low is None else f"{p.low[i]:.6f}"
            high = "" if p.high is None else f"{p.high[i]:.6f}"
            writer.writerow([p.label, int(step), f"{p.loss[i]:.6f}", low, high])
    return buf.getvalue()


def predict_schedules(
    paths: Sequence[str | Path],
    schedule_specs: Sequence[str] = (),
    *,
    law: str = "mpl",
    loss: str = "val_loss",
    columns: Optional[Mapping[str, str]] = None,
    total_steps: Optional[int] = None,
    peak_lr: Optional[float] = None,
    warmup_steps: Optional[int] = None,
    holdout: Sequence[str | Path] = (),
    n_bootstrap: int = 50,
    seed: int = 0,
    fit_from_step: int = 0,
    search: bool = False,
    out: Optional[str | Path] = None,
) -> PredictionReport:
    """Fit `law` on the runs/logs at `paths`, predict each schedule spec, evaluate `holdout` runs,
    with `search` rank the WSD cooldowns of a run of `total_steps`; with `out`, write the JSON, CSV
    and figure there."""
    from cooldown.schedule_specs import parse_schedule_spec

    if not schedule_specs and not holdout and not search:
        raise CooldownError(
            "schedule: give at least one --schedule to predict, --holdout run to check, or --search"
        )
    everything = load_curves([*paths, *holdout], loss, columns)
    curves, heldout = everything[: len(paths)], everything[len(paths) :]
    check_same_setup([*curves, *heldout])
    fit = fit_law(curves, law, n_bootstrap=n_bootstrap, seed=seed, fit_from_step=fit_from_step)
    steps = fit.total_steps if total_steps is None else total_steps
    warmup = fit.warmup_steps if warmup_steps is None else warmup_steps
    predictions = tuple(
        predict(
            fit,
            parse_schedule_spec(spec, total_steps=steps, defaults={"warmup_steps": warmup}),
            peak_lr,
        )
        for spec in schedule_specs
    )
    evaluation = evaluate_fit(fit, heldout) if heldout else None
    ranked = (
        tuple(search_cooldown(fit, steps, peak_lr=peak_lr, warmup_steps=warmup)) if search else ()
    )
    report = PredictionReport(fit, tuple(curves), predictions, evaluation, search=ranked)
    if out is None:
        return report

    from cooldown.report.prediction_plot import plot_predictions

    out = Path(out)
    measured = [*curves, *heldout]
    shown = [*predictions, *(evaluation.predictions if evaluation else ())]
    title = f"{fit.law.title}: measured (points), predicted (lines, 95% band)"
    files = (
        atomic_write_json(out / "predictions.json", report.to_json()),
        atomic_write_text(out / "predicted_curves.csv", _curves_csv(shown)),
        plot_predictions(measured, shown, out / "predictions.png", loss, title=title),
    )
    return PredictionReport(fit, tuple(curves), predictions, evaluation, files, ranked)
