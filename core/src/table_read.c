/*
 * table_read.c: where the index and the filter of an open SSTable (table.h) come from when they
 * are read: a tier of the block cache, the table's lease, or the mapping (data blocks: in
 * table_data.c). Point lookups and the iterator (table_iter.c) read through the functions here;
 * opening, parsing and verification are in table.c. docs/internals/cache.md and sstable.md
 * describe the design.
 *
 * Every cache value made here is a self-contained copy whose bytes were checked (CRC, or every
 * check of open for an index) as they were copied, so a hit needs no check and a value never
 * points into a mapping (a pinned entry may outlive the table that made it). Charges are the
 * bytes allocated for a value plus kw_cache_entry_overhead().
 *
 * The index and the filter of a table (its two "parts") are read, in order of preference:
 *   1. published in the table's lease (cache.h): no lock; uses are counted per batch as hits
 *      (which also refreshes the entry's LRU position);
 *   2. in place in the mapping, when the tier cannot keep the part (larger than 1/KEEP_FRACTION
 *      of the tier) or while the table waits out retry_after() in-place reads after it found
 *      the part gone; counted per batch as misses, and no lock either;
 *   3. through the tier: a lookup (then published), or on a miss the start of the wait, or
 *      after the wait a rebuild or copy, inserted and published. Iterators always start here,
 *      since they pin the index with a handle.
 * Tier off (budget 0): the private index and the filter in the map, as without a cache.
 */
#include "table.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "block.h"
#include "bloom.h"
#include "coding.h"
#include "dbformat.h"

#define KEEP_FRACTION 4 /* a part larger than this fraction of its tier is read in place */

/* A cached filter: one allocation, the filter's bytes after the header. */
typedef struct {
    kw_lease *lease; /* the lease of the table that made it (one reference), or NULL */
    size_t size;
    char data[];
} byte_copy;

static size_t copy_charge(uint64_t size)
{
    return sizeof(byte_copy) + size + kw_cache_entry_overhead();
}

/* Deleters of published parts: unpublish and wait out the lease's readers first. */
static void free_index(void *v)
{
    kw_table_index *ix = v;
    if (ix->lease != NULL) {
        kw_lease_retire(ix->lease, KW_PART_INDEX, ix);
        kw_lease_unref(ix->lease);
    }
    free(ix);
}

static void free_filter(void *v)
{
    byte_copy *c = v;
    if (c->lease != NULL) {
        kw_lease_retire(c->lease, KW_PART_FILTER, c);
        kw_lease_unref(c->lease);
    }
    free(c);
}

/* Copies the block at off to dst and checks the copy (CRC, compression type). REQUIRES: the
 * block lies inside the map (footer handles were checked at open, data block handles are
 * checked by kw_table_block_acquire). */
static kiwi_status copy_checked(const kw_table *t, char *dst, uint64_t off, uint64_t size,
                                const char *kind, char **errmsg)
{
    memcpy(dst, t->map.data + off, size);
    return kw_table_check_block(t, dst, off, size, kind, errmsg);
}

/* ---- tiers and parts ------------------------------------------------------------------------- */

enum { TIER_DATA, TIER_INDEX, TIER_BLOOM };

/* The tier, or NULL without a cache. */
static kw_cache *tier(const kw_table *t, int which)
{
    if (t->cache == NULL)
        return NULL;
    return which == TIER_DATA ? t->cache->data
                              : which == TIER_INDEX ? t->cache->index : t->cache->bloom;
}

static bool is_on(const kw_cache *c)
{
    return c != NULL && kw_cache_capacity(c) > 0;
}

/* Part p's tier and cache key offset. */
static kw_cache *part_tier(const kw_table *t, int p)
{
    return tier(t, p == KW_PART_INDEX ? TIER_INDEX : TIER_BLOOM);
}

static uint64_t part_off(const kw_table *t, int p)
{
    return p == KW_PART_INDEX ? t->meta_off[2] : t->meta_off[0];
}

/* Lease counters: uses of the published part p, and its reads in place. */
static int hit_counter(int p)
{
    return 2 * p;
}

