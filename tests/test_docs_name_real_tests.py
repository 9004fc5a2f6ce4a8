"""The docs name only tests that exist: a guarantee whose "proved by" names a missing test proves nothing.

References look like `test_file.py::test_name`, then `::test_other` for more tests of the same file on that line;
a name ending in `…` stands for every test whose name starts with it.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = sorted((REPO / "docs").glob("*.md")) + [REPO / "README.md"]
REFERENCE = re.compile(r"(?:\b(test_\w+\.py))?::(test_\w+)(…)?")
TEST_FILE = re.compile(r"\btest_\w+\.py\b")


def references(text: str) -> list[tuple[int, str, str, bool]]:
    """(line number, test file, test name, is a prefix) for each test named in a Markdown text."""
    found = []
    for lineno, line in enumerate(text.splitlines(), 1):
        current = None
        for match in REFERENCE.finditer(line):
            current = match.group(1) or current
            assert current, f"line {lineno}: ::{match.group(2)} names no file before it"
            found.append((lineno, current, match.group(2), bool(match.group(3))))
    return found


def find_test_file(name: str) -> Path | None:
    """The test file of that name anywhere under tests/ (e.g. tests/resume/); names are unique there."""
    return next((REPO / "tests").rglob(name), None)


def functions_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


def test_references_are_parsed_with_their_file_and_prefix():
    line = "`a.md` `test_x.py::test_one`, `::test_two_…` and `test_y.py::test_three`"
    assert references(line) == [(1, "test_x.py", "test_one", False), (1, "test_x.py", "test_two_", True),
                                (1, "test_y.py", "test_three", False)]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_test_a_doc_names_exists(doc):
    missing = []
    for lineno, file, name, prefix in references(doc.read_text(encoding="utf-8")):
        path = find_test_file(file)
        names = functions_in(path) if path is not None else set()
        if not any(n.startswith(name) if prefix else n == name for n in names):
            missing.append(f"{doc.name}:{lineno}: {file}::{name}{'…' if prefix else ''}")
    for lineno, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
        missing += [f"{doc.name}:{lineno}: {f}" for f in TEST_FILE.findall(line) if find_test_file(f) is None]
    assert not missing, "named in the docs but not a test:\n" + "\n".join(missing)
