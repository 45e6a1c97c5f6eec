/*
 * env.c: the file-system layer: appendable files, read-only mappings, whole-file reads and
 * durable replaces, directories and names, the monotonic clock.
 *
 * Every system call that touches a file goes through the kw_syscalls table, the one seam where
 * tests inject faults (ENOSPC, EIO, short writes). Errors are born in io_error(), which names the
 * operation and the path: "io error: fsync /d/000005.log: Input/output error"; ENOSPC and EDQUOT
 * become KIWI_NO_SPACE. EINTR is retried everywhere except close(2) (Linux has already released
 * the descriptor). Every descriptor is opened with O_CLOEXEC.
 */
#include "env.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
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
        .fstat = fstat, .mkdir = mkdir, .fallocate = fallocate,                                   \
    }

static const kw_syscall_table default_syscalls = KW_DEFAULT_SYSCALLS;
kw_syscall_table kw_syscalls = KW_DEFAULT_SYSCALLS;

void kw_syscalls_reset(void)
{
    kw_syscalls = default_syscalls;
}

/* ---- errors ---- */

static kiwi_status io_error(char **errmsg, const char *op, const char *path, int err)
{
    char buf[128];
    const char *text = strerror_r(err, buf, sizeof buf); /* GNU variant: returns the text */
    return kw_error(errmsg, kw_status_from_errno(err), "%s %s: %s", op, path, text);
}

/* open(2) with O_CLOEXEC, retrying EINTR; returns the fd or -1 with errno set. */
static int open_retry(const char *path, int flags, mode_t mode)
{
    int fd;
    do {
        fd = kw_syscalls.open(path, flags | O_CLOEXEC, mode);
    } while (fd < 0 && errno == EINTR);
    return fd;
}

/* Runs an fd operation (fsync, fdatasync) retrying EINTR; returns 0 or errno. */
static int retry_fd_op(int (*op)(int), int fd)
{
    while (op(fd) != 0) {
        if (errno != EINTR)
            return errno;
    }
    return 0;
}

/* Writes all n bytes at fd's position, continuing short writes. */
static kiwi_status write_all(int fd, const char *path, const void *data, size_t n, char **errmsg)
{
    const char *p = data;
    while (n > 0) {
        ssize_t r = kw_syscalls.write(fd, p, n);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return io_error(errmsg, "write", path, errno);
        }
        if (r == 0)
            return io_error(errmsg, "write", path, EIO); /* no progress: do not spin */
        p += r;
        n -= (size_t)r;
    }
    return KIWI_OK;
}

/* ---- appendable files ---- */

struct kw_file {
    int fd;
    char *path;
    uint64_t size;  /* the file's size when opened plus every byte appended since */
    uint64_t alloc; /* the file's length: size, or more after kw_file_reserve */
    bool append;    /* opened O_APPEND: writes go to the end, so never reserve */
    bool mapped;    /* kw_file_create_mapped: appends are copied into a shared mapping */
    char *map;      /* the mapping of [map_base, map_end), or NULL */
    uint64_t map_base, map_end;
};

/* Counts n appended bytes; the file's length follows once they pass what was reserved. */
static void grew(kw_file *f, uint64_t n)
{
    f->size += n;
    if (f->size > f->alloc)
        f->alloc = f->size;
}

static kiwi_status file_open(const char *path, int flags, kw_file **out, char **errmsg)
{
    *out = NULL;
    int fd = open_retry(path, flags, 0644);
    if (fd < 0)
        return io_error(errmsg, "open", path, errno);
    struct stat st;
    if (kw_syscalls.fstat(fd, &st) != 0) {
        int e = errno;
        kw_syscalls.close(fd);
        return io_error(errmsg, "fstat", path, e);
    }
    kw_file *f = kw_malloc(sizeof *f);
    f->fd = fd;
    f->path = kw_strdup(path);
    f->size = (uint64_t)st.st_size;
    f->alloc = f->size;
    f->append = (flags & O_APPEND) != 0;
    f->mapped = false;
    f->map = NULL;
    f->map_base = f->map_end = 0;
    *out = f;
    return KIWI_OK;
}

