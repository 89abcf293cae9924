"""Hypothesis strategies shared by the test modules."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

# Gradient entries: both signs, magnitudes over six decades, and exact zeros (sparse gradients).
magnitude = st.builds(lambda sign, exponent, mantissa: sign * mantissa * 10.0**exponent,
                      st.sampled_from([-1.0, 1.0]), st.integers(-4, 2), st.floats(1.0, 9.99))
gradient_entry = st.one_of(st.just(0.0), magnitude, magnitude)

beta1s = st.one_of(st.just(0.0), st.just(0.9), st.floats(0.0, 0.99))
beta2s = st.one_of(st.just(0.0), st.just(0.999), st.floats(0.5, 0.9999))
lrs = st.floats(1e-4, 1.0)
epss = st.one_of(st.just(1e-8), st.floats(1e-12, 1e-2))
weight_decays = st.one_of(st.just(0.0), st.floats(1e-4, 0.5))


def gradient_streams(min_steps=50, max_steps=64, max_dim=4):
    """Arrays of shape (T, d): the gradient of step t is row t - 1."""
    shapes = st.tuples(st.integers(min_steps, max_steps), st.integers(1, max_dim))
    return shapes.flatmap(lambda shape: arrays(np.float64, shape, elements=gradient_entry))


def initial_params(dim):
    return arrays(np.float64, (dim,), elements=st.floats(-3.0, 3.0))
