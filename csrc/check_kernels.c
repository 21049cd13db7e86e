/* A C-only correctness check of every kernel in every variant this CPU runs, against plain
 * double-precision references computed here, and of the decoding block (block.c) against its kernels called
 * one by one. It needs no Python: .ci/aarch64.sh cross-compiles it for
 * AArch64 and runs it under qemu-user, and it runs natively too:
 *
 *     cc -O2 -pthread csrc/check_kernels.c csrc/variant_*.c csrc/dispatch.c csrc/parallel.c csrc/block.c -lm -o check
 *     ./check            # prints one line per variant and kernel; exit status 1 on any failure
 *
 * The bounds are those of tests/test_kernels.py (which is the fuller test, against NumPy), derived from
 * float32 rounding (u = 2^-24): a float sum of n products in any order is within gamma(n) = n u / (1 - n u)
 * of the exact sum, relative to the sum of magnitudes; small integers must come out exact; and every
 * result must have the same bits for 1 and 3 threads.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels.h"

#define U (1.0 / 16777216.0)
static double gamma_n(double n) { return n * U / (1 - n * U); }

static unsigned long long rng_state = 88172645463325252ULL;
static double uniform(void)  /* xorshift64: the same numbers on every machine */
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (rng_state >> 11) * (1.0 / 9007199254740992.0);
}
static float normal(void) { return (float)(sqrt(-2 * log(uniform() + 1e-300)) * cos(6.283185307179586 * uniform())); }

static float *floats(long n, int integers)
{
    float *a = malloc(sizeof(float) * (n > 0 ? n : 1));
    for (long i = 0; i < n; i++)
        a[i] = integers ? (float)((int)(uniform() * 17) - 8) : normal();
    return a;
}

static int failures;
static void report(const char *variant, const char *what, double worst, int ok)
{
    printf("%-8s %-56s %s (worst excess over the bound %.3g)\n", variant, what, ok ? "ok" : "FAILED", worst);
    failures += !ok;
}

/* -- linear ------------------------------------------------------------------------------------- */

/* W in the format under test: `stored` for the kernel, `value` the number each weight stands for, computed
 * here from the bits in double precision, independently of the kernels' widening (csrc/widen.h). */
static void make_weights(int format, long n, long n_in, long n_out, int transposed, int integers, void **stored,
                         unsigned short **scales, long *s_stride, double *value)
{
    long blocks = (n_in + 31) / 32;
    *scales = NULL, *s_stride = 0;
    if (format == MG_F32) {
        float *w = floats(n, integers);
        for (long i = 0; i < n; i++)
            value[i] = w[i];
        *stored = w;
    } else if (format == MG_I8) {
        signed char *q = malloc(n);
        /* float16 scales (their bits): 1.0, or normal values 2^-10 .. 2^-7 with random fractions */
        unsigned short *s = *scales = malloc(sizeof(unsigned short) * blocks * n_out);
        double *s_value = malloc(sizeof(double) * blocks * n_out);
        *s_stride = transposed ? blocks : n_out;
        for (long i = 0; i < blocks * n_out; i++) {
            int exponent = integers ? 15 : 5 + (int)(uniform() * 3), fraction = integers ? 0 : (int)(uniform() * 1024);
            s[i] = (unsigned short)(exponent << 10 | fraction);
            s_value[i] = ldexp(1 + fraction / 1024.0, exponent - 15);
        }
        for (long i = 0; i < n; i++) {
            /* -127 .. 127 (small integers: -8 .. 8, so that the sums of products with x's 32767s stay exact) */
            q[i] = (signed char)(integers ? (int)(uniform() * 17) - 8 : (int)(uniform() * 255) - 127);
            long k = transposed ? i % n_in : i / n_out, j = transposed ? i / n_in : i % n_out;
            value[i] = q[i] * s_value[transposed ? j * blocks + k / 32 : k / 32 * n_out + j];
        }
        free(s_value);
        *stored = q;
    } else {  /* 16 bits: random finite patterns, float16's subnormals and zeros among them */
        unsigned short *h = malloc(sizeof(unsigned short) * n);
        for (long i = 0; i < n; i++) {
            int sign = uniform() < 0.5, bits = format == MG_F16 ? 10 : 7, bias = format == MG_F16 ? 15 : 127;
            int exponent = uniform() < 0.1 ? 0 : bias - 12 + (int)(uniform() * 16);  /* 2^-12 .. 2^3 */
            int fraction = (int)(uniform() * (1 << bits));
            h[i] = (unsigned short)(sign << 15 | exponent << bits | fraction);
            double magnitude = exponent == 0 ? ldexp(fraction, 1 - bias - bits)  /* subnormal (or zero) */
                                             : ldexp((1 << bits) + fraction, exponent - bias - bits);
            value[i] = sign ? -magnitude : magnitude;
        }
        *stored = h;
    }
}

