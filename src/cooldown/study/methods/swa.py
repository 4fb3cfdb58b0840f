"""`swa`: the trunk's weight average read off at each budget (nodes of kind `average`): no
training beyond running the trunk to the largest budget."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from pydantic import BaseModel, ConfigDict, Field

from cooldown.errors import CooldownError
from cooldown.study.fields import LRSweep
from cooldown.study.methods.base import StudyMethod
from cooldown.study.plan_nodes import PlanNode, SizeInfo, lr_label, make_node

if TYPE_CHECKING:
    from cooldown.study.spec import StudySpec


class SwaMethod(BaseModel):
    """The trunk's weight average (`average`, e.g. "swa") read off at each budget: no extra
    training beyond running the trunk to the largest budget. `lr` defaults to the cooldown's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lr: Optional[LRSweep] = None
    average: str = Field("swa", description="which average's val_loss_<average> to read")


class Swa(StudyMethod):
    name = "swa"
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

    def trunk_lrs(self, spec: StudySpec) -> list[float]:
        return spec.methods.swa_lrs()

    def trunk_end(self, spec: StudySpec, info: SizeInfo) -> int:
        return info.budgets[-1]

    def trunk_nodes(self, spec: StudySpec, info: SizeInfo, trunk: PlanNode) -> list[PlanNode]:
        lr, seed = trunk.lr, trunk.seed
        out = []
        previous = 0
        for t in info.budgets:
            out.append(
                make_node(
                    info,
                    0,
                    id=f"{self.name}-{info.name}-{t}-lr{lr_label(lr)}-seed{seed}",
                    kind="average",
                    method=self.name,
                    lr=lr,
                    seed=seed,
                    total_steps=t,
                    parent=trunk.id,
                    parent_step=t,
                    budget_steps=t,
                    incremental_steps=t - previous,
                )
            )
            previous = t
        return out
