"""The training loop: it learns, it resumes exactly, it stops cleanly on bad input or divergence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from _sigkill import straight_and_killed
from cooldown.checkpoint import list_checkpoints, load_checkpoint
from cooldown.config import load_run_config
from cooldown.data import BatchSampler, ensure_prepared, unigram_entropy
from cooldown.errors import CooldownError
from cooldown.metrics import read_metrics
from cooldown.train import TrainingDiverged, train


def _cfg(tiny_overrides, *extra):
    return load_run_config(None, [*tiny_overrides, *extra])


def _losses(run_dir: Path) -> list[tuple]:
    """Every logged loss by step: what exact resume must reproduce bit for bit."""
    return [
        (r["step"], r.get("train_loss"), r.get("val_loss"), r.get("lr"))
        for r in read_metrics(run_dir / "metrics.jsonl")
    ]


class _Interrupt(Exception):
    pass


def _interrupt_after(monkeypatch, n_batches: int) -> None:
    """Make the sampler raise on its (n+1)-th batch: a crash in the middle of a run."""
    original = BatchSampler.next_batch
    calls = {"n": 0}

    def next_batch(self):
        calls["n"] += 1
        if calls["n"] > n_batches:
            raise _Interrupt
        return original(self)

    monkeypatch.setattr(BatchSampler, "next_batch", next_batch)


def test_tiny_model_learns_well_below_unigram_entropy(tiny_overrides, tmp_path):
    cfg = _cfg(
        tiny_overrides,
        "schedule.total_steps=200",
        "schedule.warmup_steps=20",
        "train.eval_interval=50",
    )
    result = train(cfg, tmp_path / "run")
    entropy = unigram_entropy(ensure_prepared(cfg.data, progress=False).train)
    # ~5.3 nats/token for this slice; a model that learned nothing beyond unigrams sits at it.
    assert result.final_val_loss < entropy - 0.7
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert rows[0]["step"] == 0 and rows[-1]["step"] == 200
    assert all(r["flop_convention"] == "chinchilla" for r in rows)
    assert rows[-1]["tokens"] == 200 * 16 * 64
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["final_val_loss"] == result.final_val_loss
    assert manifest["params"] == sum(
        t.numel()
        for t in load_checkpoint(tmp_path / "run/checkpoints/step_0000200").weights.values()
    )


def test_lr_follows_the_schedule_every_step(tiny_overrides, tmp_path):
    cfg = _cfg(
        tiny_overrides,
        "schedule.total_steps=30",
        "schedule.warmup_steps=5",
        "schedule.cooldown_frac=0.4",
        "schedule.shape=1-sqrt",
        "train.log_interval=1",
    )
    train(cfg, tmp_path / "run")
    for r in read_metrics(tmp_path / "run" / "metrics.jsonl")[1:]:
        assert r["lr"] == pytest.approx(3e-3 * cfg.schedule.multiplier(r["step"]), abs=1e-15)
    assert read_metrics(tmp_path / "run" / "metrics.jsonl")[-1]["lr"] == 0.0


@pytest.mark.parametrize("optimizer", ["adamw", "schedule-free"])
def test_resume_after_crash_is_bitwise_identical(tiny_overrides, tmp_path, monkeypatch, optimizer):
    extra = [
        "schedule.total_steps=30",
        "schedule.warmup_steps=5",
        "train.eval_interval=10",
        "train.log_interval=1",
        "train.checkpoint_interval=8",
        "train.batch_size=8",
        "train.micro_batch_size=4",
        f"optim.name={optimizer}",
    ]
    if optimizer == "schedule-free":
        extra += ["schedule.kind=constant", "optim.betas=[0.95, 0.99]"]
        extra = [e for e in extra if "cooldown" not in e]
    cfg = _cfg(tiny_overrides, *extra)
    reference = train(cfg, tmp_path / "straight")

    with monkeypatch.context() as m:
        _interrupt_after(m, 19)  # dies during step 20; the last checkpoint is step 16
        with pytest.raises(_Interrupt):
            train(cfg, tmp_path / "crashed")
    assert list_checkpoints(tmp_path / "crashed") == [8, 16]
    resumed = train(cfg, tmp_path / "crashed")
    assert resumed.resumed_from_step == 16
    assert _losses(tmp_path / "crashed") == _losses(tmp_path / "straight")
    assert resumed.final_val_loss == reference.final_val_loss


def test_schedule_free_evaluates_and_saves_the_averaged_weights(tiny_overrides, tmp_path):
    cfg = _cfg(
        tiny_overrides,
        "schedule.kind=constant",
        "schedule.total_steps=12",
        "schedule.warmup_steps=3",
        "optim.name=schedule-free",
        "train.checkpoint_interval=6",
    )
    train(cfg, tmp_path / "run")
    ckpt = load_checkpoint(tmp_path / "run/checkpoints/step_0000012")
    opt_state = ckpt.state["optimizer"]
    # Saved in eval mode: the weights are x (the average), and the optimizer knows it.
    assert all(g["train_mode"] is False for g in opt_state["param_groups"])
    beta1 = opt_state["param_groups"][0]["betas"][0]
    # y (the point gradients are taken at) = (1 - beta1) z + beta1 x differs from the saved x.
    name = "layers.0.attention.wq.weight"
    z = opt_state["state"][_param_index(opt_state, ckpt, name)]["z"]
    y = torch.lerp(ckpt.weights[name], z, 1 - beta1)
    assert not torch.allclose(y, ckpt.weights[name])


def _param_index(opt_state, ckpt, name) -> int:
    # The decayed group lists 2-D non-embedding weights in model order; find our tensor's id.
    decayed = [k for k, v in ckpt.weights.items() if v.ndim == 2 and "embed" not in k]
    return opt_state["param_groups"][0]["params"][decayed.index(name)]


def test_non_finite_loss_stops_with_the_step_and_keeps_the_last_checkpoint(
    tiny_overrides, tmp_path, monkeypatch
):
    from cooldown.model import Transformer

    cfg = _cfg(
        tiny_overrides,
        "schedule.total_steps=20",
        "schedule.warmup_steps=2",
        "train.checkpoint_interval=4",
    )
    original = Transformer.loss
    calls = {"n": 0}

    def loss(self, idx, targets):
        value = original(self, idx, targets)
        if self.training:
            calls["n"] += 1
            if calls["n"] == 7:
                return value * float("nan")
        return value

    monkeypatch.setattr(Transformer, "loss", loss)
    with pytest.raises(
        TrainingDiverged, match=r"non-finite training loss \(nan\) at step 7.*step_0000004"
    ):
        train(cfg, tmp_path / "run")
    assert list_checkpoints(tmp_path / "run") == [4]
    load_checkpoint(tmp_path / "run/checkpoints/step_0000004")  # still intact


def test_corrupt_checkpoint_is_one_clear_error_and_nothing_is_overwritten(tiny_overrides, tmp_path):
    cfg = _cfg(
        tiny_overrides,
        "schedule.total_steps=8",
        "schedule.warmup_steps=2",
        "train.checkpoint_interval=4",
    )
    train(cfg, tmp_path / "run")
    weights = tmp_path / "run/checkpoints/step_0000008/model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0xFF
    weights.write_bytes(bytes(data))
    # A finished run is reported from its manifest; without one the checkpoint must be loaded.
    (tmp_path / "run/manifest.json").unlink()
    with pytest.raises(CooldownError, match=r"model\.safetensors.*checksum mismatch"):
        train(cfg, tmp_path / "run")
    assert weights.read_bytes() == bytes(data)


def test_run_dir_with_another_config_is_refused(tiny_overrides, tmp_path):
    short = ["schedule.total_steps=4", "schedule.warmup_steps=1"]
    train(_cfg(tiny_overrides, *short), tmp_path / "run")
    with pytest.raises(CooldownError, match=r"different config \(optim.lr differ"):
        train(_cfg(tiny_overrides, *short, "optim.lr=1e-2"), tmp_path / "run")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.batch_size=0", "train.batch_size: Input should be greater than 0"),
        ("train.bacth_size=4", "train.bacth_size: Extra inputs are not permitted"),
        (
            "train.micro_batch_size=5",
            "train.micro_batch_size: batch_size 16 is not a multiple of micro_batch_size 5",
        ),
        ("train.precision=fp8", "train.precision: Input should be 'auto', 'fp32' or 'bf16'"),
        ("optim.name=sgd", "optim.name: Input should be 'adamw', 'schedule-free' or 'muon'"),
        ("schedule.shape=triangle", "schedule.shape: Input should be 'linear', '1-sqrt'"),
        ("schedule.total_steps=20", "schedule.warmup_steps: warmup (30 steps) ends after"),
        ("train.seq_len=128", "train.seq_len 128 exceeds model.max_seq_len 64"),
        ("optim.name=schedule-free", "schedule-free AdamW needs kind = 'constant'"),
    ],
)
def test_config_errors_name_the_field(tiny_overrides, override, message):
    with pytest.raises(CooldownError) as info:
        _cfg(tiny_overrides, override)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_sigkill_at_any_moment_then_rerun_gives_identical_losses(tiny_overrides, tmp_path):
    """A real process, really killed: rerunning the same command finishes the run exactly."""
    args = [
        *tiny_overrides,
        "schedule.total_steps=60",
        "train.checkpoint_interval=10",
        "train.log_interval=1",
        "train.eval_interval=20",
        "model.preset=tiny-0.05M",
    ]
    straight, victim = straight_and_killed(args, tmp_path, 60, pause_s=0.15)
    assert _losses(victim) == _losses(straight)
