/*
 * crc32c.c: CRC-32C (Castagnoli), the checksum of every WAL record, manifest record and SSTable
 * block. Two implementations that must agree bit for bit:
 *   - hardware: the SSE4.2 crc32 instruction, 8 bytes per step, three streams at once over
 *     buffers of 776 bytes and more (x86-64 only);
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

/* The hardware path runs three streams at once over three adjacent stripes of STRIPE_LONG (or
 * STRIPE_SHORT) bytes, then joins them: the register of a stripe followed by the next is the first
 * register moved past the next stripe's length of zero bytes (a multiplication by x^(8 * stripe)
 * modulo the polynomial, looked up a byte at a time in shift_long or shift_short), XOR the next
 * stripe's register computed from 0. The crc32 instruction has a latency of 3 cycles and a
 * throughput of 1 per cycle, so three independent chains run about three times as fast as one. */
#define STRIPE_LONG 8192
#define STRIPE_SHORT 256
static uint32_t shift_long[4][256], shift_short[4][256];
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

/* a(x) * b(x) modulo the CRC polynomial, both in the reflected representation (bit 31 is x^0). */
static uint32_t gf2_multiply(uint32_t a, uint32_t b)
{
    uint32_t product = 0;
    for (uint32_t m = UINT32_C(1) << 31; m != 0; m >>= 1) {
        if (a & m)
            product ^= b;
        b = (b >> 1) ^ (CRC32C_POLY_REFLECTED & (0u - (b & 1u))); /* b *= x */
    }
    return product;
}

/* x^(8 * n) modulo the polynomial: moving a register past n zero bytes multiplies it by this. */
static uint32_t x_pow_8n(size_t n)
{
    uint32_t result = UINT32_C(1) << 31;   /* x^0 */
    uint32_t square = UINT32_C(1) << 23;   /* x^8 */
    for (; n != 0; n >>= 1) {
        if (n & 1)
            result = gf2_multiply(result, square);
        square = gf2_multiply(square, square);
    }
    return result;
}

/* shift[k][b] = (b << 8k) * x^(8 * n): a register moved past n zero bytes, a byte at a time. */
static void build_shift_table(uint32_t shift[4][256], size_t n)
{
    uint32_t x8n = x_pow_8n(n);
    for (int k = 0; k < 4; k++)
        for (uint32_t b = 0; b < 256; b++)
            shift[k][b] = gf2_multiply(b << (8 * k), x8n);
}

static void init_once(void)
{
    build_tables();
    build_shift_table(shift_long, STRIPE_LONG);
    build_shift_table(shift_short, STRIPE_SHORT);
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
/* A register moved past the zero bytes shift was built for. */
static uint32_t shift_register(const uint32_t shift[4][256], uint32_t crc)
{
    return shift[0][crc & 0xFF] ^ shift[1][(crc >> 8) & 0xFF] ^ shift[2][(crc >> 16) & 0xFF] ^
           shift[3][crc >> 24];
}

/* While n holds three stripes: the three as three interleaved chains, joined (see STRIPE_LONG).
 * *q and *n advance past what was consumed. */
__attribute__((target("sse4.2"))) static uint64_t hw_stripes(uint64_t c, const char **q,
                                                             size_t *n, size_t stripe,
                                                             const uint32_t shift[4][256])
{
    const char *p = *q;
    while (*n >= 3 * stripe) {
        uint64_t c1 = 0, c2 = 0;
        for (size_t i = 0; i < stripe; i += 8) {
            c = _mm_crc32_u64(c, kw_decode_fixed64(p + i));
            c1 = _mm_crc32_u64(c1, kw_decode_fixed64(p + stripe + i));
            c2 = _mm_crc32_u64(c2, kw_decode_fixed64(p + 2 * stripe + i));
        }
        c = shift_register(shift, (uint32_t)c) ^ c1;
        c = shift_register(shift, (uint32_t)c) ^ c2;
        p += 3 * stripe;
        *n -= 3 * stripe;
    }
    *q = p;
    return c;
}

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

/* hw_update for buffers of three short stripes or more: the three-stream rounds, then hw_update
 * for the rest (kept apart so that short buffers, most WAL records, run the plain loop alone). */
__attribute__((target("sse4.2"))) static uint32_t hw_update_long(uint32_t crc,
                                                                 const uint8_t *p, size_t n)
{
    while (((uintptr_t)p & 7) != 0) {
        crc = _mm_crc32_u8(crc, *p++);
        n--;
    }
    const char *q = (const char *)p;
    uint64_t c = hw_stripes(crc, &q, &n, STRIPE_LONG, shift_long);
    c = hw_stripes(c, &q, &n, STRIPE_SHORT, shift_short);
    return hw_update((uint32_t)c, (const uint8_t *)q, n);
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
        return ~(n >= 3 * STRIPE_SHORT + 8 ? hw_update_long(~crc, (const uint8_t *)data, n)
                                           : hw_update(~crc, (const uint8_t *)data, n));
#endif
    return ~portable_update(~crc, (const uint8_t *)data, n);
}

int kw_crc32c_hw_available(void)
{
    pthread_once(&once, init_once);
    return use_hw ? 1 : 0;
}
