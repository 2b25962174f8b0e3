/* explore.c - the subcommands of explore; see explore.h.
 *
 * Each xp_ function opens the context (the Transformer, the SAE when it
 * needs one), computes through interp.h or sae.h, and hands the result to
 * its views: TSV, text (with shading when colour is on) and, for features
 * and attribute, HTML.
 */
#include "explore.h"
#include "xpctx.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "dataset.h"
#include "generation.h"
#include "interp.h"
#include "kinds.h"
#include "sae.h"
#include "synth.h"
#include "text.h"
#include "transformer.h"

enum {
    VIEW_PARTS = 15,   /* attribute's text view: the rows before "others" */
};

/* ---- usage ------------------------------------------------------------------ */

void xp_print_usage(FILE *f)
{
    fprintf(f, "Usage: explore COMMAND [OPTION]...\n"
               "Look inside a trained Transformer and a sparse autoencoder (SAE) trained on it.\n"
               "\n"
               "Commands:\n"
               "  features         for each SAE feature, the --top names of --data that\n"
               "                   activate it most, with the activation at each letter, and\n"
               "                   how often it is active (--id N: one feature; --html FILE)\n"
               "  neurons          the same for each dimension of the residual stream after\n"
               "                   --layer (default: the last)\n"
               "  freq             activation frequency of every feature over the letters of\n"
               "                   --data (--sort freq: most frequent first; --summary: how\n"
               "                   many are below 10%%, 1%%, 0.1%%, 0.01%%)\n"
               "  logits --id N    every token, ranked by how much feature N's decoder\n"
               "                   direction raises its logit (through the final norm weight\n"
               "                   and the unembedding; the direct path only when the SAE is\n"
               "                   not on the last layer)\n"
               "  embeddings       token embeddings projected to 2-D by PCA, and each token's\n"
               "                   nearest --neighbours by cosine similarity\n"
               "  lens NAME        logit lens: the --top next-letter predictions read from the\n"
               "                   residual stream after each layer, at each position\n"
               "  attribute NAME --pos I\n"
               "                   which SAE features drove the prediction at position I\n"
               "                   (0 = after <SOS>, I = after the I-th letter): per active\n"
               "                   feature its activation, direct logit attribution (dla) to the\n"
               "                   target, activation x gradient, and the change of the target's\n"
               "                   log-probability when it is removed; rows for the SAE error\n"
               "                   and bias make the dla column sum to the logit (last row).\n"
               "                   Exact for an SAE on the last layer; on an earlier layer dla is\n"
               "                   the direct path and a later_layers row holds the rest\n"
               "  sae-stats        the SAE on the validation names: l0, explained variance,\n"
               "                   mse, the Transformer's loss clean / with the reconstruction\n"
               "                   spliced in / with the residual zero-ablated, CE loss score,\n"
               "                   dead and dense (> 10%% of positions) fractions\n"
               "                   (--histogram: activation frequencies in log10 bins)\n"
               "  synth --id N     new names (not in --data) that make feature N fire strongly\n"
               "                   while staying probable: beam search (--beam W, default %d)\n"
               "                   for the -n best (default %d) by X a / a_max - nll (--weight\n"
               "                   X, default %g): a the feature's highest activation over\n"
               "                   the letters, a_max its highest on --data, nll the name's\n"
               "                   loss (nats, <EOS> included)\n"
               "  dashboard --html DIR\n"
               "                   a page per SAE feature in DIR (density, activation histogram,\n"
               "                   top --top names and names across the quantiles of activation,\n"
               "                   the letters it pushes, nearest features by decoder cosine,\n"
               "                   an automatic label), index.html with the labels of features\n"
               "                   and of the neurons of the same layer, labels.tsv and\n"
               "                   monosemanticity.tsv (also printed)\n"
               "  path NAME        each position's residual state after each layer: norm,\n"
               "                   cosine to the embedding of the next token, of the input and\n"
               "                   of the predicted token, the predicted token's rank by cosine,\n"
               "                   2-D PCA coordinates (--pos I: one position; --html FILE or\n"
               "                   --svg FILE: the path drawn over the letter embeddings)\n"
               "  attention NAME   the attention weights of every layer and head (--html FILE:\n"
               "                   a shaded grid per head)\n"
               "\n"
               "Options:\n"
               "  -m, --model FILE      the Transformer (default %s)\n"
               "      --sae FILE        the SAE trained on it (default %s)\n"
               "      --data FILE       names, one per line, each distinct name counted once\n"
               "                        (features, neurons, freq, sae-stats, dashboard;\n"
               "                        default %s)\n"
               "      --val-data FILE   sae-stats: the validation names (default: the split of\n"
               "                        --data the trainers use, seeded by the Transformer's\n"
               "                        split seed or --split-seed N)\n"
               "      --layer L         neurons, lens: residual stream after L blocks\n"
               "      --top K           names per unit (default %d), predictions per cell\n"
               "                        in lens (default %d)\n"
               "      --id N            one feature (or neuron), counted from 0\n"
               "      --pos I           attribute: the position; path: show only position I\n"
               "      --target C        attribute: the token to explain, a character or <EOS>\n"
               "                        (default: the predicted one)\n"
               "      --neighbours K    embeddings: neighbours per token (default %d)\n"
               "      --beam W          synth: partial names kept at each length\n"
               "  -n, --count K         synth: names printed\n"
               "      --weight X        synth: nats a name may lose for reaching a_max\n"
               "      --html FILE       features, attribute, path, attention: write a\n"
               "                        self-contained HTML page to FILE ('-' = stdout) instead\n"
               "                        of the table; dashboard: the directory of its pages\n"
               "      --svg FILE        path: write the picture alone as SVG\n"
               "      --format F        tsv or text (default: text on a terminal, else tsv)\n"
               "      --color WHEN      shading in the text view: auto, always or never\n"
               "      --threads N       bound the threads used\n"
               "  -h, --help            show this help and exit\n"
               "  -V, --version         show the version and exit\n"
               "\n"
               "Positions: position p is the residual stream after reading the p-th letter\n"
               "(features, neurons: letters only; lens, attribute: 0 = <SOS> too).\n"
               "TSV columns:\n"
               "  features/neurons  feature|neuron rank name position letter activation frequency\n"
               "  freq              feature active frequency  (--summary: below features)\n"
               "  logits            rank token logit\n"
               "  embeddings        token x y neighbour_1 cosine_1 ...\n"
               "  lens              layer position input next rank prediction probability\n"
               "  attribute         part id activation dla act_x_grad ablation_dlogp\n"
               "  sae-stats         l0 explained_var mse ce_clean ce_sae ce_zero ce_score\n"
               "                    dead_frac dense_frac kl_sae kl_zero kl_score cos_sim l2_ratio\n"
               "                    (--histogram: log10_lo log10_hi features)\n"
               "  synth             name activation position loss_per_char score\n"
               "  dashboard         units count labelled precise share_precise median_precision\n"
               "                    median_f1\n"
               "  path              layer position input next predicted norm cos_next cos_input\n"
               "                    cos_predicted rank_predicted rank_next emb_x emb_y dir_x\n"
               "                    dir_y state_x state_y\n"
               "  attention         layer head query query_token key key_token weight\n"
               "\n"
               "Exit status: 0 on success, 1 on a runtime error (unreadable files, an SAE\n"
               "trained on another model, a feature or position out of range), 2 on a usage\n"
               "error (unknown command or flag).\n"
               "\n"
               "Example: explore features --top 20 > features.tsv\n",
               XP_SYNTH_BEAM, XP_SYNTH_COUNT, XP_SYNTH_WEIGHT,
               "weights/" CLI_DEFAULT_MODEL, "weights/" CLI_DEFAULT_SAE, XP_DEFAULT_DATA,
               XP_DEFAULT_TOP, XP_LENS_TOP, XP_DEFAULT_NEIGHBOURS);
}

