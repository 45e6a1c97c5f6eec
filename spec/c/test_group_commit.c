/*
 * test_group_commit.c: the writer queue with group commit (db_group.c), run plain, under
 * ASan+UBSan and under ThreadSanitizer (make test-tsan):
 *  - kiwi_write_async: many async sync-writes share fdatasyncs, and kiwi_close finishes the
 *    queued ones first;
 *  - kiwi_write_nowait: what it writes inline, what it refuses with KIWI_BUSY (a sync write, a
 *    full memtable, a leader inside its WAL write, L0 past the slowdown trigger), and that a
 *    refusal leaves no trace;
 *  - gathering of synced groups: 4 sync writers share fdatasyncs, a lone one never waits, no sync
 *    put returns before an fdatasync covering its WAL record has finished, and the gathering
 *    counters are in the stats JSON.
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
#include "env.h" /* kw_syscalls: holding a leader inside its WAL write, shadowing the WAL */
#include "kiwi.h"

#if defined(__SANITIZE_THREAD__)
#define SYNC_PER_WRITER 60 /* ThreadSanitizer */
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SYNC_PER_WRITER 60
#endif
#endif
#ifndef SYNC_PER_WRITER
#define SYNC_PER_WRITER 100
#endif
#define WRITERS 4

static atomic_int g_errors;

static void fail(const char *what)
{
    fprintf(stderr, "group commit failure: %s\n", what);
    atomic_fetch_add(&g_errors, 1);
}

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

/* ---- group commit: gathering synced groups (db_group.c; write_path.md, "Gathering") ---- */


/* The WAL's bytes as written, and how many of them an fdatasync has completed on: installed as
 * kw_syscalls hooks before the db's threads exist. A mapped WAL (wal_writes=mapped) calls no
 * write(2): there the fdatasync hook reads the file (pread sees the mapping's bytes, one page
 * cache) before the real fdatasync starts, and that copy is what it made durable. */
static pthread_mutex_t g_wal_mu = PTHREAD_MUTEX_INITIALIZER;
static char *g_wal_bytes;
static size_t g_wal_len, g_wal_cap, g_wal_synced;
static int g_wal_fd = -1;
static atomic_int g_other_logs; /* writes to a second log (the check assumes one WAL) */
static int (*g_real_fdatasync)(int);
static bool g_wal_mapped;

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

/* A mapped WAL's bytes, read at the start of an fdatasync (NULL if fd is not the WAL's). */
static char *mapped_snapshot(int fd, size_t *len)
{
    if (!g_wal_mapped || !is_log(fd))
        return NULL;
    pthread_mutex_lock(&g_wal_mu);
    if (g_wal_fd < 0)
        g_wal_fd = fd;
    bool mine = fd == g_wal_fd;
    pthread_mutex_unlock(&g_wal_mu);
    struct stat st;
    if (!mine || fstat(fd, &st) != 0) {
        atomic_fetch_add(&g_other_logs, !mine);
        return NULL;
    }
    char *copy = malloc((size_t)st.st_size + 1);
    ssize_t r = pread(fd, copy, (size_t)st.st_size, 0);
    *len = r > 0 ? (size_t)r : 0;
    return copy;
}

/* Bytes written before the fdatasync started are durable once it returns. */
static int shadow_fdatasync(int fd)
{
    size_t snap_len = 0;
    char *snap = mapped_snapshot(fd, &snap_len);
    if (snap != NULL) {
        int rc = g_real_fdatasync(fd);
        pthread_mutex_lock(&g_wal_mu);
        if (rc == 0 && snap_len >= g_wal_synced) { /* the log only grows: keep the newer copy */
            free(g_wal_bytes);
            g_wal_bytes = snap;
            g_wal_len = g_wal_cap = g_wal_synced = snap_len;
            snap = NULL;
        }
        pthread_mutex_unlock(&g_wal_mu);
        free(snap);
        return rc;
    }
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
static void sync_ack_after_fdatasync(const char *wal_writes)
{
    char *dir = ctest_tmpdir("gathersync");
    static const char *const write_settings[] = {"wal_writes", "write", NULL};
    static const char *const mapped_settings[] = {"wal_writes", "mapped", NULL};
    g_wal_mapped = strcmp(wal_writes, "mapped") == 0;
    g_wal_fd = -1;
    g_wal_len = g_wal_synced = 0;
    atomic_store(&g_other_logs, 0);
    g_real_write = kw_syscalls.write;
    g_real_writev = kw_syscalls.writev;
    g_real_fdatasync = kw_syscalls.fdatasync;
    kw_syscalls.write = shadow_write;
    kw_syscalls.writev = shadow_writev;
    kw_syscalls.fdatasync = shadow_fdatasync;
    atomic_store(&g_errors, 0);
    kiwi_db *db = dbtest_open(dir, "prod", g_wal_mapped ? mapped_settings : write_settings);
    CHECK(db != NULL);
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
    g_wal_bytes = NULL;
    g_wal_cap = 0;
    ctest_rmtree(dir);
}

static void test_sync_ack_after_fdatasync(void)
{
    sync_ack_after_fdatasync("write");
}

static void test_sync_ack_after_fdatasync_mapped(void)
{
    sync_ack_after_fdatasync("mapped");
}

/* The gathering counters are in the stats JSON, at 0 on a fresh db, and after four threads of
 * sync puts equal to what the db counted, with gathers > 0. */
static void test_gather_stats(void)
{
    static const char *const names[] = {"gathers", "gather_timeouts", "gather_handoffs",
                                        "gather_micros"};
    char *dir = ctest_tmpdir("gatherstats");
    kiwi_db *db = NULL;
    CHECK(kiwi_open(dir, NULL, &db, NULL) == KIWI_OK);
    if (!db) {
        ctest_rmtree(dir);
        return;
    }
    char *stats = kiwi_property(db, "stats");
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char pat[48];
        snprintf(pat, sizeof pat, "\"%s\":0,", names[i]);
        CHECK(stats != NULL && strstr(stats, pat) != NULL);
    }
    kiwi_free(stats);
    atomic_store(&g_errors, 0);
    run_sync_writers(db, WRITERS, false);
    unsigned long long gathers = dbtest_stat(db, "gathers");
    unsigned long long timeouts = dbtest_stat(db, "gather_timeouts");
    unsigned long long handoffs = dbtest_stat(db, "gather_handoffs");
    unsigned long long micros = dbtest_stat(db, "gather_micros");
    printf("gather stats: gathers %llu, gather_timeouts %llu, gather_handoffs %llu, "
           "gather_micros %llu\n",
           gathers, timeouts, handoffs, micros);
    CHECK(gathers > 0 && micros > 0);
    CHECK(handoffs + timeouts <= gathers);
    CHECK_EQ_U64(gathers, atomic_load(&db->gathers));
    CHECK_EQ_U64(timeouts, atomic_load(&db->gather_timeouts));
    CHECK_EQ_U64(handoffs, atomic_load(&db->gather_handoffs));
    CHECK_EQ_U64(micros, atomic_load(&db->gather_micros));
    CHECK(atomic_load(&g_errors) == 0);
    CHECK(kiwi_close(db) == KIWI_OK);
    ctest_rmtree(dir);
}

int main(void)
{
    RUN(test_async_group_commit);
    RUN(test_write_nowait_contract);
    RUN(test_write_nowait_busy_behind_a_leader);
    RUN(test_write_nowait_busy_when_slowing_down);
    RUN(test_sync_groups_gather);
    RUN(test_sync_ack_after_fdatasync);
    RUN(test_sync_ack_after_fdatasync_mapped);
    RUN(test_gather_stats);
    return ctest_summary();
}
