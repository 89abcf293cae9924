"""A real consumer of the golden vectors: a small C Adam (tests/c/adam_consumer.c), compiled by
the system C compiler, must pass every Adam case of the shipped adam.json (format version 2: lr
and beta1 schedules, read from each step, and a per-parameter weight decay included); three deliberately
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


def supported(hp: dict) -> bool:
    """The declared rule of this consumer: schedules (of lr and beta1, with their values read from
    each step) and a per-parameter weight decay are supported; a case with any other per-parameter
    or scheduled number is skipped, and counted as skipped, never as passed."""
    for name, value in hp.items():
        if isinstance(value, dict) and not (name == "weight_decay" or (name in ("lr", "beta1") and "schedule" in value)):
            return False
    return True


def _text(doc: dict) -> tuple[str, int]:
    """The supported cases of an adam.json as the plain text adam_consumer.c reads, and the number skipped."""
    out, skipped = [], 0
    h = lambda x: float(x).hex()  # noqa: E731 - exact
    for case in doc["cases"]:
        hp, names = case["hyperparameters"], list(case["params"])
        if not supported(hp):
            skipped += 1
            continue
        steps = case["steps"]
        out.append(f"case {case['id']} {32 if case['dtype'] == 'float32' else 64} {len(names)} {len(steps)} "
                   f"{h(case['tolerance']['rtol'])}")
        flags = [hp["eps_hat"], hp["bias_correction"], hp["amsgrad"], hp["amsgrad_max_of"] == "v_hat",
                 hp["decoupled_weight_decay"], hp["couple_weight_decay"], hp["t_offset"],
                 ("exact", "float32", "float32_beta_powers").index(hp.get("scalars", "exact"))]
        out.append("hyper " + " ".join(h(hp[k]) for k in ("beta2", "eps", "eps_root"))
                   + " " + " ".join(str(int(f)) for f in flags))
        wd = hp["weight_decay"]
        for name in names:
            decay = wd[name] if isinstance(wd, dict) else wd
            out.append(f"array {name} {len(case['params'][name])} {h(decay)} " + " ".join(map(h, case["params"][name])))
        for step in steps:
            now = step.get("hyperparameters", {})
            out.append(f"step {h(now.get('lr', hp['lr']))} {h(now.get('beta1', hp['beta1']))}")
            for name in names:
                fields = [step["grads"][name], step["params"][name], step["state"]["m"][name], step["state"]["v"][name]]
                out.append(" ".join(h(x) for values in fields for x in values))
    return "\n".join(out) + "\n", skipped


@pytest.fixture(scope="module")
def vectors_text() -> str:
    doc = json.loads((_vectors.canonical_dir() / "adam.json").read_text(encoding="utf-8"))
    assert all(isinstance(x, (int, float)) for c in doc["cases"] for s in c["steps"] for x in s["params"]["w"]), \
        "the Adam vectors are finite (non-finite numbers would be strings)"
    text, skipped = _text(doc)
    assert skipped == 0, "every shipped Adam case is one this consumer supports"
    return text


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
    assert n == sum(1 for c in _vectors.CASES if c.algorithm == "Adam") >= 31
    ids = [line.split()[1] for line in vectors_text.splitlines() if line.startswith("case ")]
    assert {"adam/theorem_schedules/float32", "adam/per_parameter_decay/float64"} <= set(ids)


def test_the_skip_rule_is_declared_and_counted():
    doc = json.loads((_vectors.canonical_dir() / "adam.json").read_text(encoding="utf-8"))
    case = dict(doc["cases"][0], hyperparameters=dict(doc["cases"][0]["hyperparameters"], lr={"w": 0.01, "b": 0.02}))
    text, skipped = _text(dict(doc, cases=[case, doc["cases"][1]]))
    assert skipped == 1 and text.count("case ") == 1


def test_a_consumer_that_ignores_the_schedules_fails(tmp_path, vectors_text):
    """Feeding the constant lr and beta1 where the file gives the step's values: the schedule cases fail."""
    doc = json.loads((_vectors.canonical_dir() / "adam.json").read_text(encoding="utf-8"))
    for case in doc["cases"]:
        for step in case["steps"]:
            step.pop("hyperparameters", None)
        for name in ("lr", "beta1"):
            if isinstance(case["hyperparameters"][name], dict):
                schedule = case["hyperparameters"][name]
                case["hyperparameters"][name] = schedule.get("alpha", schedule.get("value"))
    text, _ = _text(doc)
    passed, failed, stderr = consume(build(tmp_path), text)
    assert failed == 4 and "lr_inverse_sqrt" in stderr and "theorem_schedules" in stderr


def test_a_counter_one_ahead_fails(tmp_path, vectors_text):
    passed, failed, stderr = consume(build(tmp_path, "-DWRONG_T_PLUS_1"), vectors_text)
    # 28 of 31 fail, most at step 1. Three cannot see the counter under the vectors' simple
    # tolerance (t * 1024 u * S): no_bias_correction (no counter to be wrong), tiny/float64 (eps
    # dominates, the parameters do not move measurably) and zero_grads/float32 (the first moves
    # come at t = 6, where t + 1 changes the step by 3% of lr, inside 6 * 1024 u * S in float32).
    assert (passed, failed) == (3, 28) and "step 1:" in stderr


def test_nan_at_step_1_fails_and_the_naive_check_lets_it_through(tmp_path, vectors_text):
    passed, failed, stderr = consume(build(tmp_path, "-DNAN_AT_STEP1"), vectors_text)
    assert passed == 0 and "got nan" in stderr
    passed, failed, _ = consume(build(tmp_path, "-DNAN_AT_STEP1", "-DNAIVE_CHECK"), vectors_text)
    assert (passed, failed) == (31, 0)   # "if (d > tol) fail" never fails on NaN: the README's trap (all 31 pass)
