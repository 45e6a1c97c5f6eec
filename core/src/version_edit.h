/*
 * version_edit.h: one manifest record: the change from one version of the LSM tree to the next.
 *
 * Payload encoding (a WAL-framed record in MANIFEST-NNNNNN, see wal.h): a msgpack map with only
 * the fields that are set:
 *     "log"       uint   WAL files numbered below this are no longer needed
 *     "next_file" uint   the next file number to hand out
 *     "last_seq"  uint   the last sequence number used
 *     "add"       array of [level, number, size, smallest(bin), largest(bin), min_seq, max_seq,
 *                           entries, tombstones]
 *     "del"       array of [level, number]
 * Unknown keys are rejected (KIWI_CORRUPTION) so a newer format is never half-read.
 */
#ifndef KW_VERSION_EDIT_H
#define KW_VERSION_EDIT_H

#include <stdbool.h>
#include <stdint.h>

#include "common.h"

typedef struct {
    uint32_t level;
    uint64_t number;
    uint64_t size;
    char *smallest; /* internal key, malloc'd */
    size_t smallest_len;
    char *largest;  /* internal key, malloc'd */
    size_t largest_len;
    uint64_t min_seq, max_seq;
    uint64_t entries, tombstones;
} kw_edit_file;

typedef struct {
    uint32_t level;
    uint64_t number;
} kw_edit_deleted;

typedef struct {
    bool has_log_number;
    uint64_t log_number;
    bool has_next_file;
    uint64_t next_file;
    bool has_last_seq;
    uint64_t last_seq;
    kw_edit_file *added;
    size_t n_added;
    kw_edit_deleted *deleted;
    size_t n_deleted;
} kw_version_edit;

void kw_edit_init(kw_version_edit *e);
void kw_edit_free(kw_version_edit *e); /* frees contents; e may be reused after kw_edit_init */
void kw_edit_set_log_number(kw_version_edit *e, uint64_t n);
void kw_edit_set_next_file(kw_version_edit *e, uint64_t n);
void kw_edit_set_last_seq(kw_version_edit *e, uint64_t s);
/* Copies f (including its key buffers). */
void kw_edit_add_file(kw_version_edit *e, const kw_edit_file *f);
void kw_edit_delete_file(kw_version_edit *e, uint32_t level, uint64_t number);

void kw_edit_encode(const kw_version_edit *e, kw_buf *out);
/* Decodes into e (which must be kw_edit_init'ed); KIWI_CORRUPTION naming the problem. */
kiwi_status kw_edit_decode(kw_slice payload, kw_version_edit *e, char **errmsg);

#endif /* KW_VERSION_EDIT_H */
