"""The generic `command` adapter: any trainer driven by templated command lines.

    adapter = "command"
    command = "{python} train.py --out {checkpoint_dir} --steps {total_steps} --cooldown-start {cooldown_start} --cooldown-steps {cooldown_steps} --shape {shape}"
    resume = "--resume-step {branch_step}"   # appended for a branch
    checkpoint_dir = "{run_dir}/ckpt"        # where a run writes its checkpoints
    checkpoint_files = ["step_{step}.pt"]    # a checkpoint's files (checked before a branch)
    handover = "copy"                        # copy | link | none (then `resume` names {parent_checkpoint_dir})
    cwd = "."                                # relative to the adapter file
    [log]
    format = "regex"                         # regex (on `file`) | csv | jsonl
    file = "stdout"                          # or a path template, e.g. "{run_dir}/log.csv"
    train = 'step (?P<step>\\d+) lr (?P<lr>\\S+) loss (?P<train_loss>\\S+)'
    val = 'val (?P<step>\\d+) (?P<val_metric>\\S+)'
    step_offset = 0                          # added to the logged step; or { train = 1 } per pattern
    columns = { step = "step", lr = "lr" }   # for csv/jsonl: our column = their column
    [counts]
    params = 1180000
    tokens_per_step = 512
    [exactness]
    exact = ["lr", "weights and optimizer state at the branch step"]
    not_exact = { data_position = "the loader restarts at its next shard" }

Templates are split into words first (shlex), then each word is filled in, so a path with spaces
stays one argument. Fields: python, run_dir, checkpoint_dir, parent_checkpoint_dir, total_steps,
cooldown_start, cooldown_steps, warmdown_ratio (K / total_steps), shape, final_lr_frac,
branch_step, lr (a study method's LR; empty outside a study), tag (a name unique to the run folder)
and the adapter's own [vars]. A request's `extra_args` (a study size's flags) are appended.

A checkpoint at step S is ready to branch from when all its files exist and the trainer has
logged a later step or finished: a trainer writes its files one after the other, and logs the
next update only after the last one.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any, Optional

from cooldown.adapters.base import (
    CURVE_COLUMNS,
    STDOUT,
    Exactness,
    RunRequest,
    TrainerAdapter,
    adapter_manifest,
)
from cooldown.errors import CooldownError
from cooldown.fileio import fsync_dir

__all__ = ["CommandAdapter", "parse_log"]

_HANDOVERS = ("copy", "link", "none")
_FORMATS = ("regex", "csv", "jsonl")


def _float(value: Any) -> Optional[float]:
    if value is None or value == "":
        return None
    try:
        return float(str(value).replace(",", ""))
    except ValueError:
        return None


def _rows_from_regex(text: str, patterns: dict[str, str]) -> list[dict[str, Any]]:
    rows = []
    for line in text.splitlines():
        for pattern in patterns.values():
            m = re.search(pattern, line)
            if m:
                rows.append(m.groupdict())
                break
    return rows


def _rows_from_table(text: str, fmt: str, columns: dict[str, str]) -> list[dict[str, Any]]:
    raw = (
        list(csv.DictReader(text.splitlines()))
        if fmt == "csv"
        else [json.loads(line) for line in text.splitlines() if line.strip()]
    )
    names = {ours: columns.get(ours, ours) for ours in CURVE_COLUMNS}
    return [{ours: r.get(theirs) for ours, theirs in names.items()} for r in raw]


def parse_log(
    text: str,
    fmt: str,
    patterns: Optional[dict[str, str]] = None,
    columns: Optional[dict[str, str]] = None,
    step_offsets: Optional[dict[str, int]] = None,
    tokens_per_step: Optional[int] = None,
) -> list[dict[str, Any]]:
    """Curve rows (CURVE_COLUMNS, numbers or None) from a log, merged per step and sorted.
    Regex patterns name their groups after the columns; `step_offsets[name]` is added to that
    pattern's steps (a trainer that logs update n as n-1)."""
    if fmt == "regex":
        rows = []
        for name, pattern in (patterns or {}).items():
            offset = (step_offsets or {}).get(name, 0)
            for r in _rows_from_regex(text, {name: pattern}):
                r["step"] = int(r["step"]) + offset
                rows.append(r)
    else:
        rows = _rows_from_table(text, fmt, columns or {})
    merged: dict[int, dict[str, Any]] = {}
    for r in rows:
        if _float(r.get("step")) is None:
            continue
        step = int(_float(r["step"]))
        row = merged.setdefault(step, dict.fromkeys(CURVE_COLUMNS))
        row["step"] = step
        for key in CURVE_COLUMNS[1:]:
            if _float(r.get(key)) is not None:
                row[key] = _float(r[key])
        if row["tokens"] is None and tokens_per_step:
            row["tokens"] = step * tokens_per_step
    return [merged[s] for s in sorted(merged)]