kiwi_status kw_file_create(const char *path, kw_file **out, char **errmsg)
{
    return file_open(path, O_WRONLY | O_CREAT | O_TRUNC, out, errmsg);
}

kiwi_status kw_file_open_append(const char *path, kw_file **out, char **errmsg)
{
    return file_open(path, O_WRONLY | O_APPEND, out, errmsg);
}

static size_t page_size(void);

static void unmap_window(kw_file *f)
{
    if (f->map != NULL)
        kw_syscalls.munmap(f->map, (size_t)(f->map_end - f->map_base));
    f->map = NULL;
    f->map_base = f->map_end = 0;
}

/* Maps [size rounded down to a page, alloc): the window the next appends are copied into. */
static kiwi_status map_window(kw_file *f, char **errmsg)
{
    unmap_window(f);
    uint64_t base = f->size & ~(uint64_t)(page_size() - 1);
    if (f->alloc <= base)
        return KIWI_OK;
    void *p = kw_syscalls.mmap(NULL, (size_t)(f->alloc - base), PROT_READ | PROT_WRITE,
                               MAP_SHARED, f->fd, (off_t)base);
    if (p == MAP_FAILED)
        return io_error(errmsg, "mmap", f->path, errno);
    f->map = p;
    f->map_base = base;
    f->map_end = f->alloc;
    return KIWI_OK;
}

/* Room in the mapping for n more bytes at size: reserves (fallocate) and maps more if needed. */
static kiwi_status mapped_room(kw_file *f, uint64_t n, char **errmsg)
{
    if (f->map != NULL && f->size + n <= f->map_end)
        return KIWI_OK;
    kiwi_status st = kw_file_reserve(f, f->size + n, errmsg);
    if (st == KIWI_OK && (f->map == NULL || f->size + n > f->map_end))
        st = map_window(f, errmsg);
    return st;
}

kiwi_status kw_file_create_mapped(const char *path, uint64_t first, kw_file **out, char **errmsg)
{
    kiwi_status st = file_open(path, O_RDWR | O_CREAT | O_TRUNC, out, errmsg);
    if (st != KIWI_OK)
        return st;
    kw_file *f = *out;
    int r;
    do {
        r = kw_syscalls.fallocate(f->fd, 0, 0, (off_t)first);
    } while (r != 0 && errno == EINTR);
    if (r != 0 && (errno == EOPNOTSUPP || errno == ENOSYS))
        return KIWI_OK; /* no preallocation here: a plain file appended with write(2) */
    if (r != 0) {
        st = io_error(errmsg, "fallocate", path, errno);
    } else {
        f->alloc = first;
        f->mapped = true;
        st = map_window(f, errmsg);
    }
    if (st != KIWI_OK) {
        kw_file_close(f, NULL);
        *out = NULL;
    }
    return st;
}

bool kw_file_is_mapped(const kw_file *f)
{
    return f->mapped;
}

static kiwi_status mapped_appendv(kw_file *f, const kw_slice *parts, size_t count, char **errmsg)
{
    uint64_t n = 0;
    for (size_t i = 0; i < count; i++)
        n += parts[i].size;
    kiwi_status st = mapped_room(f, n, errmsg);
    if (st != KIWI_OK)
        return st;
    char *dst = f->map + (f->size - f->map_base);
    for (size_t i = 0; i < count; i++) {
        if (parts[i].size > 0)
            memcpy(dst, parts[i].data, parts[i].size);
        dst += parts[i].size;
    }
    f->size += n;
    return KIWI_OK;
}

kiwi_status kw_file_append(kw_file *f, const void *data, size_t n, char **errmsg)
{
    if (f->mapped) {
        kw_slice part = kw_slice_make((const char *)data, n);
        return mapped_appendv(f, &part, 1, errmsg);
    }
    kiwi_status st = write_all(f->fd, f->path, data, n, errmsg);
    if (st == KIWI_OK)
        grew(f, n);
    return st;
}

