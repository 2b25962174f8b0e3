/* paths.c - explore path and explore attention: one name through the
 * Transformer (states.h), as TSV, a text view, an SVG picture of the path
 * of the states over the letter embeddings, and shaded attention grids. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "explore.h"
#include "states.h"
#include "text.h"
#include "xpctx.h"

enum { SVG_W = 900, SVG_H = 640, SVG_MARGIN = 30 };

/* The NAME operand, never empty; --pos, when given, one of its positions. */
static int *name_operand(const xp_ctx *c, int *n)
{
    if (!c->o->name[0]) cli_die("empty NAME: give at least one letter");
    int *tok = xp_parse_name(c, n);
    if (c->o->pos > *n) {
        free(tok);
        cli_die("--pos %d out of range: '%s' has positions 0 to %d", c->o->pos, c->o->name, *n);
    }
    return tok;
}

/* Positions drawn and printed: --pos's, else all. */
static bool shown(const xp_options *o, int p) { return o->pos < 0 || o->pos == p; }

/* ---- path: TSV and text ------------------------------------------------------ */

static void path_tsv(const xp_ctx *c, const st_path *s)
{
    char in[8], next[8], pred[8];
    printf("layer\tposition\tinput\tnext\tpredicted\tnorm\tcos_next\tcos_input\tcos_predicted\t"
           "rank_predicted\trank_next\temb_x\temb_y\tdir_x\tdir_y\tstate_x\tstate_y\n");
    for (int L = 0; L <= s->n_layers; L++)
        for (int p = 0; p < s->T; p++) {
            if (!shown(c->o, p)) continue;
            size_t a = st_at(s, L, p);
            printf("%d\t%d\t%s\t%s\t%s\t%.6g\t%.6f\t%.6f\t%.6f\t%d\t%d\t%.6g\t%.6g\t%.6g\t%.6g\t%.6g\t%.6g\n", L, p,
                   xp_tok_str(c, s->in[p], in), xp_tok_str(c, s->next[p], next), xp_tok_str(c, s->pred[p], pred),
                   s->norm[a], s->cos_next[a], s->cos_in[a], s->cos_pred[a], s->rank_pred[a], s->rank_next[a],
                   s->emb_xy[2 * a], s->emb_xy[2 * a + 1], s->dir_xy[2 * a], s->dir_xy[2 * a + 1],
                   s->state_xy[2 * a], s->state_xy[2 * a + 1]);
        }
}

static void path_text(const xp_ctx *c, const st_path *s)
{
    char in[8], next[8], pred[8];
    printf("states of '%s', layer by layer: cosine to the embedding of the next token, of the input,\n"
           "of the predicted token, and the predicted token's rank by cosine among %d tokens\n\n",
           c->o->name, s->V - TOK_EOS);
    for (int p = 0; p < s->T; p++) {
        if (!shown(c->o, p)) continue;
        printf("position %d: input %s, next %s, predicted %s\n", p, vw_visible(xp_tok_str(c, s->in[p], in)),
               vw_visible(xp_tok_str(c, s->next[p], next)), vw_visible(xp_tok_str(c, s->pred[p], pred)));
        printf("  layer %8s %8s %8s %8s %5s\n", "norm", "cos_next", "cos_in", "cos_pred", "rank");
        for (int L = 0; L <= s->n_layers; L++) {
            size_t a = st_at(s, L, p);
            printf("  %5d %8.3f %+8.3f %+8.3f %+8.3f %5d\n", L, s->norm[a], s->cos_next[a], s->cos_in[a],
                   s->cos_pred[a], s->rank_pred[a]);
        }
    }
}

/* ---- path: the picture ------------------------------------------------------- */

/* The frame of the picture: data bounds and their map to pixels. */
typedef struct frame { double lo[2], hi[2]; } frame;

static void frame_add(frame *f, const double *xy)
{
    for (int k = 0; k < 2; k++) {
        f->lo[k] = fmin(f->lo[k], xy[k]);
        f->hi[k] = fmax(f->hi[k], xy[k]);
    }
}

static double px(const frame *f, const double *xy, int k)
{
    const double span = f->hi[k] - f->lo[k], t = span > 0 ? (xy[k] - f->lo[k]) / span : 0.5;
    return k == 0 ? SVG_MARGIN + t * (SVG_W - 2 * SVG_MARGIN) : SVG_H - SVG_MARGIN - t * (SVG_H - 2 * SVG_MARGIN);
}

/* A layer's colour: from blue (embeddings) to red (last layer). */
static void layer_colour(int L, int NL, char out[32])
{
    const double t = NL > 0 ? (double)L / NL : 1;
    snprintf(out, 32, "rgb(%d,%d,%d)", (int)(40 + 200 * t), 80, (int)(220 - 180 * t));
}