/* int8's products take x rounded to int16 per block of 32 (csrc/dots_i8.h, minigpt2/weights.py round_int16): each
 * block as rint(x / s) * s with s = its largest magnitude / 32767, all in float32 (no NaN or infinity here). */
static void round_int16(float *x, long rows, long n)
{
    for (long r = 0; r < rows; r++)
        for (long b = 0; b < n; b += 32) {
            float *block = x + r * n + b, most = 0.0f;
            long len = n - b < 32 ? n - b : 32;
            for (long i = 0; i < len; i++)
                most = fabsf(block[i]) > most ? fabsf(block[i]) : most;
            float s = most / 32767.0f;
            for (long i = 0; i < len; i++)
                block[i] = s > 0.0f ? (float)(int)nearbyintf(block[i] / s) * s : 0.0f;
        }
}

static int check_linear(int variant, int format, long rows, long n_in, long n_out, int transposed, int integers,
                        double *worst)
{
    float *x = floats(rows * n_in, integers), *b = floats(n_out, integers);
    float *xr = malloc(sizeof(float) * (rows * n_in > 0 ? rows * n_in : 1));  /* x as the product takes it */
    if (format == MG_I8 && integers)  /* a 32767 in each block of 32: rounding to int16 then changes nothing */
        for (long r = 0; r < rows; r++)
            for (long k = 0; k < n_in; k += 32)
                x[r * n_in + k] = uniform() < 0.5 ? -32767.0f : 32767.0f;
    memcpy(xr, x, sizeof(float) * rows * n_in);
    if (format == MG_I8)
        round_int16(xr, rows, n_in);
    unsigned short *scales;
    float *y = malloc(sizeof(float) * rows * n_out), *y3 = malloc(sizeof(float) * rows * n_out);
    double *wd = malloc(sizeof(double) * n_in * n_out);
    void *w;
    long w_stride = transposed ? n_in : n_out, s_stride;
    make_weights(format, n_in * n_out, n_in, n_out, transposed, integers, &w, &scales, &s_stride, wd);
    int ok = 1;
    mg_set_num_threads(1);
    ok &= mg_linear(variant, MG_PREFETCH_NTA, format, x, n_in, w, w_stride, scales, s_stride, transposed, b, y, n_out,
                    rows, n_in, n_out) == MG_OK;
    mg_set_num_threads(3);
    ok &= mg_linear(variant, MG_PREFETCH_KEEP, format, x, n_in, w, w_stride, scales, s_stride, transposed, b, y3,
                    n_out, rows, n_in, n_out) == MG_OK;
    ok &= memcmp(y, y3, sizeof(float) * rows * n_out) == 0;  /* thread count and prefetch kind change no bit */
    mg_set_num_threads(2);
    mg_pool_rest();  /* idle workers sent to sleep (as before a NumPy product) wake for the next job */
    float *x2 = floats(rows * n_in, integers);  /* other values through the strips first: a sum the row walk */
    ok &= mg_linear(variant, MG_PREFETCH_NONE, format, x2, n_in, w, w_stride, scales, s_stride, transposed, b, y3,
                    n_out, rows, n_in, n_out) == MG_OK;  /* missed would keep theirs (the scratch is reused) */
    free(x2);
    ok &= mg_linear(variant, MG_PREFETCH_NONE | MG_STREAM_ROWS, format, x, n_in, w, w_stride, scales, s_stride,
                    transposed, b, y3, n_out, rows, n_in, n_out) == MG_OK;
    ok &= memcmp(y, y3, sizeof(float) * rows * n_out) == 0;  /* nor the walk through the tiles */
    memset(y3, 0, sizeof(float) * rows * n_out);
    ok &= mg_linear(variant, MG_PREFETCH_KEEP | MG_STREAM_ROWS | MG_STREAM_SEQ, format, x, n_in, w, w_stride, scales,
                    s_stride, transposed, b, y3, n_out, rows, n_in, n_out) == MG_OK;
    ok &= memcmp(y, y3, sizeof(float) * rows * n_out) == 0;  /* nor one row of W at a time */
    ok &= mg_linear(variant, MG_PREFETCH_NONE | MG_STREAM_SEQ, format, x, n_in, w, w_stride, scales, s_stride,
                    transposed, b, y3, n_out, rows, n_in, n_out) == MG_ERR_FORMAT;  /* (SEQ only with ROWS) */
    for (long r = 0; r < rows; r++)
        for (long j = 0; j < n_out; j++) {
            double exact = b[j], magnitude = fabs(b[j]);
            for (long k = 0; k < n_in; k++) {
                double wk = transposed ? wd[j * n_in + k] : wd[k * n_out + j];
                exact += (double)xr[r * n_in + k] * wk;
                magnitude += fabs((double)xr[r * n_in + k] * wk);
            }
            double error = fabs(y[r * n_out + j] - exact);
            /* int8, rows contiguous: one more rounding per weight where a row is used alone (q * scale in float32);
             * where four rows of a block share the scale (decode.h, GROUP4) a product passes through at most 4 (its
             * group) + 1 (the scale) + n/4 - 1 (the later groups) + 1 (the bias) <= n + 2 roundings. Columns
             * contiguous (dots_i8.h): a block's integer sum is exact, then rounded to float (1), its scale
             * s * sx (1), the multiply-add (1), the later blocks and lanes (n/32 + log2 VL), the bias (1). */
            double bound = integers ? 0.0 : gamma_n(n_in + 1 + 2 * (format == MG_I8)) * magnitude;
            if (error - bound > *worst)
                *worst = error - bound;
            ok &= error <= bound;
        }
    free(x), free(xr), free(w), free(b), free(y), free(y3), free(wd), free(scales);
    return ok;
}

