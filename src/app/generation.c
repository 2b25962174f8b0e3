/* generation.c - the sampling flags and runs that generate and steer share;
 * see generation.h.  Everything goes through the model interface (model.h):
 * nothing here knows which kind of model it drives. */
#include "generation.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "dataset.h"
#include "lanes.h"
#include "rng.h"
#include "text.h"
#include "textgen.h"

/* ---- flags ------------------------------------------------------------- */

void gen_options_init(gen_options *o)
{
    *o = (gen_options){ .count = GEN_DEFAULT_COUNT, .smp = SMP_DEFAULTS, .chars = -1,
                        .batch = GEN_DEFAULT_BATCH, .threads = 1 };
}

/* Invalid UTF-8 in --prefix is a usage error, found before any model is read. */
static void check_prefix(const char *s)
{
    int32_t *cp;
    size_t n;
    if (txt_decode(s, &cp, &n)) cli_usage("--prefix: %s", err_msg());
    free(cp);
}

bool gen_parse_option(gen_options *o, int code, const char *arg)
{
    switch (code) {
    case 'm': o->model = arg; break;
    case 'n': o->count = cli_long("-n", arg, 0, LONG_MAX); break;
    case GEN_OPT_SEED: o->seed = cli_u64("--seed", arg); break;
    case GEN_OPT_TEMPERATURE: o->smp.temperature = (float)cli_double("--temperature", arg, 0, 1e6); break;
    case GEN_OPT_TOP_K: o->smp.top_k = (int)cli_long("--top-k", arg, 0, INT_MAX); break;
    case GEN_OPT_TOP_P:
        o->smp.top_p = (float)cli_double("--top-p", arg, 0, 1);
        if (o->smp.top_p <= 0) cli_usage("invalid value '%s' for --top-p (expected 0 < P <= 1)", arg);
        break;
    case GEN_OPT_PREFIX: check_prefix(arg); o->prefix = arg; break;
    case GEN_OPT_MAX_LEN: o->max_len = cli_long("--max-len", arg, 1, 1 << 20); break;
    case GEN_OPT_NOVEL: o->novel = arg; break;
    case GEN_OPT_STATS: o->stats = arg; break;
    case GEN_OPT_SCORE: o->score = arg; break;
    case GEN_OPT_CHARS: o->chars = cli_long("--chars", arg, 0, LONG_MAX); break;
    case GEN_OPT_THREADS:
        o->threads = (int)cli_long("--threads", arg, 1, LN_MAX_THREADS);
        break;
    case GEN_OPT_BATCH: o->batch = (int)cli_long("--batch", arg, 1, GEN_MAX_BATCH); break;
    default: return false;
    }
    return true;
}

void gen_check_args(gen_options *o, int argc, char **argv, int optind_)
{
    if (optind_ < argc) cli_usage("unexpected argument '%s'", argv[optind_]);
    if (o->score && (o->chars >= 0 || o->prefix || o->novel || o->stats))
        cli_usage("--score cannot be combined with --chars, --prefix, --novel or --stats");
    if (o->chars >= 0 && (o->novel || o->stats))
        cli_usage("--chars cannot be combined with --novel or --stats");
    if (!o->model) o->model = cli_default_weights(CLI_DEFAULT_MODEL);
    /* The threads are the lanes' (lanes.h): matrix products on more cores
     * inside each of them would only oversubscribe (a Mamba or a mixture
     * ran 3-4x slower on 2 threads). */
    cli_set_threads(1);
}

