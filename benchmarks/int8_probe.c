/* Do int8 weights decode faster as integer dot products? A probe for one CPU, outside minigpt2's tests.
 *
 * minigpt2 used to widen every int8 weight to float32 in a register and multiply it by a float32 activation:
 * two conversion instructions per 8 weights (sign-extend, int -> float) before each multiply-add. llama.cpp's
 * Q8_0 instead rounds the activations to integers too and multiplies integers (several products per
 * instruction). Rounding activations to int16 per block of 32 (error 2^-16 of the block's largest, far below
 * int8 weights' 2^-8) allows the same with AVX2's vpmaddwd (16 products summed in pairs per instruction):
 * this probe said so, and minigpt2 now does it (csrc/dots_i8.h). It times decoding products (1 x K @ K x N) on
 * GPT-2 124M's 48 block matrices (85 M int8 weights with a float16 scale per 32 down each column):
 *
 *   minigpt2       the library's own mg_linear (the widest variant this CPU runs, prefetch "keep") on the
 *                  weights stored by rows (the row walk: x rounded to int16 and back, q widened to float,
 *                  sum + s * (x0 q0 + x1 q1 + x2 q2 + x3 q3), as every int8 product did before) and by columns
 *                  (int16 dots, csrc/dots_i8.h: what GPT-2's int8 products now take)
 *   int16 dots     x rounded to int16 per block of 32; the same walk (the tile's rows four at a time, sums in
 *                  L1, the next four rows asked for a line ahead) with two rows' bytes interleaved at run
 *                  time, vpmaddwd into int32 sums per block, then times the block's two scales
 *   int16, pairs   the same with the weights stored two rows interleaved (a layout chosen at load)
 *   by columns     the weights stored column by column ([N, K], scales [N, K/32]: what minigpt2 now does,
 *                  csrc/dots_i8.h): each thread a range of columns, four side by side or one after another
 *                  (one stream), the last also asking for the stream 2 KiB ahead
 *   read only      the same walk and loads with no arithmetic; and a plain sequential read
 *
 * in L2 (one 256 x 768 matrix, again and again) and from memory, with 1 and with all threads (the library's
 * own pool, each thread a slice of the rows as mg_linear's row walk takes them), interleaved over rounds,
 * median. It answers for the CPU it runs on: docs/kernels.md keeps what it said. Built with the library:
 *
 *     cc -O3 -march=x86-64-v3 -pthread -Icsrc benchmarks/int8_probe.c csrc/variant_*.c csrc/dispatch.c \
 *         csrc/parallel.c csrc/block.c -lm -o int8_probe && ./int8_probe      # ./int8_probe --quick: a smoke run
 *
 * (x86-64 with AVX2 only; elsewhere it says so. The results are not checked against each other beyond a
 * sanity sum: the paths compute different roundings, and this is a timing probe, not minigpt2's code.)
 */
#define _GNU_SOURCE  /* sched_getaffinity: "all threads" are the cores this process may use, as minigpt2 counts them */
#include <stdio.h>

#if !defined(__AVX2__) || !defined(__F16C__) || !defined(__FMA__)
int main(void)
{
    puts("int8_probe: needs x86-64 with AVX2, FMA and F16C; build with -march=x86-64-v3 on such a CPU");
    return 0;
}
#else
#include <immintrin.h>
#include <math.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "kernels.h"
#include "parallel.h"

#define MATRICES 48
#define ROUNDS 7  /* (--quick: 1 round of one pass, a smoke run for tests/test_benchmarks.py) */
static const long SHAPES[4][2] = {{768, 2304}, {768, 768}, {768, 3072}, {3072, 768}};  /* one GPT-2 block */

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* a line of each of the next group's four rows (`next`, `stride` bytes apart), at byte c, if there is one */
static inline void ahead(const int8_t *next, long stride, long c, long k, long K)
{
    if (k + 8 <= K)
        for (int i = 0; i < 4; i++)
            _mm_prefetch((const char *)(next + i * stride + c), _MM_HINT_T0);
}

