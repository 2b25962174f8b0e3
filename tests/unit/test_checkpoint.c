/* test_checkpoint.c - safetensors round trip, header bytes, atomic writes,
 * hostile files (each must be one ERR_FORMAT line naming the file), random
 * bytes, model checks and the file hash.  Files are generated here, in a
 * fresh temporary directory per test. */
#include "checkpoint.h"
#include "test.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------- helpers ---------- */

static char tmpdir[256];

static void make_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/ck-test-XXXXXX", base && *base ? base : "/tmp");
    CHECK(mkdtemp(tmpdir) != NULL);
}

static const char *tmp_path(const char *name)
{
    static char p[2][512];
    static int k;
    k ^= 1;
    snprintf(p[k], sizeof p[k], "%s/%s", tmpdir, name);
    return p[k];
}

/* Remove the files in tmpdir (one level of subdirectories) and tmpdir. */
static void remove_tmpdir(void)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    CHECK(system(cmd) == 0);
}

/* Number of entries in `dir` whose name contains `part`. */
static int count_entries(const char *dir, const char *part)
{
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (strstr(e->d_name, part)) n++;
    closedir(d);
    return n;
}

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n + 1);
    *len = fread(b, 1, (size_t)n, fp);
    fclose(fp);
    return b;
}

static void spit(const char *path, const void *buf, size_t len)
{
    FILE *fp = fopen(path, "wb");
    CHECK(fp != NULL);
    if (!fp) return;
    CHECK(fwrite(buf, 1, len, fp) == len);
    fclose(fp);
}

/* A safetensors image: 8-byte header length `n`, the header text, then
 * data_len bytes 0, 1, 2, ...  (`n` may lie about the header). */
static uint8_t *image_n(uint64_t n, const char *header, size_t data_len, size_t *len)
{
    size_t h = strlen(header);
    *len = 8 + h + data_len;
    uint8_t *b = malloc(*len + 1);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(n >> (8 * i));
    memcpy(b + 8, header, h);
    for (size_t i = 0; i < data_len; i++) b[8 + h + i] = (uint8_t)i;
    return b;
}

static uint8_t *image(const char *header, size_t data_len, size_t *len)
{
    return image_n(strlen(header), header, data_len, len);
}

static int is_empty(const ck_file *f)
{
    return !f->t && !f->n && !f->key && !f->val && !f->n_meta && !f->mem;
}

/* The buffer must be rejected with ERR_FORMAT, a single line that starts
 * with the file name and contains `needle`, and leave f empty. */
static void expect_bad_buf(const uint8_t *buf, size_t len, const char *needle)
{
    ck_file f;
    err_code err = ck_parse("bad.safetensors", buf, len, &f);
    const char *m = err_msg();
    CHECK(err == ERR_FORMAT);
    CHECK(strncmp(m, "bad.safetensors: ", 17) == 0);
    CHECK(strstr(m, needle) != NULL);
    CHECK(strchr(m, '\n') == NULL);
    CHECK(is_empty(&f));
    if (err != ERR_FORMAT || !strstr(m, needle))
        fprintf(stderr, "  expected '%s', got %d '%s'\n", needle, (int)err, m);
    ck_free(&f);
}

static void expect_bad(const char *header, size_t data_len, const char *needle)
{
    size_t len;
    uint8_t *b = image(header, data_len, &len);
    expect_bad_buf(b, len, needle);
    free(b);
}

static void expect_good(const char *header, size_t data_len, int n_tensors)
{
    size_t len;
    uint8_t *b = image(header, data_len, &len);
    ck_file f;
    err_code err = ck_parse("good.safetensors", b, len, &f);
    CHECK(err == ERR_OK);
    if (err) fprintf(stderr, "  unexpected error: %s\n", err_msg());
    CHECK(f.n == n_tensors);
    ck_free(&f);
    free(b);
}

/* A writer holding the tensors and metadata of the round-trip tests. */
static float w_a[3 * 4], w_b[2 * 3 * 5], w_scalar[1] = { -2.5f };
static int32_t w_ids[7];
static const int64_t sh_a[] = { 3, 4 }, sh_b[] = { 2, 3, 5 }, sh_ids[] = { 7 }, sh_empty[] = { 0, 3 };
static const char *vocab = "[\"<pad>\",\"<SOS>\",\"<EOS>\",\"-\",\"\\\"\",\"é\",\"œ\"]";

