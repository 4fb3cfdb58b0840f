"""`metrics.jsonl`: one JSON object per logged step, appended as the run goes.

A resumed run first cuts the file back to the lines at or before its checkpoint's step (an atomic
rewrite), so the file always reads as one uninterrupted run: no step appears twice.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from cooldown.errors import CooldownError
from cooldown.fileio import atomic_write_text


def _clean(value: Any) -> Any:
    # JSON has no NaN/inf; a non-finite loss is recorded as null and the run stops on it anyway.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricsLog:
    """The append-only log, mirrored to optional loggers (see cooldown.loggers)."""

    def __init__(self, path: Path, mirrors: list | tuple = ()):
        self.path = Path(path)
        self.mirrors = list(mirrors)
        self._file = None

    def truncate_after(self, step: int) -> None:
        """Drop lines logged after `step` (work done after the checkpoint we resume from)."""
        if not self.path.exists():
            return
        kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= step]
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))

    def write(self, record: dict[str, Any]) -> None:
        if self._file is None:
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open
        record = {k: _clean(v) for k, v in record.items()}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        for mirror in self.mirrors:
            mirror.log(record)

    def sync(self) -> None:
        """Make logged lines durable (called at checkpoints)."""
        if self._file is not None:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        for mirror in self.mirrors:
            mirror.close()
        self.mirrors = []
        if self._file is not None:
            self._file.close()
            self._file = None


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All complete lines of a metrics file (a torn last line from a kill is skipped)."""
    rows = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.endswith("\n"):
                break
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise CooldownError(
                    f"{path}: line {lineno} is not JSON ({e.msg}); every line of the log is one "
                    "JSON object: repair or delete that line"
                ) from None
            if not isinstance(row, dict):
                raise CooldownError(f"{path}: line {lineno} is not a JSON object")
            rows.append(row)
    return rows
