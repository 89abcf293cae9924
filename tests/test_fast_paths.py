"""The fast paths against the readable functions they evaluate (refimpl/fast.py, _fuse.py).

Every fast path runs the readable function's own operations. Elementwise IEEE arithmetic does
not depend on where a piece of an array starts or on how many elements are computed together,
so each path must give the readable function's bits (NaN equal to NaN):

* the readable function on blocks (large NumPy arrays): every option of every optimizer,
  float32 and float64, sizes that do not divide the block, NaN/Inf/zero/subnormal inputs;
* the trace (refimpl/_fuse.py): its recorded operations, run one by one with NumPy, are the
  readable ones, for every option; a trace kept for a signature and called again with other
  numbers gives the bits of a fresh trace (the kernel's launch replaced by those operations);
  tests/test_cuda_kernels.py compiles the kernels' CUDA source with NVRTC and their lines as host C++;
* on a GPU, the CuPy kernel: bitwise with ``--fmad=false`` (special values included), and within
  the rounding bounds of tests/tolerances.py with contraction allowed (skipped without a GPU);
* the cached validation of Optimizer.step: after a valid step has been remembered, bad input
  gets exactly the error it gets on a fresh optimizer, and the inputs stay untouched.

Speed is measured in benchmarks/, never here.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import pickle
import weakref

import array_api_compat.numpy as xp_numpy
import numpy as np
import pytest

import refimpl
import refimpl.fast as fast
from refimpl import _fuse
from refimpl.adal import adal_update
from refimpl.adam import adam_update
from refimpl.sgd import sgd_update

from tolerances import adam_step_bounds

# ----------------------------------------------------------------------------- configurations


def adam_configurations():
    """Every combination of Adam's options, schedules included."""
    fields = {f.name for f in dataclasses.fields(refimpl.Adam)}
    decays = [{}, {"weight_decay": 0.01}, {"weight_decay": 0.01, "decoupled_weight_decay": True}]
    if "couple_weight_decay" in fields:  # an option that may not exist in every version
        decays.append({"weight_decay": 0.01, "decoupled_weight_decay": True, "couple_weight_decay": False})
    amsgrads = [{}, {"amsgrad": True}, {"amsgrad": True, "amsgrad_max_of": "v_hat"}]
    configurations = []
    for decay, ams, eps_hat, bias, eps_root in itertools.product(decays, amsgrads, (False, True), (True, False),
                                                                 (0.0, 1e-10)):
        configurations.append(refimpl.Adam(lr=0.05, eps_hat=eps_hat, bias_correction=bias, eps_root=eps_root,
                                           **decay, **ams))
    configurations.append(refimpl.Adam(lr=lambda t: 0.05 / math.sqrt(t), beta1=lambda t: 0.9 * 0.99 ** (t - 1)))
    if "t_offset" in fields:
        configurations += [refimpl.Adam(lr=0.05, t_offset=-1), refimpl.Adam(lr=0.05, t_offset=1)]
    return configurations


def other_configurations():
    configurations = []
    for norm, eps_mode, lr_decay, bias in itertools.product(("global", "per_tensor", "per_element"),
                                                            ("preconditioner", "denominator"),
                                                            ("inv_sqrt", "none"), (True, False)):
        configurations.append(refimpl.AdaL(lr=0.05, norm=norm, eps_mode=eps_mode, lr_decay=lr_decay,
                                           bias_correction=bias))
    for momentum, dampening, nesterov, wd in itertools.product((0.0, 0.9), (0.0, 0.3), (False, True), (0.0, 0.01)):
        if nesterov and (momentum == 0 or dampening != 0):
            continue
        configurations.append(refimpl.SGD(lr=0.05, momentum=momentum, dampening=dampening, nesterov=nesterov,
                                          weight_decay=wd))
    configurations.append(refimpl.SGD(lr=lambda t: 0.05 / t, momentum=0.5))
    # ND-Adam: the scalar parameters go through adam_update (blocked); the vectors stay readable.
    for eps_hat in (False, True):
        configurations.append(refimpl.NDAdam(vector_axes={"w": (1,)}, lr_vector=0.05, lr_scalar=0.01,
                                             eps_hat=eps_hat, weight_decay_scalar=1e-3))
    return configurations


CONFIGURATIONS = adam_configurations() + other_configurations()