static ck_writer *sample_writer(void)
{
    for (int i = 0; i < 12; i++) w_a[i] = (float)i * 0.25f - 1.0f;
    for (int i = 0; i < 30; i++) w_b[i] = 1.0f / (float)(i + 1);
    for (int i = 0; i < 7; i++) w_ids[i] = i * 1000003 - 3;
    ck_writer *w = ck_writer_new();
    CHECK(w != NULL);
    CHECK(ck_put_meta(w, "format", CK_FORMAT) == ERR_OK);
    CHECK(ck_put_meta(w, "format_version", CK_FORMAT_VERSION) == ERR_OK);
    CHECK(ck_put_meta(w, "model", "transformer") == ERR_OK);
    CHECK(ck_put_meta(w, "vocab", vocab) == ERR_OK);
    CHECK(ck_put(w, "embedding.weight", CK_F32, 2, sh_a, w_a) == ERR_OK);
    CHECK(ck_put(w, "core.layers.0.x", CK_F32, 3, sh_b, w_b) == ERR_OK);
    CHECK(ck_put(w, "fixture.x", CK_I32, 1, sh_ids, w_ids) == ERR_OK);
    CHECK(ck_put(w, "scalar", CK_F32, 0, NULL, w_scalar) == ERR_OK);
    CHECK(ck_put(w, "empty", CK_F32, 2, sh_empty, NULL) == ERR_OK);
    return w;
}

/* ---------- round trip and the bytes on disk ---------- */

TEST(round_trip)
{
    make_tmpdir();
    ck_writer *w = sample_writer();
    const char *path = tmp_path("rt.safetensors");
    CHECK(ck_write(w, path) == ERR_OK);
    ck_writer_free(w);
    CHECK(count_entries(tmpdir, ".tmp.") == 0);

    ck_file f;
    CHECK(ck_read(path, &f) == ERR_OK);
    CHECK(f.n == 5 && f.n_meta == 4);
    const char *order[] = { "embedding.weight", "core.layers.0.x", "fixture.x", "scalar", "empty" };
    for (int i = 0; i < 5 && i < f.n; i++) {
        CHECK(strcmp(f.t[i].name, order[i]) == 0);
        CHECK((uintptr_t)f.t[i].data % 4 == 0);
    }
    const ck_tensor *a = ck_get(&f, "embedding.weight"), *b = ck_get(&f, "core.layers.0.x");
    const ck_tensor *ids = ck_get(&f, "fixture.x"), *s = ck_get(&f, "scalar"), *e = ck_get(&f, "empty");
    CHECK(a && b && ids && s && e);
    if (a && b && ids && s && e) {
        CHECK(a->dtype == CK_F32 && a->ndim == 2 && a->shape[0] == 3 && a->shape[1] == 4 && a->numel == 12);
        CHECK(memcmp(a->data, w_a, sizeof w_a) == 0);
        CHECK(b->ndim == 3 && b->shape[2] == 5 && b->numel == 30);
        CHECK(memcmp(b->data, w_b, sizeof w_b) == 0);
        CHECK(ids->dtype == CK_I32 && ids->numel == 7);
        CHECK(memcmp(ids->data, w_ids, sizeof w_ids) == 0);
        CHECK(s->ndim == 0 && s->numel == 1 && ((const float *)s->data)[0] == -2.5f);
        CHECK(e->ndim == 2 && e->shape[0] == 0 && e->shape[1] == 3 && e->numel == 0);
    }
    CHECK(ck_get(&f, "nope") == NULL && ck_get(NULL, "scalar") == NULL && ck_get(&f, NULL) == NULL);
    CHECK(ck_meta(&f, "vocab") && strcmp(ck_meta(&f, "vocab"), vocab) == 0);
    CHECK(ck_meta(&f, "model") && strcmp(ck_meta(&f, "model"), "transformer") == 0);
    CHECK(ck_meta(&f, "step") == NULL && ck_meta(NULL, "model") == NULL);

    /* The new file gets the mode a plain fopen would give it, not mkstemp's 0600. */
    struct stat st;
    mode_t mask = umask(0);
    umask(mask);
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == (0666 & ~mask));
    ck_free(&f);
    CHECK(is_empty(&f));
    ck_free(&f);   /* twice is harmless */
    ck_free(NULL);
    remove_tmpdir();
}

