/*
 * fuzz_msgpack.c: libFuzzer target for kiwi's msgpack decoding: kw_batch_iterate (the WAL batch
 * payload) and the kw_mp_reader cursor functions (shared with the manifest decoder).
 *
 * Input: byte 0 picks the mode.
 *   even: bytes 1.. are a batch payload, checked with fuzz_batch.h (the payload alone, then
 *         with a WAL batch head prepended so mutations of the ops are reached more often).
 *   odd:  byte 1 gives a script length k (1..16), bytes 2..2+k the script, the rest is msgpack.
 *         The script is replayed (cyclically, at most 512 steps) as kw_mp_read_array / map /
 *         uint / bin / str calls on one reader, each compared with an independent decoder
 *         written from the msgpack spec: same success or failure, same value, same offset
 *         after. A failure must leave the offset where it was and set err; a success moves it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "fuzz_batch.h"
#include "fuzz_common.h"

/* ---- the reference decoder --------------------------------------------------------------- */

enum { OP_ARRAY, OP_MAP, OP_UINT, OP_BIN, OP_STR, OP_COUNT };

typedef struct {
    bool ok;
    size_t next;     /* offset after the item (its header only for a container) */
    uint64_t value;  /* count or integer */
    size_t body_off; /* bin/str: where the bytes start */
    size_t body_len;
} ref_result;

static uint64_t be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* A container header (fix, 16- and 32-bit forms); the count times min_elem must fit after it. */
static ref_result ref_container(const uint8_t *d, size_t size, size_t off, bool map)
{
    ref_result r = {0};
    if (off >= size)
        return r;
    uint8_t b = d[off];
    size_t head;
    uint64_t n;
    if ((b & 0xf0) == (map ? 0x80 : 0x90)) {
        head = 1;
        n = b & 0x0f;
    } else if (b == (map ? 0xde : 0xdc) || b == (map ? 0xdf : 0xdd)) {
        head = (b & 1) == 0 ? 3 : 5;
        if (size - off < head)
            return r;
        n = be(d + off + 1, (int)head - 1);
    } else {
        return r;
    }
    if (n * (map ? 2u : 1u) > size - off - head)
        return r;
    r.ok = true;
    r.next = off + head;
    r.value = n;
    return r;
}

/* An unsigned integer: positive fixint, uint8..64, or int8..64 holding a value >= 0 (msgpack-c
 * reads those as positive integers too). */
static ref_result ref_uint(const uint8_t *d, size_t size, size_t off)
{
    ref_result r = {0};
    if (off >= size)
        return r;
    uint8_t b = d[off];
    if (b <= 0x7f) {
        r.ok = true;
        r.next = off + 1;
        r.value = b;
        return r;
    }
    int width;
    bool is_signed;
    if (b >= 0xcc && b <= 0xcf) {
        width = 1 << (b - 0xcc);
        is_signed = false;
    } else if (b >= 0xd0 && b <= 0xd3) {
        width = 1 << (b - 0xd0);
        is_signed = true;
    } else {
        return r;
    }
    if (size - off - 1 < (size_t)width)
        return r;
    uint64_t v = be(d + off + 1, width);
    if (is_signed && (v >> (8 * width - 1)) != 0)
        return r; /* negative */
    r.ok = true;
    r.next = off + 1 + (size_t)width;
    r.value = v;
    return r;
}

/* bin8/16/32 or str (fixstr, str8/16/32). */
static ref_result ref_bytes(const uint8_t *d, size_t size, size_t off, bool str)
{
    ref_result r = {0};
    if (off >= size)
        return r;
    uint8_t b = d[off];
    size_t head;
    uint64_t n;
    if (str && (b & 0xe0) == 0xa0) {
        head = 1;
        n = b & 0x1f;
    } else if (b == (str ? 0xd9 : 0xc4) || b == (str ? 0xda : 0xc5) || b == (str ? 0xdb : 0xc6)) {
        int width = 1 << (b - (str ? 0xd9 : 0xc4));
        head = 1 + (size_t)width;
        if (size - off < head)
            return r;
        n = be(d + off + 1, width);
    } else {
        return r;
    }
    if (n > size - off - head)
        return r;
    r.ok = true;
    r.body_off = off + head;
    r.body_len = n;
    r.next = off + head + n;
    return r;
}

