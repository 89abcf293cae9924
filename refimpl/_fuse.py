"""One elementwise kernel from a readable per-array update: the CuPy fast path.

:func:`trace` runs the readable function once with *symbols* in place of its arrays. Python
numbers stay Python numbers, so every ``if`` on an option, every bias correction
``1 - beta**t`` and every schedule is evaluated exactly as in the readable run; each array
operation on a symbol records one line of C. Arrays that are not of the parameters' shape (a
sweep's ``(K, 1)`` hyperparameters) are computed by the real library as in the readable run and
enter the kernel as broadcast inputs; numbers enter as scalar inputs of the symbols' dtype (as
NumPy and CuPy convert a Python number meeting an array). The recorded lines become the body
of one ``cupy.ElementwiseKernel``: one pass over memory instead of one per line.

The kernel computes every operation that the readable CuPy code computes, in the same order and
the same dtype, with IEEE division and square root (NVRTC's defaults) and, by default,
``--fmad=false``: without it the compiler may contract ``a * b + c`` into a fused multiply-add,
which rounds once instead of twice (one rounding fewer per contraction, so within the error
bounds of ``tests/tolerances.py`` but not the readable path's bits).

A function that does something one elementwise kernel cannot (a reduction such as ND-Adam's
norms, a Python ``if`` on array values, mixed dtypes, a power of an array) raises
:class:`Unfusable` while being traced, and :func:`call` runs the readable function instead.

On the CPU nothing is compiled: the tests run the recorded operations one by one with NumPy
(``Kernel.steps``) and check them bitwise against the readable function, for every option.
"""

from __future__ import annotations

import functools
import numbers

import numpy as np

__all__ = ["Unfusable", "Kernel", "trace", "call"]


class Unfusable(Exception):
    """The update cannot be one elementwise kernel; the readable function runs instead."""


_C_TYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double", np.dtype(np.bool_): "bool"}

# Every operation is written as CuPy writes the ufunc that the readable code calls on CuPy arrays
# (cupy/_core/_routines_*.pyx, cupy/_math/misc.py), so that each line compiles to the instruction
# of that ufunc's kernel, with the same compiler options (tests/test_cuda_kernels.py).
_BINARY = {"+": "({a} + {b})", "-": "({a} - {b})", "*": "({a} * {b})", "/": "({a} / {b})",
           ">": "({a} > {b})", ">=": "({a} >= {b})", "<": "({a} < {b})", "<=": "({a} <= {b})",
           "==": "({a} == {b})", "!=": "({a} != {b})", "&": "({a} & {b})", "|": "({a} | {b})"}
_COMPARISONS = {">", ">=", "<", "<=", "==", "!="}
_LOGICAL = {"&", "|"}
# cupy.maximum and cupy.minimum on floats: NaN if either operand is NaN, else CUDA's max (min).
# CuPy's own formula, not a reimplementation: with -ftz=true (CuPy compiles every kernel with it)
# max.f32 flushes subnormal operands to zero before comparing, and picks between 0 and -0 by the
# hardware's rule; a comparison written here would return an unflushed subnormal on a tie.
_EXTREMUM = "((isnan({a}) | isnan({b})) ? {t}(NAN) : {t}({fn}({a}, {b})))"
_ABS = {"float": "fabsf({x})", "double": "fabs({x})"}
# CuPy's preamble of maximum/minimum: its NaN (the kernel's bits even for NaN).
PREAMBLE = "#ifndef NAN\n#define NAN __int_as_float(0x7fffffff)\n#endif\n"