def label(opt) -> str:
    fields = [f"{f.name}={getattr(opt, f.name)!r}" for f in dataclasses.fields(opt)
              if not callable(getattr(opt, f.name)) and getattr(opt, f.name) != f.default]
    return f"{type(opt).__name__}({', '.join(fields)})"


def params_like(opt, n, dtype, rng):
    """Parameters with ``n`` elements in the big array, and the matching gradients."""
    if isinstance(opt, refimpl.NDAdam):
        shape = {"w": (7, 5), "b": (n,)}
    else:
        shape = {"w": (n,), "b": (3, 5)}
    params = {k: rng.standard_normal(s).astype(dtype) for k, s in shape.items()}
    grads = [{k: rng.standard_normal(s).astype(dtype) for k, s in shape.items()} for _ in range(4)]
    for g in grads:  # zeros, where guards and maxima matter
        g[next(iter(g))].reshape(-1)[::7] = 0
    return params, grads


def run(opt, params, grads):
    state = opt.init(params)
    for g in grads:
        params, state = opt.step(params, g, state)
    return params, state


def assert_bitwise(a, b):
    """Equal bits, except that any NaN equals any NaN (a NaN's sign and payload are not specified)."""
    a, b = refimpl.to_numpy(a), refimpl.to_numpy(b)
    if isinstance(a, dict) or (isinstance(a, tuple) and not hasattr(a, "dtype")):
        items_a = a.items() if isinstance(a, dict) else enumerate(a)
        for k, x in items_a:
            assert_bitwise(x, b[k])
        return
    if a is None or isinstance(a, int):
        assert a == b
        return
    assert a.dtype == b.dtype and a.shape == b.shape
    nan = np.isnan(a)
    assert np.array_equal(nan, np.isnan(b))
    bits = a.dtype.str.replace("f", "u")
    with np.errstate(all="ignore"):  # the message's difference may be inf - inf
        assert np.array_equal(a[~nan].view(bits), b[~nan].view(bits)), np.max(np.abs(a[~nan] - b[~nan]))


# ----------------------------------------------------------------------------- the CPU paths

@pytest.mark.parametrize("opt", CONFIGURATIONS, ids=label)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_blocked_steps_equal_the_readable_steps(opt, dtype):
    """The readable function on blocks of 1 KiB (256 or 128 elements) of 3001 elements (the last
    block is partial): every optimizer and option, a few steps."""
    params, grads = params_like(opt, 3001, dtype, np.random.default_rng(0))
    with fast.settings(enabled=False):
        readable = run(opt, params, grads)
    with fast.settings(block=1024, min_size=1):
        assert_bitwise(run(opt, params, grads), readable)


