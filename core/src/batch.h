/*
 * batch.h: kiwi_batch, the unit of every write, and its WAL payload encoding.
 *
 * A batch's representation *is* its WAL payload, a msgpack array (DESIGN §3):
 *     [first_seq, [[op, key, value], [op, key], ...]]
 * op is 1 (put: [1, key, value]) or 0 (delete: [0, key]); key and value are msgpack bin.
 * The outer array header, first_seq (uint64, 0xcf) and the ops array header (array32, 0xdd) use
 * fixed-width forms so the sequence and count can be patched in place; each op is written in
 * place as a fixarray, a positive fixint and bin8/16/32 (the forms msgpack-c's packer would
 * choose). Decoding (kw_batch_iterate, used by recovery and by the write path) is hand-written:
 * it reads any msgpack encoding of this shape (other writers may use compact forms), takes a
 * short path for the forms written here, bounds-checks every length and rejects anything that is
 * not exactly this shape with KIWI_CORRUPTION. Operation i of a batch gets sequence
 * first_seq + i.
 */
#ifndef KW_BATCH_H
#define KW_BATCH_H

#include <stdbool.h>
#include <stdint.h>

#include "common.h"
#include "dbformat.h"

/* Byte layout of the fixed-width head of every batch this module writes:
 *     [0] 0x92  [1] 0xcf  [2..9] first_seq (big-endian)  [10] 0xdd  [11..14] count (big-endian) */
#define KW_BATCH_HEADER_SIZE 15

struct kiwi_batch {
    kw_buf rep;        /* the msgpack payload, always a valid encoding (from head_off on) */
    uint32_t count;    /* operations recorded */
    uint64_t seq;      /* first sequence, as last set */
    /* 0 while rep starts with the fixed-width head; after kw_batch_set_sequence, the offset of
     * the compact head written right-aligned before the ops (the WAL record is 8 bytes shorter
     * for a one-op batch). The next put/delete/clear restores the fixed head. */
    uint32_t head_off;
    uint64_t user_bytes; /* sum of key and value sizes */
    /* kiwi_batch_put/delete cannot fail, so an operation whose key or value exceeds
     * KIWI_MAX_KEY_SIZE / KIWI_MAX_VALUE_SIZE is not recorded but counted here; kw_batch_check
     * turns it into KIWI_INVALID_ARGUMENT before the batch is written. */
    uint32_t rejected;     /* operations refused */
    size_t rejected_klen;  /* key and value sizes of the first refused operation */
    size_t rejected_vlen;
};

/* For batches living inside other structs (the db's single-put path). */
void kw_batch_init(kiwi_batch *b);
/* The same, its payload starting in the caller's storage of cap bytes (a stack array that
 * outlives the batch's use: kiwi_put's), so a small put allocates nothing (kw_buf_init_borrowed). */
void kw_batch_init_borrowed(kiwi_batch *b, char *storage, size_t cap);
void kw_batch_free(kiwi_batch *b);

void kw_batch_set_sequence(kiwi_batch *b, uint64_t first_seq);
uint64_t kw_batch_sequence(const kiwi_batch *b);
kw_slice kw_batch_payload(const kiwi_batch *b);

/* KIWI_INVALID_ARGUMENT (naming the limit) if an operation was refused for its size or the
 * payload is larger than a WAL record may be (KW_WAL_MAX_RECORD); KIWI_OK otherwise. The write
 * path calls this before it assigns sequence numbers. */
kiwi_status kw_batch_check(const kiwi_batch *b, char **errmsg);

typedef void (*kw_batch_op_fn)(void *ctx, uint64_t seq, kw_value_type type, kw_slice key,
                               kw_slice value);
/* Decodes a payload and calls fn for each operation with its sequence. Slices point into the
 * payload. KIWI_CORRUPTION (naming what is wrong) if the payload is not a valid batch; then fn
 * has not been called at all (the payload is validated before the first callback). On success
 * *first_seq and *count (either may be NULL) describe the batch. */
kiwi_status kw_batch_iterate(kw_slice payload, kw_batch_op_fn fn, void *ctx, uint64_t *first_seq,
                             uint32_t *count, char **errmsg);

/* ---- strict msgpack reading (shared with version_edit.c) --------------------------------------
 * A cursor for decoders of kiwi's own msgpack records, written by hand (no msgpack-c): every
 * read checks the type byte and that the header and the body fit in the bytes left before it
 * moves. Containers (array, map) return their element count, which may never exceed the bytes
 * left (a corrupt array32 header cannot promise four billion elements in a short payload);
 * integers are positive fixint, uint8..64 or int8..64 holding a value >= 0; bin and str bodies
 * come back as slices of the input. Nothing is allocated. On failure a kw_mp_read_* function
 * returns false, sets err (the first error is kept) and leaves off at the start of the offending
 * object. One reader per decode. */
typedef struct {
    const char *data;
    size_t size;
    size_t off;         /* next byte to read */
    const char *err;    /* what went wrong first ("truncated", "expected bin", ...), or NULL */
} kw_mp_reader;

void kw_mp_reader_init(kw_mp_reader *r, kw_slice s);
void kw_mp_reader_destroy(kw_mp_reader *r); /* frees nothing today; pairs with init */
bool kw_mp_read_array(kw_mp_reader *r, uint32_t *n);
bool kw_mp_read_map(kw_mp_reader *r, uint32_t *n);
bool kw_mp_read_uint(kw_mp_reader *r, uint64_t *v);
bool kw_mp_read_bin(kw_mp_reader *r, kw_slice *s);
bool kw_mp_read_str(kw_mp_reader *r, kw_slice *s);

#endif /* KW_BATCH_H */
