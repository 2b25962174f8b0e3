/* units.c - profiles and labels of every unit; see units.h.
 *
 * Two passes over the rows, a chunk of whole names at a time: the first
 * finds each unit's maximum, active letters and the highest activation of
 * each name; the second, knowing the maxima, fills the histograms and
 * collects the strong letters, which lb_best then labels.
 */
#include "units.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { CHUNK_FLOATS = 1 << 22, CHUNK_MIN_ROWS = 64 };

/* ---- Growable arrays --------------------------------------------------- */

typedef struct hit { uint32_t name; float max; } hit;              /* an active name */
typedef struct hits { hit *v; size_t n, cap; } hits;
typedef struct rowlist { uint32_t *v; size_t n, cap; } rowlist;   /* strong letters */

/* Room for one more element in *v (elem bytes each). */
static err_code grow(void **v, size_t n, size_t *cap, size_t elem)
{
    if (n < *cap) return ERR_OK;
    size_t cap2 = *cap ? 2 * *cap : 16;
    void *p = realloc(*v, cap2 * elem);
    if (!p) return err_set(ERR_NOMEM, "out of memory for %zu unit entries", cap2);
    *v = p;
    *cap = cap2;
    return ERR_OK;
}

/* ---- One pass ----------------------------------------------------------- */

typedef struct pass {
    un_profile      *p;
    const sae_acts  *a;
    const sae_model *sae;
    size_t           rows;      /* rows of act */
    float           *act;       /* (rows, U) oriented activations of a chunk */
    float           *scratch;   /* sae_encode's */
    float           *best;      /* (U) the current name's highest a' */
    hits            *names;     /* (U) first pass: the active names */
    rowlist         *strong;    /* (U) second pass: the strong letters */
} pass;

/* out (N, U) = a' of rows x (N, d). */
static void oriented(const un_profile *p, const sae_model *sae, const float *x, int N, int d, float *out,
                     float *scratch)
{
    if (sae) {
        sae_encode(sae, x, N, out, scratch);
        return;
    }
    for (int r = 0; r < N; r++)
        for (int u = 0; u < d; u++) out[(size_t)r * d + u] = p->sign[u] * (x[(size_t)r * d + u] - p->centre[u]);
}

/* First pass over one name (its rows act (rows, U), <SOS> first). */
static err_code first_name(pass *s, const float *act, int rows, size_t nm)
{
    un_profile *p = s->p;
    const int U = p->U;
    for (int u = 0; u < U; u++) s->best[u] = -INFINITY;
    for (int r = 1; r < rows; r++) {
        const float *v = act + (size_t)r * U;
        for (int u = 0; u < U; u++) {
            s->best[u] = fmaxf(s->best[u], v[u]);
            p->active[u] += v[u] > 0;
        }
        p->letters++;
    }
    for (int u = 0; u < U; u++) {
        if (!(s->best[u] > 0)) continue;
        p->max[u] = fmaxf(p->max[u], s->best[u]);
        hits *h = &s->names[u];
        if (grow((void **)&h->v, h->n, &h->cap, sizeof *h->v)) return ERR_NOMEM;
        h->v[h->n++] = (hit){ (uint32_t)nm, s->best[u] };
    }
    return ERR_OK;
}

/* Second pass over one name: histograms and strong letters. */
static err_code second_name(pass *s, const float *act, int rows, size_t nm)
{
    un_profile *p = s->p;
    const int U = p->U;
    for (int r = 1; r < rows; r++) {
        const float *v = act + (size_t)r * U;
        for (int u = 0; u < U; u++) {
            if (!(v[u] > 0)) continue;
            int bin = (int)(v[u] / p->max[u] * UN_HIST_BINS);
            p->hist[(size_t)u * UN_HIST_BINS + (bin < UN_HIST_BINS ? bin : UN_HIST_BINS - 1)]++;
            if (v[u] < UN_STRONG * p->max[u]) continue;
            rowlist *l = &s->strong[u];
            if (grow((void **)&l->v, l->n, &l->cap, sizeof *l->v)) return ERR_NOMEM;
            l->v[l->n++] = (uint32_t)(s->a->row[nm] + r);
            p->strong[u]++;
        }
    }
    return ERR_OK;
}

