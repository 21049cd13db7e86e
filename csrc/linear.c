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
#include "widen.h"

/* -- few rows ------------------------------------------------------------------------------ */

/* A Conv1D weight (rows of W contiguous) is cut into tiles of DECODE_K rows x DECODE_COLS
 * columns: 384 x 256 floats, 384 KiB. A tile gives partial sums for its 256 outputs; the partial
 * sums of a column of tiles are added in a fixed order by whichever thread finishes the column's
 * last tile, so the result has the same bits for any number of threads. (256 is a multiple of
 * every target's strip width; 384 of int8's blocks of 32. The narrowest GPT-2 matrix, 768 x 768,
 * still makes 6 work items. Tiles of 96 rows, which make 4 times as many items, decoded 10% slower
 * on Zen 5 with 2 threads: each tile starts its rows' streams afresh and ends in a partial sum.) */
#define DECODE_COLS 256
#define DECODE_K 384
/* The row walk (MG_STREAM_ROWS) takes tiles of DECODE_K rows x STREAM_COLS columns: rows of up to 16 KiB,
 * long stretches for the memory's prefetchers (OpenBLAS's gemv reads whole columns of 8-12 KiB; on Zen 3,
 * 4 rows at a time over 12 KiB read 20% faster than 8 rows over 8 KiB). The same k-tiles, so the same
 * partial sums and bits as the strips. */
#define STREAM_COLS 4096
/* Outputs per work item when the columns of W are contiguous (the LM head: 256 rows of wte, 768 KiB,
 * read in one stretch; 32-row items read the head 10% slower with two threads). */
#define DECODE_DOTS 256
/* Up to this many rows of x count as "few" (decoding a batch); more go to the tiled kernel. */
#define DECODE_MAX_ROWS 12
/* Up to this many rows (a batch, a short prompt), int8 weights stored by columns take the integer dot products
 * (dots_i8.h), a pass over each column per 4 rows from cache; more take the tiled float kernels, which widen each
 * tile of W once, a fixed cost of a pass over all the weights. (Xeon, the 124M model's forward at 2 / 1 threads,
 * dot products against tiled: 13 rows 40 / 59 ms against 62 / 120; 24 rows 66 / 103 against 72 / 130; 32 rows
 * 89 / 139 against 87 / 148; 64 rows 170 / 274 against 125 / 218.) */
#define I8_DOTS_MAX_ROWS 31

/* the tiled kernel's register block (used by pack_w in decode.h) */
#define MR GEMM_MR            /* rows of the register block */
#define NR (GEMM_NV * VL)     /* columns of the register block */

/* The decode kernels, once per weight format (decode.h): only the load of a weight differs. int8's
 * scales: one per BLOCK weights down a column of W (minigpt2/weights.py), at sc[(k / BLOCK) * s_stride + j]
 * for a Conv1D weight and sc[j * s_stride + k / BLOCK] for the tied head. A prefetch is only a hint: it
 * changes no result and never faults. The kind (none, non-temporal, keep) is chosen per CPU. */
#define BLOCK 32

#define FMT f32
#define WT float
#define WLOAD(p, srow, c) vload(p)
#define WCOL(w, sc, c, k) vload((w) + (c) * w_stride + (k))
#define SROW(w, sc, k, j) ((w)[(k) * w_stride + (j)])
#define SCOL(w, sc, c, k) ((w)[(c) * w_stride + (k)])
#include "decode.h"

#define FMT bf16
#define WT uint16_t
#define WLOAD(p, srow, c) widen_bf16(p)
#define WCOL(w, sc, c, k) widen_bf16((w) + (c) * w_stride + (k))
#define SROW(w, sc, k, j) bf16_to_float((w)[(k) * w_stride + (j)])
#define SCOL(w, sc, c, k) bf16_to_float((w)[(c) * w_stride + (k)])
#include "decode.h"

#define FMT f16
#define WT uint16_t
#define WLOAD(p, srow, c) widen_f16(p)
#define WCOL(w, sc, c, k) widen_f16((w) + (c) * w_stride + (k))
#define SROW(w, sc, k, j) half_to_float((w)[(k) * w_stride + (j)])
#define SCOL(w, sc, c, k) half_to_float((w)[(c) * w_stride + (k)])
#include "decode.h"

/* int8: srow, the scales of the block of rows a row k belongs to (SC_ROW); a weight is q times its column's
 * scale there. Only int8 moves the scale pointer (SC_AT): the other formats have none (NULL). */
