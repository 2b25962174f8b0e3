/* optim.h - AdamW over a tn_params store, gradient clipping, schedules. */
#ifndef VILLES_OPTIM_H
#define VILLES_OPTIM_H

#include "tensor.h"

typedef enum opt_schedule { OPT_CONSTANT, OPT_COSINE } opt_schedule;

typedef struct opt_config {
    float lr;             /* peak learning rate (3e-4) */
    float beta1, beta2;   /* 0.9, 0.999 */
    float eps;            /* 1e-8 */
    float weight_decay;   /* 0.01, decoupled, on params declared with decay */
    float clip;           /* max global gradient norm; 0 = no clipping */
    opt_schedule schedule;
    long  warmup;         /* linear warm-up steps (cosine schedule) */
    long  total_steps;    /* cosine decays to min_lr_frac * lr at this step */
    float min_lr_frac;    /* 0.1 */
} opt_config;

#define OPT_DEFAULTS ((opt_config){ .lr = 3e-4f, .beta1 = 0.9f, .beta2 = 0.999f, \
    .eps = 1e-8f, .weight_decay = 0.01f, .clip = 0.0f, .schedule = OPT_CONSTANT, \
    .warmup = 0, .total_steps = 0, .min_lr_frac = 0.1f })

/* Learning rate at 1-based step. */
float opt_lr_at(const opt_config *c, long step);
/* Scale gradients so their global L2 norm is at most max_norm; returns the
 * norm before clipping. */
float opt_clip(tn_params *p, float max_norm);
/* One AdamW update at 1-based step with learning rate lr (bias-corrected). */
void  opt_adamw_step(tn_params *p, const opt_config *c, long step, float lr);
/* The same update on the parameters p->e[first..last) alone (so that
 * threads can share one step: the result does not depend on the cut). */
void  opt_adamw_entries(tn_params *p, const opt_config *c, long step, float lr, int first, int last);

#endif
