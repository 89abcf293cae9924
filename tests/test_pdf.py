"""The book as one PDF (``make pdf``): read back with poppler (``pdftotext``, ``pdftoppm``,
``pdfimages``) and checked against the website and LaTeX's own log.

* every page of ``_toc.yml`` is in it, chapters and their section pages, with the website's
  numbers: a chapter has its opening page, a section its heading, and the table of contents
  lists each under the number the website's navigation gives it (none for the preface and the
  reference pages); equations carry the website's numbers too, so that "Theorem 2.2" and
  "(2.3)" are found in chapter 2 of either;
* no reference is left unresolved: no ``??`` in the text, no undefined reference or citation
  in the log, no character missing from a font;
* every figure of the website is in it: page by page, LaTeX places as many graphics as the
  website's page shows images (a figure in a folded cell included), and the PDF embeds each;
* nothing runs into the margin: no ink outside the text block on any page (each page rendered,
  the text block found from the rule under its running head or over its foot), no overfull
  line of a display or of code in the log, and no box pushed over the foot of a page;
* each theorem, proposition, lemma and corollary lists the tests that verify it.

The PDF must be built first (``make pdf``; ``make test`` builds it). Outside ``make test`` the
checks skip when it or poppler is missing; under it (REFIMPL_REQUIRE_BOOK=1) they fail instead.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
LATEX = ROOT / "_build" / "latex"
PDF = LATEX / "refimpl.pdf"
LOG = LATEX / "refimpl.log"
HTML = ROOT / "_build" / "html"
REQUIRED = bool(os.environ.get("REFIMPL_REQUIRE_BOOK"))

sys.path.insert(0, str(ROOT / "book" / "_ext"))
import claims  # noqa: E402  (book/_ext/claims.py)
import latexpdf  # noqa: E402  (book/_ext/latexpdf.py)

#: Pages are checked at 50 dpi. Ink more than 3 px (1.5 mm, 4.3 pt) outside the text block
#: counts as running into the margin: Sphinx draws the frame of a code box 3.4 pt outside the
#: code it surrounds (\fboxsep + the rule), so that the code lines up with the text.
DPI = 50
MARGIN_TOLERANCE_PX = 3


def _need(what: str, ok: bool) -> None:
    if not ok:
        if REQUIRED:
            pytest.fail(f"{what} (make test provides it)")
        pytest.skip(what)


@pytest.fixture(scope="module")
def pdf() -> Path:
    _need("the PDF is not built: run `make pdf`", PDF.exists() and LOG.exists())
    _need("poppler-utils is not installed (pdftotext, pdftoppm, pdfimages)",
          all(shutil.which(t) for t in ("pdftotext", "pdftoppm", "pdfimages")))
    return PDF


@pytest.fixture(scope="module")
def pages(pdf) -> list[str]:
    """The text of each page (pdftotext separates pages by form feeds)."""
    text = subprocess.run(["pdftotext", "-enc", "UTF-8", str(pdf), "-"], capture_output=True,
                          text=True, check=True).stdout
    return [" ".join(p.split()) for p in text.split("\f")[:-1]]


@pytest.fixture(scope="module")
def log() -> str:
    _need("the PDF is not built: run `make pdf`", LOG.exists())
    return LOG.read_text(encoding="utf-8", errors="replace")


def _toc_entries() -> list[tuple[str, bool]]:
    """``(file, is_chapter)`` for every page of ``_toc.yml`` but the landing page, in order:
    the chapters and, after each, its section pages."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    entries = []

    def walk(items, chapter):
        for item in items:
            entries.append((item["file"], chapter))
            walk(item.get("sections", []), False)

    for part in toc.get("parts", [{"chapters": toc.get("chapters", [])}]):
        walk(part["chapters"], True)
    return entries


def _toc_files() -> list[str]:
    return [f for f, _ in _toc_entries()]


