"""Package layering: engine/ (images in, images out) and storage/ (the repository API) are libraries
the rest is built on, so they import nothing of the command line (facelab) or the chat bot (bot)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

FORBIDDEN = {"facelab", "bot"}


def imported_packages(source: Path) -> Iterator[tuple[int, str]]:
    """(line, top-level package) of every import in `source`, function-local ones included."""
    for node in ast.walk(ast.parse(source.read_text(), str(source))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name.split(".")[0]) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module.split(".")[0]


@pytest.mark.parametrize("package", ["engine", "storage"])
def test_lower_packages_import_nothing_of_facelab_or_bot(package: str) -> None:
    modules = sorted((REPO_ROOT / package).rglob("*.py"))
    assert modules
    offending = [
        f"{module.relative_to(REPO_ROOT)}:{line} imports {name}"
        for module in modules
        for line, name in imported_packages(module)
        if name in FORBIDDEN
    ]
    assert offending == []
