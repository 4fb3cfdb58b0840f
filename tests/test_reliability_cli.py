"""Every usage error and every Ctrl-C is one clear outcome: click's usage message and exit 2, or
one line and exit 130; the README's own example command works."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cooldown.checkpoint import list_checkpoints
from cooldown.cli import main
from cooldown.config import load_run_config
from cooldown.errors import CooldownError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["interpolate", "a", "b", "--points", "1"], "Invalid value for '--points'"),
        (["branch", "run", "--at", "1", "--length", "0"], "Invalid value for '--length'"),
        (["study", "run", "study.toml", "--workers", "0"], "Invalid value for '--workers'"),
        (["branch", "run", "--at", "abc"], "Invalid value for '--at'"),
        (["train", "--bogus"], "No such option: --bogus"),
        (["branch"], "Missing argument"),
        (["trian"], "No such command 'trian'"),
    ],
)
def test_usage_errors_print_the_usage_and_exit_2(argv, message, capsys):
    """Typer raises its own copies of click's exceptions; they were tracebacks with exit 1."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("Usage: cooldown")
    assert message in err
    assert "Traceback" not in err


def test_a_read_only_file_system_is_one_line_naming_the_file(monkeypatch, capsys):
    import cooldown.interpolate

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", "/runs/x/interpolation.csv")

    monkeypatch.setattr(cooldown.interpolate, "interpolate", read_only)
    with pytest.raises(SystemExit) as info:
        main(["interpolate", "a", "b"])
    assert info.value.code == 2
    assert capsys.readouterr().err == "error: /runs/x/interpolation.csv: Read-only file system\n"


def test_the_readme_example_switches_the_schedule_kind(capsys):
    """`schedule.kind=constant` on tiny-wsd.toml said `schedule.cooldown_frac: Extra inputs are
    not permitted`: the WSD-only fields are dropped, and one line says so."""
    config = ROOT / "configs" / "tiny-wsd.toml"
    cfg = load_run_config(config, ["optim.lr=3e-3", "schedule.kind=constant"])
    sched = cfg.schedule.to_config()
    assert sched["kind"] == "constant"
    assert (sched["total_steps"], sched["warmup_steps"], cfg.optim.lr) == (600, 30, 3e-3)
    note = capsys.readouterr().err.strip().splitlines()
    assert note == [
        f"note: schedule.kind=constant drops schedule.cooldown_frac, schedule.shape of {config} "
        "(not fields of a 'constant' schedule)"
    ]
    # A field named on the command line is never dropped: the new kind's error names it.
    with pytest.raises(CooldownError, match=r"schedule\.shape"):
        load_run_config(config, ["schedule.kind=constant", "schedule.shape=linear"])


def test_config_pointing_at_a_folder_says_so(tmp_path):
    (tmp_path / "config.toml").write_text("")
    with pytest.raises(CooldownError) as info:
        load_run_config(tmp_path)
    assert str(info.value) == (
        f"config file {tmp_path} is a folder, not a TOML file; did you mean "
        f"{tmp_path / 'config.toml'}?"
    )


def test_an_infinite_learning_rate_is_refused(tiny_overrides):
    with pytest.raises(
        CooldownError, match=r"optim.lr: must be a finite learning rate \(got inf\)"
    ):
        load_run_config(None, [*tiny_overrides, "optim.lr=inf"])


def test_a_kept_step_after_the_end_is_refused(tiny_overrides):
    with pytest.raises(CooldownError) as info:
        load_run_config(None, [*tiny_overrides, "train.permanent_steps=[300, 700]"])
    assert "step 700 is after the run's end (schedule.total_steps 600)" in str(info.value)
    # A constant run may be extended up to it later.
    constant = ["schedule.kind=constant", "schedule.total_steps=600", "schedule.warmup_steps=30"]
    load_run_config(None, [*tiny_overrides, *constant, "train.permanent_steps=[300, 700]"])


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("started", ["in the foreground", "in the background by a script"])
def test_ctrl_c_exits_130_with_where_to_resume(tiny_overrides, tmp_path, started):
    """SIGINT exited 0 with no message and the manifest still "running": a shell script starts
    its background jobs with SIGINT ignored, so the run went on."""
    run_dir = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "cooldown",
        "train",
        *tiny_overrides,
        "schedule.total_steps=5000",
        "train.checkpoint_interval=10",
        "model.preset=tiny-0.05M",
        "--out",
        str(run_dir),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_ignore_sigint if "background" in started else None,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list_checkpoints(run_dir):
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    step, resume = manifest["interrupted_at_step"], list_checkpoints(run_dir)[-1]
    assert lines[0] == (
        f"interrupted at step {step} ({run_dir}); rerun the same command to resume from step "
        f"{resume}"
    )
    assert 10 <= resume <= step < 5000


def test_ctrl_c_of_a_study_run_releases_its_nodes_and_says_how_to_finish(
    tmp_path, data_cache, monkeypatch
):
    """SIGINT exited 0 with no message; now Interrupted (exit 130 in the CLI)."""
    import tomli_w

    import cooldown.study.engine as engine
    import cooldown.study.runner as runner
    from cooldown.configio import read_toml
    from cooldown.errors import Interrupted
    from cooldown.study.state import StudyState

    spec = read_toml(ROOT / "configs" / "studies" / "tiny.toml")
    spec.update(
        batch_size=8,
        seq_len=32,
        warmup_steps=2,
        sizes=[{"preset": "tiny-0.05M", "steps": [2000]}],
        data={
            "max_bytes": 1500000,
            "val_fraction": 0.1,
            "vocab_size": 512,
            "cache_dir": data_cache,
        },
        train={"progress": False},
    )
    spec["methods"] = {"cosine": spec["methods"]["cosine"]}
    (tmp_path / "study.toml").write_text(tomli_w.dumps(spec))

    sleep, pressed = time.sleep, []

    def ctrl_c_once_started(seconds):
        # engine.time is the time module: Popen.wait's polling sleeps through here too.
        if not pressed and (tmp_path / "study.sqlite").exists():
            with StudyState(tmp_path, create=False) as state:
                if any(n["state"] == "running" for n in state.nodes()):
                    pressed.append(True)
                    raise KeyboardInterrupt
        sleep(seconds)

    monkeypatch.setattr(engine.time, "sleep", ctrl_c_once_started)
    with pytest.raises(Interrupted) as info:
        runner.run_study(tmp_path / "study.toml", workers=1, log=lambda line: None)
    assert str(info.value) == (
        f"study run interrupted ({tmp_path}): 1 running node(s) released, 0 finished in this "
        "run; rerun the same command to finish the study (runs resume from their last "
        "checkpoints)"
    )
    with StudyState(tmp_path, create=False) as state:
        assert {n["state"] for n in state.nodes()} <= {"pending", "released"}
