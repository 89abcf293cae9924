"""Bad input gets a clear error, and leaves every input untouched.

The contract: a bad hyperparameter, option, parameter tree, gradient tree or state raises a
``ValueError``/``TypeError`` (exactly that class) whose message names the argument and contains
the offending value, before anything is computed, so ``params``, ``grads``, the state (its
moments and its ``t``) and any array hyperparameter are bitwise what they were. NaN/Inf in the
gradients propagate by default; ``step(..., check_finite=True)`` raises ``FloatingPointError``
naming the parameter.

Every test goes through :func:`check_error`, which asserts the three things at once: the exact
exception class, the fragments of the message, and that the snapshotted trees did not change.
"""

from __future__ import annotations

import math

import array_api_strict as xs
import numpy as np
import pytest

import refimpl
from refimpl import SGD, AdaL, Adam, NDAdam

OPTIMIZERS = ["Adam", "NDAdam", "AdaL", "SGD"]
WITH_BETAS = ["Adam", "NDAdam", "AdaL"]

# The step-size fields of each optimizer (ND-Adam has two).
LR_FIELDS = [("Adam", "lr"), ("NDAdam", "lr_vector"), ("NDAdam", "lr_scalar"), ("AdaL", "lr"), ("SGD", "lr")]

# The first moment field of each optimizer's state, as named in error messages.
FIRST_MOMENT = {"Adam": "m", "NDAdam": "m", "AdaL": "m", "SGD": "momentum_buffer"}


def make(name: str, **hyper):
    """An optimizer for the standard tree below: ND-Adam treats ``w``'s columns as weight
    vectors and ``b`` as a scalar parameter; SGD has momentum, so that its state holds arrays."""
    if name == "Adam":
        return Adam(**hyper)
    if name == "NDAdam":
        hyper.setdefault("vector_axes", {"w": (0,)})
        return NDAdam(**hyper)
    if name == "AdaL":
        return AdaL(**hyper)
    if name == "SGD":
        hyper.setdefault("momentum", 0.9)
        return SGD(**hyper)
    raise ValueError(name)


def tree(w_shape=(3, 2), b_shape=(2,), *, seed=0, dtype=np.float64, keys=("w", "b")):
    """A deterministic ``{"w": ..., "b": ...}`` with no zero entries (so no zero-norm vector)."""
    rng = np.random.default_rng(seed)
    shapes = dict(zip(keys, (w_shape, b_shape)))
    return {k: (rng.uniform(0.5, 1.5, size=s) * rng.choice([-1.0, 1.0], size=s)).astype(dtype)
            for k, s in shapes.items()}


# ----------------------------------------------------------------------------- the helpers


def snapshot(x):
    """A deep NumPy copy of a tree: an array, a dict of trees, a NamedTuple state whose fields
    are trees / ``None`` / the int ``t``, a number, or ``None``."""
    if x is None or isinstance(x, (bool, int, float, str)):
        return ("value", type(x), x)
    if isinstance(x, tuple) and hasattr(x, "_fields"):
        return ("state", type(x), {f: snapshot(getattr(x, f)) for f in x._fields})
    if isinstance(x, dict):
        return ("dict", list(x), {k: snapshot(v) for k, v in x.items()})
    if isinstance(x, (list, tuple)):
        return ("seq", type(x), [snapshot(v) for v in x])
    if callable(x) and not hasattr(x, "shape"):
        return ("value", type(x), x)
    arr = np.array(refimpl.to_numpy(x), copy=True)
    return ("array", type(x), arr)


def assert_same(before, x, where="tree"):
    """``x`` is bitwise what :func:`snapshot` recorded (NaN equal to NaN)."""
    kind, meta, data = before
    if kind == "value":
        assert type(x) is meta and (x is data or x == data or (isinstance(x, float) and math.isnan(x)
                                                                 and math.isnan(data))), \
            f"{where} changed: {data!r} -> {x!r}"
    elif kind == "state":
        assert type(x) is meta, f"{where} changed type: {meta.__name__} -> {type(x).__name__}"
        for f, sub in data.items():
            assert_same(sub, getattr(x, f), f"{where}.{f}")
    elif kind == "dict":
        assert isinstance(x, dict) and list(x) == meta, f"{where} keys changed: {meta} -> {list(x)}"
        for k, sub in data.items():
            assert_same(sub, x[k], f"{where}[{k!r}]")
    elif kind == "seq":
        assert type(x) is meta and len(x) == len(data), f"{where} changed"
        for i, sub in enumerate(data):
            assert_same(sub, x[i], f"{where}[{i}]")
    else:
        assert type(x) is meta, f"{where} changed type"
        now = refimpl.to_numpy(x)
        assert now.shape == data.shape and now.dtype == data.dtype, \
            f"{where} changed shape/dtype: {data.shape} {data.dtype} -> {now.shape} {now.dtype}"
        equal_nan = np.issubdtype(data.dtype, np.inexact)
        assert np.array_equal(now, data, equal_nan=equal_nan), f"{where} changed values"


