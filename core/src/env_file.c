/*
 * env_file.c: appendable files (kw_file of env.h): the WAL, the manifest and SSTables being
 * built. Plain files append with write(2)/writev(2) at their end; a file made by
 * kw_file_create_mapped copies its appends into a shared writable mapping of space preallocated
 * with fallocate, a window at a time, its pages faulted in 64 KiB ahead of the copies
 * (docs/internals/wal.md, "Mapped appends"), except appends about to be synced, which it writes
 * with pwritev(2). Preallocation (kw_file_reserve) and its
 * give-back (kw_file_trim) serve both. Before an fdatasync, zeros may be written a little past
 * the end into preallocated space (kw_file_zero_ahead), so that later synced appends overwrite
 * written blocks instead of converting fallocate's unwritten extents, which costs their
 * fdatasync a journal commit (docs/internals/wal.md, "Zeroing ahead").
 */
#include "env.h"
#include "env_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

struct kw_file {
    int fd;
    char *path;
    uint64_t size;  /* the file's size when opened plus every byte appended since */
    uint64_t alloc; /* the file's length: size, or more after kw_file_reserve */
    uint64_t zeroed; /* [size, zeroed) holds zeros kw_file_zero_ahead wrote (<= size: none) */
    bool no_zeroing; /* a zeroing write failed: the file stops zeroing ahead */
    bool append;    /* opened O_APPEND: writes go to the end, so never reserve */
    bool mapped;    /* kw_file_create_mapped: appends are copied into a shared mapping */
    char *map;      /* the mapping of [map_base, map_end), or NULL */
    uint64_t map_base, map_end;
    uint64_t populated; /* [map_base, populated) is faulted in, writable (populate_through) */
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
    int fd = kw_env_open_retry(path, flags, 0644);
    if (fd < 0)
        return kw_env_io_error(errmsg, "open", path, errno);
    struct stat st;
    if (kw_syscalls.fstat(fd, &st) != 0) {
        int e = errno;
        kw_syscalls.close(fd);
        return kw_env_io_error(errmsg, "fstat", path, e);
    }
    kw_file *f = kw_malloc(sizeof *f);
    f->fd = fd;
    f->path = kw_strdup(path);
    f->size = (uint64_t)st.st_size;
    f->alloc = f->size;
    f->zeroed = f->size;
    f->no_zeroing = false;
    f->append = (flags & O_APPEND) != 0;
    f->mapped = false;
    f->map = NULL;
    f->map_base = f->map_end = f->populated = 0;
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

static void unmap_window(kw_file *f)
{
    if (f->map != NULL)
        kw_syscalls.munmap(f->map, (size_t)(f->map_end - f->map_base));
    f->map = NULL;
    f->map_base = f->map_end = f->populated = 0;
}

/* Maps [size rounded down to a page, alloc): the window the next appends are copied into. */
static kiwi_status map_window(kw_file *f, char **errmsg)
{
    unmap_window(f);
    uint64_t base = f->size & ~(uint64_t)(kw_env_page_size() - 1);
    if (f->alloc <= base)
        return KIWI_OK;
    void *p = kw_syscalls.mmap(NULL, (size_t)(f->alloc - base), PROT_READ | PROT_WRITE,
                               MAP_SHARED, f->fd, (off_t)base);
    if (p == MAP_FAILED)
        return kw_env_io_error(errmsg, "mmap", f->path, errno);
    f->map = p;
    f->map_base = base;
    f->map_end = f->alloc;
    f->populated = base;
    return KIWI_OK;
}

/* Appends copied into the mapping fault in each page they reach first: an exception, a page
 * allocated and zeroed, ext4's page_mkwrite; ~6 us of system time a 4 KiB page on this VM, a
 * fifth of a put in fillseq. So before a copy reaches past what is populated, the writer faults in
 * the pages from there to POPULATE_AHEAD past the copy's end (or the window's end) with one
 * madvise(MADV_POPULATE_WRITE). Only here: synced appends are written with pwritev and never
 * populate, so a log written only with sync has no dirty page past its end for its fdatasyncs
 * to write. A log's last chunk may be populated but never written: at most POPULATE_AHEAD of
 * zero pages, dirty until the log is trimmed or deleted (docs/internals/wal.md, "Populating
 * ahead"). Advice only: a kernel before 5.14 (EINVAL) or any other failure leaves the pages to
 * fault in one at a time, as before. */
#define POPULATE_AHEAD (64u * 1024u)

static void populate_through(kw_file *f, uint64_t end)
{
#ifdef MADV_POPULATE_WRITE
    if (end <= f->populated)
        return;
    uint64_t page = kw_env_page_size();
    uint64_t from = f->populated & ~(page - 1);
    uint64_t to = ((end + page - 1) & ~(page - 1)) + POPULATE_AHEAD;
    if (to > f->map_end)
        to = f->map_end;
    if (from < to)
        (void)madvise(f->map + (from - f->map_base), (size_t)(to - from), MADV_POPULATE_WRITE);
    f->populated = to;
#else
    (void)f;
    (void)end;
#endif
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
    kw_file *f = *out;
    if (st != KIWI_OK || f == NULL)
        return st;
    uint64_t page = kw_env_page_size(); /* the first window is whole pages */
    first = (first + page - 1) & ~(page - 1);
    int r;
    do {
        r = kw_syscalls.fallocate(f->fd, 0, 0, (off_t)first);
    } while (r != 0 && errno == EINTR);
    if (r != 0 && (errno == EOPNOTSUPP || errno == ENOSYS))
        return KIWI_OK; /* no preallocation here: a plain file appended with write(2) */
    if (r != 0) {
        st = kw_env_io_error(errmsg, "fallocate", path, errno);
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
    if (f->map == NULL) /* only n == 0 at a page boundary: nothing to copy */
        return KIWI_OK;
    populate_through(f, f->size + n);
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
    kiwi_status st = kw_env_write_all(f->fd, f->path, data, n, errmsg);
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

/* One batch of at most IOV_MAX buffers; continues short writes with further calls: writev at
 * the descriptor's offset, or with `positioned` pwritev at the file's size (a mapped file's
 * descriptor offset does not follow its appends). */
static kiwi_status writev_all(kw_file *f, struct iovec *iov, int count, bool positioned,
                              char **errmsg)
{
    while (count > 0) {
        ssize_t r = positioned ? kw_syscalls.pwritev(f->fd, iov, count, (off_t)f->size)
                               : kw_syscalls.writev(f->fd, iov, count);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return kw_env_io_error(errmsg, "write", f->path, errno);
        }
        size_t want = 0;
        for (int i = 0; i < count; i++)
            want += iov[i].iov_len;
        if (r == 0 && want > 0)
            return kw_env_io_error(errmsg, "write", f->path, EIO);
        grew(f, (uint64_t)r);
        iov = iov_advance(iov, &count, (size_t)r);
    }
    return KIWI_OK;
}

static kiwi_status appendv_syscalls(kw_file *f, const kw_slice *parts, size_t count,
                                    bool positioned, char **errmsg)
{
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
        st = writev_all(f, iov, (int)n, positioned, errmsg);
    }
    if (iov != stack_iov)
        free(iov);
    return st;
}

kiwi_status kw_file_appendv(kw_file *f, const kw_slice *parts, size_t count, char **errmsg)
{
    if (f->mapped)
        return mapped_appendv(f, parts, count, errmsg);
    return appendv_syscalls(f, parts, count, false, errmsg);
}

/* Zeroing ahead (kw_file_zero_ahead): when fewer than ZERO_AHEAD / 2 written bytes remain past
 * the end, zeros are written up to ZERO_AHEAD past the end's page (or to the file's length, if
 * nearer). A block of a fallocated file stays "unwritten" until data is written into it, and the
 * fdatasync after that first write must commit the extent's conversion through the journal:
 * measured here, a synced append crossing into a new block took ~2.5 times as long. Zeroing
 * 64 KiB ahead gathers those conversions into one fdatasync per 32-64 KiB of log. */
#define ZERO_AHEAD (64u * 1024u)
#define ZERO_PAGE 4096u

void kw_file_zero_ahead(kw_file *f)
{
    if (f->no_zeroing || f->append || f->zeroed >= f->size + ZERO_AHEAD / 2 ||
        f->alloc <= f->size)
        return;
    static const char zeros[ZERO_AHEAD + ZERO_PAGE]; /* the longest run: bss, never written */
    uint64_t from = f->zeroed > f->size ? f->zeroed : f->size;
    uint64_t to = (f->size + ZERO_PAGE - 1) / ZERO_PAGE * ZERO_PAGE + ZERO_AHEAD;
    if (to > f->alloc)
        to = f->alloc;
    while (from < to) {
        struct iovec iov = {(void *)zeros, (size_t)(to - from)};
        ssize_t r = kw_syscalls.pwritev(f->fd, &iov, 1, (off_t)from);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) { /* best effort: a real I/O error shows at the fdatasync */
            f->no_zeroing = true;
            return;
        }
        from += (uint64_t)r;
        f->zeroed = from;
    }
}

kiwi_status kw_file_appendv_synced(kw_file *f, const kw_slice *parts, size_t count,
                                   char **errmsg)
{
    return appendv_syscalls(f, parts, count, f->mapped, errmsg);
}

kiwi_status kw_file_sync(kw_file *f, char **errmsg)
{
    int e = kw_env_retry_fd_op(kw_syscalls.fdatasync, f->fd);
    return e ? kw_env_io_error(errmsg, "fdatasync", f->path, e) : KIWI_OK;
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
        return kw_env_io_error(errmsg, "fallocate", f->path, errno);
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
        return kw_env_io_error(errmsg, "ftruncate", f->path, errno);
    f->alloc = f->size;
    f->zeroed = f->size;
    return KIWI_OK;
}

kiwi_status kw_file_close(kw_file *f, char **errmsg)
{
    if (f == NULL)
        return KIWI_OK;
    kiwi_status st = KIWI_OK;
    unmap_window(f);
    if (kw_syscalls.close(f->fd) != 0 && errno != EINTR)
        st = kw_env_io_error(errmsg, "close", f->path, errno);
    free(f->path);
    free(f);
    return st;
}
