"""The architecture numbers issue 14 tracks, from the source tree (ast-based, so comments and
docstrings never count). Run from the repository root, before and after a change:

    python scripts/code_metrics.py            # a table
    python scripts/code_metrics.py --detail   # plus where each count comes from

- imports inside functions: `import` / `from ... import` statements inside a def (an
  `if TYPE_CHECKING:` block is left out: it never runs);
- manifest.json readers / writers: functions that name the run folder's `manifest.json` (the
  literal, a module constant holding it, or `RunDir.manifest_path`) and read it (read_text, json.load(s), open,
  model_validate_json) or write it (atomic_write_json, write_text, json.dump);
- method names outside their module: in `src/cooldown/study`, the string constants equal to a
  study method's name ("cosine", "cooldown", "swa", "cooldown-predicted") and attribute reads of
  its Python name (`methods.cooldown_predicted`), outside `study/methods/<method>.py`;
- files over 600 lines and functions over 80 lines, under src/;
- `duplicates` pairs: the first line of the `duplicates` tool on the whole tree, src/ and tests/
  (when it is on PATH).
"""

from __future__ import annotations

import argparse
import ast
import shutil
import subprocess
import sys
from pathlib import Path

SRC = Path("src/cooldown")
METHODS = {"cosine": "cosine", "cooldown": "cooldown", "swa": "swa"}
METHODS["cooldown-predicted"] = "cooldown_predicted"
MANIFEST = "manifest.json"
MANIFEST_ATTRS = {"manifest_path"}  # cooldown.run_dir.RunDir's path of the file
READ_CALLS = {
    "read_text",
    "load",
    "loads",
    "open",
    "model_validate_json",
    "read_json",
    "_read_json",
}
WRITE_CALLS = {"atomic_write_json", "write_text", "dump", "atomic_write_text"}
FILE_LINES, FUNCTION_LINES = 600, 80


def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def _imports_in_functions(tree: ast.Module) -> list[int]:
    lines: list[int] = []

    def visit(node: ast.AST, in_def: bool) -> None:
        if _is_type_checking(node):
            return
        if in_def and isinstance(node, (ast.Import, ast.ImportFrom)):
            lines.append(node.lineno)
        inside = in_def or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        for child in ast.iter_child_nodes(node):
            visit(child, inside)

    visit(tree, False)
    return lines


def _functions(tree: ast.AST):
    """Every def with the nodes of its own body (not those of the defs nested in it)."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            own: list[ast.AST] = []
            stack = list(ast.iter_child_nodes(node))
            while stack:
                child = stack.pop()
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                own.append(child)
                stack.extend(ast.iter_child_nodes(child))
            yield node, own


def _manifest_constants(trees: dict[Path, ast.Module]) -> set[str]:
    names = set()
    for tree in trees.values():
        for node in tree.body:
            if isinstance(node, (ast.Assign, ast.AnnAssign)):
                value = node.value
                if isinstance(value, ast.Constant) and value.value == MANIFEST:
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


def _manifest_users(trees: dict[Path, ast.Module]) -> tuple[list[str], list[str]]:
    constants = _manifest_constants(trees)
    readers, writers = [], []
    for path, tree in trees.items():
        for func, own in _functions(tree):
            names_it = any(
                (isinstance(n, ast.Constant) and n.value == MANIFEST)
                or (isinstance(n, ast.Name) and n.id in constants)
                or (isinstance(n, ast.Attribute) and n.attr in constants | MANIFEST_ATTRS)
                for n in own
            )
            if not names_it:
                continue
            called = {
                n.func.attr if isinstance(n.func, ast.Attribute) else getattr(n.func, "id", "")
                for n in own
                if isinstance(n, ast.Call)
            }
            where = f"{path}:{func.name}"
            if called & READ_CALLS:
                readers.append(where)
            if called & WRITE_CALLS:
                writers.append(where)
    return readers, writers


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def _method_names(trees: dict[Path, ast.Module]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {m: [] for m in METHODS}
    study = SRC / "study"
    for path, tree in trees.items():
        if study not in path.parents:
            continue
        skip = _docstrings(tree)
        for node in ast.walk(tree):
            for method, attr in METHODS.items():
                if path == study / "methods" / f"{attr}.py":
                    continue
                if (
                    isinstance(node, ast.Constant)
                    and id(node) not in skip
                    and node.value in (method, attr)
                ) or (isinstance(node, ast.Attribute) and node.attr == attr):
                    out[method].append(f"{path}:{node.lineno}")
    return out


def _long_functions(trees: dict[Path, ast.Module]) -> list[str]:
    out = []
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > FUNCTION_LINES:
                    out.append(f"{path}:{node.name} ({length} lines)")
    return out


def _duplicates() -> str:
    if shutil.which("duplicates") is None:
        return "n/a (the duplicates tool is not on PATH)"
    lines = []
    for repo in (".", "src", "tests"):
        result = subprocess.run(
            ["duplicates", "--repo", repo, "--seconds", "120"],
            capture_output=True,
            text=True,
            check=False,
        )
        first = result.stdout.splitlines()[0] if result.stdout else "no output"
        lines.append(f"{repo}: {first.split(' (')[0]}")
    return "; ".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detail", action="store_true", help="list where each count comes from")
    args = parser.parse_args(argv)
    if not SRC.is_dir():
        print(f"{SRC}: not found; run from the repository root", file=sys.stderr)
        return 2
    paths = sorted(p for p in SRC.rglob("*.py"))
    trees = {p: _parse(p) for p in paths}

    inner = {p: _imports_in_functions(t) for p, t in trees.items()}
    inner = {p: lines for p, lines in inner.items() if lines}
    readers, writers = _manifest_users(trees)
    methods = _method_names(trees)
    big_files = [
        f"{p} ({n} lines)"
        for p in paths
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > FILE_LINES
    ]
    long_functions = _long_functions(trees)

    def modules(places: list[str]) -> int:
        return len({p.split(":")[0] for p in places})

    rows = [
        (
            "imports inside functions",
            f"{sum(map(len, inner.values()))} in {len(inner)} files",
            [f"{p}: {len(v)}" for p, v in inner.items()],
        ),
        ("manifest.json readers", f"{len(readers)} in {modules(readers)} modules", readers),
        ("manifest.json writers", f"{len(writers)} in {modules(writers)} modules", writers),
    ]
    for method, places in methods.items():
        rows.append(
            (
                f"'{method}' outside its module (study/)",
                f"{len(places)} in {modules(places)}",
                places,
            )
        )
    rows += [
        (f"files over {FILE_LINES} lines", str(len(big_files)), big_files),
        (f"functions over {FUNCTION_LINES} lines", str(len(long_functions)), long_functions),
        ("duplicates pairs", _duplicates(), []),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value, detail in rows:
        print(f"{name:<{width}}  {value}")
        if args.detail:
            for line in detail:
                print(f"    {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
