/* Fused attention: softmax(q k^T * scale + masks) v, without ever storing the T x K scores.
 *
 * The trick is the "online" softmax. Walking through the keys in blocks, each query row keeps
 *     m   the largest score seen so far,
 *     l   the sum of exp(score - m) over the keys seen so far,
 *     o   the sum of exp(score - m) * v over the keys seen so far (D numbers).
 * When a block brings a larger maximum m', the old sums are scaled by exp(m - m') and the block's
 * keys are added with exp(score - m'). After the last key, o / l is the softmax-weighted average.
 *
 * Masking follows the NumPy reference (and transformers) exactly: a padding bias of MASK_VALUE (the
 * lowest float32) is *added* to a score, and a future key is never seen (-inf, weight 0), so the
 * future keys are not visited at all. A row whose every visible key is padding has maximum
 * MASK_VALUE, and its visible keys, all scoring exactly MASK_VALUE, share its weight evenly.
 *
 * Work items are (batch, head, block of up to QB query rows); each writes its own rows of `out`.
 * Inside an item, a block of KB keys is scored against all its rows at once: the block is copied
 * transposed (D x KB) so that one query row's KB scores come out of D vector multiply-adds. With
 * a single query row (decoding) the copy would cost more than it saves, so each score is a dot
 * product instead. All GPT-2 sizes have D = 64; the inner loops are compiled once more for that
 * constant, which lets the compiler keep a row's sums in registers.
 */
#include <math.h>
#include <stdatomic.h>

#include "kernels.h"
#include "lanes.h"
#include "parallel.h"
#include "simd.h"
#include "vexpf.h"

#define QB 64  /* query rows per work item */
#define KB 64  /* keys per block */

struct attention_job {
    const float *q, *k, *v, *key_bias, *head_mask;
    const long *qs, *ks, *vs;
    float *out;
    long B, H, T, K, D, key_bias_stride, q_blocks;
    float scale;
    int causal, prefetch;
    atomic_int out_of_memory;
};

/* One item's scratch: its query rows, a transposed key block, scores, and running sums. */
struct item {
    const struct attention_job *job;
    long rows, t0;               /* query rows t0 .. t0 + rows - 1 */
    const float *k, *v, *bias;   /* this (batch, head)'s keys and values, this batch's key bias */
    float *q;                    /* [rows][D], contiguous copies of the query rows */
    float *kt;                   /* [D][KB], a key block transposed */
    float *s;                    /* [rows][KB], scores, then exp(score - m) */
    float *o;                    /* [rows][D], running sums of exp(score - m) v */
    float m[QB], l[QB], shrink[QB];
    unsigned char nan[QB];       /* a row that met a NaN score: its output is NaN, as the reference's */
};

/* s[jj] = (q . k_jj) * scale for n keys k_jj, k_stride apart. The keys and values of a decoding
 * step come from main memory (the weights read since pushed them out of the caches), in rows of
 * D floats: ask for the key 4 rows ahead, and for the value row that add_values will want next
 * (only hints; they change no result and cannot fault). */
static NOINLINE void score_dots(const float *restrict q, const float *restrict k, long k_stride,
                                const float *v, long v_stride, float *restrict s, long n, long D, float scale,
                                int prefetch)
{
    for (long jj = 0; jj < n; jj++) {
        for (long d = 0; d < D; d += 16) {
            if (jj + 4 < n)
                PREFETCH_AS(prefetch, k + (jj + 4) * k_stride + d);
            PREFETCH_AS(prefetch, v + jj * v_stride + d);
        }
        s[jj] = dot(q, k + jj * k_stride, D) * scale;
    }
}

/* The two matrix products, a tile of ATT_R rows x ATT_NV vectors at a time (target_*.h), with the
 * sums in registers; the rows left over go one at a time, in the same order of additions. */

#define ATT_COLS (ATT_NV * VL)  /* keys (scores) or head dimensions (values) per tile; divides KB */

/* s[r][0:KB] = (q[r] . kt) * scale for R query rows (D apart) against a transposed key block kt [D][KB]. */
#define DEFINE_SCORES(NAME, R)                                                                      \
    static NOINLINE void NAME(const float *restrict q, const float *restrict kt, float *restrict s, long D, \
                              float scale)                                                          \
    {                                                                                               \
        for (long j0 = 0; j0 < KB; j0 += ATT_COLS) {                                                \
            vf acc[R][ATT_NV];                                                                      \
            UNROLL for (int r = 0; r < R; r++) {                                                    \
                vf qr = vsplat(q[r * D]);                                                           \
                UNROLL for (int v = 0; v < ATT_NV; v++) acc[r][v] = qr * vload(kt + j0 + v * VL);   \
            }                                                                                       \
            for (long d = 1; d < D; d++) {                                                          \
                vf kv[ATT_NV];                                                                      \
                UNROLL for (int v = 0; v < ATT_NV; v++) kv[v] = vload(kt + d * KB + j0 + v * VL);   \
                UNROLL for (int r = 0; r < R; r++) {                                                \
                    vf qr = vsplat(q[r * D + d]);                                                   \
                    UNROLL for (int v = 0; v < ATT_NV; v++) acc[r][v] += qr * kv[v];                \
                }                                                                                   \
            }                                                                                       \
            UNROLL for (int r = 0; r < R; r++)                                                      \
                UNROLL for (int v = 0; v < ATT_NV; v++) vstore(s + r * KB + j0 + v * VL, acc[r][v] * scale); \
        }                                                                                           \
    }

