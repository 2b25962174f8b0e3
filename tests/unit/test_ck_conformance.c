/* test_ck_conformance.c - the checkpoint reader against the reference
 * safetensors reader (huggingface/safetensors, safetensors/src/tensor.rs:
 * SafeTensors::read_metadata, Metadata::validate, Dtype, and its tests).
 *
 * Each case edits one small valid checkpoint (BASE) and gives the
 * reference's verdict on the resulting bytes, villes' verdict, and a part
 * of villes' message.  The reference verdicts were obtained by running
 * read_metadata on these exact bytes (the seed files below); villes never
 * accepts what the reference rejects, and rejects what it accepts only
 * where include/checkpoint.h says villes is stricter (the unsupported
 * dtypes and conformance_stricter).
 *
 * Every case is also a seed of the checkpoint fuzzer,
 * tests/fuzz/seeds-fuzz_checkpoint/conf_<id>.safetensors, checked here to
 * hold the same bytes; CK_WRITE_SEEDS=1 build/tests/test_ck_conformance
 * rewrites them after a change to the table. */
#include "checkpoint.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>

/* Metadata and three tensors, the first one empty (its offsets [0,0] are
 * also where the next one begins). */
static const char BASE[] =
    "{\"__metadata__\":{\"format\":\"villes\",\"model\":\"mlp\"},"
    "\"none\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[0,0]},"
    "\"emb.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
    "\"ids\":{\"dtype\":\"I32\",\"shape\":[4],\"data_offsets\":[24,40]}}";
enum { BASE_DATA = 40 };
#define BASE_LEN (sizeof BASE - 1)   /* 230 bytes */

enum { BAD, OK };

typedef struct ck_case {
    const char *id;     /* names the file: conf_<id>(.safetensors) */
    const char *find;   /* its first occurrence in BASE becomes repl; NULL: repl is the header */
    const char *repl;
    long        data;   /* bytes added to (or, negative, removed from) the BASE_DATA data bytes */
    uint64_t    n;      /* header length written in the 8-byte prefix; 0: the header's own */
    size_t      keep;   /* only the first `keep` bytes of the file; 0: all of them */
    int         ref;    /* the reference's verdict on these bytes */
    int         villes; /* villes' verdict */
    const char *msg;    /* part of villes' message when it rejects */
} ck_case;

#define EDIT(f, r) .find = f, .repl = r
#define HEADER(h) .find = NULL, .repl = h
#define AS_IS EDIT("", "")
/* The last tensor, "ids", as dtype D with shape S and data_offsets [24, E]. */
#define IDS(d, s, e) EDIT("\"I32\",\"shape\":[4],\"data_offsets\":[24,40]", \
                          "\"" d "\",\"shape\":" s ",\"data_offsets\":[24," e "]")
/* An unsupported dtype with a shape of 16 bytes, valid to the reference. */
#define OTHER_DTYPE(d, s) \
    { "dtype_" d, EDIT("\"I32\",\"shape\":[4]", "\"" d "\",\"shape\":" s), .ref = OK, .villes = BAD, \
      .msg = "tensor 'ids': unsupported dtype " d " (villes reads F32 and I32)" }

/* The file of case c (header edited, data bytes 0, 1, 2, ...). */
static uint8_t *case_bytes(const ck_case *c, size_t *len)
{
    char header[1024];
    const char *at = c->find ? strstr(BASE, c->find) : NULL;
    CHECK(!c->find || at);   /* an edit must apply */
    if (at)
        snprintf(header, sizeof header, "%.*s%s%s", (int)(at - BASE), BASE, c->repl, at + strlen(c->find));
    else
        snprintf(header, sizeof header, "%s", c->repl);
    size_t h = strlen(header), data = (size_t)(BASE_DATA + c->data);
    uint64_t n = c->n ? c->n : h;
    *len = 8 + h + data;
    uint8_t *b = malloc(*len);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(n >> (8 * i));
    memcpy(b + 8, header, h);
    for (size_t i = 0; i < data; i++) b[8 + h + i] = (uint8_t)i;
    if (c->keep && c->keep < *len) *len = c->keep;
    return b;
}

