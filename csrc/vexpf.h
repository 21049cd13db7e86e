/* vexpf: e^x in float32, written so that the compiler can vectorise loops that call it.
 *
 * The C library's expf is a function call, so a loop over expf runs one value at a time; this one
 * is a few lines of arithmetic the compiler inlines and turns into vector instructions (16 values
 * at a time with AVX-512). Accuracy: within 1 ulp of the exact e^x for every float in [-87, 88]
 * (checked against double-precision exp for all 2^31 of them), like the C library's expf.
 *
 * How: write x = n ln2 + r with n an integer and |r| <= ln2 / 2, so e^x = 2^n e^r. e^r comes from
 * its Taylor series to r^7 (the next term is below 1e-8 of the result), and multiplying by 2^n is
 * adding n to the float's exponent bits. ln2 is split into a part with few bits (so n ln2_hi is
 * exact) and the rest, to keep r accurate.
 *
 * Below -87 the result is 0 (the true value is below 1.7e-38: a denormal or 0), -inf gives 0, NaN
 * gives NaN, and above 88 the result stops growing at e^88 (GPT-2's kernels never ask for more). */
#ifndef MINIGPT2_VEXPF_H
#define MINIGPT2_VEXPF_H

#include <stdint.h>
#include <string.h>

static inline float vexpf(float x)
{
    const float log2e = 1.44269504088896341f;
    const float ln2_hi = 0.693145751953125f, ln2_lo = 1.42860682030941723212e-6f;
    const float round = 12582912.0f;  /* 1.5 * 2^23: adding and subtracting it rounds to an integer */
    float clamped = x >= -87.0f ? (x <= 88.0f ? x : 88.0f) : -87.0f;  /* NaN lands on -87 here */
    float n = (clamped * log2e + round) - round;
    float r = (clamped - n * ln2_hi) - n * ln2_lo;
    float e = 1.0f + r * (1.0f + r * (1.0f / 2 + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120
              + r * (1.0f / 720 + r * (1.0f / 5040)))))));
    int32_t bits;
    memcpy(&bits, &e, sizeof bits);
    bits += (int32_t)n * (1 << 23);  /* times 2^n */
    memcpy(&e, &bits, sizeof e);
    return x >= -87.0f ? e : x < -87.0f ? 0.0f : x;  /* the last case is NaN */
}

#endif