/* ---- the model, the SAE and the operands ------------------------------------ */

/* The path given, or the shipped weights' copied into buf
 * (cli_default_weights reuses one buffer). */
static const char *weights_path(const char *given, const char *shipped, char buf[XP_PATH_CAP])
{
    if (given) return given;
    snprintf(buf, XP_PATH_CAP, "%s", cli_default_weights(shipped));
    return buf;
}

void xp_open_ctx(xp_ctx *c, const xp_options *o, bool need_sae)
{
    memset(c, 0, sizeof *c);
    c->o = o;
    c->model_path = weights_path(o->model, CLI_DEFAULT_MODEL, c->model_buf);
    c->sae_path = weights_path(o->sae, CLI_DEFAULT_SAE, c->sae_buf);
    if (mdl_load(&c->lm, c->model_path)) cli_die_err();
    if (!(c->tf = tf_of_mdl(&c->lm))) cli_die("%s: %s", c->model_path, err_msg());
    if (need_sae) {
        if (sae_read(&c->sae, c->sae_path) || sae_check_pair(&c->sae, c->sae_path, c->tf, c->model_path))
            cli_die_err();
        c->have_sae = true;
    }
    c->color = o->format == VW_TEXT && cli_use_color(o->color, stdout);
}

void xp_close_ctx(xp_ctx *c)
{
    if (c->have_sae) sae_free(&c->sae);
    mdl_free(&c->lm);
}

const char *xp_tok_str(const xp_ctx *c, int tok, char buf[8]) { return txt_token_str(&c->lm.vocab, tok, buf); }

/* UTF-8 of n character tokens into out (>= 4 n + 1 bytes). */
char *xp_name_str(const xp_ctx *c, const int *tok, int n, char *out)
{
    char *p = out;
    for (int i = 0; i < n; i++) p += txt_encode_cp(c->lm.vocab.cp[tok[i]], p);
    *p = 0;
    return out;
}

/* The distinct names of --data, in file order of their first line. */
void xp_load_names(const xp_ctx *c, ds_names *out)
{
    txt_lines lines;
    ds_names all;
    if (txt_read_lines(c->o->data, &lines)) cli_die_err();
    if (ds_from_lines(&all, &lines, &c->lm.vocab)) cli_die("%s: %s", c->o->data, err_msg());
    txt_lines_free(&lines);
    if (all.n == 0) cli_die("%s: no names of at least %d characters", c->o->data, DS_MIN_NAME_LEN);
    if (ds_distinct(out, &all)) cli_die_err();
    ds_free(&all);
}

/* The unit activations of the distinct names of --data, scanned. */
static void scan_names(const xp_ctx *c, const sae_model *sae, int layer, int K, int only, ds_names *names,
                       ip_scan *sc)
{
    sae_acts a;
    xp_load_names(c, names);
    if (sae_acts_compute(&a, c->tf, names, layer)) cli_die("%s: %s", c->o->data, err_msg());
    if (ip_scan_units(sc, &a, sae, K, only, sae != NULL)) cli_die_err();
    sae_acts_free(&a);
}

