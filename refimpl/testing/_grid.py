"""The grids of conventions that :func:`~refimpl.testing.diagnose` tries, with their names.

Every entry is a complete refimpl configuration built from the candidate's numeric
hyperparameters (``lr``, the betas, ``eps``, ...) and one choice per convention, with a
description naming the source it reproduces. Choices that compute the same thing for the given
hyperparameters are listed once: without bias correction, epsilon hat is Algorithm 1 and the two
AMSGrad maxima coincide; without weight decay the three decay modes are one; with ``eps = 0`` the
epsilon placements are one.

The four families: Adam (Kingma & Ba and every library's convention), SGD (torch.optim.SGD's),
ND-Adam (the paper's Algorithm 1 and the authors' two official codes) and AdaL (the choices its
only available description leaves open).
"""

from __future__ import annotations

import dataclasses
import itertools
import numbers
from collections.abc import Mapping
from typing import NamedTuple

from .._core import Optimizer, _describe, is_zero
from ..adal import AdaL
from ..adam import Adam
from ..ndadam import NDAdam
from ..sgd import SGD

__all__ = ["Convention", "FAMILIES", "HYPERPARAMETERS", "NAMES", "grid", "hyperparameters_of", "differences",
           "translate"]

FAMILIES = {"adam": Adam, "sgd": SGD, "ndadam": NDAdam, "adal": AdaL}
NAMES = {"adam": "Adam", "sgd": "SGD", "ndadam": "ND-Adam", "adal": "AdaL"}    # for people
HYPERPARAMETERS = {
    "adam": ("lr", "beta1", "beta2", "eps", "eps_root", "weight_decay", "scalars", "compute_dtype"),
    "sgd": ("lr", "momentum", "dampening", "weight_decay", "nesterov"),
    "ndadam": ("lr_vector", "lr_scalar", "beta1", "beta2", "eps", "weight_decay_scalar", "vector_axes"),
    "adal": ("lr", "beta1", "beta2", "eps", "batch_ndim"),
}


class Convention(NamedTuple):
    """One configuration of a grid: its short name, what it is, and the refimpl optimizer."""

    label: str              # e.g. "Adam(eps_hat=True)"
    description: str        # e.g. "the TF1/Keras convention (epsilon hat)"
    optimizer: Optimizer


def check_family(family) -> str:
    if family not in FAMILIES:
        raise ValueError(f"family={family!r} must be one of {', '.join(map(repr, FAMILIES))}, or None (diagnose "
                         f"then decides from the trajectory)")
    return family


def translate(family: str, declared) -> dict | None:
    """A candidate's declared hyperparameters (a dict, named for another family perhaps) in the names
    of ``family``: ND-Adam takes ``lr`` as both of its step sizes and ``weight_decay`` as
    ``weight_decay_scalar``; a value of 0 (or False) that the family has no name for is dropped (a
    feature switched off). Returns None when a declared value means something the family cannot
    compute (a nonzero weight decay for AdaL, momentum for Adam)."""
    if declared is None:
        return None
    names = HYPERPARAMETERS[family]
    out = {}
    for key, value in declared.items():
        if family == "ndadam" and key == "lr":
            out.setdefault("lr_vector", value)
            out.setdefault("lr_scalar", value)
        elif family == "ndadam" and key == "weight_decay":
            out["weight_decay_scalar"] = value
        elif key in names:
            out[key] = value
        elif not (value is None or value is False or (isinstance(value, (int, float)) and value == 0)
                  or (key == "scalars" and value == "exact")):
            return None
    return out


def family_of(candidate) -> str | None:
    """The family a candidate declares (adapters) or is (refimpl optimizers), else None."""
    declared = getattr(candidate, "family", None)
    if isinstance(declared, str) and declared in FAMILIES:
        return declared
    for name, cls in FAMILIES.items():
        if isinstance(candidate, cls):
            return name
    return None


