/*
 * test_faults.c: injected I/O faults at each kind of call site (through env.h's kw_syscalls
 * table): the error reaches the caller as "no space:" / "io error:" naming the file; a db whose
 * state is in doubt refuses further writes but keeps serving reads; after the fault clears, a
 * reopen recovers every acknowledged write.
 *
 * The fault functions are installed once and armed per scenario (atomics), since background
 * threads call them too. Not run under TSan: swapping the syscall table is a test-only race.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include "ctest.h"
#include "env.h"
#include "kiwi.h"

static atomic_int g_armed;          /* which operation fails: see the F_ values */
static char g_suffix[32];           /* ... on files whose name contains this */
static atomic_int g_hits;           /* faults delivered */

enum { F_NONE, F_WRITE, F_SYNC, F_RENAME, F_MMAP, F_OPEN, F_FALLOCATE };

static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static int (*real_fdatasync)(int);
static int (*real_rename)(const char *, const char *);
static void *(*real_mmap)(void *, size_t, int, int, int, off_t);
static int (*real_open)(const char *, int, mode_t);
static int (*real_fallocate)(int, int, off_t, off_t);

static bool fd_matches(int fd)
{
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0)
        return false;
    path[n] = 0;
    return strstr(path, g_suffix) != NULL;
}

static bool should_fail(int kind, int fd, const char *path)
{
    if (atomic_load(&g_armed) != kind)
        return false;
    if (!(path ? strstr(path, g_suffix) != NULL : fd_matches(fd)))
        return false;
    atomic_fetch_add(&g_hits, 1);
    return true;
}

static ssize_t f_write(int fd, const void *b, size_t n)
{
    if (should_fail(F_WRITE, fd, NULL)) {
        errno = ENOSPC;
        return -1;
    }
    return real_write(fd, b, n);
}

static ssize_t f_writev(int fd, const struct iovec *iov, int cnt)
{
    if (should_fail(F_WRITE, fd, NULL)) {
        errno = ENOSPC;
        return -1;
    }
    return real_writev(fd, iov, cnt);
}

static int f_fdatasync(int fd)
{
    if (should_fail(F_SYNC, fd, NULL)) {
        errno = EIO;
        return -1;
    }
    return real_fdatasync(fd);
}

static int f_rename(const char *a, const char *b)
{
    if (should_fail(F_RENAME, -1, b)) {
        errno = EIO;
        return -1;
    }
    return real_rename(a, b);
}

static void *f_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    if (should_fail(F_MMAP, fd, NULL)) {
        errno = ENOMEM;
        return MAP_FAILED;
    }
    return real_mmap(addr, len, prot, flags, fd, off);
}

static int f_open(const char *path, int flags, mode_t mode)
{
    if (should_fail(F_OPEN, -1, path)) {
        errno = EACCES;
        return -1;
    }
    return real_open(path, flags, mode);
}

static int f_fallocate(int fd, int mode, off_t off, off_t len)
{
    if (should_fail(F_FALLOCATE, fd, NULL)) {
        errno = ENOSPC;
        return -1;
    }
    return real_fallocate(fd, mode, off, len);
}

static void install(void)
{
    real_write = kw_syscalls.write;
    real_writev = kw_syscalls.writev;
    real_fdatasync = kw_syscalls.fdatasync;
    real_rename = kw_syscalls.rename;
    real_mmap = kw_syscalls.mmap;
    real_open = kw_syscalls.open;
    real_fallocate = kw_syscalls.fallocate;
    kw_syscalls.write = f_write;
    kw_syscalls.writev = f_writev;
    kw_syscalls.fdatasync = f_fdatasync;
    kw_syscalls.rename = f_rename;
    kw_syscalls.mmap = f_mmap;
    kw_syscalls.open = f_open;
    kw_syscalls.fallocate = f_fallocate;
}

static void arm(int kind, const char *suffix)
{
    snprintf(g_suffix, sizeof g_suffix, "%s", suffix);
    atomic_store(&g_hits, 0);
    atomic_store(&g_armed, kind);
}

static void disarm(void)
{
    atomic_store(&g_armed, F_NONE);
}

static const char *g_wal_writes = "mapped"; /* the wal_writes setting of open_db */

