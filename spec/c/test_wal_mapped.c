/*
 * test_wal_mapped.c: the mapped log writer (kw_wal_writer_create_mapped over
 * kw_file_create_mapped): records of every size round-trip, read back both while the writer is
 * open (through read(2): one page cache) and after close (trimmed to its exact length); a process
 * that dies without closing leaves every appended record readable; a file system without
 * fallocate gives a plain write(2) log; and a failed fallocate or mmap fails the append with
 * nothing written, the records before it intact and the log refusing further appends. Synced
 * appends (kw_wal_writer_add_synced) reach a mapped log with pwritev(2), interleave with copies
 * in order, and a failed one is sticky; a plain log's synced appends use write/writev. Copies
 * fault in the 64 KiB ahead of them at once; synced appends do not. At the
 * db level: the wal_writes setting, its default, a live change taking effect at the next WAL;
 * sync writes from several threads on a mapped WAL, all back after a reopen.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctest.h"
#include "dbtest.h"
#include "env.h"
#include "kiwi.h"
#include "wal.h"
#include "wal_fixture.h"

/* ---- helpers ---- */

/* Checks records in order: record i must be want[i]. */
typedef struct {
    char **want;
    const size_t *want_len;
    size_t count;
    size_t n;         /* records delivered */
    size_t mismatches; /* delivered record != the expected one at its position */
} seq_reader;

static kiwi_status collect_in_order(void *ctx, kw_slice payload, uint64_t offset, char **errmsg)
{
    seq_reader *r = ctx;
    if (r->n >= r->count || r->want_len[r->n] != payload.size ||
        (payload.size > 0 && memcmp(r->want[r->n], payload.data, payload.size) != 0))
        r->mismatches++;
    r->n++;
    return KIWI_OK;
}

static uint64_t disk_length(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : UINT64_MAX;
}

/* Reads path as a preallocated log and checks it holds exactly the first n expected records. */
static void check_log(const char *path, char **want, const size_t *len, size_t n,
                      kw_wal_read_stats *st)
{
    seq_reader r = {want, len, n, 0, 0};
    char *err = NULL, **errp = &err;
    CHECK_OK(kw_wal_read_preallocated(path, KW_WAL_TOLERATE_TAIL, collect_in_order, &r, st, &err),
             errp);
    CHECK_EQ_U64(r.n, n);
    CHECK_EQ_U64(r.mismatches, 0);
    CHECK(!st->torn_tail);
}

/* Reads a closed (trimmed) log with the plain reader: exactly the n expected records, in order,
 * no torn tail. */
static void check_closed_log(const char *path, char **want, const size_t *len, size_t n)
{
    kw_wal_read_stats st;
    seq_reader r = {want, len, n, 0, 0};
    char *err = NULL, **errp = &err;
    CHECK_OK(kw_wal_read(path, KW_WAL_TOLERATE_TAIL, collect_in_order, &r, &st, &err), errp);
    CHECK_EQ_U64(r.n, n);
    CHECK_EQ_U64(r.mismatches, 0);
    CHECK(!st.torn_tail);
}

/* 1 byte, small, binary, 4 KiB + 1 (past the write path's copy limit), 1 MiB (several steps
 * of preallocation and windows), and a run of ordinary records. */
#define N_RECORDS 300
static void record_sizes(size_t *sizes)
{
    for (size_t i = 0; i < N_RECORDS; i++)
        sizes[i] = 20 + (i * 37) % 300;
    sizes[0] = 1;
    sizes[7] = 4097;
    sizes[50] = 1u << 20;
    sizes[51] = 2;
    sizes[200] = (1u << 20) + 13;
}

/* ---- round trips ---- */