/* The NAME operand as character tokens; its length in *n. */
int *xp_parse_name(const xp_ctx *c, int *n)
{
    const char *s = c->o->name;
    int32_t *cp;
    size_t len;
    if (txt_decode(s, &cp, &len)) cli_die("'%s': %s", s, err_msg());
    int *tok = malloc((len ? len : 1) * sizeof *tok);
    if (!tok) cli_die("out of memory");
    if (txt_vocab_encode(&c->lm.vocab, cp, len, tok)) cli_die("'%s': %s", s, err_msg());
    free(cp);
    if ((int)len + 1 > tf_max_len(c->tf))
        cli_die("'%s' has %zu characters; %s takes at most %d", s, len, c->model_path, tf_max_len(c->tf) - 1);
    *n = (int)len;
    return tok;
}

FILE *xp_open_html(const xp_options *o)
{
    FILE *f = cli_open_write(o->html);
    if (!f) cli_die_err();
    return f;
}

void xp_close_html(FILE *f, const xp_options *o)
{
    if (cli_close(f, o->html)) cli_die_err();
}

/* ---- features and neurons: the top names of each unit ----------------------- */

/* Everything the top-names views need. */
typedef struct top_view {
    const xp_ctx      *c;
    const char     *unit;     /* "feature" or "neuron" */
    const ds_names *names;
    ip_scan         sc;
    char           *buf;      /* a name's UTF-8 */
} top_view;

static void top_tsv(top_view *tv, int u)
{
    char letter[8];
    for (int k = 0; k < ip_top_count(&tv->sc, u); k++) {
        size_t nm = ip_top_name(&tv->sc, u, k);
        const int *tok = ds_name(tv->names, nm), n = ds_len(tv->names, nm);
        const float *act = ip_top_letters(&tv->sc, u, k);
        xp_name_str(tv->c, tok, n, tv->buf);
        for (int p = 1; p <= n; p++)
            printf("%d\t%d\t%s\t%d\t%s\t%.6g\t%.6g\n", u, k + 1, tv->buf, p,
                   xp_tok_str(tv->c, tok[p - 1], letter), (double)act[p - 1], ip_freq(&tv->sc, u));
    }
}

/* The name of rank k with each letter shaded by the unit's activation /
 * scale; without colour, the strongest letter in brackets. */
static void shaded_name(top_view *tv, int u, int k, double scale, FILE *f, bool html)
{
    size_t nm = ip_top_name(&tv->sc, u, k);
    const int *tok = ds_name(tv->names, nm), n = ds_len(tv->names, nm);
    const float *act = ip_top_letters(&tv->sc, u, k);
    char letter[8], tip[64];
    int argmax = 0;
    for (int p = 1; p < n; p++)
        if (act[p] > act[argmax]) argmax = p;
    for (int p = 0; p < n; p++) {
        double v = act[p];
        xp_tok_str(tv->c, tok[p], letter);
        if (html) {
            snprintf(tip, sizeof tip, "%d: %.4g", p + 1, v);
            vw_html_heat(f, letter, scale > 0 ? v / scale : 0, tip);
        } else if (tv->c->color) {
            vw_heat(f, letter, scale > 0 ? v / scale : 0, true);
        } else {
            fprintf(f, p == argmax ? "[%s]" : "%s", letter);
        }
    }
}

/* The highest activation of unit u: the scale of its shading. */
static double top_max(const top_view *tv, int u)
{
    return ip_top_count(&tv->sc, u) ? ip_top_score(&tv->sc, u, 0) : 0.0;
}

static void top_text(top_view *tv, int u)
{
    char head[128];
    double mx = top_max(tv, u);
    snprintf(head, sizeof head, "%s %d", tv->unit, u);
    vw_bold(stdout, head, tv->c->color);
    printf("   active on %.3g%% of letters   max %.4g\n", 100.0 * ip_freq(&tv->sc, u), mx);
    for (int k = 0; k < ip_top_count(&tv->sc, u); k++) {
        printf("  %8.3f  ", (double)ip_top_score(&tv->sc, u, k));
        shaded_name(tv, u, k, mx, stdout, false);
        putchar('\n');
    }
    putchar('\n');
}

static void top_html(top_view *tv, int u, FILE *f)
{
    double mx = top_max(tv, u);
    fprintf(f, "<h2 id=\"%s-%d\">%s %d</h2>\n<p class=\"meta\">active on %.3g%% of letters, "
            "max %.4g</p>\n<table>\n<tr><th>max</th><th>name</th></tr>\n", tv->unit, u, tv->unit,
            u, 100.0 * ip_freq(&tv->sc, u), mx);
    for (int k = 0; k < ip_top_count(&tv->sc, u); k++) {
        fprintf(f, "<tr><td class=\"num\">%.3f</td><td class=\"name\">", (double)ip_top_score(&tv->sc, u, k));
        shaded_name(tv, u, k, mx, f, true);
        fputs("</td></tr>\n", f);
    }
    fputs("</table>\n", f);
}

/* The units asked for (all but those never active, or --id's), in the
 * view asked for; returns how many were left out as never active. */
static int top_units(top_view *tv, FILE *html)
{
    const int id = tv->c->o->id, first = id >= 0 ? id : 0, last = id >= 0 ? id : tv->sc.U - 1;
    int dead = 0;
    for (int u = first; u <= last; u++) {
        if (ip_top_count(&tv->sc, u) == 0 && id < 0) {
            dead++;
            continue;
        }
        if (html) top_html(tv, u, html);
        else if (tv->c->o->format == VW_TSV) top_tsv(tv, u);
        else top_text(tv, u);
    }
    return dead;
}

