"""The training loop: model, data, optimizer and schedule joined, with exact resume.

Update n (1-based, see `cooldown.schedules`) runs at `optim.lr * schedule.multiplier(n)`, computed
from the config every step; nothing about the LR is stored. The data sampler's state is its seed and
the number of batches drawn. A checkpoint therefore holds all there is (weights, optimizer state,
sampler position, weight averages), and a run killed at any moment and started again with the same
command continues from its last checkpoint and, on CPU, logs bitwise the same losses as a run never
stopped. A branch (a config with `parent`) starts from its parent's checkpoint instead of from
scratch; a constant-LR run can be extended (see `cooldown.run_state`).

Under torchrun with `train.parallelism` ddp or fsdp every process runs this same loop on its slice
of each global batch (see `cooldown.distributed`): the collectives keep the ranks in step, and only
rank 0 writes config.toml, metrics.jsonl, manifest.json, averages/, the loggers and the progress
bar, and completes checkpoints (model and optimizer go through torch.distributed.checkpoint).

A run directory (the unit of record, DESIGN.md):
    config.toml      the full resolved RunConfig; a directory only resumes with the same one
    metrics.jsonl    one JSON object per logged step (a branch logs only its own steps)
    checkpoints/     step_NNNNNNN/ folders (see cooldown.checkpoint)
    averages/        completed SWA windows (see cooldown.averaging), when averaging is on
    manifest.json    lineage, data and tokenizer fingerprints, package version, FLOP convention,
                     status and final results
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from cooldown import __version__
from cooldown.averaging import WeightAverages, save_window
from cooldown.checkpoint import (
    RAW_WEIGHTS,
    apply_keep_policy,
    latest_checkpoint,
    save_checkpoint,
)
from cooldown.compare.doc_losses import document_losses
from cooldown.config import RunConfig
from cooldown.data import TokenData, ensure_prepared, validation_batches
from cooldown.data.mixture import open_train_sampler
from cooldown.device import autocast, configure_backends, peak_flops, resolve_precision
from cooldown.distributed import DistContext, collective_failure, init_distributed
from cooldown.errors import CooldownError, Interrupted
from cooldown.evaluation import evaluate, evaluate_weights
from cooldown.flops import describe_convention, training_flops_per_step
from cooldown.loggers import build_loggers
from cooldown.metrics import MetricsLog
from cooldown.model import Transformer
from cooldown.model_sizes import non_embedding_param_count, param_count
from cooldown.optim import SwitchableOptimizer, build_optimizer
from cooldown.run_dir import RunDir
from cooldown.run_lock import run_lock
from cooldown.run_state import (
    check_run_dir,
    data_reuse_warnings,
    kept_steps,
    lineage,
    prepare_run_dir,
    read_manifest,
    restore,
    write_run_config,
)
from cooldown.schedules import cooldown_start
from cooldown.sharded_checkpoint import (
    OPTIMIZER_VALUES,
    save_sharded_checkpoint,
    sharded_training_state,
)
from cooldown.step_health import StepHealth, grad_norm

__all__ = ["RunResult", "TrainingDiverged", "evaluate", "prepare_run_dir", "train"]


class TrainingDiverged(CooldownError):
    """The loss or gradient became non-finite; the run stopped at its last good checkpoint."""


@dataclass
class RunResult:
    run_dir: Path
    steps: int
    tokens: int
    compute_flops: float
    flop_convention: str
    final_val_loss: float | None
    resumed_from_step: int | None


@dataclass
class _Run:
    """What the loop and `_finish` share."""

    cfg: RunConfig
    run_dir: Path
    model: Transformer
    opt: SwitchableOptimizer
    data: TokenData
    averages: WeightAverages | None
    device: torch.device
    precision: str
    eval_bs: int
    manifest: dict
    metrics: MetricsLog | _RankMetrics
    ctx: DistContext

    def eval_record(self, batches: Callable[[], Iterable]) -> dict[str, float]:
        """val_loss (+ val_ppl) of the weights, and val_loss_<name> of every average, each over
        the batches `batches()` yields (all ranks together)."""
        self.opt.eval()
        loss = evaluate(self.model, batches(), self.device, self.precision, self.ctx)
        out = {"val_loss": loss, "val_ppl": math.exp(min(loss, 50.0))}
        if self.averages is not None:
            for name, weights in self.averages.averages().items():
                out[f"val_loss_{name}"] = evaluate_weights(
                    self.model, weights, batches(), self.device, self.precision, self.ctx
                )
        return out


class _RankMetrics:
    """What ranks other than 0 log: nothing (rank 0 writes metrics.jsonl for the job)."""

    def truncate_after(self, step: int) -> None:
        pass

    def write(self, record: dict) -> None:
        pass

    def sync(self) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(cfg: RunConfig, initial: int):
    if not cfg.train.progress or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=cfg.total_steps, initial=initial, unit="step", dynamic_ncols=True)


def train(cfg: RunConfig, run_dir: str | Path, *, allow_data_change: bool = False) -> RunResult:
    """Run (or resume, or return the result of a finished) training run in `run_dir`. Under
    torchrun (ddp/fsdp) every process calls it and gets the same result.

    The process owns `run_dir` while it trains (see `cooldown.run_lock`; under torchrun rank 0
    holds the lock for the job). Resuming on data whose fingerprint differs from the one the
    manifest records is an error unless `allow_data_change` (then the change is recorded). Ctrl-C
    raises `Interrupted` naming the step reached and the step a rerun resumes from."""
    tc = cfg.train
    run_dir = Path(run_dir)
    ctx = init_distributed(tc.parallelism, tc.device, tc.dist_timeout_s)
    progress = _Progress()
    try:
        with contextlib.ExitStack() as owned:
            if ctx.distributed:
                owned.enter_context(collective_failure(ctx.rank))
            ctx.on_main(lambda: owned.enter_context(run_lock(run_dir)))
            try:
                result = _train(cfg, run_dir, ctx, progress, allow_data_change)
                if tc.final_doc_eval_tokens:
                    ctx.on_main(lambda: _document_evaluation(cfg, run_dir))
                return result
            except KeyboardInterrupt:
                raise _interrupted(run_dir, progress, ctx) from None
    finally:
        ctx.close()


def _document_evaluation(cfg: RunConfig, run_dir: Path) -> None:
    """`train.final_doc_eval_tokens`: the per-document losses paired comparisons read, computed
    once per weight set (a finished run called again, e.g. after a kill between its manifest and
    this, only computes what its cache lacks)."""
    for weights in (RAW_WEIGHTS, *cfg.averaging.names):
        document_losses(
            run_dir,
            weights,
            device=cfg.train.device,
            max_doc_tokens=cfg.train.final_doc_eval_tokens,
        )


@dataclass
class _Progress:
    """How far this process got, for the message of an interrupted run."""

    step: int | None = None  # the last update done (None: training had not started)
    start: int = 0  # the step this process started from


def _interrupted(run_dir: Path, progress: _Progress, ctx: DistContext) -> Interrupted:
    """The run's manifest no longer says "running"; the message says where to resume."""
    resume = latest_checkpoint(run_dir)
    resume_step = int(resume.name.removeprefix("step_")) if resume else progress.start
    if ctx.is_main:
        manifest = read_manifest(run_dir)
        if manifest.get("status") == "running":
            manifest.update(status="interrupted", interrupted_at_step=progress.step)
            RunDir(run_dir).write_manifest(manifest)
    where = "before training started" if progress.step is None else f"at step {progress.step}"
    return Interrupted(
        f"interrupted {where} ({run_dir}); rerun the same command to resume from step {resume_step}"
    )