def hyperparameters_of(family: str, given) -> tuple[dict, bool]:
    """The numeric hyperparameters of ``family`` from ``given`` (a mapping, a refimpl optimizer
    of the family, or None for the defaults); returns ``(values, assumed)``."""
    cls = FAMILIES[family]
    names = HYPERPARAMETERS[family]
    defaults = {f.name: f.default for f in dataclasses.fields(cls)
                if f.name in names and f.default is not dataclasses.MISSING}
    if given is None:
        return defaults, True
    if isinstance(given, Optimizer):
        if not isinstance(given, cls):
            raise TypeError(f"hyperparameters is a {type(given).__name__} but family={family!r} needs "
                            f"numbers for {', '.join(names)}")
        return {n: getattr(given, n) for n in names}, False
    if not isinstance(given, Mapping):
        raise TypeError(f"hyperparameters must be a dict (keys among {', '.join(names)}) or a refimpl "
                        f"{cls.__name__}, got {_describe(given)}")
    unknown = sorted(set(given) - set(names), key=str)
    if unknown:
        raise ValueError(f"hyperparameters has unknown key(s) {unknown} for family={family!r}; "
                         f"the keys are {', '.join(names)}")
    values = dict(defaults, **given)
    try:
        cls(**({"vector_axes": (0,)} if family == "ndadam" else {}) | values)  # vector_axes: may come later
    except (TypeError, ValueError) as e:
        raise type(e)(f"hyperparameters={dict(given)!r} is not a valid {cls.__name__}: {e}") from None
    return values, False


def _number(x) -> str:
    if isinstance(x, Mapping):    # per parameter (or ND-Adam's vector_axes)
        return "{" + ", ".join(f"{k!r}: {_number(v)}" for k, v in x.items()) + "}"
    if isinstance(x, tuple):
        return repr(x)
    return repr(x) if isinstance(x, (numbers.Real, str)) or x is None else "<array>" if hasattr(x, "shape") else "<schedule>"


def _plus(a, b):
    """a + b for numbers, arrays or per-parameter dicts of them."""
    if isinstance(a, Mapping) or isinstance(b, Mapping):
        keys = a if isinstance(a, Mapping) else b
        return {k: _plus(a[k] if isinstance(a, Mapping) else a, b[k] if isinstance(b, Mapping) else b) for k in keys}
    return a + b


def _label(cls_name: str, shown: dict) -> str:
    return f"{cls_name}({', '.join(f'{k}={_number(v)}' for k, v in shown.items())})"


# ----------------------------------------------------------------------------- Adam


_EPS = {"after": "", "hat": "the TF1/Keras convention (epsilon hat)", "root": "epsilon inside the square root"}
_AMSGRAD = {None: "", "v": "AMSGrad on the raw v: the PyTorch/Keras convention",
            "v_hat": "AMSGrad on the bias-corrected v: the optax convention"}
_DECAY = {"none": "", "l2": "L2 weight decay in the gradient: torch.optim.Adam's weight_decay",
          "coupled": "decoupled weight decay scaled by lr: torch AdamW, optax adamw, Keras",
          "uncoupled": "decoupled weight decay not scaled by lr: Loshchilov & Hutter's paper"}
_T_OFFSET = {0: "", -1: "a step counter starting at 0 (bias corrections use t-1)",
             1: "a step counter one ahead (bias corrections use t+1)"}
_BASE = "Algorithm 1 of Kingma & Ba: the PyTorch/optax convention"


def _adam_grid(h: dict) -> list[Convention]:
    eps, wd = h["eps"], h["weight_decay"]
    plain = lambda x: isinstance(x, numbers.Real)  # noqa: E731 - arrays/schedules: keep every choice
    placements = ["after"] if plain(eps) and eps == 0 else ["after", "hat", "root"]
    decays = ["none"] if is_zero(wd) else ["l2", "coupled", "uncoupled"]
    swap_possible = plain(h["beta1"]) and plain(h["beta2"]) and h["beta1"] != h["beta2"]
    out = []
    for bias, swap in [(True, False), (False, False)] + ([(True, True)] if swap_possible else []):
        for placement, amsgrad, decay, t_offset in itertools.product(placements, [None, "v", "v_hat"], decays,
                                                                    [0, -1, 1]):
            beta1, beta2 = (h["beta2"], h["beta1"]) if swap else (h["beta1"], h["beta2"])
            would_v = not (plain(beta2) and beta2 == 0)                 # 1 - 0**t = 1: nothing to correct
            would = would_v or not (plain(beta1) and beta1 == 0)
            if not bias and not would:
                continue  # switching off a correction that is 1 changes nothing
            corrects_v, corrects = bias and would_v, bias and would
            if (not corrects_v and (placement == "hat" or amsgrad == "v_hat")) or (not corrects and t_offset != 0):
                continue  # identical to another entry when a bias correction is 1
            if swap and (amsgrad is not None or t_offset != 0):
                continue  # a mistake, tried on the plain conventions only
            options = {}
            if swap:
                options.update(beta1=h["beta2"], beta2=h["beta1"])
            if placement == "hat":
                options["eps_hat"] = True
            if placement == "root":
                options.update(eps=0.0, eps_root=_plus(h["eps"], h["eps_root"]))
            if not bias:
                options["bias_correction"] = False
            if amsgrad:
                options.update(amsgrad=True, amsgrad_max_of=amsgrad)
            if decay in ("coupled", "uncoupled"):
                options["decoupled_weight_decay"] = True
            if decay == "uncoupled":
                options["couple_weight_decay"] = False
            if t_offset:
                options["t_offset"] = t_offset
            shown = ({"weight_decay": wd} if decay != "none" else {}) | options
            if placement != "root" and not is_zero(h["eps_root"]):
                shown["eps_root"] = h["eps_root"]
            if "amsgrad_max_of" in shown and shown["amsgrad_max_of"] == "v":
                del shown["amsgrad_max_of"]  # the default
            pieces = [p for p in (_EPS[placement], "" if bias else "no bias correction", _AMSGRAD[amsgrad],
                                  _T_OFFSET[t_offset], "beta1 and beta2 swapped" if swap else "") if p]
            if not pieces:
                pieces = [_BASE]
            if placement != "root" and not is_zero(h["eps_root"]):
                pieces.append("eps_root inside the square root as well: optax's eps_root")
            if _DECAY[decay]:
                pieces.append(_DECAY[decay])
            out.append(Convention(_label("Adam", shown), "; ".join(pieces), Adam(**(h | options))))
    return out


