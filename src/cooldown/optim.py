"""Optimizers: AdamW with the paper's parameter groups, Muon with AdamW beside it, and schedule-free
AdamW as a baseline.

The learning rate is not owned by the optimizer: the trainer sets `lr = peak_lr * multiplier(step)`
before every update (`SwitchableOptimizer.apply_schedule`, see `cooldown.schedules`), and each
parameter group gets that LR times its own multiplier (`[optim.groups]`). The groups, in this
order (`cooldown.optim_config.GROUP_NAMES`):

    matrix       2-D hidden matrices (attention, feed-forward)         weight decay; Muon if "muon"
    embedding    the token embedding, also when tied to the output     no weight decay; AdamW
    unembedding  an untied output head                                 weight decay; AdamW
    scalar       norm gains and any other 1-D tensor                   no weight decay; AdamW

A tied embedding is one tensor serving as input and output: it is grouped (and gets the LR) of
`embedding`. Groups with the same algorithm, multiplier and weight decay are merged into the first
of them, so the default AdamW holds exactly the paper's two groups (decayed, not decayed) in the
order older checkpoints store them.

`[optim.cooldown]` settings (AdamW betas, Muon momentum, weight decay) replace the run's own for
the updates of the schedule's cooldown. Like the LR they are set from the config before every
update, so what a checkpoint's param_groups hold never matters: resuming and branching are exact.

Schedule-free AdamW is the exception the paper compares against: it runs at a constant peak LR with
its own warmup, and its weights must be switched to evaluation mode (`.eval()`) before evaluating
or saving and back (`.train()`) before the next update; `SwitchableOptimizer` gives the others the
same two calls as no-ops so the trainer treats all alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cooldown.errors import CooldownError
from cooldown.optim_config import GROUP_NAMES, MuonSettings, OptimConfig, OptimizerName
from cooldown.schedules import BaseSchedule, cooldown_start

__all__ = [
    "GROUP_NAMES",
    "MuonAdamW",
    "OptimConfig",
    "OptimizerName",
    "SwitchableOptimizer",
    "build_optimizer",
    "clip_grad_norm",
    "group_of",
    "param_groups",
]

_DECAYED = {"matrix": True, "embedding": False, "unembedding": True, "scalar": False}


def group_of(name: str, param: torch.Tensor) -> str:
    """The group of a parameter by its name in `cooldown.model.Transformer` (see the top)."""
    if name.startswith("tok_embeddings"):
        return "embedding"
    if name.startswith("output"):
        return "unembedding"
    if param.ndim < 2 or "norm" in name:
        return "scalar"
    return "matrix"


@dataclass(frozen=True)
class GroupLayout:
    """Which optimizer param_group holds each parameter group, and each param_group's settings."""

    index: dict[str, int]  # group name -> param_group index (only the groups the model has)
    multipliers: list[float]  # per param_group: x peak LR
    decayed: list[bool]  # per param_group: takes weight decay
    algorithms: list[str]  # per param_group: "muon" or "adamw"


def param_groups(model: torch.nn.Module, cfg: OptimConfig) -> tuple[list[dict], GroupLayout]:
    """The param_groups (Muon's first) and their layout; see the module docstring."""
    members: dict[str, list[torch.Tensor]] = {g: [] for g in GROUP_NAMES}
    for name, p in model.named_parameters():
        if p.requires_grad:
            members[group_of(name, p)].append(p)
    mult = cfg.group_lrs.model_dump()
    keys: list[tuple] = []
    groups: list[dict] = []
    index: dict[str, int] = {}
    for g in GROUP_NAMES:
        if not members[g]:
            continue
        algorithm = "muon" if cfg.name == "muon" and g == "matrix" else "adamw"
        key = (algorithm, mult[g], _DECAYED[g])
        if key not in keys:
            keys.append(key)
            wd = cfg.weight_decay if _DECAYED[g] else 0.0
            groups.append({"params": [], "weight_decay": wd})
        index[g] = keys.index(key)
        groups[index[g]]["params"] += members[g]
    layout = GroupLayout(index, [k[1] for k in keys], [k[2] for k in keys], [k[0] for k in keys])
    return groups, layout