def accumulation_steps(tc, world_size: int) -> int:
    """Micro-batches per update on each rank: batch_size = micro x accumulation x world size."""
    if world_size == 1:
        return tc.grad_accumulation
    if tc.batch_size % world_size:
        raise CooldownError(
            f"train.batch_size {tc.batch_size} is not divisible by the world size {world_size} "
            "(each rank trains an equal slice of the global batch)"
        )
    per_rank = tc.batch_size // world_size
    micro = tc.micro_batch_size or per_rank
    if per_rank % micro:
        raise CooldownError(
            f"train.micro_batch_size {micro} does not divide the {per_rank} sequences per rank "
            f"(train.batch_size {tc.batch_size} / world size {world_size}): set it to a divisor "
            f"of {per_rank}"
        )
    return per_rank // micro


def _train(
    cfg: RunConfig, run_dir: Path, ctx: DistContext, progress: _Progress, allow_data_change: bool
) -> RunResult:
    # Checked now, written only once the run can start: a start that fails on its data or its
    # validation split leaves no config.toml that would refuse the corrected command.
    folder = ctx.on_main(lambda: check_run_dir(cfg, run_dir))
    tc = cfg.train
    # train.progress = false (studies, reproduce's workers) also quiets the data's status lines.
    data = ctx.main_first(lambda: ensure_prepared(cfg.data, progress=ctx.is_main and tc.progress))
    model_cfg = cfg.model.with_vocab(cfg.model.vocab_size or data.vocab_size)
    if model_cfg.vocab_size < data.vocab_size:
        raise CooldownError(
            f"model.vocab_size {model_cfg.vocab_size} is smaller than the tokenizer's "
            f"{data.vocab_size}"
        )
    accum = accumulation_steps(tc, ctx.world_size)

    device = ctx.device
    precision = resolve_precision(tc.precision, device)
    configure_backends(device)
    torch.manual_seed(tc.seed)
    model = Transformer(model_cfg).to(device)
    ctx.parallelize(model)  # before the optimizer: FSDP2 replaces the parameters
    sched = cfg.schedule
    opt = build_optimizer(model, cfg.optim, warmup_steps=sched.warmup_steps)
    sampler = ctx.main_first(
        lambda: open_train_sampler(
            cfg.data,
            data,
            cfg.data_mixture,
            tc.batch_size,
            tc.seq_len,
            tc.seed,
            rank=ctx.rank,
            world_size=ctx.world_size,
            progress=tc.progress and ctx.is_main,
        )
    )
    averages = WeightAverages(cfg.averaging) if cfg.averaging.enabled else None
    # The same fixed batches at any world size (each rank evaluates a share of every batch).
    eval_bs = tc.micro_batch_size or tc.batch_size
    eval_set = list(validation_batches(data.val, eval_bs, tc.seq_len, max_batches=tc.eval_batches))

    # Repairs or removes what a killed process left half-written, before choosing where to resume.
    kept = kept_steps(cfg, run_dir, extension=folder.get("extension"))
    ctx.on_main(lambda: apply_keep_policy(run_dir, tc.keep_last, permanent=kept))
    start = restore(cfg, run_dir, model, opt, sampler, averages, device, ctx)
    step = start.step
    progress.start = step
    data_change = ctx.on_main(
        lambda: _check_data_unchanged(cfg, data, start, run_dir, allow_data_change)
    )

    ctx.on_main(lambda: write_run_config(cfg, run_dir, folder))
    if ctx.is_main:
        mirrors = build_loggers(tc.loggers, run_dir, cfg.model_dump(mode="json", exclude_none=True))
        metrics: MetricsLog | _RankMetrics = MetricsLog(run_dir / "metrics.jsonl", mirrors)
    else:
        metrics = _RankMetrics()
    # Lines logged after the starting point are work being redone (a fresh run: all of them).
    metrics.truncate_after(step if step else -1)
    if start.from_parent and ctx.is_main:
        for line in data_reuse_warnings(cfg, _train_tokens(cfg, sampler)):
            print(line, file=sys.stderr)

    total = cfg.total_steps
    convention = tc.flop_convention
    flops_per_step = training_flops_per_step(model_cfg, tc.seq_len, tc.tokens_per_step, convention)
    peak = peak_flops(device)
    if peak:
        peak *= ctx.world_size  # MFU of the whole job: its FLOP/s over every device's peak

    def write_manifest() -> dict:
        manifest = _manifest(cfg, model_cfg, data, run_dir, flops_per_step, ctx)
        changes = read_manifest(run_dir).get("data_changes", [])
        if changes or data_change:
            manifest["data_changes"] = [*changes, *([data_change] if data_change else [])]
        RunDir(run_dir).write_manifest(manifest)
        return manifest

    manifest = ctx.on_main(write_manifest)
    run = _Run(
        cfg, run_dir, model, opt, data, averages, device, precision, eval_bs, manifest, metrics, ctx
    )
    if step >= total:
        return _finish(run, step, start.resumed_from_step)

    if tc.compile:
        # In place, so model.loss() goes through the compiled forward (a torch.compile wrapper
        # would hand .loss to the eager module).
        model.compile()
    model.train()
    if step == 0:
        record = {"step": 0, "tokens": 0, "compute_flops": 0.0, "flop_convention": convention}
        opt.eval()
        metrics.write({**record, "val_loss": evaluate(model, eval_set, device, precision, ctx)})
    bar = _progress_bar(cfg, step) if ctx.is_main else None
    progress.step = step
    loss_fn = ctx.loss_fn(model)
    t_start = time.perf_counter()
    t_last, step_last = t_start, step
    health = StepHealth(device)
    # Pinned host memory lets the copies to the GPU run asynchronously (non_blocking below).
    pin = device.type == "cuda"
    try:
        while step < total:
            n = step + 1
            opt.train()
            opt.apply_schedule(sched, n)  # each group's LR, and its phase's settings
            x_all, y_all = sampler.next_batch()
            if pin:
                x_all, y_all = x_all.pin_memory(), y_all.pin_memory()
            loss_sum = _forward_backward(x_all, y_all, accum, loss_fn, run)
            norm = grad_norm(model, cfg.optim.grad_clip)
            health.observe(n, loss_sum, norm)
            opt.step()
            opt.zero_grad()
            step = progress.step = n
            is_eval = step % tc.eval_interval == 0 or step == total
            is_log = is_eval or step % tc.log_interval == 0
            is_save = step % tc.checkpoint_interval == 0 or step in kept
            if is_log or is_save:
                # The host looks only here (and before an SWA window is written): diverged
                # weights are never logged as fine or saved; in-memory averages die with the run.
                _stop_if_diverged(health, ctx, run_dir)
            if averages is not None and averages.due(step):
                # Schedule-free: average the evaluation-mode (x) weights. Its switch back to y
                # before the next update rounds differently from never switching, so sampling
                # changes a schedule-free trajectory by float rounding (deterministically).
                opt.eval()
                window = averages.update(step, model.state_dict())
                if window is not None:
                    _stop_if_diverged(health, ctx, run_dir)
                    swa = ctx.full_weights(averages.swa) if ctx.distributed else averages.swa
                    if ctx.is_main:
                        save_window(run_dir, *window, swa, cfg.averaging.swa_keep_last)

            if is_log:
                # The global batch's loss; every rank logs the same value.
                train_loss = ctx.mean(float(loss_sum))
                now = time.perf_counter()
                tok_s = (step - step_last) * tc.tokens_per_step / max(now - t_last, 1e-9)
                record = {
                    "step": step,
                    "tokens": step * tc.tokens_per_step,
                    "compute_flops": step * flops_per_step,
                    "flop_convention": convention,
                    "lr": opt.last_lr(),
                    **opt.group_lrs(),
                    "train_loss": train_loss,
                    "grad_norm": float(norm),
                    "tokens_per_s": tok_s,
                    "elapsed_s": start.elapsed_s + now - t_start,
                }
                if peak:
                    record["mfu"] = flops_per_step * tok_s / tc.tokens_per_step / peak
                if is_eval:
                    record.update(run.eval_record(lambda: eval_set))
                metrics.write(record)
                t_last, step_last = time.perf_counter(), step
                if bar is not None:
                    bar.set_postfix(loss=f"{train_loss:.3f}", tok_s=f"{tok_s:,.0f}")
            if bar is not None:
                bar.update(1)
            if is_save:
                _save(run, step, start.elapsed_s + time.perf_counter() - t_start, sampler, kept)
    except BaseException:
        metrics.close()
        raise
    finally:
        if bar is not None:
            bar.close()
    return _finish(run, step, start.resumed_from_step)


