/* test_tensor.c - the parameter store: declaration, one aligned
 * allocation, stable pointers, fills, save/load through a checkpoint. */
#include "tensor.h"
#include "test.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A store with three parameters of odd sizes. */
static void declare(tn_params *p, tensor **a, tensor **b, tensor **c)
{
    tn_params_init(p);
    *a = tn_param(p, "embedding.weight", true, 2, (const int[]){ 7, 3 });
    *b = tn_param(p, "out_norm.weight", false, 1, (const int[]){ 5 });
    *c = tn_param(p, "core.layers.0.cell.fc.weight", true, 3, (const int[]){ 2, 3, 4 });
}

TEST(params_declare_and_alloc)
{
    tn_params p;
    tensor *a, *b, *c;
    declare(&p, &a, &b, &c);
    CHECK(a && b && c && p.count == 3);
    CHECK(a->n == 21 && b->n == 5 && c->n == 24 && c->ndim == 3 && c->shape[2] == 4);
    CHECK(p.n >= 50 && p.n % 16 == 0);
    CHECK(tn_params_alloc(&p) == ERR_OK);
    CHECK(((uintptr_t)p.data & 63) == 0 && ((uintptr_t)p.grad & 63) == 0);
    CHECK(((uintptr_t)p.m & 63) == 0 && ((uintptr_t)p.v & 63) == 0);
    /* the pointers returned before the allocation now point into it */
    CHECK(a->data == p.data + p.e[0].offset && c->grad == p.grad + p.e[2].offset);
    CHECK(((uintptr_t)b->data & 63) == 0 && ((uintptr_t)c->data & 63) == 0);
    CHECK(b->data >= a->data + a->n && c->data >= b->data + b->n);
    CHECK(tn_params_find(&p, "out_norm.weight") == b && tn_params_find(&p, "nope") == NULL);
    double sum = 0.0;
    for (size_t i = 0; i < 4 * p.n; i++) sum += fabs(p.data[i]);
    CHECK(sum == 0.0);
    tn_fill(b, 1.0f);
    CHECK(b->data[0] == 1.0f && b->data[4] == 1.0f && a->data[20] == 0.0f && c->data[0] == 0.0f);
    rng r;
    rng_seed(&r, 1);
    tn_fill_normal(a, &r, 0.0f, 0.02f);
    double s2 = 0.0;
    for (int i = 0; i < a->n; i++) s2 += (double)a->data[i] * a->data[i];
    CHECK(s2 > 0.0 && sqrt(s2 / a->n) < 0.1);
    for (int i = 0; i < c->n; i++) c->grad[i] = 3.0f;
    tn_params_zero_grad(&p);
    CHECK(c->grad[0] == 0.0f && c->grad[23] == 0.0f);
    tn_params_free(&p);
    CHECK(p.data == NULL && p.count == 0);
}

TEST(params_reject_bad_declarations)
{
    tn_params p;
    tn_params_init(&p);
    CHECK(tn_param(&p, "x", true, 0, (const int[]){ 1 }) == NULL);
    CHECK(tn_param(&p, "x", true, 5, (const int[]){ 1, 1, 1, 1, 1 }) == NULL);
    CHECK(tn_param(&p, "x", true, 2, (const int[]){ 3, 0 }) == NULL);
    CHECK(tn_param(&p, "x", true, 1, (const int[]){ 3 }) != NULL);
    CHECK(tn_param(&p, "x", true, 1, (const int[]){ 3 }) == NULL);   /* duplicate */
    char long_name[200];
    memset(long_name, 'a', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    CHECK(tn_param(&p, long_name, true, 1, (const int[]){ 3 }) == NULL);
    CHECK(tn_params_alloc(&p) == ERR_OK);
    CHECK(tn_param(&p, "late", true, 1, (const int[]){ 3 }) == NULL);
    tn_params_free(&p);
}

static void fill_all(tn_params *p, float base)
{
    for (size_t i = 0; i < p->n; i++) {
        p->data[i] = base + (float)i;
        p->m[i] = base - (float)i;
        p->v[i] = base * 0.5f + (float)i;
    }
}

TEST(params_save_load_round_trip)
{
    char path[] = "/tmp/villes-test-tensor-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) return;
    close(fd);

    tn_params p, q;
    tensor *a, *b, *c;
    declare(&p, &a, &b, &c);
    CHECK(tn_params_alloc(&p) == ERR_OK);
    fill_all(&p, 10.0f);
    ck_writer *w = ck_writer_new();
    CHECK(w && tn_params_save(&p, w, true) == ERR_OK);
    CHECK(ck_put_meta(w, "format", CK_FORMAT) == ERR_OK);
    CHECK(ck_write(w, path) == ERR_OK);
    ck_writer_free(w);

    ck_file f;
    CHECK(ck_read(path, &f) == ERR_OK);
    CHECK(f.n == 9 && ck_get(&f, "optim.m.out_norm.weight") && ck_get(&f, "optim.v.embedding.weight"));
    declare(&q, &a, &b, &c);
    CHECK(tn_params_alloc(&q) == ERR_OK);
    CHECK(tn_params_load(&q, &f, true) == ERR_OK);
    bool same = true;
    for (int i = 0; i < p.count; i++) {
        size_t o = p.e[i].offset, n = (size_t)p.e[i].t.n * sizeof(float);
        same = same && !memcmp(p.data + o, q.data + o, n) && !memcmp(p.m + o, q.m + o, n) &&
               !memcmp(p.v + o, q.v + o, n);
    }
    CHECK(same);
    tn_params_free(&q);

    /* a shape mismatch is ERR_FORMAT naming the tensor, and loads nothing */
    tn_params_init(&q);
    a = tn_param(&q, "embedding.weight", true, 2, (const int[]){ 7, 3 });
    b = tn_param(&q, "out_norm.weight", false, 1, (const int[]){ 6 });
    CHECK(tn_params_alloc(&q) == ERR_OK);
    CHECK(tn_params_load(&q, &f, false) == ERR_FORMAT);
    CHECK(strstr(err_msg(), "out_norm.weight") != NULL);
    CHECK(a->data[0] == 0.0f);
    tn_params_free(&q);

    /* a missing tensor too */
    tn_params_init(&q);
    tn_param(&q, "embedding.weight", true, 2, (const int[]){ 7, 3 });
    tn_param(&q, "absent", true, 1, (const int[]){ 2 });
    CHECK(tn_params_alloc(&q) == ERR_OK);
    CHECK(tn_params_load(&q, &f, false) == ERR_FORMAT);
    CHECK(strstr(err_msg(), "absent") != NULL);
    tn_params_free(&q);
    ck_free(&f);

    /* without optim, no moments are written or needed */
    w = ck_writer_new();
    CHECK(tn_params_save(&p, w, false) == ERR_OK && ck_write(w, path) == ERR_OK);
    ck_writer_free(w);
    CHECK(ck_read(path, &f) == ERR_OK);
    CHECK(f.n == 3);
    declare(&q, &a, &b, &c);
    CHECK(tn_params_alloc(&q) == ERR_OK);
    CHECK(tn_params_load(&q, &f, false) == ERR_OK && c->data[5] == p.e[2].t.data[5]);
    CHECK(tn_params_load(&q, &f, true) == ERR_FORMAT);
    ck_free(&f);
    tn_params_free(&q);
    tn_params_free(&p);
    unlink(path);
}
