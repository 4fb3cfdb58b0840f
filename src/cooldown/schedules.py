"""Learning-rate schedules: the LR multiplier as a pure function of (schedule config, step).

This module is the source of truth for every learning rate in the project. The trainer calls
`schedule.multiplier(step)` for every update and multiplies the peak LR by it; no LR scheduler
object is ever pickled, so resuming, branching and changing a cooldown cannot disagree. A schedule
is fully described by its config (`to_config()`; `cooldown.schedule_specs.schedule_from_config()`
builds it back).

Step convention
---------------
Optimizer updates are numbered 1..N (N = `total_steps`). `multiplier(n)` is the multiplier used for
update n. Step 0 is "before any update" (the initial weights): `multiplier(0)` is defined but never
used for an update. A checkpoint "at step s" holds the weights after update s.

- Warmup of W steps: update n (1 <= n <= W) gets start + (1 - start) * g(n / W), with g the warmup
  shape and start = `warmup_start_frac`. Update 1 gets g(1/W) > 0 even with start 0; update W gets
  exactly 1. W = 0 means no warmup.
- A cooldown of K steps starting after update S covers updates S+1..S+K with progress
  x = (n - S) / K in (0, 1]; update S is the last stable one (multiplier exactly 1) and update S+K
  gets exactly the final value.
- `cosine` and `linear` decay over updates W+1..N with x = (n - W) / (N - W); update N gets exactly
  the final fraction.
- Steps beyond N get the final value (so a run can be inspected past its end); steps < 0 are an
  error.

Kinds (a discriminated union on the field `kind`)
-------------------------------------------------
- `constant`: 1 after warmup.
- `cosine`: one cosine cycle to `final_lr_frac` (default 0.1, the paper's baseline; 0 is "cosine
  to zero").
- `linear`: linear decay to `final_lr_frac` (default 0, "linear decay to zero", Bergsma et al. 2025).
- `multistep`: DeepSeek LLM's steps. With b_i = round(milestones[i] * total_steps), updates after
  b_i (the first being b_i + 1) get factors[i]; defaults x0.316 after 80%, x0.1 after 90%.
- `wsd`: constant LR then a cooldown of shape `shape` (see `cooldown.decay_shapes`) to
  `final_lr_frac`. Its start is `cooldown_start` (steps) or `cooldown_start_frac` (of
  total_steps); its length `cooldown_steps` or `cooldown_frac`. With only a length the cooldown ends
  at total_steps; with only a start it runs to total_steps; with both, a cooldown ending before
  total_steps holds the final value afterwards. Fractions resolve to steps with `round()`.
- `branch`: the stable phase of a parent run up to `branch_step` (s), then a cooldown of
  `cooldown_steps` (k) steps, or of `cooldown_frac` F of the branch's own length
  (k = round(F / (1 - F) * s), as the paper does). total_steps = s + k is derived. It equals the
  `wsd` schedule from `to_wsd()` at every step.

This module is pure Python + NumPy: no torch, no files.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping
from itertools import pairwise
from typing import Annotated, Any, ClassVar, Literal, Optional, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cooldown.decay_shapes import (
    DEFAULT_POWER,
    SHAPES,
    WARMUP_SHAPES,
    canonical_shape,
    decay_shape,
    decay_values,
    warmup_values,
)
from cooldown.errors import CooldownError

__all__ = [
    "SCHEDULE_KINDS",
    "SHAPES",
    "WARMUP_SHAPES",
    "BaseSchedule",
    "BranchSchedule",
    "ConstantSchedule",
    "CosineSchedule",
    "LinearSchedule",
    "MultiStepSchedule",
    "Schedule",
    "WSDSchedule",
    "branch_of",
    "cooldown_split",
    "cooldown_start",
    "decay_shape",
]

ShapeName = Literal["linear", "1-sqrt", "cosine", "mirror-cosine", "1-square", "power", "exp"]
WarmupShapeName = Literal["linear", "cosine", "1-sqrt"]


class _FieldError(ValueError):
    """A cross-field check that failed, tied to the field the user should change.

    Model-level validators have no field in pydantic's error location; carrying the field here lets
    `format_schedule_error` print 'schedule.cooldown_steps: ...' instead of 'schedule: ...'.
    """

    def __init__(self, field: str, detail: str):
        self.field, self.detail = field, detail
        super().__init__(f"{field}: {detail}")


def _check_fraction(value: float, low_open: bool, high_open: bool) -> float:
    ok = (value > 0.0 if low_open else value >= 0.0) and (
        value < 1.0 if high_open else value <= 1.0
    )
    if not ok:  # also rejects NaN
        raise ValueError(f"must be in {'(' if low_open else '['}0, 1{')' if high_open else ']'}")
    return value


def _cooldown_steps(budget: int, fraction: float) -> int:
    # The one rounding of a cooldown fraction into updates (Python's round: halves to even).
    return round(fraction * budget)


def cooldown_split(
    budget: int, fraction: float, *, field: str = "fraction", where: str = ""
) -> tuple[int, int]:
    """(S, K) of a `budget`-update run cooling down over its last `fraction`: the stable phase ends
    at step S (the branch point), the cooldown covers updates S+1..S+K = budget. Both need at
    least one update; `field` and `where` name the setting in the error."""
    k = _cooldown_steps(budget, fraction)
    s = budget - k
    if k < 1 or s < 1:
        raise CooldownError(
            f"{field}: {fraction} of the {budget}-step budget{where} leaves {k} cooldown and "
            f"{s} stable steps; each needs at least 1"
        )
    return s, k


def cooldown_start(schedule: BaseSchedule) -> int | None:
    """S of a `wsd` or `branch` schedule: updates S+1, S+2, ... are its cooldown (the phase
    `[optim.cooldown]` settings apply to); None for a schedule without a cooldown phase."""
    return schedule.cooldown_start_step if isinstance(schedule, _CooldownFields) else None


def _decay(
    n: np.ndarray, start: int, length: int, shape: str, power: Optional[float], final: float
):
    """1 up to update `start`, then the cooldown over `length` updates, then the final value."""
    x = np.clip((n - start) / length, 0.0, 1.0)
    values = decay_values(shape, x, power if power is not None else DEFAULT_POWER, final)
    return np.where(n <= start, 1.0, values)


class BaseSchedule(BaseModel):
    """Warmup fields and the evaluation shared by every kind; subclasses give `_body`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    warmup_steps: int = Field(0, ge=0)
    warmup_shape: WarmupShapeName = "linear"
    warmup_start_frac: float = 0.0

    @model_validator(mode="before")
    @classmethod
    def _no_booleans(cls, data: Any) -> Any:
        # Pydantic would read `true` as 1 for an int field; no schedule field is a boolean.
        if isinstance(data, Mapping):
            for key, value in data.items():
                if isinstance(value, bool):
                    raise _FieldError(
                        str(key), f"expected a number or a name, not a boolean (got {value})"
                    )
        return data

    @field_validator("warmup_start_frac")
    @classmethod
    def _warmup_start_in_range(cls, v: float) -> float:
        return _check_fraction(v, low_open=False, high_open=True)

    # --- evaluation -------------------------------------------------------------------------------

    def _body(self, n: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _values(self, n: np.ndarray) -> np.ndarray:
        out = np.asarray(self._body(n), dtype=np.float64)
        if out.shape != n.shape:
            out = np.broadcast_to(out, n.shape).copy()
        w = self.warmup_steps
        if w > 0:
            # Update W itself comes from the body, which is exactly 1 there (W <= cooldown start).
            in_warmup = n < w
            g = warmup_values(self.warmup_shape, n[in_warmup] / w)
            s = self.warmup_start_frac
            out[in_warmup] = s + (1.0 - s) * g
        return out

    def multiplier(self, step: int) -> float:
        """The LR multiplier (x peak LR) for update `step` (see the step convention above)."""
        n = _step_index("step", step)
        # One code path for scalar and vector: the two agree exactly, not merely to rounding.
        return float(self._values(np.array([n], dtype=np.int64))[0])

    def multipliers(self, start: int, stop: int) -> np.ndarray:
        """Multipliers for steps start, start+1, ..., stop-1 as a float64 array."""
        a, b = _step_index("start", start), _step_index("stop", stop)
        if b < a:
            raise CooldownError(f"stop: must be >= start (got start {a}, stop {b})")
        return self._values(np.arange(a, b, dtype=np.int64))

    def multipliers_at(self, steps: Any) -> np.ndarray:
        """Multipliers for any array of steps (integers >= 0), as a float64 array of its shape."""
        n = np.asarray(steps)
        if n.size and (n.dtype.kind not in "iu" or n.min() < 0):
            raise CooldownError("steps: must be integers >= 0")
        return self._values(n.astype(np.int64))

    @property
    def phase_boundaries(self) -> tuple[int, ...]:
        """Steps s in 1..N-1 after which a new phase begins (the end of the warmup, of the stable
        phase, of a cooldown that ends early, of each multistep level), sorted."""
        return tuple(sorted({b for b in self._boundaries() if 0 < b < self.total_steps}))

    def _boundaries(self) -> list[int]:
        return [self.warmup_steps]

    def to_config(self) -> dict[str, Any]:
        """A plain, TOML-able dict (with `kind`) that `schedule_from_config` turns back into an equal
        schedule. Unset optional fields are left out (TOML has no null)."""
        data = self.model_dump(mode="json", exclude_none=True)
        return {"kind": data.pop("kind"), **data}


def _step_index(name: str, step: Any) -> int:
    if isinstance(step, bool):
        raise CooldownError(f"{name}: must be an integer step (got {step!r})")
    try:
        n = operator.index(step)
    except TypeError:
        raise CooldownError(f"{name}: must be an integer step (got {step!r})") from None
    if n < 0:
        raise CooldownError(f"{name}: must be >= 0 (got {n})")
    return n


def _warmup_before(field_step: int, what: str, warmup_steps: int) -> None:
    if warmup_steps > field_step:
        raise _FieldError(
            "warmup_steps", f"warmup ({warmup_steps} steps) ends after {what} (step {field_step})"
        )


class ConstantSchedule(BaseSchedule):
    """Warmup, then the peak LR until the end."""

    kind: Literal["constant"] = "constant"
    total_steps: int = Field(gt=0)

    @model_validator(mode="after")
    def _check(self) -> ConstantSchedule:
        _warmup_before(self.total_steps, "the end of the run", self.warmup_steps)
        return self

    def _body(self, n: np.ndarray) -> np.ndarray:
        return np.ones(n.shape)


class _DecayAfterWarmup(BaseSchedule):
    """Warmup, then a decay over all remaining updates W+1..N to `final_lr_frac`."""

    total_steps: int = Field(gt=0)
    final_lr_frac: float

    @field_validator("final_lr_frac")
    @classmethod
    def _final_in_range(cls, v: float) -> float:
        return _check_fraction(v, low_open=False, high_open=False)

    @model_validator(mode="after")
    def _check(self) -> _DecayAfterWarmup:
        if self.warmup_steps >= self.total_steps:
            raise _FieldError(
                "warmup_steps",
                f"warmup ({self.warmup_steps} steps) leaves no steps for the decay "
                f"(total_steps {self.total_steps})",
            )
        return self

    # The decay's shape: a property of the kind, not a setting.
    decay_shape_name: ClassVar[str] = "linear"

    def _body(self, n: np.ndarray) -> np.ndarray:
        w = self.warmup_steps
        return _decay(n, w, self.total_steps - w, self.decay_shape_name, None, self.final_lr_frac)

    def _boundaries(self) -> list[int]:
        return [self.warmup_steps]


class CosineSchedule(_DecayAfterWarmup):
    """One cosine cycle from the peak after warmup to `final_lr_frac` at update N."""

    kind: Literal["cosine"] = "cosine"
    final_lr_frac: float = 0.1
    decay_shape_name: ClassVar[str] = "cosine"


class LinearSchedule(_DecayAfterWarmup):
    """Linear decay from the peak after warmup to `final_lr_frac` at update N."""

    kind: Literal["linear"] = "linear"
    final_lr_frac: float = 0.0
    decay_shape_name: ClassVar[str] = "linear"


class MultiStepSchedule(BaseSchedule):
    """DeepSeek LLM's multi-step schedule.

    With b_i = round(milestones[i] * total_steps) (the `milestone_steps`), update b_i is the last
    one at the previous level and update b_i + 1 is the first to get factors[i] (x peak LR).
    """

    kind: Literal["multistep"] = "multistep"
    total_steps: int = Field(gt=0)
    milestones: tuple[float, ...] = Field((0.8, 0.9), min_length=1)
    factors: tuple[float, ...] = Field((0.316, 0.1), min_length=1)

    @field_validator("milestones")
    @classmethod
    def _milestones_in_range(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if not all(0.0 < p < 1.0 for p in v):
            raise ValueError("each milestone (a fraction of total_steps) must be in (0, 1)")
        if any(b <= a for a, b in pairwise(v)):
            raise ValueError("milestones must be strictly increasing")
        return v

    @field_validator("factors")
    @classmethod
    def _factors_in_range(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if not all(0.0 <= f <= 1.0 for f in v):
            raise ValueError("each factor (x peak LR) must be in [0, 1]")
        return v

    @property
    def milestone_steps(self) -> tuple[int, ...]:
        return tuple(round(p * self.total_steps) for p in self.milestones)

    @model_validator(mode="after")
    def _check(self) -> MultiStepSchedule:
        if len(self.factors) != len(self.milestones):
            raise _FieldError(
                "factors",
                f"needs one factor per milestone ({len(self.milestones)} milestones, "
                f"{len(self.factors)} factors)",
            )
        steps = self.milestone_steps
        for p, b in zip(self.milestones, steps, strict=True):
            if not 1 <= b < self.total_steps:
                raise _FieldError(
                    "milestones",
                    f"milestone {p} resolves to step {b}, outside 1..{self.total_steps - 1} "
                    f"(total_steps {self.total_steps})",
                )
        if any(b2 <= b1 for b1, b2 in pairwise(steps)):
            raise _FieldError("milestones", f"two milestones resolve to the same step ({steps})")
        _warmup_before(steps[0], "the first milestone", self.warmup_steps)
        return self

    def _body(self, n: np.ndarray) -> np.ndarray:
        out = np.ones(n.shape)
        for b, f in zip(self.milestone_steps, self.factors, strict=True):
            out[n > b] = f
        return out

    def _boundaries(self) -> list[int]:
        return [self.warmup_steps, *self.milestone_steps]


class _CooldownFields(BaseSchedule):
    """Shape, exponent and final value of a cooldown (shared by `wsd` and `branch`)."""

    shape: ShapeName = "linear"
    power: Optional[float] = None
    final_lr_frac: float = 0.0

    @model_validator(mode="before")
    @classmethod
    def _canonical_shape(cls, data: Any) -> Any:
        # Aliases become the canonical name before validation, so the stored value (and the config
        # written back) is canonical. `power` is filled in for the `power` shape and refused for the
        # others, where it would be silently ignored.
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        if "shape" in data:
            data["shape"] = canonical_shape(data["shape"])
        shape = data.get("shape", "linear")
        if shape == "power" and data.get("power") is None:
            data["power"] = DEFAULT_POWER
        elif shape != "power" and data.get("power") is not None and shape in SHAPES:
            raise _FieldError(
                "power", f"only used by shape 'power' (shape is {shape!r}, got {data['power']!r})"
            )
        return data

    @field_validator("power")
    @classmethod
    def _power_positive(cls, v: Optional[float]) -> Optional[float]:
        if v is not None and not (math.isfinite(v) and v > 0.0):
            raise ValueError("must be a finite number > 0")
        return v

    @field_validator("final_lr_frac")
    @classmethod
    def _final_in_range(cls, v: float) -> float:
        return _check_fraction(v, low_open=False, high_open=False)

    @model_validator(mode="after")
    def _exp_needs_final(self) -> _CooldownFields:
        if self.shape == "exp" and self.final_lr_frac == 0.0:
            raise _FieldError(
                "final_lr_frac", "shape 'exp' (m^x) needs a final fraction m > 0 (got 0)"
            )
        return self

    # Resolved by the subclasses.
    @property
    def cooldown_start_step(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def cooldown_length_steps(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def _body(self, n: np.ndarray) -> np.ndarray:
        return _decay(
            n,
            self.cooldown_start_step,
            self.cooldown_length_steps,
            self.shape,
            self.power,
            self.final_lr_frac,
        )

    def _boundaries(self) -> list[int]:
        s, k = self.cooldown_start_step, self.cooldown_length_steps
        return [self.warmup_steps, s, s + k]


class WSDSchedule(_CooldownFields):
    """Warmup, constant peak LR, then a cooldown (warmup-stable-decay, "trapezoidal")."""

    kind: Literal["wsd"] = "wsd"
    total_steps: int = Field(gt=0)
    cooldown_start: Optional[int] = Field(None, ge=0)
    cooldown_start_frac: Optional[float] = None
    cooldown_steps: Optional[int] = Field(None, gt=0)
    cooldown_frac: Optional[float] = None

    @field_validator("cooldown_start_frac")
    @classmethod
    def _start_frac_in_range(cls, v: Optional[float]) -> Optional[float]:
        return v if v is None else _check_fraction(v, low_open=False, high_open=True)

    @field_validator("cooldown_frac")
    @classmethod
    def _frac_in_range(cls, v: Optional[float]) -> Optional[float]:
        return v if v is None else _check_fraction(v, low_open=True, high_open=False)

    @model_validator(mode="after")
    def _check(self) -> WSDSchedule:
        self._resolve()
        return self

    def _resolve(self) -> tuple[int, int]:
        n_total = self.total_steps
        if self.cooldown_start is not None and self.cooldown_start_frac is not None:
            raise _FieldError(
                "cooldown_start_frac", "give cooldown_start or cooldown_start_frac, not both"
            )
        if self.cooldown_steps is not None and self.cooldown_frac is not None:
            raise _FieldError("cooldown_frac", "give cooldown_steps or cooldown_frac, not both")
        start_field = "cooldown_start" if self.cooldown_start is not None else "cooldown_start_frac"
        length_field = "cooldown_steps" if self.cooldown_steps is not None else "cooldown_frac"
        start: Optional[int] = self.cooldown_start
        if self.cooldown_start_frac is not None:
            start = round(self.cooldown_start_frac * n_total)
        length: Optional[int] = self.cooldown_steps
        if self.cooldown_frac is not None:
            length = _cooldown_steps(n_total, self.cooldown_frac)
            if length < 1:
                raise _FieldError(
                    "cooldown_frac",
                    f"{self.cooldown_frac} of total_steps {n_total} rounds to 0 steps; "
                    "a cooldown needs at least 1",
                )
        if start is None and length is None:
            raise _FieldError(
                "cooldown_frac",
                "missing: a wsd schedule needs its cooldown's length (cooldown_steps or "
                "cooldown_frac) or its start (cooldown_start or cooldown_start_frac)",
            )
        if start is not None and start > n_total:
            raise _FieldError(
                start_field,
                f"cooldown starts (step {start}) after the run ends (total_steps {n_total})",
            )
        if start is None:
            assert length is not None
            if length > n_total:
                raise _FieldError(
                    length_field,
                    f"cooldown of {length} steps is longer than the run (total_steps {n_total})",
                )
            start = n_total - length
        elif length is None:
            length = n_total - start
            if length < 1:
                raise _FieldError(
                    start_field,
                    f"cooldown starts at the end of the run (step {start} = total_steps {n_total}) "
                    "and has no steps left",
                )
        elif start + length > n_total:
            raise _FieldError(
                length_field,
                f"cooldown (steps {start}..{start + length}) ends after the run "
                f"(total_steps {n_total})",
            )
        _warmup_before(start, "the cooldown starts", self.warmup_steps)
        return start, length

    @property
    def cooldown_start_step(self) -> int:
        """S: the last stable update; the cooldown covers updates S+1..S+K."""
        return self._resolve()[0]

    @property
    def cooldown_length_steps(self) -> int:
        """K: the number of cooldown updates."""
        return self._resolve()[1]


class BranchSchedule(_CooldownFields):
    """A cooldown branched from a stable (constant-LR) parent run at checkpoint `branch_step`."""

    kind: Literal["branch"] = "branch"
    branch_step: int = Field(gt=0)
    cooldown_steps: Optional[int] = Field(None, gt=0)
    cooldown_frac: Optional[float] = None

    @model_validator(mode="before")
    @classmethod
    def _total_is_derived(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "total_steps" in data:
            raise _FieldError(
                "total_steps",
                "a branch's length is derived (branch_step + its cooldown); "
                "give cooldown_steps or cooldown_frac instead",
            )
        return data

    @field_validator("cooldown_frac")
    @classmethod
    def _frac_in_range(cls, v: Optional[float]) -> Optional[float]:
        return v if v is None else _check_fraction(v, low_open=True, high_open=True)

    @model_validator(mode="after")
    def _check(self) -> BranchSchedule:
        if (self.cooldown_steps is None) == (self.cooldown_frac is None):
            raise _FieldError(
                "cooldown_frac" if self.cooldown_frac is not None else "cooldown_steps",
                "give exactly one of cooldown_steps or cooldown_frac"
                + (", not both" if self.cooldown_frac is not None else ""),
            )
        if self.cooldown_length_steps < 1:
            raise _FieldError(
                "cooldown_frac",
                f"{self.cooldown_frac} of the branch from step {self.branch_step} rounds to 0 "
                "steps; a cooldown needs at least 1",
            )
        _warmup_before(self.branch_step, "the branch point", self.warmup_steps)
        return self

    @property
    def cooldown_start_step(self) -> int:
        return self.branch_step

    @property
    def cooldown_length_steps(self) -> int:
        if self.cooldown_steps is not None:
            return self.cooldown_steps
        assert self.cooldown_frac is not None
        # F is the cooldown's share of the branch's own length s + k: k = F (s + k).
        f = self.cooldown_frac
        return round(f / (1.0 - f) * self.branch_step)

    @property
    def total_steps(self) -> int:
        return self.branch_step + self.cooldown_length_steps

    def to_wsd(self) -> WSDSchedule:
        """The full-run wsd schedule with the same multiplier at every step."""
        return WSDSchedule(
            total_steps=self.total_steps,
            warmup_steps=self.warmup_steps,
            warmup_shape=self.warmup_shape,
            warmup_start_frac=self.warmup_start_frac,
            shape=self.shape,
            power=self.power,
            final_lr_frac=self.final_lr_frac,
            cooldown_start=self.branch_step,
            cooldown_steps=self.cooldown_length_steps,
        )


def branch_of(
    trunk: BaseSchedule,
    branch_step: int,
    cooldown_steps: int,
    shape: str = "linear",
    final_lr_frac: float = 0.0,
    power: Optional[float] = None,
) -> BranchSchedule:
    """The schedule of a cooldown branched at `branch_step` from a run with `trunk`'s warmup: what
    `cooldown branch` trains, and what a loss law predicts for a budget nobody ran."""
    return BranchSchedule(
        branch_step=branch_step,
        cooldown_steps=cooldown_steps,
        warmup_steps=trunk.warmup_steps,
        warmup_shape=trunk.warmup_shape,
        warmup_start_frac=trunk.warmup_start_frac,
        shape=shape,
        final_lr_frac=final_lr_frac,
        power=power,
    )


Schedule = Annotated[
    Union[
        ConstantSchedule,
        CosineSchedule,
        LinearSchedule,
        MultiStepSchedule,
        WSDSchedule,
        BranchSchedule,
    ],
    Field(discriminator="kind"),
]
"""Any schedule; use as a pydantic field type (`schedule: Schedule`) to embed one in a config."""

_BY_KIND: dict[str, type[BaseSchedule]] = {
    "constant": ConstantSchedule,
    "cosine": CosineSchedule,
    "linear": LinearSchedule,
    "multistep": MultiStepSchedule,
    "wsd": WSDSchedule,
    "branch": BranchSchedule,
}
SCHEDULE_KINDS: tuple[str, ...] = tuple(_BY_KIND)
