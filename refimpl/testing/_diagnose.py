"""``diagnose`` and ``assert_matches``: which convention does a candidate compute?"""

from __future__ import annotations

import dataclasses
import itertools
import math
import numbers

import numpy as np

from .._core import _SINGLE, Optimizer, _describe, _name
from .._precision import check_epsilon
from ._compare import Comparison, Divergence, compare, rounding_counts, unit_roundoff, write_roundoff
from ._grid import (FAMILIES, NAMES, Convention, check_family, compute_variants, describe_hyperparameters,
                    differences, family_of, grid, hyperparameters_of, scalar_variants, translate)
from ._probe import probe
from ._run import Inputs, check_candidate, compact, label, prepare, resolve_dtype, run, run_reference

__all__ = ["Match", "Diagnosis", "diagnose", "assert_matches", "NEAR"]

NEAR = 100          # a best convention within NEAR times the tolerance is a near miss; beyond, nothing is close
U32 = 2.0**-24      # float32's unit roundoff: the "within float32 roundoff" verdict of wider runs
_PRECISION_SEARCH = 3   # how many of the closest conventions get their precision variants tried


def _e(x: float) -> str:
    """An error for people: 3e-16, 0, inf."""
    return "0" if x == 0 else f"{x:.1g}" if math.isfinite(x) else str(x)


def _times(x: float) -> str:
    return f"{x:.2g}" if x < 1e4 else f"{x:.0e}".replace("e+0", "e").replace("e+", "e")


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
    arrays: tuple = dataclasses.field(repr=False, compare=False, default=())   # the parameter arrays it matches

    @property
    def worst(self) -> float:
        """The largest ratio of error to tolerance over steps and arrays (<= 1: a match)."""
        return self.comparison.worst if self.comparison is not None else (0.0 if self.matches else math.inf)

    def __str__(self) -> str:
        text = f"{self.label}: {self.description}, max rel err {_e(self.max_rel_err)}"
        return text if self.matches else f"{text}, first diverging at step {self.divergence.step}"


