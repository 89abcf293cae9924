"""Adapters that turn other libraries' optimizers into candidates (``init`` and ``step``).

Each adapter imports its library only when called; a missing library raises ``ImportError``
saying what to install. Every adapter also declares ``hyperparameters`` (the numbers it
computes with, read from the library after construction; per parameter where param groups or
masks give parameters different values) and ``family`` (``"adam"``/``"sgd"``, or None: then
:func:`~refimpl.testing.diagnose` decides), so that diagnose builds its grid on the right numbers.

The candidate protocol is pure on the outside: ``step`` receives NumPy parameters and
gradients and returns new NumPy parameters; the peer's own state (a PyTorch optimizer, an optax
state, a Keras optimizer) travels as the opaque ``state``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .._core import _SINGLE, _describe

__all__ = ["from_torch", "from_optax", "from_keras", "from_step"]

PEERS_EXTRA = "pip install 'refimpl[peers]'"


def _require(module: str, adapter: str, install: str = PEERS_EXTRA):
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f"{adapter} needs {module}, which cannot be imported here ({e}); install it with "
                          f"`{install}`") from None


def _flat(tree) -> dict:
    return dict(tree) if isinstance(tree, Mapping) else {_SINGLE: tree}


def _unflat(flat: dict, like) -> Any:
    return dict(flat) if isinstance(like, Mapping) else flat[_SINGLE]


def _jax_x64_for(tree):
    """float64 arrays need JAX's x64 mode: a context that switches it on for one call only,
    never globally (a no-op context for float32)."""
    if any(np.asarray(x).dtype == np.float64 for x in _flat(tree).values()):
        import jax
        return jax.enable_x64(True)
    return contextlib.nullcontext()


def _call(kwargs: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


def _number(x) -> float:
    """A Python float from a peer's scalar (a float, an int, a 0-d tensor...)."""
    return float(np.asarray(x))


# ----------------------------------------------------------------------------- from_step


@dataclasses.dataclass(frozen=True, eq=False)
class StepCandidate:
    """A candidate made of plain functions (see :func:`from_step`)."""

    fn: Callable
    init_fn: Callable | None = None
    hyperparameters: dict | None = None
    family: str | None = None
    name: str = ""

    def init(self, params):
        return None if self.init_fn is None else self.init_fn(params)

    def step(self, params, grads, state):
        return self.fn(params, grads, state)


def from_step(fn: Callable, init: Callable | None = None, *, hyperparameters: Mapping | None = None,
              family: str | None = None, name: str | None = None) -> StepCandidate:
    """A candidate from a function ``fn(params, grads, state) -> (params, state)``.

    ``init(params) -> state`` makes the first state (default: the state is ``None`` at the
    first step, as in CS231n-style ``adam(w, dw, config=None)``). ``hyperparameters`` (e.g.
    ``{"lr": 1e-2, "beta1": 0.9}``) and ``family`` tell :func:`diagnose` what to build its grid
    on; ``name`` is how reports call it (default: the function's name).

    >>> import numpy as np
    >>> from refimpl.testing import from_step
    >>> sgd = from_step(lambda p, g, s: (p - 0.1 * g, s), hyperparameters={"lr": 0.1}, family="sgd")
    >>> p, s = sgd.step(np.ones(2), np.ones(2), sgd.init(np.ones(2)))
    >>> p
    array([0.9, 0.9])
    """
    if not callable(fn):
        raise TypeError(f"fn must be a function fn(params, grads, state) -> (params, state), got {_describe(fn)}")
    if init is not None and not callable(init):
        raise TypeError(f"init must be a function params -> state (or None), got {_describe(init)}; to start "
                        f"from a fixed state use init=lambda params: state")
    if hyperparameters is not None and not isinstance(hyperparameters, Mapping):
        raise TypeError(f"hyperparameters must be a dict such as {{'lr': 0.01}}, got {_describe(hyperparameters)}")
    if family is not None and family not in ("adam", "sgd", "ndadam", "adal"):
        raise ValueError(f"family={family!r} must be 'adam', 'sgd', 'ndadam', 'adal' or None (diagnose then "
                         f"decides from the trajectory)")
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name must be a string, got {_describe(name)}")
    label = name or f"from_step({getattr(fn, '__qualname__', None) or type(fn).__name__})"
    return StepCandidate(fn, init, None if hyperparameters is None else dict(hyperparameters), family, label)


# ----------------------------------------------------------------------------- PyTorch


