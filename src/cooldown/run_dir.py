"""A run folder and what it holds, in one place and torch-free (reading a run never loads torch).

    RUN/
      config.toml                the resolved RunConfig the run trains with (CONFIG_FILE)
      manifest.json              lineage, fingerprints, status, final losses (MANIFEST_FILE)
      metrics.jsonl              one JSON object per logged step (METRICS_FILE)
      checkpoints/step_NNNNNNN/  a checkpoint, complete once its checksum.json is written (last)

    run = RunDir("runs/stable")
    run.config.optim.lr              # typed: cooldown.config.RunConfig
    run.manifest().final_val_loss    # typed: Manifest (None when the run has not started)
    run.metrics(), run.checkpoints, run.is_complete(steps=4000)
    RunDir.of_checkpoint("runs/stable/checkpoints/step_0004000")   # -> (RunDir, 4000) or None
    run.parent(), run.lineage()      # a branch's parent run and the step it branched at

The trainer (`cooldown.train`, `cooldown.run_state`) writes these files; `write_manifest` is how a
writer replaces the manifest (atomically). Old manifests load: every field is optional and fields
this version does not know are kept as they are.
"""

from __future__ import annotations

import json
import re
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from cooldown.config import RunConfig, load_run_config
from cooldown.configio import read_toml
from cooldown.errors import CooldownError
from cooldown.fileio import atomic_write_json
from cooldown.metrics import read_metrics

__all__ = [
    "CHECKPOINTS_DIR",
    "CHECKSUM_FILE",
    "CONFIG_FILE",
    "MANIFEST_FILE",
    "METRICS_FILE",
    "Manifest",
    "RunDir",
    "step_dir_name",
]

CONFIG_FILE = "config.toml"
MANIFEST_FILE = "manifest.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINTS_DIR = "checkpoints"
CHECKSUM_FILE = "checksum.json"  # a checkpoint's last file: its presence means complete
_STEP_DIR = re.compile(r"step_(\d{7,})")


def step_dir_name(step: int) -> str:
    """The folder name of the checkpoint of `step` under RUN/checkpoints."""
    return f"step_{step:07d}"


def _step_of(name: str) -> int | None:
    # step_0004000 only: scratch folders (.tmp-step_...) and re-padded names are not checkpoints.
    m = _STEP_DIR.fullmatch(name)
    if m is None or name != step_dir_name(int(m.group(1))):
        return None
    return int(m.group(1))


class Manifest(BaseModel):
    """`manifest.json`. The fields readers use are typed; the rest (`final_val_loss_<average>`,
    data mixture, world size, ...) stay as extra fields, so a dump gives back what was read."""

    model_config = ConfigDict(extra="allow")

    package: str | None = None
    version: str | None = None
    status: str | None = None  # running, complete, extended
    steps: int | None = None  # the last trained step (set when the run completes)
    total_steps: int | None = None
    tokens_per_step: int | None = None
    tokens: int | None = None
    compute_flops: float | None = None
    flop_convention: str | None = None
    data_fingerprint: str | None = None
    vocab_size: int | None = None
    params: int | None = None
    non_embedding_params: int | None = None
    final_val_loss: float | None = None
    parent: dict[str, Any] | None = None  # run_dir, step, data_fingerprint of a branch's parent
    branch: dict[str, Any] | None = None  # the branch's cooldown: step, shape, cooldown_steps, ...
    extensions: list[dict[str, int]] | None = None
    # [optim.cooldown] runs: {"cooldown_after_step", "stable": {...}, "cooldown": {...}}
    optimizer_phases: dict[str, Any] | None = None
    merge: dict[str, Any] | None = None  # a `cooldown merge` folder: its sources and weights

    def get(self, key: str, default: Any = None) -> Any:
        """A field by its name in the file, typed or extra (e.g. 'final_val_loss_swa')."""
        return self.as_dict().get(key, default)

    def as_dict(self) -> dict[str, Any]:
        """The manifest as it reads in the file: the fields it holds, nothing added."""
        return self.model_dump(mode="json", exclude_unset=True)


