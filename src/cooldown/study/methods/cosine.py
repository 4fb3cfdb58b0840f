"""`cosine`: one cosine run from scratch per budget (the baseline)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from cooldown.errors import CooldownError
from cooldown.study.fields import LRSweep
from cooldown.study.methods.base import StudyMethod
from cooldown.study.plan_nodes import PlanNode, SizeInfo, make_node, point_id

if TYPE_CHECKING:
    from cooldown.study.spec import StudySpec


class CosineMethod(BaseModel):
    """One cosine run from scratch per budget (the baseline), to `final_lr_frac` x the peak."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lr: LRSweep
    final_lr_frac: float = Field(0.1, ge=0.0, le=1.0)


class Cosine(StudyMethod):
    name = "cosine"
    settings_model = CosineMethod

    def check_size(self, spec: StudySpec, info: SizeInfo) -> None:
        if spec.warmup_steps >= info.budgets[0]:
            raise CooldownError(
                f"warmup_steps: warmup ({spec.warmup_steps} steps) leaves no steps for the "
                f"cosine decay of the {info.budgets[0]}-step budget of size {info.name}"
            )

    def run_nodes(self, spec: StudySpec, info: SizeInfo, seed: int) -> list[PlanNode]:
        return [
            make_node(
                info,
                t,
                id=point_id(self.name, info, t, lr, seed),
                kind="run",
                method=self.name,
                lr=lr,
                seed=seed,
                total_steps=t,
                budget_steps=t,
                incremental_steps=t,
            )
            for lr in self.settings(spec).lr
            for t in info.budgets
        ]

    def run_schedule(self, spec: StudySpec, node: PlanNode) -> dict[str, Any]:
        return {
            "kind": "cosine",
            "total_steps": node.total_steps,
            "final_lr_frac": self.settings(spec).final_lr_frac,
            "warmup_steps": spec.warmup_steps,
        }

    def method_settings(self, spec: StudySpec) -> dict[str, Any]:
        return {"final_lr_frac": self.settings(spec).final_lr_frac}
