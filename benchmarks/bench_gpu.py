"""GPU rows (CuPy): measured only where a GPU is present, reported as not measured elsewhere.

* The GPU's copy bandwidth (a device-to-device copy of n float32, 2n * 4 bytes moved).
* refimpl Adam on n = 1e8 float32 CuPy arrays, through the fused kernel (refimpl.fast) and
  through the readable path (one kernel per line), as time per step and as a fraction of the
  bandwidth bound 7 * 4n bytes / bandwidth. Target: at least 0.7.
* torch.optim.Adam(fused=True) on the same GPU, when this torch build has CUDA. Target: refimpl
  at most 1.2 times its time.
* The sweep on the GPU: 1e6 learning rates of Adam on Rosenbrock in one broadcast run.
All times from CUDA events, median of repeats.
"""

from __future__ import annotations

import statistics

import numpy as np

import refimpl
import refimpl.fast as fast


def gpu_reason() -> str | None:
    try:
        import cupy
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "CuPy finds no GPU"
    except Exception as e:
        return f"no GPU: CuPy unavailable ({type(e).__name__}: {e})"
    return None


def _gpu_seconds(call, repeats: int) -> float:
    import cupy
    call()
    cupy.cuda.Device().synchronize()
    times = []
    for _ in range(repeats):
        start, stop = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        call()
        stop.record()
        stop.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, stop) / 1e3)
    return statistics.median(times)


def run(*, n: int = 10**8, sweep_k: int = 10**6, sweep_t: int = 1000, repeats: int = 20, progress=print) -> dict:
    reason = gpu_reason()
    if reason is not None:
        return {"not_measured": reason}
    import cupy
    progress(f"  gpu: n={n:.0e} float32")
    result = {"device": cupy.cuda.runtime.getDeviceProperties(0)["name"].decode(), "n": n}
    src = cupy.ones(n, dtype=cupy.float32)
    dst = cupy.empty_like(src)
    copy = _gpu_seconds(lambda: cupy.copyto(dst, src), repeats)
    result["copy_bandwidth_bytes_per_s"] = 2 * 4 * n / copy
    bound = 7 * 4 * n / result["copy_bandwidth_bytes_per_s"]
    result["adam_bound_seconds"] = bound
    del src, dst

    rng = cupy.random.default_rng(0)
    x = rng.standard_normal(n, dtype=cupy.float32)
    g = rng.standard_normal(n, dtype=cupy.float32)
    opt = refimpl.Adam(lr=1e-3)
    box = [x, opt.init(x)]

    def step():
        box[0], box[1] = opt.step(box[0], g, box[1])

    result["refimpl_adam_fused_seconds"] = _gpu_seconds(step, repeats)
    with fast.settings(enabled=False):
        result["refimpl_adam_readable_seconds"] = _gpu_seconds(step, max(3, repeats // 4))
    result["refimpl_adam_fused_fraction_of_bound"] = bound / result["refimpl_adam_fused_seconds"]
    del box, x
    try:
        import torch
        if not torch.cuda.is_available():
            raise RuntimeError("this torch build has no CUDA")
        p = torch.randn(n, device="cuda").requires_grad_()
        p.grad = torch.randn(n, device="cuda")
        torch_opt = torch.optim.Adam([p], lr=1e-3, fused=True)
        result["torch_adam_fused_seconds"] = _gpu_seconds(torch_opt.step, repeats)
        result["refimpl_over_torch_fused"] = result["refimpl_adam_fused_seconds"] / result["torch_adam_fused_seconds"]
        del p, torch_opt
    except Exception as e:
        result["torch_adam_fused_seconds"] = f"not measured: {type(e).__name__}: {e}"

    progress(f"  gpu: sweep of {sweep_k:.0e} configurations, {sweep_t} steps")
    lrs = cupy.asarray(np.logspace(-4, 0, sweep_k))[:, None]
    xs = cupy.tile(cupy.asarray([-1.2, 1.0]), (sweep_k, 1))
    sweep_opt = refimpl.Adam(lr=lrs)
    state = sweep_opt.init(xs)

    def sweep():
        nonlocal xs, state
        for _ in range(sweep_t):
            xs, state = sweep_opt.step(xs, refimpl.problems.rosenbrock(xs)[1], state)

    result["sweep"] = {"K": sweep_k, "T": sweep_t, "seconds": _gpu_seconds(sweep, 1)}
    return result
