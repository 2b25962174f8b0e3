/* checkpoint.c - safetensors reader with full validation, atomic writer; see checkpoint.h.
 *
 * Reading: the whole file is read into memory, the header is scanned as text
 * for what cJSON lets through and the reference does not (UTF-8, control
 * bytes, number syntax; each number's value is read there, not from cJSON's
 * double) and parsed with cJSON, every entry is checked, the tensors are
 * sorted by offset and the data section copied into one aligned block
 * (after an 8+N byte prefix the data is not 4-byte aligned).
 * Writing: the header is built with cJSON, padded with spaces so the data
 * starts at an 8-byte aligned offset, and the file is written to a temporary
 * name that is renamed into place only once everything is on disk.
 */
#include "checkpoint.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdalign.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <utf8proc.h>

/* Tensors are stored in native byte order: the file format is little-endian. */
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "checkpoint.c assumes a little-endian host"
#endif

enum { DTYPE_SIZE = 4 };    /* both F32 and I32 */
/* Integers in shape and data_offsets go through a double in cJSON: at most
 * 2^53, so that they are exact. */
#define NUMBER_MAX ((uint64_t)1 << 53)
/* What scan_number leaves in a number's valuedouble when it is not an
 * unsigned integer up to NUMBER_MAX: no such integer is negative. */
#define NUMBER_NOT_UINT (-1.0)
#define NUMBER_TOO_LARGE (-2.0)
/* Limit on numel so that numel * DTYPE_SIZE stays an exact JSON integer. */
#define NUMEL_MAX ((uint64_t)1 << 51)

static const char *const dtype_names[] = { [CK_F32] = "F32", [CK_I32] = "I32" };
/* Valid safetensors dtypes that villes does not read: a clearer message than "unknown". */
static const char *const other_dtypes[] = {
    "BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0",
    "F8_E4M3FNUZ", "F8_E5M2FNUZ", "I16", "U16", "F16", "BF16", "U32", "C64", "F64", "I64", "U64",
};

/* What ck_file.mem points to: the file name (for ck_get_f32's messages) and
 * one aligned block holding every tensor's data. */
typedef struct ck_store {
    char *name;
    alignas(max_align_t) unsigned char data[];
} ck_store;

/* A tensor's place in the data section, before sorting. */
typedef struct span { uint64_t begin, end; int idx; } span;

/* ---------- small helpers ---------- */

/* `s` made safe for a one-line message: control bytes become '?', and long
 * strings are cut at a character boundary. */
static const char *shown(const char *s, char buf[64])
{
    size_t n = 0;
    for (; s[n] && n < 60; n++) buf[n] = (unsigned char)s[n] < 0x20 || s[n] == 0x7f ? '?' : s[n];
    if (s[n]) {
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--;   /* not mid-character */
        memcpy(buf + n, "...", 4);
    } else {
        buf[n] = '\0';
    }
    return buf;
}

static void format_shape(int ndim, const int64_t *shape, char *buf, size_t size)
{
    size_t at = (size_t)snprintf(buf, size, "(");
    for (int i = 0; i < ndim && at < size; i++)
        at += (size_t)snprintf(buf + at, size - at, i ? ", %" PRId64 : "%" PRId64, shape[i]);
    if (at < size) snprintf(buf + at, size - at, ")");
}

/* Validate a shape and return its element count in *numel; a message
 * fragment in *why on failure. */
static int shape_numel(int ndim, const int64_t *shape, size_t *numel, const char **why)
{
    if (ndim < 0 || ndim > CK_MAX_DIMS) { *why = "more than 8 dimensions"; return 0; }
    uint64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) { *why = "a negative dimension"; return 0; }
        uint64_t d = (uint64_t)shape[i];
        /* Like the reference: any overflow of the running product is an error. */
        if (d > NUMEL_MAX || (d && n > NUMEL_MAX / d)) { *why = "too many elements"; return 0; }
        n *= d;
    }
    if (n > SIZE_MAX / DTYPE_SIZE) { *why = "too many elements"; return 0; }
    *numel = (size_t)n;
    return 1;
}

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* ERR_FORMAT naming a string that occurs twice in names[0..n).  Sorting a
 * copy keeps this O(n log n) even for a hostile header with millions of entries. */
static err_code check_unique(const char *file, char **names, int n, const char *what)
{
    char **sorted = malloc((size_t)n * sizeof *sorted + 1), b[64];
    if (!sorted) return err_set(ERR_NOMEM, "%s: out of memory", file);
    if (n) memcpy(sorted, names, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_str_ptr);
    err_code err = ERR_OK;
    for (int i = 1; i < n && !err; i++)
        if (!strcmp(sorted[i - 1], sorted[i]))
            err = err_set(ERR_FORMAT, "%s: duplicate %s '%s'", file, what, shown(sorted[i], b));
    free(sorted);
    return err;
}

/* ---------- reader ---------- */

