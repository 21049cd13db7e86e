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

/* In the functions below, the last n % 16 elements go into a plain running total: indexing the
 * lanes with a variable would make the compiler keep them in memory instead of a register. */

/* x[0] + ... + x[n-1] */
static inline float lane_sum(const float *x, long n)
{
    long full = n - n % 16;
    float part[16] = {0.0f}, rest = 0.0f;
    for (long i = 0; i < full; i += 16)
        for (int l = 0; l < 16; l++)
            part[l] += x[i + l];
    for (long i = full; i < n; i++)
        rest += x[i];
    return add_lanes(part) + rest;
}

/* The largest of x[0 .. n-1], or -inf for n = 0 (NaN never wins: NaN > y is false). */
static inline float lane_max(const float *x, long n)
{
    long full = n - n % 16;
    float part[16], rest = -INFINITY;
    for (int l = 0; l < 16; l++)
        part[l] = -INFINITY;
    for (long i = 0; i < full; i += 16)
        for (int l = 0; l < 16; l++)
            part[l] = x[i + l] > part[l] ? x[i + l] : part[l];
    for (long i = full; i < n; i++)
        rest = x[i] > rest ? x[i] : rest;
    float most = max_lanes(part);
    return rest > most ? rest : most;
}

/* a[0] b[0] + ... + a[n-1] b[n-1], in 4 x 16 lanes: four independent chains of vector
 * multiply-adds keep a core's arithmetic units busy enough to read memory at full speed (one
 * chain waits for each addition to finish before starting the next). */
static inline float dot(const float *a, const float *b, long n)
{
    float part[4][16] = {{0.0f}}, rest = 0.0f;
    long i = 0;
    for (; i + 64 <= n; i += 64)
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 16; l++)
                part[c][l] += a[i + 16 * c + l] * b[i + 16 * c + l];
    for (; i + 16 <= n; i += 16)
        for (int l = 0; l < 16; l++)
            part[0][l] += a[i + l] * b[i + l];
    for (; i < n; i++)
        rest += a[i] * b[i];
    for (int l = 0; l < 16; l++)
        part[0][l] += (part[1][l] + part[2][l]) + part[3][l];
    return add_lanes(part[0]) + rest;
}

#endif
