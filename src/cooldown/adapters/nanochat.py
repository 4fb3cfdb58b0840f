"""The `nanochat` adapter: karpathy/nanochat's `scripts.base_train` through the command adapter.

    adapter = "nanochat"
    nanochat_dir = "../nanochat"         # its checkout (relative to the adapter file)
    base_dir = "nanochat-base"           # NANOCHAT_BASE_DIR: data, tokenizer, base_checkpoints/
    save_every = 10                      # trunk checkpoints: the steps branches can start from
    args = ["--device-type=cpu", "--depth=2", "--max-seq-len=128", "--weight-decay=0"]
    patched = false                      # true: its base_train has the README's --lr-schedule patch
    compile = true                       # false: torch.compile off (TORCHDYNAMO_DISABLE=1)

A run is `python -m scripts.base_train ARGS --num-iterations=N --warmdown-ratio=K/N
--final-lr-frac=F --save-every=E --model-tag=TAG` in `nanochat_dir`; a trunk has K = 0. Its
checkpoints are nanochat's own (`BASE/base_checkpoints/TAG/{model,optim,meta}_SSSSSS*`). A branch
from step S copies those three files into its own tag folder and adds `--resume-from-step=S`
with N = S + K: nanochat then trains updates S+1..S+K with its warmdown over the last K.

Curves come from its stdout: `step 00021/00030 (..) | loss: L | lrm: M` is update 22 (nanochat
counts from 0; the loss is its debiased EMA of the training loss, lrm has two decimals) and
`Step 00030 | Validation bpb: B` is after 30 updates. Counts follow nanochat's own conventions:
parameters `num_scaling_params()['total']`, FLOPs per token `GPT.estimate_flops()` (6 x the matmul
parameters + 12 h q T attention per layer, embeddings left out), tokens per step its total batch.

nanochat `torch.compile`s its model and its optimizer steps; on a CPU the first compile takes
minutes. `compile = false` runs them eagerly (same arithmetic, no compile wait): the setting for
tiny runs and tests.

Without the patch only the linear shape exists (its warmdown); with it (`patched = true`) any
shape, through `--lr-schedule`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from cooldown.adapters.base import STDOUT, Exactness
from cooldown.adapters.command import CommandAdapter
from cooldown.errors import CooldownError

__all__ = ["NanochatAdapter"]

# Flags the adapter sets itself: a run's length, its schedule, its checkpoints and its folder.
_OWNED = (
    "--num-iterations",
    "--warmdown-ratio",
    "--final-lr-frac",
    "--resume-from-step",
    "--model-tag",
    "--save-every",
    "--lr-schedule",
    "--target-flops",
    "--target-param-data-ratio",
)
_TRAIN = r"^step (?P<step>\d+)/\d+ .*?\| loss: (?P<train_loss>[-\d.naif]+) \| lrm: (?P<lr>[\d.]+)"
_VAL = r"^Step (?P<step>\d+) \| Validation bpb: (?P<val_metric>[\d.]+)"


def _flag_value(args: list[str], flag: str) -> str | None:
    for i, a in enumerate(args):
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
        if a == flag and i + 1 < len(args):
            return args[i + 1]
    return None


class NanochatAdapter(CommandAdapter):
    name = "nanochat"

    def __init__(self, config: dict[str, Any], base_dir="."):
        for key in ("nanochat_dir", "base_dir", "save_every"):
            if key not in config:
                raise CooldownError(f"adapter.{key}: missing (see `cooldown.adapters.nanochat`)")
        save_every = config["save_every"]
        if isinstance(save_every, bool) or not isinstance(save_every, int) or save_every < 1:
            raise CooldownError(
                f"adapter.save_every: must be a positive integer (got {save_every!r})"
            )
        args = [str(a) for a in config.get("args", [])]
        for a in args:
            if a.split("=", 1)[0] in _OWNED:
                raise CooldownError(
                    f"adapter.args: {a.split('=', 1)[0]} is set by the adapter for each run; remove it"
                )
        self.args, self.patched = args, bool(config.get("patched", False))
        compile_ = config.get("compile", True)
        if not isinstance(compile_, bool):
            raise CooldownError(f"adapter.compile: must be true or false (got {compile_!r})")
        env = {"NANOCHAT_BASE_DIR": "{nanochat_base}"}
        if not compile_:
            # torch.compile(...) returns its argument unchanged (torch._dynamo.optimize reads it).
            # Not TORCH_COMPILE_DISABLE: with it, nanochat's fullgraph=True steps raise
            # "found no compiled frames" (torch 2.13).
            env.update(TORCHDYNAMO_DISABLE="1")
        schedule = ' "--lr-schedule={lr_schedule}"' if self.patched else ""
        super().__init__(
            {
                "command": "{python} -m scripts.base_train "
                + " ".join(f"'{a}'" for a in args)
                + " --num-iterations={total_steps} --warmdown-ratio={warmdown_ratio}"
                " --final-lr-frac={final_lr_frac} --save-every={save_every} --model-tag={tag}"
                + schedule,
                "resume": "--resume-from-step={branch_step}",
                "cwd": config["nanochat_dir"],
                "env": env,
                "vars": {"save_every": save_every, "nanochat_base": base_dir_abs(config, base_dir)},
                "checkpoint_dir": "{nanochat_base}/base_checkpoints/{tag}",
                "checkpoint_files": [
                    "model_{step:06d}.pt",
                    "optim_{step:06d}_rank0.pt",
                    "meta_{step:06d}.json",
                ],
                "handover": "copy",
                "log": {
                    "format": "regex",
                    "train": _TRAIN,
                    "val": _VAL,
                    "step_offset": {"train": 1},
                },
            },
            base_dir,
        )

    def fields(self, run_dir, request):
        if request.shape != "linear" and not self.patched and request.cooldown_steps:
            raise CooldownError(
                f"--shape {request.shape}: nanochat's warmdown is linear; apply the README's "
                "--lr-schedule patch to its base_train.py and set patched = true in the adapter"
            )
        f = super().fields(run_dir, request)
        if request.cooldown_steps == 0:
            f["lr_schedule"] = "constant"
        else:
            f["lr_schedule"] = (
                f"wsd:shape={request.shape},cooldown_start={request.cooldown_start},"
                f"cooldown_steps={request.cooldown_steps},final_lr_frac={request.final_lr_frac}"
            )
        return f

    def counts(self, run_dir):
        text = (run_dir / STDOUT).read_text(errors="replace")

        def last(pattern: str) -> float | None:
            found = re.findall(pattern, text, re.M)
            return float(found[-1].replace(",", "")) if found else None

        return {
            "params": last(r"^total\s+: ([\d,]+)$"),
            "flops_per_token": last(r"^Estimated FLOPs per token: ([\d.e+-]+)"),
            "tokens_per_step": last(r"^Total batch size ([\d,]+) =>"),
            "convention": "nanochat: num_scaling_params()['total']; GPT.estimate_flops() "
            "(6 x matmul params + attention, no embeddings); tokens per step = total batch size",
        }

    def read_curve(self, run_dir):
        rows = super().read_curve(run_dir)
        per_step = self.counts(run_dir)["tokens_per_step"]
        for row in rows:
            if per_step:
                row["tokens"] = int(row["step"] * per_step)
        return rows

    def exactness(self, request):
        if request.role != "branch":
            return Exactness(exact=["everything: not a branch"])
        wd = _flag_value(self.args, "--weight-decay")
        ex = Exactness(
            exact=[
                "lr: constant to the branch step, then the warmdown over K updates, as a "
                "from-scratch run with --num-iterations S+K --warmdown-ratio K/(S+K) gets it "
                + (
                    "(cooldown's schedule via --lr-schedule)"
                    if self.patched
                    else "(nanochat's linear warmdown: its last update is at 1/K of the peak, not 0)"
                ),
                "weights and optimizer state at the branch step (its checkpoint files, copied)",
                "Muon momentum: trunk, branch and from-scratch run follow get_muon_momentum alike "
                "(it warms down over the cooldown only from step 400 on)",
            ],
            not_exact={
                "data_position": "the loader resumes at the next row group after its prefetch "
                "buffer, so about a buffer of documents is skipped",
            },
        )
        if wd is not None and float(wd) == 0.0:
            ex.exact.append("weight decay: 0 (--weight-decay=0)")
        else:
            ex.not_exact["weight_decay"] = (
                "a cosine over --num-iterations: the trunk decayed it over its own length, a "
                "from-scratch run over S+K"
            )
            ex.to_make_exact["weight_decay"] = "add --weight-decay=0 to the adapter's args"
        return ex


def base_dir_abs(config: dict[str, Any], base_dir) -> str:
    return str((Path(base_dir) / config["base_dir"]).absolute())
