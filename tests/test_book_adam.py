"""Tests of the claims of the chapter "Adam from first principles" (book/adam.md).

Each test names the labels it verifies with ``@pytest.mark.claim``; the book prints the list
under each claim. Some claims of the chapter are also verified by tests in
``test_properties_adam.py`` (exact scaling, sign descent, the efficient form, the tight step
bound), which carry the same markers.

Tolerances.  ``u = 2**-53`` is the unit roundoff of float64; one elementwise operation has
relative error at most ``u``; ``1 - beta**t`` computed by Python has relative error at most
``u + 2u beta^t / (1 - beta^t) <= 2u / (1 - beta^t)`` (``tolerances.bias_correction_rel_err``);
one step of ``m = beta1 m + (1 - beta1) g`` makes 4 roundings (``1 - beta1``, two products, a sum)
on terms bounded by the weighted sum of ``|g_i|``; propagated with the factor ``beta1^(t-i)``, the
error after ``t`` steps is at most ``4 t u`` times that weighted sum. ``v = beta2 v + (1 - beta2)
g g`` makes 5 roundings on nonnegative terms: at most ``5 t u v_t``.
Bitwise assertions appear only where the arithmetic is exact: scaling by a power of two (barring
overflow and underflow, which the generators exclude), and a step taken at ``theta = 0``, whose
result ``0 - s`` is exactly ``-s``.
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
from strategies import gradient_entry
from tolerances import U64 as U

betas = st.one_of(st.just(0.0), st.floats(1e-3, 0.999))
beta1s_pos = st.floats(1e-3, 0.99)
beta2s_pos = st.floats(0.5, 0.9999)
nonzero = st.builds(lambda s, e, m: s * m * 10.0**e, st.sampled_from([-1.0, 1.0]),
                    st.integers(-30, 30), st.floats(1.0, 9.99))


def streams(max_steps=40, dim=3, elements=gradient_entry):
    """Gradient histories: arrays (T, d), row t - 1 is the gradient of step t."""
    return st.integers(1, max_steps).flatmap(lambda T: arrays(np.float64, (T, dim), elements=elements))


def open_loop(opt, grads):
    """Feed ``opt`` the rows of ``grads`` at theta = 0 every time.

    Adam's moments do not depend on theta (no weight decay here), so this is the run on that
    gradient history; each returned step is exact (the new parameters are 0 - s = -s).
    Returns the steps (T, ...) and the states after each step.
    """
    zero = np.zeros(grads.shape[1:])
    state = opt.init(zero)
    steps, states = [], []
    for g in grads:
        new, state = opt.step(zero, g, state)
        steps.append(new)
        states.append(state)
    return np.array(steps), states


def rel_bc(beta, t):
    """Bound on the relative error of fl(1 - beta^t), in units of u."""
    return 1.0 if beta == 0 else 1 + 2 * beta**t / (1 - beta**t)


def tight_bound(t, beta1, beta2):
    """S_t of the chapter, in Python floats with the geometric sum summed exactly (fsum)."""
    gamma = beta1 * beta1 / beta2
    geometric = math.fsum(gamma**k for k in range(t))
    return (1 - beta1) / (1 - beta1**t) * math.sqrt((1 - beta2**t) / (1 - beta2)) * math.sqrt(geometric)


def extremal_history(t, beta1, beta2):
    """g_i = (beta1/beta2)^(t - i), i = 1..t: the history that attains S_t, as a (t, 1) array."""
    return ((beta1 / beta2) ** (t - np.arange(1, t + 1)))[:, None]


def assert_step_uses(step, m_hat, v_hat, *, lr, eps):
    """The step refimpl took is -lr m_hat / (sqrt(v_hat) + eps) for the m_hat, v_hat the test
    computed from the state: so the test's corrections are refimpl's. Up to the order of the
    operations: 6 roundings (two divisions, sqrt, + eps, *, /) on each side."""
    np.testing.assert_allclose(step, -lr * m_hat / (np.sqrt(v_hat) + eps), rtol=12 * U, atol=0)


# ----------------------------------------------------------------------------- moments


@given(streams(max_steps=60), betas, betas)
@pytest.mark.claim("cor-moments-convex-combination")
def test_bias_corrected_moments_lie_between_extreme_gradients(G, beta1, beta2):
    """min_i g_i <= m_hat_t <= max_i g_i and min_i g_i^2 <= v_hat_t <= max_i g_i^2, per coordinate."""
    steps, states = open_loop(refimpl.Adam(lr=0.5, beta1=beta1, beta2=beta2, eps=1e-8), G)
    for t, (step, state) in enumerate(zip(steps, states), start=1):
        m_hat = state.m / (1 - beta1**t)
        v_hat = state.v / (1 - beta2**t)
        assert_step_uses(step, m_hat, v_hat, lr=0.5, eps=1e-8)
        seen = G[:t]
        M, M2 = np.abs(seen).max(axis=0), (seen**2).max(axis=0)
        # The recursion is off by <= 4tu * sum_i w_i |g_i| <= 4tu (1 - beta^t) M (5tu for v); the
        # division by fl(1 - beta^t) adds rel_bc + 1 roundings relative to m_hat, and |m_hat| <= M.
        tol_m = (4 * t + rel_bc(beta1, t) + 1) * U * M
        tol_v = (5 * t + rel_bc(beta2, t) + 1) * U * M2
        assert np.all(m_hat <= seen.max(axis=0) + tol_m) and np.all(m_hat >= seen.min(axis=0) - tol_m)
        assert np.all(v_hat <= M2 + tol_v) and np.all(v_hat >= (seen**2).min(axis=0) - tol_v)


@given(nonzero, betas, betas, st.integers(1, 300), st.sampled_from([0.0, 1e-8, 1e-3]))
@pytest.mark.claim("prop-bias-correction-exact")
def test_constant_gradient_is_recovered_exactly_by_the_correction(g, beta1, beta2, T, eps):
    """Constant g: m_hat_t = g, v_hat_t = g^2 and Delta_t = -lr g/(|g| + eps) at every t."""
    lr = 0.5
    steps, states = open_loop(refimpl.Adam(lr=lr, beta1=beta1, beta2=beta2, eps=eps), np.full((T, 1), g))
    for t, (step, state) in enumerate(zip(steps, states), start=1):
        # m_t = g (1 - beta1^t) with error <= 4tu |g| (1 - beta1^t); the correction adds
        # rel_bc + 1 roundings: |m_hat - g| <= (4t + rel_bc + 1) u |g|. Same for v with g^2 (5t).
        err_m = (4 * t + rel_bc(beta1, t) + 1) * U
        err_v = (5 * t + rel_bc(beta2, t) + 1) * U
        assert abs(state.m[0] / (1 - beta1**t) - g) <= err_m * abs(g)
        assert abs(state.v[0] / (1 - beta2**t) - g * g) <= err_v * g * g
        # The step: err_m + err_v/2 from the moments, then sqrt, + eps, /, * lr: 4 more roundings;
        # eps only adds to the denominator, so these relative errors carry over.
        expected = -lr * g / (abs(g) + eps)
        assert abs(step[0] - expected) <= (err_m + err_v / 2 + 4 * U) * abs(expected)


def _dependent_histories(t, seed, mu, spread, s):
    """All 2^t equally likely sign patterns xi in {-1, 1}^t, as columns, and two gradient
    histories built from them whose moments are stationary but which are far from independent:

    * first[i]  = mu + a_i(xi_1..xi_{i-1}) xi_i, so E first[i] = mu;
    * second[i] = sigma_i(xi) sqrt(s (1 + b_i(xi_1..xi_{i-1}) xi_i)) with |b| < 1 and any signs
      sigma, so E second[i]^2 = s.

    The amplitudes a, b depend on the earlier signs through a table drawn from ``seed``.
    """
    rng = np.random.default_rng(seed)
    n = 2**t
    patterns = np.arange(n)
    xi = np.array([2.0 * ((patterns >> i) & 1) - 1 for i in range(t)])        # (t, n)
    prefix = np.array([patterns & ((1 << i) - 1) for i in range(t)])           # earlier signs
    a = spread * rng.uniform(-1, 1, size=(t, max(n // 2, 1)))
    b = 0.99 * rng.uniform(-1, 1, size=(t, max(n // 2, 1)))
    rows = np.arange(t)[:, None]
    first = mu + a[rows, prefix] * xi
    signs = rng.choice([-1.0, 1.0], size=(t, n))
    second = signs * np.sqrt(s * (1 + b[rows, prefix] * xi))
    return first, second


@given(st.integers(1, 8), st.integers(0, 2**32 - 1), betas, betas, st.floats(-10, 10),
       st.floats(0, 100), st.floats(1e-3, 1e3))
@pytest.mark.claim("prop-bias-correction-unbiased")
def test_corrected_moments_are_unbiased_under_stationary_moments(t, seed, beta1, beta2, mu, spread, s):
    """E m_hat_t = mu and E v_hat_t = s exactly, computed over all 2^t outcomes of dependent gradients."""
    first, second = _dependent_histories(t, seed, mu, spread, s)
    opt = refimpl.Adam(lr=0.5, beta1=beta1, beta2=beta2, eps=1e-8)
    zero = {"first": np.zeros(2**t), "second": np.zeros(2**t)}
    state = opt.init(zero)
    for i in range(t):
        step, state = opt.step(zero, {"first": first[i], "second": second[i]}, state)
    for key in zero:
        assert_step_uses(step[key], state.m[key] / (1 - beta1**t), state.v[key] / (1 - beta2**t), lr=0.5, eps=1e-8)
    mean_m_hat = math.fsum(state.m["first"] / (1 - beta1**t)) / 2**t      # fsum: correctly rounded
    mean_v_hat = math.fsum(state.v["second"] / (1 - beta2**t)) / 2**t
    # Per outcome: the gradient itself is rounded (u|g|; m_hat is a convex combination, so this
    # moves it by <= u M), the recursion and correction as in the convex-combination test
    # ((4t + rel_bc + 1)u M), the correctly rounded mean one more u M; / 2^t is exact.
    M = np.abs(first).max()
    tol_m = (4 * t + rel_bc(beta1, t) + 3) * U * M
    assert abs(mean_m_hat - mu) <= tol_m
    # second[i]^2 is 1 + b xi (1 rounding), times s (1), sqrt (halves, +1): each g^2 is within
    # 4u of its intended value; recursion 5tu, correction rel_bc + 1, mean 1.
    M2 = (second**2).max()
    assert abs(mean_v_hat - s) <= (5 * t + rel_bc(beta2, t) + 6) * U * M2
    # The test can fail: without the correction the mean is mu (1 - beta1^t), off by |mu| beta1^t.
    if abs(mu) * beta1**t > 4 * tol_m:
        assert abs(math.fsum(state.m["first"]) / 2**t - mu) > tol_m


# ----------------------------------------------------------------------------- invariances


def _step_error_scale(t, beta1, beta2):
    """Rounding of one computed step at t, in units of u * lr * sum_i w_i|g_i| / sqrt(v_hat_t).

    m_hat: recursion 4t, fl(c g) 1 (a scaled run), correction rel_bc + 1. v_hat, relative:
    recursion 5t, fl(c g) squared 2, correction rel_bc + 1, halved by the square root, which
    adds 1. Then fl(c eps), + eps, lr * m_hat and / add 4.
    """
    return (4 * t + rel_bc(beta1, t) + 2) + (5 * t + rel_bc(beta2, t) + 3) / 2 + 1 + 4


@given(streams(max_steps=40), st.floats(0.0, 0.99), st.floats(0.5, 0.9999), st.floats(1e-3, 1e3),
       st.floats(1e-12, 1e-2))
@pytest.mark.claim("prop-gradient-scale-invariance")
def test_gradient_scaling_by_any_factor_changes_steps_by_rounding_only(G, beta1, beta2, c, eps):
    """Delta_t(c g; c eps) = Delta_t(g; eps) for any c > 0, up to the rounding of the two runs."""
    a, _ = open_loop(refimpl.Adam(lr=1.0, beta1=beta1, beta2=beta2, eps=eps), G)
    b, _ = open_loop(refimpl.Adam(lr=1.0, beta1=beta1, beta2=beta2, eps=c * eps), c * G)
    for t in range(1, G.shape[0] + 1):
        # Each run's step is within _step_error_scale * u * sum_i w_i|g_i| / sqrt(v_hat) of the
        # exact one, and Cauchy-Schwarz (the tight-bound theorem applied to |g|) bounds that
        # ratio by S_t; eps only enlarges the denominator. Two runs: twice that.
        tol = 2 * _step_error_scale(t, beta1, beta2) * U * tight_bound(t, beta1, beta2)
        assert np.all(np.abs(a[t - 1] - b[t - 1]) <= tol)


@given(streams(max_steps=40, elements=nonzero), betas, betas, st.lists(st.integers(-20, 20), min_size=3, max_size=3),
       st.lists(st.sampled_from([-1.0, 1.0]), min_size=3, max_size=3), st.sampled_from([0.0, 1e-8]))
@pytest.mark.claim("prop-gradient-scale-invariance")
def test_diagonal_rescaling_of_gradients_flips_signs_only(G, beta1, beta2, ks, signs, eps):
    """g -> D g with D = diag(+-2^k_i), eps_i -> |d_i| eps: every step becomes sign(D) Delta_t, bitwise."""
    d = np.array(signs) * 2.0 ** np.array(ks)
    a, _ = open_loop(refimpl.Adam(lr=1e-2, beta1=beta1, beta2=beta2, eps=eps), G)
    b, _ = open_loop(refimpl.Adam(lr=1e-2, beta1=beta1, beta2=beta2, eps=np.abs(d) * eps), G * d)
    assert np.array_equal(b, np.sign(d) * a)


def _separable_gradient(kind, x, c):
    """Gradient of sum_i c_i f(x_i), with f(x) = x^2/2 (refimpl.problems.quadratic) or x^4/4 - x."""
    if kind == "quadratic":
        return quadratic(x, c)[1]
    return c * (x**3 - 1.0)


@given(st.sampled_from(["quadratic", "quartic"]),
       arrays(np.float64, 3, elements=st.builds(lambda s, x: s * x, st.sampled_from([-1.0, 1.0]), st.floats(0.01, 3.0))),
       st.lists(st.integers(-30, 30), min_size=3, max_size=3), betas, betas, st.floats(1e-4, 0.5),
       st.sampled_from([0.0, 1e-8, 1e-3]), st.integers(1, 200))
@pytest.mark.claim("prop-separable-curvature-invariance")
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_separable_objective_trajectory_ignores_the_weights(kind, x0, ks, beta1, beta2, lr, eps, T):
    """On sum_i c_i f(x_i), c_i = 2^k_i, Adam with eps follows bitwise the path of c_i = 1 with eps/c_i."""
    assume(kind == "quadratic" or np.all(x0 != 1.0))  # the quartic's gradient vanishes at 1
    c = 2.0 ** np.array(ks)
    on_weighted = refimpl.Adam(lr=lr, beta1=beta1, beta2=beta2, eps=eps)
    on_plain = refimpl.Adam(lr=lr, beta1=beta1, beta2=beta2, eps=eps / c)
    x, y = x0.copy(), x0.copy()
    sx, sy = on_plain.init(x), on_weighted.init(y)
    for _ in range(T):
        x, sx = on_plain.step(x, _separable_gradient(kind, x, np.ones(3)), sx)
        y, sy = on_weighted.step(y, _separable_gradient(kind, y, c), sy)
        # eps = 0 at a point where v_hat = 0 (beta2 = 0 and a zero gradient): 0/0 in both runs
        assert np.array_equal(x, y, equal_nan=True)


@given(arrays(np.float64, 2, elements=st.floats(-2, 2).map(lambda x: round(x, 6))), st.lists(st.integers(-10, 10), min_size=2, max_size=2),
       st.lists(st.sampled_from([-1.0, 1.0]), min_size=2, max_size=2), st.floats(1e-4, 1e-1),
       st.sampled_from([0.0, 1e-8, 1e-3]), st.integers(1, 100))
@pytest.mark.claim("prop-reparametrization-per-coordinate-lr")
def test_reparametrization_equals_per_coordinate_learning_rates(theta0, ks, signs, lr, eps, T):
    """Adam on h(phi) = f(D phi), mapped by theta = D phi, is Adam on f with lr |d_i| and eps/|d_i|, bitwise."""
    assume(eps > 0 or np.all(rosenbrock(theta0)[1] != 0))  # eps = 0 needs a nonzero first gradient
    d = np.array(signs) * 2.0 ** np.array(ks)
    on_h = refimpl.Adam(lr=lr, eps=eps)
    on_f = refimpl.Adam(lr=lr * np.abs(d), eps=eps / np.abs(d))
    phi, theta = theta0 / d, theta0.copy()
    s_h, s_f = on_h.init(phi), on_f.init(theta)
    for _ in range(T):
        phi, s_h = on_h.step(phi, d * rosenbrock(d * phi)[1], s_h)     # grad h(phi) = D grad f(D phi)
        theta, s_f = on_f.step(theta, rosenbrock(theta)[1], s_f)
        assert np.array_equal(d * phi, theta)


# ----------------------------------------------------------------------------- step size


@pytest.mark.parametrize("t", [2000, 20000])
@pytest.mark.claim("thm-tight-step-bound")
def test_tight_bound_tends_to_its_limit_at_the_defaults(t):
    """Defaults: the extremal history's step is lr S_t, and S_t -> S_inf = 7.2703 (beta1^2 < beta2)."""
    beta1, beta2 = 0.9, 0.999
    with np.errstate(divide="ignore", invalid="ignore"):  # the oldest g_i (or g_i^2) underflow: 0/0, x/0
        steps, _ = open_loop(refimpl.Adam(lr=1.0, eps=0.0), extremal_history(t, beta1, beta2))
    s_inf = (1 - beta1) / math.sqrt((1 - beta2) * (1 - beta1**2 / beta2))
    assert s_inf == pytest.approx(7.2703, abs=5e-5)
    # The recursion and the closed form each carry O(t) roundings (16 t u); g_1^2 underflows for
    # t = 20000, which drops terms below 1e-300 of the sums, far below that.
    assert abs(steps[-1, 0]) == pytest.approx(tight_bound(t, beta1, beta2), rel=16 * t * U)
    # S_t - S_inf: the factors 1 - beta^t and 1 - gamma^t are within beta2^t of 1 (the largest).
    assert abs(tight_bound(t, beta1, beta2) - s_inf) <= 2 * s_inf * beta2**t + 16 * t * U


