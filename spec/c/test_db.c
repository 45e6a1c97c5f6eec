/*
 * test_db.c: the engine through its public API (kiwi.h): the contract and its edges, reopen
 * after every kind of operation, a randomized model check of gets and iterators across every
 * layer, snapshots, batches, many keys, option and lock errors, close with open handles, and
 * kiwi_get_into's caller buffer.
 * Recovery from a torn or preallocated WAL tail and a corrupt SSTable block are in
 * test_db_recovery.c; the shared open/put/get helpers in db_fixture.h.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctest.h"
#include "db_fixture.h"
#include "kiwi.h"

static void test_basic(void)
{
    char *dir = ctest_tmpdir("basic");
    kiwi_db *db = open_db(dir, "prod", NULL);
    CHECK(db != NULL);
    if (!db)
        return;
    CHECK(put(db, "a", 1, "1", 1) == 0);
    CHECK(get_is(db, NULL, "a", 1, "1", 1) == 1);
    CHECK(put(db, "a", 1, "2", 1) == 0);
    CHECK(get_is(db, NULL, "a", 1, "2", 1) == 1);
    CHECK(get_is(db, NULL, "b", 1, NULL, 0) == 0);
    CHECK(del(db, "missing", 7) == KIWI_OK); /* deleting a missing key is fine */
    CHECK(del(db, "a", 1) == KIWI_OK);
    CHECK(get_is(db, NULL, "a", 1, NULL, 0) == 0);
    /* empty key and binary data */
    CHECK(put(db, "", 0, "empty", 5) == 0);
    CHECK(get_is(db, NULL, "", 0, "empty", 5) == 1);
    CHECK(put(db, "k\0x", 3, "v\0\0y", 4) == 0);
    CHECK(get_is(db, NULL, "k\0x", 3, "v\0\0y", 4) == 1);
    CHECK(get_is(db, NULL, "k", 1, NULL, 0) == 0);
    CHECK(put(db, "empty-value", 11, "", 0) == 0);
    CHECK(get_is(db, NULL, "empty-value", 11, "", 0) == 1);
    /* 1 MiB value, through memtable and SSTable */
    size_t big = 1u << 20;
    char *bv = malloc(big);
    for (size_t i = 0; i < big; i++)
        bv[i] = (char)(i * 7 + 3);
    CHECK(put(db, "big", 3, bv, big) == 0);
    CHECK(get_is(db, NULL, "big", 3, bv, big) == 1);
    CHECK(kiwi_flush(db, NULL) == KIWI_OK);
    CHECK(get_is(db, NULL, "big", 3, bv, big) == 1);
    CHECK(get_is(db, NULL, "", 0, "empty", 5) == 1);
    CHECK(get_is(db, NULL, "a", 1, NULL, 0) == 0);
    /* too large a key is refused with a message */
    char *err = NULL;
    char *hugekey = calloc(1, KIWI_MAX_KEY_SIZE + 1);
    CHECK(kiwi_put(db, NULL, hugekey, KIWI_MAX_KEY_SIZE + 1, "v", 1, &err) ==
          KIWI_INVALID_ARGUMENT);
    CHECK(err && strstr(err, "invalid argument: key of") == err);
    kiwi_free(err);
    free(hugekey);
    CHECK(kiwi_close(db) == KIWI_OK);
    db = open_db(dir, "prod", NULL);
    CHECK(db != NULL);
    if (db) {
        CHECK(get_is(db, NULL, "big", 3, bv, big) == 1);
        CHECK(get_is(db, NULL, "k\0x", 3, "v\0\0y", 4) == 1);
        kiwi_close(db);
    }
    free(bv);
    ctest_rmtree(dir);
}

