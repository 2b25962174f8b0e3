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
#include "rng.h"
#include "text.h"

/* ---- flags ------------------------------------------------------------- */

void gen_options_init(gen_options *o)
{
    *o = (gen_options){ .count = GEN_DEFAULT_COUNT, .smp = SMP_DEFAULTS, .chars = -1 };
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
    case GEN_OPT_THREADS: cli_set_threads((int)cli_long("--threads", arg, 0, 1024)); break;
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
"                        shorter than %d characters are skipped, '-' = stdin\n"
"      --chars N         instead of names, N characters of running text after\n"
"                        --prefix (default: after a newline)\n"
"      --threads N       bound the threads used\n"
"  -h, --help            show this help and exit\n"
"  -V, --version         show the version and exit\n",
            GEN_DEFAULT_COUNT, GEN_DEFAULT_MAX_CHARS, DS_MIN_NAME_LEN);
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

/* ---- names -------------------------------------------------------------- */

/* Everything sampling names needs, allocated before the first name. */
typedef struct name_run {
    mdl_state         *st;
    const gen_options *o;
    int               *prefix, n_prefix;
    int                limit;        /* characters a name */
    name_set           novel, stats_file, generated;
    int               *tok;          /* limit */
    float             *scratch;      /* 3 V */
    char              *name;         /* 4 limit + 1 */
    double             total_chars;
    rng                r;
} name_run;

/* The --max-len in effect: the flag, within the model's limit, or the default. */
static err_code name_limit(name_run *R)
{
    const gen_options *o = R->o;
    int limit = mdl_max_chars(R->st->m);
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
    free(R->name);
    free(R->tok);
    free(R->scratch);
    free(R->prefix);
}

/* Prefix, limit and the --novel / --stats files, before any name. */
static err_code name_run_init(name_run *R, mdl_state *st, const gen_options *o)
{
    *R = (name_run){ .st = st, .o = o };
    const mdl *m = st->m;
    err_code rc = o->prefix ? encode_prefix(m, o->prefix, &R->prefix, &R->n_prefix) : ERR_OK;
    if (!rc) rc = name_limit(R);
    if (!rc && o->novel) rc = set_load(&R->novel, o->novel);
    if (!rc && o->stats) rc = set_load(&R->stats_file, o->stats);
    if (rc) return rc;
    R->scratch = malloc(3 * (size_t)mdl_vocab_size(m) * sizeof *R->scratch);
    R->tok = malloc((size_t)R->limit * sizeof *R->tok);
    R->name = malloc(4 * (size_t)R->limit + 1);
    if (!R->scratch || !R->tok || !R->name) return out_of_memory();
    rng_seed(&R->r, o->seed);
    return ERR_OK;
}

/* The next name into R->name: with --novel, the first sample not in the file. */
static err_code next_name(name_run *R)
{
    const gen_options *o = R->o;
    for (int attempt = 1;; attempt++) {
        int n = mdl_sample_name(R->st, &o->smp, &R->r, R->prefix, R->n_prefix, R->limit, R->tok,
                                R->scratch);
        if (n < 0)
            return err_set(ERR_ARG, "the model gives probability 0 to every continuation%s%s",
                           o->prefix ? " of the prefix " : "", o->prefix ? o->prefix : "");
        gen_toks_utf8(&R->st->m->vocab, R->tok, n, R->name);
        if (!o->novel || !set_has(&R->novel, R->name)) {
            R->total_chars += n;
            return ERR_OK;
        }
        if (attempt == GEN_NOVEL_ATTEMPTS)
            return err_set(ERR_ARG, "gave up after %d names in a row that are all in %s",
                           GEN_NOVEL_ATTEMPTS, o->novel);
    }
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
    err_code rc = name_run_init(&R, st, o);
    for (long i = 0; !rc && i < o->count && !ferror(out); i++) {
        rc = next_name(&R);
        if (!rc) fprintf(out, "%s\n", R.name);
        if (!rc && o->stats) rc = set_add(&R.generated, R.name);
    }
    if (!rc && o->stats) rc = print_stats(&R, info);
    name_run_free(&R);
    return rc;
}

