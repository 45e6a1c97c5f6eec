/*
 * test_coding.c: varint and fixed-width codecs (coding.h): round trips at every 7-bit boundary,
 * exact encoded lengths, rejection of truncated and over-long varints, little-endian byte order;
 * and the byte buffer they write into (common.h's kw_buf), including one on borrowed storage.
 */
#include <string.h>

#include "coding.h"
#include "common.h"
#include "ctest.h"

/* 0, 2^(7i) - 1 and 2^(7i) for every i, plus the type maxima. */
static size_t boundary_values(uint64_t *out)
{
    size_t n = 0;
    out[n++] = 0;
    out[n++] = 1;
    for (int shift = 7; shift < 64; shift += 7) {
        out[n++] = (1ull << shift) - 1;
        out[n++] = 1ull << shift;
        out[n++] = (1ull << shift) + 1;
    }
    out[n++] = UINT32_MAX - 1;
    out[n++] = UINT32_MAX;
    out[n++] = (uint64_t)UINT32_MAX + 1;
    out[n++] = UINT64_MAX - 1;
    out[n++] = UINT64_MAX;
    return n;
}

/* The number of 7-bit groups needed, computed independently of kw_varint_length. */
static size_t expected_length(uint64_t v)
{
    size_t bits = 0;
    while (bits < 64 && (v >> bits) != 0)
        bits++;
    return bits == 0 ? 1 : (bits + 6) / 7;
}

static void test_varint64_roundtrip(void)
{
    uint64_t vals[64];
    size_t n = boundary_values(vals);
    for (size_t i = 0; i < n; i++) {
        char buf[KW_MAX_VARINT64 + 4];
        memset(buf, 0xAA, sizeof buf);
        size_t len = kw_encode_varint64(buf, vals[i]);
        CHECK_EQ_U64(len, expected_length(vals[i]));
        CHECK_EQ_U64(len, kw_varint_length(vals[i]));
        CHECK((unsigned char)buf[len] == 0xAA); /* wrote nothing past its length */
        uint64_t got = 0;
        const char *end = kw_decode_varint64(buf, buf + len, &got);
        CHECK(end == buf + len);
        CHECK_EQ_U64(got, vals[i]);
    }
    char buf[KW_MAX_VARINT64];
    CHECK_EQ_U64(kw_encode_varint64(buf, UINT64_MAX), 10);
    CHECK_EQ_U64(kw_encode_varint64(buf, 127), 1);
    CHECK_EQ_U64(kw_encode_varint64(buf, 128), 2);
    CHECK((unsigned char)buf[0] == 0x80 && (unsigned char)buf[1] == 0x01);
}

static void test_varint32_roundtrip(void)
{
    uint64_t vals[64];
    size_t n = boundary_values(vals);
    for (size_t i = 0; i < n; i++) {
        if (vals[i] > UINT32_MAX)
            continue;
        uint32_t v = (uint32_t)vals[i];
        char buf[KW_MAX_VARINT32];
        size_t len = kw_encode_varint32(buf, v);
        CHECK(len <= KW_MAX_VARINT32);
        CHECK_EQ_U64(len, expected_length(v));
        uint32_t got = 0;
        CHECK(kw_decode_varint32(buf, buf + len, &got) == buf + len);
        CHECK_EQ_U64(got, v);
    }
}

static void test_varint_sequence(void)
{
    /* Several varints back to back decode one after another. */
    uint64_t vals[64];
    size_t n = boundary_values(vals);
    char buf[64 * KW_MAX_VARINT64];
    char *p = buf;
    for (size_t i = 0; i < n; i++)
        p += kw_encode_varint64(p, vals[i]);
    const char *q = buf;
    for (size_t i = 0; i < n; i++) {
        uint64_t got = 0;
        q = kw_decode_varint64(q, p, &got);
        CHECK(q != NULL);
        if (q == NULL)
            return;
        CHECK_EQ_U64(got, vals[i]);
    }
    CHECK(q == p);
}

static void test_truncated_rejected(void)
{
    uint64_t vals[64];
    size_t n = boundary_values(vals);
    for (size_t i = 0; i < n; i++) {
        char buf[KW_MAX_VARINT64];
        size_t len = kw_encode_varint64(buf, vals[i]);
        for (size_t cut = 0; cut < len; cut++) {
            uint64_t got = 0;
            CHECK(kw_decode_varint64(buf, buf + cut, &got) == NULL);
            if (vals[i] <= UINT32_MAX) {
                uint32_t got32 = 0;
                CHECK(kw_decode_varint32(buf, buf + cut, &got32) == NULL);
            }
        }
    }
}