/* Every kind of operation, each followed by a close and reopen. */
static void test_reopen_after_each_op(void)
{
    char *dir = ctest_tmpdir("reopen");
    kiwi_db *db = open_db(dir, "dev", "3");
    CHECK(db != NULL);
    if (!db)
        return;
#define REOPEN()                                                                               \
    do {                                                                                       \
        CHECK(kiwi_close(db) == KIWI_OK);                                                      \
        db = open_db(dir, "dev", "3");                                                         \
        if (!db) {                                                                             \
            CHECK(!"reopen failed");                                                           \
            return;                                                                            \
        }                                                                                      \
    } while (0)
    put(db, "x", 1, "1", 1);
    REOPEN();
    CHECK(get_is(db, NULL, "x", 1, "1", 1) == 1);
    put(db, "x", 1, "2", 1);
    REOPEN();
    CHECK(get_is(db, NULL, "x", 1, "2", 1) == 1);
    del(db, "x", 1);
    REOPEN();
    CHECK(get_is(db, NULL, "x", 1, NULL, 0) == 0);
    kiwi_batch *b = kiwi_batch_create();
    kiwi_batch_put(b, "y", 1, "1", 1);
    kiwi_batch_put(b, "z", 1, "1", 1);
    kiwi_batch_delete(b, "y", 1);
    kiwi_batch_put(b, "z", 1, "2", 1); /* later op wins */
    CHECK(kiwi_write(db, NULL, b, NULL) == KIWI_OK);
    kiwi_batch_destroy(b);
    REOPEN();
    CHECK(get_is(db, NULL, "y", 1, NULL, 0) == 0);
    CHECK(get_is(db, NULL, "z", 1, "2", 1) == 1);
    CHECK(kiwi_flush(db, NULL) == KIWI_OK);
    REOPEN();
    CHECK(get_is(db, NULL, "z", 1, "2", 1) == 1);
    for (int i = 0; i < 20; i++) { /* several rotations in dev mode */
        char k[16];
        snprintf(k, sizeof k, "r%02d", i);
        put(db, k, strlen(k), k, strlen(k));
    }
    REOPEN();
    for (int i = 0; i < 20; i++) {
        char k[16];
        snprintf(k, sizeof k, "r%02d", i);
        CHECK(get_is(db, NULL, k, strlen(k), k, strlen(k)) == 1);
    }
    CHECK(get_is(db, NULL, "z", 1, "2", 1) == 1);
    kiwi_close(db);
    ctest_rmtree(dir);
}

/* ---- randomized model check ---- */

#define NKEYS 300
typedef struct {
    bool live[NKEYS];
    char val[NKEYS][24];
} model;

static uint64_t rng = 88172645463325252ull;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void key_of(int i, char *buf)
{
    snprintf(buf, 16, "key%03d", i);
}

static void check_model_iter(kiwi_db *db, const model *m)
{
    kiwi_iter *it = kiwi_iter_create(db, NULL);
    int i = 0;
    char k[16];
    /* forward */
    for (kiwi_iter_seek_to_first(it); kiwi_iter_valid(it); kiwi_iter_next(it)) {
        while (i < NKEYS && !m->live[i])
            i++;
        size_t kl, vl;
        const char *kp = kiwi_iter_key(it, &kl), *vp = kiwi_iter_value(it, &vl);
        key_of(i, k);
        CHECK(i < NKEYS && kl == strlen(k) && memcmp(kp, k, kl) == 0);
        CHECK(i < NKEYS && vl == strlen(m->val[i]) && memcmp(vp, m->val[i], vl) == 0);
        i++;
    }
    while (i < NKEYS && !m->live[i])
        i++;
    CHECK(i == NKEYS);
    CHECK(kiwi_iter_status(it, NULL) == KIWI_OK);
    /* backward */
    i = NKEYS - 1;
    for (kiwi_iter_seek_to_last(it); kiwi_iter_valid(it); kiwi_iter_prev(it)) {
        while (i >= 0 && !m->live[i])
            i--;
        size_t kl;
        const char *kp = kiwi_iter_key(it, &kl);
        key_of(i, k);
        CHECK(i >= 0 && kl == strlen(k) && memcmp(kp, k, kl) == 0);
        i--;
    }
    while (i >= 0 && !m->live[i])
        i--;
    CHECK(i == -1);
    /* random seeks, then a mixed walk */
    for (int t = 0; t < 50; t++) {
        int s = (int)(next_rand() % NKEYS);
        key_of(s, k);
        kiwi_iter_seek(it, k, strlen(k));
        int want = s;
        while (want < NKEYS && !m->live[want])
            want++;
        if (want == NKEYS) {
            CHECK(!kiwi_iter_valid(it));
        } else {
            char wk[16];
            key_of(want, wk);
            size_t kl;
            const char *kp = kiwi_iter_key(it, &kl);
            CHECK(kiwi_iter_valid(it) && kl == strlen(wk) && memcmp(kp, wk, kl) == 0);
            kiwi_iter_prev(it); /* direction switch */
            int p = want - 1;
            while (p >= 0 && !m->live[p])
                p--;
            if (p < 0) {
                CHECK(!kiwi_iter_valid(it));
            } else {
                key_of(p, wk);
                kp = kiwi_iter_key(it, &kl);
                CHECK(kiwi_iter_valid(it) && kl == strlen(wk) && memcmp(kp, wk, kl) == 0);
                kiwi_iter_next(it); /* and back */
                key_of(want, wk);
                kp = kiwi_iter_key(it, &kl);
                CHECK(kiwi_iter_valid(it) && kl == strlen(wk) && memcmp(kp, wk, kl) == 0);
            }
        }
        /* seek_for_prev: last key <= target */
        kiwi_iter_seek_for_prev(it, k, strlen(k));
        int p = s;
        while (p >= 0 && !m->live[p])
            p--;
        if (p < 0) {
            CHECK(!kiwi_iter_valid(it));
        } else {
            char wk[16];
            key_of(p, wk);
            size_t kl;
            const char *kp = kiwi_iter_key(it, &kl);
            CHECK(kiwi_iter_valid(it) && kl == strlen(wk) && memcmp(kp, wk, kl) == 0);
        }
    }
    kiwi_iter_destroy(it);
}

