"""Data parallelism with real processes: torchrun, gloo, 2 ranks on CPU (cooldown.distributed).

DDP and FSDP2 with 2 ranks x B/2 match one process with B; checkpoints saved by 2 ranks resume in 1
and the reverse; weight averages under FSDP2 stay shard-local and match; branches start from
distributed checkpoints; a killed rank ends the job quickly and the rerun resumes exactly. The NCCL
(CUDA) path is not exercised here: CI has no GPU.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cooldown.averaging import AveragingConfig, WeightAverages
from cooldown.branch import make_branch_config
from cooldown.checkpoint import (
    checkpoint_path,
    is_sharded,
    list_checkpoints,
    load_checkpoint,
    verify_checkpoint,
)
from cooldown.config import load_run_config
from cooldown.data import BatchSampler
from cooldown.distributed import init_distributed
from cooldown.errors import CooldownError
from cooldown.metrics import read_metrics
from cooldown.model import Transformer
from cooldown.model_sizes import ModelConfig
from cooldown.sharded_checkpoint import read_dcp_metadata, sharded_entries
from cooldown.train import accumulation_steps, train

RUN = [
    "schedule.total_steps=20",
    "schedule.warmup_steps=5",
    "train.log_interval=1",
    "train.eval_interval=10",
    "train.checkpoint_interval=10",
    "train.eval_batches=3",
    "train.micro_batch_size=4",  # 16 = 4 x 4 accumulation in one process, 4 x 2 x 2 ranks
    "averaging.swa_window=5",
    "averaging.lawa_windows=[2]",
    "averaging.ema_decay=0.9",
]


def _torchrun(args: list[str], out: Path, nproc: int = 2) -> str:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += [f"--nproc_per_node={nproc}", "-m", "cooldown", "train", *args, "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc.stdout


def _losses(run_dir: Path) -> dict[int, dict[str, float]]:
    """Every logged loss and gradient norm by step."""
    return {
        r["step"]: {k: v for k, v in r.items() if "loss" in k or k == "grad_norm"}
        for r in read_metrics(run_dir / "metrics.jsonl")
    }


def _assert_close(got: dict, want: dict) -> None:
    """Equal up to float rounding: summing gradients and losses over ranks rounds differently.
    Gradient norms (small sums of squares, after steps that compound the rounding) get 1e-4."""
    assert got.keys() == want.keys()
    for step in want:
        assert got[step].keys() == want[step].keys(), step
        for key, value in want[step].items():
            rel = 1e-4 if key == "grad_norm" else 1e-5
            assert got[step][key] == pytest.approx(value, rel=rel), (step, key)


def _cut_back(src: Path, dst: Path, step: int) -> Path:
    """A copy of `src` as a job killed after its checkpoint at `step` left it."""
    shutil.copytree(src, dst)
    for s in list_checkpoints(dst):
        if s > step:
            shutil.rmtree(checkpoint_path(dst, s))
    manifest = json.loads((dst / "manifest.json").read_text())
    manifest["status"] = "running"
    (dst / "manifest.json").write_text(json.dumps(manifest))
    return dst


@pytest.fixture(scope="module")
def runs(tiny_overrides, tmp_path_factory) -> dict[str, Path]:
    """The same run three ways: one process, 2 ranks with DDP, 2 ranks with FSDP2."""
    root = tmp_path_factory.mktemp("parallel")
    train(load_run_config(None, [*tiny_overrides, *RUN]), root / "single")
    for kind in ("ddp", "fsdp"):
        _torchrun([*tiny_overrides, *RUN, f"train.parallelism={kind}"], root / kind)
    return {"single": root / "single", "ddp": root / "ddp", "fsdp": root / "fsdp"}


@pytest.mark.parametrize("kind", ["ddp", "fsdp"])
def test_two_ranks_with_half_batches_match_one_process(runs, kind):
    single, parallel = runs["single"], runs[kind]
    # Every step logged once (rank 0 alone writes), with the same losses up to float rounding.
    assert [r["step"] for r in read_metrics(parallel / "metrics.jsonl")] == list(range(21))
    _assert_close(_losses(parallel), _losses(single))
    manifest = json.loads((parallel / "manifest.json").read_text())
    reference = json.loads((single / "manifest.json").read_text())
    assert (manifest["parallelism"], manifest["world_size"]) == (kind, 2)
    assert manifest["tokens"] == reference["tokens"] == 20 * 16 * 64
    assert manifest["final_val_loss"] == pytest.approx(reference["final_val_loss"], rel=1e-6)

    ckpt = checkpoint_path(parallel, 20)
    assert is_sharded(ckpt) and not is_sharded(checkpoint_path(single, 20))
    listed = json.loads((ckpt / "checksum.json").read_text())["files"]
    assert {"dcp/.metadata", "dcp/__0_0.distcp", "dcp/__1_0.distcp"} <= set(listed)
    # The full weights beside the shards, for single-process readers (export, interpolate).
    full, plain = load_checkpoint(ckpt), load_checkpoint(checkpoint_path(single, 20))
    assert full.weights.keys() == plain.weights.keys()
    for name, tensor in plain.weights.items():
        torch.testing.assert_close(full.weights[name], tensor, rtol=1e-4, atol=1e-5)


def test_fsdp_weight_averages_match_one_process(runs):
    single, fsdp = runs["single"], runs["fsdp"]
    last = _losses(fsdp)[20]
    assert {"val_loss_swa", "val_loss_lawa2", "val_loss_ema"} <= last.keys()
    manifest = json.loads((fsdp / "manifest.json").read_text())
    reference = json.loads((single / "manifest.json").read_text())
    for name in ("swa", "lawa2", "ema"):
        want = reference[f"final_val_loss_{name}"]
        assert manifest[f"final_val_loss_{name}"] == pytest.approx(want, rel=1e-6)
        got = load_checkpoint(checkpoint_path(fsdp, 20)).extra_weights[name]
        for k, v in load_checkpoint(checkpoint_path(single, 20)).extra_weights[name].items():
            torch.testing.assert_close(got[k], v, rtol=1e-4, atol=1e-5)
    windows = sorted(p.name for p in (fsdp / "averages").iterdir())
    assert windows == sorted(p.name for p in (single / "averages").iterdir())
    for name in windows:
        got, want = load_file(fsdp / "averages" / name), load_file(single / "averages" / name)
        for k, v in want.items():
            torch.testing.assert_close(got[k], v, rtol=1e-4, atol=1e-5)
    # Stored sharded too (what a resume at any world size reads), besides the full files.
    entries = sharded_entries(checkpoint_path(fsdp, 20))
    assert "averages.swa.tok_embeddings.weight" in entries
    assert "averages.ema.layers.0.attention.wq.weight" in entries


def test_fsdp_averages_are_dtensor_shards_of_the_parameters():
    """Averaging the model's own state dict under FSDP2 keeps each rank's shard: no gather."""
    from torch.distributed.tensor import DTensor

    cfg = ModelConfig(preset="tiny-0.05M").with_vocab(64)
    torch.manual_seed(0)
    plain = Transformer(cfg)
    sharded = Transformer(cfg)
    sharded.load_state_dict(plain.state_dict())
    ctx = init_distributed("fsdp", "cpu", 60)
    try:
        ctx.parallelize(sharded)
        avg_cfg = AveragingConfig(swa_window=2, ema_decay=0.5)
        plain_avg, sharded_avg = WeightAverages(avg_cfg), WeightAverages(avg_cfg)
        for step in (1, 2):
            with torch.no_grad():
                for model in (plain, sharded):
                    for p in model.parameters():
                        p.mul_(1.5)
            plain_avg.update(step, plain.state_dict())
            sharded_avg.update(step, sharded.state_dict())
        for name, weights in sharded_avg.averages().items():
            params = sharded.state_dict()
            for k, t in weights.items():
                assert isinstance(t, DTensor) and t.placements == params[k].placements
                assert t.to_local().shape == params[k].to_local().shape
                assert t.to_local().dtype == torch.float32
                torch.testing.assert_close(t.full_tensor(), plain_avg.averages()[name][k])
    finally:
        ctx.close()


@pytest.mark.parametrize("kind", ["ddp", "fsdp"])
def test_checkpoint_saved_by_two_ranks_resumes_in_one_process(runs, tiny_overrides, tmp_path, kind):
    run_dir = _cut_back(runs[kind], tmp_path / "resumed", 10)
    result = train(
        load_run_config(None, [*tiny_overrides, *RUN, f"train.parallelism={kind}"]), run_dir
    )
    assert result.resumed_from_step == 10
    _assert_close(_losses(run_dir), _losses(runs[kind]))
    _assert_close(_losses(run_dir), _losses(runs["single"]))
    assert json.loads((run_dir / "manifest.json").read_text())["world_size"] == 1


class _Stop(Exception):
    pass


def test_checkpoint_saved_by_one_process_resumes_with_two_ranks(
    runs, tiny_overrides, tmp_path, monkeypatch
):
    args = [*tiny_overrides, *RUN, "train.parallelism=fsdp"]
    draw = BatchSampler.next_batch

    def next_batch(self):  # one process trains 10 updates (a checkpoint), then dies
        if self.batches_drawn == 10:
            raise _Stop
        return draw(self)

    with monkeypatch.context() as m:
        m.setattr(BatchSampler, "next_batch", next_batch)
        with pytest.raises(_Stop):
            train(load_run_config(None, args), tmp_path / "one")
    run_dir = _cut_back(tmp_path / "one", tmp_path / "two", 10)
    assert len(list((checkpoint_path(run_dir, 10) / "dcp").glob("*.distcp"))) == 1
    _torchrun(args, run_dir)
    _assert_close(_losses(run_dir), _losses(runs["single"]))
    assert json.loads((run_dir / "manifest.json").read_text())["world_size"] == 2
    assert len(list((checkpoint_path(run_dir, 20) / "dcp").glob("*.distcp"))) == 2


def test_branch_of_a_two_rank_run_trains_in_one_process(runs, tmp_path):
    """A cooldown branched from the FSDP run's step-10 checkpoint, trained by one process, equals
    the same branch of the single-process run; so does an fsdp branch of the single-process run
    (its plain checkpoint cut into shards), and a plain one-process branch of the FSDP run."""

    def branch_of(parent: Path, parallelism: str | None = None):
        cfg = make_branch_config(
            load_run_config(parent / "config.toml"), parent, 10, cooldown_steps=4, shape="1-sqrt"
        )
        if parallelism is not None:
            cfg = cfg.model_copy(
                update={"train": cfg.train.model_copy(update={"parallelism": parallelism})}
            )
        return cfg

    results = {
        "single": train(branch_of(runs["single"]), tmp_path / "single"),
        "fsdp": train(branch_of(runs["fsdp"]), tmp_path / "fsdp"),
        "single-to-fsdp": train(branch_of(runs["single"], "fsdp"), tmp_path / "single-to-fsdp"),
        "fsdp-to-single": train(branch_of(runs["fsdp"], "none"), tmp_path / "fsdp-to-single"),
    }
    for kind in ("fsdp", "single-to-fsdp", "fsdp-to-single"):
        assert results[kind].steps == 14
        _assert_close(_losses(tmp_path / kind), _losses(tmp_path / "single"))
        want = results["single"].final_val_loss
        assert results[kind].final_val_loss == pytest.approx(want, rel=1e-6)
    assert is_sharded(checkpoint_path(tmp_path / "single-to-fsdp", 14))
    assert not is_sharded(checkpoint_path(tmp_path / "fsdp-to-single", 14))


def _rank_pid(parent_pid: int, rank: int) -> int | None:
    """The pid of torchrun's worker with RANK=rank (Linux /proc)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            env = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat[1]) == parent_pid and f"RANK={rank}".encode() in env:
            return int(entry)
    return None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the worker in /proc")
