"""Export a checkpoint to the Hugging Face Llama format, and import such a folder back.

    cooldown export RUN/checkpoints/step_0004000 --format hf --out llama-4000 [--weights swa]

writes a folder that `transformers.AutoModelForCausalLM.from_pretrained` loads as a
`LlamaForCausalLM` and `AutoTokenizer.from_pretrained` as a `PreTrainedTokenizerFast`:

    config.json              LlamaConfig: shapes, rms_norm_eps, rope_theta, tied embeddings, eod ids
    generation_config.json   bos = eos = the end-of-document id, so `generate` stops at a boundary
    model.safetensors        the weights under Hugging Face names, in the checkpoint's dtype
    tokenizer.json           the run's tokenizer (byte-level BPE, a copied tokenizer.json, or an
    tokenizer_config.json    equivalent one built for the `bytes` and `gpt2` tokenizers)
    special_tokens_map.json

The decoder in `cooldown.model` is Llama's: RMSNorm before attention and SwiGLU, rotary embeddings
in the rotate-half layout Hugging Face uses, no biases, and a head tied to the embedding. So the
export is a renaming with no permutation of any matrix:

    tok_embeddings                 model.embed_tokens
    layers.i.attention_norm        model.layers.i.input_layernorm
    layers.i.attention.wq|wk|wv|wo model.layers.i.self_attn.q_proj|k_proj|v_proj|o_proj
    layers.i.ffn_norm              model.layers.i.post_attention_layernorm
    layers.i.feed_forward.w1|w3|w2 model.layers.i.mlp.gate_proj|up_proj|down_proj  (w1 is the gate)
    norm                           model.norm
    output (untied only)           lm_head

The weights come from the checkpoint (`raw`) or from an averaged set stored beside them (`swa`,
`ema`, ...: `Checkpoint.extra_weights`). The model config comes from the run's config.toml and
the tokenizer from the run's prepared data folder. The folder is written under a temporary name and
renamed into place, so an interrupted export never leaves a folder that looks complete.

One difference in tokenization is inherent: transformers encodes the literal text
"<|endoftext|>" as the end-of-document id, where our tokenizers keep it as ordinary text (the only
eod ids in our shards are document boundaries).

Writing needs neither transformers nor any network access; reading it back with transformers is
what the parity test checks (logits within 1e-4 in float32).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from cooldown.checkpoint import RAW_WEIGHTS, select_weights
from cooldown.errors import CooldownError
from cooldown.fileio import atomic_write_bytes, atomic_write_json, default_file_mode, fsync_dir
from cooldown.model_sizes import ModelConfig
from cooldown.run_dir import CONFIG_FILE, RunDir

EXPORT_FORMATS = ("hf",)
HF_WEIGHTS_FILE = "model.safetensors"
HF_INDEX_FILE = "model.safetensors.index.json"

# Our parameter names -> Hugging Face Llama's; `{i}` is the layer index.
_LAYER_NAMES = {
    "attention_norm.weight": "input_layernorm.weight",
    "attention.wq.weight": "self_attn.q_proj.weight",
    "attention.wk.weight": "self_attn.k_proj.weight",
    "attention.wv.weight": "self_attn.v_proj.weight",
    "attention.wo.weight": "self_attn.o_proj.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "feed_forward.w1.weight": "mlp.gate_proj.weight",  # silu(w1 x) * w3 x: w1 is the gate
    "feed_forward.w3.weight": "mlp.up_proj.weight",
    "feed_forward.w2.weight": "mlp.down_proj.weight",
}
_GLOBAL_NAMES = {
    "tok_embeddings.weight": "model.embed_tokens.weight",
    "norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_OUR_LAYER = re.compile(r"layers\.(\d+)\.(.+)")
_HF_LAYER = re.compile(r"model\.layers\.(\d+)\.(.+)")


# --- names and configs ----------------------------------------------------------------------------


def to_hf_names(weights: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our state dict under Hugging Face Llama names (the same tensors, nothing copied)."""
    out = {}
    for name, tensor in weights.items():
        m = _OUR_LAYER.fullmatch(name)
        if name in _GLOBAL_NAMES:
            out[_GLOBAL_NAMES[name]] = tensor
        elif m and m.group(2) in _LAYER_NAMES:
            out[f"model.layers.{m.group(1)}.{_LAYER_NAMES[m.group(2)]}"] = tensor
        else:
            raise CooldownError(f"weight {name!r} has no Hugging Face Llama counterpart")
    return out


