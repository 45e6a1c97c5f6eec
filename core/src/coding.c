/*
 * coding.c: LEB128 varints (the fixed-width codecs are inline in coding.h).
 *
 * A varint stores 7 bits per byte, lowest group first; the high bit of a byte says another byte
 * follows. Decoding is strict about length and range: a u32 varint has at most 5 bytes and its
 * 5th byte may carry only the top 4 bits; a u64 varint has at most 10 bytes and its 10th byte may
 * only be 0 or 1. Anything longer or larger is rejected (NULL), as is a varint cut off by the
 * limit. Non-minimal encodings within those bounds (e.g. 0x80 0x00 for 0) are accepted; the
 * encoder never produces them.
 */
#include "coding.h"

size_t kw_encode_varint64(char *dst, uint64_t v)
{
    uint8_t *p = (uint8_t *)dst;
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

size_t kw_encode_varint32(char *dst, uint32_t v)
{
    return kw_encode_varint64(dst, v);
}

size_t kw_varint_length(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* Decodes at most max_bytes; the last allowed byte must fit in last_bits bits. */
static const char *decode(const char *p, const char *limit, uint64_t *v, int max_bytes,
                          int last_bits)
{
    uint64_t result = 0;
    for (int i = 0; i < max_bytes; i++) {
        if (p >= limit)
            return NULL; /* truncated */
        uint8_t byte = (uint8_t)*p++;
        if (i == max_bytes - 1 && byte >= (1u << last_bits))
            return NULL; /* continuation past the limit, or bits beyond the type's width */
        result |= (uint64_t)(byte & 0x7F) << (7 * i);
        if ((byte & 0x80) == 0) {
            *v = result;
            return p;
        }
    }
    return NULL; /* unreachable: the last byte's check rejects a continuation bit */
}

const char *kw_decode_varint32(const char *p, const char *limit, uint32_t *v)
{
    uint64_t x = 0;
    const char *q = decode(p, limit, &x, KW_MAX_VARINT32, 32 - 7 * 4);
    if (q != NULL)
        *v = (uint32_t)x;
    return q;
}

const char *kw_decode_varint64(const char *p, const char *limit, uint64_t *v)
{
    return decode(p, limit, v, KW_MAX_VARINT64, 64 - 7 * 9);
}
