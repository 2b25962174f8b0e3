/* text.c - UTF-8 decoding, NFC normalisation and the vocabulary; see text.h.
 *
 * Decoding works line by line: each line is decoded with utf8proc_iterate
 * (so that an error names the exact byte offset), then, unless it is
 * trivially NFC already, decomposed and recomposed to NFC by utf8proc
 * straight into the output array.
 *
 * Control characters (U+0000-U+001F, U+007F-U+009F) inside a line are
 * rejected with ERR_FORMAT naming the character, line and byte.  They are
 * valid UTF-8, but never part of a name: a NUL almost always means a binary
 * or UTF-16 file, a lone "\r" an old Mac line end, and a tab would break the
 * TSV the programs print.  Running text (txt_read_stream) also accepts tabs.
 */
#include "text.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <utf8proc.h>

/* Inputs larger than this are refused before reading: the decoded text
 * takes 4 bytes per character, and a names file is well under a megabyte. */
#define TXT_MAX_BYTES ((size_t)256 << 20)
/* The largest vocabulary, specials included (checked when building and
 * when reading one back from a checkpoint). */
enum { TXT_VOCAB_MAX = 1 << 16 };

static const utf8proc_option_t NFC_OPTIONS = UTF8PROC_COMPOSE | UTF8PROC_STABLE;

/* ---- reading bytes ------------------------------------------------------ */

/* Read all of `f` into a malloc'd buffer, growing it as needed (pipes and
 * stdin have no size up front); refuse more than TXT_MAX_BYTES. */
static err_code read_all(FILE *f, const char *name, size_t size_hint, uint8_t **out, size_t *len)
{
    size_t cap = size_hint + 1 > 65536 ? size_hint + 1 : 65536, n = 0;
    uint8_t *buf = malloc(cap);
    if (!buf) return err_set(ERR_NOMEM, "%s: out of memory reading the file", name);
    for (;;) {
        if (n == cap) {
            if (n > TXT_MAX_BYTES) {
                free(buf);
                return err_set(ERR_IO, "%s: file larger than %zu MiB", name, TXT_MAX_BYTES >> 20);
            }
            /* One byte past the limit is enough to know the input is too big. */
            size_t grown_cap = 2 * cap > TXT_MAX_BYTES + 1 ? TXT_MAX_BYTES + 1 : 2 * cap;
            uint8_t *grown = realloc(buf, grown_cap);
            if (!grown) {
                free(buf);
                return err_set(ERR_NOMEM, "%s: out of memory reading the file", name);
            }
            buf = grown;
            cap = grown_cap;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    if (ferror(f)) {
        free(buf);
        return err_set(ERR_IO, "%s: read error: %s", name, strerror(errno));
    }
    *out = buf;
    *len = n;
    return ERR_OK;
}

/* Read `path` ("-" = stdin); *name is what error messages call it. */
static err_code read_file(const char *path, const char **name, uint8_t **buf, size_t *len)
{
    if (!path) return err_set(ERR_ARG, "no input file given");
    if (strcmp(path, "-") == 0) {
        *name = "stdin";
        return read_all(stdin, *name, 0, buf, len);
    }
    *name = path;
    FILE *f = fopen(path, "rb");
    if (!f) return err_set(ERR_IO, "%s: %s", path, strerror(errno));
    struct stat st;
    size_t hint = 0;
    if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode)) {
        if ((uint64_t)st.st_size > TXT_MAX_BYTES) {
            fclose(f);
            return err_set(ERR_IO, "%s: file larger than %zu MiB", path, TXT_MAX_BYTES >> 20);
        }
        hint = (size_t)st.st_size;   /* one fread gets it all */
    }
    err_code e = read_all(f, path, hint, buf, len);
    fclose(f);
    return e;
}

/* ---- decoding ----------------------------------------------------------- */

/* A growable array of code points. */
typedef struct cp_buf { int32_t *p; size_t n, cap; } cp_buf;

static err_code cp_reserve(cp_buf *b, size_t extra)
{
    if (b->cap - b->n >= extra) return ERR_OK;
    size_t cap = b->cap ? b->cap : 64;
    while (cap - b->n < extra) cap *= 2;
    int32_t *p = realloc(b->p, cap * sizeof *p);
    if (!p) return err_set(ERR_NOMEM, "out of memory decoding text");
    b->p = p;
    b->cap = cap;
    return ERR_OK;
}

