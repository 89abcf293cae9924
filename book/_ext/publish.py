"""Publishing the book: what the website and the PDF need beyond the chapters.

Website (HTML builder):

* each chapter's MyST source converted to a notebook (jupytext) next to the page sources, and
  offered in the page's download menu with a link to the whole book as a PDF (``make pdf`` puts
  ``refimpl.pdf`` at the root of the site);
* the repository button, when ``REFIMPL_REPOSITORY_URL`` names the repository (the GitHub Pages
  workflow sets it from the GitHub context; a local build has no repository link);
* readable search snippets: the search page gets the text of every page with its mathematics
  written in Unicode (``m₀ = v₀ = 0``, not ``\\(m_0 = v_0 = 0\\)``), from a script file, so that
  snippets work from a static server and from ``file://`` alike;
* the ``citation`` directive, which renders ``CITATION.cff`` as text and as BibTeX.

The PDF's own adjustments are in book/_ext/latexpdf.py.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SNIPPETS_JS = Path(__file__).resolve().with_name("refimpl-search-snippets.js")
PDF_NAME = "refimpl.pdf"
SEARCH_PAGES = "refimpl-search-pages.js"

#: The environment variable that carries the repository's address into the build.
REPOSITORY_ENV = "REFIMPL_REPOSITORY_URL"


def repository_url() -> str:
    """The repository's address, or ``""`` where the build does not know it."""
    return os.environ.get(REPOSITORY_ENV, "").strip().rstrip("/")


# --------------------------------------------------------------------------------------------
# Mathematics as readable text (search snippets)
# --------------------------------------------------------------------------------------------

_GREEK = {
    name: chr(code) for name, code in [
        ("alpha", 0x3B1), ("beta", 0x3B2), ("gamma", 0x3B3), ("delta", 0x3B4),
        ("epsilon", 0x3B5), ("varepsilon", 0x3B5), ("zeta", 0x3B6), ("eta", 0x3B7),
        ("theta", 0x3B8), ("vartheta", 0x3D1), ("iota", 0x3B9), ("kappa", 0x3BA),
        ("lambda", 0x3BB), ("mu", 0x3BC), ("nu", 0x3BD), ("xi", 0x3BE), ("pi", 0x3C0),
        ("rho", 0x3C1), ("varrho", 0x3F1), ("sigma", 0x3C3), ("tau", 0x3C4),
        ("upsilon", 0x3C5), ("phi", 0x3C6), ("varphi", 0x3C6), ("chi", 0x3C7),
        ("psi", 0x3C8), ("omega", 0x3C9), ("Gamma", 0x393), ("Delta", 0x394),
        ("Theta", 0x398), ("Lambda", 0x39B), ("Xi", 0x39E), ("Pi", 0x3A0), ("Sigma", 0x3A3),
        ("Phi", 0x3A6), ("Psi", 0x3A8), ("Omega", 0x3A9),
    ]
}
_SYMBOLS = {
    "le": "≤", "leq": "≤", "ge": "≥", "geq": "≥", "ne": "≠", "neq": "≠", "approx": "≈",
    "sim": "∼", "simeq": "≃", "equiv": "≡", "propto": "∝", "cdot": "·", "times": "×",
    "pm": "±", "mp": "∓", "infty": "∞", "to": "→", "rightarrow": "→", "leftarrow": "←",
    "Rightarrow": "⇒", "Leftrightarrow": "⇔", "iff": "⇔", "implies": "⇒", "mapsto": "↦",
    "in": "∈", "notin": "∉", "subset": "⊂", "subseteq": "⊆", "cup": "∪", "cap": "∩",
    "setminus": "∖", "emptyset": "∅", "forall": "∀", "exists": "∃", "neg": "¬",
    "land": "∧", "lor": "∨", "wedge": "∧", "vee": "∨", "sum": "∑", "prod": "∏",
    "int": "∫", "nabla": "∇", "partial": "∂", "odot": "⊙", "otimes": "⊗", "oplus": "⊕",
    "circ": "∘", "ell": "ℓ", "lVert": "‖", "rVert": "‖", "Vert": "‖", "|": "‖",
    "lvert": "|", "rvert": "|", "vert": "|", "mid": "|", "langle": "⟨", "rangle": "⟩",
    "lceil": "⌈", "rceil": "⌉", "lfloor": "⌊", "rfloor": "⌋", "dots": "…", "ldots": "…",
    "cdots": "⋯", "vdots": "⋮", "ddots": "⋱", "top": "ᵀ", "intercal": "ᵀ", "perp": "⊥",
    "prime": "′", "star": "⋆", "ast": "∗", "bullet": "•", "sqrt": "√", "angle": "∠",
    "log": "log", "ln": "ln", "exp": "exp", "sin": "sin", "cos": "cos", "tan": "tan",
    "arctan": "arctan", "max": "max", "min": "min", "sup": "sup", "inf": "inf",
    "lim": "lim", "liminf": "lim inf", "limsup": "lim sup", "arg": "arg", "det": "det",
    "sign": "sign", "Pr": "Pr", "deg": "deg", "dim": "dim", "ker": "ker",
    "{": "{", "}": "}", "%": "%", "$": "$", "#": "#", "&": "&", "_": "_",
    ",": " ", ";": " ", ":": " ", "!": "", " ": " ", "quad": " ", "qquad": " ",
}
_BLACKBOARD = {"R": "ℝ", "N": "ℕ", "Z": "ℤ", "Q": "ℚ", "C": "ℂ", "E": "𝔼", "P": "ℙ"}
_ACCENTS = {"hat": "\u0302", "widehat": "\u0302", "tilde": "\u0303", "widetilde": "\u0303",
            "bar": "\u0304", "overline": "\u0305", "dot": "\u0307", "ddot": "\u0308",
            "vec": "\u20d7", "check": "\u030c"}