def test_killed_rank_ends_the_job_and_the_rerun_resumes_exactly(tiny_overrides, tmp_path):
    args = [
        *tiny_overrides,
        "model.preset=tiny-0.05M",
        "schedule.total_steps=16",
        "schedule.warmup_steps=2",
        "train.log_interval=1",
        "train.eval_interval=8",
        "train.checkpoint_interval=2",
        "train.keep_last=50",
        "train.parallelism=fsdp",
        "train.dist_timeout_s=60",
    ]
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += ["-m", "cooldown", "train", *args, "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    job = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while not list_checkpoints(out) and time.monotonic() < deadline:
            time.sleep(0.01)
        # Preferably while the next checkpoint is being written (a half-written one is left).
        soon = time.monotonic() + 3
        while time.monotonic() < soon and not list((out / "checkpoints").glob(".tmp-*")):
            time.sleep(0.002)
        victim = _rank_pid(job.pid, 1)
        assert victim is not None and job.poll() is None, "the job ended before the kill"
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        output, _ = job.communicate(timeout=120)
    finally:
        if job.poll() is None:
            job.kill()
    # The other rank and torchrun stop within seconds (not train.dist_timeout_s), naming the cause.
    assert time.monotonic() - killed_at < 30
    assert job.returncode != 0
    assert "Signal 9 (SIGKILL)" in output and re.search(r"rank\s*:\s*1 ", output), output[-3000:]
    done = list_checkpoints(out)
    assert done and done[-1] < 16, "the job finished before it was killed; nothing tested"
    for step in done:  # whatever the kill interrupted, nothing incomplete lists as complete
        verify_checkpoint(checkpoint_path(out, step))
    killed_lines = read_metrics(out / "metrics.jsonl")
    stamps = {s: (checkpoint_path(out, s) / "checksum.json").stat().st_mtime_ns for s in done}

    _torchrun(args, out)
    rows = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(17))
    # Resumed from the last complete checkpoint (the earlier ones were not written again), and the
    # steps the killed job had logged after it come out bitwise the same at the same world size.
    assert all(
        (checkpoint_path(out, s) / "checksum.json").stat().st_mtime_ns == stamps[s] for s in done
    )
    redone = [r for r in killed_lines if r["step"] > done[-1]]
    by_step = {r["step"]: r for r in rows}
    key = ("step", "train_loss", "grad_norm", "val_loss", "lr")
    assert [[r.get(k) for k in key] for r in redone] == [
        [by_step[r["step"]].get(k) for k in key] for r in redone
    ]
    assert not list((out / "checkpoints").glob(".*"))  # the killed job's scratch folders are gone
    assert list_checkpoints(out)[-1] == 16


