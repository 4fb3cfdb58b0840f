"""The real nanochat (../shared/peers/nanochat) driven by the `nanochat` adapter: its data and
tokenizer made from the embedded corpus, one trunk, two cooldown branches at two budgets, one run
from scratch as nanochat's own sweep makes it, and a loss law fitted on the curves.

Nothing is installed by hand: nanochat's imports (wandb, rustbpe, tiktoken, pyarrow) come with the
project's test extra. nanochat torch.compile's its model and optimizer steps, minutes of compiling
on a CPU; the adapter's `compile = false` (TORCHDYNAMO_DISABLE=1) runs them eagerly, and the four
nanochat runs take about half a minute in all.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cooldown.adapters import RunRequest, adapter_from_config
from cooldown.data.sources import StdlibSource
from cooldown.predict import LossCurve, fit_law, predict_lrs

REPO = Path(__file__).resolve().parents[1]
NANOCHAT = REPO.parent / "shared" / "peers" / "nanochat"
pytestmark = pytest.mark.skipif(
    not (NANOCHAT / "scripts" / "base_train.py").is_file(),
    reason=f"the nanochat snapshot is not at {NANOCHAT} (see ../shared/peers/README.md)",
)

ARGS = [
    "--device-type=cpu",
    "--depth=2",
    "--head-dim=64",
    "--window-pattern=L",
    "--max-seq-len=128",
    "--device-batch-size=4",
    "--total-batch-size=512",
    "--eval-every=2",
    "--eval-tokens=2048",
    "--core-metric-every=-1",
    "--sample-every=-1",
    "--warmup-steps=2",
    "--weight-decay=0",
]
TRUNK, SAVE_EVERY, K = 30, 10, 5


def _write_shards(data_dir: Path, docs_per_shard: int = 640, shards: int = 3) -> None:
    """Parquet shards with a `text` column in small row groups (nanochat resumes by row group);
    the last shard in sort order is nanochat's validation split. The embedded corpus has a few
    hundred long documents: cut into 1000-character pieces, every shard gets its share (an empty
    validation shard would make nanochat's loader loop forever)."""
    data_dir.mkdir(parents=True)
    texts = []
    for doc in StdlibSource().documents():
        texts += [doc.text[i : i + 1000] for i in range(0, len(doc.text) - 200, 1000)]
        if len(texts) >= docs_per_shard * shards:
            break
    assert len(texts) >= docs_per_shard * shards, "the embedded corpus is too small"
    for i in range(shards):
        chunk = texts[i * docs_per_shard : (i + 1) * docs_per_shard]
        pq.write_table(
            pa.table({"text": chunk}), data_dir / f"shard_{i:05d}.parquet", row_group_size=64
        )


@pytest.fixture(scope="module")
def nanochat(tmp_path_factory, request):
    base = tmp_path_factory.mktemp("nanochat-base")
    _write_shards(base / "base_data_climbmix")
    env = {**os.environ, "NANOCHAT_BASE_DIR": str(base)}
    subprocess.run(
        [sys.executable, "-m", "scripts.tok_train", "--max-chars=1000000", "--vocab-size=2048"],
        cwd=NANOCHAT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    config = {
        "adapter": "nanochat",
        "nanochat_dir": str(NANOCHAT),
        "base_dir": str(base),
        "save_every": SAVE_EVERY,
        "compile": False,  # eager: no minutes of torch.compile on a CPU
        "args": ARGS,
    }
    return adapter_from_config(config), tmp_path_factory.mktemp("nanochat-runs")


def _rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "curve.csv") as f:
        return [{k: float(v) if v else None for k, v in r.items()} for r in csv.DictReader(f)]


def _curve(name, lrs, rows) -> LossCurve:
    vals = [(int(r["step"]), r["val_metric"]) for r in rows if r["val_metric"] and r["step"] >= 1]
    steps, losses = zip(*vals, strict=True)
    return LossCurve(
        name=name,
        lrs=np.array(lrs),
        steps=np.array(steps),
        losses=np.array(losses),
        loss_name="val_bpb",
    )


def test_trunk_branches_scratch_and_a_fit(nanochat):
    adapter, runs = nanochat
    trunk = adapter.run(runs / "trunk", RunRequest.trunk(TRUNK))
    assert trunk["counts"]["params"] > 1e6 and trunk["counts"]["tokens_per_step"] == 512
    branches = {
        s: adapter.run(runs / f"b{s}", RunRequest.branch(runs / "trunk", s, K)) for s in (10, 20)
    }
    scratch = adapter.run(runs / "scratch15", RunRequest.scratch(10 + K, K))
    trunk_rows = _rows(runs / "trunk")
    trunk_lrs = [r["lr"] for r in trunk_rows if r["lr"] is not None]
    assert len(trunk_lrs) == TRUNK
    for s, record in branches.items():
        ex = record["exactness"]
        assert "data_position" in ex["not_exact"] and "weight_decay" not in ex["not_exact"]
        rows = _rows(runs / f"b{s}")
        lrs = [r["lr"] for r in rows if r["lr"] is not None]
        # nanochat's own warmdown, read back from its stdout (two decimals): (K - i + 1) / K.
        assert lrs == [round((K - i) / K, 2) for i in range(K)]
        assert rows[-1]["step"] == s + K and rows[-1]["tokens"] == (s + K) * 512
    scratch_rows = _rows(runs / "scratch15")
    assert [r["lr"] for r in scratch_rows if r["lr"] is not None][10:] == lrs
    # A branch and the from-scratch run differ only in the data position after the hand-over.
    b10, s15 = branches[10]["final"]["val_metric"], scratch["final"]["val_metric"]
    assert abs(b10 - s15) / s15 < 0.05
    # Fit the Multi-Power Law on the trunk and the later branch, predict the earlier one.
    long = _curve("b20", trunk_lrs[:20] + lrs, [*trunk_rows[:20], *_rows(runs / "b20")])
    fit = fit_law([_curve("trunk", trunk_lrs, trunk_rows), long], "mpl", n_bootstrap=0)
    # The b10 branch's own LR sequence as nanochat logged it (its warmdown ends at 1/K, not 0).
    b10_lrs = trunk_lrs[:10] + [r["lr"] for r in _rows(runs / "b10") if r["lr"] is not None]
    predicted = predict_lrs(fit, b10_lrs).final_loss
    print(f"nanochat b10: measured {b10:.4f} bpb, predicted {predicted:.4f}; scratch {s15:.4f}")
    assert abs(predicted - b10) / b10 < 0.1
