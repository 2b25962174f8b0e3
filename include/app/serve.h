/* serve.h - generate --serve: names, scores and explore's views over HTTP.
 *
 * A small self-contained page (no network access needed: inline CSS and
 * script) and a JSON API, served with libmicrohttpd on a loopback address
 * by default:
 *   GET /                      the page
 *   GET /api/models            {"models": [...], "default": NAME}: the checkpoints of
 *                              the weights directory (NAME.safetensors)
 *   GET /api/generate?model=&count=&temperature=&top_k=&prefix=&seed=
 *                              {"model", "seed", "names": [...]}: generate's names,
 *                              seed for seed
 *   GET /api/score?model=&name=
 *                              {"name", "loss_per_char", "letters": [{"char", "nll",
 *                              "p"}, ...]}: the loss of each letter and of <EOS>
 *   GET /explore/features      explore features --html, the shipped Transformer
 *                              and SAE of the weights directory (computed once)
 *   GET /explore/attribute?name=&pos=
 *                              explore attribute NAME --pos POS --html
 * The parameters are query.h's (bounded; an unknown or bad one is a 400
 * with {"error": "..."}); models are names of files of the weights
 * directory, never paths.  Only GET (and HEAD) is served.  explore is the
 * program beside the running one.
 */
#ifndef VILLES_SERVE_H
#define VILLES_SERVE_H

#include <stdbool.h>
#include <stdio.h>

#include "error.h"

typedef struct srv_config {
    const char *listen;          /* "[ADDR:]PORT", IPv4; ADDR 127.0.0.1 by default,
                                    PORT 0 = any free port (printed) */
    const char *model;           /* the default model's file: its directory is the
                                    weights directory, its name the default */
    const char *data;            /* the names explore features reads */
    FILE       *info;            /* where the address served goes */
} srv_config;

/* Whether libmicrohttpd was there when villes was built. */
bool     srv_available(void);
/* Serve until SIGINT or SIGTERM (ERR_OK), or fail to start: a bad
 * address (ERR_ARG), a port in use (ERR_IO), no libmicrohttpd (ERR_ARG). */
err_code srv_run(const srv_config *c);

#endif
