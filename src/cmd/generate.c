/* generate - sample names from any model checkpoint, or score names under it.
 *
 * Everything goes through the model interface (model.h): this program never
 * knows which kind of model it drives.
 */
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "dataset.h"
#include "model.h"
#include "rng.h"
#include "sampling.h"
#include "text.h"

enum {
    DEFAULT_MAX_CHARS = 50,      /* names from a model without a length limit */
    NOVEL_ATTEMPTS = 1000,       /* samples per name before --novel gives up */
};

enum { OPT_SEED = 0x100, OPT_TEMPERATURE, OPT_TOP_K, OPT_TOP_P, OPT_PREFIX, OPT_MAX_LEN,
       OPT_NOVEL, OPT_STATS, OPT_SCORE, OPT_CHARS, OPT_THREADS };

static _Noreturn void usage(void)
{
    printf("Usage: generate [-m CHECKPOINT] [OPTION]...\n"
           "   or: generate [-m CHECKPOINT] --score FILE\n"
           "Sample names, one per line, from a model of any kind (n-gram, MLP, RNN,\n"
           "Transformer); or score the names of FILE under it.\n"
           "\n"
           "  -m, --model FILE      the model checkpoint (.safetensors); default: the\n"
           "                        Transformer shipped in weights/transformer.safetensors\n"
           "  -n, --count N         number of names (default 10)\n"
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
           "  -V, --version         show the version and exit\n"
           "\n"
           "Exit status: 0 on success, 1 on a runtime error (unreadable or invalid model,\n"
           "a --prefix character outside the model's vocabulary, ...), 2 on a usage\n"
           "error (unknown flag, value out of range).\n"
           "\n"
           "Example: generate -m weights/ngram-7.safetensors -n 20 --seed 7 --prefix saint-\n",
           DEFAULT_MAX_CHARS, DS_MIN_NAME_LEN);
    exit(fflush(stdout) == 0 ? EXIT_SUCCESS : EXIT_FAILURE);
}

typedef struct options {
    const char *model, *prefix, *novel, *stats, *score;
    long        count;
    long        max_len;   /* 0 = the default */
    long        chars;     /* --chars N, -1 = names */
    uint64_t    seed;
    smp_config  smp;
} options;

static void parse(options *o, int argc, char **argv)
{
    static const struct option longs[] = {
        { "model", required_argument, NULL, 'm' },
        { "count", required_argument, NULL, 'n' },
        { "seed", required_argument, NULL, OPT_SEED },
        { "temperature", required_argument, NULL, OPT_TEMPERATURE },
        { "top-k", required_argument, NULL, OPT_TOP_K },
        { "top-p", required_argument, NULL, OPT_TOP_P },
        { "prefix", required_argument, NULL, OPT_PREFIX },
        { "max-len", required_argument, NULL, OPT_MAX_LEN },
        { "novel", required_argument, NULL, OPT_NOVEL },
        { "stats", required_argument, NULL, OPT_STATS },
        { "score", required_argument, NULL, OPT_SCORE },
        { "chars", required_argument, NULL, OPT_CHARS },
        { "threads", required_argument, NULL, OPT_THREADS },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { 0 },
    };
    argv[0] = (char *)cli_prog();   /* getopt's own messages name the program as ours do */
    int ch;
    while ((ch = getopt_long(argc, argv, "m:n:hV", longs, NULL)) != -1) {
        switch (ch) {
        case 'm': o->model = optarg; break;
        case 'n': o->count = cli_long("-n", optarg, 0, LONG_MAX); break;
        case OPT_SEED: o->seed = cli_u64("--seed", optarg); break;
        case OPT_TEMPERATURE: o->smp.temperature = (float)cli_double("--temperature", optarg, 0, 1e6); break;
        case OPT_TOP_K: o->smp.top_k = (int)cli_long("--top-k", optarg, 0, INT_MAX); break;
        case OPT_TOP_P:
            o->smp.top_p = (float)cli_double("--top-p", optarg, 0, 1);
            if (o->smp.top_p <= 0) cli_usage("invalid value '%s' for --top-p (expected 0 < P <= 1)", optarg);
            break;
        case OPT_PREFIX: o->prefix = optarg; break;
        case OPT_MAX_LEN: o->max_len = cli_long("--max-len", optarg, 1, 1 << 20); break;
        case OPT_NOVEL: o->novel = optarg; break;
        case OPT_STATS: o->stats = optarg; break;
        case OPT_SCORE: o->score = optarg; break;
        case OPT_CHARS: o->chars = cli_long("--chars", optarg, 0, LONG_MAX); break;
        case OPT_THREADS: cli_set_threads((int)cli_long("--threads", optarg, 0, 1024)); break;
        case 'h': usage();
        case 'V': cli_version();
        default: cli_bad_flag();
        }
    }
    if (optind < argc) cli_usage("unexpected argument '%s'", argv[optind]);
    if (!o->model) o->model = cli_default_weights(CLI_DEFAULT_MODEL);
    if (o->score && (o->chars >= 0 || o->prefix || o->novel || o->stats))
        cli_usage("--score cannot be combined with --chars, --prefix, --novel or --stats");
    if (o->chars >= 0 && (o->novel || o->stats))
        cli_usage("--chars cannot be combined with --novel or --stats");
}

