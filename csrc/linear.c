/* linear: y = x @ W + b, with W in HF's Conv1D orientation (n_in, n_out).
 *
 * Two regimes, one function:
 *
 *   Few rows (decoding: 1 token per sequence). Every weight is used once per row, so the time is
 *   the time to read W from memory. decode_rows_major / decode_cols_major stream W exactly once,
 *   and threads split the *output columns*, so no two threads ever add into the same number and
 *   the result does not depend on the thread count.
 *
 *   Many rows (a prompt). Every weight is used many times, so the time is arithmetic, and the
 *   trick is to reuse what is in cache: the classic blocking of Goto & van de Geijn. The output is
 *   cut into MC x NC tiles (the work items the threads take); inside a tile we walk the inner
 *   dimension in KC-long slices, copy ("pack") the slice of x and of W into small contiguous
 *   panels that fit the L2 and L1 caches, and a micro-kernel keeps an MR x NR block of outputs in
 *   registers while it streams through the panels.
 *
 * W comes in two memory layouts (see kernels.h): the rows of W contiguous (every Conv1D weight as
 * stored in the checkpoint), or the columns contiguous (the tied LM head wte.T: a view of the
 * (vocab, n_embd) embedding matrix). Both are used where they lie: nothing is copied per call.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "lanes.h"
#include "parallel.h"

/* -- few rows ------------------------------------------------------------------------------ */

/* Output columns per work item when the rows of W are contiguous: 64 floats = 4 cache lines of
 * each row of W, enough for the hardware prefetcher, small enough to give every thread work. */
#define DECODE_COLS 64
/* Output columns per work item when the columns of W are contiguous (the LM head). */
#define DECODE_DOTS 32
/* The kernels below handle up to this many rows at once (more rows are done in groups). */
#define DECODE_ROWS 8

/* y[r, j0:j1] = x[r] @ W[:, j0:j1] + b for rows r < rows <= DECODE_ROWS; rows of W contiguous.
 * The outputs (rows x 64 floats) stay in L1 while each row of W streams past once. */
static void decode_rows_major(const float *x, long x_stride, const float *w, long w_stride,
                              const float *bias, float *y, long y_stride, long rows, long n_in,
                              long j0, long j1)
{
    float acc[DECODE_ROWS][DECODE_COLS];
    long width = j1 - j0;
    for (long r = 0; r < rows; r++)
        for (long j = 0; j < width; j++)
            acc[r][j] = 0.0f;
    long k = 0;
    for (; k + 4 <= n_in; k += 4) {  /* four rows of W at a time: fewer passes over acc */
        const float *w0 = w + k * w_stride + j0, *w1 = w0 + w_stride;
        const float *w2 = w1 + w_stride, *w3 = w2 + w_stride;
        for (long r = 0; r < rows; r++) {
            const float *xr = x + r * x_stride + k;
            float x0 = xr[0], x1 = xr[1], x2 = xr[2], x3 = xr[3];
            for (long j = 0; j < width; j++)
                acc[r][j] += x0 * w0[j] + x1 * w1[j] + x2 * w2[j] + x3 * w3[j];
        }
    }
    for (; k < n_in; k++) {
        const float *wk = w + k * w_stride + j0;
        for (long r = 0; r < rows; r++) {
            float xk = x[r * x_stride + k];
            for (long j = 0; j < width; j++)
                acc[r][j] += xk * wk[j];
        }
    }
    for (long r = 0; r < rows; r++)
        for (long j = 0; j < width; j++)
            y[r * y_stride + j0 + j] = acc[r][j] + (bias ? bias[j0 + j] : 0.0f);
}

/* y[r, j0:j1] = x[r] @ W[:, j0:j1] + b with the columns of W contiguous: one dot product per
 * output. Each column of W is read from memory once and then reused, from L1, for every row. */
static void decode_cols_major(const float *x, long x_stride, const float *w, long w_stride,
                              const float *bias, float *y, long y_stride, long rows, long n_in,
                              long j0, long j1)
{
    for (long j = j0; j < j1; j++)
        for (long r = 0; r < rows; r++)
            y[r * y_stride + j] = dot(x + r * x_stride, w + j * w_stride, n_in) + (bias ? bias[j] : 0.0f);
}

struct decode_job {
    const float *x, *w, *bias;
    float *y;
    long x_stride, w_stride, y_stride, rows, n_in, n_out, cols_per_item;
    int w_transposed;
};

static void decode_item(void *arg, long item)
{
    const struct decode_job *job = arg;
    long j0 = item * job->cols_per_item;
    long j1 = j0 + job->cols_per_item < job->n_out ? j0 + job->cols_per_item : job->n_out;
    for (long r0 = 0; r0 < job->rows; r0 += DECODE_ROWS) {
        long rows = job->rows - r0 < DECODE_ROWS ? job->rows - r0 : DECODE_ROWS;
        const float *x = job->x + r0 * job->x_stride;
        float *y = job->y + r0 * job->y_stride;
        if (job->w_transposed)
            decode_cols_major(x, job->x_stride, job->w, job->w_stride, job->bias, y, job->y_stride, rows,
                              job->n_in, j0, j1);
        else
            decode_rows_major(x, job->x_stride, job->w, job->w_stride, job->bias, y, job->y_stride, rows,
                              job->n_in, j0, j1);
    }
}

/* -- many rows ----------------------------------------------------------------------------- */

#define MR 6    /* rows of the register block */
#define NR 32   /* columns of the register block (two 16-float vectors) */
#define KC 256  /* inner-dimension slice: an MR x KC panel of x and a KC x NR panel of W fit in L1 */
#define MC 96   /* rows of a tile: the MC x KC block of x (96 KiB) stays in L2 */
#define NC 256  /* columns of a tile: the KC x NC block of W (256 KiB) stays in L2 */

