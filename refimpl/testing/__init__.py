r"""refimpl as an oracle: does an optimizer compute Adam (or SGD, ND-Adam, AdaL), and if not, which
convention does it compute?

>>> import numpy as np
>>> from refimpl.testing import diagnose, from_step, probe
>>> def my_adam(theta, g, state, lr=1e-2, b1=0.9, b2=0.999, eps=1e-8):   # TF1-style, on one array
...     t, m, v = state
...     t, m, v = t + 1, b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
...     return theta - lr * np.sqrt(1 - b2**t) / (1 - b1**t) * m / (np.sqrt(v) + eps), (t, m, v)
>>> candidate = from_step(my_adam, init=lambda p: (0, 0 * p, 0 * p), hyperparameters={"lr": 1e-2})
>>> params, grads = probe()          # inputs built to tell every pair of conventions apart
>>> print(diagnose(candidate, params["w"], [g["w"] for g in grads]).summary())
matches Adam(eps_hat=True): the TF1/Keras convention (epsilon hat), max rel err 0

* :func:`assert_matches` runs a candidate and a refimpl optimizer on the same gradients and
  fails at the first step where they part, naming the parameter, the errors and the likely
  convention.
* :func:`diagnose` decides the candidate's algorithm when it does not declare one (ND-Adam by
  the unit norm of its weight vectors, else the closest of Adam, AdaL and SGD), runs it against
  the whole grid of conventions of that family and ranks them (:class:`Diagnosis`).
* Adapters make candidates of other libraries' optimizers: :func:`from_torch` (param groups
  included), :func:`from_optax` (masks and ``multi_transform`` included), :func:`from_keras`, and
  :func:`from_step` for any function ``fn(params, grads, state) -> (params, state)``. Each imports
  its library only when called. Per-group numbers become refimpl's per-parameter hyperparameters.
* :func:`probe` makes the default inputs of :func:`diagnose`, built to tell every pair of
  conventions apart; :func:`compat_table` measures the peers installed here.
* :mod:`refimpl.testing.strategies` (needs hypothesis, imported only when you import it):
  strategies for parameters, gradient streams and configurations, and ``matches_refimpl``, a
  property-based test of a candidate against the configuration it claims to compute.

Only the parameters are compared (a candidate's state is its own business); the tolerance is
explained in :mod:`refimpl.testing._compare`: at step :math:`t`, the largest error of each
parameter array is at most :math:`\tau_t = u(2^{11} D_t + 2R_t/(1-u))/(1-u')^t`, where
:math:`D_t` is the distance the reference has travelled, :math:`R_t` the sum of its sizes over
the steps so far and :math:`u` the unit roundoff of the dtype: small at the first steps, in
float32 as in float64 (ND-Adam's and AdaL's counts grow with the
length of their sums: :func:`~refimpl.testing._compare.rounding_counts`).
"""

from ._adapters import from_keras, from_optax, from_step, from_torch
from ._compare import Divergence, step_tolerance, unit_roundoff
from ._diagnose import NEAR, Diagnosis, Match, assert_matches, diagnose
from ._probe import probe
from ._run import CandidateError

__all__ = ["assert_matches", "diagnose", "Diagnosis", "Match", "Divergence", "CandidateError",
           "from_torch", "from_optax", "from_keras", "from_step", "probe", "step_tolerance", "unit_roundoff", "NEAR",
           "compat_rows", "compat_table"]


def compat_rows(steps: int = 100, *, peers=None, progress=None) -> list:
    """Run every optimizer of every installed peer (or of ``peers``, a list of "torch", "optax",
    "keras") through :func:`diagnose` on :func:`probe` ``(steps)``; one row per optimizer, with
    fields ``library, optimizer, options, matches, error`` and the full ``diagnosis``."""
    from .._compat import compat_rows as _rows
    return _rows(steps, peers=peers, progress=progress)


def compat_table(steps: int = 100, *, rows=None, progress=None) -> str:
    """The compatibility table as Markdown (what ``python -m refimpl compat`` prints): of
    ``rows`` from :func:`compat_rows` measured with the same ``steps``, or measured now."""
    from .._compat import markdown
    return markdown(compat_rows(steps, progress=progress) if rows is None else rows, steps)
