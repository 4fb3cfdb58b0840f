"""Command-line interface: argument parsing only. Every command calls one library function.

Library imports happen inside the commands so `cooldown --help` and the torch-free commands start
fast.
"""

from __future__ import annotations

import errno
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from cooldown.adapters.cli import adapter_app, branch_through_adapter
from cooldown.errors import CooldownError, Interrupted

app = typer.Typer(
    help="Constant-LR + cooldown training, weight averaging and scaling laws.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
schedule_app = typer.Typer(help="Learning-rate schedules.", no_args_is_help=True)
data_app = typer.Typer(help="Corpora, tokenizers and token shards.", no_args_is_help=True)
study_app = typer.Typer(
    help="Scaling-law studies: plan, run, status, results.", no_args_is_help=True
)
app.add_typer(schedule_app, name="schedule")
app.add_typer(data_app, name="data")
app.add_typer(study_app, name="study")
benchmark_app = typer.Typer(
    help="Loss-curve prediction benchmarks on published curves.", no_args_is_help=True
)
app.add_typer(benchmark_app, name="predict-benchmark")
app.add_typer(adapter_app, name="adapter")


# --- schedule -------------------------------------------------------------------------------------
# The comparison the paper makes, all with the same warmup: cosine to 10% of the peak, 20% linear
# and 1-sqrt cooldowns, and the constant LR they branch from.
DEFAULT_PLOT_SPECS = (
    "cosine:final_lr_frac=0.1",
    "wsd:shape=linear,cooldown_frac=0.2",
    "wsd:shape=1-sqrt,cooldown_frac=0.2",
    "constant",
)


@schedule_app.command("plot")
def schedule_plot(
    specs: Annotated[
        Optional[list[str]],
        typer.Argument(
            help="Schedules as KIND[:key=value,...], e.g. wsd:shape=1-sqrt,cooldown_frac=0.2 "
            "(default: cosine to 10%, WSD linear 20%, WSD 1-sqrt 20%, constant)."
        ),
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Figure to write: .png or .svg.")] = ...,
    steps: Annotated[
        int,
        typer.Option("--steps", min=1, help="total_steps (optimizer updates) of each schedule."),
    ] = 10000,
    warmup_steps: Annotated[
        Optional[int],
        typer.Option(
            "--warmup-steps",
            min=0,
            help="Warmup of every schedule that does not set its own (default: 2% of --steps).",
        ),
    ] = None,
    peak_lr: Annotated[
        Optional[float], typer.Option("--peak-lr", help="Plot the LR itself for this peak LR.")
    ] = None,
) -> None:
    """Plot LR schedules (a shared linear warmup, 2% of the run unless given) to a PNG or SVG."""
    from cooldown.report import plot_schedules
    from cooldown.schedule_specs import parse_schedule_spec

    warmup = round(0.02 * steps) if warmup_steps is None else warmup_steps
    schedules = [
        parse_schedule_spec(spec, total_steps=steps, defaults={"warmup_steps": warmup})
        for spec in (specs or DEFAULT_PLOT_SPECS)
    ]
    typer.echo(str(plot_schedules(schedules, out, peak_lr=peak_lr)))


# --- data -----------------------------------------------------------------------------------------


@data_app.command("prepare")
def data_prepare(
    source: Annotated[
        Optional[str],
        typer.Option(help="'stdlib' (default), a file or folder, a nanoGPT .bin, or 'hf:NAME'."),
    ] = None,
    tokenizer: Annotated[
        Optional[str], typer.Option(help="'bpe' (default), 'bytes', 'gpt2' or a tokenizer.json.")
    ] = None,
    vocab_size: Annotated[
        Optional[int], typer.Option(help="BPE vocabulary size in ids (default 2048).")
    ] = None,
    out: Annotated[
        Optional[Path], typer.Option(help="Output folder (default: a keyed folder in the cache).")
    ] = None,
    max_bytes: Annotated[
        Optional[int], typer.Option(help="Use only the first documents, up to this many bytes.")
    ] = None,
    max_documents: Annotated[
        Optional[int], typer.Option(help="Use only the first this many documents.")
    ] = None,
    val_fraction: Annotated[
        Optional[float], typer.Option(help="Fraction of documents held out (default 0.01).")
    ] = None,
    text_field: Annotated[
        Optional[str], typer.Option(help="Field holding the text (JSONL, Parquet, hf:).")
    ] = None,
    hf_split: Annotated[Optional[str], typer.Option(help="Split of an hf: dataset.")] = None,
    hf_config: Annotated[Optional[str], typer.Option(help="Config of an hf: hub dataset.")] = None,
    cache_dir: Annotated[
        Optional[str],
        typer.Option(help="Cache folder (default $COOLDOWN_CACHE or ~/.cache/cooldown/data)."),
    ] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of the validation split.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bars.")] = False,
) -> None:
    """Tokenize a corpus into memory-mapped train/val shards (once; reruns reuse the folder)."""
    from cooldown.configio import validate
    from cooldown.data import DataConfig, prepare, summary

    given = {
        "source": source,
        "tokenizer": tokenizer,
        "vocab_size": vocab_size,
        "max_bytes": max_bytes,
        "max_documents": max_documents,
        "val_fraction": val_fraction,
        "text_field": text_field,
        "hf_split": hf_split,
        "hf_config": hf_config,
        "cache_dir": cache_dir,
        "seed": seed,
    }
    cfg = validate(DataConfig, {k: v for k, v in given.items() if v is not None}, prefix="data")
    folder = prepare(cfg, out_dir=out, progress=not quiet)
    print(folder)
    print(summary(folder))


# --- train ----------------------------------------------------------------------------------------
@app.command("train", context_settings={"allow_extra_args": False})
def train_cmd(
    overrides: Annotated[
        Optional[list[str]],
        typer.Argument(help="dotted overrides, e.g. optim.lr=2e-3 schedule.shape=1-sqrt"),
    ] = None,
    config: Annotated[
        Optional[Path], typer.Option("--config", "-c", help="run config (TOML)")
    ] = None,
    out: Annotated[
        Optional[Path],
        typer.Option("--out", "-o", help="run folder (default: runs/<config name>)"),
    ] = None,
    allow_data_change: Annotated[
        bool,
        typer.Option(
            "--allow-data-change",
            help="Resume although the data's fingerprint differs from the one the run started "
            "on (recorded in manifest.json).",
        ),
    ] = False,
) -> None:
    """Train one run; running the same command again resumes it from its last checkpoint."""
    import os

    from cooldown.config import load_run_config
    from cooldown.train import train

    cfg = load_run_config(config, overrides or [])
    run_dir = out or Path("runs") / (config.stem if config else "default")
    result = train(cfg, run_dir, allow_data_change=allow_data_change)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, rank 0 reports for the job
        return
    loss = "n/a" if result.final_val_loss is None else f"{result.final_val_loss:.4f} nats/token"
    print(
        f"{result.run_dir}: {result.steps} steps, {result.tokens:,} tokens, "
        f"{result.compute_flops:.3e} FLOPs [{result.flop_convention}], final val loss {loss}"
    )


# --- branch and interpolate ---------------------------------------------------------------------
class _ListOptionsCommand(typer.core.TyperCommand):
    """Lets `--at 4000 6000` mean `--at 4000 --at 6000` for the options in `list_options`: their
    values run up to the next option (click has no variadic options). Positionals go first."""

    list_options = ("--at", "--at-tokens", "--shape")

    def parse_args(self, ctx, args):
        out: list[str] = []
        current = None
        for i, arg in enumerate(args):
            if arg == "--":
                out += args[i:]
                break
            if arg.startswith("-"):
                current = arg if arg in self.list_options else None
            elif current is not None and out[-1] != current:
                out.append(current)
            out.append(arg)
        return super().parse_args(ctx, out)


def _branch_through_adapter(adapter, run_dir, at, length, shape, final_lr_frac, out_root) -> None:
    if not at or length is None:
        raise CooldownError("--adapter: give the branch steps (--at) and the cooldown (--length)")
    shapes = shape or ["linear"]
    branch_through_adapter(adapter, run_dir, at, length, shapes, final_lr_frac, out_root)


@app.command("branch", cls=_ListOptionsCommand)
def branch_cmd(
    run_dir: Annotated[Path, typer.Argument(help="The stable (parent) run folder.")],
    at: Annotated[
        Optional[list[int]],
        typer.Option("--at", help="Branch steps: checkpoints of the parent (--at 4000 6000)."),
    ] = None,
    at_tokens: Annotated[
        Optional[list[int]],
        typer.Option("--at-tokens", help="Branch points as token counts (whole steps)."),
    ] = None,
    length: Annotated[
        Optional[int], typer.Option("--length", min=1, help="Cooldown length K in steps.")
    ] = None,
    fraction: Annotated[
        Optional[float],
        typer.Option(
            "--fraction", help="Cooldown as a fraction F of the branch: K = F/(1-F) x step."
        ),
    ] = None,
    shape: Annotated[
        Optional[list[str]],
        typer.Option("--shape", help="Cooldown shapes, one child each (default linear)."),
    ] = None,
    final_lr_frac: Annotated[
        float, typer.Option("--final-lr-frac", help="Final LR as a fraction of the peak.")
    ] = 0.0,
    force: Annotated[
        bool, typer.Option("--force", help="Branch even from a checkpoint inside a decay.")
    ] = False,
    out_root: Annotated[
        Optional[Path],
        typer.Option("--out-root", help="Folder of the children (default RUN_DIR/branches)."),
    ] = None,
    adapter: Annotated[
        Optional[Path],
        typer.Option(
            "--adapter",
            help="A trainer adapter's TOML file: RUN_DIR is a trunk of that trainer "
            "(`cooldown adapter run`); needs --at and --length.",
        ),
    ] = None,
    optim_cooldown: Annotated[
        Optional[list[str]],
        typer.Option(
            "--optim-cooldown",
            help="[optim.cooldown] of the children, KEY=VALUE (betas=[0.9,0.99], "
            "muon_momentum=0.85, weight_decay=0); repeatable.",
        ),
    ] = None,
) -> None:
    """Train cooldowns branched from a stable run's checkpoints; rerunning finishes them."""
    if adapter is not None:
        if at_tokens or fraction is not None or optim_cooldown or force:
            raise CooldownError(
                "--adapter: --at-tokens, --fraction, --optim-cooldown and --force are for "
                "cooldown's own runs; give --at and --length"
            )
        _branch_through_adapter(adapter, run_dir, at, length, shape, final_lr_frac, out_root)
        return
    from cooldown.branch import branch
    from cooldown.configio import apply_overrides

    results = branch(
        run_dir,
        at or [],
        at_tokens=at_tokens,
        cooldown_steps=length,
        fraction=fraction,
        shapes=shape or ["linear"],
        final_lr_frac=final_lr_frac,
        force=force,
        out_root=out_root,
        optim_cooldown=apply_overrides({}, optim_cooldown) if optim_cooldown else None,
    )
    for r in results:
        loss = "n/a" if r.final_val_loss is None else f"{r.final_val_loss:.4f} nats/token"
        print(
            f"{r.run_dir}: {r.steps} steps, {r.tokens:,} tokens, {r.compute_flops:.3e} FLOPs "
            f"[{r.flop_convention}] (parent prefix included), final val loss {loss}"
        )


@app.command("interpolate")
def interpolate_cmd(
    ckpt_a: Annotated[Path, typer.Argument(help="Checkpoint folder A (RUN/checkpoints/step_N).")],
    ckpt_b: Annotated[Path, typer.Argument(help="Checkpoint folder B, of the same model.")],
    points: Annotated[
        int, typer.Option("--points", min=2, help="Points on the line, ends included.")
    ] = 11,
    out: Annotated[
        Optional[Path], typer.Option("--out", help="Output folder for the CSV and the plot.")
    ] = None,
    weights: Annotated[
        str, typer.Option("--weights", help="'raw' or a stored average (swa, lawa5, ema).")
    ] = "raw",
    max_batches: Annotated[
        Optional[int],
        typer.Option("--max-batches", min=1, help="Validation batches per point (default all)."),
    ] = None,
) -> None:
    """Validation loss along the straight line from checkpoint A to checkpoint B."""
    from cooldown.interpolate import interpolate

    result = interpolate(ckpt_a, ckpt_b, points, out=out, weights=weights, max_batches=max_batches)
    for alpha, loss in zip(result.alphas, result.val_losses, strict=True):
        print(f"alpha {alpha:.4f}: val loss {loss:.4f} nats/token")
    print(result.csv_path)
    print(result.plot_path)


# --- study ----------------------------------------------------------------------------------------
StudyArg = Annotated[Path, typer.Argument(help="the study spec (study.toml)")]
StudyOutOpt = Annotated[
    Optional[Path],
    typer.Option("--out", "--study-dir", help="study folder (default: the folder of study.toml)"),
]


@study_app.command("plan")
def study_plan_cmd(
    study: StudyArg,
    out: StudyOutOpt = None,
    throughput_flops_per_s: Annotated[
        Optional[float],
        typer.Option(
            "--throughput-flops-per-s",
            help="device throughput in FLOP/s under the study's convention, for device-hours "
            "(default: measured on finished nodes, else study.toml's)",
        ),
    ] = None,
    nodes: Annotated[bool, typer.Option("--nodes/--no-nodes", help="list every node")] = True,
) -> None:
    """The study's graph: nodes, tokens and compute per node, totals per method, savings."""
    from cooldown.study.plan_table import plan_study

    print(
        plan_study(study, out=out, throughput_flops_per_s=throughput_flops_per_s, show_nodes=nodes)
    )


@study_app.command("run")
def study_run_cmd(
    study: StudyArg,
    out: StudyOutOpt = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="nodes trained at once")] = 1,
    backend: Annotated[
        str,
        typer.Option(
            "--backend",
            help="local (a process per node), local-pool (long-lived worker processes), slurm "
            "(submitit) or submitit-local (testing)",
        ),
    ] = "local",
    threads: Annotated[
        Optional[int],
        typer.Option("--threads", min=1, help="torch threads per node (default: cores / workers)"),
    ] = None,
    stale_after: Annotated[
        float,
        typer.Option(
            "--stale-after",
            help="seconds without a heartbeat before another host's runner counts as dead",
        ),
    ] = 120.0,
) -> None:
    """Run the study graph; killed at any moment, the same command finishes the work."""
    from cooldown.study.runner import run_study

    report = run_study(
        study,
        out=out,
        workers=workers,
        backend=backend,
        threads=threads,
        stale_after_s=stale_after,
    )
    print(report.summary())
    if report.failed:
        raise SystemExit(1)


