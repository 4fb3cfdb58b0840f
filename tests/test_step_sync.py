"""The training step reads nothing on the host between log steps, and that changes no number.

On CPU a host read costs nothing, so the test counts them: every `.item()`, `float()`, `int()`,
`bool()`, `.tolist()` and `.numpy()` of a tensor, by the step it happens in. On a GPU each one would
wait for the queued kernels. Two kinds of read are not device reads and are left out: the data
sampler's (host tensors by design) and AdamW's step counters (host tensors unless fused or
capturable, which torch keeps on the CPU precisely to avoid a synchronisation).
"""

from __future__ import annotations

import json

import pytest
import torch

import cooldown.train as train_module
from cooldown.checkpoint import list_checkpoints, load_checkpoint
from cooldown.config import load_run_config
from cooldown.data import BatchSampler
from cooldown.metrics import read_metrics
from cooldown.train import TrainingDiverged, train

_READS = ("item", "__float__", "__int__", "__bool__", "__index__", "tolist", "numpy")


def _cfg(tiny_overrides, *extra):
    return load_run_config(
        None,
        [
            *tiny_overrides,
            "schedule.total_steps=12",
            "schedule.warmup_steps=2",
            "train.eval_interval=12",
            "train.checkpoint_interval=12",
            *extra,
        ],
    )


def _count_host_reads(monkeypatch) -> dict[int, int]:
    """Host reads by step (step n: from its batch being drawn to the next batch being drawn)."""
    reads: dict[int, int] = {}
    where = {"step": 0, "in_sampler": False}
    optimizers = []

    def counted(name):
        original = getattr(torch.Tensor, name)

        def read(self, *args, **kwargs):
            steps = (s.get("step") for o in optimizers for s in o.optimizer.state.values())
            if not where["in_sampler"] and not any(self is s for s in steps):
                reads[where["step"]] = reads.get(where["step"], 0) + 1
            return original(self, *args, **kwargs)

        return read

    for name in _READS:
        monkeypatch.setattr(torch.Tensor, name, counted(name))

    next_batch = BatchSampler.next_batch

    def drawn(self):
        where["step"] += 1
        where["in_sampler"] = True
        try:
            return next_batch(self)
        finally:
            where["in_sampler"] = False

    monkeypatch.setattr(BatchSampler, "next_batch", drawn)
    build = train_module.build_optimizer

    def built(*args, **kwargs):
        optimizers.append(build(*args, **kwargs))
        return optimizers[-1]

    monkeypatch.setattr(train_module, "build_optimizer", built)
    return reads


@pytest.mark.parametrize("micro", [None, 8])
def test_no_host_reads_between_log_steps(tiny_overrides, tmp_path, monkeypatch, micro):
    extra = ["train.log_interval=4"] + ([f"train.micro_batch_size={micro}"] if micro else [])
    reads = _count_host_reads(monkeypatch)
    train(_cfg(tiny_overrides, *extra), tmp_path / "run")
    between = {s: reads.get(s, 0) for s in range(1, 13) if s % 4}
    assert between == dict.fromkeys(between, 0)
    # The counter does see reads: the log steps read their loss and gradient norm.
    assert all(reads.get(s, 0) >= 2 for s in (4, 8, 12))


def test_logged_values_and_weights_do_not_depend_on_when_the_host_looks(tiny_overrides, tmp_path):
    """Reading every step (log_interval 1) or every 4th gives bitwise the same numbers."""
    runs = {}
    for interval in (1, 4):
        run_dir = tmp_path / f"log{interval}"
        train(
            _cfg(tiny_overrides, f"train.log_interval={interval}", "train.micro_batch_size=8"),
            run_dir,
        )
        runs[interval] = (
            {
                r["step"]: (r.get("train_loss"), r.get("grad_norm"))
                for r in read_metrics(run_dir / "metrics.jsonl")
            },
            load_checkpoint(run_dir / "checkpoints/step_0000012").weights,
        )
    (every, w1), (fourth, w4) = runs[1], runs[4]
    assert sorted(fourth) == [0, 4, 8, 12]
    assert all(every[s] == fourth[s] for s in fourth)
    assert all(torch.equal(w1[k], w4[k]) for k in w1)


def test_non_finite_gradient_norm_is_caught_at_the_next_log_step(
    tiny_overrides, tmp_path, monkeypatch
):
    """A step with an infinite gradient norm (its loss finite) between log steps: the run stops
    at the next log step, names the step it began, logs nothing after it and keeps its last good
    checkpoint."""
    calls = {"n": 0}
    original = train_module.grad_norm

    def grad_norm(model, max_norm):
        calls["n"] += 1
        norm = original(model, max_norm)
        return norm * float("inf") if calls["n"] == 5 else norm

    monkeypatch.setattr(train_module, "grad_norm", grad_norm)
    cfg = _cfg(tiny_overrides, "train.log_interval=3", "train.checkpoint_interval=4")
    with pytest.raises(
        TrainingDiverged, match=r"non-finite gradient norm \(inf\) at step 5.*step_0000004"
    ):
        train(cfg, tmp_path / "run")
    assert list_checkpoints(tmp_path / "run") == [4]
    logged = [json.loads(line)["step"] for line in (tmp_path / "run/metrics.jsonl").open()]
    assert logged == [0, 3]