/* The seed file of case c holds exactly its bytes (or is written, under CK_WRITE_SEEDS). */
static void check_seed(const ck_case *c, const uint8_t *b, size_t len)
{
    char path[256];
    snprintf(path, sizeof path, "tests/fuzz/seeds-fuzz_checkpoint/conf_%s.safetensors", c->id);
    const char *write = getenv("CK_WRITE_SEEDS");
    FILE *fp = fopen(path, write && *write ? "wb" : "rb");
    CHECK(fp != NULL);
    if (!fp) { fprintf(stderr, "  %s: missing (CK_WRITE_SEEDS=1 writes it)\n", path); return; }
    if (write && *write) {
        CHECK(fwrite(b, 1, len, fp) == len);
    } else {
        uint8_t *seed = malloc(len + 1);
        size_t got = fread(seed, 1, len + 1, fp);
        CHECK(got == len && memcmp(seed, b, len) == 0);
        if (got != len || memcmp(seed, b, len)) fprintf(stderr, "  %s differs from the table\n", path);
        free(seed);
    }
    fclose(fp);
}

static void run_cases(const ck_case *cases, size_t n_cases)
{
    for (size_t i = 0; i < n_cases; i++) {
        const ck_case *c = &cases[i];
        /* villes never accepts a file the reference rejects. */
        CHECK(!(c->villes == OK && c->ref == BAD));
        size_t len;
        uint8_t *b = case_bytes(c, &len);
        char name[128];
        snprintf(name, sizeof name, "conf_%s", c->id);
        ck_file f;
        err_code err = ck_parse(name, b, len, &f);
        const char *m = err ? err_msg() : "";
        size_t nl = strlen(name);
        int good = c->villes == OK ? err == ERR_OK
                                   : err == ERR_FORMAT && !strncmp(m, name, nl) && !strncmp(m + nl, ": ", 2)
                                         && !strchr(m, '\n') && strstr(m, c->msg);
        CHECK(good);
        if (!good)
            fprintf(stderr, "  case %s: expected %s '%s', got %d '%s'\n", c->id,
                    c->villes == OK ? "OK" : "ERR_FORMAT", c->villes == OK ? "" : c->msg, (int)err, m);
        ck_free(&f);
        check_seed(c, b, len);
        free(b);
    }
}

#define RUN(cases) run_cases(cases, sizeof cases / sizeof *cases)

/* ---------- the 8-byte prefix and the header's length ---------- */

TEST(conformance_header_length)
{
    static const ck_case cases[] = {
        { "base", AS_IS, .ref = OK, .villes = OK },
        { "seven_bytes", AS_IS, .keep = 7, .ref = BAD, .villes = BAD, .msg = "too short for a safetensors file (7 bytes)" },
        { "prefix_only", AS_IS, .keep = 8, .ref = BAD, .villes = BAD,
          .msg = "truncated: header says 230 bytes, 0 follow the 8-byte length" },
        { "length_zero", HEADER(""), .ref = BAD, .villes = BAD, .msg = "header is empty" },
        { "length_above_limit", AS_IS, .n = 100000001, .ref = BAD, .villes = BAD,
          .msg = "header length 100000001 exceeds the limit of 100000000 bytes" },
        { "length_huge", AS_IS, .n = 0xffffff000000003cu, .ref = BAD, .villes = BAD, .msg = "exceeds the limit" },
        { "length_past_end", AS_IS, .n = BASE_LEN + 41, .ref = BAD, .villes = BAD,
          .msg = "truncated: header says 271 bytes, 270 follow the 8-byte length" },
        { "length_into_data", AS_IS, .n = BASE_LEN + 4, .ref = BAD, .villes = BAD,
          .msg = "byte 0x00 outside a string at byte 230 of the header" },
        { "length_one_short", AS_IS, .n = BASE_LEN - 1, .ref = BAD, .villes = BAD,
          .msg = "not valid JSON (error near byte 228 of the header)" },
    };
    RUN(cases);
}

/* ---------- whitespace around and inside the header ---------- */

