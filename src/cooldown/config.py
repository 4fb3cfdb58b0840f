"""The run config: everything that determines a training run, typed and validated at load.

A run is fully described by one `RunConfig`; its resolved form (every default filled in) is written
to `RUN_DIR/config.toml`, and a run directory is only ever resumed with the same resolved config.

    [model]    preset = "tiny-0.8M"             # cooldown.model_sizes.ModelConfig
    [data]     source = "stdlib"                # cooldown.data.DataConfig
    [optim]    lr = 1e-3                        # cooldown.optim.OptimConfig
    [schedule] kind = "wsd"                     # cooldown.schedules (total_steps = the run length)
    [train]    batch_size = 32                  # TrainConfig below
    [averaging] swa_window = 500                # cooldown.averaging (off by default)
    [parent]   run_dir = "runs/stable"          # a branch: start from that run's checkpoint
               step = 4000
    [[data_mixture]]                            # cooldown.data.mixture (training data only)

A run with a `parent` starts from the parent's checkpoint at `parent.step` (weights, optimizer
state, data position, averages) and trains updates step+1 .. total_steps; `cooldown.branch` builds
such configs. Validation always uses `data`, also when a `data_mixture` feeds training.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationInfo,
    field_validator,
    model_validator,
)

from cooldown.averaging_config import AveragingConfig
from cooldown.configio import apply_overrides, read_toml, validate
from cooldown.data import DataConfig
from cooldown.data.mixture import MixtureComponent
from cooldown.errors import CooldownError
from cooldown.flops import FlopConvention
from cooldown.model_sizes import ModelConfig
from cooldown.optim_config import OptimConfig
from cooldown.schedule_specs import schedule_from_config
from cooldown.schedules import _BY_KIND as SCHEDULE_CLASSES


def _to_schedule(value: Any) -> Any:
    if isinstance(value, dict):
        try:
            return schedule_from_config(value)
        except CooldownError as e:
            # schedule_from_config names fields as "schedule.x"; pydantic adds "schedule" itself.
            raise ValueError(str(e).removeprefix("schedule.")) from None
    if hasattr(value, "multiplier") and hasattr(value, "to_config"):
        return value
    raise ValueError("expected a table with a 'kind' field")


Schedule = Annotated[
    Any, BeforeValidator(_to_schedule), PlainSerializer(lambda s: s.to_config(), return_type=dict)
]

DEFAULT_SCHEDULE = {
    "kind": "wsd",
    "total_steps": 600,
    "warmup_steps": 30,
    "cooldown_frac": 0.2,
    "shape": "1-sqrt",
}


def step_for_tokens(tokens: int, batch_size: int, seq_len: int) -> int:
    """The step after which exactly `tokens` tokens have been trained on; else an error naming the
    nearest token counts that are a whole number of steps."""
    per_step = batch_size * seq_len
    if tokens <= 0:
        raise CooldownError(f"token count {tokens} must be positive")
    if tokens % per_step:
        below, above = tokens // per_step * per_step, (tokens // per_step + 1) * per_step
        nearest = " or ".join(f"{t:,}" for t in (below, above) if t > 0)
        raise CooldownError(
            f"{tokens:,} tokens is not a whole number of steps of {per_step:,} tokens "
            f"(batch_size {batch_size} x seq_len {seq_len}); nearest valid: {nearest}"
        )
    return tokens // per_step


class ParentRef(BaseModel):
    """The checkpoint a branch starts from: `run_dir`'s checkpoint at `step`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_dir: str = Field(min_length=1)
    step: int = Field(gt=0)


