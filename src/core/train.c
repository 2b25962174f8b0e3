/* train.c - the training loop shared by every trainer; see train.h. */
#include "train.h"

#include "shard.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>


enum { TR_DEFAULT_STEPS = 20000, TR_DEFAULT_EVAL_EVERY = 500, TR_DEFAULT_BATCH = 64 };
#define TR_DEFAULT_DISTILL 0.5f   /* --distill-weight when --teacher is given */
/* The loop's rng is seeded apart from the initialisation rng (seeded with
 * --seed by the model), so the two streams do not overlap. */
static const uint64_t TR_RNG_SALT = 0x9E3779B97F4A7C15ull;
/* The data-parallel shards' dropout masks: rng_at(seed ^ this, step, shard). */
static const uint64_t TR_DROPOUT_SALT = 0xD1B54A32D192ED03ull;

const char *const tr_schedule_names[] = { "constant", "cosine", NULL };

/* Wall-clock seconds (monotonic), for the speeds in the summary and log. */
static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- options ---------------------------------------------------------- */

void tr_options_init(tr_options *o, const char *kind, const char *default_out)
{
    memset(o, 0, sizeof *o);
    o->kind = kind;
    o->seed = 1;
    o->split_seed = 0;
    o->steps = TR_DEFAULT_STEPS;
    o->batch_size = TR_DEFAULT_BATCH;
    o->opt = OPT_DEFAULTS;
    o->eval_every = TR_DEFAULT_EVAL_EVERY;
    o->out_path = default_out;
}

void tr_last_path(const char *path, char *out, size_t cap)
{
    static const char ext[] = ".safetensors";
    size_t n = strlen(path), e = sizeof ext - 1;
    if (n > e && !strcmp(path + n - e, ext))
        snprintf(out, cap, "%.*s.last%s", (int)(n - e), path, ext);
    else
        snprintf(out, cap, "%s.last", path);
}

/* ---- training settings in the checkpoint ------------------------------ */

/* The optional members (fold, distill_weight and the teachers' hash, swa_start, input_noise) are
 * written only when set, so that a plain run's train_config is what it always was. */
static char *train_config_json(const tr_session *s)
{
    const tr_options *o = &s->o;
    char buf[768], fold[64] = "", distill[96] = "", swa[48] = "", noise[48] = "";
    if (o->swa_start > 0) snprintf(swa, sizeof swa, ",\"swa_start\":%.9g", (double)o->swa_start);
    if (o->input_noise > 0)
        snprintf(noise, sizeof noise, ",\"input_noise\":%.9g", (double)o->input_noise);
    if (o->n_folds) snprintf(fold, sizeof fold, ",\"fold\":\"%d/%d\"", o->fold, o->n_folds);
    if (o->distill_weight > 0)
        snprintf(distill, sizeof distill, ",\"distill_weight\":%.9g,\"teachers_fnv1a64\":\"%016" PRIx64 "\"",
                 (double)o->distill_weight, s->soft_hash);
    snprintf(buf, sizeof buf,
             "{\"seed\":\"%" PRIu64 "\",\"split_seed\":\"%" PRIu64 "\",\"steps\":%ld,"
             "\"batch_size\":%d,\"lr\":%.9g,\"weight_decay\":%.9g,\"schedule\":\"%s\","
             "\"warmup\":%ld,\"clip\":%.9g,\"eval_every\":%ld,\"ema\":%.9g%s%s%s%s}",
             o->seed, o->split_seed, o->steps, o->batch_size, (double)o->opt.lr,
             (double)o->opt.weight_decay, tr_schedule_names[o->opt.schedule], o->opt.warmup,
             (double)o->opt.clip, o->eval_every, (double)o->ema, fold, distill, swa, noise);
    return strdup(buf);
}

static bool json_num(const cJSON *obj, const char *key, double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(v)) return false;
    *out = v->valuedouble;
    return true;
}

static bool json_u64(const cJSON *obj, const char *key, uint64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsString(v)) return false;
    char *end;
    *out = strtoull(v->valuestring, &end, 10);
    return *v->valuestring && !*end;
}

