/*
 * table_data.c: where an SSTable's data blocks come from when they are read (table.h): in place
 * in the table's mapping, each block's CRC checked on its first read since open (a bit per
 * block in kw_table.verified), or through the data tier in the "cached" data_reads mode; and the
 * resident-only variant for reads that must not wait for the disk. Filters and indexes are in
 * table_read.c. docs/internals/cache.md §3a has the design and its figures.
 */
#include "table.h"

#include <inttypes.h>
#include <string.h>

#include "block.h"

/* A cached data block, in a buffer of the block cache's pool (kw_block_cache_alloc). Its
 * charge is the header and the block (the pool's rounding of the buffer up to its class, 128
 * bytes on average, is not charged, as malloc's own rounding never was) plus the entry. */
typedef struct {
    kw_block_cache *bc; /* whose pool takes the buffer back */
    size_t capacity;    /* the buffer's size (its pool class) */
    size_t size;
    char data[];
} block_copy;

static void free_block(void *v)
{
    block_copy *b = v;
    kw_block_cache_recycle(b->bc, b, b->capacity);
}

/* The data tier when the table reads through it (cached mode, tier budget > 0), else NULL. */
static kw_cache *data_tier(const kw_table *t)
{
    if (t->cache == NULL || kw_block_cache_data_reads(t->cache) != KW_DATA_READS_CACHED)
        return NULL;
    return kw_cache_capacity(t->cache->data) > 0 ? t->cache->data : NULL;
}

/* ---- data blocks ----------------------------------------------------------------------------- */


static bool block_verified(const kw_table *t, uint32_t i)
{
    return (__atomic_load_n(&t->verified[i / 64], __ATOMIC_RELAXED) >> (i % 64)) & 1;
}

/* Block i in the map, its CRC checked unless a read since open checked it. The bit is set only
 * after a good check; two readers racing on a new block both check it, which is harmless. */
static kiwi_status block_in_place(kw_table *t, uint32_t i, uint64_t off, uint64_t size,
                                  char **errmsg)
{
    if (block_verified(t, i))
        return KIWI_OK;
    kiwi_status st = kw_table_check_block(t, NULL, off, size, "block", errmsg);
    if (st != KIWI_OK)
        return st;
    uint64_t bit = UINT64_C(1) << (i % 64);
    if (!(__atomic_fetch_or(&t->verified[i / 64], bit, __ATOMIC_RELAXED) & bit) && t->cache)
        kw_block_cache_count_verified(t->cache, 1);
    return KIWI_OK;
}

/* The cached mode's tier: a hit, or on a miss (with fill_cache, when the tier can hold it) a
 * checked copy inserted. NULL: read the map. */
static kiwi_status block_through_tier(kw_table *t, kw_cache *c, uint64_t off, uint64_t size,
                                      bool fill_cache, kw_block_ref *ref, kw_cache_result *res,
                                      char **errmsg)
{
    ref->handle = kw_cache_lookup(c, t->number, off);
    *res = ref->handle != NULL ? KW_CACHE_HIT : KW_CACHE_MISS;
    size_t need = sizeof(block_copy) + size, cap;
    if (ref->handle != NULL || !fill_cache ||
        need + kw_cache_entry_overhead() > kw_cache_capacity(c))
        return KIWI_OK;
    block_copy *v = kw_block_cache_alloc(t->cache, need, &cap);
    v->bc = t->cache;
    v->capacity = cap;
    v->size = size;
    memcpy(v->data, t->map.data + off, size); /* checked on the copy: the tier holds those bytes */
    kiwi_status st = kw_table_check_block(t, v->data, off, size, "block", errmsg);
    if (st == KIWI_OK)
        ref->handle =
            kw_cache_insert(c, t->number, off, v, need + kw_cache_entry_overhead(), free_block);
    if (ref->handle == NULL) /* corrupt (never cached), or the tier shrank meanwhile */
        kw_block_cache_recycle(t->cache, v, cap);
    return st;
}

static kiwi_status check_block_bounds(const kw_table *t, uint32_t i, uint64_t off, uint64_t size,
                                      char **errmsg)
{
    if (off > t->data_end || size > t->data_end - off || i >= t->props.data_blocks)
        return kw_error(errmsg, KIWI_CORRUPTION,
                        "%s: block %" PRIu32 " at offset %" PRIu64 ": size %" PRIu64
                        " runs past the data blocks",
                        t->path, i, off, size);
    return KIWI_OK;
}

/* The block in ref->handle's copy, or else in place (checked once); parsed into ref->block. */
static kiwi_status finish_block(kw_table *t, uint32_t i, uint64_t off, uint64_t size,
                                kw_block_ref *ref, char **errmsg)
{
    kiwi_status st = KIWI_OK;
    kw_slice contents = kw_slice_make(t->map.data + off, size);
    if (ref->handle != NULL) {
        const block_copy *v = kw_cache_value(ref->handle);
        contents = kw_slice_make(v->data, v->size);
    } else {
        st = block_in_place(t, i, off, size, errmsg);
    }
    if (st == KIWI_OK)
        st = kw_block_parse(&ref->block, contents, t->path, off, "block", errmsg);
    if (st != KIWI_OK && ref->handle != NULL && t->cache != NULL) { /* a handle implies a cache */
        kw_cache_release(t->cache->data, ref->handle);
        ref->handle = NULL;
    }
    return st;
}

/* Data block i (table.h): in place by default, through the data tier in the cached mode. On
 * error nothing is held. */
kiwi_status kw_table_block_acquire(kw_table *t, uint32_t i, uint64_t off, uint64_t size,
                                   bool fill_cache, kw_block_ref *ref, kw_cache_result *res,
                                   char **errmsg)
{
    ref->handle = NULL;
    *res = KW_CACHE_MAPPED;
    kiwi_status st = check_block_bounds(t, i, off, size, errmsg);
    bool cached = t->cache != NULL && kw_block_cache_data_reads(t->cache) == KW_DATA_READS_CACHED;
    kw_cache *c = data_tier(t);
    if (cached)
        *res = KW_CACHE_OFF; /* the tier's budget is 0: read as without a cache */
    if (st == KIWI_OK && c != NULL)
        st = block_through_tier(t, c, off, size, fill_cache, ref, res, errmsg);
    return st == KIWI_OK ? finish_block(t, i, off, size, ref, errmsg) : st;
}

/* ---- reads that must not wait for the disk ---------------------------------------------------- */

kiwi_status kw_table_block_acquire_resident(kw_table *t, uint32_t i, uint64_t off,
                                            uint64_t size, kw_block_ref *ref,
                                            kw_cache_result *res, char **errmsg)
{
    ref->handle = NULL;
    *res = KW_CACHE_MAPPED;
    kiwi_status st = check_block_bounds(t, i, off, size, errmsg);
    if (st != KIWI_OK)
        return st;
    kw_cache *c = data_tier(t);
    if (c != NULL) {
        ref->handle = kw_cache_lookup(c, t->number, off);
        *res = ref->handle != NULL ? KW_CACHE_HIT : KW_CACHE_MISS;
    }
    if (ref->handle == NULL && !kw_mmap_resident(&t->map, off, size + KW_TABLE_TRAILER_SIZE))
        return KIWI_BUSY;
    return finish_block(t, i, off, size, ref, errmsg);
}


