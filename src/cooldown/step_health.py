"""A training step's loss, gradient norm and finiteness kept on the device until someone looks.

Reading a CUDA tensor on the host (`.item()`, `float()`, `bool()`) waits for every kernel queued
before it, so a loop that reads its loss each micro-batch and its gradient norm each step leaves the
GPU idle while Python catches up. Here the loss is summed, the norm computed and divergence recorded
with device ops only; the trainer reads them at its log, evaluation, averaging and checkpoint steps,
which need the host anyway. Divergence is therefore seen at the next such step at the latest (never
after a checkpoint of diverged weights is written) and reported with the step where it began.

The sums are those the old host loop did: each micro-batch's float32 loss widened to float64 and
added in order, so on CPU the logged values are bitwise the same.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor

from cooldown.distributed import DistContext, collective_failure

__all__ = ["Divergence", "StepHealth", "grad_norm"]

# What `StepHealth` records first went non-finite, by the code it stores.
_WHAT = {0.0: "training loss", 1.0: "gradient norm"}


def grad_norm(model: torch.nn.Module, max_norm: float) -> torch.Tensor:
    """Clip to `max_norm` (0 disables) and return the global gradient norm before clipping, as a
    device tensor (the same ops as `cooldown.optim.clip_grad_norm`, without its host read)."""
    params = [p for p in model.parameters() if p.grad is not None]
    if max_norm > 0:
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    else:
        norm = torch.stack([p.grad.detach().norm(2) for p in params]).norm(2)
    # Under fsdp the norm is a DTensor: its full value (a collective on the device, not a read).
    return norm.full_tensor() if isinstance(norm, DTensor) else norm


class Divergence(NamedTuple):
    """The first non-finite training loss or gradient norm."""

    what: str
    value: float
    step: int


class StepHealth:
    """The first step whose loss or gradient norm was non-finite, recorded on `device`.

    `record` is float64 [step, what, value], step = inf while every step was finite."""

    def __init__(self, device: torch.device):
        self.record = torch.tensor([math.inf, 0.0, 0.0], dtype=torch.float64, device=device)

    def observe(self, step: int, loss_sum: torch.Tensor, norm: torch.Tensor) -> None:
        """Note step `step`'s summed loss and gradient norm; device ops only."""
        loss_ok = torch.isfinite(loss_sum)
        bad = ~(loss_ok & torch.isfinite(norm))
        # The loss is checked first (it was non-finite before the gradient could be).
        what = torch.where(loss_ok, 1.0, 0.0).to(torch.float64)
        value = torch.where(loss_ok, norm.detach().to(torch.float64), loss_sum)
        candidate = torch.stack([torch.full_like(value, step), what, value])
        first = bad & torch.isinf(self.record[0])
        self.record = torch.where(first, candidate, self.record)

    def check(self, ctx: DistContext) -> Divergence | None:
        """The first divergence on any rank, or None (a host read; every rank must call it)."""
        rows = [self.record]
        if ctx.distributed and ctx.world_size > 1:
            device = ctx.device if ctx.device.type == "cuda" else torch.device("cpu")
            mine = self.record.to(device)
            rows = [torch.empty_like(mine) for _ in range(ctx.world_size)]
            with collective_failure(ctx.rank):
                dist.all_gather(rows, mine)
        step, what, value = min((r.tolist() for r in rows), key=lambda r: r[0])
        if math.isinf(step):
            return None
        return Divergence(_WHAT[what], value, int(step))
