"""Schedule search: for a fixed total budget, the cooldown that a fitted law predicts is best.

The candidates are WSD schedules of `total_steps` updates whose cooldown ends at the last update
(as in the paper): a grid of cooldown lengths (fractions of the run, so the start is
total_steps - length; lengths that would start inside the warmup are left out) times decay
shapes. Each is scored by its predicted final loss; the result is the whole ranked table, so a
close second is visible. Checking the winner means running it:
`cooldown reproduce` does (experiment (h)).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from cooldown.errors import CooldownError
from cooldown.predict.fit import LawFit

__all__ = ["DEFAULT_FRACTIONS", "DEFAULT_SHAPES", "ScheduleCandidate", "search_cooldown"]

DEFAULT_FRACTIONS = tuple(round(float(f), 3) for f in np.arange(0.05, 0.951, 0.05))
DEFAULT_SHAPES = ("linear", "1-sqrt", "cosine", "1-square", "mirror-cosine")


@dataclass(frozen=True)
class ScheduleCandidate:
    """A WSD schedule and its predicted final loss (nats/token), with the bootstrap interval."""

    shape: str
    cooldown_frac: float
    cooldown_start: int  # the last stable update
    cooldown_steps: int
    final_loss: float
    interval: Optional[tuple[float, float]] = None
    schedule: Any = field(default=None, repr=False)


def search_cooldown(
    fit: LawFit,
    total_steps: int,
    *,
    peak_lr: Optional[float] = None,
    warmup_steps: Optional[int] = None,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    shapes: Sequence[str] = DEFAULT_SHAPES,
    final_lr_frac: float = 0.0,
    with_intervals: bool = False,
) -> list[ScheduleCandidate]:
    """Every (fraction x shape) WSD cooldown of a `total_steps` run, best predicted final loss
    first. `peak_lr` and `warmup_steps` default to the first fitted run's."""
    from cooldown.predict.prediction import predict
    from cooldown.schedule_specs import parse_schedule_spec

    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 2:
        raise CooldownError(f"total_steps: must be an integer >= 2 (got {total_steps!r})")
    if not fractions or not shapes:
        raise CooldownError("fractions, shapes: give at least one of each to search over")
    warmup = fit.warmup_steps if warmup_steps is None else warmup_steps
    final_step = np.array([total_steps])
    candidates = []
    seen = set()
    # A cooldown cannot start inside the warmup: longer ones are not candidates.
    fractions = [f for f in fractions if total_steps - round(f * total_steps) >= warmup]
    if not fractions:
        raise CooldownError(
            f"fractions: every cooldown length would start inside the {warmup}-step warmup of a "
            f"{total_steps}-step run"
        )
    for shape in shapes:
        for frac in fractions:
            schedule = parse_schedule_spec(
                f"wsd:shape={shape},cooldown_frac={frac}",
                total_steps=total_steps,
                defaults={"warmup_steps": warmup, "final_lr_frac": final_lr_frac},
            )
            key = (schedule.shape, schedule.cooldown_length_steps)
            if key in seen:  # two fractions that round to the same number of steps
                continue
            seen.add(key)
            if not with_intervals:
                lrs = (fit.peak_lr if peak_lr is None else peak_lr) * schedule.multipliers(
                    1, total_steps + 1
                )
                loss, interval = float(fit.law.loss(fit.params, lrs, final_step)[0]), None
            else:
                curve = predict(fit, schedule, peak_lr, steps=final_step)
                loss, interval = curve.final_loss, curve.final_interval
            candidates.append(
                ScheduleCandidate(
                    shape=schedule.shape,
                    cooldown_frac=schedule.cooldown_length_steps / total_steps,
                    cooldown_start=schedule.cooldown_start_step,
                    cooldown_steps=schedule.cooldown_length_steps,
                    final_loss=loss,
                    interval=interval,
                    schedule=schedule,
                )
            )
    candidates.sort(key=lambda c: c.final_loss)
    return candidates
