"""Where a study node trains: a local process, torchrun, or a submitit job (SLURM or local).

Each backend's `start(node_id)` returns a handle whose `poll()` is None while the node trains and
then an `Outcome`; `stop()` ends it (its run resumes from its last checkpoint next time). The
loop that uses them is `cooldown.study.engine`.

- `local`: one `python -m cooldown.study STUDY_DIR NODE_ID` process per node, started in the
  study folder, logging to `logs/NODE_ID.log`; it dies with the runner (kernel parent-death signal
  on Linux, a parent watch elsewhere). A node whose config sets `train.nproc_per_node = N` gets
  `torchrun --standalone --nproc_per_node=N -m cooldown train` instead; the runner holds the
  node's lock for it.
- `local-pool`: `workers` long-lived processes that each train one node at a time (no Python and
  torch start-up per node: what `cooldown reproduce` uses); a node with several processes still
  gets its own torchrun.
- `slurm`: one submitit job per node (`submitit.AutoExecutor(cluster="slurm")`), parameters from
  the study's `[slurm]` table (e.g. `timeout_min`, `slurm_partition`, `gpus_per_node`). A node
  whose config sets `train.nproc_per_node = N` runs `torchrun --nproc_per_node=N` inside its job
  (one task per job; give the job N GPUs with `gpus_per_node = N`), so each run gets N GPUs of one
  machine, with NCCL on CUDA.
- `submitit-local`: the same submitit code path on this machine (`submitit.LocalExecutor`), for
  testing; of the `[slurm]` table it uses only `timeout_min`.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from cooldown.errors import CooldownError
from cooldown.run_dir import CONFIG_FILE
from cooldown.study.node import EXIT_BUSY, NodeBusy, result_line, train_node
from cooldown.study.run_dirs import node_run, run_dir_name
from cooldown.study.state import lock_path, try_lock

BACKENDS: tuple[str, ...] = ("local", "local-pool", "slurm", "submitit-local")
HEARTBEAT_S = 2.0


@dataclass
class Outcome:
    ok: bool
    busy: bool = False
    error: str | None = None


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

    name = "local"

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
    run = node_run(study_dir, node_id)
    if not run.config_path.exists():  # a node trained through a trainer adapter
        return 1
    return run.config.train.nproc_per_node or 1


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
    lock = lock_path(study_dir, node_id)
    fd = try_lock(lock)
    if fd is None:  # another process trains it: busy, as `cooldown.study` would report
        log.close()
        return _BusyHandle()
    cmd, env = _torchrun_command(node_id, nproc, threads)
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


def _torchrun_command(node_id: str, nproc: int, threads: int | None) -> tuple[list[str], dict]:
    """`torchrun --standalone` training the node's run with `nproc` ranks (run in the study
    folder; NCCL on CUDA, gloo on CPU: see cooldown.distributed), and its environment."""
    run_dir = run_dir_name(node_id)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += [f"--nproc_per_node={nproc}", "-m", "cooldown", "train"]
    cmd += ["--config", f"{run_dir}/{CONFIG_FILE}", "--out", run_dir]
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(max(1, threads // nproc))
    return cmd, env


def train_node_torchrun(study_dir: str, node_id: str, nproc: int, threads: int | None) -> None:
    """A node with several processes inside one submitit job (one job per node, N GPUs of one
    machine): the node's lock and heartbeat here, its ranks under torchrun. Raises NodeBusy when
    another process holds the lock, CooldownError when torchrun fails."""
    lock = lock_path(Path(study_dir), node_id)
    fd = try_lock(lock)
    if fd is None:
        raise NodeBusy(f"node {node_id} is being trained by another process ({lock} is locked)")
    done = threading.Event()

    def heartbeat() -> None:
        while not done.wait(HEARTBEAT_S):
            with contextlib.suppress(OSError):
                os.utime(lock)

    threading.Thread(target=heartbeat, daemon=True).start()
    try:
        cmd, env = _torchrun_command(node_id, nproc, threads)
        rc = subprocess.run(cmd, cwd=study_dir, env=env).returncode
        if rc != 0:
            raise CooldownError(f"torchrun with {nproc} processes exited with status {rc}")
    finally:
        done.set()
        os.close(fd)


def _term_on_parent_death() -> None:
    """Linux: SIGTERM torchrun when the runner dies (torchrun then stops its ranks)."""
    if sys.platform.startswith("linux"):
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

    def __init__(self, study_dir: Path, slurm: dict, threads: int | None, local: bool):
        try:
            import submitit
        except ImportError:
            raise CooldownError(
                "--backend: slurm needs submitit (pip install 'cooldown[slurm]')"
            ) from None
        folder = study_dir / "submitit"
        if local:
            self.executor = submitit.LocalExecutor(folder=folder)
            params = {k: v for k, v in slurm.items() if k in ("timeout_min",)}
        else:
            try:
                self.executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
            except RuntimeError as e:  # no srun/sbatch here
                raise CooldownError(f"--backend slurm: {e}") from None
            params = dict(slurm)
        try:
            self.executor.update_parameters(**params)
        except (TypeError, ValueError, NameError) as e:
            raise CooldownError(f"slurm: {str(e).splitlines()[0]}") from None
        self.study_dir, self.threads = study_dir, threads
        self.name = "submitit-local" if local else "slurm"

    def start(self, node_id: str) -> _JobHandle:
        nproc = _nproc_per_node(self.study_dir, node_id)
        if nproc > 1:  # `[train] nproc_per_node`: torchrun inside the job, on one machine
            job = self.executor.submit(
                train_node_torchrun, str(self.study_dir), node_id, nproc, self.threads
            )
        else:
            job = self.executor.submit(
                train_node, str(self.study_dir), node_id, threads=self.threads
            )
        return _JobHandle(job)


# --- a pool of long-lived worker processes --------------------------------------------------------


def _pool_worker_init(threads: int | None, parent: int) -> None:
    """A pool worker: `threads` torch threads, and it exits as soon as the runner is gone (a
    killed runner must not leave a worker training a node that the next runner trains again)."""
    import torch  # in the worker only: the runner itself needs no torch

    if threads:
        torch.set_num_threads(threads)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _train_node_logged(study_dir: str, node_id: str, threads: int | None, parent: int) -> None:
    """`train_node` with the node's output in logs/NODE_ID.log, as the local backend has it."""
    log_path = Path(study_dir) / "logs" / f"{node_id}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with (
        open(log_path, "a", encoding="utf-8") as log,
        contextlib.redirect_stdout(log),
        contextlib.redirect_stderr(log),
    ):
        print(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} pool worker pid {os.getpid()}")
        result = train_node(study_dir, node_id, threads=threads, parent_pid=parent)
        print(result_line(node_id, result))


