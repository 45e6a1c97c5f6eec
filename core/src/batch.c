/*
 * batch.c: kiwi_batch (the public batch API) and its msgpack WAL payload, encoded and decoded by
 * hand (kw_batch_iterate validates strictly); plus the kw_mp_reader cursor shared with
 * version_edit.c. Format: batch.h and docs/internals/wal.md.
 */
#include "batch.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wal.h"

/* ---- strict msgpack reading ------------------------------------------------------------------
 * Hand-written: every read checks the type byte, then that the header and body fit in what is
 * left, before it moves the cursor. Nothing is allocated; bin and str bodies are slices of the
 * input. The forms accepted are msgpack's (batch.h); a failure leaves `off` where it was. */

void kw_mp_reader_init(kw_mp_reader *r, kw_slice s)
{
    r->data = s.data;
    r->size = s.size;
    r->off = 0;
    r->err = NULL;
}

void kw_mp_reader_destroy(kw_mp_reader *r)
{
    (void)r; /* nothing is allocated; kept so callers need not know */
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

static uint64_t mp_be(const kw_mp_reader *r, size_t at, int width)
{
    uint64_t v = 0;
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
        *n = (uint32_t)mp_be(r, r->off + 1, (int)head - 1);
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

/* An unsigned integer: positive fixint, uint8..64, or int8..64 holding a value >= 0 (the same
 * integer, only packed by a writer that chose a signed form). */
bool kw_mp_read_uint(kw_mp_reader *r, uint64_t *v)
{
    if (r->off >= r->size)
        return mp_fail(r, "truncated");
    uint8_t b = mp_byte(r, r->off);
    if (b <= 0x7f) {
        *v = b;
        r->off++;
        return true;
    }
    bool is_signed = b >= 0xd0 && b <= 0xd3;
    if (!is_signed && !(b >= 0xcc && b <= 0xcf))
        return mp_fail(r, b == 0xc1 ? "invalid msgpack" : "expected unsigned integer");
    int width = 1 << (b - (is_signed ? 0xd0 : 0xcc));
    if (r->size - r->off - 1 < (size_t)width)
        return mp_fail(r, "truncated");
    uint64_t x = mp_be(r, r->off + 1, width);
    if (is_signed && (x >> (8 * width - 1)) != 0)
        return mp_fail(r, "expected unsigned integer"); /* negative */
    *v = x;
    r->off += 1 + (size_t)width;
    return true;
}

/* A bin (bin8/16/32) or, with str, a str (fixstr, str8/16/32); the body must fit. */
static bool mp_bytes(kw_mp_reader *r, bool str, const char *what, kw_slice *s)
{
    if (r->off >= r->size)
        return mp_fail(r, "truncated");
    uint8_t b = mp_byte(r, r->off);
    uint8_t base = str ? 0xd9 : 0xc4;
    size_t head;
    uint64_t n;
    if (str && (b & 0xe0) == 0xa0) {
        head = 1;
        n = b & 0x1f;
    } else if (b >= base && b <= base + 2) {
        int width = 1 << (b - base);
        head = 1 + (size_t)width;
        if (r->size - r->off < head)
            return mp_fail(r, "truncated");
        n = mp_be(r, r->off + 1, width);
    } else {
        return mp_fail(r, b == 0xc1 ? "invalid msgpack" : what);
    }
    if (n > r->size - r->off - head)
        return mp_fail(r, "truncated");
    *s = kw_slice_make(r->data + r->off + head, (size_t)n);
    r->off += head + (size_t)n;
    return true;
}

bool kw_mp_read_bin(kw_mp_reader *r, kw_slice *s)
{
    return mp_bytes(r, false, "expected bin", s);
}

bool kw_mp_read_str(kw_mp_reader *r, kw_slice *s)
{
    return mp_bytes(r, true, "expected str", s);
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

static void write_header(kiwi_batch *b)
{
    static const char head[KW_BATCH_HEADER_SIZE] = {(char)0x92, (char)0xcf, 0, 0, 0, 0,
                                                    0, 0, 0, 0, (char)0xdd, 0, 0, 0, 0};
    kw_buf_clear(&b->rep);
    kw_buf_append(&b->rep, head, sizeof head);
    b->seq = 0;
    b->head_off = 0;
}

/* Puts the fixed-width head back after kw_batch_set_sequence compacted it (the ops after it are
 * untouched), so the count and the sequence can be patched in place again. */
static void restore_header(kiwi_batch *b)
{
    if (b->head_off == 0)
        return;
    char *p = b->rep.data;
    p[0] = (char)0x92;
    p[1] = (char)0xcf;
    put_be(p + 2, b->seq, 8);
    p[10] = (char)0xdd;
    put_be(p + 11, b->count, 4);
    b->head_off = 0;
}

/* The smallest msgpack forms of the head [first_seq, [ops...]] (as msgpack-c packs them): the
 * array, the sequence as a fixint or uint8/16/32/64, the ops array as a fixarray, array16 or
 * array32. Returns its size (3..15). */
static size_t compact_header(char *out, uint64_t seq, uint32_t count)
{
    size_t n = 0;
    out[n++] = (char)0x92;
    if (seq < 0x80) {
        out[n++] = (char)seq;
    } else if (seq < 0x100) {
        out[n++] = (char)0xcc;
        out[n++] = (char)seq;
    } else if (seq < 0x10000) {
        out[n++] = (char)0xcd;
        put_be(out + n, seq, 2);
        n += 2;
    } else if (seq < 0x100000000ull) {
        out[n++] = (char)0xce;
        put_be(out + n, seq, 4);
        n += 4;
    } else {
        out[n++] = (char)0xcf;
        put_be(out + n, seq, 8);
        n += 8;
    }
    if (count < 16) {
        out[n++] = (char)(0x90 | count);
    } else if (count < 0x10000) {
        out[n++] = (char)0xdc;
        put_be(out + n, count, 2);
        n += 2;
    } else {
        out[n++] = (char)0xdd;
        put_be(out + n, count, 4);
        n += 4;
    }
    return n;
}

static void batch_init_rest(kiwi_batch *b)
{
    b->count = 0;
    b->user_bytes = 0;
    b->rejected = 0;
    b->rejected_klen = 0;
    b->rejected_vlen = 0;
    write_header(b);
}

void kw_batch_init(kiwi_batch *b)
{
    kw_buf_init(&b->rep);
    batch_init_rest(b);
}

void kw_batch_init_borrowed(kiwi_batch *b, char *storage, size_t cap)
{
    kw_buf_init_borrowed(&b->rep, storage, cap);
    batch_init_rest(b);
}

void kw_batch_free(kiwi_batch *b)
{
    kw_buf_free(&b->rep);
}

void kw_batch_set_sequence(kiwi_batch *b, uint64_t first_seq)
{
    char head[KW_BATCH_HEADER_SIZE];
    size_t n = compact_header(head, first_seq, b->count);
    b->seq = first_seq;
    b->head_off = (uint32_t)(KW_BATCH_HEADER_SIZE - n);
    memcpy(b->rep.data + b->head_off, head, n);
}

uint64_t kw_batch_sequence(const kiwi_batch *b)
{
    return b->head_off ? b->seq : get_be(b->rep.data + 2, 8);
}

kw_slice kw_batch_payload(const kiwi_batch *b)
{
    return kw_slice_make(b->rep.data + b->head_off, b->rep.len - b->head_off);
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

/* Writes a msgpack bin header at dst (bin8, bin16 or bin32: the smallest that holds n, as
 * msgpack-c's packer chooses) and returns its size. */
static size_t put_bin_header(char *dst, size_t n)
{
    if (n < 0x100) {
        dst[0] = (char)0xc4;
        dst[1] = (char)n;
        return 2;
    }
    if (n < 0x10000) {
        dst[0] = (char)0xc5;
        put_be(dst + 1, n, 2);
        return 3;
    }
    dst[0] = (char)0xc6;
    put_be(dst + 1, n, 4);
    return 5;
}

/* Appends [1, key, value] or [0, key]: a fixarray, a positive fixint and one or two bins,
 * written in place after one reserve. */
static void record(kiwi_batch *b, kw_value_type type, const char *key, size_t klen,
                   const char *val, size_t vlen)
{
    bool put = type == KW_TYPE_VALUE;
    restore_header(b);
    kw_buf_reserve(&b->rep, 2 + 5 + klen + (put ? 5 + vlen : 0));
    char *p = b->rep.data + b->rep.len;
    *p++ = (char)(put ? 0x93 : 0x92);
    *p++ = (char)type; /* 0 or 1: a positive fixint */
    p += put_bin_header(p, klen);
    if (klen)
        memcpy(p, key, klen);
    p += klen;
    if (put) {
        p += put_bin_header(p, vlen);
        if (vlen)
            memcpy(p, val, vlen);
        p += vlen;
    }
    b->rep.len = (size_t)(p - b->rep.data);
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

/* The form kiwi_batch_put/delete write: 93 01 <bin key> <bin value> or 92 00 <bin key>, read
 * without the general decoder's dispatch. False (r untouched) when the op at r->off is in any
 * other form or does not fit; read_op then decides with the general rules. */
static bool read_own_op(kw_mp_reader *r, batch_op *op)
{
    size_t off = r->off, left = r->size - off;
    const uint8_t *p = (const uint8_t *)r->data + off;
    if (left < 4 || p[2] != 0xc4)
        return false;
    bool put = p[0] == 0x93 && p[1] == 0x01;
    if (!put && !(p[0] == 0x92 && p[1] == 0x00))
        return false;
    size_t klen = p[3];
    if (klen > left - 4)
        return false;
    op->key = kw_slice_make(r->data + off + 4, klen);
    size_t used = 4 + klen;
    if (!put) {
        op->type = KW_TYPE_DELETE;
        op->value = kw_slice_make(op->key.data + klen, 0);
        r->off = off + used;
        return true;
    }
    kw_mp_reader v = {r->data, r->size, off + used, NULL};
    kw_slice value = {NULL, 0};
    if (!kw_mp_read_bin(&v, &value) || value.size > KIWI_MAX_VALUE_SIZE)
        return false;
    op->value = value;
    op->type = KW_TYPE_VALUE;
    r->off = v.off;
    return true;
}

/* Reads one operation: [1, key, value] or [0, key], in any msgpack form. */
static bool read_op(kw_mp_reader *r, batch_op *op)
{
    if (read_own_op(r, op))
        return true;
    uint32_t n;
    uint64_t code;
    size_t start = r->off;
    if (!kw_mp_read_array(r, &n))
        return false;
    if (n != 2 && n != 3) {
        r->off = start;
        return mp_fail(r, "an operation must be a 2- or 3-element array");
    }
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

/* Validates every operation; *ops_at is where the first one starts. Returns -2 when valid,
 * else the failing op index (-1: outside any op). */
static int64_t validate(kw_mp_reader *r, uint64_t *seq, uint32_t *n, size_t *ops_at)
{
    if (!read_head(r, seq, n))
        return -1;
    *ops_at = r->off;
    for (uint32_t i = 0; i < *n; i++) {
        batch_op op;
        if (!read_op(r, &op))
            return i;
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
    size_t ops_at;
    int64_t bad = validate(&r, &seq, &n, &ops_at);
    if (bad != -2)
        return batch_corrupt(&r, bad, errmsg);
    /* valid: now, and only now, hand out the operations (a second pass over validated bytes) */
    r.off = ops_at;
    for (uint32_t i = 0; i < n; i++) {
        batch_op op;
        memset(&op, 0, sizeof op);
        if (!read_op(&r, &op)) /* cannot fail: validated above */
            return batch_corrupt(&r, (int64_t)i, errmsg);
        fn(ctx, seq + i, op.type, op.key, op.value);
    }
    if (first_seq)
        *first_seq = seq;
    if (count)
        *count = n;
    return KIWI_OK;
}
