/*
 * test_merge_iter_db.c: the db iterator over a db with files on L0..L3 plus memtable data (the
 * merging and level iterators of test_merge_iter.c, assembled by the db, with background flushes
 * and compactions running): full scans both ways, random seeks, seek_for_prev and random walks
 * against a model of the live keys.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctest.h"
#include "kiwi.h"
#include "merge_iter_fixture.h"

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define SCALE 4
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define SCALE 4
#endif
#endif
#ifndef SCALE
#define SCALE 1
#endif

/* ---- the db iterator over memtable, L0 and L1..L3 ------------------------------------------- */

#define DB_KEYS 6000

typedef struct {
    kiwi_db *db;
    char *val[DB_KEYS]; /* the live value of key i, or NULL */
} db_fixture;

static size_t db_key(char *buf, int i)
{
    return (size_t)snprintf(buf, 16, "key%06d", i);
}

static void db_put(db_fixture *x, int i, int gen)
{
    char k[16], v[128];
    size_t kl = db_key(k, i);
    int n = snprintf(v, sizeof v, "%06d-%d-", i, gen);
    memset(v + n, 'a' + i % 26, 100 - (size_t)n);
    v[100] = '\0';
    kiwi_put(x->db, NULL, k, kl, v, 100, NULL);
    free(x->val[i]);
    x->val[i] = strdup(v);
}

static void db_del(db_fixture *x, int i)
{
    char k[16];
    kiwi_delete(x->db, NULL, k, db_key(k, i), NULL);
    free(x->val[i]);
    x->val[i] = NULL;
}

/* The first live key index >= i (DB_KEYS: none), the last <= i (-1: none). */
static int live_from(const db_fixture *x, int i)
{
    while (i < DB_KEYS && x->val[i] == NULL)
        i++;
    return i;
}

static int live_upto(const db_fixture *x, int i)
{
    while (i >= 0 && x->val[i] == NULL)
        i--;
    return i;
}

/* Is it on key i with its value (i outside [0, DB_KEYS): invalid)? */
static bool db_at(kiwi_iter *it, const db_fixture *x, int i)
{
    if (i < 0 || i >= DB_KEYS)
        return !kiwi_iter_valid(it);
    char k[16];
    size_t kl = db_key(k, i), len, vlen;
    if (!kiwi_iter_valid(it))
        return false;
    const char *got = kiwi_iter_key(it, &len);
    const char *v = kiwi_iter_value(it, &vlen);
    return len == kl && memcmp(got, k, kl) == 0 && vlen == 100 && memcmp(v, x->val[i], 100) == 0;
}

static unsigned long long level_files(kiwi_db *db, int level)
{
    char *s = kiwi_property(db, "stats"), pat[48];
    snprintf(pat, sizeof pat, "{\"level\":%d,\"files\":", level);
    const char *p = s ? strstr(s, pat) : NULL;
    unsigned long long v = p ? strtoull(p + strlen(pat), NULL, 10) : 0;
    kiwi_free(s);
    return v;
}

/* Random operations, each checked: seek (to a key or between two keys), seek_for_prev, first,
 * last, next, prev. */
