/* linear: y = x @ W + b, with W in HF's Conv1D orientation (n_in, n_out). Compiled once per target
 * (variant_*.c), with that target's vector width and register tiles (target_*.h).
 *
 * Two regimes, one function:
 *
 *   Few rows (decoding: 1 token per sequence). Every weight is used once per row, so the time is
 *   the time to read W from memory: the decode path streams each weight once, into sums kept in
 *   vector registers, with the threads taking tiles of W. Partial sums are always added in the
 *   same order, so the result does not depend on the number of threads.
 *
 *   Many rows (a prompt). Every weight is used many times, so the time is arithmetic, and the
 *   trick is to reuse what is in cache: the classic blocking of Goto & van de Geijn. x is copied
 *   ("packed") once into panels of MR rows; a work item owns NC output columns for all rows,
 *   packs each KC x NC block of W once into panels of NR columns, and a micro-kernel keeps an
 *   MR x NR block of outputs in registers while it streams one panel of each. Which prompts go
 *   to NumPy's BLAS instead is decided in Python (minigpt2/_tuning.py).
 *
 * W comes in two memory layouts (see kernels.h): the rows of W contiguous (every Conv1D weight as
 * stored in the checkpoint), or the columns contiguous (the tied LM head wte.T: a view of the
 * (vocab, n_embd) embedding matrix). Both are used where they lie: nothing is copied per call.
 */
#include <stdatomic.h>
#include <string.h>

#include "kernels.h"
#include "lanes.h"
#include "parallel.h"
#include "simd.h"

/* -- few rows ------------------------------------------------------------------------------ */

/* A Conv1D weight (rows of W contiguous) is cut into tiles of DECODE_K rows x DECODE_COLS
 * columns: 384 x 256 floats, 384 KiB. A tile gives partial sums for its 256 outputs; the partial
 * sums of a column of tiles are added in a fixed order by whichever thread finishes the column's
 * last tile, so the result has the same bits for any number of threads. (256 is a multiple of
 * every target's strip width.) */
#define DECODE_COLS 256
#define DECODE_K 384
/* The row walk (MG_STREAM_ROWS) takes tiles of DECODE_K rows x STREAM_COLS columns: rows of 8 KiB, long
 * stretches for the memory's prefetchers (OpenBLAS's gemv reads whole 12 KiB columns). The same k-tiles,
 * so the same partial sums and bits as the strips. */
#define STREAM_COLS 2048
/* Outputs per work item when the columns of W are contiguous (the LM head: 256 rows of wte, 768 KiB,
 * read in one stretch; 32-row items read the head 10% slower with two threads). */
#define DECODE_DOTS 256
/* Up to this many rows of x count as "few" (decoding a batch); more go to the tiled kernel. */
#define DECODE_MAX_ROWS 12

/* Ask the memory for `floats` values from p, one request per 64-byte line. The hardware
 * prefetcher keeps up with one long stream, but not with many rows of a few hundred bytes to a
 * few KiB, one after another, at a distance. A prefetch is only a hint: it changes no result and
 * never faults. The kind (none, non-temporal, keep) is chosen per CPU (minigpt2/_tuning.py). */
static INLINE void prefetch_span(int kind, const float *p, long floats)
{
    for (long i = 0; i < floats; i += 16)
        PREFETCH_AS(kind, p + i);
}

/* Rows of W a strip of NV vectors asks for ahead: PREFETCH_BYTES of its columns (a request must be made
 * about a memory latency before the data is needed, and a narrow strip eats a row in a few cycles). */
#define AHEAD(NV) (PREFETCH_BYTES / (NV * VL * 4) > 1 ? PREFETCH_BYTES / (NV * VL * 4) : 1)

/* strip_RxNV: out[r, 0:NV*VL] = x[r, k0:k1] @ W[k0:k1, 0:NV*VL] for R rows r, with the R x NV
 * vectors of sums in registers while the rows of W stream past; each step loads NV vectors of W
 * and multiplies them by one broadcast x value per row. The shapes come from target_*.h, chosen
 * so that sums + loads + the broadcast fit the register file. (One function per shape, written
 * out by the macro: with the sizes as run-time arguments the sums would live in memory.) */
