"""Fast paths: the readable per-array update functions, evaluated faster, with the same bits.

The algorithms live in one place, the readable functions of ``adam.py``, ``adal.py`` and
``sgd.py`` (:func:`~refimpl.adam.adam_update` and the others): one line per equation, each line
a whole-array operation that makes a new array. That is the best way to read an algorithm and a
slow way to run it on large arrays: each line streams every array through memory again.

Each of those functions is marked :func:`elementwise`: element ``i`` of every result depends only
on element ``i`` of every array argument. Addition, subtraction, multiplication, division and
square root are correctly rounded in IEEE 754, so each element's result depends neither on the
other elements nor on how many are computed together: the same operations, evaluated in any
grouping, give the same bits. So:

* **NumPy, small arrays, with a C++ compiler** (:mod:`refimpl._vm`): here a step's time is
  Python's, about half a microsecond per NumPy call before any arithmetic. The function is
  traced once per signature of its arguments, Python numbers included (``t``, ``lr``, ...: their
  arithmetic, such as ``1 - beta1**t``, is recorded, and every decision taken on them, such as
  ``t > 0``, becomes a guard), and the trace is replayed at every later call by an interpreter
  compiled once per machine (``refimpl/_vm.cpp``): Python's arithmetic on the numbers in double
  precision, then the array operations in the traced order on blocks that stay in cache. A call
  whose numbers decide a guard otherwise is traced again.
* **NumPy, large arrays, with a C++ compiler** (:mod:`refimpl._native`): the function is traced
  once per call (:func:`refimpl._fuse.trace`: it runs on symbols, every Python decision, such as
  an option, a bias correction ``1 - beta**t`` or a schedule, taken exactly as in the readable
  run, every array operation recorded as one C++ statement) and the statements are compiled
  (once per configuration; contraction of ``a * b + c`` off, no fast-math) into a loop that
  reads and writes each array once. IEEE exceptions it raises are reported as NumPy would:
  where NumPy's ``errstate`` would warn or raise, the call is redone with NumPy, which does.
* **NumPy, large arrays, no compiler** (or a function the tracer cannot follow): the function
  itself runs on blocks of a few tens of kilobytes of the flattened arrays, each block's results
  written into the outputs, so that every line of the formula works on data in the CPU's cache.
* **CuPy**: the traced statements as one elementwise CUDA kernel (``--fmad=false``): one pass
  over GPU memory instead of one per line.

With ``threads > 1`` the CPU paths for large arrays share the elements among threads (ctypes and
NumPy release the GIL). Every other call (array-api-strict, dask, a layout or a function the
paths above do not cover, ...) runs the readable function itself. ``tests/test_fast_paths.py``
and ``tests/test_interpreter.py`` check each path bitwise against the readable function, for
every option of every optimizer.

Settings (also from the environment: ``REFIMPL_FAST=0`` turns the fast paths off,
``REFIMPL_INTERPRETER=0`` the interpreter of small steps only, ``REFIMPL_THREADS=n`` sets the
number of threads):

>>> import refimpl.fast
>>> with refimpl.fast.settings(enabled=False):   # run the readable functions only
...     pass
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import contextvars
import dataclasses
import functools
import os

import numpy as np

from . import _native, _vm
from ._core import _is_array

__all__ = ["elementwise", "settings", "current_settings", "Settings"]


@dataclasses.dataclass(frozen=True)
class Settings:
    """How the fast paths run.

    ``enabled``: use them at all. ``threads``: how many threads share a large NumPy array (1:
    the calling thread only). ``compiler``: the C++ compiler for the CPU kernels (default:
    ``$REFIMPL_CXX``, ``$CXX`` or the first of c++, g++, clang++ found; ``None``: the readable
    function on blocks instead). ``block``: the bytes of one array in one block.
    ``min_size``: arrays with fewer elements take the interpreter of traced updates (with
    ``interpreter=True`` and a compiler, which builds it once) or else the readable function.
    ``fmad``: let the GPU compiler contract ``a * b + c`` into one fused multiply-add (faster
    arithmetic, not the readable path's bits; off by default).
    """

    enabled: bool = True
    threads: int = 1
    block: int = 64 * 1024
    min_size: int = 1 << 17
    fmad: bool = False
    compiler: str | None = None
    interpreter: bool = True


def _from_environment() -> Settings:
    threads = int(os.environ.get("REFIMPL_THREADS") or 1)
    return Settings(enabled=os.environ.get("REFIMPL_FAST", "1") != "0", threads=max(1, threads),
                    compiler=_native.default_compiler(),
                    interpreter=os.environ.get("REFIMPL_INTERPRETER", "1") != "0")


_settings: contextvars.ContextVar[Settings] = contextvars.ContextVar("refimpl_fast", default=_from_environment())


def current_settings() -> Settings:
    """The settings in force."""
    return _settings.get()


@contextlib.contextmanager
def settings(**changes):
    """Change some settings inside a ``with`` block, e.g. ``settings(threads=os.cpu_count())``."""
    new = dataclasses.replace(_settings.get(), **changes)
    if new.threads < 1 or new.block < 1 or new.min_size < 1:
        raise ValueError(f"threads, block and min_size must be positive, got {new}")
    token = _settings.set(new)
    try:
        yield new
    finally:
        _settings.reset(token)


def elementwise(update):
    """Mark ``update`` as elementwise in its array arguments and give it the fast paths.

    The decorated function is called exactly as ``update``; ``update`` itself stays reachable as
    ``.__wrapped__`` (the readable path, which the tests use as the oracle).

    What ``update`` may do, to be traced: elementwise arithmetic (``+ - * /``, comparisons,
    ``xp.sqrt``, ``xp.abs``, ``xp.maximum``, ``xp.minimum``, ``xp.where``, ``xp.ones_like``,
    ``xp.zeros_like``) on its arrays, Python arithmetic and comparisons on its numbers, and
    Python decisions on numbers and options. It must not decide on the *type* of a number
    (``isinstance(lr, float)``): inside a trace a number is a symbol. Anything else (a reduction,
    ``float(lr)``, a decision on array values) makes the trace refuse, and the function runs as
    written. As a safety net, the first call of every new trace is also run as written and the
    trace is kept only if the two agree bit for bit.
    """

    @functools.wraps(update)
    def dispatch(*arrays, **options):
        first, now = arrays[0], _settings.get()
        if type(first) is np.ndarray and now.enabled:
            if first.size >= now.min_size:
                return _blocked(update, arrays, options)
            if now.interpreter and now.compiler:
                results = _vm.call(update, arrays, options, now.compiler)
                if results is not None:
                    return results
        elif type(first).__module__.startswith("cupy") and now.enabled:
            from . import _fuse
            return _fuse.call(update, arrays, options, fmad=now.fmad)
        return update(*arrays, **options)

    return dispatch


# ----------------------------------------------------------------------------- NumPy


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
    if _is_array(x):  # a NumPy scalar or another library's array: left to the readable path
        raise _NotBlockable
    return x, False


def _blocked(update, arrays, options):
    """``update(*arrays, **options)`` on large NumPy arrays: the compiled kernel of its trace
    where there is a compiler, else the function itself called block by block."""
    now = _settings.get()
    block = max(1, now.block // arrays[0].dtype.itemsize)
    if now.compiler:
        from . import _fuse
        try:
            kernel = _fuse.trace(update, arrays, options)
        except _fuse.Unfusable:
            kernel = None
        function = _native.compiled(kernel, now.compiler) if kernel is not None and \
            _broadcasts_to(arrays[0].shape, [value for _, _, value in kernel.inputs]) else None
        if function is not None:
            outputs, raised = _native.call(function, kernel, arrays[0].shape, now.threads, _pool(now.threads))
            if all(np.geterr()[error] == "ignore" for error in raised):
                return tuple(outputs)
            # An overflow, say, that NumPy would warn about or raise: run NumPy, which does.
    return _blocked_calls(update, arrays, options, block)


def _broadcasts_to(shape, values) -> bool:
    """Every input is a number or a NumPy array that broadcasts to ``shape`` (not NumPy scalars,
    whose dtype promotes, nor another library's arrays): otherwise the readable path decides."""
    if any(not isinstance(value, np.ndarray) and _is_array(value) for value in values):
        return False
    try:
        return np.broadcast_shapes(shape, *[np.shape(value) for value in values]) == shape
    except ValueError:
        return False


def _blocked_calls(update, arrays, options, block):
    """The function itself on blocks of ``block`` elements of the flattened arrays, each block's
    results written into preallocated outputs: every line of the formula then works on data in
    the CPU's cache. Arguments that cannot be cut (a sweep's (K, 1) hyperparameter) leave the
    whole call to the readable function."""
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
        return update(*arrays, **options)  # a result that is not elementwise after all
    outputs = [None if r is None else np.empty(n, dtype=r.dtype) for r in first]

    def fill(start, stop):
        for out, r in zip(outputs, first if start == 0 else call(start, stop)):
            if out is not None:
                out[start:stop] = r

    _for_each_block(n, block, fill)
    return tuple(None if out is None else out.reshape(shape) for out in outputs)


def _for_each_block(n: int, block: int, fill) -> None:
    """``fill(start, stop)`` for every block; with several threads, contiguous runs of blocks,
    the first in the calling thread, the others in a copy of the caller's context (so that
    ``np.errstate``, a context variable, holds there too)."""
    starts = range(0, n, block)
    threads = min(_settings.get().threads, len(starts))

    def fill_run(run_starts):
        for start in run_starts:
            fill(start, min(start + block, n))

    if threads <= 1:
        fill_run(starts)
        return
    bounds = np.linspace(0, len(starts), threads + 1).astype(int)
    runs = [starts[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    futures = [_pool(threads).submit(contextvars.copy_context().run, fill_run, r) for r in runs[1:]]
    try:
        fill_run(runs[0])
    finally:
        concurrent.futures.wait(futures)
    for future in futures:
        future.result()  # raises what a block raised (e.g. under np.errstate(all="raise"))


@functools.lru_cache(maxsize=None)
def _pool(threads: int) -> concurrent.futures.ThreadPoolExecutor | None:
    """The helper threads (the calling thread is the first of ``threads``)."""
    if threads == 1:
        return None
    return concurrent.futures.ThreadPoolExecutor(max_workers=threads - 1, thread_name_prefix="refimpl")
