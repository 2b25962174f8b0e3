/* inspect.c - what a checkpoint holds; see inspect.h. */
#include "inspect.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "kinds.h"
#include "sae.h"

/* Training state the text form does not spell out (too long to read). */
static const char *const long_keys[] = { "vocab", "rng", "train_window", NULL };

/* Metadata shown in their own lines (text) or fields (TSV), not as meta.KEY. */
static const char *const own_keys[] = { "model", "config", CK_PROVENANCE_KEY, NULL };

static bool in_list(const char *key, const char *const *list)
{
    for (; *list; list++)
        if (!strcmp(key, *list)) return true;
    return false;
}

/* s on one line: \t \n \\ escaped, other control bytes as '?'. */
static void put_escaped(FILE *out, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '\t') fputs("\\t", out);
        else if (c == '\n') fputs("\\n", out);
        else if (c == '\\') fputs("\\\\", out);
        else fputc(c < 0x20 || c == 0x7f ? '?' : c, out);
    }
}

/* One TSV field row, or one text line with the label padded. */
static void row(FILE *out, isp_format format, const char *field, const char *value)
{
    if (format == ISP_TSV) {
        put_escaped(out, field);
        fputc('\t', out);
    } else {
        fprintf(out, "%-15s ", field);
    }
    put_escaped(out, value);
    fputc('\n', out);
}

/* The optimiser's, or a trainer's source's: not a parameter. */
static bool is_state(const char *name)
{
    return !strncmp(name, "optim.", 6) || !strncmp(name, "source.", 7) ||
           (!strncmp(name, "components.", 11) && strstr(name, ".optim."));
}

static void shape_str(const ck_tensor *t, char *buf, size_t cap, const char *sep)
{
    size_t at = 0;
    buf[0] = '\0';
    for (int i = 0; i < t->ndim && at < cap; i++)
        at += (size_t)snprintf(buf + at, cap - at, "%s%" PRId64, i ? sep : "", t->shape[i]);
}

static void print_tensors(FILE *out, const ck_file *f, isp_format format)
{
    char shape[160];
    if (format == ISP_TENSORS) fprintf(out, "name\tdtype\tshape\tnumel\tfnv1a64\n");
    else fprintf(out, "\ntensors\n  %-44s %-5s %-14s %s\n", "name", "dtype", "shape", "values");
    for (int i = 0; i < f->n; i++) {
        const ck_tensor *t = &f->t[i];
        shape_str(t, shape, sizeof shape, format == ISP_TENSORS ? "," : "x");
        const char *dtype = t->dtype == CK_F32 ? "F32" : "I32";
        if (format == ISP_TENSORS)
            fprintf(out, "%s\t%s\t%s\t%zu\t%016" PRIx64 "\n", t->name, dtype, shape, t->numel,
                    ck_fnv1a(CK_FNV1A_BASIS, t->data, t->numel * 4));
        else
            fprintf(out, "  %-44s %-5s %-14s %zu\n", t->name, dtype, shape, t->numel);
    }
}

/* Mean of the train_window JSON array; false when absent or empty. */
static bool window_mean(const char *json, double *mean)
{
    cJSON *a = json ? cJSON_Parse(json) : NULL;
    int n = cJSON_GetArraySize(a);
    double sum = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, a) sum += cJSON_IsNumber(v) ? v->valuedouble : 0;
    cJSON_Delete(a);
    if (n > 0) *mean = sum / n;
    return n > 0;
}

/* A JSON value as text: strings bare, others printed. */
static void value_str(const cJSON *v, char *buf, size_t cap)
{
    if (cJSON_IsString(v)) {
        snprintf(buf, cap, "%s", v->valuestring);
        return;
    }
    char *p = cJSON_PrintUnformatted(v);
    snprintf(buf, cap, "%s", p ? p : "?");
    free(p);
}

/* Each member of a JSON object (recursing into objects and arrays) as a
 * "PREFIX.KEY value" field row. */
static void json_fields(FILE *out, isp_format format, const char *prefix, const cJSON *o)
{
    char field[256], value[4096];
    int i = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, o) {
        if (v->string) snprintf(field, sizeof field, "%s.%s", prefix, v->string);
        else snprintf(field, sizeof field, "%s.%d", prefix, i);
        i++;
        if (cJSON_IsObject(v) || cJSON_IsArray(v)) {
            json_fields(out, format, field, v);
            continue;
        }
        value_str(v, value, sizeof value);
        row(out, format, field, value);
    }
}