def check_error(exc_type, call, fragments, untouched=()):
    """Run ``call()``; assert it raises exactly ``exc_type`` with every string of ``fragments``
    in its message, and that every tree in ``untouched`` is bitwise unchanged. Returns the
    message."""
    before = [snapshot(x) for x in untouched]
    states_t = [x.t for x in untouched if isinstance(x, tuple) and hasattr(x, "_fields")]
    with pytest.raises(exc_type) as info:
        call()
    assert type(info.value) is exc_type, f"raised {type(info.value).__name__}, not {exc_type.__name__}"
    msg = str(info.value)
    for fragment in fragments:
        assert fragment in msg, f"{fragment!r} is not in the message {msg!r}"
    for i, (b, x) in enumerate(zip(before, untouched)):
        assert_same(b, x, f"argument {i}")
    assert [x.t for x in untouched if isinstance(x, tuple) and hasattr(x, "_fields")] == states_t
    return msg


def stepped_state(opt, params, grads, n):
    """The state after ``n`` valid steps (with the same gradient each time)."""
    state = opt.init(params)
    for _ in range(n):
        _, state = opt.step(params, grads, state)
    return state


def test_snapshot_helper_detects_changes():
    """The helper itself: it sees an in-place change, a changed ``t`` and a replaced moment."""
    opt = Adam()
    params, grads = tree(), tree(seed=1)
    state = stepped_state(opt, params, grads, 1)
    snap = snapshot((params, grads, state))
    assert_same(snap, (params, grads, state))
    nan_tree = {"a": np.array([np.nan, 1.0])}
    assert_same(snapshot(nan_tree), nan_tree)
    params["w"][0, 0] += 1
    with pytest.raises(AssertionError):
        assert_same(snap, (params, grads, state))
    params["w"][0, 0] -= 1
    with pytest.raises(AssertionError):
        assert_same(snap, (params, grads, state._replace(t=2)))
    with pytest.raises(AssertionError):
        assert_same(snap, (params, grads, state._replace(m={"w": state.m["w"], "b": state.m["b"] + 1})))
    with pytest.raises(AssertionError):
        assert_same(snapshot(np.zeros(2, np.float32)), np.zeros(2, np.float64))


# ----------------------------------------------------------------------------- hyperparameters


@pytest.mark.parametrize("value, shown", [(-0.1, "-0.1"), (math.nan, "nan"), (math.inf, "inf"),
                                          (-math.inf, "-inf")])
@pytest.mark.parametrize("name, field", LR_FIELDS)
def test_bad_step_size(name, field, value, shown):
    kwargs = {field: value}
    check_error(ValueError, lambda: make(name, **kwargs), [f"{field}={shown}", "[0, inf)"], [kwargs])


@pytest.mark.parametrize("value, shown", [(1.0, "1.0"), (1.5, "1.5"), (-0.1, "-0.1"), (math.nan, "nan"),
                                          (math.inf, "inf")])
@pytest.mark.parametrize("field", ["beta1", "beta2"])
@pytest.mark.parametrize("name", WITH_BETAS)
def test_beta_outside_unit_interval(name, field, value, shown):
    kwargs = {field: value}
    check_error(ValueError, lambda: make(name, **kwargs), [f"{field}={shown}", "[0, 1)"], [kwargs])


@pytest.mark.parametrize("value, shown", [(-1e-8, "-1e-08"), (math.nan, "nan"), (math.inf, "inf")])
@pytest.mark.parametrize("name", WITH_BETAS)
def test_bad_eps(name, value, shown):
    kwargs = {"eps": value}
    check_error(ValueError, lambda: make(name, **kwargs), [f"eps={shown}"], [kwargs])


@pytest.mark.parametrize("name, field, value, shown", [
    ("Adam", "eps_root", -1.0, "eps_root=-1.0"),
    ("Adam", "weight_decay", -0.5, "weight_decay=-0.5"),
    ("NDAdam", "weight_decay_scalar", -0.5, "weight_decay_scalar=-0.5"),
    ("SGD", "momentum", -0.9, "momentum=-0.9"),
    ("SGD", "dampening", 1.5, "dampening=1.5"),
    ("SGD", "dampening", -0.5, "dampening=-0.5"),
    ("SGD", "weight_decay", -1e-4, "weight_decay=-0.0001"),
])
def test_other_bad_hyperparameters(name, field, value, shown):
    kwargs = {field: value}
    check_error(ValueError, lambda: make(name, **kwargs), [shown], [kwargs])


