/*
 * block_builder.c: encodes one SSTable block: prefix-compressed entries, restart array, count
 * (format in block_builder.h and docs/internals/sstable.md).
 */
#include "block_builder.h"

#include <stdlib.h>
#include <string.h>

#include "coding.h"

void kw_block_builder_init(kw_block_builder *b, int restart_interval)
{
    memset(b, 0, sizeof *b);
    b->restart_interval = restart_interval < 1 ? 1 : restart_interval;
    kw_buf_init(&b->buf);
    kw_buf_init(&b->last_key);
}

void kw_block_builder_reset(kw_block_builder *b)
{
    kw_buf_clear(&b->buf);
    kw_buf_clear(&b->last_key);
    b->nrestarts = 0;
    b->counter = 0;
    b->entries = 0;
    b->finished = false;
}

void kw_block_builder_free(kw_block_builder *b)
{
    kw_buf_free(&b->buf);
    kw_buf_free(&b->last_key);
    free(b->restarts);
    b->restarts = NULL;
    b->nrestarts = b->restarts_cap = 0;
}

static void push_restart(kw_block_builder *b, uint32_t off)
{
    if (b->nrestarts == b->restarts_cap) {
        b->restarts_cap = b->restarts_cap ? b->restarts_cap * 2 : 16;
        b->restarts = kw_realloc(b->restarts, b->restarts_cap * sizeof *b->restarts);
    }
    b->restarts[b->nrestarts++] = off;
}

void kw_block_builder_add(kw_block_builder *b, kw_slice key, kw_slice value)
{
    size_t shared = 0;
    if (b->counter == b->restart_interval || b->entries == 0) {
        push_restart(b, (uint32_t)b->buf.len);
        b->counter = 0;
    } else {
        shared = kw_slice_common_prefix(kw_slice_make(b->last_key.data, b->last_key.len), key);
    }
    size_t non_shared = key.size - shared;
    char hdr[3 * KW_MAX_VARINT32];
    size_t n = kw_encode_varint32(hdr, (uint32_t)shared);
    n += kw_encode_varint32(hdr + n, (uint32_t)non_shared);
    n += kw_encode_varint32(hdr + n, (uint32_t)value.size);
    kw_buf_append(&b->buf, hdr, n);
    kw_buf_append(&b->buf, key.data + shared, non_shared);
    kw_buf_append(&b->buf, value.data, value.size);

    /* last_key keeps its first `shared` bytes, which equal the new key's */
    b->last_key.len = shared;
    kw_buf_append(&b->last_key, key.data + shared, non_shared);
    b->counter++;
    b->entries++;
}

size_t kw_block_builder_size_estimate(const kw_block_builder *b)
{
    if (b->finished)
        return b->buf.len;
    return b->buf.len + b->nrestarts * 4 + 4;
}

bool kw_block_builder_empty(const kw_block_builder *b)
{
    return b->entries == 0;
}

kw_slice kw_block_builder_finish(kw_block_builder *b)
{
    if (!b->finished) {
        char word[4];
        for (size_t i = 0; i < b->nrestarts; i++) {
            kw_encode_fixed32(word, b->restarts[i]);
            kw_buf_append(&b->buf, word, 4);
        }
        kw_encode_fixed32(word, (uint32_t)b->nrestarts);
        kw_buf_append(&b->buf, word, 4);
        b->finished = true;
    }
    return kw_slice_make(b->buf.data, b->buf.len);
}
