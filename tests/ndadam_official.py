"""The official ND-Adam updates, transcribed for the tests (github.com/zj10/ND-Adam at b4a9d59,
2018-09-18). Third-party code is not committed and the tests run offline, so these are the
project's own transcriptions, line by line, of what the two files compute; each function says
which lines it follows.

* :class:`OfficialPyTorchNDAdam` follows ``pytorch/ndadam.py`` (lines 8-83). That file runs
  unchanged on the pinned torch 2.13: its scalar-first overloads ``add(scalar, tensor)``,
  ``add_(scalar, tensor)``, ``addcmul_(scalar, t1, t2)`` and ``addcdiv_(scalar, t1, t2)`` are
  deprecated (they warn) but not removed. The transcription uses the keyword forms
  (``add_(tensor, alpha=scalar)``), which compute the same; ``test_transcription_is_the_official_file``
  checks it bit for bit against the real file when ``REFIMPL_NDADAM_OFFICIAL`` names a checkout.
  What it keeps of the original, because it changes the numbers: the vectors' second moment is
  allocated with ``torch.zeros(shape)``, in torch's default dtype (float32), whatever the
  parameters' dtype (line 42); the step counter is per parameter and a parameter whose ``.grad``
  is None is skipped (lines 21-22, 51); L2 decay is added to the gradient out of place (line 30)
  and the projection is subtracted from the gradient in place (line 58), so without decay the
  official code overwrites ``p.grad`` of weight vectors, as here.
* :func:`official_tensorflow_step` follows ``tensorflow/ndadam.py`` (lines 5-58), which needs
  TensorFlow 1 (``tf.train.Optimizer``, ``tf.to_float``): it cannot run here, so its operations are
  written in NumPy float32, the dtype of every variable it creates (``tf.zeros`` at lines 23 and
  27, the float32 step count ``tf.to_float(t)`` at line 35, Python numbers converted to float32
  tensors where they meet them). ``1 - beta**t`` is computed in float32 (lines 46-47), as TensorFlow
  does; NumPy's float32 ``power`` and TensorFlow's may differ in the last bit, which the oracle's
  tolerance admits.
"""

from __future__ import annotations

import math

import numpy as np

from refimpl.testing import from_step


try:
    import torch
except ImportError:  # torch is a peer, not a dependency: the PyTorch transcription needs it
    torch = None


def official_pytorch_class():
    """The transcription, a ``torch.optim.Optimizer`` subclass (None without torch)."""
    return OfficialPyTorchNDAdam if torch is not None else None


if torch is not None:
    class OfficialPyTorchNDAdam(torch.optim.Optimizer):
        """``pytorch/ndadam.py``'s ``NDAdam``: ``vec_axes`` in a param group makes its tensors weight
        vectors spanning those axes; ``weight_decay`` is L2 in the gradient."""

        def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, vec_axes=None):
            super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, vec_axes=vec_axes))

        @torch.no_grad()
        def step(self, closure=None):
            for group in self.param_groups:
                axes = group["vec_axes"]
                beta1, beta2 = group["betas"]
                for p in group["params"]:
                    if p.grad is None:                                           # lines 21-22
                        continue
                    grad = p.grad
                    state = self.state[p]
                    if group["weight_decay"] != 0:                               # line 30: a new tensor
                        grad = grad.add(p, alpha=group["weight_decay"])
                    if len(state) == 0:                                          # lines 33-46
                        state["step"] = 0
                        state["exp_avg"] = torch.zeros_like(p)
                        if axes:   # torch's default dtype, not p's (and on CUDA when there is one)
                            shape = [1 if i in axes else n for i, n in enumerate(p.shape)]
                            state["exp_avg_sq"] = torch.zeros(shape)
                        else:
                            state["exp_avg_sq"] = torch.zeros_like(p)
                    exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                    state["step"] += 1                                           # line 51
                    if axes:                                                     # lines 54-63
                        radial = grad * p
                        for i in axes:
                            radial = torch.sum(radial, i, True)
                        grad.add_(-radial * p)          # in place: p.grad itself when there is no decay
                        exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
                        squares = grad * grad
                        for i in axes:
                            squares = torch.sum(squares, i, True)
                        exp_avg_sq.mul_(beta2).add_(squares, alpha=1 - beta2)
                    else:                                                        # lines 64-66
                        exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
                        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                    denom = exp_avg_sq.sqrt().add_(group["eps"])                 # line 68
                    bias_correction1 = 1 - beta1 ** state["step"]               # lines 70-72
                    bias_correction2 = 1 - beta2 ** state["step"]
                    step_size = group["lr"] * math.sqrt(bias_correction2) / bias_correction1
                    p.addcdiv_(exp_avg, denom, value=-step_size)                 # line 74
                    if axes:                                                     # lines 76-81
                        norm = p * p
                        for i in axes:
                            norm = torch.sum(norm, i, True)
                        norm.sqrt_()
                        p.div_(norm)


