/* Narrow weight formats widened to float32 (kernels.h: MG_F16, MG_BF16, MG_I8; minigpt2/weights.py).
 *
 * Decoding reads every weight once per token, so fewer bytes per weight is more tokens per second. The
 * kernels read a weight in its narrow format and widen it in a register, just before the multiply-add:
 * no float32 copy of a matrix is ever made, and the sums are float32 as for float32 weights. Each widening
 * here is exact: it gives the float32 value the narrow one stands for, the same bits as weights.widen()
 * in NumPy. An int8 weight is then multiplied by its block's scale, in float32, as widen() does, where it is
 * used alone; where four rows of a block are summed together (decode.h, GROUP4), the scale multiplies their
 * sum of q products once instead.
 *
 *   bfloat16  the top half of a float32: put the 16 bits back on top, zeros below (one shift)
 *   float16   1 sign, 5 exponent, 10 fraction bits: the CPU's instruction where the variant has one
 *             (x86 F16C, AArch64 FCVTL), else the bit manipulation of half_to_float
 *   int8      sign-extend to int32, convert to float (exact: |q| <= 127)
 */
#ifndef MINIGPT2_WIDEN_H
#define MINIGPT2_WIDEN_H

#include <stdint.h>
#include <string.h>

#include "simd.h"


typedef uint32_t vu __attribute__((vector_size(MG_VBYTES)));
/* VL narrow values at any address aligned to their size (loads from NumPy's arrays) */
typedef uint16_t vh_u __attribute__((vector_size(MG_VBYTES / 2), aligned(2), may_alias));
typedef int8_t vq_u __attribute__((vector_size(MG_VBYTES / 4), aligned(1), may_alias));

/* float16 -> float32 for one value (edges and packing), by the bits: the 10 fraction bits move to the
 * top of float32's 23, and multiplying by 2^112 rebiases the exponent from 15 to 127 (exact: a power of
 * two; it also turns float16's subnormals into float32 normals). All-ones exponents are infinity or NaN. */
static INLINE float half_to_float(uint16_t h)
{
    uint32_t em = (uint32_t)(h & 0x7fff) << 13, bits;
    if ((h & 0x7c00) == 0x7c00) {
        bits = em | 0x7f800000u;
    } else {
        float f;
        memcpy(&f, &em, 4);
        f *= 0x1p112f;
        memcpy(&bits, &f, 4);
    }
    bits |= (uint32_t)(h & 0x8000) << 16;
    float out;
    memcpy(&out, &bits, 4);
    return out;
}

static INLINE float bf16_to_float(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float out;
    memcpy(&out, &bits, 4);
    return out;
}

/* VL values from p, widened. The vector extensions' conversions (__builtin_convertvector) say it for
 * every target, but gcc 12 turns the narrow loads into chains of inserts; where the variant has one
 * instruction for it (x86's vpmovzx/vpmovsx/vcvtph2ps from memory, NEON's widening moves) we say that. */
#if defined(MG_X86_INTRINSICS) && MG_VBYTES == 32
static INLINE vf widen_bf16(const uint16_t *p)
{
    return (vf)_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16);
}
static INLINE vf widen_f16(const uint16_t *p) { return (vf)_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
static INLINE vf widen_i8(const int8_t *p)
{
    return (vf)_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}
#elif defined(MG_X86_INTRINSICS) && MG_VBYTES == 64
static INLINE vf widen_bf16(const uint16_t *p)
{
    return (vf)_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 16);
}
static INLINE vf widen_f16(const uint16_t *p) { return (vf)_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)); }
static INLINE vf widen_i8(const int8_t *p)
{
    return (vf)_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)p)));
}
#elif defined(MG_NEON_INTRINSICS) && MG_VBYTES == 16
static INLINE vf widen_bf16(const uint16_t *p)  /* "shift left long": widen and put on top, one instruction */
{
    return (vf)vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16));
}
static INLINE vf widen_f16(const uint16_t *p) { return (vf)vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))); }
static INLINE vf widen_i8(const int8_t *p)
{
    int32_t four;  /* exactly 4 bytes: a wider load could read past the end of the matrix */
    memcpy(&four, p, 4);
    int8x8_t q = vreinterpret_s8_s32(vdup_n_s32(four));
    return (vf)vcvtq_f32_s32(vmovl_s16(vget_low_s16(vmovl_s8(q))));
}
#else
static INLINE vf widen_bf16(const uint16_t *p)
{
    return (vf)(__builtin_convertvector(*(const vh_u *)p, vu) << 16);
}
static INLINE vf widen_i8(const int8_t *p)
{
    return __builtin_convertvector(__builtin_convertvector(*(const vq_u *)p, vi), vf);
}
static INLINE vf widen_f16(const uint16_t *p)  /* half_to_float, a vector at a time */
{
    vu h = __builtin_convertvector(*(const vh_u *)p, vu);
    vu em = (h & 0x7fff) << 13;
    vu scaled = (vu)((vf)em * vsplat(0x1p112f));
    vu special = (vu)((h & 0x7c00) == 0x7c00);  /* all ones where the exponent is all ones */
    vu bits = (special & (em | 0x7f800000u)) | (~special & scaled);
    return (vf)(bits | ((h & 0x8000) << 16));
}
#endif

#endif