@study_app.command("status")
def study_status_cmd(study: StudyArg, out: StudyOutOpt = None) -> None:
    """Progress of the study graph: counts per state, running nodes' steps, failures."""
    from cooldown.study.status import study_status

    print(study_status(study, out=out))


@study_app.command("results")
def study_results_cmd(
    study: StudyArg,
    out: Annotated[
        Optional[Path],
        typer.Option(
            "--out",
            help="CSV to write (default: STUDY_DIR/results.csv); a .parquet beside it when "
            "pyarrow is installed",
        ),
    ] = None,
    study_dir: Annotated[
        Optional[Path],
        typer.Option("--study-dir", help="study folder (default: the folder of study.toml)"),
    ] = None,
) -> None:
    """One row per (size, budget, method, LR, seed): params, tokens, compute, final losses;
    with cooldown-predicted, its scaling fit and compute against the cooldown method's."""
    from cooldown.study.predicted import comparison_lines
    from cooldown.study.results import study_results

    paths, results = study_results(study, out, out=study_dir)
    print(f"{len(results.rows)} rows: " + ", ".join(str(p) for p in paths))
    for line in results.sweep_lines():
        print(f"  sweep {line}")
    for point, why in results.missing.items():
        print(f"  no result for {point}: {why}")
    for line in comparison_lines(results.rows):
        print(line)