@dataclasses.dataclass(frozen=True, eq=False)
class Diagnosis:
    """What :func:`diagnose` found: every configuration tried, best first.

    ``matches`` holds the configurations within tolerance (one, or several when the inputs cannot
    tell them apart in this dtype), ``best`` the closest configuration whether it matches or not.
    ``verdict`` is one of ``"match"``, ``"per array"`` (each parameter array, or parameter group,
    matches a configuration of its own, or some match and others do not), ``"float32 roundoff"``
    (a wider run that matches once float32's roundoff is allowed), ``"near miss"`` (within
    :data:`NEAR` times the tolerance) and ``"none close"``.
    ``str()`` (and ``repr()``) give the report.
    """

    candidate: str
    family: str
    hyperparameters: dict
    source: str                     # "declared", "inferred" or "assumed" (the family's defaults)
    steps: int
    dtype: str
    rtol: float | None              # None: the default per-step tolerance
    atol: float
    results: tuple                  # of Match, best first
    plainest: Match | None = None   # how the grid's first entry (Algorithm 1 for Adam) compares
    roundoff32: Match | None = None  # a wider run: the best configuration within float32 roundoff
    per_array: dict = dataclasses.field(default_factory=dict)   # array -> labels matching it alone
    inferred: tuple = ()            # names of the hyperparameters inferred from the trajectory
    decided: str | None = None      # why this family, when diagnose decided it from the trajectory
    tried: tuple = ()               # the families diagnose tried before deciding (their names for people)

    @property
    def assumed(self) -> bool:
        return self.source == "assumed"

    @property
    def matches(self) -> tuple:
        return tuple(m for m in self.results if m.matches)

    @property
    def best(self) -> Match:
        return self.results[0]

    @property
    def verdict(self) -> str:
        if self.best.matches:
            return "match"
        if self.per_array and all(self.per_array.values()):
            return "per array"      # every array (parameter group) matches a configuration of its own
        if self.roundoff32 is not None:
            return "float32 roundoff"
        if any(self.per_array.values()):
            return "per array"
        return "near miss" if self.best.worst <= NEAR else "none close"

    def _inferred_text(self) -> str:
        if not self.inferred:
            return ""
        values = ", ".join(f"{k} = {self.hyperparameters[k]!r}" for k in self.inferred if k != "vector_axes")
        if not values:
            return ""
        return f" with {values} (inferred from the trajectory)"

    @property
    def algorithm(self) -> str:
        """The family, for people: ``"Adam"``, ``"SGD"``, ``"ND-Adam"`` or ``"AdaL"``."""
        return NAMES[self.family]

    def summary(self) -> str:
        """The first line of the report."""
        best, name = self.best, self.algorithm
        verdict = self.verdict
        if verdict == "match" and len(self.matches) > 1:
            return (f"consistent with {len(self.matches)} configurations, which {self.dtype} cannot tell apart on "
                    f"these inputs (diagnose(..., dtype='float32') can); the closest: {best.label}"
                    f"{self._inferred_text()}: {best.description}, max rel err {_e(best.max_rel_err)}")
        if verdict == "match":
            return (f"matches {best.label}{self._inferred_text()}: {best.description}, "
                    f"max rel err {_e(best.max_rel_err)}")
        if verdict == "float32 roundoff":
            r = self.roundoff32
            return (f"no {self.dtype} match, but within float32 roundoff of {r.label}{self._inferred_text()} "
                    f"(max rel err {_e(r.max_rel_err)}): the candidate rounds to float32 somewhere; "
                    f"diagnose(..., dtype='float32') compares in float32")
        if verdict == "per array":
            parts = []
            for key, labels in self.per_array.items():
                more = f" (or {len(labels) - 1} more it cannot tell apart alone)" if len(labels) > 1 else ""
                parts.append(f"{key} matches {labels[0]}{more}" if labels else f"{key} does not")
            return "no configuration matches every array: " + "; ".join(parts)
        if verdict == "near miss":
            return (f"no refimpl configuration matches; closest: {best.label}{self._inferred_text()} "
                    f"({_times(best.worst)} times the tolerance): {best.description}")
        if len(self.tried) > 1:
            name = ", ".join(self.tried[:-1]) + " or " + self.tried[-1]
        return (f"no {name} convention is close: the best, {best.label}, is off by a relative "
                f"{_e(best.max_rel_err)} ({_times(best.worst)} times the tolerance) from step "
                f"{best.divergence.step}")

    def __str__(self) -> str:
        inferred = " and ".join(self.inferred) or "lr"
        source = {"declared": "", "inferred": f" ({inferred} inferred from the trajectory; pass hyperparameters=... "
                  f"to fix them)", "assumed": " (assumed: the candidate does not declare them; pass "
                  "hyperparameters=...)"}
        tolerance = ("the per-step tolerance of refimpl.testing" if self.rtol is None
                     else f"rtol {self.rtol:.2g}") + (f", atol {self.atol:.2g}" if self.atol else "")
        lines = [self.summary(), f"candidate: {self.candidate}"]
        if self.decided is not None and self.verdict == "none close":
            lines.append(f"algorithm: not decided: {self.decided}")
        elif self.decided is not None:
            lines.append(f"algorithm: {self.algorithm}, decided from the trajectory: {self.decided}")
        lines.append(f"compared over {self.steps} {self.dtype} steps ({tolerance}); "
                     f"hyperparameters {describe_hyperparameters(self.hyperparameters)}{source[self.source]}")
        lines += self._tie_lines() if self.best.matches else self._miss_lines()
        return "\n  ".join(lines)

    def _tie_lines(self) -> list[str]:
        others = self.matches[1:]
        if not others:
            return []
        return [f"also within tolerance ({self.dtype} on these inputs cannot tell them apart): "
                + "; ".join(f"{m.label} ({_e(m.max_rel_err)})" for m in others[:8])
                + (f"; and {len(others) - 8} more" if len(others) > 8 else "")]

    def _miss_lines(self) -> list[str]:
        best = self.best
        lines = [f"{best.label} first diverges at {best.divergence}; max rel err over all steps "
                 f"{_e(best.max_rel_err)}"]
        lines += _hints(best.comparison, best.label, self.family)
        ratio = self.plainest.comparison.first_step_ratio if self.plainest is not None else None
        lr = self.hyperparameters.get("lr")
        if self.source != "declared" and ratio is not None and abs(ratio - 1) > 1e-3 and isinstance(lr, float):
            lines.append(f"the hyperparameters were {self.source}: the candidate's first step is {ratio:.4g} times "
                         f"{self.plainest.label}'s; is its lr {ratio * lr:.4g}?")
        if self.verdict == "none close":
            lines.append(f"no configuration of the grid comes within {NEAR} times the tolerance: the candidate "
                         f"computes another algorithm (or has a bug outside the grid's conventions)")
        if len(self.results) > 1:
            lines.append("next closest: " + "; ".join(f"{m.label} ({_e(m.max_rel_err)}, step {m.divergence.step})"
                                                      for m in self.results[1:5] if m.divergence is not None))
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


def _tolerances(rtol, atol) -> tuple[float | None, float]:
    return (None if rtol is None else _check_tolerance("rtol", rtol)), (0.0 if atol is None else
                                                                        _check_tolerance("atol", atol))


