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
 * index, filter and properties blocks' CRCs; a data block's CRC is verified on every read that
 * touches it. Any mismatch is KIWI_CORRUPTION naming the file and the block offset.
 * A kw_table is immutable and thread-safe; it is reference counted (readers pin it).
 */
#ifndef KW_TABLE_H
#define KW_TABLE_H

#include <stdbool.h>
#include <stdint.h>

#include "common.h"
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
    int restart_interval;    /* default 16 */
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
} kw_table_lookup_info;

/* The newest version of ukey with sequence <= seq in this table. On KW_LOOKUP_FOUND *value
 * points into the mapping (valid while the caller holds a reference to t). */
kiwi_status kw_table_get(kw_table *t, kw_slice ukey, uint64_t seq, kw_lookup *result,
                         kw_slice *value, kw_table_lookup_info *info, char **errmsg);

/* An internal iterator over every entry; holds a reference to t until destroyed. */
kw_iter *kw_table_iter(kw_table *t);

/* Checks the CRC of every block; KIWI_CORRUPTION naming the first bad one. */
kiwi_status kw_table_verify(kw_table *t, char **errmsg);

#endif /* KW_TABLE_H */