/* out += (the block's int32 sums) * (weight scale * activation scale), per column */
static void scale_block(const int32_t *acc, const uint16_t *s, float sx, float *out, long c0, long c1)
{
    __m256 sxv = _mm256_set1_ps(sx);
    for (long c = c0; c < c1; c += 8) {
        __m256 sv = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + c))), sxv);
        __m256 sums = _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)(acc + c)));
        _mm256_storeu_ps(out + c, _mm256_fmadd_ps(sv, sums, _mm256_loadu_ps(out + c)));
    }
}

static inline __m256i pair(const int16_t *xi, long k)  /* (x_k, x_k+1) in every 32-bit lane */
{
    return _mm256_set1_epi32((int32_t)((uint32_t)(uint16_t)xi[k] | (uint32_t)(uint16_t)xi[k + 1] << 16));
}

static void walk_int16(const int8_t *q, const uint16_t *sc, const int16_t *xi, const float *sx, float *out,
                       int32_t *acc, long k0, long K, long N, long c0, long c1, int pairs_stored)
{
    for (long c = c0; c < c1; c += 8)
        _mm256_storeu_ps(out + c, _mm256_set1_ps(-0.0f));
    for (long b = k0; b < K; b += 32) {
        memset(acc + c0, 0, sizeof(int32_t) * (c1 - c0));
        for (long k = b; k < b + 32; k += 4) {
            __m256i x01 = pair(xi, k), x23 = pair(xi, k + 2);
            const int8_t *w = q + k * N;
            if (pairs_stored) {  /* rows k, k+1 as (q[k, c], q[k+1, c]) byte pairs, 2N bytes; then k+2, k+3 */
                for (long c = c0; c < c1; c += 8) {
                    if (c % 32 == 0 && k + 8 <= K)  /* the next group's two pair rows */
                        _mm_prefetch((const char *)(w + 4 * N + 2 * c), _MM_HINT_T0),
                            _mm_prefetch((const char *)(w + 6 * N + 2 * c), _MM_HINT_T0);
                    __m256i a = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w + 2 * c)));
                    __m256i d = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w + 2 * N + 2 * c)));
                    __m256i sum = _mm256_add_epi32(_mm256_madd_epi16(a, x01), _mm256_madd_epi16(d, x23));
                    _mm256_storeu_si256((__m256i *)(acc + c),
                                        _mm256_add_epi32(_mm256_loadu_si256((const __m256i *)(acc + c)), sum));
                }
                continue;
            }
            for (long c = c0; c < c1; c += 16) {
                if (c % 64 == 0)
                    ahead(w + 4 * N, N, c, k, K);
                __m128i r0 = _mm_loadu_si128((const __m128i *)(w + c));
                __m128i r1 = _mm_loadu_si128((const __m128i *)(w + N + c));
                __m128i r2 = _mm_loadu_si128((const __m128i *)(w + 2 * N + c));
                __m128i r3 = _mm_loadu_si128((const __m128i *)(w + 3 * N + c));
                __m256i lo = _mm256_add_epi32(_mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_unpacklo_epi8(r0, r1)), x01),
                                              _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_unpacklo_epi8(r2, r3)), x23));
                __m256i hi = _mm256_add_epi32(_mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_unpackhi_epi8(r0, r1)), x01),
                                              _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_unpackhi_epi8(r2, r3)), x23));
                _mm256_storeu_si256((__m256i *)(acc + c),
                                    _mm256_add_epi32(_mm256_loadu_si256((const __m256i *)(acc + c)), lo));
                _mm256_storeu_si256((__m256i *)(acc + c + 8),
                                    _mm256_add_epi32(_mm256_loadu_si256((const __m256i *)(acc + c + 8)), hi));
            }
        }
        scale_block(acc, sc + b / 32 * N, sx[b / 32], out, c0, c1);
    }
}

static inline float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

