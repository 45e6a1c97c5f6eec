/*
 * wal.c: the framed record log shared by the write-ahead log and the manifest: the writer (one
 * write(2) per small record, one writev(2) per large record or group with payloads written in
 * place, or copies into the mapping of a mapped log, except its synced appends: one pwritev(2);
 * space preallocated ahead of synced appends and of every append to a mapped log) and the
 * reader with its torn-tail and corruption rules, plus the rules for the preallocated space of
 * a WAL. Format and rules: wal.h and docs/internals/wal.md.
 */
#include "wal.h"

#include <stdlib.h>
#include <string.h>

#include "coding.h"
#include "crc32c.h"

/* ---- writer ------------------------------------------------------------------------------------ */

struct kw_wal_writer {
    kw_file *file;
    kw_buf scratch;     /* a small record with its header (add), or a group's headers */
    kw_slice *parts;    /* add_many's writev parts: header, payload, header, payload, ... */
    size_t parts_cap;
    kiwi_status failed; /* sticky: after a failed append the file may end in a partial record */
    bool no_prealloc;   /* kw_wal_writer_reserve failed once: append without preallocating */
    bool preallocated;  /* mapped, or reserved once: read with kw_wal_read_preallocated */
};

/* Preallocation steps: as large as the log so far, at least 64 KiB, at most 1 MiB. Each step is
 * one size change (one journal commit at the next fdatasync), so a log of n bytes pays for about
 * log2(1 MiB / 64 KiB) + n / 1 MiB of them instead of one per synced append. */
#define PREALLOC_MIN (64u * 1024u)
#define PREALLOC_MAX (1024u * 1024u)
/* A new mapped log starts one page long (kw_file_create_mapped rounds this up to the system's
 * page); its first append past the page reserves a step as above. A db that rotates and then
 * sits idle (after a flush, a full compaction) keeps an empty log of one page instead of 64 KiB
 * of zeros: the space of a small db (wal.md). */
#define MAPPED_FIRST 1u

static kiwi_status writer_create(const char *path, bool mapped, kw_wal_writer **out,
                                 char **errmsg)
{
    *out = NULL;
    kw_file *f;
    kiwi_status st = mapped ? kw_file_create_mapped(path, MAPPED_FIRST, &f, errmsg)
                            : kw_file_create(path, &f, errmsg);
    if (st != KIWI_OK)
        return st;
    kw_wal_writer *w = kw_calloc(1, sizeof *w);
    w->file = f;
    w->preallocated = kw_file_is_mapped(f);
    kw_buf_init(&w->scratch);
    *out = w;
    return KIWI_OK;
}

kiwi_status kw_wal_writer_create(const char *path, kw_wal_writer **out, char **errmsg)
{
    return writer_create(path, false, out, errmsg);
}

kiwi_status kw_wal_writer_create_mapped(const char *path, kw_wal_writer **out, char **errmsg)
{
    return writer_create(path, true, out, errmsg);
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
        if (payloads[i].size == 0 && w->preallocated)
            return kw_error(errmsg, KIWI_INVALID_ARGUMENT,
                            "%s: an empty record in a preallocated log would read as unwritten "
                            "space", kw_file_path(w->file));
        if (payloads[i].size > KW_WAL_MAX_RECORD)
            return kw_error(errmsg, KIWI_INVALID_ARGUMENT,
                            "%s: record of %zu bytes exceeds the limit of %u bytes",
                            kw_file_path(w->file), payloads[i].size, KW_WAL_MAX_RECORD);
    }
    return KIWI_OK;
}

/* Up to this size a record is copied behind its header and written with one write(2): cheaper
 * than writev's two parts (measured: 1.9 against 2.1 us for a 116-byte record). Above it the
 * copy costs more than the parts (a batch of 1000 puts is 120 KB), so writev. */
#define COPY_MAX 4096

