"""What every optimizer shares: parameter trees, hyperparameters, validation.

An optimizer in refimpl is a frozen dataclass of hyperparameters with two pure methods,
``init(params) -> state`` and ``step(params, grads, state) -> (params, state)``.  This module
holds the machinery around the update formulas, so that each algorithm's module can be read
as its paper's algorithm box:

* ``params`` and ``grads`` are one floating array or a ``dict`` of them (a *tree*); the state
  holds each moment in the same structure.
* Hyperparameters are Python numbers, arrays that broadcast against the parameters (a batch of
  configurations), or, where allowed, callables of the 1-based step ``t`` (a schedule). Any of
  them may instead be a dict keyed like the parameters, one value (of those forms) per
  parameter: weight decay on the weights and none on the biases. The optimizer then steps each
  parameter as the configuration holding its values (:meth:`Optimizer._update_keyed`); which
  hyperparameters are per parameter is decided once, at construction, so an optimizer without
  any pays nothing for the possibility.
* Every check runs before anything is computed, so bad input raises a ``ValueError`` or
  ``TypeError`` naming the argument and its value and leaves inputs and state untouched.
* The checks of *structure* (keys, array types, shapes, dtypes, one library, broadcasting) depend
  only on a signature of the call, so each optimizer remembers the signatures that passed and
  skips those checks when one comes again; the checks of *values* run at every step. A step on
  small arrays then costs little more than its arithmetic.

The array namespace comes from the inputs (``array_api_compat.array_namespace``), never from a
global: the same code runs on NumPy, CuPy, array-api-strict and any array-API library.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping
from typing import Any, ClassVar, NamedTuple

import array_api_compat

from . import _precision

__all__ = ["Optimizer", "Tree", "Hyper"]

Tree = Any  # one array, or a dict name -> array
Hyper = Any  # a real number, an array broadcasting against the parameters, a callable of t, or a dict of these

_SINGLE = ""  # the key under which a lone array travels inside the machinery


# ----------------------------------------------------------------------------- trees


def _is_array(x) -> bool:
    return not isinstance(x, (bool, int, float, complex)) and array_api_compat.is_array_api_obj(x)


def _name(arg: str, key: str) -> str:
    """How a leaf is called in error messages: ``params`` or ``params['w']``."""
    return arg if key == _SINGLE else f"{arg}[{key!r}]"


def _describe(x) -> str:
    if _is_array(x):
        return f"an array of shape {tuple(x.shape)} and dtype {x.dtype}"
    text = repr(x)
    return f"{text if len(text) <= 80 else text[:77] + '...'} (of type {type(x).__name__})"


def _state_arrays(state) -> dict:
    """The arrays of a state-like object, by field, for the one-library check (best effort:
    a malformed state is reported later, by the state check)."""
    found = {}
    for field in getattr(state, "_fields", ())[1:]:
        tree = getattr(state, field)
        if _is_array(tree):
            found[f"state.{field}"] = {_SINGLE: tree}
        elif isinstance(tree, Mapping):
            found[f"state.{field}"] = {k: x for k, x in tree.items() if isinstance(k, str) and _is_array(x)}
    return found


def leaves(tree: Tree, arg: str) -> dict[str, Any]:
    """Flatten a tree to ``{key: array}``; a lone array gets the key ``""``."""
    if isinstance(tree, Mapping):
        if len(tree) == 0:
            raise ValueError(f"{arg} is an empty dict; give at least one array")
        for key, x in tree.items():
            if not isinstance(key, str) or key == _SINGLE:
                raise TypeError(f"{arg} has a key {key!r}; keys must be non-empty strings")
            if not _is_array(x):
                raise TypeError(f"{_name(arg, key)} must be an array, got {_describe(x)}")
        return dict(tree)
    if not _is_array(tree):
        raise TypeError(f"{arg} must be an array or a dict of arrays, got {_describe(tree)}")
    return {_SINGLE: tree}


def unflatten(flat: Mapping[str, Any] | None, like: Mapping[str, Any]) -> Tree:
    """Rebuild the structure of ``like`` (the output of :func:`leaves`) around ``flat``."""
    if flat is None:
        return None
    if len(like) == 1 and _SINGLE in like:
        return flat[_SINGLE]
    return {key: flat[key] for key in like if key in flat}


def is_floating(x) -> bool:
    xp = array_api_compat.array_namespace(x)
    try:
        return xp.isdtype(x.dtype, "real floating")
    except TypeError:  # a NumPy extension dtype that NumPy does not classify: ml_dtypes' bfloat16
        return is_extension_float(x.dtype)


def is_extension_float(dtype) -> bool:
    """True for the real floating dtypes of ``ml_dtypes`` (bfloat16, ...), which NumPy calls kind 'V'."""
    return getattr(getattr(dtype, "type", None), "__module__", "").startswith("ml_dtypes") and \
        str(dtype).startswith(("bfloat", "float"))


def namespace(**named_trees):
    """The one array namespace of every array in ``named_trees``, or a ``TypeError`` naming them."""
    arrays, names = [], []
    for arg, flat in named_trees.items():
        for key, x in flat.items():
            arrays.append(x)
            names.append(_name(arg, key))
    modules = {}
    for name, x in zip(names, arrays):
        modules.setdefault(array_api_compat.array_namespace(x).__name__, name)
    if len(modules) > 1:
        found = ", ".join(f"{name} is a {module} array" for module, name in modules.items())
        raise TypeError(f"arrays from different libraries in one call: {found}; convert them to one library first")
    return array_api_compat.array_namespace(*arrays)


# ----------------------------------------------------------------------------- hyperparameters


class Interval(NamedTuple):
    """A closed or half-open real interval, for validating a hyperparameter."""

    low: float
    high: float
    low_closed: bool = True
    high_closed: bool = False

    def __str__(self) -> str:
        left = "[" if self.low_closed else "("
        right = "]" if self.high_closed else ")"
        return f"{left}{self.low:g}, {self.high:g}{right}"

    def contains(self, x):
        above = (x >= self.low) if self.low_closed else (x > self.low)
        below = (x <= self.high) if self.high_closed else (x < self.high)
        return above & below


NONNEGATIVE = Interval(0.0, math.inf)
UNIT = Interval(0.0, 1.0)  # [0, 1): the decay rates


def check_value(name: str, value, interval: Interval, *, at_step: int | None = None) -> None:
    """Raise ``ValueError``/``TypeError`` unless ``value`` is a finite real number or floating
    array with every element in ``interval``."""
    where = f" (the value of {name}(t) at t={at_step})" if at_step is not None else ""
    if isinstance(value, bool) or not (isinstance(value, numbers.Real) or _is_array(value)):
        raise TypeError(f"{name} must be a real number or a floating array{where}, got {_describe(value)}")
    if isinstance(value, numbers.Real):
        if not (math.isfinite(value) and interval.contains(value)):
            raise ValueError(f"{name}={value!r}{where} must be finite and in {interval}")
        return
    xp = array_api_compat.array_namespace(value)
    if not xp.isdtype(value.dtype, "real floating"):
        raise TypeError(f"{name} must have a real floating dtype{where}, got {_describe(value)}")
    ok = xp.isfinite(value) & interval.contains(value)
    if not bool(xp.all(ok)):
        bad = value[~ok] if value.ndim > 0 else value
        first = float(bad[0]) if bad.ndim > 0 else float(bad)
        raise ValueError(f"{name} must be finite and in {interval}{where}; it has {bad.shape[0] if bad.ndim else 1} "
                         f"element(s) outside, the first is {first!r} ({_describe(value)})")


def cast_like(h, x, xp):
    """An array hyperparameter in the dtype of the parameter ``x`` (numbers stay numbers),
    so that a float32 run stays float32 whatever dtype the sweep's arrays were made in."""
    if type(h) is float or type(h) is int:  # the common case, first: a step on small arrays is all overhead
        return h
    if getattr(h, "ndim", 0) > 0 and getattr(h, "dtype", None) == x.dtype:
        return h  # a sweep's array, already in x's dtype: astype(copy=False) would return it as is
    if isinstance(h, numbers.Real) and not _is_array(h):
        # A NumPy scalar (np.float64(0.1), or a schedule's return value) is not a "weak" Python
        # number: under NumPy 2 it would promote a float32 run to float64. Its exact value, as a
        # Python number, takes the parameters' dtype like any other number.
        return int(h) if isinstance(h, numbers.Integral) else float(h)
    return xp.astype(h, x.dtype, copy=False) if _is_array(h) else h  # no copy when the dtype is x's