@pytest.mark.parametrize(("beta1", "beta2", "t"), [(0.9, 0.81, 400), (0.9, 0.7, 200)])
@pytest.mark.claim("thm-tight-step-bound")
def test_tight_bound_is_unbounded_when_beta1_squared_reaches_beta2(beta1, beta2, t):
    """gamma = 1 (0.9, 0.81): S_t grows like sqrt(t); gamma > 1 (0.9, 0.7): geometrically; refimpl attains it."""
    steps, _ = open_loop(refimpl.Adam(lr=1.0, beta1=beta1, beta2=beta2, eps=0.0),
                         extremal_history(t, beta1, beta2))
    assert abs(steps[-1, 0]) == pytest.approx(tight_bound(t, beta1, beta2), rel=16 * t * U)
    gamma = beta1**2 / beta2
    if gamma == pytest.approx(1.0, abs=1e-12):
        # S_t >= (1 - beta1) sqrt(t): here 0.1 sqrt(400) = 2, and the exact value is ~4.59
        assert abs(steps[-1, 0]) >= (1 - beta1) * math.sqrt(t) * (1 - 1e-12)
    else:
        assert abs(steps[-1, 0]) > 1e6


@given(beta1s_pos, st.floats(0.01, 0.9999))
@pytest.mark.claim("cor-kingma-ba-step-bounds-fail")
def test_two_steps_exceed_alpha_unless_beta1_equals_beta2(beta1, beta2):
    """t = 2, g = (beta1/beta2, 1): Delta_2 = lr sqrt(1 + (beta1-beta2)^2/(beta2 (1+beta1)^2)) > lr."""
    excess = (beta1 - beta2) ** 2 / (beta2 * (1 + beta1) ** 2)
    steps, _ = open_loop(refimpl.Adam(lr=1.0, beta1=beta1, beta2=beta2, eps=0.0),
                         np.array([[beta1 / beta2], [1.0]]))
    # Gradients of one sign: the step is off by _step_error_scale u relative (the first gradient
    # beta1/beta2 is itself rounded: 2 more); the formula by 8u (excess: 6, 1 +, sqrt).
    rel = (_step_error_scale(2, beta1, beta2) + 2 + 8) * U
    assert abs(steps[1, 0]) == pytest.approx(math.sqrt(1 + excess), rel=rel)
    if excess > 4 * rel:
        assert abs(steps[1, 0]) > 1.0


