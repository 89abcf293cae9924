"""Tests of refimpl.nn: exact gradients, scale invariance under batch normalization, errors.

Every hand-derived backward pass is checked twice, against two independent oracles:

* central finite differences, in float64;
* torch autograd in float64 (skipped when torch is not installed).

Tolerances (u = 2**-53, the unit roundoff of float64; the rounding facts are those listed in
tests/test_properties_ndadam.py: an elementwise operation errs by <= u relative, a sum of n
terms by <= (n+1)u times the sum of the absolute terms).

Finite differences. With step h, D(h) = (f(x+h) - f(x-h)) / 2h = f'(x) + c h^2 + O(h^4)
(c = f'''/6) when f is evaluated exactly; each evaluation of f errs by at most delta, which adds
at most delta/h. We take h = 1e-4 (inputs of order 1: then the truncation term c h^2 ~ 1e-8 |c|
and the rounding term ~ 1e-12 delta/u balance near the optimum h ~ (delta/|c|)^(1/3)). Instead
of a bound on f''' we *measure* the truncation term by step doubling (Richardson):
D(2h) - D(h) = 3 c h^2 + O(h^4), so |D(h) - f'| <= |D(2h) - D(h)|/3 + 3 delta/(2h) + O(h^4). The
test allows |D(2h) - D(h)| + 2 delta/h: three times the measured truncation (the slack covers the
O(h^4) term) plus the rounding of both differences. delta is stated for each function below.
A function with kinks (ReLU) is only differenced where no kink lies within 2h (checked).

Torch. Both sides evaluate the same formulas in float64 in different orders. Through a network of
depth D whose every step is an elementwise operation or a sum of at most n terms, each step
contributes at most (n+8)u relative to the largest quantity it touches; batch normalization's
backward multiplies by 1/s (s the batch standard deviation of its input), which the generated
data keep <= 1/s_min (checked with ``assume``). Hence each gradient entry of either side is
within D (n+8) u / s_min^D of the exact value, relative to the largest entry of any gradient
(weights are N(0, 1/fan_in) and inputs N(0, 1), so no intermediate is much larger), and the two
sides within twice that: :func:`backprop_bound`.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import refimpl
from refimpl import nn
from refimpl.nn import MLP
from tolerances import U64

H = 1e-4  # finite-difference step (see the module docstring)

seeds = st.integers(0, 2**32 - 1)
batches = st.integers(2, 8)
widths = st.integers(1, 6)
n_classes = st.integers(2, 5)
heads = st.sampled_from(["plain", "bn_softmax"])


def backprop_bound(depth: int, n: int, s_min: float) -> float:
    """Relative bound on |refimpl - torch| for a network of ``depth`` layers (module docstring)."""
    return 2 * depth * (n + 8) * U64 / s_min**depth


def central_differences(f, x, idx_or_dir, h=H):
    """D(h) and D(2h) of the scalar function f at x, along coordinate ``idx`` or direction ``d``."""
    if isinstance(idx_or_dir, tuple):
        e = np.zeros_like(x)
        e[idx_or_dir] = 1.0
    else:
        e = idx_or_dir
    d1 = (f(x + h * e) - f(x - h * e)) / (2 * h)
    d2 = (f(x + 2 * h * e) - f(x - 2 * h * e)) / (4 * h)
    return d1, d2


def assert_fd_gradient(f, x, grad, delta):
    """Every coordinate of ``grad`` against central differences of f, with the tolerance
    |D(2h) - D(h)| + 2 delta/h of the module docstring."""
    for idx in np.ndindex(x.shape):
        d1, d2 = central_differences(f, x, idx)
        tol = abs(d2 - d1) + 2 * delta / H
        assert abs(d1 - grad[idx]) <= tol, (idx, d1, grad[idx], tol)


def make_mlp_problem(seed, sizes, batch, head, logit_decay=0.0, weight_decay=0.0, bn_eps=1e-5):
    rng = np.random.default_rng(seed)
    net = MLP(sizes=sizes, head=head, softmax_scale=float(rng.uniform(0.5, 4.0)), logit_decay=logit_decay,
              weight_decay=weight_decay, bn_eps=bn_eps)
    params = net.init(rng)
    params = {k: v + (0.1 * rng.standard_normal(v.shape) if k.startswith("b") else 0.0) for k, v in params.items()}
    x = rng.standard_normal((batch, sizes[0]))
    labels = rng.integers(0, sizes[-1], size=batch)
    return net, params, x, labels


def bn_input_stds(net, params, x):
    """The batch standard deviation of the input of every BN layer (s_min in the docstring)."""
    stats = net.bn_statistics(params, x)
    return np.concatenate([np.sqrt(s.var).ravel() for s in stats]) if stats else np.array([np.inf])


def relu_inputs(net, params, x):
    """The input of every ReLU of the network in training mode, concatenated."""
    h, out = x, []
    for l in range(1, net.n_layers):
        a, _ = nn.linear(h, params[f"W{l}"])
        u, _ = nn.batch_norm(a, params[f"b{l}"], eps=net.bn_eps)
        out.append(u.ravel())
        h, _ = nn.relu(u)
    return np.concatenate(out) if out else np.array([np.inf])


# ----------------------------------------------------------------------------- finite differences


@pytest.mark.claim("prop-softmax-logit-gradient")
@given(seed=seeds, batch=batches, classes=n_classes, scale=st.sampled_from([0.1, 1.0, 10.0]))
def test_softmax_cross_entropy_gradient_matches_finite_differences(seed, batch, classes, scale):
    """dL/dz = (softmax(z) - onehot(y)) / B, coordinate by coordinate against central differences."""
    rng = np.random.default_rng(seed)
    z = scale * rng.standard_normal((batch, classes))
    y = rng.integers(0, classes, size=batch)
    _, dz = nn.softmax_cross_entropy(z, y)
    # delta: per example max-shift, C exps, a sum of C positive terms, a log and a subtraction
    # ((C+4)u on terms <= 1 + 3 max|z|), then a sum of B examples ((B+1)u): (B+C+8)u(1+3 max|z|).
    delta = (batch + classes + 8) * U64 * (1 + 3 * np.abs(z).max() + 4 * H)
    assert_fd_gradient(lambda zz: float(nn.softmax_cross_entropy(zz, y)[0]), z, dz, delta)


@given(seed=seeds, batch=batches, classes=n_classes, decay=st.floats(1e-4, 10.0))
def test_logit_penalty_gradient_matches_finite_differences(seed, batch, classes, decay):
    """dP/dz = lambda z / B for the official PyTorch code's penalty lambda/2 mean_b ||z_b||^2."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((batch, classes))
    value, dz = nn.logit_penalty(z, decay)
    # P is quadratic, so D(h) has no truncation error; delta: BC squares summed ((BC+4)u relative
    # on a sum of nonnegative terms, evaluated at |z| + 2h).
    delta = (batch * classes + 4) * U64 * decay / 2 * np.sum((np.abs(z) + 2 * H) ** 2) / batch
    assert_fd_gradient(lambda zz: float(nn.logit_penalty(zz, decay)[0]), z, dz, delta)


