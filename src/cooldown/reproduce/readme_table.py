"""The README's claims table, written from a reproduction's `claims.json`, never by hand.

    cooldown reproduce --readme README.md      # run (or read) the reproduction, then rewrite
                                               # the table between its two marker lines

Beside the table, the claims it was written from are kept in `benchmarks/claims-<preset>.json`, so
a test can render them again and check the README's table is exactly what this module writes.
"""

from __future__ import annotations

import json
from pathlib import Path

from cooldown.errors import CooldownError
from cooldown.fileio import atomic_write_text
from cooldown.readme_blocks import block_markers, read_block, replace_block

BEGIN, END = block_markers("claims-table", "cooldown reproduce --readme README.md")


def _minutes(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s} s" if m else f"{s} s"


def render_body(claims: dict) -> str:
    """The markdown between the claims block's markers, for a claims.json's contents."""
    head = (
        f"Measured {claims['date']} on {claims['machine']}: preset `{claims['preset']}`, "
        f"`cooldown reproduce` wall time {_minutes(claims['wall_s'])}"
        f"{' (resumed: the finishing invocation)' if claims.get('resumed') else ''}. Each "
        "interval is a 95% paired bootstrap over validation documents (and seed pairs or sweep "
        "points where it says so), in nats/token unless marked."
    )
    rows = ["| claim | verdict | measured |", "|---|---|---|"]
    for c in claims["claims"]:
        verdict = c["verdict"] if c["verdict"] == "held" else f"**{c['verdict']}**"
        cells = [c["takeaway"], verdict, c["measured"]]
        rows.append("| " + " | ".join(x.replace("|", "\\|") for x in cells) + " |")
    return "\n".join([head, "", *rows])


def render_table(claims: dict) -> str:
    """The whole block, markers included, as `update_readme` writes it."""
    return f"{BEGIN}\n\n{render_body(claims)}\n\n{END}"


def update_readme(readme: Path, claims_path: Path, keep_dir: Path | None = None) -> Path:
    """Rewrite the README's claims block from `claims_path`; keep a copy of the claims beside it
    (`keep_dir`/claims-<preset>.json, default the README's benchmarks/ folder)."""
    readme, claims_path = Path(readme), Path(claims_path)
    try:
        claims = json.loads(claims_path.read_text())
    except (OSError, ValueError) as e:
        raise CooldownError(f"{claims_path}: cannot read the claims ({e})") from None
    path = replace_block(readme, BEGIN, END, render_body(claims))
    keep = Path(keep_dir) if keep_dir is not None else readme.parent / "benchmarks"
    keep.mkdir(parents=True, exist_ok=True)
    atomic_write_text(keep / f"claims-{claims['preset']}.json", json.dumps(claims, indent=1) + "\n")
    return path


def readme_block(readme_text: str) -> str:
    """The claims block as it stands in a README (markers included)."""
    return read_block(readme_text, BEGIN, END)
