"""The study spec and planner: the paper's compute numbers, the graph, the accounting, bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cooldown.errors import CooldownError
from cooldown.flops import training_flops
from cooldown.model_sizes import ModelConfig, non_embedding_param_count
from cooldown.study import build_plan, format_plan, load_study, study_from_dict
from cooldown.study.plan_table import Throughput, plan_study

STUDIES = Path(__file__).resolve().parents[1] / "configs" / "studies"


def _spec(**over):
    base = {
        "batch_size": 8,
        "seq_len": 32,
        "warmup_steps": 2,
        "sizes": [{"preset": "tiny-0.05M", "steps": [10, 20, 30]}],
        "methods": {"cosine": {"lr": 3e-3}, "cooldown": {"lr": 2e-3, "fraction": 0.2}},
        "data": {"vocab_size": 512},
    }
    base.update(over)
    return study_from_dict(base)


# --- the paper's numbers --------------------------------------------------------------------------


def test_paper_grid_ratios_and_totals():
    """paper-facts section 4: per-model ratios 0.53-0.60, totals ~1.15e20 vs ~0.64e20 FLOPs
    (chinchilla count, V = 50304 as the paper pads GPT-2's vocabulary; 166M left out)."""
    plan = build_plan(load_study(STUDIES / "paper_grid.toml"))
    assert plan.vocab_size == 50304
    assert list(plan.sizes) == ["33M", "53M", "60M", "93M", "124M", "151M", "210M", "360M"]
    ratios = {s: plan.savings("cooldown", "chinchilla", s) for s in plan.sizes}
    assert all(0.53 <= r <= 0.60 + 1e-12 for r in ratios.values()), ratios
    assert ratios["33M"] == pytest.approx(0.6) and ratios["210M"] == pytest.approx(0.533, abs=1e-3)
    cosine = plan.method_compute("cosine", "chinchilla")
    cooldown = plan.method_compute("cooldown", "chinchilla")
    assert cosine == pytest.approx(1.151e20, rel=1e-3)
    assert cooldown == pytest.approx(6.377e19, rel=1e-3)
    assert cosine == pytest.approx(1.15e20, rel=0.01) and cooldown == pytest.approx(
        0.64e20, rel=0.01
    )
    # Per size, exactly the paper's F3 + 0.2 (F1 + F2): the graph counts what the formula counts.
    for name, info in plan.sizes.items():
        f1, f2, f3 = (info.flops(t, "chinchilla") for t in info.budgets)
        assert plan.method_compute("cooldown", "chinchilla", name) == f3 + (f1 + f2) // 5
        assert plan.method_compute("cosine", "chinchilla", name) == f1 + f2 + f3


def test_paper_grid_graph_for_one_size():
    plan = build_plan(load_study(STUDIES / "paper_grid.toml"))
    nodes = [n for n in plan.nodes if n.size == "33M"]
    trunk = next(n for n in nodes if n.method == "constant")
    assert (trunk.kind, trunk.steps, trunk.branch_points) == ("run", 8000, (2400, 5600, 8000))
    branches = [n for n in nodes if n.kind == "branch"]
    assert [(b.parent, b.parent_step, b.cooldown_steps, b.total_steps) for b in branches] == [
        (trunk.id, 2400, 600, 3000),
        (trunk.id, 5600, 1400, 7000),
        (trunk.id, 8000, 2000, 10000),
    ]
    # Incremental steps: each budget's cooldown plus the trunk since the previous branch point.
    assert [b.incremental_steps for b in branches] == [3000, 4600, 4400]
    assert sum(b.incremental_steps for b in branches) == plan.method_steps("cooldown", "33M")
    cosine = [n for n in nodes if n.method == "cosine"]
    assert [(c.steps, c.tokens) for c in cosine] == [
        (3000, 3000 * 200 * 512),
        (7000, 7000 * 200 * 512),
        (10000, 10000 * 200 * 512),
    ]
    assert plan.sizes["360M"].tokens_per_step == 400 * 512
    # Every convention is counted for every node.
    info = plan.sizes["33M"]
    assert trunk.compute["6N"] == 6 * info.non_embedding_params * trunk.tokens
    assert trunk.compute["chinchilla"] == training_flops(
        info.model, 512, trunk.tokens, "chinchilla"
    )


def test_chinchilla_suite_matches_the_papers_estimate():
    """5.59e23 vs 2.36e23 FLOPs: Hoffmann et al.'s Table A9 ladder, N as the table states it,
    V = 32000, seq 1024, batch 488 x 1024, D/N in {10, 15, 20, 25}, 10% cooldowns."""
    path = STUDIES / "chinchilla_suite.toml"
    plan = build_plan(load_study(path))
    assert len(plan.sizes) == 50
    cosine = plan.method_compute("cosine", "chinchilla")
    cooldown = plan.method_compute("cooldown", "chinchilla")
    assert cosine == pytest.approx(5.59e23, rel=0.005)
    assert cooldown == pytest.approx(2.36e23, rel=0.005)
    # With N from our own parameter count instead of the table's, still within 10%.
    spec = load_study(path)
    sizes = [s.model_copy(update={"budget_params": None}) for s in spec.sizes]
    ours = build_plan(spec.model_copy(update={"sizes": sizes}))
    assert ours.method_compute("cosine", "chinchilla") == pytest.approx(5.59e23, rel=0.10)
    assert ours.method_compute("cooldown", "chinchilla") == pytest.approx(2.36e23, rel=0.10)


# --- graph and accounting -------------------------------------------------------------------------


def test_lr_sweep_shapes_and_swa_share_one_trunk_per_lr():
    spec = _spec(
        methods={
            "cosine": {"lr": [2e-3, 4e-3]},
            "cooldown": {"lr": 2e-3, "fraction": 0.2, "shapes": ["linear", "sqrt"]},
            "swa": {},
        },
        averaging={"swa_window": 10},
        train={"eval_interval": 10},
        seeds=[0, 1],
    )
    plan = build_plan(spec)
    trunks = [n for n in plan.nodes if n.method == "constant"]
    assert [t.id for t in trunks] == [
        "constant-tiny-0.05M-lr0.002-seed0",
        "constant-tiny-0.05M-lr0.002-seed1",
    ]
    # swa reads the trunk at every budget, so the trunk runs to the largest budget.
    assert trunks[0].steps == 30 and trunks[0].branch_points == (8, 16, 24)
    shapes = {n.shape for n in plan.nodes if n.kind == "branch"}
    assert shapes == {"linear", "1-sqrt"}  # the alias is canonical in the plan
    reads = [n for n in plan.nodes if n.method == "swa" and n.seed == 0]
    assert [(r.kind, r.steps, r.parent_step, r.incremental_steps) for r in reads] == [
        ("average", 0, 10, 10),
        ("average", 0, 20, 10),
        ("average", 0, 30, 10),
    ]
    assert plan.method_steps("swa") == 2 * 30
    assert plan.method_steps("cooldown") == 2 * (24 + 2 * (2 + 4 + 6))  # two shapes, one trunk
    assert plan.method_steps("cosine") == 2 * 2 * (10 + 20 + 30)
    # The whole graph trains each node once: trunks to 30, branches, cosine runs.
    assert sum(n.steps for n in plan.runnable()) == 2 * 30 + 2 * 2 * 12 + 2 * 2 * 60
    assert len(plan.points()) == 2 * (6 + 6 + 3)


def test_token_and_tokens_per_param_budgets_become_whole_steps():
    spec = _spec(
        sizes=[
            {"preset": "tiny-0.05M", "tokens": [2560, 5000]},
            {"name": "wide", "n_layers": 2, "d_model": 32, "n_heads": 2, "tokens_per_param": [1]},
        ]
    )
    plan = build_plan(spec)
    assert plan.sizes["tiny-0.05M"].budgets == (10, 20)  # 5000 / 256 = 19.5 -> 20 steps
    wide = plan.sizes["wide"]
    assert wide.budgets == (round(wide.params / 256),)
    node = next(n for n in plan.nodes if n.size == "tiny-0.05M" and n.method == "cosine")
    assert node.tokens == 10 * 8 * 32


def test_device_hours_from_given_throughput_and_measurements():
    plan = build_plan(_spec())
    given = Throughput("chinchilla", flops_per_s=1e9)
    hours = given.method_hours(plan, "cosine")
    assert hours == pytest.approx(plan.method_compute("cosine", "chinchilla") / 1e9 / 3600)
    measured = Throughput.from_measurements(plan, {"tiny-0.05M": [100.0, 300.0, 200.0]}, None)
    steps = plan.method_steps("cooldown")
    assert measured.method_hours(plan, "cooldown") == pytest.approx(steps * 256 / 200.0 / 3600)
    text = format_plan(plan, given)
    assert "FLOPs [chinchilla]" in text and "device-h" in text
    assert "tokens" in text and "cooldown/cosine" in text
    assert "savings: cooldown costs" in text
    assert "n/a" not in text.split("totals")[1]


def test_plan_command_prints_the_table(tmp_path):
    path = tmp_path / "study.toml"
    path.write_text(
        'batch_size = 8\nseq_len = 32\nsizes = ["tiny-0.05M"]\n[budgets]\nsteps = [10, 20]\n'
        "[methods.cosine]\nlr = 1e-3\n[methods.cooldown]\nlr = 1e-3\n"
    )
    text = plan_study(path, throughput_flops_per_s=2e9)
    assert "cosine-tiny-0.05M-10-lr0.001-seed0" in text
    assert "cooldown-tiny-0.05M-20-linear-lr0.001-seed0" in text
    assert "constant-tiny-0.05M-lr0.001-seed0@16" in text  # the 20-step budget's branch point
    from cooldown.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["study", "plan", str(path), "--throughput-flops-per-s", "-1"])
    assert exc.value.code == 2


