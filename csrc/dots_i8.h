/* int8 weights times activations rounded to int16: integer dot products (included by linear.c).
 *
 * An int8 weight is q times its block's float16 scale (minigpt2/weights.py, Int8Weight). Widening each q to
 * float32 before a multiply-add costs two instructions per vector of weights, and on our CPUs that, not the
 * memory, set int8's decoding speed. So an int8 product first rounds each row of x, per block of 32 along its
 * length, to int16 steps of the block's largest magnitude / 32767 (round_rows below; weights.round_int16 in
 * NumPy), an error of at most 2^-16 of the block's largest, far below the weights' own 2^-8:
 *
 *   y[j] = sum over blocks b of  (sx[b] * s[j, b]) * (sum over k in b of xi[k] * q[k, j])
 *
 * The inner sums are of integers, exact in int32 (|xi| <= 32767, |q| <= 128, 32 of them: < 2^27), several
 * products per instruction (x86's vpmaddwd: 16 or 32; NEON's vmlal: 4); one float multiply-add per block then
 * scales them. The matrix is stored column by column (Int8Weight keeps a Conv1D weight's transpose contiguous),
 * so each output reads one contiguous stretch of weights, one stream from memory that a thread's prefetcher
 * follows at the memory's speed (Zen 3, benchmarks/int8_probe.c: from memory 1.4-1.9x the float walk's weights
 * per second, docs/kernels.md).
 *
 * The same values as NumPy's `round_int16(x) @ widen(w)`: the products of integers are exact either way, and
 * the float sums differ only in order (lanes of VL, then blocks in order). Every output is computed by one
 * thread, so the bits do not depend on the number of threads.
 */

/* bytes of the column stream a thread asks for ahead: Zen 3 (int8_probe.c) read alike from 512 to 4096; on the
 * Xeon, int8 decoding (128 tokens, processes in turn, the host drifting between rounds) at 2 threads 159-167 tok/s
 * with 2048, 165-183 with 4096, 158-196 with 8192; at 1 thread 97-100, 93-109, 95-134 */
#define I8_AHEAD 4096
#define I8_R 4         /* rows of x per pass over a column (decoding a batch): 4 sums + a block's weights in registers */

/* q32: a block's 32 weights, widened to int16 once and multiplied by every row's activations (dot32) */
#if defined(MG_X86_INTRINSICS) && MG_VBYTES == 32
typedef struct { __m256i lo, hi; } q32;
static INLINE q32 load_q32(const int8_t *p)
{
    return (q32){_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)p)),
                 _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(p + 16)))};
}
static INLINE vi dot32(q32 a, const int16_t *x)  /* VL int32 sums of pairs of products */
{
    __m256i lo = _mm256_madd_epi16(a.lo, _mm256_loadu_si256((const __m256i *)x));
    __m256i hi = _mm256_madd_epi16(a.hi, _mm256_loadu_si256((const __m256i *)(x + 16)));
    return (vi)_mm256_add_epi32(lo, hi);
}
#elif defined(MG_X86_INTRINSICS) && MG_VBYTES == 64
typedef struct { __m512i all; } q32;
static INLINE q32 load_q32(const int8_t *p)
{
    return (q32){_mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)p))};
}
static INLINE vi dot32(q32 a, const int16_t *x)
{
    return (vi)_mm512_madd_epi16(a.all, _mm512_loadu_si512((const void *)x));
}
#elif defined(MG_NEON_INTRINSICS) && MG_VBYTES == 16
typedef struct { int16x8_t part[4]; } q32;
static INLINE q32 load_q32(const int8_t *p)
{
    q32 a;
    for (int i = 0; i < 4; i++)
        a.part[i] = vmovl_s8(vld1_s8(p + 8 * i));
    return a;
}
static INLINE vi dot32(q32 a, const int16_t *x)
{
    int32x4_t sum = vdupq_n_s32(0);
    for (int i = 0; i < 4; i++) {
        int16x8_t xv = vld1q_s16(x + 8 * i);
        sum = vmlal_s16(sum, vget_low_s16(a.part[i]), vget_low_s16(xv));
        sum = vmlal_s16(sum, vget_high_s16(a.part[i]), vget_high_s16(xv));
    }
    return (vi)sum;
}
#else
typedef int8_t vq8 __attribute__((vector_size(VL), aligned(1), may_alias));  /* VL int8 */
typedef int16_t vq16 __attribute__((vector_size(2 * VL), aligned(2), may_alias));  /* VL int16 */
typedef struct { vi part[32 / VL]; } q32;
static INLINE q32 load_q32(const int8_t *p)
{
    q32 a;
    for (int i = 0; i < 32 / VL; i++)
        a.part[i] = __builtin_convertvector(*(const vq8 *)(p + i * VL), vi);
    return a;
}
static INLINE vi dot32(q32 a, const int16_t *x)
{
    vi sum = a.part[0] * __builtin_convertvector(*(const vq16 *)x, vi);
    for (int i = 1; i < 32 / VL; i++)
        sum += a.part[i] * __builtin_convertvector(*(const vq16 *)(x + i * VL), vi);
    return sum;
}
#endif

