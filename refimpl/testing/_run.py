"""Running a candidate and a refimpl optimizer over one gradient stream, and recording both.

A *candidate* is anything with ``init(params) -> state`` and ``step(params, grads, state) ->
(params, state)``: a refimpl optimizer, or an adapter around a peer library (``from_torch``,
``from_optax``, ``from_keras``, ``from_step``). Its state is opaque: only its parameters are
compared. Every array crosses the boundary as a fresh NumPy copy, so a candidate that mutates
its inputs cannot corrupt the record, and whatever library it returns is brought back to NumPy.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from .._core import _SINGLE, Optimizer, _describe, _is_array, _name, is_extension_float
from ..backend import to_numpy

__all__ = ["CandidateError", "Inputs", "prepare", "run", "check_candidate"]


class CandidateError(RuntimeError):
    """The candidate (or the gradient function) raised, or returned something unusable."""


class Inputs(NamedTuple):
    """The validated inputs of a comparison: flat NumPy params, and either a list of flat
    gradients (one per step) or a function of the flat params."""

    params: dict            # key -> np.ndarray ("" for a single array)
    grads: list | None      # [ {key: np.ndarray} ] of length steps, or None
    grad_fn: Callable | None
    steps: int
    dtype: np.dtype

    @property
    def single(self) -> bool:
        return list(self.params) == [_SINGLE]

    def tree(self, flat: Mapping) -> Any:
        """The user's structure (one array or a dict) around ``flat``: fresh copies."""
        copies = {k: np.array(x, copy=True) for k, x in flat.items()}
        return copies[_SINGLE] if self.single else copies

    def fingerprint(self) -> str | None:
        """A digest of the data, for caching reference trajectories (None for a gradient function)."""
        if self.grads is None:
            return None
        h = hashlib.sha1()
        for flat in [self.params, *self.grads]:
            for key, x in flat.items():
                h.update(f"{key}|{x.dtype.str}|{x.shape}|".encode())
                h.update(np.ascontiguousarray(x).tobytes())
        return h.hexdigest()


# ----------------------------------------------------------------------------- input checks


def _flat_numpy(tree, arg: str) -> dict:
    """A tree (one array or a dict of arrays) as ``{key: NumPy copy}``, with clear errors."""
    if isinstance(tree, Mapping):
        if not tree:
            raise ValueError(f"{arg} is an empty dict; give at least one array")
        items = list(tree.items())
        for key, _ in items:
            if not isinstance(key, str) or key == _SINGLE:
                raise TypeError(f"{arg} has a key {key!r}; keys must be non-empty strings")
    else:
        items = [(_SINGLE, tree)]
    out = {}
    for key, x in items:
        if isinstance(x, np.floating):   # what NumPy's arithmetic makes of a 0-d array
            x = np.asarray(x)
        if not _is_array(x):
            raise TypeError(f"{_name(arg, key)} must be an array, got {_describe(x)}")
        try:
            y = np.array(to_numpy(x), copy=True)
        except Exception as e:  # noqa: BLE001 - any library's conversion failure
            raise TypeError(f"{_name(arg, key)} could not be brought to NumPy: {e}") from None
        out[key] = y
    return out


def prepare(params, grads, steps, *, default_steps: int = 100) -> Inputs:
    """Validate ``params``, ``grads`` and ``steps`` (nothing is modified; everything is copied)."""
    p = _flat_numpy(params, "params")
    dtypes = {x.dtype for x in p.values()}
    for key, x in p.items():
        if not is_float_dtype(x.dtype):
            raise TypeError(f"{_name('params', key)} must have a real floating dtype, got {_describe(x)}")
    if len(dtypes) > 1:
        raise TypeError(f"params mix dtypes {sorted(str(d) for d in dtypes)}; give one floating dtype")
    dtype = dtypes.pop()
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1):
        raise ValueError(f"steps={steps!r} must be a positive int")
    if callable(grads) and not _is_array(grads) and not isinstance(grads, Mapping):
        return Inputs(p, None, grads, default_steps if steps is None else int(steps), dtype)
    stream = _gradient_stream(grads, p)
    if steps is None:
        steps = len(stream)
    elif steps > len(stream):
        raise ValueError(f"steps={steps} but grads holds only {len(stream)} gradient(s)")
    for t, g in enumerate(stream[:steps], start=1):
        _check_like(g, p, f"grads[{t - 1}]")
    return Inputs(p, stream[:steps], None, int(steps), dtype)


def is_float_dtype(dtype) -> bool:
    """A real floating NumPy dtype, ml_dtypes' bfloat16 included."""
    return np.issubdtype(dtype, np.floating) or is_extension_float(dtype)


