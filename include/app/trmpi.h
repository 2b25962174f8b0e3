/* trmpi.h - training across processes (data parallelism, train.h) with MPI.
 *
 * Built in only with `make MPI=1` (mpicc, -DVILLES_MPI); otherwise
 * trm_start answers NULL and nothing needs MPI.  The trainers' trc_open
 * calls trm_start, and a program launched as
 *     mpirun -np N transformer-train ...
 * has every process draw the same batches and take its slice of each
 * (tr_comm: MPI_Allreduce of the contiguous gradient buffer, and of the
 * loss and the stop requests); process 0 evaluates, logs, prints and
 * writes the checkpoints.
 *
 * Failures: a process that exits on an error (or is killed) leaves MPI
 * without MPI_Finalize, and mpirun then ends every other process of the
 * job (Open MPI's default), so no process waits forever in an allreduce.
 * Ctrl-C: mpirun passes SIGINT/SIGTERM on to every process; each asks its
 * handler (trcli.h) after its step and the answers are summed, so all stop
 * after the same step and process 0 writes the checkpoint (if mpirun lets
 * them finish the step before killing them, see the README).
 */
#ifndef VILLES_TRMPI_H
#define VILLES_TRMPI_H

#include <stdbool.h>

#include "train.h"

/* With MPI built in and more than one process: MPI started (once) and the
 * communicator of this process; NULL otherwise (MPI is then finalised
 * again right away, or was never started). */
const tr_comm *trm_start(void);
/* MPI_Finalize when started: call after a run that every process ended
 * together (not on an error of this process alone). */
void trm_finish(void);
/* This process's rank (0 without MPI). */
int  trm_rank(void);

#endif