def direct_calls(dtype, n=257, seed=0):
    """(function, arrays, options) for every option of each decorated function."""
    rng = np.random.default_rng(seed)

    def array(nonnegative=False):
        x = rng.standard_normal(n).astype(dtype)
        x[::11] = 0
        return np.abs(x) if nonnegative else x

    calls = []
    fields = {f.name for f in dataclasses.fields(refimpl.Adam)}
    decays = [{}, {"weight_decay": 0.01}, {"weight_decay": 0.01, "decoupled_weight_decay": True}]
    if "couple_weight_decay" in fields:
        decays.append({"weight_decay": 0.01, "decoupled_weight_decay": True, "couple_weight_decay": False})
    for decay, ams, eps_hat, bias, eps_root in itertools.product(
            decays, [{}, {"amsgrad": True}, {"amsgrad": True, "amsgrad_max_of": "v_hat"}],
            (False, True), (True, False), (0.0, 1e-10)):
        v_max = array(True) if ams else None
        calls.append((adam_update, (array(), array(), array(), array(True), v_max),
                      dict(t=3, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, eps_hat=eps_hat, bias_correction=bias,
                           eps_root=eps_root, xp=xp_numpy, **decay, **ams)))
    # a sweep: (K, 1) step sizes and betas computed by the real library, broadcast into the kernel
    k = 16
    sweep = lambda: rng.standard_normal((k, n // k)).astype(dtype)  # noqa: E731
    calls.append((adam_update, (sweep(), sweep(), sweep(), np.abs(sweep()), None),
                  dict(t=5, lr=np.logspace(-3, -1, k, dtype=dtype)[:, None], beta1=np.full((k, 1), 0.9, dtype),
                       beta2=np.full((k, 1), 0.99, dtype), eps=1e-8, xp=xp_numpy)))
    for eps_mode, lr_decay, bias, per_element in itertools.product(("preconditioner", "denominator"),
                                                                   ("inv_sqrt", "none"), (True, False), (True, False)):
        c = np.abs(array()) if per_element else np.full((1,), 2.5, dtype)
        calls.append((adal_update, (array(), array(), array(), array(True)),
                      dict(c=c, t=2, lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8, eps_mode=eps_mode,
                           lr_decay=lr_decay, bias_correction=bias, xp=xp_numpy)))
    for t, momentum, dampening, nesterov, wd in itertools.product((1, 2), (0.0, 0.9), (0.0, 0.3), (False, True),
                                                                  (0.0, 0.01)):
        if nesterov and (momentum == 0 or dampening != 0):
            continue
        calls.append((sgd_update, (array(), array(), array() if momentum else None),
                      dict(t=t, lr=0.01, momentum=momentum, dampening=dampening, nesterov=nesterov,
                           weight_decay=wd)))
    return calls


def evaluate(kernel):
    """The operations a trace recorded, run one by one with NumPy's ufuncs (``a + b`` is np.add
    in the readable code, and so on), numbers entering as scalars of the dtype they meet."""
    ufuncs = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.true_divide, ">": np.greater,
              ">=": np.greater_equal, "<": np.less, "<=": np.less_equal, "==": np.equal, "!=": np.not_equal,
              "&": np.bitwise_and, "|": np.bitwise_or, "neg": np.negative, "not": np.invert, "sqrt": np.sqrt,
              "abs": np.absolute, "maximum": np.maximum, "minimum": np.minimum, "where": np.where}
    values = {name: dtype.type(value) if isinstance(value, (int, float)) else value
              for name, dtype, value in kernel.inputs}
    for name, op, operands, dtype in kernel.steps:
        if op in ("ones", "zeros"):
            values[name] = dtype.type(1 if op == "ones" else 0)
        else:
            values[name] = ufuncs[op](*[values[o] for o in operands])
    return tuple(None if out is None else values[out[0]] for out in kernel.outputs)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_trace_records_exactly_the_readable_operations(dtype):
    """What the tracer records is what the readable function computes: the recorded operations,
    run one by one with NumPy, give the readable bits, for every option of every decorated
    function (a check of the tracer that needs neither a compiler nor a GPU)."""
    for function, arrays, options in direct_calls(dtype):
        assert_bitwise(evaluate(_fuse.trace(function.__wrapped__, arrays, options)),
                       function.__wrapped__(*arrays, **options))


SPECIALS = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, 5e-324, 1e38, 1e308, -1.0, 1.0])


