"""`cooldown.run_dir`: one owner of a run folder: typed config and manifest (old manifests load),
metrics, complete checkpoints, "is this RUN/checkpoints/step_N", the branch lineage."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import tomli_w

from cooldown.errors import CooldownError
from cooldown.run_dir import Manifest, RunDir


def _run(path, schedule=None, parent=None):
    path.mkdir(parents=True)
    config = {
        "model": {"preset": "tiny-0.2M"},
        "optim": {"lr": 2e-3},
        "schedule": schedule or {"kind": "constant", "total_steps": 100, "warmup_steps": 10},
        "train": {"batch_size": 4, "seq_len": 32},
    }
    if parent is not None:
        config["parent"] = parent
    (path / "config.toml").write_text(tomli_w.dumps(config))
    return RunDir(path)


def _checkpoint(run: RunDir, step: int, complete: bool = True):
    folder = run.checkpoint_path(step)
    folder.mkdir(parents=True)
    if complete:
        (folder / "checksum.json").write_text("{}")
    return folder


def test_typed_config_and_a_manifest_that_round_trips(tmp_path):
    run = _run(tmp_path / "stable")
    assert run.config.optim.lr == 2e-3 and run.config.total_steps == 100
    assert run.manifest() is None and not run.is_complete() and run.metrics() == []
    # An old manifest: a few fields, one this version does not type, none of the newer ones.
    old = {"status": "complete", "steps": 100, "final_val_loss": 3.5, "final_val_loss_swa": 3.4}
    run.manifest_path.write_text(json.dumps(old))
    manifest = run.manifest()
    assert manifest.final_val_loss == 3.5 and manifest.get("final_val_loss_swa") == 3.4
    assert manifest.vocab_size is None and manifest.as_dict() == old
    assert run.is_complete() and run.is_complete(100) and not run.is_complete(200)
    run.write_manifest(Manifest.model_validate({**old, "status": "extended"}))
    assert json.loads(run.manifest_path.read_text())["status"] == "extended"
    assert not run.is_complete()


def test_manifest_and_folder_errors_are_one_line(tmp_path):
    run = _run(tmp_path / "r")
    run.manifest_path.write_text("{not json")
    with pytest.raises(CooldownError, match=r"manifest\.json is not valid JSON"):
        run.manifest()
    run.manifest_path.write_text(json.dumps({"steps": "many"}))
    with pytest.raises(CooldownError, match=r"manifest\.json: steps: "):
        run.manifest()
    with pytest.raises(CooldownError, match=r"not a run folder \(no config\.toml\)$"):
        RunDir(tmp_path / "nothing").config  # noqa: B018


def test_checkpoints_are_the_complete_step_folders(tmp_path):
    run = _run(tmp_path / "r")
    _checkpoint(run, 40)
    _checkpoint(run, 20)
    _checkpoint(run, 60, complete=False)  # killed before its checksum.json
    (run.checkpoints_dir / ".tmp-step_0000080-123").mkdir()
    (run.checkpoints_dir / "step_80").mkdir()  # not a checkpoint name
    assert run.checkpoints == [20, 40]
    assert run.has_checkpoint(40) and not run.has_checkpoint(60)


def test_of_checkpoint_decides_run_checkpoints_step(tmp_path):
    run = _run(tmp_path / "r")
    folder = _checkpoint(run, 40)
    assert RunDir.of_checkpoint(folder) == (run, 40)
    assert RunDir.of_checkpoint(run.path) is None
    assert RunDir.of_checkpoint(run.checkpoints_dir / "step_40") is None
    loose = tmp_path / "elsewhere" / "step_0000040"
    loose.mkdir(parents=True)
    assert RunDir.of_checkpoint(loose) is None  # no RUN/checkpoints/ above it
    other = tmp_path / "norun" / "checkpoints" / "step_0000040"
    other.mkdir(parents=True)
    assert RunDir.of_checkpoint(other) is None  # no config.toml in RUN


def test_lineage_resolves_a_parent_named_relative_to_an_ancestor(tmp_path):
    trunk = _run(tmp_path / "study" / "runs" / "trunk")
    branch_schedule = {"kind": "branch", "branch_step": 80, "cooldown_steps": 20}
    mid = _run(
        tmp_path / "study" / "runs" / "mid",
        schedule=branch_schedule,
        parent={"run_dir": "runs/trunk", "step": 80},
    )
    leaf = _run(
        tmp_path / "study" / "runs" / "leaf",
        schedule={"kind": "branch", "branch_step": 90, "cooldown_steps": 10},
        parent={"run_dir": str(mid.path), "step": 90},
    )
    assert trunk.parent() is None and trunk.lineage() == []
    assert mid.parent() == (RunDir(tmp_path / "study" / "runs" / "trunk"), 80)
    assert [(r.path.name, s) for r, s in leaf.lineage()] == [("mid", 90), ("trunk", 80)]
    gone = _run(
        tmp_path / "gone", schedule=branch_schedule, parent={"run_dir": "nowhere", "step": 80}
    )
    with pytest.raises(CooldownError, match=r"config\.toml: parent\.run_dir: no run folder"):
        gone.parent()


def test_reading_a_run_folder_does_not_import_torch():
    code = "import sys, cooldown.run_dir; assert 'torch' not in sys.modules, 'torch imported'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
