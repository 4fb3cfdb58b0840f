"""Value types shared by the study spec and the methods' settings (torch-free)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator

__all__ = ["LRSweep", "as_list", "positive_unique"]


def as_list(value: Any) -> Any:
    # `lr = 1e-3` and `lr = [1e-3, 2e-3]` both read naturally in TOML.
    return value if isinstance(value, list | tuple) or value is None else [value]


def positive_unique(values: list, what: str) -> list:
    if not values:
        raise ValueError(f"give at least one {what}")
    if any(v <= 0 for v in values):
        raise ValueError(f"every {what} must be > 0")
    if len(set(values)) != len(values):
        raise ValueError(f"a {what} is listed twice")
    return values


# A learning rate or a list of them to sweep: `lr = 1e-3` and `lr = [1e-3, 2e-3]` both read.
LRSweep = Annotated[
    list[float],
    BeforeValidator(as_list),
    AfterValidator(lambda v: positive_unique(v, "learning rate")),
]