kiwi_status kw_wal_writer_add(kw_wal_writer *w, kw_slice payload, char **errmsg)
{
    if (payload.size > COPY_MAX || kw_file_is_mapped(w->file))
        return kw_wal_writer_add_many(w, &payload, 1, errmsg);
    kiwi_status st = check_writable(w, &payload, 1, errmsg);
    if (st != KIWI_OK)
        return st;
    kw_buf_clear(&w->scratch);
    kw_buf_reserve(&w->scratch, KW_WAL_HEADER_SIZE + payload.size);
    encode_header(w->scratch.data, payload);
    w->scratch.len = KW_WAL_HEADER_SIZE;
    kw_buf_append(&w->scratch, payload.data, payload.size);
    st = kw_file_append(w->file, w->scratch.data, w->scratch.len, errmsg);
    if (st != KIWI_OK)
        w->failed = st;
    return st;
}

static uint64_t payload_bytes(const kw_slice *payloads, size_t count)
{
    uint64_t n = 0;
    for (size_t i = 0; i < count; i++)
        n += payloads[i].size;
    return n;
}

/* Frames count records (headers in scratch, payloads in place) and appends them: to a mapped
 * log by copies, or with `synced` by one pwritev (kw_file_appendv_synced). */
static kiwi_status append_records(kw_wal_writer *w, const kw_slice *payloads, size_t count,
                                  bool synced, char **errmsg)
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
    if (kw_file_is_mapped(w->file)) /* a step ahead, not one fallocate per append */
        kw_wal_writer_reserve(w, w->scratch.len + payload_bytes(payloads, count));
    st = synced ? kw_file_appendv_synced(w->file, w->parts, 2 * count, errmsg)
                : kw_file_appendv(w->file, w->parts, 2 * count, errmsg);
    if (st != KIWI_OK)
        w->failed = st;
    return st;
}

kiwi_status kw_wal_writer_add_many(kw_wal_writer *w, const kw_slice *payloads, size_t count,
                                   char **errmsg)
{
    return append_records(w, payloads, count, false, errmsg);
}

