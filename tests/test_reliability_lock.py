"""One writer per run folder (cooldown.run_lock): a second process is refused with one line that
names the holder; a lock left by a dead process blocks nothing; a failed start leaves no folder."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from cooldown.checkpoint import list_checkpoints
from cooldown.errors import CooldownError
from cooldown.metrics import read_metrics
from cooldown.run_lock import LOCK_FILE, run_lock

# Holds the lock of argv[1] until killed, after saying so on stdout.
HOLDER = """
import sys, time
from cooldown.run_lock import run_lock
with run_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(60)
"""


def _holder(run_dir):
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run_dir)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_owner_is_refused_naming_the_holders_pid_and_host(tmp_path):
    run_dir = tmp_path / "run"
    proc = _holder(run_dir)
    try:
        with pytest.raises(CooldownError) as info, run_lock(run_dir):
            pass
        message = str(info.value)
        assert f"process {proc.pid} on host {socket.gethostname()}" in message
        assert str(run_dir) in message and "\n" not in message
    finally:
        proc.kill()
        proc.wait()


def test_a_lock_left_by_a_killed_process_does_not_block(tmp_path):
    run_dir = tmp_path / "run"
    proc = _holder(run_dir)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (run_dir / LOCK_FILE).exists()  # the dead holder's file is still there
    with run_lock(run_dir):
        assert (run_dir / LOCK_FILE).read_text().split()[0] == str(os.getpid())
    assert not (run_dir / LOCK_FILE).exists()


def test_a_start_that_fails_removes_the_folders_it_made(tmp_path):
    run_dir = tmp_path / "branches" / "child"
    with pytest.raises(RuntimeError), run_lock(run_dir):
        raise RuntimeError("validation failed")
    assert not (tmp_path / "branches").exists()
    # A folder the user made, or one with files in it, stays.
    run_dir.mkdir(parents=True)
    with run_lock(run_dir):
        (run_dir / "config.toml").write_text("")
    assert (run_dir / "config.toml").exists()


def test_a_second_training_of_a_folder_is_refused_while_the_first_trains(tiny_overrides, tmp_path):
    """Before the lock both trained the same steps: one died with a FileNotFoundError traceback,
    the other reported success with metrics.jsonl cut short."""
    args = [
        *tiny_overrides,
        "schedule.total_steps=5000",
        "train.checkpoint_interval=10",
        "model.preset=tiny-0.05M",
    ]
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "cooldown", "train", *args, "--out", str(run_dir)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list_checkpoints(run_dir):
            time.sleep(0.02)
        second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert first.poll() is None, "the first run ended before the second started"
        assert second.returncode == 2
        assert second.stderr.strip().splitlines() == [
            f"error: {run_dir} is in use by process {first.pid} on host {socket.gethostname()} "
            f"(it holds {run_dir / LOCK_FILE}); wait for it to finish or stop it, or use another "
            "output folder"
        ]
        steps = [r["step"] for r in read_metrics(run_dir / "metrics.jsonl")]
        assert steps == sorted(set(steps))  # one writer: no step logged twice
    finally:
        first.kill()
        first.wait()
