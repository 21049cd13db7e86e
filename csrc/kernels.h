/* The C core of minigpt2: hot-path kernels behind the NumPy layers (see docs/kernels.md).
 *
 * This header is the single description of the C interface: the C sources include it, and
 * csrc/build_kernels.py hands the same text to cffi as the cdef (preprocessor lines other than
 * integer #defines are dropped there, so keep everything else plain declarations).
 *
 * Conventions
 *   - Activations are float32. Pointers name the first element; "stride" arguments count
 *     elements (not bytes), so a Python wrapper passes NumPy strides divided by 4.
 *   - The innermost axis of every tensor is contiguous (stride 1); the wrapper checks that.
 *   - Every function returns MG_OK or a negative MG_ERR_* code; the wrapper raises on errors.
 *   - Work is shared between threads by handing out small items from a shared counter
 *     (parallel.c), so a thread that is slowed down simply takes fewer items. Work is split over
 *     outputs, never over a sum: results do not depend on the number of threads.
 *
 * Variants. Every kernel is compiled once per target of this architecture (variant_*.c, with the
 * register tiles of target_*.h) and the first argument of each kernel names the variant to run:
 * an index below mg_variant_count(). A variant this CPU (or its operating system) cannot run is
 * refused with MG_ERR_VARIANT, never executed: no illegal instruction, whatever the caller asks.
 * Which variant (or NumPy) serves which call is chosen in Python (minigpt2/_tuning.py).
 */

#ifndef MINIGPT2_KERNELS_H
#define MINIGPT2_KERNELS_H 1 /* (included by every source; the structs below may be defined once) */

#include <stdint.h> /* uint16_t: int8's float16 scales (cffi knows the type; it drops this line) */
#include <stddef.h> /* size_t (cffi knows the type; it drops this line) */

/* The interface's version: minigpt2/_ckernels.py refuses a library built from sources with another one (a
 * checkout updated since it was built), instead of calling functions whose arguments have changed. */
#define MG_INTERFACE 7

#define MG_OK 0
#define MG_ERR_SHAPE -1   /* a size is negative or zero where it must be positive */
#define MG_ERR_NULL -2    /* a required pointer is NULL */
#define MG_ERR_MEMORY -3  /* scratch memory could not be allocated */
#define MG_ERR_VARIANT -4 /* no such variant, or this CPU cannot run it */
#define MG_ERR_FORMAT -5  /* a weight format or prefetch kind this build does not know */

/* Prefetch kinds for the streamed weights (and the KV cache): which is best differs between CPUs. */
#define MG_PREFETCH_NONE 0  /* leave it to the hardware prefetcher */
#define MG_PREFETCH_NTA 1   /* non-temporal: bring the line close without evicting much */
#define MG_PREFETCH_KEEP 2  /* into all cache levels */
/* Added to a prefetch kind for mg_linear: the other walk through W. A Conv1D weight's tiles row by row (sums in
 * L1) instead of in register strips; the tied head's columns one after another instead of four side by side
 * (decode.h). The same results, another memory access pattern. */
#define MG_STREAM_ROWS 4
/* Added to MG_STREAM_ROWS: the row walk one row of W at a time, so that the tile is read as one stream from start
 * to end (float32 and 16-bit weights; int8 keeps its groups of four rows, which share a scale). The same sums. */
#define MG_STREAM_SEQ 8

/* Weight formats (the dispatch axis after the variant; see minigpt2/weights.py). */
#define MG_F32 0
#define MG_F16 1
#define MG_BF16 2
#define MG_I8 3

/* -- variants and the CPU ------------------------------------------------------------------ */

int mg_variant_count(void);
const char *mg_variant_name(int variant);       /* "generic", "avx2", "avx512", "neon" */
int mg_variant_supported(int variant);          /* 1 if this CPU and OS can run it, else 0 */
const char *mg_variant_describe(int variant);   /* vector width, registers and tiles, one line */
int mg_variant_widest(void);                    /* the supported variant with the widest vectors */
const char *mg_build_info(void);                /* compiler and the baseline the library was built for */

