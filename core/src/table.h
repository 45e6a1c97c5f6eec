/*
 * table.h: SSTables, the immutable sorted files of the LSM tree: builder and mmap reader.
 *
 * File layout (docs/internals/sstable.md has the byte-level description):
 *     [data block 0][trailer] ... [data block n-1][trailer]
 *     [filter block][trailer]       bloom filter over the user keys (bloom.h)
 *     [properties block][trailer]   msgpack map of the properties below
 *     [index block][trailer]        one entry per data block: key = the block's last internal
 *                                   key, value = varint64 offset, varint64 size of the block
 *     [footer: 64 bytes]
 * Block (data and index): entries [varint shared][varint non_shared][varint value_len]
 * [key delta][value], a restart point every 16 entries (shared = 0 there), then the restart
 * offsets as u32 each, then u32 number of restarts.
 * Block trailer (5 bytes): [u8 compression type (0 = none)][u32 CRC32C of block bytes + type].
 * Footer (64 bytes, little-endian): [u64 filter offset][u64 filter size][u64 props offset]
 *         [u64 props size][u64 index offset][u64 index size][u32 format version = 1]
 *         [u32 CRC32C of the 52 bytes before it][u64 magic 0x0054535369776b69 = "kiwSST\0"...]
 *         Sizes exclude the block trailer. sstable.md has the exact layout.
 *
 * Reader: the file is mmapped (descriptor closed at once). Opening verifies the footer, the
 * index, filter and properties blocks' CRCs. A data block is read in place in the mapping and
 * its CRC verified the first time it is read after open (one bit per block records it: the
 * mapping of an SSTable is immutable), unless the block comes from the data cache, whose copy
 * was checked when it was made. kw_table_verify checks every block again. Any mismatch is
 * KIWI_CORRUPTION naming the file and the block offset.
 * A kw_table is immutable and thread-safe; it is reference counted (readers pin it).
 *
 * Block cache (cache.h, docs/internals/cache.md): a table opened with kw_table_open_cached keeps
 * a kw_block_cache pointer and uses its three tiers, keyed (table number, block offset):
 *   - data:  only in the "cached" data_reads mode (kw_block_cache_set_data_reads): a copy of a
 *            data block (in a buffer the block cache recycles), inserted after its CRC was
 *            checked on the copy; a hit skips the CRC. Reads with fill_cache == false use hits
 *            but never insert. In the default "in_place" mode the tier is not consulted.
 *   - index: the table's parsed index array with every key copied into the entry (an entry never
 *            points into a mapping: a pinned entry may outlive the table that made it).
 *   - bloom: a copy of the filter block, verified on the copy.
 * The table publishes its own index and filter entries in a lease (cache.h): while they are
 * cached a get reads them with no cache lock. When the tier does not hold them (evicted, or the
 * part is larger than a quarter of the tier) the index block is binary-searched in place in the
 * mapping and the filter probed there: both were verified at open and the mapping is immutable.
 * After an eviction the table goes back to the tier (rebuild + insert) only after a number of
 * in-place reads proportional to the part's size, so a tier too small for the indexes in use
 * costs a bounded fraction of a get, never a rebuild per get. An index block not written with
 * restart interval 1 cannot be searched in place: such a table keeps a private array instead.
 * Charges are the bytes allocated for the value plus kw_cache_entry_overhead(). A tier whose
 * budget is 0 is off: that part is read as without a cache (data: the mapping, CRC once;
 * bloom: the mapping; index: an array private to the table, built once, reported by
 * kw_table_uncharged_bytes). kw_table_unref to zero erases the table's entries from every tier.
 * REQUIRES: the kw_block_cache outlives every table opened with it.
 */
#ifndef KW_TABLE_H
#define KW_TABLE_H

#include <stdbool.h>
#include <stdint.h>

#include "block.h"
#include "cache.h"
#include "common.h"
#include "env.h" /* kw_mmap */
#include "iterator.h"
#include "memtable.h" /* kw_lookup */