@given(st.integers(1, 60), st.floats(0.0, 0.99), st.floats(0.5, 0.999))
@pytest.mark.claim("cor-kingma-ba-step-bounds-fail")
def test_the_extremal_step_is_never_shorter_than_alpha(t, beta1, beta2):
    """S_t >= 1: on the extremal history refimpl's step is at least lr, at every t and for all betas."""
    assume((beta1 / beta2) ** (2 * t) > 1e-250 or beta1 == 0)  # no underflow of g_1^2 (0^0 = 1 for beta1 = 0)
    G = np.zeros((t, 1))
    G[-1] = 1.0
    if beta1 > 0:
        G = extremal_history(t, beta1, beta2)
    with np.errstate(invalid="ignore"):  # beta1 = 0: the zeros before the spike give 0/0
        steps, _ = open_loop(refimpl.Adam(lr=1.0, beta1=beta1, beta2=beta2, eps=0.0), G)
    # One-signed history: the computed step is within _step_error_scale u of S_t >= 1 (the
    # extremal g_i are themselves rounded powers: (t + 2)u more).
    assert abs(steps[-1, 0]) >= 1 - (_step_error_scale(t, beta1, beta2) + t + 2) * U


@given(streams(max_steps=60), st.floats(0.0, 0.99), st.sampled_from([0.0, 1e-8]))
@pytest.mark.claim("cor-kingma-ba-step-bounds-fail")
def test_alpha_bounds_every_step_when_beta1_equals_beta2(G, beta, eps):
    """beta1 = beta2: S_t = 1, so |Delta_t| <= lr for every history (where the second published bound holds)."""
    with np.errstate(invalid="ignore"):  # eps = 0 and an all-zero history: 0/0
        steps, _ = open_loop(refimpl.Adam(lr=1.0, beta1=beta, beta2=beta, eps=eps), G)
    finite = np.isfinite(steps)
    t = np.broadcast_to(np.arange(1, G.shape[0] + 1)[:, None], steps.shape)
    # Relative rounding of a step as in the scaling test; the bound itself is exactly 1.
    slack = np.vectorize(lambda k: _step_error_scale(k, beta, beta))(t) * U
    assert np.all(np.abs(steps[finite]) <= 1 + slack[finite])


