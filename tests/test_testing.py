"""refimpl.testing: adapters against their libraries, diagnose on the whole grid and on peers,
wrong implementations caught with a message naming the difference, and clear errors.

Every comparison here goes through refimpl.testing's own tolerance (module
refimpl/testing/_compare.py: rtol = 2**11 * T * u relative to the array's initial size plus the
distance it travelled); where a test compares two runs of the *same* arithmetic it asks for
bitwise equality instead.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import refimpl
from refimpl.testing import (CandidateError, Diagnosis, assert_matches, diagnose, from_keras,
                             from_optax, from_step, from_torch, probe)
from refimpl.testing._grid import grid, hyperparameters_of
from test_errors import check_error

os.environ.setdefault("KERAS_BACKEND", "jax")  # before any import of keras (tensorflow is not a peer)

U64 = 2.0**-53


def _have(module: str) -> bool:
    try:
        __import__(module)
        return True
    except Exception:  # noqa: BLE001 - ImportError, or a backend that fails to load
        return False


needs_torch = pytest.mark.skipif(not _have("torch"), reason="torch not installed (pip install 'refimpl[peers]')")
needs_optax = pytest.mark.skipif(not _have("optax"), reason="optax not installed (pip install 'refimpl[peers]')")
needs_keras = pytest.mark.skipif(not _have("keras"), reason="keras not installed (pip install keras)")

PARAMS, GRADS = probe(100)


def cs231n_adam(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, *, mistake=None):
    """A hand-written Adam in the style of CS231n's optim.adam, with one deliberate mistake."""
    def step(w, dw, config):
        t, m, v = config if config is not None else (0, 0 * w, 0 * w)
        b1, b2 = (beta2, beta1) if mistake == "swapped" else (beta1, beta2)
        t_bc = {"t_plus_1": t + 2, "t_zero": t}.get(mistake, t + 1)       # the count the corrections use
        m = b1 * m + (1 - b1) * dw
        v = b2 * v + (1 - b2) * dw * dw
        m_hat, v_hat = (m, v) if mistake == "no_bias_correction" else (m / (1 - b1**t_bc), v / (1 - b2**t_bc))
        denom = np.sqrt(v_hat + eps) if mistake == "eps_in_sqrt" else np.sqrt(v_hat) + eps
        return w - lr * m_hat / denom, (t + 1, m, v)

    def tree_step(params, grads, config):          # the same function on every array of a dict
        config = config or {k: None for k in params}
        out = {k: step(params[k], grads[k], config[k]) for k in params}
        return {k: o[0] for k, o in out.items()}, {k: o[1] for k, o in out.items()}
    return from_step(tree_step, hyperparameters={"lr": lr, "beta1": beta1, "beta2": beta2, "eps": eps},
                     name=f"cs231n_adam(mistake={mistake!r})")


# ----------------------------------------------------------------------------- adapters vs libraries


def _loop(candidate, params, grads):
    state = candidate.init(params)
    out = []
    for g in grads:
        params, state = candidate.step(params, g, state)
        out.append(params)
    return out


@needs_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_from_torch_steps_exactly_as_torch_does(dtype):
    """The adapter runs torch's own optimizer: its trajectory is bitwise a hand-driven torch loop."""
    import torch
    params = {k: v.astype(dtype) for k, v in PARAMS.items()}
    grads = [{k: v.astype(dtype) for k, v in g.items()} for g in GRADS[:20]]
    got = _loop(from_torch(torch.optim.AdamW, lr=1e-2, weight_decay=0.1), params, grads)
    tensors = {k: torch.nn.Parameter(torch.tensor(v)) for k, v in params.items()}
    opt = torch.optim.AdamW(list(tensors.values()), lr=1e-2, weight_decay=0.1)
    for g, mine in zip(grads, got):
        for k, p in tensors.items():
            p.grad = torch.tensor(g[k])
        opt.step()
        for k, p in tensors.items():
            assert mine[k].dtype == dtype and np.array_equal(mine[k], p.detach().numpy())


