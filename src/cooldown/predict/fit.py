"""Fitting a loss-curve law to one or more curves, with bootstrap intervals.

The recipe of Luo et al. (and of Hoffmann et al. for Chinchilla fits): minimise the SUM over all
observed points of Huber(delta = 1e-3) of the log-loss residual log L_hat - log L with L-BFGS-B,
from a grid of starts, keeping the best, then refining it with tight tolerances. Several curves
(e.g. a constant run and a cooldown) are fitted jointly: one parameter set for all of them.

Starts. Each law is linear in (L0, A, B or C) once its other parameters are fixed, so every grid
point of the nonlinear parameters gets its linear ones from a bounded least-squares solve (rows
weighted by 1 / loss, a first-order log residual); the best few grid points are then optimised in
all parameters. Internally the LR is measured in units of the largest peak LR of the fitted curves
(so every parameter is of order one) and positive scale parameters (A, B, C) are optimised as logs;
the reported parameters are in the true LR units.

Bounds: L0 in [0, max loss], alpha in [0.001, 5], and for the MPL beta in [0.001, 5] and gamma in
[0, 2] (published fits are near 0.6 for both). A constant run and one cooldown often leave beta,
gamma and C loosely determined (they trade off against each other); the bounds keep them where
the law's extrapolation to other schedules still means something.

Points used: the steps after the warmup (t > W, see `cooldown.predict.laws`) and at or after
`fit_from_step`: the laws describe training after the LR peaks, the step-0 loss has no LR area at
all, and very small models may spend their first steps in a plateau no power law follows.

Bootstrap: each replicate resamples every curve's points with replacement (stratified by curve,
so each curve keeps its number of points) and refits from the best fit. Intervals on predictions
are percentiles of the replicates' predictions. Consecutive points of a loss curve are correlated,
so this understates the uncertainty of extrapolations far from the data: read the intervals as a
lower bound.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import product
from typing import Optional

import numpy as np
from scipy.optimize import lsq_linear, minimize

from cooldown.errors import CooldownError
from cooldown.predict.curves import LossCurve, check_same_setup
from cooldown.predict.laws import Law, get_law, lr_drops, peak_step

__all__ = ["HUBER_DELTA", "LawFit", "fit_law", "min_points"]

HUBER_DELTA = 1e-3
# Drop steps per curve beyond which the MPL's double sum is evaluated on merged groups while
# fitting (see laws._MPLTerms); curves of a few thousand steps are always fitted exactly.
MAX_FIT_TERMS = 1024

# Grids of the nonlinear parameters (LR in units of the peak; S in steps at the peak LR).
_MPL_GRID = {
    "alpha": (0.25, 0.5, 1.0),
    "C": (0.003, 0.03, 0.3, 3.0),
    "beta": (0.3, 0.6, 1.2),
    "gamma": (0.3, 0.6, 1.0),
}
_TISSUE_ALPHAS = tuple(np.round(np.linspace(0.1, 2.0, 20), 3))
_N_REFINE = 3


def min_points(law: Law) -> int:
    """Points (after the warmup, over all curves) a fit of `law` needs: two per parameter."""
    return 2 * len(law.param_names)


@dataclass(frozen=True)
class LawFit:
    """A law fitted to curves: its parameters (true LR units) and bootstrap replicates."""

    law: Law
    params: dict[str, float]
    curve_names: tuple[str, ...]
    n_points: int
    objective: float  # sum of Huber(delta) of the log residuals at the best fit
    rms_log_residual: float
    starts: int  # grid starts tried
    bootstrap: np.ndarray = field(repr=False)  # (replicates, parameters), true LR units
    peak_lr: float = 0.0  # of the first curve: the default for predictions
    total_steps: int = 0
    warmup_steps: int = 0

    @property
    def theta(self) -> np.ndarray:
        return self.law.params_vector(self.params)

    def describe(self) -> str:
        values = ", ".join(f"{k} {v:.4g}" for k, v in self.params.items())
        return (
            f"{self.law.title} fitted on {len(self.curve_names)} curve(s), {self.n_points} points: "
            f"{values}; RMS log residual {self.rms_log_residual:.2e}"
        )


@dataclass
class _Problem:
    """The points of all curves and the objective in the optimiser's coordinates z."""

    law: Law
    terms: list
    losses: list[np.ndarray]
    lr_ref: float
    delta: float

    def __post_init__(self):
        self.log_y = [np.log(y) for y in self.losses]
        self.floor = [1e-3 * float(y.min()) for y in self.losses]
        self.log_params = _log_params(self.law)

    # z: the scaled parameters, with A, B, C as logs.
    def theta_of(self, z: np.ndarray) -> np.ndarray:
        theta = z.copy()
        theta[self.log_params] = np.exp(z[self.log_params])
        return theta

    def z_of(self, theta: np.ndarray) -> np.ndarray:
        z = theta.astype(np.float64).copy()
        z[self.log_params] = np.log(np.maximum(theta[self.log_params], 1e-12))
        return z

    def bounds(self) -> list[tuple[float, float]]:
        top = float(max(y.max() for y in self.losses))
        limits = {
            "L0": (0.0, top),
            "A": (-30.0, 30.0),
            "B": (-30.0, 30.0),
            "C": (-30.0, 30.0),
            "alpha": (1e-3, 5.0),
            "beta": (1e-3, 5.0),
            "gamma": (0.0, 2.0),
        }
        return [limits[p] for p in self.law.param_names]

    def residuals(self, theta: np.ndarray) -> list[np.ndarray]:
        out = []
        for terms, log_y, floor in zip(self.terms, self.log_y, self.floor, strict=True):
            value = terms.value(theta)
            out.append(_safe_log(value, floor)[0] - log_y)
        return out

    def objective(self, z: np.ndarray, weights: Optional[list[np.ndarray]] = None):
        theta = self.theta_of(z)
        total, grad = 0.0, np.zeros_like(z)
        for i, (terms, log_y, floor) in enumerate(
            zip(self.terms, self.log_y, self.floor, strict=True)
        ):
            value, jac = terms.value_and_jacobian(theta)
            log_value, dlog = _safe_log(value, floor)
            r = log_value - log_y
            h, dh = _huber(r, self.delta)
            if weights is not None:
                h, dh = h * weights[i], dh * weights[i]
            total += float(h.sum())
            grad += (dh * dlog) @ jac
        # dtheta/dz for the log parameters; the sum is scaled so a point's Huber term is O(1).
        grad[self.log_params] *= theta[self.log_params]
        scale = 1.0 / self.delta**2
        return total * scale, grad * scale


