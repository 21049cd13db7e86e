/* What does widening 16-bit weights cost a read from memory? A probe for one CPU, outside minigpt2's tests.
 *
 * Decoding with bfloat16 or float16 weights reads half the bytes of float32, so it could be twice as fast, if the
 * reads still ran at the memory's speed. But each vector of 16-bit weights takes more instructions than a vector
 * of float32: a load, a widening to float32 (bfloat16: zero-extend and shift; float16: the conversion instruction),
 * then the multiply-add, and for each byte read there are twice as many weights. On a core that issues few
 * instructions per nanosecond (a VM's vCPU that shares its core with another guest), that work, not the memory,
 * can set the speed. This probe reads the same 512 MiB in each of these ways, each thread its own contiguous share,
 * with 8 independent sums (so no add waits for another), and prints GB/s of bytes read:
 *
 *   float32 read           load + add: the yardstick, as benchmarks/memread.c
 *   float32 + 2 int ops    the same with two integer instructions per vector (as much extra work per vector as
 *                          widening bfloat16 takes): does this core slow its reads for work per byte?
 *   float32 multiply-add   load + fma into the sums (a decoding product's inner step for float32)
 *   bfloat16 widened       load + minigpt2's widen_bf16 (csrc/widen.h) + add
 *   bfloat16 multiply-add  load + widen_bf16 + fma (the inner step of the 16-bit products)
 *   float16 multiply-add   load + widen_f16 + fma
 *   ..., asking ahead      the same, each line also prefetched AHEAD bytes ahead (4 KiB, as the kernels'
 *                          PREFETCH_BYTES; -DAHEAD=16384 to try another distance)
 *
 * with 1 thread and with 2 (or the count given), interleaved over rounds, best of the rounds. It answers for the
 * CPU it runs on and for the vector width built for; docs/kernels.md keeps what it said. Built with the library's
 * headers, for one target:
 *
 *     cc -O2 -march=native -pthread -Icsrc -include target_avx512.h benchmarks/widen_probe.c -o widen_probe
 *     cc -O2 -march=x86-64-v3 -pthread -Icsrc -include target_avx2.h benchmarks/widen_probe.c -o widen_probe
 *     ./widen_probe [threads] [rounds]       (threads 1-64, default 2; rounds 1-1000, default 7)
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "simd.h"
#include "widen.h"

#define BYTES ((size_t)512 << 20)
#define SUMS 8
#ifndef AHEAD
#define AHEAD 4096  /* bytes ahead that the "asking ahead" ways prefetch (into all caches), as PREFETCH_BYTES */
#endif

enum { F32_READ, F32_INT_OPS, F32_FMA, BF16_READ, BF16_FMA, F16_FMA, BF16_FMA_AHEAD, F32_READ_AHEAD, WAYS };
static const char *NAMES[WAYS] = {"float32 read", "float32 + 2 int ops", "float32 multiply-add", "bfloat16 widened",
                                  "bfloat16 multiply-add", "float16 multiply-add", "bfloat16 fma, asking ahead",
                                  "float32 read, asking ahead"};

struct share {
    const char *p;
    size_t bytes;
    int way;
    float sum;
};

static void *read_share(void *arg)
{
    struct share *s = arg;
    vf sum[SUMS], x = vsplat(1.0f);
    for (int j = 0; j < SUMS; j++)
        sum[j] = vsplat(0.0f);
    const size_t step32 = SUMS * VL * sizeof(float), step16 = SUMS * VL * sizeof(uint16_t);
    if (s->way == F32_READ || s->way == F32_INT_OPS || s->way == F32_FMA || s->way == F32_READ_AHEAD) {
        for (size_t i = 0; i + step32 <= s->bytes; i += step32) {
            const float *w = (const float *)(s->p + i);
            if (s->way == F32_READ_AHEAD)
                for (size_t line = 0; line < step32; line += 64)
                    PREFETCH_AS(2, s->p + i + AHEAD + line);
            UNROLL for (int j = 0; j < SUMS; j++) {
                vf a = vload(w + j * VL);
                if (s->way == F32_INT_OPS)  /* (two integer instructions the compiler cannot drop: x << 1 >> 1) */
                    a = (vf)(((vi)a << 1) >> 1);
                sum[j] = s->way == F32_FMA ? vfma(x, a, sum[j]) : sum[j] + a;
            }
        }
    } else {
        for (size_t i = 0; i + step16 <= s->bytes; i += step16) {
            const uint16_t *w = (const uint16_t *)(s->p + i);
            if (s->way == BF16_FMA_AHEAD)
                for (size_t line = 0; line < step16; line += 64)
                    PREFETCH_AS(2, s->p + i + AHEAD + line);
            UNROLL for (int j = 0; j < SUMS; j++) {
                vf a = s->way == F16_FMA ? widen_f16(w + j * VL) : widen_bf16(w + j * VL);
                sum[j] = s->way == BF16_READ ? sum[j] + a : vfma(x, a, sum[j]);
            }
        }
    }
    float total = 0.0f;
    for (int j = 0; j < SUMS; j++)
        total += vsum(sum[j]);
    s->sum = total;  /* kept, so the reads cannot be optimised away */
    return NULL;
}

