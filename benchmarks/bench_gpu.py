"""The GPU check in one command: the CuPy tests, then the GPU figures (CuPy; measured only where a GPU is).

    python3 -m benchmarks.bench_gpu            # the tests, then n = 1e8 and a sweep of 1e6 configurations
    python3 -m benchmarks.bench_gpu --quick    # n = 1e7, 1e5 configurations: a dry run of the script
    python3 -m benchmarks.bench_gpu --no-tests # the figures only

The tests: tests/test_fast_paths.py, tests/test_contract.py, tests/test_backend.py (the CuPy
backend and the fused kernel, bitwise against the readable CuPy code) and
tests/test_cuda_kernels.py (NVRTC and host C++), with pytest; the script fails if the GPU tests
were skipped. The figures (`run`, also called by `make bench`):

* the card, the driver, CUDA, CuPy, torch and NumPy versions;
* the GPU's copy bandwidth: a device-to-device copy of n float32 (2n * 4 bytes moved per copy);
* refimpl Adam on n float32 CuPy arrays, through the fused kernel (refimpl.fast) and through the
  readable path (one kernel per line), as time per step and, for the fused kernel, as a fraction
  of the bandwidth bound 7 * 4n bytes / bandwidth (read param, grad, m, v; write param, m, v).
  Target: at least 0.7;
* torch.optim.Adam(fused=True) on the same GPU and the same n: target, refimpl at most 1.2 times
  its time;
* a sweep on the GPU: 1e6 learning rates of Adam on Rosenbrock in one broadcast run, 1,000
  steps, fused and readable.

Times come from CUDA events around ``repeats`` back-to-back calls (the steady state of a training
loop: Python prepares the next step while the GPU runs this one), the median of 5 such rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys

import numpy as np

import refimpl
import refimpl.fast as fast

TEST_FILES = ["tests/test_fast_paths.py", "tests/test_contract.py", "tests/test_backend.py",
              "tests/test_cuda_kernels.py"]


def gpu_reason() -> str | None:
    try:
        import cupy
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "CuPy finds no GPU"
    except Exception as e:
        return f"no GPU: CuPy unavailable ({type(e).__name__}: {e})"
    return None


def card() -> dict:
    """The GPU and the software that ran on it."""
    import cupy
    properties = cupy.cuda.runtime.getDeviceProperties(0)
    info = {"device": properties["name"].decode(), "compute_capability": f"{properties['major']}.{properties['minor']}",
            "memory_gib": round(properties["totalGlobalMem"] / 2**30, 1),
            "driver": cupy.cuda.runtime.driverGetVersion(), "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(),
            "cupy": cupy.__version__, "numpy": np.__version__, "python": sys.version.split()[0]}
    try:
        import torch
        info["torch"] = torch.__version__
    except Exception as e:
        info["torch"] = f"not importable: {type(e).__name__}"
    return info


def _gpu_seconds(call, repeats: int, rounds: int = 5) -> float:
    """Seconds per call: CUDA events around ``repeats`` back-to-back calls, median of ``rounds``."""
    import cupy
    call()
    cupy.cuda.Device().synchronize()
    times = []
    for _ in range(rounds):
        start, stop = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        for _ in range(repeats):
            call()
        stop.record()
        stop.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, stop) / 1e3 / repeats)
    return statistics.median(times)


def _fused_kernels_kept() -> int:
    """How many signatures of refimpl's updates have a kept fused kernel (0: the readable path ran)."""
    from refimpl import _fuse
    return sum(1 for entries in _fuse._CACHE.values() if entries)


