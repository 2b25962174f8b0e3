/* inspect.h - what a checkpoint holds, for people and for scripts.
 *
 * The file is read and its model built (every kind of the registry, and
 * SAEs), so a file that would not load is refused with the loader's one
 * line.  Then, in one of three forms:
 *
 *   ISP_TEXT     for a terminal: kind, configuration, parameter count,
 *                vocabulary, training (steps, losses, settings), provenance
 *                (program, version, command line, data files), the other
 *                metadata, and the tensor table;
 *   ISP_TSV      "field value" rows: file, bytes, kind, params, tensors,
 *                optimiser_state, train_loss, then config.KEY for each member
 *                of the config, provenance.KEY (data.N.file, data.N.bytes,
 *                data.N.fnv1a64 for each data file), and meta.KEY for every
 *                other metadata entry as it is stored;
 *   ISP_TENSORS  the tensor table: name dtype shape numel fnv1a64 (of the
 *                tensor's bytes), in file order.
 * Values are escaped for one line: \t, \n, \\ and other control bytes as ?.
 *
 * params counts the values of the model's tensors: the optimiser state
 * (optim.*) and a trainer's source state (source.*) are not parameters.
 */
#ifndef VILLES_INSPECT_H
#define VILLES_INSPECT_H

#include <stdio.h>

#include "error.h"

typedef enum isp_format { ISP_TEXT, ISP_TSV, ISP_TENSORS } isp_format;

/* Print what path holds to out; ERR_* with err_set naming path otherwise
 * (nothing printed). */
err_code isp_print(const char *path, isp_format format, FILE *out);

#endif
