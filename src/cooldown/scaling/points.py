"""Scaling-law points: (N parameters, D tokens, C compute, final loss) read from a results table.

A table is CSV, JSONL (one object per line) or Parquet. Its columns are mapped onto the four
quantities; the defaults are the names `cooldown study results` writes (`params`, `tokens`,
`compute_flops`, `final_val_loss`, and `flop_convention` naming how compute was counted), and
`N=col,D=col,C=col,loss=col` renames any of them, so tables from other training code fit too.

Either D or C must be there. A missing one is derived with C = 6 N D, and the points say so.
Compute always carries the name of the FLOP convention it was counted under: the table's
`flop_convention` column, or the one the caller names, or "6ND" when it was derived here.

Nothing is dropped silently: rows left out by a rule the caller asked for (a `where` filter, the
K highest losses) are recorded with their row numbers in `left_out`, and bad values (missing,
non-finite, not positive), exact duplicate points, a table mixing methods, or fewer points than
the law's five parameters are one-line errors.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from cooldown.errors import CooldownError
from cooldown.tables import read_table

QUANTITIES = ("N", "D", "C", "loss")
DEFAULT_COLUMNS = {"N": "params", "D": "tokens", "C": "compute_flops", "loss": "final_val_loss"}
CONVENTION_COLUMN = "flop_convention"
METHOD_COLUMN = "method"
DERIVED_CONVENTION = "6ND"
UNSTATED_CONVENTION = "unstated"
MIN_POINTS = 5  # the Chinchilla law's parameters: E, A, B, alpha, beta
# The Approach-3 fit costs time in proportion to its points (4,500 starts, then the bootstrap):
# about 35 s for 2,000 points with 100 resamples on 2 CPU cores, so 5,000 points is minutes.
# Chinchilla's own fit had about 400. A larger table is a loss log, not one point per run.
MAX_POINTS = 5000
# Read whole into memory (about 10x its size as Python rows), so its size is bounded first.
MAX_TABLE_BYTES = 16 * 2**20
_CONVENTION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9+_.\-]*$")


@dataclass(frozen=True)
class LeftOut:
    """Rows a rule the caller asked for left out: the rule and the rows' 1-based numbers."""

    rule: str
    rows: tuple[int, ...]

    def describe(self, limit: int = 10) -> str:
        shown = ", ".join(str(r) for r in self.rows[:limit])
        more = f", ... ({len(self.rows) - limit} more)" if len(self.rows) > limit else ""
        return f"{len(self.rows)} left out by {self.rule}: rows {shown}{more}"


@dataclass(frozen=True)
class ScalingPoints:
    params: np.ndarray  # N, parameters
    tokens: np.ndarray  # D, training tokens
    compute: np.ndarray  # C, training FLOPs under `flop_convention`
    loss: np.ndarray  # final loss
    flop_convention: str
    rows: tuple[int, ...]  # 1-based row number of each point in its table
    tokens_derived: bool = False  # D = C / (6 N)
    compute_derived: bool = False  # C = 6 N D
    source: Optional[str] = None
    columns: Mapping[str, Optional[str]] = field(default_factory=dict)
    left_out: tuple[LeftOut, ...] = ()
    n_rows: int = 0  # rows in the table before any rule left some out

    def __len__(self) -> int:
        return int(self.params.size)

    @property
    def notes(self) -> list[str]:
        notes = []
        if self.tokens_derived:
            notes.append(
                f"tokens D derived as C / (6 N) from column {self.columns.get('C')!r} "
                "(exact only when C counts 6 N D)"
            )
        if self.compute_derived:
            notes.append("compute C derived as 6 N D (the table has no compute column)")
        notes.extend(item.describe() for item in self.left_out)
        return notes

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "columns": dict(self.columns),
            "n_rows": self.n_rows,
            "n_points": len(self),
            "flop_convention": self.flop_convention,
            "tokens_derived": self.tokens_derived,
            "compute_derived": self.compute_derived,
            "left_out": [
                {"rule": x.rule, "count": len(x.rows), "rows": list(x.rows)} for x in self.left_out
            ],
        }


def parse_columns(spec: Optional[str | Mapping[str, str]]) -> dict[str, str]:
    """'N=Model Size,C=Training FLOP,loss=loss' -> {'N': 'Model Size', ...} (keys N, D, C, loss)."""
    if spec is None:
        return {}
    if isinstance(spec, Mapping):
        items = list(spec.items())
    else:
        items = []
        for part in str(spec).split(","):
            if not part.strip():
                continue
            if "=" not in part:
                raise CooldownError(
                    f"--columns: {part.strip()!r} is not KEY=COLUMN (keys: {', '.join(QUANTITIES)})"
                )
            key, _, column = part.partition("=")
            items.append((key.strip(), column.strip()))
    mapping: dict[str, str] = {}
    for key, column in items:
        if key not in QUANTITIES:
            raise CooldownError(f"--columns: unknown key {key!r}; allowed: {', '.join(QUANTITIES)}")
        if key in mapping:
            raise CooldownError(f"--columns: {key} is mapped twice")
        if not column:
            raise CooldownError(f"--columns: {key}= names no column")
        mapping[key] = column
    return mapping


