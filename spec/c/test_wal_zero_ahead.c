/*
 * test_wal_zero_ahead.c: zeroing ahead of synced appends (kw_file_zero_ahead, called by
 * kw_wal_writer_add_synced on a preallocated log; wal.md, "Zeroing ahead"). After every synced
 * append the zeros reach at least 32 KiB past the log's end (or its length), never start before
 * the end, never pass the file's length, come in one write per 32-64 KiB of log, and leave the
 * blocks after the end written (not fallocate's unwritten extents, checked with FIEMAP where the
 * file system has it). Appends that are not synced, and a log that is not preallocated, never
 * zero. A failed zeroing write fails nothing and stops zeroing. Records read back in order with
 * the writer open and after it closes, and a db whose process dies after synced puts recovers
 * every put from a WAL with a zeroed tail.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctest.h"
#include "dbtest.h"
#include "env.h"
#include "kiwi.h"
#include "wal.h"
#include "wal_fixture.h"

#define KIB 1024u
#define GROUP 4       /* records per synced append, like a group of 4 sync writers */
#define RECORD 120    /* payload bytes: 16-byte key, 100-byte value and a little framing */
#define N_GROUPS 600  /* ~300 KiB of log: several zeroing rounds and preallocation steps */

/* ---- the pwritev hook: zeroing writes are told apart from record writes by their bytes ---- */

static int g_record_writes, g_zero_writes;
static uint64_t g_zero_lo, g_zero_hi; /* the lowest offset and the end of the zeros written */
static uint64_t g_zero_last;          /* the offset of the last zeroing write */
static int g_zero_fail_errno;         /* non-zero: zeroing writes fail with it */

static ssize_t watching_pwritev(int fd, const struct iovec *iov, int count, off_t off)
{
    if (!all_zeros(iov, count)) {
        g_record_writes++;
        return pwritev(fd, iov, count, off);
    }
    g_zero_writes++;
    if (g_zero_fail_errno) {
        errno = g_zero_fail_errno;
        return -1;
    }
    ssize_t r = pwritev(fd, iov, count, off);
    if (r > 0) {
        g_zero_last = (uint64_t)off;
        if (g_zero_hi == 0 || (uint64_t)off < g_zero_lo)
            g_zero_lo = (uint64_t)off;
        g_zero_hi = (uint64_t)off + (uint64_t)r;
    }
    return r;
}

static void watch_pwritev(void)
{
    g_record_writes = g_zero_writes = 0;
    g_zero_lo = g_zero_hi = g_zero_last = 0;
    g_zero_fail_errno = 0;
    kw_syscalls.pwritev = watching_pwritev;
}

/* ---- helpers ---- */

static uint64_t disk_length(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : UINT64_MAX;
}

/* Whether any extent of path overlapping [from, to) is unwritten; -1 where FIEMAP is missing. */
static int has_unwritten(const char *path, uint64_t from, uint64_t to)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -1;
    enum { EXTENTS = 32 };
    struct fiemap *fm = calloc(1, sizeof *fm + EXTENTS * sizeof(struct fiemap_extent));
    fm->fm_start = from;
    fm->fm_length = to - from;
    fm->fm_flags = FIEMAP_FLAG_SYNC;
    fm->fm_extent_count = EXTENTS;
    int r = ioctl(fd, FS_IOC_FIEMAP, fm);
    close(fd);
    int unwritten = r == 0 ? 0 : -1;
    for (uint32_t i = 0; r == 0 && i < fm->fm_mapped_extents; i++)
        if (fm->fm_extents[i].fe_flags & FIEMAP_EXTENT_UNWRITTEN)
            unwritten = 1;
    free(fm);
    return unwritten;
}

typedef struct {
    char *payloads[N_GROUPS * GROUP];
    size_t sizes[N_GROUPS * GROUP];
} records;

static records *make_records(void)
{
    records *r = malloc(sizeof *r);
    for (size_t i = 0; i < N_GROUPS * GROUP; i++) {
        r->sizes[i] = RECORD + i % 7;
        r->payloads[i] = make_payload((int)i, r->sizes[i]);
    }
    return r;
}

static void free_records(records *r)
{
    free_payloads(r->payloads, N_GROUPS * GROUP);
    free(r);
}

typedef struct {
    char **want;
    const size_t *len;
    size_t n, mismatches;
} in_order;

static kiwi_status check_next(void *ctx, kw_slice payload, uint64_t offset, char **errmsg)
{
    in_order *c = ctx;
    if (payload.size != c->len[c->n] || memcmp(payload.data, c->want[c->n], payload.size) != 0)
        c->mismatches++;
    c->n++;
    return KIWI_OK;
}

