"""The interpreter of traced updates (refimpl/_vm.py, refimpl/_vm.cpp) against the readable path.

Below ``min_size`` elements, a NumPy step runs the readable update's trace in a compiled
interpreter, the trace reused from call to call with Python's arithmetic on numbers replayed and
every decision on them guarded. Each test here compares it with the readable function itself,
bit for bit (NaN equal to NaN), and checks that the interpreter really ran (a counting wrapper
around the extension), so that no comparison passes because both sides ran the same Python.

Covered: every option of every decorated function, whole optimizers over many steps (the step
count crossing the branches that depend on it), float32 and float64, sizes around one block,
sweeps with (K, 1, ...) hyperparameters, special values, Python's rules for ``**``, guards that
decide differently from one call to the next, results that are arguments returned unchanged,
layouts the interpreter leaves to NumPy, and NumPy's floating-point error reporting.
"""

from __future__ import annotations

import math
import operator

import array_api_compat.numpy as xp_numpy
import numpy as np
import pytest

import refimpl
import refimpl.fast as fast
from refimpl import _fuse, _vm
from refimpl.adal import adal_update
from refimpl.adam import adam_update
from refimpl.sgd import sgd_update

from test_fast_paths import COMPILER, CONFIGURATIONS, assert_bitwise, direct_calls, label, with_specials

needs_interpreter = pytest.mark.skipif(
    COMPILER is None or _vm.extension(COMPILER) is None,
    reason="no C++ compiler or Python headers here: small steps run the readable functions (tested elsewhere)")
pytestmark = needs_interpreter


class Counting:
    """The extension, with a count of the calls it answered with results (``ran``) and of those it
    handed back (``guard``: a guard decided otherwise; ``inputs``: not for the interpreter)."""

    def __init__(self, vm):
        self.vm, self.GUARD, self.INPUTS = vm, vm.GUARD, vm.INPUTS
        self.ran = self.guard = self.inputs = 0

    def run(self, code, constants, options, values):
        result = self.vm.run(code, constants, options, values)
        if type(result) is tuple:
            self.ran += 1
        elif result == self.GUARD:
            self.guard += 1
        else:
            self.inputs += 1
        return result


@pytest.fixture
def counting(monkeypatch):
    """A fresh interpreter state (no remembered traces) whose extension counts its calls."""
    counter = Counting(_vm.extension(COMPILER))
    monkeypatch.setattr(_vm, "extension", lambda compiler: counter if compiler else None)
    monkeypatch.setattr(_vm, "_programs", {})
    monkeypatch.setattr(_vm, "_refused", set())
    with fast.settings(compiler=COMPILER, interpreter=True, enabled=True):
        yield counter


def run_steps(opt, params, grads):
    state = opt.init(params)
    trajectory = []
    for g in grads:
        params, state = opt.step(params, g, state)
        trajectory.append((params, state))
    return tuple(trajectory)


def problem(opt, n, dtype, steps, seed=0):
    rng = np.random.default_rng(seed)
    shapes = {"w": (7, 5), "b": (n,)} if isinstance(opt, refimpl.NDAdam) else {"w": (n,), "b": (3, 5)}
    params = {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}
    grads = []
    for _ in range(steps):
        g = {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}
        g[next(iter(g))].reshape(-1)[::7] = 0  # zeros: where guards and maxima matter
        grads.append(g)
    return params, grads


# ----------------------------------------------------------------------------- optimizers


@pytest.mark.parametrize("opt", CONFIGURATIONS, ids=label)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_interpreted_steps_equal_the_readable_steps(opt, dtype, counting):
    """Every optimizer and option, 12 steps (schedules, ``t == 1`` and ``t + t_offset == 0``
    branches crossed), parameters of 1, 100 and 300 elements (one block is 256): the params and
    the state after every step."""
    for n in (1, 100, 300):
        params, grads = problem(opt, n, dtype, 12, seed=n)
        with fast.settings(enabled=False):
            readable = run_steps(opt, params, grads)
        assert_bitwise(run_steps(opt, params, grads), readable)
    assert counting.ran >= 12 * 3


