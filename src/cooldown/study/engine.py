"""The one engine that trains a graph of runs: `cooldown study run` and `cooldown reproduce` both
hand it their nodes.

A graph is a list of node records (`id`, `kind`, `method`, `size`, `parent`, `parent_step`,
`steps`, `total_steps`, `definition`: what `StudyState.sync_nodes` stores) whose run folders are
`FOLDER/runs/NODE_ID`. The engine registers a runner in `FOLDER/study.sqlite`, then loops: it
claims ready nodes (see `cooldown.study.state`: a branch is ready as soon as its parent's
checkpoint at the branch step exists, while the parent trains on) up to `workers` at a time,
has the caller write each node's config.toml (`prepare`), starts its training process on a
backend (`cooldown.study.backends`), and when that process ends copies the run's results into the
state (done) or records its error (failed).

Killed at any moment and started again, it finishes the work: done nodes are never redone (their
results are in the state; a run folder whose manifest says complete is recorded without
training), interrupted nodes resume from their last checkpoint (the trainer does that), a node
never trains in two processes at once (its lock), and nothing finished is lost (results live in
the run folder and are copied into the state). Failed nodes are retried by the next call.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cooldown.errors import CooldownError, Interrupted
from cooldown.study.backends import Outcome
from cooldown.study.results import read_run_result
from cooldown.study.run_dirs import node_run
from cooldown.study.state import Claim, StudyState

HEARTBEAT_S = 2.0


@dataclass
class RunReport:
    study_dir: Path
    counts: dict[str, int]
    done_now: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        parts = ", ".join(f"{n} {s}" for s, n in self.counts.items())
        lines = [f"{self.study_dir}: {parts} (finished in this run: {len(self.done_now)})"]
        lines += [f"  failed {node}: {error}" for node, error in self.failed.items()]
        if self.failed:
            lines.append(
                "run the same command again to retry the failed nodes (each resumes from its "
                "last checkpoint); their dependents wait until then"
            )
        return "\n".join(lines)


def _order(node: dict[str, Any]) -> tuple:
    # Trunks first (their checkpoints unlock branches), then the longest work first.
    return (node["method"] != "constant", -node["steps"], node["id"])


def execute(
    folder: Path,
    nodes: list[dict[str, Any]],
    prepare: Callable[[str], None],
    backend: Any,
    *,
    workers: int = 1,
    what: str = "study run",
    source: str = "study.toml",
    poll_s: float = 0.2,
    stale_after_s: float = 120.0,
    log: Callable[[str], None] = print,
    checkpoint_ready: Callable[[str, int], bool] | None = None,
) -> RunReport:
    """Train every node of `nodes` not yet done (see the module docstring). `prepare(node_id)`
    writes the node's config.toml when its run folder has none; `what` names the job in the
    message of an interruption, `source` what defines the nodes (a changed definition is an
    error naming it). `checkpoint_ready(parent, step)`: whether a branch's parent has its
    checkpoint, for nodes trained through a trainer adapter (default: the run folder's own)."""
    with StudyState(folder, stale_after_s=stale_after_s) as state:
        state.checkpoint_ready = checkpoint_ready
        added = state.sync_nodes(nodes, source=source)
        if added:
            log(f"{folder}: recorded {len(added)} new nodes")
        retried = state.retry_failed()
        if retried:
            log(f"retrying {len(retried)} failed nodes: {', '.join(retried)}")
        loop = _Loop(state, folder, nodes, prepare, backend, log)
        previous_term = _term_raises()
        try:
            loop.run(workers, poll_s)
        except BaseException as e:
            released = loop.release()
            if isinstance(e, KeyboardInterrupt):
                running = (
                    f"{len(released)} running node(s) released" if released else "no node running"
                )
                raise Interrupted(
                    f"{what} interrupted ({folder}): {running}, {len(loop.report.done_now)} "
                    "finished in this run; "
                    "rerun the same command to finish the study (runs resume from their last "
                    "checkpoints)"
                ) from None
            if isinstance(e, _Terminated):
                raise CooldownError(
                    f"{what} stopped by {e}; its nodes were released: run the same command "
                    "to finish the study"
                ) from None
            raise
        finally:
            if previous_term is not None:
                signal.signal(signal.SIGTERM, previous_term)
            state.end_runner(loop.runner)
            if hasattr(backend, "close"):
                backend.close()
        loop.report.counts = state.counts()
    return loop.report


class _Loop:
    """One runner's work on the graph: claim, prepare, start, poll, record."""

    def __init__(self, state, folder, nodes, prepare, backend, log) -> None:
        self.state, self.folder, self.prepare, self.backend, self.log = (
            state,
            folder,
            prepare,
            backend,
            log,
        )
        self.totals = {n["id"]: n["total_steps"] for n in nodes}
        self.runner = state.register_runner(getattr(backend, "name", "local"))
        self.report = RunReport(folder, {})
        self.todo = sum(1 for n in state.nodes() if n["state"] != "done")
        self.active: dict[str, tuple[Claim, Any, float]] = {}

    def run(self, workers: int, poll_s: float) -> None:
        last_beat = 0.0
        while True:
            for node_id, (claim, handle, started) in list(self.active.items()):
                outcome = handle.poll()
                if outcome is not None:
                    del self.active[node_id]
                    self.record(claim, outcome, started)
            if time.monotonic() - last_beat > HEARTBEAT_S:
                self.state.heartbeat(self.runner)
                last_beat = time.monotonic()
            while len(self.active) < workers and self.start_next():
                pass
            if not self.active and not self.state.waiting_on_others(self.runner):
                return
            time.sleep(poll_s)

    def start_next(self) -> bool:
        """Claim one ready node and start it (or record it, when its run is already finished);
        False when no node is ready."""
        claim = self.state.claim_next(self.runner, order=_order)
        if claim is None:
            return False
        started = time.monotonic()
        try:
            self.prepare(claim.node_id)
            finished = _finished(self.folder, claim.node_id, self.totals[claim.node_id])
        except CooldownError as e:
            self.state.finish(claim, "failed", error=str(e))
            self.report.failed[claim.node_id] = str(e)
            self.log(f"failed {claim.node_id}: {e}")
            return True
        if finished:
            self.record(claim, Outcome(True), started)
            return True
        handle = self.backend.start(claim.node_id)
        self.state.set_process(claim, handle.label)
        self.active[claim.node_id] = (claim, handle, started)
        self.log(f"started {claim.node_id} (attempt {claim.attempt}, {handle.label})")
        return True

    def release(self) -> list[str]:
        """Stop every running node; those that did not finish are released to the next runner."""
        released = []
        for node_id, (claim, handle, started) in self.active.items():
            handle.stop()
            outcome = handle.poll()
            if outcome is not None and outcome.ok:
                self.record(claim, outcome, started)
            else:
                self.state.finish(claim, "released")
                released.append(node_id)
                self.log(f"released {node_id}: it resumes from its last checkpoint next time")
        return released

    def record(self, claim: Claim, outcome: Outcome, started: float) -> None:
        node_id, state, report, log = claim.node_id, self.state, self.report, self.log
        if outcome.busy:
            state.finish(claim, "busy")
            log(f"{node_id} is being trained by another process; it stays pending")
            return
        if outcome.ok:
            run = node_run(self.folder, node_id)
            try:
                result = read_run_result(run.path, expect_steps=self.totals[node_id])
            except CooldownError as e:
                outcome = Outcome(False, error=str(e))
            else:
                state.finish(claim, "done", result=result)
                report.done_now.append(node_id)
                log(
                    f"done {node_id} [{len(report.done_now)}/{self.todo}]: {_loss_text(result)} "
                    f"({time.monotonic() - started:.0f} s)"
                )
                return
        state.finish(claim, "failed", error=outcome.error)
        report.failed[node_id] = outcome.error or "failed"
        log(f"failed {node_id}: {outcome.error}")


def _loss_text(result: dict[str, Any]) -> str:
    loss, which = result["manifest"].get("final_val_loss"), "final"
    if result.get("adapter"):  # the trainer's own metric and unit
        return f"final validation metric {'n/a' if loss is None else f'{loss:.4f}'}"
    if loss is None and result.get("eval_rows"):  # no final full pass
        loss, which = result["eval_rows"][-1].get("val_loss"), "last logged"
    return f"{which} val loss " + ("n/a" if loss is None else f"{loss:.4f} nats/token")


def _finished(folder: Path, node_id: str, total_steps: int) -> bool:
    """True when the node's run folder already holds its finished run."""
    try:
        read_run_result(node_run(folder, node_id).path, expect_steps=total_steps)
    except CooldownError:
        return False
    return True


class _Terminated(Exception):
    pass


def _term_raises() -> Any:
    """SIGTERM (a scheduler, `kill`) interrupts the loop like Ctrl-C: claims are released."""
    try:

        def handler(signum: int, frame: Any) -> None:
            raise _Terminated(f"signal {signum}")

        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        return None