/* Format constants (docs/internals/sstable.md). The magic's little-endian bytes on disk are
 * 69 6b 77 69 53 53 54 00, i.e. "ikwiSST\0". */
#define KW_TABLE_MAGIC UINT64_C(0x0054535369776b69)
#define KW_TABLE_FORMAT_VERSION 1
#define KW_TABLE_FOOTER_SIZE 64
#define KW_TABLE_TRAILER_SIZE 5      /* [u8 compression type][u32 CRC32C] after every block */
#define KW_TABLE_FILTER_NAME "kiwi.bloom.v1"
#define KW_TABLE_INDEX_RESTART_INTERVAL 1 /* every index key is stored whole */
#define KW_TABLE_MAX_BLOCK_SIZE (256u * 1024u * 1024u) /* largest accepted block_size option */

typedef struct {
    size_t block_size;       /* target uncompressed data block size, default 4096 */
    int restart_interval;    /* default 8 (sstable.md §2) */
    double bloom_fpr;        /* default 0.01 */
} kw_table_options;

void kw_table_options_default(kw_table_options *o);

typedef struct {
    uint64_t entries;        /* all entries, tombstones included */
    uint64_t tombstones;
    uint64_t data_blocks;
    uint64_t raw_key_bytes;  /* sum of internal key sizes */
    uint64_t raw_value_bytes;
    uint64_t min_seq, max_seq;
    uint64_t file_size;
    uint64_t index_size, filter_size;
    char *smallest;          /* smallest internal key, malloc'd */
    size_t smallest_len;
    char *largest;           /* largest internal key, malloc'd */
    size_t largest_len;
} kw_table_props;

void kw_table_props_free(kw_table_props *p);
void kw_table_props_copy(kw_table_props *dst, const kw_table_props *src);

/* ---- builder: not thread-safe ---- */
typedef struct kw_table_builder kw_table_builder;

kiwi_status kw_table_builder_create(const char *path, const kw_table_options *opts,
                                    kw_table_builder **out, char **errmsg);
/* REQUIRES: ikey sorts after every key added before. Errors are sticky and reported by finish. */
void kw_table_builder_add(kw_table_builder *b, kw_slice ikey, kw_slice value);
uint64_t kw_table_builder_entries(const kw_table_builder *b);
uint64_t kw_table_builder_file_size(const kw_table_builder *b); /* bytes so far */
/* Writes the filter, properties, index and footer, fdatasyncs and closes the file, and frees
 * the builder. On success *props (if not NULL) receives the properties (caller frees). On failure
 * the partial file is removed. */
kiwi_status kw_table_builder_finish(kw_table_builder *b, kw_table_props *props, char **errmsg);
/* Frees the builder and removes the partial file. */
void kw_table_builder_abandon(kw_table_builder *b);

/* ---- reader ---- */
typedef struct kw_table kw_table;

kiwi_status kw_table_open(const char *path, uint64_t number, kw_table **out, char **errmsg);
/* kw_table_open with a block cache (NULL: none, exactly kw_table_open). The table keeps the
 * pointer; the index and filter are inserted into their tiers at once (when the tier can hold
 * them). Open verifies exactly what kw_table_open verifies. */
kiwi_status kw_table_open_cached(const char *path, uint64_t number, kw_block_cache *cache,
                                 kw_table **out, char **errmsg);
kw_block_cache *kw_table_cache(const kw_table *t); /* NULL if none */
/* Bytes the table holds outside the cache: the struct, path, properties and, when the index is
 * not cache-charged (no cache, or index tier off), its private index array. The mapping itself
 * is page cache and not counted. */
uint64_t kw_table_uncharged_bytes(const kw_table *t);
void kw_table_ref(kw_table *t);
void kw_table_unref(kw_table *t); /* unmaps and frees at zero (never deletes the file) */
uint64_t kw_table_number(const kw_table *t);
const char *kw_table_path(const kw_table *t);
const kw_table_props *kw_table_properties(const kw_table *t);

