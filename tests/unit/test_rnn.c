/* test_rnn.c - the recurrent LM: config, packing, the fused sequence op
 * against the step-by-step engine ops and finite differences, carried
 * state, generation against the training forward, checkpoints, and parity
 * with the PyTorch reference fixtures. */
#include "test.h"

#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "kinds.h"
#include "ops.h"
#include "rnn.h"

/* ---- helpers ------------------------------------------------------------ */

/* A small model with reference initialisation; the embedding is scaled
 * down so logits stay moderate and finite differences are accurate. */
static void small_model(rnn_model *m, rnn_cell cell, int V, int d, int layers, uint64_t seed)
{
    rnn_config c = RNN_DEFAULTS;
    c.vocab_size = V;
    c.cell = cell;
    c.d_model = d;
    c.n_layers = layers;
    CHECK(rnn_init(m, &c) == ERR_OK);
    rng r;
    rng_seed(&r, seed);
    rnn_init_weights(m, &r);
    for (int i = 0; i < m->emb->n; i++) m->emb->data[i] *= 0.5f;
    for (int l = 0; l < layers; l++)    /* non-zero h0, so its path is exercised */
        for (int j = 0; j < d; j++) m->layer[l].h0->data[j] = 0.3f * rng_normal(&r);
    for (int j = 0; j < d; j++) m->out_norm->data[j] = 1.0f + 0.2f * rng_normal(&r);
}

/* Rows of unequal length, trailing <pad>, like ds_batch_fill makes them. */
enum { TB = 4, TT = 7 };
static const int lens[TB] = { 4, 7, 2, 7 };

static ds_batch test_batch(int V, uint64_t seed)
{
    static int x[TB * TT], y[TB * TT];
    ds_batch b;
    test_names_batch(&b, x, y, TB, TT, lens, V, seed);
    return b;
}

/* The same network built from the engine's step-by-step ops on the padded
 * (B, T) batch: op_concat + op_linear + op_tanh, or op_gru_cell. */
static tensor *reference_logits(const rnn_model *m, ag_tape *t, const ds_batch *b)
{
    int B = b->B, T = b->T, d = m->c.d_model;
    tensor *x = op_embedding(t, m->emb, b->x, B * T, 3, (const int[]){ B, T, d });
    tensor *hs[TT];
    for (int l = 0; l < m->c.n_layers; l++) {
        const rnn_layer *L = &m->layer[l];
        tensor *h = op_broadcast_rows(t, L->h0, B);
        for (int s = 0; s < T; s++) {
            tensor *xs = op_time_slice(t, x, s);
            if (m->c.cell == RNN_CELL_GRU)
                h = op_gru_cell(t, xs, h, L->w[0], L->b[0], L->w[1], L->b[1], L->w[2], L->b[2]);
            else
                h = op_tanh(t, op_linear(t, op_concat(t, xs, h), L->w[0], L->b[0]));
            hs[s] = h;
        }
        x = op_time_stack(t, hs, T);
    }
    x = op_rmsnorm(t, x, m->out_norm, RNN_NORM_EPS);
    return op_linear(t, x, m->emb, NULL);
}

/* Packed row of batch position (b, s), or -1 when s is past the row. */
static int packed_row(const rnn_pack *p, int b, int s)
{
    for (int k = 0; k < p->B; k++)
        if (p->row[k] == b) return s < p->len[k] ? p->off[s] + k : -1;
    return -1;
}

/* ---- config --------------------------------------------------------------- */

