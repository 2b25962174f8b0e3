/* ops_internal.h - helpers shared by the op files (ops.c, attention.c,
 * gru.c); not part of libcore's public interface. */
#ifndef VILLES_OPS_INTERNAL_H
#define VILLES_OPS_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "ops.h"

/* An op's output: a gradient buffer only when `need` (some input has one),
 * so that parts of a graph no gradient reaches record nothing downstream.
 * NULL with err_set for a bad shape. */
tensor *op_out(ag_tape *t, bool need, int ndim, const int *shape);

/* Record the backward node of an op whose output needs a gradient. */
ag_node *op_node(ag_tape *t, ag_backward_fn fn, tensor *out, tensor *a, tensor *b);

/* y (N, out) = x (N, in) W^T + b: W (out, in), b (out) or NULL. */
void linear_forward(float *y, const float *x, const float *W, const float *b,
                    int N, int in, int out);
/* dx += dy W, dW += dy^T x, db += column sums of dy; NULL ones skipped. */
void linear_backward(const float *dy, const float *x, const float *W,
                     float *dx, float *dW, float *db, int N, int in, int out);

/* Reductions with 8 partial results, so that they vectorise without
 * -ffast-math (which the build does not use); the order of the additions
 * differs from a plain loop by float rounding only. */
enum { OPS_LANES = 8 };

/* sum of a[j] * b[j] * c[j]; c NULL means all ones */
static inline float vdot3(const float *restrict a, const float *restrict b,
                          const float *restrict c, int n)
{
    float acc[OPS_LANES] = { 0 };
    int j = 0;
    if (c)
        for (; j + OPS_LANES <= n; j += OPS_LANES)
            for (int k = 0; k < OPS_LANES; k++) acc[k] += a[j + k] * b[j + k] * c[j + k];
    else
        for (; j + OPS_LANES <= n; j += OPS_LANES)
            for (int k = 0; k < OPS_LANES; k++) acc[k] += a[j + k] * b[j + k];
    float s = 0.0f;
    for (; j < n; j++) s += a[j] * b[j] * (c ? c[j] : 1.0f);
    for (int k = 0; k < OPS_LANES; k++) s += acc[k];
    return s;
}

static inline float vdot(const float *restrict a, const float *restrict b, int n)
{
    return vdot3(a, b, NULL, n);
}

static inline float vsum(const float *restrict a, int n)
{
    float acc[OPS_LANES] = { 0 };
    int j = 0;
    for (; j + OPS_LANES <= n; j += OPS_LANES)
        for (int k = 0; k < OPS_LANES; k++) acc[k] += a[j + k];
    float s = 0.0f;
    for (; j < n; j++) s += a[j];
    for (int k = 0; k < OPS_LANES; k++) s += acc[k];
    return s;
}

static inline float vmax(const float *restrict a, int n)
{
    float acc[OPS_LANES];
    for (int k = 0; k < OPS_LANES; k++) acc[k] = a[0];
    int j = 0;
    for (; j + OPS_LANES <= n; j += OPS_LANES)
        for (int k = 0; k < OPS_LANES; k++) acc[k] = a[j + k] > acc[k] ? a[j + k] : acc[k];
    float m = a[0];
    for (; j < n; j++) m = a[j] > m ? a[j] : m;
    for (int k = 0; k < OPS_LANES; k++) m = acc[k] > m ? acc[k] : m;
    return m;
}

/* Branch-free exp, sigmoid and tanh that GCC vectorises (libm's expf is
 * a scalar call per element without -ffast-math, and dominated silu,
 * softmax and the GRU gates).  exp: Cody-Waite reduction to
 * r in [-ln2/2, ln2/2] and Cephes' degree-6 polynomial, within 2 ulp of
 * expf for x in [-87, 88]; arguments outside are clamped (exp(-100) gives
 * 1e-38, not 0, harmless in every use here). */
static inline float vexpf(float x)
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

static inline float vsigmoidf(float x) { return 1.0f / (1.0f + vexpf(-x)); }

/* tanh: Cephes' odd polynomial below |x| = 0.625 (no cancellation near 0),
 * 1 - 2 / (exp(2|x|) + 1) above, with the sign put back. */
static inline float vtanhf(float x)
{
    float a = x < 0.0f ? -x : x, z = x * x;
    float small = ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z +
                    1.33314422036e-1f) * z - 3.33332819422e-1f) * z * x + x;
    float big = 1.0f - 2.0f / (vexpf(2.0f * a) + 1.0f);
    big = x < 0.0f ? -big : big;
    return a < 0.625f ? small : big;
}

#endif