kiwi_status kw_wal_writer_add_synced(kw_wal_writer *w, const kw_slice *payloads, size_t count,
                                     char **errmsg)
{
    kiwi_status st = count == 1 && !kw_file_is_mapped(w->file)
                         ? kw_wal_writer_add(w, payloads[0], errmsg) /* one write(2), small */
                         : append_records(w, payloads, count, true, errmsg);
    if (st == KIWI_OK && w->preallocated)
        kw_file_zero_ahead(w->file); /* the fdatasync next overwrites written blocks */
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

void kw_wal_writer_reserve(kw_wal_writer *w, uint64_t bytes)
{
    if (w->no_prealloc || w->failed != KIWI_OK)
        return;
    w->preallocated = true;
    uint64_t size = kw_file_size(w->file);
    if (size + bytes <= kw_file_allocated(w->file))
        return;
    uint64_t step = size < PREALLOC_MIN ? PREALLOC_MIN : (size > PREALLOC_MAX ? PREALLOC_MAX : size);
    /* Best effort: a file system without fallocate (EOPNOTSUPP), or a full one, leaves the log
     * growing append by append as before; a real I/O error shows at the append or the sync. */
    if (kw_file_reserve(w->file, size + bytes + step, NULL) != KIWI_OK)
        w->no_prealloc = true;
}

uint64_t kw_wal_writer_allocated(const kw_wal_writer *w)
{
    return kw_file_allocated(w->file);
}

kiwi_status kw_wal_writer_close(kw_wal_writer *w, bool sync, char **errmsg)
{
    if (w == NULL)
        return KIWI_OK;
    /* the preallocated tail goes first, so a sync makes the exact length durable too */
    kiwi_status st = kw_file_trim(w->file, errmsg);
    if (st == KIWI_OK && sync)
        st = kw_file_sync(w->file, errmsg);
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
    bool prealloc;    /* the rules for preallocated space apply (kw_wal_read_preallocated) */
    size_t zero_from; /* prealloc: where the run of zero bytes that ends the file starts */
} wal_scan;

/* ---- preallocated space (wal.h, rules a-d) ---- */

#define ZERO_BLOCK 4096 /* the unit in which unwritten space reads back as zeros: a page, an
                           ext4/xfs block; a preallocated extent is converted block by block */

static bool all_zero(const char *p, size_t n)
{
    return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

/* Where the run of zero bytes that ends data[0..size) starts (size if the last byte is not 0). */
static size_t zero_tail_start(const char *data, size_t size)
{
    size_t z = size;
    while (z >= 64 && all_zero(data + z - 64, 64))
        z -= 64;
    while (z > 0 && data[z - 1] == 0)
        z--;
    return z;
}

/* Whether a whole zero block (aligned in the file; the last one may be short) overlaps
 * [from, to). */
static bool touches_zero_block(const char *data, size_t size, size_t from, size_t to)
{
    for (size_t b = from / ZERO_BLOCK * ZERO_BLOCK; b < to && b < size; b += ZERO_BLOCK) {
        size_t n = size - b < ZERO_BLOCK ? size - b : ZERO_BLOCK;
        if (all_zero(data + b, n))
            return true;
    }
    return false;
}

/* Whether the record at off, found not whole and good, is explained by space that was never
 * written: a zero header (rule b); a bad checksum with only zeros after the record; or a whole
 * zero block overlapping the record and the next header, or just the header when the length is
 * bad (rule d). */
static bool unwritten_at(const wal_scan *s, rec_kind kind, uint32_t len, size_t off)
{
    if (kind == REC_GOOD)
        return len == 0; /* an empty record is eight zero bytes: no writer makes one */
    size_t to = off + KW_WAL_HEADER_SIZE; /* a bad length says nothing of where the record ends */
    if (kind == REC_BAD_CRC) {
        size_t end = off + KW_WAL_HEADER_SIZE + len;
        if (end >= s->zero_from)
            return true;
        to = end + KW_WAL_HEADER_SIZE;
    }
    return touches_zero_block(s->data, s->size, off, to < s->size ? to : s->size);
}

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
        if (s->prealloc && off >= s->zero_from) { /* rule a: the rest was never written */
            s->st->prealloc_bytes = s->size - off;
            break;
        }
        uint32_t len;
        rec_kind kind = classify(s->data, s->size, off, &len);
        if (kind == REC_TORN || (s->prealloc && unwritten_at(s, kind, len, off))) {
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

static kiwi_status read_buffer(const char *name, const char *data, size_t size,
                               kw_wal_recovery_mode mode, bool prealloc, kw_wal_record_fn fn,
                               void *ctx, kw_wal_read_stats *stats, char **errmsg)
{
    kw_wal_read_stats local = {0};
    kw_wal_read_stats *st = stats ? stats : &local;
    *st = (kw_wal_read_stats){0};
    wal_scan s = {name, data, size, mode, fn, ctx, st, prealloc, size};
    if (prealloc)
        s.zero_from = zero_tail_start(data, size);
    return scan(&s, errmsg);
}

static kiwi_status read_file(const char *path, kw_wal_recovery_mode mode, bool prealloc,
                             kw_wal_record_fn fn, void *ctx, kw_wal_read_stats *stats,
                             char **errmsg)
{
    if (stats != NULL)
        *stats = (kw_wal_read_stats){0};
    char *data;
    size_t size;
    kiwi_status status = kw_read_file(path, &data, &size, errmsg);
    if (status != KIWI_OK)
        return status;
    status = read_buffer(path, data, size, mode, prealloc, fn, ctx, stats, errmsg);
    free(data);
    return status;
}

kiwi_status kw_wal_read_buffer(const char *name, const char *data, size_t size,
                               kw_wal_recovery_mode mode, kw_wal_record_fn fn, void *ctx,
                               kw_wal_read_stats *stats, char **errmsg)
{
    return read_buffer(name, data, size, mode, false, fn, ctx, stats, errmsg);
}

kiwi_status kw_wal_read(const char *path, kw_wal_recovery_mode mode, kw_wal_record_fn fn,
                        void *ctx, kw_wal_read_stats *stats, char **errmsg)
{
    return read_file(path, mode, false, fn, ctx, stats, errmsg);
}

kiwi_status kw_wal_read_buffer_preallocated(const char *name, const char *data, size_t size,
                                            kw_wal_recovery_mode mode, kw_wal_record_fn fn,
                                            void *ctx, kw_wal_read_stats *stats, char **errmsg)
{
    return read_buffer(name, data, size, mode, true, fn, ctx, stats, errmsg);
}

kiwi_status kw_wal_read_preallocated(const char *path, kw_wal_recovery_mode mode,
                                     kw_wal_record_fn fn, void *ctx, kw_wal_read_stats *stats,
                                     char **errmsg)
{
    return read_file(path, mode, true, fn, ctx, stats, errmsg);
}
