"""The default probe: initial parameters and a gradient stream that tell the conventions apart.

Every number is a small integer times a power of two, produced by a fixed linear congruential
generator in Python integers: exact in float32 and float64 and the same on every platform and
NumPy version (NumPy's random distributions may change between versions; this does not).
"""

from __future__ import annotations

import numpy as np

__all__ = ["probe", "lcg_uniforms"]


def lcg_uniforms(n: int, seed: int = 0) -> list[float]:
    """``n`` numbers in [-0.5, 0.5), each a multiple of 2**-16 (Numerical Recipes' LCG)."""
    x = (seed * 2654435761 + 12345) % 2**32
    out = []
    for _ in range(n):
        x = (1664525 * x + 1013904223) % 2**32
        out.append((x >> 16) / 2.0**16 - 0.5)
    return out


def probe(steps: int = 100, *, dtype="float64", seed: int = 0, vector_axes=None):
    """``(params, grads)`` for :func:`~refimpl.testing.diagnose`: a dict ``{"w": (2, 3), "b": (2,)}``
    and a list of ``steps`` gradients. Each coordinate stresses one convention:

    * ``w[0, 0]``: a steady positive gradient near 1 (bias correction, the step counter);
    * ``w[0, 1]``: a gradient alternating in sign (the first moment cancels: beta1 vs beta2);
    * ``w[0, 2]``: a gradient halving every 4 steps (the second moment shrinks: AMSGrad);
    * ``w[1, 0]``, ``w[1, 1]``: gradients near 7e-9 and 1.2e-7, where epsilon (1e-8 in
      PyTorch and optax, 1e-7 in Keras) is comparable to sqrt(v): epsilon's placement;
    * ``w[1, 2]``: zero for 10 steps, then noise (zero gradients still decay the moments);
    * ``b``: a small drift, and noise with a spike every 17 steps (AMSGrad's memory).

    The parameters are of order 1, so weight decay (L2, decoupled, lr-coupled or not) shows,
    except ``w[1, 0]`` and ``w[1, 1]``, which start at 0: there an L2 penalty cannot hide the
    tiny gradients at the first step, so epsilon's placement shows even with weight decay.

    ``dtype`` (``"float64"``, ``"float32"``, ``"float16"``, or ``"bfloat16"`` through
    ``ml_dtypes``): every value is exact in float32 and float64; in the narrower formats the
    values are rounded to the format (in float16 the gradients near epsilon underflow to 0, so
    epsilon's placement is invisible there).

    ``vector_axes`` (ND-Adam: ``{"w": (0,)}``, or one tuple for every array): the weight vectors
    of the candidate. ND-Adam's second moment is one number per vector, so epsilon's placement
    shows only where a whole vector's gradient is near epsilon: the first vector (index 0 along
    the other axes) of each parameter that holds several vectors gets its gradients times
    ``2**-27`` (when every vector parameter is one vector, the first such parameter), the
    coordinates of the other vectors that were near epsilon are brought up to order 1 (times
    ``2**24``), so that they show the step size, and the last element of each scalar parameter
    is multiplied by ``2**-25``. No initial vector has unit norm, so a normalization at the start
    shows at the first step.
    """
    from ._run import resolve_dtype
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps={steps!r} must be a positive int")
    dt = resolve_dtype(dtype)
    noise = lcg_uniforms(8 * steps, seed)
    params = {"w": np.array([[0.5, -1.5, 2.0], [0.0, 0.0, -3.0]], dtype=dt), "b": np.array([1.0, -0.5], dtype=dt)}
    grads = []
    for t in range(1, steps + 1):
        n = noise[8 * (t - 1): 8 * t]
        w = [[1 + n[0], (-1) ** t * (1 + n[1]), (1 + n[2]) * 2.0 ** -(t // 4)],
             [(1 + n[3]) * 2.0**-27, (1 + n[4]) * 2.0**-23, 0.0 if t <= 10 else 4 * n[5]]]
        b = [0.25 + n[6] / 8, n[7] * (64 if t % 17 == 0 else 1)]
        grads.append({"w": np.array(w, dtype=dt), "b": np.array(b, dtype=dt)})
    if vector_axes is not None:
        axes = {key: vector_axes.get(key) if isinstance(vector_axes, dict) else vector_axes for key in params}
        axes = {key: None if a is None else {i % params[key].ndim for i in a} for key, a in axes.items()}
        unknown = sorted(set(vector_axes) - set(params)) if isinstance(vector_axes, dict) else []
        if unknown:
            raise ValueError(f"vector_axes names {unknown}; the probe's parameters are {sorted(params)}")
        several = [key for key, a in axes.items() if a is not None and len(a) < params[key].ndim]
        single = [key for key, a in axes.items() if a is not None and len(a) == params[key].ndim]
        tiny = set(several) or set(single[:1])   # one whole vector of these goes near epsilon
        grads = [_near_epsilon(g, axes, tiny, dt) for g in grads]
    return params, grads


def _near_epsilon(g: dict, axes: dict, tiny: set, dt) -> dict:
    """The ND-Adam probe's gradient: a whole weight vector (the first, of the parameters in
    ``tiny``), and one element of each scalar parameter, scaled down to epsilon's size (powers of
    two: exact); the other vectors' coordinates near epsilon are brought up to order 1, so that
    they show the step size."""
    out = {}
    for key, x in g.items():
        x = np.array(x, dtype=np.float64)
        if axes[key] is None:
            x.reshape(-1)[-1] *= 2.0**-25
        else:
            x = np.where(np.abs(x) < 2.0**-20, x * 2.0**24, x)
            if key in tiny:
                first = tuple(slice(None) if i in axes[key] else 0 for i in range(x.ndim))
                x[first] *= 2.0**-27
        out[key] = x.astype(dt)
    return out