/* Take the checkpoint's training settings for every flag not given. */
static err_code apply_train_config(tr_options *o, const char *json, const char *path)
{
    cJSON *c = json ? cJSON_Parse(json) : NULL;
    double steps, batch, lr, wd, warmup, clip, eval, ema = 0, distill = 0, swa = 0, noise = 0;
    int fold = 0, n_folds = 0;
    uint64_t seed, split_seed;
    const cJSON *sched = cJSON_GetObjectItemCaseSensitive(c, "schedule");
    int si = -1;
    for (int i = 0; cJSON_IsString(sched) && tr_schedule_names[i]; i++)
        if (!strcmp(sched->valuestring, tr_schedule_names[i])) si = i;
    bool ok = cJSON_IsObject(c) && json_u64(c, "seed", &seed) &&
              json_u64(c, "split_seed", &split_seed) && json_num(c, "steps", &steps) &&
              json_num(c, "batch_size", &batch) && json_num(c, "lr", &lr) &&
              json_num(c, "weight_decay", &wd) && json_num(c, "warmup", &warmup) &&
              json_num(c, "clip", &clip) && json_num(c, "eval_every", &eval) && si >= 0 &&
              batch >= 1 && batch <= 1 << 16 && steps >= 0 && steps < 1e12 && warmup >= 0 &&
              warmup < 1e12 && eval >= 0 && eval < 1e12 && lr >= 0 && wd >= 0 && clip >= 0;
    /* "ema" is optional: checkpoints written before it have none (no average) */
    if (ok && cJSON_GetObjectItemCaseSensitive(c, "ema"))
        ok = json_num(c, "ema", &ema) && ema >= 0 && ema < 1;
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(c, "fold");   /* optional too */
    if (ok && f) ok = cJSON_IsString(f) && !ds_fold_parse(f->valuestring, &fold, &n_folds);
    if (ok && cJSON_GetObjectItemCaseSensitive(c, "distill_weight"))
        ok = json_num(c, "distill_weight", &distill) && distill >= 0 && distill <= 1;
    if (ok && cJSON_GetObjectItemCaseSensitive(c, "swa_start"))
        ok = json_num(c, "swa_start", &swa) && swa >= 0 && swa < 1;
    if (ok && cJSON_GetObjectItemCaseSensitive(c, "input_noise"))
        ok = json_num(c, "input_noise", &noise) && noise >= 0 && noise < 1;
    cJSON_Delete(c);
    if (!ok) return err_set(ERR_FORMAT, "%s: no valid training state (train_config)", path);
    if (!(o->set & TR_SET_SEED)) o->seed = seed;
    if (!(o->set & TR_SET_SPLIT_SEED)) o->split_seed = split_seed;
    if (!(o->set & TR_SET_STEPS)) o->steps = (long)steps;
    if (!(o->set & TR_SET_BATCH)) o->batch_size = (int)batch;
    if (!(o->set & TR_SET_LR)) o->opt.lr = (float)lr;
    if (!(o->set & TR_SET_WD)) o->opt.weight_decay = (float)wd;
    if (!(o->set & TR_SET_SCHEDULE)) o->opt.schedule = (opt_schedule)si;
    if (!(o->set & TR_SET_WARMUP)) o->opt.warmup = (long)warmup;
    if (!(o->set & TR_SET_CLIP)) o->opt.clip = (float)clip;
    if (!(o->set & TR_SET_EVAL)) o->eval_every = (long)eval;
    if (!(o->set & TR_SET_EMA)) o->ema = (float)ema;
    if (!(o->set & TR_SET_FOLD)) o->fold = fold, o->n_folds = n_folds;
    if (!(o->set & TR_SET_DISTILL)) o->distill_weight = (float)distill;
    if (!(o->set & TR_SET_SWA)) o->swa_start = (float)swa;
    if (!(o->set & TR_SET_NOISE)) o->input_noise = (float)noise;
    return ERR_OK;
}

/* ---- loop state in the checkpoint ------------------------------------- */

static char *window_json(const tr_session *s)
{
    size_t cap = 2 + (size_t)s->window_n * 18;
    char *buf = malloc(cap), *p = buf;
    if (!buf) return NULL;
    *p++ = '[';
    for (int i = 0; i < s->window_n; i++)
        p += snprintf(p, cap - (size_t)(p - buf), "%s%.9g", i ? "," : "", (double)s->window[i]);
    snprintf(p, cap - (size_t)(p - buf), "]");
    return buf;
}

static bool parse_window(tr_session *s, const char *json)
{
    cJSON *a = json ? cJSON_Parse(json) : NULL;
    int n = cJSON_GetArraySize(a);
    bool ok = cJSON_IsArray(a) && n <= TR_WINDOW;
    for (int i = 0; ok && i < n; i++) {
        const cJSON *v = cJSON_GetArrayItem(a, i);
        ok = cJSON_IsNumber(v);
        if (ok) s->window[i] = (float)v->valuedouble;
    }
    if (ok) s->window_n = n;
    cJSON_Delete(a);
    return ok;
}

static bool parse_long(const char *s, long *out)
{
    char *end;
    if (!s || !*s) return false;
    *out = strtol(s, &end, 10);
    return !*end && *out >= 0;
}

/* Step, rng, recent losses and best validation loss of a --resume file. */
static err_code restore_loop_state(tr_session *s)
{
    const ck_file *f = &s->resume;
    const char *best = ck_meta(f, "best_val_loss");
    char *end = NULL;
    bool ok = parse_long(ck_meta(f, "step"), &s->step) &&
              parse_long(ck_meta(f, "best_step"), &s->best_step) &&
              ck_meta(f, "rng") && rng_from_string(&s->rng, ck_meta(f, "rng")) == ERR_OK &&
              parse_window(s, ck_meta(f, "train_window")) && best;
    if (ok) s->best_val = strtod(best, &end);
    if (!ok && ck_meta(f, "step") && !ck_meta(f, "rng"))
        return err_set(ERR_FORMAT, "%s holds the model alone (written with --model-only): "
                       "no training state to resume", s->o.resume_path);
    if (!ok || *end)
        return err_set(ERR_FORMAT, "%s: no valid training state (step, rng, train_window)",
                       s->o.resume_path);
    return ERR_OK;
}

/* The parameters and moments; with an average of the weights (--ema), the
 * average goes under the parameters' names (what generate and friends
 * load) and the raw training weights under TR_RAW_PREFIX. */
