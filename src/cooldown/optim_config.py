"""`[optim]`: the optimizer's hyper-parameters, torch-free so that reading a run's config never
loads torch (`cooldown.optim` builds the optimizer from it)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

OptimizerName = Literal["adamw", "schedule-free"]


class OptimConfig(BaseModel):
    """Optimizer hyper-parameters (defaults: the paper's small-model setup)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: OptimizerName = "adamw"
    lr: float = Field(1e-3, gt=0, description="peak learning rate; the schedule multiplies it")
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = Field(1e-8, gt=0)
    weight_decay: float = Field(0.1, ge=0)
    grad_clip: float = Field(1.0, ge=0, description="max global gradient norm; 0 disables clipping")
    # Schedule-free only: the interpolation power of its weighted average (library default 2.0).
    weight_lr_power: float = Field(2.0, ge=0)

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in v):
            raise ValueError(f"each beta must be in [0, 1), got {list(v)}")
        return v
