"""`cooldown study status`: the graph's progress from `study.sqlite` and the run folders.

Counts per state, each running node's step (from the tail of its metrics.jsonl) and who runs it,
pending nodes split into ready and waiting for their trunk's checkpoint, failures with their
error, and nodes of study.toml not recorded yet. Reads only; torch-free.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cooldown.study.plan import build_plan
from cooldown.study.run_dirs import node_run
from cooldown.study.spec import load_study, study_dir_for
from cooldown.study.state import StudyState


def last_metrics_row(path: Path) -> dict[str, Any] | None:
    """The last complete line of a metrics.jsonl (read from its end: logs can be long)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 8192))
            tail = f.read()
    except OSError:
        return None
    lines = tail.split(b"\n")[:-1]  # the piece after the last newline is torn or empty
    for line in reversed(lines):
        try:
            return json.loads(line)
        except ValueError:
            continue
    return None


def study_status(study_path: str | Path, out: str | Path | None = None) -> str:
    plan = build_plan(load_study(study_path))
    study_dir = study_dir_for(study_path, out)
    with StudyState(study_dir, create=False) as state:
        nodes = state.nodes()
        runners = {r["id"]: r for r in state.runners()}
        claims = {c["id"]: c for c in state.claims()}
        counts = state.counts()
        states = {n["id"]: n["state"] for n in nodes}
        lines = [
            f"{study_dir}: {len(nodes)} nodes: "
            + ", ".join(f"{counts[s]} {s}" for s in ("done", "running", "pending", "failed"))
        ]
        running = [n for n in nodes if n["state"] == "running"]
        for n in running:
            claim = claims.get(n["claim_id"]) or {}
            runner = runners.get(claim.get("runner_id")) or {}
            row = last_metrics_row(node_run(study_dir, n["id"]).metrics_path)
            step = row.get("step") if row else None
            progress = f"step {step:,}/{n['total_steps']:,}" if step is not None else "starting"
            who = f"{runner.get('host')}:{runner.get('pid')}" if runner else "?"
            note = " (abandoned: the next `study run` takes it over)" if state.abandoned(n) else ""
            lines.append(
                f"  running {n['id']}: {progress}, attempt {n['attempts']}, "
                f"{claim.get('process') or 'no process yet'} by runner {who}{note}"
            )
        pending = [n for n in nodes if n["state"] == "pending"]
        ready = [n for n in pending if state.parent_ready(n, states)]
        if pending:
            lines.append(
                f"  pending: {len(ready)} ready, {len(pending) - len(ready)} waiting for their "
                "trunk's checkpoint"
            )
        for n in nodes:
            if n["state"] == "failed":
                lines.append(f"  failed {n['id']} (attempt {n['attempts']}): {n['error']}")
    recorded = {n["id"] for n in nodes}
    planned = {n.id for n in plan.runnable()}
    if planned - recorded:
        lines.append(f"  {len(planned - recorded)} nodes of study.toml are not recorded yet")
    if recorded - planned:
        lines.append(
            f"  {len(recorded - planned)} recorded nodes are no longer in study.toml: "
            + ", ".join(sorted(recorded - planned))
        )
    points = plan.points()
    done = sum(1 for p in points if all(states.get(n) == "done" for n in p.needs))
    lines.append(f"budget points with results: {done} of {len(points)}")
    return "\n".join(lines)
