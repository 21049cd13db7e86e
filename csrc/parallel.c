/* Threads: a small pool that shares out the items of one job at a time (see parallel.h).
 *
 * Why not OpenMP: an OpenMP parallel region ends in a barrier that waits for *every* thread of
 * the team, including one the operating system has not yet run. On a machine where another
 * program keeps the cores busy, a decoding step (about 100 regions) then waits for the scheduler
 * again and again: we measured a 768 x 2304 matrix-vector product go from 0.26 ms to 16 ms with
 * libgomp's default (spinning) wait policy (docs/kernels.md). Here the caller never waits for a
 * thread that has not started: the items are claimed from a shared counter, the caller claims
 * them too, and it waits only for items already claimed and still running. When it must wait, it
 * sleeps soon, so a worker that was pushed off its core can run on the caller's core instead.
 *
 * The protocol, with C11 atomics:
 *   - `state` packs (job number << 32 | next unclaimed item). Posting job g stores (g, 0); a thread
 *     claims item i of job g by changing (g, i) into (g, i + 1) with compare-and-swap, which fails
 *     harmlessly if the job has changed meanwhile.
 *   - A job's description (function, argument, item count) sits in jobs[g % 2]; it is written
 *     before `state` announces the job, and cannot be overwritten while any item of job g is
 *     unclaimed or running (job g + 2 starts only after job g has finished).
 *   - `done` counts finished items; the caller returns when it reaches the item count.
 *   - Idle workers spin for a short while (the next job usually comes within microseconds), then
 *     sleep on a condition variable; the caller signals only when someone sleeps. After the first
 *     few microseconds the spinning worker yields its core at every turn: on a machine where
 *     another program is running, a spinning worker would otherwise take the time the caller
 *     needs for the Python between kernels (measured: 2 threads decoded 10% slower than 1 beside
 *     a busy loop; with the yield, at least as fast).
 *   - mg_pool_rest() sends the spinning workers to sleep at once (`resting`), until the next job: the
 *     Python side calls it before NumPy's BLAS runs a product, whose own threads need the cores. Without
 *     it, float32 decoding with the products in OpenBLAS and the rest in C ran 10% slower than NumPy
 *     alone (Zen 3, 2 threads: 44-46 against 49-51 tok/s; with the workers asleep, 51-52).
 *   - mg_blas_threads() runs NumPy's OpenBLAS's parallel jobs on this pool (minigpt2/_blas_threads.py hands
 *     it to OpenBLAS): all jobs of a call at the same time, one per thread, one call at a time (see there).
 *   - mg_blas_width() tells the Python side into how many jobs OpenBLAS should split its products: one while
 *     another program crowds our cores (see "Crowded cores" below), else the pool's thread count.
 */
#include "kernels.h"
#include "parallel.h"

#if defined(_WIN32) || defined(MINIGPT2_NO_THREADS)

/* No POSIX threads: everything runs on the calling thread. */
#include <stdlib.h>

static int num_threads = 1;
void mg_set_num_threads(int n) { (void)n; }
int mg_get_num_threads(void) { return num_threads; }
int mg_has_threads(void) { return 0; }
void mg_pool_rest(void) {}
long mg_blas_calls(void) { return 0; }
int mg_blas_width(void) { return 1; }
int mg_blas_reserve(int numjobs) { return numjobs < 1 ? numjobs : 1; }
long mg_blas_crowded_calls(void) { return 0; }
void mg_blas_threads(int sync, mg_blas_dojob dojob, int numjobs, size_t elsize, void *jobdata, int dojob_data)
{
    (void)sync;  /* never installed here (mg_has_threads() is 0): jobs that wait for one another would hang */
    for (int i = 0; i < numjobs; i++)
        dojob(0, (char *)jobdata + (size_t)i * elsize, dojob_data);
}
void mg_parallel_for(long n_items, void (*fn)(void *arg, long item), void *arg)
{
    for (long i = 0; i < n_items; i++)
        fn(arg, i);
}

