"""Per-parameter hyperparameters: any number of any optimizer may be a dict keyed like the params.

The claim (book, prop-oracle-per-parameter): a step with per-parameter values is, for every
parameter, bit for bit the step of the configuration holding that parameter's values, run on
that parameter alone; AdaL's global norm still spans every parameter. Numbers and broadcast
arrays keep working, and a dict gets the same checks, with errors naming the argument and the
keys. The differential tests against torch param groups and optax's masks are in
tests/test_differential_torch.py and tests/test_differential_optax.py.
"""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import refimpl
from refimpl.testing import assert_matches, diagnose, from_step, probe
from test_errors import check_error

PARAMS = {"w": np.array([[0.5, -1.5, 2.0], [1.0, 0.25, -3.0]]), "b": np.array([1.0, -0.5])}


def stream(steps=12, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for t in range(steps):
        g = {k: rng.standard_normal(x.shape) * 10.0 ** rng.uniform(-3, 1) for k, x in PARAMS.items()}
        if t in (3, 4):
            g["b"] = np.zeros(2)          # zero gradients still decay the moments
        out.append(g)
    return out


# Every optimizer with two different values of one or more of its numbers, by parameter.
CASES = {
    "Adam": (refimpl.Adam, {"weight_decay": {"w": 0.1, "b": 0.0}, "lr": {"w": 0.01, "b": 0.02}},
             {"decoupled_weight_decay": True}),
    "Adam-schedule": (refimpl.Adam, {"lr": {"w": lambda t: 0.01 / t**0.5, "b": 0.02},
                                     "beta1": {"w": 0.9, "b": lambda t: 0.9 * 0.99 ** (t - 1)}}, {}),
    "Adam-amsgrad-eps": (refimpl.Adam, {"eps": {"w": 1e-8, "b": 1e-3}, "beta2": {"w": 0.999, "b": 0.99}},
                         {"amsgrad": True, "eps_hat": True}),
    "SGD": (refimpl.SGD, {"momentum": {"w": 0.9, "b": 0.0}, "weight_decay": {"w": 0.01, "b": 0.0}},
            {"lr": 0.05}),
    "SGD-nesterov": (refimpl.SGD, {"lr": {"w": 0.05, "b": 0.1}}, {"momentum": 0.9, "nesterov": True}),
    "NDAdam": (refimpl.NDAdam, {"beta2": {"w": 0.99, "b": 0.999}, "weight_decay_scalar": {"w": 0.0, "b": 1e-2}},
               {"vector_axes": {"w": (0,)}}),
    "AdaL-per-tensor": (refimpl.AdaL, {"lr": {"w": 0.01, "b": 0.05}, "eps": {"w": 1e-8, "b": 1e-6}},
                        {"norm": "per_tensor"}),
}


def run(opt, params, grads):
    state = opt.init(params)
    for g in grads:
        params, state = opt.step(params, g, state)
    return params, state


@pytest.mark.claim("prop-oracle-per-parameter")
@pytest.mark.parametrize("name", list(CASES))
def test_each_parameter_steps_as_its_own_configuration(name):
    cls, keyed, fixed = CASES[name]
    grads = stream()
    got, state = run(cls(**keyed, **fixed), PARAMS, grads)
    for key in PARAMS:
        alone = dict(fixed)
        if "vector_axes" in fixed:   # this parameter's weight vectors, if it has any
            alone["vector_axes"] = {k: a for k, a in fixed["vector_axes"].items() if k == key}
        own = cls(**{k: v[key] for k, v in keyed.items()}, **alone)
        want, want_state = run(own, {key: PARAMS[key]}, [{key: g[key]} for g in grads])
        assert np.array_equal(got[key], want[key]), (name, key)
        for field in state._fields[1:]:
            tree, want_tree = getattr(state, field), getattr(want_state, field)
            assert (want_tree is None) == (tree is None or key not in tree), (name, key, field)
            if want_tree is not None:
                assert np.array_equal(tree[key], want_tree[key]), (name, key, field)


@pytest.mark.claim("prop-oracle-per-parameter")
@pytest.mark.parametrize("norm", ["global", "per_element"])
def test_adal_global_norm_spans_every_parameter(norm):
    """With the global l1 norm the parameters are coupled: each steps as the configuration with its
    values *on the whole tree*."""
    keyed = {"lr": {"w": 0.01, "b": 0.05}, "beta1": {"w": 0.9, "b": 0.5}}
    grads = stream()
    got, _ = run(refimpl.AdaL(**keyed, norm=norm), PARAMS, grads)
    for key in PARAMS:
        want, _ = run(refimpl.AdaL(**{k: v[key] for k, v in keyed.items()}, norm=norm), PARAMS, grads)
        assert np.array_equal(got[key], want[key]), key


def test_one_value_for_all_is_the_plain_optimizer_bit_for_bit():
    grads = stream()
    for cls, extra in [(refimpl.Adam, {}), (refimpl.SGD, {"momentum": 0.9}),
                       (refimpl.NDAdam, {"vector_axes": {"w": (1,)}}), (refimpl.AdaL, {})]:
        plain, _ = run(cls(**extra), PARAMS, grads)
        name = "lr_scalar" if cls is refimpl.NDAdam else "lr"
        value = getattr(cls(**extra), name)
        keyed, _ = run(cls(**extra, **{name: {"w": value, "b": value}}), PARAMS, grads)
        assert all(np.array_equal(plain[k], keyed[k]) for k in PARAMS), cls.__name__


def test_arrays_per_parameter_broadcast_against_their_own_parameter():
    """A sweep of two configurations (leading axis 2) with per-parameter arrays of different shapes."""
    p = {"w": np.ones((2, 3)), "b": np.ones((2, 1))}
    lr = {"w": np.array([[0.1], [0.2]]), "b": np.array([[0.3], [0.4]])}
    opt = refimpl.Adam(lr=lr)
    new, _ = opt.step(p, {"w": np.ones((2, 3)), "b": np.ones((2, 1))}, opt.init(p))
    assert np.allclose(1 - new["w"][:, 0], [0.1, 0.2]) and np.allclose(1 - new["b"][:, 0], [0.3, 0.4])
    check_error(ValueError, lambda: refimpl.Adam(lr={"w": np.ones((3, 1)), "b": 0.1}).step(
        p, p, refimpl.Adam(lr={"w": np.ones((3, 1)), "b": 0.1}).init(p)),
        ["lr['w'] has shape (3, 1)", "params['w']"], [p])


def test_pickle_and_replace_keep_the_values():
    opt = refimpl.Adam(weight_decay={"w": 0.1, "b": 0.0}, decoupled_weight_decay=True)
    again = pickle.loads(pickle.dumps(opt))
    other = dataclasses.replace(opt, lr=0.5)
    grads = stream(4)
    a, _ = run(opt, PARAMS, grads)
    b, _ = run(again, PARAMS, grads)
    assert all(np.array_equal(a[k], b[k]) for k in PARAMS)
    assert other.weight_decay == {"w": 0.1, "b": 0.0} and other.lr == 0.5


def test_the_callers_dict_is_copied():
    wd = {"w": 0.1, "b": 0.0}
    opt = refimpl.Adam(weight_decay=wd)
    wd["b"] = 0.5
    assert opt.weight_decay == {"w": 0.1, "b": 0.0}


@pytest.mark.parametrize("make, exc, fragments", [
    (lambda: refimpl.Adam(lr={"w": -0.1, "b": 0.1}), ValueError, ["lr['w']=-0.1", "[0, inf)"]),
    (lambda: refimpl.Adam(beta2={"w": 1.0, "b": 0.9}), ValueError, ["beta2['w']=1.0", "[0, 1)"]),
    (lambda: refimpl.Adam(beta2={"w": lambda t: 0.9, "b": 0.9}), TypeError, ["beta2['w']", "schedule"]),
    (lambda: refimpl.Adam(lr={}), ValueError, ["lr is an empty dict"]),
    (lambda: refimpl.Adam(lr={1: 0.1}), TypeError, ["lr has a key 1", "parameters' names"]),
    (lambda: refimpl.Adam(lr={"w": "a", "b": 0.1}), TypeError, ["lr['w']", "'a'"]),
    (lambda: refimpl.Adam(lr={"w": 0.1, "b": 0.1}, eps={"w": 1e-8}), ValueError,
     ["eps has keys ['w']", "lr has keys ['b', 'w']"]),
    (lambda: refimpl.SGD(lr=0.1, momentum={"w": 0.0, "b": 0.9}, nesterov=True), ValueError,
     ["nesterov=True needs momentum > 0"]),
])
def test_bad_per_parameter_values_are_named(make, exc, fragments):
    check_error(exc, make, fragments)


@pytest.mark.parametrize("name", ["Adam", "SGD", "NDAdam", "AdaL"])
def test_keys_must_be_those_of_the_params(name):
    cls = getattr(refimpl, name)
    extra = {"vector_axes": {"w": (0,)}} if name == "NDAdam" else {}
    field = "lr_scalar" if name == "NDAdam" else "lr"
    missing = cls(**extra, **{field: {"w": 0.1}})
    unknown = cls(**extra, **{field: {"w": 0.1, "b": 0.1, "c": 0.1}})
    state = cls(**extra).init(PARAMS)
    g = stream(1)[0]
    check_error(ValueError, lambda: missing.step(PARAMS, g, state),
                [f"{field} has one value per parameter", "missing ['b']", "unknown []"], [PARAMS, g, state])
    check_error(ValueError, lambda: unknown.step(PARAMS, g, state), ["unknown ['c']"], [PARAMS, g, state])
    check_error(ValueError, lambda: missing.init(PARAMS), ["missing ['b']"], [PARAMS])
    single = np.ones(3)
    if name != "NDAdam":
        check_error(TypeError, lambda: missing.init(single), [f"{field} is a dict", "single array"], [single])


def test_a_per_parameter_schedule_is_checked_at_each_step_with_its_name():
    opt = refimpl.Adam(lr={"w": lambda t: 0.1 if t < 3 else -1.0, "b": 0.1})
    p, state = PARAMS, opt.init(PARAMS)
    for g in stream(2):
        p, state = opt.step(p, g, state)
    g = stream(3)[2]
    check_error(ValueError, lambda: opt.step(p, g, state), ["lr['w']", "t=3", "-1.0"], [p, g, state])


@pytest.mark.claim("prop-oracle-per-parameter")
def test_diagnose_and_assert_matches_take_per_parameter_configurations():
    """A hand-written AdamW that decays the weights but not the biases (the most common real
    configuration): diagnose finds it on per-parameter numbers, assert_matches holds it, and a
    version that decays the biases too is told apart, naming the array."""
    def adamw(params, grads, state, decay=("w",)):
        t, m, v = state if state is not None else (0, {k: 0 * x for k, x in params.items()},
                                                   {k: 0 * x for k, x in params.items()})
        t += 1
        out = {}
        for k, x in params.items():
            if k in decay:
                x = x - 1e-2 * 0.1 * x
            m[k] = 0.9 * m[k] + 0.1 * grads[k]
            v[k] = 0.999 * v[k] + 0.001 * grads[k] ** 2
            out[k] = x - 1e-2 * (m[k] / (1 - 0.9**t)) / (np.sqrt(v[k] / (1 - 0.999**t)) + 1e-8)
        return out, (t, m, v)
    reference = refimpl.Adam(lr=1e-2, weight_decay={"w": 0.1, "b": 0.0}, decoupled_weight_decay=True)
    params, grads = probe(50)
    assert_matches(from_step(adamw), reference, params, grads)
    d = diagnose(from_step(adamw), hyperparameters={"lr": 1e-2, "weight_decay": {"w": 0.1, "b": 0.0}})
    assert d.verdict == "match" and d.best.label == "Adam(weight_decay={'w': 0.1, 'b': 0.0}, " \
                                                    "decoupled_weight_decay=True)", str(d)
    both = from_step(lambda p, g, s: adamw(p, g, s, decay=("w", "b")))
    with pytest.raises(AssertionError, match=r"params\['b'\]"):
        assert_matches(both, reference, params, grads)


@given(wd=st.floats(0.0, 0.5), lr=st.floats(1e-4, 0.1))
def test_per_parameter_values_that_agree_are_one_value(wd, lr):
    """Keyed values equal for every parameter give the plain optimizer's bits, whatever the numbers."""
    grads = stream(5)
    a, _ = run(refimpl.Adam(lr=lr, weight_decay=wd), PARAMS, grads)
    b, _ = run(refimpl.Adam(lr={"w": lr, "b": lr}, weight_decay={"w": wd, "b": wd}), PARAMS, grads)
    assert all(np.array_equal(a[k], b[k]) for k in PARAMS)
