"""Chapters as a reader runs them: the ``.ipynb`` files the built website offers for download,
executed top to bottom with nbclient in a fresh Jupyter kernel, in an empty folder outside the
repository and outside the book build (which executes the MyST sources itself). Each draws the
figures its page on the website shows.

What a reader needs is ``pip install -e '.[book]'`` (the preface says so); this test runs in the
same environment. The book must be built first (``make book``; ``make test`` does it).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
REQUIRED = bool(os.environ.get("REFIMPL_REQUIRE_BOOK"))

# One chapter of each of parts I and III, and one section page of each chapter split into
# sections (a section is a notebook of its own), among the quicker ones (2-8 s each in the
# book build).
CHAPTERS = ["book/adam", "book/sidebyside", "book/convergence-counterexample",
            "book/ndadam-problems", "book/adal-transformed"]


def _need(what: str, ok: bool) -> None:
    if not ok:
        if REQUIRED:
            pytest.fail(f"{what} (make test provides it)")
        pytest.skip(what)


def offered_notebook(chapter: str) -> Path:
    """The notebook file behind the chapter page's "download .ipynb" link."""
    page = HTML / f"{chapter}.html"
    _need("the book is not built: run `make book`", page.exists())
    links = re.findall(r'<a href="([^"]+\.ipynb)"[^>]*?download-notebook-button',
                       page.read_text(encoding="utf-8"), re.S)
    assert len(links) == 1, f"{page.name} offers {len(links)} notebooks"
    return (page.parent / links[0]).resolve()


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_downloaded_chapter_runs_top_to_bottom(chapter, tmp_path):
    import nbformat
    from nbclient import NotebookClient

    source = offered_notebook(chapter)
    notebook = tmp_path / source.name
    notebook.write_bytes(source.read_bytes())  # what a reader's browser saves
    nb = nbformat.read(notebook, as_version=4)
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code")

    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, naming the cell, if any cell fails

    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.execution_count for c in code), "a cell did not run"
    outputs = [o for c in code for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    figures = [o for o in outputs if o.output_type == "display_data"
               and {"image/svg+xml", "image/png"} & set(o.get("data", {}))]
    page = (HTML / f"{chapter}.html").read_text(encoding="utf-8")
    shown = len(re.findall(r'<img [^>]*src="(?:\.\./)*_images/', page))
    assert shown > 0 and len(figures) == shown, (
        f"{len(figures)} figures drawn, {shown} on the website's page")
    assert list(tmp_path.iterdir()) == [notebook], "the chapter wrote files where it ran"
