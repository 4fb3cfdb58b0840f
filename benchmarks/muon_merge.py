"""Muon vs AdamW step time, and merged stable-phase checkpoints vs a real cooldown, on a tiny model.

    .venv/bin/python benchmarks/muon_merge.py [--out benchmarks/muon_merge.json]

A smoke-scale measurement of the issue-17 features on CPU (the reproduction's experiments are
larger): a constant-LR AdamW run and a constant-LR Muon run of the same tiny model (ms/step of
each, in one process, one after the other), then, at the AdamW run's last step, the validation
loss of its raw weights, of `cooldown merge` over its last stable checkpoints (uniform, ema,
decay:1-sqrt) and of a 60-step linear cooldown branched from it at step 180 (the same number of updates).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from cooldown.branch import branch
from cooldown.checkpoint import load_checkpoint
from cooldown.config import load_run_config
from cooldown.data import ensure_prepared, validation_batches
from cooldown.evaluation import evaluate, load_weights_into
from cooldown.merge import merge
from cooldown.model import Transformer
from cooldown.train import train

# The smallest preset at a high constant LR: by step 240 it sits on its noise floor, where a
# cooldown pays off (tests/test_branch.py uses the same setting).
STEPS, EVERY, COOLDOWN, MERGED = 240, 10, 60, 5


def _overrides(cache: str) -> list[str]:
    return [
        "data.max_bytes=1500000",
        "data.val_fraction=0.1",
        "data.vocab_size=512",
        f"data.cache_dir='{cache}'",
        "model.preset=tiny-0.05M",
        "model.max_seq_len=64",
        "train.seq_len=64",
        "train.batch_size=16",
        "train.eval_batches=4",
        "train.eval_interval=100",
        "train.final_full_eval=false",
        "train.progress=false",
        "schedule.kind=constant",
        f"schedule.total_steps={STEPS}",
        "schedule.warmup_steps=10",
        f"train.checkpoint_interval={EVERY}",
        f"train.permanent_steps=[{', '.join(str(s) for s in range(EVERY, STEPS + 1, EVERY))}]",
    ]


def _val_loss(cfg, ckpt: Path) -> float:
    data = ensure_prepared(cfg.data, progress=False)
    model = Transformer(cfg.model.with_vocab(data.vocab_size))
    load_weights_into(model, load_checkpoint(ckpt).weights)
    batches = validation_batches(data.val, cfg.train.batch_size, cfg.train.seq_len)
    return evaluate(model, batches, torch.device("cpu"), "fp32")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("benchmarks/muon_merge.json"))
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="muon-merge-"))
    base = _overrides(str(root / "cache"))
    runs = {
        "adamw": ["optim.lr=3e-2"],
        "muon": ["optim.name=muon", "optim.lr=0.02", "optim.groups.embedding=0.15"],
    }
    result: dict = {"steps": STEPS, "torch_threads": torch.get_num_threads()}
    cfgs = {}
    for name, extra in runs.items():
        cfgs[name] = load_run_config(None, [*base, *extra])
        ensure_prepared(cfgs[name].data, progress=False)
        t0 = time.perf_counter()
        train(cfgs[name], root / name)
        result[f"{name}_ms_per_step"] = 1000 * (time.perf_counter() - t0) / STEPS
    result["muon_over_adamw_step_time"] = result["muon_ms_per_step"] / result["adamw_ms_per_step"]

    cfg, run = cfgs["adamw"], root / "adamw"
    losses = {"raw": _val_loss(cfg, run / "checkpoints" / f"step_{STEPS:07d}")}
    merged_steps = list(range(STEPS - (MERGED - 1) * EVERY, STEPS + 1, EVERY))
    for weighting in ("uniform", "ema", "decay:1-sqrt"):
        t0 = time.perf_counter()
        merged = merge(run, merged_steps, weighting)
        result[f"merge_s_{weighting}"] = time.perf_counter() - t0
        losses[f"merge {weighting}"] = _val_loss(cfg, merged.checkpoint)
    (child,) = branch(run, [STEPS - COOLDOWN], cooldown_steps=COOLDOWN)
    losses[f"cooldown linear {COOLDOWN} steps"] = _val_loss(
        cfg, child.run_dir / "checkpoints" / f"step_{STEPS:07d}"
    )
    result["merged_steps"] = merged_steps
    result["val_loss_at_last_step"] = losses
    for name in runs:
        result[f"{name}_val_loss_raw"] = _val_loss(
            cfgs[name], root / name / "checkpoints" / f"step_{STEPS:07d}"
        )
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