def _match(conv: Convention, record: dict, inputs: Inputs, rtol, atol) -> Match:
    ref = run_reference(conv.optimizer, inputs)
    cmp = compare(record, ref, rtol=rtol, atol=atol, counts=rounding_counts(conv.optimizer, inputs.params))
    return Match(conv.label, conv.description, conv.optimizer, cmp.matches, cmp.max_abs_err, cmp.max_rel_err,
                 cmp.divergence, cmp, cmp.arrays)


def _order(m: Match):
    """Matches first, the closest (by relative error) first; then the others by their ratio to the tolerance."""
    key = m.max_rel_err if m.matches else m.worst
    return (not m.matches, key if not math.isnan(key) else math.inf)


def _narrow(dtype: np.dtype) -> bool:
    return unit_roundoff(dtype) > U32


def _eps_survives(opt, dtype) -> bool:
    try:
        for name in ("eps", "eps_root"):
            check_epsilon(name, getattr(opt, name, 0.0), dtype, getattr(opt, "compute_dtype", None))
    except ValueError:
        return False
    return True


def _rank(conventions: list[Convention], record: dict, inputs: Inputs, rtol, atol) -> list[Match]:
    return sorted((_match(c, record, inputs, rtol, atol) for c in conventions), key=_order)


def _search(family: str, h: dict, record: dict, inputs: Inputs, rtol, atol) -> tuple[list[Match], Match]:
    """The grid ranked, with the precision conventions of the dtype where they can matter."""
    conventions = grid(family, h)
    if _narrow(inputs.dtype):   # storage arithmetic where epsilon survives in the dtype, and float32 arithmetic
        conventions = [c for c in conventions if _eps_survives(c.optimizer, inputs.dtype)] + compute_variants(conventions)
    results = _rank(conventions, record, inputs, rtol, atol)
    plainest = next(m for m in results if m.optimizer is conventions[0].optimizer)
    if not results[0].matches and family == "adam" and _roundoff32(results, record, inputs, atol) is not None:
        # Within float32 roundoff of the grid: try where float32 enters (the scalars, the lr).
        by_label = {c.label: c for c in conventions}
        extra = [v for m in results[:_PRECISION_SEARCH] for v in scalar_variants(by_label[m.label])]
        results = sorted(results + _rank(extra, record, inputs, rtol, atol), key=_order)
    return results, plainest


def _roundoff32(results: list[Match], record: dict, inputs: Inputs, atol) -> Match | None:
    """In a run wider than float32 with no match: the best configuration that matches once the
    tolerance is that of float32 arithmetic, if any."""
    if unit_roundoff(inputs.dtype) >= U32:
        return None
    for m in results[:_PRECISION_SEARCH]:
        ref = run_reference(m.optimizer, inputs)
        if compare(record, ref, rtol=None, atol=atol, u=U32, counts=rounding_counts(m.optimizer, inputs.params)).matches:
            return m
    return None


def _per_array(results: list[Match], record: dict) -> dict:
    """When nothing matches every array but something matches some: array -> labels matching it."""
    if results[0].matches or len(record) < 2:
        return {}
    found = {_name("params", k): sorted((m.label for m in results if k in m.arrays), key=len) for k in record}
    return found if any(found.values()) else {}


# ----------------------------------------------------------------------------- hyperparameter inference


def _snap(x: float, rel: float = 2e-3) -> float | None:
    """The shortest decimal (1 to 3 significant digits) within ``rel`` of x, or None."""
    for digits in (1, 2, 3):
        d = float(f"{x:.{digits - 1}e}")
        if abs(d - x) <= rel * x:
            return d
    return None


def _first_moves(record: dict, inputs: Inputs, keys, eps) -> list[float]:
    """|theta_1 - theta_0| over the coordinates of ``keys`` whose first gradient is far above ``eps``."""
    moves = []
    for key in keys:
        g = np.asarray(inputs.grads[0][key], dtype=np.float64).reshape(-1)
        d = np.abs(record[key][1].astype(np.float64) - record[key][0].astype(np.float64)).reshape(-1)
        keep = (np.abs(g) > 1e3 * max(float(eps or 0), 1e-12)) & np.isfinite(d) & (d > 0)
        moves.extend(d[keep].tolist())
    return moves


