"""Loading typed configs from TOML files plus dotted command-line overrides.

    cooldown train --config run.toml optim.lr=1e-3 schedule.kind=wsd schedule.shape=1-sqrt

Override values are parsed as TOML values when they parse (numbers, booleans, arrays, quoted
strings) and kept as plain strings otherwise, so `schedule.shape=1-sqrt` needs no quotes. Configs
are never `eval`-ed. Validation is the job of the pydantic models; this module turns their errors
into one line naming the field.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, TypeVar

import pydantic

from cooldown.errors import CooldownError, format_validation_error

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

import tomli_w

T = TypeVar("T", bound=pydantic.BaseModel)


def read_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        inside = path / "config.toml"
        hint = f"; did you mean {inside}?" if inside.is_file() else ""
        raise CooldownError(f"config file {path} is a folder, not a TOML file{hint}")
    if not path.is_file():
        raise CooldownError(f"config file {path} does not exist")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise CooldownError(f"config file {path} is not valid TOML: {e}") from None


def parse_override_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(config: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of `config` with each 'a.b.c=value' override set."""
    out = _deepcopy(config)
    for item in overrides:
        if "=" not in item:
            raise CooldownError(f"override {item!r} is not of the form key.path=value")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise CooldownError(f"override {item!r} has an empty key part")
        node = out
        for p in parts[:-1]:
            child = node.setdefault(p, {})
            if not isinstance(child, dict):
                raise CooldownError(f"override {item!r}: {p} is a value, not a section")
            node = child
        node[parts[-1]] = parse_override_value(text.strip())
    return out


def _deepcopy(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _deepcopy(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_deepcopy(v) for v in d]
    return d


def validate(model: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build `model` from `data`, raising a one-line CooldownError naming the bad field."""
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as e:
        raise CooldownError(format_validation_error(e, prefix)) from None


def load_config(model: type[T], path: str | Path | None, overrides: list[str] | None = None) -> T:
    data = read_toml(path) if path is not None else {}
    data = apply_overrides(data, overrides or [])
    where = f"{path}: " if path is not None else ""
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as e:
        raise CooldownError(where + format_validation_error(e)) from None


def to_toml(model: pydantic.BaseModel) -> str:
    """The full resolved config as TOML (None values are left out: TOML has no null)."""
    return tomli_w.dumps(model.model_dump(mode="json", exclude_none=True))