def from_hf_names(tensors: Mapping[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """The inverse of `to_hf_names`; `source` is the file named in errors."""
    layer_names = {hf: ours for ours, hf in _LAYER_NAMES.items()}
    global_names = {hf: ours for ours, hf in _GLOBAL_NAMES.items()}
    out = {}
    for name, tensor in tensors.items():
        m = _HF_LAYER.fullmatch(name)
        if name in global_names:
            out[global_names[name]] = tensor
        elif m and m.group(2) in layer_names:
            out[f"layers.{m.group(1)}.{layer_names[m.group(2)]}"] = tensor
        elif name.endswith("rotary_emb.inv_freq"):
            continue  # a buffer older transformers versions saved; recomputed from rope_theta
        else:
            raise CooldownError(
                f"{source}: weight {name!r} is not part of a Llama model we can load"
            )
    return out


def state_dict_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Name -> shape of `cooldown.model.Transformer(cfg).state_dict()`, without building it
    (a 1B model would take seconds and gigabytes just to be measured)."""
    d, hk, f, vocab = cfg.d_model, cfg.attention_width, cfg.ffn_hidden, cfg.vocab_size
    if vocab is None:
        raise CooldownError("model.vocab_size is not set; the export needs the tokenizer's")
    per_layer = {
        "attention_norm.weight": (d,),
        "attention.wq.weight": (hk, d),
        "attention.wk.weight": (hk, d),
        "attention.wv.weight": (hk, d),
        "attention.wo.weight": (d, hk),
        "ffn_norm.weight": (d,),
        "feed_forward.w1.weight": (f, d),
        "feed_forward.w3.weight": (f, d),
        "feed_forward.w2.weight": (d, f),
    }
    shapes = {"tok_embeddings.weight": (vocab, d)}
    for i in range(cfg.n_layers):
        shapes.update({f"layers.{i}.{name}": shape for name, shape in per_layer.items()})
    shapes["norm.weight"] = (d,)
    if not cfg.tie_embeddings:
        shapes["output.weight"] = (vocab, d)
    return shapes


def hf_config(cfg: ModelConfig, eod_id: int, dtype: torch.dtype) -> dict[str, Any]:
    """config.json of a LlamaForCausalLM with the shapes of `cfg` (vocab_size must be set)."""
    if cfg.vocab_size is None:
        raise CooldownError("model.vocab_size is not set; the export needs the tokenizer's")
    if cfg.d_model % cfg.n_heads:
        # transformers' LlamaConfig refuses such a shape although the model itself allows it.
        raise CooldownError(
            f"model.d_model {cfg.d_model} is not a multiple of model.n_heads {cfg.n_heads}; "
            "Hugging Face's LlamaConfig does not accept that shape"
        )
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": cfg.d_model,
        "intermediate_size": cfg.ffn_hidden,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_heads,  # full multi-head attention, no grouped queries
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "rms_norm_eps": cfg.norm_eps,
        # The legacy key: transformers 4.x reads it, 5.x turns it into rope_parameters itself.
        "rope_theta": cfg.rope_theta,
        "rope_scaling": None,
        "vocab_size": cfg.vocab_size,
        # The length of our RoPE tables; lm-evaluation-harness truncates inputs to it.
        "max_position_embeddings": cfg.max_seq_len,
        "tie_word_embeddings": cfg.tie_embeddings,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "initializer_range": cfg.init_std,
        "pretraining_tp": 1,
        "use_cache": True,
        "torch_dtype": str(dtype).removeprefix("torch."),
        "bos_token_id": eod_id,
        "eos_token_id": eod_id,
    }


def model_config_from_hf(config: Mapping[str, Any], source: str) -> ModelConfig:
    """The `ModelConfig` of a Hugging Face Llama config.json; refuses what our decoder lacks."""
    from cooldown.configio import validate

    def need(key: str) -> Any:
        if key not in config:
            raise CooldownError(f"{source}: {key} is missing")
        return config[key]

    if config.get("model_type") != "llama":
        raise CooldownError(
            f"{source}: model_type {config.get('model_type')!r} is not 'llama'; only Llama models "
            "map onto our decoder"
        )
    heads = need("num_attention_heads")
    unsupported = {
        "num_key_value_heads": (config.get("num_key_value_heads", heads), heads),
        "hidden_act": (config.get("hidden_act", "silu"), "silu"),
        "attention_bias": (bool(config.get("attention_bias", False)), False),
        "mlp_bias": (bool(config.get("mlp_bias", False)), False),
        "pretraining_tp": (config.get("pretraining_tp", 1) or 1, 1),
    }
    for key, (got, expected) in unsupported.items():
        if got != expected:
            raise CooldownError(
                f"{source}: {key} is {got!r}; our decoder supports only {expected!r}"
            )
    rope = config.get("rope_parameters") or {}
    scaling = config.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", scaling.get("rope_type", scaling.get("type", "default")))
    if rope_type != "default":
        raise CooldownError(
            f"{source}: rope_type {rope_type!r} is not supported; our decoder uses plain RoPE"
        )
    theta = rope.get("rope_theta", config.get("rope_theta", 10000.0))
    hidden = need("hidden_size")
    return validate(
        ModelConfig,
        {
            "n_layers": need("num_hidden_layers"),
            "d_model": hidden,
            "n_heads": heads,
            "head_dim": config.get("head_dim") or hidden // heads,
            "ffn_hidden": need("intermediate_size"),
            "vocab_size": need("vocab_size"),
            "max_seq_len": need("max_position_embeddings"),
            "tie_embeddings": bool(config.get("tie_word_embeddings", False)),
            "norm_eps": config.get("rms_norm_eps", 1e-6),
            "rope_theta": float(theta),
            "init_std": config.get("initializer_range", 0.02),
        },
        prefix=source,
    )


# --- what is exported -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportSource:
    """A checkpoint resolved to everything an export needs."""

    checkpoint: Path
    run_dir: Path
    step: int
    weights_name: str
    model_cfg: ModelConfig
    weights: dict[str, torch.Tensor]
    data: Any  # cooldown.data.TokenData: the run's prepared data, which holds its tokenizer


def resolve_checkpoint(path: str | os.PathLike) -> tuple[Path, Path]:
    """(checkpoint folder, run folder) for a checkpoint folder, or a run folder (its latest)."""
    from cooldown.checkpoint import latest_checkpoint, skipped_checkpoints

    path = Path(path)
    if (path / CONFIG_FILE).is_file():
        latest = latest_checkpoint(path)
        if latest is None:
            skipped = skipped_checkpoints(path)
            why = (
                f" ({skipped[0][1]})"
                if skipped
                else " (it has not saved one yet: see train.checkpoint_interval)"
            )
            raise CooldownError(f"run {path} has no complete checkpoint to export{why}")
        return latest, path
    if not path.is_dir():
        raise CooldownError(f"checkpoint {path} does not exist")
    run_dir = path.parent.parent
    if path.parent.name != "checkpoints" or not (run_dir / CONFIG_FILE).is_file():
        raise CooldownError(
            f"checkpoint {path} is not inside a run folder: expected RUN/checkpoints/step_NNNNNNN "
            "with RUN/config.toml (the model config and the data, hence the tokenizer, come from it)"
        )
    return path, run_dir


def run_data(run_dir: Path, data_cfg) -> Any:
    """The run's prepared data folder, opened; a clear error when it or its tokenizer is gone.

    The folder is where `prepare` puts the run's [data]; when that cannot be worked out (the
    source or tokenizer file it was made from is gone), a folder in the same cache whose
    fingerprint is the one in the run's manifest.json is just as good: it holds the same tokens.
    """
    from cooldown.data import load_prepared, prepared_folder
    from cooldown.data.shards import HEADER_NAME, read_header

    fingerprint = _manifest_fingerprint(run_dir)
    try:
        folder = prepared_folder(data_cfg)
    except CooldownError as exc:
        folder = _folder_by_fingerprint(data_cfg.resolved_cache_dir(), fingerprint)
        if folder is None:
            raise CooldownError(
                f"run {run_dir} has no tokenizer: its prepared data folder cannot be located "
                f"({exc})"
            ) from None
    if not (folder / HEADER_NAME).is_file():
        folder = _folder_by_fingerprint(data_cfg.resolved_cache_dir(), fingerprint) or folder
    if not (folder / HEADER_NAME).is_file():
        raise CooldownError(
            f"run {run_dir} has no tokenizer: its prepared data folder {folder} does not exist; "
            "prepare it again (`cooldown data prepare` with the run's [data] settings)"
        )
    tok_file = read_header(folder)["tokenizer"].get("file")
    if tok_file is not None and not (folder / tok_file).is_file():
        raise CooldownError(
            f"run {run_dir} has no tokenizer: {folder / tok_file} is missing from its prepared "
            "data folder; restore it or prepare the data again into a fresh cache_dir"
        )
    data = load_prepared(folder)
    if fingerprint and fingerprint != data.fingerprint:
        raise CooldownError(
            f"run {run_dir} was trained on data with fingerprint {fingerprint}, but its prepared "
            f"data folder {folder} now holds {data.fingerprint}: the tokenizer may differ"
        )
    return data


def _manifest_fingerprint(run_dir: Path) -> str | None:
    manifest = RunDir(run_dir).manifest()
    return None if manifest is None else manifest.get("data_fingerprint")


def _folder_by_fingerprint(cache_dir: Path, fingerprint: str | None) -> Path | None:
    from cooldown.data.shards import HEADER_NAME, header_fingerprint

    if fingerprint is None or not cache_dir.is_dir():
        return None
    for header in sorted(cache_dir.glob(f"*/{HEADER_NAME}")):
        if header.parent.name.startswith("."):
            continue  # a preparation in progress
        try:
            if header_fingerprint(json.loads(header.read_text(encoding="utf-8"))) == fingerprint:
                return header.parent
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue  # not a prepared folder of ours
    return None


def load_export_source(checkpoint: str | os.PathLike, weights: str = RAW_WEIGHTS) -> ExportSource:
    """Resolve a checkpoint (or a run's latest), its run config, data and the chosen weights."""
    from cooldown.checkpoint import check_weights_fit, load_checkpoint
    from cooldown.config import load_run_config

    ckpt_path, run_dir = resolve_checkpoint(checkpoint)
    cfg = load_run_config(run_dir / CONFIG_FILE)
    data = run_data(run_dir, cfg.data)
    model_cfg = cfg.model.with_vocab(cfg.model.vocab_size or data.vocab_size)
    ckpt = load_checkpoint(ckpt_path)
    chosen = select_weights(ckpt, weights)
    shapes = state_dict_shapes(model_cfg)
    source = ckpt_path / (HF_WEIGHTS_FILE if weights == RAW_WEIGHTS else f"{weights}.safetensors")
    check_weights_fit(shapes, chosen, source=str(source))
    return ExportSource(ckpt_path, run_dir, ckpt.step, weights, model_cfg, chosen, data)


# --- the tokenizer --------------------------------------------------------------------------------


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table, which byte-level BPE vocabularies are written in."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    table, extra = {b: chr(b) for b in printable}, 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def _byte_level_json(
    vocab: dict[str, int], merges: list[tuple[str, str]], use_regex: bool
) -> bytes:
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    from cooldown.data.tokenizers import EOD_TOKEN

    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=use_regex)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(EOD_TOKEN, special=True, normalized=False)])
    return tok.to_str().encode("utf-8")


