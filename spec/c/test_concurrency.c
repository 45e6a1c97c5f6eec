/*
 * test_concurrency.c: the engine under concurrent writers, readers, iterators and flushes, run
 * plain, under ASan+UBSan and under ThreadSanitizer (make test-tsan).
 *
 * Writers write their own keys in order (w<t>-<i>), mixing sync and non-sync writes and batches,
 * while small dev-mode memtables rotate and two flush workers commit SSTables. Checks:
 *  - a reader never misses a key whose write was acknowledged, and never sees a wrong value;
 *  - every iterator sees, per writer, exactly a contiguous prefix of that writer's keys (a
 *    consistent snapshot: no holes, no half-applied batches), in strictly increasing order;
 *  - at the end every key is present after a reopen.
 * Also: kiwi_write_async and kiwi_write_nowait under concurrency, and group commit's gathering of
 * synced groups (4 sync writers share fdatasyncs, a lone one never waits, and no sync put returns
 * before an fdatasync covering its WAL record has finished).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctest.h"
#include "db.h" /* the gathering counters */
#include "dbtest.h"
#include "env.h" /* kw_syscalls: holding a leader inside its WAL write */
#include "kiwi.h"

#if defined(__SANITIZE_THREAD__)
#define PER_WRITER 600
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define PER_WRITER 600
#endif
#endif
#ifndef PER_WRITER
#define PER_WRITER 4000
#endif
#define WRITERS 4

static kiwi_db *g_db;
static atomic_int g_acked[WRITERS];
static atomic_bool g_done;
static atomic_int g_errors;
static bool g_nowait;                     /* writers try kiwi_write_nowait first */
static atomic_int g_nowait_ok, g_nowait_busy;

static void fail(const char *what)
{
    fprintf(stderr, "concurrency failure: %s\n", what);
    atomic_fetch_add(&g_errors, 1);
}

/* kiwi_write, or with g_nowait kiwi_write_nowait first and kiwi_write when it is busy (what
 * the Lua binding does). */
static kiwi_status write_maybe_nowait(const kiwi_write_options *wo, kiwi_batch *b)
{
    if (g_nowait) {
        kiwi_status st = kiwi_write_nowait(g_db, wo, b, NULL);
        if (st != KIWI_BUSY) {
            atomic_fetch_add(&g_nowait_ok, st == KIWI_OK);
            return st;
        }
        atomic_fetch_add(&g_nowait_busy, 1);
    }
    return kiwi_write(g_db, wo, b, NULL);
}

static kiwi_status put_maybe_nowait(const kiwi_write_options *wo, const char *k, const char *v)
{
    if (!g_nowait)
        return kiwi_put(g_db, wo, k, strlen(k), v, strlen(v), NULL);
    kiwi_batch *b = kiwi_batch_create();
    kiwi_batch_put(b, k, strlen(k), v, strlen(v));
    kiwi_status st = write_maybe_nowait(wo, b);
    kiwi_batch_destroy(b);
    return st;
}

static void *writer(void *arg)
{
    int t = (int)(intptr_t)arg;
    char k[32], v[32];
    for (int i = 0; i < PER_WRITER;) {
        if (i % 37 == 0 && i + 3 <= PER_WRITER) { /* a batch of three keys */
            kiwi_batch *b = kiwi_batch_create();
            for (int j = 0; j < 3; j++) {
                snprintf(k, sizeof k, "w%d-%06d", t, i + j);
                snprintf(v, sizeof v, "v%d-%d", t, i + j);
                kiwi_batch_put(b, k, strlen(k), v, strlen(v));
            }
            kiwi_write_options wo = {false};
            if (write_maybe_nowait(&wo, b) != KIWI_OK)
                fail("batch write");
            kiwi_batch_destroy(b);
            i += 3;
        } else {
            snprintf(k, sizeof k, "w%d-%06d", t, i);
            snprintf(v, sizeof v, "v%d-%d", t, i);
            kiwi_write_options wo = {i % 50 == 0};
            if (put_maybe_nowait(&wo, k, v) != KIWI_OK)
                fail("put");
            i++;
        }
        atomic_store(&g_acked[t], i);
    }
    return NULL;
}

