"""Per-document validation losses of one set of a run's weights (what paired comparisons need).

The run's whole validation split is read in the non-overlapping seq_len windows of its final full
evaluation (`cooldown.data.validation_batches`), so the per-token mean of the result is the run's
`final_val_loss`. Each predicted token's loss goes to the document it belongs to: val.bin holds
the documents one after another, each followed by the end-of-document (eod) id, so the document of
the token at position p is the number of eod ids before p (a document's own eod counts as its
last token). Documents with no predicted token (in the tail shorter than a window) are left out.

The result is cached in RUN/eval/doc-losses-<weights>-step<N>.npz, written atomically, under a key
of what determines it: the data fingerprint, the checkpoint's checksum file (which hashes every
file of the checkpoint), the weights, seq_len and precision. A second call with the same key reads
the file; a checkpoint saved again or data prepared differently computes it afresh.

torch is imported inside the functions, so `DocLosses` (and `cooldown.compare.paired`) can be used
without it.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cooldown.errors import CooldownError

__all__ = ["CACHE_FORMAT", "DocLosses", "cache_path", "document_losses", "read_run_manifest"]

CACHE_FORMAT = 1
RAW_WEIGHTS = "raw"  # = cooldown.checkpoint.RAW_WEIGHTS, without importing torch


@dataclass(frozen=True, eq=False)
class DocLosses:
    """Summed cross-entropy (nats) and predicted tokens per validation document of one weight set."""

    run: str
    weights: str
    step: int
    data_fingerprint: str
    nats: np.ndarray  # float64, summed cross-entropy (nats) per validation document
    tokens: np.ndarray  # int64, predicted tokens per document

    @property
    def mean(self) -> float:
        """Per-token mean loss (nats/token) over the whole validation split."""
        return float(self.nats.sum() / self.tokens.sum())

    @property
    def label(self) -> str:
        """The run folder's name, with the weights when they are not the raw ones."""
        name = Path(self.run).name
        return name if self.weights == RAW_WEIGHTS else f"{name}@{self.weights}"


def cache_path(
    run_dir: str | Path, weights: str, step: int, max_doc_tokens: int | None = None
) -> Path:
    first = f"-first{max_doc_tokens}" if max_doc_tokens is not None else ""
    return Path(run_dir) / "eval" / f"doc-losses-{weights}-step{step}{first}.npz"


def read_run_manifest(run_dir: Path) -> dict[str, Any]:
    """manifest.json of a run folder (through `RunDir`), or one clear error."""
    from cooldown.run_dir import RunDir

    if not run_dir.is_dir():
        raise CooldownError(f"run folder {run_dir} does not exist")
    manifest = RunDir(run_dir).require().manifest()
    if manifest is None:
        raise CooldownError(f"{run_dir} has no manifest.json: the run never started training")
    data = manifest.as_dict()
    if not data.get("data_fingerprint"):
        raise CooldownError(
            f"{run_dir / 'manifest.json'} has no data_fingerprint: not a cooldown run manifest"
        )
    return data


def final_step(run_dir: Path, manifest: dict[str, Any]) -> int:
    """The step of the run's final weights; an unfinished run has none yet."""
    if manifest.get("status") != "complete" or not isinstance(manifest.get("steps"), int):
        raise CooldownError(
            f"{run_dir} has not finished training (status {manifest.get('status')!r}): "
            "finish it, or name a step of one of its checkpoints"
        )
    return manifest["steps"]


def _checkpoint_digest(ckpt: Path) -> str:
    from cooldown.checkpoint import CHECKSUM_FILE

    return hashlib.sha256((ckpt / CHECKSUM_FILE).read_bytes()).hexdigest()


def _read_cache(path: Path, key: dict[str, Any], run_dir: Path) -> DocLosses | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            if json.loads(str(f["key"])) != key:
                return None
            nats, tokens = f["nats"].astype(np.float64), f["tokens"].astype(np.int64)
    except (OSError, ValueError, KeyError):  # a foreign or damaged file: compute it again
        return None
    return DocLosses(
        str(run_dir), key["weights"], key["step"], key["data_fingerprint"], nats, tokens
    )


def _write_cache(path: Path, key: dict[str, Any], losses: DocLosses) -> None:
    from cooldown.fileio import atomic_write_bytes

    buf = io.BytesIO()
    np.savez(
        buf, key=np.array(json.dumps(key, sort_keys=True)), nats=losses.nats, tokens=losses.tokens
    )
    atomic_write_bytes(path, buf.getvalue())