def bytes_tokenizer_json() -> bytes:
    """A tokenizer.json equal to our `bytes` tokenizer: byte b is id b, `<|endoftext|>` is 256.

    A byte-level BPE with no merges: every byte stays its own token. No regex split is needed
    since nothing merges across characters.
    """
    table = _bytes_to_unicode()
    return _byte_level_json({table[b]: b for b in range(256)}, [], use_regex=False)


def gpt2_tokenizer_json() -> bytes:
    """GPT-2's tokenizer.json, built from the encoder.json and vocab.bpe in tiktoken's cache."""
    from cooldown.data.tokenizers import gpt2_cached_files, tiktoken_cache_dirs

    found = gpt2_cached_files()
    if found is None:
        where = " or ".join(str(d) for d in tiktoken_cache_dirs()) or "nowhere"
        raise CooldownError(
            f"tokenizer 'gpt2': its files (vocab.bpe, encoder.json) are not cached in {where}, "
            "so the export would have no tokenizer; cache them once with network access"
        )
    merges_file, vocab_file = found
    vocab = json.loads(vocab_file.read_text(encoding="utf-8"))
    lines = merges_file.read_text(encoding="utf-8").splitlines()
    merges = [tuple(line.split()) for line in lines if line and not line.startswith("#version")]
    return _byte_level_json(vocab, merges, use_regex=True)  # type: ignore[arg-type]