static void *reader(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    char k[32], v[32];
    while (!atomic_load(&g_done)) {
        int t = (int)(rand_r(&seed) % WRITERS);
        int acked = atomic_load(&g_acked[t]);
        if (acked == 0)
            continue;
        int i = (int)(rand_r(&seed) % (unsigned)acked);
        snprintf(k, sizeof k, "w%d-%06d", t, i);
        snprintf(v, sizeof v, "v%d-%d", t, i);
        char *val = NULL;
        size_t vl = 0;
        kiwi_status st = kiwi_get_nowait(g_db, NULL, k, strlen(k), &val, &vl, NULL);
        if (st == KIWI_BUSY) /* not in memory: read the SSTables */
            st = kiwi_get(g_db, NULL, k, strlen(k), &val, &vl, NULL);
        if (st != KIWI_OK)
            fail("acknowledged key not found");
        else if (vl != strlen(v) || memcmp(val, v, vl) != 0)
            fail("wrong value");
        kiwi_free(val);
    }
    return NULL;
}

static void check_scan(void)
{
    kiwi_iter *it = kiwi_iter_create(g_db, NULL);
    int expect[WRITERS] = {0};
    char prev[64] = "";
    size_t prevlen = 0;
    for (kiwi_iter_seek_to_first(it); kiwi_iter_valid(it); kiwi_iter_next(it)) {
        size_t kl;
        const char *kp = kiwi_iter_key(it, &kl);
        if (prevlen && (memcmp(prev, kp, kl < prevlen ? kl : prevlen) > 0 ||
                        (kl <= prevlen && memcmp(prev, kp, kl) == 0)))
            fail("iterator out of order");
        memcpy(prev, kp, kl < sizeof prev ? kl : sizeof prev);
        prevlen = kl;
        int t = 0, i = 0;
        char buf[64];
        snprintf(buf, sizeof buf, "%.*s", (int)kl, kp);
        if (sscanf(buf, "w%d-%d", &t, &i) != 2 || t < 0 || t >= WRITERS) {
            fail("unexpected key");
            continue;
        }
        if (i != expect[t])
            fail("hole in a writer's keys (snapshot not consistent)");
        expect[t] = i + 1;
    }
    if (kiwi_iter_status(it, NULL) != KIWI_OK)
        fail("iterator error");
    kiwi_iter_destroy(it);
}

static void *scanner(void *arg)
{
    (void)arg;
    while (!atomic_load(&g_done))
        check_scan();
    return NULL;
}

static void *flusher(void *arg)
{
    (void)arg;
    while (!atomic_load(&g_done)) {
        if (kiwi_flush(g_db, NULL) != KIWI_OK)
            fail("flush");
        char *s = kiwi_property(g_db, "stats");
        kiwi_free(s);
    }
    return NULL;
}

static kiwi_db *open_dev(const char *dir)
{
    kiwi_options *o = kiwi_options_create("dev");
    kiwi_options_set(o, "max_memtable_entries", "300", NULL);
    kiwi_db *db = NULL;
    char *err = NULL;
    if (kiwi_open(dir, o, &db, &err) != KIWI_OK)
        fprintf(stderr, "open: %s\n", err);
    kiwi_free(err);
    kiwi_options_destroy(o);
    return db;
}

static void run_writers_readers_flush(void)
{
    char *dir = ctest_tmpdir("conc");
    atomic_store(&g_done, false);
    atomic_store(&g_errors, 0);
    for (int t = 0; t < WRITERS; t++)
        atomic_store(&g_acked[t], 0);
    g_db = open_dev(dir);
    CHECK(g_db != NULL);
    if (!g_db)
        return;
    pthread_t w[WRITERS], r[2], s, f;
    for (int t = 0; t < WRITERS; t++)
        pthread_create(&w[t], NULL, writer, (void *)(intptr_t)t);
    for (int t = 0; t < 2; t++)
        pthread_create(&r[t], NULL, reader, (void *)(uintptr_t)(t + 1));
    pthread_create(&s, NULL, scanner, NULL);
    pthread_create(&f, NULL, flusher, NULL);
    for (int t = 0; t < WRITERS; t++)
        pthread_join(w[t], NULL);
    atomic_store(&g_done, true);
    for (int t = 0; t < 2; t++)
        pthread_join(r[t], NULL);
    pthread_join(s, NULL);
    pthread_join(f, NULL);
    check_scan();
    CHECK(atomic_load(&g_errors) == 0);
    char *stats = kiwi_property(g_db, "stats");
    CHECK(stats != NULL);
    /* group commit: fewer WAL writes than acknowledged writes is typical but not guaranteed */
    kiwi_free(stats);
    CHECK(kiwi_close(g_db) == KIWI_OK);

    g_db = open_dev(dir);
    CHECK(g_db != NULL);
    if (g_db) {
        int missing = 0;
        for (int t = 0; t < WRITERS; t++)
            for (int i = 0; i < PER_WRITER; i++) {
                char k[32], v[32], *val = NULL;
                size_t vl;
                snprintf(k, sizeof k, "w%d-%06d", t, i);
                snprintf(v, sizeof v, "v%d-%d", t, i);
                if (kiwi_get(g_db, NULL, k, strlen(k), &val, &vl, NULL) != KIWI_OK ||
                    vl != strlen(v) || memcmp(val, v, vl) != 0)
                    missing++;
                kiwi_free(val);
            }
        CHECK(missing == 0);
        kiwi_close(g_db);
    }
    ctest_rmtree(dir);
}