def test_plan_imports_no_torch():
    code = (
        "import sys; import cooldown.study.plan, cooldown.study.state, cooldown.study.results, "
        "cooldown.study.status; assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"methods": {}}, "methods: give at least one method table"),
        ({"methods": {"adam": {"lr": 1}}}, "methods.adam"),
        (
            {"methods": {"cosine": {"lr": -1.0}}},
            "methods.cosine.lr: every learning rate must be > 0",
        ),
        ({"methods": {"cooldown": {"lr": 1e-3, "shapes": ["wavy"]}}}, "unknown shape 'wavy'"),
        ({"methods": {"cooldown": {"lr": 1e-3, "fraction": 1.0}}}, "methods.cooldown.fraction"),
        ({"methods": {"swa": {}}}, "swa.lr: missing"),
        ({"sizes": []}, "sizes: List should have at least 1 item"),
        ({"sizes": ["nope"]}, "sizes.0: preset 'nope' is unknown"),
        ({"sizes": [{"n_layers": 2, "d_model": 32, "n_heads": 2}]}, "sizes.0: name: missing"),
        ({"sizes": [{"preset": "tiny-0.05M", "n_heads": 0, "steps": [5]}]}, "sizes.0: n_heads"),
        ({"sizes": [{"preset": "tiny-0.05M"}]}, "sizes.0: no budgets for 'tiny-0.05M'"),
        (
            {"sizes": [{"preset": "tiny-0.05M", "steps": [5], "tokens": [100]}]},
            "give one of steps, tokens or tokens_per_param",
        ),
        (
            {"sizes": [{"preset": "tiny-0.05M", "steps": [5]}, {"preset": "tiny-0.05M"}]},
            "sizes: the name 'tiny-0.05M' is used twice",
        ),
        ({"sizes": [{"preset": "tiny-0.05M", "steps": [5, 5]}]}, "a budget is listed twice"),
        ({"train": {"batch_size": 4}}, "train: batch_size: the study sets it"),
        ({"optim": {"lr": 1e-3}}, "optim: lr: set the learning rate per method"),
        ({"flop_convention": "12N"}, "flop_convention"),
        ({"batch_size": 0}, "batch_size: Input should be greater than 0"),
        ({"seeds": [1, 1]}, "seeds: a seed is listed twice"),
        (
            {"methods": {"swa": {"lr": 1e-3}}, "train": {"eval_interval": 10}},
            "averaging: methods.swa reads the trunk's weight averages",
        ),
    ],
)
def test_spec_errors_name_the_field(change, expected):
    with pytest.raises(CooldownError) as exc:
        _spec(**change)
    message = str(exc.value)
    assert expected in message and "\n" not in message


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"sizes": [{"preset": "tiny-0.05M", "tokens": [100]}]},
            "sizes.0 (tiny-0.05M): a budget of 100 tokens is less than one step (256 tokens",
        ),
        (
            {"sizes": [{"preset": "tiny-0.05M", "tokens": [2560, 2600]}]},
            "two budgets come to the same number of steps ([10, 10])",
        ),
        (
            {"warmup_steps": 9},
            "warmup_steps: warmup (9 steps) ends after the branch point (step 8)",
        ),
        (
            {"methods": {"cooldown": {"lr": 1e-3, "fraction": 0.01}}},
            "methods.cooldown.fraction: 0.01 of the 10-step budget of size tiny-0.05M leaves 0 "
            "cooldown",
        ),
        (
            {
                "methods": {"swa": {"lr": 1e-3}},
                "averaging": {"swa_window": 5},
                "train": {"eval_interval": 20},
            },
            "train.eval_interval: 20 does not divide the 10-step budget of size tiny-0.05M",
        ),
    ],
)
def test_plan_errors_name_the_field(change, expected):
    with pytest.raises(CooldownError) as exc:
        build_plan(_spec(**change))
    assert expected in str(exc.value)