_SUB = dict(zip("0123456789+-=()aehijklmnoprstuvx", "₀₁₂₃₄₅₆₇₈₉₊₋₌₍₎ₐₑₕᵢⱼₖₗₘₙₒₚᵣₛₜᵤᵥₓ"))
_SUP = dict(zip("0123456789+-=()abcdefghijklmnoprstuvwxyzTi",
                "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁼⁽⁾ᵃᵇᶜᵈᵉᶠᵍʰⁱʲᵏˡᵐⁿᵒᵖʳˢᵗᵘᵛʷˣʸᶻᵀⁱ"))
# Commands whose argument is shown as it is (fonts, text) or dropped with it (spacing, labels).
_KEEP_ARGUMENT = {"text", "textrm", "textit", "textbf", "texttt", "mathrm", "mathit", "mathbf",
                  "mathsf", "mathtt", "boldsymbol", "bm", "operatorname", "mbox", "mathcal",
                  "mathscr", "mathfrak", "emph", "displaystyle", "textstyle", "underbrace",
                  "overbrace", "boxed", "tag"}
_DROP_WITH_ARGUMENT = {"label", "hspace", "vspace", "phantom", "hphantom", "vphantom", "begin",
                       "end", "nonumber", "notag"}
_DROP = {"left", "right", "big", "Big", "bigg", "Bigg", "bigl", "bigr", "Bigl", "Bigr",
         "biggl", "biggr", "limits", "nolimits", "displaystyle", "textstyle", "scriptstyle",
         "middle", "qquad", "quad", "nonumber", "notag", "allowbreak", "newline"}


def _group(tex: str, i: int) -> tuple[str, int]:
    """The argument starting at ``tex[i]`` (a braced group or one token) and the index after it."""
    while i < len(tex) and tex[i] == " ":
        i += 1
    if i >= len(tex):
        return "", i
    if tex[i] == "{":
        depth, j = 0, i
        while j < len(tex):
            depth += {"{": 1, "}": -1}.get(tex[j], 0)
            if depth == 0:
                return tex[i + 1 : j], j + 1
            j += 1
        return tex[i + 1 :], len(tex)
    if tex[i] == "\\":
        m = re.match(r"\\([A-Za-z]+|.)", tex[i:])
        return m[0], i + len(m[0])
    return tex[i], i + 1