/* -- attention ---------------------------------------------------------------------------------- */

static int check_attention(int variant, long B, long H, long T, long past, long D, int masked, double *worst)
{
    long K = past + T;
    float *q = floats(B * H * T * D, 0), *k = floats(B * H * K * D, 0), *v = floats(B * H * K * D, 0);
    float *bias = malloc(sizeof(float) * B * K), head_mask[16];
    float *out = malloc(sizeof(float) * B * T * H * D), *out3 = malloc(sizeof(float) * B * T * H * D);
    for (long i = 0; i < B * K; i++)
        bias[i] = masked && uniform() < 0.25 ? -3.4028234663852886e38f : 0.0f;
    for (long h = 0; h < H; h++)
        head_mask[h] = h == 1 ? 0.0f : (float)(0.5 + uniform());
    long qs[3] = {H * T * D, T * D, D}, ks[3] = {H * K * D, K * D, D};
    float scale = 0.125f;
    int ok = 1;
    mg_set_num_threads(1);
    ok &= mg_attention(variant, MG_PREFETCH_NTA, q, qs, k, ks, v, ks, out, B, H, T, K, D, scale, 1,
                       masked ? bias : NULL, K, head_mask) == MG_OK;
    mg_set_num_threads(3);
    ok &= mg_attention(variant, MG_PREFETCH_NONE, q, qs, k, ks, v, ks, out3, B, H, T, K, D, scale, 1,
                       masked ? bias : NULL, K, head_mask) == MG_OK;
    ok &= memcmp(out, out3, sizeof(float) * B * T * H * D) == 0;
    double *p = malloc(sizeof(double) * K);
    for (long b = 0; b < B; b++)
        for (long h = 0; h < H; h++)
            for (long t = 0; t < T; t++) {
                const float *qt = q + ((b * H + h) * T + t) * D;
                double most = -INFINITY, total = 0, s_max = 0;
                long visible = t + past;  /* keys 0 .. visible */
                int any_visible = 0;
                for (long j = 0; j <= visible; j++)
                    any_visible |= !(masked && bias[b * K + j] != 0.0f);
                if (!any_visible)
                    continue;  /* fully padded rows (uniform over their visible keys): tests/test_kernels.py */
                for (long j = 0; j < K; j++) {
                    const float *kj = k + ((b * H + h) * K + j) * D;
                    double s = 0, magnitude = 0;
                    for (long d = 0; d < D; d++)
                        s += (double)qt[d] * kj[d], magnitude += fabs((double)qt[d] * kj[d]);
                    s *= scale;
                    if (magnitude * scale > s_max)
                        s_max = magnitude * scale;
                    p[j] = j > visible || (masked && bias[b * K + j] != 0.0f) ? -INFINITY : s;
                    if (p[j] > most)
                        most = p[j];
                }
                for (long j = 0; j < K; j++)
                    total += p[j] = exp(p[j] - most);
                for (long d = 0; d < D; d++) {
                    double exact = 0, weight = 0;
                    for (long j = 0; j < K; j++) {
                        double vj = v[((b * H + h) * K + j) * D + d];
                        exact += p[j] / total * vj;
                        weight += p[j] / total * fabs(vj);
                    }
                    exact *= head_mask[h];
                    double got = out[((b * T + t) * H + h) * D + d];
                    double bound = (4 * gamma_n(D) * s_max + 2 * gamma_n(K) + 16 * U) * weight * fabs(head_mask[h]);
                    double error = fabs(got - exact);
                    if (error - bound > *worst)
                        *worst = error - bound;
                    ok &= error <= bound;
                }
            }
    free(q), free(k), free(v), free(bias), free(out), free(out3), free(p);
    return ok;
}

