"""Where a run starts: its config.toml, its own last checkpoint, or its parent's checkpoint.

- A run directory only resumes with the config it was started with, with one exception,
  continual training: a run whose schedule is `constant` may be given a larger
  `schedule.total_steps` (nothing else changed). It then resumes from its last checkpoint with no
  re-warmup (the constant schedule gives every step it already trained the same LR); config.toml is
  rewritten atomically and the manifest records the extension under `extensions`, keeping the
  checkpoint at the original end as a permanent branch point.
- A run with `parent` (a branch) and no checkpoint of its own starts from the parent's checkpoint at
  `parent.step`: weights, optimizer state, sampler position (per shared data source, see
  `cooldown.data.mixture`) and, when the parent averaged with the same `[averaging]` config, the
  averages. Once it has a checkpoint of its own it resumes from that like any run.
- A distributed run's checkpoints keep model and optimizer in `dcp/` (see `cooldown.checkpoint`):
  they load resharded at any world size and parallelism, also into a plain single process (a
  branch of a 2-rank run trained by one process); a plain checkpoint loads into an fsdp run as
  full tensors that each rank cuts into its shards.
- The lineage a branch's manifest records: the parent, the branch's cooldown, and its tokens and
  compute split into the shared prefix (the parent's, up to the branch step) and its own part.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cooldown.averaging import AveragingConfig, WeightAverages
from cooldown.checkpoint import (
    STATE_FILE,
    CorruptCheckpoint,
    check_weights_fit,
    checkpoint_path,
    find_checkpoint,
    is_sharded,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    read_checkpoint_state,
    skipped_checkpoints,
    verify_checkpoint,
    weight_shapes,
)
from cooldown.config import RunConfig, config_differences, load_run_config
from cooldown.configio import to_toml
from cooldown.data import DataConfig
from cooldown.data.mixture import continue_sampler_state
from cooldown.distributed import DistContext
from cooldown.errors import CooldownError
from cooldown.fileio import atomic_write_text
from cooldown.flops import training_flops_per_step
from cooldown.run_dir import CONFIG_FILE, RunDir
from cooldown.sharded_checkpoint import OPTIMIZER_VALUES, load_sharded_training_state


@dataclass
class Start:
    """Where the loop starts: after update `step`."""

    step: int
    elapsed_s: float
    resumed_from_step: int | None  # the run's own checkpoint, when it resumed from one
    from_parent: bool


# --- config.toml and continual training -----------------------------------------------------------


def check_run_dir(cfg: RunConfig, run_dir: Path) -> dict[str, Any]:
    """Whether `run_dir` can take `cfg`, writing nothing: {"fresh": True} for a folder without a
    config.toml, {"extension": {...}} when this call extends a constant run, else {}. A folder
    holding another config is an error."""
    path = run_dir / CONFIG_FILE
    if not path.exists():
        return {"fresh": True}
    existing = load_run_config(path)
    diff = config_differences(
        existing.model_dump(mode="json", exclude_none=True),
        cfg.model_dump(mode="json", exclude_none=True),
    )
    if not diff:
        return {}
    extension = _constant_extension(existing, cfg, diff, run_dir)
    if extension is None:
        raise CooldownError(
            f"{run_dir} holds a run with a different config ({', '.join(diff[:5])} differ); "
            "use another output folder to start a new run"
        )
    return {"extension": extension}


def write_run_config(cfg: RunConfig, run_dir: Path, check: dict[str, Any]) -> None:
    """Write config.toml as `check_run_dir` found it needed, once the run can start."""
    path = run_dir / CONFIG_FILE
    if check.get("fresh"):
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, to_toml(cfg))
    elif "extension" in check:
        # The manifest first: killed between the two writes, a rerun sees the extension again and
        # records it once (the record is keyed by its lengths).
        _record_extension(run_dir, check["extension"])
        atomic_write_text(path, to_toml(cfg))


def prepare_run_dir(cfg: RunConfig, run_dir: Path) -> dict[str, int] | None:
    """Write config.toml, or check that an existing run directory holds the same config; returns
    the extension ({"from_total_steps", "to_total_steps"}) when this call extends a constant run."""
    check = check_run_dir(cfg, run_dir)
    write_run_config(cfg, run_dir, check)
    return check.get("extension")


def _constant_extension(old: RunConfig, new: RunConfig, diff: list[str], run_dir: Path):
    kinds = {old.schedule.to_config()["kind"], new.schedule.to_config()["kind"]}
    if diff != ["schedule.total_steps"] or kinds != {"constant"}:
        return None
    if new.total_steps < old.total_steps:
        raise CooldownError(
            f"schedule.total_steps: {run_dir} holds a constant-LR run of {old.total_steps} steps; "
            f"it can be extended, not shortened (got {new.total_steps}); use another output folder"
        )
    return {"from_total_steps": old.total_steps, "to_total_steps": new.total_steps}


def read_manifest(run_dir: Path) -> dict[str, Any]:
    """The run's manifest.json as a dict ({} when there is none yet)."""
    manifest = RunDir(run_dir).manifest()
    return {} if manifest is None else manifest.as_dict()


