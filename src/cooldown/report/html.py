"""The self-contained HTML report of `cooldown reproduce`: every figure a PNG embedded as a base64
data URI, one section per experiment, and the claims table (one row per paper takeaway)."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from cooldown.fileio import atomic_write_text
from cooldown.report import reproduce_plots as rp
from cooldown.reproduce.claims import interval_text

SECTION_IDS = (
    "schedules",
    "lr-sweep",
    "loss-curves",
    "cosine-vs-cooldown",
    "shapes",
    "lengths",
    "swa",
    "schedule-free",
    "interpolation",
    "scaling",
    "compute",
    "prediction",
    "real-curves",
    "muon",
    "merging",
    "claims",
)

_CSS = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}
img{max-width:100%;border:1px solid #ddd}table{border-collapse:collapse;width:100%}
td,th{border:1px solid #ccc;padding:4px 8px;font-size:14px;vertical-align:top}
tr.held td.v{background:#d7f5d7}tr.did-not-hold td.v{background:#f8d4d4}
tr.inconclusive td.v{background:#f5efcc}"""


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _section(sid: str, title: str, body: str) -> str:
    return f'<section id="{sid}"><h2>{html.escape(title)}</h2>\n{body}\n</section>\n'


def _p(text: str) -> str:
    return f"<p>{html.escape(text)}</p>"


def _real_curves_table(fits: list[dict]) -> str:
    """One row per fit of the MPL paper's curves: our errors beside its published ones."""

    def pct(x):
        return "n/a" if x is None else f"{100 * x:.3f}%"

    def nats(x):
        return "n/a" if x is None else f"{x:.4f}"

    head = (
        "<tr><th>fit on</th><th>size</th><th>held-out runs</th><th>mean rel. error</th>"
        "<th>MPL paper</th><th>MAE (nats/token)</th><th>MPL paper MAE</th>"
        "<th>two runs of one schedule</th></tr>"
    )
    rows = "".join(
        f"<tr><td>{html.escape(' + '.join(f['fit_on']))}</td><td>{f['size']}</td>"
        f"<td>{f['test_runs']}</td><td>{pct(f['mean_rel_error'])}</td>"
        f"<td>{pct(f['paper_mean_rel_error'])}</td><td>{nats(f['mae'])}</td>"
        f"<td>{nats(f['paper_mae'])}</td><td>{pct(f['run_to_run'])}</td></tr>"
        for f in fits
    )
    return f"<table>{head}{rows}</table>"


def _ablation_section(sid, title, diffs, losses, fig_path, fig_title, seed) -> str:
    """An ablation's paired differences as a figure, its runs' final losses as a line."""
    fig = rp.plot_differences(diffs, fig_path, fig_title, "loss difference (nats/token)")
    text = ", ".join(f"{k} {v:.4f}" for k, v in losses.items())
    return _section(
        sid, title, _p(f"Final losses (seed {seed}): {text} nats/token.") + _img(fig, sid)
    )