static err_code save_params(const tr_session *s, const tn_params *p, ck_writer *w)
{
    if (!s->ema) return tn_params_save(p, w, true);
    err_code rc = tn_params_save_buffer(p, w, "", s->ema);
    if (!rc) rc = tn_params_save_buffer(p, w, TN_MOMENT1_PREFIX, p->m);
    if (!rc) rc = tn_params_save_buffer(p, w, TN_MOMENT2_PREFIX, p->v);
    if (!rc) rc = tn_params_save_buffer(p, w, TR_RAW_PREFIX, p->data);
    return rc;
}

/* The other way round, on --resume.  A checkpoint written without an
 * average starts one from its weights; one written with an average
 * resumed without (--ema 0) trains on from its raw weights. */
static err_code restore_params(tr_session *s, tn_params *p)
{
    err_code rc = tn_params_load(p, &s->resume, true);
    if (rc) return rc;
    if (s->ema) memcpy(s->ema, p->data, p->n * sizeof *p->data);
    char raw[TN_NAME_MAX + 32];
    snprintf(raw, sizeof raw, "%s%s", TR_RAW_PREFIX, p->count ? p->e[0].name : "");
    return ck_get(&s->resume, raw) ? tn_params_load_buffer(p, &s->resume, TR_RAW_PREFIX, p->data)
                                   : ERR_OK;
}

/* tr_save, with the training state (moments, rng, recent losses, the
 * source's state) or without it (the model alone). */
static err_code save_state(const tr_session *s, const tr_model *m, const tr_source *src,
                           const char *path, bool state)
{
    ck_writer *w = ck_writer_new();
    if (!w) return err_set(ERR_NOMEM, "out of memory writing %s", path);
    char *config = m->config_json(m->impl), *vocab = NULL, *train = train_config_json(s);
    char *window = window_json(s);
    char num[3][32], rs[RNG_STRLEN];
    snprintf(num[0], sizeof num[0], "%ld", s->step);
    snprintf(num[1], sizeof num[1], "%" PRIu64, s->o.split_seed);
    snprintf(num[2], sizeof num[2], "%.9g", s->best_val);
    rng_to_string(&s->rng, rs);
    char best_step[32];
    snprintf(best_step, sizeof best_step, "%ld", s->best_step);
    err_code rc = config && train && window ? ERR_OK : err_set(ERR_NOMEM, "out of memory writing %s", path);
    if (!rc) rc = txt_vocab_to_json(s->vocab, &vocab);
    const char *meta[][2] = {
        { "format", CK_FORMAT }, { "format_version", CK_FORMAT_VERSION }, { "model", m->kind },
        { "config", config }, { "vocab", vocab }, { "step", num[0] }, { "split_seed", num[1] },
        { "train_config", train }, { "best_val_loss", num[2] }, { "best_step", best_step },
        { "rng", rs }, { "train_window", window },   /* the last two: training state */
    };
    size_t n_meta = sizeof meta / sizeof meta[0] - (state ? 0 : 2);
    for (size_t i = 0; !rc && i < n_meta; i++)
        rc = ck_put_meta(w, meta[i][0], meta[i][1]);
    char fold[32];
    snprintf(fold, sizeof fold, "%d/%d", s->o.fold, s->o.n_folds);
    if (!rc && s->o.n_folds) rc = ck_put_meta(w, "fold", fold);   /* for distillation */
    if (!rc && m->put_meta) rc = m->put_meta(m->impl, w);
    if (!rc && state && src && src->save) rc = src->save(src->ctx, w);
    if (!rc && state) rc = save_params(s, m->params, w);
    if (!rc && !state) rc = tn_params_save_buffer(m->params, w, "", s->ema ? s->ema : m->params->data);
    if (!rc) rc = ck_write(w, path);
    free(config);
    free(vocab);
    free(train);
    free(window);
    ck_writer_free(w);
    return rc;
}

err_code tr_save(const tr_session *s, const tr_model *m, const tr_source *src, const char *path)
{
    return save_state(s, m, src, path, !s->o.model_only);
}

/* ---- session ----------------------------------------------------------- */

/* The directory of path must accept new files (checked before hours of training). */
static err_code check_writable(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    if (access(dir, W_OK | X_OK) != 0)
        return err_set(ERR_IO, "cannot write %s: directory %s is missing or read-only", path, dir);
    return ERR_OK;
}

err_code tr_open(tr_session *s, const tr_options *o)
{
    memset(s, 0, sizeof *s);
    s->o = *o;
    s->best_val = INFINITY;
    s->best_step = 0;
    rng_seed(&s->rng, o->seed ^ TR_RNG_SALT);
    err_code rc = ERR_OK;
    if (o->resume_path) {
        s->resuming = true;
        rc = ck_read(o->resume_path, &s->resume);
        if (!rc) rc = ck_expect_model(&s->resume, o->resume_path, o->kind);
        if (!rc) rc = apply_train_config(&s->o, ck_meta(&s->resume, "train_config"), o->resume_path);
        if (!rc) rc = restore_loop_state(s);
    }
    if (!rc && s->o.n_teachers && !(o->set & TR_SET_DISTILL) && s->o.distill_weight == 0)
        s->o.distill_weight = TR_DEFAULT_DISTILL;
    if (!rc && s->o.distill_weight > 0 && !s->o.n_teachers)
        rc = err_set(ERR_ARG, "--distill-weight %g needs the --teacher files%s",
                     (double)s->o.distill_weight, s->resuming ? " again on --resume" : "");
    if (!rc) rc = check_writable(o->out_path);
    if (!rc && o->log_path) rc = check_writable(o->log_path);
    if (rc) {
        tr_close(s);
        return rc;
    }
    return ERR_OK;
}

