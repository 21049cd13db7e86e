/* The "avx512" variant: AVX-512 F/BW/DQ/VL with FMA, 16-float vectors in 32 zmm registers; run only
 * where dispatch.c finds those features and the OS saving the zmm and mask registers. */
#include "variants.h"
#if defined(MG_X86)
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
