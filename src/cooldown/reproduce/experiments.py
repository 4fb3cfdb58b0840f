"""The paper's experiments (a)-(h) in miniature: which runs each needs, and what it measured.

`plan_tasks(preset, runs_root)` lists every run (cosine baselines, constant runs, their cooldown
branches, schedule-free runs, the scaling sweep); `collect(preset, runs_root)` reads the finished
runs and returns one JSON-ready dict per experiment, with the numbers the claims check. Losses are
final full-validation losses in nats/token; compute is training FLOPs under the chinchilla
convention (paper-facts section 4).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cooldown.reproduce.plan import (
    Task,
    branch_config,
    constant_config,
    cosine_config,
)
from cooldown.reproduce.presets import Preset
from cooldown.schedules import cooldown_split

CONVENTION = "chinchilla"


def _cool_start(total: int, frac: float) -> int:
    return cooldown_split(total, frac, field="cooldown_frac")[0]


def _branch_key(parent: str, step: int, k: int, shape: str) -> str:
    return f"{parent}-br/s{step}-{shape}-k{k}"


def plan_tasks(p: Preset, runs_root: Path) -> list[Task]:
    tasks: list[Task] = []
    big = p.budgets[-1]

    def add_branches(parent: Task, points: list[tuple[int, int, str]], experiment: str):
        for step, k, shape in points:
            key = _branch_key(parent.key, step, k, shape)
            if any(t.key == key for t in tasks):
                continue
            cfg = branch_config(parent.config, runs_root / parent.key, step, k, shape)
            tasks.append(Task(key, experiment, cfg, parent.key, k, [parent.key]))

    for seed in p.seeds:
        first = seed == p.seeds[0]
        for b in p.budgets:
            swa = first and b == big
            cfg = cosine_config(p, b, lr=p.lr_cosine, seed=seed, swa=swa)
            tasks.append(Task(f"a/cosine-{b}-seed{seed}", "a,d" if swa else "a", cfg, steps=b))
        points = [(_cool_start(b, p.cooldown_frac), b, p.main_shape) for b in p.budgets]
        if first:
            points += [(_cool_start(big, p.cooldown_frac), big, s) for s in p.shapes]
            points += [(_cool_start(big, f), big, p.main_shape) for f in p.lengths]
        points = [(s, b - s, shape) for s, b, shape in points]
        const = Task(
            f"a/constant-{big}-seed{seed}",
            "a-d,f" if first else "a",
            constant_config(
                p, big, lr=p.lr_constant, branch_at=[s for s, _, _ in points], seed=seed, swa=first
            ),
            steps=big,
        )
        tasks.append(const)
        add_branches(const, points, "a-c")

    # (h): cosine runs at the constant run's peak LR, the LR a law fitted on that run knows
    # (the (a) cosine runs use twice it, which the laws have no term for).
    for b in p.budgets:
        cfg = cosine_config(p, b, lr=p.lr_constant, seed=p.seeds[0])
        tasks.append(Task(f"h/cosine-{b}", "h", cfg, steps=b))

    for b1, b2 in p.sf_betas:
        cfg = constant_config(p, big, lr=p.lr_cosine, branch_at=[], seed=p.seeds[0])
        cfg["optim"].update(name="schedule-free", betas=[b1, b2])
        tasks.append(Task(f"e/schedule-free-b{b1}-{b2}", "e", cfg, steps=big))

    for size in p.scaling:
        model = size.model
        train = {"batch_size": size.batch_size} if size.batch_size else {}
        if p.scaling_eval_interval:
            interval = p.scaling_eval_interval
            train.update(eval_interval=interval, log_interval=interval)
        for b in size.budgets:
            cfg = cosine_config(p, b, lr=size.lr or p.scaling_lr, model=model)
            cfg["train"].update(train)
            tasks.append(Task(f"g/{size.name}/cosine-{b}", "g", cfg, steps=b))
        points = [(_cool_start(b, p.cooldown_frac), b) for b in size.budgets]
        const = Task(
            f"g/{size.name}/constant",
            "g",
            constant_config(
                p,
                points[-1][0],
                lr=(size.lr or p.scaling_lr) / 2,
                branch_at=[s for s, _ in points],
                model=model,
            ),
            steps=points[-1][0],
        )
        const.config["train"].update(train)
        tasks.append(const)
        add_branches(const, [(s, b - s, p.scaling_shape) for s, b in points], "g")
    return tasks


# --- reading finished runs --------------------------------------------------------------------


def manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())


def final_loss(run_dir: Path, which: str = "") -> float:
    value = manifest(run_dir).get(f"final_val_loss{'_' + which if which else ''}")
    return float(value) if value is not None else float("nan")


def curve(run_dir: Path) -> dict:
    """Logged (step, val_loss, lr) of a run, its parent's up to the branch point first."""
    from cooldown.metrics import read_metrics

    rows = [r for r in read_metrics(run_dir / "metrics.jsonl") if "val_loss" in r]
    from cooldown.configio import read_toml

    cfg = read_toml(run_dir / "config.toml").get("parent") or {}
    parent_dir, step = cfg.get("run_dir"), cfg.get("step")
    if parent_dir:
        head = [r for r in curve(Path(parent_dir))["rows"] if r[0] <= step]
        rows = [r for r in rows if r["step"] > step]
        own = [(r["step"], r["val_loss"], r.get("lr")) for r in rows]
        return {"rows": head + own}
    return {"rows": [(r["step"], r["val_loss"], r.get("lr")) for r in rows]}


