/* test_autograd.c - the tape: arena alignment, growth and consolidation,
 * no allocation once warm, inference mode, node order and growth, the dump
 * of a graph and the naming of the first op with a non-finite output. */
#include "autograd.h"
#include "ops.h"
#include "test.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool aligned64(const void *p) { return ((uintptr_t)p & 63) == 0; }

TEST(arena_alignment_and_zeroed_grads)
{
    ag_tape t;
    CHECK(ag_init(&t, 1000) == ERR_OK);
    CHECK(t.grad && !t.training);
    for (int i = 1; i < 50; i += 7) CHECK(aligned64(ag_alloc(&t, (size_t)i)));
    tensor *x = ag_tensor2(&t, 3, 5);
    CHECK(x && x->n == 15 && x->ndim == 2 && tn_rows(x) == 3 && tn_cols(x) == 5);
    CHECK(aligned64(x->data) && aligned64(x->grad) && x->grad_lazy);
    float *g = ag_grad(x);
    CHECK(g == x->grad && !x->grad_lazy && ag_grad(NULL) == NULL);
    int zeros = 0;
    for (int i = 0; i < 15; i++) zeros += g[i] == 0.0f;
    CHECK(zeros == 15);
    int ids[4] = { 4, 3, 2, 1 };
    int *copy = ag_ints(&t, ids, 4);
    CHECK(copy != ids && memcmp(copy, ids, sizeof ids) == 0);
    CHECK(ag_tensor(&t, 5, (const int[]){ 1, 1, 1, 1, 1 }) == NULL);
    CHECK(ag_tensor(&t, 1, (const int[]){ -2 }) == NULL);
    CHECK(ag_tensor(&t, 2, (const int[]){ 3, 0 }) == NULL);   /* tn_rows would divide by 0 */
    tensor *empty = ag_tensor(&t, 2, (const int[]){ 0, 4 });
    CHECK(empty && empty->n == 0 && tn_rows(empty) == 0);
    ag_free(&t);
}

/* ag_grad_fill hands an unset grad over without zeroing it, once. */
TEST(grad_fill_is_fresh_once)
{
    ag_tape t;
    CHECK(ag_init(&t, 0) == ERR_OK);
    tensor *x = ag_tensor2(&t, 2, 3);
    bool fresh = false;
    float *g = ag_grad_fill(x, &fresh);
    CHECK(g == x->grad && fresh && !x->grad_lazy);
    for (int i = 0; i < x->n; i++) g[i] = (float)i;
    CHECK(ag_grad_fill(x, &fresh) == g && !fresh);
    CHECK(ag_grad(x) == g && g[5] == 5.0f);   /* not zeroed again */
    CHECK(ag_grad_fill(NULL, &fresh) == NULL && !fresh);
    float w[2] = { 1, 2 };
    CHECK(ag_grad_fill(ag_wrap(&t, w, 1, (const int[]){ 2 }), &fresh) == NULL && !fresh);
    ag_free(&t);
}

TEST(arena_grows_then_consolidates)
{
    ag_tape t;
    CHECK(ag_init(&t, 4096) == ERR_OK);
    size_t total = 0;
    for (int i = 0; i < 100; i++) {
        float *p = ag_alloc(&t, 40000);
        memset(p, 1, 40000);   /* every piece is writable (ASan checks) */
        total += 40000;
    }
    CHECK(t.n_blocks > 1);
    ag_reset(&t);
    CHECK(t.n_blocks == 1 && t.blocks[0].used == 0 && t.blocks[0].cap >= total);
    ag_free(&t);
}

/* One training-like step: a small MLP's forward and backward. */
static void step(ag_tape *t, tensor *E, tensor *W)
{
    static const int tok[8] = { 1, 2, 3, 0, 4, 4, 2, 1 };
    tensor *x = op_embedding(t, E, tok, 8, 3, (const int[]){ 2, 4, 6 });
    tensor *h = op_tanh(t, op_linear(t, x, W, NULL));
    tensor *loss = op_cross_entropy(t, op_linear(t, h, E, NULL), tok, 0);
    ag_backward(t, loss);
}

/* A parameter store of E (V, d) and W (d, d), drawn from normal(0, 0.5). */
static void small_params(tn_params *p, int V, int d, uint64_t seed, tensor **E, tensor **W)
{
    tn_params_init(p);
    *E = tn_param(p, "E", true, 2, (const int[]){ V, d });
    *W = tn_param(p, "W", true, 2, (const int[]){ d, d });
    CHECK(tn_params_alloc(p) == ERR_OK);
    rng r;
    rng_seed(&r, seed);
    tn_fill_normal(*E, &r, 0.0f, 0.5f);
    tn_fill_normal(*W, &r, 0.0f, 0.5f);
}

