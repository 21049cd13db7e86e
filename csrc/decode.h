/* linear's decode kernels (few rows), for one weight format: included by linear.c once per format, with
 *   FMT                    the suffix of the functions' names (f32, f16, bf16, i8)
 *   WT                     the type of one stored weight (float, uint16_t, int8_t)
 *   WLOAD(p, srow, c)      VL weights from p, widened (int8: times the scales srow[c : c+VL])
 *   WCOL(w, sc, c, k)      VL weights W[k : k+VL, c], widened, when the columns are contiguous (the tied head)
 *   SROW, SCOL             one weight, W[k, j] in either layout
 *   SCALED, SC_ROW, SC_AT  int8 only: the scales of row k's block, and the scales from column j on
 *   WRAW(p)                int8 only: VL values of q from p, widened but not scaled
 * (w_stride and s_stride, the strides of the weights and of int8's scales sc, are in scope where they are
 * used.) So the walks below are written once and read the same for every format: only what a weight load
 * is changes. A weight is widened in a register just before its multiply-add.
 *
 * Four rows of W at a time (k, k+1, k+2, k+3 from the start of a tile, which never straddle a block of 32):
 * for float32 and 16 bits, four multiply-adds into the sum, one per row; for int8, whose four rows share one
 * scale per column, the four products of q are added first and the scale multiplies their sum once:
 * sum + s * (x0 q0 + x1 q1 + x2 q2 + x3 q3). That is 5 multiplies instead of 8 for 4 weights, on the
 * compute-bound format (Zen 3, one thread, int8 from memory: 12 -> 14 G weights/s). Both walks group the rows
 * alike (from the tile's first row; single rows after the last whole group), so they give the same bits.
 */
#ifndef SCALED
#define SC_ROW(sc, k) (sc)
#define SC_AT(sc, j) (sc)
#endif
#ifndef MINIGPT2_GROUP4
#define MINIGPT2_GROUP4
/* sum + x0 a0 + x1 a1 + x2 a2 + x3 a3, in that order (float32, 16 bits: a = the widened weights) */
static INLINE vf group4(vf sum, const vf x[4], const vf a[4])
{
    UNROLL for (int i = 0; i < 4; i++) sum = vfma(x[i], a[i], sum);
    return sum;
}
/* sum + s * (x0 q0 + x1 q1 + x2 q2 + x3 q3) (int8: q widened, s the rows' scales) */
static INLINE vf group4_scaled(vf sum, const vf x[4], const vf q[4], vf s)
{
    vf t = x[0] * q[0];
    UNROLL for (int i = 1; i < 4; i++) t = vfma(x[i], q[i], t);
    return vfma(s, t, sum);
}
#endif
#ifdef SCALED
#define GROUPED 1  /* the register strips take int8's rows four at a time too (the others: one at a time, the same sums) */
#define GLOAD(p, srow, c) WRAW(p)
#define GROUP4(sum, x, a, srow, c) group4_scaled(sum, x, a, widen_f16((srow) + (c)))
#else
#define GROUPED 0
#define GLOAD(p, srow, c) WLOAD(p, srow, c)
#define GROUP4(sum, x, a, srow, c) group4(sum, x, a)
#endif
/* VL weights W[k, c : c+VL] when the rows of W are contiguous (a Conv1D weight) */
#define WROW(w, sc, k, c) WLOAD((w) + (k) * w_stride + (c), SC_ROW(sc, k), c)

#define TJOIN(a, b) a##_##b
#define TNAME(a, b) TJOIN(a, b)
#define T(name) TNAME(name, FMT)

/* weights of this format per 64-byte cache line */
#define LINE (64 / (long)sizeof(WT))

/* Rows of W a strip of NV vectors asks for ahead: PREFETCH_BYTES of its columns (a request must be made
 * about a memory latency before the data is needed, and a narrow strip eats a row in a few cycles). */
#define AHEAD(NV) (PREFETCH_BYTES / (NV * VL * (long)sizeof(WT)) > 1 ? PREFETCH_BYTES / (NV * VL * (long)sizeof(WT)) : 1)

