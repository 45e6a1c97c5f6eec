/*
 * table.c: opening an SSTable (table.h): mmap, footer/filter/properties checks, close (which
 * erases the table's cache entries) and full verification. The index block's parsing and checks
 * are in table_index.c; reads (the cache tiers, point lookups, the iterator) in table_read.c,
 * table_data.c and table_iter.c.
 *
 * Invariants of an open kw_table (all checked by kw_table_open_cached):
 *   - map holds the whole file; footer magic, version and CRC are good; the filter, properties
 *     and index blocks lie back to back before the footer and their CRCs are good.
 *   - every index (private or cached, built at open or rebuilt later) has entries[0..nblocks)
 *     for the data blocks in file order, back to back from offset 0 to data_end (== the filter's
 *     offset); their keys (each block's last internal key) strictly increase; nblocks ==
 *     props.data_blocks >= 1; the last index key == props.largest.
 *   - index_inplace: the index block has one restart point per entry, and entry i decoded in
 *     place at restart i (kw_table_index_at) is exactly entry i of the index checked above, so
 *     a binary search over the restart array finds what a search of the array finds. The
 *     mapping is immutable (SSTables are never written after they are finished), so this check
 *     at open stays true: in-place reads do not repeat it, as the private index, whose keys
 *     point into the same mapping, never did.
 *   - nothing but own_index (set once, atomically), the lease's contents and the parts'
 *     counters change after open, so reads take no lock of the table's (the cache has its own).
 */
#include "table.h"

#include <inttypes.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#include "block.h"
#include "coding.h"
#include "crc32c.h"
#include "dbformat.h"

static const char *const meta_kind[3] = {"filter block", "properties block", "index block"};

void kw_table_props_free(kw_table_props *p)
{
    free(p->smallest);
    free(p->largest);
    p->smallest = p->largest = NULL;
    p->smallest_len = p->largest_len = 0;
}

void kw_table_props_copy(kw_table_props *dst, const kw_table_props *src)
{
    *dst = *src;
    dst->smallest = kw_memdup(src->smallest ? src->smallest : "", src->smallest_len);
    dst->largest = kw_memdup(src->largest ? src->largest : "", src->largest_len);
}

/* ---- blocks ---------------------------------------------------------------------------------- */

kiwi_status kw_table_check_block(const kw_table *t, const char *copy, uint64_t off,
                                 uint64_t size, const char *kind, char **errmsg)
{
    uint64_t fsize = t->map.size;
    if (off > fsize || size > fsize - off || fsize - off - size < KW_TABLE_TRAILER_SIZE)
        return kw_error(errmsg, KIWI_CORRUPTION,
                        "%s: %s at offset %" PRIu64 ": size %" PRIu64
                        " runs past the end of the file",
                        t->path, kind, off, size);
    const char *bytes = copy != NULL ? copy : t->map.data + off;
    const char *trailer = t->map.data + off + size;
    if (kw_crc32c_extend(kw_crc32c(bytes, size), trailer, 1) != kw_decode_fixed32(trailer + 1))
        return kw_error(errmsg, KIWI_CORRUPTION, "%s: %s at offset %" PRIu64 ": checksum mismatch",
                        t->path, kind, off);
    if (trailer[0] != 0)
        return kw_error(errmsg, KIWI_CORRUPTION,
                        "%s: %s at offset %" PRIu64 ": unknown compression type %u", t->path, kind,
                        off, (unsigned)(uint8_t)trailer[0]);
    return KIWI_OK;
}

/* kw_table_check_block on the map; *out = the block's contents there. */
static kiwi_status check_block(const kw_table *t, uint64_t off, uint64_t size, const char *kind,
                               kw_slice *out, char **errmsg)
{
    kiwi_status st = kw_table_check_block(t, NULL, off, size, kind, errmsg);
    if (st == KIWI_OK)
        *out = kw_slice_make(t->map.data + off, size);
    return st;
}

/* ---- open: footer ---------------------------------------------------------------------------- */