@pytest.mark.claim("prop-experiment-bn-backward")
@given(seed=seeds, batch=batches, units=widths, scale=st.floats(0.25, 4.0), eps=st.sampled_from([0.0, 1e-5, 1e-2]))
def test_batch_norm_backward_matches_finite_differences(seed, batch, units, scale, eps):
    """The batch-norm backward formula (batch statistics) against central differences of sum(R * BN(x))."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, units))
    shift = rng.standard_normal(units)
    s = np.sqrt(x.var(axis=0) + eps)
    assume(s.min() >= 0.1)
    R = rng.standard_normal((batch, units))
    y, cache = nn.batch_norm(x, shift, scale=scale, eps=eps)
    dx, dshift = nn.batch_norm_backward(R, cache)
    # delta: x_hat = (x - mean)/s errs by <= (B+8)u (|x_hat| + (|x| + max|x|)/s) (mean, variance,
    # sqrt, division), scaled by `scale`; then y and the sum of BU products R*y ((BU+3)u). x moves
    # by up to 2h, which changes these magnitudes by a factor < 1.01 (covered by the 2 below).
    x_hat = (x - x.mean(axis=0)) / s
    err_x_hat = (batch + 8) * U64 * (np.abs(x_hat) + (np.abs(x) + np.abs(x).max()) / s)
    delta = 2 * (np.sum(np.abs(R) * scale * err_x_hat) + (batch * units + 3) * U64 * np.sum(np.abs(R * y)))
    assert_fd_gradient(lambda xx: float(np.sum(R * nn.batch_norm(xx, shift, scale=scale, eps=eps)[0])), x, dx, delta)
    assert np.array_equal(dshift, R.sum(axis=0))


@given(seed=seeds, batch=batches, n_in=widths, n_out=widths)
def test_linear_and_relu_backward_match_finite_differences(seed, batch, n_in, n_out):
    """linear_backward and relu_backward against central differences of sum(R * relu(x W + b))."""
    rng = np.random.default_rng(seed)
    x, W, b = rng.standard_normal((batch, n_in)), rng.standard_normal((n_in, n_out)), rng.standard_normal(n_out)
    R = rng.standard_normal((batch, n_out))
    pre, lin = nn.linear(x, W, b)
    # No kink within 2h of any coordinate move: |pre| > 2h (max|W| + max|x| + 1) keeps every sign.
    assume(np.abs(pre).min() > 2 * H * (np.abs(W).max() + np.abs(x).max() + 1))
    out, act = nn.relu(pre)
    dx, dW, db = nn.linear_backward(nn.relu_backward(R, act), lin)
    # f is piecewise bilinear: no truncation error on a piece; delta: a dot product of n_in terms,
    # a bias and the sum of B*n_out products ((n_in + B n_out + 4)u on the absolute terms).
    absolute = np.sum(np.abs(R) * (np.abs(x) @ np.abs(W) + np.abs(b) + 4 * H * (np.abs(x).max() + np.abs(W).max() + 1)))
    delta = (n_in + batch * n_out + 4) * U64 * absolute
    f = lambda xx, WW, bb: float(np.sum(R * nn.relu(nn.linear(xx, WW, bb)[0])[0]))  # noqa: E731
    assert_fd_gradient(lambda xx: f(xx, W, b), x, dx, delta)
    assert_fd_gradient(lambda WW: f(x, WW, b), W, dW, delta)
    assert_fd_gradient(lambda bb: f(x, W, bb), b, db, delta)


@pytest.mark.claim("prop-experiment-bn-backward")
@given(seed=seeds, batch=st.integers(3, 8), hidden=st.lists(widths, min_size=0, max_size=2), classes=n_classes,
       head=heads, logit_decay=st.sampled_from([0.0, 1e-3, 0.5]), weight_decay=st.sampled_from([0.0, 1e-2]))
def test_mlp_gradient_matches_directional_finite_differences(seed, batch, hidden, classes, head, logit_decay,
                                                             weight_decay):
    """MLP.loss_and_grads: <grad, d> against central differences of the loss along random directions d."""
    sizes = (3, *hidden, classes)
    net, params, x, labels = make_mlp_problem(seed, sizes, batch, head, logit_decay, weight_decay)
    assume(bn_input_stds(net, params, x).min() >= 0.1)
    loss, grads = net.loss_and_grads(params, x, labels)
    rng = np.random.default_rng(seed + 1)
    keys = sorted(params)
    theta = np.concatenate([params[k].ravel() for k in keys])
    g = np.concatenate([grads[k].ravel() for k in keys])

    def unpack(vec):
        out, i = {}, 0
        for k in keys:
            out[k] = vec[i:i + params[k].size].reshape(params[k].shape)
            i += params[k].size
        return out

    f = lambda vec: float(net.loss_and_grads(unpack(vec), x, labels)[0])  # noqa: E731
    # delta: depth D <= 3 layers of at most n = 8 + 6 terms per sum, each adding (n+8)u relative,
    # amplified by 1/s_min = 10 per BN layer, on a loss of size 1 + |L|: the bound of the module
    # docstring, applied to the forward pass.
    delta = backprop_bound(3, 14, 0.1) * (1 + abs(float(loss)))
    for _ in range(4):
        d = rng.standard_normal(theta.size)
        d /= np.linalg.norm(d)
        signs = [np.sign(relu_inputs(net, unpack(theta + k * H * d), x)) for k in (-2, -1, 0, 1, 2)]
        if not all(np.array_equal(s, signs[0]) for s in signs):
            continue  # a ReLU kink within 2h along d: differences are not derivatives there
        d1, d2 = central_differences(f, theta, d)
        assert abs(d1 - g @ d) <= abs(d2 - d1) + 2 * delta / H, (d1, g @ d)


# ----------------------------------------------------------------------------- torch autograd


def torch_mlp_loss(net, params, x, labels):
    """The MLP's loss written independently with torch operations (autograd differentiates it)."""
    import torch
    F = torch.nn.functional
    tp = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in params.items()}
    def bn(a):  # torch's F.batch_norm refuses eps = 0 in training mode, so written out
        return (a - a.mean(0)) / torch.sqrt(a.var(0, unbiased=False) + net.bn_eps)

    h = torch.tensor(x)
    for l in range(1, net.n_layers):
        h = torch.relu(bn(h @ tp[f"W{l}"]) + tp[f"b{l}"])
    a = h @ tp[f"W{net.n_layers}"]
    if net.head == "plain":
        z = a + tp[f"b{net.n_layers}"]
    else:
        z = net.softmax_scale * bn(a) + tp[f"b{net.n_layers}"]
    # The official ND-Adam PyTorch code's loss (main.py), plus the TensorFlow code's L2 on weights.
    loss = F.cross_entropy(z, torch.tensor(labels)) + net.logit_decay * 0.5 * torch.mean(torch.sum(z * z, 1))
    loss = loss + net.weight_decay / 2 * sum((tp[f"W{l}"] ** 2).sum() for l in range(1, net.n_layers + 1))
    loss.backward()
    return loss.item(), {k: v.grad.numpy() for k, v in tp.items()}


