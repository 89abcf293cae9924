r"""A small neural-network library with exact, hand-derived gradients, for the book's experiments.

Every piece is a pure function of arrays, written one equation per line:

* a *layer* has a forward function returning ``(output, cache)`` and a ``*_backward(d_output,
  cache)`` returning the gradients with respect to its input and its parameters; the cache is a
  ``NamedTuple`` holding exactly what the backward pass needs;
* a *loss* returns ``(value, gradient with respect to its input)``;
* :class:`MLP` chains them into a multilayer perceptron with batch normalization, whose
  ``loss_and_grads(params, x, labels)`` returns the gradients as a dict shaped like ``params``,
  ready for any refimpl optimizer.

Shapes. A batch of :math:`B` examples with :math:`n` features has shape ``(..., B, n)``; a weight
matrix has shape ``(..., n_in, n_out)`` and a shift or bias ``(..., n_out)``. Leading axes
``...`` index independent configurations (for example seeds), which never mix: each
configuration's loss and gradients are its own. The leading axes of the data must broadcast to
those of the parameters, so that every gradient has the shape of its parameter (one batch of
shape ``(B, n)`` may be shared by all configurations).

Numerics. The functions keep the dtype of their inputs (all floating inputs of one call must
share it); :meth:`MLP.init` makes float64. The array namespace comes from the inputs, as in the
optimizers. Bad input raises ``ValueError`` or ``TypeError`` naming the argument and its value.

>>> import numpy as np
>>> z = np.array([[2.0, 0.0, 0.0]])
>>> loss, dz = softmax_cross_entropy(z, np.array([0]))
>>> bool(np.allclose(dz, softmax(z) - [1.0, 0.0, 0.0]))   # the gradient is p - onehot
True
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, NamedTuple

import array_api_compat
import numpy as np

from ._core import NONNEGATIVE, Interval, _describe, _is_array, check_value

__all__ = [
    "linear", "linear_backward", "batch_norm", "batch_norm_backward", "bn_softmax", "relu", "relu_backward",
    "softmax", "log_softmax", "softmax_cross_entropy", "logit_penalty", "MLP", "BNStats",
    "LinearCache", "BatchNormCache", "ReluCache",
]

POSITIVE = Interval(0.0, math.inf, low_closed=False)


# ----------------------------------------------------------------------------- checks


def _floating(name: str, x, *, min_ndim: int, like=None) -> None:
    """``x`` is a real floating array with at least ``min_ndim`` axes (and ``like``'s dtype)."""
    if not _is_array(x):
        raise TypeError(f"{name} must be an array, got {_describe(x)}")
    xp = array_api_compat.array_namespace(x)
    if not xp.isdtype(x.dtype, "real floating"):
        raise TypeError(f"{name} must have a real floating dtype, got {_describe(x)}")
    if x.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} axes, got {_describe(x)}")
    if like is not None and x.dtype != like[1].dtype:
        raise TypeError(f"{name} has dtype {x.dtype} but {like[0]} has dtype {like[1].dtype}; give one dtype")


def _leading_fits(name: str, x, lead: tuple, what: str) -> None:
    """The leading (configuration) axes of ``x``, ``x.shape[:-k]``, broadcast to ``lead``."""
    if len(x) > len(lead) or any(a not in (1, b) for a, b in zip(reversed(x), reversed(lead))):
        raise ValueError(f"{name} has leading axes {tuple(x)}, which do not broadcast to the leading axes "
                         f"{tuple(lead)} of {what}")


