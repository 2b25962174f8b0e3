/* test_text.c - UTF-8 reading (BOM, CRLF, NFC, invalid bytes, control
 * characters), running text, command-line strings and the vocabulary. */
#include "test.h"
#include "text.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Line i of t re-encoded as UTF-8 (static buffer, for comparisons). */
static const char *line_utf8(const txt_lines *t, size_t i)
{
    static char buf[1024];
    size_t n = 0;
    for (size_t k = t->start[i]; k < t->start[i + 1] && n + 5 < sizeof buf; k++)
        n += (size_t)txt_encode_cp(t->cp[k], buf + n);
    buf[n] = '\0';
    return buf;
}

static err_code parse(const char *s, txt_lines *t)
{
    return txt_parse_lines("mem", (const uint8_t *)s, strlen(s), t);
}

/* Parsing `s` fails with `code` and exactly the message `msg`. */
static int parse_fails(const char *s, size_t len, err_code code, const char *msg)
{
    txt_lines t;
    err_code e = txt_parse_lines("mem", (const uint8_t *)s, len, &t);
    int ok = e == code && strcmp(err_msg(), msg) == 0 && t.n == 0 && !t.cp && !t.start;
    if (!ok) fprintf(stderr, "  input %zu bytes: got %d \"%s\", want %d \"%s\"\n", len, e, err_msg(), code, msg);
    txt_lines_free(&t);
    return ok;
}

TEST(text_bom_crlf_and_final_line)
{
    txt_lines t;
    CHECK(txt_read_lines(TEST_DATA("text_bom_crlf.txt"), &t) == ERR_OK);
    CHECK(t.n == 4);
    if (t.n == 4) {
        CHECK(strcmp(line_utf8(&t, 0), "Saint-Étienne") == 0);   /* no BOM, no \r */
        CHECK(strcmp(line_utf8(&t, 1), "L'Haÿ-les-Roses") == 0);
        CHECK(strcmp(line_utf8(&t, 2), "") == 0);
        CHECK(strcmp(line_utf8(&t, 3), "œuvre") == 0);            /* no final newline */
        CHECK(t.start[0] == 0 && t.start[4] == 13 + 15 + 0 + 5);
    }
    txt_lines_free(&t);
    CHECK(t.cp == NULL && t.n == 0);
}