@pytest.mark.claim("prop-experiment-bn-backward")
@given(seed=seeds, batch=batches, hidden=st.lists(widths, min_size=0, max_size=2), n_in=widths, classes=n_classes,
       head=heads, logit_decay=st.sampled_from([0.0, 1e-3, 0.5]), weight_decay=st.sampled_from([0.0, 1e-2]),
       bn_eps=st.sampled_from([0.0, 1e-5, 1e-3]))
def test_mlp_matches_torch_autograd(seed, batch, hidden, n_in, classes, head, logit_decay, weight_decay, bn_eps):
    """MLP loss and every gradient equal torch autograd's (float64), within the backprop rounding bound."""
    pytest.importorskip("torch")
    net, params, x, labels = make_mlp_problem(seed, (n_in, *hidden, classes), batch, head, logit_decay,
                                              weight_decay, bn_eps)
    assume(bn_input_stds(net, params, x).min() >= 0.1)
    loss, grads = net.loss_and_grads(params, x, labels)
    loss_t, grads_t = torch_mlp_loss(net, params, x, labels)
    bound = backprop_bound(3, 8, 0.1)
    scale = max(1.0, abs(loss_t), *(np.abs(g).max() for g in grads_t.values()))
    assert abs(float(loss) - loss_t) <= bound * scale
    for k in params:
        assert grads[k].shape == params[k].shape and grads[k].dtype == np.float64
        assert np.abs(grads[k] - grads_t[k]).max() <= bound * scale, k