def _to_torch(x):
    """A NumPy array as a torch tensor of the same dtype (bfloat16 through float32, exactly)."""
    import torch
    a = np.asarray(x)
    if str(a.dtype) == "bfloat16":
        return torch.tensor(a.astype(np.float32)).to(torch.bfloat16)
    return torch.tensor(a)


def _from_torch(t):
    import torch
    t = t.detach()
    if t.dtype == torch.bfloat16:
        import ml_dtypes
        return t.to(torch.float32).numpy().astype(ml_dtypes.bfloat16)
    return t.numpy().copy()


def _class_name(cls, package: str) -> str:
    """``torch.optim.Adam`` where the package exports the class, else its defining module."""
    top = __import__(cls.__module__.split(".")[0])
    for path in ([package] if package else []) + [top.__name__]:
        module = importlib.import_module(path)
        if getattr(module, cls.__name__, None) is cls:
            return f"{path}.{cls.__name__}"
    return f"{cls.__module__}.{cls.__qualname__}"


@dataclasses.dataclass(frozen=True, eq=False)
class TorchCandidate:
    """A ``torch.optim`` optimizer class and its keyword arguments (see :func:`from_torch`)."""

    optimizer_class: type
    kwargs: dict
    hyperparameters: dict | None
    family: str | None
    name: str
    param_groups: tuple | None = None   # ({"params": [names], option: value, ...}, ...)

    def init(self, params):
        import torch
        flat = _flat(params)
        tensors = {k: torch.nn.Parameter(_to_torch(x)) for k, x in flat.items()}
        if self.param_groups is None:
            return self.optimizer_class(list(tensors.values()), **self.kwargs), tensors
        named = [name for group in self.param_groups for name in group["params"]]
        missing, unknown = sorted(set(flat) - set(named)), sorted(set(named) - set(flat))
        if missing or unknown:
            raise ValueError(f"the param groups name {sorted(named)} but params has keys {sorted(flat)}: "
                             f"in no group {missing}, not in params {unknown}")
        groups = [dict(group, params=[tensors[k] for k in group["params"]]) for group in self.param_groups]
        return self.optimizer_class(groups, **self.kwargs), tensors

    def step(self, params, grads, state):
        import torch
        opt, tensors = state
        g = _flat(grads)
        with torch.no_grad():
            for k, x in _flat(params).items():
                tensors[k].copy_(_to_torch(x))
        for k, p in tensors.items():
            p.grad = _to_torch(g[k])
        opt.step()
        return _unflat({k: _from_torch(p) for k, p in tensors.items()}, params), state


def _torch_numbers(torch, optimizer_class, group: dict) -> tuple[str | None, dict | None]:
    """``(family, hyperparameters)`` that one filled-in param group of ``optimizer_class`` declares."""
    betas = group.get("betas")
    numbers = {name: group[name] for name in ("lr", "eps", "weight_decay") if isinstance(group.get(name), (int, float))}
    if issubclass(optimizer_class, torch.optim.Adam) and betas is not None and len(betas) == 2:
        return "adam", {"lr": _number(group["lr"]), "beta1": _number(betas[0]), "beta2": _number(betas[1]),
                        "eps": _number(group["eps"]), "eps_root": 0.0, "weight_decay": _number(group["weight_decay"])}
    if issubclass(optimizer_class, torch.optim.SGD):
        return "sgd", {"lr": _number(group["lr"]), "momentum": _number(group["momentum"]),
                       "dampening": _number(group["dampening"]), "weight_decay": _number(group["weight_decay"]),
                       "nesterov": bool(group["nesterov"])}
    if isinstance(betas, (tuple, list)) and len(betas) == 2 and "lr" in numbers:
        # Another optimizer with Adam's two betas (torch.optim.NAdam, pytorch_optimizer's Lamb, the official
        # ND-Adam code, ...): its numbers are what a convention would be built on, and diagnose says how far it is.
        return None, {"lr": _number(group["lr"]), "beta1": _number(betas[0]), "beta2": _number(betas[1]),
                      "eps": _number(numbers.get("eps", 1e-8)), "eps_root": 0.0,
                      "weight_decay": _number(numbers.get("weight_decay", 0.0))}
    if "lr" in numbers:
        # Three betas (Adan), or none: only the numbers that mean the same in Adam are declared.
        return None, {"lr": _number(group["lr"])} | ({"eps": _number(numbers["eps"])} if "eps" in numbers else {})
    return None, None


