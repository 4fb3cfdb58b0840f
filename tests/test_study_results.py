"""The results table from recorded node results (fabricated here, so nothing trains)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import tomli_w

from cooldown.errors import CooldownError
from cooldown.flops import training_flops
from cooldown.model_sizes import ModelConfig, param_count
from cooldown.study import build_plan, load_study
from cooldown.study.results import collect_results, read_run_result, study_results
from cooldown.study.state import StudyState

SPEC = {
    "batch_size": 8,
    "seq_len": 32,
    "warmup_steps": 2,
    "sizes": [{"preset": "tiny-0.05M", "steps": [10, 20]}],
    "data": {"vocab_size": 512},
    "methods": {
        "cosine": {"lr": [1e-3, 2e-3]},
        "cooldown": {"lr": 1e-3, "fraction": 0.5},
        "swa": {},
    },
    "averaging": {"swa_window": 5},
    "train": {"eval_interval": 10},
}
LOSS = {  # made-up final losses per node
    "cosine-tiny-0.05M-10-lr0.001-seed0": 5.0,
    "cosine-tiny-0.05M-10-lr0.002-seed0": 4.5,
    "cosine-tiny-0.05M-20-lr0.001-seed0": 4.0,
    "cosine-tiny-0.05M-20-lr0.002-seed0": 4.25,
    "cooldown-tiny-0.05M-10-linear-lr0.001-seed0": 4.75,
    "cooldown-tiny-0.05M-20-linear-lr0.001-seed0": 4.1,
}
TRUNK = "constant-tiny-0.05M-lr0.001-seed0"


def _result(node_id: str, steps: int, vocab: int = 500) -> dict:
    manifest = {"status": "complete", "steps": steps, "vocab_size": vocab}
    if node_id in LOSS:
        manifest |= {"final_val_loss": LOSS[node_id], "final_val_loss_swa": LOSS[node_id] + 0.5}
    return {
        "manifest": manifest,
        "eval_rows": [{"step": steps, "val_loss": LOSS.get(node_id, 6.0) + 0.01}],
        "tokens_per_s": 1000.0,
    }


@pytest.fixture
def study(tmp_path) -> Path:
    path = tmp_path / "study.toml"
    path.write_text(tomli_w.dumps(SPEC))
    plan = build_plan(load_study(path))
    for step in (5, 10):  # the trunk passed both branch points
        ckpt = tmp_path / "runs" / TRUNK / "checkpoints" / f"step_{step:07d}"
        ckpt.mkdir(parents=True)
        (ckpt / "checksum.json").write_text("{}")
    with StudyState(tmp_path) as state:
        state.sync_nodes(
            [
                {"id": n.id, **n.definition()} | {"definition": n.definition()}
                for n in plan.runnable()
            ]
        )
        runner = state.register_runner("local")
        while (claim := state.claim_next(runner)) is not None:
            if claim.node_id == TRUNK:
                continue  # the trunk is still running: swa reads its metrics.jsonl
            node = plan.by_id[claim.node_id]
            state.finish(claim, "done", result=_result(node.id, node.total_steps))
    trunk_metrics = tmp_path / "runs" / TRUNK / "metrics.jsonl"
    rows = [
        {"step": 10, "val_loss": 5.5, "val_loss_swa": 5.25},
        {"step": 15, "train_loss": 5.0},
    ]
    trunk_metrics.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_rows_columns_and_sweep(study):
    results = collect_results(study)
    by_id = {r["node_id"]: r for r in results.rows}
    # The trunk is at step 15: the swa point at 10 reads its evaluation; the one at 20 waits.
    assert set(results.missing) == {"swa-tiny-0.05M-20-lr0.001-seed0"}
    assert "no evaluation at step 20" in results.missing["swa-tiny-0.05M-20-lr0.001-seed0"]
    assert len(by_id) == 7

    model = ModelConfig(preset="tiny-0.05M", vocab_size=500)  # the runs' actual vocabulary
    row = by_id["cooldown-tiny-0.05M-20-linear-lr0.001-seed0"]
    assert row["params"] == param_count(model) and row["vocab_size"] == 500
    assert row["tokens"] == 20 * 256
    for convention in ("chinchilla", "6N", "6N+attn"):
        expected = training_flops(model, 32, 20 * 256, convention)
        assert row[f"compute_flops_{convention}"] == expected
    assert row["compute_flops"] == row["compute_flops_chinchilla"]
    assert row["flop_convention"] == "chinchilla"
    # The 20-step branch: 10 cooldown steps + the trunk from step 5 to 10.
    assert row["method_steps"] == 15
    assert row["method_compute_flops"] == training_flops(model, 32, 15 * 256, "chinchilla")
    assert (row["final_val_loss"], row["final_val_loss_swa"]) == (4.1, 4.6)
    assert row["loss_evaluation"] == "full" and row["val_loss_eval"] == pytest.approx(4.11)

    swa = by_id["swa-tiny-0.05M-10-lr0.001-seed0"]
    assert (swa["final_val_loss"], swa["final_val_loss_raw"]) == (5.25, 5.5)
    assert swa["loss_evaluation"] == "eval_batches" and swa["method_steps"] == 10

    best = {k: r["best_in_sweep"] for k, r in by_id.items() if r["method"] == "cosine"}
    assert best == {
        "cosine-tiny-0.05M-10-lr0.001-seed0": False,
        "cosine-tiny-0.05M-10-lr0.002-seed0": True,
        "cosine-tiny-0.05M-20-lr0.001-seed0": True,
        "cosine-tiny-0.05M-20-lr0.002-seed0": False,
    }
    lines = results.sweep_lines()
    assert lines[0].startswith("tiny-0.05M 10 steps cosine seed 0: best lr 0.002")
    assert len(lines) == 2


def test_csv_and_parquet_written_atomically(study):
    paths, results = study_results(study)
    csv_path, parquet_path = paths
    assert csv_path == study.parent / "results.csv" and parquet_path.suffix == ".parquet"
    rows = list(csv.DictReader(csv_path.open()))
    assert [r["node_id"] for r in rows] == [r["node_id"] for r in results.rows]
    for column in ("params", "tokens", "compute_flops", "final_val_loss", "flop_convention"):
        assert column in rows[0]
    assert float(rows[0]["final_val_loss"]) == results.rows[0]["final_val_loss"]
    import pyarrow.parquet as pq

    table = pq.read_table(parquet_path)
    assert table.num_rows == len(rows)
    assert table.column("final_val_loss").to_pylist() == [r["final_val_loss"] for r in results.rows]
    assert not list(study.parent.glob(".results*.tmp"))
    with pytest.raises(CooldownError, match=r"--out must name a \.csv file"):
        study_results(study, study.parent / "results.txt")


def test_read_run_result_refuses_unfinished_runs(tmp_path):
    with pytest.raises(CooldownError, match=r"no manifest\.json"):
        read_run_result(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"status": "running", "steps": 5}))
    with pytest.raises(CooldownError, match=r"not complete \(status 'running', steps 5 of 10"):
        read_run_result(tmp_path, expect_steps=10)
    (tmp_path / "manifest.json").write_text(json.dumps({"status": "complete", "steps": 10}))
    (tmp_path / "metrics.jsonl").write_text(
        json.dumps({"step": 10, "val_loss": 4.0, "val_loss_swa": 3.9, "tokens_per_s": 5.0})
        + "\n"
        + '{"step": 11, "val_lo'  # a torn last line from a kill is skipped
    )
    result = read_run_result(tmp_path, expect_steps=10)
    assert result["eval_rows"] == [{"step": 10, "val_loss": 4.0, "val_loss_swa": 3.9}]
    assert result["tokens_per_s"] == 5.0


def test_results_before_any_run_is_a_clear_error(tmp_path):
    path = tmp_path / "study.toml"
    path.write_text(tomli_w.dumps(SPEC))
    with pytest.raises(CooldownError, match=r"study\.sqlite does not exist"):
        collect_results(path)


def test_downstream_evaluations_become_columns(study):
    """`cooldown eval` results of a node's final checkpoint join its row; a swa point takes the
    trunk's evaluation of its averaged weights at the budget step."""
    from cooldown.downstream import eval_results_path
    from cooldown.fileio import atomic_write_json

    cosine = "cosine-tiny-0.05M-20-lr0.001-seed0"

    def record(run: str, step: int, weights: str, acc: float) -> None:
        path = eval_results_path(study.parent / "runs" / run, step, weights)
        tasks = {"toy": {"metrics": {"acc,none": acc, "acc_stderr,none": 0.1, "alias": "toy"}}}
        atomic_write_json(path, {"step": step, "weights": weights, "tasks": tasks})

    record(cosine, 20, "raw", 0.75)
    record(cosine, 20, "ema", 0.5)
    record(cosine, 10, "raw", 0.25)  # an earlier checkpoint: not this point's model
    record(TRUNK, 10, "swa", 0.625)
    rows = {(r["method"], r["budget_steps"], r["lr"]): r for r in collect_results(study).rows}

    point = rows[("cosine", 20, 1e-3)]
    assert point["eval_toy_acc"] == 0.75 and point["eval_toy_acc_stderr"] == 0.1
    assert point["eval_ema_toy_acc"] == 0.5
    assert "eval_toy_alias" not in point
    assert rows[("swa", 10, 1e-3)]["eval_toy_acc"] == 0.625
    assert "eval_toy_acc" not in rows[("cosine", 10, 1e-3)]
