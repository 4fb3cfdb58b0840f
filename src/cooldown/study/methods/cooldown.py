"""`cooldown`: per size and LR one constant-LR trunk with a permanent checkpoint at every branch
point, and per budget T and shape a branch from step s = T - k cooling down over k = round(F T)
updates (`cooldown.schedules.cooldown_split`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cooldown.decay_shapes import SHAPES, canonical_shape
from cooldown.study.fields import LRSweep, as_list
from cooldown.study.methods.base import StudyMethod
from cooldown.study.plan_nodes import PlanNode, SizeInfo, budget_split, trunk_point

if TYPE_CHECKING:
    from cooldown.study.spec import Methods, StudySpec


class CooldownMethod(BaseModel):
    """Per size and LR: one constant-LR trunk with a permanent checkpoint at every branch point,
    and a branch per budget cooling down over its last `fraction` of updates."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lr: LRSweep
    fraction: float = Field(0.2, gt=0.0, lt=1.0, description="cooldown share of each budget")
    shapes: list[str] = Field(default_factory=lambda: ["linear"])
    final_lr_frac: float = Field(0.0, ge=0.0, le=1.0)
    power: float | None = Field(None, gt=0.0, description="exponent of shape 'power'")

    @field_validator("shapes", mode="before")
    @classmethod
    def _shape_list(cls, v: Any) -> Any:
        return as_list(v)

    @field_validator("shapes")
    @classmethod
    def _known_shapes(cls, v: list[str]) -> list[str]:
        out = [canonical_shape(s) for s in v]
        bad = [s for s in v if canonical_shape(s) not in SHAPES]
        if bad:
            raise ValueError(f"unknown shape {bad[0]!r}; allowed: {', '.join(SHAPES)}")
        if not out:
            raise ValueError("give at least one shape")
        if len(set(out)) != len(out):
            raise ValueError("a shape is listed twice")
        return out

    @model_validator(mode="after")
    def _shape_settings(self) -> CooldownMethod:
        if "exp" in self.shapes and self.final_lr_frac == 0.0:
            raise ValueError("final_lr_frac: shape 'exp' (m^x) needs a final fraction m > 0")
        if self.power is not None and "power" not in self.shapes:
            raise ValueError("power: only used by shape 'power' (not in shapes)")
        return self


class Cooldown(StudyMethod):
    name = "cooldown"
    settings_model = CooldownMethod
    on_trunk = True

    def trunk_lrs(self, methods: Methods) -> list[float]:
        settings = methods.get(self.name)
        return list(settings.lr) if settings is not None else []

    def branch_points(self, spec: StudySpec, info: SizeInfo) -> tuple[int, ...]:
        return tuple(budget_split(spec, info, t, self.name)[0] for t in info.budgets)

    def trunk_nodes(self, spec: StudySpec, info: SizeInfo, trunk: PlanNode) -> list[PlanNode]:
        splits = [budget_split(spec, info, t, self.name) for t in info.budgets]
        out = []
        for shape in self.settings(spec).shapes:
            previous = 0
            for t, (s, k) in zip(info.budgets, splits, strict=True):
                # A branch adds its cooldown and the trunk since the previous branch point.
                out.append(
                    trunk_point(
                        info,
                        trunk,
                        self.name,
                        t,
                        k,
                        kind="branch",
                        parent_step=s,
                        incremental_steps=k + s - previous,
                        shape=shape,
                        cooldown_steps=k,
                    )
                )
                previous = s
        return out

    def branch_cooldown(self, spec: StudySpec) -> dict[str, Any]:
        settings = self.settings(spec)
        return {"final_lr_frac": settings.final_lr_frac, "power": settings.power}

    def method_settings(self, spec: StudySpec) -> dict[str, Any]:
        return self.branch_cooldown(spec)
