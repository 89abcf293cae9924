"""Render check: every page of the built book, opened in headless Chromium at two widths.

Each page listed in ``_toc.yml`` is opened at 1400 and at 400 CSS pixels (a desktop window and a
phone), with every collapsed block opened, and must show

* its mathematics typeset (no ``mjx-merror``, no unknown command such as ``\\lambdar``, which
  MathJax shows as red text), every image loaded, no request leaving the machine,
  and no off-machine resource referenced by the HTML or its CSS (links a reader clicks, such as
  a paper on arXiv, are not loads and are allowed);
* no display cut at the margin: at 1400 px every display fits; at 400 px one that does not fit
  scrolls with a visible cue (``book/_static/refimpl.js`` marks it);
* no code or output line cut at the margin;
* nothing that looks like a log: no warning, traceback, memory address, build path or stderr
  output, and no JavaScript error in the console;
* numbers in the prose typeset like the mathematics around them (no ``1.00e+06``), and no
  mathematics left as source (a literal ``$``, ``\\frac``);
* tables with padding and rules, one box per print-out, and "Verified by" lists inside their
  boxes;
* figures as vector graphics (or bitmaps with two pixels per displayed pixel) whose smallest text
  is at least ``MIN_FONT_PX`` CSS pixels at 1400 px;
* the list of theorems in the navigation.

The book must be built first (``make book``; ``make test`` does it). Chromium is the Debian
package ``chromium``, which ``make test`` installs when missing. Outside ``make test`` the check
skips when either is missing; under ``make test`` (REFIMPL_REQUIRE_BOOK=1) it fails instead.
``python tests/test_render.py`` prints the measurements page by page.
"""

from __future__ import annotations

import html
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

WIDE, NARROW = 1400, 400
WIDTHS = (WIDE, NARROW)
#: The smallest text a figure may show at 1400 px, in CSS pixels (the body text is 16 px).
MIN_FONT_PX = 9.5
#: The page that lists the theorems, and the title the navigation shows for it.
THEOREMS_TITLE = "Theorems, by chapter"

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    # Chromium's own background lookups (update checks, time sync) fail inside the browser,
    # so nothing leaves the machine; file:// pages are unaffected.
    "--host-resolver-rules=MAP * ~NOTFOUND",
    # Lets the harness page read the book pages it loads in an iframe (both are file://).
    "--allow-file-access-from-files",
    # The console messages of every page, JavaScript errors included, on stderr.
    "--enable-logging=stderr", "--v=0",
    # Virtual time: timers run as fast as the page allows; the dump happens when the page is
    # idle or after 600 virtual seconds, whichever comes first.
    "--virtual-time-budget=600000",
]
REMOTE = re.compile(r"^\s*(https?:|wss?:|ftp:|//)", re.I)


def _need(what: str, ok: bool) -> None:
    if not ok:
        if REQUIRED:
            pytest.fail(f"{what} (make test provides it)")
        pytest.skip(what)


def _toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for entry in entries:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections", []))

    for part in toc.get("parts", [{"chapters": toc.get("chapters", [])}]):
        walk(part["chapters"])
    return files


def _toc_pages() -> list[Path]:
    return [HTML / f"{f}.html" for f in _toc_files()]


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


_CONSOLE = re.compile(r'CONSOLE(?:\(\d+\)|:\d+)\] "(?P<message>.*)", source: (?P<source>\S*)')


def run_harness(pages: list[Path], widths=WIDTHS) -> list[dict]:
    """Open ``pages`` in headless Chromium through the harness; one record per page and width.

    Each record carries ``console_errors``: the JavaScript errors and failed loads that Chromium
    logged while the page was open.
    """
    with tempfile.TemporaryDirectory() as tmp:
        harness = Path(tmp) / "harness.html"
        urls = json.dumps([p.resolve().as_uri() for p in pages])
        harness.write_text(HARNESS.read_text().replace("PAGES", urls)
                           .replace("WIDTHS", json.dumps(list(widths))))
        proc = subprocess.run(
            [_chromium(), *FLAGS, f"--user-data-dir={tmp}/profile", "--dump-dom", harness.as_uri()],
            capture_output=True, text=True, timeout=1200)
    match = re.search(r'<pre id="result">(.*?)</pre>', proc.stdout, re.S)
    assert match and match[1] != "pending", (
        f"the harness did not finish (exit {proc.returncode}): {proc.stderr[-2000:]}")
    records = json.loads(html.unescape(match[1]))
    errors: dict[tuple[int, str], list[str]] = {}
    current = None
    for line in proc.stderr.splitlines():
        found = _CONSOLE.search(line)
        if not found:
            continue
        message = found["message"]
        if message.startswith("refimpl-render-check "):
            _, width, url = message.split(" ", 2)
            current = (int(width), url)
        elif current and (message.startswith("Uncaught") or "Failed to load" in message
                          or "Error" in message.split(":")[0]):
            errors.setdefault(current, []).append(f"{message} ({found['source']})")
    for r in records:
        r["console_errors"] = errors.get((r["width"], r["url"]), [])
    return records


