"""The CuPy fused kernel checked without a GPU (refimpl/_fuse.py; helpers in tests/cuda_kernels.py).

For every decorated update (Adam, AdaL, SGD; ND-Adam's scalars are Adam's), every option value
and both float dtypes, the trace of the readable function becomes one CUDA kernel. Here:

* **NVRTC**: the exact translation unit CuPy would compile for it (CuPy's own source generator
  and headers, its compiler options, ``--fmad=false``, sm_90) compiles without error, and its
  PTX rounds as the readable CuPy code does: no fused multiply-add, IEEE division and square
  root (``div.rn``, ``sqrt.rn``), and float32 flushing subnormals (``.ftz``) as every CuPy
  kernel does;
* **host C++**: the same body lines, compiled with the system's C++ compiler (no contraction, no
  fast-math), give the readable NumPy function's bits on arrays full of 0, -0, infinities, NaN,
  subnormals and huge values: the kernel's semantics, not only its syntax;
* a template broken on purpose (a typo, swapped operands of ``max``, a missing NaN test, fmad on)
  fails the checks that can see it.

On a GPU, tests/test_fast_paths.py runs the kernels themselves.
"""

from __future__ import annotations

import concurrent.futures
import os
import re

import array_api_compat.numpy as xp_numpy
import numpy as np
import pytest

from refimpl import _fuse

import cuda_kernels
from test_fast_paths import assert_bitwise, every_operation, kernel_calls, pairs

needs_nvrtc = pytest.mark.skipif(cuda_kernels.nvrtc_reason() is not None,
                                 reason=cuda_kernels.nvrtc_reason() or "")
needs_host_compiler = pytest.mark.skipif(cuda_kernels.host_compiler() is None,
                                         reason="no C++ compiler (g++, c++ or clang++) on PATH")
DTYPES = [np.float32, np.float64]


def label(function, options) -> str:
    shown = {k: v for k, v in options.items() if k != "xp" and not isinstance(v, np.ndarray)}
    return f"{function.__name__}({', '.join(f'{k}={v!r}' for k, v in shown.items())})"


# ----------------------------------------------------------------------------- NVRTC


def compile_all(dtype, *, fmad=False):
    """{source: (label, PTX)} for the distinct kernels of kernel_calls(dtype) (many option values give
    the same source: numbers enter as kernel arguments), with 32-bit indexing, and 64-bit
    indexing (arrays of 2**31 elements or more) for the first Adam and the sweep. NVRTC releases
    the GIL: the compilations run on every core."""
    sources = {}
    for i, (function, arrays, options) in enumerate(kernel_calls(dtype, specials=False)):
        kernel = _fuse.trace(function, arrays, options)
        for index_32_bits in (True, False) if i == 0 or arrays[0].ndim == 2 else (True,):
            source, compiler_options = cuda_kernels.cupy_source(kernel, arrays[0].shape, fmad=fmad,
                                                                index_32_bits=index_32_bits)
            sources.setdefault(source, (label(function, options), compiler_options))
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        results = pool.map(lambda item: cuda_kernels.nvrtc_compile(item[0], item[1][1]), sources.items())
        return {source: (name, ptx) for (source, (name, _)), (ptx, cubin) in zip(sources.items(), results)
                if cubin}


def arithmetic(ptx: str) -> list[str]:
    """The floating-point arithmetic instructions of a PTX listing (opcode with modifiers)."""
    return re.findall(r"^\s*(?:@%p\d+\s+)?((?:add|sub|mul|div|sqrt|fma|mad|neg|abs|max|min|rcp|setp)"
                      r"(?:\.\w+)*\.f(?:32|64))\s", ptx, flags=re.M)


@needs_nvrtc
def test_cupy_still_compiles_as_modelled():
    """The options tests/cuda_kernels.py adds where CuPy reads the device are CuPy's."""
    cuda_kernels.check_cupy_internals()


@needs_nvrtc
@pytest.mark.parametrize("dtype", DTYPES)
def test_every_kernel_compiles_with_nvrtc_and_rounds_as_cupy(dtype):
    """Every option of every decorated update, and every operation: CuPy's source compiles for
    sm_90, and the PTX rounds every operation as CuPy's one-operation kernels do."""
    compiled = compile_all(dtype)
    assert len(compiled) >= 30  # distinct sources (each option changes the code), each compiled once
    width = "f32" if dtype == np.float32 else "f64"
    for name, ptx in compiled.values():
        ops = arithmetic(ptx)
        assert ops, name
        for op in ops:
            assert op.endswith(width), (name, op)
            assert not op.startswith(("fma", "mad")), (name, op)       # --fmad=false: no contraction
            assert "approx" not in op and "full" not in op, (name, op)  # IEEE division and sqrt
            if op.startswith(("add", "sub", "mul", "div", "sqrt")):
                assert ".rn" in op, (name, op)
            # CuPy compiles every kernel with -ftz=true: float32 flushes subnormals, float64 does not
            if not op.startswith(("neg", "abs")) or dtype == np.float32:
                assert (".ftz" in op) == (dtype == np.float32), (name, op)