class Kernel:
    """What a trace records: inputs, the C lines, and which values the function returns."""

    def __init__(self):
        self.inputs = []      # (name, dtype, value): symbols' arrays, scalars, broadcast arrays
        self.lines = []       # "const T nK = expression;"
        self.outputs = []     # (name, dtype) per result, None for a result that is None
        self.steps = []       # (name, op, operand names, dtype): the same operations, as data

    def add_input(self, prefix: str, dtype, value) -> str:
        name = f"{prefix}{len(self.inputs)}"
        self.inputs.append((name, np.dtype(dtype), value))
        return name

    def add_line(self, dtype, op: str, operands: tuple, expression: str) -> Symbol:
        name = f"n{len(self.lines)}"
        self.lines.append(f"const {_C_TYPES[np.dtype(dtype)]} {name} = {expression};")
        self.steps.append((name, op, operands, np.dtype(dtype)))
        return Symbol(self, name, dtype)

    def body(self) -> str:
        writes = [f"y{i} = {out[0]};" for i, out in enumerate(self.outputs) if out is not None]
        return "\n".join(self.lines + writes)

    def in_params(self) -> str:
        return ", ".join(f"{dtype.name} {name}" for name, dtype, _ in self.inputs)

    def out_params(self) -> str:
        return ", ".join(f"{out[1].name} y{i}" for i, out in enumerate(self.outputs) if out is not None)


def _is_scalar(value) -> bool:
    return isinstance(value, (int, float, np.generic))


class Symbol:
    """An array of the parameters' shape inside a trace; every operation records a line."""

    __array_ufunc__ = None    # NumPy: ``array * symbol`` defers to Symbol.__rmul__
    __array_priority__ = 1e6  # CuPy: the same

    def __init__(self, kernel: Kernel, name: str, dtype):
        self.kernel, self.name, self.dtype = kernel, name, np.dtype(dtype)

    def __bool__(self):
        raise Unfusable("a Python branch on array values")

    def _binary(self, other, op, reflected=False):
        other_name = _operand(self.kernel, other, self.dtype)
        a, b = (other_name, self.name) if reflected else (self.name, other_name)
        if op in _LOGICAL:
            if self.dtype != np.bool_:
                raise Unfusable(f"{op} on a {self.dtype} array")
            return self.kernel.add_line(np.bool_, op, (a, b), _BINARY[op].format(a=a, b=b))
        if self.dtype == np.bool_:
            raise Unfusable(f"arithmetic {op} on a boolean array")
        dtype = np.bool_ if op in _COMPARISONS else self.dtype
        return self.kernel.add_line(dtype, op, (a, b), _BINARY[op].format(a=a, b=b))

    def __add__(self, o): return self._binary(o, "+")
    def __radd__(self, o): return self._binary(o, "+", True)
    def __sub__(self, o): return self._binary(o, "-")
    def __rsub__(self, o): return self._binary(o, "-", True)
    def __mul__(self, o): return self._binary(o, "*")
    def __rmul__(self, o): return self._binary(o, "*", True)
    def __truediv__(self, o): return self._binary(o, "/")
    def __rtruediv__(self, o): return self._binary(o, "/", True)
    def __gt__(self, o): return self._binary(o, ">")
    def __ge__(self, o): return self._binary(o, ">=")
    def __lt__(self, o): return self._binary(o, "<")
    def __le__(self, o): return self._binary(o, "<=")
    def __eq__(self, o): return self._binary(o, "==")  # noqa: E704
    def __ne__(self, o): return self._binary(o, "!=")
    def __and__(self, o): return self._binary(o, "&")
    def __rand__(self, o): return self._binary(o, "&", True)
    def __or__(self, o): return self._binary(o, "|")
    def __ror__(self, o): return self._binary(o, "|", True)
    __hash__ = None

    def __neg__(self):
        if self.dtype == np.bool_:
            raise Unfusable("- on a boolean array")
        return self.kernel.add_line(self.dtype, "neg", (self.name,), f"(-{self.name})")

    def __invert__(self):
        if self.dtype != np.bool_:
            raise Unfusable(f"~ on a {self.dtype} array")
        return self.kernel.add_line(np.bool_, "not", (self.name,), f"(!{self.name})")

    def __pow__(self, o):
        raise Unfusable("a power of an array (pow is not correctly rounded: its bits depend on the library)")

    __rpow__ = __pow__