/* What one lookup did, for traces (every field filled when info != NULL). */
typedef struct {
    bool bloom_may_contain;  /* false: the filter ruled the key out, no block was read */
    bool block_read;
    uint64_t block_offset;   /* the data block searched */
    uint64_t block_size;
    uint32_t block_index;
    kw_cache_result bloom_cache; /* NONE when the table's filter is unusable (not consulted) */
    kw_cache_result index_cache; /* NONE when the bloom filter ruled the key out */
    kw_cache_result data_cache;  /* NONE when no block was read */
} kw_table_lookup_info;

/* The newest version of ukey with sequence <= seq in this table. On KW_LOOKUP_FOUND *value
 * points into the mapping (valid while the caller holds a reference to t), also when the block
 * came from the data cache (the cached copy has the same bytes at the same offsets). Uses the
 * table's cache as kw_table_get_ex with fill_cache == true. */
kiwi_status kw_table_get(kw_table *t, kw_slice ukey, uint64_t seq, kw_lookup *result,
                         kw_slice *value, kw_table_lookup_info *info, char **errmsg);

/* kw_table_get with a choice of filling the data tier. On KW_LOOKUP_FOUND the value is copied
 * into value_out (cleared first; cleared also on any other result), so it stays valid after
 * every cache handle and table reference is gone. info may be NULL. */
kiwi_status kw_table_get_ex(kw_table *t, kw_slice ukey, uint64_t seq, bool fill_cache,
                            kw_lookup *result, kw_buf *value_out, kw_table_lookup_info *info,
                            char **errmsg);

/* kw_table_get_ex (fill_cache false) for a caller that must not wait for the disk (the event
 * loop of kiwi_get_nowait): KIWI_BUSY, with no message and nothing in value_out, when the
 * answer needs a part that is not in memory now: a filter or index not published in the
 * table's lease (nor private to the table), or a data block neither a data-tier hit nor wholly
 * in the page cache (mincore). Everything else as kw_table_get_ex, errors included. */
kiwi_status kw_table_get_resident(kw_table *t, kw_slice ukey, uint64_t seq, kw_lookup *result,
                                  kw_buf *value_out, kw_table_lookup_info *info, char **errmsg);

/* An internal iterator over every entry; holds a reference to t until destroyed. It pins the
 * table's index (cache entry or private copy) for its life and the data block it is in while
 * it is there. kw_table_iter(t) == kw_table_iter_ex(t, true). */
kw_iter *kw_table_iter(kw_table *t);
kw_iter *kw_table_iter_ex(kw_table *t, bool fill_cache);

/* Checks the CRC of every block; KIWI_CORRUPTION naming the first bad one. */
kiwi_status kw_table_verify(kw_table *t, char **errmsg);

/* ---- reader internals --------------------------------------------------------------------- *
 * Shared by table.c (open: footer, properties, index parsing; close; verification),
 * table_read.c (where each part comes from: cache tiers, lease, mapping) and table_iter.c (point
 * lookups, the iterator). No other module may use them: they are here only so that the reader
 * can live in three files. */

typedef struct {
    const char *key;  /* the block's last internal key (into the map, or into the index's copies) */
    size_t key_len;
    uint64_t offset;  /* where the block starts */
    uint64_t size;    /* block size, trailer excluded */
} kw_table_index_entry;

/* The parsed index: one allocation holding this header, the entries, their key prefixes, then
 * copied key bytes. The search (kw_table_index_lower_bound) runs on the prefixes: every entry's
 * user key starts with the same shared_len bytes (those of entries[0].key), and prefix[i] holds
 * the next 8 bytes of entry i's user key, big-endian, zero-padded past its end
 * (kw_table_index_prefixes). Prefixes order as their keys do (prefix[i] < prefix[j] implies key
 * i < key j); equal prefixes are told apart by the whole keys. */
typedef struct {
    size_t bytes;        /* the whole allocation */
    uint32_t nblocks;    /* == props.data_blocks */
    uint32_t shared_len; /* the user-key bytes all entries share */
    kw_lease *lease;     /* a cache entry: the lease of the table that made it (one reference) */
    kw_table_index_entry entries[];
} kw_table_index;

