r"""Comparing two parameter trajectories, with a tolerance derived from the arithmetic.

For each parameter array and each step :math:`t` the comparison takes

* the error :math:`e_t = \max_i |c_{t,i} - r_{t,i}|` (candidate :math:`c`, reference :math:`r`);
* the distance travelled :math:`D_t = \sum_{s \le t} \|r_s - r_{s-1}\|_\infty` and the sum of sizes
  :math:`R_t = \sum_{s \le t} \|r_s\|_\infty`, both from the reference;
* the scale :math:`S_t = \|r_0\|_\infty + D_t` (it bounds every :math:`|r_{s,i}|` up to step
  :math:`t`), and the relative error :math:`e_t / S_t` that reports quote.

The default tolerance of step :math:`t` is (book, chapter "Using refimpl as an oracle",
proposition ``prop-oracle-tolerance``)

.. math::

    \tau_t = \frac{u\,(\kappa D_t + \rho R_t / (1-u))}{(1 - u')^{t}}, \qquad u' = \frac{u}{1-u},
    \quad \kappa = 2^{11}, \quad \rho = 2 \text{ (Adam, SGD)},

with :math:`u` the unit roundoff of the parameters' dtype. The derivation: each side ends a step
with one correctly rounded subtraction :math:`\mathrm{fl}(\theta - s)`, which errs by at most
:math:`u|\theta|` on each side (the :math:`2R_t` term: it grows with :math:`t` because both
sides round :math:`\theta` at every step); before that rounding, the two computed steps may
differ by at most :math:`\kappa u` times the step's size (the :math:`\kappa D_t` term). Why
:math:`\kappa = 2^{11}`: one Adam step is about 25 roundings in each implementation, 50 between
the two, and a cancellation in :math:`m = \beta_1 m + (1-\beta_1) g` can magnify their effect on
the step up to :math:`1/\sqrt{1-\beta_2}` (32 for :math:`\beta_2 = 0.999`); :math:`50 \cdot 32 =
1600 < 2^{11}`. A computation of the bias correction :math:`1-\beta_2^t` in the parameters' dtype
(Keras, tinygrad) loses up to :math:`u/(1-\beta_2) \approx 1000u` to cancellation, half of which
reaches the step through the square root: inside the same budget.

**ND-Adam and AdaL.** Their steps hold reductions, whose rounding grows with the number of
terms, so the counts :math:`\kappa` and the factor 2 of :math:`R_t` (call it :math:`\rho`) depend
on the reduction's length (:func:`rounding_counts`; book, ``prop-oracle-rounding-counts``). A sum of
:math:`n` terms computed in any order errs by at most :math:`(n-1)u` times the sum of their absolute
values (pairwise summation does better; a plain loop attains it).

* ND-Adam, a parameter whose weight vectors have :math:`n` elements. Its step ends with the
  normalization :math:`w = \bar w/\|\bar w\|` instead of a subtraction: the sum of :math:`n`
  squares (relative error :math:`n u`, its terms being nonnegative), the square root (half of it,
  plus :math:`u`), the division (:math:`u`), after the subtraction :math:`\bar w = w - s`
  (:math:`u`): :math:`(n/2 + 3)u|w_t|` on each side, so :math:`\rho = n + 6`. Before it, the
  projection :math:`\bar g\cdot w` and the sum :math:`\|g\|^2` each err by :math:`n u` relative to
  :math:`\|\bar g\|`; the step divides by :math:`\|g\|`, so the error is amplified by
  :math:`\|\bar g\|/\|g\| \le 2` (a gradient within 30 degrees of the radial direction is
  assumed away) and by :math:`1/\sqrt{1-\beta_2}` as in Adam: :math:`2 \cdot 32 \cdot 2 (n + 2)
  u \le 2^7 (n+2) u` more, :math:`\kappa = 2^{11} + 2^7 (n + 2)`. Scalar parameters are Adam's.
* AdaL, an :math:`\ell_1` norm over :math:`d` elements (all parameters, one array, or
  :math:`d = 1` per element). :math:`c_t = \|g_t\|_1` errs by :math:`(d-1)u` relative (nonnegative
  terms), and scales every coordinate of :math:`\tilde g_t` by the same :math:`1+\delta_t`: the
  moments see a relative perturbation :math:`|\delta_s| \le d u` per step, magnified by at most
  :math:`1/\sqrt{1-\beta_2}` in :math:`m` and halved in :math:`\sqrt v`, so :math:`2 (32 + 1) d u
  \le 2^7 d u` more: :math:`\kappa = 2^{11} + 2^7 d`, :math:`\rho = 2`.

These counts grow with :math:`n` and :math:`d`, so with a global norm over a million float32
parameters the tolerance becomes loose; the report then says which configurations the dtype
cannot tell apart, never a false match of a convention that changes the step by more.

Unlike a fixed relative tolerance, :math:`\tau_t` is small where the errors are small: at step 1
it is about :math:`2^{11} u` times the first step, so a convention that changes the first step
(a step counter off by one, epsilon's placement) is rejected there in float32 as in float64.
It grows as the steps add up, as the errors do. With a gradient *function*, each side's errors
feed back through its own gradients and can grow geometrically; the comparison then reports
where the trajectories start to part. An explicit ``rtol`` replaces :math:`\tau_t` by the fixed
rule :math:`e_t \le atol + rtol\, S_t`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .._core import _name

__all__ = ["Divergence", "Comparison", "compare", "KAPPA", "RHO", "unit_roundoff", "step_tolerance", "rounding_counts"]

KAPPA = 2**11   # the rounding budget of one step, in units of u times the step's size
RHO = 2         # the roundings of the parameter itself per step, in units of u times its size (both sides)


def unit_roundoff(dtype) -> float:
    """u: 2**-53 for float64, 2**-24 for float32, 2**-11 for float16, 2**-8 for bfloat16."""
    return float(np.finfo(dtype).eps) / 2


def write_roundoff(dtype) -> float:
    """The relative error of writing one result in ``dtype``: its unit roundoff, and for a format
    narrower than float32 (float16, bfloat16) that of a float32 result rounded to it (two
    roundings: u + u32 + u u32), since float32 arithmetic stored in 16 bits is the common case."""
    u = unit_roundoff(dtype)
    u32 = 2.0**-24
    return u if u <= u32 else u + u32 + u * u32


def rounding_counts(optimizer, params: dict) -> dict:
    """``{key: (kappa, rho)}`` for the parameters ``params`` (flat) stepped by ``optimizer``: the
    counts of the module docstring (Adam's and SGD's 2**11 and 2; ND-Adam's and AdaL's grow with
    the length of their reductions)."""
    from ..adal import AdaL
    from ..ndadam import NDAdam
    out = {key: (KAPPA, RHO) for key in params}
    if isinstance(optimizer, NDAdam):
        for key, x in params.items():
            axes = optimizer._normalized_axes(key, x)
            if axes is not None:
                n = math.prod(x.shape[a] for a in axes)
                out[key] = (KAPPA + 2**7 * (n + 2), n + 6)
    elif isinstance(optimizer, AdaL):
        batch = optimizer.batch_ndim
        sizes = {key: math.prod(x.shape[batch:]) for key, x in params.items()}
        for key in params:
            d = {"global": sum(sizes.values()), "per_tensor": sizes[key], "per_element": 1}[optimizer.norm]
            out[key] = (KAPPA + 2**7 * d, RHO)
    return out


def step_tolerance(reference: np.ndarray, u: float, kappa: float = KAPPA, rho: float = RHO) -> np.ndarray:
    """The default tolerance tau_t of every step t = 0..T for one parameter array (see the module
    docstring), from the reference's trajectory ``reference`` of shape (T + 1, ...), with the
    rounding counts ``kappa`` and ``rho`` (:func:`rounding_counts`)."""
    r = reference.astype(np.float64).reshape(reference.shape[0], -1)
    if r.shape[1] == 0:
        return np.zeros(r.shape[0])
    with np.errstate(invalid="ignore", over="ignore"):
        moves = np.nan_to_num(np.abs(np.diff(r, axis=0)).max(axis=1), nan=np.inf)
        sizes = np.nan_to_num(np.abs(r[1:]).max(axis=1), nan=np.inf)
        distance = np.concatenate([[0.0], np.cumsum(moves)])
        total = np.concatenate([[0.0], np.cumsum(sizes)])
        t = np.arange(r.shape[0])
        u1 = u / (1 - u)
        return u * (kappa * distance + rho * total / (1 - u)) / (1 - u1) ** t


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
    worst: float                        # max over steps and arrays of e_t / tolerance_t (<= 1: a match)
    first_nonfinite: tuple | None       # (step, param, index) where the candidate first went NaN/Inf alone
    first_step_ratio: float | None      # |candidate's step 1| / |reference's step 1| (inf-norms)
    arrays: tuple = ()                  # the keys of the parameter arrays within tolerance at every step


def _errors(c: np.ndarray, r: np.ndarray) -> np.ndarray:
    """|c - r| with NaN equal to NaN and equal infinities equal; a lone NaN/Inf is an infinite error."""
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(c.astype(np.float64) - r.astype(np.float64))
    same = (c == r) | (np.isnan(c) & np.isnan(r))
    err = np.where(same, 0.0, err)
    return np.where(np.isnan(err), np.inf, err)


def compare(candidate: dict, reference: dict, *, rtol: float | None, atol: float, u: float | None = None,
            counts: dict | None = None) -> Comparison:
    """Compare two records of :func:`~refimpl.testing._run.run` (same keys and shapes): with the
    fixed rule ``atol + rtol * S_t``, or (``rtol=None``) the default ``atol + tau_t`` for the unit
    roundoff ``u`` (by default that of the records' dtype) and the rounding counts ``counts``
    (``{key: (kappa, rho)}``, :func:`rounding_counts`; by default Adam's)."""
    max_abs = max_rel = 0.0
    first = None            # (step, key) of the earliest divergence; ties go to the first key
    first_bad = None
    per_key = {}
    num = den = 0.0
    worst = 0.0
    matching = []
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
        if rtol is None:
            kappa, rho = (KAPPA, RHO) if counts is None else counts.get(key, (KAPPA, RHO))
            tol = atol + step_tolerance(r, write_roundoff(r.dtype) if u is None else u, kappa, rho)
        else:
            tol = atol + rtol * scale
        bad = np.nonzero(~(e <= tol))[0]
        if not bad.size:
            matching.append(key)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(e == 0, 0.0, e / tol)
        worst = max(worst, float(np.nan_to_num(ratio, nan=np.inf).max(initial=0.0)))
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
    return Comparison(divergence is None, max_abs, max_rel, divergence, worst, first_bad, ratio, tuple(matching))