/* Drops `done` bytes from the front of iov[0..*count), advancing past finished buffers. */
static struct iovec *iov_advance(struct iovec *iov, int *count, size_t done)
{
    while (*count > 0 && done >= iov->iov_len) {
        done -= iov->iov_len;
        iov++;
        (*count)--;
    }
    if (*count > 0) {
        iov->iov_base = (char *)iov->iov_base + done;
        iov->iov_len -= done;
    }
    return iov;
}

/* One batch of at most IOV_MAX buffers; continues short writes with further writev calls. */
static kiwi_status writev_all(kw_file *f, struct iovec *iov, int count, char **errmsg)
{
    while (count > 0) {
        ssize_t r = kw_syscalls.writev(f->fd, iov, count);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return io_error(errmsg, "write", f->path, errno);
        }
        size_t want = 0;
        for (int i = 0; i < count; i++)
            want += iov[i].iov_len;
        if (r == 0 && want > 0)
            return io_error(errmsg, "write", f->path, EIO);
        grew(f, (uint64_t)r);
        iov = iov_advance(iov, &count, (size_t)r);
    }
    return KIWI_OK;
}

kiwi_status kw_file_appendv(kw_file *f, const kw_slice *parts, size_t count, char **errmsg)
{
    if (f->mapped)
        return mapped_appendv(f, parts, count, errmsg);
    enum { STACK_IOV = 64 };
    struct iovec stack_iov[STACK_IOV];
    size_t batch_max = count < IOV_MAX ? count : IOV_MAX;
    struct iovec *iov = batch_max <= STACK_IOV ? stack_iov : kw_malloc(batch_max * sizeof *iov);
    kiwi_status st = KIWI_OK;
    for (size_t start = 0; start < count && st == KIWI_OK; start += batch_max) {
        size_t n = count - start < batch_max ? count - start : batch_max;
        for (size_t i = 0; i < n; i++) {
            iov[i].iov_base = (void *)parts[start + i].data;
            iov[i].iov_len = parts[start + i].size;
        }
        st = writev_all(f, iov, (int)n, errmsg);
    }
    if (iov != stack_iov)
        free(iov);
    return st;
}

kiwi_status kw_file_sync(kw_file *f, char **errmsg)
{
    int e = retry_fd_op(kw_syscalls.fdatasync, f->fd);
    return e ? io_error(errmsg, "fdatasync", f->path, e) : KIWI_OK;
}

uint64_t kw_file_size(const kw_file *f)
{
    return f->size;
}

const char *kw_file_path(const kw_file *f)
{
    return f->path;
}

kiwi_status kw_file_reserve(kw_file *f, uint64_t end, char **errmsg)
{
    if (end <= f->alloc || f->append)
        return KIWI_OK;
    int r;
    do {
        r = kw_syscalls.fallocate(f->fd, 0, (off_t)f->alloc, (off_t)(end - f->alloc));
    } while (r != 0 && errno == EINTR);
    if (r != 0)
        return io_error(errmsg, "fallocate", f->path, errno);
    f->alloc = end;
    return KIWI_OK;
}

uint64_t kw_file_allocated(const kw_file *f)
{
    return f->alloc;
}

kiwi_status kw_file_trim(kw_file *f, char **errmsg)
{
    unmap_window(f); /* nothing may touch the pages the truncation removes */
    if (f->alloc == f->size)
        return KIWI_OK;
    int r;
    do {
        r = kw_syscalls.ftruncate(f->fd, (off_t)f->size);
    } while (r != 0 && errno == EINTR);
    if (r != 0)
        return io_error(errmsg, "ftruncate", f->path, errno);
    f->alloc = f->size;
    return KIWI_OK;
}

kiwi_status kw_file_close(kw_file *f, char **errmsg)
{
    if (f == NULL)
        return KIWI_OK;
    kiwi_status st = KIWI_OK;
    unmap_window(f);
    if (kw_syscalls.close(f->fd) != 0 && errno != EINTR)
        st = io_error(errmsg, "close", f->path, errno);
    free(f->path);
    free(f);
    return st;
}

