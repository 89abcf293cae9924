r"""The per-step, per-array tolerances of the golden vectors (format version 3).

A consumer runs a case free, from the initial parameters over the file's gradients, and after
step :math:`t` compares each array it holds with the file's: it passes if
``!(max_i |got_i - want_i| <= tolerance)`` (NaN-safe). The tolerances are computed from the
file's own trajectory (so :func:`tolerances` applied to a file's numbers gives the numbers it
stores) and are meant to admit any other order of the same arithmetic, and to reject another
convention wherever it changes a number of the case by more than rounding does.

**Parameters.** :math:`\tau^\theta_t` is the oracle's tolerance
(:func:`refimpl.testing._compare.step_tolerance`, book ``prop-oracle-tolerance``) with the
family's rounding counts :math:`(\kappa, \rho)` (:func:`~refimpl.testing._compare.rounding_counts`,
book ``prop-oracle-rounding-counts``): :math:`u(\kappa D_t + \rho R_t/(1-u))/(1-u')^t`.

**State.** Every moment is a recurrence :math:`X_s = \beta X_{s-1} + c\,h_s` with
:math:`0 \le \beta < 1`: Adam's, ND-Adam's and AdaL's :math:`m` (:math:`c = 1-\beta_1`,
:math:`h = g`) and :math:`v` (:math:`c = 1-\beta_2`, :math:`h = g^2`, ND-Adam: the sum of
:math:`g^2` over a vector), SGD's momentum buffer (:math:`\beta = \mu`, :math:`c = 1 -` dampening).
An error already in :math:`X_{s-1}` is multiplied by :math:`\beta \le 1`, so the errors of the
steps add up, and a bound of the form of ``step_tolerance`` applies to the state's own
trajectory (from :math:`X_0 = 0`) once each step's new rounding errors are bounded by
:math:`u(\kappa_X |X_s - X_{s-1}| + \rho_X \max(|X_{s-1}|, |X_s|))` for both sides together:

* the increment: with :math:`\beta X_{s-1} + c h_s = X_s`, :math:`|c\,h_s| \le |X_s - X_{s-1}| +
  (1-\beta)|X_{s-1}|`. Forming :math:`h` (the weight decay's sum, a square, the constant
  :math:`c`, the products) costs at most 4 roundings of :math:`|c h_s|` a side, in any order
  (torch's ``lerp``, :math:`X + c(h - X)`, rounds :math:`h - X` relative to
  :math:`|X_s - X_{s-1}|/c`, which the factor :math:`c` brings back to
  :math:`|X_s - X_{s-1}|`); :math:`\beta X_{s-1}` and the sum two and one more of
  :math:`|X_{s-1}|` and :math:`|X_s|`. A side that forms :math:`1-\beta` in the dtype from a
  rounded :math:`\beta` (the C consumer in float32) changes :math:`c` by up to :math:`u\beta`,
  that is :math:`c\,h_s` relatively by :math:`u/(1-\beta)`. So
  :math:`\kappa_X = 2(8 + 1/(1-\beta))` and :math:`\rho_X = 2 \cdot 16`, with margin
  (:math:`\beta_2 = 0.999`: :math:`\kappa_X = 2016`; :math:`\beta_1 = 0.9`: 36).
* a reduction in :math:`h` (ND-Adam's projection and its sum of squares, AdaL's
  :math:`\ell_1` norm) errs relatively by the amounts that made the family's
  :math:`\kappa` exceed :math:`2^{11}` (``prop-oracle-rounding-counts``): that excess is added to
  :math:`\kappa_X`, and an eighth of it to :math:`\rho_X` (the part :math:`(1-\beta)|X_{s-1}|` of
  :math:`|c h_s|`; with :math:`\beta_1 = 0` ND-Adam's projection errs by at most
  :math:`8\sqrt n (n+3) u \le 2^4 (n+2) u` both sides, an eighth of :math:`2^7(n+2)`).

**Propagation from the parameters.** Where :math:`h` depends on the parameters (L2 weight decay
:math:`g + \lambda\theta`; ND-Adam's projection :math:`\bar g - (\bar g\cdot w) w`), a
candidate whose parameters passed at step :math:`s-1` feeds in a parameter error up to
:math:`\tau^\theta_{s-1}`, which moves the gradient :math:`g'` by at most :math:`L_s
\tau^\theta_{s-1}` (:math:`L = \lambda`; ND-Adam: :math:`L = \|\bar g\|_1\|w\|_\infty +
|\bar g\cdot w|` per vector). This is no rounding and is added to the state's tolerance:

* :math:`m`, a convex combination of the :math:`g'_s` (its weights sum to at most 1):
  :math:`P^m_t = \max_{s\le t} L_s\tau^\theta_{s-1}`;
* :math:`v`, of the :math:`g'^2_s`: :math:`|(g' + \delta)^2 - g'^2| \le (2|g'| + \delta)\delta`,
  so :math:`P^v_t = \max_{s\le t} (2G_s + \delta_s)\delta_s` with :math:`\delta_s = L_s
  \tau^\theta_{s-1}`, :math:`G_s = \|g'_s\|_\infty`; ND-Adam's per-vector :math:`v` sums
  :math:`n` of them: :math:`(2\|g'_s\|_1 + n\delta_s)\delta_s`;
* SGD's buffer, a sum with weights :math:`1` (at :math:`s = 1`, the buffer is :math:`g_1`) and
  :math:`(1-\text{dampening})\mu^{t-s}`: :math:`P_t = \mu P_{t-1} + c_t \delta_t`.

**AMSGrad.** :math:`v_{\max} = \max(v_{\max}, v)` is exact and 1-Lipschitz: its tolerance is
:math:`\max_{s\le t}\tau^v_s`. On the bias-corrected :math:`\hat v = v/(1-\beta_2^s)` (optax)
add the division (a rounding a side) and :math:`1-\beta_2^s` formed by any method in the dtype
(:math:`\beta_2^s` to :math:`(s+1)u` relatively, then a cancellation by
:math:`\beta_2^s/(1-\beta_2^s)`): :math:`\max_{s\le t} (\tau^v_s/(1-\beta_2^s) + 2u(2 + (s+1)
\beta_2^s/(1-\beta_2^s))\|v_{\max,s}\|_\infty)`.
"""

