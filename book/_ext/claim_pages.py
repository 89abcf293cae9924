"""The claims on the pages of the book: the "Verified by" lists and the list of theorems.

The Sphinx half of ``book/_ext/claims.py`` (which reads the claims and the tests' markers):

* after each claim's proof (or after the claim, if no proof follows it), a folded list of the
  tests that verify it, each named in words and by its pytest node id;
* ``{claim-index}``: the list of every claim, by chapter in the order of the table of contents,
  with its number and title, linked to it;
* the book's style sheet and script (``book/_ext/presentation.py``).
"""

from __future__ import annotations

import hashlib
import re

from docutils import nodes

from claims import BOOK, PREFIXES, ROOT, book_claims, claim_map


def _fingerprint(mapping) -> str:
    text = repr(sorted((k, [r.nodeid for r in v]) for k, v in mapping.items()))
    return hashlib.sha256(text.encode()).hexdigest()


def _outdated(app, env, added, changed, removed):
    """Re-read every page with claims when the tests that verify them changed, and the list of
    theorems whenever a page changed."""
    index = {env.path2doc(str(p)) for p in BOOK.glob("*.md")
             if "```{claim-index}" in p.read_text(encoding="utf-8")} - {None}
    outdated = set(index) if (added or changed or removed) else set()
    fingerprint = _fingerprint(claim_map())
    if getattr(env, "refimpl_claims_fingerprint", None) != fingerprint:
        env.refimpl_claims_fingerprint = fingerprint
        outdated |= {env.path2doc(str(ROOT / c.path)) for c in book_claims()} - {None}
    return sorted(outdated)


def _readable(name: str) -> str:
    """A test's name as words: ``TestX::test_first_step_is_adams`` -> "first step is adams"."""
    last = name.split("::")[-1]
    return re.sub(r"^test_?", "", last).replace("_", " ").strip() or last


class claim_tests(nodes.General, nodes.Element):
    """The folded "Verified by" list of one claim (``<details>`` in HTML)."""


def _visit_claim_tests_html(self, node):
    self.body.append(self.starttag(node, "details", CLASS="claim-tests"))
    self.body.append(f"<summary>{self.encode(node['summary'])}</summary>")


def _depart_claim_tests_html(self, node):
    self.body.append("</details>\n")


def _visit_claim_tests_latex(self, node):
    self.body.append("\n\\par\\noindent\\textbf{" + self.encode(node["summary"]) + "}\n")


def _visit_claim_tests_other(self, node):
    pass


def _depart_claim_tests_other(self, node):
    pass


def _append_tests(app, doctree):
    """After each claim's proof (or after the claim, if no proof follows it), the tests that
    verify it, folded; and a record of the claim for the list of theorems."""
    from sphinx.util import logging

    logger = logging.getLogger(__name__)
    mapping = claim_map()
    env = app.env
    found = getattr(env, "refimpl_claims", {})
    env.refimpl_claims = found
    for node in list(doctree.findall(nodes.Element)):
        kind = node.get("realtype")
        label = node.get("label")
        if kind not in PREFIXES or not label or not node.get("countertype"):
            continue
        titles = [c for c in node.children if isinstance(c, nodes.title)]
        found[label] = {"docname": env.docname, "kind": kind,
                        "title": [c.deepcopy() for c in titles[0].children] if titles else [],
                        "countertype": node["countertype"], "order": len(found)}
        refs = mapping.get(label, [])
        if not refs:
            logger.warning(f"claim {label!r} is verified by no test "
                           f"(mark one with @pytest.mark.claim({label!r}))", location=node)
            continue
        box = claim_tests(summary=f"Verified by {len(refs)} test{'s' * (len(refs) > 1)}")
        items = nodes.bullet_list()
        for ref in refs:
            items += nodes.list_item("", nodes.paragraph(
                "", "", nodes.Text(_readable(ref.name or ref.path) + ": "),
                nodes.literal("", ref.nodeid)))
        box += items
        parent = node.parent
        at = parent.index(node) + 1
        following = parent.children[at] if at < len(parent.children) else None
        if following is not None and type(following).__name__ == "proof_node":
            at += 1
        parent.insert(at, box)


# --------------------------------------------------------------------------------------------
# The list of theorems, by chapter: ```{claim-index}``` on a page of its own
# --------------------------------------------------------------------------------------------


class claim_index(nodes.General, nodes.Element):
    """Replaced, once every page is read, by the list of claims grouped by chapter."""


def _index_directive():
    from sphinx.util.docutils import SphinxDirective

    class ClaimIndex(SphinxDirective):
        has_content = False

        def run(self):
            return [claim_index()]

    return ClaimIndex


def _toc_order(env) -> list[str]:
    order: list[str] = []

    def walk(doc):
        if doc in order:
            return
        order.append(doc)
        for child in env.toctree_includes.get(doc, []):
            walk(child)

    walk(env.config.root_doc)
    return order


def _fill_index(app, doctree, fromdocname):
    for placeholder in list(doctree.findall(claim_index)):
        env = app.env
        claims = getattr(env, "refimpl_claims", {})
        numbers = env.toc_fignumbers
        content = []
        for doc in _toc_order(env):
            mine = sorted((c for c in claims.items() if c[1]["docname"] == doc),
                          key=lambda item: item[1]["order"])
            if not mine:
                continue
            title = env.titles[doc].astext()
            heading = nodes.paragraph("", "", nodes.strong("", title))
            items = nodes.bullet_list(classes=["claim-index"])
            for label, c in mine:
                number = ".".join(map(str, numbers.get(doc, {}).get(c["countertype"], {})
                                      .get(label, ())))
                name = f"{c['kind'].title()} {number}".strip()
                ref = nodes.reference("", "", internal=True,
                                      refuri=app.builder.get_relative_uri(fromdocname, doc)
                                      + "#" + label)
                ref += nodes.strong("", name)
                para = nodes.paragraph("", "", ref)
                para += [t.deepcopy() for t in c["title"]]   # " (Title)", math included
                items += nodes.list_item("", para)
            content += [heading, items]
        placeholder.replace_self(content)
        # The titles carry mathematics, which the page did not have when it was read: tell the
        # math domain, so that the page loads MathJax.
        app.env.get_domain("math").data["has_equations"][fromdocname] = True


def _merge(app, env, docnames, other):
    env.refimpl_claims = {**getattr(env, "refimpl_claims", {}),
                          **getattr(other, "refimpl_claims", {})}


def _purge(app, env, docname):
    claims = getattr(env, "refimpl_claims", {})
    for label in [k for k, v in claims.items() if v["docname"] == docname]:
        del claims[label]


def setup(app):
    import presentation  # book/_ext/presentation.py: the book's style sheet and script

    app.setup_extension(presentation.__name__)
    app.add_node(claim_tests,
                 html=(_visit_claim_tests_html, _depart_claim_tests_html),
                 latex=(_visit_claim_tests_latex, _depart_claim_tests_other),
                 text=(_visit_claim_tests_other, _depart_claim_tests_other),
                 man=(_visit_claim_tests_other, _depart_claim_tests_other),
                 texinfo=(_visit_claim_tests_other, _depart_claim_tests_other))
    app.add_node(claim_index)
    app.add_directive("claim-index", _index_directive())
    app.connect("env-get-outdated", _outdated)
    app.connect("env-purge-doc", _purge)
    app.connect("env-merge-info", _merge)
    app.connect("doctree-read", _append_tests)
    app.connect("doctree-resolved", _fill_index)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
