"""refimpl.typeset: how the book's chapters write numbers as LaTeX (the render check looks for
the e-notation these would otherwise leave in the prose)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from refimpl.typeset import glue_label, table, tex


@pytest.mark.parametrize("x, spec, expected", [
    (2.7e16, ".1e", r"2.7 \times 10^{16}"),
    (1e-8, ".0e", r"10^{-8}"),
    (-1e-8, ".0e", r"-10^{-8}"),
    (1.0e6, ".1e", r"1.0 \times 10^{6}"),
    (6.3e-229, ".2g", r"6.3 \times 10^{-229}"),
    (1659.9, ".6g", "1659.9"),
    (1234567, ",", "1{,}234{,}567"),
    (np.float32(0.5), ".2g", "0.5"),
    (np.int64(42), "d", "42"),
    (math.inf, ".2g", r"\infty"),
    (-math.inf, ".2g", r"-\infty"),
    (math.nan, ".2g", r"\mathrm{NaN}"),
])
def test_tex_writes_powers_of_ten(x, spec, expected):
    assert tex(x, spec) == expected


def test_tex_refuses_what_is_not_a_real_number():
    with pytest.raises(TypeError, match="tex: x must be a real number"):
        tex("1e6")
    with pytest.raises(TypeError):
        tex(True + 0j)


def test_a_label_needs_balanced_dollars():
    with pytest.raises(ValueError, match="unbalanced"):
        glue_label("name", "a $b")


def test_tables_are_markdown_with_one_cell_per_column():
    md = table(["x", "y"], [["$a$", 1], ["b", 2]]).data
    assert md.splitlines() == ["| x | y |", "| :--- | ---: |", "| $a$ | 1 |", "| b | 2 |"]
    with pytest.raises(ValueError, match="one cell per column"):
        table(["x", "y"], [["a"]])