@needs_torch
def test_from_torch_declares_what_torch_computes_with():
    import torch
    c = from_torch(torch.optim.Adam, lr=0.5, betas=(0.8, 0.99))
    assert c.family == "adam" and c.hyperparameters == {"lr": 0.5, "beta1": 0.8, "beta2": 0.99, "eps": 1e-8,
                                                        "eps_root": 0.0, "weight_decay": 0.0}
    s = from_torch(torch.optim.SGD, lr=0.1, momentum=0.9)
    assert s.family == "sgd" and s.hyperparameters["momentum"] == 0.9 and s.hyperparameters["nesterov"] is False
    assert c.name == "torch.optim.Adam(lr=0.5, betas=(0.8, 0.99))"


@needs_optax
@pytest.mark.parametrize("form", ["factory", "transformation"])
def test_from_optax_steps_exactly_as_optax_does(form):
    import jax
    import optax
    candidate = (from_optax(optax.amsgrad, learning_rate=1e-2) if form == "factory"
                 else from_optax(optax.amsgrad(1e-2)))
    x64_before = jax.config.jax_enable_x64
    got = _loop(candidate, PARAMS, GRADS[:20])
    assert jax.config.jax_enable_x64 == x64_before, "the adapter must not switch x64 on globally"
    with jax.enable_x64(True):
        tx = optax.amsgrad(1e-2)
        p = {k: jax.numpy.asarray(v) for k, v in PARAMS.items()}
        state = tx.init(p)
        for g, mine in zip(GRADS[:20], got):
            updates, state = tx.update({k: jax.numpy.asarray(v) for k, v in g.items()}, state, p)
            p = optax.apply_updates(p, updates)
            for k in p:
                assert mine[k].dtype == np.float64 and np.array_equal(mine[k], np.asarray(p[k]))


@needs_optax
def test_from_optax_declares_the_factory_arguments_and_defaults():
    import optax
    c = from_optax(optax.adamw, learning_rate=0.1, weight_decay=0.01)
    assert c.family == "adam" and c.hyperparameters == {"lr": 0.1, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
                                                        "eps_root": 0.0, "weight_decay": 0.01}
    assert c.name == "optax.adamw(learning_rate=0.1, weight_decay=0.01)"
    assert from_optax(optax.nadam, learning_rate=0.1).name.startswith("optax.nadam(")
    assert from_optax(optax.adam(0.1)).hyperparameters is None
    assert from_optax(optax.adam(0.1), hyperparameters={"lr": 0.1}).hyperparameters == {"lr": 0.1}


@needs_keras
def test_from_keras_steps_exactly_as_keras_does():
    import keras
    got = _loop(from_keras(keras.optimizers.Adam, learning_rate=1e-2, amsgrad=True), PARAMS["w"], [g["w"] for g in GRADS[:10]])
    c = from_keras(keras.optimizers.Adam, learning_rate=1e-2, amsgrad=True)
    state = c.init(PARAMS["w"])
    opt, variables = state
    for g, mine in zip([g["w"] for g in GRADS[:10]], got):
        with c._precision(PARAMS["w"]):
            opt.apply_gradients([(keras.ops.convert_to_tensor(g, dtype="float64"), variables[""])])
            assert np.array_equal(mine, np.asarray(variables[""].value))


@needs_keras
def test_from_keras_declares_the_float32_learning_rate():
    import keras
    c = from_keras(keras.optimizers.Adam, learning_rate=1e-3)
    assert c.hyperparameters["lr"] == float(np.float32(1e-3)) != 1e-3
    assert c.hyperparameters["eps"] == 1e-7 and c.family == "adam"


def test_from_step_passes_state_through():
    seen = []

    def fn(p, g, s):
        seen.append(s)
        return p - g, s + 1
    c = from_step(fn, init=lambda p: 0, name="counter")
    _loop(c, np.zeros(2), [np.ones(2)] * 3)
    assert seen == [0, 1, 2] and c.name == "counter" and from_step(fn).init(np.zeros(1)) is None


@pytest.mark.parametrize("adapter, module, extra", [(from_torch, "torch", "refimpl[peers]"),
                                                    (from_optax, "optax", "refimpl[peers]"),
                                                    (from_keras, "keras", "pip install keras")])