def _operand(kernel: Kernel, x, dtype) -> str:
    """The name of ``x`` inside the kernel, as an operand of an operation on a ``dtype`` symbol."""
    if isinstance(x, Symbol):
        if x.kernel is not kernel or x.dtype != dtype:
            raise Unfusable(f"an operation mixing {x.dtype} and {dtype}")
        return x.name
    if isinstance(x, bool) or not isinstance(x, (numbers.Real, np.generic)) and not hasattr(x, "dtype"):
        raise Unfusable(f"an operand of type {type(x).__name__}")
    if type(x) in (int, float):  # a Python number takes the array's dtype (NumPy 2 and CuPy agree)
        if dtype == np.bool_:
            raise Unfusable("a number meeting a boolean array")
        return kernel.add_input("s", dtype, x)
    if np.dtype(x.dtype) != dtype:  # a NumPy scalar or an array of another dtype would promote
        raise Unfusable(f"an operand of dtype {x.dtype} meeting a {dtype} array")
    return kernel.add_input("s" if _is_scalar(x) else "a", dtype, x)


class Namespace:
    """The array namespace inside a trace: elementwise functions of symbols record lines; called
    on real arrays only, every function is the real one."""

    def __init__(self, kernel: Kernel, real):
        self._kernel, self._real = kernel, real

    def __getattr__(self, name):
        real = getattr(self._real, name)
        if not callable(real):
            return real

        def only_real(*args, **kwargs):
            if any(isinstance(a, Symbol) for a in (*args, *kwargs.values())):
                raise Unfusable(f"xp.{name} is not elementwise (or not supported in a fused kernel)")
            return real(*args, **kwargs)
        return only_real

    def _uses_symbols(self, *args) -> bool:
        return any(isinstance(a, Symbol) for a in args)

    def sqrt(self, x):
        if not self._uses_symbols(x):
            return self._real.sqrt(x)
        if x.dtype == np.bool_:
            raise Unfusable("sqrt of a boolean array")
        return self._kernel.add_line(x.dtype, "sqrt", (x.name,), f"sqrt({x.name})")

    def abs(self, x):
        if not self._uses_symbols(x):
            return self._real.abs(x)
        if x.dtype == np.bool_:
            raise Unfusable("abs of a boolean array")
        return self._kernel.add_line(x.dtype, "abs", (x.name,), _ABS[_C_TYPES[x.dtype]].format(x=x.name))

    def _extremum(self, op, a, b):
        if not self._uses_symbols(a, b):
            return getattr(self._real, op)(a, b)
        symbol = a if isinstance(a, Symbol) else b
        if symbol.dtype == np.bool_:
            raise Unfusable(f"{op} of boolean arrays")
        na, nb = _operand(self._kernel, a, symbol.dtype), _operand(self._kernel, b, symbol.dtype)
        expression = _EXTREMUM.format(a=na, b=nb, t=_C_TYPES[symbol.dtype], fn=op[:3])
        return self._kernel.add_line(symbol.dtype, op, (na, nb), expression)

    def maximum(self, a, b):
        return self._extremum("maximum", a, b)

    def minimum(self, a, b):
        return self._extremum("minimum", a, b)

    def where(self, condition, a, b):
        if not self._uses_symbols(condition, a, b):
            return self._real.where(condition, a, b)
        if not isinstance(condition, Symbol) or condition.dtype != np.bool_:
            raise Unfusable("where with a condition that is not a boolean symbol")
        values = [x for x in (a, b) if isinstance(x, Symbol)]
        if not values:
            raise Unfusable("where choosing between two non-arrays")
        dtype = values[0].dtype
        na, nb = _operand(self._kernel, a, dtype), _operand(self._kernel, b, dtype)
        return self._kernel.add_line(dtype, "where", (condition.name, na, nb),
                                     f"({condition.name} ? {na} : {nb})")

    def ones_like(self, x, **kwargs):
        return self._constant_like(x, 1, kwargs)

    def zeros_like(self, x, **kwargs):
        return self._constant_like(x, 0, kwargs)

    def _constant_like(self, x, value, kwargs):
        if not isinstance(x, Symbol):
            return getattr(self._real, "ones_like" if value else "zeros_like")(x, **kwargs)
        if kwargs:
            raise Unfusable("ones_like/zeros_like with arguments")
        t = _C_TYPES[x.dtype]
        return self._kernel.add_line(x.dtype, "ones" if value else "zeros", (), f"({t}){value}")


