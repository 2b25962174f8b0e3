/* kinds.h - the registry of model kinds: the one list of every kind that
 * generate, explore and steer can load, and what needs that list.
 *
 * It sits above the kinds (src/models/kinds.c includes every kind's
 * header; no kind includes this one), so that adding a kind is one line
 * there and a kind never depends on the others.  The contract a kind
 * fulfils, and how to add one, are in model.h.
 */
#ifndef VILLES_KINDS_H
#define VILLES_KINDS_H

#include "model.h"

/* The kind registered under name (a checkpoint's "model"), NULL if none. */
const mdl_kind *mdl_find_kind(const char *name);

/* Load any villes checkpoint: format checked, kind looked up in the
 * registry (ERR_FORMAT "unknown model kind 'x' (this build generates with:
 * ...)" otherwise), metadata read (mdl_read_meta), vocab parsed into m,
 * then the kind's load.  mdl_free releases it. */
err_code mdl_load(mdl *m, const char *path);
/* The same from a checkpoint already read, which m takes over (*f is
 * emptied, also on error); path names it in messages. */
err_code mdl_load_file(mdl *m, ck_file *f, const char *path);

#endif