void ck_free(ck_file *f)
{
    if (!f) return;
    for (int i = 0; i < f->n; i++) free(f->t[i].name);
    for (int i = 0; i < f->n_meta; i++) { free(f->key[i]); free(f->val[i]); }
    free(f->t);
    free(f->key);
    free(f->val);
    if (f->mem) free(((ck_store *)f->mem)->name);
    free(f->mem);
    *f = (ck_file){ 0 };
}

static uint64_t read_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* The header must be UTF-8: the reference checks this before parsing. */
static err_code check_utf8(const char *file, const uint8_t *h, size_t n)
{
    for (size_t i = 0; i < n;) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t len = h[i] < 0x80 ? 1 : utf8proc_iterate(h + i, (utf8proc_ssize_t)(n - i), &cp);
        if (len <= 0)
            return err_set(ERR_FORMAT, "%s: header is not valid UTF-8 (byte %zu of the header)", file, i);
        i += (size_t)len;
    }
    return ERR_OK;
}

/* Numbers of the header in document order, as read from their text by
 * scan_number.  cJSON's doubles cannot tell 64 from 064, 64.0 or 6.4e1. */
typedef struct numbers { double *v; size_t n, cap; } numbers;

static int is_digit(const uint8_t *h, size_t n, size_t i) { return i < n && h[i] >= '0' && h[i] <= '9'; }

/* The number at h[*at], which must follow RFC 8259 exactly
 * (-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?) and not run on into
 * more number characters (064, 64., 1-2); 0 if it does not.  Otherwise
 * *at moves past it and *value is its value when it is an unsigned integer
 * up to 2^53, NUMBER_TOO_LARGE when a larger one, and NUMBER_NOT_UINT for
 * any other number (negative, -0, a fraction or an exponent: never a usize
 * to the reference). */
static int scan_number(const uint8_t *h, size_t n, size_t *at, double *value)
{
    size_t i = *at;
    int is_uint = h[i] != '-';
    i += !is_uint;
    uint64_t u = 0;   /* saturates just above NUMBER_MAX */
    if (i < n && h[i] == '0') i++;   /* 064 stops at the 0, and is refused below */
    else if (!is_digit(h, n, i)) return 0;
    else for (; is_digit(h, n, i); i++) u = u > NUMBER_MAX ? u : u * 10 + (uint64_t)(h[i] - '0');
    if (i < n && h[i] == '.') {
        if (!is_digit(h, n, ++i)) return 0;
        while (is_digit(h, n, i)) i++;
        is_uint = 0;
    }
    if (i < n && (h[i] == 'e' || h[i] == 'E')) {
        i += i + 1 < n && (h[i + 1] == '+' || h[i + 1] == '-');
        if (!is_digit(h, n, ++i)) return 0;
        while (is_digit(h, n, i)) i++;
        is_uint = 0;
    }
    if (i < n && h[i] && strchr("0123456789+-.eE", h[i])) return 0;
    *at = i;
    *value = !is_uint ? NUMBER_NOT_UINT : u > NUMBER_MAX ? NUMBER_TOO_LARGE : (double)u;
    return 1;
}

static int push_number(numbers *num, double v)
{
    if (num->n == num->cap) {
        size_t cap = num->cap ? 2 * num->cap : 64;
        double *nv = realloc(num->v, cap * sizeof *nv);
        if (!nv) return 0;
        num->v = nv;
        num->cap = cap;
    }
    num->v[num->n++] = v;
    return 1;
}

