r"""Hypothesis strategies for testing an optimizer against refimpl, and the property that does it.

The default probe of :func:`~refimpl.testing.diagnose` is one fixed input, built to tell the
conventions apart; a bug outside the conventions (a guard against overflow, a step skipped on a
zero gradient) can hide from it. A property-based test searches instead: hypothesis draws
parameters and gradient streams (zeros, sign flips, tiny and huge magnitudes), runs your
optimizer and refimpl on them, and when they part, shrinks the input to a minimal failing one.
A whole test of your own optimizer:

.. code-block:: python

    import refimpl
    from refimpl.testing import from_step
    from refimpl.testing.strategies import matches_refimpl

    def my_adam(params, grads, state):               # yours: any fn(params, grads, state) -> (params, state)
        ...

    test_my_adam = matches_refimpl(from_step(my_adam), refimpl.Adam(lr=1e-3), dtype="float32")

pytest collects ``test_my_adam``; it passes, or fails with the first step where the two part
and the shrunk parameters and gradient stream. This module needs ``hypothesis`` (a test-time
dependency: ``pip install 'refimpl[strategies]'`` or ``pip install hypothesis``); ``import refimpl``
and ``import refimpl.testing`` do not import it.

Every strategy takes ``dtype`` (``"float64"``, ``"float32"``, ``"float16"``; ``"bfloat16"`` with
``ml_dtypes``) and draws values exact in it:

* :func:`params` and :func:`gradient_streams`: the inputs;
* :func:`hyperparameters` and :func:`configurations`: valid numbers and refimpl configurations of
  each family (``"adam"``, ``"sgd"``, ``"ndadam"``, ``"adal"``);
* :func:`matches_refimpl`: the property.

Runs are derandomized by default (a fixed seed: the same examples, the same shrunk failure, on
every run), as a test suite and a book need.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from .._core import Optimizer, _describe
from ._diagnose import assert_matches
from ._grid import FAMILIES, check_family, grid, hyperparameters_of
from ._run import check_candidate, resolve_dtype

__all__ = ["params", "gradient_streams", "hyperparameters", "configurations", "matches_refimpl", "REGIMES"]

# The regimes a step's gradient is drawn from (see gradient_streams).
REGIMES = ("normal", "zeros", "sign flip", "tiny", "huge", "sparse")


def _scales(dtype: np.dtype) -> dict:
    """Powers of two for the tiny and huge regimes of ``dtype``: tiny gradients sit near (and below)
    epsilon = 1e-8 in float32 and float64; huge ones keep ``g**4`` (AdaL squares ``|g| g``) finite."""
    max_exp = np.finfo(dtype).maxexp
    if max_exp >= 1024:                       # float64
        return {"tiny": -60, "huge": 100}
    if max_exp >= 128:                        # float32, bfloat16
        return {"tiny": -30, "huge": 20}
    return {"tiny": -10, "huge": 2}            # float16: (2**2 * 8)**2 stays below 65504


def _dtype(dtype) -> np.dtype:
    return resolve_dtype(dtype)


def _entries(dtype: np.dtype, nonzero: bool = False):
    """Multiples of 1/256 from -8 to 8 (exact in every dtype down to float16 and bfloat16), one
    integer draw each (a search draws many: one draw is fast), shrinking towards 1.0; with
    ``nonzero``, never 0."""
    value = st.integers(-2304, 1792).map(lambda k: (k + 256) / 256)
    return value.filter(lambda x: x != 0) if nonzero else value


def _shape(max_ndim: int, max_side: int, min_ndim: int = 0):
    return st.integers(min_ndim, max_ndim).flatmap(
        lambda n: st.tuples(*[st.integers(1, max_side)] * n))


@st.composite
def _tree(draw, shapes: dict, dtype: np.dtype, elements):
    return {k: np.asarray(np.array(draw(st.lists(elements, min_size=math.prod(s), max_size=math.prod(s))),
                                   dtype=np.float64).reshape(s), dtype=dtype) for k, s in shapes.items()}


def params(*, dtype="float64", shapes: Mapping | None = None, keys=None, max_arrays: int = 2, max_ndim: int = 2,
           max_side: int = 3):
    """Strategy: a parameter tree, ``{name: array}``, every entry a nonzero multiple of 1/256
    from -8 to 8 (nonzero: every ND-Adam weight vector has a direction), exact in ``dtype``.

    ``shapes`` (``{"w": (3, 2), "b": (2,)}``) fixes the structure; else ``keys`` fixes the names and
    the shapes are drawn (up to ``max_ndim`` axes of up to ``max_side`` elements); else 1 to
    ``max_arrays`` arrays named ``p0``, ``p1``, ... Shrinks towards one scalar array of value 1.
    """
    dt = _dtype(dtype)
    if shapes is not None:
        fixed = st.just({k: tuple(s) for k, s in shapes.items()})
    elif keys is not None:
        fixed = st.fixed_dictionaries({k: _shape(max_ndim, max_side) for k in keys})
    else:
        fixed = st.integers(1, max_arrays).flatmap(
            lambda n: st.fixed_dictionaries({f"p{i}": _shape(max_ndim, max_side) for i in range(n)}))
    return fixed.flatmap(lambda s: _tree(s, dt, _entries(dt, nonzero=True)))


@st.composite
def _stream(draw, like: dict, dt: np.dtype, min_steps: int, max_steps: int, regimes: tuple):
    scales = _scales(dt)
    shapes = {k: np.shape(x) for k, x in like.items()}
    n = draw(st.integers(min_steps, max_steps))
    out = []
    for t in range(n):
        regime = draw(st.sampled_from(regimes), label=f"regime of step {t + 1}")
        if regime == "sign flip" and out:
            out.append({k: np.asarray(-g, dtype=dt) for k, g in out[-1].items()})
            continue
        g = draw(_tree(shapes, dt, _entries(dt)))
        if regime == "zeros":
            g = {k: np.zeros_like(x) for k, x in g.items()}
        elif regime in ("tiny", "huge"):
            g = {k: np.asarray(x.astype(np.float64) * 2.0 ** scales[regime], dtype=dt) for k, x in g.items()}
        elif regime == "sparse":     # one array of the step left at zero, the others as drawn
            zero = draw(st.sampled_from(sorted(g)))
            g = {k: np.zeros_like(x) if k == zero else x for k, x in g.items()}
        out.append(g)
    return out


def gradient_streams(params, *, dtype=None, min_steps: int = 1, max_steps: int = 20, regimes=REGIMES):
    """Strategy: a list of gradient trees shaped like ``params`` (a tree, or a strategy of trees:
    then the strategy draws ``(params, stream)`` pairs), one per step.

    Each step follows one regime of :data:`REGIMES`: ``"normal"`` (multiples of 1/256 from -8
    to 8), ``"zeros"`` (the whole gradient is 0: the moments still decay),
    ``"sign flip"`` (the previous step's gradient negated: the first moment cancels),
    ``"tiny"`` (times ``2**-30`` in float32, ``2**-60`` in float64: near and below epsilon),
    ``"huge"`` (times ``2**20`` in float32, ``2**100`` in float64: the fourth power, which
    AdaL's second moment holds, stays finite) and
    ``"sparse"`` (one array of the tree left at zero). Shrinks towards one step of ``"normal"``.
    """
    if isinstance(params, st.SearchStrategy):
        return params.flatmap(lambda p: st.tuples(st.just(p), gradient_streams(
            p, dtype=dtype, min_steps=min_steps, max_steps=max_steps, regimes=regimes)))
    flat = dict(params) if isinstance(params, Mapping) else {"": params}
    dt = _dtype(dtype) if dtype is not None else np.asarray(next(iter(flat.values()))).dtype
    unknown = sorted(set(regimes) - set(REGIMES))
    if unknown or not regimes:
        raise ValueError(f"regimes={regimes!r} must be a non-empty subset of {REGIMES}")
    stream = _stream(flat, dt, min_steps, max_steps, tuple(regimes))
    if isinstance(params, Mapping):
        return stream
    return stream.map(lambda gs: [g[""] for g in gs])


# ----------------------------------------------------------------------------- hyperparameters


def _choice(common, low, high, *, zero=False):
    """A common value, the interval's ends, or a float between; with ``zero``, also 0."""
    options = [st.just(common), st.just(low), st.floats(low, high)]
    return st.one_of(*([st.just(0.0)] if zero else []), *options)


def _numbers(family: str, dtype: np.dtype) -> dict:
    narrow = np.finfo(dtype).bits <= 16
    eps = _choice(1e-8, 1e-12, 1e-3) if not narrow else _choice(1e-4, 1e-5, 1e-2)   # eps must survive the dtype
    lr, decay = _choice(1e-3, 1e-4, 1.0), _choice(1e-2, 1e-4, 0.5, zero=True)
    beta1 = _choice(0.9, 0.0, 0.99, zero=True)
    beta2 = _choice(0.999, 0.5, 0.9999)
    if family == "adam":
        return {"lr": lr, "beta1": beta1, "beta2": beta2, "eps": eps, "weight_decay": decay}
    if family == "adal":
        return {"lr": lr, "beta1": beta1, "beta2": beta2, "eps": eps}
    if family == "ndadam":
        return {"lr_vector": _choice(0.05, 1e-3, 0.2), "lr_scalar": lr, "beta1": beta1, "beta2": beta2, "eps": eps,
                "weight_decay_scalar": decay}
    return {"lr": lr, "momentum": _choice(0.9, 0.1, 0.99, zero=True), "weight_decay": decay}


def hyperparameters(family: str = "adam", *, dtype="float64", **fixed):
    """Strategy: valid numbers for a refimpl optimizer of ``family`` (a dict), each drawn from its
    common value, the ends of a sensible range and values between: lr in [1e-4, 1], beta1 in
    [0, 0.99], beta2 in [0.5, 0.9999], eps in [1e-12, 1e-3] (in 16-bit dtypes [1e-5, 1e-2], so that
    it does not round to 0), weight decay 0 or in [1e-4, 0.5], SGD's momentum 0 or in [0.1, 0.99],
    ND-Adam's lr_vector in [1e-3, 0.2]. ``fixed`` values (e.g. ``lr=1e-3``, ND-Adam's
    ``vector_axes``) are not drawn.
    """
    check_family(family)
    dt = _dtype(dtype)
    drawn = {k: v for k, v in _numbers(family, dt).items() if k not in fixed}
    return st.fixed_dictionaries(drawn).map(lambda h: {**h, **fixed})


def configurations(family: str = "adam", *, dtype="float64", **fixed):
    """Strategy: refimpl configurations of ``family``: numbers from :func:`hyperparameters`, and
    one convention of the family's grid, as :func:`~refimpl.testing.diagnose` tries them (Adam:
    epsilon's placement, bias correction, AMSGrad, the weight decay mode, the step counter; ND-Adam:
    the paper and the two official codes; AdaL: its open choices; SGD: heavy-ball, Nesterov,
    dampened). ND-Adam needs ``vector_axes`` in ``fixed``.
    """
    if family == "ndadam" and "vector_axes" not in fixed:
        raise ValueError("configurations('ndadam') needs vector_axes=..., which names the weight vectors")

    def one(h):
        values, _ = hyperparameters_of(family, h)
        return st.sampled_from([c.optimizer for c in grid(family, values)])
    return hyperparameters(family, dtype=dtype, **fixed).flatmap(one)


# ----------------------------------------------------------------------------- the property


def _keys_of(reference) -> list | None:
    """The parameter names a refimpl configuration needs (its per-parameter values, ND-Adam's dict
    of weight vectors), or None when any names do."""
    names = set()
    for name in getattr(reference, "_keyed", ()):
        names |= set(getattr(reference, name))
    axes = getattr(reference, "vector_axes", None)
    if isinstance(axes, Mapping):
        names |= set(axes)
    return sorted(names) or None


def _params_for(reference, dt, max_side: int):
    """The default parameters for a reference: the names it needs, and for ND-Adam's weight vectors
    enough axes (at most ``max_side`` elements along each)."""
    keys = _keys_of(reference)
    axes = getattr(reference, "vector_axes", None)
    if axes is None:
        return params(dtype=dt, keys=keys, max_side=max_side)

    def vector_shape(spec):
        need = max(abs(a) + (a >= 0) for a in spec)     # axis a needs a + 1 axes, axis -a needs a
        return st.lists(st.integers(1, max_side), min_size=need, max_size=need).map(tuple)
    if isinstance(axes, Mapping):
        shapes = {k: vector_shape(axes[k]) if k in axes else _shape(2, max_side) for k in keys}
    else:
        shapes = {k: vector_shape(axes) for k in (keys or ["p0"])}
    return st.fixed_dictionaries(shapes).flatmap(lambda s: _tree(s, dt, _entries(dt, nonzero=True)))


def _show(tree) -> str:
    if isinstance(tree, Mapping):
        return "{" + ", ".join(f"{k!r}: {_show(x)}" for k, x in tree.items()) + "}"
    return np.array2string(np.asarray(tree, dtype=np.float64), separator=", ", max_line_width=10**6,
                           formatter={"float_kind": lambda x: repr(float(x))})


def _stream_text(grads: list) -> str:
    return "\n".join(f"  step {t}: {_show(g)}" for t, g in enumerate(grads, start=1))


class _Case:
    """One drawn input, printed readably in hypothesis's report."""

    def __init__(self, reference, params, grads):
        self.reference, self.params, self.grads = reference, params, grads

    def __repr__(self) -> str:
        from ._run import compact
        return (f"reference {compact(self.reference)}, parameters {_show(self.params)}, gradients "
                f"[{', '.join(_show(g) for g in self.grads)}]")


def matches_refimpl(candidate, reference, *, params=None, dtype="float64", min_steps: int = 1,
                    max_steps: int = 20, regimes=REGIMES, rtol: float | None = None, atol: float | None = None,
                    max_examples: int = 100, derandomize: bool = True, max_side: int = 3) -> Callable:
    """A hypothesis test: ``candidate`` computes what the refimpl configuration ``reference`` computes.

    Returns a function of no arguments (name it ``test_...`` and pytest collects it) that draws
    parameters and a gradient stream (:func:`gradient_streams`, all regimes), runs both with
    :func:`~refimpl.testing.assert_matches` (its per-step tolerance holds in every dtype) and
    fails with the first step where they part and the shrunk inputs, one line per step.

    Parameters
    ----------
    candidate
        Your optimizer as a candidate (:func:`~refimpl.testing.from_step`, ``from_torch``,
        ``from_optax``, ...), or a function ``reference -> candidate`` (to build a peer with the
        numbers of a drawn reference).
    reference
        A refimpl configuration, or a strategy of them (:func:`configurations`).
    params
        A fixed parameter tree (if your optimizer needs one structure), or a strategy of trees;
        by default :func:`params` (the names and axes the reference needs, if any).
    dtype
        The dtype of the drawn parameters and gradients.
    min_steps, max_steps, regimes
        The stream's length and the regimes of its steps (:func:`gradient_streams`).
    rtol, atol
        As in :func:`~refimpl.testing.assert_matches`.
    max_examples, derandomize
        Hypothesis's budget and determinism (a fixed seed by default: the same examples and the
        same shrunk failure on every run).
    """
    from hypothesis import HealthCheck
    dt = _dtype(dtype)
    if not callable(getattr(candidate, "init", None)):
        if not callable(candidate):
            check_candidate(candidate)          # raises, naming what is missing
    if not isinstance(reference, (Optimizer, st.SearchStrategy)):
        raise TypeError(f"reference must be a refimpl optimizer or a strategy of them (configurations(...)), got "
                        f"{_describe(reference)}")
    references = reference if isinstance(reference, st.SearchStrategy) else st.just(reference)

    def inputs(ref):
        if params is None:
            trees = _params_for(ref, dt, max_side)
        elif isinstance(params, st.SearchStrategy):
            trees = params
        else:
            trees = st.just(params)
        return trees.flatmap(lambda p: st.tuples(st.just(ref), st.just(p), gradient_streams(
            p, dtype=dt, min_steps=min_steps, max_steps=max_steps, regimes=regimes)))

    failing = []     # the inputs of every failure seen; hypothesis replays the shrunk one last

    @settings(max_examples=max_examples, derandomize=derandomize, deadline=None, database=None,
              report_multiple_bugs=False, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(case=references.flatmap(inputs).map(lambda c: _Case(*c)))
    def search(case):
        cand = candidate if callable(getattr(candidate, "init", None)) else candidate(case.reference)
        if not _agrees(cand, case.reference, case.params, case.grads, rtol, atol):   # no diagnosis: fast
            failing.append((cand, case))
            raise AssertionError(f"the candidate and refimpl part on {case!r}")

    def test_matches_refimpl():
        failing.clear()
        try:
            search()
        except AssertionError:
            if not failing:
                raise
            cand, case = failing[-1]       # the minimal failing input: the full report, with the diagnosis
            try:
                assert_matches(cand, case.reference, case.params, case.grads, rtol=rtol, atol=atol)
            except AssertionError as failure:
                raise AssertionError(f"{failure}\non the parameters {_show(case.params)} and the gradients\n"
                                     f"{_stream_text(case.grads)}") from None
            raise

    return test_matches_refimpl


def _agrees(candidate, reference, params, grads, rtol, atol) -> bool:
    """assert_matches without the diagnosis of a failure (what the search runs many times)."""
    from ._compare import compare, rounding_counts
    from ._diagnose import _tolerances
    from ._run import prepare, run, run_reference
    inputs = prepare(params, grads, None)
    rtol, atol = _tolerances(rtol, atol)
    cmp = compare(run(candidate, inputs), run_reference(reference, inputs), rtol=rtol, atol=atol,
                  counts=rounding_counts(reference, inputs.params))
    return cmp.matches