def _log_params(law: Law) -> np.ndarray:
    return np.array([i for i, p in enumerate(law.param_names) if p in ("A", "B", "C")], dtype=int)


def _safe_log(value: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray]:
    # Below `floor` the log continues as its tangent, so a bad trial point gives a large but finite
    # objective with a gradient pointing back, instead of NaN.
    ok = value > floor
    safe = np.where(ok, value, floor)
    log_value = np.where(ok, np.log(safe), np.log(floor) + (value - floor) / floor)
    return log_value, 1.0 / safe


def _huber(r: np.ndarray, delta: float) -> tuple[np.ndarray, np.ndarray]:
    a = np.abs(r)
    quad = a <= delta
    h = np.where(quad, 0.5 * r * r, delta * (a - 0.5 * delta))
    dh = np.where(quad, r, delta * np.sign(r))
    return h, dh


def _lbfgs(problem: _Problem, z0: np.ndarray, weights=None, tight: bool = False) -> tuple:
    # Bootstrap refits (weights given) start at the optimum and need less precision than the fit.
    ftol = 1e-15 if tight else 1e-9 if weights is not None else 1e-12
    result = minimize(
        problem.objective,
        z0,
        args=(weights,),
        jac=True,
        method="L-BFGS-B",
        bounds=problem.bounds(),
        options={
            "maxiter": 5000 if tight else 1000,
            "ftol": ftol,
            "gtol": 1e-10 if tight else 1e-8,
            "maxcor": 20,
        },
    )
    return result.x, float(result.fun)


# --- starts ------------------------------------------------------------------------------------


def _nonlinear_grid(law: Law) -> list[tuple[float, ...]]:
    if law.name == "mpl":
        g = _MPL_GRID
        return list(product(g["alpha"], g["C"], g["beta"], g["gamma"]))
    return [(a,) for a in _TISSUE_ALPHAS]


