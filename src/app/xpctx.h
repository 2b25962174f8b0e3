/* xpctx.h - what explore's subcommands share (private to src/app): the
 * context of one run (the Transformer, the SAE when the command needs
 * one, the view), the NAME operand, the names of --data and the HTML
 * output.  Each function ends the program through cli_die on an error. */
#ifndef VILLES_XPCTX_H
#define VILLES_XPCTX_H

#include <stdbool.h>
#include <stdio.h>

#include "dataset.h"
#include "explore.h"
#include "model.h"
#include "sae.h"
#include "transformer.h"

enum { XP_PATH_CAP = 4096 };   /* a default weights path (cli_default_weights' own cap) */

typedef struct xp_ctx {
    const xp_options *o;
    const char      *model_path, *sae_path;   /* o's, or the shipped weights' */
    char             model_buf[XP_PATH_CAP], sae_buf[XP_PATH_CAP];
    mdl              lm;
    const tf_model  *tf;
    sae_model        sae;
    bool             have_sae;
    bool             color;              /* text view with shading */
} xp_ctx;

/* Load the Transformer (and the SAE trained on it when need_sae). */
void        xp_open_ctx(xp_ctx *c, const xp_options *o, bool need_sae);
void        xp_close_ctx(xp_ctx *c);
/* Token tok as text ("<EOS>" or its character) in buf. */
const char *xp_tok_str(const xp_ctx *c, int tok, char buf[8]);
/* UTF-8 of n character tokens into out (>= 4 n + 1 bytes). */
char       *xp_name_str(const xp_ctx *c, const int *tok, int n, char *out);
/* The distinct names of --data, in file order of their first line. */
void        xp_load_names(const xp_ctx *c, ds_names *out);
/* The NAME operand as character tokens (caller frees); its length in *n. */
int        *xp_parse_name(const xp_ctx *c, int *n);
/* --html's file, opened for writing; closed (and checked) by xp_close_html. */
FILE       *xp_open_html(const xp_options *o);
void        xp_close_html(FILE *f, const xp_options *o);

#endif
