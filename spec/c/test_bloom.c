/*
 * test_bloom.c: the "kiwi.bloom.v1" filter: no false negatives, measured false-positive rates
 * within 1.5x of the configured rate (printed), sizing and k, empty and tiny filters, keys with
 * NUL bytes, corrupt parameters read as "may contain", and golden values that pin the on-disk
 * format (hash and filter bytes) so an accidental change fails here.
 */
#include <math.h>

#include "bloom.h"
#include "crc32c.h"
#include "ctest.h"

enum { MEMBERS = 100000, PROBES = 1000000 };

static kw_slice key_of(char *buf, size_t cap, const char *prefix, int i)
{
    int n = snprintf(buf, cap, "%s%08d", prefix, i);
    return kw_slice_make(buf, (size_t)n);
}

/* Builds a filter over MEMBERS keys "user:NNNNNNNN" at the given rate. */
static void build_members(double fpr, kw_buf *out, int *k)
{
    kw_bloom_builder b;
    kw_bloom_builder_init(&b, fpr);
    char buf[32];
    for (int i = 0; i < MEMBERS; i++)
        kw_bloom_builder_add(&b, key_of(buf, sizeof buf, "user:", i));
    *k = b.k;
    kw_buf_init(out);
    kw_bloom_builder_finish(&b, out);
    kw_bloom_builder_free(&b);
}

static void test_no_false_negatives(void)
{
    kw_buf f;
    int k;
    build_members(0.01, &f, &k);
    kw_slice filter = kw_slice_make(f.data, f.len);
    char buf[32];
    int missing = 0;
    for (int i = 0; i < MEMBERS; i++)
        missing += !kw_bloom_may_contain(filter, key_of(buf, sizeof buf, "user:", i));
    CHECK_EQ_U64(missing, 0);
    kw_buf_free(&f);
}

static void check_fpr(double fpr, int want_k)
{
    kw_buf f;
    int k;
    build_members(fpr, &f, &k);
    CHECK_EQ_U64(k, want_k);
    CHECK_EQ_U64((unsigned char)f.data[f.len - 1], want_k);
    /* Size: ceil(n * bits_per_key) bits, rounded to bytes, plus the k byte. */
    double bits = ceil(MEMBERS * -log(fpr) / (M_LN2 * M_LN2));
    CHECK_EQ_U64(f.len, (size_t)((bits + 7) / 8) + 1);
    kw_slice filter = kw_slice_make(f.data, f.len);
    char buf[32];
    int hits = 0;
    for (int i = 0; i < PROBES; i++)
        hits += kw_bloom_may_contain(filter, key_of(buf, sizeof buf, "absent:", i));
    double measured = (double)hits / PROBES;
    printf("bloom fpr %.3f: k=%d, %.2f bits/key, measured %.5f (%.2fx)\n", fpr, k,
           (double)(f.len - 1) * 8 / MEMBERS, measured, measured / fpr);
    CHECK(measured <= fpr * 1.5);
    CHECK(measured >= fpr / 1.5); /* far below would mean the filter is oversized */
    kw_buf_free(&f);
}

static void test_fpr_005(void)
{
    check_fpr(0.05, 4);
}

static void test_fpr_001(void)
{
    check_fpr(0.01, 7);
}

static void test_fpr_0001(void)
{
    check_fpr(0.001, 10);
}

