"""`cooldown-predicted`: per size and LR the constant-LR trunk (to the largest budget's branch
point) and real branches for the `measured` budgets only (the largest, and with measured = 2 the
smallest); every other budget is a point of kind `prediction` whose loss a loss-curve law fitted
on the trunk's and the measured branches' curves predicts (`cooldown.study.predicted_points`). A
measured branch that the `cooldown` method also has (same LR, shape and fraction, cooling to 0)
is trained once: this method's point is then of kind `shared`, naming that branch in `reuses`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cooldown.decay_shapes import SHAPES, canonical_shape
from cooldown.errors import CooldownError
from cooldown.study.fields import LRSweep
from cooldown.study.methods.base import PointLoss, PointSources, StudyMethod, own_or_cooldown_lrs
from cooldown.study.plan_nodes import PlanNode, SizeInfo, budget_split, point_id, trunk_point

if TYPE_CHECKING:
    from cooldown.study.plan import Plan
    from cooldown.study.spec import Budgets, Methods, SizeSpec, StudySpec

NAME = "cooldown-predicted"
PREDICTION_LAWS: tuple[str, ...] = ("mpl", "tissue")  # cooldown.predict.LAWS
# Parameters of each loss-curve law of `cooldown.predict` (kept here so that planning does not
# import scipy): a fit needs two observed points per parameter (`cooldown.predict.min_points`).
LAW_PARAMETERS: dict[str, int] = {"mpl": 7, "tissue": 4}
# The results columns of this method's rows only (None on a measured point).
PREDICTION_COLUMNS: tuple[str, ...] = ("loss_interval_low", "loss_interval_high", "calibration")


class PredictedMethod(BaseModel):
    """Per size and LR: the constant-LR trunk and real cooldown branches for only `measured`
    budgets (1: the largest; 2: the largest and the smallest); the final loss of every other
    budget's branch is predicted by a loss-curve law (`cooldown.predict`) fitted on the trunk's
    and the measured branches' curves. `lr` defaults to the cooldown's. Cooldowns go to 0."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lr: Optional[LRSweep] = None
    fraction: float = Field(0.2, gt=0.0, lt=1.0, description="cooldown share of each budget")
    shape: str = "linear"
    measured: int = Field(1, description="budgets per size that get a real branch: 1 or 2")
    law: str = Field("mpl", description="the loss-curve law: mpl or tissue")
    n_bootstrap: int = Field(20, ge=0, description="bootstrap refits for the loss interval")
    from_step: int | None = Field(None, ge=0, description="fit only points from this step on")

    @field_validator("shape")
    @classmethod
    def _known_shape(cls, v: str) -> str:
        shape = canonical_shape(v)
        if shape not in SHAPES:
            raise ValueError(f"unknown shape {v!r}; allowed: {', '.join(SHAPES)}")
        if shape == "exp":  # m^x never reaches 0, and this method's cooldowns end at 0
            raise ValueError("shape 'exp' needs a final LR fraction > 0; this method cools to 0")
        return shape

    @field_validator("measured", mode="before")
    @classmethod
    def _one_or_two(cls, v: Any) -> Any:
        if isinstance(v, bool) or v not in (1, 2):
            raise ValueError(
                "must be 1 (the largest budget) or 2 (the largest and the smallest budget)"
            )
        return v

    @field_validator("law")
    @classmethod
    def _known_law(cls, v: str) -> str:
        if v not in PREDICTION_LAWS:
            raise ValueError(f"unknown law {v!r}; allowed: {', '.join(PREDICTION_LAWS)}")
        return v


class CooldownPredicted(StudyMethod):
    name = NAME
    adapter_unsupported = (
        "its law is fitted on cooldown's own curves; fit an adapter study's curve.csv files with "
        "`cooldown fit` instead"
    )
    settings_model = PredictedMethod
    on_trunk = True

    def check_methods(self, methods: Methods) -> None:
        own_or_cooldown_lrs(methods, self.name)

    def check_spec(self, spec: StudySpec) -> None:
        if "eval_interval" not in spec.train:
            raise ValueError(
                "train.eval_interval: methods.cooldown-predicted fits a law to the periodic "
                "evaluations of the trunk and the measured branches; set how often they "
                "evaluate (a few dozen evaluations per trunk)"
            )
        measured = self.settings(spec).measured
        for i, size in enumerate(spec.sizes):
            _check_predicted_budgets(measured, i, size, size.budgets(spec.budgets))

    def trunk_lrs(self, methods: Methods) -> list[float]:
        return own_or_cooldown_lrs(methods, self.name)

    def branch_points(self, spec: StudySpec, info: SizeInfo) -> tuple[int, ...]:
        # Only the measured budgets branch off the trunk; the others are predicted.
        return tuple(budget_split(spec, info, t, NAME)[0] for t in _measured_budgets(spec, info))

    def trunk_nodes(self, spec: StudySpec, info: SizeInfo, trunk: PlanNode) -> list[PlanNode]:
        out = _predicted_points(spec, info, trunk, trunk.lr, trunk.seed)
        _check_fit_points(spec, info, trunk.total_steps)
        return out

    def point_loss(self, plan: Plan, point: PlanNode, sources: PointSources) -> PointLoss:
        """A measured point: its branch's loss; a predicted one: the law's prediction on the
        full-pass scale (`predicted_points`), with its bootstrap interval and calibration."""
        if point.kind != "prediction":
            measured = super().point_loss(plan, point, sources)
            measured.extra = dict.fromkeys(PREDICTION_COLUMNS)
            return measured
        group = sources.prediction(point)
        extra = group.point(point)
        assert point.parent is not None
        loss = extra.pop("final_val_loss")
        val_loss_eval = extra.pop("val_loss_eval")
        vocab = sources.trunk_vocab(point.parent, plan.sizes[point.size])
        return PointLoss(loss, loss, val_loss_eval, group.loss_evaluation, vocab, extra=extra)

    def point_model(self, plan: Plan, point: PlanNode) -> tuple[str, int, str | None] | None:
        return None if point.kind == "prediction" else super().point_model(plan, point)

    def branch_cooldown(self, spec: StudySpec) -> dict[str, Any]:
        # The measured branches cool down to 0: the law predicts that.
        return {"final_lr_frac": 0.0, "power": None}

    def method_settings(self, spec: StudySpec) -> dict[str, Any]:
        return self.branch_cooldown(spec)


