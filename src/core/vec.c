/* vec.c - the RMSNorm of one vector; see vec.h. */
#include "vec.h"

#include <math.h>
#include <string.h>

/* The sum of squares in VEC_SUM_LANES partial sums (element i into sum
 * i mod VEC_SUM_LANES), then added pairwise: a fixed order, so the same
 * bits whatever the compiler does, and independent chains that it can put
 * in one vector register (a single chain of d additions was a quarter of
 * a Transformer's generation step). */
enum { VEC_SUM_LANES = 16 };
typedef float vec_lanes __attribute__((vector_size(VEC_SUM_LANES * sizeof(float))));

static float sum_squares(const float *x, int d)
{
    vec_lanes v, acc = { 0 };   /* a vector type: GCC left the 16 chains scalar */
    int i = 0;
    for (; i + VEC_SUM_LANES <= d; i += VEC_SUM_LANES) {
        memcpy(&v, x + i, sizeof v);
        acc += v * v;
    }
    float a[VEC_SUM_LANES];
    memcpy(a, &acc, sizeof a);
    for (int j = 0; i + j < d; j++) a[j] += x[i + j] * x[i + j];
    for (int half = VEC_SUM_LANES / 2; half >= 1; half /= 2)
        for (int j = 0; j < half; j++) a[j] += a[j + half];
    return a[0];
}

void vec_rmsnorm(float *out, const float *x, const float *w, int d, float eps)
{
    const float r = 1.0f / sqrtf(sum_squares(x, d) / (float)d + eps);
    for (int i = 0; i < d; i++) out[i] = x[i] * r * w[i];
}