def _hyper(name: str, value, interval: Interval) -> None:
    """A fixed hyperparameter: a finite real number in ``interval`` (arrays are not accepted)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {_describe(value)}")
    check_value(name, value, interval)


def _check_labels(labels, batch_shape: tuple, n_classes: int) -> None:
    """Integer class indices of shape ``batch_shape`` (leading axes may broadcast), each in [0, C)."""
    if not _is_array(labels):
        raise TypeError(f"labels must be an integer array, got {_describe(labels)}")
    xp = array_api_compat.array_namespace(labels)
    if not xp.isdtype(labels.dtype, "integral"):
        raise TypeError(f"labels must have an integer dtype, got {_describe(labels)}")
    if labels.ndim < 1 or labels.shape[-1] != batch_shape[-1]:
        raise ValueError(f"labels must have shape (..., {batch_shape[-1]}), one per example of the batch, "
                         f"got {_describe(labels)}")
    _leading_fits("labels", labels.shape[:-1], batch_shape[:-1], "the logits")
    ok = (labels >= 0) & (labels < n_classes)
    if not bool(xp.all(ok)):
        first = int(labels[~ok][0])
        raise ValueError(f"labels must lie in [0, {n_classes}) for {n_classes} classes; found label {first}")


# ----------------------------------------------------------------------------- linear layer


class LinearCache(NamedTuple):
    """What :func:`linear_backward` needs: the input, the weights, and whether there was a bias."""

    x: Any
    W: Any
    has_bias: bool


def linear(x, W, b=None):
    r"""The affine map :math:`y = xW + b` on a batch (rows of ``x`` are examples).

    ``x``: ``(..., B, n_in)``; ``W``: ``(..., n_in, n_out)``; ``b``: ``(..., n_out)`` or ``None``.
    Returns ``(y, cache)`` with ``y`` of shape ``(..., B, n_out)``.
    """
    _floating("W", W, min_ndim=2)
    _floating("x", x, min_ndim=2, like=("W", W))
    if x.shape[-1] != W.shape[-2]:
        raise ValueError(f"x has {x.shape[-1]} features (shape {tuple(x.shape)}) but W expects "
                         f"{W.shape[-2]} (shape {tuple(W.shape)})")
    _leading_fits("x", x.shape[:-2], W.shape[:-2], "W")
    y = x @ W
    if b is not None:
        _floating("b", b, min_ndim=1, like=("W", W))
        if tuple(b.shape) != tuple(W.shape[:-2]) + (W.shape[-1],):
            raise ValueError(f"b must have shape {tuple(W.shape[:-2]) + (W.shape[-1],)} to match W "
                             f"{tuple(W.shape)}, got {_describe(b)}")
        y = y + b[..., None, :]
    return y, LinearCache(x, W, b is not None)


def linear_backward(dy, cache: LinearCache):
    r"""Gradients of :func:`linear`: :math:`\partial x = \partial y\, W^\top`,
    :math:`\partial W = x^\top \partial y`, :math:`\partial b = \sum_{\text{batch}} \partial y`.

    Returns ``(dx, dW, db)``; ``db`` is ``None`` when the layer has no bias. ``dW`` and ``db``
    have the shapes of ``W`` and ``b``; ``dx`` has the shape of ``y`` with ``n_in`` features (with
    one ``x`` shared by several configurations, each configuration's gradient for its copy).
    """
    x, W, has_bias = cache
    dx = dy @ W.mT
    dW = x.mT @ dy
    db = array_api_compat.array_namespace(dy).sum(dy, axis=-2) if has_bias else None
    return dx, dW, db


# ----------------------------------------------------------------------------- batch normalization


class BNStats(NamedTuple):
    """The per-unit mean and (biased) variance that a batch-normalization layer divides by."""

    mean: Any
    var: Any


class BatchNormCache(NamedTuple):
    """What :func:`batch_norm_backward` needs. ``batch_stats`` is False when fixed statistics
    were given (evaluation), which makes the layer affine in its input."""

    x_hat: Any
    inv_std: Any
    scale: float
    batch_stats: bool
    stats: BNStats


def batch_norm(x, shift, *, scale=1.0, eps=1e-5, stats=None):
    r"""Batch normalization with a fixed scale :math:`\gamma` and a learnable shift :math:`\beta`.

    Over the batch axis (``-2``), unit by unit:

    .. math::

        \mu &= \tfrac1B \textstyle\sum_b x_b \\
        \sigma^2 &= \tfrac1B \textstyle\sum_b (x_b - \mu)^2 \\
        \hat x_b &= (x_b - \mu) / \sqrt{\sigma^2 + \epsilon} \\
        y_b &= \gamma\, \hat x_b + \beta

    ``stats=None`` (training) uses the batch's own :math:`\mu, \sigma^2` (the biased variance,
    as PyTorch and TensorFlow normalize); ``stats=BNStats(mean, var)`` (evaluation) uses fixed
    ones instead. refimpl's choice for evaluation is the full-batch statistics of the training
    set, :meth:`MLP.bn_statistics`, computed exactly in one pass, rather than running averages
    of mini-batch statistics; see :class:`MLP`.

    The scale :math:`\gamma` is a fixed hyperparameter (a positive number), not a parameter:
    ND-Adam's paper removes BN's scale factors in rectifier networks and fixes BN-Softmax's to
    :math:`\gamma_C` (see :func:`bn_softmax`). ``x``: ``(..., B, n)``; ``shift``: ``(..., n)``.
    Returns ``(y, cache)``.
    """
    _floating("shift", shift, min_ndim=1)
    _floating("x", x, min_ndim=2, like=("shift", shift))
    if x.shape[-1] != shift.shape[-1]:
        raise ValueError(f"x has {x.shape[-1]} units (shape {tuple(x.shape)}) but shift has "
                         f"{shift.shape[-1]} (shape {tuple(shift.shape)})")
    _leading_fits("x", x.shape[:-2], shift.shape[:-1], "shift")
    _hyper("scale", scale, POSITIVE)
    _hyper("eps", eps, NONNEGATIVE)
    xp = array_api_compat.array_namespace(x, shift)
    batch_stats = stats is None
    if batch_stats:
        if x.shape[-2] < 2:
            raise ValueError(f"batch statistics need a batch of at least 2 examples, got x of shape "
                             f"{tuple(x.shape)}")
        mean = xp.mean(x, axis=-2, keepdims=True)                     # mu
        var = xp.mean((x - mean) ** 2, axis=-2, keepdims=True)        # sigma^2
        stats = BNStats(mean[..., 0, :], var[..., 0, :])
    else:
        if not isinstance(stats, BNStats):
            raise TypeError(f"stats must be a BNStats(mean, var) or None, got {_describe(stats)}")
        for name, s in zip(("stats.mean", "stats.var"), stats):
            _floating(name, s, min_ndim=1, like=("x", x))
            if s.shape[-1] != x.shape[-1]:
                raise ValueError(f"{name} has {s.shape[-1]} units but x has {x.shape[-1]}")
        mean, var = stats.mean[..., None, :], stats.var[..., None, :]
    inv_std = 1 / xp.sqrt(var + eps)
    x_hat = (x - mean) * inv_std                                      # x_hat
    y = scale * x_hat + shift[..., None, :]                           # y
    return y, BatchNormCache(x_hat, inv_std, scale, batch_stats, stats)


def batch_norm_backward(dy, cache: BatchNormCache):
    r"""Gradients of :func:`batch_norm`.

    With batch statistics, :math:`\mu` and :math:`\sigma^2` depend on every example, and with
    :math:`g = \gamma\, \partial y` (the book's chapter "A generalization experiment" derives it):

    .. math::

        \partial x_b = \frac{1}{\sqrt{\sigma^2+\epsilon}}
            \Big(g_b - \tfrac1B \textstyle\sum_{b'} g_{b'}
            - \hat x_b \cdot \tfrac1B \textstyle\sum_{b'} g_{b'} \hat x_{b'}\Big),
        \qquad \partial\beta = \textstyle\sum_b \partial y_b .

    With fixed statistics the layer is affine and :math:`\partial x_b = g_b/\sqrt{\sigma^2+\epsilon}`.
    Returns ``(dx, dshift)``.
    """
    xp = array_api_compat.array_namespace(dy)
    x_hat, inv_std, scale, batch_stats, _ = cache
    dshift = xp.sum(dy, axis=-2)
    g = scale * dy
    if not batch_stats:
        return inv_std * g, dshift
    g_mean = xp.mean(g, axis=-2, keepdims=True)
    gx_mean = xp.mean(g * x_hat, axis=-2, keepdims=True)
    dx = inv_std * (g - g_mean - x_hat * gx_mean)
    return dx, dshift


def bn_softmax(a, shift, *, scale, eps=1e-5, stats=None):
    r"""BN-Softmax (Zhang et al. 2017, Section 4): batch normalization of the logits with one
    fixed scale :math:`\gamma_C` shared by all classes and a learnable shift per class,

    .. math::

        z_{b,c} = \gamma_C\, \frac{a_{b,c} - \mu_c}{\sqrt{\sigma_c^2 + \epsilon}} + \beta_c ,

    to be followed by the softmax cross-entropy. In training mode each class's logits have batch
    mean :math:`\beta_c` and standard deviation :math:`\gamma_C\sigma_c/\sqrt{\sigma_c^2+\epsilon}
    < \gamma_C`, whatever the weights below: :math:`\gamma_C` sets the scale of the logits (the
    paper uses 2.5 on CIFAR-10 and 1 on CIFAR-100; the official TensorFlow code uses
    :math:`\epsilon = 10^{-3}`). The backward pass is :func:`batch_norm_backward`.
    """
    return batch_norm(a, shift, scale=scale, eps=eps, stats=stats)


# ----------------------------------------------------------------------------- ReLU


class ReluCache(NamedTuple):
    """What :func:`relu_backward` needs: where the input was positive."""

    positive: Any


def relu(x):
    r""":math:`y = \max(x, 0)`, elementwise. Returns ``(y, cache)``."""
    _floating("x", x, min_ndim=0)
    xp = array_api_compat.array_namespace(x)
    positive = x > 0
    return xp.where(positive, x, xp.zeros_like(x)), ReluCache(positive)


def relu_backward(dy, cache: ReluCache):
    r""":math:`\partial x = \partial y \cdot [x > 0]`: the derivative at 0 is taken to be 0, as in
    PyTorch (the subgradient at the kink)."""
    xp = array_api_compat.array_namespace(dy)
    return xp.where(cache.positive, dy, xp.zeros_like(dy))


# ----------------------------------------------------------------------------- softmax and losses


def log_softmax(z):
    r""":math:`\log p_c = z_c - \log\sum_{c'} e^{z_{c'}}` along the last axis, computed as
    :math:`(z_c - m) - \log\sum_{c'} e^{z_{c'} - m}` with :math:`m = \max_c z_c`, so that no
    exponential overflows."""
    _floating("z", z, min_ndim=1)
    xp = array_api_compat.array_namespace(z)
    shifted = z - xp.max(z, axis=-1, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=-1, keepdims=True))


def softmax(z):
    r""":math:`p_c = e^{z_c} / \sum_{c'} e^{z_{c'}}` along the last axis (shifted by the max)."""
    _floating("z", z, min_ndim=1)
    xp = array_api_compat.array_namespace(z)
    e = xp.exp(z - xp.max(z, axis=-1, keepdims=True))
    return e / xp.sum(e, axis=-1, keepdims=True)


def _one_hot(labels, n_classes: int, dtype, xp):
    classes = xp.arange(n_classes, dtype=labels.dtype, device=array_api_compat.device(labels))
    return xp.astype(labels[..., None] == classes, dtype)


def softmax_cross_entropy(z, labels):
    r"""The mean cross-entropy of the softmax of logits ``z`` against integer ``labels``.

    For logits ``z`` of shape ``(..., B, C)`` and labels :math:`y_b` of shape ``(..., B)``:

    .. math::

        L &= \tfrac1B \textstyle\sum_b \big(\log\sum_c e^{z_{b,c}} - z_{b,y_b}\big) \\
        \partial L/\partial z_{b,c} &= \tfrac1B\,\big(p_{b,c} - [c = y_b]\big),
        \qquad p_b = \mathrm{softmax}(z_b)

    Returns ``(L, dL/dz)``; ``L`` has shape ``(...)`` (one loss per configuration).
    """
    _floating("z", z, min_ndim=2)
    _check_labels(labels, tuple(z.shape[:-1]), z.shape[-1])
    xp = array_api_compat.array_namespace(z)
    batch = z.shape[-2]
    log_p = log_softmax(z)
    onehot = _one_hot(labels, z.shape[-1], z.dtype, xp)
    loss = -xp.sum(onehot * log_p, axis=(-2, -1)) / batch
    dz = (xp.exp(log_p) - onehot) / batch
    return loss, dz


def logit_penalty(z, decay):
    r"""The L2 penalty on the logits of the official ND-Adam PyTorch code (``main.py``),
    ``logitDecay * 0.5 * mean(sum(z * z, 1))``:

    .. math::

        P = \tfrac{\lambda_z}{2} \cdot \tfrac1B \textstyle\sum_b \|z_b\|_2^2, \qquad
        \partial P/\partial z_b = \lambda_z z_b / B .

    ``z``: ``(..., B, C)``; ``decay`` :math:`\lambda_z \ge 0` (the code uses :math:`10^{-3}`).
    Returns ``(P, dP/dz)``, ``P`` of shape ``(...)``.
    """
    _floating("z", z, min_ndim=2)
    _hyper("decay", decay, NONNEGATIVE)
    xp = array_api_compat.array_namespace(z)
    batch = z.shape[-2]
    value = decay / 2 * xp.sum(z * z, axis=(-2, -1)) / batch
    return value, decay * z / batch


# ----------------------------------------------------------------------------- the MLP


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class MLP:
    r"""A multilayer perceptron with batch normalization, with exact gradients.

    ``sizes = (n_in, h_1, ..., h_L, C)``. Hidden layer :math:`l = 1..L` is linear without bias,
    then batch normalization with scale 1 and a learnable shift :math:`\beta_l`, then ReLU; the
    head maps to :math:`C` logits:

    .. math::

        h_0 &= x \\
        h_l &= \mathrm{relu}\big(\mathrm{BN}(h_{l-1} W_l) + \beta_l\big), \qquad l = 1..L \\
        z &= h_L W_{L+1} + \beta_{L+1} && \text{head} = \texttt{"plain"} \\
        z &= \gamma_C\,\mathrm{BN}(h_L W_{L+1}) + \beta_{L+1} && \text{head} = \texttt{"bn_softmax"} \\
        \mathcal L &= \mathrm{CE}(z, y) + \tfrac{\lambda_z}{2}\, \tfrac1B\textstyle\sum_b \|z_b\|^2
            + \tfrac{\lambda}{2} \textstyle\sum_{l} \|W_l\|_F^2

    Parameters are ``params["W1"], ..., params[f"W{L+1}"]`` (shape ``(..., fan_in, fan_out)``)
    and ``params["b1"], ...`` (the shifts :math:`\beta_l`, shape ``(..., fan_out)``; in the plain
    head the last one is the ordinary bias). A linear layer before BN has no bias: BN subtracts
    the mean, so a bias would do nothing.

    Fields
    ------
    sizes : tuple of int
        Layer widths, input first, classes last; at least ``(n_in, C)``.
    head : ``"plain"`` or ``"bn_softmax"``
        The logits: an affine layer, or BN-Softmax (:func:`bn_softmax`) with scale ``softmax_scale``.
    softmax_scale : float > 0
        :math:`\gamma_C` (used by ``"bn_softmax"`` only).
    logit_decay : float >= 0
        :math:`\lambda_z` of the official PyTorch code's L2 logit penalty (:func:`logit_penalty`).
    weight_decay : float >= 0
        :math:`\lambda`, an L2 penalty on the weight matrices only (not the shifts), as the
        official TensorFlow code adds to the loss of its SGD baseline.
    bn_eps : float >= 0
        :math:`\epsilon` of every batch-normalization layer.

    Batch statistics and evaluation. :meth:`loss_and_grads` and :meth:`logits` without ``stats``
    normalize with the batch's own statistics (training mode). For evaluation, refimpl uses
    *full-batch statistics*: :meth:`bn_statistics` runs the training set through the network in
    training mode once and returns each BN layer's mean and variance, which :meth:`logits` then
    uses for any input. These are the exact population statistics of the training set for the
    current weights, deterministic and with no extra state to carry through training. (The
    official code keeps running averages of mini-batch statistics instead; those lag behind the
    weights and depend on the batch order.) By construction, ``logits(params, x,
    bn_statistics(params, x))`` equals the training-mode ``logits(params, x)``.

    Scale invariance. Each hidden weight matrix, and with BN-Softmax the head's too, is followed
    by BN: scaling the incoming weight vector of one unit (a column of :math:`W_l`) by
    :math:`c > 0` is the same as replacing that unit's :math:`\epsilon` by :math:`\epsilon/c^2`.
    With :math:`\epsilon = 0` the loss is invariant, the weight vectors live on the sphere, and
    ND-Adam applies; :attr:`vector_axes` names them.

    Examples
    --------
    >>> import numpy as np
    >>> from refimpl.nn import MLP
    >>> net = MLP(sizes=(4, 8, 3))
    >>> params = net.init(np.random.default_rng(0))
    >>> sorted(params), params["W1"].shape, params["W1"].dtype
    (['W1', 'W2', 'b1', 'b2'], (4, 8), dtype('float64'))
    >>> x, y = np.random.default_rng(1).normal(size=(5, 4)), np.array([0, 1, 2, 0, 1])
    >>> loss, grads = net.loss_and_grads(params, x, y)
    >>> all(grads[k].shape == params[k].shape for k in params)
    True
    >>> net.vector_axes
    {'W1': (-2,)}
    """

    sizes: tuple
    head: str = "plain"
    softmax_scale: float = 1.0
    logit_decay: float = 0.0
    weight_decay: float = 0.0
    bn_eps: float = 1e-5

    def __post_init__(self):
        sizes = self.sizes
        if (not isinstance(sizes, (tuple, list)) or len(sizes) < 2 or not all(
                isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 1 for n in sizes)):
            raise ValueError(f"sizes={sizes!r} must be a tuple of at least two positive ints (n_in, ..., n_classes)")
        if sizes[-1] < 2:
            raise ValueError(f"sizes={sizes!r} must end with at least 2 classes")
        object.__setattr__(self, "sizes", tuple(int(n) for n in sizes))
        if self.head not in ("plain", "bn_softmax"):
            raise ValueError(f"head={self.head!r} must be 'plain' or 'bn_softmax'")
        _hyper("softmax_scale", self.softmax_scale, POSITIVE)
        _hyper("logit_decay", self.logit_decay, NONNEGATIVE)
        _hyper("weight_decay", self.weight_decay, NONNEGATIVE)
        _hyper("bn_eps", self.bn_eps, NONNEGATIVE)

    @property
    def n_layers(self) -> int:
        """The number of weight matrices, :math:`L + 1`."""
        return len(self.sizes) - 1

    @property
    def vector_axes(self) -> dict:
        """The weights whose columns (one per unit, the incoming weight vectors) feed a BN
        layer, as ``NDAdam(vector_axes=...)`` takes them: every hidden ``W``, and the head's
        with BN-Softmax. Axis ``-2`` works with and without leading configuration axes."""
        n = self.n_layers if self.head == "bn_softmax" else self.n_layers - 1
        return {f"W{l}": (-2,) for l in range(1, n + 1)}

    def init(self, rng) -> dict:
        """Float64 parameters: weights drawn from :math:`N(0, 1/\\text{fan\\_in})` (as in the
        official TensorFlow code), shifts zero. ``rng`` is a ``numpy.random.Generator``.
        (ND-Adam's paper then normalizes each weight vector: ``NDAdam.normalize``.)"""
        if not hasattr(rng, "standard_normal"):
            raise TypeError(f"rng must be a numpy.random.Generator, got {_describe(rng)}")
        params = {}
        for l, (fan_in, fan_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:]), start=1):
            params[f"W{l}"] = rng.standard_normal((fan_in, fan_out)) / math.sqrt(fan_in)
            params[f"b{l}"] = np.zeros(fan_out)
        return params

    # ------------------------------------------------------------------ checks

    def _check(self, params, x, labels=None) -> None:
        if not isinstance(params, dict):
            raise TypeError(f"params must be a dict of arrays (from MLP.init), got {_describe(params)}")
        expected = [f"{kind}{l}" for l in range(1, self.n_layers + 1) for kind in ("W", "b")]
        if sorted(params) != sorted(expected):
            raise ValueError(f"params must have the keys {sorted(expected)} for sizes={self.sizes}, got {sorted(params)}")
        W1 = params["W1"]
        _floating("params['W1']", W1, min_ndim=2)
        lead = tuple(W1.shape[:-2])
        for l, (fan_in, fan_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:]), start=1):
            for key, shape in ((f"W{l}", (fan_in, fan_out)), (f"b{l}", (fan_out,))):
                _floating(f"params[{key!r}]", params[key], min_ndim=len(shape), like=("params['W1']", W1))
                if tuple(params[key].shape) != lead + shape:
                    raise ValueError(f"params[{key!r}] must have shape {lead + shape} for sizes={self.sizes}, "
                                     f"got {_describe(params[key])}")
        _floating("x", x, min_ndim=2, like=("params['W1']", W1))
        if x.shape[-1] != self.sizes[0]:
            raise ValueError(f"x must have {self.sizes[0]} features (last axis), got {_describe(x)}")
        _leading_fits("x", x.shape[:-2], lead, "params")
        if labels is not None:
            _check_labels(labels, lead + (x.shape[-2],), self.sizes[-1])

    # ------------------------------------------------------------------ forward and backward

    def _forward(self, params, x, stats):
        """The logits and every layer's cache; ``stats`` is None or one BNStats per BN layer."""
        caches, h, bn_layer = [], x, 0
        for l in range(1, self.n_layers):
            a, lin = linear(h, params[f"W{l}"])
            u, bn = batch_norm(a, params[f"b{l}"], eps=self.bn_eps, stats=None if stats is None else stats[bn_layer])
            h, act = relu(u)
            caches.append((lin, bn, act))
            bn_layer += 1
        out = self.n_layers
        if self.head == "plain":
            z, lin = linear(h, params[f"W{out}"], params[f"b{out}"])
            caches.append((lin, None, None))
        else:
            a, lin = linear(h, params[f"W{out}"])
            z, bn = bn_softmax(a, params[f"b{out}"], scale=self.softmax_scale, eps=self.bn_eps,
                               stats=None if stats is None else stats[bn_layer])
            caches.append((lin, bn, None))
        return z, caches

    def _backward(self, dz, caches) -> dict:
        """Gradients of every parameter, from the gradient of the loss with respect to the logits."""
        grads, dh = {}, dz
        for l in range(self.n_layers, 0, -1):
            lin, bn, act = caches[l - 1]
            du = dh if act is None else relu_backward(dh, act)
            if bn is None:                                   # the plain head: z = h W + b
                dh, grads[f"W{l}"], grads[f"b{l}"] = linear_backward(du, lin)
            else:                                            # u = BN(h W) + beta
                da, grads[f"b{l}"] = batch_norm_backward(du, bn)
                dh, grads[f"W{l}"], _ = linear_backward(da, lin)
        return {key: grads[key] for key in sorted(grads, key=_layer_order)}

    # ------------------------------------------------------------------ public API

    def loss_and_grads(self, params: dict, x, labels):
        r"""The training loss :math:`\mathcal L` on the batch ``(x, labels)`` (batch statistics)
        and its exact gradient, a dict shaped like ``params``.

        ``x``: ``(..., B, n_in)``; ``labels``: integers of shape ``(..., B)``. With leading
        configuration axes the loss has shape ``(...)`` and each configuration's gradient is that
        of its own loss.
        """
        self._check(params, x, labels)
        xp = array_api_compat.array_namespace(x)
        z, caches = self._forward(params, x, None)
        ce, dz = softmax_cross_entropy(z, labels)
        penalty, dz_penalty = logit_penalty(z, self.logit_decay)
        grads = self._backward(dz + dz_penalty, caches)
        loss = ce + penalty
        if self.weight_decay != 0:
            for l in range(1, self.n_layers + 1):
                W = params[f"W{l}"]
                loss = loss + self.weight_decay / 2 * xp.sum(W * W, axis=(-2, -1))
                grads[f"W{l}"] = grads[f"W{l}"] + self.weight_decay * W
        return loss, grads

    def logits(self, params: dict, x, stats=None):
        """The logits for ``x``: with the batch's own statistics (``stats=None``, training mode),
        or with fixed ones (a tuple of :class:`BNStats`, one per BN layer, from :meth:`bn_statistics`)."""
        self._check(params, x)
        n_bn = self.n_layers - (self.head == "plain")
        if stats is not None and (not isinstance(stats, tuple) or len(stats) != n_bn):
            raise ValueError(f"stats must be a tuple of {n_bn} BNStats (from MLP.bn_statistics), got {_describe(stats)}")
        return self._forward(params, x, stats)[0]

    def bn_statistics(self, params: dict, x) -> tuple:
        """The mean and variance of every BN layer on the whole of ``x`` (e.g. the training set),
        in training mode: the fixed statistics :meth:`logits` uses for evaluation."""
        self._check(params, x)
        _, caches = self._forward(params, x, None)
        return tuple(bn.stats for _, bn, _ in caches if bn is not None)


def _layer_order(key: str):
    return int(key[1:]), key[0]