def _number(value: Any) -> float:
    if value is None or isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _check_positive(name: str, column: Optional[str], values: np.ndarray, rows: Sequence[int], raw):
    bad = np.flatnonzero(~(np.isfinite(values) & (values > 0)))
    if bad.size:
        where = f"column {column!r}" if column else name
        shown = ", ".join(f"row {rows[i]} ({raw[i]!r})" for i in bad[:3])
        more = f" and {bad.size - 3} more" if bad.size > 3 else ""
        raise CooldownError(
            f"{where} ({name}): values must be finite numbers > 0; bad: {shown}{more}"
        )


def check_convention_name(name: str) -> str:
    if not _CONVENTION_NAME.match(name or ""):
        raise CooldownError(
            f"flop_convention: {name!r} is not a name (letters, digits, + _ . -), e.g. "
            "chinchilla, 6N, 6N+attn, 6ND"
        )
    return name


def points_from_rows(
    columns: Sequence[str],
    rows: Sequence[Mapping[str, Any]],
    *,
    mapping: Optional[str | Mapping[str, str]] = None,
    flop_convention: Optional[str] = None,
    exclude_highest_loss: int = 0,
    where: Sequence[str] = (),
    source: Optional[str] = None,
) -> ScalingPoints:
    """Validate table rows into ScalingPoints (see the module docstring for the rules)."""
    label = source or "table"
    given = parse_columns(mapping)
    names = {**DEFAULT_COLUMNS, **given}
    present = set(columns)
    have = ", ".join(repr(c) for c in columns) or "no columns"

    missing = [f"{k} ({names[k]!r})" for k in ("N", "loss") if names[k] not in present]
    for key in ("D", "C"):
        if key in given and given[key] not in present:
            missing.append(f"{key} ({given[key]!r})")
    if missing:
        raise CooldownError(f"{label}: missing column(s) {', '.join(missing)}; the file has {have}")
    has_d, has_c = names["D"] in present, names["C"] in present
    if not (has_d or has_c):
        raise CooldownError(
            f"{label}: needs tokens D (column {names['D']!r}) or compute C (column {names['C']!r}); "
            f"the file has {have} (map yours with --columns D=...,C=...)"
        )
    used = {"N": names["N"], "D": names["D"] if has_d else None, "C": names["C"] if has_c else None}
    used["loss"] = names["loss"]

    numbers = list(range(1, len(rows) + 1))
    kept = list(zip(numbers, rows, strict=True))
    left_out: list[LeftOut] = []
    for clause in where:
        col, sep, value = str(clause).partition("=")
        col, value = col.strip(), value.strip()
        if not sep or not col:
            raise CooldownError(f"--where: {clause!r} is not COLUMN=VALUE")
        if col not in present:
            raise CooldownError(f"--where: no column {col!r}; the file has {have}")
        match = [(i, r) for i, r in kept if str(r.get(col)) == value]
        dropped = tuple(i for i, r in kept if str(r.get(col)) != value)
        if dropped:
            left_out.append(LeftOut(rule=f"--where {col}={value}", rows=dropped))
        kept = match
    if not kept:
        raise CooldownError(f"{label}: no rows left to fit (the file has {len(rows)} rows)")
    if len(kept) > MAX_POINTS:
        raise CooldownError(
            f"{label}: {len(kept):,} rows to fit, more than the {MAX_POINTS:,} points `cooldown "
            "fit` takes (one point per run: its time grows with the points); select the runs "
            "with --where COLUMN=VALUE or keep one row per run"
        )

    if METHOD_COLUMN in present:
        methods = sorted({str(r.get(METHOD_COLUMN)) for _, r in kept})
        if len(methods) > 1:
            raise CooldownError(
                f"{label}: rows of several methods ({', '.join(methods)}) would be fitted as one "
                f"law; pick one with --where {METHOD_COLUMN}=NAME"
            )

    row_numbers = [i for i, _ in kept]
    arrays: dict[str, np.ndarray] = {}
    for key, col in used.items():
        if col is None:
            continue
        raw = [r.get(col) for _, r in kept]
        values = np.array([_number(v) for v in raw], dtype=np.float64)
        _check_positive(key, col, values, row_numbers, raw)
        arrays[key] = values

    convention = _convention(label, kept, present, flop_convention, has_c)
    n = arrays["N"]
    tokens_derived = compute_derived = False
    if not has_d:
        arrays["D"] = arrays["C"] / (6.0 * n)
        tokens_derived = True
    if not has_c:
        arrays["C"] = 6.0 * n * arrays["D"]
        compute_derived = True

    _check_duplicates(label, arrays, row_numbers)

    if exclude_highest_loss:
        k = int(exclude_highest_loss)
        if k < 0:
            raise CooldownError(f"--exclude-highest-loss must be >= 0 (got {k})")
        if k >= len(row_numbers):
            raise CooldownError(
                f"--exclude-highest-loss {k} would leave out all {len(row_numbers)} points"
            )
        # Highest losses first; ties broken by row order so the rule is reproducible.
        order = sorted(range(len(row_numbers)), key=lambda i: (-arrays["loss"][i], row_numbers[i]))
        drop = set(order[:k])
        left_out.append(
            LeftOut(
                rule=f"--exclude-highest-loss {k}",
                rows=tuple(sorted(row_numbers[i] for i in drop)),
            )
        )
        keep_idx = [i for i in range(len(row_numbers)) if i not in drop]
        arrays = {key: v[keep_idx] for key, v in arrays.items()}
        row_numbers = [row_numbers[i] for i in keep_idx]

    if len(row_numbers) < MIN_POINTS:
        raise CooldownError(
            f"{label}: {len(row_numbers)} points to fit, fewer than the {MIN_POINTS} parameters of "
            "L = E + A / N^alpha + B / D^beta"
        )
    return ScalingPoints(
        params=arrays["N"],
        tokens=arrays["D"],
        compute=arrays["C"],
        loss=arrays["loss"],
        flop_convention=convention,
        rows=tuple(row_numbers),
        tokens_derived=tokens_derived,
        compute_derived=compute_derived,
        source=source,
        columns=used,
        left_out=tuple(left_out),
        n_rows=len(rows),
    )