/* y[j] for the columns j0 <= j < j1 of W stored [N, K] with scales [N, K/32]: per block, 32 products of integers
 * summed by vpmaddwd, times (weight scale * activation scale); `side` columns side by side (1 or 4) */
static void cols_int16(const int8_t *q, const uint16_t *sc, const int16_t *xi, const float *sx, float *out, long K,
                       long j0, long j1, int side, long ahead)
{
    long nb = K / 32;
    for (long j = j0; j < j1; j += side) {
        int n = j1 - j < side ? (int)(j1 - j) : side;
        __m256 f[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
        for (long b = 0; b < nb; b++) {
            long k = b * 32;
            __m256i x0 = _mm256_loadu_si256((const __m256i *)(xi + k)), x1 = _mm256_loadu_si256((const __m256i *)(xi + k + 16));
            for (int c = 0; c < n; c++) {
                const int8_t *w = q + (j + c) * K + k;
                if (ahead && b % 2 == 0)
                    _mm_prefetch((const char *)(w + ahead), _MM_HINT_T0);
                __m256i a = _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)w)), x0);
                __m256i d = _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w + 16))), x1);
                __m256 s = _mm256_set1_ps(_cvtsh_ss(sc[(j + c) * nb + b]) * sx[b]);
                f[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(a, d)), s, f[c]);
            }
        }
        for (int c = 0; c < n; c++)
            out[j + c] = hsum(f[c]);
    }
}

static void walk_read(const int8_t *q, float *out, long k0, long K, long N, long c0, long c1)
{
    __m256i any = _mm256_setzero_si256();
    for (long k = k0; k < K; k += 4) {
        const int8_t *w = q + k * N;
        for (long c = c0; c < c1; c += 32) {
            if (c % 64 == 0)
                ahead(w + 4 * N, N, c, k, K);
            for (int i = 0; i < 4; i++)
                any = _mm256_or_si256(any, _mm256_loadu_si256((const __m256i *)(w + i * N + c)));
        }
    }
    out[c0] = (float)_mm256_extract_epi32(any, 0);
}

static void read_sequential(const int8_t *q, float *out, long bytes, long begin, long end)
{
    (void)bytes;
    __m256i any = _mm256_setzero_si256();
    for (long i = begin; i + 128 <= end; i += 128)
        for (int j = 0; j < 4; j++)
            any = _mm256_or_si256(any, _mm256_loadu_si256((const __m256i *)(q + i + 32 * j)));
    out[0] += (float)_mm256_extract_epi32(any, 0);
}

enum { MINIGPT2, MINIGPT2_COLS, INT16, PAIRS, COLS4, COLS1, COLS1_AHEAD, READ, SEQUENTIAL, PATHS };
static const char *NAMES[PATHS] = {"minigpt2 (mg_linear), stored by rows: widened to float",
                                   "minigpt2 (mg_linear), stored by columns: int16 dots", "int16 dots", "int16 dots, pairs stored",
                                   "int16 dots by columns, 4 side by side", "int16 dots by columns, one at a time",
                                   "the same, 2 KiB ahead", "read only, the same walk", "read only, sequential"};

struct matrix {
    long K, N;
    int8_t *q, *pairs, *cols;  /* cols: [N, K], column by column */
    uint16_t *scales, *cscales;
};

struct job {
    int path;
    const struct matrix *m;
    const int16_t *xi;
    const float *sx;
    float *out;
    long rows;  /* rows of W per item (a multiple of 32) */
};

static float partial[64][3072];
static int widest;  /* mg_variant_widest(), asked once: it runs cpuid, which a virtual machine may trap */

