/*
 * table_builder.c: writes an SSTable (table.h, docs/internals/sstable.md): data blocks as keys
 * arrive, then the filter, properties, index blocks and the footer; fdatasync; close.
 *
 * Errors are sticky (the first one is kept and every later step is a no-op, in the spirit of
 * SQLite lsm's *pRc); finish reports it and removes the partial file.
 */
#include "table.h"

#include <inttypes.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#include "block_builder.h"
#include "bloom.h"
#include "coding.h"
#include "crc32c.h"
#include "dbformat.h"
#include "env.h"

struct kw_table_builder {
    char *path;
    kw_file *file;              /* NULL once closed */
    kw_table_options opts;
    kw_block_builder data;      /* the data block being filled */
    kw_block_builder index;     /* one entry per written data block */
    kw_bloom_builder bloom;     /* user keys, consecutive duplicates dropped */
    kw_buf last_key;            /* the last internal key added */
    kw_buf smallest;            /* the first internal key added */
    kw_table_props props;       /* counters so far (smallest/largest filled at finish) */
    uint64_t offset;            /* bytes written to the file */
    kiwi_status status;         /* the first error; sticky */
    char *errmsg;
};

void kw_table_options_default(kw_table_options *o)
{
    o->block_size = 4096;
    o->restart_interval = 8;
    o->bloom_fpr = 0.01;
}

static kiwi_status check_options(const char *path, const kw_table_options *o, char **errmsg)
{
    if (o->block_size < 1 || o->block_size > KW_TABLE_MAX_BLOCK_SIZE)
        return kw_error(errmsg, KIWI_INVALID_ARGUMENT, "%s: block_size %zu not in [1, %u]", path,
                        o->block_size, KW_TABLE_MAX_BLOCK_SIZE);
    if (o->restart_interval < 1)
        return kw_error(errmsg, KIWI_INVALID_ARGUMENT, "%s: restart_interval %d is not >= 1",
                        path, o->restart_interval);
    if (!(o->bloom_fpr > 0.0 && o->bloom_fpr < 1.0))
        return kw_error(errmsg, KIWI_INVALID_ARGUMENT, "%s: bloom_fpr %g not in (0, 1)", path,
                        o->bloom_fpr);
    return KIWI_OK;
}

kiwi_status kw_table_builder_create(const char *path, const kw_table_options *opts,
                                    kw_table_builder **out, char **errmsg)
{
    kw_table_options o;
    if (opts == NULL)
        kw_table_options_default(&o);
    else
        o = *opts;
    *out = NULL;
    kiwi_status st = check_options(path, &o, errmsg);
    if (st != KIWI_OK)
        return st;
    kw_file *f;
    st = kw_file_create(path, &f, errmsg);
    if (st != KIWI_OK)
        return st;
    kw_table_builder *b = kw_calloc(1, sizeof *b);
    b->path = kw_strdup(path);
    b->file = f;
    b->opts = o;
    kw_block_builder_init(&b->data, o.restart_interval);
    kw_block_builder_init(&b->index, KW_TABLE_INDEX_RESTART_INTERVAL);
    kw_bloom_builder_init(&b->bloom, o.bloom_fpr);
    kw_buf_init(&b->last_key);
    kw_buf_init(&b->smallest);
    b->props.min_seq = UINT64_MAX;
    *out = b;
    return KIWI_OK;
}

/* Appends block contents plus its 5-byte trailer; *handle_off/size get where it went. */
static void write_block(kw_table_builder *b, kw_slice contents, uint64_t *handle_off,
                        uint64_t *handle_size)
{
    *handle_off = b->offset;
    *handle_size = contents.size;
    if (b->status != KIWI_OK)
        return;
    char trailer[KW_TABLE_TRAILER_SIZE];
    trailer[0] = 0; /* compression: none */
    uint32_t crc = kw_crc32c_extend(kw_crc32c(contents.data, contents.size), trailer, 1);
    kw_encode_fixed32(trailer + 1, crc);
    kw_slice parts[2] = {contents, kw_slice_make(trailer, sizeof trailer)};
    b->status = kw_file_appendv(b->file, parts, 2, &b->errmsg);
    b->offset += contents.size + KW_TABLE_TRAILER_SIZE;
}