def run(*, n: int = 10**8, sweep_k: int = 10**6, sweep_t: int = 1000, repeats: int = 20, progress=print) -> dict:
    reason = gpu_reason()
    if reason is not None:
        return {"not_measured": reason}
    import cupy
    progress(f"  gpu: n={n:.0e} float32")
    result = {**card(), "n": n}
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
    result["fused_kernels_kept"] = _fused_kernels_kept()
    with fast.settings(enabled=False):
        result["refimpl_adam_readable_seconds"] = _gpu_seconds(step, max(3, repeats // 4))
    result["refimpl_adam_fused_fraction_of_bound"] = bound / result["refimpl_adam_fused_seconds"]
    result["readable_over_fused"] = result["refimpl_adam_readable_seconds"] / result["refimpl_adam_fused_seconds"]
    del box, x
    cupy.get_default_memory_pool().free_all_blocks()
    try:
        import torch
        if not torch.cuda.is_available():
            raise RuntimeError("this torch build has no CUDA")
        p = torch.randn(n, device="cuda").requires_grad_()
        p.grad = torch.randn(n, device="cuda")
        torch_opt = torch.optim.Adam([p], lr=1e-3, fused=True)
        result["torch_adam_fused_seconds"] = _gpu_seconds(torch_opt.step, repeats)
        result["torch_adam_fused_fraction_of_bound"] = bound / result["torch_adam_fused_seconds"]
        result["refimpl_over_torch_fused"] = result["refimpl_adam_fused_seconds"] / result["torch_adam_fused_seconds"]
        del p, torch_opt
        torch.cuda.empty_cache()
    except Exception as e:
        result["torch_adam_fused_seconds"] = f"not measured: {type(e).__name__}: {e}"

    progress(f"  gpu: sweep of {sweep_k:.0e} configurations, {sweep_t} steps")
    lrs = cupy.asarray(np.logspace(-4, 0, sweep_k))[:, None]
    start = cupy.tile(cupy.asarray([-1.2, 1.0]), (sweep_k, 1))
    sweep_opt = refimpl.Adam(lr=lrs)

    def sweep():
        xs, state = start, sweep_opt.init(start)
        for _ in range(sweep_t):
            xs, state = sweep_opt.step(xs, refimpl.problems.rosenbrock(xs)[1], state)
        return xs

    result["sweep"] = {"K": sweep_k, "T": sweep_t, "dtype": "float64",
                       "seconds_fused": _gpu_seconds(sweep, 1, rounds=3)}
    with fast.settings(enabled=False):
        result["sweep"]["seconds_readable"] = _gpu_seconds(sweep, 1, rounds=1)
    final = sweep()
    result["sweep"]["configurations_within_1e-3_of_the_minimum"] = int(
        cupy.count_nonzero(cupy.all(cupy.abs(final - cupy.asarray([1.0, 1.0])) < 1e-3, axis=1)))
    return result


def run_tests(files=TEST_FILES, timeout: float = 330) -> tuple[int, str]:
    """pytest on the CuPy test files; (exit status, the summary lines). Skipped GPU tests fail it,
    and so does a run past ``timeout`` seconds (the figures still follow)."""
    command = [sys.executable, "-m", "pytest", *files, "-q", "-rs", "-p", "no:cacheprovider", "--durations=8"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
    except subprocess.TimeoutExpired as e:
        output = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        return 124, "\n".join(output.splitlines()[-100:] + [f"the tests ran past {timeout} s and were stopped"])
    output = done.stdout + done.stderr
    summary = [line for line in output.splitlines()
               if re.search(r"passed|failed|error|SKIPPED|^FAILED|^ERROR|^[0-9.]+s (call|setup)", line)]
    status = done.returncode
    if any("no GPU" in line or "CuPy unavailable" in line for line in summary):
        summary.append("the GPU tests were skipped: CuPy finds no GPU")
        status = status or 1
    if status:  # show the failures
        summary += output.splitlines()[-200:]
    return status, "\n".join(summary)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="n = 1e7 and 1e5 configurations (a dry run)")
    parser.add_argument("--no-tests", action="store_true", help="the figures only")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    status = 0
    if not args.no_tests:
        print("== tests:", " ".join(TEST_FILES), flush=True)
        status, summary = run_tests()
        print(summary, flush=True)
    print("== figures", flush=True)
    result = run(n=10**7 if args.quick else 10**8, sweep_k=10**5 if args.quick else 10**6)
    for key, value in result.items():
        if isinstance(value, float):
            value = f"{value * 1e3:.4g} ms" if key.endswith("seconds") else f"{value:.4g}"
        print(f"{key}: {value}", flush=True)
    if "not_measured" not in result:
        fraction, ratio = result["refimpl_adam_fused_fraction_of_bound"], result.get("refimpl_over_torch_fused")
        print(f"target fraction of bound >= 0.7: {fraction:.3f} ({'met' if fraction >= 0.7 else 'NOT met'})")
        if isinstance(ratio, float):
            print(f"target refimpl / torch fused <= 1.2: {ratio:.3f} ({'met' if ratio <= 1.2 else 'NOT met'})")
    text = json.dumps(result, indent=1, default=str)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text)
    return status


if __name__ == "__main__":
    sys.exit(main())
