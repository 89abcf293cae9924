"""The PDF (``make pdf``): what Jupyter Book's LaTeX output needs to make a book of this one.

* the document class ``book/_latex/refimplBook.cls`` instead of sphinx-jupyterbook-latex's
  (which loads packages only a 500 MB TeX Live font collection provides);
* the website's numbers: chapters (the preface and the reference pages unnumbered, as on the
  website, and the parts, whose captions carry their own numbers), sections, equations,
  theorems and figures;
* a part of one chapter with the part's own title (the preface) set as that chapter alone;
* each theorem's anchor in the page it comes from (sphinx-proof looks for the page by its title,
  which fails for a title with an apostrophe: Sphinx curls the quote in one place, not the other);
* proofs set as proofs (no box, closed by a square), not as boxes with an empty title;
* underscores in the text-mode parts of formulas (``\\texttt{bn_softmax}``) escaped;
* no empty "References" sections or headings (the citations are footnotes in the PDF);
* long tables that break across pages, with columns sized by their content;
* admonitions that hold code set without a box, since boxed code cannot break across pages;
* the outputs of folded cells (``hide-cell``, ``hide-output``) printed, figures included;
* tables that a cell displays as HTML typeset as tables (LaTeX cannot show HTML; myst-nb would
  print the object's repr, ``<IPython.core.display.HTML object>``).

The LaTeX preamble (fonts, \\setminus, multi-column displays, breakable test names in inline
code) is in ``_config.yml`` under ``latex_elements``.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

LATEX = Path(__file__).resolve().parents[1] / "_latex"


def _latex_class(app, config):
    """Use book/_latex/refimplBook.cls instead of sphinx-jupyterbook-latex's class.

    That extension sets ``latex_theme`` when the configuration is read; this runs after it.
    """
    config.latex_theme = "refimplBook"
    files = list(config.latex_additional_files or [])
    cls = str(LATEX / "refimplBook.cls")
    if cls not in files:
        config.latex_additional_files = files + [cls]
    app.env_numfig_secnum_depth = config.numfig_secnum_depth


def _keep_numbering(app):
    """Keep the website's figure and theorem numbering in the PDF.

    sphinx-jupyterbook-latex raises ``numfig_secnum_depth`` for a book with parts; the numbers
    would then differ from the website's, and the next HTML build would re-read every chapter.
    """
    if app.builder.format == "latex":
        app.config.numfig_secnum_depth = app.env_numfig_secnum_depth


_TEXT_COMMAND = re.compile(r"(\\(?:text|texttt|textrm|textit|textbf|textsf|mbox)\s*\{)([^{}]*)(\})")


def latex_math(tex: str) -> str:
    """``tex`` with the underscores inside text-mode commands escaped (``\\texttt{a_b}``).

    MathJax reads them as characters; LaTeX reads them as subscripts, an error in text mode.
    """
    return _TEXT_COMMAND.sub(
        lambda m: m[1] + re.sub(r"(?<!\\)_", r"\\_", m[2]) + m[3], tex)


def _latex_transforms():
    from docutils import nodes
    from sphinx.transforms.post_transforms import SphinxPostTransform

    class LatexMath(SphinxPostTransform):
        default_priority = 200
        formats = ("latex",)

        def run(self):
            for node in list(self.document.findall(nodes.math)) + list(
                    self.document.findall(nodes.math_block)):
                text = node.astext()
                fixed = latex_math(text)
                if fixed != text:
                    node.children = [nodes.Text(fixed)]

    class DropEmptySections(SphinxPostTransform):
        """A section left empty in the PDF: a chapter's "References", whose citations LaTeX
        prints as footnotes where they are cited. Runs after Sphinx moved the footnotes there."""

        default_priority = 900
        formats = ("latex",)

        def run(self):
            def renders_nothing(node):
                if isinstance(node, (nodes.target, nodes.footnote)):
                    return True
                return (isinstance(node, nodes.container) and not node.astext().strip()
                        and all(renders_nothing(c) for c in node.children))

            for section in list(self.document.findall(nodes.section)):
                body = [c for c in section.children if not isinstance(c, nodes.title)]
                if all(renders_nothing(c) for c in body):
                    section.parent.remove(section)
            # A heading that is not a section (```{rubric} References```) over nothing.
            for rubric in list(self.document.findall(nodes.rubric)):
                siblings = rubric.parent.children[rubric.parent.index(rubric) + 1:]
                below = []
                for sibling in siblings:
                    if isinstance(sibling, (nodes.rubric, nodes.section, nodes.transition)):
                        break
                    below.append(sibling)
                if all(renders_nothing(c) for c in below):
                    rubric.parent.remove(rubric)

    class LongTables(SphinxPostTransform):
        """A table of more than a dozen rows may break across pages in the PDF (longtable);
        a tabulary that does not fit on its page runs over the page's foot. A longtable does
        not size its columns by their content, so this does: each column gets its longest word,
        and the rest of the line is shared in proportion to the columns' longest cells."""

        default_priority = 200
        formats = ("latex",)
        LINE = 90  # characters of the body font in one line of the PDF, about (6 of a column's
        # share go to its padding)

        def run(self):
            for table in self.document.findall(nodes.table):
                rows = list(table.findall(nodes.row))
                if len(rows) <= 12 or "longtable" in table["classes"]:
                    continue
                table["classes"].append("longtable")
                for tgroup in table.findall(nodes.tgroup):
                    colspecs = list(tgroup.findall(nodes.colspec))
                    word, cell = [3] * len(colspecs), [3] * len(colspecs)
                    for row in tgroup.findall(nodes.row):
                        for j, entry in enumerate(row.findall(nodes.entry)):
                            if j < len(colspecs):
                                text = entry.astext()
                                word[j] = max(word[j], *(min(len(w), 20) + 6
                                                         for w in text.split() or [""]))
                                cell[j] = max(cell[j], len(text))
                    spare = max(self.LINE - sum(word), 0)
                    wants = [max(c - w, 0) for c, w in zip(cell, word)]
                    for colspec, w, want in zip(colspecs, word, wants):
                        colspec["colwidth"] = w + round(spare * want / max(sum(wants), 1))
                if "colwidths-given" not in table["classes"]:
                    table["classes"].append("colwidths-given")

    class UnboxCode(SphinxPostTransform):
        """An admonition that holds code is set without a box in the PDF. LaTeX cannot break
        code inside a boxed admonition across pages: near the foot of a page the box runs over
        it. Its title stays, in bold, above its content."""

        default_priority = 200
        formats = ("latex",)

        def run(self):
            for box in list(self.document.findall(nodes.admonition)):
                if not any(True for _ in box.findall(nodes.literal_block)):
                    continue
                title = [c for c in box.children if isinstance(c, nodes.title)]
                plain = nodes.container(classes=["refimpl-unboxed"])
                if title:
                    plain += nodes.paragraph("", "", nodes.strong("", title[0].astext()))
                plain.extend(c for c in box.children if not isinstance(c, nodes.title))
                box.replace_self(plain)

    class HtmlTables(SphinxPostTransform):
        """Runs before myst-nb picks a cell output's format for LaTeX (priority 4): an output
        that is only HTML (no image, no LaTeX) and holds a table becomes that table."""

        default_priority = 3
        formats = ("latex",)
        TYPESET = {"application/pdf", "image/png", "image/jpeg", "text/latex", "text/markdown"}

        def run(self):
            for bundle in list(self.document.findall(nodes.container)):
                if bundle.get("nb_element") != "mime_bundle":
                    continue
                kinds = {child.get("mime_type"): child for child in bundle.children}
                if "text/html" not in kinds or kinds.keys() & self.TYPESET:
                    continue
                source = "".join(raw.astext() for raw in kinds["text/html"].findall(nodes.raw))
                table = html_table_node(source) if "<table" in source else None
                if table is not None:
                    bundle.replace_self(table)

    class BookNumbering(SphinxPostTransform):
        """The website's numbering in the PDF, page by page of the one LaTeX document.

        The website numbers the chapters of the numbered parts from 1 and leaves the preface
        and the reference pages unnumbered; LaTeX would number every chapter, the preface
        first, and every part (``Part II`` over a part called "Part I: Adam"). Before each page
        this sets LaTeX's section numbering on or off as the website has it, and before each
        part turns it off (the captions carry their own numbers). A part that holds one chapter
        of its own title (the preface) loses its part page: the chapter stands alone. Runs after
        sphinx-jupyterbook-latex made the parts of the toctrees' captions (priority 700).
        """

        default_priority = 750
        formats = ("latex",)

        def run(self):
            from sphinx import addnodes

            env = self.env
            for page in list(self.document.findall(addnodes.start_of_file)):
                docname = page.get("docname")
                if docname in env.all_docs:
                    numbered = bool(env.toc_secnumbers.get(docname))
                    command = r"\refimplNumbered" if numbered else r"\refimplUnnumbered"
                    page.insert(0, nodes.raw("", command + "\n", format="latex"))
                    continue
                page.insert(0, nodes.raw("", "\\refimplUnnumberedPart\n", format="latex"))
                part = next((c for c in page.children if isinstance(c, nodes.section)), None)
                if part is None or not isinstance(part[0], nodes.title):
                    continue
                chapters = [p["docname"] for p in part.findall(addnodes.start_of_file)
                            if p["docname"] in env.all_docs]
                chapters = [d for d in chapters if not any(
                    d in env.toctree_includes.get(other, []) for other in chapters)]
                if len(chapters) == 1 and env.titles[chapters[0]].astext() == part[0].astext():
                    part.remove(part[0])

    class FoldedCells(SphinxPostTransform):
        """The output of a folded cell (``hide-cell``, ``hide-output``) is printed: a reader
        unfolds it on the website, and cannot in the PDF. sphinx-jupyterbook-latex drops such
        a cell (priority 400), figures included; this runs before it and leaves the code of a
        ``hide-cell`` cell out, as for ``hide-input``."""

        default_priority = 300
        formats = ("latex",)

        def run(self):
            for cell in self.document.findall(nodes.container):
                classes = cell["classes"]
                if "tag_hide-cell" in classes:
                    classes[classes.index("tag_hide-cell")] = "tag_hide-input"
                if "tag_hide-output" in classes:
                    classes.remove("tag_hide-output")

    return (LatexMath, DropEmptySections, LongTables, UnboxCode, HtmlTables, BookNumbering,
            FoldedCells)


