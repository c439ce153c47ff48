"""The package layering, read from the source: storage and trust never import registry; storage never
imports trust (the integrity check, which spans both, lives in registry.check)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FORBIDDEN = {"storage": ("registry", "trust"), "trust": ("registry",)}


def imported_packages(path: Path) -> set[str]:
    """Top-level packages a module imports, anywhere in it (function-level imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_lower_layers_never_import_upper_ones(package: str) -> None:
    modules = sorted((REPO / package).rglob("*.py"))
    assert modules
    offences = {
        str(m.relative_to(REPO)): sorted(imported_packages(m) & set(FORBIDDEN[package])) for m in modules
    }
    assert {m: bad for m, bad in offences.items() if bad} == {}


def test_the_integrity_check_lives_above_storage_and_trust() -> None:
    from registry.check import check_storage  # noqa: F401  (`trustreg check` runs it)

    assert not (REPO / "storage" / "check.py").exists()
