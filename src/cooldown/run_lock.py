"""One writer per run folder: an advisory lock on `RUN/.lock`, held while a process trains it.

Two `cooldown train` (or `branch`, or two study runners) on the same folder would both append to
metrics.jsonl, save the same steps and delete each other's checkpoints. The first process to
start takes an exclusive `fcntl.flock` on `RUN/.lock` and writes its PID and host into the file;
a second one gets a one-line error naming that holder. The kernel drops the lock when its holder
dies, however it dies (even `kill -9`), so a lock file left behind by a dead process never blocks
a rerun: only a live holder does.

The lock also undoes what a start that failed before writing anything created: the folders it
had to make (the run folder, `branches/`) are removed again when they are still empty, so a
corrected command meets the same state as the first one.

flock locks work on local file systems and on NFS v4 (Linux emulates them with fcntl locks
there); a file system without locking makes the error name it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from cooldown.errors import CooldownError

LOCK_FILE = ".lock"


def _created_dirs(run_dir: Path) -> list[Path]:
    """Make `run_dir` and return the folders that did not exist before, deepest first."""
    missing = []
    for folder in [run_dir, *run_dir.parents]:
        if folder.exists():
            break
        missing.append(folder)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CooldownError(f"cannot create the run folder {run_dir}: {e.strerror}") from None
    return missing


def _holder(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8").split()
    except OSError:
        text = []
    if len(text) >= 2:
        return f"process {text[0]} on host {text[1]}"
    return "another process"


def _acquire(path: Path) -> int:
    """An fd holding the exclusive lock on `path` (created if need be), or a CooldownError."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise CooldownError(
                f"cannot write to the run folder {path.parent} ({e.strerror}); give a writable "
                "--out"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise CooldownError(
                    f"{path.parent} is in use by {_holder(path)} (it holds {path}); wait for it "
                    "to finish or stop it, or use another output folder"
                ) from None
            raise CooldownError(
                f"cannot lock {path} ({e.strerror}): the file system does not support locks; "
                "put the run folder on one that does"
            ) from None
        # A holder that released the lock unlinks the file first: a lock on that old inode
        # protects nothing, so take the one on the file now at the path.
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike) -> Iterator[Path]:
    """Hold the run folder's lock for the body (see the module docstring)."""
    run_dir = Path(run_dir)
    created = _created_dirs(run_dir)
    path = run_dir / LOCK_FILE
    try:
        fd = _acquire(path)
    except BaseException:
        _remove_empty(created)
        raise
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        yield path
    finally:
        # Unlinked while still held, so no other process ever locks a file about to vanish.
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)
        _remove_empty(created)


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders this process created, deepest first, where nothing was put in them."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return