/* strip_RxNV: out[r, 0:NV*VL] = x[r, k0:k1] @ W[k0:k1, 0:NV*VL] for R rows r, with the R x NV
 * vectors of sums in registers while the rows of W stream past; each step broadcasts one x value per
 * row and multiplies each of NV vectors of W, as it is loaded (and widened), by them. The shapes come
 * from target_*.h, chosen so that the sums + the broadcasts + a vector of W fit the register file.
 * Loading all NV vectors first needed NV registers more: a narrow W, which cannot be a multiply-add's
 * memory operand, then pushed a sum of AVX-512's 1 x 16 strip onto the stack, stored and reloaded at
 * every row. (One function per shape, written out by the macro: with the sizes as run-time arguments
 * the sums would live in memory.) */
#define DEFINE_STRIP(NAME, R, NV)                                                                  \
    static NOINLINE void NAME(const float *x, long x_stride, const WT *w, long w_stride, const uint16_t *sc, \
                              long s_stride, long k0, long k1, float *out, long out_stride, int prefetch) \
    {                                                                                              \
        (void)sc, (void)s_stride;                                                                  \
        vf acc[R][NV];                                                                             \
        UNROLL for (int r = 0; r < R; r++) UNROLL for (int v = 0; v < NV; v++) acc[r][v] = vsplat(-0.0f); \
        long k = k0;                                                                               \
        for (; GROUPED && k + 4 <= k1; k += 4) { /* int8: groups of four rows, as stream_R takes them */ \
            if (prefetch)                                                                          \
                for (long g = k + AHEAD(NV); g < k + AHEAD(NV) + 4 && g < k1; g++)                 \
                    for (long i = 0; i < NV * VL; i += LINE)                                       \
                        PREFETCH_AS(prefetch, w + g * w_stride + i);                               \
            const uint16_t *srow = SC_ROW(sc, k);                                                  \
            (void)srow;                                                                            \
            UNROLL for (int v = 0; v < NV; v++) {                                                  \
                vf a[4];                                                                           \
                UNROLL for (int i = 0; i < 4; i++) a[i] = GLOAD(w + (k + i) * w_stride + v * VL, srow, v * VL); \
                UNROLL for (int r = 0; r < R; r++) {                                               \
                    vf xg[4];                                                                      \
                    UNROLL for (int i = 0; i < 4; i++) xg[i] = vsplat(x[r * x_stride + k + i]);   \
                    acc[r][v] = GROUP4(acc[r][v], xg, a, srow, v * VL);                            \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        for (; k < k1; k++) {                                                                      \
            if (prefetch && k + AHEAD(NV) < k1)                                                    \
                for (long i = 0; i < NV * VL; i += LINE)                                           \
                    PREFETCH_AS(prefetch, w + (k + AHEAD(NV)) * w_stride + i);                     \
            vf xr[R]; /* x[r, k] in every lane; then each vector of W is used as it is loaded (above) */ \
            UNROLL for (int r = 0; r < R; r++) xr[r] = vsplat(x[r * x_stride + k]);               \
            UNROLL for (int v = 0; v < NV; v++) {                                                  \
                vf wv = WROW(w, sc, k, v * VL);                                                    \
                UNROLL for (int r = 0; r < R; r++) acc[r][v] = vfma(xr[r], wv, acc[r][v]);         \
            }                                                                                      \
        }                                                                                          \
        UNROLL for (int r = 0; r < R; r++)                                                         \
            UNROLL for (int v = 0; v < NV; v++) vstore(out + r * out_stride + v * VL, acc[r][v]);  \
    }

DEFINE_STRIP(T(strip_1_wide), 1, DECODE_NV1)      /* one row, a wide strip: long stretches of each W row */
DEFINE_STRIP(T(strip_r), DECODE_R, DECODE_NV)     /* DECODE_R rows of a batch at once */
DEFINE_STRIP(T(strip_1_vec), 1, 1)                /* one vector: the last columns */
#undef DEFINE_STRIP

/* The last cols < VL columns of one row: one vector of sums when VL columns exist in memory from w
 * on (room), else plain sums. */
static void T(strip_edge)(const float *x, const WT *w, long w_stride, const uint16_t *sc, long s_stride, long cols,
                          long room, long k0, long k1, float *out, int prefetch)
{
    (void)sc, (void)s_stride;
    if (room >= VL) {
        float tmp[VL];
        T(strip_1_vec)(x, 0, w, w_stride, sc, s_stride, k0, k1, tmp, 0, prefetch);
        memcpy(out, tmp, sizeof(float) * cols);
        return;
    }
    for (long j = 0; j < cols; j++) {
        float sum = -0.0f;
        for (long k = k0; k < k1; k++)
            sum += x[k] * SROW(w, sc, k, j);
        out[j] = sum;
    }
}

/* One row's outputs out[0:n] from W's columns w[0:n]: wide strips, then single vectors, then the
 * edge (room: columns that exist from w on, so that an edge strip never reads past the matrix). */
static void T(row_strips)(const float *x, const WT *w, long w_stride, const uint16_t *sc, long s_stride, long n,
                          long room, long k0, long k1, float *out, int prefetch)
{
    long c = 0;
    for (; c + DECODE_NV1 * VL <= n; c += DECODE_NV1 * VL)
        T(strip_1_wide)(x, 0, w + c, w_stride, SC_AT(sc, c), s_stride, k0, k1, out + c, 0, prefetch);
    for (; c + VL <= n; c += VL)
        T(strip_1_vec)(x, 0, w + c, w_stride, SC_AT(sc, c), s_stride, k0, k1, out + c, 0, prefetch);
    if (c < n)
        T(strip_edge)(x, w + c, w_stride, SC_AT(sc, c), s_stride, n - c, room - c, k0, k1, out + c, prefetch);
}

/* stream_R: the other way to walk a tile (MG_STREAM_ROWS): whole rows of W (a tile's full width) one after
 * another, four (then one) at a time, adding into out[r, 0:width], which stays in L1 and holds
 * the sums between groups of rows. Each sum starts at -0 and gets one multiply-add per row k in order
 * (int8: one per group of four rows, GROUP4), as in the register strips: the same operations, so the same bits. (-0, not 0: -0 + p is p for every p,
 * -0 included, and p + q with either product fused or not gives the same first sum.) It reads W in long stretches
 * like BLAS's gemv kernels, at the price of moving the sums through L1; which way is faster depends on
 * the CPU's prefetchers, so the calibration (minigpt2/_tuning.py) tries both. width is a multiple of VL. */
#define DEFINE_STREAM(NAME, R)                                                                     \
    static NOINLINE void NAME(const float *x, long x_stride, const WT *w, long w_stride, const uint16_t *sc, \
                              long s_stride, long k0, long k1, float *out, long out_stride, long width,  \
                              int prefetch)                                                        \
    {                                                                                              \
        (void)sc, (void)s_stride;                                                                  \
        long k = k0;                                                                               \
        int seq = R == 1 && !GROUPED && (prefetch & MG_STREAM_SEQ); /* (decode_tile: one row of x) */ \
        prefetch &= 3;                                                                             \
        if (seq || k1 - k0 < 4) /* no group of four to start the sums: start them here */          \
            UNROLL for (int r = 0; r < R; r++)                                                     \
                for (long c = 0; c < width; c += VL) vstore(out + r * out_stride + c, vsplat(-0.0f)); \
        if (seq) { /* one row of W at a time: a single stream */                                   \
            for (; k < k1; k++) {                                                                  \
                const WT *wk = w + k * w_stride;                                                   \
                vf xk[R];                                                                          \
                UNROLL for (int r = 0; r < R; r++) xk[r] = vsplat(x[r * x_stride + k]);            \
                for (long c = 0; c < width; c += VL) {                                             \
                    if (prefetch && c % LINE == 0 && k + 4 < k1)                                   \
                        PREFETCH_AS(prefetch, wk + 4 * w_stride + c);                              \
                    vf a = WROW(w, sc, k, c);                                                      \
                    UNROLL for (int r = 0; r < R; r++)                                             \
                        vstore(out + r * out_stride + c, vfma(xk[r], a, vload(out + r * out_stride + c))); \
                }                                                                                  \
            }                                                                                      \
            return;                                                                                \
        }                                                                                          \
        for (; k + 4 <= k1; k += 4) {                                                              \
            int first = k == k0;                                                                   \
            const WT *wk = w + k * w_stride;                                                       \
            const uint16_t *srow = SC_ROW(sc, k); /* (a group of 4 rows never straddles a block of 32) */ \
            (void)srow;                                                                            \
            vf xs[R][4]; /* (in registers: the stores to out could otherwise be x's memory) */     \
            UNROLL for (int r = 0; r < R; r++) UNROLL for (int i = 0; i < 4; i++)                  \
                xs[r][i] = vsplat(x[r * x_stride + k + i]);                                        \
            for (long c = 0; c < width; c += VL) {                                                 \
                if (prefetch && c % LINE == 0 && k + 8 <= k1)                                      \
                    for (int i = 4; i < 8; i++)                                                    \
                        PREFETCH_AS(prefetch, wk + i * w_stride + c);                              \
                vf a[4];                                                                           \
                UNROLL for (int i = 0; i < 4; i++) a[i] = GLOAD(wk + i * w_stride + c, srow, c);   \
                UNROLL for (int r = 0; r < R; r++) {                                               \
                    vf acc = first ? vsplat(-0.0f) : vload(out + r * out_stride + c);              \
                    vstore(out + r * out_stride + c, GROUP4(acc, xs[r], a, srow, c));              \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        for (; k < k1; k++)                                                                        \
            for (long c = 0; c < width; c += VL) {                                                 \
                vf a0 = WROW(w, sc, k, c);                                                         \
                UNROLL for (int r = 0; r < R; r++) {                                               \
                    vf xk = vsplat(x[r * x_stride + k]);                                           \
                    vstore(out + r * out_stride + c, vfma(xk, a0, vload(out + r * out_stride + c))); \
                }                                                                                  \
            }                                                                                      \
    }

DEFINE_STREAM(T(stream_1), 1)
DEFINE_STREAM(T(stream_2), 2)
DEFINE_STREAM(T(stream_4), 4)
DEFINE_STREAM(T(stream_8), 8)
#undef DEFINE_STREAM

/* out[r, 0:width] = x[r, k0:k1] @ W[k0:k1, j0:j0+width] for all rows; rows of W contiguous.
 * DECODE_R rows at a time go through strips of DECODE_NV vectors, each strip read once from memory
 * and then from cache for the next rows; the rows left over go through row_strips. With
 * MG_STREAM_ROWS in `mode`, the rows of x go through stream_R instead, eight at a time, then four, two, one:
 * each group of four W rows is loaded once for R rows of x, so a batch of 8 reads the tile once and does 32
 * multiply-adds per 4 loads of W (Xeon Sapphire Rapids, one thread, GPT-2's block matrices for 8 rows: 46 ms
 * by two rows at a time, 22-27 ms by eight; decode b8 104-109 -> 170 tok/s). With MG_STREAM_SEQ too, stream_R
 * takes one row of W at a time: the tile (full rows, contiguous) is then read as one stream from start to end
 * instead of four rows side by side (AMD Zen 4, GPT-2's block matrices from memory, one row of x, bfloat16:
 * 13-14 GB/s -> 19 with one thread, 16-20 -> 26-27 with two; float32 18 -> 22 with one); for one row of x only. */
static void T(decode_tile)(const float *x, long x_stride, const void *w_, long w_stride, const uint16_t *sc,
                           long s_stride, long n_out, long rows, long k0, long k1, long j0, long width, float *out,
                           long out_stride, int mode)
{
    const WT *w = (const WT *)w_ + j0;
    sc = SC_AT(sc, j0);
    int prefetch = mode & 3;
    if (mode & MG_STREAM_ROWS) {
        /* one row of W at a time for one row of x only: for a batch it would pass every row's sums through L1
         * once per row of W (Zen 4, bfloat16, decode b8 270 -> 151 tok/s), so a batch walks four at a time */
        long full = width - width % VL, r = 0;
        int seq = rows == 1 ? mode & MG_STREAM_SEQ : 0;
#define STREAM(R) for (; r + R <= rows; r += R)                                                       \
            T(stream_##R)(x + r * x_stride, x_stride, w, w_stride, sc, s_stride, k0, k1, out + r * out_stride, \
                          out_stride, full, prefetch | seq)
        STREAM(8);
        STREAM(4);
        STREAM(2);
        STREAM(1);
#undef STREAM
        for (r = 0; r < rows && full < width; r++)
            T(strip_edge)(x + r * x_stride, w + full, w_stride, SC_AT(sc, full), s_stride, width - full, n_out - j0 - full,
                          k0, k1, out + r * out_stride + full, prefetch);
        return;
    }
    const long strip = DECODE_NV * VL, full = width - width % strip;
    long r = 0;
    for (; r + DECODE_R <= rows; r += DECODE_R) {
        for (long c = 0; c < full; c += strip)
            T(strip_r)(x + r * x_stride, x_stride, w + c, w_stride, SC_AT(sc, c), s_stride, k0, k1,
                       out + r * out_stride + c, out_stride, prefetch);
        for (long i = r; i < r + DECODE_R && full < width; i++)
            T(row_strips)(x + i * x_stride, w + full, w_stride, SC_AT(sc, full), s_stride, width - full, n_out - j0 - full,
                          k0, k1, out + i * out_stride + full, prefetch);
    }
    for (; r < rows; r++)
        T(row_strips)(x + r * x_stride, w, w_stride, sc, s_stride, width, n_out - j0, k0, k1, out + r * out_stride,
                      prefetch);
}

/* dots_RxC: y[r, c] = x[r] . w_c for R rows and C columns of W (each contiguous, w_stride apart):
 * R x C vectors of sums, one per output, so each output adds its products in the same order
 * whatever R and C are. While it reads these columns it asks for C columns about as many bytes ahead as
 * the next C float32 columns would be (so further, in columns, for narrow formats), up to `ahead`. (int8
 * weights stored by columns take integer dot products instead, dots_i8.h: linear.c's mg_linear.) */
#define NEXT_COLS(C) ((C) * (long)(4 / sizeof(WT)))
#define DEFINE_DOTS(NAME, R, C)                                                                    \
    static NOINLINE void NAME(const float *x, long x_stride, const WT *w, long w_stride, const uint16_t *sc, \
                              long s_stride, long n, float *y, long y_stride, long ahead, int prefetch) \
    {                                                                                              \
        (void)sc, (void)s_stride;                                                                  \
        vf acc[R][C];                                                                              \
        UNROLL for (int r = 0; r < R; r++) UNROLL for (int c = 0; c < C; c++) acc[r][c] = (vf){0}; \
        long k = 0;                                                                                \
        for (; k + VL <= n; k += VL) {                                                             \
            if (prefetch && k % LINE == 0) /* the columns a float32 head would read next */       \
                UNROLL for (int c = 0; c < C; c++) if (NEXT_COLS(C) + c < ahead)                   \
                    PREFETCH_AS(prefetch, w + (NEXT_COLS(C) + c) * w_stride + k);                  \
            vf wv[C];                                                                              \
            UNROLL for (int c = 0; c < C; c++) wv[c] = WCOL(w, sc, c, k);                          \
            UNROLL for (int r = 0; r < R; r++) {                                                   \
                vf xr = vload(x + r * x_stride + k);                                               \
                UNROLL for (int c = 0; c < C; c++) acc[r][c] = vfma(xr, wv[c], acc[r][c]);       \
            }                                                                                      \
        }                                                                                          \
        UNROLL for (int r = 0; r < R; r++) UNROLL for (int c = 0; c < C; c++) {                    \
            float sum = 0.0f; /* the last n % VL products, in order */                             \
            for (long i = k; i < n; i++)                                                           \
                sum += x[r * x_stride + i] * SCOL(w, sc, c, i);                                    \
            y[r * y_stride + c] = vsum(acc[r][c]) + sum;                                           \
        }                                                                                          \
    }

DEFINE_DOTS(T(dots_rc), DOT_R, DOT_C)
DEFINE_DOTS(T(dots_1c), 1, DOT_C)
DEFINE_DOTS(T(dots_r1), DOT_R, 1)
DEFINE_DOTS(T(dots_11), 1, 1)
#undef DEFINE_DOTS

/* y[r, j0:j1] = x[r] @ W[:, j0:j1] + b with the columns of W contiguous. Each column of W is read
 * from memory once and then reused, from L1, for every group of rows. Two walks, the same sums in the same
 * order (one vector of sums per output), so the same bits: DOT_C columns side by side, each asking for the
 * column DOT_C further on line by line; or, with MG_STREAM_ROWS in `mode`, one column after another, the
 * next column asked for whole before this one is read: one sequential stream, which some CPUs' prefetchers
 * follow faster (Zen 5, float32 head, 1 thread: 41 GB/s against 31 side by side). */
static void T(decode_cols_major)(const float *x, long x_stride, const void *w_, long w_stride, const uint16_t *sc,
                                 long s_stride, const float *bias, float *y, long y_stride, long rows, long n_in,
                                 long j0, long j1, int mode)
{
    const WT *w = w_;
    int prefetch = mode & 3;
    long j = j0;
    for (; (mode & MG_STREAM_ROWS) && j < j1; j++) {
        const WT *wj = w + j * w_stride;
        const uint16_t *sj = SC_AT(sc, j * s_stride);
        if (prefetch && j + 1 < j1)
            for (long k = 0; k < n_in; k += LINE)
                PREFETCH_AS(prefetch, wj + w_stride + k);
        long r = 0;
        for (; r + DOT_R <= rows; r += DOT_R)
            T(dots_r1)(x + r * x_stride, x_stride, wj, w_stride, sj, s_stride, n_in, y + r * y_stride + j, y_stride,
                       0, 0);
        for (; r < rows; r++)
            T(dots_11)(x + r * x_stride, x_stride, wj, w_stride, sj, s_stride, n_in, y + r * y_stride + j, y_stride,
                       0, 0);
    }
    for (; j + DOT_C <= j1; j += DOT_C) {
        const WT *wj = w + j * w_stride;
        const uint16_t *sj = SC_AT(sc, j * s_stride);
        long r = 0;
        for (; r + DOT_R <= rows; r += DOT_R)
            T(dots_rc)(x + r * x_stride, x_stride, wj, w_stride, sj, s_stride, n_in, y + r * y_stride + j, y_stride,
                       j1 - j, prefetch);
        for (; r < rows; r++)
            T(dots_1c)(x + r * x_stride, x_stride, wj, w_stride, sj, s_stride, n_in, y + r * y_stride + j, y_stride,
                       j1 - j, prefetch);
    }
    for (; j < j1; j++) {
        const WT *wj = w + j * w_stride;
        const uint16_t *sj = SC_AT(sc, j * s_stride);
        long r = 0;
        for (; r + DOT_R <= rows; r += DOT_R)
            T(dots_r1)(x + r * x_stride, x_stride, wj, w_stride, sj, s_stride, n_in, y + r * y_stride + j, y_stride,
                       j1 - j, prefetch);
        for (; r < rows; r++)
            T(dots_11)(x + r * x_stride, x_stride, wj, w_stride, sj, s_stride, n_in, y + r * y_stride + j, y_stride,
                       j1 - j, prefetch);
    }
    if (bias)
        for (long r = 0; r < rows; r++)
            for (long i = j0; i < j1; i++)
                y[r * y_stride + i] += bias[i];
}

/* Copy W[0:kc, 0:nc] into NR-column panels of float32, b[panel][p][j] (zero-padded), for the tiled
 * kernel: a narrow weight is widened here, one KC x NC block at a time. Either way round, the loop reads
 * W along its contiguous axis. (w and sc start at the block's first row, a multiple of BLOCK.) */
static void T(pack_w)(const void *w_, long w_stride, const uint16_t *sc, long s_stride, int w_transposed, long kc,
                      long nc, float *b)
{
    const WT *w = w_;
    (void)sc, (void)s_stride;
    for (long j0 = 0; j0 < nc; j0 += NR, b += NR * kc) {
        long n = nc - j0 < NR ? nc - j0 : NR;
        if (w_transposed) {  /* column j of W is row j of the memory: VL of its weights widened at once */
            for (long j = 0; j < NR; j++) {
                long p = 0;
                for (; j < n && p + VL <= kc; p += VL) {
                    float t[VL];
                    vstore(t, WCOL(w, sc, j0 + j, p));
                    for (long l = 0; l < VL; l++)
                        b[(p + l) * NR + j] = t[l];
                }
                for (; p < kc; p++)
                    b[p * NR + j] = j < n ? SCOL(w, sc, j0 + j, p) : 0.0f;
            }
        } else {
            for (long p = 0; p < kc; p++) {
                long j = 0;
                for (; j + VL <= n; j += VL)
                    vstore(b + p * NR + j, WROW(w, sc, p, j0 + j));
                for (; j < n; j++)
                    b[p * NR + j] = SROW(w, sc, p, j0 + j);
                for (; j < NR; j++)
                    b[p * NR + j] = 0.0f;
            }
        }
    }
}

#undef AHEAD
#undef NEXT_COLS
#undef LINE
#undef WROW
#undef SC_ROW
#undef SC_AT
#undef SCALED
#undef FMT
#undef WT
#undef WLOAD
#undef WCOL
#undef WRAW
#undef GLOAD
#undef GROUPED
#undef GROUP4
#undef SROW
#undef SCOL
#undef T
#undef TNAME
#undef TJOIN
