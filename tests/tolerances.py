"""Tolerances derived from the arithmetic, for comparing two implementations of one step.

The differential tests run refimpl and a peer (torch, optax) in *lockstep*: before every step
the peer is given refimpl's current parameters and state, so each comparison covers exactly one
step and any convention difference shows at the step where it appears. Two correct
implementations then differ only by the rounding of one step, each bounded below by counting
roundings (standard model: fl(a op b) = (a op b)(1 + d), |d| <= u, u = 2**-53 in float64).
The difference of two implementations is at most the sum of their two errors, hence the
factor 2 in each bound.
"""

from __future__ import annotations

import numpy as np

U64 = 2.0**-53
# XLA (optax's backend on CPU) flushes subnormal results to zero, so any result may also be off
# by up to the smallest normal number, an absolute error the relative model above cannot see.
TINY = float(np.finfo(np.float64).tiny)


def bias_correction_rel_err(beta, t, u=U64):
    """Relative error of fl(1 - beta**t): pow (<= 2u of beta**t) then a subtraction (u)."""
    if beta == 0:
        return u
    p = beta**t
    return u + 2 * u * p / (1 - p)


def adam_step_bounds(theta, g, m, v, *, t, lr, beta1, beta2, eps, wd=0.0, decoupled=False,
                     v_max=None, amsgrad=None, u=U64):
    """Per-element bounds on |difference| of (theta', m', v') after one Adam step.

    Inputs are the common starting point and hyperparameters. Rounding counts per element:

    * g~ = g + wd*theta: 2 roundings on terms of size G = |g| + wd|theta|.
    * m' = beta1 m + (1 - beta1) g~ (or torch's lerp m + (1-beta1)(g~ - m)): at most 5
      roundings, each on a term bounded by |m| + G, so |err m'| <= 5u(|m| + G).
    * v' = beta2 v + (1 - beta2) g~^2: every term is nonnegative, so its 5 roundings give a
      relative error 5u; the absolute error e of g~ (from a cancelling g + wd*theta) adds
      (1 - beta2)(2|g~|e + e^2).
    * sqrt: |sqrt(a) - sqrt(b)| <= min(|a - b| / (2 sqrt(a)), sqrt(|a - b|)), plus u.
    * The update lr * m_hat / (sqrt(v_hat) + eps) (PyTorch's or optax's ordering): the
      bias corrections add their relative errors (bias_correction_rel_err), the square root
      halves the relative error of v_hat and adds u, the + eps, the division, the product with
      lr and the subtraction from theta add u each on their results; 2 more roundings cover the
      reordering (torch divides by sqrt(bc2) after the root, optax before).
    * AMSGrad (``amsgrad="v"`` or ``"v_hat"``, with ``v_max`` the previous maximum): a max is
      exact, so only the size of the denominator changes.
    * AdamW: theta*(1 - lr*wd) (torch: fl(1 - lr*wd), then the product) or theta - lr*wd*theta
      (refimpl: the products, then the subtraction): either way up to 3 roundings on terms of
      size |theta| itself, not on lr*wd*|theta| (the factor 1 - lr*wd is close to 1).
    """
    l2 = wd > 0 and not decoupled
    G = np.abs(g) + (wd * np.abs(theta) if l2 else 0.0)
    g_eff = g + wd * theta if l2 else g
    e_g = 2 * u * G if l2 else 0.0                       # g + wd*theta may cancel: absolute error
    m_new = beta1 * m + (1 - beta1) * g_eff
    v_new = beta2 * v + (1 - beta2) * g_eff * g_eff
    err_m = 5 * u * (np.abs(m) + G) + (1 - beta1) * e_g
    err_v = 5 * u * v_new + (1 - beta2) * (2 * np.abs(g_eff) * e_g + e_g * e_g)
    bc1, bc2 = 1 - beta1**t, 1 - beta2**t
    if amsgrad == "v":        # running max of the raw v (PyTorch), then corrected
        v_hat = np.maximum(v_max, v_new) / bc2
    elif amsgrad == "v_hat":  # running max of the corrected v (optax)
        v_hat = np.maximum(v_max, v_new / bc2)
    else:
        v_hat = v_new / bc2
    rb1, rb2 = bias_correction_rel_err(beta1, t, u), bias_correction_rel_err(beta2, t, u)
    err_v_hat = err_v / bc2 + v_hat * (rb2 + u)          # a max of perturbed values moves at most as much
    root = np.sqrt(v_hat)
    with np.errstate(divide="ignore", invalid="ignore"):
        err_root = np.minimum(np.where(root > 0, err_v_hat / (2 * root), np.inf), np.sqrt(err_v_hat)) + u * root
    denom = root + eps
    err_denom = err_root + 3 * u * denom                 # + eps, and the two orderings of the correction
    m_hat = np.abs(m_new) / bc1
    step = lr * m_hat / denom
    err_step = lr * (err_m / bc1 + m_hat * (rb1 + u)) / denom + step * err_denom / denom + 3 * u * step
    err_theta = err_step + u * (np.abs(theta) + step) + (3 * u * np.abs(theta) if decoupled else 0)
    return 2 * err_theta + TINY, 2 * err_m + TINY, 2 * err_v + TINY


