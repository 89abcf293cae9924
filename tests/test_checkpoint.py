"""save_state / load_state: bitwise round trips, no pickle, and resuming equals not stopping."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import refimpl
from test_contract import assert_tree_equal, optimizers, problem


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(optimizers()) + ["Adam-plain", "SGD-no-momentum"])
def test_round_trip_is_bitwise_and_resuming_equals_not_stopping(name, dtype, tmp_path):
    opt = {"Adam-plain": refimpl.Adam(), "SGD-no-momentum": refimpl.SGD(lr=0.1)}.get(name) or optimizers()[name]
    params, grads = problem(dtype=dtype)
    p, state = params, opt.init(params)
    for g in grads[:5]:
        p, state = opt.step(p, g, state)
    path = tmp_path / "state.npz"
    refimpl.save_state(path, state)
    loaded = refimpl.load_state(path)
    assert type(loaded) is type(state) and loaded.t == state.t and isinstance(loaded.t, int)
    for field in state._fields[1:]:
        assert_tree_equal(getattr(loaded, field), getattr(state, field))
    # resume from the loaded state and from the live one: the same bits to the end
    p1, s1, p2, s2 = p, state, p, loaded
    for g in grads[5:]:
        p1, s1 = opt.step(p1, g, s1)
        p2, s2 = opt.step(p2, g, s2)
    assert_tree_equal(p1, p2)
    for field in state._fields[1:]:
        assert_tree_equal(getattr(s1, field), getattr(s2, field))


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=1, max_size=20))
def test_every_float_survives_including_nan_payloads_and_signed_zero(values):
    import tempfile
    x = np.array(values)
    state = refimpl.AdamState(7, {"x": x}, {"x": -x}, None)
    with tempfile.TemporaryDirectory() as d:
        refimpl.save_state(f"{d}/s.npz", state)
        back = refimpl.load_state(f"{d}/s.npz")
    assert back.m["x"].tobytes() == x.tobytes() and back.v["x"].tobytes() == (-x).tobytes()


def test_the_file_holds_no_pickle(tmp_path):
    opt = refimpl.Adam(amsgrad=True)
    params, grads = problem()
    _, state = opt.step(params, grads[0], opt.init(params))
    path = tmp_path / "s.npz"
    refimpl.save_state(path, state)
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            header = z.read(name)[:128]
            assert b"'descr': '|O'" not in header, f"{name} is an object (pickled) array"
    with np.load(path, allow_pickle=False) as data:  # loads without pickle
        assert "__header__" in data


def test_saving_from_a_device_backend(tmp_path):
    """A state on a device that refuses implicit host transfer is saved through to_numpy."""
    array_api_strict = pytest.importorskip("array_api_strict")
    dev = array_api_strict.Device("device1")
    params = array_api_strict.asarray(np.arange(3.0), device=dev)
    opt = refimpl.Adam()
    _, state = opt.step(params, params, opt.init(params))
    refimpl.save_state(tmp_path / "s.npz", state)
    back = refimpl.load_state(tmp_path / "s.npz")
    assert np.array_equal(back.m, refimpl.to_numpy(state.m))


def test_bad_files_and_states_are_refused(tmp_path):
    with pytest.raises(TypeError, match="state must be a refimpl optimizer state"):
        refimpl.save_state(tmp_path / "x.npz", (0, np.zeros(2)))
    np.savez(tmp_path / "other.npz", a=np.zeros(2))
    with pytest.raises(ValueError, match="not a refimpl state file"):
        refimpl.load_state(tmp_path / "other.npz")