def resolve_dtype(dtype, arg: str = "dtype") -> np.dtype:
    """``"float32"``, ``np.float16``, ``"bfloat16"`` (through ml_dtypes) ... as a NumPy dtype."""
    if isinstance(dtype, str) and dtype == "bfloat16":
        try:
            import ml_dtypes
        except ImportError:
            raise ImportError("dtype='bfloat16' needs the ml_dtypes package: pip install 'refimpl[bfloat16]'") from None
        return np.dtype(ml_dtypes.bfloat16)
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise ValueError(f"{arg}={dtype!r} is not a dtype; give 'float64', 'float32', 'float16' or 'bfloat16'") from None
    if not is_float_dtype(dt):
        raise ValueError(f"{arg}={dtype!r} must be a floating dtype ('float64', 'float32', 'float16' or 'bfloat16')")
    return dt


def _gradient_stream(grads, p: dict) -> list:
    """``grads`` as a list of flat gradients: a sequence of trees, an array whose leading axis
    is the step (single-array params), or a dict of such arrays (dict params)."""
    single = list(p) == [_SINGLE]
    hint = ("grads must be a sequence of gradients (one per step), an array or dict of arrays with a "
            "leading step axis, or a function params -> grads")
    if _is_array(grads):
        g = np.asarray(to_numpy(grads))
        want = p[_SINGLE].shape if single else None
        if not single or g.ndim != len(want) + 1 or g.shape[1:] != want:
            raise ValueError(f"{hint}; got {_describe(grads)} for params "
                             f"{'of shape ' + str(want) if single else 'with keys ' + str(sorted(p))}")
        return [{_SINGLE: np.array(row, copy=True)} for row in g]
    if isinstance(grads, Mapping):
        if single or set(grads) != set(p):
            raise ValueError(f"{hint}; got a dict with keys {sorted(map(str, grads))} for params "
                             f"{'that are one array' if single else 'with keys ' + str(sorted(p))}")
        flat = _flat_numpy(grads, "grads")
        lengths = set()
        for key, g in flat.items():
            if g.ndim != p[key].ndim + 1 or g.shape[1:] != p[key].shape:
                raise ValueError(f"{hint}; grads[{key!r}] has shape {g.shape}, expected (steps,) + "
                                 f"{p[key].shape}")
            lengths.add(g.shape[0])
        if len(lengths) > 1:
            raise ValueError(f"the arrays of grads have different numbers of steps: {sorted(lengths)}")
        return [{key: np.array(g[i], copy=True) for key, g in flat.items()} for i in range(lengths.pop())]
    if isinstance(grads, Sequence) and not isinstance(grads, (str, bytes)):
        if len(grads) == 0:
            raise ValueError("grads is empty; give at least one gradient")
        return [_flat_numpy(g, f"grads[{i}]") for i, g in enumerate(grads)]
    raise TypeError(f"{hint}; got {_describe(grads)}")


def _check_like(flat: dict, p: dict, arg: str, exc=ValueError) -> None:
    """``flat`` has exactly the keys, shapes and dtype of the params ``p``."""
    if set(flat) != set(p):
        if _SINGLE in p or _SINGLE in flat:
            raise exc(f"{arg} is {'one array' if _SINGLE in flat else 'a dict'} but params "
                      f"{'is one array' if _SINGLE in p else 'is a dict'}")
        raise exc(f"{arg} has keys {sorted(flat)} but params has keys {sorted(p)}")
    for key, x in flat.items():
        if x.shape != p[key].shape:
            raise exc(f"{_name(arg, key)} has shape {x.shape} but {_name('params', key)} has shape {p[key].shape}")
        if x.dtype != p[key].dtype:
            raise exc(f"{_name(arg, key)} has dtype {x.dtype} but {_name('params', key)} has dtype {p[key].dtype}")


# ----------------------------------------------------------------------------- candidates


def check_candidate(candidate, arg: str = "candidate") -> None:
    """A ``TypeError`` with a suggestion unless ``candidate`` has ``init`` and ``step``."""
    if callable(getattr(candidate, "init", None)) and callable(getattr(candidate, "step", None)):
        return
    module = getattr(type(candidate), "__module__", "") or ""
    if inspect.isclass(candidate):
        module = candidate.__module__ or ""
    if inspect.isclass(candidate) and module.startswith("torch"):
        tip = "wrap a PyTorch optimizer class with refimpl.testing.from_torch(cls, **kwargs)"
    elif module.startswith("torch"):
        tip = "give from_torch the class and its keyword arguments, not an instance"
    elif module.startswith("optax") or callable(getattr(candidate, "update", None)):
        tip = "wrap an optax transformation with refimpl.testing.from_optax(tx)"
    elif module.startswith("keras"):
        tip = "wrap a Keras optimizer class with refimpl.testing.from_keras(cls, **kwargs)"
    elif callable(candidate):
        tip = "wrap a function fn(params, grads, state) -> (params, state) with refimpl.testing.from_step(fn)"
    else:
        tip = "give a refimpl optimizer or an adapter (from_torch, from_optax, from_keras, from_step)"
    raise TypeError(f"{arg} must have init(params) and step(params, grads, state) methods; got "
                    f"{_describe(candidate)}: {tip}")


def label(candidate) -> str:
    """How a candidate is called in reports."""
    if isinstance(candidate, Optimizer):
        return compact(candidate)
    text = getattr(candidate, "name", None)
    if isinstance(text, str) and text:
        return text
    text = repr(candidate)
    return text if len(text) <= 120 else text[:117] + "..."


