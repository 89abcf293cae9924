"""refimpl against optax (adam, adamw, amsgrad) in float64, in lockstep.

As in the torch tests, optax is handed refimpl's parameters and state before every step, so
each of the 50-64 steps is compared on its own with the one-step bound of tests/tolerances.py.
optax's AMSGrad keeps the maximum of the *bias-corrected* second moment: refimpl's
``amsgrad_max_of="v_hat"``.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import refimpl
from strategies import beta1s, beta2s, epss, gradient_streams, initial_params, lrs, weight_decays
from test_differential_torch import assert_within
from tolerances import adam_step_bounds

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")
jax.config.update("jax_enable_x64", True)
jnp = jax.numpy

VARIANTS = {
    # name: (optax transformation builder, refimpl options, AMSGrad flavour)
    "adam": (lambda lr, b1, b2, eps, wd: optax.adam(lr, b1=b1, b2=b2, eps=eps), {}, None),
    "adamw": (lambda lr, b1, b2, eps, wd: optax.adamw(lr, b1=b1, b2=b2, eps=eps, weight_decay=wd),
              {"decoupled_weight_decay": True}, None),
    "amsgrad": (lambda lr, b1, b2, eps, wd: optax.amsgrad(lr, b1=b1, b2=b2, eps=eps),
                {"amsgrad": True, "amsgrad_max_of": "v_hat"}, "v_hat"),
}


def optax_step(tx, theta, g, state, t, amsgrad):
    """One optax update from refimpl's (theta, state) at step t."""
    inner = tx.init(jnp.asarray(theta))
    moments = dict(count=jnp.asarray(t - 1, dtype=jnp.int32), mu=jnp.asarray(state.m), nu=jnp.asarray(state.v))
    if amsgrad:
        moments["nu_max"] = jnp.asarray(state.v_max)
    inner = (inner[0]._replace(**moments),) + tuple(inner[1:])
    updates, inner = tx.update(jnp.asarray(g), inner, jnp.asarray(theta))
    new_theta = optax.apply_updates(jnp.asarray(theta), updates)
    return np.asarray(new_theta), np.asarray(inner[0].mu), np.asarray(inner[0].nu)


@pytest.mark.parametrize("variant", list(VARIANTS))
@given(grads=gradient_streams(), data=st.data(), lr=lrs, beta1=beta1s, beta2=beta2s, eps=epss, wd=weight_decays)
def test_adam_matches_optax_every_step(variant, grads, data, lr, beta1, beta2, eps, wd):
    build, options, amsgrad = VARIANTS[variant]
    if variant != "adamw":
        wd = 0.0
    tx = build(lr, beta1, beta2, eps, wd)
    theta = data.draw(initial_params(grads.shape[1]))
    opt = refimpl.Adam(lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=wd, **options)
    state = opt.init(theta)
    for t, g in enumerate(grads, start=1):
        want = optax_step(tx, theta, g, state, t, amsgrad)
        b_theta, b_m, b_v = adam_step_bounds(theta, g, state.m, state.v, t=t, lr=lr, beta1=beta1, beta2=beta2,
                                             eps=eps, wd=wd, decoupled=variant == "adamw", v_max=state.v_max,
                                             amsgrad=amsgrad)
        theta, state = opt.step(theta, g, state)
        assert_within("theta", t, theta, want[0], b_theta)
        assert_within("m", t, state.m, want[1], b_m)
        assert_within("v", t, state.v, want[2], b_v)


def test_optax_amsgrad_is_not_pytorch_amsgrad():
    """The two AMSGrad conventions are different algorithms: with a gradient that shrinks, the
    maximum of the corrected v (optax) and of the raw v (PyTorch) give different steps, and
    refimpl's ``amsgrad_max_of`` reproduces each."""
    grads = np.array([[1.0], [0.1], [0.1], [0.01]])
    theta = {}
    for max_of in ("v", "v_hat"):
        opt = refimpl.Adam(lr=0.1, amsgrad=True, amsgrad_max_of=max_of)
        x, s = np.zeros(1), opt.init(np.zeros(1))
        for g in grads:
            x, s = opt.step(x, g, s)
        theta[max_of] = x
    tx = optax.amsgrad(0.1)
    x, s = jnp.zeros(1), tx.init(jnp.zeros(1))
    for g in grads:
        u, s = tx.update(jnp.asarray(g), s, x)
        x = optax.apply_updates(x, u)
    assert abs(theta["v"][0] - theta["v_hat"][0]) > 1e-3
    # 4 steps of ~20 roundings each (see tolerances.adam_step_bounds): 80u ~ 1e-14 relative.
    np.testing.assert_allclose(np.asarray(x), theta["v_hat"], rtol=80 * 2.0**-53)


# ----------------------------------------------------------------------------- free-running, with the users' helper
#
# As in the torch tests: refimpl.testing.strategies.matches_refimpl draws the numbers, one of optax's
# conventions, parameters and a gradient stream of every regime, and optax runs freely (from_optax) within
# the oracle's per-step tolerance, in float64 and float32. Per-parameter weight decay is optax's mask
# (optax.adamw(..., mask=...), built on optax.masked).

from refimpl.testing import from_optax  # noqa: E402
from refimpl.testing.strategies import hyperparameters, matches_refimpl  # noqa: E402


def optax_candidate(ref):
    """The optax transformation that claims to compute the refimpl configuration ``ref``."""
    numbers = dict(learning_rate=ref.lr, b1=ref.beta1, b2=ref.beta2, eps=ref.eps)
    if ref.amsgrad:
        return from_optax(optax.amsgrad, **numbers)
    if not ref.decoupled_weight_decay:
        return from_optax(optax.adam, **numbers)
    wd = ref.weight_decay
    if isinstance(wd, dict):        # decay where it is nonzero: optax's mask
        value = max(wd.values())
        return from_optax(optax.adamw, **numbers, weight_decay=value, mask={k: v != 0 for k, v in wd.items()})
    return from_optax(optax.adamw, **numbers, weight_decay=wd)


def optax_family(h):
    return st.sampled_from([refimpl.Adam(**dict(h, weight_decay=0.0)),
                            refimpl.Adam(**dict(h, weight_decay=0.0), amsgrad=True, amsgrad_max_of="v_hat"),
                            refimpl.Adam(**h, decoupled_weight_decay=True)])


def masked(h):
    return refimpl.Adam(**dict(h, weight_decay={"w": h["weight_decay"], "b": 0.0}), decoupled_weight_decay=True)


test_optax_family_float64 = matches_refimpl(optax_candidate, hyperparameters("adam").flatmap(optax_family),
                                            max_examples=40)
test_optax_family_float32 = matches_refimpl(optax_candidate, hyperparameters("adam").flatmap(optax_family),
                                            dtype="float32", max_examples=40)
test_optax_masked_weight_decay = matches_refimpl(optax_candidate, hyperparameters("adam").map(masked),
                                                 dtype="float32", max_examples=40)
