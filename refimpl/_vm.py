"""Small arrays: the readable update, traced once and replayed by a compiled interpreter.

On small arrays a step's time is Python's, not arithmetic's: each line of a readable update is a
NumPy call that costs about half a microsecond before it computes anything. This path calls
Python once per step instead of once per line, and keeps the readable function as the only
definition of the algorithm:

1. The first call with a given *signature* (the function, the names and types of its
   arguments, the values of its options: booleans, strings, ``None``) traces it with
   :func:`refimpl._fuse.trace` (``numbers=True``): arrays are symbols, and so are the Python
   numbers (``t``, ``lr``, ...), so that the trace records the arithmetic on numbers
   (``1 - beta1**t``) and every decision taken on them (``t > 0``, ``weight_decay == 0``) as a
   guard.
2. :func:`assemble` turns the trace into a program: int32 instructions and float64 constants.
3. Every call with that signature runs the program in ``refimpl/_vm.cpp``, an interpreter
   compiled once per machine by the system's C++ compiler and imported as an extension module.
   It reads the numbers, replays their arithmetic as Python does (in double precision, with
   Python's rules for ``**``), checks the guards, and runs the array operations in the traced
   order, one IEEE operation per element, on blocks that stay in cache: NumPy's bits.

A call whose numbers decide a guard differently is traced again (a few variants are kept per
signature); anything the interpreter does not cover (a non-contiguous array, a broadcast other
than a sweep's ``(K, 1, ...)``, a value Python would raise on, NumPy scalars, a function that
cannot be traced) runs the readable function. IEEE exceptions are reported as NumPy reports
them: where ``np.errstate`` would warn or raise, the call is redone by NumPy, which does.
``tests/test_fast_paths.py`` checks the interpreter bitwise against the readable functions for
every option, over many steps, sweeps, schedules and special values.
"""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
import os
import sys
import sysconfig

import numpy as np

from . import _fuse, _native

__all__ = ["Program", "assemble", "call", "extension"]

_SOURCE = os.path.join(os.path.dirname(__file__), "_vm.cpp")
# -O2 with vectorization runs as fast as -O3 here and compiles in 2.8 s instead of 4.5 s.
# -fno-math-errno lets sqrt be one vector instruction; pow, whose errno the interpreter reads as
# CPython does, is called through a pointer the compiler cannot see through (see _vm.cpp).
_FLAGS = ("-O2", "-ftree-vectorize", "-fvect-cost-model=dynamic", "-ffp-contract=off", "-fno-fast-math",
          "-fno-math-errno", "-fPIC", "-shared", "-std=c++17")
_VERSION = 2
_VARIANTS = 64         # programs kept per function and keyword names (options, dtypes, guards)
_SIGNATURES = 4096     # (function, keyword names) remembered before the table is cleared

# Opcodes: the enums of _vm.cpp.
ARRAY, NUMBER_FLOAT, NUMBER_INT, CONSTANT, OPTION = 1, 2, 3, 4, 5
D_OPS = {"+": 10, "-": 11, "*": 12, "/": 13, "**": 14, "neg": 15, "abs": 16}
D_EXACT_INT, GUARD_COMPARE, GUARD_TRUTH, CAST = 17, 18, 19, 30
V_OPS = {"+": 40, "-": 41, "*": 42, "/": 43, "neg": 44, "abs": 45, "sqrt": 46, "maximum": 47, "minimum": 48}
V_COMPARE, V_WHERE, B_AND, B_OR, B_NOT, V_FILL = 49, 50, 51, 52, 53, 54
COMPARE = {"<": 0, "<=": 1, ">": 2, ">=": 3, "==": 4, "!=": 5}
OUT_NONE, OUT_VECTOR, OUT_INPUT, OUT_SAME = 0, 1, 2, 3
DTYPES = {np.dtype(np.float32): 0, np.dtype(np.float64): 1}


@functools.lru_cache(maxsize=None)
def extension(compiler: str | None):
    """The interpreter module, compiled on first use (cached on disk like the kernels of
    :mod:`refimpl._native`), or ``None`` without a compiler, Python's headers or NumPy's."""
    include, numpy_include = sysconfig.get_paths().get("include"), np.get_include()
    if not compiler or not include or not os.path.exists(os.path.join(include, "Python.h")):
        return None
    with open(_SOURCE) as f:
        # The first line keys the cache to this Python and NumPy (the module's binary interface).
        source = f"// {sys.implementation.cache_tag} {sys.version} numpy {np.__version__}\n" + f.read()
    library = _native._build(compiler, source, (*_FLAGS, f"-I{include}", f"-I{numpy_include}"))
    if library is None:
        return None
    try:
        loader = importlib.machinery.ExtensionFileLoader("_refimpl_vm", library)
        spec = importlib.util.spec_from_file_location("_refimpl_vm", library, loader=loader)
        module = importlib.util.module_from_spec(spec)
        loader.exec_module(module)
    except ImportError:
        return None
    return module if getattr(module, "VERSION", None) == _VERSION else None


