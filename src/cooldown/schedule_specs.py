"""Schedules from configs and one-line specs, their one-line errors, and their legend labels.

    schedule_from_config({"kind": "wsd", "total_steps": 1000, "cooldown_frac": 0.2})
    parse_schedule_spec("wsd:shape=1-sqrt,cooldown_frac=0.2", total_steps=1000)
    label(schedule)  # 'WSD 1-sqrt, 20% cooldown'

The schedule classes themselves (and what each step's LR is) live in `cooldown.schedules`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

import pydantic

from cooldown.configio import parse_override_value
from cooldown.errors import CooldownError, format_validation_error
from cooldown.schedules import (
    _BY_KIND,
    SCHEDULE_KINDS,
    BaseSchedule,
    BranchSchedule,
    ConstantSchedule,
    CosineSchedule,
    LinearSchedule,
    MultiStepSchedule,
    _CooldownFields,
    _FieldError,
)

__all__ = ["format_schedule_error", "label", "parse_schedule_spec", "schedule_from_config"]


class _Errors:
    """Pydantic's error list with cross-field errors moved onto their field, in the shape
    `format_validation_error` reads."""

    def __init__(self, errors: list[dict[str, Any]]):
        self._errors = errors

    def errors(self, include_url: bool = False) -> list[dict[str, Any]]:
        return self._errors


def format_schedule_error(exc: pydantic.ValidationError, prefix: str = "schedule") -> str:
    """One line naming the field, e.g. 'schedule.cooldown_steps: cooldown (...) ends after ...'."""
    errors = []
    for err in exc.errors(include_url=False):
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, _FieldError):
            loc = (*tuple(err.get("loc", ())), cause.field)
            err = {"type": "value_error", "loc": loc, "msg": cause.detail}
        errors.append(err)
    return format_validation_error(_Errors(errors), prefix, tags=frozenset(SCHEDULE_KINDS))


def schedule_from_config(config: Mapping[str, Any], prefix: str = "schedule") -> BaseSchedule:
    """Build the schedule a config dict describes; bad input raises a one-line CooldownError naming
    the field as '<prefix>.<field>'."""
    if not isinstance(config, Mapping):
        raise CooldownError(
            f"{prefix}: expected a table of settings with a 'kind' (got {type(config).__name__})"
        )
    allowed = ", ".join(repr(k) for k in SCHEDULE_KINDS)
    if "kind" not in config:
        raise CooldownError(f"{prefix}.kind: missing: one of {allowed}")
    kind = config["kind"]
    if not isinstance(kind, str) or kind not in _BY_KIND:
        raise CooldownError(f"{prefix}.kind: must be one of {allowed} (got {kind!r})")
    try:
        return _BY_KIND[kind].model_validate(dict(config))
    except pydantic.ValidationError as e:
        raise CooldownError(format_schedule_error(e, prefix)) from None


def _split_items(text: str) -> list[str]:
    """Split 'a=1,b=[0.8, 0.9],c="x,y"' on the commas outside brackets and quotes."""
    items, depth, quote, current = [], 0, "", []
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append("".join(current))
            current = []
            continue
        current.append(ch)
    items.append("".join(current))
    return items


def parse_schedule_spec(
    text: str,
    total_steps: Optional[int] = None,
    defaults: Optional[Mapping[str, Any]] = None,
) -> BaseSchedule:
    """A schedule from a one-line spec such as 'wsd:shape=1-sqrt,cooldown_frac=0.2' or 'constant'.

    Values are read as TOML values when they parse (numbers, arrays, quoted strings) and as plain
    strings otherwise. `total_steps` (not for `branch`, whose length is derived) and `defaults`
    fill in the fields the spec does not give; a field the spec gives always wins.
    """
    kind, _, rest = text.partition(":")
    data: dict[str, Any] = {"kind": kind.strip()}
    if rest.strip():
        for item in _split_items(rest):
            key, eq, value = item.partition("=")
            key = key.strip()
            if not eq or not key:
                raise CooldownError(f"schedule spec {text!r}: {item.strip()!r} is not key=value")
            if key in data:
                raise CooldownError(f"schedule spec {text!r}: {key} is given twice")
            data[key] = parse_override_value(value.strip())
    if total_steps is not None and data["kind"] != "branch":
        data.setdefault("total_steps", total_steps)
    for key, value in (defaults or {}).items():
        data.setdefault(key, value)
    try:
        return schedule_from_config(data)
    except CooldownError as e:
        raise CooldownError(f"{e} (in schedule spec {text!r})") from None


def _pct(frac: float) -> str:
    return f"{100 * frac:g}%"


def label(schedule: BaseSchedule) -> str:
    """A short human description for legends, e.g. 'WSD 1-sqrt, 20% cooldown'."""
    if isinstance(schedule, ConstantSchedule):
        return "constant"
    if isinstance(schedule, (CosineSchedule, LinearSchedule)):
        return f"{schedule.kind} to {_pct(schedule.final_lr_frac)}"
    if isinstance(schedule, MultiStepSchedule):
        steps = ", ".join(
            f"x{f:g} after {_pct(p)}"
            for p, f in zip(schedule.milestones, schedule.factors, strict=True)
        )
        return f"multistep ({steps})"
    if isinstance(schedule, _CooldownFields):
        shape = schedule.shape if schedule.shape != "power" else f"power {schedule.power:g}"
        final = f" to {_pct(schedule.final_lr_frac)}" if schedule.final_lr_frac else ""
        s, k = schedule.cooldown_start_step, schedule.cooldown_length_steps
        if isinstance(schedule, BranchSchedule):
            return f"branch at step {s}, {k}-step {shape} cooldown{final}"
        if s + k == schedule.total_steps:
            return f"WSD {shape}, {_pct(k / schedule.total_steps)} cooldown{final}"
        return f"WSD {shape}, cooldown steps {s}..{s + k}{final}"
    return type(schedule).__name__  # pragma: no cover