# --- fit ------------------------------------------------------------------------------------------
@app.command("fit")
def fit_cmd(
    results: Annotated[
        Path, typer.Argument(help="Results table: .csv, .jsonl or .parquet, one row per run.")
    ],
    columns: Annotated[
        Optional[str],
        typer.Option(
            "--columns",
            help="Map N, D, C, loss onto the table's columns, e.g. 'N=Model Size,C=Training "
            "FLOP,loss=loss' (default: params, tokens, compute_flops, final_val_loss).",
        ),
    ] = None,
    flop_convention: Annotated[
        Optional[str],
        typer.Option(
            "--flop-convention",
            help="How the C column counts FLOPs (chinchilla, 6N, 6N+attn, 6ND, ...) when the "
            "table has no flop_convention column.",
        ),
    ] = None,
    exclude_highest_loss: Annotated[
        int,
        typer.Option(
            "--exclude-highest-loss", min=0, help="Leave out the K highest-loss points (reported)."
        ),
    ] = 0,
    where: Annotated[
        Optional[list[str]],
        typer.Option("--where", help="Fit only rows with COLUMN=VALUE (repeatable; reported)."),
    ] = None,
    bootstrap: Annotated[
        int, typer.Option("--bootstrap", min=0, help="Bootstrap resamples for the intervals.")
    ] = 100,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap resamples.")] = 0,
    budget: Annotated[
        Optional[list[float]],
        typer.Option(
            "--budget",
            help="Compute budget in FLOPs (C = 6ND) to give N*, D* and tokens/parameter at "
            "(repeatable; default: the largest run's, 10x and 100x it).",
        ),
    ] = None,
    out: Annotated[
        Optional[Path],
        typer.Option("--out", help="Folder for fit.json and the figures (default: RESULTS_fit)."),
    ] = None,
) -> None:
    """Fit Chinchilla scaling laws (Approaches 1, 2, 3) to a results table; write fit.json and plots."""
    from cooldown.scaling import format_fit, run_fit

    folder = out if out is not None else results.with_name(results.stem + "_fit")
    run = run_fit(
        results,
        columns=columns,
        flop_convention=flop_convention,
        exclude_highest_loss=exclude_highest_loss,
        where=where or (),
        n_bootstrap=bootstrap,
        seed=seed,
        budgets=budget,
        out=folder,
    )
    print(format_fit(run))


