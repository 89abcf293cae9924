"""One elementwise kernel from a readable per-array update: the CuPy fast path.

:func:`trace` runs the readable function once with *symbols* in place of its arrays. Python
numbers stay Python numbers, so every ``if`` on an option, every bias correction
``1 - beta**t`` and every schedule is evaluated exactly as in the readable run; each array
operation on a symbol records one line of C. Arrays that are not of the parameters' shape (a
sweep's ``(K, 1)`` hyperparameters) are computed by the real library as in the readable run and
enter the kernel as broadcast inputs; numbers enter as scalar inputs of the symbols' dtype (as
NumPy and CuPy convert a Python number meeting an array). The recorded lines become the body
of one ``cupy.ElementwiseKernel``: one pass over memory instead of one per line.

Each line is the code of the CuPy ufunc that the readable code calls (``cupy.maximum`` is
``isnan(a) | isnan(b) ? NAN : max(a, b)``, ``cupy.abs`` of a float ``fabsf(a)``, ...), and CuPy
compiles the kernel as it compiles its ufuncs: IEEE division and square root (NVRTC's defaults)
and ``-ftz=true``, so in float32 every operation flushes subnormal operands and results to zero
in the kernel exactly as in the readable CuPy code (and unlike NumPy; float64 keeps them). The
kernel adds ``--fmad=false`` by default: without it the compiler may contract ``a * b + c`` into
a fused multiply-add, which rounds once instead of twice (within the error bounds of
``tests/tolerances.py``, but not the readable path's bits).

A function that does something one elementwise kernel cannot (a reduction such as ND-Adam's
norms, a Python ``if`` on array values, mixed dtypes, a power of an array) raises
:class:`Unfusable` while being traced, and :func:`call` runs the readable function instead.

:func:`call` keeps each trace for the signature of its arguments (see there): a later step
redoes only the Python arithmetic on its numbers. To know that arithmetic, the function is
traced a second time with every number a :class:`Number`, which records it, and that trace is
kept only if it gives the same kernel with the same inputs, bit for bit, as the plain one.

On the CPU nothing is compiled. The tests run the recorded operations one by one with NumPy
(``Kernel.steps``), compile the source CuPy generates for each kernel with NVRTC, and compile its
lines as host C++ to check them bitwise against the readable function (tests/test_cuda_kernels.py).
"""

from __future__ import annotations

import functools
import numbers
import operator
import types

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
        self.origins = []     # per input: the argument it is (an index or an option name), or None
        self.lines = []       # "const T nK = expression;"
        self.outputs = []     # (name, dtype) per result, None for a result that is None
        self.steps = []       # (name, op, operand names, dtype): the same operations, as data
        self.program = []     # trace with numbers: Python's arithmetic and decisions on them

    def add_input(self, prefix: str, dtype, value, origin=None) -> str:
        name = f"{prefix}{len(self.inputs)}"
        self.inputs.append((name, np.dtype(dtype), value))
        self.origins.append(origin)
        return name

    def add_number_step(self, *step) -> int:
        """One step of the program on numbers: ("argument", origin), ("constant", value),
        (operator, i, j), ("guard", operator, i, j, result), ("truth", i, result); its index."""
        self.program.append(step)
        return len(self.program) - 1

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
    if isinstance(x, Number):
        if x.kernel is not kernel or dtype == np.bool_:
            raise Unfusable("a number meeting a boolean array")
        return kernel.add_input("s", dtype, x)
    if isinstance(x, bool) or not isinstance(x, (numbers.Real, np.generic)) and not hasattr(x, "dtype"):
        raise Unfusable(f"an operand of type {type(x).__name__}")
    if type(x) in (int, float):  # a Python number takes the array's dtype (NumPy 2 and CuPy agree)
        if dtype == np.bool_:
            raise Unfusable("a number meeting a boolean array")
        return kernel.add_input("s", dtype, x)
    if np.dtype(x.dtype) != dtype:  # a NumPy scalar or an array of another dtype would promote
        raise Unfusable(f"an operand of dtype {x.dtype} meeting a {dtype} array")
    return kernel.add_input("s" if _is_scalar(x) else "a", dtype, x)


