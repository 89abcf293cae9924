"""``diagnose`` and ``assert_matches``: which convention does a candidate compute?"""

from __future__ import annotations

import dataclasses
import math
import numbers

from .._core import Optimizer, _describe
from ._compare import Comparison, Divergence, compare, default_rtol
from ._grid import (FAMILIES, Convention, check_family, describe_hyperparameters, differences, family_of, grid,
                    hyperparameters_of)
from ._probe import probe
from ._run import Inputs, check_candidate, compact, label, prepare, run, run_reference

__all__ = ["Match", "Diagnosis", "diagnose", "assert_matches"]


def _e(x: float) -> str:
    """An error for people: 3e-16, 0, inf."""
    return "0" if x == 0 else f"{x:.1g}" if math.isfinite(x) else str(x)


@dataclasses.dataclass(frozen=True)
class Match:
    """How one refimpl configuration compares with the candidate."""

    label: str                      # e.g. "Adam(eps_hat=True)"
    description: str                # e.g. "the TF1/Keras convention (epsilon hat)"
    optimizer: Optimizer            # the refimpl configuration itself
    matches: bool                   # within tolerance at every step
    max_abs_err: float
    max_rel_err: float              # max over steps and parameters of e_t / S_t (see refimpl.testing)
    divergence: Divergence | None   # the first step beyond tolerance, if any
    comparison: Comparison = dataclasses.field(repr=False, compare=False, default=None)

    def __str__(self) -> str:
        text = f"{self.label}: {self.description}, max rel err {_e(self.max_rel_err)}"
        return text if self.matches else f"{text}, first diverging at step {self.divergence.step}"


@dataclasses.dataclass(frozen=True, eq=False)
class Diagnosis:
    """What :func:`diagnose` found: every configuration tried, best first.

    ``matches`` holds the configurations within tolerance (usually one; several when the inputs
    cannot tell them apart), ``best`` the closest configuration whether it matches or not.
    ``str()`` (and ``repr()``) give the report.
    """

    candidate: str
    family: str
    hyperparameters: dict
    assumed: bool                   # the hyperparameters are the family's defaults, not the candidate's
    steps: int
    dtype: str
    rtol: float
    atol: float
    results: tuple                  # of Match, best first
    plainest: Match | None = None   # how the grid's first entry (Algorithm 1 for Adam) compares

    @property
    def matches(self) -> tuple:
        return tuple(m for m in self.results if m.matches)

    @property
    def best(self) -> Match:
        return self.results[0]

    def summary(self) -> str:
        """The first line of the report."""
        best = self.best
        if best.matches:
            return f"matches {best.label}: {best.description}, max rel err {_e(best.max_rel_err)}"
        return f"no refimpl configuration matches; closest: {best.label}: {best.description}"

    def __str__(self) -> str:
        assumed = " (assumed: the candidate does not declare them; pass hyperparameters=...)" if self.assumed else ""
        lines = [self.summary(), f"candidate: {self.candidate}",
                 f"compared over {self.steps} {self.dtype} steps (rtol {self.rtol:.2g}, atol {self.atol:.2g}); "
                 f"hyperparameters {describe_hyperparameters(self.hyperparameters)}{assumed}"]
        lines += self._tie_lines() if self.best.matches else self._miss_lines()
        return "\n  ".join(lines)

    def _tie_lines(self) -> list[str]:
        others = self.matches[1:]
        if not others:
            return []
        return ["also within tolerance (these inputs cannot tell them apart): "
                + "; ".join(f"{m.label} ({_e(m.max_rel_err)})" for m in others)]

    def _miss_lines(self) -> list[str]:
        best = self.best
        lines = [f"{best.label} first diverges at {best.divergence}; max rel err over all steps "
                 f"{_e(best.max_rel_err)}"]
        lines += _hints(best.comparison, best.label, self.family)
        ratio = self.plainest.comparison.first_step_ratio if self.plainest is not None else None
        lr = self.hyperparameters.get("lr")
        if self.assumed and ratio is not None and abs(ratio - 1) > 1e-3 and isinstance(lr, float):
            lines.append(f"the hyperparameters were assumed: the candidate's first step is {ratio:.4g} times "
                         f"{self.plainest.label}'s; is its lr {ratio * lr:.4g}?")
        if len(self.results) > 1:
            lines.append("next closest: " + "; ".join(f"{m.label} ({_e(m.max_rel_err)}, step {m.divergence.step})"
                                                      for m in self.results[1:5]))
        return lines

    __repr__ = __str__


