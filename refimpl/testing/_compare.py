r"""Comparing two parameter trajectories, with a tolerance derived from the arithmetic.

For each parameter array and each step :math:`t` the comparison takes

* the error :math:`e_t = \max_i |c_{t,i} - r_{t,i}|` (candidate :math:`c`, reference :math:`r`);
* the scale :math:`S_t = \|r_0\|_\infty + \sum_{s \le t} \|r_s - r_{s-1}\|_\infty`: the
  parameter's initial size plus the distance it has travelled, which bounds every
  :math:`|r_{s,i}|` up to step :math:`t` and is never zero once the parameter has moved;
* the relative error :math:`e_t / S_t`, and a match when :math:`e_t \le atol + rtol\, S_t`.

Why this scale: two correct implementations differ by roundings, and each rounding is
relative to a value the computation touched, the parameter itself (:math:`\theta - \text{step}`)
or a step (bounded by the distance travelled). An element-wise relative error would blow up
wherever a coordinate crosses zero; a norm-wise one over :math:`S_t` does not.

Why the default :math:`rtol = 2^{11}\, T\, u` (:math:`T` steps, :math:`u` the unit roundoff:
:math:`2^{-53}` in float64, :math:`2^{-24}` in float32): the errors of the :math:`T` steps add
up (a fixed gradient stream does not feed them back), and one step of Adam is about 25
roundings in each implementation, i.e. 50 between the two; a cancellation in
:math:`m = \beta_1 m + (1-\beta_1) g` can make the absolute error of a step up to
:math:`1/\sqrt{1-\beta_2}` (32 for :math:`\beta_2 = 0.999`) times larger than the step itself
would suggest. :math:`50 \cdot 32 = 1600 < 2^{11}`. In float64 over 100 steps this is
:math:`2.3\cdot 10^{-11}`, far below what any convention changes (the probe of
:func:`~refimpl.testing.probe` separates every pair of the grid by more than :math:`10^{-6}`).
With a gradient *function*, each side's errors feed back through its own gradients and can
grow geometrically; the comparison then reports where the trajectories start to part.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._core import _name

__all__ = ["Divergence", "Comparison", "compare", "default_rtol"]

ROUNDINGS_PER_STEP = 2**11


def unit_roundoff(dtype) -> float:
    return float(np.finfo(dtype).eps) / 2


def default_rtol(dtype, steps: int) -> float:
    """The default relative tolerance for ``steps`` steps in ``dtype`` (see the module docstring)."""
    return ROUNDINGS_PER_STEP * steps * unit_roundoff(dtype)


class Divergence(NamedTuple):
    """Where two trajectories first part: step, parameter, element, values and errors."""

    step: int
    param: str          # "params" or "params['w']"
    index: tuple        # the element with the largest error at that step
    got: float          # the candidate's value there
    want: float         # the reference's value there
    abs_err: float      # the largest absolute error of this parameter at this step
    rel_err: float      # abs_err / S_t
    tol: float          # atol + rtol * S_t

    def __str__(self) -> str:
        where = f"{self.param}[{', '.join(map(str, self.index))}]" if self.index else self.param
        return (f"step {self.step}, {where}: candidate {self.got!r}, reference {self.want!r}; "
                f"max abs err {self.abs_err:.3g}, rel err {self.rel_err:.3g} (tolerance {self.tol:.3g})")


class Comparison(NamedTuple):
    """The outcome of :func:`compare`."""

    matches: bool
    max_abs_err: float
    max_rel_err: float
    divergence: Divergence | None       # the first step beyond tolerance (None if it matches)
    first_nonfinite: tuple | None       # (step, param, index) where the candidate first went NaN/Inf alone
    first_step_ratio: float | None      # |candidate's step 1| / |reference's step 1| (inf-norms)


def _errors(c: np.ndarray, r: np.ndarray) -> np.ndarray:
    """|c - r| with NaN equal to NaN and equal infinities equal; a lone NaN/Inf is an infinite error."""
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(c.astype(np.float64) - r.astype(np.float64))
    same = (c == r) | (np.isnan(c) & np.isnan(r))
    err = np.where(same, 0.0, err)
    return np.where(np.isnan(err), np.inf, err)


def compare(candidate: dict, reference: dict, *, rtol: float, atol: float) -> Comparison:
    """Compare two records of :func:`~refimpl.testing._run.run` (same keys and shapes)."""
    max_abs = max_rel = 0.0
    first = None            # (step, key) of the earliest divergence; ties go to the first key
    first_bad = None
    per_key = {}
    num = den = 0.0
    for key in candidate:
        c, r = candidate[key], reference[key]
        steps = c.shape[0]
        err = _errors(c, r).reshape(steps, -1)
        e = err.max(axis=1) if err.shape[1] else np.zeros(steps)
        rr = r.astype(np.float64).reshape(steps, -1)
        with np.errstate(invalid="ignore", over="ignore"):
            moves = np.abs(np.diff(rr, axis=0)).max(axis=1) if rr.shape[1] else np.zeros(steps - 1)
            start = np.abs(rr[0]).max() if rr.shape[1] else 0.0
            scale = start + np.concatenate([[0.0], np.cumsum(np.nan_to_num(moves, nan=np.inf))])
            rel = np.where(e == 0, 0.0, e / np.where(scale > 0, scale, np.inf))
        rel = np.where((e > 0) & (scale == 0), np.inf, rel)
        tol = atol + rtol * scale
        bad = np.nonzero(~(e <= tol))[0]
        max_abs, max_rel = max(max_abs, float(e.max())), max(max_rel, float(rel.max()))
        per_key[key] = (err, e, rel, tol, scale)
        if bad.size and (first is None or bad[0] < first[0]):
            first = (int(bad[0]), key)
        cf = c.reshape(steps, -1)
        lone = ~np.isfinite(cf) & np.isfinite(rr)
        hit = np.nonzero(lone.any(axis=1))[0]
        if hit.size and (first_bad is None or hit[0] < first_bad[0]):
            idx = np.unravel_index(int(np.argmax(lone[hit[0]])), c.shape[1:])
            first_bad = (int(hit[0]), _name("params", key), tuple(int(i) for i in idx))
        if steps > 1:
            num = max(num, float(np.nan_to_num(np.abs(cf[1] - cf[0]), nan=np.inf).max(initial=0.0)))
            den = max(den, float(np.abs(rr[1] - rr[0]).max(initial=0.0)))
    divergence = None
    if first is not None:
        t, key = first
        err, e, rel, tol, scale = per_key[key]
        flat = int(np.argmax(err[t]))
        index = tuple(int(i) for i in np.unravel_index(flat, candidate[key].shape[1:]))
        divergence = Divergence(t, _name("params", key), index,
                                float(candidate[key][t].reshape(-1)[flat]),
                                float(reference[key][t].reshape(-1)[flat]),
                                float(e[t]), float(rel[t]), float(tol[t]))
    ratio = num / den if den > 0 else None
    return Comparison(divergence is None, max_abs, max_rel, divergence, first_bad, ratio)
