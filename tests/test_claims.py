"""The book's claims and the tests that verify them, checked both ways.

Every theorem, proposition, lemma and corollary in ``book/`` carries a label whose prefix names
its kind, and at least one test names that label in ``@pytest.mark.claim(...)``; no test names a
label the book does not have. The scanner itself (``book/_ext/claims.py``, which also writes the
"Verified by" list under each claim in the built book) is tested on a synthetic book first, so
that a scanner that finds nothing cannot make the real checks pass vacuously.
"""

from __future__ import annotations

import html
import os
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book" / "_ext"))
import claims  # noqa: E402  (book/_ext/claims.py)

HTML = ROOT / "_build" / "html"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@pytest.fixture
def synthetic(tmp_path):
    """A two-claim book and a test module naming one real and one missing label."""
    book, tests = tmp_path / "book", tmp_path / "tests"
    _write(book / "ch.md", "\n".join([
        "```{prf:theorem} A", ":label: thm-a", "", "Body.", "```",
        "::::{prf:lemma}", ":label: lem-b", ":nonumber:", "Body.", "::::",
        "```{prf:proposition}", "Unlabelled.", "```",
        "```{prf:remark}", ":label: rem-ignored", "```",
    ]))
    _write(book / "_ext" / "hidden.md", "```{prf:theorem}\n:label: thm-hidden\n```\n")
    _write(tests / "test_x.py", "\n".join([
        "import pytest",
        "pytestmark = [pytest.mark.slow, pytest.mark.claim('lem-b')]",
        "@pytest.mark.claim('thm-a', 'thm-gone')",
        "def test_one():",
        "    '''Checks A.\n\n    More text.'''",
        "class TestGroup:",
        "    @pytest.mark.claim('thm-a')",
        "    def test_two(self): pass",
    ]))
    return book, tests


def test_scanner_reads_claims_and_markers(synthetic):
    """The scanner finds every claim kind, both fence styles, and markers in all three places."""
    book, tests = synthetic
    found = claims.book_claims(book)
    assert [(c.kind, c.label, c.line) for c in found] == [
        ("theorem", "thm-a", 1), ("lemma", "lem-b", 6), ("proposition", "", 11)]
    refs = claims.tested_claims(tests)
    assert sorted((r.label, r.nodeid, r.summary) for r in refs) == [
        ("lem-b", "tests/test_x.py", ""),
        ("thm-a", "tests/test_x.py::TestGroup::test_two", ""),
        ("thm-a", "tests/test_x.py::test_one", "Checks A."),
        ("thm-gone", "tests/test_x.py::test_one", "Checks A."),
    ]


def test_scanner_rejects_non_literal_labels(tmp_path):
    """A label built at run time could not be checked statically, so it is refused."""
    _write(tmp_path / "test_y.py", "import pytest\nL = 'thm-a'\n@pytest.mark.claim(L)\ndef test_y(): pass\n")
    with pytest.raises(ValueError, match="string literals"):
        claims.tested_claims(tmp_path)


BOOK_CLAIMS = claims.book_claims()
TEST_REFS = claims.tested_claims()


def test_the_book_has_claims():
    """Guard against a scanner or a layout change that silently finds nothing."""
    assert len(BOOK_CLAIMS) >= 1 and len(TEST_REFS) >= 1


@pytest.mark.parametrize("claim", BOOK_CLAIMS, ids=lambda c: f"{c.path}:{c.line}")
def test_every_claim_is_labelled_by_kind(claim):
    """Each theorem/proposition/lemma/corollary has a label with its kind's prefix."""
    prefix = claims.PREFIXES[claim.kind]
    assert claim.label.startswith(prefix), (
        f"{claim.path}:{claim.line}: a {claim.kind} needs ':label: {prefix}...', "
        f"got {claim.label!r}")
    assert re.fullmatch(r"[a-z]+-[a-z0-9][a-z0-9-]*", claim.label), claim.label


def test_labels_are_unique():
    labels = [c.label for c in BOOK_CLAIMS]
    assert sorted({x for x in labels if labels.count(x) > 1}) == []


def test_every_claim_has_a_test():
    """No claim without a test that names it."""
    tested = {r.label for r in TEST_REFS}
    missing = [f"{c.label} ({c.path}:{c.line})" for c in BOOK_CLAIMS if c.label not in tested]
    assert missing == [], f"claims no test names: {missing}"


def test_every_named_label_exists():
    """No test naming a label the book does not have."""
    labels = {c.label for c in BOOK_CLAIMS}
    unknown = [f"{r.nodeid} names {r.label!r}" for r in TEST_REFS if r.label not in labels]
    assert unknown == [], unknown


def test_claim_markers_are_on_tests():
    """A marker on a helper function would verify nothing: it must sit on a collected test."""
    bad = [r.nodeid for r in TEST_REFS
           if not re.fullmatch(r"(|Test\w*(::test\w*)?|test\w*)", r.name)]
    assert bad == []


def _built_page(claim) -> Path:
    return HTML / Path(claim.path).with_suffix(".html")


@pytest.mark.parametrize("claim", BOOK_CLAIMS, ids=lambda c: c.label or f"{c.path}:{c.line}")
def test_built_book_lists_the_tests_under_each_claim(claim):
    """The generated "Verified by" list of each claim names exactly the tests that name it, and
    it follows the claim's proof (or the claim, if it has none)."""
    page = _built_page(claim)
    if not page.exists():
        if os.environ.get("REFIMPL_REQUIRE_BOOK"):
            pytest.fail(f"{page} was not built (make test builds the book first)")
        pytest.skip("book not built; run `make book`")
    text = html.unescape(page.read_text(encoding="utf-8"))
    start = text.find(f'id="{claim.label}"')
    assert start >= 0, f"no element with id {claim.label!r} in {page}"
    box = text.find('<details class="claim-tests"', start)
    assert box >= 0, f"no 'Verified by' list after {claim.label!r}"
    between = text[start + len(f'id="{claim.label}"'):box]
    assert between.count('class="proof ') <= 2, "the list is not right after the claim's proof"
    assert not re.search(r'id="(thm|prop|lem|cor)-', between), (
        "another claim comes between the claim and its list")
    end = text.find("</details>", box)
    listed = set(re.findall(r"<code[^>]*>\s*<span[^>]*>([^<]*)</span>", text[box:end]) or
                 re.findall(r"<code[^>]*>([^<]*)</code>", text[box:end]))
    expected = {r.nodeid for r in TEST_REFS if r.label == claim.label}
    assert listed == expected