err_code tr_load_names(tr_session *s)
{
    err_code rc;
    if (s->resuming) {
        txt_vocab v;
        rc = txt_vocab_from_json(&v, ck_meta(&s->resume, "vocab"));
        if (rc) return err_set(rc, "%s: no valid vocabulary", s->o.resume_path);
        rc = ds_load_with_vocab(&s->corpus, &v, s->o.data, s->o.val_data, s->o.split_seed, 0.1);
        txt_vocab_free(&v);
    } else {
        rc = ds_load(&s->corpus, s->o.data, s->o.val_data, s->o.split_seed, 0.1);
    }
    if (rc) return rc;
    if (s->o.n_folds && (rc = ds_drop_fold(&s->corpus, s->o.fold, s->o.n_folds))) {
        ds_corpus_free(&s->corpus);
        return rc;
    }
    s->have_corpus = true;
    s->vocab = &s->corpus.vocab;
    return ERR_OK;
}

void tr_close(tr_session *s)
{
    if (!s) return;
    ck_free(&s->resume);
    free(s->ema);
    s->ema = NULL;
    free(s->soft);
    s->soft = NULL;
    if (s->have_corpus) ds_corpus_free(&s->corpus);
    s->have_corpus = false;
    s->vocab = NULL;
}

/* ---- weight averaging (--ema, --swa-start) ----------------------------------- */

/* The first step averaged by --swa-start FRAC: round(FRAC * steps). */
static long swa_first(const tr_options *o) { return lround((double)o->swa_start * (double)o->steps); }

/* avg += (1 - decay_t) (weights - avg).  --ema: the usual warm-up of the
 * decay, decay_t = min(decay, (1 + t) / (10 + t)), so that the first
 * steps do not keep the random initialisation for thousands of steps.
 * --swa-start: the plain mean of the weights after steps s0, s0 + 1, ...,
 * t (decay_t = (t - s0) / (t - s0 + 1)); before s0 the weights themselves.
 * Both depend on the step alone, so a resumed run averages the same way. */
static void update_average(float *ema, const tn_params *p, const tr_options *o, long step)
{
    float d;
    if (o->swa_start > 0) {
        long n = step - swa_first(o);
        d = n <= 0 ? 0.0f : (float)n / (float)(n + 1);
    } else {
        float warm = (float)(1 + step) / (float)(10 + step);
        d = o->ema < warm ? o->ema : warm;
    }
    if (d == 0) {   /* exactly the weights */
        memcpy(ema, p->data, p->n * sizeof *ema);
        return;
    }
    const float *w = p->data, a = 1.0f - d;
    for (size_t i = 0; i < p->n; i++) ema[i] += a * (w[i] - ema[i]);
}

/* Exchange the weights and their average (before and after evaluating the
 * average). */
static void swap_average(tr_session *s, tn_params *p)
{
    if (!s->ema) return;
    for (size_t i = 0; i < p->n; i++) {
        float t = p->data[i];
        p->data[i] = s->ema[i];
        s->ema[i] = t;
    }
}

/* ---- evaluation -------------------------------------------------------- */

err_code tr_eval_batches(const tr_model *m, void *impl, ag_tape *t, ds_batch *b,
                         const ds_names *d, const size_t *order, int batch_size, int first,
                         int stride, double *loss_sum, size_t *n_targets)
{
    err_code rc = ERR_OK;
    size_t step = (size_t)batch_size * (size_t)stride;
    for (size_t i = (size_t)first * (size_t)batch_size; i < d->n; i += step) {
        int B = d->n - i < (size_t)batch_size ? (int)(d->n - i) : batch_size;
        if ((rc = ds_batch_fill(b, d, order + i, B))) break;
        b->soft = NULL;   /* a training batch's soft targets, if any, do not apply */
        ag_reset(t);
        tensor *loss = m->loss(impl, t, b);
        if (!loss) {
            rc = ERR_ARG;
            break;
        }
        *loss_sum += (double)loss->data[0] * (double)b->n_tokens;
        *n_targets += b->n_tokens;
    }
    return rc;
}

err_code tr_eval_names(const tr_model *m, ag_tape *t, const ds_names *d, int batch_size,
                       double *loss_sum, size_t *n_targets)
{
    *loss_sum = 0;
    *n_targets = 0;
    if (d->n == 0) return ERR_OK;
    size_t *order;
    err_code rc = ds_length_order(d, &order);
    if (rc) return rc;
    bool grad = t->grad, training = t->training;
    t->grad = false;
    t->training = false;
    ds_batch b = { 0 };
    rc = tr_eval_batches(m, m->impl, t, &b, d, order, batch_size, 0, 1, loss_sum, n_targets);
    t->grad = grad;
    t->training = training;
    ds_batch_free(&b);
    free(order);
    return rc;
}