static void test_writers_readers_flush(void)
{
    g_nowait = false;
    run_writers_readers_flush();
}

/* The same with every non-sync write tried through kiwi_write_nowait first: writes done inline
 * by their own thread and writes led by group-commit leaders interleave, and readers and
 * iterators still see every acknowledged write and only consistent snapshots (under TSan too). */
static void test_writers_readers_flush_nowait(void)
{
    g_nowait = true;
    atomic_store(&g_nowait_ok, 0);
    atomic_store(&g_nowait_busy, 0);
    run_writers_readers_flush();
    printf("nowait: %d written inline, %d busy (then kiwi_write)\n", atomic_load(&g_nowait_ok),
           atomic_load(&g_nowait_busy));
    CHECK(atomic_load(&g_nowait_ok) > 0);
    g_nowait = false;
}

typedef struct {
    atomic_int done;
    atomic_int failed;
} async_state;

static void on_done(void *ctx, kiwi_status st, char *errmsg)
{
    async_state *a = ctx;
    if (st != KIWI_OK)
        atomic_fetch_add(&a->failed, 1);
    kiwi_free(errmsg);
    atomic_fetch_add(&a->done, 1);
}

/* Many async sync-writes share fsyncs; kiwi_close finishes queued async writes first. */
static void test_async_group_commit(void)
{
    char *dir = ctest_tmpdir("async");
    kiwi_db *db = open_dev(dir);
    CHECK(db != NULL);
    if (!db)
        return;
    enum { N = 2000 };
    static kiwi_batch *batches[N];
    async_state a;
    atomic_init(&a.done, 0);
    atomic_init(&a.failed, 0);
    kiwi_write_options wo = {true};
    for (int i = 0; i < N; i++) {
        char k[32];
        snprintf(k, sizeof k, "a%06d", i);
        batches[i] = kiwi_batch_create();
        kiwi_batch_put(batches[i], k, strlen(k), k, strlen(k));
        CHECK(kiwi_write_async(db, &wo, batches[i], on_done, &a) == KIWI_OK);
    }
    while (atomic_load(&a.done) < N / 2) /* half done, then close with the rest in flight */
        usleep(100);
    CHECK(kiwi_close(db) == KIWI_OK);
    CHECK(atomic_load(&a.done) == N);
    CHECK(atomic_load(&a.failed) == 0);
    for (int i = 0; i < N; i++)
        kiwi_batch_destroy(batches[i]);
    db = open_dev(dir);
    CHECK(db != NULL);
    if (db) {
        int missing = 0;
        for (int i = 0; i < N; i++) {
            char k[32], *v = NULL;
            size_t vl;
            snprintf(k, sizeof k, "a%06d", i);
            missing += kiwi_get(db, NULL, k, strlen(k), &v, &vl, NULL) != KIWI_OK;
            kiwi_free(v);
        }
        CHECK(missing == 0);
        kiwi_close(db);
    }
    /* fsyncs: measured on a fresh db so the counter covers only this burst */
    ctest_rmtree(dir);
    dir = ctest_tmpdir("async2");
    db = open_dev(dir);
    if (!db) {
        CHECK(db != NULL);
        return;
    }
    atomic_store(&a.done, 0);
    for (int i = 0; i < N; i++) {
        char k[32];
        snprintf(k, sizeof k, "b%06d", i);
        batches[i] = kiwi_batch_create();
        kiwi_batch_put(batches[i], k, strlen(k), k, strlen(k));
        CHECK(kiwi_write_async(db, &wo, batches[i], on_done, &a) == KIWI_OK);
    }
    while (atomic_load(&a.done) < N)
        usleep(100);
    unsigned long long syncs = dbtest_stat(db, "wal_syncs");
    printf("async: %d sync writes, %llu fsyncs\n", N, syncs);
    CHECK(syncs > 0 && syncs < N / 4);
    kiwi_close(db);
    for (int i = 0; i < N; i++)
        kiwi_batch_destroy(batches[i]);
    ctest_rmtree(dir);
}

