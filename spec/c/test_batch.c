/*
 * test_batch.c: kiwi_batch and its msgpack payload: building, kw_batch_iterate, interop with plain
 * msgpack-c, and rejection of every kind of malformed payload before any callback.
 */
#include <msgpack.h>

#include "batch.h"
#include "ctest.h"

/* ---- a recorder for kw_batch_iterate ---- */

typedef struct {
    uint64_t seq;
    kw_value_type type;
    char *key;
    size_t klen;
    char *val;
    size_t vlen;
} seen_op;

typedef struct {
    seen_op ops[256];
    size_t n;
    size_t calls;
    kw_slice payload; /* to check that slices point into it */
    int outside;      /* slices that did not */
} recorder;

static void record_op(void *ctx, uint64_t seq, kw_value_type type, kw_slice key, kw_slice value)
{
    recorder *r = ctx;
    r->calls++;
    const char *lo = r->payload.data, *hi = r->payload.data + r->payload.size;
    if (key.data < lo || key.data + key.size > hi || value.data < lo ||
        value.data + value.size > hi)
        r->outside++;
    if (r->n == 256)
        return;
    seen_op *o = &r->ops[r->n++];
    o->seq = seq;
    o->type = type;
    o->key = kw_memdup(key.data, key.size);
    o->klen = key.size;
    o->val = kw_memdup(value.data, value.size);
    o->vlen = value.size;
}

static void recorder_free(recorder *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->ops[i].key);
        free(r->ops[i].val);
    }
    r->n = 0;
}

static kiwi_status iterate(kw_slice payload, recorder *r, uint64_t *seq, uint32_t *count,
                           char **err)
{
    memset(r, 0, sizeof *r);
    r->payload = payload;
    return kw_batch_iterate(payload, record_op, r, seq, count, err);
}

static bool op_is(const seen_op *o, uint64_t seq, kw_value_type t, const char *k, size_t kl,
                  const char *v, size_t vl)
{
    return o->seq == seq && o->type == t && o->klen == kl && memcmp(o->key, k, kl) == 0 &&
           o->vlen == vl && (vl == 0 || memcmp(o->val, v, vl) == 0);
}

/* ---- building ---- */

static void test_put_delete_clear_count(void)
{
    kiwi_batch *b = kiwi_batch_create();
    CHECK_EQ_U64(kiwi_batch_count(b), 0);
    CHECK_EQ_U64(kw_batch_payload(b).size, KW_BATCH_HEADER_SIZE);
    kiwi_batch_put(b, "a", 1, "one", 3);
    kiwi_batch_delete(b, "b", 1);
    kiwi_batch_put(b, "c", 1, "", 0);
    CHECK_EQ_U64(kiwi_batch_count(b), 3);
    CHECK_EQ_U64(b->user_bytes, 1 + 3 + 1 + 1);
    kiwi_batch_clear(b);
    CHECK_EQ_U64(kiwi_batch_count(b), 0);
    CHECK_EQ_U64(b->user_bytes, 0);
    CHECK_EQ_U64(kw_batch_payload(b).size, KW_BATCH_HEADER_SIZE);
    recorder r;
    uint32_t count = 99;
    CHECK_OK(iterate(kw_batch_payload(b), &r, NULL, &count, NULL), (char **)NULL);
    CHECK_EQ_U64(count, 0);
    CHECK_EQ_U64(r.calls, 0);
    kiwi_batch_destroy(b);
    kiwi_batch_destroy(NULL);
}

