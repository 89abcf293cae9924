// The interpreter of refimpl's traced updates (see refimpl/_vm.py, which writes the programs).
//
// A program is the readable update function, recorded once by refimpl/_fuse.py as a list of
// operations, with its Python numbers and every decision taken on them recorded too. This file
// runs such a program on NumPy arrays without going back to Python: it is compiled once per
// machine (not once per program) and imported as the module _refimpl_vm.
//
// run(code, constants, options, values) -> (flags, result, ...) | GUARD | INPUTS
//
//   values     the update's arguments, positional then keyword, as one tuple
//   code       int32 words: a header, then three sections of 5-word instructions, then outputs
//   constants  float64 numbers the program uses (Python literals such as 1 or 0.5)
//   options    the arguments that are neither arrays nor numbers (booleans, strings, None, the
//              array namespace) with which the program was traced
//
// 1. The prologue checks every argument: an array of the traced dtype, a Python float or int, or
//    the traced option, else the program is not for this call (GUARD: the caller tries another
//    program, or traces again). It replays the Python arithmetic on numbers in double
//    precision, as Python does (+, -, *, / and Python's own rules for **); each comparison the
//    traced run made is a guard that must come out the same (GUARD). Anything that no program
//    covers (a layout, a value Python would raise on) returns INPUTS: the caller runs the
//    readable function.
// 2. The casts convert numbers to the arrays' dtype, exactly where NumPy converts a Python
//    number that meets an array.
// 3. The body runs every array operation, in the traced order and dtype, on blocks of BLOCK
//    elements that stay in the CPU's cache. Each operation is one IEEE 754 operation per
//    element (add, subtract, multiply, divide and square root are correctly rounded), compiled
//    without contraction or fast-math, so the results are NumPy's bits.
//
// flags holds the IEEE exceptions raised in 2 and 3 (1 divide, 2 over, 4 under, 8 invalid) so
// that the caller can report them as NumPy's errstate would.

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

#include <cerrno>
#include <cfenv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