/* -- layer norm, gelu --------------------------------------------------------------------------- */

static int check_layer_norm(int variant, long rows, long n, double *worst)
{
    float *x = floats(rows * n, 0), *w = floats(n, 0), *b = floats(n, 0), *y = malloc(sizeof(float) * rows * n);
    for (long i = 0; i < rows * n; i++)
        x[i] = x[i] * 3 + 5;  /* an offset: the two-pass variance must not cancel */
    int ok = mg_layer_norm(variant, x, n, w, b, y, n, rows, n, 1e-5f) == MG_OK;
    for (long r = 0; r < rows; r++) {
        double mean = 0, var = 0, mean_abs = 0;
        for (long i = 0; i < n; i++)
            mean += x[r * n + i], mean_abs += fabs(x[r * n + i]);
        mean /= n, mean_abs /= n;
        for (long i = 0; i < n; i++)
            var += (x[r * n + i] - mean) * (x[r * n + i] - mean);
        double s = sqrt(var / n + 1e-5);
        for (long i = 0; i < n; i++) {
            double z = (x[r * n + i] - mean) / s, exact = z * w[i] + b[i];
            double bound = fabs(w[i]) * (4 * gamma_n(n) * (mean_abs / s + fabs(z)) + 8 * U * fabs(z))
                           + 8 * U * (fabs(b[i]) + fabs(exact));
            double error = fabs(y[r * n + i] - exact);
            if (error - bound > *worst)
                *worst = error - bound;
            ok &= error <= bound;
        }
    }
    free(x), free(w), free(b), free(y);
    return ok;
}

static int check_gelu(int variant, long n, double *worst)
{
    float *x = floats(n, 0), *y = malloc(sizeof(float) * n);
    for (long i = 0; i < n; i++)
        x[i] *= (i % 3 == 0) ? 10.0f : 1.0f;
    int ok = mg_gelu_new(variant, x, y, n) == MG_OK;
    for (long i = 0; i < n; i++) {
        double a = 0.7978845608028654 * (x[i] + 0.044715 * (double)x[i] * x[i] * x[i]);
        double exact = 0.5 * x[i] * (1 + tanh(a)), sech = 1 / cosh(fmin(fabs(a), 300));
        double bound = U * fabs(x[i]) * (5 * fabs(a) * sech * sech + 8) + 4 * U * fabs(exact);
        double error = fabs(y[i] - exact);
        if (error - bound > *worst)
            *worst = error - bound;
        ok &= error <= bound;
    }
    free(x), free(y);
    return ok;
}

/* -- a decoding step's block (block.c) ----------------------------------------------------------- */

