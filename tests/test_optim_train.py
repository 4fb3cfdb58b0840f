"""Muon, per-group LRs and cooldown-phase settings in real training runs: logged, resumed after a
SIGKILL bit for bit, and a branch with cooldown settings is bitwise the run from scratch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from _sigkill import straight_and_killed
from cooldown.branch import branch
from cooldown.cli import main
from cooldown.config import load_run_config
from cooldown.metrics import read_metrics
from cooldown.train import train

MUON = [
    "model.preset=tiny-0.05M",
    "model.tie_embeddings=false",
    "optim.name=muon",
    "optim.lr=0.02",
    "optim.groups.embedding=0.15",
    "optim.groups.unembedding=0.05",
    "optim.groups.scalar=0.15",
    "train.log_interval=1",
    "train.eval_interval=10",
]
BRANCH, LENGTH = 12, 8
COOLDOWN = {"betas": [0.8, 0.99], "muon_momentum": 0.8, "weight_decay": 0.0}


def _losses(run_dir: Path) -> dict[int, tuple]:
    return {
        r["step"]: tuple(v for k, v in sorted(r.items()) if k.endswith("loss") or "lr" in k)
        for r in read_metrics(run_dir / "metrics.jsonl")
    }


def test_each_groups_logged_lr_is_its_multiplier_times_the_schedule(tiny_overrides, tmp_path):
    cfg = load_run_config(
        None,
        [*tiny_overrides, *MUON, "schedule.total_steps=12", "schedule.warmup_steps=3"],
    )
    train(cfg, tmp_path / "run")
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")[1:]
    assert [r["step"] for r in rows] == list(range(1, 13))
    mult = cfg.optim.group_lrs.model_dump()
    for r in rows:
        scheduled = 0.02 * cfg.schedule.multiplier(r["step"])
        assert r["lr"] == scheduled
        assert {k: r[k] for k in r if k.startswith("lr_")} == {
            f"lr_{g}": scheduled * m for g, m in mult.items()
        }


def test_muon_run_killed_at_any_moment_resumes_bitwise(tiny_overrides, tmp_path):
    """A real process, really killed: rerunning the same command finishes the run exactly."""
    args = [
        *tiny_overrides,
        *MUON,
        "schedule.total_steps=24",
        "schedule.warmup_steps=4",
        "train.checkpoint_interval=4",
        "train.final_full_eval=false",
    ]
    straight, victim = straight_and_killed(args, tmp_path, 24, pause_s=0.1)
    assert _losses(victim) == _losses(straight)


@pytest.fixture(scope="module")
def cooled(tiny_overrides, tmp_path_factory):
    """A constant Muon parent, its branch with [optim.cooldown] settings, the WSD run from scratch
    with the same settings, and the same branch without them."""
    root = tmp_path_factory.mktemp("phases")
    common = [*tiny_overrides, *MUON, "schedule.warmup_steps=4", "train.checkpoint_interval=6"]
    parent_cfg = load_run_config(
        None,
        [
            *common,
            "schedule.kind=constant",
            f"schedule.total_steps={BRANCH + LENGTH}",
            f"train.permanent_steps=[{BRANCH}]",
        ],
    )
    train(parent_cfg, root / "parent")
    child, plain = [
        branch(root / "parent", [BRANCH], cooldown_steps=LENGTH, optim_cooldown=c)[0]
        for c in (COOLDOWN, None)
    ]
    scratch_cfg = load_run_config(
        None,
        [
            *common,
            "schedule.kind=wsd",
            f"schedule.total_steps={BRANCH + LENGTH}",
            f"schedule.cooldown_steps={LENGTH}",
            "schedule.shape=linear",
            "optim.cooldown.betas=[0.8, 0.99]",
            "optim.cooldown.muon_momentum=0.8",
            "optim.cooldown.weight_decay=0.0",
        ],
    )
    scratch = train(scratch_cfg, root / "scratch")
    return {"parent": root / "parent", "child": child, "plain": plain, "scratch": scratch}


def test_a_branch_with_cooldown_settings_is_bitwise_the_run_from_scratch(cooled):
    child, scratch = _losses(cooled["child"].run_dir), _losses(cooled["scratch"].run_dir)
    assert sorted(child) == list(range(BRANCH + 1, BRANCH + LENGTH + 1))
    assert child == {s: v for s, v in scratch.items() if s > BRANCH}
    assert cooled["child"].final_val_loss == cooled["scratch"].final_val_loss
    # The settings took effect: without them the same cooldown ends elsewhere.
    assert cooled["plain"].final_val_loss != cooled["child"].final_val_loss
    assert cooled["child"].run_dir.name.startswith(f"s{BRANCH}-linear-k{LENGTH}-opt")


def test_the_manifest_records_the_phase_settings(cooled):
    manifest = json.loads((cooled["child"].run_dir / "manifest.json").read_text())
    assert manifest["optimizer_phases"] == {
        "cooldown_after_step": BRANCH,
        "stable": {"betas": [0.9, 0.95], "weight_decay": 0.1, "muon_momentum": 0.95},
        "cooldown": COOLDOWN,
    }
    assert "optimizer_phases" not in json.loads(
        (cooled["plain"].run_dir / "manifest.json").read_text()
    )


def test_muon_under_ddp_matches_one_process_and_resumes_bitwise(tiny_overrides, tmp_path):
    """Two real ranks (torchrun, gloo): DDP all-reduces whole gradients, so every rank's Muon
    orthogonalises the same matrices; its state goes through torch.distributed.checkpoint."""
    args = [
        *tiny_overrides,
        *MUON,
        "schedule.total_steps=12",
        "schedule.warmup_steps=3",
        "train.checkpoint_interval=6",
        "train.eval_interval=6",
        "train.micro_batch_size=4",
        "train.final_full_eval=false",
    ]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += ["-m", "cooldown", "train", *args, "train.parallelism=ddp", "--out"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([*cmd, str(tmp_path / "ddp")], check=True, env=env, capture_output=True)
    train(load_run_config(None, args), tmp_path / "single")
    ddp, single = _losses(tmp_path / "ddp"), _losses(tmp_path / "single")
    assert ddp.keys() == single.keys()
    for step in ddp:  # equal up to the rounding of summing over ranks
        assert ddp[step] == pytest.approx(single[step], rel=1e-3), step

    resumed = tmp_path / "resumed"
    shutil.copytree(tmp_path / "ddp", resumed)
    shutil.rmtree(resumed / "checkpoints" / "step_0000012")
    manifest = json.loads((resumed / "manifest.json").read_text())
    (resumed / "manifest.json").write_text(json.dumps({**manifest, "status": "running"}))
    subprocess.run([*cmd, str(resumed)], check=True, env=env, capture_output=True)
    assert _losses(resumed) == ddp


def test_the_branch_cli_takes_cooldown_settings(cooled, capsys):
    settings = ["betas=[0.8, 0.99]", "muon_momentum=0.8", "weight_decay=0.0"]
    args = ["branch", str(cooled["parent"]), "--at", str(BRANCH), "--length", str(LENGTH)]
    main([*args, *(x for s in settings for x in ("--optim-cooldown", s))])
    assert str(cooled["child"].run_dir) in capsys.readouterr().out  # the finished child
    with pytest.raises(SystemExit) as info:
        main([*args, "--optim-cooldown", "betas=[0.8, 1.5]"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "optim.cooldown.betas" in err and err.count("\n") == 1
