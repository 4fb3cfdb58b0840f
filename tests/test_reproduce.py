"""`cooldown reproduce`: the smoke preset end to end, its resume, its outputs and the claims."""

from __future__ import annotations

import csv
import json
import math

import pytest

from _reproduce_smoke import smoke_reproduction
from cooldown.errors import CooldownError
from cooldown.reproduce import reproduce
from cooldown.reproduce.claims import HELD, INCONCLUSIVE, NOT_HELD, _better, _matches
from cooldown.reproduce.presets import CPU, PAPER, SMOKE, get_preset

CLAIM_IDS = [
    "a_cooldown_matches_cosine",
    "b_sqrt_beats_linear",
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
    assert {r["experiment"] for r in rows} == set("abcdefgh")
    # (a): 3 budgets x 2 seeds x (cosine, cooldown); (g): 4 sizes x 3 budgets x 3 methods.
    assert sum(r["experiment"] == "a" for r in rows) == 12
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
    # Interpolation ends are the checkpoints themselves: B is the cooldown run's final loss.
    assert res["f"]["val_loss"][-1] == pytest.approx(res["d"]["cooldown"], rel=1e-6)
    a = res["a"]["budgets"][-1]
    assert res["a"]["noise"] == pytest.approx(
        max(max(a[k]) - min(a[k]) for k in ("cosine", "cooldown"))
    )


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
    # (h): the target's errors leave out the runs at twice the fitted LR, and the searched
    # cooldown was run: its measured loss is the last val_loss its run logged.
    h = res["h"]
    kept = [abs(r["relative_error"]) for r in h["rows"] if r["kind"] != "cosine at 2x LR"]
    assert h["mare"] == pytest.approx(sum(kept) / len(kept)) and h["worst"] == max(kept)
    assert len(h["fit_on"]) == 3 and len(h["one_branch"]["fit_on"]) == 2
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


def test_verdicts_respect_the_noise():
    assert _better(0.05, 0.01) == HELD
    assert _better(0.005, 0.01) == INCONCLUSIVE
    assert _better(-0.05, 0.01) == NOT_HELD
    assert _better(0.05, float("nan")) == INCONCLUSIVE
    assert _matches(0.005, 0.01) == HELD and _matches(0.02, 0.01) == NOT_HELD
