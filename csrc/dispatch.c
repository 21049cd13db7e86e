/* Which compiled variant runs: the list of variants in this build, what this CPU can run, and the
 * public entry points (kernels.h), which check their arguments and the variant, then call it.
 *
 * The library itself is built for the architecture's baseline (no -march=native by default), so it
 * loads on any CPU of the architecture; the wider variants are compiled for their own targets
 * (variant_*.c) and are only ever called after the CPU said it has their features, as NumPy's
 * and OpenBLAS's dispatchers do. On x86 that takes two questions: does the CPU have the
 * instructions (cpuid), and does the operating system save the wider registers on a context
 * switch (xgetbv: the XCR0 bits for ymm, and for zmm and the mask registers). An OS that does not
 * would leave the features unusable: executing them faults.
 */
#include <stddef.h>
#include <stdint.h>

#include "kernels.h"
#include "variants.h"

struct variant {
    const char *name;
    int (*linear)(const float *, long, int, const void *, long, const uint16_t *, long, int, const float *, float *,
                  long, long, long, long, int);
    int (*attention)(const float *, const long *, const float *, const long *, const float *, const long *, float *,
                     long, long, long, long, long, float, int, const float *, long, const float *, int);
    int (*layer_norm)(const float *, long, const float *, const float *, float *, long, long, long, float);
    int (*gelu_new)(const float *, float *, long);
    const char *describe;
    int (*supported)(void);
};

static int always(void) { return 1; }

#if defined(MG_X86)
#if defined(__GNUC__)
#include <cpuid.h>
#endif

/* Bits of cpuid and XCR0 (Intel SDM vol. 2A, CPUID; vol. 1, 13.3). */
static int cpu_has(int avx512)
{
#if defined(__GNUC__)
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return 0;
    int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, f16c = (c >> 29) & 1;
    if (!(fma && osxsave && avx && f16c))
        return 0;
    unsigned xcr0_lo, xcr0_hi;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    if ((xcr0_lo & 0x6) != 0x6)  /* the OS saves xmm and ymm state */
        return 0;
    if (__get_cpuid_max(0, NULL) < 7)
        return 0;
    __cpuid_count(7, 0, a, b, c, d);
    int avx2 = (b >> 5) & 1;
    if (!avx512)
        return avx2;
    int f = (b >> 16) & 1, dq = (b >> 17) & 1, bw = (b >> 30) & 1, vl = (b >> 31) & 1;
    return avx2 && f && dq && bw && vl && (xcr0_lo & 0xe6) == 0xe6;  /* + opmask, zmm0-15 upper, zmm16-31 */
#else
    (void)avx512;
    return 0;
#endif
}
static int has_avx2(void) { return cpu_has(0); }
#if defined(MG_AVX512_BY_VECTORS)
static int has_avx512(void) { return 1; }  /* the test build of variant_avx512.c runs on every x86-64 */
#else
static int has_avx512(void) { return cpu_has(1); }
#endif

#define VARIANT(s, supported) {#s, mg_linear_##s, mg_attention_##s, mg_layer_norm_##s, mg_gelu_new_##s, mg_describe_##s, supported}
static const struct variant variants[] = {
    VARIANT(generic, always),
    VARIANT(avx2, has_avx2),
    VARIANT(avx512, has_avx512),
};
#elif defined(MG_ARM64)
#define VARIANT(s, supported) {#s, mg_linear_##s, mg_attention_##s, mg_layer_norm_##s, mg_gelu_new_##s, mg_describe_##s, supported}
static const struct variant variants[] = {VARIANT(neon, always)};
#else
#define VARIANT(s, supported) {#s, mg_linear_##s, mg_attention_##s, mg_layer_norm_##s, mg_gelu_new_##s, mg_describe_##s, supported}
static const struct variant variants[] = {VARIANT(generic, always)};
#endif

#define N_VARIANTS ((int)(sizeof variants / sizeof variants[0]))

int mg_variant_count(void) { return N_VARIANTS; }

const char *mg_variant_name(int variant)
{
    return variant >= 0 && variant < N_VARIANTS ? variants[variant].name : "";
}

int mg_variant_supported(int variant)
{
    return variant >= 0 && variant < N_VARIANTS && variants[variant].supported();
}

const char *mg_variant_describe(int variant)
{
    return variant >= 0 && variant < N_VARIANTS ? variants[variant].describe : "";
}

int mg_variant_widest(void)
{
    int best = 0;
    for (int i = 0; i < N_VARIANTS; i++)  /* the list goes from narrow to wide */
        if (variants[i].supported())
            best = i;
    return best;
}

