"""Claims of the chapter "Side by side" (book/sidebyside.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import refimpl


def _numbers(state) -> int:
    """Entries held by a state, besides its step counter."""
    total = 0
    for field in state[1:]:
        if field is not None:
            total += sum(np.size(a) for a in (field.values() if isinstance(field, dict) else [field]))
    return total


shapes = st.lists(st.integers(1, 6), min_size=1, max_size=4).map(tuple)


@pytest.mark.claim("prop-sbs-state-size")
@given(shape=shapes, data=st.data())
def test_state_size_per_parameter(shape, data):
    """init keeps N (SGD momentum), 0 (plain SGD), 2N (Adam, AdaL), 3N (AMSGrad), N + N/n (ND-Adam)."""
    theta = np.ones(shape)
    n_total = theta.size
    assert _numbers(refimpl.SGD(lr=0.1).init(theta)) == 0
    assert _numbers(refimpl.SGD(lr=0.1, momentum=0.9).init(theta)) == n_total
    assert _numbers(refimpl.Adam().init(theta)) == 2 * n_total
    assert _numbers(refimpl.AdaL().init(theta)) == 2 * n_total
    assert _numbers(refimpl.Adam(amsgrad=True).init(theta)) == 3 * n_total
    # ND-Adam: any non-empty set of axes spans the weight vectors.
    axes = tuple(sorted(data.draw(st.sets(st.integers(0, len(shape) - 1), min_size=1))))
    n = math.prod(shape[a] for a in axes)
    assert _numbers(refimpl.NDAdam(vector_axes=axes).init(theta)) == n_total + n_total // n
    # ...and the arrays it treats as scalars keep Adam's 2N.
    params = {"w": theta, "b": np.ones(3)}
    got = _numbers(refimpl.NDAdam(vector_axes={"w": axes}).init(params))
    assert got == n_total + n_total // n + 2 * 3