@pytest.mark.claim("prop-softmax-logit-gradient")
@given(seed=seeds, batch=batches, classes=n_classes, decay=st.floats(0.0, 1.0))
def test_losses_match_torch_autograd(seed, batch, classes, decay):
    """softmax_cross_entropy and logit_penalty: values and gradients equal torch's (float64)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(seed)
    z = 3 * rng.standard_normal((batch, classes))
    y = rng.integers(0, classes, size=batch)
    zt = torch.tensor(z, requires_grad=True)
    ce_t = torch.nn.functional.cross_entropy(zt, torch.tensor(y))
    pen_t = decay * 0.5 * torch.mean(torch.sum(zt * zt, 1))
    (ce_t + pen_t).backward()
    ce, dce = nn.softmax_cross_entropy(z, y)
    pen, dpen = nn.logit_penalty(z, decay)
    # One layer (D = 1) of sums over at most n = B + C terms, no BN: the docstring's bound.
    bound = backprop_bound(1, batch + classes, 1.0) * (1 + 3 * np.abs(z).max())
    assert abs(float(ce) - ce_t.item()) <= bound and abs(float(pen) - pen_t.item()) <= bound * (1 + pen_t.item())
    assert np.abs(dce + dpen - zt.grad.numpy()).max() <= bound


# ----------------------------------------------------------------------------- scale invariance


@pytest.mark.claim("prop-experiment-bn-scale-invariance")
@given(seed=seeds, batch=batches, units=widths, k=st.integers(-20, 20), eps=st.sampled_from([0.0, 1e-5, 1e-2]))
def test_scaling_bn_input_by_power_of_two_rescales_eps_bitwise(seed, batch, units, k, eps):
    """BN(c a; eps) == BN(a; eps / c^2) bitwise for c = 2^k, and the input gradient scales by 1/c exactly."""
    rng = np.random.default_rng(seed)
    a, shift, dy = rng.standard_normal((batch, units)), rng.standard_normal(units), rng.standard_normal((batch, units))
    c = 2.0**k  # multiplying by a power of two is exact, and commutes with every rounding below
    y_scaled, cache_scaled = nn.batch_norm(c * a, shift, scale=2.5, eps=eps)
    y, cache = nn.batch_norm(a, shift, scale=2.5, eps=eps / c**2)
    assert np.array_equal(y_scaled, y)
    assert np.array_equal(nn.batch_norm_backward(dy, cache_scaled)[0], nn.batch_norm_backward(dy, cache)[0] / c)


def _scale_units(net, params, c):
    """params with column j of every BN-followed weight matrix multiplied by c[key][j]."""
    return {k: v * c[k] if k in c else v for k, v in params.items()}


@pytest.mark.claim("prop-experiment-bn-scale-invariance")
@given(seed=seeds, batch=st.integers(3, 8), hidden=st.lists(widths, min_size=1, max_size=2), classes=n_classes,
       head=heads, data=st.data())
def test_mlp_loss_is_invariant_to_rescaling_each_unit(seed, batch, hidden, classes, head, data):
    """With bn_eps = 0, scaling each BN'd unit's incoming weights by 2^k leaves the loss bitwise unchanged and divides their gradient by 2^k."""
    net, params, x, labels = make_mlp_problem(seed, (4, *hidden, classes), batch, head, logit_decay=1e-3, bn_eps=0.0)
    assume(bn_input_stds(net, params, x).min() >= 0.1)
    c = {k: 2.0 ** np.array(data.draw(st.lists(st.integers(-8, 8), min_size=params[k].shape[1],
                                                 max_size=params[k].shape[1]), label=k))
         for k in net.vector_axes}
    loss, grads = net.loss_and_grads(params, x, labels)
    loss_c, grads_c = net.loss_and_grads(_scale_units(net, params, c), x, labels)
    assert np.array_equal(loss_c, loss)
    for k in params:
        assert np.array_equal(grads_c[k], grads[k] / c[k] if k in c else grads[k]), k


@pytest.mark.claim("prop-experiment-bn-scale-invariance")
@given(seed=seeds, batch=st.integers(3, 8), hidden=st.lists(widths, min_size=1, max_size=2), classes=n_classes,
       head=heads, c=st.floats(1e-3, 1e3))
def test_mlp_gradient_is_orthogonal_to_incoming_weights(seed, batch, hidden, classes, head, c):
    """With bn_eps = 0: w_j . dL/dw_j = 0 for every BN'd unit, and dL/dw at c w is dL/dw at w over c (any c > 0)."""
    net, params, x, labels = make_mlp_problem(seed, (4, *hidden, classes), batch, head, bn_eps=0.0)
    assume(bn_input_stds(net, params, x).min() >= 0.1)
    _, grads = net.loss_and_grads(params, x, labels)
    scaled = {k: c * v if k in net.vector_axes else v for k, v in params.items()}
    _, grads_c = net.loss_and_grads(scaled, x, labels)
    bound = backprop_bound(3, 8, 0.1)
    scale = max(1.0, *(np.abs(g).max() for g in grads.values()))
    for k in net.vector_axes:
        W, G = params[k], grads[k]
        # The computed G is within bound*scale of the exact one per entry, whose column-wise dot
        # with W is 0: |w . G| <= ||w||_1 * bound * scale (plus the dot product's own rounding).
        radial = np.abs(np.sum(W * G, axis=0))
        own = (W.shape[0] + 1) * U64 * np.sum(np.abs(W * G), axis=0)
        assert np.all(radial <= np.abs(W).sum(axis=0) * bound * scale + own), k
        # c*W (c not a power of two) rounds each weight by u: the loss and its gradient move by
        # at most that much more than the bound for one evaluation.
        assert np.abs(c * grads_c[k] - G).max() <= 2 * bound * scale, k


