"""The process that trains one study node: `python -m cooldown.study STUDY_DIR NODE_ID`.

It runs in the study folder, takes the node's lock (`STUDY_DIR/locks/NODE_ID.lock`, see
`cooldown.study.state`) before anything else, and then trains `runs/NODE_ID` from the config.toml
the runner wrote there (`cooldown.train.train`, which resumes from the run's last checkpoint and
returns at once for a finished run). While it lives it touches the lock file every few seconds: a
heartbeat for runners on other hosts. With `--parent-pid` it exits as soon as the runner that
started it is gone (besides the kernel's parent-death signal where there is one), so killing a
runner never leaves an orphan training a node that a new runner then trains again.

Exit status: 0 done; 2 a user error (`error: ...` on stderr); 75 the node's lock is held by
another process (nothing was done); anything else: a crash.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
from pathlib import Path
from typing import Any

from cooldown.study.adapter_nodes import train_adapter_node, uses_adapter
from cooldown.study.run_dirs import node_run
from cooldown.study.state import lock_path, try_lock

EXIT_BUSY = 75
HEARTBEAT_S = 2.0


class NodeBusy(RuntimeError):
    """Another process holds the node's lock."""


def _heartbeat(path: Path, parent_pid: int | None, done: threading.Event) -> None:
    # Ends with the node (a pool worker trains many nodes, one heartbeat at a time).
    while not done.wait(0.2 if parent_pid is not None else HEARTBEAT_S):
        if parent_pid is not None and os.getppid() != parent_pid:
            os._exit(137)  # the runner died: stop at once, like SIGKILL (checkpoints are atomic)
        with contextlib.suppress(OSError):
            os.utime(path)


def train_node(
    study_dir: str | Path,
    node_id: str,
    *,
    threads: int | None = None,
    parent_pid: int | None = None,
) -> dict[str, Any]:
    """Train the node under its lock; the RunResult as a dict. Raises NodeBusy when another process
    holds the lock."""
    study_dir = Path(study_dir).resolve()
    lock = lock_path(study_dir, node_id)
    fd = try_lock(lock)
    if fd is None:
        raise NodeBusy(f"node {node_id} is being trained by another process ({lock} is locked)")
    done = threading.Event()
    try:
        with contextlib.suppress(OSError):
            os.utime(lock)
        threading.Thread(target=_heartbeat, args=(lock, parent_pid, done), daemon=True).start()
        os.chdir(study_dir)  # a branch names its parent relative to the study folder
        if uses_adapter(study_dir):
            return train_adapter_node(study_dir, node_id)
        import torch

        from cooldown.train import train

        if threads:
            torch.set_num_threads(threads)
        run = node_run(".", node_id)
        result = train(run.config, run.path)
        return {
            "steps": result.steps,
            "tokens": result.tokens,
            "compute_flops": result.compute_flops,
            "flop_convention": result.flop_convention,
            "final_val_loss": result.final_val_loss,
            "resumed_from_step": result.resumed_from_step,
        }
    finally:
        done.set()
        os.close(fd)


def _set_parent_death_signal() -> None:
    """Linux: have the kernel SIGKILL this process when its parent dies."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cooldown.study")
    parser.add_argument("study_dir")
    parser.add_argument("node_id")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--parent-pid", type=int, default=None)
    args = parser.parse_args(argv)
    if args.parent_pid is not None:
        _set_parent_death_signal()
        if os.getppid() != args.parent_pid:
            return 137  # the runner died before we got here
    from cooldown.errors import CooldownError

    try:
        result = train_node(
            args.study_dir, args.node_id, threads=args.threads, parent_pid=args.parent_pid
        )
    except NodeBusy as e:
        print(f"busy: {e}", file=sys.stderr)
        return EXIT_BUSY
    except CooldownError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(result_line(args.node_id, result))
    return 0


def result_line(node_id: str, result: dict[str, Any]) -> str:
    """The line a node's log ends with: steps, final loss, where it resumed from."""
    if "adapter" in result:
        return f"{node_id}: {result['manifest']['steps']} steps through the adapter"
    loss = result["final_val_loss"]
    resumed = result["resumed_from_step"]
    return (
        f"{node_id}: {result['steps']} steps, final val loss "
        f"{'n/a' if loss is None else f'{loss:.4f} nats/token'}"
        + (f" (resumed from step {resumed})" if resumed is not None else "")
    )
