/*
 * arena.c: the memtable's bump allocator.
 *
 * Concurrency model: the arena's `current` block is published through an atomic pointer, and
 * each block carries its own atomic `used` counter. An allocation is one atomic fetch_add on the
 * current block's counter (the fast path, no lock). When the block is full, the allocating thread
 * takes the mutex, installs a fresh block (carving its own request first) and publishes it.
 *
 * Why this is safe without the lock: blocks are never freed or reused before kw_arena_destroy,
 * so a thread that loaded a block that has since been replaced only bumps that old block's
 * counter past its end, sees the overflow and retries. Every byte handed out is inside exactly
 * one successful fetch_add range, so no two allocations overlap. The counter cannot wrap: each
 * failed attempt adds at most block_size/4 bytes.
 *
 * Memory accounting (`usage`) is an atomic sum of the bytes of every block malloc'd, readable at
 * any time without the lock.
 *
 * Huge pages: once an arena holds HUGE_AFTER bytes, its new blocks are 2 MiB, aligned to 2 MiB
 * and advised MADV_HUGEPAGE (transparent huge pages in "madvise" mode, Debian's default). A
 * random insert into a big skip list is bound by the misses of its ~30 node visits, and in a VM
 * each TLB miss is a two-dimensional page walk: with 2 MiB pages a 64 MiB memtable needs 32 TLB
 * entries instead of 16k. Measured on a 1M-entry memtable: 2.7-2.95 us per insert against
 * 3.4-4.4 us with 4 KiB pages (same run, alternating). Small arenas (dev mode's memtables) never
 * reach HUGE_AFTER and keep 64 KiB blocks. Where THP is off, the advice does nothing.
 *
 * The pool of huge blocks (process-wide, the one piece of global mutable state here, under its
 * own mutex): kw_arena_destroy gives its huge blocks to the pool, up to POOL_MAX of them, and a
 * new huge block comes from the pool when it has one. A fresh huge page costs a page fault that
 * zeroes 2 MiB in the kernel: in a fill it was 13-20% of the writer's time (perf of fillbatch:
 * clear_page_erms under new_block_locked), paid again for every memtable, since a freed 2 MiB
 * block goes back to the kernel. With the pool a memtable reuses the blocks of the one flushed
 * before it, and a db opened after another closed reuses the closed one's, as malloc's free
 * lists give a peer's freed 4 KiB arena blocks back without the kernel. The pool holds two prod
 * memtables: the active memtable fills while the previous one is being flushed, so with room for
 * one it ran dry for part of every fill (and on this VM a fresh huge page costs 4-7 ms, the
 * host backing it). Nothing needs zeroed memory: the skip list and the memtable write every
 * byte they read. The pool outlives closes (bounded: 128 MiB, shown in stats as
 * memory.memtable_pool); kw_arena_pool_trim frees it.
 */
#include "arena.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "common.h"

#define ARENA_DEFAULT_BLOCK (64u * 1024u)
#define HUGE_PAGE ((size_t)2 << 20)
#define HUGE_AFTER ((size_t)4 << 20)
#define ARENA_ALIGN 8u
#define POOL_MAX 64u /* huge blocks kept for reuse: 128 MiB, two prod memtables */

typedef struct arena_block {
    struct arena_block *next; /* all blocks, newest first; guarded by the arena's mutex */
    size_t size;              /* bytes in data[] */
    bool huge;                /* one huge page (pooled at destroy), not malloc'd */
    _Atomic size_t used;      /* bytes handed out (may exceed size after a failed attempt) */
    _Alignas(16) char data[];
} arena_block;

struct kw_arena {
    size_t block_size;
    _Atomic(arena_block *) current; /* the block the fast path bumps; NULL before the first */
    _Atomic size_t usage;           /* bytes malloc'd for blocks, headers included */
    pthread_mutex_t mu;             /* guards `blocks` and the replacement of `current` */
    arena_block *blocks;
};