TEST(rnn_config_json_roundtrip)
{
    rnn_config c = RNN_DEFAULTS, back;
    c.vocab_size = 46;
    c.dropout = 0.1f;
    char *json = NULL;
    CHECK(rnn_config_to_json(&c, &json) == ERR_OK);
    CHECK(json && strcmp(json, "{\"vocab_size\":46,\"cell\":\"gru\",\"d_model\":256,"
                               "\"n_layers\":1,\"dropout\":0.1}") == 0);
    CHECK(rnn_config_from_json(&back, json) == ERR_OK);
    CHECK(back.vocab_size == 46 && back.cell == RNN_CELL_GRU && back.d_model == 256);
    CHECK(back.n_layers == 1 && back.dropout == c.dropout && !back.text);
    free(json);
    c.text = true;
    c.cell = RNN_CELL_RNN;
    CHECK(rnn_config_to_json(&c, &json) == ERR_OK);
    CHECK(json && strstr(json, "\"cell\":\"rnn\"") && strstr(json, "\"text\":true"));
    CHECK(rnn_config_from_json(&back, json) == ERR_OK && back.text && back.cell == RNN_CELL_RNN);
    CHECK(back.dropout_mode == RNN_DROPOUT_STANDARD && !strstr(json, "dropout_mode"));
    free(json);
    c.dropout_mode = RNN_DROPOUT_VARIATIONAL;
    CHECK(rnn_config_to_json(&c, &json) == ERR_OK);
    CHECK(json && strstr(json, "\"dropout\":0.1,\"dropout_mode\":\"variational\","));
    CHECK(rnn_config_from_json(&back, json) == ERR_OK && back.dropout_mode == RNN_DROPOUT_VARIATIONAL);
    free(json);
    CHECK(rnn_config_from_json(&back, "{\"vocab_size\":46,\"cell\":\"gru\",\"d_model\":8,"
                                      "\"n_layers\":1,\"dropout\":0,\"dropout_mode\":\"standard\"}") == ERR_OK);
    CHECK(back.dropout_mode == RNN_DROPOUT_STANDARD);
}

TEST(rnn_config_rejects_bad_fields)
{
    rnn_config c;
    CHECK(rnn_config_from_json(&c, "[]") == ERR_FORMAT);
    CHECK(rnn_config_from_json(&c, "{\"vocab_size\":46,\"cell\":\"lstm\",\"d_model\":8,"
                                   "\"n_layers\":1,\"dropout\":0}") == ERR_FORMAT);
    CHECK(rnn_config_from_json(&c, "{\"vocab_size\":46,\"cell\":\"gru\",\"d_model\":8.5,"
                                   "\"n_layers\":1,\"dropout\":0}") == ERR_FORMAT);
    CHECK(rnn_config_from_json(&c, "{\"vocab_size\":46,\"cell\":\"gru\",\"d_model\":8,"
                                   "\"n_layers\":0,\"dropout\":0}") == ERR_FORMAT);
    CHECK(rnn_config_from_json(&c, "{\"vocab_size\":46,\"cell\":\"gru\",\"d_model\":8,"
                                   "\"n_layers\":1}") == ERR_FORMAT);
    CHECK(rnn_config_from_json(&c, "{\"vocab_size\":46,\"cell\":\"gru\",\"d_model\":8,"
                                   "\"n_layers\":1,\"dropout\":1}") == ERR_FORMAT);
    CHECK(rnn_config_from_json(&c, "{\"vocab_size\":46,\"cell\":\"gru\",\"d_model\":8,"
                                   "\"n_layers\":1,\"dropout\":0,\"dropout_mode\":\"locked\"}") == ERR_FORMAT);
    CHECK(rnn_config_from_json(&c, "{\"vocab_size\":46,\"cell\":\"gru\",\"d_model\":8,"
                                   "\"n_layers\":1,\"dropout\":0,\"dropout_mode\":1}") == ERR_FORMAT);
    CHECK(rnn_cell_parse("gru") == RNN_CELL_GRU && rnn_cell_parse("rnn") == RNN_CELL_RNN);
    CHECK(rnn_cell_parse("bogus") == -1 && rnn_cell_parse(NULL) == -1);
}

/* ---- packing ---------------------------------------------------------------- */

TEST(rnn_pack_sorts_longest_first)
{
    ag_tape t;
    CHECK(ag_init(&t, 1 << 16) == ERR_OK);
    ds_batch b = test_batch(10, 1);
    rnn_pack *p = rnn_pack_batch(&t, b.x, b.y, b.B, b.T);
    CHECK(p->T == 7 && p->N == 4 + 7 + 2 + 7);
    /* lengths 4 7 2 7 -> ranks: rows 1, 3 (7, ties in row order), 0 (4), 2 (2) */
    CHECK(p->row[0] == 1 && p->row[1] == 3 && p->row[2] == 0 && p->row[3] == 2);
    CHECK(p->n[0] == 4 && p->n[1] == 4 && p->n[2] == 3 && p->n[4] == 2 && p->n[6] == 2);
    CHECK(p->off[7] == p->N);
    for (int i = 0; i < TB; i++)
        for (int s = 0; s < lens[i]; s++) {
            int r = packed_row(p, i, s);
            CHECK(r >= 0 && p->x[r] == b.x[i * TT + s] && p->y[r] == b.y[i * TT + s]);
        }
    ag_free(&t);
}