def _script(text: str, table: dict[str, str], mark: str) -> str:
    """``text`` as Unicode sub- or superscripts where every character has one."""
    plain = text.replace(" ", "")
    if plain and all(c in table for c in plain):
        return "".join(table[c] for c in plain)
    return f"{mark}{text}" if len(plain) == 1 else f"{mark}({text})"


def _atom(text: str) -> str:
    """``text`` as it can stand after √ or around /: one symbol with its marks, or in parentheses."""
    symbol = r"[\w.′ᵀ⁰¹²³⁴-⁹⁺⁻ᵃ-ᶻ₀-₉₊₋ₐ-ₜ\u0300-\u036f\u20d7]+"
    return text if re.fullmatch(symbol, text) else f"({text})"


def tex_to_text(tex: str) -> str:
    """A TeX formula as readable Unicode text, for search snippets: ``\\hat m_t`` → ``m̂ₜ``.

    Not a TeX renderer: it spells out what a reader needs to recognise the formula (Greek
    letters, relations, sub- and superscripts, fractions as ``a/b``) and never leaves a backslash
    or a brace behind.
    """
    out: list[str] = []
    i = 0
    while i < len(tex):
        c = tex[i]
        if c == "\\":
            m = re.match(r"\\([A-Za-z]+|.)", tex[i:])
            name, i = m[1], i + len(m[0])
            if name == "\\":
                out.append("; ")
            elif name in _GREEK:
                out.append(_GREEK[name])
            elif name in ("frac", "dfrac", "tfrac"):
                num, i = _group(tex, i)
                den, i = _group(tex, i)
                out.append(f"{_atom(tex_to_text(num))}/{_atom(tex_to_text(den))}")
            elif name == "sqrt":
                arg, i = _group(tex, i)
                out.append(f"√{_atom(tex_to_text(arg))}")
            elif name in _ACCENTS:
                arg, i = _group(tex, i)
                arg = tex_to_text(arg)
                out.append(arg + _ACCENTS[name] if len(arg) == 1 else arg)
            elif name in ("mathbb", "mathbbm"):
                arg, i = _group(tex, i)
                out.append("".join(_BLACKBOARD.get(ch, ch) for ch in tex_to_text(arg)))
            elif name in _KEEP_ARGUMENT:
                arg, i = _group(tex, i)
                out.append(tex_to_text(arg))
            elif name in _DROP_WITH_ARGUMENT:
                _, i = _group(tex, i)
            elif name in _DROP:
                pass
            elif name in _SYMBOLS:
                out.append(_SYMBOLS[name])
            else:
                out.append(name)  # an unknown command: its name, without the backslash
        elif c in "_^":
            arg, i = _group(tex, i + 1)
            out.append(_script(tex_to_text(arg), _SUB if c == "_" else _SUP, c))
        elif c in "{}":
            i += 1
        elif c == "&":
            i += 1
        elif c == "~":
            out.append(" ")
            i += 1
        elif c == "'":
            out.append("′")
            i += 1
        else:
            out.append(c)
            i += 1
    return re.sub(r"\s+", " ", "".join(out)).strip()


def _strip_delimiters(tex: str) -> str:
    tex = tex.strip()
    for left, right in (("\\(", "\\)"), ("\\[", "\\]"), ("$$", "$$"), ("$", "$")):
        if tex.startswith(left) and tex.endswith(right):
            return tex[len(left) : -len(right)]
    return tex


