/* prov.h - provenance: what made a checkpoint.
 *
 * The program layer records, once at start-up (cli_init), the program, its
 * version and the whole command line (shell-quoted), and each program adds
 * the data files it reads (name, size in bytes, 64-bit FNV-1a hash of the
 * content; "-" for standard input, which is not hashed).  The result is a
 * JSON object handed to the engine (ck_set_provenance), which writes it into
 * every checkpoint as the metadata entry "provenance":
 *
 *   {"program":"transformer-train","version":"0.1.0",
 *    "command":"transformer-train --data data/villes.txt --steps 100",
 *    "data":[{"file":"data/villes.txt","bytes":456789,"fnv1a64":"0123456789abcdef"}]}
 *
 * `inspect` prints it.  No time stamp: two identical runs write identical
 * files.
 */
#ifndef VILLES_PROV_H
#define VILLES_PROV_H

#include "error.h"

/* Program, version and command line (argv NULL-terminated). */
err_code prv_start(const char *prog, const char *version, char *const *argv);
/* One more data file read by the program (NULL: nothing). */
err_code prv_add_data(const char *path);

#endif