class _PoolHandle:
    def __init__(self, future: Any, backend: PoolBackend):
        self.future, self.backend = future, backend
        self.label = "pool"

    def poll(self) -> Outcome | None:
        if not self.future.done():
            return None
        try:
            self.future.result()
        except NodeBusy:
            return Outcome(False, busy=True)
        except CooldownError as e:
            return Outcome(False, error=str(e))
        except Exception as e:  # a crash, or the worker died (BrokenProcessPool)
            return Outcome(False, error=f"{type(e).__name__}: {e}")
        return Outcome(True)

    def stop(self) -> None:
        self.backend.terminate()


class PoolBackend:
    """`workers` long-lived processes that each train one node at a time: the local backend
    without a Python and torch start-up per node (seconds each, against a tiny run's few seconds
    of training). Each node still runs under its lock with its heartbeat (`train_node`)."""

    name = "local-pool"

    def __init__(self, study_dir: Path, workers: int, threads: int | None):
        self.study_dir, self.threads = study_dir, threads
        self.pool = ProcessPoolExecutor(
            workers,
            mp_context=get_context("spawn"),
            initializer=_pool_worker_init,
            initargs=(threads, os.getpid()),
        )

    def start(self, node_id: str) -> _PoolHandle | _LocalHandle | _BusyHandle:
        if _nproc_per_node(self.study_dir, node_id) > 1:  # its own torchrun, as `local` does
            return LocalBackend(self.study_dir, self.threads).start(node_id)
        args = (str(self.study_dir), node_id, self.threads, os.getpid())
        return _PoolHandle(self.pool.submit(_train_node_logged, *args), self)

    def terminate(self) -> None:
        """Kill the workers (checkpoints are written atomically: their nodes resume)."""
        # ProcessPoolExecutor has no public kill: shutdown() would wait for the running nodes.
        for proc in list(getattr(self.pool, "_processes", {}).values()):
            with contextlib.suppress(OSError):
                proc.kill()
        self.pool.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