static int is_control(int32_t c) { return c < 0x20 || (c >= 0x7f && c < 0xa0); }

/* "PATH:LINE: " in front of decoding errors, or nothing for a string. */
static void where(char *out, size_t size, const char *name, size_t line)
{
    if (name) snprintf(out, size, "%s:%zu: ", name, line);
    else out[0] = '\0';
}

/* Append the NFC form of the valid UTF-8 s[0..len) to out. */
static err_code append_nfc(cp_buf *out, const uint8_t *s, size_t len)
{
    for (;;) {
        utf8proc_ssize_t room = (utf8proc_ssize_t)(out->cap - out->n);
        utf8proc_ssize_t k = utf8proc_decompose(s, (utf8proc_ssize_t)len, out->p + out->n, room, NFC_OPTIONS);
        if (k < 0) return err_set(ERR_UTF8, "NFC normalisation failed: %s", utf8proc_errmsg(k));
        if (k <= room) {
            k = utf8proc_normalize_utf32(out->p + out->n, k, NFC_OPTIONS);
            if (k < 0) return err_set(ERR_UTF8, "NFC normalisation failed: %s", utf8proc_errmsg(k));
            out->n += (size_t)k;
            return ERR_OK;
        }
        err_code e = cp_reserve(out, (size_t)k);   /* too small: grow, decompose again */
        if (e) return e;
    }
}

/* Decode s[0..len) (one line, or a whole string) to NFC code points
 * appended to out.  It must be well-formed UTF-8 without control
 * characters (tabs allowed if allow_tab); errors name `name`:`line` and the
 * file offset of the bad byte, `offset` being that of s[0]. */
static err_code decode_segment(cp_buf *out, const char *name, size_t line, const uint8_t *s,
                               size_t len, size_t offset, int allow_tab)
{
    err_code e = cp_reserve(out, len);   /* never more code points than bytes */
    if (e) return e;
    size_t first = out->n;
    int32_t max_cp = 0;
    char at[512];
    for (size_t i = 0; i < len;) {
        int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate(s + i, (utf8proc_ssize_t)(len - i), &c);
        if (k <= 0) {
            where(at, sizeof at, name, line);
            return err_set(ERR_UTF8, "%sinvalid UTF-8 at byte %zu", at, offset + i);
        }
        if (is_control(c) && !(allow_tab && c == '\t')) {
            where(at, sizeof at, name, line);
            return err_set(ERR_FORMAT, "%scontrol character U+%04X at byte %zu (not a text file?)",
                           at, (unsigned)c, offset + i);
        }
        out->p[out->n++] = c;
        if (c > max_cp) max_cp = c;
        i += (size_t)k;
    }
    /* Below U+0300 every character is a starter that composes with no other
     * (checked for all pairs against Python's unicodedata), so such text is
     * already NFC.  Skipping utf8proc for such text, the common case, takes
     * reading villes.txt from 109 to 23 million instructions. */
    if (max_cp < 0x300) return ERR_OK;
    out->n = first;
    return append_nfc(out, s, len);
}

/* Decode buf as lines: BOM skipped, "\n" or "\r\n" ends, NFC per line.
 * Lines mode (starts != NULL): line ends dropped, *starts gets n + 1
 * offsets.  Stream mode (starts == NULL): every line end becomes '\n'. */