/* prefix[0..nblocks): right after the entries in the allocation. */
static inline uint64_t *kw_table_index_prefixes(const kw_table_index *ix)
{
    return (uint64_t *)(ix->entries + ix->nblocks);
}

/* The allocation of an index of n entries with key_bytes of copied keys. */
size_t kw_table_index_size(uint32_t n, size_t key_bytes);
/* The first entry whose key is >= target (an internal key), or nblocks. */
uint32_t kw_table_index_lower_bound(const kw_table_index *ix, kw_slice target);

/* The two parts a table publishes in its lease (cache.h) and reads in place when it must. */
enum { KW_PART_INDEX = 0, KW_PART_FILTER = 1 };

typedef struct {
    uint64_t charge;   /* what the part costs in its tier */
    uint64_t inplace;  /* atomic: reads served in place (counted per KW_LEASE_BATCH) */
    uint64_t next_try; /* atomic: the tier is consulted again once inplace reaches this */
} kw_table_part;

struct kw_table {
    int refs;                  /* atomic (__atomic builtins) */
    uint64_t number;
    char *path;
    kw_mmap map;
    kw_block_cache *cache;     /* NULL: no cache */
    kw_table_index *own_index; /* private index (no cache, or index tier off); set once, atomic */
    kw_slice index_block;      /* the index block's contents in the map (checked at open) */
    kw_slice filter;           /* the filter block's contents in the map (checked at open) */
    bool filter_usable;        /* the filter's name is one this reader knows */
    bool index_inplace;        /* the index block can be searched in place (checked at open) */
    uint32_t index_restarts;   /* where its restart array starts (one restart per entry) */
    kw_lease *lease;           /* with a cache: where the index and filter are published */
    kw_table_part part[2];     /* KW_PART_INDEX, KW_PART_FILTER */
    uint64_t data_end;         /* end of the last data block's trailer == filter offset */
    uint64_t *verified;        /* atomic words: bit i set once data block i's CRC was checked
                                * in the map (its index entry is immutable, checked at open) */
    uint64_t meta_off[3];      /* filter, properties, index block offsets */
    uint64_t meta_size[3];
    kw_table_props props;
};

/* Bounds of the block at off, then the CRC and compression type of its contents against its
 * trailer in the map; the contents checked are `copy` (a copy of them) or, when copy is NULL,
 * the map's. KIWI_CORRUPTION names path, kind and off. */
kiwi_status kw_table_check_block(const kw_table *t, const char *copy, uint64_t off,
                                 uint64_t size, const char *kind, char **errmsg);
/* Index entry i read in place from the index block in the map. REQUIRES: t->index_inplace,
 * i < nblocks. False if the bytes there do not decode (the file changed under the mapping). */
bool kw_table_index_at(const kw_table *t, uint32_t i, kw_table_index_entry *e);
bool kw_table_index_key_at(const kw_table *t, uint32_t i, kw_slice *key); /* the key only */
/* Parses and checks the index block `contents` (its CRC already checked) into *out (table_index.c).
 * copy_all: no key points into the map (a cache entry). inplace (NULL: not wanted): set to
 * whether the block can be searched in place (t->index_restarts must be set first). */
kiwi_status kw_table_build_index(const kw_table *t, kw_slice contents, bool copy_all,
                                 kw_table_index **out, bool *inplace, char **errmsg);
/* The index block read from the map and checked again exactly as at open (CRC, every entry).
 * copy_all: every key is copied into the index (a cache entry never points into a mapping). */
kiwi_status kw_table_rebuild_index(const kw_table *t, bool copy_all, kw_table_index **out,
                                   char **errmsg);
/* ---- reading the parts (table_read.c), for point lookups and iterators (table_iter.c) ---- */

/* A table's index as one read uses it. */
typedef struct {
    const kw_table_index *array; /* NULL: the index block, searched in place in the map */
    kw_cache_handle *handle;     /* the pinned index-tier entry, or NULL */
    kw_table_index *owned;       /* rebuilt but not kept by the tier: freed at release */
    uint32_t nblocks;
} kw_index_ref;

