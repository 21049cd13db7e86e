/* Per-row and per-element kernels: layer norm and GPT-2's GELU. */
#include <math.h>

#include "kernels.h"
#include "parallel.h"
#include "vexpf.h"

/* -- layer norm ------------------------------------------------------------------------------ */

struct layer_norm_job {
    const float *x, *weight, *bias;
    float *y;
    long x_stride, y_stride, n;
    float eps;
};

/* The sum of n floats in 16 interleaved partial sums (vector lanes), added pairwise at the end.
 * Its rounding error is that of a sum of n/16 + 4 terms: better than one running sum, like
 * NumPy's pairwise summation. With `center`, it sums (x - center)^2 instead. */
static float lane_sum(const float *x, long n, int squares, float center)
{
    float part[16] = {0.0f};
    long i = 0;
    for (; i + 16 <= n; i += 16)
        for (int l = 0; l < 16; l++) {
            float v = x[i + l] - center;
            part[l] += squares ? v * v : v;
        }
    for (; i < n; i++) {
        float v = x[i] - center;
        part[i % 16] += squares ? v * v : v;
    }
    for (int w = 8; w > 0; w /= 2)
        for (int l = 0; l < w; l++)
            part[l] += part[l + w];
    return part[0];
}

/* Two passes over the row, as the NumPy reference does: the mean, then the mean of the squared
 * deviations (never E[x^2] - E[x]^2, which cancels catastrophically). */
static void layer_norm_row(void *arg, long row)
{
    const struct layer_norm_job *job = arg;
    const float *x = job->x + row * job->x_stride;
    float *y = job->y + row * job->y_stride;
    float mean = lane_sum(x, job->n, 0, 0.0f) / (float)job->n;
    float variance = lane_sum(x, job->n, 1, mean) / (float)job->n;
    float inv_std = 1.0f / sqrtf(variance + job->eps);
    for (long i = 0; i < job->n; i++)
        y[i] = (x[i] - mean) * inv_std * job->weight[i] + job->bias[i];
}

int mg_layer_norm(const float *x, long x_stride, const float *weight, const float *bias, float *y,
                  long y_stride, long rows, long n, float eps)
{
    if (!x || !weight || !bias || !y)
        return MG_ERR_NULL;
    if (rows < 0 || n < 1)
        return MG_ERR_SHAPE;
    struct layer_norm_job job = {x, weight, bias, y, x_stride, y_stride, n, eps};
    mg_parallel_for(rows, layer_norm_row, &job);
    return MG_OK;
}

/* -- gelu_new ---------------------------------------------------------------------------------- */

#define GELU_CHUNK 8192  /* values per work item */

struct gelu_job {
    const float *x;
    float *y;
    long n;
};

/* 0.5 x (1 + tanh(a)) is computed as x / (1 + e^(-2a)): the same function (since
 * 1 + tanh(a) = 2 / (1 + e^(-2a))), but with one exponential the compiler can vectorise. */
static void gelu_chunk(void *arg, long item)
{
    const struct gelu_job *job = arg;
    long start = item * GELU_CHUNK, end = start + GELU_CHUNK < job->n ? start + GELU_CHUNK : job->n;
    const float c = 0.7978845608028654f;  /* sqrt(2 / pi) */
    const float *x = job->x;
    float *y = job->y;
    for (long i = start; i < end; i++) {
        float a = c * (x[i] + 0.044715f * (x[i] * x[i] * x[i]));
        y[i] = x[i] / (1.0f + vexpf(-2.0f * a));
    }
}

int mg_gelu_new(const float *x, float *y, long n)
{
    if (!x || !y)
        return MG_ERR_NULL;
    if (n < 0)
        return MG_ERR_SHAPE;
    struct gelu_job job = {x, y, n};
    mg_parallel_for((n + GELU_CHUNK - 1) / GELU_CHUNK, gelu_chunk, &job);
    return MG_OK;
}