TEST(header_bytes)
{
    make_tmpdir();
    ck_writer *w = sample_writer();
    const char *path = tmp_path("hb.safetensors");
    CHECK(ck_write(w, path) == ERR_OK);
    ck_writer_free(w);
    size_t len;
    uint8_t *buf = slurp(path, &len);
    CHECK(buf && len > 8);
    if (!buf || len <= 8) { free(buf); remove_tmpdir(); return; }
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | buf[i];
    CHECK((8 + n) % 8 == 0);
    CHECK(8 + n + sizeof w_a + sizeof w_b + sizeof w_ids + sizeof w_scalar == len);
    /* Only the padding may follow the JSON text, and it is spaces. */
    size_t json_len = 0;
    while (json_len < n && buf[8 + json_len] != ' ') json_len++;
    CHECK(n - json_len < 8);
    for (size_t i = json_len; i < n; i++) CHECK(buf[8 + i] == ' ');

    cJSON *root = cJSON_ParseWithLength((const char *)buf + 8, (size_t)n);
    CHECK(root != NULL);
    if (root) {
        const char *keys[] = { "__metadata__", "embedding.weight", "core.layers.0.x", "fixture.x",
                               "scalar", "empty" };
        const cJSON *e = root->child;
        for (int i = 0; i < 6; i++, e = e ? e->next : NULL)
            CHECK(e && strcmp(e->string, keys[i]) == 0);
        CHECK(e == NULL);
        const cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, "__metadata__");
        CHECK(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(meta, "format")));
        CHECK(strcmp(cJSON_GetObjectItemCaseSensitive(meta, "vocab")->valuestring, vocab) == 0);
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(root, "fixture.x");
        CHECK(strcmp(cJSON_GetObjectItemCaseSensitive(x, "dtype")->valuestring, "I32") == 0);
        const cJSON *off = cJSON_GetObjectItemCaseSensitive(x, "data_offsets");
        CHECK(cJSON_GetArraySize(off) == 2);
        CHECK(cJSON_GetArrayItem(off, 0)->valuedouble == (double)(sizeof w_a + sizeof w_b));
        CHECK(cJSON_GetArrayItem(off, 1)->valuedouble == (double)(sizeof w_a + sizeof w_b + sizeof w_ids));
        const cJSON *sc = cJSON_GetObjectItemCaseSensitive(root, "scalar");
        CHECK(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(sc, "shape")) == 0);
        /* The raw tensor bytes sit at their offsets after the header. */
        CHECK(memcmp(buf + 8 + n + sizeof w_a + sizeof w_b, w_ids, sizeof w_ids) == 0);
        cJSON_Delete(root);
    }
    free(buf);
    remove_tmpdir();
}

TEST(no_metadata_and_no_tensors)
{
    make_tmpdir();
    ck_writer *w = ck_writer_new();
    const char *path = tmp_path("empty.safetensors");
    CHECK(ck_write(w, path) == ERR_OK);
    ck_writer_free(w);
    size_t len;
    uint8_t *buf = slurp(path, &len);
    CHECK(buf && len == 16 && memcmp(buf + 8, "{}      ", 8) == 0);
    free(buf);
    ck_file f;
    CHECK(ck_read(path, &f) == ERR_OK);
    CHECK(f.n == 0 && f.n_meta == 0 && ck_meta(&f, "format") == NULL);
    ck_free(&f);
    remove_tmpdir();
}

TEST(write_to_stdout)
{
    make_tmpdir();
    const char *path = tmp_path("stdout.safetensors");
    ck_writer *w = sample_writer();
    fflush(stdout);
    int saved = dup(1), fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(saved >= 0 && fd >= 0);
    dup2(fd, 1);
    close(fd);
    err_code err = ck_write(w, "-");
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    CHECK(err == ERR_OK);
    ck_writer_free(w);
    ck_file f;
    CHECK(ck_read(path, &f) == ERR_OK && f.n == 5);
    ck_free(&f);
    remove_tmpdir();
}

/* ---------- the writer's errors and atomicity ---------- */

