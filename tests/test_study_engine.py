"""The study engine with its pool backend (what `cooldown reproduce` trains with): a trunk and its
branch trained by long-lived workers, recorded in study.sqlite, not redone by a second call, and
after a SIGKILL of the runner no worker trains on and the rerun resumes the interrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from cooldown.config import load_run_config
from cooldown.configio import to_toml
from cooldown.fileio import atomic_write_text
from cooldown.study.backends import PoolBackend
from cooldown.study.engine import execute
from cooldown.study.run_dirs import node_run
from cooldown.study.state import StudyState


def _nodes(tiny_overrides: list[str], trunk_steps: int, branch_at: int | None) -> dict:
    base = [*tiny_overrides, "train.eval_interval=5", "train.checkpoint_interval=5"]
    trunk = load_run_config(
        None,
        [
            *base,
            "schedule.kind=constant",
            f"schedule.total_steps={trunk_steps}",
            "schedule.warmup_steps=2",
            "train.keep_last=1",
        ]
        + ([f"train.permanent_steps=[{branch_at}]"] if branch_at else []),
    )
    configs = {"trunk": trunk}
    nodes = [
        {
            "id": "trunk",
            "kind": "run",
            "method": "constant",
            "size": "tiny",
            "steps": trunk_steps,
            "total_steps": trunk_steps,
            "definition": {"steps": trunk_steps},
        },
    ]
    if branch_at:
        from cooldown.branch import make_branch_config

        child = make_branch_config(trunk, "runs/trunk", branch_at, cooldown_steps=4)
        data = child.model_dump(mode="json", exclude_none=True)
        data["parent"]["run_dir"] = "runs/trunk"
        configs["br/cool"] = type(child).model_validate(data)
        nodes.append(
            {
                "id": "br/cool",
                "kind": "branch",
                "method": "cooldown",
                "size": "tiny",
                "parent": "trunk",
                "parent_step": branch_at,
                "steps": 4,
                "total_steps": branch_at + 4,
                "definition": {"at": branch_at},
            }
        )
    return {"nodes": nodes, "configs": configs}


def _execute(folder: Path, g: dict, workers: int, **kwargs):
    """The graph `g` trained by the engine on `workers` pool workers (configs written as needed)."""

    def prepare(node_id: str) -> None:
        run = node_run(folder, node_id)
        if not run.exists():
            atomic_write_text(run.config_path, to_toml(g["configs"][node_id]))

    backend = PoolBackend(folder, workers, 1)
    return execute(folder, g["nodes"], prepare, backend, workers=workers, **kwargs)


def test_pool_backend_trains_a_trunk_and_its_branch_once(tmp_path, tiny_overrides):
    g = _nodes(tiny_overrides, trunk_steps=10, branch_at=6)
    lines: list[str] = []
    report = _execute(tmp_path, g, 2, log=lines.append)
    assert sorted(report.done_now) == ["br/cool", "trunk"] and not report.failed
    assert node_run(tmp_path, "br/cool").is_complete(10)
    assert "pool worker pid" in (tmp_path / "logs" / "br" / "cool.log").read_text()
    with StudyState(tmp_path, create=False) as state:
        assert {n["id"]: n["state"] for n in state.nodes()} == {"trunk": "done", "br/cool": "done"}
    again = _execute(tmp_path, g, 2, log=lines.append)
    assert again.done_now == [] and again.counts["done"] == 2


RUNNER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from test_study_engine import _execute, _nodes
    g = _nodes({overrides!r}, trunk_steps=400, branch_at=None)
    _execute(Path({folder!r}), g, 1, log=lambda line: print(line, flush=True))
    """
)


def _workers_of(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def test_a_killed_runner_leaves_no_worker_and_the_rerun_resumes(tmp_path, tiny_overrides):
    script = RUNNER.format(
        tests=str(Path(__file__).parent), folder=str(tmp_path), overrides=tiny_overrides
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    ckpts = tmp_path / "runs" / "trunk" / "checkpoints"
    deadline = time.monotonic() + 240
    while not (ckpts.is_dir() and any(ckpts.glob("step_*"))) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ckpts.is_dir(), "the trunk never wrote a checkpoint"
    workers = _workers_of(proc.pid)
    assert workers, "the runner has no worker process to check"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 20
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(w) for w in workers), "a pool worker outlived its runner"
    g = _nodes(tiny_overrides, trunk_steps=400, branch_at=None)
    # The killed runner's claim is abandoned once its heartbeat is stale.
    report = _execute(tmp_path, g, 1, stale_after_s=0.5, log=lambda line: None)
    assert report.done_now == ["trunk"]
    assert "(resumed from step " in (tmp_path / "logs" / "trunk.log").read_text()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (killed, not yet reaped by init) counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False
