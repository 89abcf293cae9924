"""Property-based tests of AdaL (refimpl.AdaL): the update rule of the module docstring,
tilde g = ||g||_1 g fed to Adam's moments, with eta_t = eta/sqrt(t).

The properties are those of the research notes (adal.md, sections 1.5 and 5), numbered as
there (P1 ... P12).  Every test draws its data with hypothesis (derandomized by conftest.py)
and asserts a concrete numeric relation.

Tolerances are first-order rounding-error bounds in units of u = 2**-53 (float64, round to
nearest), derived in each test's docstring from these facts:

* one elementwise operation has relative error <= u; C ``pow`` (Python ``b**t``) <= 2u;
* a sum of N terms, in any order, has absolute error <= (N-1)u * sum(|terms|); for terms of
  one sign that is a relative error;
* an exponential moving average x_t = b x_{t-1} + (1-b) y_t: the term of step s passes
  through one product (1-b)*y (two for y = g*g), its own addition, and a product and an
  addition at every later step, so each term of x_t carries a relative error <= 2t u
  (m) or (2t+1) u (v).  Hence |m_t(computed) - m_t| <= 2t u * EMA_t(|y|), whatever the signs,
  and v_t (terms >= 0) has relative error <= (2t+1) u.

Where both sides use the same floating-point value (``1 - beta**t``, ``lr / t**0.5``, computed
by the same Python expression), it is a common exact input and contributes nothing.  Second-
order terms (products of two such bounds, < 1e-24 here) are neglected.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import refimpl

U = 2.0**-53  # unit roundoff of float64
TINY = np.finfo(float).tiny  # lets "|x| <= 0" pass where both sides are exactly 0

NORMS = ["global", "per_tensor", "per_element"]
MODES = ["preconditioner", "denominator"]


# ----------------------------------------------------------------------------- helpers


def assert_le(a, b, what=""):
    """Elementwise a <= b, with the worst ratio in the message."""
    a, b = np.broadcast_arrays(np.asarray(a, float), np.asarray(b, float))
    bad = ~(a <= b)
    assert not bad.any(), f"{what}: {bad.sum()} violation(s); worst {a[bad].max()!r} > {b[bad][np.argmax(a[bad])]!r}"


def l1_scales(g: dict, norm: str) -> dict:
    """The factor c of tilde g = c g, computed by the test."""
    if norm == "per_element":
        return {k: np.abs(x) for k, x in g.items()}
    per = {k: float(np.sum(np.abs(x))) for k, x in g.items()}
    if norm == "per_tensor":
        return per
    total = sum(per.values())
    return {k: total for k in g}


def scope_size(shapes: dict, norm: str) -> dict:
    """N, the number of |g_i| summed into c, per parameter."""
    if norm == "per_element":
        return {k: 1 for k in shapes}
    if norm == "per_tensor":
        return {k: int(np.prod(s)) for k, s in shapes.items()}
    total = sum(int(np.prod(s)) for s in shapes.values())
    return {k: total for k in shapes}


def rel_bc(b: float, t: int) -> float:
    """Relative error of the float 1 - b**t: pow (2u of b**t), amplified by the cancellation,
    then the subtraction (u)."""
    return 2 * U * b**t / (1 - b**t) + U


def run(opt, p, grads):
    s = opt.init(p)
    out = []
    for g in grads:
        p, s = opt.step(p, g, s)
        out.append((p, s))
    return out


def drift_bound(x_abs, v_hat, S, theta_a, theta_b, *, b1, lr_t, bc1, eps, rho_in, tail):
    """Cumulative per-coordinate bound on |theta_a,t - theta_b,t| for two Adam-type runs
    (m, v EMAs of some input stream, step lr_t m_hat/(sqrt(v_hat)+eps) or an equal form)
    whose inputs agree up to a relative perturbation rho_in per element (2 rho_in for the
    squares) and that apply their steps to the same theta_0.

    Lists over t = 1..T: ``x_abs`` the |input| of run a, ``v_hat`` run a's v/bc2, ``S`` run
    a's step, ``theta_*`` the parameters after step t; ``lr_t``, ``bc1`` per step.
    Per step and coordinate (see the module docstring for the EMA facts):

    * m: the runs differ by <= (rho_in + 2*2t u) EMA_t(|x|) (input, plus each run's
      rounding), which the common factor lr_t/(bc1 (sqrt(v_hat)+eps)) turns into a step
      difference;
    * v: relative difference <= 2 rho_in + 2(2t+1) u, halved by the square root: times |S|;
    * ``tail``: the roundings after the moments (m/bc1, v/bc2, sqrt, +eps, lr_t*, /), both
      runs together: times |S|;
    * theta_t = theta_{t-1} - S rounds by u|theta_t| in each run, accumulated over steps.
    """
    A = np.zeros_like(x_abs[0])
    total = np.zeros_like(x_abs[0])
    out = []
    for t, (xa, vh, s, ta, tb, lr, bc) in enumerate(zip(x_abs, v_hat, S, theta_a, theta_b, lr_t, bc1), start=1):
        A = b1 * A + (1 - b1) * xa
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(A > 0, lr * (A / bc) / (np.sqrt(vh) + eps), 0.0)
        total = total + ratio * (rho_in + 4 * t * U) + np.abs(s) * (rho_in + (2 * t + 1) * U + tail) \
            + U * (np.abs(ta) + np.abs(tb))
        out.append(total.copy())
    return out


# ----------------------------------------------------------------------------- strategies

seeds = st.integers(0, 2**32 - 1)
betas1 = st.floats(0.0, 0.99)
# P4 bitwise assumes no underflow: a beta1 as small as 1e-300 (hypothesis draws the smallest normal
# number when a loaded module names it) makes beta1 * m subnormal, where scaling by a power of two no
# longer commutes with rounding. 0 and [1e-6, 0.99] keep every product normal here (|m| >= 1e-95).
betas1_normal = st.one_of(st.just(0.0), st.floats(1e-6, 0.99))
betas2 = st.floats(0.5, 0.9999)
lrs = st.floats(1e-4, 1.0)


@st.composite
def tree_shapes(draw):
    """Two parameters of (in general) different sizes, to tell the global norm from the
    per-tensor one."""
    return {"a": (draw(st.integers(1, 8)),), "b": (draw(st.integers(1, 4)), draw(st.integers(1, 4)))}


def mixed(rng, shape, lo, hi):
    """Random signs and per-coordinate magnitudes 10**U(lo, hi)."""
    return rng.choice([-1.0, 1.0], shape) * 10.0 ** rng.uniform(lo, hi, shape)


def tree_stream(rng, shapes, T, *, lo=-6.0, hi=3.0, zeros=True):
    """T gradient dicts; with ``zeros``: some all zero, some with one tensor zero, some with
    zero coordinates."""
    out = []
    for _ in range(T):
        g = {k: mixed(rng, s, lo, hi) for k, s in shapes.items()}
        if zeros:
            r = rng.random()
            if r < 0.1:
                g = {k: np.zeros(s) for k, s in shapes.items()}
            elif r < 0.3:
                g[rng.choice(list(g))][...] = 0.0
            elif r < 0.6:
                for k, s in shapes.items():
                    g[k][rng.random(s) < 0.4] = 0.0
        out.append(g)
    return out


# ----------------------------------------------------------------------------- P1


@pytest.mark.claim("lem-adal-adam-on-transformed-stream")
@pytest.mark.parametrize("norm", NORMS)
@given(shapes=tree_shapes(), seed=seeds, b1=betas1, b2=st.floats(0.0, 0.9999), eps_mode=st.sampled_from(MODES),
       zeros=st.booleans())
def test_p1_transform_before_both_moments(norm, shapes, seed, b1, b2, eps_mode, zeros):
    """AdaL P1: the transform tilde g = c g is applied before both moments: after one step
    from the zero state m = (1-b1) c g and v = (1-b2) (c g)^2, with c the l1 norm over the
    scope (all parameters, one tensor, or |g_i| itself).  Two tensors of different sizes tell
    "global" from "per_tensor" (their c differ by the other tensor's norm).

    Tolerance, relative to the expected value: c is a sum of N nonnegative terms on both sides,
    in possibly different orders: <= 2(N-1)u; m is two products on each side (4u): (2N+4)u.
    v carries c^2 (4(N-1)u) and two roundings of c*g squared plus two products on each side
    (8u): (4N+8)u."""
    rng = np.random.default_rng(seed)
    g = tree_stream(rng, shapes, 1, zeros=zeros)[0]
    p0 = {k: rng.standard_normal(s) for k, s in shapes.items()}
    opt = refimpl.AdaL(lr=0.1, beta1=b1, beta2=b2, norm=norm, eps_mode=eps_mode)
    _, s = opt.step(p0, g, opt.init(p0))
    c, N = l1_scales(g, norm), scope_size(shapes, norm)
    for k in shapes:
        m_ref = (1 - b1) * c[k] * g[k]
        v_ref = (1 - b2) * (c[k] * g[k]) ** 2
        assert_le(np.abs(s.m[k] - m_ref), (2 * N[k] + 4) * U * np.abs(m_ref), f"m[{k}]")
        assert_le(np.abs(s.v[k] - v_ref), (4 * N[k] + 8) * U * v_ref, f"v[{k}]")


# ----------------------------------------------------------------------------- P2


@pytest.mark.claim("prop-adal-first-step")
@pytest.mark.parametrize("eps_mode", MODES)
@given(shapes=tree_shapes(), seed=seeds, lr=lrs, b1=betas1, b2=st.floats(0.0, 0.9999),
       norm=st.sampled_from(NORMS))
def test_p2_first_step_is_adams(eps_mode, shapes, seed, lr, b1, b2, norm):
    """AdaL P2: with eps = 0 the first step is Adam's first step, -lr sign(g) (eta_1 = lr/1):
    m_hat_1 = tilde g and v_hat_1 = tilde g^2.  Where g_i = 0 the preconditioner guard
    leaves theta_i exactly unchanged (Adam and the denominator form give 0/0 there, so the
    denominator case draws no zeros).

    Tolerance: each side's step is lr sign(g)(1 + rho), rho <= 8u (m_hat: 2 roundings,
    v_hat: 3, halved by sqrt plus 1, then 1/sqrt or /, the product and lr*); the subtraction
    theta_0 - step rounds by u|theta_1|.  Against Adam: 16u lr + 2u|theta_1|; against the
    exact -lr sign(g) (computed with one rounding): 8u lr + 2u|theta_1|."""
    rng = np.random.default_rng(seed)
    g = tree_stream(rng, shapes, 1, zeros=eps_mode == "preconditioner")[0]
    assume(any(np.any(x != 0) for x in g.values()))
    p0 = {k: rng.standard_normal(s) for k, s in shapes.items()}
    adal = refimpl.AdaL(lr=lr, beta1=b1, beta2=b2, eps=0.0, norm=norm, eps_mode=eps_mode)
    adam = refimpl.Adam(lr=lr, beta1=b1, beta2=b2, eps=0.0)
    p1, _ = adal.step(p0, g, adal.init(p0))
    with np.errstate(invalid="ignore"):
        q1, _ = adam.step(p0, g, adam.init(p0))
    for k in shapes:
        nz = g[k] != 0
        np.testing.assert_array_equal(p1[k][~nz], p0[k][~nz])
        assert_le(np.abs(p1[k] - q1[k])[nz], (16 * U * lr + 2 * U * np.abs(p1[k]))[nz], f"vs Adam [{k}]")
        ref = p0[k] - lr * np.sign(g[k])
        assert_le(np.abs(p1[k] - ref)[nz], (8 * U * lr + 2 * U * np.abs(p1[k]))[nz], f"vs -lr sign(g) [{k}]")


# ----------------------------------------------------------------------------- P3


@pytest.mark.claim("prop-adal-constant-norm")
@given(shapes=tree_shapes(), seed=seeds, lr=lrs, b1=betas1, b2=betas2, log_c=st.floats(-3, 3),
       eps=st.sampled_from([0.0, 1e-8, 1e-3, 1.0]), T=st.integers(1, 40))
def test_p3_constant_l1_norm_reduces_to_adam(shapes, seed, lr, b1, b2, log_c, eps, T):
    """AdaL P3: if ||g_t||_1 = c for every t (global scope), AdaL(lr, b1, b2, eps) with
    eps_mode="denominator" has the trajectory of Adam(lr/sqrt(t), b1, b2, eps/c): m and v
    are c and c^2 times Adam's, so c m_hat/(c sqrt(v_hat) + eps) = m_hat/(sqrt(v_hat) + eps/c).
    With eps = 0 that is plain Adam (eps = 0).

    Tolerance (``drift_bound``): the stream is rescaled to ||g_t||_1 = c in floating point
    (fl(sum|r|) (N-1)u, the quotient u, each product u: the exact l1 norm is c(1 +- (N+1)u)),
    AdaL's own c_t adds (N-1)u and tilde g = c_t g one rounding: AdaL's input is c g_t up to
    rho_in = (2N+1)u.  Tail: 6 roundings per run plus eps/c in Adam: 13u."""
    rng = np.random.default_rng(seed)
    c = 10.0**log_c
    N = sum(int(np.prod(s)) for s in shapes.values())
    grads = []
    for g in tree_stream(rng, shapes, T, lo=-3, hi=3, zeros=eps > 0):
        total = sum(float(np.sum(np.abs(x))) for x in g.values())
        if total == 0:
            g = {k: mixed(rng, s, -3, 3) for k, s in shapes.items()}
            total = sum(float(np.sum(np.abs(x))) for x in g.values())
        grads.append({k: x * (c / total) for k, x in g.items()})
    p0 = {k: rng.standard_normal(s) for k, s in shapes.items()}
    adal = refimpl.AdaL(lr=lr, beta1=b1, beta2=b2, eps=eps, norm="global", eps_mode="denominator")
    adam = refimpl.Adam(lr=lambda t: lr / t**0.5, beta1=b1, beta2=b2, eps=eps / c)
    ra, rb = run(adam, p0, grads), run(adal, p0, grads)
    for k in shapes:
        steps, v_hat = [], []
        for t, (p, s) in enumerate(ra, start=1):
            vh = s.v[k] / (1 - b2**t)
            v_hat.append(vh)
            steps.append(lr / t**0.5 * (s.m[k] / (1 - b1**t)) / (np.sqrt(vh) + eps / c))
        bound = drift_bound([np.abs(g[k]) for g in grads], v_hat, steps, [p[k] for p, _ in ra], [p[k] for p, _ in rb],
                            b1=b1, lr_t=[lr / t**0.5 for t in range(1, T + 1)],
                            bc1=[1 - b1**t for t in range(1, T + 1)], eps=eps / c, rho_in=(2 * N + 1) * U, tail=13 * U)
        for t in range(T):
            assert_le(np.abs(ra[t][0][k] - rb[t][0][k]), bound[t] + TINY, f"step {t + 1} [{k}]")


# ----------------------------------------------------------------------------- P4


@pytest.mark.claim("prop-adal-scale-invariance")
@pytest.mark.parametrize("eps_mode", MODES)
@given(shapes=tree_shapes(), seed=seeds, lr=lrs, b1=betas1_normal, b2=betas2, norm=st.sampled_from(NORMS),
       k=st.integers(-20, 20), T=st.integers(1, 30))
def test_p4_global_scale_invariance_power_of_two_bitwise(eps_mode, shapes, seed, lr, b1, b2, norm, k, T):
    """AdaL P4: with eps = 0, scaling every gradient by s > 0 leaves the trajectory unchanged
    (tilde g scales by s^2, m_hat by s^2, sqrt(v_hat) by s^2).  For s = 2**k it is bitwise,
    in both eps modes and all scopes: every rounding commutes with a power of two (no
    overflow or underflow: |tilde g|^2 stays within 1e-95..1e75 here), and the guard sees
    the same zeros.  The state scales exactly: m by s^2, v by s^4."""
    rng = np.random.default_rng(seed)
    grads = tree_stream(rng, shapes, T, zeros=eps_mode == "preconditioner")
    s_ = 2.0**k
    p0 = {key: rng.standard_normal(sh) for key, sh in shapes.items()}
    opt = refimpl.AdaL(lr=lr, beta1=b1, beta2=b2, eps=0.0, norm=norm, eps_mode=eps_mode)
    scaled = [{key: s_ * x for key, x in g.items()} for g in grads]
    for (pa, sa), (pb, sb) in zip(run(opt, p0, grads), run(opt, p0, scaled)):
        for key in shapes:
            np.testing.assert_array_equal(pa[key], pb[key])
            np.testing.assert_array_equal(s_**2 * sa.m[key], sb.m[key])
            np.testing.assert_array_equal(s_**4 * sa.v[key], sb.v[key])


@pytest.mark.claim("prop-adal-scale-invariance")
@pytest.mark.parametrize("eps_mode", MODES)
@given(shapes=tree_shapes(), seed=seeds, lr=lrs, b1=betas1, b2=betas2, norm=st.sampled_from(NORMS),
       log_s=st.floats(-3, 3), T=st.integers(1, 30))
def test_p4_global_scale_invariance_any_scale(eps_mode, shapes, seed, lr, b1, b2, norm, log_s, T):
    """AdaL P4, any s in [1e-3, 1e3], eps = 0: the trajectories for s g_t and g_t agree.

    Tolerance (``drift_bound``): fl(s g) is one rounding, its l1 norm a sum of N terms, so
    the scaled run's c is s c (1 +- (2N-1)u) and its tilde g is s^2 tilde g up to
    rho_in = (2N+2)u (per element, N = 1: 4u).  Tail: 7 roundings per run (m/bc1, v/bc2,
    sqrt, 1/ or /, * or +eps, lr_t*, and the product): 14u."""
    rng = np.random.default_rng(seed)
    grads = tree_stream(rng, shapes, T, zeros=eps_mode == "preconditioner")
    s_ = 10.0**log_s
    p0 = {key: rng.standard_normal(sh) for key, sh in shapes.items()}
    opt = refimpl.AdaL(lr=lr, beta1=b1, beta2=b2, eps=0.0, norm=norm, eps_mode=eps_mode)
    ra = run(opt, p0, grads)
    rb = run(opt, p0, [{key: s_ * x for key, x in g.items()} for g in grads])
    N = scope_size(shapes, norm)
    for key in shapes:
        x_abs = [np.abs(l1_scales(g, norm)[key] * g[key]) for g in grads]
        v_hat = [s.v[key] / (1 - b2**t) for t, (_, s) in enumerate(ra, start=1)]
        with np.errstate(divide="ignore", invalid="ignore"):
            steps = [np.where(vh > 0, lr / t**0.5 * (s.m[key] / (1 - b1**t)) / np.sqrt(vh), 0.0)
                     for t, ((_, s), vh) in enumerate(zip(ra, v_hat), start=1)]
        bound = drift_bound(x_abs, v_hat, steps, [p[key] for p, _ in ra], [p[key] for p, _ in rb], b1=b1,
                            lr_t=[lr / t**0.5 for t in range(1, T + 1)], bc1=[1 - b1**t for t in range(1, T + 1)],
                            eps=0.0, rho_in=(2 * N[key] + 2) * U, tail=14 * U)
        for t in range(T):
            assert_le(np.abs(ra[t][0][key] - rb[t][0][key]), bound[t] + TINY, f"step {t + 1} [{key}]")


# ----------------------------------------------------------------------------- P5


def ratio_oracle(q: float, *, b1: float, b2: float, pre: int, post: int) -> float:
    """(m_hat/sqrt(v_hat)) `post` steps after the magnitude changes from 1 to q, over its value
    just before: scalar EMAs, which is all a fixed-direction stream leaves (each coordinate
    is u_i times them; AdaL's magnitudes are the squares, c_t = ||u||_1 a_t)."""
    m = v = 0.0
    for t in range(1, pre + post + 1):
        a = 1.0 if t <= pre else q
        m, v = b1 * m + (1 - b1) * a, b2 * v + (1 - b2) * a * a
        if t == pre:
            before = (m / (1 - b1**t)) / math.sqrt(v / (1 - b2**t))
    return (m / (1 - b1**t)) / math.sqrt(v / (1 - b2**t)) / before


def measured_ratio(opt, u, factor, B, pre, post):
    """Per-coordinate |step at pre+post| / |step at pre| and its rounding allowance."""
    theta = np.zeros_like(u)
    s = opt.init(theta)
    steps, thetas = {}, {}
    for t in range(1, pre + post + 1):
        g = (B if t <= pre else B * factor) * u
        new, s = opt.step(theta, g, s)
        steps[t], thetas[t] = theta - new, new
        theta = new
    r = steps[pre + post] / steps[pre]
    # measuring a step as theta_{t-1} - theta_t: the update rounded by u|theta_t|, the test's
    # subtraction by u|step|
    meas = sum(U * np.abs(thetas[t]) / np.abs(steps[t]) + U for t in (pre, pre + post))
    return r, meas


@pytest.mark.claim("prop-adal-temporal-reweighting")
@settings(max_examples=20)  # 2 x 240 steps per example
@given(seed=seeds, d=st.integers(1, 6), k=st.floats(2.0, 20.0), lr=lrs, log_B=st.floats(-2, 2),
       rise=st.booleans())
def test_p5_amplification_is_relative(seed, d, k, lr, log_B, rise):
    """AdaL P5: after a sustained change of the gradient norm by a factor k (fixed direction,
    200 steps at norm B, then B/k or B*k, constant lr, b1 = 0.9, b2 = 0.999, eps = 0), the
    step 40 steps later over the step just before the change is R(1/k) for Adam and R(1/k^2)
    for AdaL, R the EMA ratio (``ratio_oracle``): AdaL's step shrinks much more after a drop,
    ratio(AdaL) < ratio(Adam) for k in [2, 20].  For a rise (k in [2, 16]) it grows more:
    R is increasing for q below (1-r)f/(r(1-f)) ~ 296 (r = 0.9^40 the weight of old m,
    f ~ 0.816 that of old v), and k^2 <= 256.

    Tolerance on each ratio, relative: both measured steps carry input rounding (Adam 2u:
    g = (B*factor)*u; AdaL (d+4)u: then c = ||g||_1 with (d-1)u, and c*g) twice (m and
    sqrt(v)), the EMA roundings 2t u + (2t+1)u/2 and 6u of tail, t <= 240:
    2 rho_in + (3t+7)u each; plus the measurement (``measured_ratio``); the oracle's own
    float64 ratio carries 2(3t+7)u, and its rounded input q^2 (u) moves R by <= 2u (the
    elasticity of R in q is <= 2)."""
    rng = np.random.default_rng(seed)
    if rise:
        k = min(k, 16.0)
    factor = k if rise else 1 / k
    u = mixed(rng, (d,), -1, 1)
    B = 10.0**log_B
    pre, post, b1, b2 = 200, 40, 0.9, 0.999
    kw = dict(lr=lr, beta1=b1, beta2=b2, eps=0.0)
    r_adam, meas_adam = measured_ratio(refimpl.Adam(**kw), u, factor, B, pre, post)
    r_adal, meas_adal = measured_ratio(refimpl.AdaL(lr_decay="none", eps_mode="denominator", **kw), u, factor, B, pre,
                                       post)
    e_adam = ratio_oracle(factor, b1=b1, b2=b2, pre=pre, post=post)
    e_adal = ratio_oracle(factor**2, b1=b1, b2=b2, pre=pre, post=post)
    T = pre + post
    for r, e, meas, rho_in in ((r_adam, e_adam, meas_adam, 2 * U), (r_adal, e_adal, meas_adal, (d + 4) * U)):
        tol = 2 * (2 * rho_in + (3 * T + 7) * U) + meas + 2 * (3 * T + 7) * U + 2 * U
        assert_le(np.abs(r / e - 1), tol, "ratio vs oracle")
    if rise:
        assert np.all(r_adal > r_adam)
    else:
        assert np.all(r_adal < r_adam)


@pytest.mark.claim("prop-adal-temporal-reweighting")
def test_p5_reference_values_for_a_tenfold_drop():
    """AdaL P5, the notes' reference numbers: 40 steps after a sustained 10x drop
    (b1 = 0.9, b2 = 0.999, constant lr), the step ratio is 0.1253 for Adam and 0.0273 for
    AdaL (given to 4 decimals there, so asserted to +-5e-5)."""
    u = np.array([0.3, -1.2, 2.0])
    kw = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=0.0)
    r_adam, _ = measured_ratio(refimpl.Adam(**kw), u, 0.1, 1.0, 200, 40)
    r_adal, _ = measured_ratio(refimpl.AdaL(lr_decay="none", **kw), u, 0.1, 1.0, 200, 40)
    assert_le(np.abs(r_adam - 0.1253), 5e-5, "Adam")
    assert_le(np.abs(r_adal - 0.0273), 5e-5, "AdaL")