@needs_nvrtc
def test_contraction_shows_in_the_ptx_when_allowed():
    """The absence of fma above is --fmad=false's doing: with fmad=True (refimpl.fast.settings)
    the same Adam kernel contracts."""
    function, arrays, options = kernel_calls(np.float32, specials=False)[0]
    kernel = _fuse.trace(function, arrays, options)
    for fmad, contracts in ((False, False), (True, True)):
        ptx, _ = cuda_kernels.nvrtc_compile(*cuda_kernels.cupy_source(kernel, arrays[0].shape, fmad=fmad))
        assert any(op.startswith("fma") for op in arithmetic(ptx)) == contracts


# ----------------------------------------------------------------------------- host C++


def host_check(dtype, directory, tie=None, only=None):
    """Compile every traced kernel of kernel_calls(dtype, specials=True) (or those of the function
    ``only``) as host C++ and compare each with the readable function; returns the labels of the
    calls that differ."""
    tie = tie or {op: cuda_kernels.tie_rule(xp_numpy, op) for op in ("maximum", "minimum")}
    traced = [(f, a, o, _fuse.trace(f, a, o)) for f, a, o in kernel_calls(dtype, specials=True)
              if only is None or f is only]
    host = cuda_kernels.HostKernels([k for *_, k in traced], {"max": tie["maximum"], "min": tie["minimum"]},
                                    directory, preamble=_fuse.PREAMBLE)
    different = []
    for i, (function, arrays, options, kernel) in enumerate(traced):
        with np.errstate(all="ignore"):
            readable = function(*arrays, **options)
        shape = np.broadcast_shapes(*(x.shape for x in arrays if isinstance(x, np.ndarray)))
        try:
            assert_bitwise(host(i, shape), readable)
        except AssertionError:
            different.append(label(function, options))
    return different


@needs_host_compiler
@pytest.mark.parametrize("dtype", DTYPES)
def test_kernel_bodies_as_host_cpp_equal_the_readable_functions_on_special_values(dtype, tmp_path):
    """The kernel's lines, compiled for the CPU with IEEE arithmetic (the GPU's, except that
    CuPy's float32 flushes subnormals, in the readable CuPy code as in the kernel), give the
    readable NumPy function's bits for every option, on 0, -0, infinities, NaN and subnormals."""
    assert host_check(dtype, str(tmp_path)) == []


# ----------------------------------------------------------------------------- broken on purpose


@needs_host_compiler
@needs_nvrtc
def test_a_broken_template_fails_the_checks_that_can_see_it(monkeypatch, tmp_path):
    """A typo fails both compilers. Swapped operands of max/min (a wrong tie rule: NumPy returns
    the second operand of 0 == -0) and a missing NaN test compile everywhere, as they must, and
    fail the host comparison. The NVRTC check of fmad is broken in the test above."""
    function, arrays, options = kernel_calls(np.float32, specials=False)[0]
    monkeypatch.setitem(_fuse._BINARY, "*", "({a} * {b}")
    kernel = _fuse.trace(function, arrays, options)
    with pytest.raises(cuda_kernels.CompileError, match="expected a"):
        cuda_kernels.nvrtc_compile(*cuda_kernels.cupy_source(kernel, arrays[0].shape))
    with pytest.raises(cuda_kernels.CompileError, match="expected"):
        cuda_kernels.HostKernels([kernel], {"max": "second", "min": "second"}, str(tmp_path))
    monkeypatch.undo()

    for i, template in enumerate(["((isnan({a}) | isnan({b})) ? {t}(NAN) : {t}({fn}({b}, {a})))",
                                  "{t}({fn}({a}, {b}))"]):
        monkeypatch.setattr(_fuse, "_EXTREMUM", template)
        a, b = pairs(np.float32)
        kernel = _fuse.trace(every_operation, (a, b), dict(s=0.75, xp=xp_numpy))
        cuda_kernels.nvrtc_compile(*cuda_kernels.cupy_source(kernel, a.shape))   # compiles
        directory = tmp_path / str(i)
        directory.mkdir()
        assert host_check(np.float32, str(directory), only=every_operation) != [], template
    # and the tie rule is what the swap breaks: with NumPy's rule mirrored, swapped operands pass
    monkeypatch.setattr(_fuse, "_EXTREMUM", "((isnan({a}) | isnan({b})) ? {t}(NAN) : {t}({fn}({b}, {a})))")
    (tmp_path / "mirrored").mkdir()
    assert host_check(np.float32, str(tmp_path / "mirrored"), tie={"maximum": "first", "minimum": "first"},
                      only=every_operation) == []