/* The validation loss of the weights, or of their average with --ema. */
static err_code evaluate(tr_session *s, const tr_model *m, const tr_source *src, ag_tape *t,
                         sh_shards *sh, double *loss)
{
    double sum;
    size_t n;
    bool grad = t->grad, training = t->training;
    t->grad = false;
    t->training = false;
    swap_average(s, m->params);
    err_code rc = src  ? src->eval(src->ctx, m, t, s->o.batch_size, &sum, &n)
                  : sh ? sh_eval(sh, &s->corpus.val, s->o.batch_size, &sum, &n)
                       : tr_eval_names(m, t, &s->corpus.val, s->o.batch_size, &sum, &n);
    swap_average(s, m->params);
    t->grad = grad;
    t->training = training;
    if (rc) return rc;
    if (n == 0) return err_set(ERR_ARG, "the validation set has no targets");
    *loss = sum / (double)n;
    return isfinite(*loss) ? ERR_OK : ERR_NAN;   /* the caller words the message */
}

/* ---- the loop ----------------------------------------------------------- */

typedef struct loop {
    tr_session       *s;
    const tr_model   *m;
    const tr_source  *src;
    ag_tape           tape;
    ds_batch          batch;
    size_t           *idx;       /* batch_size name indices */
    sh_shards        *sh;        /* the data-parallel workers (train.h), NULL = one tape */
    sh_shards         shards;
    int              *bounds;    /* the shards' rows in the batch (sh_balance) */
    const tr_comm    *comm;      /* NULL = one process */
    bool              stop;      /* data-parallel: every process agreed to stop */
    float            *soft;      /* (batch_size, longest name + 1, V) soft targets of
                                    the batch, with s->soft; else NULL */
    double           *letter_cdf; /* (V) cumulative training-letter frequencies, with
                                     --input-noise; else NULL */
    opt_config        opt;
    FILE             *log;
    const tr_hooks   *hooks;     /* never NULL (an empty set when none given) */
    double            t_start, t_train;
    double            log_tokens, log_seconds;   /* since the last log row */
    char              last_saved[4200];           /* "" when nothing was written */
} loop;

static double window_mean(const tr_session *s)
{
    double sum = 0;
    for (int i = 0; i < s->window_n; i++) sum += s->window[i];
    return s->window_n ? sum / s->window_n : NAN;
}

/* The batch's soft targets: each name's rows of s->soft at its targets
 * (pad positions are never read). */
/* The next batch's names into L->idx (the same draws however the batch is
 * then split); filled into L->batch unless the shards fill their own. */
static err_code next_batch(loop *L)
{
    tr_session *s = L->s;
    if (L->src) return L->src->next(L->src->ctx, &s->rng, s->o.batch_size, &L->batch);
    const ds_names *d = &s->corpus.train;
    for (int i = 0; i < s->o.batch_size; i++) L->idx[i] = rng_below(&s->rng, (uint32_t)d->n);
    if (L->sh) return ERR_OK;
    err_code rc = ds_batch_fill(&L->batch, d, L->idx, s->o.batch_size);
    if (!rc && L->soft)
        sh_gather_soft(&L->batch, d, L->idx, s->soft, s->vocab->size, s->o.distill_weight, L->soft);
    if (!rc && L->letter_cdf)
        ds_noise_inputs(&L->batch, L->letter_cdf, s->vocab->size, s->o.input_noise, &s->rng);
    return rc;
}

/* Training stops before the bad values reach a file. */
static err_code nan_error(const loop *L, const char *what, double v, long step)
{
    char where[4300];
    if (L->last_saved[0]) snprintf(where, sizeof where, "%s was left as it was", L->last_saved);
    else snprintf(where, sizeof where, "no checkpoint was written");
    const char *op = L->sh ? sh_first_nonfinite(L->sh) : ag_first_nonfinite(&L->tape);
    return err_set(ERR_NAN, "%s is %s at step %ld (try a lower --lr or --clip); %s%s%s", what,
                   isnan(v) ? "NaN" : "infinite", step, where, op ? "; first: " : "", op ? op : "");
}

/* The batch's gradient and loss on one tape. */
static err_code one_tape(loop *L, float *loss_out)
{
    const tr_model *m = L->m;
    ag_reset(&L->tape);
    tn_params_zero_grad(m->params);
    tensor *loss = m->loss(m->impl, &L->tape, &L->batch);
    if (!loss) return ERR_ARG;
    *loss_out = loss->data[0];
    if (!isfinite(*loss_out)) return nan_error(L, "loss", *loss_out, L->s->step + 1);
    ag_backward(&L->tape, loss);
    return ERR_OK;
}

/* The batch's gradient and loss, split across the threads and processes
 * (train.h); the processes also agree on stopping (L->stop). */