def is_zero(h) -> bool:
    """True for the number 0 (arrays and schedules are never skipped)."""
    if type(h) is float or type(h) is int:
        return h == 0
    return isinstance(h, numbers.Real) and not isinstance(h, bool) and h == 0


# ----------------------------------------------------------------------------- the optimizer


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class Optimizer:
    """Base of every optimizer: validation and tree plumbing around ``_update``.

    Subclasses declare their hyperparameters as dataclass fields and define

    * ``State``: a ``NamedTuple`` whose first field is ``t`` and whose others are moments;
    * ``_HYPERS``: ``{field: (Interval, schedulable)}`` for every numeric hyperparameter;
    * ``_moment_shapes(key, p)``: ``{moment: shape or None}`` for one parameter;
    * ``_update(params, grads, state_flat, t, xp)``: the algorithm, on flat dicts.
    """

    State: ClassVar[type]
    _HYPERS: ClassVar[dict[str, tuple[Interval, bool]]] = {}
    compute_dtype = None   # the dtype of the arithmetic; a field of the optimizers that offer it

    def __post_init__(self):
        object.__setattr__(self, "_namespaces", {})  # signature of a checked call -> (namespace, has 0-d)
        keyed = {}
        for field, (interval, schedulable) in self._HYPERS.items():
            value = getattr(self, field)
            if isinstance(value, Mapping):  # one value per parameter
                keyed[field] = {key: self._checked_hyper(f"{field}[{key!r}]", v, interval, schedulable)
                                for key, v in _keyed_items(field, value)}
                object.__setattr__(self, field, dict(keyed[field]))  # a private copy
            else:
                object.__setattr__(self, field, self._checked_hyper(field, value, interval, schedulable))
        if self.compute_dtype is not None:
            self._check_choice("compute_dtype", _precision.COMPUTE_DTYPES[1:])
        self._check_options()
        object.__setattr__(self, "_keyed", tuple(keyed))
        object.__setattr__(self, "_clones", _clones(self, keyed) if keyed else None)

    def _checked_hyper(self, name: str, value, interval: Interval, schedulable: bool):
        """``value`` checked for hyperparameter ``name``: a schedule where allowed, else a number or an
        array in ``interval`` (an array is replaced by a private, read-only copy)."""
        if callable(value) and not _is_array(value):
            if not schedulable:
                raise TypeError(f"{name} cannot be a schedule (callable) in {type(self).__name__}; "
                                f"give a number or an array")
            return value
        check_value(name, value, interval)
        # A private, read-only copy of an array: later edits to the caller's array cannot leak in.
        return _frozen_copy(value) if _is_array(value) else value

    def _check_options(self) -> None:
        """Validate the non-numeric options (overridden where there are any)."""

    def _check_choice(self, field: str, choices: tuple) -> None:
        value = getattr(self, field)
        if not any(type(value) is type(c) and value == c for c in choices):
            raise ValueError(f"{field}={value!r} must be one of {', '.join(map(repr, choices))}")

    def _resolve(self, name: str, t: int, interval: Interval, p: dict):
        """The value of hyperparameter ``name`` at step ``t``; an array that a schedule returns
        gets the checks a fixed array got at construction and at the start of the step."""
        value = getattr(self, name)
        if type(value) is float or not callable(value) or _is_array(value):
            return value  # checked once, at construction
        value = value(t)
        label = name if self._where is None else f"{name}[{self._where!r}]"   # a clone's: one parameter's value
        check_value(label, value, interval, at_step=t)
        if _is_array(value):
            namespace(params=p, **{f"{label}(t={t})": {_SINGLE: value}})
            self._check_broadcast(p, {f"{label}(t={t})": value})
        return value

    _where = None  # on the configuration of one parameter (see _clones): that parameter's key

    def _value(self, name: str, key: str):
        """Hyperparameter ``name`` for the parameter ``key``: its own value if ``name`` is per parameter."""
        value = getattr(self, name)
        return value[key] if name in self._keyed else value

    def _hyper_arrays(self) -> dict[str, Any]:
        """The array hyperparameters, by name (``lr`` or, per parameter, ``lr['w']``)."""
        return {label: h for label, h, _ in self._array_hypers()}

    def _array_hypers(self) -> list[tuple[str, Any, str | None]]:
        """``(name, array, key)`` for every array hyperparameter; ``key`` is the one parameter a
        per-parameter value applies to, or None (it applies to every parameter)."""
        out = []
        for name in self._HYPERS:
            value = getattr(self, name)
            items = value.items() if name in self._keyed else [(None, value)]
            out += [(name if key is None else f"{name}[{key!r}]", h, key) for key, h in items if _is_array(h)]
        return out

    # ------------------------------------------------------------------ public API

    def init(self, params: Tree):
        """The state before the first step: ``t = 0`` and every moment zero."""
        p = leaves(params, "params")
        xp = namespace(params=p)
        self._check_keys(p)
        self._check_params(p)
        moments = {}
        for field in self.State._fields[1:]:
            flat = {}
            for key, x in p.items():
                shape = self._moment_shapes(key, x)[field]
                if shape is not None:
                    flat[key] = xp.zeros(shape, dtype=x.dtype, device=array_api_compat.device(x))
            moments[field] = unflatten(flat, p) if flat else None
        return self.State(0, **moments)

    def step(self, params: Tree, grads: Tree, state, *, check_finite: bool = False):
        """One update. Returns ``(new_params, new_state)``; the inputs are not modified.

        With ``check_finite=True`` a gradient holding NaN or Inf raises ``FloatingPointError``
        naming the parameter; by default such values propagate, as in PyTorch and optax.
        """
        p, g, s, xp, zero_d = self._checked(params, grads, state)
        if check_finite:
            for key, x in g.items():
                if not bool(xp.all(xp.isfinite(x))):
                    raise FloatingPointError(f"{_name('grads', key)} holds NaN or Inf at step t={state.t + 1}")
        t = state.t + 1
        stored = p
        if self.compute_dtype is not None:  # torch fused's opmath: compute in float32, store back
            p, g = _precision.compute_in(self.compute_dtype, p, xp), _precision.compute_in(self.compute_dtype, g, xp)
            s = {field: _precision.compute_in(self.compute_dtype, tree, xp) for field, tree in s.items()}
        if self._clones is None:
            new_p, new_s = self._update(p, g, s, t, xp)
        else:  # per-parameter hyperparameters
            new_p, new_s = self._update_keyed(p, g, s, t, xp)
        if self.compute_dtype is not None:
            new_p = _precision.store_as(new_p, stored, xp)
            new_s = {field: _precision.store_as(tree, stored, xp) for field, tree in new_s.items()}
        if zero_d:  # NumPy's arithmetic on 0-d arrays returns NumPy scalars: make them arrays again
            new_p, new_s = _arrays(new_p, xp), {field: _arrays(tree, xp) for field, tree in new_s.items()}
        moments = [unflatten(new_s.get(f), p) for f in self.State._fields[1:]]
        return unflatten(new_p, p), self.State(t, *moments)

    def _checked(self, params: Tree, grads: Tree, state):
        """Validate a step's inputs; return the flat ``params``, ``grads`` and state moments, the
        array namespace, and whether a parameter is 0-d.

        The first call with a given :func:`_signature` runs every check; a later call with the same
        signature would pass the structural ones again, so it runs only the checks of values
        (``state.t`` and :meth:`_check_values`), in the order the full checks run them.
        """
        signature = _signature(params, grads, state)
        try:
            xp, zero_d = self._namespaces.get(signature, (None, None))
        except TypeError:  # an unhashable shape or dtype: check everything, remember nothing
            xp = signature = None
        if xp is None:
            p = leaves(params, "params")
            g = leaves(grads, "grads")
            xp = namespace(params=p, grads=g, hyperparameters=self._hyper_arrays(), **_state_arrays(state))
            self._check_keys(p)
            self._check_params(p)
            self._check_grads(p, g)
            s = self._check_state(state, p)
            self._check_broadcast(p)
            zero_d = any(x.ndim == 0 for x in p.values())
            if signature is not None:
                self._remember(signature, (xp, zero_d))
            return p, g, s, xp, zero_d
        p = params if type(params) is dict else {_SINGLE: params}  # read, never written
        g = grads if type(grads) is dict else {_SINGLE: grads}
        self._check_values(p)
        _check_step_count(state.t)
        s = {}
        for field, tree in zip(state._fields[1:], state[1:]):
            if tree is not None:
                s[field] = tree if type(tree) is dict else {_SINGLE: tree}
        return p, g, s, xp, zero_d

    def _remember(self, signature: tuple, checked: tuple) -> None:
        namespaces = self._namespaces
        if len(namespaces) >= _SIGNATURES_KEPT:  # a caller that changes shapes at every step
            namespaces.clear()
        namespaces[signature] = checked

    def __getstate__(self):  # the remembered signatures are a cache: not pickled
        return {k: v for k, v in self.__dict__.items() if k != "_namespaces"}

    def __setstate__(self, state):
        self.__dict__.update(state, _namespaces={})

    # ------------------------------------------------------------------ validation

    def _check_params(self, p: dict) -> None:
        for key, x in p.items():
            if not is_floating(x):
                raise TypeError(f"{_name('params', key)} must have a real floating dtype, got {_describe(x)}")
            for name in ("eps", "eps_root"):   # an epsilon that rounds to 0 would divide by zero
                if name in self._HYPERS:
                    _precision.check_epsilon(name, self._value(name, key), x.dtype, self.compute_dtype)

    def _check_values(self, p: dict) -> None:
        """The checks of :meth:`_check_params` that look at values, not only at the structure
        (overridden where there are any); they run at every step."""

    def _check_grads(self, p: dict, g: dict) -> None:
        if set(g) != set(p):
            if _SINGLE in p or _SINGLE in g:
                raise TypeError("params and grads must both be arrays or both be dicts, got "
                                f"{'an array' if _SINGLE in p else 'a dict'} and {'an array' if _SINGLE in g else 'a dict'}")
            missing, extra = sorted(set(p) - set(g)), sorted(set(g) - set(p))
            raise ValueError(f"grads must have the keys of params; missing {missing}, unexpected {extra}")
        for key in p:
            a, b = p[key], g[key]
            if tuple(b.shape) != tuple(a.shape):
                raise ValueError(f"{_name('grads', key)} has shape {tuple(b.shape)} but "
                                 f"{_name('params', key)} has shape {tuple(a.shape)}")
            if b.dtype != a.dtype:
                raise TypeError(f"{_name('grads', key)} has dtype {b.dtype} but {_name('params', key)} has dtype {a.dtype}")

    def _check_state(self, state, p: dict) -> dict:
        name = type(self).__name__
        if not isinstance(state, self.State):
            raise TypeError(f"state must be a {self.State.__name__} made by {name}.init, got {_describe(state)}")
        _check_step_count(state.t)
        flat = {}
        for field in self.State._fields[1:]:
            tree = getattr(state, field)
            wanted = {key: self._moment_shapes(key, x)[field] for key, x in p.items()}
            if all(shape is None for shape in wanted.values()):
                if tree is not None:
                    raise ValueError(f"state.{field} should be None for this {name}; was the state made by another configuration?")
                continue
            if tree is None:
                raise ValueError(f"state.{field} is None but this {name} needs it; was the state made by another configuration?")
            try:
                s = leaves(tree, f"state.{field}")
            except (TypeError, ValueError) as e:
                raise TypeError(f"state.{field} does not match params: {e}") from None
            want_keys = {k for k, shape in wanted.items() if shape is not None}
            if set(s) != want_keys:
                raise ValueError(f"state.{field} has keys {sorted(s)} but params need {sorted(want_keys)}; "
                                 f"was the state made for other params?")
            for key, x in s.items():
                if tuple(x.shape) != tuple(wanted[key]):
                    raise ValueError(f"{_name(f'state.{field}', key)} has shape {tuple(x.shape)}, expected "
                                     f"{tuple(wanted[key])} for {_name('params', key)}; was the state made for other params?")
                if x.dtype != p[key].dtype:
                    raise TypeError(f"{_name(f'state.{field}', key)} has dtype {x.dtype} but "
                                    f"{_name('params', key)} has dtype {p[key].dtype}")
            flat[field] = s
        return flat

    def _check_keys(self, p: dict) -> None:
        """Every per-parameter hyperparameter has exactly the keys of ``params``."""
        for name in self._keyed:
            have = getattr(self, name)
            if _SINGLE in p:
                raise TypeError(f"{name} is a dict keyed by parameter name ({sorted(have)}) but params is a single "
                                f"array; give params as a dict with those keys, or {name} as one value")
            missing, unknown = sorted(set(p) - set(have)), sorted(set(have) - set(p))
            if missing or unknown:
                raise ValueError(f"{name} has one value per parameter, but its keys {sorted(have)} are not those of "
                                 f"params {sorted(p)}: missing {missing}, unknown {unknown}")

    def _check_broadcast(self, p: dict, hypers: dict | None = None) -> None:
        """Array hyperparameters must broadcast to each parameter's shape without enlarging it (a
        per-parameter one, to its own parameter's shape)."""
        targets = self._array_hypers() if hypers is None else [(name, h, None) for name, h in hypers.items()]
        for name, h, only in targets:
            for key, x in p.items():
                if only is not None and key != only:
                    continue  # lr['w'] applies to params['w'] only
                if not _broadcasts_to(tuple(h.shape), tuple(x.shape)):
                    raise ValueError(f"{name} has shape {tuple(h.shape)}, which does not broadcast to the shape "
                                     f"{tuple(x.shape)} of {_name('params', key)}; a sweep over K configurations "
                                     f"gives params a leading axis of size K and {name} the shape (K, 1, ...)")

    # ------------------------------------------------------------------ per-parameter hyperparameters

    def _update_keyed(self, p: dict, g: dict, s: dict, t: int, xp, **shared) -> tuple[dict, dict]:
        """``_update`` with per-parameter hyperparameters: each parameter is stepped by the
        configuration that holds its own values (built once, at construction), with the common
        step count. ``shared`` holds quantities that couple the parameters (AdaL's global norm),
        computed by the caller over all of them: ``{name: {key: value}}``."""
        new_p, new_s = {}, {}
        for key in p:
            one_s = {field: {key: tree[key]} for field, tree in s.items() if tree is not None and key in tree}
            one_shared = {name: {key: values[key]} for name, values in shared.items()}
            one_p, one_state = self._clones[key]._update({key: p[key]}, {key: g[key]}, one_s, t, xp, **one_shared)
            new_p[key] = one_p[key]
            for field, tree in one_state.items():
                if tree is not None:
                    new_s.setdefault(field, {})[key] = tree[key]
        return new_p, {field: new_s.get(field) for field in self.State._fields[1:]}

    # ------------------------------------------------------------------ to be provided

    def _moment_shapes(self, key: str, p) -> dict[str, tuple | None]:
        raise NotImplementedError

    def _update(self, p: dict, g: dict, s: dict, t: int, xp) -> tuple[dict, dict]:
        raise NotImplementedError


