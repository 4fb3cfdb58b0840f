"""A study whose nodes train through the generic `command` adapter: the tiny fake trainer of
test_adapters (a real subprocess per node) driven by `cooldown study run`, read back by
`cooldown study results`, with the branches' hand-over checked against runs from scratch."""

from __future__ import annotations

import csv
import json

import pytest
import tomli_w
import tomllib

from cooldown.cli import main
from cooldown.configio import read_toml
from cooldown.study.state import StudyState
from test_adapters import ADAPTER, FAKE_TRAINER


def _study(tmp_path, **changes) -> dict:
    adapter = tomllib.loads(ADAPTER)
    kind = adapter.pop("adapter")
    # A size's own flags reach the trainer through size_args: here, how often it saves.
    adapter["command"] = adapter["command"].replace(" --save-every 5", "")
    # The fake trainer's loss is its only metric: the study reads it as the validation metric.
    adapter["log"]["val"] = r"step (?P<step>\d+) lr \S+ loss (?P<val_metric>\S+)"
    study = {
        "name": "fake",
        "batch_size": 2,
        "seq_len": 4,
        "warmup_steps": 0,
        "sizes": [{"name": "s1", "n_layers": 1, "d_model": 16, "n_heads": 1}],
        "budgets": {"steps": [10, 20]},
        "methods": {"cosine": {"lr": 0.1}, "cooldown": {"lr": 0.1, "fraction": 0.3}},
        "adapter": {"kind": kind, **adapter, "size_args": {"s1": ["--save-every", "7"]}},
        **changes,
    }
    (tmp_path / "fake_trainer.py").write_text(FAKE_TRAINER)
    (tmp_path / "study.toml").write_text(tomli_w.dumps(study))
    return study


def _results(path) -> dict[str, dict]:
    with open(path) as f:
        return {r["node_id"]: r for r in csv.DictReader(f)}


def test_study_run_and_results_through_the_command_adapter(tmp_path, capsys):
    _study(tmp_path)
    main(["study", "plan", str(tmp_path / "study.toml")])
    main(["study", "run", str(tmp_path / "study.toml"), "--workers", "2"])
    with StudyState(tmp_path, create=False) as state:
        nodes = {n["id"]: n for n in state.nodes()}
    assert {n["state"] for n in nodes.values()} == {"done"}
    trunk = "constant-s1-lr0.1-seed0"
    assert nodes[trunk]["total_steps"] == 14  # the 20-step budget branches at 14
    # Each node is an adapter run: its manifest names the role, the size's flags reached it.
    branch = json.loads(
        (tmp_path / "runs" / "cooldown-s1-20-linear-lr0.1-seed0" / "manifest.json").read_text()
    )
    assert branch["role"] == "branch" and branch["parent"]["step"] == 14
    assert branch["command"][-2:] == ["--save-every", "7"]
    main(["study", "results", str(tmp_path / "study.toml")])
    rows = _results(tmp_path / "results.csv")
    assert len(rows) == 4
    for budget in (10, 20):
        b = rows[f"cooldown-s1-{budget}-linear-lr0.1-seed0"]
        s = rows[f"cosine-s1-{budget}-lr0.1-seed0"]
        # The fake trainer is deterministic: a branch from the trunk's checkpoint ends exactly
        # where the from-scratch run with the same cooldown ends (the hand-over is real).
        assert float(b["final_val_loss"]) == pytest.approx(float(s["final_val_loss"]), rel=1e-12)
        # Compute from the adapter's counts (tokens_per_step 8, params 1), its convention named.
        assert int(float(b["tokens"])) == 8 * budget and b["params"] == "1"
        assert b["flop_convention"].startswith("adapter: ")
    # The method's cost: cooldown trains trunk + cooldowns, less than two runs from scratch.
    cost = {
        m: sum(int(r["method_steps"]) for r in rows.values() if r["method"] == m)
        for m in ("cooldown", "cosine")
    }
    assert cost == {"cooldown": 20 + 3, "cosine": 30}
    # A rerun finds everything done and trains nothing.
    capsys.readouterr()
    main(["study", "run", str(tmp_path / "study.toml")])
    assert "finished in this run: 0" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"methods": {"cooldown": {"lr": 0.1}, "swa": {}}},
            "methods.swa: not available with an [adapter]",
        ),
        ({"adapter": {"command": "x"}}, "adapter.kind: missing"),
        ({"adapter": {"kind": "command", "size_args": {"nope": []}}}, "'nope' is not a size"),
    ],
)
def test_bad_adapter_study_is_one_line_exit_2(tmp_path, changes, message, capsys):
    _study(tmp_path)
    study = read_toml(tmp_path / "study.toml")
    study.update(changes)
    (tmp_path / "study.toml").write_text(tomli_w.dumps(study))
    with pytest.raises(SystemExit) as e:
        main(["study", "run", str(tmp_path / "study.toml")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
