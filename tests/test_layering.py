"""Package layering: engine/ (images in, images out) and storage/ (the repository API) are libraries
the rest is built on, so they import nothing of the command line (facelab) or the chat bot (bot); the
bot builds on them and imports nothing of the command line, which composes them all."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

LAYERS = {"engine": {"facelab", "bot"}, "storage": {"facelab", "bot"}, "bot": {"facelab"}}


def imported_packages(source: Path) -> Iterator[tuple[int, str]]:
    """(line, top-level package) of every import in `source`, function-local ones included."""
    for node in ast.walk(ast.parse(source.read_text(), str(source))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name.split(".")[0]) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module.split(".")[0]


@pytest.mark.parametrize("package", LAYERS)
def test_a_package_imports_nothing_of_the_packages_built_on_it(package: str) -> None:
    modules = sorted((REPO_ROOT / package).rglob("*.py"))
    assert modules
    offending = [
        f"{module.relative_to(REPO_ROOT)}:{line} imports {name}"
        for module in modules
        for line, name in imported_packages(module)
        if name in LAYERS[package]
    ]
    assert offending == []
