"""The example configs shipped in configs/ stay valid as the config schema evolves."""

import subprocess
import sys
from pathlib import Path

import pytest

from cooldown.config import load_run_config

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.toml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_example_run_config_loads(path):
    cfg = load_run_config(path)
    assert cfg.total_steps > 0


def test_there_are_example_configs():
    assert len(CONFIGS) >= 4


def test_reading_a_run_config_does_not_import_torch():
    # predict, study and reproduce read run configs; typed, that must not cost a torch import.
    code = (
        "import sys; from cooldown.config import load_run_config; "
        f"cfg = load_run_config({str(CONFIGS[0])!r}); "
        "assert cfg.optim.lr > 0 and cfg.averaging is not None; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
