"""The plan as text, and device-hours: what `cooldown study plan` prints.

For every node its tokens and compute under every FLOP convention; per size and method the compute
(the study's convention) and the device-hours; totals, and each method's cost against separate
cosine runs (and, when both are planned, what `cooldown-predicted` saves beyond `cooldown`).
Device-hours come from the tokens/s measured on the study's finished nodes (per size), else from a
given FLOP/s under the study's convention (`throughput_flops_per_s` or `--throughput-flops-per-s`),
else from the FLOP/s measured on other sizes; otherwise "n/a".
Torch-free.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median

from cooldown.errors import CooldownError
from cooldown.flops import FLOP_CONVENTIONS, describe_convention, format_flops
from cooldown.study.plan import Plan, build_plan
from cooldown.study.spec import load_study, study_dir_for
from cooldown.study.state import StudyState

# --- device-hours ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Throughput:
    """How fast a device trains: measured tokens/s per size (from finished nodes), else a given
    FLOP/s under the study's convention, else measured FLOP/s of other sizes."""

    convention: str
    flops_per_s: float | None = None
    tokens_per_s: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_measurements(
        cls, plan: Plan, tokens_per_s: dict[str, list[float]], flops_per_s: float | None
    ) -> Throughput:
        measured = {s: median(v) for s, v in tokens_per_s.items() if v and s in plan.sizes}
        return cls(plan.convention, flops_per_s, measured)

    def _flops_rate(self, plan: Plan) -> float | None:
        if self.flops_per_s is not None:
            return self.flops_per_s
        rates = [
            tok_s * plan.sizes[s].flops_per_token[self.convention]
            for s, tok_s in self.tokens_per_s.items()
        ]
        return median(rates) if rates else None

    def seconds(self, plan: Plan, size: str, steps: int) -> float | None:
        info = plan.sizes[size]
        if size in self.tokens_per_s:
            return steps * info.tokens_per_step / self.tokens_per_s[size]
        rate = self._flops_rate(plan)
        return None if rate is None else info.flops(steps, self.convention) / rate

    def describe(self, plan: Plan) -> str:
        parts = []
        if self.tokens_per_s:
            parts.append(
                "measured "
                + ", ".join(f"{s} {v:,.0f} tokens/s" for s, v in self.tokens_per_s.items())
            )
        if self.flops_per_s is not None:
            parts.append(f"given {self.flops_per_s:.3g} FLOP/s [{self.convention}]")
        elif self.tokens_per_s and len(self.tokens_per_s) < len(plan.sizes):
            rate = self._flops_rate(plan)
            parts.append(f"other sizes at the measured {rate:.3g} FLOP/s [{self.convention}]")
        return "; ".join(parts) if parts else "none (set throughput_flops_per_s)"

    def method_hours(self, plan: Plan, method: str, size: str | None = None) -> float | None:
        sizes = [size] if size is not None else list(plan.sizes)
        total = 0.0
        for s in sizes:
            sec = self.seconds(plan, s, plan.method_steps(method, s))
            if sec is None:
                return None
            total += sec
        return total / 3600.0


# --- printing -------------------------------------------------------------------------------------


def _fmt_e(value: float) -> str:
    return f"{value:.3e}"


