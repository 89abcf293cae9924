r"""Adam (Kingma & Ba, 2015), with every convention that libraries disagree on as an option.

Algorithm 1 of Kingma & Ba (arXiv:1412.6980v9), the default of :class:`Adam`:

.. math::

    g_t &= \nabla f_t(\theta_{t-1}) \\
    m_t &= \beta_1 m_{t-1} + (1-\beta_1)\, g_t \\
    v_t &= \beta_2 v_{t-1} + (1-\beta_2)\, g_t^2 \\
    \hat m_t &= m_t / (1-\beta_1^t), \qquad \hat v_t = v_t / (1-\beta_2^t) \\
    \theta_t &= \theta_{t-1} - \alpha\, \hat m_t / (\sqrt{\hat v_t} + \epsilon)

with :math:`m_0 = v_0 = 0` and :math:`t` counting from 1.  The book derives each line
(chapter "Adam from first principles").
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any, NamedTuple

from . import _precision
from ._core import NONNEGATIVE, UNIT, Hyper, Optimizer, Tree, bias_corrections, cast_like, is_zero, sqrt
from .fast import elementwise, for_arrays_like

__all__ = ["Adam", "AdamState", "adam_update"]


class AdamState(NamedTuple):
    """State of :class:`Adam`: the step count and the moments, shaped like the parameters.

    ``t`` is the number of steps taken (the next step is ``t + 1``); ``m`` and ``v`` are the
    biased first and second moments; ``v_max`` is the AMSGrad running maximum (``None`` unless
    ``amsgrad=True``).
    """

    t: int
    m: Tree
    v: Tree
    v_max: Tree | None


@elementwise  # refimpl/fast.py: the same bits, faster on large arrays
def adam_update(theta, g, m, v, v_max, *, t, lr, beta1, beta2, eps, eps_root=0.0, eps_hat=False,
                bias_correction=True, beta1_bc=None, beta_powers=None, amsgrad=False, amsgrad_max_of="v",
                weight_decay=0.0, decoupled_weight_decay=False, couple_weight_decay=True, xp):
    """One Adam step on one array; returns ``(theta, m, v, v_max)``.  Pure: nothing is modified.

    ``beta1_bc`` is the :math:`\\beta_1` used in the bias correction :math:`1-\\beta_1^t` (it
    differs from ``beta1`` only when ``beta1`` follows a schedule; see :class:`Adam`). ``t`` is
    the count the bias corrections use; at ``t = 0`` they are skipped (see ``t_offset``).
    ``beta_powers`` is :math:`(\\beta_1^t, \\beta_2^t)` as a precision convention forms them
    (``None``: Python's power; see ``scalars`` in :class:`Adam`).
    """
    if not is_zero(weight_decay):
        if decoupled_weight_decay and couple_weight_decay:
            theta = theta - lr * weight_decay * theta       # AdamW: decay the weights, apart from g
        elif decoupled_weight_decay:
            theta = theta - weight_decay * theta            # the same, not scaled by lr
        else:
            g = g + weight_decay * theta                    # L2: the penalty's gradient joins g
    m = beta1 * m + (1 - beta1) * g                         # biased first moment
    v = beta2 * v + (1 - beta2) * g * g                     # biased second raw moment
    bc1, bc2 = bias_corrections(beta1 if beta1_bc is None else beta1_bc, beta2, t, bias_correction and t > 0, beta_powers)

    if amsgrad and amsgrad_max_of == "v":
        v_max = xp.maximum(v_max, v)                        # Reddi et al. / PyTorch: max of raw v
        v_raw, v_hat = v_max, v_max / bc2
    elif amsgrad:
        v_max = xp.maximum(v_max, v / bc2)                  # optax: max of the corrected v
        v_raw, v_hat = v_max * bc2, v_max
    else:
        v_raw, v_hat = v, v / bc2
    if not is_zero(eps_root):  # optax: epsilon inside the square root as well
        v_raw, v_hat = v_raw + eps_root * bc2, v_hat + eps_root

    if eps_hat:
        # Kingma & Ba's reordering; equal to Algorithm 1 with eps_t = eps / sqrt(1 - beta2^t).
        lr_t = lr * sqrt(bc2, xp) / bc1
        theta = theta - lr_t * m / (xp.sqrt(v_raw) + eps)
    else:
        m_hat = m / bc1
        theta = theta - lr * m_hat / (xp.sqrt(v_hat) + eps)
    return theta, m, v, v_max


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class Adam(Optimizer):
    r"""Adam, Algorithm 1 of Kingma & Ba, with the conventions of other libraries as options.

    Parameters
    ----------
    lr : number, array or callable of t
        The step size :math:`\alpha` (or a schedule :math:`\alpha_t`, e.g. ``lambda t: a / t**0.5``).
    beta1 : number, array in [0, 1), or callable of t
        Decay rate of the first moment. It may be a schedule :math:`\beta_{1,t}`
        (e.g. ``lambda t: 0.9 * lam**(t - 1)``, Kingma & Ba Section 4); the bias correction then
        uses :math:`1-\beta_{1,1}^t`, as in their analysis, so :math:`\hat m_t` is no longer an
        exact weighted average.
    beta2 : number or array in [0, 1)
        Decay rate of the second moment (a constant).
    eps : number or array >= 0
        Added to :math:`\sqrt{\hat v_t}`.
    eps_hat : bool
        ``False``: Algorithm 1, :math:`\alpha \hat m_t/(\sqrt{\hat v_t}+\epsilon)` (PyTorch,
        optax, Optimisers.jl). ``True``: the "efficient" form of Kingma & Ba Section 2,
        :math:`\alpha_t = \alpha\sqrt{1-\beta_2^t}/(1-\beta_1^t)`,
        :math:`\theta_t = \theta_{t-1} - \alpha_t m_t/(\sqrt{v_t}+\hat\epsilon)` (TF1, Keras, the
        official ND-Adam PyTorch code). It equals Algorithm 1 with the time-varying
        :math:`\epsilon_t = \hat\epsilon/\sqrt{1-\beta_2^t}`, 31.6 times ``eps`` at t = 1 for
        :math:`\beta_2 = 0.999`.
    eps_root : number or array >= 0
        Added *inside* the square root, :math:`\sqrt{\hat v_t + \epsilon_{root}}` (optax).
    bias_correction : bool
        ``False`` drops both corrections (:math:`\hat m_t = m_t`, :math:`\hat v_t = v_t`),
        as in Reddi et al.'s analysis.
    amsgrad : bool
        Divide by a running maximum of the second moment instead of the current one.
    amsgrad_max_of : ``"v"`` or ``"v_hat"``
        ``"v"``: maximum of the raw :math:`v_t`, then divided by the current
        :math:`1-\beta_2^t` (PyTorch, Keras; with ``bias_correction=False`` this is Reddi et
        al.'s Algorithm 2). ``"v_hat"``: maximum of the corrected :math:`\hat v_t` (optax).
    weight_decay : number or array >= 0
        :math:`\lambda`. Added to the gradient as :math:`\lambda\theta` (L2, torch.optim.Adam),
        unless ``decoupled_weight_decay``.
    decoupled_weight_decay : bool
        AdamW: :math:`\theta \leftarrow \theta - \alpha\lambda\theta` before the Adam step and
        outside the moments (torch.optim.AdamW, optax.adamw; both couple the decay to ``lr``).
    couple_weight_decay : bool
        With ``decoupled_weight_decay``: ``True`` scales the decay by the step size,
        :math:`\theta \leftarrow \theta - \alpha\lambda\theta` (PyTorch, optax, Keras,
        Optimisers.jl ``couple=true``); ``False`` does not,
        :math:`\theta \leftarrow \theta - \lambda\theta` (Loshchilov & Hutter's Algorithm 2 with
        schedule multiplier 1, Optimisers.jl ``couple=false``). Requires
        ``decoupled_weight_decay=True`` when ``False``: L2 decay enters the gradient, so ``lr``
        always scales it.
    t_offset : int >= -1
        The bias corrections use :math:`\tau = t + t_{offset}` instead of :math:`t`, and are
        skipped at :math:`\tau = 0` (where :math:`1-\beta^0 = 0`; ONNX's rule for ``T = 0``).
        ``-1``: a step counter that starts at 0 (ONNX Adam fed the number of previous steps, or
        a counter incremented after its use); ``+1``: a counter one step ahead (incremented
        twice, or started at 1 and incremented before use; the widely copied CS231n Adam check
        encodes it). ``lr`` and ``beta1`` schedules still see :math:`t`.
    scalars : ``"exact"``, ``"float32"`` or ``"float32_beta_powers"``
        How the numbers enter (a precision convention; it matters when the parameters are wider
        than float32). ``"exact"``: the hyperparameters as given, :math:`\beta^t` by Python's
        power (PyTorch, optax, Keras on JAX). ``"float32"``: ``lr``, the betas, ``eps``,
        ``eps_root`` and ``weight_decay`` rounded to float32, and :math:`\beta^t` a float32
        running product :math:`p_t = \mathrm{fl}_{32}(p_{t-1}\beta)`, the rest in the
        parameters' dtype (TF1 ``tf.compat.v1.train.AdamOptimizer``: its ``beta1_power`` and
        ``beta2_power`` are float32 variables multiplied by ``beta`` after each step, and lr,
        betas and epsilon are float32 tensors cast to the parameters' dtype,
        ``tensorflow/python/training/adam.py``; tinygrad's ``b1_t *= b1`` in float32,
        ``tinygrad/nn/optim.py``). ``"float32_beta_powers"``: only :math:`\beta^t` changes, to
        the power of :math:`\mathrm{fl}_{32}(\beta)` taken in the parameters' dtype (Keras 3 on
        the TensorFlow backend and tf-keras: ``tf.cast(beta_1, variable.dtype)`` of a Python float
        goes through float32, ``keras/src/optimizers/adam.py`` ``update_step``; their learning
        rate is a float32 variable as well, which ``lr`` says).
    compute_dtype : ``None`` or ``"float32"``
        The dtype of the arithmetic. ``None``: the parameters' own dtype, every operation rounded
        to it (NumPy; PyTorch's for-loop and foreach paths). ``"float32"``: parameters, gradient
        and state are converted to float32, the update runs there, and the results are rounded
        back to the parameters' dtype, in which the state is kept (PyTorch ``fused=True``'s
        "opmath" for float16 and bfloat16, ``aten/src/ATen/native/cuda/fused_adam_utils.cuh``;
        most CUDA kernels). bfloat16 parameters need ``ml_dtypes`` on NumPy
        (``pip install 'refimpl[bfloat16]'``).

    Raises ``ValueError`` when a positive ``eps`` or ``eps_root`` rounds to 0 in the dtype of the
    arithmetic (``1e-8`` in float16): the update would divide by zero where the second moment
    underflows, as PyTorch's float16 Adam does.

    Notes
    -----
    Each combination is a precise algorithm; the option names say which library computes which.
    Hyperparameters that are arrays broadcast against the parameters: one call then steps a
    batch of configurations, each bitwise equal to its own run, except that with array-valued
    ``beta1``/``beta2`` the powers :math:`\beta^t` come from the array library's ``pow``, which
    may differ from Python's in the last bit.

    Examples
    --------
    >>> import numpy as np, refimpl
    >>> opt = refimpl.Adam(lr=0.1)
    >>> theta = np.array([1.0, -2.0])
    >>> state = opt.init(theta)
    >>> theta, state = opt.step(theta, 2 * theta, state)   # gradient of ||theta||^2
    >>> theta   # the first step moves every coordinate by lr, against the gradient's sign
    array([ 0.9, -1.9])
    """

    lr: Hyper = 1e-3
    beta1: Hyper = 0.9
    beta2: Hyper = 0.999
    eps: Hyper = 1e-8
    eps_hat: bool = False
    eps_root: Hyper = 0.0
    bias_correction: bool = True
    amsgrad: bool = False
    amsgrad_max_of: str = "v"
    weight_decay: Hyper = 0.0
    decoupled_weight_decay: bool = False
    couple_weight_decay: bool = True
    t_offset: int = 0
    scalars: str = "exact"
    compute_dtype: str | None = None

    State = AdamState
    _HYPERS = {"lr": (NONNEGATIVE, True), "beta1": (UNIT, True), "beta2": (UNIT, False),
               "eps": (NONNEGATIVE, False), "eps_root": (NONNEGATIVE, False),
               "weight_decay": (NONNEGATIVE, False)}

    def _check_options(self) -> None:
        for flag in ("eps_hat", "bias_correction", "amsgrad", "decoupled_weight_decay", "couple_weight_decay"):
            self._check_choice(flag, (False, True))
        self._check_choice("amsgrad_max_of", ("v", "v_hat"))
        self._check_choice("scalars", _precision.SCALARS)
        if not self.couple_weight_decay and not self.decoupled_weight_decay:
            raise ValueError(f"couple_weight_decay=False needs decoupled_weight_decay=True, got "
                             f"decoupled_weight_decay={self.decoupled_weight_decay!r} (L2 decay enters the "
                             f"gradient, so lr always scales it)")
        if isinstance(self.t_offset, bool) or not isinstance(self.t_offset, numbers.Integral) or self.t_offset < -1:
            raise ValueError(f"t_offset={self.t_offset!r} must be an int >= -1")

    def _moment_shapes(self, key: str, p) -> dict[str, Any]:
        shape = tuple(p.shape)
        return {"m": shape, "v": shape, "v_max": shape if self.amsgrad else None}

    def _update(self, p, g, s, t, xp):
        lr = self._resolve("lr", t, NONNEGATIVE, p)
        beta1 = self._resolve("beta1", t, UNIT, p)
        beta1_bc = self._resolve("beta1", 1, UNIT, p)
        beta2, eps, eps_root, weight_decay = self.beta2, self.eps, self.eps_root, self.weight_decay
        if self.scalars == "float32":  # TF1, tinygrad: every hyperparameter a float32 number
            lr, beta1, beta1_bc, beta2, eps, eps_root, weight_decay = (
                _precision.to_float32(h, xp) for h in (lr, beta1, beta1_bc, beta2, eps, eps_root, weight_decay))
        tau = t + self.t_offset
        powers = _precision.beta_powers(self.scalars, beta1_bc, beta2, tau)  # None: Python's power
        new_p, new_s = {}, {"m": {}, "v": {}, "v_max": {} if self.amsgrad else None}
        for key, theta in p.items():
            c = lambda h: cast_like(h, theta, xp)  # noqa: E731 - hyperparameters in the arithmetic's dtype
            v_max = s["v_max"][key] if self.amsgrad else None
            results = for_arrays_like(adam_update, theta)(
                theta, g[key], s["m"][key], s["v"][key], v_max, t=tau,
                lr=c(lr), beta1=c(beta1), beta2=c(beta2), eps=c(eps), eps_root=c(eps_root),
                eps_hat=self.eps_hat, bias_correction=self.bias_correction, beta1_bc=c(beta1_bc),
                beta_powers=None if powers is None else (c(powers[0]), c(powers[1])), amsgrad=self.amsgrad,
                amsgrad_max_of=self.amsgrad_max_of, weight_decay=c(weight_decay),
                decoupled_weight_decay=self.decoupled_weight_decay,
                couple_weight_decay=self.couple_weight_decay, xp=xp)
            new_p[key], new_s["m"][key], new_s["v"][key], v_max = results
            if self.amsgrad:
                new_s["v_max"][key] = v_max
        return new_p, new_s
