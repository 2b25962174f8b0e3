/* cli.c - helpers shared by the programs; see cli.h.
 *
 * Every message starts with the program name given to cli_init, so that
 * what the user reads does not depend on how the program was invoked.
 */
#include "cli.h"
#include "prov.h"

#include <cblas.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *prog_name = "villes";

void cli_init(const char *prog, char **argv)
{
    if (prog) prog_name = prog;
    if (argv && argv[0] && prog) argv[0] = (char *)prog;   /* getopt names argv[0] in its messages */
    if (prv_start(prog_name, VILLES_VERSION, argv)) cli_die_err();
    /* Past a file-size limit (ulimit -f) a write fails with EFBIG, which the
     * writers report in one line and clean up after, instead of the signal
     * killing the program with a temporary file left behind. */
    signal(SIGXFSZ, SIG_IGN);
}

const char *cli_prog(void) { return prog_name; }

static void print_msg(const char *fmt, va_list ap)
{
    fflush(stdout);   /* keep stdout and stderr in order on a shared terminal */
    fprintf(stderr, "%s: ", prog_name);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

static _Noreturn void try_help(void)
{
    fprintf(stderr, "Try '%s --help' for more information.\n", prog_name);
    exit(EXIT_USAGE);
}

void cli_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    print_msg(fmt, ap);
    va_end(ap);
    try_help();
}

void cli_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    print_msg(fmt, ap);
    va_end(ap);
    exit(EXIT_FAILURE);
}

void cli_die_err(void)
{
    const char *m = err_msg();
    cli_die("%s", *m ? m : "unknown error");
}

void cli_version(void)
{
    printf("%s %s\n", prog_name, VILLES_VERSION);
    exit(fflush(stdout) == 0 && !ferror(stdout) ? EXIT_SUCCESS : EXIT_FAILURE);
}

void cli_bad_flag(void) { try_help(); }

/* ---- flag values ---- */

long cli_long(const char *flag, const char *s, long min, long max)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < min || v > max) {
        if (max == LONG_MAX)
            cli_usage("invalid value '%s' for %s (expected an integer >= %ld)", s, flag, min);
        cli_usage("invalid value '%s' for %s (expected an integer from %ld to %ld)", s, flag,
                  min, max);
    }
    return v;
}

uint64_t cli_u64(const char *flag, const char *s)
{
    char *end;
    errno = 0;
    /* strtoull accepts "-1" and wraps it: refuse any sign explicitly. */
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || *end || errno || strchr(s, '-') || strchr(s, '+'))
        cli_usage("invalid value '%s' for %s (expected an integer from 0 to %llu)", s, flag,
                  (unsigned long long)UINT64_MAX);
    return (uint64_t)v;
}

double cli_double(const char *flag, const char *s, double min, double max)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !isfinite(v) || v < min || v > max)
        cli_usage("invalid value '%s' for %s (expected a number from %g to %g)", s, flag, min,
                  max);
    return v;
}

int cli_choice(const char *flag, const char *s, const char *const *words)
{
    for (int i = 0; words[i]; i++)
        if (strcmp(s, words[i]) == 0) return i;
    char list[256] = "";
    for (int i = 0; words[i]; i++) {
        size_t used = strlen(list);
        snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", words[i]);
    }
    cli_usage("invalid value '%s' for %s (expected one of: %s)", s, flag, list);
}

/* ---- colour and progress ---- */

cli_color cli_color_flag(const char *s)
{
    static const char *const words[] = { "auto", "always", "never", NULL };
    static const cli_color modes[] = { CLI_COLOR_AUTO, CLI_COLOR_ALWAYS, CLI_COLOR_NEVER };
    return modes[cli_choice("--color", s, words)];
}

bool cli_use_color(cli_color mode, FILE *stream)
{
    if (mode != CLI_COLOR_AUTO) return mode == CLI_COLOR_ALWAYS;
    const char *no_color = getenv("NO_COLOR");
    const char *term = getenv("TERM");
    if (no_color && *no_color) return false;
    if (term && strcmp(term, "dumb") == 0) return false;
    return stream && isatty(fileno(stream));
}

bool cli_progress_enabled(void) { return isatty(STDERR_FILENO); }

/* ---- files ---- */

static const char *display_name(FILE *f, const char *path)
{
    if (f == stdout) return "standard output";
    if (f == stdin) return "standard input";
    return path ? path : "?";
}

FILE *cli_open_write(const char *path)
{
    if (!path) {
        err_set(ERR_ARG, "cli_open_write: NULL path");
        return NULL;
    }
    if (strcmp(path, "-") == 0) return stdout;
    FILE *f = fopen(path, "w");
    if (!f) err_set(ERR_IO, "cannot open '%s' for writing: %s", path, strerror(errno));
    return f;
}

FILE *cli_open_read(const char *path)
{
    if (!path) {
        err_set(ERR_ARG, "cli_open_read: NULL path");
        return NULL;
    }
    if (strcmp(path, "-") == 0) return stdin;
    FILE *f = fopen(path, "r");
    if (!f) err_set(ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    return f;
}

err_code cli_close(FILE *f, const char *path)
{
    if (!f) return ERR_OK;
    const char *name = display_name(f, path);
    /* A full disk shows up at the flush, not at the fprintf: flush first and
     * look at both the stream's error flag and the result of closing. */
    errno = 0;
    bool failed = fflush(f) != 0;
    failed |= ferror(f) != 0;
    int saved = errno;
    if (f != stdout && f != stdin && f != stderr) {
        if (fclose(f) != 0 && !failed) {
            failed = true;
            saved = errno;
        }
    }
    if (failed)
        return err_set(ERR_IO, "error %s %s: %s", f == stdin ? "reading" : "writing", name,
                       saved ? strerror(saved) : "I/O error");
    return ERR_OK;
}

/* ---- threads and time ---- */

void cli_set_threads(int n)
{
    if (n > 0) openblas_set_num_threads(n);
}

double cli_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* path = DIR/NAME when it fits; true when that file can be read. */
static bool readable_in(char *path, size_t cap, const char *dir, const char *name)
{
    int len = snprintf(path, cap, "%s/%s", dir, name);
    return len > 0 && (size_t)len < cap && access(path, R_OK) == 0;
}

const char *cli_default_weights(const char *name)
{
    static char path[4096];
    const char *env = getenv("VILLES_WEIGHTS");
    if (env && *env) {   /* the user's choice stands, even when the file is missing */
        snprintf(path, sizeof path, "%s/%s", env, name);
        return path;
    }
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');   /* .../bin/generate -> .../bin */
        if (slash) *slash = '\0';
        /* installed (PREFIX/bin beside PREFIX/share), then a build tree (bin/ beside weights/) */
        static const char *const beside[] = { "../share/villes/weights", "../weights" };
        char dir[4200];
        for (size_t i = 0; i < sizeof beside / sizeof *beside; i++) {
            snprintf(dir, sizeof dir, "%s/%s", exe, beside[i]);
            if (readable_in(path, sizeof path, dir, name)) return path;
        }
    }
    snprintf(path, sizeof path, "weights/%s", name);
    return path;
}
