"""DESIGN.md's import table: which of our packages may import which, and no cycles between files.

Imports are read with ``ast``: ``import``/``from`` statements anywhere in a file (top level or
inside a function) and string constants that name one of our modules (``"pkg.module"`` or
``"pkg.module:attr"``, the form handed to ``importlib``), so a string cannot smuggle an import
past the table.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = {"envs", "offline_data", "worldmodels", "agents", "scaling"}
ALLOWED = {
    "envs": set(),
    "offline_data": {"envs"},
    "worldmodels": {"offline_data", "envs"},
    "agents": {"worldmodels", "offline_data", "envs"},
    "scaling": {"agents", "worldmodels", "offline_data", "envs"},
}
# scaling.laws is pure fitting code: numpy/scipy and the standard library only.
LAWS_ALLOWED_THIRD_PARTY = {"numpy", "scipy"}


# A whole string that names one of our modules, optionally with ``:attribute``.
_MODULE_STRING = re.compile(
    r"^(?:" + "|".join(sorted(OURS)) + r")(?:\.[A-Za-z_]\w*)*(?::[A-Za-z_]\w*)?$")


def _imports(path: Path, strings: bool = True) -> list[tuple[str, int]]:
    """``(module, line)`` of every import in ``path``, and of importlib-style module strings."""
    return [(name, line) for name, _, line in _import_targets(path, strings)]


def _import_targets(path: Path, strings: bool = True) -> list[tuple[str, tuple[str, ...], int]]:
    """``(module, imported names, line)``: ``from m import a, b`` gives ``("m", ("a", "b"))``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, (), node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, tuple(a.name for a in node.names), node.lineno))
        elif (strings and isinstance(node, ast.Constant) and isinstance(node.value, str)
              and _MODULE_STRING.match(node.value)
              and ("." in node.value or ":" in node.value)):
            found.append((node.value.partition(":")[0], (), node.lineno))
    return found


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _module_graph(root: Path, packages) -> dict[str, set[str]]:
    """File-level import graph of ``packages`` under ``root``: module -> modules it imports.

    ``from pkg import name`` points at ``pkg.name`` when that is a module, else at ``pkg``.
    """
    files = {_module_name(p, root): p
             for pkg in packages for p in sorted((root / pkg).rglob("*.py"))}

    def resolve(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        deps = set()
        for name, names, _ in _import_targets(path):
            targets = [resolve(f"{name}.{n}") for n in names] or [resolve(name)]
            deps |= {t for t in targets if t}
        graph[module] = deps - {module}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_follow_design_table(package):
    violations = []
    for path in _files(package):
        for name, line in _imports(path):
            top = name.split(".")[0]
            if top in OURS and top != package and top not in ALLOWED[package]:
                violations.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not violations, "imports against DESIGN.md's table:\n" + "\n".join(violations)


def test_scaling_laws_is_numpy_scipy_only():
    import sys

    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    laws = [p for p in _files("scaling") if p.stem == "laws" or "laws" in p.parts]
    assert laws, "scaling.laws is missing"
    bad = []
    for path in laws:
        for name, line in _imports(path):
            top = name.split(".")[0]
            if top in stdlib or top in LAWS_ALLOWED_THIRD_PARTY:
                continue
            if name.startswith("scaling.laws"):
                continue
            bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not bad, "scaling.laws must use numpy/scipy only:\n" + "\n".join(bad)


def test_checker_sees_a_violation(tmp_path):
    # The checker itself must be able to fail: a file importing upward is caught.
    bad = tmp_path / "bad.py"
    bad.write_text("import scaling.cli\nfrom worldmodels import gpt\n")
    names = [n for n, _ in _imports(bad)]
    assert names == ["scaling.cli", "worldmodels"]


def test_checker_sees_a_string_import(tmp_path):
    # An importlib string naming one of our modules counts as an import of it.
    bad = tmp_path / "collect.py"
    bad.write_text('import importlib\nPOLICY = "agents.demonstrators:Scripted"\n'
                   'importlib.import_module("agents.policies")\nNOTE = "see agents.cli"\n')
    assert [n for n, _ in _imports(bad)] == ["importlib", "agents.demonstrators", "agents.policies"]


def test_no_import_cycles_between_files():
    cycles = _cycles(_module_graph(ROOT, sorted(OURS)))
    assert not cycles, "import cycles between files (break them by moving the shared part to a " \
                       "lower module):\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_cycle_checker_sees_a_cycle(tmp_path):
    # A tiny tree: a -> b -> c -> a is a cycle (one edge inside a function, one through
    # ``from pkg import module``); d imports a but is not part of the cycle.
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("import pkg.b\n")
    (pkg / "b.py").write_text("def f():\n    from pkg import c\n    return c\n")
    (pkg / "c.py").write_text("from pkg.a import x\n")
    (pkg / "d.py").write_text("import pkg.a\n")
    graph = _module_graph(tmp_path, ["pkg"])
    assert graph["pkg.b"] == {"pkg.c"}
    assert _cycles(graph) == [["pkg.a", "pkg.b", "pkg.c"]]
    (pkg / "c.py").write_text("X = 1\n")
    assert _cycles(_module_graph(tmp_path, ["pkg"])) == []


def test_the_command_line_parses_without_torch():
    """Building every command's parser (``embscale --help``) must not load torch (seconds)."""
    import subprocess
    import sys

    code = ("import sys\nfrom scaling.cli import main\ntry:\n    main(['train', '--help'])\n"
            "except SystemExit:\n    pass\nassert 'torch' not in sys.modules, 'torch loaded'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-500:]