static err_code data_parallel(loop *L, float *loss_out)
{
    tr_session *s = L->s;
    const ds_names *d = &s->corpus.train;
    int B = s->o.batch_size, R = L->comm ? L->comm->size : 1, r = L->comm ? L->comm->rank : 0;
    sh_balance(d, L->idx, B, R * L->sh->n, L->bounds);
    sh_job job = { .d = d, .idx = L->idx, .bounds = L->bounds,
                   .soft_all = s->soft, .V = s->vocab->size, .soft_weight = s->o.distill_weight,
                   .seed = s->o.seed ^ TR_DROPOUT_SALT, .step = s->step + 1,
                   .letter_cdf = L->letter_cdf, .input_noise = s->o.input_noise,
                   .shard0 = r * L->sh->n };
    for (int i = 0; i < B; i++) job.total += (size_t)ds_len(d, L->idx[i]) + 1;
    double stats[2] = { 0, 0 };   /* the loss, the processes wanting to stop */
    err_code rc = sh_step(L->sh, &job, &stats[0]);
    if (rc) return rc;
    if (L->comm) {
        stats[1] = L->hooks->should_stop && L->hooks->should_stop(L->hooks->ctx);
        const tr_comm *c = L->comm;
        if ((rc = c->sum_floats(c->ctx, L->m->params->grad, L->m->params->n)) ||
            (rc = c->sum_doubles(c->ctx, stats, 2)))
            return rc;
        L->stop = stats[1] > 0;
    }
    L->batch.n_tokens = job.total;
    *loss_out = (float)stats[0];
    if (!isfinite(*loss_out)) return nan_error(L, "loss", *loss_out, s->step + 1);
    return ERR_OK;
}

/* One optimiser step; *loss_out gets the batch loss. */
static err_code train_step(loop *L, float *loss_out)
{
    tr_session *s = L->s;
    const tr_model *m = L->m;
    err_code rc = next_batch(L);
    if (!rc) rc = L->sh ? data_parallel(L, loss_out) : one_tape(L, loss_out);
    if (rc) return rc;
    float v = *loss_out;
    if (m->after_backward) m->after_backward(m->impl);
    if (L->opt.clip > 0) opt_clip(m->params, L->opt.clip);
    long step = s->step + 1;
    if (L->sh) sh_adamw(L->sh, &L->opt, step, opt_lr_at(&L->opt, step));
    else opt_adamw_step(m->params, &L->opt, step, opt_lr_at(&L->opt, step));
    if (m->after_update) m->after_update(m->impl);
    if (s->ema) update_average(s->ema, m->params, &s->o, step);
    s->step = step;
    s->window[(step - 1) % TR_WINDOW] = v;
    if (s->window_n < TR_WINDOW) s->window_n++;
    s->sum.tokens += (double)L->batch.n_tokens;
    L->log_tokens += (double)L->batch.n_tokens;
    return ERR_OK;
}

#define LOG_HEADER "step\ttrain_loss\tval_loss\tlr\ttokens_per_s"

/* The first line of the log at path is LOG_HEADER followed by extra. */
static bool same_header(const char *path, const char *extra)
{
    FILE *f = fopen(path, "r");
    char line[1024], want[1024];
    snprintf(want, sizeof want, LOG_HEADER "%s\n", extra);
    bool same = f && fgets(line, sizeof line, f) && !strcmp(line, want);
    if (f) fclose(f);
    return same;
}

static err_code open_log(loop *L)
{
    const tr_session *s = L->s;
    if (!s->o.log_path || (L->comm && L->comm->rank)) return ERR_OK;   /* process 0's */
    /* a resumed run continues the curve of the run it resumes */
    FILE *old = s->resuming ? fopen(s->o.log_path, "r") : NULL;
    bool append = old && fgetc(old) != EOF;
    if (old) fclose(old);
    char extra[512];   /* the model's columns, then the hooks' */
    snprintf(extra, sizeof extra, "%s%s", L->m->log_columns ? L->m->log_columns : "",
             L->hooks->log_columns ? L->hooks->log_columns : "");
    if (append && !same_header(s->o.log_path, extra))
        return err_set(ERR_ARG, "%s: its columns are not those of this run (--samples?); "
                       "give another --log", s->o.log_path);
    L->log = fopen(s->o.log_path, append ? "a" : "w");
    if (!L->log) return err_set(ERR_IO, "cannot write %s", s->o.log_path);
    if (!append) fprintf(L->log, LOG_HEADER "%s\n", extra);
    return ERR_OK;
}

static void log_row(loop *L, double val)
{
    if (!L->log) return;
    tr_session *s = L->s;
    double dt = L->t_train - L->log_seconds;
    fprintf(L->log, "%ld\t%.6f\t%.6f\t%.6g\t%.0f", s->step, window_mean(s), val,
            (double)opt_lr_at(&L->opt, s->step > 0 ? s->step : 1), dt > 0 ? L->log_tokens / dt : 0.0);
    if (L->m->log_values) L->m->log_values(L->m->impl, L->log);
    if (L->hooks->log_values) L->hooks->log_values(L->hooks->ctx, s, L->log);
    fputc('\n', L->log);
    fflush(L->log);
    L->log_tokens = 0;
    L->log_seconds = L->t_train;
}

/* state: with the training state, else the model alone (tr_save's choice). */
static err_code save(loop *L, const char *path, bool state)
{
    err_code rc = save_state(L->s, L->m, L->src, path, state);
    if (!rc) snprintf(L->last_saved, sizeof L->last_saved, "%.4096s (step %ld)", path, L->s->step);
    return rc;
}

/* Evaluate, log, and write the checkpoint the flags ask for. */
static err_code checkpoint(loop *L, double *val)
{
    tr_session *s = L->s;
    if (L->comm && L->comm->rank) return ERR_OK;   /* process 0's */
    err_code rc = evaluate(s, L->m, L->src, &L->tape, L->sh, val);
    if (rc == ERR_NAN) return nan_error(L, "the validation loss", *val, s->step);
    if (rc) return rc;
    if (L->hooks->on_eval) {   /* the hook sees the weights evaluated */
        swap_average(s, L->m->params);
        L->hooks->on_eval(L->hooks->ctx, s, *val);
        swap_average(s, L->m->params);
    }
    log_row(L, *val);
    bool better = *val < s->best_val;
    if (better) {
        s->best_val = *val;
        s->best_step = s->step;
    }
    if (s->o.keep_best && !better) return ERR_OK;
    return save(L, s->o.out_path, !s->o.model_only);
}

