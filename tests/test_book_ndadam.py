"""Tests of the claims of the chapter "Why Adam generalizes worse, and ND-Adam" (book/ndadam*.md).

Each test names the claim it verifies with ``@pytest.mark.claim``. Other claims of the chapter
are verified by tests in test_properties_ndadam.py and test_differential_ndadam_official.py,
which carry the same markers.

Tolerances follow the conventions of test_properties_ndadam.py: first-order rounding-error
bounds in units of the unit roundoff u = 2**-53, derived in each docstring from the arithmetic
of the code under test and of the test itself. Two measuring tools make the test side cheap to
analyse: ``math.fsum`` returns the correctly rounded sum of the float terms it is given, and
``fractions.Fraction`` computes exactly with the rational values of floats.

The scale-invariant test loss is the one the P7 tests use, f(w) = a . w/||w|| (a plane through
the origin seen on the sphere), with the gradient computed by ``si_grad`` below.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import refimpl
from test_properties_ndadam import _projection_and_v_errors, nd_step_bound, normalize_err

U = 2.0**-53
seeds = st.integers(0, 2**32 - 1)


# ----------------------------------------------------------------------------- helpers


def si_grad(w, a):
    """Gradient of the scale-invariant loss f(w) = a . w/||w|| for one vector w:
    (a - (a.u) u)/r with r = ||w||, u = w/r."""
    r = math.sqrt(float(np.sum(w * w)))
    u = w / r
    return (a - float(np.sum(a * u)) * u) / r


def si_radial_bound(w, a):
    """Bound on |w_hat . si_grad(w, a)| (w_hat the exact unit vector of w): si_grad is tangent
    only up to rounding.

    r = fl(||w||) has relative error (n+1)u/2 + u (a sum of n squares, then a square root);
    u_i = fl(w_i/r) = w_hat_i (1 + th_i), |th_i| <= (n+5)u/2, so ||u - w_hat|| <= (n+5)u/2.
    s = fl(a.u) is within (n+1)u ||a|| of a.u. h_i = fl(a_i - fl(s u_i)) adds u|s u_i| + u|h_i|,
    and g = h/r adds u|g_i|. Then w_hat.h = (w_hat - u).a + (u.a - s) - s w_hat.(u - w_hat)
    + w_hat.(rounding of h): (n+5)/2 + (n+1) + (n+5)/2 + 2 units of u ||a||, and the division
    one more unit of ||h||/r <= ||a||/r: |w_hat . g| <= (2n + 9) u ||a|| / r.
    """
    n = w.size
    return (2 * n + 9) * U * float(np.linalg.norm(a)) / math.sqrt(float(np.sum(w * w)))


def q(x):
    """The exact rational values of an array of floats."""
    return [Fraction(float(v)) for v in np.ravel(x)]


def qdot(a, b):
    return sum(x * y for x, y in zip(q(a), q(b)))


def sgd_step_error(w, g, w_new, *, lr, wd):
    """Bound on ||w_new(computed) - w_new(exact)|| for refimpl's SGD step without momentum,
    w - lr*(g + wd*w): fl(wd*w_i) adds u wd|w_i|, the sum u|g_i + wd w_i|, the product with lr
    u lr|g_i + wd w_i|, the subtraction u|w_new_i| (first order)."""
    gt = np.abs(g + wd * w)
    e = lr * U * (wd * np.abs(w) + 2 * gt) + U * np.abs(w_new)
    return float(np.linalg.norm(e))


def measured_angle(w_prev, w_new):
    """The angle between w_prev and w_new as the P4 test measures it: atan2 of the components
    of w_new along and across the unit vector of w_prev."""
    w_hat = w_prev / np.linalg.norm(w_prev)
    x = float(np.sum(w_new * w_hat))
    return math.atan2(float(np.linalg.norm(w_new - x * w_hat)), x)


# ----------------------------------------------------------------------------- the lemma


class Dual:
    """A number with its exact gradient (forward-mode differentiation over the rationals)."""

    def __init__(self, v, d):
        self.v, self.d = Fraction(v), tuple(d)

    @staticmethod
    def lift(x, n):
        return x if isinstance(x, Dual) else Dual(x, (Fraction(0),) * n)

    def __add__(self, o):
        o = Dual.lift(o, len(self.d))
        return Dual(self.v + o.v, (a + b for a, b in zip(self.d, o.d)))

    __radd__ = __add__

    def __neg__(self):
        return Dual(-self.v, (-a for a in self.d))

    def __sub__(self, o):
        return self + (-Dual.lift(o, len(self.d)))

    def __rsub__(self, o):
        return Dual.lift(o, len(self.d)) - self

    def __mul__(self, o):
        o = Dual.lift(o, len(self.d))
        return Dual(self.v * o.v, (self.v * b + o.v * a for a, b in zip(self.d, o.d)))

    __rmul__ = __mul__

    def __truediv__(self, o):
        o = Dual.lift(o, len(self.d))
        return Dual(self.v / o.v, ((a * o.v - self.v * b) / (o.v * o.v) for a, b in zip(self.d, o.d)))

    def __rtruediv__(self, o):
        return Dual.lift(o, len(self.d)) / self


def bn_loss(w, X, A, y):
    """A scale-invariant loss of a batch-normalized unit, rational in w: with z = X w,
    d = z - mean(z) and s2 = mean(d^2) (so that d_b^2/s2 = zhat_b^2),
    f = sum_bc A_bc d_b d_c / s2 + sum_b y_b / (1 + d_b^2 / s2)."""
    B = len(X)
    z = [sum((X[b][i] * w[i] for i in range(len(w))), Fraction(0)) for b in range(B)]
    mu = sum(z, Fraction(0)) / B
    d = [zb - mu for zb in z]
    s2 = sum((db * db for db in d), Fraction(0)) / B
    quad = sum((A[b][c] * d[b] * d[c] for b in range(B) for c in range(B)), Fraction(0)) / s2
    return quad + sum((y[b] / (1 + d[b] * d[b] / s2) for b in range(B)), Fraction(0))


def value_and_grad(w, X, A, y):
    n = len(w)
    seeds_ = [Dual(w[i], (Fraction(int(i == j)) for j in range(n))) for i in range(n)]
    f = bn_loss(seeds_, X, A, y)
    return f.v, list(f.d)


small_ints = st.integers(-5, 5)


@pytest.mark.claim("lem-ndadam-scale-invariance")
@given(data=st.data(), n=st.integers(2, 4), B=st.integers(2, 5), p=st.integers(1, 60), r=st.integers(1, 60))
def test_scale_invariant_gradient_identities_exact(data, n, B, p, r):
    """The lemma, in exact rational arithmetic: for a scale-invariant loss of a batch-normalized
    unit with an independently computed (forward-mode) gradient, f(cw) = f(w),
    grad f(cw) = grad f(w)/c and w . grad f(w) = 0, with no tolerance.

    The loss is rational in w (it uses zhat^2 and zhat_b zhat_c, never zhat alone), so
    everything is computed exactly with Fractions; c = p/r is any positive rational."""
    X = data.draw(st.lists(st.lists(small_ints, min_size=n, max_size=n), min_size=B, max_size=B))
    A = data.draw(st.lists(st.lists(small_ints, min_size=B, max_size=B), min_size=B, max_size=B))
    y = data.draw(st.lists(small_ints, min_size=B, max_size=B))
    w = [Fraction(v) for v in data.draw(st.lists(small_ints, min_size=n, max_size=n))]
    z = [sum(X[b][i] * w[i] for i in range(n)) for b in range(B)]
    assume(len(set(z)) > 1)  # the batch variance must be positive
    c = Fraction(p, r)
    f, g = value_and_grad(w, X, A, y)
    fc, gc = value_and_grad([c * wi for wi in w], X, A, y)
    assert fc == f
    assert gc == [gi / c for gi in g]
    assert sum(wi * gi for wi, gi in zip(w, g)) == 0


# ----------------------------------------------------------------------------- effective learning rates


@st.composite
def si_streams(draw, max_n=16):
    """A start w0, a power of two c = 2**k, and a stream of scale-invariant losses
    f_t(w) = a_t . w/||w|| + 0.5 ||M w/||w||||^2 (one per step, like minibatches)."""
    n = draw(st.integers(2, max_n))
    rng = np.random.default_rng(draw(seeds))
    T = draw(st.integers(1, 20))
    k = draw(st.integers(-20, 20))
    w0 = rng.standard_normal(n) * 10.0 ** rng.uniform(-2, 2)
    M = rng.standard_normal((n, n))
    a_stream = [rng.standard_normal(n) * 10.0 ** rng.uniform(-3, 3) for _ in range(T)]
    return w0, 2.0**k, M, a_stream


def quad_si_grad(w, a, M):
    """Gradient of a . u + 0.5 ||M u||^2 at u = w/||w||: (p - (p.u) u)/||w||, p = a + M^T M u.
    For w -> 2**k w every rounding commutes with the scaling: ||2**k w|| = 2**k ||w|| exactly
    (the squares scale by 4**k, the square root of 4**k x is 2**k sqrt(x)), u is bitwise the
    same, and the result is divided by 2**k exactly."""
    r = math.sqrt(float(np.sum(w * w)))
    u = w / r
    p = a + M.T @ (M @ u)
    return (p - float(np.sum(p * u)) * u) / r


def assert_run_from_scaled_start_is_scaled(big, unit, w0, c, M, a_stream):
    """Step ``big`` from c*w0 and ``unit`` from w0 in lockstep on the scale-invariant loss;
    the first iterate must be exactly c times the second after every step."""
    wa, wb = c * w0, w0
    sa, sb = big.init(wa), unit.init(wb)
    for a in a_stream:
        wa, sa = big.step(wa, quad_si_grad(wa, a, M), sa)
        wb, sb = unit.step(wb, quad_si_grad(wb, a, M), sb)
        np.testing.assert_array_equal(wa, c * wb)


@pytest.mark.claim("prop-ndadam-effective-lr")
@given(stream=si_streams(), lr=st.floats(1e-3, 1.0), momentum=st.sampled_from([0.0, 0.5, 0.9]),
       dampening=st.sampled_from([0.0, 0.1]), nesterov=st.booleans(),
       wd=st.sampled_from([0.0, 1e-4, 0.1]))
def test_sgd_from_a_scaled_start_is_the_scaled_run(stream, lr, momentum, dampening, nesterov, wd):
    """SGD(lr, wd) from c w0 equals c times SGD(lr/c^2, c^2 wd) from w0 at every step, bitwise
    for c = 2**k (momentum, dampening, Nesterov and L2 decay included).

    Bitwise: every operation of the SGD step is correctly rounded, so scaling an operand by a
    power of two scales the rounded result by the same power (no overflow or underflow occurs
    for |k| <= 20 at these magnitudes). The gradients at c w_t are bitwise grad(w_t)/c
    (quad_si_grad), lr/c^2 and c^2 wd are exact, and the induction of the proof then holds
    operation by operation."""
    w0, c, M, a_stream = stream
    nesterov = nesterov and momentum > 0 and dampening == 0
    kw = dict(momentum=momentum, dampening=dampening, nesterov=nesterov)
    big = refimpl.SGD(lr=lr, weight_decay=wd, **kw)
    unit = refimpl.SGD(lr=lr / c**2, weight_decay=wd * c**2, **kw)
    assert_run_from_scaled_start_is_scaled(big, unit, w0, c, M, a_stream)


@pytest.mark.claim("prop-ndadam-effective-lr")
@given(stream=si_streams(), lr=st.floats(1e-4, 1.0), b1=st.floats(0.0, 0.99), b2=st.floats(0.0, 0.9999),
       eps=st.sampled_from([0.0, 1e-8, 1e-3]), eps_hat=st.booleans(), bias_correction=st.booleans(),
       amsgrad=st.sampled_from([None, "v", "v_hat"]), wd=st.sampled_from([0.0, 1e-4, 0.1]))
def test_adam_from_a_scaled_start_is_the_scaled_run(stream, lr, b1, b2, eps, eps_hat, bias_correction, amsgrad,
                                                    wd):
    """Adam(lr, eps, wd) from c w0 equals c times Adam(lr/c, c eps, c^2 wd) from w0 at every
    step, bitwise for c = 2**k, with or without bias correction, AMSGrad (either maximum) or
    the epsilon-hat form, and with L2 weight decay.

    Bitwise, by the argument of the SGD test: the moments of the run from c w0 are m/c and
    v/c^2 bit for bit, its denominator sqrt(v_hat)/c + eps is (sqrt(v_hat) + c eps)/c bit for
    bit, and lr * m_hat / denominator is the same number in both runs, which the run from w0
    multiplies by lr/c instead of lr."""
    w0, c, M, a_stream = stream
    kw = dict(beta1=b1, beta2=b2, eps_hat=eps_hat, bias_correction=bias_correction, amsgrad=amsgrad is not None,
              amsgrad_max_of=amsgrad or "v")
    big = refimpl.Adam(lr=lr, eps=eps, weight_decay=wd, **kw)
    unit = refimpl.Adam(lr=lr / c, eps=eps * c, weight_decay=wd * c**2, **kw)
    assert_run_from_scaled_start_is_scaled(big, unit, w0, c, M, a_stream)


# ----------------------------------------------------------------------------- weight decay


@st.composite
def decay_setups(draw, lam_zero=True):
    """A vector w (n in 2..32, norm 10**U(-3, 3)), a loss direction a, and (lr, wd) with
    lr*wd < 0.9; the loss gradient's size is gratio * wd * ||w|| (gratio 10**U(-3, 3)), so
    that the decay and the loss forces are comparable within six decades."""
    n = draw(st.integers(2, 32))
    rng = np.random.default_rng(draw(seeds))
    lr = draw(st.floats(1e-3, 1.0))
    wd = 0.0 if (lam_zero and draw(st.booleans())) else draw(st.floats(1e-4, 0.9)) / lr
    assume(lr * wd < 0.9)
    rho = 10.0 ** rng.uniform(-3, 3)
    w = rng.standard_normal(n)
    w *= rho / np.linalg.norm(w)
    a = rng.standard_normal(n)
    gratio = 10.0 ** rng.uniform(-3, 3)
    a *= gratio * max(wd, 1e-2) * rho**2 / np.linalg.norm(si_grad(w, a) * rho)
    return w, a, lr, wd, draw(st.integers(1, 10))


@pytest.mark.claim("prop-ndadam-l2-equilibrium", "prop-ndadam-eq7")
@given(setup=decay_setups())
def test_sgd_decay_norm_identities_on_a_scale_invariant_loss(setup):
    """Parts 1 and 2 of the equilibrium proposition, and part 3 of the Eq. (7) proposition:
    for SGD with decay on a scale-invariant loss, at every step
    rho'^2 = (1 - lr wd)^2 rho^2 + lr^2 ||g||^2 and ||dw||^2 - (rho'^2 - rho^2) = 2 lr wd rho^2
    (that is, eta^2 - delta = 2 lr wd); Eq. (7)'s denominator is rounding error, so its value
    exceeds the measured step by more than 10**6; with wd = 0 the norm never decreases and
    rho_t^4 >= rho_0^4 + 2 lr^2 sum_s ||g_s||^2 rho_s^2.

    Measurements are exact (Fractions of the stored floats). The exact step from the stored w
    and the computed g differs from the two identities only through w.g, which si_radial_bound
    bounds by rho E_rad: 2 lr (1 - lr wd) rho E_rad in the first, 2 lr rho E_rad in the second.
    refimpl's rounding, ||e|| <= sgd_step_error, moves rho'^2 by <= 2||w'|| ||e|| + ||e||^2
    and the second quantity, -2 w.w' + 2 rho^2 (linear in w'), by <= 2 rho ||e||. For the
    cumulative inequality, each step may lose 2 lr rho_s E_rad,s + 2||w_s+1|| ||e_s|| in
    rho^2, i.e. 2 rho_s+1^2 times that in rho^4."""
    w, a, lr, wd, T = setup
    opt = refimpl.SGD(lr=lr, weight_decay=wd)
    s = opt.init(w)
    rho0_sq = qdot(w, w)
    grad_sum, slack = Fraction(0), Fraction(0)
    for _ in range(T):
        g = si_grad(w, a)
        w_new, s = opt.step(w, g, s)
        rho_sq, g_sq = qdot(w, w), qdot(g, g)
        rho = math.sqrt(rho_sq)
        E_rad = si_radial_bound(w, a)
        e = sgd_step_error(w, g, w_new, lr=lr, wd=wd)
        new_sq = qdot(w_new, w_new)
        k = (1 - Fraction(lr) * Fraction(wd)) ** 2
        tol1 = 2 * lr * (1 - lr * wd) * rho * E_rad + 2 * math.sqrt(new_sq) * e + e * e
        assert abs(new_sq - (k * rho_sq + Fraction(lr) ** 2 * g_sq)) <= Fraction(tol1)
        Q = 2 * rho_sq - 2 * qdot(w, w_new)         # ||w' - w||^2 - (||w'||^2 - ||w||^2)
        tol2 = 2 * lr * rho * E_rad + 2 * rho * e
        assert abs(Q - 2 * Fraction(lr) * Fraction(wd) * rho_sq) <= Fraction(tol2)
        if wd > 0:
            assert tol2 < 1e-6 * 2 * lr * wd * rho_sq  # the check is sharp
            # Eq. (7): alpha*lambda*||l_perp||/|l_par|, with |l_par| <= E_rad
            eta = math.sqrt(float(qdot(w_new - w, w_new - w) / rho_sq))
            assert lr * wd * math.sqrt(float(g_sq)) / E_rad > 1e6 * eta
        else:
            assert new_sq >= rho_sq - Fraction(tol1)
            grad_sum += g_sq * rho_sq
            tau = 2 * lr * rho * E_rad + 2 * math.sqrt(new_sq) * e + e * e
            slack += 2 * (new_sq + Fraction(tau)) * Fraction(tau)
        w = w_new
    if wd == 0:
        assert qdot(w, w) ** 2 >= rho0_sq**2 + 2 * Fraction(lr) ** 2 * grad_sum - slack


def tangent_oracle(w, z, G):
    """A gradient of size G/||w|| along a random tangent direction (the projection of z),
    modelling a loss with ||grad f(w_hat)|| = G at every step; returns it with a bound E on
    |w_hat . t_hat| for its unit direction t_hat (2n+8)u ||z||/||t|| + u (the projection as in
    si_radial_bound, then the normalization)."""
    n = w.size
    r = math.sqrt(float(np.sum(w * w)))
    u = w / r
    t = z - float(np.sum(z * u)) * u
    tn = float(np.linalg.norm(t))
    E = (2 * n + 8) * U * float(np.linalg.norm(z)) / tn + U
    return (G / r) * (t / tn), E


@pytest.mark.claim("prop-ndadam-l2-equilibrium")
@given(n=st.integers(2, 16), seed=seeds, lr=st.floats(0.05, 1.0), p=st.floats(0.05, 0.25),
       logG=st.floats(-3, 3), start=st.floats(1.0, 4.0))
def test_sgd_decay_converges_to_the_equilibrium_norm(n, seed, lr, p, logG, start):
    """Part 3 of the equilibrium proposition: with gradients of constant size G/||w|| along
    random tangent directions and lr*wd = p in [0.05, 0.25], rho_t^2 approaches
    x* = G sqrt(lr/(wd(2 - lr wd))) geometrically from rho_0^2 = start * x*, and the relative
    step approaches sqrt(2 lr wd).

    Tolerance: x_t = rho_t^2 is measured with math.fsum of the rounded squares (relative error
    2u). Each step x -> h(x) = a x + b/x (a = (1 - p)^2, b = lr^2 G^2) is perturbed by
    eps_t <= 2 lr (1-p) G E_t (the oracle's radial part) + b/x 2(n+6)u (its length: the norm,
    the two divisions and the product) + 2||w'|| ||e|| (refimpl's rounding). Since a >= 1/2
    and x stays >= (1-a) x*/a, the proof gives D_t+1 <= a D_t + eps_t for D_t = |x_t - x*|;
    the bound is propagated step by step, plus 2u x_t for the measurement and 5u x* for
    computing x* in floating point. Over 300 steps a**300 < 1e-13, so the final bound is
    close to rounding level (asserted below 1e-10 x*, to keep the test sharp). The final
    relative step: eta^2 = 2 p + delta + (2 lr w.g - 2 w.e)/rho^2 (part 2 with rounding),
    |delta| <= (D_T-1 + D_T)/x_T-1."""
    rng = np.random.default_rng(seed)
    wd = p / lr
    G = 10.0**logG
    a = (1 - p) ** 2
    x_star = G * math.sqrt(lr / (wd * (2 - p)))
    w = rng.standard_normal(n)
    w *= math.sqrt(start * x_star) / np.linalg.norm(w)
    opt = refimpl.SGD(lr=lr, weight_decay=wd)
    s = opt.init(w)
    x = math.fsum(w * w)
    D = abs(x - x_star) + 2 * U * x + 5 * U * x_star     # |x_0 - x*|, exact values
    for _ in range(300):
        g, E = tangent_oracle(w, rng.standard_normal(n), G)
        w_new, s = opt.step(w, g, s)
        e = sgd_step_error(w, g, w_new, lr=lr, wd=wd)
        x_new = math.fsum(w_new * w_new)
        eps_t = 2 * lr * (1 - p) * G * E + lr**2 * G**2 / x * 2 * (n + 7) * U + 2 * math.sqrt(x_new) * e
        assert x >= (1 - a) * x_star / a
        D_prev, D = D, a * D + eps_t
        assert abs(x_new - x_star) <= D + 2 * U * x_new + 5 * U * x_star
        x_prev, w_prev, e_prev, E_prev = x, w, e, E
        w, x = w_new, x_new
    assert D < 1e-10 * x_star
    eta_sq = math.fsum((w - w_prev) ** 2) / x_prev
    # eta^2 - 2p = delta + (2 lr w.g - 2 w.e)/rho^2 (part 2 with the rounding terms); the
    # measured eta^2 adds (w - w_prev rounding: u relative each, then fsum) 4u eta^2.
    tol = ((D + D_prev + 4 * U * x_star) / x_prev + 2 * lr * G * E_prev / x_prev
           + 2 * e_prev / math.sqrt(x_prev) + 4 * U * eta_sq)
    assert abs(eta_sq - 2 * p) <= tol
    assert tol < 1e-6 * 2 * p


# ----------------------------------------------------------------------------- Eq. (7)


@pytest.mark.claim("prop-ndadam-eq7")
@given(n=st.integers(2, 32), seed=seeds, lr=st.floats(1e-3, 1.0), lw=st.floats(1e-4, 0.9),
       radial=st.floats(-3, 3), sign=st.sampled_from([-1.0, 1.0]), tangential=st.floats(-3, 3))
def test_eq7_identities_for_any_loss(n, seed, lr, lw, radial, sign, tangential):
    """Part 1 of the Eq. (7) proposition for one SGD step with decay and an arbitrary loss
    gradient g = ell w_hat + l_perp (any vector is the gradient of some loss at w, e.g. of
    the linear loss g . w): with Q = ||dw||^2 - (||w'||^2 - rho^2) = rho^2 (eta^2 - delta),
    Q = 2 lr rho (ell + wd rho) and lr^2 ||l_perp||^2 = ||dw||^2 - Q^2/(4 rho^2).
    Part 2 (Eq. (7)'s ratio) is the quotient of these two identities.

    Everything is measured exactly (Fractions of the stored floats), so the only error is
    refimpl's rounding, ||e|| <= sgd_step_error: Q = 2 rho^2 - 2 w.w' is linear in w' and moves
    by <= 2 rho ||e||; ||dw||^2 by <= 2||dw|| ||e|| + ||e||^2; Q^2/(4 rho^2) by <= |Q| ||e||/rho
    + ||e||^2. The radial and tangential sizes are drawn over six decades each, relative to
    the decay force wd*rho, and the radial part points either way (outward, or inward as a
    loss that balances the decay)."""
    rng = np.random.default_rng(seed)
    wd = lw / lr
    w = rng.standard_normal(n) * 10.0 ** rng.uniform(-2, 2)
    rho_f = float(np.linalg.norm(w))
    z = rng.standard_normal(n)
    t = z - (z @ w) / (w @ w) * w
    g = (sign * 10.0**radial * wd * rho_f) * w / rho_f + (10.0**tangential * wd * rho_f) * t / np.linalg.norm(t)
    w_new, _ = refimpl.SGD(lr=lr, weight_decay=wd).step(w, g, refimpl.SGD(lr=lr, weight_decay=wd).init(w))
    e = Fraction(sgd_step_error(w, g, w_new, lr=lr, wd=wd))
    rho_sq = qdot(w, w)
    rho = Fraction(math.sqrt(float(rho_sq)))
    wg = qdot(w, g)                                   # rho * ell, exactly
    dw = [b - a for a, b in zip(q(w), q(w_new))]
    dw_sq = sum(x * x for x in dw)
    Q = 2 * rho_sq - 2 * qdot(w, w_new)
    L, A = Fraction(lr), Fraction(wd)
    assert abs(Q - 2 * L * (wg + A * rho_sq)) <= 2 * rho * e * (1 + Fraction(1, 2**40))
    l_perp_sq = qdot(g, g) - wg * wg / rho_sq
    dw_norm = Fraction(math.sqrt(float(dw_sq)))
    tol = (2 * dw_norm * e + abs(Q) * e / rho + 2 * e * e) * (1 + Fraction(1, 2**40))
    assert abs(L * L * l_perp_sq - (dw_sq - Q * Q / (4 * rho_sq))) <= tol


# ----------------------------------------------------------------------------- direction preservation


@pytest.mark.claim("prop-ndadam-direction")
@given(n=st.integers(3, 12), seed=seeds, b1=st.floats(0.0, 0.99), b2=st.floats(0.0, 0.9999),
       lr=st.floats(1e-3, 0.5), eps=st.sampled_from([0.0, 1e-8]), T=st.integers(1, 15))
def test_ndadam_iterates_stay_in_the_span_of_the_gradients(n, seed, b1, b2, lr, eps, T):
    """Part 2 of the direction proposition: if w0 and every raw gradient lie in a subspace S,
    so does every iterate. S is the hyperplane sum(x) = 0 (unit normal a = ones/sqrt(n)); the
    gradients are zero-sum integers times powers of two, so a . gbar = 0 exactly, and w0 is
    normalize() of a zero-sum integer vector.

    Tolerance: a running first-order bound on the residuals r_w = a.w and r_m = a.m. The exact
    step from the stored state maps them linearly: a.g = -(gbar.w) r_w, a.m' = b1 r_m -
    (1-b1)(gbar.w) r_w, a.w_bar = r_w - (c/bc1) a.m' with c = lr/(sqrt(v_hat)+eps), and (13b)
    divides by ||w_bar||. refimpl's rounding adds at most E2 to m (the bound of step (8) in
    nd_step_bound's docstring) and nd_step_bound to w. Start: |a.w0| <= normalize_err(n).
    The intermediate exact values are replaced by the test's float values, a relative change
    of O(n u) in the bound (as in nd_step_bound). The measured residual |fsum(w)|/sqrt(n) is
    within 2u of |a.w|. The bound is asserted below 1e-6 so that the test stays sharp (it is
    far smaller in practice); Adam, whose step is not parallel to its momentum, leaves S by
    O(lr) (see the chapter's first figure)."""
    rng = np.random.default_rng(seed)

    def zero_sum_ints():
        k = rng.integers(-(2**20), 2**20, n).astype(float)
        k[-1] = -np.sum(k[:-1])  # integers below 2**53: exact
        return k

    opt = refimpl.NDAdam(vector_axes=(0,), lr_vector=lr, beta1=b1, beta2=b2, eps=eps)
    w0 = zero_sum_ints()
    assume(np.any(w0 != 0))
    w = opt.normalize(w0)
    s = opt.init(w)
    R_w, R_m = normalize_err(n), 0.0
    for _ in range(T):
        g_bar = zero_sum_ints() * 2.0 ** int(rng.integers(-30, 10))
        t = s.t + 1
        gp, P, E1, _ = _projection_and_v_errors(w, g_bar, s.v, axes=(0,), b2=b2)
        P, E1 = float(P[0]), float(E1[0])
        assume(P > 0)  # a purely radial gradient with eps = 0 would give 0/0
        dot = abs(float(w @ g_bar)) + (n + 1) * U * float(np.abs(w) @ np.abs(g_bar))
        bc1, bc2 = 1 - b1**t, 1 - b2**t
        m_new = b1 * s.m + (1 - b1) * gp
        v_new = b2 * float(s.v[0]) + (1 - b2) * P**2
        c = lr / (math.sqrt(v_new / bc2) + eps)
        WB = float(np.linalg.norm(w - c * m_new / bc1))
        E2 = (1 - b1) * E1 + 3 * U * (b1 * float(np.linalg.norm(s.m)) + (1 - b1) * P)
        step_bound = float(nd_step_bound(w, g_bar, s.m, s.v, t=t, axes=(0,), b1=b1, b2=b2, lr=lr, eps=eps)[0])
        m_residual = b1 * R_m + (1 - b1) * dot * R_w
        R_w = (R_w + c / bc1 * m_residual) / WB + step_bound
        R_m = m_residual + E2
        w, s = opt.step(w, g_bar, s)
        assert abs(math.fsum(w)) / math.sqrt(n) <= R_w * (1 + 4 * U)
        assert R_w < 1e-6


# ----------------------------------------------------------------------------- geometry on the sphere


@pytest.mark.claim("prop-ndadam-first-step-angle")
@given(n=st.integers(2, 32), seed=seeds, lr=st.floats(1e-4, 1.0), b1=st.floats(0.0, 0.99),
       b2=st.floats(0.0, 0.9999), eps=st.sampled_from([0.0, 1e-8, 1e-3]), eps_hat=st.booleans(),
       log_radial=st.floats(-3, 6), log_scale=st.floats(-6, 3))
def test_first_step_angle_with_a_raw_gradient(n, seed, lr, b1, b2, eps, eps_hat, log_radial, log_scale):
    """The first-step angle with a raw gradient that has a radial part up to 10**6 times its
    tangential part: angle(w0, w1) = arctan(lr P/(P + eps1)), P = ||tangential part||,
    eps1 = eps (paper) or eps/sqrt(1 - b2) (eps_hat); arctan(lr) for eps = 0.

    Tolerance: as in the P4 test, ||w1 - w1_exact|| <= nd_step_bound (here with the radial
    part, through its G = ||gbar||) bounds the angle, and measuring angles adds (3n+16)u.
    Two more terms: the expected value uses the test's P, within E1 of the exact one, which
    moves arctan(lr P/(P+eps1)) by <= lr eps1 E1/(P+eps1)^2; and ||w0|| = 1 +- (n+5)u/2 leaves
    the exact projected gradient a radial part (gbar.w0)(1 - ||w0||^2), which tilts the exact
    step by <= lr |gbar.w0| (n+5)u/(P+eps1) and the angle by lr times that."""
    rng = np.random.default_rng(seed)
    opt = refimpl.NDAdam(vector_axes=(0,), lr_vector=lr, beta1=b1, beta2=b2, eps=eps, eps_hat=eps_hat)
    w0 = opt.normalize(rng.standard_normal(n))
    z = rng.standard_normal(n)
    tangent = z - (z @ w0) * w0
    tangent *= 10.0**log_scale / np.linalg.norm(tangent)
    g_bar = tangent + 10.0 ** (log_scale + log_radial) * w0
    w1, _ = opt.step(w0, g_bar, opt.init(w0))
    _, P, E1, _ = _projection_and_v_errors(w0, g_bar, np.zeros(1), axes=(0,), b2=b2)
    P, E1 = float(P[0]), float(E1[0])
    eps1 = eps / math.sqrt(1 - b2) if eps_hat else eps
    expected = math.atan(lr * P / (P + eps1))
    tol = (float(nd_step_bound(w0, g_bar, np.zeros(n), np.zeros(1), t=1, axes=(0,), b1=b1, b2=b2, lr=lr,
                               eps=eps1)[0])
           + (3 * n + 16) * U + lr * eps1 * E1 / (P + eps1) ** 2
           + lr * lr * abs(float(g_bar @ w0)) * (n + 5) * U / (P + eps1))
    assert abs(measured_angle(w0, w1) - expected) <= tol
    assert tol < 1e-3 * expected  # the check is sharp


def K_bound(b1, b2, t):
    """K_t of the step-geometry proposition."""
    ratio = b1 * b1 / b2
    return ((1 - b1) * math.sqrt(1 - b2**t) / ((1 - b1**t) * math.sqrt(1 - b2))
            * math.sqrt(math.fsum(ratio**j for j in range(t))))


def bc_err(beta, t):
    """Relative error of fl(1 - beta**t): pow within 2u of beta**t, then the subtraction."""
    return U if beta == 0 else U + 2 * U * beta**t / (1 - beta**t)


@pytest.mark.claim("prop-ndadam-step-geometry")
@given(n=st.integers(2, 16), seed=seeds, b1=st.floats(0.0, 0.99), b2=st.floats(1e-3, 0.9999),
       lr=st.floats(1e-4, 1.0), eps=st.sampled_from([0.0, 1e-8, 1e-3]), T=st.integers(1, 20))
def test_every_step_angle_and_its_bound(n, seed, b1, b2, lr, eps, T):
    """The step-geometry proposition along random gradient streams: at every step (1) the
    angle turned equals atan2(lr ||u_perp||, 1 - lr u.w), u = m_hat/(sqrt(v_hat)+eps) read
    from the state; (2) ||u|| <= K_t (tight at t = 1 with eps = 0: ||u_1|| = K_1 = 1);
    (3) the angle is at most arcsin(lr K_t) when lr K_t < 1.

    Tolerances. (1) The P3 test's bound tol3 = (16u||S|| + 2u||w_bar||)/||w_bar|| +
    2 normalize_err(n) on the chord between w_t and normalize(w_prev - lr u) bounds the angle
    between them by 2 tol3; measuring the angle adds (3n+16)u; the formula's own rounding
    (||u_perp|| relative (n+6)u, u.w absolute (n+2)u||u||) adds (n+7)u + (n+2)u lr||u||/||w_bar||,
    and ||w_prev|| = 1 +- normalize_err(n) adds normalize_err(n).
    (2) The Cauchy-Schwarz bound holds for the exact moments of the computed projected
    gradients; refimpl's m is within 3tu of it (per element, 3u per step of the absolute EMA,
    which the bound also dominates), its v within (n+2t+3)u relative (test P9), the test's u
    adds (n+10)u/2 and both bias corrections, and K_t itself (3t+4)u/2 + 8u and the bias
    corrections again."""
    rng = np.random.default_rng(seed)
    opt = refimpl.NDAdam(vector_axes=(0,), lr_vector=lr, beta1=b1, beta2=b2, eps=eps)
    w = opt.normalize(rng.standard_normal(n))
    s = opt.init(w)
    ne = normalize_err(n)
    for _ in range(T):
        g_bar = rng.standard_normal(n) * 10.0 ** rng.uniform(-3, 3)
        w_new, s = opt.step(w, g_bar, s)
        t = s.t
        bc1, bc2 = 1 - b1**t, 1 - b2**t
        u = (s.m / bc1) / (math.sqrt(float(s.v[0]) / bc2) + eps)
        u_norm = float(np.linalg.norm(u))
        u_par = float(u @ w)
        u_perp = float(np.linalg.norm(u - u_par * w))
        S = lr * u
        WB = float(np.linalg.norm(w - S))
        tol3 = (16 * U * lr * u_norm + 2 * U * WB) / WB + 2 * ne
        theta = measured_angle(w, w_new)
        tol1 = 2 * tol3 + (3 * n + 16) * U + (n + 7) * U + (n + 2) * U * lr * u_norm / WB + ne
        assert abs(theta - math.atan2(lr * u_perp, 1 - lr * u_par)) <= tol1
        K = K_bound(b1, b2, t)
        c_K = (3 * t + (n + 2 * t + 3) / 2 + (n + 10) / 2 + (3 * t + 4) / 2 + 8) * U + 2 * (bc_err(b1, t) + bc_err(b2, t))
        assert u_norm <= K * (1 + c_K)
        if t == 1 and eps == 0:  # the bound is attained
            assert abs(u_norm - K) <= c_K * K
        if lr * K * (1 + c_K) < 1:
            assert theta <= math.asin(lr * K * (1 + c_K)) + tol1
        w = w_new


# ----------------------------------------------------------------------------- the official codes


@pytest.mark.claim("prop-ndadam-code-variants")
@given(n=st.integers(2, 32), seed=seeds, lr=st.floats(1e-4, 1.0), b1=st.floats(0.0, 0.99),
       b2=st.floats(0.0, 0.9999), eps=st.sampled_from([0.0, 1e-8, 1e-3]), log_c=st.floats(-2, 2))
def test_unnormalized_start_on_a_scale_invariant_loss(n, seed, lr, b1, b2, eps, log_c):
    """Part 3 of the code-variants proposition: started from ||w0|| = c != 1 (the official
    codes do not normalize), the first step on a scale-invariant loss turns w0 by
    arctan(lr G/(c (G + eps))), G = ||gbar||, instead of arctan(lr G/(G + eps)), and lands on
    the unit sphere.

    Tolerance: nd_step_bound (with W = c) bounds ||w1 - w1_exact||, hence the angle; measuring
    adds (3n+16)u. gbar = si_grad is tangent only up to E_rad = si_radial_bound, so the exact
    projected gradient keeps the radial part r(1 - c^2), |r| <= E_rad; it moves the component
    of w_bar along w0 by lr |r| |1 - c^2|/(G + eps) and the angle by at most that over 2c
    (|d atan2(y, x)/dx| <= 1/(2x)); the changes of ||g|| and ||g_perp|| are second order. The
    computed ||w0|| (relative error (n+3)u/2) moves the expected angle by <= (n+3)u times it.
    The unit norm of w1 is (13b): 1 within normalize_err(n) plus the measuring (n+3)u/2."""
    rng = np.random.default_rng(seed)
    c = 10.0**log_c
    opt = refimpl.NDAdam(vector_axes=(0,), lr_vector=lr, beta1=b1, beta2=b2, eps=eps)
    w0 = rng.standard_normal(n)
    w0 *= c / np.linalg.norm(w0)
    a = rng.standard_normal(n)
    g_bar = si_grad(w0, a)
    w1, _ = opt.step(w0, g_bar, opt.init(w0))
    G = float(np.linalg.norm(g_bar))
    c_meas = float(np.linalg.norm(w0))
    expected = math.atan(lr * G / (c_meas * (G + eps)))
    E_rad = si_radial_bound(w0, a)
    tol = (float(nd_step_bound(w0, g_bar, np.zeros(n), np.zeros(1), t=1, axes=(0,), b1=b1, b2=b2, lr=lr,
                               eps=eps)[0])
           + (3 * n + 16) * U + (n + 3) * U * expected
           + lr * E_rad * abs(1 - c_meas**2) / ((G + eps) * 2 * c_meas))
    assert abs(measured_angle(w0, w1) - expected) <= tol
    assert tol < 1e-3 * expected  # the check is sharp
    assert abs(float(np.linalg.norm(w1)) - 1) <= normalize_err(n) + (n + 3) / 2 * U