class TrainConfig(BaseModel):
    """How the loop runs: batch, sequence, precision, evaluation, logging and checkpoints."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_size: int = Field(32, gt=0, description="sequences per optimizer update (global)")
    micro_batch_size: int | None = Field(
        None,
        gt=0,
        description="sequences per forward/backward on each rank; batch_size must be a multiple "
        "of it times the world size (default: batch_size / world size)",
    )
    seq_len: int = Field(128, gt=0, description="tokens per sequence")
    seed: int = 0
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="auto: bf16 autocast on CUDA, fp32 elsewhere"
    )
    compile: bool = False
    eval_interval: int = Field(100, gt=0, description="steps between evaluations")
    eval_batches: int = Field(8, gt=0, description="fixed validation batches per evaluation")
    final_full_eval: bool = Field(True, description="a full validation pass at the end")
    final_doc_eval_tokens: int | None = Field(
        None,
        gt=0,
        description="after training, per-document losses of the final weights and of each "
        "average on the first N predicted tokens of every validation document, cached in "
        "RUN/eval/ for paired comparisons (`cooldown compare --doc-tokens N`)",
    )
    log_interval: int = Field(10, gt=0, description="steps between metrics.jsonl lines")
    checkpoint_interval: int = Field(200, gt=0, description="steps between checkpoints")
    keep_last: int = Field(2, ge=1, description="rolling checkpoints kept besides permanent ones")
    permanent_steps: list[int] = Field(
        default_factory=list, description="steps whose checkpoints are always kept (branch points)"
    )
    branch_tokens: list[int] = Field(
        default_factory=list,
        description="token counts whose checkpoints are always kept (future branch points); each "
        "a multiple of batch_size x seq_len",
    )
    flop_convention: FlopConvention = "chinchilla"
    progress: bool = Field(True, description="a progress bar when stderr is a terminal")
    loggers: list[Literal["tensorboard", "wandb"]] = Field(default_factory=list)
    parallelism: Literal["none", "ddp", "fsdp"] = Field(
        "none",
        description="data parallelism under torchrun (see cooldown.distributed): ddp replicates "
        "the model, fsdp shards it (FSDP2); the world size comes from torchrun",
    )
    dist_timeout_s: float = Field(
        600.0, gt=0, description="seconds a rank waits in a collective before the job fails"
    )
    nproc_per_node: int | None = Field(
        None,
        gt=0,
        description="processes per node a study runner launches this run with (torchrun); "
        "`cooldown train` takes the world size from its launcher",
    )

    @field_validator("micro_batch_size")
    @classmethod
    def _divides_batch(cls, micro: int | None, info: ValidationInfo) -> int | None:
        batch = info.data.get("batch_size")
        if micro is not None and batch is not None and batch % micro:
            raise ValueError(f"batch_size {batch} is not a multiple of micro_batch_size {micro}")
        return micro

    @field_validator("permanent_steps")
    @classmethod
    def _positive_steps(cls, steps: list[int]) -> list[int]:
        if any(s <= 0 for s in steps):
            raise ValueError("every permanent step must be a positive step number")
        return steps

    @field_validator("branch_tokens")
    @classmethod
    def _whole_steps(cls, tokens: list[int], info: ValidationInfo) -> list[int]:
        batch, seq = info.data.get("batch_size"), info.data.get("seq_len")
        if batch is not None and seq is not None:
            for t in tokens:
                step_for_tokens(t, batch, seq)
        return tokens

    @field_validator("nproc_per_node")
    @classmethod
    def _needs_parallelism(cls, n: int | None, info: ValidationInfo) -> int | None:
        if n is not None and n > 1 and info.data.get("parallelism") == "none":
            raise ValueError(f"{n} processes need train.parallelism 'ddp' or 'fsdp' (it is 'none')")
        return n

    @property
    def branch_steps(self) -> list[int]:
        """`branch_tokens` as steps."""
        return [t // self.tokens_per_step for t in self.branch_tokens]

    @property
    def kept_steps(self) -> list[int]:
        """Steps whose checkpoints are always written and kept: permanent steps, branch points."""
        return sorted({*self.permanent_steps, *self.branch_steps})

    @property
    def grad_accumulation(self) -> int:
        return self.batch_size // (self.micro_batch_size or self.batch_size)

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.seq_len


class RunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: ModelConfig = Field(default_factory=lambda: ModelConfig(preset="tiny-0.8M"))
    data: DataConfig = Field(default_factory=DataConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    schedule: Schedule = Field(default_factory=lambda: schedule_from_config(DEFAULT_SCHEDULE))
    train: TrainConfig = Field(default_factory=TrainConfig)
    averaging: AveragingConfig = Field(default_factory=AveragingConfig)
    parent: ParentRef | None = None
    data_mixture: list[MixtureComponent] | None = Field(
        None, description="training sources and weights (validation stays on `data`)"
    )

    @field_validator("data_mixture")
    @classmethod
    def _mixture(cls, v: list[MixtureComponent] | None) -> list[MixtureComponent] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("needs at least one source (leave it out to train on `data` alone)")
        for i, comp in enumerate(v):
            if any(comp.data == other.data for other in v[:i]):
                raise ValueError(f"source {i} repeats an earlier source's data config")
        return v

    @model_validator(mode="after")
    def _check(self) -> RunConfig:
        if self.optim.name == "schedule-free" and self.schedule.to_config()["kind"] != "constant":
            raise ValueError(
                "schedule.kind: schedule-free AdamW needs kind = 'constant' (it has no LR "
                f"schedule besides its warmup), got {self.schedule.to_config()['kind']!r}"
            )
        problems = self.optim.problems(self.schedule.to_config()["kind"], self.train.parallelism)
        if problems:
            raise ValueError(problems[0])
        if self.train.seq_len > self.model.max_seq_len:
            raise ValueError(
                f"train.seq_len {self.train.seq_len} exceeds model.max_seq_len "
                f"{self.model.max_seq_len}"
            )
        if not math.isfinite(self.optim.lr):
            raise ValueError(f"optim.lr: must be a finite learning rate (got {self.optim.lr})")
        kind = self.schedule.to_config()["kind"]
        beyond = [s for s in self.train.kept_steps if s > self.total_steps]
        # A constant run may be extended later (a larger total_steps), so its kept steps may lie
        # beyond its current end; any other run never reaches them.
        if beyond and kind != "constant":
            raise ValueError(
                f"train.permanent_steps / branch_tokens: step {beyond[0]} is after the run's end "
                f"(schedule.total_steps {self.total_steps}), so its checkpoint would never be "
                "written"
            )
        if self.parent is not None and self.parent.step >= self.total_steps:
            raise ValueError(
                f"parent.step {self.parent.step} leaves nothing to train: the run ends at "
                f"schedule.total_steps {self.total_steps}"
            )
        return self

    @property
    def total_steps(self) -> int:
        return int(self.schedule.total_steps)


def load_run_config(path: str | Path | None, overrides: list[str] | None = None) -> RunConfig:
    """Read a TOML run config (or the defaults when `path` is None) and apply dotted overrides."""
    data = read_toml(path) if path is not None else {}
    given = data.get("schedule")
    file_schedule = dict(given) if isinstance(given, dict) else None
    data = apply_overrides(data, overrides or [])
    schedule = data.get("schedule")
    if isinstance(schedule, dict) and "kind" not in schedule:
        # A partial [schedule] (or `schedule.total_steps=...` alone) adjusts the default schedule.
        data["schedule"] = {**DEFAULT_SCHEDULE, **schedule}
    if file_schedule is not None and isinstance(data.get("schedule"), dict):
        data["schedule"] = _switch_kind(file_schedule, data["schedule"], overrides or [], path)
    _absolute_data_paths(data)
    prefix = f"{path}: " if path is not None else ""
    try:
        if isinstance(data.get("schedule"), dict):
            # Validated on its own so its error reads "schedule.field: ..." (not wrapped by pydantic).
            data["schedule"] = schedule_from_config(data["schedule"])
        return validate(RunConfig, data)
    except CooldownError as e:
        raise CooldownError(prefix + str(e)) from None


def _switch_kind(
    file_schedule: dict, schedule: dict, overrides: list[str], path: str | Path | None
) -> dict:
    """`schedule.kind=constant` on a file with a WSD [schedule] means the constant schedule: the
    file's fields that the new kind does not have are dropped, and one line says which."""
    old_kind = file_schedule.get("kind", DEFAULT_SCHEDULE["kind"])
    new_kind = schedule.get("kind")
    cls = SCHEDULE_CLASSES.get(new_kind) if isinstance(new_kind, str) else None
    if cls is None or new_kind == old_kind:
        return schedule
    overridden = {o.split("=", 1)[0].strip().removeprefix("schedule.") for o in overrides}
    dropped = [
        k
        for k in schedule
        if k in file_schedule and k not in overridden and k not in cls.model_fields
    ]
    if dropped:
        where = f" of {path}" if path is not None else ""
        names = ", ".join(f"schedule.{k}" for k in dropped)
        print(
            f"note: schedule.kind={new_kind} drops {names}{where} (not fields of a {new_kind!r} "
            "schedule)",
            file=sys.stderr,
        )
    return {k: v for k, v in schedule.items() if k not in dropped}


