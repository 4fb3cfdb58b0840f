"""`cooldown study results`: one row per budget point, for `cooldown fit` and for comparing methods.

A row per (size, budget, method, shape, LR, seed):

- `params`, `non_embedding_params` (the paper's count at the run's actual vocabulary: embeddings
  included, norms left out), `tokens` (trained along the point's whole trajectory, a branch's
  trunk prefix included);
- `compute_flops` under the study's `flop_convention`, and `compute_flops_<convention>` under
  each: the training compute of the point's model, the scaling-law axis;
- `method_compute_flops`, `method_steps`: what the point ADDED to its method's cost (a cosine run:
  all of it; a cooldown branch: its cooldown plus the trunk segment since the previous branch
  point; an swa read-off: the trunk segment since the previous budget), so the points of one
  (size, method, shape, LR, seed) add up to the method's cost with the shared trunk counted once;
- `final_val_loss`: the point's loss (raw weights for cosine and cooldown, the average for swa),
  `final_val_loss_raw`, and `final_val_loss_<average>` for each weight average the run kept;
  `loss_evaluation` says whether it is the full validation pass or the `train.eval_batches`
  estimate (swa read-offs come from the trunk's evaluations); `val_loss_eval` is the eval-batches
  estimate of the raw weights at the final step for every point, a like-for-like comparison;
- `best_in_sweep`: the LR with the lowest final loss for its (size, budget, method, shape, seed);
- `predicted`: true for a `cooldown-predicted` point that was never trained: its loss is the
  law's prediction (`cooldown.study.predicted_points`, one fit per size, LR and seed) converted to
  the full-pass scale by `calibration`, with `loss_interval_low`/`_high` from the fit's
  bootstrap (nats/token; columns of that method's rows only). Its compute columns are those of
  the model it stands for; its `method_compute_flops` is 0 (nothing was trained for it).

CSV always, Parquet too when pyarrow is importable; both written atomically. Points without a
result yet are reported, never silently dropped. Torch-free.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

from cooldown.errors import CooldownError
from cooldown.fileio import atomic_write_bytes, atomic_write_text
from cooldown.flops import FLOP_CONVENTIONS, training_flops
from cooldown.model_sizes import non_embedding_param_count, param_count
from cooldown.run_dir import MANIFEST_FILE, RunDir
from cooldown.study.plan import Plan, PlanNode, SizeInfo, build_plan
from cooldown.study.run_dirs import node_run
from cooldown.study.spec import load_study, study_dir_for
from cooldown.study.state import StudyState

COLUMNS: tuple[str, ...] = (
    "size",
    "method",
    "shape",
    "lr",
    "seed",
    "budget_steps",
    "node_id",
    "params",
    "non_embedding_params",
    "vocab_size",
    "batch_size",
    "seq_len",
    "tokens",
    "flop_convention",
    "compute_flops",
    *(f"compute_flops_{c}" for c in FLOP_CONVENTIONS),
    "method_steps",
    "method_compute_flops",
    "final_val_loss",
    "final_val_loss_raw",
    "loss_evaluation",
    "val_loss_eval",
    "best_in_sweep",
    "predicted",
)


# --- one run's results ----------------------------------------------------------------------------


def read_run_result(run_dir: str | Path, expect_steps: int | None = None) -> dict[str, Any]:
    """A finished run's results (its manifest, evaluation rows and throughput) as stored in the
    study state; an error when the run is not complete."""
    run = RunDir(run_dir)
    manifest = run.manifest()
    if manifest is None:
        raise CooldownError(f"{run.path}: no {MANIFEST_FILE} (the run has not started)")
    if not run.is_complete(expect_steps):
        raise CooldownError(
            f"{run.path}: the run is not complete (status {manifest.status!r}, "
            f"steps {manifest.steps} of {expect_steps})"
        )
    rows = run.metrics()
    return {
        "manifest": manifest.as_dict(),
        "eval_rows": _eval_rows(rows),
        "tokens_per_s": _median_rate(rows),
    }


def _eval_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {k: v for k, v in r.items() if k == "step" or k.startswith("val_loss")}
        for r in rows
        if r.get("val_loss") is not None
    ]


def _median_rate(rows: list[dict[str, Any]]) -> float | None:
    rates = [r["tokens_per_s"] for r in rows if isinstance(r.get("tokens_per_s"), int | float)]
    rates = [x for x in rates if x > 0 and math.isfinite(x)]
    return median(rates) if rates else None


# --- the table ------------------------------------------------------------------------------------


@dataclass
class Results:
    rows: list[dict[str, Any]]
    missing: dict[str, str]  # point id -> why it has no row

    def sweep_lines(self) -> list[str]:
        """The LR sweep of every point that has more than one LR, best first."""
        groups: dict[tuple, list[dict[str, Any]]] = {}
        for r in self.rows:
            key = (r["size"], r["budget_steps"], r["method"], r["shape"], r["seed"])
            groups.setdefault(key, []).append(r)
        lines = []
        for (size, budget, method, shape, seed), group in groups.items():
            if len(group) < 2:
                continue
            group = sorted(group, key=lambda r: (r["final_val_loss"], r["lr"]))
            tried = ", ".join(f"lr {r['lr']:g}: {r['final_val_loss']:.4f}" for r in group)
            name = f"{method} {shape}".rstrip()
            lines.append(
                f"{size} {budget:,} steps {name} seed {seed}: best lr {group[0]['lr']:g} "
                f"(final val loss, nats/token: {tried})"
            )
        return lines


def collect_results(study_path: str | Path, out: str | Path | None = None) -> Results:
    """The results table of the study in `study_path`'s folder (or `out`)."""
    plan = build_plan(load_study(study_path))
    study_dir = study_dir_for(study_path, out)
    with StudyState(study_dir, create=False) as state:
        nodes = {n["id"]: n for n in state.nodes()}
    rows: list[dict[str, Any]] = []
    missing: dict[str, str] = {}
    predictions = _Predictions(plan, nodes, study_dir)
    for point in plan.points():
        try:
            rows.append(_row(plan, point, nodes, study_dir, predictions))
        except _NoResult as e:
            missing[point.id] = str(e)
    _mark_best(rows)
    return Results(rows, missing)


