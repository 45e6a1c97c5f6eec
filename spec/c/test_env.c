/*
 * test_env.c: the file layer: appends (plain, vectored, short and interrupted writes), sync and
 * size, atomic replace, mmap of empty and non-empty files, whole-file reads, truncation,
 * directories and names, errors that name the path and operation, and fault injection through
 * the kw_syscalls table (ENOSPC -> KIWI_NO_SPACE, EIO on fsync), restored by kw_syscalls_reset;
 * preallocation (kw_file_reserve, kw_file_trim).
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/uio.h>

#include "ctest.h"
#include "env.h"

/* Reads path and compares it with want[0..n). */
static int file_equals(const char *path, const char *want, size_t n)
{
    char *data = NULL, *err = NULL;
    size_t len = 0;
    if (kw_read_file(path, &data, &len, &err) != KIWI_OK) {
        fprintf(stderr, "read %s: %s\n", path, err);
        free(err);
        return 0;
    }
    int ok = len == n && memcmp(data, want, n) == 0 && data[len] == '\0';
    free(data);
    return ok;
}

static void test_append_appendv_sync_size(void)
{
    char *dir = ctest_tmpdir("env");
    char *path = kw_join_path(dir, "a.log");
    char *err = NULL;
    char **errp = &err; /* CHECK_OK(x, &err) trips -Werror=address */
    kw_file *f = NULL;
    CHECK_OK(kw_file_create(path, &f, &err), errp);
    CHECK_EQ_U64(kw_file_size(f), 0);
    CHECK(strcmp(kw_file_path(f), path) == 0);
    CHECK_OK(kw_file_append(f, "hello", 5, &err), errp);
    kw_slice parts[] = {{" ", 1}, {"", 0}, {"big", 3}, {" world", 6}};
    CHECK_OK(kw_file_appendv(f, parts, 4, &err), errp);
    CHECK_OK(kw_file_appendv(f, parts, 0, &err), errp);
    CHECK_EQ_U64(kw_file_size(f), 15);
    CHECK_OK(kw_file_sync(f, &err), errp);
    CHECK_OK(kw_file_close(f, &err), errp);
    CHECK(file_equals(path, "hello big world", 15));

    /* Reopen for append: the size starts at the existing length. */
    CHECK_OK(kw_file_open_append(path, &f, &err), errp);
    CHECK_EQ_U64(kw_file_size(f), 15);
    CHECK_OK(kw_file_append(f, "!", 1, &err), errp);
    CHECK_EQ_U64(kw_file_size(f), 16);
    CHECK_OK(kw_file_close(f, &err), errp);
    CHECK(file_equals(path, "hello big world!", 16));

    /* Create truncates. */
    CHECK_OK(kw_file_create(path, &f, &err), errp);
    CHECK_OK(kw_file_close(f, &err), errp);
    uint64_t size = 99;
    CHECK_OK(kw_file_size_of(path, &size, &err), errp);
    CHECK_EQ_U64(size, 0);
    free(path);
    ctest_rmtree(dir);
}

static void test_appendv_many_parts(void)
{
    /* More parts than IOV_MAX (1024 on Linux): split into several writev calls. */
    enum { PARTS = 3000 };
    char *dir = ctest_tmpdir("env");
    char *path = kw_join_path(dir, "many");
    static kw_slice parts[PARTS];
    static char want[PARTS * 2];
    static const char digits[] = "0123456789";
    size_t n = 0;
    for (int i = 0; i < PARTS; i++) {
        size_t len = (size_t)(i % 3); /* 0, 1 or 2 bytes */
        parts[i] = kw_slice_make(digits + i % 8, len);
        memcpy(want + n, digits + i % 8, len);
        n += len;
    }
    char *err = NULL;
    char **errp = &err; /* CHECK_OK(x, &err) trips -Werror=address */
    kw_file *f = NULL;
    CHECK_OK(kw_file_create(path, &f, &err), errp);
    CHECK_OK(kw_file_appendv(f, parts, PARTS, &err), errp);
    CHECK_EQ_U64(kw_file_size(f), n);
    CHECK_OK(kw_file_close(f, &err), errp);
    CHECK(file_equals(path, want, n));
    free(path);
    ctest_rmtree(dir);
}