namespace {

constexpr int BLOCK = 256;   // elements per block: every register of a program fits in L1
constexpr int HEADER = 11;   // version, dtype, #D, #T, #V, #B, #prologue, #casts, #body, #outputs, #values
constexpr int WORDS = 5;     // an instruction: op, dst, a, b, c
constexpr int VERSION = 2;
constexpr long GUARD = 1, INPUTS = 2;

enum Op : int {
  // prologue: D registers hold Python numbers as doubles
  ARRAY = 1,          // V[dst] <- the array values[a] (the first ARRAY fixes the shape)
  NUMBER_FLOAT = 2,   // D[dst] <- the Python float values[a]
  NUMBER_INT = 3,     // D[dst] <- the Python int values[a], |x| < 2^53 (exact as a double)
  CONSTANT = 4,       // D[dst] <- constants[a]
  OPTION = 5,         // values[a] must be options[b] (the same object; for a string, an equal one)
  D_ADD = 10, D_SUB = 11, D_MUL = 12, D_DIV = 13, D_POW = 14, D_NEG = 15, D_ABS = 16,
  D_EXACT_INT = 17,   // D[a] came from Python int arithmetic: it must stay exact (|x| < 2^53)
  GUARD_COMPARE = 18, // (D[a] <cmp c/2> D[b]) == c%2
  GUARD_TRUTH = 19,   // (D[a] != 0) == b
  // casts: T registers hold numbers in the arrays' dtype
  CAST = 30,          // T[dst] <- D[a] rounded to the dtype, as NumPy converts a Python number
  // body: V registers are blocks of the dtype, B registers blocks of booleans; an operand
  // o >= 0 is V[o], o < 0 is the number T[-1 - o]
  V_ADD = 40, V_SUB = 41, V_MUL = 42, V_DIV = 43, V_NEG = 44, V_ABS = 45, V_SQRT = 46,
  V_MAXIMUM = 47, V_MINIMUM = 48,
  V_COMPARE = 49,     // B[dst] <- V[a] <cmp c> V[b]
  V_WHERE = 50,       // V[dst] <- B[a] ? b : c
  B_AND = 51, B_OR = 52, B_NOT = 53,
  V_FILL = 54,        // V[dst] <- a (a number operand, e.g. ones_like)
};
enum Compare : int { LT = 0, LE = 1, GT = 2, GE = 3, EQ = 4, NE = 5 };
enum Output : int { OUT_NONE = 0, OUT_VECTOR = 1, OUT_INPUT = 2, OUT_SAME = 3 };

template <typename A, typename B>
bool compare(int how, A x, B y) {
  switch (how) {
    case LT: return x < y;
    case LE: return x <= y;
    case GT: return x > y;
    case GE: return x >= y;
    case EQ: return x == y;
    default: return x != y;
  }
}

// libm's pow, called through a pointer the compiler cannot see through, so that errno is set
// and read as in CPython whatever the optimization flags.
double (*volatile libm_pow)(double, double) = &::pow;

// Python's float ** float (CPython's float_pow) where it gives a finite number or zero; false
// where Python raises, returns a complex number or an infinity (the readable run then does it).
bool python_pow(double x, double y, double* out) {
  if (y == 0) { *out = 1.0; return true; }                     // x**0 is 1, even 0**0 and nan**0
  if (std::isnan(x) || std::isnan(y) || std::isinf(x) || std::isinf(y) || x < 0) return false;
  if (x == 0) {                                                 // 0**y: 0 (signed if y is odd), y < 0 raises
    if (y < 0) return false;
    *out = std::fmod(std::fabs(y), 2.0) == 1.0 ? x : 0.0;
    return true;
  }
  if (x == 1) { *out = 1.0; return true; }
  errno = 0;
  const double r = libm_pow(x, y);
  if (errno == 0 ? std::isinf(r) : !(errno == ERANGE && r == 0)) return false;  // OverflowError
  *out = r;
  return true;
}

// A double that came from exact integer arithmetic is that integer if it is below 2**53 in
// magnitude (a true result of 2**53 + 1 would round to 2**53, so 2**53 itself is refused).
bool exact_int(double x) { return std::fabs(x) < 9007199254740992.0; }

struct Input { const char* base; npy_intp inner; int reg; };

template <typename T> constexpr int typenum();
template <> constexpr int typenum<float>() { return NPY_FLOAT32; }
template <> constexpr int typenum<double>() { return NPY_FLOAT64; }

// Apply f elementwise over len elements, each operand a block or a number.
template <typename T, typename R, typename F>
inline void apply2(R* out, int a, int b, T* const* V, const T* S, int len, F f) {
  if (a >= 0 && b >= 0) {
    const T* x = V[a]; const T* y = V[b];
    for (int j = 0; j < len; j++) out[j] = f(x[j], y[j]);
  } else if (a >= 0) {
    const T* x = V[a]; const T y = S[-1 - b];
    for (int j = 0; j < len; j++) out[j] = f(x[j], y);
  } else if (b >= 0) {
    const T x = S[-1 - a]; const T* y = V[b];
    for (int j = 0; j < len; j++) out[j] = f(x, y[j]);
  } else {
    const R r = f(S[-1 - a], S[-1 - b]);
    for (int j = 0; j < len; j++) out[j] = r;
  }
}

template <typename T, typename F>
inline void apply1(T* out, int a, T* const* V, const T* S, int len, F f) {
  if (a >= 0) {
    const T* x = V[a];
    for (int j = 0; j < len; j++) out[j] = f(x[j]);
  } else {
    const T r = f(S[-1 - a]);
    for (int j = 0; j < len; j++) out[j] = r;
  }
}

// Ties of maximum and minimum (refimpl/_fuse.py, TIE_RULES): which of two equal operands wins.
enum Tie : int { TIE_FIRST = 0, TIE_SECOND = 1, TIE_POSITIVE = 2, TIE_NEGATIVE = 3 };

template <typename T, typename Beats>
inline void extremum(T* out, int a, int b, int tie, T* const* V, const T* S, int len, Beats beats) {
  auto pick = [beats](auto on_tie) {
    return [beats, on_tie](T x, T y) {
      return std::isnan(x) ? x : std::isnan(y) ? y : beats(x, y) ? x : beats(y, x) ? y : on_tie(x, y);
    };
  };
  switch (tie) {
    case TIE_FIRST: apply2<T>(out, a, b, V, S, len, pick([](T x, T) { return x; })); break;
    case TIE_SECOND: apply2<T>(out, a, b, V, S, len, pick([](T, T y) { return y; })); break;
    case TIE_POSITIVE: apply2<T>(out, a, b, V, S, len, pick([](T x, T y) { return std::signbit(x) ? y : x; })); break;
    default: apply2<T>(out, a, b, V, S, len, pick([](T x, T y) { return std::signbit(x) ? x : y; })); break;
  }
}

// Where an array of shape `shape` (C order) sits inside the first array's shape `first`: the
// element for flat index i of the first is element i / inner of this one. Supported: the same
// shape (inner 1), and shapes that equal a prefix of `first` followed by ones, such as a
// sweep's (K, 1) against (K, n) (inner n); -1 for any other broadcast.
npy_intp inner_of(int ndim, const npy_intp* shape, int first_ndim, const npy_intp* first) {
  if (ndim > first_ndim) return -1;
  const int pad = first_ndim - ndim;
  int k = first_ndim;  // dimensions k.. of the padded shape are all 1
  while (k > 0 && (k - 1 < pad || shape[k - 1 - pad] == 1)) k--;
  npy_intp inner = 1;
  for (int d = 0; d < first_ndim; d++) {
    const npy_intp size = d < pad ? 1 : shape[d - pad];
    if (d < k && size != first[d]) return -1;
    if (d >= k) inner *= first[d];
  }
  return inner;
}

template <typename T>
PyObject* execute(const int32_t* code, const double* constants, PyObject* options, PyObject* values) {
  const int nD = code[2], nT = code[3], nV = code[4], nB = code[5];
  const int nP = code[6], nC = code[7], nQ = code[8], nO = code[9];
  if (PyTuple_GET_SIZE(values) != code[10]) return PyLong_FromLong(GUARD);
  const int32_t* prologue = code + HEADER;
  const int32_t* casts = prologue + WORDS * nP;
  const int32_t* body = casts + WORDS * nC;
  const int32_t* outputs = body + WORDS * nQ;
  const Py_ssize_t nvalues = PyTuple_GET_SIZE(values);

  // Registers: this call's own (allocating the results may run Python code, a finalizer that
  // steps an optimizer, say, which would re-enter here).
  // The blocks are left uninitialized: every element is written before it is read.
  std::vector<double> D(nD, 0.0);
  std::vector<T> S(nT, T(0));
  std::unique_ptr<T[]> blocks(new T[static_cast<size_t>(nV) * BLOCK]);
  std::unique_ptr<uint8_t[]> Bblocks(new uint8_t[static_cast<size_t>(nB) * BLOCK]);
  std::vector<T*> V(nV, nullptr);
  std::vector<Input> inputs;
  for (int r = 0; r < nV; r++) V[r] = blocks.get() + static_cast<size_t>(r) * BLOCK;

  int ndim = -1;
  npy_intp* shape = nullptr;
  npy_intp n = 0;
  PyArrayObject* first = nullptr;

  // 1. Prologue.
  for (int k = 0; k < nP; k++) {
    const int32_t* I = prologue + WORDS * k;
    const int op = I[0], dst = I[1], a = I[2], b = I[3], c = I[4];
    switch (op) {
      case ARRAY: {
        if (a >= nvalues) return PyLong_FromLong(INPUTS);
        PyObject* item = PyTuple_GET_ITEM(values, a);
        if (!PyArray_CheckExact(item)) return PyLong_FromLong(GUARD);
        PyArrayObject* x = reinterpret_cast<PyArrayObject*>(item);
        if (PyArray_TYPE(x) != typenum<T>()) return PyLong_FromLong(GUARD);
        if (!PyArray_IS_C_CONTIGUOUS(x) || !PyArray_ISALIGNED(x) || !PyArray_ISNOTSWAPPED(x))
          return PyLong_FromLong(INPUTS);
        npy_intp inner = 1;
        if (first == nullptr) {
          // NumPy returns scalars, not arrays, from operations on 0-d arrays: left to it.
          if (PyArray_NDIM(x) == 0) return PyLong_FromLong(INPUTS);
          first = x; ndim = PyArray_NDIM(x); shape = PyArray_DIMS(x); n = PyArray_SIZE(x);
        } else {
          inner = inner_of(PyArray_NDIM(x), PyArray_DIMS(x), ndim, shape);
          if (inner < 0) return PyLong_FromLong(INPUTS);
          if (inner == 0) inner = 1;  // an empty first array: no element is read
        }
        inputs.push_back({static_cast<const char*>(PyArray_DATA(x)), inner, dst});
        break;
      }
      case NUMBER_FLOAT: {
        PyObject* item = PyTuple_GET_ITEM(values, a);
        if (!PyFloat_CheckExact(item)) return PyLong_FromLong(GUARD);
        D[dst] = PyFloat_AS_DOUBLE(item);
        break;
      }
      case NUMBER_INT: {
        PyObject* item = PyTuple_GET_ITEM(values, a);
        if (!PyLong_CheckExact(item)) return PyLong_FromLong(GUARD);
        int overflow = 0;
        const long long v = PyLong_AsLongLongAndOverflow(item, &overflow);
        if (overflow || (v == -1 && PyErr_Occurred())) { PyErr_Clear(); return PyLong_FromLong(INPUTS); }
        D[dst] = static_cast<double>(v);
        if (!exact_int(D[dst]) || static_cast<long long>(D[dst]) != v) return PyLong_FromLong(INPUTS);
        break;
      }
      case CONSTANT: D[dst] = constants[a]; break;
      case OPTION: {
        PyObject* item = PyTuple_GET_ITEM(values, a);
        PyObject* traced = PyTuple_GET_ITEM(options, b);
        if (item != traced && !(PyUnicode_CheckExact(item) && PyUnicode_CheckExact(traced) &&
                                PyUnicode_Compare(item, traced) == 0))
          return PyLong_FromLong(GUARD);
        break;
      }
      case D_ADD: D[dst] = D[a] + D[b]; break;
      case D_SUB: D[dst] = D[a] - D[b]; break;
      case D_MUL: D[dst] = D[a] * D[b]; break;
      case D_DIV:
        if (D[b] == 0) return PyLong_FromLong(INPUTS);  // Python raises ZeroDivisionError
        D[dst] = D[a] / D[b];
        break;
      case D_POW:
        if (!python_pow(D[a], D[b], &D[dst])) return PyLong_FromLong(INPUTS);
        break;
      case D_NEG: D[dst] = -D[a]; break;
      case D_ABS: D[dst] = std::fabs(D[a]); break;
      case D_EXACT_INT:
        if (!exact_int(D[a])) return PyLong_FromLong(INPUTS);
        break;
      case GUARD_COMPARE:
        if (compare(c / 2, D[a], D[b]) != static_cast<bool>(c % 2)) return PyLong_FromLong(GUARD);
        break;
      case GUARD_TRUTH:
        if ((D[a] != 0) != static_cast<bool>(b)) return PyLong_FromLong(GUARD);
        break;
      default:
        PyErr_Format(PyExc_ValueError, "refimpl interpreter: unknown prologue op %d", op);
        return nullptr;
    }
  }
  if (first == nullptr) return PyLong_FromLong(INPUTS);

  // The results, allocated before any IEEE flag is watched.
  std::vector<PyObject*> results(nO, nullptr);
  auto release = [&]() { for (PyObject* r : results) Py_XDECREF(r); };
  for (int o = 0; o < nO; o++) {
    const int32_t* O = outputs + 2 * o;
    if (O[0] == OUT_VECTOR) {
      results[o] = PyArray_SimpleNew(ndim, shape, typenum<T>());
      if (results[o] == nullptr) { release(); return nullptr; }
    }
  }

  std::feclearexcept(FE_ALL_EXCEPT);

  // 2. Casts.
  for (int k = 0; k < nC; k++) {
    const int32_t* I = casts + WORDS * k;
    S[I[1]] = static_cast<T>(D[I[2]]);
  }

  // 3. Body, block by block.
  T* const* R = V.data();
  const T* s = S.data();
  for (npy_intp start = 0; start < n; start += BLOCK) {
    const int len = static_cast<int>(n - start < BLOCK ? n - start : BLOCK);
    for (const Input& in : inputs) {
      const T* base = reinterpret_cast<const T*>(in.base);
      if (in.inner == 1) {
        V[in.reg] = const_cast<T*>(base + start);
      } else {
        // Element start + j of the first array reads element (start + j) / inner of this one.
        T* buffer = blocks.get() + static_cast<size_t>(in.reg) * BLOCK;
        npy_intp index = start / in.inner, left = in.inner - start % in.inner;
        for (int j = 0; j < len; j++) {
          buffer[j] = base[index];
          if (--left == 0) { index++; left = in.inner; }
        }
        V[in.reg] = buffer;
      }
    }
    for (int o = 0; o < nO; o++) {  // a result's register is the result's own memory
      const int32_t* O = outputs + 2 * o;
      if (O[0] == OUT_VECTOR)
        V[O[1]] = static_cast<T*>(PyArray_DATA(reinterpret_cast<PyArrayObject*>(results[o]))) + start;
    }
    for (int k = 0; k < nQ; k++) {
      const int32_t* I = body + WORDS * k;
      const int op = I[0], dst = I[1], a = I[2], b = I[3], c = I[4];
      const bool boolean = op == V_COMPARE || op == B_AND || op == B_OR || op == B_NOT;
      T* out = boolean ? nullptr : V[dst];
      uint8_t* bout = boolean ? Bblocks.get() + static_cast<size_t>(dst) * BLOCK : nullptr;
      switch (op) {
        case V_ADD: apply2<T>(out, a, b, R, s, len, [](T x, T y) { return x + y; }); break;
        case V_SUB: apply2<T>(out, a, b, R, s, len, [](T x, T y) { return x - y; }); break;
        case V_MUL: apply2<T>(out, a, b, R, s, len, [](T x, T y) { return x * y; }); break;
        case V_DIV: apply2<T>(out, a, b, R, s, len, [](T x, T y) { return x / y; }); break;
        case V_NEG: apply1<T>(out, a, R, s, len, [](T x) { return -x; }); break;
        case V_ABS: apply1<T>(out, a, R, s, len, [](T x) { return std::fabs(x); }); break;
        case V_SQRT: apply1<T>(out, a, R, s, len, [](T x) { return std::sqrt(x); }); break;
        // maximum and minimum: a NaN operand, else the larger (smaller) one, else (equal: 0 and
        // -0) the one the array library returns, c being its rule (refimpl/_fuse.py, tie_rule).
        case V_MAXIMUM: extremum<T>(out, a, b, c, R, s, len, [](T x, T y) { return x > y; }); break;
        case V_MINIMUM: extremum<T>(out, a, b, c, R, s, len, [](T x, T y) { return x < y; }); break;
        case V_COMPARE:
          switch (c) {
            case LT: apply2<T, uint8_t>(bout, a, b, R, s, len, [](T x, T y) { return uint8_t(x < y); }); break;
            case LE: apply2<T, uint8_t>(bout, a, b, R, s, len, [](T x, T y) { return uint8_t(x <= y); }); break;
            case GT: apply2<T, uint8_t>(bout, a, b, R, s, len, [](T x, T y) { return uint8_t(x > y); }); break;
            case GE: apply2<T, uint8_t>(bout, a, b, R, s, len, [](T x, T y) { return uint8_t(x >= y); }); break;
            case EQ: apply2<T, uint8_t>(bout, a, b, R, s, len, [](T x, T y) { return uint8_t(x == y); }); break;
            default: apply2<T, uint8_t>(bout, a, b, R, s, len, [](T x, T y) { return uint8_t(x != y); }); break;
          }
          break;
        case V_WHERE: {
          const uint8_t* m = Bblocks.get() + static_cast<size_t>(a) * BLOCK;
          const T* x = b >= 0 ? V[b] : nullptr;
          const T* y = c >= 0 ? V[c] : nullptr;
          const T xs = b >= 0 ? T(0) : s[-1 - b], ys = c >= 0 ? T(0) : s[-1 - c];
          for (int j = 0; j < len; j++) out[j] = m[j] ? (x ? x[j] : xs) : (y ? y[j] : ys);
          break;
        }
        case B_AND: case B_OR: case B_NOT: {
          const uint8_t* x = Bblocks.get() + static_cast<size_t>(a) * BLOCK;
          const uint8_t* y = Bblocks.get() + static_cast<size_t>(op == B_NOT ? a : b) * BLOCK;
          for (int j = 0; j < len; j++)
            bout[j] = op == B_AND ? (x[j] && y[j]) : op == B_OR ? (x[j] || y[j]) : !x[j];
          break;
        }
        case V_FILL: apply1<T>(out, a, R, s, len, [](T x) { return x; }); break;
        default:
          release();
          PyErr_Format(PyExc_ValueError, "refimpl interpreter: unknown body op %d", op);
          return nullptr;
      }
    }
  }

  const int raised = std::fetestexcept(FE_ALL_EXCEPT);
  const long flags = (raised & FE_DIVBYZERO ? 1 : 0) | (raised & FE_OVERFLOW ? 2 : 0) |
                     (raised & FE_UNDERFLOW ? 4 : 0) | (raised & FE_INVALID ? 8 : 0);

  PyObject* tuple = PyTuple_New(1 + nO);
  if (tuple == nullptr) { release(); return nullptr; }
  PyTuple_SET_ITEM(tuple, 0, PyLong_FromLong(flags));
  for (int o = 0; o < nO; o++) {
    const int32_t* O = outputs + 2 * o;
    PyObject* r;
    switch (O[0]) {
      case OUT_VECTOR: r = results[o]; results[o] = nullptr; break;           // the new array
      case OUT_INPUT: r = PyTuple_GET_ITEM(values, O[1]); Py_INCREF(r); break;  // an argument, returned as is
      case OUT_SAME: r = PyTuple_GET_ITEM(tuple, 1 + O[1]); Py_INCREF(r); break;  // an earlier result again
      default: r = Py_None; Py_INCREF(r); break;
    }
    PyTuple_SET_ITEM(tuple, 1 + o, r);
  }
  return tuple;
}

PyObject* run(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 4 || !PyBytes_CheckExact(args[0]) || !PyBytes_CheckExact(args[1]) || !PyTuple_CheckExact(args[2]) ||
      !PyTuple_CheckExact(args[3])) {
    PyErr_SetString(PyExc_TypeError, "run(code: bytes, constants: bytes, options: tuple, values: tuple)");
    return nullptr;
  }
  const int32_t* code = reinterpret_cast<const int32_t*>(PyBytes_AS_STRING(args[0]));
  if (PyBytes_GET_SIZE(args[0]) < HEADER * 4 || code[0] != VERSION) {
    PyErr_SetString(PyExc_ValueError, "refimpl interpreter: a program of another version");
    return nullptr;
  }
  const double* constants = reinterpret_cast<const double*>(PyBytes_AS_STRING(args[1]));
  return code[1] == 0 ? execute<float>(code, constants, args[2], args[3])
                      : execute<double>(code, constants, args[2], args[3]);
}

PyMethodDef methods[] = {
    {"run", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(run)), METH_FASTCALL,
     "run(code, constants, options, values): one traced update on NumPy arrays"},
    {nullptr, nullptr, 0, nullptr}};

PyModuleDef module = {PyModuleDef_HEAD_INIT, "_refimpl_vm", nullptr, -1, methods};

}  // namespace

PyMODINIT_FUNC PyInit__refimpl_vm(void) {
  import_array();
  PyObject* m = PyModule_Create(&module);
  if (m == nullptr) return nullptr;
  PyModule_AddIntConstant(m, "VERSION", VERSION);
  PyModule_AddIntConstant(m, "GUARD", GUARD);
  PyModule_AddIntConstant(m, "INPUTS", INPUTS);
  PyModule_AddIntConstant(m, "BLOCK", BLOCK);
  return m;
}
