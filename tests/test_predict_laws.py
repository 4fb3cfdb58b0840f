"""`cooldown.predict.laws`: both laws against literal O(T^2) transcriptions of their formulas, the
analytic derivatives the fitter uses, and long schedules."""

from __future__ import annotations

import time

import numpy as np
import pytest

from cooldown.errors import CooldownError
from cooldown.predict import (
    AnnealingLaw,
    MultiPowerLaw,
    annealing_momentum_area,
    forward_area,
    get_law,
    lr_drops,
    peak_step,
)
from cooldown.schedule_specs import parse_schedule_spec

MPL = {"L0": 3.0, "A": 0.8, "alpha": 0.5, "B": 150.0, "C": 2.0, "beta": 0.6, "gamma": 0.6}
TISSUE = {"L0": 3.0, "A": 0.8, "alpha": 0.5, "C": 0.5}


def _lrs(spec: str, total: int, warmup: int, peak: float = 3e-3) -> np.ndarray:
    schedule = parse_schedule_spec(spec, total_steps=total, defaults={"warmup_steps": warmup})
    return peak * schedule.multipliers(1, total + 1)


def _mpl_by_the_formula(p, lrs, steps):
    """Luo et al.'s equations, term by term, in plain Python (lrs[k - 1] is lr_k)."""
    w = int(np.argmax(lrs)) + 1
    out = []
    for t in steps:
        loss_drop = 0.0
        for k in range(w + 1, t + 1):
            s_k = sum(lrs[k - 1 : t])
            x = p["C"] * lrs[k - 1] ** -p["gamma"] * s_k if s_k > 0 else 0.0
            loss_drop += (lrs[k - 2] - lrs[k - 1]) * (1 - (x + 1) ** -p["beta"])
        out.append(p["L0"] + p["A"] * sum(lrs[:t]) ** -p["alpha"] - p["B"] * loss_drop)
    return np.array(out)


def _tissue_by_the_formula(p, lrs, steps, decay=0.999):
    w = int(np.argmax(lrs)) + 1
    m, s2, s2_at = 0.0, 0.0, []
    for i in range(1, len(lrs) + 1):
        m = decay * m + ((lrs[i - 2] - lrs[i - 1]) if i > w else 0.0)
        s2 += m
        s2_at.append(s2)
    s2_at = np.array(s2_at)
    return np.array(
        [p["L0"] + p["A"] * sum(lrs[:t]) ** -p["alpha"] - p["C"] * s2_at[t - 1] for t in steps]
    )


@pytest.mark.parametrize(
    "spec", ["wsd:shape=1-sqrt,cooldown_frac=0.3", "cosine:final_lr_frac=0", "multistep"]
)
def test_mpl_matches_its_formula(spec):
    lrs = _lrs(spec, 240, 12)
    steps = np.array([1, 5, 12, 13, 50, 170, 200, 239, 240])
    got = MultiPowerLaw().loss(MPL, lrs, steps)
    np.testing.assert_allclose(got, _mpl_by_the_formula(MPL, lrs, steps), rtol=1e-13)


def test_tissue_matches_its_formula_and_s2_is_the_momentum_of_drops():
    lrs = _lrs("wsd:shape=linear,cooldown_frac=0.4", 200, 10)
    steps = np.arange(1, 201, 7)
    np.testing.assert_allclose(
        AnnealingLaw().loss(TISSUE, lrs, steps), _tissue_by_the_formula(TISSUE, lrs, steps)
    )
    # lambda = 1: S2 is the annealing area, sum of (peak - lr) after the peak.
    area = np.cumsum(np.where(np.arange(1, 201) > 10, lrs.max() - lrs, 0.0))
    np.testing.assert_allclose(annealing_momentum_area(lrs, steps, decay=1.0), area[steps - 1])
    # lambda = 0: m_i is the step's own drop, so S2(t) is the drop since the peak, lr_W - lr_t.
    after = steps[steps >= 10]
    np.testing.assert_allclose(
        annealing_momentum_area(lrs, after, decay=0.0), lrs.max() - lrs[after - 1], atol=1e-15
    )
    other = AnnealingLaw(decay=0.99).loss(TISSUE, lrs, steps)
    np.testing.assert_allclose(other, _tissue_by_the_formula(TISSUE, lrs, steps, decay=0.99))


def test_areas_drops_and_peak():
    lrs = np.array([1.0, 2.0, 3.0, 3.0, 2.0, 2.5, 0.0])
    assert peak_step(lrs) == 3
    # The warmup rise is not a drop; a rise after the peak is a negative one.
    np.testing.assert_array_equal(lr_drops(lrs), [0, 0, 0, 0, 1.0, -0.5, 2.5])
    np.testing.assert_array_equal(forward_area(lrs, [1, 3, 7]), [1.0, 6.0, 13.5])


def test_a_cooldown_lowers_the_loss_and_a_constant_lr_has_no_annealing_term():
    constant = _lrs("constant", 300, 15)
    cooldown = _lrs("wsd:shape=linear,cooldown_frac=0.2", 300, 15)
    law = MultiPowerLaw()
    steps = np.arange(16, 301)
    c, w = law.loss(MPL, constant, steps), law.loss(MPL, cooldown, steps)
    expected = MPL["L0"] + MPL["A"] * forward_area(constant, steps) ** -MPL["alpha"]
    np.testing.assert_allclose(c, expected, rtol=1e-14)
    np.testing.assert_array_equal(w[steps <= 240], c[steps <= 240])
    assert w[-1] < c[-1] - 0.05