# ----------------------------------------------------------------------------- P6


@pytest.mark.claim("prop-adal-gradpower")
@given(shapes=tree_shapes(), seed=seeds, lr=lrs, b1=betas1, b2=st.floats(0.0, 0.9999),
       eps=st.sampled_from([1e-8, 1e-3, 1.0]), T=st.integers(1, 30))
def test_p6_per_element_is_adam_on_signed_square_bitwise(shapes, seed, lr, b1, b2, eps, T):
    """AdaL P6: with norm="per_element" and eps_mode="denominator", AdaL is Adam fed
    sign(g)|g|^2 = |g|*g with the schedule lr/sqrt(t) (GradPower p = 2).  Bitwise: both
    evaluate the same floating-point operations on the same inputs (|g|*g is the transform's
    own product; Adam's eps_root = 0 adds an exact 0)."""
    rng = np.random.default_rng(seed)
    grads = tree_stream(rng, shapes, T)
    p0 = {k: rng.standard_normal(s) for k, s in shapes.items()}
    adal = refimpl.AdaL(lr=lr, beta1=b1, beta2=b2, eps=eps, norm="per_element", eps_mode="denominator")
    adam = refimpl.Adam(lr=lambda t: lr / t**0.5, beta1=b1, beta2=b2, eps=eps)
    fed = [{k: np.abs(x) * x for k, x in g.items()} for g in grads]
    for (pa, sa), (pb, sb) in zip(run(adal, p0, grads), run(adam, p0, fed)):
        for k in shapes:
            np.testing.assert_array_equal(pa[k], pb[k])
            np.testing.assert_array_equal(sa.m[k], sb.m[k])
            np.testing.assert_array_equal(sa.v[k], sb.v[k])