/* features and neurons: scan, then one view of the units asked for. */
static void top_names(const xp_ctx *c, const sae_model *sae, int layer, const char *unit)
{
    const xp_options *o = c->o;
    ds_names names;
    top_view tv = { .c = c, .unit = unit, .names = &names };
    scan_names(c, sae, layer, o->top ? o->top : XP_DEFAULT_TOP, o->id, &names, &tv.sc);
    tv.buf = malloc(4 * (size_t)names.max_len + 1);
    if (!tv.buf) cli_die("out of memory");
    FILE *html = o->html ? xp_open_html(o) : NULL;
    if (html) {
        char title[256];
        snprintf(title, sizeof title, "%ss of %s", unit, sae ? c->sae_path : c->model_path);
        vw_html_begin(html, title);
        fprintf(html, "<p class=\"meta\">%zu names of %s, %zu letters; layer %d</p>\n", names.n,
                o->data, tv.sc.positions, layer);
    } else if (o->format == VW_TSV) {
        printf("%s\trank\tname\tposition\tletter\tactivation\tfrequency\n", unit);
    }
    int dead = top_units(&tv, html);
    if (html) {
        if (dead) fprintf(html, "<p class=\"meta\">%d %ss never active</p>\n", dead, unit);
        vw_html_end(html);
        xp_close_html(html, o);
    } else if (o->format == VW_TEXT && dead) {
        printf("%d %ss never active on these names\n", dead, unit);
    }
    free(tv.buf);
    ip_scan_free(&tv.sc);
    ds_free(&names);
}

void xp_features(const xp_options *o)
{
    xp_ctx c;
    xp_open_ctx(&c, o, true);
    top_names(&c, &c.sae, c.sae.c.layer, "feature");
    xp_close_ctx(&c);
}

void xp_neurons(const xp_options *o)
{
    xp_ctx c;
    xp_open_ctx(&c, o, false);
    int L = o->layer >= 0 ? o->layer : tf_n_layers(c.tf);
    if (L > tf_n_layers(c.tf)) cli_die("--layer %d: %s has %d layers", L, c.model_path, tf_n_layers(c.tf));
    top_names(&c, NULL, L, "neuron");
    xp_close_ctx(&c);
}

/* ---- freq ------------------------------------------------------------------------ */

enum { N_BELOW = 4 };
static const double below[N_BELOW] = { 0.1, 0.01, 0.001, 0.0001 };   /* freq's summary */

/* The features, one line each, with a bar scaled to the most frequent. */
static void freq_bars(const double *freq, const int *order, int F, bool sorted)
{
    double mx = F ? freq[order[0]] : 0;
    for (int i = 0; i < F && !sorted; i++) mx = fmax(mx, freq[i]);
    putchar('\n');
    for (int i = 0; i < F; i++) {
        printf("  %6d  %8.4f%%  ", order[i], 100 * freq[order[i]]);
        vw_bar(stdout, mx > 0 ? freq[order[i]] / mx : 0, 40);
        putchar('\n');
    }
}

void xp_freq(const xp_options *o)
{
    xp_ctx c;
    xp_open_ctx(&c, o, true);
    ds_names names;
    ip_scan sc;
    scan_names(&c, &c.sae, c.sae.c.layer, 0, -1, &names, &sc);
    const int F = sc.U;
    double *freq = malloc((size_t)F * sizeof *freq);
    int *order = malloc((size_t)F * sizeof *order), n_below[N_BELOW] = { 0 }, dead = 0;
    if (!freq || !order) cli_die("out of memory");
    for (int i = 0; i < F; i++) {
        order[i] = i;
        freq[i] = ip_freq(&sc, i);
        dead += sc.active[i] == 0;
        for (int k = 0; k < N_BELOW; k++) n_below[k] += freq[i] < below[k];
    }
    if (o->by_freq && ip_rank(freq, F, order)) cli_die_err();
    if (o->format == VW_TSV && o->summary) {
        printf("below\tfeatures\n");
        for (int k = 0; k < N_BELOW; k++) printf("%g\t%d\n", below[k], n_below[k]);
    } else if (o->format == VW_TSV) {
        printf("feature\tactive\tfrequency\n");
        for (int i = 0; i < F; i++) printf("%d\t%zu\t%.6g\n", order[i], sc.active[order[i]], freq[order[i]]);
    } else {
        printf("%d features over %zu letters of %zu names: %d never active\n", F, sc.positions,
               names.n, dead);
        for (int k = 0; k < N_BELOW; k++)
            printf("  below %g%%: %d features\n", 100 * below[k], n_below[k]);
        if (!o->summary) freq_bars(freq, order, F, o->by_freq);
    }
    free(freq);
    free(order);
    ip_scan_free(&sc);
    ds_free(&names);
    xp_close_ctx(&c);
}

/* ---- logits ------------------------------------------------------------------------ */

/* The n ranked tokens, the ten first and ten last when there are more
 * than twenty, with bars scaled to the largest |logit|. */
static void logits_text(const xp_ctx *c, const float *logit, const int *order, int n)
{
    char tok[8];
    double mx = fmax(fabs(logit[order[0]]), fabs(logit[order[n - 1]]));
    printf("feature %d %s:\n", c->o->id, c->sae.c.layer == tf_n_layers(c->tf)
           ? "pushes up / down (decoder direction through the final norm weight and unembedding)"
           : "pushes up / down along the direct path (later blocks ignored)");
    for (int i = 0; i < n; i++) {
        if (i == 10 && n > 20) {
            printf("  ...\n");
            i = n - 10;
        }
        double v = logit[order[i]];
        printf("  %-6s %+8.3f  ", xp_tok_str(c, order[i], tok), v);
        vw_bar(stdout, mx > 0 ? fabs(v) / mx : 0, 30);
        putchar('\n');
    }
}

