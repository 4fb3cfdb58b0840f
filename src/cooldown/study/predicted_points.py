"""The loss of a `cooldown-predicted` point that was never trained.

Per size, LR and seed the study ran a constant-LR trunk and one or two measured branches. A
loss-curve law (`cooldown.predict`: the Multi-Power Law or the LR-annealing law) is fitted ONCE on
their `val_loss` curves, and every other budget T gets the final loss the law predicts for the
branch it would have been (`cooldown.schedules.branch_of`): the trunk's warmup and peak LR,
cooling down from step s = T - round(F T) over k = round(F T) updates of the method's shape, to 0.

Which points enter the fit: the trunk's evaluations and each measured branch's (`read_run_curve`
stitches the trunk's points into a branch's curve; `fit_law` counts those repeats once).

Calibration. The curves are the periodic evaluation on `train.eval_batches` fixed batches; a
measured row's loss is the final full validation pass. So a prediction is converted with the
ratio full / periodic measured at the measured branches' final steps (the geometric mean over
them: the mean of the log ratios), and says so in its `calibration` column. A study without the
final full pass (`train.final_full_eval = false`) keeps the periodic scale (calibration 1).

Torch-free (numpy, scipy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cooldown.errors import CooldownError
from cooldown.schedules import branch_of
from cooldown.study.plan import Plan, PlanNode
from cooldown.study.run_dirs import node_run


@dataclass(frozen=True)
class GroupPrediction:
    """The law fitted on one trunk and its measured branches, ready to predict its points."""

    fit: Any  # cooldown.predict.LawFit
    trunk_schedule: Any  # the trunk's constant schedule: its warmup is every branch's
    peak_lr: float
    calibration: float  # full validation pass / periodic evaluation, at the measured branches
    loss_evaluation: str  # "full" or "paired" (calibrated), or "eval_batches"

    def point(self, node: PlanNode) -> dict[str, Any]:
        """The predicted final loss of a `prediction` node (nats/token) and its interval."""
        assert node.kind == "prediction" and node.parent_step is not None
        assert node.cooldown_steps is not None
        return self.branch(
            node.parent_step, node.cooldown_steps, node.shape or "linear", node.total_steps
        )

    def branch(self, step: int, cooldown_steps: int, shape: str, total_steps: int) -> dict:
        """The predicted final loss (nats/token, calibrated) of the trunk's branch at `step`
        cooling down over `cooldown_steps` updates of `shape`, and its interval."""
        from cooldown.predict import predict  # scipy: only once points are predicted

        schedule = branch_of(self.trunk_schedule, step, cooldown_steps, shape)
        curve = predict(self.fit, schedule, self.peak_lr, steps=[total_steps])
        periodic = curve.final_loss
        interval = curve.final_interval
        c = self.calibration
        return {
            "final_val_loss": periodic * c,
            "val_loss_eval": periodic,  # the eval-batches scale the law was fitted on
            "loss_interval_low": None if interval is None else interval[0] * c,
            "loss_interval_high": None if interval is None else interval[1] * c,
            "calibration": c,
        }


def calibration_ratio(pairs: list[tuple[float, float]]) -> float:
    """measured / periodic over (measured, periodic) pairs of the measured branches' final
    steps: the geometric mean (the mean of the log ratios)."""
    return math.exp(sum(math.log(m / q) for m, q in pairs) / len(pairs))


def _calibration(measured: list[PlanNode], results: dict[str, dict[str, Any]]) -> tuple[float, str]:
    pairs = []
    for node in measured:
        result = results[node.id]
        full = result["manifest"].get("final_val_loss")
        if full is None:  # no final full pass: rows stay on the periodic scale
            return 1.0, "eval_batches"
        periodic = [r["val_loss"] for r in result["eval_rows"] if r["step"] == node.total_steps]
        if not periodic:
            raise CooldownError(f"node {node.id} logged no val_loss at its final step")
        pairs.append((full, periodic[-1]))
    return calibration_ratio(pairs), "full"


def predict_group(
    plan: Plan, point: PlanNode, results: dict[str, dict[str, Any]], study_dir: Path
) -> GroupPrediction:
    """Fit the method's law on the trunk and measured branches that `point` is predicted from
    (`point.fit_on`: the trunk first); `results` holds their stored results (all done)."""
    from cooldown.predict import fit_law, read_run_curve  # scipy: only when a law is fitted

    settings = plan.spec.methods.cooldown_predicted
    assert settings is not None and point.fit_on
    trunk_id, *measured_ids = point.fit_on
    measured = [plan.by_id[i] for i in measured_ids]
    trunk_curve = read_run_curve(node_run(study_dir, trunk_id).path)
    curves = [trunk_curve]
    curves += [read_run_curve(node_run(study_dir, n.id).path) for n in measured]
    fit = fit_law(
        curves,
        settings.law,
        n_bootstrap=settings.n_bootstrap,
        seed=0,  # the same intervals every time the results are collected
        fit_from_step=settings.from_step or 0,
    )
    calibration, how = _calibration(measured, results)
    return GroupPrediction(fit, trunk_curve.schedule, trunk_curve.peak_lr, calibration, how)