static int db_walk(kiwi_iter *it, const db_fixture *x, int nops)
{
    int pos = -1, bad = 0;
    for (int op = 0; op < nops && bad < 5; op++) {
        int r = (int)rnd(8), i = (int)rnd(DB_KEYS + 2) - 1;
        char k[24];
        size_t kl = db_key(k, i < 0 ? 0 : i);
        bool between = rnd(2) && i >= 0; /* "key000012" < "key0000125" < "key000013" */
        if (between)
            k[kl++] = '5';
        if (r == 0) {
            kiwi_iter_seek_to_first(it);
            pos = live_from(x, 0);
        } else if (r == 1) {
            kiwi_iter_seek_to_last(it);
            pos = live_upto(x, DB_KEYS - 1);
        } else if (r == 2 || pos < 0 || pos >= DB_KEYS) {
            kiwi_iter_seek(it, k, kl);
            pos = i < 0 ? live_from(x, 0) : live_from(x, between ? i + 1 : i);
        } else if (r == 3) {
            kiwi_iter_seek_for_prev(it, k, kl);
            pos = i < 0 ? live_upto(x, -1) : live_upto(x, i);
        } else if (r <= 5) {
            kiwi_iter_next(it);
            pos = live_from(x, pos + 1);
        } else {
            kiwi_iter_prev(it);
            pos = live_upto(x, pos - 1);
        }
        if (!db_at(it, x, pos)) {
            fprintf(stderr, "db walk: op %d (kind %d, key %.*s): expected key %d\n", op, r,
                    (int)kl, k, pos);
            bad++;
        }
    }
    return bad;
}

static void test_db_levels(void)
{
    char *dir = ctest_tmpdir("merge-iter-db");
    kiwi_options *o = kiwi_options_create("prod");
    kiwi_options_set(o, "max_memtable_size_mb", "0.0625", NULL);
    kiwi_options_set(o, "target_file_size_mb", "0.015625", NULL);
    kiwi_options_set(o, "level_base_mb", "0.0625", NULL);
    kiwi_options_set(o, "level_size_ratio", "2", NULL);
    kiwi_options_set(o, "l0_compaction_threshold", "2", NULL);
    db_fixture *x = calloc(1, sizeof *x);
    char *err = NULL;
    CHECK_OK(kiwi_open(dir, o, &x->db, &err), &err);
    kiwi_options_destroy(o);
    for (int i = 0; i < DB_KEYS; i++) /* every third key missing from the start */
        if (i % 3 != 2)
            db_put(x, i, 0);
    CHECK_OK(kiwi_compact_range(x->db, NULL, 0, NULL, 0, &err), &err); /* all to L3 */
    for (int n = 0; n < DB_KEYS; n++) { /* flushes and compactions into L1, L2 */
        int i = (int)rnd(DB_KEYS);
        if (rnd(4) == 0)
            db_del(x, i);
        else
            db_put(x, i, n + 1);
    }
    for (int w = 0; w < 250 && !(level_files(x->db, 1) && level_files(x->db, 2)); w++)
        usleep(20000);
    for (int n = 0; n < 200; n++) /* stays in the memtable */
        db_put(x, (int)rnd(DB_KEYS), -1);
    fprintf(stderr, "db levels: files per level %llu/%llu/%llu/%llu\n", level_files(x->db, 0),
            level_files(x->db, 1), level_files(x->db, 2), level_files(x->db, 3));
    CHECK(level_files(x->db, 1) > 0 && level_files(x->db, 2) > 0);
    CHECK(level_files(x->db, 3) > 10);

    kiwi_iter *it = kiwi_iter_create(x->db, NULL);
    int i = live_from(x, 0), bad = 0;
    for (kiwi_iter_seek_to_first(it); kiwi_iter_valid(it); kiwi_iter_next(it), i = live_from(x, i + 1))
        bad += !db_at(it, x, i);
    CHECK(i == DB_KEYS && bad == 0);
    i = live_upto(x, DB_KEYS - 1);
    for (kiwi_iter_seek_to_last(it); kiwi_iter_valid(it); kiwi_iter_prev(it), i = live_upto(x, i - 1))
        bad += !db_at(it, x, i);
    CHECK(i == -1 && bad == 0);
    CHECK_EQ_U64(db_walk(it, x, 4000 / SCALE), 0);
    CHECK(kiwi_iter_status(it, NULL) == KIWI_OK);
    kiwi_iter_destroy(it);
    CHECK(kiwi_close(x->db) == KIWI_OK);
    for (int k = 0; k < DB_KEYS; k++)
        free(x->val[k]);
    free(x);
    ctest_rmtree(dir);
}

int main(void)
{
    RUN(test_db_levels);
    return ctest_summary();
}
