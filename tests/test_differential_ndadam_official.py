"""refimpl.NDAdam against the official ND-Adam PyTorch code (github zj10/ND-Adam,
``pytorch/ndadam.py``), in float64 and in lockstep.

The official optimizer calls overloads that current PyTorch removed (``add_(scalar, tensor)``,
``addcdiv_(scalar, t1, t2)``), so it cannot run as published. ``official_step`` below is a
minimal transcription of its update with today's operators, written for this test: same
operations, same order, including the axis-by-axis sums. refimpl reproduces it with
``eps_hat=True`` (epsilon added to sqrt(v) before the bias correction, as the official code does)
and ``weight_decay_scalar`` (the official code's L2 decay, which its training script applies to
the non-vector parameters only).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import refimpl
from strategies import beta1s, epss, weight_decays
from test_differential_torch import assert_within
from tolerances import adam_step_bounds, ndadam_vector_step_bounds

torch = pytest.importorskip("torch")


def official_step(p, grad, state, *, lr, beta1, beta2, eps, weight_decay, vec_axes):
    """One step of the official code's update on one tensor (``state``: step, exp_avg, exp_avg_sq)."""
    if weight_decay != 0:
        grad = grad + weight_decay * p
    state["step"] += 1
    exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
    if vec_axes:
        radial = grad * p
        for axis in vec_axes:
            radial = torch.sum(radial, axis, keepdim=True)
        grad = grad - radial * p
        exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
        sq = grad * grad
        for axis in vec_axes:
            sq = torch.sum(sq, axis, keepdim=True)
        exp_avg_sq.mul_(beta2).add_(sq, alpha=1 - beta2)
    else:
        exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    denom = exp_avg_sq.sqrt().add_(eps)
    step_size = lr * math.sqrt(1 - beta2 ** state["step"]) / (1 - beta1 ** state["step"])
    p = p.addcdiv(exp_avg, denom, value=-step_size)
    if vec_axes:
        norm = p * p
        for axis in vec_axes:
            norm = torch.sum(norm, axis, keepdim=True)
        p = p / norm.sqrt()
    return p


SHAPES = {"conv": (3, 2, 2, 2), "dense": (4, 3), "bias": (4,)}
AXES = {"conv": (1, 2, 3), "dense": (1,)}  # PyTorch layouts: one vector per output channel / unit


def streams(rng, steps):
    """Gradients over six decades with both signs and 20% exact zeros (drawing ~2000 entries
    one by one through hypothesis would dominate the test's time; the seed is drawn instead)."""
    def one(shape):
        g = rng.choice([-1.0, 1.0], shape) * 10.0 ** rng.uniform(-4, 2, shape)
        return np.where(rng.random(shape) < 0.2, 0.0, g)
    return {k: one((steps,) + s) for k, s in SHAPES.items()}


@pytest.mark.claim("prop-ndadam-code-variants")
@given(data=st.data(), steps=st.integers(50, 56), lr_vector=st.floats(1e-3, 0.2), lr_scalar=st.floats(1e-4, 0.1),
       beta1=beta1s, beta2=st.floats(0.5, 0.9999), eps=epss, wd=weight_decays, normalized=st.booleans())
def test_ndadam_matches_the_official_pytorch_code_every_step(data, steps, lr_vector, lr_scalar, beta1, beta2,
                                                             eps, wd, normalized):
    """refimpl.NDAdam(eps_hat=True, weight_decay_scalar=wd) computes the official PyTorch update,
    for weight vectors and scalars, within the rounding of one step (float64, lockstep)."""
    opt = refimpl.NDAdam(vector_axes=AXES, lr_vector=lr_vector, lr_scalar=lr_scalar, beta1=beta1, beta2=beta2,
                         eps=eps, eps_hat=True, weight_decay_scalar=wd)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    grads = streams(rng, steps)
    params = {k: rng.standard_normal(s) for k, s in SHAPES.items()}
    if normalized:  # the paper normalizes at initialization; the official code does not
        params = opt.normalize(params)
    state = opt.init(params)
    for t in range(1, steps + 1):
        g = {k: grads[k][t - 1] for k in SHAPES}
        new_params, new_state = opt.step(params, g, state)
        for k in SHAPES:
            vec = k in AXES
            ostate = {"step": t - 1, "exp_avg": torch.tensor(state.m[k]), "exp_avg_sq": torch.tensor(state.v[k])}
            want = official_step(torch.tensor(params[k]), torch.tensor(g[k]), ostate,
                                 lr=lr_vector if vec else lr_scalar, beta1=beta1, beta2=beta2, eps=eps,
                                 weight_decay=0.0 if vec else wd, vec_axes=AXES.get(k))
            if vec:
                bounds = ndadam_vector_step_bounds(params[k], g[k], state.m[k], state.v[k], t=t, lr=lr_vector,
                                                   beta1=beta1, beta2=beta2, eps=eps, axes=AXES[k])
            else:  # the epsilon-hat step is Algorithm 1 with eps / sqrt(1 - beta2^t)
                bounds = adam_step_bounds(params[k], g[k], state.m[k], state.v[k], t=t, lr=lr_scalar, beta1=beta1,
                                          beta2=beta2, eps=eps / math.sqrt(1 - beta2**t), wd=wd)
            assert_within(f"params[{k!r}]", t, new_params[k], want.numpy(), bounds[0])
            assert_within(f"state.m[{k!r}]", t, new_state.m[k], ostate["exp_avg"].numpy(), bounds[1])
            assert_within(f"state.v[{k!r}]", t, new_state.v[k], ostate["exp_avg_sq"].numpy(), bounds[2])
        params, state = new_params, new_state


def test_paper_and_official_epsilon_differ_early():
    """The official code's epsilon is the paper's epsilon times 1/sqrt(1 - beta2^t) early on:
    with a gradient of norm comparable to eps the first steps differ visibly."""
    w = np.array([[1.0], [0.0]])
    g = np.array([[0.0], [1e-8]])
    steps = {}
    for eps_hat in (False, True):
        opt = refimpl.NDAdam(vector_axes=(0,), lr_vector=0.1, eps=1e-8, eps_hat=eps_hat)
        new, _ = opt.step(w, g, opt.init(w))
        steps[eps_hat] = new[1, 0]
    # paper: tan(angle) = 0.1 * 1e-8 / (1e-8 + 1e-8) = 0.05; official: 0.1 * 1e-8 * sqrt(0.001) / (1e-8 sqrt(0.001) + 1e-8)
    assert steps[False] == pytest.approx(-0.05 / math.hypot(1, 0.05), rel=1e-12)
    tan_official = 0.1 * math.sqrt(0.001) / (math.sqrt(0.001) + 1)
    assert steps[True] == pytest.approx(-tan_official / math.hypot(1, tan_official), rel=1e-12)