static err_code decode(const char *name, const uint8_t *buf, size_t len, cp_buf *cp,
                       size_t **starts, size_t *n_lines)
{
    size_t pos = 0;
    if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0) pos = 3;

    size_t n = 0;   /* count the lines first so `starts` is allocated once */
    for (const uint8_t *p = buf + pos, *end = buf + len; p < end; n++) {
        const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
        p = nl ? nl + 1 : end;
    }
    size_t *st = NULL;
    if (starts && !(st = malloc((n + 1) * sizeof *st)))
        return err_set(ERR_NOMEM, "%s: out of memory", name);
    err_code e = cp_reserve(cp, len - pos + 1);   /* enough unless NFC expands */

    for (size_t i = 0; !e && i < n; i++) {
        const uint8_t *nl = memchr(buf + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - buf) : len;
        size_t text_end = (nl && end > pos && buf[end - 1] == '\r') ? end - 1 : end;
        if (st) st[i] = cp->n;
        e = decode_segment(cp, name, i + 1, buf + pos, text_end - pos, pos, !starts);
        if (!e && !starts && nl) {   /* stream mode keeps the line end */
            e = cp_reserve(cp, 1);
            if (!e) cp->p[cp->n++] = '\n';
        }
        pos = end + 1;
    }
    if (e) {
        free(st);
        return e;
    }
    if (st) {
        st[n] = cp->n;
        *starts = st;
        *n_lines = n;
    }
    return ERR_OK;
}

err_code txt_parse_lines(const char *name, const uint8_t *buf, size_t len, txt_lines *out)
{
    if (!out) return err_set(ERR_ARG, "txt_parse_lines: no output");
    *out = (txt_lines){ 0 };
    if (!buf && len) return err_set(ERR_ARG, "txt_parse_lines: no input");
    if (!buf) buf = (const uint8_t *)"";   /* no pointer arithmetic on NULL */
    cp_buf cp = { 0 };
    err_code e = decode(name ? name : "input", buf, len, &cp, &out->start, &out->n);
    if (e) {
        free(cp.p);
        return e;
    }
    out->cp = cp.p;
    return ERR_OK;
}

err_code txt_read_lines(const char *path, txt_lines *out)
{
    if (!out) return err_set(ERR_ARG, "txt_read_lines: no output");
    *out = (txt_lines){ 0 };
    const char *name = path;
    uint8_t *buf = NULL;
    size_t len = 0;
    err_code e = read_file(path, &name, &buf, &len);
    if (e) return e;
    e = txt_parse_lines(name, buf, len, out);
    free(buf);
    return e;
}

void txt_lines_free(txt_lines *t)
{
    if (!t) return;
    free(t->cp);
    free(t->start);
    *t = (txt_lines){ 0 };
}

err_code txt_read_stream(const char *path, int32_t **cp, size_t *n)
{
    if (!cp || !n) return err_set(ERR_ARG, "txt_read_stream: no output");
    *cp = NULL;
    *n = 0;
    const char *name = path;
    uint8_t *buf = NULL;
    size_t len = 0;
    err_code e = read_file(path, &name, &buf, &len);
    if (e) return e;
    cp_buf out = { 0 };
    e = decode(name, buf, len, &out, NULL, NULL);
    free(buf);
    if (e) {
        free(out.p);
        return e;
    }
    *cp = out.p;
    *n = out.n;
    return ERR_OK;
}

err_code txt_decode(const char *s, int32_t **cp, size_t *n)
{
    if (!cp || !n) return err_set(ERR_ARG, "txt_decode: no output");
    *cp = NULL;
    *n = 0;
    if (!s) return err_set(ERR_ARG, "txt_decode: no string");
    size_t len = strlen(s);
    cp_buf out = { 0 };
    err_code e = decode_segment(&out, NULL, 0, (const uint8_t *)s, len, 0, 0);
    if (e) {
        free(out.p);
        return e;
    }
    *cp = out.p;
    *n = out.n;
    return ERR_OK;
}

int txt_encode_cp(int32_t cp, char *out)
{
    if (!out) return 0;
    out[0] = '\0';
    if (!utf8proc_codepoint_valid(cp)) return 0;
    int k = (int)utf8proc_encode_char(cp, (utf8proc_uint8_t *)out);
    out[k] = '\0';
    return k;
}

/* ---- vocabulary --------------------------------------------------------- */

static const char *const SPECIALS[TOK_FIRST] = { "<pad>", "<SOS>", "<EOS>" };