TEST(put_errors)
{
    ck_writer *w = ck_writer_new();
    float x[4] = { 0 };
    int64_t sh[CK_MAX_DIMS + 1] = { 4, 1, 1, 1, 1, 1, 1, 1, 1 }, neg[] = { 2, -2 };
    CHECK(ck_put(w, "x", CK_F32, 1, sh, x) == ERR_OK);
    CHECK(ck_put(w, "x", CK_F32, 1, sh, x) == ERR_ARG);
    CHECK(strstr(err_msg(), "duplicate") && strstr(err_msg(), "'x'"));
    CHECK(ck_put(w, "neg", CK_F32, 2, neg, x) == ERR_ARG);
    CHECK(strstr(err_msg(), "negative") != NULL);
    CHECK(ck_put(w, "deep", CK_F32, CK_MAX_DIMS + 1, sh, x) == ERR_ARG);
    CHECK(ck_put(w, "minus", CK_F32, -1, sh, x) == ERR_ARG);
    CHECK(ck_put(w, "", CK_F32, 1, sh, x) == ERR_ARG);
    CHECK(ck_put(w, "__metadata__", CK_F32, 1, sh, x) == ERR_ARG);
    CHECK(ck_put(w, "nodata", CK_F32, 1, sh, NULL) == ERR_ARG);
    CHECK(ck_put(w, "noshape", CK_F32, 1, NULL, x) == ERR_ARG);
    CHECK(ck_put(w, "dtype", (ck_dtype)7, 1, sh, x) == ERR_ARG);
    CHECK(ck_put(NULL, "x", CK_F32, 1, sh, x) == ERR_ARG);
    CHECK(ck_put_meta(w, "model", "mlp") == ERR_OK);
    CHECK(ck_put_meta(w, "model", "rnn") == ERR_ARG);
    CHECK(ck_put_meta(w, NULL, "rnn") == ERR_ARG && ck_put_meta(NULL, "a", "b") == ERR_ARG);
    CHECK(ck_write(NULL, "x") == ERR_ARG);
    ck_writer_free(w);
    ck_writer_free(NULL);
}

TEST(write_into_missing_directory)
{
    make_tmpdir();
    ck_writer *w = sample_writer();
    const char *path = tmp_path("no/such/dir/x.safetensors");
    CHECK(ck_write(w, path) == ERR_IO);
    CHECK(strstr(err_msg(), path) != NULL && strstr(err_msg(), "No such file") != NULL);
    CHECK(access(tmp_path("no"), F_OK) != 0);
    CHECK(count_entries(tmpdir, "") == 2);   /* "." and ".." */
    ck_writer_free(w);
    remove_tmpdir();
}

/* A write that fails half way (file size limit) leaves the old file as it
 * was and no temporary file behind. */
TEST(failed_write_keeps_old_file)
{
    make_tmpdir();
    const char *path = tmp_path("keep.safetensors");
    ck_writer *w = sample_writer();
    CHECK(ck_write(w, path) == ERR_OK);
    ck_writer_free(w);
    size_t len0 = 0, len1 = 0;
    uint8_t *before = slurp(path, &len0);

    enum { BIG = 1 << 18 };
    float *big = calloc(BIG, sizeof *big);
    int64_t sh[] = { BIG };
    w = ck_writer_new();
    CHECK(ck_put(w, "big", CK_F32, 1, sh, big) == ERR_OK);
    struct rlimit old, lim;
    CHECK(getrlimit(RLIMIT_FSIZE, &old) == 0);
    lim = old;
    lim.rlim_cur = 1 << 16;
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    err_code err = ck_write(w, path);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, old_handler);
    CHECK(err == ERR_IO);
    CHECK(strstr(err_msg(), path) != NULL && strstr(err_msg(), "File too large") != NULL);
    uint8_t *after = slurp(path, &len1);
    CHECK(before && after && len0 == len1 && memcmp(before, after, len0) == 0);
    CHECK(count_entries(tmpdir, ".tmp.") == 0);
    free(before);
    free(after);
    free(big);
    ck_writer_free(w);
    remove_tmpdir();
}

TEST(rename_failure_cleans_up)
{
    make_tmpdir();
    const char *path = tmp_path("dir.safetensors");
    CHECK(mkdir(path, 0755) == 0);
    spit(tmp_path("dir.safetensors/inside"), "x", 1);
    ck_writer *w = sample_writer();
    CHECK(ck_write(w, path) == ERR_IO);
    CHECK(strstr(err_msg(), "rename") != NULL);
    CHECK(count_entries(tmpdir, ".tmp.") == 0);
    CHECK(count_entries(path, "inside") == 1);
    ck_writer_free(w);
    remove_tmpdir();
}

/* ---------- hostile files ---------- */

TEST(read_short_files)
{
    make_tmpdir();
    ck_file f;
    spit(tmp_path("empty.safetensors"), "", 0);
    CHECK(ck_read(tmp_path("empty.safetensors"), &f) == ERR_FORMAT && is_empty(&f));
    CHECK(strstr(err_msg(), "empty.safetensors: too short") != NULL);
    spit(tmp_path("seven.safetensors"), "\x02\0\0\0\0\0\0", 7);
    CHECK(ck_read(tmp_path("seven.safetensors"), &f) == ERR_FORMAT && is_empty(&f));
    CHECK(strstr(err_msg(), "seven.safetensors: too short") != NULL);
    CHECK(ck_read(tmp_path("missing.safetensors"), &f) == ERR_IO && is_empty(&f));
    CHECK(strstr(err_msg(), "missing.safetensors: No such file") != NULL);
    CHECK(ck_read(tmpdir, &f) == ERR_IO && is_empty(&f));
    expect_bad_buf((const uint8_t *)"", 0, "too short");
    remove_tmpdir();
}

