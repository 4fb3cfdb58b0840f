"""The paper's experiments (a)-(h) in miniature: which runs each needs, and what it measured.

`plan_sweep` lists the LR sweep that comes first; `best_lrs` reads it; `plan_tasks(preset,
lr_cos, lr_con)` then lists every other run (cosine baselines, constant runs, their
cooldown branches, schedule-free runs, the scaling sweep) at those LRs; `collect` reads the
finished runs and returns one JSON-ready dict per experiment, with the numbers and the paired
differences the claims are judged on. Losses are the final weights' loss on the paired validation
tokens (`cooldown.reproduce.evidence`) in nats/token; compute is training FLOPs under the
chinchilla convention (paper-facts section 4).
"""

from __future__ import annotations

from pathlib import Path

from cooldown.flops import training_flops
from cooldown.model_sizes import param_count
from cooldown.reproduce.evidence import Evidence
from cooldown.reproduce.plan import (
    RUNS,
    Task,
    branch_config,
    constant_config,
    cosine_config,
)
from cooldown.reproduce.presets import Preset
from cooldown.run_dir import RunDir
from cooldown.schedules import cooldown_split

CONVENTION = "chinchilla"


def _cool_start(total: int, frac: float) -> int:
    return cooldown_split(total, frac, field="cooldown_frac")[0]


def _branch_key(parent: str, step: int, k: int, shape: str) -> str:
    return f"{parent}-br/s{step}-{shape}-k{k}"


def cosine_key(budget: int, lr: float, seed: int) -> str:
    return f"a/cosine-{budget}-lr{lr:g}-seed{seed}"


def constant_key(budget: int, lr: float, seed: int) -> str:
    return f"a/constant-{budget}-lr{lr:g}-seed{seed}"


def sweep_trunk_key(lr: float) -> str:
    return f"sweep/constant-lr{lr:g}"


def sf_key(betas: tuple[float, float], lr: float) -> str:
    return f"e/schedule-free-b{betas[0]}-{betas[1]}-lr{lr:g}"


def _add_branches(tasks: list[Task], parent: Task, points, experiment: str):
    for step, k, shape in points:
        key = _branch_key(parent.key, step, k, shape)
        if any(t.key == key for t in tasks):
            continue
        cfg = branch_config(parent.config, RUNS / parent.key, step, k, shape)
        tasks.append(Task(key, experiment, cfg, parent.key, k, [parent.key]))


def plan_sweep(p: Preset) -> list[Task]:
    """The LR sweep of (a): at `p.lr_sweep_budget`, one cosine run and one constant run with its
    20% cooldown per LR of `p.lr_grid` (first seed). The cosine runs are named like the main runs,
    so the best one is reused by (a)."""
    b, s0 = p.lr_sweep_budget, p.seeds[0]
    start = _cool_start(b, p.cooldown_frac)
    tasks: list[Task] = []
    for lr in p.lr_grid:
        tasks.append(
            Task(cosine_key(b, lr, s0), "a-sweep", cosine_config(p, b, lr=lr, seed=s0), steps=b)
        )
        trunk = Task(
            sweep_trunk_key(lr),
            "a-sweep",
            constant_config(p, start, lr=lr, branch_at=[start], seed=s0),
            steps=start,
        )
        tasks.append(trunk)
        _add_branches(tasks, trunk, [(start, b - start, p.main_shape)], "a-sweep")
    return tasks


def sweep_branch_key(p: Preset, lr: float) -> str:
    b = p.lr_sweep_budget
    start = _cool_start(b, p.cooldown_frac)
    return _branch_key(sweep_trunk_key(lr), start, b - start, p.main_shape)


def merge_steps(p: Preset) -> list[int]:
    """The stable-phase checkpoints every constant run keeps for (j)'s merges: every
    `merge_every` steps over the main cooldown's window of the largest budget, to its end."""
    if not p.merge_every:
        return []
    big = p.budgets[-1]
    return list(range(_cool_start(big, p.cooldown_frac), big + 1, p.merge_every))