class MuonAdamW(torch.optim.Optimizer):
    """`torch.optim.Muon` on the Muon param_groups, `torch.optim.AdamW` on the others, as ONE
    optimizer: one param_groups list (each group with its own algorithm's keys, Muon's first) and
    one state, so state_dict/load_state_dict, torch.distributed.checkpoint and the trainer treat it
    like any optimizer. The two library optimizers do the arithmetic on views of both."""

    def __init__(
        self,
        muon_groups: list[dict],
        adamw_groups: list[dict],
        *,
        lr: float,
        betas: tuple[float, float],
        eps: float,
        muon: MuonSettings,
    ):
        self._muon = torch.optim.Muon(
            muon_groups,
            lr=lr,
            momentum=muon.momentum,
            nesterov=muon.nesterov,
            ns_steps=muon.ns_steps,
            adjust_lr_fn=muon.adjust_lr_fn,
        )
        self._adamw = torch.optim.AdamW(adamw_groups, lr=lr, betas=betas, eps=eps)
        self._n_muon = len(self._muon.param_groups)
        # The same group dicts: Optimizer.add_param_group keeps the dict it is given.
        super().__init__([*self._muon.param_groups, *self._adamw.param_groups], {})
        self._link()

    def _link(self) -> None:
        # load_state_dict replaces param_groups and state with new objects: point both again.
        self._muon.param_groups = self.param_groups[: self._n_muon]
        self._adamw.param_groups = self.param_groups[self._n_muon :]
        self._muon.state = self._adamw.state = self.state

    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._link()
        self._muon.step()
        self._adamw.step()
        return loss


class SwitchableOptimizer:
    """An optimizer plus the schedule's per-step settings and the train/eval switch schedule-free
    needs (a no-op for the others).

    For schedule-free the mode lives in the optimizer's own param groups (`train_mode`), so it is
    saved and restored with its state dict and never disagrees with a flag of ours.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        schedule_free: bool,
        layout: GroupLayout | None = None,
        cfg: OptimConfig | None = None,
    ):
        self.optimizer = optimizer
        self.schedule_free = schedule_free
        self.layout = layout
        self.cfg = cfg
        self._lr: float | None = None

    @property
    def param_groups(self) -> list[dict]:
        return self.optimizer.param_groups

    @property
    def in_train_mode(self) -> bool:
        return not self.schedule_free or bool(self.optimizer.param_groups[0]["train_mode"])

    def apply_schedule(self, schedule: BaseSchedule, step: int) -> None:
        """Set update `step`'s LRs (peak x schedule x group multiplier) and, with
        [optim.cooldown], the settings of its phase."""
        self.set_lr(self.cfg.lr * schedule.multiplier(step))
        if self.cfg.cooldown is not None:
            start = cooldown_start(schedule)
            self.set_phase(cooldown=start is not None and step > start)

    def set_lr(self, lr: float) -> None:
        """`lr` (peak x schedule) times each group's multiplier on every group."""
        # Schedule-free keeps its own constant LR and warmup; changing it per step would change
        # the weighting of its running average, so only the others get the scheduled value.
        if self.schedule_free:
            return
        self._lr = lr
        groups = self.optimizer.param_groups
        multipliers = self.layout.multipliers if self.layout else [1.0] * len(groups)
        for group, m in zip(groups, multipliers, strict=True):
            group["lr"] = lr * m  # x 1.0 is exact: runs without [optim.groups] are unchanged

    def set_phase(self, cooldown: bool) -> None:
        """The stable-phase or cooldown-phase betas, Muon momentum and weight decay."""
        cfg = self.cfg
        over = cfg.cooldown if cooldown and cfg.cooldown is not None else None
        betas = tuple(over.betas) if over and over.betas else tuple(cfg.betas)
        wd = over.weight_decay if over and over.weight_decay is not None else cfg.weight_decay
        momentum = cfg.muon_settings.momentum
        if over and over.muon_momentum is not None:
            momentum = over.muon_momentum
        for group, decayed, algo in zip(
            self.optimizer.param_groups, self.layout.decayed, self.layout.algorithms, strict=True
        ):
            group["weight_decay"] = wd if decayed else 0.0
            if algo == "muon":
                group["momentum"] = momentum
            else:
                group["betas"] = betas

    def last_lr(self) -> float:
        """The LR of the last update before group multipliers (for schedule-free: its own
        warmed-up value)."""
        group = self.optimizer.param_groups[0]
        if self.schedule_free:
            return float(group["scheduled_lr"])
        return float(self._lr if self._lr is not None else group["lr"])

    def group_lrs(self) -> dict[str, float]:
        """`lr_<group>` of every parameter group the model has, as the optimizer holds them
        (nothing for schedule-free, which has one LR)."""
        if self.schedule_free or self.layout is None:
            return {}
        groups = self.optimizer.param_groups
        return {f"lr_{g}": float(groups[i]["lr"]) for g, i in self.layout.index.items()}

    def step(self) -> None:
        self.optimizer.step()

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def eval(self) -> None:
        """Put the evaluation weights into the model (schedule-free's x sequence)."""
        if self.schedule_free:
            self.optimizer.eval()

    def train(self) -> None:
        """Put the weights to step from into the model (schedule-free's y sequence)."""
        if self.schedule_free:
            self.optimizer.train()

    def state_dict(self) -> dict:
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state)