class _NoResult(Exception):
    pass


def _stored(nodes: dict[str, dict[str, Any]], node_id: str) -> dict[str, Any]:
    node = nodes.get(node_id)
    if node is None:
        raise _NoResult("not recorded yet (run `cooldown study run`)")
    if node["state"] != "done" or node["result"] is None:
        raise _NoResult(f"node {node_id} is {node['state']}")
    return node["result"]


class _Predictions:
    """One law fit per trunk (size, LR, seed), shared by that trunk's predicted points; a fit
    that cannot be made leaves each of them missing with the reason."""

    def __init__(self, plan: Plan, nodes: dict[str, dict[str, Any]], study_dir: Path):
        self.plan, self.nodes, self.study_dir = plan, nodes, study_dir
        self.fits: dict[tuple[str, ...], Any] = {}

    def get(self, point: PlanNode) -> Any:
        from cooldown.study.predicted_points import predict_group

        key = point.fit_on
        if key not in self.fits:
            try:
                results = {n: _stored(self.nodes, n) for n in key}
                self.fits[key] = predict_group(self.plan, point, results, self.study_dir)
            except _NoResult as e:
                self.fits[key] = f"waits for the runs it is predicted from: {e}"
            except CooldownError as e:
                self.fits[key] = f"the {', '.join(key)} curves could not be fitted: {e}"
        found = self.fits[key]
        if isinstance(found, str):
            raise _NoResult(found)
        return found


def _trunk_eval_rows(nodes: dict[str, dict[str, Any]], trunk_id: str, study_dir: Path) -> list:
    node = nodes.get(trunk_id)
    if node is not None and node["state"] == "done" and node["result"]:
        return node["result"]["eval_rows"]
    # A read-off does not wait for the trunk to finish: its evaluations so far are in its log.
    return _eval_rows(node_run(study_dir, trunk_id).metrics())