/* Text: the config as "key value, ..." on one line. */
static void config_line(FILE *out, const char *label, const cJSON *c)
{
    char line[4096] = "", value[512];
    size_t at = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, c) {
        value_str(v, value, sizeof value);
        at += (size_t)snprintf(line + at, at < sizeof line ? sizeof line - at : 0, "%s%s %s",
                               at ? ", " : "", v->string, value);
    }
    row(out, ISP_TEXT, label, line);
}

typedef struct summary {
    size_t params, state, bytes;
    int    n_params;   /* tensors of parameters */
    bool   window;
    double train_loss;
} summary;

static void summarize(const ck_file *f, summary *s)
{
    memset(s, 0, sizeof *s);
    for (int i = 0; i < f->n; i++) {
        if (is_state(f->t[i].name)) s->state += f->t[i].numel;
        else {
            s->params += f->t[i].numel;
            s->n_params++;
        }
    }
    s->window = window_mean(ck_meta(f, "train_window"), &s->train_loss);
}

static void print_tsv(FILE *out, const char *path, const ck_file *f, const summary *s)
{
    char num[64];
    row(out, ISP_TSV, "file", path);
    snprintf(num, sizeof num, "%zu", s->bytes);
    row(out, ISP_TSV, "bytes", num);
    row(out, ISP_TSV, "kind", ck_meta(f, "model"));
    snprintf(num, sizeof num, "%zu", s->params);
    row(out, ISP_TSV, "params", num);
    snprintf(num, sizeof num, "%d", f->n);
    row(out, ISP_TSV, "tensors", num);
    row(out, ISP_TSV, "optimiser_state", s->state ? "yes" : "no");
    snprintf(num, sizeof num, "%.6f", s->train_loss);
    if (s->window) row(out, ISP_TSV, "train_loss", num);
    cJSON *c = cJSON_Parse(ck_meta(f, "config")), *p = cJSON_Parse(ck_meta(f, CK_PROVENANCE_KEY));
    json_fields(out, ISP_TSV, "config", c);
    json_fields(out, ISP_TSV, "provenance", p);
    cJSON_Delete(c);
    cJSON_Delete(p);
    char field[256];
    for (int i = 0; i < f->n_meta; i++) {
        if (in_list(f->key[i], own_keys)) continue;
        snprintf(field, sizeof field, "meta.%s", f->key[i]);
        row(out, ISP_TSV, field, f->val[i]);
    }
}

/* Text: the data files of the provenance, one line each. */
static void data_lines(FILE *out, const cJSON *data)
{
    char line[4400];
    const cJSON *d;
    cJSON_ArrayForEach(d, data) {
        const cJSON *file = cJSON_GetObjectItem(d, "file"), *bytes = cJSON_GetObjectItem(d, "bytes"),
                    *hash = cJSON_GetObjectItem(d, "fnv1a64");
        if (!cJSON_IsString(file)) continue;
        if (cJSON_IsNumber(bytes) && cJSON_IsString(hash))
            snprintf(line, sizeof line, "%.4096s (%.0f bytes, fnv1a64 %.16s)", file->valuestring,
                     bytes->valuedouble, hash->valuestring);
        else
            snprintf(line, sizeof line, "%.4096s", file->valuestring);
        row(out, ISP_TEXT, "data", line);
    }
}

static void print_provenance(FILE *out, const ck_file *f)
{
    cJSON *p = cJSON_Parse(ck_meta(f, CK_PROVENANCE_KEY));
    const cJSON *prog = cJSON_GetObjectItem(p, "program"), *ver = cJSON_GetObjectItem(p, "version"),
                *cmd = cJSON_GetObjectItem(p, "command");
    char line[512];
    if (cJSON_IsString(prog) && cJSON_IsString(ver)) {
        snprintf(line, sizeof line, "%.200s %.100s", prog->valuestring, ver->valuestring);
        row(out, ISP_TEXT, "made by", line);
    } else {
        row(out, ISP_TEXT, "made by", "unknown (no provenance recorded)");
    }
    if (cJSON_IsString(cmd)) row(out, ISP_TEXT, "command", cmd->valuestring);
    data_lines(out, cJSON_GetObjectItem(p, "data"));
    cJSON_Delete(p);
}

