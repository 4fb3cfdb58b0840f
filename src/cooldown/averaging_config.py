"""`[averaging]`: which weight averages a run keeps (SWA windows, LAWA, EMA; see
`cooldown.averaging`), torch-free so that reading a run's config never loads torch."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["AveragingConfig"]


class AveragingConfig(BaseModel):
    """`[averaging]`: off unless a window or an EMA decay is given (existing runs do not change)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    swa_window: int = Field(0, ge=0, description="h: updates per SWA window; 0 turns SWA off")
    swa_interval: int = Field(1, gt=0, description="i: sample an iterate every i updates")
    swa_keep_last: int = Field(10, ge=1, description="completed-window files kept in averages/")
    lawa_windows: list[int] = Field(
        default_factory=list, description="n of each LAWA average (of the last n windows)"
    )
    ema_decay: float | None = Field(None, description="EMA decay in (0, 1); None turns EMA off")
    ema_interval: int = Field(1, gt=0, description="sample the EMA every this many updates")

    @field_validator("lawa_windows")
    @classmethod
    def _lawa_positive(cls, v: list[int]) -> list[int]:
        if any(n < 1 for n in v):
            raise ValueError("each LAWA window count must be at least 1")
        if len(set(v)) != len(v):
            raise ValueError(f"a LAWA window count is given twice ({v})")
        return v

    @field_validator("ema_decay")
    @classmethod
    def _decay_in_range(cls, v: float | None) -> float | None:
        if v is not None and not 0.0 < v < 1.0:
            raise ValueError("must be in (0, 1)")
        return v

    @model_validator(mode="after")
    def _check(self) -> AveragingConfig:
        h, i = self.swa_window, self.swa_interval
        if h and h % i:
            raise ValueError(
                f"swa_window {h} is not a multiple of swa_interval {i} (every window must end on "
                "a sampled update)"
            )
        if self.lawa_windows and not h:
            raise ValueError("lawa_windows needs swa_window > 0 (LAWA averages completed windows)")
        return self

    @property
    def enabled(self) -> bool:
        return self.swa_window > 0 or self.ema_decay is not None

    @property
    def names(self) -> list[str]:
        """The averages this config produces, in logging order."""
        out = ["swa"] if self.swa_window else []
        out += [f"lawa{n}" for n in self.lawa_windows]
        return out + (["ema"] if self.ema_decay is not None else [])
