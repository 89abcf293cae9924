"""Tests of the claims of the chapter "Does Adam converge?" (book/convergence*.md).

Each test names the labels it verifies with ``@pytest.mark.claim``; the book prints the list
under each claim. Every optimizer run here is ``refimpl``'s; the only other implementation is a
direct transcription of Defossez et al.'s recursion, the oracle for ``prop-defossez-form``.

Conventions. Round ``t`` of the online game is step ``t`` of refimpl: the step receives
``g_t``, the gradient at the played point ``x_t``, and returns ``x_{t+1}``; projections onto a box
are ``np.clip``, applied between steps. With ``beta1 = 0`` refimpl's first moment is ``g`` exactly
(``0 * m + 1 * g``) and its correction ``1 - 0**t`` is exactly 1, so one step is
``x - lr_t * g / (sqrt(v_hat) + eps)``, and ``a_t = (sqrt(v_hat_t) + eps) / lr_t`` read from the
state is the inverse learning rate of the chapter's lemma.

Tolerances. ``u = 2**-53``; one correctly rounded operation has relative error at most ``u``.
Bitwise assertions appear only where the arithmetic is exact or monotone: ``np.clip`` returns its
bound itself, a running maximum is exact, and a correctly rounded square root or division is
monotone in its arguments. A regret inequality is proved for exact iterates; the computed iterate
``x_{t+1}`` differs from the exact step taken from the computed ``x_t`` by ``e_t``, which the tests
bound per step, and the resulting slack is derived where it is used. Sums are taken with
``math.fsum`` (one final rounding) over terms that carry a few roundings each.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import refimpl
from tolerances import U64 as U, bias_correction_rel_err

magnitudes = st.builds(lambda sign, exponent, mantissa: sign * mantissa * 10.0**exponent,
                       st.sampled_from([-1.0, 1.0]), st.integers(-3, 2), st.floats(1.0, 9.99))
entries = st.one_of(st.just(0.0), magnitudes)
beta2s = st.one_of(st.just(0.0), st.just(0.999), st.floats(0.0, 0.999))
alphas = st.floats(1e-2, 10.0)
epss = st.floats(1e-8, 1e-1)

# The AMSGrad variants and plain Adam, as refimpl options (beta1 = 0 throughout).
VARIANTS = {
    "adam": {},
    "adam-no-correction": dict(bias_correction=False),
    "amsgrad-reddi": dict(amsgrad=True, bias_correction=False),
    "amsgrad-pytorch": dict(amsgrad=True),
    "amsgrad-optax": dict(amsgrad=True, amsgrad_max_of="v_hat"),
}


def schedule(alpha):
    return lambda t: alpha / math.sqrt(t)


def streams(max_steps, max_dim=3, elements=entries):
    """Gradient histories (T, d): row t - 1 is g_t."""
    shapes = st.tuples(st.integers(1, max_steps), st.integers(1, max_dim))
    return shapes.flatmap(lambda s: arrays(np.float64, s, elements=elements))


def v_hat_of(state, t, beta2, options):
    """The estimate that step t divided by, from refimpl's state after step t, computed with
    refimpl's own operations (so it is the same floating-point number)."""
    bc2 = 1 - beta2**t if options.get("bias_correction", True) else 1.0
    if options.get("amsgrad"):
        return state.v_max if options.get("amsgrad_max_of") == "v_hat" else state.v_max / bc2
    return state.v / bc2


def run_box(opt, G, x1, *, alpha, eps, beta2, options):
    """Online linear losses <g_t, x> on [-1, 1]^d: the played points x_t, the inverse learning
    rates a_t, and the per-step bound e_t on |x_{t+1} - clip(x_t - g_t / a_t)|."""
    x, state = x1.copy(), opt.init(x1)
    xs, As, errs = [], [], []
    for t, g in enumerate(G, start=1):
        new, state = opt.step(x, g, state)
        lr = alpha / math.sqrt(t)
        a = (np.sqrt(v_hat_of(state, t, beta2, options)) + eps) / lr
        move = g / a
        # refimpl rounds lr * g, sqrt, + eps, the division and the subtraction (5u on the step,
        # u on the result); our a and g / a add 3u, our own subtraction u more:
        # |new - (x - g / a)| <= 8u|g / a| + 2u|new|.
        err = 8 * U * np.abs(move) + 2 * U * np.abs(new)
        assert np.all(np.abs(new - (x - move)) <= err)   # refimpl steps by A_t^{-1} g_t
        xs.append(x)
        As.append(a)
        errs.append(err)
        x = np.clip(new, -1.0, 1.0)                       # clip is 1-Lipschitz: error stays <= err
    return np.array(xs), np.array(As), np.array(errs), state


def linear_regret(G, X):
    """R(T) for losses <g_t, x> on [-1, 1]^d (the best point is -sign(sum g)), and a bound on its
    rounding: each product g x is rounded once, each fsum once."""
    terms = (G * X).ravel()
    best = [math.fsum(G[:, i]) for i in range(G.shape[1])]
    regret = math.fsum(terms) + math.fsum(abs(b) for b in best)
    rounding = 2 * U * (math.fsum(np.abs(terms)) + math.fsum(np.abs(G).ravel())) + U * abs(regret)
    return regret, rounding