static void item(void *arg, long i)
{
    const struct job *j = arg;
    const struct matrix *m = j->m;
    long k0 = i * j->rows, k1 = k0 + j->rows < m->K ? k0 + j->rows : m->K;
    float *mine = i == 0 ? j->out : partial[i];
    int32_t acc[3072] __attribute__((aligned(32)));
    if (j->path >= COLS4 && j->path <= COLS1_AHEAD) {  /* here `rows` is the number of items: a share of columns */
        long per = (m->N / j->rows + 3) / 4 * 4, c0 = i * per, c1 = c0 + per < m->N ? c0 + per : m->N;
        cols_int16(m->cols, m->cscales, j->xi, j->sx, j->out, m->K, c0, c1, j->path == COLS4 ? 4 : 1,
                   j->path == COLS1_AHEAD ? 2048 : 0);
    } else if (j->path == INT16 || j->path == PAIRS)
        walk_int16(j->path == PAIRS ? m->pairs : m->q, m->scales, j->xi, j->sx, mine, acc, k0, k1, m->N, 0, m->N,
                   j->path == PAIRS);
    else if (j->path == READ)
        walk_read(m->q, mine, k0, k1, m->N, 0, m->N);
    else {  /* SEQUENTIAL: the item's share of the bytes */
        long bytes = m->K * m->N, share = bytes / (m->K / j->rows) / 128 * 128;
        read_sequential(m->q, mine, bytes, i * share, k1 == m->K ? bytes : (i + 1) * share);
    }
}

/* One product by `threads` threads; the paths of this file in the library's pool, as its row walk splits a
 * product: each thread a slice of the rows (a multiple of 32), the whole width, sums of its own added at the end */
static void product(int path, const struct matrix *m, const float *x, const int16_t *xi, const float *sx,
                    float *out, int threads)
{
    if (path == MINIGPT2) {
        mg_linear(widest, MG_PREFETCH_KEEP | MG_STREAM_ROWS, MG_I8, x, m->K, m->q, m->N, m->scales,
                  m->N, 0, NULL, out, m->N, 1, m->K, m->N);
        return;
    }
    if (path == MINIGPT2_COLS) {
        mg_linear(widest, MG_PREFETCH_KEEP, MG_I8, x, m->K, m->cols, m->K, m->cscales, m->K / 32, 1, NULL, out,
                  m->N, 1, m->K, m->N);
        return;
    }
    if (path >= COLS4 && path <= COLS1_AHEAD) {  /* every output one thread's: nothing to add up after */
        struct job j = {path, m, xi, sx, out, threads};
        mg_parallel_for(threads, item, &j);
        return;
    }
    struct job j = {path, m, xi, sx, out, (m->K / threads + 31) / 32 * 32};
    long items = (m->K + j.rows - 1) / j.rows;
    mg_parallel_for(items, item, &j);
    for (long t = 1; path <= PAIRS && t < items; t++)
        for (long c = 0; c < m->N; c++)
            out[c] += partial[t][c];
}

/* Memory in 2 MiB pages where the kernel gives them, as NumPy asks for its large arrays (docs/kernels.md, "Pages":
 * in 4 KiB pages the same walk reads markedly slower) */
static void *big(size_t bytes)
{
    size_t huge = 2u << 20, rounded = (bytes + huge - 1) / huge * huge;
    void *p = aligned_alloc(huge, rounded);
    if (p)
        madvise(p, rounded, MADV_HUGEPAGE);
    return p;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    const char *usage = "usage: %s [--quick]   (--quick: one round, a smoke run)\n";
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf(usage, argv[0]);
        return 0;
    }
    if (argc > 2 || (argc == 2 && strcmp(argv[1], "--quick") != 0)) {
        fprintf(stderr, usage, argv[0]);
        return 2;
    }
    widest = mg_variant_widest();
    long online = sysconf(_SC_NPROCESSORS_ONLN);
#ifdef __linux__
    cpu_set_t allowed;  /* (taskset, a container's cpuset: the cores this process may use) */
    if (sched_getaffinity(0, sizeof allowed, &allowed) == 0 && CPU_COUNT(&allowed) > 0)
        online = CPU_COUNT(&allowed);
