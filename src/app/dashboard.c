/* dashboard.c - explore dashboard: a page per SAE feature (density,
 * activation histogram, top examples and examples across the quantiles of
 * activation, the letters it pushes, its nearest features by decoder
 * cosine, its automatic label), an index with the labels of the features
 * and of the residual neurons of the same layer, the features-vs-neurons
 * monosemanticity table, and both as TSV.  The numbers come from units.h,
 * label.h and interp.h; this file only lays them out. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "explore.h"
#include "interp.h"
#include "label.h"
#include "text.h"
#include "units.h"
#include "xpctx.h"

enum {
    NEAREST = 6,        /* nearest features by decoder cosine */
    PUSHED = 8,         /* letters shown pushed up, and down */
    PER_QUANTILE = 3,   /* names shown at each quantile */
    LABEL_CAP = 128,
    HIST_W = 480, HIST_H = 110,
};
#define MONO_PRECISION 0.8
static const double quantiles[] = { 0.9, 0.75, 0.5, 0.25, 0.05 };

/* Everything the pages are made from. */
typedef struct dash {
    xp_ctx      c;
    ds_names    names;
    sae_acts    acts;       /* the residual at the SAE's layer */
    lb_index    ctxs;
    un_profile  feat, neur;
    un_summary  feat_sum, neur_sum;
    int         F, K;       /* features, top examples per feature */
    int        *nearest;    /* (F, NEAREST) */
    float      *cosine;     /* (F, NEAREST) */
    char       *buf;        /* a name's UTF-8 */
    float      *letters;    /* a name's activations */
} dash;

/* ---- files -------------------------------------------------------------------- */

static FILE *open_in(const char *dir, const char *file, char path[XP_PATH_CAP + 64])
{
    snprintf(path, XP_PATH_CAP + 64, "%s/%s", dir, file);
    FILE *f = cli_open_write(path);
    if (!f) cli_die_err();
    return f;
}

static void close_in(FILE *f, const char *path)
{
    if (cli_close(f, path)) cli_die_err();
}

static void make_dir(const char *dir)
{
    struct stat st;
    if (mkdir(dir, 0777) && !(errno == EEXIST && stat(dir, &st) == 0 && S_ISDIR(st.st_mode)))
        cli_die("cannot create the directory '%s': %s", dir, strerror(errno));
}

/* ---- pieces ----------------------------------------------------------------- */

static const char *label_of(const dash *d, const un_profile *p, int u, char buf[LABEL_CAP])
{
    lb_describe(&d->ctxs, p->label[u].context, &d->c.lm.vocab, buf, LABEL_CAP);
    return buf;
}

/* The label with its precision and recall, as HTML. */
static void label_html(const dash *d, const un_profile *p, int u, FILE *f)
{
    char buf[LABEL_CAP];
    const lb_label *l = &p->label[u];
    if (l->context < 0) {
        fprintf(f, "<span class=\"meta\">no label (%zu strong letters)</span>", l->fired);
        return;
    }
    fputs("<b>", f);
    vw_html_text(f, label_of(d, p, u, buf));
    fprintf(f, "</b> <span class=\"meta\">precision %.2f, recall %.2f</span>", l->precision, l->recall);
}

/* Name nm with each letter shaded by feature u's activation / max. */
static void shaded(dash *d, int u, size_t nm, FILE *f)
{
    const un_profile *p = &d->feat;
    const int *tok = ds_name(&d->names, nm), n = ds_len(&d->names, nm);
    char letter[8], tip[64];
    if (un_letters(p, &d->acts, &d->c.sae, nm, u, d->letters)) cli_die_err();
    fputs("<span class=\"name\">", f);
    for (int k = 0; k < n; k++) {
        snprintf(tip, sizeof tip, "%d: %.4g", k + 1, (double)d->letters[k]);
        vw_html_heat(f, xp_tok_str(&d->c, tok[k], letter), p->max[u] > 0 ? d->letters[k] / p->max[u] : 0, tip);
    }
    fputs("</span>", f);
}

/* Names of ranks from .. to - 1 among feature u's active names, a row each. */
static void example_rows(dash *d, int u, size_t from, size_t to, FILE *f)
{
    const un_profile *p = &d->feat;
    for (size_t r = from; r < to && r < un_names(p, u); r++) {
        size_t at = p->nm_first[u] + r;
        fprintf(f, "<tr><td class=\"num\">%.3f</td><td>", (double)p->nm_max[at]);
        shaded(d, u, p->nm_name[at], f);
        fputs("</td></tr>\n", f);
    }
}