/* -- threads ------------------------------------------------------------------------------ */

/* Threads the kernels use (>= 1; the calling thread is one of them). */
void mg_set_num_threads(int n);
int mg_get_num_threads(void);
/* 1 if the kernels can use threads (POSIX threads were available), else 0. */
int mg_has_threads(void);
/* Another library's threads are about to run (NumPy's BLAS): the pool's idle workers sleep now instead
 * of spinning on cores those threads need, until the next job wakes them. */
void mg_pool_rest(void);

/* NumPy's BLAS (OpenBLAS) running its parallel jobs on this pool instead of its own threads, which otherwise
 * keep spinning on the cores for a while after every product (minigpt2/_ckernels.py installs it with
 * OpenBLAS's openblas_set_threads_callback_function; the signature is OpenBLAS's openblas_threads_callback).
 * Job i is dojob(t, jobdata + i * elsize, dojob_data), t being the running thread's index; all jobs of a
 * call run at the same time, on different threads; one call at a time. mg_blas_calls() counts the calls. */
typedef void (*mg_blas_dojob)(int thread_num, void *jobdata, int dojob_data);
void mg_blas_threads(int sync, mg_blas_dojob dojob, int numjobs, size_t elsize, void *jobdata, int dojob_data);
long mg_blas_calls(void);
/* Start the workers that `numjobs` jobs of one call need (numjobs - 1; the caller runs one) and return how many
 * jobs the pool can run at once, at most numjobs: fewer where the system refuses threads (a process limit) or
 * past the pool's 256. minigpt2/_blas_threads.py caps OpenBLAS at it before handing it the pool, since a call
 * asking for more could never finish (mg_blas_threads stops the process instead). */
int mg_blas_reserve(int numjobs);
/* How many jobs OpenBLAS should split its next products into: the pool's thread count, or 1 while the cores are
 * crowded (another program kept one of them, so that OpenBLAS's equal jobs ran at the pace of the thread that
 * shared it: see parallel.c). mg_blas_crowded_calls() counts the calls found so. */
int mg_blas_width(void);
long mg_blas_crowded_calls(void);

/* -- linear: y = x @ W + b ----------------------------------------------------------------- */

/* x: rows x n_in (row stride x_stride); y: rows x n_out (row stride y_stride, written);
 * bias: n_out values or NULL. W is (n_in, n_out), in HF's Conv1D orientation, stored in the format
 * w_format (MG_F32, MG_F16, MG_BF16: one value per weight; MG_I8: one int8 per weight and a float16
 * scale (its bits) per 32 weights down each column, the value being q * scale; minigpt2/weights.py), in one of
 * two memory layouts:
 *   w_transposed == 0: W[k, j] = w[k * w_stride + j]   (rows of W contiguous: a Conv1D weight)
 *                      int8 scale of W[k, j]: scales[(k / 32) * s_stride + j]
 *   w_transposed == 1: W[k, j] = w[j * w_stride + k]   (columns contiguous: wte.T, the tied head)
 *                      int8 scale of W[k, j]: scales[j * s_stride + k / 32]
 * (scales and s_stride are ignored for the other formats: pass NULL and 0.) A narrow weight is
 * widened in a register where it is used; no float32 copy of W is made.
 * For few rows (up to 12: decoding) each weight is read once from memory, the threads taking tiles
 * of W whose partial sums are added in a fixed order; for many rows the work is blocked for the
 * caches (see linear.c). */
int mg_linear(int variant, int prefetch, int w_format, const float *x, long x_stride, const void *w,
              long w_stride, const uint16_t *scales, long s_stride, int w_transposed, const float *bias, float *y,
              long y_stride, long rows, long n_in, long n_out);

/* -- attention ----------------------------------------------------------------------------- */