TEST(conformance_whitespace)
{
    static const ck_case cases[] = {
        { "leading_ws", EDIT("{\"__", " \t\r\n{\"__"), .ref = OK, .villes = OK },
        { "trailing_ws", EDIT("[24,40]}}", "[24,40]}} \t\r\n"), .ref = OK, .villes = OK },
        { "ws_between_tokens", EDIT("\"shape\":[2,3],", "\"shape\" :\n[ 2 ,\t3 ] ,\r\n"), .ref = OK, .villes = OK },
        { "leading_formfeed", EDIT("{\"__", "\f{\"__"), .ref = BAD, .villes = BAD,
          .msg = "byte 0x0c outside a string at byte 0 of the header" },
        { "trailing_vtab", EDIT("[24,40]}}", "[24,40]}}\v"), .ref = BAD, .villes = BAD,
          .msg = "byte 0x0b outside a string at byte 230 of the header" },
        { "trailing_nul", EDIT("[24,40]}}", "[24,40]}}  "), .n = BASE_LEN + 3, .ref = BAD, .villes = BAD,
          .msg = "byte 0x00 outside a string at byte 232 of the header" },
        { "leading_bom", EDIT("{\"__", "\xef\xbb\xbf{\"__"), .ref = BAD, .villes = BAD,
          .msg = "byte 0xef outside a string at byte 0 of the header" },
        { "leading_nbsp", EDIT("{\"__", "\xc2\xa0{\"__"), .ref = BAD, .villes = BAD,
          .msg = "byte 0xc2 outside a string at byte 0 of the header" },
        { "ws_only", HEADER(" \n "), .data = -BASE_DATA, .ref = BAD, .villes = BAD,
          .msg = "not valid JSON (error near byte 2 of the header)" },
        { "not_object", HEADER(" [] "), .data = -BASE_DATA, .ref = BAD, .villes = BAD, .msg = "header is not a JSON object" },
        { "two_objects", EDIT("[24,40]}}", "[24,40]}}{}"), .ref = BAD, .villes = BAD,
          .msg = "trailing data at byte 230 of the header" },
    };
    RUN(cases);
}

/* ---------- strings: control bytes, escapes, UTF-8 ---------- */

TEST(conformance_strings)
{
    static const ck_case cases[] = {
        { "tab_in_value", EDIT("\"mlp\"", "\"m\tlp\""), .ref = BAD, .villes = BAD,
          .msg = "control byte 0x09 in a string at byte 45 of the header" },
        { "lf_in_name", EDIT("\"ids\"", "\"i\nds\""), .ref = BAD, .villes = BAD,
          .msg = "control byte 0x0a in a string at byte 175 of the header" },
        { "cr_in_key", EDIT("\"model\"", "\"mo\rdel\""), .ref = BAD, .villes = BAD, .msg = "control byte 0x0d in a string" },
        { "unit_sep_in_value", EDIT("\"mlp\"", "\"mlp\x1f\""), .ref = BAD, .villes = BAD, .msg = "control byte 0x1f in a string" },
        { "del_in_name", EDIT("\"ids\"", "\"i\x7f" "ds\""), .ref = OK, .villes = OK },
        { "escaped_tab", EDIT("\"mlp\"", "\"m\\tlp\""), .ref = OK, .villes = OK },
        { "escapes", EDIT("\"mlp\"", "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\u00E9\""), .ref = OK, .villes = OK },
        { "surrogate_pair", EDIT("\"mlp\"", "\"\\ud83d\\ude00\""), .ref = OK, .villes = OK },
        { "lone_high_surrogate", EDIT("\"mlp\"", "\"\\ud800\""), .ref = BAD, .villes = BAD, .msg = "not valid JSON" },
        { "lone_low_surrogate", EDIT("\"mlp\"", "\"\\udc00\""), .ref = BAD, .villes = BAD, .msg = "not valid JSON" },
        { "bad_escape", EDIT("\"mlp\"", "\"\\x41\""), .ref = BAD, .villes = BAD,
          .msg = "not valid JSON (invalid escape at byte 44 of the header)" },
        { "short_unicode_escape", EDIT("\"mlp\"", "\"\\u12\""), .ref = BAD, .villes = BAD, .msg = "invalid escape" },
        /* cJSON reads a \u with bad hex digits as NUL. */
        { "bad_hex_escape", EDIT("\"mlp\"", "\"m\\u:lp\""), .ref = BAD, .villes = BAD,
          .msg = "not valid JSON (invalid escape at byte 45 of the header)" },
        { "bad_hex_escape_name", EDIT("\"ids\"", "\"ids\\u00g9\""), .ref = BAD, .villes = BAD, .msg = "invalid escape" },
        { "utf8_name", EDIT("\"ids\"", "\"id\xc3\xa9s\""), .ref = OK, .villes = OK },
        { "invalid_utf8", EDIT("\"mlp\"", "\"m\xfflp\""), .ref = BAD, .villes = BAD,
          .msg = "header is not valid UTF-8 (byte 45 of the header)" },
        { "overlong_utf8", EDIT("\"mlp\"", "\"\xc0\xaf\""), .ref = BAD, .villes = BAD, .msg = "not valid UTF-8" },
        { "utf8_surrogate", EDIT("\"mlp\"", "\"\xed\xa0\x80\""), .ref = BAD, .villes = BAD, .msg = "not valid UTF-8" },
        { "cut_utf8", EDIT("\"mlp\"", "\"\xe2\x82\""), .ref = BAD, .villes = BAD, .msg = "not valid UTF-8" },
        { "unterminated_string", HEADER("{\"a"), .data = -BASE_DATA, .ref = BAD, .villes = BAD, .msg = "not valid JSON" },
        { "single_quotes", EDIT("\"mlp\"", "'mlp'"), .ref = BAD, .villes = BAD, .msg = "not valid JSON" },
    };
    RUN(cases);
}

