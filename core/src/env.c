/*
 * env.c: the file-system layer: the syscall table and errors, read-only mappings, whole-file
 * reads and durable replaces, directories and names, the monotonic clock. Appendable files
 * (written with write(2) or through a mapping) are in env_file.c.
 *
 * Every system call that touches a file goes through the kw_syscalls table, the one seam where
 * tests inject faults (ENOSPC, EIO, short writes); so does a sync writer's sched_yield, so that
 * a test can make a yield as slow as on a contended CPU. Errors are born in kw_env_io_error(),
 * which names the operation and the path: "io error: fsync /d/000005.log: Input/output error";
 * ENOSPC and EDQUOT become KIWI_NO_SPACE. EINTR is retried everywhere except close(2) (Linux has
 * already released the descriptor). Every descriptor is opened with O_CLOEXEC.
 */
#include "env.h"
#include "env_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/* ---- the syscall table ---- */

/* open(2) is variadic, so it needs a wrapper with the table's fixed signature. */
static int sys_open(const char *path, int flags, mode_t mode)
{
    return open(path, flags, mode);
}

/* Spelled out once as a macro because C wants a constant initializer for both tables. */
#define KW_DEFAULT_SYSCALLS                                                                       \
    {                                                                                             \
        .open = sys_open, .close = close, .write = write, .pread = pread,                         \
        .fdatasync = fdatasync, .fsync = fsync, .rename = rename, .unlink = unlink,               \
        .ftruncate = ftruncate, .mmap = mmap, .writev = writev, .munmap = munmap,                 \
        .fstat = fstat, .mkdir = mkdir, .fallocate = fallocate, .pwritev = pwritev,               \
        .sched_yield = sched_yield,                                                               \
    }

static const kw_syscall_table default_syscalls = KW_DEFAULT_SYSCALLS;
kw_syscall_table kw_syscalls = KW_DEFAULT_SYSCALLS;

void kw_syscalls_reset(void)
{
    kw_syscalls = default_syscalls;
}

/* ---- errors ---- */

kiwi_status kw_env_io_error(char **errmsg, const char *op, const char *path, int err)
{
    char buf[128];
    const char *text = strerror_r(err, buf, sizeof buf); /* GNU variant: returns the text */
    return kw_error(errmsg, kw_status_from_errno(err), "%s %s: %s", op, path, text);
}

/* open(2) with O_CLOEXEC, retrying EINTR; returns the fd or -1 with errno set. */
int kw_env_open_retry(const char *path, int flags, mode_t mode)
{
    int fd;
    do {
        fd = kw_syscalls.open(path, flags | O_CLOEXEC, mode);
    } while (fd < 0 && errno == EINTR);
    return fd;
}

/* Runs an fd operation (fsync, fdatasync) retrying EINTR; returns 0 or errno. */
int kw_env_retry_fd_op(int (*op)(int), int fd)
{
    while (op(fd) != 0) {
        if (errno != EINTR)
            return errno;
    }
    return 0;
}

/* Writes all n bytes at fd's position, continuing short writes. */
kiwi_status kw_env_write_all(int fd, const char *path, const void *data, size_t n, char **errmsg)
{
    const char *p = data;
    while (n > 0) {
        ssize_t r = kw_syscalls.write(fd, p, n);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return kw_env_io_error(errmsg, "write", path, errno);
        }
        if (r == 0)
            return kw_env_io_error(errmsg, "write", path, EIO); /* no progress: do not spin */
        p += r;
        n -= (size_t)r;
    }
    return KIWI_OK;
}

/* ---- read-only mappings ---- */

kiwi_status kw_mmap_file(const char *path, kw_mmap *out, char **errmsg)
{
    out->data = NULL;
    out->size = 0;
    int fd = kw_env_open_retry(path, O_RDONLY, 0);
    if (fd < 0)
        return kw_env_io_error(errmsg, "open", path, errno);
    kiwi_status st = KIWI_OK;
    struct stat sb;
    if (kw_syscalls.fstat(fd, &sb) != 0) {
        st = kw_env_io_error(errmsg, "fstat", path, errno);
    } else if ((uint64_t)sb.st_size > SIZE_MAX) {
        st = kw_env_io_error(errmsg, "mmap", path, EFBIG);
    } else if (sb.st_size > 0) {
        size_t size = (size_t)sb.st_size;
        void *p = kw_syscalls.mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) {
            st = kw_env_io_error(errmsg, "mmap", path, errno);
        } else {
            out->data = p;
            out->size = size;
        }
    }
    kw_syscalls.close(fd); /* the mapping outlives the descriptor */
    return st;
}

