"""`[optim]`: the optimizer's hyper-parameters, torch-free so that reading a run's config never
loads torch (`cooldown.optim` builds the optimizer from it).

    [optim]            name = "muon"; lr = 0.02         # the peak LR the schedule multiplies
    [optim.groups]     embedding = 10.0                 # per-group multipliers of that peak
    [optim.muon]       momentum = 0.95                  # Muon's own settings (name = "muon")
    [optim.cooldown]   betas = [0.9, 0.99]              # used during the schedule's cooldown only

The optional tables are left out of a resolved config when unset, so configs that do not use them
resolve (and hash) exactly as before they existed.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

OptimizerName = Literal["adamw", "schedule-free", "muon"]
GROUP_NAMES = ("matrix", "embedding", "unembedding", "scalar")
"""The parameter groups, in the order the optimizer holds them (see `cooldown.optim`)."""


def _check_betas(v: tuple[float, float]) -> tuple[float, float]:
    if not all(0.0 <= b < 1.0 for b in v):
        raise ValueError(f"each beta must be in [0, 1), got {list(v)}")
    return v


class GroupLRs(BaseModel):
    """Multipliers of the peak LR per parameter group (nanochat-style setups give each its own
    peak). matrix: the 2-D hidden matrices (attention, feed-forward); embedding: the token
    embedding (also when tied to the output head: a tied matrix is one tensor and has one LR);
    unembedding: an untied output head; scalar: norm gains and any other 1-D tensor."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    matrix: float = Field(1.0, gt=0)
    embedding: float = Field(1.0, gt=0)
    unembedding: float = Field(1.0, gt=0)
    scalar: float = Field(1.0, gt=0)


class MuonSettings(BaseModel):
    """torch.optim.Muon's settings for the matrix group (name = "muon"; defaults: the library's)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    momentum: float = Field(0.95, ge=0, lt=1)
    nesterov: bool = True
    ns_steps: int = Field(5, ge=1, lt=100)
    # original: x sqrt(max(1, rows/cols)) (Keller Jordan); match_rms_adamw: x 0.2 sqrt(max dim)
    # (Moonshot), with which Muon takes AdamW's LR and weight decay.
    adjust_lr_fn: Literal["original", "match_rms_adamw"] = "original"


class CooldownOptim(BaseModel):
    """Hyper-parameters that replace the run's own during the schedule's cooldown (updates after
    the cooldown start: see `cooldown.schedules.in_cooldown`); unset fields keep the run's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    betas: tuple[float, float] | None = Field(None, description="AdamW's betas (every AdamW group)")
    muon_momentum: float | None = Field(None, ge=0, lt=1, description="Muon's momentum")
    weight_decay: float | None = Field(None, ge=0, description="of the groups that decay")

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        return v if v is None else _check_betas(v)


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
    groups: GroupLRs | None = Field(None, description="per-group multipliers of the peak LR")
    muon: MuonSettings | None = Field(None, description="Muon's settings (name = 'muon')")
    cooldown: CooldownOptim | None = Field(None, description="settings for the cooldown only")

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        return _check_betas(v)

    @property
    def group_lrs(self) -> GroupLRs:
        return self.groups or GroupLRs()

    @property
    def muon_settings(self) -> MuonSettings:
        return self.muon or MuonSettings()

    def problems(self, schedule_kind: str, parallelism: str) -> list[str]:
        """What this [optim] cannot do with the schedule and parallelism (one line each)."""
        out = []
        if self.name == "schedule-free" and (self.groups or self.cooldown):
            which = "optim.groups" if self.groups else "optim.cooldown"
            out.append(f"{which}: schedule-free AdamW keeps one constant LR and no cooldown")
        if self.muon is not None and self.name != "muon":
            out.append(f"optim.muon: set for optim.name {self.name!r}; it needs name = 'muon'")
        cooldown_momentum = self.cooldown is not None and self.cooldown.muon_momentum is not None
        if cooldown_momentum and self.name != "muon":
            out.append("optim.cooldown.muon_momentum: needs optim.name = 'muon'")
        if self.cooldown is not None and schedule_kind not in ("wsd", "branch"):
            out.append(
                f"optim.cooldown: the {schedule_kind!r} schedule has no cooldown phase; set it "
                "with a 'wsd' schedule, or give it to the branch (its cooldown)"
            )
        if self.name == "muon" and parallelism == "fsdp":
            out.append(
                "optim.name: muon orthogonalises whole gradient matrices, but "
                "train.parallelism 'fsdp' shards them and torch.optim.Muon does not gather them; "
                "use 'ddp' or 'none'"
            )
        return out

    def phases(self, cooldown_start: int | None) -> dict[str, Any] | None:
        """The manifest's record of the settings by phase (None without [optim.cooldown])."""
        if self.cooldown is None:
            return None
        stable: dict[str, Any] = {"betas": list(self.betas), "weight_decay": self.weight_decay}
        if self.name == "muon":
            stable["muon_momentum"] = self.muon_settings.momentum
        cooldown = {**stable, **self.cooldown.model_dump(mode="json", exclude_none=True)}
        return {"cooldown_after_step": cooldown_start, "stable": stable, "cooldown": cooldown}
