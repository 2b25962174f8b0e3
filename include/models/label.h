/* label.h - automatic labels for units (SAE features, residual neurons):
 * the character context most enriched where a unit fires, with its
 * precision and recall.  An explanation without a language model.
 *
 * Every letter of a set of names is described by the contexts that hold
 * there ("candidates"):
 *   - windows: the current letter with the b = 0 .. LB_MAX_BEFORE letters
 *     before it and a = 0 or 1 letter after it; "^" stands before the
 *     first letter, "$" after the last, and a window stops growing once it
 *     holds "^".  Shown as  after "saint-"  (a = 0: the letters read so far
 *     end with saint-) or  "i" of "-heim"  (a = 1: the current letter and
 *     its neighbours);
 *   - positions: the k-th letter from the start (k = 1 .. LB_MAX_EDGE) or
 *     from the end ("last letter", ...).
 * For a unit that fires on the letters S and a context that holds on the
 * letters C: precision = |S n C| / |C|, recall = |S n C| / |S|, and the
 * label is the context of highest F1 = 2PR / (P + R) among those holding
 * on at least LB_MIN_SUPPORT letters (ties: the first found).
 */
#ifndef VILLES_LABEL_H
#define VILLES_LABEL_H

#include <stddef.h>
#include <stdint.h>

#include "dataset.h"
#include "error.h"
#include "text.h"

enum {
    LB_MAX_BEFORE = 5,                /* window letters before the current one */
    LB_WINDOW = LB_MAX_BEFORE + 2,    /* a window's tokens at most */
    LB_MAX_EDGE = 4,                  /* positions from the start (1..4) and from the end */
    LB_MIN_SUPPORT = 5,               /* letters a candidate must hold on */
};

typedef enum lb_kind { LB_CTX_WINDOW, LB_CTX_FROM_START, LB_CTX_FROM_END } lb_kind;

typedef struct lb_context {
    int kind;                /* lb_kind */
    int before, after;       /* window: letters (or ^) before the current one, after it */
    int k;                   /* from start: 1 = the first letter; from end: 0 = the last */
    int tok[LB_WINDOW];      /* window tokens, TOK_SOS for ^ and TOK_EOS for $; 0 past the end */
} lb_context;

/* The contexts of every letter of a set of names.  Rows follow sae_acts:
 * name i owns rows row[i] .. row[i] + len, row[i] its <SOS> (no context),
 * row[i] + p its p-th letter. */
typedef struct lb_index {
    size_t      n_rows;
    size_t     *first;       /* (n_rows + 1) row r's contexts: id[first[r] .. first[r + 1] - 1] */
    int        *id;
    int         n;           /* distinct contexts */
    lb_context *ctx;         /* (n) */
    size_t     *count;       /* (n) letters where each holds */
} lb_index;

/* row (names->n + 1) as sae_acts' row, n_rows = row[names->n]. */
err_code lb_index_build(lb_index *x, const ds_names *names, const size_t *row);
void     lb_index_free(lb_index *x);

typedef struct lb_label {
    int    context;          /* best context, -1 when none qualifies */
    size_t fired;            /* |S| */
    size_t support;          /* |C| */
    size_t hits;             /* |S n C| */
    double precision, recall, f1;
} lb_label;

/* The best context for a unit firing on the rows rows (n, distinct).
 * hits (x->n) zeroed scratch, returned zeroed; touched (x->n) scratch. */
void lb_best(const lb_index *x, const size_t *rows, size_t n, lb_label *out, uint32_t *hits, int *touched);

/* The label as text: after "saint-", "i" of "-heim", letter 1, last letter,
 * letter 2 from the end; "-" for context -1. */
void lb_describe(const lb_index *x, int context, const txt_vocab *v, char *buf, size_t size);

#endif