def website_navigation() -> dict[str, tuple[str, str]]:
    """Page -> (number, title) as the website's navigation shows them (number "" where the
    website numbers none), read from the built landing page."""
    root = yaml.safe_load((ROOT / "_toc.yml").read_text())["root"]
    page = HTML / f"{root}.html"
    _need("the book is not built: run `make book`", page.exists())
    folder = Path(root).parent
    nav = {}
    for href, text in re.findall(r'<a class="reference internal" href="([\w/.-]+)\.html">'
                                 r"([^<]+)</a>", page.read_text(encoding="utf-8")):
        number, title = re.fullmatch(r"(?:(\d+(?:\.\d+)*)\. )?(.*)", html.unescape(text)).groups()
        nav.setdefault((folder / href).as_posix(), (number or "", " ".join(title.split())))
    return nav


@pytest.fixture(scope="module")
def contents(pdf, pages) -> tuple[list[str], int]:
    """The entries of the table of contents, each as ``"2.1 Title"`` (or ``"Title"``) without
    its dots and page number, and the index of the first page after it. The contents are the
    pages between the title page and the first page with the running head (the book's title)."""
    title = " ".join(yaml.safe_load((ROOT / "_config.yml").read_text())["title"].split())
    end = next(i for i, page in enumerate(pages) if i > 0 and title in page)
    text = subprocess.run(["pdftotext", "-layout", "-enc", "UTF-8", "-f", "2", "-l", str(end),
                           str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    entries = []
    for line in text.splitlines():
        line = re.sub(r"(?:\s*\.)*\s+(?:\d+|[ivxlc]+)\s*$", "", line)  # dots, page number
        if line.strip():
            entries.append(" ".join(line.split()))
    assert entries[0] == "CONTENTS", entries[:3]
    return entries, end


@pytest.mark.parametrize("page, chapter", _toc_entries())
def test_every_page_is_in_the_pdf_with_the_website_number(pages, contents, page, chapter):
    """A chapter: its opening page (its title in capitals, the chapter head) after the table
    of contents. A section page: its heading, with its number. Both listed in the table of
    contents under the website's number, or under none where the website shows none."""
    entries, end = contents
    number, title = website_navigation()[page]
    entry = f"{number} {title}".strip()
    assert entry in entries, (
        f"the contents have no entry {entry!r}: "
        f"{[e for e in entries if e.endswith(title)] or 'none with that title'}")
    heading = title.upper() if chapter else entry
    assert any(heading in p for p in pages[end:]), f"no page opens {heading!r}"


def test_equations_have_the_website_numbers(pages, contents):
    """Every equation number of the website, (2.3), is printed in the PDF (by its display, and
    where the text refers to it)."""
    numbers = []
    for f in _toc_files():
        numbers += re.findall(r'<span class="eqno">\((\d+(?:\.\d+)*)\)',
                              (HTML / f"{f}.html").read_text(encoding="utf-8"))
    assert len(numbers) > 5
    body = " ".join(pages[contents[1]:])
    assert [n for n in numbers if f"({n})" not in body] == []


def unwrapped(log: str) -> str:
    """LaTeX's log with its lines joined back: TeX breaks them after 79 characters."""
    return re.sub(r"^(.{79})\n", r"\1", log, flags=re.M)


def test_log_lines_are_joined_back():
    wrapped = ("LaTeX Warning: Hyper reference `book/adam:prop-gradient-scale-invariance' on pa"
               "\nge 21 undefined on input line 1401.\n")
    assert len(wrapped.splitlines()[0]) == 79
    assert "on page 21 undefined" in unwrapped(wrapped)


def test_no_unresolved_reference(pages, log):
    assert [i + 1 for i, page in enumerate(pages) if "??" in page] == []
    undefined = re.findall(r"^(?:LaTeX|Package \w+) Warning: (?:Reference|Citation|Hyper "
                           r"reference) .*? undefined", unwrapped(log), re.M)
    assert undefined == []
    assert "There were undefined references" not in log


def test_no_character_missing_from_a_font(log):
    assert re.findall(r"^Missing character: .*$", log, re.M) == []


def _html_figures() -> dict[str, int]:
    """Page -> the images in its cell outputs and figures on the website (landing page
    included; images in folded cells count, the website shows them when unfolded)."""
    counts = {}
    for f in [yaml.safe_load((ROOT / "_toc.yml").read_text())["root"], *_toc_files()]:
        page = (HTML / f"{f}.html").read_text(encoding="utf-8")
        counts[f] = len(re.findall(r'<img [^>]*src="(?:\.\./)*_images/', page))
    return counts


def latex_figures(tex: str) -> dict[str, list[str]]:
    """Page -> the graphics files that the LaTeX source places in it (a page begins where
    Sphinx labels it ``<page>::doc``)."""
    figures: dict[str, list[str]] = {}
    page = None
    for m in re.finditer(r"\\label\{\\detokenize\{([^}]+)::doc\}\}|\\sphinxincludegraphics"
                         r"(?:\[[^]]*\])?\{\{([^}]*)\}(\.\w+)\}", tex):
        if m[1]:
            page = m[1]
            figures.setdefault(page, [])
        else:
            figures.setdefault(page, []).append(m[2] + m[3])
    return figures


def embedded_pdf_figures(pdf: Path) -> int:
    """The pages of other PDFs embedded in ``pdf``: the form XObjects that xdvipdfmx makes of
    them carry ``/FormType 1`` (the forms inside a matplotlib figure, its markers, do not).
    A stream's dictionary is never compressed into an object stream, so it can be read from
    the file's bytes."""
    return len(re.findall(rb"/Subtype\s*/Form\s*/FormType\s+1\b", pdf.read_bytes()))


def test_latex_figures_are_found_page_by_page():
    tex = (r"\label{\detokenize{book/a::doc}}x\sphinxincludegraphics[width=1pt]{{f1}.pdf}"
           r"\label{\detokenize{book/b::doc}}\label{\detokenize{book/c::doc}}"
           r"\sphinxincludegraphics{{f2}.png}\sphinxincludegraphics{{f3}.pdf}")
    assert latex_figures(tex) == {"book/a": ["f1.pdf"], "book/b": [],
                                  "book/c": ["f2.png", "f3.pdf"]}


def test_every_figure_is_in_the_pdf(pdf, log):
    _need("the book is not built: run `make book`", (HTML / "book").exists())
    html = _html_figures()
    placed = latex_figures((LATEX / "refimpl.tex").read_text(encoding="utf-8"))
    assert sum(html.values()) > 10
    assert {p: len(placed.get(p, [])) for p in html} == html, (
        "figures per page: LaTeX source against the website")
    files = [f for fs in placed.values() for f in fs]
    assert len(files) == sum(html.values()) and len(set(files)) == len(files)
    # Each graphic is loaded where it is placed (XeTeX logs "<use file>") and ends up in the
    # PDF: a vector figure as an embedded page, a bitmap as an image.
    assert sorted(re.findall(r"<use (\S+?)>", unwrapped(log))) == sorted(files)
    vector = [f for f in files if f.endswith(".pdf")]
    assert embedded_pdf_figures(pdf) == len(vector)
    listing = subprocess.run(["pdfimages", "-list", str(pdf)], capture_output=True, text=True,
                             check=True).stdout.splitlines()[2:]
    images = [row for row in listing if row.split()[2] == "image"]  # not the alpha masks
    assert len(images) >= len(files) - len(vector)


#: What an output looks like when LaTeX cannot show it (a figure only in SVG, a table only in
#: HTML) and myst-nb falls back to the object's text form.
REPR = re.compile(r"<Figure size|<IPython\.core\.display\.\w+ object>|<[\w.]+ object at 0x")


def test_no_output_printed_as_its_repr(pages):
    assert [(i + 1, m[0]) for i, p in enumerate(pages) for m in REPR.finditer(p)] == []


def test_html_table_becomes_a_table_with_formulas():
    """What book/_ext/latexpdf.py makes of a table that a cell displays as HTML."""
    table = latexpdf.html_table_node(
        "<table><thead><tr><th>T</th><th>a<sub>T</sub></th></tr></thead>"
        "<tbody><tr><td>10</td><td>&Gamma;<sup>2</sup> &le; 1</td></tr></tbody></table>")
    head, body = table.findall(lambda n: n.tagname in ("thead", "tbody"))
    assert head.astext().split() == ["T", "a_{T}"]
    formulas = [m.astext() for m in table.findall(lambda n: n.tagname == "math")]
    assert formulas == ["a_{T}", "Γ^{2}"]
    assert " ".join(body.astext().split()) == "10 Γ^{2} ≤ 1"


def read_pgm(path: Path) -> np.ndarray:
    """A binary greyscale PGM (what ``pdftoppm -gray`` writes) as a uint8 array."""
    data = path.read_bytes()
    magic, width, height, maxval, pixels = data.split(maxsplit=4)
    assert magic == b"P5" and int(maxval) == 255
    w, h = int(width), int(height)
    return np.frombuffer(pixels[: w * h], dtype=np.uint8).reshape(h, w)


def ink_outside_text_block(page: np.ndarray) -> tuple[int, int] | None:
    """How far ink reaches left and right of the text block, in pixels; None for a page
    without a rule (a blank page).

    The text block is as wide as the rule under the running head (or over the foot, on a
    chapter's first page): the longest dark horizontal line on the page.
    """
    ink = page < 128
    runs = ink.sum(axis=1)
    row = int(np.argmax(runs))
    if runs[row] < 0.5 * page.shape[1]:
        return None
    rule = np.flatnonzero(ink[row])
    columns = np.flatnonzero(ink.any(axis=0))
    return int(rule.min() - columns.min()), int(columns.max() - rule.max())


def test_the_margin_check_sees_ink_in_the_margin():
    page = np.full((300, 200), 255, np.uint8)
    page[20, 30:170] = 0         # the head rule: text block columns 30..169
    page[100:110, 40:160] = 0    # text inside
    assert ink_outside_text_block(page) == (0, 0)
    page[150, 100:175] = 0       # a line 5 px into the right margin
    assert ink_outside_text_block(page) == (0, 5)
    page[200, 25:60] = 0         # and 5 px into the left one
    assert ink_outside_text_block(page) == (5, 5)
    assert ink_outside_text_block(np.full((300, 200), 255, np.uint8)) is None


def test_nothing_runs_into_the_margin(pdf):
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["pdftoppm", "-gray", "-r", str(DPI), str(pdf), f"{tmp}/page"],
                       check=True)
        files = sorted(Path(tmp).glob("page-*.pgm"))
        reaches = {int(f.stem.split("-")[1]): ink_outside_text_block(read_pgm(f))
                   for f in files}
    assert len(reaches) > 100
    blank = [p for p, r in reaches.items() if r is None]
    assert len(blank) < 0.05 * len(reaches), f"pages without a rule: {blank}"
    over = {p: r for p, r in reaches.items() if r and max(r) > MARGIN_TOLERANCE_PX}
    assert over == {}, "pages with ink in the margin (left, right px at 50 dpi)"


def test_no_display_or_code_line_too_wide(log):
    """LaTeX's own measure: an overfull line outside a paragraph is a display or a line of
    code; 1 pt is a third of a millimetre."""
    wide = [(float(m[1]), m[2]) for m in re.finditer(
        r"^Overfull \\hbox \((\d+(?:\.\d+)?)pt too wide\) detected at line (\d+)", log, re.M)]
    assert [(pt, line) for pt, line in wide if pt > 1.0] == []


def test_no_page_runs_over_its_foot(log):
    """A box that cannot break (a table, boxed code) pushed below the text block: LaTeX's log
    says by how much. 5 pt is a sixth of the gap to the running foot; a few boxes end 1-3 pt
    low, which no reader sees."""
    tall = [(float(m[1]), m[2]) for m in re.finditer(
        r"^Overfull \\vbox \((\d+(?:\.\d+)?)pt too high\) (?:detected at line (\d+)|has occurred "
        r"while \\output is active)", log, re.M)]
    assert [(pt, line) for pt, line in tall if pt > 5.0] == []


def test_every_claim_lists_its_tests(pages):
    text = " ".join(pages)
    labelled = [c for c in claims.book_claims() if c.label]
    assert text.count("Verified by") >= len(labelled) > 0
    mapping = claims.claim_map()
    # A test's name may be broken across lines after an underscore: compare without spaces.
    flat = text.replace(" ", "")
    missing = [c.label for c in labelled
               if not any(r.name.split("::")[-1] in flat for r in mapping.get(c.label, []))]
    assert missing == []
