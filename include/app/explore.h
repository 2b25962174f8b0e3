/* explore.h - the subcommands of `explore`: each loads a Transformer (and
 * the SAE trained on it), runs one analysis of interp.h or sae.h, and shows
 * it on stdout as TSV, as a text view for people (view.h shading) or, for
 * features and attribute, as a self-contained HTML page.
 *
 * The program parses its flags into an xp_options and calls one xp_
 * function; like the rest of the app floor, these end the program through
 * cli_die (exit 1) on a runtime error: an unreadable file, an SAE trained
 * on another model, a feature, layer or position out of range.  The caller
 * checks stdout for write errors (cli_close) afterwards.
 */
#ifndef VILLES_EXPLORE_H
#define VILLES_EXPLORE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "cli.h"
#include "view.h"

#define XP_DEFAULT_DATA "data/villes.txt"
enum {
    XP_DEFAULT_TOP = 10,        /* names per unit (features, neurons) */
    XP_LENS_TOP = 3,            /* predictions per cell (lens) */
    XP_DEFAULT_NEIGHBOURS = 3,  /* embeddings */
    XP_SYNTH_BEAM = 16,         /* synth: partial names kept */
    XP_SYNTH_COUNT = 10,        /* synth: names printed */
};
#define XP_SYNTH_WEIGHT 8.0     /* synth: nats for reaching the feature's top activation */

typedef struct xp_options {
    const char *model, *sae;      /* the Transformer, the SAE; NULL = the shipped
                                     weights (cli_default_weights) */
    const char *data;             /* names, one per line; each distinct name counts once */
    const char *val_data;         /* sae-stats: validation names; NULL = the split of data */
    uint64_t    split_seed;       /* ... seeded by this when split_seed_given, */
    bool        split_seed_given; /* else by the Transformer's own split seed */
    const char *name;             /* the NAME operand (lens, attribute) */
    const char *target;           /* attribute: a character or "<EOS>"; NULL = the predicted one */
    const char *html;             /* features, attribute, path, attention: write a page there
                                     ('-' = stdout); dashboard: the directory of its pages */
    const char *svg;              /* path: write the picture alone there */
    int         layer;            /* neurons: the residual stream after `layer` blocks; -1 = last */
    int         top;              /* names per unit, predictions per lens cell; 0 = the defaults */
    int         id;               /* one feature or neuron; -1 = all (logits needs one) */
    int         pos;              /* attribute: the position (0 = after <SOS>); path: the one
                                     position shown (-1 = all) */
    int         neighbours;       /* embeddings: neighbours per token */
    int         beam, count;      /* synth: beam width, names printed; 0 = the defaults */
    double      weight;           /* synth: nats per a_max of activation; 0 = the default */
    bool        by_freq;          /* freq: most frequent first (else by id) */
    bool        summary;          /* freq: only the counts below 10%, 1%, 0.1%, 0.01% */
    bool        histogram;        /* sae-stats: the activation frequencies in log10 bins */
    vw_format   format;
    cli_color   color;            /* shading of the text view */
} xp_options;

/* explore's --help text: the commands, the flags and their defaults. */
void xp_print_usage(FILE *f);

/* The top --top names of every SAE feature (or of o->id), with the
 * activation at each letter and the feature's frequency. */
void xp_features(const xp_options *o);
/* The same for the dimensions of the residual stream after o->layer. */
void xp_neurons(const xp_options *o);
/* Activation frequency of every SAE feature over the letters of o->data. */
void xp_freq(const xp_options *o);
/* Every predictable token ranked by how much feature o->id raises its logit. */
void xp_logits(const xp_options *o);
/* Token embeddings: their 2-D PCA and cosine nearest neighbours. */
void xp_embeddings(const xp_options *o);
/* The logit lens of o->name: predictions read after each layer. */
void xp_lens(const xp_options *o);
/* Which SAE features drove the prediction at o->pos of o->name. */
void xp_attribute(const xp_options *o);
/* The SAE's evaluation on the validation names. */
void xp_sae_stats(const xp_options *o);
/* New names that make feature o->id fire strongly while staying probable (synth.h). */
void xp_synth(const xp_options *o);
/* The residual states of o->name after each layer against the letter
 * embeddings (states.h); TSV, text, or a picture (--html, --svg). */
void xp_path(const xp_options *o);
/* The attention weights of o->name in every layer and head. */
void xp_attention(const xp_options *o);
/* Pages in the directory o->html: a dashboard per SAE feature, an index
 * with the labels of features and neurons, and their TSV (dashboard.c). */
void xp_dashboard(const xp_options *o);

#endif