/* Where a key's block is: index entry `index` (== nblocks: past the table's last key). */
typedef struct {
    uint32_t index;
    uint64_t offset, size;
} kw_block_loc;

/* A data block as one read uses it. */
typedef struct {
    kw_block block;          /* parsed; its bytes are in the map or in the cached copy */
    kw_cache_handle *handle; /* the pinned data-tier entry, or NULL (bytes in the map) */
} kw_block_ref;

/* The index through the tier, pinned until kw_table_index_release: private (tier off), in
 * place, a hit, or rebuilt, checked, inserted and published. For iterators. */
kiwi_status kw_table_index_acquire(kw_table *t, kw_index_ref *ref, kw_cache_result *res,
                                   char **errmsg);
void kw_table_index_release(kw_table *t, kw_index_ref *ref);
/* Entry i of the index; KIWI_CORRUPTION if it does not decode in place. */
kiwi_status kw_table_index_get_in_place(const kw_table *t, uint32_t i, kw_table_index_entry *e,
                                        char **errmsg);
static inline kiwi_status kw_table_index_get(const kw_table *t, const kw_index_ref *r,
                                             uint32_t i, kw_table_index_entry *e, char **errmsg)
{
    if (r->array == NULL)
        return kw_table_index_get_in_place(t, i, e, errmsg);
    *e = r->array->entries[i];
    return KIWI_OK;
}
/* The first block whose last key is >= target. */
kiwi_status kw_table_find_block(const kw_table *t, const kw_index_ref *r, kw_slice target,
                                kw_block_loc *loc, char **errmsg);
/* A get's index search: the published index or the block in place without a lock when it
 * can, else through the tier. */
kiwi_status kw_table_index_search(kw_table *t, kw_slice target, kw_block_loc *loc,
                                  kw_cache_result *res, char **errmsg);
/* The bloom filter's answer for ukey ("maybe" when the filter is unusable). */
kiwi_status kw_table_bloom_check(kw_table *t, kw_slice ukey, bool *may_contain,
                                 kw_cache_result *res, char **errmsg);
/* Data block i at (off, size), its index entry. In the "in_place" data_reads mode: the map,
 * its CRC checked on the first read since open (*res = KW_CACHE_MAPPED). In the "cached" mode:
 * a data-tier hit, or on a miss a copy inserted into the tier and checked on the copy (when
 * fill_cache and the tier can hold it), else the map as in place. A corrupt block is never
 * inserted nor marked checked; on error nothing is held. */
kiwi_status kw_table_block_acquire(kw_table *t, uint32_t i, uint64_t off, uint64_t size,
                                   bool fill_cache, kw_block_ref *ref, kw_cache_result *res,
                                   char **errmsg);
/* For reads that must not wait for the disk (kw_table_get_resident): the same three steps when
 * what they read is in memory (the filter and index published in the lease or private to the
 * table; the block a data-tier hit or every page of it in the page cache), else KIWI_BUSY
 * having read nothing of the part. */
kiwi_status kw_table_bloom_check_resident(kw_table *t, kw_slice ukey, bool *may_contain);
kiwi_status kw_table_index_search_resident(kw_table *t, kw_slice target, kw_block_loc *loc,
                                           char **errmsg);
kiwi_status kw_table_block_acquire_resident(kw_table *t, uint32_t i, uint64_t off,
                                            uint64_t size, kw_block_ref *ref,
                                            kw_cache_result *res, char **errmsg);
static inline void kw_table_block_release(kw_table *t, kw_block_ref *ref)
{
    if (ref->handle != NULL)
        kw_cache_release(t->cache->data, ref->handle);
    ref->handle = NULL;
}

/* At open (table_read.c): hands the index just built to the index tier if it was built for it
 * (for_cache: keys copied) and the tier can keep it, and publishes it; else keeps it as the
 * private index unless the index can be searched in place; puts a copy of the filter in the
 * bloom tier when it can keep it, and publishes it. */
void kw_table_warm_cache(kw_table *t, kw_table_index *ix, bool for_cache);

#endif /* KW_TABLE_H */
