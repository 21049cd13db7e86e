/* Fused attention: softmax(q k^T * scale + masks) v, one query row at a time, without storing the
 * T x K matrix of scores.
 *
 * The trick is the "online" softmax. Walking through the keys in blocks, each query row keeps
 *     m   the largest score seen so far,
 *     l   the sum of exp(score - m) over the keys seen so far,
 *     o   the sum of exp(score - m) * v over the keys seen so far (D numbers, kept in `out`).
 * When a block brings a larger maximum m', the old sums are scaled by exp(m - m') and the block's
 * keys are added with exp(score - m'). After the last key, o / l is the softmax-weighted average.
 *
 * Masking follows the NumPy reference exactly, because GPT-2's masks are arithmetic rather than
 * "skip this key": a future key's score is *replaced* by MASK_VALUE (the lowest float32), and a
 * padding bias of MASK_VALUE is *added*, so a key that is both becomes -inf. Usually a masked key
 * contributes exp(MASK_VALUE - m) = 0 exactly, and we need not visit future keys at all. But in a
 * row whose every visible key is padding, the maximum is MASK_VALUE itself, and then the future
 * non-padding keys (score exactly MASK_VALUE) count as much as the visible ones: the reference
 * gives such a row a uniform distribution over both. We reproduce that by visiting the future
 * keys of exactly those rows (and of every row when a bias is positive, which could lift a future
 * key above the rest).
 *
 * Work items are (batch, head, block of QB query rows); each writes its own rows of `out`.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "kernels.h"
#include "parallel.h"
#include "vexpf.h"

#define QB 16  /* query rows per work item */
#define KB 64  /* keys per block */

static const float MASK_VALUE = -FLT_MAX;

/* The dot product of two contiguous vectors. The 16 partial sums become one vector register; the
 * compiler may not vectorise a single running sum itself, since that reorders the additions. */
static float dot(const float *a, const float *b, long n)
{
    float part[16] = {0.0f};
    long k = 0;
    for (; k + 16 <= n; k += 16)
        for (int l = 0; l < 16; l++)
            part[l] += a[k + l] * b[k + l];
    for (int w = 8; w > 0; w /= 2)  /* add the partial sums pairwise */
        for (int l = 0; l < w; l++)
            part[l] += part[l + w];
    float sum = part[0];
    for (; k < n; k++)
        sum += a[k] * b[k];
    return sum;
}

struct attention_job {
    const float *q, *k, *v, *key_bias, *head_mask;
    const long *qs, *ks, *vs;
    float *out;
    long B, H, T, K, D, key_bias_stride, q_blocks;
    float scale;
    int causal;
};

/* The running state of one query row: see the comment at the top. */
struct row {
    const float *q;
    float *o;
    long t;  /* position among the T queries; it sees keys 0 .. t + K - T when causal */
    float m, l;
};

/* Add keys j0 .. j1-1 to a row's running softmax. */
static void absorb(const struct attention_job *job, struct row *r, const float *k, const float *v,
                   const float *bias, long j0, long j1)
{
    float s[KB];
    long last_visible = r->t + job->K - job->T;
    for (long j = j0; j < j1; j += KB) {
        long n = j1 - j < KB ? j1 - j : KB;
        float block_max = -INFINITY;
        for (long i = 0; i < n; i++) {
            float score = dot(r->q, k + (j + i) * job->ks[2], job->D) * job->scale;
            if (job->causal && j + i > last_visible)
                score = MASK_VALUE;
            if (bias)
                score += bias[j + i];  /* MASK_VALUE + MASK_VALUE overflows to -inf, as in NumPy */
            s[i] = score;
            block_max = score > block_max ? score : block_max;
        }
        if (block_max == -INFINITY)  /* nothing to add yet; a row that stays so ends as NaN */
            continue;
        float m = r->m > block_max ? r->m : block_max;
        float shrink = vexpf(r->m - m);  /* 0 while r->m is still -inf */
        if (shrink != 1.0f) {
            r->l *= shrink;
            for (long d = 0; d < job->D; d++)
                r->o[d] *= shrink;
        }
        for (long i = 0; i < n; i++)  /* a separate loop, so that the exponentials are vectorised */
            s[i] = vexpf(s[i] - m);
        for (long i = 0; i < n; i++) {
            const float *vj = v + (j + i) * job->vs[2];
            r->l += s[i];
            for (long d = 0; d < job->D; d++)
                r->o[d] += s[i] * vj[d];
        }
        r->m = m;
    }
}

static void attention_item(void *arg, long item)
{
    const struct attention_job *job = arg;
    long bh = item / job->q_blocks, t0 = (item % job->q_blocks) * QB;
    long b = bh / job->H, h = bh % job->H;
    long rows = job->T - t0 < QB ? job->T - t0 : QB;
    const float *q = job->q + b * job->qs[0] + h * job->qs[1];
    const float *k = job->k + b * job->ks[0] + h * job->ks[1];
    const float *v = job->v + b * job->vs[0] + h * job->vs[1];
    const float *bias = job->key_bias ? job->key_bias + b * job->key_bias_stride : NULL;

    /* Keys the rows of this item can see; with a positive bias, every key may matter. */
    long seen = job->causal ? t0 + rows + job->K - job->T : job->K;
    for (long j = 0; bias && j < job->K; j++)
        if (bias[j] > 0.0f)
            seen = job->K;

    struct row r[QB];
    for (long i = 0; i < rows; i++) {
        long t = t0 + i;
        r[i] = (struct row){q + t * job->qs[2], job->out + ((b * job->T + t) * job->H + h) * job->D, t, -INFINITY, 0.0f};
        for (long d = 0; d < job->D; d++)
            r[i].o[d] = 0.0f;
    }
    for (long j = 0; j < seen; j += KB)  /* key blocks outside, rows inside: each block is read once */
        for (long i = 0; i < rows; i++)
            absorb(job, &r[i], k, v, bias, j, j + KB < seen ? j + KB : seen);
    for (long i = 0; i < rows; i++) {
        if (!(r[i].m > MASK_VALUE))  /* every visible key was padding: the future keys count too */
            absorb(job, &r[i], k, v, bias, seen, job->K);
        float factor = (job->head_mask ? job->head_mask[h] : 1.0f) / r[i].l;
        if (r[i].m == -INFINITY)  /* every score was -inf: the reference's softmax gives NaN */
            factor = NAN;
        for (long d = 0; d < job->D; d++)
            r[i].o[d] *= factor;
    }
}

int mg_attention(const float *q, const long *q_strides, const float *k, const long *k_strides,
                 const float *v, const long *v_strides, float *out, long B, long H, long T, long K,
                 long D, float scale, int causal, const float *key_bias, long key_bias_stride,
                 const float *head_mask)
{
    if (!q || !k || !v || !out || !q_strides || !k_strides || !v_strides)
        return MG_ERR_NULL;
    if (B < 0 || H < 1 || T < 0 || K < 1 || D < 1 || (causal && T > K))
        return MG_ERR_SHAPE;
    long q_blocks = (T + QB - 1) / QB;
    struct attention_job job = {q, k, v, key_bias, head_mask, q_strides, k_strides, v_strides, out,
                                B, H, T, K, D, key_bias_stride, q_blocks, scale, causal};
    mg_parallel_for(B * H * q_blocks, attention_item, &job);
    return MG_OK;
}
