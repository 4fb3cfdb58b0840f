"""Preparing a corpus: documents -> tokenizer -> train.bin / val.bin / header.json, once.

Idempotent: the output folder is named by a key, a hash of everything that determines its content
(the source's identity, tokenizer, vocabulary size, validation fraction, limits, seed). A folder
whose header carries that key is complete and is returned as it is; nothing is redone.

Atomic: everything is written into a temporary sibling folder, fsynced, then renamed into place, so
a preparation killed at any moment never leaves a folder that looks complete. A later run removes
temporary folders left by dead processes on the same host.

Validation split by documents: a document is held out when sha256(seed, document name) maps below
`val_fraction`; adding documents to a corpus never moves existing ones across the split. A corpus so
small that the hash selects no validation document (or no training one) gives the document with
the lowest (highest) score to the empty split, so both splits are non-empty when val_fraction > 0.

BPE is trained on the training documents only (the first BPE_TRAIN_MAX_BYTES of them), so the
validation text stays unseen by the tokenizer too.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cooldown.data.config import DataConfig
from cooldown.data.shards import (
    FORMAT_VERSION,
    HEADER_NAME,
    SPLITS,
    TOKENIZER_NAME,
    SplitWriter,
    TokenData,
    dtype_name,
    file_sha256,
    shard_path,
    token_dtype,
)
from cooldown.data.sources import Document, Source, limit_documents, open_source
from cooldown.data.tokenizers import Tokenizer, load_tokenizer, sha256_bytes, train_bpe
from cooldown.errors import CooldownError
from cooldown.fileio import atomic_write_bytes, atomic_write_json, fsync_dir

BPE_TRAIN_MAX_BYTES = 1 << 30  # BPE merges stop improving long before a GiB of text
_ENCODE_BATCH_BYTES = 1 << 22  # text handed to the tokenizer per call (it parallelises a batch)
_PARTIAL = ".partial-"


def _log(progress: bool, message: str) -> None:
    if progress:
        print(message, file=sys.stderr, flush=True)


def _bar(progress: bool, cfg: DataConfig, source: Source, desc: str):
    from tqdm import tqdm

    # The bar's total is the number of documents that will be read, when known in advance.
    total = None if cfg.max_bytes is not None or not progress else source.count()
    if cfg.max_documents is not None and cfg.max_bytes is None:
        total = min(total, cfg.max_documents) if total is not None else cfg.max_documents
    return tqdm(total=total, desc=desc, unit="doc", disable=not progress, dynamic_ncols=True)


# --- the split ------------------------------------------------------------------------------------


def document_score(name: str, seed: int) -> float:
    """A uniform number in [0, 1) fixed by (seed, document name): below val_fraction -> val."""
    digest = hashlib.sha256(f"{seed}\0{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


# --- what the folder is keyed by ------------------------------------------------------------------


def _tokenizer_identity(cfg: DataConfig) -> dict[str, Any]:
    if cfg.tokenizer == "bpe":
        return {"kind": "bpe", "vocab_size": cfg.vocab_size, "max_train_bytes": BPE_TRAIN_MAX_BYTES}
    if cfg.tokenizer in ("bytes", "gpt2"):
        return {"kind": cfg.tokenizer}
    path = Path(cfg.tokenizer).expanduser()
    if not path.is_file():
        raise CooldownError(f"data.tokenizer: tokenizer file {path} does not exist")
    return {"kind": "tokenizer.json", "sha256": file_sha256(path)}


def preparation_key(cfg: DataConfig, source: Source) -> str:
    """sha256 of everything that determines the prepared tokens (not where they are stored)."""
    ident = {
        "format_version": FORMAT_VERSION,
        "source": source.identity(),
        "tokenizer": _tokenizer_identity(cfg),
        "val_fraction": cfg.val_fraction,
        "seed": cfg.seed,
        "max_documents": cfg.max_documents,
        "max_bytes": cfg.max_bytes,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()


def _slug(cfg: DataConfig) -> str:
    if cfg.source == "stdlib":
        name = "stdlib"
    elif cfg.source.startswith("hf:"):
        name = "hf-" + cfg.source[3:]
    else:
        name = Path(cfg.source).name
    tok = {"bpe": f"bpe{cfg.vocab_size}", "bytes": "bytes", "gpt2": "gpt2"}.get(
        cfg.tokenizer, "tok"
    )
    return re.sub(r"[^A-Za-z0-9._-]+", "-", f"{name}-{tok}").strip("-.")[:80]


def _open(cfg: DataConfig) -> tuple[Source, Tokenizer | None]:
    """The source, and the tokenizer when it needs no training (None for 'bpe')."""
    tokenizer = None if cfg.tokenizer == "bpe" else load_tokenizer(cfg.tokenizer)
    is_token_file = (
        not cfg.source.startswith("hf:") and cfg.source != "stdlib" and cfg.source.endswith(".bin")
    )
    if is_token_file and tokenizer is None:
        raise CooldownError(
            f"data.tokenizer: {cfg.source} holds token ids already, so 'bpe' cannot be trained on "
            "it; name the tokenizer that produced them ('gpt2' for nanoGPT files, or a "
            "tokenizer.json)"
        )
    source = open_source(
        cfg.source,
        text_field=cfg.text_field,
        hf_split=cfg.hf_split,
        hf_config=cfg.hf_config,
        eod_id=tokenizer.eod_id if tokenizer is not None else None,
        max_bytes=cfg.max_bytes,
    )
    return source, tokenizer


def prepared_folder(cfg: DataConfig, out_dir: str | os.PathLike | None = None) -> Path:
    """Where `prepare(cfg, out_dir)` puts (or finds) the data, without preparing anything."""
    source, _ = _open(cfg)
    return _final_folder(cfg, preparation_key(cfg, source), out_dir)


def _final_folder(cfg: DataConfig, key: str, out_dir) -> Path:
    if out_dir is not None:
        return Path(out_dir).expanduser().absolute()
    return (cfg.resolved_cache_dir() / f"{_slug(cfg)}-{key[:16]}").absolute()


# --- the public entry points ----------------------------------------------------------------------


def prepare(
    cfg: DataConfig, out_dir: str | os.PathLike | None = None, progress: bool = True
) -> Path:
    """Prepare the data `cfg` describes (or find it prepared already); returns the folder."""
    return _prepare(cfg, out_dir, progress)[0]


def ensure_prepared(
    cfg: DataConfig, out_dir: str | os.PathLike | None = None, progress: bool = True
) -> TokenData:
    """Prepare if needed, then open: what the trainer calls."""
    return TokenData.open(prepare(cfg, out_dir, progress))


def _prepare(cfg: DataConfig, out_dir, progress: bool) -> tuple[Path, bool]:
    """(folder, reused): reused is True when a complete folder existed and nothing was done."""
    source, tokenizer = _open(cfg)
    key = preparation_key(cfg, source)
    final = _final_folder(cfg, key, out_dir)
    if _is_complete(final, key):
        _log(progress, f"data already prepared at {final} (nothing to do)")
        return final, True
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_partials(final)
    tmp = final.parent / f".{final.name}{_PARTIAL}{socket.gethostname()}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        _write_prepared(cfg, source, tokenizer, key, tmp, progress)
        fsync_dir(tmp)
        try:
            os.rename(tmp, final)  # replaces an empty folder; fails on a non-empty one
        except OSError:
            if not _is_complete(final, key):  # another process finished first: theirs is as good
                raise
            shutil.rmtree(tmp, ignore_errors=True)
        fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _log(progress, f"prepared data in {final}")
    return final, False


def _is_complete(folder: Path, key: str) -> bool:
    """True for a finished preparation with this key; raises for a folder that is something else."""
    if not folder.exists():
        return False
    if not folder.is_dir():
        raise CooldownError(f"output {folder} exists and is not a folder")
    header_path = folder / HEADER_NAME
    if not header_path.is_file():
        if any(folder.iterdir()):
            raise CooldownError(
                f"output folder {folder} exists, is not empty and holds no {HEADER_NAME}: "
                "choose another folder or remove it"
            )
        return False  # an empty folder: the rename replaces it
    try:
        found = json.loads(header_path.read_text(encoding="utf-8")).get("key")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        found = None
    if found != key:
        raise CooldownError(
            f"output folder {folder} holds data prepared from other settings (key "
            f"{str(found)[:12]}..., these settings give {key[:12]}...): choose another folder or "
            "remove it"
        )
    TokenData.open(folder)  # a complete folder must also be intact (sizes, tokenizer hash)
    return True


def _remove_dead_partials(final: Path) -> None:
    """Remove temporary folders of preparations killed on this host (their process is gone)."""
    prefix = f".{final.name}{_PARTIAL}{socket.gethostname()}-"
    for p in final.parent.glob(f".{final.name}{_PARTIAL}*"):
        pid = p.name[len(prefix) :] if p.name.startswith(prefix) else ""
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


# --- writing --------------------------------------------------------------------------------------


def _documents(cfg: DataConfig, source: Source) -> Iterator[Document]:
    return limit_documents(source.documents(), cfg.max_documents, cfg.max_bytes)


def _bpe_texts(cfg, source, stats: dict[str, Any], only: str | None, progress: bool):
    """Training texts for BPE: train-split documents (or the one named `only`), capped in bytes."""
    bar = _bar(progress, cfg, source, "training BPE on documents")
    try:
        for doc in _documents(cfg, source):
            bar.update(1)
            if doc.is_empty:
                continue
            score = document_score(doc.name, cfg.seed)
            stats["n_documents"] += 1
            if only is None and score < cfg.val_fraction:
                if score > stats["top_score"]:
                    stats["top_score"], stats["top_name"] = score, doc.name
                continue
            if only is not None and doc.name != only:
                continue
            size = len(doc.raw)
            if stats["bytes"] + size > BPE_TRAIN_MAX_BYTES and stats["bytes"] > 0:
                break
            stats["bytes"] += size
            stats["documents"] += 1
            yield doc.text
    finally:
        bar.close()


def _train_tokenizer(cfg: DataConfig, source: Source, progress: bool) -> Tokenizer:
    stats = {"n_documents": 0, "bytes": 0, "documents": 0, "top_score": -1.0, "top_name": None}
    tok = train_bpe(_bpe_texts(cfg, source, stats, None, progress), cfg.vocab_size)
    if stats["documents"] == 0 and stats["n_documents"] >= 2 and stats["top_name"] is not None:
        # Every document hashed to val; the writer will move the highest-scored one to train.
        only = stats["top_name"]
        stats = {**stats, "bytes": 0, "documents": 0}
        tok = train_bpe(_bpe_texts(cfg, source, stats, only, progress), cfg.vocab_size)
    tok.description = (
        f"byte-level BPE trained on {stats['documents']:,} training documents "
        f"({stats['bytes']:,} bytes), vocabulary {tok.vocab_size} ({cfg.vocab_size} requested), "
        f"eod {tok.eod_token!r} id {tok.eod_id}"
    )
    return tok


@dataclass(frozen=True)
class _Extreme:
    """The document to move if a split ends up empty: its score, name and place in its shard."""

    score: float
    name: str = ""
    offset: int = 0
    length: int = 0
    n_bytes: int = 0


def _write_prepared(cfg, source, tokenizer, key, folder: Path, progress: bool) -> None:
    if tokenizer is None:
        tokenizer = _train_tokenizer(cfg, source, progress)
    elif not source.tokenized:
        tokenizer.check_available()
    dtype = token_dtype(tokenizer.vocab_size)
    writers = {
        s: SplitWriter(shard_path(folder, s), dtype, tokenizer.eod_id, tokenizer.vocab_size)
        for s in SPLITS
    }
    # The lowest-scored train document and the highest-scored val one (see _ensure_both_splits).
    extremes = {"train": _Extreme(2.0), "val": _Extreme(-1.0)}
    source_hash = hashlib.sha256()
    n_empty = 0
    pending: list[tuple[Document, str, float, int]] = []
    pending_bytes = 0

    bar = _bar(progress, cfg, source, "tokenizing documents")

    def emit(doc: Document, split: str, score: float, ids: np.ndarray, n_bytes: int) -> None:
        offset, length = writers[split].append(ids, n_bytes, doc.name)
        held = extremes[split].score
        if (score < held) if split == "train" else (score > held):
            extremes[split] = _Extreme(score, doc.name, offset, length, n_bytes)

    def flush() -> None:
        # One batch encode: the tokenizer spreads it over every core. (Encoding on a thread while
        # the next batch is read measured no gain here: 102/149 s vs 116/122 s on 200 MB.)
        nonlocal pending_bytes
        if pending:
            encoded = tokenizer.encode_batch([d.text for d, *_ in pending])
            for (doc, split, score, n_bytes), ids in zip(pending, encoded, strict=True):
                emit(doc, split, score, ids, n_bytes)
            tokens = sum(w.n_tokens for w in writers.values())
            n_bytes = sum(w.n_bytes for w in writers.values())
            bar.set_postfix_str(f"{tokens:,} tokens, {n_bytes / 1e6:,.1f} MB", refresh=False)
        pending.clear()
        pending_bytes = 0

    try:
        for doc in _documents(cfg, source):
            bar.update(1)
            raw = doc.raw
            source_hash.update(f"{doc.name}\0{len(raw)}\0".encode())
            source_hash.update(raw)
            if doc.is_empty:
                n_empty += 1
                continue
            score = document_score(doc.name, cfg.seed)
            split = "val" if score < cfg.val_fraction else "train"
            if source.tokenized:
                emit(doc, split, score, doc.tokens, 0)  # no source text: no bytes to count
            else:
                pending.append((doc, split, score, len(raw)))
                pending_bytes += len(raw)
                if pending_bytes >= _ENCODE_BATCH_BYTES:
                    flush()
        flush()
    finally:
        bar.close()
        for w in writers.values():
            w.close()

    stats = {
        s: {
            "n_tokens": w.n_tokens,
            "n_documents": w.n_documents,
            "n_bytes": w.n_bytes,
            "sha256": w.sha256,
        }
        for s, w in writers.items()
    }
    moved = _ensure_both_splits(cfg, source, folder, dtype, stats, extremes)

    tok_file = tokenizer.file_bytes()
    tok_sha = None
    if tok_file is not None:
        atomic_write_bytes(folder / TOKENIZER_NAME, tok_file)
        tok_sha = sha256_bytes(tok_file)
    header = _header(
        cfg, source, tokenizer, key, dtype, stats, source_hash.hexdigest(), n_empty, moved, tok_sha
    )
    atomic_write_json(folder / HEADER_NAME, header)  # last: its presence marks completeness


def _ensure_both_splits(cfg, source, folder, dtype, stats, extremes) -> str | None:
    """Move one document into an empty split (see the module docstring); returns its name."""
    n_docs = stats["train"]["n_documents"] + stats["val"]["n_documents"]
    limits = f"max_documents={cfg.max_documents}, max_bytes={cfg.max_bytes}"
    if n_docs == 0:
        why = (
            "a limit smaller than the first document leaves nothing"
            if cfg.max_documents or cfg.max_bytes
            else "the source is empty"
        )
        raise CooldownError(
            f"source {source.description} gave no non-empty documents ({limits}): {why}"
        )
    if cfg.val_fraction == 0:
        return None
    if n_docs < 2:
        raise CooldownError(
            f"source {source.description} gave 1 document ({limits}); a split by documents needs "
            "at least 2: add documents, raise the limits, or set data.val_fraction = 0"
        )
    for empty, full in (("val", "train"), ("train", "val")):
        if stats[empty]["n_documents"] == 0:
            _move(folder, full, empty, extremes[full], dtype.itemsize, stats)
            return extremes[full].name
    return None


def _move(folder: Path, src: str, dst: str, doc: _Extreme, itemsize: int, stats) -> None:
    """Move one document (ids + eod) from shard `src` to the empty shard `dst`."""
    src_path, dst_path = shard_path(folder, src), shard_path(folder, dst)
    begin, end = doc.offset * itemsize, (doc.offset + doc.length) * itemsize
    rest = src_path.with_suffix(".bin.rest")
    with src_path.open("rb") as fin, dst_path.open("wb") as fdst, rest.open("wb") as frest:
        _copy_range(fin, frest, 0, begin)
        _copy_range(fin, fdst, begin, end)
        _copy_range(fin, frest, end, stats[src]["n_tokens"] * itemsize)
        for f in (fdst, frest):
            f.flush()
            os.fsync(f.fileno())
    os.replace(rest, src_path)
    stats[dst] = {
        "n_tokens": doc.length,
        "n_documents": 1,
        "n_bytes": doc.n_bytes,
        "sha256": file_sha256(dst_path),
    }
    stats[src] = {
        "n_tokens": stats[src]["n_tokens"] - doc.length,
        "n_documents": stats[src]["n_documents"] - 1,
        "n_bytes": stats[src]["n_bytes"] - doc.n_bytes,
        "sha256": file_sha256(src_path),
    }


def _copy_range(fin, fout, begin: int, end: int, chunk: int = 1 << 24) -> None:
    fin.seek(begin)
    left = end - begin
    while left > 0:
        block = fin.read(min(chunk, left))
        fout.write(block)
        left -= len(block)


def _header(cfg, source, tokenizer, key, dtype, stats, source_sha, n_empty, moved, tok_sha):
    from cooldown import __version__

    text_source = not source.tokenized
    return {
        "format_version": FORMAT_VERSION,
        "key": key,
        "dtype": dtype_name(dtype),
        "byte_order": "little",
        "vocab_size": tokenizer.vocab_size,
        "eod_id": tokenizer.eod_id,
        "eod_placement": "after every document",
        "n_tokens": {s: stats[s]["n_tokens"] for s in SPLITS},
        "n_documents": {s: stats[s]["n_documents"] for s in SPLITS},
        "n_bytes": {s: stats[s]["n_bytes"] for s in SPLITS} if text_source else None,
        "sha256": {s: stats[s]["sha256"] for s in SPLITS},
        "n_empty_documents_skipped": n_empty,
        "tokenizer": {
            "kind": tokenizer.kind,
            "description": tokenizer.description,
            "file": TOKENIZER_NAME if tok_sha else None,
            "sha256": tok_sha,
        },
        "source": {
            "kind": source.kind,
            "description": source.description,
            "sha256": source_sha,
            "sha256_of": "each document's name and UTF-8 bytes (token bytes for token files), "
            "in order, after limits",
            "identity": source.identity(),
        },
        "split": {
            "by": "documents: sha256(seed, name) < val_fraction",
            "val_fraction": cfg.val_fraction,
            "seed": cfg.seed,
            "moved_to_fill_empty_split": moved,
        },
        "limits": {"max_documents": cfg.max_documents, "max_bytes": cfg.max_bytes},
        "config": cfg.model_dump(mode="json"),
        "python_version": sys.version,
        "created_by": f"cooldown {__version__}",
    }