TEST(header_length)
{
    size_t len;
    uint8_t *b = image_n(8000, "{}", 110, &len);
    expect_bad_buf(b, len, "truncated: header says 8000 bytes, 112 follow the 8-byte length");
    free(b);
    b = image_n((uint64_t)1 << 63, "{}", 0, &len);
    expect_bad_buf(b, len, "header length 9223372036854775808 exceeds the limit");
    free(b);
    b = image_n(UINT64_MAX, "{}", 0, &len);
    expect_bad_buf(b, len, "exceeds the limit");
    free(b);
    b = image_n(3, "{}", 0, &len);   /* one byte past the end */
    expect_bad_buf(b, len, "truncated");
    free(b);
    b = image_n(0, "", 0, &len);
    expect_bad_buf(b, len, "header is empty");
    free(b);
}

TEST(header_not_json)
{
    expect_bad("{nope}", 0, "not valid JSON");
    expect_bad("{\"a\":", 0, "not valid JSON");
    expect_bad("{} x", 0, "trailing data");
    expect_bad("{}{}", 0, "trailing data");
    expect_bad("[1,2,3]", 0, "not a JSON object");
    expect_bad("\"str\"", 0, "not a JSON object");
    expect_bad(" [] ", 0, "not a JSON object");
    expect_bad("{\"a\x01\":1}", 0, "control byte 0x01");
    expect_bad("{\"\xff\":1}", 0, "not valid UTF-8");
    expect_bad("{\"\xc3\":1}", 0, "not valid UTF-8");
    expect_bad("{\"a\\u0000b\":{}}", 0, "\\u0000");
    /* Whitespace around the object, an escaped backslash before "u0000" and
     * an object with no tensors are all fine. */
    expect_good("{}  \n ", 0, 0);
    expect_good(" \t\r\n{}", 0, 0);
    expect_good("{\"__metadata__\":{\"k\":\"a\\\\u0000\"}}", 0, 0);
}

TEST(bad_metadata)
{
    expect_bad("{\"__metadata__\":{\"format\":1}}", 0, "__metadata__ value of 'format' is not a string");
    expect_bad("{\"__metadata__\":{\"a\":null}}", 0, "not a string");
    expect_bad("{\"__metadata__\":{\"a\":{\"b\":\"c\"}}}", 0, "not a string");
    expect_bad("{\"__metadata__\":\"x\"}", 0, "__metadata__ is not an object");
    expect_bad("{\"__metadata__\":[]}", 0, "__metadata__ is not an object");
    expect_bad("{\"__metadata__\":{\"a\":\"1\",\"a\":\"2\"}}", 0, "duplicate __metadata__ key 'a'");
    expect_bad("{\"__metadata__\":{},\"__metadata__\":{}}", 0, "duplicate __metadata__");
}

#define T(name, dtype, shape, off) "\"" name "\":{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":" off "}"

