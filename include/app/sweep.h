/* sweep.h - steer --sweep: a dose-response table of one SAE feature.
 *
 * For each value v of LO, LO + STEP, ..., HI, the feature is clamped to v
 * (or v times its decoder direction is added) at every position, on top of
 * the other edits, and N names are sampled with the same seed (so that the
 * values differ by the steering alone).  One TSV row per value:
 *
 *   value     the clamp (or add) value
 *   matching  share of the names that match --match REGEX (POSIX extended,
 *             on the UTF-8 bytes) or contain --contains STR
 *   distinct  share of distinct names
 *   copied    share of names present in --data (the training names)
 *   loss      mean loss of the names under the unsteered model, nats/char
 *             (<EOS> counted): how plausible the steered names still are
 *   length    mean length in characters
 *
 *   sw_options sw = SW_DEFAULTS;
 *   sw_parse_range(&sw, optarg);     // from the flags; usage errors exit 2
 *   sw_set_match(&sw, regex) / sw.contains = str;
 *   sw_check(&sw);                   // after the flags
 *   sw_run(&st, &sae, edits, n_edits, &gen, &sw, stdout);
 */
#ifndef VILLES_SWEEP_H
#define VILLES_SWEEP_H

#include <regex.h>
#include <stdbool.h>
#include <stdio.h>

#include "error.h"
#include "generation.h"
#include "model.h"
#include "sae.h"

enum { SW_MAX_VALUES = 1000, SW_DEFAULT_COUNT = 200 };
#define SW_DEFAULT_DATA "data/villes.txt"

typedef struct sw_options {
    bool        on;           /* --sweep given */
    int         feature;
    double      lo, hi, step;
    int         n_values;
    bool        add;          /* --sweep-add: add instead of clamp */
    const char *regex;        /* --match, compiled into re */
    regex_t     re;
    const char *contains;     /* --contains */
    const char *data;         /* --data: names counted as copied */
} sw_options;

#define SW_DEFAULTS ((sw_options){ .data = SW_DEFAULT_DATA })

/* "F=LO:HI:STEP"; cli_usage() when malformed, STEP <= 0, LO > HI (empty)
 * or more than SW_MAX_VALUES values. */
void sw_parse_range(sw_options *o, const char *arg);
/* Compile REGEX; cli_usage() with regerror's message when it does not. */
void sw_set_match(sw_options *o, const char *regex);
/* After the flags: exactly one of --match / --contains with --sweep, and
 * no generation flag the sweep does not honour (cli_usage() otherwise). */
void sw_check(const sw_options *o, const gen_options *g);
void sw_free(sw_options *o);

/* Run the sweep on st (a Transformer's state; no hook installed), with
 * the SAE s and the other edits; the table to out.  ERR_ARG when the
 * feature is out of range. */
err_code sw_run(mdl_state *st, const sae_model *s, const sae_edit *edit, int n_edit,
                const gen_options *g, const sw_options *o, FILE *out);

#endif
