"""Precision conventions of refimpl.Adam (scalars, compute_dtype), low-precision verdicts of the
oracle, and the adapters' handling of other libraries' optimizers and dtypes."""

from __future__ import annotations

import math
import os
import warnings

import numpy as np
import pytest

import refimpl
from refimpl import _precision
from refimpl.testing import CandidateError, diagnose, from_keras, from_step, from_torch, probe
from test_errors import check_error

os.environ.setdefault("KERAS_BACKEND", "jax")  # before any import of keras

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)


def run(opt, params, grads):
    state = opt.init(params)
    for g in grads:
        params, state = opt.step(params, g, state)
    return params, state


# ----------------------------------------------------------------------------- scalars


def test_float32_scalars_are_a_float32_running_product_of_the_betas():
    """TF1: p_1 = fl32(beta), p_t = fl32(p_{t-1} * fl32(beta)); the rest in the params' dtype."""
    g = np.array([0.3, -1.5, 2.0])
    got, _ = run(refimpl.Adam(lr=0.01, eps_hat=True, scalars="float32"), np.ones(3), [g] * 5)
    lr, b1, b2, eps = (float(np.float32(h)) for h in (0.01, 0.9, 0.999, 1e-8))
    p1 = p2 = None
    want, m, v = np.ones(3), np.zeros(3), np.zeros(3)
    for t in range(1, 6):
        p1 = np.float32(b1) if t == 1 else np.float32(p1) * np.float32(b1)
        p2 = np.float32(b2) if t == 1 else np.float32(p2) * np.float32(b2)
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        want = want - lr * math.sqrt(1 - float(p2)) / (1 - float(p1)) * m / (np.sqrt(v) + eps)
    # the same operations in another order: a few roundings of 2**-53 per step
    np.testing.assert_allclose(got, want, rtol=50 * 2.0**-53 * 5, atol=0)


def test_float32_beta_powers_change_only_the_powers():
    g = np.array([0.3, -1.5])
    got, _ = run(refimpl.Adam(lr=0.01, scalars="float32_beta_powers"), np.ones(2), [g] * 4)
    b1, b2 = float(np.float32(0.9)), float(np.float32(0.999))
    want, m, v = np.ones(2), np.zeros(2), np.zeros(2)
    for t in range(1, 5):
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + (1 - 0.999) * g * g
        want = want - 0.01 * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + 1e-8)
    np.testing.assert_allclose(got, want, rtol=50 * 2.0**-53 * 4, atol=0)


@pytest.mark.parametrize("make", [refimpl.Adam, refimpl.AdaL, lambda **kw: refimpl.NDAdam(vector_axes=(1,), **kw)],
                         ids=["Adam", "AdaL", "NDAdam"])
def test_precision_options_are_checked(make):
    if make is refimpl.Adam:
        check_error(ValueError, lambda: make(scalars="float16"), ["scalars='float16'", "'float32'"])
    check_error(ValueError, lambda: make(compute_dtype="float64"), ["compute_dtype='float64'"])
    check_error(ValueError, lambda: make(compute_dtype=np.float32), ["compute_dtype=<class 'numpy.float32'>"])


# ----------------------------------------------------------------------------- compute dtype, low precision


@pytest.mark.parametrize("dtype", [np.float16, BF16], ids=["float16", "bfloat16"])
def test_compute_dtype_float32_is_float32_arithmetic_rounded_to_storage(dtype):
    """opmath: each step is the float32 update of the stored values, rounded back to the storage."""
    params, grads = probe(20, dtype=dtype)
    opt = refimpl.Adam(lr=1e-2, compute_dtype="float32")
    ref32 = refimpl.Adam(lr=1e-2)
    p, s = params, opt.init(params)
    for g in grads:
        wide = {k: x.astype(np.float32) for k, x in p.items()}
        state32 = ref32.State(s.t, *[{k: x.astype(np.float32) for k, x in tree.items()} if tree else None
                                    for tree in s[1:]])
        want, want_s = ref32.step(wide, {k: x.astype(np.float32) for k, x in g.items()}, state32)
        p, s = opt.step(p, g, s)
        for k in p:
            assert p[k].dtype == dtype and s.m[k].dtype == dtype
            assert np.array_equal(p[k], want[k].astype(dtype)) and np.array_equal(s.v[k], want_s.v[k].astype(dtype))


