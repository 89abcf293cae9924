"""Time per optimizer step: refimpl against torch.optim on the CPU.

One parameter array of ``n`` elements and a fixed gradient; every variant steps its own copy.
refimpl steps are pure (each returns new arrays); torch steps update in place. For each thread
count and dtype, all variants of one size are timed in interleaved rounds (common.interleaved),
so each ratio compares numbers taken at the same moments. refimpl runs on one thread whatever
the count (NumPy's elementwise operations use one); the count is torch's.
"""

from __future__ import annotations

import os

import numpy as np

import refimpl
import refimpl.fast as fast

from .common import interleaved

ADAM_ARRAYS = 7  # an Adam step reads param, grad, m, v and writes param, m, v


def refimpl_variants(n: int, dtype, rng):
    """name -> (opt, params, grads, fast settings); ND-Adam's weight vectors are rows of 100."""
    x = rng.standard_normal(n).astype(dtype)
    g = rng.standard_normal(n).astype(dtype)
    rows = max(1, n // 100)
    w, gw = x[: rows * 100].reshape(rows, -1), g[: rows * 100].reshape(rows, -1)
    return {
        "refimpl Adam": (refimpl.Adam(lr=1e-3), x, g, {}),
        "refimpl Adam, whole arrays": (refimpl.Adam(lr=1e-3), x, g, {"enabled": False}),
        "refimpl AdamW": (refimpl.Adam(lr=1e-3, weight_decay=0.01, decoupled_weight_decay=True), x, g, {}),
        "refimpl ND-Adam": (refimpl.NDAdam(vector_axes=(1,), lr_vector=1e-3), w, gw, {}),
        "refimpl AdaL": (refimpl.AdaL(lr=1e-3), x, g, {}),
    }


def torch_variants(n: int, dtype, rng):
    import torch
    x = torch.from_numpy(rng.standard_normal(n).astype(dtype))
    g = torch.from_numpy(rng.standard_normal(n).astype(dtype))
    variants = {}
    for cls, extra in ((torch.optim.Adam, {}), (torch.optim.AdamW, {"weight_decay": 0.01})):
        for mode in ({"foreach": False}, {"foreach": True}, {"fused": True}):
            p = x.clone().requires_grad_()
            p.grad = g.clone()
            label = ", ".join(f"{k}={v}" for k, v in mode.items())
            variants[f"torch {cls.__name__} {label}"] = cls([p], lr=1e-3, **extra, **mode)
    return variants


def measure(n: int, dtype, threads: int, *, repeats: int, min_seconds: float, seed: int = 0) -> dict:
    """Seconds per step of every variant, for ``n`` parameters of ``dtype`` on ``threads`` threads."""
    import torch
    torch.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    batches = {}
    for name, (opt, x, g, settings) in refimpl_variants(n, dtype, rng).items():
        box = [x, opt.init(x)]

        def steps(k, opt=opt, box=box, g=g, settings=settings):
            with fast.settings(**settings):  # entered once per round, not per step
                for _ in range(k):
                    box[0], box[1] = opt.step(box[0], g, box[1])
        batches[name] = steps
    for name, opt in torch_variants(n, dtype, rng).items():
        def steps(k, step=opt.step):
            for _ in range(k):
                step()
        batches[name] = steps

    def fresh_outputs(k):
        """What a pure step pays before computing anything: three new arrays, written once (at
        1e7 elements the allocator maps fresh pages, which the kernel must fault in and zero)."""
        for _ in range(k):
            for _ in range(3):
                np.empty(n, dtype).fill(0)
    batches[FRESH] = fresh_outputs
    return interleaved(batches, repeats=repeats, min_seconds=min_seconds)


FRESH = "3 fresh arrays (np.empty, written once)"


def run(*, sizes, dtypes, thread_counts, repeats, min_seconds, progress=print) -> list[dict]:
    rows = []
    for threads in thread_counts:
        for dtype in dtypes:
            for n in sizes:
                progress(f"  steps: {threads} thread(s), {np.dtype(dtype).name}, n={n:.0e}")
                times = measure(n, dtype, threads, repeats=repeats, min_seconds=min_seconds)
                rows.append({"threads": threads, "dtype": np.dtype(dtype).name, "n": n, "seconds_per_step": times})
    return rows


def all_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


