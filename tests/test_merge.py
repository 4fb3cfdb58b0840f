"""`cooldown merge`: the weights of each weighting, the merged folder read by the existing loaders,
and bad input as one line."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from cooldown.checkpoint import load_checkpoint, save_checkpoint
from cooldown.cli import main
from cooldown.errors import CooldownError
from cooldown.export import load_export_source
from cooldown.interpolate import interpolate
from cooldown.merge import merge, merge_coefficients
from cooldown.run_dir import RunDir


def test_uniform_and_ema_weights():
    assert merge_coefficients([10, 20, 40, 50], "uniform").tolist() == [0.25] * 4
    d = 0.8
    c = merge_coefficients([1, 2, 3], "ema", ema_decay=d)
    # ema = t1; ema = d ema + (1 - d) t2; ema = d ema + (1 - d) t3
    assert c == pytest.approx([d * d, d * (1 - d), 1 - d], abs=1e-15)
    assert c.sum() == pytest.approx(1.0, abs=1e-15)


def test_decay_weights_give_the_updates_the_shapes_multipliers():
    steps = [100, 200, 300, 400, 500]
    # A linear decay is a uniform average, at equal spacing exactly.
    assert merge_coefficients(steps, "decay:linear") == pytest.approx([0.2] * 5, abs=1e-15)
    c = merge_coefficients(steps, "decay:1-sqrt")
    tail = np.cumsum(c[::-1])[::-1]  # M_i: the weight of the updates between t_(i-1) and t_i
    assert tail == pytest.approx(1 - np.sqrt(np.arange(5) / 5), abs=1e-15)
    assert np.all(c >= 0) and c.sum() == pytest.approx(1.0, abs=1e-15)
    # Uneven: x = 2/3 * (0, 10, 40) / 40 = (0, 1/6, 2/3); M = 1 - x = (1, 5/6, 1/3).
    uneven = merge_coefficients([0, 10, 40], "decay:linear")
    assert uneven == pytest.approx([1 / 6, 1 / 2, 1 / 3], abs=1e-15)


@pytest.mark.parametrize("bad", ["decay", "decay:zigzag", "sma", "ema:0.5"])
def test_unknown_weightings_are_one_line(bad):
    with pytest.raises(CooldownError, match="weighting"):
        merge_coefficients([1, 2], bad)


@pytest.fixture
def run(averaged_run, tmp_path):
    """The 5-step tiny run (WSD: steps 1..4 stable, 5 in its cooldown) with hand-made
    checkpoints at steps 2, 3 and 4: the step-5 weights times 2, 3 and 4."""
    run_dir = tmp_path / "run"
    shutil.copytree(averaged_run.dir, run_dir)
    ckpt = load_checkpoint(averaged_run.ckpt)
    for s in (2, 3, 4):
        save_checkpoint(run_dir, s, {k: v * s for k, v in ckpt.weights.items()}, ckpt.state)
    return run_dir, ckpt.weights


def test_merged_weights_are_the_weighted_sum_and_load_like_any_run(run):
    run_dir, base = run
    result = merge(run_dir, [4, 2, 3], "ema", ema_decay=0.5)
    assert result.steps == [2, 3, 4]
    c = [0.25, 0.25, 0.5]
    assert result.coefficients == c
    assert result.out_dir == run_dir / "merges" / "ema-s2-4-n3"
    source = load_export_source(result.out_dir)  # export's loader: the latest checkpoint
    assert source.step == 4
    for k, v in base.items():
        expected = (c[0] * 2 * v.double() + c[1] * 3 * v.double() + c[2] * 4 * v.double()).float()
        assert torch.equal(source.weights[k], expected), k
    merged = RunDir(result.out_dir)
    assert merged.is_complete(steps=4)
    manifest = merged.manifest()
    assert manifest.data_fingerprint == RunDir(run_dir).manifest().data_fingerprint
    assert [s["step"] for s in manifest.merge["sources"]] == [2, 3, 4]
    assert manifest.merge["coefficients"] == c
    assert merged.config == RunDir(run_dir).config
    assert RunDir.of_checkpoint(result.checkpoint) == (merged, 4)
    line = interpolate(
        result.checkpoint, run_dir / "checkpoints" / "step_0000004", 2, max_batches=1
    )
    assert all(np.isfinite(line.val_losses))


def test_merging_copies_of_one_checkpoint_gives_it_back(run):
    run_dir, _ = run
    a = load_checkpoint(run_dir / "checkpoints" / "step_0000002")
    save_checkpoint(run_dir, 3, a.weights, a.state)
    out = merge(run_dir, [2, 3], "decay:1-sqrt", out=run_dir.parent / "m").checkpoint
    merged = load_checkpoint(out).weights
    assert all(torch.equal(merged[k], v) for k, v in a.weights.items())


def test_bad_input_is_one_line(run, tmp_path, capsys):
    run_dir, base = run
    cases = [
        ([str(run_dir), "--steps", "2", "--steps", "7"], "no checkpoint at step 7"),
        ([str(run_dir), "--steps", "3"], "at least two checkpoints"),
        ([str(run_dir), "--steps", "4", "--steps", "5"], "step 5 of"),
        ([str(run_dir), "--steps", "2", "--steps", "2"], "step 2 is given twice"),
        ([str(run_dir / "checkpoints")], "not a checkpoint folder of a run"),
    ]
    other = tmp_path / "other"
    shutil.copytree(run_dir, other)
    state = load_checkpoint(run_dir / "checkpoints" / "step_0000002").state
    save_checkpoint(other, 3, {k: v[:1] for k, v in base.items()}, state)
    cases.append(
        (
            [str(run_dir / "checkpoints/step_0000002"), str(other / "checkpoints/step_0000003")],
            "hold different models",
        )
    )
    for args, message in cases:
        with pytest.raises(SystemExit) as info:
            main(["merge", *args])
        err = capsys.readouterr().err
        assert info.value.code == 2, args
        assert message in err and err.count("\n") == 1, err
    assert not (run_dir / "merges").exists()  # nothing was written by a refused merge


def test_the_cli_writes_a_merge_and_refuses_to_overwrite_it(run, capsys):
    run_dir, _ = run
    main(["merge", str(run_dir), "--steps", "2", "--steps", "3", "--steps", "4"])
    out = capsys.readouterr().out
    assert "merged steps 2: 0.3333, 3: 0.3333, 4: 0.3333 (uniform)" in out
    assert (run_dir / "merges" / "uniform-s2-4-n3" / "checkpoints" / "step_0000004").is_dir()
    with pytest.raises(SystemExit):
        main(["merge", str(run_dir), "--steps", "2", "--steps", "3", "--steps", "4"])
    assert "exists; pass --overwrite" in capsys.readouterr().err
    # Checkpoints inside the cooldown (step 5) only with --force.
    main(["merge", str(run_dir), "--steps", "4", "--steps", "5", "--force"])
    assert (run_dir / "merges" / "uniform-s4-5-n2").is_dir()