def _schedule_sections(preset, res: dict, figs: Path) -> list[str]:
    """The schedules, the LR sweep and the loss curves."""
    from cooldown.report.schedule_plot import plot_schedules
    from cooldown.schedule_specs import schedule_from_config
    from cooldown.schedules import cooldown_split

    p = preset
    big = p.budgets[-1]
    sections: list[str] = []
    _, cool = cooldown_split(big, p.cooldown_frac, field="cooldown_frac")
    lr_cos, lr_con = res["a"]["lr_cosine"], res["a"]["lr_constant"]
    n_docs = res["a"]["budgets"][0]["difference"]["n_docs"]

    schedules = [
        schedule_from_config(
            {
                "kind": "cosine",
                "total_steps": big,
                "warmup_steps": p.warmup_steps,
                "final_lr_frac": 0.1,
            }
        ),
        schedule_from_config(
            {"kind": "constant", "total_steps": big, "warmup_steps": p.warmup_steps}
        ),
        schedule_from_config(
            {
                "kind": "wsd",
                "total_steps": big,
                "warmup_steps": p.warmup_steps,
                "cooldown_steps": cool,
                "shape": p.main_shape,
            }
        ),
    ]
    fig = plot_schedules(
        schedules,
        figs / "schedules.png",
        labels=[
            f"cosine to 10%, peak {lr_cos:g}",
            f"constant {lr_con:g}",
            f"constant {lr_con:g} + {p.main_shape} cooldown ({p.cooldown_frac:.0%})",
        ],
        title="LR multiplier of each schedule's own peak (peaks from the LR sweep)",
    )
    sections.append(
        _section(
            "schedules",
            "Learning-rate schedules",
            _p(
                f"Preset {p.name}: model {p.model}, batch {p.batch_size} x {p.seq_len} tokens, warmup "
                f"{p.warmup_steps} steps for every schedule. Every loss below is the final weights' "
                f"loss on the same validation tokens (the first {p.val_doc_tokens} predicted tokens "
                f"of each of the {n_docs} validation documents), in nats/token; every interval is a "
                f"95% paired bootstrap ({p.n_boot} resamples) over those documents and, where "
                "several seeds or sweep points stand on each side, over them too."
            )
            + _img(fig, "schedules"),
        )
    )
    sweep = res["sweep"]
    fig = rp.plot_lr_sensitivity(sweep, figs / "a_lr_sweep.png")
    at_best = sweep["constant_vs_cosine_at_best"]
    sections.append(
        _section(
            "lr-sweep",
            "(a) LR sensitivity: each schedule at its own best peak LR",
            _p(
                f"Both schedules swept over peak LRs {', '.join(f'{x:g}' for x in sweep['lrs'])} at "
                f"{sweep['budget']} updates (seed {p.seeds[0]}); every later run uses its "
                f"schedule's best: cosine {lr_cos:g}, constant {lr_con:g}. At the best LRs, "
                f"constant + cooldown - cosine = {interval_text(at_best)}."
            )
            + _img(fig, "LR sensitivity"),
        )
    )

    fig = rp.plot_loss_curves(
        {k: v["rows"] for k, v in res["curves"].items()},
        figs / "loss_curves.png",
        f"Validation loss, {big} updates (seed {p.seeds[0]})",
    )
    sections.append(_section("loss-curves", "Loss curves", _img(fig, "loss curves")))
    return sections