def infer_lr(record: dict, inputs: Inputs, h: dict, family: str = "adam") -> list[float]:
    """Learning rates that explain the candidate's first step, most likely first.

    Adam's first step is :math:`\\alpha c_k` in every coordinate whose gradient is far above
    epsilon (book, prop-oracle-first-step: :math:`c_0 = 1` for a correct counter, :math:`c_1`
    and :math:`c_{-1}` for counters off by one): the median over those coordinates of
    :math:`|\\theta_1 - \\theta_0|` divided by each :math:`c_k`, snapped to a short decimal.
    AdaL's first step is Adam's (:math:`c_0` only: its grid has no counter off by one).
    """
    if inputs.grads is None:
        return []
    moves = _first_moves(record, inputs, record, h.get("eps", 0))
    if not moves:
        return []
    step = float(np.median(moves))
    b1, b2 = h["beta1"], h["beta2"]
    if not (isinstance(b1, float) and isinstance(b2, float)):
        return []
    factors = [1.0] if family == "adal" else [1.0, math.sqrt(1 + b2) / (1 + b1), (1 - b1) / math.sqrt(1 - b2)]
    out = []
    for c in factors:
        lr = _snap(step / c)
        if lr is not None and lr not in out:
            out.append(lr)
    return out


def _infer_sgd(record: dict, inputs: Inputs) -> list[dict]:
    r"""SGD's numbers from its first two steps. From zero momentum, heavy-ball and dampened SGD
    move by :math:`\alpha g_1` and then by :math:`a g_2 + b g_1` with :math:`a = \alpha(1-\tau)`,
    :math:`b = \alpha\mu`; Nesterov moves by :math:`\alpha(1+\mu) g_1`, then :math:`a = \alpha(1+\mu)`,
    :math:`b = \alpha\mu^2`. The ratio :math:`r` of the first step to :math:`g_1` and a
    least-squares fit of :math:`a, b` over the coordinates give the numbers of both readings."""
    if inputs.grads is None:
        return []
    d1, d2, g1, g2 = [], [], [], []
    for key, r in record.items():
        x = r.astype(np.float64).reshape(r.shape[0], -1)
        g1.append(np.asarray(inputs.grads[0][key], dtype=np.float64).reshape(-1))
        d1.append(x[0] - x[1])
        if inputs.steps >= 2:
            g2.append(np.asarray(inputs.grads[1][key], dtype=np.float64).reshape(-1))
            d2.append(x[1] - x[2])
    d1, g1 = np.concatenate(d1), np.concatenate(g1)
    keep = np.abs(g1) > 1e-6
    with np.errstate(all="ignore"):
        ratios = d1[keep] / g1[keep]
    ratios = ratios[np.isfinite(ratios) & (ratios > 0)]
    if not ratios.size:
        return []
    r = float(np.median(ratios))
    out = []
    if not g2:
        return [{"lr": _snap(r)}] if _snap(r) else []
    d2, g2 = np.concatenate(d2), np.concatenate(g2)
    ok = np.isfinite(d2) & np.isfinite(g1) & np.isfinite(g2)
    design = np.stack([g2[ok], g1[ok]], axis=1)
    if design.shape[0] < 2 or np.linalg.matrix_rank(design) < 2:
        return [{"lr": _snap(r)}] if _snap(r) else []
    (a, b), *_ = np.linalg.lstsq(design, d2[ok], rcond=None)

    def snapped(x):
        return 0.0 if abs(x) < 1e-3 else _snap(x) if x > 0 else None
    mu, tau, lr = snapped(b / r), snapped(1 - a / r), _snap(r)      # heavy-ball, possibly dampened
    if lr is not None and mu is not None and tau is not None and tau <= 1:
        out.append({"lr": lr} | ({"momentum": mu} if mu else {}) | ({"dampening": tau} if mu and tau else {}))
    mu_n = (b + math.sqrt(max(b * b + 4 * r * b, 0.0))) / (2 * r) if b > 0 else 0.0   # Nesterov
    mu_n = snapped(mu_n)
    if mu_n:
        lr_n = _snap(r / (1 + mu_n))
        if lr_n is not None:
            out.append({"lr": lr_n, "momentum": mu_n, "nesterov": True})
    return out


def _sums(x, axes):
    return np.sum(x, axis=axes, keepdims=True)


