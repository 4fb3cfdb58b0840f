"""Corpora as deterministic streams of documents.

A source yields `Document`s in a fixed order; the order never depends on the file system's listing
order or on the clock, so the same source and limits give the same documents on every machine.

    "stdlib"           every *.py file of this Python's standard library, sorted by relative path.
                       Left out: site-packages / dist-packages, the `test` package, `idlelib`, every
                       nested `test`/`tests`/`idle_test` folder (test suites hold deliberately
                       malformed fixtures and dominate the byte count), `__pycache__` and the build
                       `config-*` folder. The text is decoded as Python decodes source (PEP 263).
    a folder           every non-hidden file under it, sorted by relative path: *.jsonl and *.parquet
                       files give one document per row, any other file is one UTF-8 document.
    a text file        one document per paragraph (blocks separated by blank lines), so a single
                       book or markdown file can still be split into train and validation documents.
    a *.jsonl file     one document per line: a JSON object whose `text_field` holds the text.
    a *.parquet file   one document per row of the `text_field` column (needs pyarrow).
    a *.bin file       nanoGPT token file (uint16 token ids, each document followed by the
                       tokenizer's end-of-document id): documents are the runs between those ids.
    "hf:NAME"          a Hugging Face dataset: a folder written by `save_to_disk` when NAME is an
                       existing folder, else a hub dataset streamed with `load_dataset(streaming=True)`
                       (never with remote code). Both go through `hf_documents`.

Document names (relative path, `path:line`, row index) feed the validation split, which hashes them.
`identity()` is what the prepared folder is keyed by: cheap to compute (paths, sizes and mtimes,
never the whole content); the content hash is computed while preparing and kept in the header.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import re
import sysconfig
import tokenize
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cooldown.errors import CooldownError

STDLIB_EXCLUDED_TOP = frozenset(
    {"site-packages", "dist-packages", "test", "idlelib", "__pycache__"}
)
STDLIB_EXCLUDED_ANYWHERE = frozenset({"test", "tests", "idle_test", "__pycache__"})
TOKEN_FILE_DTYPE = np.dtype("<u2")  # nanoGPT writes uint16 ids
_PARAGRAPH_BREAK = re.compile(r"\n(?:[ \t\r\f\v]*\n)+")
_HF_BATCH_ROWS = 1000


@dataclass(frozen=True)
class Document:
    """One document: text, or token ids for sources that are tokenized already."""

    name: str
    text: str | None = None
    tokens: np.ndarray | None = None

    @property
    def raw(self) -> bytes:
        """The bytes the document is hashed and counted by (UTF-8 text, or little-endian ids)."""
        if self.tokens is not None:
            return np.ascontiguousarray(self.tokens).tobytes()
        return (self.text or "").encode("utf-8")

    @property
    def is_empty(self) -> bool:
        return (self.tokens is not None and self.tokens.size == 0) or (
            self.tokens is None and not self.text
        )


class Source:
    """A corpus. Subclasses set `kind` and `description` and yield documents in a fixed order."""

    kind: str = ""
    description: str = ""
    tokenized: bool = False  # True: documents carry token ids, not text

    def identity(self) -> dict[str, Any]:
        raise NotImplementedError

    def documents(self) -> Iterator[Document]:
        raise NotImplementedError

    def count(self) -> int | None:
        """Number of documents when known without reading them (for the progress bar)."""
        return None


# --- helpers --------------------------------------------------------------------------------------


def _files_signature(root: Path, files: Iterable[Path]) -> str:
    """sha256 over (relative path, size, mtime): changes when any file changes, reads no content."""
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(root).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _walk_sorted(root: Path, skip_dir) -> list[Path]:
    """Regular files under `root`, sorted by relative POSIX path; never follows directory links."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        dirnames[:] = [d for d in dirnames if not skip_dir(rel / d)]
        out.extend(Path(dirpath) / f for f in filenames)
    return sorted((p for p in out if p.is_file()), key=lambda p: p.relative_to(root).as_posix())


