/*
 * memtable.c: the memtable of memtable.h: entry encoding, lookups, counters, reference counting
 * and the internal iterator, over the concurrent skip list of skiplist.h.
 *
 * Entry layout (inline in the skip-list node, see docs/internals/memtable.md):
 *
 *     +---------------------+-----------------------------+----------------------+--------+
 *     | varint32 ikey_len   | user key | 8-byte trailer   | varint32 value_len   | value  |
 *     +---------------------+-----------------------------+----------------------+--------+
 *                           <-------- ikey_len ---------->                       <- vlen ->
 */
#include "memtable.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "arena.h"
#include "skiplist.h"

struct kw_memtable {
    uint64_t id;                     /* the db's memtable number, for introspection */
    _Atomic uint64_t refs;           /* owners; the last unref frees everything */
    kw_arena *arena;                 /* every node, key and value */
    kw_skiplist *list;               /* entries ordered by kw_ikey_compare */
    _Atomic uint64_t entries;        /* adds, tombstones included */
    _Atomic uint64_t tombstones;     /* adds of KW_TYPE_DELETE */
    _Atomic uint64_t user_bytes;     /* sum of user key + value sizes added */
};

/* ---- entry encoding ----------------------------------------------------------------------- */

/* The internal key of an entry. Entries are written by this file, so they are trusted. */
static kw_slice entry_ikey(const char *entry)
{
    if ((uint8_t)entry[0] < 0x80) /* one-byte length: keys under 120 bytes, the common case */
        return kw_slice_make(entry + 1, (uint8_t)entry[0]);
    uint32_t len = 0;
    const char *p = kw_decode_varint32(entry, entry + KW_MAX_VARINT32, &len);
    return kw_slice_make(p, len);
}

static kw_slice entry_value(const char *entry)
{
    kw_slice ikey = entry_ikey(entry);
    const char *p = ikey.data + ikey.size;
    uint32_t len = 0;
    p = kw_decode_varint32(p, p + KW_MAX_VARINT32, &len);
    return kw_slice_make(p, len);
}

/* Lengths are varint32 in the entry: a longer key or value is a caller bug, not an I/O error. */
static void check_sizes(kw_slice key, kw_slice value)
{
    if (key.size > UINT32_MAX - KW_TRAILER_SIZE || value.size > UINT32_MAX) {
        fprintf(stderr, "kiwi: memtable.c: key (%zu bytes) or value (%zu bytes) over 4 GiB\n",
                key.size, value.size);
        abort();
    }
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

kw_memtable *kw_memtable_create(uint64_t id)
{
    kw_memtable *m = kw_calloc(1, sizeof *m);
    m->id = id;
    atomic_init(&m->refs, 1);
    m->arena = kw_arena_create(0);
    m->list = kw_skiplist_create(m->arena, entry_ikey, kw_ikey_compare);
    atomic_init(&m->entries, 0);
    atomic_init(&m->tombstones, 0);
    atomic_init(&m->user_bytes, 0);
    return m;
}

void kw_memtable_ref(kw_memtable *m)
{
    atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
}

void kw_memtable_unref(kw_memtable *m)
{
    /* acq_rel: every owner's last use happens before the free by whoever drops the last ref. */
    uint64_t old = atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel);
    if (old == 1) {
        kw_arena_destroy(m->arena); /* the skip list lives in the arena */
        free(m);
    }
}

uint64_t kw_memtable_id(const kw_memtable *m)
{
    return m->id;
}

/* ---- add and get -------------------------------------------------------------------------- */

void kw_memtable_add(kw_memtable *m, uint64_t seq, kw_value_type type, kw_slice key,
                     kw_slice value)
{
    check_sizes(key, value);
    size_t ikey_len = key.size + KW_TRAILER_SIZE;
    size_t size = kw_varint_length(ikey_len) + ikey_len + kw_varint_length(value.size) + value.size;
    kw_sl_node *node = kw_skiplist_new_node(m->list, size);

    char *p = kw_sl_node_entry(node);
    p += kw_encode_varint32(p, (uint32_t)ikey_len);
    if (key.size)
        memcpy(p, key.data, key.size);
    kw_encode_fixed64(p + key.size, kw_pack_trailer(seq, type));
    p += ikey_len;
    p += kw_encode_varint32(p, (uint32_t)value.size);
    if (value.size)
        memcpy(p, value.data, value.size);

    if (!kw_skiplist_insert(m->list, node)) {
        fprintf(stderr, "kiwi: memtable.c: duplicate (key, seq %llu) added to memtable %llu\n",
                (unsigned long long)seq, (unsigned long long)m->id);
        abort(); /* REQUIRES of kw_memtable_add broken: the db assigns each seq once */
    }
    atomic_fetch_add_explicit(&m->entries, 1, memory_order_relaxed);
    if (type == KW_TYPE_DELETE)
        atomic_fetch_add_explicit(&m->tombstones, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->user_bytes, key.size + value.size, memory_order_relaxed);
}

