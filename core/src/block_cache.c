/*
 * block_cache.c: the three-tier block cache of cache.h (data, index, bloom tiers, each a
 * kw_cache), the pool that recycles the buffers of data-block copies, how data blocks are read
 * (in place from the mapping, or copied through the data tier) and the stats JSON of the tiers.
 * What each tier holds and when is decided by the table reader (table_read.c); cache.md.
 */
#include "cache.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* ---- the block cache ------------------------------------------------------------------------- */

/* The buffer pool: per CPU group, a mutex and one free list per 256-byte size class, linked
 * through each buffer's first word. The thread whose insert evicts a block usually makes the
 * next miss too, so a group's lists stay short and warm. */
#define POOL_GRAIN 256
#define POOL_CLASSES 64 /* buffers up to 16 KiB */
#define POOL_GROUPS 4

typedef struct {
    _Alignas(64) pthread_mutex_t mu;
    void *head[POOL_CLASSES];
    uint8_t count[POOL_CLASSES];
} pool_group;

struct kw_buffer_pool {
    pool_group groups[POOL_GROUPS];
};

static pool_group *my_group(kw_buffer_pool *p)
{
    int cpu = sched_getcpu();
    return &p->groups[(unsigned)(cpu < 0 ? 0 : cpu) % POOL_GROUPS];
}

void *kw_block_cache_alloc(kw_block_cache *bc, size_t size, size_t *capacity)
{
    size_t cls = size == 0 ? 1 : (size + POOL_GRAIN - 1) / POOL_GRAIN;
    if (cls > POOL_CLASSES) {
        *capacity = size;
        return kw_malloc(size);
    }
    *capacity = cls * POOL_GRAIN;
    pool_group *mine = my_group(bc->pool);
    void *buf = NULL;
    for (int i = 0; i < POOL_GROUPS && buf == NULL; i++) { /* mine first: a thread migrates */
        pool_group *g = &bc->pool->groups[(mine - bc->pool->groups + i) % POOL_GROUPS];
        pthread_mutex_lock(&g->mu);
        buf = g->head[cls - 1];
        if (buf != NULL) {
            memcpy(&g->head[cls - 1], buf, sizeof(void *));
            g->count[cls - 1]--;
        }
        pthread_mutex_unlock(&g->mu);
    }
    return buf != NULL ? buf : kw_malloc(*capacity);
}

void kw_block_cache_recycle(kw_block_cache *bc, void *buf, size_t capacity)
{
    size_t cls = capacity / POOL_GRAIN;
    if (buf != NULL && capacity % POOL_GRAIN == 0 && cls >= 1 && cls <= POOL_CLASSES) {
        pool_group *g = my_group(bc->pool);
        pthread_mutex_lock(&g->mu);
        if (g->count[cls - 1] < KW_POOL_KEEP) {
            memcpy(buf, &g->head[cls - 1], sizeof(void *));
            g->head[cls - 1] = buf;
            g->count[cls - 1]++;
            buf = NULL;
        }
        pthread_mutex_unlock(&g->mu);
    }
    free(buf);
}

kw_block_cache *kw_block_cache_create(size_t data_bytes, size_t index_bytes, size_t bloom_bytes)
{
    kw_block_cache *bc = kw_malloc(sizeof *bc);
    bc->data = kw_cache_create(data_bytes);
    bc->index = kw_cache_create(index_bytes);
    bc->bloom = kw_cache_create(bloom_bytes);
    void *mem = NULL;
    if (posix_memalign(&mem, 64, sizeof(kw_buffer_pool)) != 0 || mem == NULL)
        abort(); /* the kw_malloc policy */
    bc->pool = mem;
    memset(bc->pool, 0, sizeof *bc->pool);
    for (int i = 0; i < POOL_GROUPS; i++)
        pthread_mutex_init(&bc->pool->groups[i].mu, NULL);
    bc->data_cached = KW_DATA_READS_IN_PLACE;
    bc->verified = 0;
    return bc;
}

void kw_block_cache_set_data_reads(kw_block_cache *bc, int mode)
{
    __atomic_store_n(&bc->data_cached, mode == KW_DATA_READS_CACHED, __ATOMIC_RELAXED);
}

int kw_block_cache_data_reads(const kw_block_cache *bc)
{
    return __atomic_load_n(&bc->data_cached, __ATOMIC_RELAXED) ? KW_DATA_READS_CACHED
                                                                : KW_DATA_READS_IN_PLACE;
}

void kw_block_cache_count_verified(kw_block_cache *bc, uint64_t n)
{
    __atomic_fetch_add(&bc->verified, n, __ATOMIC_RELAXED);
}

void kw_block_cache_destroy(kw_block_cache *bc)
{
    if (bc == NULL)
        return;
    kw_cache_destroy(bc->data); /* deleters recycle into the pool: destroy it after */
    kw_cache_destroy(bc->index);
    kw_cache_destroy(bc->bloom);
    for (int i = 0; i < POOL_GROUPS; i++) {
        pool_group *g = &bc->pool->groups[i];
        for (int c = 0; c < POOL_CLASSES; c++)
            while (g->head[c] != NULL) {
                void *next;
                memcpy(&next, g->head[c], sizeof next);
                free(g->head[c]);
                g->head[c] = next;
            }
        pthread_mutex_destroy(&g->mu);
    }
    free(bc->pool);
    free(bc);
}

static void tier_json(kw_buf *b, const char *name, const kw_cache *c)
{
    kw_cache_stats s;
    kw_cache_get_stats(c, &s);
    kw_buf_printf(b,
                  "\"%s\":{\"hits\":%llu,\"misses\":%llu,\"inserts\":%llu,\"evictions\":%llu,"
                  "\"rejects\":%llu,\"usage\":%llu,\"pinned\":%llu,\"capacity\":%llu,"
                  "\"entries\":%llu}",
                  name, (unsigned long long)s.hits, (unsigned long long)s.misses,
                  (unsigned long long)s.inserts, (unsigned long long)s.evictions,
                  (unsigned long long)s.rejects, (unsigned long long)s.usage,
                  (unsigned long long)s.pinned, (unsigned long long)s.capacity,
                  (unsigned long long)s.entries);
}

void kw_block_cache_stats_json(const kw_block_cache *bc, kw_buf *out)
{
    kw_buf_push(out, '{');
    tier_json(out, "data", bc->data);
    kw_buf_push(out, ',');
    tier_json(out, "index", bc->index);
    kw_buf_push(out, ',');
    tier_json(out, "bloom", bc->bloom);
    kw_buf_printf(out, ",\"data_reads\":\"%s\",\"verified_blocks\":%llu}",
                  kw_block_cache_data_reads(bc) == KW_DATA_READS_CACHED ? "cached" : "in_place",
                  (unsigned long long)__atomic_load_n(&bc->verified, __ATOMIC_RELAXED));
}
