/* vec.c - the RMSNorm of one vector; see vec.h. */
#include "vec.h"

#include <math.h>

void vec_rmsnorm(float *out, const float *x, const float *w, int d, float eps)
{
    float ss = 0.0f;
    for (int i = 0; i < d; i++) ss += x[i] * x[i];
    const float r = 1.0f / sqrtf(ss / (float)d + eps);
    for (int i = 0; i < d; i++) out[i] = x[i] * r * w[i];
}
