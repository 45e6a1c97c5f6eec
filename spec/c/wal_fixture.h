/*
 * wal_fixture.h: what the framed-log tests share (test_wal.c, test_wal_prealloc.c,
 * test_wal_mapped.c, test_wal_zero_ahead.c): deterministic payloads, telling zeroing writes from
 * record writes, the end of a child that crashed on purpose, and a reader callback that records which expected payload each delivered record
 * matched and at what offset (and can refuse a record on a chosen call).
 */
#ifndef KIWI_WAL_FIXTURE_H
#define KIWI_WAL_FIXTURE_H

#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "ctest.h"
#include "wal.h"

/* Waits for a child process that crashed on purpose (kill(getpid(), SIGKILL): no cleanup, no
 * close): whether it ended that way. */
static inline bool child_was_killed(pid_t pid)
{
    int status = 0;
    return waitpid(pid, &status, 0) == pid && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
}

/* Whether every byte of iov[0..count) is zero: how the pwritev hooks of test_wal_mapped.c and
 * test_wal_zero_ahead.c tell zeroing ahead (kw_file_zero_ahead) from records. */
static inline bool all_zeros(const struct iovec *iov, int count)
{
    for (int i = 0; i < count; i++)
        for (size_t j = 0; j < iov[i].iov_len; j++)
            if (((const char *)iov[i].iov_base)[j] != 0)
                return false;
    return true;
}

/* Deterministic payload i of size n. */
static inline char *make_payload(int i, size_t n)
{
    char *p = malloc(n ? n : 1);
    for (size_t j = 0; j < n; j++)
        p[j] = (char)(i * 31 + (int)(j * 7) + (int)(j >> 8));
    return p;
}

typedef struct {
    size_t n;
    int ids[64];         /* which expected record each delivered one matched (-1: none) */
    uint64_t offsets[64];
    const char **want;   /* expected payloads */
    const size_t *want_len;
    size_t want_count;
    size_t fail_at;      /* return an error on this call (SIZE_MAX: never) */
} reader;

static inline kiwi_status collect(void *ctx, kw_slice payload, uint64_t offset, char **errmsg)
{
    reader *r = ctx;
    if (r->n == r->fail_at)
        return kw_error(errmsg, KIWI_INVALID_ARGUMENT, "callback refused record at %" PRIu64,
                        offset);
    int id = -1;
    for (size_t i = 0; i < r->want_count && id < 0; i++) {
        if (r->want_len[i] == payload.size &&
            (payload.size == 0 || memcmp(r->want[i], payload.data, payload.size) == 0))
            id = (int)i;
    }
    if (r->n < 64) {
        r->ids[r->n] = id;
        r->offsets[r->n] = offset;
    }
    r->n++;
    return KIWI_OK;
}

static inline void reader_init(reader *r, const char **want, const size_t *len, size_t count)
{
    memset(r, 0, sizeof *r);
    r->want = want;
    r->want_len = len;
    r->want_count = count;
    r->fail_at = SIZE_MAX;
}

static inline void free_payloads(char **p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(p[i]);
}

#endif /* KIWI_WAL_FIXTURE_H */