@pytest.mark.claim("prop-adal-gradpower")
@given(shapes=tree_shapes(), seed=seeds, lr=lrs, b1=betas1, b2=betas2, T=st.integers(1, 30))
def test_p6_per_element_preconditioner_mode(shapes, seed, lr, b1, b2, T):
    """AdaL P6, eps_mode="preconditioner", eps = 0: v_hat^(-1/2) m_hat equals Adam's
    m_hat/sqrt(v_hat) with one more rounding (the reciprocal); both see the same moments
    (bitwise).  Tolerance: ``drift_bound`` with rho_in = 0 and 13u of tail (6 + 7 roundings)."""
    rng = np.random.default_rng(seed)
    grads = tree_stream(rng, shapes, T, zeros=False)
    p0 = {k: rng.standard_normal(s) for k, s in shapes.items()}
    adal = refimpl.AdaL(lr=lr, beta1=b1, beta2=b2, eps=0.0, norm="per_element")
    adam = refimpl.Adam(lr=lambda t: lr / t**0.5, beta1=b1, beta2=b2, eps=0.0)
    fed = [{k: np.abs(x) * x for k, x in g.items()} for g in grads]
    ra, rb = run(adam, p0, fed), run(adal, p0, grads)
    for k in shapes:
        for (_, sa), (_, sb) in zip(ra, rb):
            np.testing.assert_array_equal(sa.m[k], sb.m[k])
            np.testing.assert_array_equal(sa.v[k], sb.v[k])
        v_hat = [s.v[k] / (1 - b2**t) for t, (_, s) in enumerate(ra, start=1)]
        steps = [lr / t**0.5 * (s.m[k] / (1 - b1**t)) / np.sqrt(vh) for t, ((_, s), vh) in enumerate(zip(ra, v_hat), 1)]
        bound = drift_bound([np.abs(g[k]) for g in fed], v_hat, steps, [p[k] for p, _ in ra], [p[k] for p, _ in rb],
                            b1=b1, lr_t=[lr / t**0.5 for t in range(1, T + 1)],
                            bc1=[1 - b1**t for t in range(1, T + 1)], eps=0.0, rho_in=0.0, tail=13 * U)
        for t in range(T):
            assert_le(np.abs(ra[t][0][k] - rb[t][0][k]), bound[t] + TINY, f"step {t + 1} [{k}]")


