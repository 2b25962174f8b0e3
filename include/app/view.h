/* view.h - showing numbers to people: heat-map shading of text on a
 * terminal (ANSI 256-colour backgrounds), bars, and self-contained HTML
 * pages (inline CSS, no script, no network), for explore's views.
 *
 * Values are shaded on a signed scale v in [-1, 1]: 0 is no shading,
 * positive values warm (towards red), negative cool (towards blue).
 */
#ifndef VILLES_VIEW_H
#define VILLES_VIEW_H

#include <stdbool.h>
#include <stdio.h>

/* Output format of a table command: text (a coloured view for people) or
 * TSV (for programs; the default when the output is not a terminal). */
typedef enum vw_format { VW_TEXT, VW_TSV } vw_format;

/* Parse --format's value ("text" or "tsv"); a usage error otherwise. */
vw_format vw_format_flag(const char *s);
/* text when out is a terminal, else tsv. */
vw_format vw_default_format(FILE *out);

/* text on a background shaded by v (clamped to [-1, 1]); plain text
 * without color. */
void vw_heat(FILE *f, const char *text, double v, bool color);
/* A horizontal bar of frac (clamped to [0, 1]) of width cells, in eighths
 * of a cell (Unicode block elements). */
void vw_bar(FILE *f, double frac, int width);
/* text padded with spaces to width columns (one per code point), then
 * shaded by v as vw_heat; a lone space drawn as ␣ (vw_visible). */
void vw_cell(FILE *f, const char *text, int width, double v, bool color);
/* "␣" (U+2423, a visible space) for " ", else s itself. */
const char *vw_visible(const char *s);
/* Bold text (a heading), plain without color. */
void vw_bold(FILE *f, const char *text, bool color);

/* ---- HTML ------------------------------------------------------------- */

/* <!DOCTYPE html> ... <body>, with the page's CSS inline and an <h1>. */
void vw_html_begin(FILE *f, const char *title);
void vw_html_end(FILE *f);
/* text with &, <, >, " escaped. */
void vw_html_text(FILE *f, const char *text);
/* A span of text shaded by v, with tip (may be NULL) as its tooltip. */
void vw_html_heat(FILE *f, const char *text, double v, const char *tip);
/* An inline bar of frac (signed, clamped to [-1, 1]) of the cell. */
void vw_html_bar(FILE *f, double frac);

#endif