static void test_iterate_in_order_with_sequences(void)
{
    kiwi_batch *b = kiwi_batch_create();
    kiwi_batch_put(b, "k1", 2, "v1", 2);
    kiwi_batch_delete(b, "k2", 2);
    kiwi_batch_put(b, "k1", 2, "v1b", 3);
    kw_batch_set_sequence(b, 1000);
    CHECK_EQ_U64(kw_batch_sequence(b), 1000);
    recorder r;
    uint64_t seq = 0;
    uint32_t count = 0;
    char *err = NULL, **errp = &err;
    CHECK_OK(iterate(kw_batch_payload(b), &r, &seq, &count, &err), errp);
    CHECK_EQ_U64(seq, 1000);
    CHECK_EQ_U64(count, 3);
    CHECK_EQ_U64(r.n, 3);
    CHECK(op_is(&r.ops[0], 1000, KW_TYPE_VALUE, "k1", 2, "v1", 2));
    CHECK(op_is(&r.ops[1], 1001, KW_TYPE_DELETE, "k2", 2, "", 0));
    CHECK(op_is(&r.ops[2], 1002, KW_TYPE_VALUE, "k1", 2, "v1b", 3));
    CHECK_EQ_U64(r.outside, 0); /* keys and values are slices of the payload */
    recorder_free(&r);
    kiwi_batch_destroy(b);
}

static void test_empty_key_and_nul_bytes(void)
{
    kiwi_batch *b = kiwi_batch_create();
    kiwi_batch_put(b, "", 0, "x\0y", 3);
    kiwi_batch_put(b, "\0\0k\0", 4, "\0", 1);
    kiwi_batch_delete(b, "", 0);
    kw_batch_set_sequence(b, 7);
    recorder r;
    char *err = NULL, **errp = &err;
    CHECK_OK(iterate(kw_batch_payload(b), &r, NULL, NULL, &err), errp);
    CHECK_EQ_U64(r.n, 3);
    CHECK(op_is(&r.ops[0], 7, KW_TYPE_VALUE, "", 0, "x\0y", 3));
    CHECK(op_is(&r.ops[1], 8, KW_TYPE_VALUE, "\0\0k\0", 4, "\0", 1));
    CHECK(op_is(&r.ops[2], 9, KW_TYPE_DELETE, "", 0, "", 0));
    CHECK_EQ_U64(r.outside, 0);
    recorder_free(&r);
    kiwi_batch_destroy(b);
}

static void test_one_mib_value(void)
{
    size_t n = 1 << 20;
    char *v = malloc(n);
    for (size_t i = 0; i < n; i++)
        v[i] = (char)(i * 131 + 7);
    kiwi_batch *b = kiwi_batch_create();
    kiwi_batch_put(b, "big", 3, v, n);
    recorder r;
    char *err = NULL, **errp = &err;
    CHECK_OK(iterate(kw_batch_payload(b), &r, NULL, NULL, &err), errp);
    CHECK_EQ_U64(r.n, 1);
    CHECK(op_is(&r.ops[0], 0, KW_TYPE_VALUE, "big", 3, v, n));
    recorder_free(&r);
    kiwi_batch_destroy(b);
    free(v);
}

static void test_many_ops_past_the_cache(void)
{
    kiwi_batch *b = kiwi_batch_create();
    char k[16], v[16];
    for (int i = 0; i < 200; i++) {
        int kl = snprintf(k, sizeof k, "key%03d", i), vl = snprintf(v, sizeof v, "v%d", i);
        if (i % 3 == 0)
            kiwi_batch_delete(b, k, (size_t)kl);
        else
            kiwi_batch_put(b, k, (size_t)kl, v, (size_t)vl);
    }
    kw_batch_set_sequence(b, 50);
    recorder r;
    char *err = NULL, **errp = &err;
    CHECK_OK(iterate(kw_batch_payload(b), &r, NULL, NULL, &err), errp);
    CHECK_EQ_U64(r.n, 200);
    for (int i = 0; i < 200; i++) {
        int kl = snprintf(k, sizeof k, "key%03d", i), vl = snprintf(v, sizeof v, "v%d", i);
        if (i % 3 == 0)
            CHECK(op_is(&r.ops[i], 50 + (uint64_t)i, KW_TYPE_DELETE, k, (size_t)kl, "", 0));
        else
            CHECK(op_is(&r.ops[i], 50 + (uint64_t)i, KW_TYPE_VALUE, k, (size_t)kl, v, (size_t)vl));
    }
    recorder_free(&r);
    kiwi_batch_destroy(b);
}