# ----------------------------------------------------------------------------- P7


@pytest.mark.claim("prop-adal-eps-unbounded-step")
@given(shapes=tree_shapes(), seed=seeds, lr=lrs, b1=betas1, b2=betas2, norm=st.sampled_from(NORMS),
       eps=st.sampled_from([0.0, 1e-8, 1.0]), lr_decay=st.sampled_from(["inv_sqrt", "none"]),
       T=st.integers(1, 60))
def test_p7_per_coordinate_step_bound(shapes, seed, lr, b1, b2, norm, eps, lr_decay, T):
    """AdaL P7: with eps_mode="denominator" and b1^2 < b2, every step and coordinate obeys
    |dtheta_{t,i}| <= lr_t (1-b1)/sqrt((1-b2)(1-b1^2/b2)) sqrt(1-b2^t)/(1-b1^t)
    (Cauchy-Schwarz on the EMAs of tilde g; eps only shrinks the step), whatever the
    gradient scale: magnitudes 1e-20..1e20 within one gradient, exact zeros.  With eps = 0 a
    coordinate with tilde g_1 = 0 is 0/0 (NaN) at step 1, and stays NaN: it is skipped, and
    the NaNs must be exactly those coordinates.

    Tolerance: the computed |m| exceeds the EMA of |tilde g| by <= 2t u and the computed v
    falls short by <= (2t+1)u (halved by sqrt); the tail (m/bc1, v/bc2, sqrt, +eps, lr_t*, /)
    adds <= 6u; the test's bound: 10u plus the cancellation in 1 - b1^2/b2 (r = b1^2/b2 with
    3u, so u(3r/(1-r) + 1)/2 after the square root); the bias corrections are the same floats
    on both sides.  Measuring the step as theta_{t-1} - theta_t adds u|theta_t| + u|step|.
    This allowance is <= 1e-12 relative here, far inside the notes' 1e-9."""
    r = b1**2 / b2
    assume(r <= 0.99)
    rng = np.random.default_rng(seed)
    grads = tree_stream(rng, shapes, T, lo=-20, hi=20)
    p0 = {k: np.zeros(s) for k, s in shapes.items()}
    opt = refimpl.AdaL(lr=lr, beta1=b1, beta2=b2, eps=eps, norm=norm, eps_mode="denominator", lr_decay=lr_decay)
    K0 = (1 - b1) / math.sqrt((1 - b2) * (1 - r))
    c1 = l1_scales(grads[0], norm)
    # with eps = 0: 0/0 at step 1 where tilde g_1 = 0, and NaN stays NaN
    nan_expected = {k: (c1[k] * grads[0][k] == 0) if eps == 0 else np.zeros(s, dtype=bool) for k, s in shapes.items()}
    prev = p0
    with np.errstate(invalid="ignore"):
        out = run(opt, p0, grads)
    for t, (p, _) in enumerate(out, start=1):
        lr_t = lr / t**0.5 if lr_decay == "inv_sqrt" else lr
        bound = lr_t * K0 * math.sqrt(1 - b2**t) / (1 - b1**t)
        rho = 2 * t * U + (2 * t + 1) * U / 2 + 6 * U + 10 * U + U * (3 * r / (1 - r) + 1) / 2
        for k in shapes:
            np.testing.assert_array_equal(np.isnan(p[k]), nan_expected[k])
            assert not np.any(np.isinf(p[k]))
            ok = ~nan_expected[k]
            step = np.abs(prev[k] - p[k])[ok]
            assert_le(step, bound * (1 + rho) + U * np.abs(p[k][ok]) + U * step, f"step {t} [{k}]")
        prev = p