/* ---- the fused op against the engine's step-by-step ops ------------------- */

/* scale > 1 multiplies the cell matrices, driving tanh and sigmoid into
 * saturation (where a poor approximation would show). */
static void check_against_engine_ops(rnn_cell cell, float scale)
{
    enum { V = 11, D = 6, LAYERS = 2 };
    rnn_model m;
    small_model(&m, cell, V, D, LAYERS, 3);
    for (int l = 0; l < LAYERS; l++)
        for (int g = 0; g < rnn_n_gates(cell); g++)
            for (int i = 0; i < m.layer[l].w[g]->n; i++) m.layer[l].w[g]->data[i] *= scale;
    ds_batch b = test_batch(V, 2);
    ag_tape t;
    CHECK(ag_init(&t, 1 << 20) == ERR_OK);

    tensor *ref = reference_logits(&m, &t, &b);
    tensor *ref_loss = op_cross_entropy(&t, ref, b.y, TOK_PAD);
    CHECK(ref_loss != NULL);
    tn_params_zero_grad(&m.p);
    ag_backward(&t, ref_loss);
    float *ref_grad = malloc(m.p.n * sizeof *ref_grad);
    memcpy(ref_grad, m.p.grad, m.p.n * sizeof *ref_grad);
    float loss0 = ref_loss->data[0];
    float *ref_logits = malloc((size_t)ref->n * sizeof *ref_logits);
    memcpy(ref_logits, ref->data, (size_t)ref->n * sizeof *ref_logits);

    ag_reset(&t);
    tn_params_zero_grad(&m.p);
    rnn_pack *p = rnn_pack_batch(&t, b.x, b.y, b.B, b.T);
    tensor *logits = rnn_forward(&m, &t, p, NULL, NULL);
    tensor *loss = op_cross_entropy(&t, logits, p->y, TOK_PAD);
    CHECK(loss != NULL);
    ag_backward(&t, loss);
    CHECK_NEAR(loss->data[0], loss0, 1e-6);
    double worst = 0;
    for (int i = 0; i < TB; i++)
        for (int s = 0; s < lens[i]; s++) {
            double dd = test_max_abs_diff(logits->data + (size_t)packed_row(p, i, s) * V,
                                     ref_logits + ((size_t)i * TT + s) * V, V);
            if (!(dd <= worst)) worst = dd;
        }
    CHECK_NEAR(worst, 0, 1e-5);
    for (int e = 0; e < m.p.count; e++) {
        const tn_param_entry *pe = &m.p.e[e];
        const float *ref_g = ref_grad + pe->offset;
        double dd = test_max_abs_diff(m.p.grad + pe->offset, ref_g, (size_t)pe->t.n), big = 1;
        for (int i = 0; i < pe->t.n; i++) big = fmax(big, fabs(ref_g[i]));
        if (!(dd <= 1e-5 * big)) fprintf(stderr, "  %s: grad differs by %g (largest %g)\n", pe->name, dd, big);
        CHECK(dd <= 1e-5 * big);   /* relative to the largest entry, when above 1 */
    }
    free(ref_grad);
    free(ref_logits);
    ag_free(&t);
    rnn_free(&m);
}

TEST(rnn_fused_matches_engine_ops_rnn) { check_against_engine_ops(RNN_CELL_RNN, 1.0f); }
TEST(rnn_fused_matches_engine_ops_gru) { check_against_engine_ops(RNN_CELL_GRU, 1.0f); }
TEST(rnn_fused_matches_engine_ops_saturated) {
    check_against_engine_ops(RNN_CELL_RNN, 20.0f);
    check_against_engine_ops(RNN_CELL_GRU, 20.0f);
}

/* ---- finite differences ------------------------------------------------------ */

/* The seed of a training tape's rng, drawn anew before every pass so that
 * dropout draws the same masks in each. */
