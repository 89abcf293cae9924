"""Claims of the book and the tests that verify them.

A *claim* is a ``{prf:theorem}``, ``{prf:proposition}``, ``{prf:lemma}`` or ``{prf:corollary}``
with a ``:label:`` whose prefix names its kind (``thm-``, ``prop-``, ``lem-``, ``cor-``). A test
verifies a claim by naming its label in a marker::

    @pytest.mark.claim("thm-efficient-form")
    def test_efficient_form_equals_time_varying_eps(...): ...

This module is used twice:

* ``tests/test_claims.py`` checks the mapping both ways (no claim without a test, no test naming
  a label the book does not have);
* as a Sphinx extension (``setup`` below, which loads ``book/_ext/claim_pages.py``), it puts
  after each claim's proof the list of tests that verify it, read from the test sources at build
  time, so the list on the page cannot drift from the tests; and it makes the list of theorems,
  by chapter.

Both read the sources with ``ast`` and regular expressions; neither imports a test module.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BOOK = ROOT / "book"
TESTS = ROOT / "tests"

#: Directive kind -> required label prefix.
PREFIXES = {"theorem": "thm-", "proposition": "prop-", "lemma": "lem-", "corollary": "cor-"}

_OPEN = re.compile(r"^(?P<fence>`{3,}|:{3,})\{prf:(?P<kind>[a-z]+)\}")
_OPTION = re.compile(r"^:(?P<key>[a-z_-]+):\s*(?P<value>.*?)\s*$")


@dataclass(frozen=True)
class Claim:
    label: str
    kind: str
    path: str  # relative to the folder holding book/
    line: int


@dataclass(frozen=True)
class TestRef:
    label: str
    path: str  # relative to the folder holding tests/
    name: str  # "test_x", "TestClass" or "TestClass::test_x"; "" for a whole module
    line: int
    summary: str  # first line of the docstring, or ""

    @property
    def nodeid(self) -> str:
        return f"{self.path}::{self.name}" if self.name else self.path


def book_claims(book: Path = BOOK) -> list[Claim]:
    """Every labelled or unlabelled claim directive in the book's MyST sources."""
    claims = []
    for path in sorted(book.rglob("*.md")):
        if any(part.startswith((".", "_")) for part in path.relative_to(book).parts):
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            match = _OPEN.match(line.strip())
            if not match or match["kind"] not in PREFIXES:
                continue
            label = ""
            for option in lines[i + 1 :]:
                opt = _OPTION.match(option.strip())
                if not opt:
                    break
                if opt["key"] == "label":
                    label = opt["value"]
            claims.append(Claim(label, match["kind"], str(path.relative_to(book.parent)), i + 1))
    return claims


def _claim_labels(decorators: list[ast.expr]) -> list[str]:
    labels = []
    for dec in decorators:
        if (
            isinstance(dec, ast.Call)
            and isinstance(dec.func, ast.Attribute)
            and dec.func.attr == "claim"
            and isinstance(dec.func.value, ast.Attribute)
            and dec.func.value.attr == "mark"
        ):
            for arg in dec.args:
                if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
                    raise ValueError(
                        f"line {dec.lineno}: pytest.mark.claim takes string literals only"
                    )
                labels.append(arg.value)
    return labels


def _summary(node: ast.AST) -> str:
    doc = ast.get_docstring(node)  # type: ignore[arg-type]
    return " ".join(doc.split("\n\n")[0].split()) if doc else ""


def tested_claims(tests: Path = TESTS) -> list[TestRef]:
    """Every (label, test) pair named by a ``pytest.mark.claim`` marker in ``tests/``.

    Markers count on test functions, on test classes (for all their tests) and on a module's
    ``pytestmark``.
    """
    refs = []
    for path in sorted(tests.rglob("test_*.py")):
        rel = str(path.relative_to(tests.parent))
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
        module_labels: list[str] = []
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets
            ):
                value = node.value
                marks = value.elts if isinstance(value, (ast.List, ast.Tuple)) else [value]
                module_labels += _claim_labels(list(marks))
        for label in module_labels:
            refs.append(TestRef(label, rel, "", 1, _summary(tree)))
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                for label in _claim_labels(node.decorator_list):
                    refs.append(TestRef(label, rel, node.name, node.lineno, _summary(node)))
                if isinstance(node, ast.ClassDef):
                    for item in node.body:
                        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                            for label in _claim_labels(item.decorator_list):
                                refs.append(
                                    TestRef(label, rel, f"{node.name}::{item.name}",
                                            item.lineno, _summary(item))
                                )
    return refs


def claim_map(tests: Path = TESTS) -> dict[str, list[TestRef]]:
    """Label -> the tests that name it, in file order."""
    out: dict[str, list[TestRef]] = {}
    for ref in tested_claims(tests):
        out.setdefault(ref.label, []).append(ref)
    return out


# --------------------------------------------------------------------------------------------
# Sphinx extension: book/_ext/claim_pages.py (it needs Sphinx; the tests import this module
# without it)
# --------------------------------------------------------------------------------------------


def setup(app):
    import claim_pages

    return claim_pages.setup(app)