static void test_get_nowait(void)
{
    char *dir = ctest_tmpdir("nowait");
    kiwi_db *db = open_dev(dir);
    if (!db) {
        CHECK(db != NULL);
        return;
    }
    char *v = NULL;
    size_t vl = 0;
    CHECK(kiwi_get_nowait(db, NULL, "m", 1, &v, &vl, NULL) == KIWI_NOT_FOUND); /* empty db */
    kiwi_put(db, NULL, "m", 1, "1", 1, NULL);
    CHECK(kiwi_get_nowait(db, NULL, "m", 1, &v, &vl, NULL) == KIWI_OK && vl == 1 && *v == '1');
    kiwi_free(v);
    kiwi_delete(db, NULL, "m", 1, NULL);
    CHECK(kiwi_get_nowait(db, NULL, "m", 1, &v, &vl, NULL) == KIWI_NOT_FOUND); /* tombstone */
    kiwi_put(db, NULL, "n", 1, "2", 1, NULL);
    CHECK(kiwi_flush(db, NULL) == KIWI_OK);
    /* the SSTable just written: filter and index published, its block in the page cache */
    CHECK(kiwi_get_nowait(db, NULL, "n", 1, &v, &vl, NULL) == KIWI_OK && vl == 1 && *v == '2');
    kiwi_free(v);
    CHECK(kiwi_get_nowait(db, NULL, "zzz", 3, &v, &vl, NULL) == KIWI_NOT_FOUND); /* out of range */
    CHECK(kiwi_get_nowait(db, NULL, "l", 1, &v, &vl, NULL) == KIWI_NOT_FOUND); /* bloom or block */
    /* a filter that lives only in the mapping may wait for the disk: busy, nothing counted */
    char *before = kiwi_property(db, "stats");
    CHECK(kiwi_set_option(db, "block_cache_bloom_mb", "0", NULL) == KIWI_OK);
    CHECK(kiwi_get_nowait(db, NULL, "n", 1, &v, &vl, NULL) == KIWI_BUSY && v == NULL);
    char *after = kiwi_property(db, "stats");
    const char *gets_before = before ? strstr(before, "\"gets\":") : NULL;
    const char *gets_after = after ? strstr(after, "\"gets\":") : NULL;
    CHECK(gets_before && gets_after && atoi(gets_before + 7) == atoi(gets_after + 7));
    kiwi_free(before);
    kiwi_free(after);
    CHECK(kiwi_get(db, NULL, "n", 1, &v, &vl, NULL) == KIWI_OK && vl == 1 && *v == '2');
    kiwi_free(v);
    kiwi_close(db);
    ctest_rmtree(dir);
}

/* ---- kiwi_write_nowait ---------------------------------------------------------------------- */

static kiwi_status nowait_put(kiwi_db *db, bool sync, const char *k, const char *v)
{
    kiwi_batch *b = kiwi_batch_create();
    kiwi_batch_put(b, k, strlen(k), v, strlen(v));
    kiwi_write_options wo = {sync};
    kiwi_status st = kiwi_write_nowait(db, &wo, b, NULL);
    kiwi_batch_destroy(b);
    return st;
}

static bool has(kiwi_db *db, const char *k, const char *want)
{
    char *v = NULL;
    size_t vl = 0;
    kiwi_status st = kiwi_get(db, NULL, k, strlen(k), &v, &vl, NULL);
    bool ok = st == KIWI_OK && vl == strlen(want) && memcmp(v, want, vl) == 0;
    kiwi_free(v);
    return ok;
}

