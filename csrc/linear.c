/* linear: y = x @ W + b, with W in HF's Conv1D orientation (n_in, n_out).
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
 *   MR x NR block of outputs in registers while it streams one panel of each. Prompts of
 *   _ckernels.BLAS_ROWS rows or more go to NumPy's BLAS instead (faster there: docs/kernels.md).
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

/* Kernels whose sums must stay in registers are kept out of the functions that call them: inlined
 * into a big loop nest, GCC may reorder their loops and keep the sums in memory instead. */
#if defined(__GNUC__)
#define NOINLINE __attribute__((noinline))
#define PREFETCH(p) __builtin_prefetch((p), 0, 0)
#else
#define NOINLINE
#define PREFETCH(p) ((void)(p))
#endif

/* -- few rows ------------------------------------------------------------------------------ */

/* A Conv1D weight (rows of W contiguous) is cut into tiles of DECODE_K rows x DECODE_COLS
 * columns: 384 x 256 floats, 384 KiB, read as 384 stretches of 1 KiB (long enough for the
 * hardware prefetcher). A tile gives partial sums for its 256 outputs; the partial sums of a
 * column of tiles are added in a fixed order by whichever thread finishes the column's last tile,
 * so the result has the same bits for any number of threads. */
#define DECODE_COLS 256
#define DECODE_K 384
/* Outputs per work item when the columns of W are contiguous (the LM head: 256 rows of wte, 768 KiB,
 * read in one stretch; 32-row items read the head 10% slower with two threads). */
#define DECODE_DOTS 256
/* Up to this many rows of x count as "few" (decoding a batch); more go to the tiled kernel. */
#define DECODE_MAX_ROWS 12

/* Ask the memory for the next row of W while this one is being multiplied: `floats` values from
 * p, one request per 64-byte line. The hardware prefetcher keeps up with one long stream, but not
 * with rows of a few KiB or less, one after another, at a distance; asking a row ahead made
 * decoding 15-20% faster where we measured (docs/kernels.md). A prefetch is only a hint: it
 * changes no result and never faults. */
static inline void prefetch_row(const float *p, long floats)
{
    for (long i = 0; i < floats; i += 16)
        PREFETCH(p + i);
}

/* The strips below compute out[r, 0:COLS] = x[r, k0:k1] @ W[k0:k1, 0:COLS] for a few rows r, with
 * the R x COLS sums in a local array of constant size, which the compiler keeps in 16 vector
 * registers while the rows of W stream past. (Written out for each shape: a shared version with
 * the sizes as arguments leaves the sums in memory.) */

static NOINLINE void strip_1x256(const float *x, const float *w, long w_stride, long k0, long k1, float *out)
{
    float acc[256];
    for (int j = 0; j < 256; j++)
        acc[j] = x[k0] * w[k0 * w_stride + j];
    for (long k = k0 + 1; k < k1; k++) {
        if (k + 1 < k1)
            prefetch_row(w + (k + 1) * w_stride, 256);
        for (int j = 0; j < 256; j++)
            acc[j] += x[k] * w[k * w_stride + j];
    }
    for (int j = 0; j < 256; j++)
        out[j] = acc[j];
}

static NOINLINE void strip_1x64(const float *x, const float *w, long w_stride, long k0, long k1, float *out)
{
    float acc[64];
    for (int j = 0; j < 64; j++)
        acc[j] = x[k0] * w[k0 * w_stride + j];
    for (long k = k0 + 1; k < k1; k++) {
        if (k + 1 < k1)
            prefetch_row(w + (k + 1) * w_stride, 64);
        for (int j = 0; j < 64; j++)
            acc[j] += x[k] * w[k * w_stride + j];
    }
    for (int j = 0; j < 64; j++)
        out[j] = acc[j];
}

static NOINLINE void strip_4x64(const float *x, long x_stride, const float *w, long w_stride, long k0, long k1,
                                float *out, long out_stride)
{
    float acc[4][64];
    for (int r = 0; r < 4; r++)
        for (int j = 0; j < 64; j++)
            acc[r][j] = x[r * x_stride + k0] * w[k0 * w_stride + j];
    for (long k = k0 + 1; k < k1; k++) {
        if (k + 1 < k1)
            prefetch_row(w + (k + 1) * w_stride, 64);
        for (int r = 0; r < 4; r++)
            for (int j = 0; j < 64; j++)
                acc[r][j] += x[r * x_stride + k] * w[k * w_stride + j];
    }
    for (int r = 0; r < 4; r++)
        for (int j = 0; j < 64; j++)
            out[r * out_stride + j] = acc[r][j];
}

/* out[0:cols] for cols <= 16: one vector of sums over 16 columns, of which the first cols are
 * kept (the caller makes sure that 16 columns exist). */
static NOINLINE void strip_1x16(const float *x, const float *w, long w_stride, long k0, long k1, float *out,
                                long cols)
{
    float acc[16];
    for (int j = 0; j < 16; j++)
        acc[j] = x[k0] * w[k0 * w_stride + j];
    for (long k = k0 + 1; k < k1; k++) {
        if (k + 1 < k1)
            prefetch_row(w + (k + 1) * w_stride, 16);
        for (int j = 0; j < 16; j++)
            acc[j] += x[k] * w[k * w_stride + j];
    }
    for (long j = 0; j < cols; j++)
        out[j] = acc[j];
}

/* The same for any number of rows and columns: the ragged edges of a matrix. */
static void strip_edge(const float *x, long x_stride, const float *w, long w_stride, long rows, long cols,
                       long k0, long k1, float *out, long out_stride)
{
    for (long r = 0; r < rows; r++)
        for (long j = 0; j < cols; j++) {
            float sum = 0.0f;
            for (long k = k0; k < k1; k++)
                sum += x[r * x_stride + k] * w[k * w_stride + j];
            out[r * out_stride + j] = sum;
        }
}