static void svg_tokens(const xp_ctx *c, const st_path *s, const frame *fr, FILE *f)
{
    char tok[8];
    for (int v = TOK_SOS; v < s->V; v++) {
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" class=\"tok\">", px(fr, s->tok_xy + 2 * v, 0), px(fr, s->tok_xy + 2 * v, 1));
        vw_html_text(f, vw_visible(xp_tok_str(c, v, tok)));
        fputs("</text>\n", f);
    }
}

/* Position p's states, layer 0 .. n_layers, joined; each dot titled. */
static void svg_position(const xp_ctx *c, const st_path *s, const frame *fr, int p, FILE *f)
{
    char in[8], colour[32];
    fputs("<polyline class=\"path\" points=\"", f);
    for (int L = 0; L <= s->n_layers; L++) {
        const double *xy = s->dir_xy + 2 * st_at(s, L, p);
        fprintf(f, "%.1f,%.1f ", px(fr, xy, 0), px(fr, xy, 1));
    }
    fputs("\"/>\n", f);
    for (int L = 0; L <= s->n_layers; L++) {
        const size_t a = st_at(s, L, p);
        layer_colour(L, s->n_layers, colour);
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"%s\"><title>position %d (", px(fr, s->dir_xy + 2 * a, 0),
                px(fr, s->dir_xy + 2 * a, 1), colour, p);
        vw_html_text(f, xp_tok_str(c, s->in[p], in));
        fprintf(f, "), layer %d: norm %.3g, rank of the prediction %d</title></circle>\n", L, s->norm[a], s->rank_pred[a]);
    }
    const double *last = s->dir_xy + 2 * st_at(s, s->n_layers, p);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" class=\"pos\">%d</text>\n", px(fr, last, 0) + 5, px(fr, last, 1) - 5, p);
}

/* The SVG: the letters at their embeddings' coordinates, and the path of
 * the states shown over them (all on the embeddings' two principal axes). */
static void path_svg(const xp_ctx *c, const st_path *s, FILE *f)
{
    frame fr = { { INFINITY, INFINITY }, { -INFINITY, -INFINITY } };
    for (int v = TOK_SOS; v < s->V; v++) frame_add(&fr, s->tok_xy + 2 * v);
    for (int L = 0; L <= s->n_layers; L++)
        for (int p = 0; p < s->T; p++)
            if (shown(c->o, p)) frame_add(&fr, s->dir_xy + 2 * st_at(s, L, p));
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\">\n"
            "<style>.tok { font: 14px monospace; fill: #999; text-anchor: middle; }\n"
            ".path { fill: none; stroke: #555; stroke-width: 1.2; }\n"
            ".pos { font: bold 12px sans-serif; fill: #222; }</style>\n"
            "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", SVG_W, SVG_H, SVG_W, SVG_H);
    svg_tokens(c, s, &fr, f);
    for (int p = 0; p < s->T; p++)
        if (shown(c->o, p)) svg_position(c, s, &fr, p, f);
    fputs("</svg>\n", f);
}

static void path_html(const xp_ctx *c, const st_path *s, FILE *f)
{
    char title[512], colour[32];
    snprintf(title, sizeof title, "Path of the states of %s", c->o->name);
    vw_html_begin(f, title);
    fputs("<p class=\"meta\">The direction of each position's residual state after each layer (the state scaled "
          "to the mean norm of the embeddings), on the first two principal axes of the token embeddings (grey "
          "letters); the number is the position (0 = &lt;SOS&gt;), colours run from ", f);
    for (int L = 0; L <= s->n_layers; L++) {
        layer_colour(L, s->n_layers, colour);
        fprintf(f, "<span style=\"color: %s\">&#9679; layer %d</span> ", colour, L);
    }
    fputs("</p>\n", f);
    path_svg(c, s, f);
    vw_html_end(f);
}

void xp_path(const xp_options *o)
{
    xp_ctx c;
    xp_open_ctx(&c, o, false);
    int n;
    int *name = name_operand(&c, &n);
    st_path s;
    if (st_path_compute(&s, c.tf, name, n)) cli_die("'%s': %s", o->name, err_msg());
    if (o->html || o->svg) {
        FILE *f = cli_open_write(o->html ? o->html : o->svg);
        if (!f) cli_die_err();
        if (o->html) path_html(&c, &s, f);
        else path_svg(&c, &s, f);
        if (cli_close(f, o->html ? o->html : o->svg)) cli_die_err();
    } else if (o->format == VW_TSV) {
        path_tsv(&c, &s);
    } else {
        path_text(&c, &s);
    }
    st_path_free(&s);
    free(name);
    xp_close_ctx(&c);
}

/* ---- attention -------------------------------------------------------------- */

/* Token at position p of <SOS> name. */
static const char *at_pos(const xp_ctx *c, const int *name, int p, char buf[8])
{
    return xp_tok_str(c, p ? name[p - 1] : TOK_SOS, buf);
}

