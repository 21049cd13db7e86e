/* A decoding step's transformer block in one call (kernels.h: mg_transformer_block).
 *
 * Decoding one token runs about a hundred small kernel calls, and between them Python: the wrappers' checks,
 * reshaping q, k and v into heads, writing the cache, the residual additions. For GPT-2 124M that was about
 * 3 ms of a 15-20 ms token on our 2-core machines, a time no memory bandwidth buys back. This file makes the
 * calls of one block from C instead, with nothing new in them: the same entry points (dispatch.c), in the
 * order minigpt2/modeling.py's transformer_block makes them, each with the variant the calibration chose for
 * it. So it computes the same bits as the Python path; minigpt2/_ckernels.py checks the arrays, as it does
 * for each kernel, and the NumPy body stays the definition. mg_transformer_blocks runs a step's blocks in turn
 * in one call (modeling.transformer_blocks).
 */
#include <string.h>

#include "kernels.h"

static int linear(const struct mg_linear_args *w, const float *x, float *y, long rows)
{
    return mg_linear(w->variant, w->prefetch, w->w_format, x, w->n_in, w->w, w->w_stride, w->scales, w->s_stride,
                     w->w_transposed, w->bias, y, w->n_out, rows, w->n_in, w->n_out);
}

#define CHECK(call)                \
    do {                           \
        int status_ = (call);      \
        if (status_ != MG_OK)      \
            return status_;        \
    } while (0)

int mg_transformer_block(const struct mg_block_args *b)
{
    if (!b || !b->x || !b->out || !b->scratch || !b->keys || !b->values)
        return MG_ERR_NULL;
    const long R = b->rows, E = b->n_embd, H = b->n_head, D = b->head_dim, F = b->n_inner;
    if (R < 1 || E < 1 || H < 1 || D < 1 || F < 1 || H * D != E || b->position < 0)
        return MG_ERR_SHAPE;
    if (b->c_attn.n_in != E || b->c_attn.n_out != 3 * E || b->attn_proj.n_in != E || b->attn_proj.n_out != E
        || b->c_fc.n_in != E || b->c_fc.n_out != F || b->mlp_proj.n_in != F || b->mlp_proj.n_out != E)
        return MG_ERR_SHAPE;
    float *h = b->scratch, *qkv = h + R * E, *att = qkv + 3 * R * E, *x1 = att + R * E, *fc = x1 + R * E;

    /* x1 = x + attention(layer_norm(x)) */
    CHECK(mg_layer_norm(b->ln_variant, b->x, E, b->ln_1_weight, b->ln_1_bias, h, E, R, E, b->eps));
    CHECK(linear(&b->c_attn, h, qkv, R));                         /* [R, 3E]: q, k, v side by side */
    for (long r = 0; r < R; r++)                                  /* the cache: k and v at `position` */
        for (long i = 0; i < H; i++) {
            memcpy(b->keys + r * b->k_strides[0] + i * b->k_strides[1] + b->position * b->k_strides[2],
                   qkv + r * 3 * E + E + i * D, sizeof(float) * D);
            memcpy(b->values + r * b->v_strides[0] + i * b->v_strides[1] + b->position * b->v_strides[2],
                   qkv + r * 3 * E + 2 * E + i * D, sizeof(float) * D);
        }
    const long q_strides[3] = {3 * E, D, 3 * E};                  /* q of head i at qkv[r, i D : (i + 1) D] */
    CHECK(mg_attention(b->attention_variant, b->attention_prefetch, qkv, q_strides, b->keys, b->k_strides,
                       b->values, b->v_strides, att, R, H, 1, b->position + 1, D, b->scale, 1, b->key_bias,
                       b->key_bias_stride, NULL));                /* att: [R, H, D], the heads merged */
    CHECK(linear(&b->attn_proj, att, x1, R));
    for (long j = 0; j < R * E; j++)
        x1[j] = b->x[j] + x1[j];

    /* out = x1 + mlp(layer_norm(x1)) */
    CHECK(mg_layer_norm(b->ln_variant, x1, E, b->ln_2_weight, b->ln_2_bias, h, E, R, E, b->eps));
    CHECK(linear(&b->c_fc, h, fc, R));
    CHECK(mg_gelu_new(b->gelu_variant, fc, fc, R * F));
    CHECK(linear(&b->mlp_proj, fc, b->out, R));
    for (long j = 0; j < R * E; j++)
        b->out[j] = x1[j] + b->out[j];
    return MG_OK;
}

int mg_transformer_blocks(const struct mg_block_args *b, long n_blocks)
{
    if (!b)
        return MG_ERR_NULL;
    if (n_blocks < 1)
        return MG_ERR_SHAPE;
    for (long i = 0; i < n_blocks; i++)
        CHECK(mg_transformer_block(&b[i]));
    return MG_OK;
}