enum { DROP_SEED = 21 };

typedef struct fd_ctx { rnn_model *m; ag_tape *t; const ds_batch *b; const float *h_in; } fd_ctx;

static double loss_of(void *ctx)
{
    fd_ctx *c = ctx;
    ag_reset(c->t);
    if (c->t->rng) rng_seed(c->t->rng, DROP_SEED);
    c->t->grad = false;
    tensor *l = rnn_loss_state(c->m, c->t, c->b, c->h_in, NULL);
    c->t->grad = true;
    return l ? l->data[0] : NAN;
}

/* For every parameter tensor, the directional derivative along a random
 * direction against the central difference of the loss; with variational
 * dropout, a training pass whose masks are the same in every evaluation. */
static void check_finite_differences(rnn_cell cell, bool carried, bool variational)
{
    enum { V = 9, D = 5, LAYERS = 2 };
    rnn_model m;
    small_model(&m, cell, V, D, LAYERS, 7);
    ds_batch b = test_batch(V, 5);
    float h_in[LAYERS * TB * D];
    rng r, drop;
    rng_seed(&r, 11);
    for (int i = 0; i < LAYERS * TB * D; i++) h_in[i] = 0.5f * rng_normal(&r);
    const float *state = carried ? h_in : NULL;
    ag_tape t;
    CHECK(ag_init(&t, 1 << 20) == ERR_OK);
    if (variational) {
        m.c.dropout = 0.4f;
        m.c.dropout_mode = RNN_DROPOUT_VARIATIONAL;
        t.training = true;
        t.rng = &drop;
        rng_seed(&drop, DROP_SEED);
    }
    tn_params_zero_grad(&m.p);
    tensor *loss = rnn_loss_state(&m, &t, &b, state, NULL);
    CHECK(loss != NULL);
    ag_backward(&t, loss);

    /* dropout's 1/(1-p) makes the states larger and the loss more curved */
    const float eps = variational ? 3e-3f : 1e-2f;
    fd_ctx ctx = { &m, &t, &b, state };
    for (int e = 0; e < m.p.count; e++) {
        const char *name = m.p.e[e].name;
        double analytic, numeric = test_param_fd(&m.p, e, loss_of, &ctx, eps, &r, &analytic);
        double tol = 2e-4 + 1e-2 * fabs(numeric);
        if (!(fabs(numeric - analytic) <= tol))
            fprintf(stderr, "  %s: numeric %.6g analytic %.6g\n", name, numeric, analytic);
        CHECK(fabs(numeric - analytic) <= tol);
        if (carried && strstr(name, ".h0")) CHECK(analytic == 0.0);   /* state is a constant */
    }
    ag_free(&t);
    rnn_free(&m);
}

TEST(rnn_gradients_finite_differences_rnn) { check_finite_differences(RNN_CELL_RNN, false, false); }
TEST(rnn_gradients_finite_differences_gru) { check_finite_differences(RNN_CELL_GRU, false, false); }
TEST(rnn_gradients_finite_differences_carried) { check_finite_differences(RNN_CELL_GRU, true, false); }
TEST(rnn_gradients_finite_differences_variational_rnn) { check_finite_differences(RNN_CELL_RNN, false, true); }
TEST(rnn_gradients_finite_differences_variational_gru) { check_finite_differences(RNN_CELL_GRU, true, true); }

/* Variational dropout: every "mask" node (each layer's input, the top
 * output) holds one mask per sequence, the same at each of its steps, and
 * different sequences get different masks; standard dropout's masks vary
 * along a sequence. */