static kiwi_status read_footer(kw_table *t, char **errmsg)
{
    size_t fsize = t->map.size;
    if (fsize < KW_TABLE_FOOTER_SIZE)
        return kw_error(errmsg, KIWI_CORRUPTION,
                        "%s: footer: file is %zu bytes, shorter than the %d-byte footer", t->path,
                        fsize, KW_TABLE_FOOTER_SIZE);
    uint64_t foff = fsize - KW_TABLE_FOOTER_SIZE;
    const char *f = t->map.data + foff;
    if (kw_decode_fixed64(f + 56) != KW_TABLE_MAGIC)
        return kw_error(errmsg, KIWI_CORRUPTION,
                        "%s: footer at offset %" PRIu64 ": bad magic number (not an SSTable)",
                        t->path, foff);
    if (kw_decode_fixed32(f + 52) != kw_crc32c(f, 52))
        return kw_error(errmsg, KIWI_CORRUPTION,
                        "%s: footer at offset %" PRIu64 ": checksum mismatch", t->path, foff);
    uint32_t version = kw_decode_fixed32(f + 48);
    if (version != KW_TABLE_FORMAT_VERSION)
        return kw_error(errmsg, KIWI_CORRUPTION,
                        "%s: footer at offset %" PRIu64 ": unsupported format version %" PRIu32,
                        t->path, foff, version);
    /* filter, properties and index lie back to back, the index ending at the footer */
    uint64_t end = foff;
    for (size_t i = 3; i-- > 0;) {
        t->meta_off[i] = kw_decode_fixed64(f + 16 * i);
        t->meta_size[i] = kw_decode_fixed64(f + 16 * i + 8);
        if (t->meta_off[i] > end || t->meta_size[i] > end - t->meta_off[i] ||
            end - t->meta_off[i] - t->meta_size[i] != KW_TABLE_TRAILER_SIZE)
            return kw_error(errmsg, KIWI_CORRUPTION,
                            "%s: footer at offset %" PRIu64 ": %s handle (offset %" PRIu64
                            ", size %" PRIu64 ") does not end where the next part starts",
                            t->path, foff, meta_kind[i], t->meta_off[i], t->meta_size[i]);
        end = t->meta_off[i];
    }
    t->data_end = end;
    return KIWI_OK;
}

/* ---- open: properties ------------------------------------------------------------------------ */

enum { P_FORMAT, P_ENTRIES, P_TOMBSTONES, P_DATA_BLOCKS, P_RAW_KEY, P_RAW_VALUE, P_MIN_SEQ,
       P_MAX_SEQ, P_SMALLEST, P_LARGEST, P_FILTER, P_COUNT };
static const char *const prop_names[P_COUNT] = {
    "format",  "entries", "tombstones", "data_blocks", "raw_key_bytes", "raw_value_bytes",
    "min_seq", "max_seq", "smallest",   "largest",     "filter"};

/* Stores one known property; false if its value has the wrong type. */
static bool set_prop(kw_table *t, int which, const msgpack_object *v, uint64_t *format)
{
    kw_table_props *p = &t->props;
    if (which == P_SMALLEST || which == P_LARGEST) {
        if (v->type != MSGPACK_OBJECT_BIN || v->via.bin.size < KW_TRAILER_SIZE)
            return false;
        char **dst = which == P_SMALLEST ? &p->smallest : &p->largest;
        free(*dst);
        *dst = kw_memdup(v->via.bin.ptr, v->via.bin.size);
        *(which == P_SMALLEST ? &p->smallest_len : &p->largest_len) = v->via.bin.size;
        return true;
    }
    if (which == P_FILTER) {
        if (v->type != MSGPACK_OBJECT_STR)
            return false;
        size_t n = strlen(KW_TABLE_FILTER_NAME);
        t->filter_usable =
            v->via.str.size == n && memcmp(v->via.str.ptr, KW_TABLE_FILTER_NAME, n) == 0;
        return true;
    }
    if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return false;
    uint64_t *slots[P_COUNT] = {format,          &p->entries,  &p->tombstones, &p->data_blocks,
                                &p->raw_key_bytes, &p->raw_value_bytes, &p->min_seq, &p->max_seq};
    *slots[which] = v->via.u64;
    return true;
}

/* msgpack headers 0xc4..0xdf: bytes of the length field, fixed bytes after it, and what the
 * length counts (0: bytes, 1: nothing, 2: array elements, 3: map pairs). */
