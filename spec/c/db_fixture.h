/*
 * db_fixture.h: what the whole-db API tests share (test_db.c, test_db_recovery.c): open a db in
 * a mode with an optional max_memtable_entries, put and delete that report failures, and a get
 * compared with an expected value (or absence), optionally at a snapshot.
 */
#ifndef KIWI_DB_FIXTURE_H
#define KIWI_DB_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiwi.h"

static inline kiwi_db *open_db(const char *dir, const char *mode, const char *entries)
{
    kiwi_options *o = kiwi_options_create(mode);
    if (entries)
        kiwi_options_set(o, "max_memtable_entries", entries, NULL);
    kiwi_db *db = NULL;
    char *err = NULL;
    kiwi_status st = kiwi_open(dir, o, &db, &err);
    kiwi_options_destroy(o);
    if (st != KIWI_OK) {
        fprintf(stderr, "open %s: %s\n", dir, err);
        kiwi_free(err);
        return NULL;
    }
    return db;
}

static inline int put(kiwi_db *db, const char *k, size_t kl, const char *v, size_t vl)
{
    char *err = NULL;
    kiwi_status st = kiwi_put(db, NULL, k, kl, v, vl, &err);
    if (st)
        fprintf(stderr, "put: %s\n", err);
    kiwi_free(err);
    return st;
}

static inline int del(kiwi_db *db, const char *k, size_t kl)
{
    return kiwi_delete(db, NULL, k, kl, NULL);
}

/* 1 if found with the expected value, 0 if not found, -1 on mismatch or error. */
static inline int get_is(kiwi_db *db, const kiwi_snapshot *snap, const char *k, size_t kl,
                         const char *want, size_t wl)
{
    kiwi_read_options ro = {snap, true};
    char *v = NULL, *err = NULL;
    size_t vl = 0;
    kiwi_status st = kiwi_get(db, &ro, k, kl, &v, &vl, &err);
    int r;
    if (st == KIWI_NOT_FOUND)
        r = want == NULL ? 0 : -1;
    else if (st != KIWI_OK) {
        fprintf(stderr, "get: %s\n", err);
        r = -1;
    } else
        r = (want && vl == wl && memcmp(v, want, vl) == 0) ? 1 : -1;
    kiwi_free(v);
    kiwi_free(err);
    return r;
}

#endif /* KIWI_DB_FIXTURE_H */