# --- configuration and safety, no processes ------------------------------------------------------


def test_global_batch_must_split_into_micro_batches_on_every_rank(tiny_overrides):
    tc = load_run_config(None, [*tiny_overrides, "train.micro_batch_size=8"]).train
    assert accumulation_steps(tc, 1) == 2 and accumulation_steps(tc, 2) == 1
    with pytest.raises(CooldownError, match=r"train.micro_batch_size 8 does not divide the 4 "):
        accumulation_steps(tc, 4)
    with pytest.raises(CooldownError, match=r"train.batch_size 16 is not divisible by the world"):
        accumulation_steps(tc, 3)


def test_several_processes_need_a_parallelism(tiny_overrides, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(CooldownError, match=r"train.parallelism is 'none' but this process is one"):
        init_distributed("none", "cpu", 60)
    with pytest.raises(CooldownError, match=r"train.nproc_per_node: 2 processes need"):
        load_run_config(None, [*tiny_overrides, "train.nproc_per_node=2"])


def test_dcp_metadata_that_would_run_code_is_refused(runs, tmp_path):
    ckpt = shutil.copytree(checkpoint_path(runs["fsdp"], 20), tmp_path / "step_0000020")
    assert read_dcp_metadata(ckpt / "dcp" / ".metadata").state_dict_metadata
    (ckpt / "dcp" / ".metadata").write_bytes(pickle.dumps(os.getcwd))
    with pytest.raises(CooldownError, match=r"posix.getcwd is not part of a DCP metadata file"):
        read_dcp_metadata(ckpt / "dcp" / ".metadata")
    manifest = json.loads((ckpt / "checksum.json").read_text())
    manifest["files"]["dcp/../state.pt"] = manifest["files"]["state.pt"]
    (ckpt / "checksum.json").write_text(json.dumps(manifest))
    with pytest.raises(CooldownError, match=r"checksum.json is malformed"):
        verify_checkpoint(ckpt)


def test_study_runner_starts_torchrun_for_a_node_with_several_processes(tmp_path, monkeypatch):
    from cooldown.study import backends
    from cooldown.study.state import node_locked

    run_dir = tmp_path / "runs" / "n1"
    run_dir.mkdir(parents=True)
    (run_dir / "config.toml").write_text('[train]\nparallelism = "fsdp"\nnproc_per_node = 2\n')
    started: dict = {}

    class FakeProcess:
        pid, returncode = 4242, None

        def __init__(self, cmd, **kwargs):
            started.update(cmd=cmd, **kwargs)

        def poll(self):
            return self.returncode

    monkeypatch.setattr(backends.subprocess, "Popen", FakeProcess)
    handle = backends.LocalBackend(tmp_path, threads=4).start("n1")
    assert started["cmd"] == [
        sys.executable,
        *("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"),
        *("-m", "cooldown", "train", "--config", "runs/n1/config.toml", "--out", "runs/n1"),
    ]
    assert started["cwd"] == tmp_path and started["env"]["OMP_NUM_THREADS"] == "2"
    # The runner holds the node's lock for the ranks: a second start finds the node busy.
    assert node_locked(tmp_path, "n1")
    assert backends.LocalBackend(tmp_path, threads=4).start("n1").poll().busy
    assert handle.poll() is None
    handle.proc.returncode = 0
    assert handle.poll().ok and not node_locked(tmp_path, "n1")


def test_a_study_node_with_two_processes_trains_inside_one_submitit_job(tmp_path, data_cache):
    """`[train] nproc_per_node = 2` under `--backend slurm` (here submitit's local executor): the
    job runs torchrun with two gloo ranks, and the run records both."""
    import tomli_w

    from cooldown.configio import read_toml
    from cooldown.study.runner import run_study

    spec = read_toml(Path(__file__).resolve().parents[1] / "configs" / "studies" / "tiny.toml")
    spec.update(
        batch_size=8,
        seq_len=32,
        warmup_steps=2,
        sizes=[{"preset": "tiny-0.05M", "steps": [8]}],
        data={
            "max_bytes": 1500000,
            "val_fraction": 0.1,
            "vocab_size": 512,
            "cache_dir": data_cache,
        },
        train={
            "eval_interval": 4,
            "eval_batches": 2,
            "progress": False,
            "parallelism": "ddp",
            "nproc_per_node": 2,
        },
    )
    spec["methods"] = {"cosine": spec["methods"]["cosine"]}
    (tmp_path / "study.toml").write_text(tomli_w.dumps(spec))
    report = run_study(
        tmp_path / "study.toml", backend="submitit-local", threads=2, log=lambda line: None
    )
    assert not report.failed and len(report.done_now) == 1
    run = next((tmp_path / "runs").iterdir())
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["world_size"] == 2