def _record_extension(run_dir: Path, extension: dict[str, int]) -> None:
    manifest = read_manifest(run_dir)
    done = manifest.setdefault("extensions", [])
    if extension not in done:
        done.append(extension)
    manifest["status"] = "extended"
    RunDir(run_dir).write_manifest(manifest)


def kept_steps(cfg: RunConfig, run_dir: Path, extension: dict[str, int] | None = None) -> list[int]:
    """Steps whose checkpoints the keep policy never deletes: permanent steps, branch points, the
    end of the run and the ends of the lengths it was extended from (`extension`: one being made
    now, not yet recorded)."""
    extensions = [
        *read_manifest(run_dir).get("extensions", []),
        *([extension] if extension else []),
    ]
    ends = [e["from_total_steps"] for e in extensions]
    return sorted({*cfg.train.kept_steps, cfg.total_steps, *ends})


# --- the starting point ---------------------------------------------------------------------------


def load_parent_config(cfg: RunConfig) -> RunConfig:
    assert cfg.parent is not None
    path = Path(cfg.parent.run_dir) / CONFIG_FILE
    if not path.is_file():
        raise CooldownError(
            f"parent.run_dir: {cfg.parent.run_dir} is not a run folder (config.toml is missing)"
        )
    return load_run_config(path)


def data_sources(cfg: RunConfig) -> list[DataConfig]:
    """The training data sources of a run, in sampler order."""
    return [c.data for c in cfg.data_mixture] if cfg.data_mixture else [cfg.data]


def _load_weights(model, ckpt, path: Path) -> None:
    check_weights_fit(
        {k: tuple(v.shape) for k, v in model.state_dict().items()},
        ckpt.weights,
        source=str(path / "model.safetensors"),
    )
    model.load_state_dict(ckpt.weights)


def state_entry(state: dict[str, Any], key: str, path: Path) -> Any:
    """`state[key]` of a checkpoint's state.pt; a missing entry is one line naming the file."""
    if key not in state:
        held = ", ".join(sorted(map(str, state))) or "nothing"
        raise CooldownError(
            f"checkpoint {path}: {STATE_FILE} has no {key!r} entry (it holds {held}), so training "
            "cannot resume from it"
        )
    return state[key]


def _resume_point(run_dir: Path) -> Path | None:
    """The run's newest complete checkpoint, after saying which step_N folders are skipped."""
    for folder, why in skipped_checkpoints(run_dir):
        print(f"note: skipped checkpoint {folder}: {why}", file=sys.stderr)
    return latest_checkpoint(run_dir)


def _corrupt_latest(run_dir: Path, bad: Path, error: CooldownError) -> CooldownError:
    """The error for a damaged newest checkpoint, naming the newest intact one to resume from."""
    for step in reversed(list_checkpoints(run_dir)):
        path = checkpoint_path(run_dir, step)
        if path == bad:
            continue
        try:
            verify_checkpoint(path)
        except CooldownError:
            continue
        return CooldownError(
            f"{error}; the newest intact checkpoint is {path}: move {bad} out of the run folder "
            f"and rerun the same command to resume from step {step}"
        )
    return CooldownError(
        f"{error}; no older checkpoint of {run_dir} is intact: move {bad} out of the run folder "
        "to train the run again from the start"
    )


@dataclass
class _Loaded:
    step: int
    state: dict[str, Any]
    averages: dict[str, dict]  # weight sets for WeightAverages.load_state_dict