static void test_overlong_rejected(void)
{
    uint32_t v32 = 7;
    uint64_t v64 = 7;
    /* 11 continuation bytes then a terminator: longer than any u64 varint. */
    char longer[12];
    memset(longer, 0x80, 11);
    longer[11] = 0x01;
    CHECK(kw_decode_varint64(longer, longer + sizeof longer, &v64) == NULL);
    CHECK(kw_decode_varint32(longer, longer + sizeof longer, &v32) == NULL);
    /* A 6-byte u32 varint, even of a small value. */
    const char six[6] = {(char)0x81, (char)0x80, (char)0x80, (char)0x80, (char)0x80, 0x00};
    CHECK(kw_decode_varint32(six, six + 6, &v32) == NULL);
    CHECK(kw_decode_varint64(six, six + 6, &v64) != NULL); /* but fine as a u64 */
    CHECK_EQ_U64(v64, 1);
    /* 5 bytes whose value needs 33 bits: too big for u32. */
    const char big32[5] = {(char)0xFF, (char)0xFF, (char)0xFF, (char)0xFF, 0x1F};
    CHECK(kw_decode_varint32(big32, big32 + 5, &v32) == NULL);
    const char max32[5] = {(char)0xFF, (char)0xFF, (char)0xFF, (char)0xFF, 0x0F};
    CHECK(kw_decode_varint32(max32, max32 + 5, &v32) == max32 + 5);
    CHECK_EQ_U64(v32, UINT32_MAX);
    /* 10 bytes whose last byte carries a bit past 2^64. */
    char big64[10];
    memset(big64, 0xFF, 9);
    big64[9] = 0x02;
    CHECK(kw_decode_varint64(big64, big64 + 10, &v64) == NULL);
    big64[9] = 0x01;
    CHECK(kw_decode_varint64(big64, big64 + 10, &v64) == big64 + 10);
    CHECK_EQ_U64(v64, UINT64_MAX);
    /* Empty input. */
    CHECK(kw_decode_varint64(longer, longer, &v64) == NULL);
}

static void test_fixed(void)
{
    char b[8];
    kw_encode_fixed32(b, 0x04030201u);
    CHECK(b[0] == 1 && b[1] == 2 && b[2] == 3 && b[3] == 4);
    kw_encode_fixed64(b, 0x0807060504030201ull);
    for (int i = 0; i < 8; i++)
        CHECK(b[i] == i + 1);
    const uint32_t v32[] = {0, 1, 0xFF, 0x100, 0x7FFFFFFF, 0x80000000u, UINT32_MAX};
    for (size_t i = 0; i < sizeof v32 / sizeof v32[0]; i++) {
        kw_encode_fixed32(b, v32[i]);
        CHECK_EQ_U64(kw_decode_fixed32(b), v32[i]);
    }
    const uint64_t v64[] = {0, 1, 0xFFFFFFFFull, 0x100000000ull, 0x8000000000000000ull,
                            UINT64_MAX, 0x0123456789ABCDEFull};
    for (size_t i = 0; i < sizeof v64 / sizeof v64[0]; i++) {
        kw_encode_fixed64(b, v64[i]);
        CHECK_EQ_U64(kw_decode_fixed64(b), v64[i]);
    }
    /* Decoding does not depend on alignment. */
    char raw[9] = {0, (char)0xEF, (char)0xCD, (char)0xAB, (char)0x89, 0x67, 0x45, 0x23, 0x01};
    CHECK_EQ_U64(kw_decode_fixed64(raw + 1), 0x0123456789ABCDEFull);
}

/* A buffer on borrowed storage fills it without allocating, moves to the heap with its contents
 * on the first growth past it (the storage then untouched), and is never freed by kw_buf_free;
 * cleared, it keeps the heap copy. ASan would report freeing the stack array. */
static void test_buf_borrowed(void)
{
    char storage[16];
    memset(storage, '#', sizeof storage);
    kw_buf b;
    kw_buf_init_borrowed(&b, storage, sizeof storage);
    kw_buf_append(&b, "0123456789abcdef", 16); /* exactly fits */
    CHECK(b.data == storage && b.borrowed && b.len == 16);
    kw_buf_push(&b, '!'); /* past the storage: moves */
    CHECK(b.data != storage && !b.borrowed && b.cap >= 17);
    CHECK(b.len == 17 && memcmp(b.data, "0123456789abcdef!", 17) == 0);
    CHECK(memcmp(storage, "0123456789abcdef", 16) == 0); /* left as it was */
    kw_buf_clear(&b);
    kw_buf_printf(&b, "%d-%s", 42, "x");
    CHECK(b.len == 4 && memcmp(b.data, "42-x", 4) == 0);
    kw_buf_free(&b);
    CHECK(b.data == NULL && b.len == 0 && b.cap == 0 && !b.borrowed);

    kw_buf_init_borrowed(&b, storage, sizeof storage);
    kw_buf_append(&b, "abc", 3);
    kw_buf_free(&b); /* never moved: nothing to free, the storage is the caller's */
    CHECK(b.data == NULL && !b.borrowed);
    CHECK(memcmp(storage, "abc", 3) == 0);
}

int main(void)
{
    RUN(test_varint64_roundtrip);
    RUN(test_varint32_roundtrip);
    RUN(test_varint_sequence);
    RUN(test_truncated_rejected);
    RUN(test_overlong_rejected);
    RUN(test_fixed);
    RUN(test_buf_borrowed);
    return ctest_summary();
}