TEST(bad_tensor_entries)
{
    expect_bad("{" T("w", "Q7", "[1]", "[0,4]") "}", 4, "tensor 'w': unknown dtype 'Q7'");
    expect_bad("{" T("w", "F16", "[2]", "[0,4]") "}", 4, "tensor 'w': unsupported dtype F16");
    expect_bad("{" T("w", "BF16", "[2]", "[0,4]") "}", 4, "unsupported dtype BF16");
    expect_bad("{" T("w", "F64", "[1]", "[0,8]") "}", 8, "unsupported dtype F64");
    expect_bad("{" T("w", "f32", "[1]", "[0,4]") "}", 4, "unknown dtype 'f32'");
    expect_bad("{\"w\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "dtype is not a string");
    expect_bad("{" T("w", "F32", "[-1]", "[0,4]") "}", 4, "non-negative integers");
    expect_bad("{" T("w", "F32", "[1.5]", "[0,4]") "}", 4, "non-negative integers");
    expect_bad("{" T("w", "F32", "[\"1\"]", "[0,4]") "}", 4, "non-negative integers");
    expect_bad("{" T("w", "F32", "[1e300]", "[0,4]") "}", 4, "non-negative integers");
    expect_bad("{" T("w", "F32", "1", "[0,4]") "}", 4, "shape is not a list");
    expect_bad("{" T("w", "F32", "[1,1,1,1,1,1,1,1,1]", "[0,4]") "}", 4, "9 dimensions (at most 8)");
    expect_bad("{" T("w", "F32", "[1099511627776,1099511627776]", "[0,4]") "}", 4, "too many elements");
    expect_bad("{" T("w", "F32", "[3]", "[0,8]") "}", 8, "data_offsets hold 8 bytes, shape needs 12");
    expect_bad("{" T("w", "I32", "[2,2]", "[0,4]") "}", 4, "shape needs 16");
    expect_bad("{" T("w", "F32", "[1]", "[4,0]") "}", 4, "end before they begin");
    expect_bad("{" T("w", "F32", "[1]", "[0]") "}", 4, "data_offsets is not [begin, end]");
    expect_bad("{" T("w", "F32", "[1]", "[0,4,8]") "}", 4, "data_offsets is not [begin, end]");
    expect_bad("{" T("w", "F32", "[1]", "[-4,0]") "}", 4, "data_offsets is not [begin, end]");
    expect_bad("{" T("w", "F32", "[1]", "{}") "}", 4, "data_offsets is not [begin, end]");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "tensor 'w' has no data_offsets");
    expect_bad("{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor 'w' has no dtype");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "tensor 'w' has no shape");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
               "duplicate key 'dtype'");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4,
               "unexpected key 'x'");
    expect_bad("{\"w\":3}", 0, "tensor 'w' is not an object");
    expect_bad("{" T("", "F32", "[1]", "[0,4]") "}", 4, "empty tensor name");
    /* Names in messages stay on one line and are cut when long. */
    expect_bad("{" T("a\\nb", "X", "[1]", "[0,4]") "}", 4, "tensor 'a?b'");
    expect_bad("{" T("0123456789012345678901234567890123456789012345678901234567890123456789", "X", "[1]",
                     "[0,4]") "}", 4, "tensor '012345678901234567890123456789012345678901234567890123456789...'");
}

TEST(bad_layout)
{
    expect_bad("{" T("a", "F32", "[1]", "[0,4]") "," T("b", "F32", "[1]", "[8,12]") "}", 12,
               "gap of 4 bytes before tensor 'b'");
    expect_bad("{" T("a", "F32", "[1]", "[4,8]") "}", 8, "gap of 4 bytes before tensor 'a'");
    expect_bad("{" T("a", "F32", "[2]", "[0,8]") "," T("b", "F32", "[2]", "[4,12]") "}", 12,
               "tensor 'b' overlaps the previous one");
    expect_bad("{" T("a", "F32", "[1]", "[0,4]") "," T("b", "F32", "[1]", "[0,4]") "}", 4, "overlaps");
    expect_bad("{" T("a", "F32", "[4]", "[0,16]") "}", 8, "tensor 'a' ends past the end of the file");
    expect_bad("{" T("a", "F32", "[1]", "[1000000,1000004]") "}", 8, "ends past the end");
    expect_bad("{" T("a", "F32", "[1]", "[0,4]") "}", 8, "4 trailing bytes after the last tensor");
    expect_bad("{}", 3, "3 trailing bytes");
    expect_bad("{" T("a", "F32", "[1]", "[0,4]") "," T("a", "F32", "[1]", "[4,8]") "}", 8,
               "duplicate tensor name 'a'");
    expect_bad("{" T("a", "F32", "[1]", "[0,4]") ",\"__metadata__\":{}," T("a", "F32", "[0]", "[4,4]") "}", 4,
               "duplicate tensor name 'a'");
}

/* Valid files that the writer would not produce: tensors listed out of
 * offset order, empty tensors anywhere, an unpadded header. */
TEST(valid_layouts)
{
    size_t len;
    uint8_t *b = image("{" T("b", "F32", "[1]", "[4,8]") "," T("e", "F32", "[0,5]", "[4,4]") ","
                       T("a", "I32", "[1]", "[0,4]") "," T("z", "F32", "[0]", "[8,8]") "}", 8, &len);
    ck_file f;
    CHECK(ck_parse("x", b, len, &f) == ERR_OK);
    CHECK(f.n == 4);
    if (f.n == 4) {
        /* Offset order (the file order of the data), not the JSON order. */
        CHECK(!strcmp(f.t[0].name, "a") && !strcmp(f.t[1].name, "e") && !strcmp(f.t[2].name, "b")
              && !strcmp(f.t[3].name, "z"));
        /* The data section is misaligned in the buffer (checked below), but copied. */
        CHECK((uintptr_t)f.t[0].data % 16 == 0 && (uintptr_t)f.t[2].data % 4 == 0);
        CHECK(((const uint8_t *)f.t[0].data)[0] == 0 && ((const uint8_t *)f.t[2].data)[0] == 4);
        CHECK(f.t[1].numel == 0 && f.t[1].shape[1] == 5);
    }
    ck_free(&f);
    free(b);
    CHECK((len - 8) % 4 != 0);   /* the test above did use a misaligned data section */
}

