/*
 * test_arena.c: the bump allocator: 8-byte alignment, big requests in their own blocks, memory
 * accounting, and 4 threads allocating at once, each filling its chunks with its own pattern and
 * then checking that no other thread's chunk overwrote it (no two allocations overlap); past
 * 4 MiB, 2 MiB huge-page blocks, alone and under the same concurrent load.
 */
#include <pthread.h>
#include <stdint.h>

#include "arena.h"
#include "ctest.h"

static void test_alignment(void)
{
    kw_arena *a = kw_arena_create(0);
    for (size_t n = 1; n < 200; n++) {
        char *p = kw_arena_alloc(a, n);
        CHECK(((uintptr_t)p & 7) == 0);
        memset(p, 0x5A, n); /* ASan: the whole request is usable */
    }
    kw_arena_destroy(a);
}

static void test_usage_accounting(void)
{
    kw_arena *a = kw_arena_create(4096);
    CHECK_EQ_U64(kw_arena_memory_usage(a), 0); /* blocks are allocated lazily */
    kw_arena_alloc(a, 16);
    size_t one_block = kw_arena_memory_usage(a);
    CHECK(one_block >= 4096 && one_block < 4096 + 256); /* one block plus its header */
    /* Filling the rest of the block costs nothing more. */
    for (int i = 0; i < 4096 / 16 - 1; i++)
        kw_arena_alloc(a, 16);
    CHECK_EQ_U64(kw_arena_memory_usage(a), one_block);
    /* The next small request opens a second block. */
    kw_arena_alloc(a, 16);
    CHECK_EQ_U64(kw_arena_memory_usage(a), 2 * one_block);
    kw_arena_destroy(a);
}

static void test_big_allocations(void)
{
    kw_arena *a = kw_arena_create(4096);
    char *small = kw_arena_alloc(a, 100);
    size_t before = kw_arena_memory_usage(a);
    /* > block/4: a block of its own, sized to the request. */
    char *big = kw_arena_alloc(a, 1025);
    size_t grown = kw_arena_memory_usage(a) - before;
    CHECK(grown >= 1025 && grown < 1025 + 256);
    CHECK(((uintptr_t)big & 7) == 0);
    memset(big, 0x11, 1025);
    /* The current block still serves small requests right after the first one. */
    char *small2 = kw_arena_alloc(a, 8);
    CHECK(small2 == small + 104);
    /* A request far larger than the block size. */
    char *huge = kw_arena_alloc(a, 1 << 20);
    memset(huge, 0x22, 1 << 20);
    CHECK(kw_arena_memory_usage(a) >= before + 1025 + (1 << 20));
    CHECK(big[0] == 0x11 && big[1024] == 0x11);
    kw_arena_destroy(a);
}

static void test_contiguous_small(void)
{
    /* Within one block, consecutive allocations are adjacent (rounded up to 8). */
    kw_arena *a = kw_arena_create(0);
    char *p = kw_arena_alloc(a, 3);
    char *q = kw_arena_alloc(a, 9);
    char *r = kw_arena_alloc(a, 8);
    CHECK(q == p + 8);
    CHECK(r == q + 16);
    kw_arena_destroy(a);
}

enum { THREADS = 4, PER_THREAD = 20000 };

typedef struct {
    kw_arena *arena;
    int id;
    unsigned char *ptrs[PER_THREAD];
    size_t sizes[PER_THREAD];
} worker;

static unsigned char pattern(int id, size_t i)
{
    return (unsigned char)(id * 61 + i * 7 + 1);
}

static void *alloc_worker(void *arg)
{
    worker *w = arg;
    uint32_t rnd = 0x9E3779B9u * (uint32_t)(w->id + 1);
    for (size_t i = 0; i < PER_THREAD; i++) {
        rnd = rnd * 1664525u + 1013904223u;
        /* Mostly small, now and then bigger than a quarter block. */
        size_t n = (rnd >> 8) % 97 == 0 ? 300 + (rnd >> 16) % 600 : 1 + (rnd >> 16) % 64;
        unsigned char *p = kw_arena_alloc(w->arena, n);
        memset(p, pattern(w->id, i), n);
        w->ptrs[i] = p;
        w->sizes[i] = n;
    }
    return NULL;
}

typedef struct {
    uintptr_t start, end;
} range;

static int compare_ranges(const void *x, const void *y)
{
    const range *a = x, *b = y;
    return a->start < b->start ? -1 : a->start > b->start;
}

/* Sorts all chunks by address and counts neighbours that overlap. */
static int count_overlaps(const worker *ws, int nworkers)
{
    size_t n = (size_t)nworkers * PER_THREAD;
    range *r = malloc(n * sizeof *r);
    size_t k = 0;
    for (int w = 0; w < nworkers; w++)
        for (size_t i = 0; i < PER_THREAD; i++)
            r[k++] = (range){(uintptr_t)ws[w].ptrs[i], (uintptr_t)ws[w].ptrs[i] + ws[w].sizes[i]};
    qsort(r, n, sizeof *r, compare_ranges);
    int overlaps = 0;
    for (size_t i = 1; i < n; i++)
        overlaps += r[i].start < r[i - 1].end;
    free(r);
    return overlaps;
}

/* Runs THREADS alloc_workers on a and checks every chunk: aligned, its pattern intact, no two
 * overlapping. Returns the bytes requested. */
