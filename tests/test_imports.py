"""The layers stay layers: no import cycle anywhere, and the viewer never imports the CLI.

Every module of ``exquisite_store`` and ``viewer`` is parsed (not imported); every
import counts, function-level ones included, since a deferred import is still a
dependency.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("exquisite_store", "viewer")


def module_name(path: Path, root: Path = ROOT) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def project_modules(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    return {
        module_name(p, root): p
        for pkg in packages
        for p in (root / pkg).rglob("*.py")
        if p.is_file()
    }


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Project modules that ``name`` imports (a package import means its __init__)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join(pkg + ([base] if base else []))
            # ``from pkg import mod`` is the submodule; ``from pkg import name``, the package
            for a in node.names:
                sub = f"{base}.{a.name}"
                targets.append(sub if sub in known else base)
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def import_graph(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, set[str]]:
    mods = project_modules(root, packages)
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None (iterative DFS)."""
    colour: dict[str, int] = {}
    for start in sorted(graph):
        if colour.get(start):
            continue
        stack = [(start, iter(sorted(graph[start])))]
        path = [start]
        colour[start] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                colour[node] = 2
                stack.pop()
                path.pop()
                continue
            if colour.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if not colour.get(nxt):
                colour[nxt] = 1
                stack.append((nxt, iter(sorted(graph.get(nxt, ())))))
                path.append(nxt)
    return None


def test_no_import_cycles() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_viewer_never_imports_the_cli() -> None:
    graph = import_graph()
    bad = sorted(
        (m, d) for m, deps in graph.items() if m.startswith("viewer") for d in deps if ".cli" in d
    )
    assert not bad, bad


def test_cli_command_modules_import_only_the_helpers() -> None:
    graph = import_graph()
    for mod, deps in graph.items():
        entry_points = ("exquisite_store.cli.helpers", "exquisite_store.cli.__main__")
        if mod.startswith("exquisite_store.cli.") and mod not in entry_points:
            others = {d for d in deps if d.startswith("exquisite_store.cli")}
            assert others <= {"exquisite_store.cli.helpers"}, (mod, others)


def test_lower_layers_never_import_upper_ones() -> None:
    """store <- film, backends <- pipeline <- core <- cli, viewer (DESIGN.md §8): none points up."""
    order = [
        ("exquisite_store.store", 1),
        ("exquisite_store.film", 2),  # plans, renders (from the store's tiles) and encodes films
        ("exquisite_store.backends", 2),
        ("exquisite_store.pipeline", 3),
        ("exquisite_store.core", 4),
        ("exquisite_store.cli", 5),
        ("viewer", 5),
    ]

    def layer(mod: str) -> int:
        for prefix, n in order:
            if mod == prefix or mod.startswith(prefix + "."):
                return n
        return 0  # leaves: ids, errors, manifests, params, geometry, imageio, money, ...

    graph = import_graph()
    up = sorted((m, d) for m, deps in graph.items() for d in deps if layer(m) < layer(d))
    assert not up, up


def test_the_checker_finds_a_cycle_through_a_function_level_import(tmp_path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.b import f\n")
    (pkg / "b.py").write_text("def f():\n    from . import c\n")
    (pkg / "c.py").write_text("import os\nfrom .a import x\n")
    (pkg / "d.py").write_text("from pkg import a\n")
    graph = import_graph(tmp_path, ("pkg",))
    assert graph["pkg.d"] == {"pkg.a"}
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]
    (pkg / "c.py").write_text("import os\n")
    assert find_cycle(import_graph(tmp_path, ("pkg",))) is None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__]))