/* The log at path holds exactly the first n records, in order (preallocated: open or killed). */
static void check_records(const char *path, bool preallocated, records *r, size_t n)
{
    in_order c = {r->payloads, r->sizes, 0, 0};
    kw_wal_read_stats st;
    char *err = NULL, **errp = &err;
    CHECK_OK(preallocated
                 ? kw_wal_read_preallocated(path, KW_WAL_TOLERATE_TAIL, check_next, &c, &st, &err)
                 : kw_wal_read(path, KW_WAL_TOLERATE_TAIL, check_next, &c, &st, &err),
             errp);
    CHECK_EQ_U64(c.n, n);
    CHECK_EQ_U64(c.mismatches, 0);
    CHECK(!st.torn_tail);
}

/* Records [i, i + GROUP) as slices in parts; returns their framed bytes. */
static uint64_t group_parts(const records *r, size_t i, kw_slice *parts)
{
    uint64_t bytes = 0;
    for (size_t j = 0; j < GROUP; j++) {
        parts[j] = kw_slice_make(r->payloads[i + j], r->sizes[i + j]);
        bytes += r->sizes[i + j] + KW_WAL_HEADER_SIZE;
    }
    return bytes;
}

/* Appends records [i, i + GROUP) as one synced group, reserving first as the db's commit does
 * (kw_wal_writer_reserve before every synced group), then fdatasyncs. */
static void append_group(kw_wal_writer *w, records *r, size_t i, char **err)
{
    kw_slice parts[GROUP];
    kw_wal_writer_reserve(w, group_parts(r, i, parts));
    CHECK(kw_wal_writer_add_synced(w, parts, GROUP, err) == KIWI_OK);
    CHECK(kw_wal_writer_sync(w, err) == KIWI_OK);
}

/* ---- tests ---- */

/* Synced groups on a mapped and on a plain (reserved) log: where the zeros go, how often, and
 * that the blocks after the end are written when the fdatasync returns. Every 5th group is
 * appended without sync (copies or writev): those never zero. */
static void test_zero_ahead_frontier(void)
{
    char *dir = ctest_tmpdir("walzero");
    records *r = make_records();
    for (int mapped = 1; mapped >= 0; mapped--) {
        char *path = kw_join_path(dir, mapped ? "000031.log" : "000032.log");
        char *err = NULL, **errp = &err;
        kw_wal_writer *w = NULL;
        watch_pwritev();
        CHECK_OK(mapped ? kw_wal_writer_create_mapped(path, &w, &err)
                        : kw_wal_writer_create(path, &w, &err),
                 errp);
        if (w == NULL)
            break;
        int unwritten_after_end = 0, fiemap_checks = 0;
        uint64_t synced_bytes = 0;
        for (size_t g = 0; g < N_GROUPS; g++) {
            size_t i = g * GROUP;
            int zeros_before = g_zero_writes;
            if (g % 5 == 4) {
                kw_slice parts[GROUP];
                group_parts(r, i, parts);
                CHECK(kw_wal_writer_add_many(w, parts, GROUP, &err) == KIWI_OK);
                CHECK_EQ_U64(g_zero_writes, zeros_before);
                continue;
            }
            uint64_t before = kw_wal_writer_size(w), zeroed_before = g_zero_hi;
            append_group(w, r, i, &err);
            uint64_t end = kw_wal_writer_size(w), alloc = kw_wal_writer_allocated(w);
            synced_bytes += end - before;
            uint64_t want = end + 32 * KIB < alloc ? end + 32 * KIB : alloc;
            CHECK(g_zero_hi >= want);
            CHECK(g_zero_hi <= alloc);
            if (g_zero_writes > zeros_before) /* on from the zeros before, or the records' end */
                CHECK(g_zero_last == (zeroed_before > end ? zeroed_before : end));
            if (g % 50 == 1 && want > end) {
                int u = has_unwritten(path, (end + 4095) / 4096 * 4096, want & ~4095ull);
                fiemap_checks += u >= 0;
                unwritten_after_end += u == 1;
            }
        }
        CHECK(g_zero_lo < 4 * KIB); /* from the first group on */
        CHECK(g_zero_writes >= (int)(synced_bytes / (64 * KIB)));
        CHECK(g_zero_writes <= (int)(synced_bytes / (16 * KIB)) + 4);
        CHECK_EQ_U64(unwritten_after_end, 0);
        if (fiemap_checks == 0)
            printf("  (no FIEMAP on this file system: the extent check was skipped)\n");
        CHECK_EQ_U64(disk_length(path), kw_wal_writer_allocated(w)); /* zeros never extend it */
        check_records(path, true, r, N_GROUPS * GROUP);
        CHECK_OK(kw_wal_writer_close(w, true, &err), errp);
        kw_syscalls_reset();
        check_records(path, false, r, N_GROUPS * GROUP);
        free(path);
    }
    kw_syscalls_reset();
    free_records(r);
    ctest_rmtree(dir);
}

