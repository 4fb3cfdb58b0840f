"""Trainer adapters: drive a trainer `cooldown` does not own through trunks, branches and curves.

    adapter = load_adapter("nanochat.toml")      # a TOML file whose `adapter` names the kind
    record = adapter.run("runs/trunk", RunRequest.trunk(40))
    record = adapter.run("runs/b20", RunRequest.branch("runs/trunk", 20, 10))
    record["exactness"]                          # what the branch reproduces exactly, and not

Kinds: `command` (any trainer, by command-line templates: `cooldown.adapters.command`) and
`nanochat` (`cooldown.adapters.nanochat`). `register` adds another.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cooldown.adapters.base import Exactness, RunRequest, TrainerAdapter, read_manifest
from cooldown.adapters.command import CommandAdapter
from cooldown.adapters.nanochat import NanochatAdapter
from cooldown.configio import read_toml
from cooldown.errors import CooldownError

__all__ = [
    "ADAPTERS",
    "CommandAdapter",
    "Exactness",
    "NanochatAdapter",
    "RunRequest",
    "TrainerAdapter",
    "adapter_from_config",
    "load_adapter",
    "read_manifest",
    "register",
]

ADAPTERS: dict[str, type[TrainerAdapter]] = {"command": CommandAdapter, "nanochat": NanochatAdapter}


def register(kind: str, cls: type[TrainerAdapter]) -> None:
    ADAPTERS[kind] = cls


def adapter_from_config(config: dict[str, Any], base_dir: str | Path = ".") -> TrainerAdapter:
    """The adapter a config table describes (`adapter = KIND` plus that kind's settings);
    relative paths in it are relative to `base_dir`."""
    kind = config.get("adapter")
    if kind not in ADAPTERS:
        raise CooldownError(
            f"adapter: must be one of {', '.join(repr(k) for k in ADAPTERS)} (got {kind!r})"
        )
    return ADAPTERS[kind](dict(config), base_dir)


def load_adapter(path: str | Path) -> TrainerAdapter:
    path = Path(path)
    return adapter_from_config(read_toml(path), path.parent)