def _forward_backward(x_all, y_all, accum: int, loss_fn, run: _Run) -> torch.Tensor:
    """Gradients of one global batch's loss, accumulated over `accum` micro-batches; its loss as
    a float64 device tensor, each micro-batch's float32 loss added in order (no host read)."""
    loss_sum: torch.Tensor | None = None
    micro_batches = zip(x_all.chunk(accum), y_all.chunk(accum), strict=True)
    for i, (x, y) in enumerate(micro_batches):
        x, y = x.to(run.device, non_blocking=True), y.to(run.device, non_blocking=True)
        with run.ctx.grad_sync(last_micro_batch=i == accum - 1):
            with autocast(run.device, run.precision):
                loss = loss_fn(x, y) / accum
            loss.backward()
        part = loss.detach().to(torch.float64)
        loss_sum = part if loss_sum is None else loss_sum + part
    return loss_sum


def _save(run: _Run, step: int, elapsed_s: float, sampler, kept: list[int]) -> None:
    run.opt.eval()
    run.metrics.sync()
    if run.ctx.distributed:
        _save_sharded(run, step, elapsed_s, sampler)
        run.ctx.on_main(lambda: apply_keep_policy(run.run_dir, run.cfg.train.keep_last, kept))
        return
    state = {
        "optimizer": run.opt.state_dict(),
        "sampler": sampler.state_dict(),
        "elapsed_s": elapsed_s,
    }
    extra = None
    if run.averages is not None:
        state["averaging"], extra = run.averages.state_dict()
    save_checkpoint(run.run_dir, step, run.model.state_dict(), state, extra_weights=extra)
    apply_keep_policy(run.run_dir, run.cfg.train.keep_last, permanent=kept)


