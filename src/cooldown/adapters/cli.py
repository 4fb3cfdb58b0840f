"""`cooldown adapter run|branch`: trunks, from-scratch runs and cooldown branches of a foreign
trainer, through the adapter a TOML file describes (see `cooldown.adapters`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from cooldown.adapters import RunRequest, load_adapter
from cooldown.adapters.base import adapter_manifest
from cooldown.errors import CooldownError

adapter_app = typer.Typer(
    help="Drive another trainer (nanochat, any command line) through trunks and branches.",
    no_args_is_help=True,
)

AdapterFile = Annotated[Path, typer.Argument(help="The adapter's TOML file (adapter = KIND ...).")]
Shape = Annotated[
    str, typer.Option("--shape", help="Cooldown shape (the trainer may allow only some).")
]
FinalFrac = Annotated[
    float, typer.Option("--final-lr-frac", help="LR at the end of the cooldown (x peak).")
]


def _summary(run_dir: Path, record: dict) -> str:
    final = record.get("final", {})
    return f"{run_dir}: {record['role']} complete, final {json.dumps(final, sort_keys=True)}"


@adapter_app.command("run")
def run_cmd(
    adapter_file: AdapterFile,
    out: Annotated[Path, typer.Option("--out", help="The run folder.")],
    steps: Annotated[int, typer.Option("--steps", min=1, help="Updates in all.")],
    cooldown: Annotated[
        int,
        typer.Option(
            "--cooldown", min=0, help="Cooldown updates at the end (0: a constant-LR trunk)."
        ),
    ] = 0,
    shape: Shape = "linear",
    final_lr_frac: FinalFrac = 0.0,
) -> None:
    """Train a trunk (constant LR after warmup) or, with --cooldown K, a run from scratch."""
    if cooldown >= steps:
        raise CooldownError(
            f"--cooldown: {cooldown} updates leave no stable phase in {steps} steps"
        )
    adapter = load_adapter(adapter_file)
    request = (
        RunRequest.trunk(steps)
        if cooldown == 0
        else RunRequest.scratch(steps, cooldown, shape=shape, final_lr_frac=final_lr_frac)
    )
    print(_summary(out, adapter.run(out, request)))


@adapter_app.command("branch")
def branch_cmd(
    adapter_file: AdapterFile,
    trunk: Annotated[Path, typer.Argument(help="The trunk's run folder.")],
    at: Annotated[
        list[int], typer.Option("--at", min=1, help="Branch step(s): a saved checkpoint.")
    ],
    length: Annotated[int, typer.Option("--length", min=1, help="Cooldown updates (K).")],
    shape: Shape = "linear",
    final_lr_frac: FinalFrac = 0.0,
    out: Annotated[
        Optional[Path],
        typer.Option("--out", help="Where the branches go (default TRUNK/branches)."),
    ] = None,
) -> None:
    """Cooldown branches of a trunk: from its checkpoint at each --at step, K updates of cooldown.
    Each branch's manifest.json states what it reproduces exactly and what not."""
    branch_through_adapter(adapter_file, trunk, at, length, [shape], final_lr_frac, out)


def branch_through_adapter(
    adapter_file: Path,
    trunk: Path,
    at: list[int],
    length: int,
    shapes: list[str],
    final_lr_frac: float = 0.0,
    out: Path | None = None,
) -> None:
    """`cooldown adapter branch` and `cooldown branch --adapter`: one branch per step and shape,
    in OUT (default TRUNK/branches)/s<step>-<shape>-k<length>."""
    adapter = load_adapter(adapter_file)
    if adapter_manifest(trunk) is None:
        raise CooldownError(
            f"{trunk}: not a run made through an adapter (manifest.json is missing)"
        )
    root = out if out is not None else trunk / "branches"
    for step in at:
        for shape in shapes:
            run_dir = root / f"s{step}-{shape}-k{length}"
            request = RunRequest.branch(
                trunk, step, length, shape=shape, final_lr_frac=final_lr_frac
            )
            print(_summary(run_dir, adapter.run(run_dir, request)))