static void test_model(void)
{
    char *dir = ctest_tmpdir("model");
    kiwi_db *db = open_db(dir, "dev", "40");
    CHECK(db != NULL);
    if (!db)
        return;
    static model m;
    memset(&m, 0, sizeof m);
    char k[16];
    for (int step = 0; step < 6000; step++) {
        int op = (int)(next_rand() % 100);
        int i = (int)(next_rand() % NKEYS);
        key_of(i, k);
        if (op < 60) {
            snprintf(m.val[i], sizeof m.val[i], "v%d-%d", i, step);
            m.live[i] = true;
            CHECK(put(db, k, strlen(k), m.val[i], strlen(m.val[i])) == 0);
        } else if (op < 85) {
            m.live[i] = false;
            CHECK(del(db, k, strlen(k)) == 0);
        } else if (op < 97) {
            int r = get_is(db, NULL, k, strlen(k), m.live[i] ? m.val[i] : NULL,
                           m.live[i] ? strlen(m.val[i]) : 0);
            CHECK(r == (m.live[i] ? 1 : 0));
        } else if (op < 98) {
            CHECK(kiwi_flush(db, NULL) == KIWI_OK);
        } else if (op < 99) {
            kiwi_close(db);
            db = open_db(dir, "dev", "40");
            if (!db) {
                CHECK(!"reopen failed");
                return;
            }
        } else {
            check_model_iter(db, &m);
        }
    }
    check_model_iter(db, &m);
    kiwi_close(db);
    db = open_db(dir, "dev", "40");
    if (db) {
        check_model_iter(db, &m);
        for (int i = 0; i < NKEYS; i++) {
            key_of(i, k);
            CHECK(get_is(db, NULL, k, strlen(k), m.live[i] ? m.val[i] : NULL,
                         m.live[i] ? strlen(m.val[i]) : 0) == (m.live[i] ? 1 : 0));
        }
        kiwi_close(db);
    }
    ctest_rmtree(dir);
}