TEST(arena_no_new_block_after_warm_up)
{
    tn_params p;
    tensor *E, *W;
    small_params(&p, 5, 6, 3, &E, &W);
    ag_tape t;
    CHECK(ag_init(&t, 0) == ERR_OK);   /* far too small: the first step grows it */
    for (int i = 0; i < 30; i++) step(&t, E, W);
    CHECK(t.n_blocks > 1);
    ag_reset(&t);
    const char *mem = t.blocks[0].mem;
    size_t cap = t.blocks[0].cap;
    int cap_nodes = t.cap_nodes;
    for (int s = 0; s < 3; s++) {
        for (int i = 0; i < 30; i++) step(&t, E, W);
        CHECK(t.n_blocks == 1 && t.blocks[0].mem == mem && t.blocks[0].cap == cap);
        CHECK(t.cap_nodes == cap_nodes);
        ag_reset(&t);
    }
    ag_free(&t);
    tn_params_free(&p);
}

static int order[16], n_order;
static void mark_backward(ag_node *n) { order[n_order++] = n->iarg[0]; }

TEST(backward_runs_nodes_in_reverse_and_seeds_one)
{
    ag_tape t;
    CHECK(ag_init(&t, 0) == ERR_OK);
    tensor *loss = ag_tensor(&t, 1, (const int[]){ 1 });
    for (int i = 0; i < 5; i++) {
        ag_node *n = ag_record(&t, "mark", mark_backward, loss);
        CHECK(n != NULL);
        if (n) n->iarg[0] = i;
    }
    n_order = 0;
    ag_backward(&t, loss);
    CHECK(loss->grad[0] == 1.0f);
    CHECK(n_order == 5 && order[0] == 4 && order[4] == 0);
    ag_free(&t);
}

TEST(node_list_doubles_and_is_kept)
{
    ag_tape t;
    CHECK(ag_init(&t, 0) == ERR_OK);
    tensor *x = ag_tensor2(&t, 1, 1);
    int first = t.cap_nodes;
    for (int i = 0; i < 3 * first; i++) CHECK(ag_record(&t, "mark", mark_backward, x) != NULL);
    CHECK(t.n_nodes == 3 * first && t.cap_nodes >= 3 * first);
    int cap = t.cap_nodes;
    ag_reset(&t);
    CHECK(t.n_nodes == 0 && t.cap_nodes == cap);
    ag_free(&t);
}

TEST(inference_mode_allocates_no_grads)
{
    ag_tape t;
    CHECK(ag_init(&t, 0) == ERR_OK);
    t.grad = false;
    tensor *x = ag_tensor2(&t, 4, 4);
    CHECK(x && x->grad == NULL);
    CHECK(ag_record(&t, "mark", mark_backward, x) == NULL && t.n_nodes == 0);
    CHECK(!ag_needs_grad(&t, x, NULL));
    float w[2] = { 1, 2 };
    tensor *wt = ag_wrap(&t, w, 1, (const int[]){ 2 });
    CHECK(wt && wt->data == w && wt->grad == NULL && wt->n == 2);
    ag_free(&t);
}

/* ---- explaining the tape: ag_dump, ag_first_nonfinite ------------------ */

static const int dump_tokens[6] = { 1, 4, 2, 2, 0, 3 };

/* The fields of one TSV line, split in place (at most 8). */
static int split_tabs(char *line, char **field)
{
    int n = 0;
    for (char *save = NULL, *f = strtok_r(line, "\t", &save); f && n < 8; f = strtok_r(NULL, "\t", &save))
        field[n++] = f;
    return n;
}

/* embedding -> linear (a bias without a grad) -> tanh -> linear, plus the
 * tanh's output -> logits by the embedding -> cross-entropy, then a tanh of
 * a view into the embedding's output: every line names its op, its shape
 * and its inputs. */
