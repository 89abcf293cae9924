r"""Stochastic gradient descent with momentum, as torch.optim.SGD computes it.

The baseline the ND-Adam paper compares against. With weight decay :math:`\lambda`, momentum
:math:`\mu`, dampening :math:`\tau` and step size :math:`\alpha`:

.. math::

    g_t &= \nabla f_t(\theta_{t-1}) + \lambda\,\theta_{t-1} \\
    b_t &= g_1 \text{ if } t = 1 \text{ else } \mu\, b_{t-1} + (1-\tau)\, g_t \\
    d_t &= g_t + \mu\, b_t \text{ (Nesterov) or } b_t \\
    \theta_t &= \theta_{t-1} - \alpha\, d_t

Note the first step: the buffer starts at :math:`g_1` itself, not at :math:`(1-\tau) g_1`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import array_api_compat

from ._core import NONNEGATIVE, Hyper, Interval, Optimizer, Tree, cast_like, is_zero
from .fast import elementwise, for_arrays_like

__all__ = ["SGD", "SGDState", "sgd_update"]


def _all(h, predicate) -> bool:
    """``predicate`` holds for the number ``h``, for every element of the array ``h``, or for every
    value of the per-parameter dict ``h``."""
    if isinstance(h, dict):
        return all(_all(x, predicate) for x in h.values())
    if isinstance(h, (int, float)):
        return bool(predicate(h))
    xp = array_api_compat.array_namespace(h)
    return bool(xp.all(predicate(h)))


class SGDState(NamedTuple):
    """State of :class:`SGD`: the step count and the momentum buffer (``None`` without momentum)."""

    t: int
    momentum_buffer: Tree | None


@elementwise  # refimpl/fast.py: the same bits, faster on large arrays
def sgd_update(theta, g, b, *, t, lr, momentum, dampening, nesterov, weight_decay):
    """One SGD step on one array; returns ``(theta, b)``. ``b`` is ``None`` without momentum."""
    if not is_zero(weight_decay):
        g = g + weight_decay * theta                    # L2 penalty in the gradient
    if b is not None:
        b = g if t == 1 else momentum * b + (1 - dampening) * g
        g = g + momentum * b if nesterov else b
    theta = theta - lr * g
    return theta, b


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class SGD(Optimizer):
    """SGD with optional momentum, dampening, Nesterov momentum and L2 weight decay.

    Semantics of ``torch.optim.SGD``: ``lr`` may be a schedule (callable of ``t``);
    ``nesterov=True`` needs ``momentum > 0`` and ``dampening == 0``, as in PyTorch.
    """

    lr: Hyper = 1e-3
    momentum: Hyper = 0.0
    dampening: Hyper = 0.0
    nesterov: bool = False
    weight_decay: Hyper = 0.0

    State = SGDState
    _HYPERS = {"lr": (NONNEGATIVE, True), "momentum": (NONNEGATIVE, False),
               "dampening": (Interval(0.0, 1.0, True, True), False), "weight_decay": (NONNEGATIVE, False)}

    def _check_options(self) -> None:
        self._check_choice("nesterov", (False, True))
        if self.nesterov and not (_all(self.momentum, lambda x: x > 0) and _all(self.dampening, lambda x: x == 0)):
            raise ValueError(f"nesterov=True needs momentum > 0 and dampening = 0, got "
                             f"momentum={self.momentum!r}, dampening={self.dampening!r}")

    def _moment_shapes(self, key: str, p) -> dict[str, Any]:
        return {"momentum_buffer": None if is_zero(self._value("momentum", key)) else tuple(p.shape)}

    def _update(self, p, g, s, t, xp):
        lr = self._resolve("lr", t, NONNEGATIVE, p)
        buffers = s.get("momentum_buffer")  # None: no momentum (for these parameters)
        new_p, new_b = {}, ({} if buffers is not None else None)
        for key, theta in p.items():
            c = lambda h: cast_like(h, theta, xp)  # noqa: E731
            theta, b = for_arrays_like(sgd_update, theta)(theta, g[key], None if buffers is None else buffers[key], t=t, lr=c(lr),
                                  momentum=c(self.momentum), dampening=c(self.dampening),
                                  nesterov=self.nesterov, weight_decay=c(self.weight_decay))
            new_p[key] = theta
            if new_b is not None:
                # At t = 1 the buffer is g itself: copy it, so that the state does not change
                # when the caller later writes into its gradient array.
                new_b[key] = xp.asarray(b, copy=True) if b is g[key] else b
        return new_p, {"momentum_buffer": new_b}
