"""Render check: every page of the built book, opened in headless Chromium.

For each page listed in ``_toc.yml`` (plus the API page) the browser must find the math typeset
(``mjx-container`` present wherever the page has math, no ``mjx-merror``), every image loaded,
and no request leaving the machine; the HTML and the CSS it loads must not reference an
off-machine resource (``<script src>``, ``<link href>``, ``<img src>``, ``@import``, ``url()``).
Links a reader clicks (``<a href>``, e.g. to a paper on arXiv) are not loads and are allowed.

The book must be built first (``make book``; ``make test`` does it). Chromium is the Debian
package ``chromium``, which ``make test`` installs when missing. Outside ``make test`` the check
skips when either is missing; under ``make test`` (REFIMPL_REQUIRE_BOOK=1) it fails instead.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
HARNESS = Path(__file__).with_name("render_harness.html")
REQUIRED = bool(os.environ.get("REFIMPL_REQUIRE_BOOK"))

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    # Chromium's own background lookups (update checks, time sync) fail inside the browser,
    # so nothing leaves the machine; file:// pages are unaffected.
    "--host-resolver-rules=MAP * ~NOTFOUND",
    # Lets the harness page read the book pages it loads in an iframe (both are file://).
    "--allow-file-access-from-files",
    # Virtual time: timers run as fast as the page allows; the dump happens when the page is
    # idle or after 120 virtual seconds, whichever comes first.
    "--virtual-time-budget=120000",
]
REMOTE = re.compile(r"^\s*(https?:|wss?:|ftp:|//)", re.I)


def _need(what: str, ok: bool) -> None:
    if not ok:
        if REQUIRED:
            pytest.fail(f"{what} (make test provides it)")
        pytest.skip(what)


def _toc_pages() -> list[Path]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", [{"chapters": toc.get("chapters", [])}]):
        files += [c["file"] for c in part["chapters"]]
    return [HTML / f"{f}.html" for f in files]


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def run_harness(pages: list[Path]) -> list[dict]:
    """Open ``pages`` in headless Chromium through the harness; one record per page."""
    with tempfile.TemporaryDirectory() as tmp:
        harness = Path(tmp) / "harness.html"
        urls = json.dumps([p.resolve().as_uri() for p in pages])
        harness.write_text(HARNESS.read_text().replace("PAGES", urls))
        proc = subprocess.run(
            [_chromium(), *FLAGS, f"--user-data-dir={tmp}/profile", "--dump-dom", harness.as_uri()],
            capture_output=True, text=True, timeout=600)
    match = re.search(r'<pre id="result">(.*?)</pre>', proc.stdout, re.S)
    assert match and match[1] != "pending", (
        f"the harness did not finish (exit {proc.returncode}): {proc.stderr[-2000:]}")
    import html
    return json.loads(html.unescape(match[1]))


@pytest.fixture(scope="module")
def rendered() -> dict[str, dict]:
    pages = _toc_pages()
    _need("the book is not built: run `make book`", all(p.exists() for p in pages))
    _need("Chromium is not installed (Debian package `chromium`)", _chromium() is not None)
    return {Path(r["url"]).name: r for r in run_harness(pages)}


PAGES = [p.name for p in _toc_pages()]


@pytest.mark.parametrize("page", PAGES)
def test_math_is_typeset(rendered, page):
    r = rendered[page]
    assert "error" not in r, r
    assert r["errors"] == 0, f"{page}: {r['errors']} MathJax errors"
    if r["math_sources"]:  # Sphinx loads MathJax only on pages that have math
        assert r["mathjax"] == "ready", r
        assert r["typeset"] >= r["math_sources"], r


@pytest.mark.parametrize("page", PAGES)
def test_figures_load(rendered, page):
    r = rendered[page]
    broken = [i["src"] for i in r["images"] if not i["loaded"]]
    assert broken == []


@pytest.mark.parametrize("page", PAGES)
def test_no_request_leaves_the_machine(rendered, page):
    assert rendered[page]["remote"] == []


_LOAD_ATTRS = re.compile(
    r"<(script|link|img|iframe|source|video|audio|embed|object|track)\b[^>]*?"
    r"\b(src|href|data|poster|srcset)\s*=\s*[\"']([^\"']*)[\"']", re.I | re.S)
_CSS_URLS = re.compile(r"(?:@import\s+(?:url\()?|url\()\s*[\"']?([^\"')\s]+)", re.I)


def _static_remote_refs(page: Path) -> list[str]:
    text = page.read_text(encoding="utf-8")
    refs = [f"<{tag} {attr}={url}>" for tag, attr, url in _LOAD_ATTRS.findall(text)
            if REMOTE.match(url)]
    refs += [f"inline style url({u})" for u in _CSS_URLS.findall(text) if REMOTE.match(u)]
    for tag, attr, url in _LOAD_ATTRS.findall(text):
        if tag.lower() == "link" and url.endswith(".css") and not REMOTE.match(url):
            css = (page.parent / url.split("?")[0]).resolve()
            if css.exists():
                refs += [f"{css.name}: url({u})" for u in _CSS_URLS.findall(css.read_text(errors="replace"))
                         if REMOTE.match(u)]
    return refs


@pytest.mark.parametrize("page", _toc_pages(), ids=lambda p: p.name)
def test_html_references_no_remote_resource(page):
    _need("the book is not built: run `make book`", page.exists())
    assert _static_remote_refs(page) == []


def test_the_check_catches_broken_pages(tmp_path):
    """A page with a TeX error, a missing image and a CDN script fails every check above."""
    _need("the book is not built: run `make book`", (HTML / "_static").exists())
    _need("Chromium is not installed (Debian package `chromium`)", _chromium() is not None)
    good = _toc_pages()[0]
    text = good.read_text(encoding="utf-8")
    bad = text.replace("<body", '<body><p>\\(\\frac{1}\\)</p><img src="nowhere.png" alt="x">'
                       '<script src="https://cdn.example.org/x.js"></script><span', 1)
    page = good.with_name("_render_check_broken.html")
    try:
        page.write_text(bad, encoding="utf-8")
        [r] = run_harness([page])
        assert r["errors"] >= 1
        assert [i["src"] for i in r["images"] if not i["loaded"]] == ["nowhere.png"]
        assert _static_remote_refs(page) == ["<script src=https://cdn.example.org/x.js>"]
    finally:
        page.unlink()