def _per_parameter(groups: list[tuple[list, dict]]) -> dict:
    """One declaration from the groups' declarations: a number where every group has the same, else
    a dict keyed by parameter name (refimpl's per-parameter hyperparameters)."""
    out = {}
    for key in groups[0][1]:
        values = {name: h[key] for names, h in groups for name in names}
        distinct = set(values.values())
        out[key] = distinct.pop() if len(distinct) == 1 else values
    return out


def _check_groups(param_groups) -> tuple:
    hint = ("param_groups must be a list of dicts like torch's, with parameter names for the tensors: "
            "[{'params': ['w']}, {'params': ['b'], 'weight_decay': 0.0}]")
    if not isinstance(param_groups, (list, tuple)) or not param_groups:
        raise TypeError(f"{hint}; got {_describe(param_groups)}")
    seen = set()
    for i, group in enumerate(param_groups):
        if not isinstance(group, Mapping) or "params" not in group:
            raise TypeError(f"{hint}; param_groups[{i}] is {_describe(group)}")
        names = group["params"]
        if isinstance(names, str) or not isinstance(names, (list, tuple)) or not names or \
                not all(isinstance(n, str) and n for n in names):
            raise TypeError(f"{hint}; param_groups[{i}]['params'] is {_describe(names)}")
        twice = sorted(seen & set(names))
        if twice:
            raise ValueError(f"param_groups name {twice} in more than one group")
        seen |= set(names)
    return tuple(dict(g, params=list(g["params"])) for g in param_groups)


def from_torch(optimizer_class, param_groups=None, /, **kwargs) -> TorchCandidate:
    """A candidate from a PyTorch optimizer class and its keyword arguments.

    ``from_torch(torch.optim.AdamW, lr=1e-2, weight_decay=0.1)`` builds a fresh optimizer over
    tensors of the params' dtype at ``init`` and runs ``optimizer.step()`` at every step, with
    the gradient in ``.grad``. The keyword arguments are checked at once, by PyTorch.

    ``param_groups`` are torch's param groups with the parameters named by their keys in the
    params dict: ``from_torch(torch.optim.AdamW, [{"params": ["w"]}, {"params": ["b"],
    "weight_decay": 0.0}], lr=1e-2, weight_decay=0.1)``. A number that differs between groups is
    declared per parameter (``weight_decay={"w": 0.1, "b": 0.0}``), which refimpl's optimizers
    take as they are.
    """
    torch = _require("torch", "from_torch")
    if not (inspect.isclass(optimizer_class) and issubclass(optimizer_class, torch.optim.Optimizer)):
        hint = (" (an instance: give the class and its keyword arguments)"
                if isinstance(optimizer_class, torch.optim.Optimizer) else "")
        raise TypeError(f"optimizer_class must be a torch.optim.Optimizer subclass such as torch.optim.Adam, "
                        f"got {_describe(optimizer_class)}{hint}")
    if "params" in kwargs:
        raise TypeError("from_torch makes the parameters itself; do not pass params=")
    groups = None if param_groups is None else _check_groups(param_groups)
    dummy = lambda: torch.zeros(1, dtype=torch.float64, requires_grad=True)  # noqa: E731
    spec = [{"params": [dummy()]}] if groups is None else \
        [dict(g, params=[dummy() for _ in g["params"]]) for g in groups]
    try:
        probe = optimizer_class(spec, **kwargs)
    except Exception as e:  # noqa: BLE001 - PyTorch raises TypeError, ValueError, ...
        raise type(e)(f"{optimizer_class.__name__}({_call(kwargs)}) was rejected by PyTorch: {e}") from None
    found = [_torch_numbers(torch, optimizer_class, group) for group in probe.param_groups]
    family, hyper = found[0]
    if groups is not None and hyper is not None:
        hyper = _per_parameter([(g["params"], h) for g, (_, h) in zip(groups, found)])
    name = f"{_class_name(optimizer_class, 'torch.optim')}({_groups_text(groups)}{_call(kwargs)})"
    return TorchCandidate(optimizer_class, dict(kwargs), hyper, family, name, groups)


def _groups_text(groups) -> str:
    if groups is None:
        return ""
    return "[" + ", ".join("{" + _call(g) + "}" for g in groups) + "]" + ", "


# ----------------------------------------------------------------------------- optax


_OPTAX_FAMILIES = {"adam": "adam", "adamw": "adam", "amsgrad": "adam", "nadam": "adam", "nadamw": "adam",
                   "sgd": "sgd"}
