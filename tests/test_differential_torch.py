"""refimpl against torch.optim (Adam, AdamW, AMSGrad, SGD) in float64, in lockstep.

Before each step torch is handed refimpl's current parameters and state, so every one of the
50-64 steps is compared on its own, with the one-step rounding bound of tests/tolerances.py.
refimpl's own trajectory runs freely over the hypothesis-drawn gradient stream.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import refimpl
from strategies import beta1s, beta2s, epss, gradient_streams, initial_params, lrs, weight_decays
from tolerances import adam_step_bounds, sgd_step_bounds

torch = pytest.importorskip("torch")


def torch_adam_step(cls, kwargs, theta, g, state, t, amsgrad):
    p = torch.nn.Parameter(torch.tensor(theta))
    opt = cls([p], foreach=False, **kwargs)
    st_ = opt.state[p]
    st_["step"] = torch.tensor(float(t - 1), dtype=torch.float64)
    st_["exp_avg"] = torch.tensor(state.m)
    st_["exp_avg_sq"] = torch.tensor(state.v)
    if amsgrad:
        st_["max_exp_avg_sq"] = torch.tensor(state.v_max)
    p.grad = torch.tensor(g)
    opt.step()
    return p.detach().numpy(), st_["exp_avg"].numpy(), st_["exp_avg_sq"].numpy()


def assert_within(name, t, got, want, bound):
    err = np.abs(got - want)
    assert np.all(err <= bound), (f"{name} differs at step t={t}: |diff| {err.max():.3e} > bound "
                                  f"{bound[np.argmax(err - bound)]:.3e}\n got  {got}\n want {want}")


VARIANTS = {
    # name: (torch class, its kwargs builder, refimpl kwargs builder, amsgrad)
    "adam": (lambda: torch.optim.Adam, lambda wd: {}, lambda wd: {}, None),
    "adam_l2": (lambda: torch.optim.Adam, lambda wd: {"weight_decay": wd},
                lambda wd: {"weight_decay": wd}, None),
    "adam_amsgrad": (lambda: torch.optim.Adam, lambda wd: {"amsgrad": True, "weight_decay": wd},
                     lambda wd: {"amsgrad": True, "amsgrad_max_of": "v", "weight_decay": wd}, "v"),
    "adamw": (lambda: torch.optim.AdamW, lambda wd: {"weight_decay": wd},
              lambda wd: {"weight_decay": wd, "decoupled_weight_decay": True}, None),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
@given(grads=gradient_streams(), data=st.data(), lr=lrs, beta1=beta1s, beta2=beta2s, eps=epss,
       wd=weight_decays)
def test_adam_matches_torch_every_step(variant, grads, data, lr, beta1, beta2, eps, wd):
    torch_cls, torch_kw, ref_kw, amsgrad = VARIANTS[variant]
    if variant == "adam":
        wd = 0.0
    theta = data.draw(initial_params(grads.shape[1]))
    opt = refimpl.Adam(lr=lr, beta1=beta1, beta2=beta2, eps=eps, **ref_kw(wd))
    state = opt.init(theta)
    for t, g in enumerate(grads, start=1):
        want = torch_adam_step(torch_cls(), dict(lr=lr, betas=(beta1, beta2), eps=eps, **torch_kw(wd)),
                               theta, g, state, t, amsgrad)
        b_theta, b_m, b_v = adam_step_bounds(theta, g, state.m, state.v, t=t, lr=lr, beta1=beta1, beta2=beta2,
                                             eps=eps, wd=wd, decoupled=variant == "adamw",
                                             v_max=state.v_max, amsgrad=amsgrad)
        theta, state = opt.step(theta, g, state)
        assert_within("theta", t, theta, want[0], b_theta)
        assert_within("m", t, state.m, want[1], b_m)
        assert_within("v", t, state.v, want[2], b_v)


def test_adam_default_hyperparameters_match_torch():
    """refimpl.Adam() and torch.optim.Adam's defaults are the same numbers."""
    import inspect
    defaults = inspect.signature(torch.optim.Adam).parameters
    opt = refimpl.Adam()
    assert (opt.lr, (opt.beta1, opt.beta2), opt.eps) == (defaults["lr"].default, defaults["betas"].default,
                                                         defaults["eps"].default)


SGD_CASES = st.fixed_dictionaries({
    "lr": lrs, "momentum": st.one_of(st.just(0.0), st.floats(0.0, 0.99)),
    "dampening": st.one_of(st.just(0.0), st.floats(0.0, 1.0)), "nesterov": st.booleans(),
    "weight_decay": weight_decays,
}).filter(lambda k: not k["nesterov"] or (k["momentum"] > 0 and k["dampening"] == 0))


