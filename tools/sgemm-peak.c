/* sgemm-peak.c - make bench's yardstick: the best GFLOP/s of OpenBLAS's
 * cblas_sgemm on the calling thread (run it with OPENBLAS_NUM_THREADS=1),
 * over square products and the shapes of a batched generation step of a
 * d64 Transformer (lanes x d times d x 8d, lanes x 4d times 4d x d).
 * Prints one number.  Built and run by tools/bench.sh. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Best GFLOP/s of (M, K) x (K, N) over 5 runs of 0.1 s. */
static double gflops(int M, int K, int N)
{
    float *A = calloc((size_t)M * K, sizeof *A), *B = calloc((size_t)K * N, sizeof *B);
    float *C = calloc((size_t)M * N, sizeof *C);
    double best = 0;
    for (size_t i = 0; A && B && i < (size_t)M * K; i++) A[i] = (float)(i % 7) * 0.1f;
    for (size_t i = 0; A && B && i < (size_t)K * N; i++) B[i] = (float)(i % 5) * 0.1f;
    for (int run = 0; A && B && C && run < 5; run++) {
        double t0 = now(), t;
        long reps = 0;
        do {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, A, K, B, N,
                        0.0f, C, N);
            reps++;
        } while ((t = now() - t0) < 0.1);
        double g = 2.0 * M * N * K * reps / t / 1e9;
        if (g > best) best = g;
    }
    free(A);
    free(B);
    free(C);
    return best;
}

int main(void)
{
    static const int shapes[][3] = { { 1024, 1024, 1024 }, { 512, 512, 512 }, { 256, 64, 512 },
                                     { 256, 256, 64 } };
    double best = 0;
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        double g = gflops(shapes[i][0], shapes[i][1], shapes[i][2]);
        if (g > best) best = g;
    }
    printf("%.1f\n", best);
    return 0;
}
