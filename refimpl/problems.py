"""Toy objectives with exact gradients, written for batches of configurations.

Each function takes its array namespace from its input, so a batch made on the GPU stays on the
GPU. The leading axes of ``x`` index configurations; the last axis holds the coordinates.
"""

from __future__ import annotations

import array_api_compat

__all__ = ["rosenbrock", "quadratic"]


def rosenbrock(x, a=1.0, b=100.0):
    """Rosenbrock's function ``(a - x0)^2 + b (x1 - x0^2)^2`` and its gradient.

    ``x`` has shape ``(..., 2)``; returns ``(f, grad)`` with shapes ``(...)`` and ``(..., 2)``.
    The minimum is 0, at ``(a, a^2)``.
    """
    xp = array_api_compat.array_namespace(x)
    x0, x1 = x[..., 0], x[..., 1]
    f = (a - x0) ** 2 + b * (x1 - x0**2) ** 2
    grad = xp.stack([-2 * (a - x0) - 4 * b * x0 * (x1 - x0**2), 2 * b * (x1 - x0**2)], axis=-1)
    return f, grad


def quadratic(x, h):
    """The separable quadratic ``0.5 * sum(h * x^2)`` and its gradient ``h * x``.

    ``h`` (the curvatures) broadcasts against ``x``; returns ``(f, grad)``.
    """
    xp = array_api_compat.array_namespace(x)
    return 0.5 * xp.sum(h * x * x, axis=-1), h * x
