"""Where a study keeps its nodes' run folders: `STUDY_DIR/runs/NODE_ID` (torch-free).

A branch's config names its parent as `runs/TRUNK_ID`, relative to the study folder, where node
processes run; everything else reaches a node's folder through `node_run`.
"""

from __future__ import annotations

from pathlib import Path

from cooldown.run_dir import RunDir

RUNS_DIR = "runs"


def run_dir_name(node_id: str) -> str:
    """The node's run folder relative to the study folder."""
    return f"{RUNS_DIR}/{node_id}"


def node_run(study_dir: str | Path, node_id: str) -> RunDir:
    """The run folder of node `node_id` of the study in `study_dir`."""
    return RunDir(Path(study_dir) / RUNS_DIR / node_id)
