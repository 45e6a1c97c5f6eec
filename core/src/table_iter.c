/*
 * table_iter.c: reading an open SSTable (table.h) through the block cache: where each part comes
 * from (a cache tier or the mapping), point lookups and the two-level iterator. Opening, parsing
 * and verification are in table.c.
 *
 * Every cache value made here is a self-contained malloc'd copy whose bytes were checked (CRC,
 * or every check of open for an index) as they were copied, so a hit needs no check and a value
 * never points into a mapping (a pinned entry may outlive the table that made it).
 * Charges are the bytes malloc'd for a value plus kw_cache_entry_overhead().
 */
#include "table.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "block.h"
#include "bloom.h"
#include "coding.h"
#include "dbformat.h"

/* A cached data block or filter: one allocation, the block's contents after the size. */
typedef struct {
    size_t size;
    char data[];
} byte_copy;

static size_t copy_charge(uint64_t size)
{
    return sizeof(byte_copy) + size + kw_cache_entry_overhead();
}

static void free_value(void *v)
{
    free(v);
}

/* A copy of the block at off, checked on the copy. REQUIRES: the block lies inside the map
 * (index entries and footer handles were bounds-checked at open). */
static kiwi_status copy_block(const kw_table *t, uint64_t off, uint64_t size, const char *kind,
                              byte_copy **out, char **errmsg)
{
    byte_copy *c = kw_malloc(sizeof *c + size);
    c->size = size;
    memcpy(c->data, t->map.data + off, size);
    kiwi_status st = kw_table_check_block(t, c->data, off, size, kind, errmsg);
    if (st != KIWI_OK) {
        free(c);
        return st;
    }
    *out = c;
    return KIWI_OK;
}

/* ---- tiers ----------------------------------------------------------------------------------- */

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

/* ---- index ----------------------------------------------------------------------------------- */

typedef struct {
    const kw_table_index *index;
    kw_cache_handle *handle; /* the pinned index-tier entry, or NULL */
    kw_table_index *owned;   /* rebuilt but not kept by the tier: freed at release */
} index_ref;