/* One weight matrix of a block, stored in `format`, and its bias (mg_linear_args). */
static struct mg_linear_args block_weight(int variant, int prefetch, int format, long n_in, long n_out)
{
    double *value = malloc(sizeof(double) * n_in * n_out);
    void *w;
    unsigned short *scales;
    long s_stride;
    make_weights(format, n_in * n_out, n_in, n_out, 0, 0, &w, &scales, &s_stride, value);
    free(value);
    struct mg_linear_args a = {.variant = variant, .prefetch = prefetch, .w_format = format, .w_transposed = 0, .w = w,
                               .w_stride = n_out, .scales = scales, .s_stride = s_stride, .bias = floats(n_out, 0),
                               .n_in = n_in, .n_out = n_out};
    return a;
}

static int linear_step(const struct mg_linear_args *w, const float *x, float *y, long rows)
{
    return mg_linear(w->variant, w->prefetch, w->w_format, x, w->n_in, w->w, w->w_stride, w->scales, w->s_stride,
                     0, w->bias, y, w->n_out, rows, w->n_in, w->n_out);
}

/* The block kernel by kernel, as minigpt2/modeling.py's transformer_block calls them, written apart from block.c:
 * q copied into heads of its own ([R, H, 1, D]), the new key and value read back from c_attn's output. */
static int block_in_steps(const struct mg_block_args *b, float *keys, float *values, float *out)
{
    long R = b->rows, E = b->n_embd, H = b->n_head, D = b->head_dim, F = b->n_inner;
    float *h = malloc(sizeof(float) * R * E), *qkv = malloc(sizeof(float) * R * 3 * E);
    float *q = malloc(sizeof(float) * R * E), *att = malloc(sizeof(float) * R * E), *a = malloc(sizeof(float) * R * E);
    float *x1 = malloc(sizeof(float) * R * E), *fc = malloc(sizeof(float) * R * F), *m = malloc(sizeof(float) * R * E);
    int ok = mg_layer_norm(b->ln_variant, b->x, E, b->ln_1_weight, b->ln_1_bias, h, E, R, E, b->eps) == MG_OK;
    ok &= linear_step(&b->c_attn, h, qkv, R) == MG_OK;
    for (long r = 0; r < R; r++)
        for (long i = 0; i < H; i++)
            for (long d = 0; d < D; d++) {
                q[(r * H + i) * D + d] = qkv[r * 3 * E + i * D + d];
                keys[r * b->k_strides[0] + i * b->k_strides[1] + b->position * b->k_strides[2] + d] =
                    qkv[r * 3 * E + E + i * D + d];
                values[r * b->v_strides[0] + i * b->v_strides[1] + b->position * b->v_strides[2] + d] =
                    qkv[r * 3 * E + 2 * E + i * D + d];
            }
    const long q_strides[3] = {H * D, D, D};
    ok &= mg_attention(b->attention_variant, b->attention_prefetch, q, q_strides, keys, b->k_strides, values,
                       b->v_strides, att, R, H, 1, b->position + 1, D, b->scale, 1, b->key_bias, b->key_bias_stride,
                       NULL) == MG_OK;
    ok &= linear_step(&b->attn_proj, att, a, R) == MG_OK;
    for (long j = 0; j < R * E; j++)
        x1[j] = b->x[j] + a[j];
    ok &= mg_layer_norm(b->ln_variant, x1, E, b->ln_2_weight, b->ln_2_bias, h, E, R, E, b->eps) == MG_OK;
    ok &= linear_step(&b->c_fc, h, fc, R) == MG_OK;
    ok &= mg_gelu_new(b->gelu_variant, fc, fc, R * F) == MG_OK;
    ok &= linear_step(&b->mlp_proj, fc, m, R) == MG_OK;
    for (long j = 0; j < R * E; j++)
        out[j] = x1[j] + m[j];
    free(h), free(qkv), free(q), free(att), free(a), free(x1), free(fc), free(m);
    return ok;
}

/* mg_transformer_block against block_in_steps: the same bits for the output and the whole cache (written at
 * `position` only), with 1 and 3 threads; a padded key in one sequence; and its refusals of bad arguments. */
