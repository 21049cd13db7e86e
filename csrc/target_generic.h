/* Tuning constants of the "generic" variant: 4-float vectors (SSE2 on x86-64, whatever the compiler
 * has elsewhere), 16 vector registers. Every target header defines the same names (see simd.h).
 *
 * Register budget of each tile = accumulators + the vectors loaded per step + 1 broadcast <= 16. */
#define MG_VARIANT_NAME "generic"
#define MG_NAME(f) f##_generic
#define MG_VBYTES 16          /* bytes per vector: 4 floats */
#define MG_VREGS 16           /* vector registers */

/* linear, few rows (rows of W contiguous): strips of DECODE_R rows x DECODE_NV vectors of sums */
#define DECODE_NV1 8          /* 1 row: 8 accumulators (32 columns) */
#define DECODE_R 4            /* 2..12 rows, 4 at a time ... */
#define DECODE_NV 2           /* ... x 2 vectors (8 columns): 8 accumulators + 4 broadcasts + 1 load */
/* linear, few rows, columns of W contiguous (the tied head): DOT_R rows x DOT_C outputs */
#define DOT_R 2
#define DOT_C 4               /* 8 accumulators + 2 x loads + 1 w load */
/* linear, many rows (prompt): the GEMM register block MR x (GEMM_NV vectors) */
#define GEMM_MR 6
#define GEMM_NV 2             /* 6 x 8: 12 accumulators + 2 loads + 1 broadcast */
/* attention: ATT_R query rows x ATT_NV vectors of keys (scores) or of head dimensions (values) */
#define ATT_R 4
#define ATT_NV 2              /* 8 accumulators */
#define PREFETCH_BYTES 4096  /* how far ahead a strip asks for W: about memory latency x bandwidth */
