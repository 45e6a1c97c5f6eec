/*
 * test_crc32c.c: CRC-32C against published vectors (the "check" value and RFC 3720 B.4), the
 * extend() convention, and agreement of the hardware and portable paths on every length 0..1024
 * at every misalignment. Also calls it from several threads at first use (the one-time setup).
 */
#include <pthread.h>

#include "crc32c.h"
#include "ctest.h"

/* First use from 4 threads at once: the tables and the path choice are set up exactly once. */
static void *first_use_worker(void *arg)
{
    uint32_t *out = arg;
    *out = kw_crc32c("123456789", 9) ^ kw_crc32c_portable(0, "123456789", 9);
    return NULL;
}

static void test_concurrent_first_use(void)
{
    pthread_t t[4];
    uint32_t r[4] = {1, 1, 1, 1};
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, first_use_worker, &r[i]);
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        CHECK_EQ_U64(r[i], 0); /* both paths gave the same value */
    }
}

static void test_standard_vectors(void)
{
    CHECK_EQ_U64(kw_crc32c("123456789", 9), 0xE3069283u);
    CHECK_EQ_U64(kw_crc32c_extend(0, "123456789", 9), 0xE3069283u);
    CHECK_EQ_U64(kw_crc32c("", 0), 0);

    unsigned char buf[32];
    memset(buf, 0, sizeof buf);
    CHECK_EQ_U64(kw_crc32c(buf, 32), 0x8A9136AAu);
    memset(buf, 0xFF, sizeof buf);
    CHECK_EQ_U64(kw_crc32c(buf, 32), 0x62A8AB43u);
    for (int i = 0; i < 32; i++)
        buf[i] = (unsigned char)i;
    CHECK_EQ_U64(kw_crc32c(buf, 32), 0x46DD794Eu);
    for (int i = 0; i < 32; i++)
        buf[i] = (unsigned char)(31 - i);
    CHECK_EQ_U64(kw_crc32c(buf, 32), 0x113FDB5Cu);
}

static void test_iscsi_read_command(void)
{
    /* RFC 3720 appendix B.4: an iSCSI SCSI Read (10) command PDU. */
    static const unsigned char pdu[48] = {
        0x01, 0xC0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,
        0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18, 0x28, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    };
    CHECK_EQ_U64(kw_crc32c(pdu, sizeof pdu), 0xD9963A56u);
    CHECK_EQ_U64(kw_crc32c_portable(0, pdu, sizeof pdu), 0xD9963A56u);
}

static void test_portable_vectors(void)
{
    /* The same vectors through the portable path alone, whatever the CPU. */
    CHECK_EQ_U64(kw_crc32c_portable(0, "123456789", 9), 0xE3069283u);
    unsigned char buf[32];
    memset(buf, 0, sizeof buf);
    CHECK_EQ_U64(kw_crc32c_portable(0, buf, 32), 0x8A9136AAu);
    memset(buf, 0xFF, sizeof buf);
    CHECK_EQ_U64(kw_crc32c_portable(0, buf, 32), 0x62A8AB43u);
    for (int i = 0; i < 32; i++)
        buf[i] = (unsigned char)i;
    CHECK_EQ_U64(kw_crc32c_portable(0, buf, 32), 0x46DD794Eu);
}

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;