void *mg_scratch(int slot, size_t bytes)
{
    static void *memory[2];
    static size_t size[2];
    if (bytes > size[slot]) {
        free(memory[slot]);
        memory[slot] = malloc(bytes);
        size[slot] = memory[slot] ? bytes : 0;
    }
    return memory[slot];
}

#else

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define MAX_THREADS 256
#define SPIN_NS 200000L     /* an idle worker spins for 0.2 ms before it sleeps */
#define CALLER_SPIN_NS 20000L  /* the caller spins for 0.02 ms for the last items, then sleeps */

typedef void (*item_fn)(void *arg, long item);

/* Atomic fields, because a worker that fell far behind may read a slot while a later job is
 * being written into it; it then fails to claim anything, but the read itself must be legal. */
struct job {
    _Atomic(item_fn) fn;
    _Atomic(void *) arg;
    atomic_long n_items;
    atomic_int workers;  /* how many workers may join (num_threads - 1 when it was posted) */
};

static struct {
    struct job jobs[2];
    _Atomic uint64_t state;  /* job number << 32 | next unclaimed item */
    atomic_long done;        /* items of the current job finished */
    atomic_int sleeping;     /* threads asleep (or about to sleep) on `wake` or `finished` */
    atomic_int resting;      /* 1 from mg_pool_rest() to the next job: idle workers sleep at once */
    pthread_mutex_t lock;
    pthread_cond_t wake;     /* workers wait here for a job */
    pthread_cond_t finished; /* the caller waits here for the last items */
    pthread_mutex_t submit;  /* one job at a time; a second caller runs its job alone */
    int started;             /* workers running */
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER,
          .finished = PTHREAD_COND_INITIALIZER, .submit = PTHREAD_MUTEX_INITIALIZER};

static int num_threads = 1;

/* The job number current when worker k was created (its creator holds pool.submit, so no job is posted
 * meanwhile). Reading the number in the worker instead, one starting late would take a job posted since
 * for one it has seen, and never join it. */
static uint32_t first_seen[MAX_THREADS];

/* 0 on any thread that posts jobs, k + 1 on worker k: which of OpenBLAS's per-thread buffers a thread
 * uses when it runs one of OpenBLAS's jobs (mg_blas_threads). */
static _Thread_local int thread_index;

static long long now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static inline void relax(void)  /* tell the core we are spinning */
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Claim the next item of job `number`; -1 if it has none left (or is no longer current). */
static long claim(uint32_t number)
{
    uint64_t s = atomic_load(&pool.state);
    for (;;) {
        uint32_t item = (uint32_t)s;
        if ((uint32_t)(s >> 32) != number || item >= atomic_load(&pool.jobs[number % 2].n_items))
            return -1;
        if (atomic_compare_exchange_weak(&pool.state, &s, s + 1))
            return item;
    }
}

/* Run items of job `number` until none are left. */
static void work_on(uint32_t number)
{
    struct job *job = &pool.jobs[number % 2];
    long item;
    while ((item = claim(number)) >= 0) {
        atomic_load_explicit(&job->fn, memory_order_relaxed)(atomic_load_explicit(&job->arg, memory_order_relaxed), item);
        if (atomic_fetch_add(&pool.done, 1) + 1 == atomic_load(&job->n_items) && atomic_load(&pool.sleeping) > 0) {
            pthread_mutex_lock(&pool.lock);  /* the caller may be asleep: wake it */
            pthread_cond_broadcast(&pool.finished);
            pthread_mutex_unlock(&pool.lock);
        }
    }
}

