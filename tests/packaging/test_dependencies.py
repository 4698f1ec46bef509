"""Every third-party package the shipped code imports is a declared runtime dependency.

Relying on a package that only arrives through another one (starlette through fastapi,
greenlet through a dev tool) works until that other one changes; naming it is the fix."""

from __future__ import annotations

import ast
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement

from .conftest import ROOT


def imported_top_level(package: Path) -> set[str]:
    names: set[str] = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def normalized(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def test_every_import_is_a_declared_runtime_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {normalized(Requirement(r).name) for r in project["dependencies"]}
    own = {"gateway", "vin"}
    dists = packages_distributions()
    undeclared = {}
    for package in ("gateway", "vin"):
        for name in imported_top_level(ROOT / package) - own - set(sys.stdlib_module_names):
            providers = {normalized(d) for d in dists.get(name, [name])}
            if not providers & declared:
                undeclared[name] = sorted(providers)
    assert not undeclared, f"imported but not declared in [project] dependencies: {undeclared}"


def test_the_vin_library_imports_only_the_standard_library() -> None:
    third_party = imported_top_level(ROOT / "vin") - {"vin"} - set(sys.stdlib_module_names)
    assert not third_party, f"vin/ must use the standard library only, imports {third_party}"


def test_greenlet_is_locked_for_the_runtime() -> None:
    """SQLAlchemy's asyncio needs greenlet; the runtime lock must carry it (it once did not)."""
    runtime = (ROOT / "requirements" / "runtime.txt").read_text()
    assert "\ngreenlet==" in runtime