# ----------------------------------------------------------------------------- SGD


def _sgd_description(opt: SGD) -> str:
    if is_zero(opt.momentum):
        pieces = ["plain gradient descent"]
    elif opt.nesterov:
        pieces = ["Nesterov momentum: PyTorch's nesterov=True"]
    elif not is_zero(opt.dampening):
        pieces = ["momentum with dampening (an average of the gradients when dampening = momentum)"]
    else:
        pieces = ["heavy-ball momentum, the buffer starting at g_1: the PyTorch/optax convention"]
    if not is_zero(opt.weight_decay):
        pieces.append("L2 weight decay in the gradient")
    return "; ".join(pieces)


def _sgd_label(opt: SGD) -> str:
    shown = {"momentum": opt.momentum, "dampening": opt.dampening, "nesterov": opt.nesterov,
             "weight_decay": opt.weight_decay}
    shown = {k: v for k, v in shown.items() if not (is_zero(v) or v is False)}
    return _label("SGD", shown)


def _sgd_grid(h: dict) -> list[Convention]:
    variants = [dict(h)]
    if not is_zero(h["momentum"]) and isinstance(h["momentum"], numbers.Real):
        if is_zero(h["dampening"]):
            variants.append(dict(h, nesterov=not h["nesterov"]))
            if not h["nesterov"]:
                variants.append(dict(h, dampening=h["momentum"] if h["momentum"] <= 1 else 1.0))
        elif not h["nesterov"]:
            variants.append(dict(h, dampening=0.0))
    out = []
    for v in variants:
        opt = SGD(**v)
        out.append(Convention(_sgd_label(opt), _sgd_description(opt), opt))
    return out


# ----------------------------------------------------------------------------- ND-Adam


_ND_SOURCES = {
    (True, False): "the paper's Algorithm 1: weight vectors normalized at the start, epsilon after the bias correction",
    (False, False): "the official TensorFlow code: no initial normalization, epsilon after the bias correction "
                    "(as the paper)",
    (False, True): "the official PyTorch code: no initial normalization, epsilon added to sqrt(v) before the bias "
                   "correction",
    (True, True): "epsilon as in the official PyTorch code with the paper's initial normalization (no published "
                  "source)",
}


def _ndadam_grid(h: dict) -> list[Convention]:
    plain_eps_zero = isinstance(h["eps"], numbers.Real) and h["eps"] == 0
    out = []
    for normalize, eps_hat in [(True, False), (False, False), (False, True), (True, True)]:
        if eps_hat and plain_eps_zero:
            continue  # with eps = 0 the two placements are one
        options = ({"normalize_at_start": True} if normalize else {}) | ({"eps_hat": True} if eps_hat else {})
        shown = {k: v for k, v in h.items() if k == "weight_decay_scalar" and not is_zero(v)} | options
        description = _ND_SOURCES[(normalize, eps_hat)]
        if not is_zero(h.get("weight_decay_scalar", 0.0)):
            description += "; L2 weight decay on the scalar parameters (the official PyTorch script's)"
        out.append(Convention(_label("NDAdam", shown), description, NDAdam(**(h | options))))
    return out


# ----------------------------------------------------------------------------- AdaL


_ADAL_BASE = ("the rule of AdaL's only available description (a third-party summary): one l1 norm over all "
              "parameters, epsilon in the preconditioner, lr / sqrt(t), bias correction")