size_t kw_env_page_size(void)
{
    static size_t cached; /* atomic: every thread that races here stores the same value */
    size_t p = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (p == 0) {
        p = (size_t)sysconf(_SC_PAGESIZE);
        __atomic_store_n(&cached, p, __ATOMIC_RELAXED);
    }
    return p;
}

bool kw_mmap_resident(const kw_mmap *m, uint64_t off, uint64_t len)
{
    size_t page = kw_env_page_size();
    if (m->data == NULL || off > m->size || len > m->size - off || len > KW_MMAP_RESIDENT_MAX)
        return false;
    const char *first = m->data + off;
    size_t misalign = (uintptr_t)first & (page - 1); /* the mapping itself is page aligned */
    size_t span = misalign + (len > 0 ? len : 1);
    unsigned char vec[KW_MMAP_RESIDENT_MAX / 4096 + 2];
    size_t pages = (span + page - 1) / page;
    if (pages > sizeof vec || mincore((void *)(first - misalign), span, vec) != 0)
        return false;
    for (size_t i = 0; i < pages; i++)
        if (!(vec[i] & 1))
            return false;
    return true;
}

void kw_munmap(kw_mmap *m)
{
    if (m->data != NULL)
        kw_syscalls.munmap((void *)m->data, m->size);
    m->data = NULL;
    m->size = 0;
}

/* ---- whole files ---- */