def with_specials(rng, n, dtype, share, nonnegative=False):
    """``n`` standard normal numbers of ``dtype``, about one in ``share`` replaced by one of SPECIALS
    (in float32 the huge ones overflow to infinity); made nonnegative if asked."""
    x = rng.standard_normal(n)
    x[rng.integers(0, n, size=max(1, n // share))] = rng.choice(SPECIALS, size=max(1, n // share))
    with np.errstate(all="ignore"):
        x = x.astype(dtype)
    return np.abs(x) if nonnegative else x


def every_operation(a, b, *, s, xp):
    """Each operation the tracer can record, with arrays and numbers on either side."""
    return (a + b, a - b, a * b, a / b, s - a, s / b, b * s, -a, xp.sqrt(a), xp.abs(a),
            xp.maximum(a, b), xp.minimum(a, b), xp.maximum(s, a), xp.minimum(a, s),
            xp.where((a > b) | (a <= s), a, b), xp.where((a >= b) & ~(a < b), s, b),
            xp.where((a == b) | (a != s), xp.ones_like(a), xp.zeros_like(b)))


def pairs(dtype):
    """Two arrays holding every pair of special values (so 0 meets -0, NaN meets infinity, a
    subnormal meets 0), then random numbers."""
    info = np.finfo(dtype)
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, info.smallest_subnormal, -info.smallest_subnormal,
                        info.smallest_normal / 3, info.smallest_normal, info.max, -info.max, 1.0, -1.0, 0.75],
                       dtype=dtype)
    a, b = (x.reshape(-1) for x in np.meshgrid(special, special))
    rng = np.random.default_rng(1)
    return np.concatenate([a, rng.standard_normal(64).astype(dtype)]), \
        np.concatenate([b, rng.standard_normal(64).astype(dtype)])


def kernel_calls(dtype, specials: bool):
    """(function, arrays, options): direct_calls (every option of every decorated function, and a
    sweep with (K, 1) hyperparameters), with special values in every array of the parameters'
    shape if asked, and every_operation on all pairs of special values, with two numbers."""
    rng = np.random.default_rng(7)
    out = []
    for function, arrays, options in direct_calls(dtype):
        shape = arrays[0].shape

        def special(x):
            if not specials or not isinstance(x, np.ndarray) or x.shape != shape:
                return x
            return with_specials(rng, x.size, dtype, 4, nonnegative=bool(np.all(x >= 0))).reshape(shape)
        out.append((function.__wrapped__, tuple(special(x) for x in arrays),
                    {k: special(x) for k, x in options.items()}))
    a, b = pairs(dtype)
    for s in (-0.0, 0.75):
        out.append((every_operation, (a, b), dict(s=s, xp=xp_numpy)))
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 7, 64, 1000, 4099])
def test_fast_functions_equal_the_readable_functions_on_special_values(n, dtype):
    """Each decorated function, called directly, with NaN, infinities, signed zeros, subnormals
    and huge values among its inputs, on sizes below, at and above one block."""
    rng = np.random.default_rng(n)

    def array(nonnegative=False):
        return with_specials(rng, n, dtype, 5, nonnegative)

    calls = [
        (adam_update, (array(), array(), array(), array(True), array(True)),
         dict(t=3, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, amsgrad=True, weight_decay=0.01, xp=xp_numpy)),
        (adam_update, (array(), array(), array(), array(True), None),
         dict(t=1, lr=np.full((1,), 0.1, dtype), beta1=0.9, beta2=0.999, eps=0.0, eps_hat=True, xp=xp_numpy)),
        (adal_update, (array(), array(), array(), array(True)),
         dict(c=np.abs(array()), t=2, lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8, eps_mode="preconditioner",
              lr_decay="inv_sqrt", bias_correction=True, xp=xp_numpy)),
        (adal_update, (array(), array(), array(), array(True)),
         dict(c=np.full((1,), 3.0, dtype), t=2, lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8, eps_mode="denominator",
              lr_decay="none", bias_correction=False, xp=xp_numpy)),
        (sgd_update, (array(), array(), array()),
         dict(t=2, lr=0.01, momentum=0.9, dampening=0.0, nesterov=True, weight_decay=0.01)),
        (sgd_update, (array(), array(), None), dict(t=1, lr=0.01, momentum=0.0, dampening=0.0, nesterov=False,
                                                    weight_decay=0.0)),
    ]
    for function, arrays, options in calls:
        with np.errstate(all="ignore"):
            readable = function.__wrapped__(*arrays, **options)
            with fast.settings(block=256, min_size=1):
                assert_bitwise(function(*arrays, **options), readable)


def test_the_blocks_are_what_runs():
    """The comparisons above are not vacuous: 3001 float32 elements in blocks of 1 KiB (256
    elements) make 12 calls of the function, the last one partial; below min_size the function
    is called once, whole; with the fast paths off, too."""
    calls = []

    @fast.elementwise
    def add(x, y):
        calls.append(x.size)
        return x + y, None

    x = np.arange(3001, dtype=np.float32)
    with fast.settings(block=1024, min_size=1):
        total, none = add(x, x)
    assert calls == [256] * 11 + [3001 - 11 * 256] and none is None
    assert_bitwise(total, 2 * x)
    for changes in ({"block": 1024, "min_size": 4000}, {"block": 1024, "min_size": 1, "enabled": False}):
        calls.clear()
        with fast.settings(**changes):
            add(x, x)
        assert calls == [3001]