_PYTHON = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv, "**": operator.pow,
           "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq,
           "!=": operator.ne, "neg": operator.neg, "abs": operator.abs}
_SWAPPED = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}


class Number:
    """A Python number argument inside a trace with ``numbers=True`` (the trace cache of :func:`call`).

    It carries its value, so every decision on it (``t > 0``, ``weight_decay == 0``) is taken as
    in the readable run and recorded as a *guard*, and every operation on it is Python's own on
    the value, recorded so that a later call can redo it on its own numbers. Anything that would
    let the value escape unrecorded (``float(x)``, ``math.sqrt(x)``, ``hash(x)``) raises
    :class:`Unfusable`: that signature is then traced at every call.
    """

    __array_ufunc__ = None    # NumPy: ``array * number`` defers to Number.__rmul__
    __array_priority__ = 1e6  # CuPy: the same

    def __init__(self, kernel: Kernel, index: int, value):
        self.kernel, self.index, self.value = kernel, index, value

    def __repr__(self):
        return f"Number(#{self.index}={self.value!r})"

    def _index_of(self, other) -> int:
        if isinstance(other, Number) and other.kernel is self.kernel:
            return other.index
        if type(other) in (int, float):
            return self.kernel.add_number_step("constant", other)
        raise Unfusable(f"a traced number meeting {type(other).__name__}")

    def _arithmetic(self, other, op, reflected=False):
        if isinstance(other, Symbol):
            if op == "**":
                raise Unfusable("a power of an array (pow is not correctly rounded: its bits depend on the library)")
            return other._binary(self, op, not reflected)
        i, j = self.index, self._index_of(other)
        a, b = self.value, other.value if isinstance(other, Number) else other
        if reflected:
            i, j, a, b = j, i, b, a
        value = _PYTHON[op](a, b)  # Python's arithmetic: the readable run's value, or its error
        if type(value) not in (int, float):
            raise Unfusable(f"a number of type {type(value).__name__}")
        return Number(self.kernel, self.kernel.add_number_step(op, i, j), value)

    def _compare(self, other, op):
        if isinstance(other, Symbol):
            return other._binary(self, _SWAPPED[op])
        j = self._index_of(other)
        result = bool(_PYTHON[op](self.value, other.value if isinstance(other, Number) else other))
        self.kernel.add_number_step("guard", op, self.index, j, result)
        return result

    def __add__(self, o): return self._arithmetic(o, "+")
    def __radd__(self, o): return self._arithmetic(o, "+", True)
    def __sub__(self, o): return self._arithmetic(o, "-")
    def __rsub__(self, o): return self._arithmetic(o, "-", True)
    def __mul__(self, o): return self._arithmetic(o, "*")
    def __rmul__(self, o): return self._arithmetic(o, "*", True)
    def __truediv__(self, o): return self._arithmetic(o, "/")
    def __rtruediv__(self, o): return self._arithmetic(o, "/", True)
    def __pow__(self, o): return self._arithmetic(o, "**")
    def __rpow__(self, o): return self._arithmetic(o, "**", True)
    def __lt__(self, o): return self._compare(o, "<")
    def __le__(self, o): return self._compare(o, "<=")
    def __gt__(self, o): return self._compare(o, ">")
    def __ge__(self, o): return self._compare(o, ">=")
    def __eq__(self, o): return self._compare(o, "==")  # noqa: E704
    def __ne__(self, o): return self._compare(o, "!=")

    def __neg__(self):
        return Number(self.kernel, self.kernel.add_number_step("neg", self.index, None), -self.value)

    def __abs__(self):
        return Number(self.kernel, self.kernel.add_number_step("abs", self.index, None), abs(self.value))

    def __pos__(self):
        return self

    def __bool__(self):
        result = bool(self.value)
        self.kernel.add_number_step("truth", self.index, result)
        return result

    def _escapes(self, *args):
        raise Unfusable("a traced number used where its value would escape the trace")

    __float__ = __int__ = __index__ = __complex__ = __round__ = __trunc__ = __floor__ = __ceil__ = _escapes
    __floordiv__ = __rfloordiv__ = __mod__ = __rmod__ = __divmod__ = __rdivmod__ = _escapes
    __hash__ = __format__ = _escapes


