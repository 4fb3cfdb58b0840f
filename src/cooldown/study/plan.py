"""The study graph and its compute: which runs and branches a sweep needs and what each costs.

For every size, LR and seed:

- `cosine`: one run from scratch per budget T (kind `run`): T updates.
- `cooldown`: ONE constant-LR trunk (kind `run`, method `constant`) to the last branch point, with a
  permanent checkpoint at every branch point, and per budget T and shape a branch (kind `branch`)
  from step s = T - k that cools down over k = round(F T) updates. The longest budget is itself a
  branch, so it costs what a WSD run with its own cooldown costs, and the whole method costs
  T_max + F (sum of the other budgets), as the paper counts it (paper-facts section 4).
- `swa`: the trunk's weight average read off at each budget (kind `average`): no training beyond
  running the trunk to the largest budget, which lengthens the trunk when the study has it.
- `cooldown-predicted`: the same trunk (to the largest budget's branch point) and real branches
  for the `measured` budgets only (the largest, and with measured = 2 the smallest); every other
  budget is a point of kind `prediction` (no training: its loss is predicted from the trunk's and
  the measured branches' curves, see `cooldown.study.predicted_points`). A measured branch that
  the `cooldown` method also has (same LR, shape and fraction, cooling to 0) is trained once: the
  predicted method's point is then of kind `shared`, naming that branch in `reuses`.

A node's compute is what it trains itself (a branch: its cooldown; an average: nothing), under
every FLOP convention (`cooldown.flops`). A method's cost counts a shared trunk once per size, LR
and seed, up to the furthest step that method needs. Each budget point also carries its
incremental steps: what it adds to its method's cost given the smaller budgets (a branch: its
cooldown plus the trunk segment since the previous branch point), so that the points of one
(size, method, shape, LR, seed) add up to what that method costs on its own.

Torch-free: the planner only counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cooldown.errors import CooldownError
from cooldown.flops import FLOP_CONVENTIONS, training_flops_per_token
from cooldown.model_sizes import non_embedding_param_count, param_count
from cooldown.study.methods import LAW_PARAMETERS, REGISTRY, TRUNK_METHODS, StudyMethod
from cooldown.study.plan_nodes import PlanNode, SizeInfo, lr_label, make_node
from cooldown.study.spec import StudySpec, plan_vocab_size

__all__ = ["LAW_PARAMETERS", "TRUNK_METHODS", "Plan", "PlanNode", "SizeInfo", "build_plan"]


@dataclass
class Plan:
    spec: StudySpec
    vocab_size: int
    sizes: dict[str, SizeInfo]
    nodes: list[PlanNode]
    by_id: dict[str, PlanNode] = field(init=False)

    def __post_init__(self) -> None:
        self.by_id = {n.id: n for n in self.nodes}

    @property
    def convention(self) -> str:
        return self.spec.flop_convention

    @property
    def methods(self) -> list[str]:
        return self.spec.methods.names

    def runnable(self) -> list[PlanNode]:
        return [n for n in self.nodes if n.runnable]

    def definition(self, node: PlanNode) -> dict[str, Any]:
        """The node's structure plus every study setting its run config is built from, so that
        a changed study.toml cannot leave finished nodes that were trained differently."""
        spec = self.spec
        method = REGISTRY.get(node.method)  # None for a trunk: its settings are the study's
        method_settings = method.method_settings(spec) if method is not None else {}
        return {
            **node.definition(),
            "model": spec.sizes[list(self.sizes).index(node.size)].model.model_dump(mode="json"),
            "model_vocab_size": spec.model_vocab_size,
            "data": spec.data.model_dump(mode="json"),
            "optim": spec.optim,
            "train": spec.train,
            "averaging": spec.averaging,
            "warmup_steps": spec.warmup_steps,
            "flop_convention": spec.flop_convention,
            "method_settings": method_settings,
        }

    def points(self) -> list[PlanNode]:
        """The budget points (one per size, budget, method, shape, LR, seed)."""
        return [n for n in self.nodes if n.budget_steps is not None]

    def method_steps(self, method: str, size: str | None = None) -> int:
        """Updates `method` trains (a shared trunk counted once per size, LR and seed; a branch
        that two methods share counted in each method's cost)."""
        total = 0
        for n in self.nodes:
            if size is not None and n.size != size:
                continue
            if n.method == method and n.runnable:
                total += n.steps
            elif n.method == method and n.kind == "shared":
                total += n.cooldown_steps or 0  # the reused branch trains it
            elif n.method == "constant" and method in TRUNK_METHODS:
                total += self._trunk_prefix(n, method)
        return total

    def _trunk_prefix(self, trunk: PlanNode, method: str) -> int:
        children = [c for c in self.nodes if c.parent == trunk.id and c.method == method]
        return max((c.parent_step or 0 for c in children), default=0)

    def method_compute(self, method: str, convention: str, size: str | None = None) -> int:
        sizes = [size] if size is not None else list(self.sizes)
        return sum(self.sizes[s].flops(self.method_steps(method, s), convention) for s in sizes)

    def method_tokens(self, method: str, size: str | None = None) -> int:
        sizes = [size] if size is not None else list(self.sizes)
        return sum(self.method_steps(method, s) * self.sizes[s].tokens_per_step for s in sizes)

    def study_compute(self, convention: str, size: str | None = None) -> int:
        """What the whole graph trains (every runnable node once)."""
        return sum(n.compute[convention] for n in self.runnable() if size is None or n.size == size)

    def savings(self, method: str, convention: str, size: str | None = None) -> float | None:
        """Compute of `method` over compute of separate cosine runs (None without cosine)."""
        return self.relative_compute(method, "cosine", convention, size)

    def relative_compute(
        self, method: str, base: str, convention: str, size: str | None = None
    ) -> float | None:
        """Compute of `method` over compute of `base` (None when either is not planned)."""
        if base not in self.methods or method not in self.methods or method == base:
            return None
        base_compute = self.method_compute(base, convention, size)
        return (
            self.method_compute(method, convention, size) / base_compute if base_compute else None
        )


# --- building the graph ---------------------------------------------------------------------------


def _size_info(spec: StudySpec, index: int, vocab: int) -> SizeInfo:
    size = spec.sizes[index]
    model = size.model.with_vocab(vocab)
    model = model.model_copy(update={"max_seq_len": max(model.max_seq_len, spec.seq_len)})
    batch = size.batch_size or spec.batch_size
    tokens_per_step = batch * spec.seq_len
    params = param_count(model)
    budgets = size.budgets(spec.budgets)
    where = f"sizes.{index} ({size.name})"
    if budgets.steps is not None:
        steps = [int(s) for s in budgets.steps]
    else:
        if budgets.tokens is not None:
            tokens = list(budgets.tokens)
        else:
            n = size.budget_params or params
            tokens = [r * n for r in budgets.tokens_per_param or []]
        steps = []
        for t in tokens:
            s = round(t / tokens_per_step)
            if s < 1:
                raise CooldownError(
                    f"{where}: a budget of {t:.4g} tokens is less than one step "
                    f"({tokens_per_step} tokens = batch_size {batch} x seq_len {spec.seq_len})"
                )
            steps.append(s)
    if len(set(steps)) != len(steps):
        raise CooldownError(
            f"{where}: two budgets come to the same number of steps ({sorted(steps)}); "
            "give distinct budgets"
        )
    per_token = {c: training_flops_per_token(model, spec.seq_len, c) for c in FLOP_CONVENTIONS}
    return SizeInfo(
        name=size.name,
        model=model,
        batch_size=batch,
        seq_len=spec.seq_len,
        budgets=tuple(sorted(steps)),
        params=params,
        non_embedding_params=non_embedding_param_count(model),
        flops_per_token=per_token,
    )


def build_plan(spec: StudySpec) -> Plan:
    """The graph of runs, branches and read-offs the study needs, with each node's compute."""
    vocab = plan_vocab_size(spec)
    infos = {s.name: _size_info(spec, i, vocab) for i, s in enumerate(spec.sizes)}
    planned = [REGISTRY[name] for name in spec.methods.names]
    trunk_lrs: list[float] = []
    for method in planned:
        trunk_lrs += [lr for lr in method.trunk_lrs(spec.methods) if lr not in trunk_lrs]
    nodes: list[PlanNode] = []
    for info in infos.values():
        for method in planned:
            method.check_size(spec, info)
        for seed in spec.seeds:
            for method in planned:
                nodes += method.run_nodes(spec, info, seed)
            for lr in trunk_lrs:
                nodes += _trunk_and_children(spec, info, lr, seed, planned)
    _check_ids(nodes)
    return Plan(spec=spec, vocab_size=vocab, sizes=infos, nodes=nodes)


def _trunk_and_children(
    spec: StudySpec, info: SizeInfo, lr: float, seed: int, planned: list[StudyMethod]
) -> list[PlanNode]:
    """One constant-LR trunk and what every trunk method at this LR hangs off it."""
    on = [m for m in planned if lr in m.trunk_lrs(spec.methods)]
    branch_points = tuple(p for m in on for p in m.branch_points(spec, info))
    trunk_steps = max([*branch_points, *(m.trunk_end(spec, info) for m in on)])
    if trunk_steps < spec.warmup_steps:
        raise CooldownError(
            f"warmup_steps: warmup ({spec.warmup_steps} steps) is longer than the trunk "
            f"({trunk_steps} steps) of size {info.name}"
        )
    tag = f"{info.name}-lr{lr_label(lr)}-seed{seed}"
    trunk = make_node(
        info,
        trunk_steps,
        id=f"constant-{tag}",
        kind="run",
        method="constant",
        lr=lr,
        seed=seed,
        total_steps=trunk_steps,
        branch_points=tuple(sorted(set(branch_points))),
    )
    out = [trunk]
    for method in on:
        out += method.trunk_nodes(spec, info, trunk)
    return out


def _check_ids(nodes: list[PlanNode]) -> None:
    seen: set[str] = set()
    for n in nodes:
        if n.id in seen:  # LRs that print alike (0.001 and 0.0010000001 are both "0.001")
            raise CooldownError(f"two study nodes would share the id {n.id!r}; rename a size")
        seen.add(n.id)
