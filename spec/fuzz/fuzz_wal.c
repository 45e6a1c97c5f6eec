/*
 * fuzz_wal.c: libFuzzer target for the WAL reader (kw_wal_read / kw_wal_read_buffer) and the
 * batch decoder behind it. The input is a whole log file.
 *
 * Each input runs as it is and, when that changes anything, with every record's CRC repaired
 * (fuzz_common.h). For each version:
 *   - kw_wal_read_buffer in both recovery modes, every record decoded by kw_batch_iterate with
 *     the checks of fuzz_batch.h;
 *   - stats: good_bytes <= size, records counted == callbacks, a torn tail covers exactly the
 *     bytes after good_bytes, an OK read without a torn tail consumed the whole input;
 *   - both modes agree exactly (records, offsets, stats, status) with a model of the rules
 *     of wal.h written independently in this file;
 *   - TOLERATE_TAIL delivers a prefix of what SKIP_CORRUPT delivers (same offsets, same
 *     payloads); SKIP_CORRUPT never fails (its callback accepts every record);
 *   - a callback error stops the read and comes back unchanged (the db's recovery fails on a
 *     record that is not a valid batch);
 *   - kw_wal_read on the same bytes written to a file gives the same status and stats;
 *   - the reader of preallocated logs (kw_wal_read_buffer_preallocated, what recovery uses) only
 *     relaxes the strict one: in both modes its records are a prefix of the strict reader's, it
 *     fails only where the strict one fails, SKIP_CORRUPT never fails, and on input without a
 *     zero byte it reads exactly what the strict reader reads. Its file reader agrees with it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "fuzz_batch.h"
#include "fuzz_common.h"
#include "wal.h"

typedef struct {
    const char *base;   /* the bytes read (a copy of them when the reader read a file) */
    size_t size;
    bool same_buffer;   /* payloads must point into base (kw_wal_read_buffer) */
    uint64_t *offsets;  /* of every record delivered */
    size_t n, cap;
    uint64_t end;       /* just past the last record delivered */
    bool strict;        /* the db's recovery: a bad batch fails the read */
    bool failed_here;   /* the callback returned the error */
} wal_ctx;

static kiwi_status on_record(void *arg, kw_slice payload, uint64_t offset, char **errmsg)
{
    wal_ctx *c = arg;
    FUZZ_CHECK(offset >= c->end && offset + KW_WAL_HEADER_SIZE <= c->size);
    FUZZ_CHECK(payload.size <= c->size - offset - KW_WAL_HEADER_SIZE);
    const char *body = c->base + offset + KW_WAL_HEADER_SIZE;
    if (c->same_buffer)
        FUZZ_CHECK(payload.data == body);
    FUZZ_CHECK(payload.size == 0 || memcmp(payload.data, body, payload.size) == 0);
    FUZZ_CHECK(kw_decode_fixed32(c->base + offset) == payload.size);
    FUZZ_CHECK(kw_crc32c(payload.data, payload.size) == kw_decode_fixed32(c->base + offset + 4));
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 16;
        c->offsets = kw_realloc(c->offsets, c->cap * sizeof *c->offsets);
    }
    c->offsets[c->n++] = offset;
    c->end = offset + KW_WAL_HEADER_SIZE + payload.size;
    kiwi_status st = fuzz_check_batch(payload);
    if (st != KIWI_OK && c->strict) {
        c->failed_here = true;
        return kw_error(errmsg, KIWI_CORRUPTION, "fuzz: record at offset %llu: bad batch",
                        (unsigned long long)offset);
    }
    return KIWI_OK;
}

static void check_stats(const kw_wal_read_stats *s, kiwi_status st, const wal_ctx *c)
{
    FUZZ_CHECK(s->good_bytes <= c->size);
    if (s->torn_tail)
        FUZZ_CHECK(s->torn_bytes > 0 && s->torn_bytes == c->size - s->good_bytes);
    else
        FUZZ_CHECK(s->torn_bytes == 0);
    /* records counts the callbacks that returned OK; good_bytes ends the last of them */
    FUZZ_CHECK(s->records == c->n - (c->failed_here ? 1 : 0));
    if (s->records == c->n)
        FUZZ_CHECK(s->good_bytes == c->end);
    if (st == KIWI_OK && !s->torn_tail)
        FUZZ_CHECK(s->good_bytes == c->size); /* every byte was read */
}

static bool g_prealloc; /* read_log uses the readers of preallocated logs */

