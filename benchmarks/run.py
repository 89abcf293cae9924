"""Run the benchmark suite; print Markdown tables; write JSON.

    python -m benchmarks.run            # the full suite (about 10 minutes on a 2-core machine)
    python -m benchmarks.run --quick    # smaller sizes, fewer repeats, a shorter sweep (about 2 minutes)

See benchmarks/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from . import bench_gpu, bench_steps, bench_sweep
from .common import copy_bandwidth, fmt_ratio, fmt_time, machine

REFIMPL = ["refimpl Adam", "refimpl Adam, whole arrays", "refimpl AdamW", "refimpl ND-Adam", "refimpl AdaL"]
TORCH = [f"torch {cls} {mode}" for cls in ("Adam", "AdamW")
         for mode in ("foreach=False", "foreach=True", "fused=True")]


def markdown_steps(rows, bandwidth) -> str:
    out = []
    for threads in sorted({r["threads"] for r in rows}):
        for dtype in sorted({r["dtype"] for r in rows}):
            block = [r for r in rows if r["threads"] == threads and r["dtype"] == dtype]
            if not block:
                continue
            bw = bandwidth[str(threads)]
            out.append(f"\n#### Time per step: {dtype}, {threads} thread(s) (copy bandwidth {bw / 1e9:.1f} GB/s)\n")
            out.append("| params | " + " | ".join(REFIMPL + TORCH) + " | bound (7 arrays) | "
                       + bench_steps.FRESH + " |")
            out.append("|---" * (len(REFIMPL) + len(TORCH) + 3) + "|")
            for r in block:
                t = r["seconds_per_step"]
                bound = bench_steps.ADAM_ARRAYS * r["n"] * np.dtype(dtype).itemsize / bw
                out.append(f"| {r['n']:.0e} | " + " | ".join(fmt_time(t.get(k)) for k in REFIMPL + TORCH)
                           + f" | {fmt_time(bound)} | {fmt_time(t.get(bench_steps.FRESH))} |")
            out.append(f"\n#### Ratios (same run): {dtype}, {threads} thread(s)\n")
            out.append("| params | refimpl Adam / fastest torch Adam | refimpl Adam / torch Adam foreach=True "
                       "| refimpl AdamW / fastest torch AdamW | whole arrays / refimpl Adam "
                       "| refimpl Adam: fraction of bound | torch Adam fused: fraction of bound |")
            out.append("|---" * 7 + "|")
            for r in block:
                t = r["seconds_per_step"]
                bound = bench_steps.ADAM_ARRAYS * r["n"] * np.dtype(dtype).itemsize / bw
                fastest = _fastest(t, "torch Adam ")
                fastest_w = _fastest(t, "torch AdamW ")
                out.append(f"| {r['n']:.0e} | {fmt_ratio(t.get('refimpl Adam'), fastest)} "
                           f"| {fmt_ratio(t.get('refimpl Adam'), t.get('torch Adam foreach=True'))} "
                               f"| {fmt_ratio(t.get('refimpl AdamW'), fastest_w)} "
                           f"| {fmt_ratio(t.get('refimpl Adam, whole arrays'), t.get('refimpl Adam'))} "
                           f"| {fmt_ratio(bound, t.get('refimpl Adam'))} "
                           f"| {fmt_ratio(bound, t.get('torch Adam fused=True'))} |")
    return "\n".join(out)


def _fastest(times, prefix):
    values = [v for k, v in times.items() if k.startswith(prefix) and isinstance(v, float)]
    return min(values) if values else None


def markdown_sweep(results) -> str:
    out = ["\n#### Sweep: 1024 learning rates of Adam on Rosenbrock, one run (seconds, fresh process each)\n",
           "| dtype | cores | steps | refimpl, problems.rosenbrock | refimpl, gradient only "
           "| JAX jit(vmap(scan)), compile included | JAX again, compiled | refimpl (gradient only) / JAX incl. compile |",
           "|---" * 8 + "|"]
    jax_key = "jax.jit(jax.vmap(optax.adam in lax.scan)), compile included"
    for r in results:
        s = r["seconds"]
        cells = [s.get("refimpl, problems.rosenbrock"), s.get("refimpl, gradient only"),
                 s.get(jax_key), s.get("jax, the same sweep again (compiled)")]
        out.append(f"| {r['dtype']} | {'1' if r['one_core'] else 'all'} | {r['T']} | "
                   + " | ".join(fmt_time(c) for c in cells)
                   + f" | {fmt_ratio(s.get('refimpl, gradient only'), s.get(jax_key))} |")
    return "\n".join(out)


def markdown_gpu(result) -> str:
    if "not_measured" in result:
        return f"\n#### GPU\n\nNot measured: {result['not_measured']}."
    lines = ["\n#### GPU (CuPy)\n", "| figure | value |", "|---|---|"]
    for key, value in result.items():
        if isinstance(value, float):
            value = fmt_time(value) if key.endswith("seconds") else f"{value:.3g}"
        lines.append(f"| {key} | {value} |")
    return "\n".join(lines)


def targets(rows, sweeps, gpu=None) -> str:
    """The issue's targets, as ratios from this run."""
    out = ["\n#### Targets\n"]
    for r in rows:
        t = r["seconds_per_step"]
        if r["n"] == min(x["n"] for x in rows):
            ratio = t["refimpl Adam"] / _fastest(t, "torch Adam ")
            out.append(f"- small ({r['n']:.0e} params, {r['dtype']}, {r['threads']} thread(s)): refimpl Adam / "
                       f"fastest torch Adam = {ratio:.2f} (target <= 0.5: {'met' if ratio <= 0.5 else 'NOT met'})")
        if r["n"] == 10**7 and r["dtype"] == "float32":
            ratio = t["refimpl Adam"] / t["torch Adam foreach=True"]
            out.append(f"- large (1e7 float32, {r['threads']} thread(s)): refimpl Adam / torch Adam foreach=True = "
                       f"{ratio:.2f} (target <= 1: {'met' if ratio <= 1 else 'NOT met'})")
    jax_key = "jax.jit(jax.vmap(optax.adam in lax.scan)), compile included"
    for r in sweeps:
        s = r["seconds"]
        for name in ("refimpl, problems.rosenbrock", "refimpl, gradient only"):
            if isinstance(s.get(name), float) and isinstance(s.get(jax_key), float):
                ratio = s[name] / s[jax_key]
                verdict = ("met" if ratio <= 1 else "NOT met") if r["T"] == 10_000 else \
                    f"not judged: the target is stated for 10,000 steps, this run has {r['T']}"
                out.append(f"- sweep ({r['dtype']}, {'1 core' if r['one_core'] else 'all cores'}, {r['T']} steps, "
                           f"{name}): refimpl / JAX incl. compile = {ratio:.2f} (target <= 1: {verdict})")
    if gpu is not None and "not_measured" in gpu:
        out.append(f"- GPU (>= 0.7 of copy bandwidth at 1e8 float32; <= 1.2x torch fused=True): not measured "
                   f"({gpu['not_measured']})")
    elif gpu is not None:
        fraction, ratio = gpu.get("refimpl_adam_fused_fraction_of_bound"), gpu.get("refimpl_over_torch_fused")
        out.append(f"- GPU: fraction of copy bandwidth = {fraction:.2f} (target >= 0.7: "
                   f"{'met' if fraction >= 0.7 else 'NOT met'}); refimpl / torch fused = "
                   + (f"{ratio:.2f} (target <= 1.2: {'met' if ratio <= 1.2 else 'NOT met'})"
                      if isinstance(ratio, float) else f"not measured ({gpu.get('torch_adam_fused_seconds')})"))
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats, a shorter sweep")
    parser.add_argument("--json", default=os.path.join("_build", "bench", "results.json"), help="where to write JSON")
    parser.add_argument("--only", choices=("steps", "sweep", "gpu"), action="append",
                        help="run only these parts (repeatable)")
    parser.add_argument("--threads", type=int, action="append",
                        help="thread counts for the step timings (repeatable; default: 1 and all)")
    args = parser.parse_args(argv)
    parts = set(args.only or ("steps", "sweep", "gpu"))
    progress = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731

    results = {"machine": machine(), "quick": args.quick}
    progress(f"machine: {results['machine']['cpu']}, {results['machine']['cpus']} CPUs, "
             f"load average {results['machine']['load_average_before']}")
    threads = sorted(set(args.threads or (1, bench_steps.all_threads())))
    if "steps" in parts:
        progress("  copy bandwidth")
        results["copy_bandwidth_bytes_per_s"] = {str(t): copy_bandwidth(t) for t in threads}
        results["steps"] = bench_steps.run(
            sizes=[10**2, 10**4, 10**6] if args.quick else [10**2, 10**4, 10**6, 10**7],
            dtypes=[np.float32, np.float64], thread_counts=threads,
            repeats=3 if args.quick else 7, min_seconds=0.01 if args.quick else 0.03, progress=progress)
    if "sweep" in parts:
        results["sweep"] = bench_sweep.run(K=1024, T=2000 if args.quick else 10_000, repeats=1 if args.quick else 3,
                                           progress=progress)
    if "gpu" in parts:
        results["gpu"] = bench_gpu.run(n=10**7 if args.quick else 10**8, progress=progress)
    results["machine"]["load_average_after"] = os.getloadavg()

    text = [f"### Benchmarks ({'quick' if args.quick else 'full'}): {results['machine']['date']}",
            f"\n{results['machine']['cpu']}, {results['machine']['cpus']} CPUs, "
            f"{results['machine'].get('memory_gib')} GiB; Python {results['machine']['python']}, "
            f"NumPy {results['machine']['numpy']}, torch {results['machine']['torch']}, "
            f"JAX {results['machine']['jax']}, optax {results['machine']['optax']}; load average "
            f"{results['machine']['load_average_before'][0]:.2f} before, "
            f"{results['machine']['load_average_after'][0]:.2f} after."]
    if "steps" in results:
        text.append(markdown_steps(results["steps"], results["copy_bandwidth_bytes_per_s"]))
    if "sweep" in results:
        text.append(markdown_sweep(results["sweep"]))
    if "gpu" in results:
        text.append(markdown_gpu(results["gpu"]))
    text.append(targets(results.get("steps", []), results.get("sweep", []), results.get("gpu")))
    print("\n".join(text))
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(results, f, indent=1)
    progress(f"JSON written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
