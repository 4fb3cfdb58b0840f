"""`cooldown fit` on a table far larger than one row per run: refused in one line, at once, with
bounded memory (a 942k-row table ran past 90 s at 11.4 GB)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from cooldown.errors import CooldownError
from cooldown.scaling import run_fit
from cooldown.scaling.points import MAX_POINTS, MAX_TABLE_BYTES


def test_more_points_than_a_fit_takes_is_one_line(tmp_path):
    rng = np.random.default_rng(0)
    n = MAX_POINTS + 1
    params, tokens = 10 ** rng.uniform(6, 9, n), 10 ** rng.uniform(8, 11, n)
    loss = 1.7 + 400 / params**0.34 + 410 / tokens**0.28
    path = tmp_path / "results.csv"
    rows = "\n".join(
        f"{a:.6g},{b:.6g},{c:.6g}" for a, b, c in zip(params, tokens, loss, strict=True)
    )
    path.write_text("params,tokens,final_val_loss\n" + rows + "\n")
    started = time.perf_counter()
    with pytest.raises(CooldownError) as info:
        run_fit(path, n_bootstrap=0)
    assert time.perf_counter() - started < 30  # refused before fitting (the fit: hours)
    assert str(info.value).startswith(
        f"{path}: {n:,} rows to fit, more than the {MAX_POINTS:,} points `cooldown fit` takes"
    )


def test_a_table_past_the_size_limit_is_refused_before_reading(tmp_path):
    path = tmp_path / "huge.csv"
    with path.open("wb") as f:
        f.write(b"params,tokens,final_val_loss\n")
        f.truncate(MAX_TABLE_BYTES + 1)  # sparse: no time or disk spent
    with pytest.raises(CooldownError) as info:
        run_fit(path)
    assert str(info.value).startswith(
        f"{path}: {MAX_TABLE_BYTES + 1:,} bytes, more than the 16 MB results table"
    )
