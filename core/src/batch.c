/*
 * batch.c: kiwi_batch (the public batch API) and its msgpack WAL payload, built with msgpack-c's
 * packer and decoded strictly with msgpack-c (kw_batch_iterate); plus the kw_mp_reader cursor
 * shared with version_edit.c. Format: batch.h and docs/internals/wal.md.
 */
#include "batch.h"

#include <inttypes.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wal.h"

/* ---- strict msgpack reading ------------------------------------------------------------------ */

/* The zone's first chunk: msgpack-c needs a zone, but scalars never allocate from it. */
#define MP_ZONE_CHUNK 64

void kw_mp_reader_init(kw_mp_reader *r, kw_slice s)
{
    r->data = s.data;
    r->size = s.size;
    r->off = 0;
    r->err = NULL;
    if (!msgpack_zone_init(&r->zone, MP_ZONE_CHUNK)) {
        fprintf(stderr, "kiwi: out of memory allocating a msgpack zone\n");
        abort();
    }
}

void kw_mp_reader_destroy(kw_mp_reader *r)
{
    msgpack_zone_destroy(&r->zone);
}

static bool mp_fail(kw_mp_reader *r, const char *err)
{
    if (r->err == NULL)
        r->err = err;
    return false;
}

static uint8_t mp_byte(const kw_mp_reader *r, size_t at)
{
    return (uint8_t)r->data[at];
}

static uint32_t mp_be(const kw_mp_reader *r, size_t at, int width)
{
    uint32_t v = 0;
    for (int i = 0; i < width; i++)
        v = (v << 8) | mp_byte(r, at + (size_t)i);
    return v;
}

/* Reads a container header: fix form (fix_base | n, n < 16) or the 16/32-bit forms. The count
 * times min_elem_bytes must fit in what is left, so a corrupt count cannot pass. */
static bool mp_container(kw_mp_reader *r, uint8_t fix_base, uint8_t tag16, uint8_t tag32,
                         size_t min_elem_bytes, const char *what, uint32_t *n)
{
    if (r->off >= r->size)
        return mp_fail(r, "truncated");
    uint8_t b = mp_byte(r, r->off);
    size_t head;
    if ((b & 0xf0) == fix_base) {
        *n = b & 0x0f;
        head = 1;
    } else if (b == tag16 || b == tag32) {
        head = b == tag16 ? 3 : 5;
        if (r->size - r->off < head)
            return mp_fail(r, "truncated");
        *n = mp_be(r, r->off + 1, (int)head - 1);
    } else {
        return mp_fail(r, what);
    }
    if ((uint64_t)*n * min_elem_bytes > r->size - r->off - head)
        return mp_fail(r, "element count exceeds the bytes left");
    r->off += head;
    return true;
}

bool kw_mp_read_array(kw_mp_reader *r, uint32_t *n)
{
    return mp_container(r, 0x90, 0xdc, 0xdd, 1, "expected array", n);
}

bool kw_mp_read_map(kw_mp_reader *r, uint32_t *n)
{
    return mp_container(r, 0x80, 0xde, 0xdf, 2, "expected map", n);
}

static bool mp_is_container(uint8_t b)
{
    return (b >= 0x80 && b <= 0x9f) || (b >= 0xdc && b <= 0xdf);
}

/* Decodes one scalar of type `want` with msgpack-c. */
static bool mp_scalar(kw_mp_reader *r, msgpack_object_type want, const char *what,
                      msgpack_object *out)
{
    *out = (msgpack_object){.type = MSGPACK_OBJECT_NIL};
    if (r->off >= r->size)
        return mp_fail(r, "truncated");
    if (mp_is_container(mp_byte(r, r->off)))
        return mp_fail(r, what);
    size_t off = r->off;
    msgpack_unpack_return ret = msgpack_unpack(r->data, r->size, &off, &r->zone, out);
    if (ret == MSGPACK_UNPACK_CONTINUE)
        return mp_fail(r, "truncated");
    if (ret != MSGPACK_UNPACK_SUCCESS && ret != MSGPACK_UNPACK_EXTRA_BYTES)
        return mp_fail(r, "invalid msgpack");
    if (out->type != want)
        return mp_fail(r, what);
    r->off = off;
    return true;
}