class RunDir:
    """One run folder (see the module docstring). Equal when the paths are."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunDir) and self.path == other.path

    def __hash__(self) -> int:
        return hash(self.path)

    # --- files ------------------------------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST_FILE

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / CHECKPOINTS_DIR

    def exists(self) -> bool:
        """Whether this is a run folder: it holds a config.toml."""
        return self.config_path.is_file()

    def require(self) -> RunDir:
        if not self.exists():
            raise CooldownError(f"{self.path}: not a run folder (no {CONFIG_FILE})")
        return self

    # --- config -----------------------------------------------------------------------------------

    @cached_property
    def config(self) -> RunConfig:
        """The typed run config (errors name config.toml and the field)."""
        return load_run_config(self.require().config_path)

    def raw_config(self) -> dict[str, Any]:
        """config.toml as written, untyped (for what the typed config resolves away)."""
        return read_toml(self.require().config_path)

    # --- manifest ---------------------------------------------------------------------------------

    def manifest(self) -> Manifest | None:
        """The manifest; None when the run has not started (no manifest.json yet)."""
        try:
            data = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError) as e:
            raise CooldownError(f"{self.manifest_path} is not valid JSON: {e}") from None
        if not isinstance(data, dict):
            raise CooldownError(f"{self.manifest_path}: expected a JSON object")
        try:
            return Manifest.model_validate(data)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise CooldownError(f"{self.manifest_path}: {where}: {first['msg']}") from None

    def write_manifest(self, manifest: Manifest | dict[str, Any]) -> None:
        """Replace manifest.json (atomically: a reader sees the old file or the new one)."""
        data = manifest.as_dict() if isinstance(manifest, Manifest) else manifest
        atomic_write_json(self.manifest_path, data)

    def is_complete(self, steps: int | None = None) -> bool:
        """Whether the run finished (and, given `steps`, finished at that step)."""
        manifest = self.manifest()
        return (
            manifest is not None
            and manifest.status == "complete"
            and (steps is None or manifest.steps == steps)
        )

    # --- metrics ----------------------------------------------------------------------------------

    def metrics(self) -> list[dict[str, Any]]:
        """Every complete line of metrics.jsonl ([] before the first one is logged)."""
        return read_metrics(self.metrics_path) if self.metrics_path.exists() else []

    # --- checkpoints ------------------------------------------------------------------------------

    def checkpoint_path(self, step: int) -> Path:
        """Where the checkpoint of `step` lives (whether or not it exists)."""
        return self.checkpoints_dir / step_dir_name(step)

    def has_checkpoint(self, step: int) -> bool:
        """Whether the checkpoint of `step` is complete (its checksum.json, written last, is
        there; `cooldown.checkpoint` also checks every listed file when it loads one)."""
        return (self.checkpoint_path(step) / CHECKSUM_FILE).is_file()

    @property
    def checkpoints(self) -> list[int]:
        """Steps of the complete checkpoints, ascending."""
        if not self.checkpoints_dir.is_dir():
            return []
        steps = (_step_of(entry.name) for entry in self.checkpoints_dir.iterdir())
        return sorted(s for s in steps if s is not None and self.has_checkpoint(s))

    @classmethod
    def of_checkpoint(cls, path: str | Path) -> tuple[RunDir, int] | None:
        """(run, step) when `path` is RUN/checkpoints/step_NNNNNNN of a run folder, else None."""
        path = Path(path)
        step = _step_of(path.name)
        run = cls(path.parent.parent)
        if step is None or path.parent.name != CHECKPOINTS_DIR or not run.exists():
            return None
        return run, step

    # --- lineage ----------------------------------------------------------------------------------

    def parent(self) -> tuple[RunDir, int] | None:
        """(parent run, branch step) of a branch; None for a run from scratch.

        The parent's path is taken as written, else relative to this folder or one of its
        ancestors (a study names a trunk relative to the study folder, two levels up)."""
        ref = self.config.parent
        if ref is None:
            return None
        given = Path(ref.run_dir)
        for candidate in (given, self.path / given, *(base / given for base in self.path.parents)):
            if RunDir(candidate).exists():
                return RunDir(candidate), ref.step
        raise CooldownError(
            f"{self.config_path}: parent.run_dir: no run folder (with a {CONFIG_FILE}) at {given}"
        )

    def lineage(self) -> list[tuple[RunDir, int]]:
        """The ancestors, nearest first, each with the step its child branched at."""
        out: list[tuple[RunDir, int]] = []
        found = self.parent()
        while found is not None:
            if any(found[0].path.resolve() == seen.path.resolve() for seen, _ in out):
                raise CooldownError(f"{self.config_path}: parent.run_dir: the lineage is a cycle")
            out.append(found)
            found = found[0].parent()
        return out
