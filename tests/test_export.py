"""Export to the Hugging Face Llama format: logits parity with transformers, round trip, tokenizer
files, averaged weights, and the errors a user can run into."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors import safe_open

from cooldown.cli import main
from cooldown.config import load_run_config
from cooldown.errors import CooldownError
from cooldown.export import (
    bytes_tokenizer_json,
    export_checkpoint,
    import_hf,
    load_export_source,
    state_dict_shapes,
    tokenizer_files,
)
from cooldown.model import Transformer

transformers = pytest.importorskip("transformers")

STEPS = 5  # the length of conftest's averaged_run
TEXT = "def f(x):\n    return x + 1  # héllo wörld 🙂"


@pytest.fixture(scope="module")
def run(averaged_run):
    assert averaged_run.steps == STEPS
    return averaged_run


def _our_logits(cfg, weights, ids):
    model = Transformer(cfg)
    model.load_state_dict(weights)
    model.eval()
    with torch.no_grad():
        return model(ids)


@pytest.mark.parametrize("which", ["raw", "swa"])
def test_transformers_logits_match_ours(run, tmp_path, which):
    out = export_checkpoint(run.ckpt, tmp_path / "hf", weights=which)
    src = load_export_source(run.ckpt, which)
    hf = transformers.AutoModelForCausalLM.from_pretrained(out)
    hf.eval()
    assert type(hf).__name__ == "LlamaForCausalLM"
    assert next(hf.parameters()).dtype == torch.float32
    assert hf.config.tie_word_embeddings is True
    ids = torch.randint(0, src.model_cfg.vocab_size, (2, src.model_cfg.max_seq_len))
    ours = _our_logits(src.model_cfg, getattr(run, which), ids)
    with torch.no_grad():
        theirs = hf(ids).logits
    assert theirs.shape == ours.shape == (2, 64, 512)
    assert (theirs - ours).abs().max().item() < 1e-4
    # The two weight sets really differ, so the parity is not one export checked twice.
    other = run.swa if which == "raw" else run.raw
    assert (_our_logits(src.model_cfg, other, ids) - ours).abs().max().item() > 1e-3


def test_untied_head_with_bytes_tokenizer(tmp_path):
    """The other branch of every choice: an lm_head of its own and the 257-id bytes vocabulary."""
    from cooldown.export import ExportSource, write_hf_folder
    from cooldown.model_sizes import ModelConfig

    cfg = ModelConfig(n_layers=2, d_model=32, n_heads=2, ffn_hidden=96, tie_embeddings=False)
    cfg = cfg.with_vocab(257)
    torch.manual_seed(0)
    weights = Transformer(cfg).state_dict()
    data = SimpleNamespace(header={"tokenizer": {"kind": "bytes"}}, eod_id=256, path=tmp_path)
    src = ExportSource(tmp_path / "ckpt", tmp_path, 7, "raw", cfg, weights, data)
    out = write_hf_folder(src, tmp_path / "hf")
    hf = transformers.AutoModelForCausalLM.from_pretrained(out)
    assert hf.config.tie_word_embeddings is False
    assert hf.lm_head.weight.data_ptr() != hf.model.embed_tokens.weight.data_ptr()
    ids = torch.tensor([list(TEXT.encode("utf-8"))])
    with torch.no_grad():
        assert (hf(ids).logits - _our_logits(cfg, weights, ids)).abs().max().item() < 1e-4
    cfg_back, weights_back = import_hf(out)
    assert cfg_back.tie_embeddings is False and cfg_back.ffn_hidden == 96
    assert all(torch.equal(weights_back[k], v) for k, v in weights.items())


@pytest.mark.parametrize("which", ["raw", "swa"])
def test_export_then_import_is_bitwise(run, tmp_path, which):
    out = export_checkpoint(run.ckpt, tmp_path / "hf", weights=which)
    cfg, weights = import_hf(out)
    expected = getattr(run, which)
    assert set(weights) == set(expected)
    for name, tensor in expected.items():
        assert weights[name].dtype == tensor.dtype
        assert torch.equal(weights[name], tensor), name
    run_cfg = load_run_config(run.dir / "config.toml").model
    for field in ("n_layers", "d_model", "n_heads", "head_dim", "ffn_hidden", "max_seq_len"):
        assert getattr(cfg, field) == getattr(run_cfg, field)
    assert (cfg.vocab_size, cfg.tie_embeddings, cfg.norm_eps, cfg.rope_theta) == (
        512,
        True,
        run_cfg.norm_eps,
        run_cfg.rope_theta,
    )


def test_folder_contents_names_and_config(run, tmp_path):
    out = export_checkpoint(run.ckpt, tmp_path / "hf")
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no scratch left
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert (config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]) == (
        48,
        128,
        4,
    )
    assert config["num_attention_heads"] == config["num_key_value_heads"] == 3
    assert (config["head_dim"], config["vocab_size"], config["max_position_embeddings"]) == (
        16,
        512,
        64,
    )
    assert config["bos_token_id"] == config["eos_token_id"] == 0  # the BPE's <|endoftext|>
    assert config["torch_dtype"] == "float32" and config["hidden_act"] == "silu"
    with safe_open(out / "model.safetensors", "pt") as f:
        names = set(f.keys())
        assert f.metadata()["cooldown.step"] == str(STEPS)
        assert torch.equal(
            f.get_tensor("model.layers.2.mlp.gate_proj.weight"),
            run.raw["layers.2.feed_forward.w1.weight"],
        )
    assert "lm_head.weight" not in names  # tied: transformers ties it to embed_tokens
    assert "model.layers.3.self_attn.o_proj.weight" in names and len(names) == 2 + 4 * 9


def test_tokenizer_loads_and_encodes_like_ours(run, tmp_path):
    out = export_checkpoint(run.ckpt, tmp_path / "hf")
    tok = transformers.AutoTokenizer.from_pretrained(out)
    assert isinstance(tok, transformers.PreTrainedTokenizerFast)
    data = load_export_source(run.ckpt).data
    ours = data.tokenizer()
    assert tok(TEXT)["input_ids"] == ours.encode(TEXT).tolist()
    assert tok.eos_token == "<|endoftext|>" and tok.eos_token_id == data.eod_id == 0
    assert tok.decode(tok(TEXT)["input_ids"]) == TEXT


@pytest.mark.parametrize("tied", [True, False])
def test_state_dict_shapes_are_the_models(tied):
    from cooldown.model_sizes import ModelConfig

    cfg = ModelConfig(n_layers=2, d_model=32, n_heads=2, head_dim=8, tie_embeddings=tied)
    cfg = cfg.with_vocab(300)
    model = Transformer(cfg)
    assert state_dict_shapes(cfg) == {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _load_tokenizer(files: dict[str, bytes], folder: Path):
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return transformers.AutoTokenizer.from_pretrained(folder)


def test_bytes_tokenizer_export_is_the_same_tokenizer(tmp_path):
    from cooldown.data.tokenizers import ByteTokenizer

    data = SimpleNamespace(header={"tokenizer": {"kind": "bytes"}}, eod_id=256, path=tmp_path)
    tok = _load_tokenizer(tokenizer_files(data, model_max_length=128), tmp_path / "tok")
    ids = tok(TEXT)["input_ids"]
    assert ids == ByteTokenizer().encode(TEXT).tolist() == list(TEXT.encode("utf-8"))
    assert tok.decode(ids) == TEXT
    assert (len(tok), tok.eos_token_id, tok.model_max_length) == (257, 256, 128)
    assert bytes_tokenizer_json() == bytes_tokenizer_json()  # deterministic bytes


def test_gpt2_tokenizer_is_built_from_tiktoken_cache(tmp_path, monkeypatch):
    from cooldown.data.tokenizers import GPT2_BLOB_NAMES
    from cooldown.export import _bytes_to_unicode

    # A miniature GPT-2: the 256 byte symbols, one merge ("h" "e"), then <|endoftext|>.
    table = _bytes_to_unicode()
    vocab = {table[b]: b for b in range(256)} | {"he": 256, "<|endoftext|>": 257}
    cache = tmp_path / "tiktoken"
    cache.mkdir()
    contents = ["#version: 0.2\nh e\n", json.dumps(vocab)]
    for (name, _), text in zip(GPT2_BLOB_NAMES, contents, strict=True):
        (cache / hashlib.sha1(name.encode()).hexdigest()).write_text(text, encoding="utf-8")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    data = SimpleNamespace(header={"tokenizer": {"kind": "gpt2"}}, eod_id=257, path=tmp_path)
    tok = _load_tokenizer(tokenizer_files(data, model_max_length=64), tmp_path / "tok")
    # GPT-2's split gives "hehe" and " h"; the space is byte 32, written "Ġ".
    assert tok("hehe h")["input_ids"] == [256, 256, 32, 104]
    assert tok.eos_token_id == 257

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "empty"))
    with pytest.raises(CooldownError, match=r"tokenizer 'gpt2'.*not cached"):
        tokenizer_files(data, model_max_length=64)


def test_unknown_weights_name_lists_the_available_ones(run, tmp_path):
    with pytest.raises(CooldownError) as err:
        export_checkpoint(run.ckpt, tmp_path / "hf", weights="ema")
    assert "has no 'ema' weights; --weights must be one of: raw, swa" in str(err.value)
    assert not (tmp_path / "hf").exists()


def test_out_folder_is_never_silently_replaced(run, tmp_path):
    out = tmp_path / "hf"
    export_checkpoint(run.ckpt, out)
    with pytest.raises(CooldownError, match="exists and is not empty; pass --overwrite"):
        export_checkpoint(run.ckpt, out, weights="swa")
    _, weights = import_hf(out)
    assert torch.equal(weights["norm.weight"], run.raw["norm.weight"])
    export_checkpoint(run.ckpt, out, weights="swa", overwrite=True)
    _, weights = import_hf(out)
    assert torch.equal(weights["norm.weight"], run.swa["norm.weight"])
    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("mine")
    with pytest.raises(CooldownError, match="does not look like an export"):
        export_checkpoint(run.ckpt, other, overwrite=True)
    assert (other / "todo.txt").read_text() == "mine"


def _copy_run_with_private_data(run, tmp_path) -> Path:
    """The run, copied with its data cache pointed at an empty folder of its own."""
    copy = tmp_path / "run"
    shutil.copytree(run.dir, copy)
    config = copy / "config.toml"
    old = load_run_config(config).data.cache_dir
    config.write_text(config.read_text().replace(old, str(tmp_path / "cache")))
    return copy


def test_run_without_tokenizer_is_a_clear_error(run, tmp_path):
    from cooldown.data import prepared_folder

    copy = _copy_run_with_private_data(run, tmp_path)
    ckpt = copy / "checkpoints" / f"step_{STEPS:07d}"
    with pytest.raises(CooldownError, match=r"has no tokenizer: its prepared data folder .* does"):
        export_checkpoint(ckpt, tmp_path / "hf")
    # Under another name in the run's cache, the folder is still found by its fingerprint...
    moved = tmp_path / "cache" / "renamed-by-hand"
    shutil.copytree(prepared_folder(load_run_config(run.dir / "config.toml").data), moved)
    assert moved != prepared_folder(load_run_config(copy / "config.toml").data)
    _, weights = import_hf(export_checkpoint(ckpt, tmp_path / "hf"))
    assert torch.equal(weights["norm.weight"], run.raw["norm.weight"])
    # ... but not without its tokenizer file.
    (moved / "tokenizer.json").unlink()
    with pytest.raises(CooldownError, match=r"has no tokenizer: .*tokenizer\.json is missing"):
        export_checkpoint(ckpt, tmp_path / "hf2")
    assert not (tmp_path / "hf2").exists()


def test_import_refuses_what_our_decoder_lacks(run, tmp_path):
    out = export_checkpoint(run.ckpt, tmp_path / "hf")
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "num_key_value_heads": 1}))
    with pytest.raises(
        CooldownError, match="num_key_value_heads is 1; our decoder supports only 3"
    ):
        import_hf(out)
    with pytest.raises(CooldownError, match=r"config\.json is missing"):
        import_hf(tmp_path)


def test_not_a_checkpoint_of_a_run(tmp_path):
    with pytest.raises(CooldownError, match="does not exist"):
        export_checkpoint(tmp_path / "nope", tmp_path / "hf")
    (tmp_path / "loose").mkdir()
    with pytest.raises(CooldownError, match="is not inside a run folder"):
        export_checkpoint(tmp_path / "loose", tmp_path / "hf")


def test_cli_export(run, tmp_path, capsys):
    main(["export", str(run.dir), "--out", str(tmp_path / "hf"), "--weights", "swa"])
    # A run folder: its latest checkpoint, named with its step.
    assert capsys.readouterr().out.splitlines() == [
        f"exported step {run.steps} (swa weights) of {run.ckpt}",
        str(tmp_path / "hf"),
    ]
    _, weights = import_hf(tmp_path / "hf")
    assert torch.equal(weights["tok_embeddings.weight"], run.swa["tok_embeddings.weight"])
    with pytest.raises(SystemExit) as exit_:
        main(["export", str(run.ckpt), "--out", str(tmp_path / "x"), "--format", "gguf"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip() == "error: --format 'gguf' is unknown; allowed: hf"