static double seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* GB/s of one way of reading the buffer with `threads` threads, or -1 if a thread could not start */
static double read_gbs(const char *buffer, int way, int threads)
{
    pthread_t thread[64];
    struct share share[64];
    double start = seconds();
    int started = 0;
    for (; started < threads; started++) {
        share[started] = (struct share){buffer + BYTES / threads * started, BYTES / threads, way, 0.0f};
        if (pthread_create(&thread[started], NULL, read_share, &share[started]) != 0)
            break;
    }
    for (int t = 0; t < started; t++)
        pthread_join(thread[t], NULL);
    return started < threads ? -1.0 : (double)BYTES / (seconds() - start) / 1e9;
}

/* argv[i] as a whole number from low to high, else -1: the whole argument must be the number ("2x", "", "1e3" and
   out-of-range values are refused, which atoi read as 2, 0, 1 and whatever it wrapped to) */
static long whole_number(const char *text, long low, long high)
{
    char *end;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (end == text || *end != '\0' || errno == ERANGE || value < low || value > high)
        return -1;
    return value;
}

#define USAGE "usage: %s [threads 1-64, default 2] [rounds 1-1000, default 7]\n"

int main(int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf(USAGE, argv[0]);
        return 0;
    }
    if (argc > 3) {
        fprintf(stderr, "%s: at most two arguments, got %d\n" USAGE, argv[0], argc - 1, argv[0]);
        return 2;
    }
    long threads = argc > 1 ? whole_number(argv[1], 1, 64) : 2, rounds = argc > 2 ? whole_number(argv[2], 1, 1000) : 7;
    if (threads < 0 || rounds < 0) {
        fprintf(stderr, "%s: %s '%s' is not a whole number from 1 to %d\n" USAGE, argv[0],
                threads < 0 ? "threads" : "rounds", threads < 0 ? argv[1] : argv[2], threads < 0 ? 64 : 1000, argv[0]);
        return 2;
    }
    char *buffer = malloc(BYTES);
    if (!buffer) {
        fprintf(stderr, "no memory for %zu MiB\n", BYTES >> 20);
        return 1;
    }
    for (size_t i = 0; i < BYTES; i += 2)  /* 0x3f80 repeated: 1.0 in bfloat16, a finite float32 and float16 */
        memcpy(buffer + i, &(uint16_t){0x3f80}, 2);
    int counts[2] = {1, (int)threads};
    printf("%s variant (%d-byte vectors), %zu MiB, best of %ld rounds; GB/s read, and / the float32 read\n",
           MG_VARIANT_NAME, MG_VBYTES, BYTES >> 20, rounds);
    for (int c = 0; c < (threads > 1 ? 2 : 1); c++) {
        double best[WAYS] = {0};
        for (int r = 0; r < rounds; r++)
            for (int way = 0; way < WAYS; way++) {
                double gbs = read_gbs(buffer, way, counts[c]);
                if (gbs > best[way])
                    best[way] = gbs;
            }
        for (int way = 0; way < WAYS; way++)
            printf("%d thread%s  %-28s %6.1f GB/s  %.2fx\n", counts[c], counts[c] > 1 ? "s" : " ", NAMES[way],
                   best[way], best[way] / best[F32_READ]);
    }
    free(buffer);
    return 0;
}