static void test_empty_and_tiny_filters(void)
{
    /* A filter over no keys: the minimum 64 bits, all clear, so everything is ruled out. */
    kw_bloom_builder b;
    kw_bloom_builder_init(&b, 0.01);
    kw_buf f;
    kw_buf_init(&f);
    kw_bloom_builder_finish(&b, &f);
    CHECK_EQ_U64(f.len, 8 + 1);
    kw_slice filter = kw_slice_make(f.data, f.len);
    CHECK(!kw_bloom_may_contain(filter, kw_slice_make("x", 1)));
    CHECK(!kw_bloom_may_contain(filter, kw_slice_make("", 0)));
    /* One key: still 64 bits, and the key is found. */
    kw_buf_clear(&f);
    kw_bloom_builder_add(&b, kw_slice_make("only", 4));
    kw_bloom_builder_finish(&b, &f);
    CHECK_EQ_U64(f.len, 8 + 1);
    CHECK(kw_bloom_may_contain(kw_slice_make(f.data, f.len), kw_slice_make("only", 4)));
    /* The builder was reset by finish: a new filter holds only the new keys. */
    kw_buf_clear(&f);
    kw_bloom_builder_finish(&b, &f);
    CHECK(!kw_bloom_may_contain(kw_slice_make(f.data, f.len), kw_slice_make("only", 4)));
    kw_buf_free(&f);
    kw_bloom_builder_free(&b);
    /* No bit array at all: "may contain". */
    CHECK(kw_bloom_may_contain(kw_slice_make(NULL, 0), kw_slice_make("x", 1)));
    CHECK(kw_bloom_may_contain(kw_slice_make("\x07", 1), kw_slice_make("x", 1)));
}

static void test_appends_to_buffer(void)
{
    /* finish appends after whatever the buffer already holds. */
    kw_bloom_builder b;
    kw_bloom_builder_init(&b, 0.01);
    kw_bloom_builder_add(&b, kw_slice_make("k", 1));
    kw_buf f;
    kw_buf_init(&f);
    kw_buf_append(&f, "HDR", 3);
    kw_bloom_builder_finish(&b, &f);
    CHECK(memcmp(f.data, "HDR", 3) == 0);
    CHECK(kw_bloom_may_contain(kw_slice_make(f.data + 3, f.len - 3), kw_slice_make("k", 1)));
    kw_buf_free(&f);
    kw_bloom_builder_free(&b);
}

static void test_keys_with_nul_bytes(void)
{
    /* Keys that differ only after or in NUL bytes hash apart. */
    uint64_t h1 = kw_bloom_hash(kw_slice_make("a", 1));
    uint64_t h2 = kw_bloom_hash(kw_slice_make("a\0", 2));
    uint64_t h3 = kw_bloom_hash(kw_slice_make("a\0\0", 3));
    uint64_t h4 = kw_bloom_hash(kw_slice_make("a\0b", 3));
    uint64_t h5 = kw_bloom_hash(kw_slice_make("a\0c", 3));
    CHECK(h1 != h2 && h2 != h3 && h1 != h3 && h4 != h5);
    CHECK(kw_bloom_hash(kw_slice_make("", 0)) != kw_bloom_hash(kw_slice_make("\0", 1)));
    /* 8-byte words of zeros of different lengths. */
    static const char zeros[24];
    CHECK(kw_bloom_hash(kw_slice_make(zeros, 8)) != kw_bloom_hash(kw_slice_make(zeros, 16)));

    kw_bloom_builder b;
    kw_bloom_builder_init(&b, 0.01);
    char key[20];
    for (int i = 0; i < 1000; i++) {
        memset(key, 0, sizeof key);
        memcpy(key + 10, &i, sizeof i);
        kw_bloom_builder_add(&b, kw_slice_make(key, sizeof key));
    }
    kw_buf f;
    kw_buf_init(&f);
    kw_bloom_builder_finish(&b, &f);
    kw_slice filter = kw_slice_make(f.data, f.len);
    int missing = 0, false_hits = 0;
    for (int i = 0; i < 1000; i++) {
        memset(key, 0, sizeof key);
        memcpy(key + 10, &i, sizeof i);
        missing += !kw_bloom_may_contain(filter, kw_slice_make(key, sizeof key));
        /* The same bytes cut at the first NUL are different keys. */
        false_hits += kw_bloom_may_contain(filter, kw_slice_make(key, 10 + (size_t)(i % 10)));
    }
    CHECK_EQ_U64(missing, 0);
    CHECK(false_hits < 50); /* ~1% expected, not "everything matches" */
    kw_buf_free(&f);
    kw_bloom_builder_free(&b);
}

