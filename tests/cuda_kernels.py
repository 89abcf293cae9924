"""The fused kernel without a GPU: its CUDA source as CuPy writes it, NVRTC, and its body as host C++.

Test code only (tests/test_cuda_kernels.py uses it); the package never invokes a compiler on the CPU.

* :func:`cupy_source`: the translation unit and the options CuPy hands to NVRTC when
  ``refimpl._fuse`` launches a trace's kernel. CuPy's own code writes it (CuPy imports without a
  GPU): ``cupy.ElementwiseKernel`` with refimpl's arguments, ``_decide_params_type``,
  ``_get_elementwise_kernel_code`` (the loop, the parameter declarations, the per-element
  references), the headers ``compile_with_cache`` prepends and ``assemble_cupy_compiler_options``.
  Only what CuPy reads from the device is supplied here: the argument layout that its
  ``__call__`` derives from the arrays (:class:`Layout`), and the two options its
  ``_compile_with_cache_cuda`` and ``_compile_using_nvrtc_no_warning`` add, ``-ftz=true`` and
  ``-arch=sm_90`` plus ``--device-as-default-execution-space``; :func:`check_cupy_internals`
  reads those functions' source and fails when CuPy changes them.
* :func:`nvrtc_compile`: NVRTC through CuPy's own binding (the ``nvidia-cuda-nvrtc-cu12`` wheel),
  for sm_90 (H100/H200) as CuPy does on such a card: cubin and PTX.
* :class:`HostKernels`: the same body lines compiled with the system's C++ compiler
  (``-ffp-contract=off``, no fast-math), one function per kernel, each element declared as in
  CuPy's loop (``const float &x0 = ...``), behind a shim for CUDA's ``max``/``min``.
"""

from __future__ import annotations

import ctypes
import dataclasses
import inspect
import os
import shutil
import subprocess
import tempfile

import numpy as np

ARCH = "90"  # H100 and H200: the cards the project's GPU checks run on


def nvrtc_reason() -> str | None:
    """Why the NVRTC check cannot run here, or None."""
    try:
        import cupy  # noqa: F401  (imports without a GPU or a driver)
        from cupy_backends.cuda.libs import nvrtc
        nvrtc.getVersion()
        from cuda.pathfinder import find_nvidia_header_directory
        if find_nvidia_header_directory("cudart") is None:
            return "the CUDA headers (pip package nvidia-cuda-runtime-cu12) are not installed"
    except Exception as e:  # not installed, or the library does not load
        return f"CuPy or NVRTC cannot load (pip packages cupy-cuda12x, nvidia-cuda-nvrtc-cu12): {type(e).__name__}: {e}"
    return None


def host_compiler() -> str | None:
    return os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")


# ----------------------------------------------------------------------------- CuPy's source


@dataclasses.dataclass(frozen=True)
class Layout:
    """What CuPy's ``ElementwiseKernel.__call__`` derives from the arrays and bakes into the
    source: arrays of one shape, all C-contiguous, are reduced to one dimension (``_reduce_dims``);
    a sweep's ``(K, N)`` parameters with ``(K, 1)`` hyperparameters stay 2-D; a broadcast view
    (AdaL's ``(1,)`` scale, those hyperparameters) is not contiguous; ``index_32_bits`` is False
    past 2**31 elements."""

    ndim: int = 1
    index_32_bits: bool = True


def layout_of(kernel, shape, index_32_bits=True):
    """The layout and, per input, whether its broadcast view is C-contiguous (as CuPy sees it)."""
    contiguous = []
    for _, _, value in kernel.inputs:
        if isinstance(value, np.ndarray) and value.ndim > 0:
            contiguous.append(np.broadcast_to(value, shape).flags.c_contiguous)
        else:
            contiguous.append(None)  # a scalar
    if all(c is not False for c in contiguous) or len(shape) == 1:
        return Layout(1, index_32_bits), contiguous
    if len(shape) != 2:
        raise NotImplementedError("CuPy reduces the axes of broadcast arrays of 3 or more dimensions; not modelled")
    return Layout(2, index_32_bits), contiguous