kw_arena *kw_arena_create(size_t block_size)
{
    kw_arena *a = kw_calloc(1, sizeof *a);
    if (block_size == 0)
        block_size = ARENA_DEFAULT_BLOCK;
    if (block_size < 4 * ARENA_ALIGN)
        block_size = 4 * ARENA_ALIGN;
    a->block_size = (block_size + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    atomic_init(&a->current, NULL);
    atomic_init(&a->usage, 0);
    pthread_mutex_init(&a->mu, NULL);
    a->blocks = NULL;
    return a;
}

/* ---- the pool of huge blocks ---- */

static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static arena_block *pool_head; /* guarded by pool_mu, linked through next */
static size_t pool_count;      /* guarded by pool_mu */

static arena_block *pool_take(void)
{
    pthread_mutex_lock(&pool_mu);
    arena_block *b = pool_head;
    if (b != NULL) {
        pool_head = b->next;
        pool_count--;
    }
    pthread_mutex_unlock(&pool_mu);
    return b;
}

/* Keeps b for reuse; false when the pool is full (the caller frees it). */
static bool pool_give(arena_block *b)
{
    pthread_mutex_lock(&pool_mu);
    bool kept = pool_count < POOL_MAX;
    if (kept) {
        b->next = pool_head;
        pool_head = b;
        pool_count++;
    }
    pthread_mutex_unlock(&pool_mu);
    return kept;
}

size_t kw_arena_pool_bytes(void)
{
    pthread_mutex_lock(&pool_mu);
    size_t n = pool_count;
    pthread_mutex_unlock(&pool_mu);
    return n * HUGE_PAGE;
}

void kw_arena_pool_trim(void)
{
    pthread_mutex_lock(&pool_mu);
    arena_block *b = pool_head;
    pool_head = NULL;
    pool_count = 0;
    pthread_mutex_unlock(&pool_mu);
    while (b != NULL) {
        arena_block *next = b->next;
        free(b);
        b = next;
    }
}

/* A block of exactly one huge page (header included): from the pool, else new; NULL if that
 * memory is not available (the caller falls back to malloc). */
static arena_block *huge_block(void)
{
    arena_block *b = pool_take();
    if (b != NULL)
        return b;
    void *p = NULL;
    if (posix_memalign(&p, HUGE_PAGE, HUGE_PAGE) != 0)
        return NULL;
    (void)madvise(p, HUGE_PAGE, MADV_HUGEPAGE); /* advice only: EINVAL without THP is fine */
    return p;
}

/* Mallocs a block with `used` bytes already claimed and links it in; huge: one huge page
 * (`size` is then what fits in it). Caller holds a->mu. */
static arena_block *new_block_locked(kw_arena *a, size_t size, size_t used, bool huge)
{
    arena_block *b = huge ? huge_block() : NULL;
    bool got_huge = b != NULL;
    if (got_huge)
        size = HUGE_PAGE - sizeof *b;
    else
        b = kw_malloc(sizeof *b + size);
    b->size = size;
    b->huge = got_huge;
    atomic_init(&b->used, used);
    b->next = a->blocks;
    a->blocks = b;
    atomic_fetch_add_explicit(&a->usage, sizeof *b + size, memory_order_relaxed);
    return b;
}

/* Claims n bytes (a multiple of ARENA_ALIGN) from b, or returns NULL if b lacks room. */
static void *try_bump(arena_block *b, size_t n)
{
    if (b == NULL)
        return NULL;
    size_t off = atomic_fetch_add_explicit(&b->used, n, memory_order_relaxed);
    if (off > b->size || b->size - off < n)
        return NULL;
    return b->data + off;
}

static void *alloc_slow(kw_arena *a, size_t n)
{
    pthread_mutex_lock(&a->mu);
    void *p;
    if (n > a->block_size / 4) {
        /* Big: a block of its own; the current block keeps serving small requests. */
        p = new_block_locked(a, n, n, false)->data;
    } else {
        /* Another thread may have installed a fresh block while we waited. */
        p = try_bump(atomic_load_explicit(&a->current, memory_order_acquire), n);
        if (p == NULL) {
            bool huge = atomic_load_explicit(&a->usage, memory_order_relaxed) >= HUGE_AFTER &&
                        a->block_size <= HUGE_PAGE / 4;
            arena_block *b = new_block_locked(a, a->block_size, n, huge);
            atomic_store_explicit(&a->current, b, memory_order_release);
            p = b->data;
        }
    }
    pthread_mutex_unlock(&a->mu);
    return p;
}

void *kw_arena_alloc(kw_arena *a, size_t n)
{
    if (n == 0)
        n = 1;
    if (n > SIZE_MAX - ARENA_ALIGN)
        n = SIZE_MAX - ARENA_ALIGN; /* kw_malloc will abort on it */
    n = (n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    if (n <= a->block_size / 4) {
        void *p = try_bump(atomic_load_explicit(&a->current, memory_order_acquire), n);
        if (p != NULL)
            return p;
    }
    return alloc_slow(a, n);
}

size_t kw_arena_memory_usage(const kw_arena *a)
{
    return atomic_load_explicit(&a->usage, memory_order_relaxed);
}

void kw_arena_destroy(kw_arena *a)
{
    if (a == NULL)
        return;
    arena_block *b = a->blocks;
    while (b != NULL) {
        arena_block *next = b->next;
        if (!b->huge || !pool_give(b))
            free(b);
        b = next;
    }
    pthread_mutex_destroy(&a->mu);
    free(a);
}