def plan_tasks(p: Preset, lr_cos: float, lr_con: float) -> list[Task]:
    """Every run of (a)-(h) at the LRs the sweep chose (cosine `lr_cos`, constant `lr_con`)."""
    tasks: list[Task] = []
    big, mid, s0 = p.budgets[-1], p.budgets[len(p.budgets) // 2], p.seeds[0]

    def add(task: Task) -> None:
        if all(t.key != task.key for t in tasks):
            tasks.append(task)

    for seed in p.seeds:
        first = seed == s0
        for b in p.budgets:
            swa = b == big
            cfg = cosine_config(p, b, lr=lr_cos, seed=seed, swa=swa)
            add(Task(cosine_key(b, lr_cos, seed), "a,d" if swa else "a", cfg, steps=b))
        # Every seed: the main cooldown at each budget, and the linear one at the largest (the
        # (b) pair is compared across seeds); the first seed also every other shape and length.
        points = [(_cool_start(b, p.cooldown_frac), b, p.main_shape) for b in p.budgets]
        points.append((_cool_start(big, p.cooldown_frac), big, "linear"))
        if first:
            points += [(_cool_start(big, p.cooldown_frac), big, s) for s in p.shapes]
            points += [(_cool_start(big, f), big, p.main_shape) for f in p.lengths]
        points = list(dict.fromkeys((s, b - s, shape) for s, b, shape in points))
        const = Task(
            constant_key(big, lr_con, seed),
            "a-d,f,j",
            constant_config(
                p,
                big,
                lr=lr_con,
                branch_at=[s for s, _, _ in points] + merge_steps(p),
                seed=seed,
                swa=True,
            ),
            steps=big,
        )
        add(const)
        _add_branches(tasks, const, points, "a-c")

    # (h): cosine runs at the constant run's peak LR, the LR a law fitted on that run knows
    # (the same folders as (a)'s when the sweep chose one LR for both).
    for b in p.budgets:
        cfg = cosine_config(p, b, lr=lr_con, seed=s0)
        add(Task(cosine_key(b, lr_con, s0), "h", cfg, steps=b))

    # (e) at the middle budget, against the cooldown of that budget.
    for betas in p.sf_betas:
        cfg = constant_config(p, mid, lr=lr_cos, branch_at=[], seed=s0)
        cfg["optim"].update(name="schedule-free", betas=list(betas))
        add(Task(sf_key(betas, lr_cos), "e", cfg, steps=mid))

    ratio = lr_con / lr_cos
    for size in p.scaling:
        model = size.model
        train = {"batch_size": size.batch_size} if size.batch_size else {}
        if p.scaling_eval_interval:
            interval = p.scaling_eval_interval
            train.update(eval_interval=interval, log_interval=interval)
        lr = size.lr or p.scaling_lr
        for b in size.budgets:
            cfg = cosine_config(p, b, lr=lr, model=model)
            cfg["train"].update(train)
            add(Task(f"g/{size.name}/cosine-{b}-lr{lr:g}", "g", cfg, steps=b))
        points = [(_cool_start(b, p.cooldown_frac), b) for b in size.budgets]
        const = Task(
            scaling_trunk_key(size.name, lr * ratio),
            "g",
            constant_config(
                p, points[-1][0], lr=lr * ratio, branch_at=[s for s, _ in points], model=model
            ),
            steps=points[-1][0],
        )
        const.config["train"].update(train)
        add(const)
        _add_branches(tasks, const, [(s, b - s, p.scaling_shape) for s, b in points], "g")
    return tasks


def scaling_trunk_key(size: str, lr: float) -> str:
    return f"g/{size}/constant-lr{lr:g}"


# --- reading finished runs --------------------------------------------------------------------


def curve(run_dir: Path) -> dict:
    """Logged (step, val_loss, lr) of a run, its parent's up to the branch point first."""
    run = RunDir(run_dir)
    rows = [(r["step"], r["val_loss"], r.get("lr")) for r in run.metrics() if "val_loss" in r]
    found = run.parent()
    if found is None:
        return {"rows": rows}
    parent, step = found
    head = [r for r in curve(parent.path)["rows"] if r[0] <= step]
    return {"rows": head + [r for r in rows if r[0] > step]}


def best_lrs(p: Preset, ev: Evidence) -> dict:
    """The sweep's losses per LR (with each mean's document interval) and each schedule's best LR
    (lowest mean loss on the paired validation tokens)."""
    b, s0 = p.lr_sweep_budget, p.seeds[0]
    out: dict = {"budget": b, "lrs": list(p.lr_grid)}
    for name, key in (
        ("cosine", lambda lr: cosine_key(b, lr, s0)),
        ("constant", lambda lr: sweep_branch_key(p, lr)),
    ):
        rows = [{"lr": lr, **ev.mean_interval(key(lr))} for lr in p.lr_grid]
        best = min(rows, key=lambda r: r["loss"])["lr"]
        for r in rows:  # each LR against the best, on the same documents (the paired interval)
            r["vs_best"] = ev.difference(key(best), key(r["lr"]))
        out[name] = rows
        out[f"best_{name}"] = best
    best = out["best_constant"]
    out["constant_vs_cosine_at_best"] = ev.difference(
        cosine_key(b, out["best_cosine"], s0), sweep_branch_key(p, best)
    )
    return out


def collect(p: Preset, runs_root: Path, ev: Evidence, lrs: dict) -> dict:
    """Every experiment's numbers (JSON-ready), from the finished runs of `plan_tasks`."""
    lr_cos, lr_con = lrs["best_cosine"], lrs["best_constant"]
    big, mid, s0 = p.budgets[-1], p.budgets[len(p.budgets) // 2], p.seeds[0]
    seeds = list(p.seeds)

    def const(seed: int) -> str:
        return constant_key(big, lr_con, seed)

    def br(seed: int, b: int, frac: float, shape: str) -> str:
        step = _cool_start(b, frac)
        return _branch_key(const(seed), step, b - step, shape)

    out: dict = {"sweep": lrs}
    rows = []
    for b in p.budgets:
        cos = [cosine_key(b, lr_cos, s) for s in seeds]
        cool = [br(s, b, p.cooldown_frac, p.main_shape) for s in seeds]
        rows.append(
            {
                "steps": b,
                "cosine": [ev.loss(k) for k in cos],
                "cooldown": [ev.loss(k) for k in cool],
                "difference": ev.difference(cos, cool),
            }
        )
    out["a"] = {
        "budgets": rows,
        "seeds": seeds,
        "lr_cosine": lr_cos,
        "lr_constant": lr_con,
        "constant_final": [ev.loss(const(s)) for s in seeds],
        "tokens_per_step": p.batch_size * p.seq_len,
    }
    main = br(s0, big, p.cooldown_frac, p.main_shape)
    out["b"] = {
        "shapes": {s: ev.loss(br(s0, big, p.cooldown_frac, s)) for s in p.shapes},
        "vs_main": {
            s: ev.difference(main, br(s0, big, p.cooldown_frac, s))
            for s in p.shapes
            if s != p.main_shape
        },
        "main_vs_linear": ev.difference(
            [br(s, big, p.cooldown_frac, "linear") for s in seeds],
            [br(s, big, p.cooldown_frac, p.main_shape) for s in seeds],
        ),
    }
    out["c"] = {
        "lengths": {str(f): ev.loss(br(s0, big, f, p.main_shape)) for f in p.lengths},
        "vs_main": {
            str(f): ev.difference(main, br(s0, big, f, p.main_shape))
            for f in p.lengths
            if f != p.cooldown_frac
        },
    }
    lawa = f"lawa{max(p.lawa_windows)}"
    trunks = [const(s) for s in seeds]
    cooled = [br(s, big, p.cooldown_frac, p.main_shape) for s in seeds]
    cos_big = cosine_key(big, lr_cos, s0)
    out["d"] = {
        "constant": ev.loss(const(s0)),
        "constant_swa": ev.loss(const(s0), "swa"),
        "constant_lawa": ev.loss(const(s0), lawa),
        "cosine": ev.loss(cos_big),
        "cosine_swa": ev.loss(cos_big, "swa"),
        "cosine_lawa": ev.loss(cos_big, lawa),
        "cooldown": ev.loss(main),
        "swa_vs_constant": ev.difference(trunks, trunks, b_weights="swa"),
        "swa_vs_cooldown": ev.difference(cooled, trunks, b_weights="swa"),
        "lawa_name": lawa,
        "swa_window": p.swa_window,
    }
    sf = {f"{b1},{b2}": sf_key((b1, b2), lr_cos) for b1, b2 in p.sf_betas}
    sf_loss = {k: ev.loss(v) for k, v in sf.items()}
    best_sf = min(sf_loss, key=sf_loss.get)
    cool_mid = br(s0, mid, p.cooldown_frac, p.main_shape)
    keys = list(sf)
    out["e"] = {
        "budget": mid,
        "lr": lr_cos,
        "schedule_free": sf_loss,
        "betas": ev.difference(sf[keys[0]], sf[keys[-1]]),
        "cooldown": ev.loss(cool_mid),
        "cosine": ev.loss(cosine_key(mid, lr_cos, s0)),
        "best_schedule_free": best_sf,
        "cooldown_vs_sf": ev.difference(sf[best_sf], cool_mid),
    }
    out["curves"] = {
        "cosine": curve(runs_root / cos_big),
        "constant": curve(runs_root / const(s0)),
        "cooldown": curve(runs_root / main),
        **{f"schedule-free {k}": curve(runs_root / v) for k, v in sf.items()},
    }
    out["g"] = collect_scaling(p, runs_root, ev, lr_con / lr_cos)
    return out


def collect_scaling(p: Preset, r: Path, ev: Evidence, ratio: float) -> dict:
    points = []
    compute = {"cosine": 0.0, "cooldown": 0.0}
    pairs: tuple[list[str], list[str]] = ([], [])
    for size in p.scaling:
        lr = size.lr or p.scaling_lr
        trunk = scaling_trunk_key(size.name, lr * ratio)
        trunk_dir = RunDir(r / trunk)
        cfg = trunk_dir.config
        vocab = trunk_dir.manifest().get("vocab_size") or cfg.model.vocab_size
        model = cfg.model.with_vocab(int(vocab)) if vocab else cfg.model
        n = param_count(model)
        tps = cfg.train.tokens_per_step

        def flops(steps, model=model, tps=tps):
            return training_flops(model, p.seq_len, steps * tps, CONVENTION)

        compute["cooldown"] += flops(cfg.total_steps)
        for b in size.budgets:
            step = _cool_start(b, p.cooldown_frac)
            branch = _branch_key(trunk, step, b - step, p.scaling_shape)
            cosine = f"g/{size.name}/cosine-{b}-lr{lr:g}"
            compute["cosine"] += flops(b)
            compute["cooldown"] += flops(b - step)
            pairs[0].append(cosine)
            pairs[1].append(branch)
            for method, key in (("cosine", cosine), ("cooldown", branch)):
                points.append(
                    {
                        "size": size.name,
                        "params": n,
                        "steps": b,
                        "tokens": b * tps,
                        "compute_flops": flops(b),
                        "method": method,
                        "loss": ev.loss(key),
                        "run": key,
                    }
                )
    return {
        "points": points,
        "compute_by_method": compute,
        "flop_convention": CONVENTION,
        # cooldown - cosine over the grid's points, resampling points and documents.
        "cooldown_vs_cosine": ev.difference(*pairs, pairs="points"),
    }
