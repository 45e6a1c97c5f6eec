/*
 * table_iter.c: point lookups and the two-level iterator of an open SSTable (table.h). Where
 * the index, the filter and each data block come from (a cache tier, the table's lease or the
 * mapping) is table_read.c's business; opening, parsing and verification are in table.c.
 */
#include "table.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "block.h"
#include "dbformat.h"

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

/* How a lookup reads: fill_cache, or "resident" (only what is in memory, else KIWI_BUSY). */
typedef struct {
    bool fill_cache;
    bool resident;
} read_mode;

static kiwi_status find_block(kw_table *t, kw_slice target, read_mode m, kw_block_loc *loc,
                              kw_cache_result *res, char **errmsg)
{
    if (!m.resident)
        return kw_table_index_search(t, target, loc, res, errmsg);
    *res = KW_CACHE_HIT;
    return kw_table_index_search_resident(t, target, loc, errmsg);
}

/* Index, data block, search. A found value goes to *map_value (translated into the map: a
 * cached copy holds the map's bytes at the same offsets) and/or is appended to value_out. */
static kiwi_status search_table(kw_table *t, kw_slice ukey, kw_slice target, read_mode m,
                                kw_lookup *result, kw_slice *map_value, kw_buf *value_out,
                                kw_table_lookup_info *info, char **errmsg)
{
    kw_block_loc loc;
    kiwi_status st = find_block(t, target, m, &loc, &info->index_cache, errmsg);
    if (st != KIWI_OK || loc.index >= t->props.data_blocks) /* past the table's largest key */
        return st;
    info->block_read = true;
    info->block_index = loc.index;
    info->block_offset = loc.offset;
    info->block_size = loc.size;
    kw_block_ref br;
    if (m.resident)
        st = kw_table_block_acquire_resident(t, loc.index, loc.offset, loc.size, &br,
                                             &info->data_cache, errmsg);
    else
        st = kw_table_block_acquire(t, loc.index, loc.offset, loc.size, m.fill_cache, &br,
                                    &info->data_cache, errmsg);
    if (st != KIWI_OK)
        return st;
    kw_slice v = {NULL, 0};
    st = search_block(t, &br.block, ukey, target, result, &v, errmsg);
    if (st == KIWI_OK && *result == KW_LOOKUP_FOUND && value_out != NULL)
        kw_buf_append(value_out, v.data, v.size);
    if (st == KIWI_OK && *result == KW_LOOKUP_FOUND && map_value != NULL)
        *map_value =
            kw_slice_make(t->map.data + loc.offset + (size_t)(v.data - br.block.data), v.size);
    kw_table_block_release(t, &br);
    return st;
}

static kiwi_status table_get(kw_table *t, kw_slice ukey, uint64_t seq, read_mode m,
                             kw_lookup *result, kw_slice *map_value, kw_buf *value_out,
                             kw_table_lookup_info *info, char **errmsg)
{
    kw_table_lookup_info scratch;
    if (info == NULL)
        info = &scratch;
    memset(info, 0, sizeof *info);
    *result = KW_LOOKUP_MISS;
    kiwi_status st;
    if (m.resident) {
        info->bloom_cache = KW_CACHE_HIT;
        st = kw_table_bloom_check_resident(t, ukey, &info->bloom_may_contain);
    } else {
        st = kw_table_bloom_check(t, ukey, &info->bloom_may_contain, &info->bloom_cache, errmsg);
    }
    if (st != KIWI_OK || !info->bloom_may_contain)
        return st;
    char stackbuf[512];
    size_t tlen = ukey.size + KW_TRAILER_SIZE;
    char *tbuf = tlen <= sizeof stackbuf ? stackbuf : kw_malloc(tlen);
    if (ukey.size)
        memcpy(tbuf, ukey.data, ukey.size);
    kw_encode_fixed64(tbuf + ukey.size,
                      kw_pack_trailer(seq > KW_MAX_SEQ ? KW_MAX_SEQ : seq, KW_TYPE_FOR_SEEK));
    st = search_table(t, ukey, kw_slice_make(tbuf, tlen), m, result, map_value, value_out, info,
                      errmsg);
    if (tbuf != stackbuf)
        free(tbuf);
    return st;
}

kiwi_status kw_table_get(kw_table *t, kw_slice ukey, uint64_t seq, kw_lookup *result,
                         kw_slice *value, kw_table_lookup_info *info, char **errmsg)
{
    *value = kw_slice_make(NULL, 0);
    return table_get(t, ukey, seq, (read_mode){true, false}, result, value, NULL, info, errmsg);
}

kiwi_status kw_table_get_ex(kw_table *t, kw_slice ukey, uint64_t seq, bool fill_cache,
                            kw_lookup *result, kw_buf *value_out, kw_table_lookup_info *info,
                            char **errmsg)
{
    kw_buf_clear(value_out);
    return table_get(t, ukey, seq, (read_mode){fill_cache, false}, result, NULL, value_out, info,
                     errmsg);
}

kiwi_status kw_table_get_resident(kw_table *t, kw_slice ukey, uint64_t seq, kw_lookup *result,
                                  kw_buf *value_out, kw_table_lookup_info *info, char **errmsg)
{
    kw_buf_clear(value_out);
    return table_get(t, ukey, seq, (read_mode){false, true}, result, NULL, value_out, info,
                     errmsg);
}

/* ---- two-level iterator ---------------------------------------------------------------------- *
 * index position `pos` + a block iterator over that data block. Invariant: valid <=> status OK,
 * pos < nblocks and the block iterator is valid. Errors are sticky. */

typedef struct {
    kw_iter base;
    kw_table *t;
    bool fill_cache;    /* insert the data blocks it reads into the data tier */
    kw_index_ref index;    /* pinned for the iterator's life */
    uint32_t nblocks;
    uint32_t pos;       /* the loaded data block; nblocks when none */
    kw_block_ref block;    /* data block pos, pinned while the iterator is in it */
    kw_block_iter data; /* over block */
    kiwi_status status;
    char *errmsg;
} table_iter;

static void ti_set_invalid(table_iter *it)
{
    it->pos = it->nblocks;
    it->data.valid = false;
    kw_table_block_release(it->t, &it->block);
}

/* Loads data block i (from the data tier, or the map with its CRC checked) into the block
 * iterator, releasing the one before; false on error. */
static bool ti_load(table_iter *it, uint32_t i)
{
    kw_block_ref next = {.handle = NULL};
    kw_cache_result unused;
    kw_table_index_entry e;
    if (it->status == KIWI_OK)
        it->status = kw_table_index_get(it->t, &it->index, i, &e, &it->errmsg);
    if (it->status == KIWI_OK)
        it->status = kw_table_block_acquire(it->t, i, e.offset, e.size, it->fill_cache, &next, &unused,
                                   &it->errmsg);
    if (it->status != KIWI_OK) {
        ti_set_invalid(it);
        return false;
    }
    kw_table_block_release(it->t, &it->block);
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
    kw_block_loc loc;
    it->status = kw_table_find_block(it->t, &it->index, target, &loc, &it->errmsg);
    if (it->status != KIWI_OK || loc.index >= it->nblocks) {
        ti_set_invalid(it);
        return;
    }
    if (!ti_load(it, loc.index))
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
    kw_table_block_release(it->t, &it->block);
    kw_table_index_release(it->t, &it->index);
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
    it->status = kw_table_index_acquire(t, &it->index, &unused, &it->errmsg); /* sticky on failure */
    it->nblocks = it->status == KIWI_OK ? it->index.nblocks : 0;
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
