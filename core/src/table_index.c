/*
 * table_index.c: an SSTable's index block (table.h): the checks that make it trustworthy at open
 * (one entry per data block, back to back from offset 0, strictly increasing keys, the last one
 * the table's largest key), the parsed kw_table_index built from it (keys copied or pointing into
 * the map), whether it can be searched in place (one restart point per entry), and reading an
 * entry in place. The invariants are listed at the top of table.c.
 */
#include "table.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "block.h"
#include "coding.h"
#include "dbformat.h"

static kiwi_status index_problem(const kw_table *t, uint32_t i, const char *what, char **errmsg)
{
    return kw_error(errmsg, KIWI_CORRUPTION,
                    "%s: index block at offset %" PRIu64 ": entry %" PRIu32 ": %s", t->path,
                    t->meta_off[2], i, what);
}

static bool key_is_inside(kw_slice key, kw_slice contents)
{
    uintptr_t k = (uintptr_t)key.data, c = (uintptr_t)contents.data;
    return k >= c && k + key.size <= c + contents.size;
}

/* varint32 with the one-byte case inline (index entry headers are almost always one byte). */
static inline const char *varint32(const char *p, const char *limit, uint32_t *v)
{
    if (p < limit && (signed char)*p >= 0) {
        *v = (uint8_t)*p;
        return p + 1;
    }
    return kw_decode_varint32(p, limit, v);
}

/* The key at restart i and where its value starts and ends; NULL if it does not decode. */
static const char *entry_at(const kw_table *t, uint32_t i, kw_slice *key, const char **vend)
{
    const char *b = t->index_block.data, *limit = b + t->index_restarts;
    uint32_t off = kw_decode_fixed32(limit + 4 * (size_t)i), shared = 0, key_len = 0, vlen = 0;
    if (off >= t->index_restarts)
        return NULL;
    const char *p = varint32(b + off, limit, &shared);
    if (p != NULL)
        p = varint32(p, limit, &key_len);
    if (p != NULL)
        p = varint32(p, limit, &vlen);
    if (p == NULL || shared != 0 || key_len < KW_TRAILER_SIZE ||
        (uint64_t)key_len + vlen > (uint64_t)(limit - p))
        return NULL;
    *key = kw_slice_make(p, key_len);
    *vend = p + key_len + vlen;
    return p + key_len;
}

bool kw_table_index_key_at(const kw_table *t, uint32_t i, kw_slice *key)
{
    const char *vend;
    return entry_at(t, i, key, &vend) != NULL;
}

bool kw_table_index_at(const kw_table *t, uint32_t i, kw_table_index_entry *e)
{
    kw_slice key;
    const char *end, *v = entry_at(t, i, &key, &end);
    if (v == NULL)
        return false;
    e->key = key.data;
    e->key_len = key.size;
    v = kw_decode_varint64(v, end, &e->offset);
    if (v != NULL)
        v = kw_decode_varint64(v, end, &e->size);
    return v == end;
}

/* Whether entry i, as the iterator decoded it, is what kw_table_index_at reads at restart i. */
static bool same_in_place(const kw_table *t, uint32_t i, kw_slice key, uint64_t off,
                          uint64_t size)
{
    kw_table_index_entry e;
    return kw_table_index_at(t, i, &e) && e.key == key.data && e.key_len == key.size &&
           e.offset == off && e.size == size;
}

/* Checks entry i (the iterator's current one) and stores it in ix->entries[i]. A key stored
 * whole in the map is pointed at unless copy_all; other keys are copied to *copy_pos. When
 * *inplace, also checks that the entry reads the same in place (clears *inplace if not). */