def _table(header: list[str], rows: list[list[str]], right: set[int]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(r: list[str]) -> str:
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def format_plan(plan: Plan, throughput: Throughput | None = None, nodes: bool = True) -> str:
    """The plan as text: the node table, each size's cost per method, totals and savings."""
    conv = plan.convention
    throughput = throughput or Throughput(conv, plan.spec.throughput_flops_per_s)
    others = [c for c in FLOP_CONVENTIONS if c != conv]
    out = [
        f"study {plan.spec.name or ''}".rstrip()
        + f": {len(plan.runnable())} training nodes, {len(plan.points())} budget points, "
        f"methods {', '.join(plan.methods)}",
        f"compute: FLOPs [{conv}] = {describe_convention(conv)}",
        f"parameters and FLOPs counted at vocabulary {plan.vocab_size}; "
        f"device throughput: {throughput.describe(plan)}",
        "",
    ]
    if nodes:
        header = ["node", "kind", "budget", "parent@step", "steps", "tokens", f"FLOPs [{conv}]"]
        header += [f"FLOPs [{c}]" for c in others]
        rows = []
        for n in plan.nodes:
            parent = f"{n.parent}@{n.parent_step}" if n.parent else "-"
            rows.append(
                [
                    n.id,
                    n.kind,
                    "-" if n.budget_steps is None else f"{n.budget_steps:,} steps",
                    parent,
                    f"{n.steps:,}",
                    f"{n.tokens:.3e}",
                    _fmt_e(n.compute[conv]),
                    *(_fmt_e(n.compute[c]) for c in others),
                ]
            )
        out += [_table(header, rows, right={2, 4, 5, 6, 7, 8}), ""]
    out += [_cost_table(plan, throughput), ""]
    out += _totals(plan, throughput)
    return "\n".join(out)


def _cost_table(plan: Plan, throughput: Throughput) -> str:
    conv = plan.convention
    header = ["size", "params", "budgets (steps)", "tokens/step"]
    for m in plan.methods:
        header += [f"{m} FLOPs [{conv}]", f"{m} device-h"]
    if "cosine" in plan.methods:
        header += [f"{m}/cosine" for m in plan.methods if m != "cosine"]
    beyond = _BEYOND if set(_BEYOND) <= set(plan.methods) else None
    if beyond is not None:
        header.append("/".join(beyond))
    rows = []
    for name, info in plan.sizes.items():
        row = [
            name,
            f"{info.params / 1e6:.2f}M",
            "/".join(f"{b:,}" for b in info.budgets),
            f"{info.tokens_per_step:,}",
        ]
        for m in plan.methods:
            hours = throughput.method_hours(plan, m, name)
            row += [_fmt_e(plan.method_compute(m, conv, name)), _hours(hours)]
        for m in plan.methods:
            ratio = plan.savings(m, conv, name)
            if ratio is not None:
                row.append(f"{ratio:.3f}")
        if beyond is not None:
            row.append(f"{plan.relative_compute(*beyond, conv, name):.3f}")
        rows.append(row)
    return _table(header, rows, right=set(range(1, len(header))))


# The predicted method against the paper's: what predicting instead of branching saves.
_BEYOND = ("cooldown-predicted", "cooldown")


def _hours(hours: float | None) -> str:
    return "n/a" if hours is None else f"{hours:,.1f} h"


def _totals(plan: Plan, throughput: Throughput) -> list[str]:
    conv = plan.convention
    lines = ["totals (a shared trunk counted once per size, LR and seed):"]
    width = max(len(m) for m in plan.methods)
    for m in plan.methods:
        compute = plan.method_compute(m, conv)
        tokens = plan.method_tokens(m)
        hours = _hours(throughput.method_hours(plan, m))
        others = ", ".join(format_flops(plan.method_compute(m, c), c) for c in FLOP_CONVENTIONS)
        lines.append(
            f"  {m:<{width}} {format_flops(compute, conv)}, {tokens:.3e} tokens, {hours} "
            f"(every convention: {others})"
        )
    study_hours = 0.0
    for n in plan.runnable():
        sec = throughput.seconds(plan, n.size, n.steps)
        study_hours = math.nan if sec is None else study_hours + sec / 3600.0
    hours = "n/a" if math.isnan(study_hours) else f"{study_hours:,.1f} h"
    lines.append(
        f"  whole study (every node once): {format_flops(plan.study_compute(conv), conv)}, {hours}"
    )
    for m in plan.methods:
        ratio = plan.savings(m, conv)
        if ratio is not None:
            lines.append(
                f"savings: {m} costs {ratio:.3f} x the cosine runs' compute "
                f"({1 - ratio:.1%} less) [{conv}]"
            )
    if set(_BEYOND) <= set(plan.methods):
        method, base = _BEYOND
        ratio = plan.relative_compute(method, base, conv)
        saved = plan.method_compute(base, conv) - plan.method_compute(method, conv)
        if ratio is not None:
            lines.append(
                f"savings beyond cooldown: {method} costs {ratio:.3f} x the cooldown method's "
                f"compute ({1 - ratio:.1%} less, {format_flops(saved, conv)} saved)"
            )
    return lines


def measured_tokens_per_s(study_dir: str | Path) -> dict[str, list[float]]:
    """Median tokens/s of each finished node in a study folder's state, per size (empty when the
    study has not run)."""
    if not (Path(study_dir) / "study.sqlite").exists():
        return {}
    out: dict[str, list[float]] = {}
    with StudyState(study_dir, create=False) as state:
        for node in state.nodes():
            rate = (node["result"] or {}).get("tokens_per_s")
            if node["state"] == "done" and rate:
                out.setdefault(node["size"], []).append(float(rate))
    return out


def plan_study(
    study_path: str | Path,
    *,
    out: str | Path | None = None,
    throughput_flops_per_s: float | None = None,
    show_nodes: bool = True,
) -> str:
    """`cooldown study plan`: the plan as text, with device-hours from the throughput measured on
    the study's finished nodes, else the given (or study.toml's) FLOP/s."""
    plan = build_plan(load_study(study_path))
    given = throughput_flops_per_s or plan.spec.throughput_flops_per_s
    if given is not None and not (math.isfinite(given) and given > 0):
        raise CooldownError(f"--throughput-flops-per-s must be > 0 (got {given})")
    measured = measured_tokens_per_s(study_dir_for(study_path, out))
    throughput = Throughput.from_measurements(plan, measured, given)
    return format_plan(plan, throughput, nodes=show_nodes)