void gen_print_usage(FILE *f)
{
    fprintf(f,
"  -n, --count N         number of names (default %d)\n"
"      --seed N          random seed (default 0): same seed, same names\n"
"      --temperature T   divide the logits by T (default 1; 0 = most probable)\n"
"      --top-k K         draw among the K most probable tokens (default 0 = all)\n"
"      --top-p P         draw among the most probable tokens whose mass reaches\n"
"                        P, 0 < P <= 1 (default 1 = all)\n"
"      --prefix STR      names that start with STR\n"
"      --max-len N       at most N characters a name (default: the model's\n"
"                        limit, or %d)\n"
"      --novel FILE      only names absent from FILE (one name per line)\n"
"      --stats FILE      print to stderr a TSV line: names generated, share of\n"
"                        distinct names, share of names present in FILE, mean\n"
"                        length in characters\n"
"      --score FILE      instead of sampling, print a TSV of the names of FILE\n"
"                        (name, chars, total_loss, loss_per_char: nats, <EOS>\n"
"                        counted as a character) and, on stderr, the mean loss\n"
"                        over FILE, as the trainers report val_loss; lines\n"
"                        shorter than %d characters are skipped, '-' = stdin.\n"
"                        A model of running text (--text) scores FILE as one\n"
"                        text instead: a TSV row tokens, chars, total_loss,\n"
"                        loss_per_token, loss_per_char\n"
"      --chars N         instead of names, N characters of running text after\n"
"                        --prefix (default: after a newline); a model of limited\n"
"                        context (a Transformer) slides its window\n"
"      --threads N       sample (or score) on N threads (default 1)\n"
"      --batch N         names in flight on each thread, sharing each step's\n"
"                        read of the weights (default %d, at most %d); the\n"
"                        names do not depend on N or on --threads: each name\n"
"                        has its own random stream, seeded by --seed and its\n"
"                        index\n"
"  -h, --help            show this help and exit\n"
"  -V, --version         show the version and exit\n",
            GEN_DEFAULT_COUNT, GEN_DEFAULT_MAX_CHARS, DS_MIN_NAME_LEN, GEN_DEFAULT_BATCH, GEN_MAX_BATCH);
}

/* ---- names as UTF-8 strings ------------------------------------------- */

/* Code points to UTF-8 into out (>= 4 n + 1 bytes). */
static void cps_to_utf8(const int32_t *cp, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) out += txt_encode_cp(cp[i], out);
    *out = 0;
}

void gen_toks_utf8(const txt_vocab *v, const int *tok, int n, char *out)
{
    for (int i = 0; i < n; i++) out += txt_encode_cp(v->cp[tok[i]], out);
    *out = 0;
}

static err_code out_of_memory(void) { return err_set(ERR_NOMEM, "out of memory"); }

/* Strings for membership tests: added to one buffer, then sorted for bsearch. */
typedef struct name_set {
    char   *buf;          /* the strings, NUL-terminated, one after another */
    size_t  used, cap;
    size_t *off;          /* where each string starts in buf */
    size_t  n, n_cap;
    char  **s;            /* after set_sort: the n strings in order */
} name_set;

/* p grown (geometrically) to hold need elements of size bytes; NULL when
 * out of memory, p then unchanged. */
static void *grow(void *p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap) return p;
    size_t cap2 = *cap ? 2 * *cap : 256;
    while (cap2 < need) cap2 *= 2;
    void *q = realloc(p, cap2 * size);
    if (q) *cap = cap2;
    return q;
}

