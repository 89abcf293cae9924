"""Tests of the AdaL chapter's claims (book/adal*.md) that tests/test_properties_adal.py does not
already cover: AdaL as Adam on the transformed stream, the equivalence between scaling the
gradients and rescaling epsilon, the bitwise forms of the constant-norm and fixed-direction
reductions, the unbounded first step of the preconditioner epsilon, and Reddi et al.'s
counterexample run on AdaL.

Bitwise assertions rest on one fact of IEEE arithmetic: multiplying by a power of two is exact
and commutes with every rounding (absent overflow and underflow, which the generators below
keep far away). Where an exact power-of-two relation is not available, the tolerance is
derived in the test's docstring by counting roundings (u = 2**-53, round to nearest).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import refimpl

U = 2.0**-53  # unit roundoff of float64

NORMS = ["global", "per_tensor", "per_element"]
MODES = ["preconditioner", "denominator"]

seeds = st.integers(0, 2**32 - 1)
# No subnormal betas: beta*m would underflow, and a power of two no longer factors out of it.
betas1 = st.one_of(st.just(0.0), st.floats(1e-3, 0.99))
betas2 = st.floats(0.5, 0.9999)
betas2_from_zero = st.one_of(st.just(0.0), st.floats(1e-3, 0.9999))
lrs = st.floats(1e-4, 1.0)


# ----------------------------------------------------------------------------- helpers


def run(opt, p0, grads):
    """The (params, state) after each step of ``opt`` on the gradient stream ``grads``."""
    p, s, out = p0, opt.init(p0), []
    for g in grads:
        p, s = opt.step(p, g, s)
        out.append((p, s))
    return out


def adam_like(lr, lr_decay, **kw):
    """The Adam that AdaL is on the transformed stream: the same schedule eta_t, as a callable."""
    return refimpl.Adam(lr=(lambda t: lr / t**0.5) if lr_decay == "inv_sqrt" else lr, **kw)


def dyadic(rng, shape, zeros):
    """Entries +-k 2^e, k in [1, 1023], e in [-20, 10]: integer multiples of 2^-20 below 2^20,
    i.e. below 2^40 units of 2^-20, so any sum of fewer than 2^13 of them stays below 2^53 units
    and is exact in float64, in any order."""
    g = rng.choice([-1.0, 1.0], shape) * rng.integers(1, 1024, shape) * 2.0 ** rng.integers(-20, 11, shape)
    if zeros:
        g[rng.random(shape) < 0.25] = 0.0
    return g


def composition(rng, n, j, zeros):
    """n signed numbers whose absolute values sum to exactly 2^j: integer parts of 2^20 (cut at
    random points; all sums exact), scaled by the power of two 2^(j-20)."""
    while True:
        cuts = np.sort(rng.integers(0, 2**20 + 1, n - 1))
        parts = np.diff(np.concatenate([[0], cuts, [2**20]])).astype(float)
        if zeros or np.all(parts > 0):
            return rng.choice([-1.0, 1.0], n) * parts * 2.0 ** (j - 20)


def halvings(rng, n, j):
    """n signed powers of two whose absolute values sum to exactly 2^j (halve a random part
    until there are n of them)."""
    parts = [2.0**j]
    while len(parts) < n:
        x = parts.pop(int(rng.integers(len(parts))))
        parts += [x / 2, x / 2]
    return rng.choice([-1.0, 1.0], n) * rng.permutation(np.array(parts))


def mixed(rng, shape, lo=-6.0, hi=3.0):
    """Random signs and per-coordinate magnitudes 10**U(lo, hi)."""
    return rng.choice([-1.0, 1.0], shape) * 10.0 ** rng.uniform(lo, hi, shape)


@st.composite
def tree_shapes(draw):
    """Two parameters of (in general) different sizes, so that the scopes differ."""
    return {"a": (draw(st.integers(1, 8)),), "b": (draw(st.integers(1, 4)), draw(st.integers(1, 4)))}


def steps_of(trajectory, p0, key):
    """|theta_{t-1} - theta_t| of one parameter along a run (t = 1..T)."""
    thetas = [p0[key]] + [p[key] for p, _ in trajectory]
    return [np.abs(a - b) for a, b in zip(thetas[:-1], thetas[1:])]


def step_rounding_bound(theta_a, theta_b, steps, per_step_rel):
    """Bound on |theta_a,t - theta_b,t| for two runs that apply the same exact steps S_t (their
    moments are identical, or power-of-two multiples of each other, because the gradient stream
    does not depend on theta) but evaluate the step formula differently: per step the two
    computed steps differ by at most ``per_step_rel`` |S_t|, and each subtraction theta - S
    rounds by u |theta_t|. Nothing is amplified along the trajectory, so the bound accumulates
    additively."""
    total, out = 0.0, []
    for a, b, s in zip(theta_a, theta_b, steps):
        total = total + per_step_rel * s + U * (np.abs(a) + np.abs(b))
        out.append(total)
    return out


# ----------------------------------------------------------------------------- AdaL = Adam on the transformed stream


@pytest.mark.claim("lem-adal-adam-on-transformed-stream")
@given(shapes=tree_shapes(), seed=seeds, lr=lrs, b1=betas1, b2=betas2_from_zero, norm=st.sampled_from(NORMS),
       eps=st.sampled_from([1e-8, 1e-3, 1.0]), lr_decay=st.sampled_from(["inv_sqrt", "none"]),
       bias_correction=st.booleans(), T=st.integers(1, 25))
def test_adal_is_adam_on_the_transformed_stream_bitwise(shapes, seed, lr, b1, b2, norm, eps, lr_decay,
                                                        bias_correction, T):
    """AdaL (eps_mode="denominator") on g_t is Adam on c_t g_t with the same schedule, bitwise.

    Every scope and option. The test computes c_t itself: the gradients are dyadic (see
    ``dyadic``), so every l1 norm is exact and the test's c_t is refimpl's, whatever the
    summation order. From there both sides evaluate the same floating-point operations on the
    same values (Adam's eps_root = 0 adds an exact 0), so params and moments agree bit for bit,
    exact zeros in the stream included."""
    rng = np.random.default_rng(seed)
    grads = [{k: dyadic(rng, s, zeros=True) for k, s in shapes.items()} for _ in range(T)]
    p0 = {k: rng.standard_normal(s) for k, s in shapes.items()}

    def scaled(g):
        if norm == "per_element":
            return {k: np.abs(x) * x for k, x in g.items()}
        per = {k: math.fsum(np.abs(x).ravel()) for k, x in g.items()}  # exact, see dyadic()
        total = math.fsum(per.values())
        return {k: (total if norm == "global" else per[k]) * x for k, x in g.items()}

    adal = refimpl.AdaL(lr=lr, beta1=b1, beta2=b2, eps=eps, norm=norm, eps_mode="denominator",
                        lr_decay=lr_decay, bias_correction=bias_correction)
    adam = adam_like(lr, lr_decay, beta1=b1, beta2=b2, eps=eps, bias_correction=bias_correction)
    for (pa, sa), (pb, sb) in zip(run(adal, p0, grads), run(adam, p0, [scaled(g) for g in grads])):
        for k in shapes:
            np.testing.assert_array_equal(pa[k], pb[k])
            np.testing.assert_array_equal(sa.m[k], sb.m[k])
            np.testing.assert_array_equal(sa.v[k], sb.v[k])


# ----------------------------------------------------------------------------- scale = epsilon rescaling


@pytest.mark.claim("prop-adal-scale-invariance")
@pytest.mark.parametrize("eps_mode", MODES)
@given(shapes=tree_shapes(), seed=seeds, lr=lrs, b1=betas1, b2=betas2, norm=st.sampled_from(NORMS),
       eps=st.sampled_from([0.0, 1e-8, 1e-3, 1.0]), k=st.integers(-20, 20), T=st.integers(1, 25))
def test_scaling_the_gradients_rescales_eps_bitwise(eps_mode, shapes, seed, lr, b1, b2, norm, eps, k, T):
    """AdaL(eps) on s g_t equals AdaL(eps/s^2) (denominator) or AdaL(eps s^2) (preconditioner) on g_t.

    Bitwise for s = 2^k: tilde g, m_hat and sqrt(v_hat) are exactly s^2 times the unscaled run's;
    in the denominator s^2 r + eps = s^2 (r + eps/s^2) and in the preconditioner
    s^-2 a + eps = s^-2 (a + eps s^2) round alike because a power of two factors out of any
    rounding. Magnitudes stay within 1e-52..1e38, far from overflow and underflow."""
    rng = np.random.default_rng(seed)
    grads = [{key: mixed(rng, sh) for key, sh in shapes.items()} for _ in range(T)]
    for g in grads:  # exact zeros: single coordinates and, sometimes, a whole tensor
        for key, x in g.items():
            x[rng.random(x.shape) < 0.2] = 0.0
    p0 = {key: rng.standard_normal(sh) for key, sh in shapes.items()}
    s = 2.0**k
    eps_equiv = eps / s**2 if eps_mode == "denominator" else eps * s**2
    kw = dict(lr=lr, beta1=b1, beta2=b2, norm=norm, eps_mode=eps_mode)
    with np.errstate(invalid="ignore"):  # eps = 0, denominator: 0/0 where v = 0, in both runs alike
        scaled = run(refimpl.AdaL(eps=eps, **kw), p0, [{key: s * x for key, x in g.items()} for g in grads])
        plain = run(refimpl.AdaL(eps=eps_equiv, **kw), p0, grads)
    for (pa, sa), (pb, sb) in zip(scaled, plain):
        for key in shapes:
            np.testing.assert_array_equal(pa[key], pb[key])
            np.testing.assert_array_equal(sa.m[key], s**2 * sb.m[key])
            np.testing.assert_array_equal(sa.v[key], s**4 * sb.v[key])


# ----------------------------------------------------------------------------- constant norm


@pytest.mark.claim("prop-adal-constant-norm")
@given(shapes=tree_shapes(), seed=seeds, lr=lrs, b1=betas1, b2=betas2, j=st.integers(-10, 10),
       eps=st.sampled_from([0.0, 1e-8, 1e-3, 1.0]), lr_decay=st.sampled_from(["inv_sqrt", "none"]),
       T=st.integers(1, 30))
def test_constant_power_of_two_norm_is_adam_bitwise(shapes, seed, lr, b1, b2, j, eps, lr_decay, T):
    """With ||g_t||_1 = c = 2^j for every t (global scope), AdaL(eps) = Adam(eps/c), bitwise.

    The stream is built with an exact l1 norm (``composition``), so AdaL's c_t is exactly 2^j;
    then tilde g = c g, m = c m_Adam, v = c^2 v_Adam, and c m_hat/(c sqrt(v_hat) + eps) rounds
    exactly like c (m_hat/(sqrt(v_hat) + eps/c)), eps/c being exact."""
    rng = np.random.default_rng(seed)
    sizes = {k: int(np.prod(s)) for k, s in shapes.items()}
    grads = []
    for _ in range(T):
        flat = composition(rng, sum(sizes.values()), j, zeros=eps > 0)
        grads.append({"a": flat[:sizes["a"]].reshape(shapes["a"]), "b": flat[sizes["a"]:].reshape(shapes["b"])})
    p0 = {k: rng.standard_normal(s) for k, s in shapes.items()}
    c = 2.0**j
    adal = refimpl.AdaL(lr=lr, beta1=b1, beta2=b2, eps=eps, norm="global", eps_mode="denominator", lr_decay=lr_decay)
    adam = adam_like(lr, lr_decay, beta1=b1, beta2=b2, eps=eps / c)
    for (pa, sa), (pb, sb) in zip(run(adal, p0, grads), run(adam, p0, grads)):
        for k in shapes:
            np.testing.assert_array_equal(pa[k], pb[k])
            np.testing.assert_array_equal(sa.m[k], c * sb.m[k])
            np.testing.assert_array_equal(sa.v[k], c * c * sb.v[k])


@pytest.mark.claim("prop-adal-constant-norm")
@given(shapes=tree_shapes(), seed=seeds, lr=lrs, b1=betas1, b2=betas2, j=st.integers(-10, 10),
       lr_decay=st.sampled_from(["inv_sqrt", "none"]), T=st.integers(1, 30))
def test_constant_norm_preconditioner_mode_eps_zero(shapes, seed, lr, b1, b2, j, lr_decay, T):
    """With eps = 0 the preconditioner mode reduces to Adam(eps = 0) too, up to rounding.

    The moments are exactly c and c^2 times Adam's (as in the bitwise test), so only the step
    formula differs: sqrt, 1/, lr_t*, *m_hat (4 roundings) against sqrt, lr*m_hat, / (3): the
    computed steps differ by <= 8u |S_t| (first order, with room for the second), and each
    run's theta - S rounds by u |theta_t| (``step_rounding_bound``)."""
    rng = np.random.default_rng(seed)
    sizes = {k: int(np.prod(s)) for k, s in shapes.items()}
    grads = []
    for _ in range(T):
        flat = composition(rng, sum(sizes.values()), j, zeros=False)
        grads.append({"a": flat[:sizes["a"]].reshape(shapes["a"]), "b": flat[sizes["a"]:].reshape(shapes["b"])})
    p0 = {k: rng.standard_normal(s) for k, s in shapes.items()}
    adal = refimpl.AdaL(lr=lr, beta1=b1, beta2=b2, eps=0.0, norm="global", lr_decay=lr_decay)
    adam = adam_like(lr, lr_decay, beta1=b1, beta2=b2, eps=0.0)
    ra, rb = run(adam, p0, grads), run(adal, p0, grads)
    for k in shapes:
        bound = step_rounding_bound([p[k] for p, _ in ra], [p[k] for p, _ in rb], steps_of(ra, p0, k), 8 * U)
        for t in range(T):
            assert np.all(np.abs(ra[t][0][k] - rb[t][0][k]) <= bound[t]), (k, t)


# ----------------------------------------------------------------------------- fixed direction


@pytest.mark.claim("prop-adal-temporal-reweighting")
@pytest.mark.parametrize("norm", NORMS)
@given(seed=seeds, n_a=st.integers(1, 6), n_b=st.integers(1, 6), j=st.integers(-6, 6), lr=lrs, b1=betas1,
       b2=betas2, lr_decay=st.sampled_from(["inv_sqrt", "none"]), T=st.integers(1, 40))
def test_fixed_direction_is_adam_on_squared_magnitudes(norm, seed, n_a, n_b, j, lr, b1, b2, lr_decay, T):
    """With g_t = r_t u (eps = 0), AdaL's iterates are Adam's on the stream r_t^2 u.

    Bitwise in the denominator mode for r_t = 2^k_t and u made of signed powers of two whose
    l1 norm is 2^j per tensor (``halvings``; 2^(j+1) globally): AdaL's tilde g_t is r_t^2 u
    times a power of two (per element: times |u_i|), and Adam with eps = 0 is unchanged, bit for
    bit, by a power-of-two factor per coordinate. The preconditioner mode evaluates the same
    exact steps with other roundings: <= 8u |S_t| per step (``step_rounding_bound``)."""
    rng = np.random.default_rng(seed)
    u = {"a": halvings(rng, n_a, j), "b": halvings(rng, n_b, j)}
    r = 2.0 ** rng.integers(-8, 9, T)
    p0 = {k: rng.standard_normal(x.shape) for k, x in u.items()}
    adam = adam_like(lr, lr_decay, beta1=b1, beta2=b2, eps=0.0)
    ref = run(adam, p0, [{k: (rt * rt) * x for k, x in u.items()} for rt in r])
    grads = [{k: rt * x for k, x in u.items()} for rt in r]
    kw = dict(lr=lr, beta1=b1, beta2=b2, eps=0.0, norm=norm, lr_decay=lr_decay)
    den = run(refimpl.AdaL(eps_mode="denominator", **kw), p0, grads)
    pre = run(refimpl.AdaL(eps_mode="preconditioner", **kw), p0, grads)
    for k in u:
        for (pa, _), (pb, _) in zip(ref, den):
            np.testing.assert_array_equal(pa[k], pb[k])
        bound = step_rounding_bound([p[k] for p, _ in ref], [p[k] for p, _ in pre], steps_of(ref, p0, k), 8 * U)
        for t in range(T):
            assert np.all(np.abs(ref[t][0][k] - pre[t][0][k]) <= bound[t]), (k, t)


# ----------------------------------------------------------------------------- epsilon in the preconditioner


@pytest.mark.claim("prop-adal-eps-unbounded-step")
@given(shapes=tree_shapes(), seed=seeds, lr=lrs, b1=betas1, b2=betas2_from_zero, norm=st.sampled_from(NORMS),
       eps=st.sampled_from([1e-8, 1e-3, 1.0]), log_scale=st.floats(-3.0, 6.0))
def test_preconditioner_first_step_grows_without_bound(shapes, seed, lr, b1, b2, norm, eps, log_scale):
    """First step in the preconditioner mode: -lr sign(g_i) (1 + eps |tilde g_i|), unbounded.

    m_hat_1 = tilde g and v_hat_1 = tilde g^2, so (1/|tilde g| + eps) tilde g. Tolerance,
    relative: the two tilde g differ by <= (N+2)u (refimpl: a sum of N terms and a product;
    the test: a correctly rounded sum and a product), entering through the eps term; refimpl's m_hat (2 roundings), v_hat
    (3, halved by sqrt) and sqrt, 1/, +eps, lr*, * add <= 9u, the test's formula 3u and its
    subtraction p0 - p1 1u; and theta_0 - step rounds by u |theta_1| (2u |theta_1| allowed). Once eps |tilde g_i| >= 1 the step exceeds
    2 lr, twice the denominator mode's bound at t = 1 (|step| <= lr)."""
    rng = np.random.default_rng(seed)
    g = {k: mixed(rng, s, log_scale - 3.0, log_scale) for k, s in shapes.items()}
    p0 = {k: rng.standard_normal(s) for k, s in shapes.items()}
    opt = refimpl.AdaL(lr=lr, beta1=b1, beta2=b2, eps=eps, norm=norm)
    p1, _ = opt.step(p0, g, opt.init(p0))
    N = {"global": sum(int(np.prod(s)) for s in shapes.values()), "per_element": 1}
    for k, x in g.items():
        if norm == "per_element":
            c = np.abs(x)
        else:
            c = math.fsum(np.concatenate([np.abs(y).ravel() for y in ([x] if norm == "per_tensor" else g.values())]))
        n = N.get(norm, int(np.prod(shapes[k])))
        g_tilde = np.abs(c * x)
        expected = lr * np.sign(x) * (1 + eps * g_tilde)
        step = p0[k] - p1[k]
        tol = ((n + 2) * U * eps * g_tilde / (1 + eps * g_tilde) + 14 * U) * np.abs(expected) + 2 * U * np.abs(p1[k])
        assert np.all(np.abs(step - expected) <= tol), k
        big = eps * g_tilde >= 1
        assert np.all(np.abs(step[big]) >= 2 * lr * (1 - 1e-12))


# ----------------------------------------------------------------------------- Reddi et al.'s counterexample


def steady_v(K: float, b: float) -> tuple[float, float, float]:
    """The periodic fixed point (v1*, v2*, v3*) of v_t = b v_{t-1} + (1-b) G_t^2 for the period
    G = (K, -1, -1) of the counterexample's transformed gradients."""
    v1 = (K * K + b + b * b) / (1 + b + b * b)
    v2 = b * v1 + 1 - b
    return v1, v2, b * v2 + 1 - b


def margin(s: int, K: float, b: float, *, bias_correction: bool, decay: bool) -> float:
    """rho_s of the proof: the lower bound on (up steps - down step)/eta_{3s+1} in period s."""
    _, v2, v3 = steady_v(K, b)
    t1, t2, t3 = 3 * s + 1, 3 * s + 2, 3 * s + 3
    up = 0.0
    for t, v in ((t2, v2), (t3, v3)):
        ratio = math.sqrt(t1 / t) if decay else 1.0
        corr = math.sqrt(1 - b**t) if bias_correction else 1.0
        up += ratio * corr / math.sqrt(v)
    return up - 1 / math.sqrt(1 - b)


def sticking_period(rho, eta):
    """(s0, s1) of the proof for the margins ``rho(s)`` and step sizes ``eta(s)`` = eta_{3s+1}:
    s0 is the first period with a positive margin, s1 the first period by which the climb since
    s0 has made up for the descent before s0. If rho(s) > 0 for all s >= s0, x_{3s+1} = 1 from
    s1 on."""
    deficit, s = 0.0, 0
    while rho(s) <= 0:
        deficit += -rho(s) * eta(s)
        s += 1
    s0, climbed = s, 0.0
    while climbed < deficit:
        climbed += rho(s) * eta(s)
        s += 1
    return s0, s


def reddi_run(opt, C, T):
    """Reddi et al.'s instance on [-1, 1] from x_1 = 1: f_t(x) = C x if t mod 3 == 1, else -x;
    projection by clipping. Returns x_1..x_{T+1} and the second moments v_1..v_T."""
    x = np.array([1.0])
    s = opt.init(x)
    xs, vs = [1.0], []
    for t in range(1, T + 1):
        x, s = opt.step(x, np.array([C if t % 3 == 1 else -1.0]), s)
        x = np.clip(x, -1.0, 1.0)
        xs.append(float(x[0]))
        vs.append(float(s.v[0]))
    return np.array(xs), np.array(vs)


C_BAR = math.sqrt(5 + 4 * math.sqrt(2))  # 3.2644...: the corollary's bound for beta2 = 1/(1+C^2)


@st.composite
def reddi_cases(draw):
    """(C, beta2): either beta2 = 1/(1+C^2) with 2 < C < sqrt(5 + 4 sqrt 2), or beta2 in
    [0, 1/(1+C^4)] with C > 2 (the two cases of the corollary)."""
    if draw(st.booleans()):
        C = draw(st.floats(2.05, C_BAR * (1 - 1e-6)))
        return C, 1 / (1 + C * C)
    C = draw(st.floats(2.05, 10.0))
    return C, draw(st.floats(0.0, 1.0)) / (1 + C**4)


@pytest.mark.claim("prop-adal-reddi-counterexample", "cor-adal-no-unconditional-convergence")
@given(case=reddi_cases(), lr=st.floats(0.01, 2.0), eps_mode=st.sampled_from(MODES), norm=st.sampled_from(NORMS),
       bias_correction=st.booleans(), lr_decay=st.sampled_from(["inv_sqrt", "none"]))
def test_reddi_counterexample_holds_adal_at_plus_one(case, lr, eps_mode, norm, bias_correction, lr_decay):
    """On Reddi et al.'s instance AdaL (beta1 = eps = 0) sits at x = +1 from the proof's period s1 on.

    Checked on refimpl's run: x_{3s+1} == 1.0 exactly for s1 <= s < s1 + 60; the regret of the
    first T = 3(s1 + 60) steps is >= (2C-4)(T/3 - s1) - 4 s1; the second moments obey the
    proof's bounds v_{3s+1} >= (1-b) K^2, v_{3s+2} <= v2*, v_{3s+3} <= v3*; and the run is
    bit for bit Adam's on the instance with C replaced by K = fl(C*C) (denominator mode).

    The proof works in exact arithmetic; the test lowers every margin rho_s by the rounding of
    period s (the slack in ``rho`` below): a computed step carries <= (t+30)u relative (v is an EMA of t terms
    >= 0: (2t+1)u, halved by sqrt; the rest <= 20u), the down and up steps sum to at most
    3 eta_{3s+1}/sqrt(1-b), each of the 3 additions to x rounds by u(1 + that sum), and the
    test's own rho_s by <= 64u. v's bounds get (2t+8)u relative."""
    C, b = case
    decay = lr_decay == "inv_sqrt"
    K = C * C  # AdaL's transformed big gradient |C| C, rounded as refimpl rounds it

    def eta(s):  # eta_{3s+1}
        return lr / math.sqrt(3 * s + 1) if decay else lr

    def rho(s):  # the proof's margin, lowered by the rounding of period s
        slack = 3 * (3 * s + 39) * U / math.sqrt(1 - b) + 3 * U / eta(s) + 64 * U
        return margin(s, K, b, bias_correction=bias_correction, decay=decay) - slack

    assert margin(10**12, K, b, bias_correction=False, decay=False) > 0, "the corollary's margin"
    s0, s1 = sticking_period(rho, eta)
    S = s1 + 60
    assert all(rho(s) > 0 for s in range(s0, S + 1))
    kw = dict(lr=lr, beta1=0.0, beta2=b, eps=0.0, bias_correction=bias_correction, lr_decay=lr_decay)
    xs, vs = reddi_run(refimpl.AdaL(norm=norm, eps_mode=eps_mode, **kw), C, 3 * S)

    assert np.all(xs[3 * np.arange(s1, S + 1)] == 1.0)
    per_period = [math.fsum([C * (xs[3 * s] + 1), -(xs[3 * s + 1] + 1), -(xs[3 * s + 2] + 1)]) for s in range(S)]
    regret = math.fsum(per_period)
    assert regret >= (2 * C - 4) * (S - s1) - 4 * s1 - 12 * U * C * S

    v1, v2, v3 = steady_v(K, b)
    t = np.arange(1, 3 * S + 1)
    rel = (2 * t + 8) * U
    assert np.all(vs[0::3] >= (1 - b) * K * K * (1 - rel[0::3]))
    assert np.all(vs[1::3] <= v2 * (1 + rel[1::3]))
    assert np.all(vs[2::3] <= v3 * (1 + rel[2::3]))

    adam = adam_like(lr, lr_decay, beta1=0.0, beta2=b, eps=0.0, bias_correction=bias_correction)
    adal_den = refimpl.AdaL(norm=norm, eps_mode="denominator", **kw)
    np.testing.assert_array_equal(reddi_run(adal_den, C, 3 * S)[0], reddi_run(adam, K, 3 * S)[0])


@pytest.mark.claim("cor-adal-no-unconditional-convergence")
@given(C=st.floats(2.0, C_BAR), C4=st.floats(2.0, 1e3), w=st.floats(0.0, 1.0))
def test_corollary_margin_bounds(C, C4, w):
    """The corollary's closed-form lower bounds on AdaL's margin rho(C, b) hold and are positive.

    rho(C, b) = 1/sqrt(v2*) + 1/sqrt(v3*) - 1/sqrt(1-b), with K = C^2 for AdaL:

    * b = 1/(1+C^2): v2* <= C^2 and v3* <= 2(1-b), so rho >= (1 - (1 - 1/sqrt 2) sqrt(1+C^2))/C,
      positive for C < sqrt(5 + 4 sqrt 2) = 3.2644...;
    * b <= 1/(1+C^4): v2* < 2, v3* < 1+b, so rho > 1/sqrt 2 + 1/sqrt(1+b) - 1/sqrt(1-b) > 0.6.

    Tolerance: each quantity is a few (< 10) roundings of positive terms of size <= C^4, and
    rho a difference of three terms <= 1/sqrt(1-b): 64u relative on the v's, 64u * 4 on rho."""
    b = 1 / (1 + C * C)
    v1, v2, v3 = steady_v(C * C, b)
    assert v2 <= C * C * (1 + 64 * U) and v3 <= 2 * (1 - b) * (1 + 64 * U)
    rho = margin(10**12, C * C, b, bias_correction=False, decay=False)
    lower = (1 - (1 - 1 / math.sqrt(2)) * math.sqrt(1 + C * C)) / C
    assert rho >= lower - 256 * U
    if C <= C_BAR - 1e-9:  # lower falls at rate ~0.3 per unit C at its root: >= 3e-10 here, >> rounding
        assert lower > 0

    b4 = w / (1 + C4**4)
    v1, v2, v3 = steady_v(C4 * C4, b4)
    assert v2 <= 2 * (1 + 64 * U) and v3 <= (1 + b4) * (1 + 64 * U)
    rho4 = margin(10**12, C4 * C4, b4, bias_correction=False, decay=False)
    lower4 = 1 / math.sqrt(2) + 1 / math.sqrt(1 + b4) - 1 / math.sqrt(1 - b4)
    assert rho4 >= lower4 - 256 * U and lower4 > 0.6