static void test_oversized_ops_are_refused(void)
{
    kiwi_batch *b = kiwi_batch_create();
    size_t big = KIWI_MAX_KEY_SIZE + 1;
    char *k = calloc(1, big);
    kiwi_batch_put(b, "ok", 2, "v", 1);
    char *err = NULL;
    CHECK(kw_batch_check(b, &err) == KIWI_OK);
    kiwi_batch_put(b, k, big, "v", 1);
    kiwi_batch_delete(b, k, big);
    CHECK_EQ_U64(kiwi_batch_count(b), 1); /* not recorded */
    CHECK(kw_batch_check(b, &err) == KIWI_INVALID_ARGUMENT);
    CHECK(err && strstr(err, "invalid argument: batch: 2 operation(s) refused") != NULL);
    CHECK(err && strstr(err, "65537-byte key") != NULL);
    kiwi_batch_clear(b);
    CHECK(kw_batch_check(b, &err) == KIWI_OK);
    kiwi_free(err);
    free(k);
    kiwi_batch_destroy(b);
}

/* ---- interop with plain msgpack-c ---- */

static void test_payload_is_plain_msgpack(void)
{
    kiwi_batch *b = kiwi_batch_create();
    kiwi_batch_put(b, "k", 1, "val", 3);
    kiwi_batch_delete(b, "d\0", 2);
    kw_batch_set_sequence(b, 0x0102030405ULL);
    kw_slice p = kw_batch_payload(b);
    /* the compact head set_sequence writes: uint64 (the sequence needs it), fixarray of 2 */
    static const unsigned char head[] = {0x92, 0xcf, 0, 0, 0, 0x01, 0x02, 0x03, 0x04, 0x05,
                                         0x92};
    CHECK(p.size >= sizeof head && memcmp(p.data, head, sizeof head) == 0);
    /* ops exactly: 93 01 c4 01 'k' c4 03 "val" | 92 00 c4 02 'd' 00 */
    static const unsigned char ops[] = {0x93, 0x01, 0xc4, 0x01, 'k', 0xc4, 0x03, 'v', 'a', 'l',
                                        0x92, 0x00, 0xc4, 0x02, 'd', 0x00};
    CHECK_EQ_U64(p.size, sizeof head + sizeof ops);
    CHECK(memcmp(p.data + sizeof head, ops, sizeof ops) == 0);

    msgpack_zone zone;
    msgpack_zone_init(&zone, 1024);
    msgpack_object o;
    size_t off = 0;
    CHECK(msgpack_unpack(p.data, p.size, &off, &zone, &o) == MSGPACK_UNPACK_SUCCESS);
    CHECK_EQ_U64(off, p.size);
    CHECK(o.type == MSGPACK_OBJECT_ARRAY && o.via.array.size == 2);
    msgpack_object *top = o.via.array.ptr;
    CHECK(top[0].type == MSGPACK_OBJECT_POSITIVE_INTEGER && top[0].via.u64 == 0x0102030405ULL);
    CHECK(top[1].type == MSGPACK_OBJECT_ARRAY && top[1].via.array.size == 2);
    msgpack_object *put = top[1].via.array.ptr[0].via.array.ptr;
    msgpack_object *del = top[1].via.array.ptr[1].via.array.ptr;
    CHECK(top[1].via.array.ptr[0].via.array.size == 3 && top[1].via.array.ptr[1].via.array.size == 2);
    CHECK(put[0].type == MSGPACK_OBJECT_POSITIVE_INTEGER && put[0].via.u64 == 1);
    CHECK(put[1].type == MSGPACK_OBJECT_BIN && put[1].via.bin.size == 1 &&
          memcmp(put[1].via.bin.ptr, "k", 1) == 0);
    CHECK(put[2].type == MSGPACK_OBJECT_BIN && put[2].via.bin.size == 3 &&
          memcmp(put[2].via.bin.ptr, "val", 3) == 0);
    CHECK(del[0].type == MSGPACK_OBJECT_POSITIVE_INTEGER && del[0].via.u64 == 0);
    CHECK(del[1].type == MSGPACK_OBJECT_BIN && del[1].via.bin.size == 2 &&
          memcmp(del[1].via.bin.ptr, "d\0", 2) == 0);
    msgpack_zone_destroy(&zone);
    kiwi_batch_destroy(b);
}