static ref_result ref_read(const uint8_t *d, size_t size, size_t off, int op)
{
    switch (op) {
    case OP_ARRAY:
        return ref_container(d, size, off, false);
    case OP_MAP:
        return ref_container(d, size, off, true);
    case OP_UINT:
        return ref_uint(d, size, off);
    case OP_BIN:
        return ref_bytes(d, size, off, false);
    default:
        return ref_bytes(d, size, off, true);
    }
}

/* ---- the reader under test --------------------------------------------------------------- */

static void run_script(const uint8_t *script, size_t k, const char *msg, size_t size)
{
    kw_mp_reader r;
    kw_mp_reader_init(&r, kw_slice_make(msg, size));
    const uint8_t *d = (const uint8_t *)msg;
    int failures_in_a_row = 0;
    for (size_t step = 0; step < 512 && r.off < size && failures_in_a_row < OP_COUNT; step++) {
        int op = script[step % k] % OP_COUNT;
        size_t before = r.off;
        ref_result want = ref_read(d, size, before, op);
        bool ok;
        uint32_t n = 0;
        uint64_t v = 0;
        kw_slice s = {NULL, 0};
        switch (op) {
        case OP_ARRAY:
            ok = kw_mp_read_array(&r, &n);
            v = n;
            break;
        case OP_MAP:
            ok = kw_mp_read_map(&r, &n);
            v = n;
            break;
        case OP_UINT:
            ok = kw_mp_read_uint(&r, &v);
            break;
        case OP_BIN:
            ok = kw_mp_read_bin(&r, &s);
            break;
        default:
            ok = kw_mp_read_str(&r, &s);
            break;
        }
        FUZZ_CHECK(ok == want.ok);
        if (!ok) {
            FUZZ_CHECK(r.off == before && r.err != NULL);
            failures_in_a_row++;
            continue;
        }
        failures_in_a_row = 0;
        FUZZ_CHECK(r.off == want.next && r.off > before && r.off <= size);
        if (op == OP_BIN || op == OP_STR) /* msgpack-c points an empty body into the header */
            FUZZ_CHECK(s.size == want.body_len &&
                       (s.size == 0 ? fuzz_inside(s, msg, size) : s.data == msg + want.body_off));
        else
            FUZZ_CHECK(v == want.value);
    }
    kw_mp_reader_destroy(&r);
}

/* A batch head for `count` ops at sequence 1, followed by the input. */
static void check_with_head(const uint8_t *data, size_t size)
{
    char *p = kw_malloc(KW_BATCH_HEADER_SIZE + size);
    static const char head[KW_BATCH_HEADER_SIZE] = {(char)0x92, (char)0xcf, 0, 0, 0, 0, 0,
                                                    0,          0,          1, (char)0xdd};
    memcpy(p, head, sizeof head);
    /* the op count: a guess from the first byte, so both right and wrong counts are tried */
    uint32_t count = size > 0 ? data[0] % 8 : 0;
    p[11] = (char)(count >> 24);
    p[12] = (char)(count >> 16);
    p[13] = (char)(count >> 8);
    p[14] = (char)count;
    if (size)
        memcpy(p + KW_BATCH_HEADER_SIZE, data, size);
    fuzz_check_batch(kw_slice_make(p, KW_BATCH_HEADER_SIZE + size));
    free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if ((data[0] & 1) == 0) {
        char *payload = fuzz_copy(data + 1, size - 1);
        fuzz_check_batch(kw_slice_make(payload, size - 1));
        free(payload);
        check_with_head(data + 1, size - 1);
        return 0;
    }
    if (size < 2)
        return 0;
    size_t k = 1 + data[1] % 16;
    if (size < 2 + k)
        return 0;
    char *msg = fuzz_copy(data + 2 + k, size - 2 - k);
    run_script(data + 2, k, msg, size - 2 - k);
    free(msg);
    return 0;
}
