"""Damaged or odd run folders: each is one line naming the file and what is wrong, and nothing
is deleted that the user did not create."""

from __future__ import annotations

import errno
import os
import shutil
import sysconfig
from pathlib import Path

import pytest

from _byte_runs import byte_run_overrides
from cooldown.branch import branch
from cooldown.checkpoint import (
    apply_keep_policy,
    checkpoint_path,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from cooldown.config import load_run_config
from cooldown.errors import CooldownError
from cooldown.study.state import StudyState
from cooldown.train import train


def _overrides(source: Path, cache: Path) -> list[str]:
    return [*byte_run_overrides(source, cache), "train.keep_last=5"]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A finished 8-step run with checkpoints at 4 and 8 (copy it before damaging it)."""
    root = tmp_path_factory.mktemp("corrupt")
    lib = Path(sysconfig.get_paths()["stdlib"])
    source = root / "corpus.txt"
    source.write_text("\n\n".join((lib / m).read_text() for m in ("textwrap.py", "shlex.py")))
    overrides = _overrides(source, root / "cache")
    train(load_run_config(None, overrides), root / "run")
    return root / "run", overrides


@pytest.fixture
def run(made, tmp_path):
    src, overrides = made
    shutil.copytree(src, tmp_path / "run")
    return tmp_path / "run", load_run_config(None, overrides), overrides


def _drop_optimizer(run_dir: Path, step: int) -> None:
    ckpt = load_checkpoint(checkpoint_path(run_dir, step))
    state = {k: v for k, v in ckpt.state.items() if k != "optimizer"}
    save_checkpoint(run_dir, step, ckpt.weights, state)  # checksums recomputed: a valid folder


def test_a_state_without_optimizer_is_one_line_in_train_and_branch(run):
    """A KeyError traceback in both."""
    run_dir, cfg, _ = run
    _drop_optimizer(run_dir, 8)
    with pytest.raises(CooldownError) as info:
        train(cfg, run_dir)
    assert str(info.value).startswith(
        f"checkpoint {checkpoint_path(run_dir, 8)}: state.pt has no 'optimizer' entry (it holds "
    )
    _drop_optimizer(run_dir, 4)
    with pytest.raises(CooldownError, match=r"state\.pt has no 'optimizer' entry"):
        branch(run_dir, [4], cooldown_steps=2)
    assert not (run_dir / "branches").exists()  # 8: a failed branch leaves no child folder


def test_a_non_json_line_in_metrics_names_the_file_and_line(run):
    run_dir, cfg, _ = run
    path = run_dir / "metrics.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    lines.insert(1, "{not json\n")
    path.write_text("".join(lines))
    with pytest.raises(CooldownError) as info:
        train(cfg, run_dir)
    assert str(info.value).startswith(f"{path}: line 2 is not JSON (")


def test_a_symlinked_checkpoint_is_left_alone_by_the_keep_policy(run, tmp_path):
    """OSError: Cannot call rmtree on a symbolic link, and a dangling .del-* link left behind."""
    run_dir, _, _ = run
    elsewhere = tmp_path / "kept-elsewhere"
    shutil.move(checkpoint_path(run_dir, 4), elsewhere)
    checkpoint_path(run_dir, 4).symlink_to(elsewhere, target_is_directory=True)
    assert apply_keep_policy(run_dir, keep_last=1) == []
    assert checkpoint_path(run_dir, 4).is_symlink()
    assert (elsewhere / "model.safetensors").is_file()
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [
        "step_0000004",
        "step_0000008",
    ]


def test_a_corrupt_latest_checkpoint_names_the_intact_one(run):
    run_dir, cfg, _ = run
    (run_dir / "manifest.json").unlink()
    weights = checkpoint_path(run_dir, 8) / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CooldownError) as info:
        train(cfg, run_dir)
    assert str(info.value) == (
        f"checkpoint file {weights}: checksum mismatch (checkpoint corrupt or partially written); "
        f"the newest intact checkpoint is {checkpoint_path(run_dir, 4)}: move "
        f"{checkpoint_path(run_dir, 8)} out of the run folder and rerun the same command to "
        "resume from step 4"
    )
    assert weights.read_bytes() == bytes(data)  # nothing overwritten


def test_a_skipped_checkpoint_is_reported(run, capsys):
    run_dir, cfg, _ = run
    (run_dir / "manifest.json").unlink()
    (checkpoint_path(run_dir, 8) / "checksum.json").unlink()
    result = train(cfg, run_dir)
    assert result.resumed_from_step == 4
    err = capsys.readouterr().err
    assert (
        f"note: skipped checkpoint {checkpoint_path(run_dir, 8)}: checkpoint "
        f"{checkpoint_path(run_dir, 8)} is incomplete: checksum.json is missing"
    ) in err
    assert list_checkpoints(run_dir) == [4, 8]


def test_a_start_that_fails_its_checks_writes_nothing(made, tmp_path):
    """A too-small validation split wrote config.toml first, so the corrected command was refused
    as 'a different config'."""
    _, overrides = made
    run_dir = tmp_path / "runs" / "new"
    with pytest.raises(CooldownError, match="validation split"):
        train(
            load_run_config(None, [*overrides, "train.seq_len=32", "data.val_fraction=0.0"]),
            run_dir,
        )
    assert not (tmp_path / "runs").exists()
    result = train(load_run_config(None, overrides), run_dir)
    assert result.steps == 8


def test_a_garbage_study_database_is_one_line(tmp_path):
    path = tmp_path / "study.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(CooldownError) as info:
        StudyState(tmp_path)
    assert str(info.value).startswith(f"{path} is not a readable study database (")
    assert path.read_bytes() == b"this is not a database" * 100


def test_export_of_a_run_without_a_checkpoint_says_so(run, tmp_path):
    from cooldown.export import export_checkpoint

    run_dir, _, _ = run
    shutil.rmtree(run_dir / "checkpoints")
    with pytest.raises(CooldownError) as info:
        export_checkpoint(run_dir, tmp_path / "hf")
    assert str(info.value) == (
        f"run {run_dir} has no complete checkpoint to export (it has not saved one yet: see "
        "train.checkpoint_interval)"
    )


def test_export_prints_the_step_it_exported(run, tmp_path, capsys):
    from cooldown.cli import main

    run_dir, _, _ = run
    main(["export", str(run_dir), "--out", str(tmp_path / "hf")])
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"exported step 8 (raw weights) of {checkpoint_path(run_dir, 8)}",
        str(tmp_path / "hf"),
    ]


def test_a_run_folder_on_a_read_only_file_system_is_one_line(run, monkeypatch):
    """OSError: [Errno 30] tracebacks (simulated: root writes to any folder here)."""
    import cooldown.run_lock

    def read_only(path, *args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    run_dir, cfg, _ = run
    monkeypatch.setattr(cooldown.run_lock.os, "open", read_only)
    with pytest.raises(CooldownError) as info:
        train(cfg, run_dir)
    assert str(info.value) == (
        f"cannot write to the run folder {run_dir} (Read-only file system); give a writable --out"
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_a_read_only_run_folder_is_one_line(run):
    run_dir, cfg, _ = run
    (run_dir / "manifest.json").unlink()
    os.chmod(run_dir, 0o555)
    try:
        with pytest.raises(CooldownError, match="cannot write to the run folder"):
            train(cfg, run_dir)
    finally:
        os.chmod(run_dir, 0o755)