/* One row's outputs out[0:n] from W's columns w[0:n]: 64 columns at a time, then 16 (room is how
 * many columns exist from w on, so that a last 16-column strip does not read past the matrix). */
static void row_strips(const float *x, const float *w, long w_stride, long n, long room, long k0, long k1,
                       float *out)
{
    long c = 0;
    for (; c + 64 <= n; c += 64)
        strip_1x64(x, w + c, w_stride, k0, k1, out + c);
    for (; c < n; c += 16) {
        long cols = n - c < 16 ? n - c : 16;
        if (room - c >= 16)
            strip_1x16(x, w + c, w_stride, k0, k1, out + c, cols);
        else
            strip_edge(x, 0, w + c, w_stride, 1, cols, k0, k1, out + c, 0);
    }
}

/* out[r, 0:width] = x[r, k0:k1] @ W[k0:k1, j0:j0+width] for all rows; rows of W contiguous.
 * Four rows at a time go through strips of 64 columns, each strip read once from memory and then
 * from cache for the next four rows. A single row takes a whole 256-column tile at once, so that
 * each row of the tile is read as one 1 KiB stretch. */
static void decode_tile(const float *x, long x_stride, const float *w, long w_stride, long n_out, long rows,
                        long k0, long k1, long j0, long width, float *out, long out_stride)
{
    w += j0;
    long r = 0, full = width - width % 64;
    for (; r + 4 <= rows; r += 4) {
        for (long c = 0; c < full; c += 64)
            strip_4x64(x + r * x_stride, x_stride, w + c, w_stride, k0, k1, out + r * out_stride + c, out_stride);
        for (long i = r; i < r + 4 && full < width; i++)
            row_strips(x + i * x_stride, w + full, w_stride, width - full, n_out - j0 - full, k0, k1,
                       out + i * out_stride + full);
    }
    for (; r < rows; r++) {
        if (width == 256)
            strip_1x256(x + r * x_stride, w, w_stride, k0, k1, out + r * out_stride);
        else
            row_strips(x + r * x_stride, w, w_stride, width, n_out - j0, k0, k1, out + r * out_stride);
    }
}

/* y[r, j0:j1] = x[r] @ W[:, j0:j1] + b with the columns of W contiguous: one dot product per
 * output. Each column of W is read from memory once and then reused, from L1, for every row. */
static void decode_cols_major(const float *x, long x_stride, const float *w, long w_stride,
                              const float *bias, float *y, long y_stride, long rows, long n_in,
                              long j0, long j1)
{
    for (long j = j0; j < j1; j++) {
        if (j + 1 < j1)
            prefetch_row(w + (j + 1) * w_stride, n_in);
        for (long r = 0; r < rows; r++)
            y[r * y_stride + j] = dot(x + r * x_stride, w + j * w_stride, n_in) + (bias ? bias[j] : 0.0f);
    }
}

struct decode_job {
    const float *x, *w, *bias;
    float *y;
    long x_stride, w_stride, y_stride, rows, n_in, n_out;
    long k_tiles;           /* tiles down the input dimension (1 for the LM head) */
    float *partial;         /* [k_tiles][rows][n_out] partial sums, when k_tiles > 1 */
    atomic_int *finished;   /* tiles finished, per column of tiles */
};

/* Item = (column of tiles, tile down it), or a block of LM-head outputs. */
static void decode_item(void *arg, long item)
{
    const struct decode_job *job = arg;
    long rows = job->rows, n_out = job->n_out;
    if (job->k_tiles == 0) {  /* the columns of W are contiguous */
        long j0 = item * DECODE_DOTS, j1 = j0 + DECODE_DOTS < n_out ? j0 + DECODE_DOTS : n_out;
        decode_cols_major(job->x, job->x_stride, job->w, job->w_stride, job->bias, job->y, job->y_stride, rows,
                          job->n_in, j0, j1);
        return;
    }
    long column = item / job->k_tiles, tile = item % job->k_tiles;
    long j0 = column * DECODE_COLS, width = n_out - j0 < DECODE_COLS ? n_out - j0 : DECODE_COLS;
    long k0 = tile * DECODE_K, k1 = k0 + DECODE_K < job->n_in ? k0 + DECODE_K : job->n_in;
    decode_tile(job->x, job->x_stride, job->w, job->w_stride, n_out, rows, k0, k1, j0, width,
                job->partial + tile * rows * n_out + j0, n_out);
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
    long columns = (job->n_out + DECODE_COLS - 1) / DECODE_COLS;
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

#define MR 6    /* rows of the register block */
#define NR 32   /* columns of the register block (two 16-float vectors) */
#define KC 384  /* inner-dimension slice: a KC x NR panel of W (48 KiB) stays in L1 */
#define NC 128  /* columns of a work item: its KC x NC block of W (192 KiB) stays in L2 */

/* c[MR][NR] += a (a KC x MR panel of x, packed) times b (a KC x NR panel of W, packed). The
 * MR x NR sums live in registers (12 vector registers) for the whole inner loop. */
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
                for (long j = 0; j < NR; j++)
                    b[p * NR + j] = w[p * w_stride + j0 + j];
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
    if (rows <= DECODE_MAX_ROWS) {
        struct decode_job job = {x, w, bias, y, x_stride, w_stride, y_stride, rows, n_in, n_out, 0, NULL, NULL};
        return decode(&job, w_transposed);
    }
    struct tiled_job job = {x, w, bias, y, x_stride, w_stride, y_stride, rows, n_in, n_out, w_transposed, NULL, 0};
    return tiled(&job);
}