class Program:
    """A trace as the interpreter's input: ``code`` (int32 words), ``constants`` (float64) and
    ``options`` (the arguments that are neither arrays nor numbers, as traced)."""

    __slots__ = ("code", "constants", "options")

    def __init__(self, code: bytes, constants: bytes, options: tuple):
        self.code, self.constants, self.options = code, constants, options


def assemble(kernel) -> Program:
    """The program of a trace made with ``numbers=True``; raises :class:`~refimpl._fuse.Unfusable`
    for what the interpreter does not run (several float dtypes, boolean results)."""
    first = next((name for name, _, _ in kernel.inputs if kernel.positions.get(name) == 0), None)
    if first is None:
        raise _fuse.Unfusable("the first argument is not an array")
    dtype = dict((name, dtype) for name, dtype, _ in kernel.inputs)[first]
    if dtype not in DTYPES:
        raise _fuse.Unfusable(f"dtype {dtype}")
    D, T, V, B = {}, {}, {}, {}
    prologue, casts, body, constants = [], [], [], []

    def register(table, name):
        table.setdefault(name, len(table))
        return table[name]

    # Options first: a call with other options fails at once.
    for i, (position, _) in enumerate(kernel.options):
        prologue.append((OPTION, 0, position, i, 0))
    # Arrays, the first one first: it fixes the shape.
    for name, input_dtype, _ in sorted(kernel.inputs, key=lambda i: i[0] != first):
        if input_dtype != dtype:
            raise _fuse.Unfusable(f"arrays of dtypes {dtype} and {input_dtype}")
        prologue.append((ARRAY, register(V, name), kernel.positions[name], 0, 0))
    # Numbers: arguments, constants, their arithmetic and the guards, in the traced order.
    for name, op, operands in kernel.scalars:
        if op == "argument":
            position, is_int = operands
            prologue.append((NUMBER_INT if is_int else NUMBER_FLOAT, register(D, name), position, 0, 0))
        elif op == "constant":
            constants.append(operands[0])
            prologue.append((CONSTANT, register(D, name), len(constants) - 1, 0, 0))
        elif op in D_OPS:
            prologue.append((D_OPS[op], register(D, name), *(D[o] for o in operands), *(0,) * (3 - len(operands))))
        elif op == "exact_int":
            prologue.append((D_EXACT_INT, 0, D[operands[0]], 0, 0))
        elif op == "guard":
            how, a, b, expected = operands
            prologue.append((GUARD_COMPARE, 0, D[a], D[b], 2 * COMPARE[how] + int(expected)))
        elif op == "truth":
            prologue.append((GUARD_TRUTH, 0, D[operands[0]], int(operands[1]), 0))
        else:
            raise _fuse.Unfusable(f"a number operation {op}")

    for name, number, cast_dtype in kernel.casts:
        if cast_dtype != dtype:
            raise _fuse.Unfusable(f"a number cast to {cast_dtype}")
        casts.append((CAST, register(T, name), D[number], 0, 0))

    def operand(name):
        return V[name] if name in V else -1 - T[name]

    for name, op, operands, step_dtype in kernel.steps:
        if step_dtype == np.bool_:
            if op in COMPARE:
                body.append((V_COMPARE, register(B, name), operand(operands[0]), operand(operands[1]), COMPARE[op]))
            elif op in ("&", "|"):
                body.append((B_AND if op == "&" else B_OR, register(B, name), B[operands[0]], B[operands[1]], 0))
            elif op == "not":
                body.append((B_NOT, register(B, name), B[operands[0]], 0, 0))
            else:
                raise _fuse.Unfusable(f"a boolean {op}")
            continue
        if step_dtype != dtype:
            raise _fuse.Unfusable(f"an operation in {step_dtype}")
        if op in ("maximum", "minimum"):  # c: which operand wins a tie, as the library decides
            body.append((V_OPS[op], register(V, name), *(operand(o) for o in operands),
                         _fuse.TIE_RULES.index(kernel.ties[name])))
        elif op in V_OPS:
            body.append((V_OPS[op], register(V, name), *(operand(o) for o in operands), *(0,) * (3 - len(operands))))
        elif op == "where":
            condition, a, b = operands
            body.append((V_WHERE, register(V, name), B[condition], operand(a), operand(b)))
        elif op in ("ones", "zeros"):
            constants.append(1.0 if op == "ones" else 0.0)
            number = f"k{len(constants)}"
            D[number] = len(D)
            prologue.append((CONSTANT, D[number], len(constants) - 1, 0, 0))
            casts.append((CAST, register(T, number), D[number], 0, 0))
            body.append((V_FILL, register(V, name), -1 - T[number], 0, 0))
        else:
            raise _fuse.Unfusable(f"an array operation {op}")

    outputs, seen = [], {}
    for i, out in enumerate(kernel.outputs):
        if out is None:
            outputs.append((OUT_NONE, 0))
        elif out[1] != dtype:
            raise _fuse.Unfusable(f"a result of dtype {out[1]}")
        elif out[0] in seen:                # the same array returned twice: the same object twice
            outputs.append((OUT_SAME, seen[out[0]]))
        elif out[0] in kernel.positions:    # an argument returned unchanged: the argument itself
            outputs.append((OUT_INPUT, kernel.positions[out[0]]))
        else:
            outputs.append((OUT_VECTOR, V[out[0]]))
        if out is not None:
            seen.setdefault(out[0], i)
    arguments = len(kernel.positions) + len(kernel.options) + sum(op == "argument" for _, op, _ in kernel.scalars)
    header = (_VERSION, DTYPES[dtype], len(D), len(T), len(V), len(B), len(prologue), len(casts), len(body),
              len(outputs), arguments)
    words = [*header, *(w for instruction in (*prologue, *casts, *body) for w in instruction),
             *(w for output in outputs for w in output)]
    return Program(np.array(words, dtype=np.int32).tobytes(), np.array(constants, dtype=np.float64).tobytes(),
                   tuple(value for _, value in kernel.options))