kw_lookup kw_memtable_get(kw_memtable *m, kw_slice key, uint64_t seq, kw_slice *value)
{
    /* The seek key (key, seq, KW_TYPE_FOR_SEEK) sorts just before every version <= seq. */
    char stack[256];
    size_t n = key.size + KW_TRAILER_SIZE;
    char *buf = n <= sizeof stack ? stack : kw_malloc(n);
    if (key.size)
        memcpy(buf, key.data, key.size);
    kw_encode_fixed64(buf + key.size, kw_pack_trailer(seq, KW_TYPE_FOR_SEEK));

    kw_skiplist_iter it;
    kw_skiplist_iter_init(&it, m->list);
    kw_skiplist_iter_seek(&it, kw_slice_make(buf, n));
    if (buf != stack)
        free(buf);

    if (!kw_skiplist_iter_valid(&it))
        return KW_LOOKUP_MISS;
    const char *entry = kw_skiplist_iter_entry(&it);
    kw_slice ikey = entry_ikey(entry);
    if (kw_slice_compare(kw_ikey_user(ikey), key) != 0)
        return KW_LOOKUP_MISS; /* the next entry belongs to another user key */
    if (kw_ikey_type(ikey) == KW_TYPE_DELETE)
        return KW_LOOKUP_DELETED;
    if (value)
        *value = entry_value(entry);
    return KW_LOOKUP_FOUND;
}

/* ---- counters ----------------------------------------------------------------------------- */

size_t kw_memtable_approx_bytes(const kw_memtable *m)
{
    return kw_arena_memory_usage(m->arena);
}

uint64_t kw_memtable_entries(const kw_memtable *m)
{
    return atomic_load_explicit((_Atomic uint64_t *)&m->entries, memory_order_relaxed);
}

uint64_t kw_memtable_tombstones(const kw_memtable *m)
{
    return atomic_load_explicit((_Atomic uint64_t *)&m->tombstones, memory_order_relaxed);
}

uint64_t kw_memtable_user_bytes(const kw_memtable *m)
{
    return atomic_load_explicit((_Atomic uint64_t *)&m->user_bytes, memory_order_relaxed);
}

/* ---- iterator ----------------------------------------------------------------------------- */

typedef struct {
    kw_iter base;         /* must be first: the kw_iter the caller holds */
    kw_memtable *m;       /* one reference, dropped by destroy */
    kw_skiplist_iter pos; /* the current entry */
} mt_iter;

static bool mt_valid(kw_iter *i)
{
    return kw_skiplist_iter_valid(&((mt_iter *)i)->pos);
}

static void mt_seek_to_first(kw_iter *i)
{
    kw_skiplist_iter_seek_to_first(&((mt_iter *)i)->pos);
}

static void mt_seek_to_last(kw_iter *i)
{
    kw_skiplist_iter_seek_to_last(&((mt_iter *)i)->pos);
}

static void mt_seek(kw_iter *i, kw_slice ikey)
{
    kw_skiplist_iter_seek(&((mt_iter *)i)->pos, ikey);
}

static void mt_next(kw_iter *i)
{
    kw_skiplist_iter_next(&((mt_iter *)i)->pos);
}

static void mt_prev(kw_iter *i)
{
    kw_skiplist_iter_prev(&((mt_iter *)i)->pos);
}

static kw_slice mt_key(kw_iter *i)
{
    return entry_ikey(kw_skiplist_iter_entry(&((mt_iter *)i)->pos));
}

static kw_slice mt_value(kw_iter *i)
{
    return entry_value(kw_skiplist_iter_entry(&((mt_iter *)i)->pos));
}

static kiwi_status mt_status(kw_iter *i, char **errmsg)
{
    return KIWI_OK; /* memory cannot be corrupt in a way we could detect */
}

static void mt_destroy(kw_iter *i)
{
    mt_iter *it = (mt_iter *)i;
    kw_memtable_unref(it->m);
    free(it);
}

static const kw_iter_ops mt_iter_ops = {
    .valid = mt_valid,
    .seek_to_first = mt_seek_to_first,
    .seek_to_last = mt_seek_to_last,
    .seek = mt_seek,
    .next = mt_next,
    .prev = mt_prev,
    .key = mt_key,
    .value = mt_value,
    .status = mt_status,
    .destroy = mt_destroy,
};

kw_iter *kw_memtable_iter(kw_memtable *m)
{
    mt_iter *it = kw_malloc(sizeof *it);
    it->base.ops = &mt_iter_ops;
    it->m = m;
    kw_memtable_ref(m);
    kw_skiplist_iter_init(&it->pos, m->list);
    return &it->base;
}
