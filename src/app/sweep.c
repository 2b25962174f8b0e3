/* sweep.c - steer --sweep, a dose-response table of one SAE feature; see
 * sweep.h. */
#include "sweep.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "rng.h"
#include "transformer.h"

/* ---- flags ------------------------------------------------------------------ */

void sw_parse_range(sw_options *o, const char *arg)
{
    const char *eq = strchr(arg, '=');
    const char *c1 = eq ? strchr(eq + 1, ':') : NULL, *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (!eq || eq == arg || !c1 || !c2 || strchr(c2 + 1, ':'))
        cli_usage("--sweep '%s': expected FEATURE=LO:HI:STEP", arg);
    char part[4][64];
    const char *from[4] = { arg, eq + 1, c1 + 1, c2 + 1 }, *to[4] = { eq, c1, c2, c2 + strlen(c2) };
    for (int i = 0; i < 4; i++) {
        int n = (int)(to[i] - from[i]);
        snprintf(part[i], sizeof part[i], "%.*s", n < 63 ? n : 63, from[i]);
    }
    o->feature = (int)cli_long("--sweep", part[0], 0, SAE_MAX_FEATURES - 1);
    o->lo = cli_double("--sweep", part[1], -1e6, 1e6);
    o->hi = cli_double("--sweep", part[2], -1e6, 1e6);
    o->step = cli_double("--sweep", part[3], 0, 1e6);
    if (!(o->step > 0)) cli_usage("--sweep '%s': STEP must be positive", arg);
    if (o->lo > o->hi) cli_usage("--sweep '%s': empty range (LO > HI)", arg);
    double n = floor((o->hi - o->lo) / o->step + 1e-9) + 1;
    if (n > SW_MAX_VALUES) cli_usage("--sweep '%s': %.0f values, at most %d", arg, n, SW_MAX_VALUES);
    o->n_values = (int)n;
    o->on = true;
}

void sw_set_match(sw_options *o, const char *regex)
{
    if (o->regex) regfree(&o->re);
    int rc = regcomp(&o->re, regex, REG_EXTENDED | REG_NOSUB);
    if (rc) {
        char msg[256];
        regerror(rc, &o->re, msg, sizeof msg);
        o->regex = NULL;
        cli_usage("--match '%s': %s", regex, msg);
    }
    o->regex = regex;
}

void sw_check(const sw_options *o, const gen_options *g)
{
    if (!o->on) {
        if (o->regex || o->contains) cli_usage("--match and --contains go with --sweep");
        return;
    }
    if (!o->regex == !o->contains) cli_usage("--sweep needs one of --match REGEX or --contains STR");
    if (g->score || g->chars >= 0 || g->prefix || g->novel || g->stats)
        cli_usage("--sweep cannot be combined with --score, --chars, --prefix, --novel or --stats");
}

void sw_free(sw_options *o)
{
    if (o->regex) regfree(&o->re);
    o->regex = NULL;
}

/* ---- the run ---------------------------------------------------------------- */

/* What one value's names add up to. */
typedef struct sw_row {
    size_t matching, copied, chars, preds;
    double nll;
} sw_row;

/* Everything a sweep allocates once. */
typedef struct sw_run_ctx {
    mdl_state        *st;
    tf_state         *tf;
    int               layer, limit, stride;   /* characters a name; bytes a name */
    sae_steerer       steer;
    const gen_options *g;
    const sw_options *o;
    gen_names        *data;
    int              *tok;       /* limit */
    float            *scratch;   /* 3 V */
    char             *names;     /* count x stride */
    char            **sorted;    /* count */
} sw_run_ctx;