#define XSTR(x) STR(x)
#define STR(x) #x
const char *mg_build_info(void)
{
    return
#if defined(__clang__)
        "clang " XSTR(__clang_major__) "." XSTR(__clang_minor__) "." XSTR(__clang_patchlevel__)
#elif defined(__GNUC__)
        "gcc " __VERSION__
#else
        "unknown compiler"
#endif
#if defined(__AVX512F__)
        ", baseline AVX-512"
#elif defined(__AVX2__)
        ", baseline AVX2"
#elif defined(__aarch64__)
        ", baseline AArch64"
#elif defined(__x86_64__)
        ", baseline x86-64"
#else
        ", baseline of the architecture"
#endif
#if defined(MG_AVX512_BY_VECTORS)
        ", avx512 by vector extensions (a test build: variant_avx512.c)"
#endif
        ;
}

/* The variant to run, or NULL if there is no such variant or this CPU cannot run it. (The CPU
 * checks are cheap, but the answer never changes: cache it.) */
static const struct variant *pick(int variant)
{
    static signed char known[8];  /* 0 unknown, 1 yes, -1 no */
    if (variant < 0 || variant >= N_VARIANTS)
        return NULL;
    if (!known[variant])
        known[variant] = variants[variant].supported() ? 1 : -1;
    return known[variant] > 0 ? &variants[variant] : NULL;
}

static int valid_prefetch(int prefetch)
{
    return prefetch == MG_PREFETCH_NONE || prefetch == MG_PREFETCH_NTA || prefetch == MG_PREFETCH_KEEP;
}

int mg_linear(int variant, int prefetch, int w_format, const float *x, long x_stride, const void *w,
              long w_stride, const uint16_t *scales, long s_stride, int w_transposed, const float *bias, float *y,
              long y_stride, long rows, long n_in, long n_out)
{
    const struct variant *v = pick(variant);
    if (!v)
        return MG_ERR_VARIANT;
    const int walk = MG_STREAM_ROWS | MG_STREAM_SEQ;
    if (w_format < MG_F32 || w_format > MG_I8 || (prefetch & ~walk) < 0 || !valid_prefetch(prefetch & ~walk)
        || (prefetch & walk) == MG_STREAM_SEQ)
        return MG_ERR_FORMAT;
    if (!x || !w || !y || (w_format == MG_I8 && !scales))
        return MG_ERR_NULL;
    if (rows < 0 || n_in < 1 || n_out < 1)
        return MG_ERR_SHAPE;
    if (rows == 0)
        return MG_OK;
    return v->linear(x, x_stride, w_format, w, w_stride, w_format == MG_I8 ? scales : NULL, s_stride, w_transposed,
                     bias, y, y_stride, rows, n_in, n_out, prefetch);
}

int mg_attention(int variant, int prefetch, const float *q, const long *q_strides, const float *k,
                 const long *k_strides, const float *v, const long *v_strides, float *out, long B, long H,
                 long T, long K, long D, float scale, int causal, const float *key_bias,
                 long key_bias_stride, const float *head_mask)
{
    const struct variant *which = pick(variant);
    if (!which)
        return MG_ERR_VARIANT;
    if (!valid_prefetch(prefetch))
        return MG_ERR_FORMAT;
    if (!q || !k || !v || !out || !q_strides || !k_strides || !v_strides)
        return MG_ERR_NULL;
    if (B < 0 || H < 1 || T < 0 || K < 1 || D < 1 || (causal && T > K))
        return MG_ERR_SHAPE;
    return which->attention(q, q_strides, k, k_strides, v, v_strides, out, B, H, T, K, D, scale, causal, key_bias,
                            key_bias_stride, head_mask, prefetch);
}

int mg_layer_norm(int variant, const float *x, long x_stride, const float *weight, const float *bias,
                  float *y, long y_stride, long rows, long n, float eps)
{
    const struct variant *v = pick(variant);
    if (!v)
        return MG_ERR_VARIANT;
    if (!x || !weight || !bias || !y)
        return MG_ERR_NULL;
    if (rows < 0 || n < 1)
        return MG_ERR_SHAPE;
    return v->layer_norm(x, x_stride, weight, bias, y, y_stride, rows, n, eps);
}

int mg_gelu_new(int variant, const float *x, float *y, long n)
{
    const struct variant *v = pick(variant);
    if (!v)
        return MG_ERR_VARIANT;
    if (!x || !y)
        return MG_ERR_NULL;
    if (n < 0)
        return MG_ERR_SHAPE;
    return v->gelu_new(x, y, n);
}