# ----------------------------------------------------------------------------- P8


@pytest.mark.claim("prop-adal-eps-nan-hazard")
@pytest.mark.parametrize("eps_mode", MODES)
@given(shapes=tree_shapes(), seed=seeds, lr=lrs, b1=betas1, b2=st.floats(0.0, 0.9999), norm=st.sampled_from(NORMS),
       eps=st.sampled_from([0.0, 1e-8, 1.0]), T=st.integers(1, 30))
def test_p8_nan_safety_with_exact_zeros(eps_mode, shapes, seed, lr, b1, b2, norm, eps, T):
    """AdaL P8: gradient streams with exact zeros (single coordinates, whole tensors, whole
    steps, and the first step's zeros, which leave v_hat = 0) keep parameters and state
    finite in the preconditioner mode (any eps >= 0, thanks to the guard) and in the
    denominator mode (eps > 0).  Where v_hat = 0 the guarded step is exactly 0; elsewhere it
    equals the unguarded formula (v_hat^(-1/2) + eps) m_hat computed by the test from the
    state: each side has <= 7u relative in S (m/bc1, v/bc2 halved, sqrt and 1/ or pow's 2u,
    +eps, lr_t*, *m_hat): 14u |S|, plus u|theta| for each side's subtraction."""
    assume(eps_mode == "preconditioner" or eps > 0)
    rng = np.random.default_rng(seed)
    grads = tree_stream(rng, shapes, T)
    p = {k: rng.standard_normal(s) for k, s in shapes.items()}
    opt = refimpl.AdaL(lr=lr, beta1=b1, beta2=b2, eps=eps, norm=norm, eps_mode=eps_mode)
    s = opt.init(p)
    for g in grads:
        new, s = opt.step(p, g, s)
        for k in shapes:
            assert np.all(np.isfinite(new[k])) and np.all(np.isfinite(s.m[k])) and np.all(np.isfinite(s.v[k]))
            if eps_mode == "preconditioner":
                t = s.t
                m_hat, v_hat = s.m[k] / (1 - b1**t), s.v[k] / (1 - b2**t)
                with np.errstate(divide="ignore", invalid="ignore"):
                    S = lr / t**0.5 * (v_hat**-0.5 + eps) * m_hat
                zero = v_hat == 0
                np.testing.assert_array_equal(new[k][zero], p[k][zero])
                assert_le(np.abs(new[k] - (p[k] - S))[~zero], (14 * U * np.abs(S) + 2 * U * np.abs(new[k]))[~zero], k)
        p = new