static void test_mapped_round_trip(void)
{
    char *dir = ctest_tmpdir("walmap");
    char *path = kw_join_path(dir, "000007.log");
    size_t sizes[N_RECORDS];
    char *payloads[N_RECORDS];
    record_sizes(sizes);
    kw_wal_writer *w = NULL;
    char *err = NULL, **errp = &err;
    CHECK_OK(kw_wal_writer_create_mapped(path, &w, &err), errp);
    if (w == NULL)
        return;
    /* an empty record would have a zero header, which reads as unwritten space (wal.h rule b);
     * refusing it does not stop the log (the records below go in) */
    CHECK(kw_wal_writer_add(w, kw_slice_make("", 0), &err) == KIWI_INVALID_ARGUMENT);
    CHECK(err && strstr(err, "empty record in a preallocated log"));
    kiwi_free(err);
    err = NULL;
    uint64_t expect = 0;
    for (size_t i = 0; i < N_RECORDS; i++) {
        payloads[i] = make_payload((int)i, sizes[i]);
        if (i % 3 == 2) { /* some as a group of two */
            kw_slice two[2] = {kw_slice_make(payloads[i - 1], sizes[i - 1]),
                               kw_slice_make(payloads[i], sizes[i])};
            CHECK_OK(kw_wal_writer_add_many(w, two, 2, &err), errp);
        } else if (i % 3 == 0) {
            CHECK_OK(kw_wal_writer_add(w, kw_slice_make(payloads[i], sizes[i]), &err), errp);
        }
        expect += KW_WAL_HEADER_SIZE + sizes[i];
    }
    /* a trailing odd record when N_RECORDS % 3 == 1 went in above; 300 % 3 == 0 */
    CHECK_EQ_U64(kw_wal_writer_size(w), expect);
    CHECK(kw_wal_writer_allocated(w) >= expect);
    CHECK_EQ_U64(disk_length(path), kw_wal_writer_allocated(w));

    /* read while open: the mapping's bytes are the page cache's */
    kw_wal_read_stats st;
    check_log(path, payloads, sizes, N_RECORDS, &st);
    CHECK_EQ_U64(st.good_bytes, expect);
    CHECK_EQ_U64(st.prealloc_bytes, kw_wal_writer_allocated(w) - expect);

    CHECK_OK(kw_wal_writer_close(w, true, &err), errp);
    CHECK_EQ_U64(disk_length(path), expect); /* trimmed to what was written */
    check_closed_log(path, payloads, sizes, N_RECORDS);
    free_payloads(payloads, N_RECORDS);
    free(path);
    ctest_rmtree(dir);
}

/* A process that dies right after its appends, without closing or syncing, loses none of them:
 * they were in the page cache when each append returned. The file keeps its zero tail. */
static void test_mapped_process_crash(void)
{
    char *dir = ctest_tmpdir("walmapcrash");
    char *path = kw_join_path(dir, "000009.log");
    size_t sizes[N_RECORDS];
    char *payloads[N_RECORDS];
    record_sizes(sizes);
    for (size_t i = 0; i < N_RECORDS; i++)
        payloads[i] = make_payload((int)i, sizes[i]);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        kw_wal_writer *w = NULL;
        if (kw_wal_writer_create_mapped(path, &w, NULL) != KIWI_OK)
            _exit(2);
        for (size_t i = 0; i < N_RECORDS; i++)
            if (kw_wal_writer_add(w, kw_slice_make(payloads[i], sizes[i]), NULL) != KIWI_OK)
                _exit(3);
        kill(getpid(), SIGKILL);
        _exit(4);
    }
    CHECK(child_was_killed(pid));
    kw_wal_read_stats st;
    check_log(path, payloads, sizes, N_RECORDS, &st);
    CHECK(st.prealloc_bytes > 0);
    CHECK_EQ_U64(st.good_bytes + st.prealloc_bytes, disk_length(path));
    free_payloads(payloads, N_RECORDS);
    free(path);
    ctest_rmtree(dir);
}

/* ---- synced appends ---- */

static int g_pwritev_calls; /* of records: zeroing ahead (test_wal_zero_ahead.c) is not counted */
static int g_pwritev_fail_errno; /* non-zero: pwritev fails with it */

