"""`cooldown reproduce`: the smoke preset end to end, its resume, its outputs and the claims."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import replace

import pytest

from _reproduce_smoke import smoke_reproduction
from cooldown.errors import CooldownError
from cooldown.reproduce import reproduce
from cooldown.reproduce.claims import HELD, INCONCLUSIVE, NOT_HELD, better, not_worse
from cooldown.reproduce.presets import CPU, PAPER, SMOKE, get_preset

CLAIM_IDS = [
    "a_cooldown_matches_cosine",
    "b_sqrt_beats_linear",
    "c_longer_helps",
    "c_length_plateau",
    "d_swa_improves_constant",
    "d_swa_below_cooldown",
    "e_sf_betas",
    "e_cooldown_matches_sf",
    "f_interpolation_smooth",
    "g_scaling_cheaper",
    "g_predicted_points",
    "h_prediction_one_branch",
    "h_prediction",
    "h_prediction_other_lr",
    "h_search",
    "h_real_curves",
    "i_muon_sqrt_beats_linear",
    "i_muon_longer_helps",
    "j_merge_matches_cooldown",
    "j_merge_beats_constant",
]


@pytest.fixture(scope="session")
def smoke(tmp_path_factory, data_cache):
    return smoke_reproduction(tmp_path_factory, data_cache)


def test_smoke_writes_claims_results_and_report(smoke):
    result, lines = smoke
    out = result.out
    claims = json.loads((out / "claims.json").read_text())
    assert claims["preset"] == "smoke"
    assert [c["id"] for c in claims["claims"]] == CLAIM_IDS
    assert {c["verdict"] for c in claims["claims"]} <= {HELD, NOT_HELD, INCONCLUSIVE}
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert {r["experiment"] for r in rows} == {*"abcdefghij", "a-sweep"}
    # (j): 3 merges + cooldown + SWA + constant, each seed
    assert sum(r["experiment"] == "j" for r in rows) == 6 * len(SMOKE.seeds)
    # (a): 3 budgets x 2 seeds x (cosine, cooldown); its sweep: 2 LRs x 2 schedules;
    # (g): 4 sizes x 3 budgets x 3 methods.
    assert sum(r["experiment"] == "a" for r in rows) == 12
    assert sum(r["experiment"] == "a-sweep" for r in rows) == 2 * len(SMOKE.lr_grid)
    g = [r for r in rows if r["experiment"] == "g"]
    assert len(g) == 36 and {r["flop_convention"] for r in g} == {"chinchilla"}
    assert sum(r["run"].endswith("(predicted)") for r in g) == 8
    assert all(math.isfinite(float(r["final_val_loss"])) for r in rows)
    html = (out / "report.html").read_text()
    assert html.count('<tr class="claim ') == len(CLAIM_IDS)
    assert "data:image/png;base64," in html
    assert any("report:" in line for line in lines)


def test_smoke_numbers_are_measured_not_invented(smoke):
    result, _ = smoke
    res = json.loads((result.out / "results.json").read_text())
    g = res["g"]
    # Cooldown branches cost F3 + 0.2 (F1 + F2) per size instead of F1 + F2 + F3.
    ratio = g["compute_by_method"]["cooldown"] / g["compute_by_method"]["cosine"]
    b1, b2, b3 = SMOKE.scaling[0].budgets
    assert ratio == pytest.approx((b3 + 0.2 * (b1 + b2)) / (b1 + b2 + b3), rel=0.02)
    # Each schedule runs at the sweep's best LR for it: the lowest loss of its sweep.
    sweep, a = res["sweep"], res["a"]
    for name in ("cosine", "constant"):
        best = min(sweep[name], key=lambda r: r["loss"])
        assert a[f"lr_{name}"] == best["lr"] and best["low"] <= best["loss"] <= best["high"]
    # The paired differences are of the same runs' losses: cooldown - cosine pooled over seeds.
    for x in a["budgets"]:
        d = x["difference"]
        assert d["n_seeds"] == len(SMOKE.seeds) and d["low"] <= d["high"]
        pooled = sum(x["cooldown"]) / len(x["cooldown"]) - sum(x["cosine"]) / len(x["cosine"])
        # Every seed is scored on the same tokens: the pooled ratio is the mean of the seeds'.
        assert d["diff"] == pytest.approx(pooled, abs=1e-9)
    # Every paired run was evaluated on the same validation documents.
    assert len({x["difference"]["n_docs"] for x in a["budgets"]}) == 1


def test_smoke_predicted_points_and_searched_cooldown(smoke):
    result, _ = smoke
    res = json.loads((result.out / "results.json").read_text())
    g, gp = res["g"], res["g_predicted"]
    measured = {(x["size"], x["steps"]): x for x in g["points"] if x["method"] == "cooldown"}
    # cooldown-predicted runs each size's trunk and its largest branch only: F3 per size.
    largest = [measured[(s.name, s.budgets[-1])] for s in SMOKE.scaling]
    assert gp["compute"] == pytest.approx(sum(x["compute_flops"] for x in largest))
    assert g["compute_by_method"]["cooldown-predicted"] < g["compute_by_method"]["cooldown"]
    for x in gp["points"]:
        truth = measured[(x["size"], x["steps"])]
        if x["predicted"]:
            assert x["loss"] != truth["loss"]  # a prediction, not the run's number
            assert abs(x["loss"] - truth["loss"]) / truth["loss"] < 0.1
        else:
            assert x["loss"] == truth["loss"] and x["steps"] == SMOKE.scaling[0].budgets[-1]
    assert sorted(gp["errors"]) == sorted(
        (x["loss"] - measured[(x["size"], x["steps"])]["loss"])
        / measured[(x["size"], x["steps"])]["loss"]
        for x in gp["points"]
        if x["predicted"]
    )
    # (h): the target's errors leave out the runs at other peak LRs, and the searched
    # cooldown was run: its measured loss is the last val_loss its run logged.
    h = res["h"]
    kept = [abs(r["relative_error"]) for r in h["rows"] if r["kind"] != "cosine at another LR"]
    assert h["mare"] == pytest.approx(sum(kept) / len(kept)) and h["worst"] == max(kept)
    assert len(h["fit_on"]) == 3 and len(h["one_branch"]["fit_on"]) == 2
    # (h) on the MPL paper's curves: our fit of its split beside its published error.
    real = res["real_curves"]["fits"]
    assert {(f["split"], f["size"]) for f in real} == {("paper", "25M"), ("wsd", "25M")}
    ours = next(f for f in real if f["split"] == "paper")
    assert ours["paper_mean_rel_error"] == 0.0011 and 0 < ours["mean_rel_error"] < 0.01
    search = h["search"]
    logged = (result.out / "runs" / search["run"] / "metrics.jsonl").read_text().splitlines()
    assert json.loads(logged[-1])["val_loss"] == search["measured"]
    assert search["predicted"] == search["top"][0]["predicted"]


def test_rerun_is_a_no_op_with_the_same_claims(smoke, tmp_path_factory, data_cache):
    result, _ = smoke
    again, lines = smoke_reproduction(tmp_path_factory, data_cache)
    assert again.claims == result.claims
    assert any("already done" in line for line in lines)
    assert again.wall_s < 10


def test_paper_preset_plans_and_says_what_is_missing(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the paper preset would run")
    lines = []
    with pytest.raises(CooldownError, match="CUDA"):
        reproduce("paper", "unused", log=lines.append)
    text = "\n".join(lines)
    assert "chinchilla convention" in text and "GPU-hours" in text


def test_presets_are_named_and_sized():
    assert get_preset("cpu") is CPU and len(PAPER.scaling) >= 4 and len(CPU.scaling) >= 4
    assert all(len(s.budgets) == 3 for s in (*SMOKE.scaling, *CPU.scaling))
    with pytest.raises(CooldownError, match="--preset: 'tiny' is not one of smoke, cpu, paper"):
        get_preset("tiny")
    with pytest.raises(CooldownError, match="lr_grid needs at least two peak LRs"):
        replace(SMOKE, lr_grid=(1e-2,))


def _d(diff, low, high):
    return {
        "a": "a", "b": "b", "diff": diff, "low": low, "high": high, "level": 0.95, "n_docs": 10,
        "n_seeds": 1, "noise": "documents", "dominant": "documents", "doc_halfwidth": 0.0,
        "seed_halfwidth": None,
    }  # fmt: skip


def test_verdicts_read_the_paired_interval():
    # 'b beats a' (expected -1): held only when the whole interval is below zero.
    assert better(_d(-0.02, -0.03, -0.01), -1) == HELD
    assert better(_d(-0.01, -0.03, 0.01), -1) == INCONCLUSIVE
    assert better(_d(0.02, 0.01, 0.03), -1) == NOT_HELD
    assert better(_d(0.02, 0.01, 0.03), +1) == HELD
    # 'b matches a' within a margin of 0.01: the whole interval below +0.01, or above it.
    assert not_worse(_d(0.0, -0.005, 0.005), 0.01) == HELD
    assert not_worse(_d(0.01, 0.005, 0.015), 0.01) == INCONCLUSIVE
    assert not_worse(_d(0.03, 0.02, 0.04), 0.01) == NOT_HELD
    assert not_worse(_d(0.0, float("nan"), 0.0), 0.01) == INCONCLUSIVE
