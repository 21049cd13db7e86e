/* The "neon" variant: AArch64 Advanced SIMD (part of every AArch64 CPU), 4-float vectors in 32
 * registers. */
#include "variants.h"
#if defined(MG_ARM64)
#include "target_neon.h"
#define VL_DESCRIBE 4
#include "variant_body.h"
#else
typedef int mg_no_neon_variant_here;
#endif