def test_sweeps_leave_the_blocks_for_the_readable_function():
    """A (K, 1) hyperparameter cannot be cut into blocks with the parameters: the readable
    function runs whole (the same values either way)."""
    rng = np.random.default_rng(3)
    lrs = 10.0 ** rng.uniform(-3, -1, (50, 1))
    x, grads = rng.standard_normal((50, 40)), list(rng.standard_normal((3, 50, 40)))
    with fast.settings(enabled=False):
        readable = run(refimpl.Adam(lr=lrs), x, grads)
    with fast.settings(block=256, min_size=1):
        assert_bitwise(run(refimpl.Adam(lr=lrs), x, grads), readable)


def test_floating_point_errors_are_numpys():
    """An overflow in one block warns, or raises under np.errstate(over="raise"), as in the
    readable path (each block is the readable function on NumPy arrays)."""
    x = np.full(4096, 1e308)
    options = dict(t=1, lr=1.0, beta1=0.9, beta2=0.999, eps=1e-8, xp=xp_numpy)
    with np.errstate(over="raise", invalid="ignore"):  # (inf / inf follows the overflow)
        with pytest.raises(FloatingPointError):
            adam_update.__wrapped__(x, x, x, x, None, **options)
        with fast.settings(block=1024, min_size=1), pytest.raises(FloatingPointError):
            adam_update(x, x, x, x, None, **options)
    with np.errstate(invalid="ignore"), fast.settings(block=1024, min_size=1), \
            pytest.warns(RuntimeWarning, match="overflow"):
        adam_update(x, x, x, x, None, **options)
    with np.errstate(all="ignore"), fast.settings(block=1024, min_size=1):
        assert_bitwise(adam_update(x, x, x, x, None, **options), adam_update.__wrapped__(x, x, x, x, None, **options))


def test_settings_are_validated_and_restored():
    before = fast.current_settings()
    for bad in ({"block": 0}, {"min_size": -1}, {"min_size": 2.5}, {"enabled": "no"}, {"fmad": 1}):
        name = next(iter(bad))
        with pytest.raises(ValueError, match=f"{name}="):
            with fast.settings(**bad):
                pass
        assert fast.current_settings() == before
    with fast.settings(block=4096, enabled=False) as s:
        assert s.block == 4096 and fast.current_settings() == s
    assert fast.current_settings() == before


def test_the_readable_function_stays_reachable_and_documented():
    for function in (adam_update, adal_update, sgd_update):
        assert function.__wrapped__.__doc__ == function.__doc__
        assert function.__module__.startswith("refimpl.")


def test_what_cannot_be_one_kernel_is_refused_while_tracing():
    """ND-Adam's vector update reduces over axes; a power of an array is not correctly rounded;
    a Python branch on array values has no kernel: each raises Unfusable (and the caller then
    runs the readable function)."""
    from refimpl.ndadam import ndadam_vector_update
    w = np.ones((3, 4))
    with pytest.raises(_fuse.Unfusable):
        _fuse.trace(ndadam_vector_update, (w, w, w, np.ones((1, 4))),
                    dict(t=1, axes=(0,), lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8, eps_hat=False, xp=xp_numpy))
    with pytest.raises(_fuse.Unfusable):
        _fuse.trace(lambda x, *, xp: (x ** 2,), (w,), dict(xp=xp_numpy))
    with pytest.raises(_fuse.Unfusable):
        _fuse.trace(lambda x, *, xp: (x if x > 0 else -x,), (w,), dict(xp=xp_numpy))
    with pytest.raises(_fuse.Unfusable):
        _fuse.trace(lambda x, *, xp: (x * np.float64(2.0),), (w.astype(np.float32),), dict(xp=xp_numpy))


# ----------------------------------------------------------------------------- the trace cache (CuPy path)


class Launches:
    """_fuse.call with an empty trace cache and, in place of CuPy's kernel, the kernel's recorded
    operations run one by one with NumPy on the inputs the call hands it. ``traces`` counts the
    traces call makes (plain, and with numbers as symbols); ``fresh`` is a fresh trace's result."""

    def __init__(self, monkeypatch):
        self.traces = {False: 0, True: 0}
        self._trace = _fuse.trace
        monkeypatch.setattr(_fuse, "_CACHE", {})
        monkeypatch.setattr(_fuse, "_launch", self.launch)
        monkeypatch.setattr(_fuse, "trace", self.counted)

    def counted(self, *args, numbers=False, **kwargs):
        self.traces[numbers] += 1
        return self._trace(*args, numbers=numbers, **kwargs)

    @staticmethod
    def launch(kernel, source, inputs, fmad):
        assert source == (kernel.in_params(), kernel.out_params(), kernel.body())
        run = _fuse.Kernel()
        run.inputs = [(name, dtype, value) for (name, dtype, _), value in zip(kernel.inputs, inputs)]
        run.steps, run.outputs = kernel.steps, kernel.outputs
        return evaluate(run)

    def fresh(self, update, arrays, options):
        return evaluate(self._trace(update, arrays, options))