/* A vocabulary of TOK_FIRST + n_chars tokens, specials set, characters not. */
static err_code vocab_alloc(txt_vocab *v, size_t n_chars)
{
    if (n_chars > TXT_VOCAB_MAX - TOK_FIRST)
        return err_set(ERR_ARG, "%zu distinct characters: a vocabulary holds at most %d",
                       n_chars, TXT_VOCAB_MAX - TOK_FIRST);
    v->cp = malloc((TOK_FIRST + n_chars) * sizeof *v->cp);
    if (!v->cp) return err_set(ERR_NOMEM, "out of memory for the vocabulary");
    v->size = TOK_FIRST + (int)n_chars;
    for (int t = 0; t < TOK_FIRST; t++) v->cp[t] = -1;
    return ERR_OK;
}

err_code txt_vocab_build(txt_vocab *v, const int32_t *cp, size_t n)
{
    if (!v) return err_set(ERR_ARG, "txt_vocab_build: no output");
    *v = (txt_vocab){ 0 };
    if (!cp && n) return err_set(ERR_ARG, "txt_vocab_build: no input");
    /* One bit per code point: reading the set bits in order gives the
     * distinct characters already sorted, in time linear in n. */
    enum { N_CP = 0x110000 };
    uint8_t *seen = calloc(N_CP / 8, 1);
    if (!seen) return err_set(ERR_NOMEM, "out of memory building the vocabulary");
    size_t distinct = 0;
    int32_t max_cp = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t c = cp[i];
        /* NUL is refused too: it cannot travel through the JSON form. */
        if (c == 0 || !utf8proc_codepoint_valid(c)) {
            free(seen);
            return err_set(ERR_ARG, "invalid code point U+%04X in the text", (unsigned)c);
        }
        if (!(seen[c >> 3] & (1u << (c & 7)))) {
            seen[c >> 3] |= (uint8_t)(1u << (c & 7));
            distinct++;
        }
        if (c > max_cp) max_cp = c;
    }
    err_code e = vocab_alloc(v, distinct);
    if (!e) {
        int t = TOK_FIRST;
        for (int32_t byte = 0; byte <= max_cp / 8; byte++)
            for (int bit = 0; seen[byte] >> bit; bit++)
                if (seen[byte] & (1u << bit)) v->cp[t++] = byte * 8 + bit;
    }
    free(seen);
    return e;
}

void txt_vocab_free(txt_vocab *v)
{
    if (!v) return;
    free(v->cp);
    *v = (txt_vocab){ 0 };
}

int txt_vocab_token(const txt_vocab *v, int32_t cp)
{
    if (!v || !v->cp) return -1;
    int lo = TOK_FIRST, hi = v->size - 1;   /* binary search over cp[lo..hi] */
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        if (v->cp[mid] == cp) return mid;
        if (v->cp[mid] < cp) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

err_code txt_vocab_encode(const txt_vocab *v, const int32_t *cp, size_t n, int *tok)
{
    if (!v || ((!cp || !tok) && n)) return err_set(ERR_ARG, "txt_vocab_encode: missing argument");
    for (size_t i = 0; i < n; i++) {
        tok[i] = txt_vocab_token(v, cp[i]);
        if (tok[i] >= 0) continue;
        char s[8];
        if (is_control(cp[i]) || !txt_encode_cp(cp[i], s))
            return err_set(ERR_ARG, "character U+%04X is not in the vocabulary", (unsigned)cp[i]);
        return err_set(ERR_ARG, "character '%s' (U+%04X) is not in the vocabulary", s, (unsigned)cp[i]);
    }
    return ERR_OK;
}

const char *txt_token_str(const txt_vocab *v, int tok, char *buf)
{
    if (!buf) return "";
    if (tok >= 0 && tok < TOK_FIRST) strcpy(buf, SPECIALS[tok]);
    else if (!v || !v->cp || tok < 0 || tok >= v->size || !txt_encode_cp(v->cp[tok], buf))
        strcpy(buf, "<?>");
    return buf;
}

err_code txt_vocab_to_json(const txt_vocab *v, char **json)
{
    if (!json) return err_set(ERR_ARG, "txt_vocab_to_json: no output");
    *json = NULL;
    if (!v || !v->cp) return err_set(ERR_ARG, "txt_vocab_to_json: no vocabulary");
    cJSON *arr = cJSON_CreateArray();
    int ok = arr != NULL;
    for (int t = 0; ok && t < v->size; t++) {
        char buf[8];
        cJSON *s = cJSON_CreateString(txt_token_str(v, t, buf));
        ok = s && cJSON_AddItemToArray(arr, s);
        if (!ok) cJSON_Delete(s);
    }
    char *printed = ok ? cJSON_PrintUnformatted(arr) : NULL;
    cJSON_Delete(arr);
    /* A copy so that the caller frees with free(), whatever cJSON's hooks. */
    if (printed) *json = strdup(printed);
    cJSON_free(printed);
    return *json ? ERR_OK : err_set(ERR_NOMEM, "out of memory writing the vocabulary");
}

/* The single code point that string s (NUL-terminated UTF-8) consists of,
 * or -1 if it is not exactly one valid, non-NUL code point. */
static int32_t single_cp(const char *s)
{
    size_t len = strlen(s);
    int32_t c;
    utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)len, &c);
    return (len > 0 && k == (utf8proc_ssize_t)len) ? c : -1;
}

