"""`cooldown predict` and `report.plot_predictions` on synthetic logs written as CSV/JSONL (runs
trained elsewhere); the command on trained runs is in test_predict_real.py."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from cooldown.cli import main
from cooldown.errors import CooldownError
from cooldown.predict import get_law, read_log_curve
from cooldown.report.prediction_plot import plot_predictions
from cooldown.schedule_specs import parse_schedule_spec

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MPL = {"L0": 3.0, "A": 0.8, "alpha": 0.5, "B": 150.0, "C": 2.0, "beta": 0.6, "gamma": 0.6}


def _write_log(path, spec, total=300, every=10, columns=("step", "lr", "loss")):
    schedule = parse_schedule_spec(spec, total_steps=total, defaults={"warmup_steps": 15})
    lrs = (3e-3 * schedule.multipliers(1, total + 1)).tolist()
    steps = np.arange(every, total + 1, every)
    loss = dict(zip(steps.tolist(), get_law("mpl").loss(MPL, lrs, steps).tolist(), strict=True))
    step_col, lr_col, loss_col = columns
    if path.suffix == ".csv":
        lines = [f"{step_col},{lr_col},{loss_col}"]
        for n in range(1, total + 1):
            lines.append(f"{n},{lrs[n - 1]!r},{loss[n]!r}" if n in loss else f"{n},{lrs[n - 1]!r},")
        path.write_text("\n".join(lines) + "\n")
    else:
        rows = [
            {step_col: n, lr_col: lrs[n - 1], loss_col: loss.get(n)} for n in range(1, total + 1)
        ]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    root = tmp_path_factory.mktemp("logs")
    return {
        "constant": _write_log(root / "constant.csv", "constant"),
        "wsd": _write_log(root / "wsd.jsonl", "wsd:shape=linear,cooldown_frac=0.25"),
        "cosine": _write_log(root / "cosine.csv", "cosine"),
        "renamed": _write_log(
            root / "renamed.csv", "wsd:cooldown_frac=0.5", columns=("iter", "lr", "val/loss")
        ),
        "renamed_constant": _write_log(
            root / "renamed_constant.csv", "constant", columns=("iter", "lr", "val/loss")
        ),
    }


def _svg_texts(path) -> list[str]:
    return re.findall(r"<!-- (.*?) -->", path.read_text(encoding="utf-8"))


def test_predict_command_on_logs_prints_writes_and_plots(logs, tmp_path, capsys):
    out = tmp_path / "out"
    main(
        [
            "predict",
            str(logs["constant"]),
            str(logs["wsd"]),
            "--loss",
            "loss",
            "--schedule",
            "wsd:shape=1-sqrt,cooldown_frac=0.2",
            "-s",
            "cosine:final_lr_frac=0",
            "--holdout",
            str(logs["cosine"]),
            "--bootstrap",
            "5",
            "--out",
            str(out),
        ]
    )
    text = capsys.readouterr().out
    # Steps 20..300 of the constant log; of the noiseless cooldown, only its points after the
    # cooldown starts (before it, they repeat the constant log's and count once).
    assert text.startswith("Multi-Power Law (Luo et al. 2025) fitted on 2 curve(s), 37 points: ")
    assert "predicted final loss (nats/token; 95% bootstrap interval, 5 replicates):" in text
    line = next(s for s in text.splitlines() if s.strip().startswith("WSD 1-sqrt, 20% cooldown"))
    assert "step     300" in line and "peak LR 0.003" in line
    assert "cosine to 0%" in text and "final loss (nats/token): MARE " in text
    assert text.rstrip().endswith(f"wrote {out / 'predictions.png'}")

    saved = json.loads((out / "predictions.json").read_text())
    assert saved["law"] == "mpl" and saved["loss_units"] == "nats/token"
    assert saved["fitted_curves"] == ["constant", "wsd"]
    first = saved["predictions"][0]
    assert first["schedule_config"]["shape"] == "1-sqrt" and first["final_step"] == 300
    # The law generated the logs: predictions of unseen schedules are right to well under 0.1%.
    truth = get_law("mpl")
    schedule = parse_schedule_spec("wsd:shape=1-sqrt,cooldown_frac=0.2,warmup_steps=15", 300)
    expected = truth.loss(MPL, 3e-3 * schedule.multipliers(1, 301), [300])[0]
    assert first["final_loss"] == pytest.approx(expected, rel=1e-4)
    low, high = first["interval_95"]
    assert low <= first["final_loss"] <= high
    assert saved["holdout"]["runs"][0]["name"] == "cosine"
    assert abs(saved["holdout"]["runs"][0]["relative_error"]) < 1e-4
    assert set(saved["params_interval_95"]) == set(MPL)

    csv_lines = (out / "predicted_curves.csv").read_text().splitlines()
    assert csv_lines[0] == "schedule,step,loss,low,high"
    assert csv_lines[-1].startswith("cosine,300,")  # the held-out run's prediction comes last
    assert (out / "predictions.png").read_bytes().startswith(PNG_MAGIC)


def test_search_on_logs_ranks_and_refuses_to_run_without_a_run_folder(logs, capsys, tmp_path):
    args = ["predict", str(logs["constant"]), str(logs["wsd"]), "--loss", "loss", "--search"]
    main([*args, "--bootstrap", "0"])
    text = capsys.readouterr().out
    assert "best WSD cooldowns of a 300-step run by predicted final loss (nats/token; 10 of" in text
    # Logs carry no model or data settings to train the winner with: one clear line.
    with pytest.raises(SystemExit) as info:
        main([*args, "--bootstrap", "0", "--run-best", str(tmp_path / "best")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --run-best: the first fitted input ") and err.count("\n") == 1
    assert "is not a run folder (no config.toml)" in err and not (tmp_path / "best").exists()


def test_column_mapping_and_tissue_law(logs, capsys):
    main(
        [
            "predict",
            str(logs["renamed_constant"]),
            str(logs["renamed"]),
            "--columns",
            "step=iter,loss=val/loss",
            "--law",
            "tissue",
            "--bootstrap",
            "0",
            "--schedule",
            "linear",
            "--steps",
            "600",
            "--peak-lr",
            "0.002",
        ]
    )
    text = capsys.readouterr().out
    assert text.startswith("LR-annealing law (Tissue et al. 2024) fitted on 2 curve(s)")
    assert "(nats/token; no bootstrap):" in text
    assert re.search(r"linear to 0%\s+step     600  \d\.\d{4}\s+peak LR 0.002", text)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--schedule", "wsd"], "error: schedule.cooldown_frac: missing"),
        ([], "error: schedule: give at least one --schedule to predict, --holdout run to check"),
        (["-s", "cosine", "--law", "power"], "error: law: must be one of 'mpl', 'tissue'"),
        (["-s", "cosine", "--columns", "epoch=e"], "error: columns: 'epoch' is not one of"),
    ],
)
def test_cli_errors_exit_2_with_one_line(logs, capsys, args, message):
    with pytest.raises(SystemExit) as info:
        main(["predict", str(logs["constant"]), str(logs["wsd"]), "--loss", "loss", *args])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1


def test_cli_no_annealing_and_missing_column(logs, capsys):
    with pytest.raises(SystemExit):
        main(["predict", str(logs["constant"]), "--loss", "loss", "-s", "cosine"])
    assert capsys.readouterr().err.startswith("error: schedules with no annealing information")
    with pytest.raises(SystemExit):
        main(["predict", str(logs["renamed"]), "-s", "cosine"])
    err = capsys.readouterr().err
    assert (
        "no column 'step' (for step), 'val_loss' (for loss); the file has: iter, lr, val/loss"
        in err
    )


# --- the figure ---------------------------------------------------------------------------------


def test_plot_states_axes_units_and_pairs_colours(logs, tmp_path):
    from cooldown.predict import fit_law, predict_lrs

    measured = [read_log_curve(logs["constant"]), read_log_curve(logs["wsd"])]
    fit = fit_law(measured, "mpl", n_bootstrap=3)
    held = read_log_curve(logs["cosine"])
    predicted = [
        predict_lrs(fit, held.lrs, held.steps, label=held.label, name=held.name),
        predict_lrs(fit, held.lrs[:200], label="first 200 steps"),
    ]
    out = plot_predictions([*measured, held], predicted, tmp_path / "p.svg", loss_name="val_loss")
    texts = _svg_texts(out)
    assert "step (optimizer updates)" in texts and "validation loss (nats/token)" in texts
    # A held-out run is one legend entry, its name (points measured, line predicted).
    assert "cosine" in texts and "cosine: cosine (measured)" not in texts
    assert "constant: constant (measured)" in texts
    assert "first 200 steps (predicted)" in texts
    svg = out.read_text()
    # The held-out run's points and its predicted line share a colour (C2, the third); the
    # prediction of no measured run gets the next one (C3).
    assert svg.count("#2ca02c") >= 3 and "#d62728" in svg
    png = plot_predictions(measured, predicted, tmp_path / "p.png", loss_name="train_loss")
    data = png.read_bytes()
    assert data.startswith(PNG_MAGIC)
    plot_predictions(measured, predicted, tmp_path / "p.png", loss_name="train_loss")
    assert png.read_bytes() == data  # reproducible bytes
    with pytest.raises(CooldownError, match=r"^out: .* must end in .png or .svg"):
        plot_predictions(measured, predicted, tmp_path / "p.pdf")
    with pytest.raises(CooldownError, match=r"^curves: nothing to plot"):
        plot_predictions([], [], tmp_path / "q.png")
