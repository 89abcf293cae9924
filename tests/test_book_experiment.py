"""The claims of the chapter "A generalization experiment you can run on a laptop" (book/experiment.md).

The gradient of batch normalization (prop-experiment-bn-backward), the scale invariance of the
incoming weights (prop-experiment-bn-scale-invariance) and the full-batch statistics
(lem-experiment-full-batch-statistics) are checked in tests/test_nn.py, next to the code; this
module checks the rest: the bias part of the scale-invariance proposition and the corollary
that ND-Adam's unit sphere loses nothing.

Tolerances (u = 2**-53). Multiplying by a power of two is exact and commutes with every rounding
(away from overflow and underflow), so the rescalings by 2^k are compared bitwise. A rescaling
by any other factor, or a normalization, rounds each weight by at most (n+5)/2 u relative
(tests/test_properties_ndadam.py, ``normalize_err``); the loss then moves by at most that
relative perturbation of the pre-activations, amplified by 1/s per BN layer, plus the rounding
of one evaluation on each side: :func:`loss_bound`.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import refimpl
from refimpl import nn
from refimpl.nn import MLP
from tolerances import U64

seeds = st.integers(0, 2**32 - 1)
widths = st.integers(1, 6)
heads = st.sampled_from(["plain", "bn_softmax"])


def problem(seed, sizes, batch, head, bn_eps):
    rng = np.random.default_rng(seed)
    net = MLP(sizes=sizes, head=head, softmax_scale=2.5, logit_decay=1e-3, bn_eps=bn_eps)
    params = net.init(rng)
    x = rng.standard_normal((batch, sizes[0]))
    labels = rng.integers(0, sizes[-1], size=batch)
    return net, params, x, labels


def min_bn_std(net, params, x):
    stats = net.bn_statistics(params, x)
    return min(float(np.sqrt(s.var).min()) for s in stats)


def loss_bound(depth: int, n: int, s_min: float, loss: float) -> float:
    """|computed L(params') - computed L(params)| when params' equals params up to a relative
    perturbation of (n+5)/2 u per weight (exact loss invariant): each evaluation errs by at most
    depth (n+8) u / s_min^depth relative to 1 + |L| (tests/test_nn.py, backprop_bound), and the
    perturbation moves the exact loss by at most (n+5)/2 u times the same amplification."""
    one = depth * (n + 8) * U64 / s_min**depth
    return (2 * one + (n + 5) / 2 * U64 / s_min**depth) * (1 + abs(loss))


@pytest.mark.claim("cor-experiment-unit-norm-loses-nothing")
@given(seed=seeds, batch=st.integers(3, 8), hidden=st.lists(widths, min_size=1, max_size=2),
       classes=st.integers(2, 5), head=heads, log_scales=st.lists(st.floats(-3, 3), min_size=6, max_size=6))
def test_normalizing_the_weight_vectors_keeps_the_loss(seed, batch, hidden, classes, head, log_scales):
    """With eps = 0, NDAdam.normalize (from any column norms) leaves the training loss unchanged."""
    net, params, x, labels = problem(seed, (4, *hidden, classes), batch, head, bn_eps=0.0)
    # Give each weight vector an arbitrary norm first.
    rng = np.random.default_rng(seed + 7)
    params = {k: v * 10.0 ** rng.choice(log_scales, size=v.shape[1]) if k in net.vector_axes else v
              for k, v in params.items()}
    assume(min_bn_std(net, params, x) >= 0.1 * min(10.0 ** np.array(log_scales)))
    opt = refimpl.NDAdam(vector_axes=net.vector_axes)
    unit = opt.normalize(params)
    for k in net.vector_axes:
        assert np.allclose(np.linalg.norm(unit[k], axis=0), 1.0, rtol=0, atol=16 * U64)
    loss, _ = net.loss_and_grads(params, x, labels)
    loss_unit, _ = net.loss_and_grads(unit, x, labels)
    # After normalization every BN input has the scale of the unit-norm network; s_min from it.
    s_min = min(min_bn_std(net, unit, x), 1.0)
    assume(s_min >= 0.1)
    assert abs(float(loss_unit) - float(loss)) <= loss_bound(3, 8, s_min, float(loss))


@pytest.mark.claim("cor-experiment-unit-norm-loses-nothing")
@given(seed=seeds, batch=st.integers(3, 8), hidden=st.lists(widths, min_size=1, max_size=2),
       classes=st.integers(2, 5), head=heads, k=st.integers(-10, 10), eps=st.sampled_from([1e-5, 1e-3, 0.1]))
def test_weight_norm_and_eps_trade_exactly(seed, batch, hidden, classes, head, k, eps):
    """Weight vectors of norm rho = 2^k with eps give bitwise the loss of unit vectors with eps / rho^2."""
    net, params, x, labels = problem(seed, (4, *hidden, classes), batch, head, bn_eps=eps)
    unit = refimpl.NDAdam(vector_axes=net.vector_axes).normalize(params)
    rho = 2.0**k
    scaled = {key: rho * v if key in net.vector_axes else v for key, v in unit.items()}
    net_eps = MLP(sizes=net.sizes, head=net.head, softmax_scale=net.softmax_scale, logit_decay=net.logit_decay,
                  bn_eps=eps / rho**2)
    loss_scaled, grads_scaled = net.loss_and_grads(scaled, x, labels)
    loss_unit, grads_unit = net_eps.loss_and_grads(unit, x, labels)
    assert np.array_equal(loss_scaled, loss_unit)
    for key in params:
        expected = grads_unit[key] / rho if key in net.vector_axes else grads_unit[key]
        assert np.array_equal(grads_scaled[key], expected), key


@pytest.mark.claim("prop-experiment-bn-scale-invariance")
@given(seed=seeds, batch=st.integers(2, 8), units=widths, shift_size=st.floats(0.0, 100.0),
       eps=st.sampled_from([0.0, 1e-5, 1e-2]))
def test_a_bias_before_batch_norm_does_nothing(seed, batch, units, shift_size, eps):
    """BN(a + t) = BN(a) for a per-unit constant t (a bias), up to the rounding of a + t."""
    rng = np.random.default_rng(seed)
    a, beta = rng.standard_normal((batch, units)), rng.standard_normal(units)
    t = shift_size * rng.standard_normal(units)
    s = np.sqrt(a.var(axis=0) + eps)
    assume(s.min() >= 0.05)
    y_t, _ = nn.batch_norm(a + t, beta, eps=eps)
    y, _ = nn.batch_norm(a, beta, eps=eps)
    # a + t rounds by u |a + t|; the mean of B such entries by (B+1)u more; centring leaves an
    # absolute error <= (B+3)u (max|a| + |t|) in each centred entry, and the variance's relative
    # error is at most twice that over s; divided by s, plus 4u on the output.
    centred_err = (batch + 3) * U64 * (np.abs(a).max(axis=0) + np.abs(t))
    bound = 3 * centred_err / s * (1 + np.sqrt(batch)) + 4 * U64 * (np.sqrt(batch) + np.abs(beta))
    assert np.all(np.abs(y_t - y) <= bound)
