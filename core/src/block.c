/*
 * block.c: the block reader and its iterator (format in block_builder.h, contract in block.h).
 *
 * Invariants of kw_block_iter:
 *   valid     => block.data + current is a well-formed entry, key/value are its key and value,
 *                next_off is the offset just past it, restart_index is the last restart point
 *                whose offset is <= current.
 *   !valid    => current == restarts_off; status says whether that is the end or an error.
 *   status != OK is sticky: the iterator stays invalid until reset.
 */
#include "block.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "coding.h"
#include "dbformat.h"

kiwi_status kw_block_parse(kw_block *b, kw_slice contents, const char *path, uint64_t file_offset,
                           const char *kind, char **errmsg)
{
    memset(b, 0, sizeof *b);
    b->path = path;
    b->file_offset = file_offset;
    b->kind = kind;
    const char *what = NULL;
    if (contents.size < 4)
        what = "shorter than its 4-byte restart count";
    else if (contents.size > UINT32_MAX)
        what = "larger than 4 GiB";
    if (what == NULL) {
        uint32_t n = kw_decode_fixed32(contents.data + contents.size - 4);
        if (n > (contents.size - 4) / 4) {
            what = "restart count larger than the block";
        } else {
            b->num_restarts = n;
            b->restarts_off = (uint32_t)(contents.size - 4 - 4 * (size_t)n);
            if (n == 0 && b->restarts_off != 0)
                what = "entries without restart points";
            else if (n > 0 && b->restarts_off == 0)
                what = "restart points without entries";
            else if (n > 0 && kw_decode_fixed32(contents.data + b->restarts_off) != 0)
                what = "first restart point is not at offset 0";
        }
    }
    if (what != NULL)
        return kw_error(errmsg, KIWI_CORRUPTION, "%s: %s at offset %" PRIu64 ": %s", path, kind,
                        file_offset, what);
    b->data = contents.data;
    b->size = contents.size;
    return KIWI_OK;
}

/* ---- iterator internals ------------------------------------------------------------------ */

static uint32_t restart_point(const kw_block_iter *it, uint32_t i)
{
    return kw_decode_fixed32(it->block.data + it->block.restarts_off + 4 * (size_t)i);
}

static void mark_invalid(kw_block_iter *it)
{
    it->valid = false;
    it->current = it->block.restarts_off;
    it->next_off = it->block.restarts_off;
}

static void corrupt(kw_block_iter *it, uint32_t entry_off, const char *what)
{
    if (it->status == KIWI_OK)
        it->status = kw_error(&it->errmsg, KIWI_CORRUPTION,
                              "%s: %s at offset %" PRIu64 ": entry at block offset %" PRIu32
                              ": %s",
                              it->block.path, it->block.kind, it->block.file_offset, entry_off,
                              what);
    mark_invalid(it);
}

/* Decodes the entry header at off. Returns the first key byte, or NULL (and marks corruption)
 * when the header or the key + value it announces do not fit before the restart array. */
static const char *decode_entry(kw_block_iter *it, uint32_t off, uint32_t *shared,
                                uint32_t *non_shared, uint32_t *vlen)
{
    const char *limit = it->block.data + it->block.restarts_off;
    const char *p = kw_decode_varint32(it->block.data + off, limit, shared);
    if (p != NULL)
        p = kw_decode_varint32(p, limit, non_shared);
    if (p != NULL)
        p = kw_decode_varint32(p, limit, vlen);
    if (p == NULL) {
        corrupt(it, off, "truncated entry header");
        return NULL;
    }
    if ((uint64_t)*non_shared + *vlen > (uint64_t)(limit - p)) {
        corrupt(it, off, "entry runs past the end of the entries");
        return NULL;
    }
    if ((uint64_t)*shared + *non_shared < KW_TRAILER_SIZE) {
        corrupt(it, off, "key shorter than the 8-byte trailer");
        return NULL;
    }
    return p;
}

