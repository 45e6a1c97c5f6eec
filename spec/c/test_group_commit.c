/*
 * test_group_commit.c: the writer queue (db_group.c) seen through kiwi_write_async and
 * kiwi_write_nowait, run plain, under ASan+UBSan and under ThreadSanitizer (make test-tsan):
 *  - kiwi_write_async: many async sync-writes share fdatasyncs, and kiwi_close finishes the
 *    queued ones first;
 *  - kiwi_write_nowait: what it writes inline, what it refuses with KIWI_BUSY (a sync write, a
 *    full memtable, a leader inside its WAL write, L0 past the slowdown trigger), and that a
 *    refusal leaves no trace.
 * The gathering of synced groups is tested in test_group_gather.c.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctest.h"
#include "dbtest.h"
#include "env.h" /* kw_syscalls: holding a leader inside its WAL write */
#include "group_fixture.h"
#include "kiwi.h"

static kiwi_db *open_dev(const char *dir)
{
    static const char *const settings[] = {"max_memtable_entries", "300", NULL};
    return dbtest_open(dir, "dev", settings);
}

/* The leader is held inside its WAL write(2) below, so that db appends with write(2). */
static kiwi_db *open_dev_write(const char *dir)
{
    static const char *const settings[] = {"max_memtable_entries", "300", "wal_writes", "write",
                                           NULL};
    return dbtest_open(dir, "dev", settings);
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
    kiwi_db *db = open_dev_write(dir);
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

int main(void)
{
    RUN(test_async_group_commit);
    RUN(test_write_nowait_contract);
    RUN(test_write_nowait_busy_behind_a_leader);
    RUN(test_write_nowait_busy_when_slowing_down);
    return ctest_summary();
}
