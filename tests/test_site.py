"""The website as a reader gets it: from a static server and from ``file://``.

* Search (headless Chromium): the search page lists hits for a query, each with a snippet of
  text, and no snippet shows raw TeX such as ``\\(m_0 = v_0 = 0\\)``. The site is served with
  ``python -m http.server`` on 127.0.0.1 and also opened as files. Sphinx's own search fetches
  each hit's page to cut the snippet, which shows formulas as TeX and which a browser refuses
  under ``file://``; book/_ext/publish.py gives the search page the text of every page with its
  formulas in Unicode instead.
* Downloads: each chapter page offers its notebook (an ``.ipynb`` that exists and is valid) and
  the whole book as a PDF; "How to cite" renders ``CITATION.cff``; the repository link appears
  only when the build was told the repository's address (``REFIMPL_REPOSITORY_URL``).

The book must be built first (``make book``; ``make test`` builds it and the PDF). Outside
``make test`` the checks skip when something is missing; under it (REFIMPL_REQUIRE_BOOK=1) they
fail instead.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
REQUIRED = bool(os.environ.get("REFIMPL_REQUIRE_BOOK"))

sys.path.insert(0, str(ROOT / "book" / "_ext"))
import publish  # noqa: E402  (book/_ext/publish.py)

# The same offline flags as tests/test_render.py; 127.0.0.1 stays reachable for the server.
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--virtual-time-budget=30000",
]
# Raw TeX in a snippet: a formula's delimiters (MathJax's \( \) and \[ \], or $$). A backslash
# alone is no sign: code cells show some (r"$\beta_2$" in a plot label).
RAW_TEX = re.compile(r"\\[()\[\]]|\$\$")
QUERIES = ["bias correction", "epsilon", "moment", "raw averages start"]


def _need(what: str, ok: bool) -> None:
    if not ok:
        if REQUIRED:
            pytest.fail(f"{what} (make test provides it)")
        pytest.skip(what)


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def _toc_files() -> list[str]:
    """Every page of ``_toc.yml``: the landing page, the chapters and their section pages."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for entry in entries:
            files.append(entry["file"])
            walk(entry.get("sections", []))

    for part in toc.get("parts", [{"chapters": toc.get("chapters", [])}]):
        walk(part["chapters"])
    return files


def _notebook_chapters() -> list[str]:
    out = []
    for f in _toc_files():
        head = (ROOT / f"{f}.md").read_text(encoding="utf-8")[:2000]
        if head.startswith("---") and "kernelspec:" in head:
            out.append(f)
    return out


# --------------------------------------------------------------------------------------------
# Search in a browser
# --------------------------------------------------------------------------------------------


class _Results(HTMLParser):
    """The hits of Sphinx's search page: ``#search-results li`` -> title and snippet.

    A hit on an object of the API (a class, a function) has a description instead of a
    snippet: "(Python class, in API reference)".
    """

    def __init__(self):
        super().__init__()
        self.hits: list[dict] = []
        self.depth = 0  # inside #search-results
        self.field: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id") == "search-results":
            self.depth = 1
            return
        if not self.depth:
            return
        self.depth += 1
        if tag == "li":
            self.hits.append({"title": "", "snippet": None, "description": ""})
        elif self.hits and tag == "a" and not self.hits[-1]["title"]:
            self.field = "title"
        elif self.hits and tag == "p" and "context" in (attrs.get("class") or "").split():
            self.hits[-1]["snippet"] = ""
            self.field = "snippet"
        elif self.hits and tag == "span" and self.field is None:
            self.field = "description"

    def handle_endtag(self, tag):
        if self.depth:
            self.depth -= 1
            if tag in ("a", "p", "span"):
                self.field = None

    def handle_data(self, data):
        if self.depth and self.field and self.hits:
            self.hits[-1][self.field] += data


def search(url: str) -> list[dict]:
    """Open the search page at ``url`` in headless Chromium; the hits it lists."""
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run([_chromium(), *FLAGS, f"--user-data-dir={profile}",
                               "--dump-dom", url], capture_output=True, text=True, timeout=300)
    assert 'id="search-results"' in proc.stdout, (
        f"no search page at {url} (exit {proc.returncode}): {proc.stderr[-2000:]}")
    parser = _Results()
    parser.feed(proc.stdout)
    return parser.hits


@pytest.fixture(scope="module")
def server():
    """``python -m http.server`` serving _build/html on 127.0.0.1 (a free port)."""
    _need("the book is not built: run `make book`", (HTML / "search.html").exists())
    _need("Chromium is not installed (Debian package `chromium`)", _chromium() is not None)
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1",
         "--directory", str(HTML)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline()
        match = re.search(r"port (\d+)", line)
        assert match, f"http.server did not start: {line!r}"
        yield f"http://127.0.0.1:{match[1]}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _search_url(where: str, server: str, query: str, page: str = "search.html") -> str:
    q = query.replace(" ", "+")
    if where == "http":
        return f"{server}/{page}?q={q}"
    return f"{(HTML / page).as_uri()}?q={q}"