static void test_corrupt_k_means_may_contain(void)
{
    kw_bloom_builder b;
    kw_bloom_builder_init(&b, 0.01);
    char buf[32];
    for (int i = 0; i < 1000; i++)
        kw_bloom_builder_add(&b, key_of(buf, sizeof buf, "user:", i));
    kw_buf f;
    kw_buf_init(&f);
    kw_bloom_builder_finish(&b, &f);
    kw_slice filter = kw_slice_make(f.data, f.len);
    int ruled_out = 0;
    for (int i = 0; i < 100; i++)
        ruled_out += !kw_bloom_may_contain(filter, key_of(buf, sizeof buf, "absent:", i));
    CHECK(ruled_out > 90); /* intact, the filter rules most absent keys out */
    const unsigned char bad_k[] = {0, 31, 64, 255};
    for (size_t j = 0; j < sizeof bad_k; j++) {
        f.data[f.len - 1] = (char)bad_k[j];
        for (int i = 0; i < 100; i++)
            CHECK(kw_bloom_may_contain(filter, key_of(buf, sizeof buf, "absent:", i)));
    }
    kw_buf_free(&f);
    kw_bloom_builder_free(&b);
}

static void test_golden_format(void)
{
    /* These values are the on-disk format "kiwi.bloom.v1". If this test fails, the hash or the
     * probe sequence changed: existing SSTables would give false negatives. Use a new name. */
    CHECK_EQ_U64(kw_bloom_hash(kw_slice_make("", 0)), 0x9ca066f1a4ab2eeaull);
    CHECK_EQ_U64(kw_bloom_hash(kw_slice_make("a", 1)), 0xcc2bd10fc886fa4dull);
    CHECK_EQ_U64(kw_bloom_hash(kw_slice_make("kiwi", 4)), 0xc34a3a21c297e60bull);
    CHECK_EQ_U64(kw_bloom_hash(kw_slice_make("0123456789abcdef", 16)), 0x75771576c1e1ad51ull);
    CHECK_EQ_U64(kw_bloom_hash(kw_slice_make("user:000001", 11)), 0x244937c312c054caull);
    CHECK_EQ_U64(kw_bloom_hash(kw_slice_make("a\0b", 3)), 0x7df0d446c41a69e6ull);

    kw_bloom_builder b;
    kw_bloom_builder_init(&b, 0.01);
    char buf[16];
    for (int i = 0; i < 100; i++) {
        int n = snprintf(buf, sizeof buf, "k%03d", i);
        kw_bloom_builder_add(&b, kw_slice_make(buf, (size_t)n));
    }
    kw_buf f;
    kw_buf_init(&f);
    kw_bloom_builder_finish(&b, &f);
    CHECK_EQ_U64(f.len, 121);
    CHECK_EQ_U64(kw_crc32c(f.data, f.len), 0x594428ffu);
    kw_buf_free(&f);
    kw_bloom_builder_free(&b);
}

static void test_out_of_range_fpr_is_clamped(void)
{
    kw_bloom_builder b;
    kw_bloom_builder_init(&b, 0.0);
    CHECK(b.k >= 1 && b.k <= 30);
    kw_bloom_builder_free(&b);
    kw_bloom_builder_init(&b, 1.5);
    CHECK_EQ_U64(b.k, 1);
    CHECK(b.bits_per_key > 0);
    kw_bloom_builder_free(&b);
    kw_bloom_builder_init(&b, NAN);
    CHECK(b.k >= 1 && b.k <= 30);
    kw_bloom_builder_free(&b);
}

int main(void)
{
    RUN(test_no_false_negatives);
    RUN(test_fpr_005);
    RUN(test_fpr_001);
    RUN(test_fpr_0001);
    RUN(test_empty_and_tiny_filters);
    RUN(test_appends_to_buffer);
    RUN(test_keys_with_nul_bytes);
    RUN(test_corrupt_k_means_may_contain);
    RUN(test_golden_format);
    RUN(test_out_of_range_fpr_is_clamped);
    return ctest_summary();
}