@pytest.fixture
def launches(monkeypatch):
    return Launches(monkeypatch)


def number_variants(options, count=6):
    """``count`` copies of ``options`` with other numbers: the step t in 1, 2, 7 and 10**6 (SGD
    decides on t == 1), every float option cycling through its value, a third of it and 0 (Adam
    and SGD decide on weight_decay == 0)."""
    floats = [k for k, v in options.items() if type(v) is float]
    for k in range(count):
        changed = dict(options, t=(1, 2, 7, 10**6)[k % 4])
        for j, name in enumerate(floats):
            changed[name] = (options[name], options[name] / 3, 0.0)[(k + j) % 3]
        yield changed


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_kept_trace_gives_the_bits_of_a_fresh_trace(dtype, launches):
    """Every option of every decorated function, called again and again with other numbers: the
    kernel kept for the signature, its inputs recomputed from the new numbers, gives the bits of
    a fresh trace and of the readable function. Most calls reuse a kept trace."""
    calls = 0
    for function, arrays, options in direct_calls(dtype):
        update = function.__wrapped__
        for changed in number_variants(options):
            with np.errstate(all="ignore"):
                readable = update(*arrays, **changed)
                assert_bitwise(launches.fresh(update, arrays, changed), readable)
                assert_bitwise(_fuse.call(update, arrays, changed), readable)
            calls += 1
    assert launches.traces[False] < calls / 2, (launches.traces, calls)


def test_what_the_cache_keeps_and_what_it_traces_again(launches):
    """Default Adam: traced once (and once with numbers), then every step reuses it. A decision
    on a number that goes otherwise (weight_decay == 0, SGD's t == 1) makes a second kept trace.
    A number whose value escapes (math.sqrt in Adam's eps_hat) and a (K, 1) hyperparameter that
    the array library computes with (a sweep's beta1) leave their signature traced at every call;
    a (K, 1) step size that enters the kernel as it is does not."""
    x = np.linspace(0.0, 1.0, 50)
    adam = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, xp=xp_numpy)
    for t in range(1, 6):
        assert_bitwise(_fuse.call(adam_update.__wrapped__, (x, x, x, x, None), dict(adam, t=t)),
                       adam_update.__wrapped__(x, x, x, x, None, **adam, t=t))
    assert launches.traces == {False: 1, True: 1}
    signature = _fuse._signature(adam_update.__wrapped__, (x, x, x, x, None), dict(adam, t=1, weight_decay=0.0))
    for wd in (0.0, 0.01, 0.02, 0.0):
        _fuse.call(adam_update.__wrapped__, (x, x, x, x, None), dict(adam, t=3, weight_decay=wd))
    assert len(_fuse._CACHE[signature]) == 2 and launches.traces == {False: 3, True: 3}
    sgd = dict(lr=0.1, momentum=0.9, dampening=0.0, nesterov=False, weight_decay=0.0)
    for t in (1, 2, 3, 1):
        assert_bitwise(_fuse.call(sgd_update.__wrapped__, (x, x, x), dict(sgd, t=t)),
                       sgd_update.__wrapped__(x, x, x, **sgd, t=t))
    assert launches.traces == {False: 5, True: 5}
    for t in (1, 2):
        _fuse.call(adam_update.__wrapped__, (x, x, x, x, None), dict(adam, t=t, eps_hat=True))
    assert _fuse._CACHE[_fuse._signature(adam_update.__wrapped__, (x, x, x, x, None),
                                         dict(adam, t=1, eps_hat=True))] is None
    assert launches.traces == {False: 7, True: 6}
    w = np.ones((50, 3))
    for sweep, traces in ((dict(adam, lr=np.full((50, 1), 1e-3), beta1=np.full((50, 1), 0.9)), {False: 9, True: 7}),
                          (dict(adam, lr=np.full((50, 1), 1e-3)), {False: 10, True: 8})):  # lr enters as it is
        for t in (1, 2):
            assert_bitwise(_fuse.call(adam_update.__wrapped__, (w, w, w, w, None), dict(sweep, t=t)),
                           adam_update.__wrapped__(w, w, w, w, None, **sweep, t=t))
        assert launches.traces == traces