# --- predict --------------------------------------------------------------------------------------
@app.command("predict")
def predict_cmd(
    runs: Annotated[
        list[Path],
        typer.Argument(help="Run folders (or .csv/.jsonl loss logs) to fit the law on."),
    ],
    schedule: Annotated[
        Optional[list[str]],
        typer.Option(
            "--schedule",
            "-s",
            help="A schedule to predict, KIND[:key=value,...] (repeatable), e.g. "
            "wsd:shape=1-sqrt,cooldown_frac=0.2. Length, warmup and peak LR default to the first "
            "run's.",
        ),
    ] = None,
    law: Annotated[
        str, typer.Option("--law", help="mpl (Multi-Power Law) or tissue (LR-annealing law).")
    ] = "mpl",
    loss: Annotated[
        str,
        typer.Option(
            "--loss", help="Logged loss to fit: val_loss or train_loss (a log's loss column)."
        ),
    ] = "val_loss",
    columns: Annotated[
        Optional[str],
        typer.Option(
            "--columns", help="Column mapping of log files, e.g. step=iter,lr=lr,loss=val/loss."
        ),
    ] = None,
    steps: Annotated[
        Optional[int], typer.Option("--steps", min=2, help="total_steps of the schedules.")
    ] = None,
    warmup_steps: Annotated[
        Optional[int], typer.Option("--warmup-steps", min=0, help="Warmup of the schedules.")
    ] = None,
    peak_lr: Annotated[
        Optional[float], typer.Option("--peak-lr", help="Peak LR of the schedules.")
    ] = None,
    holdout: Annotated[
        Optional[list[Path]],
        typer.Option(
            "--holdout", help="A measured run to predict and compare (repeatable; not fitted)."
        ),
    ] = None,
    bootstrap: Annotated[
        int, typer.Option("--bootstrap", min=0, help="Bootstrap replicates for intervals.")
    ] = 50,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap.")] = 0,
    fit_from: Annotated[
        int,
        typer.Option(
            "--fit-from", min=0, help="Fit only points at or after this step (and after warmup)."
        ),
    ] = 0,
    search: Annotated[
        bool,
        typer.Option(
            "--search",
            help="Rank WSD cooldowns (length 5%..95% x shape) of a --steps run by predicted loss.",
        ),
    ] = False,
    run_best: Annotated[
        Optional[Path],
        typer.Option(
            "--run-best",
            help="With --search: train the best cooldown into this run folder (the first run's "
            "settings) and compare its measured final loss with the prediction.",
        ),
    ] = None,
    out: Annotated[
        Optional[Path],
        typer.Option("--out", help="Folder for predictions.json, predicted_curves.csv, .png."),
    ] = None,
) -> None:
    """Predict the loss of schedules you did not run from a law fitted on runs you did."""
    from cooldown.predict import parse_columns, predict_schedules

    if run_best is not None and not search:
        raise CooldownError("--run-best: needs --search (it trains the best searched cooldown)")
    report = predict_schedules(
        runs,
        schedule or [],
        law=law,
        loss=loss,
        columns=parse_columns(columns),
        total_steps=steps,
        peak_lr=peak_lr,
        warmup_steps=warmup_steps,
        holdout=holdout or [],
        n_bootstrap=bootstrap,
        seed=seed,
        fit_from_step=fit_from,
        search=search,
        out=out,
    )
    print(report.text())
    if run_best is not None:
        from cooldown.predict.check import run_candidate

        check = run_candidate(report.search[0], runs[0], run_best, peak_lr=peak_lr, loss=loss)
        print(check.text())