DEFINE_SCORES(score_rows, ATT_R)
DEFINE_SCORES(score_row, 1)

/* o[r] = o[r] * shrink[r] + sum over n keys of p[r][jj] v[jj] for R rows: rows of o are D apart,
 * rows of p KB apart, rows of v v_stride apart. ATT_COLS columns of o at a time, then single
 * vectors, then any remaining columns one by one. */
#define DEFINE_VALUES(NAME, R)                                                                      \
    static NOINLINE void NAME(float *restrict o, const float *restrict shrink, const float *restrict p,       \
                              const float *restrict v, long v_stride, long n, long D)               \
    {                                                                                               \
        long d0 = 0;                                                                                \
        for (; d0 + ATT_COLS <= D; d0 += ATT_COLS) {                                                \
            vf acc[R][ATT_NV];                                                                      \
            UNROLL for (int r = 0; r < R; r++)                                                      \
                UNROLL for (int c = 0; c < ATT_NV; c++) acc[r][c] = vload(o + r * D + d0 + c * VL) * shrink[r]; \
            for (long jj = 0; jj < n; jj++) {                                                       \
                vf vv[ATT_NV];                                                                      \
                UNROLL for (int c = 0; c < ATT_NV; c++) vv[c] = vload(v + jj * v_stride + d0 + c * VL); \
                UNROLL for (int r = 0; r < R; r++) {                                                \
                    vf pr = vsplat(p[r * KB + jj]);                                                 \
                    UNROLL for (int c = 0; c < ATT_NV; c++) acc[r][c] += pr * vv[c];                \
                }                                                                                   \
            }                                                                                       \
            UNROLL for (int r = 0; r < R; r++)                                                      \
                UNROLL for (int c = 0; c < ATT_NV; c++) vstore(o + r * D + d0 + c * VL, acc[r][c]); \
        }                                                                                           \
        for (; d0 + VL <= D; d0 += VL)                                                              \
            UNROLL for (int r = 0; r < R; r++) {                                                    \
                vf acc = vload(o + r * D + d0) * shrink[r];                                         \
                for (long jj = 0; jj < n; jj++)                                                     \
                    acc += vsplat(p[r * KB + jj]) * vload(v + jj * v_stride + d0);                  \
                vstore(o + r * D + d0, acc);                                                        \
            }                                                                                       \
        for (int r = 0; r < R; r++)                                                                 \
            for (long d = d0; d < D; d++) {                                                         \
                float sum = o[r * D + d] * shrink[r];                                               \
                for (long jj = 0; jj < n; jj++)                                                     \
                    sum += p[r * KB + jj] * v[jj * v_stride + d];                                   \
                o[r * D + d] = sum;                                                                 \
            }                                                                                       \
    }

DEFINE_VALUES(add_values, ATT_R)
DEFINE_VALUES(add_value, 1)

/* s[i][jj] = (q_i . k_(j0 + jj)) * scale for the item's rows i0 .. i1-1 and n keys from j0. */
static inline void score_block(struct item *it, long i0, long i1, long j0, long n, long D)
{
    const long k_stride = it->job->ks[2];
    const float *k = it->k + j0 * k_stride;
    if (i1 - i0 < ATT_R) {  /* few rows: dot products */
        for (long i = i0; i < i1; i++)
            score_dots(it->q + i * D, k, k_stride, it->v + j0 * it->job->vs[2], it->job->vs[2], it->s + i * KB, n,
                       D, it->job->scale, it->job->prefetch);
        return;
    }
    for (long jj = 0; jj < KB; jj++)  /* many rows: transpose the block once, then vector FMAs */
        for (long d = 0; d < D; d++)
            it->kt[d * KB + jj] = jj < n ? k[jj * k_stride + d] : 0.0f;
    float scale = it->job->scale;
    long i = i0;
    for (; i + ATT_R <= i1; i += ATT_R)
        score_rows(it->q + i * D, it->kt, it->s + i * KB, D, scale);
    for (; i < i1; i++)
        score_row(it->q + i * D, it->kt, it->s + i * KB, D, scale);
}

/* Mask row i's scores for keys j0 .. j0+n-1 and update its running maximum and sum; leaves
 * exp(score - m) in s and the factor for the row's old sums in shrink[i]. */
