/*
 * env.h: the file-system layer. Every byte the engine reads or writes on disk goes through here,
 * so a test build can inject faults (ENOSPC, EIO, short writes) at one place (issue: crash safety).
 *
 * Each function that touches the OS calls it through the `kw_syscalls` table below (SQLite's
 * aSyscall idea); tests may replace entries. Errors come back as kiwi_status + errmsg naming the
 * path and the failed operation with strerror, e.g. "io error: fsync /d/000005.log: Input/output
 * error"; ENOSPC/EDQUOT map to KIWI_NO_SPACE. EINTR is retried; short writes are continued.
 * All functions are thread-safe; a kw_file must be used by one thread at a time.
 */
#ifndef KW_ENV_H
#define KW_ENV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "common.h"

/* The overridable system calls (defaults are the libc functions). */
typedef struct {
    int (*open)(const char *path, int flags, mode_t mode);
    int (*close)(int fd);
    ssize_t (*write)(int fd, const void *buf, size_t n);
    ssize_t (*pread)(int fd, void *buf, size_t n, off_t off);
    int (*fdatasync)(int fd);
    int (*fsync)(int fd);
    int (*rename)(const char *from, const char *to);
    int (*unlink)(const char *path);
    int (*ftruncate)(int fd, off_t len);
    void *(*mmap)(void *addr, size_t len, int prot, int flags, int fd, off_t off);
    /* Added by the env layer (after the lead's entries, so existing initialisers still work): */
    ssize_t (*writev)(int fd, const struct iovec *iov, int iovcnt);
    int (*munmap)(void *addr, size_t len);
    int (*fstat)(int fd, struct stat *st);
    int (*mkdir)(const char *path, mode_t mode);
    int (*fallocate)(int fd, int mode, off_t off, off_t len); /* kw_file_reserve (mode 0) */
    ssize_t (*pwritev)(int fd, const struct iovec *iov, int iovcnt, off_t off); /* synced appends */
    int (*sched_yield)(void); /* a sync writer's yielding wait (db_group.c) */
} kw_syscall_table;
extern kw_syscall_table kw_syscalls;
/* Restores the libc defaults. */
void kw_syscalls_reset(void);

/* ---- appendable files (WAL, manifest, SSTable being built) ---- */
typedef struct kw_file kw_file;
/* Creates (truncating) a file for writing. */
kiwi_status kw_file_create(const char *path, kw_file **out, char **errmsg);
/* Creates (truncating) a file whose appends are copied into a shared writable mapping of it
 * instead of write(2): the bytes are in the page cache, the OS's, when the copy ends, as they
 * are after a write(2), with no system call. Space is preallocated (fallocate mode 0, `first`
 * bytes rounded up to whole pages now, more by kw_file_reserve or as appends need it) and
 * mapped a window at a time; an append that cannot get space fails (KIWI_NO_SPACE) with nothing
 * written. Where the file system cannot preallocate (EOPNOTSUPP) the file is a plain one
 * (kw_file_is_mapped false). */
kiwi_status kw_file_create_mapped(const char *path, uint64_t first, kw_file **out, char **errmsg);
bool kw_file_is_mapped(const kw_file *f);
/* Opens an existing file for appending at its end. */
kiwi_status kw_file_open_append(const char *path, kw_file **out, char **errmsg);
/* write(2) until all n bytes are written (one call in the common case). */
kiwi_status kw_file_append(kw_file *f, const void *data, size_t n, char **errmsg);
/* Like kw_file_append for several buffers, one writev(2) in the common case. */
kiwi_status kw_file_appendv(kw_file *f, const kw_slice *parts, size_t count, char **errmsg);
/* kw_file_appendv for bytes about to be fdatasynced: a mapped file gets them with pwritev(2) at
 * its end instead of copies into the mapping, so the mapping's page-table entries stay clean and
 * the fdatasync's writeback has none to write-protect (no TLB shootdown, no write fault on the
 * next copy; wal.md, "Synced appends"). The mapping sees the bytes: it shares the page cache. */
kiwi_status kw_file_appendv_synced(kw_file *f, const kw_slice *parts, size_t count,
                                   char **errmsg);