static ssize_t counting_pwritev(int fd, const struct iovec *iov, int count, off_t off)
{
    if (!all_zeros(iov, count))
        g_pwritev_calls++;
    if (g_pwritev_fail_errno) {
        errno = g_pwritev_fail_errno;
        return -1;
    }
    return pwritev(fd, iov, count, off);
}

/* Appends record i..i+n-1 in one of four ways, chosen by i: copies (add, add_many) or synced
 * (add_synced of one or of a group), so every kind follows every other; syncs now and then. */
static int append_mixed(kw_wal_writer *w, char **payloads, const size_t *sizes, size_t i,
                        size_t n, char **err)
{
    kw_slice parts[3];
    for (size_t j = 0; j < n; j++)
        parts[j] = kw_slice_make(payloads[i + j], sizes[i + j]);
    int synced = 0;
    kiwi_status st;
    switch (i % 4) {
    case 0: st = n == 1 ? kw_wal_writer_add(w, parts[0], err) : kw_wal_writer_add_many(w, parts, n, err); break;
    case 1: st = kw_wal_writer_add_synced(w, parts, 1, err); n = 1; synced = 1; break;
    case 2: st = kw_wal_writer_add_many(w, parts, n, err); break;
    default: st = kw_wal_writer_add_synced(w, parts, n, err); synced = 1; break;
    }
    CHECK(st == KIWI_OK);
    if (synced && i % 8 == 3)
        CHECK(kw_wal_writer_sync(w, err) == KIWI_OK);
    return (int)n;
}

/* Synced appends to a mapped log: one pwritev each, the mapping's copies continuing right after
 * them (records of every size, 1 MiB ones across windows), all read back in order while the
 * writer is open and after it closes; a plain log's synced appends never use pwritev. */
static void test_mapped_synced_appends(void)
{
    char *dir = ctest_tmpdir("walmapsync");
    for (int mapped = 1; mapped >= 0; mapped--) {
        char *path = kw_join_path(dir, mapped ? "000021.log" : "000022.log");
        size_t sizes[N_RECORDS];
        char *payloads[N_RECORDS];
        record_sizes(sizes);
        for (size_t i = 0; i < N_RECORDS; i++)
            payloads[i] = make_payload((int)i + 1000, sizes[i]);
        g_pwritev_calls = 0;
        kw_syscalls.pwritev = counting_pwritev;
        kw_wal_writer *w = NULL;
        char *err = NULL, **errp = &err;
        CHECK_OK(mapped ? kw_wal_writer_create_mapped(path, &w, &err)
                        : kw_wal_writer_create(path, &w, &err),
                 errp);
        if (w == NULL) {
            kw_syscalls_reset();
            return;
        }
        int synced_calls = 0;
        for (size_t i = 0; i < N_RECORDS;) {
            size_t left = N_RECORDS - i, n = left < 3 ? left : 3;
            synced_calls += i % 4 == 1 || i % 4 == 3;
            i += (size_t)append_mixed(w, payloads, sizes, i, n, &err);
        }
        CHECK_EQ_U64(g_pwritev_calls, mapped ? synced_calls : 0);
        CHECK(synced_calls > 50);
        kw_wal_read_stats st;
        if (mapped)
            check_log(path, payloads, sizes, N_RECORDS, &st); /* open: one page cache */
        CHECK_OK(kw_wal_writer_close(w, true, &err), errp);
        kw_syscalls_reset();
        check_closed_log(path, payloads, sizes, N_RECORDS);
        free_payloads(payloads, N_RECORDS);
        free(path);
    }
    ctest_rmtree(dir);
}

/* A synced append that fails (ENOSPC from pwritev) reports it with the file's name, leaves the
 * records before it intact, and makes the log refuse further appends of either kind. */