@pytest.mark.parametrize("value, shown", [("0.1", "'0.1'"), (True, "True"), (None, "None"),
                                          (np.array([[1], [2]]), "int64"),
                                          (np.array([[0.1], [0.2]], dtype=np.complex128), "complex128")])
@pytest.mark.parametrize("name, field", LR_FIELDS)
def test_hyperparameter_of_wrong_type(name, field, value, shown):
    kwargs = {field: value}
    check_error(TypeError, lambda: make(name, **kwargs), [field, shown], [kwargs])


@pytest.mark.parametrize("name, field", [("Adam", "beta2"), ("Adam", "eps"), ("NDAdam", "beta1"),
                                         ("AdaL", "beta2"), ("SGD", "momentum")])
def test_schedule_where_none_is_allowed(name, field):
    kwargs = {field: lambda t: 0.5}
    check_error(TypeError, lambda: make(name, **kwargs), [field, "schedule"], [kwargs])


@pytest.mark.parametrize("bad, shown", [(-0.1, "-0.1"), (math.nan, "nan"), (math.inf, "inf")])
@pytest.mark.parametrize("name, field", LR_FIELDS)
def test_array_step_size_with_a_bad_element(name, field, bad, shown):
    lr = np.array([[0.1], [bad], [0.2]])                               # a sweep over K = 3
    kwargs = {field: lr}
    check_error(ValueError, lambda: make(name, **kwargs), [field, shown, "(3, 1)"], [kwargs])


@pytest.mark.parametrize("name", WITH_BETAS)
def test_array_beta_with_a_bad_element(name):
    beta2 = np.array([[0.999], [1.0]])
    kwargs = {"beta2": beta2}
    check_error(ValueError, lambda: make(name, **kwargs), ["beta2", "1.0", "(2, 1)"], [kwargs])


def test_array_step_size_with_a_bad_element_on_array_api_strict():
    lr = xs.asarray([[0.1], [-0.25]])
    check_error(ValueError, lambda: Adam(lr=lr), ["lr", "-0.25", "(2, 1)"], [lr])


@pytest.mark.parametrize("h_shape, p_shape", [((3,), (2, 4)), ((2, 1), (4,)), ((1, 2, 4), (2, 4)),
                                              ((3, 1), (2, 4))])
@pytest.mark.parametrize("name, field", LR_FIELDS)
def test_array_hyperparameter_that_does_not_broadcast(name, field, h_shape, p_shape):
    """Checked at step: the shape of params is not known before."""
    kwargs = {field: np.full(h_shape, 0.1)}
    if name == "NDAdam":
        kwargs["vector_axes"] = (len(p_shape) - 1,)
    opt = make(name, **kwargs)
    rng = np.random.default_rng(0)
    params, grads = rng.uniform(0.5, 1.5, p_shape), rng.normal(size=p_shape)
    state = opt.init(params)
    check_error(ValueError, lambda: opt.step(params, grads, state),
                [field, str(h_shape), str(p_shape), "broadcast"], [params, grads, state, kwargs])


# ----------------------------------------------------------------------------- schedules


@pytest.mark.parametrize("bad, shown", [(-0.1, "-0.1"), (math.nan, "nan"), (math.inf, "inf")])
@pytest.mark.parametrize("name, field", LR_FIELDS)
def test_schedule_turning_bad_at_step_3(name, field, bad, shown):
    kwargs = {field: lambda t: 0.01 if t < 3 else bad}
    opt = make(name, **kwargs)
    params, grads = tree(), tree(seed=1)
    state = stepped_state(opt, params, grads, 2)
    assert state.t == 2
    check_error(ValueError, lambda: opt.step(params, grads, state),
                [f"{field}={shown}", f"{field}(t)", "t=3"], [params, grads, state])


def test_beta1_schedule_turning_bad_at_step_3():
    opt = Adam(beta1=lambda t: 0.9 if t < 3 else 1.0)
    params, grads = tree(), tree(seed=1)
    state = stepped_state(opt, params, grads, 2)
    check_error(ValueError, lambda: opt.step(params, grads, state), ["beta1=1.0", "t=3"], [params, grads, state])