static inline void softmax_row(struct item *it, long i, long j0, long n)
{
    const struct attention_job *job = it->job;
    float *s = it->s + i * KB;
    long visible = it->t0 + i + job->K - job->T + 1 - j0;  /* keys of this block the row may see */
    if (it->bias)
        for (long jj = 0; jj < n; jj++)
            s[jj] += it->bias[j0 + jj];
    if (job->causal)
        for (long jj = visible < 0 ? 0 : visible; jj < n; jj++)
            s[jj] = -INFINITY;
    for (long jj = 0; jj < n; jj++)
        if (isnan(s[jj]))  /* (the maximum below skips NaN; the reference's softmax does not) */
            it->nan[i] = 1;
    float block_max = lane_max(s, n);
    if (block_max == -INFINITY) {  /* nothing to add yet (a row that stays so ends as NaN) */
        for (long jj = 0; jj < n; jj++)
            s[jj] = 0.0f;
        it->shrink[i] = 1.0f;
        return;
    }
    float m = it->m[i] > block_max ? it->m[i] : block_max;
    it->shrink[i] = vexpf(it->m[i] - m);  /* 0 while the row's maximum is still -inf */
    for (long jj = 0; jj < n; jj++)
        s[jj] = vexpf(s[jj] - m);
    it->l[i] = it->l[i] * it->shrink[i] + lane_sum(s, n);
    it->m[i] = m;
}

/* Keys j_begin .. j_end-1 for rows i0 .. i1-1, block by block. */
static inline void absorb(struct item *it, long i0, long i1, long j_begin, long j_end, long D)
{
    for (long j0 = j_begin; j0 < j_end; j0 += KB) {
        long n = j_end - j0 < KB ? j_end - j0 : KB;
        score_block(it, i0, i1, j0, n, D);
        for (long i = i0; i < i1; i++)
            softmax_row(it, i, j0, n);
        const long v_stride = it->job->vs[2];
        const float *v = it->v + j0 * v_stride;
        long i = i0;
        for (; i + ATT_R <= i1; i += ATT_R)
            add_values(it->o + i * D, it->shrink + i, it->s + i * KB, v, v_stride, n, D);
        for (; i < i1; i++)
            add_value(it->o + i * D, it->shrink + i, it->s + i * KB, v, v_stride, n, D);
    }
}

static void attention_item(void *arg, long item)
{
    struct attention_job *job = arg;
    /* Items run from the last query block (the most keys) to the first: long ones start early. */
    long bh = item / job->q_blocks, t0 = (job->q_blocks - 1 - item % job->q_blocks) * QB;
    long b = bh / job->H, h = bh % job->H, D = job->D;
    struct item it = {.job = job, .rows = job->T - t0 < QB ? job->T - t0 : QB, .t0 = t0,
                      .k = job->k + b * job->ks[0] + h * job->ks[1],
                      .v = job->v + b * job->vs[0] + h * job->vs[1],
                      .bias = job->key_bias ? job->key_bias + b * job->key_bias_stride : NULL};
    float *scratch = mg_scratch(MG_SCRATCH_ITEM, sizeof(float) * (it.rows * D + D * KB + it.rows * KB + it.rows * D));
    if (!scratch) {
        atomic_store(&job->out_of_memory, 1);
        return;
    }
    it.q = scratch;
    it.kt = it.q + it.rows * D;
    it.s = it.kt + D * KB;
    it.o = it.s + it.rows * KB;
    const float *q = job->q + b * job->qs[0] + h * job->qs[1];
    for (long i = 0; i < it.rows; i++) {
        for (long d = 0; d < D; d++) {
            it.q[i * D + d] = q[(t0 + i) * job->qs[2] + d];
            it.o[i * D + d] = 0.0f;
        }
        it.m[i] = -INFINITY;
        it.l[i] = 0.0f;
        it.nan[i] = 0;
    }

    long seen = job->causal ? t0 + it.rows + job->K - job->T : job->K;  /* the keys these rows can see */
    if (D == 64)
        absorb(&it, 0, it.rows, 0, seen, 64);  /* the same code, compiled for D = 64 */
    else
        absorb(&it, 0, it.rows, 0, seen, D);

    for (long i = 0; i < it.rows; i++) {
        float factor = (job->head_mask ? job->head_mask[h] : 1.0f) / it.l[i];
        if (it.m[i] == -INFINITY || it.nan[i])  /* every score -inf, or a NaN: the reference gives NaN */
            factor = NAN;
        float *out = job->out + ((b * job->T + t0 + i) * job->H + h) * D;
        for (long d = 0; d < D; d++)
            out[d] = it.o[i * D + d] * factor;
    }
}

int MG_NAME(mg_attention)(const float *q, const long *q_strides, const float *k, const long *k_strides,
                 const float *v, const long *v_strides, float *out, long B, long H, long T, long K,
                 long D, float scale, int causal, const float *key_bias, long key_bias_stride,
                 const float *head_mask, int prefetch)
{
    long q_blocks = (T + QB - 1) / QB;
    struct attention_job job = {q, k, v, key_bias, head_mask, q_strides, k_strides, v_strides, out,
                                B, H, T, K, D, key_bias_stride, q_blocks, scale, causal, prefetch, 0};
    mg_parallel_for(B * H * q_blocks, attention_item, &job);
    return job.out_of_memory ? MG_ERR_MEMORY : MG_OK;
}
