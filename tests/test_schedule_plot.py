"""`report.plot_schedules` and `cooldown schedule plot`: the figure's bytes, its text, its errors."""

from __future__ import annotations

import re

import pytest

from cooldown.cli import main
from cooldown.errors import CooldownError
from cooldown.report import plot_schedules
from cooldown.schedule_specs import parse_schedule_spec

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _svg_texts(path) -> list[str]:
    # Matplotlib draws SVG text as paths and puts the string in a comment just before it.
    return re.findall(r"<!-- (.*?) -->", path.read_text(encoding="utf-8"))


def _schedules(total=1000):
    return [
        parse_schedule_spec(spec, total_steps=total, defaults={"warmup_steps": 20})
        for spec in ("cosine", "wsd:shape=1-sqrt,cooldown_frac=0.2", "multistep")
    ]


def test_plot_png_is_written_atomically_and_deterministically(tmp_path):
    out = tmp_path / "figs" / "schedules.png"
    assert plot_schedules(_schedules(), out) == out
    data = out.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 20_000
    # PNG width and height (IHDR) are those of an 8 x 5.4 inch figure at 120 dpi.
    assert int.from_bytes(data[16:20], "big") == 960
    assert int.from_bytes(data[20:24], "big") == 648
    assert [p.name for p in out.parent.iterdir()] == ["schedules.png"]  # no temporary left
    plot_schedules(_schedules(), out)
    assert out.read_bytes() == data


def test_plot_svg_states_axes_title_and_labels(tmp_path):
    out = tmp_path / "s.svg"
    plot_schedules(_schedules(), out)
    texts = _svg_texts(out)
    assert "step (optimizer updates)" in texts
    assert "LR multiplier (x peak LR)" in texts
    assert "Learning-rate schedules (1000 updates, linear warmup 20 steps)" in texts
    for name in (
        "cosine to 10%",
        "WSD 1-sqrt, 20% cooldown",
        "multistep (x0.316 after 80%, x0.1 after 90%)",
    ):
        assert name in texts


def test_plot_with_peak_lr_and_own_labels(tmp_path):
    out = tmp_path / "lr.svg"
    schedules = [*_schedules()[:2], parse_schedule_spec("constant", total_steps=2000)]
    plot_schedules(schedules, out, labels=["a", "b", "c"], peak_lr=3e-4)
    texts = _svg_texts(out)
    assert "learning rate" in texts and "LR multiplier (x peak LR)" not in texts
    assert {"a", "b", "c"} <= set(texts)
    # Lengths and warmups differ, so the title claims neither.
    assert "Learning-rate schedules, peak LR 0.0003" in texts


def test_plot_long_runs_keep_their_phase_edges(tmp_path):
    from cooldown.report.schedule_plot import _plot_steps

    s = parse_schedule_spec("multistep", total_steps=1_000_000)
    steps = _plot_steps(s)
    assert len(steps) < 5000
    assert {800_000, 800_001, 900_000, 900_001, 1, 1_000_000} <= set(steps.tolist())
    plot_schedules([s], tmp_path / "long.png")


@pytest.mark.parametrize(
    "kwargs, text",
    [
        ({"out": "x.pdf"}, "out: "),
        ({"out": "x"}, "out: "),
        ({"out": "x.png", "labels": ["only one"]}, "labels: got 1 labels for 3 schedules"),
        ({"out": "x.png", "peak_lr": 0.0}, "peak_lr: must be > 0"),
    ],
)
def test_plot_rejects_bad_arguments(tmp_path, kwargs, text):
    kwargs = {**kwargs, "out": tmp_path / kwargs["out"]}
    with pytest.raises(CooldownError) as info:
        plot_schedules(_schedules(), **kwargs)
    assert str(info.value).startswith(text)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(CooldownError, match=r"^schedules: nothing to plot"):
        plot_schedules([], tmp_path / "empty.png")


# --- CLI -------------------------------------------------------------------------------------------


def test_cli_default_plot(tmp_path, capsys):
    out = tmp_path / "default.svg"
    main(["schedule", "plot", "--out", str(out), "--steps", "5000"])
    assert capsys.readouterr().out.strip() == str(out)
    texts = _svg_texts(out)
    # Default warmup: 2% of the run, shared by all four default schedules.
    assert "Learning-rate schedules (5000 updates, linear warmup 100 steps)" in texts
    for name in (
        "cosine to 10%",
        "WSD linear, 20% cooldown",
        "WSD 1-sqrt, 20% cooldown",
        "constant",
    ):
        assert name in texts


def test_cli_png_with_specs(tmp_path, capsys):
    out = tmp_path / "specs.png"
    main(
        [
            "schedule",
            "plot",
            "--out",
            str(out),
            "--warmup-steps",
            "0",
            "wsd:shape=exp,final_lr_frac=0.01,cooldown_frac=0.1",
            "linear",
            "multistep:milestones=[0.5,0.7],factors=[0.5,0.25]",
        ]
    )
    assert capsys.readouterr().out.strip() == str(out)
    data = out.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 20_000


@pytest.mark.parametrize(
    "args, text",
    [
        (["wsd:shape=foo,cooldown_frac=0.2"], "error: schedule.shape: Input should be"),
        (["wsd"], "error: schedule.cooldown_frac: missing"),
        (
            ["wsd:cooldown_frac=0.2,final_lr_frac=1.5"],
            "error: schedule.final_lr_frac: must be in [0, 1]",
        ),
        (["nope"], "error: schedule.kind: must be one of"),
        (["wsd:cooldown_start=50"], "error: schedule.warmup_steps: warmup (200 steps)"),
    ],
)
def test_cli_bad_spec_exits_2_naming_the_field(tmp_path, capsys, args, text):
    out = tmp_path / "bad.png"
    with pytest.raises(SystemExit) as info:
        main(["schedule", "plot", "--out", str(out), *args])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(text) and err.count("\n") == 1
    assert not out.exists()


def test_cli_bad_suffix_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["schedule", "plot", "--out", str(tmp_path / "f.jpg")])
    assert info.value.code == 2
    assert capsys.readouterr().err.startswith("error: out: ")
