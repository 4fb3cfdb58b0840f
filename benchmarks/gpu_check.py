"""The first-GPU check: train the 124M preset with bf16 + compile and report what it achieved.

    python benchmarks/gpu_check.py --out gpu-results          # on a GPU (benchmarks/gpu.sh runs it)
    torchrun --standalone --nproc_per_node 2 benchmarks/gpu_check.py --ddp --out gpu-results
    python benchmarks/gpu_check.py --dry-run --out /tmp/x     # on CPU: a tiny model, same checks

Runs `cooldown.train.train` (the real loop) on the embedded corpus (no network needed) and reads
its metrics.jsonl: tokens/s and MFU after the compile warm-up (MFU against the device's dense bf16
peak from `cooldown.device.GPU_BF16_PEAK_FLOPS`, e.g. H100/H200 989 TFLOP/s, with FLOPs by the
run's convention, "6N+attn" here), and whether the training loss of the first 50 steps is finite
and falling. Writes <out>/gpu_check.json (or ddp_check.json) and exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
from pathlib import Path

import torch

from cooldown.config import load_run_config
from cooldown.device import GPU_BF16_PEAK_FLOPS
from cooldown.fileio import atomic_write_json
from cooldown.metrics import read_metrics
from cooldown.train import train

LOSS_STEPS = 50  # the first steps whose loss must be finite and falling

GPU = [
    "model.preset=124M",
    "model.vocab_size=50304",  # GPT-2's padded vocabulary: the head costs what it will cost
    "model.max_seq_len=1024",
    "train.seq_len=1024",
    "train.batch_size=32",
    "data.max_bytes=30000000",  # the embedded corpus, enough windows for the steps
    "train.precision=bf16",
    "train.compile=true",
    "optim.lr=1e-3",
]
DRY = [  # the same path on CPU in seconds (a test runs it)
    "model.preset=tiny-0.05M",
    "model.max_seq_len=32",
    "train.seq_len=32",
    "train.batch_size=8",
    "train.precision=fp32",
    "train.compile=false",
    "optim.lr=3e-3",
    "data.max_bytes=1500000",
    "data.vocab_size=512",
]


def overrides(args) -> list[str]:
    steps = args.steps or (55 if args.dry_run else 300)
    out = [
        *(DRY if args.dry_run else GPU),
        "data.source=stdlib",
        "schedule.kind=constant",
        f"schedule.total_steps={steps}",
        "schedule.warmup_steps=10",
        "train.log_interval=5",
        f"train.eval_interval={steps}",
        "train.eval_batches=2",
        "train.final_full_eval=false",
        f"train.checkpoint_interval={steps}",
        "train.flop_convention=6N+attn",
        "train.progress=false",
    ]
    if args.ddp:
        out.append("train.parallelism=ddp")
    return out + list(args.set)


def loss_checks(records: list[dict]) -> dict:
    """Finite, and falling: the mean of the last two logged losses in the first LOSS_STEPS steps
    is below the first logged loss."""
    first = [(r["step"], r["train_loss"]) for r in records if "train_loss" in r]
    first = [(s, v) for s, v in first if s <= LOSS_STEPS]
    losses = [v for _, v in first]
    finite = bool(losses) and all(math.isfinite(v) for v in losses)
    falling = finite and len(losses) >= 3 and statistics.mean(losses[-2:]) < losses[0]
    return {"first_losses": first, "loss_finite": finite, "loss_falling": falling}


def speed(records: list[dict], device: torch.device) -> dict:
    """Median tokens/s and MFU over the logged steps after the first LOSS_STEPS (compile and
    warm-up lie before them)."""
    later = [r for r in records if r.get("step", 0) > LOSS_STEPS and "tokens_per_s" in r]
    out: dict = {"tokens_per_s": None, "mfu": None, "peak_flops": None, "device": str(device)}
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        out["device"] = name
        out["peak_flops"] = next((v for k, v in GPU_BF16_PEAK_FLOPS.items() if k in name), None)
        out["peak_flops_basis"] = "dense bf16 (cooldown.device.GPU_BF16_PEAK_FLOPS)"
    if later:
        out["tokens_per_s"] = statistics.median(r["tokens_per_s"] for r in later)
        mfus = [r["mfu"] for r in later if "mfu" in r]
        out["mfu"] = statistics.median(mfus) if mfus else None
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="folder for the run and the result file")
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny model: the check's own test")
    p.add_argument("--ddp", action="store_true", help="under torchrun: train.parallelism=ddp")
    p.add_argument("--steps", type=int, default=0, help="total steps (default 300; dry run 55)")
    p.add_argument("--set", nargs="*", default=[], help="more dotted overrides")
    args = p.parse_args(argv)
    out = Path(args.out)
    cfg = load_run_config(None, overrides(args))
    run_dir = out / ("ddp-run" if args.ddp else "run")
    result = train(cfg, run_dir)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    records = read_metrics(run_dir / "metrics.jsonl")
    device = torch.device("cuda" if torch.cuda.is_available() and not args.dry_run else "cpu")
    figures = {
        "overrides": overrides(args),
        "world_size": int(os.environ.get("WORLD_SIZE", "1")),
        "steps": result.steps,
        "flop_convention": result.flop_convention,
        **speed(records, device),
        **loss_checks(records),
    }
    figures["ok"] = figures["loss_finite"] and figures["loss_falling"]
    atomic_write_json(out / ("ddp_check.json" if args.ddp else "gpu_check.json"), figures)
    print(json.dumps({k: v for k, v in figures.items() if k != "overrides"}, indent=1))
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