numbers.Real.register(Number)  # is_zero and _core.sqrt see a number (math.sqrt then escapes)


def replay(program: list, arrays: tuple, options: dict) -> list | None:
    """The program's values on this call's numbers, or None where a decision goes otherwise."""
    values = []
    for step in program:
        kind = step[0]
        if kind == "argument":
            origin = step[1]
            values.append(arrays[origin] if type(origin) is int else options[origin])
        elif kind == "constant":
            values.append(step[1])
        elif kind == "guard":
            if bool(_PYTHON[step[1]](values[step[2]], values[step[3]])) != step[4]:
                return None
            values.append(None)
        elif kind == "truth":
            if bool(values[step[1]]) != step[2]:
                return None
            values.append(None)
        elif step[2] is None:
            values.append(_PYTHON[kind](values[step[1]]))
        else:
            values.append(_PYTHON[kind](values[step[1]], values[step[2]]))
    return values


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


def trace(update, arrays: tuple, options: dict, xp_name: str = "xp", numbers: bool = False) -> Kernel:
    """Run ``update(*arrays, **options)`` on symbols; return the recorded :class:`Kernel`.

    The symbols stand for every array argument of the first argument's shape; the namespace
    argument ``xp_name`` is replaced by a :class:`Namespace` over the real one. Options and arrays
    of other shapes are passed as they are, and so are numbers, unless ``numbers``: then each
    Python int or float argument is a :class:`Number`, and ``kernel.program`` records what the
    function does with it.
    """
    kernel = Kernel()
    shape = tuple(arrays[0].shape)

    def symbolic(x, origin):
        if hasattr(x, "shape") and hasattr(x, "dtype") and not _is_scalar(x) and tuple(x.shape) == shape:
            if np.dtype(x.dtype) not in _C_TYPES:
                raise Unfusable(f"an array of dtype {x.dtype}")
            return Symbol(kernel, kernel.add_input("x", x.dtype, x, origin), x.dtype)
        if numbers and type(x) in (int, float):
            return Number(kernel, kernel.add_number_step("argument", origin), x)
        return x

    symbolic_arrays = [symbolic(x, i) for i, x in enumerate(arrays)]
    symbolic_options = {k: Namespace(kernel, x) if k == xp_name else symbolic(x, k) for k, x in options.items()}
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


class _Entry:
    """A kernel kept for a signature of arguments: its C source, where each of its inputs comes
    from in a call (an argument, a constant, or a value of the program on numbers)."""

    def __init__(self, kernel: Kernel, arrays: tuple, options: dict):
        self.kernel = kernel
        self.source = (kernel.in_params(), kernel.out_params(), kernel.body())
        arguments = list(enumerate(arrays)) + list(options.items())
        self.origins = []
        for (_, dtype, value), origin in zip(kernel.inputs, kernel.origins):
            if isinstance(value, Number):
                self.origins.append(("number", value.index, dtype))
            elif type(value) in (int, float):
                self.origins.append(("constant", dtype.type(value), dtype))
            else:  # an array: one of the arguments itself, not something computed from them
                if origin is None:
                    origin = next((where for where, x in arguments if x is value), None)
                if origin is None:
                    raise Unfusable("an input computed from the arguments by the array library")
                self.origins.append(("argument", origin, dtype))

    def inputs(self, arrays: tuple, options: dict) -> list | None:
        """The kernel's inputs for a call with this signature, or None if a decision differs."""
        values = replay(self.kernel.program, arrays, options)
        if values is None:
            return None
        return [dtype.type(values[x]) if kind == "number" else x if kind == "constant"
                else arrays[x] if type(x) is int else options[x] for kind, x, dtype in self.origins]