/* Writes the pending data block and adds its index entry (key = its last internal key). */
static void flush_data_block(kw_table_builder *b)
{
    if (b->status != KIWI_OK || kw_block_builder_empty(&b->data))
        return;
    uint64_t off, size;
    write_block(b, kw_block_builder_finish(&b->data), &off, &size);
    kw_block_builder_reset(&b->data);
    char handle[2 * KW_MAX_VARINT64];
    size_t n = kw_encode_varint64(handle, off);
    n += kw_encode_varint64(handle + n, size);
    kw_block_builder_add(&b->index, kw_slice_make(b->last_key.data, b->last_key.len),
                         kw_slice_make(handle, n));
    b->props.data_blocks++;
}

static void fail(kw_table_builder *b, kiwi_status st, const char *what)
{
    b->status = kw_error(&b->errmsg, st, "%s: entry %" PRIu64 ": %s", b->path, b->props.entries,
                         what);
}

void kw_table_builder_add(kw_table_builder *b, kw_slice ikey, kw_slice value)
{
    if (b->status != KIWI_OK)
        return;
    if (ikey.size < KW_TRAILER_SIZE || ikey.size > UINT32_MAX || value.size > UINT32_MAX) {
        fail(b, KIWI_INVALID_ARGUMENT, "key or value size out of range");
        return;
    }
    kw_slice last = kw_slice_make(b->last_key.data, b->last_key.len);
    bool first = b->props.entries == 0;
    if (!first && kw_ikey_compare(last, ikey) >= 0) {
        fail(b, KIWI_INVALID_ARGUMENT, "key does not sort after the previous key");
        return;
    }
    if (first || kw_slice_compare(kw_ikey_user(last), kw_ikey_user(ikey)) != 0)
        kw_bloom_builder_add(&b->bloom, kw_ikey_user(ikey));
    if (first)
        kw_buf_append(&b->smallest, ikey.data, ikey.size);

    kw_block_builder_add(&b->data, ikey, value);
    kw_buf_clear(&b->last_key);
    kw_buf_append(&b->last_key, ikey.data, ikey.size);

    uint64_t seq = kw_ikey_seq(ikey);
    b->props.entries++;
    if (kw_ikey_type(ikey) == KW_TYPE_DELETE)
        b->props.tombstones++;
    b->props.raw_key_bytes += ikey.size;
    b->props.raw_value_bytes += value.size;
    if (seq < b->props.min_seq)
        b->props.min_seq = seq;
    if (seq > b->props.max_seq)
        b->props.max_seq = seq;

    if (kw_block_builder_size_estimate(&b->data) >= b->opts.block_size)
        flush_data_block(b);
}

uint64_t kw_table_builder_entries(const kw_table_builder *b)
{
    return b->props.entries;
}

uint64_t kw_table_builder_file_size(const kw_table_builder *b)
{
    return b->offset;
}

/* ---- properties ---------------------------------------------------------------------------- */

static void pack_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str_with_body(pk, s, strlen(s));
}

static void pack_u64(msgpack_packer *pk, const char *name, uint64_t v)
{
    pack_str(pk, name);
    msgpack_pack_uint64(pk, v);
}

static void pack_bin(msgpack_packer *pk, const char *name, const kw_buf *v)
{
    pack_str(pk, name);
    msgpack_pack_bin_with_body(pk, v->data, v->len);
}

/* The properties block: a msgpack map, keys documented in sstable.md. */
static void encode_props(kw_table_builder *b, msgpack_sbuffer *sb)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    const kw_table_props *p = &b->props;
    msgpack_pack_map(&pk, 15);
    pack_u64(&pk, "format", KW_TABLE_FORMAT_VERSION);
    pack_u64(&pk, "entries", p->entries);
    pack_u64(&pk, "tombstones", p->tombstones);
    pack_u64(&pk, "data_blocks", p->data_blocks);
    pack_u64(&pk, "raw_key_bytes", p->raw_key_bytes);
    pack_u64(&pk, "raw_value_bytes", p->raw_value_bytes);
    pack_u64(&pk, "min_seq", p->min_seq);
    pack_u64(&pk, "max_seq", p->max_seq);
    pack_bin(&pk, "smallest", &b->smallest);
    pack_bin(&pk, "largest", &b->last_key);
    pack_str(&pk, "filter");
    pack_str(&pk, KW_TABLE_FILTER_NAME);
    pack_str(&pk, "bloom_fpr");
    msgpack_pack_double(&pk, b->opts.bloom_fpr);
    pack_u64(&pk, "block_size", b->opts.block_size);
    pack_u64(&pk, "restart_interval", (uint64_t)b->opts.restart_interval);
    pack_str(&pk, "compression");
    pack_str(&pk, "none");
}

