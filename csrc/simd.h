/* Explicit vectors: the GCC/clang vector extensions, sized by the target header included before
 * this one (MG_VBYTES). A `vf` is one vector register of VL floats; arithmetic on it is one
 * instruction (a * b + c becomes a fused multiply-add where the target has one). Writing the
 * register tiles with these types, instead of plain loops left to the auto-vectoriser, is what
 * makes gcc and clang, on every target, keep the sums of a tile in registers: an array of `vf`
 * indexed by loop counters with constant bounds is fully unrolled and never touches memory.
 *
 * Every function here adds in a fixed order, so a result never depends on how work is split
 * between threads; it may depend on VL (4, 8 or 16 lanes), which is why each variant is tested
 * against NumPy on its own (tests/test_kernels.py).
 */
#ifndef MINIGPT2_SIMD_H
#define MINIGPT2_SIMD_H

#include <stdint.h>
#include <string.h>

#include "kernels.h"

#define VL (MG_VBYTES / 4)  /* floats per vector */

typedef float vf __attribute__((vector_size(MG_VBYTES)));
typedef int32_t vi __attribute__((vector_size(MG_VBYTES)));
/* The same vector at any 4-byte boundary (loads and stores of arrays NumPy handed us). */
typedef float vf_u __attribute__((vector_size(MG_VBYTES), aligned(4), may_alias));

#if defined(__clang__)
#define UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define UNROLL _Pragma("GCC unroll 32")
#else
#define UNROLL
#endif

#if defined(__GNUC__)
#define NOINLINE __attribute__((noinline))
#define INLINE inline __attribute__((always_inline))
#else
#define NOINLINE
#define INLINE inline
#endif

static INLINE vf vload(const float *p) { return *(const vf_u *)p; }

#if defined(MG_X86_INTRINSICS)
#include <immintrin.h>
#elif defined(MG_NEON_INTRINSICS)
#include <arm_neon.h>
#endif

/* a * b + c, rounded once where the variant has a fused multiply-add (AVX2's FMA, AVX-512, NEON), else
 * twice. Written out, not left to the compiler's contraction of a * b + c: that may or may not fuse each
 * product depending on how a loop was unrolled, and linear's two walks through W must give the same bits. */
static INLINE vf vfma(vf a, vf b, vf c)
{
#if defined(MG_X86_INTRINSICS) && MG_VBYTES == 32
    return (vf)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c);
#elif defined(MG_X86_INTRINSICS) && MG_VBYTES == 64
    return (vf)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)c);
#elif defined(MG_NEON_INTRINSICS)
    return (vf)vfmaq_f32((float32x4_t)c, (float32x4_t)a, (float32x4_t)b);
#else
    vf product = a * b;  /* (the generic variant is compiled without contraction: variant_generic.c) */
    return product + c;
#endif
}
static INLINE void vstore(float *p, vf v) { *(vf_u *)p = v; }
static INLINE vf vsplat(float x) { return x - (vf){0}; }  /* (x - 0 is x for every float, -0 too) */

/* The lanes of v added pairwise: the upper half of the lanes onto the lower half, then the same for
 * that half, down to one lane (a fixed order). Each half is a vector of its own, taken out by
 * __builtin_shufflevector (clang; gcc from 12), which compilers turn into one register instruction
 * (vextractf32x8, ...). Written as a loop over the lanes copied into an array, the same additions in the
 * same order, gcc made stores and reloads through the stack that waited on one another: a third of a
 * decoding step's attention, which takes one such sum per key (measured, docs/kernels.md). Taken out with
 * memcpy (kept for compilers without the builtin), gcc 12 kept every sum of the AVX-512 head kernels
 * (decode.h, dots_*) on the stack for the whole loop, a store and a reload per multiply-add: 16-bit heads in
 * L2 ran 30% slower (docs/kernels.md; tests/test_kernels_registers17.py checks the assembly). */
#if defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector)
#define MG_HALVES(v, half, lo, hi) (lo = __builtin_shufflevector(v, v, MG_LOWER_##half), \
                                    hi = __builtin_shufflevector(v, v, MG_UPPER_##half))
#endif
#endif
#ifndef MG_HALVES
#define MG_HALVES(v, half, lo, hi) (memcpy(&lo, &v, sizeof lo), memcpy(&hi, (const char *)&v + sizeof lo, sizeof hi))
#endif
#define MG_LOWER_8 0, 1, 2, 3, 4, 5, 6, 7
#define MG_UPPER_8 8, 9, 10, 11, 12, 13, 14, 15
#define MG_LOWER_4 0, 1, 2, 3
#define MG_UPPER_4 4, 5, 6, 7
typedef float vf8 __attribute__((vector_size(32)));
typedef float vf4 __attribute__((vector_size(16)));

static INLINE float vsum(vf v)
{
#if MG_VBYTES == 64
    vf8 lo8, hi8;
    MG_HALVES(v, 8, lo8, hi8);
    vf8 v8 = lo8 + hi8;
#elif MG_VBYTES == 32
    vf8 v8 = v;
#endif
#if MG_VBYTES >= 32
    vf4 lo4, hi4;
    MG_HALVES(v8, 4, lo4, hi4);
    vf4 v4 = lo4 + hi4;
#else
    vf4 v4 = v;
#endif
    return (v4[0] + v4[2]) + (v4[1] + v4[3]);
}

/* a > b ? a : b per lane (NaN in b never wins; NaN in a is kept only where b is not greater). */
static INLINE vf vmax(vf a, vf b)
{
    vi greater = b > a;
    return (vf)(((vi)b & greater) | ((vi)a & ~greater));
}

static INLINE float vmax_lanes(vf v)
{
    float t[VL];
    for (int l = 0; l < VL; l++)
        t[l] = v[l];
    for (int w = VL / 2; w >= 1; w /= 2)
        for (int l = 0; l < w; l++)
            t[l] = t[l + w] > t[l] ? t[l + w] : t[l];
    return t[0];
}

/* Prefetch kinds (MG_PREFETCH_* in kernels.h), chosen per call: the best kind differs between CPUs. */
#if defined(__GNUC__)
#define PREFETCH_AS(kind, p)                                                                  \
    do {                                                                                      \
        if ((kind) == MG_PREFETCH_NTA)                                                        \
            __builtin_prefetch((p), 0, 0);                                                    \
        else if ((kind) == MG_PREFETCH_KEEP)                                                  \
            __builtin_prefetch((p), 0, 3);                                                    \
    } while (0)
#else
#define PREFETCH_AS(kind, p) ((void)(kind), (void)(p))
#endif

#endif
