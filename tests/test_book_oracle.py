"""Tests of the claims of the chapter "Using refimpl as an oracle" (book/oracle.md).

Each test names the proposition it verifies with ``pytest.mark.claim``. Floating-point facts are
checked exactly where possible: bounds are evaluated in rational arithmetic (``fractions``) on
the exact values of the floats involved, so a test can neither pass nor fail by rounding of its
own. Where a test compares two floating-point computations, the tolerance is derived in a
comment by counting roundings in the standard model fl(a op b) = (a op b)(1 + d), |d| <= u.
"""

from __future__ import annotations

import json
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import refimpl
from refimpl import _vectors
from refimpl.testing import assert_matches, from_step, step_tolerance
from tolerances import U64 as U
from tolerances import bias_correction_rel_err

# ----------------------------------------------------------------------------- prop-oracle-first-step

betas1 = st.one_of(st.just(0.0), st.just(0.9), st.floats(1e-3, 0.999))
betas2 = st.one_of(st.just(0.0), st.just(0.999), st.floats(1e-3, 0.9999))
# Nonzero gradients over 200 decades; g * g and (1 - beta2) * g * g stay normal and finite.
nonzero = st.builds(lambda s, m, e: s * m * 10.0**e, st.sampled_from([-1.0, 1.0]), st.floats(1.0, 9.99),
                    st.integers(-100, 100))


def first_step(lr, beta1, beta2, k, g):
    """refimpl's first step with eps = 0, from theta = 0 (where 0 - s = -s is exact)."""
    opt = refimpl.Adam(lr=lr, beta1=beta1, beta2=beta2, eps=0.0, t_offset=k)
    zero = np.zeros_like(g)
    return -opt.step(zero, g, opt.init(zero))[0]


def first_step_rtol(beta1, beta2, tau):
    """Relative error of refimpl's first step against alpha * c_k computed in float64.

    refimpl: m = (1 - beta1) * g (2 roundings; beta1 * 0 + x is exact), v = (1 - beta2) * g * g
    (3), the corrections 1 - beta**tau (bias_correction_rel_err; exactly 1 when tau = 0),
    m / bc1 and v / bc2 (1 each), sqrt (halves v_hat's error, adds 1), lr * m_hat (1), the
    division (1): to first order 4u + b1 on the numerator, (4u + b2) / 2 + u on the
    denominator, u for the division, 8u + b1 + b2/2 in all. The expected alpha * c_k in
    float64: 1 + beta2, sqrt, 1 + beta1, the division, the product with alpha: 5.5u. Doubling
    the first-order sum covers the second-order terms (all far below 1).
    """
    b1 = bias_correction_rel_err(beta1, tau) if tau > 0 else 0.0
    b2 = bias_correction_rel_err(beta2, tau) if tau > 0 else 0.0
    return 2 * (14 * U + b1 + b2)


@pytest.mark.claim("prop-oracle-first-step")
@given(beta1=betas1, beta2=betas2, lr=st.floats(1e-4, 10.0), g=arrays(np.float64, 4, elements=nonzero))
def test_first_step_is_alpha_c_k_times_sign(beta1, beta2, lr, g):
    """With eps = 0, the first step of t_offset = k is alpha * c_k * sign(g_1), c_k as stated."""
    c = {-1: (1 - beta1) / math.sqrt(1 - beta2), 0: 1.0, 1: math.sqrt(1 + beta2) / (1 + beta1)}
    for k in (-1, 0, 1):
        got = first_step(lr, beta1, beta2, k, g)
        want = lr * c[k] * np.sign(g)
        np.testing.assert_allclose(got, want, rtol=first_step_rtol(beta1, beta2, 1 + k), atol=0)


@pytest.mark.claim("prop-oracle-first-step")
@given(beta1=st.floats(0.0, 0.41), g=arrays(np.float64, 3, elements=nonzero))
def test_counter_one_ahead_is_invisible_on_its_curve(beta1, g):
    """On beta2 = beta1 (2 + beta1), the counters k = 0 and k = 1 take the same first step."""
    beta2 = beta1 * (2 + beta1)            # < 1 for beta1 <= 0.41 (the root is sqrt(2) - 1)
    # beta2 carries 2 roundings, so 1 + beta2 is (1 + beta1)^2 up to 3u relative, and c_1 is 1
    # up to 1.5u + (the 5.5u of computing it). Each side of the comparison also carries its own
    # first_step_rtol.
    rtol = first_step_rtol(beta1, beta2, 1) + first_step_rtol(beta1, beta2, 2) + 2 * 7 * U
    np.testing.assert_allclose(first_step(0.1, beta1, beta2, 1, g), first_step(0.1, beta1, beta2, 0, g),
                               rtol=rtol, atol=0)