kiwi_status kw_read_file(const char *path, char **data, size_t *len, char **errmsg)
{
    *data = NULL;
    *len = 0;
    int fd = kw_env_open_retry(path, O_RDONLY, 0);
    if (fd < 0)
        return kw_env_io_error(errmsg, "open", path, errno);
    struct stat sb;
    size_t cap = 4096;
    if (kw_syscalls.fstat(fd, &sb) == 0 && sb.st_size > 0 && (uint64_t)sb.st_size < SIZE_MAX)
        cap = (size_t)sb.st_size + 1; /* +1 so EOF is seen without growing */
    char *buf = kw_malloc(cap + 1);
    size_t n = 0;
    for (;;) {
        if (n == cap) {
            cap *= 2;
            buf = kw_realloc(buf, cap + 1);
        }
        ssize_t r = kw_syscalls.pread(fd, buf + n, cap - n, (off_t)n);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            free(buf);
            kw_syscalls.close(fd);
            return kw_env_io_error(errmsg, "read", path, e);
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    kw_syscalls.close(fd);
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return KIWI_OK;
}

/* Writes path from scratch and fsyncs it. */
static kiwi_status write_and_sync(const char *path, const void *data, size_t len, char **errmsg)
{
    int fd = kw_env_open_retry(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return kw_env_io_error(errmsg, "open", path, errno);
    kiwi_status st = kw_env_write_all(fd, path, data, len, errmsg);
    if (st == KIWI_OK) {
        int e = kw_env_retry_fd_op(kw_syscalls.fsync, fd);
        if (e)
            st = kw_env_io_error(errmsg, "fsync", path, e);
    }
    if (kw_syscalls.close(fd) != 0 && errno != EINTR && st == KIWI_OK)
        st = kw_env_io_error(errmsg, "close", path, errno);
    return st;
}

kiwi_status kw_write_file_atomic(const char *dir, const char *name, const void *data, size_t len,
                                 char **errmsg)
{
    char *path = kw_join_path(dir, name);
    size_t tlen = strlen(path) + sizeof ".tmp";
    char *tmp = kw_malloc(tlen);
    snprintf(tmp, tlen, "%s.tmp", path);
    kiwi_status st = write_and_sync(tmp, data, len, errmsg);
    if (st == KIWI_OK && kw_syscalls.rename(tmp, path) != 0)
        st = kw_env_io_error(errmsg, "rename", tmp, errno);
    if (st != KIWI_OK)
        kw_syscalls.unlink(tmp); /* best effort; the old file is untouched */
    else
        st = kw_fsync_dir(dir, errmsg); /* makes the rename itself durable */
    free(tmp);
    free(path);
    return st;
}

kiwi_status kw_truncate_file(const char *path, uint64_t len, char **errmsg)
{
    int fd = kw_env_open_retry(path, O_WRONLY, 0);
    if (fd < 0)
        return kw_env_io_error(errmsg, "open", path, errno);
    kiwi_status st = KIWI_OK;
    int r;
    do {
        r = kw_syscalls.ftruncate(fd, (off_t)len);
    } while (r != 0 && errno == EINTR);
    if (r != 0) {
        st = kw_env_io_error(errmsg, "ftruncate", path, errno);
    } else {
        int e = kw_env_retry_fd_op(kw_syscalls.fsync, fd);
        if (e)
            st = kw_env_io_error(errmsg, "fsync", path, e);
    }
    kw_syscalls.close(fd);
    return st;
}

/* ---- directories and names ---- */

kiwi_status kw_mkdir_p(const char *path, char **errmsg)
{
    char *p = kw_strdup(path);
    kiwi_status st = KIWI_OK;
    size_t n = strlen(p);
    /* Create each prefix ending before a '/', then the whole path. */
    for (size_t i = 1; i <= n && st == KIWI_OK; i++) {
        if (i < n && p[i] != '/')
            continue;
        char saved = p[i];
        p[i] = '\0';
        if (kw_syscalls.mkdir(p, 0755) != 0 && errno != EEXIST)
            st = kw_env_io_error(errmsg, "mkdir", p, errno);
        else if (!kw_is_directory(p))
            st = kw_env_io_error(errmsg, "mkdir", p, ENOTDIR);
        p[i] = saved;
    }
    free(p);
    return st;
}

kiwi_status kw_fsync_dir(const char *dir, char **errmsg)
{
    int fd = kw_env_open_retry(dir, O_RDONLY | O_DIRECTORY, 0);
    if (fd < 0)
        return kw_env_io_error(errmsg, "open", dir, errno);
    int e = kw_env_retry_fd_op(kw_syscalls.fsync, fd);
    kw_syscalls.close(fd);
    /* EINVAL: the file system cannot sync directories; there is nothing more to do. */
    return e && e != EINVAL ? kw_env_io_error(errmsg, "fsync", dir, e) : KIWI_OK;
}

kiwi_status kw_remove_file(const char *path, char **errmsg)
{
    if (kw_syscalls.unlink(path) != 0 && errno != ENOENT)
        return kw_env_io_error(errmsg, "unlink", path, errno);
    return KIWI_OK;
}

kiwi_status kw_rename_file(const char *from, const char *to, char **errmsg)
{
    if (kw_syscalls.rename(from, to) != 0) {
        int e = errno;
        char both[8192];
        snprintf(both, sizeof both, "%s -> %s", from, to);
        return kw_env_io_error(errmsg, "rename", both, e);
    }
    return KIWI_OK;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

kiwi_status kw_list_dir(const char *dir, char ***names, size_t *count, char **errmsg)
{
    *names = NULL;
    *count = 0;
    DIR *d = opendir(dir); /* glibc opens it O_CLOEXEC */
    if (d == NULL)
        return kw_env_io_error(errmsg, "opendir", dir, errno);
    char **v = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    errno = 0;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            v = kw_realloc(v, cap * sizeof *v);
        }
        v[n++] = kw_strdup(e->d_name);
    }
    int err = errno;
    closedir(d);
    if (err != 0) {
        kw_free_names(v, n);
        return kw_env_io_error(errmsg, "readdir", dir, err);
    }
    if (n > 1)
        qsort(v, n, sizeof *v, compare_names); /* sorted, so callers see a stable order */
    *names = v;
    *count = n;
    return KIWI_OK;
}

void kw_free_names(char **names, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free(names[i]);
    free(names);
}

bool kw_path_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

bool kw_is_directory(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

kiwi_status kw_file_size_of(const char *path, uint64_t *size, char **errmsg)
{
    struct stat sb;
    if (stat(path, &sb) != 0) {
        *size = 0;
        return kw_env_io_error(errmsg, "stat", path, errno);
    }
    *size = (uint64_t)sb.st_size;
    return KIWI_OK;
}

char *kw_numbered_path(const char *dir, uint64_t number, const char *suffix)
{
    int n = snprintf(NULL, 0, "%s/%06llu.%s", dir, (unsigned long long)number, suffix);
    char *p = kw_malloc((size_t)n + 1);
    snprintf(p, (size_t)n + 1, "%s/%06llu.%s", dir, (unsigned long long)number, suffix);
    return p;
}

char *kw_join_path(const char *dir, const char *name)
{
    size_t dl = strlen(dir);
    const char *sep = dl > 0 && dir[dl - 1] == '/' ? "" : "/";
    size_t n = dl + strlen(sep) + strlen(name) + 1;
    char *p = kw_malloc(n);
    snprintf(p, n, "%s%s%s", dir, sep, name);
    return p;
}

uint64_t kw_now_micros(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}