TEST(text_line_counts)
{
    struct { const char *s; size_t n; } cases[] = {
        { "", 0 }, { "\xEF\xBB\xBF", 0 }, { "\n", 1 }, { "a", 1 }, { "a\n", 1 },
        { "a\nb", 2 }, { "a\n\nb\n", 3 }, { "a\r\nb\r\n", 2 }, { "\r\n\r\n", 2 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        txt_lines t;
        CHECK(parse(cases[i].s, &t) == ERR_OK);
        CHECK(t.n == cases[i].n);
        CHECK(t.start != NULL && t.start[0] == 0);
        txt_lines_free(&t);
    }
    txt_lines t;
    CHECK(parse("a\r\nbc\n", &t) == ERR_OK);
    CHECK(t.n == 2 && t.start[1] == 1 && t.start[2] == 3 && t.cp[0] == 'a');
    txt_lines_free(&t);
}

TEST(text_empty_file)
{
    txt_lines t;
    CHECK(txt_read_lines(TEST_DATA("text_empty.txt"), &t) == ERR_OK);
    CHECK(t.n == 0);
    CHECK(t.start && t.start[0] == 0);
    txt_lines_free(&t);
    CHECK(txt_parse_lines("null", NULL, 0, &t) == ERR_OK && t.n == 0);
    txt_lines_free(&t);
}

TEST(text_nfc_composes)
{
    txt_lines t;
    CHECK(txt_read_lines(TEST_DATA("text_nfc.txt"), &t) == ERR_OK);
    CHECK(t.n == 2);
    if (t.n == 2) {
        CHECK(t.start[1] == 4 && t.cp[3] == 0xE9);   /* "cafe" + U+0301 -> "café" */
        CHECK(t.start[2] - t.start[1] == 5 && t.cp[t.start[1]] == 0xC9);
    }
    txt_lines_free(&t);
    /* Reordering of combining marks: ccc 230 (U+0301) after ccc 220
     * (U+0323) is canonical; the other order is sorted then composed. */
    CHECK(parse("a\xCC\x81\xCC\xA3", &t) == ERR_OK);   /* a + acute + dot below */
    CHECK(t.start[1] == 2 && t.cp[0] == 0x1EA1 && t.cp[1] == 0x301);
    txt_lines_free(&t);
    /* Hangul jamo compose too. */
    CHECK(parse("\xE1\x84\x80\xE1\x85\xA1", &t) == ERR_OK);   /* U+1100 U+1161 */
    CHECK(t.start[1] == 1 && t.cp[0] == 0xAC00);
    txt_lines_free(&t);
}

TEST(text_invalid_utf8_names_line_and_byte)
{
    /* overlong '/' */
    CHECK(parse_fails("ab\n\xC0\xAF\n", 6, ERR_UTF8, "mem:2: invalid UTF-8 at byte 3"));
    /* lone continuation byte */
    CHECK(parse_fails("ok\r\nfine\r\nx\x80y", 13, ERR_UTF8, "mem:3: invalid UTF-8 at byte 11"));
    /* truncated sequence at the end of the file */
    CHECK(parse_fails("abc\n\xC3", 5, ERR_UTF8, "mem:2: invalid UTF-8 at byte 4"));
    CHECK(parse_fails("abc\xE2\x82", 5, ERR_UTF8, "mem:1: invalid UTF-8 at byte 3"));
    /* truncated sequence cut by a line end */
    CHECK(parse_fails("\xC3\nab\n", 4, ERR_UTF8, "mem:1: invalid UTF-8 at byte 0"));
    /* UTF-16 surrogate encoded in UTF-8 */
    CHECK(parse_fails("a\n\n\xED\xA0\x80", 6, ERR_UTF8, "mem:3: invalid UTF-8 at byte 3"));
    /* beyond U+10FFFF, and bytes never valid */
    CHECK(parse_fails("\xF4\x90\x80\x80", 4, ERR_UTF8, "mem:1: invalid UTF-8 at byte 0"));
    CHECK(parse_fails("abc\xFF", 4, ERR_UTF8, "mem:1: invalid UTF-8 at byte 3"));
    /* the offset counts the byte-order mark: it is an offset in the file */
    CHECK(parse_fails("\xEF\xBB\xBF" "ab\x80", 6, ERR_UTF8, "mem:1: invalid UTF-8 at byte 5"));

    txt_lines t;
    CHECK(txt_read_lines(TEST_DATA("text_invalid.txt"), &t) == ERR_UTF8);
    CHECK(strcmp(err_msg(), "tests/data/text_invalid.txt:3: invalid UTF-8 at byte 12") == 0);
    txt_lines_free(&t);
}

TEST(text_control_characters_rejected)
{
    /* NUL is valid UTF-8 but never part of a name (binary or UTF-16 file). */
    CHECK(parse_fails("abc\nab\0c\n", 9, ERR_FORMAT,
                      "mem:2: control character U+0000 at byte 6 (not a text file?)"));
    CHECK(parse_fails("a\rb\n", 4, ERR_FORMAT,
                      "mem:1: control character U+000D at byte 1 (not a text file?)"));
    CHECK(parse_fails("a\tb\n", 4, ERR_FORMAT,
                      "mem:1: control character U+0009 at byte 1 (not a text file?)"));
    CHECK(parse_fails("ab\xC2\x85", 4, ERR_FORMAT,
                      "mem:1: control character U+0085 at byte 2 (not a text file?)"));
}

TEST(text_missing_file)
{
    txt_lines t;
    CHECK(txt_read_lines("tests/data/no-such-file.txt", &t) == ERR_IO);
    CHECK(strncmp(err_msg(), "tests/data/no-such-file.txt: ", 29) == 0);
    int32_t *cp;
    size_t n;
    CHECK(txt_read_stream("tests/data/no-such-file.txt", &cp, &n) == ERR_IO);
    CHECK(cp == NULL && n == 0);
    CHECK(txt_read_lines("tests/data", &t) == ERR_IO);   /* a directory */
}

TEST(text_stdin)
{
    txt_lines t;
    CHECK(freopen(TEST_DATA("text_bom_crlf.txt"), "rb", stdin) != NULL);
    CHECK(txt_read_lines("-", &t) == ERR_OK);
    CHECK(t.n == 4);
    txt_lines_free(&t);
    CHECK(freopen(TEST_DATA("text_invalid.txt"), "rb", stdin) != NULL);
    CHECK(txt_read_lines("-", &t) == ERR_UTF8);
    CHECK(strcmp(err_msg(), "stdin:3: invalid UTF-8 at byte 12") == 0);
}

TEST(text_huge_file_refused)
{
    /* A sparse 300 MB file: refused from its size, before any reading. */
    char path[256];
    snprintf(path, sizeof path, "%s/villes-huge-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) return;
    CHECK(ftruncate(fd, 300L << 20) == 0);
    close(fd);
    txt_lines t;
    CHECK(txt_read_lines(path, &t) == ERR_IO);
    CHECK(strstr(err_msg(), "larger than 256 MiB") != NULL);
    remove(path);
}

TEST(text_stream_keeps_newlines)
{
    int32_t *cp;
    size_t n;
    CHECK(txt_read_stream(TEST_DATA("text_bom_crlf.txt"), &cp, &n) == ERR_OK);
    const char *want = "Saint-Étienne\nL'Haÿ-les-Roses\n\nœuvre";
    char buf[128];
    size_t k = 0;
    for (size_t i = 0; i < n && k + 5 < sizeof buf; i++) k += (size_t)txt_encode_cp(cp[i], buf + k);
    buf[k] = '\0';
    CHECK(strcmp(buf, want) == 0);
    free(cp);
}

TEST(text_stream_moliere)
{
    int32_t *cp;
    size_t n;
    CHECK(txt_read_stream("data/moliere.txt", &cp, &n) == ERR_OK);
    CHECK(n > 1000000);
    if (n > 0) {
        CHECK(cp[0] == 'O');   /* the byte-order mark is gone */
        size_t cr = 0, nl = 0;
        for (size_t i = 0; i < n; i++) cr += cp[i] == '\r', nl += cp[i] == '\n';
        CHECK(cr == 0);
        CHECK(nl > 50000);
    }
    free(cp);
}

TEST(text_decode_strings)
{
    int32_t *cp;
    size_t n;
    CHECK(txt_decode("Ve\xCC\x81zelay", &cp, &n) == ERR_OK);
    CHECK(n == 7 && cp[1] == 0xE9 && cp[6] == 'y');
    free(cp);
    CHECK(txt_decode("", &cp, &n) == ERR_OK && n == 0);
    free(cp);
    CHECK(txt_decode("ab\xC3", &cp, &n) == ERR_UTF8);
    CHECK(strcmp(err_msg(), "invalid UTF-8 at byte 2") == 0);
    CHECK(cp == NULL && n == 0);
    CHECK(txt_decode("a\nb", &cp, &n) == ERR_FORMAT);
}

TEST(text_encode_cp)
{
    char b[8];
    CHECK(txt_encode_cp('a', b) == 1 && strcmp(b, "a") == 0);
    CHECK(txt_encode_cp(0xDF, b) == 2 && strcmp(b, "ß") == 0);
    CHECK(txt_encode_cp(0x20AC, b) == 3 && strcmp(b, "€") == 0);
    CHECK(txt_encode_cp(0x1F600, b) == 4 && strcmp(b, "\xF0\x9F\x98\x80") == 0);
    CHECK(txt_encode_cp(0xD800, b) == 0 && b[0] == '\0');
    CHECK(txt_encode_cp(0x110000, b) == 0);
    CHECK(txt_encode_cp(-1, b) == 0);
}

/* ---- vocabulary --------------------------------------------------------- */

static err_code vocab_of(txt_vocab *v, const char *s)
{
    int32_t *cp;
    size_t n;
    err_code e = txt_decode(s, &cp, &n);
    if (!e) e = txt_vocab_build(v, cp, n);
    free(cp);
    return e;
}

TEST(vocab_build_sorted_distinct)
{
    txt_vocab v;
    CHECK(vocab_of(&v, "hello hé") == ERR_OK);
    CHECK(v.size == TOK_FIRST + 6);
    const int32_t want[] = { -1, -1, -1, ' ', 'e', 'h', 'l', 'o', 0xE9 };
    for (int t = 0; t < v.size && t < 9; t++) CHECK(v.cp[t] == want[t]);
    CHECK(txt_vocab_token(&v, 'h') == 5);
    CHECK(txt_vocab_token(&v, 0xE9) == 8);
    CHECK(txt_vocab_token(&v, ' ') == 3);
    CHECK(txt_vocab_token(&v, 'a') == -1);
    CHECK(txt_vocab_token(&v, 0x10FFFF) == -1);
    CHECK(txt_vocab_token(NULL, 'h') == -1);
    txt_vocab_free(&v);

    CHECK(txt_vocab_build(&v, NULL, 0) == ERR_OK && v.size == TOK_FIRST);
    txt_vocab_free(&v);
    int32_t bad[] = { 'a', 0xD800 };
    CHECK(txt_vocab_build(&v, bad, 2) == ERR_ARG);
    CHECK(v.cp == NULL && v.size == 0);
}

TEST(vocab_encode_names_unknown_character)
{
    txt_vocab v;
    CHECK(vocab_of(&v, "abcdefghijklmnopqrstuvwxyz") == ERR_OK);
    int32_t cp[] = { 'g', 'r', 'o', 0xDF, 'e' };
    int tok[5];
    CHECK(txt_vocab_encode(&v, cp, 3, tok) == ERR_OK);
    CHECK(tok[0] == TOK_FIRST + 6 && tok[2] == TOK_FIRST + 14);
    CHECK(txt_vocab_encode(&v, cp, 5, tok) == ERR_ARG);
    CHECK(strcmp(err_msg(), "character 'ß' (U+00DF) is not in the vocabulary") == 0);
    int32_t nl = '\n';
    CHECK(txt_vocab_encode(&v, &nl, 1, tok) == ERR_ARG);
    CHECK(strcmp(err_msg(), "character U+000A is not in the vocabulary") == 0);
    txt_vocab_free(&v);
}

TEST(vocab_token_str)
{
    txt_vocab v;
    CHECK(vocab_of(&v, "aœ") == ERR_OK);
    char b[8];
    CHECK(strcmp(txt_token_str(&v, TOK_PAD, b), "<pad>") == 0);
    CHECK(strcmp(txt_token_str(&v, TOK_SOS, b), "<SOS>") == 0);
    CHECK(strcmp(txt_token_str(&v, TOK_EOS, b), "<EOS>") == 0);
    CHECK(strcmp(txt_token_str(&v, 3, b), "a") == 0);
    CHECK(strcmp(txt_token_str(&v, 4, b), "œ") == 0);
    CHECK(strcmp(txt_token_str(&v, 5, b), "<?>") == 0);
    CHECK(strcmp(txt_token_str(&v, -1, b), "<?>") == 0);
    txt_vocab_free(&v);
}

TEST(vocab_json_round_trip)
{
    txt_vocab v, w;
    CHECK(vocab_of(&v, "eh lo") == ERR_OK);
    char *json;
    CHECK(txt_vocab_to_json(&v, &json) == ERR_OK);
    CHECK(strcmp(json, "[\"<pad>\",\"<SOS>\",\"<EOS>\",\" \",\"e\",\"h\",\"l\",\"o\"]") == 0);
    CHECK(txt_vocab_from_json(&w, json) == ERR_OK);
    CHECK(w.size == v.size && memcmp(w.cp, v.cp, (size_t)v.size * sizeof *v.cp) == 0);
    free(json);
    txt_vocab_free(&v);
    txt_vocab_free(&w);

    /* Characters JSON escapes, multi-byte ones, and '<' alone. */
    int32_t odd[] = { '\n', '"', '<', '\\', 0xE9, 0x153, 0x20AC, 0x1F600 };
    CHECK(txt_vocab_build(&v, odd, 8) == ERR_OK);
    CHECK(txt_vocab_to_json(&v, &json) == ERR_OK);
    CHECK(txt_vocab_from_json(&w, json) == ERR_OK);
    CHECK(w.size == v.size && memcmp(w.cp, v.cp, (size_t)v.size * sizeof *v.cp) == 0);
    free(json);
    txt_vocab_free(&v);
    txt_vocab_free(&w);

    /* Whitespace around tokens is valid JSON, and \u escapes decode. */
    CHECK(txt_vocab_from_json(&w, " [ \"<pad>\", \"<SOS>\",\"<EOS>\" , \"\\u00e9\" ]\n") == ERR_OK);
    CHECK(w.size == 4 && w.cp[3] == 0xE9);
    txt_vocab_free(&w);
}

TEST(vocab_from_json_rejects_malformed)
{
    const char *bad[] = {
        "",
        "not json",
        "{\"vocab\": []}",
        "\"<pad>\"",
        "[]",
        "[\"<pad>\",\"<SOS>\"]",
        "[\"<pad>\",\"<EOS>\",\"<SOS>\",\"a\"]",          /* specials out of order */
        "[\"<PAD>\",\"<SOS>\",\"<EOS>\",\"a\"]",
        "[\"<pad>\",\"<SOS>\",\"<EOS>\",1]",              /* not a string */
        "[\"<pad>\",\"<SOS>\",\"<EOS>\",null]",
        "[\"<pad>\",\"<SOS>\",\"<EOS>\",[\"a\"]]",
        "[\"<pad>\",\"<SOS>\",\"<EOS>\",\"ab\"]",         /* two characters */
        "[\"<pad>\",\"<SOS>\",\"<EOS>\",\"e\xCC\x81\"]",  /* two code points */
        "[\"<pad>\",\"<SOS>\",\"<EOS>\",\"\"]",
        "[\"<pad>\",\"<SOS>\",\"<EOS>\",\"b\",\"a\"]",    /* not ascending */
        "[\"<pad>\",\"<SOS>\",\"<EOS>\",\"a\",\"a\"]",    /* duplicate */
        "[\"<pad>\",\"<SOS>\",\"<EOS>\",\"\xC3\"]",       /* invalid UTF-8 */
        "[\"<pad>\",\"<SOS>\",\"<EOS>\",\"\xED\xA0\x80\"]",   /* surrogate */
        "[\"<pad>\",\"<SOS>\",\"<EOS>\",\"\\u0000\"]",
        "[\"<pad>\",\"<SOS>\",\"<EOS>\",\"a\\u0000b\"]",
        "[\"<pad>\",\"<SOS>\",\"<EOS>\",\"\\ud800\"]",
        "[\"<pad>\",\"<SOS>\",\"<EOS>\",\"a\"] x",        /* trailing garbage */
        "[\"<pad>\",\"<SOS>\",\"<EOS>\",\"a\"",           /* unterminated */
        "[\"<pad>\",\"<SOS>\",\"<EOS>\",\"<pad>\"]",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        txt_vocab v;
        err_code e = txt_vocab_from_json(&v, bad[i]);
        CHECK(e == ERR_FORMAT);
        if (e != ERR_FORMAT) fprintf(stderr, "  accepted: %s\n", bad[i]);
        CHECK(v.cp == NULL && v.size == 0);
        txt_vocab_free(&v);
    }
    txt_vocab v;
    CHECK(txt_vocab_from_json(&v, NULL) == ERR_FORMAT);
}

TEST(vocab_from_json_rejects_too_large)
{
    /* 70,000 ascending single characters (4 bytes each in UTF-8): more
     * tokens than any vocabulary may hold. */
    enum { N = 70000 };
    char *json = malloc(32 + (size_t)N * 7);
    size_t k = (size_t)sprintf(json, "[\"<pad>\",\"<SOS>\",\"<EOS>\"");
    for (int32_t c = 0x10000, i = 0; i < N; c++, i++) {
        json[k++] = ',';
        json[k++] = '"';
        k += (size_t)txt_encode_cp(c, json + k);
        json[k++] = '"';
    }
    strcpy(json + k, "]");
    txt_vocab v;
    CHECK(txt_vocab_from_json(&v, json) == ERR_FORMAT);
    CHECK(strstr(err_msg(), "tokens") != NULL);
    free(json);
}
