"""Our training step vs independent implementations of the same model, measured side by side.

    python benchmarks/vs_reference.py                       # both sizes, fp32/bf16, eager/compile
    python benchmarks/vs_reference.py --sizes 1M --modes eager --rounds 5   # a quick look

Three implementations train the same Llama-style model (layers, width, heads, SwiGLU width, RoPE
theta 10000, tied embeddings, RMSNorm, no biases) on the same random batch:

- `ours`: cooldown's `Transformer` stepped as `cooldown train` steps it: the paper's AdamW groups
  (`build_optimizer`, fused on CUDA), gradient clipping to 1.0 and the divergence record kept on the
  device (`cooldown.step_health`), no host read.
- `hf`: Hugging Face `LlamaForCausalLM` (sdpa attention) with torch AdamW, clipping to 1.0 and the
  cross-entropy of its logits against the same targets.
- `nanogpt`: a nanoGPT-style minimal loop around our model: torch AdamW, clip, `loss.item()` each
  step (nanoGPT logs every iteration by default).

Within one (size, precision, mode) group the three are built, warmed up (compile happens there),
then timed one step each in rotation for `--rounds` rounds, so a busy shared machine slows them
alike; the figures are medians and the ratios ours/reference come from the same rounds. FLOPs follow
cooldown's "6N+attn" convention (6 x non-embedding parameters + 12 x layers x width x seq per token,
see `cooldown.flops`). Peak memory: on CUDA `max_memory_allocated` per step; on CPU the peak RSS of a
separate process per implementation after 2 eager steps, every such process with the same imports
(so the figures include torch's ~0.3 GB; compare their differences; eager only). Writes a JSON file.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import torch
import torch.nn.functional as F

from cooldown.device import autocast
from cooldown.flops import training_flops_per_step
from cooldown.model import Transformer
from cooldown.model_sizes import ModelConfig, non_embedding_param_count, param_count
from cooldown.optim import OptimConfig, build_optimizer
from cooldown.step_health import StepHealth, grad_norm

SIZES = {
    # tiny-0.8M's shape; and a ~10M shape of the same family (head dim 64 as in the paper's ladder).
    "1M": {"n_layers": 8, "d_model": 80, "n_heads": 5, "ffn_multiple_of": 32},
    "10M": {"n_layers": 8, "d_model": 320, "n_heads": 5, "ffn_multiple_of": 64},
}
IMPLS = ("ours", "hf", "nanogpt")
LR, CLIP, CONVENTION = 1e-3, 1.0, "6N+attn"


def model_config(size: str, args) -> ModelConfig:
    return ModelConfig(**SIZES[size], vocab_size=args.vocab, max_seq_len=args.seq_len)


def hf_llama(cfg: ModelConfig):
    from transformers import LlamaConfig, LlamaForCausalLM

    hf_cfg = LlamaConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.d_model,
        intermediate_size=cfg.ffn_hidden,
        num_hidden_layers=cfg.n_layers,
        num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.n_heads,
        head_dim=cfg.head_dim,
        max_position_embeddings=cfg.max_seq_len,
        rope_theta=cfg.rope_theta,
        rms_norm_eps=cfg.norm_eps,
        tie_word_embeddings=cfg.tie_embeddings,
        attention_bias=False,
        mlp_bias=False,
        use_cache=False,
        attn_implementation="sdpa",
    )
    return LlamaForCausalLM(hf_cfg)


class Impl:
    """One implementation's model, optimizer and training step."""

    def __init__(self, name: str, cfg: ModelConfig, device, precision: str, compile_: bool):
        self.name, self.device, self.precision = name, device, precision
        torch.manual_seed(0)
        if name == "hf":
            self.model = hf_llama(cfg).to(device)
        else:
            self.model = Transformer(cfg).to(device)
        self.model.train()
        if name == "ours":
            self.opt = build_optimizer(self.model, OptimConfig(lr=LR, grad_clip=CLIP)).optimizer
            self.health = StepHealth(device)
        else:
            self.opt = torch.optim.AdamW(self.model.parameters(), lr=LR, weight_decay=0.1)
        self.forward = self.model
        if compile_:
            if name == "hf":
                self.forward = torch.compile(self.model)
            else:
                self.model.compile()  # in place, as `cooldown train` does
        self.steps = 0

    def loss(self, x, y):
        if self.name == "hf":
            logits = self.forward(input_ids=x).logits
            return F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.view(-1))
        return self.model.loss(x, y)

    def step(self, x, y) -> None:
        with autocast(self.device, self.precision):
            loss = self.loss(x, y)
        loss.backward()
        self.steps += 1
        if self.name == "ours":
            self.health.observe(self.steps, loss.detach().double(), grad_norm(self.model, CLIP))
        else:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), CLIP)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        if self.name == "nanogpt":
            loss.item()


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_group(size: str, precision: str, mode: str, args, device) -> dict:
    cfg = model_config(size, args)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randint(0, cfg.vocab_size, (2, args.batch_size, args.seq_len), generator=gen)
    x, y = x.to(device), y.to(device)
    impls = [Impl(n, cfg, device, precision, mode == "compile") for n in IMPLS]
    warm_s = {}
    for impl in impls:
        t0 = time.perf_counter()
        for _ in range(args.warmup):
            impl.step(x, y)
        _sync(device)
        warm_s[impl.name] = time.perf_counter() - t0
    times: dict[str, list[float]] = {i.name: [] for i in impls}
    peak: dict[str, int] = {}
    for _ in range(args.rounds):
        for impl in impls:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            _sync(device)
            t0 = time.perf_counter()
            impl.step(x, y)
            _sync(device)
            times[impl.name].append(time.perf_counter() - t0)
            if device.type == "cuda":
                peak[impl.name] = torch.cuda.max_memory_allocated(device)
    tokens = args.batch_size * args.seq_len
    flops = training_flops_per_step(cfg, args.seq_len, tokens, CONVENTION)
    out = {"size": size, "precision": precision, "mode": mode, "impls": {}}
    out["params"] = param_count(cfg, norms=True)
    out["non_embedding_params"] = non_embedding_param_count(cfg)
    for name, ts in times.items():
        med = statistics.median(ts)
        out["impls"][name] = {
            "ms_per_step": 1000 * med,
            "tokens_per_s": tokens / med,
            "gflop_per_s": flops / med / 1e9,
            "warmup_s": warm_s[name],
            "peak_memory_bytes": peak.get(name),
        }
    ours = out["impls"]["ours"]["tokens_per_s"]
    out["ours_over"] = {n: ours / out["impls"][n]["tokens_per_s"] for n in ("hf", "nanogpt")}
    return out