# ----------------------------------------------------------------------------- configurations, modes, backends


@given(seed=seeds, batch=batches, hidden=st.lists(widths, min_size=1, max_size=2), classes=n_classes, head=heads,
       n_configs=st.integers(1, 3), shared_x=st.booleans())
@settings(max_examples=50)  # each example runs n_configs + 1 networks; 50 (CI) and 200 (full) suffice for a shape rule
def test_leading_axes_are_independent_configurations(seed, batch, hidden, classes, head, n_configs, shared_x):
    """Stacked parameters (and data, or one shared batch) give each configuration its own loss and gradients."""
    runs = [make_mlp_problem(seed + i, (3, *hidden, classes), batch, head, logit_decay=1e-3) for i in range(n_configs)]
    net = runs[0][0]
    P = {k: np.stack([r[1][k] for r in runs]) for k in runs[0][1]}
    X = runs[0][2] if shared_x else np.stack([r[2] for r in runs])
    Y = runs[0][3] if shared_x else np.stack([r[3] for r in runs])
    loss, grads = net.loss_and_grads(P, X, Y)
    assert loss.shape == (n_configs,)
    for i, (_, params, x, labels) in enumerate(runs):
        xi, yi = (runs[0][2], runs[0][3]) if shared_x else (x, labels)
        loss_i, grads_i = net.loss_and_grads(params, xi, yi)
        bound = backprop_bound(3, 8, 1e-3) * max(1.0, abs(float(loss_i)), *(np.abs(g).max() for g in grads_i.values()))
        assert abs(loss[i] - loss_i) <= bound
        for k in params:
            assert np.abs(grads[k][i] - grads_i[k]).max() <= bound