static kiwi_db *open_db(const char *dir, char **err)
{
    kiwi_db *db = NULL;
    kiwi_options *o = kiwi_options_create("prod");
    kiwi_options_set(o, "wal_writes", g_wal_writes, NULL);
    kiwi_status st = kiwi_open(dir, o, &db, err);
    kiwi_options_destroy(o);
    return st == KIWI_OK ? db : NULL;
}

static void put_n(kiwi_db *db, const char *prefix, int n)
{
    char k[32];
    for (int i = 0; i < n; i++) {
        snprintf(k, sizeof k, "%s%05d", prefix, i);
        CHECK(kiwi_put(db, NULL, k, strlen(k), k, strlen(k), NULL) == KIWI_OK);
    }
}

static int missing_n(kiwi_db *db, const char *prefix, int n)
{
    char k[32];
    int missing = 0;
    for (int i = 0; i < n; i++) {
        char *v = NULL;
        size_t vl;
        snprintf(k, sizeof k, "%s%05d", prefix, i);
        if (kiwi_get(db, NULL, k, strlen(k), &v, &vl, NULL) != KIWI_OK || vl != strlen(k) ||
            memcmp(v, k, vl) != 0)
            missing++;
        kiwi_free(v);
    }
    return missing;
}

/* Reopens after the fault cleared: every acknowledged write is there, and writes work. */
static void check_recovered(const char *dir, const char *prefix, int n)
{
    disarm();
    char *err = NULL;
    kiwi_db *db = open_db(dir, &err);
    CHECK(db != NULL);
    if (db == NULL) {
        fprintf(stderr, "reopen: %s\n", err);
        kiwi_free(err);
        return;
    }
    CHECK(missing_n(db, prefix, n) == 0);
    CHECK(kiwi_put(db, NULL, "after", 5, "ok", 2, NULL) == KIWI_OK);
    CHECK(kiwi_close(db) == KIWI_OK);
}

/* A WAL append fails for want of space: with wal_writes=write the write(2) fails; with
 * wal_writes=mapped the fallocate that would make room in the mapping does (a 1 MiB value never
 * fits in what the first 64 KiB step left). */
static void wal_enospc(const char *wal_writes, int fault)
{
    const int before = 100;
    g_wal_writes = wal_writes;
    char *dir = ctest_tmpdir("fwal");
    char *err = NULL;
    kiwi_db *db = open_db(dir, &err);
    g_wal_writes = "mapped";
    if (!db) {
        CHECK(db != NULL);
        return;
    }
    put_n(db, "a", before);
    arm(fault, ".log");
    size_t big_len = 1u << 20;
    char *big = malloc(big_len);
    memset(big, 'v', big_len);
    CHECK(kiwi_put(db, NULL, "x", 1, big, big_len, &err) == KIWI_NO_SPACE);
    free(big);
    CHECK(err && strncmp(err, "no space: ", 10) == 0 && strstr(err, ".log"));
    if (fault == F_FALLOCATE)
        CHECK(err && strstr(err, "fallocate"));
    disarm();
    /* the WAL's state is in doubt: later writes are refused, with the first error */
    CHECK(kiwi_put(db, NULL, "z", 1, "y", 1, &err) == KIWI_NO_SPACE);
    CHECK(err && strstr(err, "refused after a background error"));
    CHECK(kiwi_flush(db, &err) != KIWI_OK);
    /* reads go on */
    CHECK(missing_n(db, "a", before) == 0);
    char *stats = kiwi_property(db, "stats");
    CHECK(stats && strstr(stats, "\"background_error\":\"no space: "));
    kiwi_free(stats);
    CHECK(kiwi_close(db) == KIWI_NO_SPACE); /* close reports the background error */
    kiwi_free(err);
    check_recovered(dir, "a", before);
    ctest_rmtree(dir);
}

static void test_wal_write_enospc(void)
{
    wal_enospc("write", F_WRITE);
}

static void test_wal_mapped_enospc(void)
{
    wal_enospc("mapped", F_FALLOCATE);
}

