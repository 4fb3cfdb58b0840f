"""The pieces a study plan is made of: a size as planned, a node of the graph, and the cooldown
split of a budget. The planner (`cooldown.study.plan`) and every method
(`cooldown.study.methods`) build nodes from these. Torch-free: planning only counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cooldown.errors import CooldownError
from cooldown.flops import FLOP_CONVENTIONS
from cooldown.model_sizes import ModelConfig
from cooldown.schedules import cooldown_split

if TYPE_CHECKING:
    from cooldown.study.spec import StudySpec

__all__ = [
    "PlanNode",
    "SizeInfo",
    "budget_split",
    "lr_label",
    "make_node",
    "point_id",
    "trunk_point",
]


def lr_label(lr: float) -> str:
    return f"{lr:g}"


@dataclass(frozen=True)
class SizeInfo:
    """A size as planned: the model at the planning vocabulary and its budgets in steps."""

    name: str
    model: ModelConfig
    batch_size: int
    seq_len: int
    budgets: tuple[int, ...]  # steps, ascending
    params: int
    non_embedding_params: int
    flops_per_token: dict[str, int]

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.seq_len

    def flops(self, steps: int, convention: str) -> int:
        return steps * self.tokens_per_step * self.flops_per_token[convention]


@dataclass(frozen=True)
class PlanNode:
    """One node of the study graph. `steps` are the updates the node trains itself."""

    id: str
    kind: str  # "run" | "branch" | "average" | "prediction" | "shared"
    method: str  # "cosine" | "constant" (a trunk) | "cooldown" | "swa" | "cooldown-predicted"
    size: str
    lr: float
    seed: int
    steps: int
    total_steps: int  # length of the node's trajectory from step 0
    tokens_per_step: int
    compute: dict[str, int]  # FLOPs of `steps` under each convention
    parent: str | None = None
    parent_step: int | None = None
    budget_steps: int | None = None  # the budget this node is the point of (None: a trunk)
    incremental_steps: int = 0  # what this point adds to its method's cost (see the top)
    shape: str | None = None
    cooldown_steps: int | None = None
    branch_points: tuple[int, ...] = ()  # a trunk's permanent checkpoints
    reuses: str | None = None  # kind "shared": the other method's branch that is this point's run
    fit_on: tuple[str, ...] = ()  # kind "prediction": the nodes whose curves the law is fitted on

    @property
    def runnable(self) -> bool:
        return self.kind in ("run", "branch")

    @property
    def needs(self) -> tuple[str, ...]:
        """The nodes that must be done before this point has a result."""
        if self.kind == "shared":
            return (self.reuses or "",)
        if self.kind == "prediction":
            return self.fit_on
        if self.kind == "average":
            return (self.parent or "",)
        return (self.id,)

    @property
    def tokens(self) -> int:
        return self.steps * self.tokens_per_step

    @property
    def budget_tokens(self) -> int | None:
        return None if self.budget_steps is None else self.budget_steps * self.tokens_per_step

    def definition(self) -> dict[str, Any]:
        """What identifies the work this node does (compared against the recorded state)."""
        return {
            "kind": self.kind,
            "method": self.method,
            "size": self.size,
            "lr": self.lr,
            "seed": self.seed,
            "steps": self.steps,
            "total_steps": self.total_steps,
            "tokens_per_step": self.tokens_per_step,
            "parent": self.parent,
            "parent_step": self.parent_step,
            "shape": self.shape,
            "cooldown_steps": self.cooldown_steps,
            "branch_points": list(self.branch_points),
        }


def make_node(info: SizeInfo, steps: int, **kw: Any) -> PlanNode:
    """A node of size `info` that trains `steps` updates itself, with their compute."""
    compute = {c: info.flops(steps, c) for c in FLOP_CONVENTIONS}
    return PlanNode(
        size=info.name, steps=steps, tokens_per_step=info.tokens_per_step, compute=compute, **kw
    )


def point_id(
    method: str, info: SizeInfo, budget: int, lr: float, seed: int, shape: str | None = None
) -> str:
    """The id of `method`'s point of one size, budget (steps), shape, LR and seed."""
    shaped = f"-{shape}" if shape is not None else ""
    return f"{method}-{info.name}-{budget}{shaped}-lr{lr_label(lr)}-seed{seed}"


def trunk_point(
    info: SizeInfo, trunk: PlanNode, method: str, budget: int, steps: int, **kw: Any
) -> PlanNode:
    """`method`'s point of `budget` hanging off `trunk` (at its LR and seed), training `steps`
    updates itself; `kw`: the other PlanNode fields (its id by default from `point_id`)."""
    kw.setdefault("id", point_id(method, info, budget, trunk.lr, trunk.seed, kw.get("shape")))
    return make_node(
        info,
        steps,
        method=method,
        lr=trunk.lr,
        seed=trunk.seed,
        total_steps=budget,
        parent=trunk.id,
        budget_steps=budget,
        **kw,
    )


def budget_split(spec: StudySpec, info: SizeInfo, total: int, method: str) -> tuple[int, int]:
    """(branch step s, cooldown steps k) of a budget of `total` updates under `method`'s
    cooldown fraction (`cooldown.schedules.cooldown_split`), the branch point after the warmup."""
    settings = spec.methods.get(method)
    assert settings is not None
    s, k = cooldown_split(
        total, settings.fraction, field=f"methods.{method}.fraction", where=f" of size {info.name}"
    )
    if s < spec.warmup_steps:
        raise CooldownError(
            f"warmup_steps: warmup ({spec.warmup_steps} steps) ends after the branch point "
            f"(step {s}) of the {total}-step budget of size {info.name}"
        )
    return s, k
