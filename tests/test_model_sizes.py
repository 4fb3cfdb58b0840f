import subprocess
import sys

import pydantic
import pytest

from cooldown.configio import read_toml, to_toml, validate
from cooldown.errors import CooldownError
from cooldown.model_sizes import (
    PAPER_PRESETS,
    PRESETS,
    TINY_PRESETS,
    ModelConfig,
    non_embedding_param_count,
    param_count,
)

GPT2_VOCAB = 50257

# paper-facts section 3: name -> (layers, width, heads, ffn, params as printed)
PAPER_TABLE = {
    "33M": (8, 384, 6, 1024, "33.5M"),
    "53M": (8, 512, 8, 1536, "53.0M"),
    "60M": (10, 512, 8, 1536, "59.8M"),
    "93M": (12, 640, 10, 1792, "93.1M"),
    "124M": (12, 768, 12, 2048, "123.5M"),
    "151M": (16, 768, 12, 2048, "151.8M"),
    "166M": (12, 896, 14, 2560, "166.1M"),
    "210M": (24, 768, 12, 2048, "208.5M"),
    "360M": (24, 1024, 16, 2816, "359.7M"),
}


def test_paper_presets_are_exactly_the_table():
    assert set(PAPER_PRESETS) == set(PAPER_TABLE)
    assert "1B" in PRESETS and "1B" not in PAPER_PRESETS


@pytest.mark.parametrize("name", list(PAPER_TABLE))
def test_paper_preset_shape_and_params(name):
    layers, width, heads, ffn, printed = PAPER_TABLE[name]
    cfg = ModelConfig(preset=name, vocab_size=GPT2_VOCAB)
    assert (cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.ffn_hidden) == (layers, width, heads, ffn)
    assert cfg.head_dim == 64
    assert cfg.tie_embeddings
    # The paper's formula, written out: V d + L (4 d^2 + 3 d f).
    expected = GPT2_VOCAB * width + layers * (4 * width * width + 3 * width * ffn)
    assert param_count(cfg) == expected
    assert f"{expected / 1e6:.1f}M" == printed


def test_1b_preset_is_about_one_billion():
    cfg = ModelConfig(preset="1B", vocab_size=GPT2_VOCAB)
    assert (cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.head_dim, cfg.ffn_hidden) == (
        18,
        2048,
        32,
        64,
        5632,
    )
    assert param_count(cfg) == 1_027_770_368


@pytest.mark.parametrize("name", TINY_PRESETS)
def test_tiny_preset_name_is_its_param_count_at_vocab_2048(name):
    cfg = ModelConfig(preset=name, vocab_size=2048)
    printed = name.removeprefix("tiny-").removesuffix("M")
    decimals = len(printed.split(".")[1]) if "." in printed else 0
    assert f"{param_count(cfg) / 1e6:.{decimals}f}" == printed
    assert cfg.n_layers >= 2
    assert 16 <= cfg.head_dim <= 64
    assert cfg.d_model % cfg.n_heads == 0
    assert cfg.ffn_multiple_of in (32, 64)


def test_tiny_ladder_grows_in_width_and_depth():
    cfgs = [ModelConfig(preset=n, vocab_size=2048) for n in TINY_PRESETS]
    counts = [param_count(c) for c in cfgs]
    assert counts == sorted(counts)
    assert [c.d_model for c in cfgs] == sorted(c.d_model for c in cfgs)
    assert [c.n_layers for c in cfgs] == sorted(c.n_layers for c in cfgs)


def test_explicit_fields_override_the_preset_and_derived_fields_follow():
    cfg = ModelConfig(preset="124M", n_layers=4, d_model=512, n_heads=8)
    assert (cfg.n_layers, cfg.d_model, cfg.n_heads) == (4, 512, 8)
    assert cfg.head_dim == 64
    assert cfg.ffn_hidden == 1536  # round_up(int(8 * 512 / 3), 256)
    assert ModelConfig(preset="124M", ffn_hidden=3072).ffn_hidden == 3072
    assert ModelConfig(preset="33M", ffn_multiple_of=64).ffn_hidden == 1024
    assert ModelConfig(n_layers=2, d_model=100, n_heads=5, ffn_multiple_of=32).ffn_hidden == 288