/* What it does when it can, what it refuses, and that a refusal leaves no trace. */
static void test_write_nowait_contract(void)
{
    char *dir = ctest_tmpdir("wnowait");
    kiwi_db *db = open_dev(dir); /* 300 entries per memtable */
    if (!db) {
        CHECK(db != NULL);
        return;
    }
    unsigned long long groups = dbtest_stat(db, "write_groups");
    CHECK(nowait_put(db, false, "a", "1") == KIWI_OK);
    CHECK(has(db, "a", "1"));
    CHECK_EQ_U64(dbtest_stat(db, "write_groups"), groups + 1);
    CHECK_EQ_U64(dbtest_stat(db, "wal_syncs"), 0);
    /* a sync write is always refused, and nothing of it is written */
    CHECK(nowait_put(db, true, "b", "2") == KIWI_BUSY);
    CHECK(!has(db, "b", "2"));
    /* NULL options: the db's sync_writes default (false in dev mode) */
    kiwi_batch *b = kiwi_batch_create();
    kiwi_batch_put(b, "c", 1, "3", 1);
    kiwi_batch_delete(b, "a", 1);
    char *err = NULL;
    CHECK(kiwi_write_nowait(db, NULL, b, &err) == KIWI_OK && err == NULL);
    CHECK(has(db, "c", "3") && !has(db, "a", "1"));
    /* an empty batch is done at once; an oversized key is refused as kiwi_write refuses it */
    kiwi_batch_clear(b);
    CHECK(kiwi_write_nowait(db, NULL, b, &err) == KIWI_OK);
    char *big = calloc(1, KIWI_MAX_KEY_SIZE + 1);
    kiwi_batch_put(b, big, KIWI_MAX_KEY_SIZE + 1, "v", 1);
    CHECK(kiwi_write_nowait(db, NULL, b, &err) == KIWI_INVALID_ARGUMENT);
    CHECK(err != NULL && strstr(err, "KIWI_MAX_KEY_SIZE") != NULL);
    kiwi_free(err);
    err = NULL;
    free(big);
    CHECK(kiwi_write_nowait(NULL, NULL, b, NULL) == KIWI_INVALID_ARGUMENT);
    CHECK(kiwi_write_nowait(db, NULL, NULL, NULL) == KIWI_INVALID_ARGUMENT);
    /* a full memtable needs a rotation (a new WAL file): busy until a kiwi_write rotates */
    int written = 0;
    char k[32];
    for (int i = 0; i < 400; i++) {
        snprintf(k, sizeof k, "m%04d", i);
        if (nowait_put(db, false, k, k) != KIWI_OK)
            break;
        written++;
    }
    CHECK_EQ_U64(written, 300 - 3); /* "a", its tombstone and "c" are in it already */
    snprintf(k, sizeof k, "m%04d", written);
    CHECK(!has(db, k, k));
    kiwi_batch_clear(b);
    kiwi_batch_put(b, k, strlen(k), k, strlen(k));
    CHECK(kiwi_write(db, NULL, b, NULL) == KIWI_OK); /* rotates */
    CHECK(nowait_put(db, false, "after", "rotation") == KIWI_OK);
    kiwi_batch_destroy(b);
    CHECK(kiwi_close(db) == KIWI_OK);
    /* every write it acknowledged is in the WAL: a reopen replays it */
    db = open_dev(dir);
    if (!db) {
        CHECK(db != NULL);
        return;
    }
    int missing = 0;
    for (int i = 0; i <= written; i++) {
        snprintf(k, sizeof k, "m%04d", i);
        missing += !has(db, k, k);
    }
    CHECK(missing == 0 && has(db, "c", "3") && has(db, "after", "rotation") && !has(db, "b", "2"));
    kiwi_close(db);
    ctest_rmtree(dir);
}

/* A writer held inside its WAL write (so it is the leader, at the head of the queue). */
static atomic_bool g_hold_wal, g_held_wal;
static ssize_t (*g_real_write)(int, const void *, size_t);
static ssize_t (*g_real_writev)(int, const struct iovec *, int);