static kiwi_status add_index_entry(const kw_table *t, kw_table_index *ix, uint32_t i,
                                   kw_block_iter *it, bool copy_all, char **copy_pos,
                                   bool *inplace, char **errmsg)
{
    kw_slice key = it->key, v = it->value;
    uint64_t off, size;
    const char *p = kw_decode_varint64(v.data, v.data + v.size, &off);
    if (p != NULL)
        p = kw_decode_varint64(p, v.data + v.size, &size);
    if (p == NULL || p != v.data + v.size)
        return index_problem(t, i, "malformed block handle", errmsg);
    if (key.size < KW_TRAILER_SIZE)
        return index_problem(t, i, "key shorter than its 8-byte trailer", errmsg);
    const kw_table_index_entry *prev = i > 0 ? &ix->entries[i - 1] : NULL;
    uint64_t expect = prev ? prev->offset + prev->size + KW_TABLE_TRAILER_SIZE : 0;
    if (off != expect || size > t->data_end - off ||
        t->data_end - off - size < KW_TABLE_TRAILER_SIZE)
        return index_problem(t, i, "block handle does not follow the previous block", errmsg);
    if (prev && kw_ikey_compare(kw_slice_make(prev->key, prev->key_len), key) >= 0)
        return index_problem(t, i, "keys out of order", errmsg);
    if (*inplace && !same_in_place(t, i, key, off, size))
        *inplace = false;
    kw_table_index_entry *e = &ix->entries[i];
    e->key_len = key.size;
    e->offset = off;
    e->size = size;
    if (!copy_all && key_is_inside(key, t->index_block)) {
        e->key = key.data;
    } else {
        memcpy(*copy_pos, key.data, key.size);
        e->key = *copy_pos;
        *copy_pos += key.size;
    }
    return KIWI_OK;
}

/* ---- the prefix search ------------------------------------------------------------------- */

/* The n bytes at p (8 at most are read) as a big-endian number, zero-padded to 8 bytes. */
static uint64_t be_prefix(const char *p, size_t n)
{
    if (n >= 8)
        return __builtin_bswap64(kw_decode_fixed64(p));
    uint64_t w = 0;
    for (size_t i = 0; i < 8; i++)
        w = (w << 8) | (i < n ? (uint8_t)p[i] : 0);
    return w;
}

/* Sets shared_len and the prefixes of a filled index. The keys are sorted, so the bytes the
 * first and the last user keys share are shared by all. */
static void set_prefixes(kw_table_index *ix)
{
    const kw_table_index_entry *e = ix->entries;
    kw_slice first = kw_ikey_user(kw_slice_make(e[0].key, e[0].key_len));
    kw_slice last = kw_ikey_user(kw_slice_make(e[ix->nblocks - 1].key, e[ix->nblocks - 1].key_len));
    size_t shared = kw_slice_common_prefix(first, last);
    ix->shared_len = (uint32_t)shared;
    uint64_t *prefix = kw_table_index_prefixes(ix);
    for (uint32_t i = 0; i < ix->nblocks; i++)
        prefix[i] = be_prefix(e[i].key + shared, e[i].key_len - KW_TRAILER_SIZE - shared);
}

size_t kw_table_index_size(uint32_t n, size_t key_bytes)
{
    return sizeof(kw_table_index) + n * (sizeof(kw_table_index_entry) + sizeof(uint64_t)) +
           key_bytes;
}

/* The first i in [0, n) with p[i] >= want (or > want when past_equal), else n. Branch-free
 * halving: the loads do not wait on the outcome of the previous compare's branch. */
static uint32_t prefix_bound(const uint64_t *p, uint32_t n, uint64_t want, bool past_equal)
{
    if (n == 0)
        return 0;
    const uint64_t *base = p;
    while (n > 1) {
        uint32_t half = n / 2;
        bool right = past_equal ? base[half] <= want : base[half] < want;
        base = right ? base + half : base;
        n -= half;
    }
    bool right = past_equal ? *base <= want : *base < want;
    return (uint32_t)(base - p) + right;
}

