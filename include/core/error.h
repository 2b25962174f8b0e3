/* error.h - the one error type of libcore.
 *
 * Every fallible libcore function returns an err_code (ERR_OK == 0) and, on
 * failure, records a one-line human message with err_set().  Programs print
 * it as "PROG: message".  The message never ends with a newline.
 */
#ifndef VILLES_ERROR_H
#define VILLES_ERROR_H

typedef enum err_code {
    ERR_OK = 0,
    ERR_NOMEM,      /* allocation failed */
    ERR_IO,         /* open/read/write/rename failed */
    ERR_UTF8,       /* invalid UTF-8 in input text */
    ERR_FORMAT,     /* malformed or hostile file (checkpoint, JSON, ...) */
    ERR_ARG,        /* an argument is out of range or inconsistent */
    ERR_MISMATCH,   /* valid file of the wrong kind (model kind, SAE pair) */
    ERR_NAN,        /* a loss became NaN or infinite */
    ERR_INTERRUPT,  /* stopped by a signal */
} err_code;

/* Record a printf-style message for `code` and return `code`.  An argument
 * may be err_msg() itself (to prefix context to an earlier error). */
err_code err_set(err_code code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prefix the last message with "PREFIX: " (a file name, a context) and
 * return `code`: return err_prefix(rc, path); */
err_code err_prefix(err_code code, const char *prefix);

/* The last message recorded (thread-local); "" when none. */
const char *err_msg(void);

#endif
