/* vec.h - math on single vectors, for the models' inference paths and the
 * engine's ops: exp, sigmoid and tanh that the compiler vectorises, and
 * the RMSNorm of one vector.
 *
 * The scalar functions are static inline so that a loop over a vector
 * (softmax, silu, the RNN and GRU gates) inlines and vectorises them.
 * NaN in gives NaN out, so that a diverging run shows as a NaN loss.
 */
#ifndef VILLES_VEC_H
#define VILLES_VEC_H

#include <stdint.h>
#include <string.h>

/* Branch-free exp, sigmoid and tanh that GCC vectorises (libm's expf is
 * a scalar call per element without -ffast-math, and dominated silu,
 * softmax and the GRU gates; libm's tanhf took 40% of a d_model 64
 * RNN's training time).  exp: Cody-Waite reduction to
 * r in [-ln2/2, ln2/2] and Cephes' degree-6 polynomial, within 2 ulp of
 * expf for x in [-87, 88]; arguments outside are clamped (exp(-100) gives
 * 1e-38, not 0, harmless in every use here). */
static inline float vec_expf(float x)
{
    float c = x < -87.0f ? -87.0f : x;
    c = c > 88.0f ? 88.0f : c;
    c = c == c ? c : 0.0f;   /* NaN: keep the integer part defined, returned as NaN below */
    float n = (c * 1.44269504088896341f + 12582912.0f) - 12582912.0f;   /* round(c / ln 2) */
    float r = c - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;   /* 2^n */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return x == x ? p * scale : x;
}

static inline float vec_sigmoidf(float x) { return 1.0f / (1.0f + vec_expf(-x)); }

/* tanh: Cephes' odd polynomial below |x| = 0.625 (no cancellation near 0),
 * 1 - 2 / (exp(2|x|) + 1) above, with the sign put back. */
static inline float vec_tanhf(float x)
{
    float a = x < 0.0f ? -x : x, z = x * x;
    float small = ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z +
                    1.33314422036e-1f) * z - 3.33332819422e-1f) * z * x + x;
    float big = 1.0f - 2.0f / (vec_expf(2.0f * a) + 1.0f);
    big = x < 0.0f ? -big : big;
    return a < 0.625f ? small : big;
}

/* out (d) = x (d) / sqrt(mean(x^2) + eps) * w (d); out may be x.  The sum
 * of squares runs in 16 partial sums of a fixed order (vec.c), so the
 * figures do not depend on how a loop vectorises; op_rmsnorm (ops.h) sums
 * in 8 lanes and may differ from this by float rounding. */
void vec_rmsnorm(float *out, const float *x, const float *w, int d, float eps);

#endif
