"""diagnose for every algorithm: the ND-Adam and AdaL grids, the family decided from the
trajectory, and the rounding counts of the tolerance for ND-Adam's and AdaL's reductions.

The official ND-Adam codes, diagnosed as their conventions, are in
tests/test_differential_ndadam_official.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import refimpl
from refimpl.testing import assert_matches, diagnose, from_step, probe
from refimpl.testing._compare import KAPPA, RHO, rounding_counts
from refimpl.testing._grid import grid, hyperparameters_of

ND = {"vector_axes": {"w": (0,)}, "lr_vector": 0.05, "lr_scalar": 0.01}
ADAL = {"lr": 0.01}
U32 = 2.0**-24


def _grid(family, given):
    h, _ = hyperparameters_of(family, given)
    return grid(family, h)


def as_step(opt):
    """A refimpl configuration hidden behind from_step: diagnose sees a function, no family."""
    return from_step(lambda p, g, s: opt.step(p, g, s), init=opt.init, name=f"hidden {type(opt).__name__}")


# ----------------------------------------------------------------------------- the grids


def test_the_ndadam_grid_names_the_paper_and_both_official_codes():
    entries = {c.label: c.description for c in _grid("ndadam", ND)}
    assert list(entries) == ["NDAdam(normalize_at_start=True)", "NDAdam()", "NDAdam(eps_hat=True)",
                             "NDAdam(normalize_at_start=True, eps_hat=True)"]
    assert entries["NDAdam(normalize_at_start=True)"].startswith("the paper's Algorithm 1")
    assert entries["NDAdam()"].startswith("the official TensorFlow code")
    assert entries["NDAdam(eps_hat=True)"].startswith("the official PyTorch code")
    assert len(_grid("ndadam", ND | {"eps": 0.0})) == 2     # with eps = 0 the placements are one


def test_the_adal_grid_spans_the_open_choices():
    conventions = _grid("adal", ADAL)
    assert len(conventions) == 3 * 2 * 2 * 2 and conventions[0].label == "AdaL()"
    assert "only available description" in conventions[0].description
    options = {(c.optimizer.norm, c.optimizer.eps_mode, c.optimizer.lr_decay, c.optimizer.bias_correction)
               for c in conventions}
    assert len(options) == 24


@pytest.mark.claim("prop-oracle-families")
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("family, given", [("ndadam", ND), ("adal", ADAL)])
def test_every_entry_is_recovered_and_every_other_rejected(family, given, dtype):
    """refimpl itself as the candidate: each configuration of the grid matches itself and nothing
    else, in float64 and in float32 (the probe tells every pair apart in both)."""
    for conv in _grid(family, given):
        d = diagnose(conv.optimizer, dtype=dtype)
        assert d.verdict == "match" and d.best.label == conv.label, str(d)
        assert len(d.matches) == 1, f"{conv.label} ties with {[m.label for m in d.matches[1:]]} in {dtype}"


@pytest.mark.claim("prop-oracle-families")
@pytest.mark.parametrize("opt, algorithm", [
    (refimpl.Adam(lr=0.01, eps_hat=True), "Adam"),
    (refimpl.Adam(lr=0.003, amsgrad=True, t_offset=-1), "Adam"),
    (refimpl.SGD(lr=0.01, momentum=0.9), "SGD"),
    (refimpl.SGD(lr=0.1), "SGD"),
    (refimpl.AdaL(lr=0.01, norm="per_tensor"), "AdaL"),
    (refimpl.AdaL(lr=0.001, eps_mode="denominator", lr_decay="none"), "AdaL"),
    (refimpl.NDAdam(vector_axes={"w": (1,)}, lr_vector=0.04, lr_scalar=0.04, eps_hat=True), "ND-Adam"),
    (refimpl.NDAdam(vector_axes={"w": (0, 1), "b": (0,)}, lr_vector=0.1, normalize_at_start=True), "ND-Adam"),
])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_family_is_decided_from_the_trajectory_and_said(opt, algorithm, dtype):
    """A function that declares nothing: diagnose decides the algorithm, says why, infers the step
    sizes (and SGD's momentum, ND-Adam's weight vectors) and finds the configuration."""
    d = diagnose(as_step(opt), dtype=dtype)
    assert d.algorithm == algorithm and d.verdict == "match", str(d)
    assert d.best.optimizer.__class__ is type(opt)
    for name in ("lr", "lr_vector", "lr_scalar", "momentum"):
        if hasattr(opt, name) and name in d.hyperparameters:
            assert d.hyperparameters[name] == getattr(opt, name), (name, str(d))
    assert f"algorithm: {algorithm}, decided from the trajectory: " in str(d)
    if algorithm == "ND-Adam":
        assert "at unit norm along" in d.decided and d.hyperparameters["vector_axes"] == \
            {k: tuple(a % np.ndim(probe(1)[0][k]) for a in v) for k, v in opt.vector_axes.items()}
    else:
        assert d.decided.startswith(f"{algorithm} explains it best (the closest ")


def lamb_like(params, grads, state, lr=0.01, b1=0.9, b2=0.999, eps=1e-6):
    """A Lamb-style update (Adam's direction rescaled by ||theta|| / ||direction|| per array):
    no family of the grids computes it."""
    t, m, v = state
    t += 1
    new_params, new_m, new_v = {}, {}, {}
    for k, theta in params.items():
        new_m[k] = b1 * m[k] + (1 - b1) * grads[k]
        new_v[k] = b2 * v[k] + (1 - b2) * grads[k] ** 2
        r = (new_m[k] / (1 - b1**t)) / (np.sqrt(new_v[k] / (1 - b2**t)) + eps)
        trust = np.linalg.norm(theta) / np.linalg.norm(r) if np.linalg.norm(theta) > 0 else 1.0
        new_params[k] = theta - lr * trust * r
    return new_params, (t, new_m, new_v)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_an_algorithm_outside_every_family_is_not_given_one(dtype):
    """When no family comes near, the report says no convention is close and leaves the algorithm
    undecided, rather than naming the least distant family as what the candidate computes."""
    zeros = lambda p: {k: np.zeros_like(x) for k, x in p.items()}  # noqa: E731
    d = diagnose(from_step(lamb_like, init=lambda p: (0, zeros(p), zeros(p)), name="lamb_like"), dtype=dtype)
    assert d.verdict == "none close" and not d.matches, str(d)
    assert d.summary().startswith("no ") and " convention is close" in d.summary()
    assert "algorithm: not decided: no family comes within 100 times the tolerance" in str(d)
    assert "decided from the trajectory" not in str(d)


def test_an_explicit_family_needs_weight_vectors_it_can_find():
    with pytest.raises(ValueError, match="family='ndadam' needs vector_axes"):
        diagnose(as_step(refimpl.Adam(lr=0.01)), family="ndadam")
    d = diagnose(as_step(refimpl.NDAdam(vector_axes={"w": (0,)})), family="ndadam")
    assert d.verdict == "match" and d.decided is None and "vector_axes" in d.inferred


def test_declared_hyperparameters_select_the_families_they_fit():
    """An optimizer with momentum declared can only be SGD: diagnose says it tried that family only."""
    opt = refimpl.SGD(lr=0.01, momentum=0.9, nesterov=True)
    candidate = from_step(lambda p, g, s: opt.step(p, g, s), init=opt.init,
                          hyperparameters={"lr": 0.01, "momentum": 0.9, "nesterov": True})
    d = diagnose(candidate)
    assert d.verdict == "match" and d.best.label == "SGD(momentum=0.9, nesterov=True)"
    assert d.decided == "SGD is the one family whose numbers the candidate's declared hyperparameters fit"


def test_a_wrong_ndadam_is_named_by_what_it_does():
    """An ND-Adam that forgets the tangent projection is no convention of the grid."""
    def no_projection(params, grads, state):
        t, m, v = state if state is not None else (0, {k: 0 * x for k, x in params.items()},
                                                   {k: 0.0 for k in params})
        t, out, m2, v2 = t + 1, {}, {}, {}
        for k, w in params.items():
            g = grads[k]
            m2[k] = 0.9 * m[k] + 0.1 * g
            v2[k] = 0.999 * v[k] + 0.001 * (np.sum(g * g, axis=0, keepdims=True) if k == "w" else g * g)
            w_bar = w - (0.05 if k == "w" else 0.01) * (m2[k] / (1 - 0.9**t)) / (np.sqrt(v2[k] / (1 - 0.999**t)) + 1e-8)
            out[k] = w_bar / np.sqrt(np.sum(w_bar * w_bar, axis=0, keepdims=True)) if k == "w" else w_bar
        return out, (t, m2, v2)
    d = diagnose(from_step(no_projection))
    assert d.algorithm == "ND-Adam" and d.verdict in ("per array", "none close", "near miss"), str(d)
    assert "params['w'] does not" in d.summary() or not d.matches


# ----------------------------------------------------------------------------- rounding counts


def test_rounding_counts_follow_the_derivation():
    p = {"w": np.zeros((3, 576)), "b": np.zeros(4)}
    nd = rounding_counts(refimpl.NDAdam(vector_axes={"w": (1,)}), p)
    assert nd == {"w": (KAPPA + 2**7 * (576 + 2), 576 + 6), "b": (KAPPA, RHO)}
    assert rounding_counts(refimpl.Adam(), p) == {"w": (KAPPA, RHO), "b": (KAPPA, RHO)}
    d = 3 * 576 + 4
    assert rounding_counts(refimpl.AdaL(), p) == {"w": (KAPPA + 2**7 * d, RHO), "b": (KAPPA + 2**7 * d, RHO)}
    assert rounding_counts(refimpl.AdaL(norm="per_tensor"), p)["w"] == (KAPPA + 2**7 * 3 * 576, RHO)
    assert rounding_counts(refimpl.AdaL(norm="per_element"), p)["b"] == (KAPPA + 2**7, RHO)


def _sequential(x, axis):
    """A plain loop's sum along ``axis``, in the array's dtype: the order with the largest error bound."""
    x = np.moveaxis(x, axis, 0)
    acc = np.zeros(x.shape[1:], dtype=x.dtype)
    for row in x:
        acc = (acc + row).astype(x.dtype)
    return np.expand_dims(acc, axis)


@pytest.mark.claim("prop-oracle-rounding-counts")
@settings(max_examples=200, derandomize=True, deadline=None)
@given(w_bar=arrays(np.float32, st.integers(2, 300), elements=st.floats(-1e3, 1e3, width=32)
                    .filter(lambda x: x == 0 or abs(x) > 1e-30)))
def test_a_normalization_errs_by_at_most_n_half_plus_two_u(w_bar):
    """The normalization step of the derivation: w = w_bar / ||w_bar|| computed in float32 with a
    plain loop's sum of squares (the worst order) errs by at most (n/2 + 2) u |w| per element
    (the subtraction before it is the third u)."""
    norm2 = float(np.sum(w_bar.astype(np.float64) ** 2))
    if norm2 == 0 or not math.isfinite(norm2) or norm2 > 1e36 or norm2 < 1e-30:
        return
    squares = (w_bar * w_bar).astype(np.float32)
    got = w_bar / np.sqrt(_sequential(squares[:, None], 0)[0])
    exact = w_bar.astype(np.float64) / math.sqrt(norm2)
    n = w_bar.size
    assert np.all(np.abs(got - exact) <= (n / 2 + 2) * U32 * np.abs(exact) * (1 + 1e-6))


@pytest.mark.claim("prop-oracle-rounding-counts")
@settings(max_examples=200, derandomize=True, deadline=None)
@given(g=arrays(np.float32, st.integers(1, 2000), elements=st.floats(-1e6, 1e6, width=32)))
def test_an_l1_norm_errs_by_at_most_d_minus_one_u(g):
    """AdaL's scale c = ||g||_1 summed in float32 in a plain loop errs by at most (d - 1) u relative."""
    got = float(_sequential(np.abs(g)[:, None], 0)[0, 0])
    exact = float(np.sum(np.abs(g.astype(np.float64))))
    assert abs(got - exact) <= max(g.size - 1, 0) * U32 * exact * (1 + 1e-6)


def ndadam_float32_loops(lr_vector, lr_scalar, axis=1, beta1=0.9, beta2=0.999, eps=1e-8):
    """An independent float32 ND-Adam (the paper's epsilon) whose every sum is a plain loop."""
    f = np.float32

    def step(params, grads, state):
        t, m, v = state if state is not None else (0, {k: np.zeros_like(x) for k, x in params.items()},
                                                   {k: None for k in params})
        t += 1
        bc1, bc2 = f(1 - beta1**t), f(1 - beta2**t)
        out, m2, v2 = {}, {}, {}
        for k, w in params.items():
            g = grads[k]
            if k == "w":
                g = g - _sequential(g * w, axis) * w
                sq = _sequential(g * g, axis)
            else:
                sq = g * g
            m2[k] = f(beta1) * m[k] + f(1 - beta1) * g
            v2[k] = sq * f(1 - beta2) if v[k] is None else f(beta2) * v[k] + f(1 - beta2) * sq
            step_ = (f(lr_vector) if k == "w" else f(lr_scalar)) * (m2[k] / bc1) / (np.sqrt(v2[k] / bc2) + f(eps))
            w_bar = w - step_
            out[k] = w_bar / np.sqrt(_sequential(w_bar * w_bar, axis)) if k == "w" else w_bar
        return out, (t, m2, v2)
    return from_step(step, name="float32 ND-Adam with plain-loop sums")


def adal_float32_loops(lr, beta1=0.9, beta2=0.999, eps=1e-8):
    """An independent float32 AdaL (global norm, epsilon in the preconditioner, lr / sqrt(t))
    whose l1 norm is a plain loop over every element."""
    f = np.float32

    def step(params, grads, state):
        t, m, v = state if state is not None else (0, {k: np.zeros_like(x) for k, x in params.items()},
                                                   {k: np.zeros_like(x) for k, x in params.items()})
        t += 1
        c = f(0)
        for k in params:
            for x in np.abs(grads[k]).reshape(-1):
                c = f(c + x)
        out, m2, v2 = {}, {}, {}
        for k, w in params.items():
            gt = c * grads[k]
            m2[k] = f(beta1) * m[k] + f(1 - beta1) * gt
            v2[k] = f(beta2) * v[k] + f(1 - beta2) * gt * gt
            m_hat, v_hat = m2[k] / f(1 - beta1**t), v2[k] / f(1 - beta2**t)
            seen = v_hat > 0
            pre = np.where(seen, 1 / np.sqrt(np.where(seen, v_hat, f(1))) + f(eps), f(0))
            out[k] = w - f(lr / math.sqrt(t)) * pre * m_hat
        return out, (t, m2, v2)
    return from_step(step, name="float32 AdaL with a plain-loop l1 norm")


@pytest.mark.claim("prop-oracle-rounding-counts")
@pytest.mark.parametrize("n", [64, 576, 4096])
def test_independent_float32_implementations_stay_within_the_counts(n):
    """Plain-loop sums against NumPy's pairwise ones, in float32, for long weight vectors and a
    long l1 norm: within the tolerance with the derived counts (and, measured, far within:
    the worst-case growth with n is an upper bound that rounding errors do not reach in practice)."""
    rng = np.random.default_rng(n)
    params = {"w": rng.standard_normal((4, n)).astype(np.float32), "b": rng.standard_normal(3).astype(np.float32)}
    grads = [{k: (rng.standard_normal(x.shape) * 10.0 ** rng.uniform(-2, 1)).astype(np.float32)
              for k, x in params.items()} for _ in range(30)]
    nd = refimpl.NDAdam(vector_axes={"w": (1,)}, lr_vector=1e-3, lr_scalar=1e-3)
    assert_matches(ndadam_float32_loops(1e-3, 1e-3), nd, params, grads)
    assert_matches(adal_float32_loops(1e-3), refimpl.AdaL(lr=1e-3), params, grads)


@pytest.mark.claim("prop-oracle-rounding-counts")
@pytest.mark.parametrize("n", [64, 576])
def test_the_counts_still_reject_another_convention(n):
    """With the counts of vectors of 64 and 576 elements, the official PyTorch code's epsilon is
    told from the paper's at the first step, in float32, where one vector's gradient is near
    epsilon (unit vectors at the start: the normalization moves nothing)."""
    rng = np.random.default_rng(n)
    w = rng.standard_normal((4, n))
    params = {"w": (w / np.linalg.norm(w, axis=1, keepdims=True)).astype(np.float32),
              "b": rng.standard_normal(3).astype(np.float32)}
    grads = []
    for _ in range(10):
        g = {k: rng.standard_normal(x.shape).astype(np.float32) for k, x in params.items()}
        g["w"][0] *= np.float32(2.0**-30)            # a whole vector near epsilon
        grads.append(g)
    paper = ndadam_float32_loops(1e-3, 1e-3)
    assert_matches(paper, refimpl.NDAdam(vector_axes={"w": (1,)}, lr_vector=1e-3, lr_scalar=1e-3), params, grads)
    with pytest.raises(AssertionError, match="first divergence: step 1, params\\['w'\\]\\[0, "):
        assert_matches(paper, refimpl.NDAdam(vector_axes={"w": (1,)}, lr_vector=1e-3, lr_scalar=1e-3, eps_hat=True),
                       params, grads)


# ----------------------------------------------------------------------------- first steps (prop-oracle-families)


def _unit(x):
    return x / np.linalg.norm(x)


@pytest.mark.claim("prop-oracle-families")
@settings(max_examples=100)
@given(n=st.integers(2, 6), seed=st.integers(0, 2**32 - 1), rho=st.floats(0.2, 5.0),
       lr=st.floats(1e-3, 0.5), beta2=st.floats(0.5, 0.9999), eps=st.sampled_from([1e-8, 1e-3]),
       tiny=st.booleans())
def test_the_first_steps_of_the_three_versions(n, seed, rho, lr, beta2, eps, tiny):
    """The formulas of the proposition for the paper (normalized start), the TensorFlow code and
    the PyTorch code; part 1: the two codes differ (w_0 and g independent, eps > 0); part 2: with
    a gradient orthogonal to w_0 the paper and the TensorFlow code turn w_0 by the stated angles."""
    rng = np.random.default_rng(seed)
    w0 = rho * _unit(rng.standard_normal(n))
    g_bar = rng.standard_normal(n) * (1e-8 if tiny else 1.0)
    common = dict(vector_axes=(0,), lr_vector=lr, beta2=beta2, eps=eps)
    versions = {"paper": refimpl.NDAdam(normalize_at_start=True, **common), "tf": refimpl.NDAdam(**common),
                "pt": refimpl.NDAdam(eps_hat=True, **common)}
    w1 = {k: opt.step(w0, g_bar, opt.init(w0))[0] for k, opt in versions.items()}
    w_hat = w0 / rho
    g = g_bar - (g_bar @ w0) * w0
    g_hat = g_bar - (g_bar @ w_hat) * w_hat
    want = {"paper": _unit(w_hat - lr * g_hat / (np.linalg.norm(g_hat) + eps)),
            "tf": _unit(w0 - lr * g / (np.linalg.norm(g) + eps)),
            "pt": _unit(w0 - lr * g / (np.linalg.norm(g) + eps / math.sqrt(1 - beta2)))}
    for k in versions:
        assert np.allclose(w1[k], want[k], rtol=0, atol=1e-12), k
    # Part 1: w_0 and g are independent (a random gradient), eps > 0 and beta2 > 0: the codes differ.
    c_tf, c_pt = lr / (np.linalg.norm(g) + eps), lr / (np.linalg.norm(g) + eps / math.sqrt(1 - beta2))
    if abs(c_tf - c_pt) > 1e-9 * c_tf:
        assert not np.allclose(w1["tf"], w1["pt"], rtol=0, atol=1e-14)
    # Part 2: an orthogonal gradient; the angles of the two first steps.
    g_perp = g_bar - (g_bar @ w_hat) * w_hat
    a = lr * np.linalg.norm(g_perp) / (np.linalg.norm(g_perp) + eps)
    for k, angle in (("paper", math.atan(a)), ("tf", math.atan(a / rho))):
        turned = _unit(versions[k].step(w0, g_perp, versions[k].init(w0))[0])
        along = float(turned @ w_hat)           # the angle by atan2: accurate for small angles too
        assert math.atan2(np.linalg.norm(turned - along * w_hat), along) == pytest.approx(angle, rel=1e-9), k
