/* trmpi.c - training across processes with MPI; see trmpi.h.  Without
 * VILLES_MPI (make without MPI=1) the answers of one process alone. */
#include "trmpi.h"

#ifdef VILLES_MPI

#include <mpi.h>

static tr_comm world;
static bool started;

static err_code sum(void *buf, size_t n, MPI_Datatype type)
{
    /* MPI counts are ints: a buffer beyond 2^31 elements in pieces */
    for (size_t done = 0; done < n;) {
        int k = n - done > (size_t)1 << 30 ? 1 << 30 : (int)(n - done);
        size_t size = type == MPI_FLOAT ? sizeof(float) : sizeof(double);
        if (MPI_Allreduce(MPI_IN_PLACE, (char *)buf + done * size, k, type, MPI_SUM,
                          MPI_COMM_WORLD) != MPI_SUCCESS)
            return err_set(ERR_IO, "MPI_Allreduce failed");
        done += (size_t)k;
    }
    return ERR_OK;
}

static err_code sum_floats(void *ctx, float *buf, size_t n) { return sum(buf, n, MPI_FLOAT); }
static err_code sum_doubles(void *ctx, double *buf, size_t n) { return sum(buf, n, MPI_DOUBLE); }

const tr_comm *trm_start(void)
{
    if (!started) {
        int ok = 0;
        MPI_Initialized(&ok);
        if (!ok && MPI_Init(NULL, NULL) != MPI_SUCCESS) return NULL;
        started = true;
        MPI_Comm_rank(MPI_COMM_WORLD, &world.rank);
        MPI_Comm_size(MPI_COMM_WORLD, &world.size);
        world.sum_floats = sum_floats;
        world.sum_doubles = sum_doubles;
    }
    return world.size > 1 ? &world : NULL;
}

void trm_finish(void)
{
    if (started) MPI_Finalize();
    started = false;
}

int trm_rank(void) { return started ? world.rank : 0; }

#else

const tr_comm *trm_start(void) { return NULL; }
void trm_finish(void) {}
int  trm_rank(void) { return 0; }

#endif