static void test_mapped_synced_append_fails(void)
{
    char *dir = ctest_tmpdir("walmapsyncfail");
    char *path = kw_join_path(dir, "000023.log");
    char *err = NULL, **errp = &err;
    kw_wal_writer *w = NULL;
    CHECK_OK(kw_wal_writer_create_mapped(path, &w, &err), errp);
    if (w == NULL)
        return;
    enum { SMALL = 10 };
    char *payloads[SMALL];
    size_t sizes[SMALL];
    for (int i = 0; i < SMALL; i++) {
        sizes[i] = 50 + (size_t)i;
        payloads[i] = make_payload(i, sizes[i]);
        kw_slice one = kw_slice_make(payloads[i], sizes[i]);
        CHECK_OK(i % 2 ? kw_wal_writer_add_synced(w, &one, 1, &err)
                       : kw_wal_writer_add(w, one, &err),
                 errp);
    }
    uint64_t before = kw_wal_writer_size(w);
    kw_syscalls.pwritev = counting_pwritev;
    g_pwritev_fail_errno = ENOSPC;
    kw_slice x = kw_slice_make("lost", 4);
    CHECK(kw_wal_writer_add_synced(w, &x, 1, &err) == KIWI_NO_SPACE);
    CHECK(err && strstr(err, "write") && strstr(err, "000023.log"));
    kiwi_free(err);
    err = NULL;
    g_pwritev_fail_errno = 0;
    kw_syscalls_reset();
    CHECK_EQ_U64(kw_wal_writer_size(w), before);
    CHECK(kw_wal_writer_add(w, x, &err) != KIWI_OK); /* sticky, for copies too */
    CHECK(err && strstr(err, "an earlier append failed"));
    kiwi_free(err);
    err = NULL;
    CHECK(kw_wal_writer_add_synced(w, &x, 1, &err) != KIWI_OK);
    kiwi_free(err);
    err = NULL;
    CHECK_OK(kw_wal_writer_close(w, true, &err), errp);
    kw_wal_read_stats st;
    check_log(path, payloads, sizes, SMALL, &st);
    free_payloads(payloads, SMALL);
    free(path);
    ctest_rmtree(dir);
}

/* ---- no fallocate: a plain log ---- */

static int fallocate_unsupported(int fd, int mode, off_t off, off_t len)
{
    errno = EOPNOTSUPP;
    return -1;
}

/* KiB of this process's mappings of path that its page tables map (Rss in /proc/self/smaps),
 * or -1 when no mapping of path was found. */
static long mapped_rss_kib(const char *path)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    if (f == NULL)
        return -1;
    char line[4096];
    long total = -1;
    bool in_path = false;
    while (fgets(line, sizeof line, f)) {
        size_t len = strlen(line);
        if (len > 0 && line[len - 1] == '\n')
            line[--len] = '\0';
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) { /* a mapping's first line */
            size_t plen = strlen(path);
            in_path = len >= plen && strcmp(line + len - plen, path) == 0;
            continue;
        }
        long kib;
        if (in_path && sscanf(line, "Rss: %ld kB", &kib) == 1)
            total = (total < 0 ? 0 : total) + kib;
    }
    fclose(f);
    return total;
}

/* A copy into the mapping first maps the pages from the populated mark to 64 KiB past its end
 * (or the window's end) at once (MADV_POPULATE_WRITE), where the copy alone would fault in its
 * own page: the mapping's Rss is 64 KiB after 100 bytes (4 KiB without), and 64 KiB ahead plus
 * the copy's pages after a copy past the first window (remapped). Synced appends (pwritev) map
 * nothing: the window of a log written only with sync has no page in the page tables. */
