/* error.c - last-error message storage; see error.h. */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char last_msg[512];

err_code err_set(err_code code, const char *fmt, ...)
{
    /* Format into a copy first: an argument may be err_msg() itself, as in
     * err_set(e, "%s: %s", path, err_msg()) to add context to an error. */
    char buf[sizeof last_msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    memcpy(last_msg, buf, sizeof buf);
    return code;
}

const char *err_msg(void) { return last_msg; }

err_code err_prefix(err_code code, const char *prefix)
{
    return err_set(code, "%s: %s", prefix, err_msg());
}