def _row(
    plan: Plan,
    point: PlanNode,
    nodes: dict[str, dict[str, Any]],
    study_dir: Path,
    predictions: _Predictions,
) -> dict[str, Any]:
    info = plan.sizes[point.size]
    conv = plan.convention
    averages: dict[str, float | None] = {}
    # The run a measured point reads: its own node, or the other method's branch it shares.
    run_id = point.reuses or point.id
    extra: dict[str, Any] = {}
    if point.method == "cooldown-predicted":
        extra = dict.fromkeys(("loss_interval_low", "loss_interval_high", "calibration"))
    if point.kind == "prediction":
        group = predictions.get(point)
        extra = group.point(point)
        assert point.parent is not None
        vocab = _trunk_vocab(nodes, point.parent, info)
        loss = raw = extra.pop("final_val_loss")
        val_loss_eval = extra.pop("val_loss_eval")
        how = group.loss_evaluation
    elif point.kind == "average":
        assert plan.spec.methods.swa is not None and point.parent is not None
        at = [
            r
            for r in _trunk_eval_rows(nodes, point.parent, study_dir)
            if r["step"] == point.budget_steps
        ]
        if not at:
            raise _NoResult(f"trunk {point.parent} has no evaluation at step {point.budget_steps}")
        evaluation = at[-1]
        key = f"val_loss_{plan.spec.methods.swa.average}"
        if evaluation.get(key) is None:
            raise _NoResult(
                f"trunk {point.parent} logged no {key} at step {point.budget_steps} "
                "(check the [averaging] table)"
            )
        vocab = _trunk_vocab(nodes, point.parent, info)
        raw = evaluation["val_loss"]
        loss = evaluation[key]
        averages = {
            k.removeprefix("val_loss_"): v
            for k, v in evaluation.items()
            if k.startswith("val_loss_")
        }
        how = "eval_batches"
        val_loss_eval = raw
    else:
        result = _stored(nodes, run_id)
        manifest = result["manifest"]
        vocab = int(manifest.get("vocab_size") or info.model.vocab_size)
        final_eval = [r for r in result["eval_rows"] if r["step"] == point.total_steps]
        val_loss_eval = final_eval[-1]["val_loss"] if final_eval else None
        raw = manifest.get("final_val_loss")
        how = "full"
        if raw is None:  # train.final_full_eval = false: the last evaluation stands in
            raw, how = val_loss_eval, "eval_batches"
        if raw is None:
            raise _NoResult(f"node {run_id} recorded no validation loss")
        loss = raw
        averages = {
            k.removeprefix("final_val_loss_"): v
            for k, v in manifest.items()
            if k.startswith("final_val_loss_") and k != "final_val_loss_raw"
        }
    model = info.model.model_copy(update={"vocab_size": vocab})
    tokens = point.total_steps * info.tokens_per_step
    compute = {c: training_flops(model, info.seq_len, tokens, c) for c in FLOP_CONVENTIONS}
    row: dict[str, Any] = {
        "size": point.size,
        "method": point.method,
        "shape": point.shape or "",
        "lr": point.lr,
        "seed": point.seed,
        "budget_steps": point.total_steps,
        "node_id": point.id,
        "params": param_count(model),
        "non_embedding_params": non_embedding_param_count(model),
        "vocab_size": vocab,
        "batch_size": info.batch_size,
        "seq_len": info.seq_len,
        "tokens": tokens,
        "flop_convention": conv,
        "compute_flops": compute[conv],
        **{f"compute_flops_{c}": compute[c] for c in FLOP_CONVENTIONS},
        "method_steps": point.incremental_steps,
        "method_compute_flops": training_flops(
            model, info.seq_len, point.incremental_steps * info.tokens_per_step, conv
        ),
        "final_val_loss": loss,
        "final_val_loss_raw": raw,
        "loss_evaluation": how,
        "val_loss_eval": val_loss_eval,
        "predicted": point.kind == "prediction",
        **extra,
    }
    for name, value in sorted(averages.items()):
        row[f"final_val_loss_{name}"] = value
    # Downstream evaluations of the point's model (a predicted point has no model).
    if point.kind == "average":
        row.update(
            _downstream_columns(
                node_run(study_dir, point.parent).path,
                point.budget_steps,
                only=plan.spec.methods.swa.average,
            )
        )
    elif point.kind != "prediction":
        row.update(_downstream_columns(node_run(study_dir, run_id).path, point.total_steps))
    return row


