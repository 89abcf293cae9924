"""Properties of refimpl.Adam that follow from its algebra (the theory's test catalogue, the
parts that are about the implementation; the book's theorems get their own tests later).

Exactness notes used below: multiplying by a power of two is exact in binary floating point
(barring overflow/underflow), IEEE ``sqrt(x*x) == |x|`` exactly, and a maximum is exact.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import refimpl
from strategies import gradient_entry

U = 2.0**-53
nonzero = st.builds(lambda s, e, m: s * m * 10.0**e, st.sampled_from([-1.0, 1.0]), st.integers(-30, 30),
                    st.floats(1.0, 9.99))
betas = st.one_of(st.just(0.0), st.floats(1e-3, 0.999))


def run(opt, grads, theta0=None):
    """Apply ``opt`` to a gradient stream (rows of ``grads``); return the steps taken and the state."""
    theta = np.zeros(grads.shape[1]) if theta0 is None else theta0
    state = opt.init(theta)
    steps = []
    for g in grads:
        new, state = opt.step(theta, g, state)
        steps.append(new - theta)
        theta = new
    return np.array(steps), state


def streams(max_steps=40, dim=3, elements=gradient_entry):
    return st.integers(1, max_steps).flatmap(lambda T: arrays(np.float64, (T, dim), elements=elements))


@given(streams(), betas, betas, st.integers(-20, 20))
@pytest.mark.claim("prop-gradient-scale-invariance")
def test_gradient_scaling_by_a_power_of_two_is_exact(G, beta1, beta2, k):
    """Scaling every gradient by c = 2^k and eps by c leaves every step bitwise unchanged:
    m and v scale by c and c^2 exactly, sqrt(c^2 v) = c sqrt(v), and the ratio cancels c."""
    c = 2.0**k
    a, _ = run(refimpl.Adam(lr=1e-2, beta1=beta1, beta2=beta2, eps=1e-8), G)
    b, _ = run(refimpl.Adam(lr=1e-2, beta1=beta1, beta2=beta2, eps=1e-8 * c), c * G)
    assert np.array_equal(a, b)


@given(streams(elements=nonzero), st.integers(-20, 20).map(lambda k: 2.0**k))
@pytest.mark.claim("prop-sign-descent-limit")
def test_sign_descent_limit_is_exact(G, lr):
    """beta1 = beta2 = eps = 0: every step is exactly -lr * sign(g) (sqrt(g*g) == |g| in IEEE)."""
    steps, _ = run(refimpl.Adam(lr=lr, beta1=0.0, beta2=0.0, eps=0.0), G)
    assert np.array_equal(steps, -lr * np.sign(G))


@given(nonzero, betas, betas, st.integers(1, 300))
@pytest.mark.claim("prop-bias-correction-exact")
def test_constant_gradient_steps_by_lr(g, beta1, beta2, T):
    """A constant gradient g: m_hat = g and v_hat = g^2 at every t (the bias correction is exact
    here), so with eps = 0 every step is -lr sign(g). The recursion accumulates at most ~4 roundings
    per step in m and v and the corrections lose u/(1 - beta^t) each: the tolerance is
    8u (t + 1/(1-beta1^t) + 1/(1-beta2^t)) relative."""
    G = np.full((T, 1), g)
    steps, _ = run(refimpl.Adam(lr=1.0, beta1=beta1, beta2=beta2, eps=0.0), G)
    t = np.arange(1, T + 1)[:, None]
    tol = 8 * U * (t + 1 / (1 - beta1**t) + 1 / (1 - beta2**t))
    assert np.all(np.abs(steps + np.sign(g)) <= tol)


@given(streams(max_steps=60), betas, st.floats(0.5, 0.999), st.floats(1e-12, 1e-2))
@pytest.mark.claim("thm-efficient-form-time-varying-eps")
def test_efficient_form_is_algorithm_1_with_time_varying_eps(G, beta1, beta2, eps_hat):
    """eps_hat=True (Kingma & Ba's reordering) equals Algorithm 1 run with
    eps_t = eps_hat / sqrt(1 - beta2^t). Both orderings round differently: each step is ~12
    roundings from exact on the same state, and the state (m, v) is bitwise shared because it
    does not depend on theta; so each step agrees to 2 * 12u relative, plus the absolute
    rounding of the subtraction from theta."""
    theta = np.zeros(G.shape[1])
    efficient = refimpl.Adam(lr=1e-2, beta1=beta1, beta2=beta2, eps=eps_hat, eps_hat=True)
    s_eff = efficient.init(theta)
    s_alg = s_eff
    for t, g in enumerate(G, start=1):
        algorithm1 = refimpl.Adam(lr=1e-2, beta1=beta1, beta2=beta2, eps=eps_hat / math.sqrt(1 - beta2**t))
        a, s_eff = efficient.step(theta, g, s_eff)
        b, s_alg = algorithm1.step(theta, g, s_alg)
        assert np.array_equal(s_eff.m, s_alg.m) and np.array_equal(s_eff.v, s_alg.v)
        np.testing.assert_allclose(a - theta, b - theta, rtol=24 * U, atol=2 * U * np.abs(theta).max())
        theta = b


@pytest.mark.claim("thm-efficient-form-time-varying-eps")
def test_efficient_form_really_differs_when_gradients_are_tiny():
    """The difference is not cosmetic: with eps = 1e-7 and |g| = 1e-6 at t = 1 the efficient
    form's effective epsilon is 3.16e-6 (beta2 = 0.999), and the first steps differ by more than
    a factor of 3: 1e-6/(1e-6 + 1e-7) against 1e-6/(1e-6 + 3.16e-6)."""
    g = np.array([1e-6])
    steps = [refimpl.Adam(lr=1.0, eps=1e-7, eps_hat=e).step(np.zeros(1), g, refimpl.Adam().init(np.zeros(1)))[0]
             for e in (False, True)]
    assert abs(steps[0][0]) > 3 * abs(steps[1][0])
    assert steps[1][0] == pytest.approx(-1e-6 / (1e-6 + 1e-7 / math.sqrt(1e-3)), rel=1e-14)


def tight_step_bound(t, beta1, beta2):
    """S_t: the supremum over gradient histories of |m_hat_t| / sqrt(v_hat_t) (Cauchy-Schwarz on
    the weights of the two averages)."""
    gamma = beta1**2 / beta2
    geometric = t if gamma == 1 else (1 - gamma**t) / (1 - gamma)
    return (1 - beta1) / (1 - beta1**t) * math.sqrt((1 - beta2**t) / (1 - beta2)) * math.sqrt(geometric)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # eps = 0, g = 0: 0/0, as everywhere
@given(streams(max_steps=80), st.floats(0.0, 0.99), st.floats(0.5, 0.9999), st.sampled_from([0.0, 1e-8]))
@pytest.mark.claim("thm-tight-step-bound")
def test_no_step_exceeds_the_tight_bound(G, beta1, beta2, eps):
    """|Delta_t| <= lr S_t for every history (with eps = 0 where v_hat > 0; eps only shrinks
    steps). The computed step carries ~20 roundings: slack (1 + 40u) covers it."""
    steps, _ = run(refimpl.Adam(lr=1.0, beta1=beta1, beta2=beta2, eps=eps), G)
    for t, step in enumerate(steps, start=1):
        finite = np.isfinite(step)  # eps = 0 with an all-zero history is 0/0
        assert np.all(np.abs(step[finite]) <= tight_step_bound(t, beta1, beta2) * (1 + 40 * U))


@given(st.integers(2, 60), st.floats(0.0, 0.95), st.floats(0.5, 0.999))
@pytest.mark.claim("thm-tight-step-bound")
def test_the_tight_bound_is_attained(t, beta1, beta2):
    """Equality holds for g_i = (beta1/beta2)^(t-i): the step of refimpl reaches S_t."""
    assume(beta1 > 0 and beta1**2 / beta2 < 1.2)
    assume((beta1 / beta2) ** (2 * t) > 1e-250)  # no underflow of g_1^2 (the formula needs every term)
    G = ((beta1 / beta2) ** (t - np.arange(1, t + 1)))[:, None]
    steps, _ = run(refimpl.Adam(lr=1.0, beta1=beta1, beta2=beta2, eps=0.0), G)
    # The closed form and the recursion each carry O(t) roundings: 16 t u relative.
    assert abs(steps[-1, 0]) == pytest.approx(tight_step_bound(t, beta1, beta2), rel=16 * t * U)


@pytest.mark.claim("cor-kingma-ba-step-bounds-fail", "prop-scale-jump-overshoot")
def test_kingma_ba_step_bound_fails_after_a_gradient_jump():
    """Kingma & Ba's 'effective step is at most alpha (1-beta1)/sqrt(1-beta2)' (3.16 alpha at the
    defaults) fails: 20000 steps at g = 1, then 12 steps at g = 100 gives a step of 6.57 alpha."""
    G = np.array([[1.0]] * 20000 + [[100.0]] * 12)
    steps, _ = run(refimpl.Adam(lr=1.0, eps=0.0), G)
    assert abs(steps[-1, 0]) > 6.5 > 0.1 / math.sqrt(0.001)


@given(streams(max_steps=60), st.floats(0.0, 0.99), st.floats(0.0, 0.999))
@pytest.mark.claim("lem-ema-closed-form")
def test_moments_are_the_closed_form_weighted_sums(G, beta1, beta2):
    """m_t = (1-beta1) sum beta1^(t-i) g_i and v_t = (1-beta2) sum beta2^(t-i) g_i^2; hence
    m_hat and v_hat are convex combinations of the history. Each recursion step costs <= 4
    roundings on terms bounded by the weighted sum of |g_i|: atol = 4 t u sum_i w_i |g_i|."""
    _, state = run(refimpl.Adam(beta1=beta1, beta2=beta2), G)
    T = G.shape[0]
    w1 = (1 - beta1) * beta1 ** (T - np.arange(1, T + 1))
    w2 = (1 - beta2) * beta2 ** (T - np.arange(1, T + 1))
    assert np.all(np.abs(state.m - w1 @ G) <= 4 * T * U * (w1 @ np.abs(G)) + 1e-300)
    assert np.all(np.abs(state.v - w2 @ G**2) <= 4 * T * U * (w2 @ G**2) + 1e-300)


def test_first_step_without_bias_correction():
    """Without the correction the first step is lr (1-beta1)/sqrt(1-beta2) sign(g): 3.16 lr at the
    defaults, which is why Kingma & Ba correct."""
    step = refimpl.Adam(lr=1.0, eps=0.0, bias_correction=False).step(
        np.zeros(1), np.array([-2.0]), refimpl.Adam().init(np.zeros(1)))[0][0]
    assert step == pytest.approx(0.1 / math.sqrt(0.001), rel=8 * U)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # eps = 0, g = 0: 0/0, as everywhere
@given(streams(max_steps=60), st.floats(0.0, 0.99), st.floats(0.5, 0.999))
def test_reddi_amsgrad_effective_lr_never_increases(G, beta1, beta2):
    """AMSGrad as Reddi et al. state it (max of the raw v, no bias correction, lr/sqrt(t)):
    lr_t / sqrt(v_max_t) is non-increasing, exactly in floating point (a max and a monotone
    rounding of monotone quantities)."""
    opt = refimpl.Adam(lr=lambda t: 1 / math.sqrt(t), beta1=beta1, beta2=beta2, eps=0.0,
                       bias_correction=False, amsgrad=True)
    theta, state = np.zeros(G.shape[1]), opt.init(np.zeros(G.shape[1]))
    previous = np.full(G.shape[1], np.inf)
    for t, g in enumerate(G, start=1):
        theta, state = opt.step(theta, g, state)
        with np.errstate(divide="ignore"):
            rate = (1 / math.sqrt(t)) / np.sqrt(state.v_max)
        assert np.all(rate <= previous)
        previous = rate


def test_pytorch_amsgrad_effective_lr_can_grow():
    """PyTorch's AMSGrad (max of the raw v, then the *current* correction) lets the effective
    rate lr sqrt(1-beta2^t)/sqrt(v_max) grow after one gradient spike, at every step."""
    opt = refimpl.Adam(lr=1.0, amsgrad=True, amsgrad_max_of="v", eps=0.0)
    G = np.array([[1.0]] + [[0.0]] * 2999)
    theta, state = np.zeros(1), opt.init(np.zeros(1))
    rates = []
    for t, g in enumerate(G, start=1):
        theta, state = opt.step(theta, g, state)
        rates.append(math.sqrt(1 - 0.999**t) / math.sqrt(state.v_max[0]))
    assert all(b > a for a, b in zip(rates, rates[1:]))
    assert rates[-1] / rates[0] > 30


@given(streams(max_steps=30), st.floats(1e-4, 1.0), st.floats(0.0, 0.99))
def test_a_schedule_equals_stepping_with_its_values(G, a, beta1):
    """lr = alpha/sqrt(t) and beta1_t = beta1 lam^(t-1) as callables give bitwise the steps of
    fresh optimizers built with the values at each t (with the bias correction 1 - beta1_1^t)."""
    lam = 0.99
    opt = refimpl.Adam(lr=lambda t: a / math.sqrt(t), beta1=lambda t: beta1 * lam ** (t - 1))
    theta = np.zeros(G.shape[1])
    s1 = s2 = opt.init(theta)
    x1 = x2 = theta
    for t, g in enumerate(G, start=1):
        x1, s1 = opt.step(x1, g, s1)
        # the same step with fixed numbers: beta1 in the moment, beta1_1 in the correction
        fixed = refimpl.Adam(lr=a / math.sqrt(t), beta1=beta1 * lam ** (t - 1))
        m = fixed.beta1 * s2.m + (1 - fixed.beta1) * g
        v = fixed.beta2 * s2.v + (1 - fixed.beta2) * g * g
        x2 = x2 - fixed.lr * (m / (1 - beta1**t)) / (np.sqrt(v / (1 - fixed.beta2**t)) + fixed.eps)
        s2 = refimpl.AdamState(t, m, v, None)
        assert np.array_equal(x1, x2) and np.array_equal(s1.m, s2.m)