# --- compare --------------------------------------------------------------------------------------
class _SeedsCommand(_ListOptionsCommand):
    list_options = ("--seeds",)


@app.command("compare", cls=_SeedsCommand)
def compare_cmd(
    runs: Annotated[
        list[Path],
        typer.Argument(
            help="Run folders (RUN, or RUN@WEIGHTS for a stored average); first: baseline."
        ),
    ],
    weights: Annotated[
        str, typer.Option("--weights", help="'raw' or a stored average (swa, lawa5, ema) for all.")
    ] = "raw",
    seeds: Annotated[
        Optional[list[str]],
        typer.Option(
            "--seeds",
            help="One more seed of every run, comma-separated in the runs' order "
            "(--seeds A2,B2 A3,B3); the interval then resamples seed pairs too.",
        ),
    ] = None,
    baseline: Annotated[
        Optional[str], typer.Option("--baseline", help="The run the others are compared with.")
    ] = None,
    out: Annotated[
        Optional[Path],
        typer.Option(
            "--out", help="Folder for compare.csv and compare.png (default: in BASELINE)."
        ),
    ] = None,
    bootstrap: Annotated[
        int, typer.Option("--bootstrap", min=1, help="Bootstrap resamples.")
    ] = 2000,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:1, mps.")] = "cpu",
    doc_tokens: Annotated[
        Optional[int],
        typer.Option(
            "--doc-tokens",
            min=1,
            help="Score only the first N tokens of every validation document (whole windows; "
            "for large splits). Default: the whole split.",
        ),
    ] = None,
) -> None:
    """Paired loss differences between runs on the same validation documents, with 95% intervals."""
    from cooldown.compare import compare_runs

    result = compare_runs(
        [str(r) for r in runs],
        seeds=seeds or [],
        baseline=baseline,
        weights=weights,
        out=out,
        n_boot=bootstrap,
        device=device,
        max_doc_tokens=doc_tokens,
    )
    print(result.text())
    print(result.csv_path)
    print(result.plot_path)


