"""Training compute under named FLOP conventions.

Frameworks disagree about what a "FLOP count" includes (the embedding and logit matrices, the
attention scores), and the differences reach 1.2-1.7x for small models. So every compute figure
this package produces names the convention it was counted under:

- "chinchilla": the paper's count (Hägele et al. 2024, after Hoffmann et al. 2022): 3 x the exact
  forward pass per sequence, embedding, logits, attention scores and softmax included.
- "6N": Kaplan et al.'s 6 x non-embedding parameters per token; no attention term.
- "6N+attn": 6N plus 12 L (h k) S per token for the two S x S attention matmuls (the PaLM / nanoGPT
  MFU count). It uses the attention width h k (n_heads * head_dim), which equals d_model for every
  preset.

A multiply-add is 2 FLOPs throughout. Kept free of torch.
"""

from __future__ import annotations

from typing import Literal, get_args

from cooldown.errors import CooldownError
from cooldown.model_sizes import ModelConfig, non_embedding_param_count

FlopConvention = Literal["chinchilla", "6N", "6N+attn"]
FLOP_CONVENTIONS: tuple[str, ...] = get_args(FlopConvention)

_DESCRIPTIONS = {
    "chinchilla": (
        "3 x the exact forward pass, embedding, logits and attention included (the paper's count)"
    ),
    "6N": "6 x non-embedding parameters per token; attention scores, embeddings left out (Kaplan)",
    "6N+attn": (
        "6 x non-embedding parameters + 12 x layers x attention width x sequence length per token "
        "(PaLM / nanoGPT)"
    ),
}


def check_convention(convention: str) -> FlopConvention:
    if convention not in FLOP_CONVENTIONS:
        raise CooldownError(
            f"flop_convention {convention!r} is unknown; allowed: {', '.join(FLOP_CONVENTIONS)}"
        )
    return convention  # type: ignore[return-value]


def describe_convention(convention: str) -> str:
    """One sentence saying what a FLOP figure under `convention` counts."""
    return _DESCRIPTIONS[check_convention(convention)]


def _check_seq_len(seq_len: int) -> None:
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
        raise CooldownError(f"seq_len must be a positive integer (got {seq_len!r})")


def forward_flops_per_sequence(cfg: ModelConfig, seq_len: int) -> int:
    """The paper's exact forward-pass FLOPs for one sequence of `seq_len` tokens.

    d width, L layers, h heads of size k, V vocabulary, f SwiGLU hidden size, S sequence length.
    The S x S terms are counted in full although the causal mask zeroes half of them, as the
    paper does.
    """
    _check_seq_len(seq_len)
    if cfg.vocab_size is None:
        raise CooldownError(
            "model.vocab_size is not set; the forward-pass FLOP count needs it "
            "(fill it from the tokenizer: cfg.with_vocab(V))"
        )
    S, d, V, f = seq_len, cfg.d_model, cfg.vocab_size, cfg.ffn_hidden
    h, hk, L = cfg.n_heads, cfg.attention_width, cfg.n_layers
    embedding = 2 * S * V * d
    per_layer = (
        6 * S * d * hk  # q, k, v projections
        + 2 * S * S * hk  # q @ k^T
        + 3 * h * S * S  # softmax
        + 2 * S * S * hk  # attention @ v
        + 2 * S * hk * d  # output projection
        + 6 * S * d * f  # SwiGLU, three matrices
    )
    logits = 2 * S * d * V
    return embedding + L * per_layer + logits


def training_flops_per_token(cfg: ModelConfig, seq_len: int, convention: str) -> int:
    """FLOPs of one training token (forward + backward) at sequence length `seq_len`."""
    convention = check_convention(convention)
    _check_seq_len(seq_len)
    if convention == "chinchilla":
        # forward(S) is a multiple of S (every term has a factor S), so this is exact.
        return 3 * forward_flops_per_sequence(cfg, seq_len) // seq_len
    six_n = 6 * non_embedding_param_count(cfg)
    if convention == "6N":
        return six_n
    return six_n + 12 * cfg.n_layers * cfg.attention_width * seq_len


def training_flops(cfg: ModelConfig, seq_len: int, tokens: float, convention: str) -> float:
    """FLOPs of training on `tokens` tokens in sequences of `seq_len`."""
    if tokens < 0:
        raise CooldownError(f"tokens must be >= 0 (got {tokens!r})")
    return training_flops_per_token(cfg, seq_len, convention) * tokens


def training_flops_per_step(
    cfg: ModelConfig, seq_len: int, tokens_per_step: int, convention: str
) -> float:
    """FLOPs of one optimizer step on `tokens_per_step` tokens (batch size x sequence length)."""
    if tokens_per_step < 1:
        raise CooldownError(f"tokens_per_step must be >= 1 (got {tokens_per_step!r})")
    return training_flops_per_token(cfg, seq_len, convention) * tokens_per_step


def format_flops(value: float, convention: str) -> str:
    """'1.23e18 FLOPs [chinchilla]': every printed compute figure names its convention."""
    convention = check_convention(convention)
    mantissa, exponent = f"{value:.2e}".split("e")
    return f"{mantissa}e{int(exponent)} FLOPs [{convention}]"
