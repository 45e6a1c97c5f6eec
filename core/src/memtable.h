/*
 * memtable.h: the in-memory write buffer: a concurrent skip list of internal keys over an arena.
 *
 * Thread safety: kw_memtable_add may be called by several threads at once (inserts link nodes
 * with CAS, level by level from the bottom, so a reader never sees a half-linked node);
 * kw_memtable_get, iterators and the counters take no lock and may run concurrently with adds.
 * The memtable is reference counted: the db holds one reference while it is active or queued for
 * flush, and every reader/iterator holds one while it uses it. Memory (keys, values) stays valid
 * until the last reference is dropped.
 *
 * REQUIRES for add: each (user key, sequence) pair is added at most once.
 */
#ifndef KW_MEMTABLE_H
#define KW_MEMTABLE_H

#include <stdint.h>

#include "common.h"
#include "dbformat.h"
#include "iterator.h"

typedef struct kw_memtable kw_memtable;

typedef enum {
    KW_LOOKUP_MISS = 0, /* no version of the key visible at the sequence */
    KW_LOOKUP_FOUND,    /* the newest visible version is a value */
    KW_LOOKUP_DELETED   /* the newest visible version is a tombstone */
} kw_lookup;

kw_memtable *kw_memtable_create(uint64_t id); /* reference count 1 */
void kw_memtable_ref(kw_memtable *m);
void kw_memtable_unref(kw_memtable *m);        /* frees at zero */
uint64_t kw_memtable_id(const kw_memtable *m);

void kw_memtable_add(kw_memtable *m, uint64_t seq, kw_value_type type, kw_slice key,
                     kw_slice value);
/* The newest version of key with sequence <= seq. On KW_LOOKUP_FOUND *value points into the
 * memtable (valid while the caller holds a reference). */
kw_lookup kw_memtable_get(kw_memtable *m, kw_slice key, uint64_t seq, kw_slice *value);

/* Counters, safe to read at any time (approximate while adds run). */
size_t kw_memtable_approx_bytes(const kw_memtable *m); /* arena memory in use */
uint64_t kw_memtable_entries(const kw_memtable *m);
uint64_t kw_memtable_tombstones(const kw_memtable *m);
uint64_t kw_memtable_user_bytes(const kw_memtable *m); /* sum of key + value sizes added */

/* An internal iterator over every entry (all versions, tombstones included). It holds a
 * reference to the memtable until destroyed. */
kw_iter *kw_memtable_iter(kw_memtable *m);

#endif /* KW_MEMTABLE_H */