static int masks_constant_per_sequence(rnn_dropout_mode mode)
{
    enum { V = 9, D = 16, LAYERS = 2 };
    rnn_model m;
    small_model(&m, RNN_CELL_GRU, V, D, LAYERS, 3);
    m.c.dropout = 0.5f;
    m.c.dropout_mode = mode;
    ds_batch b = test_batch(V, 5);
    ag_tape t;
    CHECK(ag_init(&t, 1 << 20) == ERR_OK);
    rng r;
    rng_seed(&r, 4);
    t.training = true;
    t.rng = &r;
    rnn_pack *p = rnn_pack_batch(&t, b.x, b.y, b.B, b.T);
    CHECK(rnn_forward(&m, &t, p, NULL, NULL) != NULL);
    int masks = 0, constant = 0, distinct = 0;
    for (int i = 0; i < t.n_nodes; i++) {
        const char *op = t.nodes[i].op;
        if (strcmp(op, "mask") && strcmp(op, "dropout")) continue;
        const float *mask = t.nodes[i].saved;
        masks++;
        bool same = true;
        for (int row = 0; row < TB; row++)
            for (int s = 1; s < lens[row]; s++)
                same &= !memcmp(mask + (size_t)packed_row(p, row, s) * D,
                                mask + (size_t)packed_row(p, row, 0) * D, D * sizeof *mask);
        constant += same;
        distinct += memcmp(mask + (size_t)packed_row(p, 0, 0) * D, mask + (size_t)packed_row(p, 1, 0) * D,
                           D * sizeof *mask) != 0;
    }
    CHECK(masks == LAYERS + 1 && distinct == masks);
    ag_free(&t);
    rnn_free(&m);
    return constant;
}

TEST(rnn_variational_masks_per_sequence)
{
    CHECK(masks_constant_per_sequence(RNN_DROPOUT_VARIATIONAL) == 3);
    CHECK(masks_constant_per_sequence(RNN_DROPOUT_STANDARD) == 0);
}

/* ---- carried state -------------------------------------------------------------- */

/* Two windows with the state carried give the logits of one long window. */
static void check_carried_state(rnn_cell cell)
{
    enum { V = 9, D = 6, LAYERS = 2, B = 3, W = 5 };
    rnn_model m;
    small_model(&m, cell, V, D, LAYERS, 9);
    int x[B * 2 * W], y[B * 2 * W], xa[B * W], ya[B * W], xb[B * W], yb[B * W];
    rng r;
    rng_seed(&r, 4);
    for (int i = 0; i < B * 2 * W; i++) {
        x[i] = TOK_FIRST + (int)rng_below(&r, V - TOK_FIRST);
        y[i] = TOK_FIRST + (int)rng_below(&r, V - TOK_FIRST);
    }
    for (int i = 0; i < B; i++) {
        memcpy(xa + i * W, x + i * 2 * W, W * sizeof *x);
        memcpy(ya + i * W, y + i * 2 * W, W * sizeof *y);
        memcpy(xb + i * W, x + i * 2 * W + W, W * sizeof *x);
        memcpy(yb + i * W, y + i * 2 * W + W, W * sizeof *y);
    }
    ag_tape t;
    CHECK(ag_init(&t, 1 << 20) == ERR_OK);
    t.grad = false;
    rnn_pack *p = rnn_pack_batch(&t, x, y, B, 2 * W);
    float h_end[LAYERS * B * D], state[LAYERS * B * D];
    tensor *whole = rnn_forward(&m, &t, p, NULL, h_end);
    rnn_pack *pa = rnn_pack_batch(&t, xa, ya, B, W), *pb = rnn_pack_batch(&t, xb, yb, B, W);
    tensor *first = rnn_forward(&m, &t, pa, NULL, state);
    tensor *second = rnn_forward(&m, &t, pb, state, state);   /* in and out alias */
    CHECK(whole && first && second);
    /* all rows have the same length: packed rows are time-major, rank = row */
    CHECK_NEAR(test_max_abs_diff(whole->data, first->data, (size_t)B * W * V), 0, 1e-6);
    CHECK_NEAR(test_max_abs_diff(whole->data + (size_t)B * W * V, second->data, (size_t)B * W * V), 0, 1e-5);
    CHECK_NEAR(test_max_abs_diff(h_end, state, LAYERS * B * D), 0, 1e-6);
    ag_free(&t);
    rnn_free(&m);
}

TEST(rnn_carried_state_rnn) { check_carried_state(RNN_CELL_RNN); }
TEST(rnn_carried_state_gru) { check_carried_state(RNN_CELL_GRU); }

/* ---- generation ------------------------------------------------------------------ */