static const struct {
    uint8_t len_bytes, fixed, kind;
} mp_header[28] = {
    {1, 0, 0}, {2, 0, 0}, {4, 0, 0}, {1, 1, 0}, {2, 1, 0}, {4, 1, 0}, {0, 4, 1}, {0, 8, 1},
    {0, 1, 1}, {0, 2, 1}, {0, 4, 1}, {0, 8, 1}, {0, 1, 1}, {0, 2, 1}, {0, 4, 1}, {0, 8, 1},
    {0, 2, 1}, {0, 3, 1}, {0, 5, 1}, {0, 9, 1}, {0, 17, 1}, {1, 0, 0}, {2, 0, 0}, {4, 0, 0},
    {2, 0, 2}, {4, 0, 2}, {2, 0, 3}, {4, 0, 3}};

/* Whether p[0..n) starts with one msgpack object whose containers announce no more elements
 * than there are bytes left. msgpack-c allocates a container's elements before reading them, so
 * an unchecked 4-byte count would make it ask for up to 64 GiB (fuzz regression
 * open-props-huge-container). Every element takes at least one byte. */
static bool msgpack_plausible(const unsigned char *p, size_t n)
{
    uint64_t pending = 1, count = 0;
    size_t i = 0;
    while (pending-- > 0) {
        if (i >= n || p[i] == 0xc1)
            return false;
        unsigned c = p[i++];
        uint64_t skip = 0;
        int kind = 1;
        if ((c >= 0x80 && c <= 0x9f) || (c >= 0xa0 && c <= 0xbf)) {
            count = c <= 0x9f ? c & 0x0f : c & 0x1f;
            kind = c <= 0x8f ? 3 : c <= 0x9f ? 2 : 0;
        } else if (c >= 0xc4 && c <= 0xdf) {
            int lb = mp_header[c - 0xc4].len_bytes;
            if ((size_t)lb > n - i)
                return false;
            for (count = 0; lb-- > 0;)
                count = count << 8 | p[i++];
            skip = mp_header[c - 0xc4].fixed;
            kind = mp_header[c - 0xc4].kind;
        }
        if (kind == 0)
            skip += count;
        else if (kind >= 2)
            pending += kind == 3 ? 2 * count : count;
        if (skip > n - i || pending > n - i)
            return false;
        i += skip;
    }
    return true;
}

static kiwi_status parse_props(kw_table *t, kw_slice block, char **errmsg)
{
    const char *problem = NULL;
    uint64_t format = 0;
    unsigned seen = 0;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t pos = 0;
    if (!msgpack_plausible((const unsigned char *)block.data, block.size) ||
        msgpack_unpack_next(&u, block.data, block.size, &pos) != MSGPACK_UNPACK_SUCCESS ||
        u.data.type != MSGPACK_OBJECT_MAP || pos != block.size)
        problem = "not a msgpack map";
    for (uint32_t i = 0; problem == NULL && i < u.data.via.map.size; i++) {
        const msgpack_object_kv *kv = &u.data.via.map.ptr[i];
        if (kv->key.type != MSGPACK_OBJECT_STR)
            continue;
        for (int w = 0; w < P_COUNT; w++) {
            if (kv->key.via.str.size != strlen(prop_names[w]) ||
                memcmp(kv->key.via.str.ptr, prop_names[w], kv->key.via.str.size) != 0)
                continue;
            if (!set_prop(t, w, &kv->val, &format))
                problem = "a property has the wrong type";
            seen |= 1u << w;
        }
    }
    msgpack_unpacked_destroy(&u);
    if (problem == NULL && seen != (1u << P_COUNT) - 1)
        problem = "a required property is missing";
    if (problem == NULL && format != KW_TABLE_FORMAT_VERSION)
        problem = "unsupported properties format";
    if (problem == NULL && (t->props.entries == 0 || t->props.data_blocks == 0))
        problem = "the table has no entries";
    if (problem != NULL)
        return kw_error(errmsg, KIWI_CORRUPTION, "%s: properties block at offset %" PRIu64 ": %s",
                        t->path, t->meta_off[1], problem);
    return KIWI_OK;
}
/* ---- open / close ---------------------------------------------------------------------------- */