def test_direct_calls_of_every_option(counting):
    """Each decorated function, called directly with every option (sweeps included), 7 and 257
    elements: the readable bits, each call answered by the interpreter."""
    for dtype in (np.float32, np.float64):
        for n in (7, 257):
            calls = direct_calls(dtype, n=n, seed=n)
            before = counting.ran
            for function, arrays, options in calls:
                assert_bitwise(function(*arrays, **options), function.__wrapped__(*arrays, **options))
            # The sweep's betas are (K, 1) arrays: beta**t of an array is a power of an array, which
            # the tracer refuses (pow's last bit is the library's), so that one call runs NumPy.
            assert counting.ran - before == len(calls) - 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_special_values(dtype, counting):
    """NaN, infinities, signed zeros, subnormals and huge values among the inputs, with NumPy's
    floating-point errors ignored (the interpreter's results are returned as they are)."""
    rng = np.random.default_rng(7)
    for n in (1, 13, 300):
        def array(nonnegative=False):
            return with_specials(rng, n, dtype, 3, nonnegative)

        calls = [
            (adam_update, (array(), array(), array(), array(True), array(True)),
             dict(t=3, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, amsgrad=True, weight_decay=0.01, xp=xp_numpy)),
            (adam_update, (array(), array(), array(), array(True), array(True)),
             dict(t=3, lr=1e-3, beta1=0.9, beta2=0.999, eps=0.0, amsgrad=True, amsgrad_max_of="v_hat", xp=xp_numpy)),
            (adal_update, (array(), array(), array(), array(True)),
             dict(c=np.abs(array()), t=2, lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8, eps_mode="preconditioner",
                  lr_decay="inv_sqrt", bias_correction=True, xp=xp_numpy)),
            (sgd_update, (array(), array(), array()),
             dict(t=2, lr=0.01, momentum=0.9, dampening=0.0, nesterov=True, weight_decay=0.01)),
        ]
        for function, arrays, options in calls:
            with np.errstate(all="ignore"):
                assert_bitwise(function(*arrays, **options), function.__wrapped__(*arrays, **options))
    assert counting.ran == 3 * 4


def test_floating_point_errors_are_reported_as_numpy_reports_them(counting):
    """An overflow warns by default and raises under np.errstate(over="raise"), as in the
    readable path: the interpreter reports the IEEE exceptions it raised, and where NumPy's
    settings would report one, NumPy redoes the call."""
    x = np.full(10, 1e308)
    options = dict(t=1, lr=1.0, beta1=0.9, beta2=0.999, eps=1e-8, xp=xp_numpy)
    with np.errstate(all="ignore"):  # the first call traces (and runs as written, to check the trace)
        assert_bitwise(adam_update(x, x, x, x, None, **options), adam_update.__wrapped__(x, x, x, x, None, **options))
        assert_bitwise(adam_update(x, x, x, x, None, **options), adam_update.__wrapped__(x, x, x, x, None, **options))
    with np.errstate(over="raise", invalid="ignore"), pytest.raises(FloatingPointError):
        adam_update(x, x, x, x, None, **options)
    with np.errstate(invalid="ignore"), pytest.warns(RuntimeWarning, match="overflow"):
        adam_update(x, x, x, x, None, **options)
    assert counting.ran == 4  # it ran each time; the last two times NumPy redid the call to report


# ----------------------------------------------------------------------------- numbers and guards


@fast.elementwise
def power_update(x, *, a, b, xp):
    """x * a**b: Python's ** on two numbers, then one array operation."""
    return (x * a ** b,)


POWERS = [(0.9, 7), (0.999, 0.5), (0.5, -3.0), (2.0, 0.25), (0.0, 3), (-0.0, 3), (-0.0, 2), (0.0, 2.5), (0.0, 0),
          (1.0, 1e308), (0.5, 1e6), (0.999, 710000), (0.999, 745000), (1.5, 1e300), (2.0, 1e6), (0.0, -1),
          (-2.0, 0.5), (-2.0, 3), (math.inf, 2), (math.nan, 0), (math.nan, 2), (2.0, math.nan), (1.0, math.nan),
          (2.0, math.inf), (0.5, -math.inf)]