static bool matches(const sw_options *o, const char *name)
{
    return o->regex ? regexec(&o->re, name, 0, NULL, 0) == 0 : strstr(name, o->contains) != NULL;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sample the names of one value (steered), score each unsteered.  Name i
 * has its own random stream, as in generate and steer, so a value of 0
 * gives steer's names. */
static err_code sample_value(sw_run_ctx *R, sw_row *row)
{
    rng r;
    for (long i = 0; i < R->g->count; i++) {
        rng_seed(&r, rng_at(R->g->seed, (uint64_t)i));
        tf_state_set_hook(R->tf, R->layer, sae_steer_hook, &R->steer);
        int n = mdl_sample_name(R->st, &R->g->smp, &r, NULL, 0, R->limit, R->tok, R->scratch);
        tf_state_set_hook(R->tf, R->layer, NULL, NULL);
        if (n < 0) return err_set(ERR_ARG, "the steered model gives probability 0 to every continuation");
        int n_pred;
        row->nll += mdl_score_name(R->st, R->tok, n, &n_pred, R->scratch);
        row->preds += (size_t)n_pred;
        row->chars += (size_t)n;
        char *name = R->names + (size_t)i * R->stride;
        gen_toks_utf8(&R->st->m->vocab, R->tok, n, name);
        row->matching += matches(R->o, name);
        row->copied += gen_names_has(R->data, name);
        R->sorted[i] = name;
    }
    return ERR_OK;
}

static void print_row(const sw_run_ctx *R, double value, const sw_row *row, FILE *out)
{
    size_t n = (size_t)R->g->count, distinct = 0;
    qsort(R->sorted, n, sizeof *R->sorted, cmp_str);
    for (size_t i = 0; i < n; i++) distinct += i == 0 || strcmp(R->sorted[i], R->sorted[i - 1]) != 0;
    double d = n ? (double)n : 1.0;
    fprintf(out, "%g\t%.4f\t%.4f\t%.4f\t%.4f\t%.2f\n", value, row->matching / d, distinct / d,
            row->copied / d, row->preds ? row->nll / (double)row->preds : 0.0, row->chars / d);
}

static err_code run_init(sw_run_ctx *R, sae_edit *all, int n_all)
{
    const mdl *m = R->st->m;
    long limit = mdl_max_chars(m);
    if (R->g->max_len && R->g->max_len < limit) limit = R->g->max_len;
    R->limit = (int)limit;
    R->stride = 4 * R->limit + 1;
    err_code e = sae_steerer_init(&R->steer, R->steer.s, all, n_all);
    if (!e) e = gen_names_load(&R->data, R->o->data);
    if (e) return e;
    size_t count = (size_t)(R->g->count ? R->g->count : 1);
    R->tok = malloc((size_t)R->limit * sizeof *R->tok);
    R->scratch = malloc(3 * (size_t)mdl_vocab_size(m) * sizeof *R->scratch);
    R->names = malloc(count * (size_t)R->stride);
    R->sorted = malloc(count * sizeof *R->sorted);
    return R->tok && R->scratch && R->names && R->sorted ? ERR_OK
           : err_set(ERR_NOMEM, "out of memory for %ld names", R->g->count);
}

err_code sw_run(mdl_state *st, const sae_model *s, const sae_edit *edit, int n_edit,
                const gen_options *g, const sw_options *o, FILE *out)
{
    if (o->feature >= s->c.n_features)
        return err_set(ERR_ARG, "--sweep: feature %d out of range [0, %d)", o->feature, s->c.n_features);
    sae_edit *all = malloc(((size_t)n_edit + 1) * sizeof *all);
    sw_run_ctx R = { .st = st, .tf = tf_state_of(st), .layer = s->c.layer, .g = g, .o = o,
                     .steer = { .s = s } };
    err_code e = all ? ERR_OK : err_set(ERR_NOMEM, "out of memory");
    if (!e) {
        memcpy(all, edit, (size_t)n_edit * sizeof *all);
        all[n_edit] = (sae_edit){ .feature = o->feature, .value = (float)o->lo, .clamp = !o->add };
        e = run_init(&R, all, n_edit + 1);
    }
    if (!e) fprintf(out, "value\tmatching\tdistinct\tcopied\tloss\tlength\n");
    for (int v = 0; !e && v < o->n_values && !ferror(out); v++) {
        double value = o->lo + v * o->step;
        all[n_edit].value = (float)value;
        sw_row row = { 0 };
        e = sample_value(&R, &row);
        if (!e) print_row(&R, value, &row, out);
    }
    sae_steerer_free(&R.steer);
    gen_names_free(R.data);
    free(R.tok);
    free(R.scratch);
    free(R.names);
    free(R.sorted);
    free(all);
    return e;
}
