/*
 * cache.h: a sharded LRU cache with byte budgets, and the three-tier block cache built from it.
 *
 * kw_cache maps a key (file number, offset) to a value the caller allocated, charged a number of
 * bytes against the cache's capacity. docs/internals/cache.md explains the design.
 *
 *   - Sharding: 16 shards chosen by a hash of the key, each with its own mutex, hash table and
 *     doubly linked LRU list, so threads touching different keys rarely meet. The capacity is one
 *     budget for the whole cache (not split per shard): an entry as large as the whole budget
 *     still fits, and eviction takes the least recently used entry across every shard (the
 *     oldest tail of the 16 LRU lists), which is exact LRU for one thread.
 *   - Handles: lookup and insert return a pinned handle; the value stays valid until the handle
 *     is released. An entry in use is never freed: eviction, erase, replacement and a capacity
 *     shrink only detach it (lookups no longer find it), and its deleter runs at the last release.
 *   - Accounting: `usage` is the charge of every value the cache owns and has not freed yet,
 *     detached-but-pinned ones included, so it is the memory the cache really holds. Eviction runs
 *     until usage <= capacity or nothing unpinned is left (pinned entries may hold it over).
 *   - An entry whose charge exceeds the capacity is not kept: insert returns NULL and the value
 *     stays the caller's (counted in `rejects`). Capacity 0 therefore disables a cache: lookups
 *     miss and nothing is kept.
 *
 * Thread safety: every function may be called from any thread at any time, except
 * kw_cache_destroy. Counters are atomics, readable at any time without a lock (a snapshot of
 * several counters is not one instant).
 */
#ifndef KW_CACHE_H
#define KW_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

#define KW_CACHE_SHARDS 16

typedef struct kw_cache kw_cache;
typedef struct kw_cache_handle kw_cache_handle;

/* Frees a value when the cache drops it (called without any cache lock held). */
typedef void (*kw_cache_deleter)(void *value);

typedef struct {
    uint64_t hits;      /* lookups that found their key */
    uint64_t misses;    /* lookups that did not */
    uint64_t inserts;   /* entries added (a replacement counts as one insert) */
    uint64_t evictions; /* entries dropped to stay within the capacity (not erases) */
    uint64_t rejects;   /* inserts not kept: charge > capacity (including capacity 0) */
    uint64_t usage;     /* bytes charged by values the cache holds (pinned detached ones too) */
    uint64_t pinned;    /* of usage, bytes of entries held by at least one handle */
    uint64_t capacity;  /* the budget in bytes */
    uint64_t entries;   /* entries lookups can find */
} kw_cache_stats;

kw_cache *kw_cache_create(size_t capacity);
/* Frees every entry. REQUIRES: no handle is held. */
void kw_cache_destroy(kw_cache *c);

/* A pinned handle to the entry for (file, offset), or NULL (a miss). Counts a hit or a miss. */
kw_cache_handle *kw_cache_lookup(kw_cache *c, uint64_t file, uint64_t offset);

/* Adds value under (file, offset), replacing any entry with that key, and returns a pinned
 * handle to it. The cache owns value from then on and calls deleter(value) when the entry is
 * gone and unpinned. Returns NULL if charge > capacity: nothing is kept, the value stays the
 * caller's. May evict other entries (never pinned ones) to get back within the capacity. */
kw_cache_handle *kw_cache_insert(kw_cache *c, uint64_t file, uint64_t offset, void *value,
                                 size_t charge, kw_cache_deleter deleter);

/* The value of a handle. REQUIRES: h is held. */
void *kw_cache_value(const kw_cache_handle *h);

/* Unpins h (NULL is a no-op). An entry still in the cache becomes the most recently used; a
 * detached entry is freed at its last release. */
void kw_cache_release(kw_cache *c, kw_cache_handle *h);

/* Drops the entry for (file, offset) / every entry of file, if any. Pinned entries are detached
 * and freed at their last release. erase_file walks every shard: O(entries). */
void kw_cache_erase(kw_cache *c, uint64_t file, uint64_t offset);
void kw_cache_erase_file(kw_cache *c, uint64_t file);

/* Changes the budget; shrinking evicts unpinned entries at once (pinned ones as they are
 * released). */
void kw_cache_set_capacity(kw_cache *c, size_t capacity);
size_t kw_cache_capacity(const kw_cache *c);

void kw_cache_get_stats(const kw_cache *c, kw_cache_stats *out);

/* The bytes of bookkeeping the cache allocates per entry; callers that want their charges to
 * cover every byte add it to the charge. */
size_t kw_cache_entry_overhead(void);

/* For holders that read an entry without a handle (leases, below): counts `hits` hits on the
 * entry's shard and, if the entry is present and unpinned, makes it the most recently used.
 * Returns whether it is present. */
bool kw_cache_touch(kw_cache *c, uint64_t file, uint64_t offset, uint64_t hits);
/* Counts n misses on the key's shard: reads that did without the entry and did not look. */
void kw_cache_count_misses(kw_cache *c, uint64_t file, uint64_t offset, uint64_t n);

/* ---- leases: reading a few cached values with no lock ----------------------------------------- *
 * A holder that reads the same few cache values on every operation (a table: its index and its
 * filter) publishes them in a lease. A reader enters a read section (one atomic add on a per-CPU
 * counter of the lease), loads the published pointer, uses the value and leaves: no cache lock,
 * no cache line shared with other CPUs written. The entries stay unpinned and evictable: their
 * deleter calls kw_lease_retire, which unpublishes the value and waits until every reader that
 * was inside a section has left before the value is freed.
 * Rules: publish only while holding a handle to the value's entry (so its deleter, which runs
 * after the last release, comes after the publish); a section holds no lock and calls no cache
 * function (so a deleter never waits for a thread that waits for it). docs/internals/cache.md
 * section 5 has the argument. */