bool kw_mp_read_uint(kw_mp_reader *r, uint64_t *v)
{
    msgpack_object o;
    if (!mp_scalar(r, MSGPACK_OBJECT_POSITIVE_INTEGER, "expected unsigned integer", &o))
        return false;
    *v = o.via.u64;
    return true;
}

bool kw_mp_read_bin(kw_mp_reader *r, kw_slice *s)
{
    msgpack_object o;
    if (!mp_scalar(r, MSGPACK_OBJECT_BIN, "expected bin", &o))
        return false;
    *s = kw_slice_make(o.via.bin.ptr, o.via.bin.size);
    return true;
}

bool kw_mp_read_str(kw_mp_reader *r, kw_slice *s)
{
    msgpack_object o;
    if (!mp_scalar(r, MSGPACK_OBJECT_STR, "expected str", &o))
        return false;
    *s = kw_slice_make(o.via.str.ptr, o.via.str.size);
    return true;
}

/* ---- building ---------------------------------------------------------------------------------- */

static void put_be(char *dst, uint64_t v, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        dst[i] = (char)(v & 0xff);
        v >>= 8;
    }
}

static uint64_t get_be(const char *src, int width)
{
    uint64_t v = 0;
    for (int i = 0; i < width; i++)
        v = (v << 8) | (uint8_t)src[i];
    return v;
}

/* The packer's sink: every msgpack-c write lands at the end of the batch's kw_buf. */
static int buf_write(void *data, const char *buf, size_t len)
{
    kw_buf_append(data, buf, len);
    return 0;
}

static void write_header(kiwi_batch *b)
{
    static const char head[KW_BATCH_HEADER_SIZE] = {(char)0x92, (char)0xcf, 0, 0, 0, 0,
                                                    0, 0, 0, 0, (char)0xdd, 0, 0, 0, 0};
    kw_buf_clear(&b->rep);
    kw_buf_append(&b->rep, head, sizeof head);
}

void kw_batch_init(kiwi_batch *b)
{
    kw_buf_init(&b->rep);
    b->count = 0;
    b->user_bytes = 0;
    b->rejected = 0;
    b->rejected_klen = 0;
    b->rejected_vlen = 0;
    write_header(b);
}

void kw_batch_free(kiwi_batch *b)
{
    kw_buf_free(&b->rep);
}

void kw_batch_set_sequence(kiwi_batch *b, uint64_t first_seq)
{
    put_be(b->rep.data + 2, first_seq, 8);
}

uint64_t kw_batch_sequence(const kiwi_batch *b)
{
    return get_be(b->rep.data + 2, 8);
}

kw_slice kw_batch_payload(const kiwi_batch *b)
{
    return kw_slice_make(b->rep.data, b->rep.len);
}

kiwi_status kw_batch_check(const kiwi_batch *b, char **errmsg)
{
    if (b->rejected)
        return kw_error(errmsg, KIWI_INVALID_ARGUMENT,
                        "batch: %u operation(s) refused; the first has a %zu-byte key and a "
                        "%zu-byte value (limits: KIWI_MAX_KEY_SIZE %u, KIWI_MAX_VALUE_SIZE %u)",
                        b->rejected, b->rejected_klen, b->rejected_vlen, KIWI_MAX_KEY_SIZE,
                        KIWI_MAX_VALUE_SIZE);
    if (b->rep.len > KW_WAL_MAX_RECORD)
        return kw_error(errmsg, KIWI_INVALID_ARGUMENT,
                        "batch: payload of %zu bytes exceeds the WAL record limit of %u bytes",
                        b->rep.len, KW_WAL_MAX_RECORD);
    return KIWI_OK;
}