uint32_t kw_table_index_lower_bound(const kw_table_index *ix, kw_slice target)
{
    const kw_table_index_entry *e = ix->entries;
    kw_slice u = kw_ikey_user(target);
    size_t shared = ix->shared_len, m = u.size < shared ? u.size : shared;
    int c = m > 0 ? memcmp(u.data, e[0].key, m) : 0;
    if (c < 0 || (c == 0 && u.size < shared))
        return 0; /* before every key's shared bytes */
    if (c > 0)
        return ix->nblocks; /* after them */
    uint64_t want = be_prefix(u.data + shared, u.size - shared);
    const uint64_t *prefix = kw_table_index_prefixes(ix);
    uint32_t lo = prefix_bound(prefix, ix->nblocks, want, false);
    if (lo == ix->nblocks || prefix[lo] != want)
        return lo;
    /* entries [lo, hi) have target's prefix: the whole keys decide among them */
    uint32_t hi = lo + prefix_bound(prefix + lo, ix->nblocks - lo, want, true);
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (kw_ikey_compare(kw_slice_make(e[mid].key, e[mid].key_len), target) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* ---- building ---------------------------------------------------------------------------- */

/* Checks the entries of the whole index (walks it twice) and fills ix. */
static kiwi_status fill_index(const kw_table *t, kw_block_iter *it, kw_table_index *ix,
                              bool copy_all, bool *inplace, char **errmsg)
{
    kiwi_status st = KIWI_OK;
    char *copy_pos = (char *)(kw_table_index_prefixes(ix) + ix->nblocks);
    uint32_t i = 0;
    for (kw_iter_seek_to_first(&it->base); st == KIWI_OK && it->valid; kw_iter_next(&it->base))
        st = add_index_entry(t, ix, i++, it, copy_all, &copy_pos, inplace, errmsg);
    if (st == KIWI_OK)
        st = kw_iter_status(&it->base, errmsg);
    if (st != KIWI_OK)
        return st;
    const kw_table_index_entry *last = &ix->entries[ix->nblocks - 1];
    if (last->offset + last->size + KW_TABLE_TRAILER_SIZE != t->data_end)
        return index_problem(t, ix->nblocks - 1, "data blocks do not reach the filter block",
                             errmsg);
    if (kw_slice_compare(kw_slice_make(last->key, last->key_len),
                         kw_slice_make(t->props.largest, t->props.largest_len)) != 0)
        return index_problem(t, ix->nblocks - 1,
                             "last key differs from the properties' largest", errmsg);
    set_prefixes(ix);
    return KIWI_OK;
}

/* Parses and checks the index block (contents: CRC already checked). Pass 1 counts the entries
 * and the key bytes to copy; pass 2 checks and stores. copy_all: the index must not point into
 * the map (a cache entry). inplace (NULL: not wanted): set to whether the block can be searched
 * in place (t->index_restarts must be set when the block has one restart per entry). */
kiwi_status kw_table_build_index(const kw_table *t, kw_slice contents, bool copy_all,
                                 kw_table_index **out, bool *inplace, char **errmsg)
{
    kw_block b;
    kiwi_status st = kw_block_parse(&b, contents, t->path, t->meta_off[2], "index block", errmsg);
    if (st != KIWI_OK)
        return st;
    bool unused = false;
    if (inplace == NULL)
        inplace = &unused; /* a rebuild: not wanted */
    else
        *inplace = b.num_restarts == t->props.data_blocks && t->index_restarts == b.restarts_off &&
               contents.data == t->index_block.data;
    kw_block_iter it;
    kw_block_iter_init(&it, &b);
    uint64_t n = 0, copy_bytes = 0;
    for (kw_iter_seek_to_first(&it.base); it.valid; kw_iter_next(&it.base)) {
        n++;
        if (copy_all || !key_is_inside(it.key, contents))
            copy_bytes += it.key.size;
    }
    st = kw_iter_status(&it.base, errmsg);
    if (st == KIWI_OK && n != t->props.data_blocks)
        st = index_problem(t, (uint32_t)(n < UINT32_MAX ? n : UINT32_MAX),
                           "entry count differs from the properties' data_blocks", errmsg);
    kw_table_index *ix = NULL;
    if (st == KIWI_OK) {
        size_t bytes = kw_table_index_size((uint32_t)n, copy_bytes);
        ix = kw_malloc(bytes);
        ix->bytes = bytes;
        ix->nblocks = (uint32_t)n;
        ix->shared_len = 0;
        ix->lease = NULL;
        st = fill_index(t, &it, ix, copy_all, inplace, errmsg);
    }
    kw_block_iter_cleanup(&it);
    if (st != KIWI_OK) {
        free(ix);
        return st;
    }
    *out = ix;
    return KIWI_OK;
}

kiwi_status kw_table_rebuild_index(const kw_table *t, bool copy_all, kw_table_index **out,
                                   char **errmsg)
{
    kiwi_status st = kw_table_check_block(t, NULL, t->meta_off[2], t->meta_size[2],
                                          "index block", errmsg);
    if (st != KIWI_OK)
        return st;
    kw_slice contents = kw_slice_make(t->map.data + t->meta_off[2], t->meta_size[2]);
    return kw_table_build_index(t, contents, copy_all, out, NULL, errmsg);
}
