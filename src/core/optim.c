/* optim.c - AdamW, global-norm clipping and learning-rate schedules; see
 * optim.h.  The update follows torch.optim.AdamW step for step (decoupled
 * decay first, then the moments, then the bias-corrected step written the
 * way PyTorch writes it) so that runs compare with the PyTorch reference. */
#include "optim.h"

#include <math.h>

float opt_lr_at(const opt_config *c, long step)
{
    if (c->schedule == OPT_CONSTANT) return c->lr;
    if (c->warmup > 0 && step <= c->warmup) return c->lr * (float)step / (float)c->warmup;
    long span = c->total_steps - c->warmup;
    double progress = span > 0 ? (double)(step - c->warmup) / (double)span : 1.0;
    if (progress > 1.0) progress = 1.0;
    double min = c->min_lr_frac;
    return (float)(c->lr * (min + (1.0 - min) * 0.5 * (1.0 + cos(M_PI * progress))));
}

float opt_clip(tn_params *p, float max_norm)
{
    if (!p || !p->grad) return 0.0f;
    double ss = 0.0;
    for (size_t i = 0; i < p->n; i++) ss += (double)p->grad[i] * p->grad[i];
    double norm = sqrt(ss);
    /* PyTorch's clip_grad_norm_: coefficient max / (norm + 1e-6), only if < 1 */
    double coef = max_norm / (norm + 1e-6);
    if (max_norm > 0.0f && coef < 1.0) {
        float cf = (float)coef;
        for (size_t i = 0; i < p->n; i++) p->grad[i] *= cf;
    }
    return (float)norm;
}

/* One parameter's AdamW update over n contiguous floats. */
static void adamw_update(float *restrict w, const float *restrict g, float *restrict m,
                         float *restrict v, size_t n, const opt_config *c, float lr,
                         float decay, float step_size, float bc2_sqrt)
{
    float b1 = c->beta1, b2 = c->beta2, eps = c->eps;
    float keep = 1.0f - lr * decay;
    for (size_t i = 0; i < n; i++) {
        w[i] *= keep;
        m[i] = b1 * m[i] + (1.0f - b1) * g[i];
        v[i] = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
        w[i] -= step_size * m[i] / (sqrtf(v[i]) / bc2_sqrt + eps);
    }
}

void opt_adamw_step(tn_params *p, const opt_config *c, long step, float lr)
{
    if (p) opt_adamw_entries(p, c, step, lr, 0, p->count);
}

void opt_adamw_entries(tn_params *p, const opt_config *c, long step, float lr, int first, int last)
{
    if (!p || !p->data || step < 1) return;
    double bc1 = 1.0 - pow(c->beta1, (double)step);
    double bc2 = 1.0 - pow(c->beta2, (double)step);
    float step_size = (float)(lr / bc1), bc2_sqrt = (float)sqrt(bc2);
    for (int i = first; i < last; i++) {
        const tn_param_entry *e = &p->e[i];
        size_t o = e->offset;
        adamw_update(p->data + o, p->grad + o, p->m + o, p->v + o, (size_t)e->t.n, c, lr,
                     e->decay ? c->weight_decay : 0.0f, step_size, bc2_sqrt);
    }
}
