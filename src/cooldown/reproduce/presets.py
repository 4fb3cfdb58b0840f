"""Sizes and budgets of `cooldown reproduce`: `smoke` (tests, < 2 min), `cpu` (the README's main
job, ~10 min on 2 cores) and `paper` (the paper's grid, paper-facts section 3).

Budgets are in optimizer steps of `batch_size` x `seq_len` tokens. The ablations (a)-(f) share one
model and three budgets; the constant-LR run goes to the largest budget and every cooldown branches
from it. Learning rates come from pilot runs on the embedded corpus: tiny models far from
convergence show no cooldown gain at low LR (the gain is the noise the cooldown removes), so the
tiny presets use a high cosine peak with the constant LR at half of it, as the paper does.
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
    lr: float | None = None  # cosine peak when not the preset's scaling_lr (constant: half)


@dataclass(frozen=True)
class Preset:
    name: str
    data: dict  # DataConfig fields
    model: dict  # the ablation model
    seq_len: int
    batch_size: int
    budgets: tuple[int, int, int]  # (a): total steps
    warmup_steps: int
    lr_cosine: float  # cosine peak; the constant LR is half of it
    seeds: tuple[int, ...]  # seeds of (a); the other ablations use the first
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
    extra: dict = field(default_factory=dict)

    @property
    def lr_constant(self) -> float:
        return self.lr_cosine / 2

    def to_dict(self) -> dict:
        return asdict(self)


_TINY_DATA = {"source": "stdlib", "max_bytes": 1_500_000, "val_fraction": 0.1, "vocab_size": 512}


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
    lr_cosine=3e-2,
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
)

CPU = Preset(
    name="cpu",
    data=_TINY_DATA,
    # 4 layers x width 32 (about 70k parameters with the 512-token vocabulary). Pilots at 600
    # steps: the best cosine peak of {3e-2, 1e-2, 3e-3} was 1e-2 for widths 16 and 32 and 3e-3
    # for 48; tiny-0.05M (width 16) at its best cosine LR showed no cooldown gain, width 32 did.
    model={**_shape(4, 32, 2), "max_seq_len": 64},
    seq_len=64,
    batch_size=16,
    budgets=(300, 600, 900),
    warmup_steps=50,
    lr_cosine=1e-2,
    seeds=(0, 1, 2),
    eval_interval=50,
    eval_batches=8,
    swa_window=75,
    lawa_windows=(4,),
    scaling=(
        ScalingSize("4x16", {**_shape(4, 16, 1), "max_seq_len": 64}, (200, 400, 600), lr=1e-2),
        ScalingSize("4x32", {**_shape(4, 32, 2), "max_seq_len": 64}, (200, 400, 600), lr=1e-2),
        ScalingSize("4x48", {**_shape(4, 48, 3), "max_seq_len": 64}, (250, 500, 750), lr=3e-3),
        ScalingSize("4x64", {**_shape(4, 64, 4), "max_seq_len": 64}, (250, 500, 750), lr=3e-3),
    ),
    scaling_eval_interval=25,
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
    lr_cosine=2e-3,
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