_ADAL_CHOICES = {
    "norm": {"global": "", "per_tensor": "one l1 norm per array", "per_element": "|g| per element (GradPower, p = 2)"},
    "eps_mode": {"preconditioner": "", "denominator": "epsilon in Adam's denominator"},
    "lr_decay": {"inv_sqrt": "", "none": "a constant lr (no 1/sqrt(t) decay)"},
    "bias_correction": {True: "", False: "no bias correction"},
}


def _adal_grid(h: dict) -> list[Convention]:
    out = []
    for norm, eps_mode, lr_decay, bias in itertools.product(*(list(c) for c in _ADAL_CHOICES.values())):
        options = {k: v for k, v in (("norm", norm), ("eps_mode", eps_mode), ("lr_decay", lr_decay),
                                     ("bias_correction", bias)) if _ADAL_CHOICES[k][v]}
        pieces = [_ADAL_CHOICES[k][v] for k, v in options.items()]
        description = "; ".join(pieces) + " (otherwise the description's rule)" if pieces else _ADAL_BASE
        out.append(Convention(_label("AdaL", options), description, AdaL(**(h | options))))
    return out


def grid(family: str, h: dict) -> list[Convention]:
    """Every convention of ``family`` for the hyperparameters ``h``, the plainest first."""
    return {"adam": _adam_grid, "sgd": _sgd_grid, "ndadam": _ndadam_grid, "adal": _adal_grid}[family](h)


def differences(a: Optimizer, b: Optimizer) -> list[str]:
    """``["eps_hat=True (the reference has False)", ...]``: the fields where ``a`` differs from ``b``."""
    if type(a) is not type(b):
        return [f"{type(a).__name__} instead of {type(b).__name__}"]
    out = []
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        same = x is y or (not hasattr(x, "shape") and not hasattr(y, "shape") and not callable(x) and x == y)
        if not same:
            out.append(f"{f.name}={_number(x)} (the reference has {_number(y)})")
    return out


_QUIET = {"scalars": "exact", "compute_dtype": None}   # precision options shown only when not the default


def describe_hyperparameters(h: dict) -> str:
    return ", ".join(f"{k}={_number(v)}" for k, v in h.items() if not (k in _QUIET and v == _QUIET[k]))



# ----------------------------------------------------------------------------- precision conventions


_SCALARS = {"float32": "lr, betas and eps in float32, beta^t a float32 running product: TF1's AdamOptimizer, tinygrad",
            "float32_beta_powers": "beta^t from float32-rounded betas: Keras on TensorFlow, tf-keras"}
_LR32 = "lr rounded to float32: Keras's float32 learning-rate variable"
_OPMATH = "float32 arithmetic, results stored in the parameters' dtype (the opmath of PyTorch's fused Adam)"


def _with(conv: Convention, label_extra: dict, description: str, **changes) -> Convention:
    opt = dataclasses.replace(conv.optimizer, **changes)
    shown = ", ".join(f"{k}={v}" for k, v in label_extra.items())
    label = conv.label[:-1] + ("" if conv.label.endswith("()") else ", ") + shown + ")"
    return Convention(label, f"{conv.description}; {description}", opt)


def scalar_variants(conv: Convention) -> list[Convention]:
    """The precision conventions of a wide (float64) run: ``conv`` with its scalars in float32,
    with beta^t from float32 betas, and with lr rounded to float32, alone and together."""
    opt = conv.optimizer
    if not isinstance(opt, Adam):
        return []
    lr = opt.lr
    lr32 = float(__import__("numpy").float32(lr)) if isinstance(lr, float) else lr
    out = []
    for scalars in ("float32", "float32_beta_powers"):
        out.append(_with(conv, {"scalars": repr(scalars)}, _SCALARS[scalars], scalars=scalars))
    if isinstance(lr, float) and lr32 != lr:
        out.append(_with(conv, {"lr": f"float32({lr!r})"}, _LR32, lr=lr32))
        out.append(_with(conv, {"lr": f"float32({lr!r})", "scalars": "'float32_beta_powers'"},
                         f"{_LR32}; {_SCALARS['float32_beta_powers']}", lr=lr32, scalars="float32_beta_powers"))
    return out


def compute_variants(conventions: list[Convention]) -> list[Convention]:
    """Every convention again with float32 arithmetic (for float16 and bfloat16 runs)."""
    return [_with(c, {"compute_dtype": "'float32'"}, _OPMATH, compute_dtype="float32")
            for c in conventions if any(f.name == "compute_dtype" for f in dataclasses.fields(c.optimizer))]
