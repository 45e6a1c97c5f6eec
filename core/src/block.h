/*
 * block.h: reads one SSTable block (format in block_builder.h) and iterates its entries.
 *
 * The keys of every block are internal keys (dbformat.h) in kw_ikey_compare order; an entry whose
 * key is shorter than the 8-byte trailer is corruption. A block is a borrowed byte range (usually
 * inside a table's mmap) that must outlive the kw_block and its iterators.
 *
 * Robustness: nothing here trusts the bytes. Every varint, length and restart offset is checked
 * against the block's bounds before use; a malformed block makes the iterator invalid with
 * KIWI_CORRUPTION in its status ("<path>: <kind> at offset <n>: <what>"), never an out-of-bounds
 * read. (Ordering is not re-verified while seeking: a block whose keys are out of order but
 * well-formed gives wrong answers, not crashes; block CRCs make that case a writer bug.)
 *
 * Seek: binary search over the restart points (each restart key is stored whole), then a linear
 * scan of at most restart_interval entries. Prev: back to the restart point before the current
 * entry, then forward. Not thread-safe per iterator; any number of iterators may share a block.
 */
#ifndef KW_BLOCK_H
#define KW_BLOCK_H

#include <stdbool.h>
#include <stdint.h>

#include "common.h"
#include "iterator.h"

typedef struct {
    const char *data;      /* the block contents: entries, restart array, count */
    size_t size;
    uint32_t restarts_off; /* where the restart array starts == the end of the entries */
    uint32_t num_restarts;
    const char *path;      /* for error messages (borrowed) */
    uint64_t file_offset;  /* where the block starts in the file, for error messages */
    const char *kind;      /* "block", "index block", ... for error messages */
} kw_block;

/* Checks the trailer of the block (count and restart array fit, size < 4 GiB) and fills b.
 * KIWI_CORRUPTION naming path, kind and file_offset otherwise. */
kiwi_status kw_block_parse(kw_block *b, kw_slice contents, const char *path, uint64_t file_offset,
                           const char *kind, char **errmsg);

/* A block iterator. It can live inside another struct (init/cleanup) or on the heap
 * (kw_block_iter_new / kw_iter_destroy). The fields are private to block.c. */
typedef struct {
    kw_iter base;
    kw_block block;         /* a copy of the block descriptor */
    uint32_t current;       /* offset of the current entry; restarts_off when not valid */
    uint32_t next_off;      /* offset of the entry after the current one */
    uint32_t restart_index; /* the restart point at or before current */
    kw_slice key;           /* points into the block (whole keys) or into keybuf */
    kw_slice value;         /* points into the block */
    kw_buf keybuf;          /* reassembled prefix-compressed keys */
    bool valid;
    bool heap;              /* allocated by kw_block_iter_new: destroy frees it */
    kiwi_status status;
    char *errmsg;
} kw_block_iter;

/* Starts an (invalid) iterator over b; b is copied, its bytes are borrowed. */
void kw_block_iter_init(kw_block_iter *it, const kw_block *b);
/* Points an initialised iterator at another block (keeps its key buffer, clears its status). */
void kw_block_iter_reset(kw_block_iter *it, const kw_block *b);
/* Frees what init allocated (not the struct itself). */
void kw_block_iter_cleanup(kw_block_iter *it);
/* A heap iterator over b; kw_iter_destroy frees it. */
kw_iter *kw_block_iter_new(const kw_block *b);

#endif /* KW_BLOCK_H */
