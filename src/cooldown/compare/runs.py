"""`cooldown compare`: paired differences between runs' final weights, with intervals.

    cooldown compare runs/cosine runs/wsd-linear runs/wsd-1-sqrt
    cooldown compare runs/const@swa runs/wsd --seeds runs/const-s1,runs/wsd-s1 runs/const-s2,...

Each RUN is a run folder, optionally `RUN@WEIGHTS` for a stored average (swa, lawa<n>, ema) of that
run (`--weights` sets the default for all). The first run is the baseline unless `--baseline`
names another of them; every other run's difference from it is one row.

Seeds: each `--seeds` value lists one more seed of every compared run, comma-separated, in the
order of the runs (`--seeds A2,B2 A3,B3`, or `--seeds` repeated): run i of every value is the
seed partner of RUN i, so pairs are (A, B), (A2, B2), (A3, B3). Then the interval also resamples
seed pairs (see `cooldown.compare.paired`).

Everything is checked before anything is evaluated: the runs exist and finished, they were
prepared on the same data and tokenizer (the data fingerprint) and read it in the same windows
(seq_len), their final checkpoints hold the weights asked for, and the runs of one seed group
differ in train.seed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cooldown.compare.doc_losses import (
    RAW_WEIGHTS,
    DocLosses,
    document_losses,
    final_step,
    read_run_manifest,
)
from cooldown.compare.paired import Difference, paired_difference
from cooldown.errors import CooldownError
from cooldown.run_dir import CONFIG_FILE

__all__ = ["Comparison", "RunSpec", "compare_runs", "parse_run", "parse_seeds"]


@dataclass(frozen=True)
class RunSpec:
    """One set of weights to compare: a run folder and which of its weights."""

    path: Path
    weights: str = RAW_WEIGHTS

    @property
    def label(self) -> str:
        return self.path.name if self.weights == RAW_WEIGHTS else f"{self.path.name}@{self.weights}"

    def __str__(self) -> str:
        return str(self.path) if self.weights == RAW_WEIGHTS else f"{self.path}@{self.weights}"


def parse_run(text: str | Path | RunSpec, weights: str = RAW_WEIGHTS) -> RunSpec:
    """'RUN' or 'RUN@WEIGHTS' (when the whole text is not itself a folder) -> RunSpec."""
    if isinstance(text, RunSpec):
        return text
    text = str(text)
    if not text.strip():
        raise CooldownError("an empty run name was given")
    path, at, name = text.rpartition("@")
    if at and name and not Path(text).exists():
        return RunSpec(Path(path), name)
    return RunSpec(Path(text), weights)


def parse_seeds(values: Sequence[str | Sequence[str | Path]], n_runs: int) -> list[list[str]]:
    """Each value: the further seed of every compared run, 'A2,B2' (or a list); checked to name
    exactly one run per compared run."""
    rows = []
    for value in values:
        items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
        items = [i.strip() for i in items]
        if not any(items):
            raise CooldownError(
                "--seeds: a value names no runs; each --seeds value lists one more seed of every "
                "compared run, comma-separated (e.g. --seeds A2,B2)"
            )
        if len(items) != n_runs or not all(items):
            raise CooldownError(
                f"--seeds {','.join(items)}: names {sum(map(bool, items))} run(s) where it needs "
                f"one per compared run ({n_runs}), comma-separated in the order of the runs"
            )
        rows.append(items)
    return rows


@dataclass(frozen=True)
class Comparison:
    baseline: str
    differences: list[Difference]
    losses: dict[str, list[DocLosses]]  # by label: one per seed
    csv_path: Path | None = None
    plot_path: Path | None = None

    def text(self) -> str:
        from cooldown.compare.table import format_comparison

        return format_comparison(self.differences)


@dataclass(frozen=True)
class _Checked:
    spec: RunSpec
    manifest: dict[str, Any]
    step: int
    seq_len: int
    seed: int


def _stored_weights(ckpt: Path) -> list[str]:
    """Names of the weight sets a checkpoint holds, from its checksum file (no loading)."""
    from cooldown.checkpoint import CHECKSUM_FILE, MODEL_FILE

    try:
        files = json.loads((ckpt / CHECKSUM_FILE).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CooldownError(f"checkpoint {ckpt} has no readable {CHECKSUM_FILE}: {e}") from None
    extra = sorted(
        n.removesuffix(".safetensors")
        for n in files
        if n.endswith(".safetensors") and "/" not in n and n != MODEL_FILE
    )
    return [RAW_WEIGHTS, *extra]


def _check_run(spec: RunSpec) -> _Checked:
    from cooldown.checkpoint import find_checkpoint
    from cooldown.config import load_run_config

    manifest = read_run_manifest(spec.path)
    step = final_step(spec.path, manifest)
    ckpt = find_checkpoint(spec.path, step)
    have = _stored_weights(ckpt)
    if spec.weights not in have:
        raise CooldownError(
            f"{spec.path}: its final checkpoint (step {step}) holds no {spec.weights!r} weights; "
            f"it has: {', '.join(have)}"
        )
    cfg = load_run_config(spec.path / CONFIG_FILE)
    return _Checked(spec, manifest, step, cfg.train.seq_len, cfg.train.seed)


def _describe_data(manifest: dict[str, Any]) -> str:
    tok = manifest.get("tokenizer")
    kind = tok.get("kind", "?") if isinstance(tok, dict) else "?"
    return (
        f"data fingerprint {manifest['data_fingerprint']}, tokenizer {kind} with "
        f"{manifest.get('vocab_size', '?')} ids"
    )


def _check_together(groups: list[list[_Checked]]) -> None:
    everything = [c for group in groups for c in group]
    first = everything[0]
    for other in everything[1:]:
        if other.manifest["data_fingerprint"] != first.manifest["data_fingerprint"]:
            raise CooldownError(
                f"{first.spec.path} and {other.spec.path} were prepared on different data or "
                f"tokenizers ({_describe_data(first.manifest)} vs {_describe_data(other.manifest)}):"
                " a paired comparison needs the same validation documents"
            )
        if other.seq_len != first.seq_len:
            raise CooldownError(
                f"{first.spec.path} reads validation in windows of train.seq_len {first.seq_len} "
                f"and {other.spec.path} in windows of {other.seq_len}: their per-document losses "
                "are not comparable"
            )
    seen: set[tuple[Path, str]] = set()
    for group in groups:
        for c in group:
            key = (c.spec.path.resolve(), c.spec.weights)
            if key in seen:
                raise CooldownError(f"{c.spec} is given twice")
            seen.add(key)
        seeds: dict[int, RunSpec] = {}
        for c in group:
            if c.seed in seeds:
                raise CooldownError(
                    f"--seeds: {seeds[c.seed]} and {c.spec} were both trained with train.seed "
                    f"{c.seed}, so they are one seed, not two; seed pairs need runs of different "
                    "seeds"
                )
            seeds[c.seed] = c.spec


def _default_out(baseline: RunSpec, others: list[RunSpec], n_seeds: int) -> Path:
    name = others[0].label.replace("@", "-")
    if len(others) > 1:
        name += f"-and-{len(others) - 1}-more"
    if n_seeds > 1:
        name += f"-{n_seeds}-seeds"
    prefix = "" if baseline.weights == RAW_WEIGHTS else f"{baseline.weights}-"
    return baseline.path / "comparisons" / f"{prefix}vs-{name}"


def compare_runs(
    runs: Sequence[str | Path | RunSpec],
    *,
    seeds: Sequence[str | Sequence[str | Path]] = (),
    baseline: str | Path | RunSpec | None = None,
    weights: str = RAW_WEIGHTS,
    out: str | Path | None = None,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    device: str = "cpu",
    max_doc_tokens: int | None = None,
) -> Comparison:
    """Evaluate every run's final weights on the shared validation documents, take each run's
    paired difference from the baseline, write compare.csv and compare.png into `out` (default
    BASELINE/comparisons/vs-...), and return them (see the module docstring). `max_doc_tokens`:
    score only the first windows of every document (see `document_losses`), for large splits."""
    from cooldown.compare.table import write_comparison_csv
    from cooldown.report.compare_plot import plot_differences

    specs = [parse_run(r, weights) for r in runs]
    if len(specs) < 2:
        raise CooldownError(f"compare needs at least two runs (got {len(specs)})")
    seed_rows = parse_seeds(seeds, len(specs))
    groups_specs = [
        [spec, *(parse_run(row[i], spec.weights) for row in seed_rows)]
        for i, spec in enumerate(specs)
    ]
    base_index = 0
    if baseline is not None:
        base = parse_run(baseline, weights)
        matches = [i for i, s in enumerate(specs) if _same(s, base)]
        if not matches:
            raise CooldownError(
                f"--baseline {base} is not one of the compared runs ({', '.join(map(str, specs))})"
            )
        base_index = matches[0]

    groups = [[_check_run(s) for s in group] for group in groups_specs]
    _check_together(groups)

    labels = _unique_labels(specs)
    losses = {
        label: [
            document_losses(
                c.spec.path, c.spec.weights, c.step, device=device, max_doc_tokens=max_doc_tokens
            )
            for c in group
        ]
        for label, group in zip(labels, groups, strict=True)
    }
    base_label = labels[base_index]
    differences = [
        replace(
            paired_difference(
                losses[base_label], losses[label], n_boot=n_boot, level=level, seed=seed
            ),
            a=base_label,
            b=label,
        )
        for label in labels
        if label != base_label
    ]
    others = [s for i, s in enumerate(specs) if i != base_index]
    folder = (
        Path(out) if out is not None else _default_out(specs[base_index], others, len(groups[0]))
    )
    csv_path = write_comparison_csv(folder / "compare.csv", differences)
    plot_path = plot_differences(differences, folder / "compare.png")
    return Comparison(base_label, differences, losses, csv_path, plot_path)


def _unique_labels(specs: list[RunSpec]) -> list[str]:
    """Folder names (with @weights), or the paths as given where two names coincide."""
    short = [s.label for s in specs]
    return [str(s) if short.count(s.label) > 1 else s.label for s in specs]


def _same(a: RunSpec, b: RunSpec) -> bool:
    return a.weights == b.weights and a.path.resolve() == b.path.resolve()
