"""Shared test configuration: deterministic hypothesis profiles and the array backends.

Hypothesis runs derandomized (a fixed seed per test), so CI is deterministic. Two budgets:
``ci`` (the default, what ``make test`` runs) and ``full`` (``REFIMPL_HYPOTHESIS=full make test``,
four times the examples: 600 per property, about 8 minutes on 2 cores) for a deeper search
before a release. Tests that set their own smaller budget say why.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("ci", derandomize=True, deadline=None, max_examples=150,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("full", derandomize=True, deadline=None, max_examples=600,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("REFIMPL_HYPOTHESIS", "ci"))


class Backend:
    """Makes arrays on one array library/device from NumPy arrays, and brings them back."""

    def __init__(self, name: str):
        self.name = name
        if name == "numpy":
            self.xp, self.device = np, None
        elif name.startswith("strict"):
            import array_api_strict
            self.xp = array_api_strict
            self.device = array_api_strict.Device("device1" if name.endswith("device1") else "CPU_DEVICE")
        elif name == "cupy":
            import cupy
            self.xp, self.device = cupy, None
        else:
            raise ValueError(name)

    def asarray(self, x):
        """A backend copy of a NumPy array, or of every array in a dict."""
        if isinstance(x, dict):
            return {k: self.asarray(v) for k, v in x.items()}
        if self.name == "numpy":
            return np.array(x, copy=True)
        if self.name == "cupy":
            return self.xp.asarray(x)
        return self.xp.asarray(x, device=self.device, copy=True)

    def __repr__(self):
        return self.name


def _cupy_reason() -> str | None:
    try:
        import cupy
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "CuPy finds no GPU"
    except Exception as e:  # not installed, or no CUDA driver
        return f"CuPy unavailable here ({type(e).__name__})"
    return None


BACKENDS = ["numpy", "strict-cpu", "strict-device1",
            pytest.param("cupy", marks=pytest.mark.skipif(_cupy_reason() is not None,
                                                          reason=_cupy_reason() or ""))]


@pytest.fixture(params=BACKENDS)
def backend(request) -> Backend:
    """Every core test that takes this fixture runs on NumPy, on array-api-strict's CPU device,
    on its ``device1`` (which refuses implicit conversion to NumPy, as CuPy does) and, where a
    GPU is present, on CuPy."""
    return Backend(request.param)