def _complete(run_dir: Path) -> bool:
    manifest = adapter_manifest(run_dir)
    return manifest is not None and manifest.get("status") == "complete"


class CommandAdapter(TrainerAdapter):
    """A trainer run through command-line templates (see the module docstring)."""

    name = "command"

    def __init__(self, config: dict[str, Any], base_dir: str | Path = "."):
        self.base_dir = Path(base_dir).absolute()
        self.config = config
        for key in ("command", "checkpoint_dir", "checkpoint_files"):
            if key not in config:
                raise CooldownError(f"adapter.{key}: missing (see `cooldown.adapters.command`)")
        if config.get("handover", "copy") not in _HANDOVERS:
            raise CooldownError(
                f"adapter.handover: must be one of {', '.join(_HANDOVERS)} (got {config['handover']!r})"
            )
        log = config.get("log", {})
        if log.get("format", "regex") not in _FORMATS:
            raise CooldownError(
                f"adapter.log.format: must be one of {', '.join(_FORMATS)} (got {log['format']!r})"
            )
        for name in ("train", "val"):
            if name in log:
                try:
                    re.compile(log[name])
                except re.error as e:
                    raise CooldownError(
                        f"adapter.log.{name}: not a regular expression ({e})"
                    ) from None

    # --- templating -------------------------------------------------------------------------------

    def fields(self, run_dir: Path, request: RunRequest) -> dict[str, Any]:
        tag = f"{run_dir.name}-{hashlib.sha256(str(run_dir).encode()).hexdigest()[:8]}"
        f: dict[str, Any] = {
            "python": sys.executable,
            "run_dir": str(run_dir),
            "tag": tag,
            "total_steps": request.total_steps,
            "cooldown_start": request.cooldown_start,
            "cooldown_steps": request.cooldown_steps,
            "warmdown_ratio": repr(request.cooldown_steps / request.total_steps),
            "shape": request.shape,
            "final_lr_frac": repr(request.final_lr_frac),
            "branch_step": request.parent_step if request.parent_step is not None else -1,
            "lr": "" if request.lr is None else repr(request.lr),
            **{k: str(v) for k, v in self.config.get("vars", {}).items()},
        }
        f["checkpoint_dir"] = self.fill(self.config["checkpoint_dir"], f, "checkpoint_dir")
        if request.parent_run_dir is not None:
            parent = Path(request.parent_run_dir)
            pf = self.fields(parent, RunRequest.trunk(request.parent_step))
            f["parent_checkpoint_dir"] = pf["checkpoint_dir"]
        return f

    def fill(self, template: str, fields: dict[str, Any], where: str) -> str:
        try:
            return template.format(**fields)
        except KeyError as e:
            raise CooldownError(
                f"adapter.{where}: unknown field {{{e.args[0]}}} (known: {', '.join(sorted(fields))})"
            ) from None
        except (ValueError, IndexError) as e:
            raise CooldownError(f"adapter.{where}: bad template {template!r} ({e})") from None

    def _words(self, key: str, fields: dict[str, Any]) -> list[str]:
        return [self.fill(w, fields, key) for w in shlex.split(self.config.get(key, ""))]

    def command(self, run_dir, request):
        f = self.fields(run_dir, request)
        argv = self._words("command", f)
        if request.role == "branch":
            argv += self._words("resume", f)
        argv += list(request.extra_args)
        cwd = self.base_dir / self.config.get("cwd", ".")
        env = {k: self.fill(str(v), f, f"env.{k}") for k, v in self.config.get("env", {}).items()}
        return argv, cwd, env

    # --- checkpoints ------------------------------------------------------------------------------

    def checkpoint_paths(self, checkpoint_dir: str, step: int) -> list[Path]:
        return [
            Path(checkpoint_dir) / self.fill(p, {"step": step}, "checkpoint_files")
            for p in self.config["checkpoint_files"]
        ]

    def hand_over(self, run_dir, request):
        f = self.fields(run_dir, request)
        step = request.parent_step
        sources = self.checkpoint_paths(f["parent_checkpoint_dir"], step)
        missing = [str(p) for p in sources if not p.is_file()]
        if missing:
            raise CooldownError(
                f"{request.parent_run_dir}: no checkpoint at step {step} ({missing[0]} is missing); "
                "branch from a step the trunk saved"
            )
        mode = self.config.get("handover", "copy")
        if mode == "none":
            return
        dest_dir = Path(f["checkpoint_dir"])
        dest_dir.mkdir(parents=True, exist_ok=True)
        for src, dst in zip(sources, self.checkpoint_paths(f["checkpoint_dir"], step), strict=True):
            if dst.exists():
                continue  # a rerun: the hand-over already happened
            tmp = dst.with_name(f".{dst.name}.tmp")
            if mode == "copy":
                shutil.copy2(src, tmp)
            else:
                os.symlink(src, tmp)
            os.replace(tmp, dst)  # never a half-copied checkpoint under the real name
        fsync_dir(dest_dir)

    def checkpoint_ready(self, run_dir, step):
        run_dir = Path(run_dir)
        f = self.fields(run_dir, RunRequest.trunk(max(step, 1)))
        if not all(p.is_file() for p in self.checkpoint_paths(f["checkpoint_dir"], step)):
            return False
        try:
            rows = self.read_curve(run_dir)
        except (CooldownError, OSError, ValueError):
            return False
        return (bool(rows) and rows[-1]["step"] > step) or _complete(run_dir)

    # --- logs, counts, facts ----------------------------------------------------------------------

    def _log_text(self, run_dir: Path) -> str:
        log = self.config.get("log", {})
        source = log.get("file", "stdout")
        path = (
            run_dir / STDOUT
            if source == "stdout"
            else Path(self.fill(source, {"run_dir": str(run_dir)}, "log.file"))
        )
        try:
            return path.read_text(errors="replace")
        except FileNotFoundError:
            raise CooldownError(f"{run_dir}: the trainer's log {path} is missing") from None

    def read_curve(self, run_dir):
        log = self.config.get("log", {})
        patterns = {k: log[k] for k in ("train", "val") if k in log}
        offset = log.get("step_offset", 0)  # one number, or one per pattern
        offsets = {
            k: int(offset.get(k, 0) if isinstance(offset, dict) else offset) for k in patterns
        }
        return parse_log(
            self._log_text(Path(run_dir)),
            log.get("format", "regex"),
            patterns,
            log.get("columns"),
            offsets,
            self.config.get("counts", {}).get("tokens_per_step"),
        )

    def counts(self, run_dir):
        counts = dict(self.config.get("counts", {}))
        counts.setdefault("convention", "as given in the adapter's [counts]")
        return counts

    def exactness(self, request):
        ex = self.config.get("exactness", {})
        if request.role != "branch":
            return Exactness(exact=["everything: not a branch"])
        return Exactness(
            exact=list(ex.get("exact", [])),
            not_exact=dict(ex.get("not_exact", {"unknown": "the adapter states nothing"})),
            to_make_exact=dict(ex.get("to_make_exact", {})),
        )