def _infer_ndadam(record: dict, inputs: Inputs, h: dict) -> list[dict]:
    """ND-Adam's two step sizes from its first step. A scalar parameter moves by
    :math:`\\alpha^s` (Adam's first step); a weight vector goes to the direction of
    :math:`w_0 - \\alpha^v u`, :math:`u = g/\\|g\\|` the projected gradient's direction (for
    :math:`\\|g\\| \\gg \\epsilon`): :math:`\\alpha^v` is the least-squares solution of
    :math:`N w_1 + \\alpha u = w_0` for each vector, once with :math:`w_0` as given and once
    normalized (Algorithm 1 normalizes first)."""
    if inputs.grads is None:
        return []
    axes_of = h["vector_axes"]
    vectors, scalars = [], []
    for key in record:
        axes = axes_of.get(key) if isinstance(axes_of, dict) else axes_of
        (scalars if axes is None else vectors).append((key, axes))
    lr_scalar = None
    moves = _first_moves(record, inputs, [k for k, _ in scalars], h.get("eps", 0))
    if moves:
        lr_scalar = _snap(float(np.median(moves)))
    lr_vectors = []
    for normalized in (False, True):
        estimates = []
        for key, axes in vectors:
            r = record[key].astype(np.float64)
            w0, w1 = r[0], r[1]
            axes = tuple(a % w0.ndim for a in axes)
            g_bar = np.asarray(inputs.grads[0][key], dtype=np.float64)
            with np.errstate(all="ignore"):
                start = w0 / np.sqrt(_sums(w0 * w0, axes)) if normalized else w0
                g = g_bar - _sums(g_bar * start, axes) * start
                norm = np.sqrt(_sums(g * g, axes))
                u = g / norm
                a11, a12 = _sums(w1 * w1, axes), _sums(w1 * u, axes)
                b1, b2 = _sums(w1 * start, axes), _sums(u * start, axes)
                det = a11 - a12 * a12                            # |u| = 1
                alpha = (a11 * b2 - a12 * b1) / det
                ok = (norm > 1e3 * max(float(h.get("eps", 0) or 0), 1e-12)) & (det > 1e-12 * a11) & np.isfinite(alpha)
            estimates.extend(alpha[ok].reshape(-1).tolist())
        estimates = [x for x in estimates if x > 0]
        lr = _snap(float(np.median(estimates))) if estimates else None
        if lr is not None and lr not in lr_vectors:
            lr_vectors.append(lr)
    out = []
    for lr_v in lr_vectors or [None]:
        values = ({"lr_vector": lr_v} if lr_v is not None else {}) | ({"lr_scalar": lr_scalar} if lr_scalar else {})
        if values and values not in out:
            out.append(values)
    return out


def _inferences(family: str, record: dict, inputs: Inputs, h: dict) -> list[dict]:
    """Hyperparameter values that explain the candidate's first steps, most likely first."""
    if family in ("adam", "adal"):
        return [{"lr": lr} for lr in infer_lr(record, inputs, h, family)]
    if family == "sgd":
        return _infer_sgd(record, inputs)
    return _infer_ndadam(record, inputs, h)


# ----------------------------------------------------------------------------- which algorithm


def unit_norm_axes(record: dict, dtype) -> dict:
    """``{key: axes}`` for each parameter array that has unit norm along ``axes`` after every step
    (the fewest such axes, vectors of at least 2 elements): ND-Adam's weight vectors. A
    normalization errs by at most :math:`(n/2 + 3)u` (book, prop-oracle-rounding-counts); four
    times that is allowed."""
    u = write_roundoff(dtype)
    found = {}
    for key, r in record.items():
        x = r[1:].astype(np.float64)
        ndim = x.ndim - 1
        if ndim == 0 or x.shape[0] == 0 or ndim > 6:
            continue
        for axes in (a for size in range(1, ndim + 1) for a in itertools.combinations(range(ndim), size)):
            n = math.prod(x.shape[a + 1] for a in axes)
            if n < 2:
                continue
            with np.errstate(all="ignore"):
                norms = np.sqrt(np.sum(x * x, axis=tuple(a + 1 for a in axes)))
            if np.all(np.abs(norms - 1) <= 4 * (n / 2 + 3) * u):
                found[key] = axes
                break
    return found


def _axes_text(axes: dict) -> str:
    """``params['w'] at unit norm along axis 1 and params['b'] along axis 0``."""
    parts = []
    for i, (key, a) in enumerate(axes.items()):
        which = f"axis {a[0]}" if len(a) == 1 else f"axes {', '.join(map(str, a))}"
        parts.append(f"{_name('params', key)}{' at unit norm' if i == 0 else ''} along {which}")
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _vector_axes(found: dict, inputs: Inputs):
    """The ``vector_axes`` argument for what :func:`unit_norm_axes` found."""
    return found[_SINGLE] if inputs.single else dict(found)


# ----------------------------------------------------------------------------- the diagnosis


