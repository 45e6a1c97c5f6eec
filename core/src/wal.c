/*
 * wal.c: the framed record log shared by the write-ahead log and the manifest: the writer (one
 * writev(2) per record or group, payloads written in place) and the reader with its torn-tail and corruption
 * rules. Format and rules: wal.h and docs/internals/wal.md.
 */
#include "wal.h"

#include <stdlib.h>

#include "coding.h"
#include "crc32c.h"

/* ---- writer ------------------------------------------------------------------------------------ */

struct kw_wal_writer {
    kw_file *file;
    kw_buf scratch;     /* the headers of the records being appended */
    kw_slice *parts;    /* add_many's writev parts: header, payload, header, payload, ... */
    size_t parts_cap;
    kiwi_status failed; /* sticky: after a failed append the file may end in a partial record */
};

kiwi_status kw_wal_writer_create(const char *path, kw_wal_writer **out, char **errmsg)
{
    *out = NULL;
    kw_file *f;
    kiwi_status st = kw_file_create(path, &f, errmsg);
    if (st != KIWI_OK)
        return st;
    kw_wal_writer *w = kw_calloc(1, sizeof *w);
    w->file = f;
    kw_buf_init(&w->scratch);
    *out = w;
    return KIWI_OK;
}

static void encode_header(char *dst, kw_slice payload)
{
    kw_encode_fixed32(dst, (uint32_t)payload.size);
    kw_encode_fixed32(dst + 4, kw_crc32c(payload.data, payload.size));
}

/* Refuses to write after a failed append: a record placed after a partial one would turn a
 * harmless torn tail into corruption in the middle of the log. */
static kiwi_status check_writable(const kw_wal_writer *w, const kw_slice *payloads, size_t count,
                                  char **errmsg)
{
    if (w->failed != KIWI_OK)
        return kw_error(errmsg, w->failed, "%s: an earlier append failed; the log takes no more "
                        "records", kw_file_path(w->file));
    for (size_t i = 0; i < count; i++) {
        if (payloads[i].size > KW_WAL_MAX_RECORD)
            return kw_error(errmsg, KIWI_INVALID_ARGUMENT,
                            "%s: record of %zu bytes exceeds the limit of %u bytes",
                            kw_file_path(w->file), payloads[i].size, KW_WAL_MAX_RECORD);
    }
    return KIWI_OK;
}

kiwi_status kw_wal_writer_add(kw_wal_writer *w, kw_slice payload, char **errmsg)
{
    /* one writev(2) of [header, payload]: the payload is not copied (a batch of 1000 puts is
     * 120 KB, and copying it cost as much as the system call) */
    return kw_wal_writer_add_many(w, &payload, 1, errmsg);
}

kiwi_status kw_wal_writer_add_many(kw_wal_writer *w, const kw_slice *payloads, size_t count,
                                   char **errmsg)
{
    kiwi_status st = check_writable(w, payloads, count, errmsg);
    if (st != KIWI_OK || count == 0)
        return st;
    if (w->parts_cap < 2 * count) {
        w->parts_cap = 2 * count;
        w->parts = kw_realloc(w->parts, w->parts_cap * sizeof *w->parts);
    }
    kw_buf_clear(&w->scratch);
    kw_buf_reserve(&w->scratch, KW_WAL_HEADER_SIZE * count); /* no realloc below: parts point in */
    for (size_t i = 0; i < count; i++) {
        char *h = w->scratch.data + KW_WAL_HEADER_SIZE * i;
        encode_header(h, payloads[i]);
        w->parts[2 * i] = kw_slice_make(h, KW_WAL_HEADER_SIZE);
        w->parts[2 * i + 1] = payloads[i];
    }
    w->scratch.len = KW_WAL_HEADER_SIZE * count;
    st = kw_file_appendv(w->file, w->parts, 2 * count, errmsg);
    if (st != KIWI_OK)
        w->failed = st;
    return st;
}

kiwi_status kw_wal_writer_sync(kw_wal_writer *w, char **errmsg)
{
    return kw_file_sync(w->file, errmsg);
}

uint64_t kw_wal_writer_size(const kw_wal_writer *w)
{
    return kw_file_size(w->file);
}

const char *kw_wal_writer_path(const kw_wal_writer *w)
{
    return kw_file_path(w->file);
}

kiwi_status kw_wal_writer_close(kw_wal_writer *w, bool sync, char **errmsg)
{
    if (w == NULL)
        return KIWI_OK;
    kiwi_status st = sync ? kw_file_sync(w->file, errmsg) : KIWI_OK;
    kiwi_status cst = kw_file_close(w->file, st == KIWI_OK ? errmsg : NULL);
    kw_buf_free(&w->scratch);
    free(w->parts);
    free(w);
    return st != KIWI_OK ? st : cst;
}

/* ---- reader ------------------------------------------------------------------------------------ */

