/* units.h - a profile of every unit (SAE feature or residual neuron) over
 * the letters of many names: density, maximum, a histogram of its
 * activations, the names where it fires ranked by their highest
 * activation (for top and quantile examples), and its automatic label
 * (label.h) — what explore dashboard shows, and the test of whether SAE
 * features are more monosemantic than neurons.
 *
 * Units are compared on one footing: a unit's activation a is oriented,
 * a' = sign (a - centre), with centre 0 and sign +1 for SAE features
 * (ReLU outputs, 0 when silent) and, for a neuron, centre its median over
 * the letters and sign that of its largest deviation from it (a residual
 * dimension is dense and signed).  A unit is active where a' > 0, and
 * fires strongly where a' >= UN_STRONG times its maximum: its label
 * explains those letters.
 */
#ifndef VILLES_UNITS_H
#define VILLES_UNITS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "label.h"
#include "sae.h"

#define UN_STRONG 0.5
enum {
    UN_HIST_BINS = 24,    /* equal bins of (0, max] */
    UN_MIN_FIRING = 10,   /* strong letters a unit needs for a label */
};

typedef struct un_profile {
    int       U;
    size_t    letters;     /* letters seen (rows but <SOS>) */
    float    *centre;      /* (U) */
    float    *sign;        /* (U) +1 or -1 */
    float    *max;         /* (U) largest a' (0 for a unit never active) */
    size_t   *active;      /* (U) letters with a' > 0 */
    size_t   *strong;      /* (U) letters with a' >= UN_STRONG max */
    size_t   *hist;        /* (U, UN_HIST_BINS) active letters by a' in equal bins of (0, max] */
    lb_label *label;       /* (U) the label of the strong letters */
    size_t   *nm_first;    /* (U + 1) unit u's active names: nm_name[nm_first[u] .. nm_first[u + 1] - 1] */
    size_t   *nm_name;     /* names (indices of the acts), by highest a' over their letters, */
    float    *nm_max;      /* descending (ties: the lower index first), and that a' */
} un_profile;

/* Profile the units of the residual rows a (sae NULL: the d neurons, else
 * the SAE's features) and label them with the contexts x of the same rows. */
err_code un_profile_compute(un_profile *p, const sae_acts *a, const sae_model *sae, const lb_index *x);
void     un_profile_free(un_profile *p);

/* Share of the letters where unit u is active. */
double un_density(const un_profile *p, int u);
static inline size_t un_names(const un_profile *p, int u) { return p->nm_first[u + 1] - p->nm_first[u]; }
/* The rank (0 = the highest) among unit u's active names of the one at
 * quantile q of their highest activations (q = 1 the top, 0 the bottom);
 * un_names(p, u) > 0. */
size_t un_quantile_rank(const un_profile *p, int u, double q);
/* out (len) = a' of unit u at each letter of name nm (its rows encoded
 * alone, as the scan encodes them). */
err_code un_letters(const un_profile *p, const sae_acts *a, const sae_model *sae, size_t nm, int u, float *out);

/* How monosemantic the units are: among those with a label (at least
 * UN_MIN_FIRING strong letters), the share whose label reaches precision
 * min_precision, and the median precision and F1 of their labels (F1
 * also asks the label to cover the unit's letters: a dense unit finds
 * precise but narrow labels easily). */
typedef struct un_summary {
    int    units, labelled, precise;
    double share_precise, median_precision, median_f1;
} un_summary;

err_code un_summarise(const un_profile *p, double min_precision, un_summary *out);

#endif