/* One read of buf; fills c and stats. */
static kiwi_status read_log(const char *buf, size_t size, const char *path,
                            kw_wal_recovery_mode mode, bool strict, wal_ctx *c,
                            kw_wal_read_stats *stats)
{
    if (g_prealloc) {
        memset(c, 0, sizeof *c);
        c->base = buf;
        c->size = size;
        c->same_buffer = path == NULL;
        c->strict = strict;
        char *perr = NULL;
        kiwi_status pst =
            path == NULL ? kw_wal_read_buffer_preallocated("fuzz.log", buf, size, mode, on_record,
                                                           c, stats, &perr)
                         : kw_wal_read_preallocated(path, mode, on_record, c, stats, &perr);
        if (pst != KIWI_OK)
            FUZZ_CHECK_ERROR(pst, perr);
        else
            FUZZ_CHECK(perr == NULL);
        free(perr);
        return pst;
    }
    memset(c, 0, sizeof *c);
    c->base = buf;
    c->size = size;
    c->same_buffer = path == NULL;
    c->strict = strict;
    char *err = NULL;
    kiwi_status st = path == NULL
                         ? kw_wal_read_buffer("fuzz.log", buf, size, mode, on_record, c, stats,
                                              &err)
                         : kw_wal_read(path, mode, on_record, c, stats, &err);
    if (st != KIWI_OK)
        FUZZ_CHECK_ERROR(st, err);
    else
        FUZZ_CHECK(err == NULL);
    free(err);
    check_stats(stats, st, c);
    return st;
}

static bool same_prefix(const wal_ctx *a, const wal_ctx *b)
{
    if (a->n > b->n)
        return false;
    for (size_t i = 0; i < a->n; i++)
        if (a->offsets[i] != b->offsets[i])
            return false;
    return true;
}

static bool same_stats(const kw_wal_read_stats *a, const kw_wal_read_stats *b)
{
    return a->records == b->records && a->good_bytes == b->good_bytes &&
           a->torn_tail == b->torn_tail && a->torn_bytes == b->torn_bytes &&
           a->skipped_records == b->skipped_records && a->skipped_bytes == b->skipped_bytes;
}

/* ---- the model: wal.h's reading rules, restated ------------------------------------------ */

typedef struct {
    kiwi_status st;
    kw_wal_read_stats s;
    uint64_t offsets[512]; /* the first records delivered */
    size_t n;
} model_result;

static bool model_good_at(const char *buf, size_t size, size_t off)
{
    if (size - off < KW_WAL_HEADER_SIZE)
        return false;
    uint32_t len = kw_decode_fixed32(buf + off);
    return len <= KW_WAL_MAX_RECORD && len <= size - off - KW_WAL_HEADER_SIZE &&
           kw_crc32c(buf + off + KW_WAL_HEADER_SIZE, len) == kw_decode_fixed32(buf + off + 4);
}

static void model_read(const char *buf, size_t size, kw_wal_recovery_mode mode, model_result *m)
{
    memset(m, 0, sizeof *m);
    size_t off = 0;
    while (off < size) {
        size_t left = size - off;
        uint32_t len = left >= KW_WAL_HEADER_SIZE ? kw_decode_fixed32(buf + off) : 0;
        bool torn = left < KW_WAL_HEADER_SIZE ||
                    (len <= KW_WAL_MAX_RECORD && len > left - KW_WAL_HEADER_SIZE);
        if (!torn && len <= KW_WAL_MAX_RECORD && model_good_at(buf, size, off)) {
            if (m->n < sizeof m->offsets / sizeof m->offsets[0])
                m->offsets[m->n] = off;
            m->n++;
            off += KW_WAL_HEADER_SIZE + len;
            m->s.records++;
            m->s.good_bytes = off;
            continue;
        }
        /* a bad CRC on a record that ends exactly at EOF is torn too */
        if (!torn && len <= KW_WAL_MAX_RECORD && KW_WAL_HEADER_SIZE + (size_t)len == left)
            torn = true;
        if (!torn && mode == KW_WAL_TOLERATE_TAIL) {
            m->st = KIWI_CORRUPTION;
            return;
        }
        size_t next = off + KW_WAL_HEADER_SIZE + len;
        if (!torn && len <= KW_WAL_MAX_RECORD && model_good_at(buf, size, next)) {
            m->s.skipped_records++;
            m->s.skipped_bytes += next - off;
            off = next;
            continue;
        }
        m->s.torn_tail = true;
        m->s.torn_bytes = size - m->s.good_bytes;
        return;
    }
}