static void test_snapshot(void)
{
    char *dir = ctest_tmpdir("snap");
    kiwi_db *db = open_db(dir, "dev", "5");
    if (!db) {
        CHECK(db != NULL);
        return;
    }
    put(db, "a", 1, "old", 3);
    put(db, "b", 1, "old", 3);
    const kiwi_snapshot *s = kiwi_snapshot_create(db);
    CHECK(s != NULL);
    put(db, "a", 1, "new", 3);
    del(db, "b", 1);
    put(db, "c", 1, "new", 3);
    CHECK(kiwi_flush(db, NULL) == KIWI_OK);
    for (int i = 0; i < 12; i++) { /* rotate a few memtables past it */
        char kk[16];
        snprintf(kk, sizeof kk, "z%d", i);
        put(db, kk, strlen(kk), "x", 1);
    }
    CHECK(get_is(db, s, "a", 1, "old", 3) == 1);
    CHECK(get_is(db, s, "b", 1, "old", 3) == 1);
    CHECK(get_is(db, s, "c", 1, NULL, 0) == 0);
    CHECK(get_is(db, NULL, "a", 1, "new", 3) == 1);
    CHECK(get_is(db, NULL, "b", 1, NULL, 0) == 0);
    kiwi_read_options ro = {s, true};
    kiwi_iter *it = kiwi_iter_create(db, &ro);
    int n = 0;
    for (kiwi_iter_seek_to_first(it); kiwi_iter_valid(it); kiwi_iter_next(it))
        n++;
    CHECK(n == 2);
    kiwi_iter_destroy(it);
    kiwi_snapshot_release(db, s);
    kiwi_close(db);
    ctest_rmtree(dir);
}

static void test_many_keys(void)
{
    char *dir = ctest_tmpdir("many");
    kiwi_db *db = open_db(dir, "dev", "20000");
    if (!db) {
        CHECK(db != NULL);
        return;
    }
    const int N = 200000;
    char k[32], v[32];
    for (int i = 0; i < N; i++) {
        int j = (int)((i * 7919u) % (unsigned)N); /* a permutation: random-ish order */
        snprintf(k, sizeof k, "k%08d", j);
        snprintf(v, sizeof v, "v%d", j);
        if (put(db, k, strlen(k), v, strlen(v)) != 0) {
            CHECK(!"put failed");
            break;
        }
    }
    kiwi_close(db);
    db = open_db(dir, "dev", "20000");
    if (!db) {
        CHECK(db != NULL);
        return;
    }
    int bad = 0;
    for (int i = 0; i < N; i += 7) {
        snprintf(k, sizeof k, "k%08d", i);
        snprintf(v, sizeof v, "v%d", i);
        bad += get_is(db, NULL, k, strlen(k), v, strlen(v)) != 1;
    }
    CHECK(bad == 0);
    kiwi_iter *it = kiwi_iter_create(db, NULL);
    int n = 0;
    for (kiwi_iter_seek_to_first(it); kiwi_iter_valid(it); kiwi_iter_next(it), n++) {
        size_t kl;
        const char *kp = kiwi_iter_key(it, &kl);
        snprintf(k, sizeof k, "k%08d", n);
        if (kl != strlen(k) || memcmp(kp, k, kl) != 0) {
            CHECK(!"scan out of order");
            break;
        }
    }
    CHECK(n == N);
    kiwi_iter_destroy(it);
    char *stats = kiwi_property(db, "stats");
    CHECK(stats && strstr(stats, "\"sstables\":") != NULL);
    kiwi_free(stats);
    kiwi_close(db);
    ctest_rmtree(dir);
}

