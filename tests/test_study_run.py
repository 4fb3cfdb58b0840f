"""A tiny study run end to end: through submitit's local executor, and on local processes with a
real SIGKILL of the runner mid-way, which a rerun finishes to bitwise the same results."""

from __future__ import annotations

import csv
import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tomli_w

from cooldown.cli import main
from cooldown.configio import read_toml
from cooldown.study import build_plan, load_study
from cooldown.study.plan_table import plan_study
from cooldown.study.results import collect_results, study_results
from cooldown.study.runner import run_study
from cooldown.study.state import StudyState, pid_alive
from cooldown.study.status import last_metrics_row, study_status

TINY = Path(__file__).resolve().parents[1] / "configs" / "studies" / "tiny.toml"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def study_toml(tmp_path_factory, data_cache) -> dict:
    """configs/studies/tiny.toml made smaller still: 2 sizes x 2 budgets x (cosine, cooldown, swa),
    10 training nodes of at most 40 steps on the test corpus."""
    spec = read_toml(TINY)
    spec.update(
        batch_size=8,
        seq_len=32,
        warmup_steps=2,
        throughput_flops_per_s=1e9,
        sizes=[
            {"preset": "tiny-0.05M", "steps": [20, 40]},
            {"preset": "tiny-0.2M", "steps": [20, 40]},
        ],
        data={
            "max_bytes": 1500000,
            "val_fraction": 0.1,
            "vocab_size": 512,
            "cache_dir": data_cache,
        },
        averaging={"swa_window": 10},
        train={
            "eval_interval": 10,
            "eval_batches": 2,
            "checkpoint_interval": 5,
            "log_interval": 1,  # the kill point watches a node's progress in its metrics
            "progress": False,
        },
    )
    spec["methods"]["cooldown"]["fraction"] = 0.25
    # Its runs are too short to fit a loss-curve law (test_study_predicted.py runs that method).
    del spec["methods"]["cooldown-predicted"]
    spec["methods"]["cosine"]["lr"] = 3e-3
    return spec


