"""The runs of a reproduction as a small dependency graph, and a pool that trains them.

Every run is a run folder that `cooldown.train.train` resumes, so the graph needs no state of its
own: a killed reproduction rerun finds finished runs complete (train returns at once) and
continues interrupted ones from their last checkpoint. A branch waits for its parent run. On CPU
two single-threaded workers train two tiny models at once, which on 2 cores is nearly twice the
throughput of one two-threaded run.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

from cooldown.errors import CooldownError
from cooldown.reproduce.presets import Preset
from cooldown.run_dir import RunDir


@dataclass
class Task:
    key: str  # relative run folder under OUT/runs
    experiment: str  # the experiment letter(s) it serves, for progress lines
    config: dict  # a RunConfig as plain data
    parent: str | None = None  # key of the run it branches from
    steps: int = 0  # updates this run itself trains (for ordering and the compute plan)
    deps: list[str] = field(default_factory=list)


def base_config(p: Preset, *, model: dict | None = None, seed: int = 0) -> dict:
    return {
        "model": dict(model or p.model),
        "data": dict(p.data),
        "optim": {},
        "train": {
            "batch_size": p.batch_size,
            "seq_len": p.seq_len,
            "seed": seed,
            "device": p.device,
            "precision": p.precision,
            "eval_interval": p.eval_interval,
            "eval_batches": p.eval_batches,
            "log_interval": p.eval_interval,
            "checkpoint_interval": max(p.eval_interval * 4, 100),
            "keep_last": 1,
            "progress": False,
            # The final loss every claim uses is the paired evaluation the worker runs after
            # training (`cooldown.reproduce.evidence`); a full pass over ~300 documents would
            # cost more than a small run's training.
            "final_full_eval": False,
        },
    }


def cosine_config(p: Preset, steps: int, *, lr: float, model=None, seed=0, swa=False) -> dict:
    cfg = base_config(p, model=model, seed=seed)
    cfg["optim"]["lr"] = lr
    cfg["schedule"] = {
        "kind": "cosine",
        "total_steps": steps,
        "warmup_steps": p.warmup_steps,
        "final_lr_frac": 0.1,
    }
    if swa:
        cfg["averaging"] = _averaging(p)
    return cfg


def constant_config(p: Preset, steps: int, *, lr: float, branch_at, model=None, seed=0, swa=False):
    cfg = base_config(p, model=model, seed=seed)
    cfg["optim"]["lr"] = lr
    cfg["schedule"] = {"kind": "constant", "total_steps": steps, "warmup_steps": p.warmup_steps}
    cfg["train"]["permanent_steps"] = sorted(set(branch_at))
    if swa:
        cfg["averaging"] = _averaging(p)
    return cfg


def _averaging(p: Preset) -> dict:
    return {
        "swa_window": p.swa_window,
        "swa_interval": 1,
        "lawa_windows": list(p.lawa_windows),
    }


def branch_config(parent: dict, parent_dir: Path, step: int, cooldown_steps: int, shape: str):
    from cooldown.branch import make_branch_config
    from cooldown.config import RunConfig

    cfg = make_branch_config(
        RunConfig.model_validate(parent),
        parent_dir,
        step,
        cooldown_steps=cooldown_steps,
        shape=shape,
    ).model_dump(mode="json", exclude_none=True)
    # The last weights are kept: (f) interpolates to them.
    cfg["train"]["permanent_steps"] = [step + cooldown_steps]
    return cfg


def is_complete(run_dir: Path) -> bool:
    """A finished run (a damaged manifest counts as unfinished: training it again says why)."""
    try:
        return RunDir(run_dir).is_complete()
    except CooldownError:
        return False


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)
    # A killed reproduction must not leave a worker training on: the rerun would train the same
    # run folder at the same time. The worker exits as soon as its parent is gone.
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _train(config: dict, run_dir: str, p: Preset) -> float:
    """Train one run, then evaluate its final weights (and each average it keeps) on the paired
    validation tokens; returns the weights' loss there."""
    from cooldown.config import RunConfig
    from cooldown.reproduce.evidence import evaluate_run
    from cooldown.train import train

    cfg = RunConfig.model_validate(config)
    # The trainer's own status lines would bury the progress lines of the reproduction; warnings
    # go to stderr and still show.
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        train(cfg, run_dir)
    for weights in cfg.averaging.names:
        evaluate_run(p, Path(run_dir), weights)
    return float(evaluate_run(p, Path(run_dir)).mean)


def run_tasks(tasks: list[Task], runs_root: Path, p: Preset, log=print) -> None:
    """Train every task not yet complete, parents before their branches, `workers` at a time."""
    todo = {t.key: t for t in tasks if not is_complete(runs_root / t.key)}
    if not todo:
        return
    total, done = len(todo), 0
    workers = p.workers
    log(f"  training {total} run(s) with {workers} worker(s)")
    if workers <= 1:
        for t in _ordered(todo):
            t0 = time.perf_counter()
            loss = _train(t.config, str(runs_root / t.key), p)
            done += 1
            log(_line(done, total, t, loss, time.perf_counter() - t0))
        return
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    ctx = get_context("spawn")
    running: dict = {}
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker) as pool:
        while todo or running:
            for t in _ordered(todo):
                if len(running) >= workers:
                    break
                if any(d in todo or d in {r.key for r, _ in running.values()} for d in t.deps):
                    continue
                fut = pool.submit(_train, t.config, str(runs_root / t.key), p)
                running[fut] = (t, time.perf_counter())
                del todo[t.key]
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                t, t0 = running.pop(fut)
                loss = fut.result()  # a failed run stops the reproduction with its own error
                done += 1
                log(_line(done, total, t, loss, time.perf_counter() - t0))


def _ordered(todo: dict[str, Task]) -> list[Task]:
    # Long runs first: the constant runs gate every branch.
    return sorted(todo.values(), key=lambda t: (-t.steps, t.key))


def _line(done: int, total: int, t: Task, loss, seconds: float) -> str:
    val = f"val loss {loss:.4f} nats/token" if loss is not None else "done"
    return f"  [{done}/{total}] ({t.experiment}) {t.key}: {val} ({seconds:.0f} s)"