static int is_hex(uint8_t c) { return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f'); }

/* Length of the escape at h[i] (a backslash): 2, or 6 for \uXXXX; 0 when
 * it is not one of JSON's.  cJSON rejects an unknown escape letter but
 * reads \u with bad hex digits as NUL. */
static size_t escape_len(const uint8_t *h, size_t n, size_t i)
{
    if (i + 1 >= n || !h[i + 1] || !strchr("\"\\/bfnrtu", h[i + 1])) return 0;
    if (h[i + 1] != 'u') return 2;
    for (size_t k = i + 2; k < i + 6; k++)
        if (k >= n || !is_hex(h[k])) return 0;
    return 6;
}

/* The string at h[*at] (its opening quote): no raw control byte, as JSON
 * requires and cJSON does not check, escapes well formed, and no \u0000,
 * which cJSON would cut the string at.  Surrogate pairs are cJSON's to check. */
static err_code scan_string(const char *file, const uint8_t *h, size_t n, size_t *at)
{
    size_t i = *at + 1;
    while (i < n && h[i] != '"') {
        size_t len = h[i] == '\\' ? escape_len(h, n, i) : 1;
        if (h[i] < 0x20)
            return err_set(ERR_FORMAT, "%s: header is not valid JSON (control byte 0x%02x in a string at byte %zu of the header)",
                           file, h[i], i);
        if (!len)
            return err_set(ERR_FORMAT, "%s: header is not valid JSON (invalid escape at byte %zu of the header)",
                           file, i);
        if (len == 6 && !memcmp(h + i + 2, "0000", 4))
            return err_set(ERR_FORMAT, "%s: header holds a \\u0000 escape at byte %zu of the header (villes refuses NUL in names and metadata)",
                           file, i);
        i += len;
    }
    *at = i + 1;
    return ERR_OK;
}

/* JSON's lexical rules (RFC 8259) where cJSON is lenient and the
 * reference's parser is not: strings (above), numbers (above), and outside
 * strings only ASCII, with space, tab, LF and CR as the only whitespace
 * (cJSON skips any byte up to 0x20, and a byte-order mark).  cJSON checks
 * the rest: structure, escapes, literals.  The numbers go into *num. */
static err_code scan_json(const char *file, const uint8_t *h, size_t n, numbers *num)
{
    for (size_t i = 0; i < n;) {
        uint8_t c = h[i];
        if (c == '"') {
            err_code err = scan_string(file, h, n, &i);
            if (err) return err;
        } else if (c == '-' || is_digit(h, n, i)) {
            double v;
            if (!scan_number(h, n, &i, &v))
                return err_set(ERR_FORMAT, "%s: header is not valid JSON (malformed number at byte %zu of the header)",
                               file, i);
            if (!push_number(num, v)) return err_set(ERR_NOMEM, "%s: out of memory", file);
        } else if (c >= 0x80 || (c < 0x20 && c != '\t' && c != '\n' && c != '\r')) {
            return err_set(ERR_FORMAT, "%s: header is not valid JSON (byte 0x%02x outside a string at byte %zu of the header)",
                           file, c, i);
        } else {
            i++;
        }
    }
    return ERR_OK;
}

/* Give each number of the tree, in document order (cJSON keeps it), the
 * value the scan read from its text. */
static void set_numbers(cJSON *v, const numbers *num, size_t *k)
{
    for (; v; v = v->next) {
        if (cJSON_IsNumber(v)) v->valuedouble = *k < num->n ? num->v[(*k)++] : NUMBER_NOT_UINT;
        set_numbers(v->child, num, k);
    }
}

/* cJSON's parse of the N header bytes into *root, which must be an object
 * with nothing but whitespace around it. */
static err_code parse_json(const char *file, const uint8_t *h, size_t n, cJSON **root)
{
    /* A NUL-terminated copy: cJSON then never has a byte past the end to read. */
    char *text = malloc(n + 1);
    if (!text) return err_set(ERR_NOMEM, "%s: out of memory for a %zu-byte header", file, n);
    memcpy(text, h, n);
    text[n] = '\0';
    const char *end = NULL;
    err_code err = ERR_OK;
    *root = cJSON_ParseWithLengthOpts(text, n, &end, 0);
    size_t at = end ? (size_t)(end - text) : 0;
    if (!*root) {
        err = err_set(ERR_FORMAT, "%s: header is not valid JSON (error near byte %zu of the header)",
                      file, at);
    } else {
        while (at < n && strchr(" \t\r\n", text[at])) at++;
        if (at < n)
            err = err_set(ERR_FORMAT, "%s: header is not valid JSON (trailing data at byte %zu of the header)",
                          file, at);
        else if (!cJSON_IsObject(*root))
            err = err_set(ERR_FORMAT, "%s: header is not a JSON object", file);
    }
    free(text);
    if (err) { cJSON_Delete(*root); *root = NULL; }
    return err;
}

/* The N header bytes as a JSON object in *root, checked as the reference's
 * parser would (UTF-8, then JSON's rules), each number's valuedouble
 * replaced by what the scan read from its text. */
static err_code parse_header(const char *file, const uint8_t *h, size_t n, cJSON **root)
{
    if (n == 0) return err_set(ERR_FORMAT, "%s: header is empty (length 0)", file);
    numbers num = { 0 };
    err_code err = check_utf8(file, h, n);
    if (!err) err = scan_json(file, h, n, &num);
    if (!err) err = parse_json(file, h, n, root);
    size_t k = 0;
    if (!err) set_numbers(*root, &num, &k);
    free(num.v);
    return err;
}

static err_code read_metadata(const char *file, const cJSON *meta, ck_file *f)
{
    if (f->key) return err_set(ERR_FORMAT, "%s: duplicate __metadata__", file);
    /* null is the reference's "no metadata" (an Option): read as {}. */
    if (!cJSON_IsObject(meta) && !cJSON_IsNull(meta))
        return err_set(ERR_FORMAT, "%s: __metadata__ is not an object", file);
    int n = cJSON_GetArraySize(meta);
    f->key = calloc((size_t)n + 1, sizeof *f->key);
    f->val = calloc((size_t)n + 1, sizeof *f->val);
    if (!f->key || !f->val) return err_set(ERR_NOMEM, "%s: out of memory", file);
    char b[64];
    for (const cJSON *e = meta->child; e; e = e->next) {
        if (!cJSON_IsString(e))
            return err_set(ERR_FORMAT, "%s: __metadata__ value of '%s' is not a string", file,
                           shown(e->string, b));
        f->key[f->n_meta] = strdup(e->string);
        f->val[f->n_meta] = strdup(e->valuestring);
        f->n_meta++;
        if (!f->key[f->n_meta - 1] || !f->val[f->n_meta - 1])
            return err_set(ERR_NOMEM, "%s: out of memory", file);
    }
    return check_unique(file, f->key, f->n_meta, "__metadata__ key");
}

/* A number as the scan read it (see scan_number): 1 with *out for an
 * unsigned integer up to 2^53, -1 for a larger one, 0 for anything else. */
static int json_uint(const cJSON *v, uint64_t *out)
{
    if (!cJSON_IsNumber(v) || v->valuedouble == NUMBER_NOT_UINT) return 0;
    if (v->valuedouble == NUMBER_TOO_LARGE) return -1;
    *out = (uint64_t)v->valuedouble;
    return 1;
}

static err_code read_dtype(const char *file, const char *name, const cJSON *v, ck_dtype *dtype)
{
    char bv[64];
    if (!cJSON_IsString(v))
        return err_set(ERR_FORMAT, "%s: tensor '%s': dtype is not a string", file, name);
    for (int i = 0; i < (int)(sizeof dtype_names / sizeof *dtype_names); i++)
        if (!strcmp(v->valuestring, dtype_names[i])) { *dtype = (ck_dtype)i; return ERR_OK; }
    for (size_t i = 0; i < sizeof other_dtypes / sizeof *other_dtypes; i++)
        if (!strcmp(v->valuestring, other_dtypes[i]))
            return err_set(ERR_FORMAT, "%s: tensor '%s': unsupported dtype %s (villes reads F32 and I32)",
                           file, name, other_dtypes[i]);
    return err_set(ERR_FORMAT, "%s: tensor '%s': unknown dtype '%s'", file, name,
                   shown(v->valuestring, bv));
}

static err_code read_shape(const char *file, const char *name, const cJSON *v, ck_tensor *t)
{
    if (!cJSON_IsArray(v))
        return err_set(ERR_FORMAT, "%s: tensor '%s': shape is not a list", file, name);
    int ndim = cJSON_GetArraySize(v);
    if (ndim > CK_MAX_DIMS)
        return err_set(ERR_FORMAT, "%s: tensor '%s': %d dimensions (at most %d)", file, name, ndim,
                       CK_MAX_DIMS);
    int i = 0;
    for (const cJSON *d = v->child; d; d = d->next, i++) {
        uint64_t u;
        int ok = json_uint(d, &u);
        if (ok < 0)
            return err_set(ERR_FORMAT, "%s: tensor '%s': shape has a dimension too large (above 2^53)",
                           file, name);
        if (!ok)
            return err_set(ERR_FORMAT, "%s: tensor '%s': shape is not a list of non-negative integers",
                           file, name);
        t->shape[i] = (int64_t)u;
    }
    t->ndim = ndim;
    const char *why;
    if (!shape_numel(t->ndim, t->shape, &t->numel, &why))
        return err_set(ERR_FORMAT, "%s: tensor '%s': shape has %s", file, name, why);
    return ERR_OK;
}

static err_code read_offsets(const char *file, const char *name, const cJSON *v, span *s)
{
    int ok[2] = { 0, 0 };
    if (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 2) {
        ok[0] = json_uint(v->child, &s->begin);
        ok[1] = json_uint(v->child->next, &s->end);
    }
    if (ok[0] < 0 || ok[1] < 0)
        return err_set(ERR_FORMAT, "%s: tensor '%s': data_offsets too large (above 2^53)", file, name);
    if (!ok[0] || !ok[1])
        return err_set(ERR_FORMAT, "%s: tensor '%s': data_offsets is not [begin, end]", file, name);
    if (s->end < s->begin)
        return err_set(ERR_FORMAT, "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] end before they begin",
                       file, name, s->begin, s->end);
    return ERR_OK;
}

/* One tensor entry {"dtype", "shape", "data_offsets"}: each key exactly once. */
static err_code read_tensor(const char *file, const cJSON *item, ck_tensor *t, span *s)
{
    char b[64], bk[64];
    const char *name = shown(item->string, b);
    if (!item->string[0]) return err_set(ERR_FORMAT, "%s: empty tensor name", file);
    t->name = strdup(item->string);
    if (!t->name) return err_set(ERR_NOMEM, "%s: out of memory", file);
    if (!cJSON_IsObject(item))
        return err_set(ERR_FORMAT, "%s: tensor '%s' is not an object", file, name);
    static const char *const keys[3] = { "dtype", "shape", "data_offsets" };
    const cJSON *field[3] = { NULL, NULL, NULL };
    for (const cJSON *e = item->child; e; e = e->next) {
        int k = 0;
        while (k < 3 && strcmp(e->string, keys[k])) k++;
        if (k == 3)
            return err_set(ERR_FORMAT, "%s: tensor '%s': unexpected key '%s'", file, name,
                           shown(e->string, bk));
        if (field[k])
            return err_set(ERR_FORMAT, "%s: tensor '%s': duplicate key '%s'", file, name, keys[k]);
        field[k] = e;
    }
    for (int k = 0; k < 3; k++)
        if (!field[k]) return err_set(ERR_FORMAT, "%s: tensor '%s' has no %s", file, name, keys[k]);
    err_code err;
    if ((err = read_dtype(file, name, field[0], &t->dtype))) return err;
    if ((err = read_shape(file, name, field[1], t))) return err;
    if ((err = read_offsets(file, name, field[2], s))) return err;
    if (s->end - s->begin != (uint64_t)t->numel * DTYPE_SIZE)
        return err_set(ERR_FORMAT, "%s: tensor '%s': data_offsets hold %" PRIu64 " bytes, shape needs %" PRIu64,
                       file, name, s->end - s->begin, (uint64_t)t->numel * DTYPE_SIZE);
    return ERR_OK;
}

static int cmp_span(const void *a, const void *b)
{
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return (x->idx > y->idx) - (x->idx < y->idx);   /* empty tensors keep file order */
}

/* Sorted by offset, the tensors must tile the data section exactly. */
static err_code check_layout(const char *file, span *s, int n, const ck_tensor *t, size_t data_len)
{
    char b[64];
    qsort(s, (size_t)n, sizeof *s, cmp_span);
    uint64_t at = 0;
    for (int i = 0; i < n; i++) {
        const char *name = shown(t[s[i].idx].name, b);
        if (s[i].end > data_len)
            return err_set(ERR_FORMAT, "%s: tensor '%s' ends past the end of the file (data byte %" PRIu64 " of %zu)",
                           file, name, s[i].end, data_len);
        if (s[i].begin > at)
            return err_set(ERR_FORMAT, "%s: gap of %" PRIu64 " bytes before tensor '%s'", file,
                           s[i].begin - at, name);
        if (s[i].begin < at)
            return err_set(ERR_FORMAT, "%s: tensor '%s' overlaps the previous one (starts at %" PRIu64 ", previous ends at %" PRIu64 ")",
                           file, name, s[i].begin, at);
        at = s[i].end;
    }
    if (at != data_len)
        return err_set(ERR_FORMAT, "%s: %" PRIu64 " trailing bytes after the last tensor", file,
                       (uint64_t)data_len - at);
    return ERR_OK;
}

/* Read every entry of the header object into f (tensors in file order, with
 * their spans in s), then check names and layout. */
static err_code read_entries(const char *file, const cJSON *root, size_t data_len, ck_file *f,
                             span **s)
{
    int n = cJSON_GetArraySize(root);
    f->t = calloc((size_t)n + 1, sizeof *f->t);
    *s = calloc((size_t)n + 1, sizeof **s);
    char **names = calloc((size_t)n + 1, sizeof *names);
    err_code err = ERR_OK;
    if (!f->t || !*s || !names) err = err_set(ERR_NOMEM, "%s: out of memory", file);
    for (const cJSON *e = root->child; e && !err; e = e->next) {
        if (!strcmp(e->string, "__metadata__")) {
            err = read_metadata(file, e, f);
            continue;
        }
        (*s)[f->n].idx = f->n;
        err = read_tensor(file, e, &f->t[f->n], &(*s)[f->n]);
        names[f->n] = f->t[f->n].name;
        if (f->t[f->n].name) f->n++;   /* counted once owned, so ck_free frees it */
    }
    if (!err) err = check_unique(file, names, f->n, "tensor name");
    if (!err) err = check_layout(file, *s, f->n, f->t, data_len);
    free(names);
    return err;
}

/* Put the tensors in offset order and copy the data section into one
 * aligned block (ck_store) so that float and int32 access is aligned. */
static err_code place_data(const char *file, const span *s, const uint8_t *data, size_t data_len,
                           ck_file *f)
{
    ck_store *st = malloc(sizeof *st + data_len);
    ck_tensor *sorted = calloc((size_t)f->n + 1, sizeof *sorted);
    if (!st || !sorted) {
        free(st);
        free(sorted);
        return err_set(ERR_NOMEM, "%s: out of memory for %zu bytes of tensors", file, data_len);
    }
    st->name = strdup(file);
    if (data_len) memcpy(st->data, data, data_len);
    for (int i = 0; i < f->n; i++) {
        sorted[i] = f->t[s[i].idx];
        sorted[i].data = st->data + s[i].begin;
    }
    free(f->t);
    f->t = sorted;
    f->mem = st;
    if (!st->name) return err_set(ERR_NOMEM, "%s: out of memory", file);
    return ERR_OK;
}

err_code ck_parse(const char *name, const uint8_t *buf, size_t len, ck_file *f)
{
    *f = (ck_file){ 0 };
    if (!buf || len < 8)
        return err_set(ERR_FORMAT, "%s: too short for a safetensors file (%zu bytes)", name, len);
    uint64_t n = read_le64(buf);
    if (n > CK_MAX_HEADER)
        return err_set(ERR_FORMAT, "%s: header length %" PRIu64 " exceeds the limit of %d bytes",
                       name, n, CK_MAX_HEADER);
    if (n > len - 8)
        return err_set(ERR_FORMAT, "%s: truncated: header says %" PRIu64 " bytes, %zu follow the 8-byte length",
                       name, n, len - 8);
    cJSON *root = NULL;
    span *s = NULL;
    size_t data_len = len - 8 - (size_t)n;
    err_code err = parse_header(name, buf + 8, (size_t)n, &root);
    if (!err) err = read_entries(name, root, data_len, f, &s);
    if (!err) err = place_data(name, s, buf + 8 + n, data_len, f);
    cJSON_Delete(root);
    free(s);
    if (err) ck_free(f);
    return err;
}

/* The whole content of an open file in *buf (caller frees). */
static err_code read_all(const char *path, FILE *fp, uint8_t **buf, size_t *len)
{
    struct stat st;
    size_t cap = fstat(fileno(fp), &st) == 0 && S_ISREG(st.st_mode) ? (size_t)st.st_size + 1 : 1 << 16;
    size_t n = 0, got;
    uint8_t *b = malloc(cap);
    if (!b) return err_set(ERR_NOMEM, "%s: out of memory for %zu bytes", path, cap);
    while ((got = fread(b + n, 1, cap - n, fp)) > 0) {
        n += got;
        if (n < cap) continue;
        uint8_t *nb = cap <= SIZE_MAX / 2 ? realloc(b, cap * 2) : NULL;
        if (!nb) { free(b); return err_set(ERR_NOMEM, "%s: out of memory", path); }
        b = nb;
        cap *= 2;
    }
    if (ferror(fp)) {
        err_code err = err_set(ERR_IO, "%s: %s", path, strerror(errno));
        free(b);
        return err;
    }
    *buf = b;
    *len = n;
    return ERR_OK;
}

err_code ck_read(const char *path, ck_file *f)
{
    *f = (ck_file){ 0 };
    FILE *fp = fopen(path, "rb");
    if (!fp) return err_set(ERR_IO, "%s: %s", path, strerror(errno));
    uint8_t *buf = NULL;
    size_t len = 0;
    err_code err = read_all(path, fp, &buf, &len);
    fclose(fp);
    if (!err) err = ck_parse(path, buf, len, f);
    free(buf);
    return err;
}

const ck_tensor *ck_get(const ck_file *f, const char *name)
{
    if (!f || !name) return NULL;
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->t[i].name, name)) return &f->t[i];
    return NULL;
}