def _convention(label, kept, present, flop_convention, has_c) -> str:
    named = None
    if CONVENTION_COLUMN in present:
        values = sorted({str(r.get(CONVENTION_COLUMN)) for _, r in kept})
        if len(values) > 1:
            raise CooldownError(
                f"{label}: column {CONVENTION_COLUMN!r} mixes conventions ({', '.join(values)}); "
                "compute counted differently cannot share one axis"
            )
        named = values[0]
    if flop_convention is not None:
        check_convention_name(flop_convention)
        if named is not None and named != flop_convention:
            raise CooldownError(
                f"--flop-convention {flop_convention} contradicts the file's "
                f"{CONVENTION_COLUMN} column ({named})"
            )
        named = flop_convention
    if not has_c:
        if named is not None and named != DERIVED_CONVENTION:
            raise CooldownError(
                f"{label}: compute is derived as 6 N D (no compute column), so its convention is "
                f"{DERIVED_CONVENTION}, not {named}"
            )
        return DERIVED_CONVENTION
    return check_convention_name(named) if named is not None else UNSTATED_CONVENTION


def _check_duplicates(label, arrays, row_numbers) -> None:
    seen: dict[tuple[float, float, float], int] = {}
    for i, key in enumerate(zip(arrays["N"], arrays["D"], arrays["loss"], strict=True)):
        if key in seen:
            raise CooldownError(
                f"{label}: rows {seen[key]} and {row_numbers[i]} are the same point "
                f"(N={key[0]:.6g}, D={key[1]:.6g}, loss={key[2]:.6g}); remove the duplicate"
            )
        seen[key] = row_numbers[i]


def read_points(
    path: str | Path,
    *,
    columns: Optional[str | Mapping[str, str]] = None,
    flop_convention: Optional[str] = None,
    exclude_highest_loss: int = 0,
    where: Sequence[str] = (),
) -> ScalingPoints:
    """Read and validate the points of a results table (CSV, JSONL or Parquet)."""
    size = Path(path).stat().st_size if Path(path).is_file() else 0
    if size > MAX_TABLE_BYTES:
        raise CooldownError(
            f"{path}: {size:,} bytes, more than the {MAX_TABLE_BYTES // 2**20} MB results table "
            f"`cooldown fit` reads (one row per run, at most {MAX_POINTS:,} points); keep "
            "one row per run (a loss log is not a results table)"
        )
    names, rows = read_table(path)
    return points_from_rows(
        names,
        rows,
        mapping=columns,
        flop_convention=flop_convention,
        exclude_highest_loss=exclude_highest_loss,
        where=where,
        source=str(path),
    )


def make_points(
    params,
    loss,
    *,
    tokens=None,
    compute=None,
    flop_convention: Optional[str] = None,
    exclude_highest_loss: int = 0,
) -> ScalingPoints:
    """ScalingPoints from arrays, validated like a table (rows numbered from 1)."""
    data = {"params": params, "final_val_loss": loss}
    if tokens is not None:
        data["tokens"] = tokens
    if compute is not None:
        data["compute_flops"] = compute
    lengths = {len(np.atleast_1d(v)) for v in data.values()}
    if len(lengths) != 1:
        raise CooldownError(f"points: arrays of different lengths {sorted(lengths)}")
    columns = list(data)
    rows = [{k: float(np.atleast_1d(v)[i]) for k, v in data.items()} for i in range(lengths.pop())]
    return points_from_rows(
        columns,
        rows,
        flop_convention=flop_convention,
        exclude_highest_loss=exclude_highest_loss,
        source="points",
    )
