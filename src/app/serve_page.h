/* serve_page.h - the page generate --serve serves at / (serve_page.c). */
#ifndef VILLES_SERVE_PAGE_H
#define VILLES_SERVE_PAGE_H

extern const char srv_page[];

#endif
