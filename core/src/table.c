/*
 * table.c: the SSTable reader (table.h): mmap, footer/index/filter/properties checks at open,
 * point lookups, the two-level iterator and full verification.
 *
 * Invariants of an open kw_table (all checked by kw_table_open):
 *   - map holds the whole file; footer magic, version and CRC are good; the filter, properties
 *     and index blocks lie back to back before the footer and their CRCs are good.
 *   - index[0..nblocks) are the data blocks in file order, back to back from offset 0 to
 *     data_end (== the filter's offset); their keys (each block's last internal key) strictly
 *     increase; nblocks == props.data_blocks >= 1; the last index key == props.largest.
 *   - nothing changes after open, so lookups and iterators need no lock.
 */
#include "table.h"

#include <inttypes.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#include "block.h"
#include "bloom.h"
#include "coding.h"
#include "crc32c.h"
#include "dbformat.h"
#include "env.h"

typedef struct {
    const char *key;  /* the block's last internal key (into the map, or into key_copies) */
    size_t key_len;
    uint64_t offset;  /* where the block starts */
    uint64_t size;    /* block size, trailer excluded */
} index_entry;

struct kw_table {
    int refs;                  /* atomic (__atomic builtins) */
    uint64_t number;
    char *path;
    kw_mmap map;
    index_entry *index;        /* one per data block, in order */
    uint32_t nblocks;
    char *key_copies;          /* index keys that were prefix-compressed, reassembled */
    kw_slice filter;           /* the filter block's contents */
    bool filter_usable;        /* the filter's name is one this reader knows */
    uint64_t data_end;         /* end of the last data block's trailer == filter offset */
    uint64_t meta_off[3];      /* filter, properties, index block offsets */
    uint64_t meta_size[3];
    kw_table_props props;
};

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

/* Bounds-checks the block at off (size bytes + trailer), checks its CRC and compression type. */
static kiwi_status check_block(const kw_table *t, uint64_t off, uint64_t size, const char *kind,
                               kw_slice *out, char **errmsg)
{
    uint64_t fsize = t->map.size;
    if (off > fsize || size > fsize - off || fsize - off - size < KW_TABLE_TRAILER_SIZE)
        return kw_error(errmsg, KIWI_CORRUPTION,
                        "%s: %s at offset %" PRIu64 ": size %" PRIu64
                        " runs past the end of the file",
                        t->path, kind, off, size);
    const char *p = t->map.data + off;
    uint32_t stored = kw_decode_fixed32(p + size + 1);
    if (kw_crc32c_extend(kw_crc32c(p, size), p + size, 1) != stored)
        return kw_error(errmsg, KIWI_CORRUPTION, "%s: %s at offset %" PRIu64 ": checksum mismatch",
                        t->path, kind, off);
    if (p[size] != 0)
        return kw_error(errmsg, KIWI_CORRUPTION,
                        "%s: %s at offset %" PRIu64 ": unknown compression type %u", t->path, kind,
                        off, (unsigned)(uint8_t)p[size]);
    *out = kw_slice_make(p, size);
    return KIWI_OK;
}

/* CRC check + parse of data block i. */
static kiwi_status load_data_block(const kw_table *t, uint32_t i, kw_block *b, char **errmsg)
{
    kw_slice contents = {NULL, 0};
    kiwi_status st = check_block(t, t->index[i].offset, t->index[i].size, "block", &contents,
                                 errmsg);
    if (st != KIWI_OK)
        return st;
    return kw_block_parse(b, contents, t->path, t->index[i].offset, "block", errmsg);
}

