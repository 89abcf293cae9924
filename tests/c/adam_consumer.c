/* A golden-vector consumer in C: an Adam written from the paper, checked against refimpl's
 * vectors (tests/test_vectors_c.py converts adam.json into the plain text this program reads).
 *
 * Input (stdin), one case after another:
 *   case <id> <bits 32|64> <narrays> <steps>
 *   hyper <beta2> <eps> <eps_root> <eps_hat> <bias_correction> <amsgrad> <max_of_v_hat>
 *         <decoupled> <coupled> <t_offset> <scalars 0 exact|1 float32|2 float32_beta_powers>
 *   array <name> <size> <weight decay of this array> then <size> initial values
 *   for each step: step <lr_t> <beta1_t> (the file's step values for a schedule, else the constants),
 *                  then for each array: <size> grads, <size> params, <size> m, <size> v, <size> v_max
 *                  after the step (v_max: zeros without AMSGrad), then the step's tolerances of
 *                  params, m, v and v_max (format version 3: one absolute tolerance per array and step;
 *                  v_max's is 0 and unused without AMSGrad).
 * The bias correction uses beta1 of step 1 (Kingma & Ba's analysis, and the vectors' schema).
 * Numbers are %a / strtod text, exact in binary64.
 *
 * Build switches that break it on purpose (the test checks that each one fails):
 *   -DWRONG_T_PLUS_1   bias corrections with t + 1;   -DNAN_AT_STEP1   NaN in every parameter at step 1;
 *   -DNAIVE_CHECK      the natural C comparison "if (d > tol) fail", which a NaN passes.
 * -DREPORT_RATIO adds a line "worst <max |got - want| / tolerance>" (how close to the tolerance it came).
 * Output: one line "<passed> passed, <failed> failed" (and a line per failing case on stderr). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXA 8
#define MAXN 64

typedef struct { double lr, b1, b1_bc, b2, eps, eps_root, wd; int eps_hat, bc, ams, v_hat, decoupled, coupled, t_offset, scalars; } Hyper;

static double rd(void) { char buf[64]; if (scanf("%63s", buf) != 1) exit(2); return strtod(buf, NULL); }

/* beta^t under the case's scalars convention, as a double */
static double power(double beta, int t, int scalars) {
    if (scalars == 1) { float b = (float)beta, p = b; for (int s = 1; s < t; s++) p = p * b; return (double)p; }
    if (scalars == 2) return pow((double)(float)beta, (double)t);
    return pow(beta, (double)t);
}

/* One Adam step on one array, in type T (float or double): the paper's lines. */
#define DEFINE_STEP(T, SQRT, NAME)                                                                    \
static void NAME(T *th, const T *g, T *m, T *v, T *vmax, int n, int t, Hyper h) {                      \
    int tau = t + h.t_offset;                                                                          \
    T lr = (T)h.lr, b1 = (T)h.b1, b2 = (T)h.b2, eps = (T)h.eps, er = (T)h.eps_root, wd = (T)h.wd;     \
    if (h.scalars == 1) { lr = (T)(float)h.lr; b1 = (T)(float)h.b1; b2 = (T)(float)h.b2;               \
                          eps = (T)(float)h.eps; er = (T)(float)h.eps_root; wd = (T)(float)h.wd; }     \
    T bc1 = 1, bc2 = 1;                                                                                \
    if (h.bc && tau > 0) { bc1 = (T)(1.0 - power(h.scalars == 1 ? (float)h.b1_bc : h.b1_bc, tau, h.scalars)); \
                           bc2 = (T)(1.0 - power(h.scalars == 1 ? (float)h.b2 : h.b2, tau, h.scalars)); } \
    for (int i = 0; i < n; i++) {                                                                      \
        T gi = g[i];                                                                                   \
        if (wd != 0 && h.decoupled) th[i] = th[i] - (h.coupled ? lr * wd : wd) * th[i];                \
        else if (wd != 0) gi = gi + wd * th[i];                                                        \
        m[i] = b1 * m[i] + (1 - b1) * gi;                                                              \
        v[i] = b2 * v[i] + (1 - b2) * gi * gi;                                                         \
        T vr = v[i], vh = v[i] / bc2;                                                                  \
        if (h.ams && !h.v_hat) { if (v[i] > vmax[i]) vmax[i] = v[i]; vr = vmax[i]; vh = vmax[i] / bc2; } \
        else if (h.ams) { if (v[i] / bc2 > vmax[i]) vmax[i] = v[i] / bc2; vr = vmax[i] * bc2; vh = vmax[i]; } \
        if (h.eps_hat) th[i] = th[i] - lr * SQRT(bc2) / bc1 * m[i] / (SQRT(vr + er * bc2) + eps);      \
        else th[i] = th[i] - lr * (m[i] / bc1) / (SQRT(vh + er) + eps);                                \
    }                                                                                                  \
}
DEFINE_STEP(double, sqrt, step64)
DEFINE_STEP(float, sqrtf, step32)

