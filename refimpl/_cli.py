"""The command line: ``refimpl vectors write|check``, ``refimpl compat`` and ``refimpl --version``
(the same as ``python -m refimpl ...``)."""

from __future__ import annotations

import argparse
import os
import sys
import time

__all__ = ["main", "Progress"]


class Progress:
    """A one-line progress bar on stderr, shown only on a terminal and only once a run has
    taken more than ``delay`` seconds (short runs print nothing extra)."""

    def __init__(self, total: int, what: str, *, stream=None, delay: float = 1.0, force: bool = False):
        self.total, self.what, self.done = total, what, 0
        self.stream = sys.stderr if stream is None else stream
        self.enabled = force or (hasattr(self.stream, "isatty") and self.stream.isatty())
        self.start, self.delay, self.shown = time.monotonic(), delay, False

    def __call__(self, item: str = "") -> None:
        self.done += 1
        if not self.enabled or time.monotonic() - self.start < self.delay:
            return
        width = 30
        filled = int(width * self.done / max(self.total, 1))
        bar = "#" * filled + "." * (width - filled)
        self.stream.write(f"\r{self.what} [{bar}] {self.done}/{self.total} {item[:40]:<40}")
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("\r" + " " * 100 + "\r")
            self.stream.flush()


def _vectors_write(args) -> int:
    from . import _vectors
    progress = Progress(len(_vectors.CASES), "writing")
    try:
        paths = _vectors.write(args.dir, steps=args.steps, progress=progress)
    finally:
        progress.close()
    n = len(_vectors.CASES)
    print(f"wrote {n} cases of {args.steps} steps to {args.dir}: {', '.join(p.name for p in paths)}")
    return 0


def _vectors_check(args) -> int:
    from . import _vectors
    directory = args.dir if args.dir is not None else _vectors.canonical_dir()
    progress = Progress(len(_vectors.CASES), "checking")
    try:
        report = _vectors.check(directory, exact=args.exact, progress=progress)
    finally:
        progress.close()
    for m in report.mismatches:
        print(m)
    verdict = "OK" if report.ok else f"FAILED: {len(report.mismatches)} mismatch(es)"
    print(f"{verdict}: {report.files} file(s), {report.cases} case(s), {report.values} values, "
          f"{report.exact} bitwise equal" + (" (exact mode)" if args.exact else ""))
    return 0 if report.ok else 1


def _compat(args) -> int:
    from . import _compat
    peers = _compat.installed_peers()
    if args.peers:
        wanted = [p.strip() for p in args.peers.split(",") if p.strip()]
        unknown = [p for p in wanted if p not in _compat.PEERS]
        if unknown:
            raise ValueError(f"--peers names {unknown}; the peers are {', '.join(_compat.PEERS)}")
        missing = [p for p in wanted if p not in peers]
        if missing:
            raise ValueError(f"--peers names {missing}, which cannot be imported here; install them with "
                             f"`pip install 'refimpl[peers]'` (Keras: `pip install keras`)")
        peers = wanted
    if not peers:
        print("no peer library is installed (torch, optax, keras): pip install 'refimpl[peers]'", file=sys.stderr)
        return 1
    total = sum(len(_compat.PEERS[p]()) for p in peers)
    progress = Progress(total, "diagnosing")
    try:
        table = _compat.markdown(_compat.compat_rows(args.steps, peers=peers, progress=progress), args.steps)
    finally:
        progress.close()
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(table)
        print(f"wrote the table ({total} rows) to {args.output}")
    else:
        print(table, end="")
    return 0


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return value


def parser() -> argparse.ArgumentParser:
    from . import __version__
    prog = "python -m refimpl" if os.path.basename(sys.argv[0]) == "__main__.py" else "refimpl"
    p = argparse.ArgumentParser(prog=prog, description="refimpl's command line: golden vectors "
                                "for implementations outside Python, and the compatibility table of the peers.")
    p.add_argument("--version", action="version", version=f"refimpl {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    v = sub.add_parser("vectors", help="write or check golden vectors",
                       description="Golden vectors: refimpl's trajectories as versioned JSON (see schema.json).")
    vsub = v.add_subparsers(dest="action", required=True, metavar="ACTION")
    w = vsub.add_parser("write", help="write the vectors and their JSON Schema into DIR",
                        description="Write adam.json, ndadam.json, adal.json, sgd.json and schema.json into DIR. "
                                    "With the default --steps this is the canonical set shipped in refimpl/vectors/.")
    w.add_argument("dir", metavar="DIR", help="the directory to write (created if needed)")
    w.add_argument("--steps", type=_positive, default=20, help="steps per case (default 20)")
    w.set_defaults(run=_vectors_write)
    c = vsub.add_parser("check", help="recompute the vectors of DIR with this refimpl and report every mismatch",
                        description="Validate every *.json of DIR against the schema, recompute each case and report "
                                    "every value outside its tolerance (format version 3: the step's tolerance of that array, "
                                    "which is itself checked against what refimpl computes; versions 1 and 2: "
                                    "t * rtol * S). Exits 1 on any mismatch.")
    c.add_argument("dir", metavar="DIR", nargs="?", default=None,
                   help="the directory to check (default: the canonical set inside the package)")
    c.add_argument("--exact", action="store_true", help="require every value to be bitwise equal")
    c.set_defaults(run=_vectors_check)
    m = sub.add_parser("compat", help="diagnose every installed peer optimizer and print a Markdown table",
                       description="Run torch, optax and Keras optimizers (those installed) through "
                                   "refimpl.testing.diagnose and print which refimpl configuration each matches.")
    m.add_argument("--steps", type=_positive, default=100, help="float64 steps per optimizer (default 100)")
    m.add_argument("--peers", default="", help="comma-separated subset of torch,optax,keras (default: all installed)")
    m.add_argument("--output", "-o", default="", help="write the table to this file instead of stdout")
    m.set_defaults(run=_compat)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