void xp_logits(const xp_options *o)
{
    xp_ctx c;
    xp_open_ctx(&c, o, true);
    const int V = tf_vocab_size(c.tf);
    float *logit = malloc((size_t)V * sizeof *logit);
    int *order = malloc((size_t)V * sizeof *order), n;
    if (!logit || !order) cli_die("out of memory");
    if (ip_feature_logits(&c.sae, c.tf, o->id, logit, order, &n)) cli_die_err();
    char tok[8];
    if (o->format == VW_TSV) {
        printf("rank\ttoken\tlogit\n");
        for (int i = 0; i < n; i++) printf("%d\t%s\t%.6g\n", i + 1, xp_tok_str(&c, order[i], tok), (double)logit[order[i]]);
    } else {
        logits_text(&c, logit, order, n);
    }
    free(logit);
    free(order);
    xp_close_ctx(&c);
}

/* ---- embeddings ---------------------------------------------------------------------- */

/* A character grid of the points xy (n, 2), point r drawn as token r + 1. */
static void scatter(const xp_ctx *c, const double *xy, int n)
{
    enum { W = 72, H = 24 };
    static char cell[H][W][8];
    double lo[2] = { INFINITY, INFINITY }, hi[2] = { -INFINITY, -INFINITY };
    for (int r = 0; r < n; r++)
        for (int k = 0; k < 2; k++) {
            lo[k] = fmin(lo[k], xy[2 * r + k]);
            hi[k] = fmax(hi[k], xy[2 * r + k]);
        }
    memset(cell, 0, sizeof cell);
    for (int r = 0; r < n; r++) {
        int x = hi[0] > lo[0] ? (int)lround((xy[2 * r] - lo[0]) / (hi[0] - lo[0]) * (W - 6)) : 0;
        int y = hi[1] > lo[1] ? (int)lround((hi[1] - xy[2 * r + 1]) / (hi[1] - lo[1]) * (H - 1)) : 0;
        char tok[8];
        snprintf(cell[y][x], sizeof cell[y][x], "%s", vw_visible(xp_tok_str(c, r + 1, tok)));
    }
    for (int y = 0; y < H; y++) {
        for (int x = 0; x < W; x++) {
            if (!cell[y][x][0]) {
                putchar(' ');
                continue;
            }
            if (c->color) vw_bold(stdout, cell[y][x], true);
            else fputs(cell[y][x], stdout);
            if (cell[y][x][0] == '<') x += (int)strlen(cell[y][x]) - 1;   /* <EOS> is wide */
        }
        putchar('\n');
    }
}

/* Row r: token r + 1, its coordinates (TSV only) and its neighbours
 * nb, cos (shown). */
static void embedding_row(const xp_ctx *c, int r, const double *xy, const int *nb, const float *cos, int shown)
{
    char tok[8];
    if (c->o->format == VW_TSV) printf("%s\t%.6g\t%.6g", xp_tok_str(c, r + 1, tok), xy[2 * r], xy[2 * r + 1]);
    else {
        printf("  ");
        vw_cell(stdout, xp_tok_str(c, r + 1, tok), 6, 0, c->color);
    }
    for (int k = 0; k < shown; k++) {
        const char *s = xp_tok_str(c, nb[(size_t)r * shown + k] + 1, tok);
        double cs = cos[(size_t)r * shown + k];
        if (c->o->format == VW_TSV) printf("\t%s\t%.4f", s, cs);
        else printf("  %s %.2f", vw_visible(s), cs);
    }
    putchar('\n');
}

void xp_embeddings(const xp_options *o)
{
    xp_ctx c;
    xp_open_ctx(&c, o, false);
    const int V = tf_vocab_size(c.tf), d = tf_d_model(c.tf), n = V - 1;
    const int K = o->neighbours, shown = K < n - 1 ? K : n - 1;
    const float *E = tf_embedding(c.tf) + d;   /* every token but <pad>: row r is token r + 1 */
    double *xy = malloc(2 * (size_t)n * sizeof *xy);
    int *nb = malloc(((size_t)n * shown + 1) * sizeof *nb);
    float *cos = malloc(((size_t)n * shown + 1) * sizeof *cos);
    if (!xy || !nb || !cos) cli_die("out of memory");
    if (ip_pca2(E, n, d, xy) || ip_cosine_neighbours(E, n, d, shown, nb, cos)) cli_die_err();
    if (o->format == VW_TSV) {
        printf("token\tx\ty");
        for (int k = 1; k <= K; k++) printf("\tneighbour_%d\tcosine_%d", k, k);
        putchar('\n');
    } else {
        printf("token embeddings, first two principal components:\n\n");
        scatter(&c, xy, n);
        printf("\nnearest neighbours (cosine similarity):\n");
    }
    for (int r = 0; r < n; r++) embedding_row(&c, r, xy, nb, cos, shown);
    free(xy);
    free(nb);
    free(cos);
    xp_close_ctx(&c);
}

/* ---- lens ------------------------------------------------------------------------------ */

static void lens_header(const xp_ctx *c, const char *label, const int *tok, int T)
{
    char s[8];
    printf("%-9s", label);
    for (int pos = 0; pos < T; pos++) {
        putchar(' ');
        vw_cell(stdout, xp_tok_str(c, tok[pos], s), 6, 0, c->color);
    }
    putchar('\n');
}

/* One layer of the lens: in TSV a row per (position, rank); in text a
 * cell per position, the top prediction shaded by its probability, * when
 * it is right.  x, y (T): the input at each position, the token after it. */