/* Parses the entry at next_off. False at the end of the entries or on corruption. */
static bool parse_next(kw_block_iter *it)
{
    uint32_t off = it->next_off;
    if (off >= it->block.restarts_off) {
        mark_invalid(it);
        return false;
    }
    uint32_t shared, non_shared, vlen;
    const char *p = decode_entry(it, off, &shared, &non_shared, &vlen);
    if (p == NULL)
        return false;
    if (shared > it->key.size) {
        corrupt(it, off, "shared prefix longer than the previous key");
        return false;
    }
    if (shared == 0) {
        it->key = kw_slice_make(p, non_shared); /* whole key: no copy */
    } else {
        if (it->key.data != it->keybuf.data) { /* previous key lives in the block */
            kw_buf_clear(&it->keybuf);
            kw_buf_append(&it->keybuf, it->key.data, shared);
        } else {
            it->keybuf.len = shared;
        }
        kw_buf_append(&it->keybuf, p, non_shared);
        it->key = kw_slice_make(it->keybuf.data, it->keybuf.len);
    }
    it->value = kw_slice_make(p + non_shared, vlen);
    it->current = off;
    it->next_off = (uint32_t)(p + non_shared + vlen - it->block.data);
    while (it->restart_index + 1 < it->block.num_restarts &&
           restart_point(it, it->restart_index + 1) <= it->current)
        it->restart_index++;
    it->valid = true;
    return true;
}

/* Positions before restart point i, so that parse_next reads it. */
static bool seek_to_restart(kw_block_iter *it, uint32_t i)
{
    uint32_t off = restart_point(it, i);
    it->valid = false;
    if (off >= it->block.restarts_off) {
        corrupt(it, off, "restart point past the entries");
        return false;
    }
    it->key = kw_slice_make(NULL, 0);
    it->restart_index = i;
    it->next_off = off;
    return true;
}

/* The whole key stored at restart point i (shared must be 0 there). */
static bool restart_key(kw_block_iter *it, uint32_t i, kw_slice *key)
{
    uint32_t off = restart_point(it, i);
    if (off >= it->block.restarts_off) {
        corrupt(it, off, "restart point past the entries");
        return false;
    }
    uint32_t shared, non_shared, vlen;
    const char *p = decode_entry(it, off, &shared, &non_shared, &vlen);
    if (p == NULL)
        return false;
    if (shared != 0) {
        corrupt(it, off, "restart point with a shared prefix");
        return false;
    }
    *key = kw_slice_make(p, non_shared);
    return true;
}

static bool usable(kw_block_iter *it)
{
    if (it->status != KIWI_OK || it->block.num_restarts == 0) {
        mark_invalid(it);
        return false;
    }
    return true;
}

/* ---- kw_iter operations ------------------------------------------------------------------ */

static bool bi_valid(kw_iter *base)
{
    return ((kw_block_iter *)base)->valid;
}

static void bi_seek_to_first(kw_iter *base)
{
    kw_block_iter *it = (kw_block_iter *)base;
    if (usable(it) && seek_to_restart(it, 0))
        parse_next(it);
}

static void bi_seek_to_last(kw_iter *base)
{
    kw_block_iter *it = (kw_block_iter *)base;
    if (!usable(it) || !seek_to_restart(it, it->block.num_restarts - 1))
        return;
    while (parse_next(it) && it->next_off < it->block.restarts_off) {
    }
}

/* A seek in a data block read in place is bound by cache misses: the binary search reads
 * restart keys at scattered offsets, and each step of the scan must decode the previous entry's
 * lengths before it can load the next one, so the misses come one after another. The prefetches
 * below issue those loads together (sstable.md §7, with figures). They are hints: a prefetch
 * never faults, even at an offset a corrupt restart array gives, and nothing is read through
 * them (the search itself checks every offset as before). */
#define PREFETCH_RESTARTS_MAX 8u  /* blocks with more restarts (index-like) are left alone */
#define PREFETCH_SCAN_BYTES 1024u /* ~8 entries of 100-byte values: a whole restart interval */

static void prefetch_restart_keys(const kw_block_iter *it)
{
    if (it->block.num_restarts > PREFETCH_RESTARTS_MAX)
        return;
    for (uint32_t i = 1; i < it->block.num_restarts; i++)
        __builtin_prefetch(it->block.data + restart_point(it, i));
}