int main(void) {
    char word[32], id[128], names[MAXA][32];
    int passed = 0, failed = 0;
    double worst = 0;   /* -DREPORT_RATIO: the largest |got - want| / tolerance seen */
    while (scanf("%31s", word) == 1 && strcmp(word, "case") == 0) {
        int bits, na, steps; Hyper h;
        if (scanf("%127s %d %d %d", id, &bits, &na, &steps) != 4) return 2;
        if (scanf("%31s", word) != 1) return 2;
        h.b2 = rd(); h.eps = rd(); h.eps_root = rd();
        h.eps_hat = (int)rd(); h.bc = (int)rd(); h.ams = (int)rd(); h.v_hat = (int)rd();
        h.decoupled = (int)rd(); h.coupled = (int)rd(); h.t_offset = (int)rd(); h.scalars = (int)rd();
#ifdef WRONG_T_PLUS_1
        h.t_offset += 1;
#endif
        int size[MAXA];
        double wd[MAXA];   /* per-parameter weight decay */
        double th[MAXA][MAXN], m[MAXA][MAXN] = {{0}}, v[MAXA][MAXN] = {{0}}, vmax[MAXA][MAXN] = {{0}};
        float th32[MAXA][MAXN], m32[MAXA][MAXN] = {{0}}, v32[MAXA][MAXN] = {{0}}, vmax32[MAXA][MAXN] = {{0}};
        for (int a = 0; a < na; a++) {
            if (scanf("%31s %31s %d", word, names[a], &size[a]) != 3) return 2;
            wd[a] = rd();
            for (int i = 0; i < size[a]; i++) { th[a][i] = rd(); th32[a][i] = (float)th[a][i]; }
        }
        int ok = 1;
        for (int t = 1; t <= steps; t++) {
            if (scanf("%31s", word) != 1 || strcmp(word, "step") != 0) return 2;
            h.lr = rd(); h.b1 = rd();             /* this step's lr and beta1 */
            if (t == 1) h.b1_bc = h.b1;           /* the bias correction's beta1 */
            for (int a = 0; a < na; a++) {
                int n = size[a];
                double g[MAXN], want[4][MAXN], got[4][MAXN], tol[4];
                float g32[MAXN];
                for (int i = 0; i < n; i++) { g[i] = rd(); g32[i] = (float)g[i]; }
                for (int k = 0; k < 4; k++) for (int i = 0; i < n; i++) want[k][i] = rd();
                for (int k = 0; k < 4; k++) tol[k] = rd();
                Hyper ha = h; ha.wd = wd[a];
                if (bits == 64) step64(th[a], g, m[a], v[a], vmax[a], n, t, ha);
                else step32(th32[a], g32, m32[a], v32[a], vmax32[a], n, t, ha);
                for (int i = 0; i < n; i++) {
                    got[0][i] = bits == 64 ? th[a][i] : th32[a][i];
                    got[1][i] = bits == 64 ? m[a][i] : m32[a][i];
                    got[2][i] = bits == 64 ? v[a][i] : v32[a][i];
                    got[3][i] = bits == 64 ? vmax[a][i] : vmax32[a][i];
#ifdef NAN_AT_STEP1
                    if (t == 1) { got[0][i] = NAN; th[a][i] = NAN; th32[a][i] = NAN; }
#endif
                }
                for (int k = 0; k < (h.ams ? 4 : 3); k++) {   /* params, m, v, and v_max with AMSGrad */
                    for (int i = 0; i < n; i++) {
                        double d = fabs(got[k][i] - want[k][i]);
#ifdef NAIVE_CHECK
                        int bad = d > tol[k];                  /* NaN > tol is false: a NaN passes */
#else
                        int bad = !(d <= tol[k]);              /* NaN <= tol is false: a NaN fails */
#endif
                        if (bad && ok) fprintf(stderr, "%s: step %d: %s[%d] (field %d): got %.17g, want %.17g, "
                                               "tolerance %.3g\n", id, t, names[a], i, k, got[k][i], want[k][i], tol[k]);
#ifdef REPORT_RATIO
                        if (tol[k] > 0 && d / tol[k] > worst) worst = d / tol[k];
                        if (tol[k] == 0 && d > 0) worst = INFINITY;
#endif
                        if (bad) ok = 0;
                    }
                }
            }
        }
        if (ok) passed++; else failed++;
    }
    printf("%d passed, %d failed\n", passed, failed);
#ifdef REPORT_RATIO
    printf("worst %.17g\n", worst);
#endif
    return failed ? 1 : 0;
}
