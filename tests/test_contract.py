"""The contract every optimizer keeps: pure steps, immutable state and hyperparameters, the
same results on every array backend, broadcasting sweeps equal to separate runs, dtypes kept.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import refimpl

U = 2.0**-53


def optimizers():
    """Every algorithm, with every convention option switched on in at least one configuration."""
    return {
        "Adam": refimpl.Adam(lr=0.05, weight_decay=0.01, amsgrad=True),
        "Adam-schedules": refimpl.Adam(lr=lambda t: 0.05 / math.sqrt(t), beta1=lambda t: 0.9 * 0.99 ** (t - 1)),
        "Adam-optax-amsgrad": refimpl.Adam(lr=0.05, amsgrad=True, amsgrad_max_of="v_hat", eps_root=1e-10),
        "Adam-eps_hat-amsgrad": refimpl.Adam(lr=0.05, eps_hat=True, amsgrad=True, eps_root=1e-10),
        "Adam-no-bias-correction": refimpl.Adam(lr=0.05, bias_correction=False, amsgrad=True),
        "AdamW-eps_hat": refimpl.Adam(lr=0.05, eps_hat=True, weight_decay=0.01, decoupled_weight_decay=True),
        "NDAdam": refimpl.NDAdam(vector_axes={"w": (0,)}, lr_vector=0.05, lr_scalar=0.01, weight_decay_scalar=1e-3),
        "NDAdam-official-eps": refimpl.NDAdam(vector_axes={"w": (0, 1)}, lr_vector=lambda t: 0.05 / t, eps_hat=True),
        "AdaL": refimpl.AdaL(lr=0.05, norm="global"),
        "AdaL-denominator": refimpl.AdaL(lr=0.05, norm="per_tensor", eps_mode="denominator", lr_decay="none"),
        "AdaL-per-element": refimpl.AdaL(lr=0.05, norm="per_element", bias_correction=False),
        "SGD": refimpl.SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
        "SGD-dampening": refimpl.SGD(lr=lambda t: 0.05 / t, momentum=0.5, dampening=0.3),
        "SGD-plain": refimpl.SGD(lr=0.05),
    }


def problem(seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    params = {"w": rng.standard_normal((4, 3)).astype(dtype), "b": rng.standard_normal(3).astype(dtype)}
    grads = [{k: rng.standard_normal(x.shape).astype(dtype) for k, x in params.items()} for _ in range(12)]
    return params, grads


def trajectory(opt, params, grads, to=lambda x: x):
    state = opt.init(to(params))
    p = to(params)
    for g in grads:
        p, state = opt.step(p, to(g), state)
    return p, state


def assert_close_on_gpu(got, want, steps):
    """CuPy's kernels round differently from NumPy's: CUDA contracts multiply-adds into FMAs
    and its pow is within 2 ulp (CUDA C++ Programming Guide, "Mathematical Functions"). Allow
    each of a step's ~30 roundings to differ by 2 ulp, for every step, relative to the largest
    magnitude (entries near 0 inherit the absolute error of their neighbours' arithmetic)."""
    tol = steps * 30 * 2 * U
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.max(np.abs(want)))


def assert_tree_equal(a, b):
    a, b = refimpl.to_numpy(a), refimpl.to_numpy(b)
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_tree_equal(a[k], b[k])
    elif a is None:
        assert b is None
    else:
        assert a.dtype == b.dtype and a.shape == b.shape
        assert np.array_equal(a, b), np.max(np.abs(a - b))


@pytest.mark.parametrize("name", list(optimizers()))
def test_step_is_pure_and_agrees_across_backends(name, backend):
    """Inputs (params, grads, the previous state) are bitwise unchanged after a step, on every
    backend; array-api-strict (also on a device that refuses implicit host transfers) gives
    NumPy's bits, since it runs NumPy's kernels; CuPy agrees to its kernels' rounding."""
    opt = optimizers()[name]
    params, grads = problem()
    reference = trajectory(opt, params, grads)
    p = backend.asarray(params)
    state = opt.init(p)
    for g in grads:
        g = backend.asarray(g)
        before = refimpl.to_numpy((p, g, state))
        new_p, new_state = opt.step(p, g, state)
        assert_tree_equal(refimpl.to_numpy((p, g, state))[0], before[0])
        assert_tree_equal(refimpl.to_numpy((p, g, state))[1], before[1])
        for field in state._fields[1:]:
            assert_tree_equal(getattr(state, field), getattr(before[2], field))
        assert state.t == before[2].t
        p, state = new_p, new_state
    if backend.name == "cupy":
        for k in params:
            assert_close_on_gpu(refimpl.to_numpy(p[k]), reference[0][k], steps=len(grads))
    else:
        assert_tree_equal(p, reference[0])
        for field in state._fields[1:]:
            assert_tree_equal(getattr(state, field), getattr(reference[1], field))