static int rows_of(const sae_acts *a, size_t nm) { return (int)(a->row[nm + 1] - a->row[nm]); }

/* Every name through fn, a chunk of whole names encoded at a time. */
static err_code run_pass(pass *s, err_code (*fn)(pass *, const float *, int, size_t))
{
    const sae_acts *a = s->a;
    err_code e = ERR_OK;
    for (size_t i = 0; !e && i < a->n_names;) {
        size_t j = i;
        while (j < a->n_names && a->row[j + 1] - a->row[i] <= s->rows) j++;
        const size_t r0 = a->row[i];
        oriented(s->p, s->sae, a->x + r0 * a->d, (int)(a->row[j] - r0), a->d, s->act, s->scratch);
        for (size_t nm = i; !e && nm < j; nm++) e = fn(s, s->act + (a->row[nm] - r0) * s->p->U, rows_of(a, nm), nm);
        i = j;
    }
    return e;
}

/* ---- Orientation of the neurons ------------------------------------------ */

/* The k-th smallest of v (n > k), v reordered (quickselect). */
static float select_kth(float *v, size_t n, size_t k)
{
    size_t lo = 0, hi = n - 1;
    while (lo < hi) {
        const float pivot = v[lo + (hi - lo) / 2];
        size_t i = lo, j = hi;
        while (i <= j) {
            while (v[i] < pivot) i++;
            while (v[j] > pivot) j--;
            if (i <= j) {
                float t = v[i];
                v[i++] = v[j];
                v[j] = t;
                if (j == 0) break;
                j--;
            }
        }
        if (k <= j) hi = j;
        else if (k >= i) lo = i;
        else break;
    }
    return v[k];
}

/* centre = each dimension's (upper) median over the letters; sign = that
 * of its largest deviation from it. */
static err_code orient_neurons(un_profile *p, const sae_acts *a)
{
    float *col = malloc((a->n_rows + 1) * sizeof *col);
    if (!col) return err_set(ERR_NOMEM, "out of memory for the medians of %zu rows", a->n_rows);
    for (int u = 0; u < p->U; u++) {
        size_t n = 0;
        float lo = INFINITY, hi = -INFINITY;
        for (size_t nm = 0; nm < a->n_names; nm++)
            for (size_t r = a->row[nm] + 1; r < a->row[nm + 1]; r++) {
                col[n] = a->x[r * a->d + u];
                lo = fminf(lo, col[n]);
                hi = fmaxf(hi, col[n++]);
            }
        p->centre[u] = n ? select_kth(col, n, n / 2) : 0.0f;
        p->sign[u] = n && hi - p->centre[u] < p->centre[u] - lo ? -1.0f : 1.0f;
    }
    free(col);
    return ERR_OK;
}

/* ---- The profile ----------------------------------------------------------- */

void un_profile_free(un_profile *p)
{
    if (!p) return;
    free(p->centre);
    free(p->sign);
    free(p->max);
    free(p->active);
    free(p->strong);
    free(p->hist);
    free(p->label);
    free(p->nm_first);
    free(p->nm_name);
    free(p->nm_max);
    memset(p, 0, sizeof *p);
}

static err_code profile_alloc(un_profile *p, int U)
{
    p->U = U;
    p->centre = calloc((size_t)U, sizeof *p->centre);
    p->sign = malloc((size_t)U * sizeof *p->sign);
    p->max = calloc((size_t)U, sizeof *p->max);
    p->active = calloc((size_t)U, sizeof *p->active);
    p->strong = calloc((size_t)U, sizeof *p->strong);
    p->hist = calloc((size_t)U * UN_HIST_BINS, sizeof *p->hist);
    p->label = calloc((size_t)U, sizeof *p->label);
    p->nm_first = calloc((size_t)U + 1, sizeof *p->nm_first);
    if (!p->centre || !p->sign || !p->max || !p->active || !p->strong || !p->hist || !p->label || !p->nm_first)
        return err_set(ERR_NOMEM, "out of memory for the profiles of %d units", U);
    for (int u = 0; u < U; u++) p->sign[u] = 1.0f;
    return ERR_OK;
}

