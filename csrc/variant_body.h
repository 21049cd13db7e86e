/* The kernels of one variant: included by variant_*.c after its target header (target_*.h), which
 * names the functions (MG_NAME) and sets the vector width and register tiles. */
#include "simd.h"

#include "linear.c"
#include "attention.c"
#include "elementwise.c"

#define MG_XSTR(x) MG_STR(x)
#define MG_STR(x) #x
const char MG_NAME(mg_describe)[] =
    MG_VARIANT_NAME ": " MG_XSTR(VL_DESCRIBE) "-float vectors, " MG_XSTR(MG_VREGS) " registers; decode strips 1x"
    MG_XSTR(DECODE_NV1) " and " MG_XSTR(DECODE_R) "x" MG_XSTR(DECODE_NV) " vectors, head dots " MG_XSTR(DOT_R) "x"
    MG_XSTR(DOT_C) ", GEMM block " MG_XSTR(GEMM_MR) "x" MG_XSTR(GEMM_NV) " vectors, attention " MG_XSTR(ATT_R) "x"
    MG_XSTR(ATT_NV) " vectors; prefetch " MG_XSTR(PREFETCH_BYTES) " bytes ahead";