@pytest.mark.claim("prop-adal-eps-nan-hazard")
@pytest.mark.parametrize("b2", [0.0, 0.999])
def test_p8_unguarded_preconditioner_would_give_nan(b2):
    """AdaL P8, regression: why the guard exists.  With g = (1, 0, -2) the middle coordinate
    has v_hat = 0 and m_hat = 0; the unguarded formula (v_hat^(-1/2) + eps) m_hat computed by
    hand on AdaL's state is inf * 0 = NaN there, while refimpl's guarded step is exactly 0
    (the parameter does not move) and finite everywhere.  With b2 = 0 this recurs at any
    later step whose gradient has a zero coordinate."""
    opt = refimpl.AdaL(lr=0.1, beta1=0.9, beta2=b2)
    p0 = np.array([0.5, 0.5, 0.5])
    p1, s = opt.step(p0, np.array([1.0, 0.0, -2.0]), opt.init(p0))
    p2, s2 = opt.step(p1, np.array([1.0, 0.0, 3.0]), s)
    for p_prev, p_new, st_ in ((p0, p1, s), (p1, p2, s2)):
        m_hat, v_hat = st_.m / (1 - 0.9**st_.t), st_.v / (1 - b2**st_.t)
        with np.errstate(divide="ignore", invalid="ignore"):
            unguarded = (v_hat**-0.5 + opt.eps) * m_hat
        assert np.isnan(unguarded[1]) and np.all(np.isfinite(unguarded[[0, 2]]))
        assert np.all(np.isfinite(p_new)) and p_new[1] == p_prev[1]


