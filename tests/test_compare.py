"""Paired comparisons (`cooldown.compare`, `cooldown compare`): the bootstrap's coverage on
synthetic losses with a known difference, exactness on a run compared with itself, per-document
losses that add up to the trainer's full validation pass, their cache, and one line for bad input."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from cooldown.cli import main
from cooldown.compare import DocLosses, document_losses, paired_difference, verdict
from cooldown.compare import doc_losses as doc_losses_module
from cooldown.errors import CooldownError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
STEPS = 30


# --- synthetic losses: the bootstrap itself -------------------------------------------------------


def _synthetic(rng, n_docs, delta, n_seeds=1, seed_sd=0.0):
    """Per-document losses of a and b whose expected per-token difference is exactly `delta`:
    documents differ in length, difficulty and in how much b gains on them; seeds shift b."""
    tokens = rng.integers(20, 2000, size=n_docs)
    difficulty = rng.normal(3.5, 0.5, size=n_docs)
    doc_gain = rng.normal(0.0, 0.05, size=n_docs)
    a, b = [], []
    for s in range(n_seeds):
        loss_a = difficulty + rng.normal(0.0, 0.02, size=n_docs)
        loss_b = loss_a + delta + doc_gain + rng.normal(0.0, seed_sd)
        a.append(DocLosses(f"a{s}", "raw", 1, "data", loss_a * tokens, tokens))
        b.append(DocLosses(f"b{s}", "raw", 1, "data", loss_b * tokens, tokens))
    return (a[0], b[0]) if n_seeds == 1 else (a, b)


def test_interval_covers_a_known_difference_at_about_the_nominal_rate():
    rng = np.random.default_rng(0)
    trials, delta = 300, 0.01
    hits = 0
    for i in range(trials):
        a, b = _synthetic(rng, 300, delta)
        d = paired_difference(a, b, n_boot=500, seed=i)
        hits += d.low <= delta <= d.high
        assert d.low <= d.diff <= d.high
    # 95% nominal; 300 trials put 0.95's binomial 99% band at about 0.918-0.982.
    assert 0.91 <= hits / trials <= 0.99
    assert d.noise == "documents" and d.n_seeds == 1 and d.seed_halfwidth is None
    assert d.n_docs == 300 and d.n_boot == 500 and d.halfwidth == pytest.approx(d.doc_halfwidth)


def test_seed_pairs_widen_the_interval_and_are_named_when_they_dominate():
    rng = np.random.default_rng(1)
    a, b = _synthetic(rng, 200, 0.01, n_seeds=4, seed_sd=0.05)
    d = paired_difference(a, b, n_boot=1000)
    assert d.noise == "documents+seeds" and d.n_seeds == 4 and d.dominant == "seeds"
    assert d.seed_halfwidth > d.doc_halfwidth
    assert d.halfwidth > d.doc_halfwidth  # the interval covers both sources
    pooled = sum(x.nats.sum() for x in b) / sum(x.tokens.sum() for x in b)
    assert d.mean_b == pytest.approx(pooled) and d.a == "a0" and d.b == "b0"
    # The same seed four times: no seed noise, the documents dominate.
    same = paired_difference([a[0]] * 4, [b[0]] * 4, n_boot=1000)
    assert same.dominant == "documents" and same.seed_halfwidth == pytest.approx(0.0, abs=1e-12)


def test_a_set_of_losses_compared_with_itself_is_exactly_zero():
    rng = np.random.default_rng(2)
    a, _ = _synthetic(rng, 50, 0.0)
    d = paired_difference(a, a)
    assert (d.diff, d.low, d.high, d.doc_halfwidth) == (0.0, 0.0, 0.0, 0.0)
    seeds, _ = _synthetic(rng, 50, 0.0, n_seeds=3)
    d = paired_difference(seeds, seeds)
    assert (d.diff, d.low, d.high, d.seed_halfwidth) == (0.0, 0.0, 0.0, 0.0)
    assert verdict(d, +1) == verdict(d, -1) == "inconclusive"


def test_verdict_reads_the_interval_in_the_expected_direction():
    rng = np.random.default_rng(3)
    a, b = _synthetic(rng, 300, -0.05)  # b clearly lower
    d = paired_difference(a, b)
    assert d.high < 0
    assert verdict(d, -1) == "held" and verdict(d, +1) == "did not hold"
    assert verdict(replace(d, low=-0.01, high=0.02), -1) == "inconclusive"
    with pytest.raises(CooldownError, match="expected must be"):
        verdict(d, 0)


def test_paired_difference_refuses_unpaired_inputs():
    rng = np.random.default_rng(4)
    a, b = _synthetic(rng, 20, 0.0, n_seeds=2)
    with pytest.raises(CooldownError, match="a has 2 seed runs and b has 1"):
        paired_difference(a, b[:1])
    other = replace(b[0], data_fingerprint="other")
    with pytest.raises(CooldownError, match="different data or tokenizers"):
        paired_difference(a[0], other)
    shorter = replace(b[0], nats=b[0].nats[:-1], tokens=b[0].tokens[:-1])
    with pytest.raises(CooldownError, match="different validation tokens"):
        paired_difference(a[0], shorter)


def test_the_numpy_part_imports_without_torch():
    code = (
        "import sys, cooldown.compare.paired, cooldown.compare; "
        "print('torch' in sys.modules, 'matplotlib' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# --- real runs ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_overrides):
    """Two schedules (LR 3e-3 and 1e-2) at two seeds each, all on the shared tiny data, and a run
    on other data (the byte tokenizer). Read-only: copy a run before changing it."""
    from cooldown.config import load_run_config
    from cooldown.train import train

    root = tmp_path_factory.mktemp("compare-runs")
    common = [
        f"schedule.total_steps={STEPS}",
        "schedule.warmup_steps=3",
        f"train.checkpoint_interval={STEPS}",
        f"train.eval_interval={STEPS}",
    ]
    plans = {
        "a": ["optim.lr=3e-3"],
        "b": ["optim.lr=1e-2"],
        "a2": ["optim.lr=3e-3", "train.seed=1"],
        "b2": ["optim.lr=1e-2", "train.seed=1"],
    }
    for name, extra in plans.items():
        train(load_run_config(None, [*tiny_overrides, *common, *extra]), root / name)
    bytes_data = [o for o in tiny_overrides if not o.startswith("data.vocab_size")]
    bytes_data += ["data.tokenizer=bytes", "data.max_bytes=300000"]
    short = ["schedule.total_steps=5", "schedule.warmup_steps=1", "train.checkpoint_interval=5"]
    train(load_run_config(None, [*bytes_data, *short]), root / "bytes")
    return root


def _manifest(run_dir):
    return json.loads((run_dir / "manifest.json").read_text())


def test_document_losses_add_up_to_the_full_validation_pass(runs):
    from cooldown.config import load_run_config
    from cooldown.data import ensure_prepared

    d = document_losses(runs / "a", batch_size=7)  # a batch size the trainer never used
    assert d.step == STEPS and d.weights == "raw" and d.run == str(runs / "a")
    assert d.data_fingerprint == _manifest(runs / "a")["data_fingerprint"]
    assert d.mean == pytest.approx(_manifest(runs / "a")["final_val_loss"], abs=1e-5)
    cfg = load_run_config(runs / "a" / "config.toml")
    data = ensure_prepared(cfg.data, progress=False)
    seq_len = cfg.train.seq_len
    assert d.tokens.sum() == (len(data.val) - 1) // seq_len * seq_len  # every window's tokens
    assert d.nats.dtype == np.float64 and d.tokens.dtype == np.int64
    assert 2 <= d.tokens.size <= data.header["n_documents"]["val"] and (d.tokens > 0).all()
    # Document i spans positions (end of i-1, its own eod]; position 0 is never predicted and
    # the tail after the last whole window is not read.
    ends = np.flatnonzero(np.asarray(data.val) == data.eod_id)
    starts = np.concatenate([[0], ends[:-1]])
    predicted = (len(data.val) - 1) // seq_len * seq_len
    expected = np.clip(np.minimum(ends, predicted) - starts, 0, None)
    assert np.array_equal(d.tokens, expected[expected > 0])


def test_document_losses_are_cached_and_recomputed_when_the_checkpoint_changes(
    runs, tmp_path, monkeypatch
):
    from cooldown.checkpoint import load_checkpoint, save_checkpoint

    run = tmp_path / "a"
    shutil.copytree(runs / "a", run)
    cache = run / "eval" / f"doc-losses-raw-step{STEPS}.npz"
    cache.unlink(missing_ok=True)
    first = document_losses(run)
    assert cache.is_file()

    def no_evaluation(*args, **kwargs):
        raise AssertionError("evaluated again although the cache holds the result")

    with monkeypatch.context() as m:
        m.setattr(doc_losses_module, "_evaluate_documents", no_evaluation)
        again = document_losses(run)
    assert np.array_equal(again.nats, first.nats) and np.array_equal(again.tokens, first.tokens)

    # New weights under the same step: the checkpoint's checksums change, so does the result.
    ckpt = load_checkpoint(run / "checkpoints" / f"step_{STEPS:07d}")
    scaled = {k: v * 0.9 if v.ndim == 2 else v for k, v in ckpt.weights.items()}
    save_checkpoint(run, STEPS, scaled, ckpt.state)
    changed = document_losses(run)
    assert not np.array_equal(changed.nats, first.nats)

    cache.write_bytes(b"not an npz file")  # a damaged cache is computed again, not trusted
    assert np.array_equal(document_losses(run).nats, changed.nats)


def test_a_run_against_itself_and_seed_pairs(runs):
    a, a2 = document_losses(runs / "a"), document_losses(runs / "a2")
    d = paired_difference(a, a)
    assert (d.diff, d.low, d.high) == (0.0, 0.0, 0.0) and d.mean_a == a.mean
    b, b2 = document_losses(runs / "b"), document_losses(runs / "b2")
    single = paired_difference(a, b)
    assert single.diff == pytest.approx(b.mean - a.mean, abs=1e-12)
    pooled = paired_difference([a, a2], [b, b2])
    assert pooled.noise == "documents+seeds" and pooled.n_seeds == 2
    assert pooled.diff == pytest.approx((b.mean + b2.mean - a.mean - a2.mean) / 2, abs=1e-12)


def test_compare_command_writes_the_table_and_the_figure(runs, averaged_run, tmp_path, capsys):
    out = tmp_path / "cmp"
    main(
        [
            "compare",
            str(runs / "a"),
            str(runs / "b"),
            *("--seeds", f"{runs / 'a2'},{runs / 'b2'}"),
            *("--out", str(out), "--bootstrap", "300"),
        ]
    )
    text = whole_split = capsys.readouterr().out
    assert "paired bootstrap over documents and 2 seed pairs" in text
    assert "nats/token" in text and "\nb " in text
    with (out / "compare.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and rows[0]["baseline"] == "a" and rows[0]["run"] == "b"
    assert rows[0]["noise"] == "documents+seeds" and rows[0]["n_seeds"] == "2"
    assert float(rows[0]["low"]) <= float(rows[0]["diff"]) <= float(rows[0]["high"])
    assert (out / "compare.png").read_bytes().startswith(PNG_MAGIC)

    # A stored average against the raw weights of the same run; the default folder is in the
    # baseline run (copied here: the fixture is shared).
    averaged = tmp_path / "avg"
    shutil.copytree(averaged_run.dir, averaged)
    main(["compare", str(averaged), f"{averaged}@swa", "--bootstrap", "200"])
    text = capsys.readouterr().out
    assert "avg@swa" in text and "documents (+-" in text
    assert (averaged / "comparisons" / "vs-avg-swa" / "compare.csv").is_file()

    # --doc-tokens: the first windows of every document only, fewer tokens than the whole split.
    main([*("compare", str(runs / "a"), str(runs / "b")), "--doc-tokens", "64", "--out", str(out)])
    capped = capsys.readouterr().out
    whole = int(re.search(r"\(([\d,]+) tokens per run\)", whole_split).group(1).replace(",", ""))
    first = int(re.search(r"\(([\d,]+) tokens per run\)", capped).group(1).replace(",", ""))
    assert first < whole


def _one_line_error(capsys, args) -> str:
    with pytest.raises(SystemExit) as info:
        main(["compare", *args])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_bad_input_is_one_line_and_exit_2(runs, tmp_path, capsys):
    a, b, a2, b2 = (str(runs / n) for n in ("a", "b", "a2", "b2"))
    err = _one_line_error(capsys, [a, str(runs / "bytes")])
    assert "prepared on different data or tokenizers" in err and "tokenizer bytes" in err
    no_ckpt = tmp_path / "no-ckpt"
    shutil.copytree(runs / "a", no_ckpt)
    shutil.rmtree(no_ckpt / "checkpoints")
    err = _one_line_error(capsys, [a, str(no_ckpt)])
    assert f"no checkpoint at step {STEPS}" in err and "no complete checkpoints" in err
    err = _one_line_error(capsys, [a, b, "--weights", "swa"])
    assert "holds no 'swa' weights; it has: raw" in err
    err = _one_line_error(capsys, [a, b, "--seeds", a2])  # one seed run for two runs
    assert "names 1 run(s) where it needs one per compared run (2)" in err
    err = _one_line_error(capsys, [a, b, "--seeds", f"{a2},{b2}", f"{a2},{b2}"])
    assert "is given twice" in err
    err = _one_line_error(capsys, [a, b, "--seeds", f"{b},{a}"])  # two runs of one seed
    assert "both trained with train.seed" in err
    err = _one_line_error(capsys, [a, b, "--seeds", ","])
    assert "names no runs" in err
    assert "at least two runs (got 1)" in _one_line_error(capsys, [a])
    assert "is not one of the compared runs" in _one_line_error(capsys, [a, b, "--baseline", a2])
    assert "does not exist" in _one_line_error(capsys, [a, str(tmp_path / "nowhere")])


@pytest.mark.parametrize("seed_sd", [0.003, 0.02])
def test_three_seed_pairs_cover_at_the_nominal_rate(seed_sd):
    """With 3 seeds the interval must stay honest (a bootstrap of seed pairs covered ~75%)."""
    rng = np.random.default_rng(5)
    trials, delta, hits = 200, 0.01, 0
    for i in range(trials):
        a, b = _synthetic(rng, 100, delta, n_seeds=3, seed_sd=seed_sd)
        d = paired_difference(a, b, n_boot=200, seed=i)
        hits += d.low <= delta <= d.high
    # 95% nominal; 200 trials: the binomial 99% band of 0.95 reaches down to about 0.91.
    assert hits / trials >= 0.91


def test_document_losses_can_score_the_first_windows_of_every_document(runs):
    from cooldown.config import load_run_config
    from cooldown.data import ensure_prepared

    cfg = load_run_config(runs / "a" / "config.toml")
    seq_len = cfg.train.seq_len
    data = ensure_prepared(cfg.data, progress=False)
    ends = np.flatnonzero(np.asarray(data.val) == data.eod_id)
    lengths = np.diff(np.concatenate([[0], ends]))  # predicted positions of each document
    d = document_losses(runs / "a", max_doc_tokens=2 * seq_len)
    # Every document long enough for one window contributes its first one or two whole windows.
    expected = np.minimum(lengths // seq_len, 2) * seq_len
    assert np.array_equal(d.tokens, expected[expected > 0])
    full = document_losses(runs / "a")
    assert d.tokens.sum() < full.tokens.sum() and abs(d.mean - full.mean) < 0.5
    # A cache file of its own: neither result evicts the other.
    capped = runs / "a" / "eval" / f"doc-losses-raw-step{STEPS}-first{2 * seq_len}.npz"
    assert capped.is_file() and (runs / "a" / "eval" / f"doc-losses-raw-step{STEPS}.npz").is_file()


def test_a_run_with_final_doc_eval_tokens_leaves_its_per_document_losses_cached(
    tmp_path, tiny_overrides, monkeypatch
):
    """`train.final_doc_eval_tokens = N`: the run computes its own paired evaluation (raw weights
    and every average) when it finishes; `document_losses` then only reads the cache."""
    from cooldown.config import load_run_config
    from cooldown.train import train

    cfg = load_run_config(
        None,
        [
            *tiny_overrides,
            "schedule.total_steps=6",
            "schedule.warmup_steps=1",
            "train.checkpoint_interval=6",
            "train.final_doc_eval_tokens=64",
            "averaging.swa_window=3",
        ],
    )
    train(cfg, tmp_path / "run")
    for weights in ("raw", "swa"):
        assert doc_losses_module.cache_path(tmp_path / "run", weights, 6, 64).is_file()

    def no_evaluation(*args, **kwargs):
        raise AssertionError("evaluated again instead of reading the cache")

    monkeypatch.setattr(doc_losses_module, "_evaluate_documents", no_evaluation)
    losses = document_losses(tmp_path / "run", "swa", max_doc_tokens=64)
    assert losses.tokens.sum() > 0 and np.isfinite(losses.mean)