def test_missing_peer_library_names_what_to_install(monkeypatch, adapter, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail, as if not installed
    with pytest.raises(ImportError) as info:
        adapter(object)
    assert module in str(info.value) and extra in str(info.value)


def test_importing_refimpl_testing_imports_no_peer():
    code = "import sys, refimpl.testing; print(sorted(m for m in ('torch', 'jax', 'optax', 'keras') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ----------------------------------------------------------------------------- the grid


GRIDS = {"lr=0.01, wd=0.01": {"lr": 1e-2, "weight_decay": 0.01}, "defaults": {}}


@pytest.mark.parametrize("name", list(GRIDS))
def test_diagnose_identifies_every_convention_of_the_grid(name):
    """Fed refimpl itself in any convention of the grid, diagnose names exactly that one, with
    error 0 (same arithmetic), and no other configuration is within tolerance: the probe tells
    every pair apart."""
    h, _ = hyperparameters_of("adam", GRIDS[name])
    conventions = grid("adam", h)
    assert len(conventions) == (102 if GRIDS[name] else 34)
    assert len({c.label for c in conventions}) == len(conventions)
    for conv in conventions:
        d = diagnose(conv.optimizer, hyperparameters=h)
        assert [m.label for m in d.matches] == [conv.label], str(d)
        assert d.best.max_rel_err == 0


def test_the_grid_covers_every_convention_the_issue_lists():
    h, _ = hyperparameters_of("adam", {"weight_decay": 0.01})
    options = [c.optimizer for c in grid("adam", h)]
    seen = {(f, getattr(o, f)) for o in options for f in ("eps_hat", "bias_correction", "amsgrad", "amsgrad_max_of",
                                                           "decoupled_weight_decay", "couple_weight_decay", "t_offset")}
    assert seen >= {("eps_hat", True), ("bias_correction", False), ("amsgrad", True), ("amsgrad_max_of", "v_hat"),
                    ("decoupled_weight_decay", True), ("couple_weight_decay", False), ("t_offset", -1),
                    ("t_offset", 1)}
    assert any(o.eps == 0 and o.eps_root == 1e-8 for o in options)                 # epsilon in the root
    assert any((o.beta1, o.beta2) == (0.999, 0.9) for o in options)                # swapped betas


@pytest.mark.parametrize("hyper, size", [({"eps": 0.0}, 12), ({"beta1": 0.0, "beta2": 0.0}, 4), ({"beta2": 0.0}, 19)])
def test_grid_lists_identical_configurations_once(hyper, size):
    """With eps = 0 the three placements coincide; with beta2 = 0 bias correction of v is 1."""
    h, _ = hyperparameters_of("adam", hyper)
    assert len(grid("adam", h)) == size


def test_sgd_grid():
    d = diagnose(refimpl.SGD(lr=0.01, momentum=0.9, nesterov=True))
    assert d.family == "sgd" and [m.label for m in d.matches] == ["SGD(momentum=0.9, nesterov=True)"]


# ----------------------------------------------------------------------------- peers


PEER_CASES = [
    ("torch Adam", needs_torch, lambda: from_torch(__import__("torch").optim.Adam, lr=1e-2), "Adam()"),
    ("torch AdamW", needs_torch, lambda: from_torch(__import__("torch").optim.AdamW, lr=1e-2, weight_decay=0.01),
     "Adam(weight_decay=0.01, decoupled_weight_decay=True)"),
    ("torch amsgrad", needs_torch, lambda: from_torch(__import__("torch").optim.Adam, lr=1e-2, amsgrad=True),
     "Adam(amsgrad=True)"),
    ("torch Adam L2", needs_torch, lambda: from_torch(__import__("torch").optim.Adam, lr=1e-2, weight_decay=0.01),
     "Adam(weight_decay=0.01)"),
    ("optax adam", needs_optax, lambda: from_optax(__import__("optax").adam, learning_rate=1e-2), "Adam()"),
    ("optax amsgrad", needs_optax, lambda: from_optax(__import__("optax").amsgrad, learning_rate=1e-2),
     "Adam(amsgrad=True, amsgrad_max_of='v_hat')"),
    ("keras Adam", needs_keras, lambda: from_keras(__import__("keras").optimizers.Adam, learning_rate=1e-2),
     "Adam(eps_hat=True)"),
]


@pytest.mark.parametrize("name, mark, build, expected", [pytest.param(*c, marks=c[1]) for c in PEER_CASES],
                         ids=[c[0] for c in PEER_CASES])
def test_diagnose_identifies_the_peers(name, mark, build, expected):
    d = diagnose(build())
    assert [m.label for m in d.matches] == [expected], str(d)
    # Different arithmetic orders, 100 steps: a few roundings, far inside the default tolerance.
    assert d.best.max_rel_err < 100 * U64


@needs_optax
def test_optax_transformation_without_hyperparameters_gets_its_lr_inferred():
    import optax
    d = diagnose(from_optax(optax.adam(1e-2)))
    assert d.source == "inferred" and d.hyperparameters["lr"] == 0.01 and d.inferred == ("lr",)
    assert d.summary().startswith("matches Adam() with lr = 0.01 (inferred from the trajectory)")
    assert "lr inferred from the trajectory" in str(d) and "algorithm: Adam, decided from the trajectory" in str(d)


@needs_optax
def test_nothing_matches_reports_the_closest_and_where_it_diverges():
    import optax
    d = diagnose(from_optax(optax.nadam, learning_rate=1e-2))
    text = str(d)
    assert not d.matches and d.best.label == "Adam()" and d.verdict == "none close"
    assert text.startswith("no Adam convention is close: the best, Adam(), is off by a relative 0.008")
    assert "first diverges at step 1, params['w'][0, 2]" in text and "rel err" in text and "next closest" in text
    assert d.best.divergence.step == 1 and d.best.divergence.abs_err > 1e-3


# ----------------------------------------------------------------------------- wrong implementations


@pytest.mark.parametrize("mistake, label, named", [
    (None, "Adam()", None),
    ("no_bias_correction", "Adam(bias_correction=False)", "bias_correction=False (the reference has True)"),
    ("t_plus_1", "Adam(t_offset=1)", "t_offset=1 (the reference has 0)"),
    ("eps_in_sqrt", "Adam(eps=0.0, eps_root=1e-08)", "eps_root=1e-08 (the reference has 0.0)"),
    ("swapped", "Adam(beta1=0.999, beta2=0.9)", "beta1=0.999 (the reference has 0.9)"),
])
def test_wrong_implementations_are_caught_and_named(mistake, label, named):
    candidate = cs231n_adam(mistake=mistake)
    d = diagnose(candidate)
    assert [m.label for m in d.matches] == [label], str(d)
    reference = refimpl.Adam(lr=1e-2)
    if mistake is None:
        assert_matches(candidate, reference, PARAMS, GRADS)
        return
    with pytest.raises(AssertionError) as info:
        assert_matches(candidate, reference, PARAMS, GRADS)
    msg = str(info.value)
    assert f"likely convention: {label}: {d.best.description}" in msg and named in msg
    step = 2 if mistake == "swapped" else 1   # swapped betas: the first step is lr * sign(g) either way
    assert f"first divergence: step {step}, params['w']" in msg and "max abs err" in msg and "rel err" in msg


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_a_counter_starting_at_zero_gives_nan_and_a_hint():
    """1 - beta**0 = 0: the candidate divides by zero at the first step."""
    d = diagnose(cs231n_adam(mistake="t_zero"))
    assert not d.matches
    assert "NaN or Inf at step 1" in str(d) and "step counter starting at 0" in str(d)
    with pytest.raises(AssertionError, match="step counter starting at 0"):
        assert_matches(cs231n_adam(mistake="t_zero"), refimpl.Adam(lr=1e-2), PARAMS, GRADS)


def test_diagnosis_reads_like_a_sentence():
    d = diagnose(refimpl.Adam(lr=1e-2, eps_hat=True))
    assert isinstance(d, Diagnosis)
    assert str(d).splitlines()[0] == "matches Adam(eps_hat=True): the TF1/Keras convention (epsilon hat), max rel err 0"
    assert repr(d) == str(d) and d.summary() == str(d).splitlines()[0]
    assert "compared over 100 float64 steps" in str(d)


# ----------------------------------------------------------------------------- assert_matches


@needs_torch
def test_assert_matches_passes_torch_and_fails_where_they_part():
    import torch
    assert_matches(from_torch(torch.optim.AdamW, lr=1e-2, weight_decay=0.01),
                   refimpl.Adam(lr=1e-2, weight_decay=0.01, decoupled_weight_decay=True), PARAMS, GRADS)
    with pytest.raises(AssertionError) as info:
        assert_matches(from_torch(torch.optim.AdamW, lr=1e-2, weight_decay=0.01),
                       refimpl.Adam(lr=1e-2, weight_decay=0.01), PARAMS, GRADS)
    msg = str(info.value)
    assert msg.startswith("torch.optim.AdamW(lr=0.01, weight_decay=0.01) does not match refimpl "
                          "Adam(lr=0.01, weight_decay=0.01)")
    assert "decoupled_weight_decay=True (the reference has False)" in msg


@needs_torch
def test_assert_matches_with_a_gradient_function_reports_where_divergence_starts():
    """Each side gets the gradient at its own iterate (Rosenbrock, 200 steps): torch matches, and
    an epsilon-placement difference is reported at the step where it starts, the first."""
    import torch
    grad = lambda p: refimpl.problems.rosenbrock(p)[1]  # noqa: E731
    x0 = np.array([-1.5, 2.0])
    assert_matches(from_torch(torch.optim.Adam, lr=1e-2, eps=1e-3), refimpl.Adam(lr=1e-2, eps=1e-3), x0, grad,
                   steps=200)
    with pytest.raises(AssertionError, match=r"first divergence: step 1, params\[[01]\]") as info:
        assert_matches(from_torch(torch.optim.Adam, lr=1e-2, eps=1e-3),
                       refimpl.Adam(lr=1e-2, eps=1e-3, eps_hat=True), x0, grad, steps=200)
    assert "likely convention: Adam()" in str(info.value)


def test_assert_matches_accepts_every_form_of_gradient_stream():
    opt = refimpl.Adam(lr=0.1)
    stacked = np.stack([g["w"] for g in GRADS[:20]])
    assert_matches(opt, refimpl.Adam(lr=0.1), PARAMS["w"], stacked)
    assert_matches(opt, refimpl.Adam(lr=0.1), PARAMS["w"], list(stacked))
    assert_matches(opt, refimpl.Adam(lr=0.1), PARAMS, {k: np.stack([g[k] for g in GRADS]) for k in PARAMS}, steps=7)
    assert_matches(opt, refimpl.Adam(lr=0.1), PARAMS["w"], lambda p: 2 * p, steps=30)


def test_assert_matches_float32_uses_the_float32_tolerance():
    p32 = {k: v.astype(np.float32) for k, v in PARAMS.items()}
    g32 = [{k: v.astype(np.float32) for k, v in g.items()} for g in GRADS]
    # A float32 candidate whose arithmetic differs by a reordering: still a match.
    def reordered(p, g, s):
        t, m, v = s
        t, m, v = t + 1, m + (g - m) * np.float32(0.1), v + (g * g - v) * np.float32(0.001)
        return p - np.float32(0.1 * (1 - 0.999**t) ** 0.5 / (1 - 0.9**t)) * m / (np.sqrt(v) + np.float32(1e-8)), (t, m, v)
    candidate = from_step(lambda p, g, s: ({k: reordered(p[k], g[k], s[k])[0] for k in p},
                                           {k: reordered(p[k], g[k], s[k])[1] for k in p}),
                          init=lambda p: {k: (0, 0 * x, 0 * x) for k, x in p.items()})
    assert_matches(candidate, refimpl.Adam(lr=0.1, eps_hat=True), p32, g32)


def test_assert_matches_on_ndadam_names_the_official_code_it_computes():
    """ND-Adam has a grid now: a candidate computing the official PyTorch code's epsilon, held
    against the paper's Algorithm 1, is named as that code."""
    ref = refimpl.NDAdam(vector_axes={"w": (0,)})
    params, grads = probe(20, vector_axes={"w": (0,)})
    assert_matches(ref, ref, params, grads)
    with pytest.raises(AssertionError, match="likely convention: NDAdam\\(eps_hat=True\\): the official PyTorch code"):
        assert_matches(refimpl.NDAdam(vector_axes={"w": (0,)}, eps_hat=True), ref, params, grads)


def test_inputs_are_copied_so_a_mutating_candidate_cannot_corrupt_them():
    def mutating(p, g, s):
        p += 1.0          # in place, on the copy it was handed
        g *= 0.0
        return p, s
    params, grads = np.zeros(3), [np.ones(3)] * 4
    with pytest.raises(AssertionError):
        assert_matches(from_step(mutating), refimpl.SGD(lr=1.0), params, grads)
    assert np.array_equal(params, np.zeros(3)) and all(np.array_equal(g, np.ones(3)) for g in grads)


# ----------------------------------------------------------------------------- the new Adam options


def test_t_offset_moves_the_bias_corrections_and_skips_them_at_zero():
    g = np.array([0.3, -2.0])
    for offset, tau in [(-1, [0, 1, 2]), (1, [2, 3, 4]), (0, [1, 2, 3])]:
        opt = refimpl.Adam(lr=0.1, t_offset=offset)
        x, s = np.ones(2), opt.init(np.ones(2))
        m = v = np.zeros(2)
        want = np.ones(2)
        for t in range(1, 4):
            x, s = opt.step(x, g, s)
            m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
            bc1, bc2 = (1 - 0.9 ** tau[t - 1], 1 - 0.999 ** tau[t - 1]) if tau[t - 1] > 0 else (1.0, 1.0)
            want = want - 0.1 * (m / bc1) / (np.sqrt(v / bc2) + 1e-8)
            assert s.t == t
            np.testing.assert_allclose(x, want, rtol=30 * t * U64)   # ~15 roundings a step, two orders


def test_uncoupled_weight_decay_is_not_scaled_by_lr():
    g, wd, lr = np.array([0.5, -1.0]), 0.1, 0.01
    x0 = np.array([2.0, -3.0])
    coupled = refimpl.Adam(lr=lr, weight_decay=wd, decoupled_weight_decay=True)
    uncoupled = refimpl.Adam(lr=lr, weight_decay=wd, decoupled_weight_decay=True, couple_weight_decay=False)
    plain = refimpl.Adam(lr=lr)
    step = plain.step(x0, g, plain.init(x0))[0] - x0                    # the Adam step alone
    x_c = coupled.step(x0, g, coupled.init(x0))[0]
    x_u = uncoupled.step(x0, g, uncoupled.init(x0))[0]
    np.testing.assert_allclose(x_c, x0 - lr * wd * x0 + step, rtol=8 * U64)
    np.testing.assert_allclose(x_u, x0 - wd * x0 + step, rtol=8 * U64)


# ----------------------------------------------------------------------------- bad input


def test_a_candidate_without_init_and_step_gets_a_suggestion():
    check_error(TypeError, lambda: diagnose(lambda p, g, s: (p, s)), ["candidate", "from_step"])
    check_error(TypeError, lambda: assert_matches(42, refimpl.Adam(), PARAMS, GRADS), ["candidate", "int"])


@needs_torch
def test_a_torch_class_or_instance_gets_a_suggestion():
    import torch
    check_error(TypeError, lambda: diagnose(torch.optim.Adam), ["from_torch(cls, **kwargs)"])
    inst = torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    check_error(TypeError, lambda: from_torch(inst), ["optimizer_class", "an instance"])
    check_error(ValueError, lambda: from_torch(torch.optim.Adam, lr=-1.0), ["Adam(lr=-1.0)", "rejected by PyTorch"])
    check_error(TypeError, lambda: from_torch(torch.optim.Adam, nope=1), ["Adam(nope=1)", "rejected by PyTorch"])


@needs_optax
def test_bad_optax_arguments():
    import optax
    check_error(TypeError, lambda: diagnose(optax.adam(0.1)), ["from_optax"])
    check_error(TypeError, lambda: from_optax(optax.adam(0.1), learning_rate=0.1), ["learning_rate=0.1", "factory"])
    check_error(TypeError, lambda: from_optax(42), ["transformation", "42"])
    check_error(TypeError, lambda: from_optax(optax.adam, lr=0.1), ["optax.adam(lr=0.1)"])


def test_bad_from_step_arguments():
    check_error(TypeError, lambda: from_step(42), ["fn", "42"])
    check_error(TypeError, lambda: from_step(lambda p, g, s: (p, s), init=3), ["init", "3"])
    check_error(ValueError, lambda: from_step(lambda p, g, s: (p, s), family="rmsprop"), ["family='rmsprop'"])
    check_error(TypeError, lambda: from_step(lambda p, g, s: (p, s), hyperparameters=[1]), ["hyperparameters"])


def _raising_at_3(p, g, s):
    if s == 2:
        raise ZeroDivisionError("boom")
    return p - g, s + 1


@pytest.mark.parametrize("fn, fragments", [
    (_raising_at_3, ["raised ZeroDivisionError at step 3", "boom"]),
    (lambda p, g, s: (p[:1], s), ["step 1", "params has shape (1,) but params has shape (3,)"]),
    (lambda p, g, s: (p.astype(np.float32), s), ["step 1", "params as float32", "for float64 inputs",
                                                  "diagnose(candidate, dtype='float32')"]),
    (lambda p, g, s: p, ["must return (params, state)", "step 1"]),
    (lambda p, g, s: ({"x": p}, s), ["step 1", "a dict", "one array"]),
    (lambda p, g, s: ("x", s), ["step 1", "must be an array", "'x'"]),
])
def test_a_candidate_that_misbehaves_gets_a_clear_error(fn, fragments):
    params, grads = np.zeros(3), [np.ones(3)] * 4
    check_error(CandidateError, lambda: assert_matches(from_step(fn, init=lambda p: 0), refimpl.SGD(lr=1.0),
                                                       params, grads), fragments, [params, grads])


def test_a_gradient_function_that_misbehaves_gets_a_clear_error():
    x = np.zeros(2)
    check_error(CandidateError, lambda: assert_matches(refimpl.SGD(), refimpl.SGD(), x, lambda p: p[:1], steps=3),
                ["gradient function", "shape (1,)"], [x])
    check_error(CandidateError, lambda: assert_matches(refimpl.SGD(), refimpl.SGD(), x, lambda p: 1 / 0, steps=3),
                ["gradient function raised ZeroDivisionError at step 1"], [x])


@pytest.mark.parametrize("kwargs, exc, fragments", [
    ({"steps": 0}, ValueError, ["steps=0"]),
    ({"steps": 200}, ValueError, ["steps=200", "only 100"]),
    ({"rtol": -1.0}, ValueError, ["rtol=-1.0"]),
    ({"atol": float("nan")}, ValueError, ["atol=nan"]),
    ({"family": "lion"}, ValueError, ["family='lion'", "'adam', 'sgd', 'ndadam', 'adal'"]),
    ({"family": "ndadam"}, TypeError, ["hyperparameters is a Adam", "family='ndadam'"]),
    ({"hyperparameters": {"learning_rate": 0.1}}, ValueError, ["learning_rate", "lr, beta1"]),
    ({"hyperparameters": {"lr": -0.1}}, ValueError, ["lr=-0.1"]),
    ({"hyperparameters": 0.1}, TypeError, ["hyperparameters must be a dict", "0.1"]),
])
def test_bad_diagnose_arguments(kwargs, exc, fragments):
    check_error(exc, lambda: diagnose(refimpl.Adam(), PARAMS, GRADS, **kwargs), fragments, [PARAMS, GRADS, kwargs])


@pytest.mark.parametrize("params, grads, exc, fragments", [
    (np.zeros(3, dtype=np.int64), [np.zeros(3)], TypeError, ["params", "real floating", "int64"]),
    ({"a": np.zeros(2), "b": np.zeros(2, np.float32)}, [{"a": np.zeros(2), "b": np.zeros(2, np.float32)}],
     TypeError, ["mix dtypes"]),
    (np.zeros(3), [np.zeros(2)], ValueError, ["grads[0]", "shape (2,)", "(3,)"]),
    (np.zeros(3), [np.zeros(3, np.float32)], ValueError, ["grads[0]", "float32"]),
    (np.zeros(3), np.zeros(3), ValueError, ["leading step axis", "shape (3,)"]),
    (np.zeros(3), "grads", TypeError, ["grads must be", "'grads'"]),
    (np.zeros(3), [], ValueError, ["grads is empty"]),
    ({"a": np.zeros(2)}, {"b": np.zeros((4, 2))}, ValueError, ["keys ['b']", "['a']"]),
    ({}, [{}], ValueError, ["params is an empty dict"]),
])
def test_bad_params_and_grads(params, grads, exc, fragments):
    check_error(exc, lambda: assert_matches(refimpl.SGD(), refimpl.SGD(), params, grads), fragments, [params, grads])


def test_reference_must_be_a_refimpl_optimizer():
    check_error(TypeError, lambda: assert_matches(refimpl.SGD(), "Adam", np.zeros(2), [np.zeros(2)]),
                ["reference must be a refimpl optimizer", "'Adam'"])
