/* The "generic" variant: the baseline of the architecture (SSE2 on x86-64), 4-float vectors. On
 * AArch64 the "neon" variant takes its place (variant_neon.c). */
#include "variants.h"
#if !defined(MG_ARM64)
#include "target_generic.h"
#define VL_DESCRIBE 4
#include "variant_body.h"
#else
typedef int mg_no_generic_variant_here;  /* (a file must declare something) */
#endif