def _spread(values: list[float]) -> float:
    return float(max(values) - min(values)) if len(values) > 1 else float("nan")


def collect(p: Preset, runs_root: Path) -> dict:
    """Every experiment's numbers (JSON-ready), from the finished runs of `plan_tasks`."""
    r = runs_root
    big = p.budgets[-1]
    s0 = p.seeds[0]

    def const(seed):
        return r / f"a/constant-{big}-seed{seed}"

    def br(seed, b, frac, shape):
        step = _cool_start(b, frac)
        return r / _branch_key(f"a/constant-{big}-seed{seed}", step, b - step, shape)

    out: dict = {}
    rows = []
    for b in p.budgets:
        cos = [final_loss(r / f"a/cosine-{b}-seed{s}") for s in p.seeds]
        cool = [final_loss(br(s, b, p.cooldown_frac, p.main_shape)) for s in p.seeds]
        rows.append(
            {
                "steps": b,
                "cosine": cos,
                "cooldown": cool,
                "difference": [c - k for c, k in zip(cool, cos, strict=True)],
            }
        )
    # The ablations all end at the largest budget: its seed spread is their noise.
    spreads = [_spread(rows[-1][k]) for k in ("cosine", "cooldown")]
    noise = float(np.nanmax(spreads)) if len(p.seeds) > 1 else float("nan")
    out["a"] = {
        "budgets": rows,
        "seeds": list(p.seeds),
        "noise": noise,
        "constant_final": [final_loss(const(s)) for s in p.seeds],
        "tokens_per_step": p.batch_size * p.seq_len,
    }
    out["b"] = {"shapes": {s: final_loss(br(s0, big, p.cooldown_frac, s)) for s in p.shapes}}
    out["c"] = {"lengths": {str(f): final_loss(br(s0, big, f, p.main_shape)) for f in p.lengths}}
    lawa = f"lawa{max(p.lawa_windows)}"
    out["d"] = {
        "constant": final_loss(const(s0)),
        "constant_swa": final_loss(const(s0), "swa"),
        "constant_lawa": final_loss(const(s0), lawa),
        "cosine": final_loss(r / f"a/cosine-{big}-seed{s0}"),
        "cosine_swa": final_loss(r / f"a/cosine-{big}-seed{s0}", "swa"),
        "cosine_lawa": final_loss(r / f"a/cosine-{big}-seed{s0}", lawa),
        "cooldown": final_loss(br(s0, big, p.cooldown_frac, p.main_shape)),
        "lawa_name": lawa,
        "swa_window": p.swa_window,
    }
    out["e"] = {
        "schedule_free": {
            f"{b1},{b2}": final_loss(r / f"e/schedule-free-b{b1}-{b2}") for b1, b2 in p.sf_betas
        },
        "cooldown": out["d"]["cooldown"],
        "cosine": out["d"]["cosine"],
    }
    out["curves"] = {
        "cosine": curve(r / f"a/cosine-{big}-seed{s0}"),
        "constant": curve(const(s0)),
        "cooldown": curve(br(s0, big, p.cooldown_frac, p.main_shape)),
        **{
            f"schedule-free {k}": curve(r / f"e/schedule-free-b{k.replace(',', '-')}")
            for k in out["e"]["schedule_free"]
        },
    }
    out["g"] = collect_scaling(p, r)
    return out


def collect_scaling(p: Preset, r: Path) -> dict:
    from cooldown.config import load_run_config
    from cooldown.flops import training_flops
    from cooldown.model_sizes import param_count

    points = []
    compute = {"cosine": 0.0, "cooldown": 0.0}
    for size in p.scaling:
        const_dir = r / f"g/{size.name}/constant"
        cfg = load_run_config(const_dir / "config.toml")
        vocab = manifest(const_dir).get("vocab_size") or cfg.model.vocab_size
        model = cfg.model.with_vocab(int(vocab)) if vocab else cfg.model
        n = param_count(model)
        tps = cfg.train.tokens_per_step

        def flops(steps, model=model, tps=tps):
            return training_flops(model, p.seq_len, steps * tps, CONVENTION)

        compute["cooldown"] += flops(cfg.total_steps)
        for b in size.budgets:
            step = _cool_start(b, p.cooldown_frac)
            branch = r / _branch_key(f"g/{size.name}/constant", step, b - step, p.scaling_shape)
            compute["cosine"] += flops(b)
            compute["cooldown"] += flops(b - step)
            for method, d in (("cosine", r / f"g/{size.name}/cosine-{b}"), ("cooldown", branch)):
                points.append(
                    {
                        "size": size.name,
                        "params": n,
                        "steps": b,
                        "tokens": b * tps,
                        "compute_flops": flops(b),
                        "method": method,
                        "loss": final_loss(d),
                    }
                )
    return {"points": points, "compute_by_method": compute, "flop_convention": CONVENTION}
