"""What a study method is: its settings (a `[methods.NAME]` table) and what it adds to a study,
as hooks the planner and the run-config builder call. A method overrides the hooks it needs.

Two kinds of work exist: runs from scratch (`run_nodes`, each with its own `run_schedule`), and
children of the constant-LR trunk that every trunk method of a size, LR and seed shares
(`trunk_lrs`, `branch_points`, `trunk_end`, `trunk_nodes`; a branch's cooldown settings come from
`branch_cooldown`). Torch-free: planning only counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel

if TYPE_CHECKING:
    from cooldown.study.plan import Plan
    from cooldown.study.plan_nodes import PlanNode, SizeInfo
    from cooldown.study.spec import Methods, StudySpec

__all__ = ["NoResult", "PointLoss", "PointSources", "StudyMethod", "own_or_cooldown_lrs"]


class NoResult(Exception):
    """A point has no result yet: the runs it reads have not finished (the message says which)."""


@dataclass
class PointLoss:
    """A budget point's losses (nats/token) and what they were measured with."""

    loss: float  # the point's final_val_loss
    raw: float | None  # of the raw weights
    val_loss_eval: float | None  # the eval-batches estimate of the raw weights at the last step
    how: str  # "full" (a full validation pass) or "eval_batches"
    vocab: int  # the model's actual vocabulary
    averages: dict[str, float | None] = field(default_factory=dict)  # final loss per average
    extra: dict[str, Any] = field(default_factory=dict)  # the method's own columns


class PointSources(Protocol):
    """What the results collector has recorded, for the methods to read their points from."""

    def stored(self, node_id: str) -> dict[str, Any]: ...  # a done node's result, or NoResult
    def trunk_vocab(self, trunk_id: str, info: SizeInfo) -> int: ...
    def trunk_eval_rows(self, trunk_id: str) -> list[dict[str, Any]]: ...
    def prediction(self, point: PlanNode) -> Any: ...  # predicted_points.GroupPrediction


class StudyMethod:
    name: ClassVar[str]  # as in study.toml: [methods.NAME], and each of its nodes' `method`
    settings_model: ClassVar[type[BaseModel]]
    on_trunk: ClassVar[bool] = False  # its cost includes (a prefix of) the constant-LR trunk
    # Why its points need cooldown's own trainer (None: a trainer adapter can make them too).
    adapter_unsupported: ClassVar[str | None] = None

    def settings(self, spec: StudySpec) -> Any:
        """This method's `[methods.NAME]` settings (None when the study does not plan it)."""
        return spec.methods.get(self.name)

    def check_methods(self, methods: Methods) -> None:
        """Refuse (ValueError, naming the field) settings that need another method's table."""

    def check_spec(self, spec: StudySpec) -> None:
        """Refuse (ValueError, naming the field) a study whose other tables this method cannot
        work with."""

    def check_size(self, spec: StudySpec, info: SizeInfo) -> None:
        """Refuse, in one line, a size this method cannot plan."""

    def run_nodes(self, spec: StudySpec, info: SizeInfo, seed: int) -> list[PlanNode]:
        """Runs from scratch of one size and seed."""
        return []

    def run_schedule(self, spec: StudySpec, node: PlanNode) -> dict[str, Any]:
        """The `[schedule]` of one of this method's runs from scratch."""
        raise NotImplementedError(f"method {self.name} has no runs from scratch")

    def trunk_lrs(self, methods: Methods) -> list[float]:
        """LRs at which this method needs the constant-LR trunk."""
        return []

    def branch_points(self, spec: StudySpec, info: SizeInfo) -> tuple[int, ...]:
        """Trunk steps this method branches at (the trunk keeps their checkpoints)."""
        return ()

    def trunk_end(self, spec: StudySpec, info: SizeInfo) -> int:
        """The last trunk step this method reads besides its branch points (0: none)."""
        return 0

    def trunk_nodes(self, spec: StudySpec, info: SizeInfo, trunk: PlanNode) -> list[PlanNode]:
        """The nodes this method hangs off one trunk (its LR and seed are the trunk's)."""
        return []

    def branch_cooldown(self, spec: StudySpec) -> dict[str, Any]:
        """`final_lr_frac` and `power` of this method's branches."""
        raise NotImplementedError(f"method {self.name} has no branches")

    def point_loss(self, plan: Plan, point: PlanNode, sources: PointSources) -> PointLoss:
        """The final loss of a point that is a trained run (its own, or the branch it reuses):
        the full validation pass, or the last periodic evaluation without one."""
        info = plan.sizes[point.size]
        run_id = point.reuses or point.id
        result = sources.stored(run_id)
        manifest = result["manifest"]
        final_eval = [r for r in result["eval_rows"] if r["step"] == point.total_steps]
        val_loss_eval = final_eval[-1]["val_loss"] if final_eval else None
        raw, how = manifest.get("final_val_loss"), "full"
        if raw is None:  # train.final_full_eval = false: the last evaluation stands in
            raw, how = val_loss_eval, "eval_batches"
        if raw is None:
            raise NoResult(f"node {run_id} recorded no validation loss")
        averages = {
            k.removeprefix("final_val_loss_"): v
            for k, v in manifest.items()
            if k.startswith("final_val_loss_") and k != "final_val_loss_raw"
        }
        vocab = int(manifest.get("vocab_size") or info.model.vocab_size)
        return PointLoss(raw, raw, val_loss_eval, how, vocab, averages)

    def point_model(self, plan: Plan, point: PlanNode) -> tuple[str, int, str | None] | None:
        """(run id, step, weights) of the model a point stands for, whose downstream evaluations
        are its columns (weights None: every set evaluated); None when no model was trained."""
        return point.reuses or point.id, point.total_steps, None

    def method_settings(self, spec: StudySpec) -> dict[str, Any]:
        """The settings of this method that its nodes' run configs are built from: a change
        must not leave finished nodes that were trained otherwise."""
        return {}


def own_or_cooldown_lrs(methods: Methods, name: str) -> list[float]:
    """The LRs of method `name`: its own `lr`, else the cooldown method's (ValueError without
    either)."""
    own = methods.get(name)
    if own is None:
        return []
    if own.lr is not None:
        return list(own.lr)
    cooldown = methods.get("cooldown")
    if cooldown is None:
        raise ValueError(f"{name}.lr: missing (it defaults to the cooldown's, and there is none)")
    return list(cooldown.lr)
