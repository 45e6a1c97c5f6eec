/*
 * bloom.c: the per-SSTable bloom filter ("kiwi.bloom.v1") and its 64-bit key hash.
 *
 * Format: [bit array: nbytes][u8 k]. nbits = 8 * nbytes. Bit j lives in byte j/8 at bit j%8.
 * For a key with 64-bit hash h, the probes are
 *     h1 = h, h2 = remix(h), x_i = h1 + i*h2 (mod 2^64), bit_i = floor(x_i * nbits / 2^64)
 * for i in [0, k): double hashing (Kirsch-Mitzenmacher) with Lemire's multiply-shift range
 * reduction instead of a modulo. Every step is defined on exact 64-bit integers, so the
 * filter is the same on every platform; it is an on-disk format and must never change under
 * this name.
 *
 * Builder sizing: bits_per_key = -ln(p) / ln(2)^2, k = round(bits_per_key * ln 2) in [1, 30],
 * nbits = max(64, ceil(count * bits_per_key)) rounded up to a whole byte.
 */
#include "bloom.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define BLOOM_MIN_BITS 64
#define BLOOM_MAX_K 30

/* ---- the hash ---- */

#define HASH_SEED 0x9E3779B97F4A7C15ull /* 2^64 / golden ratio */
#define HASH_C1 0x87C37B91114253D5ull
#define HASH_C2 0x4CF5AD432745937Full
#define HASH_M1 0xFF51AFD7ED558CCDull
#define HASH_M2 0xC4CEB9FE1A85EC53ull

static uint64_t rotl64(uint64_t x, int r)
{
    return (x << r) | (x >> (64 - r));
}

/* Full avalanche: every input bit affects every output bit with probability ~1/2. */
static uint64_t fmix64(uint64_t x)
{
    x ^= x >> 33;
    x *= HASH_M1;
    x ^= x >> 33;
    x *= HASH_M2;
    x ^= x >> 33;
    return x;
}

/* Little-endian load of n <= 8 bytes, zero-padded. */
static uint64_t load_le(const unsigned char *p, size_t n)
{
    uint64_t w = 0;
    for (size_t i = 0; i < n; i++)
        w |= (uint64_t)p[i] << (8 * i);
    return w;
}

static uint64_t mix_word(uint64_t h, uint64_t w)
{
    w *= HASH_C1;
    w = rotl64(w, 31);
    w *= HASH_C2;
    h ^= w;
    h = rotl64(h, 27);
    return h * 5 + 0x52DCE729u;
}

uint64_t kw_bloom_hash(kw_slice key)
{
    const unsigned char *p = (const unsigned char *)key.data;
    size_t n = key.size;
    uint64_t h = HASH_SEED ^ ((uint64_t)n * HASH_M1);
    while (n >= 8) {
        h = mix_word(h, load_le(p, 8));
        p += 8;
        n -= 8;
    }
    if (n > 0) /* the length is already in h, so zero padding cannot collide "a" with "a\0" */
        h = mix_word(h, load_le(p, n));
    return fmix64(h ^ (uint64_t)key.size);
}

/* ---- probing ---- */

/* High 64 bits of the 128-bit product a*b. */
static uint64_t mulhi64(uint64_t a, uint64_t b)
{
#ifdef __SIZEOF_INT128__
    return (uint64_t)(((unsigned __int128)a * b) >> 64);
#else
    uint64_t a_lo = (uint32_t)a, a_hi = a >> 32, b_lo = (uint32_t)b, b_hi = b >> 32;
    uint64_t lo_lo = a_lo * b_lo, hi_lo = a_hi * b_lo, lo_hi = a_lo * b_hi, hi_hi = a_hi * b_hi;
    uint64_t cross = (lo_lo >> 32) + (uint32_t)hi_lo + lo_hi;
    return hi_hi + (hi_lo >> 32) + (cross >> 32);
#endif
}

/* The second, independent-looking hash for double hashing. */
static uint64_t second_hash(uint64_t h)
{
    return fmix64(rotl64(h, 32) ^ HASH_C2);
}

static void set_bits(unsigned char *bits, uint64_t nbits, int k, uint64_t h)
{
    uint64_t h2 = second_hash(h);
    for (int i = 0; i < k; i++) {
        uint64_t bit = mulhi64(h, nbits);
        bits[bit >> 3] |= (unsigned char)(1u << (bit & 7));
        h += h2;
    }
}

static bool test_bits(const unsigned char *bits, uint64_t nbits, int k, uint64_t h)
{
    uint64_t h2 = second_hash(h);
    for (int i = 0; i < k; i++) {
        uint64_t bit = mulhi64(h, nbits);
        if ((bits[bit >> 3] & (1u << (bit & 7))) == 0)
            return false;
        h += h2;
    }
    return true;
}

/* ---- builder ---- */

void kw_bloom_builder_init(kw_bloom_builder *b, double fpr)
{
    /* The caller validates the setting; clamp here so a bad value still gives a sane filter. */
    if (!(fpr > 1e-9))
        fpr = 1e-9;
    if (!(fpr < 0.99))
        fpr = 0.99;
    b->bits_per_key = -log(fpr) / (M_LN2 * M_LN2);
    long k = lround(b->bits_per_key * M_LN2);
    if (k < 1)
        k = 1;
    if (k > BLOOM_MAX_K)
        k = BLOOM_MAX_K;
    b->k = (int)k;
    b->hashes = NULL;
    b->count = 0;
    b->cap = 0;
}

void kw_bloom_builder_add(kw_bloom_builder *b, kw_slice key)
{
    if (b->count == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 256;
        b->hashes = kw_realloc(b->hashes, b->cap * sizeof *b->hashes);
    }
    b->hashes[b->count++] = kw_bloom_hash(key);
}

void kw_bloom_builder_finish(kw_bloom_builder *b, kw_buf *out)
{
    double want = ceil((double)b->count * b->bits_per_key);
    uint64_t nbits = want > BLOOM_MIN_BITS ? (uint64_t)want : BLOOM_MIN_BITS;
    size_t nbytes = (size_t)((nbits + 7) / 8);
    nbits = (uint64_t)nbytes * 8;

    kw_buf_reserve(out, nbytes + 1);
    unsigned char *bits = (unsigned char *)out->data + out->len;
    memset(bits, 0, nbytes);
    for (size_t i = 0; i < b->count; i++)
        set_bits(bits, nbits, b->k, b->hashes[i]);
    out->len += nbytes;
    kw_buf_push(out, (char)b->k);
    b->count = 0;
}

void kw_bloom_builder_free(kw_bloom_builder *b)
{
    free(b->hashes);
    b->hashes = NULL;
    b->count = 0;
    b->cap = 0;
}

/* ---- reader ---- */

bool kw_bloom_may_contain(kw_slice filter, kw_slice key)
{
    if (filter.size < 2)
        return true; /* no bit array: cannot rule anything out */
    int k = (unsigned char)filter.data[filter.size - 1];
    if (k < 1 || k > BLOOM_MAX_K)
        return true; /* unknown or corrupt parameters: never a false negative */
    uint64_t nbits = (uint64_t)(filter.size - 1) * 8;
    return test_bits((const unsigned char *)filter.data, nbits, k, kw_bloom_hash(key));
}
