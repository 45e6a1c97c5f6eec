/*
 * bloom.h: the bloom filter stored in each SSTable's filter block (one filter per file, over the
 * user keys of the file).
 *
 * Filter format (versioned by name "kiwi.bloom.v1" in the SSTable properties):
 *     [bit array: nbytes][u8 k (number of probes)]
 * Each key is hashed once to 64 bits; probes use double hashing (h1 + i*h2) over the bit array.
 * The bits per key and k are derived from the configured false-positive rate:
 * bits_per_key = -ln(p) / ln(2)^2, k = round(bits_per_key * ln 2), clamped to [1, 30].
 * A filter with k outside [1, 30] or fewer than 1 byte of bits is treated as "may contain"
 * (never a false negative).
 */
#ifndef KW_BLOOM_H
#define KW_BLOOM_H

#include <stdbool.h>
#include <stdint.h>

#include "common.h"

typedef struct {
    double bits_per_key;
    int k;
    uint64_t *hashes; /* one per added key */
    size_t count;
    size_t cap;
} kw_bloom_builder;

/* fpr in (0, 1), e.g. 0.01. */
void kw_bloom_builder_init(kw_bloom_builder *b, double fpr);
void kw_bloom_builder_add(kw_bloom_builder *b, kw_slice key);
/* Appends the filter to out and resets the builder's key list. */
void kw_bloom_builder_finish(kw_bloom_builder *b, kw_buf *out);
void kw_bloom_builder_free(kw_bloom_builder *b);

bool kw_bloom_may_contain(kw_slice filter, kw_slice key);

/* The 64-bit hash used (exposed for tests). */
uint64_t kw_bloom_hash(kw_slice key);

#endif /* KW_BLOOM_H */