/* ---- injected system calls ---- */

static int calls;

static ssize_t write_enospc(int fd, const void *buf, size_t n)
{
    calls++;
    errno = ENOSPC;
    return -1;
}

static ssize_t writev_enospc(int fd, const struct iovec *iov, int cnt)
{
    calls++;
    errno = ENOSPC;
    return -1;
}

/* Writes at most 3 bytes per call, and fails every third call with EINTR. */
static ssize_t write_short(int fd, const void *buf, size_t n)
{
    if (++calls % 3 == 0) {
        errno = EINTR;
        return -1;
    }
    return write(fd, buf, n < 3 ? n : 3);
}

static ssize_t writev_short(int fd, const struct iovec *iov, int cnt)
{
    if (++calls % 3 == 0) {
        errno = EINTR;
        return -1;
    }
    for (int i = 0; i < cnt; i++)
        if (iov[i].iov_len > 0)
            return write(fd, iov[i].iov_base, iov[i].iov_len < 3 ? iov[i].iov_len : 3);
    return 0;
}

static int fsync_eio(int fd)
{
    calls++;
    errno = EIO;
    return -1;
}

static int seen_opens, opens_without_cloexec;

static int open_spy(const char *path, int flags, mode_t mode)
{
    seen_opens++;
    if ((flags & O_CLOEXEC) == 0)
        opens_without_cloexec++;
    return open(path, flags, mode);
}

static void test_short_and_interrupted_writes(void)
{
    char *dir = ctest_tmpdir("env");
    char *path = kw_join_path(dir, "short");
    char *err = NULL;
    char **errp = &err; /* CHECK_OK(x, &err) trips -Werror=address */
    kw_file *f = NULL;
    CHECK_OK(kw_file_create(path, &f, &err), errp);
    kw_syscalls.write = write_short;
    kw_syscalls.writev = writev_short;
    calls = 0;
    kiwi_status st = kw_file_append(f, "abcdefghij", 10, &err);
    kw_slice parts[] = {{"KLM", 3}, {"", 0}, {"nopqrst", 7}, {"u", 1}};
    kiwi_status st2 = kw_file_appendv(f, parts, 4, &err);
    kw_syscalls_reset();
    CHECK(st == KIWI_OK && st2 == KIWI_OK);
    CHECK(calls > 8); /* really went through the short paths */
    CHECK_EQ_U64(kw_file_size(f), 21);
    CHECK_OK(kw_file_close(f, &err), errp);
    CHECK(file_equals(path, "abcdefghijKLMnopqrstu", 21));
    free(path);
    ctest_rmtree(dir);
}

static void test_enospc_is_no_space(void)
{
    char *dir = ctest_tmpdir("env");
    char *path = kw_join_path(dir, "full.log");
    char *err = NULL;
    char **errp = &err; /* CHECK_OK(x, &err) trips -Werror=address */
    kw_file *f = NULL;
    CHECK_OK(kw_file_create(path, &f, &err), errp);
    kw_syscalls.write = write_enospc;
    kw_syscalls.writev = writev_enospc;
    calls = 0;
    kiwi_status st = kw_file_append(f, "x", 1, &err);
    CHECK_EQ_U64(st, KIWI_NO_SPACE);
    CHECK(err != NULL && strstr(err, path) != NULL);
    CHECK(err != NULL && strncmp(err, "no space: write ", 16) == 0);
    free(err);
    err = NULL;
    kw_slice part = {"y", 1};
    CHECK_EQ_U64(kw_file_appendv(f, &part, 1, &err), KIWI_NO_SPACE);
    CHECK(err != NULL && strstr(err, path) != NULL);
    CHECK_EQ_U64(calls, 2);
    CHECK_EQ_U64(kw_file_size(f), 0); /* nothing counted as written */
    free(err);
    err = NULL;

    /* After reset, the real calls are back. */
    kw_syscalls_reset();
    CHECK_OK(kw_file_append(f, "ok", 2, &err), errp);
    CHECK_OK(kw_file_close(f, &err), errp);
    CHECK(file_equals(path, "ok", 2));
    free(path);
    ctest_rmtree(dir);
}