/* next() at every position gives the logits of the batched forward. */
static void check_next_matches_forward(rnn_cell cell)
{
    enum { V = 13, D = 8, LAYERS = 2 };
    rnn_model m;
    small_model(&m, cell, V, D, LAYERS, 21);
    ds_batch b = test_batch(V, 8);
    ag_tape t;
    CHECK(ag_init(&t, 1 << 20) == ERR_OK);
    t.grad = false;
    rnn_pack *p = rnn_pack_batch(&t, b.x, b.y, b.B, b.T);
    tensor *logits = rnn_forward(&m, &t, p, NULL, NULL);
    CHECK(logits != NULL);
    rnn_state *s = rnn_state_new(&m);
    CHECK(s != NULL);
    float out[V];
    double worst = 0;
    for (int i = 0; i < TB; i++) {
        rnn_state_start(s);
        for (int k = 0; k < lens[i]; k++) {
            rnn_state_next(s, b.x[i * TT + k], out);
            double dd = test_max_abs_diff(out, logits->data + (size_t)packed_row(p, i, k) * V, V);
            if (!(dd <= worst)) worst = dd;
        }
    }
    CHECK_NEAR(worst, 0, 1e-4);
    rnn_state_free(s);
    ag_free(&t);
    rnn_free(&m);
}

TEST(rnn_next_matches_forward_rnn) { check_next_matches_forward(RNN_CELL_RNN); }
TEST(rnn_next_matches_forward_gru) { check_next_matches_forward(RNN_CELL_GRU); }

/* A NaN weight gives a NaN loss and NaN logits (the trainer stops on a NaN
 * loss): the cell's tanh and sigmoid must not turn NaN into a finite value. */
static void check_nan_propagates(rnn_cell cell)
{
    enum { V = 9, D = 5 };
    rnn_model m;
    small_model(&m, cell, V, D, 1, 13);
    for (int g = 0; g < rnn_n_gates(cell); g++) m.layer[0].w[g]->data[D + 1] = NAN;   /* Wh */
    ds_batch b = test_batch(V, 3);
    ag_tape t;
    CHECK(ag_init(&t, 1 << 20) == ERR_OK);
    tensor *loss = rnn_loss(&m, &t, &b);
    CHECK(loss != NULL && isnan(loss->data[0]));
    rnn_state *s = rnn_state_new(&m);
    CHECK(s != NULL);
    float out[V];
    rnn_state_next(s, TOK_SOS, out);
    rnn_state_next(s, TOK_FIRST, out);   /* the NaN reaches h through the state */
    CHECK(isnan(out[TOK_FIRST]));
    rnn_state_free(s);
    ag_free(&t);
    rnn_free(&m);
}

TEST(rnn_nan_propagates_rnn) { check_nan_propagates(RNN_CELL_RNN); }
TEST(rnn_nan_propagates_gru) { check_nan_propagates(RNN_CELL_GRU); }

/* ---- checkpoints and the model registry --------------------------------------- */

TEST(rnn_checkpoint_roundtrip_through_registry)
{
    enum { D = 6 };
    const char *path = "build/tests/test_rnn.safetensors";
    rnn_model m;
    txt_vocab v = { 0 };
    int32_t cps[] = { 'a', 'b', 'c', 'd', 'e' };
    CHECK(txt_vocab_build(&v, cps, 5) == ERR_OK);
    small_model(&m, RNN_CELL_GRU, v.size, D, 2, 5);
    CHECK(rnn_save(&m, &v, path) == ERR_OK);

    mdl g;
    CHECK(mdl_load(&g, path) == ERR_OK);
    CHECK(g.kind == &rnn_kind && mdl_vocab_size(&g) == v.size && mdl_max_len(&g) == 0);
    const rnn_model *back = g.impl;
    CHECK(back->p.n == m.p.n && memcmp(back->p.data, m.p.data, m.p.n * sizeof(float)) == 0);
    /* the loaded model generates the same logits */
    mdl_state gs;
    rnn_state *s = rnn_state_new(&m);
    CHECK(mdl_state_new(&gs, &g) == ERR_OK && s);
    float a[16], bb[16];
    mdl_start(&gs);
    rnn_state_start(s);
    int toks[] = { TOK_SOS, 4, 5, 6 };
    for (int k = 0; k < 4; k++) {
        mdl_next(&gs, toks[k], a);
        rnn_state_next(s, toks[k], bb);
        CHECK(memcmp(a, bb, (size_t)v.size * sizeof *a) == 0);
    }
    rnn_state_free(s);
    mdl_state_free(&gs);
    mdl_free(&g);

    /* a damaged config is a one-line error, not a crash */
    ck_file f;
    CHECK(test_read_damaged_config(path, &f));
    rnn_model bad;
    CHECK(rnn_load(&bad, &f, path, false) == ERR_FORMAT);
    ck_free(&f);
    remove(path);
    rnn_free(&m);
    txt_vocab_free(&v);
}

