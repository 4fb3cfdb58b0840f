"""The study spec (`study.toml`): a scaling sweep described once, typed and validated at load.

    name = "tiny"
    batch_size = 16                 # sequences per update (a size may override it)
    seq_len = 64
    warmup_steps = 10               # the SAME warmup for every method
    seeds = [0]
    flop_convention = "chinchilla"  # the compute axis of the plan and the results
    throughput_flops_per_s = 5e9    # optional: device-hours in the plan before anything ran

    [budgets]                       # default budgets of every size: exactly one of
    steps = [40, 80]                #   steps (updates), tokens, tokens_per_param

    [[sizes]]                       # or sizes = ["33M", "53M"] (presets)
    name = "tiny-0.2M"
    preset = "tiny-0.2M"            # or n_layers, d_model, n_heads, ... (any model field)
    steps = [60, 120]               # this size's own budgets

    [methods.cosine]                # one run from scratch per budget
    lr = [2e-3, 3e-3]               # a list is a sweep: results keep all, mark the best
    [methods.cooldown]              # one constant-LR trunk per size, a branch per budget
    lr = 1e-3
    fraction = 0.2
    shapes = ["linear", "1-sqrt"]
    [methods.swa]                   # the trunk's weight averages read off at each budget
    [methods.cooldown-predicted]    # the trunk plus 1-2 real branches per size; the other
    measured = 1                    #   budgets' losses predicted by a loss-curve law

    [data]      # a cooldown.data.DataConfig
    [optim]     # passed to every run (the learning rate comes from the method)
    [train]     # passed to every run (eval_interval, checkpoint_interval, precision, ...)
    [averaging] # passed to every run (cooldown.averaging)
    [slurm]     # submitit executor parameters for `--backend slurm`
    [adapter]   # optional: train every node with another trainer (cooldown.study.adapter_nodes)

Token budgets become whole optimizer steps: steps = round(tokens / (batch_size * seq_len)); the
plan shows the tokens actually trained. Tokens-per-parameter budgets multiply the size's parameter
count at the planning vocabulary (embeddings included, norms left out, as the paper counts), or
`budget_params` when the size states its own N (to reproduce another paper's ladder).

This module is torch-free: planning a study never loads torch.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from cooldown.configio import apply_overrides, read_toml, validate
from cooldown.data import DataConfig
from cooldown.errors import CooldownError, format_validation_error
from cooldown.flops import FlopConvention
from cooldown.model_sizes import ModelConfig
from cooldown.study.fields import as_list, positive_unique
from cooldown.study.methods import (
    METHOD_NAMES,
    PREDICTION_LAWS,
    REGISTRY,
    CooldownMethod,
    CosineMethod,
    PredictedMethod,
    SwaMethod,
)

__all__ = [
    "METHODS",
    "PREDICTION_LAWS",
    "CooldownMethod",
    "CosineMethod",
    "PredictedMethod",
    "StudySpec",
    "SwaMethod",
    "load_study",
    "plan_vocab_size",
    "study_dir_for",
    "study_from_dict",
]

METHODS = METHOD_NAMES  # study.toml's [methods.NAME] tables, in plan order

BUDGET_FIELDS: tuple[str, ...] = ("steps", "tokens", "tokens_per_param")
# Fields of every run that the study itself sets; a [train] table may not set them.
STUDY_OWNED_TRAIN_FIELDS = {
    "batch_size": "batch_size (study level or per size)",
    "seq_len": "seq_len (study level)",
    "seed": "seeds (study level)",
    "flop_convention": "flop_convention (study level)",
    "permanent_steps": "nothing: the study sets the trunk's branch points",
}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


class Budgets(BaseModel):
    """Token budgets of a size: exactly one of `steps`, `tokens`, `tokens_per_param`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: list[int] | None = None
    tokens: list[float] | None = None
    tokens_per_param: list[float] | None = None

    @field_validator("steps", "tokens", "tokens_per_param")
    @classmethod
    def _positive(cls, v: list | None) -> list | None:
        return v if v is None else positive_unique(v, "budget")

    @model_validator(mode="after")
    def _exactly_one(self) -> Budgets:
        given = [f for f in BUDGET_FIELDS if getattr(self, f) is not None]
        if len(given) > 1:
            raise ValueError(f"give one of steps, tokens or tokens_per_param (got {given})")
        return self

    @property
    def given(self) -> str | None:
        return next((f for f in BUDGET_FIELDS if getattr(self, f) is not None), None)


