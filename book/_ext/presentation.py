"""How the built book looks: the book's style sheet and script, and two fixes to the HTML.

Loaded by ``book/_ext/claims.py`` (the local extension that ``_config.yml`` names), so that the
configuration needs no entry of its own.

* ``book/_static/refimpl.css``: padding and rules for the tables that cells print, code that wraps
  instead of being cut on narrow screens, the "Verified by" lists, the scroll cue of wide displays.
* ``book/_static/refimpl.js``: after MathJax has typeset a page, a display wider than the text
  column is shrunk to fit if that takes at most a quarter of its size, and otherwise scrolls
  with a visible cue (a shadow at the edge that hides the rest).
* One print-out is one box: consecutive stdout (or stderr) outputs of a cell are merged
  (myst-nb's ``nb_merge_streams``), whatever the cell's flushes.
* sphinx-thebe's inline configuration script reaches the page twice (once from Sphinx's registry
  of assets, with the file name ``""``, once from the builder, with ``None``), so every page
  declared ``const THEBE_JS_URL`` twice and logged a JavaScript error. Each inline script is now
  written once per page.
"""

from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).resolve().parents[1] / "_static"


def _static_path(app, config):
    config.html_static_path.append(str(STATIC))
    config.nb_merge_streams = True


def _unique_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        # An inline script has the file name None when it comes from the builder and "" when it
        # comes from the registry: the same script, whatever its priority.
        key = (str(getattr(script, "filename", script) or ""),
               tuple(sorted(getattr(script, "attributes", {}).items())))
        if key in seen:
            continue
        seen.add(key)
        unique.append(script)
    scripts[:] = unique


def setup(app):
    app.connect("config-inited", _static_path)
    app.connect("html-page-context", _unique_scripts)
    app.add_css_file("refimpl.css")
    app.add_js_file("refimpl.js", defer="defer")
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