static void lens_layer(const xp_ctx *c, const ip_lens *l, int L, const int *x, const int *y)
{
    char in[8], next[8], pred[8];
    if (c->o->format == VW_TEXT) printf("layer %-3d", L);
    for (int pos = 0; pos < l->T; pos++) {
        size_t at = ip_lens_at(l, L, pos);
        if (c->o->format == VW_TEXT) {
            char label[16];
            snprintf(label, sizeof label, "%s%s", xp_tok_str(c, l->tok[at], pred), l->tok[at] == y[pos] ? "*" : "");
            putchar(' ');
            vw_cell(stdout, label, 6, l->prob[at], c->color);
            continue;
        }
        for (int k = 0; k < l->K; k++)
            printf("%d\t%d\t%s\t%s\t%d\t%s\t%.6f\n", L, pos, xp_tok_str(c, x[pos], in),
                   xp_tok_str(c, y[pos], next), k + 1, xp_tok_str(c, l->tok[at + k], pred), l->prob[at + k]);
    }
    if (c->o->format == VW_TEXT) putchar('\n');
}

void xp_lens(const xp_options *o)
{
    xp_ctx c;
    xp_open_ctx(&c, o, false);
    int n;
    int *name = xp_parse_name(&c, &n);
    const int T = n + 1;
    ip_lens l;
    if (ip_logit_lens(&l, c.tf, name, n, o->top ? o->top : XP_LENS_TOP)) cli_die_err();
    int *x = malloc((size_t)T * sizeof *x), *y = malloc((size_t)T * sizeof *y);
    if (!x || !y) cli_die("out of memory");
    x[0] = TOK_SOS;   /* the input at each position and the token that follows it */
    memcpy(x + 1, name, (size_t)n * sizeof *x);
    memcpy(y, name, (size_t)n * sizeof *y);
    y[n] = TOK_EOS;
    if (o->format == VW_TSV) {
        printf("layer\tposition\tinput\tnext\trank\tprediction\tprobability\n");
    } else {
        printf("logit lens of '%s': the most probable next token read after each layer\n\n", o->name);
        lens_header(&c, "input", x, T);
        lens_header(&c, "next", y, T);
    }
    for (int L = 0; L <= l.n_layers; L++) lens_layer(&c, &l, L, x, y);
    if (o->format == VW_TEXT)
        printf("\n%s* = the actual next token\n", c.color ? "shading: probability of the top prediction; " : "");
    ip_lens_free(&l);
    free(x);
    free(y);
    free(name);
    xp_close_ctx(&c);
}

/* ---- attribute ---------------------------------------------------------------------------- */

static const char *const part_names[] = { "feature", "error", "bias", "later_layers" };

static int parse_target(const xp_ctx *c, const char *s)
{
    if (!strcmp(s, "<EOS>")) return TOK_EOS;
    int32_t *cp;
    size_t n;
    if (txt_decode(s, &cp, &n) || n != 1) cli_die("--target '%s': expected one character or <EOS>", s);
    int tok = txt_vocab_token(&c->lm.vocab, cp[0]);
    free(cp);
    if (tok < 0) cli_die("--target '%s' is not in the vocabulary of %s", s, c->model_path);
    return tok;
}

/* The largest |dla| of the parts: the scale of the shading and bars. */
static double attr_max(const sae_attribution *a)
{
    double mx = 0;
    for (int i = 0; i < a->n_parts; i++) mx = fmax(mx, fabs(a->part[i].dla));
    return mx;
}

static void attr_tsv(const sae_attribution *a)
{
    printf("part\tid\tactivation\tdla\tact_x_grad\tablation_dlogp\n");
    for (int i = 0; i < a->n_parts; i++) {
        const sae_part *p = &a->part[i];
        printf("%s\t", part_names[p->kind]);
        if (p->kind == SAE_PART_FEATURE) printf("%d\t%.6g\t", p->id, (double)p->act);
        else printf("-\t-\t");
        if (p->kind == SAE_PART_LATER) printf("%.6f\t-\t-\n", p->dla);
        else printf("%.6f\t%.6f\t%.6f\n", p->dla, p->act_grad, p->ablation);
    }
    printf("logit\t-\t-\t%.6f\t-\t-\n", a->logit);
}

/* One row of the text table, the dla shaded by dla / mx. */
static void attr_text_row(const xp_ctx *c, const sae_part *p, double mx)
{
    char label[32];
    if (p->kind == SAE_PART_FEATURE) snprintf(label, sizeof label, "feature %d", p->id);
    else snprintf(label, sizeof label, "%s", part_names[p->kind]);
    if (p->kind == SAE_PART_FEATURE) printf("%-14s %9.3f ", label, (double)p->act);
    else printf("%-14s %9s ", label, "");
    char v[16];
    snprintf(v, sizeof v, "%+9.3f", p->dla);
    vw_heat(stdout, v, mx > 0 ? p->dla / mx : 0, c->color);
    if (p->kind == SAE_PART_LATER) printf(" %9s %9s\n", "", "");
    else printf(" %+9.3f %+9.3f\n", p->act_grad, p->ablation);
}

/* The table of parts; the features past the first VIEW_PARTS rows summed
 * into one "others" row. */
static void attr_table(const xp_ctx *c, const sae_attribution *a)
{
    double mx = attr_max(a), rest = 0;
    int n_rest = 0;
    printf("%-14s %9s %9s %9s %9s\n", "part", "act", "dla", "act*grad", "ablation");
    for (int i = 0; i < a->n_parts; i++) {
        if (a->part[i].kind == SAE_PART_FEATURE && i >= VIEW_PARTS) {
            rest += a->part[i].dla;
            n_rest++;
        } else {
            attr_text_row(c, &a->part[i], mx);
        }
    }
    if (n_rest) printf("%-14s %9s %+9.3f   (%d more features)\n", "others", "", rest, n_rest);
    printf("%-14s %9s %+9.3f\n", "= logit", "", a->logit);
}

