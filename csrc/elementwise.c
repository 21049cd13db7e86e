/* Per-row and per-element kernels: layer norm and GPT-2's GELU. Compiled once per target
 * (variant_*.c); their loops are plain C that the compiler vectorises for that target. */
#include <math.h>

#include "kernels.h"
#include "lanes.h"
#include "parallel.h"
#include "vexpf.h"

/* -- layer norm ------------------------------------------------------------------------------ */

struct layer_norm_job {
    const float *x, *weight, *bias;
    float *y;
    long x_stride, y_stride, n;
    float eps;
};

/* Two passes over the row, as the NumPy reference does: the mean, then the mean of the squared
 * deviations (never E[x^2] - E[x]^2, which cancels catastrophically). */
static void layer_norm_row(void *arg, long row)
{
    const struct layer_norm_job *job = arg;
    const float *x = job->x + row * job->x_stride;
    float *y = job->y + row * job->y_stride;
    float mean = lane_sum(x, job->n) / (float)job->n;
    for (long i = 0; i < job->n; i++)
        y[i] = x[i] - mean;  /* y holds the centred row for a moment */
    float variance = dot(y, y, job->n) / (float)job->n;
    float inv_std = 1.0f / sqrtf(variance + job->eps);
    for (long i = 0; i < job->n; i++)
        y[i] = y[i] * inv_std * job->weight[i] + job->bias[i];
}

int MG_NAME(mg_layer_norm)(const float *x, long x_stride, const float *weight, const float *bias, float *y,
                           long y_stride, long rows, long n, float eps)
{
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
 * 1 + tanh(a) = 2 / (1 + e^(-2a))), but with one exponential the compiler can vectorise. Where
 * e^(-2a) is beyond float32 (-2a > 88, x below about -10) the quotient is 0: x * 0, which is -0 as
 * in the reference (where tanh(a) is exactly -1 there), and NaN for x = -inf, as in the reference. */
static void gelu_chunk(void *arg, long item)
{
    const struct gelu_job *job = arg;
    long start = item * GELU_CHUNK, end = start + GELU_CHUNK < job->n ? start + GELU_CHUNK : job->n;
    const float c = 0.7978845608028654f;  /* sqrt(2 / pi) */
    const float *x = job->x;
    float *y = job->y;
    for (long i = start; i < end; i++) {
        float a = c * (x[i] + 0.044715f * (x[i] * x[i] * x[i]));
        y[i] = -2.0f * a > 88.0f ? x[i] * 0.0f : x[i] / (1.0f + vexpf(-2.0f * a));
    }
}

int MG_NAME(mg_gelu_new)(const float *x, float *y, long n)
{
    struct gelu_job job = {x, y, n};
    mg_parallel_for((n + GELU_CHUNK - 1) / GELU_CHUNK, gelu_chunk, &job);
    return MG_OK;
}