/* ---------- checked access for model loaders ---------- */

TEST(get_f32_and_expect_model)
{
    make_tmpdir();
    const char *path = tmp_path("m.safetensors");
    ck_writer *w = sample_writer();
    CHECK(ck_write(w, path) == ERR_OK);
    ck_writer_free(w);
    ck_file f;
    CHECK(ck_read(path, &f) == ERR_OK);
    const float *d = NULL;
    CHECK(ck_get_f32(&f, "embedding.weight", 2, sh_a, &d) == ERR_OK && d && d[5] == w_a[5]);
    int64_t wrong[] = { 4, 3 };
    CHECK(ck_get_f32(&f, "embedding.weight", 2, wrong, &d) == ERR_FORMAT);
    CHECK(strstr(err_msg(), "m.safetensors: tensor 'embedding.weight' has shape (3, 4), expected (4, 3)") != NULL);
    CHECK(ck_get_f32(&f, "embedding.weight", 1, sh_a, &d) == ERR_FORMAT);
    CHECK(ck_get_f32(&f, "fixture.x", 1, sh_ids, &d) == ERR_FORMAT);
    CHECK(strstr(err_msg(), "tensor 'fixture.x' is I32, expected F32") != NULL);
    CHECK(ck_get_f32(&f, "out_norm.weight", 1, sh_ids, &d) == ERR_FORMAT);
    CHECK(strstr(err_msg(), "m.safetensors: missing tensor 'out_norm.weight'") != NULL);
    CHECK(ck_get_f32(&f, "scalar", 0, NULL, &d) == ERR_OK && d[0] == -2.5f);
    CHECK(ck_get_f32(NULL, "scalar", 0, NULL, &d) == ERR_FORMAT);

    CHECK(ck_expect_model(&f, "w/m.safetensors", "transformer") == ERR_OK);
    CHECK(ck_expect_model(&f, "w/m.safetensors", "ngram") == ERR_MISMATCH);
    CHECK(strcmp(err_msg(), "w/m.safetensors holds a 'transformer' model, not a 'ngram'") == 0);
    ck_free(&f);

    w = ck_writer_new();
    CHECK(ck_put_meta(w, "format", "pt") == ERR_OK);
    CHECK(ck_write(w, path) == ERR_OK);
    ck_writer_free(w);
    CHECK(ck_read(path, &f) == ERR_OK);
    CHECK(ck_expect_model(&f, "w/m.safetensors", "mlp") == ERR_FORMAT);
    CHECK(strcmp(err_msg(), "w/m.safetensors: not a villes checkpoint (format is 'pt')") == 0);
    ck_free(&f);

    w = ck_writer_new();
    CHECK(ck_write(w, path) == ERR_OK);
    ck_writer_free(w);
    CHECK(ck_read(path, &f) == ERR_OK);
    CHECK(ck_expect_model(&f, "w/m.safetensors", "mlp") == ERR_FORMAT);
    CHECK(strstr(err_msg(), "w/m.safetensors: not a villes checkpoint") != NULL);
    ck_free(&f);
    CHECK(ck_expect_model(NULL, "w/m.safetensors", "mlp") == ERR_FORMAT);

    w = ck_writer_new();
    CHECK(ck_put_meta(w, "format", CK_FORMAT) == ERR_OK);
    CHECK(ck_put_meta(w, "format_version", "2") == ERR_OK);
    CHECK(ck_put_meta(w, "model", "mlp") == ERR_OK);
    CHECK(ck_write(w, path) == ERR_OK);
    ck_writer_free(w);
    CHECK(ck_read(path, &f) == ERR_OK);
    CHECK(ck_expect_model(&f, "w/m.safetensors", "mlp") == ERR_FORMAT);
    CHECK(strstr(err_msg(), "format version '2'") != NULL);
    ck_free(&f);
    remove_tmpdir();
}

/* ---------- random and mutated bytes never crash ---------- */

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