def _write(folder: Path, spec: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "study.toml"
    path.write_text(tomli_w.dumps(spec))
    return path


def _losses(study_dir: Path) -> dict[str, float]:
    with StudyState(study_dir, create=False) as state:
        return {n["id"]: n["result"]["manifest"]["final_val_loss"] for n in state.nodes()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, study_toml) -> Path:
    """The uninterrupted study, run through submitit's LocalExecutor."""
    path = _write(tmp_path_factory.mktemp("study-reference"), study_toml)
    report = run_study(path, workers=2, backend="submitit-local", threads=1, log=lambda s: None)
    assert report.failed == {}
    return path


def test_study_runs_end_to_end_through_submitit(reference, capsys):
    study_dir = reference.parent
    plan = build_plan(load_study(reference))
    with StudyState(study_dir, create=False) as state:
        nodes = state.nodes()
        assert state.counts() == {"pending": 0, "running": 0, "done": 10, "failed": 0}
        assert all(c["process"].startswith("job:") for c in state.claims())
    assert sorted(n["id"] for n in nodes) == sorted(n.id for n in plan.runnable())
    # A branch trained only its cooldown, from its trunk's checkpoint at the branch step.
    branch = study_dir / "runs" / "cooldown-tiny-0.2M-40-1-sqrt-lr0.002-seed0"
    trunk = study_dir / "runs" / "constant-tiny-0.2M-lr0.002-seed0"
    assert (trunk / "checkpoints" / "step_0000015" / "checksum.json").is_file()
    assert (trunk / "checkpoints" / "step_0000030" / "checksum.json").is_file()
    branch_steps = [r["step"] for r in _metrics(branch) if "train_loss" in r]
    assert branch_steps[0] > 30 and branch_steps[-1] == 40

    paths, results = study_results(reference)
    assert [p.suffix for p in paths] == [".csv", ".parquet"]
    assert results.missing == {}
    rows = list(csv.DictReader(paths[0].open()))
    assert len(rows) == 12  # 2 sizes x 2 budgets x (cosine, cooldown, swa)
    by_id = {r["node_id"]: r for r in rows}
    cosine = by_id["cosine-tiny-0.2M-40-lr0.003-seed0"]
    cooldown = by_id["cooldown-tiny-0.2M-40-1-sqrt-lr0.002-seed0"]
    swa = by_id["swa-tiny-0.2M-40-lr0.002-seed0"]
    for row in (cosine, cooldown, swa):
        assert row["tokens"] == str(40 * 8 * 32)
        assert row["flop_convention"] == "chinchilla"
        assert row["compute_flops"] == row["compute_flops_chinchilla"]
        assert float(row["compute_flops_6N"]) == 6 * int(row["non_embedding_params"]) * 40 * 256
        assert row["best_in_sweep"] == "True"
    assert _losses(study_dir)[cosine["node_id"]] == float(cosine["final_val_loss"])
    assert cosine["loss_evaluation"] == "full" and cooldown["loss_evaluation"] == "full"
    # The incremental cost: a branch its cooldown plus the trunk since the previous branch point.
    assert int(cooldown["method_steps"]) == 10 + (30 - 15)
    assert int(swa["method_steps"]) == 20
    # swa reads the trunk's SWA evaluation at the budget: no training of its own.
    trunk_eval = [r for r in _metrics(trunk) if r["step"] == 40][-1]
    assert float(swa["final_val_loss"]) == trunk_eval["val_loss_swa"]
    assert float(swa["final_val_loss_raw"]) == trunk_eval["val_loss"]
    assert swa["loss_evaluation"] == "eval_batches"
    text = study_status(reference)
    assert "10 nodes: 10 done, 0 running, 0 pending, 0 failed" in text
    assert "budget points with results: 12 of 12" in text
    # The plan now prices device-hours from the measured throughput of the finished nodes.
    text = plan_study(reference, show_nodes=False)
    assert "measured tiny-0.05M" in text and "tokens/s" in text
    assert "n/a" not in text.split("totals")[1]
    main(["study", "results", str(reference), "--out", str(study_dir / "cli.csv")])
    assert "12 rows:" in capsys.readouterr().out
    assert (study_dir / "cli.csv").read_text() == paths[0].read_text()


def _metrics(run_dir: Path) -> list[dict]:
    from cooldown.metrics import read_metrics

    return read_metrics(run_dir / "metrics.jsonl")


def _wait_for_kill_point(study_dir: Path, proc: subprocess.Popen, timeout: float = 240) -> None:
    """Until some node is done and another is mid-run, past a checkpoint of its own."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the study finished before it could be killed"
        if (study_dir / "study.sqlite").exists():
            with StudyState(study_dir, create=False) as state:
                nodes = state.nodes()
            done = [n for n in nodes if n["state"] == "done"]
            for n in nodes:
                run_dir = study_dir / "runs" / n["id"]
                row = last_metrics_row(run_dir / "metrics.jsonl")
                if (
                    done
                    and n["state"] == "running"
                    and row is not None
                    and row["step"] < n["total_steps"] - 2
                    and list((run_dir / "checkpoints").glob("step_*/checksum.json"))
                ):
                    return
        time.sleep(0.02)
    raise AssertionError("no kill point reached")


def test_sigkill_mid_study_then_rerun_gives_the_same_results(tmp_path, study_toml, reference):
    # One of the reference's sizes: its nodes' configs, and so their losses, are the same.
    spec = {**study_toml, "sizes": study_toml["sizes"][1:]}
    path = _write(tmp_path / "study", spec)
    study_dir = path.parent
    cmd = [sys.executable, "-m", "cooldown", "study", "run", str(path), "--workers", "2"]
    proc = subprocess.Popen([*cmd, "--threads", "1"], stdout=subprocess.DEVNULL)
    _wait_for_kill_point(study_dir, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with StudyState(study_dir, create=False) as state:
        before = {n["id"]: n for n in state.nodes()}
        trainers = [
            int(c["process"][4:]) for c in state.claims() if c["outcome"] is None and c["process"]
        ]
    done_before = {i for i, n in before.items() if n["state"] == "done"}
    interrupted = {i for i, n in before.items() if n["state"] == "running"}
    assert done_before and interrupted and trainers
    # The runner's training processes died with it (no orphan trains on).
    deadline = time.monotonic() + 10
    while any(pid_alive(p) for p in trainers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(pid_alive(p) for p in trainers)

    report = run_study(path, workers=2, threads=1, log=lambda s: None)
    assert report.failed == {}
    assert not set(report.done_now) & done_before  # finished nodes were not redone
    expected = {k: v for k, v in _losses(reference.parent).items() if "tiny-0.2M" in k}
    assert len(expected) == 5
    assert _losses(study_dir) == expected  # bitwise, every node

    with StudyState(study_dir, create=False) as state:
        nodes = {n["id"]: n for n in state.nodes()}
        for node_id, node in nodes.items():
            claims = state.claims(node_id)
            assert node["attempts"] == len(claims)
            for a, b in itertools.pairwise(claims):  # never two claims at once
                assert a["ended_at"] is not None and a["ended_at"] <= b["started_at"]
            if node_id in done_before:
                assert len(claims) == 1
            if node_id in interrupted:
                assert [c["outcome"] for c in claims] == ["abandoned", "done"]
    # An interrupted node resumed from its own checkpoint rather than starting over.
    logs = [(study_dir / "logs" / f"{i}.log").read_text() for i in interrupted]
    assert any("resumed from step" in text for text in logs)

    rows = {r["node_id"]: r for r in collect_results(path).rows}
    reference_rows = {r["node_id"]: r for r in collect_results(reference).rows}
    assert len(rows) == 6
    assert {k: r["final_val_loss"] for k, r in rows.items()} == {
        k: reference_rows[k]["final_val_loss"] for k in rows
    }

    # Run again: nothing left to do, nothing redone.
    again = run_study(path, workers=2, threads=1, log=lambda s: None)
    assert again.done_now == [] and again.counts["done"] == 5


def test_the_pool_backend_trains_the_study_to_the_same_losses(reference, study_toml, tmp_path):
    """`--backend local-pool`: long-lived workers, every node done, the reference's losses."""
    path = _write(tmp_path / "pool", study_toml)
    report = run_study(path, workers=2, backend="local-pool", threads=1, log=lambda s: None)
    assert report.failed == {} and len(report.done_now) == 10
    assert _losses(path.parent) == _losses(reference.parent)
    with StudyState(path.parent, create=False) as state:
        assert {c["process"] for c in state.claims()} == {"pool"}