# --------------------------------------------------------------------------------------------
# What counts as a defect, as functions of one record (used by the tests and by the self-test)
# --------------------------------------------------------------------------------------------

#: Text that only a log shows: warnings, tracebacks, object addresses, paths of the build machine.
LOG_PATTERNS = {
    "warning": re.compile(r"\b[A-Z]\w*Warning\b|\bwarnings\.warn\b"),
    "traceback": re.compile(r"Traceback \(most recent call last\)|^\s*File \".*\", line \d+", re.M),
    "memory address": re.compile(r"\bat 0x[0-9a-fA-F]{6,}\b|<[\w.]+ object at 0x"),
    "build path": re.compile("|".join(map(re.escape, {
        str(ROOT), "/home/", "/tmp/", "/root/", "site-packages", ".venv/", "/usr/lib/python"}))),
}
#: A number in Python's e-notation (1.00e+06, 2.7e16, 6.3e-229).
E_NOTATION = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?[eE][-+]?\d+\b")
#: Mathematics left as source in the prose.
RAW_MATH = re.compile(r"\$|\\(?:frac|sqrt|alpha|beta|epsilon|times|mathbb|left|right|hat)\b|\\\(|\\\[")


def log_text(record: dict) -> list[str]:
    found = [f"{what}: {m.group(0)!r}" for what, pattern in LOG_PATTERNS.items()
             for m in pattern.finditer(record["text"])]
    if record["stderr_blocks"]:
        found.append(f"{record['stderr_blocks']} stderr output block(s)")
    return found


def cut_displays(record: dict) -> list[str]:
    """Displays that do not fit: any at 1400 px; at 400 px those neither shrunk to fit nor
    scrolling with a cue."""
    return [f"{d['tex']} (needs {d['need']:.0f} px, has {d['room']:.0f})"
            for d in record["overflowing"]
            if record["width"] >= WIDE or not d["mode"] or d["past_article"]]


def untypeset_prose(record: dict) -> list[str]:
    text = record["prose"]
    return ([f"e-notation {m.group(0)!r} in {text[max(0, m.start() - 40):m.end() + 20]!r}"
             for m in E_NOTATION.finditer(text)]
            + [f"source {m.group(0)!r} in {text[max(0, m.start() - 40):m.end() + 20]!r}"
               for m in RAW_MATH.finditer(text)])


def blurry_figures(record: dict) -> list[str]:
    """Bitmaps with fewer than two pixels per displayed pixel; at 1400 px, also figures whose
    smallest text is below MIN_FONT_PX (a phone reader zooms instead)."""
    out = []
    for f in record["figures"]:
        if not f["svg"] and f["natural"] < 1.9 * f["shown"]:
            out.append(f"{f['src']}: a bitmap of {f['natural']} px shown at {f['shown']} px")
        elif (f["svg"] and record["width"] >= WIDE and f["font_px"] is not None
              and f["font_px"] < MIN_FONT_PX):
            out.append(f"{f['src']}: smallest text {f['font_px']:.1f} px")
    return out


# --------------------------------------------------------------------------------------------
# The checks
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered() -> dict[tuple[str, int], dict]:
    pages = _toc_pages()
    _need("the book is not built: run `make book`", all(p.exists() for p in pages))
    _need("Chromium is not installed (Debian package `chromium`)", _chromium() is not None)
    base = HTML.resolve().as_uri() + "/"
    return {(r["url"].removeprefix(base), r["width"]): r for r in run_harness(pages)}


PAGES = [p.relative_to(HTML).as_posix() for p in _toc_pages()]
CASES = [pytest.param(page, width, id=f"{page}@{width}") for width in WIDTHS for page in PAGES]


