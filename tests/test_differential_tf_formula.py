"""The epsilon-hat form against TensorFlow's own NumPy reference formula, bit for bit.

TensorFlow tests its Adam (``tensorflow/python/training/adam_test.py``) against a NumPy formula,
transcribed here: ``alpha_t = alpha * sqrt(1 - beta2**t) / (1 - beta1**t)``, then
``param - alpha_t * m_t / (sqrt(v_t) + epsilon)``, with a correctly rounded square root
(``np.sqrt``). Keras and the official ND-Adam code take the same square root. A power
``(1 - beta2**t)**0.5`` is not a square root: on Python floats it differs from ``math.sqrt`` in
the last bit at 1,103 of the first 100,000 steps, the first at t = 1270. So the comparison runs
3,100 steps, past t = 1270, 2582 and 3069.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import refimpl

STEPS = 3100


def tf_reference_step(param, g, t, m, v, alpha, beta1, beta2, epsilon):
    """One step of TensorFlow's NumPy reference formula for Adam (t counts from 1)."""
    alpha_t = alpha * np.sqrt(1 - beta2**t) / (1 - beta1**t)
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    return param - alpha_t * m / (np.sqrt(v) + epsilon), m, v


def test_the_comparison_reaches_steps_where_a_power_is_not_a_square_root():
    steps = [t for t in range(1, STEPS + 1) if (1 - 0.999**t) ** 0.5 != math.sqrt(1 - 0.999**t)]
    assert steps == [1270, 2582, 3069]


@pytest.mark.parametrize("eps", [1e-8, 1e-3])
def test_eps_hat_is_tensorflows_formula_bit_for_bit(eps):
    """The trajectory, and at every step the update itself (the step taken from zero
    parameters, where a last-bit difference in alpha_t cannot vanish into a larger theta)."""
    rng = np.random.default_rng(7)
    opt = refimpl.Adam(lr=1e-3, beta1=0.9, beta2=0.999, eps=eps, eps_hat=True)
    theta = rng.standard_normal(64)
    state = opt.init(theta)
    param, m, v = theta.copy(), np.zeros(64), np.zeros(64)
    zero = np.zeros(64)
    for t in range(1, STEPS + 1):
        g = rng.standard_normal(64) * 10.0 ** rng.uniform(-3, 1)
        update = opt.step(zero, g, state)[0]
        theta, state = opt.step(theta, g, state)
        assert np.array_equal(update, tf_reference_step(zero, g, t, m, v, 1e-3, 0.9, 0.999, eps)[0]), t
        param, m, v = tf_reference_step(param, g, t, m, v, 1e-3, 0.9, 0.999, eps)
        assert np.array_equal(theta, param), (t, np.max(np.abs(theta - param)))
        assert np.array_equal(state.m, m) and np.array_equal(state.v, v), t
