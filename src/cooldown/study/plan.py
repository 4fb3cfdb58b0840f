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
from cooldown.model_sizes import ModelConfig, non_embedding_param_count, param_count
from cooldown.schedules import cooldown_split
from cooldown.study.spec import StudySpec, plan_vocab_size

# Methods whose cost includes (a prefix of) the constant-LR trunk.
TRUNK_METHODS: tuple[str, ...] = ("cooldown", "swa", "cooldown-predicted")
# Parameters of each loss-curve law of `cooldown.predict` (kept here so that planning does not
# import scipy): a fit needs two observed points per parameter (`cooldown.predict.min_points`).
LAW_PARAMETERS: dict[str, int] = {"mpl": 7, "tissue": 4}


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
        methods = spec.methods
        method_settings: dict[str, Any] = {}
        if node.method == "cosine" and methods.cosine is not None:
            method_settings = {"final_lr_frac": methods.cosine.final_lr_frac}
        elif node.method == "cooldown" and methods.cooldown is not None:
            cooldown = methods.cooldown
            method_settings = {"final_lr_frac": cooldown.final_lr_frac, "power": cooldown.power}
        elif node.method == "cooldown-predicted":
            method_settings = {"final_lr_frac": 0.0, "power": None}
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


def _node(info: SizeInfo, steps: int, **kw: Any) -> PlanNode:
    compute = {c: info.flops(steps, c) for c in FLOP_CONVENTIONS}
    return PlanNode(
        size=info.name, steps=steps, tokens_per_step=info.tokens_per_step, compute=compute, **kw
    )


def _cooldown_split(
    spec: StudySpec, info: SizeInfo, total: int, method: str = "cooldown"
) -> tuple[int, int]:
    """(branch step s, cooldown steps k) of a budget of `total` updates under `method`'s
    cooldown fraction."""
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


def build_plan(spec: StudySpec) -> Plan:
    """The graph of runs, branches and read-offs the study needs, with each node's compute."""
    vocab = plan_vocab_size(spec)
    infos = {s.name: _size_info(spec, i, vocab) for i, s in enumerate(spec.sizes)}
    methods = spec.methods
    nodes: list[PlanNode] = []
    for info in infos.values():
        if methods.cosine is not None and spec.warmup_steps >= info.budgets[0]:
            raise CooldownError(
                f"warmup_steps: warmup ({spec.warmup_steps} steps) leaves no steps for the "
                f"cosine decay of the {info.budgets[0]}-step budget of size {info.name}"
            )
        if methods.swa is not None:
            interval = spec.eval_interval or 1
            bad = [t for t in info.budgets if t % interval]
            if bad:
                raise CooldownError(
                    f"train.eval_interval: {interval} does not divide the {bad[0]}-step budget "
                    f"of size {info.name}; methods.swa reads the trunk's evaluation there"
                )
        for seed in spec.seeds:
            if methods.cosine is not None:
                for lr in methods.cosine.lr:
                    for t in info.budgets:
                        nodes.append(
                            _node(
                                info,
                                t,
                                id=f"cosine-{info.name}-{t}-lr{lr_label(lr)}-seed{seed}",
                                kind="run",
                                method="cosine",
                                lr=lr,
                                seed=seed,
                                total_steps=t,
                                budget_steps=t,
                                incremental_steps=t,
                            )
                        )
            for lr in methods.trunk_lrs():
                nodes += _trunk_and_children(spec, info, lr, seed)
    _check_ids(nodes)
    return Plan(spec=spec, vocab_size=vocab, sizes=infos, nodes=nodes)