kiwi_status kw_file_sync(kw_file *f, char **errmsg); /* fdatasync */
uint64_t kw_file_size(const kw_file *f);              /* bytes written so far (+ initial size) */
const char *kw_file_path(const kw_file *f);
/* Preallocation (the WAL): kw_file_reserve makes the file at least `end` bytes long with
 * fallocate(2) mode 0 — blocks allocated, the file's length set, the new bytes reading as zeros —
 * so appends up to `end` change neither the length nor the allocation an fdatasync must commit.
 * The blocks stay "unwritten" until written, though, and the first fdatasync after a write into
 * one commits its conversion through the journal: kw_file_zero_ahead, called before an
 * fdatasync, writes zeros up to 64 KiB past the end when fewer than 32 KiB are written there, so
 * that most synced appends overwrite written blocks (best effort: a failed write only stops
 * it). Appends still go at kw_file_size, which does not move. A file opened with
 * kw_file_open_append is never extended (its appends go to the end). kw_file_allocated is the
 * file's length: kw_file_size or more. kw_file_trim gives back what was reserved and not written
 * (ftruncate to kw_file_size). */
kiwi_status kw_file_reserve(kw_file *f, uint64_t end, char **errmsg);
void kw_file_zero_ahead(kw_file *f);
uint64_t kw_file_allocated(const kw_file *f);
kiwi_status kw_file_trim(kw_file *f, char **errmsg);
/* Closes and frees f (always frees, even on error). */
kiwi_status kw_file_close(kw_file *f, char **errmsg);

/* ---- read-only mappings (SSTables) ----
 * Maps the whole file read-only and closes the descriptor at once (so thousands of tables do not
 * hold thousands of descriptors). An empty file gives data == NULL, size == 0. */
typedef struct {
    const char *data;
    size_t size;
} kw_mmap;
kiwi_status kw_mmap_file(const char *path, kw_mmap *out, char **errmsg);
void kw_munmap(kw_mmap *m);
/* Whether every page of [off, off + len) of the mapping is in memory now (mincore), so reading
 * it will not wait for the disk (unless the kernel drops a page in between). False for ranges
 * over KW_MMAP_RESIDENT_MAX bytes, outside the mapping, or when mincore fails. */
#define KW_MMAP_RESIDENT_MAX (64u * 1024u)
bool kw_mmap_resident(const kw_mmap *m, uint64_t off, uint64_t len);

/* ---- whole files ---- */
/* Reads a whole file into a malloc'd buffer (NUL-terminated for convenience). */
kiwi_status kw_read_file(const char *path, char **data, size_t *len, char **errmsg);
/* Durable replace: writes dir/name.tmp, fsyncs it, renames it over dir/name, fsyncs dir. */
kiwi_status kw_write_file_atomic(const char *dir, const char *name, const void *data, size_t len,
                                 char **errmsg);
kiwi_status kw_truncate_file(const char *path, uint64_t len, char **errmsg); /* and fsync */

/* ---- directories and names ---- */
kiwi_status kw_mkdir_p(const char *path, char **errmsg);
kiwi_status kw_fsync_dir(const char *dir, char **errmsg);
kiwi_status kw_remove_file(const char *path, char **errmsg); /* ENOENT is not an error */
kiwi_status kw_rename_file(const char *from, const char *to, char **errmsg);
/* The names in dir (without "." and ".."), malloc'd; free with kw_free_names. */
kiwi_status kw_list_dir(const char *dir, char ***names, size_t *count, char **errmsg);
void kw_free_names(char **names, size_t count);
bool kw_path_exists(const char *path);
bool kw_is_directory(const char *path);
/* File size by path; KIWI_IO_ERROR naming the path if it cannot be stat'ed. */
kiwi_status kw_file_size_of(const char *path, uint64_t *size, char **errmsg);

/* "dir/000012.sst": malloc'd path of a numbered file with the given suffix ("log", "sst") */
char *kw_numbered_path(const char *dir, uint64_t number, const char *suffix);
char *kw_join_path(const char *dir, const char *name);

/* Monotonic clock in microseconds. */
uint64_t kw_now_micros(void);

#endif /* KW_ENV_H */