/* Parse, and on success touch every byte of every tensor and metadata entry. */
static void parse_any(const uint8_t *b, size_t len, int *n_ok)
{
    ck_file f;
    err_code err = ck_parse("rand", b, len, &f);
    CHECK(err == ERR_OK || err == ERR_FORMAT);
    if (err) {
        CHECK(strncmp(err_msg(), "rand: ", 6) == 0 && !strchr(err_msg(), '\n'));
        CHECK(is_empty(&f));
        return;
    }
    (*n_ok)++;
    unsigned sum = 0;
    for (int i = 0; i < f.n; i++) {
        CHECK(ck_get(&f, f.t[i].name) == &f.t[i]);
        for (size_t k = 0; k < f.t[i].numel * 4; k++) sum += ((const uint8_t *)f.t[i].data)[k];
    }
    for (int i = 0; i < f.n_meta; i++) CHECK(ck_meta(&f, f.key[i]) == f.val[i]);
    (void)sum;
    ck_free(&f);
}

TEST(random_bytes_never_crash)
{
    uint64_t seed = 42;
    uint8_t buf[256];
    int n_ok = 0;
    for (int it = 0; it < 3000; it++) {
        size_t len = splitmix(&seed) % sizeof buf;
        for (size_t i = 0; i < len; i++) buf[i] = (uint8_t)splitmix(&seed);
        if (len >= 8 && it % 2) {   /* a plausible header length, so the JSON parser is reached */
            uint64_t n = splitmix(&seed) % (len - 7);
            for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(n >> (8 * i));
            buf[8] = '{';
        }
        parse_any(buf, len, &n_ok);
    }
}

TEST(mutated_files_never_crash)
{
    size_t len;
    uint8_t *good = image("{\"__metadata__\":{\"format\":\"villes\",\"model\":\"mlp\"},"
                          T("a", "F32", "[2,3]", "[0,24]") "," T("b", "I32", "[1]", "[24,28]") ","
                          T("s", "F32", "[]", "[28,32]") "}", 32, &len);
    uint8_t *b = malloc(len);
    uint64_t seed = 7;
    int n_ok = 0;
    parse_any(good, len, &n_ok);
    CHECK(n_ok == 1);
    for (int it = 0; it < 5000; it++) {
        memcpy(b, good, len);
        int flips = 1 + (int)(splitmix(&seed) % 4);
        for (int k = 0; k < flips; k++) {
            size_t at = splitmix(&seed) % len;
            uint64_t r = splitmix(&seed);
            /* Mostly JSON-significant characters, so that mutants stay near-valid. */
            b[at] = r % 3 ? (uint8_t)"{}[]\",:0123456789-e. a"[r / 3 % 22] : (uint8_t)(r >> 8);
        }
        size_t cut = it % 5 == 0 ? splitmix(&seed) % (len + 1) : len;
        parse_any(b, cut, &n_ok);
    }
    CHECK(n_ok > 1);   /* some mutants (digits within data, ...) are still valid */
    free(b);
    free(good);
}

/* ---------- hash ---------- */

TEST(file_hash)
{
    make_tmpdir();
    char h[17];
    /* FNV-1a 64 reference vectors. */
    spit(tmp_path("e"), "", 0);
    CHECK(ck_file_hash(tmp_path("e"), h) == ERR_OK && strcmp(h, "cbf29ce484222325") == 0);
    spit(tmp_path("a"), "a", 1);
    CHECK(ck_file_hash(tmp_path("a"), h) == ERR_OK && strcmp(h, "af63dc4c8601ec8c") == 0);
    spit(tmp_path("f"), "foobar", 6);
    CHECK(ck_file_hash(tmp_path("f"), h) == ERR_OK && strcmp(h, "85944171f73967e8") == 0);
    CHECK(ck_file_hash(tmp_path("missing"), h) == ERR_IO);
    CHECK(strstr(err_msg(), "missing: No such file") != NULL);
    /* A file larger than the read buffer hashes the same as its bytes. */
    enum { N = 200000 };
    uint8_t *big = malloc(N);
    uint64_t ref = 0xcbf29ce484222325u;
    for (int i = 0; i < N; i++) {
        big[i] = (uint8_t)(i * 7);
        ref = (ref ^ big[i]) * 0x100000001b3u;
    }
    spit(tmp_path("big"), big, N);
    char want[17];
    snprintf(want, sizeof want, "%016llx", (unsigned long long)ref);
    CHECK(ck_file_hash(tmp_path("big"), h) == ERR_OK && strcmp(h, want) == 0);
    free(big);
    remove_tmpdir();
}
