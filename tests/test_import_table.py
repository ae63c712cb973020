"""DESIGN.md's import table: which of our packages may import which."""

from __future__ import annotations

import ast
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


def _imports(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, node.lineno))
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