def test_a_kept_trace_holds_no_array_of_the_call_that_made_it(launches):
    """On a GPU the arrays of a step are large: the cache keeps the kernel, not them."""
    x, c = np.ones(100), np.full((1,), 2.0)   # AdaL's scale c enters the kernel as it is
    options = dict(c=c, t=2, lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8, eps_mode="denominator",
                   lr_decay="none", bias_correction=True, xp=xp_numpy)
    _fuse.call(adal_update.__wrapped__, (x, x, x, x), options)
    assert any(_fuse._CACHE.values())
    alive = [weakref.ref(x), weakref.ref(c)]
    del x, c, options
    assert [r() for r in alive] == [None, None]


def test_a_trace_that_depends_on_a_numbers_type_is_not_kept(launches):
    """Inside the trace with numbers, a number is a symbol, not a float: a function that decides
    on the type gives another kernel there, which the check against the plain trace catches."""
    def scaled(x, *, a, xp):
        return (x * (a if type(a) is float else 2.0),)

    x = np.arange(4.0)
    for a in (0.5, 0.25):
        assert_bitwise(_fuse.call(scaled, (x,), dict(a=a, xp=xp_numpy)), (x * a,))
    assert _fuse._CACHE[_fuse._signature(scaled, (x,), dict(a=0.5, xp=xp_numpy))] is None


# ----------------------------------------------------------------------------- the fused kernel, on a GPU


def _gpu_reason():
    try:
        import cupy
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "CuPy finds no GPU"
    except Exception as e:  # not installed, or no driver
        return f"no GPU here (CuPy: {type(e).__name__}); the fused kernel runs only on CuPy arrays"
    return None


needs_gpu = pytest.mark.skipif(_gpu_reason() is not None, reason=_gpu_reason() or "")


@needs_gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_kernel_equals_the_readable_cupy_path_bitwise(dtype):
    """With --fmad=false every operation rounds as in CuPy's separate kernels: every option of
    every decorated function on arrays with special values, every operation on all pairs of
    special values (float32: both flush subnormals, CuPy compiling every kernel with -ftz=true),
    each called again with other numbers through the kept trace."""
    import array_api_compat
    import cupy
    on_gpu = lambda x: cupy.asarray(x) if isinstance(x, np.ndarray) else x  # noqa: E731
    for function, arrays, options in kernel_calls(dtype, specials=True):
        arrays = tuple(on_gpu(x) for x in arrays)
        options = {k: on_gpu(x) for k, x in options.items()}
        if "xp" in options:
            options["xp"] = array_api_compat.array_namespace(arrays[0])
        for changed in [options, *number_variants(options, count=3)] if function is not every_operation else [options]:
            readable = function(*arrays, **changed)
            fused = _fuse.call(function, arrays, changed, fmad=False)
            assert_bitwise(fused, readable)


@needs_gpu
@pytest.mark.parametrize("dtype, u", [(np.float32, 2.0**-24), (np.float64, 2.0**-53)])
def test_fused_kernel_with_contraction_is_within_the_rounding_bounds(dtype, u):
    """With --fmad=true NVRTC may turn a * b + c into fma(a, b, c): one rounding instead of two.
    Each contraction removes a rounding, so the result stays within the bounds of
    tests/tolerances.adam_step_bounds, which count every rounding of the unfused formula (and
    bound the difference of two implementations, each within its count), with the unit
    roundoff u of the dtype."""
    import array_api_compat
    import cupy
    rng = np.random.default_rng(5)
    theta, g, m = (rng.standard_normal(100_000) for _ in range(3))
    v = np.abs(rng.standard_normal(100_000))
    options = dict(t=7, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01)
    on_gpu = [cupy.asarray(x.astype(dtype)) for x in (theta, g, m, v)]
    xp = array_api_compat.array_namespace(on_gpu[0])
    fused = _fuse.call(adam_update.__wrapped__, (*on_gpu, None), dict(options, xp=xp), fmad=True)
    bound = adam_step_bounds(*(x.astype(dtype).astype(np.float64) for x in (theta, g, m, v)), t=7, lr=1e-3,
                             beta1=0.9, beta2=0.999, eps=1e-8, wd=0.01, u=u)
    readable = adam_update.__wrapped__(*(x.astype(dtype) for x in (theta, g, m, v)), None,
                                       **dict(options, xp=xp_numpy))
    for got, want, b in zip(fused[:3], readable[:3], bound):
        assert np.all(np.abs(cupy.asnumpy(got).astype(np.float64) - want.astype(np.float64)) <= b)


