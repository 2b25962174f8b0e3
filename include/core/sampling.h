/* sampling.h - turning next-token logits into a token.
 *
 * Order of operations, as in llama2.c: logits / temperature, softmax,
 * keep the top_k most probable (0 = all), keep the smallest set whose mass
 * reaches top_p (1 = all), renormalise, draw.  temperature 0 is argmax.
 */
#ifndef VILLES_SAMPLING_H
#define VILLES_SAMPLING_H

#include "rng.h"

typedef struct smp_config {
    float temperature;   /* >= 0; default 1 */
    int   top_k;         /* >= 0; 0 = no limit */
    float top_p;         /* (0, 1]; 1 = no limit */
} smp_config;

#define SMP_DEFAULTS ((smp_config){ .temperature = 1.0f, .top_k = 0, .top_p = 1.0f })

/* Sample a token from logits[0..V).  Entries equal to -INFINITY are never
 * drawn.  scratch holds 2 * V floats (no allocation).  */
int smp_sample(const float *logits, int V, const smp_config *c, rng *r, float *scratch);

/* log-softmax of logits[0..V) into out (may alias). */
void smp_log_softmax(const float *logits, int V, float *out);

#endif