/* A batch written by another msgpack tool in compact forms (fixint seq, fixarray ops, str8-free
 * bin8) is read as well: the decoder follows msgpack, not kiwi's byte layout. */
static void test_decodes_compact_forms_from_other_writers(void)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_uint64(&pk, 5); /* packs as fixint 0x05 */
    msgpack_pack_array(&pk, 1); /* fixarray */
    msgpack_pack_array(&pk, 3);
    msgpack_pack_uint8(&pk, 1);
    msgpack_pack_bin_with_body(&pk, "key", 3);
    msgpack_pack_bin_with_body(&pk, "value", 5);
    recorder r;
    char *err = NULL, **errp = &err;
    CHECK_OK(iterate(kw_slice_make(sb.data, sb.size), &r, NULL, NULL, &err), errp);
    CHECK_EQ_U64(r.n, 1);
    CHECK(op_is(&r.ops[0], 5, KW_TYPE_VALUE, "key", 3, "value", 5));
    recorder_free(&r);
    msgpack_sbuffer_destroy(&sb);
}

/* Keys and values of every bin width: the sizes at which kiwi_batch_put switches from bin8 to
 * bin16 to bin32 encode exactly as msgpack-c packs them, and decode (short path for a bin8 key,
 * the general reader for longer keys) to the same bytes. */
static void test_bin_widths_match_msgpack_c(void)
{
    static const size_t sizes[] = {0, 1, 255, 256, 65535, 65536};
    char *buf = malloc(70000);
    for (size_t i = 0; i < 70000; i++)
        buf[i] = (char)(i * 7 + 1);
    for (size_t ki = 0; ki < 5; ki++) { /* keys up to 65535 (KIWI_MAX_KEY_SIZE is 64 KiB) */
        for (size_t vi = 0; vi < 6; vi++) {
            size_t kl = sizes[ki], vl = sizes[vi];
            kiwi_batch *b = kiwi_batch_create();
            kiwi_batch_put(b, buf, kl, buf + 1, vl);
            kiwi_batch_delete(b, buf + 2, kl);
            msgpack_sbuffer sb;
            msgpack_sbuffer_init(&sb);
            msgpack_packer pk;
            msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
            msgpack_pack_array(&pk, 3);
            msgpack_pack_uint8(&pk, 1);
            msgpack_pack_bin_with_body(&pk, buf, kl);
            msgpack_pack_bin_with_body(&pk, buf + 1, vl);
            msgpack_pack_array(&pk, 2);
            msgpack_pack_uint8(&pk, 0);
            msgpack_pack_bin_with_body(&pk, buf + 2, kl);
            kw_slice p = kw_batch_payload(b);
            CHECK(p.size == KW_BATCH_HEADER_SIZE + sb.size &&
                  memcmp(p.data + KW_BATCH_HEADER_SIZE, sb.data, sb.size) == 0);
            recorder r;
            char *err = NULL, **errp = &err;
            CHECK_OK(iterate(p, &r, NULL, NULL, &err), errp);
            CHECK(r.n == 2 && op_is(&r.ops[0], 0, KW_TYPE_VALUE, buf, kl, buf + 1, vl) &&
                  op_is(&r.ops[1], 1, KW_TYPE_DELETE, buf + 2, kl, "", 0));
            recorder_free(&r);
            msgpack_sbuffer_destroy(&sb);
            kiwi_batch_destroy(b);
        }
    }
    free(buf);
}