def trajectory_slack(As, errs, D=2.0):
    """What replacing exact iterates by computed ones can add to a regret bound: per coordinate,
    a (p + e)^2 - a p^2 <= a (2 D e + e^2) with |p| <= D, halved as in the lemma."""
    return 0.5 * math.fsum((As * (2 * D * errs + errs**2)).ravel())


# ----------------------------------------------------------------------------- the lemma


@given(streams(40), st.sampled_from(sorted(VARIANTS)), beta2s, alphas, epss,
       st.data())
@pytest.mark.claim("lem-adaptive-regret")
def test_adaptive_regret_lemma_holds_for_every_comparator(G, variant, beta2, alpha, eps, data):
    """Sum_t <g_t, x_t - x*> <= 1/2 sum_t |x_t - x*|^2_{Gamma_t} + 1/2 sum_t |g_t|^2_{A_t^-1}."""
    T, d = G.shape
    options = VARIANTS[variant]
    x1 = data.draw(arrays(np.float64, d, elements=st.floats(-1.0, 1.0)), label="x1")
    x_star = data.draw(arrays(np.float64, d, elements=st.floats(-1.0, 1.0)), label="x_star")
    opt = refimpl.Adam(lr=schedule(alpha), beta1=0.0, beta2=beta2, eps=eps, **options)
    X, A, E, _ = run_box(opt, G, x1, alpha=alpha, eps=eps, beta2=beta2, options=options)

    gaps = X - x_star
    left = (G * gaps).ravel()
    Gamma = np.diff(A, axis=0, prepend=0.0)              # Gamma_1 = A_1 (A_0 = 0)
    metric = (Gamma * gaps**2).ravel()
    steps = (G**2 / A).ravel()
    lhs = math.fsum(left)
    rhs = 0.5 * math.fsum(metric) + 0.5 * math.fsum(steps)
    # Each term carries at most 5 roundings (differences, squares, products, quotients), each
    # fsum one more: 6u of the absolute sums plus u of each result.
    rounding = 6 * U * (math.fsum(np.abs(left)) + math.fsum(np.abs(metric)) + math.fsum(steps)) \
        + U * (abs(lhs) + abs(rhs))
    assert lhs <= rhs + trajectory_slack(A, E) + rounding


@given(streams(80), st.floats(1e-2, 10.0), st.data())
@pytest.mark.claim("thm-zinkevich-ogd")
def test_projected_ogd_regret_within_zinkevich_bound(G, eta, data):
    """R(T) <= D^2 sqrt(T) / (2 eta) + (sqrt(T) - 1/2) eta G^2 for projected SGD, eta_t = eta/sqrt(t)."""
    T, d = G.shape
    x = data.draw(arrays(np.float64, d, elements=st.floats(-1.0, 1.0)), label="x1")
    opt = refimpl.SGD(lr=schedule(eta))
    state = opt.init(x)
    X, slack = [], []
    D = 2 * math.sqrt(d)                                 # Euclidean diameter of [-1, 1]^d
    for t, g in enumerate(G, start=1):
        X.append(x)
        new, state = opt.step(x, g, state)
        eta_t = eta / math.sqrt(t)
        # lr has 2 roundings, lr * g one, the subtraction one: |e| <= 3u eta_t |g| + u |new|;
        # the proof's one-step inequality then gains (2 D |e| + |e|^2) / (2 eta_t).
        e = np.linalg.norm(3 * U * eta_t * np.abs(g) + U * np.abs(new))
        slack.append((2 * D * e + e * e) / (2 * eta_t))
        x = np.clip(new, -1.0, 1.0)
    regret, rounding = linear_regret(G, np.array(X))
    Gmax = float(np.max(np.linalg.norm(G, axis=1)))
    bound = D**2 * math.sqrt(T) / (2 * eta) + (math.sqrt(T) - 0.5) * eta * Gmax**2
    assert regret <= bound * (1 + 8 * U) + math.fsum(slack) + rounding


# ----------------------------------------------------------------------------- Reddi et al.


def rho(C, beta2):
    """rho(C, beta2) of the chapter; Adam provably fails on Reddi et al.'s losses where >= 1."""
    return 1 / np.sqrt(2 * (1 + beta2 * C**2)) + 1 / np.sqrt(3 * (1 + beta2 + beta2**2 * C**2))


def beta2_star(C):
    """The largest beta2 with rho(C, beta2) >= 1, by bisection (rho decreases in beta2)."""
    low, high = 0.0, 1.0
    for _ in range(80):
        mid = (low + high) / 2
        low, high = (mid, high) if rho(C, mid) >= 1 else (low, mid)
    return low


def play_rkk(opt, C, T, *, project=True):
    """Reddi et al.'s losses (C x at t = 1, 4, 7, ..., else -x) from x_1 = 1; returns x_1..x_T."""
    x = np.array([1.0])
    state = opt.init(x)
    xs = np.empty(T)
    for t in range(1, T + 1):
        xs[t - 1] = x[0]
        x, state = opt.step(x, np.array([C if t % 3 == 1 else -1.0]), state)
        if project:
            x = np.clip(x, -1.0, 1.0)
    return xs


def period_regrets(xs, C):
    """Regret of each full period against x* = -1: C (x + 1) - (x' + 1) - (x'' + 1)."""
    K = xs.size // 3
    p = xs[: 3 * K].reshape(K, 3)
    return C * (p[:, 0] + 1) - (p[:, 1] + 1) - (p[:, 2] + 1)