# ----------------------------------------------------------------------------- P9


@pytest.mark.claim("prop-adal-eps-nan-hazard")
@pytest.mark.parametrize("eps_mode", MODES)
@given(shapes=tree_shapes(), seed=seeds, lr=lrs, b1=betas1, b2=st.floats(0.0, 0.9999), norm=st.sampled_from(NORMS),
       eps=st.sampled_from([1e-8, 1.0]), lr_decay=st.sampled_from(["inv_sqrt", "none"]), T=st.integers(1, 20))
def test_p9_zero_gradients_are_a_no_op(eps_mode, shapes, seed, lr, b1, b2, norm, eps, lr_decay, T):
    """AdaL P9: gradients that are zero from the start leave the parameters bitwise unchanged
    and the state exactly 0 (c = 0, tilde g = 0, m = v = 0; the step is the guarded 0 or
    0/(0+eps) = 0, and theta - 0 = theta)."""
    rng = np.random.default_rng(seed)
    p0 = {k: rng.standard_normal(s) for k, s in shapes.items()}
    opt = refimpl.AdaL(lr=lr, beta1=b1, beta2=b2, eps=eps, norm=norm, eps_mode=eps_mode, lr_decay=lr_decay)
    zero = {k: np.zeros(s) for k, s in shapes.items()}
    for p, s in run(opt, p0, [zero] * T):
        for k in shapes:
            np.testing.assert_array_equal(p[k], p0[k])
            np.testing.assert_array_equal(s.m[k], 0.0)
            np.testing.assert_array_equal(s.v[k], 0.0)


# ----------------------------------------------------------------------------- P10


@pytest.mark.claim("prop-adal-eps-unbounded-step")
@pytest.mark.parametrize("eps_mode", MODES)
@given(d=st.integers(1, 8), seed=seeds, lr=lrs, b2=st.floats(0.0, 0.9999), log_a=st.floats(-3, 3),
       eps=st.sampled_from([0.0, 1e-8, 1e-2]), norm=st.sampled_from(NORMS))
