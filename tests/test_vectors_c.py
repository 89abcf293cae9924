"""A real consumer of the golden vectors: a small C Adam (tests/c/adam_consumer.c), compiled by
the system C compiler, must pass every Adam case of the shipped adam.json; three deliberately
wrong builds must fail (bias corrections with t + 1; NaN at step 1), and the natural but NaN-blind
C comparison ``if (d > tol)`` is shown to let the NaN build through, which is why the README and
schema.json write the check as ``!(d <= tol)``.

The JSON is parsed on the Python side (the standard library's parser) and handed to the C program
as text numbers in C99 hexadecimal (``float.hex``), which ``strtod`` reads exactly.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from refimpl import _vectors

SOURCE = Path(__file__).parent / "c" / "adam_consumer.c"
COMPILER = next((c for c in ("cc", "gcc", "clang") if shutil.which(c)), None)
pytestmark = pytest.mark.skipif(COMPILER is None, reason="no C compiler (cc, gcc or clang) on PATH")


def _text(doc: dict) -> str:
    """Every case of an adam.json as the plain text adam_consumer.c reads."""
    out = []
    h = lambda x: float(x).hex()  # noqa: E731 - exact
    for case in doc["cases"]:
        hp, names = case["hyperparameters"], list(case["params"])
        steps = case["steps"]
        out.append(f"case {case['id']} {32 if case['dtype'] == 'float32' else 64} {len(names)} {len(steps)} "
                   f"{h(case['tolerance']['rtol'])}")
        flags = [hp["eps_hat"], hp["bias_correction"], hp["amsgrad"], hp["amsgrad_max_of"] == "v_hat",
                 hp["decoupled_weight_decay"], hp["couple_weight_decay"], hp["t_offset"],
                 ("exact", "float32", "float32_beta_powers").index(hp.get("scalars", "exact"))]
        out.append("hyper " + " ".join(h(hp[k]) for k in ("lr", "beta1", "beta2", "eps", "eps_root", "weight_decay"))
                   + " " + " ".join(str(int(f)) for f in flags))
        for name in names:
            out.append(f"array {name} {len(case['params'][name])} " + " ".join(map(h, case["params"][name])))
        for step in steps:
            for name in names:
                fields = [step["grads"][name], step["params"][name], step["state"]["m"][name], step["state"]["v"][name]]
                out.append(" ".join(h(x) for values in fields for x in values))
    return "\n".join(out) + "\n"


@pytest.fixture(scope="module")
def vectors_text() -> str:
    doc = json.loads((_vectors.canonical_dir() / "adam.json").read_text(encoding="utf-8"))
    assert all(isinstance(x, (int, float)) for c in doc["cases"] for s in c["steps"] for x in s["params"]["w"]), \
        "the Adam vectors are finite (non-finite numbers would be strings)"
    return _text(doc)


def build(tmp_path, *flags) -> Path:
    exe = tmp_path / ("adam" + "".join(f.lower() for f in flags).replace("-d", "_"))
    done = subprocess.run([COMPILER, "-std=c99", "-O1", "-ffp-contract=off", *flags, str(SOURCE), "-o", str(exe),
                           "-lm"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return exe


def consume(exe, text) -> tuple[int, int, str]:
    done = subprocess.run([str(exe)], input=text, capture_output=True, text=True, timeout=60)
    passed, _, failed, _ = done.stdout.split()
    return int(passed.rstrip(",")), int(failed), done.stderr


def test_the_c_adam_passes_every_case(tmp_path, vectors_text):
    passed, failed, stderr = consume(build(tmp_path), vectors_text)
    n = vectors_text.count("\ncase ") + vectors_text.startswith("case ")
    assert (passed, failed) == (n, 0), stderr
    assert n == sum(1 for c in _vectors.CASES if c.algorithm == "Adam") >= 25


def test_a_counter_one_ahead_fails(tmp_path, vectors_text):
    passed, failed, stderr = consume(build(tmp_path, "-DWRONG_T_PLUS_1"), vectors_text)
    # 22 of 25 fail, most at step 1. Three cannot see the counter under the vectors' simple
    # tolerance (t * 1024 u * S): no_bias_correction (no counter to be wrong), tiny/float64 (eps
    # dominates, the parameters do not move measurably) and zero_grads/float32 (the first moves
    # come at t = 6, where t + 1 changes the step by 3% of lr, inside 6 * 1024 u * S in float32).
    assert (passed, failed) == (3, 22) and "step 1:" in stderr


def test_nan_at_step_1_fails_and_the_naive_check_lets_it_through(tmp_path, vectors_text):
    passed, failed, stderr = consume(build(tmp_path, "-DNAN_AT_STEP1"), vectors_text)
    assert passed == 0 and "got nan" in stderr
    passed, failed, _ = consume(build(tmp_path, "-DNAN_AT_STEP1", "-DNAIVE_CHECK"), vectors_text)
    assert failed == 0 and passed > 20   # "if (d > tol) fail" never fails on NaN: the README's trap
