"""Does predicting cooldowns change the scaling law? `cooldown-predicted` against `cooldown`.

From the results rows (`cooldown.study.results`), fit the Chinchilla law (`cooldown.scaling`,
Approach 3) twice: on the `cooldown` method's points (every budget measured) and on
the `cooldown-predicted` method's points (most budgets predicted), for the predicted method's
shape and the learning rates both methods ran (per size, budget and seed the best of those LRs,
as `best_in_sweep` marks it). Compare the compute-optimal exponents a (N* ~ C^a) and b
(D* ~ C^b) (issue 8's target: within 0.02), with the measured fit's bootstrap interval of a (on a
small grid it is wider than the target, and the comparison says so), and what each method cost.

Compute is summed from the rows' `method_compute_flops` (what each point added to its method's
cost, a shared trunk once) under the study's FLOP convention, for ONE learning rate's ladder
(all sizes, budgets and seeds): a method's total divided by the number of LRs it swept, so that
methods with different LR sweeps compare like for like. Torch-free.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

from cooldown.errors import CooldownError
from cooldown.flops import format_flops

MEASURED, PREDICTED = "cooldown", "cooldown-predicted"
MIN_POINTS = 5  # the Chinchilla law's parameters: E, A, B, alpha, beta
TARGET = 0.02  # issue 8: the predicted fit's exponents within 0.02 of the measured fit's
MEASURED_BOOTSTRAP = 20


@dataclass(frozen=True)
class MethodFit:
    """One method's Chinchilla fit (or why there is none) and its compute for one LR."""

    method: str
    n_points: int
    n_predicted: int
    compute_flops: float  # one LR's ladder, under `convention`
    law: Any = None  # cooldown.scaling.ChinchillaLaw
    note: Optional[str] = None
    a_interval: Optional[tuple[float, float]] = None  # bootstrap 95% interval of a

    @property
    def params_exponent(self) -> float | None:
        return None if self.law is None else self.law.params_exponent

    @property
    def tokens_exponent(self) -> float | None:
        return None if self.law is None else self.law.tokens_exponent


@dataclass(frozen=True)
class PredictedComparison:
    shape: str
    lrs: tuple[float, ...]
    convention: str
    measured: MethodFit
    predicted: MethodFit
    cosine_compute_flops: float | None  # one LR's ladder of separate cosine runs

    @property
    def exponent_differences(self) -> tuple[float, float] | None:
        """(a, b) of the predicted fit minus those of the measured fit."""
        m, p = self.measured, self.predicted
        if m.law is None or p.law is None:
            return None
        return p.params_exponent - m.params_exponent, p.tokens_exponent - m.tokens_exponent

    @property
    def saved_beyond_cooldown(self) -> float:
        """FLOPs (`convention`) the predicted method saves against the cooldown method."""
        return self.measured.compute_flops - self.predicted.compute_flops

    @property
    def saved_vs_cosine(self) -> float | None:
        if self.cosine_compute_flops is None:
            return None
        return self.cosine_compute_flops - self.predicted.compute_flops

    def lines(self) -> list[str]:
        conv = self.convention
        lrs = ", ".join(f"{lr:g}" for lr in self.lrs)
        out = [
            f"{PREDICTED} vs {MEASURED} (shape {self.shape}, lr {lrs}): Chinchilla fits of the "
            "final val loss (nats/token) over N parameters and D tokens"
        ]
        for fit in (self.measured, self.predicted):
            what = f"{fit.n_points} points, {fit.n_predicted} predicted"
            if fit.law is None:
                out.append(f"  {fit.method:<18} {what}: no fit ({fit.note})")
            else:
                ci = ""
                if fit.a_interval is not None:
                    ci = (
                        f" (95% bootstrap interval {fit.a_interval[0]:.3f}-{fit.a_interval[1]:.3f})"
                    )
                out.append(
                    f"  {fit.method:<18} {what}: a (N* ~ C^a) {fit.params_exponent:.3f}{ci}, "
                    f"b (D* ~ C^b) {fit.tokens_exponent:.3f}"
                )
        diff = self.exponent_differences
        if diff is not None:
            ok = "within" if max(abs(diff[0]), abs(diff[1])) <= TARGET else "NOT within"
            out.append(
                f"  exponents, predicted - measured: a {diff[0]:+.3f}, b {diff[1]:+.3f} "
                f"({ok} the target of {TARGET})"
            )
            ci = self.measured.a_interval
            if ci is not None and ci[1] - ci[0] > 2 * TARGET:
                out.append(
                    "  (the measured a is itself uncertain by more than the target on this grid: "
                    "more sizes, over a wider range, are needed to judge it)"
                )
        parts = [f"{MEASURED} {format_flops(self.measured.compute_flops, conv)}"]
        parts.append(f"{PREDICTED} {format_flops(self.predicted.compute_flops, conv)}")
        if self.cosine_compute_flops is not None:
            parts.append(f"cosine {format_flops(self.cosine_compute_flops, conv)}")
        out.append("  compute of one LR's ladder (all sizes, budgets, seeds): " + ", ".join(parts))
        saved = [_saving(self.saved_beyond_cooldown, self.measured.compute_flops, conv, MEASURED)]
        if self.saved_vs_cosine is not None and self.cosine_compute_flops:
            saved.append(_saving(self.saved_vs_cosine, self.cosine_compute_flops, conv, "cosine"))
        out.append(f"  {PREDICTED} saves " + "; ".join(saved))
        return out