static void attr_text(const xp_ctx *c, const sae_attribution *a, const int *name)
{
    char tok[8], pred[8], before[8];
    printf("'%s' at position %d (after '%s'): target '%s', logit %.4f, p = %.4f; predicted '%s'\n",
           c->o->name, a->pos, a->pos ? xp_tok_str(c, name[a->pos - 1], before) : "<SOS>",
           xp_tok_str(c, a->target, tok), a->logit, exp(a->logprob), xp_tok_str(c, a->predicted, pred));
    if (!a->exact)
        printf("the SAE reads layer %d of %d: dla is the direct path only; later_layers is the rest\n",
               c->sae.c.layer, tf_n_layers(c->tf));
    putchar('\n');
    attr_table(c, a);
}

/* The name, the position a outlined. */
static void attr_html_name(const xp_ctx *c, const sae_attribution *a, const int *name, int n, FILE *f)
{
    char tok[8], tip[64];
    fputs("<p class=\"name\">", f);
    for (int p = 1; p <= n; p++) {
        xp_tok_str(c, name[p - 1], tok);
        snprintf(tip, sizeof tip, "position %d", p);
        if (p == a->pos) fputs("<span class=\"here\">", f);
        vw_html_heat(f, tok, 0, tip);
        if (p == a->pos) fputs("</span>", f);
    }
    fputs("</p>\n", f);
}

static void attr_html_table(const sae_attribution *a, FILE *f)
{
    double mx = attr_max(a);
    fputs("<table>\n<tr><th>part</th><th>activation</th><th>dla</th><th></th><th>act &times; grad</th>"
          "<th>ablation &Delta;log p</th></tr>\n", f);
    for (int i = 0; i < a->n_parts; i++) {
        const sae_part *p = &a->part[i];
        fprintf(f, "<tr><td>%s", part_names[p->kind]);
        if (p->kind == SAE_PART_FEATURE) fprintf(f, " %d</td><td class=\"num\">%.4f", p->id, (double)p->act);
        else fputs("</td><td>", f);
        fprintf(f, "</td><td class=\"num\">%+.4f</td><td>", p->dla);
        vw_html_bar(f, mx > 0 ? p->dla / mx : 0);
        if (p->kind == SAE_PART_LATER) fputs("</td><td></td><td></td></tr>\n", f);
        else fprintf(f, "</td><td class=\"num\">%+.4f</td><td class=\"num\">%+.4f</td></tr>\n", p->act_grad, p->ablation);
    }
    fprintf(f, "<tr><th>logit</th><td></td><td class=\"num\">%+.4f</td><td></td><td></td><td></td></tr>\n"
            "</table>\n", a->logit);
}

static void attr_html(const xp_ctx *c, const sae_attribution *a, const int *name, int n, FILE *f)
{
    char title[512], tok[8];
    snprintf(title, sizeof title, "Attribution: %s, position %d", c->o->name, a->pos);
    vw_html_begin(f, title);
    attr_html_name(c, a, name, n, f);
    fputs("<p class=\"meta\">target ", f);
    vw_html_text(f, xp_tok_str(c, a->target, tok));
    fprintf(f, ": logit %.4f, log-probability %.4f; predicted ", a->logit, a->logprob);
    vw_html_text(f, xp_tok_str(c, a->predicted, tok));
    fprintf(f, ". %s</p>\n", a->exact ? "The SAE reads the last layer: the dla column sums exactly to the logit."
            : "The SAE reads an earlier layer: dla is the direct path; later_layers holds the rest.");
    attr_html_table(a, f);
    vw_html_end(f);
}

void xp_attribute(const xp_options *o)
{
    xp_ctx c;
    xp_open_ctx(&c, o, true);
    int n;
    int *name = xp_parse_name(&c, &n);
    int target = o->target ? parse_target(&c, o->target) : -1;
    sae_attribution a;
    if (sae_attribute(&c.sae, c.tf, name, n, o->pos, target, &a)) cli_die("'%s': %s", o->name, err_msg());
    if (o->html) {
        FILE *f = xp_open_html(o);
        attr_html(&c, &a, name, n, f);
        xp_close_html(f, o);
    } else if (o->format == VW_TSV) {
        attr_tsv(&a);
    } else {
        attr_text(&c, &a, name);
    }
    sae_attribution_free(&a);
    free(name);
    xp_close_ctx(&c);
}

/* ---- synth ------------------------------------------------------------------------- */

/* synth's keep: names absent from the data. */
typedef struct novel_ctx { const xp_ctx *c; gen_names *data; char *buf; } novel_ctx;

static bool is_novel(void *p, const int *tok, int n)
{
    const novel_ctx *nc = p;
    return !gen_names_has(nc->data, xp_name_str(nc->c, tok, n, nc->buf));
}

/* The feature's highest activation on the names of --data (1 if it never fires). */
static double feature_top(const xp_ctx *c, int id)
{
    ds_names names;
    ip_scan sc;
    scan_names(c, &c->sae, c->sae.c.layer, 1, id, &names, &sc);
    double top = ip_top_count(&sc, id) > 0 ? ip_top_score(&sc, id, 0) : 0.0;
    ip_scan_free(&sc);
    ds_free(&names);
    return top > 0 ? top : 1.0;
}