#define FMT i8
#define WT int8_t
#define SCALED 1
#define SC_ROW(sc, k) ((sc) + (k) / BLOCK * s_stride)
#define SC_AT(sc, j) ((sc) + (j))
#define WLOAD(p, srow, c) (widen_i8(p) * widen_f16((srow) + (c)))
#define WRAW(p) widen_i8(p)  /* q alone: decode.h's groups of four rows take the scale once (GROUP4) */
#define SCALE_AT(sc, c, k) half_to_float((sc)[(c) * s_stride + (k) / BLOCK]) /* W[k, c]'s scale in the head */
#define WCOL(w, sc, c, k) (widen_i8((w) + (c) * w_stride + (k)) * vsplat(SCALE_AT(sc, c, k)))
#define SROW(w, sc, k, j) ((float)(w)[(k) * w_stride + (j)] * half_to_float((sc)[(k) / BLOCK * s_stride + (j)]))
#define SCOL(w, sc, c, k) ((float)(w)[(c) * w_stride + (k)] * SCALE_AT(sc, c, k))
#include "decode.h"

/* Call the decode.h function `name` of the weight format `format`. */
#define BY_FORMAT(format, name, ...)                                                             \
    switch (format) {                                                                            \
    case MG_F16: name##_f16(__VA_ARGS__); break;                                                 \
    case MG_BF16: name##_bf16(__VA_ARGS__); break;                                               \
    case MG_I8: name##_i8(__VA_ARGS__); break;                                                   \
    default: name##_f32(__VA_ARGS__); break;                                                     \
    }

/* bytes of one stored weight */
static long format_bytes(int format) { return format == MG_I8 ? 1 : format == MG_F32 ? 4 : 2; }

struct decode_job {
    const float *x, *bias;
    const void *w;          /* the weights, in the format below */
    const uint16_t *scales; /* int8: a float16 scale per BLOCK weights (NULL for the other formats) */
    float *y;
    long x_stride, w_stride, s_stride, y_stride, rows, n_in, n_out;
    int format;             /* MG_F32, MG_F16, MG_BF16 or MG_I8 */
    int prefetch;           /* the prefetch kind, | MG_STREAM_ROWS to walk tiles row by row */
    long k_tiles;           /* tiles down the input dimension (0 for the LM head) */
    long tile_cols;         /* columns of a tile (DECODE_COLS, or STREAM_COLS for the row walk), or outputs of a
                             * head's item (DECODE_DOTS); twice that for 16-bit weights */
    float *partial;         /* [k_tiles][rows][n_out] partial sums, when k_tiles > 0 */
    atomic_int *finished;   /* tiles finished, per column of tiles */
};