def _save_sharded(run: _Run, step: int, elapsed_s: float, sampler) -> None:
    """Model, optimizer and the averages needed to resume them go into dcp/ (each rank its part);
    the full weights are gathered once per checkpoint for the single-process readers (export,
    interpolate, eval), which is the one moment a rank holds the whole model under fsdp."""
    ctx = run.ctx
    state: dict = {
        "sampler": sampler.state_dict(),
        "elapsed_s": elapsed_s,
        "distributed": {"parallelism": ctx.parallelism, "world_size": ctx.world_size},
    }
    extra: dict = {}
    resume: dict = {}
    if run.averages is not None:
        state["averaging"], extra = run.averages.state_dict()
        resume = {n: extra[n] for n in WeightAverages.stored_names(state["averaging"])}
    sharded, state[OPTIMIZER_VALUES] = sharded_training_state(run.model, run.opt.optimizer, resume)
    full = ctx.full_model_weights(run.model)
    full_extra = {name: ctx.full_weights(w) for name, w in extra.items()}
    save_sharded_checkpoint(
        ctx,
        run.run_dir,
        step,
        sharded,
        full,
        state if ctx.is_main else None,
        extra_weights=full_extra if ctx.is_main else None,
    )


def _train_tokens(cfg: RunConfig, sampler) -> list[int]:
    # One entry per data source, in `data_sources(cfg)` order (a plain sampler has one).
    return [len(s.tokens) for s in getattr(sampler, "samplers", [sampler])]