_TEX_SPECIAL = re.compile(r"([\\{}%&#$_^~])")


class HtmlTable(HTMLParser):
    """The rows of an HTML table: ``[(is_header, [cell])]``, each cell a list of ``("text", s)``
    and ``("math", tex)`` pieces. ``x<sub>t</sub>`` becomes the formula ``x_{t}`` (the word
    before the subscript goes into it), so that it is typeset as mathematics."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.rows: list[tuple[bool, list[list[tuple[str, str]]]]] = []
        self.cell: list[tuple[str, str]] | None = None
        self.script: tuple[str, list[str]] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append((False, []))
        elif tag in ("td", "th") and self.rows:
            self.cell = []
            if tag == "th":
                self.rows[-1] = (True, self.rows[-1][1])
        elif tag in ("sub", "sup") and self.cell is not None:
            self.script = (tag, [])

    def handle_endtag(self, tag):
        if tag in ("sub", "sup") and self.script:
            kind, chars = self.script
            self.script = None
            base = ""
            if self.cell and self.cell[-1][0] == "text":
                text = self.cell[-1][1]
                word = re.search(r"\S+$", text)
                if word:
                    base = word[0]
                    self.cell[-1] = ("text", text[: word.start()])
            elif self.cell and self.cell[-1][0] == "math":
                base = "{" + self.cell.pop()[1] + "}"
            script = _TEX_SPECIAL.sub(r"\\\1", "".join(chars).strip())
            base = base if base.startswith("{") else _TEX_SPECIAL.sub(r"\\\1", base)
            self.cell.append(("math", f"{base}{'_' if kind == 'sub' else '^'}{{{script}}}"))
        elif tag in ("td", "th") and self.cell is not None:
            self.rows[-1][1].append(self.cell)
            self.cell = None

    def handle_data(self, data):
        if self.script:
            self.script[1].append(data)
        elif self.cell is not None:
            if self.cell and self.cell[-1][0] == "text":
                self.cell[-1] = ("text", self.cell[-1][1] + data)
            else:
                self.cell.append(("text", data))


def html_table_node(source: str):
    """A docutils table with the rows of the HTML table in ``source``; None if it has none."""
    from docutils import nodes

    parser = HtmlTable()
    parser.feed(source)
    rows = [r for r in parser.rows if r[1]]
    if not rows:
        return None
    width = max(len(cells) for _, cells in rows)
    table = nodes.table(classes=["refimpl-html-table"])
    group = nodes.tgroup(cols=width)
    table += group
    group.extend(nodes.colspec(colwidth=1) for _ in range(width))
    head, body = nodes.thead(), nodes.tbody()
    for header, cells in rows:
        row = nodes.row()
        for pieces in cells + [[]] * (width - len(cells)):
            para = nodes.paragraph()
            for kind, text in pieces:
                para += nodes.math(text, text) if kind == "math" else nodes.Text(
                    re.sub(r"\s+", " ", text))
            row += nodes.entry("", para)
        (head if header and not len(body) else body).append(row)
    if len(head):
        group += head
    group += body
    return table


def _visit_proof_latex(self, node):
    """A proof in the PDF: no box, "Proof." then the argument, closed by a square."""
    from docutils import nodes

    self.body.append("\n\\begin{refimplProof}\n")
    box = node[0] if len(node) and isinstance(node[0], nodes.admonition) else node
    if len(box) and isinstance(box[-1], nodes.paragraph):
        box[-1] += nodes.raw("", r"\nobreak\hfill$\square$", format="latex")
    else:
        box += nodes.raw("", r"\par\nobreak\noindent\hfill$\square$", format="latex")
    for child in box.children:
        child.walkabout(self)
    self.body.append("\n\\end{refimplProof}\n")
    raise nodes.SkipNode


def page_of(env, node, parent_tag=None):
    """The page (docname) that ``node`` of the PDF's one doctree comes from.

    Sphinx marks every section of an inlined page with the page's name (its own sections
    first, so the nearest marked section is the right page). This replaces sphinx-proof's
    ``find_parent``, which looks for the section whose name is the page's title: "Reddi, Kale
    and Kumar's counterexample" is named with a straight quote and titled with a curly one, so
    its theorems lost their anchors and numbers in the PDF.
    """
    while node is not None:
        if node.get("docname") in env.all_docs:
            return node["docname"]
        node = node.parent
    return None


def setup(app):
    import sphinx_proof.nodes
    from sphinx_proof.nodes import depart_proof_node, proof_node, visit_proof_node

    sphinx_proof.nodes.find_parent = page_of

    app.connect("config-inited", _latex_class, priority=900)
    app.connect("builder-inited", _keep_numbering, priority=900)
    for transform in _latex_transforms():
        app.add_post_transform(transform)
    app.add_node(proof_node, override=True, html=(visit_proof_node, depart_proof_node),
                 latex=(_visit_proof_latex, None))
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
