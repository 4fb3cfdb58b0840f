"""bf16 autocast against fp32 on this CPU, for the model sizes a CPU preset could use.

    python benchmarks/bf16_vs_fp32.py

One thread (as `cooldown reproduce`'s workers train), the project's model and AdamW, a batch of
8 x 128 random tokens; tokens/s is the median over steps 3-12 of each. Prints one line per size
with the ratio bf16/fp32 (above 1: bf16 faster). Results: benchmarks/RESULTS.md.
"""

from __future__ import annotations

import time

import torch

from cooldown.model import Transformer
from cooldown.model_sizes import ModelConfig, param_count

VOCAB = 512
SIZES = [(4, 32, 2), (4, 64, 4), (6, 96, 6), (6, 128, 4), (8, 128, 8)]  # layers, width, heads


def tokens_per_s(layers: int, width: int, heads: int, precision: str, seq=128, batch=8, steps=12):
    cfg = ModelConfig(
        n_layers=layers, d_model=width, n_heads=heads, ffn_multiple_of=32, max_seq_len=seq
    ).with_vocab(VOCAB)
    torch.manual_seed(0)
    model = Transformer(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = torch.randint(0, VOCAB, (batch, seq)), torch.randint(0, VOCAB, (batch, seq))
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = model.loss(x, y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - t)
    kept = sorted(times[2:])
    return param_count(cfg), batch * seq / kept[len(kept) // 2]


def main() -> None:
    torch.set_num_threads(1)
    for layers, width, heads in SIZES:
        n, fp32 = tokens_per_s(layers, width, heads, "fp32")
        _, bf16 = tokens_per_s(layers, width, heads, "bf16")
        print(
            f"{layers}x{width} ({n:,} parameters): fp32 {fp32:,.0f} tokens/s, bf16 {bf16:,.0f}"
            f" tokens/s, bf16/fp32 {bf16 / fp32:.2f}"
        )


if __name__ == "__main__":
    main()