_OPTAX_NAMES = {"learning_rate": "lr", "b1": "beta1", "b2": "beta2", "eps": "eps", "eps_root": "eps_root",
                "weight_decay": "weight_decay", "momentum": "momentum", "nesterov": "nesterov"}


@dataclasses.dataclass(frozen=True, eq=False)
class OptaxCandidate:
    """An optax ``GradientTransformation`` (see :func:`from_optax`)."""

    transformation: Any
    hyperparameters: dict | None
    family: str | None
    name: str
    per_parameter: Callable | None = None    # params -> hyperparameters, for masks and labels given as functions

    def hyperparameters_for(self, params):
        """The declared hyperparameters for these params (a mask or label function evaluated on them)."""
        return self.hyperparameters if self.per_parameter is None else self.per_parameter(params)

    def _precision(self, tree):
        return _jax_x64_for(tree)

    def init(self, params):
        import jax.numpy as jnp
        with self._precision(params):
            return self.transformation.init(_unflat({k: jnp.asarray(x) for k, x in _flat(params).items()}, params))

    def step(self, params, grads, state):
        import jax.numpy as jnp
        import optax
        with self._precision(params):
            p = _unflat({k: jnp.asarray(x) for k, x in _flat(params).items()}, params)
            g = _unflat({k: jnp.asarray(x) for k, x in _flat(grads).items()}, params)
            updates, state = self.transformation.update(g, state, p)
            new = optax.apply_updates(p, updates)
            return _unflat({k: np.asarray(x) for k, x in _flat(new).items()}, params), state


def _optax_name(optax, factory) -> str:
    for name, value in vars(optax).items():
        if value is factory:
            return name
    return getattr(factory, "__name__", None) or getattr(getattr(factory, "func", None), "__name__", "transform")


def from_optax(transformation, /, *, hyperparameters: Mapping | None = None, **kwargs) -> OptaxCandidate:
    """A candidate from an optax transformation, or from an optax factory and its arguments.

    * ``from_optax(optax.adam(1e-2))``: the transformation as it is. optax does not say which
      numbers it was built with: pass ``hyperparameters={"lr": 1e-2, ...}`` for
      :func:`diagnose`, or use the second form.
    * ``from_optax(optax.adam, learning_rate=1e-2, b1=0.9)``: the adapter builds the
      transformation and knows its hyperparameters (those not given take the factory's defaults).
      A ``mask`` (``optax.adamw(..., mask={"w": True, "b": False})``, or a function of the params)
      declares the weight decay per parameter: its value where the mask is True, 0 elsewhere.
    * ``from_optax(optax.multi_transform, transforms={"decay": from_optax(optax.adamw, ...),
      "none": from_optax(optax.adam, ...)}, param_labels={"w": "decay", "b": "none"})``: each
      label's transformation, and the hyperparameters of each parameter from its label's.

    float64 parameters run under ``jax.enable_x64(True)`` for each call only.
    """
    optax = _require("optax", "from_optax")
    _require("jax", "from_optax")
    is_tx = callable(getattr(transformation, "init", None)) and callable(getattr(transformation, "update", None))
    if hyperparameters is not None and not isinstance(hyperparameters, Mapping):
        raise TypeError(f"hyperparameters must be a dict such as {{'lr': 0.01}}, got {_describe(hyperparameters)}")
    if is_tx:
        if kwargs:
            raise TypeError(f"keyword arguments ({_call(kwargs)}) go with a factory, as in "
                            f"from_optax(optax.adam, learning_rate=0.01); this is a built transformation")
        family = None
        hyper = None if hyperparameters is None else dict(hyperparameters)
        return OptaxCandidate(transformation, hyper, family, "optax transformation")
    if not callable(transformation):
        raise TypeError(f"transformation must be an optax GradientTransformation (optax.adam(1e-3)) or a factory "
                        f"(optax.adam) with its keyword arguments, got {_describe(transformation)}")
    name = _optax_name(optax, transformation)
    if transformation in (getattr(optax, "multi_transform", None), getattr(optax, "partition", None)):
        return _multi_transform(optax, hyperparameters, kwargs)
    try:
        bound = inspect.signature(transformation).bind(**kwargs)
    except TypeError as e:
        raise TypeError(f"optax.{name}({_call(kwargs)}): {e}") from None
    try:
        tx = transformation(**kwargs)
    except Exception as e:  # noqa: BLE001
        raise type(e)(f"optax.{name}({_call(kwargs)}) raised: {e}") from None
    bound.apply_defaults()
    values = {_OPTAX_NAMES[k]: v for k, v in bound.arguments.items() if k in _OPTAX_NAMES}
    family = _OPTAX_FAMILIES.get(name)
    hyper = dict(hyperparameters) if hyperparameters is not None else None
    if hyper is None and family == "adam" and all(isinstance(v, (int, float)) for v in values.values()):
        hyper = {k: float(values.get(k, d)) for k, d in
                 (("lr", 1e-3), ("beta1", 0.9), ("beta2", 0.999), ("eps", 1e-8), ("eps_root", 0.0),
                  ("weight_decay", 0.0))}
    elif hyper is None and family == "sgd":
        momentum = values.get("momentum")
        hyper = {"lr": float(values["lr"]), "momentum": float(momentum or 0.0), "dampening": 0.0,
                 "weight_decay": 0.0, "nesterov": bool(values.get("nesterov", False))}
    mask = bound.arguments.get("mask")
    per_parameter = None
    if mask is not None and hyperparameters is None and hyper is not None and "weight_decay" in hyper:
        # optax.adamw(..., mask=...): the decay applies where the mask is True (optax.masked).
        per_parameter = functools.partial(_masked_decay, hyper, mask)
        hyper = per_parameter(None) if not callable(mask) else None
    return OptaxCandidate(tx, hyper, family, f"optax.{name}({_call(kwargs)})", per_parameter)


