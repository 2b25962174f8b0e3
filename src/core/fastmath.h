/* fastmath.h - the op files' (ops.c, attention.c, gru.c) short names for
 * vec.h's fast exp, sigmoid and tanh; not part of libcore's public
 * interface.  To go once those files call vec_expf & co directly. */
#ifndef VILLES_FASTMATH_H
#define VILLES_FASTMATH_H

#include "vec.h"

static inline float vexpf(float x) { return vec_expf(x); }
static inline float vsigmoidf(float x) { return vec_sigmoidf(x); }
static inline float vtanhf(float x) { return vec_tanhf(x); }

#endif