def sgd_step_bounds(theta, g, b, *, t, lr, momentum, dampening, nesterov, wd, u=U64):
    """Per-element bounds on |difference| of (theta', b') after one SGD step.

    g~ = g + wd theta (2 roundings on G = |g| + wd|theta|); b' = mu b + (1 - tau) g~ (4 roundings
    on terms bounded by mu|b| + G; exact copy on the first step); Nesterov adds g~ + mu b'
    (2 roundings); theta' = theta - lr d (2 roundings on |theta| + lr|d|). PyTorch may fuse a
    multiply-add (one rounding fewer), which these counts also cover.
    """
    G = np.abs(g) + wd * np.abs(theta)
    if momentum == 0:
        d, err_d, err_b, b_new = G, 2 * u * G, None, None
    else:
        b_new = G if t == 1 else momentum * np.abs(b) + (1 - dampening) * G
        err_b = 2 * u * G if t == 1 else 4 * u * b_new + 2 * u * G
        if nesterov:
            d = G + momentum * b_new
            err_d = 2 * u * G + momentum * err_b + 2 * u * d
        else:
            d, err_d = b_new, err_b
    err_theta = lr * err_d + 2 * u * (np.abs(theta) + lr * d)
    return 2 * err_theta, (None if err_b is None else 2 * err_b)


def ndadam_vector_step_bounds(w, g_bar, m, v, *, t, lr, beta1, beta2, eps, axes, u=U64):
    """Per-element bounds on |difference| of (w', m', v') after one ND-Adam step on weight
    vectors (the official code's epsilon: m / (sqrt(v) + eps) times lr sqrt(1-beta2^t)/(1-beta1^t)).

    With n elements per vector, a sum of n products has error <= (n + 1)u times the sum of the
    absolute products (any summation order); the rest follows the rounding counts of
    :func:`adam_step_bounds`. The final normalization divides by N = ||w_bar||, whose relative
    error is the perturbation of the sum of squares over 2 N^2, plus (n + 3)u.
    """
    def vsum(x):
        return np.sum(x, axis=axes, keepdims=True)

    n = int(np.prod([w.shape[a] for a in axes]))
    S = vsum(np.abs(g_bar * w))                                  # bounds |g_bar . w|
    radial = vsum(g_bar * w)
    g = g_bar - radial * w
    e_g = np.abs(w) * (n + 1) * u * S + 2 * u * (np.abs(g_bar) + np.abs(radial * w))
    G = np.abs(g_bar) + S * np.abs(w)
    m_new = beta1 * m + (1 - beta1) * g
    e_m = 5 * u * (np.abs(m) + G) + (1 - beta1) * e_g
    g2 = vsum(g * g)
    e_g2 = (n + 2) * u * g2 + vsum(2 * np.abs(g) * e_g + e_g * e_g)
    v_new = beta2 * v + (1 - beta2) * g2
    e_v = 5 * u * v_new + (1 - beta2) * e_g2
    root = np.sqrt(v_new)
    with np.errstate(divide="ignore", invalid="ignore"):
        e_root = np.minimum(np.where(root > 0, e_v / (2 * root), np.inf), np.sqrt(e_v)) + u * root
    denom = root + eps
    bc1, bc2 = 1 - beta1**t, 1 - beta2**t
    step_size = lr * np.sqrt(bc2) / bc1
    rel_step_size = bias_correction_rel_err(beta1, t, u) + bias_correction_rel_err(beta2, t, u) / 2 + 4 * u
    s = step_size * np.abs(m_new) / denom
    e_s = step_size * e_m / denom + s * ((e_root + 2 * u * denom) / denom + rel_step_size + 3 * u)
    w_bar = w - step_size * m_new / denom
    e_w_bar = e_s + u * (np.abs(w) + s)
    N = np.sqrt(vsum(w_bar * w_bar))
    rel_N = vsum(np.abs(w_bar) * e_w_bar) / N**2 + (n + 3) * u
    e_w = (e_w_bar + np.abs(w_bar) * rel_N) / N + u * np.abs(w_bar) / N
    return 2 * e_w, 2 * e_m, 2 * e_v
