"""The README's claims table is what `cooldown reproduce --readme` writes from a claims.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cooldown.errors import CooldownError
from cooldown.readme_blocks import MPL_BEGIN, MPL_END, read_block
from cooldown.reproduce.readme_table import BEGIN, END, readme_block, render_table, update_readme

ROOT = Path(__file__).resolve().parents[1]

CLAIMS = {
    "preset": "smoke",
    "date": "2026-12-02",
    "machine": "Linux x86_64, 2 CPUs",
    "wall_s": 75.4,
    "resumed": False,
    "claims": [
        {"id": "x", "takeaway": "A | B", "measured": "+0.1 [0.0, 0.2]", "verdict": "held"},
        {"id": "y", "takeaway": "C", "measured": "-0.1", "verdict": "inconclusive"},
    ],
}


def test_update_replaces_only_the_block_and_keeps_the_claims(tmp_path):
    claims = tmp_path / "claims.json"
    claims.write_text(json.dumps(CLAIMS))
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\nbefore\n\n{BEGIN}\nold table\n{END}\n\nafter\n")
    update_readme(readme, claims)
    text = readme.read_text()
    assert text.startswith("# title\n\nbefore\n\n") and text.endswith("\n\nafter\n")
    block = readme_block(text)
    assert block == render_table(CLAIMS) and "old table" not in text
    assert "| A \\| B | held | +0.1 [0.0, 0.2] |" in block  # a pipe in a cell is escaped
    assert "| C | **inconclusive** | -0.1 |" in block
    assert "Measured 2026-12-02 on Linux x86_64, 2 CPUs: preset `smoke`" in block
    assert "wall time 1 min 15 s" in block
    assert json.loads((tmp_path / "benchmarks" / "claims-smoke.json").read_text()) == CLAIMS


def test_a_readme_without_the_markers_is_one_clear_error(tmp_path):
    claims = tmp_path / "claims.json"
    claims.write_text(json.dumps(CLAIMS))
    readme = tmp_path / "README.md"
    readme.write_text("# no block here\n")
    with pytest.raises(CooldownError, match="no block to replace"):
        update_readme(readme, claims)
    assert readme.read_text() == "# no block here\n"
    with pytest.raises(CooldownError, match="cannot read the claims"):
        update_readme(readme, tmp_path / "missing.json")


def test_the_readme_table_is_the_commands_output():
    """No hand-copied numbers: the README's block renders exactly from the claims kept beside it."""
    kept = json.loads((ROOT / "benchmarks" / "claims-cpu.json").read_text())
    assert readme_block((ROOT / "README.md").read_text()) == render_table(kept)
    assert kept["preset"] == "cpu" and kept["claims"]


def test_the_readme_mpl_table_is_the_commands_output():
    """The MPL real-curve table: fitting the 25M curves again gives the README's 25M rows."""
    from cooldown.predict.mpl_benchmark import mpl_benchmark

    block = read_block((ROOT / "README.md").read_text(), MPL_BEGIN, MPL_END)
    rows = mpl_benchmark(("25M",)).summary_markdown().splitlines()[2:]
    assert len(rows) == 2 and all(row in block.splitlines() for row in rows)
