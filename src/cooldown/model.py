"""The Llama-style decoder the paper trains (Hägele et al. 2024, section 3 of paper-facts).

    tokens -> embedding -> L x [x + Attention(RMSNorm(x)),  x + SwiGLU(RMSNorm(x))] -> RMSNorm
           -> logits (output head tied to the embedding by default)

Attention uses rotary position embeddings (theta 10000) and PyTorch's fused causal
`scaled_dot_product_attention`; there are no biases anywhere. Weights start at N(0, 0.02), the two
projections that write into the residual stream (attention `wo`, SwiGLU `w2`) at
N(0, 0.02 / sqrt(2 L)) so the residual's variance does not grow with depth.

Plain modules with no framework around them; shapes and parameter counts live in
`cooldown.model_sizes`, which stays free of torch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cooldown.errors import CooldownError
from cooldown.model_sizes import ModelConfig


def rope_tables(head_dim: int, max_seq_len: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotation angles, each (max_seq_len, head_dim / 2), in float32."""
    # float64 for the angles: at position ~1e4 float32 loses the low frequencies' phase.
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.outer(torch.arange(max_seq_len, dtype=torch.float64), inv_freq)
    return angles.cos().float(), angles.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate queries or keys (..., head_dim) by position; `cos` and `sin` (from `rope_tables`)
    broadcast against (..., head_dim / 2).

    Rotate-half layout (channel i pairs with i + head_dim/2), as Hugging Face's Llama does, so an
    export needs no permutation of wq and wk. Computed in float32 and cast back. The halves are
    rotated as one tensor against the signed table [-sin, sin] (no `torch.cat`), which gives
    bitwise the sums x1 cos - x2 sin and x1 sin + x2 cos.
    """
    halves = x.float().unflatten(-1, (2, -1))  # (..., 2, head_dim / 2): [x1, x2]
    signed_sin = torch.stack([-sin, sin], dim=-2)
    rotated = halves * cos.unsqueeze(-2) + halves.flip(-2) * signed_sin
    return rotated.flatten(-2).type_as(x)


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal softmax attention of (B, heads, T, head_dim) tensors.

    PyTorch's fused kernel everywhere but on CPU under bf16 autocast, where its flash kernel is 3-4x
    slower than two batched matmuls and a softmax (measured at head_dim 16 and 64, T 128; see
    benchmarks/RESULTS.md); the scores then exist in full, (B, heads, T, T), which CPU sequence
    lengths afford.
    """
    if not (q.device.type == "cpu" and torch.is_autocast_enabled("cpu")):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    batch, heads, seq_len, head_dim = q.shape
    mask = torch.full((seq_len, seq_len), float("-inf"), device=q.device).triu(1)
    scores = torch.baddbmm(
        mask.expand(batch * heads, seq_len, seq_len),
        q.reshape(batch * heads, seq_len, head_dim),
        k.reshape(batch * heads, seq_len, head_dim).transpose(1, 2),
        alpha=head_dim**-0.5,
    )
    y = torch.bmm(scores.softmax(-1), v.reshape(batch * heads, seq_len, head_dim))
    return y.view(batch, heads, seq_len, head_dim)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads, self.head_dim = cfg.n_heads, cfg.head_dim
        width = cfg.attention_width
        self.wq = nn.Linear(cfg.d_model, width, bias=False)
        self.wk = nn.Linear(cfg.d_model, width, bias=False)
        self.wv = nn.Linear(cfg.d_model, width, bias=False)
        self.wo = nn.Linear(width, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        batch, seq_len, _ = x.shape
        heads = (batch, seq_len, self.n_heads, self.head_dim)
        q = self.wq(x).view(heads).transpose(1, 2)
        k = self.wk(x).view(heads).transpose(1, 2)
        v = self.wv(x).view(heads).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        y = causal_attention(q, k, v)
        y = y.transpose(1, 2).reshape(batch, seq_len, self.n_heads * self.head_dim)
        return self.wo(y)


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x). (One matmul for w1 and w3 together measured slower on CPU
    at these widths: the split of its output and the join of its gradients cost more.)"""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.w1 = nn.Linear(cfg.d_model, cfg.ffn_hidden, bias=False)  # gate
        self.w3 = nn.Linear(cfg.d_model, cfg.ffn_hidden, bias=False)  # up
        self.w2 = nn.Linear(cfg.ffn_hidden, cfg.d_model, bias=False)  # down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.attention_norm = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.attention = Attention(cfg)
        self.ffn_norm = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.feed_forward = FeedForward(cfg)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.attention_norm(x), cos, sin)
        return x + self.feed_forward(self.ffn_norm(x))


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.vocab_size is None:
            raise CooldownError(
                "model.vocab_size is not set; the model cannot be built without it "
                "(the trainer fills it from the tokenizer: use cfg.with_vocab(V))"
            )
        self.cfg = cfg
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        # Tied: the logits reuse tok_embeddings.weight, so there is no `output.weight` at all (one
        # tensor in parameters() and in state_dict, which safetensors requires).
        self.output = (
            None if cfg.tie_embeddings else nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        )
        # Non-persistent: derived from the config, so they stay out of state_dict and checkpoints.
        self.register_buffer("rope_cos", torch.empty(0), persistent=False)
        self.register_buffer("rope_sin", torch.empty(0), persistent=False)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """(Re)initialise all weights and the RoPE tables (also after a meta-device build)."""
        cfg = self.cfg
        residual_std = cfg.init_std / math.sqrt(2 * cfg.n_layers)
        for name, param in self.named_parameters():
            if "norm" in name:
                nn.init.ones_(param)
            elif name.endswith(("attention.wo.weight", "feed_forward.w2.weight")):
                nn.init.normal_(param, mean=0.0, std=residual_std)
            else:
                nn.init.normal_(param, mean=0.0, std=cfg.init_std)
        cos, sin = rope_tables(cfg.head_dim, cfg.max_seq_len, cfg.rope_theta)
        device = self.tok_embeddings.weight.device
        self.rope_cos = cos.to(device)
        self.rope_sin = sin.to(device)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Token ids (B, T) -> float32 logits (B, T, vocab_size)."""
        seq_len = idx.shape[1]
        if seq_len > self.cfg.max_seq_len:
            raise CooldownError(
                f"sequence length {seq_len} exceeds model.max_seq_len {self.cfg.max_seq_len} "
                "(the length of the RoPE tables); raise model.max_seq_len"
            )
        x = self.tok_embeddings(idx)
        cos, sin = self.rope_cos[:seq_len], self.rope_sin[:seq_len]
        for layer in self.layers:
            x = layer(x, cos, sin)
        x = self.norm(x)
        head = self.tok_embeddings.weight if self.output is None else self.output.weight
        # float32 logits under bf16 autocast: the softmax over ~50k classes needs the precision.
        return F.linear(x, head).float()

    def loss(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean next-token cross-entropy (nats) of predicting `targets` (B, T) from `idx` (B, T)."""
        logits = self(idx)
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))


def no_weight_decay(name: str, param: torch.Tensor) -> bool:
    """True for what the paper leaves out of weight decay: embeddings, norms, any 1-D tensor."""
    return param.ndim < 2 or "norm" in name or name.startswith("tok_embeddings")
