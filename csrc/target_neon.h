/* Tuning constants of the "neon" variant (AArch64 Advanced SIMD, always present there): 4-float
 * vectors, 32 q registers. The register budget: accumulators + loads per step + 1 broadcast <= 32. */
#define MG_VARIANT_NAME "neon"
#define MG_NAME(f) f##_neon
#define MG_VBYTES 16
#define MG_NEON_INTRINSICS 1 /* fused multiply-add and widening by NEON instructions (simd.h, widen.h) */
#define MG_VREGS 32

#define DECODE_NV1 16         /* 1 row x 64 columns: 16 accumulators */
#define DECODE_R 4
#define DECODE_NV 4           /* 4 rows x 16 columns: 16 accumulators + 4 broadcasts + 1 load */
#define DOT_R 4
#define DOT_C 4               /* 16 accumulators + 4 x loads + 1 w load */
#define GEMM_MR 6
#define GEMM_NV 3             /* 6 x 12: 18 accumulators + 3 loads + 1 broadcast (8 x 12 spilled with gcc 12) */
#define ATT_R 4
#define ATT_NV 4              /* 4 rows x 16: 16 accumulators */
#define PREFETCH_BYTES 4096  /* how far ahead a strip asks for W: about memory latency x bandwidth */
