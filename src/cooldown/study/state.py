"""The study's state: `STUDY_DIR/study.sqlite`, the graph's nodes and who is running which.

Tables:
- `nodes`: one row per training node of the plan: its definition (what it trains), its state
  (pending, running, done, failed), the claim it runs under, how many times it was claimed
  (`attempts`), its error and its results (copied from its run folder when it finishes).
- `claims`: every claim ever made: node, runner, attempt, start, end, outcome (done, failed,
  released, abandoned, busy) and the process that trained it (`pid:N` or `job:ID`). The history is
  what shows that no node ever ran twice at once.
- `runners`: each `cooldown study run` process: host, pid (with its start time, so a reused pid is
  not mistaken for it), heartbeat.

A runner claims a node in one `BEGIN IMMEDIATE` transaction, so two runners never claim the same
node. A node is claimable when it is pending and its parent is done or has its checkpoint at the
branch step, or when it is marked running but abandoned: its runner is dead (same host: its pid is
gone; another host: its heartbeat is older than `stale_after_s`) AND no process trains it. The
process that trains a node holds an exclusive `flock` on `STUDY_DIR/locks/NODE.lock` for as long
as it lives (the kernel drops it when the process dies, however it dies), so a node is never
trained by two processes at once even if a claim were taken over by mistake; it also touches the
file every few seconds, the liveness signal for a submitit job on another host.

The database runs in WAL mode with a busy timeout; every write is one short transaction. WAL needs
a local file system: run the runners of a study on one host (SLURM jobs, which never open the
database, may run anywhere). Torch-free.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cooldown.errors import CooldownError
from cooldown.study.run_dirs import node_run

STATES = ("pending", "running", "done", "failed")
SCHEMA_VERSION = "1"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runners (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    pid_start TEXT,
    backend TEXT NOT NULL,
    started_at REAL NOT NULL,
    heartbeat REAL NOT NULL,
    ended_at REAL
);
CREATE TABLE IF NOT EXISTS nodes (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    method TEXT NOT NULL,
    size TEXT NOT NULL,
    parent TEXT,
    parent_step INTEGER,
    steps INTEGER NOT NULL,
    total_steps INTEGER NOT NULL,
    definition TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'running', 'done', 'failed')),
    claim_id INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    result TEXT,
    updated_at REAL
);
CREATE TABLE IF NOT EXISTS claims (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    node_id TEXT NOT NULL REFERENCES nodes(id),
    runner_id INTEGER NOT NULL REFERENCES runners(id),
    attempt INTEGER NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL,
    outcome TEXT,
    process TEXT
);
CREATE INDEX IF NOT EXISTS claims_node ON claims(node_id);
"""


# --- processes and locks --------------------------------------------------------------------------


def process_start(pid: int) -> str | None:
    """The kernel's start time of `pid` (Linux), to tell a process from a later one with its pid."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            stat = f.read()
    except OSError:
        return None
    # Field 22 (starttime); the command name (field 2) may hold spaces, so split after its ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def pid_alive(pid: int, start: str | None = None) -> bool:
    """Whether `pid` is a live process (not a zombie) and, when given, started at `start`."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by someone else
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            stat = f.read()
        if stat[stat.rfind(")") + 2 :].startswith("Z"):
            return False
    except OSError:
        pass  # no /proc (macOS): os.kill's answer stands
    return start is None or process_start(pid) in (None, start)


def lock_path(study_dir: Path, node_id: str) -> Path:
    return Path(study_dir) / "locks" / f"{node_id}.lock"