static void *worker_main(void *arg)
{
    int index = (int)(intptr_t)arg;
    thread_index = index + 1;
    uint32_t seen = first_seen[index];  /* (the job current when it was created: any later one is new to it) */
    for (;;) {
        /* Wait for a new job: spin a little, then sleep. */
        uint32_t number;
        long long spin_until = now_ns() + SPIN_NS;
        int spins = 0;
        while ((number = (uint32_t)(atomic_load(&pool.state) >> 32)) == seen) {
            relax();
            if (++spins > 512 && spins % 16 == 0)
                sched_yield();  /* waiting longer than usual: let any other thread that wants this core run */
            if (atomic_load_explicit(&pool.resting, memory_order_relaxed)
                || (spins % 256 == 0 && now_ns() > spin_until)) {
                pthread_mutex_lock(&pool.lock);
                atomic_fetch_add(&pool.sleeping, 1);
                while ((uint32_t)(atomic_load(&pool.state) >> 32) == seen)
                    pthread_cond_wait(&pool.wake, &pool.lock);
                atomic_fetch_sub(&pool.sleeping, 1);
                pthread_mutex_unlock(&pool.lock);
            }
        }
        seen = number;
        if (index < atomic_load(&pool.jobs[number % 2].workers))
            work_on(number);
    }
    return NULL;
}

/* fork() copies only the calling thread: the child must not count on the parent's workers. */
static void before_fork(void)
{
    pthread_mutex_lock(&pool.submit);  /* no job is running while the process forks */
}

static void after_fork_in_parent(void)
{
    pthread_mutex_unlock(&pool.submit);
}

static void after_fork_in_child(void)
{
    pool.started = 0;
    atomic_store(&pool.sleeping, 0);
    pthread_mutex_init(&pool.lock, NULL);  /* a worker of the parent may have held it */
    pthread_cond_init(&pool.wake, NULL);
    pthread_cond_init(&pool.finished, NULL);
    pthread_mutex_unlock(&pool.submit);
}

static void register_fork_handlers(void)
{
    pthread_atfork(before_fork, after_fork_in_parent, after_fork_in_child);
}

/* Start workers until there are `n` (at most MAX_THREADS - 1: first_seen's size); returns how many are running. */
static int start_workers(int n)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, register_fork_handlers);
    while (pool.started < n && pool.started < MAX_THREADS - 1) {
        pthread_t thread;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        first_seen[pool.started] = (uint32_t)(atomic_load(&pool.state) >> 32);
        int failed = pthread_create(&thread, &attr, worker_main, (void *)(intptr_t)pool.started);
        pthread_attr_destroy(&attr);
        if (failed)
            break;  /* fewer threads than asked for still works */
        pool.started++;
    }
    return pool.started;
}

/* -- per-thread scratch ---------------------------------------------------------------------- */

struct scratch {
    void *memory[MG_SCRATCH_SLOTS];
    size_t size[MG_SCRATCH_SLOTS];
};

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void free_scratch(void *p)  /* runs when a thread that used scratch memory exits */
{
    struct scratch *s = p;
    for (int slot = 0; slot < MG_SCRATCH_SLOTS; slot++)
        free(s->memory[slot]);
    free(s);
}

static void make_scratch_key(void)
{
    pthread_key_create(&scratch_key, free_scratch);
}

void *mg_scratch(int slot, size_t bytes)
{
    pthread_once(&scratch_once, make_scratch_key);
    struct scratch *s = pthread_getspecific(scratch_key);
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s || pthread_setspecific(scratch_key, s) != 0) {
            free(s);
            return NULL;
        }
    }
    if (bytes > s->size[slot]) {
        free(s->memory[slot]);
        s->memory[slot] = malloc(bytes);
        s->size[slot] = s->memory[slot] ? bytes : 0;
    }
    return s->memory[slot];
}

/* -- the pool --------------------------------------------------------------------------------- */

void mg_set_num_threads(int n)
{
    num_threads = n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : n;
}

int mg_get_num_threads(void)
{
    return num_threads;
}

int mg_has_threads(void)
{
    return 1;
}

void mg_pool_rest(void)
{
    atomic_store_explicit(&pool.resting, 1, memory_order_relaxed);
}