def run(candidate, inputs: Inputs, *, who: str = "the candidate") -> dict:
    """Run ``candidate`` for ``inputs.steps`` steps; ``{key: array of shape (steps + 1, *shape)}``
    holding the initial params and the params after every step. Raises :class:`CandidateError`
    if it (or the gradient function) raises or returns something unusable."""
    params = {k: np.array(x, copy=True) for k, x in inputs.params.items()}
    record = {k: np.empty((inputs.steps + 1,) + x.shape, dtype=x.dtype) for k, x in params.items()}
    for k, x in params.items():
        record[k][0] = x
    try:
        state = candidate.init(inputs.tree(params))
    except Exception as e:
        raise CandidateError(f"{who} raised {type(e).__name__} in init(params): {e}") from e
    for t in range(1, inputs.steps + 1):
        g = inputs.grads[t - 1] if inputs.grads is not None else _gradient_at(inputs, params, t, who)
        try:
            out = candidate.step(inputs.tree(params), inputs.tree(g), state)
        except Exception as e:
            raise CandidateError(f"{who} raised {type(e).__name__} at step {t}: {e}") from e
        if not (isinstance(out, tuple) and len(out) == 2):
            raise CandidateError(f"{who} must return (params, state) from step; at step {t} it returned "
                                 f"{_describe(out)}")
        new, state = out
        try:
            flat = _flat_numpy(new, "params")
            _check_dtype(flat, params, who, t)
            _check_like(flat, params, "params", exc=TypeError)
        except (TypeError, ValueError) as e:
            raise CandidateError(f"{who} returned unusable params at step {t}: {e}") from None
        except CandidateError:
            raise
        params = flat
        for k, x in params.items():
            record[k][t] = x
    return record


def _check_dtype(flat: dict, params: dict, who: str, t: int) -> None:
    for key, x in flat.items():
        want = params[key].dtype if key in params else None
        if want is not None and x.dtype != want:
            raise CandidateError(
                f"{who} returned {_name('params', key)} as {x.dtype} at step {t}, for {want} inputs: it computes "
                f"in {x.dtype}. Compare it in its own dtype, diagnose(candidate, dtype='{x.dtype}') or "
                f"probe(dtype='{x.dtype}'), or make it return {want}")


def _gradient_at(inputs: Inputs, params: dict, t: int, who: str) -> dict:
    try:
        g = inputs.grad_fn(inputs.tree(params))
    except Exception as e:
        raise CandidateError(f"the gradient function raised {type(e).__name__} at step {t}, at the params "
                             f"of {who}: {e}") from e
    try:
        flat = _flat_numpy(g, "grads(params)")
        _check_like(flat, params, "grads(params)")
    except (TypeError, ValueError) as e:
        raise CandidateError(f"the gradient function returned unusable gradients at step {t}: {e}") from None
    return flat


def compact(opt) -> str:
    """``Adam(lr=0.01, eps_hat=True)``: a refimpl optimizer by the fields that differ from the defaults."""
    shown = []
    for f in dataclasses.fields(opt):
        value = getattr(opt, f.name)
        if callable(value) and not _is_array(value):
            shown.append(f"{f.name}=<schedule>")
        elif _is_array(value):
            shown.append(f"{f.name}=<array of shape {tuple(value.shape)}>")
        elif f.default is dataclasses.MISSING or value != f.default or type(value) is not type(f.default):
            shown.append(f"{f.name}={value!r}")
    return f"{type(opt).__name__}({', '.join(shown)})"


# ----------------------------------------------------------------------------- reference runs


_CACHE: OrderedDict = OrderedDict()
_CACHE_ENTRIES = 512
_CACHE_ELEMENTS = 1 << 16  # only small trajectories are kept


def _cache_key(optimizer, inputs: Inputs):
    fingerprint = inputs.fingerprint()
    if fingerprint is None:
        return None
    fields = []
    for f in dataclasses.fields(optimizer):
        value = getattr(optimizer, f.name)
        if callable(value) or _is_array(value):
            return None  # schedules and arrays: not worth hashing
        fields.append((f.name, repr(value)))
    return (type(optimizer).__name__, tuple(fields), fingerprint, inputs.steps)


def run_reference(optimizer, inputs: Inputs) -> dict:
    """:func:`run` for a refimpl optimizer, memoized on small inputs: diagnose runs the same
    grid over the same data for every candidate, and the runs are deterministic."""
    key = _cache_key(optimizer, inputs)
    if key is not None and key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    with np.errstate(all="ignore"):  # a configuration may legitimately overflow; compared, not warned
        record = run(optimizer, inputs, who=f"refimpl {label(optimizer)}")
    size = sum(x.size for x in record.values())
    if key is not None and size <= _CACHE_ELEMENTS:
        for x in record.values():
            x.flags.writeable = False
        _CACHE[key] = record
        while len(_CACHE) > _CACHE_ENTRIES:
            _CACHE.popitem(last=False)
    return record