@pytest.mark.claim("lem-experiment-full-batch-statistics")
@given(seed=seeds, batch=batches, hidden=st.lists(widths, min_size=0, max_size=2), classes=n_classes, head=heads)
def test_full_batch_statistics_reproduce_training_mode(seed, batch, hidden, classes, head):
    """logits(params, x, bn_statistics(params, x)) equals the training-mode logits(params, x), bitwise."""
    net, params, x, _ = make_mlp_problem(seed, (3, *hidden, classes), batch, head)
    stats = net.bn_statistics(params, x)
    assert len(stats) == len(hidden) + (head == "bn_softmax")
    assert np.array_equal(net.logits(params, x, stats), net.logits(params, x))


@pytest.mark.claim("lem-experiment-full-batch-statistics")
def test_evaluation_uses_the_given_statistics():
    """With fixed statistics a BN layer is affine, so one example's logits do not depend on the rest of the batch."""
    net, params, x, _ = make_mlp_problem(0, (3, 5, 4), 6, "bn_softmax")
    stats = net.bn_statistics(params, x)
    z = net.logits(params, x, stats)
    z_first = net.logits(params, x[:1], stats)
    assert np.allclose(z_first, z[:1], rtol=0, atol=64 * U64 * np.abs(z).max())
    # With fixed statistics the backward pass is the affine one: dx = scale * dy / s.
    a = np.random.default_rng(1).standard_normal((4, 3))
    _, cache = nn.batch_norm(a, np.zeros(3), scale=2.0, eps=0.0, stats=nn.BNStats(np.zeros(3), np.full(3, 4.0)))
    assert np.array_equal(nn.batch_norm_backward(np.ones((4, 3)), cache)[0], np.full((4, 3), 1.0))