@pytest.mark.parametrize("name", list(optimizers()))
def test_optimizers_and_states_are_immutable(name):
    opt = optimizers()[name]
    with pytest.raises(dataclasses.FrozenInstanceError):
        opt.lr = 1.0
    params, grads = problem()
    state = opt.init(params)
    with pytest.raises(AttributeError):
        state.t = 5


def test_array_hyperparameters_are_private_copies():
    """Editing the caller's array after construction cannot change the optimizer."""
    lr = np.full((2, 1), 0.1)
    opt = refimpl.Adam(lr=lr)
    lr[1, 0] = -5.0
    assert np.all(opt.lr == 0.1)
    with pytest.raises(ValueError):
        opt.lr[0, 0] = 1.0  # read-only


@pytest.mark.parametrize("name", list(optimizers()))
def test_float32_stays_float32(name):
    """Python-number hyperparameters do not promote; array hyperparameters are cast."""
    opt = optimizers()[name]
    params, grads = problem(dtype=np.float32)
    p, state = trajectory(opt, params, grads)
    assert all(x.dtype == np.float32 for x in p.values())
    for field in state._fields[1:]:
        tree = getattr(state, field)
        if tree is not None:
            assert all(x.dtype == np.float32 for x in tree.values())


@pytest.mark.parametrize("name", list(optimizers()))
def test_a_dict_of_one_array_equals_the_array(name):
    opt = optimizers()[name]
    if name.startswith("NDAdam"):
        axes = opt.vector_axes["w"]
        opt = dataclasses.replace(opt, vector_axes=axes)
    params, grads = problem()
    single = trajectory(opt, params["w"], [g["w"] for g in grads])
    if name.startswith("NDAdam"):
        opt = dataclasses.replace(opt, vector_axes={"w": axes})
    as_dict = trajectory(opt, {"w": params["w"]}, [{"w": g["w"]} for g in grads])
    assert_tree_equal(single[0], as_dict[0]["w"])


SWEEPS = {
    "Adam": lambda lr, mu: refimpl.Adam(lr=lr, weight_decay=0.01),
    "SGD": lambda lr, mu: refimpl.SGD(lr=lr, momentum=mu),
    "NDAdam": lambda lr, mu: refimpl.NDAdam(vector_axes=(-1,), lr_vector=lr),
    "AdaL": lambda lr, mu: refimpl.AdaL(lr=lr, batch_ndim=1),
}