/* The lines after the entry at next_off up to the next restart point (the scan's range),
 * PREFETCH_SCAN_BYTES at most. */
static void prefetch_scan(const kw_block_iter *it)
{
    uint32_t end = it->restart_index + 1 < it->block.num_restarts
                       ? restart_point(it, it->restart_index + 1)
                       : it->block.restarts_off;
    if (end > it->block.restarts_off) /* a corrupt restart array: the scan reports it */
        end = it->block.restarts_off;
    if (end > it->next_off && end - it->next_off > PREFETCH_SCAN_BYTES)
        end = it->next_off + PREFETCH_SCAN_BYTES;
    for (uint32_t off = it->next_off + 64; off < end; off += 64)
        __builtin_prefetch(it->block.data + off);
}

static void bi_seek(kw_iter *base, kw_slice target)
{
    kw_block_iter *it = (kw_block_iter *)base;
    if (!usable(it))
        return;
    prefetch_restart_keys(it);
    /* the last restart point whose key is < target (or 0) */
    uint32_t left = 0, right = it->block.num_restarts - 1;
    while (left < right) {
        uint32_t mid = left + (right - left + 1) / 2;
        kw_slice k;
        if (!restart_key(it, mid, &k))
            return;
        if (kw_ikey_compare(k, target) < 0)
            left = mid;
        else
            right = mid - 1;
    }
    if (!seek_to_restart(it, left))
        return;
    prefetch_scan(it);
    while (parse_next(it)) {
        if (kw_ikey_compare(it->key, target) >= 0)
            return;
    }
}

static void bi_next(kw_iter *base)
{
    parse_next((kw_block_iter *)base);
}

static void bi_prev(kw_iter *base)
{
    kw_block_iter *it = (kw_block_iter *)base;
    uint32_t original = it->current;
    uint32_t r = it->restart_index;
    while (restart_point(it, r) >= original) {
        if (r == 0) { /* original was the first entry */
            mark_invalid(it);
            return;
        }
        r--;
    }
    if (!seek_to_restart(it, r))
        return;
    while (parse_next(it) && it->next_off < original) {
    }
}

static kw_slice bi_key(kw_iter *base)
{
    return ((kw_block_iter *)base)->key;
}

static kw_slice bi_value(kw_iter *base)
{
    return ((kw_block_iter *)base)->value;
}

static kiwi_status bi_status(kw_iter *base, char **errmsg)
{
    kw_block_iter *it = (kw_block_iter *)base;
    if (it->status != KIWI_OK && errmsg != NULL) {
        free(*errmsg);
        *errmsg = kw_strdup(it->errmsg);
    }
    return it->status;
}

static void bi_destroy(kw_iter *base)
{
    kw_block_iter *it = (kw_block_iter *)base;
    kw_block_iter_cleanup(it);
    if (it->heap)
        free(it);
}

static const kw_iter_ops block_iter_ops = {
    bi_valid, bi_seek_to_first, bi_seek_to_last, bi_seek, bi_next,
    bi_prev,  bi_key,           bi_value,        bi_status, bi_destroy,
};

void kw_block_iter_init(kw_block_iter *it, const kw_block *b)
{
    memset(it, 0, sizeof *it);
    it->base.ops = &block_iter_ops;
    kw_buf_init(&it->keybuf);
    kw_block_iter_reset(it, b);
}

void kw_block_iter_reset(kw_block_iter *it, const kw_block *b)
{
    it->block = *b;
    it->status = KIWI_OK;
    free(it->errmsg);
    it->errmsg = NULL;
    it->key = kw_slice_make(NULL, 0);
    it->value = kw_slice_make(NULL, 0);
    it->restart_index = 0;
    mark_invalid(it);
}

void kw_block_iter_cleanup(kw_block_iter *it)
{
    kw_buf_free(&it->keybuf);
    free(it->errmsg);
    it->errmsg = NULL;
}

kw_iter *kw_block_iter_new(const kw_block *b)
{
    kw_block_iter *it = kw_malloc(sizeof *it);
    kw_block_iter_init(it, b);
    it->heap = true;
    return &it->base;
}