def _masked_decay(hyper: dict, mask, params) -> dict:
    """``hyper`` with its weight decay where ``mask`` (a tree of booleans like the params, or a
    function of the params giving one) is True and 0 elsewhere: per parameter."""
    tree = mask(params) if callable(mask) else mask
    if not isinstance(tree, Mapping):
        return dict(hyper, weight_decay=hyper["weight_decay"] if bool(tree) else 0.0)
    return dict(hyper, weight_decay={k: hyper["weight_decay"] if bool(on) else 0.0 for k, on in tree.items()})


def _multi_transform(optax, hyperparameters, kwargs) -> OptaxCandidate:
    """``from_optax(optax.multi_transform, transforms={label: from_optax(...)}, param_labels=...)``:
    each label's transformation, and its declared hyperparameters for the parameters it labels."""
    transforms, labels = kwargs.get("transforms"), kwargs.get("param_labels")
    if not isinstance(transforms, Mapping) or labels is None:
        raise TypeError("from_optax(optax.multi_transform, transforms={label: ...}, param_labels=...) needs both "
                        "arguments; give each transform as from_optax(optax.adamw, ...) so that its "
                        "hyperparameters are known")
    inner = {label: t.transformation if isinstance(t, OptaxCandidate) else t for label, t in transforms.items()}
    declared = {label: t.hyperparameters_for if isinstance(t, OptaxCandidate) else None
                for label, t in transforms.items()}
    try:
        tx = optax.multi_transform(inner, labels, **{k: v for k, v in kwargs.items()
                                                     if k not in ("transforms", "param_labels")})
    except Exception as e:  # noqa: BLE001
        raise type(e)(f"optax.multi_transform(...) raised: {e}") from None
    families = {t.family for t in transforms.values() if isinstance(t, OptaxCandidate)}
    family = families.pop() if len(families) == 1 else None
    names = ", ".join(f"{label!r}: {t.name if isinstance(t, OptaxCandidate) else 'a transformation'}"
                      for label, t in transforms.items())
    per_parameter = None
    if hyperparameters is None and all(d is not None for d in declared.values()):
        per_parameter = functools.partial(_labelled, declared, labels)
    hyper = dict(hyperparameters) if hyperparameters is not None else \
        (per_parameter(None) if per_parameter is not None and not callable(labels) else None)
    return OptaxCandidate(tx, hyper, family, f"optax.multi_transform({{{names}}}, param_labels={labels!r})",
                          per_parameter)


def _labelled(declared: dict, labels, params) -> dict | None:
    """Per-parameter hyperparameters from each label's declaration (a number where all agree)."""
    tree = labels(params) if callable(labels) else labels
    if not isinstance(tree, Mapping):
        return declared[tree](params)
    groups = []
    for key, label in tree.items():
        h = declared[label](None if params is None else {key: params[key]})
        if h is None:
            return None
        groups.append(([key], _flat_per_key(h, key)))
    if len({frozenset(h) for _, h in groups}) > 1:
        return None   # transforms of different families: nothing common to declare
    return _per_parameter(groups)


def _flat_per_key(h: dict, key: str) -> dict:
    """One parameter's values of a declaration whose values may be per parameter."""
    return {name: (v[key] if isinstance(v, Mapping) else v) for name, v in h.items()}


