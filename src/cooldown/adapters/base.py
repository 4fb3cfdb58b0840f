"""The trainer-adapter interface: how `cooldown` drives a trainer it does not own.

An adapter knows, for one trainer: the command that trains a run with a given LR schedule (a
trunk: constant after warmup; a from-scratch run: with its cooldown), how a branch starts from a
trunk's checkpoint at step S and cools down over K steps (the checkpoint hand-over), how to read
a run's curve from its logs (step, lr, train_loss, val_metric, tokens) and its parameter and token
counts for compute accounting, and what a branch does and does not reproduce exactly (its
`exactness`, written into the branch's manifest).

A run folder made through an adapter:

    RUN/manifest.json   adapter, role (trunk | branch | scratch), request, command, parent,
                        exactness, counts, status, final result   (written atomically)
    RUN/stdout.log      the trainer's stdout and stderr
    RUN/curve.csv       the parsed curve, one row per logged step (written atomically)

A caller (the CLI, or a study node) does:

    proc = adapter.launch(run_dir, request)      # starts the trainer, returns the Popen
    record = adapter.finish(run_dir, proc)       # waits, parses the logs, writes the manifest

Steps follow `cooldown`'s convention (cooldown.schedules): step n is the state after n updates;
a curve row's `lr` is the multiplier used by update n. Adapters translate the trainer's own
numbering.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from cooldown.errors import CooldownError
from cooldown.fileio import atomic_write_json, atomic_write_text

__all__ = [
    "CURVE_COLUMNS",
    "MANIFEST",
    "Exactness",
    "RunRequest",
    "TrainerAdapter",
    "read_manifest",
    "write_curve",
]

MANIFEST = "manifest.json"
STDOUT = "stdout.log"
CURVE = "curve.csv"
CURVE_COLUMNS = ("step", "lr", "train_loss", "val_metric", "tokens")


@dataclass(frozen=True)
class RunRequest:
    """One run to train: `total_steps` updates, a cooldown of `cooldown_steps` updates after
    update `cooldown_start` (0 steps: a trunk at constant LR), and for a branch the trunk's run
    folder and the step to start from."""

    total_steps: int
    cooldown_start: int
    cooldown_steps: int = 0
    shape: str = "linear"
    final_lr_frac: float = 0.0
    parent_run_dir: Optional[str] = None
    parent_step: Optional[int] = None
    lr: Optional[float] = None  # a study's LR (the `{lr}` template field); None: the trainer's
    extra_args: tuple[str, ...] = ()  # appended to the command (a study size's own flags)

    @property
    def role(self) -> str:
        if self.parent_run_dir is not None:
            return "branch"
        return "trunk" if self.cooldown_steps == 0 else "scratch"

    @staticmethod
    def trunk(total_steps: int) -> RunRequest:
        return RunRequest(total_steps=total_steps, cooldown_start=total_steps)

    @staticmethod
    def scratch(total_steps: int, cooldown_steps: int, **kw: Any) -> RunRequest:
        return RunRequest(total_steps, total_steps - cooldown_steps, cooldown_steps, **kw)

    @staticmethod
    def branch(parent: str | Path, step: int, cooldown_steps: int, **kw: Any) -> RunRequest:
        return RunRequest(
            step + cooldown_steps,
            step,
            cooldown_steps,
            parent_run_dir=str(Path(parent).absolute()),
            parent_step=step,
            **kw,
        )


@dataclass
class Exactness:
    """What a branch reproduces of the from-scratch run with the same cooldown (`exact`), what it
    does not and why (`not_exact`), and the settings that would make more of it exact."""

    exact: list[str] = field(default_factory=list)
    not_exact: dict[str, str] = field(default_factory=dict)
    to_make_exact: dict[str, str] = field(default_factory=dict)
    compared_with: str = "the trainer's own from-scratch run with the same schedule"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def write_curve(run_dir: Path, rows: list[dict[str, Any]]) -> Path:
    """RUN/curve.csv, atomically; missing values are empty cells."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CURVE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in CURVE_COLUMNS})
    return atomic_write_text(run_dir / CURVE, buf.getvalue())