def _trunk_and_children(spec: StudySpec, info: SizeInfo, lr: float, seed: int) -> list[PlanNode]:
    methods = spec.methods
    cooldown = methods.cooldown if methods.cooldown and lr in methods.cooldown.lr else None
    swa = lr in methods.swa_lrs()
    predicted = lr in methods.predicted_lrs()
    splits = [_cooldown_split(spec, info, t) for t in info.budgets] if cooldown else []
    branch_points = tuple(s for s, _ in splits)
    if predicted:
        # Only the measured budgets branch off the trunk; the others are predicted.
        branch_points += tuple(
            _cooldown_split(spec, info, t, "cooldown-predicted")[0]
            for t in _measured_budgets(spec, info)
        )
    trunk_steps = max([*branch_points, *(info.budgets if swa else ())])
    if trunk_steps < spec.warmup_steps:
        raise CooldownError(
            f"warmup_steps: warmup ({spec.warmup_steps} steps) is longer than the trunk "
            f"({trunk_steps} steps) of size {info.name}"
        )
    tag = f"{info.name}-lr{lr_label(lr)}-seed{seed}"
    trunk = _node(
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
    if cooldown is not None:
        for shape in cooldown.shapes:
            previous = 0
            for t, (s, k) in zip(info.budgets, splits, strict=True):
                out.append(
                    _node(
                        info,
                        k,
                        id=f"cooldown-{info.name}-{t}-{shape}-lr{lr_label(lr)}-seed{seed}",
                        kind="branch",
                        method="cooldown",
                        lr=lr,
                        seed=seed,
                        total_steps=t,
                        parent=trunk.id,
                        parent_step=s,
                        budget_steps=t,
                        incremental_steps=k + s - previous,
                        shape=shape,
                        cooldown_steps=k,
                    )
                )
                previous = s
    if swa:
        previous = 0
        for t in info.budgets:
            out.append(
                _node(
                    info,
                    0,
                    id=f"swa-{info.name}-{t}-lr{lr_label(lr)}-seed{seed}",
                    kind="average",
                    method="swa",
                    lr=lr,
                    seed=seed,
                    total_steps=t,
                    parent=trunk.id,
                    parent_step=t,
                    budget_steps=t,
                    incremental_steps=t - previous,
                )
            )
            previous = t
    if predicted:
        out += _predicted_points(spec, info, trunk, lr, seed)
        _check_fit_points(spec, info, trunk_steps)
    return out


def _check_fit_points(spec: StudySpec, info: SizeInfo, trunk_steps: int) -> None:
    """Refuse a plan whose trunk and measured branches will not log enough evaluations for the
    law to be fitted (found out at planning rather than after the runs)."""
    predicted = spec.methods.cooldown_predicted
    interval = spec.eval_interval
    assert predicted is not None and interval is not None  # the spec requires both
    # The laws are fitted on the points after the LR peaks (the warmup's end) and from_step on.
    first = max(spec.warmup_steps + 1, 2, predicted.from_step or 0)

    def evaluations(start: int, end: int) -> int:
        # The trainer evaluates every `interval` steps and at a run's last step.
        steps = set(range(interval, end + 1, interval)) | {end}
        return sum(1 for t in steps if t > start and t >= first)

    count = evaluations(0, trunk_steps)
    for t in _measured_budgets(spec, info):
        s, _ = _cooldown_split(spec, info, t, "cooldown-predicted")
        count += evaluations(s, t)
    need = 2 * LAW_PARAMETERS[predicted.law]
    if count < need:
        raise CooldownError(
            f"train.eval_interval: the trunk and measured branches of size {info.name} log "
            f"{count} evaluations from step {first} on (every {interval} steps); "
            f"methods.cooldown-predicted's {predicted.law} law needs at least {need} to be "
            "fitted: evaluate more often or lower from_step"
        )


def _measured_budgets(spec: StudySpec, info: SizeInfo) -> tuple[int, ...]:
    """The budgets the predicted method runs: the largest, and with measured = 2 the smallest."""
    predicted = spec.methods.cooldown_predicted
    assert predicted is not None
    return (info.budgets[0], info.budgets[-1]) if predicted.measured == 2 else (info.budgets[-1],)


def _reused_branch_id(spec: StudySpec, info: SizeInfo, lr: float, seed: int, t: int) -> str | None:
    """The `cooldown` method's branch that is the same run as the predicted method's measured
    branch of budget `t`, if the study has it."""
    cooldown, predicted = spec.methods.cooldown, spec.methods.cooldown_predicted
    assert predicted is not None
    same = (
        cooldown is not None
        and lr in cooldown.lr
        and predicted.shape in cooldown.shapes
        and cooldown.fraction == predicted.fraction
        and cooldown.final_lr_frac == 0.0
        and (predicted.shape != "power" or cooldown.power is None)
    )
    if not same:
        return None
    return f"cooldown-{info.name}-{t}-{predicted.shape}-lr{lr_label(lr)}-seed{seed}"


def _predicted_points(
    spec: StudySpec, info: SizeInfo, trunk: PlanNode, lr: float, seed: int
) -> list[PlanNode]:
    """The predicted method's points of one trunk: a branch (or a shared one) per measured budget,
    a prediction per other budget."""
    predicted = spec.methods.cooldown_predicted
    assert predicted is not None
    measured = _measured_budgets(spec, info)
    ids = {
        t: f"cooldown-predicted-{info.name}-{t}-{predicted.shape}-lr{lr_label(lr)}-seed{seed}"
        for t in info.budgets
    }
    runs = {t: _reused_branch_id(spec, info, lr, seed, t) or ids[t] for t in measured}
    fit_on = (trunk.id, *(runs[t] for t in measured))
    out = []
    previous = 0
    for t in info.budgets:
        s, k = _cooldown_split(spec, info, t, "cooldown-predicted")
        common = dict(
            id=ids[t],
            method="cooldown-predicted",
            lr=lr,
            seed=seed,
            total_steps=t,
            parent=trunk.id,
            parent_step=s,
            budget_steps=t,
            shape=predicted.shape,
            cooldown_steps=k,
        )
        if t not in measured:
            out.append(_node(info, 0, kind="prediction", fit_on=fit_on, **common))
            continue
        # A measured point adds its cooldown and the trunk since the previous measured branch.
        incremental = k + s - previous
        previous = s
        if runs[t] != ids[t]:
            out.append(
                _node(
                    info, 0, kind="shared", reuses=runs[t], incremental_steps=incremental, **common
                )
            )
        else:
            out.append(_node(info, k, kind="branch", incremental_steps=incremental, **common))
    return out


def _check_ids(nodes: list[PlanNode]) -> None:
    seen: set[str] = set()
    for n in nodes:
        if n.id in seen:  # LRs that print alike (0.001 and 0.0010000001 are both "0.001")
            raise CooldownError(f"two study nodes would share the id {n.id!r}; rename a size")
        seen.add(n.id)