/* Post job (fn, arg, n_items) for `workers` workers, run items on the calling thread too, and return when
 * every item is done. The caller holds pool.submit. */
static void run_job(long n_items, item_fn fn, void *arg, int workers)
{
    /* Post the job: describe it in its slot, then announce it by moving `state` to (number, 0). */
    uint32_t number = (uint32_t)(atomic_load(&pool.state) >> 32) + 1;
    struct job *job = &pool.jobs[number % 2];
    atomic_store_explicit(&job->fn, fn, memory_order_relaxed);
    atomic_store_explicit(&job->arg, arg, memory_order_relaxed);
    atomic_store_explicit(&job->n_items, n_items, memory_order_relaxed);
    atomic_store_explicit(&job->workers, workers, memory_order_relaxed);
    atomic_store(&pool.done, 0);
    atomic_store_explicit(&pool.resting, 0, memory_order_relaxed);
    atomic_store(&pool.state, (uint64_t)number << 32);
    if (atomic_load(&pool.sleeping) > 0) {
        pthread_mutex_lock(&pool.lock);
        pthread_cond_broadcast(&pool.wake);
        pthread_mutex_unlock(&pool.lock);
    }

    /* Work like a worker, then wait for items others are still running: spin briefly, then
     * sleep, so that a worker the system took off its core can have ours. */
    work_on(number);
    long long spin_until = now_ns() + CALLER_SPIN_NS;
    int spins = 0;
    while (atomic_load(&pool.done) < n_items) {
        relax();
        if (++spins % 256 == 0 && now_ns() > spin_until) {
            pthread_mutex_lock(&pool.lock);
            atomic_fetch_add(&pool.sleeping, 1);
            while (atomic_load(&pool.done) < n_items)
                pthread_cond_wait(&pool.finished, &pool.lock);
            atomic_fetch_sub(&pool.sleeping, 1);
            pthread_mutex_unlock(&pool.lock);
        }
    }
}

void mg_parallel_for(long n_items, void (*fn)(void *arg, long item), void *arg)
{
    int workers = (n_items < num_threads ? (int)n_items : num_threads) - 1;
    if (workers < 1 || n_items > (long)UINT32_MAX || pthread_mutex_trylock(&pool.submit) != 0) {
        for (long i = 0; i < n_items; i++)  /* one thread (or the pool is busy with another caller) */
            fn(arg, i);
        return;
    }
    int started = start_workers(workers);  /* (all the pool has: more than asked, after a larger count) */
    run_job(n_items, fn, arg, started < workers ? started : workers);
    pthread_mutex_unlock(&pool.submit);
}

/* -- OpenBLAS's jobs on this pool ------------------------------------------------------------ */

struct blas_job {
    mg_blas_dojob dojob;
    char *jobdata;
    size_t elsize;
    int dojob_data;
    atomic_llong cpu_ns;  /* CPU time the threads got while running the jobs */
};

/* CPU time of the calling thread, in ns (0 where the system cannot tell: the pool then never finds it crowded) */
static long long thread_cpu_ns(void)
{
#ifdef CLOCK_THREAD_CPUTIME_ID
    struct timespec t;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t) == 0)
        return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
#endif
    return 0;
}

static void run_blas_item(void *arg, long item)
{
    struct blas_job *b = arg;
    long long began = thread_cpu_ns();
    b->dojob(thread_index, b->jobdata + (size_t)item * b->elsize, b->dojob_data);
    atomic_fetch_add(&b->cpu_ns, thread_cpu_ns() - began);
}

