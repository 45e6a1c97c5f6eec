/*
 * dbformat.h: internal keys, the unit every layer below the db sorts and stores.
 *
 * An internal key is the user key followed by an 8-byte little-endian trailer:
 *     trailer = (sequence << 8) | type
 * Internal keys sort by user key ascending (bytewise), then by trailer descending, so the newest
 * version of a key comes first and a seek to (key, snapshot_seq) lands on the newest version
 * visible to that snapshot. Sequence numbers are 56 bits; 0 is never assigned to a write.
 */
#ifndef KW_DBFORMAT_H
#define KW_DBFORMAT_H

#include <string.h>

#include "coding.h"
#include "common.h"

typedef enum {
    KW_TYPE_DELETE = 0, /* tombstone: the key is deleted as of this sequence */
    KW_TYPE_VALUE = 1   /* a value */
} kw_value_type;

#define KW_MAX_SEQ ((UINT64_C(1) << 56) - 1)
#define KW_TRAILER_SIZE 8
/* The type used when seeking: the highest type sorts first among equal (key, seq). */
#define KW_TYPE_FOR_SEEK KW_TYPE_VALUE

static inline uint64_t kw_pack_trailer(uint64_t seq, kw_value_type type)
{
    return (seq << 8) | (uint64_t)type;
}

/* The user-key part of an internal key. REQUIRES: ikey.size >= 8. */
static inline kw_slice kw_ikey_user(kw_slice ikey)
{
    return kw_slice_make(ikey.data, ikey.size - KW_TRAILER_SIZE);
}

static inline uint64_t kw_ikey_trailer(kw_slice ikey)
{
    return kw_decode_fixed64(ikey.data + ikey.size - KW_TRAILER_SIZE);
}

static inline uint64_t kw_ikey_seq(kw_slice ikey)
{
    return kw_ikey_trailer(ikey) >> 8;
}

static inline kw_value_type kw_ikey_type(kw_slice ikey)
{
    return (kw_value_type)(kw_ikey_trailer(ikey) & 0xff);
}

/* Appends user key + trailer to buf. */
static inline void kw_ikey_append(kw_buf *buf, kw_slice ukey, uint64_t seq, kw_value_type type)
{
    kw_buf_reserve(buf, ukey.size + KW_TRAILER_SIZE);
    if (ukey.size)
        memcpy(buf->data + buf->len, ukey.data, ukey.size);
    kw_encode_fixed64(buf->data + buf->len + ukey.size, kw_pack_trailer(seq, type));
    buf->len += ukey.size + KW_TRAILER_SIZE;
}

/* User key ascending, then trailer descending. REQUIRES: both sizes >= 8. */
static inline int kw_ikey_compare(kw_slice a, kw_slice b)
{
    int r = kw_slice_compare(kw_ikey_user(a), kw_ikey_user(b));
    if (r != 0)
        return r;
    uint64_t ta = kw_ikey_trailer(a), tb = kw_ikey_trailer(b);
    if (ta > tb)
        return -1;
    return ta < tb ? 1 : 0;
}

#endif /* KW_DBFORMAT_H */