#define DEFINE_STRIP(NAME, R, NV)                                                                  \
    static NOINLINE void NAME(const float *x, long x_stride, const float *w, long w_stride, long k0, \
                              long k1, float *out, long out_stride, int prefetch)                   \
    {                                                                                              \
        vf acc[R][NV];                                                                             \
        UNROLL for (int r = 0; r < R; r++) {                                                       \
            vf xr = vsplat(x[r * x_stride + k0]);                                                  \
            UNROLL for (int v = 0; v < NV; v++) acc[r][v] = xr * vload(w + k0 * w_stride + v * VL); \
        }                                                                                          \
        for (long k = k0 + 1; k < k1; k++) {                                                       \
            const float *wk = w + k * w_stride;                                                    \
            if (prefetch && k + AHEAD(NV) < k1)                                                    \
                prefetch_span(prefetch, wk + AHEAD(NV) * w_stride, NV * VL);                       \
            vf wv[NV];                                                                             \
            UNROLL for (int v = 0; v < NV; v++) wv[v] = vload(wk + v * VL);                        \
            UNROLL for (int r = 0; r < R; r++) {                                                   \
                vf xr = vsplat(x[r * x_stride + k]);                                               \
                UNROLL for (int v = 0; v < NV; v++) acc[r][v] += xr * wv[v];                       \
            }                                                                                      \
        }                                                                                          \
        UNROLL for (int r = 0; r < R; r++)                                                         \
            UNROLL for (int v = 0; v < NV; v++) vstore(out + r * out_stride + v * VL, acc[r][v]);  \
    }

DEFINE_STRIP(strip_1_wide, 1, DECODE_NV1)      /* one row, a wide strip: long stretches of each W row */
DEFINE_STRIP(strip_r, DECODE_R, DECODE_NV)     /* DECODE_R rows of a batch at once */
DEFINE_STRIP(strip_1_vec, 1, 1)                /* one vector: the last columns */

/* The last cols < VL columns of one row: one vector of sums when VL columns exist in memory from w
 * on (room), else plain sums. */
static void strip_edge(const float *x, const float *w, long w_stride, long cols, long room, long k0, long k1,
                       float *out, int prefetch)
{
    if (room >= VL) {
        float tmp[VL];
        strip_1_vec(x, 0, w, w_stride, k0, k1, tmp, 0, prefetch);
        memcpy(out, tmp, sizeof(float) * cols);
        return;
    }
    for (long j = 0; j < cols; j++) {
        float sum = x[k0] * w[k0 * w_stride + j];
        for (long k = k0 + 1; k < k1; k++)
            sum += x[k] * w[k * w_stride + j];
        out[j] = sum;
    }
}

/* One row's outputs out[0:n] from W's columns w[0:n]: wide strips, then single vectors, then the
 * edge (room: columns that exist from w on, so that an edge strip never reads past the matrix). */
static void row_strips(const float *x, const float *w, long w_stride, long n, long room, long k0, long k1,
                       float *out, int prefetch)
{
    long c = 0;
    for (; c + DECODE_NV1 * VL <= n; c += DECODE_NV1 * VL)
        strip_1_wide(x, 0, w + c, w_stride, k0, k1, out + c, 0, prefetch);
    for (; c + VL <= n; c += VL)
        strip_1_vec(x, 0, w + c, w_stride, k0, k1, out + c, 0, prefetch);
    if (c < n)
        strip_edge(x, w + c, w_stride, n - c, room - c, k0, k1, out + c, prefetch);
}

/* stream_R: the other way to walk a tile (MG_STREAM_ROWS): whole rows of W (a tile's full width,
 * 8 KiB) one after another, eight (then four, then one) at a time, adding into out[r, 0:width], which stays in L1 and holds
 * the sums between rows. Each element still gets x[k0] w[k0], then one multiply-add per row k in
 * order: the same operations, so the same bits, as the register strips. It reads W in long stretches
 * like BLAS's gemv kernels, at the price of moving the sums through L1; which way is faster depends on
 * the CPU's prefetchers, so the calibration (minigpt2/_tuning.py) tries both. width is a multiple of VL. */