def outcome(function, *args, **kwargs):
    try:
        return "value", function(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - the exception's type is the outcome
        return "raises", type(e)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_power_of_two_numbers_is_pythons(dtype, counting):
    """``a ** b`` on Python floats, replayed in the interpreter with CPython's rules (x**0 is 1,
    0**odd keeps the sign, underflow to 0 or to a subnormal is a value, overflow raises
    OverflowError, 0**negative raises ZeroDivisionError, a negative base with a fractional
    exponent is complex): the same value, or the same exception, from the readable run that
    the interpreter hands these to."""
    x = np.linspace(-2, 2, 9, dtype=dtype)
    for a, b in POWERS:
        with np.errstate(all="ignore"):  # 0 * inf and the like: NumPy's business, not the power's
            got = outcome(power_update, x, a=a, b=float(b), xp=xp_numpy)
            want = outcome(power_update.__wrapped__, x, a=a, b=float(b), xp=xp_numpy)
        assert got[0] == want[0], (a, b, got, want)
        if got[0] == "value":
            assert_bitwise(got[1], want[1])
        else:
            assert got[1] is want[1]
    # Not vacuous: the finite cases ran in the interpreter.
    assert counting.ran >= 12


def test_integer_numbers_stay_exact(counting):
    """A Python int meets arrays exactly as NumPy converts it; integer arithmetic that the double
    replay could not do exactly (beyond 2**53) is left to Python."""

    @fast.elementwise
    def update(x, *, k, xp):
        return (x * (k + 1), x / k)

    x = np.arange(1.0, 6.0, dtype=np.float32)
    for k in (3, 2**24 + 1, 2**52, 2**53 - 1, 2**53, 2**60, -(2**62)):
        assert_bitwise(update(x, k=k, xp=xp_numpy), update.__wrapped__(x, k=k, xp=xp_numpy))
    # 2**53 - 1 is exact, but k + 1 = 2**53 is where doubles stop telling integers apart: refused.
    assert counting.ran == 3 and counting.inputs == 4


def test_guards_decide_which_trace_runs(counting):
    """A decision on a number (``t == 1``, ``weight_decay == 0``, ``t + t_offset > 0``) is a
    guard: a call that decides otherwise gets its own trace, and each call gets the readable
    bits."""
    rng = np.random.default_rng(4)
    g = rng.standard_normal(50)
    b = rng.standard_normal(50)
    theta = rng.standard_normal(50)
    for t in (1, 2, 1, 3):
        for wd in (0.0, 0.01):
            options = dict(t=t, lr=0.1, momentum=0.9, dampening=0.0, nesterov=False, weight_decay=wd)
            assert_bitwise(sgd_update(theta, g, b, **options), sgd_update.__wrapped__(theta, g, b, **options))
    assert counting.ran == 8 and counting.guard > 0
    (programs,) = _vm._programs.values()
    assert len(programs) == 4  # (t == 1?) x (weight_decay == 0?)


def test_arguments_returned_unchanged_are_the_arguments(counting):
    """SGD's first step with momentum returns the gradient itself as the buffer (``b = g``): the
    interpreter returns that very object, as the readable function does, and the same array
    returned twice is one object."""
    g = np.arange(5.0)
    theta = np.ones(5)
    b = np.zeros(5)
    options = dict(t=1, lr=0.1, momentum=0.9, dampening=0.0, nesterov=False, weight_decay=0.0)
    new_theta, new_b = sgd_update(theta, g, b, **options)
    assert new_b is g and counting.ran == 1

    @fast.elementwise
    def twice(x, *, xp):
        y = x + 1.0
        return y, y

    first, second = twice(theta, xp=xp_numpy)
    assert first is second and counting.ran == 2


def test_what_the_interpreter_leaves_to_numpy(counting):
    """Layouts and types it does not cover run the readable function: strided, Fortran-ordered
    and byte-swapped arrays, 0-d arrays (NumPy returns scalars from them), arrays of other
    dtypes than the parameters', NumPy scalars as numbers, broadcasts other than a leading
    (K, 1, ...), subclasses of ndarray. Same results, none of them interpreted."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((8, 6))
    options = dict(t=2, lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8, xp=xp_numpy)
    cases = [
        ((x[:, ::2], x[:, ::2], x[:, ::2], x[:, ::2] ** 2, None), options),
        ((np.asfortranarray(x),) * 3 + (np.asfortranarray(x ** 2), None), options),
        ((x.astype(">f8"),) * 3 + ((x ** 2).astype(">f8"), None), options),
        ((np.float64(0.5), np.float64(0.1), np.float64(0.0), np.float64(0.0), None), options),
        ((x, x.astype(np.float32), x, x ** 2, None), options),
        ((x, x, x, x ** 2, None), dict(options, lr=np.float64(0.1))),
        ((x, x, x, x ** 2, None), dict(options, lr=np.full((1, 6), 0.1))),
        ((x.view(np.matrix), x, x, x ** 2, None), options),
    ]
    for arrays, opts in cases:
        got = adam_update(*arrays, **opts)
        want = adam_update.__wrapped__(*arrays, **opts)
        assert_bitwise(tuple(np.asarray(r) if r is not None else None for r in got),
                       tuple(np.asarray(r) if r is not None else None for r in want))
        assert type(got[0]) is type(want[0])
    assert counting.ran == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sweeps_broadcast_leading_axes(dtype, counting):
    """Hyperparameters of shape (K, 1), (K, 1, 1), (K, M, 1), (1,) and (1, 1) against parameters
    of shape (K, ...): the interpreter reads element i // inner of each; 40 steps of whole sweeps."""
    rng = np.random.default_rng(6)
    k = 9
    for shape, lr_shape in [((k, 40), (k, 1)), ((k, 3, 5), (k, 1, 1)), ((k, 3, 5), (k, 3, 1)), ((k, 4), (1,)),
                            ((k, 4), (1, 1)), ((k, 300), (k, 1))]:
        lr = (10.0 ** rng.uniform(-3, -1, lr_shape)).astype(dtype)
        eps = np.full(lr_shape, 1e-3, dtype)
        opt = refimpl.Adam(lr=lr, eps=eps, weight_decay=0.01, decoupled_weight_decay=True)
        x = rng.standard_normal(shape).astype(dtype)
        grads = [rng.standard_normal(shape).astype(dtype) for _ in range(40)]
        before = counting.ran
        with fast.settings(enabled=False):
            readable = run_steps(opt, x, grads)
        assert_bitwise(run_steps(opt, x, grads), readable)
        assert counting.ran - before == 40


def test_numbers_that_escape_make_the_function_untraceable():
    """A trace must see every use of a number: converting it (``float``, ``math.sqrt``), hashing
    it, or an integer power of integers refuses the trace, and the readable function runs."""
    x = np.ones(4)
    for body in (lambda a: x * float(a), lambda a: x * math.sqrt(a), lambda a: x * {a: 1}[a],
                 lambda a: x * operator.index(a)):
        with pytest.raises(_fuse.Unfusable):
            _fuse.trace(lambda y, *, a, xp: (body(a) + y,), (x,), dict(a=2, xp=xp_numpy), numbers=True)
    with pytest.raises(_fuse.Unfusable):
        _fuse.trace(lambda y, *, a, xp: (y * a ** 3,), (x,), dict(a=2, xp=xp_numpy), numbers=True)

    @fast.elementwise
    def escapes(y, *, a, xp):
        return (y * math.sqrt(a),)

    with fast.settings(compiler=COMPILER):
        for a in (2.0, 3.0):
            assert_bitwise(escapes(x, a=a, xp=xp_numpy), escapes.__wrapped__(x, a=a, xp=xp_numpy))


def test_the_guards_of_a_trace_are_recorded():
    """The trace of Adam's update records ``t > 0`` and ``weight_decay == 0`` as guards, with the
    decisions of the traced call, and ``beta ** t`` as Python's power."""
    x = np.ones(3)
    kernel = _fuse.trace(adam_update.__wrapped__, (x, x, x, x, None),
                         dict(t=2, lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, xp=xp_numpy),
                         numbers=True)
    guards = [operands for _, op, operands in kernel.scalars if op == "guard"]
    assert [(how, expected) for how, _, _, expected in guards] == [("==", True)] * 3 + [(">", True)]
    assert sum(op == "**" for _, op, _ in kernel.scalars) == 2


def test_no_compiler_or_no_interpreter_means_the_readable_function(monkeypatch):
    """Without a compiler (or with the interpreter switched off) small steps run the readable
    function, and nothing is traced."""
    monkeypatch.setattr(_vm, "_programs", {})
    x = np.ones(5)
    options = dict(t=1, lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8, xp=xp_numpy)
    for settings in ({"compiler": None}, {"interpreter": False}):
        with fast.settings(**settings):
            assert_bitwise(adam_update(x, x, x, x, None, **options), adam_update.__wrapped__(x, x, x, x, None, **options))
    assert _vm._programs == {}


def test_without_headers_or_a_working_compiler_there_is_no_interpreter(monkeypatch, tmp_path):
    """The interpreter is built on first use; where Python's headers are missing or the compiler
    fails, there is none (and small steps run the readable functions)."""
    import sysconfig
    assert _vm.extension.__wrapped__("false") is None  # a "compiler" that always fails
    monkeypatch.setattr(sysconfig, "get_paths", lambda: {"include": str(tmp_path)})
    assert _vm.extension.__wrapped__(COMPILER) is None


def test_threads_stepping_at_once_get_the_readable_bits(counting):
    """Several threads stepping their own optimizers through the interpreter at the same time
    (it holds the GIL and keeps no state between calls): each trajectory is the readable one."""
    import concurrent.futures
    import contextvars
    configurations = [refimpl.Adam(lr=0.05), refimpl.Adam(lr=0.05, amsgrad=True), refimpl.SGD(lr=0.05, momentum=0.9),
                      refimpl.AdaL(lr=0.05)]
    problems = [problem(opt, 300, np.float32, 50, seed=i) for i, opt in enumerate(configurations)]
    with fast.settings(enabled=False):
        readable = [run_steps(opt, *p) for opt, p in zip(configurations, problems)]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:  # each thread in a copy of this context's settings
        futures = [pool.submit(contextvars.copy_context().run, run_steps, opt, *p)
                   for opt, p in zip(configurations, problems)]
        for future, want in zip(futures, readable):
            assert_bitwise(future.result(), want)
    assert counting.ran >= 4 * 50


def test_a_trace_that_disagrees_with_the_function_is_not_kept(counting):
    """A function that decides on a number's *type* traces another branch than it runs (inside a
    trace a number is a symbol, not a float): the first call runs both, sees different bits,
    and from then on the function runs as written."""

    @fast.elementwise
    def typed(x, *, a, xp):
        if isinstance(a, float):
            return (x * a,)
        return (x + a,)

    x = np.arange(1.0, 5.0)
    for a in (2.0, 3.0, 0.5):
        assert_bitwise(typed(x, a=a, xp=xp_numpy), (x * a,))
    assert counting.ran == 1  # the check at the first call, never again
    assert all(programs == [] for programs in _vm._programs.values())


def test_empty_arrays(counting):
    """Parameters with no element: empty results of the right shape and dtype, interpreted."""
    for shape in ((0,), (0, 3), (4, 0)):
        x = np.zeros(shape, np.float32)
        options = dict(t=2, lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8, xp=xp_numpy)
        assert_bitwise(adam_update(x, x, x, x, None, **options), adam_update.__wrapped__(x, x, x, x, None, **options))
    assert counting.ran == 3


@fast.elementwise
def every_array_operation(x, y, *, a, xp):
    """Each array operation the interpreter runs, on arrays and numbers (a synthetic update)."""
    s = -x + xp.abs(y) * a - y / (x * x + 1.0)
    big = xp.maximum(x, y)
    small = xp.minimum(y, a)
    chosen = xp.where((x < y) & (x <= a) | ~(x >= 0.5), big, small)
    flags = (x == y) | (x != a) & (y > x)
    picked = xp.where(flags, xp.sqrt(xp.abs(s)), xp.zeros_like(x))
    filled = xp.where(x > y, xp.ones_like(y), 2.0 * a)
    return s, chosen, picked, filled, 1.0 - a * x


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_array_operation_is_numpys(dtype, counting):
    """Negation, absolute value, maximum, minimum, the six comparisons, and/or/not, where,
    ones_like/zeros_like, numbers on either side: NumPy's bits, on values that include NaN,
    signed zeros, infinities and subnormals (where the ordering of maximum and minimum and
    NaN's comparisons matter)."""
    rng = np.random.default_rng(8)
    specials = np.array([np.nan, 0.0, -0.0, np.inf, -np.inf, 1e-45, -5e-324, 0.5, 1.0, -1.0])
    for n in (1, 30, 300):
        x = rng.standard_normal(n)
        y = rng.standard_normal(n)
        x[rng.integers(0, n, n // 3 + 1)] = rng.choice(specials, n // 3 + 1)
        y[rng.integers(0, n, n // 3 + 1)] = rng.choice(specials, n // 3 + 1)
        with np.errstate(all="ignore"):
            x, y = x.astype(dtype), y.astype(dtype)
            for a in (0.5, -0.0, 3.0, math.inf, math.nan):
                assert_bitwise(every_array_operation(x, y, a=a, xp=xp_numpy),
                               every_array_operation.__wrapped__(x, y, a=a, xp=xp_numpy))
    assert counting.ran == 3 * 5


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_array_operation_in_the_compiled_kernels(dtype):
    """The same operations through the kernels compiled for large arrays (refimpl/_native.py),
    whose maximum and minimum follow the same rule for ties."""
    rng = np.random.default_rng(9)
    specials = np.array([np.nan, 0.0, -0.0, np.inf, -np.inf, 1e-45, -5e-324, 0.5, 1.0, -1.0])
    x = rng.choice(specials, 3000)
    y = rng.choice(specials, 3000)
    with np.errstate(all="ignore"):
        x, y = x.astype(dtype), y.astype(dtype)
        with fast.settings(min_size=1, interpreter=False, compiler=COMPILER):
            for a in (0.5, -0.0, math.nan):
                assert_bitwise(every_array_operation(x, y, a=a, xp=xp_numpy),
                               every_array_operation.__wrapped__(x, y, a=a, xp=xp_numpy))


def test_ties_of_maximum_and_minimum_are_the_librarys():
    """NumPy's maximum and minimum return one of two equal operands (0 and -0) by a rule of the
    platform; the tracer asks NumPy which, and the kernels follow it."""
    rule = {op: _fuse.tie_rule(xp_numpy, op) for op in ("maximum", "minimum")}
    zero, negative = np.zeros(1), -np.zeros(1)
    for op, rule_ in rule.items():
        f = getattr(np, op)
        expected = {"first": (True, False), "second": (False, True), "positive": (False, False),
                    "negative": (True, True)}[rule_]
        assert (bool(np.signbit(f(negative, zero))[0]), bool(np.signbit(f(zero, negative))[0])) == expected


@fast.elementwise
def every_number_operation(x, *, a, b, k, xp):
    """Python's arithmetic and decisions on numbers, replayed by the interpreter."""
    c = -a + abs(b) * 2 - a / (b * b + 1) + k * 3 - (k + 1) / 7 + 2 ** b - (abs(-k) + 1) ** 0.5
    if a:
        c = c + 1
    if b < a:
        c = c * 2
    if a <= k or b >= 0.25:
        c = c - 3
    if a == b or k != 2:
        c = c + 0.125
    return (x * c,)


def test_every_number_operation_is_pythons(counting):
    """Negation, abs, + - * / and ** on floats and ints, truth, the six comparisons: each
    computed as Python computes it, each decision a guard, on a grid of values crossing every
    decision (each combination traced once, then replayed)."""
    x = np.linspace(-1.0, 1.0, 5)
    values = [-2.5, -0.0, 0.0, 0.25, 0.75, 3.0, math.nan]
    for a in values:
        for b in values:
            for k in (-3, 0, 2):
                got = outcome(every_number_operation, x, a=a, b=b, k=k, xp=xp_numpy)
                want = outcome(every_number_operation.__wrapped__, x, a=a, b=b, k=k, xp=xp_numpy)
                assert got[0] == want[0]
                if got[0] == "value":
                    assert_bitwise(got[1], want[1])
    assert counting.ran >= 100 and counting.guard > 0