@given(grads=gradient_streams(), data=st.data(), kw=SGD_CASES)
def test_sgd_matches_torch_every_step(grads, data, kw):
    theta = data.draw(initial_params(grads.shape[1]))
    opt = refimpl.SGD(**kw)
    state = opt.init(theta)
    for t, g in enumerate(grads, start=1):
        p = torch.nn.Parameter(torch.tensor(theta))
        topt = torch.optim.SGD([p], foreach=False, **kw)
        if t > 1 and kw["momentum"] != 0:
            topt.state[p]["momentum_buffer"] = torch.tensor(state.momentum_buffer)
        p.grad = torch.tensor(g)
        topt.step()
        b_theta, b_buf = sgd_step_bounds(theta, g, state.momentum_buffer, t=t, lr=kw["lr"], momentum=kw["momentum"],
                                         dampening=kw["dampening"], nesterov=kw["nesterov"], wd=kw["weight_decay"])
        theta, state = opt.step(theta, g, state)
        assert_within("theta", t, theta, p.detach().numpy(), b_theta)
        if kw["momentum"] != 0:
            assert_within("momentum_buffer", t, state.momentum_buffer, topt.state[p]["momentum_buffer"].numpy(), b_buf)


# ----------------------------------------------------------------------------- free-running, with the users' helper
#
# The same comparison a user writes (refimpl.testing.strategies.matches_refimpl): hypothesis draws the
# numbers, a convention torch implements, parameters and a gradient stream of every regime (zeros, sign
# flips, tiny and huge magnitudes); torch runs freely through from_torch and must stay within the
# oracle's per-step tolerance at every step, in float64 and float32. Per-parameter numbers become torch
# param groups.

from refimpl.testing import from_torch  # noqa: E402
from refimpl.testing.strategies import hyperparameters, matches_refimpl  # noqa: E402


def torch_candidate(ref):
    """The torch optimizer that claims to compute the refimpl configuration ``ref`` (Adam, AdamW,
    AMSGrad or SGD), with one param group per parameter when ``ref`` has per-parameter numbers."""
    if isinstance(ref, refimpl.SGD):
        cls, numbers = torch.optim.SGD, {"lr": ref.lr, "momentum": ref.momentum, "dampening": ref.dampening,
                                         "nesterov": ref.nesterov, "weight_decay": ref.weight_decay}
    else:
        cls = torch.optim.AdamW if ref.decoupled_weight_decay else torch.optim.Adam
        numbers = {"lr": ref.lr, "betas": (ref.beta1, ref.beta2), "eps": ref.eps, "weight_decay": ref.weight_decay,
                   "amsgrad": ref.amsgrad}
    keyed = {k: v for k, v in numbers.items() if isinstance(v, dict)}
    if not keyed:
        return from_torch(cls, foreach=False, **numbers)
    keys = sorted(next(iter(keyed.values())))
    groups = [{"params": [k], **{name: v[k] for name, v in keyed.items()}} for k in keys]
    return from_torch(cls, groups, foreach=False, **{k: v for k, v in numbers.items() if k not in keyed})


def adam_family(h):
    """The conventions torch implements, on the numbers h."""
    return st.sampled_from([refimpl.Adam(**h), refimpl.Adam(**h, amsgrad=True),
                            refimpl.Adam(**h, decoupled_weight_decay=True)])


def sgd_family(h):
    momentum = h["momentum"]
    options = [{}] + ([{"nesterov": True}, {"dampening": 0.5}] if momentum > 0 else [])
    return st.sampled_from([refimpl.SGD(**h, **o) for o in options])


def groups(h):
    """Weight decay on 'w' only, and each parameter its own lr: what param groups are for."""
    return dict(h, weight_decay={"w": h["weight_decay"], "b": 0.0}, lr={"w": h["lr"], "b": h["lr"] / 2})


test_torch_adam_family_float64 = matches_refimpl(torch_candidate, hyperparameters("adam").flatmap(adam_family),
                                                 max_examples=60)
test_torch_adam_family_float32 = matches_refimpl(torch_candidate, hyperparameters("adam").flatmap(adam_family),
                                                 dtype="float32", max_examples=60)
test_torch_sgd_float32 = matches_refimpl(torch_candidate, hyperparameters("sgd").flatmap(sgd_family),
                                         dtype="float32", max_examples=60)
test_torch_param_groups = matches_refimpl(torch_candidate, hyperparameters("adam").map(groups).flatmap(adam_family),
                                          dtype="float32", max_examples=60)
