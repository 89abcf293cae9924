r"""Golden vectors: refimpl's trajectories as JSON, for implementations outside Python.

``python -m refimpl vectors write DIR`` writes one file per algorithm (``adam.json``,
``ndadam.json``, ``adal.json``, ``sgd.json``) and the JSON Schema (``schema.json``);
``python -m refimpl vectors check DIR`` recomputes every case with the current code and
reports every difference. The canonical set ships in the package (``refimpl/vectors/``).

The format (version 3; ``schema.json`` documents every member):

* a file: ``{"format": "refimpl-vectors", "version": 3, "algorithm": "Adam", "description",
  "number_encoding", "cases": [...]}``;
* a case: ``id`` (``adam/eps_hat/float64``), ``description``, ``dtype``, ``hyperparameters``
  (every constructor argument, defaults included), ``shapes`` (of the params and of each
  state field), the initial ``params`` and the ``steps``;
* a step: ``t`` (1 for the first), ``grads`` (fed in), ``params`` and ``state`` after it, and
  ``tolerance``: ``{"params": {name: atol}, "state": {field: {name: atol} or null}}``, the
  absolute tolerance of each array after that step; when a hyperparameter follows a schedule,
  ``hyperparameters`` holds its value at that step.

Version 3 replaces the case's ``tolerance`` of versions 1 and 2 (``{"rtol": 1024 u}`` for the
rule ``max|got - want| <= t * rtol * S``, S the largest value so far: loose, since S is the
size of the parameters and a step moves them by about lr) by these per-step tolerances, which
refimpl computes from the file's own trajectory (:mod:`refimpl._vectors_tolerance`: the
oracle's ``step_tolerance`` with the family's rounding counts, and for the state its own
trajectory's plus what a parameter error can feed into it). A consumer's array passes if
``!(max|got - want| <= atol)``. refimpl reads and checks versions 1 and 2 with their rule.

Version 2 adds to version 1 (which refimpl still reads) two forms of a hyperparameter's value:
a *schedule*, ``{"schedule": "inverse_sqrt", "alpha": 0.01}`` for :math:`\alpha/\sqrt t` and
``{"schedule": "exponential", "value": 0.9, "rate": 0.99}`` for :math:`\beta_1\lambda^{t-1}`
(the step size and first-moment decay of Kingma & Ba's convergence theorem), whose value at
every step is also written in the step, so a consumer need not evaluate it; and a
*per-parameter* value, ``{"w": 0.1, "b": 0.0}`` (one number per parameter name).

Numbers: the shortest decimal that round-trips to the binary64 value (Python's ``repr``,
what ``json.dumps`` writes), so any correctly rounding parser (C's ``strtod``, Rust's
``f64::from_str``) recovers every bit. A float32 value is written as the binary64 number
equal to it; parsing it as a double and converting to float is then exact. Non-finite values
are the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``.

Inputs are exact: every initial parameter and gradient is a small integer times a power of two
(from a fixed integer generator), so the files do not depend on any random number library.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .adal import AdaL
from .adam import Adam
from .ndadam import NDAdam
from .sgd import SGD
from ._vectors_schema import SchemaError, validate
from ._vectors_tolerance import tolerances
from .testing._probe import lcg_uniforms

__all__ = ["FORMAT", "VERSION", "CASES", "write", "check", "load", "schema", "canonical_dir"]

FORMAT = "refimpl-vectors"
VERSION = 3
READABLE = (1, 2, 3)   # the versions load() reads (2 adds schedules and per-parameter values, 3 per-step tolerances)
STEPS = 20
ALGORITHMS = {"Adam": Adam, "NDAdam": NDAdam, "AdaL": AdaL, "SGD": SGD}
FILES = {"Adam": "adam.json", "NDAdam": "ndadam.json", "AdaL": "adal.json", "SGD": "sgd.json"}
NUMBER_ENCODING = ("JSON numbers: the shortest decimal that round-trips to the IEEE-754 binary64 value; "
                   "float32 values are written as the binary64 number equal to them (parse as double, convert "
                   "to float: exact); non-finite values are the strings \"NaN\", \"Infinity\", \"-Infinity\". "
                   "Arrays are flat, row-major, with shapes given once per case.")
DESCRIPTIONS = {
    "Adam": "refimpl.Adam: Algorithm 1 of Kingma & Ba and every convention option (epsilon hat, epsilon in the "
            "root, bias correction, AMSGrad on v or v_hat, L2 / decoupled / uncoupled weight decay, step offset).",
    "NDAdam": "refimpl.NDAdam: w (2x2) holds two weight vectors (its columns, vector_axes {\"w\": [0]}); b is a "
              "scalar parameter that gets Adam.",
    "AdaL": "refimpl.AdaL: Adam on the transformed gradient ||g||_1 g, with every option of its description.",
    "SGD": "refimpl.SGD: torch.optim.SGD semantics (momentum buffer starting at g_1, dampening, Nesterov, L2).",
}


def canonical_dir():
    """The vectors shipped in the package (a ``Traversable`` directory)."""
    return resources.files("refimpl") / "vectors"


def schema() -> dict:
    """The JSON Schema of the format."""
    return json.loads((canonical_dir() / "schema.json").read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------- the cases


class Case(NamedTuple):
    id: str
    description: str
    algorithm: str
    hyperparameters: dict
    dtype: str
    stream: str = "normal"       # which gradient stream (see _gradients)
    scale: int = 0               # gradients multiplied by 2**scale


@dataclasses.dataclass(frozen=True)
class InverseSqrt:
    r"""The schedule :math:`\alpha_t = \alpha/\sqrt t` (Kingma & Ba, Theorem 4.1), written to JSON
    as ``{"schedule": "inverse_sqrt", "alpha": alpha}``."""

    alpha: float

    def __call__(self, t: int) -> float:
        return self.alpha / math.sqrt(t)

    def to_json(self) -> dict:
        return {"schedule": "inverse_sqrt", "alpha": self.alpha}


@dataclasses.dataclass(frozen=True)
class Exponential:
    r"""The schedule :math:`\beta_{1,t} = \beta_1 \lambda^{t-1}` (Kingma & Ba, Theorem 4.1),
    written to JSON as ``{"schedule": "exponential", "value": beta1, "rate": lam}``."""

    value: float
    rate: float

    def __call__(self, t: int) -> float:
        return self.value * self.rate ** (t - 1)

    def to_json(self) -> dict:
        return {"schedule": "exponential", "value": self.value, "rate": self.rate}


SCHEDULES = {"inverse_sqrt": (InverseSqrt, ("alpha",)), "exponential": (Exponential, ("value", "rate"))}


def _init_params() -> dict:
    return {"w": [[0.5, -1.25], [0.75, 2.0]], "b": [1.0]}


def _gradients(stream: str, scale: int, steps: int) -> list[dict]:
    noise = lcg_uniforms(5 * steps, seed=7)
    out = []
    for t in range(1, steps + 1):
        n = noise[5 * (t - 1): 5 * t]
        w = [[2 * n[0], 2 * n[1]], [2 * n[2], 2 * n[3]]]
        b = [n[4] + 0.25]
        if stream == "zeros" and (t <= 5 or t > steps - 5):
            w, b = [[0.0, 0.0], [0.0, 0.0]], [0.0]             # zero gradients first and last
        if stream == "spread":                                 # magnitudes from 2**-30 to 2**30
            w = [[w[0][0] * 2.0**-30, w[0][1] * 2.0**-26], [w[1][0], w[1][1] * 2.0**26]]
            b = [b[0] * 2.0**30]
        f = 2.0**scale
        out.append({"w": [[x * f for x in row] for row in w], "b": [x * f for x in b]})
    return out


def _cases() -> list[Case]:
    cases = []

    def add(algorithm, what, description, hyper, *, dtypes=("float64",), stream="normal", scale=0):
        for dtype in dtypes:
            sc = scale if dtype == "float64" else int(math.copysign(20, scale)) if scale else 0
            cases.append(Case(f"{algorithm.lower()}/{what}/{dtype}", description, algorithm, hyper, dtype, stream, sc))

    both = ("float64", "float32")
    lr = {"lr": 0.01}
    add("Adam", "default", "Algorithm 1 of Kingma & Ba (PyTorch, optax)", lr, dtypes=both)
    add("Adam", "eps_hat", "epsilon hat, Kingma & Ba's efficient form (TF1, Keras)", lr | {"eps_hat": True}, dtypes=both)
    add("Adam", "eps_root", "epsilon also inside the square root (optax's eps_root)", lr | {"eps_root": 1e-8})
    add("Adam", "no_bias_correction", "no bias correction", lr | {"bias_correction": False})
    add("Adam", "amsgrad_v", "AMSGrad on the raw v (PyTorch, Keras)", lr | {"amsgrad": True}, dtypes=both)
    add("Adam", "amsgrad_v_hat", "AMSGrad on the bias-corrected v (optax)",
        lr | {"amsgrad": True, "amsgrad_max_of": "v_hat"})
    add("Adam", "l2", "L2 weight decay in the gradient (torch.optim.Adam)", lr | {"weight_decay": 0.1})
    add("Adam", "decoupled", "decoupled weight decay scaled by lr (torch AdamW, optax adamw)",
        lr | {"weight_decay": 0.1, "decoupled_weight_decay": True})
    add("Adam", "decoupled_uncoupled", "decoupled weight decay not scaled by lr (Loshchilov & Hutter)",
        lr | {"weight_decay": 0.01, "decoupled_weight_decay": True, "couple_weight_decay": False})
    add("Adam", "t_offset_minus_1", "bias corrections with t - 1, skipped at 0 (a counter starting at 0)",
        lr | {"t_offset": -1})
    add("Adam", "t_offset_plus_1", "bias corrections with t + 1 (a counter one ahead)", lr | {"t_offset": 1})
    add("Adam", "beta1_zero", "beta1 = 0 (RMSProp with bias correction)", lr | {"beta1": 0.0}, dtypes=both)
    add("Adam", "zero_grads", "zero gradients for the first and last 5 steps", lr, dtypes=both, stream="zeros")
    add("Adam", "huge", "gradients times 2**200 (float32: 2**20)", lr, dtypes=both, scale=200)
    add("Adam", "tiny", "gradients times 2**-200 (float32: 2**-20): epsilon dominates", lr, dtypes=both, scale=-200)
    add("Adam", "scalars_float32", "epsilon hat with lr, betas, eps in float32 and beta^t a float32 running product "
        "(TF1 AdamOptimizer on float64 variables)", lr | {"eps_hat": True, "scalars": "float32"})
    add("Adam", "float32_beta_powers", "epsilon hat, lr = float32(0.01), beta^t from float32 betas (Keras 3 on "
        "TensorFlow, tf-keras, on float64 variables)", {"lr": float(np.float32(0.01)), "eps": 1e-7, "eps_hat": True,
                                                         "scalars": "float32_beta_powers"})
    add("Adam", "first_step_spread", "gradient magnitudes from 2**-30 to 2**30: the first step is about lr * "
        "sign(g) except where |g| is near eps", {"lr": 1.0}, stream="spread")
    add("Adam", "lr_inverse_sqrt", "the step size alpha / sqrt(t), alpha = 0.01 (Kingma & Ba, Theorem 4.1)",
        {"lr": InverseSqrt(0.01)}, dtypes=both)
    add("Adam", "theorem_schedules", "alpha / sqrt(t) and beta1 * lambda^(t - 1), lambda = 0.99 (Kingma & Ba, "
        "Theorem 4.1); the bias correction uses 1 - beta1^t with beta1 of step 1", {"lr": InverseSqrt(0.01),
                                                                                    "beta1": Exponential(0.9, 0.99)},
        dtypes=both)
    add("Adam", "per_parameter_decay", "decoupled weight decay on w only (torch param groups, optax's mask): "
        "weight_decay per parameter", lr | {"weight_decay": {"w": 0.1, "b": 0.0}, "decoupled_weight_decay": True},
        dtypes=both)

    nd = {"vector_axes": {"w": (0,)}, "lr_vector": 0.05, "lr_scalar": 0.01}
    add("NDAdam", "default", "the paper's ND-Adam", nd, dtypes=both)
    add("NDAdam", "eps_hat", "epsilon as in the official PyTorch code", nd | {"eps_hat": True})
    add("NDAdam", "weight_decay_scalar", "L2 weight decay on the scalar parameter", nd | {"weight_decay_scalar": 0.1})
    add("NDAdam", "beta1_zero", "beta1 = 0", nd | {"beta1": 0.0})
    add("NDAdam", "zero_grads", "zero gradients for the first and last 5 steps", nd, stream="zeros")
    add("NDAdam", "huge", "gradients times 2**200", nd, scale=200)
    add("NDAdam", "tiny", "gradients times 2**-200", nd, scale=-200)

    al = {"lr": 0.01}
    add("AdaL", "default", "the described AdaL: global l1 norm, epsilon in the preconditioner, lr / sqrt(t)",
        al, dtypes=both)
    add("AdaL", "per_tensor", "one l1 norm per array", al | {"norm": "per_tensor"})
    add("AdaL", "per_element", "|g| per element", al | {"norm": "per_element"})
    add("AdaL", "eps_denominator", "Adam's epsilon placement", al | {"eps_mode": "denominator"})
    add("AdaL", "lr_decay_none", "a constant lr", al | {"lr_decay": "none"})
    add("AdaL", "no_bias_correction", "no bias correction", al | {"bias_correction": False})
    add("AdaL", "beta1_zero", "beta1 = 0", al | {"beta1": 0.0})
    add("AdaL", "zero_grads", "zero gradients first and last: the guard where v_hat = 0", al, dtypes=both,
        stream="zeros")
    add("AdaL", "huge", "gradients times 2**200 (float32: 2**20)", al, dtypes=both, scale=200)
    add("AdaL", "tiny", "gradients times 2**-200 (float32: 2**-20)", al, dtypes=both, scale=-200)

    add("SGD", "plain", "gradient descent", {"lr": 0.01}, dtypes=both)
    add("SGD", "momentum", "heavy-ball momentum", {"lr": 0.01, "momentum": 0.9}, dtypes=both)
    add("SGD", "dampening", "momentum with dampening", {"lr": 0.01, "momentum": 0.9, "dampening": 0.5})
    add("SGD", "nesterov", "Nesterov momentum", {"lr": 0.01, "momentum": 0.9, "nesterov": True})
    add("SGD", "weight_decay", "momentum and L2 weight decay", {"lr": 0.01, "momentum": 0.9, "weight_decay": 0.01})
    add("SGD", "zero_grads", "zero gradients first and last", {"lr": 0.01, "momentum": 0.9}, stream="zeros")
    add("SGD", "per_parameter", "momentum on w only, and each parameter its own lr: the state keeps a momentum "
        "buffer for w alone", {"lr": {"w": 0.01, "b": 0.05}, "momentum": {"w": 0.9, "b": 0.0}})
    add("SGD", "lr_inverse_sqrt", "the step size alpha / sqrt(t), alpha = 0.1", {"lr": InverseSqrt(0.1),
                                                                                 "momentum": 0.9})
    return cases


CASES = _cases()


# ----------------------------------------------------------------------------- encoding


def _encode_number(x: float):
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return x


def _decode_number(x) -> float:
    if isinstance(x, str):
        return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}[x]
    return float(x)


def encode_array(a: np.ndarray) -> list:
    """A flat list of JSON-ready numbers, row-major; float32 values exactly, as binary64."""
    return [_encode_number(float(x)) for x in np.asarray(a, dtype=np.float64).reshape(-1)]


def decode_array(data: list, shape, dtype: str, where: str) -> np.ndarray:
    """The array a list of :func:`encode_array` stands for; checks length and float32 exactness."""
    shape = tuple(shape)
    if len(data) != math.prod(shape):
        raise ValueError(f"{where}: {len(data)} numbers for shape {list(shape)} ({math.prod(shape)} expected)")
    a = np.array([_decode_number(x) for x in data], dtype=np.float64).reshape(shape)
    out = a.astype(dtype)
    if not np.array_equal(out.astype(np.float64), a, equal_nan=True):
        raise ValueError(f"{where}: holds a number that is not a {dtype} value")
    return out


def _hyper_json(opt) -> dict:
    out = {}
    for f in dataclasses.fields(opt):
        value = getattr(opt, f.name)
        if value is None:
            continue  # an option left at None (compute_dtype: the parameters' own dtype) is not written
        if f.name == "vector_axes" and isinstance(value, dict):
            out[f.name] = {k: list(v) for k, v in value.items()}
        elif hasattr(value, "to_json"):
            out[f.name] = value.to_json()
        elif isinstance(value, dict):
            out[f.name] = dict(value)           # one number per parameter
        else:
            out[f.name] = value
    return out


def _schedules(opt) -> dict:
    """``{name: schedule}`` for the hyperparameters of ``opt`` that follow a schedule."""
    return {f.name: getattr(opt, f.name) for f in dataclasses.fields(opt) if hasattr(getattr(opt, f.name), "to_json")}


def _schedule_from_json(value: dict, where: str):
    kind = value.get("schedule")
    if kind not in SCHEDULES:
        raise ValueError(f"{where}: unknown schedule {kind!r} (known: {', '.join(SCHEDULES)})")
    cls, fields = SCHEDULES[kind]
    if set(value) != {"schedule", *fields}:
        raise ValueError(f"{where}: a {kind!r} schedule has the members schedule, {', '.join(fields)}; got "
                         f"{sorted(value)}")
    return cls(*(float(value[f]) for f in fields))


def _hyper_from_json(algorithm: str, hyper: dict, where: str):
    cls = ALGORITHMS[algorithm]
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(hyper) - names)
    if unknown:
        raise ValueError(f"{where}: unknown hyperparameter(s) {unknown} for {algorithm}")
    kwargs = {}
    for k, v in hyper.items():
        if k == "vector_axes" and isinstance(v, dict):
            kwargs[k] = {n: tuple(a) for n, a in v.items()}
        elif isinstance(v, dict) and "schedule" in v:
            kwargs[k] = _schedule_from_json(v, f"{where}: hyperparameters.{k}")
        else:
            kwargs[k] = v
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: not a valid {algorithm}: {e}") from None


# ----------------------------------------------------------------------------- computing


def _old_rtol(dtype: str) -> float:
    """The case-level ``rtol`` of versions 1 and 2 (1024 u): their rule t * rtol * S."""
    return 1024 * float(np.finfo(dtype).eps) / 2


def _state_trees(state) -> dict:
    return {f: getattr(state, f) for f in state._fields[1:]}


def compute(case: Case, steps: int = STEPS) -> dict:
    """The JSON object of one case (computed now, by refimpl)."""
    opt = ALGORITHMS[case.algorithm](**case.hyperparameters)
    dt = np.dtype(case.dtype)
    params = {k: np.array(v, dtype=dt) for k, v in _init_params().items()}
    state = opt.init(params)
    shapes_state = {f: (None if tree is None else {k: list(x.shape) for k, x in tree.items()})
                    for f, tree in _state_trees(state).items()}
    out = {"id": case.id, "description": case.description, "dtype": case.dtype,
           "hyperparameters": _hyper_json(opt),
           "shapes": {"params": {k: list(x.shape) for k, x in params.items()}, "state": shapes_state},
           "params": {k: encode_array(x) for k, x in params.items()}, "steps": []}
    schedules = _schedules(opt)
    history = _History(params, state)
    with np.errstate(all="raise"):  # a canonical case must stay finite and never overflow
        for t, g in enumerate(_gradients(case.stream, case.scale, steps), start=1):
            grads = {k: np.array(v, dtype=dt) for k, v in g.items()}
            params, state = opt.step(params, grads, state)
            history.add(grads, params, state)
            step = {"t": t, "grads": {k: encode_array(x) for k, x in grads.items()},
                    "params": {k: encode_array(x) for k, x in params.items()},
                    "state": {f: (None if tree is None else {k: encode_array(x) for k, x in tree.items()})
                              for f, tree in _state_trees(state).items()}}
            if schedules:   # the values refimpl used at this step (binary64)
                step["hyperparameters"] = {name: float(schedule(t)) for name, schedule in schedules.items()}
            out["steps"].append(step)
    for step, tolerance in zip(out["steps"], history.tolerances(opt, case.dtype)):
        step["tolerance"] = _tolerance_json(tolerance)
    return out


def _tolerance_json(tolerance: dict) -> dict:
    """A step's tolerances as JSON numbers (binary64, shortest repr)."""
    tree = lambda d: {k: _encode_number(x) for k, x in d.items()}  # noqa: E731
    return {"params": tree(tolerance["params"]),
            "state": {f: None if d is None else tree(d) for f, d in tolerance["state"].items()}}


