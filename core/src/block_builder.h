/*
 * block_builder.h: builds one SSTable block (data or index) in memory.
 *
 * Block format (docs/internals/sstable.md has the diagram):
 *     entry*       [varint32 shared][varint32 non_shared][varint32 value_len]
 *                  [key bytes non_shared][value bytes value_len]
 *     restarts     [u32 offset of entry] one per restart point, ascending; the first is 0
 *     count        [u32 number of restart points]
 * `shared` is the length of the prefix this key has in common with the previous key; it is 0 at
 * every restart point (every restart_interval entries), so a reader can start decoding at any
 * restart point. An empty block is just [u32 0] (no restart points).
 *
 * Not thread-safe. Keys must be added in strictly increasing order (the caller's order; the
 * builder does not compare them).
 */
#ifndef KW_BLOCK_BUILDER_H
#define KW_BLOCK_BUILDER_H

#include <stdbool.h>
#include <stdint.h>

#include "common.h"

typedef struct {
    int restart_interval; /* entries per restart point, >= 1 */
    kw_buf buf;           /* the encoded entries (then the trailer, once finished) */
    uint32_t *restarts;   /* offsets of the restart points in buf */
    size_t nrestarts;
    size_t restarts_cap;
    int counter;          /* entries since the last restart point */
    kw_buf last_key;      /* the previous key, for prefix compression */
    uint64_t entries;     /* entries in this block */
    bool finished;        /* finish() was called; reset() before adding again */
} kw_block_builder;

void kw_block_builder_init(kw_block_builder *b, int restart_interval);
/* Forgets the contents (keeps the allocated memory). */
void kw_block_builder_reset(kw_block_builder *b);
void kw_block_builder_free(kw_block_builder *b);

/* REQUIRES: not finished; key > every key added since the last reset; the encoded block stays
 * under 4 GiB (u32 offsets). */
void kw_block_builder_add(kw_block_builder *b, kw_slice key, kw_slice value);
/* The size of the block if finished now. */
size_t kw_block_builder_size_estimate(const kw_block_builder *b);
bool kw_block_builder_empty(const kw_block_builder *b);
/* Appends the restart array and count; the returned bytes stay valid until reset/free. */
kw_slice kw_block_builder_finish(kw_block_builder *b);

#endif /* KW_BLOCK_BUILDER_H */