static void test_fsync_failure_names_path(void)
{
    char *dir = ctest_tmpdir("env");
    char *path = kw_join_path(dir, "s.log");
    char *err = NULL;
    char **errp = &err; /* CHECK_OK(x, &err) trips -Werror=address */
    kw_file *f = NULL;
    CHECK_OK(kw_file_create(path, &f, &err), errp);
    kw_syscalls.fdatasync = fsync_eio;
    kiwi_status st = kw_file_sync(f, &err);
    kw_syscalls_reset();
    CHECK_EQ_U64(st, KIWI_IO_ERROR);
    CHECK(err != NULL && strncmp(err, "io error: fdatasync ", 20) == 0);
    CHECK(err != NULL && strstr(err, path) != NULL && strstr(err, strerror(EIO)) != NULL);
    free(err);
    err = NULL;
    CHECK_OK(kw_file_close(f, &err), errp);
    free(path);
    ctest_rmtree(dir);
}

static void test_atomic_write(void)
{
    char *dir = ctest_tmpdir("env");
    char *path = kw_join_path(dir, "CURRENT");
    char *err = NULL;
    char **errp = &err; /* CHECK_OK(x, &err) trips -Werror=address */
    CHECK_OK(kw_write_file_atomic(dir, "CURRENT", "MANIFEST-000001\n", 16, &err), errp);
    CHECK(file_equals(path, "MANIFEST-000001\n", 16));
    CHECK_OK(kw_write_file_atomic(dir, "CURRENT", "MANIFEST-000002\n", 16, &err), errp);
    CHECK(file_equals(path, "MANIFEST-000002\n", 16));
    char **names = NULL;
    size_t count = 0;
    CHECK_OK(kw_list_dir(dir, &names, &count, &err), errp);
    CHECK_EQ_U64(count, 1); /* no CURRENT.tmp left behind */
    CHECK(count == 1 && strcmp(names[0], "CURRENT") == 0);
    kw_free_names(names, count);

    /* A failed replace leaves the old content and no temp file; fsync failure is reported. */
    kw_syscalls.write = write_enospc;
    kiwi_status st = kw_write_file_atomic(dir, "CURRENT", "MANIFEST-000003\n", 16, &err);
    kw_syscalls_reset();
    CHECK_EQ_U64(st, KIWI_NO_SPACE);
    CHECK(err != NULL && strstr(err, "CURRENT.tmp") != NULL);
    CHECK(file_equals(path, "MANIFEST-000002\n", 16));
    kw_syscalls.fsync = fsync_eio;
    st = kw_write_file_atomic(dir, "CURRENT", "MANIFEST-000004\n", 16, &err);
    kw_syscalls_reset();
    CHECK_EQ_U64(st, KIWI_IO_ERROR);
    CHECK(err != NULL && strstr(err, "fsync") != NULL);
    CHECK(file_equals(path, "MANIFEST-000002\n", 16));
    char *tmp = kw_join_path(dir, "CURRENT.tmp");
    CHECK(!kw_path_exists(tmp));
    free(tmp);
    free(err);
    free(path);
    ctest_rmtree(dir);
}