/* Where a run cut short writes its whole state for --resume: out_path,
 * unless that holds the best state or the model alone (train.h). */
static void stopped_path(const tr_options *o, char *path, size_t cap)
{
    if (o->keep_best || o->model_only) tr_last_path(o->out_path, path, cap);
    else snprintf(path, cap, "%s", o->out_path);
}

static err_code interrupted(loop *L)
{
    tr_session *s = L->s;
    char path[4200];
    stopped_path(&s->o, path, sizeof path);
    if (L->comm && L->comm->rank)   /* process 0 writes */
        return err_set(ERR_INTERRUPT, "interrupted at step %ld", s->step);
    err_code rc = save(L, path, true);   /* resumable, whatever the flags */
    if (rc) return rc;
    return err_set(ERR_INTERRUPT, "interrupted at step %ld; checkpoint written to %s "
                   "(continue with --resume %s)", s->step, path, path);
}

int tr_workers(const tr_session *s, const tr_model *m, const tr_source *src)
{
    bool several = s->comm && s->comm->size > 1;
    if ((s->o.threads <= 1 && !several) || src || !m->replica_new) return 0;
    return s->o.threads > 1 ? s->o.threads : 1;
}

/* The data-parallel workers when the run asks for them (train.h). */
static err_code start_shards(loop *L)
{
    const tr_session *s = L->s;
    const tr_model *m = L->m;
    L->comm = s->comm && s->comm->size > 1 ? s->comm : NULL;
    int threads = tr_workers(s, m, L->src);
    if (L->comm && !threads)   /* a custom source's windows may carry state in the model */
        return err_set(ERR_ARG, "%s cannot train on several processes%s", m->kind,
                       L->src ? " on this data source" : "");
    if (!threads) return ERR_OK;
    size_t soft = s->soft ? (size_t)s->o.batch_size * ((size_t)s->corpus.train.max_len + 1) *
                                s->vocab->size : 0;
    err_code rc = sh_init(&L->shards, m, threads, soft, s->o.check_finite);
    L->sh = &L->shards;   /* freed by loop_free, even half made */
    int G = threads * (L->comm ? L->comm->size : 1);
    if (!rc && !(L->bounds = malloc(((size_t)G + 1) * sizeof *L->bounds)))
        rc = err_set(ERR_NOMEM, "out of memory");
    return rc;
}

/* s->soft_hash; on --resume, the hash the run started with must match it
 * (checkpoints written before it was recorded have none: not checked). */
static err_code hash_soft_targets(tr_session *s)
{
    const ds_names *d = &s->corpus.train;
    size_t bytes = tr_soft_row(d, d->n) * (size_t)s->vocab->size * sizeof *s->soft;
    s->soft_hash = ck_fnv1a(CK_FNV1A_BASIS, s->soft, bytes);
    if (!s->resuming) return ERR_OK;
    cJSON *c = cJSON_Parse(ck_meta(&s->resume, "train_config") ? ck_meta(&s->resume, "train_config") : "");
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(c, "teachers_fnv1a64");
    char now[24];
    snprintf(now, sizeof now, "%016" PRIx64, s->soft_hash);
    bool same = !h || (cJSON_IsString(h) && !strcmp(h->valuestring, now));
    cJSON_Delete(c);
    return same ? ERR_OK
                : err_set(ERR_ARG, "%s: the --teacher files give other soft targets than the run started "
                          "with (fnv1a64 %s, not the recorded one): other teachers would not continue it",
                          s->o.resume_path, now);
}