static int by_max_desc(const void *pa, const void *pb)
{
    const hit *a = pa, *b = pb;
    if (a->max != b->max) return a->max > b->max ? -1 : 1;
    return (a->name > b->name) - (a->name < b->name);
}

/* The active names of every unit, sorted, into nm_first / nm_name / nm_max. */
static err_code flatten_names(un_profile *p, hits *names)
{
    for (int u = 0; u < p->U; u++) p->nm_first[u + 1] = p->nm_first[u] + names[u].n;
    const size_t n = p->nm_first[p->U];
    p->nm_name = malloc((n + 1) * sizeof *p->nm_name);
    p->nm_max = malloc((n + 1) * sizeof *p->nm_max);
    if (!p->nm_name || !p->nm_max) return err_set(ERR_NOMEM, "out of memory for %zu active names", n);
    for (int u = 0; u < p->U; u++) {
        qsort(names[u].v, names[u].n, sizeof *names[u].v, by_max_desc);
        for (size_t k = 0; k < names[u].n; k++) {
            p->nm_name[p->nm_first[u] + k] = names[u].v[k].name;
            p->nm_max[p->nm_first[u] + k] = names[u].v[k].max;
        }
    }
    return ERR_OK;
}

/* Each unit's label, from its strong letters. */
static err_code label_units(un_profile *p, const rowlist *strong, const lb_index *x)
{
    uint32_t *hit_count = calloc((size_t)x->n + 1, sizeof *hit_count);
    int *touched = malloc(((size_t)x->n + 1) * sizeof *touched);
    size_t *rows = NULL;
    size_t most = 0;
    for (int u = 0; u < p->U; u++) most = strong[u].n > most ? strong[u].n : most;
    rows = malloc((most + 1) * sizeof *rows);
    err_code e = hit_count && touched && rows ? ERR_OK : err_set(ERR_NOMEM, "out of memory for the labels");
    for (int u = 0; !e && u < p->U; u++) {
        for (size_t k = 0; k < strong[u].n; k++) rows[k] = strong[u].v[k];
        if (strong[u].n >= UN_MIN_FIRING) lb_best(x, rows, strong[u].n, &p->label[u], hit_count, touched);
        else p->label[u] = (lb_label){ .context = -1, .fired = strong[u].n };
    }
    free(hit_count);
    free(touched);
    free(rows);
    return e;
}

static err_code pass_init(pass *s, un_profile *p, const sae_acts *a, const sae_model *sae)
{
    size_t longest = 0;
    for (size_t i = 0; i < a->n_names; i++) longest = (size_t)rows_of(a, i) > longest ? (size_t)rows_of(a, i) : longest;
    *s = (pass){ .p = p, .a = a, .sae = sae };
    s->rows = CHUNK_FLOATS / (size_t)p->U > CHUNK_MIN_ROWS ? CHUNK_FLOATS / (size_t)p->U : CHUNK_MIN_ROWS;
    if (s->rows < longest) s->rows = longest;
    s->act = malloc(s->rows * (size_t)p->U * sizeof *s->act);
    s->best = malloc((size_t)p->U * sizeof *s->best);
    s->scratch = sae ? malloc(sae_scratch_floats(&sae->c) * sizeof *s->scratch) : NULL;
    s->names = calloc((size_t)p->U, sizeof *s->names);
    s->strong = calloc((size_t)p->U, sizeof *s->strong);
    if (!s->act || !s->best || (sae && !s->scratch) || !s->names || !s->strong)
        return err_set(ERR_NOMEM, "out of memory for the activations of %d units", p->U);
    return ERR_OK;
}