#define DEFINE_STREAM(NAME, R)                                                                     \
    static NOINLINE void NAME(const float *x, long x_stride, const float *w, long w_stride, long k0, \
                              long k1, float *out, long out_stride, long width, int prefetch)       \
    {                                                                                              \
        for (long c = 0; c < width; c += VL) {                                                     \
            vf w0 = vload(w + k0 * w_stride + c);                                                  \
            UNROLL for (int r = 0; r < R; r++) vstore(out + r * out_stride + c, vsplat(x[r * x_stride + k0]) * w0); \
        }                                                                                          \
        long k = k0 + 1;                                                                           \
        for (; k + 8 <= k1; k += 8) {                                                              \
            const float *w0 = w + k * w_stride;                                                    \
            for (long c = 0; c < width; c += VL) {                                                 \
                if (prefetch && c % 16 == 0 && k + 16 <= k1)                                       \
                    for (int i = 8; i < 16; i++)                                                   \
                        PREFETCH_AS(prefetch, w0 + i * w_stride + c);                              \
                vf a[8];                                                                           \
                UNROLL for (int i = 0; i < 8; i++) a[i] = vload(w0 + i * w_stride + c);            \
                UNROLL for (int r = 0; r < R; r++) {                                               \
                    const float *xr = x + r * x_stride + k;                                        \
                    vf acc = vload(out + r * out_stride + c);                                      \
                    UNROLL for (int i = 0; i < 8; i++) acc += vsplat(xr[i]) * a[i];                \
                    vstore(out + r * out_stride + c, acc);                                         \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        for (; k + 4 <= k1; k += 4) {                                                              \
            const float *w0 = w + k * w_stride, *w1 = w0 + w_stride, *w2 = w1 + w_stride, *w3 = w2 + w_stride; \
            for (long c = 0; c < width; c += VL) {                                                 \
                if (prefetch && c % 16 == 0 && k + 4 + 4 <= k1)                                    \
                    for (int i = 4; i < 8; i++)                                                    \
                        PREFETCH_AS(prefetch, w0 + i * w_stride + c);                              \
                vf a0 = vload(w0 + c), a1 = vload(w1 + c), a2 = vload(w2 + c), a3 = vload(w3 + c);   \
                UNROLL for (int r = 0; r < R; r++) {                                               \
                    const float *xr = x + r * x_stride + k;                                        \
                    vf acc = vload(out + r * out_stride + c);                                      \
                    acc += vsplat(xr[0]) * a0;                                                     \
                    acc += vsplat(xr[1]) * a1;                                                     \
                    acc += vsplat(xr[2]) * a2;                                                     \
                    acc += vsplat(xr[3]) * a3;                                                     \
                    vstore(out + r * out_stride + c, acc);                                         \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        for (; k < k1; k++)                                                                        \
            for (long c = 0; c < width; c += VL) {                                                 \
                vf a0 = vload(w + k * w_stride + c);                                               \
                UNROLL for (int r = 0; r < R; r++)                                                 \
                    vstore(out + r * out_stride + c, vload(out + r * out_stride + c) + vsplat(x[r * x_stride + k]) * a0); \
            }                                                                                      \
    }

DEFINE_STREAM(stream_1, 1)
DEFINE_STREAM(stream_2, 2)

/* out[r, 0:width] = x[r, k0:k1] @ W[k0:k1, j0:j0+width] for all rows; rows of W contiguous.
 * DECODE_R rows at a time go through strips of DECODE_NV vectors, each strip read once from memory
 * and then from cache for the next rows; the rows left over go through row_strips. With
 * MG_STREAM_ROWS in `mode`, the rows of x go two at a time (then one) through stream_R instead. */
static void decode_tile(const float *x, long x_stride, const float *w, long w_stride, long n_out, long rows,
                        long k0, long k1, long j0, long width, float *out, long out_stride, int mode)
{
    w += j0;
    int prefetch = mode & 3;
    if (mode & MG_STREAM_ROWS) {
        long full = width - width % VL, r = 0;
        for (; r + 2 <= rows; r += 2)
            stream_2(x + r * x_stride, x_stride, w, w_stride, k0, k1, out + r * out_stride, out_stride, full, prefetch);
        for (; r < rows; r++)
            stream_1(x + r * x_stride, x_stride, w, w_stride, k0, k1, out + r * out_stride, out_stride, full, prefetch);
        for (r = 0; r < rows && full < width; r++)
            strip_edge(x + r * x_stride, w + full, w_stride, width - full, n_out - j0 - full, k0, k1,
                       out + r * out_stride + full, prefetch);
        return;
    }
    const long strip = DECODE_NV * VL, full = width - width % strip;
    long r = 0;
    for (; r + DECODE_R <= rows; r += DECODE_R) {
        for (long c = 0; c < full; c += strip)
            strip_r(x + r * x_stride, x_stride, w + c, w_stride, k0, k1, out + r * out_stride + c, out_stride,
                    prefetch);
        for (long i = r; i < r + DECODE_R && full < width; i++)
            row_strips(x + i * x_stride, w + full, w_stride, width - full, n_out - j0 - full, k0, k1,
                       out + i * out_stride + full, prefetch);
    }
    for (; r < rows; r++)
        row_strips(x + r * x_stride, w, w_stride, width, n_out - j0, k0, k1, out + r * out_stride, prefetch);
}

/* The products of elements k .. n-1 (fewer than a vector's worth), added in order. */
static INLINE float tail_dot(const float *x, const float *w, long k, long n)
{
    float sum = 0.0f;
    for (; k < n; k++)
        sum += x[k] * w[k];
    return sum;
}

/* dots_RxC: y[r, c] = x[r] . w_c for R rows and C columns of W (each contiguous, w_stride apart):
 * R x C vectors of sums, one per output, so each output adds its products in the same order
 * whatever R and C are. While it reads these columns it asks for the next C (up to `ahead`). */
#define DEFINE_DOTS(NAME, R, C)                                                                    \
    static NOINLINE void NAME(const float *x, long x_stride, const float *w, long w_stride, long n,  \
                              float *y, long y_stride, long ahead, int prefetch)                    \
    {                                                                                              \
        vf acc[R][C];                                                                              \
        UNROLL for (int r = 0; r < R; r++) UNROLL for (int c = 0; c < C; c++) acc[r][c] = (vf){0}; \
        long k = 0;                                                                                \
        for (; k + VL <= n; k += VL) {                                                             \
            if (prefetch && k % 16 == 0)                                                           \
                UNROLL for (int c = 0; c < C; c++) if (C + c < ahead)                              \
                    PREFETCH_AS(prefetch, w + (C + c) * w_stride + k);                             \
            vf wv[C];                                                                              \
            UNROLL for (int c = 0; c < C; c++) wv[c] = vload(w + c * w_stride + k);                \
            UNROLL for (int r = 0; r < R; r++) {                                                   \
                vf xr = vload(x + r * x_stride + k);                                               \
                UNROLL for (int c = 0; c < C; c++) acc[r][c] += xr * wv[c];                        \
            }                                                                                      \
        }                                                                                          \
        UNROLL for (int r = 0; r < R; r++) UNROLL for (int c = 0; c < C; c++)                      \
            y[r * y_stride + c] = vsum(acc[r][c]) + tail_dot(x + r * x_stride, w + c * w_stride, k, n); \
    }

DEFINE_DOTS(dots_rc, DOT_R, DOT_C)
DEFINE_DOTS(dots_1c, 1, DOT_C)
DEFINE_DOTS(dots_r1, DOT_R, 1)
DEFINE_DOTS(dots_11, 1, 1)

/* y[r, j0:j1] = x[r] @ W[:, j0:j1] + b with the columns of W contiguous. Each column of W is read
 * from memory once and then reused, from L1, for every group of rows. */
static void decode_cols_major(const float *x, long x_stride, const float *w, long w_stride, const float *bias,
                              float *y, long y_stride, long rows, long n_in, long j0, long j1, int prefetch)
{
    long j = j0;
    for (; j + DOT_C <= j1; j += DOT_C) {
        const float *wj = w + j * w_stride;
        long r = 0;
        for (; r + DOT_R <= rows; r += DOT_R)
            dots_rc(x + r * x_stride, x_stride, wj, w_stride, n_in, y + r * y_stride + j, y_stride, j1 - j, prefetch);
        for (; r < rows; r++)
            dots_1c(x + r * x_stride, x_stride, wj, w_stride, n_in, y + r * y_stride + j, y_stride, j1 - j, prefetch);
    }
    for (; j < j1; j++) {
        const float *wj = w + j * w_stride;
        long r = 0;
        for (; r + DOT_R <= rows; r += DOT_R)
            dots_r1(x + r * x_stride, x_stride, wj, w_stride, n_in, y + r * y_stride + j, y_stride, j1 - j, prefetch);
        for (; r < rows; r++)
            dots_11(x + r * x_stride, x_stride, wj, w_stride, n_in, y + r * y_stride + j, y_stride, j1 - j, prefetch);
    }
    if (bias)
        for (long r = 0; r < rows; r++)
            for (long i = j0; i < j1; i++)
                y[r * y_stride + i] += bias[i];
}

struct decode_job {
    const float *x, *w, *bias;
    float *y;
    long x_stride, w_stride, y_stride, rows, n_in, n_out;
    long k_tiles;           /* tiles down the input dimension (0 for the LM head) */
    long tile_cols;         /* columns of a tile: DECODE_COLS, or STREAM_COLS for the row walk */
    float *partial;         /* [k_tiles][rows][n_out] partial sums, when k_tiles > 0 */
    atomic_int *finished;   /* tiles finished, per column of tiles */
    int prefetch;           /* the prefetch kind, | MG_STREAM_ROWS to walk tiles row by row */
};

/* Item = (column of tiles, tile down it), or a block of LM-head outputs. */
static void decode_item(void *arg, long item)
{
    const struct decode_job *job = arg;
    long rows = job->rows, n_out = job->n_out;
    if (job->k_tiles == 0) {  /* the columns of W are contiguous */
        long j0 = item * DECODE_DOTS, j1 = j0 + DECODE_DOTS < n_out ? j0 + DECODE_DOTS : n_out;
        decode_cols_major(job->x, job->x_stride, job->w, job->w_stride, job->bias, job->y, job->y_stride, rows,
                          job->n_in, j0, j1, job->prefetch & 3);
        return;
    }
    long column = item / job->k_tiles, tile = item % job->k_tiles, cols = job->tile_cols;
    long j0 = column * cols, width = n_out - j0 < cols ? n_out - j0 : cols;
    long k0 = tile * DECODE_K, k1 = k0 + DECODE_K < job->n_in ? k0 + DECODE_K : job->n_in;
    decode_tile(job->x, job->x_stride, job->w, job->w_stride, n_out, rows, k0, k1, j0, width,
                job->partial + tile * rows * n_out + j0, n_out, job->prefetch);
    if (atomic_fetch_add(&job->finished[column], 1) + 1 < job->k_tiles)
        return;
    /* The column's last tile: y = bias + the partial sums, tile 0 first. */
    for (long r = 0; r < rows; r++)
        for (long j = j0; j < j0 + width; j++) {
            float sum = job->partial[r * n_out + j];
            for (long t = 1; t < job->k_tiles; t++)
                sum += job->partial[(t * rows + r) * n_out + j];
            job->y[r * job->y_stride + j] = sum + (job->bias ? job->bias[j] : 0.0f);
        }
}

static int decode(struct decode_job *job, int w_transposed)
{
    if (w_transposed) {
        job->k_tiles = 0;
        mg_parallel_for((job->n_out + DECODE_DOTS - 1) / DECODE_DOTS, decode_item, job);
        return MG_OK;
    }
    job->tile_cols = job->prefetch & MG_STREAM_ROWS ? STREAM_COLS : DECODE_COLS;
    long columns = (job->n_out + job->tile_cols - 1) / job->tile_cols;
    job->k_tiles = (job->n_in + DECODE_K - 1) / DECODE_K;
    size_t partial_bytes = sizeof(float) * job->k_tiles * job->rows * job->n_out;
    char *scratch = mg_scratch(MG_SCRATCH_JOB, partial_bytes + sizeof(atomic_int) * columns);
    if (!scratch)
        return MG_ERR_MEMORY;
    job->partial = (float *)scratch;
    job->finished = (atomic_int *)(scratch + partial_bytes);
    for (long c = 0; c < columns; c++)
        atomic_init(&job->finished[c], 0);
    mg_parallel_for(columns * job->k_tiles, decode_item, job);
    return MG_OK;
}

/* -- many rows ----------------------------------------------------------------------------- */

#define MR GEMM_MR            /* rows of the register block */
#define NR (GEMM_NV * VL)     /* columns of the register block */
#define KC 384                /* inner-dimension slice: a KC x NR panel of W stays in L1 */
#define NC ((128 / NR > 0 ? 128 / NR : 1) * NR)  /* columns of a work item (about 128): KC x NC in L2 */

/* c[MR][NR] += a (a kc x MR panel of x, packed) times b (a kc x NR panel of W, packed). The
 * MR x GEMM_NV vectors of sums live in registers for the whole inner loop. */
static NOINLINE void micro_kernel(long kc, const float *a, const float *b, float *c, long c_stride)
{
    vf acc[MR][GEMM_NV];
    UNROLL for (int i = 0; i < MR; i++)
        UNROLL for (int v = 0; v < GEMM_NV; v++) acc[i][v] = (vf){0};
    for (long p = 0; p < kc; p++) {
        vf bv[GEMM_NV];
        UNROLL for (int v = 0; v < GEMM_NV; v++) bv[v] = vload(b + p * NR + v * VL);
        UNROLL for (int i = 0; i < MR; i++) {
            vf ai = vsplat(a[p * MR + i]);
            UNROLL for (int v = 0; v < GEMM_NV; v++) acc[i][v] += ai * bv[v];
        }
    }
    UNROLL for (int i = 0; i < MR; i++)
        UNROLL for (int v = 0; v < GEMM_NV; v++)
            vstore(c + i * c_stride + v * VL, vload(c + i * c_stride + v * VL) + acc[i][v]);
}

/* Copy W[0:kc, 0:nc] into NR-column panels: b[panel][p][j] (zero-padded). Either way round, the
 * loop reads W along its contiguous axis. */
static void pack_w(const float *w, long w_stride, int w_transposed, long kc, long nc, float *b)
{
    for (long j0 = 0; j0 < nc; j0 += NR, b += NR * kc) {
        long n = nc - j0 < NR ? nc - j0 : NR;
        if (w_transposed) {  /* column j of W is row j of the memory */
            for (long j = 0; j < NR; j++)
                for (long p = 0; p < kc; p++)
                    b[p * NR + j] = j < n ? w[(j0 + j) * w_stride + p] : 0.0f;
        } else if (n == NR) {
            for (long p = 0; p < kc; p++)
                memcpy(b + p * NR, w + p * w_stride + j0, sizeof(float) * NR);
        } else {
            for (long p = 0; p < kc; p++)
                for (long j = 0; j < NR; j++)
                    b[p * NR + j] = j < n ? w[p * w_stride + j0 + j] : 0.0f;
        }
    }
}

struct tiled_job {
    const float *x, *w, *bias;
    float *y;
    long x_stride, w_stride, y_stride, rows, n_in, n_out;
    int w_transposed;
    float *xp;                 /* x packed: MR-row panels, each [n_in][MR] (zero-padded) */
    atomic_int out_of_memory;  /* set by any item that could not allocate its scratch */
};

/* Pack one MR-row panel of x (all of n_in) into xp. */
static void pack_x_item(void *arg, long panel)
{
    struct tiled_job *job = arg;
    long i0 = panel * MR, m = job->rows - i0 < MR ? job->rows - i0 : MR;
    float *a = job->xp + i0 * job->n_in;
    for (long i = 0; i < MR; i++)
        for (long p = 0; p < job->n_in; p++)
            a[p * MR + i] = i < m ? job->x[(i0 + i) * job->x_stride + p] : 0.0f;
}

/* All rows of y for NC columns: each KC x NC block of W is packed once and used for every row. */
static void tiled_item(void *arg, long item)
{
    struct tiled_job *job = arg;
    long j0 = item * NC, nc = job->n_out - j0 < NC ? job->n_out - j0 : NC, rows = job->rows;
    float *b = mg_scratch(MG_SCRATCH_ITEM, sizeof(float) * KC * NC), edge[MR * NR];
    if (!b) {
        atomic_store(&job->out_of_memory, 1);
        return;
    }
    for (long i = 0; i < rows; i++)
        for (long j = 0; j < nc; j++)
            job->y[i * job->y_stride + j0 + j] = job->bias ? job->bias[j0 + j] : 0.0f;
    for (long p0 = 0; p0 < job->n_in; p0 += KC) {
        long kc = job->n_in - p0 < KC ? job->n_in - p0 : KC;
        const float *w = job->w_transposed ? job->w + j0 * job->w_stride + p0 : job->w + p0 * job->w_stride + j0;
        pack_w(w, job->w_stride, job->w_transposed, kc, nc, b);
        for (long i0 = 0; i0 < rows; i0 += MR) {
            const float *a = job->xp + i0 * job->n_in + p0 * MR;
            for (long jr = 0; jr < nc; jr += NR) {
                float *c = job->y + i0 * job->y_stride + j0 + jr;
                if (i0 + MR <= rows && jr + NR <= nc) {
                    micro_kernel(kc, a, b + jr * kc, c, job->y_stride);
                } else {  /* a ragged block: compute into `edge`, add the part that exists */
                    long m = rows - i0 < MR ? rows - i0 : MR, n = nc - jr < NR ? nc - jr : NR;
                    memset(edge, 0, sizeof edge);
                    micro_kernel(kc, a, b + jr * kc, edge, NR);
                    for (long i = 0; i < m; i++)
                        for (long j = 0; j < n; j++)
                            c[i * job->y_stride + j] += edge[i * NR + j];
                }
            }
        }
    }
}

static int tiled(struct tiled_job *job)
{
    long panels = (job->rows + MR - 1) / MR;
    job->xp = mg_scratch(MG_SCRATCH_JOB, sizeof(float) * panels * MR * job->n_in);
    if (!job->xp)
        return MG_ERR_MEMORY;
    mg_parallel_for(panels, pack_x_item, job);
    mg_parallel_for((job->n_out + NC - 1) / NC, tiled_item, job);
    return job->out_of_memory ? MG_ERR_MEMORY : MG_OK;
}

/* -- the entry point (arguments checked by mg_linear in dispatch.c) ------------------------------ */

int MG_NAME(mg_linear)(const float *x, long x_stride, const float *w, long w_stride, int w_transposed,
                       const float *bias, float *y, long y_stride, long rows, long n_in, long n_out, int prefetch)
/* prefetch: an MG_PREFETCH_* kind, plus MG_STREAM_ROWS for the other walk through the tiles */
{
    if (rows <= DECODE_MAX_ROWS) {
        struct decode_job job = {x, w, bias, y, x_stride, w_stride, y_stride, rows, n_in, n_out, 0, 0, NULL, NULL,
                                 prefetch};
        return decode(&job, w_transposed);
    }
    struct tiled_job job = {x, w, bias, y, x_stride, w_stride, y_stride, rows, n_in, n_out, w_transposed, NULL, 0};
    return tiled(&job);
}