@pytest.mark.parametrize("page, width", CASES)
def test_math_is_typeset(rendered, page, width):
    r = rendered[page, width]
    assert "error" not in r, r.get("error")
    assert r["errors"] == 0, f"{page}: {r['errors']} MathJax errors"
    assert r["undefined_commands"] == [], f"{page}: commands MathJax does not know"
    if r["math_sources"]:  # Sphinx loads MathJax only on pages that have math
        assert r["mathjax"] == "ready", r["mathjax"]
        assert r["typeset"] >= r["math_sources"], (r["typeset"], r["math_sources"])


@pytest.mark.parametrize("page", PAGES)
def test_figures_load(rendered, page):
    r = rendered[page, WIDE]
    broken = [i["src"] for i in r["images"] if not i["loaded"]]
    assert broken == []


@pytest.mark.parametrize("page", PAGES)
def test_no_request_leaves_the_machine(rendered, page):
    assert rendered[page, WIDE]["remote"] == []
    assert rendered[page, NARROW]["remote"] == []


@pytest.mark.parametrize("page, width", CASES)
def test_no_display_is_cut(rendered, page, width):
    assert cut_displays(rendered[page, width]) == []


@pytest.mark.parametrize("page, width", CASES)
def test_no_code_or_output_line_is_cut(rendered, page, width):
    assert rendered[page, width]["clipped"] == []


@pytest.mark.parametrize("page", PAGES)
def test_page_shows_no_log(rendered, page):
    assert log_text(rendered[page, WIDE]) == []


@pytest.mark.parametrize("page", PAGES)
def test_no_javascript_error(rendered, page):
    assert rendered[page, WIDE]["console_errors"] == []
    assert rendered[page, NARROW]["console_errors"] == []


@pytest.mark.parametrize("page", PAGES)
def test_prose_numbers_and_math_are_typeset(rendered, page):
    assert untypeset_prose(rendered[page, WIDE]) == []


@pytest.mark.parametrize("page", PAGES)
def test_tables_have_padding_and_rules(rendered, page):
    assert rendered[page, WIDE]["bare_tables"] == []


@pytest.mark.parametrize("page", PAGES)
def test_one_box_per_printout(rendered, page):
    assert rendered[page, WIDE]["split_outputs"] == 0


@pytest.mark.parametrize("page, width", CASES)
def test_claim_lists_fit_their_boxes(rendered, page, width):
    assert rendered[page, width]["claims_overflowing"] == 0


@pytest.mark.parametrize("page", PAGES)
def test_figures_are_crisp_and_readable(rendered, page):
    assert blurry_figures(rendered[page, WIDE]) == []


@pytest.mark.parametrize("page", PAGES)
def test_the_theorem_list_is_in_the_navigation(rendered, page):
    assert THEOREMS_TITLE in rendered[page, WIDE]["nav"]


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


@pytest.mark.parametrize("page", _toc_pages(), ids=lambda p: p.relative_to(HTML).as_posix())
def test_html_references_no_remote_resource(page):
    _need("the book is not built: run `make book`", page.exists())
    assert _static_remote_refs(page) == []


BROKEN = (
    # a TeX error, a command MathJax does not know, a missing image and a CDN script
    '<p>\\(\\frac{1}\\) \\(2\\alpha\\lambdar_t^2\\)</p><img src="nowhere.png" alt="x">'
    '<script src="https://cdn.example.org/x.js"></script>'
    # a display far wider than any page, and a code line far longer
    '<div class="math notranslate nohighlight">\\[' + " + ".join(f"x_{{{i}}}" for i in range(80))
    + '\\]</div><div class="highlight"><pre>' + "x = 1  # " + "long " * 100 + "</pre></div>"
    # a warning with a build path, a number in e-notation and a literal dollar in the prose
    f'<p>{ROOT}/book/x.py:3: RuntimeWarning: overflow</p><p>about 2.7e+16 steps, $x$</p>'
    # a table with no padding and no rules, a print-out split in two
    '<table style="border-collapse:collapse"><tr><td style="padding:0;border:0">1</td>'
    '<td style="padding:0;border:0">2</td></tr></table>'
    '<div class="cell_output"><div class="output stream"><pre>a</pre></div>'
    '<div class="output stream"><pre>b</pre></div></div>'
    # a JavaScript error
    '<script>const twice = 1;</script><script>const twice = 2;</script>'
    # a "Verified by" list wider than its box, a blurry figure
    '<div class="claim-tests" style="width:100px;overflow:hidden"><code style="white-space:pre">'
    + "test_" * 60 + '</code></div>'
    '<img src="data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNk'
    'YAAAAAYAAjCB0C8AAAAASUVORK5CYII=" style="width:300px" alt="one pixel">'
)


