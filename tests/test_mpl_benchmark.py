"""The MPL paper's benchmark (`cooldown predict-benchmark mpl`) on its vendored GPU loss curves.

Measured on this machine (MPL law, no bootstrap), mean relative error over the predicted runs'
whole curves:
  paper split (fit cosine_24000 + constant_24000 + wsdcon_9): 25M 0.138%, 100M 0.173%, 400M 0.225%
      (the MPL paper's own: 0.110%, 0.142%, 0.168%)
  wsd split (fit constant_24000 + wsd_20000_24000):           25M 0.124%, 100M 0.154%, 400M 0.259%
The thresholds below are 1.5x those: the fit is deterministic, so a regression of the law, the fit
or the data reading shows as a jump, while BLAS/scipy version noise (far below 1%) does not fail.
"""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from cooldown.cli import main
from cooldown.errors import CooldownError
from cooldown.predict.mpl_benchmark import (
    MPL_PAPER_ERRORS,
    MPL_RUNS,
    MPL_SIZES,
    MPL_SPLITS,
    load_mpl_curves,
    mpl_benchmark,
    mpl_example_dir,
    mpl_lrs,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MEASURED = {
    "paper": {"25M": 0.00138, "100M": 0.00173, "400M": 0.00225},
    "wsd": {"25M": 0.00124, "100M": 0.00154, "400M": 0.00259},
}
HEADROOM = 1.5
# The paper's published parameters [L0, A, alpha, B, C, beta, gamma] (its src/config.py).
PAPER_PARAMS = {
    "25M": (3.04045406, 0.52468604, 0.50786857, 363.78751622, 2.06560812, 0.58279013, 0.64142257),
    "100M": (2.6514477, 0.60115152, 0.45295811, 437.9464276, 2.13245612, 0.59785199, 0.65523644),
    "400M": (2.37474466, 0.65421216, 0.42878731, 523.42464371, 2.02462735, 0.59350493, 0.63472457),
}


@pytest.fixture(scope="module")
def full():
    return mpl_benchmark()


@pytest.fixture(scope="module")
def small():
    return mpl_benchmark(["100M"], ["wsd"])


def test_vendored_curves_load_from_the_package_with_their_licence():
    root = mpl_example_dir()
    licence = root.joinpath("LICENSE").read_text(encoding="utf-8")
    assert licence.startswith("MIT License") and "Copyright (c) 2025 Kairong Luo" in licence
    assert "2503.12811" in root.joinpath("README.md").read_text(encoding="utf-8")
    for size in MPL_SIZES:
        curves = load_mpl_curves(size)  # refuses any logged LR off the rebuilt schedule
        assert sorted(curves) == sorted(MPL_RUNS)
        for curve in curves.values():
            assert curve.loss_name == "train_loss" and curve.steps.size >= 95
            assert 2.0 < curve.losses.min() < curve.losses.max() < 4.2
            assert curve.steps[0] in (2160, 2176) and curve.steps[-1] < curve.total_steps + 1
    with pytest.raises(CooldownError, match="size: '1B' is not one of"):
        load_mpl_curves("1B")


def test_rebuilt_schedules_are_the_papers():
    for run in MPL_RUNS:
        lrs = mpl_lrs(run)
        assert lrs[0] == 0.0 and lrs[2159] == pytest.approx(3e-4) and lrs.max() == 3e-4
    assert mpl_lrs("cosine_72000")[-1] == pytest.approx(3e-5, rel=1e-6)
    assert mpl_lrs("wsd_20000_24000")[19999] == 3e-4
    assert mpl_lrs("wsd_20000_24000")[-1] == pytest.approx(3e-5, rel=1e-3)
    assert set(np.unique(mpl_lrs("wsdcon_9")[2160:])) == {3e-4, 9e-5}


def _paper_formula(params, lrs_p, steps):
    # The paper's code: its loss-drop sum also runs over the warmup's rising LR (negative drops).
    l0, a, alpha, b, c, beta, gamma = params
    area = np.cumsum(lrs_p)
    gap = np.diff(lrs_p, prepend=0.0)
    out = []
    for s in steps:
        k = np.flatnonzero(gap[1 : s + 1]) + 1
        x = c * lrs_p[k] ** -gamma * (area[s] - area[k - 1])
        out.append(l0 + a * area[s] ** -alpha + b * np.sum(gap[k] * (1 - (1 + x) ** -beta)))
    return np.array(out)


def test_published_parameters_give_the_published_errors():
    """The vendored curves and the rebuilt LRs are the paper's: its published fit, evaluated as
    its code does, gives its published mean relative error and MAE on its six test runs."""
    test_runs = [r for r in MPL_RUNS if r not in MPL_SPLITS["paper"][1]]
    for size, (rel, mae) in MPL_PAPER_ERRORS.items():
        curves = load_mpl_curves(size)
        rels, maes = [], []
        for run in test_runs:
            c = curves[run]
            pred = _paper_formula(PAPER_PARAMS[size], mpl_lrs(run), c.steps)
            rels.append(np.mean(np.abs(pred - c.losses) / c.losses))
            maes.append(np.mean(np.abs(pred - c.losses)))
        assert np.mean(rels) == pytest.approx(rel, abs=5e-6)
        assert np.mean(maes) == pytest.approx(mae, abs=5e-6)


@pytest.mark.slow
def test_errors_per_size_and_split(full):
    assert {(r.split, r.size) for r in full.results} == {
        (s, z) for s in MPL_SPLITS for z in MPL_SIZES
    }
    for result in full.results:
        fitted = set(MPL_SPLITS[result.split][1])
        assert set(result.fit.curve_names) == fitted
        assert {r.run for r in result.rows} == set(MPL_RUNS) - fitted
        bound = HEADROOM * MEASURED[result.split][result.size]
        assert result.mean_rel_error < bound, (result.split, result.size, result.mean_rel_error)
        # MAE in nats is about the relative error times the loss (~3 nats/token).
        assert 2.0 * result.mean_rel_error < result.mae < 4.0 * result.mean_rel_error
        assert 0.0003 < result.run_to_run < 0.0015  # two runs of one schedule: ~0.07% apart
    assert full.result("paper", "25M").paper == MPL_PAPER_ERRORS["25M"]
    assert full.result("wsd", "25M").paper is None


def test_table_formats(small):
    md = small.to_markdown()
    lines = small.summary_markdown().splitlines()
    assert lines[0].startswith("| fit on | size | test runs | mean rel. error | MPL paper |")
    assert len(lines) == 2 + len(small.results)
    cells = [c.strip() for c in lines[2].strip("|").split("|")]
    assert cells[:3] == ["constant_24000 + wsd_20000_24000", "100M", "7"]
    assert cells[3] == f"{100 * small.results[0].mean_rel_error:.3f}%" and cells[4] == "n/a"
    assert "| wsd | 100M | cosine_72000 |" in small.runs_markdown() and md.count("\n|") >= 11
    rows = list(csv.DictReader(io.StringIO(small.to_csv())))
    assert len(rows) == 7 + 1 and rows[-1]["run"] == "mean"
    assert float(rows[-1]["mean_rel_error"]) == pytest.approx(
        small.results[0].mean_rel_error, rel=1e-5
    )
    assert all(0 < float(r["mean_rel_error"]) < 0.02 for r in rows)
    assert all(2.0 < float(r["final_measured"]) < 4.0 for r in rows[:-1])


def test_cli_writes_csv_markdown_and_figure(tmp_path, capsys):
    main(["predict-benchmark", "mpl", "--size", "100M", "--split", "wsd", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "| constant_24000 + wsd_20000_24000 | 100M | 7 |" in out
    assert (tmp_path / "mpl.png").read_bytes().startswith(PNG_MAGIC)
    assert (tmp_path / "mpl.md").read_text().count("| wsd | 100M |") == 7
    assert len((tmp_path / "mpl.csv").read_text().splitlines()) == 1 + 7 + 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["--out", "{file}"], "error: --out: {file} exists and is not a folder"),
        (["--out", "{file}/sub"], "error: --out: cannot create the folder {file}/sub"),
        (["--size", "1B"], "error: size: give some of 25M, 100M, 400M (got 1B)"),
        (["--split", "cosine"], "error: split: give some of paper, wsd (got cosine)"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(tmp_path, capsys, args, message):
    file = tmp_path / "a-file"
    file.write_text("not a folder")
    args = [a.format(file=file) for a in args]
    with pytest.raises(SystemExit) as info:
        main(["predict-benchmark", "mpl", *args])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(message.format(file=file)) and err.count("\n") == 1