/* one float16 scale, as a float32 (exact) */
static INLINE float scale_f16(uint16_t h)
{
#if defined(MG_X86_INTRINSICS)
    return _cvtsh_ss(h);
#else
    return half_to_float(h);
#endif
}

typedef int16_t vs16 __attribute__((vector_size(2 * VL)));  /* VL int16 */

/* Each row of x[rows, n] in blocks of 32 along n: xi = rint(x / sx), sx = (largest |x| of the block) / 32767,
 * for rows of xi n_pad = n rounded up to 32 long (the end zero) and of sx n_pad / 32. A block that is all
 * zeros, or whose sx is 0 (values below 32767 times float32's smallest), is xi = 0. A block holding NaN or
 * infinity gets sx = NaN and xi = 0, so every output it enters is NaN. With xr, the rounded values xi * sx as
 * floats too ([rows, n], for the kernels that multiply floats). */
static void round_rows(const float *x, long x_stride, long rows, long n, int16_t *xi, float *sx, float *xr)
{
    const long n_pad = (n + BLOCK - 1) / BLOCK * BLOCK;
    const vf magic = vsplat(0x1.8p23f);  /* (v + 1.5 2^23) - 1.5 2^23: v rounded to an integer, ties to even */
    const vi abs_bits = (vi){0} + 0x7fffffff;
    for (long r = 0; r < rows; r++) {
        const float *xr_in = x + r * x_stride;
        int16_t *out = xi + r * n_pad;
        for (long b = 0; b < n_pad; b += BLOCK) {
            float block[BLOCK];
            long have = n - b < BLOCK ? n - b : BLOCK;
            memcpy(block, xr_in + b, sizeof(float) * have);
            for (long i = have; i < BLOCK; i++)
                block[i] = 0.0f;
            vf most = (vf){0};
            vi bad = (vi){0};
            UNROLL for (int i = 0; i < BLOCK; i += VL) {
                vf v = vload(block + i);
                bad |= v != v;  /* NaN */
                most = vmax(most, (vf)((vi)v & abs_bits));
            }
            float m = vmax_lanes(most), s = m / 32767.0f;
            int finite = m <= 0x1.fffffep127f;
            for (int l = 0; l < VL; l++)
                finite &= bad[l] == 0;
            sx[r * (n_pad / BLOCK) + b / BLOCK] = finite ? s : __builtin_nanf("");
            UNROLL for (int i = 0; i < BLOCK; i += VL) {
                vf q = (vf){0};
                if (finite && s > 0.0f)
                    q = (vload(block + i) / vsplat(s) + magic) - magic;  /* |q| <= 32767 */
                vs16 q16 = __builtin_convertvector(__builtin_convertvector(q, vi), vs16);
                memcpy(out + b + i, &q16, sizeof q16);
                if (xr) {
                    vf value = q * vsplat(finite ? s : __builtin_nanf(""));
                    memcpy(block + i, &value, sizeof value);
                }
            }
            if (xr)
                memcpy(xr + r * n + b, block, sizeof(float) * have);
        }
    }
}

