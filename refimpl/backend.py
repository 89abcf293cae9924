"""Where new arrays are made: NumPy by default, CuPy on a GPU.

The optimizers never ask this module anything: they take the array namespace from their
inputs. The switch matters to code that *creates* arrays (the toy problems, experiments, the
book): it picks the library, and :func:`to_numpy` brings results back to the host.

Precedence: :func:`using_backend` (a context) over :func:`set_backend` over the environment
variable ``REFIMPL_BACKEND`` over ``"numpy"``.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Mapping

import array_api_compat
import numpy as np

from ._environment import choice

__all__ = ["BACKENDS", "BackendUnavailableError", "get_backend", "get_namespace", "set_backend",
           "to_numpy", "using_backend"]

BACKENDS = ("numpy", "cupy")

_chosen: contextvars.ContextVar[str | None] = contextvars.ContextVar("refimpl_backend", default=None)


class BackendUnavailableError(RuntimeError):
    """The requested backend cannot run here (for CuPy: not installed, or no usable GPU)."""


def _check_name(name, source: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"{source}={name!r} is not a backend; choose one of {', '.join(map(repr, BACKENDS))}")
    return name


def _load(name: str):
    """The module for ``name``, or a clear error saying why it cannot be used."""
    if name == "numpy":
        return np
    try:
        import cupy
    except Exception as e:  # ImportError, or a CUDA library that fails to load
        raise BackendUnavailableError(
            f"backend 'cupy' needs CuPy and a CUDA GPU; importing cupy failed: {e}. "
            f"Install it with `pip install 'refimpl[gpu]'` on a machine with an NVIDIA GPU") from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:
        raise BackendUnavailableError(f"backend 'cupy': CuPy is installed but finds no usable GPU ({e})") from None
    if count < 1:
        raise BackendUnavailableError("backend 'cupy': CuPy is installed but finds no GPU")
    return cupy


def set_backend(name: str) -> None:
    """Make ``name`` ("numpy" or "cupy") the backend from now on. Fails at once, with the
    reason, if the backend cannot run here."""
    _load(_check_name(name, "name"))
    _chosen.set(name)


def get_backend() -> str:
    """The name of the backend in force."""
    name = _chosen.get()
    if name is not None:
        return name
    return choice("REFIMPL_BACKEND", BACKENDS, default="numpy")


def get_namespace():
    """The array module of the backend in force (``numpy`` or ``cupy``), for making arrays."""
    return _load(get_backend())


@contextlib.contextmanager
def using_backend(name: str):
    """Use backend ``name`` inside a ``with`` block, then restore the previous one."""
    _load(_check_name(name, "name"))
    token = _chosen.set(name)
    try:
        yield _load(name)
    finally:
        _chosen.reset(token)


def to_numpy(x):
    """A NumPy copy of an array from any backend; dicts, tuples and optimizer states are mapped over.

    This is the one explicit device-to-host transfer; nothing in refimpl converts implicitly.
    """
    if x is None or isinstance(x, (int, float)):
        return x
    if isinstance(x, Mapping):
        return {key: to_numpy(value) for key, value in x.items()}
    if isinstance(x, tuple) and hasattr(x, "_fields"):  # an optimizer state (NamedTuple)
        return type(x)(*(to_numpy(value) for value in x))
    if isinstance(x, (tuple, list)):  # e.g. the (params, state) pair a step returns
        return type(x)(to_numpy(value) for value in x)
    if array_api_compat.is_numpy_array(x):
        return np.array(x, copy=True)
    if array_api_compat.is_cupy_array(x):
        return x.get()
    if array_api_compat.is_torch_array(x):
        return x.detach().cpu().numpy().copy()
    if type(x).__module__.startswith("array_api_strict"):
        import array_api_strict
        return np.asarray(x.to_device(array_api_strict.Device("CPU_DEVICE"))).copy()
    if array_api_compat.is_array_api_obj(x):
        return np.from_dlpack(x).copy()
    raise TypeError(f"to_numpy expects an array, or a dict, tuple or optimizer state of arrays, got {type(x).__name__}")