static int check_block(int variant, int format, long R, long H, long D, long position)
{
    long E = H * D, F = 4 * E, capacity = position + 3, K = position + 1, bias_stride = K + 2;
    /* (the random weights make large q and k: a small scale keeps the softmax spread over the keys, so that each
     * key, padded or not, counts in the bits) */
    long cache = R * H * capacity * D, ks[3] = {H * capacity * D, capacity * D, D};
    struct mg_block_args b = {
        .rows = R, .n_embd = E, .n_head = H, .head_dim = D, .n_inner = F,
        .x = floats(R * E, 0), .out = malloc(sizeof(float) * R * E), .scratch = malloc(sizeof(float) * R * (6 * E + F)),
        .ln_variant = variant, .ln_1_weight = floats(E, 0), .ln_1_bias = floats(E, 0), .ln_2_weight = floats(E, 0),
        .ln_2_bias = floats(E, 0), .eps = 1e-5f,
        .c_attn = block_weight(variant, MG_PREFETCH_KEEP, format, E, 3 * E),  /* (each walk and prefetch kind) */
        .attn_proj = block_weight(variant, MG_PREFETCH_NTA, format, E, E),
        .c_fc = block_weight(variant, MG_PREFETCH_NTA | MG_STREAM_ROWS, format, E, F),
        .mlp_proj = block_weight(variant, MG_PREFETCH_NONE | MG_STREAM_ROWS | MG_STREAM_SEQ, format, F, E),
        .attention_variant = variant, .attention_prefetch = MG_PREFETCH_NTA, .scale = 0.01f / (float)D,
        .keys = floats(cache, 0), .values = floats(cache, 0), .k_strides = {ks[0], ks[1], ks[2]},
        .v_strides = {ks[0], ks[1], ks[2]}, .position = position, .gelu_variant = variant};
    float *key_bias = calloc(R * bias_stride, sizeof(float));
    for (long j = 0; R > 1 && j + 1 < K; j += 3)
        key_bias[bias_stride + j] = -3.4028234663852886e38f;  /* every third key of the second sequence is padding */
    b.key_bias = key_bias, b.key_bias_stride = bias_stride;
    float *keys = malloc(sizeof(float) * cache), *values = malloc(sizeof(float) * cache);
    float *expected = malloc(sizeof(float) * R * E), *out3 = malloc(sizeof(float) * R * E);
    memcpy(keys, b.keys, sizeof(float) * cache), memcpy(values, b.values, sizeof(float) * cache);
    mg_set_num_threads(1);
    int ok = block_in_steps(&b, keys, values, expected);
    ok &= mg_transformer_block(&b) == MG_OK;
    ok &= memcmp(b.out, expected, sizeof(float) * R * E) == 0;
    ok &= memcmp(b.keys, keys, sizeof(float) * cache) == 0 && memcmp(b.values, values, sizeof(float) * cache) == 0;
    float *out1 = b.out;
    b.out = out3;
    mg_set_num_threads(3);
    ok &= mg_transformer_block(&b) == MG_OK;  /* (the cache already holds this position: rewritten, the same) */
    ok &= memcmp(out3, expected, sizeof(float) * R * E) == 0;
    b.out = out1;
    /* mg_transformer_blocks: two blocks in one call, the second on the first's output (the same weights, a cache of
     * its own), against the two calls one after another */
    struct mg_block_args two[2] = {b, b};
    size_t cache_bytes = sizeof(float) * cache, out_bytes = sizeof(float) * R * E;
    float *second = malloc(out_bytes), *out2 = malloc(out_bytes);
    float *keys_e = malloc(cache_bytes), *values_e = malloc(cache_bytes);
    float *keys2 = malloc(cache_bytes), *values2 = malloc(cache_bytes);
    memcpy(keys_e, b.keys, cache_bytes), memcpy(values_e, b.values, cache_bytes);
    memcpy(keys2, b.keys, cache_bytes), memcpy(values2, b.values, cache_bytes);
    two[1].x = out1, two[1].out = second, two[1].keys = keys_e, two[1].values = values_e;
    ok &= mg_transformer_block(&two[1]) == MG_OK;  /* the expected second block, alone */
    memset(out3, 0xff, out_bytes), memset(out2, 0xff, out_bytes);  /* (NaN: an output the stack never wrote shows) */
    two[0].out = out3, two[1].x = out3, two[1].out = out2, two[1].keys = keys2, two[1].values = values2;
    ok &= mg_transformer_blocks(two, 2) == MG_OK;
    ok &= memcmp(out3, expected, out_bytes) == 0 && memcmp(out2, second, out_bytes) == 0;
    ok &= memcmp(b.keys, keys, cache_bytes) == 0 && memcmp(b.values, values, cache_bytes) == 0;
    ok &= memcmp(keys2, keys_e, cache_bytes) == 0 && memcmp(values2, values_e, cache_bytes) == 0;
    ok &= memcmp(keys2, keys, cache_bytes) != 0;  /* (the second block's cache is its own: a stack that ran block 0
                                                     twice would leave block 0's key and value there) */
    ok &= mg_transformer_blocks(two, 0) == MG_ERR_SHAPE && mg_transformer_blocks(NULL, 1) == MG_ERR_NULL;
    free(second), free(out2), free(keys_e), free(values_e), free(keys2), free(values2);
    /* refusals: a matrix of the wrong shape, a missing cache, a head size that does not divide n_embd */
    b.c_fc.n_out = F + 1;
    ok &= mg_transformer_block(&b) == MG_ERR_SHAPE;
    b.c_fc.n_out = F, b.head_dim = D + 1;
    ok &= mg_transformer_block(&b) == MG_ERR_SHAPE;
    float *block_values = b.values;
    b.head_dim = D, b.values = NULL;
    ok &= mg_transformer_block(&b) == MG_ERR_NULL;
    ok &= mg_transformer_block(NULL) == MG_ERR_NULL;
    struct mg_linear_args *ws[4] = {&b.c_attn, &b.attn_proj, &b.c_fc, &b.mlp_proj};
    for (int i = 0; i < 4; i++)
        free((void *)ws[i]->w), free((void *)ws[i]->scales), free((void *)ws[i]->bias);
    free((void *)b.x), free(b.out), free(b.scratch), free((void *)b.ln_1_weight), free((void *)b.ln_1_bias);
    free((void *)b.ln_2_weight), free((void *)b.ln_2_bias), free(b.keys), free(block_values), free(key_bias);
    free(keys), free(values), free(expected), free(out3);
    return ok;
}

