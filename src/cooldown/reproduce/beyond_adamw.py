"""Beyond the paper: (i) the cooldown's shape and length under Muon, (j) checkpoint merging of the
stable phase in place of a cooldown.

(i) One constant-LR Muon run of the largest budget (`torch.optim.Muon` on the hidden matrices
with `adjust_lr_fn = "match_rms_adamw"`, Moonlight's rule that lets Muon take AdamW's LR and weight
decay, so it runs at the constant AdamW run's chosen peak LR without a sweep of its own; AdamW on
embeddings and norms), branched like (b) and (c): the main shape and linear at the main length,
the main shape at the shortest and longest lengths. One seed: intervals cover validation
documents only.

(j) Every seed's constant AdamW run keeps its checkpoints every `merge_every` steps over the last
`cooldown_frac` of the largest budget (the window the main cooldown anneals over), and each set is
merged (`cooldown.merge`: uniform, EMA, and WSM's decay-shaped weights of the main shape). At the
same final step the merges are compared with the real cooldown, with SWA and with the raw constant
weights, paired over documents and the seeds.
"""

from __future__ import annotations

from pathlib import Path

from cooldown.merge import merge
from cooldown.reproduce.evidence import Evidence
from cooldown.reproduce.experiments import (
    _add_branches,
    _branch_key,
    _cool_start,
    constant_key,
    merge_steps,
)
from cooldown.reproduce.plan import Task, constant_config
from cooldown.reproduce.presets import Preset
from cooldown.run_dir import RunDir

MUON = {"adjust_lr_fn": "match_rms_adamw"}


def merge_weightings(p: Preset) -> tuple[str, ...]:
    return ("uniform", "ema", f"decay:{p.main_shape}")


def muon_key(p: Preset, lr: float) -> str:
    return f"i/muon-constant-{p.budgets[-1]}-lr{lr:g}"


def _muon_points(p: Preset) -> list[tuple[float, str]]:
    lengths = (min(p.lengths), p.cooldown_frac, max(p.lengths))
    points = [(p.cooldown_frac, "linear")] + [(f, p.main_shape) for f in lengths]
    return list(dict.fromkeys(points))


def plan_muon(p: Preset, lr: float) -> list[Task]:
    """(i): the Muon constant run and its cooldown branches."""
    if not p.muon:
        return []
    big = p.budgets[-1]
    points = [(_cool_start(big, f), shape) for f, shape in _muon_points(p)]
    cfg = constant_config(p, big, lr=lr, branch_at=[s for s, _ in points], seed=p.seeds[0])
    cfg["optim"].update(name="muon", muon=dict(MUON))
    trunk = Task(muon_key(p, lr), "i", cfg, steps=big)
    tasks = [trunk]
    _add_branches(tasks, trunk, [(s, big - s, shape) for s, shape in points], "i")
    return tasks


def collect_muon(p: Preset, ev: Evidence, lr: float) -> dict | None:
    if not p.muon:
        return None
    big, trunk = p.budgets[-1], muon_key(p, lr)

    def br(frac: float, shape: str, parent: str = trunk) -> str:
        step = _cool_start(big, frac)
        return _branch_key(parent, step, big - step, shape)

    main = br(p.cooldown_frac, p.main_shape)
    adamw = br(p.cooldown_frac, p.main_shape, constant_key(big, lr, p.seeds[0]))
    lengths = [f for f, shape in _muon_points(p) if shape == p.main_shape]
    return {
        "lr": lr,
        "muon": MUON,
        "steps": big,
        "constant": ev.loss(trunk),
        "cooldown": ev.loss(main),
        "main_vs_linear": ev.difference(br(p.cooldown_frac, "linear"), main),
        "lengths": {str(f): ev.loss(br(f, p.main_shape)) for f in lengths},
        "vs_main": {
            str(f): ev.difference(main, br(f, p.main_shape))
            for f in lengths
            if f != p.cooldown_frac
        },
        "adamw_vs_muon": ev.difference(adamw, main),
    }


def collect_merges(p: Preset, runs_root: Path, ev: Evidence, lr: float) -> dict | None:
    """(j): merge each seed's stable checkpoints (once: a finished merge folder is reused) and
    compare at the largest budget's final step."""
    steps = merge_steps(p)
    if not steps:
        return None
    big = p.budgets[-1]
    trunks = [constant_key(big, lr, s) for s in p.seeds]
    if not all(RunDir(runs_root / t).has_checkpoint(s) for t in trunks for s in steps):
        return None  # a reproduction from before (j) kept no such checkpoints: no merges
    start = _cool_start(big, p.cooldown_frac)
    cooled = [_branch_key(t, start, big - start, p.main_shape) for t in trunks]
    merged: dict[str, list[str]] = {}
    for w in merge_weightings(p):
        merged[w] = []
        for trunk in trunks:
            key = f"{trunk}/merges/{w.replace(':', '-')}-s{steps[0]}-{steps[-1]}-n{len(steps)}"
            if not RunDir(runs_root / key).is_complete():
                merge(runs_root / trunk, steps, w, out=runs_root / key, overwrite=True)
            merged[w].append(key)
    return {
        "steps": steps,
        "seeds": list(p.seeds),
        "weightings": list(merged),
        "merged": {w: [ev.loss(k) for k in keys] for w, keys in merged.items()},
        "cooldown": [ev.loss(k) for k in cooled],
        "swa": [ev.loss(t, "swa") for t in trunks],
        "constant": [ev.loss(t) for t in trunks],
        "vs_cooldown": {w: ev.difference(cooled, keys) for w, keys in merged.items()},
        "vs_swa": {w: ev.difference(trunks, keys, a_weights="swa") for w, keys in merged.items()},
        "vs_constant": {w: ev.difference(trunks, keys) for w, keys in merged.items()},
    }