class _MainText(HTMLParser):
    """The main content of a built page, reduced to its text and the elements that carry an id.

    Sphinx's search page shows, under each hit, the text around the hit in the page's main
    content (``[role=main]``, or the element with the hit's anchor as id). This keeps what that
    lookup needs, with each formula replaced by :func:`tex_to_text`. Of the theme's main
    element it keeps the article only (``article.bd-article``), not the page's buttons, its
    table of contents or the links to the next page.
    """

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
            "source", "track", "wbr"}

    def __init__(self, root: str = "article"):
        super().__init__(convert_charrefs=True)
        self.root = root
        self.parts: list[str] = []
        self.stack: list[tuple[str, str]] = []  # (tag, what closes it in the output)
        self.in_main = 0
        self.skip = 0
        self.math: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag in self.VOID:
            return
        attrs = dict(attrs)
        classes = (attrs.get("class") or "").split()
        close = ""
        if not self.in_main:
            if (attrs.get("role") == "main" if self.root == "main"
                    else tag == "article" and "bd-article" in classes):
                self.in_main = 1
                self.parts.append('<div role="main">')
                close = "root"
        elif self.skip or tag in ("script", "style") or "headerlink" in classes:
            self.skip += 1
            close = "skip"
        elif self.math is None and "math" in classes:
            self.math = []
            close = "math"
        elif attrs.get("id") and self.math is None:
            self.parts.append(f'<div id="{html.escape(attrs["id"])}">')
            close = "</div>"
        self.stack.append((tag, close))

    def handle_endtag(self, tag):
        if tag in self.VOID or not self.stack:
            return
        while self.stack:
            open_tag, close = self.stack.pop()
            if close == "skip":
                self.skip -= 1
            elif close == "math":
                self.parts.append(html.escape(tex_to_text(_strip_delimiters(
                    "".join(self.math)))))
                self.math = None
            elif close == "root":
                self.parts.append("</div>")
                self.in_main = 0
            elif close:
                self.parts.append(close)
            if open_tag == tag:
                break

    def handle_data(self, data):
        if not self.in_main or self.skip:
            return
        if self.math is not None:
            self.math.append(data)
        else:
            self.parts.append(html.escape(data))

    def text(self) -> str:
        return re.sub(r"\s+", " ", "".join(self.parts))


def page_search_text(page_html: str) -> str:
    parser = _MainText("article" if 'class="bd-article"' in page_html else "main")
    parser.feed(page_html)
    parser.close()
    return parser.text()


def _write_search_pages(app, exception):
    """After an HTML build: the text of every page, for the search page's snippets."""
    if exception or app.builder.format != "html":
        return
    outdir = Path(app.outdir)
    pages = {}
    for docname in sorted(app.env.found_docs):
        page = outdir / f"{docname}.html"
        if page.exists():
            pages[f"{docname}.html"] = page_search_text(page.read_text(encoding="utf-8"))
    static = outdir / "_static"
    (static / SEARCH_PAGES).write_text(
        "window.REFIMPL_SEARCH_PAGES = " + json.dumps(pages, ensure_ascii=False) + ";\n",
        encoding="utf-8")
    shutil.copyfile(SNIPPETS_JS, static / SNIPPETS_JS.name)


def _search_page_scripts(app, pagename, templatename, context, doctree):
    if pagename == "search":
        app.add_js_file(SEARCH_PAGES, priority=200)
        app.add_js_file(SNIPPETS_JS.name, priority=201)


# --------------------------------------------------------------------------------------------
# Notebooks, the PDF and the repository in the page header
# --------------------------------------------------------------------------------------------


def _is_notebook(app, docname: str) -> bool:
    source = Path(app.env.doc2path(docname))
    if source.suffix != ".md":
        return False
    head = source.read_text(encoding="utf-8")[:2000]
    return head.startswith("---") and "kernelspec:" in head


def write_notebook(source: Path, target: Path) -> None:
    """The chapter ``source`` (a MyST notebook) as an ``.ipynb`` file, with no outputs."""
    import jupytext

    notebook = jupytext.read(source)
    notebook.metadata.pop("jupytext", None)
    target.parent.mkdir(parents=True, exist_ok=True)
    jupytext.write(notebook, target, fmt="ipynb")


def _page_downloads(app, pagename, templatename, context, doctree):
    """Runs before the theme builds its download menu: offer the chapter as a notebook."""
    if app.builder.format == "html" and pagename in app.env.found_docs and _is_notebook(
            app, pagename):
        context["ipynb_source"] = f"{pagename}.ipynb"


