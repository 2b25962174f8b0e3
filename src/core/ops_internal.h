/* ops_internal.h - helpers shared by the op files (ops.c, attention.c,
 * gru.c); not part of libcore's public interface. */
#ifndef VILLES_OPS_INTERNAL_H
#define VILLES_OPS_INTERNAL_H

#include <stdbool.h>

#include "vec.h"
#include "ops.h"

/* An op's output: a gradient buffer only when `need` (some input has one),
 * so that parts of a graph no gradient reaches record nothing downstream.
 * NULL with err_set for a bad shape. */
tensor *op_out(ag_tape *t, bool need, int ndim, const int *shape);

/* Hand an op's computed output to the tape under the op's name (see
 * ag_record); the backward node, with inputs a and b, is recorded only when
 * out has a gradient (op_out gave it one: some input needs it). */
ag_node *op_node(ag_tape *t, const char *op, ag_backward_fn fn, tensor *out, tensor *a, tensor *b);

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

#endif