@pytest.mark.parametrize("name, field", LR_FIELDS)
def test_schedule_returning_an_array_with_a_bad_element(name, field):
    kwargs = {field: lambda t: np.array([0.1]) if t < 2 else np.array([0.1, -0.5])[1:]}
    opt = make(name, **kwargs)
    params, grads = tree(), tree(seed=1)
    state = stepped_state(opt, params, grads, 1)
    check_error(ValueError, lambda: opt.step(params, grads, state), [field, "-0.5", "t=2"],
                [params, grads, state])


@pytest.mark.parametrize("value, shown", [(None, "None"), ("0.1", "'0.1'"), (np.array([1]), "int64")])
@pytest.mark.parametrize("name, field", LR_FIELDS)
def test_schedule_returning_a_non_number(name, field, value, shown):
    kwargs = {field: lambda t: value}
    opt = make(name, **kwargs)
    params, grads = tree(), tree(seed=1)
    state = opt.init(params)
    check_error(TypeError, lambda: opt.step(params, grads, state), [field, shown, "t=1"], [params, grads, state])


@pytest.mark.parametrize("h_shape, p_shape", [((2, 1), (4,)), ((3,), (2, 4))])
@pytest.mark.parametrize("name", ["Adam", "AdaL", "SGD"])
def test_schedule_returning_an_array_that_does_not_broadcast(name, h_shape, p_shape):
    opt = make(name, lr=lambda t: np.full(h_shape, 0.1))
    rng = np.random.default_rng(0)
    params, grads = rng.uniform(0.5, 1.5, p_shape), rng.normal(size=p_shape)
    state = opt.init(params)
    check_error(ValueError, lambda: opt.step(params, grads, state), ["lr", str(h_shape), str(p_shape)],
                [params, grads, state])


def test_schedule_returning_an_array_of_another_library():
    opt = Adam(lr=lambda t: np.full((1,), 0.1))
    params = xs.asarray([1.0, 2.0])
    grads = xs.asarray([0.5, -0.5])
    state = opt.init(params)
    check_error(TypeError, lambda: opt.step(params, grads, state), ["lr", "different libraries"],
                [params, grads, state])


# ----------------------------------------------------------------------------- options


@pytest.mark.parametrize("name, field, value, shown", [
    ("Adam", "amsgrad_max_of", "x", "amsgrad_max_of='x'"),
    ("Adam", "amsgrad", "yes", "amsgrad='yes'"),
    ("Adam", "eps_hat", 1, "eps_hat=1"),
    ("Adam", "bias_correction", None, "bias_correction=None"),
    ("Adam", "decoupled_weight_decay", "True", "decoupled_weight_decay='True'"),
    ("Adam", "couple_weight_decay", "no", "couple_weight_decay='no'"),
    ("Adam", "t_offset", -2, "t_offset=-2"),
    ("Adam", "t_offset", 1.0, "t_offset=1.0"),
    ("Adam", "t_offset", True, "t_offset=True"),
    ("NDAdam", "eps_hat", "paper", "eps_hat='paper'"),
    ("AdaL", "norm", "l3", "norm='l3'"),
    ("AdaL", "eps_mode", "x", "eps_mode='x'"),
    ("AdaL", "lr_decay", "cosine", "lr_decay='cosine'"),
    ("AdaL", "bias_correction", 0, "bias_correction=0"),
    ("AdaL", "batch_ndim", -1, "batch_ndim=-1"),
    ("AdaL", "batch_ndim", 1.0, "batch_ndim=1.0"),
    ("SGD", "nesterov", "yes", "nesterov='yes'"),
])
def test_unknown_option(name, field, value, shown):
    kwargs = {field: value}
    check_error(ValueError, lambda: make(name, **kwargs), [shown], [kwargs])


def test_adam_uncoupled_decay_needs_decoupled_decay():
    kwargs = {"weight_decay": 0.1, "couple_weight_decay": False}
    check_error(ValueError, lambda: Adam(**kwargs), ["couple_weight_decay=False", "decoupled_weight_decay=False"],
                [kwargs])


@pytest.mark.parametrize("kwargs, shown", [({}, "momentum=0.0"), ({"momentum": 0.0}, "momentum=0.0"),
                                           ({"momentum": 0}, "momentum=0"),
                                           ({"momentum": 0.9, "dampening": 0.5}, "dampening=0.5")])
def test_sgd_nesterov_needs_momentum_and_no_dampening(kwargs, shown):
    kwargs = dict(kwargs, nesterov=True)
    check_error(ValueError, lambda: SGD(**kwargs), ["nesterov", shown], [kwargs])