/* y[r, j] = bias[j] + sum_k x[r, k] W[k, j] for R rows and the columns j0 <= j < j1 of W, column j's n weights
 * at w + j * w_stride and its scales at sc + j * s_stride; x as xi, sx (round_rows, rows n_pad and n_pad / 32
 * apart). One column at a time: its blocks of 32 weights are widened once and used for every row. */
#define DEFINE_DOTS_I8(NAME, R)                                                                    \
    static NOINLINE void NAME(const int16_t *xi, const float *sx, long n_pad, const int8_t *w, long w_stride, \
                              const uint16_t *sc, long s_stride, const float *bias, long n, long j0, long j1, \
                              float *y, long y_stride, int prefetch)                               \
    {                                                                                              \
        const long whole = n / BLOCK * BLOCK, sx_stride = n_pad / BLOCK;                           \
        for (long j = j0; j < j1; j++) {                                                           \
            const int8_t *wj = w + j * w_stride;                                                   \
            const uint16_t *sj = sc + j * s_stride;                                                \
            vf acc[R];                                                                             \
            UNROLL for (int r = 0; r < R; r++) acc[r] = (vf){0};                                   \
            for (long k = 0; k < whole; k += BLOCK) {                                              \
                if (prefetch && k % 64 == 0)                                                       \
                    PREFETCH_AS(prefetch, (const void *)((uintptr_t)(wj + k) + I8_AHEAD));         \
                q32 a = load_q32(wj + k);                                                          \
                float s = scale_f16(sj[k / BLOCK]);                                                \
                UNROLL for (int r = 0; r < R; r++) {                                               \
                    vf sums = __builtin_convertvector(dot32(a, xi + r * n_pad + k), vf);           \
                    acc[r] = vfma(sums, vsplat(s * sx[r * sx_stride + k / BLOCK]), acc[r]);        \
                }                                                                                  \
            }                                                                                      \
            UNROLL for (int r = 0; r < R; r++) {                                                   \
                float total = vsum(acc[r]);                                                        \
                if (whole < n) { /* the last, shorter block */                                     \
                    int32_t sum = 0;                                                               \
                    for (long k = whole; k < n; k++)                                               \
                        sum += (int32_t)xi[r * n_pad + k] * wj[k];                                 \
                    total += (float)sum * (scale_f16(sj[whole / BLOCK]) * sx[r * sx_stride + whole / BLOCK]); \
                }                                                                                  \
                y[r * y_stride + j] = total + (bias ? bias[j] : 0.0f);                             \
            }                                                                                      \
        }                                                                                          \
    }

DEFINE_DOTS_I8(dots_i8_1, 1)
DEFINE_DOTS_I8(dots_i8_r, I8_R)
#undef DEFINE_DOTS_I8

struct dots_i8_job {
    const int16_t *xi;
    const float *sx, *bias;
    const int8_t *w;
    const uint16_t *scales;
    float *y;
    long n_pad, w_stride, s_stride, y_stride, rows, n_in, n_out;
    int prefetch;
    long per_item;  /* outputs per work item (dots_per_item in linear.c) */
};

static void dots_i8_item(void *arg, long item)  /* per_item outputs, all rows */
{
    const struct dots_i8_job *job = arg;
    long j0 = item * job->per_item, j1 = j0 + job->per_item < job->n_out ? j0 + job->per_item : job->n_out, r = 0;
    for (; r + I8_R <= job->rows; r += I8_R)
        dots_i8_r(job->xi + r * job->n_pad, job->sx + r * (job->n_pad / BLOCK), job->n_pad, job->w, job->w_stride,
                  job->scales, job->s_stride, job->bias, job->n_in, j0, j1, job->y + r * job->y_stride, job->y_stride,
                  job->prefetch);
    for (; r < job->rows; r++)
        dots_i8_1(job->xi + r * job->n_pad, job->sx + r * (job->n_pad / BLOCK), job->n_pad, job->w, job->w_stride,
                  job->scales, job->s_stride, job->bias, job->n_in, j0, j1, job->y + r * job->y_stride, job->y_stride,
                  job->prefetch);
}
