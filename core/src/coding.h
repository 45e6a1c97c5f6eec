/*
 * coding.h: fixed-width little-endian and varint encodings used by every on-disk format.
 *
 * Fixed: u32/u64 little-endian regardless of host order. Varint: LEB128 (7 bits per byte, low
 * groups first, high bit = more), at most 5 bytes for u32 and 10 for u64.
 */
#ifndef KW_CODING_H
#define KW_CODING_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline void kw_encode_fixed32(char *dst, uint32_t v)
{
    uint8_t *p = (uint8_t *)dst;
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static inline void kw_encode_fixed64(char *dst, uint64_t v)
{
    kw_encode_fixed32(dst, (uint32_t)v);
    kw_encode_fixed32(dst + 4, (uint32_t)(v >> 32));
}

static inline uint32_t kw_decode_fixed32(const char *src)
{
    const uint8_t *p = (const uint8_t *)src;
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static inline uint64_t kw_decode_fixed64(const char *src)
{
    return (uint64_t)kw_decode_fixed32(src) | ((uint64_t)kw_decode_fixed32(src + 4) << 32);
}

#define KW_MAX_VARINT32 5
#define KW_MAX_VARINT64 10

/* Writes v at dst (room for KW_MAX_VARINT64 bytes); returns the number of bytes written. */
size_t kw_encode_varint64(char *dst, uint64_t v);
size_t kw_encode_varint32(char *dst, uint32_t v);
size_t kw_varint_length(uint64_t v);

/* Decodes a varint from [p, limit). Returns the byte after it, or NULL if it is truncated or
 * longer than allowed. */
const char *kw_decode_varint32(const char *p, const char *limit, uint32_t *v);
const char *kw_decode_varint64(const char *p, const char *limit, uint64_t *v);

#endif /* KW_CODING_H */
