/* test_states.c - the path of a name's states and the attention weights,
 * against brute force on the fixture Transformer: weights that rebuild the
 * attention block's output through tf_residual, the predictions against
 * tf_forward, norms, cosines, ranks and coordinates. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd.h"
#include "interp.h"
#include "states.h"
#include "test.h"
#include "text.h"
#include "vec.h"

#define TF_FIXTURE TEST_DATA("fixtures/transformer.safetensors")

static const int NAME[] = { 20, 5, 30, 12, 7, 25, 9 };
enum { N = 7, T = N + 1 };

static tf_model *load(ck_file *f)
{
    tf_model *m = malloc(sizeof *m);
    CHECK(ck_read(TF_FIXTURE, f) == ERR_OK);
    CHECK(tf_load(m, f, TF_FIXTURE, false) == ERR_OK);
    return m;
}

static void unload(tf_model *m, ck_file *f)
{
    tf_free(m);
    free(m);
    ck_free(f);
}

/* The residual (T, d) after layer L of <SOS> NAME, copied into out. */
static void residual(const tf_model *m, int L, float *out)
{
    int x[T] = { TOK_SOS };
    memcpy(x + 1, NAME, sizeof NAME);
    ag_tape t;
    CHECK(ag_init(&t, 1 << 16) == ERR_OK);
    t.grad = false;
    tensor *r = tf_residual(m, &t, x, 1, T, L);
    memcpy(out, r->data, (size_t)T * tf_d_model(m) * sizeof *out);
    ag_free(&t);
}

TEST(attention_rows_are_causal_distributions)
{
    ck_file f;
    tf_model *m = load(&f);
    float *w;
    CHECK(st_attention(m, NAME, N, &w) == ERR_OK);
    const int H = tf_n_heads(m), NL = tf_n_layers(m);
    for (int r = 0; r < NL * H * T; r++) {
        const int i = r % T;
        double sum = 0;
        for (int j = 0; j < T; j++) {
            CHECK(j <= i ? w[(size_t)r * T + j] > 0 : w[(size_t)r * T + j] == 0);
            sum += w[(size_t)r * T + j];
        }
        CHECK_NEAR(sum, 1.0, 1e-5);
    }
    free(w);
    unload(m, &f);
}

/* With layer 0's MLP silenced (fc_2 = 0), the residual after layer 1 is
 * x0 + Wo (concat over heads of A_h V_h), V = Wv RMSNorm(x0): the weights
 * must rebuild what the engine's fused attention computed. */
TEST(attention_weights_rebuild_the_block)
{
    ck_file f;
    tf_model *m = load(&f);
    const int d = tf_d_model(m), H = tf_n_heads(m), dh = d / H;
    memset(m->layer[0].fc2->data, 0, (size_t)d * 4 * d * sizeof(float));
    float *w, x0[T * 64], x1[T * 64], v[T * 64], nx[64];
    CHECK(d <= 64);
    CHECK(st_attention(m, NAME, N, &w) == ERR_OK);
    residual(m, 0, x0);
    residual(m, 1, x1);
    for (int p = 0; p < T; p++) {
        vec_rmsnorm(nx, x0 + p * d, m->layer[0].attn_norm->data, d, TF_NORM_EPS);
        for (int o = 0; o < d; o++) {
            double s = 0;
            for (int i = 0; i < d; i++) s += m->layer[0].wv->data[o * d + i] * nx[i];
            v[p * d + o] = (float)s;
        }
    }
    for (int p = 0; p < T; p++) {
        double att[64] = { 0 };
        for (int h = 0; h < H; h++)
            for (int j = 0; j <= p; j++)
                for (int c = 0; c < dh; c++) att[h * dh + c] += w[((size_t)h * T + p) * T + j] * v[j * d + h * dh + c];
        for (int o = 0; o < d; o++) {
            double s = x0[p * d + o];
            for (int i = 0; i < d; i++) s += m->layer[0].wo->data[o * d + i] * att[i];
            CHECK_NEAR(s, x1[p * d + o], 1e-4);
        }
    }
    free(w);
    unload(m, &f);
}

TEST(path_against_brute_force)
{
    ck_file f;
    tf_model *m = load(&f);
    const int d = tf_d_model(m), NL = tf_n_layers(m), V = tf_vocab_size(m);
    st_path s;
    CHECK(st_path_compute(&s, m, NAME, N) == ERR_OK);
    CHECK(s.T == T && s.n_layers == NL && s.next[N] == TOK_EOS && s.in[0] == TOK_SOS && s.in[1] == NAME[0]);
    float h[T * 64], logits[64];
    CHECK(d <= 64 && V <= 64);
    const float *E = tf_embedding(m);
    for (int L = 0; L <= NL; L++) {
        residual(m, L, h);
        for (int p = 0; p < T; p++) {
            const float *x = h + p * d, *e = E + (size_t)s.next[p] * d;
            double xx = 0, ee = 0, xe = 0;
            for (int j = 0; j < d; j++) xx += x[j] * x[j], ee += e[j] * e[j], xe += x[j] * e[j];
            CHECK_NEAR(s.norm[st_at(&s, L, p)], sqrt(xx), 1e-4);
            CHECK_NEAR(s.cos_next[st_at(&s, L, p)], xe / sqrt(xx * ee), 1e-5);
            int rank = 1;   /* tokens closer to x than next, by cosine */
            for (int t = TOK_EOS; t < V; t++) {
                const float *u = E + (size_t)t * d;
                double uu = 0, xu = 0;
                for (int j = 0; j < d; j++) uu += u[j] * u[j], xu += x[j] * u[j];
                rank += xu / sqrt(xx * uu) > xe / sqrt(xx * ee) + 1e-12;
            }
            CHECK(s.rank_next[st_at(&s, L, p)] == rank);
            if (L < NL) continue;
            tf_unembed(m, x, logits);   /* the prediction: the final layer's argmax */
            for (int t = TOK_EOS; t < V; t++) CHECK(logits[t] <= logits[s.pred[p]]);
        }
    }
    double xy[2 * 64];   /* the tokens' coordinates are explore embeddings' */
    CHECK(ip_pca2(E + d, V - 1, d, xy) == ERR_OK);
    for (int t = 1; t < V; t++) {
        CHECK_NEAR(s.tok_xy[2 * t], xy[2 * (t - 1)], 1e-6);
        CHECK_NEAR(s.tok_xy[2 * t + 1], xy[2 * (t - 1) + 1], 1e-6);
    }
    st_path_free(&s);
    CHECK(st_path_compute(&s, m, NAME, tf_max_len(m)) == ERR_ARG);
    unload(m, &f);
}
