"""How the book's chapters typeset numbers, tables and figures.

Every chapter imports this module in its first (hidden) cell; it lives in the package so that a
chapter downloaded as a notebook runs from any folder. It is bookkeeping for the page, not part
of the optimizers, and imports what it needs (IPython, myst-nb, matplotlib: the ``book`` extra)
only when a function is called:

* ``tex(x, spec)`` formats a number as LaTeX, so that ``1.0e+06`` reads ``1.0 \\times 10^{6}``;
* ``glue_math(name, x, spec)`` stores such a number for the prose, where ``{glue}`name``` shows it
  as inline mathematics, and ``glue_label(name, label)`` a label that mixes text and ``$...$``;
* ``table(header, rows)`` makes a Markdown table whose cells may hold ``$...$`` mathematics;
* ``setup_figures()`` makes matplotlib draw vector graphics (SVG) with fonts that stay readable
  once the figure is fitted to the page.
"""

from __future__ import annotations

import math
import numbers

__all__ = ["tex", "glue_math", "glue_label", "table", "setup_figures", "FIGURE_WIDTH", "WIDE_FIGURE_WIDTH"]

#: Width in inches of a one-panel figure, and of a figure with two or three panels side by side.
#: The page's text column is about 730 CSS pixels wide, and an SVG is shown at 96 pixels per inch:
#: a one-panel figure is shown at its natural size, a wide one shrunk by at most 0.8.
FIGURE_WIDTH = 6.4
WIDE_FIGURE_WIDTH = 9.5


def tex(x, spec: str = ".2g") -> str:
    """The number ``x`` formatted with ``spec`` and written as LaTeX.

    Python's exponent notation becomes a power of ten (``f"{x:.1e}"`` gives ``2.7e+16``, and
    ``tex(x, ".1e")`` gives ``2.7 \\times 10^{16}``); a mantissa of exactly 1 is left out
    (``10^{-8}``); thousands separators become ``{,}``; infinities and NaN become ``\\infty`` and
    ``\\mathrm{NaN}``. Python integers, NumPy scalars and floats are all accepted.
    """
    if isinstance(x, numbers.Integral) and not isinstance(x, bool):
        x = int(x)
    elif isinstance(x, numbers.Real):
        x = float(x)
        if math.isnan(x):
            return r"\mathrm{NaN}"
        if math.isinf(x):
            return r"\infty" if x > 0 else r"-\infty"
    else:
        raise TypeError(f"tex: x must be a real number, got {type(x).__name__} {x!r}")
    text = format(x, spec)
    if "e" in text or "E" in text:
        mantissa, exponent = text.lower().split("e")
        power = f"10^{{{int(exponent)}}}"
        if mantissa.lstrip("+-") in ("1", "1.", ""):
            text = ("-" if mantissa.startswith("-") else "") + power
        else:
            text = f"{mantissa} \\times {power}"
    return text.replace(",", "{,}")


class _Math:
    """A number for the prose: LaTeX for the page, plain text for everything else."""

    def __init__(self, latex: str, plain: str):
        self.latex, self.plain = latex, plain

    def _repr_latex_(self) -> str:
        return f"${self.latex}$"

    def __repr__(self) -> str:
        return self.plain


def glue_math(name: str, x, spec: str = ".2g") -> None:
    """Store ``tex(x, spec)`` under ``name``: ``{glue}`name``` in the prose typesets it."""
    from myst_nb import glue

    glue(name, _Math(tex(x, spec), format(x, spec)), display=False)


def glue_label(name: str, label: str) -> None:
    """Store a label that mixes text and ``$...$`` mathematics, for ``{glue}`name``` in prose."""
    from myst_nb import glue

    parts = label.split("$")
    if len(parts) % 2 == 0:
        raise ValueError(f"glue_label: unbalanced $ in {label!r}")
    latex = "".join(p if i % 2 else (rf"\text{{{p}}}" if p else "") for i, p in enumerate(parts))
    glue(name, _Math(latex, label.replace("$", "")), display=False)


def table(header: list[str], rows: list[list], align: str | None = None):
    """A Markdown table for a cell's output; cells may hold ``$...$`` mathematics.

    ``align`` is one letter per column, ``l`` or ``r``; by default the first column is
    left-aligned and the others (numbers) right-aligned.
    """
    from IPython.display import Markdown

    align = align or "l" + "r" * (len(header) - 1)
    if len(align) != len(header) or any(len(row) != len(header) for row in rows):
        raise ValueError("table: every row needs one cell per column of the header")
    rule = ["---:" if a == "r" else ":---" for a in align]
    lines = [header, rule, *rows]
    return Markdown("\n".join("| " + " | ".join(str(c) for c in line) + " |" for line in lines))


def setup_figures() -> None:
    """Vector figures (SVG on the page, PDF for a printed book) with readable fonts.

    Text is at least 10 points, so that it stays above 9.5 CSS pixels when a figure of
    ``WIDE_FIGURE_WIDTH`` inches is fitted to the text column. Images inside a figure (heat
    maps drawn with ``imshow`` or rasterized meshes) are embedded at 200 dots per inch.
    """
    import matplotlib as mpl
    from matplotlib_inline.backend_inline import set_matplotlib_formats

    set_matplotlib_formats("svg", "pdf")
    mpl.rcParams.update({
        "figure.figsize": (FIGURE_WIDTH, 4.0),
        "font.size": 11,
        "axes.titlesize": 11,
        "axes.labelsize": 11,
        "xtick.labelsize": 10,
        "ytick.labelsize": 10,
        "legend.fontsize": 10,
        "legend.title_fontsize": 10,
        "figure.titlesize": 12,
        "savefig.dpi": 200,
        "svg.fonttype": "path",     # glyphs as outlines: the page needs no fonts
        "svg.hashsalt": "refimpl",  # the same figure gives the same file on every build
    })