def build_optimizer(
    model: torch.nn.Module, cfg: OptimConfig, *, warmup_steps: int = 0
) -> SwitchableOptimizer:
    """AdamW, Muon (+ AdamW) or schedule-free AdamW, with the groups of the module docstring.

    `warmup_steps` is used by schedule-free only (the others' warmup is part of the schedule).
    """
    groups, layout = param_groups(model, cfg)
    if cfg.name == "adamw":
        # fused on CUDA: one kernel for the whole update, no host read of the step count.
        fused = True if next(model.parameters()).is_cuda else None
        opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, fused=fused)
        return SwitchableOptimizer(opt, False, layout, cfg)
    if cfg.name == "muon":
        muon = [g for g, a in zip(groups, layout.algorithms, strict=True) if a == "muon"]
        adamw = [g for g, a in zip(groups, layout.algorithms, strict=True) if a == "adamw"]
        opt = MuonAdamW(
            muon, adamw, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, muon=cfg.muon_settings
        )
        return SwitchableOptimizer(opt, False, layout, cfg)
    if cfg.name == "schedule-free":
        try:
            from schedulefree import AdamWScheduleFree
        except ImportError:  # pragma: no cover - a declared dependency
            raise CooldownError(
                "optim.name: schedule-free needs the 'schedulefree' package"
            ) from None
        opt = AdamWScheduleFree(
            groups,
            lr=cfg.lr,
            betas=cfg.betas,
            eps=cfg.eps,
            warmup_steps=warmup_steps,
            weight_lr_power=cfg.weight_lr_power,
        )
        # A fresh AdamWScheduleFree starts in eval mode; the trainer switches before each update.
        return SwitchableOptimizer(opt, True, layout, cfg)
    raise CooldownError(f"optim.name: unknown optimizer {cfg.name!r}")  # pragma: no cover


def clip_grad_norm(model: torch.nn.Module, max_norm: float) -> float:
    """Clip to `max_norm` (0 disables) and return the global gradient norm before clipping."""
    params = [p for p in model.parameters() if p.grad is not None]
    if max_norm > 0:
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    norms = torch.stack([p.grad.detach().norm(2) for p in params])
    return float(norms.norm(2))