@pytest.mark.parametrize("where", ["http", "file"])
@pytest.mark.parametrize("query", QUERIES)
def test_search_lists_hits_with_readable_snippets(server, where, query):
    hits = search(_search_url(where, server, query))
    assert hits, f"no hit for {query!r}"
    assert [h["title"] for h in hits if not (h["snippet"] or h["description"])] == [], (
        "hits without a snippet")
    raw = [(h["title"], h["snippet"]) for h in hits if RAW_TEX.search(h["snippet"] or "")]
    assert raw == [], "snippets with raw TeX"


def test_search_snippets_show_formulas_in_unicode(server):
    """Formulas do reach the snippets, written as text (β₂, v̂ₜ, 10⁻⁸), not dropped."""
    snippets = [h["snippet"] or "" for q in QUERIES[:2] for h in search(
        _search_url("http", server, q))]
    assert any(re.search("[α-ωₐ-ₜ₀-₉⁰-⁹]", s) for s in snippets), snippets


def test_the_search_check_catches_raw_tex(server):
    """Without publish.py's two scripts, Sphinx's stock snippets show raw TeX over http and no
    snippet at all from file://: the checks above fail on the stock search page."""
    stock = HTML / "search.html"
    text = re.sub(r'<script[^>]*src="[^"]*refimpl-search-(pages|snippets)\.js[^"]*"[^>]*>'
                  r"</script>\s*", "", stock.read_text(encoding="utf-8"))
    assert text != stock.read_text(encoding="utf-8"), "the search page lost its scripts"
    page = HTML / "_search_check_stock.html"
    try:
        page.write_text(text, encoding="utf-8")
        served = search(_search_url("http", server, "raw averages start", page.name))
        assert any(RAW_TEX.search(h["snippet"] or "") for h in served), served
        local = search(_search_url("file", server, "raw averages start", page.name))
        assert local and all(not h["snippet"] for h in local), local
        assert any(not h["description"] for h in local), local
    finally:
        page.unlink()


@pytest.mark.parametrize("page", ["index.html", "book/adam.html", "book/cite.html"])
def test_pages_render_from_the_static_server(server, page):
    """tests/test_render.py opens every page from file://; here a few come from the server:
    the landing page's redirect is followed and the formulas are typeset."""
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run([_chromium(), *FLAGS, f"--user-data-dir={profile}", "--dump-dom",
                              f"{server}/{page}"], capture_output=True, text=True,
                             timeout=300).stdout
    assert "bd-article" in dom, f"{page} did not load"
    assert "<mjx-merror" not in dom
    if page != "book/cite.html":
        assert dom.count("<mjx-container") > 0, f"{page}: no formula typeset"


# --------------------------------------------------------------------------------------------
# Formulas as text
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tex, text", [
    ("m_0 = v_0 = 0", "m₀ = v₀ = 0"),
    (r"\hat m_t", "m̂ₜ"),
    (r"\theta_t = \theta_{t-1} - \alpha \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}",
     "θₜ = θₜ₋₁ - α m̂ₜ/(√v̂ₜ + ε)"),
    (r"\beta_1^2 < \beta_2", "β₁² < β₂"),
    (r"\mathbb{R}^n \setminus \{0\}", "ℝⁿ ∖ {0}"),
    (r"\sum_{i=1}^{t} w_i = 1", "∑ᵢ₌₁ᵗ wᵢ = 1"),
    (r"\lVert w \rVert_2 \le 10^{-8}", "‖ w ‖₂ ≤ 10⁻⁸"),
    (r"\text{head} = \texttt{bn}", "head = bn"),
])
def test_tex_to_text(tex, text):
    assert publish.tex_to_text(tex) == text


def test_page_text_keeps_the_article_its_anchors_and_readable_formulas():
    page = """<html><body><nav>Site navigation</nav>
    <main role="main"><div class="article-header-buttons">.md .pdf</div>
    <article class="bd-article"><section id="bias-correction"><h2>Bias correction
    <a class="headerlink" href="#bias-correction">#</a></h2>
    <p>Because <span class="math notranslate">\\(m_0 = v_0 = 0\\)</span>, the averages start low.
    <img src="x.png"></p><script>var x = 1;</script></section></article>
    <footer>Copyright</footer></main></body></html>"""
    assert publish.page_search_text(page) == (
        '<div role="main"><div id="bias-correction">Bias correction Because m₀ = v₀ = 0, '
        "the averages start low. </div></div>")


