"""Timing helpers shared by the benchmarks: interleaved medians, copy bandwidth, the machine."""

from __future__ import annotations

import concurrent.futures
import datetime
import os
import platform
import statistics
import time

import numpy as np


def machine() -> dict:
    """What the numbers were measured on."""
    info = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "platform": platform.platform(),
            "python": platform.python_version(), "numpy": np.__version__, "cpus": os.cpu_count(),
            "load_average_before": os.getloadavg()}
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        info["cpu"] = names[0] if names else platform.processor()
        with open("/proc/meminfo") as f:
            info["memory_gib"] = round(int(f.readline().split()[1]) / 2**20, 1)
    except OSError:
        info["cpu"] = platform.processor()
    for name in ("torch", "jax", "optax", "cupy"):
        try:
            info[name] = __import__(name).__version__
        except Exception:
            info[name] = None
    return info


def interleaved(batches: dict, *, repeats: int, min_seconds: float) -> dict:
    """Median seconds per call of each variant, measured in interleaved rounds.

    ``batches`` maps a name to a function ``run(k)`` that makes ``k`` calls of the variant. Each
    is warmed up, then calibrated to ``k`` calls per round lasting about ``min_seconds``; every
    round times each variant once, in turn, so that a change in the machine's load touches all
    of them alike and the ratios of medians compare like with like. A variant that raises is
    reported as its error message.
    """
    sizes, failed = {}, {}
    for name, run in batches.items():
        try:
            run(2)
            start = time.perf_counter()
            run(1)
            sizes[name] = max(1, int(min_seconds / max(time.perf_counter() - start, 1e-7)))
        except Exception as e:  # e.g. a fused kernel that this build of torch does not offer
            failed[name] = f"{type(e).__name__}: {e}"
    samples = {name: [] for name in sizes}
    for _ in range(repeats):
        for name, k in sizes.items():
            start = time.perf_counter()
            batches[name](k)
            samples[name].append((time.perf_counter() - start) / k)
    result = {name: statistics.median(s) for name, s in samples.items()}
    result.update(failed)
    return result


def copy_bandwidth(threads: int = 1, nbytes: int = 256 * 2**20, repeats: int = 7) -> float:
    """Bytes per second moved by a large array copy (each copied byte is read once and written
    once: 2 * nbytes per copy), with ``threads`` threads copying equal slices. The arrays are
    larger than any cache, so this is the memory bandwidth an elementwise step can hope for."""
    src = np.ones(nbytes // 8)
    dst = np.empty_like(src)
    bounds = np.linspace(0, src.size, threads + 1).astype(int)
    pieces = [(dst[a:b], src[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    pool = concurrent.futures.ThreadPoolExecutor(threads) if threads > 1 else None

    def copy():
        if pool is None:
            np.copyto(dst, src)
        else:
            list(pool.map(lambda piece: np.copyto(*piece), pieces))

    copy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        copy()
        times.append(time.perf_counter() - start)
    if pool is not None:
        pool.shutdown()
    return 2 * nbytes / statistics.median(times)


def fmt_time(seconds) -> str:
    if not isinstance(seconds, float):
        return "n/a"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def fmt_ratio(a, b) -> str:
    return f"{a / b:.2f}" if isinstance(a, float) and isinstance(b, float) else "n/a"
