"""Model sizes: the size presets, the typed model config and parameter counts (a cooldown's
shape, the form of its LR decay, is `cooldown.decay_shapes`).

A model's size is what scaling studies, FLOP counts and run planning need to know about a model, so this
module stays free of torch: `cooldown.model` builds the network from a `ModelConfig`, everything
else only counts.

The paper's presets (Hägele et al. 2024, table in paper-facts section 3) are Llama-style decoders
with head dimension 64 and a SwiGLU hidden size of round_up(int(8 d / 3), 256). Their parameter
counts are quoted at the GPT-2 vocabulary (V = 50257) with tied embeddings and without the norm
weights:

    params = V d + L (4 d (h k) + 3 d f)        (+ V d for an untied output head)

where h k = n_heads * head_dim is the attention width (equal to d for every preset here).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from cooldown.configio import validate
from cooldown.errors import CooldownError

# The paper's sweep (head dim 64, ffn from the 256-rounded rule), plus a 1B shape of our own.
_PAPER_PRESETS: dict[str, dict[str, int]] = {
    "33M": {"n_layers": 8, "d_model": 384, "n_heads": 6},
    "53M": {"n_layers": 8, "d_model": 512, "n_heads": 8},
    "60M": {"n_layers": 10, "d_model": 512, "n_heads": 8},
    "93M": {"n_layers": 12, "d_model": 640, "n_heads": 10},
    "124M": {"n_layers": 12, "d_model": 768, "n_heads": 12},
    "151M": {"n_layers": 16, "d_model": 768, "n_heads": 12},
    "166M": {"n_layers": 12, "d_model": 896, "n_heads": 14},
    "210M": {"n_layers": 24, "d_model": 768, "n_heads": 12},
    "360M": {"n_layers": 24, "d_model": 1024, "n_heads": 16},
    # Not in the paper's table: d 2048 as in TinyLlama / OLMo-1B / Llama-3.2-1B, head dim 64 like
    # the rest of the ladder, ffn 5632 from the same rule; 18 layers give 1.028B params at
    # V = 50257.
    "1B": {"n_layers": 18, "d_model": 2048, "n_heads": 32},
}

# CPU-sized ladder for the embedded default and tests. The name is the total parameter count
# (tied embeddings, norms left out) at vocab_size 2048, the default CPU BPE vocabulary; width and
# depth both grow along the ladder. A finer ffn rounding than the paper's 256 keeps the SwiGLU
# hidden size near 8d/3 at these widths.
_TINY_PRESETS: dict[str, dict[str, int]] = {
    "tiny-0.05M": {"n_layers": 4, "d_model": 16, "n_heads": 1, "ffn_multiple_of": 32},  # 49,152
    "tiny-0.2M": {"n_layers": 4, "d_model": 48, "n_heads": 3, "ffn_multiple_of": 32},  # 208,896
    "tiny-0.8M": {"n_layers": 8, "d_model": 80, "n_heads": 5, "ffn_multiple_of": 32},  # 798,720
    "tiny-2M": {"n_layers": 8, "d_model": 128, "n_heads": 4, "ffn_multiple_of": 64},  # 1,966,080
    "tiny-5M": {"n_layers": 10, "d_model": 192, "n_heads": 6, "ffn_multiple_of": 64},  # 4,816,896
}

PRESETS: dict[str, dict[str, int]] = {**_PAPER_PRESETS, **_TINY_PRESETS}
PAPER_PRESETS: tuple[str, ...] = tuple(name for name in _PAPER_PRESETS if name != "1B")
TINY_PRESETS: tuple[str, ...] = tuple(_TINY_PRESETS)

_SHAPE_FIELDS = ("n_layers", "d_model", "n_heads")


def round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def swiglu_hidden(d_model: int, multiple_of: int) -> int:
    """The Llama rule: 8d/3 keeps SwiGLU's three matrices at the cost of a 4d two-matrix MLP."""
    return round_up(int(8 * d_model / 3), multiple_of)