def _hints(c: Comparison, name: str, family: str) -> list[str]:
    """What the numbers suggest: a NaN/Inf the reference does not have, or a first step of another length."""
    out = []
    if c.first_nonfinite is not None:
        step, param, index = c.first_nonfinite
        where = f"{param}[{', '.join(map(str, index))}]" if index else param
        text = f"the candidate produced NaN or Inf at step {step} ({where}) where refimpl stays finite"
        if step == 1 and family == "adam":
            text += ("; at step 1 this is what a bias correction 1 - beta**t evaluated at t = 0 gives "
                     "(a step counter starting at 0, used before it is incremented)")
        out.append(text)
    elif c.first_step_ratio is not None and abs(c.first_step_ratio - 1) > 1e-3:
        out.append(f"the candidate's first step is {c.first_step_ratio:.4g} times as long as {name}'s "
                   f"(another lr, or another formula for the first step)")
    return out


def _check_tolerance(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"{name}={value!r} must be a finite number >= 0")
    return float(value)


def _tolerances(inputs: Inputs, rtol, atol) -> tuple[float, float]:
    rtol = default_rtol(inputs.dtype, inputs.steps) if rtol is None else _check_tolerance("rtol", rtol)
    atol = 0.0 if atol is None else _check_tolerance("atol", atol)
    return rtol, atol


def _rank(conventions: list[Convention], record: dict, inputs: Inputs, rtol: float, atol: float) -> tuple:
    results = []
    for conv in conventions:
        ref = run_reference(conv.optimizer, inputs)
        cmp = compare(record, ref, rtol=rtol, atol=atol)
        results.append(Match(conv.label, conv.description, conv.optimizer, cmp.matches, cmp.max_abs_err,
                             cmp.max_rel_err, cmp.divergence, cmp))
    order = lambda m: (not m.matches, m.max_rel_err if not math.isnan(m.max_rel_err) else math.inf)  # noqa: E731
    return tuple(sorted(results, key=order))


def _diagnosis(name: str, record: dict, inputs: Inputs, family: str, hyperparameters, rtol, atol) -> Diagnosis:
    h, assumed = hyperparameters_of(family, hyperparameters)
    conventions = grid(family, h)
    results = _rank(conventions, record, inputs, rtol, atol)
    plainest = next(m for m in results if m.optimizer is conventions[0].optimizer)
    return Diagnosis(name, family, h, assumed, inputs.steps, str(inputs.dtype), rtol, atol, results, plainest)


def diagnose(candidate, params=None, grads=None, *, family: str | None = None, hyperparameters=None,
             steps: int | None = None, rtol: float | None = None, atol: float | None = None) -> Diagnosis:
    """Which refimpl convention does ``candidate`` compute?

    Runs the candidate and every configuration of the family's grid (Adam: epsilon after the
    bias correction, epsilon hat or inside the root; bias correction on or off; no AMSGrad or
    AMSGrad on v or on v_hat; L2, decoupled or decoupled-and-not-lr-scaled weight decay; bias
    corrections counting from t - 1, t or t + 1; plus beta1 and beta2 swapped. SGD: heavy-ball, Nesterov,
    dampened) on the same gradients and ranks the configurations, the matching ones first.

    Parameters
    ----------
    candidate
        A refimpl optimizer or an adapter (:func:`from_torch`, :func:`from_optax`,
        :func:`from_keras`, :func:`from_step`): anything with ``init`` and ``step``.
    params, grads
        Initial parameters (an array or a dict of arrays) and a gradient stream (a sequence of
        gradients, or a function ``params -> grads`` evaluated at each side's own iterate).
        Both ``None`` (the default): :func:`probe`, built to tell every pair of the grid apart.
    family
        ``"adam"`` or ``"sgd"``; by default what the candidate declares, else ``"adam"``.
    hyperparameters
        The numbers the grid is built on (Adam: ``lr, beta1, beta2, eps, eps_root,
        weight_decay``; SGD: ``lr, momentum, dampening, weight_decay, nesterov``), as a dict or
        a refimpl optimizer. By default the candidate's own (adapters and refimpl optimizers
        declare them), else the family's defaults, which the report then says were assumed.
    steps, rtol, atol
        As in :func:`assert_matches`.

    Returns
    -------
    Diagnosis
        Its ``str()`` reads like ``matches Adam(eps_hat=True): the TF1/Keras convention
        (epsilon hat), max rel err 3e-16``, or, when nothing matches, names the closest
        configuration and where, in which parameter and by how much it diverges.
    """
    check_candidate(candidate)
    family = check_family(family if family is not None else family_of(candidate) or "adam")
    if hyperparameters is None:
        declared = getattr(candidate, "hyperparameters", None)
        hyperparameters = candidate if isinstance(candidate, FAMILIES[family]) else declared
    if (params is None) != (grads is None):
        raise ValueError(f"give both params and grads, or neither (then refimpl.testing.probe() is used); got "
                         f"params={_describe(params)} and grads={_describe(grads)}")
    if params is None:
        params, grads = probe(100 if steps is None else _positive_steps(steps))
    inputs = prepare(params, grads, steps)
    rtol, atol = _tolerances(inputs, rtol, atol)
    hyperparameters_of(family, hyperparameters)  # validate before the (long) runs
    record = run(candidate, inputs)
    return _diagnosis(label(candidate), record, inputs, family, hyperparameters, rtol, atol)