static void check_model(const model_result *m, kiwi_status st, const kw_wal_read_stats *s,
                        const wal_ctx *c)
{
    FUZZ_CHECK(m->st == st);
    FUZZ_CHECK(m->n == c->n);
    for (size_t i = 0; i < c->n && i < sizeof m->offsets / sizeof m->offsets[0]; i++)
        FUZZ_CHECK(m->offsets[i] == c->offsets[i]);
    if (st == KIWI_OK)
        FUZZ_CHECK(same_stats(&m->s, s));
    else
        FUZZ_CHECK(m->s.records == s->records && m->s.good_bytes == s->good_bytes);
}

static void check_log(const char *buf, size_t size)
{
    wal_ctx tol, skip, strict, file;
    kw_wal_read_stats ts, ss, xs, fs;
    kiwi_status tst = read_log(buf, size, NULL, KW_WAL_TOLERATE_TAIL, false, &tol, &ts);
    kiwi_status sst = read_log(buf, size, NULL, KW_WAL_SKIP_CORRUPT, false, &skip, &ss);
    FUZZ_CHECK(tst == KIWI_OK || tst == KIWI_CORRUPTION);
    FUZZ_CHECK(sst == KIWI_OK); /* skipping never fails while the callback accepts */
    FUZZ_CHECK(ts.skipped_records == 0 && ts.skipped_bytes == 0);
    FUZZ_CHECK(same_prefix(&tol, &skip));
    model_result m;
    model_read(buf, size, KW_WAL_TOLERATE_TAIL, &m);
    check_model(&m, tst, &ts, &tol);
    model_read(buf, size, KW_WAL_SKIP_CORRUPT, &m);
    check_model(&m, sst, &ss, &skip);
    if (tst == KIWI_OK) /* nothing bad before the tail: both modes read the same */
        FUZZ_CHECK(same_stats(&ts, &ss) && tol.n == skip.n);

    /* a callback error stops the read at once and comes back as it was */
    kiwi_status xst = read_log(buf, size, NULL, KW_WAL_TOLERATE_TAIL, true, &strict, &xs);
    FUZZ_CHECK(same_prefix(&strict, &tol));
    if (strict.failed_here)
        FUZZ_CHECK(xst == KIWI_CORRUPTION && xs.records == strict.n - 1);
    else
        FUZZ_CHECK(xst == tst && strict.n == tol.n && same_stats(&xs, &ts));

    /* the file reader is the buffer reader over the file's bytes */
    const char *path = fuzz_write_file("fuzz.log", buf, size);
    kiwi_status fst = read_log(buf, size, path, KW_WAL_TOLERATE_TAIL, false, &file, &fs);
    FUZZ_CHECK(fst == tst && file.n == tol.n && same_stats(&fs, &ts));

    free(tol.offsets);
    free(skip.offsets);
    free(strict.offsets);
    free(file.offsets);
}

/* The preallocated-log reader against the strict one on the same bytes. */
static void check_prealloc(const char *buf, size_t size)
{
    bool has_zero = memchr(buf, 0, size) != NULL;
    kw_wal_recovery_mode modes[2] = {KW_WAL_TOLERATE_TAIL, KW_WAL_SKIP_CORRUPT};
    for (int i = 0; i < 2; i++) {
        wal_ctx x, p, f;
        kw_wal_read_stats xs, ps, fs;
        g_prealloc = false;
        kiwi_status xst = read_log(buf, size, NULL, modes[i], false, &x, &xs);
        g_prealloc = true;
        kiwi_status pst = read_log(buf, size, NULL, modes[i], false, &p, &ps);
        const char *path = fuzz_write_file("fuzz.log", buf, size);
        kiwi_status fst = read_log(buf, size, path, modes[i], false, &f, &fs);
        g_prealloc = false;
        FUZZ_CHECK(pst == KIWI_OK || pst == KIWI_CORRUPTION);
        FUZZ_CHECK(modes[i] == KW_WAL_TOLERATE_TAIL || pst == KIWI_OK);
        FUZZ_CHECK(pst == KIWI_OK || xst != KIWI_OK); /* fails only where strict fails */
        FUZZ_CHECK(same_prefix(&p, &x));
        FUZZ_CHECK(fst == pst && f.n == p.n && same_stats(&fs, &ps));
        if (!has_zero)
            FUZZ_CHECK(pst == xst && p.n == x.n && same_stats(&ps, &xs));
        free(x.offsets);
        free(p.offsets);
        free(f.offsets);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = fuzz_copy(data, size);
    check_log(buf, size);
    check_prealloc(buf, size);
    if (fuzz_fix_wal_crcs(buf, size)) {
        check_log(buf, size);
        check_prealloc(buf, size);
    }
    free(buf);
    return 0;
}