def document_losses(
    run_dir: str | Path,
    weights: str = RAW_WEIGHTS,
    step: int | None = None,
    *,
    device: str = "cpu",
    precision: str | None = None,
    batch_size: int = 64,
    max_doc_tokens: int | None = None,
) -> DocLosses:
    """Per-document losses of `weights` ('raw', or an average stored in the checkpoint: swa,
    lawa<n>, ema) at `step` (default: the run's final step), over the run's validation split;
    `precision` defaults to the run's train.precision. Cached (see the module docstring).

    `max_doc_tokens`: instead of the whole split, only the first max_doc_tokens // seq_len full
    windows of every document (each window inside its document; documents shorter than one
    window are left out). Much cheaper on a split of many long documents, and still the same
    tokens for every run, which is all a paired comparison needs."""
    from cooldown.checkpoint import find_checkpoint
    from cooldown.device import resolve_device, resolve_precision
    from cooldown.run_dir import RunDir

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise CooldownError(f"batch_size must be a positive integer (got {batch_size!r})")
    if max_doc_tokens is not None and max_doc_tokens < 1:
        raise CooldownError(f"max_doc_tokens must be a positive integer (got {max_doc_tokens!r})")
    run_dir = Path(run_dir)
    manifest = read_run_manifest(run_dir)
    step = final_step(run_dir, manifest) if step is None else step
    ckpt = find_checkpoint(run_dir, step)
    cfg = RunDir(run_dir).config
    dev = resolve_device(device)
    key = {
        "format": CACHE_FORMAT,
        "data_fingerprint": manifest["data_fingerprint"],
        "checkpoint": _checkpoint_digest(ckpt),
        "weights": weights,
        "step": step,
        "seq_len": cfg.train.seq_len,
        "precision": resolve_precision(precision or cfg.train.precision, dev),
    }
    if max_doc_tokens is not None:
        key["max_doc_tokens"] = max_doc_tokens
    path = cache_path(run_dir, weights, step, max_doc_tokens)
    cached = _read_cache(path, key, run_dir)
    if cached is not None:
        return cached
    from cooldown.data import ensure_prepared

    data = ensure_prepared(cfg.data, progress=False)
    if data.fingerprint != manifest["data_fingerprint"]:
        raise CooldownError(
            f"{run_dir} was trained on data with fingerprint {manifest['data_fingerprint']}, but "
            f"{data.path} now holds {data.fingerprint}: the prepared data changed since training"
        )
    nats, tokens = _evaluate_documents(
        cfg, data, ckpt, weights, dev, key["precision"], batch_size, max_doc_tokens
    )
    losses = DocLosses(str(run_dir), weights, step, data.fingerprint, nats, tokens)
    _write_cache(path, key, losses)
    return losses


def _document_windows(val: np.ndarray, eod_positions: np.ndarray, seq_len: int, per_doc: int):
    """Start positions of the first `per_doc` full windows of each document. A window at s
    predicts positions s+1 .. s+seq_len; a document's first window starts at the previous
    document's eod (as a BOS would), so it predicts the document's first token, and its last
    window predicts at most up to the document's own eod."""
    starts = np.concatenate([[0], eod_positions[:-1]])
    k = np.arange(per_doc, dtype=np.int64)
    s = starts[:, None] + k[None, :] * seq_len
    ok = s + seq_len <= eod_positions[:, None]
    return s[ok]


def _windows_batches(val: np.ndarray, window_starts: np.ndarray, seq_len: int, batch_size: int):
    import torch

    idx = np.arange(seq_len + 1, dtype=np.int64)
    for i in range(0, len(window_starts), batch_size):
        rows = val[window_starts[i : i + batch_size, None] + idx[None, :]].astype(np.int64)
        t = torch.from_numpy(rows)
        yield t[:, :-1], t[:, 1:]


def _evaluate_documents(
    cfg, data, ckpt: Path, weights: str, device, precision, batch_size, max_doc_tokens=None
):
    """(nats, tokens) per document: one pass of the weights over the validation split (or over
    the first windows of every document, see `document_losses`)."""
    import torch
    import torch.nn.functional as F

    from cooldown.checkpoint import load_checkpoint, select_weights
    from cooldown.data import validation_batches
    from cooldown.device import autocast
    from cooldown.model import Transformer

    state = select_weights(load_checkpoint(ckpt), weights)
    model = Transformer(cfg.model.with_vocab(cfg.model.vocab_size or data.vocab_size))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise CooldownError(
            f"{ckpt}: {weights} weights do not fit the run's model: {first}"
        ) from None
    model.to(device).eval()

    seq_len = cfg.train.seq_len
    val = np.asarray(data.val)
    eod_positions = np.flatnonzero(val == data.eod_id)
    n_docs = eod_positions.size
    nats = np.zeros(n_docs, dtype=np.float64)
    tokens = np.zeros(n_docs, dtype=np.int64)
    offsets = np.arange(1, seq_len + 1, dtype=np.int64)
    if max_doc_tokens is None:
        n_windows = (len(val) - 1) // seq_len
        window_starts = np.arange(n_windows, dtype=np.int64) * seq_len
        batches = validation_batches(val, batch_size, seq_len)
    else:
        per_doc = max(1, max_doc_tokens // seq_len)
        window_starts = _document_windows(val, eod_positions, seq_len, per_doc)
        batches = _windows_batches(val, window_starts, seq_len, batch_size)
    first_window = 0
    with torch.no_grad():
        for x, y in batches:
            n = x.shape[0]
            with autocast(device, precision):
                logits = model(x.to(device))
            loss = F.cross_entropy(
                logits.view(-1, logits.size(-1)), y.to(device).reshape(-1), reduction="none"
            )
            # The window starting at s predicts positions s + 1 .. s + seq_len.
            starts = window_starts[first_window : first_window + n]
            positions = (starts[:, None] + offsets).ravel()
            doc = np.searchsorted(eod_positions, positions, side="left")
            per_token = loss.double().cpu().numpy()
            nats += np.bincount(doc, weights=per_token, minlength=n_docs)
            tokens += np.bincount(doc, minlength=n_docs)
            first_window += n
    keep = tokens > 0
    return nats[keep], tokens[keep]
