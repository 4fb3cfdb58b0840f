"""`cooldown reproduce`: the paper's experiments (a)-(h) in miniature, with an HTML report.

    from cooldown.reproduce import reproduce
    result = reproduce("smoke", "out/reproduce-smoke")   # report.html, results.csv, claims.json

Resumable: every run is a run folder under OUT/runs that `train` resumes; the collected numbers
are cached in OUT/results.json (atomically), so a rerun of a finished reproduction only reads them.

Runs are trained by the study engine (`cooldown.reproduce.plan.run_tasks`), one process per run,
with its state in OUT/study.sqlite: the kill-and-resume story of `cooldown study run`.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import os
import platform
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cooldown.config import RunConfig
from cooldown.data import DataConfig, ensure_prepared
from cooldown.errors import CooldownError
from cooldown.fileio import atomic_write_json, atomic_write_text
from cooldown.flops import format_flops, training_flops
from cooldown.report.html import write_report
from cooldown.reproduce.analyses import (
    check_winner,
    interpolation,
    predicted_scaling,
    prediction,
    real_curves,
    scaling_fits,
    search_winner,
    winner_key,
)
from cooldown.reproduce.beyond_adamw import collect_merges, collect_muon, plan_muon
from cooldown.reproduce.claims import check_claims
from cooldown.reproduce.evidence import Evidence
from cooldown.reproduce.experiments import best_lrs, collect, constant_key, plan_sweep, plan_tasks
from cooldown.reproduce.plan import Task, run_tasks
from cooldown.reproduce.presets import PRESET_NAMES, Preset, get_preset

__all__ = ["PRESET_NAMES", "ReproduceResult", "plan_compute", "reproduce"]

# Version of results.json's layout: a reproduction written by an older layout is analysed again
# (its finished runs are reused) instead of being read.
RESULTS_FORMAT = 4

# Assumed sustained throughput for the paper preset's device-hours: bf16 on one H100 at 40% MFU.
ASSUMED_FLOPS_PER_S = 0.4 * 989e12


@dataclass
class ReproduceResult:
    out: Path
    claims: list[dict]
    report: Path | None
    wall_s: float


def plan_compute(p: Preset) -> dict:
    """FLOPs (chinchilla convention) of every planned run, by experiment, and device-hours."""
    vocab = 50257 if p.data.get("tokenizer") == "gpt2" else int(p.data.get("vocab_size", 512))
    by_exp: dict[str, float] = {}
    # Before the sweep the chosen LRs are unknown: plan with two different ones, the most runs
    # the reproduction can take (the same LR for both schedules shares the (h) cosine runs).
    lr_cos, lr_con = p.lr_grid[-1], p.lr_grid[0]
    tasks = plan_sweep(p)
    swept = {t.key for t in tasks}
    tasks += [t for t in plan_tasks(p, lr_cos, lr_con) if t.key not in swept]
    tasks += plan_muon(p, lr_con)
    for t in tasks:
        cfg = RunConfig.model_validate(t.config)
        model = cfg.model.with_vocab(vocab)
        flops = training_flops(model, p.seq_len, t.steps * cfg.train.tokens_per_step, "chinchilla")
        key = next((x for x in ("e", "g", "h", "i") if t.experiment == x), "a-f,j")
        by_exp[key] = by_exp.get(key, 0.0) + flops
        if t.key == constant_key(p.budgets[-1], lr_con, p.seeds[0]):
            # (h) also runs the searched cooldown: one more run of the largest budget.
            by_exp["h"] = by_exp.get("h", 0.0) + flops
    total = sum(by_exp.values())
    return {
        "flop_convention": "chinchilla",
        "by_experiment": by_exp,
        "total_flops": total,
        "assumed_flops_per_s": ASSUMED_FLOPS_PER_S,
        "device_hours": total / ASSUMED_FLOPS_PER_S / 3600,
    }


def _paper_missing(p: Preset) -> list[str]:
    missing = []
    if not torch.cuda.is_available():
        missing.append("a CUDA GPU (none visible to torch)")
    return missing


def reproduce(
    preset: str = "cpu",
    out: str | Path | None = None,
    *,
    data_cache: str | None = None,
    log: Callable[[str], None] = print,
) -> ReproduceResult:
    """Run (or resume, or just read) the reproduction `preset` into `out` (see module docstring)."""
    t0 = time.perf_counter()
    p = get_preset(preset)
    if data_cache is not None:
        # Absolute: the runs' processes work in the reproduction's folder.
        cache = str(Path(data_cache).expanduser().resolve())
        p = Preset(**{**p.__dict__, "data": {**p.data, "cache_dir": cache}})
    out = Path(out if out is not None else f"out/reproduce-{p.name}")
    plan = plan_compute(p)
    _announce(p, out, plan, log)
    cached = out / "results.json"
    if cached.is_file():
        stored = json.loads(cached.read_text())
        if stored.get("preset") == p.name and stored.get("format") == RESULTS_FORMAT:
            log("  all experiments already done: reading results.json")
            report = _write_outputs(p, out, stored, None, log)
            return _finish(out, stored["claims"], report, t0, log)
        log("  results.json is from another preset or cooldown version: analysing again")
    resumed = (out / "runs").is_dir()
    res, evaluation = _experiments(p, out, log)
    res["preset"] = p.name
    res["format"] = RESULTS_FORMAT
    res["compute_plan"] = plan
    res["provenance"] = _provenance(t0, resumed=resumed)
    report = _write_outputs(p, out, res, evaluation, log)
    atomic_write_json(cached, res)
    return _finish(out, res["claims"], report, t0, log)


def _announce(p: Preset, out: Path, plan: dict, log: Callable[[str], None]) -> None:
    """The planned compute; for the paper preset its GPU-hours, or what this machine lacks."""
    log(f"cooldown reproduce --preset {p.name} -> {out}")
    log(
        f"  planned compute: {format_flops(plan['total_flops'], 'chinchilla')} "
        f"({', '.join(f'{k} {v:.3g}' for k, v in plan['by_experiment'].items())} FLOPs, "
        "chinchilla convention)"
    )
    if p.name != "paper":
        return
    log(
        f"  about {plan['device_hours']:,.0f} GPU-hours at an assumed "
        f"{ASSUMED_FLOPS_PER_S / 1e12:.0f} TFLOP/s sustained (bf16 H100 at 40% MFU)"
    )
    missing = _paper_missing(p)
    if missing:
        raise CooldownError(
            "--preset paper: cannot run here: missing "
            + "; ".join(missing)
            + f"; it also needs {p.data['source']} (prepared with `cooldown data prepare`)"
        )


def _experiments(p: Preset, out: Path, log: Callable[[str], None]) -> tuple[dict, Any]:
    """Train what is not yet trained (the LR sweep, then every experiment at the chosen LRs,
    then the law's searched cooldown), analyse, and judge the claims; the results and the (h)
    evaluation the report draws."""
    runs = out / "runs"
    _prepare_data(p)
    ev = Evidence(p, runs)
    log(
        f"  (a) LR sweep at {p.lr_sweep_budget} steps, cosine and constant + "
        f"{p.cooldown_frac:.0%} cooldown at peak LRs {', '.join(f'{x:g}' for x in p.lr_grid)}"
    )
    run_tasks(plan_sweep(p), out, p, log)
    lrs = best_lrs(p, ev)
    log(f"  best peak LR: cosine {lrs['best_cosine']:g}, constant {lrs['best_constant']:g}")
    tasks = plan_tasks(p, lrs["best_cosine"], lrs["best_constant"])
    tasks += plan_muon(p, lrs["best_constant"])
    log(f"  experiments (a)-(j) at those LRs: {len(tasks)} runs")
    run_tasks(tasks, out, p, log)
    log("  collecting results; (f) interpolation, (g) Chinchilla fits, (h) loss prediction")
    res = collect(p, runs, ev, lrs)
    log("  (i) Muon's cooldowns; (j) merging the constant runs' stable checkpoints")
    res["i"] = collect_muon(p, ev, lrs["best_constant"])
    res["j"] = collect_merges(p, runs, ev, lrs["best_constant"])
    res["f"] = interpolation(p, runs, out / "interpolation", lrs)
    g = res["g"]
    res["g_predicted"] = predicted_scaling(p, runs, g, ev, lrs)
    g["compute_by_method"]["cooldown-predicted"] = res["g_predicted"]["compute"]
    res["g_fits"] = scaling_fits(p, g["points"] + res["g_predicted"]["points"])
    h = prediction(p, runs, lrs)
    evaluation = h.pop("_evaluation")
    top, winner_config, winner = search_winner(p, evaluation.fit, lrs["best_constant"])
    log(f"  (h) the law's best cooldown for {p.budgets[-1]} steps: {winner_key(top)}; running it")
    run_tasks([Task(winner_key(top), "h", winner_config, steps=p.budgets[-1])], out, p, log)
    h["search"] = check_winner(p, runs, top, lrs, winner)
    res["h"] = h
    log("  (h) on real GPU curves: the law on the Multi-Power Law paper's runs")
    res["real_curves"] = real_curves(p, out / "mpl")
    res["claims"] = check_claims(res, p)
    return res, evaluation


def _provenance(t0: float, resumed: bool) -> dict:
    """When, where and how long: what the README's claims table states beside the claims."""
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).date().isoformat(),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, torch {torch.__version__}",
        "wall_s": time.perf_counter() - t0,
        "resumed": resumed,
    }