/* -- NumPy's BLAS on the pool (mg_blas_threads) ------------------------------------------------------- */

/* Jobs as OpenBLAS's threaded products are: each waits until every job of its call has started (they share
 * packed panels), so all must run at once; and each uses the buffer of its thread index, which no other job
 * (of any call) may use at the same time. A job waiting more than 5 s counts a failure instead of hanging. */
enum { MAX_JOBS = 8 };
struct blas_call {
    atomic_int arrived, ran[MAX_JOBS];
    int numjobs;
};
struct blas_item {
    struct blas_call *call;
    int job;
};
static atomic_int index_busy[MAX_JOBS];
static atomic_int blas_failures;

static void barrier_job(int thread_num, void *jobdata, int dojob_data)
{
    struct blas_item *item = jobdata;
    struct blas_call *call = item->call;
    int in_range = thread_num >= 0 && thread_num < call->numjobs && dojob_data == 7;
    if (!in_range || atomic_fetch_add(&index_busy[thread_num], 1) != 0)
        atomic_fetch_add(&blas_failures, 1);  /* an index out of range, or another job's at this moment */
    atomic_fetch_add(&call->ran[item->job], 1);
    atomic_fetch_add(&call->arrived, 1);
    time_t start = time(NULL);
    while (atomic_load(&call->arrived) < call->numjobs)
        if (time(NULL) - start > 5) {
            atomic_fetch_add(&blas_failures, 1);  /* the other jobs never started: OpenBLAS would hang */
            break;
        }
    if (in_range)
        atomic_fetch_sub(&index_busy[thread_num], 1);
}

static int run_blas_call(int numjobs)
{
    struct blas_call call = {.numjobs = numjobs};
    struct blas_item items[MAX_JOBS];
    for (int j = 0; j < numjobs; j++)
        items[j] = (struct blas_item){&call, j};
    mg_blas_threads(1, barrier_job, numjobs, sizeof *items, items, 7);
    int ok = 1;
    for (int j = 0; j < numjobs; j++)
        ok &= atomic_load(&call.ran[j]) == 1;  /* every job once */
    return ok;
}

static void *blas_caller(void *arg)  /* another thread of the program using BLAS at the same time */
{
    int *ok = arg;
    for (int n = 0; n < 200; n++)
        *ok &= run_blas_call(2 + n % 3);
    return NULL;
}

