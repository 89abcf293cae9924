"""The claims of the chapter "Regularizing the softmax logits" (book/softmax.md).

Each proposition is checked on refimpl.nn's functions over hypothesis-drawn logits, labels and
scales. Tolerances count roundings (u = 2**-53; the standard model of tests/test_properties_ndadam.py):

* The computed softmax. ``refimpl.nn`` forms p = exp(log_softmax(z)), where
  log_softmax = (z - max) - log(sum exp(z - max)). With R = max z - min z, each shifted logit is
  exact up to u R, the sum of C positive exponentials (each <= 1) errs by (C+2)u relative, and the
  log by u |log S| <= u log C; exp turns an absolute error e of its argument into a relative error
  e + u. So every computed p_c has relative error at most ``rel_p(C, R) = (C + 6 + 2R + log C) u``,
  and absolute error at most that, since p_c <= 1. The reference values computed by the tests
  (a softmax over a subset of logits, sums of exponentials) obey the same bound.
* A quantity computed from p, such as 1 - p_y, inherits its absolute error, so its *relative*
  error is that absolute error divided by its size. Where a test divides by it, it bounds that
  size away from 0 first.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from refimpl import nn
from tolerances import U64

seeds = st.integers(0, 2**32 - 1)
n_classes = st.integers(2, 12)
scales = st.floats(1e-3, 30.0)


def rel_p(C: int, R: float) -> float:
    """Relative error bound of one computed softmax probability (module docstring)."""
    return (C + 6 + 2 * R + math.log(C)) * U64


def draw_logits(seed, C, batch=1, spread=3.0):
    rng = np.random.default_rng(seed)
    z = spread * rng.standard_normal((batch, C))
    y = rng.integers(0, C, size=batch)
    return z, y


def shares_reference(z, y):
    """The proposition's closed form: the softmax of the wrong logits (0 at the target)."""
    target = np.arange(z.shape[-1]) == y[..., None]
    zw = np.where(target, -np.inf, z)
    e = np.exp(zw - zw.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# ----------------------------------------------------------------------------- the logit gradient


@pytest.mark.claim("prop-softmax-logit-gradient")
@given(seed=seeds, C=n_classes, batch=st.integers(1, 6), eta=scales)
def test_logit_gradient_is_softmax_minus_onehot(seed, C, batch, eta):
    """eta * grad of CE at eta*z is eta (softmax(eta z) - e_y) / B, with the stated signs, zero sum and l1 norm."""
    z, y = draw_logits(seed, C, batch)
    loss, dz = nn.softmax_cross_entropy(eta * z, y)
    grad = eta * dz                                        # chain rule: d/dz l(eta z)
    ez = eta * z
    e = np.exp(ez - ez.max(axis=-1, keepdims=True))
    p = e / e.sum(axis=-1, keepdims=True)                  # the test's own softmax
    onehot = np.eye(C)[y]
    R = float(np.max(ez.max(axis=-1) - ez.min(axis=-1)))
    # Both sides' p errs by <= rel_p (<= 1 absolute); one more rounding each for "- onehot", "/B" and "* eta".
    tol = eta * (2 * rel_p(C, R) + 6 * U64) / batch
    assert np.abs(grad - eta * (p - onehot) / batch).max() <= tol
    # The entries of each example sum to 0 (up to the C errors above and the sum's own (C+1)u).
    sums = np.abs(grad.sum(axis=-1))
    assert np.all(sums <= C * tol + (C + 1) * U64 * np.abs(grad).sum(axis=-1))
    # Signs: non-targets >= 0 always; the target < 0 wherever 1 - p_y exceeds its error.
    assert np.all(np.where(onehot > 0, 0.0, grad) >= 0)
    clear = (1 - p[np.arange(batch), y]) > 2 * rel_p(C, R)
    assert np.all(grad[np.arange(batch), y][clear] < 0)
    # l1 norm = 2 eta (1 - p_y) / B per example.
    l1 = np.abs(grad).sum(axis=-1)
    assert np.all(np.abs(l1 - 2 * eta * (1 - p[np.arange(batch), y]) / batch) <= 2 * C * tol + 2 * tol)
    assert np.allclose(loss, -np.mean(np.log(p[np.arange(batch), y])), rtol=0, atol=2 * (C + 8 + 2 * R) * U64 + 1e-300)


# ----------------------------------------------------------------------------- wrong-class shares


@pytest.mark.claim("prop-softmax-wrong-class-shares")
@given(seed=seeds, C=st.integers(3, 12), eta=scales, new_target=st.floats(-5, 5))
def test_gradient_ratios_are_the_softmax_of_the_wrong_logits(seed, C, eta, new_target):
    """The ratios of refimpl's gradient entries equal softmax over the wrong logits, sum to 1 and ignore z_y."""
    z, y = draw_logits(seed, C)
    ez = eta * z
    p_y = nn.softmax(ez)[0, y[0]]
    R = float(ez.max() - ez.min())
    assume(1 - p_y > 1e-6)                      # keeps the cancellation in p_y - 1 bounded below
    _, dz = nn.softmax_cross_entropy(ez, y)
    ratio = dz[0] / -dz[0, y[0]]
    ratio[y[0]] = 0.0
    reference = shares_reference(ez, y)[0]
    # Numerator p_c: rel_p. Denominator 1 - p_y: absolute error rel_p + u, relative that over 1 - p_y.
    # The reference: rel_p again; the division and the "/B" steps: 3u.
    rel = 2 * rel_p(C, R) + (rel_p(C, R) + U64) / (1 - p_y) + 3 * U64
    assert np.all(np.abs(ratio - reference) <= rel * reference)
    assert abs(reference.sum() - 1) <= (C + 2) * rel_p(C, R)
    # Moving the target logit changes p_y, not the shares.
    z2 = ez.copy()
    z2[0, y[0]] = new_target
    assume(1 - nn.softmax(z2)[0, y[0]] > 1e-6)
    _, dz2 = nn.softmax_cross_entropy(z2, y)
    ratio2 = dz2[0] / -dz2[0, y[0]]
    ratio2[y[0]] = 0.0
    R2 = float(z2.max() - z2.min())
    rel2 = 2 * rel_p(C, R2) + (rel_p(C, R2) + U64) / (1 - nn.softmax(z2)[0, y[0]]) + 3 * U64
    assert np.all(np.abs(ratio2 - ratio) <= (rel + rel2) * reference * 1.01)


@pytest.mark.claim("prop-softmax-wrong-class-shares")
@given(seed=seeds, C=st.integers(3, 12), log_eta=st.floats(-8, 3))
def test_share_bounds_for_small_and_large_scales(seed, C, log_eta):
    """e^(-eta D)/(C-1) <= r_c <= e^(eta D)/(C-1); with a unique largest wrong logit ahead by delta, 1 - r* <= (C-2) e^(-eta delta)."""
    eta = 10.0**log_eta
    z, y = draw_logits(seed, C)
    r = shares_reference(eta * z, y)[0]
    wrong = np.delete(z[0], y[0])
    r_wrong = np.delete(r, y[0])
    D = wrong.max() - wrong.min()
    assume(eta * D < 700)                  # e^(eta D) stays finite in float64
    tol = rel_p(C, eta * D) + 2 * U64      # the shares, plus exp and the division in the bounds
    assert np.all(r_wrong >= np.exp(-eta * D) / (C - 1) * (1 - tol))
    assert np.all(r_wrong <= np.exp(eta * D) / (C - 1) * (1 + tol))
    order = np.argsort(wrong)[::-1]
    delta = wrong[order[0]] - wrong[order[1]]
    assume(delta > 0)
    # 1 - r* as the sum of the other shares: positive terms, no cancellation.
    rest = np.sum(r_wrong[order[1:]])
    assert rest <= (C - 2) * np.exp(-eta * delta) * (1 + tol) + (C - 1) * U64 * rest
    gaps = wrong[order[0]] - wrong[order[1:]]
    assert np.all(r_wrong[order[1:]] <= np.exp(-eta * gaps) * (1 + tol))


@pytest.mark.claim("prop-softmax-wrong-class-shares")
@given(seed=seeds, C=st.integers(3, 12), k=st.integers(1, 4))
def test_share_limits_and_ties(seed, C, k):
    """Tiny scales share equally (1/(C-1)); huge scales give all to the largest wrong logit, or 1/k each to k ties."""
    k = min(k, C - 1)
    z, y = draw_logits(seed, C)
    wrong = [c for c in range(C) if c != y[0]]
    z[0, wrong[:k]] = z[0].max() + 1.0            # k wrong logits tie for the largest, by at least 1
    r_small = shares_reference(1e-9 * z, y)[0]
    D = np.ptp(z[0, wrong])
    # (1) with eta D <= 1e-8: |r - 1/(C-1)| <= (e^(eta D) - 1)/(C-1) + rounding.
    assert np.all(np.abs(r_small[wrong] - 1 / (C - 1)) <= (math.expm1(1e-9 * D) + rel_p(C, 1)) / (C - 1))
    r_large = shares_reference(1e3 * z, y)[0]
    # (2) the others are at most e^(-1000 * 1) (0 in float64); the tied ones exactly equal.
    assert np.all(np.abs(r_large[wrong[:k]] - 1 / k) <= rel_p(C, 1e3 * D))
    assert np.all(r_large[wrong[k:]] <= math.exp(-1e3))


# ----------------------------------------------------------------------------- saturation


@pytest.mark.claim("prop-softmax-saturation")
@given(seed=seeds, C=n_classes, log_eta=st.floats(-6, 2.5))
def test_loss_and_gradient_size_follow_the_margin(seed, C, log_eta):
    """l_eta = log(1 + s), ||grad||_1 = 2 eta s / (1 + s), e^(-eta m) <= s <= (C-1) e^(-eta m), and the two regimes."""
    eta = 10.0**log_eta
    z, y = draw_logits(seed, C)
    zy = z[0, y[0]]
    wrong = np.delete(z[0], y[0])
    m = zy - wrong.max()
    assume(eta * float(np.max(np.abs(wrong - zy))) < 700)    # every e^(+-eta ...) stays finite
    s = float(np.sum(np.exp(eta * (wrong - zy))))              # the test's s: positive terms
    R = eta * float(np.ptp(z[0]))
    rel_s = (C + 2 + 2 * eta * abs(m) + 2 * R) * U64           # exp of args with error u|arg|, then a sum
    assert math.exp(-eta * m) * (1 - rel_s) <= s <= (C - 1) * math.exp(-eta * m) * (1 + rel_s)
    loss, dz = nn.softmax_cross_entropy(eta * z, y)
    # loss = logsumexp - z_y: absolute error (C + 6 + 2R + log C) u (1 + |eta z|max) at most.
    atol_loss = rel_p(C, R) * (1 + eta * np.abs(z).max())
    assert abs(float(loss) - math.log1p(s)) <= atol_loss + rel_s * s
    g1 = eta * float(np.abs(dz).sum())
    exact = 2 * eta * s / (1 + s)
    assert abs(g1 - exact) <= 2 * eta * (C + 1) * rel_p(C, R) + exact * (rel_s + 4 * U64)
    if m > 0:    # correctly classified: at most 2 eta (C-1) e^(-eta m)
        assert exact <= 2 * eta * (C - 1) * math.exp(-eta * m) * (1 + rel_s)
    if m < 0:    # misclassified: at least eta
        assert exact >= eta * (1 - rel_s)
    # Small eta: s/(1+s) lies between its values at (C-1) e^(-+eta Dz), Dz = max |z_c - z_y|.
    Dz = float(np.max(np.abs(wrong - zy)))
    lo, hi = (C - 1) * math.exp(-eta * Dz), (C - 1) * math.exp(eta * Dz)
    assert lo / (1 + lo) * (1 - rel_s) <= s / (1 + s) <= hi / (1 + hi) * (1 + rel_s)


# ----------------------------------------------------------------------------- BN-Softmax


@pytest.mark.claim("prop-softmax-bn-logit-scale")
@given(seed=seeds, batch=st.integers(2, 16), C=n_classes, gamma=st.floats(0.1, 10.0),
       eps=st.sampled_from([0.0, 1e-5, 1e-3, 1.0]), log_scale=st.integers(0, 6))
def test_bn_softmax_fixes_each_class_batch_mean_and_variance(seed, batch, C, gamma, eps, log_scale):
    """In training mode each class's logits have batch mean beta_c and variance gamma^2 sigma^2/(sigma^2+eps) <= gamma^2."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((batch, C)) * 10.0 ** rng.integers(-log_scale, log_scale + 1, size=C)
    sigma2 = a.var(axis=0)
    assume(np.all(sigma2 + eps > 0) and np.all(sigma2 > 1e-6 * np.abs(a).max(axis=0) ** 2))
    beta = rng.standard_normal(C)
    z, _ = nn.bn_softmax(a, beta, scale=gamma, eps=eps)
    # Per entry: mu errs by (B+1)u max|a|, a - mu by u more, the variance by (B+4)u relative, so
    # x_hat = (a - mu)/s errs by <= (B+8)u (|x_hat| + max|a|/sigma), with |x_hat| <= sqrt(B) (a
    # standardized column of B values has no entry beyond sqrt(B - 1)); z = gamma x_hat + beta
    # adds 2u (gamma sqrt(B) + |beta|).
    root_b = np.sqrt(batch)
    e_z = gamma * (batch + 8) * U64 * (root_b + np.abs(a).max(axis=0) / np.sqrt(sigma2)) \
        + 2 * U64 * (gamma * root_b + np.abs(beta))
    # The test's mean of B entries: e_z plus its own (B+1)u on terms <= gamma sqrt(B) + |beta|.
    mean_tol = e_z + (batch + 1) * U64 * (gamma * root_b + np.abs(beta))
    assert np.all(np.abs(z.mean(axis=0) - beta) <= mean_tol)
    # The test's variance of entries within gamma sqrt(B) of their mean: 2 gamma sqrt(B) e + e^2
    # for an entry error e <= e_z + mean_tol, plus its own (B+4)u relative.
    expected_var = gamma**2 * sigma2 / (sigma2 + eps)
    e = e_z + mean_tol
    var_tol = 2 * gamma * root_b * e + e**2 + (batch + 4) * U64 * gamma**2 + 3 * U64 * expected_var
    assert np.all(np.abs(z.var(axis=0) - expected_var) <= var_tol)
    assert np.all(z.var(axis=0) <= gamma**2 * (1 + 4 * U64) + var_tol)   # sigma^2/(sigma^2+eps) <= 1, 3 roundings


@pytest.mark.claim("prop-softmax-bn-logit-scale")
@given(seed=seeds, batch=st.integers(2, 16), C=n_classes, eps=st.sampled_from([0.0, 1e-5, 1.0]),
       j=st.integers(-12, 12), data=st.data())
def test_bn_softmax_column_scaling_is_an_eps_change(seed, batch, C, eps, j, data):
    """Scaling the pre-logits by k = 2^j gives bitwise the logits with eps/k^2 (per class when eps = 0); a shift changes nothing (up to rounding)."""
    rng = np.random.default_rng(seed)
    a, beta = rng.standard_normal((batch, C)), rng.standard_normal(C)
    assume(np.all(a.std(axis=0) > 0.05))
    # Powers of two are exact and commute with rounding, so these equalities are bitwise.
    k = 2.0**j
    z_scaled, _ = nn.bn_softmax(a * k, beta, scale=2.5, eps=eps)
    assert np.array_equal(z_scaled, nn.bn_softmax(a, beta, scale=2.5, eps=eps / k**2)[0])
    k_c = 2.0 ** np.array(data.draw(st.lists(st.integers(-12, 12), min_size=C, max_size=C)))
    assert np.array_equal(nn.bn_softmax(a * k_c, beta, scale=2.5, eps=0.0)[0],
                          nn.bn_softmax(a, beta, scale=2.5, eps=0.0)[0])
    t = 10.0 * rng.standard_normal(C)
    z_shift, _ = nn.bn_softmax(a + t, beta, scale=2.5, eps=0.0)
    z_plain, _ = nn.bn_softmax(a, beta, scale=2.5, eps=0.0)
    # a + t rounds each entry by u|a + t|; the centred values then carry that error divided by s.
    scale_err = (batch + 8) * U64 * (np.abs(a).max(axis=0) + np.abs(t) + 1) / a.std(axis=0)
    assert np.all(np.abs(z_shift - z_plain) <= 2 * 2.5 * scale_err + 4 * U64 * (2.5 * np.sqrt(batch) + np.abs(beta)))


# ----------------------------------------------------------------------------- the logit penalty


def penalty_margin(lam: float, C: int) -> float:
    """m* with lam * m * (e^m + C - 1) = C, by bisection to the last bit."""
    lo, hi = 0.0, max(1.0, math.log(C / lam))
    while True:
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            return mid
        if lam * mid * (math.exp(mid) + C - 1) < C:
            lo = mid
        else:
            hi = mid


def penalized(z, y, lam):
    """f(z) = CE + lam/2 ||z||^2 for one example, and its gradient, from refimpl.nn."""
    ce, dce = nn.softmax_cross_entropy(z[None, :], np.array([y]))
    pen, dpen = nn.logit_penalty(z[None, :], lam)
    return float(ce + pen), (dce + dpen)[0]


@pytest.mark.claim("prop-softmax-logit-penalty")
@given(C=st.integers(2, 20), y=st.integers(0, 19), log_lam=st.floats(-4, 2))
def test_penalty_minimizer_is_the_closed_form(C, y, log_lam):
    """z* = m*(e_y - 1/C) with lam m (e^m + C - 1) = C zeroes the gradient of CE + lam/2 ||z||^2; p_y = e^m/(e^m + C - 1)."""
    y = y % C
    lam = 10.0**log_lam
    m = penalty_margin(lam, C)
    assert 0 < m < max(1.0, math.log(C / lam))
    z = m * (np.eye(C)[y] - 1 / C)
    _, g = penalized(z, y, lam)
    # refimpl's p errs by rel_p (R = m); lam*z adds u lam m; m itself is within 1 ulp of the root,
    # which moves the gradient by at most (1/2 + lam) * 2u m (the Hessian's norm is <= 1/2 + lam).
    tol = 2 * rel_p(C, m) + 3 * U64 * lam * m + (0.5 + lam) * 2 * U64 * m
    assert np.abs(g).max() <= tol
    p = nn.softmax(z)
    assert abs(p[y] - math.exp(m) / (math.exp(m) + C - 1)) <= rel_p(C, m) + 4 * U64
    # The logits sum to zero, all wrong logits are equal, the margin is m.
    assert abs(z.sum()) <= (C + 1) * U64 * m * 2
    assert np.ptp(np.delete(z, y)) == 0 and abs(z[y] - z[(y + 1) % C] - m) <= 4 * U64 * m


@pytest.mark.claim("prop-softmax-logit-penalty")
@given(seed=seeds, C=st.integers(2, 12), log_lam=st.floats(-3, 1))
def test_newton_from_anywhere_reaches_the_closed_form(seed, C, log_lam):
    """An independent minimization (damped Newton from a random start) lands on z*, within ||grad f|| / lam (strong convexity)."""
    lam = 10.0**log_lam
    rng = np.random.default_rng(seed)
    y = int(rng.integers(0, C))
    z = 3 * rng.standard_normal(C)
    f, g = penalized(z, y, lam)
    for _ in range(200):
        p = nn.softmax(z)
        H = np.diag(p) - np.outer(p, p) + lam * np.eye(C)
        step = np.linalg.solve(H, g)
        t = 1.0
        while True:       # backtracking: f is strongly convex, so a decrease exists
            f_new, g_new = penalized(z - t * step, y, lam)
            if f_new <= f - 0.25 * t * (g @ step) or t < 1e-12:
                break
            t /= 2
        z, f, g = z - t * step, f_new, g_new
        if np.linalg.norm(g) < 1e-13:
            break
    z_star = penalty_margin(lam, C) * (np.eye(C)[y] - 1 / C)
    # ||z - z*|| <= ||grad f(z)|| / lam for the exact gradient; the computed one is within
    # 2 rel_p + 3u lam |z| of it per entry (test above), hence the second term.
    g_err = math.sqrt(C) * (2 * rel_p(C, np.ptp(z)) + 3 * U64 * lam * np.abs(z).max())
    assert np.linalg.norm(z - z_star) <= (np.linalg.norm(g) + g_err) / lam


@pytest.mark.claim("prop-softmax-logit-penalty")
@given(C=st.integers(2, 50), lams=st.lists(st.floats(1e-5, 1e3), min_size=2, max_size=5, unique=True))
def test_penalty_margin_decreases_with_lambda(C, lams):
    """m*(lambda) is strictly decreasing in lambda and below max(1, log(C / lambda))."""
    lams = sorted(lams)
    assume(all(b > a * (1 + 1e-9) for a, b in zip(lams, lams[1:])))
    ms = [penalty_margin(lam, C) for lam in lams]
    assert all(a > b for a, b in zip(ms, ms[1:]))
    assert all(m < max(1.0, math.log(C / lam)) for m, lam in zip(ms, lams))