@benchmark_app.command("mpl")
def predict_benchmark_mpl(
    out: Annotated[
        Path, typer.Option("--out", help="Folder for mpl.csv, mpl.md and mpl.png.")
    ] = Path("out/predict-benchmark"),
    law: Annotated[
        str, typer.Option("--law", help="mpl (Multi-Power Law) or tissue (LR-annealing law).")
    ] = "mpl",
    bootstrap: Annotated[
        int, typer.Option("--bootstrap", min=0, help="Bootstrap replicates (0: none, fastest).")
    ] = 0,
    size: Annotated[
        Optional[list[str]],
        typer.Option("--size", help="Model size, 25M, 100M or 400M (repeatable; default all)."),
    ] = None,
    split: Annotated[
        Optional[list[str]],
        typer.Option(
            "--split",
            help="paper (fit cosine_24000 + constant_24000 + wsdcon_9) or wsd (constant_24000 + "
            "wsd_20000_24000) (repeatable; default both).",
        ),
    ] = None,
    readme: Annotated[
        Optional[Path], typer.Option("--readme", help="then rewrite the MPL table in this README")
    ] = None,
) -> None:
    """Fit the law on the MPL paper's own GPU loss curves (25M/100M/400M) and predict the runs
    left out, beside the paper's published errors."""
    from cooldown.predict.laws import get_law
    from cooldown.predict.mpl_benchmark import mpl_benchmark, mpl_selection, output_folder

    get_law(law)  # bad input fails before the fits and before --out is made
    sizes, splits = mpl_selection(size, split)
    output_folder(out)
    result = mpl_benchmark(sizes, splits, law, n_bootstrap=bootstrap)
    paths = result.write(out)
    print(result.summary_markdown())
    print("\n".join(str(p) for p in paths))
    if readme is not None:
        from cooldown.predict.mpl_benchmark import readme_text
        from cooldown.readme_blocks import MPL_BEGIN, MPL_END, replace_block

        print(
            f"table written into {replace_block(readme, MPL_BEGIN, MPL_END, readme_text(result))}"
        )