_SIGNATURES_KEPT = 64


def _keyed_items(name: str, value: Mapping) -> list:
    """The items of a per-parameter hyperparameter, or a ``TypeError`` naming a bad key."""
    if not value:
        raise ValueError(f"{name} is an empty dict; give one value per parameter name, or one value for all")
    for key in value:
        if not isinstance(key, str) or key == _SINGLE:
            raise TypeError(f"{name} has a key {key!r}; keys must be the parameters' names (non-empty strings)")
    return list(value.items())


def _clones(opt: Optimizer, keyed: dict) -> dict:
    """For per-parameter hyperparameters: ``{key: the configuration of parameter key}``, each with
    plain values. Every per-parameter hyperparameter must name the same parameters."""
    names = list(keyed)
    keys = set(keyed[names[0]])
    for name in names[1:]:
        if set(keyed[name]) != keys:
            raise ValueError(f"{name} has keys {sorted(keyed[name])} but {names[0]} has keys {sorted(keys)}; every "
                             f"per-parameter hyperparameter needs one value for each parameter")
    clones = {}
    for key in sorted(keys):
        clone = dataclasses.replace(opt, **{name: keyed[name][key] for name in names})
        object.__setattr__(clone, "_where", key)
        clones[key] = clone
    return clones


def _arrays(flat: dict | None, xp) -> dict | None:
    """``flat`` with every NumPy scalar (what NumPy's arithmetic makes of 0-d arrays) made a 0-d
    array again, so that a later step takes it as a parameter."""
    if flat is None:
        return None
    return {key: xp.asarray(x) if not _is_array(x) or x.ndim == 0 else x for key, x in flat.items()}