/* acc[MR][NR] += a (KC x MR panel, packed) times b (KC x NR panel, packed), then added into y. */
static void micro_kernel(long kc, const float *a, const float *b, float *c, long c_stride)
{
    float acc[MR][NR] = {{0.0f}};
    for (long p = 0; p < kc; p++)
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < NR; j++)
                acc[i][j] += a[p * MR + i] * b[p * NR + j];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++)
            c[i * c_stride + j] += acc[i][j];
}

/* Copy x[i0:i0+mc, p0:p0+kc] into MR-row panels, panel-major: a[panel][p][i] (zero-padded). */
static void pack_x(const float *x, long x_stride, long mc, long kc, float *a)
{
    for (long i0 = 0; i0 < mc; i0 += MR)
        for (long p = 0; p < kc; p++)
            for (long i = 0; i < MR; i++)
                *a++ = i0 + i < mc ? x[(i0 + i) * x_stride + p] : 0.0f;
}

/* Copy W[p0:p0+kc, j0:j0+nc] into NR-column panels: b[panel][p][j] (zero-padded). */
static void pack_w(const float *w, long w_stride, int w_transposed, long kc, long nc, float *b)
{
    for (long j0 = 0; j0 < nc; j0 += NR)
        for (long p = 0; p < kc; p++)
            for (long j = 0; j < NR; j++) {
                int inside = j0 + j < nc;
                long at = w_transposed ? (j0 + j) * w_stride + p : p * w_stride + j0 + j;
                *b++ = inside ? w[at] : 0.0f;
            }
}

struct tiled_job {
    const float *x, *w, *bias;
    float *y;
    long x_stride, w_stride, y_stride, rows, n_in, n_out, tiles_across;
    int w_transposed;
    atomic_int out_of_memory;  /* set by any item that could not allocate its scratch */
};

/* One MC x NC tile of y, computed by one thread from start to end. */
static void tiled_item(void *arg, long item)
{
    struct tiled_job *job = arg;
    long i0 = (item / job->tiles_across) * MC, j0 = (item % job->tiles_across) * NC;
    long mc = job->rows - i0 < MC ? job->rows - i0 : MC;
    long nc = job->n_out - j0 < NC ? job->n_out - j0 : NC;
    /* Scratch: the packed panels (on the heap: 350 KiB is too much for a thread's stack), plus
     * one MR x NR block for the ragged edges of the tile. */
    float *a = malloc(sizeof(float) * (MC * KC + KC * NC)), edge[MR * NR];
    if (!a) {
        atomic_store(&job->out_of_memory, 1);
        return;
    }
    float *b = a + MC * KC;

    for (long i = 0; i < mc; i++)
        for (long j = 0; j < nc; j++)
            job->y[(i0 + i) * job->y_stride + j0 + j] = job->bias ? job->bias[j0 + j] : 0.0f;
    for (long p0 = 0; p0 < job->n_in; p0 += KC) {
        long kc = job->n_in - p0 < KC ? job->n_in - p0 : KC;
        pack_x(job->x + i0 * job->x_stride + p0, job->x_stride, mc, kc, a);
        const float *w = job->w_transposed ? job->w + j0 * job->w_stride + p0 : job->w + p0 * job->w_stride + j0;
        pack_w(w, job->w_stride, job->w_transposed, kc, nc, b);
        for (long jr = 0; jr < nc; jr += NR)
            for (long ir = 0; ir < mc; ir += MR) {
                float *c = job->y + (i0 + ir) * job->y_stride + j0 + jr;
                const float *ap = a + ir * kc, *bp = b + jr * kc;
                if (ir + MR <= mc && jr + NR <= nc) {
                    micro_kernel(kc, ap, bp, c, job->y_stride);
                } else {  /* a ragged block: compute into `edge`, add the part that exists */
                    long m = mc - ir < MR ? mc - ir : MR, n = nc - jr < NR ? nc - jr : NR;
                    memset(edge, 0, sizeof edge);
                    micro_kernel(kc, ap, bp, edge, NR);
                    for (long i = 0; i < m; i++)
                        for (long j = 0; j < n; j++)
                            c[i * job->y_stride + j] += edge[i * NR + j];
                }
            }
    }
    free(a);
}

/* -- the entry point ------------------------------------------------------------------------- */

int mg_linear(const float *x, long x_stride, const float *w, long w_stride, int w_transposed,
              const float *bias, float *y, long y_stride, long rows, long n_in, long n_out)
{
    if (!x || !w || !y)
        return MG_ERR_NULL;
    if (rows < 0 || n_in < 1 || n_out < 1)
        return MG_ERR_SHAPE;
    if (rows == 0)
        return MG_OK;
    if (rows <= 2 * DECODE_ROWS) {
        struct decode_job job = {x, w, bias, y, x_stride, w_stride, y_stride, rows, n_in, n_out,
                                 w_transposed ? DECODE_DOTS : DECODE_COLS, w_transposed};
        mg_parallel_for((n_out + job.cols_per_item - 1) / job.cols_per_item, decode_item, &job);
    } else {
        long across = (n_out + NC - 1) / NC, down = (rows + MC - 1) / MC;
        struct tiled_job job = {x, w, bias, y, x_stride, w_stride, y_stride, rows, n_in, n_out, across,
                                w_transposed, 0};
        mg_parallel_for(across * down, tiled_item, &job);
        if (job.out_of_memory)
            return MG_ERR_MEMORY;
    }
    return MG_OK;
}
