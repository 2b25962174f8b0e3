/* test_vec.c - vec.h's fast exp, sigmoid and tanh against libm in double,
 * over their whole useful range, NaN and saturation; the RMSNorm of one
 * vector against a double-precision reference, in place too. */
#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "rng.h"
#include "test.h"
#include "vec.h"

/* Distance from v to the exact value e, in units of the last place of e. */
static double ulps(float v, double e)
{
    float ef = (float)e;
    double ulp = (double)nextafterf(fabsf(ef), INFINITY) - fabsf(ef);
    return fabs((double)v - e) / ulp;
}

TEST(vec_expf_within_2_ulp)
{
    double worst = 0;
    for (int i = -87000; i <= 88000; i++) {
        float x = (float)i / 1000.0f;
        double u = ulps(vec_expf(x), exp((double)x));
        if (u > worst) worst = u;
    }
    CHECK(worst <= 2.0);
    CHECK(vec_expf(0.0f) == 1.0f);
    CHECK(isnan(vec_expf(NAN)));
    float lo = vec_expf(-100.0f), hi = vec_expf(100.0f);   /* clamped to [-87, 88] */
    CHECK(lo > 0.0f && lo < 1e-37f);
    CHECK(isfinite(hi) && hi > 1e38f);
}

TEST(vec_sigmoidf_and_tanhf_against_libm)
{
    double worst_s = 0, worst_t = 0;
    for (int i = -20000; i <= 20000; i++) {
        float x = (float)i / 1000.0f;
        double s = 1.0 / (1.0 + exp(-(double)x));
        worst_s = fmax(worst_s, fabs(vec_sigmoidf(x) - s) / s);
        worst_t = fmax(worst_t, fabs(vec_tanhf(x) - tanh((double)x)));
        if (vec_tanhf(-x) != -vec_tanhf(x)) worst_t = INFINITY;   /* odd, exactly */
    }
    CHECK(worst_s < 2 * FLT_EPSILON);
    CHECK(worst_t < FLT_EPSILON);
    /* Near 0 tanh keeps its relative precision (no 1 - 2/(e^2x + 1) cancellation). */
    const float tiny = 1e-4f;
    CHECK(fabs(vec_tanhf(tiny) - tanh((double)tiny)) / tanh((double)tiny) < FLT_EPSILON);
    CHECK(vec_sigmoidf(100.0f) == 1.0f && vec_sigmoidf(-100.0f) < 1e-37f);
    CHECK(vec_tanhf(100.0f) == 1.0f && vec_tanhf(-100.0f) == -1.0f);
    CHECK(isnan(vec_sigmoidf(NAN)) && isnan(vec_tanhf(NAN)));
}

TEST(vec_rmsnorm_against_double)
{
    enum { D = 37 };
    rng r;
    rng_seed(&r, 11);
    float x[D], w[D], out[D];
    double ss = 0;
    for (int i = 0; i < D; i++) {
        x[i] = (float)rng_normal(&r) * 3.0f;
        w[i] = (float)rng_normal(&r);
        ss += (double)x[i] * x[i];
    }
    const double scale = 1.0 / sqrt(ss / D + 1e-5);
    vec_rmsnorm(out, x, w, D, 1e-5f);
    double worst = 0;
    for (int i = 0; i < D; i++) worst = fmax(worst, fabs(out[i] - x[i] * scale * w[i]));
    CHECK(worst < 1e-5);
    vec_rmsnorm(x, x, w, D, 1e-5f);   /* in place: the same figures */
    int same = 1;
    for (int i = 0; i < D; i++) same &= x[i] == out[i];
    CHECK(same);
    /* eps keeps a zero vector finite. */
    float z[4] = { 0 }, one[4] = { 1, 1, 1, 1 }, o[4];
    vec_rmsnorm(o, z, one, 4, 1e-5f);
    CHECK(o[0] == 0.0f && o[3] == 0.0f);
}
