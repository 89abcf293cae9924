"""Precision conventions: where real implementations round, as named options around the readable updates.

Two mechanisms, each applied at the one place where it changes what is computed, so that the
update functions stay one line per equation:

* ``scalars``: which numbers the update receives. ``"exact"`` (the default) passes the
  hyperparameters as the exact numbers given and takes :math:`\\beta^t` from Python's power;
  ``"float32"`` rounds every hyperparameter to float32 and forms :math:`\\beta^t` as a float32
  running product; ``"float32_beta_powers"`` takes :math:`\\beta^t` as the power of the
  float32-rounded :math:`\\beta` (the optimizers' docstrings say which library does which).
* ``compute_dtype``: the dtype of the arithmetic. ``None`` computes in the parameters' dtype
  (each operation rounded to it, as NumPy, PyTorch's for-loop and foreach paths do);
  ``"float32"`` converts parameters, gradients and state to float32, runs the update there and
  rounds the results back to their storage dtype (PyTorch's ``fused=True`` "opmath", most CUDA
  kernels for float16 and bfloat16 parameters).
"""

from __future__ import annotations

import numbers

import numpy as np

SCALARS = ("exact", "float32", "float32_beta_powers")
COMPUTE_DTYPES = (None, "float32")

_PRODUCTS: dict[float, list[float]] = {}  # beta (a float32 value) -> [beta, fl32(beta * beta), ...]


def _is_number(x) -> bool:
    return isinstance(x, numbers.Real) and not hasattr(x, "shape")


def to_float32(h, xp=None):
    """A hyperparameter rounded to float32 (a number stays a Python float; an array keeps its dtype)."""
    if _is_number(h) and not isinstance(h, bool):
        return float(np.float32(h))
    if hasattr(h, "dtype"):
        xp = xp if xp is not None else np
        return xp.astype(xp.astype(h, xp.float32), h.dtype)
    return h


def float32_power(beta: float, t: int) -> float:
    """beta**t as a float32 running product p_1 = fl32(beta), p_s = fl32(p_{s-1} * fl32(beta)):
    TF1's beta1_power variable, tinygrad's b1_t. Cached per beta, so a run costs one product a step."""
    b = float(np.float32(beta))
    products = _PRODUCTS.setdefault(b, [b])
    while len(products) < t:
        products.append(float(np.float32(products[-1]) * np.float32(b)))
    return products[t - 1] if t >= 1 else 1.0


def beta_powers(scalars: str, beta1, beta2, t: int):
    """(beta1**t, beta2**t) under a scalars convention, or None for Python's power ("exact")."""
    if scalars == "exact" or t < 1:
        return None
    if scalars == "float32":
        if not (_is_number(beta1) and _is_number(beta2)):
            return (_array_product(beta1, t), _array_product(beta2, t))
        return float32_power(beta1, t), float32_power(beta2, t)
    return to_float32(beta1) ** t, to_float32(beta2) ** t          # "float32_beta_powers"


def _array_product(beta, t: int):
    """The float32 running product for an array of betas (a sweep): t products, in float32."""
    if _is_number(beta):
        return float32_power(beta, t)
    import array_api_compat
    xp = array_api_compat.array_namespace(beta)
    b = xp.astype(beta, xp.float32)
    p = b
    for _ in range(t - 1):
        p = p * b
    return xp.astype(p, beta.dtype)


def compute_in(dtype_name: str, flat: dict | None, xp) -> dict | None:
    """The arrays of ``flat`` (``{key: array}``) converted to the compute dtype."""
    if flat is None:
        return None
    target = getattr(xp, dtype_name)
    return {key: xp.astype(x, target) for key, x in flat.items()}


def store_as(flat: dict | None, like: dict, xp) -> dict | None:
    """The results of a compute-dtype update rounded back to the storage dtype of ``like[key]``
    (the parameter of the same key: the state is kept in the parameters' dtype)."""
    if flat is None:
        return None
    return {key: xp.astype(x, like[key].dtype) for key, x in flat.items()}


def smallest_positive(dtype) -> float:
    """The smallest positive (subnormal) number of a floating dtype."""
    info = np.finfo(dtype)
    return float(getattr(info, "smallest_subnormal", info.tiny))


def _numpy_dtype(dtype):
    """The NumPy dtype of the same format as another library's dtype (array-api-strict's
    ``float16``, ...), or None when there is none."""
    try:
        return np.dtype(dtype)
    except TypeError:
        try:
            return np.dtype(str(dtype).rsplit(".", 1)[-1])
        except TypeError:
            return None


def check_epsilon(name: str, value, dtype, compute_dtype: str | None) -> None:
    """A ``ValueError`` when a positive epsilon rounds to 0 in the dtype the arithmetic runs in
    (1e-8 in float16): the update would run without it, and Adam's division by sqrt(v) + eps
    would divide by zero where the second moment underflows."""
    if not _is_number(value) or value == 0:
        return
    where = np.dtype(compute_dtype) if compute_dtype is not None else _numpy_dtype(dtype)
    if where is not None and np.asarray(value, dtype=np.float64).astype(where) == 0:
        tiny = smallest_positive(where)
        raise ValueError(f"{name}={value!r} rounds to 0 in {where}, the dtype the update computes in (its smallest "
                         f"positive number is {tiny:.3g}), so the update would run without it (sqrt(v) + {name} is 0 "
                         f"where v underflows). Use compute_dtype='float32' (PyTorch fused's convention for float16 and "
                         f"bfloat16 parameters) or {name} >= {tiny:.3g}")
