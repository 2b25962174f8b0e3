/* test.h - a minimal unit-test harness.  Each tests/unit/test_X.c is its own
 * binary (linked with main.c and libcore.a); TEST() registers a function
 * before main runs, and main prints "N passed, N failed".
 *
 *   TEST(vocab_sorted) { CHECK(v.size == 46); CHECK_NEAR(x, 1.0, 1e-6); }
 */
#ifndef VILLES_TEST_H
#define VILLES_TEST_H

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

void test_register(const char *name, void (*fn)(void));
void test_fail(const char *file, int line, const char *what);
extern int test_checks_failed;

#define TEST(name)                                                              \
    static void name(void);                                                     \
    __attribute__((constructor)) static void register_##name(void)             \
    { test_register(#name, name); }                                             \
    static void name(void)

#define CHECK(cond)                                                             \
    do { if (!(cond)) test_fail(__FILE__, __LINE__, #cond); } while (0)

#define CHECK_NEAR(a, b, tol)                                                   \
    do {                                                                        \
        double a_ = (a), b_ = (b);                                              \
        if (!(fabs(a_ - b_) <= (tol))) {                                        \
            char m_[256];                                                       \
            snprintf(m_, sizeof m_, "%s = %.9g, %s = %.9g, tolerance %g",       \
                     #a, a_, #b, b_, (double)(tol));                            \
            test_fail(__FILE__, __LINE__, m_);                                  \
        }                                                                       \
    } while (0)

/* A path in the test binary's temporary directory (made on first use,
 * removed at exit); valid for the next 15 calls. */
const char *test_path(const char *name);
/* The two files exist and have the same bytes. */
bool test_same_file(const char *a, const char *b);

/* max |a[i] - b[i]|; NaN when a difference is NaN. */
double test_max_abs_diff(const float *a, const float *b, size_t n);

/* A batch of B names in x, y (B * T ints each, the caller's), as
 * ds_batch_fill makes them: row i holds <SOS> then lens[i] - 1 letters
 * drawn from [TOK_FIRST, V) with seed, its targets the letters then
 * <EOS>, <pad> after. */
struct ds_batch;
void test_names_batch(struct ds_batch *b, int *x, int *y, int B, int T, const int *lens, int V,
                      uint64_t seed);

/* Finite differences for parameter e of p, whose gradients hold d loss:
 * the central difference of loss(ctx) along a random direction (normal,
 * from r) at step eps, returned; *analytic receives the directional
 * derivative the gradients give.  p's values are left as they were. */
struct tn_params;
struct rng;
double test_param_fd(struct tn_params *p, int e, double (*loss)(void *ctx), void *ctx, float eps,
                     struct rng *r, double *analytic);

/* Read the checkpoint at path into f with its config damaged ("vocab_size"
 * -> "vXcab_size"), for a kind's loader to refuse; false if unreadable. */
struct ck_file;
bool test_read_damaged_config(const char *path, struct ck_file *f);

/* Path of a test data file under tests/data (tests run from the repo root). */
#define TEST_DATA(f) "tests/data/" f

#endif