/* Drops every cache entry of the table, so no dead entries linger. The index and filter are one
 * key each. Data blocks: a walk of the whole tier (kw_cache_erase_file) costs O(tier entries),
 * about 25 ns each; when the table has far fewer blocks than the tier holds, its blocks are
 * erased one by one instead, their offsets read from the index block in the map. */
static void erase_cached(kw_table *t)
{
    kw_cache_erase(t->cache->index, t->number, t->meta_off[2]);
    kw_cache_erase(t->cache->bloom, t->number, t->meta_off[0]);
    kw_cache_stats s;
    kw_cache_get_stats(t->cache->data, &s);
    kw_block b;
    if (s.entries == 0)
        return;
    if (t->props.data_blocks * 4 > s.entries ||
        kw_block_parse(&b, t->index_block, t->path, t->meta_off[2], "index block", NULL) !=
            KIWI_OK) {
        kw_cache_erase_file(t->cache->data, t->number);
        return;
    }
    kw_block_iter it;
    kw_block_iter_init(&it, &b);
    for (kw_iter_seek_to_first(&it.base); it.valid; kw_iter_next(&it.base)) {
        uint64_t off;
        if (kw_decode_varint64(it.value.data, it.value.data + it.value.size, &off) != NULL)
            kw_cache_erase(t->cache->data, t->number, off);
    }
    kw_block_iter_cleanup(&it);
}

/* Words of the table's verified bitmap: one bit per data block. */
static size_t verified_words(const kw_table *t)
{
    return (size_t)(t->props.data_blocks + 63) / 64;
}

static void table_free(kw_table *t)
{
    if (t->cache != NULL)
        erase_cached(t);
    kw_lease_unref(t->lease); /* values still pinned elsewhere hold their own references */
    kw_munmap(&t->map);
    kw_table_props_free(&t->props);
    free(t->own_index);
    free(t->verified);
    free(t->path);
    free(t);
}

/* Footer, then the three meta blocks' CRCs, properties, index, filter. */
static kiwi_status load_meta(kw_table *t, kw_block_cache *cache, char **errmsg)
{
    kiwi_status st = read_footer(t, errmsg);
    kw_slice meta[3] = {{NULL, 0}, {NULL, 0}, {NULL, 0}};
    for (int i = 0; i < 3 && st == KIWI_OK; i++)
        st = check_block(t, t->meta_off[i], t->meta_size[i], meta_kind[i], &meta[i], errmsg);
    if (st == KIWI_OK)
        st = parse_props(t, meta[1], errmsg);
    t->index_block = meta[2];
    kw_block b;
    if (st == KIWI_OK && kw_block_parse(&b, meta[2], t->path, t->meta_off[2], "", NULL) == KIWI_OK)
        t->index_restarts = b.restarts_off; /* kw_table_build_index checks it */
    kw_table_index *ix = NULL;
    bool for_cache = cache != NULL && kw_cache_capacity(cache->index) > 0; /* keys copied */
    if (st == KIWI_OK) /* only a cached table ever reads its index in place */
        st = kw_table_build_index(t, meta[2], for_cache, &ix,
                                  cache != NULL ? &t->index_inplace : NULL, errmsg);
    if (st != KIWI_OK)
        return st;
    t->verified = kw_calloc(verified_words(t), sizeof *t->verified);
    size_t key_bytes = 0; /* the index's charge as a cache entry, whichever way it was built */
    for (uint32_t i = 0; cache != NULL && i < ix->nblocks; i++)
        key_bytes += ix->entries[i].key_len;
    t->part[KW_PART_INDEX].charge =
        kw_table_index_size(ix->nblocks, key_bytes) + kw_cache_entry_overhead();
    t->filter = meta[0];
    t->props.file_size = t->map.size;
    t->props.filter_size = t->meta_size[0];
    t->props.index_size = t->meta_size[2];
    t->cache = cache; /* only now: a failed open has nothing in the cache to erase */
    if (cache != NULL)
        t->lease = kw_lease_create();
    kw_table_warm_cache(t, ix, for_cache);
    return KIWI_OK;
}

