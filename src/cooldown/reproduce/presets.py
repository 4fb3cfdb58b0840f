"""Sizes and budgets of `cooldown reproduce`: `smoke` (tests, about a minute), `cpu` (the README's
main job, within 15 min on 2 cores from a fresh clone) and `paper` (the paper's grid, paper-facts
section 3).

Budgets are in optimizer steps of `batch_size` x `seq_len` tokens. The ablations (a)-(f) share one
model and three budgets; the constant-LR run goes to the largest budget and every cooldown branches
from it. The peak LR of each schedule is not fixed here: both cosine and constant + cooldown are
swept over `lr_grid` at `sweep_budget` (the paper's LR-sensitivity design) and every later run of
that schedule uses its own best LR. Every claim is then judged on the same validation documents
(the first `val_doc_tokens` predicted tokens of each), by a paired bootstrap interval.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from cooldown.errors import CooldownError

PRESET_NAMES = ("smoke", "cpu", "paper")


@dataclass(frozen=True)
class ScalingSize:
    name: str
    model: dict  # ModelConfig fields (a preset name or explicit shape)
    budgets: tuple[int, int, int]  # total steps of the three budgets
    batch_size: int | None = None  # sequences per step when not the preset's
    # Cosine peak when not the preset's scaling_lr; the constant LR is it times the ratio of the
    # best constant to the best cosine LR of the (a) sweep.
    lr: float | None = None


@dataclass(frozen=True)
class Preset:
    name: str
    data: dict  # DataConfig fields
    model: dict  # the ablation model
    seq_len: int
    batch_size: int
    budgets: tuple[int, int, int]  # (a): total steps
    warmup_steps: int
    lr_grid: tuple[float, ...]  # peak LRs swept for cosine and for constant + cooldown
    seeds: tuple[int, ...]  # seeds of (a) and of the linear / main-shape pair of (b)
    eval_interval: int
    eval_batches: int
    shapes: tuple[str, ...] = ("linear", "1-sqrt", "cosine", "mirror-cosine", "1-square")
    lengths: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4)
    cooldown_frac: float = 0.2
    main_shape: str = "1-sqrt"
    swa_window: int = 50
    lawa_windows: tuple[int, ...] = (4,)
    sf_betas: tuple[tuple[float, float], ...] = ((0.9, 0.95), (0.95, 0.99))
    interpolation_points: int = 9
    scaling: tuple[ScalingSize, ...] = ()
    scaling_lr: float = 1e-2
    scaling_shape: str = "linear"  # the paper's sweep used linear 20% cooldowns
    # Evaluation interval of the (g) runs: dense enough that a loss-curve law can be fitted on a
    # trunk plus one branch (the `cooldown-predicted` points); None: eval_interval.
    scaling_eval_interval: int | None = None
    fit_bootstrap: int = 20
    predict_bootstrap: int = 10
    workers: int = 2
    precision: str = "fp32"
    device: str = "cpu"
    sweep_budget: int | None = None  # the budget of the LR sweep (None: the smallest)
    # The paired evaluation: every validation document's first `val_doc_tokens` predicted tokens,
    # the same tokens for every run, resampled by document in the bootstrap.
    val_doc_tokens: int = 256
    n_boot: int = 2000
    # Non-inferiority margin of the "matches" claims (nats/token): held when the 95% interval of
    # (new - reference) lies below it, did not hold when it lies above it.
    margin: float = 0.01
    # Model sizes of the MPL paper's GPU curves the law is fitted on and checked against.
    real_curve_sizes: tuple[str, ...] = ("25M", "100M", "400M")
    # (i): a Muon constant run with cooldowns; (j): merges of the constant runs' checkpoints kept
    # every `merge_every` steps over the main cooldown's window (0: no merges).
    muon: bool = True
    merge_every: int = 20
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        # (a) picks each schedule's best LR and (h) checks the law at the others.
        if len(self.lr_grid) < 2:
            raise CooldownError(f"preset {self.name}: lr_grid needs at least two peak LRs")

    @property
    def lr_sweep_budget(self) -> int:
        return self.sweep_budget or self.budgets[0]

    def to_dict(self) -> dict:
        return asdict(self)


_TINY_DATA = {"source": "stdlib", "max_bytes": 1_500_000, "val_fraction": 0.1, "vocab_size": 512}
# The whole embedded corpus (670 files, 11.4 MB of Python 3.11's stdlib): 45% of the documents held
# out gives 283 validation documents and 3.0M training tokens, more than the largest run reads
# (600 x 1,024 = 0.61M), so no run repeats data.
_CPU_DATA = {"source": "stdlib", "val_fraction": 0.45, "vocab_size": 512}


def _shape(layers: int, width: int, heads: int) -> dict:
    return {"n_layers": layers, "d_model": width, "n_heads": heads, "ffn_multiple_of": 32}


SMOKE = Preset(
    name="smoke",
    data=_TINY_DATA,
    model={"preset": "tiny-0.05M", "max_seq_len": 64},
    seq_len=64,
    batch_size=16,
    budgets=(40, 80, 120),
    warmup_steps=10,
    lr_grid=(1e-2, 3e-2),
    seeds=(0, 1),
    eval_interval=10,
    eval_batches=2,
    swa_window=10,
    lawa_windows=(2,),
    interpolation_points=5,
    scaling=tuple(
        ScalingSize(f"w{w}", {**_shape(2, w, 1), "max_seq_len": 64}, (30, 60, 90))
        for w in (8, 16, 24, 32)
    ),
    fit_bootstrap=0,
    predict_bootstrap=0,
    scaling_eval_interval=4,
    val_doc_tokens=64,
    merge_every=8,
    n_boot=200,
    real_curve_sizes=("25M",),
)

CPU = Preset(
    name="cpu",
    data=_CPU_DATA,
    # 4 layers x width 64 (246k parameters with the 512-token vocabulary), fp32. Pilots on this
    # 2-core CPU (issue 15 note): bf16 autocast ran at 0.65-1.02x fp32's tokens/s from 70k to
    # 1.7M parameters, so fp32; width 64 costs ~1.5x width 32 per token (the step is overhead-
    # bound at these sizes) and its constant + cooldown run reached 3.60 against width 32's 3.89
    # nats/token (300 steps, logged evaluation). The 300-step LR sweep on the paired evaluation:
    # cosine best at 2.5e-3 and 5e-3 (4.015, 4.016), constant + 20% 1-sqrt cooldown at 2.5e-3
    # (3.806; 1.25e-3 4.095, 5e-3 3.874), both collapsing at 1e-2.
    model={**_shape(4, 64, 4), "max_seq_len": 64},
    seq_len=64,
    batch_size=16,
    # Three seeds of 600-step runs at width 64 are what fits 15 minutes with the set-up: the
    # first fresh-clone run at (300, 600, 900) was on course for ~17 minutes.
    budgets=(200, 400, 600),
    warmup_steps=50,
    lr_grid=(1.25e-3, 2.5e-3, 5e-3, 1e-2),
    seeds=(0, 1, 2),
    eval_interval=25,
    eval_batches=8,
    swa_window=50,
    lawa_windows=(4,),
    # Per-size cosine peaks from the 300-step pilots ({2.5e-3, 5e-3, 1e-2, 2e-2}): 4x32 best at
    # 1e-2, 4x64 at 5e-3; 4x16 and 4x48 take their neighbour's. Each size's constant LR is its
    # cosine peak times the ratio of the two best LRs of the (a) sweep.
    scaling=(
        ScalingSize("4x16", {**_shape(4, 16, 1), "max_seq_len": 64}, (100, 200, 300), lr=1e-2),
        ScalingSize("4x32", {**_shape(4, 32, 2), "max_seq_len": 64}, (100, 200, 300), lr=1e-2),
        ScalingSize("4x48", {**_shape(4, 48, 3), "max_seq_len": 64}, (100, 200, 300), lr=5e-3),
        ScalingSize("4x64", {**_shape(4, 64, 4), "max_seq_len": 64}, (100, 200, 300), lr=5e-3),
    ),
    scaling_eval_interval=10,
)


def _paper_size(name: str, budgets: tuple[int, int, int]) -> ScalingSize:
    return ScalingSize(name, {"preset": name}, budgets)


PAPER = Preset(
    name="paper",
    data={"source": "hf:DKYoon/SlimPajama-6B", "tokenizer": "gpt2"},
    model={"preset": "124M"},
    seq_len=512,
    batch_size=200,
    budgets=(15_000, 25_000, 35_000),
    warmup_steps=300,
    lr_grid=(1e-3, 2e-3, 4e-3),
    seeds=(0,),
    eval_interval=500,
    eval_batches=32,
    swa_window=500,
    lawa_windows=(5,),
    interpolation_points=11,
    scaling=(
        _paper_size("33M", (3_000, 7_000, 10_000)),
        _paper_size("53M", (3_750, 7_500, 11_250)),
        _paper_size("60M", (7_500, 12_500, 17_500)),
        _paper_size("93M", (10_000, 17_500, 25_000)),
        _paper_size("124M", (15_000, 25_000, 35_000)),
        _paper_size("151M", (25_000, 37_500, 50_000)),
        _paper_size("210M", (37_500, 50_000, 62_500)),
        ScalingSize("360M", {"preset": "360M"}, (25_000, 37_500, 50_000), batch_size=400),
    ),
    scaling_lr=2e-3,
    val_doc_tokens=1024,
    fit_bootstrap=100,
    predict_bootstrap=50,
    workers=1,
    precision="bf16",
    device="cuda",
)

PRESETS = {"smoke": SMOKE, "cpu": CPU, "paper": PAPER}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise CooldownError(f"--preset: {name!r} is not one of {', '.join(PRESET_NAMES)}")
    return PRESETS[name]
