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
from cooldown.study.adapter_nodes import adapter_columns, adapter_result, is_adapter_run
from cooldown.study.methods import REGISTRY
from cooldown.study.methods.base import NoResult
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
    if is_adapter_run(run_dir):
        return adapter_result(run_dir, expect_steps)
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
    sources = _Sources(plan, nodes, study_dir)
    for point in plan.points():
        try:
            rows.append(_row(plan, point, sources))
        except NoResult as e:
            missing[point.id] = str(e)
    _mark_best(rows)
    return Results(rows, missing)


class _Sources:
    """What the state and the run folders hold, for the methods to read their points from
    (`cooldown.study.methods.base.PointSources`); one law fit per trunk (size, LR, seed), shared
    by that trunk's predicted points, and a fit that cannot be made leaves each of them missing
    with the reason."""

    def __init__(self, plan: Plan, nodes: dict[str, dict[str, Any]], study_dir: Path):
        self.plan, self.nodes, self.study_dir = plan, nodes, study_dir
        self.fits: dict[tuple[str, ...], Any] = {}

    def stored(self, node_id: str) -> dict[str, Any]:
        node = self.nodes.get(node_id)
        if node is None:
            raise NoResult("not recorded yet (run `cooldown study run`)")
        if node["state"] != "done" or node["result"] is None:
            raise NoResult(f"node {node_id} is {node['state']}")
        return node["result"]

    def trunk_vocab(self, trunk_id: str, info: SizeInfo) -> int:
        node = self.nodes.get(trunk_id)
        if node is not None and node["result"]:
            return int(node["result"]["manifest"].get("vocab_size") or info.model.vocab_size)
        return int(info.model.vocab_size)

    def trunk_eval_rows(self, trunk_id: str) -> list[dict[str, Any]]:
        node = self.nodes.get(trunk_id)
        if node is not None and node["state"] == "done" and node["result"]:
            return node["result"]["eval_rows"]
        # A read-off does not wait for the trunk to finish: its evaluations so far are in its log.
        return _eval_rows(node_run(self.study_dir, trunk_id).metrics())

    def prediction(self, point: PlanNode) -> Any:
        from cooldown.study.predicted_points import predict_group

        key = point.fit_on
        if key not in self.fits:
            try:
                results = {n: self.stored(n) for n in key}
                self.fits[key] = predict_group(self.plan, point, results, self.study_dir)
            except NoResult as e:
                self.fits[key] = f"waits for the runs it is predicted from: {e}"
            except CooldownError as e:
                self.fits[key] = f"the {', '.join(key)} curves could not be fitted: {e}"
        found = self.fits[key]
        if isinstance(found, str):
            raise NoResult(found)
        return found


def _row(plan: Plan, point: PlanNode, sources: _Sources) -> dict[str, Any]:
    info = plan.sizes[point.size]
    conv = plan.convention
    method = REGISTRY[point.method]
    measured = method.point_loss(plan, point, sources)
    loss, raw, vocab = measured.loss, measured.raw, measured.vocab
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
        "loss_evaluation": measured.how,
        "val_loss_eval": measured.val_loss_eval,
        "predicted": point.kind == "prediction",
        **measured.extra,
    }
    for name, value in sorted(measured.averages.items()):
        row[f"final_val_loss_{name}"] = value
    if plan.spec.adapter is not None:  # the trainer's own counts and metric
        result = sources.stored(point.reuses or point.id)
        row.update(adapter_columns(result, point.total_steps, point.incremental_steps))
        for c in FLOP_CONVENTIONS:  # cooldown's conventions count cooldown's model, not theirs
            row[f"compute_flops_{c}"] = None
        return row
    # Downstream evaluations of the point's model (a predicted point has no model).
    model_of = method.point_model(plan, point)
    if model_of is not None:
        run_id, step, only = model_of
        row.update(_downstream_columns(node_run(sources.study_dir, run_id).path, step, only=only))
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
