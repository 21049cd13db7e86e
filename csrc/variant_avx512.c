/* The "avx512" variant: AVX-512 F/BW/DQ/VL with FMA, 16-float vectors in 32 zmm registers; run only
 * where dispatch.c finds those features and the OS saving the zmm and mask registers.
 *
 * Built with -DMG_AVX512_BY_VECTORS (a test build only: .ci/avx512.sh), the same kernels, tiles and
 * 16-float vectors are compiled for the baseline, by the vector extensions alone, and dispatch.c lets every
 * CPU run them: so a machine without AVX-512 checks everything of this variant but its four intrinsics
 * (simd.h's fused multiply-add, widen.h's three widenings). */
#include "variants.h"
#if defined(MG_X86) && defined(MG_AVX512_BY_VECTORS)
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif
#include "target_avx512.h"
#undef MG_X86_INTRINSICS
#define VL_DESCRIBE 16
#include "variant_body.h"
#elif defined(MG_X86)
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx,avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl"))), \
                             apply_to = function)
#elif defined(__GNUC__)
#pragma GCC target("avx,avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl")
#endif
#include "target_avx512.h"
#define VL_DESCRIBE 16
#include "variant_body.h"
#if defined(__clang__)
#pragma clang attribute pop
#endif
#else
typedef int mg_no_avx512_variant_here;
#endif
