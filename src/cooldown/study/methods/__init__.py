"""The study methods, one module each, registered here in the order plans list them.

A method (`base.StudyMethod`) owns its `[methods.NAME]` settings model, the nodes it adds to a
study's plan, its runs' schedules and its branches' cooldowns. Adding a method: a new module with
a `StudyMethod` subclass, its instance in `REGISTRY`, and its settings as a field of
`cooldown.study.spec.Methods` (pydantic needs the field to parse the table).
"""

from __future__ import annotations

from cooldown.study.methods.base import StudyMethod
from cooldown.study.methods.cooldown import Cooldown, CooldownMethod
from cooldown.study.methods.cooldown_predicted import (
    LAW_PARAMETERS,
    PREDICTION_LAWS,
    CooldownPredicted,
    PredictedMethod,
)
from cooldown.study.methods.cosine import Cosine, CosineMethod
from cooldown.study.methods.swa import Swa, SwaMethod

__all__ = [
    "LAW_PARAMETERS",
    "METHOD_NAMES",
    "PREDICTION_LAWS",
    "REGISTRY",
    "TRUNK_METHODS",
    "CooldownMethod",
    "CosineMethod",
    "PredictedMethod",
    "StudyMethod",
    "SwaMethod",
]

REGISTRY: dict[str, StudyMethod] = {
    m.name: m for m in (Cosine(), Cooldown(), Swa(), CooldownPredicted())
}
METHOD_NAMES: tuple[str, ...] = tuple(REGISTRY)
# Methods whose cost includes (a prefix of) the constant-LR trunk.
TRUNK_METHODS: tuple[str, ...] = tuple(m.name for m in REGISTRY.values() if m.on_trunk)
