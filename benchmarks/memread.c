/* The yardstick for decoding speed: how fast can this machine read memory right now?
 *
 * Decoding one token reads every weight once, so the fastest possible decode is the machine's read
 * bandwidth divided by the bytes of the weights. memread_seconds() times a plain read of a buffer by
 * `threads` threads, each summing its own contiguous share 64 bytes at a time. bench_decode.py
 * builds this file with cffi and measures it in every round next to the decoders, because on a
 * shared machine the bandwidth changes from minute to minute. Not part of minigpt2.
 */
#include <pthread.h>
#include <time.h>

#define MAX_THREADS 64

struct share {
    const float *p;
    long n;
    float sum;
};

static void *read_share(void *arg)
{
    struct share *s = arg;
    float lanes[64] = {0.0f};  /* four vectors of 16 independent sums: loads are never waiting on adds */
    long i = 0;
    for (; i + 64 <= s->n; i += 64)
        for (int l = 0; l < 64; l++)
            lanes[l] += s->p[i + l];
    float sum = 0.0f;
    for (; i < s->n; i++)
        sum += s->p[i];
    for (int l = 0; l < 64; l++)
        sum += lanes[l];
    s->sum = sum;  /* kept, so the reads cannot be optimised away */
    return NULL;
}

/* Seconds to read n floats from p with `threads` threads (1 .. 64); negative if a thread failed. */
double memread_seconds(const float *p, long n, int threads, float *sum)
{
    pthread_t thread[MAX_THREADS];
    struct share share[MAX_THREADS];
    struct timespec t0, t1;
    if (threads < 1 || threads > MAX_THREADS)
        return -1.0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int started = 0;
    for (; started < threads; started++) {
        share[started] = (struct share){p + n * started / threads, n * (started + 1) / threads - n * started / threads, 0};
        if (pthread_create(&thread[started], NULL, read_share, &share[started]) != 0)
            break;
    }
    for (int t = 0; t < started; t++)
        pthread_join(thread[t], NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    *sum = 0.0f;
    for (int t = 0; t < started; t++)
        *sum += share[t].sum;
    return started < threads ? -1.0 : (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
}