/* The same operations in the longest forms msgpack allows (uint64 and int8 op codes, bin32 keys,
 * array16 ops) decode exactly like kiwi's own forms. */
static void test_long_forms_decode_like_short_ones(void)
{
    static const unsigned char p[] = {
        0x92, 0xcf, 0, 0, 0, 0, 0, 0, 0, 0x21,       /* [33, */
        0xdc, 0x00, 0x02,                            /*  array16 of 2 ops: */
        0xdc, 0x00, 0x03, 0xcf, 0, 0, 0, 0, 0, 0, 0, 1, /* [uint64 1, */
        0xc6, 0, 0, 0, 2, 'k', '1',                  /*   bin32 "k1", */
        0xc5, 0, 3, 'v', 'a', 'l',                   /*   bin16 "val"], */
        0x92, 0xd0, 0x00, 0xc4, 2, 'k', '2'};        /*  [int8 0, bin8 "k2"]] */
    recorder r;
    char *err = NULL, **errp = &err;
    CHECK_OK(iterate(kw_slice_make((const char *)p, sizeof p), &r, NULL, NULL, &err), errp);
    CHECK(r.n == 2 && op_is(&r.ops[0], 33, KW_TYPE_VALUE, "k1", 2, "val", 3) &&
          op_is(&r.ops[1], 34, KW_TYPE_DELETE, "k2", 2, "", 0));
    recorder_free(&r);
}

/* ---- corruption ---- */

/* Expects KIWI_CORRUPTION naming `needle`, with the callback never called. */
static void expect_corrupt(const char *data, size_t n, const char *needle, int line)
{
    recorder r;
    char *err = NULL;
    kiwi_status st = iterate(kw_slice_make(data, n), &r, NULL, NULL, &err);
    if (st != KIWI_CORRUPTION || r.calls != 0 || err == NULL ||
        strncmp(err, "corruption: batch: ", 19) != 0 || (needle && strstr(err, needle) == NULL)) {
        fprintf(stderr, "line %d: status %d calls %zu err %s (wanted \"%s\")\n", line, (int)st,
                r.calls, err ? err : "(null)", needle ? needle : "");
        ctest_failures_in_test++;
    }
    recorder_free(&r);
    kiwi_free(err);
}

static void test_truncated_at_every_offset(void)
{
    kiwi_batch *b = kiwi_batch_create();
    kiwi_batch_put(b, "ab", 2, "cde", 3);
    kiwi_batch_delete(b, "f", 1);
    kiwi_batch_put(b, "", 0, "", 0);
    kw_slice p = kw_batch_payload(b);
    for (size_t n = 0; n < p.size; n++)
        expect_corrupt(p.data, n, NULL, __LINE__);
    kiwi_batch_destroy(b);
}

/* A valid two-op batch as bytes, for surgical damage. */
static size_t sample(char *out)
{
    kiwi_batch *b = kiwi_batch_create();
    kiwi_batch_put(b, "k", 1, "v", 1);
    kiwi_batch_delete(b, "d", 1);
    kw_slice p = kw_batch_payload(b); /* no set_sequence: the fixed-width head */
    memcpy(out, p.data, p.size);
    out[9] = 9; /* first_seq 9 */
    size_t n = p.size;
    kiwi_batch_destroy(b);
    return n; /* 15-byte head, put at 15..22, delete at 23..27 */
}

