"""`swa`: the trunk's weight average read off at each budget (nodes of kind `average`): no
training beyond running the trunk to the largest budget."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from pydantic import BaseModel, ConfigDict, Field

from cooldown.errors import CooldownError
from cooldown.study.fields import LRSweep
from cooldown.study.methods.base import (
    NoResult,
    PointLoss,
    PointSources,
    StudyMethod,
    own_or_cooldown_lrs,
)
from cooldown.study.plan_nodes import PlanNode, SizeInfo, trunk_point

if TYPE_CHECKING:
    from cooldown.study.plan import Plan
    from cooldown.study.spec import Methods, StudySpec


class SwaMethod(BaseModel):
    """The trunk's weight average (`average`, e.g. "swa") read off at each budget: no extra
    training beyond running the trunk to the largest budget. `lr` defaults to the cooldown's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lr: Optional[LRSweep] = None
    average: str = Field("swa", description="which average's val_loss_<average> to read")


class Swa(StudyMethod):
    name = "swa"
    adapter_unsupported = "weight averages are kept by cooldown's own trainer, not by a foreign one"
    settings_model = SwaMethod
    on_trunk = True

    def check_size(self, spec: StudySpec, info: SizeInfo) -> None:
        interval = spec.eval_interval or 1
        bad = [t for t in info.budgets if t % interval]
        if bad:
            raise CooldownError(
                f"train.eval_interval: {interval} does not divide the {bad[0]}-step budget "
                f"of size {info.name}; methods.swa reads the trunk's evaluation there"
            )

    def check_methods(self, methods: Methods) -> None:
        own_or_cooldown_lrs(methods, self.name)

    def check_spec(self, spec: StudySpec) -> None:
        if spec.averaging is None:
            raise ValueError(
                "averaging: methods.swa reads the trunk's weight averages; add an "
                "[averaging] table (e.g. swa_window = 500)"
            )
        if "eval_interval" not in spec.train:
            raise ValueError(
                "train.eval_interval: methods.swa reads the trunk's evaluation at every "
                "budget; set an eval_interval that divides every budget's steps"
            )

    def trunk_lrs(self, methods: Methods) -> list[float]:
        return own_or_cooldown_lrs(methods, self.name)

    def trunk_end(self, spec: StudySpec, info: SizeInfo) -> int:
        return info.budgets[-1]

    def trunk_nodes(self, spec: StudySpec, info: SizeInfo, trunk: PlanNode) -> list[PlanNode]:
        previous = (0, *info.budgets)
        return [
            trunk_point(
                info, trunk, self.name, t, 0, kind="average", parent_step=t, incremental_steps=t - p
            )
            for t, p in zip(info.budgets, previous, strict=False)
        ]

    def point_loss(self, plan: Plan, point: PlanNode, sources: PointSources) -> PointLoss:
        """The trunk's evaluation at the budget: its `average`'s val_loss (eval batches)."""
        assert point.parent is not None
        at = [r for r in sources.trunk_eval_rows(point.parent) if r["step"] == point.budget_steps]
        if not at:
            raise NoResult(f"trunk {point.parent} has no evaluation at step {point.budget_steps}")
        evaluation = at[-1]
        key = f"val_loss_{self.settings(plan.spec).average}"
        if evaluation.get(key) is None:
            raise NoResult(
                f"trunk {point.parent} logged no {key} at step {point.budget_steps} "
                "(check the [averaging] table)"
            )
        averages = {
            k.removeprefix("val_loss_"): v
            for k, v in evaluation.items()
            if k.startswith("val_loss_")
        }
        raw = evaluation["val_loss"]
        vocab = sources.trunk_vocab(point.parent, plan.sizes[point.size])
        return PointLoss(evaluation[key], raw, raw, "eval_batches", vocab, averages)

    def point_model(self, plan: Plan, point: PlanNode) -> tuple[str, int, str | None] | None:
        assert point.parent is not None and point.budget_steps is not None
        return point.parent, point.budget_steps, self.settings(plan.spec).average