def _write_notebooks(app, exception):
    """After an HTML build: every chapter as a notebook, where its download menu points."""
    if exception or app.builder.format != "html":
        return
    for docname in sorted(app.env.found_docs):
        if _is_notebook(app, docname):
            write_notebook(Path(app.env.doc2path(docname)),
                           Path(app.outdir) / "_sources" / f"{docname}.ipynb")


def _pdf_in_menu(app, pagename, templatename, context, doctree):
    """Runs after the theme built its download menu: add the whole book as a PDF."""
    for button in context.get("header_buttons", []):
        if button.get("label") == "download-buttons":
            button["buttons"].append({
                "type": "link",
                "url": context["pathto"](PDF_NAME, 1),
                "text": "book (PDF)",
                "tooltip": "Download the whole book as one PDF",
                "icon": "fas fa-book",
                "label": "download-book-pdf-button",
            })


def _citation_outdated(app, env, added, changed, removed):
    """Re-read the pages that show the repository's address when the address changed."""
    url = repository_url()
    if getattr(env, "refimpl_repository_url", None) == url:
        return []
    env.refimpl_repository_url = url
    return sorted(getattr(env, "refimpl_citation_docs", set()) & env.found_docs)


def _repository(app, config):
    url = repository_url()
    if url:
        options = dict(config.html_theme_options or {})
        options.update(repository_url=url, use_repository_button=True)
        config.html_theme_options = options


# --------------------------------------------------------------------------------------------
# CITATION.cff on the "How to cite" page
# --------------------------------------------------------------------------------------------


def citation() -> dict:
    import yaml

    return yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))


def citation_bibtex(cff: dict, url: str) -> str:
    """The BibTeX entry for the software described by ``cff``; ``url`` only where known."""
    authors = " and ".join(
        a.get("name") or f"{a.get('family-names', '')}, {a.get('given-names', '')}"
        for a in cff["authors"])
    fields = [("title", cff["title"]), ("author", authors), ("version", cff.get("version"))]
    if url:
        fields.append(("url", url))
    body = ",\n".join(f"  {key:<7} = {{{value}}}" for key, value in fields if value)
    return f"@software{{refimpl,\n{body}\n}}"


def _citation_directive():
    from docutils import nodes
    from sphinx.util.docutils import SphinxDirective

    class Citation(SphinxDirective):
        """``CITATION.cff`` as a sentence, the repository's address where known, and BibTeX."""

        def run(self):
            self.env.note_dependency(str(ROOT / "CITATION.cff"))
            if not hasattr(self.env, "refimpl_citation_docs"):
                self.env.refimpl_citation_docs = set()
            self.env.refimpl_citation_docs.add(self.env.docname)
            cff, url = citation(), repository_url()
            authors = ", ".join(a.get("name") or a.get("family-names") for a in cff["authors"])
            sentence = f"{authors}. {cff['title']}, version {cff['version']}."
            where = nodes.paragraph()
            if url:
                where += nodes.Text("Source code: ")
                where += nodes.reference(url, url, refuri=url)
                where += nodes.Text(".")
            else:
                where += nodes.Text(
                    "This copy of the book was built from a local checkout, which does not "
                    "know the repository's public address; the published site shows it here.")
            bibtex = citation_bibtex(cff, url)
            block = nodes.literal_block(bibtex, bibtex, language="bibtex")
            return [nodes.paragraph(sentence, sentence), where, block]

    return Citation


def setup(app):
    app.connect("config-inited", _repository, priority=900)
    app.add_directive("citation", _citation_directive())
    app.connect("env-get-outdated", _citation_outdated)
    app.connect("html-page-context", _page_downloads, priority=450)
    app.connect("html-page-context", _pdf_in_menu, priority=600)
    app.connect("html-page-context", _search_page_scripts)
    app.connect("build-finished", _write_search_pages)
    app.connect("build-finished", _write_notebooks)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