static void pass_free(pass *s)
{
    for (int u = 0; u < s->p->U && s->names && s->strong; u++) {
        free(s->names[u].v);
        free(s->strong[u].v);
    }
    free(s->names);
    free(s->strong);
    free(s->act);
    free(s->best);
    free(s->scratch);
}

err_code un_profile_compute(un_profile *p, const sae_acts *a, const sae_model *sae, const lb_index *x)
{
    memset(p, 0, sizeof *p);
    if (x->n_rows != a->n_rows) return err_set(ERR_ARG, "un_profile_compute: %zu contexts rows for %zu rows", x->n_rows, a->n_rows);
    if (sae && sae->c.d_model != a->d) return err_set(ERR_ARG, "un_profile_compute: an SAE of %d on rows of %d", sae->c.d_model, a->d);
    pass s = { .p = p };
    err_code e = profile_alloc(p, sae ? sae->c.n_features : a->d);
    if (!e && !sae) e = orient_neurons(p, a);
    if (!e) e = pass_init(&s, p, a, sae);
    if (!e) e = run_pass(&s, first_name);
    if (!e) e = run_pass(&s, second_name);
    if (!e) e = flatten_names(p, s.names);
    if (!e) e = label_units(p, s.strong, x);
    pass_free(&s);
    if (e) un_profile_free(p);
    return e;
}

/* ---- Queries ------------------------------------------------------------------ */

double un_density(const un_profile *p, int u) { return p->letters ? (double)p->active[u] / (double)p->letters : 0.0; }

size_t un_quantile_rank(const un_profile *p, int u, double q)
{
    const size_t n = un_names(p, u);
    const double at = (1.0 - q) * (double)(n - 1);
    return n ? (size_t)lround(fmin(fmax(at, 0.0), (double)(n - 1))) : 0;
}

err_code un_letters(const un_profile *p, const sae_acts *a, const sae_model *sae, size_t nm, int u, float *out)
{
    const int rows = rows_of(a, nm), U = p->U;
    float *act = malloc((size_t)rows * U * sizeof *act);
    float *scratch = sae ? malloc(sae_scratch_floats(&sae->c) * sizeof *scratch) : NULL;
    if (!act || (sae && !scratch)) {
        free(act);
        free(scratch);
        return err_set(ERR_NOMEM, "out of memory for a name's %d units", U);
    }
    oriented(p, sae, a->x + a->row[nm] * a->d, rows, a->d, act, scratch);
    for (int r = 1; r < rows; r++) out[r - 1] = act[(size_t)r * U + u];
    free(act);
    free(scratch);
    return ERR_OK;
}

static int by_double(const void *pa, const void *pb)
{
    const double a = *(const double *)pa, b = *(const double *)pb;
    return (a > b) - (a < b);
}

/* The median of v (n), v sorted; 0 when n = 0. */
static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, by_double);
    return n ? (n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2])) : 0.0;
}

err_code un_summarise(const un_profile *p, double min_precision, un_summary *out)
{
    double *prec = malloc(((size_t)p->U + 1) * sizeof *prec), *f1 = malloc(((size_t)p->U + 1) * sizeof *f1);
    if (!prec || !f1) {
        free(prec);
        free(f1);
        return err_set(ERR_NOMEM, "out of memory for %d precisions", p->U);
    }
    *out = (un_summary){ .units = p->U };
    for (int u = 0; u < p->U; u++) {
        if (p->label[u].context < 0) continue;
        f1[out->labelled] = p->label[u].f1;
        prec[out->labelled++] = p->label[u].precision;
        out->precise += p->label[u].precision >= min_precision;
    }
    out->share_precise = out->labelled ? (double)out->precise / out->labelled : 0.0;
    out->median_precision = median(prec, out->labelled);
    out->median_f1 = median(f1, out->labelled);
    free(prec);
    free(f1);
    return ERR_OK;
}