/* False (and counted as refused) when the operation breaks a size limit. */
static bool admit(kiwi_batch *b, size_t klen, size_t vlen)
{
    if (klen <= KIWI_MAX_KEY_SIZE && vlen <= KIWI_MAX_VALUE_SIZE && b->count < UINT32_MAX)
        return true;
    if (b->rejected++ == 0) {
        b->rejected_klen = klen;
        b->rejected_vlen = vlen;
    }
    return false;
}

static void record(kiwi_batch *b, kw_value_type type, const char *key, size_t klen,
                   const char *val, size_t vlen)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b->rep, buf_write);
    msgpack_pack_array(&pk, type == KW_TYPE_VALUE ? 3 : 2);
    msgpack_pack_uint8(&pk, (uint8_t)type); /* 0 or 1: a positive fixint */
    msgpack_pack_bin(&pk, klen);
    msgpack_pack_bin_body(&pk, key, klen);
    if (type == KW_TYPE_VALUE) {
        msgpack_pack_bin(&pk, vlen);
        msgpack_pack_bin_body(&pk, val, vlen);
    }
    b->count++;
    b->user_bytes += klen + vlen;
    put_be(b->rep.data + 11, b->count, 4);
}

/* ---- the public API (kiwi.h) ------------------------------------------------------------------ */

kiwi_batch *kiwi_batch_create(void)
{
    kiwi_batch *b = kw_malloc(sizeof *b);
    kw_batch_init(b);
    return b;
}

void kiwi_batch_put(kiwi_batch *b, const char *key, size_t klen, const char *val, size_t vlen)
{
    if (admit(b, klen, vlen))
        record(b, KW_TYPE_VALUE, key, klen, val, vlen);
}

void kiwi_batch_delete(kiwi_batch *b, const char *key, size_t klen)
{
    if (admit(b, klen, 0))
        record(b, KW_TYPE_DELETE, key, klen, NULL, 0);
}

void kiwi_batch_clear(kiwi_batch *b)
{
    b->count = 0;
    b->user_bytes = 0;
    b->rejected = 0;
    b->rejected_klen = 0;
    b->rejected_vlen = 0;
    write_header(b);
}

size_t kiwi_batch_count(const kiwi_batch *b)
{
    return b->count;
}

void kiwi_batch_destroy(kiwi_batch *b)
{
    if (b == NULL)
        return;
    kw_batch_free(b);
    free(b);
}

/* ---- decoding ---------------------------------------------------------------------------------- */

typedef struct {
    kw_value_type type;
    kw_slice key;
    kw_slice value;
} batch_op;

/* Ops decoded during validation are kept for the callback pass when the batch is this small (the
 * common case), so most batches are decoded once; larger ones are decoded again. */
#define BATCH_OP_CACHE 32

/* "corruption: batch: op 3 at byte 40 of 52: expected bin" (op < 0: not inside an operation) */
static kiwi_status batch_corrupt(const kw_mp_reader *r, int64_t op, char **errmsg)
{
    const char *err = r->err ? r->err : "invalid";
    if (op < 0)
        return kw_error(errmsg, KIWI_CORRUPTION, "batch: byte %zu of %zu: %s", r->off, r->size,
                        err);
    return kw_error(errmsg, KIWI_CORRUPTION, "batch: op %" PRId64 " at byte %zu of %zu: %s", op,
                    r->off, r->size, err);
}