static bool is_log(int fd)
{
    char link[64], target[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    return n > 4 && memcmp(target + n - 4, ".log", 4) == 0;
}

static void hold_if_log(int fd)
{
    while (atomic_load(&g_hold_wal) && is_log(fd)) {
        atomic_store(&g_held_wal, true);
        usleep(1000);
    }
}

static ssize_t holding_write(int fd, const void *buf, size_t n)
{
    hold_if_log(fd);
    return g_real_write(fd, buf, n);
}

static ssize_t holding_writev(int fd, const struct iovec *iov, int cnt)
{
    hold_if_log(fd);
    return g_real_writev(fd, iov, cnt);
}

static void *held_put(void *db)
{
    kiwi_write_options wo = {false};
    if (kiwi_put(db, &wo, "leader", 6, "1", 1, NULL) != KIWI_OK)
        fail("held put");
    return NULL;
}

static void test_write_nowait_busy_behind_a_leader(void)
{
    char *dir = ctest_tmpdir("wnowaitq");
    /* the hook goes in before the db's threads exist and comes out after they are gone */
    g_real_write = kw_syscalls.write;
    g_real_writev = kw_syscalls.writev;
    kw_syscalls.write = holding_write;
    kw_syscalls.writev = holding_writev;
    atomic_store(&g_errors, 0);
    kiwi_db *db = open_dev(dir);
    if (!db) {
        CHECK(db != NULL);
        kw_syscalls_reset();
        return;
    }
    atomic_store(&g_held_wal, false);
    atomic_store(&g_hold_wal, true);
    pthread_t t;
    pthread_create(&t, NULL, held_put, db);
    for (int i = 0; i < 5000 && !atomic_load(&g_held_wal); i++)
        usleep(1000);
    CHECK(atomic_load(&g_held_wal));
    CHECK(nowait_put(db, false, "x", "1") == KIWI_BUSY); /* a leader is writing */
    atomic_store(&g_hold_wal, false);
    pthread_join(t, NULL);
    CHECK(nowait_put(db, false, "x", "1") == KIWI_OK); /* the queue is empty again */
    CHECK(has(db, "leader", "1") && has(db, "x", "1"));
    CHECK(atomic_load(&g_errors) == 0);
    kiwi_close(db);
    kw_syscalls_reset();
    ctest_rmtree(dir);
}

/* Past l0_slowdown_writes_trigger every write owes a 1 ms delay: nowait declines it. */
static void test_write_nowait_busy_when_slowing_down(void)
{
    char *dir = ctest_tmpdir("wnowaitl0");
    kiwi_options *o = kiwi_options_create("dev");
    char *err = NULL;
    CHECK(kiwi_options_set(o, "l0_compaction_threshold", "1000", &err) == KIWI_OK);
    CHECK(kiwi_options_set(o, "l0_slowdown_writes_trigger", "2", &err) == KIWI_OK);
    CHECK(kiwi_options_set(o, "l0_stop_writes_trigger", "1000", &err) == KIWI_OK);
    kiwi_db *db = NULL;
    CHECK(kiwi_open(dir, o, &db, &err) == KIWI_OK);
    kiwi_options_destroy(o);
    if (!db) {
        fprintf(stderr, "open: %s\n", err ? err : "?");
        kiwi_free(err);
        return;
    }
    CHECK(nowait_put(db, false, "k1", "1") == KIWI_OK && kiwi_flush(db, NULL) == KIWI_OK);
    CHECK(nowait_put(db, false, "k2", "2") == KIWI_OK && kiwi_flush(db, NULL) == KIWI_OK);
    CHECK_EQ_U64(dbtest_stat(db, "slowdowns"), 0);
    CHECK(nowait_put(db, false, "k3", "3") == KIWI_BUSY); /* two L0 files */
    CHECK(kiwi_put(db, NULL, "k3", 2, "3", 1, NULL) == KIWI_OK); /* the slow path takes it */
    CHECK(dbtest_stat(db, "slowdowns") >= 1);
    CHECK(has(db, "k1", "1") && has(db, "k2", "2") && has(db, "k3", "3"));
    kiwi_close(db);
    ctest_rmtree(dir);
}

/* ---- group commit: gathering synced groups (db_write.c; write_path.md, "Gathering") ---- */

#if PER_WRITER < 1000
#define SYNC_PER_WRITER 60 /* ThreadSanitizer */
#else
#define SYNC_PER_WRITER 100
#endif

/* The WAL's bytes as written, and how many of them an fdatasync has completed on: installed as
 * kw_syscalls hooks before the db's threads exist. */
static pthread_mutex_t g_wal_mu = PTHREAD_MUTEX_INITIALIZER;
static char *g_wal_bytes;
static size_t g_wal_len, g_wal_cap, g_wal_synced;
static int g_wal_fd = -1;
static atomic_int g_other_logs; /* writes to a second log (the check assumes one WAL) */
static int (*g_real_fdatasync)(int);

static void shadow_append(int fd, const void *p, size_t n)
{
    if (!is_log(fd))
        return;
    pthread_mutex_lock(&g_wal_mu);
    if (g_wal_fd < 0)
        g_wal_fd = fd;
    if (fd != g_wal_fd) {
        atomic_fetch_add(&g_other_logs, 1);
    } else {
        if (g_wal_len + n > g_wal_cap) {
            g_wal_cap = (g_wal_len + n) * 2;
            g_wal_bytes = realloc(g_wal_bytes, g_wal_cap);
        }
        memcpy(g_wal_bytes + g_wal_len, p, n);
        g_wal_len += n;
    }
    pthread_mutex_unlock(&g_wal_mu);
}

static ssize_t shadow_write(int fd, const void *buf, size_t n)
{
    ssize_t r = g_real_write(fd, buf, n);
    if (r > 0)
        shadow_append(fd, buf, (size_t)r);
    return r;
}

static ssize_t shadow_writev(int fd, const struct iovec *iov, int cnt)
{
    ssize_t r = g_real_writev(fd, iov, cnt);
    size_t left = r > 0 ? (size_t)r : 0; /* a short write keeps only its prefix */
    for (int i = 0; i < cnt && left > 0; i++) {
        size_t n = iov[i].iov_len < left ? iov[i].iov_len : left;
        shadow_append(fd, iov[i].iov_base, n);
        left -= n;
    }
    return r;
}

/* Bytes written before the fdatasync started are durable once it returns. */
static int shadow_fdatasync(int fd)
{
    pthread_mutex_lock(&g_wal_mu);
    bool mine = fd == g_wal_fd;
    size_t len = g_wal_len;
    pthread_mutex_unlock(&g_wal_mu);
    int rc = g_real_fdatasync(fd);
    pthread_mutex_lock(&g_wal_mu);
    if (rc == 0 && mine && len > g_wal_synced)
        g_wal_synced = len;
    pthread_mutex_unlock(&g_wal_mu);
    return rc;
}

static bool key_synced(const char *k)
{
    pthread_mutex_lock(&g_wal_mu);
    bool found = memmem(g_wal_bytes, g_wal_synced, k, strlen(k)) != NULL;
    pthread_mutex_unlock(&g_wal_mu);
    return found;
}

typedef struct {
    kiwi_db *db;
    int t;
    bool check_synced; /* each acknowledged key must be in the synced WAL bytes */
} sync_job;

static void sync_key(char *k, size_t size, int t, int i)
{
    snprintf(k, size, "s%d-%06d|", t, i); /* fixed width: no key is part of another */
}

static void *sync_writer(void *arg)
{
    sync_job *j = arg;
    kiwi_write_options wo = {true};
    char k[32];
    for (int i = 0; i < SYNC_PER_WRITER; i++) {
        sync_key(k, sizeof k, j->t, i);
        if (kiwi_put(j->db, &wo, k, strlen(k), "v", 1, NULL) != KIWI_OK)
            fail("sync put");
        else if (j->check_synced && !key_synced(k))
            fail("a sync put returned before an fdatasync covered its WAL record");
    }
    return NULL;
}

static void run_sync_writers(kiwi_db *db, int nthreads, bool check_synced)
{
    pthread_t th[WRITERS];
    sync_job jobs[WRITERS];
    for (int t = 0; t < nthreads; t++) {
        jobs[t] = (sync_job){db, t, check_synced};
        pthread_create(&th[t], NULL, sync_writer, &jobs[t]);
    }
    for (int t = 0; t < nthreads; t++)
        pthread_join(th[t], NULL);
}

static int missing_sync_keys(kiwi_db *db, int nthreads)
{
    int missing = 0;
    char k[32];
    for (int t = 0; t < nthreads; t++)
        for (int i = 0; i < SYNC_PER_WRITER; i++) {
            sync_key(k, sizeof k, t, i);
            missing += !has(db, k, "v");
        }
    return missing;
}

/* Four threads of sync puts share fdatasyncs: leaders gather, and groups have several members. A
 * lone sync writer never gathers, and after concurrent writers it gathers at most once (its first
 * group learns it is alone). */
static void test_sync_groups_gather(void)
{
    char *dir = ctest_tmpdir("gather");
    kiwi_db *db = NULL;
    CHECK(kiwi_open(dir, NULL, &db, NULL) == KIWI_OK);
    if (!db)
        return;
    atomic_store(&g_errors, 0);
    run_sync_writers(db, 1, false);
    CHECK_EQ_U64(atomic_load(&db->gathers), 0);
    CHECK_EQ_U64(dbtest_stat(db, "write_groups"), SYNC_PER_WRITER);
    run_sync_writers(db, WRITERS, false);
    unsigned long long writes = (unsigned long long)SYNC_PER_WRITER * (WRITERS + 1);
    unsigned long long groups = dbtest_stat(db, "write_groups");
    unsigned long long gathers = atomic_load(&db->gathers);
    printf("gather: %d threads x %d sync puts in %llu groups; %llu gathers (%llu handed over, "
           "%llu at the bound, %.0f us each)\n",
           WRITERS, SYNC_PER_WRITER, groups - SYNC_PER_WRITER, gathers,
           (unsigned long long)atomic_load(&db->gather_handoffs),
           (unsigned long long)atomic_load(&db->gather_timeouts),
           gathers ? (double)atomic_load(&db->gather_micros) / (double)gathers : 0.0);
    CHECK(groups < writes);
    CHECK(gathers > 0);
    CHECK(atomic_load(&db->gather_handoffs) + atomic_load(&db->gather_timeouts) <= gathers);
    CHECK_EQ_U64(dbtest_stat(db, "wal_syncs"), groups);
    run_sync_writers(db, 1, false); /* t = 0 again: overwrites */
    CHECK(atomic_load(&db->gathers) <= gathers + 1);
    CHECK(atomic_load(&g_errors) == 0);
    CHECK(kiwi_close(db) == KIWI_OK);
    ctest_rmtree(dir);
}

/* DESIGN §4: a sync write is on stable storage when it returns. Every acknowledged put's record
 * must lie in WAL bytes an fdatasync started after they were written and finished before the
 * put returned — whether the thread led its group, was a member, or took a gathering over — and
 * every put is there after a reopen. */
static void test_sync_ack_after_fdatasync(void)
{
    char *dir = ctest_tmpdir("gathersync");
    g_real_write = kw_syscalls.write;
    g_real_writev = kw_syscalls.writev;
    g_real_fdatasync = kw_syscalls.fdatasync;
    kw_syscalls.write = shadow_write;
    kw_syscalls.writev = shadow_writev;
    kw_syscalls.fdatasync = shadow_fdatasync;
    atomic_store(&g_errors, 0);
    kiwi_db *db = NULL;
    CHECK(kiwi_open(dir, NULL, &db, NULL) == KIWI_OK);
    if (db) {
        run_sync_writers(db, WRITERS, true);
        CHECK(atomic_load(&db->gathers) > 0);
        CHECK(kiwi_close(db) == KIWI_OK);
    }
    kw_syscalls_reset();
    CHECK(atomic_load(&g_errors) == 0);
    CHECK(atomic_load(&g_other_logs) == 0);
    CHECK(kiwi_open(dir, NULL, &db, NULL) == KIWI_OK);
    if (db) {
        CHECK(missing_sync_keys(db, WRITERS) == 0);
        kiwi_close(db);
    }
    free(g_wal_bytes);
    ctest_rmtree(dir);
}

int main(void)
{
    RUN(test_writers_readers_flush);
    RUN(test_writers_readers_flush_nowait);
    RUN(test_async_group_commit);
    RUN(test_get_nowait);
    RUN(test_write_nowait_contract);
    RUN(test_write_nowait_busy_behind_a_leader);
    RUN(test_write_nowait_busy_when_slowing_down);
    RUN(test_sync_groups_gather);
    RUN(test_sync_ack_after_fdatasync);
    return ctest_summary();
}