# ----------------------------------------------------------------------------- Keras


@dataclasses.dataclass(frozen=True, eq=False)
class KerasCandidate:
    """A Keras 3 optimizer class and its keyword arguments (see :func:`from_keras`)."""

    optimizer_class: type
    kwargs: dict
    hyperparameters: dict | None
    family: str | None
    name: str

    def _precision(self, tree):
        import keras
        return _jax_x64_for(tree) if keras.backend.backend() == "jax" else contextlib.nullcontext()

    def init(self, params):
        import keras
        with self._precision(params):
            variables = {k: keras.Variable(np.asarray(x), dtype=str(np.asarray(x).dtype), name=f"p{i}")
                         for i, (k, x) in enumerate(_flat(params).items())}
            opt = self.optimizer_class(**self.kwargs)
            opt.build(list(variables.values()))
        return opt, variables

    def step(self, params, grads, state):
        import keras
        opt, variables = state
        with self._precision(params):
            g = _flat(grads)
            for k, x in _flat(params).items():
                variables[k].assign(np.asarray(x))
            pairs = [(keras.ops.convert_to_tensor(np.asarray(g[k]), dtype=str(np.asarray(g[k]).dtype)), v)
                     for k, v in variables.items()]
            opt.apply_gradients(pairs)
            out = {k: np.array(np.asarray(v.value), copy=True) for k, v in variables.items()}
        return _unflat(out, params), state


def from_keras(optimizer_class, /, **kwargs) -> KerasCandidate:
    """A candidate from a Keras 3 optimizer class and its keyword arguments.

    Keras picks its backend when first imported: set ``KERAS_BACKEND=jax`` (or ``torch``)
    before that. Keras keeps the learning rate in a float32 variable, whatever the dtype of the
    parameters; the declared ``hyperparameters`` hold that float32 value, which is what Keras
    computes with (``1e-3`` becomes ``0.0010000000474974513``).
    """
    module = getattr(optimizer_class, "__module__", "") or ""
    if module.startswith(("tf_keras", "tensorflow")) or getattr(optimizer_class, "__module__", "").startswith("keras.src.optimizers.legacy"):
        raise TypeError(f"from_keras takes Keras 3 optimizers; {module}.{getattr(optimizer_class, '__name__', '?')} is a "
                        f"tf-keras (Keras 2) or TensorFlow optimizer, which runs only on TensorFlow (not a refimpl "
                        f"peer). Its Adam computes refimpl.Adam(eps_hat=True, eps=1e-7, lr=float32(lr), "
                        f"scalars='float32_beta_powers'); to test it, run it yourself and wrap its step with "
                        f"refimpl.testing.from_step")
    keras = _require("keras", "from_keras", "pip install keras (and set KERAS_BACKEND=jax or torch before "
                                           "importing it)")
    if not (inspect.isclass(optimizer_class) and issubclass(optimizer_class, keras.optimizers.Optimizer)):
        raise TypeError(f"optimizer_class must be a keras.optimizers.Optimizer subclass such as "
                        f"keras.optimizers.Adam, got {_describe(optimizer_class)}")
    try:
        probe = optimizer_class(**kwargs)
    except Exception as e:  # noqa: BLE001
        raise type(e)(f"{optimizer_class.__name__}({_call(kwargs)}) was rejected by Keras: {e}") from None
    lr = _number(np.asarray(getattr(probe.learning_rate, "value", probe.learning_rate)))
    family = hyper = None
    wd = 0.0 if probe.weight_decay is None else float(probe.weight_decay)
    if isinstance(probe, keras.optimizers.Adam):
        family = "adam"
        hyper = {"lr": lr, "beta1": float(probe.beta_1), "beta2": float(probe.beta_2), "eps": float(probe.epsilon),
                 "eps_root": 0.0, "weight_decay": wd}
    elif isinstance(probe, keras.optimizers.SGD):
        family = "sgd"
        hyper = {"lr": lr, "momentum": float(probe.momentum), "dampening": 0.0, "weight_decay": wd,
                 "nesterov": bool(probe.nesterov)}
    if hyper is not None and family == "adam" and keras.backend.backend() == "tensorflow":
        hyper["scalars"] = "float32_beta_powers"   # tf.cast(beta_1, variable.dtype) goes through float32
    name = f"keras.optimizers.{optimizer_class.__name__}({_call(kwargs)})"
    return KerasCandidate(optimizer_class, dict(kwargs), hyper, family, name)