/* The histogram of unit u's activations as an inline SVG (log-scaled counts). */
static void histogram_svg(const un_profile *p, int u, FILE *f)
{
    const size_t *h = p->hist + (size_t)u * UN_HIST_BINS;
    double top = 0;
    for (int b = 0; b < UN_HIST_BINS; b++) top = fmax(top, log10(1.0 + (double)h[b]));
    const double bw = (double)HIST_W / UN_HIST_BINS, plot = HIST_H - 16;
    fprintf(f, "<svg width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\">\n", HIST_W, HIST_H, HIST_W, HIST_H);
    for (int b = 0; b < UN_HIST_BINS; b++) {
        double bh = top > 0 ? log10(1.0 + (double)h[b]) / top * plot : 0;
        fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#e6501e\"><title>"
                "(%.3g, %.3g]: %zu letters</title></rect>\n", b * bw + 1, plot - bh, bw - 2, bh,
                (double)p->max[u] * b / UN_HIST_BINS, (double)p->max[u] * (b + 1) / UN_HIST_BINS, h[b]);
    }
    fprintf(f, "<line x1=\"0\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#999\"/>\n"
            "<text x=\"0\" y=\"%d\" font-size=\"11\">0</text>"
            "<text x=\"%d\" y=\"%d\" font-size=\"11\" text-anchor=\"end\">%.3g</text>\n</svg>\n",
            plot, HIST_W, plot, HIST_H - 2, HIST_W, HIST_H - 2, (double)p->max[u]);
}

/* The letters feature u's decoder direction pushes up and down most. */
static void logits_html(dash *d, int u, FILE *f)
{
    const int V = tf_vocab_size(d->c.tf);
    float *logit = malloc((size_t)V * sizeof *logit);
    int *order = malloc((size_t)V * sizeof *order), n;
    char tok[8];
    if (!logit || !order) cli_die("out of memory");
    if (ip_feature_logits(&d->c.sae, d->c.tf, u, logit, order, &n)) cli_die_err();
    const double mx = fmax(fabs(logit[order[0]]), fabs(logit[order[n - 1]]));
    fputs("<table class=\"logits\"><tr><th colspan=\"3\">pushed up</th><th colspan=\"3\">pushed down</th></tr>\n", f);
    for (int k = 0; k < PUSHED && k < n; k++) {
        const int up = order[k], down = order[n - 1 - k];
        fputs("<tr><td class=\"name\">", f);
        vw_html_text(f, vw_visible(xp_tok_str(&d->c, up, tok)));
        fprintf(f, "</td><td class=\"num\">%+.3f</td><td>", (double)logit[up]);
        vw_html_bar(f, mx > 0 ? logit[up] / mx : 0);
        fputs("</td><td class=\"name\">", f);
        vw_html_text(f, vw_visible(xp_tok_str(&d->c, down, tok)));
        fprintf(f, "</td><td class=\"num\">%+.3f</td><td>", (double)logit[down]);
        vw_html_bar(f, mx > 0 ? logit[down] / mx : 0);
        fputs("</td></tr>\n", f);
    }
    fputs("</table>\n", f);
    free(logit);
    free(order);
}

static void nearest_html(dash *d, int u, FILE *f)
{
    const int K = NEAREST < d->F - 1 ? NEAREST : d->F - 1;
    fputs("<table>\n<tr><th>feature</th><th>cosine</th><th>its label</th></tr>\n", f);
    for (int k = 0; k < K; k++) {
        const int v = d->nearest[(size_t)u * K + k];
        fprintf(f, "<tr><td><a href=\"feature-%d.html\">feature %d</a></td><td class=\"num\">%+.3f</td><td>", v, v,
                (double)d->cosine[(size_t)u * K + k]);
        label_html(d, &d->feat, v, f);
        fputs("</td></tr>\n", f);
    }
    fputs("</table>\n", f);
}

static const char page_css[] =
    "<style>\nnav { margin: 0.5em 0 1em; } nav a { margin-right: 1.5em; }\n"
    ".cols { display: flex; flex-wrap: wrap; gap: 2.5em; }\n"
    "td .name span, .name span { padding: 0.1em 0.05em; }\n</style>\n";

static void nav(const dash *d, int u, FILE *f)
{
    fputs("<nav>", f);
    if (u > 0) fprintf(f, "<a href=\"feature-%d.html\" rel=\"prev\">&larr; feature %d</a>", u - 1, u - 1);
    fputs("<a href=\"index.html\">index</a>", f);
    if (u + 1 < d->F) fprintf(f, "<a href=\"feature-%d.html\" rel=\"next\">feature %d &rarr;</a>", u + 1, u + 1);
    fputs("</nav>\n", f);
}