static void test_mapped_populates_ahead(void)
{
    if (sysconf(_SC_PAGESIZE) != 4096) { /* the sizes below assume 4 KiB pages */
        printf("note: page size %ld: skipped\n", sysconf(_SC_PAGESIZE));
        return;
    }
#ifdef MADV_POPULATE_WRITE
    void *probe = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    bool kernel_has_it = probe != MAP_FAILED && madvise(probe, 4096, MADV_POPULATE_WRITE) == 0;
    if (probe != MAP_FAILED)
        munmap(probe, 4096);
#else
    bool kernel_has_it = false;
#endif
    if (!kernel_has_it) { /* before Linux 5.14: pages fault in one at a time, as before */
        printf("note: no MADV_POPULATE_WRITE here: skipped\n");
        return;
    }
    char *dir = ctest_tmpdir("walmappop");
    char *path = kw_join_path(dir, "000031.log");
    kw_file *f = NULL;
    char *err = NULL, **errp = &err;
    CHECK_OK(kw_file_create_mapped(path, 65536, &f, &err), errp);
    CHECK(f != NULL && kw_file_is_mapped(f));
    if (f) {
        CHECK_EQ_U64(mapped_rss_kib(path), 0); /* mapped, nothing faulted in */
        char rec[100];
        memset(rec, 'r', sizeof rec);
        CHECK_OK(kw_file_append(f, rec, sizeof rec, &err), errp);
        long rss = mapped_rss_kib(path);
        printf("mapped after 100 bytes: %ld KiB\n", rss);
        CHECK_EQ_U64(rss, 64);
        CHECK_OK(kw_file_reserve(f, 256 * 1024, &err), errp); /* as the WAL writer's steps */
        while (kw_file_size(f) + sizeof rec <= 64 * 1024)
            CHECK_OK(kw_file_append(f, rec, sizeof rec, &err), errp);
        CHECK_OK(kw_file_append(f, rec, sizeof rec, &err), errp); /* past the window: remapped */
        rss = mapped_rss_kib(path);
        printf("mapped after the remap: %ld KiB\n", rss);
        CHECK(rss >= 64 + 4 && rss <= 64 + 8); /* the copy's 1-2 pages and 64 KiB ahead */
        CHECK_OK(kw_file_close(f, &err), errp);
    }
    char *spath = kw_join_path(dir, "000032.log");
    CHECK_OK(kw_file_create_mapped(spath, 65536, &f, &err), errp);
    if (f) {
        kw_slice part = kw_slice_make("synced record", 13);
        for (int i = 0; i < 10; i++)
            CHECK_OK(kw_file_appendv_synced(f, &part, 1, &err), errp);
        CHECK_EQ_U64(mapped_rss_kib(spath), 0);
        CHECK_OK(kw_file_close(f, &err), errp);
    }
    free(spath);
    free(path);
    ctest_rmtree(dir);
}

static void test_mapped_without_fallocate(void)
{
    char *dir = ctest_tmpdir("walmapplain");
    char *path = kw_join_path(dir, "000011.log");
    kw_file *f = NULL;
    char *err = NULL, **errp = &err;
    kw_syscalls.fallocate = fallocate_unsupported;
    CHECK_OK(kw_file_create_mapped(path, 65536, &f, &err), errp);
    CHECK(f != NULL && !kw_file_is_mapped(f));
    if (f) {
        CHECK_OK(kw_file_append(f, "hello", 5, &err), errp);
        CHECK_EQ_U64(disk_length(path), 5); /* written with write(2), nothing reserved */
        CHECK_OK(kw_file_close(f, &err), errp);
    }
    kw_wal_writer *w = NULL;
    CHECK_OK(kw_wal_writer_create_mapped(path, &w, &err), errp);
    if (w) {
        CHECK_OK(kw_wal_writer_add(w, kw_slice_make("abc", 3), &err), errp);
        CHECK_EQ_U64(disk_length(path), KW_WAL_HEADER_SIZE + 3);
        CHECK_OK(kw_wal_writer_close(w, false, &err), errp);
    }
    kw_syscalls_reset();
    free(path);
    ctest_rmtree(dir);
}

/* ---- failures while growing ---- */

static int g_fail_after; /* calls allowed before the hooks below fail */

static int fallocate_enospc_later(int fd, int mode, off_t off, off_t len)
{
    if (g_fail_after-- > 0)
        return fallocate(fd, mode, off, len);
    errno = ENOSPC;
    return -1;
}

