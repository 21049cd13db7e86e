/* Tuning constants of the "avx512" variant (AVX-512 F/BW/DQ/VL + FMA): 16-float vectors, 32 zmm
 * registers. The register budget of each tile: accumulators + loads per step + 1 broadcast <= 32. */
#define MG_VARIANT_NAME "avx512"
#define MG_NAME(f) f##_avx512
#define MG_VBYTES 64
#define MG_X86_INTRINSICS 1  /* fused multiply-add and widening by AVX-512 instructions (simd.h, widen.h) */
#define MG_VREGS 32

#define DECODE_NV1 16         /* 1 row x 256 columns: 16 accumulators (one 1 KiB stretch of a W row) */
#define DECODE_R 4
#define DECODE_NV 4           /* 4 rows x 64 columns: 16 accumulators + 4 broadcasts + 1 load */
#define DOT_R 4
#define DOT_C 4               /* 16 accumulators + 4 x loads + 1 w load */
#define GEMM_MR 8
#define GEMM_NV 2             /* 8 x 32: 16 accumulators + 2 loads + 1 broadcast */
#define ATT_R 4
#define ATT_NV 4              /* 4 rows x 64: 16 accumulators */
#define PREFETCH_BYTES 4096  /* how far ahead a strip asks for W: about memory latency x bandwidth */