@pytest.mark.parametrize("momentum", [np.zeros((2, 1)), np.array([[0.9], [0.0]])])
def test_sgd_nesterov_with_an_array_momentum_holding_zero(momentum):
    kwargs = {"nesterov": True, "momentum": momentum}
    check_error(ValueError, lambda: SGD(**kwargs), ["nesterov", "momentum", "0."], [kwargs])


def test_sgd_nesterov_with_an_array_dampening_holding_nonzero():
    kwargs = {"nesterov": True, "momentum": 0.9, "dampening": np.array([[0.0], [0.5]])}
    check_error(ValueError, lambda: SGD(**kwargs), ["nesterov", "dampening", "0.5"], [kwargs])


# ----------------------------------------------------------------------------- params and grads


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.bool_, np.complex128])
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_init_with_non_floating_params(name, dtype):
    opt = make(name)
    params = tree()
    params["w"] = (params["w"] * 4).astype(dtype)
    check_error(TypeError, lambda: opt.init(params),
                ["params['w']", np.dtype(dtype).name, "real floating"], [params])


@pytest.mark.parametrize("name", ["Adam", "AdaL", "SGD"])
def test_init_with_non_floating_single_array(name):
    opt = make(name)
    params = np.arange(6).reshape(2, 3)
    check_error(TypeError, lambda: opt.init(params), ["params", "int64", "real floating"], [params])


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_step_with_non_floating_params(name):
    opt = make(name)
    params = tree()
    state = opt.init(params)
    params = {k: (v * 4).astype(np.int64) for k, v in params.items()}
    grads = {k: v.copy() for k, v in params.items()}
    check_error(TypeError, lambda: opt.step(params, grads, state), ["params['w']", "int64", "real floating"],
                [params, grads, state])


@pytest.mark.parametrize("g_dtype", [np.float32, np.int64, np.complex128])
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_grads_of_another_dtype(name, g_dtype):
    opt = make(name)
    params, grads = tree(), tree(seed=1)
    state = stepped_state(opt, params, grads, 1)
    grads["w"] = grads["w"].astype(g_dtype)
    check_error(TypeError, lambda: opt.step(params, grads, state),
                ["grads['w']", np.dtype(g_dtype).name, "params['w']", "float64"], [params, grads, state])


@pytest.mark.parametrize("g_shape", [(2, 3), (3,), (3, 2, 1), ()])
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_grads_of_another_shape(name, g_shape):
    opt = make(name)
    params, grads = tree(), tree(seed=1)
    state = stepped_state(opt, params, grads, 1)
    grads["w"] = np.ones(g_shape)
    check_error(ValueError, lambda: opt.step(params, grads, state),
                ["grads['w']", f"shape {g_shape}", "(3, 2)"], [params, grads, state])


@pytest.mark.parametrize("change, shown", [("missing", ["missing ['b']"]), ("extra", ["unexpected ['c']"]),
                                           ("renamed", ["missing ['b']", "unexpected ['c']"])])
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_grads_with_other_keys(name, change, shown):
    opt = make(name)
    params, grads = tree(), tree(seed=1)
    state = opt.init(params)
    if change in ("extra", "renamed"):
        grads["c"] = np.ones(2)
    if change in ("missing", "renamed"):
        del grads["b"]
    check_error(ValueError, lambda: opt.step(params, grads, state), ["grads", *shown], [params, grads, state])


@pytest.mark.parametrize("name", ["Adam", "AdaL", "SGD"])
def test_grads_an_array_where_params_are_a_dict(name):
    opt = make(name)
    params = tree()
    grads = np.ones((3, 2))
    state = opt.init(params)
    check_error(TypeError, lambda: opt.step(params, grads, state), ["params", "grads", "a dict", "an array"],
                [params, grads, state])


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_grads_leaf_that_is_not_an_array(name):
    opt = make(name)
    params, grads = tree(), tree(seed=1)
    state = opt.init(params)
    grads["b"] = [1.0, 2.0]
    check_error(TypeError, lambda: opt.step(params, grads, state), ["grads['b']", "[1.0, 2.0]", "list"],
                [params, grads, state])


# ----------------------------------------------------------------------------- state


@pytest.mark.parametrize("source, target", [("Adam", "AdaL"), ("Adam", "SGD"), ("Adam", "NDAdam"),
                                            ("AdaL", "Adam"), ("NDAdam", "AdaL"), ("SGD", "Adam")])
