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
 * The same with every non-sync write tried through kiwi_write_nowait first, and kiwi_get_nowait's
 * contract (the readers' first try). Group commit itself (async writes, kiwi_write_nowait's
 * contract, the gathering of synced groups) is tested in test_group_commit.c.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctest.h"
#include "dbtest.h"
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
    static const char *const settings[] = {"max_memtable_entries", "300", NULL};
    return dbtest_open(dir, "dev", settings);
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
int main(void)
{
    RUN(test_writers_readers_flush);
    RUN(test_writers_readers_flush_nowait);
    RUN(test_get_nowait);
    return ctest_summary();
}