@pytest.mark.claim("prop-oracle-first-step")
@given(beta1=st.floats(0.0, 0.9), g=arrays(np.float64, 3, elements=nonzero))
def test_uncorrected_counter_is_invisible_on_its_curve(beta1, g):
    """On beta2 = beta1 (2 - beta1), the counters k = 0 and k = -1 take the same first step."""
    beta2 = beta1 * (2 - beta1)            # <= 0.99 for beta1 <= 0.9
    # fl(beta2) is off by at most 2u beta2 (two roundings), which moves 1 - beta2 by a relative
    # 2u beta2 / (1 - beta2) and c_{-1} by half that, plus the roundings counted above.
    drift = U * beta2 / (1 - beta2)
    rtol = first_step_rtol(beta1, beta2, 0) + first_step_rtol(beta1, beta2, 1) + 2 * (drift + 7 * U)
    np.testing.assert_allclose(first_step(0.1, beta1, beta2, -1, g), first_step(0.1, beta1, beta2, 0, g),
                               rtol=rtol, atol=0)


@pytest.mark.claim("prop-oracle-first-step")
def test_with_the_default_betas_every_counter_is_visible():
    """For beta1 = 0.9, beta2 = 0.999 the three first steps differ (c_1 = 0.744, c_-1 = 3.16)."""
    g = np.array([1.0, -2.0, 0.5])
    steps = {k: first_step(1.0, 0.9, 0.999, k, g) for k in (-1, 0, 1)}
    assert np.allclose(steps[0], np.sign(g), rtol=1e-15, atol=0)
    assert np.allclose(steps[1], np.sign(g) * math.sqrt(1.999) / 1.9, rtol=1e-12, atol=0)
    assert np.allclose(steps[-1], np.sign(g) * 0.1 / math.sqrt(0.001), rtol=1e-12, atol=0)
    assert abs(math.sqrt(1.999) / 1.9 - 1) > 0.25 and abs(0.1 / math.sqrt(0.001) - 1) > 2


# ----------------------------------------------------------------------------- prop-oracle-tolerance


def unit_roundoff(dtype) -> Fraction:
    return Fraction(1, 2**24) if dtype == np.float32 else Fraction(1, 2**53)


def moderate(dtype):
    """Floats of either sign from 2**-20 to 2**21, and zeros: no overflow or underflow below."""
    width = 32 if dtype == np.float32 else 64
    return st.one_of(st.just(0.0), st.builds(lambda s, m, e: s * m * 2.0**e, st.sampled_from([-1.0, 1.0]),
                                             st.floats(1.0, 2.0, exclude_max=True, width=width),
                                             st.integers(-20, 20)))


def exact(a) -> list:
    """The exact rational values of an array's elements."""
    return [Fraction(float(x)) for x in np.asarray(a).reshape(-1)]


def inf_norm(xs) -> Fraction:
    return max((abs(x) for x in xs), default=Fraction(0))


def sums(trajectory) -> tuple[list, list]:
    """D_t = sum_{s <= t} ||r_s - r_{s-1}|| and R_t = sum_{s <= t} ||r_s||, exactly, for t = 0..T."""
    values = [exact(r) for r in trajectory]
    D, R = [Fraction(0)], [Fraction(0)]
    for prev, cur in zip(values, values[1:]):
        D.append(D[-1] + inf_norm([a - b for a, b in zip(cur, prev)]))
        R.append(R[-1] + inf_norm(cur))
    return D, R


def tau(D, R, t, u, kappa=2**11) -> Fraction:
    """The proposition's tau_t = u (kappa D_t + 2 R_t / (1 - u)) / (1 - u')^t, exactly."""
    u1 = u / (1 - u)
    return u * (kappa * D[t] + 2 * R[t] / (1 - u)) / (1 - u1) ** t