def _downstream_columns(run_dir: Path, step: int, only: str | None = None) -> dict[str, Any]:
    """`cooldown eval` results of the run at `step`: eval_<task>_<metric> for the raw weights,
    eval_<weights>_<task>_<metric> for averaged ones (`only`: the one set this point stands for,
    named like raw weights)."""
    from cooldown.downstream import read_eval_results  # imports torch; only when reading

    out: dict[str, Any] = {}
    for weights, tasks in read_eval_results(run_dir).get(step, {}).items():
        if only is not None and weights != only:
            continue
        prefix = "eval_" if weights in ("raw", only) else f"eval_{weights}_"
        for task, metrics in tasks.items():
            for metric, value in metrics.items():
                if isinstance(value, int | float):
                    # lm-eval names metrics "acc,none" (metric, filter); "none" is the default.
                    name = metric.removesuffix(",none").replace(",", "_")
                    out[f"{prefix}{task}_{name}"] = value
    return out


def _trunk_vocab(nodes: dict[str, dict[str, Any]], trunk_id: str, info: SizeInfo) -> int:
    node = nodes.get(trunk_id)
    if node is not None and node["result"]:
        return int(node["result"]["manifest"].get("vocab_size") or info.model.vocab_size)
    return int(info.model.vocab_size)


def _mark_best(rows: list[dict[str, Any]]) -> None:
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        key = (r["size"], r["budget_steps"], r["method"], r["shape"], r["seed"])
        groups.setdefault(key, []).append(r)
    for group in groups.values():
        best = min(group, key=lambda r: (r["final_val_loss"], r["lr"]))
        for r in group:
            r["best_in_sweep"] = r is best


# --- writing --------------------------------------------------------------------------------------


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    extra = sorted({k for r in rows for k in r} - set(COLUMNS))
    return [*COLUMNS, *extra]


def results_csv(rows: list[dict[str, Any]]) -> str:
    columns = _columns(rows)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({c: _cell(r.get(c)) for c in columns})
    return buf.getvalue()


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # round-trips exactly
    return value


def write_results(rows: list[dict[str, Any]], out_csv: str | Path) -> list[Path]:
    """Write the CSV (and a Parquet beside it when pyarrow is importable), atomically."""
    out_csv = Path(out_csv)
    if out_csv.suffix != ".csv":
        raise CooldownError(f"--out must name a .csv file (got {out_csv})")
    written = [atomic_write_text(out_csv, results_csv(rows))]
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return written
    columns = _columns(rows)
    table = pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in rows])
    buf = io.BytesIO()
    pq.write_table(table, buf)
    written.append(atomic_write_bytes(out_csv.with_suffix(".parquet"), buf.getvalue()))
    return written


def study_results(
    study_path: str | Path, out_csv: str | Path | None = None, out: str | Path | None = None
) -> tuple[list[Path], Results]:
    """Collect the results table and write it (default: STUDY_DIR/results.csv)."""
    results = collect_results(study_path, out)
    if not results.rows:
        raise CooldownError(
            f"no results yet in {study_dir_for(study_path, out)} "
            f"({len(results.missing)} points pending; run `cooldown study run`)"
        )
    target = Path(out_csv) if out_csv else study_dir_for(study_path, out) / "results.csv"
    return write_results(results.rows, target), results