/* Examples across the quantiles of the names' highest activation. */
static void quantile_rows(dash *d, int u, FILE *f)
{
    const un_profile *p = &d->feat;
    for (size_t i = 0; i < sizeof quantiles / sizeof quantiles[0]; i++) {
        size_t r = un_quantile_rank(p, u, quantiles[i]);
        if (r < (size_t)d->K) continue;   /* already among the top examples */
        fprintf(f, "<tr><th colspan=\"2\">quantile %.0f%% (%zu of %zu names)</th></tr>\n", 100 * quantiles[i], r + 1,
                un_names(p, u));
        example_rows(d, u, r, r + PER_QUANTILE, f);
    }
}

static void feature_page(dash *d, int u, FILE *f)
{
    const un_profile *p = &d->feat;
    char title[64];
    snprintf(title, sizeof title, "Feature %d", u);
    vw_html_begin(f, title);
    fputs(page_css, f);
    nav(d, u, f);
    fputs("<p>Label: ", f);
    label_html(d, p, u, f);
    fprintf(f, "</p>\n<p class=\"meta\">active on %.3g%% of %zu letters (%zu names); max %.4g; %zu strong letters "
            "(&ge; %.0f%% of the max)</p>\n", 100 * un_density(p, u), p->letters, un_names(p, u), (double)p->max[u],
            p->strong[u], 100 * UN_STRONG);
    if (un_names(p, u) == 0) {
        fputs("<p>Never active on these names.</p>\n", f);
        vw_html_end(f);
        return;
    }
    fputs("<div class=\"cols\"><div><h2>Activations (letters, log scale)</h2>\n", f);
    histogram_svg(p, u, f);
    fputs("</div><div><h2>Letters it pushes</h2>\n", f);
    logits_html(d, u, f);
    fputs("</div><div><h2>Nearest features (decoder cosine)</h2>\n", f);
    nearest_html(d, u, f);
    fputs("</div></div>\n<h2>Examples</h2>\n<table>\n<tr><th>max</th><th>name</th></tr>\n"
          "<tr><th colspan=\"2\">top</th></tr>\n", f);
    example_rows(d, u, 0, (size_t)d->K, f);
    quantile_rows(d, u, f);
    fputs("</table>\n", f);
    vw_html_end(f);
}

/* ---- the index and the tables ------------------------------------------------- */

static void summary_row(const char *kind, const un_summary *s, FILE *f, bool html)
{
    if (html)
        fprintf(f, "<tr><td>%s</td><td class=\"num\">%d</td><td class=\"num\">%d</td><td class=\"num\">%d</td>"
                "<td class=\"num\">%.3f</td><td class=\"num\">%.3f</td><td class=\"num\">%.3f</td></tr>\n", kind,
                s->units, s->labelled, s->precise, s->share_precise, s->median_precision, s->median_f1);
    else
        fprintf(f, "%s\t%d\t%d\t%d\t%.4f\t%.4f\t%.4f\n", kind, s->units, s->labelled, s->precise, s->share_precise,
                s->median_precision, s->median_f1);
}

static void summary_tsv(const dash *d, FILE *f)
{
    fprintf(f, "units\tcount\tlabelled\tprecise\tshare_precise\tmedian_precision\tmedian_f1\n");
    summary_row("features", &d->feat_sum, f, false);
    summary_row("neurons", &d->neur_sum, f, false);
}

static void labels_tsv(const dash *d, FILE *f)
{
    char buf[LABEL_CAP];
    fprintf(f, "unit\tid\tdensity\tmax\tstrong\tlabel\tprecision\trecall\tf1\n");
    for (int k = 0; k < 2; k++) {
        const un_profile *p = k ? &d->neur : &d->feat;
        for (int u = 0; u < p->U; u++)
            fprintf(f, "%s\t%d\t%.6g\t%.6g\t%zu\t%s\t%.4f\t%.4f\t%.4f\n", k ? "neuron" : "feature", u,
                    un_density(p, u), (double)p->max[u], p->strong[u], label_of(d, p, u, buf),
                    p->label[u].precision, p->label[u].recall, p->label[u].f1);
    }
}

/* The table of units of one kind on the index (features linked). */
static void units_table(const dash *d, const un_profile *p, bool features, FILE *f)
{
    fprintf(f, "<table>\n<tr><th>%s</th><th>density</th><th>strong</th><th>label</th></tr>\n",
            features ? "feature" : "neuron");
    for (int u = 0; u < p->U; u++) {
        if (features) fprintf(f, "<tr><td><a href=\"feature-%d.html\">%d</a></td>", u, u);
        else fprintf(f, "<tr><td>%d%s</td>", u, p->sign[u] < 0 ? " (&minus;)" : "");
        fprintf(f, "<td class=\"num\">%.3g%%</td><td class=\"num\">%zu</td><td>", 100 * un_density(p, u), p->strong[u]);
        label_html(d, p, u, f);
        fputs("</td></tr>\n", f);
    }
    fputs("</table>\n", f);
}

