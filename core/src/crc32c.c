/*
 * crc32c.c: CRC-32C (Castagnoli), the checksum of every WAL record, manifest record and SSTable
 * block. Two implementations that must agree bit for bit:
 *   - hardware: the SSE4.2 crc32 instruction, 8 bytes per step (x86-64 only);
 *   - portable: slicing-by-8 over eight 256-entry tables built once at first use.
 * The choice between them is made once per process (pthread_once), so every caller after the
 * first pays one already-done check.
 *
 * Convention (as LevelDB's crc32c::Extend): the value passed in and returned is the finished
 * CRC, i.e. the register is inverted on entry and on exit, so extend(extend(0, a), b) equals the
 * CRC of a followed by b.
 */
#include "crc32c.h"

#include <pthread.h>
#include <stdbool.h>

#include "coding.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define KW_CRC32C_HAVE_SSE42 1
#include <nmmintrin.h>
#endif

#define CRC32C_POLY_REFLECTED 0x82F63B78u

/* table[0] is the classic byte-at-a-time table; table[j][b] is the CRC of byte b followed by j
 * zero bytes, which lets slicing-by-8 fold 8 input bytes with 8 independent lookups. Written once
 * under `once`, read-only afterwards. */
static uint32_t table[8][256];
static bool use_hw;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void build_tables(void)
{
    for (uint32_t b = 0; b < 256; b++) {
        uint32_t crc = b;
        for (int bit = 0; bit < 8; bit++)
            crc = (crc >> 1) ^ (CRC32C_POLY_REFLECTED & (0u - (crc & 1u)));
        table[0][b] = crc;
    }
    for (uint32_t b = 0; b < 256; b++)
        for (int j = 1; j < 8; j++)
            table[j][b] = (table[j - 1][b] >> 8) ^ table[0][table[j - 1][b] & 0xFF];
}

static void init_once(void)
{
    build_tables();
#ifdef KW_CRC32C_HAVE_SSE42
    __builtin_cpu_init();
    use_hw = __builtin_cpu_supports("sse4.2") != 0;
#endif
}

/* Register-level portable update (no inversion). */
static uint32_t portable_update(uint32_t crc, const uint8_t *p, size_t n)
{
    /* Bytewise until p is 8-aligned, so the word loop reads aligned memory. */
    while (n > 0 && ((uintptr_t)p & 7) != 0) {
        crc = (crc >> 8) ^ table[0][(crc ^ *p++) & 0xFF];
        n--;
    }
    while (n >= 8) {
        uint32_t lo = crc ^ kw_decode_fixed32((const char *)p);
        uint32_t hi = kw_decode_fixed32((const char *)p + 4);
        crc = table[7][lo & 0xFF] ^ table[6][(lo >> 8) & 0xFF] ^ table[5][(lo >> 16) & 0xFF] ^
              table[4][lo >> 24] ^ table[3][hi & 0xFF] ^ table[2][(hi >> 8) & 0xFF] ^
              table[1][(hi >> 16) & 0xFF] ^ table[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n > 0) {
        crc = (crc >> 8) ^ table[0][(crc ^ *p++) & 0xFF];
        n--;
    }
    return crc;
}

#ifdef KW_CRC32C_HAVE_SSE42
/* Register-level hardware update (no inversion). */
__attribute__((target("sse4.2"))) static uint32_t hw_update(uint32_t crc, const uint8_t *p,
                                                            size_t n)
{
    while (n > 0 && ((uintptr_t)p & 7) != 0) {
        crc = _mm_crc32_u8(crc, *p++);
        n--;
    }
    uint64_t c = crc;
    const char *q = (const char *)p;
    while (n >= 32) {
        c = _mm_crc32_u64(c, kw_decode_fixed64(q));
        c = _mm_crc32_u64(c, kw_decode_fixed64(q + 8));
        c = _mm_crc32_u64(c, kw_decode_fixed64(q + 16));
        c = _mm_crc32_u64(c, kw_decode_fixed64(q + 24));
        q += 32;
        n -= 32;
    }
    while (n >= 8) {
        c = _mm_crc32_u64(c, kw_decode_fixed64(q)); /* compiles to one load on x86 */
        q += 8;
        n -= 8;
    }
    p = (const uint8_t *)q;
    crc = (uint32_t)c;
    while (n > 0) {
        crc = _mm_crc32_u8(crc, *p++);
        n--;
    }
    return crc;
}
#endif

uint32_t kw_crc32c_portable(uint32_t crc, const void *data, size_t n)
{
    pthread_once(&once, init_once);
    return ~portable_update(~crc, (const uint8_t *)data, n);
}

uint32_t kw_crc32c_extend(uint32_t crc, const void *data, size_t n)
{
    pthread_once(&once, init_once);
#ifdef KW_CRC32C_HAVE_SSE42
    if (use_hw)
        return ~hw_update(~crc, (const uint8_t *)data, n);
#endif
    return ~portable_update(~crc, (const uint8_t *)data, n);
}

int kw_crc32c_hw_available(void)
{
    pthread_once(&once, init_once);
    return use_hw ? 1 : 0;
}
