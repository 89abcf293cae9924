"""The compatibility table: every installed peer optimizer, diagnosed by refimpl.testing.

``python -m refimpl compat`` prints it as Markdown; the book embeds it live. Nothing in it is
typed by hand: each row is :func:`refimpl.testing.diagnose` run on :func:`refimpl.testing.probe`
(100 float64 steps by default).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from typing import NamedTuple

from .testing import diagnose, from_keras, from_optax, from_torch, probe

__all__ = ["Row", "PEERS", "compat_rows", "compat_table", "installed_peers"]

LR, WD = 0.01, 0.01


class Row(NamedTuple):
    library: str        # "torch 2.13.0"
    optimizer: str      # "Adam"
    options: str        # "lr=0.01, amsgrad=True"
    matches: str        # the matching refimpl configuration, or "none"
    error: str          # max relative error over the steps, or the closest's
    diagnosis: object   # the Diagnosis itself


def _torch_rows():
    import torch
    o = torch.optim
    return [("Adam", lambda: from_torch(o.Adam, lr=LR)),
            ("Adam", lambda: from_torch(o.Adam, lr=LR, weight_decay=WD)),
            ("Adam", lambda: from_torch(o.Adam, lr=LR, amsgrad=True)),
            ("AdamW", lambda: from_torch(o.AdamW, lr=LR, weight_decay=WD)),
            ("NAdam", lambda: from_torch(o.NAdam, lr=LR)),
            ("SGD", lambda: from_torch(o.SGD, lr=LR, momentum=0.9)),
            ("SGD", lambda: from_torch(o.SGD, lr=LR, momentum=0.9, nesterov=True)),
            ("SGD", lambda: from_torch(o.SGD, lr=LR, momentum=0.9, dampening=0.5))]


def _optax_rows():
    import optax
    return [("adam", lambda: from_optax(optax.adam, learning_rate=LR)),
            ("adam", lambda: from_optax(optax.adam, learning_rate=LR, eps_root=1e-8)),
            ("adamw", lambda: from_optax(optax.adamw, learning_rate=LR, weight_decay=WD)),
            ("amsgrad", lambda: from_optax(optax.amsgrad, learning_rate=LR)),
            ("nadam", lambda: from_optax(optax.nadam, learning_rate=LR)),
            ("sgd", lambda: from_optax(optax.sgd, learning_rate=LR, momentum=0.9))]


def _keras_rows():
    import keras
    k = keras.optimizers
    return [("Adam", lambda: from_keras(k.Adam, learning_rate=LR)),
            ("Adam", lambda: from_keras(k.Adam, learning_rate=LR, amsgrad=True)),
            ("AdamW", lambda: from_keras(k.AdamW, learning_rate=LR, weight_decay=WD)),
            ("SGD", lambda: from_keras(k.SGD, learning_rate=LR, momentum=0.9)),
            ("SGD", lambda: from_keras(k.SGD, learning_rate=LR, momentum=0.9, nesterov=True))]


PEERS = {"torch": _torch_rows, "optax": _optax_rows, "keras": _keras_rows}


def _importable(name: str) -> bool:
    if name == "keras" and "keras" not in sys.modules and not os.environ.get("KERAS_BACKEND"):
        # Keras picks its backend at import; tensorflow is its default and not a peer here.
        backend = "jax" if importlib.util.find_spec("jax") else "torch" if importlib.util.find_spec("torch") else None
        if backend is None:
            return False
        os.environ["KERAS_BACKEND"] = backend
    try:
        importlib.import_module(name)
        return True
    except Exception:  # noqa: BLE001 - ImportError, or a backend that fails to load
        return False


def installed_peers() -> list[str]:
    """The peer libraries that import here (Keras on the JAX or torch backend)."""
    return [name for name in PEERS if _importable(name)]


def _version(name: str) -> str:
    module = importlib.import_module(name)
    text = f"{name} {getattr(module, '__version__', '?')}"
    if name == "keras":
        text += f" ({module.backend.backend()} backend)"
    return text


def _options(candidate) -> str:
    name = candidate.name
    return name[name.index("(") + 1: -1] if "(" in name else ""


def _err(x: float) -> str:
    return "0" if x == 0 else f"{x:.1g}"


def compat_rows(steps: int = 100, *, peers: list[str] | None = None, progress: Callable | None = None) -> list[Row]:
    """Diagnose every optimizer of every installed peer; one :class:`Row` each."""
    params, grads = probe(steps)
    rows = []
    for peer in installed_peers() if peers is None else peers:
        optimizers = PEERS[peer]()  # imports the peer (Keras with the backend set first)
        library = _version(peer)
        for optimizer, build in optimizers:
            candidate = build()
            d = diagnose(candidate, params, grads)
            best = d.best
            if best.matches:
                matches, error = f"`{best.label}`: {best.description}", _err(best.max_rel_err)
            elif d.verdict == "none close":
                matches = f"none: no Adam convention is close (the best, `{best.label}`, parts at step {best.divergence.step})"
                error = f"({_err(best.max_rel_err)})"
            else:
                matches = f"none; {d.summary()}"
                error = f"({_err(best.max_rel_err)})"
            rows.append(Row(library, optimizer, _options(candidate), matches, error, d))
            if progress is not None:
                progress(f"{peer} {optimizer}")
    return rows


def markdown(rows: list[Row], steps: int) -> str:
    lines = [f"| library | optimizer | options | refimpl configuration it matches | max rel error ({steps} float64 "
             f"steps) |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.library} | {r.optimizer} | {r.options} | {r.matches} | {r.error} |")
    notes = [f"Measured by `python -m refimpl compat`: `refimpl.testing.diagnose` on `refimpl.testing.probe({steps})`. "
             "The error is the largest over steps and parameter arrays of max|peer - refimpl| / S_t, S_t being the "
             "array's initial size plus the distance it has travelled; in parentheses, the closest configuration's "
             "when none matches."]
    if any(r.library.startswith("keras") for r in rows):
        notes.append("Keras keeps the learning rate in a float32 variable; refimpl is run with that float32 value "
                     f"({float(__import__('numpy').float32(LR))!r} for lr={LR}).")
    return "\n".join(lines) + "\n\n" + "\n\n".join(notes) + "\n"


def compat_table(steps: int = 100, *, peers: list[str] | None = None, progress: Callable | None = None) -> str:
    """The table as Markdown."""
    return markdown(compat_rows(steps, peers=peers, progress=progress), steps)