typedef enum {
    REC_GOOD,       /* whole, CRC matches */
    REC_TORN,       /* runs past EOF, or has a bad CRC and ends exactly at EOF */
    REC_BAD_CRC,    /* whole, CRC mismatch, more data after it */
    REC_BAD_LENGTH  /* length field above KW_WAL_MAX_RECORD: no writer produces that */
} rec_kind;

/* Classifies the record at off (< size) and returns its payload length in *len. */
static rec_kind classify(const char *data, size_t size, size_t off, uint32_t *len)
{
    *len = 0;
    if (size - off < KW_WAL_HEADER_SIZE)
        return REC_TORN;
    *len = kw_decode_fixed32(data + off);
    if (*len > KW_WAL_MAX_RECORD)
        return REC_BAD_LENGTH;
    size_t body = off + KW_WAL_HEADER_SIZE;
    if (*len > size - body)
        return REC_TORN;
    if (kw_crc32c(data + body, *len) == kw_decode_fixed32(data + off + 4))
        return REC_GOOD;
    return body + *len == size ? REC_TORN : REC_BAD_CRC;
}

/* In KW_WAL_SKIP_CORRUPT mode a bad record (which never ends at EOF: that would be a torn tail)
 * is skipped only when its length is believable: the bytes right after it are a good record, CRC
 * and all. A torn record there does not count, as a random length often "runs past EOF"; the
 * read then ends at the bad record as at a torn tail. */
static bool next_is_plausible(const char *data, size_t size, size_t next)
{
    uint32_t len;
    return classify(data, size, next, &len) == REC_GOOD;
}

typedef struct {
    const char *path;
    const char *data;
    size_t size;
    kw_wal_recovery_mode mode;
    kw_wal_record_fn fn;
    void *ctx;
    kw_wal_read_stats *st;
} wal_scan;

static void mark_torn(wal_scan *s)
{
    s->st->torn_tail = true;
    s->st->torn_bytes = s->size - s->st->good_bytes;
}

/* Handles a bad record at off: skips it (returns true with *off advanced), ends the read as a
 * torn tail (returns true with *off = size), or reports corruption (returns false). */
static bool handle_bad(wal_scan *s, rec_kind kind, uint32_t len, size_t *off, kiwi_status *status,
                       char **errmsg)
{
    size_t next = *off + KW_WAL_HEADER_SIZE + len;
    if (s->mode == KW_WAL_SKIP_CORRUPT) {
        if (kind == REC_BAD_CRC && next_is_plausible(s->data, s->size, next)) {
            s->st->skipped_records++;
            s->st->skipped_bytes += next - *off;
            *off = next;
        } else {
            mark_torn(s);
            *off = s->size;
        }
        return true;
    }
    if (kind == REC_BAD_LENGTH)
        *status = kw_error(errmsg, KIWI_CORRUPTION,
                           "%s: record at offset %zu: length %u exceeds the limit of %u bytes",
                           s->path, *off, len, KW_WAL_MAX_RECORD);
    else
        *status = kw_error(errmsg, KIWI_CORRUPTION, "%s: record at offset %zu: checksum mismatch",
                           s->path, *off);
    return false;
}

static kiwi_status scan(wal_scan *s, char **errmsg)
{
    size_t off = 0;
    while (off < s->size) {
        uint32_t len;
        rec_kind kind = classify(s->data, s->size, off, &len);
        if (kind == REC_TORN) {
            mark_torn(s);
            break;
        }
        if (kind != REC_GOOD) {
            kiwi_status status = KIWI_OK;
            if (!handle_bad(s, kind, len, &off, &status, errmsg))
                return status;
            continue;
        }
        kw_slice payload = kw_slice_make(s->data + off + KW_WAL_HEADER_SIZE, len);
        kiwi_status st = s->fn(s->ctx, payload, off, errmsg);
        if (st != KIWI_OK)
            return st;
        off += KW_WAL_HEADER_SIZE + len;
        s->st->records++;
        s->st->good_bytes = off;
    }
    return KIWI_OK;
}

kiwi_status kw_wal_read_buffer(const char *name, const char *data, size_t size,
                               kw_wal_recovery_mode mode, kw_wal_record_fn fn, void *ctx,
                               kw_wal_read_stats *stats, char **errmsg)
{
    kw_wal_read_stats local = {0};
    kw_wal_read_stats *st = stats ? stats : &local;
    *st = (kw_wal_read_stats){0};
    wal_scan s = {name, data, size, mode, fn, ctx, st};
    return scan(&s, errmsg);
}

kiwi_status kw_wal_read(const char *path, kw_wal_recovery_mode mode, kw_wal_record_fn fn,
                        void *ctx, kw_wal_read_stats *stats, char **errmsg)
{
    if (stats != NULL)
        *stats = (kw_wal_read_stats){0};
    char *data;
    size_t size;
    kiwi_status status = kw_read_file(path, &data, &size, errmsg);
    if (status != KIWI_OK)
        return status;
    status = kw_wal_read_buffer(path, data, size, mode, fn, ctx, stats, errmsg);
    free(data);
    return status;
}