/* ---- running text ------------------------------------------------------- */

/* Feed the prefix (or a newline, or <SOS> when the vocabulary has no
 * newline) and sample characters only, never a special token. */
static err_code sample_text(mdl_state *st, const gen_options *o, FILE *out)
{
    const mdl *m = st->m;
    int V = mdl_vocab_size(m), n_feed = 0, L = mdl_max_len(m), *prefix = NULL;
    int newline = txt_vocab_token(&m->vocab, '\n');
    int start[1] = { newline >= 0 ? newline : TOK_SOS };
    err_code rc = o->prefix ? encode_prefix(m, o->prefix, &prefix, &n_feed) : ERR_OK;
    const int *feed = n_feed ? prefix : start;
    if (feed == start) n_feed = 1;
    if (!rc && L > 0 && n_feed + o->chars > L)
        rc = err_set(ERR_ARG, "--chars %ld: %s takes at most %d positions", o->chars, model_name(o), L);
    float *logits = rc ? NULL : malloc(3 * (size_t)V * sizeof *logits);
    if (!rc && !logits) rc = out_of_memory();
    if (rc) {
        free(prefix);
        return rc;
    }
    rng r;
    rng_seed(&r, o->seed);
    mdl_start(st);
    for (int i = 0; i < n_feed; i++) mdl_next(st, feed[i], logits);
    if (prefix) fputs(o->prefix, out);
    char utf8[8];
    for (long i = 0; !rc && i < o->chars && !ferror(out); i++) {
        logits[TOK_PAD] = logits[TOK_SOS] = logits[TOK_EOS] = -INFINITY;
        int t = smp_sample(logits, V, &o->smp, &r, logits + V);
        if (t < 0) rc = err_set(ERR_ARG, "the model gives probability 0 to every character after %ld", i);
        else {
            fputs(txt_token_str(&m->vocab, t, utf8), out);
            mdl_next(st, t, logits);
        }
    }
    if (!rc) fputc('\n', out);
    free(logits);
    free(prefix);
    return rc;
}

/* ---- scoring ------------------------------------------------------------ */

/* The TSV rows of the names of lines (those long enough); the totals. */
static err_code score_lines(mdl_state *st, const gen_options *o, const txt_lines *lines, FILE *out,
                            double *total, size_t *n_pred_total, size_t *n_names)
{
    const mdl *m = st->m;
    const char *path = file_name(o->score);
    int limit = mdl_max_chars(m);
    size_t longest = longest_line(lines);
    float *scratch = malloc((size_t)mdl_vocab_size(m) * sizeof *scratch);
    int *tok = malloc((longest + 1) * sizeof *tok);
    char *name = malloc(4 * longest + 1);
    err_code rc = scratch && tok && name ? ERR_OK : out_of_memory();
    if (!rc) fprintf(out, "name\tchars\ttotal_loss\tloss_per_char\n");
    for (size_t i = 0; !rc && i < lines->n; i++) {
        const int32_t *cp = lines->cp + lines->start[i];
        int len = (int)(lines->start[i + 1] - lines->start[i]), n_pred;
        if (len < DS_MIN_NAME_LEN) continue;
        if ((rc = txt_vocab_encode(&m->vocab, cp, (size_t)len, tok))) {
            rc = err_set(rc, "%s:%zu: %s", path, i + 1, err_msg());
        } else if (len > limit) {
            rc = err_set(ERR_ARG, "%s:%zu: %d characters, more than the %d %s takes", path, i + 1,
                         len, limit, model_name(o));
        } else {
            double nll = mdl_score_name(st, tok, len, &n_pred, scratch);
            cps_to_utf8(cp, (size_t)len, name);
            fprintf(out, "%s\t%d\t%.6f\t%.6f\n", name, len, nll, nll / n_pred);
            *total += nll;
            *n_pred_total += (size_t)n_pred;
            ++*n_names;
        }
    }
    free(name);
    free(tok);
    free(scratch);
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
    if (o->score) return score_names(st, o, out, info);
    if (o->chars >= 0) return sample_text(st, o, out);
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