def _load(path: Path, model, opt, ctx: DistContext, want_averages: bool) -> _Loaded:
    """Model and optimizer state from the checkpoint at `path` into `model` and `opt`."""
    if is_sharded(path):
        return _load_sharded(path, model, opt, ctx, want_averages)
    if ctx.parallelism != "fsdp":
        ckpt = load_checkpoint(path)
        _load_weights(model, ckpt, path)
        optimizer_state = state_entry(ckpt.state, "optimizer", path)
        try:
            opt.load_state_dict(optimizer_state)
        except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as e:
            raise CooldownError(
                f"checkpoint {path}: its optimizer state does not fit this run's optimizer "
                f"({type(e).__name__}: {e})"
            ) from None
        return _Loaded(ckpt.step, ckpt.state, ckpt.extra_weights)
    return _load_full_into_shards(path, model, opt, ctx)


def _load_sharded(path: Path, model, opt, ctx: DistContext, want_averages: bool) -> _Loaded:
    # One rank hashes the files (all ranks read them from the same folder); its verdict is shared.
    ctx.on_main(lambda: verify_checkpoint(path))
    step, state = read_checkpoint_state(path, verify=False)
    check_weights_fit(
        {k: tuple(v.shape) for k, v in model.state_dict().items()},
        weight_shapes(path),
        source=str(path / "model.safetensors"),
    )
    names = []
    if want_averages and "averaging" in state:
        names = WeightAverages.stored_names(state["averaging"])
    # set_state_dict first gives an optimizer without state one step at LR 0, which schedule-free
    # takes only in train mode; the load then restores the checkpoint's mode and values.
    if not opt.optimizer.state:
        opt.train()
    averages = load_sharded_training_state(
        path, model, opt.optimizer, state.get(OPTIMIZER_VALUES, {}), names
    )
    return _Loaded(step, state, averages)