static err_code set_add(name_set *set, const char *name)
{
    size_t len = strlen(name) + 1;
    char *buf = grow(set->buf, &set->cap, set->used + len, 1);
    if (buf) set->buf = buf;
    size_t *off = buf ? grow(set->off, &set->n_cap, set->n + 1, sizeof *off) : NULL;
    if (!off) return out_of_memory();
    set->off = off;
    memcpy(set->buf + set->used, name, len);
    set->off[set->n++] = set->used;
    set->used += len;
    return ERR_OK;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static err_code set_sort(name_set *set)
{
    free(set->s);
    set->s = malloc((set->n ? set->n : 1) * sizeof *set->s);
    if (!set->s) return out_of_memory();
    for (size_t i = 0; i < set->n; i++) set->s[i] = set->buf + set->off[i];
    qsort(set->s, set->n, sizeof *set->s, cmp_str);
    return ERR_OK;
}

static bool set_has(const name_set *set, const char *name)
{
    return set->n && bsearch(&name, set->s, set->n, sizeof *set->s, cmp_str);
}

static void set_free(name_set *set)
{
    free(set->buf);
    free(set->off);
    free(set->s);
    *set = (name_set){ 0 };
}

static size_t longest_line(const txt_lines *t)
{
    size_t longest = 0;
    for (size_t i = 0; i < t->n; i++)
        if (t->start[i + 1] - t->start[i] > longest) longest = t->start[i + 1] - t->start[i];
    return longest;
}

/* Every line of path, as written (after NFC), whatever its length. */
static err_code set_load(name_set *set, const char *path)
{
    txt_lines lines;
    err_code rc = txt_read_lines(path, &lines);
    if (rc) return rc;
    char *name = malloc(4 * longest_line(&lines) + 1);
    if (!name) rc = out_of_memory();
    for (size_t i = 0; !rc && i < lines.n; i++) {
        cps_to_utf8(lines.cp + lines.start[i], lines.start[i + 1] - lines.start[i], name);
        rc = set_add(set, name);
    }
    if (!rc) rc = set_sort(set);
    free(name);
    txt_lines_free(&lines);
    return rc;
}

/* ---- what the runs share ------------------------------------------------ */

/* Names for messages. */
static const char *model_name(const gen_options *o) { return o->model ? o->model : "the model"; }
static const char *file_name(const char *path) { return strcmp(path, "-") ? path : "standard input"; }

/* The --prefix string in the model's vocabulary: *tok (malloc'ed), *n. */
static err_code encode_prefix(const mdl *m, const char *s, int **tok, int *n)
{
    int32_t *cp;
    size_t len;
    *tok = NULL;
    *n = 0;
    err_code rc = txt_decode(s, &cp, &len);
    if (rc) return err_set(rc, "--prefix: %s", err_msg());
    *tok = malloc((len ? len : 1) * sizeof **tok);
    if (!*tok) rc = out_of_memory();
    else if ((rc = txt_vocab_encode(&m->vocab, cp, len, *tok))) rc = err_set(rc, "--prefix: %s", err_msg());
    free(cp);
    *n = (int)len;
    return rc;
}

/* ---- lanes -------------------------------------------------------------- */

enum { GEN_LANE_BYTES = 64 << 20 };   /* the lanes' job data on a thread, at most */

/* The pool a run drives: o's lanes and threads on st's model, or st itself
 * (one lane, one thread) when o asks for no more, so that a program's hooks
 * on st (steer's) apply. */
static err_code run_pool(ln_pool *p, mdl_state *st, const gen_options *o, size_t lane_size)
{
    if (o->batch <= 1 && o->threads <= 1) return ln_pool_wrap(p, st, lane_size);
    /* long names (--max-len of an unbounded model) take fewer lanes */
    size_t fit = GEN_LANE_BYTES / lane_size;
    int lanes = fit < (size_t)o->batch ? (fit ? (int)fit : 1) : o->batch;
    return ln_pool_new(p, st->m, lanes, o->threads > 1 ? o->threads : 1, lane_size);
}

/* Items a round holds: the results wait there to be written in order. */
static long round_size(const gen_options *o) { return 4096L + 4L * o->batch * o->threads; }

/* ---- names -------------------------------------------------------------- */

/* What became of one name of a round. */
typedef enum name_status { NAME_OK, NAME_IMPOSSIBLE, NAME_GAVE_UP, NAME_NOMEM } name_status;
typedef struct name_slot { char *name; int n; name_status status; } name_slot;

/* Everything sampling names needs, allocated before the first name. */
typedef struct name_run {
    const mdl         *m;
    const gen_options *o;
    int               *prefix, n_prefix;
    int                limit;        /* characters a name */
    name_set           novel, stats_file, generated;
    name_slot         *slot;         /* (round_size) the names of this round */
    long               round_first;  /* the index of slot[0] */
    double             total_chars;
} name_run;

/* A lane's data: a name in progress, then its buffers (lane_bytes). */
typedef struct name_lane {
    mdl_sampler sm;
    rng         r;          /* the name's own stream */
    long        item;
    int         attempt;
} name_lane;

static size_t name_lane_bytes(int limit)
{
    size_t bytes = sizeof(name_lane) + (size_t)limit * sizeof(int) + 4 * (size_t)limit + 1;
    return (bytes + 15) / 16 * 16;
}

static int *lane_tok(name_lane *l) { return (int *)(l + 1); }
static char *lane_name(name_lane *l, int limit) { return (char *)(lane_tok(l) + limit); }

/* The --max-len in effect: the flag, within the model's limit, or the default. */
static err_code name_limit(name_run *R)
{
    const gen_options *o = R->o;
    int limit = mdl_max_chars(R->m);
    long n = o->max_len ? o->max_len : limit < INT_MAX ? limit : GEN_DEFAULT_MAX_CHARS;
    if (n > limit) return err_set(ERR_ARG, "--max-len %ld: %s takes at most %d characters", n,
                                           model_name(o), limit);
    if (R->n_prefix > n)
        return err_set(ERR_ARG, "--prefix has %d characters, more than the %ld of %s", R->n_prefix, n,
                       o->max_len ? "--max-len" : model_name(o));
    R->limit = (int)n;
    return ERR_OK;
}

static void name_run_free(name_run *R)
{
    set_free(&R->generated);
    set_free(&R->stats_file);
    set_free(&R->novel);
    free(R->slot);
    free(R->prefix);
}

/* Prefix, limit and the --novel / --stats files, before any name. */
static err_code name_run_init(name_run *R, const mdl *m, const gen_options *o)
{
    *R = (name_run){ .m = m, .o = o };
    err_code rc = o->prefix ? encode_prefix(m, o->prefix, &R->prefix, &R->n_prefix) : ERR_OK;
    if (!rc) rc = name_limit(R);
    if (!rc && o->novel) rc = set_load(&R->novel, o->novel);
    if (!rc && o->stats) rc = set_load(&R->stats_file, o->stats);
    if (rc) return rc;
    R->slot = calloc((size_t)round_size(o), sizeof *R->slot);
    return R->slot ? ERR_OK : out_of_memory();
}

static int name_start(name_run *R, name_lane *l, mdl_state *st)
{
    mdl_start(st);
    return mdl_sampler_start(&l->sm, R->m, &R->o->smp, R->prefix, R->n_prefix, R->limit, lane_tok(l));
}

/* ln_job.begin: name i, on its own random stream. */
static int name_begin(void *ctx, void *data, mdl_state *st, long i)
{
    name_run *R = ctx;
    name_lane *l = data;
    l->item = i;
    l->attempt = 1;
    rng_seed(&l->r, rng_at(R->o->seed, (uint64_t)i));
    return name_start(R, l, st);
}

/* ln_job.step: the next token; a finished name goes to its slot, or is
 * drawn again (same stream) when --novel refuses it. */
static int name_step(void *ctx, void *data, mdl_state *st, float *logits, float *scratch)
{
    name_run *R = ctx;
    name_lane *l = data;
    int t = mdl_sampler_step(&l->sm, logits, &l->r, scratch);
    if (t >= 0) return t;
    name_slot *slot = &R->slot[l->item - R->round_first];
    if (t == MDL_NAME_IMPOSSIBLE) {
        slot->status = NAME_IMPOSSIBLE;
        return t;
    }
    char *name = lane_name(l, R->limit);
    gen_toks_utf8(&R->m->vocab, lane_tok(l), l->sm.n, name);
    if (R->o->novel && set_has(&R->novel, name)) {
        if (l->attempt++ < GEN_NOVEL_ATTEMPTS) return name_start(R, l, st);
        slot->status = NAME_GAVE_UP;
        return MDL_NAME_DONE;
    }
    slot->name = strdup(name);
    slot->status = slot->name ? NAME_OK : NAME_NOMEM;
    slot->n = l->sm.n;
    return MDL_NAME_DONE;
}

static err_code slot_error(const name_run *R, const name_slot *slot)
{
    const gen_options *o = R->o;
    switch (slot->status) {
    case NAME_IMPOSSIBLE:
        return err_set(ERR_ARG, "the model gives probability 0 to every continuation%s%s",
                       o->prefix ? " of the prefix " : "", o->prefix ? o->prefix : "");
    case NAME_GAVE_UP:
        return err_set(ERR_ARG, "gave up after %d names in a row that are all in %s",
                       GEN_NOVEL_ATTEMPTS, o->novel);
    case NAME_NOMEM: return out_of_memory();
    case NAME_OK: break;
    }
    return ERR_OK;
}

/* The names of the round [first, last), in order, up to the first failed one. */
static err_code write_round(name_run *R, long first, long last, FILE *out)
{
    err_code rc = ERR_OK;
    for (long i = first; i < last; i++) {
        name_slot *slot = &R->slot[i - first];
        if (!rc) rc = slot_error(R, slot);
        if (!rc) {
            fprintf(out, "%s\n", slot->name);
            R->total_chars += slot->n;
            if (R->o->stats) rc = set_add(&R->generated, slot->name);
        }
        free(slot->name);
        *slot = (name_slot){ 0 };
    }
    return rc;
}

static err_code print_stats(name_run *R, FILE *info)
{
    name_set *g = &R->generated;
    err_code rc = set_sort(g);
    if (rc) return rc;
    size_t n = g->n, in_file = 0, distinct = 0;
    for (size_t i = 0; i < n; i++) {
        in_file += set_has(&R->stats_file, g->s[i]);
        distinct += i == 0 || strcmp(g->s[i], g->s[i - 1]) != 0;
    }
    double d = n ? (double)n : 1;
    fprintf(info, "generated\tdistinct_share\tin_file_share\tmean_length\n");
    fprintf(info, "%zu\t%.4f\t%.4f\t%.2f\n", n, distinct / d, in_file / d, R->total_chars / d);
    return ERR_OK;
}

static err_code sample_names(mdl_state *st, const gen_options *o, FILE *out, FILE *info)
{
    name_run R;
    ln_pool pool = { 0 };
    err_code rc = name_run_init(&R, st->m, o);
    if (!rc) rc = run_pool(&pool, st, o, name_lane_bytes(R.limit));
    const ln_job job = { .ctx = &R, .begin = name_begin, .step = name_step };
    for (long first = 0; !rc && first < o->count && !ferror(out); first += round_size(o)) {
        long last = o->count - first < round_size(o) ? o->count : first + round_size(o);
        R.round_first = first;
        ln_pool_run(&pool, &job, first, last);
        rc = write_round(&R, first, last, out);
    }
    if (!rc && o->stats) rc = print_stats(&R, info);
    ln_pool_free(&pool);
    name_run_free(&R);
    return rc;
}

/* ---- scoring ------------------------------------------------------------ */

/* The names of a --score file, encoded, and their losses. */
typedef struct score_run {
    const mdl    *m;
    size_t        n;        /* names (lines long enough, before the first bad one) */
    size_t       *line;     /* (n) each name's line */
    size_t       *first;    /* (n + 1) where each name's tokens start in tok */
    int          *tok;
    double       *nll;      /* (n) */
} score_run;

typedef struct score_lane { mdl_scorer sc; long item; } score_lane;

static int score_begin(void *ctx, void *data, mdl_state *st, long i)
{
    score_run *S = ctx;
    score_lane *l = data;
    l->item = i;
    mdl_start(st);
    return mdl_scorer_start(&l->sc, S->tok + S->first[i], (int)(S->first[i + 1] - S->first[i]));
}

static int score_step(void *ctx, void *data, mdl_state *st, float *logits, float *scratch)
{
    score_run *S = ctx;
    score_lane *l = data;
    int t = mdl_scorer_step(&l->sc, mdl_vocab_size(S->m), logits);
    if (t < 0) S->nll[l->item] = l->sc.nll;
    return t;
}

static void score_run_free(score_run *S)
{
    free(S->line);
    free(S->first);
    free(S->tok);
    free(S->nll);
}

/* Line i as tokens into tok (its length); the error names the line. */
static err_code encode_line(const mdl *m, const gen_options *o, const txt_lines *lines, size_t i,
                            int *tok)
{
    const int32_t *cp = lines->cp + lines->start[i];
    size_t len = lines->start[i + 1] - lines->start[i];
    const char *path = file_name(o->score);
    err_code rc = txt_vocab_encode(&m->vocab, cp, len, tok);
    if (rc) return err_set(rc, "%s:%zu: %s", path, i + 1, err_msg());
    if (len > (size_t)mdl_max_chars(m))
        return err_set(ERR_ARG, "%s:%zu: %zu characters, more than the %d %s takes", path, i + 1,
                       len, mdl_max_chars(m), model_name(o));
    return ERR_OK;
}

/* The names of lines up to the first bad line (*bad, lines->n when none). */
static err_code score_run_init(score_run *S, const mdl *m, const gen_options *o,
                               const txt_lines *lines, size_t *bad)
{
    *S = (score_run){ .m = m };
    S->line = malloc((lines->n + 1) * sizeof *S->line);
    S->first = malloc((lines->n + 1) * sizeof *S->first);
    S->tok = malloc((lines->start[lines->n] + 1) * sizeof *S->tok);
    S->nll = malloc((lines->n + 1) * sizeof *S->nll);
    if (!S->line || !S->first || !S->tok || !S->nll) return out_of_memory();
    S->first[0] = 0;
    for (*bad = 0; *bad < lines->n; ++*bad) {
        size_t len = lines->start[*bad + 1] - lines->start[*bad];
        if (len < DS_MIN_NAME_LEN) continue;
        if (encode_line(m, o, lines, *bad, S->tok + S->first[S->n])) break;
        S->line[S->n] = *bad;
        S->first[S->n + 1] = S->first[S->n] + len;
        S->n++;
    }
    return ERR_OK;
}

/* The TSV rows of the names of lines (those long enough); the totals;
 * then the first bad line's error. */
static err_code score_lines(mdl_state *st, const gen_options *o, const txt_lines *lines, FILE *out,
                            double *total, size_t *n_pred_total, size_t *n_names)
{
    score_run S;
    ln_pool pool = { 0 };
    size_t bad = lines->n;
    err_code rc = score_run_init(&S, st->m, o, lines, &bad);
    size_t longest = longest_line(lines);
    char *name = rc ? NULL : malloc(4 * longest + 1);
    if (!rc && !name) rc = out_of_memory();
    if (!rc) rc = run_pool(&pool, st, o, sizeof(score_lane));
    if (!rc) {
        const ln_job job = { .ctx = &S, .begin = score_begin, .step = score_step };
        ln_pool_run(&pool, &job, 0, (long)S.n);
        fprintf(out, "name\tchars\ttotal_loss\tloss_per_char\n");
    }
    for (size_t i = 0; !rc && i < S.n; i++) {
        size_t line = S.line[i];
        int len = (int)(S.first[i + 1] - S.first[i]);
        cps_to_utf8(lines->cp + lines->start[line], (size_t)len, name);
        fprintf(out, "%s\t%d\t%.6f\t%.6f\n", name, len, S.nll[i], S.nll[i] / (len + 1));
        *total += S.nll[i];
        *n_pred_total += (size_t)len + 1;
        ++*n_names;
    }
    if (!rc && bad < lines->n) rc = encode_line(st->m, o, lines, bad, S.tok);   /* its message */
    ln_pool_free(&pool);
    free(name);
    score_run_free(&S);
    return rc;
}

static err_code score_names(mdl_state *st, const gen_options *o, FILE *out, FILE *info)
{
    txt_lines lines;
    err_code rc = txt_read_lines(o->score, &lines);
    if (rc) return rc;
    double total = 0;
    size_t n_pred = 0, n_names = 0;
    rc = score_lines(st, o, &lines, out, &total, &n_pred, &n_names);
    txt_lines_free(&lines);
    if (!rc && !n_names)
        rc = err_set(ERR_ARG, "%s: no names of at least %d characters", file_name(o->score),
                     DS_MIN_NAME_LEN);
    if (!rc)
        fprintf(info, "mean loss: %.6f nats/char over %zu names\n", total / (double)n_pred, n_names);
    return rc;
}

/* ---- the run ------------------------------------------------------------ */

err_code gen_run(mdl_state *st, const gen_options *o, FILE *out, FILE *info)
{
    if (!st || !st->m || !o || !out || !info) return err_set(ERR_ARG, "gen_run: NULL argument");
    if (o->score && tg_is_text_model(st->m)) return tg_score(st, o, out, info);
    if (o->score) return score_names(st, o, out, info);
    if (o->chars >= 0) return tg_sample(st, o, out);
    if (st->m->tokens.n_merges)   /* subwords: a name's letters are not tokens */
        return err_set(ERR_ARG, "%s is a model of running text in subwords: give --chars N or "
                       "--score FILE", model_name(o));
    return sample_names(st, o, out, info);
}

/* ---- name sets for other programs -------------------------------------------- */

struct gen_names { name_set set; };

err_code gen_names_load(gen_names **out, const char *path)
{
    *out = calloc(1, sizeof **out);
    if (!*out) return out_of_memory();
    err_code rc = set_load(&(*out)->set, path);
    if (rc) {
        gen_names_free(*out);
        *out = NULL;
    }
    return rc;
}

bool gen_names_has(const gen_names *g, const char *name) { return set_has(&g->set, name); }

void gen_names_free(gen_names *g)
{
    if (!g) return;
    set_free(&g->set);
    free(g);
}