#endif
    int cores = online < 1 ? 1 : online > 64 ? 64 : (int)online;
    struct matrix m[MATRICES], small = {256, 768, NULL, NULL, NULL, NULL, NULL};
    long total = 0;
    srand(1);
    for (int i = 0; i <= MATRICES; i++) {
        struct matrix *a = i < MATRICES ? &m[i] : &small;
        if (i < MATRICES)
            a->K = SHAPES[i % 4][0], a->N = SHAPES[i % 4][1], total += a->K * a->N;
        a->q = big(a->K * a->N), a->pairs = big(a->K * a->N), a->scales = big(a->K / 32 * a->N * 2);
        for (long j = 0; j < a->K * a->N; j++)
            a->q[j] = (int8_t)(rand() % 255 - 127);
        for (long k = 0; k < a->K; k += 2)  /* rows k, k+1 interleaved */
            for (long c = 0; c < a->N; c++)
                for (int i = 0; i < 2; i++)
                    a->pairs[k * a->N + 2 * c + i] = a->q[(k + i) * a->N + c];
        for (long j = 0; j < a->K / 32 * a->N; j++)
            a->scales[j] = 0x2000;  /* 2^-7 */
        a->cols = big(a->K * a->N), a->cscales = big(a->K / 32 * a->N * 2);
        for (long k = 0; k < a->K; k++)
            for (long c = 0; c < a->N; c++)
                a->cols[c * a->K + k] = a->q[k * a->N + c];
        for (long j = 0; j < a->K / 32 * a->N; j++)
            a->cscales[j] = 0x2000;
    }
    static float x[3072], sx[96], out[3072];
    static int16_t xi[3072];
    for (int i = 0; i < 3072; i++)
        x[i] = (float)rand() / RAND_MAX - 0.5f;
    for (int b = 0; b < 96; b++) {  /* x rounded to int16 per block of 32: x ~ xi * sx */
        float most = 0;
        for (int i = 0; i < 32; i++)
            most = fabsf(x[32 * b + i]) > most ? fabsf(x[32 * b + i]) : most;
        sx[b] = most / 32767;
        for (int i = 0; i < 32; i++)
            xi[32 * b + i] = (int16_t)lrintf(x[32 * b + i] / sx[b]);
    }
    /* columns: 1 thread in L2, 1 thread from memory, all threads from memory */
    int quick = argc == 2, rounds = quick ? 1 : ROUNDS, passes = quick ? 1 : 4;
    double t[PATHS][3][ROUNDS];
    long repeats = quick ? 20 : 1000;
    for (int r = 0; r < rounds; r++)
        for (int p = 0; p < PATHS; p++)
            for (int col = 0; col < 3; col++) {
                int threads = col == 2 ? cores : 1;
                mg_set_num_threads(threads);
                double start = now();
                if (col == 0)
                    for (long i = 0; i < repeats; i++)
                        product(p, &small, x, xi, sx, out, 1);
                else
                    for (int pass = 0; pass < passes; pass++)
                        for (int i = 0; i < MATRICES; i++)
                            product(p, &m[i], x, xi, sx, out, threads);
                double weights = col == 0 ? (double)repeats * small.K * small.N : (double)passes * total;
                t[p][col][r] = weights / (now() - start) / 1e9;
            }
    printf("variant %s; ", mg_variant_name(widest));
    printf("int8 decode product (GPT-2 124M's 48 block matrices, %ld M weights), G weights/s, median of %d rounds\n\n",
           total / 1000000, rounds);
    printf("| path | 1 thread, in L2 | 1 thread, from memory | %d threads, from memory |\n", cores);
    printf("|---|---:|---:|---:|\n");
    for (int p = 0; p < PATHS; p++) {
        printf("| %s |", NAMES[p]);
        for (int col = 0; col < 3; col++) {
            qsort(t[p][col], rounds, sizeof(double), cmp);
            printf(" %.1f |", t[p][col][rounds / 2]);
        }
        printf("\n");
    }
    printf("\n(sanity: %g)\n", (double)out[0] + out[1]);
    return 0;
}
#endif