const char *ck_meta(const ck_file *f, const char *key)
{
    if (!f || !key) return NULL;
    for (int i = 0; i < f->n_meta; i++)
        if (!strcmp(f->key[i], key)) return f->val[i];
    return NULL;
}

static const char *file_name(const ck_file *f)
{
    return f && f->mem ? ((const ck_store *)f->mem)->name : "checkpoint";
}

err_code ck_get_f32(const ck_file *f, const char *name, int ndim, const int64_t *shape,
                    const float **data)
{
    const char *file = file_name(f);
    const ck_tensor *t = ck_get(f, name);
    char got[160], want[160];
    if (!t) return err_set(ERR_FORMAT, "%s: missing tensor '%s'", file, name ? name : "(null)");
    if (t->dtype != CK_F32)
        return err_set(ERR_FORMAT, "%s: tensor '%s' is %s, expected F32", file, name,
                       dtype_names[t->dtype]);
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    if (!same) {
        format_shape(t->ndim, t->shape, got, sizeof got);
        format_shape(ndim > 0 && ndim <= CK_MAX_DIMS ? ndim : 0, shape, want, sizeof want);
        return err_set(ERR_FORMAT, "%s: tensor '%s' has shape %s, expected %s", file, name, got, want);
    }
    *data = t->data;
    return ERR_OK;
}

