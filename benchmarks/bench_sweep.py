"""The learning-rate sweep: K learning rates of Adam on the 2-D Rosenbrock function, T steps.

* refimpl: one broadcast run, params of shape (K, 2) and ``lr`` of shape (K, 1), the gradient
  from ``refimpl.problems.rosenbrock`` (which also computes the function's value, as the book
  uses it) or from a gradient-only function (the same formula, the same bits, fewer operations).
* JAX: ``jax.jit(jax.vmap(run))`` where ``run`` is ``optax.adam`` in a ``lax.scan`` of T steps,
  timed from building the sweep to its result: tracing and compiling included.

Each run is a fresh Python process (imports excluded from the timing, a cold JAX compilation
included), once pinned to one CPU core and once with all cores, in float32 and float64; the
final parameters of the two are compared.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import numpy as np

START = (-1.2, 1.0)

REFIMPL = r"""
import json, os, sys, time
import numpy as np
import refimpl
import array_api_compat.numpy  # imported by refimpl's first step otherwise (83 ms here): imports are excluded

K, T, dtype, gradient, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
if sys.argv[6] == "1":
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

def rosenbrock_gradient(x):
    # The gradient of refimpl.problems.rosenbrock (a=1, b=100), without its value: same operations.
    x0, x1 = x[:, 0], x[:, 1]
    r = x1 - x0**2
    g = np.empty_like(x)
    g[:, 0] = -2 * (1.0 - x0) - 4 * 100.0 * x0 * r
    g[:, 1] = 2 * 100.0 * r
    return g

grad = (lambda x: refimpl.problems.rosenbrock(x)[1]) if gradient == "problems" else rosenbrock_gradient
start = time.perf_counter()
lrs = np.logspace(-4, 0, K, dtype=dtype)[:, None]
x = np.tile(np.array(%(start)r, dtype), (K, 1))
opt = refimpl.Adam(lr=lrs)
state = opt.init(x)
for _ in range(T):
    x, state = opt.step(x, grad(x), state)
seconds = time.perf_counter() - start
np.save(out, x)
print(json.dumps({"seconds": seconds}))
""" % {"start": START}

JAX = r"""
import json, os, sys, time
K, T, dtype, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
if sys.argv[5] == "1":
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
import jax
if dtype == "float64":
    jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import numpy as np
import optax

def rosenbrock_gradient(x):
    x0, x1 = x[0], x[1]
    r = x1 - x0**2
    return jnp.stack([-2 * (1.0 - x0) - 4 * 100.0 * x0 * r, 2 * 100.0 * r])

def run(lr):
    opt = optax.adam(lr)
    x = jnp.array(%(start)r, dtype=dtype)
    state = opt.init(x)
    def body(carry, _):
        x, state = carry
        updates, state = opt.update(rosenbrock_gradient(x), state, x)
        return (optax.apply_updates(x, updates), state), None
    (x, state), _ = jax.lax.scan(body, (x, state), None, length=T)
    return x

start = time.perf_counter()
lrs = jnp.logspace(-4, 0, K, dtype=dtype)
sweep = jax.jit(jax.vmap(run))
x = sweep(lrs).block_until_ready()
seconds = time.perf_counter() - start
start = time.perf_counter()
sweep(lrs).block_until_ready()
again = time.perf_counter() - start
np.save(out, np.asarray(x))
print(json.dumps({"seconds": seconds, "seconds_compiled": again}))
""" % {"start": START}


def _python(code: str, *args) -> dict:
    result = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                            env=dict(os.environ, TQDM_DISABLE="1"))
    if result.returncode != 0:
        return {"error": result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "failed"}
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure(K: int, T: int, dtype: str, one_core: bool, repeats: int) -> dict:
    """Median seconds (of ``repeats`` fresh processes) of each way of running the sweep."""
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        finals = {}
        for name, code, extra in (("refimpl, problems.rosenbrock", REFIMPL, ("problems",)),
                                  ("refimpl, gradient only", REFIMPL, ("lean",)),
                                  ("jax.jit(jax.vmap(optax.adam in lax.scan)), compile included", JAX, ())):
            runs = []
            for r in range(repeats):
                out = os.path.join(tmp, f"{len(finals)}.npy")
                runs.append(_python(code, K, T, dtype, *extra, out, int(one_core)))
            finals[name] = np.load(out) if os.path.exists(out) else None
            if all("seconds" in r for r in runs):
                rows[name] = float(np.median([r["seconds"] for r in runs]))
                if "seconds_compiled" in runs[0]:
                    rows["jax, the same sweep again (compiled)"] = float(np.median([r["seconds_compiled"] for r in runs]))
            else:
                rows[name] = next(r["error"] for r in runs if "error" in r)
        names = list(finals)
        ref, lean, jx = (finals[n] for n in names)
        agreement = {}
        if ref is not None and lean is not None:
            agreement["refimpl_two_gradients_bitwise_equal"] = bool(np.array_equal(ref, lean))
        if ref is not None and jx is not None:
            diff = np.abs(ref.astype(np.float64) - jx.astype(np.float64))
            agreement["refimpl_vs_jax_max_abs_difference"] = float(np.nanmax(diff))
            agreement["refimpl_vs_jax_median_abs_difference"] = float(np.nanmedian(diff))
    return {"K": K, "T": T, "dtype": dtype, "one_core": one_core, "seconds": rows, "agreement": agreement}


def run(*, K: int, T: int, repeats: int, progress=print) -> list[dict]:
    results = []
    for one_core in (True, False):
        for dtype in ("float32", "float64"):
            progress(f"  sweep: {K} x Adam on Rosenbrock, {T} steps, {dtype}, {'1 core' if one_core else 'all cores'}")
            results.append(measure(K, T, dtype, one_core, repeats))
    return results