static void attn_tsv(const xp_ctx *c, const float *w, const int *name, int NL, int H, int T)
{
    char q[8], k[8];
    printf("layer\thead\tquery\tquery_token\tkey\tkey_token\tweight\n");
    for (int L = 0; L < NL; L++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < T; i++)
                for (int j = 0; j <= i; j++)
                    printf("%d\t%d\t%d\t%s\t%d\t%s\t%.6f\n", L + 1, h, i, at_pos(c, name, i, q), j,
                           at_pos(c, name, j, k), (double)w[(((size_t)L * H + h) * T + i) * T + j]);
}

/* One head's grid: a row per query, a cell per key, shaded by the weight. */
static void attn_grid_text(const xp_ctx *c, const float *g, const int *name, int T)
{
    char tok[8], cell[16];
    for (int i = 0; i < T; i++) {
        printf("  ");
        vw_cell(stdout, at_pos(c, name, i, tok), 6, 0, c->color);
        for (int j = 0; j <= i; j++) {
            snprintf(cell, sizeof cell, "%3.0f", 100 * g[(size_t)i * T + j]);
            putchar(' ');
            vw_heat(stdout, cell, g[(size_t)i * T + j], c->color);
        }
        putchar('\n');
    }
    printf("  %6s", "");   /* the keys (one character each; <SOS> as ^), right-aligned */
    for (int j = 0; j < T; j++) printf("   %s", j ? vw_visible(at_pos(c, name, j, tok)) : "^");
    putchar('\n');
}

static void attn_text(const xp_ctx *c, const float *w, const int *name, int NL, int H, int T)
{
    printf("attention of '%s' (percent; a row per query position, a column per key)\n", c->o->name);
    for (int L = 0; L < NL; L++)
        for (int h = 0; h < H; h++) {
            printf("\nlayer %d, head %d\n", L + 1, h);
            attn_grid_text(c, w + ((size_t)L * H + h) * T * T, name, T);
        }
}

static void attn_grid_html(const xp_ctx *c, const float *g, const int *name, int T, int L, int h, FILE *f)
{
    char tok[8], tip[96], q[8];
    fprintf(f, "<table class=\"grid\"><caption>layer %d, head %d</caption>\n<tr><th></th>", L, h);
    for (int j = 0; j < T; j++) {
        fputs("<th>", f);
        vw_html_text(f, at_pos(c, name, j, tok));
        fputs("</th>", f);
    }
    fputs("</tr>\n", f);
    for (int i = 0; i < T; i++) {
        fputs("<tr><th>", f);
        vw_html_text(f, at_pos(c, name, i, q));
        fputs("</th>", f);
        for (int j = 0; j < T; j++) {
            fputs("<td>", f);
            if (j <= i) {
                snprintf(tip, sizeof tip, "%d (%s) -> %d (%s): %.3f", i, q, j, at_pos(c, name, j, tok),
                         (double)g[(size_t)i * T + j]);
                vw_html_heat(f, " ", g[(size_t)i * T + j], tip);
            }
            fputs("</td>", f);
        }
        fputs("</tr>\n", f);
    }
    fputs("</table>\n", f);
}

static void attn_html(const xp_ctx *c, const float *w, const int *name, int NL, int H, int T, FILE *f)
{
    char title[512];
    snprintf(title, sizeof title, "Attention of %s", c->o->name);
    vw_html_begin(f, title);
    fputs("<style>.grid { display: inline-table; margin: 0 1.2em 1.2em 0; font-family: monospace; }\n"
          ".grid td, .grid th { padding: 0; width: 1.3em; height: 1.3em; text-align: center; }\n"
          ".grid td span { display: block; width: 100%; height: 100%; }</style>\n"
          "<p class=\"meta\">A grid per head: a row per query position (the letter just read), a column per key "
          "position it attends to, shaded by the attention weight (hover for the value).</p>\n", f);
    for (int L = 0; L < NL; L++) {
        fprintf(f, "<h2>layer %d</h2>\n<div>\n", L + 1);
        for (int h = 0; h < H; h++) attn_grid_html(c, w + ((size_t)L * H + h) * T * T, name, T, L + 1, h, f);
        fputs("</div>\n", f);
    }
    vw_html_end(f);
}

void xp_attention(const xp_options *o)
{
    xp_ctx c;
    xp_open_ctx(&c, o, false);
    int n;
    int *name = name_operand(&c, &n);
    float *w;
    if (st_attention(c.tf, name, n, &w)) cli_die("'%s': %s", o->name, err_msg());
    const int NL = tf_n_layers(c.tf), H = tf_n_heads(c.tf), T = n + 1;
    if (o->html) {
        FILE *f = xp_open_html(o);
        attn_html(&c, w, name, NL, H, T, f);
        xp_close_html(f, o);
    } else if (o->format == VW_TSV) {
        attn_tsv(&c, w, name, NL, H, T);
    } else {
        attn_text(&c, w, name, NL, H, T);
    }
    free(w);
    free(name);
    xp_close_ctx(&c);
}