def test_the_check_catches_broken_pages(tmp_path):
    """A page with each defect above in it fails each check, at both widths."""
    _need("the book is not built: run `make book`", (HTML / "_static").exists())
    _need("Chromium is not installed (Debian package `chromium`)", _chromium() is not None)
    good = _toc_pages()[1]
    text = good.read_text(encoding="utf-8")
    assert "<article" in text
    bad = re.sub(r"(<article[^>]*>)", lambda m: m.group(1) + BROKEN, text, count=1)
    page = good.with_name("_render_check_broken.html")
    try:
        page.write_text(bad, encoding="utf-8")
        records = run_harness([page])
        assert [r["width"] for r in records] == list(WIDTHS)
        for r in records:
            assert r["errors"] >= 1
            assert r["undefined_commands"] == ["\\lambdar"]
            assert [i["src"] for i in r["images"] if not i["loaded"]] == ["nowhere.png"]
            wide = [d for d in r["overflowing"] if "x_{0} + x_{1}" in d["tex"]]
            assert len(wide) == 1
            if r["width"] >= WIDE:
                assert any("x_{0} + x_{1}" in d for d in cut_displays(r))
            else:   # book/_static/refimpl.js gives it a scroll bar and a shadow
                assert wide[0]["mode"] == "scroll" and cut_displays(r) == []
            # a code line too long for the column: cut at 1400 px, wrapped on a phone
            assert any("long long" in c["line"] for c in r["clipped"]) == (r["width"] >= WIDE)
            found = " ".join(log_text(r))
            assert "warning" in found and "build path" in found
            assert any("2.7e+16" in p for p in untypeset_prose(r))
            assert any("'$'" in p for p in untypeset_prose(r))
            assert r["bare_tables"] == ["12"]
            assert r["split_outputs"] == 1
            assert r["claims_overflowing"] == 1
            assert any("bitmap" in f for f in blurry_figures(r))
            assert any("twice" in e for e in r["console_errors"]), r["console_errors"]
        assert _static_remote_refs(page) == ["<script src=https://cdn.example.org/x.js>"]
    finally:
        page.unlink()


def test_a_display_without_a_cue_is_cut_at_both_widths():
    """What the harness cannot build on a real page: a too-wide display that no script marked."""
    for width in WIDTHS:
        record = {"width": width, "overflowing": [
            {"tex": "x", "need": 500.0, "room": 300.0, "mode": "", "past_article": False}]}
        assert cut_displays(record) == ["x (needs 500 px, has 300)"]
    scrolled = {"width": NARROW, "overflowing": [
        {"tex": "x", "need": 500.0, "room": 300.0, "mode": "scroll", "past_article": False}]}
    assert cut_displays(scrolled) == []
    assert cut_displays(dict(scrolled, width=WIDE)) != []


def _report() -> None:
    """Print the measurements page by page (``python tests/test_render.py``): displays wider than
    their column (shrunk to fit, scrolled with a cue, cut), code or output lines cut, log text,
    JavaScript errors, untypeset prose, bare tables, split print-outs, claim lists that overflow,
    figures, and figures that are blurry or whose text is too small."""
    records = run_harness(_toc_pages())
    columns = ["displays", "too wide", "shrunk", "scroll", "cut", "clipped", "log", "js",
               "untypeset", "tables", "split", "claims", "figures", "blurry"]
    print(f"{'page':<34} {'width':>5} " + " ".join(f"{c:>9}" for c in columns))
    totals: dict[int, list[int]] = {}
    for r in records:
        name = Path(r["url"]).name
        modes = [d["mode"] for d in r["overflowing"]]
        row = [r["displays"], len(modes), modes.count("scaled"), modes.count("scroll"),
               len(cut_displays(r)), len(r["clipped"]), len(log_text(r)), len(r["console_errors"]),
               len(untypeset_prose(r)), len(r["bare_tables"]), r["split_outputs"],
               r["claims_overflowing"], len(r["figures"]), len(blurry_figures(r))]
        totals[r["width"]] = [a + b for a, b in zip(totals.get(r["width"], [0] * len(row)), row)]
        print(f"{name:<34} {r['width']:>5} " + " ".join(f"{v:>9}" for v in row))
    for width, row in totals.items():
        print(f"{'total':<34} {width:>5} " + " ".join(f"{v:>9}" for v in row))


if __name__ == "__main__":
    _report()