class ModelConfig(BaseModel):
    """Shape and init of the Llama-style decoder. After validation every shape field is an int.

    Give a `preset` (explicit fields override it) or `n_layers`, `d_model` and `n_heads`.
    `vocab_size` is left empty in configs: the trainer fills it from the tokenizer (`with_vocab`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    preset: str | None = None
    n_layers: int = Field(gt=0)
    d_model: int = Field(gt=0)
    n_heads: int = Field(gt=0)
    # Defaults to d_model // n_heads; validate_default runs the resolver on the None default.
    head_dim: int = Field(default=None, gt=0, validate_default=True)  # type: ignore[assignment]
    ffn_multiple_of: int = Field(default=256, gt=0)
    ffn_hidden: int = Field(default=None, gt=0, validate_default=True)  # type: ignore[assignment]
    vocab_size: int | None = Field(default=None, gt=0)
    max_seq_len: int = Field(default=512, gt=0)
    tie_embeddings: bool = True
    norm_eps: float = Field(default=1e-5, gt=0)
    rope_theta: float = Field(default=10000.0, gt=0)
    init_std: float = Field(default=0.02, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _fill_from_preset(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        preset = data.get("preset")
        if preset is not None:
            if not isinstance(preset, str) or preset not in PRESETS:
                raise ValueError(f"preset {preset!r} is unknown; allowed: {', '.join(PRESETS)}")
            data = {**PRESETS[preset], **data}
        missing = [f for f in _SHAPE_FIELDS if data.get(f) is None]
        if missing:
            raise ValueError(
                f"give a preset (one of {', '.join(PRESETS)}) or all of "
                f"n_layers, d_model and n_heads (missing: {', '.join(missing)})"
            )
        return data

    @field_validator("head_dim", mode="before")
    @classmethod
    def _resolve_head_dim(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None:
            return value
        d_model, n_heads = info.data.get("d_model"), info.data.get("n_heads")
        if d_model is None or n_heads is None:
            raise ValueError("cannot be derived while d_model or n_heads is invalid")
        if d_model % n_heads:
            raise ValueError(
                f"d_model {d_model} is not divisible by n_heads {n_heads}; "
                "choose a width that is a multiple of the heads or give head_dim explicitly"
            )
        return d_model // n_heads

    @field_validator("head_dim")
    @classmethod
    def _head_dim_even(cls, value: int) -> int:
        if value % 2:
            raise ValueError("must be even: RoPE rotates pairs of channels")
        return value

    @field_validator("ffn_hidden", mode="before")
    @classmethod
    def _resolve_ffn_hidden(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None:
            return value
        d_model, multiple = info.data.get("d_model"), info.data.get("ffn_multiple_of")
        if d_model is None or multiple is None:
            raise ValueError("cannot be derived while d_model or ffn_multiple_of is invalid")
        return swiglu_hidden(d_model, multiple)

    @property
    def attention_width(self) -> int:
        """h * k: the width of q, k and v (equals d_model for every preset)."""
        return self.n_heads * self.head_dim

    def with_vocab(self, vocab_size: int) -> ModelConfig:
        """The same config with the tokenizer's vocabulary size filled in (validated)."""
        return validate(ModelConfig, {**self.model_dump(), "vocab_size": vocab_size}, "model")


def _require_vocab(cfg: ModelConfig, what: str) -> int:
    if cfg.vocab_size is None:
        raise CooldownError(
            f"model.vocab_size is not set; {what} needs it (the trainer fills it from the "
            "tokenizer: use cfg.with_vocab(V))"
        )
    return cfg.vocab_size


def param_count(cfg: ModelConfig, *, embeddings: bool = True, norms: bool = False) -> int:
    """Parameters of the model as the paper counts them (norm weights only when `norms`).

    With `norms=True` this is exactly `sum(p.numel() for p in Transformer(cfg).parameters())`.
    """
    d, f, hk, n_layers = cfg.d_model, cfg.ffn_hidden, cfg.attention_width, cfg.n_layers
    total = n_layers * (4 * d * hk + 3 * d * f)
    if embeddings:
        vocab = _require_vocab(cfg, "counting embedding parameters")
        total += vocab * d if cfg.tie_embeddings else 2 * vocab * d
    if norms:
        total += 2 * n_layers * d + d  # two RMSNorms per block and the final one
    return total


def non_embedding_param_count(cfg: ModelConfig) -> int:
    """Kaplan et al.'s N: everything but the token embedding and output head, norms left out."""
    return param_count(cfg, embeddings=False)