def cupy_source(kernel, shape, *, fmad=False, index_32_bits=True):
    """(source, options): what CuPy hands to NVRTC for ``kernel`` on arrays of ``shape``."""
    import cupy
    from cupy._core import _carray, _kernel, _scalar, core

    from refimpl import _fuse

    ndarray, indexer, scalar = 1, 2, 3  # cupy/_core/_kernel.pxd: _ArgKind (ARG_KIND_NDARRAY = 1, ...)
    arguments = _fuse.elementwise_kernel_arguments(kernel.in_params(), kernel.out_params(), kernel.body(), fmad)
    elementwise = cupy.ElementwiseKernel(**arguments)
    layout, contiguous = layout_of(kernel, shape, index_32_bits)
    in_dtypes = tuple(dtype for _, dtype, _ in kernel.inputs)
    _, out_types, type_map = elementwise._decide_params_type(in_dtypes, ())
    infos = []
    for (_, dtype, _), c in zip(kernel.inputs, contiguous):
        if c is None:
            infos.append(_kernel._ArgInfo(scalar, _scalar.CScalar, dtype, 0, True, True))
        else:
            infos.append(_kernel._ArgInfo(ndarray, cupy.ndarray, dtype, layout.ndim, c, layout.index_32_bits))
    for dtype in out_types:
        infos.append(_kernel._ArgInfo(ndarray, cupy.ndarray, dtype, layout.ndim, True, layout.index_32_bits))
    infos.append(_kernel._ArgInfo(indexer, _carray.Indexer, None, layout.ndim, True, layout.index_32_bits))
    code = _kernel._get_elementwise_kernel_code(tuple(infos), type_map, elementwise.params, elementwise.operation,
                                                elementwise.name, elementwise.preamble, **elementwise.kwargs)
    source = "".join(f"#include <{header}>\n" for header in core._cupy_header_list) + code
    options = (core.assemble_cupy_compiler_options(tuple(elementwise.kwargs["options"]))
               + ("-ftz=true", f"-arch=sm_{ARCH}", "--device-as-default-execution-space"))
    # the argument kinds above are CuPy's: an array parameter is a CArray, a scalar a plain value
    first = kernel.inputs[0]
    assert f"CArray<{_c_type(first[1])}, {layout.ndim}," in code and "CIndexer<" in code, code
    return source, options


def check_cupy_internals():
    """The options this module adds in CuPy's place are still the ones CuPy adds (its compiler
    module is Python, so its source can be read)."""
    from cupy.cuda import compiler
    cache = inspect.getsource(compiler._compile_with_cache_cuda)
    nvrtc = inspect.getsource(compiler._compile_using_nvrtc_no_warning)
    arch = inspect.getsource(compiler._get_arch_for_options_for_nvrtc)
    assert "options += ('-ftz=true',)" in cache, "CuPy no longer adds -ftz=true: update tests/cuda_kernels.py"
    assert "'--device-as-default-execution-space'" in nvrtc, "CuPy changed its NVRTC options"
    assert "f'-arch=sm_{arch}', 'cubin'" in arch, "CuPy no longer compiles cubins for the device's sm_XX"
    assert int(ARCH) <= int(compiler._get_max_compute_capability())


class CompileError(Exception):
    pass


def nvrtc_compile(source: str, options: tuple) -> tuple[str, bytes]:
    """(PTX, cubin) of ``source``, compiled by NVRTC through CuPy's binding; CompileError with
    NVRTC's log on any error."""
    from cupy.cuda import compiler
    from cupy_backends.cuda.libs import nvrtc
    program = compiler._NVRTCProgram(source, "refimpl_fused_update.cu", method="cubin")
    try:
        cubin, _ = program.compile(options)
    except compiler.CompileException as e:
        raise CompileError(str(e)) from None
    return nvrtc.getPTX(program.ptr).decode().rstrip("\0"), cubin


# ----------------------------------------------------------------------------- host C++

_C_TYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double", np.dtype(np.bool_): "bool"}


def _c_type(dtype) -> str:
    return _C_TYPES[np.dtype(dtype)]


def tie_rule(xp, op: str) -> str:
    """Which operand ``xp.maximum`` (or ``minimum``) returns when they are equal, 0 and -0:
    ``"first"``, ``"second"`` (NumPy on x86: ``maximum(-0.0, 0.0)`` is 0.0 and ``maximum(0.0,
    -0.0)`` is -0.0), ``"positive"`` or ``"negative"`` (IEEE 754-2019's maximum and minimum)."""
    signs = tuple(bool(s) for s in np.signbit(np.asarray(getattr(xp, op)(np.array([-0.0, 0.0]),
                                                                         np.array([0.0, -0.0])))))
    return {(True, False): "first", (False, True): "second", (False, False): "positive",
            (True, True): "negative"}[signs]


