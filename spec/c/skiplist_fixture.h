/*
 * skiplist_fixture.h: what the skip list tests share (test_skiplist.c,
 * test_skiplist_concurrent.c): a xorshift generator, slice equality, a raw skip list whose
 * entries are [u8 len][key bytes], and big-endian u64 keys that sort bytewise as numbers.
 */
#ifndef KIWI_SKIPLIST_FIXTURE_H
#define KIWI_SKIPLIST_FIXTURE_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "dbformat.h"
#include "skiplist.h"

static inline uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}

static inline bool slice_eq(kw_slice a, kw_slice b)
{
    return kw_slice_compare(a, b) == 0;
}

/* Raw skip list with byte keys: entry = [u8 len][key bytes]. */
static inline kw_slice raw_key(const char *entry)
{
    return kw_slice_make(entry + 1, (uint8_t)entry[0]);
}

static inline bool raw_insert(kw_skiplist *sl, const char *key, size_t n)
{
    kw_sl_node *node = kw_skiplist_new_node(sl, n + 1);
    char *e = kw_sl_node_entry(node);
    e[0] = (char)n;
    memcpy(e + 1, key, n);
    return kw_skiplist_insert(sl, node);
}

/* Big-endian bytes so that bytewise order equals numeric order. */
static inline void be64(char *out, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        out[i] = (char)(v >> (56 - 8 * i));
}

#endif /* KIWI_SKIPLIST_FIXTURE_H */