static size_t run_workers_and_check(kw_arena *a)
{
    static worker ws[THREADS];
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) {
        ws[i].arena = a;
        ws[i].id = i;
        pthread_create(&t[i], NULL, alloc_worker, &ws[i]);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    size_t total = 0;
    int bad = 0;
    for (int w = 0; w < THREADS; w++) {
        for (size_t i = 0; i < PER_THREAD; i++) {
            CHECK(((uintptr_t)ws[w].ptrs[i] & 7) == 0);
            total += ws[w].sizes[i];
            for (size_t j = 0; j < ws[w].sizes[i]; j++) {
                if (ws[w].ptrs[i][j] != pattern(w, i)) {
                    bad++;
                    break;
                }
            }
        }
    }
    CHECK_EQ_U64(bad, 0);
    CHECK_EQ_U64(count_overlaps(ws, THREADS), 0);
    return total;
}

static void test_concurrent_no_overlap(void)
{
    kw_arena *a = kw_arena_create(1024); /* small blocks: many block switches under contention */
    size_t total = run_workers_and_check(a);
    CHECK(kw_arena_memory_usage(a) >= total);
    kw_arena_destroy(a);
}

/* Past 4 MiB an arena grows by 2 MiB blocks (huge pages): usage then grows in steps of exactly
 * 2 MiB, every chunk stays usable and aligned, and chunks do not overlap. */
static void test_huge_blocks(void)
{
    kw_arena *a = kw_arena_create(0);
    const size_t huge = (size_t)2 << 20, chunk = 1000;
    size_t at_threshold = 0, n = 0;
    unsigned char **ptrs = malloc(13000 * sizeof *ptrs);
    while (n < 13000) { /* ~12.4 MiB */
        if (at_threshold == 0 && kw_arena_memory_usage(a) >= ((size_t)4 << 20))
            at_threshold = kw_arena_memory_usage(a);
        ptrs[n] = kw_arena_alloc(a, chunk);
        CHECK(((uintptr_t)ptrs[n] & 7) == 0);
        memset(ptrs[n], (int)(n & 0xFF), chunk);
        n++;
    }
    size_t grown = kw_arena_memory_usage(a) - at_threshold;
    CHECK(at_threshold > 0);
    CHECK(grown > 0 && grown % huge == 0);
    int bad = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < chunk; j += 97)
            bad += ptrs[i][j] != (unsigned char)(i & 0xFF);
    CHECK_EQ_U64(bad, 0);
    free(ptrs);
    kw_arena_destroy(a);
}

/* The concurrent test again, on an arena already past the huge-block threshold. */
static void test_concurrent_huge(void)
{
    kw_arena *a = kw_arena_create(0);
    while (kw_arena_memory_usage(a) < ((size_t)5 << 20))
        kw_arena_alloc(a, 4000);
    run_workers_and_check(a);
    kw_arena_destroy(a);
}

/* Fills an arena with n bytes in 1000-byte pieces, each stamped with `tag`; returns it. */
static kw_arena *filled(size_t n, unsigned char tag, unsigned char ***out, size_t *count)
{
    kw_arena *a = kw_arena_create(0);
    size_t k = n / 1000;
    unsigned char **p = malloc(k * sizeof *p);
    for (size_t i = 0; i < k; i++) {
        p[i] = kw_arena_alloc(a, 1000);
        memset(p[i], tag, 1000);
    }
    *out = p;
    *count = k;
    return a;
}

/* A destroyed arena's 2 MiB blocks wait in the pool (at most 128 MiB) and the next arena takes
 * them; what it writes there is its own; trim frees the pool. */
static void test_huge_block_pool(void)
{
    const size_t huge = (size_t)2 << 20, cap = (size_t)128 << 20;
    kw_arena_pool_trim();
    CHECK_EQ_U64(kw_arena_pool_bytes(), 0);
    unsigned char **p, **q;
    size_t np, nq;
    kw_arena *a = filled((size_t)12 << 20, 0xAA, &p, &np);
    size_t a_huge = kw_arena_memory_usage(a) - ((size_t)4 << 20); /* blocks past the threshold */
    kw_arena_destroy(a);
    free(p);
    size_t pooled = kw_arena_pool_bytes();
    CHECK(pooled > 0 && pooled % huge == 0 && pooled + huge >= a_huge && pooled <= a_huge + huge);
    kw_arena *b = filled((size_t)8 << 20, 0x55, &q, &nq); /* takes from the pool */
    CHECK(kw_arena_pool_bytes() < pooled);
    int bad = 0;
    for (size_t i = 0; i < nq; i++)
        for (size_t j = 0; j < 1000; j += 61)
            bad += q[i][j] != 0x55;
    CHECK_EQ_U64(bad, 0);
    kw_arena_destroy(b);
    free(q);
    /* more than the cap: the pool keeps 128 MiB and frees the rest */
    kw_arena *big = filled((size_t)150 << 20, 1, &p, &np);
    kw_arena_destroy(big);
    free(p);
    CHECK_EQ_U64(kw_arena_pool_bytes(), cap);
    kw_arena_pool_trim();
    CHECK_EQ_U64(kw_arena_pool_bytes(), 0);
}

int main(void)
{
    RUN(test_alignment);
    RUN(test_usage_accounting);
    RUN(test_big_allocations);
    RUN(test_contiguous_small);
    RUN(test_concurrent_no_overlap);
    RUN(test_huge_blocks);
    RUN(test_concurrent_huge);
    RUN(test_huge_block_pool);
    return ctest_summary();
}
