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
) -> RunReport:
    """Train every node of `nodes` not yet done (see the module docstring). `prepare(node_id)`
    writes the node's config.toml when its run folder has none; `what` names the job in the
    message of an interruption, `source` what defines the nodes (a changed definition is an
    error naming it)."""
    totals = {n["id"]: n["total_steps"] for n in nodes}
    with StudyState(folder, stale_after_s=stale_after_s) as state:
        added = state.sync_nodes(nodes, source=source)
        if added:
            log(f"{folder}: recorded {len(added)} new nodes")
        retried = state.retry_failed()
        if retried:
            log(f"retrying {len(retried)} failed nodes: {', '.join(retried)}")
        runner = state.register_runner(getattr(backend, "name", "local"))
        report = RunReport(folder, {})
        todo = sum(1 for n in state.nodes() if n["state"] != "done")
        active: dict[str, tuple[Claim, Any, float]] = {}

        def record(claim: Claim, outcome: Outcome, started: float) -> None:
            _record(state, folder, totals, claim, outcome, report, log, started, todo)

        previous_term = _term_raises()
        try:
            last_beat = 0.0
            while True:
                for node_id, (claim, handle, started) in list(active.items()):
                    outcome = handle.poll()
                    if outcome is not None:
                        del active[node_id]
                        record(claim, outcome, started)
                if time.monotonic() - last_beat > HEARTBEAT_S:
                    state.heartbeat(runner)
                    last_beat = time.monotonic()
                while len(active) < workers:
                    claim = state.claim_next(runner, order=_order)
                    if claim is None:
                        break
                    started = time.monotonic()
                    try:
                        prepare(claim.node_id)
                        finished = _finished(folder, claim.node_id, totals[claim.node_id])
                    except CooldownError as e:
                        state.finish(claim, "failed", error=str(e))
                        report.failed[claim.node_id] = str(e)
                        log(f"failed {claim.node_id}: {e}")
                        continue
                    if finished:
                        record(claim, Outcome(True), started)
                        continue
                    handle = backend.start(claim.node_id)
                    state.set_process(claim, handle.label)
                    active[claim.node_id] = (claim, handle, started)
                    log(f"started {claim.node_id} (attempt {claim.attempt}, {handle.label})")
                if not active and not state.waiting_on_others(runner):
                    break
                time.sleep(poll_s)
        except BaseException as e:
            released = []
            for node_id, (claim, handle, started) in active.items():
                handle.stop()
                outcome = handle.poll()
                if outcome is not None and outcome.ok:
                    record(claim, outcome, started)
                else:
                    state.finish(claim, "released")
                    released.append(node_id)
                    log(f"released {node_id}: it resumes from its last checkpoint next time")
            if isinstance(e, KeyboardInterrupt):
                running = (
                    f"{len(released)} running node(s) released" if released else "no node running"
                )
                raise Interrupted(
                    f"{what} interrupted ({folder}): {running}, {len(report.done_now)} "
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
            state.end_runner(runner)
        report.counts = state.counts()
    return report


def _finished(folder: Path, node_id: str, total_steps: int) -> bool:
    """True when the node's run folder already holds its finished run."""
    try:
        read_run_result(node_run(folder, node_id).path, expect_steps=total_steps)
    except CooldownError:
        return False
    return True


def _record(
    state: StudyState,
    folder: Path,
    totals: dict[str, int],
    claim: Claim,
    outcome: Outcome,
    report: RunReport,
    log: Callable[[str], None],
    started: float,
    todo: int,
) -> None:
    node_id = claim.node_id
    if outcome.busy:
        state.finish(claim, "busy")
        log(f"{node_id} is being trained by another process; it stays pending")
        return
    if outcome.ok:
        try:
            result = read_run_result(node_run(folder, node_id).path, expect_steps=totals[node_id])
        except CooldownError as e:
            outcome = Outcome(False, error=str(e))
        else:
            state.finish(claim, "done", result=result)
            report.done_now.append(node_id)
            loss, which = result["manifest"].get("final_val_loss"), "final"
            if loss is None and result.get("eval_rows"):  # no final full pass
                loss, which = result["eval_rows"][-1].get("val_loss"), "last logged"
            shown = "n/a" if loss is None else f"{loss:.4f} nats/token"
            seconds = time.monotonic() - started
            log(
                f"done {node_id} [{len(report.done_now)}/{todo}]: {which} val loss {shown} "
                f"({seconds:.0f} s)"
            )
            return
    state.finish(claim, "failed", error=outcome.error)
    report.failed[node_id] = outcome.error or "failed"
    log(f"failed {node_id}: {outcome.error}")


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
