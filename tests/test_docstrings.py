"""Every module says what it is and what to read next: its docstring names the next file(s) on a `Read next:` line.

A reader who opens any file of the project can tell from its first screen what it is for and where to go after it
(the README's "Reading the code" gives the path through the core; the other files point at the file that uses them
or the one they build on).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import REPO

MARK = "Read next"


def project_files() -> list[str]:
    """Every Python file of the project, relative to the repository root (tests, notebooks and dot-folders such as
    the virtual environment excluded)."""
    files = []
    for path in REPO.rglob("*.py"):
        parts = path.relative_to(REPO).parts
        if parts[0] in ("tests", "notebooks") or parts[0].startswith("."):
            continue
        files.append(path.relative_to(REPO).as_posix())
    return sorted(files)


def says_what_to_read_next(source: str) -> bool:
    """Whether a module's source has a docstring with a `Read next` line."""
    docstring = ast.get_docstring(ast.parse(source))
    return docstring is not None and MARK in docstring


def test_the_check_tells_a_module_with_the_line_from_one_without():
    assert says_what_to_read_next('"""A thing.\n\nRead next: `other.py` (what uses it).\n"""\nx = 1\n')
    assert not says_what_to_read_next('"""A thing, and nothing about what comes next."""\nx = 1\n')
    assert not says_what_to_read_next("x = 1  # no docstring\n")
    assert not says_what_to_read_next('x = 1\n"""Read next: a string after code is not the docstring."""\n')


def test_the_project_is_found():
    files = project_files()
    assert "tiny_decoder/model.py" in files and "train.py" in files and "bridge/__init__.py" in files
    assert not [f for f in files if f.startswith(("tests/", "notebooks/", "."))]


@pytest.mark.parametrize("path", project_files())
def test_module_docstring_says_what_to_read_next(path: str):
    assert says_what_to_read_next((REPO / path).read_text()), (
        f"{path}: its module docstring needs a last line `Read next: `FILE` (why)`, naming the file(s) to open next"
    )


def test_the_files_named_next_exist():
    """A `Read next` line that names a file (in backquotes, with a suffix) names one that is there."""
    missing = []
    for path in project_files():
        docstring = ast.get_docstring(ast.parse((REPO / path).read_text())) or ""
        for line in docstring.splitlines():
            if line.startswith(MARK):
                for name in line.split("`")[1::2]:
                    if Path(name).suffix in (".py", ".md") and not (REPO / name).exists():
                        missing.append(f"{path}: {name}")
    assert not missing, missing