def _prepare_data(p: Preset) -> None:
    ensure_prepared(DataConfig(**p.data), progress=False)


def _write_outputs(p: Preset, out: Path, res: dict, evaluation, log) -> Path:
    atomic_write_text(out / "results.csv", results_csv(res))
    atomic_write_json(
        out / "claims.json",
        {"preset": p.name, **res.get("provenance", {}), "claims": res["claims"]},
    )
    report = out / "report.html"
    if evaluation is not None or not report.is_file():
        write_report(p, res, out, evaluation)
    return report


def results_csv(res: dict) -> str:
    """One row per measured final loss: experiment, run, seed, steps, tokens, compute, loss."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        [
            "experiment",
            "run",
            "seed",
            "params",
            "steps",
            "tokens",
            "compute_flops",
            "flop_convention",
            "final_val_loss",
        ]
    )
    a = res["a"]
    sweep = res["sweep"]
    for name in ("cosine", "constant"):
        for r in sweep[name]:
            run = f"{name}-{sweep['budget']}-lr{r['lr']:g}"
            w.writerow(["a-sweep", run, a["seeds"][0], "", sweep["budget"], "", "", "", r["loss"]])
    for x in a["budgets"]:
        for i, s in enumerate(a["seeds"]):
            tok = x["steps"] * a["tokens_per_step"]
            w.writerow(
                ["a", f"cosine-{x['steps']}", s, "", x["steps"], tok, "", "", x["cosine"][i]]
            )
            w.writerow(
                ["a", f"cooldown-{x['steps']}", s, "", x["steps"], tok, "", "", x["cooldown"][i]]
            )
    for shape, v in res["b"]["shapes"].items():
        w.writerow(["b", f"shape-{shape}", a["seeds"][0], "", "", "", "", "", v])
    for f, v in res["c"]["lengths"].items():
        w.writerow(["c", f"length-{f}", a["seeds"][0], "", "", "", "", "", v])
    for k in ("constant", "constant_swa", "constant_lawa", "cosine", "cosine_swa", "cosine_lawa"):
        w.writerow(["d", k, a["seeds"][0], "", "", "", "", "", res["d"][k]])
    for k, v in res["e"]["schedule_free"].items():
        w.writerow(["e", f"schedule-free-{k}", a["seeds"][0], "", "", "", "", "", v])
    for al, v in zip(res["f"]["alphas"], res["f"]["val_loss"], strict=True):
        w.writerow(["f", f"alpha-{al:.3f}", a["seeds"][0], "", "", "", "", "", v])
    for x in res["g"]["points"] + res["g_predicted"]["points"]:
        w.writerow(
            [
                "g",
                f"{x['method']}-{x['size']}-{x['steps']}"
                + (" (predicted)" * x.get("predicted", 0)),
                0,
                x["params"],
                x["steps"],
                x["tokens"],
                x["compute_flops"],
                res["g"]["flop_convention"],
                x["loss"],
            ]
        )
    for r in res["h"]["rows"]:
        w.writerow(["h", f"measured {r['run']}", 0, "", r["final_step"], "", "", "", r["measured"]])
        w.writerow(
            ["h", f"predicted {r['run']}", 0, "", r["final_step"], "", "", "", r["predicted"]]
        )
    search = res["h"]["search"]
    last = res["a"]["budgets"][-1]["steps"]
    for what in ("measured", "predicted"):
        w.writerow(["h", f"{what} {search['run']}", 0, "", last, "", "", "", search[what]])
    i, j = res.get("i"), res.get("j")
    if i is not None:
        s0 = a["seeds"][0]
        w.writerow(["i", "muon-constant", s0, "", i["steps"], "", "", "", i["constant"]])
        for f, v in i["lengths"].items():
            w.writerow(["i", f"muon-length-{f}", s0, "", i["steps"], "", "", "", v])
    if j is not None:
        runs = {"cooldown": j["cooldown"], "swa": j["swa"], "constant": j["constant"]}
        runs.update({f"merge-{w_}": v for w_, v in j["merged"].items()})
        for name, losses in runs.items():
            for s, v in zip(j["seeds"], losses, strict=True):
                w.writerow(["j", name, s, "", j["steps"][-1], "", "", "", v])
    return buf.getvalue()


def _finish(out: Path, claims: list[dict], report: Path, t0: float, log) -> ReproduceResult:
    wall = time.perf_counter() - t0
    log("")
    log(f"{'claim':<26} {'verdict':<26} measured")
    for c in claims:
        lines = textwrap.wrap(c["measured"], 100, subsequent_indent="    ")
        log(f"{c['id']:<26} {c['verdict']:<26}")
        for line in lines:
            log(f"    {line}")
    log(f"\nreport: {report}  (results.csv, claims.json beside it); {wall:.0f} s")
    return ReproduceResult(out, claims, report, wall)