/* ---- finish ------------------------------------------------------------------------------ */

static void write_footer(kw_table_builder *b, const uint64_t handles[6])
{
    if (b->status != KIWI_OK)
        return;
    char footer[KW_TABLE_FOOTER_SIZE];
    for (int i = 0; i < 6; i++)
        kw_encode_fixed64(footer + 8 * i, handles[i]);
    kw_encode_fixed32(footer + 48, KW_TABLE_FORMAT_VERSION);
    kw_encode_fixed32(footer + 52, kw_crc32c(footer, 52));
    kw_encode_fixed64(footer + 56, KW_TABLE_MAGIC);
    b->status = kw_file_append(b->file, footer, sizeof footer, &b->errmsg);
    b->offset += sizeof footer;
}

static void write_meta_blocks(kw_table_builder *b)
{
    uint64_t h[6] = {0}; /* filter off/size, props off/size, index off/size */
    kw_buf filter;
    kw_buf_init(&filter);
    kw_bloom_builder_finish(&b->bloom, &filter);
    write_block(b, kw_slice_make(filter.data, filter.len), &h[0], &h[1]);
    kw_buf_free(&filter);

    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    encode_props(b, &sb);
    write_block(b, kw_slice_make(sb.data, sb.size), &h[2], &h[3]);
    msgpack_sbuffer_destroy(&sb);

    write_block(b, kw_block_builder_finish(&b->index), &h[4], &h[5]);
    write_footer(b, h);
    b->props.filter_size = h[1];
    b->props.index_size = h[5];
}

static void builder_free(kw_table_builder *b)
{
    kw_block_builder_free(&b->data);
    kw_block_builder_free(&b->index);
    kw_bloom_builder_free(&b->bloom);
    kw_buf_free(&b->last_key);
    kw_buf_free(&b->smallest);
    free(b->errmsg);
    free(b->path);
    free(b);
}

/* Moves the counters and key range into the caller's props. */
static void export_props(kw_table_builder *b, kw_table_props *out)
{
    *out = b->props;
    out->file_size = b->offset;
    out->smallest = kw_memdup(b->smallest.data, b->smallest.len);
    out->smallest_len = b->smallest.len;
    out->largest = kw_memdup(b->last_key.data, b->last_key.len);
    out->largest_len = b->last_key.len;
}

kiwi_status kw_table_builder_finish(kw_table_builder *b, kw_table_props *props, char **errmsg)
{
    flush_data_block(b);
    if (b->status == KIWI_OK && b->props.entries == 0)
        b->status = kw_error(&b->errmsg, KIWI_INVALID_ARGUMENT,
                             "%s: a table needs at least one entry (abandon an empty builder)",
                             b->path);
    write_meta_blocks(b);
    if (b->status == KIWI_OK)
        b->status = kw_file_sync(b->file, &b->errmsg);
    kiwi_status close_st = kw_file_close(b->file, b->status == KIWI_OK ? &b->errmsg : NULL);
    b->file = NULL;
    if (b->status == KIWI_OK)
        b->status = close_st;

    kiwi_status st = b->status;
    if (st != KIWI_OK) {
        kw_remove_file(b->path, NULL);
        if (errmsg != NULL) {
            free(*errmsg);
            *errmsg = b->errmsg;
            b->errmsg = NULL;
        }
    } else if (props != NULL) {
        export_props(b, props);
    }
    builder_free(b);
    return st;
}

void kw_table_builder_abandon(kw_table_builder *b)
{
    if (b == NULL)
        return;
    if (b->file != NULL)
        kw_file_close(b->file, NULL);
    kw_remove_file(b->path, NULL);
    builder_free(b);
}