/* The first block whose last key is >= target, or nblocks. */
static uint32_t find_block(const kw_table *t, kw_slice target)
{
    uint32_t lo = 0, hi = t->nblocks;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (kw_ikey_compare(kw_slice_make(t->index[mid].key, t->index[mid].key_len), target) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
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

static kiwi_status parse_props(kw_table *t, kw_slice block, char **errmsg)
{
    const char *problem = NULL;
    uint64_t format = 0;
    unsigned seen = 0;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t pos = 0;
    if (msgpack_unpack_next(&u, block.data, block.size, &pos) != MSGPACK_UNPACK_SUCCESS ||
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

/* ---- open: index ----------------------------------------------------------------------------- */

static kiwi_status index_problem(kw_table *t, uint32_t i, const char *what, char **errmsg)
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

/* Checks entry i (the iterator's current one) and stores it in t->index[i]. Keys stored whole
 * point into the map; reassembled ones are copied to *copy_pos. */
static kiwi_status add_index_entry(kw_table *t, uint32_t i, kw_block_iter *it, kw_slice contents,
                                   char **copy_pos, char **errmsg)
{
    kw_slice key = it->key, v = it->value;
    uint64_t off, size;
    const char *p = kw_decode_varint64(v.data, v.data + v.size, &off);
    if (p != NULL)
        p = kw_decode_varint64(p, v.data + v.size, &size);
    if (p == NULL || p != v.data + v.size)
        return index_problem(t, i, "malformed block handle", errmsg);
    const index_entry *prev = i > 0 ? &t->index[i - 1] : NULL;
    uint64_t expect = prev ? prev->offset + prev->size + KW_TABLE_TRAILER_SIZE : 0;
    if (off != expect || size > t->data_end - off ||
        t->data_end - off - size < KW_TABLE_TRAILER_SIZE)
        return index_problem(t, i, "block handle does not follow the previous block", errmsg);
    if (prev && kw_ikey_compare(kw_slice_make(prev->key, prev->key_len), key) >= 0)
        return index_problem(t, i, "keys out of order", errmsg);
    index_entry *e = &t->index[i];
    e->key_len = key.size;
    e->offset = off;
    e->size = size;
    if (key_is_inside(key, contents)) {
        e->key = key.data;
    } else {
        memcpy(*copy_pos, key.data, key.size);
        e->key = *copy_pos;
        *copy_pos += key.size;
    }
    return KIWI_OK;
}

/* Pass 1 counts the entries and the bytes of keys that need a copy; pass 2 checks and stores. */
static kiwi_status load_index(kw_table *t, kw_slice contents, char **errmsg)
{
    kw_block b;
    kiwi_status st = kw_block_parse(&b, contents, t->path, t->meta_off[2], "index block", errmsg);
    if (st != KIWI_OK)
        return st;
    kw_block_iter it;
    kw_block_iter_init(&it, &b);
    uint64_t n = 0, copy_bytes = 0;
    for (kw_iter_seek_to_first(&it.base); it.valid; kw_iter_next(&it.base)) {
        n++;
        if (!key_is_inside(it.key, contents))
            copy_bytes += it.key.size;
    }
    st = kw_iter_status(&it.base, errmsg);
    if (st == KIWI_OK && n != t->props.data_blocks)
        st = index_problem(t, (uint32_t)(n < UINT32_MAX ? n : UINT32_MAX),
                           "entry count differs from the properties' data_blocks", errmsg);
    if (st == KIWI_OK) {
        t->index = kw_malloc(n * sizeof *t->index);
        t->key_copies = kw_malloc(copy_bytes);
        char *copy_pos = t->key_copies;
        uint32_t i = 0;
        for (kw_iter_seek_to_first(&it.base); st == KIWI_OK && it.valid; kw_iter_next(&it.base))
            st = add_index_entry(t, i++, &it, contents, &copy_pos, errmsg);
        if (st == KIWI_OK)
            st = kw_iter_status(&it.base, errmsg);
        t->nblocks = i;
    }
    kw_block_iter_cleanup(&it);
    if (st != KIWI_OK)
        return st;
    const index_entry *last = &t->index[t->nblocks - 1];
    if (last->offset + last->size + KW_TABLE_TRAILER_SIZE != t->data_end)
        return index_problem(t, t->nblocks - 1, "data blocks do not reach the filter block",
                             errmsg);
    if (kw_slice_compare(kw_slice_make(last->key, last->key_len),
                         kw_slice_make(t->props.largest, t->props.largest_len)) != 0)
        return index_problem(t, t->nblocks - 1, "last key differs from the properties' largest",
                             errmsg);
    return KIWI_OK;
}

/* ---- open / close ---------------------------------------------------------------------------- */

static void table_free(kw_table *t)
{
    kw_munmap(&t->map);
    kw_table_props_free(&t->props);
    free(t->index);
    free(t->key_copies);
    free(t->path);
    free(t);
}

/* Footer, then the three meta blocks' CRCs, properties, index, filter. */
static kiwi_status load_meta(kw_table *t, char **errmsg)
{
    kiwi_status st = read_footer(t, errmsg);
    kw_slice meta[3] = {{NULL, 0}, {NULL, 0}, {NULL, 0}};
    for (int i = 0; i < 3 && st == KIWI_OK; i++)
        st = check_block(t, t->meta_off[i], t->meta_size[i], meta_kind[i], &meta[i], errmsg);
    if (st == KIWI_OK)
        st = parse_props(t, meta[1], errmsg);
    if (st == KIWI_OK)
        st = load_index(t, meta[2], errmsg);
    if (st != KIWI_OK)
        return st;
    t->filter = meta[0];
    t->props.file_size = t->map.size;
    t->props.filter_size = t->meta_size[0];
    t->props.index_size = t->meta_size[2];
    return KIWI_OK;
}

kiwi_status kw_table_open(const char *path, uint64_t number, kw_table **out, char **errmsg)
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
        st = load_meta(t, errmsg);
    }
    if (st != KIWI_OK) {
        table_free(t);
        return st;
    }
    *out = t;
    return KIWI_OK;
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

/* ---- point lookup ---------------------------------------------------------------------------- */

/* The newest entry <= (ukey, seq) is the first entry >= target = ukey + trailer(seq, FOR_SEEK).
 * find_block returns the first block whose last key is >= target; every earlier block holds only
 * keys < target, and this block holds at least one key >= target, so the entry we want is in this
 * block or nowhere (a next block never needs to be read). */
static kiwi_status search_block(kw_table *t, uint32_t bi, kw_slice ukey, kw_slice target,
                                kw_lookup *result, kw_slice *value, char **errmsg)
{
    kw_block b;
    kiwi_status st = load_data_block(t, bi, &b, errmsg);
    if (st != KIWI_OK)
        return st;
    kw_block_iter it;
    kw_block_iter_init(&it, &b);
    kw_iter_seek(&it.base, target);
    if (!it.valid) {
        st = kw_iter_status(&it.base, errmsg);
        if (st == KIWI_OK)
            st = kw_error(errmsg, KIWI_CORRUPTION,
                          "%s: block at offset %" PRIu64 ": no key reaches the block's index key",
                          t->path, t->index[bi].offset);
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
                          t->index[bi].offset, (int)type);
        }
    }
    kw_block_iter_cleanup(&it);
    return st;
}

kiwi_status kw_table_get(kw_table *t, kw_slice ukey, uint64_t seq, kw_lookup *result,
                         kw_slice *value, kw_table_lookup_info *info, char **errmsg)
{
    kw_table_lookup_info scratch;
    if (info == NULL)
        info = &scratch;
    memset(info, 0, sizeof *info);
    *result = KW_LOOKUP_MISS;
    *value = kw_slice_make(NULL, 0);
    info->bloom_may_contain = !t->filter_usable || kw_bloom_may_contain(t->filter, ukey);
    if (!info->bloom_may_contain)
        return KIWI_OK;

    char stackbuf[512];
    size_t tlen = ukey.size + KW_TRAILER_SIZE;
    char *tbuf = tlen <= sizeof stackbuf ? stackbuf : kw_malloc(tlen);
    if (ukey.size)
        memcpy(tbuf, ukey.data, ukey.size);
    kw_encode_fixed64(tbuf + ukey.size,
                      kw_pack_trailer(seq > KW_MAX_SEQ ? KW_MAX_SEQ : seq, KW_TYPE_FOR_SEEK));
    kw_slice target = kw_slice_make(tbuf, tlen);

    kiwi_status st = KIWI_OK;
    uint32_t bi = find_block(t, target);
    if (bi < t->nblocks) { /* else target > the table's largest key */
        info->block_read = true;
        info->block_index = bi;
        info->block_offset = t->index[bi].offset;
        info->block_size = t->index[bi].size;
        st = search_block(t, bi, ukey, target, result, value, errmsg);
    }
    if (tbuf != stackbuf)
        free(tbuf);
    return st;
}

/* ---- two-level iterator ---------------------------------------------------------------------- *
 * index position `pos` + a block iterator over that data block. Invariant: valid <=> status OK,
 * pos < nblocks and the block iterator is valid. Errors are sticky. */

typedef struct {
    kw_iter base;
    kw_table *t;
    uint32_t pos;       /* the loaded data block; nblocks when none */
    kw_block_iter data; /* over index[pos] */
    kiwi_status status;
    char *errmsg;
} table_iter;

static void ti_set_invalid(table_iter *it)
{
    it->pos = it->t->nblocks;
    it->data.valid = false;
}

/* Loads data block i (CRC checked) into the block iterator; false on error. */
static bool ti_load(table_iter *it, uint32_t i)
{
    kw_block b;
    if (it->status == KIWI_OK)
        it->status = load_data_block(it->t, i, &b, &it->errmsg);
    if (it->status != KIWI_OK) {
        ti_set_invalid(it);
        return false;
    }
    kw_block_iter_reset(&it->data, &b);
    it->pos = i;
    return true;
}

/* After the block iterator ran off its block: take its error, or move to the next/previous
 * block, until an entry is found or the table ends. */
static void ti_settle(table_iter *it, bool forward)
{
    while (it->pos < it->t->nblocks && !it->data.valid) {
        if (kw_iter_status(&it->data.base, &it->errmsg) != KIWI_OK) {
            it->status = KIWI_CORRUPTION;
            ti_set_invalid(it);
            return;
        }
        bool more = forward ? it->pos + 1 < it->t->nblocks : it->pos > 0;
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
    return it->status == KIWI_OK && it->pos < it->t->nblocks && it->data.valid;
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
    if (!ti_load(it, it->t->nblocks - 1))
        return;
    kw_iter_seek_to_last(&it->data.base);
    ti_settle(it, false);
}

static void ti_seek(kw_iter *base, kw_slice target)
{
    table_iter *it = (table_iter *)base;
    uint32_t bi = find_block(it->t, target);
    if (bi >= it->t->nblocks) {
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
    free(it->errmsg);
    kw_table_unref(it->t);
    free(it);
}

static const kw_iter_ops table_iter_ops = {
    ti_valid, ti_seek_to_first, ti_seek_to_last, ti_seek, ti_next,
    ti_prev,  ti_key,           ti_value,        ti_status, ti_destroy,
};

kw_iter *kw_table_iter(kw_table *t)
{
    table_iter *it = kw_calloc(1, sizeof *it);
    it->base.ops = &table_iter_ops;
    kw_table_ref(t);
    it->t = t;
    kw_block empty;
    memset(&empty, 0, sizeof empty);
    kw_block_iter_init(&it->data, &empty);
    it->pos = t->nblocks;
    return &it->base;
}

/* ---- verify ---------------------------------------------------------------------------------- */

/* Every data block: CRC, structure (each entry decodes), last key == its index key. */
static kiwi_status verify_data_block(kw_table *t, uint32_t i, char **errmsg)
{
    kw_block b;
    kiwi_status st = load_data_block(t, i, &b, errmsg);
    if (st != KIWI_OK)
        return st;
    kw_block_iter it;
    kw_block_iter_init(&it, &b);
    for (kw_iter_seek_to_first(&it.base); it.valid; kw_iter_next(&it.base)) {
    }
    kw_iter_seek_to_last(&it.base);
    st = kw_iter_status(&it.base, errmsg);
    kw_slice ikey = kw_slice_make(t->index[i].key, t->index[i].key_len);
    if (st == KIWI_OK && (!it.valid || kw_slice_compare(it.key, ikey) != 0))
        st = kw_error(errmsg, KIWI_CORRUPTION,
                      "%s: block at offset %" PRIu64 ": last key differs from its index entry",
                      t->path, t->index[i].offset);
    kw_block_iter_cleanup(&it);
    return st;
}

kiwi_status kw_table_verify(kw_table *t, char **errmsg)
{
    kiwi_status st = KIWI_OK;
    for (uint32_t i = 0; i < t->nblocks && st == KIWI_OK; i++)
        st = verify_data_block(t, i, errmsg);
    kw_slice unused;
    for (int i = 0; i < 3 && st == KIWI_OK; i++)
        st = check_block(t, t->meta_off[i], t->meta_size[i], meta_kind[i], &unused, errmsg);
    if (st == KIWI_OK) {
        const char *f = t->map.data + t->map.size - KW_TABLE_FOOTER_SIZE;
        if (kw_decode_fixed32(f + 52) != kw_crc32c(f, 52))
            st = kw_error(errmsg, KIWI_CORRUPTION, "%s: footer at offset %zu: checksum mismatch",
                          t->path, t->map.size - KW_TABLE_FOOTER_SIZE);
    }
    return st;
}