static void *mmap_enomem_later(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    if (g_fail_after-- > 0)
        return mmap(addr, len, prot, flags, fd, off);
    errno = ENOMEM;
    return MAP_FAILED;
}

/* The first step's records go in; the append that needs more space fails with `want` naming
 * the operation, nothing of it is in the file, the log refuses more, and close trims. */
static void growth_fails(const char *want_status, const char *want_op)
{
    char *dir = ctest_tmpdir("walmapfail");
    char *path = kw_join_path(dir, "000013.log");
    char *err = NULL, **errp = &err;
    kw_wal_writer *w = NULL;
    g_fail_after = 1; /* the create's fallocate or mmap succeeds, the next fails */
    CHECK_OK(kw_wal_writer_create_mapped(path, &w, &err), errp);
    if (w == NULL) {
        kw_syscalls_reset();
        return;
    }
    enum { SMALL = 30 }; /* 30 records of 108 bytes: inside the first page */
    char *payloads[SMALL];
    size_t sizes[SMALL];
    for (int i = 0; i < SMALL; i++) {
        sizes[i] = 100;
        payloads[i] = make_payload(i, sizes[i]);
        CHECK_OK(kw_wal_writer_add(w, kw_slice_make(payloads[i], sizes[i]), &err), errp);
    }
    uint64_t before = kw_wal_writer_size(w);
    char *big = make_payload(99, 200000); /* past the first page */
    CHECK(kw_wal_writer_add(w, kw_slice_make(big, 200000), &err) != KIWI_OK);
    CHECK(err != NULL && strncmp(err, want_status, strlen(want_status)) == 0 &&
          strstr(err, want_op) != NULL && strstr(err, "000013.log") != NULL);
    kiwi_free(err);
    err = NULL;
    CHECK_EQ_U64(kw_wal_writer_size(w), before);
    CHECK(kw_wal_writer_add(w, kw_slice_make("x", 1), &err) != KIWI_OK); /* sticky */
    CHECK(err && strstr(err, "an earlier append failed"));
    kiwi_free(err);
    err = NULL;
    kw_syscalls_reset();
    CHECK_OK(kw_wal_writer_close(w, true, &err), errp);
    CHECK_EQ_U64(disk_length(path), before);
    kw_wal_read_stats st;
    check_log(path, payloads, sizes, SMALL, &st);
    free_payloads(payloads, SMALL);
    free(big);
    free(path);
    ctest_rmtree(dir);
}

static void test_mapped_fallocate_enospc(void)
{
    kw_syscalls.fallocate = fallocate_enospc_later;
    growth_fails("no space: ", "fallocate");
}

static void test_mapped_mmap_fails(void)
{
    kw_syscalls.mmap = mmap_enomem_later;
    growth_fails("io error", "mmap");
}

/* ---- the db's setting ---- */

/* The length of the db's only WAL file (the newest NNNNNN.log in dir). */
static uint64_t wal_length(const char *dir)
{
    char **names = NULL;
    size_t n = 0;
    uint64_t len = UINT64_MAX;
    if (kw_list_dir(dir, &names, &n, NULL) != KIWI_OK)
        return len;
    for (size_t i = 0; i < n; i++) { /* sorted: the last .log is the newest */
        size_t l = strlen(names[i]);
        if (l > 4 && strcmp(names[i] + l - 4, ".log") == 0) {
            char *path = kw_join_path(dir, names[i]);
            len = disk_length(path);
            free(path);
        }
    }
    kw_free_names(names, n);
    return len;
}

static bool has(kiwi_db *db, const char *k, const char *v)
{
    char *got = NULL;
    size_t len = 0;
    bool ok = kiwi_get(db, NULL, k, strlen(k), &got, &len, NULL) == KIWI_OK &&
              len == strlen(v) && memcmp(got, v, len) == 0;
    kiwi_free(got);
    return ok;
}