#define KW_LEASE_SLOTS 8   /* per-CPU reader counters */
#define KW_LEASE_PARTS 2   /* published values per lease */
#define KW_LEASE_COUNTERS 4 /* use counters per slot, reported in batches */
#define KW_LEASE_BATCH 64

typedef struct kw_lease kw_lease;
typedef struct {
    uint64_t *word; /* the slot entered */
} kw_lease_section;

kw_lease *kw_lease_create(void); /* one reference */
void kw_lease_ref(kw_lease *l);
void kw_lease_unref(kw_lease *l);
size_t kw_lease_bytes(void); /* the memory one lease takes */
/* Makes value the published one of part (replacing any). REQUIRES: the caller holds a handle to
 * the entry whose value it is, and that value's deleter calls kw_lease_retire(l, part, value). */
void kw_lease_publish(kw_lease *l, int part, void *value);
/* For the deleter of a published value: unpublishes it (if still published) and waits for the
 * readers inside a section to leave. REQUIRES: not inside a section of l. */
void kw_lease_retire(kw_lease *l, int part, void *value);
/* Enters a read section and returns the published value of part, or NULL. Until
 * kw_lease_leave the value stays valid. */
void *kw_lease_enter(kw_lease *l, int part, kw_lease_section *s);
/* Leaves the section, counting one use on counter (0 .. KW_LEASE_COUNTERS-1, or -1: none).
 * Returns true once every KW_LEASE_BATCH uses of that counter in the slot: the caller then
 * reports the batch (e.g. kw_cache_touch with KW_LEASE_BATCH hits). */
bool kw_lease_leave(kw_lease_section *s, int counter);

/* What a lookup found in one tier, for traces. */
typedef enum {
    KW_CACHE_NONE = 0, /* the tier was not consulted (e.g. the bloom filter ruled the key out) */
    KW_CACHE_OFF,      /* no cache, or the tier's budget is 0: read as without a cache */
    KW_CACHE_HIT,
    KW_CACHE_MISS,
    KW_CACHE_MAPPED /* data blocks: read in place from the table's mapping, the tier not asked */
} kw_cache_result;

/* "none", "off", "hit", "miss", "mapped" */
const char *kw_cache_result_name(kw_cache_result r);

/* ---- the block cache: three independent tiers ------------------------------------------------ *
 * Each tier is a kw_cache with its own budget; set_capacity/get_stats work on a tier directly,
 * e.g. kw_cache_set_capacity(bc->data, bytes). Keys are (table file number, block offset).
 * What each tier holds is described in table.h and docs/internals/cache.md. */
typedef struct kw_buffer_pool kw_buffer_pool;

typedef struct {
    kw_cache *data;       /* verified copies of data blocks (data_reads "cached") */
    kw_cache *index;      /* parsed index arrays, one per table */
    kw_cache *bloom;      /* verified copies of bloom filter blocks, one per table */
    kw_buffer_pool *pool; /* recycled buffers for the data blocks' copies */
    int data_cached;      /* atomic: the data_reads mode, KW_DATA_READS_* */
    uint64_t verified;    /* atomic: data blocks whose CRC was checked in a mapping */
} kw_block_cache;

/* How tables read data blocks (the `data_reads` setting; cache.md):
 *   IN_PLACE (default): in place in the table's mapping, the CRC checked the first time each
 *            block is read after the table was opened (a bit per block); the data tier is not
 *            consulted, so it holds nothing.
 *   CACHED:  through the data tier: a hit uses the copy; a miss with fill_cache copies the
 *            block into the tier and checks the copy; a miss without fill_cache reads in place
 *            as IN_PLACE does. Blocks stay in process memory whatever the page cache does. */
enum { KW_DATA_READS_IN_PLACE = 0, KW_DATA_READS_CACHED = 1 };

kw_block_cache *kw_block_cache_create(size_t data_bytes, size_t index_bytes, size_t bloom_bytes);
/* Switches the mode at any time; reads in flight finish the way they started. Switching to
 * IN_PLACE leaves the data tier's entries to age out (tables erase theirs when they close). */
void kw_block_cache_set_data_reads(kw_block_cache *bc, int mode);
int kw_block_cache_data_reads(const kw_block_cache *bc);
/* Counts n data blocks checked in place (stats "verified_blocks"). */
void kw_block_cache_count_verified(kw_block_cache *bc, uint64_t n);
/* REQUIRES: no handle is held and no table opened with bc is still open. NULL is a no-op. */
void kw_block_cache_destroy(kw_block_cache *bc);

/* A buffer of at least `size` bytes for a copy of a data block. *capacity receives its real
 * size (size rounded up to a 256-byte class up to 16 KiB; larger sizes are exact): the bytes
 * to charge, and to pass back. Taken from the pool when it holds one of that class, so a miss
 * in a full data tier reuses the buffer an eviction just gave back (no malloc, no page faults). */
void *kw_block_cache_alloc(kw_block_cache *bc, size_t size, size_t *capacity);
/* Gives a buffer from kw_block_cache_alloc back: kept for reuse (at most KW_POOL_KEEP per class
 * and per CPU group, idle memory not charged to any tier) or freed. Callable from a deleter. */
void kw_block_cache_recycle(kw_block_cache *bc, void *buf, size_t capacity);
#define KW_POOL_KEEP 16

/* Appends {"data":{...},"index":{...},"bloom":{...},"data_reads":"in_place"|"cached",
 * "verified_blocks":N}, each tier's kw_cache_stats fields by name (hits, misses, inserts,
 * evictions, rejects, usage, pinned, capacity, entries). */
void kw_block_cache_stats_json(const kw_block_cache *bc, kw_buf *out);

#endif /* KW_CACHE_H */