static void test_errors(void)
{
    char *dir = ctest_tmpdir("err");
    kiwi_db *db = open_db(dir, "prod", NULL);
    if (!db) {
        CHECK(db != NULL);
        return;
    }
    kiwi_db *db2 = NULL;
    char *err = NULL;
    CHECK(kiwi_open(dir, NULL, &db2, &err) == KIWI_BUSY);
    CHECK(err && strncmp(err, "busy: ", 6) == 0);
    kiwi_free(err);
    err = NULL;
    kiwi_close(db);
    /* after close the directory can be opened again */
    CHECK(kiwi_open(dir, NULL, &db2, &err) == KIWI_OK);
    if (db2)
        kiwi_close(db2);
    /* a path that is a file */
    char file[4096];
    snprintf(file, sizeof file, "%s/plainfile", dir);
    FILE *f = fopen(file, "w");
    fputs("x", f);
    fclose(f);
    CHECK(kiwi_open(file, NULL, &db2, &err) == KIWI_INVALID_ARGUMENT);
    CHECK(err && strstr(err, "is not a directory") && strstr(err, file));
    kiwi_free(err);
    err = NULL;
    /* options */
    kiwi_options *o = kiwi_options_create("prod");
    CHECK(kiwi_options_create("fast") == NULL);
    CHECK(kiwi_options_set(o, "bloom_fpr_prod", "2", &err) == KIWI_INVALID_ARGUMENT);
    CHECK(err && strstr(err, "bloom_fpr_prod") && strstr(err, "out of range"));
    CHECK(kiwi_options_set(o, "no_such", "1", &err) == KIWI_INVALID_ARGUMENT);
    CHECK(err && strstr(err, "unknown setting 'no_such'"));
    CHECK(kiwi_options_set(o, "max_memtable_entries", "12x", &err) == KIWI_INVALID_ARGUMENT);
    CHECK(kiwi_options_set(o, "sync_writes", "maybe", &err) == KIWI_INVALID_ARGUMENT);
    CHECK(kiwi_options_set(o, "flush_max_workers", "3", &err) == KIWI_OK);
    kiwi_free(err);
    err = NULL;
    CHECK(kiwi_open(dir, o, &db2, &err) == KIWI_OK);
    if (db2) {
        CHECK(kiwi_set_option(db2, "flush_max_workers", "4", &err) == KIWI_INVALID_ARGUMENT);
        CHECK(err && strstr(err, "cannot change on a running db"));
        CHECK(kiwi_set_option(db2, "sync_writes", "true", &err) == KIWI_OK);
        char *opts = kiwi_property(db2, "options");
        CHECK(opts && strstr(opts, "\"sync_writes\":true") && strstr(opts, "\"flush_max_workers\":3"));
        kiwi_free(opts);
        CHECK(kiwi_property(db2, "nonsense") == NULL);
        kiwi_close(db2);
    }
    kiwi_free(err);
    kiwi_options_destroy(o);
    ctest_rmtree(dir);
}

static void test_close_with_open_handles(void)
{
    char *dir = ctest_tmpdir("handles");
    kiwi_db *db = open_db(dir, "prod", NULL);
    if (!db) {
        CHECK(db != NULL);
        return;
    }
    put(db, "a", 1, "1", 1);
    kiwi_iter *it = kiwi_iter_create(db, NULL);
    kiwi_iter_seek_to_first(it);
    CHECK(kiwi_iter_valid(it));
    const kiwi_snapshot *s = kiwi_snapshot_create(db);
    CHECK(s != NULL);
    CHECK(kiwi_close(db) == KIWI_OK); /* frees both; ASan checks for leaks */
    ctest_rmtree(dir);
}

/* kiwi_get_into: a value that fits (up to exactly cap bytes, empty included) lands in the
 * caller's buffer (*val == buf), a larger one in a malloc'd copy; from the memtable and from an
 * SSTable alike, binary bytes and a 1 MiB value included. Misses, deletes and bad arguments
 * answer as kiwi_get does. */
static void check_get_into(kiwi_db *db, const char *k, const char *want, size_t wlen, size_t cap)
{
    char buf[2048];
    char *val = NULL;
    size_t vlen = 1;
    kiwi_status st = kiwi_get_into(db, NULL, k, strlen(k), buf, cap, &val, &vlen, NULL);
    CHECK(st == KIWI_OK);
    if (st != KIWI_OK)
        return;
    CHECK_EQ_U64(vlen, wlen);
    CHECK((val == buf) == (wlen <= cap));
    CHECK(wlen == 0 || memcmp(val, want, wlen) == 0);
    if (val != buf)
        kiwi_free(val);
}