class _History:
    """A case's trajectory, step 0 (the initial params, a zero state) to T, for :func:`tolerances`."""

    def __init__(self, params: dict, state):
        self.params = {k: [x] for k, x in params.items()}
        self.state = {f: None if tree is None else {k: [np.zeros_like(x)] for k, x in tree.items()}
                      for f, tree in _state_trees(state).items()}
        self.grads = {k: [] for k in params}

    def add(self, grads: dict, params: dict, state) -> None:
        for k in self.grads:
            self.grads[k].append(grads[k])
            self.params[k].append(params[k])
        trees = _state_trees(state)
        for f, tree in self.state.items():
            for k in tree or {}:
                tree[k].append(trees[f][k])

    def tolerances(self, opt, dtype: str) -> list[dict]:
        stack = lambda tree: {k: np.stack(v) for k, v in tree.items()}  # noqa: E731
        return tolerances(opt, dtype, stack(self.params),
                          {f: None if tree is None else stack(tree) for f, tree in self.state.items()},
                          stack(self.grads))


def documents(steps: int = STEPS, progress: Callable | None = None) -> dict[str, dict]:
    """``{file name: JSON object}`` for every algorithm."""
    docs = {}
    for algorithm, name in FILES.items():
        docs[name] = {"format": FORMAT, "version": VERSION, "algorithm": algorithm,
                      "description": DESCRIPTIONS[algorithm], "number_encoding": NUMBER_ENCODING, "cases": []}
    for case in CASES:
        docs[FILES[case.algorithm]]["cases"].append(compute(case, steps))
        if progress is not None:
            progress(case.id)
    return docs


