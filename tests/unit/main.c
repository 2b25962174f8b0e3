/* main.c - runs the tests registered by TEST() in one test binary. */
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "dataset.h"
#include "rng.h"
#include "tensor.h"
#include "text.h"

enum { MAX_TESTS = 512 };
struct test { const char *name; void (*fn)(void); };
static struct test tests[MAX_TESTS];
static int n_tests;
int test_checks_failed;

void test_register(const char *name, void (*fn)(void))
{
    if (n_tests < MAX_TESTS) tests[n_tests++] = (struct test){ name, fn };
}

void test_fail(const char *file, int line, const char *what)
{
    test_checks_failed++;
    fprintf(stderr, "  %s:%d: check failed: %s\n", file, line, what);
}

/* The binary's temporary directory, made on first use, removed at exit. */
static char tmp_dir[128];

static void remove_tmp_dir(void)
{
    char cmd[192];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
    (void)!system(cmd);
}

const char *test_path(const char *name)
{
    static char buf[16][256];
    static int k;
    if (!tmp_dir[0]) {
        const char *base = getenv("TMPDIR");
        snprintf(tmp_dir, sizeof tmp_dir, "%s/villes-unit.XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp(tmp_dir)) {
            fprintf(stderr, "cannot make a temporary directory in %s\n", base ? base : "/tmp");
            exit(1);
        }
        atexit(remove_tmp_dir);
    }
    k = (k + 1) % 16;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmp_dir, name);
    return buf[k];
}

bool test_same_file(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    bool same = fa && fb;
    while (same) {
        int ca = fgetc(fa), cb = fgetc(fb);
        if (ca != cb) same = false;
        if (ca == EOF || cb == EOF) break;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return same;
}

double test_max_abs_diff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double dd = fabs((double)a[i] - (double)b[i]);
        if (!(dd <= m)) m = dd;   /* NaN propagates */
    }
    return m;
}

void test_names_batch(ds_batch *b, int *x, int *y, int B, int T, const int *lens, int V,
                      uint64_t seed)
{
    rng r;
    rng_seed(&r, seed);
    *b = (ds_batch){ .B = B, .T = T, .x = x, .y = y };
    memset(x, 0, (size_t)B * T * sizeof *x);
    memset(y, 0, (size_t)B * T * sizeof *y);
    for (int i = 0; i < B; i++) {
        x[i * T] = TOK_SOS;
        for (int s = 0; s < lens[i]; s++) {
            int c = s + 1 < lens[i] ? TOK_FIRST + (int)rng_below(&r, (uint32_t)(V - TOK_FIRST)) : TOK_EOS;
            y[i * T + s] = c;
            if (s + 1 < lens[i]) x[i * T + s + 1] = c;
        }
        b->n_tokens += (size_t)lens[i];
    }
}

double test_param_fd(tn_params *p, int e, double (*loss)(void *ctx), void *ctx, float eps, rng *r,
                     double *analytic)
{
    tn_param_entry *pe = &p->e[e];
    float *w = p->data + pe->offset, *g = p->grad + pe->offset;
    float *dir = malloc((size_t)pe->t.n * sizeof *dir), *w0 = malloc((size_t)pe->t.n * sizeof *w0);
    if (!dir || !w0) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    *analytic = 0;
    for (int i = 0; i < pe->t.n; i++) {
        dir[i] = rng_normal(r);
        *analytic += (double)g[i] * dir[i];
        w0[i] = w[i];
    }
    for (int i = 0; i < pe->t.n; i++) w[i] = w0[i] + eps * dir[i];
    double up = loss(ctx);
    for (int i = 0; i < pe->t.n; i++) w[i] = w0[i] - eps * dir[i];
    double down = loss(ctx);
    memcpy(w, w0, (size_t)pe->t.n * sizeof *w);
    free(dir);
    free(w0);
    return (up - down) / (2.0 * eps);
}

bool test_read_damaged_config(const char *path, ck_file *f)
{
    if (ck_read(path, f) != ERR_OK) return false;
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->key[i], "config") == 0) f->val[i][2] = 'X';
    return true;
}

int main(int argc, char **argv)
{
    int passed = 0, failed = 0;
    for (int i = 0; i < n_tests; i++) {
        if (argc > 1 && !strstr(tests[i].name, argv[1])) continue;
        int before = test_checks_failed;
        tests[i].fn();
        if (test_checks_failed == before) {
            passed++;
        } else {
            failed++;
            fprintf(stderr, "FAIL %s\n", tests[i].name);
        }
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