def test_every_formula_of_the_book_reads_without_backslashes():
    """Every formula on every built page, as search snippets show it: no TeX command left."""
    _need("the book is not built: run `make book`", (HTML / "search.html").exists())
    formulas = []
    for f in _toc_files():
        page = (HTML / f"{f}.html").read_text(encoding="utf-8")
        formulas += [html.unescape(m) for m in re.findall(
            r'class="math[^"]*"[^>]*>(.*?)</(?:span|div)>', page, re.S)]
    assert len(formulas) > 100
    bad = [(tex, publish.tex_to_text(publish._strip_delimiters(tex))) for tex in formulas]
    bad = [(tex, text) for tex, text in bad if "\\" in text]
    assert bad == []


# --------------------------------------------------------------------------------------------
# Downloads, citation, repository
# --------------------------------------------------------------------------------------------


def _downloads(page: Path) -> dict[str, str]:
    """The page's download menu: label -> href."""
    text = page.read_text(encoding="utf-8")
    return {label: href for href, label in re.findall(
        r'<a href="([^"]+)"[^>]*?(download-[a-z-]+-button)', text, re.S)}


@pytest.mark.parametrize("chapter", _notebook_chapters())
def test_chapter_offers_its_notebook_and_the_book_pdf(chapter):
    import nbformat

    page = HTML / f"{chapter}.html"
    _need("the book is not built: run `make book`", page.exists())
    links = _downloads(page)
    notebook = (page.parent / links["download-notebook-button"]).resolve()
    assert notebook == (HTML / "_sources" / f"{chapter}.ipynb").resolve()
    nb = nbformat.read(notebook, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    source = (ROOT / f"{chapter}.md").read_text(encoding="utf-8")
    assert sum(c.cell_type == "code" for c in nb.cells) == source.count("```{code-cell}")
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    pdf = (page.parent / links["download-book-pdf-button"]).resolve()
    assert pdf == (HTML / publish.PDF_NAME).resolve()
    _need("the PDF is not in the site: run `make pdf`", pdf.exists())
    assert pdf.read_bytes()[:5] == b"%PDF-"


def test_citation_file_is_valid_and_matches_the_package():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert cff["cff-version"] == "1.2.0"
    assert {"message", "title", "authors", "version"} <= set(cff)
    assert all("name" in a or "family-names" in a for a in cff["authors"])
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    import refimpl

    assert cff["version"] == refimpl.__version__ and project["dynamic"] == ["version"]  # the one version
    assert "repository-code" not in cff and "url" not in cff  # not known here: not claimed


def test_cite_page_renders_the_citation_file():
    page = HTML / "book" / "cite.html"
    _need("the book is not built: run `make book`", page.exists())
    text = html.unescape(re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8")))
    cff = publish.citation()
    assert "@software{refimpl," in text
    assert cff["title"] in text and f"version {cff['version']}" in text
    assert "book/cite" in _toc_files()


def test_bibtex_names_the_repository_only_when_known():
    cff = publish.citation()
    assert "url" not in publish.citation_bibtex(cff, "")
    assert "url     = {https://example.org/r}" in publish.citation_bibtex(cff, "https://example.org/r")


class _Config:
    html_theme_options: dict = {"use_repository_button": False, "repository_url": ""}


def test_repository_button_comes_from_the_environment(monkeypatch):
    config = _Config()
    monkeypatch.delenv(publish.REPOSITORY_ENV, raising=False)
    publish._repository(None, config)
    assert config.html_theme_options["use_repository_button"] is False
    monkeypatch.setenv(publish.REPOSITORY_ENV, "https://example.org/owner/refimpl/")
    publish._repository(None, config)
    assert config.html_theme_options["repository_url"] == "https://example.org/owner/refimpl"
    assert config.html_theme_options["use_repository_button"] is True


def test_built_site_links_the_repository_it_was_told_of():
    """The build records the address it was given (none for a local build) in every page."""
    page = HTML / "book" / "adam.html"
    _need("the book is not built: run `make book`", page.exists())
    text = page.read_text(encoding="utf-8")
    buttons = re.findall(r'<a href="([^"]+)"[^>]*?repository-button', text, re.S)
    url = publish.repository_url()
    assert buttons == ([url] if url else []), (
        "the site was built with another REFIMPL_REPOSITORY_URL than this run's")


def test_search_pages_cover_every_page():
    store = HTML / "_static" / publish.SEARCH_PAGES
    _need("the book is not built: run `make book`", store.exists())
    text = store.read_text(encoding="utf-8")
    pages = json.loads(text[text.index("{"): text.rindex("}") + 1])
    assert set(pages) == {f"{f}.html" for f in _toc_files()}
    assert all(p.startswith('<div role="main">') and len(p) > 500 for p in pages.values())