static void test_wrong_shapes_are_rejected(void)
{
    char buf[256];
    size_t n = sample(buf);
    CHECK_EQ_U64(n, 28);

    char t[256];
    memcpy(t, buf, n);
    t[16] = 2; /* op code 2 */
    expect_corrupt(t, n, "op 0 at byte 16", __LINE__);
    memcpy(t, buf, n);
    t[24] = 1; /* a put with only a key */
    expect_corrupt(t, n, "wrong arity", __LINE__);
    memcpy(t, buf, n);
    t[16] = (char)0xff; /* negative fixint as op */
    expect_corrupt(t, n, "expected unsigned integer", __LINE__);
    memcpy(t, buf, n);
    t[17] = (char)0xa1; /* key as str instead of bin */
    expect_corrupt(t, n, "expected bin", __LINE__);
    memcpy(t, buf, n);
    t[1] = (char)0xa8; /* first_seq as str8... */
    expect_corrupt(t, n, "expected unsigned integer", __LINE__);
    memcpy(t, buf, n);
    t[0] = (char)0x93; /* outer array of 3 */
    expect_corrupt(t, n, "2-element array", __LINE__);
    memcpy(t, buf, n);
    t[0] = (char)0x82; /* a map */
    expect_corrupt(t, n, "expected array", __LINE__);
    memcpy(t, buf, n);
    t[14] = 3; /* count says 3, two ops present */
    expect_corrupt(t, n, "op 2 at byte 28", __LINE__);
    memcpy(t, buf, n);
    t[14] = 1; /* count says 1: the second op is trailing */
    expect_corrupt(t, n, "trailing bytes", __LINE__);
    memcpy(t, buf, n);
    t[n] = 0; /* trailing garbage */
    expect_corrupt(t, n + 1, "trailing bytes", __LINE__);
    memcpy(t, buf, n);
    t[23] = (char)0xc1; /* reserved byte where an op should start */
    expect_corrupt(t, n, "op 1 at byte 23 of 28: expected array", __LINE__);
    memcpy(t, buf, n);
    t[17] = (char)0xc1; /* reserved byte as key */
    expect_corrupt(t, n, "invalid msgpack", __LINE__);
    /* the delete grows a value: [0, "d", "x"] */
    memcpy(t, buf, n);
    t[23] = (char)0x93;
    memcpy(t + n, "\xc4\x01x", 3);
    expect_corrupt(t, n + 3, "wrong arity", __LINE__);
}

static void test_huge_declared_counts_are_rejected_cheaply(void)
{
    char buf[256];
    size_t n = sample(buf);
    char t[256];
    memcpy(t, buf, n);
    memcpy(t + 11, "\xff\xff\xff\xff", 4); /* 4 billion ops in a 28-byte payload */
    expect_corrupt(t, n, "element count exceeds the bytes left", __LINE__);
    /* an op that is an array32 of 4 billion elements: msgpack-c's object unpacker would try to
     * allocate ~96 GiB for it; the decoder must refuse before that */
    memcpy(t, buf, 15);
    memcpy(t + 15, "\xdd\xff\xff\xff\xff\x01", 6);
    t[14] = 1;
    expect_corrupt(t, 21, "op 0 at byte 15 of 21: element count exceeds", __LINE__);
    memcpy(t + 15, "\x93\x01\xdd\xff\xff\xff\xff", 7); /* and as a key */
    expect_corrupt(t, 22, "expected bin", __LINE__);
}

static void test_sizes_over_the_limits_are_corruption(void)
{
    /* [0, [[1, key of 65537 bytes, ""]]] packed by msgpack-c directly */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_uint64(&pk, 1);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_array(&pk, 3);
    msgpack_pack_uint8(&pk, 1);
    char *k = calloc(1, KIWI_MAX_KEY_SIZE + 1);
    msgpack_pack_bin_with_body(&pk, k, KIWI_MAX_KEY_SIZE + 1);
    msgpack_pack_bin_with_body(&pk, "", 0);
    expect_corrupt(sb.data, sb.size, "key larger than KIWI_MAX_KEY_SIZE", __LINE__);
    msgpack_sbuffer_destroy(&sb);
    free(k);
}