void xp_synth(const xp_options *o)
{
    xp_ctx c;
    xp_open_ctx(&c, o, true);
    if (o->id >= c.sae.c.n_features)
        cli_die("feature %d out of range [0, %d)", o->id, c.sae.c.n_features);
    novel_ctx nc = { .c = &c, .buf = malloc(4 * (size_t)tf_max_len(c.tf) + 1) };
    if (!nc.buf) cli_die("out of memory");
    if (gen_names_load(&nc.data, o->data)) cli_die_err();
    syn_config cfg = { .feature = o->id, .beam = o->beam > 0 ? o->beam : XP_SYNTH_BEAM,
                       .count = o->count > 0 ? o->count : XP_SYNTH_COUNT, .weight = o->weight > 0 ? o->weight : XP_SYNTH_WEIGHT,
                       .act_ref = feature_top(&c, o->id), .keep = is_novel, .keep_ctx = &nc };
    syn_name *best;
    int n;
    if (syn_search(&c.sae, c.tf, &cfg, &best, &n)) cli_die_err();
    if (o->format == VW_TSV) printf("name\tactivation\tposition\tloss_per_char\tscore\n");
    else printf("feature %d (top activation on %s: %.3f)\n%-24s %10s %8s %13s\n", o->id, o->data,
                cfg.act_ref, "name", "activation", "position", "loss_per_char");
    for (int i = 0; i < n; i++) {
        const syn_name *b = &best[i];
        xp_name_str(&c, b->tok, b->n, nc.buf);
        if (o->format == VW_TSV)
            printf("%s\t%.4f\t%d\t%.4f\t%.4f\n", nc.buf, (double)b->act, b->at, b->nll / (b->n + 1), b->score);
        else printf("%-24s %10.3f %8d %13.3f\n", nc.buf, (double)b->act, b->at, b->nll / (b->n + 1));
    }
    syn_names_free(best, n);
    gen_names_free(nc.data);
    free(nc.buf);
    xp_close_ctx(&c);
}

/* ---- sae-stats ---------------------------------------------------------------------------- */

static void hist_tsv(const int hist[SAE_HIST_BINS])
{
    double lo, hi;
    printf("log10_lo\tlog10_hi\tfeatures\n");
    printf("-inf\t-6\t%d\n", hist[0]);
    for (int i = 1; i < SAE_HIST_BINS; i++) {
        sae_hist_bounds(i, &lo, &hi);
        printf("%g\t%g\t%d\n", lo, hi, hist[i]);
    }
}

static void hist_text(const int hist[SAE_HIST_BINS])
{
    int mx = 1;
    for (int i = 0; i < SAE_HIST_BINS; i++) mx = hist[i] > mx ? hist[i] : mx;
    printf("  activation frequency (log10)\n");
    for (int i = 0; i < SAE_HIST_BINS; i++) {
        if (i == 0) printf("  %-13s %5d  ", "dead", hist[0]);
        else {
            double lo, hi;
            sae_hist_bounds(i, &lo, &hi);
            char range[32];
            snprintf(range, sizeof range, "[%g, %g)", lo, hi);
            printf("  %-13s %5d  ", range, hist[i]);
        }
        vw_bar(stdout, (double)hist[i] / mx, 40);
        putchar('\n');
    }
}

static void stats_text(const xp_ctx *c, const sae_stats *st, size_t n_val)
{
    printf("SAE %s on layer %d of %s: %d features, %zu validation names, %zu positions\n\n",
           c->sae_path, c->sae.c.layer, c->model_path, c->sae.c.n_features, n_val, st->n_rows);
    printf("  L0 (active features per position)  %.2f\n", st->l0);
    printf("  explained variance                 %.4f\n", st->explained_var);
    printf("  MSE                                %.4g\n", st->mse);
    printf("  loss clean / SAE / zero-ablated    %.4f / %.4f / %.4f nats/char\n", st->ce_clean,
           st->ce_sae, st->ce_zero);
    printf("  CE loss score                      %.4f\n", st->ce_score);
    printf("  KL from clean, SAE / zero-ablated  %.4f / %.4f nats/char\n", st->kl_sae, st->kl_zero);
    printf("  KL-divergence score                %.4f\n", st->kl_score);
    printf("  cosine(x, x^), |x^| / |x|          %.4f, %.4f\n", st->cos_sim, st->l2_ratio);
    printf("  dead features                      %d (%.1f%%)\n", st->n_dead, 100 * st->dead_frac);
    printf("  dense features (> %d%% of positions) %d (%.1f%%)\n\n", SAE_DENSE_PERCENT,
           st->n_dense, 100 * st->dense_frac);
}

/* The validation names: --val-data, or the split of --data the trainers
 * made, by --split-seed or else the Transformer's own split seed. */
static void load_val(const xp_ctx *c, ds_corpus *corpus)
{
    uint64_t split = c->o->split_seed;
    const char *meta = ck_meta(&c->lm.file, "split_seed");
    if (!c->o->split_seed_given && meta) split = strtoull(meta, NULL, 10);
    if (ds_load_with_vocab(corpus, &c->lm.vocab, c->o->data, c->o->val_data, split, 0.1)) cli_die_err();
    if (corpus->val.n == 0) cli_die("no validation names");
}

void xp_sae_stats(const xp_options *o)
{
    xp_ctx c;
    xp_open_ctx(&c, o, true);
    ds_corpus corpus;
    load_val(&c, &corpus);
    const int F = c.sae.c.n_features;
    double *freq = malloc((size_t)F * sizeof *freq);
    if (!freq) cli_die("out of memory");
    sae_stats st;
    if (sae_evaluate(&c.sae, c.tf, &corpus.val, 64, &st, freq)) cli_die_err();
    int hist[SAE_HIST_BINS];
    sae_freq_histogram(freq, F, hist);
    if (o->format == VW_TSV && o->histogram) {
        hist_tsv(hist);
    } else if (o->format == VW_TSV) {
        sae_stats_write_tsv(stdout, &st);
    } else {
        stats_text(&c, &st, corpus.val.n);
        hist_text(hist);
    }
    free(freq);
    ds_corpus_free(&corpus);
    xp_close_ctx(&c);
}
