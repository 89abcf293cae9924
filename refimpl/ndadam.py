r"""ND-Adam: Normalized Direction-preserving Adam (Zhang, Ma, Li & Wu, arXiv:1709.04546).

The parameters split in two. Each *weight vector* :math:`w_i` (the input weights of one
hidden unit, kept at unit norm) follows Algorithm 1 of the paper:

.. math::

    \bar g_t &= \partial L / \partial w_{i}
        && \text{the raw gradient} \\
    g_t &= \bar g_t - (\bar g_t \cdot w_{i,t-1})\, w_{i,t-1}
        && \text{(12) tangent projection} \\
    m_t &= \beta_1 m_{t-1} + (1-\beta_1)\, g_t
        && \text{(8) a vector} \\
    v_t &= \beta_2 v_{t-1} + (1-\beta_2)\, \|g_t\|_2^2
        && \text{(9) one scalar per vector} \\
    \hat m_t &= m_t/(1-\beta_1^t), \quad \hat v_t = v_t/(1-\beta_2^t)
        && \text{(10)} \\
    \bar w_{i,t} &= w_{i,t-1} - \alpha^v\, \hat m_t / (\sqrt{\hat v_t} + \epsilon)
        && \text{(13a)} \\
    w_{i,t} &= \bar w_{i,t} / \|\bar w_{i,t}\|_2
        && \text{(13b)}

Because :math:`\hat v_t` is one number per vector, the step is parallel to :math:`-\hat m_t`:
the *direction* of the momentum is preserved, unlike Adam's per-coordinate rescaling. Every
other parameter (biases, batch-norm shifts, ...) gets plain Adam with its own step size
:math:`\alpha^s`.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Mapping
from typing import Any, NamedTuple

import array_api_compat

from ._core import (NONNEGATIVE, UNIT, Hyper, Optimizer, Tree, _name, bias_corrections, cast_like,
                    leaves, namespace, sqrt, unflatten)
from .adam import adam_update
from .fast import for_arrays_like

__all__ = ["NDAdam", "NDAdamState", "ndadam_vector_update", "unit_vectors"]


class NDAdamState(NamedTuple):
    """State of :class:`NDAdam`: the step count and the moments.

    For a weight-vector parameter, ``m`` has the parameter's shape and ``v`` has size 1 along
    the vector axes (one scalar per vector); for any other parameter both have its shape.
    """

    t: int
    m: Tree
    v: Tree


def ndadam_vector_update(w, g_bar, m, v, *, t, axes, lr, beta1, beta2, eps, eps_hat, xp):
    """One ND-Adam step for the weight vectors of one array (the vectors span ``axes``)."""
    g = g_bar - xp.sum(g_bar * w, axis=axes, keepdims=True) * w                 # (12)
    m = beta1 * m + (1 - beta1) * g                                               # (8)
    v = beta2 * v + (1 - beta2) * xp.sum(g * g, axis=axes, keepdims=True)        # (9)
    bc1, bc2 = bias_corrections(beta1, beta2, t, True)
    if eps_hat:  # the official PyTorch code: eps added to sqrt(v) before bias correction
        w_bar = w - lr * sqrt(bc2, xp) / bc1 * m / (xp.sqrt(v) + eps)
    else:
        m_hat, v_hat = m / bc1, v / bc2                                           # (10)
        w_bar = w - lr * m_hat / (xp.sqrt(v_hat) + eps)                           # (13a)
    return w_bar / xp.sqrt(xp.sum(w_bar * w_bar, axis=axes, keepdims=True)), m, v  # (13b)


def unit_vectors(w, axes, xp):
    """``w`` with every vector along ``axes`` scaled to unit norm (scaled by its largest entry
    first, so that no square under- or overflows)."""
    y = w / xp.max(xp.abs(w), axis=axes, keepdims=True)
    return y / xp.sqrt(xp.sum(y * y, axis=axes, keepdims=True))


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class NDAdam(Optimizer):
    r"""ND-Adam, Algorithm 1 of Zhang et al. (2017).

    Parameters
    ----------
    vector_axes : tuple of int, or dict name -> tuple of int
        Which axes span one weight vector. For a single array, a tuple: ``(0,)`` for a dense
        weight of shape ``(fan_in, units)`` (one vector per unit), ``(1, 2, 3)`` for a PyTorch
        convolution kernel ``(C_out, C_in, kh, kw)`` (one vector per output channel). For a dict,
        ``name -> tuple`` for the weight-vector parameters; every parameter not named is a
        *scalar* parameter and gets Adam. Required: which weights are vectors is a modelling
        decision, not something an optimizer can guess.
    lr_vector, lr_scalar : number, array or callable of t
        :math:`\alpha^v` for the weight vectors (the paper uses 0.05) and :math:`\alpha^s` for
        the rest (0.001).
    beta1, beta2, eps : as in :class:`~refimpl.Adam`, shared by both groups.
    eps_hat : bool
        ``False``: the paper, :math:`\hat m/(\sqrt{\hat v}+\epsilon)`. ``True``: the official
        PyTorch code, :math:`\alpha\sqrt{1-\beta_2^t}/(1-\beta_1^t) \cdot m/(\sqrt{v}+\epsilon)`,
        for both groups (equal to the paper with :math:`\epsilon/\sqrt{1-\beta_2^t}`).
    weight_decay_scalar : number >= 0
        L2 weight decay added to the gradient of the scalar parameters only, as the official
        PyTorch code does (5e-6 there). The weight vectors need none: their norm is fixed.
    normalize_at_start : bool
        ``True``: the initialization of Algorithm 1, :math:`w_{i,0} \leftarrow w_{i,0}/\|w_{i,0}\|`,
        done by the first step before its update (the step then projects the given gradient on
        the tangent space at the unit vector). ``False`` (default): the weights are used as given,
        as both official codes do; :meth:`normalize` does the initialization outside the step.
    compute_dtype : ``None`` or ``"float32"``
        The dtype of the arithmetic, as in :class:`~refimpl.Adam`: ``"float32"`` runs the update
        on float32 copies of parameters, gradients and state (the norms and projections
        included) and rounds the results back to the parameters' dtype. An ``eps`` that rounds
        to 0 in the dtype of the arithmetic (``1e-8`` in float16) raises ``ValueError``. In
        float16 arithmetic the squared norm of (13b) overflows once it exceeds 65504, the largest
        float16 number (a step of more than 255 in one element, for instance); float32
        arithmetic avoids that.

    Notes
    -----
    How the paper and the official code (github zj10/ND-Adam) differ, and how to get each here:

    * Epsilon: the paper (and its TensorFlow code) adds it to :math:`\sqrt{\hat v}`; the PyTorch
      code adds it to :math:`\sqrt{v}` before the bias correction: ``eps_hat=True``.
    * Initial norm: the paper normalizes (:meth:`normalize`, or ``normalize_at_start=True``);
      both codes do not (pass the raw weights; see below for the first step).
    * Layout: TensorFlow kernels ``(kh, kw, C_in, C_out)`` take ``vector_axes=(0, 1, 2)``,
      PyTorch kernels ``(C_out, C_in, kh, kw)`` take ``(1, 2, 3)``: the same vectors.
    * Rates: the paper uses :math:`\alpha^v = 0.05`, :math:`\alpha^s = 0.001`; the PyTorch code
      one rate (0.04) for both, and :math:`\beta_2 = 0.99` in its training script.
    * Weight decay: none in the paper; the PyTorch code's L2 decay, used on the scalar group
      only, is ``weight_decay_scalar`` (on a unit vector the projection would remove it anyway).
    * Step counter: the PyTorch code counts steps per parameter and skips a parameter whose
      ``.grad`` is None; refimpl keeps one :math:`t` (a zero gradient is not a skip: it still
      decays the moments).

    Unit norm at the start. The paper normalizes every weight vector before training; use
    :meth:`normalize` for that. :meth:`step` also accepts vectors of any nonzero norm, as the
    official code (which does not normalize at initialization) does: the projection (12) then
    leaves a radial component, :math:`g\cdot w = (\bar g\cdot w)(1-\|w\|^2)`, on the first step
    only, and (13b) returns unit vectors from then on. A vector of zero norm has no direction and
    raises ``ValueError``.
    """

    vector_axes: Any
    lr_vector: Hyper = 0.05
    lr_scalar: Hyper = 1e-3
    beta1: Hyper = 0.9
    beta2: Hyper = 0.999
    eps: Hyper = 1e-8
    eps_hat: bool = False
    weight_decay_scalar: Hyper = 0.0
    normalize_at_start: bool = False
    compute_dtype: str | None = None

    State = NDAdamState
    _HYPERS = {"lr_vector": (NONNEGATIVE, True), "lr_scalar": (NONNEGATIVE, True), "beta1": (UNIT, False),
               "beta2": (UNIT, False), "eps": (NONNEGATIVE, False), "weight_decay_scalar": (NONNEGATIVE, False)}

    def _check_options(self) -> None:
        self._check_choice("eps_hat", (False, True))
        self._check_choice("normalize_at_start", (False, True))
        axes = self.vector_axes
        specs = axes.items() if isinstance(axes, Mapping) else [("", axes)]
        for key, spec in specs:
            label = "vector_axes" if key == "" else f"vector_axes[{key!r}]"
            if isinstance(axes, Mapping) and not isinstance(key, str):
                raise TypeError(f"vector_axes has a key {key!r} of type {type(key).__name__}; keys must be str")
            if not isinstance(spec, tuple) or not spec or not all(
                    isinstance(a, numbers.Integral) and not isinstance(a, bool) for a in spec):
                raise TypeError(f"{label}={spec!r} must be a non-empty tuple of ints, e.g. (0,)")

    # ------------------------------------------------------------------ which params are vectors

    def _axes_for(self, key: str):
        """The normalized vector axes of parameter ``key``, or ``None`` for a scalar parameter."""
        if isinstance(self.vector_axes, Mapping):
            return self.vector_axes.get(key)
        return self.vector_axes

    def _normalized_axes(self, key: str, p) -> tuple | None:
        axes = self._axes_for(key)
        if axes is None:
            return None
        label = "vector_axes" if key == "" else f"vector_axes[{key!r}]"
        out = []
        for a in axes:
            if not -p.ndim <= a < p.ndim:
                raise ValueError(f"{label}={axes!r} has axis {a}, out of range for {_name('params', key)} "
                                 f"of shape {tuple(p.shape)}")
            out.append(a % p.ndim)
        if len(set(out)) != len(out):
            raise ValueError(f"{label}={axes!r} repeats an axis")
        return tuple(sorted(out))

    def _check_params(self, p: dict) -> None:
        super()._check_params(p)
        if isinstance(self.vector_axes, Mapping):
            if "" in p:
                raise TypeError("vector_axes is a dict but params is a single array; give a tuple of axes")
            unknown = sorted(set(self.vector_axes) - set(p))
            if unknown:
                raise ValueError(f"vector_axes names {unknown}, which are not in params (keys {sorted(p)})")
        self._check_values(p)

    def _check_values(self, p: dict) -> None:
        for key, x in p.items():
            axes = self._normalized_axes(key, x)
            if axes is None:
                continue
            xp = array_api_compat.array_namespace(x)
            if not bool(xp.all(xp.isfinite(x))):
                raise ValueError(f"{_name('params', key)} has a weight vector (along axes {axes}) holding NaN or Inf")
            if not bool(xp.all(xp.max(xp.abs(x), axis=axes) > 0)):
                raise ValueError(f"{_name('params', key)} has a weight vector of zero norm (along axes {axes}); "
                                 f"ND-Adam needs a direction for every vector")

    def _moment_shapes(self, key: str, p) -> dict[str, Any]:
        axes = self._normalized_axes(key, p)
        shape = tuple(p.shape)
        v_shape = shape if axes is None else tuple(1 if i in axes else n for i, n in enumerate(shape))
        return {"m": shape, "v": v_shape}

    # ------------------------------------------------------------------ the update

    def normalize(self, params: Tree) -> Tree:
        """A copy of ``params`` with every weight vector scaled to unit norm (the paper's
        initialization); scalar parameters are returned unchanged."""
        p = leaves(params, "params")
        xp = namespace(params=p)
        self._check_params(p)
        out = {}
        for key, x in p.items():
            axes = self._normalized_axes(key, x)
            out[key] = x if axes is None else unit_vectors(x, axes, xp)
        return unflatten(out, p)

    def _update(self, p, g, s, t, xp):
        lr_vector = self._resolve("lr_vector", t, NONNEGATIVE, p)
        lr_scalar = self._resolve("lr_scalar", t, NONNEGATIVE, p)
        new_p, new_s = {}, {"m": {}, "v": {}}
        for key, theta in p.items():
            c = lambda h: cast_like(h, theta, xp)  # noqa: E731
            m, v = s["m"][key], s["v"][key]
            axes = self._normalized_axes(key, theta)
            if axes is None:
                theta, m, v, _ = for_arrays_like(adam_update, theta)(theta, g[key], m, v, None, t=t, lr=c(lr_scalar), beta1=c(self.beta1),
                                             beta2=c(self.beta2), eps=c(self.eps), eps_hat=self.eps_hat,
                                             weight_decay=c(self.weight_decay_scalar), xp=xp)
            else:
                if self.normalize_at_start and t == 1:  # Algorithm 1's initialization: w_0 / ||w_0||
                    theta = unit_vectors(theta, axes, xp)
                theta, m, v = ndadam_vector_update(theta, g[key], m, v, t=t, axes=axes, lr=c(lr_vector),
                                                   beta1=c(self.beta1), beta2=c(self.beta2), eps=c(self.eps),
                                                   eps_hat=self.eps_hat, xp=xp)
            new_p[key], new_s["m"][key], new_s["v"][key] = theta, m, v
        return new_p, new_s