/* The first block whose last key is >= target, or nblocks. */
static uint32_t find_block(const kw_table_index *ix, kw_slice target)
{
    uint32_t lo = 0, hi = ix->nblocks;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        const kw_table_index_entry *e = &ix->entries[mid];
        if (kw_ikey_compare(kw_slice_make(e->key, e->key_len), target) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The table's private index (no cache, or the index tier off), built on first use. Racing
 * builders each build one; the first published wins. */
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

/* Pins t's index: private, cached, or rebuilt from the map and inserted (a rebuilt index the
 * tier cannot hold is used once and freed at release). */
static kiwi_status index_acquire(kw_table *t, index_ref *ref, kw_cache_result *res,
                                 char **errmsg)
{
    memset(ref, 0, sizeof *ref);
    kw_cache *c = tier(t, TIER_INDEX);
    if (!is_on(c)) {
        *res = KW_CACHE_OFF;
        return private_index(t, &ref->index, errmsg);
    }
    ref->handle = kw_cache_lookup(c, t->number, t->meta_off[2]);
    if (ref->handle != NULL) {
        *res = KW_CACHE_HIT;
        ref->index = kw_cache_value(ref->handle);
        return KIWI_OK;
    }
    *res = KW_CACHE_MISS;
    kw_table_index *ix;
    kiwi_status st = kw_table_rebuild_index(t, true, &ix, errmsg);
    if (st != KIWI_OK)
        return st;
    ref->handle = kw_cache_insert(c, t->number, t->meta_off[2], ix,
                                  ix->bytes + kw_cache_entry_overhead(), free_value);
    if (ref->handle == NULL)
        ref->owned = ix;
    ref->index = ix;
    return KIWI_OK;
}

static void index_release(kw_table *t, index_ref *ref)
{
    if (ref->handle != NULL)
        kw_cache_release(tier(t, TIER_INDEX), ref->handle);
    free(ref->owned);
    memset(ref, 0, sizeof *ref);
}

/* ---- filter and data blocks ------------------------------------------------------------------ */

/* The entry for (t, off) in tier c: a hit, or on a miss (when fill and the tier can hold it) a
 * verified copy of the block inserted now. *h NULL: not cached (tier off, no room, no fill);
 * the caller reads the map. A corrupt block is never inserted. */
static kiwi_status cached_copy(kw_table *t, kw_cache *c, uint64_t off, uint64_t size,
                               const char *kind, bool fill, kw_cache_handle **h, kw_slice *out,
                               kw_cache_result *res, char **errmsg)
{
    *h = NULL;
    *res = KW_CACHE_OFF;
    if (!is_on(c))
        return KIWI_OK;
    *h = kw_cache_lookup(c, t->number, off);
    *res = *h != NULL ? KW_CACHE_HIT : KW_CACHE_MISS;
    if (*h == NULL && fill && copy_charge(size) <= kw_cache_capacity(c)) {
        byte_copy *v;
        kiwi_status st = copy_block(t, off, size, kind, &v, errmsg);
        if (st != KIWI_OK)
            return st;
        *h = kw_cache_insert(c, t->number, off, v, copy_charge(v->size), free_value);
        if (*h == NULL) /* the tier shrank meanwhile */
            free(v);
    }
    if (*h != NULL) {
        const byte_copy *v = kw_cache_value(*h);
        *out = kw_slice_make(v->data, v->size);
    }
    return KIWI_OK;
}

/* The bloom filter's answer for ukey, probing the cached copy or (tier off, or too small for
 * the filter) the map's, which open checked. An unusable filter answers "maybe". */
static kiwi_status bloom_check(kw_table *t, kw_slice ukey, bool *may_contain,
                               kw_cache_result *res, char **errmsg)
{
    *may_contain = true;
    *res = KW_CACHE_NONE;
    if (!t->filter_usable)
        return KIWI_OK;
    kw_cache_handle *h;
    kw_slice filter = t->filter;
    kiwi_status st = cached_copy(t, tier(t, TIER_BLOOM), t->meta_off[0], t->meta_size[0],
                                 "filter block", true, &h, &filter, res, errmsg);
    if (st == KIWI_OK)
        *may_contain = kw_bloom_may_contain(filter, ukey);
    if (h != NULL)
        kw_cache_release(tier(t, TIER_BLOOM), h);
    return st;
}

typedef struct {
    kw_block block;          /* parsed; its bytes are in the map or in the cached copy */
    kw_cache_handle *handle; /* the pinned data-tier entry, or NULL (bytes in the map) */
} block_ref;

/* Data block i: a data-tier hit, or the map with its CRC checked (copied into the tier when
 * fill_cache and the tier can hold it). On error nothing is held. */
static kiwi_status block_acquire(kw_table *t, const kw_table_index *ix, uint32_t i,
                                 bool fill_cache, block_ref *ref, kw_cache_result *res,
                                 char **errmsg)
{
    const kw_table_index_entry *e = &ix->entries[i];
    kw_slice contents = {NULL, 0};
    kiwi_status st = cached_copy(t, tier(t, TIER_DATA), e->offset, e->size, "block", fill_cache,
                                 &ref->handle, &contents, res, errmsg);
    if (st == KIWI_OK && ref->handle == NULL) { /* not cached: the map, CRC checked */
        st = kw_table_check_block(t, NULL, e->offset, e->size, "block", errmsg);
        contents = kw_slice_make(t->map.data + e->offset, e->size);
    }
    if (st == KIWI_OK)
        st = kw_block_parse(&ref->block, contents, t->path, e->offset, "block", errmsg);
    if (st != KIWI_OK && ref->handle != NULL) {
        kw_cache_release(tier(t, TIER_DATA), ref->handle);
        ref->handle = NULL;
    }
    return st;
}

static void block_release(kw_table *t, block_ref *ref)
{
    if (ref->handle != NULL)
        kw_cache_release(tier(t, TIER_DATA), ref->handle);
    ref->handle = NULL;
}

/* ---- warming at open ------------------------------------------------------------------------- */

void kw_table_warm_cache(kw_table *t, kw_table_index *ix, bool for_cache)
{
    kw_cache *c = tier(t, TIER_INDEX);
    if (!for_cache) {
        t->own_index = ix; /* not shared yet: no atomics needed */
    } else {
        kw_cache_handle *h = kw_cache_insert(c, t->number, t->meta_off[2], ix,
                                             ix->bytes + kw_cache_entry_overhead(), free_value);
        if (h == NULL)
            free(ix);
        kw_cache_release(c, h);
    }
    c = tier(t, TIER_BLOOM);
    if (!t->filter_usable || !is_on(c) || copy_charge(t->filter.size) > kw_cache_capacity(c))
        return;
    byte_copy *v = kw_malloc(sizeof *v + t->filter.size); /* open has just checked these bytes */
    v->size = t->filter.size;
    memcpy(v->data, t->filter.data, t->filter.size);
    kw_cache_handle *h =
        kw_cache_insert(c, t->number, t->meta_off[0], v, copy_charge(v->size), free_value);
    if (h == NULL)
        free(v);
    kw_cache_release(c, h);
}

/* ---- point lookup ---------------------------------------------------------------------------- */

/* The newest entry <= (ukey, seq) is the first entry >= target = ukey + trailer(seq, FOR_SEEK).
 * The index search returns the first block whose last key is >= target; every earlier block
 * holds only keys < target, and this block holds at least one key >= target, so the entry we
 * want is in this block or nowhere (a next block never needs to be read). */
static kiwi_status search_block(const kw_table *t, const kw_block *b, kw_slice ukey,
                                kw_slice target, kw_lookup *result, kw_slice *value,
                                char **errmsg)
{
    kiwi_status st = KIWI_OK;
    kw_block_iter it;
    kw_block_iter_init(&it, b);
    kw_iter_seek(&it.base, target);
    if (!it.valid) {
        st = kw_iter_status(&it.base, errmsg);
        if (st == KIWI_OK)
            st = kw_error(errmsg, KIWI_CORRUPTION,
                          "%s: block at offset %" PRIu64 ": no key reaches the block's index key",
                          t->path, b->file_offset);
    } else if (kw_slice_compare(kw_ikey_user(it.key), ukey) == 0) {
        kw_value_type type = kw_ikey_type(it.key);
        if (type == KW_TYPE_VALUE) {
            *result = KW_LOOKUP_FOUND;
            *value = it.value;
        } else if (type == KW_TYPE_DELETE) {
            *result = KW_LOOKUP_DELETED;
        } else {
            st = kw_error(errmsg, KIWI_CORRUPTION,
                          "%s: block at offset %" PRIu64 ": unknown value type %d", t->path,
                          b->file_offset, (int)type);
        }
    }
    kw_block_iter_cleanup(&it);
    return st;
}

/* Index, data block, search. A found value goes to *map_value (translated into the map: a
 * cached copy holds the map's bytes at the same offsets) and/or is appended to value_out. */
static kiwi_status search_table(kw_table *t, kw_slice ukey, kw_slice target, bool fill_cache,
                                kw_lookup *result, kw_slice *map_value, kw_buf *value_out,
                                kw_table_lookup_info *info, char **errmsg)
{
    index_ref ir;
    kiwi_status st = index_acquire(t, &ir, &info->index_cache, errmsg);
    if (st != KIWI_OK)
        return st;
    uint32_t bi = find_block(ir.index, target);
    if (bi < ir.index->nblocks) { /* else target > the table's largest key */
        const kw_table_index_entry *e = &ir.index->entries[bi];
        info->block_read = true;
        info->block_index = bi;
        info->block_offset = e->offset;
        info->block_size = e->size;
        block_ref br;
        st = block_acquire(t, ir.index, bi, fill_cache, &br, &info->data_cache, errmsg);
        if (st == KIWI_OK) {
            kw_slice v = {NULL, 0};
            st = search_block(t, &br.block, ukey, target, result, &v, errmsg);
            if (st == KIWI_OK && *result == KW_LOOKUP_FOUND && value_out != NULL)
                kw_buf_append(value_out, v.data, v.size);
            if (st == KIWI_OK && *result == KW_LOOKUP_FOUND && map_value != NULL)
                *map_value = kw_slice_make(
                    t->map.data + e->offset + (size_t)(v.data - br.block.data), v.size);
            block_release(t, &br);
        }
    }
    index_release(t, &ir);
    return st;
}

static kiwi_status table_get(kw_table *t, kw_slice ukey, uint64_t seq, bool fill_cache,
                             kw_lookup *result, kw_slice *map_value, kw_buf *value_out,
                             kw_table_lookup_info *info, char **errmsg)
{
    kw_table_lookup_info scratch;
    if (info == NULL)
        info = &scratch;
    memset(info, 0, sizeof *info);
    *result = KW_LOOKUP_MISS;
    kiwi_status st = bloom_check(t, ukey, &info->bloom_may_contain, &info->bloom_cache, errmsg);
    if (st != KIWI_OK || !info->bloom_may_contain)
        return st;
    char stackbuf[512];
    size_t tlen = ukey.size + KW_TRAILER_SIZE;
    char *tbuf = tlen <= sizeof stackbuf ? stackbuf : kw_malloc(tlen);
    if (ukey.size)
        memcpy(tbuf, ukey.data, ukey.size);
    kw_encode_fixed64(tbuf + ukey.size,
                      kw_pack_trailer(seq > KW_MAX_SEQ ? KW_MAX_SEQ : seq, KW_TYPE_FOR_SEEK));
    st = search_table(t, ukey, kw_slice_make(tbuf, tlen), fill_cache, result, map_value,
                      value_out, info, errmsg);
    if (tbuf != stackbuf)
        free(tbuf);
    return st;
}

kiwi_status kw_table_get(kw_table *t, kw_slice ukey, uint64_t seq, kw_lookup *result,
                         kw_slice *value, kw_table_lookup_info *info, char **errmsg)
{
    *value = kw_slice_make(NULL, 0);
    return table_get(t, ukey, seq, true, result, value, NULL, info, errmsg);
}

kiwi_status kw_table_get_ex(kw_table *t, kw_slice ukey, uint64_t seq, bool fill_cache,
                            kw_lookup *result, kw_buf *value_out, kw_table_lookup_info *info,
                            char **errmsg)
{
    kw_buf_clear(value_out);
    return table_get(t, ukey, seq, fill_cache, result, NULL, value_out, info, errmsg);
}

/* ---- two-level iterator ---------------------------------------------------------------------- *
 * index position `pos` + a block iterator over that data block. Invariant: valid <=> status OK,
 * pos < nblocks and the block iterator is valid. Errors are sticky. */

typedef struct {
    kw_iter base;
    kw_table *t;
    bool fill_cache;    /* insert the data blocks it reads into the data tier */
    index_ref index;    /* pinned for the iterator's life */
    uint32_t nblocks;
    uint32_t pos;       /* the loaded data block; nblocks when none */
    block_ref block;    /* data block pos, pinned while the iterator is in it */
    kw_block_iter data; /* over block */
    kiwi_status status;
    char *errmsg;
} table_iter;

static void ti_set_invalid(table_iter *it)
{
    it->pos = it->nblocks;
    it->data.valid = false;
    block_release(it->t, &it->block);
}

/* Loads data block i (from the data tier, or the map with its CRC checked) into the block
 * iterator, releasing the one before; false on error. */
static bool ti_load(table_iter *it, uint32_t i)
{
    block_ref next = {.handle = NULL};
    kw_cache_result unused;
    if (it->status == KIWI_OK)
        it->status = block_acquire(it->t, it->index.index, i, it->fill_cache, &next, &unused,
                                   &it->errmsg);
    if (it->status != KIWI_OK) {
        ti_set_invalid(it);
        return false;
    }
    block_release(it->t, &it->block);
    it->block = next;
    kw_block_iter_reset(&it->data, &next.block);
    it->pos = i;
    return true;
}

/* After the block iterator ran off its block: take its error, or move to the next/previous
 * block, until an entry is found or the table ends. */
static void ti_settle(table_iter *it, bool forward)
{
    while (it->pos < it->nblocks && !it->data.valid) {
        if (kw_iter_status(&it->data.base, &it->errmsg) != KIWI_OK) {
            it->status = KIWI_CORRUPTION;
            ti_set_invalid(it);
            return;
        }
        bool more = forward ? it->pos + 1 < it->nblocks : it->pos > 0;
        if (!more) {
            ti_set_invalid(it);
            return;
        }
        if (!ti_load(it, forward ? it->pos + 1 : it->pos - 1))
            return;
        if (forward)
            kw_iter_seek_to_first(&it->data.base);
        else
            kw_iter_seek_to_last(&it->data.base);
    }
}

static bool ti_valid(kw_iter *base)
{
    table_iter *it = (table_iter *)base;
    return it->status == KIWI_OK && it->pos < it->nblocks && it->data.valid;
}

static void ti_seek_to_first(kw_iter *base)
{
    table_iter *it = (table_iter *)base;
    if (!ti_load(it, 0))
        return;
    kw_iter_seek_to_first(&it->data.base);
    ti_settle(it, true);
}

static void ti_seek_to_last(kw_iter *base)
{
    table_iter *it = (table_iter *)base;
    if (!ti_load(it, it->nblocks - 1))
        return;
    kw_iter_seek_to_last(&it->data.base);
    ti_settle(it, false);
}

static void ti_seek(kw_iter *base, kw_slice target)
{
    table_iter *it = (table_iter *)base;
    if (it->status != KIWI_OK)
        return;
    uint32_t bi = find_block(it->index.index, target);
    if (bi >= it->nblocks) {
        ti_set_invalid(it);
        return;
    }
    if (!ti_load(it, bi))
        return;
    kw_iter_seek(&it->data.base, target);
    ti_settle(it, true);
}

static void ti_next(kw_iter *base)
{
    table_iter *it = (table_iter *)base;
    kw_iter_next(&it->data.base);
    ti_settle(it, true);
}

static void ti_prev(kw_iter *base)
{
    table_iter *it = (table_iter *)base;
    kw_iter_prev(&it->data.base);
    ti_settle(it, false);
}

static kw_slice ti_key(kw_iter *base)
{
    return ((table_iter *)base)->data.key;
}

static kw_slice ti_value(kw_iter *base)
{
    return ((table_iter *)base)->data.value;
}

static kiwi_status ti_status(kw_iter *base, char **errmsg)
{
    table_iter *it = (table_iter *)base;
    if (it->status != KIWI_OK && errmsg != NULL) {
        free(*errmsg);
        *errmsg = kw_strdup(it->errmsg);
    }
    return it->status;
}

static void ti_destroy(kw_iter *base)
{
    table_iter *it = (table_iter *)base;
    kw_block_iter_cleanup(&it->data);
    block_release(it->t, &it->block);
    index_release(it->t, &it->index);
    free(it->errmsg);
    kw_table_unref(it->t);
    free(it);
}

static const kw_iter_ops table_iter_ops = {
    ti_valid, ti_seek_to_first, ti_seek_to_last, ti_seek, ti_next,
    ti_prev,  ti_key,           ti_value,        ti_status, ti_destroy,
};

kw_iter *kw_table_iter_ex(kw_table *t, bool fill_cache)
{
    table_iter *it = kw_calloc(1, sizeof *it);
    it->base.ops = &table_iter_ops;
    kw_table_ref(t);
    it->t = t;
    it->fill_cache = fill_cache;
    kw_cache_result unused;
    it->status = index_acquire(t, &it->index, &unused, &it->errmsg); /* sticky on failure */
    it->nblocks = it->status == KIWI_OK ? it->index.index->nblocks : 0;
    kw_block empty;
    memset(&empty, 0, sizeof empty);
    kw_block_iter_init(&it->data, &empty);
    it->pos = it->nblocks;
    return &it->base;
}

kw_iter *kw_table_iter(kw_table *t)
{
    return kw_table_iter_ex(t, true);
}