def shim(tie: dict) -> str:
    """CUDA's spellings on the host. ``isnan``, ``sqrt``, ``fabs``/``fabsf`` are the IEEE functions
    of <cmath>, as on the device. ``max``/``min`` are the device's ``fmax``/``fmin`` of non-NaN
    operands (the template tests NaN first), with the tie rule (which operand 0 == -0 returns)
    that ``tie`` gives per function: the host check holds the kernel to NumPy, so NumPy's rule."""
    pick = {"first": "a", "second": "b", "positive": "(std::signbit(a) ? b : a)",
            "negative": "(std::signbit(a) ? a : b)"}
    lines = ["#include <cmath>", "using std::isnan; using std::sqrt; using std::fabs;  // ::fabsf: <math.h>"]
    for fn, cmp in (("max", ">"), ("min", "<")):
        for t in ("float", "double"):
            lines.append(f"static inline {t} {fn}({t} a, {t} b) {{ return a {cmp} b ? a : b {cmp} a ? b : "
                         f"{pick[tie[fn]]}; }}")
    return "\n".join(lines) + "\n"


def host_function(name: str, kernel) -> str:
    """One kernel as a host function over ``n`` elements: ``args`` holds one pointer per input
    (a scalar's single value, or an array broadcast to n elements) and per output."""
    lines = [f'extern "C" void {name}(void* const* args, long n) {{', "  for (long i = 0; i < n; ++i) {"]
    for j, (input_name, dtype, value) in enumerate(kernel.inputs):
        t = _c_type(dtype)
        if input_name.startswith("s"):
            lines.append(f"    const {t} {input_name} = *static_cast<const {t}*>(args[{j}]);")
        else:
            lines.append(f"    const {t} &{input_name} = static_cast<const {t}*>(args[{j}])[i];")
    j = len(kernel.inputs)
    for i, out in enumerate(kernel.outputs):
        if out is not None:
            t = _c_type(out[1])
            lines.append(f"    {t} &y{i} = static_cast<{t}*>(args[{j}])[i];")
            j += 1
    lines += ["    " + line for line in kernel.body().splitlines()]
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


class HostKernels:
    """Kernels compiled into one shared library with the host C++ compiler, callable on NumPy arrays."""

    FLAGS = ("-std=c++17", "-O2", "-ffp-contract=off", "-fno-fast-math", "-shared", "-fPIC")

    def __init__(self, kernels, tie: dict, directory: str, preamble: str = ""):
        self.kernels = list(kernels)
        source = shim(tie) + preamble + "".join(host_function(f"k{i}", k) for i, k in enumerate(self.kernels))
        cpp = os.path.join(directory, "kernels.cpp")
        library = os.path.join(directory, "kernels.so")
        with open(cpp, "w") as f:
            f.write(source)
        result = subprocess.run([host_compiler(), *self.FLAGS, cpp, "-o", library], capture_output=True, text=True)
        if result.returncode != 0:
            raise CompileError(result.stderr)
        self.library = ctypes.CDLL(library)

    def __call__(self, index: int, shape):
        """The outputs of kernel ``index`` on its recorded inputs, broadcast to ``shape``."""
        kernel = self.kernels[index]
        n = int(np.prod(shape))
        keep = []
        for _, dtype, value in kernel.inputs:
            if isinstance(value, np.ndarray) and value.ndim > 0:
                keep.append(np.ascontiguousarray(np.broadcast_to(value, shape), dtype=dtype))
            else:
                keep.append(np.array([value], dtype=dtype))
        outputs = [None if out is None else np.empty(shape, dtype=out[1]) for out in kernel.outputs]
        keep += [o for o in outputs if o is not None]
        pointers = (ctypes.c_void_p * len(keep))(*[a.ctypes.data for a in keep])
        getattr(self.library, f"k{index}")(pointers, ctypes.c_long(n))
        return tuple(outputs)


def temporary_directory():
    return tempfile.TemporaryDirectory(prefix="refimpl-host-kernels-")