ND_ADAM = {"w": (1,)}   # params['w'] of the probe: two weight vectors of 3 elements; 'b' a scalar parameter


@pytest.mark.parametrize("dtype", [np.float16, BF16], ids=["float16", "bfloat16"])
@pytest.mark.parametrize("make", [lambda **kw: refimpl.AdaL(lr=1e-2, **kw),
                                  lambda **kw: refimpl.AdaL(lr=1e-2, eps_mode="denominator", norm="per_tensor", **kw),
                                  lambda **kw: refimpl.NDAdam(vector_axes=ND_ADAM, lr_vector=0.05, **kw),
                                  lambda **kw: refimpl.NDAdam(vector_axes=ND_ADAM, eps_hat=True, **kw)],
                         ids=["AdaL", "AdaL-denominator", "NDAdam", "NDAdam-eps_hat"])
def test_ndadam_and_adal_compute_dtype_is_float32_arithmetic_rounded_to_storage(make, dtype):
    """The same opmath for ND-Adam (norms and projections in float32) and AdaL (its l1 norm in
    float32): every step is the float32 update of the stored values, rounded back, bit for bit."""
    params, grads = probe(20, dtype=dtype)
    opt, ref32 = make(compute_dtype="float32"), make()
    p, s = params, opt.init(params)
    widen = lambda tree: {k: x.astype(np.float32) for k, x in tree.items()}  # noqa: E731
    for g in grads:
        want, want_s = ref32.step(widen(p), widen(g), ref32.State(s.t, *[widen(tree) for tree in s[1:]]))
        p, s = opt.step(p, g, s)
        for k in p:
            assert p[k].dtype == dtype and s.m[k].dtype == dtype and s.v[k].dtype == dtype
            assert np.array_equal(p[k], want[k].astype(dtype), equal_nan=True)
            assert np.array_equal(s.m[k], want_s.m[k].astype(dtype)) and np.array_equal(s.v[k], want_s.v[k].astype(dtype))
    assert all(np.all(np.isfinite(x)) for x in p.values())


@pytest.mark.parametrize("make", [refimpl.AdaL, lambda **kw: refimpl.AdaL(eps_mode="denominator", **kw),
                                  lambda **kw: refimpl.NDAdam(vector_axes=(1,), **kw)],
                         ids=["AdaL", "AdaL-denominator", "NDAdam"])
def test_ndadam_and_adal_refuse_an_epsilon_that_underflows_and_the_fixes_work(make):
    """In float16, eps = 1e-8 is 0: ND-Adam divided 0 by 0 (a NaN weight vector at step 1 for
    gradients of 1e-3, whose squares underflow) where it now raises, naming eps and the fixes.
    float32 arithmetic fixes both; a larger eps fixes AdaL, while ND-Adam's step of
    0.05 * 1e-3 / 1.2e-7 = 417 then overflows the squared norm of (13b) in float16 (its docstring
    says so)."""
    x, g = np.ones((2, 3), np.float16), np.full((2, 3), 1e-3, np.float16)
    check_error(ValueError, lambda: make().init(x), ["eps=1e-08", "rounds to 0 in float16",
                                                     "compute_dtype='float32'", "5.96e-08"], [x])
    fixes = [make(compute_dtype="float32")] + ([] if isinstance(make(compute_dtype="float32"), refimpl.NDAdam)
                                               else [make(eps=1e-7)])
    for opt in fixes:
        with np.errstate(under="ignore"):
            p, _ = run(opt, x, [g] * 3)
        assert np.all(np.isfinite(p)) and p.dtype == np.float16


def test_an_epsilon_that_underflows_in_the_compute_dtype_is_a_clear_error():
    x = np.ones(3, np.float16)
    check_error(ValueError, lambda: refimpl.Adam().init(x), ["eps=1e-08", "rounds to 0 in float16",
                                                            "compute_dtype='float32'", "5.96e-08"], [x])
    check_error(ValueError, lambda: refimpl.Adam(eps=0, eps_root=1e-9).init(x), ["eps_root=1e-09"], [x])
    # the fixes the message names both work, and stay finite where eps = 1e-8 gave -inf
    g = np.full(3, 1e-3, np.float16)
    for opt in (refimpl.Adam(compute_dtype="float32"), refimpl.Adam(eps=1e-7)):
        p, _ = run(opt, x, [g] * 3)
        assert np.all(np.isfinite(p)) and p.dtype == np.float16