/* wal_writes: mapped by default (the WAL is preallocated: one page long after one small put, a
 * 64 KiB step longer once the page is full; a log made by a flush is one page while empty);
 * "write" from the next WAL on when set live (the file is exactly its record); shown in the
 * options JSON; an unknown value is refused. Every put survives the switches and a reopen. */
static void test_db_wal_writes_setting(void)
{
    char *dir = ctest_tmpdir("walmapdb");
    kiwi_db *db = dbtest_open(dir, "prod", NULL);
    if (db == NULL) {
        CHECK(db != NULL);
        return;
    }
    char *opts = kiwi_property(db, "options");
    CHECK(opts && strstr(opts, "\"wal_writes\":\"mapped\""));
    kiwi_free(opts);
    CHECK(kiwi_put(db, NULL, "k1", 2, "v1", 2, NULL) == KIWI_OK);
    CHECK_EQ_U64(wal_length(dir), 4096);

    char *err = NULL;
    CHECK(kiwi_set_option(db, "wal_writes", "sometimes", &err) == KIWI_INVALID_ARGUMENT);
    CHECK(err && strstr(err, "wal_writes"));
    kiwi_free(err);
    CHECK(kiwi_set_option(db, "wal_writes", "write", NULL) == KIWI_OK);
    CHECK(kiwi_put(db, NULL, "k2", 2, "v2", 2, NULL) == KIWI_OK);
    CHECK_EQ_U64(wal_length(dir), 4096); /* the current WAL keeps its way */
    CHECK(kiwi_flush(db, NULL) == KIWI_OK); /* a new WAL: written with write(2) */
    CHECK(kiwi_put(db, NULL, "k3", 2, "v3", 2, NULL) == KIWI_OK);
    uint64_t plain = wal_length(dir);
    CHECK(plain > 0 && plain < 100);
    opts = kiwi_property(db, "options");
    CHECK(opts && strstr(opts, "\"wal_writes\":\"write\""));
    kiwi_free(opts);

    CHECK(kiwi_set_option(db, "wal_writes", "mapped", NULL) == KIWI_OK);
    CHECK(kiwi_flush(db, NULL) == KIWI_OK);
    CHECK_EQ_U64(wal_length(dir), 4096); /* idle: one page, not a step of zeros */
    CHECK(kiwi_put(db, NULL, "k4", 2, "v4", 2, NULL) == KIWI_OK);
    CHECK_EQ_U64(wal_length(dir), 4096);
    char big[3000];
    memset(big, 'b', sizeof big);
    CHECK(kiwi_put(db, NULL, "k5", 2, big, sizeof big, NULL) == KIWI_OK);
    CHECK_EQ_U64(wal_length(dir), 4096);
    CHECK(kiwi_put(db, NULL, "k6", 2, big, sizeof big, NULL) == KIWI_OK); /* past the page */
    uint64_t stepped = wal_length(dir);
    CHECK(stepped >= 65536 + 6000 && stepped <= 65536 + 8192);
    CHECK(kiwi_close(db) == KIWI_OK);

    db = dbtest_open(dir, "prod", NULL);
    CHECK(db != NULL);
    if (db) {
        CHECK(has(db, "k1", "v1") && has(db, "k2", "v2") && has(db, "k3", "v3") &&
              has(db, "k4", "v4"));
        size_t len = 0;
        char *got = NULL;
        CHECK(kiwi_get(db, NULL, "k6", 2, &got, &len, NULL) == KIWI_OK && len == 3000);
        kiwi_free(got);
        kiwi_close(db);
    }
    ctest_rmtree(dir);
}

int main(void)
{
    RUN(test_mapped_round_trip);
    RUN(test_mapped_process_crash);
    RUN(test_mapped_without_fallocate);
    RUN(test_mapped_fallocate_enospc);
    RUN(test_mapped_mmap_fails);
    RUN(test_mapped_synced_appends);
    RUN(test_mapped_synced_append_fails);
    RUN(test_mapped_populates_ahead);
    RUN(test_db_wal_writes_setting);
    return ctest_summary();
}