static uint64_t next_random(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void test_extend_in_pieces(void)
{
    unsigned char buf[300];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (unsigned char)next_random();
    uint32_t whole = kw_crc32c(buf, sizeof buf);
    for (size_t cut = 0; cut <= sizeof buf; cut++) {
        uint32_t c = kw_crc32c_extend(kw_crc32c(buf, cut), buf + cut, sizeof buf - cut);
        CHECK_EQ_U64(c, whole);
        uint32_t p = kw_crc32c_portable(kw_crc32c_portable(0, buf, cut), buf + cut,
                                        sizeof buf - cut);
        CHECK_EQ_U64(p, whole);
    }
    /* Byte at a time. */
    uint32_t c = 0;
    for (size_t i = 0; i < sizeof buf; i++)
        c = kw_crc32c_extend(c, buf + i, 1);
    CHECK_EQ_U64(c, whole);
    /* Three uneven pieces of a known vector. */
    c = kw_crc32c_extend(kw_crc32c_extend(kw_crc32c("12", 2), "3456", 4), "789", 3);
    CHECK_EQ_U64(c, 0xE3069283u);
}

static void test_hw_matches_portable(void)
{
    if (!kw_crc32c_hw_available())
        printf("note: no SSE4.2 here; kw_crc32c uses the portable path\n");
    enum { MAXLEN = 1024, SLACK = 8 };
    static unsigned char buf[MAXLEN + SLACK];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (unsigned char)next_random();
    int mismatches = 0;
    for (size_t off = 0; off < SLACK; off++) {
        for (size_t len = 0; len <= MAXLEN; len++) {
            uint32_t seed = (uint32_t)next_random();
            uint32_t a = kw_crc32c_extend(seed, buf + off, len);
            uint32_t b = kw_crc32c_portable(seed, buf + off, len);
            if (a != b && mismatches++ < 5)
                fprintf(stderr, "mismatch at offset %zu length %zu: %08x vs %08x\n", off, len,
                        a, b);
        }
    }
    CHECK_EQ_U64(mismatches, 0);
}

/* Buffers long enough for the hardware path's three-stream rounds (3 x 8 KiB, then 3 x 256
 * bytes): lengths at and around each round's boundaries, and random ones, at every alignment and
 * with a random seed, agree with the portable path. */
static void test_hw_matches_portable_long(void)
{
    enum { MAXLEN = 3 * 3 * 8192 + 3 * 256 + 100, SLACK = 8 };
    static unsigned char buf[MAXLEN + SLACK];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (unsigned char)next_random();
    static const size_t edges[] = {3 * 256,         3 * 8192 - 1,   3 * 8192,
                                   3 * 8192 + 1,    3 * 8192 + 767, 3 * 8192 + 768,
                                   3 * 8192 + 775,  6 * 8192,       6 * 8192 + 3 * 256 + 7,
                                   9 * 8192 - 8,    9 * 8192,       MAXLEN};
    int mismatches = 0, checked = 0;
    for (size_t off = 0; off < SLACK; off++) {
        for (size_t i = 0; i < sizeof edges / sizeof edges[0] + 40; i++) {
            size_t len = i < sizeof edges / sizeof edges[0]
                             ? edges[i]
                             : (size_t)next_random() % (MAXLEN + 1);
            uint32_t seed = (uint32_t)next_random();
            uint32_t a = kw_crc32c_extend(seed, buf + off, len);
            uint32_t b = kw_crc32c_portable(seed, buf + off, len);
            checked++;
            if (a != b && mismatches++ < 5)
                fprintf(stderr, "mismatch at offset %zu length %zu: %08x vs %08x\n", off, len,
                        a, b);
        }
    }
    CHECK(checked > 400);
    CHECK_EQ_U64(mismatches, 0);
    /* a long buffer in uneven pieces equals the whole */
    uint32_t whole = kw_crc32c(buf, MAXLEN);
    uint32_t pieces = kw_crc32c_extend(kw_crc32c_extend(kw_crc32c(buf, 5000), buf + 5000, 30000),
                                       buf + 35000, MAXLEN - 35000);
    CHECK_EQ_U64(pieces, whole);
}

static void test_detects_single_bit_flips(void)
{
    unsigned char buf[64];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (unsigned char)next_random();
    uint32_t good = kw_crc32c(buf, sizeof buf);
    for (size_t bit = 0; bit < 8 * sizeof buf; bit++) {
        buf[bit / 8] ^= (unsigned char)(1u << (bit % 8));
        CHECK(kw_crc32c(buf, sizeof buf) != good);
        buf[bit / 8] ^= (unsigned char)(1u << (bit % 8));
    }
}

int main(void)
{
    RUN(test_concurrent_first_use);
    RUN(test_standard_vectors);
    RUN(test_iscsi_read_command);
    RUN(test_portable_vectors);
    RUN(test_extend_in_pieces);
    RUN(test_hw_matches_portable);
    RUN(test_hw_matches_portable_long);
    RUN(test_detects_single_bit_flips);
    return ctest_summary();
}