def read_manifest(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / MANIFEST
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CooldownError(
            f"{run_dir}: not a run made through an adapter ({MANIFEST} is missing)"
        ) from None
    except ValueError as e:
        raise CooldownError(f"{path}: not valid JSON ({e})") from None


def adapter_manifest(run_dir: str | Path) -> dict[str, Any] | None:
    """The adapter manifest of `run_dir`, or None when it has none (or not one made by an
    adapter: a damaged or foreign manifest.json counts as none)."""
    try:
        manifest = read_manifest(run_dir)
    except CooldownError:
        return None
    return manifest if isinstance(manifest, dict) and "adapter" in manifest else None


class TrainerAdapter(ABC):
    """One trainer. Subclasses give the command, the hand-over, the log parser and the facts."""

    name: str = ""

    @abstractmethod
    def command(self, run_dir: Path, request: RunRequest) -> tuple[list[str], Path, dict[str, str]]:
        """(argv, working folder, extra environment) that trains `request` in `run_dir`."""

    @abstractmethod
    def hand_over(self, run_dir: Path, request: RunRequest) -> None:
        """Make the parent's checkpoint at `request.parent_step` available to the branch (copy,
        link or nothing); a missing checkpoint is a one-line CooldownError."""

    @abstractmethod
    def read_curve(self, run_dir: Path) -> list[dict[str, Any]]:
        """The run's curve from its logs: dicts with the CURVE_COLUMNS (None where not logged)."""

    @abstractmethod
    def counts(self, run_dir: Path) -> dict[str, Any]:
        """Parameters, tokens per step, FLOPs per token and the convention they follow."""

    @abstractmethod
    def checkpoint_ready(self, run_dir: Path, step: int) -> bool:
        """Whether the run in `run_dir` has a complete checkpoint at `step` to branch from."""

    @abstractmethod
    def exactness(self, request: RunRequest) -> Exactness:
        """What this run reproduces exactly (for a branch: of the from-scratch run)."""

    def launch(self, run_dir: str | Path, request: RunRequest) -> subprocess.Popen:
        """Start the trainer for `request` in `run_dir` (made if missing); returns the process.
        The manifest says `running` until `finish` records the outcome."""
        run_dir = Path(run_dir).absolute()
        run_dir.mkdir(parents=True, exist_ok=True)
        if request.role == "branch":
            self.hand_over(run_dir, request)
        argv, cwd, env = self.command(run_dir, request)
        self._write_manifest(run_dir, request, argv, cwd, status="running")
        # Appended: a rerun keeps the earlier attempt's output. The child holds its own copy of
        # the file descriptor, so closing ours is safe.
        with open(run_dir / STDOUT, "ab") as log:
            try:
                return subprocess.Popen(
                    argv, cwd=cwd, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
                )
            except OSError as e:
                raise CooldownError(
                    f"{self.name} adapter: cannot start {argv[0]!r} ({e.strerror})"
                ) from None

    def finish(self, run_dir: str | Path, proc: subprocess.Popen) -> dict[str, Any]:
        """Wait for `proc`, parse its curve, and write the final manifest; returns it. A failed
        trainer is a CooldownError naming its exit status and its log."""
        run_dir = Path(run_dir).absolute()
        code = proc.wait()
        manifest = read_manifest(run_dir)
        if code != 0:
            manifest["status"] = f"failed (exit status {code})"
            atomic_write_json(run_dir / MANIFEST, manifest)
            raise CooldownError(
                f"{self.name} adapter: the trainer exited with status {code}; see {run_dir / STDOUT}"
            )
        rows = self.read_curve(run_dir)
        write_curve(run_dir, rows)
        manifest.update(status="complete", counts=self.counts(run_dir), final=_final(rows))
        atomic_write_json(run_dir / MANIFEST, manifest)
        return manifest

    def run(self, run_dir: str | Path, request: RunRequest) -> dict[str, Any]:
        return self.finish(run_dir, self.launch(run_dir, request))

    def _write_manifest(self, run_dir, request, argv, cwd, status) -> None:
        parent = None
        if request.parent_run_dir is not None:
            parent = {"run_dir": request.parent_run_dir, "step": request.parent_step}
        atomic_write_json(
            run_dir / MANIFEST,
            {
                "adapter": self.name,
                "role": request.role,
                "request": asdict(request),
                "parent": parent,
                "command": argv,
                "cwd": str(cwd),
                "exactness": self.exactness(request).to_dict(),
                "status": status,
            },
        )


def _final(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The last logged value of each column (the run's final result)."""
    out: dict[str, Any] = {}
    for row in rows:
        for key in CURVE_COLUMNS:
            if row.get(key) is not None:
                out[key] = row[key]
    return out
