"""Save and load optimizer states as ``.npz`` files, bit for bit and without pickle.

The file holds one array per leaf of every moment (named ``<field>.<index>``), the step count,
and a JSON header saying which state class it is and how the leaves fit together. Loading
rebuilds the same NamedTuple with arrays of the same dtype, shape and bits, so resuming from a
checkpoint gives exactly the trajectory of never having stopped.
"""

from __future__ import annotations

import json
import os

import numpy as np

from ._core import leaves, unflatten
from .adal import AdaLState
from .adam import AdamState
from .backend import get_namespace, to_numpy
from .ndadam import NDAdamState
from .sgd import SGDState

__all__ = ["save_state", "load_state"]

FORMAT = "refimpl-state"
VERSION = 1
_STATES = {cls.__name__: cls for cls in (AdamState, NDAdamState, AdaLState, SGDState)}


def save_state(path: str | os.PathLike, state) -> None:
    """Write ``state`` (from any refimpl optimizer, on any backend) to ``path`` (``.npz``)."""
    name = type(state).__name__
    if _STATES.get(name) is not type(state):
        raise TypeError(f"state must be a refimpl optimizer state ({', '.join(_STATES)}), got {type(state).__name__}")
    arrays, fields = {}, {}
    for field in state._fields[1:]:
        tree = getattr(state, field)
        if tree is None:
            fields[field] = None
            continue
        flat = leaves(tree, f"state.{field}")
        fields[field] = {"dict": list(flat) != [""], "keys": list(flat)}
        for i, x in enumerate(flat.values()):
            arrays[f"{field}.{i}"] = to_numpy(x)
    header = {"format": FORMAT, "version": VERSION, "state": name, "t": int(state.t), "fields": fields}
    with open(path, "wb") as f:  # an open file keeps np.savez from appending ".npz" to the name
        np.savez(f, __header__=np.array(json.dumps(header)), **arrays)


def load_state(path: str | os.PathLike):
    """Read a state written by :func:`save_state`; arrays are made by the current backend."""
    xp = get_namespace()
    with np.load(path, allow_pickle=False) as data:
        if "__header__" not in data:
            raise ValueError(f"{os.fspath(path)!r} is not a refimpl state file (no header)")
        header = json.loads(str(data["__header__"]))
        if header.get("format") != FORMAT or header.get("version") != VERSION:
            raise ValueError(f"{os.fspath(path)!r} has format {header.get('format')!r} version "
                             f"{header.get('version')!r}; this refimpl reads {FORMAT!r} version {VERSION}")
        cls = _STATES[header["state"]]
        moments = {}
        for field in cls._fields[1:]:
            spec = header["fields"][field]
            if spec is None:
                moments[field] = None
                continue
            flat = {key: xp.asarray(data[f"{field}.{i}"]) for i, key in enumerate(spec["keys"])}
            moments[field] = unflatten(flat, flat if spec["dict"] else {"": None})
    return cls(header["t"], **moments)