@pytest.mark.claim("prop-oracle-tolerance")
@given(data=st.data())
def test_the_accumulated_error_obeys_the_bound(data):
    """||c_t - r_t|| <= (1 - u')^-t (sum delta_s + 2 u' R_t), evaluated exactly, float32 and float64."""
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    T, n = data.draw(st.integers(1, 40)), data.draw(st.integers(1, 4))
    theta0 = data.draw(arrays(dtype, n, elements=moderate(dtype)))
    s = data.draw(arrays(dtype, (T, n), elements=moderate(dtype)))
    perturbation = data.draw(arrays(dtype, (T, n), elements=moderate(dtype)))
    shift = data.draw(st.integers(0, 40))                      # perturbations from 1 down to 2**-40 of s
    s_hat = (s + perturbation * dtype(2.0**-shift)).astype(dtype)
    r, c = [theta0], [theta0]
    for t in range(T):                                         # one correctly rounded subtraction each
        r.append(r[-1] - s[t])
        c.append(c[-1] - s_hat[t])
    assert all(x.dtype == dtype for x in r + c)
    u = unit_roundoff(dtype)
    u1 = u / (1 - u)
    _, R = sums(r)
    deltas = [inf_norm([a - b for a, b in zip(exact(s_hat[t]), exact(s[t]))]) for t in range(T)]
    for t in range(1, T + 1):
        error = inf_norm([a - b for a, b in zip(exact(c[t]), exact(r[t]))])
        bound = (sum(deltas[:t], Fraction(0)) + 2 * u1 * R[t]) / (1 - u1) ** t
        assert error <= bound, (t, float(error), float(bound))


@pytest.mark.claim("prop-oracle-tolerance")
@given(data=st.data())
def test_refimpl_computes_tau_as_stated(data):
    """step_tolerance is the proposition's tau_t (up to the float64 rounding of its own evaluation)."""
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    T, n = data.draw(st.integers(1, 30)), data.draw(st.integers(1, 4))
    r = data.draw(arrays(dtype, (T + 1, n), elements=moderate(dtype)))
    u = unit_roundoff(dtype)
    D, R = sums(list(r))
    got = step_tolerance(r, float(u))
    for t in range(T + 1):
        want = tau(D, R, t, u)
        # float64 evaluation: ~2 t + 10 roundings of nonnegative terms, each at most 2**-53 relative.
        assert abs(Fraction(float(got[t])) - want) <= (2 * t + 12) * U * want


def nudged_steps(s, D, kappa, sign, dtype):
    """Steps s_hat_t with |s_hat_t - s_t| <= kappa u Delta_t elementwise (Delta_t = D_t - D_{t-1},
    checked exactly), as close to that limit as the format allows, in the direction ``sign``."""
    u = unit_roundoff(dtype)
    out = []
    for t in range(s.shape[0]):
        limit = kappa * u * (D[t + 1] - D[t])
        row = []
        for x, sg in zip(s[t], sign):
            y = dtype(float(x) + sg * float(limit))
            while abs(Fraction(float(y)) - Fraction(float(x))) > limit:
                y = np.nextafter(y, x, dtype=dtype)            # one step back toward s_t
            row.append(y)
        out.append(np.array(row, dtype=dtype))
    return out


def replay(steps):
    """A candidate that subtracts the given steps, one per call (the gradient is ignored)."""
    return from_step(lambda p, g, t: (p - steps[t], t + 1), init=lambda p: 0, name="replayed steps")


@pytest.mark.claim("prop-oracle-tolerance")
@given(data=st.data())
def test_the_default_tolerance_admits_steps_within_kappa_u_delta(data):
    """A candidate whose steps are off by up to 2**11 u Delta_t, all in one direction, passes
    assert_matches; one off by 3 tau_1 at step 1 fails there."""
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    T, n = data.draw(st.integers(1, 100)), data.draw(st.integers(1, 4))
    theta0 = data.draw(arrays(dtype, n, elements=moderate(dtype)))
    s = data.draw(arrays(dtype, (T, n), elements=moderate(dtype)))
    sign = data.draw(st.lists(st.sampled_from([-1.0, 1.0]), min_size=n, max_size=n))
    # The reference: SGD with lr = 1 ends each step with the one rounding fl(r - 1.0 * s) = fl(r - s).
    reference = refimpl.SGD(lr=1.0)
    r, state = [theta0], reference.init(theta0)
    for t in range(T):
        x, state = reference.step(r[-1], s[t], state)
        assert np.array_equal(x, r[-1] - s[t])
        r.append(x)
    D, R = sums(r)
    # 2**11 - 2: the fl of the nudge itself may land a little beyond a real kappa u Delta; the
    # nudged_steps loop keeps it inside, so any kappa <= 2**11 is admissible.
    assert_matches(replay(nudged_steps(s, D, 2**11, sign, dtype)), reference, theta0, list(s))
    # The control: the same candidate, off by 3 times the whole tolerance at step 1, must fail;
    # so the pass above is not vacuous. (Its other steps are exact.)
    assume(D[1] > 0)
    u = unit_roundoff(dtype)
    worse = list(s)
    kappa_bad = 3 * tau(D, R, 1, u) / (u * D[1])              # 3 tau_1 in units of u Delta_1
    worse[0] = nudged_steps(s[:1], D, kappa_bad, sign, dtype)[0]
    realized = inf_norm([a - b for a, b in zip(exact(worse[0]), exact(s[0]))])
    assume(realized > 2.5 * tau(D, R, 1, u))                 # the format could represent it
    with pytest.raises(AssertionError, match="first divergence: step 1"):
        assert_matches(replay(worse), reference, theta0, list(s))