def _diagnosis(name: str, record: dict, inputs: Inputs, family: str, hyperparameters, rtol, atol, *,
               infer: bool = False, inferred_axes: bool = False) -> Diagnosis:
    h, assumed = hyperparameters_of(family, hyperparameters)
    if inferred_axes and set(hyperparameters) == {"vector_axes"}:
        assumed = True      # only the weight vectors are known (from the trajectory): infer the step sizes
    base = ("vector_axes",) if inferred_axes else ()
    tries = [(h, "assumed" if assumed else "declared", base)]
    if infer and assumed:   # the inferred values first, the defaults last
        found = [values for values in _inferences(family, record, inputs, h) if dict(h, **values) != h]
        tries = [(dict(h, **values), "inferred", base + tuple(values)) for values in found] + tries
    chosen = None
    for trial_h, source, inferred in tries:
        results, plainest = _search(family, trial_h, record, inputs, rtol, atol)
        if chosen is None or _order(results[0]) < _order(chosen[1][0]):
            chosen = (trial_h, results, plainest, source, inferred)
        if results[0].matches:
            break
    h, results, plainest, source, inferred = chosen
    roundoff = None if results[0].matches else _roundoff32(results, record, inputs, atol)
    return Diagnosis(name, family, h, source, inputs.steps, str(inputs.dtype), rtol, atol, tuple(results),
                     plainest, roundoff, _per_array(results, record), inferred)


def _rank_key(d: Diagnosis):
    """How well a family explains the candidate: a match, then float32 roundoff, then the closest."""
    order = {"match": 0, "float32 roundoff": 1, "per array": 2, "near miss": 3, "none close": 3}
    return (order[d.verdict], d.best.worst if not math.isnan(d.best.worst) else math.inf)


class _Unfit(Exception):
    """The declared hyperparameters do not fit a family."""


def _declared_for(family: str, hyperparameters):
    """The declared hyperparameters in the names of ``family`` (``None``: none declared); raises
    :class:`_Unfit` when they name something the family cannot compute."""
    if hyperparameters is None or isinstance(hyperparameters, Optimizer):
        return hyperparameters
    if not isinstance(hyperparameters, dict):
        return hyperparameters   # hyperparameters_of reports it
    translated = translate(family, hyperparameters)
    if translated is None:
        raise _Unfit(family)
    return translated


def _declared_for_checked(family: str, hyperparameters):
    """:func:`_declared_for` for an explicit family: what does not fit is reported by name."""
    try:
        return _declared_for(family, hyperparameters)
    except _Unfit:
        hyperparameters_of(family, hyperparameters)   # names the keys the family does not know
        raise