TEST(dump_lists_nodes_in_order)
{
    tn_params p;
    tensor *E, *W;
    small_params(&p, 5, 4, 11, &E, &W);
    ag_tape t;
    CHECK(ag_init(&t, 0) == ERR_OK);
    float bias[4] = { 0.1f, -0.2f, 0.3f, 0.5f };
    tensor *b = ag_wrap(&t, bias, 1, (const int[]){ 4 });
    tensor *x = op_embedding(&t, E, dump_tokens, 6, 3, (const int[]){ 2, 3, 4 });
    tensor *h = op_tanh(&t, op_linear(&t, x, W, b));
    tensor *logits = op_linear(&t, op_add(&t, op_linear(&t, h, W, NULL), h), E, NULL);
    tensor *loss = op_cross_entropy(&t, logits, dump_tokens, 0);
    tensor row = *x;   /* a view of x's second row, as the Transformer makes them */
    row.data += 4;
    row.grad += 4;
    row.ndim = 1;
    row.n = row.shape[0] = 4;
    CHECK(loss && op_tanh(&t, &row) && t.n_nodes == 8);

    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    ag_dump(&t, f);
    fclose(f);
    enum { LINES = 9 };   /* the header, then 8 nodes */
    static const char *const want[LINES][4] = {
        { "node", "op", "shape", "inputs" },
        { "0", "embedding", "2x3x4", "param" },
        { "1", "linear", "2x3x4", "0,param,leaf" },
        { "2", "tanh", "2x3x4", "1" },
        { "3", "linear", "2x3x4", "2,param" },
        { "4", "add", "2x3x4", "3,2" },
        { "5", "linear", "2x3x5", "4,param" },
        { "6", "cross_entropy", "1", "5" },
        { "7", "tanh", "4", "view:0" },
    };
    int lines = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save), lines++) {
        char *field[8];
        int n = split_tabs(line, field);
        CHECK(n == 8 && lines < LINES);
        if (n != 8 || lines >= LINES) break;
        for (int k = 0; k < 4; k++) CHECK(strcmp(field[k], want[lines][k]) == 0);
        if (lines == 7) {   /* a scalar: min = max = mean = the loss, all finite */
            CHECK_NEAR(strtod(field[4], NULL), loss->data[0], 1e-5);
            CHECK(strcmp(field[4], field[6]) == 0 && strcmp(field[7], "0") == 0);
        }
    }
    CHECK(lines == LINES);
    free(text);
    ag_free(&t);
    tn_params_free(&p);
}

/* E all ones, W all 3e38: the products overflow in the first linear (node
 * 1, Inf); rmsnorm then turns the Inf into NaN, but the first is kept. */
TEST(nonfinite_names_the_first_op)
{
    tn_params p;
    tn_params_init(&p);
    tensor *E = tn_param(&p, "E", true, 2, (const int[]){ 5, 4 });
    tensor *W = tn_param(&p, "W", true, 2, (const int[]){ 4, 4 });
    tensor *w = tn_param(&p, "w", false, 1, (const int[]){ 4 });
    CHECK(tn_params_alloc(&p) == ERR_OK);
    tn_fill(E, 1.0f);
    tn_fill(W, 3e38f);
    tn_fill(w, 1.0f);
    ag_tape t;
    CHECK(ag_init(&t, 0) == ERR_OK);
    t.check_finite = true;
    tensor *x = op_embedding(&t, E, dump_tokens, 6, 0, NULL);
    CHECK(ag_first_nonfinite(&t) == NULL);
    tensor *z = op_rmsnorm(&t, op_linear(&t, x, W, NULL), w, 1e-5f);
    CHECK(z && isnan(z->data[0]));
    CHECK(op_cross_entropy(&t, z, (const int[]){ 1, 3, 2, 2, 0, 3 }, 0) != NULL);
    const char *what = ag_first_nonfinite(&t);
    CHECK(what && strcmp(what, "op 'linear' (node 1, output 6x4) produced Inf (24 of 24 values)") == 0);
    ag_reset(&t);
    CHECK(ag_first_nonfinite(&t) == what);   /* kept across resets */
    ag_free(&t);
    tn_params_free(&p);
}

/* sqrt of a negative in inference mode: rmsnorm with eps -1 on zero rows.
 * No node is recorded, the op is named anyway; with the switch off
 * nothing is looked at. */
TEST(nonfinite_in_inference_and_off)
{
    for (int on = 0; on < 2; on++) {
        ag_tape t;
        CHECK(ag_init(&t, 0) == ERR_OK);
        t.grad = false;
        t.check_finite = on;
        float zeros[8] = { 0 }, ones[4] = { 1, 1, 1, 1 };
        tensor *x = ag_wrap(&t, zeros, 2, (const int[]){ 2, 4 });
        tensor *w = ag_wrap(&t, ones, 1, (const int[]){ 4 });
        tensor *y = op_rmsnorm(&t, op_tanh(&t, x), w, -1.0f);
        CHECK(y && isnan(y->data[0]) && t.n_nodes == 0);
        const char *what = ag_first_nonfinite(&t);
        if (on) CHECK(what && strcmp(what, "op 'rmsnorm' (output 2x4) produced NaN (8 of 8 values)") == 0);
        else CHECK(what == NULL);
        ag_free(&t);
    }
}
