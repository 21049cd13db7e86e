/* Sums, maxima and dot products in vector lanes (see simd.h for the vector type).
 *
 * C fixes the order of a running sum, s = ((a + b) + c) + ..., and without -ffast-math (which we
 * never use) the compiler must keep it, so it cannot use vector instructions for it. Written with
 * VL interleaved partial sums in a vector instead, lane l adding elements l, l + VL, l + 2 VL, ...,
 * the loop *is* VL independent sums. The lanes are added pairwise at the end. The result differs
 * from a running sum only by rounding, and is usually more accurate (each partial sum has VL
 * times fewer terms). The last n % VL elements go into a plain running total.
 */
#ifndef MINIGPT2_LANES_H
#define MINIGPT2_LANES_H

#include <math.h>

#include "simd.h"

/* x[0] + ... + x[n-1] */
static inline float lane_sum(const float *x, long n)
{
    vf part = {0};
    float rest = 0.0f;
    long i = 0;
    for (; i + VL <= n; i += VL)
        part += vload(x + i);
    for (; i < n; i++)
        rest += x[i];
    return vsum(part) + rest;
}

/* The largest of x[0 .. n-1], or -inf for n = 0 (NaN never wins: NaN > y is false). */
static inline float lane_max(const float *x, long n)
{
    vf part = vsplat(-INFINITY);
    float rest = -INFINITY;
    long i = 0;
    for (; i + VL <= n; i += VL)
        part = vmax(part, vload(x + i));
    for (; i < n; i++)
        rest = x[i] > rest ? x[i] : rest;
    float most = vmax_lanes(part);
    return rest > most ? rest : most;
}

/* a[0] b[0] + ... + a[n-1] b[n-1], in 4 vectors of sums: four independent chains of vector
 * multiply-adds keep a core's arithmetic units busy enough to read memory at full speed (one
 * chain waits for each addition to finish before starting the next). */
static inline float dot(const float *a, const float *b, long n)
{
    vf p0 = {0}, p1 = {0}, p2 = {0}, p3 = {0};
    float rest = 0.0f;
    long i = 0;
    for (; i + 4 * VL <= n; i += 4 * VL) {
        p0 += vload(a + i) * vload(b + i);
        p1 += vload(a + i + VL) * vload(b + i + VL);
        p2 += vload(a + i + 2 * VL) * vload(b + i + 2 * VL);
        p3 += vload(a + i + 3 * VL) * vload(b + i + 3 * VL);
    }
    for (; i + VL <= n; i += VL)
        p0 += vload(a + i) * vload(b + i);
    for (; i < n; i++)
        rest += a[i] * b[i];
    return vsum((p0 + p1) + (p2 + p3)) + rest;
}

#endif
