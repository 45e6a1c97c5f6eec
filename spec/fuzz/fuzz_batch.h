/*
 * fuzz_batch.h: the oracle for decoding one WAL batch payload (kw_batch_iterate), shared by the
 * WAL and msgpack targets.
 *
 * Checked on every payload:
 *   - failure: KIWI_CORRUPTION with a message, and the callback was never called (batch.h:
 *     the payload is validated before the first callback);
 *   - success: the callback ran `count` times with sequences first_seq, first_seq + 1, ...;
 *     every type is put or delete, a delete's value is empty; every key and value lies inside
 *     the payload; sizes are within KIWI_MAX_KEY_SIZE / KIWI_MAX_VALUE_SIZE;
 *   - round trip: the operations rebuilt with kiwi_batch_put/delete and the same first
 *     sequence encode a payload that decodes to exactly the same operations.
 */
#ifndef KIWI_FUZZ_BATCH_H
#define KIWI_FUZZ_BATCH_H

#include "batch.h"
#include "fuzz_common.h"

typedef struct {
    uint64_t seq;
    kw_value_type type;
    kw_slice key;
    kw_slice value;
} fuzz_op;

typedef struct {
    fuzz_op *ops;
    size_t n, cap;
} fuzz_ops;

static inline void fuzz_collect_op(void *ctx, uint64_t seq, kw_value_type type, kw_slice key,
                            kw_slice value)
{
    fuzz_ops *o = ctx;
    if (o->n == o->cap) {
        o->cap = o->cap ? 2 * o->cap : 16;
        o->ops = kw_realloc(o->ops, o->cap * sizeof *o->ops);
    }
    o->ops[o->n++] = (fuzz_op){seq, type, key, value};
}

static inline bool fuzz_slice_eq(kw_slice a, kw_slice b)
{
    return a.size == b.size && (a.size == 0 || memcmp(a.data, b.data, a.size) == 0);
}

/* Decodes payload with every check above; returns kw_batch_iterate's status. */
static inline kiwi_status fuzz_check_batch(kw_slice payload)
{
    fuzz_ops got = {0};
    uint64_t first = 0;
    uint32_t count = 0;
    char *err = NULL;
    kiwi_status st = kw_batch_iterate(payload, fuzz_collect_op, &got, &first, &count, &err);
    if (st != KIWI_OK) {
        FUZZ_CHECK(st == KIWI_CORRUPTION);
        FUZZ_CHECK_ERROR(st, err);
        FUZZ_CHECK(got.n == 0);
        free(err);
        free(got.ops);
        return st;
    }
    FUZZ_CHECK(err == NULL);
    FUZZ_CHECK(got.n == count);
    FUZZ_CHECK(count == 0 || (first <= KW_MAX_SEQ && count - 1 <= KW_MAX_SEQ - first));
    kiwi_batch *b = kiwi_batch_create();
    for (size_t i = 0; i < got.n; i++) {
        const fuzz_op *op = &got.ops[i];
        FUZZ_CHECK(op->seq == first + i);
        FUZZ_CHECK(op->type == KW_TYPE_VALUE || op->type == KW_TYPE_DELETE);
        FUZZ_CHECK(fuzz_inside(op->key, payload.data, payload.size));
        FUZZ_CHECK(fuzz_inside(op->value, payload.data, payload.size));
        FUZZ_CHECK(op->key.size <= KIWI_MAX_KEY_SIZE && op->value.size <= KIWI_MAX_VALUE_SIZE);
        if (op->type == KW_TYPE_DELETE) {
            FUZZ_CHECK(op->value.size == 0);
            kiwi_batch_delete(b, op->key.data, op->key.size);
        } else {
            kiwi_batch_put(b, op->key.data, op->key.size, op->value.data, op->value.size);
        }
    }
    kw_batch_set_sequence(b, first);
    FUZZ_CHECK(kw_batch_check(b, NULL) == KIWI_OK);
    fuzz_ops again = {0};
    uint64_t first2 = 0;
    uint32_t count2 = 0;
    kiwi_status st2 =
        kw_batch_iterate(kw_batch_payload(b), fuzz_collect_op, &again, &first2, &count2, &err);
    FUZZ_CHECK(st2 == KIWI_OK);
    FUZZ_CHECK(count2 == count && again.n == got.n);
    FUZZ_CHECK(first2 == first);
    for (size_t i = 0; i < got.n; i++) {
        FUZZ_CHECK(again.ops[i].seq == got.ops[i].seq);
        FUZZ_CHECK(again.ops[i].type == got.ops[i].type);
        FUZZ_CHECK(fuzz_slice_eq(again.ops[i].key, got.ops[i].key));
        FUZZ_CHECK(fuzz_slice_eq(again.ops[i].value, got.ops[i].value));
    }
    kiwi_batch_destroy(b);
    free(got.ops);
    free(again.ops);
    return KIWI_OK;
}

#endif /* KIWI_FUZZ_BATCH_H */
