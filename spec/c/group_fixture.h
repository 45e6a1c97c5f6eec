/*
 * group_fixture.h: what the writer-queue tests share (test_group_commit.c, test_group_gather.c):
 * an error counter the helper threads bump (they cannot CHECK), a get compared with an expected
 * value, and whether an fd is a WAL (*.log) file, for the kw_syscalls hooks each file installs.
 */
#ifndef KIWI_GROUP_FIXTURE_H
#define KIWI_GROUP_FIXTURE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "kiwi.h"

/* Failures seen by helper threads; each test zeroes it before starting them and checks it is 0
 * after joining (the one piece of mutable state this header owns; one copy per test binary). */
static atomic_int g_errors;

static inline void fail(const char *what)
{
    fprintf(stderr, "group commit failure: %s\n", what);
    atomic_fetch_add(&g_errors, 1);
}

static inline bool has(kiwi_db *db, const char *k, const char *want)
{
    char *v = NULL;
    size_t vl = 0;
    kiwi_status st = kiwi_get(db, NULL, k, strlen(k), &v, &vl, NULL);
    bool ok = st == KIWI_OK && vl == strlen(want) && memcmp(v, want, vl) == 0;
    kiwi_free(v);
    return ok;
}

static inline bool is_log(int fd)
{
    char link[64], target[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    return n > 4 && memcmp(target + n - 4, ".log", 4) == 0;
}

#endif /* KIWI_GROUP_FIXTURE_H */