def diagnose(candidate, params=None, grads=None, *, family: str | None = None, hyperparameters=None,
             steps: int | None = None, dtype=None, rtol: float | None = None,
             atol: float | None = None) -> Diagnosis:
    """Which refimpl algorithm and convention does ``candidate`` compute?

    Without ``family`` (and when the candidate does not declare one) it first decides the
    algorithm, and the report says how: a candidate that keeps some parameter at unit norm
    along some axes after every step is ND-Adam (those axes span its weight vectors); otherwise
    the closest of Adam, AdaL and SGD. Then it runs the candidate and every configuration of that
    family's grid on the same gradients and ranks the configurations, the matching ones first:

    * Adam: epsilon after the bias correction, epsilon hat or inside the root; bias correction on
      or off; no AMSGrad or AMSGrad on v or on v_hat; L2, decoupled or decoupled-and-not-lr-scaled
      weight decay; bias corrections counting from t - 1, t or t + 1; beta1 and beta2 swapped.
      Where the dtype makes them matter it also tries the precision conventions of
      :class:`refimpl.Adam`: in float64, the closest configurations with their scalars in float32
      (TF1, tinygrad), with beta^t from float32 betas (Keras on TensorFlow) and with lr rounded to
      float32 (Keras); in float16 and bfloat16, every configuration with float32 arithmetic
      (PyTorch ``fused=True``).
    * ND-Adam: the paper's Algorithm 1, the official TensorFlow code and the official PyTorch
      code (initial normalization, epsilon's placement). On the default probe a second run puts
      a whole weight vector near epsilon (:func:`probe` with ``vector_axes``).
    * AdaL: the scope of the l1 norm, epsilon's placement, the 1/sqrt(t) decay, bias correction.
    * SGD: heavy-ball, Nesterov, dampened.

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
        ``"adam"``, ``"sgd"``, ``"ndadam"`` or ``"adal"``; by default what the candidate
        declares, else decided from the trajectory.
    hyperparameters
        The numbers the grid is built on (Adam: ``lr, beta1, beta2, eps, eps_root,
        weight_decay``; SGD: ``lr, momentum, dampening, weight_decay, nesterov``; ND-Adam:
        ``lr_vector, lr_scalar, beta1, beta2, eps, weight_decay_scalar, vector_axes``; AdaL:
        ``lr, beta1, beta2, eps``), as a dict or a refimpl optimizer; any number may be a dict
        keyed like the parameters (one value per parameter group). By default the candidate's
        own (adapters and refimpl optimizers declare them; ND-Adam reads ``lr`` as both step
        sizes and ``weight_decay`` as ``weight_decay_scalar``). When the candidate declares none,
        the step sizes are inferred from the first step (SGD's momentum from the second; the
        report says so, and which values it found); the other numbers take the family's
        defaults, which the report says were assumed. ND-Adam's ``vector_axes`` are inferred
        from the trajectory when not given.
    steps
        How many steps to compare (default: all of ``grads``; 100 for the probe).
    dtype
        The dtype of the comparison: ``"float64"`` (the probe's default), ``"float32"``,
        ``"float16"`` or ``"bfloat16"`` (needs ``ml_dtypes``). The probe is made in it; given
        ``params`` and ``grads`` are converted to it.
    rtol, atol
        As in :func:`assert_matches`.

    Returns
    -------
    Diagnosis
        Its ``str()`` reads like ``matches Adam(eps_hat=True): the TF1/Keras convention
        (epsilon hat), max rel err 3e-16``, with a line saying which algorithm it decided and
        why; when nothing matches, it says whether the closest configuration is within float32
        roundoff, whether some arrays match and others do not, whether it is a near miss (within
        ``NEAR = 100`` times the tolerance), or that no convention of the family is close, with
        the best distance.
    """
    check_candidate(candidate)
    if family is not None:
        check_family(family)
    family = family if family is not None else family_of(candidate)
    if (params is None) != (grads is None):
        raise ValueError(f"give both params and grads, or neither (then refimpl.testing.probe() is used); got "
                         f"params={_describe(params)} and grads={_describe(grads)}")
    dt = None if dtype is None else resolve_dtype(dtype)
    made = params is None
    n_steps = (100 if steps is None else _positive_steps(steps)) if made else steps
    if made:
        params, grads = probe(n_steps, dtype="float64" if dt is None else dt)
    inputs = _inputs(params, grads, steps, dt)
    rtol, atol = _tolerances(rtol, atol)
    if hyperparameters is None:
        hyperparameters = candidate if isinstance(candidate, Optimizer) else _declared(candidate, inputs)
    if family is not None:
        declared = _declared_for_checked(family, hyperparameters)
        hyperparameters_of(family, declared)  # validate before the (long) runs
    name = label(candidate)

    def nd_probe(axes):
        """The ND-Adam probe for these weight vectors (when the probe is refimpl's)."""
        p, g = probe(n_steps, dtype="float64" if dt is None else dt, vector_axes=axes)
        return _inputs(p, g, steps, dt)

    if family == "ndadam":
        axes = declared.vector_axes if isinstance(declared, Optimizer) else (declared or {}).get("vector_axes")
        found = None
        if axes is None:   # the weight vectors, from a first run
            found = unit_norm_axes(run(candidate, inputs), inputs.dtype)
            if not found:
                raise ValueError("family='ndadam' needs vector_axes (hyperparameters={'vector_axes': ...}): the "
                                 "candidate keeps no parameter at unit norm along any axes")
            axes = _vector_axes(found, inputs)
            declared = dict(declared or {}, vector_axes=axes)
        if made:
            inputs = nd_probe(axes)
        return _diagnosis(name, run(candidate, inputs), inputs, family, declared, rtol, atol, infer=True,
                          inferred_axes=found is not None)
    record = run(candidate, inputs)
    if family is not None:
        return _diagnosis(name, record, inputs, family, declared, rtol, atol, infer=True)
    return _decide(candidate, name, record, inputs, hyperparameters, rtol, atol, nd_probe if made else None)


def _declared(candidate, inputs: Inputs):
    """What a candidate declares: ``hyperparameters_for(params)`` (per-parameter values that depend
    on the parameters' names, optax's mask functions), else its ``hyperparameters``."""
    for_params = getattr(candidate, "hyperparameters_for", None)
    if callable(for_params):
        return for_params(inputs.tree(inputs.params))
    return getattr(candidate, "hyperparameters", None)