def test_vector_axes_name_the_weights_that_feed_batch_norm():
    """Every hidden W, and the head's only with BN-Softmax; NDAdam accepts them as they are."""
    assert MLP(sizes=(4, 8, 8, 3)).vector_axes == {"W1": (-2,), "W2": (-2,)}
    assert MLP(sizes=(4, 8, 8, 3), head="bn_softmax").vector_axes == {"W1": (-2,), "W2": (-2,), "W3": (-2,)}
    assert MLP(sizes=(4, 3)).vector_axes == {}
    net = MLP(sizes=(4, 8, 3), head="bn_softmax")
    opt = refimpl.NDAdam(vector_axes=net.vector_axes)
    params = opt.normalize(net.init(np.random.default_rng(0)))
    x, y = np.random.default_rng(1).standard_normal((6, 4)), np.arange(6) % 3
    _, grads = net.loss_and_grads(params, x, y)
    new, _ = opt.step(params, grads, opt.init(params))
    for k in net.vector_axes:
        assert np.allclose(np.linalg.norm(new[k], axis=0), 1.0, rtol=0, atol=16 * U64)


def test_init_is_float64_and_seeded():
    """init draws N(0, 1/fan_in) weights and zero shifts in float64, reproducibly from the generator."""
    net = MLP(sizes=(64, 32, 10))
    a, b = net.init(np.random.default_rng(3)), net.init(np.random.default_rng(3))
    assert all(np.array_equal(a[k], b[k]) and a[k].dtype == np.float64 for k in a)
    assert np.array_equal(a["b1"], np.zeros(32))
    assert abs(a["W1"].std() * 8 - 1) < 0.1  # sd 1/sqrt(64) over 2048 draws: the sample sd is within 3%


def test_runs_on_every_backend(backend):
    """The MLP runs unchanged on every array library of the test backends, giving NumPy's numbers."""
    net, params, x, labels = make_mlp_problem(0, (3, 5, 4), 6, "bn_softmax", logit_decay=1e-3, weight_decay=1e-2)
    loss, grads = net.loss_and_grads(params, x, labels)
    loss_b, grads_b = net.loss_and_grads(backend.asarray(params), backend.asarray(x), backend.asarray(labels))
    stats = net.bn_statistics(backend.asarray(params), backend.asarray(x))
    z_b = net.logits(backend.asarray(params), backend.asarray(x), stats)
    # array-api-strict wraps NumPy (bitwise equal); a GPU library orders sums differently.
    scale = max(1.0, abs(float(loss)), *(np.abs(g).max() for g in grads.values()))
    bound = 0.0 if backend.name != "cupy" else backprop_bound(2, 8, 0.1) * scale
    assert abs(float(refimpl.to_numpy(loss_b)) - float(loss)) <= bound
    for k in grads:
        assert np.abs(refimpl.to_numpy(grads_b[k]) - grads[k]).max() <= bound
    assert np.abs(refimpl.to_numpy(z_b) - net.logits(params, x)).max() <= bound


def test_functions_leave_their_inputs_untouched():
    """Pure functions: no input array is modified."""
    net, params, x, labels = make_mlp_problem(0, (3, 5, 4), 6, "bn_softmax", logit_decay=1e-3, weight_decay=1e-2)
    before = ({k: v.copy() for k, v in params.items()}, x.copy(), labels.copy())
    net.loss_and_grads(params, x, labels)
    net.logits(params, x, net.bn_statistics(params, x))
    assert all(np.array_equal(before[0][k], params[k]) for k in params)
    assert np.array_equal(before[1], x) and np.array_equal(before[2], labels)


# ----------------------------------------------------------------------------- errors


_net = MLP(sizes=(3, 4, 2))
_params = _net.init(np.random.default_rng(0))
_x = np.ones((5, 3))
_y = np.array([0, 1, 0, 1, 1])
_z = np.zeros((5, 2))