# ----------------------------------------------------------------------------- calls

_programs: dict = {}   # (function, keyword names) -> [Program, ...], the last one to run first
_refused: set = set()  # calls the tracer refused: (function, keyword names, their types and options)


def call(update, arrays: tuple, options: dict, compiler: str):
    """``update(*arrays, **options)`` through the interpreter, or ``None`` where the caller must
    run the readable function.

    The programs of ``update`` with these keyword names are tried in turn; each checks, in C,
    that it was traced for arguments of these types, dtypes and options and that its guards
    hold. When none applies, the call is traced into a new one.
    """
    vm = extension(compiler)
    if vm is None:
        return None
    values = (*arrays, *options.values())
    key = (update, tuple(options))
    programs = _programs.get(key)
    if programs is None:
        if len(_programs) >= _SIGNATURES:
            _programs.clear()
        programs = _programs[key] = []
    for i, program in enumerate(programs):
        result = vm.run(program.code, program.constants, program.options, values)
        if type(result) is tuple:
            if i:  # the program of the moment goes first
                programs.insert(0, programs.pop(i))
            return _results(result)
        if result == vm.INPUTS:
            return None
    if len(programs) >= _VARIANTS:
        return None
    refusal = (key, tuple(v.dtype if type(v) is np.ndarray else v if type(v) in _fuse._OPTION_TYPES else type(v)
                          for v in values))
    if refusal in _refused:
        return None
    try:
        program = assemble(_fuse.trace(update, arrays, options, numbers=True))
    except _fuse.Unfusable:
        program = None
    # The first call of a new program also runs as written: the program is kept only if it gives
    # the same results (a function that decided on a number's type, say, traced another branch).
    readable = update(*arrays, **options)
    result = None if program is None else vm.run(program.code, program.constants, program.options, values)
    if type(result) is tuple and _same(result[1:], readable):
        programs.insert(0, program)
    elif type(result) is tuple or program is None:
        if len(_refused) >= _SIGNATURES:
            _refused.clear()
        _refused.add(refusal)  # the readable function, for calls like this one, from now on
    return readable


def _same(got: tuple, want) -> bool:
    """The same results: the same objects where ``want`` returns arguments or ``None``, else
    arrays of the same dtype, shape and bits (any NaN equals any NaN)."""
    if type(want) is not tuple or len(want) != len(got):
        return False
    for a, b in zip(got, want):
        if a is b:
            continue
        if type(a) is not np.ndarray or type(b) is not np.ndarray or a.dtype != b.dtype or a.shape != b.shape:
            return False
        nan = np.isnan(a)
        if not (np.array_equal(nan, np.isnan(b)) and
                np.array_equal(a[~nan].view(f"u{a.itemsize}"), b[~nan].view(f"u{b.itemsize}"))):
            return False
    return True


def _results(result: tuple):
    """The results, or ``None`` (NumPy runs the call) when an IEEE exception was raised that
    ``np.errstate`` does not ignore: NumPy then warns or raises as it would."""
    flags = result[0]
    if flags:
        state = np.geterr()
        if any(flags & bit and state[name] != "ignore" for bit, name in _native.ERRORS.items()):
            return None
    return result[1:]
