"""Weight averaging along the trajectory: the paper's SWA windows, LAWA and EMA, resumable.

SWA (as in the paper): a uniform average of the iterates inside fixed, non-overlapping windows of
`swa_window` (h) updates, sampling every `swa_interval` (i) updates. Windows are counted from
step 0 of the whole trajectory: window k covers updates k*h+1 .. (k+1)*h, and the iterate after
update n is sampled when n % i == 0 (h must be a multiple of i, so every window ends on a sample).
A branch therefore continues its parent's window where the parent's checkpoint left it.

The averages, by the names they are logged under (`val_loss_<name>`) and stored under in a
checkpoint's `extra_weights`:

- `swa`: the average of the samples of the LATEST window: the current window while it fills
  (from its first sample on) and, at the step that completes a window, exactly that completed
  window. Evaluating at window ends (eval_interval a multiple of h) thus sees completed windows.
- `lawa{n}`: the uniform average of the last n COMPLETED window averages (LAWA-style); it exists
  once n windows are complete (before that it is not logged, and its final loss is null).
- `ema`: exponential moving average, sampled every `ema_interval` updates:
  ema <- decay * ema + (1 - decay) * w, starting from the first sample.

Each completed window's average is also written on its own to
`RUN_DIR/averages/swa_w{k:06d}_step{end:07d}.safetensors` (atomically); only the last
`swa_keep_last` such files are kept so a long run does not fill the disk.

Memory: every average is an fp32 copy of the weights on the model's device: one for `swa`, one per
buffered completed window (max(lawa_windows) of them, needed for LAWA), one for `ema`; evaluating
a LAWA average builds one more temporary copy. The checkpoint stores `swa`, the buffered windows
(`swa_w{k}`), the `lawa{n}` averages (derived, for use by `cooldown interpolate --weights`) and
`ema`; the counters go into the checkpoint state, so a resumed run continues the same averages
bit for bit. Running means are updated incrementally (avg += (w - avg) / count) so that the stored
average IS the state: nothing is rebuilt from a rounded sum on resume.

The trainer hands in the evaluation-mode weights (for schedule-free AdamW, its x sequence). This
module knows nothing of optimizers.

Under FSDP2 (`train.parallelism = "fsdp"`, see `cooldown.distributed`) the weights handed in are the
model's DTensor shards, so every average is a DTensor too: each rank keeps the fp32 average of its
own shard, the arithmetic above is shard-local (no communication), and no rank ever holds a full
copy of an average except while it is saved (gathered one tensor at a time for the
`.safetensors` files). Evaluating an average copies its shards into the model's shards. A
distributed checkpoint stores the averages sharded too (`dcp/`), so they resume at any world size.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from cooldown.averaging_config import AveragingConfig
from cooldown.errors import CooldownError
from cooldown.fileio import atomic_write_bytes

__all__ = ["AveragingConfig", "WeightAverages", "list_window_files", "save_window"]

Weights = dict[str, torch.Tensor]
_WINDOW_FILE = re.compile(r"swa_w(\d{6,})_step(\d{7,})\.safetensors")


def _fp32_copy(weights: Mapping[str, torch.Tensor]) -> Weights:
    return {k: v.detach().to(torch.float32, copy=True) for k, v in weights.items()}


class WeightAverages:
    """The running SWA window, the buffer of completed windows (for LAWA) and the EMA."""

    def __init__(self, cfg: AveragingConfig):
        self.cfg = cfg
        self.swa: Weights | None = None
        self.swa_count = 0  # samples in the latest window
        self.swa_window_index = -1  # k of the latest window (-1: none yet)
        # Completed windows, oldest first: (k, end step, average); only max(lawa_windows) kept.
        self.completed: list[tuple[int, int, Weights]] = []
        self.ema: Weights | None = None
        self.ema_count = 0

    # --- updates ----------------------------------------------------------------------------------

    def due(self, step: int) -> bool:
        """Whether `update(step, ...)` samples anything (the trainer skips reading weights if not)."""
        c = self.cfg
        return bool(
            (c.swa_window and step % c.swa_interval == 0)
            or (c.ema_decay is not None and step % c.ema_interval == 0)
        )

    @torch.no_grad()
    def update(self, step: int, weights: Mapping[str, torch.Tensor]) -> tuple[int, int] | None:
        """Sample the weights after update `step`; returns (k, end step) when it completes window k."""
        c = self.cfg
        done = None
        if c.swa_window and step % c.swa_interval == 0:
            k = (step - 1) // c.swa_window
            if k != self.swa_window_index or self.swa is None:
                self.swa, self.swa_count, self.swa_window_index = _fp32_copy(weights), 1, k
            else:
                self.swa_count += 1
                for name, avg in self.swa.items():
                    avg.lerp_(weights[name].to(torch.float32), 1.0 / self.swa_count)
            if step % c.swa_window == 0:
                self._complete(k, step)
                done = (k, step)
        if c.ema_decay is not None and step % c.ema_interval == 0:
            if self.ema is None:
                self.ema = _fp32_copy(weights)
            else:
                for name, avg in self.ema.items():
                    avg.lerp_(weights[name].to(torch.float32), 1.0 - c.ema_decay)
            self.ema_count += 1
        return done

    def _complete(self, k: int, end: int) -> None:
        keep = max(self.cfg.lawa_windows, default=0)
        if keep == 0:
            return
        assert self.swa is not None
        # A copy: the running `swa` tensors are reused in place by the next window.
        self.completed.append((k, end, {n: t.clone() for n, t in self.swa.items()}))
        del self.completed[:-keep]

    # --- the averages -----------------------------------------------------------------------------

    def lawa(self, n: int) -> Weights | None:
        """Uniform average of the last n completed windows (None until n are complete)."""
        if len(self.completed) < n:
            return None
        windows = [w for _, _, w in self.completed[-n:]]
        out = {}
        for name in windows[0]:
            acc = windows[0][name].clone()
            for w in windows[1:]:
                acc += w[name]
            out[name] = acc.div_(n)
        return out

    def averages(self) -> dict[str, Weights]:
        """Every average that exists now, by name (see the module docstring)."""
        out: dict[str, Weights] = {}
        if self.swa is not None:
            out["swa"] = self.swa
        for n in self.cfg.lawa_windows:
            avg = self.lawa(n)
            if avg is not None:
                out[f"lawa{n}"] = avg
        if self.ema is not None:
            out["ema"] = self.ema
        return out

    # --- state ------------------------------------------------------------------------------------

    def state_dict(self) -> tuple[dict[str, Any], dict[str, Weights]]:
        """(plain-data state for state.pt, weight sets for the checkpoint's extra_weights)."""
        state = {
            "config": self.cfg.model_dump(mode="json"),
            "swa_count": self.swa_count,
            "swa_window_index": self.swa_window_index,
            "completed": [(k, end) for k, end, _ in self.completed],
            "ema_count": self.ema_count,
        }
        extra = dict(self.averages())
        extra.update({f"swa_w{k}": w for k, _, w in self.completed})
        return state, extra

    @staticmethod
    def stored_names(state: Mapping[str, Any]) -> list[str]:
        """The weight sets `load_state_dict` reads for `state` (the LAWA averages are derived)."""
        names = ["swa"] if state.get("swa_count") else []
        names += [f"swa_w{int(k)}" for k, _ in state.get("completed", [])]
        return names + (["ema"] if state.get("ema_count") else [])

    def load_state_dict(
        self, state: Mapping[str, Any], extra: Mapping[str, Mapping[str, torch.Tensor]], device
    ) -> None:
        """Restore from a checkpoint written with the same averaging config."""
        if state.get("config") != self.cfg.model_dump(mode="json"):
            raise CooldownError(
                "the checkpoint's averaging state was written with another [averaging] config "
                f"({state.get('config')}); it cannot continue these averages"
            )

        def get(name: str) -> Weights:
            if name not in extra:
                raise CooldownError(
                    f"the checkpoint's averaging state needs weights {name!r}, which it does not "
                    f"hold (it has {sorted(extra)})"
                )
            return {k: v.to(device=device, dtype=torch.float32) for k, v in extra[name].items()}

        self.swa_count = int(state["swa_count"])
        self.swa_window_index = int(state["swa_window_index"])
        self.swa = get("swa") if self.swa_count else None
        self.completed = [(int(k), int(end), get(f"swa_w{k}")) for k, end in state["completed"]]
        self.ema_count = int(state["ema_count"])
        self.ema = get("ema") if self.ema_count else None


# --- completed-window files -----------------------------------------------------------------------


def window_file(run_dir: str | Path, k: int, end: int) -> Path:
    return Path(run_dir) / "averages" / f"swa_w{k:06d}_step{end:07d}.safetensors"


def list_window_files(run_dir: str | Path) -> list[Path]:
    """The saved completed-window averages of a run, oldest first."""
    folder = Path(run_dir) / "averages"
    if not folder.is_dir():
        return []
    found = [
        (int(m.group(1)), p) for p in folder.iterdir() if (m := _WINDOW_FILE.fullmatch(p.name))
    ]
    return [p for _, p in sorted(found)]


def save_window(run_dir: str | Path, k: int, end: int, weights: Weights, keep_last: int) -> Path:
    """Write window k's average (ending at update `end`) atomically; keep the last `keep_last`."""
    from safetensors.torch import save

    path = window_file(run_dir, k, end)
    cpu = {n: t.detach().to("cpu").contiguous() for n, t in weights.items()}
    atomic_write_bytes(path, save(cpu, metadata={"window": str(k), "end_step": str(end)}))
    for old in list_window_files(run_dir)[:-keep_last]:
        old.unlink(missing_ok=True)
    return path