/* ---- names as UTF-8 strings ---------------------------------------------- */

/* Code points to UTF-8 into out (>= 4 n + 1 bytes). */
static void cps_to_utf8(const int32_t *cp, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) out += txt_encode_cp(cp[i], out);
    *out = 0;
}

/* Character tokens to UTF-8 into out (>= 4 n + 1 bytes). */
static void toks_to_utf8(const txt_vocab *v, const int *tok, int n, char *out)
{
    for (int i = 0; i < n; i++) out += txt_encode_cp(v->cp[tok[i]], out);
    *out = 0;
}

/* Strings for membership tests: added to one buffer, then sorted for bsearch. */
typedef struct name_set {
    char   *buf;          /* the strings, NUL-terminated, one after another */
    size_t  used, cap;
    size_t *off;          /* where each string starts in buf */
    size_t  n, n_cap;
    char  **s;            /* after set_sort: the n strings in order */
} name_set;

static void *grow(void *p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap) return p;
    size_t cap2 = *cap ? 2 * *cap : 256;
    while (cap2 < need) cap2 *= 2;
    p = realloc(p, cap2 * size);
    if (!p) cli_die("out of memory");
    *cap = cap2;
    return p;
}

static void set_add(name_set *set, const char *name)
{
    size_t len = strlen(name) + 1;
    set->buf = grow(set->buf, &set->cap, set->used + len, 1);
    set->off = grow(set->off, &set->n_cap, set->n + 1, sizeof *set->off);
    memcpy(set->buf + set->used, name, len);
    set->off[set->n++] = set->used;
    set->used += len;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void set_sort(name_set *set)
{
    free(set->s);
    set->s = malloc((set->n ? set->n : 1) * sizeof *set->s);
    if (!set->s) cli_die("out of memory");
    for (size_t i = 0; i < set->n; i++) set->s[i] = set->buf + set->off[i];
    qsort(set->s, set->n, sizeof *set->s, cmp_str);
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
static void set_load(name_set *set, const char *path)
{
    txt_lines lines;
    if (txt_read_lines(path, &lines)) cli_die_err();
    char *name = malloc(4 * longest_line(&lines) + 1);
    if (!name) cli_die("out of memory");
    for (size_t i = 0; i < lines.n; i++) {
        cps_to_utf8(lines.cp + lines.start[i], lines.start[i + 1] - lines.start[i], name);
        set_add(set, name);
    }
    free(name);
    txt_lines_free(&lines);
    set_sort(set);
}

/* ---- the three modes ------------------------------------------------------- */

/* The characters of the model's vocabulary for a --prefix string. */
static int *encode_prefix(const mdl *m, const char *s, int *n)
{
    int32_t *cp;
    size_t len;
    if (txt_decode(s, &cp, &len)) cli_usage("--prefix: %s", err_msg());
    int *tok = malloc((len ? len : 1) * sizeof *tok);
    if (!tok) cli_die("out of memory");
    if (txt_vocab_encode(&m->vocab, cp, len, tok)) cli_die("--prefix: %s", err_msg());
    free(cp);
    *n = (int)len;
    return tok;
}

/* The --max-len in effect: the flag, within the model's limit, or the default. */
static int max_chars(const mdl *m, const options *o, int n_prefix)
{
    int L = mdl_max_len(m), limit = L > 0 ? L - 1 : INT_MAX;
    long n = o->max_len ? o->max_len : (L > 0 ? limit : DEFAULT_MAX_CHARS);
    if (n > limit) cli_die("--max-len %ld: %s takes at most %d characters", n, o->model, limit);
    if (n_prefix > n) cli_die("--prefix has %d characters, more than the %ld of --max-len", n_prefix, n);
    return (int)n;
}

static void print_stats(name_set *generated, const name_set *file, double total_chars)
{
    set_sort(generated);
    size_t n = generated->n, in_file = 0, distinct = 0;
    for (size_t i = 0; i < n; i++) {
        in_file += set_has(file, generated->s[i]);
        distinct += i == 0 || strcmp(generated->s[i], generated->s[i - 1]) != 0;
    }
    double d = n ? (double)n : 1;
    fprintf(stderr, "generated\tdistinct_share\tin_file_share\tmean_length\n");
    fprintf(stderr, "%zu\t%.4f\t%.4f\t%.2f\n", n, distinct / d, in_file / d, total_chars / d);
}

static void sample_names(const mdl *m, mdl_state *st, const options *o)
{
    int V = mdl_vocab_size(m), n_prefix = 0;
    int *prefix = o->prefix ? encode_prefix(m, o->prefix, &n_prefix) : NULL;
    int limit = max_chars(m, o, n_prefix);
    name_set novel = { 0 }, stats_file = { 0 }, generated = { 0 };
    if (o->novel) set_load(&novel, o->novel);   /* read the files before the first name */
    if (o->stats) set_load(&stats_file, o->stats);
    float *scratch = malloc(3 * (size_t)V * sizeof *scratch);
    int *tok = malloc((size_t)limit * sizeof *tok);
    char *name = malloc(4 * (size_t)limit + 1);
    if (!scratch || !tok || !name) cli_die("out of memory");
    rng r;
    rng_seed(&r, o->seed);
    double total_chars = 0;
    for (long i = 0; i < o->count && !ferror(stdout); i++) {
        for (int attempt = 1;; attempt++) {
            int n = mdl_sample_name(st, &o->smp, &r, prefix, n_prefix, limit, tok, scratch);
            if (n < 0) cli_die("the model gives probability 0 to every continuation%s%s",
                               o->prefix ? " of the prefix " : "", o->prefix ? o->prefix : "");
            toks_to_utf8(&m->vocab, tok, n, name);
            if (!o->novel || !set_has(&novel, name)) {
                total_chars += n;
                break;
            }
            if (attempt == NOVEL_ATTEMPTS)
                cli_die("gave up after %d names in a row that are all in %s", NOVEL_ATTEMPTS, o->novel);
        }
        puts(name);
        if (o->stats) set_add(&generated, name);
    }
    if (o->stats) print_stats(&generated, &stats_file, total_chars);
    set_free(&generated);
    set_free(&stats_file);
    set_free(&novel);
    free(name);
    free(tok);
    free(scratch);
    free(prefix);
}

/* Running text: feed the prefix (or a newline, or <SOS> when the vocabulary
 * has no newline) and sample characters only, never a special token. */
static void sample_text(const mdl *m, mdl_state *st, const options *o)
{
    int V = mdl_vocab_size(m), n_feed = 0, L = mdl_max_len(m);
    int newline = txt_vocab_token(&m->vocab, '\n');
    int start[1] = { newline >= 0 ? newline : TOK_SOS };
    int *prefix = o->prefix ? encode_prefix(m, o->prefix, &n_feed) : NULL;
    const int *feed = prefix && n_feed ? prefix : start;
    if (feed == start) n_feed = 1;
    if (L > 0 && n_feed + o->chars > L)
        cli_die("--chars %ld: %s takes at most %d positions", o->chars, o->model, L);
    float *logits = malloc(3 * (size_t)V * sizeof *logits);
    char utf8[8];
    if (!logits) cli_die("out of memory");
    rng r;
    rng_seed(&r, o->seed);
    mdl_start(st);
    for (int i = 0; i < n_feed; i++) mdl_next(st, feed[i], logits);
    if (prefix) fputs(o->prefix, stdout);
    for (long i = 0; i < o->chars && !ferror(stdout); i++) {
        logits[TOK_PAD] = logits[TOK_SOS] = logits[TOK_EOS] = -INFINITY;
        int t = smp_sample(logits, V, &o->smp, &r, logits + V);
        if (t < 0) cli_die("the model gives probability 0 to every character after %ld", i);
        fputs(txt_token_str(&m->vocab, t, utf8), stdout);
        mdl_next(st, t, logits);
    }
    putchar('\n');
    free(logits);
    free(prefix);
}

static void score_names(const mdl *m, mdl_state *st, const options *o)
{
    txt_lines lines;
    if (txt_read_lines(o->score, &lines)) cli_die_err();
    int V = mdl_vocab_size(m), L = mdl_max_len(m);
    size_t longest = longest_line(&lines);
    float *scratch = malloc((size_t)V * sizeof *scratch);
    int *tok = malloc((longest + 1) * sizeof *tok);
    char *name = malloc(4 * longest + 1);
    if (!scratch || !tok || !name) cli_die("out of memory");
    const char *path = strcmp(o->score, "-") ? o->score : "standard input";
    double total = 0;
    size_t n_pred_total = 0, n_names = 0;
    printf("name\tchars\ttotal_loss\tloss_per_char\n");
    for (size_t i = 0; i < lines.n; i++) {
        const int32_t *cp = lines.cp + lines.start[i];
        int len = (int)(lines.start[i + 1] - lines.start[i]), n_pred;
        if (len < DS_MIN_NAME_LEN) continue;
        if (txt_vocab_encode(&m->vocab, cp, (size_t)len, tok))
            cli_die("%s:%zu: %s", path, i + 1, err_msg());
        if (L > 0 && len > L - 1)
            cli_die("%s:%zu: %d characters, more than the %d %s takes", path, i + 1, len, L - 1,
                    o->model);
        double nll = mdl_score_name(st, tok, len, &n_pred, scratch);
        cps_to_utf8(cp, (size_t)len, name);
        printf("%s\t%d\t%.6f\t%.6f\n", name, len, nll, nll / n_pred);
        total += nll;
        n_pred_total += (size_t)n_pred;
        n_names++;
    }
    if (!n_names) cli_die("%s: no names of at least %d characters", path, DS_MIN_NAME_LEN);
    fprintf(stderr, "mean loss: %.6f nats/char over %zu names\n", total / (double)n_pred_total,
            n_names);
    free(name);
    free(tok);
    free(scratch);
    txt_lines_free(&lines);
}

int main(int argc, char **argv)
{
    cli_init("generate");
    options o = { .count = 10, .chars = -1, .smp = SMP_DEFAULTS };
    parse(&o, argc, argv);

    mdl m;
    mdl_state st;
    if (mdl_load(&m, o.model) || mdl_state_new(&st, &m)) cli_die_err();
    if (o.score) score_names(&m, &st, &o);
    else if (o.chars >= 0) sample_text(&m, &st, &o);
    else sample_names(&m, &st, &o);
    mdl_state_free(&st);
    mdl_free(&m);
    if (cli_close(stdout, "-")) cli_die_err();
    return EXIT_SUCCESS;
}