err_code ck_expect_model(const ck_file *f, const char *path, const char *kind)
{
    char b[64], bk[64];
    const char *format = ck_meta(f, "format"), *version = ck_meta(f, "format_version");
    const char *model = ck_meta(f, "model");
    if (!format)
        return err_set(ERR_FORMAT, "%s: not a villes checkpoint (no format metadata)", path);
    if (strcmp(format, CK_FORMAT))
        return err_set(ERR_FORMAT, "%s: not a villes checkpoint (format is '%s')", path,
                       shown(format, b));
    if (!version || strcmp(version, CK_FORMAT_VERSION))
        return err_set(ERR_FORMAT, "%s: unsupported villes format version '%s' (this build reads %s)",
                       path, version ? shown(version, b) : "", CK_FORMAT_VERSION);
    if (!model) return err_set(ERR_FORMAT, "%s: villes checkpoint without model metadata", path);
    if (strcmp(model, kind))
        return err_set(ERR_MISMATCH, "%s holds a '%s' model, not a '%s'", path, shown(model, b),
                       shown(kind, bk));
    return ERR_OK;
}

/* ---------- writer ---------- */

struct ck_writer {
    cJSON     *meta;          /* __metadata__ object: copies of keys and values */
    ck_tensor *t;             /* names owned, data referenced */
    int        n, cap;
};