def _ablation_sections(preset, res: dict, figs: Path) -> list[str]:
    """(a)-(e): each comparison with its paired interval."""
    p = preset
    big = p.budgets[-1]
    sections: list[str] = []

    a = res["a"]
    vals = {}
    for x in a["budgets"]:
        vals[f"cosine {x['steps']}"] = x["cosine"]
        vals[f"cooldown {x['steps']}"] = x["cooldown"]
    fig = rp.plot_bars(
        vals,
        figs / "a_cosine_vs_cooldown.png",
        f"(a) cosine vs constant + 20% {p.main_shape} cooldown; dots: seeds {list(a['seeds'])}",
        colors=["C0", "C1"] * len(a["budgets"]),
    )
    fig_d = rp.plot_differences(
        {f"{x['steps']} steps": x["difference"] for x in a["budgets"]},
        figs / "a_differences.png",
        f"(a) cooldown - cosine, paired by seed (95% intervals; margin {p.margin} dashed)",
        "loss difference (nats/token)",
        margin=p.margin,
    )
    sections.append(
        _section(
            "cosine-vs-cooldown",
            "(a) Cosine vs constant LR + cooldown",
            _p(
                "cooldown - cosine: "
                + "; ".join(
                    f"{x['steps']} steps {interval_text(x['difference'])}" for x in a["budgets"]
                )
            )
            + _img(fig, "cosine vs cooldown")
            + _img(fig_d, "cosine vs cooldown differences"),
        )
    )

    b, c = res["b"], res["c"]
    sections.append(
        _ablation_section(
            "shapes",
            "(b) Cooldown shapes",
            {
                f"{p.main_shape} - linear\n(seeds)": b["main_vs_linear"],
                **{f"{s} - {p.main_shape}": v for s, v in b["vs_main"].items()},
            },
            b["shapes"],
            figs / "b_shapes.png",
            f"(b) cooldown shapes, {p.cooldown_frac:.0%} of {big} updates: paired differences "
            "(95% intervals)",
            p.seeds[0],
        )
    )
    sections.append(
        _ablation_section(
            "lengths",
            "(c) Cooldown lengths",
            {f"{float(f):.0%} - {p.cooldown_frac:.0%}": v for f, v in c["vs_main"].items()},
            {f"{float(k):.0%}": v for k, v in c["lengths"].items()},
            figs / "c_lengths.png",
            f"(c) {p.main_shape} cooldown length, {big} updates: paired differences against the "
            f"{p.cooldown_frac:.0%} cooldown (95% intervals)",
            p.seeds[0],
        )
    )
    d = res["d"]
    fig = rp.plot_bars(
        {
            k.replace("_", " "): d[k]
            for k in (
                "constant",
                "constant_swa",
                "constant_lawa",
                "cooldown",
                "cosine",
                "cosine_swa",
                "cosine_lawa",
            )
        },
        figs / "d_swa.png",
        f"(d) SWA (windows of {d['swa_window']} updates; lawa: last windows), seed {p.seeds[0]}",
    )
    sections.append(
        _section(
            "swa",
            "(d) Weight averaging (SWA)",
            _p(
                f"SWA - constant: {interval_text(d['swa_vs_constant'])}; SWA - cooldown: "
                f"{interval_text(d['swa_vs_cooldown'])}."
            )
            + _img(fig, "swa"),
        )
    )
    e = res["e"]
    fig = rp.plot_bars(
        {
            **{f"schedule-free {k}": v for k, v in e["schedule_free"].items()},
            "cooldown": e["cooldown"],
            "cosine": e["cosine"],
        },
        figs / "e_schedule_free.png",
        f"(e) schedule-free AdamW (betas) at {e['budget']} updates, peak LR {e['lr']:g}",
    )
    sections.append(
        _section(
            "schedule-free",
            "(e) Schedule-free AdamW",
            _p(
                f"Betas: {interval_text(e['betas'])}; cooldown - best schedule-free: "
                f"{interval_text(e['cooldown_vs_sf'])}."
            )
            + _img(fig, "sf"),
        )
    )
    return sections


def _interpolation_and_scaling_sections(res: dict, figs: Path) -> list[str]:
    """(f) the interpolation, (g) the scaling sweep, its fits and compute."""
    from cooldown.report.interpolation_plot import plot_interpolation

    sections: list[str] = []

    f = res["f"]
    fig = plot_interpolation(
        f["alphas"],
        f["val_loss"],
        figs / "f_interpolation.png",
        label_a=f"step {f['from_step']} (before cooldown)",
        label_b=f"step {f['to_step']} (after cooldown)",
        title="(f) loss along the line across the cooldown",
    )
    sections.append(
        _section("interpolation", "(f) Interpolation across a cooldown", _img(fig, "interpolation"))
    )

    g, fits = res["g"], res["g_fits"]
    fig = rp.plot_scaling_points(
        g["points"] + res["g_predicted"]["points"], g["flop_convention"], figs / "g_scaling.png"
    )
    rows = "".join(
        f"<tr><td>{m}</td>"
        + "".join(
            f"<td>{fits[m][k]:.4g}</td>"
            for k in ("E", "A", "B", "alpha", "beta", "a_params_exponent", "b_tokens_exponent")
        )
        + "</tr>"
        for m in fits
    )
    table = (
        "<table><tr><th>method</th><th>E</th><th>A</th><th>B</th><th>alpha</th>"
        "<th>beta</th><th>a (N*~C^a)</th><th>b (D*~C^b)</th></tr>" + rows + "</table>"
    )
    body = (
        _p(
            f"cooldown - cosine over the sweep's points: {interval_text(g['cooldown_vs_cosine'])}; "
            "each size at one peak LR from pilots (cosine), the constant's scaled by the (a) "
            "sweep's ratio."
        )
        + _img(fig, "scaling")
        + table
    )
    try:
        from cooldown.report.scaling_plots import plot_frontier
        from cooldown.scaling import ChinchillaLaw, make_points

        pts = [x for x in g["points"] if x["method"] == "cooldown"]
        sp = make_points(
            [x["params"] for x in pts],
            [x["loss"] for x in pts],
            tokens=[x["tokens"] for x in pts],
            compute=[x["compute_flops"] for x in pts],
            flop_convention=g["flop_convention"],
        )
        law = ChinchillaLaw(**{k: fits["cooldown"][k] for k in ("E", "A", "B", "alpha", "beta")})
        body += _img(plot_frontier(sp, law, [], figs / "g_frontier.png"), "frontier")
    except Exception as exc:  # a degenerate fit (an exponent <= 0) has no frontier
        body += _p(f"No compute-optimal frontier: {exc}")
    sections.append(_section("scaling", "(g) Scaling sweep and Chinchilla fits", body))
    fig = rp.plot_compute_by_method(
        g["compute_by_method"], g["flop_convention"], figs / "g_compute.png"
    )
    sections.append(_section("compute", "Compute by method", _img(fig, "compute")))
    return sections


