"""Blocks of the README that the project's commands write, never by hand.

    cooldown reproduce --readme README.md             # the claims table
    cooldown predict-benchmark mpl --readme README.md # the MPL real-curve table

Each block sits between two marker lines naming the command that writes it; a command replaces
what lies between them and leaves the rest of the README as it is. Tests check each block against
what its command produces (tests/test_readme_table.py).
"""

from __future__ import annotations

import re
from pathlib import Path

from cooldown.errors import CooldownError
from cooldown.fileio import atomic_write_text


def block_markers(name: str, command: str) -> tuple[str, str]:
    """The two lines that bound a generated block of the README."""
    return f"<!-- {name}: written by `{command}`; do not edit -->", f"<!-- end {name} -->"


MPL_BEGIN, MPL_END = block_markers("mpl-table", "cooldown predict-benchmark mpl --readme README.md")


def replace_block(readme: Path, begin: str, end: str, body: str) -> Path:
    """Rewrite the README's block between `begin` and `end` (markers kept) with `body`."""
    readme = Path(readme)
    try:
        text = readme.read_text()
    except OSError as e:
        raise CooldownError(f"--readme {readme}: cannot read it ({e.strerror})") from None
    block = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    if not block.search(text):
        raise CooldownError(
            f"--readme {readme}: no block to replace (put the two lines {begin!r} and {end!r} "
            "where the table belongs)"
        )
    return atomic_write_text(readme, block.sub(lambda _: f"{begin}\n\n{body}\n\n{end}", text))


def read_block(readme_text: str, begin: str, end: str) -> str:
    """A generated block as it stands in a README (markers included)."""
    m = re.search(re.escape(begin) + ".*?" + re.escape(end), readme_text, re.S)
    if not m:
        raise CooldownError(f"the README has no block {begin!r}")
    return m.group(0)