/* A plain log never reserved is not preallocated: its synced appends write no zeros. */
static void test_no_zeroing_without_preallocation(void)
{
    char *dir = ctest_tmpdir("walzeroplain");
    char *path = kw_join_path(dir, "000033.log");
    records *r = make_records();
    char *err = NULL, **errp = &err;
    kw_wal_writer *w = NULL;
    watch_pwritev();
    CHECK_OK(kw_wal_writer_create(path, &w, &err), errp);
    for (size_t g = 0; w != NULL && g < 40; g++) {
        kw_slice parts[GROUP];
        group_parts(r, g * GROUP, parts);
        CHECK(kw_wal_writer_add_synced(w, parts, g % 2 ? 1 : GROUP, &err) == KIWI_OK);
    }
    CHECK_EQ_U64(g_zero_writes, 0);
    CHECK_EQ_U64(disk_length(path), kw_wal_writer_size(w));
    CHECK_OK(kw_wal_writer_close(w, true, &err), errp);
    kw_syscalls_reset();
    free_records(r);
    free(path);
    ctest_rmtree(dir);
}

/* A zeroing write that fails (EIO) fails no append and stops zeroing for that file; the records
 * are intact. */
static void test_zeroing_failure_is_harmless(void)
{
    char *dir = ctest_tmpdir("walzerofail");
    char *path = kw_join_path(dir, "000034.log");
    records *r = make_records();
    char *err = NULL, **errp = &err;
    kw_wal_writer *w = NULL;
    watch_pwritev();
    g_zero_fail_errno = EIO;
    CHECK_OK(kw_wal_writer_create_mapped(path, &w, &err), errp);
    enum { GROUPS = 200 };
    for (size_t g = 0; w != NULL && g < GROUPS; g++)
        append_group(w, r, g * GROUP, &err);
    CHECK_EQ_U64(g_zero_writes, 1); /* tried once, then never again */
    CHECK_EQ_U64(g_zero_hi, 0);
    CHECK_OK(kw_wal_writer_close(w, true, &err), errp);
    kw_syscalls_reset();
    check_records(path, false, r, GROUPS * GROUP);
    free_records(r);
    free(path);
    ctest_rmtree(dir);
}

/* A process that dies after synced puts (from 4 threads' worth of sizes: plain kiwi_put with
 * sync) leaves a WAL with a zeroed, untrimmed tail; the reopened db has every put. */
static void test_db_recovers_zeroed_tail(void)
{
    char *dir = ctest_tmpdir("walzerodb");
    enum { PUTS = 600 };
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        kiwi_db *db = dbtest_open(dir, "prod", NULL);
        if (db == NULL)
            _exit(2);
        kiwi_write_options wo = {.sync = true};
        for (int i = 0; i < PUTS; i++) {
            char k[32], v[128];
            int kl = snprintf(k, sizeof k, "key%06d", i);
            memset(v, 'a' + i % 26, sizeof v);
            if (kiwi_put(db, &wo, k, (size_t)kl, v, sizeof v, NULL) != KIWI_OK)
                _exit(3);
        }
        kill(getpid(), SIGKILL);
        _exit(4);
    }
    CHECK(child_was_killed(pid));
    kiwi_db *db = dbtest_open(dir, "prod", NULL);
    CHECK(db != NULL);
    size_t found = 0;
    for (int i = 0; db != NULL && i < PUTS; i++) {
        char k[32], *v = NULL;
        size_t len = 0;
        int kl = snprintf(k, sizeof k, "key%06d", i);
        if (kiwi_get(db, NULL, k, (size_t)kl, &v, &len, NULL) == KIWI_OK && len == 128 &&
            v[0] == 'a' + i % 26 && v[127] == v[0])
            found++;
        kiwi_free(v);
    }
    CHECK_EQ_U64(found, PUTS);
    if (db)
        CHECK(kiwi_close(db) == KIWI_OK);
    ctest_rmtree(dir);
}

int main(void)
{
    RUN(test_zero_ahead_frontier);
    RUN(test_no_zeroing_without_preallocation);
    RUN(test_zeroing_failure_is_harmless);
    RUN(test_db_recovers_zeroed_tail);
    return ctest_summary();
}