def _theta_from_grid(law: Law, nonlinear: tuple[float, ...], linear: np.ndarray) -> np.ndarray:
    l0, a, b = (max(float(v), 1e-10) for v in linear)
    if law.name == "mpl":
        alpha, c, beta, gamma = nonlinear
        return np.array([l0, a, alpha, b, c, beta, gamma])
    (alpha,) = nonlinear
    return np.array([l0, a, alpha, b])


def _grid_starts(problem: _Problem) -> tuple[list[np.ndarray], int]:
    """Every grid point with its least-squares linear parameters, best first (by their weighted
    sum of squares)."""
    y = np.concatenate(problem.losses)
    top = float(y.max())
    scored = []
    grid = _nonlinear_grid(problem.law)
    for nonlinear in grid:
        x1, x2 = zip(*(t.linear_basis(np.array(nonlinear)) for t in problem.terms), strict=True)
        design = np.column_stack([np.ones(y.size), np.concatenate(x1), -np.concatenate(x2)])
        solution = lsq_linear(
            design / y[:, None], np.ones(y.size), bounds=([0.0, 0.0, 0.0], [top, np.inf, np.inf])
        )
        theta = _theta_from_grid(problem.law, nonlinear, solution.x)
        z = np.clip(problem.z_of(theta), *np.array(problem.bounds()).T)
        if np.isfinite(solution.cost):
            scored.append((solution.cost, z))
    scored.sort(key=lambda item: item[0])
    return [z for _, z in scored], len(grid)


# --- the fit -----------------------------------------------------------------------------------


def _fit_points(curve: LossCurve, fit_from_step: int) -> tuple[np.ndarray, np.ndarray]:
    keep = (curve.steps > peak_step(curve.lrs)) & (curve.steps >= fit_from_step)
    return curve.steps[keep], curve.losses[keep]


def _shared_prefix(curve: LossCurve, earlier: LossCurve) -> int:
    """The last update up to which `curve` and `earlier` followed the same LRs (0: none)."""
    n = min(curve.lrs.size, earlier.lrs.size)
    differ = np.flatnonzero(curve.lrs[:n] != earlier.lrs[:n])
    return int(differ[0]) if differ.size else n


