/* main.c - runs the tests registered by TEST() in one test binary. */
#include "test.h"

#include <stdio.h>
#include <string.h>

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
