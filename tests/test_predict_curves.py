"""`cooldown.predict.curves`: run folders (branches included) and foreign CSV/JSONL logs into
(LR sequence, observed points), and their one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tomli_w

from cooldown.errors import CooldownError
from cooldown.predict import load_curves, parse_columns, read_log_curve, read_run_curve
from cooldown.schedule_specs import parse_schedule_spec

MODEL = {"preset": "tiny-0.2M", "n_layers": 4, "d_model": 48, "n_heads": 3}


def _write_run(path, schedule: dict, rows: list[dict], lr=3e-3, model=MODEL, parent=None):
    path.mkdir(parents=True)
    config = {
        "model": model,
        "optim": {"name": "adamw", "lr": lr},
        "schedule": schedule,
        "train": {"batch_size": 16, "seq_len": 64},
    }
    if parent is not None:
        config["parent"] = parent
    (path / "config.toml").write_text(tomli_w.dumps(config))
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (path / "manifest.json").write_text(json.dumps({"vocab_size": 512, "params": 61_000}))
    return path


def _rows(steps, loss=lambda s: 5.0 - s / 1000, every_train=5):
    rows = [{"step": 0, "val_loss": 6.2}]
    for s in steps:
        row = {"step": s, "lr": 0.0, "train_loss": loss(s) + 0.01}
        if s % 10 == 0:
            row["val_loss"] = loss(s)
        rows.append(row)
    return rows


def test_run_curve_lrs_come_from_the_config(tmp_path):
    schedule = {"kind": "wsd", "total_steps": 200, "warmup_steps": 10, "cooldown_frac": 0.2}
    run = _write_run(tmp_path / "wsd", schedule, _rows(range(5, 201, 5)))
    curve = read_run_curve(run)
    expected = 3e-3 * parse_schedule_spec("wsd:cooldown_frac=0.2,warmup_steps=10", 200).multipliers(
        1, 201
    )
    np.testing.assert_array_equal(curve.lrs, expected)
    # val_loss rows only (the step-0 row has no LR area), in nats/token as logged.
    np.testing.assert_array_equal(curve.steps, np.arange(10, 201, 10))
    assert curve.losses[-1] == pytest.approx(5.0 - 0.2)
    assert curve.name == "wsd" and curve.loss_name == "val_loss" and curve.tokens_per_step == 1024
    assert curve.label == "WSD linear, 20% cooldown" and curve.warmup_steps == 10
    assert curve.setup["model.d_model"] == 48 and curve.setup["model.params"] == 61_000
    train = read_run_curve(run, loss="train_loss")
    assert train.steps.size == 40 and train.losses[0] == pytest.approx(5.0 - 0.005 + 0.01)


def test_branch_curve_is_the_parents_points_then_its_own(tmp_path):
    parent = _write_run(
        tmp_path / "constant",
        {"kind": "constant", "total_steps": 300, "warmup_steps": 10},
        _rows(range(10, 301, 10)),
    )
    child_rows = [
        {"step": s, "val_loss": 4.0 - s / 1e4} for s in range(210, 251, 10)
    ]  # only its own steps, after the branch point
    child = _write_run(
        tmp_path / "constant" / "branches" / "s200",
        {"kind": "branch", "branch_step": 200, "cooldown_steps": 50, "warmup_steps": 10},
        child_rows,
        parent={"run_dir": str(parent), "step": 200},
    )
    curve = read_run_curve(child)
    np.testing.assert_array_equal(curve.steps, np.arange(10, 251, 10))
    assert curve.losses[19] == pytest.approx(5.0 - 0.2)  # the parent's step 200
    assert curve.losses[20] == pytest.approx(4.0 - 0.021)  # the child's step 210
    assert curve.total_steps == 250 and curve.lrs[199] == 3e-3 and curve.lrs[-1] == 0.0
    # A parent folder given relative to the child works too; a missing one is named.
    rel = _write_run(
        tmp_path / "rel",
        {"kind": "branch", "branch_step": 200, "cooldown_steps": 50, "warmup_steps": 10},
        child_rows,
        parent={"run_dir": "constant", "step": 200},
    )
    assert read_run_curve(rel).steps.size == 25
    gone = _write_run(
        tmp_path / "gone",
        {"kind": "branch", "branch_step": 200, "cooldown_steps": 50},
        child_rows,
        parent={"run_dir": "nowhere", "step": 200},
    )
    with pytest.raises(CooldownError, match=r"config.toml: parent.run_dir: no run folder"):
        read_run_curve(gone)


def test_run_folder_errors(tmp_path):
    with pytest.raises(CooldownError, match=r"not a run folder \(no config.toml\)$"):
        read_run_curve(tmp_path)
    run = _write_run(
        tmp_path / "r", {"kind": "constant", "total_steps": 100}, [{"step": 0, "val_loss": 6.0}]
    )
    with pytest.raises(CooldownError) as info:
        read_run_curve(run)
    assert str(info.value).endswith("no 'val_loss' values after step 0 (losses logged: val_loss)")
    bad = _write_run(tmp_path / "b", {"kind": "wsd", "total_steps": 100}, _rows(range(10, 101)))
    with pytest.raises(CooldownError, match=r"config.toml: schedule.cooldown_frac: missing"):
        read_run_curve(bad)
    long = _write_run(tmp_path / "l", {"kind": "constant", "total_steps": 50}, _rows([10, 60]))
    with pytest.raises(CooldownError, match=r"val_loss logged at step 60, after the schedule's"):
        read_run_curve(long)
    with pytest.raises(CooldownError, match=r"nope: no such run folder or log file$"):
        load_curves([tmp_path / "nope"])


# --- logs from other code ----------------------------------------------------------------------


def test_csv_log_with_a_column_mapping(tmp_path):
    lines = ["iter,learning_rate,eval/loss,seen"]
    for step in range(1, 101):
        lr = 1e-3 * min(step / 10, 1.0) * (1.0 if step <= 80 else (100 - step) / 20)
        loss = f"{4.0 - step / 100:.3f}" if step % 20 == 0 else ""
        lines.append(f"{step},{lr!r},{loss},{step * 2048}")
    path = tmp_path / "other.csv"
    path.write_text("\n".join(lines) + "\n")
    columns = parse_columns("step=iter,lr=learning_rate,loss=eval/loss,tokens=seen")
    curve = read_log_curve(path, columns)
    assert curve.name == "other" and curve.total_steps == 100 and curve.tokens_per_step == 2048
    np.testing.assert_array_equal(curve.steps, [20, 40, 60, 80, 100])
    assert curve.losses[-1] == pytest.approx(3.0)
    assert curve.lrs[9] == pytest.approx(1e-3) and curve.lrs[-1] == 0.0
    assert curve.warmup_steps == 10 and curve.setup is None and curve.loss_name == "eval/loss"


def test_jsonl_log_interpolates_the_lr_between_logged_steps(tmp_path):
    rows = [{"step": s, "lr": 1e-3 * (1 - s / 200), "loss": 3.0} for s in range(10, 201, 10)]
    path = tmp_path / "log.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    curve = load_curves([path], loss="loss")[0]
    # Linear between logged steps (exact here: the LR is linear), the first value held before.
    np.testing.assert_allclose(curve.lrs[9:], 1e-3 * (1 - np.arange(10, 201) / 200), atol=1e-15)
    np.testing.assert_allclose(curve.lrs[:9], 1e-3 * (1 - 10 / 200))


@pytest.mark.parametrize(
    "text, columns, message",
    [
        (
            "step,learning_rate,loss\n1,0.001,3.0\n",
            None,
            "no column 'lr' (for lr); the file has: step, learning_rate, loss "
            "(map yours with --columns step=NAME,lr=NAME,loss=NAME)",
        ),
        ("step,lr,loss\n1,0.001,3.0\n1,0.001,2.9\n", None, ":3: step 1 appears twice"),
        ("step,lr,loss\n1,fast,3.0\n", None, ":2: column 'lr' is 'fast', expected a number"),
        ("step,lr,loss\n1.5,0.001,3.0\n", None, ":2: step 1.5 is not an integer >= 0"),
        ("step,lr,loss\n1,0.001,\n", None, "column 'loss' has no values after step 0"),
        ("step,lr,loss\n1,0.001,3\n5,,2.9\n", None, "'loss' logged at step 5, after the last"),
        (
            "step,lr,loss,tok\n1,0.001,3,100\n2,0.001,3,300\n",
            {"tokens": "tok"},
            "column 'tok' is not a constant multiple of the step",
        ),
    ],
)
def test_log_errors_are_one_line(tmp_path, text, columns, message):
    path = tmp_path / "log.csv"
    path.write_text(text)
    with pytest.raises(CooldownError) as info:
        read_log_curve(path, columns)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_column_mapping_and_file_type_errors(tmp_path):
    assert parse_columns(None) == {}
    with pytest.raises(CooldownError, match=r"^columns: 'epoch' is not one of step, lr, loss"):
        parse_columns("epoch=e")
    with pytest.raises(CooldownError, match=r"^columns: 'step' is not KEY=COLUMN"):
        parse_columns("step")
    with pytest.raises(CooldownError, match=r"^columns: lr is given twice"):
        parse_columns("lr=a,lr=b")
    path = tmp_path / "log.txt"
    path.write_text("step lr loss\n")
    with pytest.raises(
        CooldownError,
        match=r"log\.txt: unknown table format '\.txt'; expected one of \.csv, \.jsonl, \.parquet",
    ):
        read_log_curve(path)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"step": 1}\n[1, 2]\n')
    with pytest.raises(CooldownError, match=r"bad\.jsonl: line 2 is not a JSON object"):
        read_log_curve(bad)


def test_runs_with_the_same_folder_name_keep_apart(tmp_path):
    schedule = {"kind": "constant", "total_steps": 100}
    a = _write_run(tmp_path / "a" / "run", schedule, _rows(range(10, 101, 10)))
    b = _write_run(tmp_path / "b" / "run", schedule, _rows(range(10, 101, 10)))
    c = _write_run(tmp_path / "c" / "other", schedule, _rows(range(10, 101, 10)))
    assert [x.name for x in load_curves([a, b, c])] == [str(a), str(b), "other"]