ck_writer *ck_writer_new(void)
{
    ck_writer *w = calloc(1, sizeof *w);
    if (w && !(w->meta = cJSON_CreateObject())) { free(w); w = NULL; }
    if (!w) err_set(ERR_NOMEM, "out of memory for a checkpoint writer");
    return w;
}

void ck_writer_free(ck_writer *w)
{
    if (!w) return;
    for (int i = 0; i < w->n; i++) free(w->t[i].name);
    free(w->t);
    cJSON_Delete(w->meta);
    free(w);
}

err_code ck_put_meta(ck_writer *w, const char *key, const char *val)
{
    if (!w || !key || !val) return err_set(ERR_ARG, "ck_put_meta: NULL argument");
    if (cJSON_GetObjectItemCaseSensitive(w->meta, key))
        return err_set(ERR_ARG, "duplicate checkpoint metadata key '%s'", key);
    if (!cJSON_AddStringToObject(w->meta, key, val))
        return err_set(ERR_NOMEM, "out of memory for checkpoint metadata");
    return ERR_OK;
}

err_code ck_put(ck_writer *w, const char *name, ck_dtype dtype, int ndim, const int64_t *shape,
                const void *data)
{
    if (!w || !name) return err_set(ERR_ARG, "ck_put: NULL argument");
    if (!name[0] || !strcmp(name, "__metadata__"))
        return err_set(ERR_ARG, "invalid tensor name '%s'", name);
    if (dtype != CK_F32 && dtype != CK_I32)
        return err_set(ERR_ARG, "tensor '%s': invalid dtype %d", name, (int)dtype);
    if (ck_get(&(ck_file){ .t = w->t, .n = w->n }, name))
        return err_set(ERR_ARG, "duplicate tensor name '%s'", name);
    if (ndim > 0 && !shape) return err_set(ERR_ARG, "tensor '%s': no shape", name);
    ck_tensor t = { .dtype = dtype, .ndim = ndim, .data = (void *)data };
    const char *why;
    if (!shape_numel(ndim, shape, &t.numel, &why))
        return err_set(ERR_ARG, "tensor '%s': shape has %s", name, why);
    if (ndim > 0) memcpy(t.shape, shape, (size_t)ndim * sizeof *shape);
    if (t.numel && !data) return err_set(ERR_ARG, "tensor '%s': no data", name);
    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 16;
        ck_tensor *nt = realloc(w->t, (size_t)cap * sizeof *nt);
        if (!nt) return err_set(ERR_NOMEM, "out of memory for checkpoint tensors");
        w->t = nt;
        w->cap = cap;
    }
    if (!(t.name = strdup(name))) return err_set(ERR_NOMEM, "out of memory");
    w->t[w->n++] = t;
    return ERR_OK;
}