/* ---------- numbers in shape and data_offsets ---------- */

TEST(conformance_numbers)
{
    static const ck_case cases[] = {
        { "shape_leading_zero", EDIT("[2,3]", "[2,03]"), .ref = BAD, .villes = BAD,
          .msg = "malformed number at byte 147 of the header" },
        { "offset_leading_zero", EDIT("[0,24]", "[0,024]"), .ref = BAD, .villes = BAD, .msg = "malformed number" },
        { "offset_zero_zero", EDIT("[0,24]", "[00,24]"), .ref = BAD, .villes = BAD, .msg = "malformed number" },
        { "shape_float", EDIT("[2,3]", "[2,3.0]"), .ref = BAD, .villes = BAD,
          .msg = "tensor 'emb.weight': shape is not a list of non-negative integers" },
        { "shape_exponent", EDIT("[2,3]", "[2,0.3e1]"), .ref = BAD, .villes = BAD, .msg = "shape is not a list of non-negative integers" },
        { "shape_exponent_int", EDIT("[2,3]", "[2,3E0]"), .ref = BAD, .villes = BAD, .msg = "shape is not a list of non-negative integers" },
        { "offset_float", EDIT("[24,40]", "[24,40.0]"), .ref = BAD, .villes = BAD,
          .msg = "tensor 'ids': data_offsets is not [begin, end]" },
        { "offset_exponent", EDIT("[24,40]", "[2.4e1,40]"), .ref = BAD, .villes = BAD, .msg = "data_offsets is not [begin, end]" },
        { "shape_trailing_dot", EDIT("[2,3]", "[2,3.]"), .ref = BAD, .villes = BAD, .msg = "malformed number" },
        { "shape_exponent_no_digit", EDIT("[2,3]", "[2,3e]"), .ref = BAD, .villes = BAD, .msg = "malformed number" },
        { "shape_leading_dot", EDIT("[2,3]", "[2,.3]"), .ref = BAD, .villes = BAD, .msg = "not valid JSON" },
        { "offset_minus_zero", EDIT("[0,24]", "[-0,24]"), .ref = BAD, .villes = BAD, .msg = "data_offsets is not [begin, end]" },
        { "shape_minus_zero", EDIT("[0,5]", "[-0,5]"), .ref = BAD, .villes = BAD,
          .msg = "tensor 'none': shape is not a list of non-negative integers" },
        { "shape_negative", EDIT("[2,3]", "[-2,-3]"), .ref = BAD, .villes = BAD, .msg = "shape is not a list of non-negative integers" },
        { "shape_plus", EDIT("[2,3]", "[+2,3]"), .ref = BAD, .villes = BAD, .msg = "not valid JSON" },
        { "shape_lone_minus", EDIT("[2,3]", "[2,-]"), .ref = BAD, .villes = BAD, .msg = "malformed number" },
        { "shape_hex", EDIT("[2,3]", "[2,0x3]"), .ref = BAD, .villes = BAD, .msg = "not valid JSON" },
        { "shape_string", EDIT("[2,3]", "[2,\"3\"]"), .ref = BAD, .villes = BAD, .msg = "shape is not a list of non-negative integers" },
        { "shape_null", EDIT("[2,3]", "null"), .ref = BAD, .villes = BAD, .msg = "shape is not a list" },
        { "shape_infinity", EDIT("[2,3]", "[2,Infinity]"), .ref = BAD, .villes = BAD, .msg = "not valid JSON" },
        { "offset_above_2p53", EDIT("[24,40]", "[24,9007199254740993]"), .ref = BAD, .villes = BAD,
          .msg = "tensor 'ids': data_offsets too large (above 2^53)" },
        { "offset_above_u64", EDIT("[24,40]", "[24,18446744073709551616]"), .ref = BAD, .villes = BAD,
          .msg = "data_offsets too large" },
        { "shape_above_u64", EDIT("[0,5]", "[0,18446744073709551616]"), .ref = BAD, .villes = BAD,
          .msg = "tensor 'none': shape has a dimension too large (above 2^53)" },
        { "shape_product_overflow", EDIT("[4],\"data_offsets\":[24,40]", "[2,18446744073709551614],\"data_offsets\":[24,40]"),
          .ref = BAD, .villes = BAD, .msg = "shape has a dimension too large" },
        { "bytes_overflow", EDIT("[4],\"data_offsets\":[24,40]", "[2,9223372036854775807],\"data_offsets\":[24,40]"),
          .ref = BAD, .villes = BAD, .msg = "shape has a dimension too large" },
        { "too_many_elements", EDIT("[4],\"data_offsets\":[24,40]", "[2,4503599627370496],\"data_offsets\":[24,40]"),
          .ref = BAD, .villes = BAD, .msg = "tensor 'ids': shape has too many elements" },
        { "spaces_in_lists", EDIT("[2,3],\"data_offsets\":[0,24]", "[ 2 , 3 ],\"data_offsets\":[ 0 , 24 ]"),
          .ref = OK, .villes = OK },
    };
    RUN(cases);
}