def test_bfloat16_keeps_eps_and_runs_both_ways():
    x = np.ones(3, BF16)
    for opt in (refimpl.Adam(lr=1e-2), refimpl.Adam(lr=1e-2, compute_dtype="float32")):
        p, s = run(opt, x, [np.full(3, 0.5, BF16)] * 3)
        assert p.dtype == BF16 and s.v.dtype == BF16 and np.all(p < 1)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_torch_fused_is_found_as_opmath_and_ties_are_said(dtype):
    """In 16 bits the probe cannot tell most conventions apart: the report says so plainly and
    ranks the float32-arithmetic convention (what fused=True computes) first."""
    torch = pytest.importorskip("torch")
    d = diagnose(from_torch(torch.optim.Adam, lr=1e-2, fused=True), dtype=dtype)
    assert d.best.label == "Adam(compute_dtype='float32')", str(d)
    assert d.summary().startswith(f"consistent with {len(d.matches)} configurations, which {dtype} cannot tell apart")
    assert "dtype='float32'" in d.summary()


def test_diagnose_converts_given_inputs_to_the_dtype():
    params, grads = probe(10)
    d = diagnose(refimpl.Adam(lr=1e-2), params, grads, dtype="float32")
    assert d.dtype == "float32" and d.best.label == "Adam()" and d.verdict == "match"
    check_error(ValueError, lambda: diagnose(refimpl.Adam(), dtype="int32"), ["dtype='int32'", "floating"])


# ----------------------------------------------------------------------------- adapters


def test_from_torch_takes_any_optimizer_subclass_with_its_real_name():
    torch = pytest.importorskip("torch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        po = pytest.importorskip("pytorch_optimizer")
    adan = from_torch(po.Adan, lr=1e-2)                    # three betas
    assert adan.name == "pytorch_optimizer.Adan(lr=0.01)" and adan.family is None
    assert adan.hyperparameters == {"lr": 0.01, "eps": 1e-8}
    lamb = from_torch(po.Lamb, lr=1e-2)
    assert lamb.name.startswith("pytorch_optimizer.Lamb(") and lamb.hyperparameters["beta2"] == 0.999
    assert from_torch(torch.optim.AdamW, lr=1e-2).name == "torch.optim.AdamW(lr=0.01)"

    class MyAdam(torch.optim.Adam):
        pass
    assert from_torch(MyAdam).name.startswith("test_precision.") and from_torch(MyAdam).family == "adam"


def test_from_keras_refuses_tf_keras_clearly():
    pytest.importorskip("keras")
    fake = type("Adam", (), {"__module__": "tf_keras.src.optimizers.adam"})
    check_error(TypeError, lambda: from_keras(fake), ["tf-keras (Keras 2)", "TensorFlow",
                                                       "scalars='float32_beta_powers'", "from_step"])


def test_a_float32_candidate_on_float64_inputs_is_told_the_fix():
    candidate = from_step(lambda p, g, s: ({k: (x - 0.01 * g[k]).astype(np.float32) for k, x in p.items()}, s))
    check_error(CandidateError, lambda: diagnose(candidate), ["returned params['w'] as float32", "for float64 inputs",
                                                             "diagnose(candidate, dtype='float32')"])
    assert _precision.smallest_positive(np.float16) == 2.0**-24


def test_ndadam_and_adal_in_float16_are_diagnosed_with_float32_arithmetic():
    """A 16-bit ND-Adam or AdaL left diagnose with no configuration at all (every grid entry's
    eps = 1e-8 is 0 in float16; StopIteration): their float32-arithmetic entries are now tried,
    and the honest verdict says which the dtype cannot tell apart."""
    params, grads = probe(dtype="float16", vector_axes={"w": (1,)})
    for opt, inputs in ((refimpl.NDAdam(vector_axes={"w": (1,)}, compute_dtype="float32"), (params, grads)),
                        (refimpl.AdaL(compute_dtype="float32"), (None, None))):
        d = diagnose(opt, *inputs, dtype="float16")
        assert d.matches and repr(opt) in {repr(m.optimizer) for m in d.matches}
        assert "float16 cannot tell apart" in d.summary()
