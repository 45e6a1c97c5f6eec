/*
 * common.c: byte slices, the error idiom (kw_error), checked allocation, kw_buf and thread names.
 */
#include "common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int kw_slice_compare(kw_slice a, kw_slice b)
{
    size_t n = a.size < b.size ? a.size : b.size;
    int r = n ? memcmp(a.data, b.data, n) : 0;
    if (r != 0)
        return r;
    if (a.size < b.size)
        return -1;
    return a.size > b.size ? 1 : 0;
}

size_t kw_slice_common_prefix(kw_slice a, kw_slice b)
{
    size_t n = a.size < b.size ? a.size : b.size, i = 0;
    while (i < n && a.data[i] == b.data[i])
        i++;
    return i;
}

void kw_name_thread(pthread_t t, const char *name)
{
    (void)pthread_setname_np(t, name); /* cosmetic: a failure changes nothing */
}

const char *kiwi_status_name(kiwi_status st)
{
    switch (st) {
    case KIWI_OK: return "ok";
    case KIWI_NOT_FOUND: return "not found";
    case KIWI_CORRUPTION: return "corruption";
    case KIWI_IO_ERROR: return "io error";
    case KIWI_INVALID_ARGUMENT: return "invalid argument";
    case KIWI_BUSY: return "busy";
    case KIWI_CLOSED: return "closed";
    case KIWI_NO_SPACE: return "no space";
    }
    return "unknown";
}

kiwi_status kw_error(char **errmsg, kiwi_status st, const char *fmt, ...)
{
    if (errmsg == NULL)
        return st;
    char detail[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    const char *name = kiwi_status_name(st);
    size_t n = strlen(name) + 2 + strlen(detail) + 1;
    char *msg = kw_malloc(n);
    snprintf(msg, n, "%s: %s", name, detail);
    free(*errmsg);
    *errmsg = msg;
    return st;
}

const char *kw_error_detail(const char *msg)
{
    if (msg == NULL)
        return "";
    const char *colon = strstr(msg, ": ");
    return colon ? colon + 2 : msg;
}

kiwi_status kw_status_from_errno(int err)
{
    if (err == ENOSPC || err == EDQUOT)
        return KIWI_NO_SPACE;
    return KIWI_IO_ERROR;
}

static void oom(size_t n)
{
    fprintf(stderr, "kiwi: out of memory allocating %zu bytes\n", n);
    abort();
}

void *kw_malloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        oom(n);
    return p;
}

void *kw_calloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL)
        oom(n * size);
    return p;
}

void *kw_realloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (q == NULL)
        oom(n);
    return q;
}

char *kw_strdup(const char *s)
{
    return kw_memdup(s, strlen(s) + 1);
}

char *kw_memdup(const void *p, size_t n)
{
    char *q = kw_malloc(n + 1);
    if (n)
        memcpy(q, p, n);
    q[n] = '\0';
    return q;
}

void kw_buf_init(kw_buf *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->borrowed = false;
}

void kw_buf_init_borrowed(kw_buf *b, char *storage, size_t cap)
{
    b->data = storage;
    b->len = 0;
    b->cap = cap;
    b->borrowed = true;
}

void kw_buf_reserve(kw_buf *b, size_t extra)
{
    if (b->len + extra <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra)
        cap *= 2;
    if (b->borrowed) { /* leave the caller's storage for the heap */
        char *heap = kw_malloc(cap);
        if (b->len > 0)
            memcpy(heap, b->data, b->len);
        b->data = heap;
        b->borrowed = false;
    } else {
        b->data = kw_realloc(b->data, cap);
    }
    b->cap = cap;
}

void kw_buf_append(kw_buf *b, const void *p, size_t n)
{
    if (n == 0)
        return;
    kw_buf_reserve(b, n);
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

void kw_buf_push(kw_buf *b, char c)
{
    kw_buf_reserve(b, 1);
    b->data[b->len++] = c;
}

void kw_buf_printf(kw_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n <= 0)
        return;
    kw_buf_reserve(b, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void kw_buf_clear(kw_buf *b)
{
    b->len = 0;
}

void kw_buf_free(kw_buf *b)
{
    if (!b->borrowed)
        free(b->data);
    kw_buf_init(b);
}

void kiwi_free(void *p)
{
    free(p);
}