static void test_get_into(void)
{
    char *dir = ctest_tmpdir("getinto");
    kiwi_db *db = open_db(dir, "prod", NULL);
    if (!db) {
        CHECK(db != NULL);
        return;
    }
    static const size_t sizes[] = {0, 1, 63, 64, 65, 2047, 2048, 2049, 1u << 20};
    enum { N = sizeof sizes / sizeof sizes[0] };
    char *vals[N];
    for (size_t i = 0; i < N; i++) {
        vals[i] = malloc(sizes[i] + 1);
        for (size_t j = 0; j < sizes[i]; j++)
            vals[i][j] = (char)(j % 7 == 0 ? 0 : 'a' + (i + j) % 26); /* NULs inside */
        char k[16];
        snprintf(k, sizeof k, "k%zu", i);
        CHECK(put(db, k, strlen(k), vals[i], sizes[i]) == 0);
    }
    for (int flushed = 0; flushed < 2; flushed++) {
        for (size_t i = 0; i < N; i++) {
            char k[16];
            snprintf(k, sizeof k, "k%zu", i);
            check_get_into(db, k, vals[i], sizes[i], 64);
            check_get_into(db, k, vals[i], sizes[i], 2048);
            check_get_into(db, k, vals[i], sizes[i], 0);
        }
        CHECK(kiwi_flush(db, NULL) == KIWI_OK);
    }
    CHECK(del(db, "k1", 2) == 0);
    char buf[64], *val = buf, *err = NULL;
    size_t vlen = 7;
    CHECK(kiwi_get_into(db, NULL, "k1", 2, buf, sizeof buf, &val, &vlen, NULL) == KIWI_NOT_FOUND);
    CHECK(val == NULL && vlen == 0);
    CHECK(kiwi_get_into(db, NULL, "nope", 4, buf, sizeof buf, &val, &vlen, NULL) ==
          KIWI_NOT_FOUND);
    CHECK(kiwi_get_into(db, NULL, "k2", 2, NULL, 8, &val, &vlen, &err) == KIWI_INVALID_ARGUMENT);
    CHECK(err && strstr(err, "kiwi_get_into"));
    kiwi_free(err);
    check_get_into(db, "k2", vals[2], sizes[2], 64); /* the data is intact */
    for (size_t i = 0; i < N; i++)
        free(vals[i]);
    CHECK(kiwi_close(db) == KIWI_OK);
    ctest_rmtree(dir);
}

/* This process's threads whose name (/proc/<pid>/task/<tid>/comm) is `name`; all of its
 * threads when name is NULL; -1 if /proc cannot be read. */
static int threads_named(const char *name)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)getpid());
    DIR *d = opendir(path);
    if (d == NULL)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char comm[384], line[64];
        snprintf(comm, sizeof comm, "%s/%s/comm", path, e->d_name);
        FILE *f = fopen(comm, "r");
        if (f == NULL)
            continue; /* the thread ended meanwhile */
        if (fgets(line, sizeof line, f) != NULL) {
            line[strcspn(line, "\n")] = '\0';
            n += name == NULL || strcmp(line, name) == 0;
        }
        fclose(f);
    }
    closedir(d);
    return n;
}

/* Each engine thread is named for top -H, ps -L and perf, one per configured worker, and all
 * are gone after close. */
static void test_thread_names(void)
{
    char *dir = ctest_tmpdir("db");
    CHECK_EQ_U64(threads_named("kiwi-flush"), 0);
    kiwi_options *o = kiwi_options_create("prod");
    CHECK(kiwi_options_set(o, "flush_max_workers", "3", NULL) == KIWI_OK);
    CHECK(kiwi_options_set(o, "compaction_workers", "2", NULL) == KIWI_OK);
    kiwi_db *db = NULL;
    CHECK(kiwi_open(dir, o, &db, NULL) == KIWI_OK);
    kiwi_options_destroy(o);
    CHECK_EQ_U64(threads_named("kiwi-flush"), 3);
    CHECK_EQ_U64(threads_named("kiwi-compact"), 2);
    CHECK_EQ_U64(threads_named("kiwi-commit"), 1);
    CHECK(put(db, "k", 1, "v", 1) == 0);
    CHECK(kiwi_close(db) == KIWI_OK);
    CHECK_EQ_U64(threads_named("kiwi-flush") + threads_named("kiwi-compact") +
                     threads_named("kiwi-commit"),
                 0);
    CHECK_EQ_U64(threads_named(NULL), 1); /* this thread only */
    ctest_rmtree(dir);
}

int main(void)
{
    RUN(test_basic);
    RUN(test_reopen_after_each_op);
    RUN(test_model);
    RUN(test_snapshot);
    RUN(test_many_keys);
    RUN(test_errors);
    RUN(test_close_with_open_handles);
    RUN(test_get_into);
    RUN(test_thread_names);
    return ctest_summary();
}
