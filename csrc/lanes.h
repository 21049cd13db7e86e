/* Sums, maxima and dot products in 16 "lanes".
 *
 * C fixes the order of a running sum: s = ((a + b) + c) + ..., and without -ffast-math (which we
 * never use) the compiler must keep it, so it cannot use vector instructions for it. Written with
 * 16 interleaved partial sums instead, lane l adding elements l, l + 16, l + 32, ..., the loop
 * *is* 16 independent sums, which the compiler keeps in one vector register (AVX-512: 16 floats).
 * The lanes are added pairwise at the end. The result differs from a running sum only by rounding,
 * and is usually more accurate (each partial sum has 16 times fewer terms).
 */
#ifndef MINIGPT2_LANES_H
#define MINIGPT2_LANES_H

#include <math.h>

/* part[0] + ... + part[15], added pairwise: 8 + 4 + 2 + 1 additions of halves. */
static inline float add_lanes(float part[16])
{
    for (int l = 0; l < 8; l++)
        part[l] += part[l + 8];
    for (int l = 0; l < 4; l++)
        part[l] += part[l + 4];
    for (int l = 0; l < 2; l++)
        part[l] += part[l + 2];
    return part[0] + part[1];
}

static inline float max_lanes(float part[16])
{
    for (int l = 0; l < 8; l++)
        part[l] = part[l + 8] > part[l] ? part[l + 8] : part[l];
    for (int l = 0; l < 4; l++)
        part[l] = part[l + 4] > part[l] ? part[l + 4] : part[l];
    for (int l = 0; l < 2; l++)
        part[l] = part[l + 2] > part[l] ? part[l + 2] : part[l];
    return part[1] > part[0] ? part[1] : part[0];
}

/* x[0] + ... + x[n-1] */
static inline float lane_sum(const float *x, long n)
{
    long full = n - n % 16;
    float part[16] = {0.0f};
    for (long i = 0; i < full; i += 16)
        for (int l = 0; l < 16; l++)
            part[l] += x[i + l];
    for (long i = full; i < n; i++)
        part[i - full] += x[i];
    return add_lanes(part);
}

/* The largest of x[0 .. n-1], or -inf for n = 0 (NaN never wins: NaN > y is false). */
static inline float lane_max(const float *x, long n)
{
    long full = n - n % 16;
    float part[16];
    for (int l = 0; l < 16; l++)
        part[l] = -INFINITY;
    for (long i = 0; i < full; i += 16)
        for (int l = 0; l < 16; l++)
            part[l] = x[i + l] > part[l] ? x[i + l] : part[l];
    for (long i = full; i < n; i++)
        part[i - full] = x[i] > part[i - full] ? x[i] : part[i - full];
    return max_lanes(part);
}

/* a[0] b[0] + ... + a[n-1] b[n-1] */
static inline float dot(const float *a, const float *b, long n)
{
    long full = n - n % 16;
    float part[16] = {0.0f};
    for (long i = 0; i < full; i += 16)
        for (int l = 0; l < 16; l++)
            part[l] += a[i + l] * b[i + l];
    for (long i = full; i < n; i++)
        part[i - full] += a[i] * b[i];
    return add_lanes(part);
}

#endif