/* Item = (column of tiles, tile down it), or a block of LM-head outputs. */
static void decode_item(void *arg, long item)
{
    const struct decode_job *job = arg;
    long rows = job->rows, n_out = job->n_out;
    if (job->k_tiles == 0) {  /* the columns of W are contiguous */
        long j0 = item * job->tile_cols, j1 = j0 + job->tile_cols < n_out ? j0 + job->tile_cols : n_out;
        BY_FORMAT(job->format, decode_cols_major, job->x, job->x_stride, job->w, job->w_stride, job->scales,
                  job->s_stride, job->bias, job->y, job->y_stride, rows, job->n_in, j0, j1, job->prefetch)
        return;
    }
    long column = item / job->k_tiles, tile = item % job->k_tiles, cols = job->tile_cols;
    long j0 = column * cols, width = n_out - j0 < cols ? n_out - j0 : cols;
    long k0 = tile * DECODE_K, k1 = k0 + DECODE_K < job->n_in ? k0 + DECODE_K : job->n_in;
    BY_FORMAT(job->format, decode_tile, job->x, job->x_stride, job->w, job->w_stride, job->scales, job->s_stride,
              n_out, rows, k0, k1, j0, width, job->partial + tile * rows * n_out + j0, n_out, job->prefetch)
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

/* Outputs per work item for a weight stored by columns: about `per`, but in a multiple of the thread count of
 * items, so that the threads get equal shares of the work (GPT-2's 768-output matrices in items of 512 were two
 * items, one twice the other), and a multiple of 4 (columns side by side). No bit depends on it: each output is
 * one dot product, computed whole in one item. (Not a measured gain: in the model on Zen 4, int8, interleaved, it
 * decoded level with the uneven split, 158.7 against 161.0 tok/s at 2 threads, 120.5 against 123.3 at 1.) */
static long dots_per_item(long n_out, long per)
{
    long threads = mg_get_num_threads(), items = (n_out + per - 1) / per;
    if (threads > 1 && items % threads)
        items += threads - items % threads;
    per = (n_out + items - 1) / items;
    return (per + 3) / 4 * 4;
}

static int decode(struct decode_job *job, int w_transposed)
{
    /* 16-bit weights: twice the columns per item, so that an item reads as many bytes as float32's (Xeon, 2
     * threads, interleaved: bfloat16 decoding 1-4% faster than with float32's columns per item; int8 no faster) */
    long wide = job->format == MG_BF16 || job->format == MG_F16 ? 2 : 1;
    if (w_transposed) {
        job->k_tiles = 0;
        job->tile_cols = dots_per_item(job->n_out, DECODE_DOTS * wide);
        mg_parallel_for((job->n_out + job->tile_cols - 1) / job->tile_cols, decode_item, job);
        return MG_OK;
    }
    job->tile_cols = (job->prefetch & MG_STREAM_ROWS ? STREAM_COLS : DECODE_COLS) * wide;
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

#define KC 384                /* inner-dimension slice: a KC x NR panel of W stays in L1 (a multiple of BLOCK) */
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

struct tiled_job {
    const float *x, *bias;
    const void *w;
    const uint16_t *scales;
    float *y;
    long x_stride, w_stride, s_stride, y_stride, rows, n_in, n_out;
    int format, w_transposed;
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

/* All rows of y for NC columns: each KC x NC block of W is packed (widened) once and used for every row. */
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
        long at = job->w_transposed ? j0 * job->w_stride + p0 : p0 * job->w_stride + j0;  /* W[p0, j0] */
        const uint16_t *sc = !job->scales ? NULL : job->w_transposed ? job->scales + j0 * job->s_stride + p0 / BLOCK
                                                                  : job->scales + p0 / BLOCK * job->s_stride + j0;
        const char *w = (const char *)job->w + at * format_bytes(job->format);
        BY_FORMAT(job->format, pack_w, w, job->w_stride, sc, job->s_stride, job->w_transposed, kc, nc, b)
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

/* -- int8 weights: activations rounded to int16, integer dot products ------------------------------- */

#include "dots_i8.h"

/* -- the entry point (arguments checked by mg_linear in dispatch.c) ------------------------------ */

int MG_NAME(mg_linear)(const float *x, long x_stride, int w_format, const void *w, long w_stride,
                       const uint16_t *scales, long s_stride, int w_transposed, const float *bias, float *y,
                       long y_stride, long rows, long n_in, long n_out, int prefetch)
/* prefetch: an MG_PREFETCH_* kind, plus MG_STREAM_ROWS for the other walk through the tiles */
{
    if (w_format == MG_I8) {  /* x rounded to int16 per block of 32 (dots_i8.h), for whichever kernel */
        const long n_pad = (n_in + BLOCK - 1) / BLOCK * BLOCK;
        const int dots = rows <= I8_DOTS_MAX_ROWS && w_transposed;  /* else: the float kernels, on the rounded x */
        size_t xi_bytes = sizeof(int16_t) * rows * n_pad, sx_bytes = sizeof(float) * rows * (n_pad / BLOCK);
        char *scratch = mg_scratch(MG_SCRATCH_INPUT, xi_bytes + sx_bytes + (dots ? 0 : sizeof(float) * rows * n_in));
        if (!scratch)
            return MG_ERR_MEMORY;
        int16_t *xi = (int16_t *)scratch;
        float *sx = (float *)(scratch + xi_bytes), *xr = dots ? NULL : (float *)(scratch + xi_bytes + sx_bytes);
        round_rows(x, x_stride, rows, n_in, xi, sx, xr);
        if (dots) {
            struct dots_i8_job job = {xi, sx, bias, w, scales, y, n_pad, w_stride, s_stride, y_stride, rows, n_in,
                                      n_out, prefetch & 3, dots_per_item(n_out, DECODE_DOTS)};
            mg_parallel_for((n_out + job.per_item - 1) / job.per_item, dots_i8_item, &job);
            return MG_OK;
        }
        x = xr, x_stride = n_in;
    }
    if (rows <= DECODE_MAX_ROWS) {
        struct decode_job job = {x, bias, w, scales, y, x_stride, w_stride, s_stride, y_stride, rows, n_in, n_out,
                                 w_format, prefetch, 0, 0, NULL, NULL};
        return decode(&job, w_transposed);
    }
    struct tiled_job job = {x, bias, w, scales, y, x_stride, w_stride, s_stride, y_stride, rows, n_in, n_out,
                            w_format, w_transposed, NULL, 0};
    return tiled(&job);
}
