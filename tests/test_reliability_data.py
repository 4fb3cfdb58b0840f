"""Data cannot change under a run: paths are absolute from the start, a resumed run checks the
data's fingerprint against its manifest, and a byte limit bounds what is read of a file."""

from __future__ import annotations

import json
import sysconfig
from pathlib import Path

import pytest

from _byte_runs import byte_run_overrides
from cooldown.config import load_run_config
from cooldown.configio import validate
from cooldown.data import BatchSampler, DataConfig, prepare
from cooldown.data.sources import limit_documents, open_source
from cooldown.errors import CooldownError
from cooldown.train import train


def _corpus(path: Path, modules: list[str]) -> Path:
    """A text corpus (one document per paragraph) from a few standard-library modules."""
    lib = Path(sysconfig.get_paths()["stdlib"])
    path.write_text("\n\n".join((lib / m).read_text(encoding="utf-8") for m in modules))
    return path


def test_data_paths_are_absolute_from_the_config_load(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_run_config(
        None, ["data.source=corpus.txt", "data.tokenizer=tok/tokenizer.json", "data.cache_dir=c"]
    )
    assert cfg.data.source == str(tmp_path / "corpus.txt")
    assert cfg.data.tokenizer == str(tmp_path / "tok" / "tokenizer.json")
    assert cfg.data.cache_dir == str(tmp_path / "c")
    assert load_run_config(None, []).data.source == "stdlib"


def _crash_after(monkeypatch, n_batches: int) -> None:
    original = BatchSampler.next_batch
    calls = {"n": 0}

    def next_batch(self):
        calls["n"] += 1
        if calls["n"] > n_batches:
            raise RuntimeError("crash")
        return original(self)

    monkeypatch.setattr(BatchSampler, "next_batch", next_batch)


def test_resuming_on_replaced_data_is_refused_naming_both_fingerprints(tmp_path, monkeypatch):
    """It trained the remaining steps on the other data and overwrote data_fingerprint."""
    source = _corpus(tmp_path / "corpus.txt", ["textwrap.py", "shlex.py"])
    cfg = load_run_config(None, byte_run_overrides(source, tmp_path / "cache"))
    run_dir = tmp_path / "run"
    with monkeypatch.context() as m:
        _crash_after(m, 5)
        with pytest.raises(RuntimeError, match="crash"):
            train(cfg, run_dir)
    before = json.loads((run_dir / "manifest.json").read_text())["data_fingerprint"]

    _corpus(source, ["glob.py", "fnmatch.py", "shlex.py"])  # another file at the same path
    with pytest.raises(CooldownError) as info:
        train(cfg, run_dir)
    message = str(info.value)
    assert f"data fingerprint {before}" in message and "--allow-data-change" in message
    after = message.split("now gives ")[1].split()[0]
    assert after != before
    assert json.loads((run_dir / "manifest.json").read_text())["data_fingerprint"] == before

    result = train(cfg, run_dir, allow_data_change=True)
    assert (result.steps, result.resumed_from_step) == (8, 4)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["data_fingerprint"] == after
    assert manifest["data_changes"] == [
        {"at_step": 4, "changes": [{"data": "data", "from": before, "to": after}]}
    ]


def test_dev_zero_is_read_only_up_to_max_bytes(tmp_path):
    """data.source=/dev/zero read the endless file whole: a MemoryError."""
    cfg = validate(
        DataConfig,
        {
            "source": "/dev/zero",
            "tokenizer": "bytes",
            "max_bytes": 100_000,
            "cache_dir": str(tmp_path),
        },
    )
    with pytest.raises(CooldownError, match="/dev/zero gave no non-empty documents"):
        prepare(cfg, progress=False)
    unbounded = validate(DataConfig, {"source": "/dev/zero", "tokenizer": "bytes"})
    with pytest.raises(CooldownError, match=r"not a regular file or folder.*data\.max_bytes"):
        prepare(unbounded, progress=False)


def _bytes_read() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux /proc/self/io")
def test_max_bytes_bounds_what_is_read_of_a_text_file(tmp_path):
    big = tmp_path / "big.txt"
    paragraph = "word " * 200 + "\n\n"
    with big.open("w") as f:
        for _ in range(20_000):  # 20 MB
            f.write(paragraph)
    before = _bytes_read()
    docs = list(limit_documents(open_source(str(big), max_bytes=10_000).documents(), None, 10_000))
    read = _bytes_read() - before
    assert len(docs) == 10 and docs[0].text == paragraph.rstrip("\n")
    assert read < 3 * 2**20, f"read {read:,} bytes of a 20 MB file for 10 kB of text"
