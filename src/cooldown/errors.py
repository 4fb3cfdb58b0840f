"""User-facing errors: one line that names the field or file and what was expected.

Every error a user can cause by bad input is a `CooldownError` (a `ValueError`); the CLI prints its
message as a single `error: ...` line and exits with status 2. Pydantic validation errors are
flattened into the same one-line form by `format_validation_error`.
"""

from __future__ import annotations

from typing import Any


class CooldownError(ValueError):
    """Bad input or state the user can fix. The message is one line and names what is wrong."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


def _loc(loc: tuple[Any, ...], prefix: str) -> str:
    # Pydantic puts the discriminator tag into the location (e.g. ('wsd', 'shape')); the tag is not
    # a field the user wrote, so leave it out.
    parts = [str(p) for p in loc if not (isinstance(p, str) and p.startswith("function-"))]
    name = ".".join(parts)
    if prefix:
        return f"{prefix}.{name}" if name else prefix
    return name


def format_validation_error(exc: Any, prefix: str = "", tags: frozenset[str] = frozenset()) -> str:
    """One line for a pydantic ValidationError: 'field.path: message (got VALUE)'; several are joined by '; '."""
    items = []
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err.get("loc", ()) if p not in tags)
        msg = err.get("msg", "invalid value")
        msg = msg.removeprefix("Value error, ")
        where = _loc(loc, prefix)
        # A check across fields sees the whole table as its input: echoing that helps nobody.
        whole_table = isinstance(err.get("input"), dict)
        if err.get("type") in {"missing", "extra_forbidden"} or "input" not in err or whole_table:
            items.append(f"{where}: {msg}" if where else msg)
        else:
            shown = repr(err["input"])
            if len(shown) > 60:
                shown = shown[:57] + "..."
            items.append(f"{where}: {msg} (got {shown})")
    return "; ".join(items)


class Interrupted(Exception):
    """Ctrl-C (SIGINT) stopped the work. The message is one line that says where it stopped and
    how to resume; the CLI prints it and exits 130, as a shell does for a process killed by
    SIGINT, so `cooldown train ... && cooldown branch ...` does not carry on."""