def _check_fit_points(spec: StudySpec, info: SizeInfo, trunk_steps: int) -> None:
    """Refuse a plan whose trunk and measured branches will not log enough evaluations for the
    law to be fitted (found out at planning rather than after the runs)."""
    predicted = spec.methods.cooldown_predicted
    interval = spec.eval_interval
    assert predicted is not None and interval is not None  # the spec requires both
    # The laws are fitted on the points after the LR peaks (the warmup's end) and from_step on.
    first = max(spec.warmup_steps + 1, 2, predicted.from_step or 0)

    def evaluations(start: int, end: int) -> int:
        # The trainer evaluates every `interval` steps and at a run's last step.
        steps = set(range(interval, end + 1, interval)) | {end}
        return sum(1 for t in steps if t > start and t >= first)

    count = evaluations(0, trunk_steps)
    for t in _measured_budgets(spec, info):
        s, _ = budget_split(spec, info, t, NAME)
        count += evaluations(s, t)
    need = 2 * LAW_PARAMETERS[predicted.law]
    if count < need:
        raise CooldownError(
            f"train.eval_interval: the trunk and measured branches of size {info.name} log "
            f"{count} evaluations from step {first} on (every {interval} steps); "
            f"methods.cooldown-predicted's {predicted.law} law needs at least {need} to be "
            "fitted: evaluate more often or lower from_step"
        )


def _measured_budgets(spec: StudySpec, info: SizeInfo) -> tuple[int, ...]:
    """The budgets the predicted method runs: the largest, and with measured = 2 the smallest."""
    predicted = spec.methods.cooldown_predicted
    assert predicted is not None
    return (info.budgets[0], info.budgets[-1]) if predicted.measured == 2 else (info.budgets[-1],)


def _reused_branch_id(spec: StudySpec, info: SizeInfo, lr: float, seed: int, t: int) -> str | None:
    """The `cooldown` method's branch that is the same run as the predicted method's measured
    branch of budget `t`, if the study has it."""
    cooldown, predicted = spec.methods.cooldown, spec.methods.cooldown_predicted
    assert predicted is not None
    same = (
        cooldown is not None
        and lr in cooldown.lr
        and predicted.shape in cooldown.shapes
        and cooldown.fraction == predicted.fraction
        and cooldown.final_lr_frac == 0.0
        and (predicted.shape != "power" or cooldown.power is None)
    )
    if not same:
        return None
    return point_id("cooldown", info, t, lr, seed, predicted.shape)


def _predicted_points(
    spec: StudySpec, info: SizeInfo, trunk: PlanNode, lr: float, seed: int
) -> list[PlanNode]:
    """The predicted method's points of one trunk: a branch (or a shared one) per measured budget,
    a prediction per other budget."""
    predicted = spec.methods.cooldown_predicted
    assert predicted is not None
    measured = _measured_budgets(spec, info)
    ids = {t: point_id(NAME, info, t, lr, seed, predicted.shape) for t in info.budgets}
    runs = {t: _reused_branch_id(spec, info, lr, seed, t) or ids[t] for t in measured}
    fit_on = (trunk.id, *(runs[t] for t in measured))
    out = []
    previous = 0
    for t in info.budgets:
        s, k = budget_split(spec, info, t, NAME)
        common = dict(id=ids[t], parent_step=s, shape=predicted.shape, cooldown_steps=k)
        if t not in measured:
            out.append(
                trunk_point(info, trunk, NAME, t, 0, kind="prediction", fit_on=fit_on, **common)
            )
            continue
        # A measured point adds its cooldown and the trunk since the previous measured branch.
        incremental = k + s - previous
        previous = s
        if runs[t] != ids[t]:
            out.append(
                trunk_point(
                    info,
                    trunk,
                    NAME,
                    t,
                    0,
                    kind="shared",
                    reuses=runs[t],
                    incremental_steps=incremental,
                    **common,
                )
            )
        else:
            out.append(
                trunk_point(
                    info, trunk, NAME, t, k, kind="branch", incremental_steps=incremental, **common
                )
            )
    return out


def _check_predicted_budgets(measured: int, index: int, size: SizeSpec, budgets: Budgets) -> None:
    given = budgets.given
    count = len(getattr(budgets, given)) if given is not None else 0
    where = f"methods.cooldown-predicted.measured: size {size.name!r} (sizes.{index})"
    if measured == 2 and count < 2:
        raise ValueError(
            f"{where} has one budget; measured = 2 runs branches for the largest and the "
            "smallest budget"
        )
    if count <= measured:
        raise ValueError(
            f"{where} has {count} budget(s), all of them measured (measured = {measured}): "
            f"nothing left to predict; give at least {measured + 1} budgets or use "
            "methods.cooldown"
        )