from __future__ import annotations

import math

import numpy as np

from .testing._compare import KAPPA, rounding_counts, step_tolerance, unit_roundoff

__all__ = ["tolerances", "state_counts"]

#: the fields that are exponential averages of g (m) or of g^2 (v), and SGD's buffer
MOMENT_OF = {"m": "g", "v": "g2", "v_max": "g2", "momentum_buffer": "buffer"}


def state_counts(kappa: float, rho: float, beta: float) -> tuple[float, float]:
    r"""The counts :math:`(\kappa_X, \rho_X)` of a moment with decay ``beta`` for a parameter
    whose own counts are ``(kappa, rho)`` (see the module docstring)."""
    if not 0 <= beta < 1:
        raise ValueError(f"beta={beta!r}: a moment's decay must lie in [0, 1)")
    excess = kappa - KAPPA                      # the reductions' share (ND-Adam, AdaL)
    return excess + 2 * (8 + 1 / (1 - beta)), 2**5 + excess / 2**3


def _number(opt, name: str, key: str, t: int = 1) -> float:
    """Hyperparameter ``name`` of parameter ``key`` (a schedule's value at step ``t``; for a decay,
    step 1's is its largest)."""
    value = opt._value(name, key)
    return float(value(t)) if callable(value) else float(value)


def _decay(opt, field: str, key: str) -> float:
    if field == "momentum_buffer":
        return _number(opt, "momentum", key)
    return _number(opt, "beta1" if field == "m" else "beta2", key)


def _coupled_gradients(opt, key: str, params: np.ndarray, grads: np.ndarray):
    r"""``(g', L)`` for steps 1..T: the gradient each moment of parameter ``key`` sees, and the
    bound :math:`L_s` on how far it moves per unit of parameter error (0 where it does not
    depend on the parameters). ``params`` holds steps 0..T, ``grads`` steps 1..T."""
    from .ndadam import NDAdam
    x = params[:-1].astype(np.float64)
    g = grads.astype(np.float64)
    steps = g.shape[0]
    if isinstance(opt, NDAdam):
        axes = opt._normalized_axes(key, params[0])
        if axes is not None:
            ax = tuple(a + 1 for a in axes)
            dot = np.sum(g * x, axis=ax, keepdims=True)
            lip = np.sum(np.abs(g), axis=ax, keepdims=True) * np.max(np.abs(x), axis=ax, keepdims=True) + np.abs(dot)
            return g - dot * x, lip.reshape(steps, -1).max(axis=1)
        wd = _number(opt, "weight_decay_scalar", key)
    elif hasattr(opt, "weight_decay") and not getattr(opt, "decoupled_weight_decay", False):
        wd = _number(opt, "weight_decay", key)          # Adam's and SGD's L2 decay
    else:
        wd = 0.0                                        # AdaL; Adam's decoupled decay
    return g + wd * x, np.full(steps, abs(wd))


