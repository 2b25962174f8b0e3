/* prov.c - provenance of the checkpoints a program writes; see prov.h. */
#include "prov.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "checkpoint.h"

static cJSON *prov;   /* the object, kept until exit (reachable: no leak) */

/* Hand the object, printed, to the engine. */
static err_code publish(void)
{
    char *text = cJSON_PrintUnformatted(prov);
    err_code e = text ? ck_set_provenance(text) : err_set(ERR_NOMEM, "out of memory for the provenance");
    free(text);
    return e;
}

/* s as one shell word: unchanged when it needs no quoting, else in single
 * quotes ('\'' for a quote inside). */
static bool plain_word(const char *s)
{
    if (!*s) return false;
    for (; *s; s++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./=:,+@%^-", *s))
            return false;
    return true;
}

static size_t quoted(const char *s, char *out)
{
    size_t n = 0;
    if (plain_word(s)) {
        n = strlen(s);
        if (out) memcpy(out, s, n);
        return n;
    }
    if (out) out[n] = '\'';
    n++;
    for (; *s; s++) {
        const char *piece = *s == '\'' ? "'\\''" : NULL;
        size_t len = piece ? 4 : 1;
        if (out) memcpy(out + n, piece ? piece : s, len);
        n += len;
    }
    if (out) out[n] = '\'';
    return n + 1;
}

/* argv as one shell-quoted line (malloc'ed), NULL when out of memory. */
static char *command_line(char *const *argv)
{
    size_t len = 1;
    for (int i = 0; argv[i]; i++) len += quoted(argv[i], NULL) + 1;
    char *line = malloc(len), *p = line;
    if (!line) return NULL;
    for (int i = 0; argv[i]; i++) {
        if (i) *p++ = ' ';
        p += quoted(argv[i], p);
    }
    *p = '\0';
    return line;
}

err_code prv_start(const char *prog, const char *version, char *const *argv)
{
    cJSON_Delete(prov);
    char *cmd = argv ? command_line(argv) : NULL;
    prov = cJSON_CreateObject();
    bool ok = prov && (!argv || cmd) && cJSON_AddStringToObject(prov, "program", prog) &&
              cJSON_AddStringToObject(prov, "version", version) &&
              (!cmd || cJSON_AddStringToObject(prov, "command", cmd)) &&
              cJSON_AddArrayToObject(prov, "data");
    free(cmd);
    return ok ? publish() : err_set(ERR_NOMEM, "out of memory for the provenance");
}

err_code prv_add_data(const char *path)
{
    if (!path || !prov) return ERR_OK;
    cJSON *list = cJSON_GetObjectItemCaseSensitive(prov, "data"), *d = cJSON_CreateObject();
    if (!d || !cJSON_AddItemToArray(list, d)) {
        cJSON_Delete(d);
        return err_set(ERR_NOMEM, "out of memory for the provenance");
    }
    bool ok = cJSON_AddStringToObject(d, "file", path);
    struct stat st;
    char hash[17];
    /* An unreadable file is its reader's error to report: then no hash. */
    if (ok && strcmp(path, "-") && stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
        ck_file_hash(path, hash) == ERR_OK)
        ok = cJSON_AddNumberToObject(d, "bytes", (double)st.st_size) &&
             cJSON_AddStringToObject(d, "fnv1a64", hash);
    return ok ? publish() : err_set(ERR_NOMEM, "out of memory for the provenance");
}