def test_state_from_another_optimizer(source, target):
    params, grads = tree(), tree(seed=1)
    state = stepped_state(make(source), params, grads, 1)
    opt = make(target)
    check_error(TypeError, lambda: opt.step(params, grads, state),
                ["state", f"{target}State", f"{target}.init", f"{source}State"], [params, grads, state])


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_state_that_is_not_a_state(name):
    opt = make(name)
    params, grads = tree(), tree(seed=1)
    state = tuple(stepped_state(opt, params, grads, 1))                 # a plain tuple, same fields
    check_error(TypeError, lambda: opt.step(params, grads, state), ["state", "tuple"], [params, grads, state])


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_state_for_params_of_another_shape(name):
    opt = make(name)
    params, grads = tree(), tree(seed=1)
    state = stepped_state(opt, tree((4, 2)), tree((4, 2), seed=1), 1)
    field = FIRST_MOMENT[name]
    check_error(ValueError, lambda: opt.step(params, grads, state),
                [f"state.{field}['w']", "(4, 2)", "(3, 2)", "params['w']"], [params, grads, state])


@pytest.mark.parametrize("name", ["Adam", "AdaL", "SGD"])
def test_state_for_a_single_array_of_another_shape(name):
    opt = make(name)
    params, grads = np.ones((2, 3)), np.full((2, 3), 0.5)
    state = stepped_state(opt, np.ones(3), np.ones(3), 1)
    field = FIRST_MOMENT[name]
    check_error(ValueError, lambda: opt.step(params, grads, state), [f"state.{field}", "(3,)", "(2, 3)"],
                [params, grads, state])


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_state_for_a_dict_with_other_keys(name):
    opt = make(name)
    params, grads = tree(), tree(seed=1)
    state = stepped_state(opt, tree(keys=("w", "c")), tree(keys=("w", "c"), seed=1), 1)
    field = FIRST_MOMENT[name]
    check_error(ValueError, lambda: opt.step(params, grads, state),
                [f"state.{field}", "['c', 'w']", "['b', 'w']"], [params, grads, state])


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_state_for_params_of_another_dtype(name):
    opt = make(name)
    params, grads = tree(), tree(seed=1)
    state = stepped_state(opt, tree(dtype=np.float32), tree(seed=1, dtype=np.float32), 1)
    field = FIRST_MOMENT[name]
    check_error(TypeError, lambda: opt.step(params, grads, state),
                [f"state.{field}['w']", "float32", "params['w']", "float64"], [params, grads, state])


@pytest.mark.parametrize("t, shown", [(-1, "state.t=-1"), (1.0, "state.t=1.0"), (True, "state.t=True"),
                                      ("1", "state.t='1'")])
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_state_with_a_bad_step_count(name, t, shown):
    opt = make(name)
    params, grads = tree(), tree(seed=1)
    state = stepped_state(opt, params, grads, 1)._replace(t=t)
    check_error(ValueError, lambda: opt.step(params, grads, state), [shown], [params, grads, state])


@pytest.mark.parametrize("made_by, used_by, shown", [
    (dict(amsgrad=True), dict(), ["state.v_max", "None"]),
    (dict(), dict(amsgrad=True), ["state.v_max", "None"]),
])
def test_adam_state_from_another_configuration(made_by, used_by, shown):
    params, grads = tree(), tree(seed=1)
    state = stepped_state(Adam(**made_by), params, grads, 1)
    opt = Adam(**used_by)
    check_error(ValueError, lambda: opt.step(params, grads, state), shown, [params, grads, state])


@pytest.mark.parametrize("made_by, used_by", [(0.0, 0.9), (0.9, 0.0)])
def test_sgd_state_from_another_momentum(made_by, used_by):
    params, grads = tree(), tree(seed=1)
    state = stepped_state(SGD(momentum=made_by), params, grads, 1)
    opt = SGD(momentum=used_by)
    check_error(ValueError, lambda: opt.step(params, grads, state), ["state.momentum_buffer", "None"],
                [params, grads, state])


def test_ndadam_state_from_other_vector_axes():
    params, grads = tree(), tree(seed=1)
    state = stepped_state(NDAdam(vector_axes={"w": (0,)}), params, grads, 1)
    opt = NDAdam(vector_axes={"w": (1,)})
    check_error(ValueError, lambda: opt.step(params, grads, state), ["state.v['w']", "(1, 2)", "(3, 1)"],
                [params, grads, state])


# ----------------------------------------------------------------------------- two array libraries


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_params_from_two_libraries(name):
    opt = make(name)
    params = tree()
    params["b"] = xs.asarray(params["b"])
    check_error(TypeError, lambda: opt.init(params),
                ["different libraries", "params['w']", "numpy", "params['b']", "array_api_strict"], [params])