def official_tensorflow_step(params: dict, grads: dict, state, *, learning_rate, vec_axes, beta1=0.9, beta2=0.999,
                             epsilon=1e-8):
    """One ``apply_gradients`` of ``tensorflow/ndadam.py``'s ``NDAdamOptimizer`` on float32 arrays.

    ``learning_rate`` is the scalar rate (the code then uses ``(learning_rate, 50 * learning_rate)``
    for scalars and vectors, lines 8-11); ``vec_axes`` maps parameter names to the axes of their
    vectors (the code keys it by variable). ``state`` is ``(t, m, u)`` or None.
    """
    f32 = np.float32
    rates = (learning_rate, 50 * learning_rate)                           # lines 8-11, Python numbers
    if state is None:                                                     # lines 17-27: float32 zeros
        state = (0, {k: np.zeros_like(x, dtype=f32) for k, x in params.items()},
                 {k: np.zeros([1 if i in vec_axes.get(k, ()) else n for i, n in enumerate(x.shape)], dtype=f32)
                  for k, x in params.items()})
    t, m, u = state
    t = t + 1                                                             # line 31
    tf = f32(t)                                                           # line 35: tf.to_float
    new_params, new_m, new_u = {}, {}, {}
    for k, v in params.items():
        g, v = np.asarray(grads[k], dtype=f32), np.asarray(v, dtype=f32)
        axes = tuple(vec_axes[k]) if k in vec_axes else None
        if axes is not None:                                              # lines 38-41
            g_proj = np.sum(g * v, axis=axes, keepdims=True)
            g = g - g_proj * v
            g2 = np.sum(np.square(g), axis=axes, keepdims=True)
        else:                                                             # lines 42-43
            g2 = np.square(g)
        new_m[k] = f32(beta1) * m[k] + f32(1 - beta1) * g                # lines 44-45: Python numbers -> float32
        new_u[k] = f32(beta2) * u[k] + f32(1 - beta2) * g2
        m_hat = new_m[k] / (f32(1) - np.power(f32(beta1), tf))            # lines 46-47: float32 pow
        u_hat = new_u[k] / (f32(1) - np.power(f32(beta2), tf))
        if axes is not None:                                              # lines 49-52
            updated = v - f32(rates[1]) * m_hat / (np.sqrt(u_hat) + f32(epsilon))
            norms = np.sqrt(np.sum(np.square(updated), axis=axes, keepdims=True))
            new_params[k] = updated / norms
        else:                                                             # lines 53-55
            new_params[k] = v - f32(rates[0]) * m_hat / (np.sqrt(u_hat) + f32(epsilon))
    return new_params, (t, new_m, new_u)


def official_tensorflow_candidate(*, learning_rate, vec_axes, beta1=0.9, beta2=0.999, epsilon=1e-8):
    """The TensorFlow transcription as a candidate (it computes in float32: compare in float32)."""
    def step(params, grads, state):
        return official_tensorflow_step(params, grads, state, learning_rate=learning_rate, vec_axes=vec_axes,
                                        beta1=beta1, beta2=beta2, epsilon=epsilon)
    return from_step(step, name=f"the official ND-Adam TensorFlow code (transcribed; learning_rate={learning_rate})",
                     hyperparameters={"lr_vector": 50 * learning_rate, "lr_scalar": learning_rate, "beta1": beta1,
                                      "beta2": beta2, "eps": epsilon})