# --- export and eval ------------------------------------------------------------------------------
_CHECKPOINT_HELP = "Checkpoint folder RUN/checkpoints/step_NNNNNNN (or a run folder: its latest)."
_WEIGHTS_HELP = "'raw', or averaged weights stored in the checkpoint (e.g. swa, ema)."


@app.command("export")
def export_cmd(
    checkpoint: Annotated[Path, typer.Argument(help=_CHECKPOINT_HELP)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write.")] = ...,
    format: Annotated[
        str, typer.Option("--format", help="'hf': a Hugging Face Llama folder.")
    ] = "hf",
    weights: Annotated[str, typer.Option("--weights", help=_WEIGHTS_HELP)] = "raw",
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an earlier export in --out.")
    ] = False,
) -> None:
    """Export a checkpoint: config.json, model.safetensors and the tokenizer files."""
    from cooldown.export import export_checkpoint, exported_step

    folder = export_checkpoint(checkpoint, out, format=format, weights=weights, overwrite=overwrite)
    step, weights_name, source = exported_step(folder)
    print(f"exported step {step} ({weights_name} weights) of {source}")
    print(folder)


@app.command("eval")
def eval_cmd(
    checkpoint: Annotated[Path, typer.Argument(help=_CHECKPOINT_HELP)],
    tasks: Annotated[
        Optional[str],
        typer.Option(
            "--tasks",
            help="lm-evaluation-harness tasks, comma-separated (default: the paper's mmlu, "
            "arc_easy, arc_challenge, openbookqa, piqa, hellaswag, commonsense_qa, social_iqa, "
            "winogrande; their datasets come from the Hugging Face hub).",
        ),
    ] = None,
    limit: Annotated[
        Optional[int], typer.Option("--limit", min=1, help="Documents per task (default: all).")
    ] = None,
    weights: Annotated[str, typer.Option("--weights", help=_WEIGHTS_HELP)] = "raw",
    include_path: Annotated[
        Optional[list[Path]],
        typer.Option("--include-path", help="Folder of task YAML files (repeatable)."),
    ] = None,
    num_fewshot: Annotated[
        Optional[int], typer.Option("--num-fewshot", min=0, help="Few-shot examples per prompt.")
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Sequences per forward pass.")
    ] = 4,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:1, mps.")] = "cpu",
) -> None:
    """Score a checkpoint on downstream tasks; results go to RUN/eval/step_NNNNNNN-<weights>.json."""
    from cooldown.downstream import evaluate_checkpoint, parse_tasks

    result = evaluate_checkpoint(
        checkpoint,
        parse_tasks(tasks),
        limit=limit,
        weights=weights,
        include_path=include_path,
        num_fewshot=num_fewshot,
        batch_size=batch_size,
        device=device,
    )
    print(result.summary())
    print(result.path)


