"""Any `cooldown` schedule inside someone else's PyTorch trainer: a `LambdaLR` multiplier.

    from cooldown.lr_lambda import lr_lambda, lambda_lr

    fn = lr_lambda("wsd:shape=1-sqrt,cooldown_frac=0.2", total_steps=1000, warmup_steps=50)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, fn)      # plain PyTorch
    scheduler = lambda_lr(optimizer, "wsd:shape=1-sqrt,cooldown_frac=0.2", total_steps=1000)
    Trainer(..., optimizers=(optimizer, scheduler))                   # Hugging Face

Index convention. `LambdaLR` calls its function with the number of `scheduler.step()` calls so far:
0 while the first update is made, i after i updates. `cooldown` numbers updates 1..N (see
`cooldown.schedules`), so index i gives `schedule.multiplier(i + 1)`: the LR of the i-th call is
exactly the LR `cooldown train` uses for update i+1, and the last update N gets the schedule's final
value (0 for a cooldown to zero). nanochat's `get_lr_multiplier(it)` and Hugging Face's `Trainer`
(one `scheduler.step()` after every `optimizer.step()`) use the same 0-based index.

The function is a small callable object holding only the schedule's config (plain values), so a
`LambdaLR` state_dict saves and restores it (PyTorch saves a callable object's `__dict__`) and loads
with `torch.load(weights_only=True)`. This module does not import torch until `lambda_lr` is called.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Optional, Union

from cooldown.schedule_specs import parse_schedule_spec, schedule_from_config
from cooldown.schedules import BaseSchedule

__all__ = ["CooldownLambda", "lambda_lr", "lr_lambda"]

ScheduleLike = Union[str, Mapping[str, Any], BaseSchedule]


@lru_cache(maxsize=64)
def _schedule(config_json: str) -> BaseSchedule:
    # Built once per config: the callable keeps only the config, so a state_dict stays plain.
    return schedule_from_config(json.loads(config_json))


def _resolve(
    schedule: ScheduleLike, total_steps: Optional[int], warmup_steps: Optional[int]
) -> BaseSchedule:
    defaults = {} if warmup_steps is None else {"warmup_steps": warmup_steps}
    if isinstance(schedule, BaseSchedule):
        return schedule
    if isinstance(schedule, str):
        return parse_schedule_spec(schedule, total_steps=total_steps, defaults=defaults)
    data = dict(schedule)
    if total_steps is not None and data.get("kind") != "branch":
        data.setdefault("total_steps", total_steps)
    for key, value in defaults.items():
        data.setdefault(key, value)
    return schedule_from_config(data)


class CooldownLambda:
    """`f(i) = schedule.multiplier(i + 1)`: the multiplier for the update made after i
    `scheduler.step()` calls. Picklable; its `__dict__` is the schedule config (plain values)."""

    def __init__(self, schedule: BaseSchedule):
        self.schedule_config = schedule.to_config()

    @property
    def schedule(self) -> BaseSchedule:
        return _schedule(json.dumps(self.schedule_config, sort_keys=True))

    def __call__(self, index: int) -> float:
        return self.schedule.multiplier(int(index) + 1)

    def __repr__(self) -> str:
        return f"CooldownLambda({self.schedule_config!r})"


def lr_lambda(
    schedule: ScheduleLike,
    total_steps: Optional[int] = None,
    warmup_steps: Optional[int] = None,
) -> CooldownLambda:
    """A `LambdaLR` function for `schedule`: a spec ('wsd:shape=1-sqrt,cooldown_frac=0.2',
    'cosine', 'branch:branch_step=800,cooldown_steps=200,shape=1-sqrt'), a config dict or a
    schedule object. `total_steps` and `warmup_steps` fill in what a spec or dict leaves out; bad
    input raises a one-line `CooldownError` naming the field."""
    return CooldownLambda(_resolve(schedule, total_steps, warmup_steps))


def lambda_lr(
    optimizer: Any,
    schedule: ScheduleLike,
    total_steps: Optional[int] = None,
    warmup_steps: Optional[int] = None,
    last_epoch: int = -1,
) -> Any:
    """A `torch.optim.lr_scheduler.LambdaLR` stepping every param group of `optimizer` through
    `schedule` (x each group's LR at construction, its peak). Pass it to a Hugging Face `Trainer`
    as `optimizers=(optimizer, scheduler)`, or return it from a `create_scheduler` override."""
    # Imported here so that `cooldown.lr_lambda` (and nanochat's patched script) stay torch-free
    # until a scheduler is actually built.
    from torch.optim.lr_scheduler import LambdaLR

    return LambdaLR(
        optimizer, lr_lambda(schedule, total_steps, warmup_steps), last_epoch=last_epoch
    )