@pytest.mark.parametrize("name, field", LR_FIELDS)
def test_array_hyperparameter_from_another_library(name, field):
    kwargs = {field: np.full((1,), 0.1)}
    opt = make(name, **kwargs)
    params = {k: xs.asarray(v) for k, v in tree().items()}
    grads = {k: xs.asarray(v) for k, v in tree(seed=1).items()}
    state = opt.init(params)
    check_error(TypeError, lambda: opt.step(params, grads, state),
                ["different libraries", f"hyperparameters[{field!r}]", "numpy", "array_api_strict"],
                [params, grads, state, kwargs])


@pytest.mark.filterwarnings("ignore:You are comparing a array_api_strict dtype")
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_params_and_grads_from_two_libraries(name):
    opt = make(name)
    params, grads = tree(), tree(seed=1)
    state = opt.init(params)
    grads["b"] = xs.asarray(grads["b"])
    check_error(TypeError, lambda: opt.step(params, grads, state), ["different libraries", "grads['b']"],
                [params, grads, state])


@pytest.mark.filterwarnings("ignore:You are comparing a array_api_strict dtype")
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_params_and_state_from_two_libraries(name):
    opt = make(name)
    params, grads = tree(), tree(seed=1)
    state = opt.init({k: xs.asarray(v) for k, v in params.items()})
    check_error(TypeError, lambda: opt.step(params, grads, state), ["different libraries", "state."],
                [params, grads, state])


# ----------------------------------------------------------------------------- ND-Adam's vector_axes


def test_ndadam_without_vector_axes():
    check_error(TypeError, lambda: NDAdam(), ["vector_axes"])
    check_error(TypeError, lambda: NDAdam(lr_vector=0.05), ["vector_axes"])


@pytest.mark.parametrize("axes, shown", [([0], "vector_axes=[0]"), ((), "vector_axes=()"),
                                         ((0.5,), "vector_axes=(0.5,)"), ((True,), "vector_axes=(True,)"),
                                         (0, "vector_axes=0"), ({"w": 0}, "vector_axes['w']=0"),
                                         ({"w": (0,), "b": []}, "vector_axes['b']=[]"),
                                         ({1: (0,)}, "key 1")])
def test_ndadam_vector_axes_of_wrong_type(axes, shown):
    check_error(TypeError, lambda: NDAdam(vector_axes=axes), [shown], [axes])


@pytest.mark.parametrize("axes, label, shown", [((2,), "vector_axes=(2,)", "axis 2"),
                                                ((-3,), "vector_axes=(-3,)", "axis -3"),
                                                ((0, 5), "vector_axes=(0, 5)", "axis 5"),
                                                ({"w": (2,)}, "vector_axes['w']=(2,)", "axis 2")])
def test_ndadam_vector_axes_out_of_range(axes, label, shown):
    opt = NDAdam(vector_axes=axes)
    params, grads = tree(), tree(seed=1)
    if not isinstance(axes, dict):
        params, grads = params["w"], grads["w"]
    name = "params['w']" if isinstance(axes, dict) else "params"
    check_error(ValueError, lambda: opt.init(params), [label, shown, name, "(3, 2)"], [params])
    # at step, with a state made by a valid configuration
    good = NDAdam(vector_axes={"w": (0,)} if isinstance(axes, dict) else (0,))
    state = stepped_state(good, params, grads, 1)
    check_error(ValueError, lambda: opt.step(params, grads, state), [label, shown, name, "(3, 2)"],
                [params, grads, state])


def test_ndadam_vector_axes_repeating_an_axis():
    opt = NDAdam(vector_axes=(0, -2))
    params = tree()["w"]
    check_error(ValueError, lambda: opt.init(params), ["vector_axes=(0, -2)", "repeats"], [params])


@pytest.mark.parametrize("axes", [{"nope": (0,)}, {"w": (0,), "nope": (0,)}])
def test_ndadam_vector_axes_naming_unknown_params(axes):
    opt = NDAdam(vector_axes=axes)
    params, grads = tree(), tree(seed=1)
    check_error(ValueError, lambda: opt.init(params), ["vector_axes", "'nope'", "['b', 'w']"], [params])
    # at step, with a state that matches params under this (bad) configuration's shapes
    state = stepped_state(NDAdam(vector_axes={k: v for k, v in axes.items() if k != "nope"}), params, grads, 1)
    check_error(ValueError, lambda: opt.step(params, grads, state), ["vector_axes", "'nope'"],
                [params, grads, state])