def _tree_signature(tree):
    """What the structural checks see of a tree: keys, array types, shapes and dtypes. Raises
    ``AttributeError`` for a leaf that is not array-like (the full checks then report it)."""
    if tree is None:
        return None
    if type(tree) is dict:
        return tuple((key, type(x), x.shape, x.dtype) for key, x in tree.items())
    return (type(tree), tree.shape, tree.dtype)


def _signature(params, grads, state):
    """A summary of a step's inputs on which every structural check depends, or ``None`` when
    there is none (malformed input: the full checks run and report it)."""
    try:
        return (_tree_signature(params), _tree_signature(grads), type(state), *map(_tree_signature, state[1:]))
    except (AttributeError, TypeError):  # a leaf that is not array-like, or a state that is not a tuple
        return None


def _check_step_count(t) -> None:
    if type(t) is int and t >= 0:
        return
    if isinstance(t, bool) or not isinstance(t, numbers.Integral) or t < 0:
        raise ValueError(f"state.t={t!r} must be a non-negative integer")


def _frozen_copy(x):
    xp = array_api_compat.array_namespace(x)
    y = xp.asarray(x, copy=True)
    if array_api_compat.is_numpy_array(y):
        y.flags.writeable = False
    return y


def _broadcasts_to(small: tuple, big: tuple) -> bool:
    if len(small) > len(big):
        return False
    return all(a == 1 or a == b for a, b in zip(reversed(small), reversed(big)))


def sqrt(x, xp):
    """The correctly rounded square root of a number (a Python float, from ``math.sqrt``) or of
    an array (``xp.sqrt``). Not ``x**0.5``: a power is not correctly rounded (on Python floats
    ``(1 - 0.999**t)**0.5`` and ``math.sqrt(1 - 0.999**t)`` differ at about 1% of the steps)."""
    if isinstance(x, numbers.Real) and not _is_array(x):
        return math.sqrt(x)
    return xp.sqrt(x)


def bias_corrections(beta1, beta2, t: int, enabled: bool, powers=None):
    """``(1 - beta1**t, 1 - beta2**t)``, or ``(1, 1)`` when bias correction is off. ``powers``, when
    given, is the pair ``(beta1**t, beta2**t)`` as a precision convention computes it."""
    if not enabled:
        return 1.0, 1.0
    p1, p2 = (beta1**t, beta2**t) if powers is None else powers
    return 1 - p1, 1 - p2