static err_code loop_init(loop *L, tr_session *s, const tr_model *m, const tr_source *src,
                          const tr_hooks *hooks)
{
    memset(L, 0, sizeof *L);
    L->s = s;
    L->hooks = hooks;
    L->m = m;
    L->src = src;
    L->opt = s->o.opt;
    L->opt.total_steps = s->o.steps;
    if (!src && !s->have_corpus) return err_set(ERR_ARG, "tr_run: no names loaded and no source");
    if (!src && s->corpus.train.n == 0) return err_set(ERR_ARG, "no training names");
    L->idx = malloc((size_t)s->o.batch_size * sizeof *L->idx);
    if (!L->idx) return err_set(ERR_NOMEM, "out of memory");
    if (src && (s->o.n_folds || s->o.distill_weight > 0))
        return err_set(ERR_ARG, "--fold and --teacher work on names, not on this data source");
    if (src && s->o.input_noise > 0)
        return err_set(ERR_ARG, "--input-noise works on names, not on this data source");
    if (s->o.input_noise > 0) {
        if (!(L->letter_cdf = malloc(s->vocab->size * sizeof *L->letter_cdf)))
            return err_set(ERR_NOMEM, "out of memory");
        ds_letter_cdf(&s->corpus.train, s->vocab->size, L->letter_cdf);
    }
    if (s->o.distill_weight > 0 && !s->soft)
        return err_set(ERR_ARG, "no soft targets: the teachers were not scored");
    err_code rc = s->soft ? hash_soft_targets(s) : ERR_OK;
    if (rc) return rc;
    if (s->soft) {   /* distillation: allocated once, nothing in the step */
        if (src || !m->soft_targets)
            return err_set(ERR_ARG, "%s cannot learn from teachers (soft targets)%s", m->kind,
                           src ? " on this data source" : "");
        size_t n = (size_t)s->o.batch_size * ((size_t)s->corpus.train.max_len + 1) * s->vocab->size;
        if (!(L->soft = malloc(n * sizeof *L->soft))) return err_set(ERR_NOMEM, "out of memory");
    }
    if ((rc = ag_init(&L->tape, (size_t)1 << 20))) return rc;
    L->tape.rng = &s->rng;
    L->tape.check_finite = s->o.check_finite;
    if (s->o.ema > 0 && s->o.swa_start > 0)
        return err_set(ERR_ARG, "--ema and --swa-start: choose one way to average the weights");
    if (s->o.ema > 0 || s->o.swa_start > 0) {   /* the average starts at the initial weights */
        const tn_params *p = m->params;
        if (!(s->ema = malloc(p->n * sizeof *s->ema))) return err_set(ERR_NOMEM, "out of memory");
        memcpy(s->ema, p->data, p->n * sizeof *s->ema);
    }
    if ((rc = start_shards(L))) return rc;
    if (s->resuming) {
        rc = restore_params(s, m->params);
        if (!rc && src && src->load) rc = src->load(src->ctx, &s->resume);
        if (rc) return rc;
    }
    return open_log(L);
}

static void loop_free(loop *L)
{
    if (L->sh) sh_free(L->sh);
    free(L->bounds);
    ag_free(&L->tape);
    ds_batch_free(&L->batch);
    free(L->idx);
    free(L->soft);
    free(L->letter_cdf);
    if (L->log) fclose(L->log);
}

/* The step this run ends after: --steps, or --stop-after when it comes first. */
static long last_step(const tr_options *o)
{
    return o->stop_after > 0 && o->stop_after < o->steps ? o->stop_after : o->steps;
}

static err_code run_steps(loop *L)
{
    tr_session *s = L->s;
    double val;
    while (s->step < last_step(&s->o)) {
        double t0 = now();
        float loss = 0;
        err_code rc = train_step(L, &loss);
        if (rc) return rc;
        L->t_train += now() - t0;
        s->sum.run_steps++;
        if (L->hooks->on_step) L->hooks->on_step(L->hooks->ctx, s, loss, L->t_train);
        /* evaluate before obeying a signal, so a resumed run skips no evaluation */
        if (s->o.eval_every > 0 && s->step % s->o.eval_every == 0 && s->step < last_step(&s->o) &&
            (rc = checkpoint(L, &val)))
            return rc;
        bool stop = L->comm ? L->stop : L->hooks->should_stop && L->hooks->should_stop(L->hooks->ctx);
        if (stop) return interrupted(L);
    }
    return ERR_OK;
}

/* After --stop-after ended the run short of --steps: when the checkpoint
 * just written is not the whole state, the whole state goes to the "last"
 * file too, as on Ctrl-C, so that --resume can go on with the schedule. */
static err_code save_stopped(loop *L)
{
    const tr_session *s = L->s;
    if (s->step >= s->o.steps || (L->comm && L->comm->rank)) return ERR_OK;
    if (!s->o.keep_best && !s->o.model_only) return ERR_OK;
    char path[4200];
    stopped_path(&s->o, path, sizeof path);
    return save(L, path, true);
}

err_code tr_run(tr_session *s, const tr_model *m, const tr_source *src, const tr_hooks *hooks)
{
    static const tr_hooks none = { 0 };
    loop L;
    memset(&s->sum, 0, sizeof s->sum);
    err_code rc = loop_init(&L, s, m, src, hooks ? hooks : &none);
    if (rc) {
        loop_free(&L);
        return rc;
    }
    L.t_start = now();
    bool trained = s->step < last_step(&s->o);
    L.tape.training = true;
    rc = run_steps(&L);
    L.tape.training = false;
    double val = NAN;
    if (!rc) {   /* the final evaluation, logged and saved unless nothing was trained */
        if (trained) rc = checkpoint(&L, &val);
        if (!rc && trained) rc = save_stopped(&L);
        else if ((!L.comm || !L.comm->rank) &&
                 (rc = evaluate(s, m, src, &L.tape, L.sh, &val)) == ERR_NAN)
            rc = nan_error(&L, "the validation loss", val, s->step);
    }
    if (!rc) {
        tr_summary *u = &s->sum;
        u->steps = s->step;
        u->train_loss = window_mean(s);
        u->val_loss = val;
        u->best_val_loss = isfinite(s->best_val) ? s->best_val : val;
        u->best_step = isfinite(s->best_val) ? s->best_step : s->step;
        u->seconds = now() - L.t_start;
        u->train_seconds = L.t_train;
        if (L.sh) u->shard_cpu_sum = L.sh->cpu_sum, u->shard_cpu_max = L.sh->cpu_max;
        if (s->ema) memcpy(m->params->data, s->ema, m->params->n * sizeof *s->ema);
    }
    loop_free(&L);
    return rc;
}
