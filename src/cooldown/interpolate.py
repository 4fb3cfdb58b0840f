"""Validation loss along the straight line between two checkpoints' weights.

    cooldown interpolate runs/stable/checkpoints/step_0004000 \
        runs/stable/branches/s4000-1-sqrt-k1000/checkpoints/step_0005000 --points 11

For alpha in linspace(0, 1, N) the weights (1 - alpha) * A + alpha * B are evaluated on the
validation set of A's run (its config.toml gives the model and the data; B must be a checkpoint of
the same model). alpha = 0 and 1 are exactly A and B, so the ends equal each checkpoint's own
validation loss. `weights` picks another weight set stored in both checkpoints (an average such as
`swa`, `lawa5`, `ema`) instead of the raw weights. By default each point is a full validation pass
(what `final_val_loss` is); `max_batches` evaluates the first batches only (with the run's
`train.eval_batches` that is what `metrics.jsonl` logs as `val_loss`).

Writes `interpolation.csv` (alpha, val_loss in nats/token) and `interpolation.png` into the output
folder, by default `RUN_A/interpolations/<A>-to-<B's run>-<B>`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cooldown.checkpoint import RAW_WEIGHTS, select_weights
from cooldown.errors import CooldownError
from cooldown.run_dir import CONFIG_FILE

__all__ = ["InterpolationResult", "interpolate"]


@dataclass
class InterpolationResult:
    out_dir: Path
    alphas: list[float]
    val_losses: list[float]
    csv_path: Path
    plot_path: Path


def _run_dir_of(ckpt: Path, what: str) -> Path:
    run_dir = ckpt.parent.parent
    if ckpt.parent.name != "checkpoints" or not (run_dir / CONFIG_FILE).is_file():
        raise CooldownError(
            f"{what}: {ckpt} is not a checkpoint folder of a run (RUN/checkpoints/step_NNNNNNN with "
            "RUN/config.toml)"
        )
    return run_dir


def _check_same_model(a: dict, b: dict, path_a: Path, path_b: Path, cfg_a, cfg_b) -> None:
    from cooldown.config import config_differences

    diff = config_differences(
        cfg_a.model.model_dump(mode="json", exclude_none=True),
        cfg_b.model.model_dump(mode="json", exclude_none=True),
        "model.",
    )
    names_a, names_b = set(a), set(b)
    if names_a != names_b:
        only = sorted(names_a ^ names_b)
        diff.append(f"tensor names ({only[0]} in one only)")
    else:
        shapes = [k for k in sorted(a) if tuple(a[k].shape) != tuple(b[k].shape)]
        if shapes:
            k = shapes[0]
            diff.append(f"{k} shape {list(a[k].shape)} vs {list(b[k].shape)}")
    if diff:
        raise CooldownError(
            f"{path_a} and {path_b} hold different models ({'; '.join(diff[:4])}): interpolation "
            "needs two checkpoints of the same model"
        )


def interpolate(
    ckpt_a: str | Path,
    ckpt_b: str | Path,
    points: int = 11,
    *,
    out: str | Path | None = None,
    weights: str = RAW_WEIGHTS,
    max_batches: int | None = None,
) -> InterpolationResult:
    """Evaluate the N points of the line from A to B (see the module docstring)."""
    import torch

    from cooldown.checkpoint import load_checkpoint
    from cooldown.config import load_run_config
    from cooldown.data import ensure_prepared, validation_batches
    from cooldown.device import resolve_device, resolve_precision
    from cooldown.evaluation import evaluate, load_weights_into
    from cooldown.fileio import atomic_write_text
    from cooldown.model import Transformer
    from cooldown.report.interpolation_plot import plot_interpolation

    if isinstance(points, bool) or not isinstance(points, int) or points < 2:
        raise CooldownError(f"--points must be an integer of at least 2 (got {points!r})")
    if max_batches is not None and max_batches < 1:
        raise CooldownError(f"--max-batches must be at least 1 (got {max_batches})")
    path_a, path_b = Path(ckpt_a), Path(ckpt_b)
    run_a, run_b = _run_dir_of(path_a, "CKPT_A"), _run_dir_of(path_b, "CKPT_B")
    cfg = load_run_config(run_a / CONFIG_FILE)
    a, b = load_checkpoint(path_a), load_checkpoint(path_b)
    wa, wb = select_weights(a, weights), select_weights(b, weights)
    _check_same_model(wa, wb, path_a, path_b, cfg, load_run_config(run_b / CONFIG_FILE))

    tc = cfg.train
    data = ensure_prepared(cfg.data, progress=False)
    device = resolve_device(tc.device)
    precision = resolve_precision(tc.precision, device)
    model = Transformer(cfg.model.with_vocab(cfg.model.vocab_size or data.vocab_size)).to(device)
    micro_bs = tc.micro_batch_size or tc.batch_size
    wa = {k: v.to(device, torch.float32) for k, v in wa.items()}
    wb = {k: v.to(device, torch.float32) for k, v in wb.items()}

    alphas = [float(x) for x in np.linspace(0.0, 1.0, points)]
    losses = []
    for alpha in alphas:
        # The ends are A and B themselves, not (1 - 0) * A + 0 * B (which is A anyway unless B
        # holds a non-finite value): their losses must be the checkpoints' own.
        if alpha == 0.0:
            mixed = wa
        elif alpha == 1.0:
            mixed = wb
        else:
            mixed = {k: (1.0 - alpha) * wa[k] + alpha * wb[k] for k in wa}
        load_weights_into(model, mixed)
        batches = validation_batches(data.val, micro_bs, tc.seq_len, max_batches=max_batches)
        losses.append(evaluate(model, batches, device, precision))

    out_dir = (
        Path(out)
        if out is not None
        else run_a / "interpolations" / _default_name(path_a, path_b, run_b, weights)
    )
    buf = io.StringIO()
    buf.write("alpha,val_loss\n")
    for alpha, loss in zip(alphas, losses, strict=True):
        buf.write(f"{alpha!r},{loss!r}\n")
    csv_path = atomic_write_text(out_dir / "interpolation.csv", buf.getvalue())
    which = "" if weights == RAW_WEIGHTS else f" ({weights} weights)"
    plot_path = plot_interpolation(
        alphas,
        losses,
        out_dir / "interpolation.png",
        label_a=f"{run_a.name} step {a.step}",
        label_b=f"{run_b.name} step {b.step}",
        title=f"Loss along the line between two checkpoints{which}",
    )
    return InterpolationResult(out_dir, alphas, losses, csv_path, plot_path)


def _default_name(path_a: Path, path_b: Path, run_b: Path, weights: str) -> str:
    name = f"{path_a.name}-to-{run_b.name}-{path_b.name}"
    return name if weights == RAW_WEIGHTS else f"{name}-{weights}"