@pytest.mark.parametrize(("beta1", "beta2", "first_t"),
                         [(0.9, 0.999, 210), (0.5, 0.9, 13), (0.2, 0.99, 320), (0.99, 0.99999, 2010)])
@pytest.mark.claim("cor-kingma-ba-step-bounds-fail")
def test_first_published_bound_is_exceeded(beta1, beta2, first_t):
    """(1 - beta1) > sqrt(1 - beta2), beta1 > 0: the extremal history exceeds lr (1 - beta1)/sqrt(1 - beta2)."""
    published = (1 - beta1) / math.sqrt(1 - beta2)
    assert 1 - beta1 > math.sqrt(1 - beta2)
    # S_t first exceeds the published bound at first_t (S_t is increasing here)
    assert tight_bound(first_t - 1, beta1, beta2) <= published < tight_bound(first_t, beta1, beta2)
    with np.errstate(divide="ignore", invalid="ignore"):  # early g_i^2 may underflow: x/0, 0/0
        steps, _ = open_loop(refimpl.Adam(lr=1.0, beta1=beta1, beta2=beta2, eps=0.0),
                             extremal_history(first_t, beta1, beta2))
    assert abs(steps[-1, 0]) > published
    # With beta1 = 0 the published bound holds: the single spike attains sqrt((1-beta2^t)/(1-beta2)) < it.
    spike = np.zeros((first_t, 1))
    spike[-1] = 1.0
    with np.errstate(invalid="ignore"):  # the zeros before the spike: 0/0
        zero_b1, _ = open_loop(refimpl.Adam(lr=1.0, beta1=0.0, beta2=beta2, eps=0.0), spike)
    assert abs(zero_b1[-1, 0]) < 1 / math.sqrt(1 - beta2)


