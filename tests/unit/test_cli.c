/* test_cli.c - flag parsing, files and colours of the CLI helpers. */
#include "test.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"

/* Run fn in a child with stderr captured into err (cap bytes); returns
 * the child's exit status (fn's return value when it does not exit). */
static int in_child(int (*fn)(const char *), const char *arg, char *err, size_t cap)
{
    int fd[2];
    if (pipe(fd)) return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd[1], STDERR_FILENO);
        close(fd[0]);
        cli_init("prog", NULL);
        _exit(fn(arg));
    }
    close(fd[1]);
    size_t n = 0;
    ssize_t got;
    while (n + 1 < cap && (got = read(fd[0], err + n, cap - 1 - n)) > 0) n += (size_t)got;
    err[n] = 0;
    close(fd[0]);
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int long_0_10(const char *s) { return cli_long("-n", s, 0, 10) == 7 ? 0 : 3; }
static int dbl_0_1(const char *s) { return cli_double("--top-p", s, 0, 1) == 0.5 ? 0 : 3; }
static int u64(const char *s) { return cli_u64("--seed", s) == 42 ? 0 : 3; }
static int choice(const char *s)
{
    static const char *const words[] = { "none", "addk", "kn", NULL };
    return cli_choice("--smoothing", s, words) == 2 ? 0 : 3;
}
static int die(const char *s) { cli_die("cannot do %s", s); }

TEST(cli_flag_values_accept_whole_numbers_in_range)
{
    char err[512];
    CHECK(in_child(long_0_10, "7", err, sizeof err) == 0 && !*err);
    CHECK(in_child(dbl_0_1, "0.5", err, sizeof err) == 0);
    CHECK(in_child(u64, "42", err, sizeof err) == 0);
    CHECK(in_child(choice, "kn", err, sizeof err) == 0);
    const struct { int (*fn)(const char *); const char *arg; } bad[] = {
        { long_0_10, "11" }, { long_0_10, "-1" }, { long_0_10, "abc" }, { long_0_10, "7x" },
        { long_0_10, "" }, { long_0_10, "99999999999999999999" }, { dbl_0_1, "2" },
        { dbl_0_1, "nan" }, { dbl_0_1, "inf" }, { dbl_0_1, "0.5.1" }, { u64, "-1" },
        { u64, "x" }, { choice, "kneser" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = in_child(bad[i].fn, bad[i].arg, err, sizeof err);
        CHECK(rc == EXIT_USAGE);
        /* One line naming the value, then the "Try" line. */
        CHECK(strncmp(err, "prog: invalid value '", 21) == 0);
        CHECK(strstr(err, "\nTry 'prog --help' for more information.\n") != NULL);
    }
    CHECK(in_child(die, "that", err, sizeof err) == 1);
    CHECK(strcmp(err, "prog: cannot do that\n") == 0);
}

TEST(cli_close_reports_a_full_disk)
{
    FILE *f = fopen("/dev/full", "w");
    if (!f) return;   /* not on this system */
    fputs("some names\n", f);
    CHECK(cli_close(f, "/dev/full") == ERR_IO);
    CHECK(strstr(err_msg(), "/dev/full") != NULL);
}

TEST(cli_open_names_the_file_and_maps_dash)
{
    CHECK(cli_open_read("-") == stdin);
    CHECK(cli_open_write("-") == stdout);
    CHECK(cli_open_read("/nonexistent/names.txt") == NULL);
    CHECK(strstr(err_msg(), "/nonexistent/names.txt") != NULL);
    CHECK(cli_open_write("/nonexistent/dir/out.tsv") == NULL);
    char path[] = "/tmp/villes-test-cli-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    FILE *f = cli_open_write(path);
    CHECK(f && fputs("x\n", f) >= 0);
    CHECK(cli_close(f, path) == ERR_OK);
    remove(path);
}

TEST(cli_colour_only_when_allowed)
{
    FILE *f = tmpfile();
    CHECK(cli_use_color(CLI_COLOR_ALWAYS, f));
    CHECK(!cli_use_color(CLI_COLOR_NEVER, f));
    CHECK(!cli_use_color(CLI_COLOR_AUTO, f));   /* a file is not a terminal */
    setenv("NO_COLOR", "1", 1);
    CHECK(cli_use_color(CLI_COLOR_ALWAYS, f));  /* an explicit flag wins */
    unsetenv("NO_COLOR");
    fclose(f);
}

TEST(cli_now_is_monotonic)
{
    double a = cli_now(), b = cli_now();
    CHECK(a > 0 && b >= a);
}