static void test_sequence_overflow_is_rejected(void)
{
    char buf[256];
    size_t n = sample(buf);
    /* first_seq = 2^56 - 1 with two ops: the second would need 2^56 */
    memcpy(buf + 2, "\x00\xff\xff\xff\xff\xff\xff\xff", 8);
    expect_corrupt(buf, n, "2^56-1", __LINE__);
    /* but 2^56 - 2 fits */
    buf[9] = (char)0xfe;
    recorder r;
    char *err = NULL, **errp = &err;
    CHECK_OK(iterate(kw_slice_make(buf, n), &r, NULL, NULL, &err), errp);
    CHECK_EQ_U64(r.ops[1].seq, KW_MAX_SEQ);
    recorder_free(&r);
}

/* kw_batch_set_sequence writes the smallest head for the sequence and count (a one-put batch's
 * WAL record is 8 bytes shorter); a put after it puts the fixed head back, and the payload always
 * decodes to the same operations and sequences. */
static void test_compact_head(void)
{
    static const struct {
        uint64_t seq;
        unsigned ops;
        size_t head;
    } cases[] = {
        {5, 1, 3},           {127, 15, 3},           {128, 16, 6},
        {300, 1, 5},         {70000, 1, 7},          {0x100000000ull, 1, 11},
        {1, 65536, 7},       {KW_MAX_SEQ - 70000, 65536, 15},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        kiwi_batch *b = kiwi_batch_create();
        for (unsigned i = 0; i < cases[c].ops; i++)
            kiwi_batch_put(b, "k", 1, "v", 1);
        size_t fixed = kw_batch_payload(b).size;
        kw_batch_set_sequence(b, cases[c].seq);
        kw_slice p = kw_batch_payload(b);
        CHECK_EQ_U64(fixed - p.size, KW_BATCH_HEADER_SIZE - cases[c].head);
        CHECK_EQ_U64(kw_batch_sequence(b), cases[c].seq);
        recorder r;
        char *err = NULL, **errp = &err;
        uint64_t first = 0;
        CHECK_OK(iterate(p, &r, &first, NULL, &err), errp);
        CHECK_EQ_U64(first, cases[c].seq);
        CHECK_EQ_U64(r.calls, cases[c].ops);
        recorder_free(&r);
        /* one more op: fixed head again, then a new sequence compacts it again */
        kiwi_batch_delete(b, "d", 1);
        CHECK_EQ_U64(kw_batch_payload(b).size, fixed + 5); /* 92 00 c4 01 'd' */
        CHECK_EQ_U64(kw_batch_sequence(b), cases[c].seq);
        kw_batch_set_sequence(b, 7);
        CHECK_OK(iterate(kw_batch_payload(b), &r, &first, NULL, &err), errp);
        CHECK_EQ_U64(first, 7);
        CHECK_EQ_U64(r.calls, cases[c].ops + 1);
        if (r.calls <= 256)
            CHECK_EQ_U64(r.ops[r.n - 1].seq, 7 + cases[c].ops);
        recorder_free(&r);
        kiwi_batch_destroy(b);
    }
}

int main(void)
{
    RUN(test_put_delete_clear_count);
    RUN(test_iterate_in_order_with_sequences);
    RUN(test_empty_key_and_nul_bytes);
    RUN(test_one_mib_value);
    RUN(test_many_ops_past_the_cache);
    RUN(test_oversized_ops_are_refused);
    RUN(test_payload_is_plain_msgpack);
    RUN(test_decodes_compact_forms_from_other_writers);
    RUN(test_bin_widths_match_msgpack_c);
    RUN(test_long_forms_decode_like_short_ones);
    RUN(test_truncated_at_every_offset);
    RUN(test_wrong_shapes_are_rejected);
    RUN(test_huge_declared_counts_are_rejected_cheaply);
    RUN(test_sizes_over_the_limits_are_corruption);
    RUN(test_sequence_overflow_is_rejected);
    RUN(test_compact_head);
    return ctest_summary();
}
