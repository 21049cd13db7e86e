/* The "generic" variant: the baseline of the architecture (SSE2 on x86-64), 4-float vectors. On
 * AArch64 the "neon" variant takes its place (variant_neon.c). */
#include "variants.h"
#if !defined(MG_ARM64)
/* No contraction of a * b + c into fused multiply-adds (simd.h, vfma): the baseline of x86-64 has none, but
 * another architecture's might, and the walks of linear must round alike. */
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif
#include "target_generic.h"
#define VL_DESCRIBE 4
#include "variant_body.h"
#else
typedef int mg_no_generic_variant_here;  /* (a file must declare something) */
#endif