/* ---- read-only mappings ---- */

kiwi_status kw_mmap_file(const char *path, kw_mmap *out, char **errmsg)
{
    out->data = NULL;
    out->size = 0;
    int fd = open_retry(path, O_RDONLY, 0);
    if (fd < 0)
        return io_error(errmsg, "open", path, errno);
    kiwi_status st = KIWI_OK;
    struct stat sb;
    if (kw_syscalls.fstat(fd, &sb) != 0) {
        st = io_error(errmsg, "fstat", path, errno);
    } else if ((uint64_t)sb.st_size > SIZE_MAX) {
        st = io_error(errmsg, "mmap", path, EFBIG);
    } else if (sb.st_size > 0) {
        size_t size = (size_t)sb.st_size;
        void *p = kw_syscalls.mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) {
            st = io_error(errmsg, "mmap", path, errno);
        } else {
            out->data = p;
            out->size = size;
        }
    }
    kw_syscalls.close(fd); /* the mapping outlives the descriptor */
    return st;
}

static size_t page_size(void)
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
    size_t page = page_size();
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
    int fd = open_retry(path, O_RDONLY, 0);
    if (fd < 0)
        return io_error(errmsg, "open", path, errno);
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
            return io_error(errmsg, "read", path, e);
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
    int fd = open_retry(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return io_error(errmsg, "open", path, errno);
    kiwi_status st = write_all(fd, path, data, len, errmsg);
    if (st == KIWI_OK) {
        int e = retry_fd_op(kw_syscalls.fsync, fd);
        if (e)
            st = io_error(errmsg, "fsync", path, e);
    }
    if (kw_syscalls.close(fd) != 0 && errno != EINTR && st == KIWI_OK)
        st = io_error(errmsg, "close", path, errno);
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
        st = io_error(errmsg, "rename", tmp, errno);
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
    int fd = open_retry(path, O_WRONLY, 0);
    if (fd < 0)
        return io_error(errmsg, "open", path, errno);
    kiwi_status st = KIWI_OK;
    int r;
    do {
        r = kw_syscalls.ftruncate(fd, (off_t)len);
    } while (r != 0 && errno == EINTR);
    if (r != 0) {
        st = io_error(errmsg, "ftruncate", path, errno);
    } else {
        int e = retry_fd_op(kw_syscalls.fsync, fd);
        if (e)
            st = io_error(errmsg, "fsync", path, e);
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
            st = io_error(errmsg, "mkdir", p, errno);
        else if (!kw_is_directory(p))
            st = io_error(errmsg, "mkdir", p, ENOTDIR);
        p[i] = saved;
    }
    free(p);
    return st;
}

kiwi_status kw_fsync_dir(const char *dir, char **errmsg)
{
    int fd = open_retry(dir, O_RDONLY | O_DIRECTORY, 0);
    if (fd < 0)
        return io_error(errmsg, "open", dir, errno);
    int e = retry_fd_op(kw_syscalls.fsync, fd);
    kw_syscalls.close(fd);
    /* EINVAL: the file system cannot sync directories; there is nothing more to do. */
    return e && e != EINVAL ? io_error(errmsg, "fsync", dir, e) : KIWI_OK;
}

kiwi_status kw_remove_file(const char *path, char **errmsg)
{
    if (kw_syscalls.unlink(path) != 0 && errno != ENOENT)
        return io_error(errmsg, "unlink", path, errno);
    return KIWI_OK;
}

kiwi_status kw_rename_file(const char *from, const char *to, char **errmsg)
{
    if (kw_syscalls.rename(from, to) != 0) {
        int e = errno;
        char both[8192];
        snprintf(both, sizeof both, "%s -> %s", from, to);
        return io_error(errmsg, "rename", both, e);
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
        return io_error(errmsg, "opendir", dir, errno);
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
        return io_error(errmsg, "readdir", dir, err);
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
        return io_error(errmsg, "stat", path, errno);
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