def dumps(obj, indent: int = 0, width: int = 240) -> str:
    """JSON with every value that fits in ``width`` characters on one line (arrays of numbers,
    a step's gradients...), and the structure around them indented."""
    pad, inner = " " * indent, " " * (indent + 1)
    flat = json.dumps(obj, allow_nan=False)
    if len(flat) <= width or not isinstance(obj, (dict, list)):
        return flat
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f"{inner}{json.dumps(k)}: {dumps(v, indent + 1, width)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if any(isinstance(x, (dict, list)) for x in obj):
        return "[\n" + ",\n".join(inner + dumps(x, indent + 1, width) for x in obj) + "\n" + pad + "]"
    return flat


def write(directory, *, steps: int = STEPS, progress: Callable | None = None) -> list[Path]:
    """Write the vectors and ``schema.json`` into ``directory`` (created if needed); the paths written."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps={steps!r} must be a positive int")
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"{os.fspath(directory)!r} exists and is not a directory")
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, doc in documents(steps, progress).items():
        (directory / name).write_text(dumps(doc) + "\n", encoding="utf-8")
        written.append(directory / name)
    (directory / "schema.json").write_text((canonical_dir() / "schema.json").read_text(encoding="utf-8"),
                                           encoding="utf-8")
    written.append(directory / "schema.json")
    return written


# ----------------------------------------------------------------------------- checking


class Mismatch(NamedTuple):
    file: str
    case: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.case}: {self.message}" if self.case else f"{self.file}: {self.message}"


class Report(NamedTuple):
    files: int
    cases: int
    values: int          # numbers compared
    exact: int           # of which bitwise equal
    mismatches: list     # of Mismatch

    @property
    def ok(self) -> bool:
        return not self.mismatches


def load(path) -> dict:
    """Read and validate one vectors file; ``ValueError`` says what and where if it is malformed."""
    path = Path(path) if isinstance(path, (str, os.PathLike)) else path
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read {path}: {e}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not JSON: {e}") from None
    except RecursionError:
        raise ValueError(f"{path} is not a vectors file: its JSON nests arrays or objects deeper than Python's "
                         f"parser allows (a vectors file nests 6 levels)") from None
    if isinstance(doc, dict) and doc.get("format") == FORMAT and doc.get("version") not in READABLE:
        raise ValueError(f"{path.name} has format version {doc.get('version')!r}; this refimpl reads versions "
                         f"{', '.join(map(str, READABLE[:-1]))} and {READABLE[-1]}")
    try:
        validate(doc, schema())
    except RecursionError:
        raise ValueError(f"{path} does not follow the vectors schema: it nests deeper than the schema allows") from None
    except SchemaError as e:
        raise ValueError(f"{path.name} does not follow the vectors schema: {e}") from None
    _check_tolerance_members(doc, path.name)
    return doc


def _check_tolerance_members(doc: dict, name: str) -> None:
    """Where the tolerances are, which the schema (one for every version) cannot say: version 3
    in every step and not in the case, versions 1 and 2 in the case (its rtol) and not in a step."""
    per_step = doc["version"] >= 3
    for i, case in enumerate(doc["cases"]):
        if per_step == ("tolerance" in case):
            raise ValueError(f"{name} does not follow the vectors schema: cases[{i}]: the member 'tolerance' is "
                             f"{'not allowed in a case' if per_step else 'missing'} in version {doc['version']}"
                             f"{' (each step has its own)' if per_step else ''}")
        for j, step in enumerate(case["steps"]):
            if per_step != ("tolerance" in step):
                raise ValueError(f"{name} does not follow the vectors schema: cases[{i}].steps[{j}]: the member "
                                 f"'tolerance' is {'missing' if per_step else 'not allowed in a step'} in version "
                                 f"{doc['version']}")


def _check_case(name: str, algorithm: str, case: dict, exact: bool, counts: list, version: int = VERSION
                ) -> list[Mismatch]:
    cid = case["id"]
    where = f"{name}: {cid}"
    opt = _hyper_from_json(algorithm, case["hyperparameters"], where)
    dtype = case["dtype"]
    shapes = case["shapes"]
    if set(case["params"]) != set(shapes["params"]):
        raise ValueError(f"{where}: params has keys {sorted(case['params'])} but shapes.params has "
                         f"{sorted(shapes['params'])}")
    params = {k: decode_array(v, shapes["params"][k], dtype, f"{where}: params[{k!r}]") for k, v in case["params"].items()}
    state = opt.init(params)
    fields = list(state._fields[1:])
    if set(shapes["state"]) != set(fields):
        raise ValueError(f"{where}: shapes.state has fields {sorted(shapes['state'])}; {algorithm} has {fields}")
    out = []
    initial = params                           # versions 1 and 2 scale by it
    mine = _History(params, state)             # refimpl's trajectory: the tolerances it computes come from it
    compared = []                               # (t, field, key, refimpl's array, the file's array)
    for i, step in enumerate(case["steps"]):
        t = step["t"]
        if t != i + 1:
            raise ValueError(f"{where}: steps[{i}] has t={t}; the steps must be numbered 1, 2, 3, ...")
        grads = {k: decode_array(step["grads"].get(k, []), shapes["params"][k], dtype,
                                 f"{where}: steps[{i}].grads[{k!r}]") for k in shapes["params"]}
        for hp, value in step.get("hyperparameters", {}).items():
            schedule = getattr(opt, hp, None)
            if not hasattr(schedule, "to_json"):
                raise ValueError(f"{where}: steps[{i}].hyperparameters.{hp} is given but {hp} follows no schedule")
            if float(schedule(t)) != value:
                out.append(Mismatch(name, cid, f"step {t}: {hp} is {value!r} in the file, refimpl's schedule "
                                               f"gives {float(schedule(t))!r}"))
        with np.errstate(all="ignore"):
            params, state = opt.step(params, grads, state)
        got = {("params", k): x for k, x in params.items()}
        for f in fields:
            tree = getattr(state, f)
            if (tree is None) != (step["state"].get(f) is None) or (tree is None) != (shapes["state"][f] is None):
                raise ValueError(f"{where}: steps[{i}].state.{f} is {'null' if step['state'].get(f) is None else 'given'} "
                                 f"but this configuration {'keeps no' if tree is None else 'keeps a'} {f}")
            if tree is not None:
                got.update({(f, k): x for k, x in tree.items()})
        for (field, k), x in got.items():
            src = step["params"] if field == "params" else step["state"][field]
            shape = shapes["params"][k] if field == "params" else shapes["state"][field].get(k, [])
            if k not in src:
                raise ValueError(f"{where}: steps[{i}].{'params' if field == 'params' else 'state.' + field} "
                                 f"has no {k!r}")
            want = decode_array(src[k], shape, dtype, f"{where}: steps[{i}].{field}[{k!r}]")
            compared.append((t, field, k, x, want))
        mine.add(grads, params, state)
    limits = _limits(case, version, compared, initial, where)
    for (t, field, k, x, want), tol in zip(compared, limits):
        same = (x == want) | (np.isnan(x) & np.isnan(want))
        counts[0] += x.size
        counts[1] += int(same.sum())
        if same.all():
            continue
        with np.errstate(all="ignore"):
            err = np.where(same, 0.0, np.abs(x.astype(np.float64) - want.astype(np.float64)))
        err = np.where(np.isnan(err), np.inf, err)
        j = np.unravel_index(int(np.argmax(err)), x.shape)
        e = float(err[j])
        if exact or not e <= tol:
            kind = "differs" if e <= tol else "differs beyond the tolerance"
            out.append(Mismatch(name, case["id"], f"step {t}: {field}[{k!r}][{', '.join(map(str, j))}] {kind}: "
                                                  f"file {float(want[j])!r}, refimpl {float(x[j])!r} (abs err "
                                                  f"{e:.3g}, tolerance {tol:.3g})"))
    return _tolerance_mismatches(name, case, version, mine, opt, exact) + out


def _limits(case: dict, version: int, compared: list, initial: dict, where: str) -> list[float]:
    """The tolerance of each compared array: the step's own (version 3), or t * rtol * S with S
    the largest |value| the array has held in the file so far (versions 1 and 2)."""
    if version >= 3:
        out = []
        for t, field, k, _, _ in compared:
            tree = case["steps"][t - 1]["tolerance"]["params" if field == "params" else "state"]
            if field != "params":
                tree = tree.get(field) or {}
            if k not in tree:
                raise ValueError(f"{where}: steps[{t - 1}].tolerance has no "
                                 f"{'params' if field == 'params' else 'state.' + field}.{k}")
            out.append(_decode_number(tree[k]))
        return out
    rtol = case["tolerance"]["rtol"]
    scale = {("params", k): float(np.max(np.abs(x), initial=0.0)) for k, x in initial.items()}
    out = []
    for t, field, k, _, want in compared:
        s = scale[(field, k)] = max(scale.get((field, k), 0.0), float(np.max(np.abs(want), initial=0.0)))
        out.append(t * rtol * s)
    return out


#: how far a stored tolerance may lie from the one refimpl computes from its own trajectory (outside
#: exact mode): a trajectory within the tolerances moves each D_t and R_t by at most about
#: 2 tau_s / |r_s - r_(s-1)| relatively, below 2**12 u <= 2**-12 in float32; so 2**-8 is ample
#: and still catches any edit that matters
TOLERANCE_SLACK = 2.0**-8


def _tolerance_mismatches(name: str, case: dict, version: int, mine: "_History", opt, exact: bool) -> list:
    """Version 3: each stored tolerance must be the one refimpl computes (from its own trajectory,
    which ``check`` recomputes): bit for bit with ``exact``, else within ``TOLERANCE_SLACK``."""
    if version < 3:
        return []
    with np.errstate(all="ignore"):
        computed = mine.tolerances(opt, case["dtype"])
    out = []
    for step, tolerance in zip(case["steps"], computed):
        stored = step["tolerance"]
        for kind in ("params", "state"):
            pairs = ([(k, stored[kind].get(k), x) for k, x in tolerance[kind].items()] if kind == "params" else
                     [(f"{f}.{k}", (stored[kind].get(f) or {}).get(k), x) for f, tree in tolerance[kind].items()
                      for k, x in (tree or {}).items()])
            for label, got, want in pairs:
                if got is None:
                    out.append(Mismatch(name, case["id"], f"step {step['t']}: the tolerance {kind}.{label} is missing"))
                elif got != want and (exact or not abs(got - want) <= TOLERANCE_SLACK * want):
                    out.append(Mismatch(name, case["id"], f"step {step['t']}: the stored tolerance {kind}.{label} "
                                                          f"is {got!r}; refimpl computes {want!r}"))
    return out


def check(directory, *, exact: bool = False, progress: Callable | None = None) -> Report:
    """Recompute every case of every ``*.json`` in ``directory`` (``schema.json`` aside) and report
    each difference: beyond each case's tolerance, or any bit with ``exact=True``."""
    if isinstance(directory, (str, os.PathLike)):
        directory = Path(directory)   # else a Traversable: the package's own directory
    if not directory.is_dir():
        raise ValueError(f"{str(directory)!r} is not a directory")
    paths = sorted(p for p in directory.iterdir() if p.name.endswith(".json") and p.name != "schema.json")
    if not paths:
        raise ValueError(f"{str(directory)!r} holds no vectors (*.json besides schema.json)")
    mismatches, counts, ncases = [], [0, 0], 0
    for path in paths:
        try:
            doc = load(path)
        except ValueError as e:
            mismatches.append(Mismatch(path.name, "", str(e)))
            continue
        ids = [c["id"] for c in doc["cases"]]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            mismatches.append(Mismatch(path.name, "", f"duplicate case ids {dupes}"))
        for case in doc["cases"]:
            ncases += 1
            try:
                mismatches.extend(_check_case(path.name, doc["algorithm"], case, exact, counts, doc["version"]))
            except ValueError as e:
                mismatches.append(Mismatch(path.name, case["id"], str(e).split(": ", 2)[-1]))
            if progress is not None:
                progress(case["id"])
    return Report(len(paths), ncases, counts[0], counts[1], mismatches)


