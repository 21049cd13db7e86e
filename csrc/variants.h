/* What each compiled variant provides (variant_*.c define them, dispatch.c lists them). Not part of
 * the cffi interface: kernels.h is. */
#ifndef MINIGPT2_VARIANTS_H
#define MINIGPT2_VARIANTS_H

#include <stdint.h>

#define DECLARE_VARIANT(suffix)                                                                      \
    int mg_linear_##suffix(const float *x, long x_stride, int w_format, const void *w, long w_stride,     \
                           const uint16_t *scales, long s_stride, int w_transposed, const float *bias,      \
                           float *y, long y_stride, long rows, long n_in, long n_out, int prefetch);     \
    int mg_attention_##suffix(const float *q, const long *q_strides, const float *k, const long *k_strides, \
                              const float *v, const long *v_strides, float *out, long B, long H, long T,   \
                              long K, long D, float scale, int causal, const float *key_bias,             \
                              long key_bias_stride, const float *head_mask, int prefetch);                \
    int mg_layer_norm_##suffix(const float *x, long x_stride, const float *weight, const float *bias,       \
                               float *y, long y_stride, long rows, long n, float eps);                      \
    int mg_gelu_new_##suffix(const float *x, float *y, long n);                                      \
    extern const char mg_describe_##suffix[];

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#define MG_X86 1
DECLARE_VARIANT(generic)
DECLARE_VARIANT(avx2)
DECLARE_VARIANT(avx512)
#elif defined(__aarch64__)
#define MG_ARM64 1
DECLARE_VARIANT(neon)
#else
DECLARE_VARIANT(generic)
#endif

#endif