def test_ndadam_vector_axes_typo_at_step_reports_the_typo():
    params, grads = tree(), tree(seed=1)
    state = stepped_state(NDAdam(vector_axes={"w": (0,)}), params, grads, 1)
    opt = NDAdam(vector_axes={"nope": (0,)})
    check_error(ValueError, lambda: opt.step(params, grads, state), ["vector_axes", "'nope'"],
                [params, grads, state])


def test_ndadam_dict_vector_axes_with_a_single_array():
    opt = NDAdam(vector_axes={"w": (0,)})
    params = tree()["w"]
    check_error(TypeError, lambda: opt.init(params), ["vector_axes", "dict", "single array"], [params])


@pytest.mark.parametrize("single", [False, True])
def test_ndadam_weight_vector_of_zero_norm(single):
    axes = (0,) if single else {"w": (0,)}
    opt = NDAdam(vector_axes=axes)
    params, grads = tree(), tree(seed=1)
    state = stepped_state(opt, params if not single else params["w"], grads if not single else grads["w"], 1)
    params["w"][:, 1] = 0.0                                              # the second unit has no direction
    if single:
        params, grads = params["w"], grads["w"]
    name = "params" if single else "params['w']"
    check_error(ValueError, lambda: opt.init(params), [name, "zero norm", "(0,)"], [params])
    check_error(ValueError, lambda: opt.normalize(params), [name, "zero norm", "(0,)"], [params])
    check_error(ValueError, lambda: opt.step(params, grads, state), [name, "zero norm", "(0,)"],
                [params, grads, state])


def test_ndadam_zero_row_is_fine_when_vectors_are_columns():
    """Only whole weight vectors of zero norm are refused: a zero row is not one."""
    opt = NDAdam(vector_axes={"w": (0,)})
    params, grads = tree(), tree(seed=1)
    params["w"][0, :] = 0.0
    new, state = opt.step(params, grads, opt.init(params))
    assert state.t == 1 and np.all(np.isfinite(new["w"]))


def test_ndadam_weight_vector_holding_nan_is_not_called_zero_norm():
    opt = NDAdam(vector_axes={"w": (0,)})
    params = tree()
    params["w"][1, 1] = np.nan
    msg = check_error(ValueError, lambda: opt.init(params), ["params['w']"], [params])
    assert "nan" in msg.lower() and "zero norm" not in msg


# ----------------------------------------------------------------------------- non-finite gradients


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_check_finite_names_the_gradient(name, bad):
    opt = make(name)
    params, grads = tree(), tree(seed=1)
    state = stepped_state(opt, params, grads, 2)
    grads["b"][1] = bad
    check_error(FloatingPointError, lambda: opt.step(params, grads, state, check_finite=True),
                ["grads['b']", "NaN or Inf", "t=3"], [params, grads, state])


@pytest.mark.parametrize("name", ["Adam", "AdaL", "SGD"])
def test_check_finite_on_a_single_array(name):
    opt = make(name)
    params, grads = np.ones(3), np.array([0.5, np.inf, 0.5])
    state = opt.init(params)
    msg = check_error(FloatingPointError, lambda: opt.step(params, grads, state, check_finite=True),
                      ["grads", "NaN or Inf", "t=1"], [params, grads, state])
    assert "grads[" not in msg


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_check_finite_passes_finite_gradients(name):
    opt = make(name)
    params, grads = tree(), tree(seed=1)
    new, state = opt.step(params, grads, opt.init(params), check_finite=True)
    assert state.t == 1 and all(np.all(np.isfinite(v)) for v in new.values())


def test_nan_gradient_propagates_silently_in_adam_by_default():
    opt = Adam(lr=0.1)
    params, grads = tree(), tree(seed=1)
    state = stepped_state(opt, params, grads, 1)
    grads["b"][1] = np.nan
    before = snapshot((params, grads, state))
    new_params, new_state = opt.step(params, grads, state)            # no error
    assert_same(before, (params, grads, state))
    assert new_state.t == 2
    assert np.isnan(new_params["b"][1]) and np.isnan(new_state.m["b"][1]) and np.isnan(new_state.v["b"][1])
    assert np.isfinite(new_params["b"][0]) and np.all(np.isfinite(new_params["w"]))    # per coordinate


@pytest.mark.parametrize("name", ["NDAdam", "AdaL", "SGD"])
def test_nan_gradient_propagates_silently_in_the_others(name):
    opt = make(name)
    params, grads = tree(), tree(seed=1)
    grads["b"][0] = np.nan
    new_params, new_state = opt.step(params, grads, opt.init(params))
    assert new_state.t == 1 and np.isnan(new_params["b"][0])