def _propagation(opt, field: str, key: str, coupled, shift: np.ndarray, state_shape) -> np.ndarray:
    """The state's tolerance from parameter errors (module docstring), steps 0..T."""
    gp, lip = coupled
    steps = gp.shape[0]
    delta = lip * shift                                 # how far g' may move at each step
    kind = MOMENT_OF[field]
    if kind == "buffer":
        mu, damp = _decay(opt, field, key), _number(opt, "dampening", key)
        out, p = [0.0], 0.0
        for s in range(steps):
            p = mu * p + (1.0 if s == 0 else 1 - damp) * float(delta[s])
            out.append(p)
        return np.array(out)
    if kind == "g":
        per = delta
    else:
        flat = gp.reshape(steps, -1)
        n = math.prod(gp.shape[1:]) // max(1, math.prod(state_shape))   # elements per v (ND-Adam: n)
        if n > 1:   # one v per vector: sum of n squares
            axes = opt._normalized_axes(key, np.zeros(gp.shape[1:]))
            l1 = np.sum(np.abs(gp), axis=tuple(a + 1 for a in axes)).reshape(steps, -1).max(axis=1)
            per = (2 * l1 + n * delta) * delta
        else:
            per = (2 * np.abs(flat).max(axis=1, initial=0.0) + delta) * delta
    return np.concatenate([[0.0], np.maximum.accumulate(per)])


def _bias_correction2(opt, t: np.ndarray) -> np.ndarray:
    """1 - beta2^s for the step counts of ``t`` (1 where there is none: no correction, s <= 0)."""
    s = t + opt.t_offset
    beta2 = float(opt.beta2)
    on = opt.bias_correction & (s > 0)
    return np.where(on, 1 - beta2 ** np.maximum(s, 0), 1.0), np.where(on, s, 0)


def tolerances(opt, dtype: str, params: dict, state: dict, grads: dict) -> list[dict]:
    """The ``tolerance`` member of every step 1..T: ``{"params": {key: atol}, "state": {field:
    {key: atol} or None}}``, from the trajectory ``params`` (``{key: array of steps 0..T}``),
    ``state`` (``{field: {key: array of steps 0..T} or None}``, step 0 all zero) and ``grads``
    (``{key: array of steps 1..T}``)."""
    u = unit_roundoff(dtype)
    counts = rounding_counts(opt, {k: x[0] for k, x in params.items()})
    tau = {k: step_tolerance(x, u, *counts[k]) for k, x in params.items()}
    coupled = {k: _coupled_gradients(opt, k, params[k], grads[k]) for k in params}
    out_state = {}
    for field, tree in state.items():
        if tree is None:
            out_state[field] = None
            continue
        out_state[field] = {}
        for k, x in tree.items():
            kappa, rho = state_counts(*counts[k], _decay(opt, field, k))
            source = "v" if field == "v_max" else field
            own = step_tolerance(state[source][k], u, kappa, rho)
            total = own + _propagation(opt, source, k, coupled[k], tau[k][:-1], x.shape[1:])
            if field == "v_max":
                total = np.maximum.accumulate(total)
                if opt.amsgrad_max_of == "v_hat":
                    steps = np.arange(x.shape[0])
                    bc2, s = _bias_correction2(opt, steps)
                    power = 1 - bc2
                    size = np.abs(x.reshape(x.shape[0], -1).astype(np.float64)).max(axis=1, initial=0.0)
                    total = np.maximum.accumulate(total / bc2 + 2 * u * (2 + (s + 1) * power / bc2) * size)
            out_state[field][k] = total
    steps = []
    for t in range(1, next(iter(params.values())).shape[0]):
        steps.append({"params": {k: float(tau[k][t]) for k in params},
                      "state": {f: None if tr is None else {k: float(a[t]) for k, a in tr.items()}
                                for f, tr in out_state.items()}})
    return steps