def _prediction_sections(preset, res: dict, figs: Path, evaluation) -> list[str]:
    """(h) loss prediction on this reproduction's runs and on the MPL paper's."""
    p = preset
    sections: list[str] = []

    h = res["h"]
    one = h["one_branch"]
    body = _p(
        f"Multi-Power law fitted on: {', '.join(h['fit_on'])}. Losses are the logged val_loss "
        f"({p.eval_batches} validation batches spread over the split) at each run's last step. "
        f"Fitted on {', '.join(one['fit_on'])} only, the same law's errors at the fitted LR are "
        f"mean {100 * one['mare']:.2f}%, worst {100 * one['worst']:.2f}%."
    )
    if evaluation is not None:
        from cooldown.report.prediction_plot import plot_predictions

        body += _img(
            plot_predictions(
                evaluation.curves,
                evaluation.predictions,
                figs / "h_prediction.png",
                title="(h) predicted (lines) vs measured (points)",
            ),
            "prediction",
        )
    body += (
        "<table><tr><th>held-out run</th><th>measured (nats/token)</th><th>predicted</th>"
        "<th>relative error</th></tr>"
        + "".join(
            f"<tr><td>{html.escape(r['run'])}</td><td>{r['measured']:.4f}</td>"
            f"<td>{r['predicted']:.4f}</td><td>{100 * r['relative_error']:+.2f}%</td></tr>"
            for r in h["rows"]
        )
        + "</table>"
    )
    w = h["search"]
    body += _p(
        f"Schedule search: the law's best cooldowns for {p.budgets[-1]} steps at the constant "
        f"LR (predicted final val_loss, nats/token). The winner was run: measured "
        f"{w['measured']:.4f} vs predicted {w['predicted']:.4f} "
        f"({100 * w['relative_error']:+.2f}%); the default {html.escape(w['default'])} measured "
        f"{w['default_measured']:.4f}."
    ) + (
        "<table><tr><th>shape</th><th>cooldown</th><th>from step</th><th>predicted</th></tr>"
        + "".join(
            f"<tr><td>{html.escape(c['shape'])}</td><td>{c['cooldown_frac']:.0%} "
            f"({c['cooldown_steps']} steps)</td><td>{c['cooldown_start']}</td>"
            f"<td>{c['predicted']:.4f}</td></tr>"
            for c in w["top"]
        )
        + "</table>"
    )
    sections.append(_section("prediction", "(h) Predicted vs measured cooldowns", body))

    real = res["real_curves"]
    sections.append(
        _section(
            "real-curves",
            "(h) The same law on real GPU runs (Multi-Power Law paper)",
            _p(
                "Fitted on the MPL paper's own training split (and, apart, on a constant run + "
                "one WSD cooldown), predicting its held-out runs; its published errors beside "
                "ours (training loss in nats/token; curves: Luo et al. 2025, MIT)."
            )
            + _real_curves_table(real["fits"])
            + _img(Path(real["figure"]), "MPL curves"),
        )
    )
    return sections