static void print_training(FILE *out, const ck_file *f, const summary *s)
{
    const char *step = ck_meta(f, "step"), *best = ck_meta(f, "best_val_loss");
    const char *best_step = ck_meta(f, "best_step"), *settings = ck_meta(f, "train_config");
    char line[512];
    if (!step) return;
    int at = snprintf(line, sizeof line, "%.30s steps", step);
    if (s->window && at > 0 && (size_t)at < sizeof line)
        at += snprintf(line + at, sizeof line - (size_t)at, "; training loss %.4f (recent batches)",
                       s->train_loss);
    if (best && best_step && at > 0 && (size_t)at < sizeof line)
        snprintf(line + at, sizeof line - (size_t)at, "; best validation loss %.4f at step %.30s",
                 strtod(best, NULL), best_step);
    row(out, ISP_TEXT, "training", line);
    if (settings) row(out, ISP_TEXT, "settings", settings);
    row(out, ISP_TEXT, "resumable", ck_meta(f, "rng") && s->state ? "yes (optimiser state kept)"
                                                                 : "no (the model alone)");
}

/* Text: a mixture's component K on one line, at its "components.K.model"
 * entry (its other entries are left to --tsv). */
static void component_line(FILE *out, const ck_file *f, const char *key)
{
    int k, end = 0;
    if (sscanf(key, "components.%d.model%n", &k, &end) != 1 || key[end]) return;
    char label[32], cfg[64], line[4200];
    snprintf(label, sizeof label, "component %d", k);
    snprintf(cfg, sizeof cfg, "components.%d.config", k);
    const char *config = ck_meta(f, cfg);
    snprintf(line, sizeof line, "%.64s %.4096s", ck_meta(f, key), config ? config : "");
    row(out, ISP_TEXT, label, line);
}

static void print_text(FILE *out, const char *path, const ck_file *f, const summary *s,
                       const txt_vocab *v)
{
    char line[4400];
    snprintf(line, sizeof line, "%.4096s (%zu bytes)", path, s->bytes);
    row(out, ISP_TEXT, "file", line);
    row(out, ISP_TEXT, "kind", ck_meta(f, "model"));
    cJSON *c = cJSON_Parse(ck_meta(f, "config"));
    config_line(out, "config", c);
    cJSON_Delete(c);
    snprintf(line, sizeof line, "%zu in %d tensors; training state: %zu values in %d tensors",
             s->params, s->n_params, s->state, f->n - s->n_params);
    row(out, ISP_TEXT, "parameters", line);
    snprintf(line, sizeof line, "%d tokens", v ? v->size : 0);
    row(out, ISP_TEXT, "vocabulary", line);
    print_training(out, f, s);
    print_provenance(out, f);
    for (int i = 0; i < f->n_meta; i++) {
        const char *key = f->key[i];
        if (!strncmp(key, "components.", 11)) component_line(out, f, key);
        else if (!in_list(key, own_keys) && !in_list(key, long_keys) && strncmp(key, "train", 5) &&
                 strncmp(key, "best_", 5) && strcmp(key, "step"))
            row(out, ISP_TEXT, key, f->val[i]);
    }
}

/* Read path and build its model (so that what would not load is refused). */
static err_code load(const char *path, mdl *m, sae_model *sae)
{
    ck_file f;
    err_code e = ck_read(path, &f);
    if (e) return e;
    const char *kind = ck_meta(&f, "model");
    if (kind && !strcmp(kind, SAE_KIND)) {
        e = sae_load(sae, &f, path, false);
        *m = (mdl){ .file = f };   /* the file, kept for printing */
        if (!e) e = mdl_read_meta(&m->file, path, SAE_KIND, NULL, &m->vocab);
        if (e) mdl_free(m);
        return e;
    }
    return mdl_load_file(m, &f, path);
}

err_code isp_print(const char *path, isp_format format, FILE *out)
{
    mdl m;
    sae_model sae = { 0 };
    err_code e = load(path, &m, &sae);
    if (e) return e;
    summary s;
    summarize(&m.file, &s);
    FILE *fp = fopen(path, "rb");
    if (fp && !fseek(fp, 0, SEEK_END)) s.bytes = (size_t)ftell(fp);
    if (fp) fclose(fp);
    if (format == ISP_TSV) print_tsv(out, path, &m.file, &s);
    else if (format == ISP_TEXT) print_text(out, path, &m.file, &s, &m.vocab);
    if (format != ISP_TSV) print_tensors(out, &m.file, format);
    sae_free(&sae);
    mdl_free(&m);
    return ERR_OK;
}