@app.command("merge")
def merge_cmd(
    sources: Annotated[
        list[Path],
        typer.Argument(help="A run folder (with --steps), or checkpoint folders to merge."),
    ],
    steps: Annotated[
        Optional[list[int]], typer.Option("--steps", help="Steps of the run's checkpoints.")
    ] = None,
    weighting: Annotated[
        str, typer.Option("--weighting", help="uniform, ema or decay:SHAPE (WSM).")
    ] = "uniform",
    ema_decay: Annotated[float, typer.Option("--ema-decay", help="Decay of 'ema'.")] = 0.8,
    out: Annotated[
        Optional[Path], typer.Option("--out", help="Folder (default RUN/merges/NAME).")
    ] = None,
    weights: Annotated[str, typer.Option("--weights", help=_WEIGHTS_HELP)] = "raw",
    force: Annotated[
        bool, typer.Option("--force", help="Merge checkpoints outside the stable phase too.")
    ] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace --out.")] = False,
) -> None:
    """Merge stable-phase checkpoints into one (uniform, EMA or WSM decay-shaped weights)."""
    from cooldown.merge import merge

    result = merge(
        list(sources),
        steps,
        weighting,
        ema_decay=ema_decay,
        out=out,
        weights=weights,
        force=force,
        overwrite=overwrite,
    )
    pairs = ", ".join(
        f"{s}: {c:.4g}" for s, c in zip(result.steps, result.coefficients, strict=True)
    )
    print(f"merged steps {pairs} ({weighting})")
    print(result.checkpoint)


# --- reproduce ------------------------------------------------------------------------------------
@app.command("reproduce")
def reproduce_cmd(
    preset: Annotated[
        str, typer.Option(help="smoke (about a minute), cpu (the main job) or paper (GPUs)")
    ] = "cpu",
    out: Annotated[
        Optional[Path], typer.Option(help="output folder (default out/reproduce-PRESET)")
    ] = None,
    readme: Annotated[
        Optional[Path],
        typer.Option(help="then rewrite the claims table in this README from claims.json"),
    ] = None,
) -> None:
    """The paper's experiments in miniature, with report.html, results.csv and claims.json."""
    from cooldown.reproduce import reproduce
    from cooldown.reproduce.readme_table import update_readme

    result = reproduce(preset, out)
    if readme is not None:
        print(f"claims table written into {update_readme(readme, result.out / 'claims.json')}")


def _click_classes(name: str) -> tuple[type, ...]:
    """click's exception class `name` and typer's own copy of it (typer >= 0.22 vendors click,
    so its parser raises `typer._click.exceptions.UsageError`, which is not click's)."""
    import click

    found = [getattr(click.exceptions, name)]
    try:
        from typer import exceptions as typer_exceptions
        from typer._click import exceptions as vendored
    except ImportError:
        return tuple(found)
    for module in (vendored, typer_exceptions):
        cls = getattr(module, name, None)
        if isinstance(cls, type) and cls not in found:
            found.append(cls)
    return tuple(found)


# Failures of the file system a user can fix (a read-only or full disk, missing permissions): one
# line naming the file, like any other bad input.
_USER_OS_ERRORS = {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT}


def main(argv: Optional[list[str]] = None) -> None:
    """Entry point: user errors become one `error: ...` line on stderr and exit status 2 (usage
    errors click's usage message and 2); Ctrl-C one line and 130."""
    import signal

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # A shell script starts its background jobs with SIGINT ignored, so `kill -INT` did
        # nothing and the run went on to exit 0. A SIGINT is a request to stop: every command
        # stops cleanly on it, and a run resumes where it stopped.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        app(args=argv, prog_name="cooldown", standalone_mode=False)
    except CooldownError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except Interrupted as e:
        print(e, file=sys.stderr)
        sys.exit(130)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except OSError as e:
        if e.errno not in _USER_OS_ERRORS:
            raise
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror}", file=sys.stderr)
        sys.exit(2)
    except Exception as e:
        if isinstance(e, _click_classes("ClickException")):
            e.show()
            sys.exit(e.exit_code)
        if isinstance(e, _click_classes("Exit")):
            if e.exit_code == 130:  # typer's answer to a Ctrl-C outside our commands' handlers
                print("interrupted", file=sys.stderr)
            sys.exit(e.exit_code)
        if isinstance(e, _click_classes("Abort")):
            print("aborted", file=sys.stderr)
            sys.exit(130)
        raise