static void test_wal_sync_eio(void)
{
    char *dir = ctest_tmpdir("fsync");
    char *err = NULL;
    kiwi_db *db = open_db(dir, &err);
    if (!db) {
        CHECK(db != NULL);
        return;
    }
    put_n(db, "b", 50);
    arm(F_SYNC, ".log");
    kiwi_write_options wo = {true};
    CHECK(kiwi_put(db, &wo, "s", 1, "1", 1, &err) == KIWI_IO_ERROR);
    CHECK(err && strncmp(err, "io error: ", 10) == 0 && strstr(err, ".log"));
    CHECK(atomic_load(&g_hits) == 1);
    disarm();
    CHECK(kiwi_put(db, NULL, "t", 1, "1", 1, NULL) == KIWI_IO_ERROR);
    CHECK(missing_n(db, "b", 50) == 0);
    kiwi_close(db);
    kiwi_free(err);
    check_recovered(dir, "b", 50);
    ctest_rmtree(dir);
}

static void test_sstable_write_enospc(void)
{
    char *dir = ctest_tmpdir("fsst");
    char *err = NULL;
    kiwi_db *db = open_db(dir, &err);
    if (!db) {
        CHECK(db != NULL);
        return;
    }
    put_n(db, "c", 500);
    arm(F_WRITE, ".sst");
    CHECK(kiwi_flush(db, &err) == KIWI_NO_SPACE);
    CHECK(err && strstr(err, "no space: ") && strstr(err, ".sst"));
    disarm();
    CHECK(missing_n(db, "c", 500) == 0); /* the memtable still serves them */
    CHECK(kiwi_put(db, NULL, "w", 1, "1", 1, NULL) == KIWI_NO_SPACE);
    kiwi_close(db);
    kiwi_free(err);
    check_recovered(dir, "c", 500); /* from the WAL; the partial SSTable is gone */
    ctest_rmtree(dir);
}

static void test_manifest_write_fails(void)
{
    char *dir = ctest_tmpdir("fman");
    char *err = NULL;
    kiwi_db *db = open_db(dir, &err);
    if (!db) {
        CHECK(db != NULL);
        return;
    }
    put_n(db, "d", 300);
    arm(F_SYNC, "MANIFEST-");
    CHECK(kiwi_flush(db, &err) == KIWI_IO_ERROR);
    CHECK(err && strstr(err, "MANIFEST-"));
    disarm();
    CHECK(missing_n(db, "d", 300) == 0);
    kiwi_close(db);
    kiwi_free(err);
    check_recovered(dir, "d", 300);
    ctest_rmtree(dir);
}

static void test_open_faults(void)
{
    char *dir = ctest_tmpdir("fopen");
    char *err = NULL;
    kiwi_db *db = open_db(dir, &err);
    if (!db) {
        CHECK(db != NULL);
        return;
    }
    put_n(db, "e", 200);
    CHECK(kiwi_flush(db, NULL) == KIWI_OK);
    put_n(db, "e", 200); /* and again in the WAL */
    kiwi_close(db);

    arm(F_RENAME, "CURRENT"); /* switching CURRENT at open */
    CHECK(open_db(dir, &err) == NULL);
    CHECK(err && strncmp(err, "io error: ", 10) == 0 && strstr(err, "CURRENT"));
    arm(F_MMAP, ".sst"); /* mapping a live table */
    CHECK(open_db(dir, &err) == NULL);
    CHECK(err && strstr(err, ".sst"));
    arm(F_OPEN, ".log"); /* replaying a WAL */
    CHECK(open_db(dir, &err) == NULL);
    CHECK(err && strstr(err, ".log"));
    arm(F_WRITE, "MANIFEST-"); /* writing the fresh manifest */
    CHECK(open_db(dir, &err) == NULL);
    CHECK(err && strncmp(err, "no space: ", 10) == 0 && strstr(err, "MANIFEST-"));
    kiwi_free(err);
    check_recovered(dir, "e", 200); /* failed opens changed nothing */
    ctest_rmtree(dir);
}

int main(void)
{
    install();
    RUN(test_wal_write_enospc);
    RUN(test_wal_mapped_enospc);
    RUN(test_wal_sync_eio);
    RUN(test_sstable_write_enospc);
    RUN(test_manifest_write_fails);
    RUN(test_open_faults);
    kw_syscalls_reset();
    return ctest_summary();
}
