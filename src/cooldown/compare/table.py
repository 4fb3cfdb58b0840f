"""The comparison table: one row per difference against the baseline, as CSV and as text."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

from cooldown.compare.paired import Difference

__all__ = ["CSV_COLUMNS", "comparison_csv", "format_comparison", "write_comparison_csv"]

CSV_COLUMNS = (
    "baseline",
    "run",
    "loss_baseline",
    "loss_run",
    "diff",
    "low",
    "high",
    "level",
    "noise",
    "dominant",
    "doc_halfwidth",
    "seed_halfwidth",
    "n_docs",
    "n_tokens",
    "n_seeds",
    "n_boot",
)


def _row(d: Difference) -> dict[str, object]:
    return {
        "baseline": d.a,
        "run": d.b,
        "loss_baseline": repr(d.mean_a),
        "loss_run": repr(d.mean_b),
        "diff": repr(d.diff),
        "low": repr(d.low),
        "high": repr(d.high),
        "level": repr(d.level),
        "noise": d.noise,
        "dominant": d.dominant,
        "doc_halfwidth": repr(d.doc_halfwidth),
        "seed_halfwidth": "" if d.seed_halfwidth is None else repr(d.seed_halfwidth),
        "n_docs": d.n_docs,
        "n_tokens": d.n_tokens,
        "n_seeds": d.n_seeds,
        "n_boot": d.n_boot,
    }


def comparison_csv(differences: Sequence[Difference]) -> str:
    """The CSV text (losses and differences in nats/token, full float precision)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for d in differences:
        writer.writerow(_row(d))
    return buf.getvalue()


def write_comparison_csv(path: str | Path, differences: Sequence[Difference]) -> Path:
    from cooldown.fileio import atomic_write_text

    return atomic_write_text(path, comparison_csv(differences))


def _noise_cell(d: Difference) -> str:
    if d.seed_halfwidth is None:
        return f"documents (+-{d.doc_halfwidth:.4f})"
    return f"{d.dominant} (documents +-{d.doc_halfwidth:.4f}, seeds +-{d.seed_halfwidth:.4f})"


def format_comparison(differences: Sequence[Difference]) -> str:
    """The table as text: a heading that says what the interval covers, then the baseline's loss
    and one line per compared run."""
    if not differences:
        return "no differences"
    first = differences[0]
    level = f"{first.level:.0%}".replace(".0%", "%")
    seeds = "" if first.n_seeds == 1 else f" and {first.n_seeds} seed pairs"
    heading = (
        f"validation loss (nats/token) and its difference from {first.a}, on the same "
        f"{first.n_docs} validation documents ({first.n_tokens:,} tokens per run); {level} "
        f"interval: paired bootstrap over documents{seeds}, {first.n_boot} resamples"
    )
    rows = [("run", "loss", "diff", f"{level} interval", "noise (half-width)")]
    rows.append((first.a, f"{first.mean_a:.4f}", "baseline", "", ""))
    for d in differences:
        interval = f"[{d.low:+.4f}, {d.high:+.4f}]"
        rows.append((d.b, f"{d.mean_b:.4f}", f"{d.diff:+.4f}", interval, _noise_cell(d)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [heading]
    for r in rows:
        cells = [r[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(r[1:4], widths[1:4], strict=True)
        ]
        lines.append("  ".join([*cells, r[4]]).rstrip())
    if first.n_seeds > 1 and first.n_seeds < 5:
        lines.append(
            f"note: with {first.n_seeds} seed pairs the seed part of the interval is Student's t "
            f"with {first.n_seeds - 1} degrees of freedom: wide; more seeds narrow it (see "
            "cooldown.compare.paired)"
        )
    return "\n".join(lines)