def _decide(candidate, name: str, record: dict, inputs: Inputs, hyperparameters, rtol, atol, nd_probe) -> Diagnosis:
    """The family of a candidate that declares none, and its diagnosis in that family."""
    found = unit_norm_axes(record, inputs.dtype)
    if found:
        axes = _vector_axes(found, inputs)
        try:
            declared = _declared_for("ndadam", hyperparameters)
        except _Unfit:
            declared = None
        if isinstance(declared, Optimizer) and not isinstance(declared, FAMILIES["ndadam"]):
            declared = None
        if not isinstance(declared, Optimizer):
            declared = dict(declared or {}, vector_axes=axes)
        if nd_probe is not None:
            inputs = nd_probe(axes)
            record = run(candidate, inputs)
        d = _diagnosis(name, record, inputs, "ndadam", declared, rtol, atol, infer=True,
                       inferred_axes=not isinstance(declared, Optimizer))
        why = f"it keeps {_axes_text(found)} after every step: ND-Adam's weight vectors"
        return dataclasses.replace(d, decided=why)
    found_in = {}
    for family in ("adam", "adal", "sgd"):
        try:
            declared = _declared_for(family, hyperparameters)
        except _Unfit:
            continue
        if isinstance(declared, Optimizer) and not isinstance(declared, FAMILIES[family]):
            declared = None
        found_in[family] = _diagnosis(name, record, inputs, family, declared, rtol, atol, infer=True)
    best = min(found_in.values(), key=_rank_key)
    others = [f"the closest {d.algorithm} configuration is {_times(d.best.worst)} times the tolerance"
              for d in found_in.values() if d is not best]
    why = f"{best.algorithm} explains it best" + (f" ({'; '.join(others)})" if others else "")
    if best.verdict == "none close":  # no family comes near: naming one would be a guess
        closest = [f"{d.algorithm} {_times(d.best.worst)} times" for d in sorted(found_in.values(), key=_rank_key)]
        why = (f"no family comes within {NEAR:g} times the tolerance (the closest configuration of each: "
               f"{', '.join(closest)} the tolerance)")
    elif len(found_in) == 1:
        why = f"{best.algorithm} is the one family whose numbers the candidate's declared hyperparameters fit"
    return dataclasses.replace(best, decided=why, tried=tuple(d.algorithm for d in found_in.values()))


def _inputs(params, grads, steps, dt) -> Inputs:
    inputs = prepare(params, grads, steps)
    if dt is not None and inputs.dtype != dt:
        inputs = _converted(inputs, dt)
    return inputs


def _converted(inputs: Inputs, dt) -> Inputs:
    conv = lambda flat: {k: np.asarray(x).astype(dt) for k, x in flat.items()}  # noqa: E731
    grads = None if inputs.grads is None else [conv(g) for g in inputs.grads]
    return inputs._replace(params=conv(inputs.params), grads=grads, dtype=np.dtype(dt))


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
    tau_t`` with ``tau_t = u (2**11 D_t + 2 R_t / (1 - u)) / (1 - u')**t`` (Adam, SGD): ``D_t`` the distance
    the reference has travelled, ``R_t`` the sum of its sizes ``max|r_s|`` over the steps so far,
    ``u`` the unit roundoff of the dtype (see :mod:`refimpl.testing._compare` and the book's
    prop-oracle-tolerance). It is sized to admit any other order of the same arithmetic, in float32
    as in float64, and rejects at step 1 a convention that changes the first step. An explicit ``rtol``
    replaces it by ``atol + rtol * S_t`` (``S_t`` the initial size plus ``D_t``).

    For ND-Adam and AdaL the counts 2**11 and 2 grow with the length of their reductions
    (:func:`~refimpl.testing._compare.rounding_counts`). A ``reference`` with per-parameter
    hyperparameters (``weight_decay={"w": 0.1, "b": 0.0}``) is held against the candidate as it
    is: each array against its own values.

    Raises ``AssertionError`` naming the first diverging step, the parameter, the element, the
    largest absolute and relative errors, and the likely convention (from :func:`diagnose`, in
    the reference's family), with the options in which it differs from ``reference``.
    """
    check_candidate(candidate)
    if not isinstance(reference, Optimizer):
        raise TypeError(f"reference must be a refimpl optimizer (refimpl.Adam(...), ...), got {_describe(reference)}")
    inputs = prepare(params, grads, steps)
    rtol, atol = _tolerances(rtol, atol)
    record = run(candidate, inputs)
    cmp = compare(record, run_reference(reference, inputs), rtol=rtol, atol=atol,
                  counts=rounding_counts(reference, inputs.params))
    if cmp.matches:
        return
    tolerance = "the per-step tolerance" if rtol is None else f"rtol {rtol:.2g}"
    lines = [f"{label(candidate)} does not match refimpl {compact(reference)}",
             f"first divergence: {cmp.divergence}",
             f"over {inputs.steps} {inputs.dtype} steps: max abs err {cmp.max_abs_err:.3g}, max rel err "
             f"{cmp.max_rel_err:.3g} ({_times(cmp.worst)} times {tolerance}"
             + (f", atol {atol:.2g})" if atol else ")")]
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
        elif found.roundoff32 is not None:
            lines.append(f"likely convention: {found.roundoff32.label}, computed partly in float32 (it matches "
                         f"with float32's roundoff)")
        else:
            lines.append(f"likely convention: none of the {len(found.results)} configurations tried matches; "
                         f"{found.summary()}")
            lines.extend(_hints(best.comparison, best.label, family))
    raise AssertionError("\n".join(lines))