kiwi_status kw_table_open_cached(const char *path, uint64_t number, kw_block_cache *cache,
                                 kw_table **out, char **errmsg)
{
    *out = NULL;
    kw_table *t = kw_calloc(1, sizeof *t);
    t->refs = 1;
    t->number = number;
    t->path = kw_strdup(path);
    kiwi_status st = kw_mmap_file(path, &t->map, errmsg);
    if (st != KIWI_OK) {
        t->map.data = NULL;
        t->map.size = 0;
    } else {
        st = load_meta(t, cache, errmsg);
    }
    if (st != KIWI_OK) {
        table_free(t);
        return st;
    }
    *out = t;
    return KIWI_OK;
}

kiwi_status kw_table_open(const char *path, uint64_t number, kw_table **out, char **errmsg)
{
    return kw_table_open_cached(path, number, NULL, out, errmsg);
}

void kw_table_ref(kw_table *t)
{
    __atomic_fetch_add(&t->refs, 1, __ATOMIC_RELAXED);
}

void kw_table_unref(kw_table *t)
{
    if (t != NULL && __atomic_fetch_sub(&t->refs, 1, __ATOMIC_ACQ_REL) == 1)
        table_free(t);
}

uint64_t kw_table_number(const kw_table *t)
{
    return t->number;
}

const char *kw_table_path(const kw_table *t)
{
    return t->path;
}

const kw_table_props *kw_table_properties(const kw_table *t)
{
    return &t->props;
}

kw_block_cache *kw_table_cache(const kw_table *t)
{
    return t->cache;
}

uint64_t kw_table_uncharged_bytes(const kw_table *t)
{
    const kw_table_index *ix = __atomic_load_n(&t->own_index, __ATOMIC_ACQUIRE);
    return sizeof *t + strlen(t->path) + 1 + t->props.smallest_len + t->props.largest_len +
           (ix != NULL ? ix->bytes : 0) + (t->lease != NULL ? kw_lease_bytes() : 0) +
           verified_words(t) * sizeof *t->verified;
}

/* ---- verify ---------------------------------------------------------------------------------- */

/* Every data block: CRC (in the map, never the cache), structure (each entry decodes), last
 * key == its index key. */
static kiwi_status verify_data_block(kw_table *t, const kw_table_index_entry *e, char **errmsg)
{
    kw_slice contents;
    kw_block b;
    kiwi_status st = check_block(t, e->offset, e->size, "block", &contents, errmsg);
    if (st == KIWI_OK)
        st = kw_block_parse(&b, contents, t->path, e->offset, "block", errmsg);
    if (st != KIWI_OK)
        return st;
    kw_block_iter it;
    kw_block_iter_init(&it, &b);
    for (kw_iter_seek_to_first(&it.base); it.valid; kw_iter_next(&it.base)) {
    }
    kw_iter_seek_to_last(&it.base);
    st = kw_iter_status(&it.base, errmsg);
    if (st == KIWI_OK && (!it.valid || kw_slice_compare(it.key, kw_slice_make(e->key, e->key_len)) != 0))
        st = kw_error(errmsg, KIWI_CORRUPTION,
                      "%s: block at offset %" PRIu64 ": last key differs from its index entry",
                      t->path, e->offset);
    kw_block_iter_cleanup(&it);
    return st;
}

/* The index is rebuilt from the map for the walk, so it is checked again too. */
kiwi_status kw_table_verify(kw_table *t, char **errmsg)
{
    kw_table_index *ix = NULL;
    kiwi_status st = kw_table_rebuild_index(t, false, &ix, errmsg);
    for (uint32_t i = 0; st == KIWI_OK && i < ix->nblocks; i++)
        st = verify_data_block(t, &ix->entries[i], errmsg);
    free(ix);
    kw_slice unused;
    for (int i = 0; i < 3 && st == KIWI_OK; i++)
        st = check_block(t, t->meta_off[i], t->meta_size[i], meta_kind[i], &unused, errmsg);
    const char *f = t->map.data + t->map.size - KW_TABLE_FOOTER_SIZE;
    if (st == KIWI_OK && kw_decode_fixed32(f + 52) != kw_crc32c(f, 52))
        st = kw_error(errmsg, KIWI_CORRUPTION, "%s: footer at offset %zu: checksum mismatch",
                      t->path, t->map.size - KW_TABLE_FOOTER_SIZE);
    return st;
}