def tokenizer_files(data, model_max_length: int) -> dict[str, bytes]:
    """tokenizer.json, tokenizer_config.json and special_tokens_map.json for the run's tokenizer."""
    from tokenizers import Tokenizer

    from cooldown.data.tokenizers import EOD_TOKEN

    kind = data.header["tokenizer"]["kind"]
    if kind == "bytes":
        tok_json, eod_token = bytes_tokenizer_json(), EOD_TOKEN
    elif kind == "gpt2":
        tok_json, eod_token = gpt2_tokenizer_json(), EOD_TOKEN
    else:
        tok = data.tokenizer()
        tok_json, eod_token = tok.file_bytes(), tok.eod_token
    if Tokenizer.from_str(tok_json.decode("utf-8")).token_to_id(eod_token) != data.eod_id:
        raise CooldownError(
            f"the exported tokenizer maps {eod_token!r} to another id than the data's eod id "
            f"{data.eod_id} ({data.path})"
        )
    special = {"bos_token": eod_token, "eos_token": eod_token}
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **special,
        "model_max_length": model_max_length,
        # Documents were never given a leading or trailing special token in training.
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
    }
    return {
        "tokenizer.json": tok_json,
        "tokenizer_config.json": (json.dumps(config, indent=2) + "\n").encode(),
        "special_tokens_map.json": (json.dumps(special, indent=2) + "\n").encode(),
    }


