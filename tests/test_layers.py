"""The import layers: the package root's base modules import nothing of ours, the model knows nothing of
the store or the server, and the indexer nothing of the server."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BASE = ("latentdex.errors", "latentdex.atomic_files")
LAYERS = {
    # folder: the latentdex modules its files may import (besides their own package)
    "models": BASE,
    "indexer": (*BASE, "latentdex.models"),
    "service": (*BASE, "latentdex.models", "latentdex.indexer", "latentdex.v1"),
}
OWN_PACKAGE = {"models": "latentdex.models", "indexer": "latentdex.indexer", "service": "latentdex.service"}


def imported_modules(path: Path) -> set[str]:
    """Every absolute module name `path` imports (`from a import b` counts as `a.b` and `a`)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def ours(names: set[str]) -> set[str]:
    return {n for n in names if n == "latentdex" or n.startswith("latentdex.")}


def allowed(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


@pytest.mark.parametrize("module", BASE)
def test_base_modules_import_nothing_of_ours(module: str) -> None:
    path = ROOT / "proto" / Path(*module.split(".")).with_suffix(".py")
    assert path.is_file()
    assert ours(imported_modules(path)) == set()


@pytest.mark.parametrize("folder", sorted(LAYERS))
def test_each_layer_imports_only_the_layers_below(folder: str) -> None:
    permitted = (*LAYERS[folder], OWN_PACKAGE[folder])
    offenders = {}
    files = sorted((ROOT / folder).rglob("*.py"))
    assert files
    for path in files:
        # `from latentdex import errors` names the base module as "latentdex.errors"; bare "latentdex" is
        # the package root itself, which holds nothing else.
        bad = {n for n in ours(imported_modules(path)) - {"latentdex"} if not allowed(n, permitted)}
        if bad:
            offenders[str(path.relative_to(ROOT))] = sorted(bad)
    assert offenders == {}


def test_no_model_module_defines_store_errors() -> None:
    """Store and request errors live in the base module, not in the model package."""
    for path in (ROOT / "models").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        bases = {
            base.id
            for node in ast.walk(tree)
            if isinstance(node, ast.ClassDef)
            for base in node.bases
            if isinstance(base, ast.Name)
        }
        assert not bases & {"LatentdexError", "StoreError", "Exception"}, path