# ----------------------------------------------------------------------------- prop-oracle-number-encoding


def written(values: np.ndarray) -> list[str]:
    """The text refimpl's vectors writer produces for each element (its encoder, then json)."""
    text = json.dumps(_vectors.encode_array(values), allow_nan=False)
    return json.loads(text, parse_float=str)


finite64 = st.integers(0, 2**64 - 1).map(lambda b: np.array([b], dtype=np.uint64).view(np.float64)[0]).filter(
    np.isfinite)
finite32 = st.integers(0, 2**32 - 1).map(lambda b: np.array([b], dtype=np.uint32).view(np.float32)[0]).filter(
    np.isfinite)


@pytest.mark.claim("prop-oracle-number-encoding")
@given(x=finite64)
def test_binary64_is_written_as_its_shortest_repr_and_parses_back(x):
    """Every finite float64, written by refimpl, is repr(x) and parses back to the same bits."""
    (text,) = written(np.array([x]))
    assert text == repr(float(x))
    back = np.array([float(text)])                       # CPython's parser rounds correctly
    assert back.view(np.uint64)[0] == np.array([x]).view(np.uint64)[0]


@pytest.mark.claim("prop-oracle-number-encoding")
@given(y=finite32)
def test_binary32_parses_back_through_binary64_and_directly(y):
    """Every finite float32: via a double and a cast, and by a direct correctly rounded parse, gives y."""
    (text,) = written(np.array([y], dtype=np.float32))
    assert text == repr(float(y))                        # the binary64 number equal to y
    via_double = np.array([float(text)]).astype(np.float32)
    assert via_double.view(np.uint32)[0] == np.array([y]).view(np.uint32)[0]
    # The direct parse: y is the float32 nearest to the decimal D, strictly (no tie), as the proof
    # argues from |D - y| <= 2**-53 |y|. Checked in exact rational arithmetic.
    D, Y = Fraction(text), Fraction(float(y))
    assert abs(D - Y) <= abs(Y) / 2**53
    for direction in (-np.inf, np.inf):
        neighbour = np.nextafter(np.float32(y), np.float32(direction), dtype=np.float32)
        if np.isfinite(neighbour):
            assert abs(D - Y) < abs(D - Fraction(float(neighbour)))
        else:                                            # y is +-max: D must not round to infinity
            assert abs(D) < Fraction(float(np.finfo(np.float32).max)) + Fraction(2) ** (127 - 24)


@pytest.mark.claim("prop-oracle-number-encoding")
@pytest.mark.parametrize("name", sorted(_vectors.FILES.values()))
def test_every_number_of_the_shipped_vectors_is_its_shortest_repr(name):
    """The shipped files hold repr(x) for every number, and float32 cases only float32 values."""
    doc = json.loads((_vectors.canonical_dir() / name).read_text(encoding="utf-8"), parse_float=str)
    count = 0
    for case in doc["cases"]:
        trees = [case["params"]] + [step[key] for step in case["steps"] for key in ("grads", "params")]
        trees += [tree for step in case["steps"] for tree in step["state"].values() if tree is not None]
        for tree in trees:
            for values in tree.values():
                for text in values:
                    assert isinstance(text, str) and text not in ("NaN", "Infinity", "-Infinity"), text
                    x = float(text)
                    assert repr(x) == text
                    if case["dtype"] == "float32":
                        assert float(np.float32(x)) == x, (case["id"], text)
                    count += 1
    assert count > 1000
