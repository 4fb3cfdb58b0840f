"""`cooldown.predict.fit_law` on synthetic curves from known parameters, its bootstrap, `predict`,
the schedule search, and the one-line errors for curves a law cannot be fitted to."""

from __future__ import annotations

import numpy as np
import pytest

from cooldown.errors import CooldownError
from cooldown.predict import (
    LossCurve,
    fit_law,
    get_law,
    predict,
    predict_lrs,
    search_cooldown,
)
from cooldown.schedule_specs import parse_schedule_spec

PEAK = 3e-3
TOTAL = 400
WARMUP = 20
MPL = {"L0": 3.0, "A": 0.8, "alpha": 0.5, "B": 150.0, "C": 2.0, "beta": 0.6, "gamma": 0.6}
TISSUE = {"L0": 3.0, "A": 0.8, "alpha": 0.5, "C": 0.5}


def _schedule(spec: str, total: int = TOTAL):
    return parse_schedule_spec(spec, total_steps=total, defaults={"warmup_steps": WARMUP})


def _curve(law_name, params, spec, noise=0.0, every=10, seed=0, total=TOTAL, setup=None):
    schedule = _schedule(spec, total)
    lrs = PEAK * schedule.multipliers(1, total + 1)
    steps = np.arange(every, total + 1, every)
    loss = get_law(law_name).loss(params, lrs, steps)
    loss = loss * np.exp(noise * np.random.default_rng(seed).standard_normal(steps.size))
    return LossCurve(spec, lrs, steps, loss, schedule=schedule, setup=setup)


def _huber_objective(law_name, params, curves) -> float:
    total = 0.0
    for c in curves:
        after = c.steps > WARMUP
        r = np.abs(np.log(get_law(law_name).loss(params, c.lrs, c.steps[after]) / c.losses[after]))
        total += np.where(r <= 1e-3, 0.5 * r**2, 1e-3 * (r - 0.5e-3)).sum()
    return float(total)


@pytest.fixture(scope="module")
def mpl_curves():
    # A constant run, a WSD cooldown and a cosine, 0.01% noise: the three curves Luo et al. fit on.
    return [
        _curve("mpl", MPL, spec, noise=1e-4, seed=i)
        for i, spec in enumerate(["constant", "wsd:shape=linear,cooldown_frac=0.3", "cosine"])
    ]


@pytest.fixture(scope="module")
def mpl_fit(mpl_curves):
    return fit_law(mpl_curves, "mpl", n_bootstrap=8, seed=1)


