"""The CPU twin of the CuPy kernel: a traced update compiled by the system's C++ compiler.

:func:`refimpl._fuse.trace` turns a readable per-array update into a list of elementwise
operations, one C++ statement each; :meth:`~refimpl._fuse.Kernel.cpp_function` wraps them in a
loop over elements. Compiled with ``-ffp-contract=off`` and without ``-ffast-math``, each
statement is one IEEE 754 operation in the parameters' dtype, exactly the operation NumPy
performs for that line of the readable function, so the loop gives NumPy's bits while reading
and writing each array once (``tests/test_fast_paths.py`` checks every option). ``-O3`` lets the
compiler use vector instructions, which compute the same correctly rounded results.

Where there is no C++ compiler, or it fails, :func:`compiled` returns ``None`` and the caller
runs the readable function instead (on blocks of large arrays: :mod:`refimpl.fast`). Compiled
libraries are cached on disk (in ``$REFIMPL_CACHE``, else ``~/.cache/refimpl``), keyed by a
hash of the source, the compiler, its flags and the CPU.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile

import numpy as np

__all__ = ["default_compiler", "compiled", "precompile", "call"]

HEADER = """#include <cfenv>
#include <cmath>
using std::isnan; using std::signbit; using std::sqrt; using std::fabs;
"""
FLAGS = ("-O3", "-ffp-contract=off", "-fno-fast-math", "-fno-math-errno", "-fPIC", "-shared")
NATIVE = ("-march=native",)  # tried first (wider vectors, masked selects); dropped if refused

_C_SCALARS = {np.dtype(np.float32): ctypes.c_float, np.dtype(np.float64): ctypes.c_double,
              np.dtype(np.bool_): ctypes.c_bool}
_failed: set = set()       # compilers that failed once: not tried again in this process
_functions: dict = {}      # (compiler, source) -> ctypes function


def default_compiler() -> str | None:
    """``$REFIMPL_CXX`` ("" for none), else ``$CXX``, else the first of c++, g++, clang++ on PATH."""
    chosen = os.environ.get("REFIMPL_CXX", os.environ.get("CXX"))
    if chosen is not None:
        return chosen or None
    return next((found for name in ("c++", "g++", "clang++") if (found := shutil.which(name))), None)


def _cache_dir() -> str:
    root = os.environ.get("REFIMPL_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "refimpl")
    path = os.path.join(root, "kernels")
    try:
        os.makedirs(path, exist_ok=True)
        return path
    except OSError:
        return tempfile.mkdtemp(prefix="refimpl-kernels-")


@functools.lru_cache(maxsize=1)
def _cpu() -> str:
    """What identifies this CPU, for the cache key: a library built with ``-march=native`` must
    not be loaded by another CPU sharing the home directory."""
    try:
        with open("/proc/cpuinfo") as f:
            return "".join(sorted({line for line in f if line.startswith(("model name", "flags"))}))
    except OSError:
        return f"{platform.machine()} {platform.processor()} {platform.node()}"


def _build(compiler: str, source: str, flags: tuple = FLAGS) -> str | None:
    """The path of a shared library compiled from ``source`` with ``flags``, or ``None`` if the
    compiler fails."""
    for extra in (NATIVE, ()):
        key = hashlib.sha256("\0".join([compiler, *flags, *extra, _cpu(), source]).encode()).hexdigest()[:32]
        library = os.path.join(_cache_dir(), f"refimpl_{key}.so")
        if os.path.exists(library):
            return library
        with tempfile.TemporaryDirectory() as tmp:
            cpp, built = os.path.join(tmp, "kernel.cpp"), os.path.join(tmp, "kernel.so")
            with open(cpp, "w") as f:
                f.write(source)
            try:
                done = subprocess.run([compiler, *flags, *extra, "-o", built, cpp], capture_output=True,
                                      timeout=120)
            except (OSError, subprocess.SubprocessError):
                return None
            if done.returncode == 0:
                os.replace(built, library)  # atomic: another process may be writing the same file
                return library
    return None


def precompile(kernels, compiler: str | None) -> None:
    """Compile several kernels with one run of the compiler (the tests use it: one run instead of
    one per kernel)."""
    todo = {k.cpp_function("k"): k for k in kernels if (compiler, k.cpp_function("k")) not in _functions}
    if not compiler or compiler in _failed or not todo:
        return
    names = {source: f"k{i}" for i, source in enumerate(todo)}
    source = HEADER + "\n".join(k.cpp_function(names[s]) for s, k in todo.items())
    library = _build(compiler, source)
    if library is None:
        _failed.add(compiler)
        return
    loaded = ctypes.CDLL(library)
    for s in todo:
        function = getattr(loaded, names[s])
        function.restype = ctypes.c_int
        _functions[(compiler, s)] = function


def compiled(kernel, compiler: str | None):
    """The compiled function of ``kernel`` (compiling it on first use), or ``None``."""
    source = kernel.cpp_function("k")
    if (compiler, source) not in _functions:
        precompile([kernel], compiler)
    return _functions.get((compiler, source))


ERRORS = {1: "divide", 2: "over", 4: "under", 8: "invalid"}  # the bits a kernel returns


def call(function, kernel, shape: tuple, threads: int, pool) -> tuple[list, set]:
    """Run a compiled kernel over arrays of ``shape``, split into ``threads`` contiguous ranges
    of elements (ctypes releases the GIL during the call). An input passed by pointer is made
    C-contiguous, broadcast to ``shape`` first if it is smaller (a sweep's ``(K, 1)``
    hyperparameter). Returns the outputs and the IEEE exceptions raised (NumPy's names)."""
    n = int(np.prod(shape))
    arguments, alive = [], []
    for (name, dtype, value), by_value in zip(kernel.inputs, kernel.by_value()):
        if by_value:
            arguments.append(_C_SCALARS[dtype](np.asarray(value, dtype=dtype).reshape(-1)[0]))
        else:
            alive.append(np.ascontiguousarray(np.broadcast_to(value, shape), dtype=dtype))
            arguments.append(ctypes.c_void_p(alive[-1].ctypes.data))
    outputs = [None if out is None else np.empty(shape, out[1]) for out in kernel.outputs]
    arguments += [ctypes.c_void_p(out.ctypes.data) for out in outputs if out is not None]
    bounds = np.linspace(0, n, max(1, min(threads, n)) + 1).astype(np.int64)
    ranges = [(ctypes.c_long(int(a)), ctypes.c_long(int(b))) for a, b in zip(bounds[:-1], bounds[1:])]
    futures = [pool.submit(function, *r, *arguments) for r in ranges[1:]]
    raised = function(*ranges[0], *arguments)
    for future in futures:
        raised |= future.result()
    return outputs, {name for bit, name in ERRORS.items() if raised & bit}
