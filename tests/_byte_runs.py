"""Overrides of a tiny run on a byte-tokenized corpus file (8 constant-LR steps, a checkpoint
every 4), shared by the reliability tests that build such runs."""

from __future__ import annotations

from pathlib import Path


def byte_run_overrides(source: Path, cache: Path) -> list[str]:
    return [
        f"data.source='{source}'",
        "data.tokenizer=bytes",
        "data.val_fraction=0.2",
        f"data.cache_dir='{cache}'",
        "model.preset=tiny-0.05M",
        "model.max_seq_len=32",
        "train.seq_len=32",
        "train.batch_size=4",
        "train.eval_batches=1",
        "train.progress=false",
        "train.final_full_eval=false",
        "schedule.kind=constant",
        "schedule.total_steps=8",
        "schedule.warmup_steps=1",
        "train.checkpoint_interval=4",
    ]