def test_mpl_fit_recovers_the_parameters(mpl_fit, mpl_curves):
    got = mpl_fit.params
    for name in ("L0", "A", "alpha"):
        assert got[name] == pytest.approx(MPL[name], rel=2e-3), name
    assert got["B"] == pytest.approx(MPL["B"], rel=0.05)
    assert got["gamma"] == pytest.approx(MPL["gamma"], rel=0.05)
    # beta and C trade off against each other (G's shape): with this noise they are known to
    # about 20% and 50%, and the fit is at least as good as the true parameters.
    assert got["beta"] == pytest.approx(MPL["beta"], rel=0.2)
    assert got["C"] == pytest.approx(MPL["C"], rel=0.5)
    assert mpl_fit.objective == pytest.approx(_huber_objective("mpl", got, mpl_curves), rel=1e-9)
    assert mpl_fit.objective <= _huber_objective("mpl", MPL, mpl_curves)
    assert mpl_fit.rms_log_residual == pytest.approx(1e-4, rel=0.3)
    assert mpl_fit.n_points == 3 * (TOTAL // 10 - 2)  # points after the 20-step warmup
    assert mpl_fit.curve_names[0] == "constant" and mpl_fit.starts == 108


def test_mpl_fit_is_exact_without_noise():
    curves = [_curve("mpl", MPL, s) for s in ("constant", "wsd:shape=1-sqrt,cooldown_frac=0.25")]
    fit = fit_law(curves, "mpl", n_bootstrap=0)
    for name, value in MPL.items():
        assert fit.params[name] == pytest.approx(value, rel=1e-4), name
    assert fit.bootstrap.shape == (0, 7)


def test_mpl_predictions_of_unseen_schedules(mpl_fit):
    truth = get_law("mpl")
    for spec in ("wsd:shape=1-sqrt,cooldown_frac=0.5", "wsd:shape=cosine,cooldown_frac=0.1"):
        schedule = _schedule(spec)
        curve = predict(mpl_fit, schedule)
        assert curve.final_step == TOTAL and curve.peak_lr == pytest.approx(PEAK)
        expected = truth.loss(MPL, PEAK * schedule.multipliers(1, TOTAL + 1), curve.steps)
        np.testing.assert_allclose(curve.loss, expected, rtol=1e-3)
        low, high = curve.final_interval
        assert low <= curve.final_loss <= high and high - low < 0.01
        assert np.all(curve.low <= curve.high)
    # Another peak LR and length: the law is a function of the LR sequence, whatever made it.
    longer = _schedule("wsd:shape=linear,cooldown_frac=0.2", total=800)
    curve = predict(mpl_fit, longer, peak_lr=2e-3)
    expected = truth.loss(MPL, 2e-3 * longer.multipliers(1, 801), [800])
    assert curve.final_loss == pytest.approx(expected[0], rel=2e-3)


def test_tissue_fit_recovers_the_parameters_and_bootstrap_covers_them():
    curves = [
        _curve("tissue", TISSUE, spec, noise=5e-4, seed=i)
        for i, spec in enumerate(["constant", "wsd:shape=linear,cooldown_frac=0.3"])
    ]
    fit = fit_law(curves, "tissue", n_bootstrap=30, seed=0)
    low, high = np.percentile(fit.bootstrap, [0.5, 99.5], axis=0)
    for i, name in enumerate(fit.law.param_names):
        assert fit.params[name] == pytest.approx(TISSUE[name], rel=0.02), name
        assert low[i] <= TISSUE[name] <= high[i], name
    # Same seed, same replicates.
    again = fit_law(curves, "tissue", n_bootstrap=30, seed=0)
    np.testing.assert_array_equal(again.bootstrap, fit.bootstrap)


def test_predict_lrs_without_bootstrap_has_no_interval():
    curves = [_curve("tissue", TISSUE, s) for s in ("constant", "wsd:cooldown_frac=0.2")]
    fit = fit_law(curves, "tissue", n_bootstrap=0)
    curve = predict_lrs(fit, np.full(100, PEAK), steps=[50, 100])
    assert curve.low is None and curve.final_interval is None
    assert curve.final_loss == pytest.approx(3.0 + 0.8 * (100 * PEAK) ** -0.5, rel=1e-4)


# --- schedule search ----------------------------------------------------------------------------


def test_search_finds_the_best_cooldown_of_the_law(mpl_fit):
    fractions = (0.1, 0.2, 0.4, 0.6, 0.8)
    shapes = ("linear", "1-sqrt", "cosine")
    ranked = search_cooldown(mpl_fit, 1000, fractions=fractions, shapes=shapes)
    assert len(ranked) == 15
    losses = [c.final_loss for c in ranked]
    assert losses == sorted(losses)
    best = ranked[0]
    # The winner is what brute-force evaluation of the fitted law says...
    brute = {
        (shape, frac): predict(
            mpl_fit, _schedule(f"wsd:shape={shape},cooldown_frac={frac}", 1000), steps=[1000]
        ).final_loss
        for shape in shapes
        for frac in fractions
    }
    assert min(brute.values()) == pytest.approx(best.final_loss, rel=1e-12)
    assert brute[(best.shape, best.cooldown_frac)] == best.final_loss
    # ... and beats a constant LR and the paper's cosine to 10% by a clear margin.
    constant = predict(mpl_fit, _schedule("constant", 1000), steps=[1000]).final_loss
    cosine = predict(mpl_fit, _schedule("cosine", 1000), steps=[1000]).final_loss
    assert best.final_loss < cosine < constant
    assert best.cooldown_start + best.cooldown_steps == 1000
    assert best.schedule.cooldown_start_step == best.cooldown_start


def test_search_with_intervals_and_bad_budget(mpl_fit):
    ranked = search_cooldown(
        mpl_fit, 500, fractions=(0.2,), shapes=("linear",), with_intervals=True
    )
    low, high = ranked[0].interval
    assert low <= ranked[0].final_loss <= high
    with pytest.raises(CooldownError, match=r"^total_steps: must be an integer >= 2"):
        search_cooldown(mpl_fit, 1)


def test_search_leaves_out_cooldowns_that_would_start_in_the_warmup(mpl_fit):
    ranked = search_cooldown(mpl_fit, 100, warmup_steps=30, fractions=(0.2, 0.7, 0.9))
    assert {c.cooldown_steps for c in ranked} == {20, 70}
    with pytest.raises(CooldownError, match=r"^fractions: every cooldown length would start"):
        search_cooldown(mpl_fit, 100, warmup_steps=30, fractions=(0.8, 0.9))


def test_a_branch_stitched_to_its_parent_counts_the_shared_points_once():
    constant = _curve("mpl", MPL, "constant", noise=1e-3, seed=3)
    wsd = _curve("mpl", MPL, "wsd:shape=linear,cooldown_frac=0.3", noise=1e-3, seed=4)
    # The branch as read_run_curve gives it: the parent's observations up to the branch step.
    shared = wsd.steps <= 280
    stitched = LossCurve(
        "branch",
        wsd.lrs,
        wsd.steps,
        np.where(shared, constant.losses, wsd.losses),
        schedule=wsd.schedule,
    )
    own = LossCurve("own", wsd.lrs, wsd.steps[~shared], wsd.losses[~shared])
    fit = fit_law([constant, stitched], "mpl", n_bootstrap=0)
    assert fit.n_points == 38 + 12  # steps 30..400 of the constant run, 290..400 of the branch
    alone = fit_law([constant, own], "mpl", n_bootstrap=0)
    assert fit.params == pytest.approx(alone.params, rel=1e-6)
    # Equal losses on a different LR path are two observations, not a repeat.
    twin = LossCurve("twin", wsd.lrs * 1.01, wsd.steps, stitched.losses)
    assert fit_law([constant, twin], "mpl", n_bootstrap=0).n_points == 76


# --- bad input ---------------------------------------------------------------------------------


def test_too_short_names_the_points_needed():
    curves = [
        _curve("mpl", MPL, "constant", every=100),
        _curve("mpl", MPL, "wsd:cooldown_frac=0.5", every=100),
    ]
    with pytest.raises(CooldownError) as info:
        fit_law(curves, "mpl")
    assert str(info.value) == (
        "curves too short to fit: the mpl law (7 parameters) needs at least 14 observed points "
        "after the warmup, got 6 (constant: 4, wsd:cooldown_frac=0.5: 2); log the loss more "
        "often or train longer"
    )  # the cooldown's points at steps 100 and 200 repeat the constant run's: counted once


def test_fit_from_step_leaves_early_points_out():
    curves = [_curve("tissue", TISSUE, s) for s in ("constant", "wsd:cooldown_frac=0.2")]
    fit = fit_law(curves, "tissue", n_bootstrap=0, fit_from_step=200)
    # Steps 200, 210, ..., 400 of the constant run; of the noiseless cooldown, whose points up to
    # its start (step 320) repeat the constant run's, steps 330..400.
    assert fit.n_points == 21 + 8
    assert fit.params["C"] == pytest.approx(TISSUE["C"], rel=1e-4)
    with pytest.raises(CooldownError, match=r"points after the warmup and from step 390, got 4 "):
        fit_law(curves, "tissue", fit_from_step=390)
    with pytest.raises(CooldownError, match=r"^fit_from_step: must be an integer step >= 0"):
        fit_law(curves, "tissue", fit_from_step=-5)


def test_no_annealing_information():
    curves = [_curve("tissue", TISSUE, "constant"), _curve("tissue", TISSUE, "constant", seed=1)]
    curves[1] = LossCurve("constant-2", curves[1].lrs, curves[1].steps, curves[1].losses)
    with pytest.raises(CooldownError, match=r"^schedules with no annealing information: "):
        fit_law(curves, "tissue")
    # A cooldown whose points all lie before the decay starts carries none either.
    wsd = _curve("tissue", TISSUE, "wsd:cooldown_frac=0.2")
    early = LossCurve("early", wsd.lrs, wsd.steps[:20], wsd.losses[:20])
    with pytest.raises(CooldownError, match=r"cannot be identified"):
        fit_law([curves[0], early], "tissue")


def test_different_models_are_refused():
    a = _curve("tissue", TISSUE, "constant", setup={"model.d_model": 48, "model.n_layers": 4})
    b = _curve(
        "tissue", TISSUE, "wsd:cooldown_frac=0.2", setup={"model.d_model": 80, "model.n_layers": 4}
    )
    with pytest.raises(CooldownError) as info:
        fit_law([a, b], "tissue")
    assert str(info.value).startswith(
        "runs of different models in one fit: constant and wsd:cooldown_frac=0.2 differ in "
        "model.d_model (48 vs 80)"
    )


def test_other_bad_arguments():
    curves = [_curve("tissue", TISSUE, s) for s in ("constant", "wsd:cooldown_frac=0.2")]
    with pytest.raises(CooldownError, match=r"^law: must be one of 'mpl', 'tissue'"):
        fit_law(curves, "power")
    with pytest.raises(CooldownError, match=r"^n_bootstrap: must be >= 0"):
        fit_law(curves, "tissue", n_bootstrap=-1)
    with pytest.raises(CooldownError, match=r"^curves: nothing to fit"):
        fit_law([], "tissue")
    with pytest.raises(CooldownError, match=r"^curves: the same curve is given twice \(constant\)"):
        fit_law([curves[0], curves[0]], "tissue")
    with pytest.raises(CooldownError, match=r"^peak_lr: must be a number > 0"):
        predict(fit_law(curves, "tissue", n_bootstrap=0), _schedule("constant"), peak_lr=-1.0)