@given(st.floats(2.01, 50.0), st.floats(0.0, 0.999), st.floats(-3.0, 2.0), st.booleans(),
       st.integers(1, 200))
@pytest.mark.claim("thm-reddi-nonconvergence")
def test_reddi_iterate_returns_to_one_bit_for_bit(C, fraction, log_alpha, bias_correction, K):
    """For rho(C, beta2) >= 1, any alpha, with or without bias correction: x_{3k+1} == 1.0 exactly."""
    beta2, alpha = fraction * beta2_star(C), 10.0**log_alpha
    T = 3 * K
    # Before the clip the iterate exceeds 1 by at least (rho - 1) delta with delta >= alpha_T
    # (v_hat <= C^2); the rounding of the three moves is below 1e-12 here (moves <= 100 /
    # sqrt(1 - beta2) <= 250 times a few u). A margin above 1e-9 makes the clip return 1.0.
    assume((rho(C, beta2) - 1) * alpha / math.sqrt(T) > 1e-9)
    opt = refimpl.Adam(lr=schedule(alpha), beta1=0.0, beta2=beta2, eps=0.0,
                       bias_correction=bias_correction)
    xs = play_rkk(opt, C, T)
    assert np.all(xs[0::3] == 1.0)
    # Per period, 2C - (x' + 1) - (x'' + 1) with x', x'' <= 1: the rounded operations are
    # monotone, so the computed value is >= fl(fl(2C - 2) - 2) >= 2C - 4 - 2u(2C).
    assert np.all(period_regrets(xs, C) >= 2 * C - 4 - 4 * U * C)


@pytest.mark.claim("thm-reddi-nonconvergence")
def test_reddi_exact_configuration_and_rho_on_their_curve():
    """Reddi et al.'s C = 3, beta2 = 0.1, alpha = 0.9 sqrt(0.9): x_{3k+1} == 1, R(T)/T >= 2(C - 2)/3."""
    C = 3.0
    beta2 = 1 / (1 + C**2)
    alpha = 0.9 * math.sqrt(1 - beta2)
    for bias_correction in (False, True):
        opt = refimpl.Adam(lr=schedule(alpha), beta1=0.0, beta2=beta2, eps=0.0,
                           bias_correction=bias_correction)
        xs = play_rkk(opt, C, 3000)
        assert np.all(xs[0::3] == 1.0) and np.all(xs > 0)
        assert math.fsum(period_regrets(xs, C)) / 3000 >= 2 * (C - 2) / 3 - 1e-12
    # Step 4 of the proof: along beta2 = 1/(1 + C^2), rho >= 1 for every C > 2 (the interval
    # bounds give rho > 1.008; the minimum over a dense grid is about 1.022).
    Cs = np.concatenate([2 + np.geomspace(1e-9, 1.0, 2000), np.geomspace(3.0, 1e6, 2000)])
    assert np.min(rho(Cs, 1 / (1 + Cs**2))) > 1.008


@pytest.mark.claim("thm-reddi-nonconvergence")
def test_reddi_theorem_on_a_vectorized_sweep():
    """One refimpl step per round advances a (C, beta2, alpha) grid inside rho >= 1; every cell returns to 1."""
    Cs = np.geomspace(2.05, 60.0, 7)[:, None, None]                    # axis 0: the problem
    fractions = np.array([0.0, 0.3, 0.6, 0.9, 0.99])[None, :, None]
    beta2 = np.broadcast_to(fractions * np.array([beta2_star(c) for c in Cs.ravel()])[:, None, None],
                            (7, 5, 1)).copy()                          # axis 1
    alpha = np.array([1e-2, 0.3, 3.0, 30.0])                           # axis 2
    shape = (7, 5, 4)
    for bias_correction in (False, True):
        opt = refimpl.Adam(lr=lambda t: alpha / math.sqrt(t), beta1=0.0, beta2=beta2, eps=0.0,
                           bias_correction=bias_correction)
        x = np.ones(shape)
        state = opt.init(x)
        for t in range(1, 301):
            if t % 3 == 1:
                assert np.all(x == 1.0)
            x, state = opt.step(x, np.broadcast_to(np.where(t % 3 == 1, Cs, -1.0), shape), state)
            x = np.clip(x, -1.0, 1.0)
        assert np.all(x == 1.0)                                        # x_301 = x_{3*100+1}


# ----------------------------------------------------------------------------- Kingma and Ba


def kb_run(T, *, dtype=np.float64):
    """Kingma and Ba's Algorithm 1 (bias correction, beta1 = 0, eps = 0) on Reddi et al.'s
    instance (row 0, projected) and on its convex extension to R (row 1, unprojected)."""
    C = 3.0
    beta2 = 1 / (1 + C**2)
    alpha = 0.9 * math.sqrt(1 - beta2)
    opt = refimpl.Adam(lr=schedule(alpha), beta1=0.0, beta2=beta2, eps=0.0)
    x = np.ones(2, dtype=dtype)
    state = opt.init(x)
    X, G, V = (np.empty((T, 2), dtype=dtype) for _ in range(3))
    for t in range(1, T + 1):
        slope = C if t % 3 == 1 else -1.0
        g = np.where(np.abs(x) <= 1, slope, 2 * C * np.sign(x)).astype(dtype)
        X[t - 1], G[t - 1] = x, g
        x, state = opt.step(x, g, state)
        x = np.array([np.clip(x[0], -1, 1), x[1]], dtype=dtype)
        V[t - 1] = state.v / (1 - beta2**t)
    tt = np.arange(1, T + 1)[:, None]
    slopes = np.where(tt % 3 == 1, C, -1.0)
    loss = slopes * np.clip(X, -1, 1) + 2 * C * np.maximum(np.abs(X) - 1, 0)
    R = np.cumsum(loss + slopes, axis=0)                 # f_t(-1) = -g_t
    return dict(C=C, beta2=beta2, alpha=alpha, X=X, G=G, V=V, R=R, tt=tt)