/* ---------- offsets, sizes and the data section ---------- */

TEST(conformance_offsets)
{
    static const ck_case cases[] = {
        { "scalar", IDS("I32", "[]", "28"), .data = -12, .ref = OK, .villes = OK },
        { "empty_last", IDS("I32", "[4,0]", "24"), .data = -16, .ref = OK, .villes = OK },
        { "eight_dims", EDIT("[0,5]", "[0,1,1,1,1,1,1,1]"), .ref = OK, .villes = OK },
        { "data_order_differs",
          EDIT("[0,24]},\"ids\":{\"dtype\":\"I32\",\"shape\":[4],\"data_offsets\":[24,40]",
               "[16,40]},\"ids\":{\"dtype\":\"I32\",\"shape\":[4],\"data_offsets\":[0,16]"), .ref = OK, .villes = OK },
        { "gap", EDIT("[24,40]", "[28,44]"), .data = 4, .ref = BAD, .villes = BAD, .msg = "gap of 4 bytes before tensor 'ids'" },
        { "overlap", EDIT("[24,40]", "[20,36]"), .data = -4, .ref = BAD, .villes = BAD,
          .msg = "tensor 'ids' overlaps the previous one (starts at 20, previous ends at 24)" },
        { "end_before_begin", IDS("I32", "[4]", "20"), .ref = BAD, .villes = BAD,
          .msg = "data_offsets [24, 20] end before they begin" },
        { "size_mismatch", EDIT("[2,3]", "[3,3]"), .ref = BAD, .villes = BAD,
          .msg = "tensor 'emb.weight': data_offsets hold 24 bytes, shape needs 36" },
        { "trailing_bytes", AS_IS, .data = 4, .ref = BAD, .villes = BAD, .msg = "4 trailing bytes after the last tensor" },
        { "missing_bytes", AS_IS, .data = -4, .ref = BAD, .villes = BAD,
          .msg = "tensor 'ids' ends past the end of the file (data byte 40 of 36)" },
        { "three_offsets", EDIT("[24,40]", "[24,40,40]"), .ref = BAD, .villes = BAD, .msg = "data_offsets is not [begin, end]" },
        { "one_offset", EDIT("[24,40]", "[24]"), .ref = BAD, .villes = BAD, .msg = "data_offsets is not [begin, end]" },
        { "offsets_object", EDIT("[24,40]", "{\"0\":24,\"1\":40}"), .ref = BAD, .villes = BAD,
          .msg = "data_offsets is not [begin, end]" },
        { "same_offsets", EDIT("\"I32\",\"shape\":[4],\"data_offsets\":[24,40]", "\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]"),
          .data = -16, .ref = BAD, .villes = BAD, .msg = "overlaps the previous one" },
        { "no_tensors", HEADER("{}"), .data = -BASE_DATA, .ref = OK, .villes = OK },
        { "no_tensors_data", HEADER("{}"), .ref = BAD, .villes = BAD, .msg = "40 trailing bytes" },
    };
    RUN(cases);
}

