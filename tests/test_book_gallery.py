"""Tests of the claims of the chapter "Adam in the wild" (book/gallery.md).

Each test names the proposition it verifies with ``pytest.mark.claim``. Tolerances are either
none (bitwise equality, where the mathematics makes the computation exact: scaling by a power of
two, permuting coordinates, flipping signs) or derived by counting roundings in the standard
model fl(a op b) = (a op b)(1 + d), |d| <= u = 2**-53 (tests/tolerances.py). A count of n
relative roundings is bounded by gamma(n) = n u / (1 - n u) (Higham, Lemma 3.1).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import refimpl
from refimpl.problems import quadratic, rosenbrock
from strategies import gradient_streams
from tolerances import U64 as U
from tolerances import bias_correction_rel_err


def gamma(n: float) -> float:
    """Bound on |prod (1 + d_i) - 1| for n roundings (n may count fractional units of u)."""
    return n * U / (1 - n * U)


# Betas away from the subnormal range (see the tests below for where the range matters).
betas = st.one_of(st.just(0.0), st.floats(1e-3, 0.999))
lrs = st.floats(1e-3, 1.0)
# Starting coordinates are 0 or at least 1e-3 in size: a coordinate like 1e-97 gives gradients
# whose squares underflow (v = 0, a division by zero), and exact scaling needs no underflow.
coordinates = st.one_of(st.just(0.0), st.builds(lambda s, m: s * m, st.sampled_from([-1.0, 1.0]),
                                                st.floats(1e-3, 2.0)))


def trajectory(opt, grad, x0, steps):
    """Iterates x_0 .. x_T of `opt` on the objective whose gradient is `grad`."""
    x, state = x0, opt.init(x0)
    path = [x]
    for _ in range(steps):
        x, state = opt.step(x, grad(x), state)
        path.append(x)
    return np.array(path)


# ------------------------------------------------------------------------------------------------
# prop-gallery-diagonal-invariance
# ------------------------------------------------------------------------------------------------

adam_variants = st.fixed_dictionaries({
    "bias_correction": st.booleans(),
    "amsgrad": st.booleans(),
    "amsgrad_max_of": st.sampled_from(["v", "v_hat"]),
    "eps_hat": st.booleans(),
})


@pytest.mark.claim("prop-gallery-diagonal-invariance")
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # beta2 = 0, g = 0: 0/0
@given(
    k=arrays(np.int64, (3,), elements=st.integers(-20, 20)),
    x0=arrays(np.float64, (3,), elements=st.builds(lambda s, m: s * m, st.sampled_from([-1.0, 1.0]),
                                                       st.floats(0.1, 10.0))),
    objective=st.sampled_from(["quadratic", "log cosh"]),
    beta1=st.one_of(st.just(0.0), st.floats(0.5, 0.999)),
    beta2=st.one_of(st.just(0.0), st.floats(0.5, 0.999)),
    lr=lrs, steps=st.integers(1, 100), variant=adam_variants,
)
def test_adam_ignores_per_coordinate_curvature(k, x0, objective, beta1, beta2, lr, steps, variant):
    """Adam (eps = 0) on sum_i c_i phi_i(x_i) with c_i = 2^k_i follows bitwise the iterates on sum_i phi_i(x_i).

    Multiplying by a power of two is exact, so the gradient of the weighted objective is exactly
    c times the other's; then m scales by c, v (and v_hat, and any running maximum) by c^2, and
    sqrt(c^2 v) = c sqrt(v) exactly in IEEE arithmetic, so every step is bitwise equal. The betas
    are 0 or at least 0.5 so that, over 100 steps, no moment of a coordinate whose gradient
    vanishes decays into the subnormal range, where scaling by 2^-20 would no longer be exact.
    """
    c = 2.0 ** k.astype(np.float64)
    if objective == "quadratic":      # phi_i(x) = x^2 / 2: refimpl.problems.quadratic
        def weighted(x): return quadratic(x, c)[1]
        def plain(x): return quadratic(x, np.ones_like(x))[1]
    else:                             # phi_i(x) = log cosh(x): gradient tanh(x), not a quadratic
        def weighted(x): return c * np.tanh(x)
        def plain(x): return np.tanh(x)
    opt = refimpl.Adam(lr=lr, beta1=beta1, beta2=beta2, eps=0.0, **variant)
    with np.errstate(divide="ignore", invalid="ignore"):  # eps = 0: a zero gradient gives 0/0 on both sides
        a = trajectory(opt, weighted, x0, steps)
        b = trajectory(opt, plain, x0, steps)
    assert np.array_equal(a, b, equal_nan=True)


def test_curvature_invariance_needs_eps_zero():
    """With eps > 0 the curvature shows again: at c = 2^-40 the gradient of the flat coordinate
    falls below eps = 1e-8 and that coordinate moves far more slowly."""
    c = np.array([1.0, 2.0**-40])
    x0 = np.array([1.0, 1.0])
    opt = refimpl.Adam(lr=1e-2, eps=1e-8)
    path = trajectory(opt, lambda x: quadratic(x, c)[1], x0, 50)
    assert path[-1, 0] < 0.6 and path[-1, 1] > 0.99


# ------------------------------------------------------------------------------------------------
# prop-gallery-rotation-dependence
# ------------------------------------------------------------------------------------------------

def rotation(angle):
    return np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])


def heavy_ball_matrices(h, lr, momentum, dampening, nesterov):
    """The linear maps of refimpl.SGD on 1/2 sum h_i x_i^2, on the state (theta, b) in R^4:
    M1 for the first step (b_1 = g_1) and M for every later one. With momentum 0 there is no
    buffer and both are I - lr H on theta alone."""
    H, eye = np.diag(h), np.eye(2)
    if momentum == 0:
        step = eye - lr * H
        return step, step
    if nesterov:    # d = g + mu b',  b' = mu b + g
        M1 = np.block([[eye - lr * (1 + momentum) * H, 0 * eye], [H, 0 * eye]])
        M = np.block([[eye - lr * (1 + momentum) * H, -lr * momentum**2 * eye], [H, momentum * eye]])
    else:           # d = b',  b' = mu b + (1 - tau) g
        M1 = np.block([[eye - lr * H, 0 * eye], [H, 0 * eye]])
        M = np.block([[eye - lr * (1 - dampening) * H, -lr * momentum * eye],
                      [(1 - dampening) * H, momentum * eye]])
    return M1, M


def sgd_run(opt, grad, y0, steps):
    """The iterates y_0..y_T, the buffers b_0 = 0, b_1..b_T, and the gradients g_1..g_T."""
    y, state = y0, opt.init(y0)
    ys, bs, gs = [y], [np.zeros(2)], []
    for _ in range(steps):
        g = grad(y)
        y, state = opt.step(y, g, state)
        ys.append(y)
        bs.append(np.zeros(2) if state.momentum_buffer is None else state.momentum_buffer)
        gs.append(g)
    return np.array(ys), np.array(bs), np.array(gs)


def sgd_error_bound(run, lr, momentum, L, M1, M):
    """Bound on |computed state - exact state| after `steps` steps of SGD on a 2-D quadratic.

    The computed state obeys s_t = M s_{t-1} + delta_t (M1 at t = 1), so its error is
    sum_k M^(T-k) delta_k and |error| <= P sum_k |delta_k| with P = max_j |M^j| (also times M1).
    Local errors, with (y, b) the computed state before the step and g, d the computed gradient
    and direction: the gradient R diag(h) R^T y, computed with the rounded rotation Q = fl(R)
    (entries within 1 ulp = 2u of R) and two 2-term dot products, is within 13 u L |y|
    (|Q^T y - R^T y| <= (2u + gamma_2) sqrt(2) |y| <= 5.7u |y|, h*z adds u L |y|, and Q(h z)
    adds 5.7u L |y| more); the buffer update mu b + (1 - tau) g costs 3u (mu |b| + |g|), the
    Nesterov direction 2u (|g| + mu |b'|), and theta - lr d costs 2u (|y| + lr |d|). The gradient
    error enters b with factor 1 and theta with factor lr (1 + mu). We take the larger, rounder
    per-step bound 20 u (1 + lr L)(1 + mu)(L |y| + |y| + |b| + |b'| + |g| + |y'|), which
    dominates each of these terms.
    """
    ys, bs, gs = run
    worst, powers = 0.0, np.eye(M.shape[0])
    for _ in range(len(gs)):
        worst = max(worst, np.linalg.norm(powers, 2), np.linalg.norm(powers @ M1, 2))
        powers = powers @ M
    norm = lambda a: np.linalg.norm(a, axis=-1)  # noqa: E731
    size = (L + 1) * norm(ys[:-1]) + norm(bs[:-1]) + norm(bs[1:]) + norm(gs) + norm(ys[1:])
    local = 20 * U * (1 + lr * L) * (1 + momentum) * size.sum()
    return 1.01 * worst * local, 1.01 * worst   # 1.01: the norms are computed in floating point


@pytest.mark.claim("prop-gallery-rotation-dependence")
@given(
    angle=st.floats(0.0, 2 * math.pi), log_kappa=st.floats(0.0, 4.0), lr_fraction=st.floats(0.01, 1.0),
    momentum=st.one_of(st.just(0.0), st.floats(0.0, 0.9)), dampening=st.floats(0.0, 0.5),
    nesterov=st.booleans(),
    x0=arrays(np.float64, (2,), elements=st.floats(-2.0, 2.0)), steps=st.integers(1, 60),
)
def test_sgd_commutes_with_rotations(angle, log_kappa, lr_fraction, momentum, dampening, nesterov, x0, steps):
    """SGD (any momentum, dampening, Nesterov) on f(R^T y) from R x0 stays at R x_t, within the rounding bound.

    f is the quadratic 1/2 x^T diag(1, kappa) x; the learning rate is lr_fraction / kappa. Both
    runs are compared with the exact iteration through sgd_error_bound; the final product
    fl(Q x_T) adds (2u + gamma_2) sqrt(2) |x_T| <= 6u |x_T|.
    """
    if nesterov:
        assume(momentum > 0)
        dampening = 0.0
    kappa = 10.0**log_kappa
    h = np.array([1.0, kappa])
    lr = lr_fraction / kappa
    Q = rotation(angle)
    opt = refimpl.SGD(lr=lr, momentum=momentum, dampening=dampening, nesterov=nesterov)
    M1, M = heavy_ball_matrices(h, lr, momentum, dampening, nesterov)

    plain = sgd_run(opt, lambda x: quadratic(x, h)[1], x0, steps)
    rotated = sgd_run(opt, lambda y: Q @ quadratic(Q.T @ y, h)[1], Q @ x0, steps)

    err_plain, _ = sgd_error_bound(plain, lr, momentum, kappa, M1, M)
    err_rotated, growth = sgd_error_bound(rotated, lr, momentum, kappa, M1, M)
    start = growth * 6 * U * np.linalg.norm(x0)          # the start fl(Q x0) is itself rounded
    final = 6 * U * np.linalg.norm(plain[0][-1])          # and so is fl(Q x_T)
    gap = np.linalg.norm(rotated[0][-1] - Q @ plain[0][-1])
    assert gap <= err_plain + err_rotated + start + final


def double_rosenbrock(x):
    """Rosenbrock on the coordinate pairs (0, 1) and (2, 3): not separable, exact gradient."""
    _, g = rosenbrock(x.reshape(2, 2))
    return g.reshape(4)


@pytest.mark.claim("prop-gallery-rotation-dependence")
@given(
    perm=st.permutations(range(4)), flips=arrays(np.float64, (4,), elements=st.sampled_from([-1.0, 1.0])),
    x0=arrays(np.float64, (4,), elements=coordinates),
    beta1=betas, beta2=betas, lr=st.floats(1e-3, 0.1),
    eps=st.one_of(st.just(0.0), st.floats(1e-12, 1e-2)), eps_root=st.one_of(st.just(0.0), st.floats(1e-16, 1e-4)),
    variant=adam_variants, steps=st.integers(1, 60),
)
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # eps = 0, g = 0: 0/0
def test_adam_commutes_with_signed_permutations(perm, flips, x0, beta1, beta2, lr, eps, eps_root, variant, steps):
    """Adam, in every convention, commutes bitwise with signed permutations P: the run on f(P^T y) from P x0 is P x_t.

    Applying P or P^T only moves entries and flips signs, which is exact, so the gradient of the
    permuted problem at P x is bitwise P times the gradient at x, and Adam treats every
    coordinate alike with an update that is odd in the gradient.
    """
    perm = np.array(perm)
    inverse = np.argsort(perm)

    def P(x): return flips * x[perm]            # (P x)_i = flips_i x_{perm_i}
    def P_T(y): return (flips * y)[inverse]

    opt = refimpl.Adam(lr=lr, beta1=beta1, beta2=beta2, eps=eps, eps_root=eps_root, **variant)
    plain = trajectory(opt, double_rosenbrock, x0, steps)
    permuted = trajectory(opt, lambda y: P(double_rosenbrock(P_T(y))), P(x0), steps)
    assert np.array_equal(permuted, np.array([P(x) for x in plain]), equal_nan=True)


def first_adam_step(opt, g):
    """Delta_1 for the first gradient g: stepping from 0 returns -Delta_1 exactly (0 - x = -x)."""
    zero = np.zeros_like(g)
    new, _ = opt.step(zero, g, opt.init(zero))
    return new


# The first Adam step with bias correction and eps = 0 is alpha sign(g) to within 6.5u relative:
# m = fl(fl(1 - beta1) g) and the correction divides by the same float fl(1 - beta1) (1 rounding),
# v = fl(fl(fl(1 - beta2) g) g) / fl(1 - beta2) (3 roundings), sqrt halves that and adds 1, then
# lr * m_hat and the division add 1 each: 2 + 2.5 + 2 = 6.5 roundings, bounded by gamma(7).
FIRST_STEP_REL = gamma(7)


@pytest.mark.claim("prop-gallery-rotation-dependence")
@given(angle=st.floats(0.0, 2 * math.pi), g=arrays(np.float64, (2,), elements=st.floats(0.1, 10.0)),
       signs=arrays(np.float64, (2,), elements=st.sampled_from([-1.0, 1.0])), beta1=betas, beta2=betas,
       lr=lrs)
def test_adam_is_not_rotation_equivariant(angle, g, signs, beta1, beta2, lr):
    """For a rotation that is not a signed permutation, Adam's first step on (Qg).y is not Q times its step on g.x.

    The first steps are -lr sign(g) and -lr sign(Qg) (within FIRST_STEP_REL); equivariance would
    need Q sign(g) to be a vertex of the square, and its distance to the nearest vertex is the
    least possible gap between the two steps (in units of lr), up to the rounding of both steps.
    """
    g = signs * g
    Q = rotation(angle)
    g_rotated = Q @ g
    assume(np.all(np.abs(g_rotated) > 1e-6))                   # the signs of Qg are not in doubt
    vertices = np.array([[a, b] for a in (-1.0, 1.0) for b in (-1.0, 1.0)])
    distance = np.min(np.linalg.norm(vertices - Q @ np.sign(g), axis=1))
    assume(distance > 1e-6)                                   # not a multiple of 90 degrees
    opt = refimpl.Adam(lr=lr, beta1=beta1, beta2=beta2, eps=0.0)
    step, step_rotated = first_adam_step(opt, g), first_adam_step(opt, g_rotated)
    np.testing.assert_allclose(step, -lr * np.sign(g), rtol=FIRST_STEP_REL, atol=0)
    np.testing.assert_allclose(step_rotated, -lr * np.sign(g_rotated), rtol=FIRST_STEP_REL, atol=0)
    # Q @ step adds gamma_2 sqrt(2) |step| <= 3u sqrt(2) lr; both steps are off by <= FIRST_STEP_REL.
    slack = lr * (2 * math.sqrt(2) * FIRST_STEP_REL + 3 * U * math.sqrt(2))
    assert np.linalg.norm(step_rotated - Q @ step) >= lr * distance - slack


@pytest.mark.claim("prop-gallery-rotation-dependence")
@given(kappa=st.one_of(st.floats(1e-3, 1.99), st.floats(2.01, 1e4)), beta1=betas, beta2=betas, lr=lrs)
def test_first_step_on_rotated_quadratic_depends_on_kappa(kappa, beta1, beta2, lr):
    """On 1/2 x^T diag(1, kappa) x from (2, 1) Adam's first step is -lr(1, 1); rotated by 45 degrees
    it is -lr(1, 1) for kappa < 2 and lr(1, -1) for kappa > 2 (to FIRST_STEP_REL)."""
    h = np.array([1.0, kappa])
    c = math.sqrt(0.5)
    Q = np.array([[c, -c], [c, c]])
    x0 = np.array([2.0, 1.0])
    opt = refimpl.Adam(lr=lr, beta1=beta1, beta2=beta2, eps=0.0)
    step = first_adam_step(opt, quadratic(x0, h)[1])
    step_rotated = first_adam_step(opt, Q @ quadratic(Q.T @ (Q @ x0), h)[1])
    expected_rotated = -lr * np.array([1.0, 1.0]) if kappa < 2 else lr * np.array([1.0, -1.0])
    np.testing.assert_allclose(step, -lr * np.ones(2), rtol=FIRST_STEP_REL, atol=0)
    np.testing.assert_allclose(step_rotated, expected_rotated, rtol=FIRST_STEP_REL, atol=0)


# ------------------------------------------------------------------------------------------------
# prop-gallery-first-step-uncorrected
# ------------------------------------------------------------------------------------------------

def constant_gradient_steps(opt, g, steps):
    """Delta_1 .. Delta_T for the gradient g at every step (each from the same state as the run:
    the moments do not depend on theta, and stepping from 0 returns -Delta_t exactly)."""
    zero = np.zeros_like(g)
    state, out = opt.init(zero), []
    for _ in range(steps):
        new, state = opt.step(zero, g, state)
        out.append(new)
    return np.array(out)


@pytest.mark.claim("prop-gallery-first-step-uncorrected")
@given(
    g=arrays(np.float64, (3,), elements=st.builds(lambda s, m, e: s * m * 10.0**e, st.sampled_from([-1.0, 1.0]),
                                                      st.floats(1.0, 9.99), st.integers(-30, 30))),
    beta1=betas, beta2=betas, lr=lrs, eps=st.one_of(st.just(0.0), st.floats(1e-12, 1e-2)),
    bias_correction=st.booleans(), steps=st.integers(1, 200),
)
def test_constant_gradient_steps_match_the_closed_form(g, beta1, beta2, lr, eps, bias_correction, steps):
    """Constant gradient g: Delta_t = -lr g/(|g| + eps) with correction,
    -lr (1-beta1^t) g/(sqrt(1-beta2^t)|g| + eps) without, to the rounding counted below.

    Rounding, relative to the exact value (all terms of each sum have the same sign):
    refimpl's m_t carries <= 2t roundings (the first term 2, each later step one product and one
    sum), v_t <= 2t + 1, sqrt(v_t) <= t + 1.5, and + eps, lr * m_hat and the division 1 each:
    3t + 4.5; the correction adds rb1 + 1 (m / bc1) and (rb2 + 1)/2 (inside the root), where rb
    is bias_correction_rel_err of 1 - beta^t in units of u. The closed form evaluated here in
    floating point carries rb1 + rb2/2 + 6 (uncorrected) or 3 (corrected) more. The first step
    (t = 1) of any gradient history depends on g_1 alone, so this also checks part 3.
    """
    opt = refimpl.Adam(lr=lr, beta1=beta1, beta2=beta2, eps=eps, bias_correction=bias_correction)
    got = constant_gradient_steps(opt, g, steps)
    for t in range(1, steps + 1):
        rb1 = bias_correction_rel_err(beta1, t) / U
        rb2 = bias_correction_rel_err(beta2, t) / U
        if bias_correction:
            expected = -lr * g / (np.abs(g) + eps)
            n = (3 * t + 4.5) + (rb1 + 1) + (rb2 + 1) / 2 + 3
        else:
            expected = -lr * (1 - beta1**t) * g / (math.sqrt(1 - beta2**t) * np.abs(g) + eps)
            n = (3 * t + 4.5) + rb1 + rb2 / 2 + 6
        assert np.all(np.abs(got[t - 1] - expected) <= gamma(n + 1) * np.abs(expected))


@pytest.mark.claim("prop-gallery-first-step-uncorrected")
def test_uncorrected_first_step_factors():
    """The first uncorrected step is (1-beta1)/sqrt(1-beta2) lr sign(g): 3.16 (defaults),
    10 (beta2 = 0.9999), 31.6 (beta1 = 0)."""
    for beta1, beta2, factor in [(0.9, 0.999, 3.1623), (0.9, 0.9999, 10.0), (0.0, 0.999, 31.6228)]:
        opt = refimpl.Adam(lr=1.0, beta1=beta1, beta2=beta2, eps=0.0, bias_correction=False)
        step = first_adam_step(opt, np.array([-5.0]))[0]
        assert step == pytest.approx((1 - beta1) / math.sqrt(1 - beta2), rel=gamma(8))
        assert step == pytest.approx(factor, abs=1e-4)


# ------------------------------------------------------------------------------------------------
# prop-gallery-eps-conventions
# ------------------------------------------------------------------------------------------------

@pytest.mark.claim("prop-gallery-eps-conventions")
@given(G=gradient_streams(min_steps=1, max_steps=60, max_dim=3), beta1=betas, beta2=betas, lr=lrs,
       eps_hat=st.floats(1e-12, 1e-2))
def test_eps_hat_is_algorithm_1_with_eps_t(G, beta1, beta2, lr, eps_hat):
    """From the same state, eps_hat=True with eps_hat takes the step of Algorithm 1 with
    eps_t = eps_hat / sqrt(1 - beta2^t), to 15u.

    Both compute 1 - beta^t as the same Python floats bc1, bc2, and the identity is exact for
    those values, so only the final formulas round differently. Algorithm 1: m/bc1 (1),
    v/bc2 (1), sqrt (1.5), eps_t = eps_hat/sqrt(bc2) in this test (2), their sum (3), lr * m_hat
    (2), the division (6 in all). eps_hat form: lr_t = lr * bc2**0.5 / bc1 (pow within one ulp,
    2, then 2 more: 4), sqrt(v) (1) + eps (2), lr_t * m (5), the division (8 in all). Together
    gamma(14), relative to the exact step, which is within gamma(8) of the eps_hat step: 15u.
    """
    zero = np.zeros(G.shape[1])
    efficient = refimpl.Adam(lr=lr, beta1=beta1, beta2=beta2, eps=eps_hat, eps_hat=True)
    state = efficient.init(zero)
    for t, g in enumerate(G, start=1):
        eps_t = eps_hat / math.sqrt(1 - beta2**t)
        algorithm1 = refimpl.Adam(lr=lr, beta1=beta1, beta2=beta2, eps=eps_t)
        a, state_a = algorithm1.step(zero, g, state)
        b, state = efficient.step(zero, g, state)
        assert np.array_equal(state_a.m, state.m) and np.array_equal(state_a.v, state.v)
        assert np.all(np.abs(a - b) <= 15 * U * np.abs(b))


@pytest.mark.claim("prop-gallery-eps-conventions")
def test_eps_hat_factor_at_the_first_step():
    """At t = 1 with beta2 = 0.999 the eps_hat form's epsilon is eps_hat/sqrt(0.001) = 31.6 eps_hat:
    a gradient of that size gets half a step."""
    eps_hat = 1e-7
    factor = 1 / math.sqrt(1 - 0.999)
    assert factor == pytest.approx(31.62, abs=0.01)
    opt = refimpl.Adam(lr=1.0, eps=eps_hat, eps_hat=True)
    step = first_adam_step(opt, np.array([factor * eps_hat]))[0]
    # lr_t (4u), sqrt(v) (2.5u from fl(1 - beta2) g g), + eps (1u), m (2u), the division and
    # the product (2u), and the test's own factor * eps_hat (2u): gamma(14).
    assert step == pytest.approx(-0.5, rel=gamma(14))


@pytest.mark.claim("prop-gallery-eps-conventions")
@given(G=gradient_streams(min_steps=1, max_steps=60, max_dim=3), beta1=betas, beta2=betas, lr=lrs,
       eps_root=st.builds(lambda e: 10.0**e, st.floats(-16, -1)))
def test_eps_root_is_within_sqrt2_of_eps_sqrt_eps_root(G, beta1, beta2, lr, eps_root):
    """From the same state, the step with eps_root (eps = 0) is between 1 and sqrt(2) times the step
    of Algorithm 1 with eps = sqrt(eps_root).

    Both steps share the state and the floats bc1 = 1 - beta1^t, bc2 = 1 - beta2^t, and the
    band holds exactly for those values, so only the last formulas round. With eps_root:
    v/bc2 (1) + eps_root (2), the root (2), lr * (m/bc1) (2), the division (5 in all).
    Algorithm 1: v/bc2 (1), the root (1.5), + fl(sqrt(eps_root)) (2.5), lr * (m/bc1) (2), the
    division (5.5). The computed ratio adds 1: within gamma(12) of the exact ratio, and
    math.sqrt(2) one more: the band is [1 - gamma(12), sqrt(2)(1 + gamma(13))].
    """
    zero = np.zeros(G.shape[1])
    rooted = refimpl.Adam(lr=lr, beta1=beta1, beta2=beta2, eps=0.0, eps_root=eps_root)
    algorithm1 = refimpl.Adam(lr=lr, beta1=beta1, beta2=beta2, eps=math.sqrt(eps_root))
    state = rooted.init(zero)
    for g in G:
        a, _ = algorithm1.step(zero, g, state)
        b, state = rooted.step(zero, g, state)
        moving = a != 0                                   # m = 0 exactly: both steps are 0
        assert np.array_equal(b == 0, ~moving)
        ratio = b[moving] / a[moving]
        assert np.all(ratio >= 1 - gamma(12))
        assert np.all(ratio <= math.sqrt(2) * (1 + gamma(13)))


@pytest.mark.claim("prop-gallery-eps-conventions")
def test_eps_root_band_is_attained_at_both_ends():
    """The factor is sqrt(2) at |g| = sqrt(eps_root) and tends to 1 far above and far below it."""
    eps_root = 1e-8
    g = np.array([1e-4, 1e2, 1e-10])                      # |g| = sqrt(eps_root), much larger, much smaller
    rooted = refimpl.Adam(lr=1.0, eps=0.0, eps_root=eps_root)
    algorithm1 = refimpl.Adam(lr=1.0, eps=math.sqrt(eps_root))
    ratio = first_adam_step(rooted, g) / first_adam_step(algorithm1, g)
    assert ratio[0] == pytest.approx(math.sqrt(2), rel=gamma(13))
    # (r + 1)/sqrt(r^2 + 1) at r = 1e6 and 1e-6 is 1 + 1e-6 - O(1e-12).
    assert ratio[1:] == pytest.approx([1.0, 1.0], abs=2e-6)


# ------------------------------------------------------------------------------------------------
# prop-gallery-loss-scale
# ------------------------------------------------------------------------------------------------

@pytest.mark.claim("prop-gallery-loss-scale")
@given(
    k=st.integers(-20, 20), x0=arrays(np.float64, (2,), elements=coordinates),
    beta1=betas, beta2=betas, lr=st.floats(1e-3, 0.1),
    eps=st.one_of(st.just(0.0), st.floats(1e-12, 1e-2)), eps_root=st.one_of(st.just(0.0), st.floats(1e-16, 1e-4)),
    variant=adam_variants, steps=st.integers(1, 60),
)
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # eps = 0, g = 0: 0/0
def test_loss_scale_is_an_eps_scale(k, x0, beta1, beta2, lr, eps, eps_root, variant, steps):
    """Adam on s f with (s eps, s^2 eps_root) follows bitwise the iterates of Adam on f with
    (eps, eps_root), for s = 2^k, in every convention.

    Every quantity of the first run is a power of two times the second's (m by s; v, v_hat,
    v_max, eps_root and eps_root * bc2 by s^2; sqrt and eps by s), and multiplying by a power of
    two commutes with rounding, so the steps are bitwise equal.
    """
    s = 2.0**k
    scaled = refimpl.Adam(lr=lr, beta1=beta1, beta2=beta2, eps=eps * s, eps_root=eps_root * s * s, **variant)
    plain = refimpl.Adam(lr=lr, beta1=beta1, beta2=beta2, eps=eps, eps_root=eps_root, **variant)
    a = trajectory(scaled, lambda x: s * rosenbrock(x)[1], x0, steps)
    b = trajectory(plain, lambda x: rosenbrock(x)[1], x0, steps)
    assert np.array_equal(a, b, equal_nan=True)