static int check_blas_threads(void)
{
    int ok = 1;
    mg_set_num_threads(1);  /* (the kernels' thread count does not limit BLAS's) */
    for (int numjobs = 0; numjobs <= MAX_JOBS; numjobs++)
        ok &= run_blas_call(numjobs);
    mg_set_num_threads(2);
    int other_ok = 1;
    pthread_t other;
    if (pthread_create(&other, NULL, blas_caller, &other_ok) != 0)
        return 0;
    blas_caller(&ok);
    pthread_join(other, NULL);
    return ok && other_ok && atomic_load(&blas_failures) == 0;
}

int main(void)
{
    static const long rows[] = {1, 3, 8, 12, 13, 20}, n_ins[] = {1, 17, 300, 771}, n_outs[] = {1, 5, 64, 257, 300};
    int ran = 0;
    for (int variant = 0; variant < mg_variant_count(); variant++) {
        const char *name = mg_variant_name(variant);
        if (!mg_variant_supported(variant)) {
            printf("%-8s skipped: this CPU cannot run it (and the library refuses it: %s)\n", name,
                   mg_gelu_new(variant, NULL, NULL, 0) == MG_ERR_VARIANT ? "yes" : "NO");
            failures += mg_gelu_new(variant, NULL, NULL, 0) != MG_ERR_VARIANT;
            continue;
        }
        ran++;
        static const char *format_names[] = {"float32", "float16", "bfloat16", "int8"};
        for (int format = MG_F32; format <= MG_I8; format++)
            for (int integers = 0; integers < 2; integers++)
                for (int transposed = 0; transposed < 2; transposed++) {
                    if (integers && (format == MG_F16 || format == MG_BF16))
                        continue;  /* (their random patterns are not integers; int8 with scale 1 is) */
                    double worst = -INFINITY;
                    int ok = 1;
                    for (size_t r = 0; r < sizeof rows / sizeof *rows; r++)
                        for (size_t i = 0; i < sizeof n_ins / sizeof *n_ins; i++)
                            for (size_t o = 0; o < sizeof n_outs / sizeof *n_outs; o++)
                                ok &= check_linear(variant, format, rows[r], n_ins[i], n_outs[o], transposed, integers,
                                                   &worst);
                    char what[80];
                    snprintf(what, sizeof what, "linear %s, %s, %s", format_names[format],
                             transposed ? "columns contiguous" : "rows contiguous",
                             integers ? "small integers (exact)" : "normal values");
                    report(name, what, worst, ok);
                }
        double worst = -INFINITY;
        int ok = 1;
        static const long Ts[] = {1, 5, 70}, pasts[] = {0, 9, 100}, Ds[] = {16, 17, 64};
        for (size_t t = 0; t < 3; t++)
            for (size_t p = 0; p < 3; p++)
                for (size_t d = 0; d < 3; d++)
                    ok &= check_attention(variant, 2, 3, Ts[t], pasts[p], Ds[d], (t + p + d) % 2, &worst);
        report(name, "attention (causal, padding, head mask)", worst, ok);
        worst = -INFINITY, ok = 1;
        for (long n = 1; n <= 1000; n = n * 7 + 1)
            ok &= check_layer_norm(variant, 3, n, &worst);
        report(name, "layer_norm", worst, ok);
        worst = -INFINITY;
        ok = check_gelu(variant, 20000, &worst);
        ok &= check_gelu(variant, 7, &worst);
        report(name, "gelu_new", worst, ok);
        for (int format = MG_F32; format <= MG_I8; format++) {
            ok = 1;
            for (long R = 1; R <= 3; R += 2)
                for (long position = 0; position <= 37; position += 37)
                    for (long heads = 2; heads <= 3; heads++)  /* heads of 64 (the D = 64 code) and of 16 */
                        ok &= check_block(variant, format, R, heads, heads == 2 ? 64 : 16, position);
            char what[80];
            snprintf(what, sizeof what, "transformer_block (decoding), %s weights", format_names[format]);
            report(name, what, 0.0, ok);
        }
    }
    if (mg_has_threads())
        report("pool", "NumPy's BLAS jobs (all at once, one call at a time)", 0.0, check_blas_threads());
    printf("%d variant(s) checked, %d failure(s)\n", ran, failures);
    return failures || !ran;
}