/* ---- parity with the PyTorch reference ------------------------------------------ */

static void check_fixture(const char *path)
{
    ck_file f;
    CHECK(ck_read(path, &f) == ERR_OK);
    rnn_model m;
    CHECK(rnn_load(&m, &f, path, false) == ERR_OK);
    const ck_tensor *fx = ck_get(&f, "fixture.x"), *fy = ck_get(&f, "fixture.y");
    const ck_tensor *fl = ck_get(&f, "fixture.logits"), *floss = ck_get(&f, "fixture.loss");
    bool ok = fx && fy && fl && floss && fx->dtype == CK_I32 && fx->ndim == 2 &&
              fy->numel == fx->numel && fl->numel == fx->numel * (size_t)m.c.vocab_size;
    CHECK(ok);
    if (!ok) {
        rnn_free(&m);
        ck_free(&f);
        return;
    }
    int B = (int)fx->shape[0], T = (int)fx->shape[1], V = m.c.vocab_size;
    const int *x = fx->data, *y = fy->data;
    const float *want = fl->data;

    ag_tape t;
    CHECK(ag_init(&t, 1 << 20) == ERR_OK);
    const ck_tensor *seed = ck_get(&f, "fixture.seed");   /* a training pass */
    rng drop;
    if (seed) {
        rng_seed(&drop, (uint64_t)((const int *)seed->data)[0]);
        t.training = true;
        t.rng = &drop;
    }
    tn_params_zero_grad(&m.p);
    rnn_pack *p = rnn_pack_batch(&t, x, y, B, T);
    tensor *logits = rnn_forward(&m, &t, p, NULL, NULL);
    tensor *loss = op_cross_entropy(&t, logits, p->y, TOK_PAD);
    CHECK(loss != NULL);
    ag_backward(&t, loss);
    CHECK_NEAR(loss->data[0], ((const float *)floss->data)[0], 1e-5);
    /* logits at every position up to each row's last target (the padding
     * after it is never computed: nothing reads it) */
    double worst = 0;
    int compared = 0;
    for (int b = 0; b < B; b++)
        for (int s = 0; s < T; s++) {
            int r = packed_row(p, b, s);
            if (r < 0) continue;
            double dd = test_max_abs_diff(logits->data + (size_t)r * V, want + ((size_t)b * T + s) * V, V);
            if (!(dd <= worst)) worst = dd;
            compared++;
        }
    CHECK(compared == p->N && compared > 0);
    CHECK_NEAR(worst, 0, 1e-4);
    for (int e = 0; e < m.p.count; e++) {
        const tn_param_entry *pe = &m.p.e[e];
        char name[TN_NAME_MAX + 16];
        snprintf(name, sizeof name, "fixture.grad.%s", pe->name);
        const ck_tensor *g = ck_get(&f, name);
        CHECK(g && g->numel == (size_t)pe->t.n);
        if (!g || g->numel != (size_t)pe->t.n) continue;
        double dd = test_max_abs_diff(m.p.grad + pe->offset, g->data, g->numel);
        if (!(dd <= 1e-4)) fprintf(stderr, "  %s: %s differs by %g\n", path, name, dd);
        CHECK(dd <= 1e-4);
    }
    ag_free(&t);
    rnn_free(&m);
    ck_free(&f);
}

TEST(rnn_parity_pytorch_rnn) { check_fixture(TEST_DATA("fixtures/rnn.safetensors")); }
TEST(rnn_parity_pytorch_gru) { check_fixture(TEST_DATA("fixtures/gru.safetensors")); }
TEST(rnn_parity_pytorch_gru_variational)
{
    check_fixture(TEST_DATA("fixtures/gru_variational.safetensors"));
}