static int inplace_counter(int p)
{
    return 2 * p + 1;
}

static bool tier_can_keep(const kw_table *t, const kw_cache *c, int p)
{
    return t->part[p].charge <= kw_cache_capacity(c) / KEEP_FRACTION;
}

/* Reads in place the table does, once it found part p gone from its tier, before it rebuilds
 * and inserts it again: one per 32 bytes of the part (at least 1024), so a rebuild (about
 * 0.6 ns per byte of an index) adds about 20 ns per read however often the tier evicts it. */
static uint64_t retry_after(const kw_table *t, int p)
{
    uint64_t k = t->part[p].charge / 32;
    return k < 1024 ? 1024 : k;
}

/* Whether part p is read in place without asking its (on) tier c: the tier cannot keep it, or
 * the table is waiting out in-place reads after it found the part gone (next_try != 0). */
static bool stay_in_place(const kw_table *t, const kw_cache *c, int p)
{
    uint64_t next = __atomic_load_n(&t->part[p].next_try, __ATOMIC_RELAXED);
    return !tier_can_keep(t, c, p) ||
           (next != 0 && __atomic_load_n(&t->part[p].inplace, __ATOMIC_RELAXED) < next);
}

/* After a lookup of part p missed: starts the wait (true: read in place) unless a wait is
 * over (false: the caller rebuilds and inserts it now). */
static bool start_wait(kw_table *t, int p)
{
    uint64_t zero = 0, next = __atomic_load_n(&t->part[p].inplace, __ATOMIC_RELAXED) +
                              retry_after(t, p);
    return __atomic_compare_exchange_n(&t->part[p].next_try, &zero, next, false,
                                       __ATOMIC_RELAXED, __ATOMIC_RELAXED);
}

/* After a lease section whose counter reached a batch: report it to the tier. */
static void report_batch(kw_table *t, int p, int counter)
{
    kw_cache *c = part_tier(t, p);
    if (counter == hit_counter(p)) {
        kw_cache_touch(c, t->number, part_off(t, p), KW_LEASE_BATCH);
    } else {
        kw_cache_count_misses(c, t->number, part_off(t, p), KW_LEASE_BATCH);
        __atomic_fetch_add(&t->part[p].inplace, KW_LEASE_BATCH, __ATOMIC_RELAXED);
    }
}

static void leave(kw_table *t, int p, kw_lease_section *s, int counter)
{
    if (kw_lease_leave(s, counter))
        report_batch(t, p, counter);
}

/* Inserts value (made for t's lease) as part p and publishes it. Returns the pinned handle,
 * or NULL if the tier did not keep it (the value is then still the caller's). */
static kw_cache_handle *insert_part(kw_table *t, int p, void *value, kw_lease **lease_field,
                                    size_t charge)
{
    *lease_field = t->lease;
    kw_lease_ref(t->lease);
    kw_cache_handle *h = kw_cache_insert(part_tier(t, p), t->number, part_off(t, p), value,
                                         charge, p == KW_PART_INDEX ? free_index : free_filter);
    __atomic_store_n(&t->part[p].next_try, 0, __ATOMIC_RELAXED); /* no wait until it is gone */
    if (h == NULL) {
        *lease_field = NULL;
        kw_lease_unref(t->lease);
        return NULL;
    }
    kw_lease_publish(t->lease, p, value); /* while h is held: before its deleter can run */
    return h;
}

/* ---- index ----------------------------------------------------------------------------------- */



static kiwi_status not_in_place(const kw_table *t, uint32_t i, char **errmsg)
{
    return kw_error(errmsg, KIWI_CORRUPTION,
                    "%s: index block at offset %" PRIu64 ": entry %" PRIu32
                    " does not decode in place (the file changed after it was opened)",
                    t->path, t->meta_off[2], i);
}

kiwi_status kw_table_index_get_in_place(const kw_table *t, uint32_t i, kw_table_index_entry *e,
                                        char **errmsg)
{
    return kw_table_index_at(t, i, e) ? KIWI_OK : not_in_place(t, i, errmsg);
}