def kb_rhs(run, D, G_inf, lam=0.0):
    """Right side of Theorem 4.1 with beta1 = gamma = 0, d = 1, D = D_inf."""
    a, b2 = run["alpha"], run["beta2"]
    return (D**2 / (2 * a) * np.sqrt(run["tt"] * run["V"])
            + a * G_inf / math.sqrt(1 - b2) * np.sqrt(np.cumsum(run["G"] ** 2, axis=0))
            + D**2 * G_inf * math.sqrt(1 - b2) / (2 * a * (1 - lam) ** 2))


@pytest.mark.claim("prop-kb-theorem41-fails")
def test_kb_theorem41_fails_on_the_projected_instance():
    """Hypotheses hold (G_inf = C, D = 2); the regret exceeds the bound from T = 300 to 3000 and grows linearly."""
    T = 3000
    run = kb_run(T)
    C, alpha, beta2 = run["C"], run["alpha"], run["beta2"]
    X, G, R = run["X"][:, 0], run["G"][:, 0], run["R"][:, 0]
    assert np.all(np.abs(X) <= 1) and np.all(np.abs(G) <= C) and np.all(X[0::3] == 1.0)
    rhs = kb_rhs(run, 2.0, C)[:, 0]
    # The margins are macroscopic (R / RHS > 1.4 from T = 300 on); rounding is ~1e-12 relative.
    assert np.all(R[299:] > rhs[299:])
    # The proof's two sides: R(T) >= 2(C - 2) floor(T/3) and RHS(T) <= A sqrt(T) + B.
    t = np.arange(1, T + 1)
    # (np.cumsum over <= 3000 terms: relative rounding below T u sum|terms| / R < 1e-9.)
    assert np.all(R >= 2 * (C - 2) * (t // 3) * (1 - 1e-9))
    A = 2 * C / alpha + alpha * C**2 / math.sqrt(1 - beta2)
    B = 2 * C * math.sqrt(1 - beta2) / alpha             # D^2 G_inf sqrt(1 - beta2) / (2 alpha)
    assert np.all(rhs <= (A * np.sqrt(t) + B) * (1 + 1e-9))
    # For any fixed lambda the bound fails eventually: with lambda = 1/2 the constant term is 4x
    # larger and the regret still wins by T = 3000.
    assert R[-1] > kb_rhs(run, 2.0, C, lam=0.5)[-1, 0]


@pytest.mark.claim("prop-kb-theorem41-fails")
def test_kb_theorem41_fails_without_projection_and_not_by_rounding():
    """Unconstrained convex extension in float64 (numerical evidence): hypotheses hold (G_inf = 2C), R(10^4) > 2 RHS; float64 agrees with long double."""
    T = 10_000
    run = kb_run(T)
    C = run["C"]
    X, G, R = run["X"][:, 1], run["G"][:, 1], run["R"][:, 1]
    D = float(np.max(np.abs(X + 1)))                     # >= every |x_m - x_n| and |x_t - x*|
    assert np.ptp(X) <= D and 0.1 < X.min() and X.max() < 1.2
    assert np.all(np.abs(G) <= 2 * C)
    rhs = kb_rhs(run, D, 2 * C)[:, 0]
    assert R[-1] > 2 * rhs[-1]
    # The same run with a 64-bit significand (x86-64 long double): the regret agrees to 1e-9
    # relative, so the factor 2 cannot come from rounding. (Where long double is float64 this
    # comparison is trivially true; the margin alone then carries the argument.)
    long_run = kb_run(T, dtype=np.longdouble)
    assert abs(float(long_run["R"][-1, 1]) / R[-1] - 1) < 1e-9


@pytest.mark.claim("prop-kb-theorem41-fails")
def test_kb_theorem41_fails_in_interval_arithmetic():
    """Part 1 proved: the exact run, in outward-rounded interval arithmetic, exceeds the bound."""
    from mpmath import iv

    iv.prec = 128
    C, T = 3, 10_000
    beta2 = iv.mpf(1) / (1 + C**2)                 # exactly 1/10, enclosed
    alpha = iv.mpf(9) / 10 * iv.sqrt(1 - beta2)    # 0.9 sqrt(1 - beta2), enclosed
    x, v, beta2_t, R, sum_g2, widest = iv.mpf(1), iv.mpf(0), iv.mpf(1), iv.mpf(0), 0, 0.0
    for t in range(1, T + 1):
        slope = C if t % 3 == 1 else -1
        if -1 <= x.a and x.b <= 1:
            g, loss = slope, slope * x
        else:
            assert x.a > 1, f"x_{t} = {x} is not on one side of a kink"
            g, loss = 2 * C, slope + 2 * C * (x - 1)
        R += loss + slope                          # f_t(x_t) - f_t(-1)
        sum_g2 += g * g
        widest = max(widest, float(abs(x + 1).b))
        v = beta2 * v + (1 - beta2) * g * g
        beta2_t *= beta2
        x = x - alpha / iv.sqrt(t) * g / iv.sqrt(v / (1 - beta2_t))
    D = iv.mpf(widest) * (1 + iv.mpf(2) ** -50)    # above every |x_t + 1|, float rounding included
    rhs = (D**2 / (2 * alpha) * iv.sqrt(T * v / (1 - beta2_t))
           + alpha * 2 * C / iv.sqrt(1 - beta2) * iv.sqrt(sum_g2)
           + D**2 * 2 * C * iv.sqrt(1 - beta2) / (2 * alpha))       # lambda -> 0
    assert R.a > rhs.b
    # and far beyond: the regret exceeds twice the bound, as the float64 run shows
    assert R.a > 2 * rhs.b
    # the float64 run agrees with the exact one to 1e-12 relative
    run = kb_run(T)
    assert abs(run["R"][-1, 1] - float(R.mid)) < 1e-12 * float(R.mid)


@given(st.floats(1e-6, 0.49))
@pytest.mark.claim("prop-kb-lemma103-false")
def test_kb_lemma_10_3_fails_for_small_gradients(g):
    """T = 1 and g_1 = G_inf < 1/2: sqrt(g^2 / 1) = g > 2 g^2, the lemma's right side."""
    left = math.sqrt(g * g / 1)
    right = 2 * g * g
    # The true ratio left / right = 1 / (2g) >= 1.02; the computed sides are within 3u.
    assert left > right
    assert math.sqrt(0.25**2 / 1) == 0.25 and 2 * 0.25 * 0.25 == 0.125   # the chapter's example


@given(streams(50, max_dim=1, elements=magnitudes))
@pytest.mark.claim("prop-kb-lemma103-false")
def test_kb_lemma_10_3_fails_for_every_sequence_at_a_small_scale(G):
    """For any nonzero sequence, scaling by c <= S / (4 M |g|) makes the left side >= twice the right side."""
    g = G[:, 0]
    t = np.arange(1, g.size + 1)
    S = math.fsum(np.abs(g) / np.sqrt(t))
    M, N = float(np.max(np.abs(g))), math.sqrt(math.fsum(g * g))
    c = 2.0 ** math.floor(math.log2(S / (4 * M * N)))    # a power of two: scaling is exact
    cg = c * g
    left = math.fsum(np.sqrt(cg * cg / t))
    right = 2 * float(np.max(np.abs(cg))) * math.sqrt(math.fsum(cg * cg))
    # In exact arithmetic left / right = S / (2 c M N) >= 2; rounding moves each side by < 10u.
    assert left > 1.9 * right


@given(streams(100, max_dim=1))
@pytest.mark.claim("lem-weighted-gradient-sum")
def test_weighted_gradient_sum_bound(G):
    """sum_t |g_t| / sqrt(t) <= sqrt(1 + ln T) |g_{1:T}|_2, with equality at T = 1."""
    g = G[:, 0]
    T = g.size
    t = np.arange(1, T + 1)
    left = math.fsum(np.abs(g) / np.sqrt(t))
    right = math.sqrt(1 + math.log(T)) * math.sqrt(math.fsum(g * g))
    # left: sqrt(t) and the quotient round once each, fsum once: <= (1 + 3u) exact. right: log
    # (1 ulp), 1 +, sqrt, the sum of squares (u per square, u for fsum), sqrt, product: within 8u.
    assert left <= right * (1 + 12 * U)
    if T == 1:
        assert left == right                             # sqrt(1) = 1, log(1) = 0, sqrt(g*g) = |g|


# ----------------------------------------------------------------------------- AMSGrad


def amsgrad_case(data, variant):
    G = data.draw(streams(40), label="G")
    beta2 = data.draw(beta2s, label="beta2")
    alpha = data.draw(alphas, label="alpha")
    eps = data.draw(st.one_of(st.just(0.0), epss), label="eps")
    if eps == 0.0:                                        # the theorem's condition for eps = 0:
        G[0] = np.where(G[0] == 0, 1.0, G[0])             # every coordinate of g_1 is nonzero
    x1 = data.draw(arrays(np.float64, G.shape[1], elements=st.floats(-1.0, 1.0)), label="x1")
    options = VARIANTS[variant]
    opt = refimpl.Adam(lr=schedule(alpha), beta1=0.0, beta2=beta2, eps=eps, **options)
    X, A, E, state = run_box(opt, G, x1, alpha=alpha, eps=eps, beta2=beta2, options=options)
    regret, rounding = linear_regret(G, X)
    # The second term of both bounds: alpha sqrt(1 + ln T) / (2 sqrt(1 - beta2)) sum_i |g_i|_2.
    T = G.shape[0]
    norms = math.fsum(math.sqrt(math.fsum(G[:, i] ** 2)) for i in range(G.shape[1]))
    second = alpha * math.sqrt(1 + math.log(T)) / (2 * math.sqrt(1 - beta2)) * norms
    return dict(G=G, T=T, beta2=beta2, alpha=alpha, eps=eps, A=A, E=E, regret=regret,
                rounding=rounding, second=second, options=options, state=state)


# Slow: two refimpl runs of up to 40 steps per example (~60 ms). Both the ci and the full
# profile run 75 examples here (150 would add ~5 s to CI for little extra search).
@pytest.mark.slow
@settings(max_examples=75)
@given(st.sampled_from(["amsgrad-reddi", "amsgrad-optax"]), st.data())
@pytest.mark.claim("thm-amsgrad-regret")
def test_amsgrad_regret_bound(variant, data):
    """R(T) <= D^2 sqrt(T)/(2 alpha) sum_i (sqrt(v_hat_T,i) + eps) + alpha sqrt(1 + ln T)/(2 sqrt(1 - beta2)) sum_i |g_i|."""
    case = amsgrad_case(data, variant)
    T, alpha, eps = case["T"], case["alpha"], case["eps"]
    v_hat = v_hat_of(case["state"], T, case["beta2"], case["options"])
    first = 4 * math.sqrt(T) / (2 * alpha) * math.fsum(np.sqrt(v_hat) + eps)   # D_inf = 2
    # The proof's steps hold for the computed a_t up to their roundings (a_t within 5u of
    # (sqrt(v_hat) + eps) / alpha_t, v_t within 5u of (1 - beta2) g_t^2 from below): 16u relative.
    bound = (first + case["second"]) * (1 + 16 * U)
    assert case["regret"] <= bound + trajectory_slack(case["A"], case["E"]) + case["rounding"]


@given(st.floats(1e-3, 1e3), beta2s)
@pytest.mark.claim("thm-amsgrad-regret", "thm-zinkevich-ogd")
def test_regret_bounds_are_attained_at_T_equal_1(g, beta2):
    """With the best step size, R(1) equals both bounds: AMSGrad's and Zinkevich's (x_1 = 1, g_1 > 0)."""
    # R(1) = g (x_1 - x*) = 2g. AMSGrad (Reddi et al.): v_hat_1 = (1 - beta2) g^2, so the bound
    # is 2 sqrt(1 - beta2) g / alpha + alpha g / (2 sqrt(1 - beta2)), which is 2g at
    # alpha = 2 sqrt(1 - beta2). OGD: D^2 / (2 eta) + eta g^2 / 2 = 2g at eta = D / g = 2 / g.
    # A constant wrong by any factor would break these equalities; rounding is a few u.
    alpha = 2 * math.sqrt(1 - beta2)
    opt = refimpl.Adam(lr=schedule(alpha), beta1=0.0, beta2=beta2, eps=0.0, amsgrad=True,
                       bias_correction=False)
    state = opt.init(np.ones(1))
    new, state = opt.step(np.ones(1), np.array([g]), state)
    regret = g * (1.0 - (-1.0))
    bound = 4 / (2 * alpha) * math.sqrt(state.v_max[0]) + alpha / (2 * math.sqrt(1 - beta2)) * g
    assert abs(regret - bound) <= 8 * U * regret
    assert abs(new[0] - (-1.0)) <= 8 * U                 # the step alpha g / sqrt(v_hat) is 2
    zinkevich = 4 / (2 * (2 / g)) + (1 - 0.5) * (2 / g) * g**2
    assert abs(regret - zinkevich) <= 8 * U * regret


# Slow, as above: 75 examples in both the ci and the full profile.
@pytest.mark.slow
@settings(max_examples=75)
@given(st.data())
@pytest.mark.claim("cor-amsgrad-pytorch-regret")
def test_pytorch_amsgrad_regret_bound(data):
    """PyTorch's AMSGrad: R(T) <= D^2 sqrt(T)/(2 alpha) sum_i (sqrt(M_T,i / (1 - beta2)) + eps) + the same second term."""
    case = amsgrad_case(data, "amsgrad-pytorch")
    T, alpha, eps, beta2 = case["T"], case["alpha"], case["eps"], case["beta2"]
    M = case["state"].v_max                               # max_t v_t, raw
    first = 4 * math.sqrt(T) / (2 * alpha) * math.fsum(np.sqrt(M / (1 - beta2)) + eps)
    # The proof bounds sum_t (a_t - a_(t-1))_+ for exact a_t. The computed a_t (those refimpl
    # divides by) are within delta_t = rel(1 - beta2^t) / 2 + 6u of them, which can change each
    # positive part by delta_t a_t + delta_(t-1) a_(t-1): at most D^2/2 * 2 sum_t delta_t a_t.
    deltas = np.array([bias_correction_rel_err(beta2, t) / 2 + 6 * U for t in range(1, T + 1)])
    wobble = 4 * math.fsum((case["A"] * deltas[:, None]).ravel())
    bound = (first + case["second"]) * (1 + 16 * U) + wobble
    assert case["regret"] <= bound + trajectory_slack(case["A"], case["E"]) + case["rounding"]


@given(streams(60), st.sampled_from(["amsgrad-reddi", "amsgrad-optax"]), beta2s, alphas,
       st.booleans())
@pytest.mark.claim("prop-amsgrad-effective-lr")
def test_amsgrad_effective_learning_rate_never_increases(G, variant, beta2, alpha, decaying):
    """Reddi et al.'s and optax's AMSGrad: fl(alpha_t / fl(sqrt(v_hat_t))) is non-increasing, exactly."""
    options = VARIANTS[variant]
    lr = schedule(alpha) if decaying else (lambda t: alpha)
    opt = refimpl.Adam(lr=lr, beta1=0.0, beta2=beta2, eps=0.0, **options)
    zero = np.zeros(G.shape[1])
    state = opt.init(zero)
    etas = []
    with np.errstate(divide="ignore", invalid="ignore"):
        for t, g in enumerate(G, start=1):
            new, state = opt.step(zero, g, state)
            root = np.sqrt(v_hat_of(state, t, beta2, options))
            eta = lr(t) / root                           # inf while v_hat = 0
            etas.append(eta)
            # The update is -eta g: lr * g, the quotient by the root, and our eta each round once.
            seen = root > 0
            # Both sides round lr g / root twice, in different orders: within 5u of each other.
            assert np.all(np.abs(-new[seen] - eta[seen] * g[seen]) <= 5 * U * np.abs(eta[seen] * g[seen]))
    etas = np.array(etas)
    assert np.all(etas[1:] <= etas[:-1])                 # monotone rounding: no tolerance


@pytest.mark.parametrize("beta2", [0.9, 0.99, 0.999])
@pytest.mark.claim("prop-amsgrad-effective-lr")
def test_pytorch_amsgrad_learning_rate_grows_to_its_limit(beta2):
    """PyTorch's AMSGrad after g_1 = 1, then zeros: eta_t / eta_1 = sqrt((1 - beta2^t)/(1 - beta2)), rising every step."""
    T, tiny = 3000, 2.0**-10                             # tiny^2 < 1 - beta2: the max stays v_1
    opt = refimpl.Adam(lr=1.0, beta1=0.0, beta2=beta2, eps=0.0, amsgrad=True)
    state = opt.init(np.zeros(1))
    eta = np.empty(T)
    for t in range(1, T + 1):
        g = np.array([1.0 if t == 1 else tiny])
        new, state = opt.step(np.zeros(1), g, state)
        eta[t - 1] = -new[0] / g[0]                      # exact: the step from 0 is -eta g
    t = np.arange(1, T + 1)
    expected = np.sqrt((1 - beta2**t) / (1 - beta2))
    # Each eta_t has the roundings of sqrt(v_max / fl(1 - beta2^t)) (half the relative error of
    # the correction, plus 2u) and of lr g / root, g / g (2u); the ratio doubles this.
    rel = np.array([bias_correction_rel_err(beta2, k) for k in t]) / 2 + 6 * U
    assert np.all(np.abs(eta / eta[0] / expected - 1) <= 2 * (rel + rel[0]) + 4 * U)
    # In reals eta rises at every step. In floating point it rises by beta2^t (1 - beta2)/2 relative
    # until 1 - beta2^t rounds to 1; require a rise where that exceeds 1e-12 (far above rounding)
    # and, everywhere, no decrease: every operation on the way from beta2^t to eta is monotone.
    rising = beta2 ** t[1:] * (1 - beta2) > 1e-12
    assert np.all(np.diff(eta)[rising] > 0) and np.all(np.diff(eta) >= 0)
    if beta2 == 0.999:
        assert 30.8 < eta[-1] / eta[0] < 1 / math.sqrt(1 - beta2)


@given(streams(30), beta2s.filter(lambda b: b > 0), alphas)
@pytest.mark.claim("prop-amsgrad-effective-lr")
def test_pytorch_amsgrad_growth_is_bounded(G, beta2, alpha):
    """PyTorch's AMSGrad: eta_t/alpha_t <= sqrt((1 - beta2^t)/(1 - beta2^s)) eta_s/alpha_s for all s <= t."""
    options = VARIANTS["amsgrad-pytorch"]
    opt = refimpl.Adam(lr=schedule(alpha), beta1=0.0, beta2=beta2, eps=0.0, **options)
    zero = np.zeros(G.shape[1])
    state = opt.init(zero)
    scaled, rels = [], []
    for t, g in enumerate(G, start=1):
        with np.errstate(divide="ignore", invalid="ignore"):   # 0/0 while v = 0 and eps = 0
            _, state = opt.step(zero, g, state)
            scaled.append(1 / np.sqrt(v_hat_of(state, t, beta2, options)))   # eta_t / alpha_t
        rels.append(bias_correction_rel_err(beta2, t) / 2 + 3 * U)
    scaled = np.array(scaled)
    T = len(scaled)
    for s in range(T):
        for t in range(s, T):
            factor = math.sqrt((1 - beta2 ** (t + 1)) / (1 - beta2 ** (s + 1)))
            finite = np.isfinite(scaled[s])
            assert np.all(scaled[t][finite] <= factor * scaled[s][finite] * (1 + 2 * (rels[s] + rels[t]) + 4 * U))
            assert factor <= 1 / math.sqrt(1 - beta2) * (1 + 4 * U)


# ----------------------------------------------------------------------------- Defossez et al.


def dbbu_steps(G, *, alpha, beta1, beta2, eps):
    """Defossez et al.'s recursion transcribed directly: m_n = beta1 m + g, v_n = beta2 v + g^2,
    step alpha_n m_n / sqrt(eps + v_n), alpha_n = alpha (1 - beta1) sqrt((1 - beta2^n)/(1 - beta2))."""
    m = np.zeros(G.shape[1])
    v = np.zeros(G.shape[1])
    steps = []
    for n, g in enumerate(G, start=1):
        m = beta1 * m + g
        v = beta2 * v + g * g
        alpha_n = alpha * (1 - beta1) * math.sqrt((1 - beta2**n) / (1 - beta2))
        steps.append(alpha_n * m / np.sqrt(eps + v))
    return np.array(steps)


@given(streams(40), st.floats(0.0, 0.99), st.floats(1e-3, 0.999), alphas, st.floats(1e-12, 1e-2))
@pytest.mark.claim("prop-defossez-form")
def test_defossez_recursion_is_a_refimpl_configuration(G, beta1, beta2, alpha, eps):
    """refimpl.Adam(lr=alpha sqrt(1 - beta2^t), eps_root=(1 - beta2) eps, no bias correction) takes Defossez et al.'s steps."""
    opt = refimpl.Adam(lr=lambda t: alpha * math.sqrt(1 - beta2**t), beta1=beta1, beta2=beta2,
                       eps=0.0, eps_root=(1 - beta2) * eps, bias_correction=False)
    zero = np.zeros(G.shape[1])
    state = opt.init(zero)
    mine = []
    for g in G:
        new, state = opt.step(zero, g, state)
        mine.append(-new)                                  # exact: the step from 0
    mine = np.array(mine)
    theirs = dbbu_steps(G, alpha=alpha, beta1=beta1, beta2=beta2, eps=eps)
    # Both compute alpha_n (1 - beta1) W_n / sqrt(eps + v_n) with W_n = sum beta1^(n-i) g_i. The two
    # first-moment recursions differ from W_n by <= 4nu sum beta1^(n-i)|g_i| (4 roundings a step,
    # damped by beta1), the v's by 5nu v_n (nonnegative terms), the step sizes by the relative
    # errors of 1 - beta2^n and a few roundings. Scale: alpha_n (1 - beta1) |W|_abs / sqrt(eps + v_n).
    # In the subnormal range a rounding errs by up to 2^-1075 absolutely, not relatively: the 4n such
    # errors of the first-moment recursion reach the step through alpha_n (1 - beta1) / sqrt(eps + v_n),
    # and the step's own few roundings (it may be subnormal itself) add 8 more.
    absW = np.zeros(G.shape[1])
    v = np.zeros(G.shape[1])
    for n, g in enumerate(G, start=1):
        absW = beta1 * absW + np.abs(g)
        v = beta2 * v + g * g
        gain = alpha * (1 - beta1) * math.sqrt((1 - beta2**n) / (1 - beta2)) / np.sqrt(eps + v)
        rel = (8 * n + 16) * U + bias_correction_rel_err(beta2, n)
        subnormal = (4 * n * gain + 8) * 2.0**-1075
        assert np.all(np.abs(mine[n - 1] - theirs[n - 1]) <= 2 * (rel * gain * absW + subnormal))


def logistic_problem(seed=2022, n=200, d=5):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1.0, 1.0, (n, d))
    y = np.where(X @ rng.normal(size=d) + 0.5 * rng.normal(size=n) > 0, 1.0, -1.0)
    return X, y, rng


@pytest.mark.parametrize("alpha,beta2,N", [(1e-2, 0.999, 1000), (0.1, 0.99, 1000), (1e-3, 0.9999, 500)])
@pytest.mark.claim("thm-defossez-adam")
def test_defossez_theorem2_bound_on_logistic_regression(alpha, beta2, N):
    """Monte Carlo E|grad F(x_tau)|^2 (20 runs) + 6 standard errors stays below Theorem 2's bound."""
    X, y, rng = logistic_problem()
    n, d = X.shape
    sigmoid = lambda z: 0.5 * (1.0 + np.tanh(0.5 * z))  # noqa: E731
    full = lambda w: -(y * sigmoid(-y * (w @ X.T))) @ X / n  # noqa: E731
    eps, runs = 1e-8, 20
    opt = refimpl.Adam(lr=lambda t: alpha * math.sqrt(1 - beta2**t), beta1=0.0, beta2=beta2,
                       eps=0.0, eps_root=(1 - beta2) * eps, bias_correction=False)
    w = np.zeros((runs, d))
    state = opt.init(w)
    acc = np.zeros(runs)
    for _ in range(N):
        acc += np.sum(full(w) ** 2, axis=1)
        rows = rng.integers(n, size=runs)
        xi, yi = X[rows], y[rows]
        w, state = opt.step(w, -(yi * sigmoid(-yi * np.sum(w * xi, axis=1)))[:, None] * xi, state)
    per_run = acc / N
    mean, se = per_run.mean(), per_run.std(ddof=1) / math.sqrt(runs)
    # Constants: |grad f|_inf <= max|x_ij|, so R = max|x_ij| + sqrt(eps) satisfies the assumption
    # in either reading (<= R or <= R - sqrt(eps)); the mean logistic Hessian is X^T D X / n with
    # D <= 1/4; F(0) = ln 2 and F_* >= 0. The bound is loose by > 100x, so 6 standard errors of
    # Monte Carlo noise and any rounding are immaterial; this can only search for a counterexample.
    R = float(np.max(np.abs(X))) + math.sqrt(eps)
    L = float(np.linalg.eigvalsh(X.T @ X).max()) / (4 * n)
    E = 4 * d * R**2 / math.sqrt(1 - beta2) + alpha * d * R * L / (1 - beta2)
    bound = 2 * R * math.log(2) / (alpha * N) + E * (math.log1p(R**2 / ((1 - beta2) * eps)) / N
                                                      - math.log(beta2))
    assert mean + 6 * se <= bound
