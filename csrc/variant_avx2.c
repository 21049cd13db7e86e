/* The "avx2" variant: x86-64-v3 (AVX2, FMA, F16C), compiled for that target whatever the build's
 * baseline is, and run only where dispatch.c finds those features (and the OS saving ymm registers). */
#include "variants.h"
#if defined(MG_X86)
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx,avx2,fma,f16c"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC target("avx,avx2,fma,f16c")
#endif
#include "target_avx2.h"
#define VL_DESCRIBE 8
#include "variant_body.h"
#if defined(__clang__)
#pragma clang attribute pop
#endif
#else
typedef int mg_no_avx2_variant_here;
#endif
