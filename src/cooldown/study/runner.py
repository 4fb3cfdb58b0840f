"""`cooldown study run`: train the study graph, resumably, on local processes or through submitit.

A runner registers itself in `study.sqlite`, then loops: it claims ready nodes (see
`cooldown.study.state`) up to `workers` at a time, writes each node's config.toml into
`runs/NODE_ID`, starts its training process, and when that process ends copies the run's results
into the state (done) or records its error (failed). A branch is claimed as soon as its trunk's
checkpoint at the branch step exists, while the trunk trains on.

Backends:
- `local` (default): one `python -m cooldown.study` process per node, started in the study
  folder, logging to `logs/NODE_ID.log`; it dies with the runner (kernel parent-death signal on
  Linux, a parent watch elsewhere). A study whose `[train]` sets `nproc_per_node = N` (with
  `parallelism = "ddp"` or `"fsdp"`) gets `torchrun --standalone --nproc_per_node=N -m cooldown
  train` per node instead; the runner holds the node's lock for it.
- `slurm`: one submitit job per node (`submitit.AutoExecutor(cluster="slurm")`), parameters from
  the study's `[slurm]` table (e.g. `timeout_min`, `slurm_partition`, `gpus_per_node`).
- `submitit-local`: the same submitit code path on this machine (`submitit.LocalExecutor`), for
  testing; of the `[slurm]` table it uses only `timeout_min`.

Killed at any moment and started again, a runner finishes the work: done nodes are never redone
(their results are in the state; a run folder whose manifest says complete is recorded without
training), interrupted nodes resume from their last checkpoint (the trainer does that), a node
never trains in two processes at once (its lock), and nothing finished is lost (results live in
the run folder and are copied into the state). Failed nodes are retried by the next `study run`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cooldown.errors import CooldownError, Interrupted
from cooldown.fileio import atomic_write_text
from cooldown.run_dir import CONFIG_FILE
from cooldown.study.node import EXIT_BUSY
from cooldown.study.plan import Plan, build_plan
from cooldown.study.results import read_run_result
from cooldown.study.run_dirs import node_run, run_dir_name
from cooldown.study.spec import StudySpec, load_study, study_dir_for
from cooldown.study.state import Claim, StudyState

BACKENDS: tuple[str, ...] = ("local", "slurm", "submitit-local")
HEARTBEAT_S = 2.0


@dataclass
class Outcome:
    ok: bool
    busy: bool = False
    error: str | None = None


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


# --- backends -------------------------------------------------------------------------------------


class _LocalHandle:
    def __init__(self, proc: subprocess.Popen, log_path: Path, log_file: Any):
        self.proc, self.log_path, self.log_file = proc, log_path, log_file
        self.label = f"pid:{proc.pid}"

    def poll(self) -> Outcome | None:
        rc = self.proc.poll()
        if rc is None:
            return None
        self.log_file.close()
        if rc == 0:
            return Outcome(True)
        if rc == EXIT_BUSY:
            return Outcome(False, busy=True)
        return Outcome(False, error=_last_error(self.log_path, rc))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _last_error(log_path: Path, rc: int) -> str:
    try:
        lines = [ln.strip() for ln in log_path.read_text(errors="replace").splitlines()]
    except OSError:
        lines = []
    lines = [ln for ln in lines if ln]
    errors = [ln for ln in lines if ln.startswith("error:")]
    if rc < 0:
        try:
            why = f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            why = f"killed by signal {-rc}"
        last = errors[-1] if errors else ""
    else:
        why = f"exit status {rc}"
        last = (errors or lines or [""])[-1]  # a crash: the traceback's last line
    return f"{why}: {last} (log: {log_path})" if last else f"{why} (log: {log_path})"


class LocalBackend:
    """One training process per node, in the study folder; it dies with this process."""

    def __init__(self, study_dir: Path, threads: int | None):
        self.study_dir, self.threads = study_dir, threads

    def start(self, node_id: str) -> _LocalHandle | _BusyHandle:
        log_path = self.study_dir / "logs" / f"{node_id}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "a", encoding="utf-8")  # noqa: SIM115 - closed by the handle
        log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} runner pid {os.getpid()}\n")
        log.flush()
        cmd = [sys.executable, "-m", "cooldown.study", str(self.study_dir), node_id]
        cmd += ["--parent-pid", str(os.getpid())]
        if self.threads:
            cmd += ["--threads", str(self.threads)]
        env = dict(os.environ)
        if self.threads:
            env.setdefault("OMP_NUM_THREADS", str(self.threads))
        nproc = _nproc_per_node(self.study_dir, node_id)
        if nproc > 1:
            return _start_torchrun(self.study_dir, node_id, nproc, self.threads, log_path, log)
        proc = subprocess.Popen(
            cmd, cwd=self.study_dir, stdout=log, stderr=subprocess.STDOUT, env=env
        )
        return _LocalHandle(proc, log_path, log)


# --- a node with several processes (`[train] nproc_per_node`, see cooldown.distributed) -----------


def _nproc_per_node(study_dir: Path, node_id: str) -> int:
    return node_run(study_dir, node_id).config.train.nproc_per_node or 1


class _TorchrunHandle(_LocalHandle):
    """`torchrun --standalone` training the node; this runner holds the node's lock for it (the
    ranks are not `cooldown.study` processes) and touches it as the node's heartbeat."""

    def __init__(self, proc: subprocess.Popen, log_path: Path, log_file: Any, lock: Path, fd: int):
        super().__init__(proc, log_path, log_file)
        self.lock, self.fd, self.beat = lock, fd, time.monotonic()

    def poll(self) -> Outcome | None:
        outcome = super().poll()
        if outcome is None and time.monotonic() - self.beat > HEARTBEAT_S:
            with contextlib.suppress(OSError):
                os.utime(self.lock)
            self.beat = time.monotonic()
        elif outcome is not None:
            self._unlock()
        return outcome

    def stop(self) -> None:
        super().stop()  # SIGTERM: torchrun stops its ranks
        self._unlock()

    def _unlock(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class _BusyHandle:
    label = "busy"

    def poll(self) -> Outcome:
        return Outcome(False, busy=True)

    def stop(self) -> None:
        pass


def _start_torchrun(
    study_dir: Path, node_id: str, nproc: int, threads: int | None, log_path: Path, log: Any
) -> _LocalHandle | _BusyHandle:
    from cooldown.study.state import lock_path, try_lock

    lock = lock_path(study_dir, node_id)
    fd = try_lock(lock)
    if fd is None:  # another process trains it: busy, as `cooldown.study` would report
        log.close()
        return _BusyHandle()
    run_dir = run_dir_name(node_id)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += [f"--nproc_per_node={nproc}", "-m", "cooldown", "train"]
    cmd += ["--config", f"{run_dir}/{CONFIG_FILE}", "--out", run_dir]
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(max(1, threads // nproc))
    try:
        proc = subprocess.Popen(
            cmd,
            cwd=study_dir,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=_term_on_parent_death,  # safe: the runner starts no threads
        )
    except BaseException:
        os.close(fd)
        raise
    return _TorchrunHandle(proc, log_path, log, lock, fd)


def _term_on_parent_death() -> None:
    """Linux: SIGTERM torchrun when the runner dies (torchrun then stops its ranks)."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)


class _JobHandle:
    def __init__(self, job: Any):
        self.job = job
        self.label = f"job:{job.job_id}"

    def poll(self) -> Outcome | None:
        if not self.job.done():
            return None
        try:
            self.job.result()
        except Exception as e:  # submitit re-raises the job's error as FailedJobError text
            text = str(e)
            if "NodeBusy" in text:
                return Outcome(False, busy=True)
            lines = [ln for ln in text.splitlines() if ln.strip()]
            return Outcome(
                False, error=f"job {self.job.job_id} failed: {lines[-1] if lines else e}"
            )
        return Outcome(True)

    def stop(self) -> None:
        with contextlib.suppress(Exception):  # a job that already ended cannot be cancelled
            self.job.cancel(check=False)


class SubmititBackend:
    """One submitit job per node: SLURM (`AutoExecutor`) or this machine (`LocalExecutor`)."""

    def __init__(self, study_dir: Path, spec: StudySpec, threads: int | None, local: bool):
        try:
            import submitit
        except ImportError:
            raise CooldownError(
                "--backend: slurm needs submitit (pip install 'cooldown[slurm]')"
            ) from None
        folder = study_dir / "submitit"
        if local:
            self.executor = submitit.LocalExecutor(folder=folder)
            params = {k: v for k, v in spec.slurm.items() if k in ("timeout_min",)}
        else:
            try:
                self.executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
            except RuntimeError as e:  # no srun/sbatch here
                raise CooldownError(f"--backend slurm: {e}") from None
            params = dict(spec.slurm)
        try:
            self.executor.update_parameters(**params)
        except (TypeError, ValueError, NameError) as e:
            raise CooldownError(f"slurm: {str(e).splitlines()[0]}") from None
        self.study_dir, self.threads = study_dir, threads

    def start(self, node_id: str) -> _JobHandle:
        from cooldown.study.node import train_node

        job = self.executor.submit(train_node, str(self.study_dir), node_id, threads=self.threads)
        return _JobHandle(job)


# --- the loop -------------------------------------------------------------------------------------


def _place_study_toml(study_path: Path, study_dir: Path) -> None:
    """A study folder holds its study.toml; copy it there when --out names another folder."""
    target = study_dir / "study.toml"
    text = study_path.read_text(encoding="utf-8")
    if target.exists():
        if target.resolve() != study_path.resolve() and target.read_text(encoding="utf-8") != text:
            raise CooldownError(
                f"--out: {study_dir} holds a different study.toml; use another folder"
            )
        return
    atomic_write_text(target, text)


def _order(node: dict[str, Any]) -> tuple:
    # Trunks first (their checkpoints unlock branches), then the longest work first.
    return (node["method"] != "constant", -node["steps"], node["id"])


def _prepare(spec: StudySpec, plan: Plan, node_id: str, study_dir: Path) -> bool:
    """Write the node's config.toml; True when its run folder already holds a finished run."""
    from cooldown.configio import to_toml
    from cooldown.study.node_config import node_run_config

    node = plan.by_id[node_id]
    run = node_run(study_dir, node_id)
    cfg = node_run_config(spec, plan, node, study_dir)
    if not run.exists():
        atomic_write_text(run.config_path, to_toml(cfg))
    try:
        read_run_result(run.path, expect_steps=node.total_steps)
    except CooldownError:
        return False
    return True


def check_configs(spec: StudySpec, plan: Plan, study_dir: Path) -> None:
    """Build every run's config before training anything: a bad [optim], [train] or [averaging]
    table fails here, naming the field, not in the first node's log."""
    from cooldown.study.node_config import node_run_config

    for node in plan.runnable():
        node_run_config(spec, plan, node, study_dir)


def run_study(
    study_path: str | Path,
    *,
    out: str | Path | None = None,
    workers: int = 1,
    backend: str = "local",
    threads: int | None = None,
    poll_s: float = 0.2,
    stale_after_s: float = 120.0,
    log: Callable[[str], None] = print,
) -> RunReport:
    """Run (or finish) the study in `study_path`'s folder (or `out`); see the module docstring."""
    if workers < 1:
        raise CooldownError(f"--workers must be at least 1 (got {workers})")
    if backend not in BACKENDS:
        raise CooldownError(f"--backend must be one of {', '.join(BACKENDS)} (got {backend!r})")
    study_path = Path(study_path)
    spec = load_study(study_path)
    plan = build_plan(spec)
    study_dir = study_dir_for(study_path, out)
    study_dir.mkdir(parents=True, exist_ok=True)
    _place_study_toml(study_path, study_dir)
    check_configs(spec, plan, study_dir)
    if threads is None and backend != "slurm":  # a cluster node's cores are not ours to count
        threads = max(1, (os.cpu_count() or 1) // workers)
    if backend == "local":
        runner_backend: Any = LocalBackend(study_dir, threads)
    else:
        runner_backend = SubmititBackend(study_dir, spec, threads, local=backend != "slurm")

    with StudyState(study_dir, stale_after_s=stale_after_s) as state:
        added = state.sync_nodes(
            [
                {"id": n.id, **n.definition(), "definition": plan.definition(n)}
                for n in plan.runnable()
            ]
        )
        if added:
            log(f"{study_dir}: recorded {len(added)} new nodes")
        retried = state.retry_failed()
        if retried:
            log(f"retrying {len(retried)} failed nodes: {', '.join(retried)}")
        runner = state.register_runner(backend)
        report = RunReport(study_dir, {})
        active: dict[str, tuple[Claim, Any]] = {}
        previous_term = _term_raises()
        try:
            last_beat = 0.0
            while True:
                for node_id, (claim, handle) in list(active.items()):
                    outcome = handle.poll()
                    if outcome is not None:
                        del active[node_id]
                        _record(state, plan, study_dir, claim, outcome, report, log)
                if time.monotonic() - last_beat > HEARTBEAT_S:
                    state.heartbeat(runner)
                    last_beat = time.monotonic()
                while len(active) < workers:
                    claim = state.claim_next(runner, order=_order)
                    if claim is None:
                        break
                    try:
                        finished = _prepare(spec, plan, claim.node_id, study_dir)
                    except CooldownError as e:
                        state.finish(claim, "failed", error=str(e))
                        report.failed[claim.node_id] = str(e)
                        log(f"failed {claim.node_id}: {e}")
                        continue
                    if finished:
                        _record(state, plan, study_dir, claim, Outcome(True), report, log)
                        continue
                    handle = runner_backend.start(claim.node_id)
                    state.set_process(claim, handle.label)
                    active[claim.node_id] = (claim, handle)
                    log(f"started {claim.node_id} (attempt {claim.attempt}, {handle.label})")
                if not active and not state.waiting_on_others(runner):
                    break
                time.sleep(poll_s)
        except BaseException as e:
            released = []
            for node_id, (claim, handle) in active.items():
                handle.stop()
                outcome = handle.poll()
                if outcome is not None and outcome.ok:
                    _record(state, plan, study_dir, claim, outcome, report, log)
                else:
                    state.finish(claim, "released")
                    released.append(node_id)
                    log(f"released {node_id}: it resumes from its last checkpoint next time")
            if isinstance(e, KeyboardInterrupt):
                nodes = (
                    f"{len(released)} running node(s) released" if released else "no node running"
                )
                raise Interrupted(
                    f"study run interrupted ({study_dir}): {nodes}, {len(report.done_now)} "
                    "finished in this run; "
                    "rerun the same command to finish the study (runs resume from their last "
                    "checkpoints)"
                ) from None
            if isinstance(e, _Terminated):
                raise CooldownError(
                    f"study run stopped by {e}; its nodes were released: run the same command "
                    "to finish the study"
                ) from None
            raise
        finally:
            if previous_term is not None:
                signal.signal(signal.SIGTERM, previous_term)
            state.end_runner(runner)
        report.counts = state.counts()
    return report


def _record(
    state: StudyState,
    plan: Plan,
    study_dir: Path,
    claim: Claim,
    outcome: Outcome,
    report: RunReport,
    log: Callable[[str], None],
) -> None:
    node = plan.by_id[claim.node_id]
    if outcome.busy:
        state.finish(claim, "busy")
        log(f"{claim.node_id} is being trained by another process; it stays pending")
        return
    if outcome.ok:
        try:
            result = read_run_result(
                node_run(study_dir, node.id).path, expect_steps=node.total_steps
            )
        except CooldownError as e:
            outcome = Outcome(False, error=str(e))
        else:
            state.finish(claim, "done", result=result)
            report.done_now.append(node.id)
            loss = result["manifest"].get("final_val_loss")
            shown = "n/a" if loss is None else f"{loss:.4f} nats/token"
            log(f"done {node.id}: final val loss {shown}")
            return
    state.finish(claim, "failed", error=outcome.error)
    report.failed[node.id] = outcome.error or "failed"
    log(f"failed {node.id}: {outcome.error}")


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