/* ---------- provenance ---------- */

static char *provenance;   /* ck_set_provenance's copy, NULL = none */

err_code ck_set_provenance(const char *json)
{
    char *copy = json ? strdup(json) : NULL;
    if (json && !copy) return err_set(ERR_NOMEM, "out of memory for the provenance");
    free(provenance);
    provenance = copy;
    return ERR_OK;
}

const char *ck_provenance(void) { return provenance; }

/* Append an exact integer (cJSON would print large doubles with exponents). */
static int add_uint(cJSON *arr, uint64_t v)
{
    char num[24];
    snprintf(num, sizeof num, "%" PRIu64, v);
    return cJSON_AddItemToArray(arr, cJSON_CreateRaw(num));
}

/* The header JSON: metadata first, then the tensors in insertion order with
 * contiguous offsets.  NULL when out of memory. */
static char *header_json(ck_writer *w)
{
    cJSON *root = cJSON_CreateObject();
    int ok = root != NULL;
    if (ok && provenance && !cJSON_GetObjectItemCaseSensitive(w->meta, CK_PROVENANCE_KEY))
        ok = ck_put_meta(w, CK_PROVENANCE_KEY, provenance) == ERR_OK;
    if (ok && w->meta->child) ok = cJSON_AddItemReferenceToObject(root, "__metadata__", w->meta);
    uint64_t at = 0;
    for (int i = 0; ok && i < w->n; i++) {
        const ck_tensor *t = &w->t[i];
        cJSON *e = cJSON_CreateObject(), *shape = NULL, *off = NULL;
        ok = cJSON_AddItemToObject(root, t->name, e)
             && cJSON_AddStringToObject(e, "dtype", dtype_names[t->dtype])
             && (shape = cJSON_AddArrayToObject(e, "shape"))
             && (off = cJSON_AddArrayToObject(e, "data_offsets"));
        for (int d = 0; ok && d < t->ndim; d++) ok = add_uint(shape, (uint64_t)t->shape[d]);
        ok = ok && add_uint(off, at) && add_uint(off, at + (uint64_t)t->numel * DTYPE_SIZE);
        at += (uint64_t)t->numel * DTYPE_SIZE;
    }
    char *text = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    return text;
}

/* Write the whole file to fp; 0 or an errno value. */
static int write_stream(const ck_writer *w, const char *json, FILE *fp)
{
    /* Pad with spaces so the data section starts at an 8-byte aligned offset. */
    size_t len = strlen(json), n = (len + 7) / 8 * 8;
    uint8_t prefix[8];
    for (int i = 0; i < 8; i++) prefix[i] = (uint8_t)((uint64_t)n >> (8 * i));
    static const char spaces[8] = "        ";
    int ok = fwrite(prefix, 1, 8, fp) == 8 && fwrite(json, 1, len, fp) == len
             && fwrite(spaces, 1, n - len, fp) == n - len;
    for (int i = 0; ok && i < w->n; i++)
        ok = !w->t[i].numel || fwrite(w->t[i].data, DTYPE_SIZE, w->t[i].numel, fp) == w->t[i].numel;
    ok = ok && fflush(fp) == 0;
    return ok ? 0 : errno ? errno : EIO;
}

