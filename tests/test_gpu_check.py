"""benchmarks/gpu.sh and its Python part: the shell script parses, and the check runs end to end on
CPU in its dry mode (a tiny model through the real training loop) and writes its figures."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", BENCHMARKS / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_sh_is_valid_bash():
    subprocess.run(["bash", "-n", str(BENCHMARKS / "gpu.sh")], check=True)


def test_dry_run_trains_and_writes_its_figures(tmp_path, data_cache, capsys):
    code = _gpu_check().main(
        ["--dry-run", "--out", str(tmp_path), "--set", f"data.cache_dir='{data_cache}'"]
    )
    figures = json.loads((tmp_path / "gpu_check.json").read_text())
    assert code == 0 and figures["ok"]
    assert figures["loss_finite"] and figures["loss_falling"]
    assert [s for s, _ in figures["first_losses"]] == list(range(5, 51, 5))
    assert figures["tokens_per_s"] > 0 and figures["flop_convention"] == "6N+attn"
    assert figures["mfu"] is None  # no known peak on CPU


def test_a_loss_that_does_not_fall_fails_the_check():
    check = _gpu_check().loss_checks
    flat = [{"step": s, "train_loss": 5.0} for s in range(5, 51, 5)]
    assert check(flat)["loss_finite"] and not check(flat)["loss_falling"]
    nan = [*flat[:3], {"step": 20, "train_loss": float("nan")}]
    assert not check(nan)["loss_finite"]