def cpu_peak_memory(size: str, precision: str, impl: str, args) -> int:
    """Peak RSS of a fresh process (torch and transformers imported) after 2 eager steps of one
    implementation: the differences between implementations are their working memory."""
    cmd = [sys.executable, __file__, "--memory-probe", f"{size},{precision},{impl}"]
    cmd += ["--batch-size", str(args.batch_size), "--seq-len", str(args.seq_len)]
    cmd += ["--vocab", str(args.vocab), "--threads", str(args.threads)]
    return int(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.split()[-1])


def memory_probe(spec: str, args) -> None:
    size, precision, name = spec.split(",")
    cfg = model_config(size, args)
    x, y = torch.randint(0, cfg.vocab_size, (2, args.batch_size, args.seq_len))
    import transformers  # noqa: F401  (every probe carries the same imports)

    if name != "none":  # "none": the imports and the batch alone, the baseline
        impl = Impl(name, cfg, torch.device("cpu"), precision, compile_=False)
        for _ in range(2):
            impl.step(x, y)
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent across exec.
    status = Path("/proc/self/status").read_text()
    print(int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) * 1024)


def fill_memory(path: Path, args) -> None:
    """(Re)measure the eager groups' CPU peak memory in the result file `path`, in place."""
    doc = json.loads(path.read_text())
    for r in doc["results"]:
        if r["mode"] == "eager":
            r["memory_baseline_bytes"] = cpu_peak_memory(r["size"], r["precision"], "none", args)
            for name in IMPLS:
                r["impls"][name]["peak_memory_bytes"] = cpu_peak_memory(
                    r["size"], r["precision"], name, args
                )
    doc["memory_command"] = " ".join(sys.argv)
    path.write_text(json.dumps(doc, indent=1) + "\n")
    print(markdown(doc["results"]))


def markdown(results: list[dict]) -> str:
    lines = [
        "| size | precision | mode | impl | ms/step | tokens/s | GFLOP/s (6N+attn) | peak MB "
        "| ours / impl |",
        "|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        for name, m in r["impls"].items():
            mem = m["peak_memory_bytes"]
            ratio = r["ours_over"].get(name)
            lines.append(
                f"| {r['size']} | {r['precision']} | {r['mode']} | {name} | {m['ms_per_step']:.1f} "
                f"| {m['tokens_per_s']:,.0f} | {m['gflop_per_s']:.1f} "
                f"| {'-' if mem is None else f'{mem / 2**20:.0f}'} "
                f"| {'-' if ratio is None else f'{ratio:.2f}x'} |"
            )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1M,10M")
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--modes", default="eager,compile")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--vocab", type=int, default=2048)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (CPU)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", default=str(Path(__file__).with_name("vs_reference.json")))
    p.add_argument("--memory-probe", help=argparse.SUPPRESS)
    p.add_argument("--memory-into", help="only (re)measure the CPU peak memory of a result file")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_probe:
        return memory_probe(args.memory_probe, args)
    if args.memory_into:
        return fill_memory(Path(args.memory_into), args)
    device = torch.device(args.device)
    results = []
    for size in args.sizes.split(","):
        for precision in args.precisions.split(","):
            for mode in args.modes.split(","):
                r = time_group(size, precision, mode, args, device)
                if device.type == "cpu" and mode == "eager":
                    for name in IMPLS:
                        r["impls"][name]["peak_memory_bytes"] = cpu_peak_memory(
                            size, precision, name, args
                        )
                results.append(r)
                print(markdown([r]).splitlines()[-3:], flush=True, file=sys.stderr)
    doc = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "machine": {
            "platform": platform.platform(),
            "cpu": platform.processor(),
            "device": str(device),
            "threads": args.threads,
            "torch": torch.__version__,
        },
        "batch_size": args.batch_size,
        "seq_len": args.seq_len,
        "vocab": args.vocab,
        "flop_convention": CONVENTION,
        "rounds": args.rounds,
        "warmup": args.warmup,
        "results": results,
    }
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    print(markdown(results))


if __name__ == "__main__":
    main()