@pytest.mark.claim("cor-kingma-ba-step-bounds-fail")
def test_defaults_published_bound_numbers():
    """The numbers the chapter quotes: published 3.1623, S_210 = 3.1649 > it, S_209 below it."""
    assert tight_bound(209, 0.9, 0.999) < 0.1 / math.sqrt(0.001) < tight_bound(210, 0.9, 0.999)
    assert tight_bound(210, 0.9, 0.999) == pytest.approx(3.16488, abs=1e-5)


def _jump_step(N, k, G, beta1, beta2):
    """Closed form of |m_hat_t| / sqrt(v_hat_t) at t = N + k after N gradients 1 and k gradients G."""
    t = N + k
    m = beta1**k * (1 - beta1**N) + (1 - beta1**k) * G
    v = beta2**k * (1 - beta2**N) + (1 - beta2**k) * G * G
    return (m / (1 - beta1**t)) / math.sqrt(v / (1 - beta2**t))


@given(st.integers(1, 300), st.integers(1, 40), st.floats(1.0, 1e4), beta1s_pos, beta2s_pos)
@pytest.mark.claim("prop-scale-jump-overshoot")
def test_step_after_a_scale_jump_matches_the_closed_form(N, k, G, beta1, beta2):
    """N gradients 1, then k gradients G: refimpl's step equals the proposition's closed form."""
    history = np.array([1.0] * N + [G] * k)[:, None]
    steps, _ = open_loop(refimpl.Adam(lr=1.0, beta1=beta1, beta2=beta2, eps=0.0), history)
    t = N + k
    # All terms are positive, so errors are relative. Recursion: 4tu on m, 5tu on v. Closed form:
    # beta^k (2u), 1 - beta^N and 1 - beta^k (rel_bc each), product, * G (* G G: 2), sum: <= 4 more.
    # Both divide by the same fl(1 - beta^t). v's errors are halved by sqrt (+1), the quotients
    # add 2; G*G in Adam is inside the 5t.
    closed = lambda b, n: 2 + rel_bc(b, N) + rel_bc(b, k) + 4 + n  # noqa: E731
    rel = (4 * t + closed(beta1, 0) + (5 * t + closed(beta2, 1)) / 2 + 1 + 2) * U
    assert abs(steps[-1, 0]) == pytest.approx(_jump_step(N, k, G, beta1, beta2), rel=rel)