static void index_page(const dash *d, FILE *f)
{
    char title[XP_PATH_CAP + 64];
    snprintf(title, sizeof title, "Features of %s", d->c.sae_path);
    vw_html_begin(f, title);
    fprintf(f, "<p class=\"meta\">%d features on layer %d of %s; %zu names of %s, %zu letters.</p>\n", d->F,
            d->c.sae.c.layer, d->c.model_path, d->names.n, d->c.o->data, d->feat.letters);
    fprintf(f, "<h2>Are SAE features more monosemantic than neurons?</h2>\n<p class=\"meta\">A unit's label is the "
            "character context of best F1 on the letters where it fires strongly (&ge; %.0f%% of its maximum; a "
            "neuron centred on its median, signed by its largest deviation). Labelled: units with at least %d such "
            "letters; precise: label precision &ge; %.1f.</p>\n<table>\n<tr><th>units</th><th>count</th><th>labelled"
            "</th><th>precise</th><th>share precise</th><th>median precision</th><th>median F1</th></tr>\n", 100 * UN_STRONG,
            UN_MIN_FIRING, MONO_PRECISION);
    summary_row("SAE features", &d->feat_sum, f, true);
    summary_row("neurons", &d->neur_sum, f, true);
    fputs("</table>\n<p><a href=\"labels.tsv\">labels.tsv</a> &middot; <a href=\"monosemanticity.tsv\">"
          "monosemanticity.tsv</a></p>\n<div class=\"cols\" style=\"display: flex; gap: 3em; flex-wrap: wrap\">"
          "<div><h2>SAE features</h2>\n", f);
    units_table(d, &d->feat, true, f);
    fprintf(f, "</div><div><h2>Neurons (residual stream after layer %d)</h2>\n", d->c.sae.c.layer);
    units_table(d, &d->neur, false, f);
    fputs("</div></div>\n", f);
    vw_html_end(f);
}

/* ---- the run ------------------------------------------------------------------ */

static void compute(dash *d, const xp_options *o)
{
    xp_open_ctx(&d->c, o, true);
    xp_load_names(&d->c, &d->names);
    if (sae_acts_compute(&d->acts, d->c.tf, &d->names, d->c.sae.c.layer)) cli_die("%s: %s", o->data, err_msg());
    if (lb_index_build(&d->ctxs, &d->names, d->acts.row)) cli_die_err();
    if (un_profile_compute(&d->feat, &d->acts, &d->c.sae, &d->ctxs) ||
        un_profile_compute(&d->neur, &d->acts, NULL, &d->ctxs) ||
        un_summarise(&d->feat, MONO_PRECISION, &d->feat_sum) || un_summarise(&d->neur, MONO_PRECISION, &d->neur_sum))
        cli_die_err();
    d->F = d->c.sae.c.n_features;
    d->K = o->top ? o->top : XP_DEFAULT_TOP;
    const int K = NEAREST < d->F - 1 ? NEAREST : d->F - 1;
    d->nearest = malloc(((size_t)d->F * K + 1) * sizeof *d->nearest);
    d->cosine = malloc(((size_t)d->F * K + 1) * sizeof *d->cosine);
    d->buf = malloc(4 * (size_t)d->names.max_len + 1);
    d->letters = malloc(((size_t)d->names.max_len + 1) * sizeof *d->letters);
    if (!d->nearest || !d->cosine || !d->buf || !d->letters) cli_die("out of memory");
    if (ip_cosine_neighbours(d->c.sae.W_dec->data, d->F, d->acts.d, K, d->nearest, d->cosine)) cli_die_err();
}

static void release(dash *d)
{
    free(d->nearest);
    free(d->cosine);
    free(d->buf);
    free(d->letters);
    un_profile_free(&d->feat);
    un_profile_free(&d->neur);
    lb_index_free(&d->ctxs);
    sae_acts_free(&d->acts);
    ds_free(&d->names);
    xp_close_ctx(&d->c);
}

void xp_dashboard(const xp_options *o)
{
    static dash d;   /* large (two weights paths): off the stack */
    char path[XP_PATH_CAP + 64], file[64];
    compute(&d, o);
    make_dir(o->html);
    for (int u = 0; u < d.F; u++) {
        snprintf(file, sizeof file, "feature-%d.html", u);
        FILE *f = open_in(o->html, file, path);
        feature_page(&d, u, f);
        close_in(f, path);
    }
    FILE *f = open_in(o->html, "index.html", path);
    index_page(&d, f);
    close_in(f, path);
    f = open_in(o->html, "labels.tsv", path);
    labels_tsv(&d, f);
    close_in(f, path);
    f = open_in(o->html, "monosemanticity.tsv", path);
    summary_tsv(&d, f);
    close_in(f, path);
    summary_tsv(&d, stdout);
    release(&d);
}