def _load_full_into_shards(path: Path, model, opt, ctx: DistContext) -> _Loaded:
    """A plain (single-process) checkpoint into an FSDP2 model: every rank reads the full tensors
    and keeps its shards."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    ckpt = load_checkpoint(path)
    full = StateDictOptions(full_state_dict=True)
    check_weights_fit(
        {k: tuple(v.shape) for k, v in model.state_dict().items()},
        ckpt.weights,
        source=str(path / "model.safetensors"),
    )
    set_model_state_dict(model, ckpt.weights, options=full)
    # torch numbers a plain optimizer state's parameters in param_groups order; DCP names them.
    names = {id(p): n for n, p in model.named_parameters()}
    order = [names[id(p)] for g in opt.optimizer.param_groups for p in g["params"]]
    saved = state_entry(ckpt.state, "optimizer", path)
    by_name = {
        "state": {order[i]: v for i, v in saved["state"].items()},
        "param_groups": [
            {**g, "params": [order[i] for i in g["params"]]} for g in saved["param_groups"]
        ],
    }
    if not opt.optimizer.state:
        opt.train()
    set_optimizer_state_dict(model, opt.optimizer, by_name, options=full)
    like = model.state_dict()
    averages = {n: ctx.shard_like(w, like) for n, w in ckpt.extra_weights.items()}
    return _Loaded(ckpt.step, ckpt.state, averages)


def restore(
    cfg: RunConfig,
    run_dir: Path,
    model,
    opt,
    sampler,
    averages,
    device,
    ctx: DistContext | None = None,
) -> Start:
    """Load the run's own last checkpoint, else its parent's branch checkpoint, into the objects.

    Distributed (`ctx`): every rank calls it; rank 0 picks the checkpoint for all."""
    ctx = ctx or DistContext("none", device)
    latest = ctx.on_main(lambda: _resume_point(run_dir))
    if latest is not None:
        try:
            loaded = _load(latest, model, opt, ctx, want_averages=averages is not None)
        except CorruptCheckpoint as e:
            raise _corrupt_latest(run_dir, latest, e) from None
        sampler.load_state_dict(state_entry(loaded.state, "sampler", latest))
        if averages is not None:
            if "averaging" not in loaded.state:
                raise CooldownError(f"checkpoint {latest} holds no averaging state to resume")
            averages.load_state_dict(loaded.state["averaging"], loaded.averages, device)
        elapsed = float(loaded.state.get("elapsed_s", 0.0))
        return Start(loaded.step, elapsed, loaded.step, False)
    if cfg.parent is None:
        return Start(0, 0.0, None, False)

    parent_cfg = load_parent_config(cfg)
    path = find_checkpoint(cfg.parent.run_dir, cfg.parent.step)
    same_averaging = averages is not None and parent_cfg.averaging == averages.cfg
    loaded = _load(path, model, opt, ctx, want_averages=same_averaging)
    continue_sampler_state(
        sampler,
        data_sources(cfg),
        data_sources(parent_cfg),
        state_entry(loaded.state, "sampler", path),
    )
    if averages is not None:
        _continue_averages(averages, loaded, parent_cfg.averaging, path, device, ctx.is_main)
    return Start(cfg.parent.step, 0.0, None, True)


def _continue_averages(
    averages: WeightAverages,
    loaded: _Loaded,
    parent_averaging: AveragingConfig,
    path: Path,
    device,
    show_note: bool,
) -> None:
    if parent_averaging == averages.cfg and "averaging" in loaded.state:
        averages.load_state_dict(loaded.state["averaging"], loaded.averages, device)
        return
    if show_note:  # one line for the job, not one per rank
        print(
            f"note: the parent checkpoint {path} holds no averages for this [averaging] config; "
            f"they start at the branch step {loaded.step}",
            file=sys.stderr,
        )


# --- lineage --------------------------------------------------------------------------------------


def _share(source: DataConfig, cfg: RunConfig) -> float:
    if not cfg.data_mixture:
        return 1.0 if source == cfg.data else 0.0
    total = sum(c.weight for c in cfg.data_mixture)
    return sum(c.weight for c in cfg.data_mixture if c.data == source) / total


def source_tokens(cfg: RunConfig, source: DataConfig, upto: int) -> float:
    """Tokens drawn from `source` along the run's trajectory (parents included) up to step `upto`
    (expected values for a mixture's shares)."""
    start, prefix = 0, 0.0
    if cfg.parent is not None:
        start = cfg.parent.step
        prefix = source_tokens(load_parent_config(cfg), source, min(start, upto))
    return prefix + max(upto - start, 0) * cfg.train.tokens_per_step * _share(source, cfg)


def data_reuse_warnings(cfg: RunConfig, train_tokens: list[int]) -> list[str]:
    """One line per source the run's trajectory draws more tokens from than it holds."""
    lines = []
    for source, held in zip(data_sources(cfg), train_tokens, strict=True):
        used = source_tokens(cfg, source, cfg.total_steps)
        if used > held:
            lines.append(
                f"warning: data {source.source!r} ({held:,} training tokens) serves "
                f"{used:,.0f} tokens by the end of this run (step {cfg.total_steps}, parent "
                f"included): {used / held:.2f} epochs. The sampler draws random windows, so it "
                "never runs out, but past one epoch the model trains on repeated data."
            )
    return lines


def lineage(cfg: RunConfig, model_cfg, flops_per_step: float) -> dict[str, Any]:
    """Manifest fields: parent, branch, tokens and compute (shared prefix / own / total)."""
    total, tps = cfg.total_steps, cfg.train.tokens_per_step
    out: dict[str, Any] = {"parent": None, "branch": None}
    prefix_steps, prefix_tokens, prefix_flops = 0, 0, 0.0
    if cfg.parent is not None:
        parent_cfg = load_parent_config(cfg)
        parent_manifest = read_manifest(Path(cfg.parent.run_dir))
        prefix_steps = cfg.parent.step
        prefix_tokens = prefix_steps * parent_cfg.train.tokens_per_step
        parent_model = parent_cfg.model.with_vocab(
            parent_manifest.get("vocab_size") or model_cfg.vocab_size
        )
        prefix_flops = prefix_steps * training_flops_per_step(
            parent_model,
            parent_cfg.train.seq_len,
            parent_cfg.train.tokens_per_step,
            cfg.train.flop_convention,
        )
        out["parent"] = {
            "run_dir": cfg.parent.run_dir,
            "step": cfg.parent.step,
            "data_fingerprint": parent_manifest.get("data_fingerprint"),
        }
    sched = cfg.schedule.to_config()
    if sched["kind"] == "branch":
        out["branch"] = {
            "step": sched["branch_step"],
            "shape": sched.get("shape", "linear"),
            "power": sched.get("power"),
            "cooldown_steps": cfg.schedule.cooldown_length_steps,
            "final_lr_frac": sched.get("final_lr_frac", 0.0),
            "fraction": sched.get("cooldown_frac"),
        }
    own_steps = total - prefix_steps
    out.update(
        tokens=prefix_tokens + own_steps * tps,
        tokens_shared_prefix=prefix_tokens,
        tokens_own=own_steps * tps,
        compute_flops_shared_prefix=prefix_flops,
        compute_flops_own=own_steps * flops_per_step,
        compute_flops=prefix_flops + own_steps * flops_per_step,
    )
    return out
