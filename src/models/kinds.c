/* kinds.c - the registry of model kinds and mdl_load; see kinds.h. */
#include "kinds.h"

#include <stdio.h>
#include <string.h>

#include "mamba.h"
#include "mix.h"
#include "stream.h"
#include "mlp.h"
#include "ngram.h"
#include "rnn.h"
#include "transformer.h"

/* Every kind generate / explore / steer can load.  A new kind adds one line
 * here (and includes its header above); nothing else switches on kinds. */
static const mdl_kind *const kinds[] = {
    &ng_kind,
    &mlp_kind,
    &rnn_kind,
    &tf_kind,
    &mamba_kind,
    &mix_kind,
};

enum { N_KINDS = sizeof kinds / sizeof kinds[0] };

const mdl_kind *mdl_find_kind(const char *name)
{
    for (int i = 0; name && i < N_KINDS; i++)
        if (strcmp(kinds[i]->name, name) == 0) return kinds[i];
    return NULL;
}

/* A metadata string as it may be shown in a message: at most 40 bytes,
 * control characters replaced, so a hostile file cannot garble the line. */
static const char *shown(const char *s, char out[48])
{
    size_t i = 0;
    for (; s[i] && i < 40; i++) out[i] = (unsigned char)s[i] < 0x20 ? '?' : s[i];
    strcpy(out + i, s[i] ? "..." : "");
    return out;
}

static err_code unknown_kind(const char *path, const char *name)
{
    char known[256] = "", b[48];
    for (int i = 0; i < N_KINDS; i++) {
        size_t used = strlen(known);
        snprintf(known + used, sizeof known - used, "%s%s", i ? ", " : "", kinds[i]->name);
    }
    return err_set(ERR_FORMAT, "%s: unknown model kind '%s' (this build generates with: %s)",
                   path, shown(name, b), known);
}

err_code mdl_load(mdl *m, const char *path)
{
    if (!m || !path) return err_set(ERR_ARG, "mdl_load: NULL argument");
    *m = (mdl){ 0 };
    ck_file f;
    err_code e = ck_read(path, &f);
    return e ? e : mdl_load_file(m, &f, path);
}

err_code mdl_load_file(mdl *m, ck_file *f, const char *path)
{
    *m = (mdl){ .file = *f };
    *f = (ck_file){ 0 };
    const char *name = ck_meta(&m->file, "model");
    /* Format and version first, so that a foreign file is called that. */
    err_code e = ck_expect_model(&m->file, path, name ? name : "");
    if (!e && !(m->kind = mdl_find_kind(name))) e = unknown_kind(path, name);
    if (!e) e = mdl_read_meta(&m->file, path, name, NULL, &m->vocab);
    if (!e) e = stm_read_tokenizer(&m->file, path, &m->tokens);
    if (!e) e = m->kind->load(&m->file, path, &m->impl);
    if (e) {
        m->impl = NULL;
        mdl_free(m);
    }
    return e;
}
