"""A `cooldown train` command run straight through, and again killed with SIGKILL after its first
checkpoint and rerun: what the bitwise-resume tests compare (shared by test_train and
test_optim_train)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cooldown.checkpoint import list_checkpoints


def straight_and_killed(args: list[str], root: Path, total_steps: int, pause_s: float):
    """(straight run folder, killed-then-rerun run folder) of `cooldown train ARGS`."""
    cmd = [sys.executable, "-m", "cooldown", "train", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    straight = root / "straight"
    subprocess.run([*cmd, "--out", str(straight)], check=True, env=env, capture_output=True)
    victim = root / "killed"
    proc = subprocess.Popen(
        [*cmd, "--out", str(victim)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list_checkpoints(victim):
        time.sleep(0.02)
    time.sleep(pause_s)  # somewhere after the first checkpoint, wherever that lands
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = list_checkpoints(victim)
    assert done and done[-1] < total_steps, "the victim finished before it was killed"
    subprocess.run([*cmd, "--out", str(victim)], check=True, env=env, capture_output=True)
    return straight, victim
