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

#include <stddef.h>

void mg_parallel_for(long n_items, void (*fn)(void *arg, long item), void *arg);

/* Scratch memory of the calling thread, at least `bytes` long, kept from call to call (so a
 * decoding step, about a hundred kernel calls, allocates nothing once it has run once). Each
 * thread has three slots: MG_SCRATCH_JOB for what a kernel needs around its parallel loop,
 * MG_SCRATCH_ITEM for what one item needs, and MG_SCRATCH_INPUT for an input a kernel made before
 * either (int8's rounded activations). Returns NULL if memory runs out. */
enum { MG_SCRATCH_JOB, MG_SCRATCH_ITEM, MG_SCRATCH_INPUT, MG_SCRATCH_SLOTS };
void *mg_scratch(int slot, size_t bytes);

#endif