@pytest.mark.parametrize("name", list(SWEEPS))
@given(k=st.integers(1, 6), d=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_a_broadcast_sweep_equals_separate_runs(name, k, d, seed):
    """One call with params (K, d) and hyperparameters (K, 1) computes the K runs bitwise:
    elementwise arithmetic is the same per element, and the reductions of ND-Adam and AdaL run
    along the contiguous last axis, where NumPy sums a row of the batch as it sums a lone row."""
    make = SWEEPS[name]
    rng = np.random.default_rng(seed)
    lrs = 10.0 ** rng.uniform(-3, 0, (k, 1))
    mus = rng.uniform(0, 0.95, (k, 1))
    x0 = rng.standard_normal((k, d))
    grads = rng.standard_normal((10, k, d))
    batched = trajectory(make(lrs, mus), x0, list(grads))[0]
    for i in range(k):
        single = make(float(lrs[i, 0]), float(mus[i, 0]))
        if name == "AdaL":
            single = dataclasses.replace(single, batch_ndim=0)
        separate = trajectory(single, x0[i], list(grads[:, i]))[0]
        assert np.array_equal(batched[i], separate)


@given(k=st.integers(1, 6), d=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_a_sweep_over_betas_equals_separate_runs_to_the_rounding_of_the_power(k, d, seed):
    """With beta1, beta2 as arrays, the bias corrections 1 - beta^t use the array library's
    power, which may differ from Python's in the last bit (NumPy's SIMD pow does, on ~10% of
    inputs). Each pow is within an ulp of the exact power, so the two differ by at most
    2u beta^t, which the subtraction 1 - beta^t turns into a relative error 2u beta^t/(1-beta^t)
    (large when beta^t is near 1). With a fixed gradient stream the moments are bitwise equal
    (they do not involve the power), so each step differs by the correction of m (that relative
    error), half the one of v (through the square root), and 4u for the roundings that follow;
    and the rounding of adding it to params can now differ (u |theta| per run)."""
    rng = np.random.default_rng(seed)
    b1, b2 = rng.uniform(0, 0.95, (k, 1)), rng.uniform(0.9, 0.9999, (k, 1))
    x0 = rng.standard_normal((k, d))
    grads = rng.standard_normal((10, k, d))
    batched, sb = trajectory(refimpl.Adam(lr=0.1, beta1=b1, beta2=b2), x0, list(grads))
    for i in range(k):
        beta1, beta2 = float(b1[i, 0]), float(b2[i, 0])
        opt = refimpl.Adam(lr=0.1, beta1=beta1, beta2=beta2)
        x, s, tol = x0[i], opt.init(x0[i]), np.zeros(d)
        for t, g in enumerate(grads[:, i], start=1):
            new, s = opt.step(x, g, s)
            rel = 2 * U * beta1**t / (1 - beta1**t) + U * beta2**t / (1 - beta2**t) + 4 * U
            tol += rel * np.abs(new - x) + 2 * U * np.abs(new)
            x = new
        assert np.array_equal(sb.m[i], s.m) and np.array_equal(sb.v[i], s.v)
        assert np.all(np.abs(batched[i] - x) <= tol)


@pytest.mark.parametrize("name", list(SWEEPS))
def test_a_sweep_with_array_hyperparameters_on_every_backend(name, backend):
    """Array hyperparameters made on the backend's device step a batch there, bitwise as NumPy
    (CuPy: to its kernels' rounding)."""
    rng = np.random.default_rng(1)
    lrs, mus = 10.0 ** rng.uniform(-3, 0, (4, 1)), rng.uniform(0, 0.9, (4, 1))
    x0, grads = rng.standard_normal((4, 3)), list(rng.standard_normal((8, 4, 3)))
    reference = trajectory(SWEEPS[name](lrs, mus), x0, grads)[0]
    opt = SWEEPS[name](backend.asarray(lrs), backend.asarray(mus))
    got = refimpl.to_numpy(trajectory(opt, x0, grads, to=backend.asarray)[0])
    if backend.name == "cupy":
        assert_close_on_gpu(got, reference, steps=len(grads))
    else:
        assert np.array_equal(got, reference)


def test_learning_rate_sweep_on_rosenbrock_in_one_call():
    """The book's sweep pattern: 64 learning rates of Adam on Rosenbrock as one broadcast run
    equal the first and last runs done alone."""
    lrs = np.logspace(-4, 0, 64)[:, None]
    opt = refimpl.Adam(lr=lrs)
    x = np.tile([-1.2, 1.0], (64, 1))
    state = opt.init(x)
    for _ in range(200):
        x, state = opt.step(x, refimpl.problems.rosenbrock(x)[1], state)
    for i in (0, 63):
        xi, si = np.array([-1.2, 1.0]), refimpl.Adam(lr=float(lrs[i, 0])).init(np.zeros(2))
        for _ in range(200):
            xi, si = refimpl.Adam(lr=float(lrs[i, 0])).step(xi, refimpl.problems.rosenbrock(xi)[1], si)
        assert np.array_equal(x[i], xi)


def test_rosenbrock_gradient_matches_finite_differences():
    x = np.array([[-1.2, 1.0], [0.3, -0.7]])
    f, g = refimpl.problems.rosenbrock(x)
    h = 1e-6
    for j in range(2):
        e = np.zeros(2)
        e[j] = h
        fd = (refimpl.problems.rosenbrock(x + e)[0] - refimpl.problems.rosenbrock(x - e)[0]) / (2 * h)
        # central differences: truncation O(h^2 f''') ~ 1e-9 here, cancellation ~ u |f| / h ~ 1e-8
        np.testing.assert_allclose(g[:, j], fd, rtol=1e-7, atol=1e-7)
    assert refimpl.problems.rosenbrock(np.array([1.0, 1.0]))[0] == 0.0


def test_adam_docstring_first_step():
    """The first step moves each coordinate by lr against the gradient's sign (eps aside)."""
    opt = refimpl.Adam(lr=0.1)
    theta = np.array([1.0, -2.0])
    new, state = opt.step(theta, 2 * theta, opt.init(theta))
    np.testing.assert_allclose(new, [0.9, -1.9], rtol=0, atol=0.1 * 1e-8 + 4 * U)
    assert state.t == 1 and math.isclose(state.m[0], 0.2)


@pytest.mark.parametrize("make", [
    lambda: refimpl.Adam(lr=np.float64(0.1), beta1=np.float64(0.9), eps=np.float32(1e-8)),
    lambda: refimpl.Adam(lr=lambda t: np.float64(0.1) / t),
    lambda: refimpl.SGD(lr=np.float64(0.1), momentum=np.float64(0.9)),
    lambda: refimpl.AdaL(lr=np.float64(0.1)),
    lambda: refimpl.NDAdam(vector_axes={"w": (0,)}, lr_vector=np.float64(0.05), lr_scalar=np.float64(0.1)),
])
def test_numpy_scalar_hyperparameters_keep_the_parameters_dtype(make):
    """A NumPy scalar hyperparameter (not a weak Python number under NumPy 2) must not promote a
    float32 run to float64: it is used as the number it holds, like a Python float."""
    opt = make()
    params = {"w": np.ones((3, 2), np.float32), "b": np.full(2, 0.5, np.float32)}
    if not isinstance(opt, refimpl.NDAdam):
        params = params["b"]
    state = opt.init(params)
    for _ in range(3):
        params, state = opt.step(params, params, state)
    for leaf in (params.values() if isinstance(params, dict) else [params]):
        assert leaf.dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("name", list(optimizers()))
def test_zero_dimensional_parameters_step_again_and_again(name, dtype):
    """NumPy's arithmetic on 0-d arrays returns NumPy scalars (np.float64 is even a Python float):
    a step still returns 0-d arrays, params and state, so that the next step takes them."""
    opt = optimizers()[name]
    if dtype == np.float16 and not isinstance(opt, refimpl.SGD):   # eps = 1e-8 is 0 in float16: a ValueError
        opt = dataclasses.replace(opt, compute_dtype="float32")      # (test_precision.py); PyTorch fused's way
    rng = np.random.default_rng(0)
    scalar = lambda: np.asarray(rng.standard_normal(), dtype)  # noqa: E731
    if name.startswith("NDAdam"):  # a weight vector beside the scalar; a lone 0-d array has no vector
        cases = [({"w": np.ones((4, 3), dtype), "s": scalar()}, lambda: {"w": np.ones((4, 3), dtype), "s": scalar()})]
    else:
        cases = [(scalar(), scalar), ({"s": scalar(), "b": np.ones(2, dtype)}, lambda: {"s": scalar(), "b": np.ones(2, dtype)})]
    for params, grad in cases:
        state = opt.init(params)
        with np.errstate(all="ignore"):  # float16 under/overflows are not the point here
            for _ in range(3):
                params, state = opt.step(params, grad(), state)
        leaves = [params] if not isinstance(params, dict) else list(params.values())
        for field in state._fields[1:]:
            tree = getattr(state, field)
            leaves += [] if tree is None else [tree] if not isinstance(tree, dict) else list(tree.values())
        assert all(type(x) is np.ndarray and x.dtype == dtype for x in leaves), [type(x) for x in leaves]
        s = params if not isinstance(params, dict) else params["s"]
        assert s.shape == ()


@pytest.mark.parametrize("name", list(optimizers()))
def test_the_new_state_shares_no_memory_with_the_inputs(name):
    """Pure also means: writing into your gradient (or parameter) arrays after a step cannot
    change the state it returned (SGD's buffer at t = 1 is g itself: it is copied)."""
    opt = optimizers()[name]
    params, grads = problem()
    state = opt.init(params)
    for g in grads[:2]:
        new_params, new_state = opt.step(params, g, state)
        inputs = [*params.values(), *g.values()]
        for field in new_state._fields[1:]:
            for x in (getattr(new_state, field) or {}).values():
                assert not any(np.shares_memory(x, y) for y in inputs), field
        for x in new_params.values():
            assert not any(np.shares_memory(x, y) for y in inputs)
        params, state = new_params, new_state