def _stop_if_diverged(health: StepHealth, ctx: DistContext, run_dir: Path) -> None:
    """Raise `TrainingDiverged` on every rank if any step so far had a non-finite loss or
    gradient norm (naming the first), before anything is logged, averaged or saved after it."""
    found = health.check(ctx)
    if found is None:
        return
    last = latest_checkpoint(run_dir)
    kept = f"last good checkpoint: {last}" if last else "no checkpoint was written yet"
    raise TrainingDiverged(
        f"non-finite {found.what} ({found.value}) at step {found.step}; the run stopped ({kept})"
    )


def _finish(run: _Run, step: int, resumed_from: int | None) -> RunResult:
    """Full validation pass (of the weights and of every average), final manifest, result."""
    cfg, manifest = run.cfg, run.manifest
    complete = manifest.get("status") == "complete"
    final = manifest.get("final_val_loss") if complete else None
    if not complete and cfg.train.final_full_eval:
        losses = run.eval_record(
            lambda: validation_batches(run.data.val, run.eval_bs, cfg.train.seq_len)
        )
        final = losses["val_loss"]
        for name in cfg.averaging.names:
            manifest[f"final_val_loss_{name}"] = losses.get(f"val_loss_{name}")
    run.metrics.close()
    tokens = manifest["tokens"]
    manifest.update(
        status="complete",
        steps=step,
        final_val_loss=final,
        final_val_ppl=math.exp(min(final, 50.0)) if final is not None else None,
    )
    run.ctx.on_main(lambda: RunDir(run.run_dir).write_manifest(manifest))
    convention = cfg.train.flop_convention
    return RunResult(
        run.run_dir, step, tokens, manifest["compute_flops"], convention, final, resumed_from
    )