/* softmax(q k^T * scale + masks) v for every batch b and head h, without storing the scores.
 * q: [B, H, T, D] with strides q_strides = {batch, head, position} (the last axis is contiguous);
 * k, v: [B, H, K, D] likewise (views into a KV cache are fine).
 * causal: query t sees keys 0 .. t + (K - T) (the lower-right triangle); the others get weight 0
 *   (score -inf), exactly as the NumPy reference does.
 * key_bias: NULL, or an additive bias per key, key_bias[b * key_bias_stride + j] (stride 0 to
 *   share one row between all b); HF uses 0 for keys to attend to and MASK_VALUE for padding.
 * head_mask: NULL, or H multipliers applied to each head's probabilities.
 * out: [B, T, H, D], contiguous (the layout merge_heads wants). */
int mg_attention(int variant, int prefetch, const float *q, const long *q_strides, const float *k,
                 const long *k_strides, const float *v, const long *v_strides, float *out, long B, long H,
                 long T, long K, long D, float scale, int causal, const float *key_bias,
                 long key_bias_stride, const float *head_mask);

/* -- elementwise and per-row ---------------------------------------------------------------- */

/* y = (x - mean) / sqrt(var + eps) * weight + bias for each of `rows` rows of n values
 * (row strides x_stride, y_stride). */
int mg_layer_norm(int variant, const float *x, long x_stride, const float *weight, const float *bias,
                  float *y, long y_stride, long rows, long n, float eps);

/* y = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) for n contiguous values (y may be x). */
int mg_gelu_new(int variant, const float *x, float *y, long n);

/* -- a decoding step's transformer block, in one call ---------------------------------------- */

/* One weight matrix of a block: mg_linear's arguments other than x, y and the rows. */
struct mg_linear_args {
    int variant, prefetch, w_format, w_transposed;
    const void *w;
    long w_stride;
    const uint16_t *scales;
    long s_stride;
    const float *bias;  /* NULL for none */
    long n_in, n_out;
};

/* GPT-2's pre-norm block for `rows` sequences of one new token each (decoding), as minigpt2/modeling.py's
 * transformer_block computes it, with the same kernels in the same order (so the same bits as calling them one
 * by one): h = layer_norm(x); q, k, v = h @ c_attn; the new k, v written into the cache at `position`;
 * a = attention(q, cache[0 : position + 1]) @ attn_proj; x1 = x + a; out = x1 + gelu_new(layer_norm(x1) @ c_fc)
 * @ mlp_proj. Each kernel runs the variant (and prefetch kind) named for it. x, out: [rows, n_embd]
 * contiguous; scratch: rows * (6 n_embd + n_inner) floats; keys, values: the layer's cache [rows, n_head,
 * capacity, head_dim] with (batch, head, position) strides in floats; key_bias as for mg_attention. */
struct mg_block_args {
    long rows, n_embd, n_head, head_dim, n_inner;
    const float *x;
    float *out, *scratch;
    int ln_variant;
    const float *ln_1_weight, *ln_1_bias, *ln_2_weight, *ln_2_bias;
    float eps;
    struct mg_linear_args c_attn, attn_proj, c_fc, mlp_proj;
    int attention_variant, attention_prefetch;
    float scale;
    float *keys, *values;
    long k_strides[3], v_strides[3];
    long position;
    const float *key_bias;
    long key_bias_stride;
    int gelu_variant;
};
int mg_transformer_block(const struct mg_block_args *b);

/* n_blocks blocks one after another, b[0] first (the caller points b[i + 1].x at b[i].out): a decoding step's
 * whole stack in one call. Between two calls from Python the weights streamed past have pushed the
 * interpreter's own data out of the caches, so each return to Python cost ~40 us more than the same Python with
 * the caches warm (Xeon, GPT-2 124M: 59 us a block against 16). Stops at the first block that fails. */
int mg_transformer_blocks(const struct mg_block_args *b, long n_blocks);

#endif