def test_p10_inv_sqrt_schedule(eps_mode, d, seed, lr, b2, log_a, eps, norm):
    """AdaL P10: lr_decay="inv_sqrt" with a constant one-hot gradient a e_j and b1 = 0:
    m_hat = tilde g = |a| a = x and v_hat = x^2, so |dtheta_j| = lr/sqrt(t) times
    (1 + eps|x|) (preconditioner) or |x|/(|x| + eps) (denominator): lr, lr/2, lr/10 at
    t = 1, 4, 100 for eps = 0.  The other coordinates never move.

    Tolerance, relative: v_t has (2t+1)u, 1 - b2 one u (then sum_k b2^k is exact), the
    division by 1 - b2^t rel_bc(b2, t) + u, all halved by the square root, + u; then 1/sqrt
    or /, the eps term, the product, lr/t**0.5 (3u), lr_t*: 7u; the test's expected value
    3u; the measurement theta_{t-1} - theta_t: u|theta_t|/|step| + u <= (2t+1)u with
    |theta_t| <= 2 sqrt(t) lr (1 + eps|x|).  So (3t + 12)u + rel_bc(b2, t)/2."""
    assume(eps_mode == "preconditioner" or eps > 0)
    rng = np.random.default_rng(seed)
    j = int(rng.integers(d))
    a = float(rng.choice([-1.0, 1.0])) * 10.0**log_a
    g = np.zeros(d)
    g[j] = a
    opt = refimpl.AdaL(lr=lr, beta1=0.0, beta2=b2, eps=eps, norm=norm, eps_mode=eps_mode, lr_decay="inv_sqrt")
    x = abs(a) * a
    factor = 1 + eps * abs(x) if eps_mode == "preconditioner" else abs(x) / (abs(x) + eps)
    theta = np.zeros(d)
    s = opt.init(theta)
    for t in range(1, 101):
        new, s = opt.step(theta, g, s)
        if t in (1, 4, 100):
            step = theta[j] - new[j]
            expected = math.copysign(lr / math.sqrt(t) * factor, a)
            tol = ((3 * t + 12) * U + rel_bc(b2, t) / 2) * abs(expected)
            assert abs(step - expected) <= tol, (t, step, expected)
        others = np.arange(d) != j
        np.testing.assert_array_equal(new[others], 0.0)
        theta = new


# ----------------------------------------------------------------------------- P12


def reddi_mean_of_last_third(opt, T=3000, C=3.0):
    """Reddi et al.'s online problem on [-1, 1]: f_t(x) = C x if t mod 3 == 1 else -x
    (the average loss (C-2)x/3 is minimized at x = -1); projected by clipping."""
    x = np.array([1.0])
    s = opt.init(x)
    xs = []
    for t in range(1, T + 1):
        x, s = opt.step(x, np.array([C if t % 3 == 1 else -1.0]), s)
        x = np.clip(x, -1.0, 1.0)
        xs.append(x[0])
    return float(np.mean(xs[-(T // 3):]))


@pytest.mark.claim("prop-adal-reddi-counterexample")
@pytest.mark.parametrize("eps_mode", MODES)
def test_p12_reddi_counterexample_defeats_adal(eps_mode):
    """AdaL P12 (documentation test): on Reddi et al.'s counterexample with C = 3, b1 = 0 and
    b2 = 1/(1+C^2), AdaL (lr = 0.5/sqrt(t)) ends near x = +1, the worst point (mean of the
    last third of 3000 iterates > 0.9); with b2 = 0.999 it ends near the optimum -1 (< -0.9).
    Convergence is conditional on b2."""
    C = 3.0
    bad = refimpl.AdaL(lr=0.5, beta1=0.0, beta2=1 / (1 + C**2), eps_mode=eps_mode, lr_decay="inv_sqrt")
    good = refimpl.AdaL(lr=0.5, beta1=0.0, beta2=0.999, eps_mode=eps_mode, lr_decay="inv_sqrt")
    assert reddi_mean_of_last_third(bad, C=C) > 0.9
    assert reddi_mean_of_last_third(good, C=C) < -0.9


# ----------------------------------------------------------------------------- batch_ndim


@pytest.mark.parametrize("norm", NORMS)
@given(K=st.integers(1, 4), d1=st.integers(1, 6), d2=st.integers(1, 3), d3=st.integers(1, 3), seed=seeds, lr=lrs,
       b1=betas1, b2=st.floats(0.0, 0.9999), eps_mode=st.sampled_from(MODES), T=st.integers(1, 15))
def test_batch_ndim_is_k_independent_runs_bitwise(norm, K, d1, d2, d3, seed, lr, b1, b2, eps_mode, T):
    """AdaL batch_ndim: parameters of shape (K, ...) with batch_ndim = 1 are K independent
    AdaL runs, bitwise: the norm of row k sums exactly the elements that run k sums, in the
    same order (a contiguous row), and everything else is elementwise."""
    rng = np.random.default_rng(seed)
    shapes = {"a": (K, d1), "b": (K, d2, d3)}
    grads = tree_stream(rng, shapes, T)
    p0 = {k: rng.standard_normal(s) for k, s in shapes.items()}
    kw = dict(lr=lr, beta1=b1, beta2=b2, norm=norm, eps_mode=eps_mode)
    batched = run(refimpl.AdaL(batch_ndim=1, **kw), p0, grads)
    single = refimpl.AdaL(**kw)
    for i in range(K):
        alone = run(single, {k: x[i] for k, x in p0.items()}, [{k: x[i] for k, x in g.items()} for g in grads])
        for (pb, sb), (pa, sa) in zip(batched, alone):
            for k in shapes:
                np.testing.assert_array_equal(pb[k][i], pa[k])
                np.testing.assert_array_equal(sb.m[k][i], sa.m[k])
                np.testing.assert_array_equal(sb.v[k][i], sa.v[k])
