"""Property-based tests of ND-Adam (refimpl.NDAdam) against the geometry of Algorithm 1.

The properties are those of the research notes (ndadam.md, section 5), numbered as there
(P1 ... P12).  Every test draws its data with hypothesis (derandomized by conftest.py) and
asserts a concrete numeric relation.

Tolerances.  Every tolerance below is a first-order rounding-error bound derived from the
arithmetic, in units of the unit roundoff ``u`` (2**-53 in float64, 2**-24 in float32; round
to nearest).  The standard facts used throughout (Higham, "Accuracy and Stability of Numerical
Algorithms", ch. 2-3):

* one elementwise operation (+, -, *, /, sqrt) has relative error <= u;
* a sum of n terms in any order (NumPy uses pairwise summation) has absolute error
  <= gamma_n * sum(|terms|), gamma_n = n*u/(1-n*u) <= (n+1)*u for the sizes used here;
  a dot product of n terms is a sum of n rounded products: again <= (n+1)*u * sum(|a_i b_i|);
* Python's ``b**t`` (C ``pow``) is within 1 ulp, i.e. relative error <= 2u.

Products of (1 + delta) factors are linearised; the neglected second-order terms are of size
(n*u)**2 < 1e-26 for every size used here, many orders below each bound.  Where both sides of a
comparison use the *same* floating-point value (e.g. ``1 - beta1**t``, computed by the same
Python expression on both sides), that value is a common exact input and contributes nothing.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import refimpl

U = 2.0**-53  # unit roundoff of float64


def unit_roundoff(dtype) -> float:
    return float(np.finfo(dtype).eps) / 2


# ----------------------------------------------------------------------------- helpers


def vsum(x, axes):
    return np.sum(x, axis=axes, keepdims=True)


def vnorm(x, axes):
    """Per-vector 2-norm, in float64 whatever the dtype of x (float32 -> float64 is exact)."""
    x = np.asarray(x, dtype=np.float64)
    return np.sqrt(vsum(x * x, axes))


def vsize(shape, axes) -> int:
    return int(np.prod([shape[a] for a in axes]))


def project(gbar, w, axes):
    """The tangent projection (12), computed by the test: g = gbar - (gbar . w) w."""
    return gbar - vsum(gbar * w, axes) * w


def normalize_err(n: int, u: float = U) -> float:
    """Bound on ||fl(x/||x||) - x/||x|||| for one vector of n elements: the sum of squares has
    relative error <= (n+1)u, the square root halves it and adds u, the division adds u per
    element: (n+1)/2*u + 2u = (n+5)/2*u."""
    return (n + 5) / 2 * u


def _projection_and_v_errors(w, gbar, v_prev, *, axes, b2, r_in=0.0):
    """Steps (12) and (9) of ``nd_step_bound``: the test's g_perp, P = ||g_perp||, the bound E1
    on the absolute error of the computed g_perp, and the bound rv on the relative error of
    the computed v."""
    n = vsize(w.shape, axes)
    W, G = vnorm(w, axes), vnorm(gbar, axes)
    gp = project(gbar, w, axes)
    P = vnorm(gp, axes)
    E1 = G * (1 + W**2) * (r_in + (n + 3) * U)
    v_new = b2 * v_prev + (1 - b2) * P**2
    rv = ((1 - b2) * (2 * P * E1 + (n + 3) * U * P**2) + b2 * v_prev * (2 * r_in + 2 * U) + U * v_new) / v_new
    return gp, P, E1, rv


def nd_step_bound(w, gbar, m_prev, v_prev, *, t, axes, b1, b2, lr, eps, r_in=0.0):
    """Per-vector first-order bound on ||w_new(computed) - w_new(exact arithmetic)|| for one
    ND-Adam step (eps_hat either way), from inputs that may themselves carry a relative
    elementwise perturbation ``r_in`` (gbar, m_prev: r_in; v_prev: 2*r_in).

    A running error analysis that follows the five lines of Algorithm 1; the exact
    intermediate values are replaced by the test's float64 values (a relative change of
    O(n*u) in a bound, negligible).  With G = ||gbar||, W = ||w||, P = ||g_perp||:

    (12)  s = gbar.w has error <= ((n+1)u + r_in) G W; g_i = gbar_i - s w_i adds
          u|s w_i| + u|g_i| and the input r_in|gbar_i|.  With |s| <= G W and
          P <= G (1 + W^2):      E1 = G (1 + W^2) (r_in + (n+3)u).
    (8)   m = b1 m_prev + (1-b1) g: E2 = (1-b1) E1 + (r_in + 3u) (b1 ||m_prev|| + (1-b1) P).
    (9)   v = b2 v_prev + (1-b2) sum(g^2), all terms >= 0: the error of sum(g^2) is
          <= 2 P E1 + (n+2)u P^2 (perturbation, then n squares and n-1 additions); then one
          multiplication, b2 v_prev carries 2 r_in + u, and the final addition u v:
          rv = [(1-b2)(2 P E1 + (n+3)u P^2) + b2 v_prev (2 r_in + 2u) + u v] / v.
    (13a) S = lr m_hat/(sqrt(v_hat)+eps): ||eS|| <= c E2/bc1 + ||S|| (rv/2 + 8u), where
          c = lr/(sqrt(v_hat)+eps) and 8u covers the at most eight roundings of either
          form (m/bc1, v/bc2, sqrt, +eps, lr*, /, and for eps_hat bc2**0.5 (2u)).
          w_bar = w - S adds u ||w_bar||.
    (13b) x -> x/||x|| has Jacobian norm 1/||x||, and the normalization itself adds
          normalize_err(n).
    Two independent computations of the same step differ by at most twice this bound.
    """
    n = vsize(w.shape, axes)
    gp, P, E1, rv = _projection_and_v_errors(w, gbar, v_prev, axes=axes, b2=b2, r_in=r_in)
    E2 = (1 - b1) * E1 + (r_in + 3 * U) * (b1 * vnorm(m_prev, axes) + (1 - b1) * P)
    m_new = b1 * m_prev + (1 - b1) * gp
    v_new = b2 * v_prev + (1 - b2) * P**2
    bc1, bc2 = 1 - b1**t, 1 - b2**t
    c = lr / (np.sqrt(v_new / bc2) + eps)
    S = c * m_new / bc1
    eS = c * E2 / bc1 + vnorm(S, axes) * (rv / 2 + 8 * U)
    WB = vnorm(w - S, axes)
    return (eS + U * WB) / WB + normalize_err(n)


# ----------------------------------------------------------------------------- strategies

seeds = st.integers(0, 2**32 - 1)
betas1 = st.floats(0.0, 0.99)
betas2 = st.floats(0.0, 0.9999)
lrs = st.floats(1e-4, 1.0)
pos_eps = st.floats(1e-12, 1e-2)


@st.composite
def layouts(draw, min_n=1):
    """A parameter shape and its vector axes (any non-empty subset of the axes)."""
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=ndim, max_size=ndim)))
    axes = tuple(sorted(draw(st.sets(st.integers(0, ndim - 1), min_size=1))))
    assume(vsize(shape, axes) >= min_n)
    return shape, axes


def gaussian(rng, shape, lo=-6.0, hi=6.0):
    """Gaussian entries with one random overall scale 10**U(lo, hi)."""
    return rng.standard_normal(shape) * 10.0 ** rng.uniform(lo, hi)


def grad_stream(rng, shape, T, *, zeros=True, lo=-6.0, hi=6.0):
    """T gradients; with ``zeros``, some are entirely 0 and some have zero coordinates."""
    out = []
    for _ in range(T):
        g = gaussian(rng, shape, lo, hi)
        if zeros:
            r = rng.random()
            if r < 0.2:
                g[...] = 0.0
            elif r < 0.5:
                g[rng.random(shape) < 0.5] = 0.0
        out.append(g)
    return out


def run(opt, w, grads):
    """The list of (params, state) after every step."""
    s = opt.init(w)
    out = []
    for g in grads:
        w, s = opt.step(w, g, s)
        out.append((w, s))
    return out


# ----------------------------------------------------------------------------- P1


@pytest.mark.claim("prop-ndadam-code-variants")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@given(layout=layouts(), seed=seeds, b1=betas1, b2=betas2, lr=lrs, eps=pos_eps, eps_hat=st.booleans(),
       unit_start=st.booleans(), T=st.integers(1, 25))
def test_p1_unit_norm_after_every_step(dtype, layout, seed, b1, b2, lr, eps, eps_hat, unit_start, T):
    """ND-Adam P1: after every step every weight vector has unit norm (13b), for any gradient
    stream including all-zero gradients and zero coordinates, from a unit or a non-unit start,
    in float64 and float32.

    Tolerance: (13b) computes w/||w|| in the parameter dtype: |fl-norm - 1| <= normalize_err(n)
    in that dtype's u.  The test measures the norm in float64 (exact conversion, then a sum of
    n squares: (n+1)u64, halved by the square root, plus u64 for the root)."""
    shape, axes = layout
    n = vsize(shape, axes)
    rng = np.random.default_rng(seed)
    opt = refimpl.NDAdam(vector_axes=axes, lr_vector=lr, beta1=b1, beta2=b2, eps=eps, eps_hat=eps_hat)
    w0 = gaussian(rng, shape, -3, 3)
    w0 = (opt.normalize(w0) if unit_start else w0).astype(dtype)
    grads = [g.astype(dtype) for g in grad_stream(rng, shape, T)]
    tol = normalize_err(n, unit_roundoff(dtype)) + (n + 3) / 2 * U
    for w, s in run(opt, w0, grads):
        assert w.dtype == dtype and s.v.dtype == dtype
        assert np.all(np.isfinite(w)) and np.all(np.isfinite(s.m)) and np.all(np.isfinite(s.v))
        np.testing.assert_array_less(np.abs(vnorm(w, axes) - 1), tol)


# ----------------------------------------------------------------------------- P2


@pytest.mark.claim("prop-ndadam-code-variants")
@given(layout=layouts(), seed=seeds, b1=betas1, b2=betas2, lr=lrs, unit=st.booleans())
def test_p2_projected_gradient_is_tangent(layout, seed, b1, b2, lr, unit):
    """ND-Adam P2: the gradient entering the moments is the tangent projection (12).

    After one step from the zero state m = (1-b1) g with g = gbar - (gbar.w0) w0, so the
    radial component of m is (1-b1) (gbar.w0)(1 - ||w0||^2): about 0 for a unit w0, and for a
    non-unit w0 (the official code's first step) exactly that documented value.

    Tolerance, per vector, G = ||gbar||, W = ||w0||: the projection's radial error is
    <= G W (u + (n+3)u W^2) (the dot product (n+1)u G W, multiplied by w, and the rounding of
    s*w_i and of the subtraction); m = (1-b1)*g adds u||m||; the test's dot product m.w0
    adds (n+1)u ||m|| W with ||m|| <= (1-b1) G (1+W^2); the division by (1-b1) u; the reference
    (gbar.w0)(1-||w0||^2) has (n+1)u G W |1-W^2| + (n+1)u G W^3 + 2u G W |1-W^2|.  Bounding
    every W-power by (1+W^2): (4n+12) u G W (1+W^2).  For a w0 from ``normalize``,
    |1 - W^2| <= 2*normalize_err(n) = (n+5)u."""
    shape, axes = layout
    n = vsize(shape, axes)
    rng = np.random.default_rng(seed)
    opt = refimpl.NDAdam(vector_axes=axes, lr_vector=lr, beta1=b1, beta2=b2)
    w0 = opt.normalize(rng.standard_normal(shape))
    if not unit:  # norms in [0.1, 0.9] or [1.1, 10]: well away from 1
        k = rng.uniform(0.1, 0.9, vnorm(w0, axes).shape)
        w0 = w0 * np.where(rng.random(k.shape) < 0.5, k, 1 / k)
    gbar = gaussian(rng, shape)
    _, s = opt.step(w0, gbar, opt.init(w0))
    W, G = vnorm(w0, axes), vnorm(gbar, axes)
    radial = vsum(s.m * w0, axes) / (1 - b1)
    expected = vsum(gbar * w0, axes) * (1 - vsum(w0 * w0, axes))
    tol = (4 * n + 12) * U * G * W * (1 + W**2)
    np.testing.assert_array_less(np.abs(radial - expected), tol)
    if unit:
        np.testing.assert_array_less(np.abs(radial), tol + (n + 5) * U * G * W)


# ----------------------------------------------------------------------------- P3


@pytest.mark.claim("prop-ndadam-direction")
@given(layout=layouts(min_n=2), seed=seeds, b1=betas1, b2=betas2, lr=lrs, eps=st.sampled_from([0.0, 1e-8, 1e-3]),
       eps_hat=st.booleans(), T=st.integers(1, 20))
def test_p3_direction_preservation(layout, seed, b1, b2, lr, eps, eps_hat, T):
    """ND-Adam P3: w_bar - w_prev = -c m_hat with one scalar c per vector: the new w equals
    normalize(w_prev - c m_hat), m_hat = m/(1-b1^t), c = lr/(sqrt(v_hat)+eps) (paper) or
    c = lr sqrt(1-b2^t)/(sqrt(v)+eps) (eps_hat), reconstructed from the state after the step.

    Tolerance: both sides compute S = c m_hat from the same stored m, v and the same
    ``1 - beta**t``: at most eight roundings each (16u relative in S together); w_prev - S adds
    u||w_bar|| on each side; normalization has Jacobian norm 1/||w_bar|| and adds
    normalize_err(n) on each side."""
    shape, axes = layout
    n = vsize(shape, axes)
    rng = np.random.default_rng(seed)
    opt = refimpl.NDAdam(vector_axes=axes, lr_vector=lr, beta1=b1, beta2=b2, eps=eps, eps_hat=eps_hat)
    w = opt.normalize(rng.standard_normal(shape))
    s = opt.init(w)
    for g in grad_stream(rng, shape, T, zeros=False):
        w_new, s = opt.step(w, g, s)
        t = s.t
        bc1, bc2 = 1 - b1**t, 1 - b2**t
        m_hat = s.m / bc1
        if eps_hat:
            c = lr * bc2**0.5 / (np.sqrt(s.v) + eps)
        else:
            c = lr / (np.sqrt(s.v / bc2) + eps)
        S = c * m_hat
        w_bar = w - S
        WB = vnorm(w_bar, axes)
        tol = (16 * U * vnorm(S, axes) + 2 * U * WB) / WB + 2 * normalize_err(n)
        np.testing.assert_array_less(vnorm(w_new - w_bar / WB, axes), tol)
        w = w_new


@given(n=st.integers(2, 16), seed=seeds, b1=betas1, b2=st.floats(0.5, 0.9999), lr=lrs, T=st.integers(1, 10))
def test_p3_contrast_adam_step_is_not_parallel_to_m_hat(n, seed, b1, b2, lr, T):
    """ND-Adam P3, contrast: Adam rescales each coordinate, so its step is not parallel to
    -m_hat.  For a constant gradient g (eps=0), m_hat = g and v_hat = g^2, so Adam's step is
    -lr sign(g) and cos(step, m_hat) = ||g||_1/(sqrt(n) ||g||_2) < 1 unless all |g_i| are equal.

    Tolerance: m_t is a sum of same-sign terms, each through <= 2t+2 roundings, and 1-b1^t
    has relative error <= 2u b1^t/(1-b1^t) + u (pow, then the subtraction): rho_m; v likewise
    rho_v (one more product).  The step then has relative error rho_m + rho_v/2 + 6u per
    coordinate, the measured difference theta_t - theta_{t-1} adds u(|theta_t| + |theta_{t-1}|)
    <= (2t+1)u lr.  Relative perturbations a, b of two vectors move their cosine by at most
    2(max|a| + max|b|); the test's cosine (a dot product and two norms) adds (2n+6)u, the
    expected value (n+5)u."""
    rng = np.random.default_rng(seed)
    mags = 10.0 ** rng.uniform(-3, 3, n)
    mags[0], mags[1] = 1.0, 2.0  # at least a factor 2 between two magnitudes
    g = mags * rng.choice([-1.0, 1.0], n)
    q = np.sum(np.abs(g)) / (math.sqrt(n) * np.linalg.norm(g))
    assert q < 1 - 1e-3  # the premise: magnitudes differ, so q is well below 1
    opt = refimpl.Adam(lr=lr, beta1=b1, beta2=b2, eps=0.0)
    theta = np.zeros(n)
    s = opt.init(theta)
    for t in range(1, T + 1):
        new, s = opt.step(theta, g, s)
        step = theta - new
        m_hat = s.m / (1 - b1**t)
        cos = np.dot(step, m_hat) / (np.linalg.norm(step) * np.linalg.norm(m_hat))
        rel_bc = lambda b: 2 * U * b**t / (1 - b**t) + U  # noqa: E731
        rho_m = (2 * t + 2) * U + rel_bc(b1) + U
        rho_v = (2 * t + 3) * U + rel_bc(b2) + U
        alpha = rho_m + rho_v / 2 + 6 * U + (2 * t + 1) * U
        tol = 2 * (alpha + rho_m) + (2 * n + 6) * U + (n + 5) * U
        assert abs(cos - q) <= tol
        assert 1 - cos > 1e-3 - tol
        theta = new


# ----------------------------------------------------------------------------- P4


@pytest.mark.claim("prop-ndadam-first-step-angle")
@given(layout=layouts(min_n=2), seed=seeds, lr=lrs, b1=betas1, b2=betas2, eps=st.floats(0.0, 1e-2),
       eps_hat=st.booleans(), scale=st.floats(-6, 2))
def test_p4_first_step_geometry(layout, seed, lr, b1, b2, eps, eps_hat, scale):
    """ND-Adam P4: from the zero state with a unit w0 and a tangent g, m_hat_1 = g and
    v_hat_1 = ||g||^2, so angle(w0, w1) = arctan(lr ||g|| / (||g|| + eps)) (paper form; for
    eps_hat the first-step eps is eps/sqrt(1-b2)).

    Tolerance: ||w1 - w1_exact|| <= nd_step_bound (a chord bounds the angle); the test's
    atan2 of x = w1.w0 ((n+1)u) and y = ||w1 - x w0|| ((n+5)u + (n+3)/2 u) adds their sum
    plus u; arctan of a value with relative error (n+3)/2 u + 3u adds at most half of that
    plus u; ||w0|| = 1 +- (n+5)/2 u tilts the exact angle by <= (n+5)/4 u: (3n+16)u overall."""
    shape, axes = layout
    n = vsize(shape, axes)
    rng = np.random.default_rng(seed)
    opt = refimpl.NDAdam(vector_axes=axes, lr_vector=lr, beta1=b1, beta2=b2, eps=eps, eps_hat=eps_hat)
    w0 = opt.normalize(rng.standard_normal(shape))
    g = project(rng.standard_normal(shape) * 10.0**scale, w0, axes)
    w1, _ = opt.step(w0, g, opt.init(w0))
    x = vsum(w1 * w0, axes)
    y = vnorm(w1 - x * w0, axes)
    angle = np.arctan2(y, x)
    G = vnorm(g, axes)
    eps1 = eps / math.sqrt(1 - b2) if eps_hat else eps
    expected = np.arctan(lr * G / (G + eps1))
    zeros = np.zeros_like(G)
    tol = nd_step_bound(w0, g, np.zeros(shape), zeros, t=1, axes=axes, b1=b1, b2=b2, lr=lr, eps=eps1) + (3 * n + 16) * U
    np.testing.assert_array_less(np.abs(angle - expected), tol)


# ----------------------------------------------------------------------------- P5


@given(layout=layouts(min_n=2), seed=seeds, lr=lrs, T=st.integers(1, 15))
def test_p5_reduces_to_normalized_projected_gradient_descent(layout, seed, lr, T):
    """ND-Adam P5: with beta1 = beta2 = 0 and eps = 0 every step is
    w <- normalize(w - lr g_perp/||g_perp||), g_perp the tangent projection of the raw gradient.

    Tolerance: the optimizer's and the test's step are two computations of the same exact
    step from the same w, so they differ by <= 2 nd_step_bound (with b1 = b2 = 0)."""
    shape, axes = layout
    rng = np.random.default_rng(seed)
    opt = refimpl.NDAdam(vector_axes=axes, lr_vector=lr, beta1=0.0, beta2=0.0, eps=0.0)
    w = opt.normalize(rng.standard_normal(shape))
    s = opt.init(w)
    for gbar in grad_stream(rng, shape, T, zeros=False):
        gp = project(gbar, w, axes)
        w_bar = w - lr * gp / vnorm(gp, axes)
        ref = w_bar / vnorm(w_bar, axes)
        tol = 2 * nd_step_bound(w, gbar, s.m, s.v, t=s.t + 1, axes=axes, b1=0.0, b2=0.0, lr=lr, eps=0.0)
        w, s = opt.step(w, gbar, s)
        np.testing.assert_array_less(vnorm(w - ref, axes), tol)


# ----------------------------------------------------------------------------- P6


@given(layout=layouts(min_n=2), seed=seeds, b1=betas1, b2=betas2, lr=lrs, eps_hat=st.booleans(), k=st.integers(-60, 60),
       T=st.integers(1, 15))
def test_p6_gradient_scale_invariance_power_of_two_bitwise(layout, seed, b1, b2, lr, eps_hat, k, T):
    """ND-Adam P6: with eps = 0, the trajectory for the gradients c*g equals that for g.  For
    c = 2**k the equality is bitwise: scaling by a power of two commutes with every rounding
    (no overflow or underflow here: |g| in 1e-6..1e6 times 2**+-60), the moments scale
    exactly (m by c, v by c^2, sqrt(v) by c), and m_hat/sqrt(v_hat) is unchanged."""
    shape, axes = layout
    rng = np.random.default_rng(seed)
    opt = refimpl.NDAdam(vector_axes=axes, lr_vector=lr, beta1=b1, beta2=b2, eps=0.0, eps_hat=eps_hat)
    w0 = opt.normalize(rng.standard_normal(shape))
    grads = grad_stream(rng, shape, T, zeros=False)
    c = 2.0**k
    for (wa, sa), (wb, sb) in zip(run(opt, w0, grads), run(opt, w0, [c * g for g in grads])):
        np.testing.assert_array_equal(wa, wb)
        np.testing.assert_array_equal(c * sa.m, sb.m)
        np.testing.assert_array_equal(c * c * sa.v, sb.v)


@given(layout=layouts(min_n=2), seed=seeds, b1=betas1, b2=betas2, lr=lrs, log_c=st.floats(-3, 3), T=st.integers(1, 15))
def test_p6_gradient_scale_invariance_any_scale(layout, seed, b1, b2, lr, log_c, T):
    """ND-Adam P6, any c in [1e-3, 1e3], eps = 0: at every state of the unscaled trajectory,
    the step taken with the scaled gradient c*g and the scaled state (c m, c^2 v) lands on the
    same w as the unscaled step.

    Tolerance: the unscaled step is within nd_step_bound(r_in=0) of its exact value, the
    scaled one within nd_step_bound(r_in=u) (c*g and c*m are one rounding each, c*c*v two),
    and the two exact values are equal (the invariance); the bound is scale-free, so the
    unscaled quantities serve for both."""
    shape, axes = layout
    rng = np.random.default_rng(seed)
    c = 10.0**log_c
    opt = refimpl.NDAdam(vector_axes=axes, lr_vector=lr, beta1=b1, beta2=b2, eps=0.0)
    w = opt.normalize(rng.standard_normal(shape))
    s = opt.init(w)
    for g in grad_stream(rng, shape, T, zeros=False):
        scaled_state = refimpl.NDAdamState(s.t, c * s.m, c * c * s.v)
        wb, _ = opt.step(w, c * g, scaled_state)
        kw = dict(t=s.t + 1, axes=axes, b1=b1, b2=b2, lr=lr, eps=0.0)
        tol = nd_step_bound(w, g, s.m, s.v, **kw) + nd_step_bound(w, g, s.m, s.v, r_in=U, **kw)
        w, s = opt.step(w, g, s)
        np.testing.assert_array_less(vnorm(w - wb, axes), tol)


# ----------------------------------------------------------------------------- P7


def scale_invariant_grad(w, a, axes):
    """Gradient of L(w) = a . (w/||w||): (a - (a.u) u)/||w||, u = w/||w||."""
    r = np.sqrt(vsum(w * w, axes))
    u_ = w / r
    return (a - vsum(a * u_, axes) * u_) / r


@pytest.mark.claim("prop-ndadam-effective-lr")
@given(layout=layouts(min_n=2), seed=seeds, b1=betas1, b2=betas2, lr=lrs, eps=st.sampled_from([0.0, 1e-8]),
       eps_hat=st.booleans(), k=st.integers(-30, 30), mant=st.floats(0.5, 1.0), T=st.integers(1, 15))
def test_p7a_weight_scale_invariance(layout, seed, b1, b2, lr, eps, eps_hat, k, mant, T):
    """ND-Adam P7(a): for a scale-invariant loss L(w) = a.(w/||w||), ND-Adam started from
    normalize(w0) and from normalize(c w0) follows the same trajectory: the initial
    normalization removes every trace of c.

    For c = 2**k the two starts are bitwise equal (scaling by a power of two is exact, so is
    the square root of a power of four), hence so are the trajectories.  For any c = mant*2**k
    the starts differ by at most normalize_err(n) each, plus u from rounding c*w0 (a relative
    perturbation u of every element moves the direction by <= u): (n+7)u."""
    shape, axes = layout
    n = vsize(shape, axes)
    rng = np.random.default_rng(seed)
    opt = refimpl.NDAdam(vector_axes=axes, lr_vector=lr, beta1=b1, beta2=b2, eps=eps, eps_hat=eps_hat)
    w0 = rng.standard_normal(shape)
    a = rng.standard_normal(shape)
    c = mant * 2.0**k
    wa, wb = opt.normalize(w0), opt.normalize(c * w0)
    np.testing.assert_array_less(vnorm(wa - wb, axes), (n + 7) * U)
    wb = opt.normalize(2.0**k * w0)
    np.testing.assert_array_equal(wa, wb)
    sa, sb = opt.init(wa), opt.init(wb)
    for _ in range(T):
        wa, sa = opt.step(wa, scale_invariant_grad(wa, a, axes), sa)
        wb, sb = opt.step(wb, scale_invariant_grad(wb, a, axes), sb)
        np.testing.assert_array_equal(wa, wb)
        np.testing.assert_array_equal(sa.m, sb.m)
        np.testing.assert_array_equal(sa.v, sb.v)


# ----------------------------------------------------------------------------- P8


@pytest.mark.claim("prop-ndadam-code-variants")
@given(seed=seeds, n=st.integers(2, 8), k=st.integers(1, 4), lr_v=lrs, lr_s=lrs, b1=betas1, b2=betas2,
       eps=st.sampled_from([0.0, 1e-8, 1e-3]), eps_hat=st.booleans(), wd=st.sampled_from([0.0, 5e-6, 0.1]),
       schedule=st.booleans(), T=st.integers(1, 20))
def test_p8_scalar_params_follow_adam_exactly(seed, n, k, lr_v, lr_s, b1, b2, eps, eps_hat, wd, schedule, T):
    """ND-Adam P8: parameters not named in vector_axes get refimpl.Adam, bitwise (the same
    function on the same inputs), with lr_scalar as Adam's lr (also as a schedule) and
    weight_decay_scalar as coupled L2 weight decay; the vectors never see the weight decay
    (their trajectory is bitwise the same with and without it)."""
    rng = np.random.default_rng(seed)
    lr_scalar = (lambda t: lr_s * 0.9**t) if schedule else lr_s
    kw = dict(vector_axes={"w": (0,)}, lr_vector=lr_v, lr_scalar=lr_scalar, beta1=b1, beta2=b2, eps=eps,
              eps_hat=eps_hat)
    nd = refimpl.NDAdam(weight_decay_scalar=wd, **kw)
    nd0 = refimpl.NDAdam(weight_decay_scalar=0.0, **kw)
    adam = refimpl.Adam(lr=lr_scalar, beta1=b1, beta2=b2, eps=eps, eps_hat=eps_hat, weight_decay=wd)
    p = nd.normalize({"w": rng.standard_normal((n, k)), "b": rng.standard_normal(k), "gamma": rng.standard_normal(k)})
    scalars = {"b": p["b"], "gamma": p["gamma"]}
    sn, sn0, sa = nd.init(p), nd0.init(p), adam.init(scalars)
    p0 = p
    for _ in range(T):
        g = {key: gaussian(rng, x.shape, -3, 3) for key, x in p.items()}  # nonzero: Adam with eps=0 needs it
        p, sn = nd.step(p, g, sn)
        p0, sn0 = nd0.step(p0, g, sn0)
        scalars, sa = adam.step(scalars, {"b": g["b"], "gamma": g["gamma"]}, sa)
        for key in ("b", "gamma"):
            np.testing.assert_array_equal(p[key], scalars[key])
            np.testing.assert_array_equal(sn.m[key], sa.m[key])
            np.testing.assert_array_equal(sn.v[key], sa.v[key])
        np.testing.assert_array_equal(p["w"], p0["w"])
        np.testing.assert_array_equal(sn.v["w"], sn0.v["w"])


# ----------------------------------------------------------------------------- P9


@given(layout=layouts(), seed=seeds, b2=betas2, lr=lrs, eps=pos_eps, T=st.integers(1, 20))
def test_p9_second_moment_is_sum_of_adam_second_moments(layout, seed, b2, lr, eps, T):
    """ND-Adam P9: v has size 1 along the vector axes and equals the sum over each vector of
    Adam's per-coordinate v computed from the same projected gradients.

    beta1 = 0 makes the state expose the projected gradient exactly: m = 0*m + 1*g = g.
    Tolerance: all terms are >= 0, so relative bounds add.  ND-Adam: sum of n squares (n+1)u,
    then (1-b2)* u, and each of the <= t recursion steps a product and a sum, 2u: (n+2t+3)u.
    Adam: per coordinate (1-b2)*g*g 2u, a sum u, 2u per later step: (2t+3)u, then the test's
    sum over n: (n+1)u.  Together (2n+4t+8)u relative."""
    shape, axes = layout
    n = vsize(shape, axes)
    rng = np.random.default_rng(seed)
    opt = refimpl.NDAdam(vector_axes=axes, lr_vector=lr, beta1=0.0, beta2=b2, eps=eps)
    adam = refimpl.Adam(beta1=0.0, beta2=b2)
    w = opt.normalize(rng.standard_normal(shape))
    s, sa = opt.init(w), adam.init(w)
    v_shape = tuple(1 if i in axes else d for i, d in enumerate(shape))
    for g in grad_stream(rng, shape, T):
        w, s = opt.step(w, g, s)
        _, sa = adam.step(np.zeros(shape), s.m, sa)  # s.m is the projected gradient itself
        assert s.v.shape == v_shape
        expected = vsum(sa.v, axes)
        tol = (2 * n + 4 * s.t + 8) * U * expected
        np.testing.assert_array_less(np.abs(s.v - expected), tol + np.finfo(float).tiny)


# ----------------------------------------------------------------------------- P11


@given(seed=seeds, k=st.integers(1, 5), b1=betas1, b2=betas2, lr=lrs, eps=pos_eps, eps_hat=st.booleans(),
       T=st.integers(1, 20))
def test_p11_one_element_vectors_never_move(seed, k, b1, b2, lr, eps, eps_hat, T):
    """ND-Adam P11: a one-element vector has the tangent space {0}: it never moves, and its
    moments stay 0.  Exact: normalize gives +-1 exactly (sqrt(fl(x*x)) = |x| in binary
    floating point), then gbar - (gbar*w)*w = gbar - gbar = 0, the step is 0/(0+eps) = 0 and
    w/sqrt(1) = w.  Layouts: one axis of size 1, and two axes of size 1 of a 3-d array."""
    rng = np.random.default_rng(seed)
    opt = refimpl.NDAdam(vector_axes={"a": (0,), "b": (1, 2)}, lr_vector=lr, beta1=b1, beta2=b2, eps=eps,
                         eps_hat=eps_hat)
    p0 = opt.normalize({"a": gaussian(rng, (1, k), -3, 3), "b": gaussian(rng, (k, 1, 1), -3, 3)})
    for x in p0.values():
        np.testing.assert_array_equal(np.abs(x), 1.0)
    p, s = p0, opt.init(p0)
    for _ in range(T):
        p, s = opt.step(p, {key: gaussian(rng, x.shape) for key, x in p.items()}, s)
        for key in p:
            np.testing.assert_array_equal(p[key], p0[key])
            np.testing.assert_array_equal(s.m[key], 0.0)
            np.testing.assert_array_equal(s.v[key], 0.0)


@given(layout=layouts(), seed=seeds, b1=betas1, b2=betas2, lr=lrs, eps=pos_eps, eps_hat=st.booleans(),
       T=st.integers(1, 10))
def test_p11_zero_gradient_leaves_w_unchanged(layout, seed, b1, b2, lr, eps, eps_hat, T):
    """ND-Adam P11: zero gradients from the zero state leave w unchanged (the state stays
    exactly 0, the step is 0/(0+eps) = 0, no NaN); after any history, with beta1 = 0 a zero
    gradient gives m = 0, v = b2 v (bitwise) and again w unchanged.

    Tolerance: only (13b) acts, re-normalizing an already unit vector: ||w|| = 1 +- (n+5)/2 u,
    its computed norm adds (n+3)/2 u and the division u, so each step moves each element by
    <= (n+5)u |w_i|; t steps by <= t(n+5)u |w_i| (to first order)."""
    shape, axes = layout
    n = vsize(shape, axes)
    rng = np.random.default_rng(seed)
    opt = refimpl.NDAdam(vector_axes=axes, lr_vector=lr, beta1=b1, beta2=b2, eps=eps, eps_hat=eps_hat)
    w0 = opt.normalize(rng.standard_normal(shape))
    zero = np.zeros(shape)
    for t, (w, s) in enumerate(run(opt, w0, [zero] * T), start=1):
        assert np.all(np.isfinite(w))
        np.testing.assert_array_equal(s.m, 0.0)
        np.testing.assert_array_equal(s.v, 0.0)
        np.testing.assert_array_less(np.abs(w - w0), t * (n + 5) * U * np.abs(w0) + np.finfo(float).tiny)
    # beta1 = 0 after a nonzero history
    opt0 = refimpl.NDAdam(vector_axes=axes, lr_vector=lr, beta1=0.0, beta2=b2, eps=eps, eps_hat=eps_hat)
    w, s = run(opt0, w0, grad_stream(rng, shape, T))[-1]
    w_new, s_new = opt0.step(w, zero, s)
    np.testing.assert_array_equal(s_new.m, 0.0)
    np.testing.assert_array_equal(s_new.v, b2 * s.v)
    np.testing.assert_array_less(np.abs(w_new - w), (n + 5) * U * np.abs(w) + np.finfo(float).tiny)


# ----------------------------------------------------------------------------- P12


@st.composite
def conv_shapes(draw):
    """(C_out, C_in, kh, kw) with at least 2 weights per filter (eps = 0 is drawn, and a
    one-element vector has no tangent direction: 0/0)."""
    shape = tuple(draw(st.integers(1, 4)) for _ in range(2)) + tuple(draw(st.integers(1, 3)) for _ in range(2))
    assume(shape[1] * shape[2] * shape[3] >= 2)
    return shape


@pytest.mark.claim("prop-ndadam-code-variants")
@given(shape=conv_shapes(), seed=seeds, b1=betas1, b2=betas2, lr=lrs, eps=st.sampled_from([0.0, 1e-8]),
       eps_hat=st.booleans(), T=st.integers(1, 10))
def test_p12_cross_layout_equivalence(shape, seed, b1, b2, lr, eps, eps_hat, T):
    """ND-Adam P12: vector_axes=(1, 2, 3) on a PyTorch kernel (C_out, C_in, kh, kw) and
    vector_axes=(0, 1, 2) on the TensorFlow kernel (kh, kw, C_in, C_out) (the transpose
    (2, 3, 1, 0)) define the same update.  Checked at every state of the PyTorch-layout
    trajectory: the TF-layout step from the transposed state lands on the transposed result.

    Tolerance: the two layouts sum the same elements in possibly different orders; each is
    within nd_step_bound of the exact step, so they differ by <= 2 nd_step_bound, and their
    v by <= 2 rv v (rv the relative bound of step (9) in ``nd_step_bound``: the projected
    gradients themselves differ through the dot product's order)."""
    perm = (2, 3, 1, 0)
    inv = tuple(np.argsort(perm))
    rng = np.random.default_rng(seed)
    kw = dict(lr_vector=lr, beta1=b1, beta2=b2, eps=eps, eps_hat=eps_hat)
    pt, tf = refimpl.NDAdam(vector_axes=(1, 2, 3), **kw), refimpl.NDAdam(vector_axes=(0, 1, 2), **kw)
    w = pt.normalize(rng.standard_normal(shape))
    s = pt.init(w)
    assert tf.init(w.transpose(perm)).v.shape == (1, 1, 1, shape[0])
    for g in grad_stream(rng, shape, T, zeros=False):
        s_tf = refimpl.NDAdamState(s.t, s.m.transpose(perm), s.v.transpose(perm))
        w_tf, s_tf = tf.step(w.transpose(perm), g.transpose(perm), s_tf)
        rv = _projection_and_v_errors(w, g, s.v, axes=(1, 2, 3), b2=b2)[3]
        tol = 2 * nd_step_bound(w, g, s.m, s.v, t=s.t + 1, axes=(1, 2, 3), b1=b1, b2=b2, lr=lr,
                                eps=eps / math.sqrt(1 - b2 ** (s.t + 1)) if eps_hat else eps)
        w, s = pt.step(w, g, s)
        np.testing.assert_array_less(vnorm(w_tf.transpose(inv) - w, (1, 2, 3)), tol)
        np.testing.assert_array_less(np.abs(s_tf.v.transpose(inv) - s.v), 2 * rv * s.v)


@pytest.mark.claim("prop-ndadam-code-variants")
@given(layout=layouts(), seed=seeds, b1=betas1, b2=betas2, lr_v=lrs, lr_s=lrs, eps=st.floats(1e-10, 1e-1),
       T=st.integers(1, 15))
def test_p12_eps_hat_equals_time_varying_eps(layout, seed, b1, b2, lr_v, lr_s, eps, T):
    """ND-Adam P12: eps_hat=True (the official PyTorch code) equals the paper's form with the
    time-varying eps_t = eps/sqrt(1-b2^t), for weight vectors and scalar parameters alike.
    Checked at every state of the eps_hat trajectory with a fresh NDAdam(eps=eps_t) per step.

    Tolerance: the moment updates are the same code in both forms (bitwise equal).  The step
    S: eps_hat has <= 8 roundings (bc2**0.5 2u, lr*, /bc1, *m, sqrt, +eps, /), the paper form
    <= 7 (m/bc1, v/bc2, sqrt, eps_t 3u, +, lr*, /): 15u <= 16u relative in S.  Vectors: the
    subtraction adds u||w_bar|| each, then normalization (Jacobian 1/||w_bar||, plus
    normalize_err(n) each).  Scalars: |dtheta_i| <= 16u |S_i| + 2u |theta_i|."""
    shape, axes = layout
    n = vsize(shape, axes)
    rng = np.random.default_rng(seed)
    kw = dict(vector_axes={"w": axes}, lr_vector=lr_v, lr_scalar=lr_s, beta1=b1, beta2=b2)
    hat = refimpl.NDAdam(eps=eps, eps_hat=True, **kw)
    p = hat.normalize({"w": rng.standard_normal(shape), "b": rng.standard_normal(shape)})
    s = hat.init(p)
    for _ in range(T):
        g = {"w": gaussian(rng, shape), "b": gaussian(rng, shape)}
        t = s.t + 1
        bc1, bc2 = 1 - b1**t, 1 - b2**t
        paper = refimpl.NDAdam(eps=eps / bc2**0.5, eps_hat=False, **kw)
        q, sq = paper.step(p, g, s)
        p_new, s_new = hat.step(p, g, s)
        for f in ("m", "v"):
            for key in p:
                np.testing.assert_array_equal(getattr(sq, f)[key], getattr(s_new, f)[key])
        # weight vectors
        S = lr_v * (s_new.m["w"] / bc1) / (np.sqrt(s_new.v["w"] / bc2) + eps / bc2**0.5)
        WB = vnorm(p["w"] - S, axes)
        tol = (16 * U * vnorm(S, axes) + 2 * U * WB) / WB + 2 * normalize_err(n)
        np.testing.assert_array_less(vnorm(q["w"] - p_new["w"], axes), tol)
        # scalars
        S = lr_s * (s_new.m["b"] / bc1) / (np.sqrt(s_new.v["b"] / bc2) + eps / bc2**0.5)
        tol = 16 * U * np.abs(S) + 2 * U * np.abs(p_new["b"])
        np.testing.assert_array_less(np.abs(q["b"] - p_new["b"]), tol + np.finfo(float).tiny)
        p, s = p_new, s_new


@pytest.mark.parametrize("scale", [1e-170, 1e-30, 1.0, 1e30, 1e200])
def test_normalize_handles_any_finite_magnitude(scale):
    """normalize() divides by the largest entry before squaring, so vectors whose squares would
    under- or overflow still get their direction: (1, 2)/sqrt(5) to a few roundings (a division,
    a sum of two squares, a root and a division: 6u relative)."""
    opt = refimpl.NDAdam(vector_axes=(0,))
    w = opt.normalize(np.array([[1.0], [2.0]]) * scale)
    np.testing.assert_allclose(w.ravel(), np.array([1.0, 2.0]) / np.sqrt(5.0), rtol=6 * 2.0**-53)