def trace(update, arrays: tuple, options: dict, xp_name: str = "xp") -> Kernel:
    """Run ``update(*arrays, **options)`` on symbols; return the recorded :class:`Kernel`.

    The symbols stand for every array argument of the first argument's shape; the namespace
    argument ``xp_name`` is replaced by a :class:`Namespace` over the real one. Numbers, options
    and arrays of other shapes are passed as they are.
    """
    kernel = Kernel()
    shape = tuple(arrays[0].shape)

    def symbolic(x):
        if hasattr(x, "shape") and hasattr(x, "dtype") and not _is_scalar(x) and tuple(x.shape) == shape:
            if np.dtype(x.dtype) not in _C_TYPES:
                raise Unfusable(f"an array of dtype {x.dtype}")
            return Symbol(kernel, kernel.add_input("x", x.dtype, x), x.dtype)
        return x

    symbolic_arrays = [symbolic(x) for x in arrays]
    symbolic_options = {k: Namespace(kernel, x) if k == xp_name else symbolic(x) for k, x in options.items()}
    try:
        results = update(*symbolic_arrays, **symbolic_options)
    except Unfusable:
        raise
    except Exception as e:  # anything else a symbol cannot do (x.size, x.reshape, ...): not traceable
        raise Unfusable(f"{type(e).__name__}: {e}") from e
    for r in results:
        if r is None:
            kernel.outputs.append(None)
        elif isinstance(r, Symbol):
            kernel.outputs.append((r.name, r.dtype))
        else:
            raise Unfusable(f"a result that is not an array of the parameters' shape ({type(r).__name__})")
    return kernel


# ----------------------------------------------------------------------------- CuPy


def elementwise_kernel_arguments(in_params: str, out_params: str, body: str, fmad: bool) -> dict:
    """The keyword arguments of the ``cupy.ElementwiseKernel`` that runs a trace (the tests hand
    them to CuPy's source generator and compile the result with NVRTC, without a GPU)."""
    return dict(in_params=in_params, out_params=out_params, operation=body, name="refimpl_fused_update",
                preamble=PREAMBLE, options=() if fmad else ("--fmad=false",), return_tuple=True)


@functools.lru_cache(maxsize=256)
def _compiled(in_params: str, out_params: str, body: str, fmad: bool):
    import cupy
    return cupy.ElementwiseKernel(**elementwise_kernel_arguments(in_params, out_params, body, fmad))


def call(update, arrays: tuple, options: dict, *, fmad: bool = False):
    """``update(*arrays, **options)`` on CuPy arrays as one fused kernel, or the readable
    function where it cannot be one."""
    try:
        kernel = trace(update, arrays, options)
    except Unfusable:
        return update(*arrays, **options)
    if not kernel.outputs or all(out is None for out in kernel.outputs):
        return update(*arrays, **options)
    compiled = _compiled(kernel.in_params(), kernel.out_params(), kernel.body(), fmad)
    inputs = [np.dtype(dtype).type(value) if _is_scalar(value) else value for _, dtype, value in kernel.inputs]
    results = iter(compiled(*inputs))
    return tuple(None if out is None else next(results) for out in kernel.outputs)