def _absolute(path: str) -> str:
    return str(Path(path).expanduser().absolute())


def _absolute_data_table(table: Any) -> None:
    """Local paths of a [data] table made absolute, in place: a run resumed from another working
    directory must read the same files (and config.toml records where they are)."""
    if not isinstance(table, dict):
        return
    source = table.get("source")
    if isinstance(source, str) and source.strip():
        if source.startswith("hf:"):
            local = Path(source[3:]).expanduser()
            if source[3:].strip() and local.is_dir():
                table["source"] = "hf:" + _absolute(source[3:])
        elif source != "stdlib":
            table["source"] = _absolute(source)
    tokenizer = table.get("tokenizer")
    if isinstance(tokenizer, str) and tokenizer.endswith(".json"):
        table["tokenizer"] = _absolute(tokenizer)
    cache_dir = table.get("cache_dir")
    if isinstance(cache_dir, str) and cache_dir:
        table["cache_dir"] = _absolute(cache_dir)


def _absolute_data_paths(data: dict) -> None:
    _absolute_data_table(data.get("data"))
    mixture = data.get("data_mixture")
    if isinstance(mixture, list):
        for component in mixture:
            if isinstance(component, dict):
                _absolute_data_table(component.get("data"))


def config_differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two resolved config dicts."""
    keys = sorted(set(a) | set(b))
    out: list[str] = []
    for k in keys:
        name = f"{prefix}{k}"
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += config_differences(va, vb, name + ".")
        elif va != vb:
            out.append(name)
    return out