def _data_fingerprints(manifest: dict) -> dict[str, str]:
    """What a manifest says the run trains and validates on: `data` and each data_mixture
    source, by name."""
    out = {"data": manifest.get("data_fingerprint")}
    for i, component in enumerate(manifest.get("data_mixture") or []):
        out[f"data_mixture[{i}]"] = component.get("data_fingerprint")
    return {k: v for k, v in out.items() if v}


def _check_data_unchanged(
    cfg: RunConfig, data: TokenData, start, run_dir: Path, allow_data_change: bool
) -> dict | None:
    """A run resumed from its own checkpoint trains on what it started on: the fingerprints in
    its manifest; a branch's first start validates on its parent's data. A difference is an error
    unless `allow_data_change`; then the change to record in the manifest."""
    if start.resumed_from_step is not None:
        before = _data_fingerprints(read_manifest(run_dir))
        where = f"{run_dir / 'manifest.json'} records"
    elif start.from_parent:
        before = _data_fingerprints(read_manifest(Path(cfg.parent.run_dir)))
        before = {k: v for k, v in before.items() if k == "data"}
        where = f"the parent {cfg.parent.run_dir} was trained on"
    else:
        return None
    sources = {"data": cfg.data}
    sources.update({f"data_mixture[{i}]": c.data for i, c in enumerate(cfg.data_mixture or [])})
    now = {"data": data.fingerprint}
    for name, source in sources.items():
        if name != "data" and name in before:
            now[name] = ensure_prepared(source, progress=False).fingerprint
    changed = [(k, before[k], now.get(k)) for k in before if now.get(k) != before[k]]
    if not changed:
        return None
    name, old, new = changed[0]
    if not allow_data_change:
        raise CooldownError(
            f"the data changed under the run {run_dir}: {where} {name} fingerprint {old}, but "
            f"{name}.source {sources[name].source!r} now gives {new} (a replaced file or another "
            "working directory); resume on the original data, or pass --allow-data-change to "
            "train the rest of the run on this data (recorded in manifest.json)"
        )
    return {
        "at_step": start.step,
        "changes": [{"data": k, "from": a, "to": b} for k, a, b in changed],
    }


def _manifest(
    cfg: RunConfig, model_cfg, data, run_dir: Path, flops_per_step: float, ctx: DistContext
) -> dict:
    previous = read_manifest(run_dir)
    if previous.get("status") == "complete" and previous.get("steps") == cfg.total_steps:
        return previous
    manifest = {
        "package": "cooldown",
        "version": __version__,
        "status": "running",
        "data_fingerprint": data.fingerprint,
        "data_source": data.header.get("source"),
        "tokenizer": data.header.get("tokenizer"),
        "vocab_size": model_cfg.vocab_size,
        "params": param_count(model_cfg, norms=True),
        "non_embedding_params": non_embedding_param_count(model_cfg),
        "total_steps": cfg.total_steps,
        "tokens_per_step": cfg.train.tokens_per_step,
        "flop_convention": cfg.train.flop_convention,
        "flop_convention_description": describe_convention(cfg.train.flop_convention),
        **lineage(cfg, model_cfg, flops_per_step),
    }
    if ctx.distributed:
        # The world size of the latest (re)start: a run may resume at another one.
        manifest.update(parallelism=ctx.parallelism, world_size=ctx.world_size)
    phases = cfg.optim.phases(cooldown_start(cfg.schedule))
    if phases is not None:
        manifest["optimizer_phases"] = phases
    if cfg.averaging.enabled:
        manifest["averaging"] = cfg.averaging.model_dump(mode="json")
    if cfg.data_mixture:
        total = sum(c.weight for c in cfg.data_mixture)
        manifest["data_mixture"] = [
            {
                "data": c.data.model_dump(mode="json", exclude_none=True),
                "weight": c.weight,
                "share": c.weight / total,
                "data_fingerprint": ensure_prepared(c.data, progress=False).fingerprint,
            }
            for c in cfg.data_mixture
        ]
        manifest["validation_data"] = "data (the run's own data, a branch's parent's: not the mix)"
    if previous.get("extensions"):
        manifest["extensions"] = previous["extensions"]
    return manifest
