/* view.c - heat-map shading, bars and HTML pages; see view.h. */
#include "view.h"

#include <math.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static double clamp1(double v) { return v > 1.0 ? 1.0 : v < -1.0 ? -1.0 : isnan(v) ? 0.0 : v; }

vw_format vw_format_flag(const char *s)
{
    static const char *const words[] = { "text", "tsv", NULL };
    return cli_choice("--format", s, words) == 0 ? VW_TEXT : VW_TSV;
}

vw_format vw_default_format(FILE *out) { return isatty(fileno(out)) ? VW_TEXT : VW_TSV; }

/* Shading level 0..5 of |v|: 0 = none. */
static int level(double v) { return (int)lround(fabs(clamp1(v)) * 5.0); }

void vw_heat(FILE *f, const char *text, double v, bool color)
{
    int l = level(v);
    if (!color || l == 0) {
        fputs(text, f);
        return;
    }
    /* the xterm colour cube 16 + 36 r + 6 g + b, r, g, b in 0..5: from white
     * to red (positive) or to blue (negative); light text on the darkest */
    int c = clamp1(v) > 0 ? 16 + 36 * 5 + 7 * (5 - l) : 16 + 42 * (5 - l) + 5;
    fprintf(f, "\033[48;5;%dm\033[%dm%s\033[0m", c, l >= 4 ? 97 : 30, text);
}

const char *vw_visible(const char *s) { return strcmp(s, " ") ? s : "\u2423"; }

/* Columns a UTF-8 string takes (one per code point). */
static int columns(const char *s)
{
    int n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

void vw_cell(FILE *f, const char *text, int width, double v, bool color)
{
    char buf[64];
    snprintf(buf, sizeof buf, "%s", vw_visible(text));
    for (int n = columns(buf); n < width && strlen(buf) + 1 < sizeof buf; n++) strcat(buf, " ");
    vw_heat(f, buf, v, color);
}

void vw_bar(FILE *f, double frac, int width)
{
    static const char *const eighths[] = { "", "▏", "▎", "▍", "▌", "▋", "▊", "▉" };
    frac = frac > 1.0 ? 1.0 : frac > 0.0 ? frac : 0.0;
    int n = (int)lround(frac * width * 8), cells = 0;
    for (; n >= 8; n -= 8, cells++) fputs("█", f);
    if (n > 0) {
        fputs(eighths[n], f);
        cells++;
    }
    for (; cells < width; cells++) fputc(' ', f);
}

void vw_bold(FILE *f, const char *text, bool color)
{
    fprintf(f, color ? "\033[1m%s\033[0m" : "%s", text);
}

/* ---- HTML --------------------------------------------------------------- */

void vw_html_text(FILE *f, const char *text)
{
    for (const char *p = text; *p; p++) {
        switch (*p) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*p, f);
        }
    }
}

void vw_html_begin(FILE *f, const char *title)
{
    fputs("<!DOCTYPE html>\n<html lang=\"fr\">\n<head>\n<meta charset=\"utf-8\">\n<title>", f);
    vw_html_text(f, title);
    fputs("</title>\n<style>\n"
          "body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }\n"
          "h2 { margin-top: 1.6em; font-size: 1.1em; }\n"
          ".meta { color: #666; font-size: 0.9em; }\n"
          "table { border-collapse: collapse; }\n"
          "td, th { padding: 0.15em 0.6em; text-align: left; vertical-align: middle; }\n"
          "th { border-bottom: 1px solid #ccc; }\n"
          "td.num { text-align: right; font-variant-numeric: tabular-nums; }\n"
          ".name { font-family: ui-monospace, monospace; font-size: 1.1em; white-space: pre; }\n"
          ".name span { padding: 0.1em 0.05em; border-radius: 2px; }\n"
          ".bar { display: inline-block; height: 0.8em; vertical-align: middle; }\n"
          ".pos { background: #3a7; } .neg { background: #c44; }\n"
          ".here { outline: 2px solid #222; }\n"
          "</style>\n</head>\n<body>\n<h1>", f);
    vw_html_text(f, title);
    fputs("</h1>\n", f);
}

void vw_html_end(FILE *f) { fputs("</body>\n</html>\n", f); }

void vw_html_heat(FILE *f, const char *text, double v, const char *tip)
{
    v = clamp1(v);
    fputs("<span", f);
    if (fabs(v) >= 0.005)   /* unshaded letters stay plain: smaller pages */
        fprintf(f, " style=\"background: rgba(%s, %.2f)\"", v > 0 ? "230, 60, 30" : "40, 90, 230",
                fabs(v));
    if (tip) {
        fputs(" title=\"", f);
        vw_html_text(f, tip);
        fputc('"', f);
    }
    fputc('>', f);
    vw_html_text(f, text);
    fputs("</span>", f);
}

void vw_html_bar(FILE *f, double frac)
{
    frac = clamp1(frac);
    fprintf(f, "<span class=\"bar %s\" style=\"width: %.1fem\"></span>", frac >= 0 ? "pos" : "neg",
            fabs(frac) * 8.0);
}
