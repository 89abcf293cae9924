"""The backend switch: where new arrays are made, and the explicit trip back to the host."""

from __future__ import annotations

import numpy as np
import pytest

import refimpl
from conftest import _cupy_reason


def test_numpy_is_the_default(monkeypatch):
    monkeypatch.delenv("REFIMPL_BACKEND", raising=False)
    assert refimpl.get_backend() == "numpy"
    assert refimpl.get_namespace() is np


def test_environment_variable_and_its_errors(monkeypatch):
    monkeypatch.setenv("REFIMPL_BACKEND", "numpy")
    assert refimpl.get_backend() == "numpy"
    monkeypatch.setenv("REFIMPL_BACKEND", "jax")
    with pytest.raises(ValueError, match=r"REFIMPL_BACKEND='jax' must be one of 'numpy', 'cupy'"):
        refimpl.get_backend()


def test_set_backend_rejects_unknown_names():
    with pytest.raises(ValueError, match=r"name='torch' is not a backend"):
        refimpl.set_backend("torch")
    assert refimpl.get_backend() == "numpy"


def test_using_backend_restores_the_previous_one():
    with refimpl.using_backend("numpy") as xp:
        assert xp is np and refimpl.get_backend() == "numpy"
    assert refimpl.get_backend() == "numpy"


@pytest.mark.skipif(_cupy_reason() is None, reason="a GPU is present: CuPy works here")
def test_cupy_without_a_gpu_is_a_clear_error(monkeypatch):
    with pytest.raises(refimpl.BackendUnavailableError, match="backend 'cupy'"):
        refimpl.set_backend("cupy")
    with pytest.raises(refimpl.BackendUnavailableError, match="backend 'cupy'"):
        with refimpl.using_backend("cupy"):
            pass
    monkeypatch.setenv("REFIMPL_BACKEND", "cupy")
    assert refimpl.get_backend() == "cupy"  # the choice is read; using it is what fails
    with pytest.raises(refimpl.BackendUnavailableError):
        refimpl.get_namespace()


@pytest.mark.skipif(_cupy_reason() is not None, reason=_cupy_reason() or "")
def test_cupy_backend_makes_gpu_arrays():
    import cupy
    with refimpl.using_backend("cupy") as xp:
        x = xp.ones(3)
        assert isinstance(x, cupy.ndarray)
        opt = refimpl.Adam(lr=0.1)
        new, state = opt.step(x, x, opt.init(x))
        assert isinstance(new, cupy.ndarray) and isinstance(state.m, cupy.ndarray)
        np.testing.assert_allclose(refimpl.to_numpy(new), 0.9, rtol=1e-7)


def test_to_numpy_is_the_explicit_transfer():
    array_api_strict = pytest.importorskip("array_api_strict")
    dev = array_api_strict.Device("device1")
    x = array_api_strict.asarray([1.0, 2.0], device=dev)
    with pytest.raises(RuntimeError):
        np.asarray(x)  # device1 refuses implicit conversion, as CuPy does
    assert np.array_equal(refimpl.to_numpy(x), [1.0, 2.0])
    state = refimpl.Adam().init({"w": x})
    back = refimpl.to_numpy(state)
    assert isinstance(back, refimpl.AdamState) and np.array_equal(back.m["w"], [0.0, 0.0])
    with pytest.raises(TypeError, match="to_numpy expects"):
        refimpl.to_numpy("not an array")