/* ---------- dtypes ---------- */

TEST(conformance_dtypes)
{
    static const ck_case cases[] = {
        OTHER_DTYPE("BOOL", "[16]"), OTHER_DTYPE("F4", "[32]"), OTHER_DTYPE("U8", "[16]"),
        OTHER_DTYPE("I8", "[16]"), OTHER_DTYPE("F8_E5M2", "[16]"), OTHER_DTYPE("F8_E4M3", "[16]"),
        OTHER_DTYPE("F8_E8M0", "[16]"), OTHER_DTYPE("F8_E4M3FNUZ", "[16]"), OTHER_DTYPE("F8_E5M2FNUZ", "[16]"),
        OTHER_DTYPE("I16", "[8]"), OTHER_DTYPE("U16", "[8]"), OTHER_DTYPE("F16", "[8]"),
        OTHER_DTYPE("BF16", "[8]"), OTHER_DTYPE("U32", "[4]"), OTHER_DTYPE("C64", "[2]"),
        OTHER_DTYPE("F64", "[2]"), OTHER_DTYPE("I64", "[2]"), OTHER_DTYPE("U64", "[2]"),
        /* 6-bit types: 4 elements are 3 bytes. */
        { "dtype_F6_E2M3", IDS("F6_E2M3", "[4]", "27"), .data = -13, .ref = OK, .villes = BAD,
          .msg = "tensor 'ids': unsupported dtype F6_E2M3" },
        { "dtype_F6_E3M2", IDS("F6_E3M2", "[4]", "27"), .data = -13, .ref = OK, .villes = BAD,
          .msg = "tensor 'ids': unsupported dtype F6_E3M2" },
        /* 3 F4 elements are 1.5 bytes: the reference's MisalignedSlice. */
        { "dtype_F4_misaligned", IDS("F4", "[3]", "26"), .data = -14, .ref = BAD, .villes = BAD,
          .msg = "unsupported dtype F4" },
        { "dtype_F16_wrong_size", IDS("F16", "[4]", "40"), .ref = BAD, .villes = BAD, .msg = "unsupported dtype F16" },
        { "dtype_lowercase", IDS("i32", "[4]", "40"), .ref = BAD, .villes = BAD, .msg = "tensor 'ids': unknown dtype 'i32'" },
        { "dtype_unknown", IDS("F8", "[16]", "40"), .ref = BAD, .villes = BAD, .msg = "unknown dtype 'F8'" },
        { "dtype_empty", IDS("", "[4]", "40"), .ref = BAD, .villes = BAD, .msg = "unknown dtype ''" },
        { "dtype_number", EDIT("\"I32\"", "32"), .ref = BAD, .villes = BAD, .msg = "tensor 'ids': dtype is not a string" },
    };
    RUN(cases);
}

/* ---------- __metadata__ and the shape of entries ---------- */