def test_load_study_errors_name_the_file(tmp_path):
    path = tmp_path / "study.toml"
    path.write_text("batch_size = 8\n")
    with pytest.raises(CooldownError, match=r"study\.toml: .*sizes: Field required"):
        load_study(path)


def test_explicit_shapes_count_like_the_presets():
    spec = _spec(sizes=[{"name": "w", "n_layers": 8, "d_model": 384, "n_heads": 6, "steps": [10]}])
    info = build_plan(spec).sizes["w"]
    reference = ModelConfig(preset="33M", vocab_size=512)
    assert info.non_embedding_params == non_embedding_param_count(reference)


def test_changed_study_settings_are_caught_by_the_state(tmp_path):
    from cooldown.study.state import StudyState

    def records(plan):
        return [
            {"id": n.id, **n.definition(), "definition": plan.definition(n)}
            for n in plan.runnable()
        ]

    with StudyState(tmp_path) as state:
        state.sync_nodes(records(build_plan(_spec())))
        assert state.sync_nodes(records(build_plan(_spec()))) == []  # the same study: no change
        with pytest.raises(CooldownError, match="optim differ"):
            state.sync_nodes(records(build_plan(_spec(optim={"weight_decay": 0.0}))))
        # A new budget adds nodes but lengthens the trunk: that is a change, not an addition.
        bigger = _spec(sizes=[{"preset": "tiny-0.05M", "steps": [10, 20, 30, 40]}])
        with pytest.raises(CooldownError, match=r"constant-tiny-0\.05M-lr0\.002-seed0 .*steps"):
            state.sync_nodes(records(build_plan(bigger)))


def test_spec_round_trips_through_its_dump():
    spec = load_study(STUDIES / "paper_grid.toml")
    assert study_from_dict(spec.model_dump(mode="json", exclude_none=True)) == spec