_CACHE: dict = {}      # signature -> [_Entry, ...], or None: its numbers cannot be traced
_ENTRIES_PER_SIGNATURE = 8
_SIGNATURES = 1024


class _NoSignature(Exception):
    pass


def _kind(x):
    """What a trace may depend on in an argument, besides the values of numbers and arrays."""
    t = type(x)
    if t is int or t is float:
        return t
    if x is None or t is bool or t is str or t is types.ModuleType:
        return t, x
    if hasattr(x, "shape") and hasattr(x, "dtype") and not isinstance(x, np.generic):
        return t, x.dtype, tuple(x.shape)
    raise _NoSignature


def _signature(update, arrays: tuple, options: dict):
    try:
        return (update, *(_kind(x) for x in arrays), *((k, _kind(x)) for k, x in options.items()))
    except _NoSignature:
        return None


def _remember(signature, update, arrays: tuple, options: dict, kernel: Kernel) -> None:
    """Trace again with numbers as :class:`Number`; keep that trace if it is this kernel with
    these inputs, bit for bit (else the signature is traced at every call)."""
    try:
        entry = _Entry(trace(update, arrays, options, numbers=True), arrays, options)
        replayed = entry.inputs(arrays, options)
        same = (replayed is not None and entry.source == (kernel.in_params(), kernel.out_params(), kernel.body())
                and entry.kernel.outputs == kernel.outputs
                and all(r is value if not _is_scalar(value) else
                        np.dtype(dtype).type(value).tobytes() == r.tobytes()
                        for r, (_, dtype, value) in zip(replayed, kernel.inputs)))
    except Exception:  # Unfusable, or anything the numbers' arithmetic raises
        same = False
    if len(_CACHE) >= _SIGNATURES:
        _CACHE.pop(next(iter(_CACHE)))
    if not same:
        _CACHE[signature] = None
    elif len(_CACHE.setdefault(signature, [])) < _ENTRIES_PER_SIGNATURE:
        # keep the kernel, not this call's arrays (on a GPU, gigabytes)
        entry.kernel.inputs = [(name, dtype, None) for name, dtype, _ in entry.kernel.inputs]
        _CACHE[signature].append(entry)


def _launch(kernel: Kernel, source: tuple, inputs: list, fmad: bool) -> tuple:
    results = iter(_compiled(*source, fmad)(*inputs))
    return tuple(None if out is None else next(results) for out in kernel.outputs)


def call(update, arrays: tuple, options: dict, *, fmad: bool = False):
    """``update(*arrays, **options)`` on CuPy arrays as one fused kernel, or the readable
    function where it cannot be one.

    The trace is kept per signature: the function, each array's type, dtype and shape, each
    number's type, and every other option's value. A later call with that signature redoes only
    the Python arithmetic on its numbers (the program the trace recorded), checks that every
    decision on them goes the same way, and launches the kept kernel; otherwise it is traced.
    """
    signature = _signature(update, arrays, options)
    entries = _CACHE.get(signature, ()) if signature is not None else None
    for entry in entries or ():
        try:
            inputs = entry.inputs(arrays, options)
        except Exception:  # the numbers' arithmetic fails: the trace below fails as the readable run does
            inputs = None
        if inputs is not None:
            return _launch(entry.kernel, entry.source, inputs, fmad)
    try:
        kernel = trace(update, arrays, options)
    except Unfusable:
        return update(*arrays, **options)
    if not kernel.outputs or all(out is None for out in kernel.outputs):
        return update(*arrays, **options)
    if entries is not None:
        _remember(signature, update, arrays, options, kernel)
    inputs = [np.dtype(dtype).type(value) if _is_scalar(value) else value for _, dtype, value in kernel.inputs]
    return _launch(kernel, (kernel.in_params(), kernel.out_params(), kernel.body()), inputs, fmad)