/* Reads one operation: [1, key, value] or [0, key]. */
static bool read_op(kw_mp_reader *r, batch_op *op)
{
    uint32_t n;
    uint64_t code;
    if (!kw_mp_read_array(r, &n))
        return false;
    if (n != 2 && n != 3)
        return mp_fail(r, "an operation must be a 2- or 3-element array");
    size_t at = r->off;
    if (!kw_mp_read_uint(r, &code))
        return false;
    if (code > KW_TYPE_VALUE || n != (code == KW_TYPE_VALUE ? 3u : 2u)) {
        r->off = at;
        return mp_fail(r, "unknown op code or wrong arity (put is [1,k,v], delete is [0,k])");
    }
    op->type = (kw_value_type)code;
    at = r->off;
    if (!kw_mp_read_bin(r, &op->key))
        return false;
    if (op->key.size > KIWI_MAX_KEY_SIZE) {
        r->off = at;
        return mp_fail(r, "key larger than KIWI_MAX_KEY_SIZE");
    }
    /* a delete's value is empty but still points into the payload (never NULL) */
    op->value = kw_slice_make(op->key.data + op->key.size, 0);
    if (op->type == KW_TYPE_DELETE)
        return true;
    at = r->off;
    if (!kw_mp_read_bin(r, &op->value))
        return false;
    if (op->value.size > KIWI_MAX_VALUE_SIZE) {
        r->off = at;
        return mp_fail(r, "value larger than KIWI_MAX_VALUE_SIZE");
    }
    return true;
}

/* Reads [first_seq, [ and returns the op count; leaves r at the first op. */
static bool read_head(kw_mp_reader *r, uint64_t *first_seq, uint32_t *count)
{
    uint32_t n;
    if (!kw_mp_read_array(r, &n))
        return false;
    if (n != 2) {
        r->off = 0;
        return mp_fail(r, "a batch must be a 2-element array [first_seq, ops]");
    }
    if (!kw_mp_read_uint(r, first_seq))
        return false;
    size_t at = r->off;
    if (!kw_mp_read_array(r, count))
        return false;
    /* every sequence first_seq .. first_seq+count-1 must fit in 56 bits */
    if (*count > 0 && (*first_seq > KW_MAX_SEQ || *count - 1 > KW_MAX_SEQ - *first_seq)) {
        r->off = at;
        return mp_fail(r, "sequence numbers run past 2^56-1");
    }
    return true;
}

/* Validates every operation, caching the first BATCH_OP_CACHE; *resume is where the rest start.
 * Returns -2 when valid, else the failing op index (-1: outside any op). */
static int64_t validate(kw_mp_reader *r, uint64_t *seq, uint32_t *n, batch_op *cache,
                        size_t *resume)
{
    if (!read_head(r, seq, n))
        return -1;
    *resume = r->off;
    for (uint32_t i = 0; i < *n; i++) {
        batch_op op;
        if (!read_op(r, i < BATCH_OP_CACHE ? &cache[i] : &op))
            return i;
        if (i < BATCH_OP_CACHE)
            *resume = r->off;
    }
    if (r->off != r->size) {
        r->err = "trailing bytes after the last operation";
        return -1;
    }
    return -2;
}

kiwi_status kw_batch_iterate(kw_slice payload, kw_batch_op_fn fn, void *ctx, uint64_t *first_seq,
                             uint32_t *count, char **errmsg)
{
    kw_mp_reader r;
    kw_mp_reader_init(&r, payload);
    uint64_t seq;
    uint32_t n;
    batch_op cache[BATCH_OP_CACHE];
    size_t resume;
    int64_t bad = validate(&r, &seq, &n, cache, &resume);
    if (bad != -2) {
        kiwi_status st = batch_corrupt(&r, bad, errmsg);
        kw_mp_reader_destroy(&r);
        return st;
    }
    /* valid: now, and only now, hand out the operations */
    r.off = resume;
    for (uint32_t i = 0; i < n; i++) {
        batch_op op;
        if (i < BATCH_OP_CACHE)
            op = cache[i];
        else
            read_op(&r, &op); /* cannot fail: validated above */
        fn(ctx, seq + i, op.type, op.key, op.value);
    }
    kw_mp_reader_destroy(&r);
    if (first_seq)
        *first_seq = seq;
    if (count)
        *count = n;
    return KIWI_OK;
}
