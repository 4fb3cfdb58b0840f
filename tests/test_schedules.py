"""LR schedules: the step convention, every shape and kind, branches, configs and their errors."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import tomli_w
from hypothesis import given, settings
from hypothesis import strategies as st

from cooldown.configio import tomllib
from cooldown.errors import CooldownError
from cooldown.schedule_specs import label, parse_schedule_spec, schedule_from_config
from cooldown.schedules import (
    SCHEDULE_KINDS,
    SHAPES,
    BranchSchedule,
    ConstantSchedule,
    CosineSchedule,
    LinearSchedule,
    MultiStepSchedule,
    branch_of,
    decay_shape,
)

ALIASES = {
    "sqrt": "1-sqrt",
    "minus_sqrt": "1-sqrt",
    "mirror_cosine": "mirror-cosine",
    "miror_cosine": "mirror-cosine",
    "square": "1-square",
}
FEW = settings(max_examples=40, deadline=None)


def wsd(**kw):
    return schedule_from_config({"kind": "wsd", **kw})


# --- the step convention ----------------------------------------------------------------------------


def test_linear_warmup_numbers_updates_from_one():
    s = ConstantSchedule(total_steps=10, warmup_steps=4)
    assert s.multipliers(0, 6).tolist() == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]


def test_warmup_start_fraction_and_shapes():
    s = ConstantSchedule(total_steps=10, warmup_steps=4, warmup_start_frac=0.1)
    assert s.multiplier(1) == pytest.approx(0.1 + 0.9 * 0.25, abs=1e-15)
    assert s.multiplier(4) == 1.0
    cos = ConstantSchedule(total_steps=10, warmup_steps=4, warmup_shape="cosine")
    assert cos.multiplier(1) == pytest.approx((1 - math.cos(math.pi / 4)) / 2, abs=1e-15)
    sq = ConstantSchedule(total_steps=10, warmup_steps=4, warmup_shape="1-sqrt")
    assert sq.multiplier(1) == pytest.approx(0.5, abs=1e-15)
    assert cos.multiplier(4) == sq.multiplier(4) == 1.0


@pytest.mark.parametrize("warmup_shape", ["linear", "cosine", "1-sqrt"])
@pytest.mark.parametrize("warmup_steps", [1, 300, 10**9])
def test_first_update_never_gets_lr_zero(warmup_shape, warmup_steps):
    s = ConstantSchedule(total_steps=10**10, warmup_steps=warmup_steps, warmup_shape=warmup_shape)
    assert s.multiplier(1) > 0.0


def test_first_update_positive_for_every_kind_with_default_warmup():
    for spec in ["constant", "cosine", "linear", "multistep", "wsd:cooldown_frac=0.2"]:
        s = parse_schedule_spec(spec, total_steps=1000, defaults={"warmup_steps": 20})
        assert s.multiplier(1) > 0.0, spec
        assert s.multiplier(20) == 1.0, spec


def test_wsd_stable_then_cooldown_then_exact_final():
    s = wsd(total_steps=1000, cooldown_frac=0.2, final_lr_frac=0.1)
    assert (s.cooldown_start_step, s.cooldown_length_steps) == (800, 200)
    assert isinstance(s.cooldown_start_step, int) and isinstance(s.cooldown_length_steps, int)
    assert s.multiplier(800) == 1.0
    assert s.multiplier(801) == pytest.approx(0.1 + 0.9 * (1 - 1 / 200))
    assert s.multiplier(1000) == 0.1
    assert s.multiplier(5000) == 0.1  # past the end: the final value


def test_wsd_cooldown_ending_before_the_run_holds_the_final_value():
    s = wsd(total_steps=1000, cooldown_start=500, cooldown_steps=100, final_lr_frac=0.05)
    m = s.multipliers(0, 1001)
    assert m[500] == 1.0 and m[501] < 1.0
    assert np.all(m[600:] == 0.05)
    assert s.phase_boundaries == (500, 600)


def test_wsd_start_only_runs_to_the_end_and_fractions_round():
    s = wsd(total_steps=1000, cooldown_start_frac=0.85)
    assert (s.cooldown_start_step, s.cooldown_length_steps) == (850, 150)
    # Python's round(): 0.25 * 10 = 2.5 rounds to 2 (half to even).
    t = wsd(total_steps=10, cooldown_frac=0.25)
    assert (t.cooldown_start_step, t.cooldown_length_steps) == (8, 2)


def test_cosine_schedule_values():
    s = CosineSchedule(total_steps=1000, warmup_steps=100)
    assert s.multiplier(100) == 1.0
    assert s.multiplier(550) == pytest.approx(0.1 + 0.9 * 0.5, abs=1e-15)
    assert s.multiplier(1000) == 0.1
    assert s.multiplier(1001) == 0.1
    assert CosineSchedule(total_steps=10, final_lr_frac=0.0).multiplier(10) == 0.0


def test_linear_schedule_values():
    s = LinearSchedule(total_steps=1100, warmup_steps=100)
    assert s.multiplier(600) == pytest.approx(0.5, abs=1e-15)
    assert s.multiplier(1100) == 0.0


def test_multistep_first_update_at_each_factor():
    s = MultiStepSchedule(total_steps=1000)
    assert s.milestone_steps == (800, 900)
    m = s.multipliers(0, 1002)
    assert (m[800], m[801], m[900], m[901], m[1000], m[1001]) == (1.0, 0.316, 0.316, 0.1, 0.1, 0.1)


def test_steps_must_be_non_negative_integers():
    s = ConstantSchedule(total_steps=10)
    with pytest.raises(CooldownError, match=r"^step: must be >= 0 \(got -1\)"):
        s.multiplier(-1)
    with pytest.raises(CooldownError, match=r"^step: must be an integer"):
        s.multiplier(1.5)
    with pytest.raises(CooldownError, match=r"^stop: must be >= start"):
        s.multipliers(5, 3)
    with pytest.raises(CooldownError, match=r"^steps: must be integers >= 0"):
        s.multipliers_at([3, -1])
    assert s.multiplier(np.int64(3)) == 1.0
    assert s.multipliers(4, 4).shape == (0,)


# --- shapes -----------------------------------------------------------------------------------------

X = np.array([0.0, 0.25, 0.5, 0.81, 1.0])


@pytest.mark.parametrize(
    "shape, expected",
    [
        ("linear", 1 - X),
        ("1-sqrt", 1 - np.sqrt(X)),
        ("cosine", (1 + np.cos(np.pi * X)) / 2),
        ("mirror-cosine", 2 * (1 - X) - (1 + np.cos(np.pi * X)) / 2),
        ("1-square", 1 - X**2),
        ("power", 1 - X**0.5),
    ],
)
def test_decay_shape_formulas(shape, expected):
    np.testing.assert_allclose(decay_shape(shape, X), expected, atol=1e-15)
    m = 0.1
    np.testing.assert_allclose(
        decay_shape(shape, X, final_lr_frac=m), m + (1 - m) * expected, atol=1e-15
    )


def test_decay_shape_power_exp_scalars_and_aliases():
    assert decay_shape("power", 0.5, power=2.0) == 0.75
    assert decay_shape("exp", 0.5, final_lr_frac=0.01) == pytest.approx(0.1, abs=1e-15)
    assert isinstance(decay_shape("linear", 0.5), float)
    for alias, name in ALIASES.items():
        assert np.array_equal(decay_shape(alias, X), decay_shape(name, X))


@pytest.mark.parametrize(
    "args, kwargs, field",
    [
        (("exp", 0.5), {}, "final_lr_frac"),
        (("foo", 0.5), {}, "shape"),
        (("linear", 1.5), {}, "progress"),
        (("linear", [0.2, float("nan")]), {}, "progress"),
        (("power", 0.5), {"power": 0.0}, "power"),
        (("linear", 0.5), {"final_lr_frac": -0.1}, "final_lr_frac"),
    ],
)
def test_decay_shape_rejects_bad_input(args, kwargs, field):
    with pytest.raises(CooldownError, match=f"^{field}: "):
        decay_shape(*args, **kwargs)


def _shape_config(draw_shape, final, power):
    cfg = {"shape": draw_shape, "final_lr_frac": final}
    if ALIASES.get(draw_shape, draw_shape) == "power":
        cfg["power"] = power
    return cfg


@st.composite
def wsd_configs(draw):
    total = draw(st.integers(2, 3000))
    length = draw(st.integers(1, total))
    start = draw(st.integers(0, total - length))
    warmup = draw(st.integers(0, start))
    shape = draw(st.sampled_from(SHAPES + tuple(ALIASES)))
    low = 1e-6 if shape == "exp" else 0.0
    final = draw(st.floats(low, 1.0))
    power = draw(st.floats(0.05, 5.0))
    cfg = {"kind": "wsd", "total_steps": total, "warmup_steps": warmup, "cooldown_steps": length}
    if start + length < total or draw(st.booleans()):
        cfg["cooldown_start"] = start
    cfg["warmup_shape"] = draw(st.sampled_from(["linear", "cosine", "1-sqrt"]))
    cfg["warmup_start_frac"] = draw(st.sampled_from([0.0, 0.01, 0.5]))
    return {**cfg, **_shape_config(shape, final, power)}


@FEW
@given(wsd_configs())
def test_every_wsd_starts_at_one_ends_at_final_and_never_rises(cfg):
    s = schedule_from_config(cfg)
    start, length = s.cooldown_start_step, s.cooldown_length_steps
    m = s.multipliers(0, s.total_steps + 3)
    final = s.final_lr_frac
    assert m[start] == 1.0 and m[cfg["warmup_steps"]] == 1.0
    assert m[start + length] == final
    assert np.all(m[start + length :] == final)
    assert np.all(np.diff(m[start : start + length + 1]) <= 0.0)
    assert np.all(np.diff(m[: cfg["warmup_steps"] + 1]) >= 0.0)
    assert np.all(m[cfg["warmup_steps"] : start + 1] == 1.0)
    assert np.all((m >= 0.0) & (m <= 1.0))
    if cfg["warmup_steps"] > 0:
        assert m[1] > 0.0


@FEW
@given(wsd_configs())
def test_vectorised_equals_scalar_and_round_trips_are_exact(cfg):
    s = schedule_from_config(cfg)
    steps = range(0, s.total_steps + 2, max(1, s.total_steps // 50))
    vector = s.multipliers(0, s.total_steps + 2)
    for n in steps:
        assert abs(s.multiplier(n) - vector[n]) <= 1e-15
    assert np.array_equal(s.multipliers_at(list(steps)), vector[list(steps)])
    config = s.to_config()
    assert config["shape"] in SHAPES  # aliases are stored canonical
    again = schedule_from_config(config)
    assert again == s and again.to_config() == config
    assert schedule_from_config(tomllib.loads(tomli_w.dumps(config))) == s


@pytest.mark.parametrize("alias", sorted(ALIASES))
def test_aliases_give_identical_schedules(alias):
    a = wsd(total_steps=500, cooldown_frac=0.3, shape=alias)
    b = wsd(total_steps=500, cooldown_frac=0.3, shape=ALIASES[alias])
    assert a == b
    assert np.array_equal(a.multipliers(0, 501), b.multipliers(0, 501))


@pytest.mark.parametrize("shape", SHAPES)
def test_cooldown_start_is_continuous_for_long_cooldowns(shape):
    extra = {"power": 0.5} if shape == "power" else {}
    final = 0.01 if shape == "exp" else 0.0

    def jump(k):
        s = wsd(total_steps=2 * k, cooldown_steps=k, shape=shape, final_lr_frac=final, **extra)
        return s.multiplier(k) - s.multiplier(k + 1)

    jumps = [jump(k) for k in (10, 1000, 100_000)]
    assert jumps[0] > jumps[1] > jumps[2] >= 0.0
    assert jumps[2] < 5e-3


@pytest.mark.parametrize("warmup_shape", ["linear", "cosine", "1-sqrt"])
def test_warmup_end_is_continuous_for_long_warmups(warmup_shape):
    def jump(w):
        s = ConstantSchedule(total_steps=2 * w, warmup_steps=w, warmup_shape=warmup_shape)
        return s.multiplier(w) - s.multiplier(w - 1)

    jumps = [jump(w) for w in (10, 1000, 10_000)]
    assert jumps[0] > jumps[1] > jumps[2] > 0.0
    assert jumps[2] < 1e-3


# --- other kinds under random configs ----------------------------------------------------------------


@st.composite
def other_configs(draw):
    total = draw(st.integers(20, 2000))
    warmup = draw(st.integers(0, total // 2))
    kind = draw(st.sampled_from(["constant", "cosine", "linear", "multistep"]))
    cfg = {"kind": kind, "total_steps": total, "warmup_steps": warmup}
    if kind in ("cosine", "linear"):
        cfg["final_lr_frac"] = draw(st.floats(0.0, 1.0))
    if kind == "multistep":
        cfg["milestones"] = [0.6, 0.9]
        cfg["factors"] = draw(st.lists(st.floats(0.0, 1.0), min_size=2, max_size=2))
    return cfg


@FEW
@given(other_configs())
def test_other_kinds_round_trip_and_agree_scalar_vector(cfg):
    s = schedule_from_config(cfg)
    m = s.multipliers(0, s.total_steps + 2)
    for n in (0, 1, cfg["warmup_steps"], s.total_steps // 2, s.total_steps, s.total_steps + 1):
        assert abs(s.multiplier(n) - m[n]) <= 1e-15
    assert m[cfg["warmup_steps"]] == 1.0 or cfg["warmup_steps"] == 0
    assert m[s.total_steps] == m[s.total_steps + 1]
    if cfg["kind"] in ("cosine", "linear"):
        assert m[s.total_steps] == cfg["final_lr_frac"]
        assert np.all(np.diff(m[cfg["warmup_steps"] :]) <= 0.0)
    config = s.to_config()
    assert schedule_from_config(config) == s
    assert schedule_from_config(config).to_config() == config


# --- branches ----------------------------------------------------------------------------------------


def test_branch_fraction_is_of_the_branch_length():
    b = BranchSchedule(branch_step=8000, cooldown_frac=0.2, shape="sqrt")
    assert b.cooldown_length_steps == 2000 and b.total_steps == 10000
    assert b.shape == "1-sqrt"
    assert b.to_wsd() == wsd(
        total_steps=10000, cooldown_start=8000, cooldown_steps=2000, shape="1-sqrt"
    )
    assert label(b) == "branch at step 8000, 2000-step 1-sqrt cooldown"


def test_branch_of_a_trunk_keeps_its_warmup():
    trunk = ConstantSchedule(
        total_steps=900, warmup_steps=50, warmup_shape="cosine", warmup_start_frac=0.1
    )
    b = branch_of(trunk, 480, 120, "1-sqrt")
    assert b.total_steps == 600 and b.final_lr_frac == 0.0
    expected = wsd(
        total_steps=600,
        warmup_steps=50,
        warmup_shape="cosine",
        warmup_start_frac=0.1,
        cooldown_start=480,
        cooldown_steps=120,
        shape="1-sqrt",
    )
    np.testing.assert_array_equal(b.multipliers(1, 601), expected.multipliers(1, 601))
    # Up to the branch step it is the trunk, step for step.
    np.testing.assert_array_equal(b.multipliers(1, 481), trunk.multipliers(1, 481))


@FEW
@given(
    branch_step=st.integers(1, 3000),
    cooldown=st.one_of(st.integers(1, 1000), st.floats(0.01, 0.5)),
    shape=st.sampled_from(SHAPES),
    warmup_frac=st.floats(0.0, 1.0),
)
def test_branch_equals_full_wsd_at_every_step(branch_step, cooldown, shape, warmup_frac):
    cfg = {"kind": "branch", "branch_step": branch_step, "shape": shape}
    cfg["cooldown_steps" if isinstance(cooldown, int) else "cooldown_frac"] = cooldown
    cfg["warmup_steps"] = int(warmup_frac * branch_step)
    if shape == "exp":
        cfg["final_lr_frac"] = 0.05
    if isinstance(cooldown, float) and round(cooldown / (1 - cooldown) * branch_step) < 1:
        with pytest.raises(CooldownError, match=r"^schedule\.cooldown_frac: "):
            schedule_from_config(cfg)
        return
    b = schedule_from_config(cfg)
    full = b.to_wsd()
    assert full.total_steps == b.total_steps == branch_step + b.cooldown_length_steps
    assert np.array_equal(
        b.multipliers(0, b.total_steps + 3), full.multipliers(0, b.total_steps + 3)
    )
    assert schedule_from_config(b.to_config()) == b
    assert "total_steps" not in b.to_config()


# --- configs and their errors ------------------------------------------------------------------------


def test_to_config_is_plain_and_complete():
    s = wsd(total_steps=1000, cooldown_frac=0.2, shape="sqrt")
    assert s.to_config() == {
        "kind": "wsd",
        "total_steps": 1000,
        "warmup_steps": 0,
        "warmup_shape": "linear",
        "warmup_start_frac": 0.0,
        "shape": "1-sqrt",
        "final_lr_frac": 0.0,
        "cooldown_frac": 0.2,
    }
    p = wsd(total_steps=1000, cooldown_frac=0.2, shape="power")
    assert p.power == 0.5 and p.to_config()["power"] == 0.5
    m = MultiStepSchedule(total_steps=100).to_config()
    assert m["milestones"] == [0.8, 0.9] and m["factors"] == [0.316, 0.1]
    assert {kind for kind in SCHEDULE_KINDS} == {
        "constant",
        "cosine",
        "linear",
        "multistep",
        "wsd",
        "branch",
    }


BAD = [
    (
        {"kind": "wsd", "total_steps": 1000, "cooldown_frac": 0.2, "shape": "foo"},
        "shape",
        "Input should be 'linear', '1-sqrt'",
    ),
    ({"kind": "foo", "total_steps": 1000}, "kind", "must be one of 'constant'"),
    ({"total_steps": 1000}, "kind", "missing"),
    ({"kind": "wsd", "total_steps": 0, "cooldown_frac": 0.2}, "total_steps", "greater than 0"),
    ({"kind": "wsd", "total_steps": 1000, "cooldown_steps": 0}, "cooldown_steps", "greater than 0"),
    (
        {"kind": "wsd", "total_steps": 1000, "cooldown_steps": -5},
        "cooldown_steps",
        "greater than 0",
    ),
    ({"kind": "wsd", "total_steps": 1000, "cooldown_frac": 0.0}, "cooldown_frac", "(0, 1]"),
    ({"kind": "wsd", "total_steps": 1000, "cooldown_frac": 0.0001}, "cooldown_frac", "rounds to 0"),
    (
        {"kind": "wsd", "total_steps": 1000, "cooldown_start": 1200},
        "cooldown_start",
        "after the run ends",
    ),
    (
        {"kind": "wsd", "total_steps": 1000, "cooldown_start": 1000},
        "cooldown_start",
        "no steps left",
    ),
    (
        {"kind": "wsd", "total_steps": 1000, "cooldown_start_frac": 1.0},
        "cooldown_start_frac",
        "[0, 1)",
    ),
    (
        {"kind": "wsd", "total_steps": 1000, "cooldown_steps": 1200},
        "cooldown_steps",
        "longer than the run",
    ),
    (
        {"kind": "wsd", "total_steps": 1000, "cooldown_start": 900, "cooldown_steps": 200},
        "cooldown_steps",
        "cooldown (steps 900..1100) ends after the run (total_steps 1000)",
    ),
    (
        {"kind": "wsd", "total_steps": 1000, "cooldown_start_frac": 0.9, "cooldown_frac": 0.2},
        "cooldown_frac",
        "ends after the run",
    ),
    ({"kind": "wsd", "total_steps": 1000}, "cooldown_frac", "missing"),
    (
        {"kind": "wsd", "total_steps": 1000, "cooldown_steps": 10, "cooldown_frac": 0.1},
        "cooldown_frac",
        "not both",
    ),
    (
        {
            "kind": "wsd",
            "total_steps": 1000,
            "cooldown_start": 10,
            "cooldown_start_frac": 0.1,
            "cooldown_steps": 5,
        },
        "cooldown_start_frac",
        "not both",
    ),
    (
        {"kind": "wsd", "total_steps": 1000, "cooldown_frac": 0.2, "warmup_steps": 900},
        "warmup_steps",
        "warmup (900 steps) ends after the cooldown starts (step 800)",
    ),
    (
        {"kind": "cosine", "total_steps": 1000, "warmup_steps": 1000},
        "warmup_steps",
        "no steps for the decay",
    ),
    (
        {"kind": "linear", "total_steps": 100, "warmup_steps": 200},
        "warmup_steps",
        "no steps for the decay",
    ),
    (
        {"kind": "constant", "total_steps": 100, "warmup_steps": 200},
        "warmup_steps",
        "the end of the run",
    ),
    (
        {"kind": "multistep", "total_steps": 100, "warmup_steps": 85},
        "warmup_steps",
        "the first milestone",
    ),
    (
        {"kind": "wsd", "total_steps": 1000, "cooldown_frac": 0.2, "final_lr_frac": 1.5},
        "final_lr_frac",
        "must be in [0, 1] (got 1.5)",
    ),
    (
        {"kind": "cosine", "total_steps": 1000, "final_lr_frac": -0.1},
        "final_lr_frac",
        "must be in [0, 1]",
    ),
    (
        {"kind": "wsd", "total_steps": 1000, "cooldown_frac": 0.2, "shape": "exp"},
        "final_lr_frac",
        "needs a final fraction m > 0",
    ),
    (
        {"kind": "wsd", "total_steps": 1000, "cooldown_frac": 0.2, "colldown": 1},
        "colldown",
        "Extra inputs are not permitted",
    ),
    (
        {"kind": "branch", "branch_step": 100, "cooldown_steps": 10, "total_steps": 110},
        "total_steps",
        "derived",
    ),
    ({"kind": "branch", "branch_step": 0, "cooldown_steps": 10}, "branch_step", "greater than 0"),
    (
        {"kind": "branch", "branch_step": 100, "cooldown_steps": 0},
        "cooldown_steps",
        "greater than 0",
    ),
    ({"kind": "branch", "branch_step": 100}, "cooldown_steps", "exactly one"),
    ({"kind": "branch", "branch_step": 100, "cooldown_frac": 1.0}, "cooldown_frac", "(0, 1)"),
    (
        {"kind": "branch", "branch_step": 100, "cooldown_steps": 5, "warmup_steps": 101},
        "warmup_steps",
        "the branch point",
    ),
    (
        {"kind": "wsd", "total_steps": 1000, "cooldown_frac": 0.2, "power": 2.0},
        "power",
        "only used by shape 'power'",
    ),
    (
        {"kind": "wsd", "total_steps": 1000, "cooldown_frac": 0.2, "shape": "power", "power": 0},
        "power",
        "> 0",
    ),
    (
        {"kind": "wsd", "total_steps": 1000, "cooldown_frac": 0.2, "warmup_start_frac": 1.0},
        "warmup_start_frac",
        "[0, 1)",
    ),
    (
        {"kind": "wsd", "total_steps": 1000, "cooldown_frac": 0.2, "warmup_shape": "exp"},
        "warmup_shape",
        "Input should be 'linear', 'cosine' or '1-sqrt'",
    ),
    ({"kind": "wsd", "total_steps": True, "cooldown_frac": 0.2}, "total_steps", "boolean"),
    (
        {"kind": "multistep", "total_steps": 100, "factors": [0.5]},
        "factors",
        "one factor per milestone",
    ),
    (
        {"kind": "multistep", "total_steps": 100, "milestones": [0.9, 0.8]},
        "milestones",
        "strictly increasing",
    ),
    ({"kind": "multistep", "total_steps": 100, "milestones": [0.8, 1.0]}, "milestones", "(0, 1)"),
    ({"kind": "multistep", "total_steps": 100, "factors": [0.3, 1.5]}, "factors", "[0, 1]"),
    (
        {"kind": "multistep", "total_steps": 10, "milestones": [0.81, 0.84]},
        "milestones",
        "same step",
    ),
]


@pytest.mark.parametrize(
    "config, field, text",
    BAD,
    ids=[f"{c.get('kind', 'nokind')}-{f}-{i}" for i, (c, f, _) in enumerate(BAD)],
)
def test_bad_config_names_the_field(config, field, text):
    with pytest.raises(CooldownError) as info:
        schedule_from_config(config)
    message = str(info.value)
    assert message.startswith(f"schedule.{field}: "), message
    assert text in message
    assert "\n" not in message


def test_error_prefix_and_non_table():
    with pytest.raises(CooldownError, match=r"^runs\.schedule\.total_steps: "):
        schedule_from_config({"kind": "constant", "total_steps": -1}, prefix="runs.schedule")
    with pytest.raises(CooldownError, match=r"^schedule: expected a table"):
        schedule_from_config("wsd")  # type: ignore[arg-type]


# --- specs and labels --------------------------------------------------------------------------------


def test_parse_schedule_spec():
    s = parse_schedule_spec("wsd:shape=1-sqrt,cooldown_frac=0.2", total_steps=1000)
    assert s == wsd(total_steps=1000, shape="1-sqrt", cooldown_frac=0.2)
    m = parse_schedule_spec("multistep:milestones=[0.5, 0.75],factors=[0.5,0.25]", total_steps=100)
    assert m.milestone_steps == (50, 75) and m.factors == (0.5, 0.25)
    # The spec's own values win over the defaults.
    c = parse_schedule_spec(
        "cosine:total_steps=500,warmup_steps=5", total_steps=1000, defaults={"warmup_steps": 20}
    )
    assert (c.total_steps, c.warmup_steps) == (500, 5)
    b = parse_schedule_spec("branch:branch_step=80,cooldown_frac=0.2", total_steps=1000)
    assert b.total_steps == 100
    assert (
        parse_schedule_spec('wsd:shape="sqrt",cooldown_steps=3', total_steps=10).shape == "1-sqrt"
    )


@pytest.mark.parametrize(
    "spec, text",
    [
        ("wsd:shape", "'shape' is not key=value"),
        ("wsd:cooldown_frac=0.2,cooldown_frac=0.3", "cooldown_frac is given twice"),
        ("wsd:shape=foo,cooldown_frac=0.2", "schedule.shape: Input should be"),
        ("cosin", "schedule.kind: must be one of"),
        ("wsd:cooldown_frac=0.2,bogus=1", "schedule.bogus: Extra inputs"),
    ],
)
def test_parse_schedule_spec_errors(spec, text):
    with pytest.raises(CooldownError) as info:
        parse_schedule_spec(spec, total_steps=1000)
    assert text in str(info.value)
    assert repr(spec) in str(info.value)


def test_labels():
    assert label(ConstantSchedule(total_steps=10)) == "constant"
    assert label(CosineSchedule(total_steps=10)) == "cosine to 10%"
    assert label(LinearSchedule(total_steps=10)) == "linear to 0%"
    assert label(wsd(total_steps=1000, cooldown_frac=0.2, shape="sqrt")) == (
        "WSD 1-sqrt, 20% cooldown"
    )
    assert label(wsd(total_steps=1000, cooldown_frac=0.1, shape="exp", final_lr_frac=0.01)) == (
        "WSD exp, 10% cooldown to 1%"
    )
    assert (
        label(wsd(total_steps=1000, cooldown_start=500, cooldown_steps=100, shape="power", power=2))
        == "WSD power 2, cooldown steps 500..600"
    )
    assert (
        label(MultiStepSchedule(total_steps=10)) == "multistep (x0.316 after 80%, x0.1 after 90%)"
    )


def test_schedules_import_without_torch():
    code = "import sys, cooldown.schedules; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cooldown_split_is_the_wsd_cooldown_and_refuses_an_empty_phase():
    from cooldown.schedules import cooldown_split

    for budget, frac in [(100, 0.2), (120, 0.05), (7, 0.5), (1000, 0.333)]:
        s, k = cooldown_split(budget, frac)
        w = wsd(total_steps=budget, cooldown_frac=frac)
        assert (s, k) == (w.cooldown_start_step, w.cooldown_length_steps)
        assert s + k == budget
    with pytest.raises(
        CooldownError, match=r"^cooldown_frac: 0\.01 of the 40-step budget leaves 0 "
    ):
        cooldown_split(40, 0.01, field="cooldown_frac")
    with pytest.raises(CooldownError, match=r"leaves 1 cooldown and 0 stable steps"):
        cooldown_split(1, 0.9)