static err_code write_stdout(const ck_writer *w, const char *json)
{
    errno = 0;
    int e = write_stream(w, json, stdout);
    if (e) return err_set(ERR_IO, "standard output: %s", strerror(e));
    return ERR_OK;
}

/* Temporary file in the same directory (so rename is atomic), written,
 * synced and renamed over path; removed on any failure. */
static err_code write_atomic(const ck_writer *w, const char *json, const char *path)
{
    size_t plen = strlen(path);
    char *tmp = malloc(plen + sizeof ".tmp.XXXXXX");
    if (!tmp) return err_set(ERR_NOMEM, "out of memory");
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp.XXXXXX", sizeof ".tmp.XXXXXX");
    int fd = mkstemp(tmp);
    if (fd < 0) {
        err_code err = err_set(ERR_IO, "%s: cannot create a temporary file: %s", path, strerror(errno));
        free(tmp);
        return err;
    }
    /* mkstemp makes the file 0600; give it the mode a plain fopen would. */
    mode_t mask = umask(0);
    umask(mask);
    fchmod(fd, 0666 & ~mask);
    FILE *fp = fdopen(fd, "wb");
    const char *step = "write";
    int e = fp ? 0 : errno;
    if (!fp) close(fd);
    if (!e) { errno = 0; e = write_stream(w, json, fp); }
    if (!e && fsync(fileno(fp)) != 0) { e = errno; step = "fsync"; }
    if (fp && fclose(fp) != 0 && !e) { e = errno; step = "close"; }
    if (!e && rename(tmp, path) != 0) { e = errno; step = "rename"; }
    err_code err = ERR_OK;
    if (e) {
        unlink(tmp);
        err = err_set(ERR_IO, "%s: %s failed: %s", path, step, strerror(e));
    }
    free(tmp);
    return err;
}

err_code ck_write(ck_writer *w, const char *path)
{
    if (!w || !path) return err_set(ERR_ARG, "ck_write: NULL argument");
    char *json = header_json(w);
    if (!json) return err_set(ERR_NOMEM, "%s: out of memory for the header", path);
    err_code err = strcmp(path, "-") ? write_atomic(w, json, path) : write_stdout(w, json);
    free(json);
    return err;
}

uint64_t ck_fnv1a(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3u;   /* the FNV prime */
    return h;
}

err_code ck_file_hash(const char *path, char out[17])
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return err_set(ERR_IO, "%s: %s", path, strerror(errno));
    uint64_t h = CK_FNV1A_BASIS;
    unsigned char buf[1 << 16];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, fp)) > 0) h = ck_fnv1a(h, buf, got);
    int bad = ferror(fp);
    int e = errno;
    fclose(fp);
    if (bad) return err_set(ERR_IO, "%s: %s", path, strerror(e));
    snprintf(out, 17, "%016" PRIx64, h);
    return ERR_OK;
}

/* ---- views ---------------------------------------------------------------- */

/* strdup of s + skip, or NULL; counted in *failed when out of memory. */
static char *copy_tail(const char *s, size_t skip, int *failed)
{
    char *c = strdup(s + skip);
    *failed += !c;
    return c;
}

err_code ck_sub(const ck_file *f, const char *prefix, ck_file *out)
{
    *out = (ck_file){ 0 };
    if (!f || !prefix) return err_set(ERR_ARG, "ck_sub: NULL argument");
    size_t len = strlen(prefix);
    int nt = 0, nm = 0, failed = 0;
    for (int i = 0; i < f->n; i++) nt += !strncmp(f->t[i].name, prefix, len);
    for (int i = 0; i < f->n_meta; i++) nm += !strncmp(f->key[i], prefix, len);
    out->t = calloc((size_t)nt + 1, sizeof *out->t);
    out->key = calloc((size_t)nm + 1, sizeof *out->key);
    out->val = calloc((size_t)nm + 1, sizeof *out->val);
    if (!out->t || !out->key || !out->val) failed = 1;
    for (int i = 0; !failed && i < f->n; i++) {
        if (strncmp(f->t[i].name, prefix, len)) continue;
        out->t[out->n] = f->t[i];   /* data shared with f */
        out->t[out->n++].name = copy_tail(f->t[i].name, len, &failed);
    }
    for (int i = 0; !failed && i < f->n_meta; i++) {
        if (strncmp(f->key[i], prefix, len)) continue;
        out->key[out->n_meta] = copy_tail(f->key[i], len, &failed);
        out->val[out->n_meta++] = copy_tail(f->val[i], 0, &failed);
    }
    if (!failed) return ERR_OK;
    ck_free(out);
    return err_set(ERR_NOMEM, "out of memory");
}