def _without_repeats(
    curves: Sequence[LossCurve], points: list[tuple[np.ndarray, np.ndarray]]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each observation once. A branch read with its parent's points up to the branch step (as
    `read_run_curve` stitches it) repeats the parent's observations there; fitted on both, the
    shared prefix would weigh two or three times as much as the cooldowns the fit is about. A
    point is a repeat when an earlier curve followed the same LRs up to it and logged the same
    loss at the same step."""
    out = []
    for i, (curve, (steps, losses)) in enumerate(zip(curves, points, strict=True)):
        keep = np.ones(steps.size, dtype=bool)
        for earlier in curves[:i]:
            shared = steps <= _shared_prefix(curve, earlier)
            seen = dict(zip(earlier.steps.tolist(), earlier.losses.tolist(), strict=True))
            repeat = [seen.get(int(t)) == y for t, y in zip(steps, losses, strict=True)]
            keep &= ~(shared & np.array(repeat, dtype=bool))
        out.append((steps[keep], losses[keep]))
    return out


def _check_fittable(
    law: Law, curves: Sequence[LossCurve], fit_from_step: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    if not curves:
        raise CooldownError("curves: nothing to fit (give at least one run or log)")
    names = [c.name for c in curves]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise CooldownError(f"curves: the same curve is given twice ({', '.join(dup)})")
    check_same_setup(curves)
    points = _without_repeats(curves, [_fit_points(c, fit_from_step) for c in curves])
    counts = [s.size for s, _ in points]
    need = min_points(law)
    if sum(counts) < need:
        per_curve = ", ".join(f"{c.name}: {n}" for c, n in zip(curves, counts, strict=True))
        since = f" and from step {fit_from_step}" if fit_from_step else ""
        raise CooldownError(
            f"curves too short to fit: the {law.name} law ({len(law.param_names)} parameters) "
            f"needs at least {need} observed points after the warmup{since}, got {sum(counts)} "
            f"({per_curve}); log the loss more often or train longer"
        )
    informative = False
    for curve, (steps, _) in zip(curves, points, strict=True):
        drops = np.flatnonzero(lr_drops(curve.lrs) > 0) + 1
        if drops.size and steps.size and steps.max() >= drops[0]:
            informative = True
    if not informative:
        raise CooldownError(
            "schedules with no annealing information: no fitted curve has an observed point "
            "after its LR decreases (all constant after warmup?), so the annealing term of the "
            f"{law.name} law cannot be identified; add a run with a cooldown or decay"
        )
    return points


def _single_threaded_blas():
    # L-BFGS-B's small dense algebra goes through BLAS; with OpenBLAS's thread pool on a busy
    # machine each of those tiny calls can cost milliseconds (a 10x slower fit). threadpoolctl is
    # optional: without it the fit is the same, only possibly slower.
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def fit_law(
    curves: Sequence[LossCurve],
    law: str | Law = "mpl",
    *,
    n_bootstrap: int = 50,
    seed: int = 0,
    decay: float = 0.999,
    huber_delta: float = HUBER_DELTA,
    max_terms: int | None = MAX_FIT_TERMS,
    fit_from_step: int = 0,
) -> LawFit:
    """Fit `law` ('mpl' or 'tissue', or a Law) jointly to `curves` (one shared parameter set).

    `n_bootstrap` replicates (0 for none) give the intervals of `predict`; `seed` makes them
    reproducible. `decay` is the annealing law's momentum lambda. Points before `fit_from_step`
    (and all warmup points) are left out of the fit.
    """
    law = get_law(law, decay) if isinstance(law, str) else law
    if isinstance(fit_from_step, bool) or not isinstance(fit_from_step, int) or fit_from_step < 0:
        raise CooldownError(f"fit_from_step: must be an integer step >= 0 (got {fit_from_step!r})")
    with _single_threaded_blas():
        return _fit(law, curves, n_bootstrap, seed, huber_delta, max_terms, fit_from_step)


def _fit(law, curves, n_bootstrap, seed, huber_delta, max_terms, fit_from_step) -> LawFit:
    if n_bootstrap < 0:
        raise CooldownError(f"n_bootstrap: must be >= 0 (got {n_bootstrap})")
    if not huber_delta > 0:
        raise CooldownError(f"huber_delta: must be > 0 (got {huber_delta})")
    curves = list(curves)
    points = _check_fittable(law, curves, fit_from_step)
    lr_ref = max(c.peak_lr for c in curves)
    problem = _Problem(
        law=law,
        terms=[
            law.terms(c.lrs / lr_ref, steps, max_terms)
            for c, (steps, _) in zip(curves, points, strict=True)
        ],
        losses=[y for _, y in points],
        lr_ref=lr_ref,
        delta=huber_delta,
    )
    starts, n_starts = _grid_starts(problem)
    if not starts:
        raise CooldownError("fit failed: no grid start gives finite losses")  # pragma: no cover
    refined = [_lbfgs(problem, z) for z in starts[:_N_REFINE]]
    z_best, _ = min(refined, key=lambda item: item[1])
    z_best, f_best = _lbfgs(problem, z_best, tight=True)
    theta_best = problem.theta_of(z_best)

    rng = np.random.default_rng(seed)
    replicates = []
    for _ in range(n_bootstrap):
        weights = [
            np.bincount(rng.integers(0, y.size, y.size), minlength=y.size).astype(np.float64)
            for y in problem.losses
        ]
        z_b, _ = _lbfgs(problem, z_best, weights=weights)
        replicates.append(law.from_scaled(problem.theta_of(z_b), lr_ref))

    residuals = np.concatenate(problem.residuals(theta_best))
    params = law.from_scaled(theta_best, lr_ref)
    first = curves[0]
    return LawFit(
        law=law,
        params={p: float(v) for p, v in zip(law.param_names, params, strict=True)},
        curve_names=tuple(c.name for c in curves),
        n_points=int(residuals.size),
        objective=f_best * huber_delta**2,
        rms_log_residual=float(np.sqrt(np.mean(residuals**2))),
        starts=n_starts,
        bootstrap=np.array(replicates).reshape(n_bootstrap, len(law.param_names)),
        peak_lr=float(first.peak_lr),
        total_steps=int(first.lrs.size),
        warmup_steps=int(first.warmup_steps),
    )
