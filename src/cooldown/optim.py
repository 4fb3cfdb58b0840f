"""Optimizers: AdamW with the paper's parameter groups, and schedule-free AdamW as a baseline.

The learning rate is not owned by the optimizer: the trainer sets `lr = peak_lr * multiplier(step)`
on every parameter group before every update (see `cooldown.schedules`). Schedule-free AdamW is the
exception the paper compares against: it runs at a constant peak LR with its own warmup, and its
weights must be switched to evaluation mode (`.eval()`) before evaluating or saving and back
(`.train()`) before the next update; `SwitchableOptimizer` gives AdamW the same two calls as no-ops so
the trainer treats both alike.
"""

from __future__ import annotations

import torch

from cooldown.errors import CooldownError
from cooldown.model import no_weight_decay
from cooldown.optim_config import OptimConfig, OptimizerName

__all__ = [
    "OptimConfig",
    "OptimizerName",
    "SwitchableOptimizer",
    "build_optimizer",
    "clip_grad_norm",
    "param_groups",
]


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if no_weight_decay(name, p) else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


class SwitchableOptimizer:
    """An optimizer plus the train/eval switch schedule-free needs (a no-op for AdamW).

    For schedule-free the mode lives in the optimizer's own param groups (`train_mode`), so it is
    saved and restored with its state dict and never disagrees with a flag of ours.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, schedule_free: bool):
        self.optimizer = optimizer
        self.schedule_free = schedule_free

    @property
    def param_groups(self) -> list[dict]:
        return self.optimizer.param_groups

    @property
    def in_train_mode(self) -> bool:
        return not self.schedule_free or bool(self.optimizer.param_groups[0]["train_mode"])

    def set_lr(self, lr: float) -> None:
        # Schedule-free keeps its own constant LR and warmup; changing it per step would change
        # the weighting of its running average, so only AdamW gets the scheduled value.
        if self.schedule_free:
            return
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def last_lr(self) -> float:
        """The LR of the last update (for schedule-free: its own warmed-up value)."""
        group = self.optimizer.param_groups[0]
        return float(group["scheduled_lr"] if self.schedule_free else group["lr"])

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
    """AdamW (fused/foreach where available) or schedule-free AdamW, with the paper's groups.

    `warmup_steps` is used by schedule-free only (AdamW's warmup is part of the schedule).
    """
    groups = param_groups(model, cfg.weight_decay)
    if cfg.name == "adamw":
        # fused on CUDA: one kernel for the whole update, no host read of the step count.
        fused = True if next(model.parameters()).is_cuda else None
        opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, fused=fused)
        return SwitchableOptimizer(opt, schedule_free=False)
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
        return SwitchableOptimizer(opt, schedule_free=True)
    raise CooldownError(f"optim.name: unknown optimizer {cfg.name!r}")  # pragma: no cover


def clip_grad_norm(model: torch.nn.Module, max_norm: float) -> float:
    """Clip to `max_norm` (0 disables) and return the global gradient norm before clipping."""
    params = [p for p in model.parameters() if p.grad is not None]
    if max_norm > 0:
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    norms = torch.stack([p.grad.detach().norm(2) for p in params])
    return float(norms.norm(2))
