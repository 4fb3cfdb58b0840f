import pytest

from cooldown.errors import CooldownError
from cooldown.flops import (
    FLOP_CONVENTIONS,
    describe_convention,
    format_flops,
    forward_flops_per_sequence,
    training_flops,
    training_flops_per_step,
    training_flops_per_token,
)
from cooldown.model_sizes import PAPER_PRESETS, ModelConfig, non_embedding_param_count, param_count

V, S = 50257, 512  # the GPT-2 vocabulary unpadded, and the paper's sequence length

# 3 x forward(512) / 512 for each paper preset at V = 50257: the pinned values below were computed
# once from the formula and must not drift.
PINNED_CHINCHILLA_PER_TOKEN = {
    "33M": 335_614_464,
    "53M": 497_817_600,
    "60M": 545_077_248,
    "93M": 799_403_520,
    "124M": 1_030_063_104,
    "151M": 1_219_027_968,
    "166M": 1_333_860_864,
    "210M": 1_596_957_696,
    "360M": 2_620_010_496,
}


def paper_forward(L, d, h, k, f, vocab, seq):
    """paper-facts section 4, written out term by term."""
    return (
        2 * seq * vocab * d
        + L
        * (
            6 * seq * d * (h * k)
            + 2 * seq * seq * (h * k)
            + 3 * h * seq * seq
            + 2 * seq * seq * (h * k)
            + 2 * seq * (h * k) * d
            + 6 * seq * d * f
        )
        + 2 * seq * d * vocab
    )


@pytest.mark.parametrize("name", PAPER_PRESETS)
def test_chinchilla_count_of_every_paper_preset(name):
    cfg = ModelConfig(preset=name, vocab_size=V)
    forward = paper_forward(cfg.n_layers, cfg.d_model, cfg.n_heads, 64, cfg.ffn_hidden, V, S)
    assert forward_flops_per_sequence(cfg, S) == forward
    assert training_flops_per_token(cfg, S, "chinchilla") * S == 3 * forward
    assert training_flops_per_token(cfg, S, "chinchilla") == PINNED_CHINCHILLA_PER_TOKEN[name]


def test_chinchilla_over_6nd_is_1_2_to_1_7_for_the_paper_presets():
    # N = all parameters incl. the (tied) embedding at V = 50257. Measured: 1.672 (33M) falling
    # with size to 1.214 (360M).
    ratios = {}
    for name in PAPER_PRESETS:
        cfg = ModelConfig(preset=name, vocab_size=V)
        ratios[name] = training_flops_per_token(cfg, S, "chinchilla") / (6 * param_count(cfg))
    assert all(1.2 <= r <= 1.7 for r in ratios.values()), ratios
    assert ratios["33M"] == pytest.approx(1.672, abs=1e-3)
    assert ratios["360M"] == pytest.approx(1.214, abs=1e-3)


def test_paper_sweep_costs_1_15e20_with_cosine_and_0_64e20_with_cooldowns():
    # paper-facts section 4: the grid's three budgets per model (166M left out), batch 200 x 512
    # (400 for 360M). Cosine runs each budget from scratch; cooldown = F3 + 0.2 (F1 + F2).
    steps = {
        "33M": (3e3, 7e3, 10e3),
        "53M": (3.75e3, 7.5e3, 11.25e3),
        "60M": (7.5e3, 12.5e3, 17.5e3),
        "93M": (10e3, 17.5e3, 25e3),
        "124M": (15e3, 25e3, 35e3),
        "151M": (25e3, 37.5e3, 50e3),
        "210M": (37.5e3, 50e3, 62.5e3),
        "360M": (25e3, 37.5e3, 50e3),
    }
    cosine = cooldown = 0.0
    for name, budgets in steps.items():
        cfg = ModelConfig(preset=name, vocab_size=V)
        batch = 400 if name == "360M" else 200
        f1, f2, f3 = (training_flops(cfg, S, n * batch * S, "chinchilla") for n in budgets)
        cosine += f1 + f2 + f3
        cooldown += f3 + 0.2 * (f1 + f2)
    assert cosine == pytest.approx(1.15e20, rel=0.01)
    assert cooldown == pytest.approx(0.64e20, rel=0.01)