static void test_mmap(void)
{
    char *dir = ctest_tmpdir("env");
    char *err = NULL;
    char **errp = &err; /* CHECK_OK(x, &err) trips -Werror=address */
    CHECK_OK(kw_write_file_atomic(dir, "empty", "", 0, &err), errp);
    CHECK_OK(kw_write_file_atomic(dir, "full", "0123456789", 10, &err), errp);
    char *empty = kw_join_path(dir, "empty"), *full = kw_join_path(dir, "full");
    kw_mmap m = {(const char *)1, 1};
    CHECK_OK(kw_mmap_file(empty, &m, &err), errp);
    CHECK(m.data == NULL && m.size == 0);
    kw_munmap(&m);
    CHECK_OK(kw_mmap_file(full, &m, &err), errp);
    CHECK_EQ_U64(m.size, 10);
    CHECK(m.data != NULL && memcmp(m.data, "0123456789", 10) == 0);
    /* The mapping outlives the file's name and descriptor. */
    CHECK_OK(kw_remove_file(full, &err), errp);
    CHECK(memcmp(m.data, "0123456789", 10) == 0);
    kw_munmap(&m);
    CHECK(m.data == NULL && m.size == 0);
    /* A missing file: an error naming it. */
    kiwi_status st = kw_mmap_file(full, &m, &err);
    CHECK_EQ_U64(st, KIWI_IO_ERROR);
    CHECK(err != NULL && strstr(err, full) != NULL);
    free(err);
    free(empty);
    free(full);
    ctest_rmtree(dir);
}

static void test_read_and_truncate(void)
{
    char *dir = ctest_tmpdir("env");
    char *path = kw_join_path(dir, "big");
    enum { N = 100000 };
    static char want[N];
    for (int i = 0; i < N; i++)
        want[i] = (char)(i * 31);
    char *err = NULL;
    char **errp = &err; /* CHECK_OK(x, &err) trips -Werror=address */
    CHECK_OK(kw_write_file_atomic(dir, "big", want, N, &err), errp);
    CHECK(file_equals(path, want, N));
    CHECK_OK(kw_truncate_file(path, 1234, &err), errp);
    CHECK(file_equals(path, want, 1234));
    uint64_t size = 0;
    CHECK_OK(kw_file_size_of(path, &size, &err), errp);
    CHECK_EQ_U64(size, 1234);
    free(path);
    ctest_rmtree(dir);
}

static void test_directories_and_names(void)
{
    char *dir = ctest_tmpdir("env");
    char *err = NULL;
    char **errp = &err; /* CHECK_OK(x, &err) trips -Werror=address */
    char *nested = kw_join_path(dir, "a/b/c");
    CHECK_OK(kw_mkdir_p(nested, &err), errp);
    CHECK(kw_is_directory(nested));
    CHECK_OK(kw_mkdir_p(nested, &err), errp); /* existing: fine */
    CHECK_OK(kw_fsync_dir(nested, &err), errp);
    const char *files[] = {"000010.sst", "000002.log", "CURRENT"};
    for (int i = 0; i < 3; i++)
        CHECK_OK(kw_write_file_atomic(nested, files[i], "x", 1, &err), errp);
    char **names = NULL;
    size_t count = 0;
    CHECK_OK(kw_list_dir(nested, &names, &count, &err), errp);
    CHECK_EQ_U64(count, 3);
    if (count == 3) { /* sorted, without "." and ".." */
        CHECK(strcmp(names[0], "000002.log") == 0);
        CHECK(strcmp(names[1], "000010.sst") == 0);
        CHECK(strcmp(names[2], "CURRENT") == 0);
    }
    kw_free_names(names, count);

    char *from = kw_join_path(nested, "CURRENT"), *to = kw_join_path(nested, "OLD");
    CHECK_OK(kw_rename_file(from, to, &err), errp);
    CHECK(!kw_path_exists(from) && kw_path_exists(to));
    CHECK_OK(kw_remove_file(to, &err), errp);
    CHECK(!kw_path_exists(to));
    CHECK_OK(kw_remove_file(to, &err), errp); /* missing: not an error */
    CHECK_EQ_U64(kw_rename_file(from, to, &err), KIWI_IO_ERROR);
    CHECK(err != NULL && strstr(err, from) != NULL && strstr(err, to) != NULL);

    /* mkdir_p through a regular file fails and names it. */
    char *file = kw_join_path(nested, "000010.sst");
    char *under = kw_join_path(file, "x");
    CHECK(kw_mkdir_p(under, &err) != KIWI_OK);
    CHECK(err != NULL && strstr(err, file) != NULL);
    CHECK(!kw_is_directory(file) && kw_path_exists(file));
    CHECK_EQ_U64(kw_list_dir(under, &names, &count, &err), KIWI_IO_ERROR);
    CHECK(err != NULL && strstr(err, under) != NULL);
    free(err);
    free(from);
    free(to);
    free(file);
    free(under);
    free(nested);
    ctest_rmtree(dir);
}

