/* cli.h - helpers shared by the programs: errors and exit codes, number
 * parsing for flags, colours, progress lines, output files.
 *
 * Conventions (README.md, "The programs"): --help to stdout, exit 0; a bad
 * flag prints one line and "Try 'PROG --help' for more information." to
 * stderr, exit 2; runtime errors "PROG: message" to stderr, exit 1.
 */
#ifndef VILLES_CLI_H
#define VILLES_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "error.h"

#define VILLES_VERSION "0.1.0"

enum { EXIT_USAGE = 2 };

/* Set once at the start of main, before getopt: the program passes its own
 * name (not argv[0], so messages are stable), and argv[0] is set to it so
 * that getopt's own messages ("PROG: unrecognized option ...") match ours.
 * It also starts the provenance of the checkpoints the program writes
 * (prov.h: program, version, command line). */
void cli_init(const char *prog, char **argv);
const char *cli_prog(void);

/* "PROG: msg" + "Try 'PROG --help' ..." on stderr, exit 2. */
_Noreturn void cli_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "PROG: msg" on stderr, exit 1. */
_Noreturn void cli_die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "PROG: <err_msg()>" on stderr, exit 1 (for a failed libcore call). */
_Noreturn void cli_die_err(void);
/* Print "PROG VERSION" to stdout and exit 0. */
_Noreturn void cli_version(void);
/* The standard getopt_long tail: for '?' (unknown flag, getopt already
 * printed a line) print the "Try" line and exit 2. */
_Noreturn void cli_bad_flag(void);

/* Flag values: parse the whole string or cli_usage() naming the flag and
 * the accepted range. */
long     cli_long(const char *flag, const char *s, long min, long max);
uint64_t cli_u64(const char *flag, const char *s);
double   cli_double(const char *flag, const char *s, double min, double max);
/* One of a NULL-terminated list of words; returns its index. */
int      cli_choice(const char *flag, const char *s, const char *const *words);

/* Colour: --color=always|never|auto.  auto = the stream is a terminal,
 * NO_COLOR is unset (or empty) and TERM is not "dumb". */
typedef enum cli_color { CLI_COLOR_AUTO, CLI_COLOR_ALWAYS, CLI_COLOR_NEVER } cli_color;
cli_color cli_color_flag(const char *s);            /* parses the flag value */
bool      cli_use_color(cli_color mode, FILE *stream);
/* Progress lines (\r-rewritten) only when stderr is a terminal. */
bool      cli_progress_enabled(void);

/* Open path for writing ("-" = stdout) / reading ("-" = stdin); NULL with
 * err_set on failure.  cli_close closes unless it is stdout/stdin, and
 * reports a write error (full disk) as ERR_IO. */
FILE    *cli_open_write(const char *path);
FILE    *cli_open_read(const char *path);
err_code cli_close(FILE *f, const char *path);

/* Threads: bound OpenBLAS (and our own loops) to n threads; n = 0 keeps
 * the default. */
void cli_set_threads(int n);

/* The default weights shipped with villes, by file name
 * ("transformer.safetensors"), searched in this order:
 *   $VILLES_WEIGHTS/NAME when VILLES_WEIGHTS is set (even if missing there);
 *   ../share/villes/weights/NAME from the running program's directory
 *   (installed by make install: PREFIX/bin and PREFIX/share);
 *   ../weights/NAME from it (the build tree: bin/ beside weights/);
 *   weights/NAME in the current directory.
 * The first readable one; the last when none is.  Returns a static buffer. */
#define CLI_DEFAULT_MODEL "transformer.safetensors"   /* explore, steer, sae-train */
#define CLI_DEFAULT_GENERATOR "mix.safetensors"       /* generate */
#define CLI_DEFAULT_SAE   "sae.safetensors"
const char *cli_default_weights(const char *name);

/* Wall-clock seconds (monotonic). */
double cli_now(void);

#endif
