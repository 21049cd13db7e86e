/* Tuning constants of the "avx2" variant (x86-64-v3: AVX2 + FMA + F16C): 8-float vectors, 16 ymm
 * registers. The register budget of each tile: accumulators + loads per step + 1 broadcast <= 16. */
#define MG_VARIANT_NAME "avx2"
#define MG_NAME(f) f##_avx2
#define MG_VBYTES 32
#define MG_X86_INTRINSICS 1  /* fused multiply-add and widening by AVX2/FMA/F16C instructions (simd.h, widen.h) */
#define MG_VREGS 16

#define DECODE_NV1 8          /* 1 row x 64 columns: 8 accumulators, W from memory operands */
#define DECODE_R 4
#define DECODE_NV 2           /* 4 rows x 16 columns: 8 accumulators + 4 broadcasts + 1 load */
#define DOT_R 2
#define DOT_C 4               /* 8 accumulators + 2 x loads + 1 w load */
#define GEMM_MR 6
#define GEMM_NV 2             /* 6 x 16: 12 accumulators + 2 loads + 1 broadcast (Haswell's classic block) */
#define ATT_R 4
#define ATT_NV 2              /* 4 rows x 16: 8 accumulators */
#define PREFETCH_BYTES 4096  /* how far ahead a strip asks for W: about memory latency x bandwidth */
