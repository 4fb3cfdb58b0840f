"""`cooldown data prepare` at scale: tokens/s on a corpus of a few hundred MB, and what 6B tokens take.

    python benchmarks/prepare_speed.py                      # 200 MB corpus under /tmp
    python benchmarks/prepare_speed.py --mb 50 --work /tmp/prep-bench

The corpus is the embedded one (the Python standard library) written out again and again with
variations until it reaches `--mb` MB, as JSONL files in `--work` (never in the repository): copy i
renames `self` to `self_i` and numbers every document, so no two documents are equal. A BPE
tokenizer is trained once on the first 20 MB (its time reported on its own); the measured
preparation then encodes the whole corpus with that tokenizer.json through the same path as
`cooldown data prepare` (read, hash, split, encode on every core, write). Writes a JSON file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from cooldown.data.config import DataConfig
from cooldown.data.prepare import prepare
from cooldown.data.shards import HEADER_NAME, TOKENIZER_NAME
from cooldown.data.sources import open_source

TARGET_TOKENS = 6e9  # SlimPajama-6B, the paper's corpus


def write_corpus(folder: Path, megabytes: int) -> int:
    """JSONL files of varied stdlib documents, ~20 MB each, until `megabytes` MB; bytes written."""
    folder.mkdir(parents=True, exist_ok=True)
    documents = [doc.text for doc in open_source("stdlib").documents()]
    written, copy, part = 0, 0, None
    while written < megabytes * 1e6:
        for n, text in enumerate(documents):
            if part is None or part.tell() > 20e6:
                if part is not None:
                    part.close()
                part = (folder / f"part-{copy:04d}-{n:05d}.jsonl").open("w", encoding="utf-8")
            varied = f"# copy {copy} document {n}\n" + text.replace("self", f"self_{copy}")
            line = json.dumps({"text": varied}) + "\n"
            part.write(line)
            written += len(line.encode())
            if written >= megabytes * 1e6:
                break
        copy += 1
    part.close()
    return written


def timed_prepare(cfg: DataConfig, out: Path) -> tuple[float, dict]:
    t0 = time.perf_counter()
    folder = prepare(cfg, out_dir=out, progress=False)
    seconds = time.perf_counter() - t0
    return seconds, json.loads((Path(folder) / HEADER_NAME).read_text()) | {"folder": str(folder)}


def _tokens(header: dict) -> int:
    return sum(header["n_tokens"].values())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mb", type=int, default=200, help="corpus size in MB")
    p.add_argument("--work", default="/tmp/cooldown-prepare-bench")
    p.add_argument("--out", default=str(Path(__file__).with_name("prepare_speed.json")))
    args = p.parse_args()
    work = Path(args.work)
    for done in ("bpe", "prepared"):  # measured afresh every time
        shutil.rmtree(work / done, ignore_errors=True)
    corpus = work / f"corpus-{args.mb}mb"
    if not corpus.exists():  # written aside, then renamed: a killed run leaves no short corpus
        partial = work / f"partial-{os.getpid()}"
        write_corpus(partial, args.mb)
        partial.rename(corpus)
    size = sum(f.stat().st_size for f in corpus.iterdir())
    bpe_s, bpe = timed_prepare(
        DataConfig(source=str(corpus), max_bytes=20_000_000, val_fraction=0.001), work / "bpe"
    )
    tokenizer = Path(bpe["folder"]) / TOKENIZER_NAME
    seconds, header = timed_prepare(
        DataConfig(source=str(corpus), tokenizer=str(tokenizer), val_fraction=0.001),
        work / "prepared",
    )
    tokens = _tokens(header)
    doc = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "corpus_bytes": size,
        "tokens": tokens,
        "bytes_per_token": size / tokens,
        "bpe_20mb_prepare_s": bpe_s,
        "prepare_s": seconds,
        "tokens_per_s": tokens / seconds,
        "mb_per_s": size / seconds / 1e6,
        "implied_hours_for_6b_tokens": TARGET_TOKENS / (tokens / seconds) / 3600,
    }
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