def _saving(saved: float, base: float, conv: str, name: str) -> str:
    share = f" ({saved / base:.1%})" if base else ""
    return f"{format_flops(saved, conv)}{share} against {name}"


def _best_per_point(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    best: dict[tuple, dict[str, Any]] = {}
    for r in rows:
        key = (r["size"], r["budget_steps"], r["seed"])
        if key not in best or (r["final_val_loss"], r["lr"]) < (
            best[key]["final_val_loss"],
            best[key]["lr"],
        ):
            best[key] = r
    return list(best.values())


def _per_lr_compute(rows: list[dict[str, Any]]) -> float:
    lrs = {r["lr"] for r in rows}
    return sum(float(r["method_compute_flops"]) for r in rows) / len(lrs) if lrs else 0.0


def _fit(
    method: str, rows: list[dict[str, Any]], compute: float, n_bootstrap: int = 0
) -> MethodFit:
    from cooldown.scaling import fit_chinchilla

    points = _best_per_point(rows)
    n_predicted = sum(bool(r.get("predicted")) for r in points)
    common = {"method": method, "n_points": len(points), "n_predicted": n_predicted}
    if len(points) < MIN_POINTS:
        note = f"{len(points)} points; a Chinchilla fit needs at least {MIN_POINTS}"
        return MethodFit(**common, compute_flops=compute, note=note)
    try:
        fit = fit_chinchilla(
            [r["params"] for r in points],
            [r["tokens"] for r in points],
            [r["final_val_loss"] for r in points],
            n_bootstrap=n_bootstrap,
        )
    except CooldownError as e:
        return MethodFit(**common, compute_flops=compute, note=str(e))
    interval = fit.bootstrap.intervals["a"] if fit.bootstrap else None
    return MethodFit(**common, compute_flops=compute, law=fit.law, a_interval=interval)


def compare_predicted(rows: Sequence[dict[str, Any]]) -> PredictedComparison | None:
    """The two Chinchilla fits and the compute of each method (None unless the rows hold both
    `cooldown` and `cooldown-predicted` points; a fit that cannot be made carries its note)."""
    predicted = [r for r in rows if r["method"] == PREDICTED]
    if not predicted:
        return None
    shape = predicted[0]["shape"]
    measured = [r for r in rows if r["method"] == MEASURED and r["shape"] == shape]
    lrs = tuple(sorted({r["lr"] for r in predicted} & {r["lr"] for r in measured}))
    if not lrs:
        return None
    predicted = [r for r in predicted if r["lr"] in lrs]
    measured = [r for r in measured if r["lr"] in lrs]
    cosine = [r for r in rows if r["method"] == "cosine"]
    return PredictedComparison(
        shape=shape,
        lrs=lrs,
        convention=predicted[0]["flop_convention"],
        # The measured fit's bootstrap says whether this grid can judge a 0.02 difference at all.
        measured=_fit(
            MEASURED, measured, _per_lr_compute(measured), n_bootstrap=MEASURED_BOOTSTRAP
        ),
        predicted=_fit(PREDICTED, predicted, _per_lr_compute(predicted)),
        cosine_compute_flops=_per_lr_compute(cosine) if cosine else None,
    )


def comparison_lines(rows: Sequence[dict[str, Any]]) -> list[str]:
    """What `cooldown study results` prints about the predicted method (nothing without it)."""
    comparison = compare_predicted(rows)
    return [] if comparison is None else comparison.lines()