ERRORS = [
    # (call, exception class, fragments the message must contain)
    (lambda: nn.softmax_cross_entropy(_z, np.array([0, 1, 2, 0, 1])), ValueError, ["labels", "[0, 2)", "2"]),
    (lambda: nn.softmax_cross_entropy(_z, np.array([0, 1, -1, 0, 1])), ValueError, ["labels", "-1"]),
    (lambda: nn.softmax_cross_entropy(_z, np.array([0.0, 1, 0, 0, 1])), TypeError, ["labels", "integer", "float64"]),
    (lambda: nn.softmax_cross_entropy(_z, np.array([0, 1, 0])), ValueError, ["labels", "(3,)", "(..., 5)"]),
    (lambda: nn.softmax_cross_entropy(_z.astype(np.int64), _y), TypeError, ["z", "floating", "int64"]),
    (lambda: nn.softmax_cross_entropy(np.zeros(5), _y), ValueError, ["z", "2 axes", "(5,)"]),
    (lambda: nn.logit_penalty(_z, -1.0), ValueError, ["decay", "-1.0"]),
    (lambda: nn.logit_penalty(_z, "0.1"), TypeError, ["decay", "'0.1'"]),
    (lambda: nn.linear(_x, np.ones((4, 2))), ValueError, ["x", "3 features", "W", "4"]),
    (lambda: nn.linear(_x, np.ones((3, 2)), np.ones(3)), ValueError, ["b", "(2,)", "(3,)"]),
    (lambda: nn.linear(_x.astype(np.float32), np.ones((3, 2))), TypeError, ["x", "float32", "W", "float64"]),
    (lambda: nn.linear([[1.0]], np.ones((1, 2))), TypeError, ["x", "array", "list"]),
    (lambda: nn.linear(np.ones((2, 5, 3)), np.ones((3, 3, 2))), ValueError, ["x", "(2,)", "(3,)"]),
    (lambda: nn.batch_norm(np.ones((1, 3)), np.zeros(3)), ValueError, ["batch", "2", "(1, 3)"]),
    (lambda: nn.batch_norm(_x, np.zeros(3), scale=0.0), ValueError, ["scale", "0.0"]),
    (lambda: nn.batch_norm(_x, np.zeros(3), eps=-1e-5), ValueError, ["eps", "-1e-05"]),
    (lambda: nn.batch_norm(_x, np.zeros(4)), ValueError, ["x", "3 units", "shift", "4"]),
    (lambda: nn.batch_norm(_x, np.zeros(3), stats=(0, 1)), TypeError, ["stats", "BNStats"]),
    (lambda: nn.bn_softmax(_x, np.zeros(3), scale=-2.5), ValueError, ["scale", "-2.5"]),
    (lambda: nn.relu(np.arange(3)), TypeError, ["x", "floating", "int64"]),
    (lambda: MLP(sizes=(3,)), ValueError, ["sizes", "(3,)"]),
    (lambda: MLP(sizes=(3, 1)), ValueError, ["sizes", "2 classes"]),
    (lambda: MLP(sizes=(3, 2), head="softmax"), ValueError, ["head", "'softmax'"]),
    (lambda: MLP(sizes=(3, 2), softmax_scale=0), ValueError, ["softmax_scale", "0"]),
    (lambda: MLP(sizes=(3, 2), logit_decay=float("nan")), ValueError, ["logit_decay", "nan"]),
    (lambda: _net.loss_and_grads(_params, np.ones((5, 4)), _y), ValueError, ["x", "3 features", "(5, 4)"]),
    (lambda: _net.loss_and_grads(_params, _x, np.array([0, 1, 0, 1, 2])), ValueError, ["labels", "[0, 2)", "2"]),
    (lambda: _net.loss_and_grads({**_params, "W1": np.ones((3, 5))}, _x, _y), ValueError, ["W1", "(3, 4)", "(3, 5)"]),
    (lambda: _net.loss_and_grads({"W1": _params["W1"]}, _x, _y), ValueError, ["params", "keys", "b2"]),
    (lambda: _net.loss_and_grads({**_params, "b1": np.zeros(4, np.float32)}, _x, _y), TypeError, ["b1", "float32"]),
    (lambda: _net.logits(_params, _x, stats=(1, 2)), ValueError, ["stats", "1 BNStats", "(1, 2)"]),
    (lambda: _net.logits(_params, _x, stats=(1,)), TypeError, ["stats", "BNStats", "1"]),
    (lambda: _net.init(0), TypeError, ["rng", "Generator", "0"]),
]


@pytest.mark.parametrize("call, kind, fragments", ERRORS, ids=[f"case{i}" for i in range(len(ERRORS))])
def test_bad_input_raises_a_clear_error(call, kind, fragments):
    """Bad shapes, dtypes, labels and hyperparameters raise the named error, naming the argument and value."""
    with pytest.raises(kind) as info:
        call()
    assert type(info.value) is kind
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))
