/* query.c - the API's query strings; see query.h. */
#include "query.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

bool qry_model_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > QRY_MAX_MODEL || !isalnum((unsigned char)s[0]) || strstr(s, "..")) return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr("_-.", s[i])) return false;
    return true;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    c = (char)tolower((unsigned char)c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The n bytes at s, percent- and '+'-decoded, into out (cap bytes with
 * the NUL); false when an escape is malformed, the value has a NUL byte
 * or does not fit. */
static bool decode(const char *s, size_t n, char *out, size_t cap)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '+') c = ' ';
        else if (c == '%') {
            if (i + 2 >= n) return false;
            int hi = hex_digit(s[i + 1]), lo = hex_digit(s[i + 2]);
            if (hi < 0 || lo < 0) return false;
            c = hi * 16 + lo;
            i += 2;
        }
        if (c == 0 || k + 1 >= cap) return false;
        out[k++] = (char)c;
    }
    out[k] = 0;
    return true;
}

/* Code points of a valid UTF-8 string (shortest forms, no surrogates, at
 * most U+10FFFF); -1 when it is not valid. */
static long utf8_length(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    long n = 0;
    while (*p) {
        unsigned c = *p;
        int extra = c < 0x80 ? 0 : (c & 0xE0) == 0xC0 ? 1 : (c & 0xF0) == 0xE0 ? 2 : (c & 0xF8) == 0xF0 ? 3 : -1;
        if (extra < 0) return -1;
        unsigned long cp = extra == 0 ? c : c & (0x3Fu >> extra);
        for (int i = 1; i <= extra; i++) {
            if ((p[i] & 0xC0) != 0x80) return -1;
            cp = cp << 6 | (p[i] & 0x3F);
        }
        static const unsigned long least[] = { 0, 0x80, 0x800, 0x10000 };
        if (cp < least[extra] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return -1;
        p += extra + 1;
        n++;
    }
    return n;
}

static err_code bad(const char *key, const char *why) { return err_set(ERR_ARG, "parameter '%s': %s", key, why); }

/* A whole decimal number in [lo, hi]. */
static err_code number(const char *key, const char *v, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (!*v || *end || errno || !isfinite(x) || isspace((unsigned char)v[0])) return bad(key, "not a number");
    if (x < lo || x > hi) return err_set(ERR_ARG, "parameter '%s': %g is out of range [%g, %g]", key, x, lo, hi);
    *out = x;
    return ERR_OK;
}

static err_code integer(const char *key, const char *v, double lo, double hi, double *out)
{
    err_code e = number(key, v, lo, hi, out);
    if (!e && *out != floor(*out)) return bad(key, "not a whole number");
    return e;
}

/* out has the size of the decoded value's buffer: it fits. */
static err_code text(const char *key, const char *v, char *out)
{
    long n = utf8_length(v);
    if (n < 0) return bad(key, "not valid UTF-8");
    if (n > QRY_MAX_CHARS) return bad(key, "longer than 64 characters");
    strcpy(out, v);
    return ERR_OK;
}

/* The parameters a request may have, in a fixed order (bit i of `seen`). */
static const char *const keys[] = { "model", "count", "temperature", "top_k", "seed", "prefix", "name", "pos" };
enum { N_KEYS = sizeof keys / sizeof *keys };

static err_code set(qry_request *r, int key, const char *v)
{
    const char *k = keys[key];
    double x = 0;
    err_code e = ERR_OK;
    switch (key) {
    case 0:
        if (!qry_model_name_ok(v)) return bad(k, "not a model name of the weights directory");
        strcpy(r->model, v);
        break;
    case 1: if (!(e = integer(k, v, 1, QRY_MAX_COUNT, &x))) r->count = (long)x; break;
    case 2: if (!(e = number(k, v, 0, 10, &x))) r->temperature = x; break;
    case 3: if (!(e = integer(k, v, 0, QRY_MAX_TOP_K, &x))) r->top_k = (int)x; break;
    case 4: if (!(e = integer(k, v, 0, 9007199254740992.0, &x))) r->seed = (uint64_t)x; break;
    case 5: e = text(k, v, r->prefix); break;
    case 6: e = text(k, v, r->name); break;
    case 7: if (!(e = integer(k, v, -1, QRY_MAX_POS, &x))) r->pos = (int)x; break;
    }
    return e;
}

err_code qry_parse(const char *query, qry_request *r)
{
    *r = (qry_request){ .count = 10, .temperature = 1.0, .pos = -1 };
    if (!query) return ERR_OK;
    size_t len = strlen(query);
    if (len > QRY_MAX_QUERY) return err_set(ERR_ARG, "the query is longer than %d bytes", QRY_MAX_QUERY);
    unsigned seen = 0;
    for (const char *p = query; *p;) {
        const char *amp = strchr(p, '&'), *end = amp ? amp : p + strlen(p);
        const char *eq = memchr(p, '=', (size_t)(end - p));
        char key[16], value[4 * QRY_MAX_CHARS + 1];
        if (end > p) {   /* an empty piece ("a=1&&b=2") is skipped */
            if (!eq) return err_set(ERR_ARG, "'%.*s' is not KEY=VALUE", (int)(end - p > 32 ? 32 : end - p), p);
            if (!decode(p, (size_t)(eq - p), key, sizeof key)) return err_set(ERR_ARG, "unknown parameter");
            int k = 0;
            while (k < N_KEYS && strcmp(key, keys[k])) k++;
            if (k == N_KEYS) return err_set(ERR_ARG, "unknown parameter '%s'", key);
            if (seen & 1u << k) return bad(key, "given twice");
            seen |= 1u << k;
            if (!decode(eq + 1, (size_t)(end - eq - 1), value, sizeof value))
                return bad(key, "malformed or too long");
            err_code e = set(r, k, value);
            if (e) return e;
        }
        p = amp ? amp + 1 : end;
    }
    return ERR_OK;
}
