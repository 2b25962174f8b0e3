/* query.h - the parameters of a request to generate --serve's API, from the
 * raw query string of its URL ("count=10&prefix=saint-&model=mix").
 *
 * A pure function (no I/O, no allocation) so that it can be fuzzed alone
 * (tests/fuzz/fuzz_query.c): every value is bounded, percent-escapes and
 * '+' are decoded, text must be valid UTF-8, a model is a bare file name
 * (no path), and an unknown, repeated or malformed parameter is an error
 * naming it.
 */
#ifndef VILLES_QUERY_H
#define VILLES_QUERY_H

#include <stdbool.h>
#include <stdint.h>

#include "error.h"

enum {
    QRY_MAX_QUERY = 2048,   /* bytes of a query string */
    QRY_MAX_COUNT = 200,    /* names a request */
    QRY_MAX_CHARS = 64,     /* characters of a prefix or a name */
    QRY_MAX_MODEL = 64,     /* bytes of a model name */
    QRY_MAX_TOP_K = 1000,
    QRY_MAX_POS = 4096,
};

typedef struct qry_request {
    char     model[QRY_MAX_MODEL + 1];         /* "" = the default */
    long     count;                            /* 1..QRY_MAX_COUNT (10) */
    double   temperature;                      /* 0..10 (1) */
    int      top_k;                            /* 0..QRY_MAX_TOP_K (0 = all) */
    uint64_t seed;                             /* (0) */
    char     prefix[4 * QRY_MAX_CHARS + 1];    /* UTF-8, at most QRY_MAX_CHARS characters */
    char     name[4 * QRY_MAX_CHARS + 1];      /* the name to score or attribute */
    int      pos;                              /* attribute: a position, -1 = the last */
} qry_request;

/* r's defaults, then the parameters of query (the part after '?'; NULL or
 * "" = none).  ERR_ARG with a message naming the parameter (or the whole
 * query when longer than QRY_MAX_QUERY) otherwise; r is then partly set. */
err_code qry_parse(const char *query, qry_request *r);

/* A model name that maps to a file of the weights directory: 1 to
 * QRY_MAX_MODEL bytes of letters, digits, '_', '-' and '.', starting with a
 * letter or a digit, without "..". */
bool qry_model_name_ok(const char *s);

#endif