@needs_gpu
@pytest.mark.parametrize("opt", CONFIGURATIONS, ids=label)
def test_optimizers_on_cupy_take_the_fused_path_and_match_the_readable_one(opt):
    import cupy
    params, grads = params_like(opt, 3001, np.float32, np.random.default_rng(0))
    on_gpu = lambda tree: {k: cupy.asarray(x) for k, x in tree.items()}  # noqa: E731
    with fast.settings(enabled=False):
        readable = run(opt, on_gpu(params), [on_gpu(g) for g in grads])
    fused = run(opt, on_gpu(params), [on_gpu(g) for g in grads])
    assert_bitwise(fused, readable)


# ----------------------------------------------------------------------------- cached validation


def test_a_remembered_signature_still_gets_every_check_of_values():
    """After valid steps (their structure remembered), a bad step count, a zero-norm ND-Adam
    vector and a non-finite gradient under check_finite raise as on a fresh optimizer."""
    opt = refimpl.NDAdam(vector_axes={"w": (0,)})
    params = {"w": np.ones((3, 2)), "b": np.ones(2)}
    grads = {"w": np.full((3, 2), 0.5), "b": np.full(2, 0.5)}
    state = opt.init(params)
    for _ in range(2):
        params, state = opt.step(params, grads, state)
    with pytest.raises(ValueError, match="state.t=-1"):
        opt.step(params, grads, state._replace(t=-1))
    zero = {"w": params["w"].copy(), "b": params["b"]}
    zero["w"][:, 1] = 0
    with pytest.raises(ValueError, match="zero norm"):
        opt.step(zero, grads, state)
    bad = {"w": grads["w"], "b": np.array([np.nan, 0.5])}
    with pytest.raises(FloatingPointError, match=r"grads\['b'\]"):
        opt.step(params, bad, state, check_finite=True)


def test_a_remembered_signature_does_not_excuse_another_structure():
    """Every structural error after a remembered valid step is the error of a fresh optimizer."""
    def bad_calls(params, grads, state):
        yield {**params, "w": params["w"].astype(np.float32)}, grads, state        # params dtype
        yield params, {**grads, "w": grads["w"][:2]}, state                          # grads shape
        yield params, {"w": grads["w"]}, state                                       # grads keys
        yield params, grads, state._replace(m={"w": state.m["w"]})                   # state keys
        yield params, grads, state._replace(v={**state.v, "b": state.v["b"].astype(np.float32)})
        yield params, grads, tuple(state)                                            # not a state
        yield params, {**grads, "b": [0.5, 0.5]}, state                              # not an array
        yield params["w"], grads["w"], state                                         # array, not dict

    def error(opt, call):
        with pytest.raises((TypeError, ValueError)) as info:
            opt.step(*call)
        return type(info.value), str(info.value)

    params = {"w": np.ones((3, 2)), "b": np.ones(2)}
    grads = {"w": np.full((3, 2), 0.5), "b": np.full(2, 0.5)}
    warm = refimpl.Adam(lr=0.1)
    state = warm.init(params)
    warm.step(params, grads, state)
    for call in bad_calls(params, grads, state):
        assert error(warm, call) == error(refimpl.Adam(lr=0.1), call)


def test_optimizers_pickle_without_their_cache_and_replace_starts_a_new_one():
    opt = refimpl.Adam(lr=0.1)
    x = np.ones(3)
    opt.step(x, x, opt.init(x))
    copy = pickle.loads(pickle.dumps(opt))
    assert copy.lr == 0.1 and copy._namespaces == {}
    assert_bitwise(copy.step(x, x, copy.init(x)), opt.step(x, x, opt.init(x)))
    assert dataclasses.replace(opt, lr=0.2)._namespaces == {}