def test_scale_jump_overshoot_at_the_defaults():
    """Defaults: the limit (1-beta1^k)/sqrt(1-beta2^k) peaks at k = 12 (6.5685); 20000 ones then 12 x 100 gives 6.567."""
    k = np.arange(1, 200)
    limit = (1 - 0.9**k) / np.sqrt(1 - 0.999**k)
    assert k[np.argmax(limit)] == 12 and limit.max() == pytest.approx(6.5685, abs=1e-4)
    for G in (100.0, 1e6):
        steps, _ = open_loop(refimpl.Adam(lr=1.0, eps=0.0), np.array([1.0] * 20000 + [G] * 12)[:, None])
        step = abs(steps[-1, 0])
        assert step == pytest.approx(_jump_step(20000, 12, G, 0.9, 0.999), rel=64 * 20012 * U)
        # The old history's share: m_hat gains 0.9^12/G, v_hat 0.999^12/G^2 relative to the
        # jump's terms (up to the factors 1 - beta^12 >= 0.0119), and 0.999^20000 < 3e-9.
        assert abs(step - limit.max()) <= limit.max() * (0.9**12 / 0.0119 / G + 0.999**12 / 0.0119 / G**2 + 3e-9)
        assert step > 2 * 0.1 / math.sqrt(0.001)  # twice the published bound
    assert abs(steps[-1, 0]) == pytest.approx(6.5685, abs=1e-4)