def test_6n_and_6n_plus_attention():
    cfg = ModelConfig(
        n_layers=3, d_model=64, n_heads=2, head_dim=48, ffn_hidden=160, vocab_size=100
    )
    n = 3 * (4 * 64 * 96 + 3 * 64 * 160)
    assert non_embedding_param_count(cfg) == n
    assert training_flops_per_token(cfg, 128, "6N") == 6 * n
    # The attention term uses the attention width h * k = 96, not d_model = 64.
    assert training_flops_per_token(cfg, 128, "6N+attn") == 6 * n + 12 * 3 * 96 * 128


def test_6n_conventions_do_not_need_the_vocabulary_but_chinchilla_does():
    cfg = ModelConfig(preset="33M")
    assert training_flops_per_token(cfg, S, "6N") == 6 * non_embedding_param_count(cfg)
    with pytest.raises(CooldownError, match=r"model\.vocab_size is not set"):
        training_flops_per_token(cfg, S, "chinchilla")
    with pytest.raises(CooldownError, match=r"model\.vocab_size is not set"):
        forward_flops_per_sequence(cfg, S)


def test_totals_per_run_and_per_step():
    cfg = ModelConfig(preset="124M", vocab_size=V)
    per_token = training_flops_per_token(cfg, S, "chinchilla")
    assert training_flops(cfg, S, 2_560_000_000, "chinchilla") == per_token * 2_560_000_000
    assert training_flops_per_step(cfg, S, 200 * S, "6N+attn") == pytest.approx(
        training_flops_per_token(cfg, S, "6N+attn") * 102_400
    )
    assert training_flops(cfg, S, 0, "6N") == 0


def test_format_flops_names_the_convention():
    assert format_flops(1.2345e18, "chinchilla") == "1.23e18 FLOPs [chinchilla]"
    assert format_flops(6.4e19, "6N+attn") == "6.40e19 FLOPs [6N+attn]"
    assert format_flops(0.0, "6N") == "0.00e0 FLOPs [6N]"


def test_every_convention_has_a_distinct_description():
    assert FLOP_CONVENTIONS == ("chinchilla", "6N", "6N+attn")
    descriptions = [describe_convention(c) for c in FLOP_CONVENTIONS]
    assert len(set(descriptions)) == 3
    assert "forward" in describe_convention("chinchilla")
    assert "non-embedding" in describe_convention("6N")


@pytest.mark.parametrize(
    "call",
    [
        lambda cfg: training_flops_per_token(cfg, S, "kaplan"),
        lambda cfg: training_flops(cfg, S, 1e9, "6ND"),
        lambda cfg: format_flops(1e18, "palm"),
        lambda cfg: describe_convention("chinchila"),
    ],
)
def test_unknown_convention_lists_the_allowed_ones(call):
    cfg = ModelConfig(preset="33M", vocab_size=V)
    with pytest.raises(CooldownError, match=r"flop_convention '\w+' is unknown") as err:
        call(cfg)
    assert "allowed: chinchilla, 6N, 6N+attn" in str(err.value)


def test_bad_lengths_and_token_counts_are_refused():
    cfg = ModelConfig(preset="33M", vocab_size=V)
    with pytest.raises(CooldownError, match="seq_len must be a positive integer"):
        training_flops_per_token(cfg, 0, "chinchilla")
    with pytest.raises(CooldownError, match="tokens must be >= 0"):
        training_flops(cfg, S, -1, "chinchilla")
    with pytest.raises(CooldownError, match="tokens_per_step must be >= 1"):
        training_flops_per_step(cfg, S, 0, "chinchilla")