static void test_errors_name_the_path(void)
{
    char *dir = ctest_tmpdir("env");
    char *path = kw_join_path(dir, "no/such/dir/000001.log");
    char *err = NULL;
    kw_file *f = (kw_file *)1;
    CHECK_EQ_U64(kw_file_create(path, &f, &err), KIWI_IO_ERROR);
    CHECK(f == NULL);
    CHECK(err != NULL && strncmp(err, "io error: open ", 15) == 0);
    CHECK(err != NULL && strstr(err, path) != NULL && strstr(err, strerror(ENOENT)) != NULL);
    CHECK_EQ_U64(kw_file_open_append(path, &f, &err), KIWI_IO_ERROR);
    CHECK(err != NULL && strstr(err, path) != NULL);
    char *data = NULL;
    size_t len = 0;
    CHECK_EQ_U64(kw_read_file(path, &data, &len, &err), KIWI_IO_ERROR);
    CHECK(data == NULL && err != NULL && strstr(err, path) != NULL);
    uint64_t size = 0;
    CHECK_EQ_U64(kw_file_size_of(path, &size, &err), KIWI_IO_ERROR);
    CHECK(err != NULL && strncmp(err, "io error: stat ", 15) == 0);
    CHECK_EQ_U64(kw_truncate_file(path, 0, &err), KIWI_IO_ERROR);
    /* errmsg may be NULL. */
    CHECK_EQ_U64(kw_file_create(path, &f, NULL), KIWI_IO_ERROR);
    free(err);
    free(path);
    ctest_rmtree(dir);
}

static void test_every_open_is_cloexec(void)
{
    char *dir = ctest_tmpdir("env");
    char *err = NULL;
    seen_opens = opens_without_cloexec = 0;
    kw_syscalls.open = open_spy;
    char *path = kw_join_path(dir, "f");
    kw_file *f = NULL;
    kiwi_status st = kw_file_create(path, &f, &err);
    if (st == KIWI_OK)
        kw_file_close(f, &err);
    kw_write_file_atomic(dir, "g", "x", 1, &err);
    kw_mmap m;
    kw_mmap_file(path, &m, &err);
    kw_munmap(&m);
    char *data = NULL;
    size_t len = 0;
    kw_read_file(path, &data, &len, &err);
    free(data);
    kw_truncate_file(path, 0, &err);
    kw_fsync_dir(dir, &err);
    kw_syscalls_reset();
    CHECK(seen_opens >= 6);
    CHECK_EQ_U64(opens_without_cloexec, 0);
    free(err);
    free(path);
    ctest_rmtree(dir);
}

static void test_paths_and_clock(void)
{
    char *p = kw_numbered_path("/d", 12, "sst");
    CHECK(strcmp(p, "/d/000012.sst") == 0);
    free(p);
    p = kw_numbered_path("db", 12345678, "log");
    CHECK(strcmp(p, "db/12345678.log") == 0);
    free(p);
    p = kw_join_path("/a/", "b");
    CHECK(strcmp(p, "/a/b") == 0);
    free(p);
    p = kw_join_path("/a", "b");
    CHECK(strcmp(p, "/a/b") == 0);
    free(p);
    uint64_t t0 = kw_now_micros();
    usleep(2000);
    uint64_t t1 = kw_now_micros();
    CHECK(t1 >= t0 + 1500 && t1 < t0 + 2000000);
}

