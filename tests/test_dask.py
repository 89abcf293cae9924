"""Sweeps beyond one machine: the same step functions on dask arrays, run by dask.distributed.

A sweep's configurations are independent, so its arrays can be cut along the configuration axis
into chunks that different machines step. refimpl needs nothing for that, and two routes work:

* ``Optimizer.step`` on dask arrays: it takes its namespace from its inputs (array_api_compat wraps
  dask.array), and every operation of a step is elementwise or reduces along the coordinates,
  never across configurations, so dask builds tasks per chunk and the cluster runs them. Each
  step adds tasks to a graph: right for a few steps, slow for thousands.
* ``dask.array.map_blocks`` of the in-memory sweep: each chunk of configurations is one task that
  runs every step with NumPy on a worker. The route for long sweeps (README.md shows it pointed
  at a real cluster).

Here the cluster is two worker processes on the loopback interface. Each chunk computes what
NumPy computes on those rows, so both routes equal the in-memory sweep bitwise.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

import refimpl

da = pytest.importorskip("dask.array", reason="dask is not installed (an optional extra)")
dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed (an optional extra)")

K, STEPS, CHUNKS = 64, 20, 2

SWEEPS = {
    "Adam": lambda lr: refimpl.Adam(lr=lr, weight_decay=0.01, amsgrad=True),
    "NDAdam": lambda lr: refimpl.NDAdam(vector_axes=(-1,), lr_vector=lr),
    "AdaL": lambda lr: refimpl.AdaL(lr=lr, batch_ndim=1),
    "SGD": lambda lr: refimpl.SGD(lr=lr * 1e-2, momentum=0.9, nesterov=True),
}


def sweep(make, x, lr, steps, every=5):
    """``steps`` steps of the optimizer ``make(lr)`` from ``x`` on Rosenbrock's function. On dask
    arrays each step only adds tasks to a graph; every few steps ``persist`` runs the graph so
    far on the cluster and keeps the results there, so that the graph stays small. (ND-Adam's
    checks of its weight vectors compute the parameters at every step, so the graph they see
    is at most ``every`` steps deep.)"""
    opt = make(lr)
    state = opt.init(x)
    for t in range(1, steps + 1):
        x, state = opt.step(x, refimpl.problems.rosenbrock(x)[1], state)
        if isinstance(x, da.Array) and t % every == 0:
            x, state = dask.persist(x, state)
    return x, state


@pytest.fixture(scope="module")
def client():
    # The workers cannot import this test module: send its functions by value (as functions
    # defined in a user's __main__ are sent).
    cloudpickle = pytest.importorskip("cloudpickle")
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                      dashboard_address=None) as cluster, distributed.Client(cluster) as client:
            yield client
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def in_memory(name, steps):
    lrs = np.logspace(-3, -1, K)[:, None]
    x0 = np.tile([-1.2, 1.0], (K, 1))
    return lrs, x0, sweep(SWEEPS[name], x0, lrs, steps)


def assert_on_every_worker(client, collection):
    futures = distributed.futures_of(collection)
    distributed.wait(futures)
    workers = {w for holders in client.who_has(futures).values() for w in holders}
    assert len(workers) == CHUNKS, f"the chunks are on {workers}, not on {CHUNKS} workers"


@pytest.mark.parametrize("name", list(SWEEPS))
def test_steps_on_chunked_dask_arrays_on_a_local_cluster_equal_the_in_memory_sweep(name, client):
    steps = 6 if name == "NDAdam" else STEPS  # ND-Adam's checks wait for the cluster at every step
    lrs, x0, (want, want_state) = in_memory(name, steps)
    x = da.from_array(x0, chunks=(K // CHUNKS, 2))
    lr = da.from_array(lrs, chunks=(K // CHUNKS, 1))
    chunked, chunked_state = dask.persist(*sweep(SWEEPS[name], x, lr, steps))
    assert_on_every_worker(client, chunked)
    got, got_state = dask.compute(chunked, chunked_state)
    assert got_state.t == want_state.t == steps
    assert np.array_equal(got, want)
    for field in want_state._fields[1:]:
        expected = getattr(want_state, field)
        assert (expected is None) == (getattr(got_state, field) is None)
        if expected is not None:
            assert np.array_equal(getattr(got_state, field), expected)


@pytest.mark.parametrize("name", list(SWEEPS))
def test_map_blocks_of_the_numpy_sweep_on_a_local_cluster_equals_the_in_memory_sweep(name, client):
    steps = 200
    lrs, x0, (want, _) = in_memory(name, steps)

    def run_chunk(x, lr):  # NumPy in, NumPy out, on a worker: the in-memory sweep of these rows
        return sweep(SWEEPS[name], x, lr, steps)[0]

    x = da.from_array(x0, chunks=(K // CHUNKS, 2))
    lr = da.from_array(lrs, chunks=(K // CHUNKS, 1))
    chunked = da.map_blocks(run_chunk, x, lr, dtype=x0.dtype).persist()
    assert_on_every_worker(client, chunked)
    assert np.array_equal(chunked.compute(), want)