/* Checks the parsed array against the format of txt_vocab_to_json and
 * fills v; the caller has zeroed v and frees it on error. */
static err_code vocab_from_array(txt_vocab *v, const cJSON *arr)
{
    if (!cJSON_IsArray(arr)) return err_set(ERR_FORMAT, "vocabulary is not a JSON array");
    int size = cJSON_GetArraySize(arr);
    if (size < TOK_FIRST || size > TXT_VOCAB_MAX)
        return err_set(ERR_FORMAT, "vocabulary has %d tokens (expected %d to %d)",
                       size, TOK_FIRST, TXT_VOCAB_MAX);
    err_code e = vocab_alloc(v, (size_t)(size - TOK_FIRST));
    if (e) return e;
    int t = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, arr) {
        const char *s = cJSON_GetStringValue(item);
        if (!s) return err_set(ERR_FORMAT, "vocabulary token %d is not a string", t);
        if (t < TOK_FIRST) {
            if (strcmp(s, SPECIALS[t]) != 0)
                return err_set(ERR_FORMAT, "vocabulary token %d must be \"%s\"", t, SPECIALS[t]);
        } else {
            int32_t c = single_cp(s);
            if (c < 0) return err_set(ERR_FORMAT, "vocabulary token %d is not one valid UTF-8 character", t);
            if (t > TOK_FIRST && c <= v->cp[t - 1])
                return err_set(ERR_FORMAT, "vocabulary token %d is not in ascending order", t);
            v->cp[t] = c;
        }
        t++;
    }
    return ERR_OK;
}

/* Commas outside strings + 1: at least the element count of a JSON array,
 * counted without allocating (a hostile vocabulary of 10^7 tokens would
 * cost cJSON gigabytes before its size could be checked). */
static size_t json_elements_bound(const char *json)
{
    size_t n = 1;
    bool in_string = false;
    for (const char *p = json; *p; p++) {
        if (in_string && *p == '\\' && p[1]) p++;
        else if (*p == '"') in_string = !in_string;
        else if (!in_string && *p == ',') n++;
    }
    return n;
}

err_code txt_vocab_from_json(txt_vocab *v, const char *json)
{
    if (!v) return err_set(ERR_ARG, "txt_vocab_from_json: no output");
    *v = (txt_vocab){ 0 };
    if (!json) return err_set(ERR_FORMAT, "vocabulary is missing");
    /* cJSON turns "\u0000" into an early end of string, which would make
     * "a\u0000b" read as "a": refuse the escape outright. */
    for (const char *p = strstr(json, "\\u"); p; p = strstr(p + 2, "\\u"))
        if (strncmp(p + 2, "0000", 4) == 0)
            return err_set(ERR_FORMAT, "vocabulary contains a NUL character");
    if (json_elements_bound(json) > TXT_VOCAB_MAX)
        return err_set(ERR_FORMAT, "vocabulary has more than %d tokens", TXT_VOCAB_MAX);
    cJSON *arr = cJSON_ParseWithOpts(json, NULL, 1);
    if (!arr) return err_set(ERR_FORMAT, "vocabulary is not valid JSON");
    err_code e = vocab_from_array(v, arr);
    cJSON_Delete(arr);
    if (e) txt_vocab_free(v);
    return e;
}
