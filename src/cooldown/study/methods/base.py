"""What a study method is: its settings (a `[methods.NAME]` table) and what it adds to a study,
as hooks the planner and the run-config builder call. A method overrides the hooks it needs.

Two kinds of work exist: runs from scratch (`run_nodes`, each with its own `run_schedule`), and
children of the constant-LR trunk that every trunk method of a size, LR and seed shares
(`trunk_lrs`, `branch_points`, `trunk_end`, `trunk_nodes`; a branch's cooldown settings come from
`branch_cooldown`). Torch-free: planning only counts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel

if TYPE_CHECKING:
    from cooldown.study.plan_nodes import PlanNode, SizeInfo
    from cooldown.study.spec import StudySpec

__all__ = ["StudyMethod"]


class StudyMethod:
    name: ClassVar[str]  # as in study.toml: [methods.NAME], and each of its nodes' `method`
    settings_model: ClassVar[type[BaseModel]]
    on_trunk: ClassVar[bool] = False  # its cost includes (a prefix of) the constant-LR trunk

    def settings(self, spec: StudySpec) -> Any:
        """This method's `[methods.NAME]` settings (None when the study does not plan it)."""
        return spec.methods.get(self.name)

    def check_size(self, spec: StudySpec, info: SizeInfo) -> None:
        """Refuse, in one line, a size this method cannot plan."""

    def run_nodes(self, spec: StudySpec, info: SizeInfo, seed: int) -> list[PlanNode]:
        """Runs from scratch of one size and seed."""
        return []

    def run_schedule(self, spec: StudySpec, node: PlanNode) -> dict[str, Any]:
        """The `[schedule]` of one of this method's runs from scratch."""
        raise NotImplementedError(f"method {self.name} has no runs from scratch")

    def trunk_lrs(self, spec: StudySpec) -> list[float]:
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

    def method_settings(self, spec: StudySpec) -> dict[str, Any]:
        """The settings of this method that its nodes' run configs are built from: a change
        must not leave finished nodes that were trained otherwise."""
        return {}
