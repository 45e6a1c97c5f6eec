/*
 * arena.h: a bump allocator for memtable nodes, keys and values.
 *
 * Memory is carved from large blocks and freed all at once by kw_arena_destroy. kw_arena_alloc is
 * thread-safe (concurrent memtable inserts allocate in parallel) and returns 8-byte-aligned
 * memory; a request larger than a quarter block gets its own block. Allocation never fails (it
 * aborts on exhaustion, like kw_malloc).
 */
#ifndef KW_ARENA_H
#define KW_ARENA_H

#include <stddef.h>

typedef struct kw_arena kw_arena;

kw_arena *kw_arena_create(size_t block_size); /* 0 means the default (64 KiB) */
void *kw_arena_alloc(kw_arena *a, size_t n);   /* thread-safe, 8-byte aligned, n > 0 */
size_t kw_arena_memory_usage(const kw_arena *a); /* bytes allocated from the system, thread-safe */
void kw_arena_destroy(kw_arena *a);  /* its 2 MiB blocks go to the pool below, while it has room */

/* The process-wide pool of 2 MiB blocks that destroyed arenas leave for the next ones (at most
 * 128 MiB, kept across db closes; arena.c explains why): its bytes, and freeing all of it (tests
 * start from an empty pool with it). Thread-safe. */
size_t kw_arena_pool_bytes(void);
void kw_arena_pool_trim(void);

#endif /* KW_ARENA_H */