TEST(conformance_entries)
{
    static const ck_case cases[] = {
        { "metadata_null", EDIT("{\"format\":\"villes\",\"model\":\"mlp\"}", "null"), .ref = OK, .villes = OK },
        { "metadata_empty", EDIT("{\"format\":\"villes\",\"model\":\"mlp\"}", "{}"), .ref = OK, .villes = OK },
        { "metadata_absent", EDIT("\"__metadata__\":{\"format\":\"villes\",\"model\":\"mlp\"},", ""), .ref = OK, .villes = OK },
        { "metadata_last", HEADER("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"__metadata__\":{\"k\":\"\"}}"),
          .data = -36, .ref = OK, .villes = OK },
        { "metadata_number", EDIT("\"mlp\"", "1"), .ref = BAD, .villes = BAD, .msg = "__metadata__ value of 'model' is not a string" },
        { "metadata_true", EDIT("\"mlp\"", "true"), .ref = BAD, .villes = BAD, .msg = "is not a string" },
        { "metadata_nested", EDIT("\"mlp\"", "{\"a\":\"b\"}"), .ref = BAD, .villes = BAD, .msg = "is not a string" },
        { "metadata_list", EDIT("{\"format\":\"villes\",\"model\":\"mlp\"}", "[]"), .ref = BAD, .villes = BAD,
          .msg = "__metadata__ is not an object" },
        { "metadata_twice", EDIT("\"none\":", "\"__metadata__\":{},\"none\":"), .ref = BAD, .villes = BAD,
          .msg = "duplicate __metadata__" },
        { "metadata_null_twice", EDIT("\"none\":", "\"__metadata__\":null,\"none\":"), .ref = BAD, .villes = BAD,
          .msg = "duplicate __metadata__" },
        { "tensor_not_object", EDIT("{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[0,0]}", "[]"), .ref = BAD,
          .villes = BAD, .msg = "tensor 'none' is not an object" },
        { "missing_dtype", EDIT("\"dtype\":\"I32\",", ""), .ref = BAD, .villes = BAD, .msg = "tensor 'ids' has no dtype" },
        { "missing_offsets", EDIT(",\"data_offsets\":[24,40]", ""), .ref = BAD, .villes = BAD,
          .msg = "tensor 'ids' has no data_offsets" },
        { "key_case", EDIT("\"dtype\":\"I32\"", "\"DTYPE\":\"I32\""), .ref = BAD, .villes = BAD, .msg = "unexpected key 'DTYPE'" },
        { "key_twice", EDIT("\"dtype\":\"I32\"", "\"dtype\":\"I32\",\"dtype\":\"I32\""), .ref = BAD, .villes = BAD,
          .msg = "tensor 'ids': duplicate key 'dtype'" },
        { "tensor_twice", EDIT("[24,40]}}", "[24,40]},\"ids\":{\"dtype\":\"I32\",\"shape\":[4],\"data_offsets\":[0,16]}}"),
          .ref = BAD, .villes = BAD, .msg = "duplicate tensor name 'ids'" },
        { "trailing_comma", EDIT("[24,40]}}", "[24,40]},}"), .ref = BAD, .villes = BAD, .msg = "not valid JSON" },
        { "missing_comma", EDIT("},\"ids\"", "}\"ids\""), .ref = BAD, .villes = BAD, .msg = "not valid JSON" },
        { "comment", EDIT("{\"__", "/**/{\"__"), .ref = BAD, .villes = BAD, .msg = "not valid JSON" },
    };
    RUN(cases);
}

/* ---------- where villes is stricter than the reference (checkpoint.h) ---------- */

TEST(conformance_stricter)
{
    static const ck_case cases[] = {
        { "unknown_key", EDIT("[24,40]}", "[24,40],\"x\":1}"), .ref = OK, .villes = BAD, .msg = "tensor 'ids': unexpected key 'x'" },
        { "unknown_key_float", EDIT("[24,40]}", "[24,40],\"x\":[1.5,{\"y\":null}]}"), .ref = OK, .villes = BAD,
          .msg = "unexpected key 'x'" },
        { "same_tensor_twice", EDIT("[24,40]}}", "[24,40]},\"ids\":{\"dtype\":\"I32\",\"shape\":[4],\"data_offsets\":[24,40]}}"),
          .ref = OK, .villes = BAD, .msg = "duplicate tensor name 'ids'" },
        { "same_metadata_twice", EDIT("\"mlp\"", "\"mlp\",\"model\":\"mlp\""), .ref = OK, .villes = BAD,
          .msg = "duplicate __metadata__ key 'model'" },
        { "nul_in_value", EDIT("\"mlp\"", "\"mlp\\u0000\""), .ref = OK, .villes = BAD,
          .msg = "header holds a \\u0000 escape at byte 47 of the header" },
        { "nul_in_name", EDIT("\"ids\"", "\"ids\\u0000\""), .ref = OK, .villes = BAD, .msg = "\\u0000 escape" },
        { "empty_name", EDIT("\"ids\"", "\"\""), .ref = OK, .villes = BAD, .msg = "empty tensor name" },
        { "nine_dims", EDIT("[0,5]", "[0,1,1,1,1,1,1,1,1]"), .ref = OK, .villes = BAD,
          .msg = "tensor 'none': 9 dimensions (at most 8)" },
        { "empty_dim_2p53", EDIT("[0,5]", "[0,9007199254740992]"), .ref = OK, .villes = BAD,
          .msg = "tensor 'none': shape has too many elements" },
        { "empty_dim_above_2p53", EDIT("[0,5]", "[0,9007199254740993]"), .ref = OK, .villes = BAD,
          .msg = "tensor 'none': shape has a dimension too large (above 2^53)" },
        { "empty_dim_2p60", EDIT("[0,5]", "[1152921504606846976,0]"), .ref = OK, .villes = BAD,
          .msg = "shape has a dimension too large (above 2^53)" },
    };
    RUN(cases);
}
