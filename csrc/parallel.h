/* Sharing work between threads: mg_parallel_for(n, fn, arg) calls fn(arg, i) once for every
 * i in 0 .. n-1, on up to mg_get_num_threads() threads (the caller's among them), and returns
 * when all are done. Different items may run at the same time, so they must write to
 * different places.
 *
 * The items are handed out one at a time from a shared counter, not split into equal shares up
 * front: if another program takes a core away from one of our threads, the other threads simply
 * take more items, instead of all waiting for the slow one. */
#ifndef MINIGPT2_PARALLEL_H
#define MINIGPT2_PARALLEL_H

void mg_parallel_for(long n_items, void (*fn)(void *arg, long item), void *arg);

#endif