static int fallocate_enospc(int fd, int mode, off_t off, off_t len)
{
    errno = ENOSPC;
    return -1;
}

/* kw_file_reserve sets the file's length without moving the append position; appends inside
 * the reserved space keep the length; kw_file_trim cuts it back to what was written. */
static void test_reserve_and_trim(void)
{
    char *dir = ctest_tmpdir("env");
    char *path = kw_join_path(dir, "000009.log");
    kw_file *f;
    char *err = NULL, **errp = &err;
    uint64_t len = 0;
    CHECK_OK(kw_file_create(path, &f, &err), errp);
    CHECK_OK(kw_file_append(f, "abc", 3, &err), errp);
    CHECK_OK(kw_file_reserve(f, 8192, &err), errp);
    CHECK_EQ_U64(kw_file_size(f), 3);
    CHECK_EQ_U64(kw_file_allocated(f), 8192);
    CHECK(kw_file_size_of(path, &len, NULL) == KIWI_OK && len == 8192);
    CHECK_OK(kw_file_reserve(f, 100, &err), errp); /* already there: nothing to do */
    CHECK_OK(kw_file_appendv(f, (kw_slice[]){{"de", 2}, {"f", 1}}, 2, &err), errp);
    CHECK_OK(kw_file_sync(f, &err), errp);
    CHECK(kw_file_size(f) == 6 && kw_file_allocated(f) == 8192);
    char *data = NULL;
    size_t n = 0;
    CHECK_OK(kw_read_file(path, &data, &n, &err), errp);
    CHECK(n == 8192 && memcmp(data, "abcdef", 6) == 0 && data[6] == 0 && data[8191] == 0);
    free(data);
    /* a failure is reported with the path and leaves the file as it was */
    kw_syscalls.fallocate = fallocate_enospc;
    CHECK(kw_file_reserve(f, 1 << 20, &err) == KIWI_NO_SPACE);
    kw_syscalls_reset();
    CHECK(err != NULL && strstr(err, "fallocate") != NULL && strstr(err, path) != NULL);
    CHECK_EQ_U64(kw_file_allocated(f), 8192);
    CHECK_OK(kw_file_trim(f, &err), errp);
    CHECK(kw_file_allocated(f) == 6 && file_equals(path, "abcdef", 6));
    CHECK_OK(kw_file_append(f, "g", 1, &err), errp); /* appends go on where they were */
    CHECK_OK(kw_file_close(f, &err), errp);
    CHECK(file_equals(path, "abcdefg", 7));
    /* a file opened for appending at its end is never extended (its writes go to the end) */
    CHECK_OK(kw_file_open_append(path, &f, &err), errp);
    CHECK_OK(kw_file_reserve(f, 8192, &err), errp);
    CHECK(kw_file_allocated(f) == 7 && kw_file_size_of(path, &len, NULL) == KIWI_OK && len == 7);
    CHECK_OK(kw_file_close(f, &err), errp);
    kiwi_free(err);
    free(path);
    ctest_rmtree(dir);
}

int main(void)
{
    RUN(test_append_appendv_sync_size);
    RUN(test_appendv_many_parts);
    RUN(test_short_and_interrupted_writes);
    RUN(test_enospc_is_no_space);
    RUN(test_fsync_failure_names_path);
    RUN(test_atomic_write);
    RUN(test_mmap);
    RUN(test_read_and_truncate);
    RUN(test_directories_and_names);
    RUN(test_errors_name_the_path);
    RUN(test_every_open_is_cloexec);
    RUN(test_paths_and_clock);
    RUN(test_reserve_and_trim);
    return ctest_summary();
}