def test_final_lr_zero_contributes_its_limit():
    # The last update's LR is exactly 0, so lr^-gamma is infinite; with nothing after it S_k(t)
    # is 0 and G takes its limit 0: the result stays finite and equals the formula's limit.
    lrs = _lrs("wsd:shape=linear,cooldown_frac=0.5", 100, 5)
    assert lrs[-1] == 0.0
    got = MultiPowerLaw().loss(MPL, lrs, [99, 100])
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, _mpl_by_the_formula(MPL, lrs, [99, 100]), rtol=1e-13)


def test_lr_rising_again_after_zero():
    # Drop to 0 at update 11, rise back at update 16: for t >= 16, x of k = 11 is infinite (lr_k = 0,
    # S_k(t) > 0) and its G is 1; the rise is a negative drop. Values and derivatives stay finite.
    lrs = np.array([3e-3] * 10 + [0.0] * 5 + [3e-3] * 10)
    steps = np.arange(1, 26)
    law = MultiPowerLaw()
    got = law.loss(MPL, lrs, steps)
    p = MPL
    area = np.cumsum(lrs)
    expected = p["L0"] + p["A"] * area ** -p["alpha"]
    after_rise = steps >= 16
    x = p["C"] * 3e-3 ** -p["gamma"] * np.maximum(area - area[14], 0)  # k = 16: P(t) - P(15)
    g_rise = 1 - (x + 1) ** -p["beta"]
    expected = expected - p["B"] * 3e-3 * np.where(steps >= 11, 1.0, 0.0)  # k = 11, G = 1...
    expected = expected + p["B"] * 3e-3 * np.where(after_rise, g_rise, 0.0)  # k = 16, d = -lr
    # ... except while the LR is still 0 (t < 16): S_11(t) = 0 there, so G is its limit 0.
    expected = np.where((steps >= 11) & ~after_rise, expected + p["B"] * 3e-3, expected)
    np.testing.assert_allclose(got, expected, rtol=1e-13)
    _, jac = law.terms(lrs, steps[1:]).value_and_jacobian(law.params_vector(MPL))
    assert np.all(np.isfinite(jac))


@pytest.mark.parametrize("name", ["mpl", "tissue"])
def test_jacobian_matches_finite_differences(name):
    law = get_law(name)
    lrs = _lrs("cosine", 300, 15)
    steps = np.arange(20, 301, 20)
    terms = law.terms(lrs, steps)
    theta = law.params_vector(MPL if name == "mpl" else TISSUE)
    _, jac = terms.value_and_jacobian(theta)
    for i in range(theta.size):
        h = 1e-6 * max(1.0, abs(theta[i]))
        e = np.zeros_like(theta)
        e[i] = h
        numeric = (terms.value(theta + e) - terms.value(theta - e)) / (2 * h)
        np.testing.assert_allclose(jac[:, i], numeric, rtol=1e-6, atol=1e-9)


def test_scaled_parameters_round_trip_and_give_the_same_loss():
    lrs = _lrs("wsd:shape=1-sqrt,cooldown_frac=0.2", 200, 10)
    steps = np.arange(20, 201, 10)
    for law, params in ((MultiPowerLaw(), MPL), (AnnealingLaw(), TISSUE)):
        theta = law.params_vector(params)
        scaled = law.to_scaled(theta, 3e-3)
        np.testing.assert_allclose(law.from_scaled(scaled, 3e-3), theta)
        np.testing.assert_allclose(
            law.terms(lrs / 3e-3, steps).value(scaled), law.loss(theta, lrs, steps), rtol=1e-12
        )


def test_long_schedule_stays_fast_and_merged_terms_are_close():
    # 50k updates of cosine to zero, the loss at 100 logged steps: exact in seconds, and the
    # merged drop groups the fitter uses on such curves agree to about 1e-5 of the loss.
    lrs = _lrs("cosine:final_lr_frac=0", 50_000, 500)
    steps = np.arange(500, 50_001, 500)
    law = MultiPowerLaw()
    start = time.perf_counter()
    exact = law.loss(MPL, lrs, steps)
    elapsed = time.perf_counter() - start
    merged = law.terms(lrs, steps, max_terms=1024).value(law.params_vector(MPL))
    assert np.max(np.abs(merged - exact) / exact) < 1e-4
    assert np.all(np.diff(exact[5:]) < 0)
    assert elapsed < 60  # a loose bound: the point is seconds, not the O(T^2) hours


@pytest.mark.parametrize(
    "call, text",
    [
        (lambda: get_law("chinchilla"), "law: must be one of 'mpl', 'tissue'"),
        (lambda: get_law("tissue", decay=1.5), "decay: the momentum decay lambda"),
        (lambda: MultiPowerLaw().loss({"L0": 1.0}, [1e-3] * 5, [1]), "params: the mpl law needs"),
        (lambda: MultiPowerLaw().loss(MPL, [1e-3] * 5, [6]), "steps: must lie in 1..5"),
        (lambda: MultiPowerLaw().loss(MPL, [0.0] * 5, [1]), "lrs: every learning rate is 0"),
        (lambda: AnnealingLaw().loss(TISSUE, [1e-3, -1e-3], [1]), "lrs: learning rates must"),
    ],
)
def test_bad_input_is_one_line(call, text):
    with pytest.raises(CooldownError) as info:
        call()
    assert str(info.value).startswith(text)
    assert "\n" not in str(info.value)
