"""Predicting the loss of schedules that were not run: schedule-aware loss-curve laws.

Fit the Multi-Power Law (Luo et al. 2025) or the LR-annealing law (Tissue et al. 2024) to the loss
curves of a few runs (say, a constant-LR run and one cooldown), then predict the whole loss curve
of any other schedule: other cooldown starts, lengths and shapes, cosine. Torch-free (numpy, scipy).

    curves = load_curves(["runs/constant", "runs/wsd-20"])
    fit = fit_law(curves, "mpl")
    curve = predict(fit, parse_schedule_spec("cosine", total_steps=600), peak_lr=3e-3)

Modules: `laws` (the two laws), `curves` (runs and logs to curves), `fit` (Huber/L-BFGS-B fit and
bootstrap), `prediction` (predict, held-out evaluation), `search` (best cooldown for a budget),
`workflow` (what `cooldown predict` does), `check` (training a searched cooldown to compare).
"""

from cooldown.predict.check import SearchCheck, run_candidate
from cooldown.predict.curves import (
    LossCurve,
    check_same_setup,
    load_curves,
    parse_columns,
    read_log_curve,
    read_run_curve,
)
from cooldown.predict.fit import LawFit, fit_law, min_points
from cooldown.predict.laws import (
    LAWS,
    AnnealingLaw,
    Law,
    MultiPowerLaw,
    annealing_momentum_area,
    forward_area,
    get_law,
    lr_drops,
    peak_step,
)
from cooldown.predict.prediction import (
    HoldoutEvaluation,
    HoldoutRow,
    PredictedCurve,
    evaluate_fit,
    evaluate_holdout,
    predict,
    predict_lrs,
)
from cooldown.predict.search import ScheduleCandidate, search_cooldown
from cooldown.predict.workflow import PredictionReport, predict_schedules

__all__ = [
    "LAWS",
    "AnnealingLaw",
    "HoldoutEvaluation",
    "HoldoutRow",
    "Law",
    "LawFit",
    "LossCurve",
    "MultiPowerLaw",
    "PredictedCurve",
    "PredictionReport",
    "ScheduleCandidate",
    "SearchCheck",
    "annealing_momentum_area",
    "check_same_setup",
    "evaluate_fit",
    "evaluate_holdout",
    "fit_law",
    "forward_area",
    "get_law",
    "load_curves",
    "lr_drops",
    "min_points",
    "parse_columns",
    "peak_step",
    "predict",
    "predict_lrs",
    "predict_schedules",
    "read_log_curve",
    "read_run_curve",
    "run_candidate",
    "search_cooldown",
]
