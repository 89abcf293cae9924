"""What runs where: the readable update functions, evaluated where they are fast.

Each algorithm is written once, as a readable function of whole arrays
(:func:`~refimpl.adam.adam_update`, :func:`~refimpl.adal.adal_update`,
:func:`~refimpl.sgd.sgd_update`): one line per equation. Each is marked :func:`elementwise`:
element ``i`` of every result depends only on element ``i`` of every array argument. Addition,
subtraction, multiplication, division and square root are correctly rounded in IEEE 754, so an
element's result depends neither on the other elements nor on how many are computed together.
That is all the speed needs:

* **NumPy (the CPU)**: the readable function itself. Arrays of at least ``min_size`` elements
  (131,072) are cut into blocks of ``block`` bytes (64 KiB) and the function runs on each block,
  so every line of the formula works on data in the CPU's cache: the same bits, about 1.5 times
  faster on 10 million elements (``benchmarks/README.md``). No compiler is ever invoked.
* **CuPy (a GPU)**: the same function traced into one elementwise CUDA kernel
  (:mod:`refimpl._fuse`): one pass over GPU memory instead of one per line, with contraction of
  ``a * b + c`` off, so that every operation rounds as in the readable CuPy code. The trace is
  kept per signature of the arguments; later steps redo only the arithmetic on their numbers.
* **Anything else** (array-api-strict, dask, a sweep's ``(K, 1)`` hyperparameters on the CPU, ...):
  the readable function, whole.

``tests/test_fast_paths.py`` checks the blocks and the trace bitwise against the readable
function for every option of every optimizer. ``REFIMPL_FAST=0`` in the environment (or
:func:`settings` with ``enabled=False``) runs the readable functions whole everywhere:

>>> import refimpl.fast
>>> with refimpl.fast.settings(enabled=False):   # the readable functions only
...     pass
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools

import numpy as np

from ._core import _is_array
from ._environment import flag

__all__ = ["elementwise", "for_arrays_like", "settings", "current_settings", "Settings"]


@dataclasses.dataclass(frozen=True)
class Settings:
    """How the readable functions are evaluated.

    ``enabled``: cut large NumPy arrays into blocks and fuse CuPy updates into one kernel
    (``False``: call the readable functions whole). ``min_size``: the fewest elements a NumPy
    array needs to be cut into blocks. ``block``: the bytes of one array in one block.
    ``fmad``: let the GPU compiler contract ``a * b + c`` into one fused multiply-add (faster,
    but not the readable path's bits; off by default).
    """

    enabled: bool = True
    block: int = 64 * 1024
    min_size: int = 1 << 17
    fmad: bool = False


_settings: contextvars.ContextVar[Settings] = contextvars.ContextVar(
    "refimpl_fast", default=Settings(enabled=flag("REFIMPL_FAST", default=True)))


def current_settings() -> Settings:
    """The settings in force."""
    return _settings.get()


@contextlib.contextmanager
def settings(**changes):
    """Change some settings inside a ``with`` block, e.g. ``settings(enabled=False)``."""
    new = dataclasses.replace(_settings.get(), **changes)
    for name in ("block", "min_size"):
        value = getattr(new, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r} must be a positive int")
    for name in ("enabled", "fmad"):
        if not isinstance(getattr(new, name), bool):
            raise ValueError(f"{name}={getattr(new, name)!r} must be True or False")
    token = _settings.set(new)
    try:
        yield new
    finally:
        _settings.reset(token)


def elementwise(update):
    """Mark ``update`` as elementwise in its array arguments: large NumPy arrays are then
    evaluated on blocks, CuPy arrays in one fused kernel.

    The decorated function is called exactly as ``update``; ``update`` itself stays reachable as
    ``.__wrapped__`` (the tests use it as the oracle). For the CuPy kernel, ``update`` may use
    elementwise arithmetic (``+ - * /``, comparisons, ``xp.sqrt``, ``xp.abs``, ``xp.maximum``,
    ``xp.minimum``, ``xp.where``, ``xp.ones_like``, ``xp.zeros_like``) on its arrays, and any
    Python on its numbers and options; anything else (a reduction, a decision on array values)
    makes the trace refuse, and the function runs as written. It must not decide on the *type*
    of a number (``type(lr) is float``): to keep a trace for later steps, its numbers are traced
    as symbols too.
    """

    @functools.wraps(update)
    def dispatch(*arrays, **options):
        first = arrays[0]
        if type(first) is np.ndarray:
            now = _settings.get()
            if now.enabled and first.size >= now.min_size:
                return _on_blocks(update, arrays, options, max(1, now.block // first.dtype.itemsize))
        elif type(first).__module__.startswith("cupy") and _settings.get().enabled:
            from . import _fuse
            return _fuse.call(update, arrays, options, fmad=_settings.get().fmad)
        return update(*arrays, **options)

    return dispatch


def for_arrays_like(update, x):
    """``update`` as it runs on arrays like ``x``: the readable function itself where no fast path
    applies (a NumPy array below ``min_size``, the fast paths off), else the dispatching function.

    Calling the readable function directly saves the dispatch, which is a tenth of a small step
    (it packs and unpacks some fifteen keyword arguments): the optimizers ask once per array.
    """
    now = _settings.get()
    if not now.enabled or type(x) is np.ndarray and x.size < now.min_size:
        return update.__wrapped__
    return update


class _NotBlockable(Exception):
    """An argument that cannot be cut into blocks (e.g. a sweep's (K, 1) hyperparameter)."""


def _flat_argument(x, shape):
    """How an argument enters every block: an array of the parameters' shape is flattened (and
    cut into blocks later), an array of one element is passed whole, and so is anything that is
    not an array (numbers, options, the namespace)."""
    if isinstance(x, np.ndarray):
        if x.shape == shape:
            return x.reshape(-1), True
        if x.size == 1 and x.ndim <= len(shape):
            return x.reshape(1), False
        raise _NotBlockable
    if _is_array(x):  # a NumPy scalar (it would promote) or another library's array
        raise _NotBlockable
    return x, False


def _on_blocks(update, arrays, options, block):
    """``update(*arrays, **options)``, evaluated on blocks of ``block`` elements of the flattened
    arrays, each block's results written into preallocated outputs. Arguments that cannot be cut
    leave the whole call to the readable function, and so does a function whose results turn
    out not to be elementwise."""
    shape, n = arrays[0].shape, arrays[0].size
    try:
        flat_arrays = [_flat_argument(x, shape) for x in arrays]
        flat_options = {name: _flat_argument(x, shape) for name, x in options.items()}
    except _NotBlockable:
        return update(*arrays, **options)

    def call(start, stop):
        return update(*[x[start:stop] if cut else x for x, cut in flat_arrays],
                      **{name: x[start:stop] if cut else x for name, (x, cut) in flat_options.items()})

    first = call(0, min(block, n))
    if not all(r is None or (isinstance(r, np.ndarray) and r.shape == (min(block, n),)) for r in first):
        return update(*arrays, **options)
    outputs = [None if r is None else np.empty(n, dtype=r.dtype) for r in first]
    for start in range(0, n, block):
        results = first if start == 0 else call(start, min(start + block, n))
        for out, r in zip(outputs, results):
            if out is not None:
                out[start:start + block] = r
    return tuple(None if out is None else out.reshape(shape) for out in outputs)
