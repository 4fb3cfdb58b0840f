"""The README's nanochat patch (`--lr-schedule SPEC`): applied to a temporary copy of nanochat's
`scripts/base_train.py`, never to the snapshot, and its LR multiplier checked step by step.

Only the argument parser and the LR function of the patched file are executed (the rest needs a
dataset and a model); they are taken from its syntax tree, so the test runs nanochat's own code.
"""

from __future__ import annotations

import argparse
import ast
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from cooldown.schedule_specs import parse_schedule_spec

REPO = Path(__file__).resolve().parents[1]
NANOCHAT = REPO.parent / "shared" / "peers" / "nanochat"
pytestmark = pytest.mark.skipif(
    not (NANOCHAT / "scripts" / "base_train.py").is_file(),
    reason=f"the nanochat snapshot is not at {NANOCHAT} (see ../shared/peers/README.md)",
)


def _readme_patch() -> str:
    text = (REPO / "README.md").read_text()
    m = re.search(
        r"<!-- nanochat-lr-patch -->\n```diff\n(.*?)```\n<!-- end nanochat-lr-patch -->", text, re.S
    )
    assert m, "the README has no nanochat-lr-patch block"
    return m.group(1)


def _apply(tmp_path: Path, patch: str) -> Path:
    work = tmp_path / "nanochat"
    (work / "scripts").mkdir(parents=True)
    shutil.copy(NANOCHAT / "scripts" / "base_train.py", work / "scripts" / "base_train.py")
    (tmp_path / "lr.patch").write_text(patch)
    subprocess.run(
        ["git", "apply", str(tmp_path / "lr.patch")],
        cwd=work,
        check=True,
        capture_output=True,
        text=True,
    )
    return work / "scripts" / "base_train.py"


def _multipliers(source: str, argv: list[str], num_iterations: int) -> list[float]:
    """nanochat's get_lr_multiplier(it) for it = 0..num_iterations-1, from `source`'s own
    argument parser (every parser.add_argument line) and LR code."""
    tree = ast.parse(source)

    def is_add_argument(node):
        return (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Call)
            and ast.unparse(node.value.func) == "parser.add_argument"
        )

    def is_lr_code(node):
        if isinstance(node, ast.FunctionDef):
            return node.name == "get_lr_multiplier"
        return isinstance(node, ast.If) and "lr_schedule" in ast.unparse(node.test)

    ns: dict = {"parser": argparse.ArgumentParser()}
    exec(compile(ast.Module([n for n in tree.body if is_add_argument(n)], []), "args", "exec"), ns)
    ns.update(args=ns["parser"].parse_args(argv), num_iterations=num_iterations)
    exec(compile(ast.Module([n for n in tree.body if is_lr_code(n)], []), "lr", "exec"), ns)
    return [ns["get_lr_multiplier"](it) for it in range(num_iterations)]


@pytest.mark.parametrize(
    "spec",
    [
        "wsd:shape=1-sqrt,cooldown_frac=0.2",
        "wsd:shape=linear,cooldown_steps=9,final_lr_frac=0.05",
        "cosine:final_lr_frac=0.1",
    ],
)
def test_patched_nanochat_follows_the_cooldown_schedule(tmp_path, spec):
    before = (NANOCHAT / "scripts" / "base_train.py").read_bytes()
    patched = _apply(tmp_path, _readme_patch()).read_text()
    n, warmup = 50, 4
    got = _multipliers(patched, ["--lr-schedule", spec, f"--warmup-steps={warmup}"], n)
    want = parse_schedule_spec(spec, total_steps=n, defaults={"warmup_steps": warmup})
    assert np.allclose(got, want.multipliers(1, n + 1), rtol=1e-12, atol=0)
    assert (NANOCHAT / "scripts" / "base_train.py").read_bytes() == before  # snapshot untouched


def test_without_the_flag_the_patched_file_keeps_nanochats_warmdown(tmp_path):
    original = (NANOCHAT / "scripts" / "base_train.py").read_text()
    patched = _apply(tmp_path, _readme_patch()).read_text()
    argv = ["--warmup-steps=3", "--warmdown-ratio=0.4", "--final-lr-frac=0.05"]
    assert _multipliers(patched, argv, 30) == _multipliers(original, argv, 30)