/* The first block whose last key is >= target: a search of the array's key prefixes, or a
 * binary search of the restart array of the index block in place. */
kiwi_status kw_table_find_block(const kw_table *t, const kw_index_ref *r, kw_slice target,
                                kw_block_loc *loc, char **errmsg)
{
    if (r->array != NULL) {
        const kw_table_index_entry *e = r->array->entries;
        uint32_t i = kw_table_index_lower_bound(r->array, target);
        *loc = (kw_block_loc){i, i < r->nblocks ? e[i].offset : 0, i < r->nblocks ? e[i].size : 0};
        return KIWI_OK;
    }
    uint32_t lo = 0, hi = r->nblocks;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        kw_slice key;
        if (!kw_table_index_key_at(t, mid, &key))
            return not_in_place(t, mid, errmsg);
        if (kw_ikey_compare(key, target) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    loc->index = lo;
    kw_table_index_entry e = {NULL, 0, 0, 0};
    kiwi_status st = lo < r->nblocks ? kw_table_index_get(t, r, lo, &e, errmsg) : KIWI_OK;
    loc->offset = e.offset;
    loc->size = e.size;
    return st;
}

/* The table's private index (no cache, index tier off, or an index that can be neither kept
 * nor searched in place), built on first use. Racing builders each build one; the first
 * published wins. */
static kiwi_status private_index(kw_table *t, const kw_table_index **out, char **errmsg)
{
    kw_table_index *ix = __atomic_load_n(&t->own_index, __ATOMIC_ACQUIRE);
    if (ix == NULL) {
        kiwi_status st = kw_table_rebuild_index(t, false, &ix, errmsg);
        if (st != KIWI_OK)
            return st;
        kw_table_index *seen = NULL;
        if (!__atomic_compare_exchange_n(&t->own_index, &seen, ix, false, __ATOMIC_ACQ_REL,
                                         __ATOMIC_ACQUIRE)) {
            free(ix);
            ix = seen;
        }
    }
    *out = ix;
    return KIWI_OK;
}

/* The index through the tier (no lease section): private (off), in place (the tier cannot keep
 * it, or the table is waiting out in-place reads), a hit (published if it is the table's own),
 * or rebuilt from the map, checked, inserted and published. Iterators pin it for their life. */
kiwi_status kw_table_index_acquire(kw_table *t, kw_index_ref *ref, kw_cache_result *res,
                                 char **errmsg)
{
    memset(ref, 0, sizeof *ref);
    ref->nblocks = (uint32_t)t->props.data_blocks;
    kw_cache *c = tier(t, TIER_INDEX);
    if (!is_on(c)) {
        *res = KW_CACHE_OFF;
        return private_index(t, &ref->array, errmsg);
    }
    *res = KW_CACHE_MISS;
    if (!tier_can_keep(t, c, KW_PART_INDEX) && !t->index_inplace)
        return private_index(t, &ref->array, errmsg);
    if (t->index_inplace && stay_in_place(t, c, KW_PART_INDEX)) {
        kw_cache_count_misses(c, t->number, t->meta_off[2], 1);
        return KIWI_OK;
    }
    ref->handle = kw_cache_lookup(c, t->number, t->meta_off[2]);
    if (ref->handle != NULL) {
        *res = KW_CACHE_HIT;
        kw_table_index *ix = kw_cache_value(ref->handle);
        if (ix->lease == t->lease)
            kw_lease_publish(t->lease, KW_PART_INDEX, ix);
        ref->array = ix;
        return KIWI_OK;
    }
    if (t->index_inplace && start_wait(t, KW_PART_INDEX))
        return KIWI_OK;
    kw_table_index *ix;
    kiwi_status st = kw_table_rebuild_index(t, true, &ix, errmsg);
    if (st != KIWI_OK)
        return st;
    ref->handle = insert_part(t, KW_PART_INDEX, ix, &ix->lease,
                              ix->bytes + kw_cache_entry_overhead());
    if (ref->handle == NULL)
        ref->owned = ix;
    ref->array = ix;
    return KIWI_OK;
}

void kw_table_index_release(kw_table *t, kw_index_ref *ref)
{
    if (ref->handle != NULL)
        kw_cache_release(tier(t, TIER_INDEX), ref->handle);
    free(ref->owned);
    memset(ref, 0, sizeof *ref);
}

/* A get's index search: the published index or the block in place inside a lease section
 * (no lock), else through the tier. */
kiwi_status kw_table_index_search(kw_table *t, kw_slice target, kw_block_loc *loc,
                                kw_cache_result *res, char **errmsg)
{
    kw_cache *c = tier(t, TIER_INDEX);
    if (is_on(c)) {
        kw_lease_section s;
        kw_index_ref r = {kw_lease_enter(t->lease, KW_PART_INDEX, &s), NULL, NULL,
                       (uint32_t)t->props.data_blocks};
        int counter = -1;
        if (r.array != NULL)
            counter = hit_counter(KW_PART_INDEX);
        else if (t->index_inplace && stay_in_place(t, c, KW_PART_INDEX))
            counter = inplace_counter(KW_PART_INDEX);
        kiwi_status st = KIWI_OK;
        if (counter >= 0)
            st = kw_table_find_block(t, &r, target, loc, errmsg);
        leave(t, KW_PART_INDEX, &s, counter);
        if (counter >= 0) {
            *res = r.array != NULL ? KW_CACHE_HIT : KW_CACHE_MISS;
            return st;
        }
    }
    kw_index_ref r;
    kiwi_status st = kw_table_index_acquire(t, &r, res, errmsg);
    if (st == KIWI_OK)
        st = kw_table_find_block(t, &r, target, loc, errmsg);
    kw_table_index_release(t, &r);
    return st;
}

/* ---- filter ---------------------------------------------------------------------------------- */

/* The filter through the tier: a hit (published if the table's own), or a verified copy
 * inserted and published. */
static kiwi_status bloom_slow(kw_table *t, kw_cache *c, kw_slice ukey, bool *may_contain,
                              kw_cache_result *res, char **errmsg)
{
    *res = KW_CACHE_HIT;
    kw_cache_handle *h = kw_cache_lookup(c, t->number, t->meta_off[0]);
    byte_copy *v;
    if (h != NULL) {
        v = kw_cache_value(h);
        if (v->lease == t->lease)
            kw_lease_publish(t->lease, KW_PART_FILTER, v);
    } else {
        *res = KW_CACHE_MISS;
        if (start_wait(t, KW_PART_FILTER)) {
            *may_contain = kw_bloom_may_contain(t->filter, ukey);
            return KIWI_OK;
        }
        v = kw_malloc(sizeof *v + t->meta_size[0]);
        v->lease = NULL;
        v->size = t->meta_size[0];
        kiwi_status st = copy_checked(t, v->data, t->meta_off[0], v->size, "filter block", errmsg);
        if (st != KIWI_OK) {
            free(v);
            return st;
        }
        h = insert_part(t, KW_PART_FILTER, v, &v->lease, copy_charge(v->size));
    }
    *may_contain = kw_bloom_may_contain(kw_slice_make(v->data, v->size), ukey);
    if (h != NULL)
        kw_cache_release(c, h);
    else
        free(v); /* the tier shrank meanwhile */
    return KIWI_OK;
}

/* The bloom filter's answer for ukey: the published copy or the map's (which open checked)
 * inside a lease section, else through the tier. An unusable filter answers "maybe". */
kiwi_status kw_table_bloom_check(kw_table *t, kw_slice ukey, bool *may_contain,
                               kw_cache_result *res, char **errmsg)
{
    *may_contain = true;
    *res = KW_CACHE_NONE;
    if (!t->filter_usable)
        return KIWI_OK;
    kw_cache *c = tier(t, TIER_BLOOM);
    if (!is_on(c)) {
        *res = KW_CACHE_OFF;
        *may_contain = kw_bloom_may_contain(t->filter, ukey);
        return KIWI_OK;
    }
    kw_lease_section s;
    const byte_copy *pub = kw_lease_enter(t->lease, KW_PART_FILTER, &s);
    int counter = -1;
    if (pub != NULL) {
        *res = KW_CACHE_HIT;
        counter = hit_counter(KW_PART_FILTER);
        *may_contain = kw_bloom_may_contain(kw_slice_make(pub->data, pub->size), ukey);
    } else if (stay_in_place(t, c, KW_PART_FILTER)) {
        *res = KW_CACHE_MISS;
        counter = inplace_counter(KW_PART_FILTER);
        *may_contain = kw_bloom_may_contain(t->filter, ukey);
    }
    leave(t, KW_PART_FILTER, &s, counter);
    return counter >= 0 ? KIWI_OK : bloom_slow(t, c, ukey, may_contain, res, errmsg);
}

/* ---- reads that must not wait for the disk ---------------------------------------------------- */

kiwi_status kw_table_bloom_check_resident(kw_table *t, kw_slice ukey, bool *may_contain)
{
    *may_contain = true;
    if (!t->filter_usable)
        return KIWI_OK;
    if (!is_on(tier(t, TIER_BLOOM)))
        return KIWI_BUSY; /* the filter lives only in the map */
    kw_lease_section s;
    const byte_copy *pub = kw_lease_enter(t->lease, KW_PART_FILTER, &s);
    if (pub != NULL)
        *may_contain = kw_bloom_may_contain(kw_slice_make(pub->data, pub->size), ukey);
    leave(t, KW_PART_FILTER, &s, pub != NULL ? hit_counter(KW_PART_FILTER) : -1);
    return pub != NULL ? KIWI_OK : KIWI_BUSY;
}

kiwi_status kw_table_index_search_resident(kw_table *t, kw_slice target, kw_block_loc *loc,
                                           char **errmsg)
{
    kw_index_ref r = {__atomic_load_n(&t->own_index, __ATOMIC_ACQUIRE), NULL, NULL,
                      (uint32_t)t->props.data_blocks};
    if (r.array != NULL) /* private: the table's own heap memory */
        return kw_table_find_block(t, &r, target, loc, errmsg);
    if (!is_on(tier(t, TIER_INDEX)))
        return KIWI_BUSY;
    kw_lease_section s;
    r.array = kw_lease_enter(t->lease, KW_PART_INDEX, &s);
    kiwi_status st = r.array != NULL ? kw_table_find_block(t, &r, target, loc, errmsg) : KIWI_BUSY;
    leave(t, KW_PART_INDEX, &s, r.array != NULL ? hit_counter(KW_PART_INDEX) : -1);
    return st;
}

/* ---- warming at open ------------------------------------------------------------------------- */

void kw_table_warm_cache(kw_table *t, kw_table_index *ix, bool for_cache)
{
    t->part[KW_PART_FILTER].charge = copy_charge(t->filter.size);
    kw_cache *c = tier(t, TIER_INDEX);
    kw_cache_handle *h = NULL;
    if (for_cache && tier_can_keep(t, c, KW_PART_INDEX))
        h = insert_part(t, KW_PART_INDEX, ix, &ix->lease, ix->bytes + kw_cache_entry_overhead());
    if (h != NULL)
        kw_cache_release(c, h);
    else if (for_cache && t->index_inplace)
        free(ix); /* read in place until the tier can keep it */
    else
        t->own_index = ix; /* not shared yet: no atomics needed */
    c = tier(t, TIER_BLOOM);
    if (!t->filter_usable || !is_on(c) || !tier_can_keep(t, c, KW_PART_FILTER))
        return;
    byte_copy *v = kw_malloc(sizeof *v + t->filter.size); /* open has just checked these bytes */
    v->size = t->filter.size;
    memcpy(v->data, t->filter.data, t->filter.size);
    h = insert_part(t, KW_PART_FILTER, v, &v->lease, copy_charge(v->size));
    if (h == NULL)
        free(v);
    kw_cache_release(c, h);
}