def test_without_preset_all_shape_fields_are_resolved_to_ints():
    cfg = ModelConfig(n_layers=2, d_model=96, n_heads=3)
    assert cfg.preset is None
    assert cfg.head_dim == 32
    assert cfg.ffn_hidden == 256
    dumped = cfg.model_dump()
    assert all(isinstance(dumped[k], int) for k in ("n_layers", "d_model", "n_heads", "head_dim"))
    assert isinstance(dumped["ffn_hidden"], int)


def test_model_dump_round_trips_through_dict_and_toml(tmp_path):
    cfg = ModelConfig(preset="tiny-2M", vocab_size=2048, max_seq_len=256, tie_embeddings=False)
    assert ModelConfig.model_validate(cfg.model_dump()) == cfg
    (tmp_path / "model.toml").write_text(to_toml(cfg))
    assert validate(ModelConfig, read_toml(tmp_path / "model.toml")) == cfg
    assert cfg.model_dump()["ffn_hidden"] == 384


def test_unknown_preset_lists_the_names():
    with pytest.raises(CooldownError) as err:
        validate(ModelConfig, {"preset": "7B"}, "model")
    msg = str(err.value)
    assert "'7B' is unknown" in msg
    for name in PRESETS:
        assert name in msg
    assert "\n" not in msg


def test_missing_shape_without_preset_names_the_fields():
    with pytest.raises(CooldownError, match=r"missing: n_layers, n_heads"):
        validate(ModelConfig, {"d_model": 128}, "model")


def test_width_not_divisible_by_heads_is_refused():
    with pytest.raises(
        CooldownError, match=r"model\.head_dim: d_model 100 is not divisible by n_heads 3"
    ):
        validate(ModelConfig, {"n_layers": 2, "d_model": 100, "n_heads": 3}, "model")
    # An explicit head_dim sets the attention width h * k independently of d_model.
    cfg = ModelConfig(n_layers=2, d_model=100, n_heads=3, head_dim=32)
    assert cfg.attention_width == 96


def test_odd_head_dim_is_refused_for_rope():
    with pytest.raises(CooldownError, match=r"model\.head_dim: must be even"):
        validate(ModelConfig, {"n_layers": 2, "d_model": 66, "n_heads": 2}, "model")


@pytest.mark.parametrize(
    ("field", "value"),
    [("n_layers", 0), ("d_model", -8), ("vocab_size", 0), ("max_seq_len", 0), ("norm_eps", 0.0)],
)
def test_nonpositive_values_are_refused_naming_the_field(field, value):
    with pytest.raises(CooldownError, match=rf"^model\.{field}: "):
        validate(ModelConfig, {"preset": "tiny-0.2M", field: value}, "model")


def test_config_is_frozen_and_forbids_unknown_fields():
    cfg = ModelConfig(preset="33M")
    with pytest.raises(pydantic.ValidationError):
        cfg.d_model = 1  # type: ignore[misc]
    with pytest.raises(CooldownError, match=r"model\.n_layer: Extra inputs are not permitted"):
        validate(ModelConfig, {"preset": "33M", "n_layer": 3}, "model")


def test_with_vocab_returns_a_validated_copy():
    cfg = ModelConfig(preset="33M")
    assert cfg.vocab_size is None
    filled = cfg.with_vocab(50304)
    assert filled.vocab_size == 50304
    assert filled.model_dump() == {**cfg.model_dump(), "vocab_size": 50304}
    with pytest.raises(CooldownError, match=r"model\.vocab_size"):
        cfg.with_vocab(0)


def test_param_count_variants():
    cfg = ModelConfig(
        n_layers=3, d_model=64, n_heads=2, head_dim=48, ffn_hidden=160, vocab_size=100
    )
    body = 3 * (4 * 64 * 96 + 3 * 64 * 160)
    assert non_embedding_param_count(cfg) == body
    assert param_count(cfg, embeddings=False) == body
    assert param_count(cfg) == body + 100 * 64
    assert param_count(cfg, norms=True) == body + 100 * 64 + 2 * 3 * 64 + 64
    untied = cfg.model_copy(update={"tie_embeddings": False})
    assert param_count(untied) == body + 2 * 100 * 64


def test_param_count_with_embeddings_needs_the_vocab():
    cfg = ModelConfig(preset="33M")
    with pytest.raises(CooldownError, match=r"model\.vocab_size is not set"):
        param_count(cfg)
    assert non_embedding_param_count(cfg) == 8 * (4 * 384 * 384 + 3 * 384 * 1024)


def test_model_sizes_and_flops_do_not_import_torch():
    code = "import sys, cooldown.model_sizes, cooldown.flops; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