def _read_utf8(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise CooldownError(
            f"source file {path} is not UTF-8 text (byte {e.start}); convert it or remove it "
            "from the source folder"
        ) from None


def _jsonl_documents(path: Path, text_field: str, prefix: str) -> Iterator[Document]:
    with path.open("rb") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise CooldownError(f"{path}:{lineno} is not a JSON object: {e}") from None
            if not isinstance(row, dict) or text_field not in row:
                fields = sorted(row) if isinstance(row, dict) else type(row).__name__
                raise CooldownError(
                    f"{path}:{lineno} has no field {text_field!r} (fields: {fields}); "
                    "set data.text_field"
                )
            yield Document(f"{prefix}{lineno}", text=_as_text(row[text_field], f"{path}:{lineno}"))


def _parquet_documents(path: Path, text_field: str, prefix: str) -> Iterator[Document]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise CooldownError(
            f"source {path} is a Parquet file, which needs pyarrow: pip install 'cooldown[hf]'"
        ) from None
    pf = pq.ParquetFile(path)
    names = pf.schema_arrow.names
    if text_field not in names:
        raise CooldownError(
            f"{path} has no column {text_field!r} (columns: {names}); set data.text_field"
        )
    row = 0
    for batch in pf.iter_batches(columns=[text_field], batch_size=_HF_BATCH_ROWS):
        for value in batch.column(0).to_pylist():
            yield Document(f"{prefix}{row}", text=_as_text(value, f"{path} row {row}"))
            row += 1


def _as_text(value: Any, where: str) -> str:
    if value is None:
        return ""  # an empty document: skipped and counted by the writer
    if not isinstance(value, str):
        raise CooldownError(f"{where}: the text field holds {type(value).__name__}, expected text")
    return value


def split_paragraphs(text: str) -> list[str]:
    """Blocks of `text` separated by one or more blank lines (whitespace-only blocks dropped)."""
    return [p for p in _PARAGRAPH_BREAK.split(text) if p.strip()]


_READ_CHUNK = 1 << 20  # bytes read at a time from a text file


def _text_chunks(path: Path) -> Iterator[str]:
    """The file's UTF-8 text in pieces, read as the caller consumes them: a huge file (or an
    endless one, /dev/zero) is never held whole."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with path.open("rb") as f:
        while True:
            chunk = f.read(_READ_CHUNK)
            try:
                text = decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as e:
                raise CooldownError(
                    f"source file {path} is not UTF-8 text (byte {offset + e.start}); convert it "
                    "or remove it from the source folder"
                ) from None
            if text:
                yield text
            if not chunk:
                return
            offset += len(chunk)


def _stream_paragraphs(path: Path, max_bytes: int | None) -> Iterator[str]:
    """`split_paragraphs` of the file's text, paragraph by paragraph as the file is read.

    The text is cut only at the start of a blank-line break that a character other than a space
    or a tab follows, where no later text can change how the break matches, so the paragraphs are
    exactly those of the whole text. A paragraph in progress longer than `max_bytes` is yielded
    as soon as it is: it cannot be kept, and the caller's byte limit ends the stream there."""
    buffer = ""
    for text in _text_chunks(path):
        buffer += text
        cut = None
        for m in _PARAGRAPH_BREAK.finditer(buffer):
            if buffer[m.end() :].lstrip(" \t\r\f\v"):
                cut = m.start()
        if cut is not None:
            yield from split_paragraphs(buffer[:cut])
            buffer = buffer[cut:]
        if max_bytes is not None and len(buffer) > max_bytes:
            # More characters than max_bytes means more bytes too.
            head = buffer.lstrip(" \t\r\f\v\n")
            # Only a last newline followed by nothing but spaces may still start a break.
            newline = head.rfind("\n")
            whole = newline < 0 or head[newline + 1 :].strip(" \t\r\f\v")
            known = len(head) if whole else newline
            if known > max_bytes and _PARAGRAPH_BREAK.search(head) is None:
                yield head[:known]
                return
    yield from split_paragraphs(buffer)


# --- sources --------------------------------------------------------------------------------------


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files(root: Path | None = None) -> list[Path]:
    root = root or stdlib_root()

    def skip(rel: Path) -> bool:
        parts = rel.parts
        return (
            len(parts) == 1 and (parts[0] in STDLIB_EXCLUDED_TOP or parts[0].startswith("config-"))
        ) or parts[-1] in STDLIB_EXCLUDED_ANYWHERE

    return [p for p in _walk_sorted(root, skip) if p.suffix == ".py"]


class StdlibSource(Source):
    """The embedded default: this Python's standard library, no download needed."""

    kind = "stdlib"

    def __init__(self, root: Path | None = None):
        self.root = root or stdlib_root()
        self.files = stdlib_files(self.root)
        self.description = (
            f"Python {platform.python_version()} standard library *.py ({len(self.files)} files "
            f"under {self.root}, tests, idlelib and site-packages left out)"
        )

    def identity(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "python": platform.python_version(),
            "root": str(self.root),
            "files": _files_signature(self.root, self.files),
        }

    def documents(self) -> Iterator[Document]:
        for f in self.files:
            raw = f.read_bytes()
            encoding, _ = tokenize.detect_encoding(io.BytesIO(raw).readline)
            try:
                text = raw.decode(encoding)
            except UnicodeDecodeError:
                raise CooldownError(f"stdlib file {f} does not decode as {encoding}") from None
            yield Document(f.relative_to(self.root).as_posix(), text=text)

    def count(self) -> int:
        return len(self.files)


class FolderSource(Source):
    kind = "folder"

    def __init__(self, root: Path, text_field: str, max_bytes: int | None = None):
        self.root, self.text_field, self.max_bytes = root, text_field, max_bytes
        self.files = _walk_sorted(root, lambda rel: rel.name.startswith("."))
        self.files = [f for f in self.files if not f.name.startswith(".")]
        if not self.files:
            raise CooldownError(f"source folder {root} holds no files")
        bins = [f for f in self.files if f.suffix == ".bin"]
        if bins:
            raise CooldownError(
                f"source folder {root} holds a token file {bins[0].name}; give the .bin file itself "
                "as the source"
            )
        self.description = f"folder {root} ({len(self.files)} files)"

    def identity(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "path": str(self.root),
            "text_field": self.text_field,
            "files": _files_signature(self.root, self.files),
        }

    def documents(self) -> Iterator[Document]:
        for f in self.files:
            rel = f.relative_to(self.root).as_posix()
            if f.suffix == ".jsonl":
                yield from _jsonl_documents(f, self.text_field, prefix=f"{rel}:")
            elif f.suffix == ".parquet":
                yield from _parquet_documents(f, self.text_field, prefix=f"{rel}:")
            elif self.max_bytes is not None and f.stat().st_size > self.max_bytes:
                # Larger than the whole corpus may be: it ends the corpus (limit_documents), so
                # only enough of it is read to say so.
                with f.open("rb") as fh:
                    head = fh.read(self.max_bytes + 1).decode("utf-8", errors="replace")
                yield Document(rel, text=head)
            else:
                yield Document(rel, text=_read_utf8(f))

    def count(self) -> int | None:
        structured = any(f.suffix in (".jsonl", ".parquet") for f in self.files)
        return None if structured else len(self.files)


class FileSource(Source):
    """One local file: JSONL, Parquet, or text (one document per paragraph). `max_bytes` bounds
    what is read of a text file (see `_text_chunks`)."""

    def __init__(self, path: Path, text_field: str, max_bytes: int | None = None):
        self.path, self.text_field, self.max_bytes = path, text_field, max_bytes
        self.kind = {".jsonl": "jsonl", ".parquet": "parquet"}.get(path.suffix, "text")
        what = {"text": "text file (one document per paragraph)"}.get(
            self.kind, f"{self.kind} file"
        )
        self.description = f"{what} {path}"

    def identity(self) -> dict[str, Any]:
        ident = {
            "kind": self.kind,
            "path": str(self.path),
            "files": _files_signature(self.path.parent, [self.path]),
        }
        if self.kind != "text":
            ident["text_field"] = self.text_field
        return ident

    def documents(self) -> Iterator[Document]:
        if self.kind == "jsonl":
            yield from _jsonl_documents(self.path, self.text_field, prefix="")
        elif self.kind == "parquet":
            yield from _parquet_documents(self.path, self.text_field, prefix="")
        else:
            for i, para in enumerate(_stream_paragraphs(self.path, self.max_bytes)):
                yield Document(str(i), text=para)


class TokenFileSource(Source):
    """A nanoGPT `.bin` file: uint16 ids, documents separated by `eod_id`."""

    kind = "nanogpt-bin"
    tokenized = True
    _CHUNK = 1 << 24  # tokens scanned per step while looking for document ends

    def __init__(self, path: Path, eod_id: int):
        size = path.stat().st_size
        if size % TOKEN_FILE_DTYPE.itemsize:
            raise CooldownError(
                f"token file {path} has {size} bytes, not a whole number of uint16 token ids"
            )
        self.path, self.eod_id = path, eod_id
        self.n_tokens = size // TOKEN_FILE_DTYPE.itemsize
        self.description = (
            f"nanoGPT token file {path} ({self.n_tokens:,} uint16 tokens, documents split at id "
            f"{eod_id})"
        )

    def identity(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "path": str(self.path),
            "eod_id": self.eod_id,
            "files": _files_signature(self.path.parent, [self.path]),
        }

    def documents(self) -> Iterator[Document]:
        if self.n_tokens == 0:
            return
        ids = np.memmap(self.path, dtype=TOKEN_FILE_DTYPE, mode="r")
        start, index = 0, 0
        for off in range(0, self.n_tokens, self._CHUNK):
            for pos in np.flatnonzero(ids[off : off + self._CHUNK] == self.eod_id) + off:
                yield Document(str(index), tokens=ids[start:pos])
                start, index = int(pos) + 1, index + 1
        if start < self.n_tokens:
            yield Document(str(index), tokens=ids[start:])


def hf_documents(dataset: Any, text_field: str, where: str) -> Iterator[Document]:
    """Documents of a `datasets.Dataset` or `IterableDataset` (saved folder or hub stream alike)."""
    columns = getattr(dataset, "column_names", None)
    if columns is not None:
        if text_field not in columns:
            raise CooldownError(
                f"source {where} has no field {text_field!r} (fields: {sorted(columns)}); "
                "set data.text_field"
            )
        dataset = dataset.select_columns([text_field])
    row = 0
    for batch in dataset.iter(batch_size=_HF_BATCH_ROWS):
        if text_field not in batch:
            raise CooldownError(
                f"source {where} row {row} has no field {text_field!r} (fields: {sorted(batch)}); "
                "set data.text_field"
            )
        for value in batch[text_field]:
            yield Document(str(row), text=_as_text(value, f"source {where} row {row}"))
            row += 1


def _import_datasets(where: str):
    try:
        import datasets
    except ImportError:
        raise CooldownError(
            f"source {where} needs the Hugging Face `datasets` package: pip install 'cooldown[hf]'"
        ) from None
    return datasets


class HFDiskSource(Source):
    """A dataset folder written by `datasets.Dataset.save_to_disk` (or a DatasetDict's)."""

    kind = "hf-disk"

    def __init__(self, path: Path, split: str, text_field: str):
        self.path, self.split, self.text_field = path, split, text_field
        self.where = f"hf:{path}"
        self.files = _walk_sorted(path, lambda rel: False)
        self.description = f"Hugging Face dataset saved at {path} (split {split})"

    def _dataset(self):
        datasets = _import_datasets(self.where)
        try:
            ds = datasets.load_from_disk(str(self.path))
        except (FileNotFoundError, ValueError) as e:
            raise CooldownError(f"source {self.where} is not a saved dataset folder: {e}") from None
        if isinstance(ds, datasets.DatasetDict):
            if self.split not in ds:
                raise CooldownError(
                    f"source {self.where} has no split {self.split!r} (splits: {sorted(ds)}); "
                    "set data.hf_split"
                )
            ds = ds[self.split]
        return ds

    def identity(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "path": str(self.path),
            "split": self.split,
            "text_field": self.text_field,
            "files": _files_signature(self.path, self.files),
        }

    def documents(self) -> Iterator[Document]:
        yield from hf_documents(self._dataset(), self.text_field, self.where)

    def count(self) -> int | None:
        return len(self._dataset())


class HFHubSource(Source):
    """A hub dataset, streamed: nothing is downloaded beyond the documents read."""

    kind = "hf-hub"

    def __init__(self, name: str, config: str | None, split: str, text_field: str):
        self.name, self.config, self.split, self.text_field = name, config, split, text_field
        self.where = f"hf:{name}"
        cfg = f", config {config}" if config else ""
        self.description = f"Hugging Face dataset {name} (split {split}{cfg}, streamed)"

    def identity(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "config": self.config,
            "split": self.split,
            "text_field": self.text_field,
        }

    def documents(self) -> Iterator[Document]:
        datasets = _import_datasets(self.where)
        try:
            ds = datasets.load_dataset(self.name, self.config, split=self.split, streaming=True)
        except Exception as e:  # network, unknown name, bad config: all one line for the user
            raise CooldownError(
                f"source {self.where}: could not open the dataset ({type(e).__name__}: {e})"
            ) from None
        yield from hf_documents(ds, self.text_field, self.where)


def open_source(
    spec: str,
    text_field: str = "text",
    hf_split: str = "train",
    hf_config: str | None = None,
    eod_id: int | None = None,
    max_bytes: int | None = None,
) -> Source:
    """The source named by a `DataConfig.source` string. `eod_id` is needed for token files only;
    `max_bytes` (the corpus's byte limit) bounds what is read of a single text file."""
    if spec == "stdlib":
        return StdlibSource()
    if spec.startswith("hf:"):
        name = spec[3:]
        local = Path(name).expanduser()
        if local.is_dir():
            if hf_config is not None:
                raise CooldownError(
                    f"data.hf_config applies to hub datasets only; {local} is a saved dataset folder"
                )
            return HFDiskSource(local.resolve(), hf_split, text_field)
        return HFHubSource(name, hf_config, hf_split, text_field)
    path = Path(spec).expanduser()
    if not path.exists():
        raise CooldownError(
            f"data.source: {spec!r} is neither 'stdlib', 'hf:NAME' nor an existing file or folder"
        )
    path = path.resolve()
    if path.is_dir():
        return FolderSource(path, text_field, max_bytes)
    if not path.is_file() and max_bytes is None:
        # A device or a pipe (/dev/zero, /dev/stdin) may have no end: only a byte limit makes
        # reading it finish.
        raise CooldownError(
            f"data.source: {spec!r} is not a regular file or folder (a device or a pipe): give "
            "data.max_bytes to read only that many bytes of it, or save the text to a file"
        )
    if not path.is_file() and path.suffix in (".bin", ".jsonl", ".parquet"):
        raise CooldownError(f"data.source: {spec!r} is not a regular file")
    if path.suffix == ".bin":
        if eod_id is None:
            raise CooldownError(f"token file {path} needs a tokenizer that defines the eod id")
        return TokenFileSource(path, eod_id)
    return FileSource(path, text_field, max_bytes)


def limit_documents(
    docs: Iterable[Document], max_documents: int | None, max_bytes: int | None
) -> Iterator[Document]:
    """The longest prefix of `docs` with at most `max_documents` documents and `max_bytes` bytes."""
    n_bytes = 0
    for n_docs, doc in enumerate(docs):
        if max_documents is not None and n_docs >= max_documents:
            return
        if max_bytes is not None:
            size = doc.tokens.nbytes if doc.tokens is not None else len(doc.raw)
            if n_bytes + size > max_bytes:
                return
            n_bytes += size
        yield doc
