"""Held-out prediction errors on real loss curves of the embedded default.

The runs are those of `cooldown reproduce --preset cpu`'s experiment (h), built with its own
config builders (4 layers x width 32, 900 steps at the constant LR 5e-3, 50 warmup, 8 evaluation
batches every 50 steps): a constant-LR run, 1-sqrt cooldowns branched from it at 20% and 40% of
900 steps (fitted on), and held out: a linear 20% cooldown, a 10% 1-sqrt cooldown, the 20%
cooldown of a 600-step budget, and a 900-step cosine at the same peak LR. The test asserts the
measured errors, so a regression of the laws, the fit or the curve reading fails it.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from dataclasses import replace

import numpy as np
import pytest
import tomli_w

from cooldown.cli import main
from cooldown.configio import read_toml
from cooldown.errors import CooldownError
from cooldown.predict import evaluate_holdout, read_run_curve, search_cooldown

TOTAL = 900
LR = 5e-3
# name: (branch step, cooldown steps, shape)
BRANCHES = {
    "1sqrt-20": (720, 180, "1-sqrt"),
    "1sqrt-40": (540, 360, "1-sqrt"),
    "linear-20": (720, 180, "linear"),
    "1sqrt-10": (810, 90, "1-sqrt"),
    "1sqrt-20-at-600": (480, 120, "1-sqrt"),
}
FIT_ON = ["constant", "1sqrt-20", "1sqrt-40"]
HELD_OUT = ["linear-20", "1sqrt-10", "1sqrt-20-at-600", "cosine"]

# Measured on these runs (torch 2.13 CPU, one thread; the same runs as reproduce's (h)):
#   MPL on constant + 20% + 40%:  linear-20 +0.13%, 1sqrt-10 +0.46%, 1sqrt-20-at-600 -0.54%,
#                                 cosine +0.45%: MARE 0.40%, worst 0.54% (the issue's target:
#                                 0.5% / 1%)
#   MPL on constant + 20% only:   linear-20 +0.16%, 1sqrt-10 +1.16%, 1sqrt-20-at-600 -0.16%,
#                                 cosine -1.67%: MARE 0.79%, worst 1.67% (one cooldown length pins
#                                 the annealing term loosely: the cosine comes out too optimistic)
#   Tissue on constant + 20% + 40%: +1.10%, +1.72%, +0.62%, -5.31%: MARE 2.19%, worst 5.31%
# The one-branch and Tissue bounds only guard against regressions (~20% headroom).
TARGET_MARE, TARGET_WORST = 0.005, 0.01
ONE_BRANCH_MARE, ONE_BRANCH_WORST = 0.0095, 0.02
TISSUE_MARE, TISSUE_WORST = 0.026, 0.064


def _train_runs(root, data_cache) -> None:
    import torch

    from cooldown.config import RunConfig
    from cooldown.reproduce.plan import branch_config, constant_config, cosine_config
    from cooldown.reproduce.presets import get_preset
    from cooldown.train import train

    # The runs these tests were calibrated on: the cpu preset's earlier model, data and evaluation
    # interval (4 x 32 on 1.5 MB of the corpus, every 50 steps) at a constant LR of 5e-3.
    p = get_preset("cpu")
    data = {"source": "stdlib", "max_bytes": 1_500_000, "val_fraction": 0.1, "vocab_size": 512}
    model = {"n_layers": 4, "d_model": 32, "n_heads": 2, "ffn_multiple_of": 32, "max_seq_len": 64}
    p = replace(
        p, data={**data, "cache_dir": data_cache}, model=model, eval_interval=50, swa_window=75
    )
    # One intra-op thread: on a shared 2-core machine torch's default thread pool makes these tiny
    # models an order of magnitude slower (and reproduce's workers train with one).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        points = sorted({step for step, _, _ in BRANCHES.values()})
        constant = constant_config(p, TOTAL, lr=LR, branch_at=points)
        train(RunConfig.model_validate(constant), root / "constant")
        for name, (step, k, shape) in BRANCHES.items():
            cfg = branch_config(constant, root / "constant", step, k, shape)
            train(RunConfig.model_validate(cfg), root / name)
        cosine = cosine_config(p, TOTAL, lr=LR)
        train(RunConfig.model_validate(cosine), root / "cosine")
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_cache):
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        root = tmp_path_factory.mktemp("predict-runs")
        _train_runs(root, data_cache)
        return root
    # Under pytest-xdist every worker that gets a test of this module would train the runs: the
    # first one trains them into the session's shared folder, the others wait and reuse them.
    root = tmp_path_factory.getbasetemp().parent / "predict-runs"
    with open(root.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / "done").exists():
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir()
            _train_runs(root, data_cache)
            (root / "done").touch()
    return root


def _evaluate(runs, fit_on, law):
    return evaluate_holdout(
        [runs / n for n in fit_on], [runs / n for n in HELD_OUT], law, n_bootstrap=10
    )


def test_heldout_errors_mpl_within_the_target(runs):
    evaluation = _evaluate(runs, FIT_ON, "mpl")
    print("\n" + evaluation.table())
    rows = {r.name: r for r in evaluation.rows}
    assert list(rows) == HELD_OUT
    # The measured value is the run's last logged validation loss, at its last step.
    last = json.loads((runs / "cosine" / "metrics.jsonl").read_text().splitlines()[-1])
    assert rows["cosine"].measured == last["val_loss"] and rows["cosine"].final_step == TOTAL
    assert rows["1sqrt-20-at-600"].final_step == 600
    # A cooldown really helped, and the law saw it: both the measurement and the prediction of
    # the 20% linear cooldown lie well below the constant run at the same step.
    constant_final = read_run_curve(runs / "constant").final_loss
    assert rows["linear-20"].measured < constant_final - 0.05
    assert rows["linear-20"].predicted < constant_final - 0.05
    assert evaluation.mare <= TARGET_MARE
    assert evaluation.worst <= TARGET_WORST


def test_heldout_errors_mpl_one_branch(runs):
    evaluation = _evaluate(runs, FIT_ON[:2], "mpl")
    print("\n" + evaluation.table())
    assert evaluation.mare <= ONE_BRANCH_MARE
    assert evaluation.worst <= ONE_BRANCH_WORST


def test_heldout_errors_tissue(runs):
    evaluation = _evaluate(runs, FIT_ON, "tissue")
    print("\n" + evaluation.table())
    assert evaluation.mare <= TISSUE_MARE
    assert evaluation.worst <= TISSUE_WORST


def test_predict_command_on_runs(runs, tmp_path, capsys):
    out = tmp_path / "prediction"
    main(
        [
            "predict",
            *(str(runs / n) for n in FIT_ON),
            "--schedule",
            "wsd:shape=linear,cooldown_frac=0.2",
            "--holdout",
            str(runs / "linear-20"),
            "--bootstrap",
            "5",
            "--out",
            str(out),
        ]
    )
    text = capsys.readouterr().out
    # Steps 100..900 of the constant run; each branch's own points after its branch step (its
    # stitched points before it repeat the constant run's and count once).
    assert "fitted on 3 curve(s), 29 points" in text  # 17 + 4 (750..900) + 8 (550..900)
    assert "predicted final val_loss (nats/token; 95% bootstrap interval, 5 replicates):" in text
    saved = json.loads((out / "predictions.json").read_text())
    # Length, warmup and peak LR of the spec default to the first run's, so the spec is exactly
    # the held-out run's schedule and both predictions agree.
    spec = saved["predictions"][0]
    assert spec["final_step"] == TOTAL and spec["peak_lr"] == pytest.approx(5e-3)
    held = saved["holdout"]["runs"][0]
    assert held["predicted"] == pytest.approx(spec["final_loss"], rel=1e-12)
    assert held["measured"] == read_run_curve(runs / "linear-20").final_loss
    assert (out / "predictions.png").stat().st_size > 20_000


def test_search_on_the_real_fit(runs):
    from cooldown.predict import fit_law, load_curves

    fit = fit_law(load_curves([runs / n for n in FIT_ON]), "mpl", n_bootstrap=0)
    ranked = search_cooldown(fit, TOTAL, fractions=(0.1, 0.2, 0.4), shapes=("linear", "1-sqrt"))
    assert len(ranked) == 6 and ranked[0].final_loss == min(c.final_loss for c in ranked)
    assert ranked[0].final_loss < read_run_curve(runs / "constant").final_loss


def test_search_command_runs_the_best_cooldown(runs, tmp_path, capsys):
    best = tmp_path / "best"
    args = ["predict", *(str(runs / n) for n in FIT_ON), "--search", "--bootstrap", "0"]
    main([*args, "--run-best", str(best)])
    text = capsys.readouterr().out
    assert "best WSD cooldowns of a 900-step run by predicted final val_loss" in text
    assert "ran the best schedule in" in text
    # The winner was trained from scratch with the constant run's settings and its measured
    # final loss lands where the law said (measured: 1-sqrt over the last 20%, -0.05%).
    from cooldown.configio import read_toml as read

    config = read(best / "config.toml")
    assert config["schedule"]["kind"] == "wsd" and "parent" not in config
    assert config["optim"]["lr"] == pytest.approx(5e-3)
    measured = read_run_curve(best).final_loss
    predicted = float(text.split("predicted ")[-1].split()[0])
    assert abs(predicted - measured) / measured <= TARGET_WORST
    with pytest.raises(SystemExit) as exit_info:
        main([*args[:4], "--run-best", str(tmp_path / "no")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (
        "error: --run-best: needs --search (it trains the best searched cooldown)\n"
    )


def test_runs_of_different_models_are_refused(runs, tmp_path, capsys):
    other = tmp_path / "wider"
    shutil.copytree(runs / "1sqrt-20", other, ignore=shutil.ignore_patterns("checkpoints"))
    config = read_toml(other / "config.toml")
    config["model"]["d_model"] = 64
    (other / "config.toml").write_text(tomli_w.dumps(config))
    with pytest.raises(CooldownError) as info:
        evaluate_holdout([runs / "constant", other], [runs / "cosine"], "tissue")
    assert str(info.value).startswith(
        "runs of different models in one fit: constant and wider differ in model.d_model (32 vs 64)"
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(runs / "constant"), str(other), "-s", "cosine"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: runs of different models in one fit") and err.count("\n") == 1


def test_curves_of_trained_runs(runs):
    curve = read_run_curve(runs / "1sqrt-20-at-600")
    np.testing.assert_array_equal(curve.steps, np.arange(50, 601, 50))
    assert curve.total_steps == 600
    assert curve.lrs[479] == pytest.approx(5e-3) and curve.lrs[-1] == 0.0
    # Up to its branch step (480), the branch's curve is the constant run's: steps 50..450.
    constant = read_run_curve(runs / "constant")
    np.testing.assert_array_equal(curve.losses[:9], constant.losses[:9])
    assert curve.losses[9] != constant.losses[9]