# --- writing --------------------------------------------------------------------------------------


def export_checkpoint(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    *,
    format: str = "hf",
    weights: str = RAW_WEIGHTS,
    overwrite: bool = False,
) -> Path:
    """Export a checkpoint (or a run's latest) to `out`; returns the folder written."""
    if format not in EXPORT_FORMATS:
        raise CooldownError(f"--format {format!r} is unknown; allowed: {', '.join(EXPORT_FORMATS)}")
    out = Path(out).expanduser().absolute()
    _check_out(out, overwrite)  # before the slow part
    return write_hf_folder(load_export_source(checkpoint, weights), out, overwrite=overwrite)


def exported_step(folder: str | os.PathLike) -> tuple[int, str, str]:
    """(step, weights, checkpoint) an exported folder holds, from its weights file's metadata."""
    from safetensors import safe_open

    with safe_open(Path(folder) / HF_WEIGHTS_FILE, framework="pt", device="cpu") as f:
        meta = f.metadata() or {}
    return int(meta["cooldown.step"]), meta["cooldown.weights"], meta["cooldown.checkpoint"]


def write_hf_folder(src: ExportSource, out: Path, *, overwrite: bool = False) -> Path:
    """Write the Hugging Face folder for `src` into `out`, atomically."""
    out = Path(out).absolute()
    _check_out(out, overwrite)
    tensors = to_hf_names(src.weights)
    if src.model_cfg.tie_embeddings:
        tensors.pop("lm_head.weight", None)
    dtype = tensors["model.embed_tokens.weight"].dtype
    eod_id = src.data.eod_id
    files = tokenizer_files(src.data, model_max_length=src.model_cfg.max_seq_len)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        atomic_write_json(tmp / "config.json", hf_config(src.model_cfg, eod_id, dtype))
        atomic_write_json(
            tmp / "generation_config.json",
            {"bos_token_id": eod_id, "eos_token_id": eod_id, "_from_model_config": True},
        )
        metadata = {
            "format": "pt",  # transformers refuses safetensors files without it
            "cooldown.checkpoint": str(src.checkpoint),
            "cooldown.step": str(src.step),
            "cooldown.weights": src.weights_name,
        }
        # Private contiguous copies: safetensors refuses tensors that share memory.
        stored = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
        save_file(stored, tmp / HF_WEIGHTS_FILE, metadata=metadata)
        os.chmod(tmp / HF_WEIGHTS_FILE, default_file_mode())  # safetensors creates it 0600
        _fsync_file(tmp / HF_WEIGHTS_FILE)
        for name, data in files.items():
            atomic_write_bytes(tmp / name, data)
        fsync_dir(tmp)
        _move_into_place(tmp, out, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _check_out(out: Path, overwrite: bool) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise CooldownError(f"--out {out} exists and is not a folder")
    if not any(out.iterdir()):
        return
    if not overwrite:
        raise CooldownError(f"--out {out} exists and is not empty; pass --overwrite to replace it")
    if not (out / "config.json").is_file():
        raise CooldownError(
            f"--out {out} is not empty and does not look like an export (no config.json); "
            "--overwrite replaces only earlier exports"
        )


def _move_into_place(tmp: Path, out: Path, overwrite: bool) -> None:
    if out.exists() and not any(out.iterdir()):
        out.rmdir()
    if not out.exists():
        os.rename(tmp, out)
        fsync_dir(out.parent)
        return
    _check_out(out, overwrite)  # something appeared meanwhile
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    shutil.rmtree(old, ignore_errors=True)
    os.rename(out, old)
    os.rename(tmp, out)
    fsync_dir(out.parent)
    shutil.rmtree(old)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- reading back ---------------------------------------------------------------------------------


def import_hf(folder: str | os.PathLike) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """(ModelConfig, state dict for `cooldown.model.Transformer`) of a Hugging Face Llama folder.

    Reads config.json and model.safetensors (or a sharded model.safetensors.index.json); tensors
    keep their stored dtype, so an export read back is bitwise the checkpoint it came from.
    """
    folder = Path(folder)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise CooldownError(f"{folder} is not a Hugging Face model folder: config.json is missing")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CooldownError(f"{config_file} is not valid JSON: {exc}") from None
    cfg = model_config_from_hf(config, str(config_file))
    tensors = _read_hf_tensors(folder)
    weights = from_hf_names(tensors, str(folder))
    if cfg.tie_embeddings and "output.weight" in weights:
        head = weights.pop("output.weight")
        if not torch.equal(head, weights.get("tok_embeddings.weight", head)):
            raise CooldownError(
                f"{config_file} says tie_word_embeddings, but lm_head.weight differs from "
                "model.embed_tokens.weight"
            )
    from cooldown.checkpoint import check_weights_fit

    check_weights_fit(state_dict_shapes(cfg), weights, source=str(folder))
    return cfg, weights


def _read_hf_tensors(folder: Path) -> dict[str, torch.Tensor]:
    single, index = folder / HF_WEIGHTS_FILE, folder / HF_INDEX_FILE
    if single.is_file():
        files = [single]
    elif index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise CooldownError(f"{index} is not a safetensors index: {exc}") from None
        names = sorted(set(weight_map.values()))
        if not all(isinstance(n, str) and n == Path(n).name for n in names):
            raise CooldownError(f"{index} names files outside {folder}")
        files = [folder / n for n in names]
    else:
        raise CooldownError(
            f"{folder} has no {HF_WEIGHTS_FILE} (or {HF_INDEX_FILE}); only safetensors weights "
            "are read (pickled .bin files could run code)"
        )
    tensors: dict[str, torch.Tensor] = {}
    for file in files:
        try:
            with safe_open(file, framework="pt", device="cpu") as f:
                tensors.update({name: f.get_tensor(name) for name in f.keys()})  # noqa: SIM118
        except (SafetensorError, FileNotFoundError) as exc:
            raise CooldownError(f"{file} cannot be read: {exc}") from None
    return tensors