/* -- Crowded cores ------------------------------------------------------------------------------
 * OpenBLAS splits a product into equal jobs that wait for one another, so a call goes at the pace of its
 * slowest thread. When another program keeps one of our cores busy, the thread sharing that core gets about half
 * of it, and two threads are slower than one (measured on a 2-core Intel Xeon beside a busy loop: a 512-token
 * prompt at 0.80x the speed of one thread; docs/kernels.md). Our own kernels hand out small items from a shared
 * counter, so they lose nothing; OpenBLAS's split is fixed. So the pool watches: for every call of OpenBLAS's
 * jobs it adds up the CPU time its threads got against the time they were there for (threads x wall clock).
 * When, over CROWD_WINDOW_NS of that, they got less than CROWD_SHARE of it, mg_blas_width() says 1 for a pause;
 * then OpenBLAS splits its products again, and the next window decides anew. The pause starts at half a second and
 * doubles while window after window is crowded, up to 8 s, so that a neighbour that stays busy costs a window of
 * slow products rarely; an uncrowded window sets it back. On idle cores the threads get 94-100% (waking a sleeping
 * worker is the loss); beside a busy loop on one of two cores, about 50-75%. */
#define CROWD_WINDOW_NS 40000000LL     /* 40 ms of threads x wall clock: a few prompt products */
#define CROWD_SHARE 0.85
#define CROWD_PAUSE_NS 500000000LL     /* the first pause: half a second of one thread */
#define CROWD_PAUSE_MAX_NS 8000000000LL

static long long window_cpu, window_asked;  /* this window's sums (written with pool.submit held) */
static long long pause_ns = CROWD_PAUSE_NS; /* the next pause (written with pool.submit held) */
static atomic_llong one_thread_until;       /* now_ns() before which mg_blas_width() says 1 */
static atomic_long blas_calls, crowded_calls;

static void note_share(long long cpu, long long asked)
{
    window_cpu += cpu;
    window_asked += asked;
    if (window_asked < CROWD_WINDOW_NS)
        return;
    if ((double)window_cpu < CROWD_SHARE * (double)window_asked) {
        atomic_fetch_add(&crowded_calls, 1);
        atomic_store(&one_thread_until, now_ns() + pause_ns);
        pause_ns = pause_ns < CROWD_PAUSE_MAX_NS / 2 ? 2 * pause_ns : CROWD_PAUSE_MAX_NS;
    } else {
        pause_ns = CROWD_PAUSE_NS;
    }
    window_cpu = window_asked = 0;
}

int mg_blas_width(void)
{
    return now_ns() < atomic_load(&one_thread_until) ? 1 : num_threads;
}

long mg_blas_crowded_calls(void)
{
    return atomic_load(&crowded_calls);
}

long mg_blas_calls(void)
{
    return atomic_load(&blas_calls);
}

int mg_blas_reserve(int numjobs)
{
    pthread_mutex_lock(&pool.submit);
    int can = start_workers(numjobs - 1) + 1;
    pthread_mutex_unlock(&pool.submit);
    return can < numjobs ? can : numjobs;
}

void mg_blas_threads(int sync, mg_blas_dojob dojob, int numjobs, size_t elsize, void *jobdata, int dojob_data)
{
    (void)sync;  /* OpenBLAS always asks to wait (1), as this does */
    atomic_fetch_add(&blas_calls, 1);
    if (numjobs <= 1) {
        if (numjobs == 1)
            dojob(0, jobdata, dojob_data);
        return;
    }
    /* The jobs of one call wait for one another (OpenBLAS's threaded products share packed panels), so all
     * must run at the same time, each on its own thread and with its own buffer (OpenBLAS's, one per thread
     * index): one call at a time, enough workers started, the job's items one per thread. */
    struct blas_job b = {dojob, jobdata, elsize, dojob_data, 0};
    pthread_mutex_lock(&pool.submit);
    if (start_workers(numjobs - 1) < numjobs - 1) {
        fputs("minigpt2: could not start the threads NumPy's BLAS asked for\n", stderr);
        abort();  /* jobs already waiting for one another would wait forever */
    }
    long long began = now_ns();
    run_job(numjobs, run_blas_item, &b, numjobs - 1);
    note_share(atomic_load(&b.cpu_ns), (now_ns() - began) * numjobs);
    pthread_mutex_unlock(&pool.submit);
}

#endif
