"""The environment variables refimpl reads, each parsed here with an error that names it.

========================  ==================================================================
``REFIMPL_BACKEND``       ``numpy`` (default) or ``cupy``: where new arrays are made
                          (:mod:`refimpl.backend`).
``REFIMPL_FAST``          ``1`` (default) or ``0``: ``0`` runs the readable update functions
                          whole, with no blocks on the CPU and no fused kernel on a GPU
                          (:mod:`refimpl.fast`). Also ``true``/``false``, ``yes``/``no``,
                          ``on``/``off``, in any case.
========================  ==================================================================

An empty value means the default. The README's section "Environment variables" lists the same,
with the two variables that only the test suite reads.
"""

from __future__ import annotations

import os

__all__ = ["flag", "choice"]

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def flag(name: str, *, default: bool) -> bool:
    """The boolean environment variable ``name``, or ``default`` when it is unset or empty."""
    value = os.environ.get(name, "")
    if value.strip() == "":
        return default
    if value.strip().lower() in _TRUE:
        return True
    if value.strip().lower() in _FALSE:
        return False
    raise ValueError(f"environment variable {name}={value!r} is not a boolean; "
                     f"use 1 or 0 (or true/false, yes/no, on/off)")


def choice(name: str, choices: tuple[str, ...], *, default: str) -> str:
    """The environment variable ``name``, one of ``choices``, or ``default`` when unset or empty."""
    value = os.environ.get(name, "")
    if value.strip() == "":
        return default
    if value.strip() not in choices:
        raise ValueError(f"environment variable {name}={value!r} must be one of {', '.join(map(repr, choices))}")
    return value.strip()