def _claims_section(res: dict) -> list[str]:
    """The claims table, one row per paper takeaway."""
    sections: list[str] = []

    crow = "".join(
        f'<tr class="claim {c["verdict"].replace(" ", "-")}"><td>{html.escape(c["takeaway"])}'
        f'</td><td>{html.escape(c["measured"])}</td><td class="v">{html.escape(c["verdict"])}'
        "</td></tr>"
        for c in res["claims"]
    )
    sections.append(
        _section(
            "claims",
            "Claims",
            (
                '<table id="claims-table"><tr><th>paper takeaway</th><th>measured here</th>'
                f"<th>verdict</th></tr>{crow}</table>"
            ),
        )
    )
    return sections


def _beyond_sections(preset, res: dict, figs: Path) -> list[str]:
    """(i) cooldowns under Muon, (j) merged stable-phase checkpoints (when the preset has them)."""
    p, sections = preset, []
    cf = f"{p.cooldown_frac:.0%}"
    i = res.get("i")
    if i is not None:
        diffs = {f"{p.main_shape} - linear ({cf})": i["main_vs_linear"]}
        diffs.update({f"{float(f):.0%} - {cf}": d for f, d in i["vs_main"].items()})
        diffs[f"Muon - AdamW ({p.main_shape} {cf})"] = i["adamw_vs_muon"]
        losses = {
            "constant": i["constant"],
            **{f"{float(f):.0%}": v for f, v in i["lengths"].items()},
        }
        sections.append(
            _ablation_section(
                "muon",
                f"(i) Cooldowns under Muon (match_rms_adamw, peak LR {i['lr']:g}; one seed)",
                diffs,
                losses,
                figs / "i_muon.png",
                "Muon: paired differences (95%, documents)",
                p.seeds[0],
            )
        )
    j = res.get("j")
    if j is not None:
        diffs = {}
        for w in j["weightings"]:
            diffs[f"{w} - cooldown"] = j["vs_cooldown"][w]
            diffs[f"{w} - SWA"] = j["vs_swa"][w]
            diffs[f"{w} - constant"] = j["vs_constant"][w]
        mean = {k: sum(v) / len(v) for k, v in j["merged"].items()}
        for k in ("cooldown", "swa", "constant"):
            mean[k] = sum(j[k]) / len(j[k])
        steps = j["steps"]
        body = _p(
            f"Checkpoints at steps {steps[0]}..{steps[-1]} (every {steps[1] - steps[0]}) of each "
            f"seed's constant run, merged; compared at step {steps[-1]} with the {p.main_shape} "
            f"{cf} cooldown over the same steps, SWA and the raw weights. Mean losses over "
            f"{len(j['seeds'])} seeds: "
            + ", ".join(f"{k} {v:.4f}" for k, v in mean.items())
            + " nats/token."
        )
        fig = rp.plot_differences(
            diffs,
            figs / "j_merging.png",
            "Merging: paired differences (95%, documents + seeds)",
            "loss difference (nats/token)",
        )
        sections.append(
            _section(
                "merging",
                "(j) Merged stable checkpoints in place of a cooldown",
                body + _img(fig, "merging"),
            )
        )
    return sections


def write_report(preset, res: dict, out: Path, evaluation=None) -> Path:
    """Draw the figures into OUT/figures and write OUT/report.html (see module docstring)."""
    figs = out / "figures"
    p = preset
    sections = [
        *_schedule_sections(p, res, figs),
        *_ablation_sections(p, res, figs),
        *_interpolation_and_scaling_sections(res, figs),
        *_prediction_sections(p, res, figs, evaluation),
        *_beyond_sections(p, res, figs),
        *_claims_section(res),
    ]
    doc = (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>cooldown reproduce '
        f"({p.name})</title><style>{_CSS}</style></head><body><h1>cooldown reproduce: "
        f"preset {html.escape(p.name)}</h1>{''.join(sections)}</body></html>\n"
    )
    return atomic_write_text(out / "report.html", doc)
