/*
 * batch.h: kiwi_batch, the unit of every write, and its WAL payload encoding.
 *
 * A batch's representation *is* its WAL payload, a msgpack array (DESIGN §3):
 *     [first_seq, [[op, key, value], [op, key], ...]]
 * op is 1 (put: [1, key, value]) or 0 (delete: [0, key]); key and value are msgpack bin.
 * The outer array header, first_seq (uint64, 0xcf) and the ops array header (array32, 0xdd) use
 * fixed-width forms so the sequence and count can be patched in place; ops are packed with
 * msgpack-c's packer. Decoding (kw_batch_iterate, used by recovery and by the write path) uses
 * msgpack-c's unpacker and rejects anything that is not exactly this shape with KIWI_CORRUPTION.
 * Operation i of a batch gets sequence first_seq + i.
 */
#ifndef KW_BATCH_H
#define KW_BATCH_H

#include <stdint.h>

#include "common.h"
#include "dbformat.h"

struct kiwi_batch {
    kw_buf rep;        /* the msgpack payload, always a valid encoding */
    uint32_t count;    /* operations recorded */
    uint64_t user_bytes; /* sum of key and value sizes */
};

/* For batches living inside other structs (the db's single-put path). */
void kw_batch_init(kiwi_batch *b);
void kw_batch_free(kiwi_batch *b);

void kw_batch_set_sequence(kiwi_batch *b, uint64_t first_seq);
uint64_t kw_batch_sequence(const kiwi_batch *b);
kw_slice kw_batch_payload(const kiwi_batch *b);

typedef void (*kw_batch_op_fn)(void *ctx, uint64_t seq, kw_value_type type, kw_slice key,
                               kw_slice value);
/* Decodes a payload and calls fn for each operation with its sequence. Slices point into the
 * payload. KIWI_CORRUPTION (naming what is wrong) if the payload is not a valid batch; then fn
 * has not been called at all (the payload is validated before the first callback). On success
 * *first_seq and *count (either may be NULL) describe the batch. */
kiwi_status kw_batch_iterate(kw_slice payload, kw_batch_op_fn fn, void *ctx, uint64_t *first_seq,
                             uint32_t *count, char **errmsg);

#endif /* KW_BATCH_H */