def try_lock(path: Path) -> int | None:
    """An exclusive, non-blocking flock on `path`: the open fd (keep it to hold the lock) or None
    when another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def node_locked(study_dir: Path, node_id: str) -> bool:
    """Whether a process is training the node right now (holds its lock)."""
    path = lock_path(study_dir, node_id)
    if not path.exists():
        return False
    fd = try_lock(path)
    if fd is None:
        return True
    os.close(fd)  # closing drops our probe lock
    return False


# --- the state ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    id: int
    node_id: str
    attempt: int


@dataclass(frozen=True)
class Runner:
    id: int
    host: str
    pid: int


class StudyState:
    """The SQLite state of one study folder."""

    def __init__(self, study_dir: str | Path, *, stale_after_s: float = 120.0, create: bool = True):
        self.study_dir = Path(study_dir)
        self.path = self.study_dir / "study.sqlite"
        self.stale_after_s = stale_after_s
        # (parent node, step) -> bool: where a trainer adapter keeps the checkpoints (None: ours)
        self.checkpoint_ready: Callable[[str, int], bool] | None = None
        if not create and not self.path.exists():
            raise CooldownError(f"{self.path} does not exist: run `cooldown study run` first")
        self.study_dir.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: every write below opens its own BEGIN IMMEDIATE transaction.
        self.db = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        try:
            self._open()
        except sqlite3.DatabaseError as e:
            self.db.close()
            if isinstance(e, sqlite3.OperationalError) and "locked" in str(e):
                raise
            raise CooldownError(
                f"{self.path} is not a readable study database ({e}); move it away and run the "
                "same command again: the study's finished runs are found in their folders"
            ) from None

    def _open(self) -> None:
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA busy_timeout = 60000")
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = FULL")
        with self.transaction():
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self.db.execute(statement)
            self.db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                (SCHEMA_VERSION,),
            )

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> StudyState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT: takes the write lock up front, so a read-then-write (a
        claim) cannot interleave with another writer's."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # --- the graph --------------------------------------------------------------------------------

    def sync_nodes(self, nodes: list[dict[str, Any]], source: str = "study.toml") -> list[str]:
        """Record the plan's nodes; returns the ids added. A recorded node whose definition
        differs is an error naming `source`, what defines the nodes (its run folder holds other
        work); nothing is overwritten."""
        added = []
        with self.transaction():
            recorded = {
                r["id"]: r["definition"]
                for r in self.db.execute("SELECT id, definition FROM nodes")
            }
            for n in nodes:
                definition = json.dumps(n["definition"], sort_keys=True)
                if n["id"] in recorded:
                    if recorded[n["id"]] != definition:
                        old = json.loads(recorded[n["id"]])
                        keys = sorted(
                            k
                            for k in set(old) | set(n["definition"])
                            if old.get(k) != n["definition"].get(k)
                        )
                        raise CooldownError(
                            f"{source} changed node {n['id']} ({', '.join(keys)} differ from "
                            f"{self.path}); restore the {source} or use a new folder"
                        )
                    continue
                self.db.execute(
                    "INSERT INTO nodes (id, kind, method, size, parent, parent_step, steps, "
                    "total_steps, definition, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        n["id"],
                        n["kind"],
                        n["method"],
                        n["size"],
                        n.get("parent"),
                        n.get("parent_step"),
                        n["steps"],
                        n["total_steps"],
                        definition,
                        time.time(),
                    ),
                )
                added.append(n["id"])
        return added

    def nodes(self) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT * FROM nodes ORDER BY rowid").fetchall()
        return [_node_dict(r) for r in rows]

    def node(self, node_id: str) -> dict[str, Any]:
        row = self.db.execute("SELECT * FROM nodes WHERE id = ?", (node_id,)).fetchone()
        if row is None:
            raise CooldownError(f"node {node_id!r} is not in {self.path}")
        return _node_dict(row)

    def claims(self, node_id: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM claims" + (" WHERE node_id = ?" if node_id else "") + " ORDER BY id"
        return [dict(r) for r in self.db.execute(sql, (node_id,) if node_id else ())]

    def runners(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.db.execute("SELECT * FROM runners ORDER BY id")]

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATES, 0)
        for r in self.db.execute("SELECT state, COUNT(*) AS n FROM nodes GROUP BY state"):
            out[r["state"]] = r["n"]
        return out

    # --- runners ----------------------------------------------------------------------------------

    def register_runner(self, backend: str) -> Runner:
        host, pid, now = socket.gethostname(), os.getpid(), time.time()
        with self.transaction():
            cur = self.db.execute(
                "INSERT INTO runners (host, pid, pid_start, backend, started_at, heartbeat) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (host, pid, process_start(pid), backend, now, now),
            )
        return Runner(int(cur.lastrowid or 0), host, pid)

    def heartbeat(self, runner: Runner) -> None:
        with self.transaction():
            self.db.execute(
                "UPDATE runners SET heartbeat = ? WHERE id = ?", (time.time(), runner.id)
            )

    def end_runner(self, runner: Runner) -> None:
        with self.transaction():
            self.db.execute(
                "UPDATE runners SET ended_at = ? WHERE id = ?", (time.time(), runner.id)
            )

    def runner_alive(self, runner_row: sqlite3.Row | dict[str, Any]) -> bool:
        if runner_row["ended_at"] is not None:
            return False
        if runner_row["host"] == socket.gethostname():
            return pid_alive(runner_row["pid"], runner_row["pid_start"])
        return time.time() - runner_row["heartbeat"] < self.stale_after_s

    # --- claims -----------------------------------------------------------------------------------

    def parent_ready(self, node: dict[str, Any] | sqlite3.Row, states: dict[str, str]) -> bool:
        """A node can start once its parent is done or has its checkpoint at the branch step."""
        parent = node["parent"]
        if parent is None:
            return True
        if states.get(parent) == "done":
            return True
        if self.checkpoint_ready is not None:  # a trainer adapter's checkpoints
            return self.checkpoint_ready(parent, node["parent_step"])
        return node_run(self.study_dir, parent).has_checkpoint(node["parent_step"])

    def abandoned(self, node: sqlite3.Row | dict[str, Any]) -> bool:
        """Whether a running node's claim can be taken over: its runner is dead and no process
        trains the node (holds its lock; for a submitit job, whose lock another host may not
        see, also: touched the lock file within `stale_after_s`)."""
        claim = self.db.execute(
            "SELECT c.*, r.host, r.pid, r.pid_start, r.heartbeat, r.ended_at FROM claims c "
            "JOIN runners r ON r.id = c.runner_id WHERE c.id = ?",
            (node["claim_id"],),
        ).fetchone()
        if claim is not None and self.runner_alive(claim):
            return False
        if node_locked(self.study_dir, node["id"]):
            return False
        if claim is not None and (claim["process"] or "").startswith("job:"):
            try:
                age = time.time() - lock_path(self.study_dir, node["id"]).stat().st_mtime
            except OSError:
                age = float("inf")
            return age >= self.stale_after_s
        return True

    def claim_next(
        self, runner: Runner, order: Callable[[dict[str, Any]], Any] | None = None
    ) -> Claim | None:
        """Claim one ready node (pending, or running but abandoned) for `runner`, or None."""
        with self.transaction():
            rows = self.db.execute("SELECT * FROM nodes").fetchall()
            states = {r["id"]: r["state"] for r in rows}
            candidates = [
                r
                for r in rows
                if (
                    (r["state"] == "pending" and not node_locked(self.study_dir, r["id"]))
                    or (r["state"] == "running" and self.abandoned(r))
                )
                and self.parent_ready(r, states)
            ]
            if not candidates:
                return None
            if order is not None:
                candidates.sort(key=lambda r: order(_node_dict(r)))
            node = candidates[0]
            now = time.time()
            if node["state"] == "running":
                self.db.execute(
                    "UPDATE claims SET ended_at = ?, outcome = 'abandoned' WHERE id = ?",
                    (now, node["claim_id"]),
                )
            attempt = node["attempts"] + 1
            cur = self.db.execute(
                "INSERT INTO claims (node_id, runner_id, attempt, started_at) VALUES (?, ?, ?, ?)",
                (node["id"], runner.id, attempt, now),
            )
            claim_id = int(cur.lastrowid or 0)
            self.db.execute(
                "UPDATE nodes SET state = 'running', claim_id = ?, attempts = ?, error = NULL, "
                "updated_at = ? WHERE id = ?",
                (claim_id, attempt, now, node["id"]),
            )
        return Claim(claim_id, node["id"], attempt)

    def set_process(self, claim: Claim, process: str) -> None:
        with self.transaction():
            self.db.execute("UPDATE claims SET process = ? WHERE id = ?", (process, claim.id))

    def finish(
        self,
        claim: Claim,
        outcome: str,
        *,
        result: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> bool:
        """End a claim: `done` (with the result), `failed` (with the error), or `released`/`busy`
        (back to pending). False when the claim is no longer the node's (someone took it over)."""
        state = {"done": "done", "failed": "failed", "released": "pending", "busy": "pending"}[
            outcome
        ]
        now = time.time()
        with self.transaction():
            current = self.db.execute(
                "SELECT claim_id FROM nodes WHERE id = ?", (claim.node_id,)
            ).fetchone()
            if current is None or current["claim_id"] != claim.id:
                return False  # taken over as abandoned: that claim's record stands
            self.db.execute(
                "UPDATE claims SET ended_at = ?, outcome = ? WHERE id = ?", (now, outcome, claim.id)
            )
            cur = self.db.execute(
                "UPDATE nodes SET state = ?, claim_id = NULL, error = ?, updated_at = ?, "
                "result = COALESCE(?, result) WHERE id = ? AND claim_id = ?",
                (
                    state,
                    error,
                    now,
                    None if result is None else json.dumps(result, sort_keys=True),
                    claim.node_id,
                    claim.id,
                ),
            )
            return cur.rowcount == 1

    def retry_failed(self) -> list[str]:
        """Put failed nodes back to pending (a new `study run` tries them again)."""
        with self.transaction():
            ids = [r["id"] for r in self.db.execute("SELECT id FROM nodes WHERE state = 'failed'")]
            self.db.execute(
                "UPDATE nodes SET state = 'pending', updated_at = ? WHERE state = 'failed'",
                (time.time(),),
            )
        return ids

    def waiting_on_others(self, runner: Runner) -> bool:
        """Whether unfinished work could still make progress: a node running under another live
        claim, or a pending node whose parent is not failed."""
        rows = self.db.execute("SELECT * FROM nodes").fetchall()
        states = {r["id"]: r["state"] for r in rows}
        for r in rows:
            if r["state"] == "running":
                return True
            parent_state = states.get(r["parent"]) if r["parent"] is not None else None
            if r["state"] == "pending" and parent_state in ("pending", "running"):
                return True
        return False


def _node_dict(row: sqlite3.Row) -> dict[str, Any]:
    d = dict(row)
    d["definition"] = json.loads(d["definition"])
    d["result"] = json.loads(d["result"]) if d["result"] else None
    return d
