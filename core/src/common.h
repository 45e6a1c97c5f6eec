/*
 * common.h: what every engine file shares: byte slices, the error idiom, checked allocation.
 *
 * Error idiom: internal functions that can fail return a kiwi_status (KIWI_OK == 0) and take a
 * trailing `char **errmsg`. kw_error() is the one place an error is born: it formats the message
 * "<status name>: <details>" into *errmsg (when errmsg is not NULL) and returns the status, so a
 * failing call site reads `return kw_error(errmsg, KIWI_IO_ERROR, "write %s: %s", path, strerror(e));`.
 * Set a breakpoint on kw_error to see where any error started.
 */
#ifndef KW_COMMON_H
#define KW_COMMON_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kiwi.h"

/* A borrowed byte range; never owns its memory. */
typedef struct {
    const char *data;
    size_t size;
} kw_slice;

static inline kw_slice kw_slice_make(const char *data, size_t size)
{
    kw_slice s = {data, size};
    return s;
}

/* Bytewise three-way comparison (shorter prefix sorts first). */
int kw_slice_compare(kw_slice a, kw_slice b);

/* The number of leading bytes a and b share. */
size_t kw_slice_common_prefix(kw_slice a, kw_slice b);

/* Names thread t as `top -H`, `ps -L`, /proc/<pid>/task/<tid>/comm and perf show it (Linux
 * keeps 15 bytes). Called by the creator right after pthread_create, so the name is there when
 * kiwi_open returns. The engine's threads: kiwi-flush, kiwi-compact, kiwi-commit. */
void kw_name_thread(pthread_t t, const char *name);

/* Formats "<status name>: <fmt...>" into *errmsg (freeing an older message) and returns st.
 * errmsg may be NULL. */
kiwi_status kw_error(char **errmsg, kiwi_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The part of a kw_error message after its "<status name>: " prefix (for wrapping one message
 * in another without repeating the prefix). */
const char *kw_error_detail(const char *msg);

/* The status for an errno from a failed system call: ENOSPC/EDQUOT -> KIWI_NO_SPACE, else IO. */
kiwi_status kw_status_from_errno(int err);

/* Allocation that never returns NULL: on exhaustion it prints to stderr and aborts. */
void *kw_malloc(size_t n);
void *kw_calloc(size_t n, size_t size);
void *kw_realloc(void *p, size_t n);
char *kw_strdup(const char *s);
char *kw_memdup(const void *p, size_t n);

/* A growable byte buffer (used by encoders and builders). */
typedef struct {
    char *data;
    size_t len;
    size_t cap;
    bool borrowed; /* data is the caller's storage (kw_buf_init_borrowed), not the heap's */
} kw_buf;

void kw_buf_init(kw_buf *b);
/* Starts b on the caller's storage of cap bytes (e.g. a stack array that outlives b's use):
 * nothing is allocated while the contents fit; the first growth past cap moves them to the
 * heap. kw_buf_free never frees the storage. Only for a buffer whose data nobody takes over. */
void kw_buf_init_borrowed(kw_buf *b, char *storage, size_t cap);
void kw_buf_reserve(kw_buf *b, size_t extra);
void kw_buf_append(kw_buf *b, const void *p, size_t n);
void kw_buf_push(kw_buf *b, char c);
void kw_buf_printf(kw_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void kw_buf_clear(kw_buf *b);
void kw_buf_free(kw_buf *b);

#endif /* KW_COMMON_H */