class SizeSpec(Budgets):
    """One model size: its shape (a preset and/or explicit fields) and optionally its own budgets
    (the `Budgets` fields, at most one kind) and batch size."""

    name: str
    model: ModelConfig
    batch_size: int | None = Field(None, gt=0)
    budget_params: int | None = Field(
        None, gt=0, description="the N that tokens_per_param multiplies (default: counted)"
    )

    @model_validator(mode="before")
    @classmethod
    def _split_model_fields(cls, data: Any) -> Any:
        if isinstance(data, SizeSpec):
            return data
        if isinstance(data, str):
            data = {"preset": data}
        if not isinstance(data, dict):
            raise ValueError("expected a preset name or a table (name, preset or shape fields)")
        data = dict(data)
        shape = {k: data.pop(k) for k in list(data) if k in ModelConfig.model_fields}
        if "model" in data:  # the dumped form of a SizeSpec
            if shape:
                raise ValueError(
                    "give the shape fields (preset, n_layers, ...) in the size's table"
                )
            model = data.pop("model")
            shape = model.model_dump(exclude_none=True) if isinstance(model, ModelConfig) else model
        if "vocab_size" in shape:
            raise ValueError("vocab_size: set model_vocab_size at the study level")
        try:
            data["model"] = ModelConfig.model_validate(shape)
        except Exception as e:  # pydantic.ValidationError: one line naming the shape field
            if hasattr(e, "errors"):
                raise ValueError(format_validation_error(e)) from None
            raise
        if "name" not in data:
            if shape.get("preset") is None:
                raise ValueError("name: missing (needed when a size has no preset)")
            data["name"] = shape["preset"]
        return data

    @field_validator("name")
    @classmethod
    def _path_safe(cls, v: str) -> str:
        if not _NAME.fullmatch(v):
            raise ValueError(
                "must be letters, digits and . _ + - (it names the size's run folders)"
            )
        return v

    def budgets(self, default: Budgets | None) -> Budgets:
        """The size's own budgets, else the study's [budgets] (StudySpec checks one exists)."""
        own = Budgets(steps=self.steps, tokens=self.tokens, tokens_per_param=self.tokens_per_param)
        return own if own.given is not None or default is None else default


class Methods(BaseModel):
    # TOML names the predicted method `cooldown-predicted`; the dump uses that name too, so a
    # dumped spec validates back to an equal one (the Python name is accepted as well).
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )

    cosine: CosineMethod | None = None
    cooldown: CooldownMethod | None = None
    swa: SwaMethod | None = None
    cooldown_predicted: PredictedMethod | None = Field(None, alias="cooldown-predicted")

    @model_validator(mode="after")
    def _at_least_one(self) -> Methods:
        if not self.names:
            raise ValueError(f"give at least one method table: {', '.join(METHODS)}")
        for method in self.names:
            REGISTRY[method].check_methods(self)
        return self

    def get(self, name: str) -> BaseModel | None:
        """The settings of method `name` (as spelled in METHODS), None when not planned."""
        return getattr(self, name.replace("-", "_"))

    @property
    def names(self) -> list[str]:
        return [m for m in METHODS if self.get(m) is not None]

    def trunk_lrs(self) -> list[float]:
        """LRs that need a constant-LR trunk (one trunk per LR, shared by the trunk methods)."""
        lrs: list[float] = []
        for method in self.names:
            lrs += [lr for lr in REGISTRY[method].trunk_lrs(self) if lr not in lrs]
        return lrs

    def predicted_lrs(self) -> list[float]:
        """The LRs of `cooldown-predicted` (its own, else the cooldown's)."""
        return REGISTRY["cooldown-predicted"].trunk_lrs(self)


class StudySpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    sizes: list[SizeSpec] = Field(min_length=1)
    budgets: Budgets | None = None
    methods: Methods
    data: DataConfig = Field(default_factory=DataConfig)
    model_vocab_size: int | None = Field(
        None, gt=0, description="embedding rows of every model (e.g. 50304); default: tokenizer's"
    )
    batch_size: int = Field(gt=0)
    seq_len: int = Field(gt=0)
    seeds: list[int] = Field(default_factory=lambda: [0])
    warmup_steps: int = Field(0, ge=0)
    flop_convention: FlopConvention = "chinchilla"
    throughput_flops_per_s: float | None = Field(None, gt=0)
    optim: dict[str, Any] = Field(default_factory=dict)
    train: dict[str, Any] = Field(default_factory=dict)
    averaging: dict[str, Any] | None = None
    slurm: dict[str, Any] = Field(default_factory=dict)
    adapter: dict[str, Any] | None = None

    @field_validator("seeds", mode="before")
    @classmethod
    def _seed_list(cls, v: Any) -> Any:
        return as_list(v)

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("give at least one seed")
        if len(set(v)) != len(v):
            raise ValueError("a seed is listed twice")
        if any(s < 0 for s in v):
            raise ValueError("seeds must be >= 0")
        return v

    @field_validator("optim")
    @classmethod
    def _no_lr(cls, v: dict[str, Any]) -> dict[str, Any]:
        if "lr" in v:
            raise ValueError("lr: set the learning rate per method (methods.<name>.lr)")
        return v

    @field_validator("train")
    @classmethod
    def _not_study_owned(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key, where in STUDY_OWNED_TRAIN_FIELDS.items():
            if key in v:
                raise ValueError(f"{key}: the study sets it; use {where}")
        return v

    @model_validator(mode="after")
    def _check(self) -> StudySpec:
        names = [s.name for s in self.sizes]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise ValueError(f"sizes: the name {dup!r} is used twice")
        for i, size in enumerate(self.sizes):
            own = (size.steps, size.tokens, size.tokens_per_param)
            if all(b is None for b in own) and (self.budgets is None or self.budgets.given is None):
                raise ValueError(
                    f"sizes.{i}: no budgets for {size.name!r}; give steps, tokens or "
                    "tokens_per_param in the size's table or in [budgets]"
                )
        if self.adapter is not None:  # first: a method's own checks assume our trainer
            check_adapter_table(self.adapter, self.methods.names, names)
        for method in self.methods.names:
            REGISTRY[method].check_spec(self)
        return self

    @property
    def eval_interval(self) -> int | None:
        value = self.train.get("eval_interval")
        return int(value) if value is not None else None


def check_adapter_table(table: dict[str, Any], methods: list[str], sizes: list[str]) -> None:
    """ValueError (one line, naming the field) for an [adapter] table the study cannot use."""
    for method in methods:
        why = REGISTRY[method].adapter_unsupported if method in REGISTRY else None
        if why is not None:
            raise ValueError(f"methods.{method}: not available with an [adapter]: {why}")
    if "kind" not in table:
        raise ValueError("adapter.kind: missing (nanochat or command)")
    size_args = table.get("size_args", {})
    if not isinstance(size_args, dict):
        raise ValueError("adapter.size_args: must be a table of size name = [flags]")
    unknown = sorted(set(size_args) - set(sizes))
    if unknown:
        raise ValueError(f"adapter.size_args: {unknown[0]!r} is not a size of the study")


def load_study(path: str | Path, overrides: list[str] | None = None) -> StudySpec:
    """Read and validate a study.toml (plus dotted overrides); errors name the file and field."""
    data = apply_overrides(read_toml(path), overrides or [])
    try:
        return validate(StudySpec, data)
    except CooldownError as e:
        raise CooldownError(f"{path}: {e}") from None


def study_dir_for(study_path: str | Path, out: str | Path | None = None) -> Path:
    """The study folder: `out` when given, else the folder of study.toml."""
    return Path(out).resolve() if out is not None else Path(study_path).resolve().parent


def study_from_dict(data: dict[str, Any]) -> StudySpec:
    return validate(StudySpec, data)


def plan_vocab_size(spec: StudySpec) -> int:
    """The vocabulary the planner counts parameters and FLOPs with: `model_vocab_size`, else the
    tokenizer's nominal size (a small corpus can leave a trained BPE a little short of it; results
    use each run's actual vocabulary)."""
    if spec.model_vocab_size is not None:
        return spec.model_vocab_size
    tok = spec.data.tokenizer
    if tok == "bpe":
        return spec.data.vocab_size
    from cooldown.data.tokenizers import BYTES_VOCAB_SIZE, GPT2_VOCAB_SIZE, load_tokenizer

    if tok == "bytes":
        return BYTES_VOCAB_SIZE
    if tok == "gpt2":
        return GPT2_VOCAB_SIZE
    return load_tokenizer(tok).vocab_size
