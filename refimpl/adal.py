r"""AdaL (Zhang, Zou, Zhao, Ming, Yan, Xia & Cao, arXiv:2107.01525, 2021).

Provenance, plainly: the paper's full text was not available to us. Its abstract says only that
AdaL is an Adam-family method "with a transformation on the original gradient" that amplifies
the gradient early in training and shrinks it later. The update rule below is the one
description we could find, a third-party summary (the *zij* optimizer catalogue), which quotes
no algorithm box of the paper. This module implements that description as its default and
exposes every choice the description leaves open as an option. See the book's AdaL chapter.

.. math::

    \tilde g_t &= \|g_t\|_1\, g_t && \text{the transformation} \\
    m_t &= \beta_1 m_{t-1} + (1-\beta_1)\, \tilde g_t \\
    v_t &= \beta_2 v_{t-1} + (1-\beta_2)\, \tilde g_t^2 \\
    \hat m_t &= m_t/(1-\beta_1^t), \qquad \hat v_t = v_t/(1-\beta_2^t) \\
    \eta_t &= \eta / \sqrt t \\
    \theta_t &= \theta_{t-1} - \eta_t\, (\hat v_t^{-1/2} + \epsilon)\, \hat m_t
        && \text{epsilon in the preconditioner}

The last line divides by zero wherever :math:`\hat v_t = 0` (a coordinate whose gradients were
all zero, or :math:`\beta_2 = 0` and a zero gradient): :math:`\infty\cdot 0` is NaN. This module
guards it: where :math:`\hat v_t = 0` the update is 0.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any, NamedTuple

from ._core import NONNEGATIVE, UNIT, Hyper, Optimizer, Tree, _name, bias_corrections, cast_like, sqrt
from .fast import elementwise, for_arrays_like

__all__ = ["AdaL", "AdaLState", "adal_update", "l1_scales"]


class AdaLState(NamedTuple):
    """State of :class:`AdaL`: the step count and the moments of the transformed gradient."""

    t: int
    m: Tree
    v: Tree


@elementwise  # refimpl/fast.py: the same bits, faster on large arrays
def adal_update(theta, g, m, v, *, c, t, lr, beta1, beta2, eps, eps_mode, lr_decay, bias_correction, xp):
    """One AdaL step on one array, given the scale ``c`` (an l1 norm); returns ``(theta, m, v)``."""
    g_tilde = c * g                                             # the transformation
    m = beta1 * m + (1 - beta1) * g_tilde
    v = beta2 * v + (1 - beta2) * g_tilde * g_tilde
    bc1, bc2 = bias_corrections(beta1, beta2, t, bias_correction)
    m_hat, v_hat = m / bc1, v / bc2
    lr_t = lr / sqrt(t, xp) if lr_decay == "inv_sqrt" else lr
    if eps_mode == "preconditioner":
        seen = v_hat > 0                                        # guard: no 1/sqrt(0) * 0 = NaN
        safe_v_hat = xp.where(seen, v_hat, xp.ones_like(v_hat))
        preconditioner = xp.where(seen, 1 / xp.sqrt(safe_v_hat) + eps, xp.zeros_like(v_hat))
        theta = theta - lr_t * preconditioner * m_hat
    else:
        theta = theta - lr_t * m_hat / (xp.sqrt(v_hat) + eps)
    return theta, m, v


def l1_scales(g: dict, norm: str, batch_ndim: int, xp) -> dict:
    """The factor ``c`` of the transformation for every parameter.

    ``"global"``: one l1 norm over all parameters; ``"per_tensor"``: one per array;
    ``"per_element"``: ``|g|`` itself (then AdaL is Adam fed ``sign(g)|g|^2``). The first
    ``batch_ndim`` axes index independent configurations and are never summed over.
    """
    if norm == "per_element":
        return {key: xp.abs(x) for key, x in g.items()}
    per_tensor = {key: xp.sum(xp.abs(x), axis=tuple(range(batch_ndim, x.ndim)), keepdims=True)
                  for key, x in g.items()}
    if norm == "per_tensor":
        return per_tensor
    total = None
    for key, x in per_tensor.items():
        x = xp.reshape(x, tuple(x.shape[:batch_ndim]))          # drop the summed axes...
        total = x if total is None else total + x
    return {key: xp.reshape(total, tuple(total.shape) + (1,) * (x.ndim - batch_ndim))  # ...and restore them
            for key, x in g.items()}


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class AdaL(Optimizer):
    r"""AdaL as described by its only available secondary source (see the module docstring).

    Parameters
    ----------
    lr : number, array or callable of t
        The step size :math:`\eta`, as in :class:`~refimpl.Adam` (divided by :math:`\sqrt t`
        unless ``lr_decay="none"``).
    beta1 : number or array in [0, 1)
        Decay rate of the first moment of the transformed gradient.
    beta2 : number or array in [0, 1)
        Decay rate of its second moment.
    eps : number or array >= 0
        Where it enters: see ``eps_mode``. (The paper's default values of ``lr``, the betas and
        ``eps`` are not known; these are Adam's, an assumption, stated.)
    norm : ``"global"``, ``"per_tensor"`` or ``"per_element"``
        Scope of the l1 norm in :math:`\tilde g = \|g\|_1 g`. ``"global"`` (default) is the
        literal reading of :math:`g_t \in \mathbb R^d`: one norm over every parameter.
    eps_mode : ``"preconditioner"`` or ``"denominator"``
        ``"preconditioner"`` (default, the description): :math:`(\hat v^{-1/2}+\epsilon)\hat m`,
        guarded to 0 where :math:`\hat v = 0`. ``"denominator"``: Adam's
        :math:`\hat m/(\sqrt{\hat v}+\epsilon)`, finite everywhere for :math:`\epsilon > 0`.
    lr_decay : ``"inv_sqrt"`` or ``"none"``
        ``"inv_sqrt"`` (default, the description): :math:`\eta_t = \eta/\sqrt t` built in.
        ``"none"``: a constant ``lr`` (or your own schedule, as a callable).
    bias_correction : bool
        Correct both moments (default) or neither.
    batch_ndim : int
        For sweeps: the number of leading axes that index independent configurations. The
        norm is taken over the remaining axes only, so params of shape ``(K, d)`` with
        ``batch_ndim=1`` are K independent AdaL runs.
    compute_dtype : ``None`` or ``"float32"``
        The dtype of the arithmetic, as in :class:`~refimpl.Adam`: ``"float32"`` runs the update
        on float32 copies of parameters, gradients and state (the l1 norm included) and rounds
        the results back to the parameters' dtype. An ``eps`` that rounds to 0 in the dtype of
        the arithmetic (``1e-8`` in float16) raises ``ValueError``.
    """

    lr: Hyper = 1e-3
    beta1: Hyper = 0.9
    beta2: Hyper = 0.999
    eps: Hyper = 1e-8
    norm: str = "global"
    eps_mode: str = "preconditioner"
    lr_decay: str = "inv_sqrt"
    bias_correction: bool = True
    batch_ndim: int = 0
    compute_dtype: str | None = None

    State = AdaLState
    _HYPERS = {"lr": (NONNEGATIVE, True), "beta1": (UNIT, False), "beta2": (UNIT, False),
               "eps": (NONNEGATIVE, False)}

    def _check_options(self) -> None:
        self._check_choice("norm", ("global", "per_tensor", "per_element"))
        self._check_choice("eps_mode", ("preconditioner", "denominator"))
        self._check_choice("lr_decay", ("inv_sqrt", "none"))
        self._check_choice("bias_correction", (False, True))
        if isinstance(self.batch_ndim, bool) or not isinstance(self.batch_ndim, numbers.Integral) \
                or self.batch_ndim < 0:
            raise ValueError(f"batch_ndim={self.batch_ndim!r} must be a non-negative int")

    def _check_params(self, p: dict) -> None:
        super()._check_params(p)
        leading = set()
        for key, x in p.items():
            if x.ndim < self.batch_ndim:
                raise ValueError(f"batch_ndim={self.batch_ndim} but {_name('params', key)} has only {x.ndim} axes")
            leading.add(tuple(x.shape[:self.batch_ndim]))
        if len(leading) > 1 and self.norm == "global":
            raise ValueError(f"with batch_ndim={self.batch_ndim}, every parameter must have the same leading "
                             f"shape, got {sorted(leading)}")

    def _moment_shapes(self, key: str, p) -> dict[str, Any]:
        return {"m": tuple(p.shape), "v": tuple(p.shape)}

    def _update(self, p, g, s, t, xp, scales=None):
        lr = self._resolve("lr", t, NONNEGATIVE, p)
        if scales is None:
            scales = l1_scales(g, self.norm, self.batch_ndim, xp)
        new_p, new_s = {}, {"m": {}, "v": {}}
        for key, theta in p.items():
            c = lambda h: cast_like(h, theta, xp)  # noqa: E731
            theta, m, v = for_arrays_like(adal_update, theta)(theta, g[key], s["m"][key], s["v"][key], c=xp.astype(scales[key], theta.dtype), t=t, lr=c(lr),
                                      beta1=c(self.beta1), beta2=c(self.beta2), eps=c(self.eps),
                                      eps_mode=self.eps_mode, lr_decay=self.lr_decay,
                                      bias_correction=self.bias_correction, xp=xp)
            new_p[key], new_s["m"][key], new_s["v"][key] = theta, m, v
        return new_p, new_s

    def _update_keyed(self, p, g, s, t, xp, **shared):
        # The norm spans every parameter, whatever its own hyperparameters: computed once, over all.
        return super()._update_keyed(p, g, s, t, xp, scales=l1_scales(g, self.norm, self.batch_ndim, xp))