def _positive_steps(steps) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps={steps!r} must be a positive int")
    return steps


def assert_matches(candidate, reference: Optimizer, params, grads, *, steps: int | None = None,
                   rtol: float | None = None, atol: float | None = None) -> None:
    """Assert that ``candidate`` computes what the refimpl optimizer ``reference`` computes.

    Both run from ``params`` over ``grads`` (a sequence of gradients, an array or dict of arrays
    with a leading step axis, or a function ``params -> grads``; with a function each side gets
    the gradient at its own iterate), and their parameters are compared after every step.

    The tolerance: at step t, for every parameter array, ``max|candidate - reference| <= atol +
    rtol * S_t``, where ``S_t`` is the parameter's initial size plus the distance it has travelled
    (see the module :mod:`refimpl.testing`); by default ``rtol = 2**11 * steps * u`` (``u`` the
    unit roundoff of the dtype: 2.3e-11 for 100 float64 steps) and ``atol = 0``.

    Raises ``AssertionError`` naming the first diverging step, the parameter, the element, the
    largest absolute and relative errors, and the likely convention (from :func:`diagnose`, for
    Adam and SGD references), with the options in which it differs from ``reference``.
    """
    check_candidate(candidate)
    if not isinstance(reference, Optimizer):
        raise TypeError(f"reference must be a refimpl optimizer (refimpl.Adam(...), ...), got {_describe(reference)}")
    inputs = prepare(params, grads, steps)
    rtol, atol = _tolerances(inputs, rtol, atol)
    record = run(candidate, inputs)
    cmp = compare(record, run_reference(reference, inputs), rtol=rtol, atol=atol)
    if cmp.matches:
        return
    lines = [f"{label(candidate)} does not match refimpl {compact(reference)}",
             f"first divergence: {cmp.divergence}",
             f"over {inputs.steps} {inputs.dtype} steps: max abs err {cmp.max_abs_err:.3g}, max rel err "
             f"{cmp.max_rel_err:.3g} (rtol {rtol:.2g}, atol {atol:.2g})"]
    family = family_of(reference)
    if family is None:
        lines.append(f"likely convention: not diagnosed ({type(reference).__name__} has no convention grid)")
        lines.extend(_hints(cmp, compact(reference), type(reference).__name__.lower()))
    else:
        found = _diagnosis(label(candidate), record, inputs, family, reference, rtol, atol)
        best = found.best
        if best.matches:
            diff = differences(best.optimizer, reference)
            lines.append(f"likely convention: {best.label}: {best.description} (max rel err {_e(best.max_rel_err)}); "
                         f"it differs from the reference in {', '.join(diff) if diff else 'nothing (?)'}")
        else:
            lines.append(f"likely convention: none of the {len(found.results)} of the grid matches; closest "
                         f"{best.label}: {best.description}, first diverging at {best.divergence}")
            lines.extend(_hints(best.comparison, best.label, family))
    raise AssertionError("\n".join(lines))
