/*
 * test_read_compaction.c: read-triggered compaction (compaction.h, docs/internals/compaction.md)
 * through the public API: gets and iterators that consult several files spend the first file's
 * read budget and compact it (not for reads the first file answers, not for samples one file
 * holds); a spent file sinks to what it is read with; data and snapshots intact; concurrent
 * readers (the test also runs under TSan).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctest.h"
#include "dbtest.h"
#include "kiwi.h"

/* Opens dir in prod mode with the given settings: name, value, ..., NULL. NULL on failure. */
static kiwi_db *open_with(const char *dir, const char *const *settings)
{
    kiwi_db *db = dbtest_open(dir, "prod", settings);
    CHECK(db != NULL);
    return db;
}

/* Background compaction off: every flush stays in L0 until a manual compaction. */
#define NO_BACKGROUND_COMPACTION "l0_compaction_threshold", "1000", \
    "l0_slowdown_writes_trigger", "10000", "l0_stop_writes_trigger", "10000"

/* ---- read-triggered compaction ---- */

/* Files of `level` per the stats property. */
static unsigned long long level_files(kiwi_db *db, int level)
{
    char pat[40];
    snprintf(pat, sizeof pat, "{\"level\":%d,\"files\":", level);
    char *s = kiwi_property(db, "stats");
    const char *p = s ? strstr(s, pat) : NULL;
    unsigned long long v = p ? strtoull(p + strlen(pat), NULL, 10) : 0;
    kiwi_free(s);
    return v;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Waits (up to 20 s: sanitizers are slow) until stat `name` reaches want and no compaction runs;
 * true if it did. */
static bool wait_stat(kiwi_db *db, const char *name, unsigned long long want)
{
    for (int i = 0; i < 4000; i++) {
        if (dbtest_stat(db, name) >= want && dbtest_stat(db, "compactions_running") == 0)
            return true;
        sleep_ms(5);
    }
    return false;
}

/* Lets a wrongly woken compaction start and finish, then: did none run? */
static bool no_compaction_after_a_while(kiwi_db *db)
{
    sleep_ms(300);
    return dbtest_stat(db, "compactions") == 0 && dbtest_stat(db, "compactions_running") == 0;
}

#define RKEYS 600

/* Three overlapping L0 files over keys 0..RKEYS-1 (no background compaction by count):
 * A (oldest): every key "a-k"; then `snap` is taken; B: even keys "b-k", and k % 5 == 0 deleted
 * (even ones after their put); C (newest): k % 3 == 0 "c-k". model[k]: the latest value or NULL. */
static kiwi_db *open_three_files(const char *dir, char **model, const kiwi_snapshot **snap)
{
    static const char *const settings[] = {NO_BACKGROUND_COMPACTION, NULL};
    kiwi_db *db = open_with(dir, settings);
    if (!db)
        return NULL;
    char key[32], val[64];
    for (int file = 0; file < 3; file++) {
        for (int k = 0; k < RKEYS; k++) {
            snprintf(key, sizeof key, "g%05d", k);
            bool put = file == 0 || (file == 1 && k % 2 == 0) || (file == 2 && k % 3 == 0);
            if (put) {
                snprintf(val, sizeof val, "%c-%d-padding", 'a' + file, k);
                kiwi_put(db, NULL, key, strlen(key), val, strlen(val), NULL);
                free(model[k]);
                model[k] = strdup(val);
            }
            if (file == 1 && k % 5 == 0) {
                kiwi_delete(db, NULL, key, strlen(key), NULL);
                free(model[k]);
                model[k] = NULL;
            }
        }
        CHECK(kiwi_flush(db, NULL) == KIWI_OK);
        if (file == 0)
            *snap = kiwi_snapshot_create(db);
    }
    CHECK_EQ_U64(level_files(db, 0), 3);
    return db;
}

/* Gets and a full scan (at the snapshot when snap_view) against the model, or against the
 * "a-k" values of file A. Returns the number of mismatches. */
static int check_three_files(kiwi_db *db, char **model, const kiwi_snapshot *snap)
{
    kiwi_read_options ro = {snap, true};
    char key[32], want[64];
    int bad = 0, live = 0, seen = 0;
    for (int k = 0; k < RKEYS; k++) {
        snprintf(key, sizeof key, "g%05d", k);
        const char *w = model[k];
        if (snap) {
            snprintf(want, sizeof want, "a-%d-padding", k);
            w = want;
        }
        char *v = NULL;
        size_t vl = 0;
        kiwi_status st = kiwi_get(db, &ro, key, strlen(key), &v, &vl, NULL);
        bad += w == NULL ? st != KIWI_NOT_FOUND
                         : st != KIWI_OK || vl != strlen(w) || memcmp(v, w, vl) != 0;
        live += w != NULL;
        kiwi_free(v);
    }
    kiwi_iter *it = kiwi_iter_create(db, &ro);
    for (kiwi_iter_seek_to_first(it); kiwi_iter_valid(it); kiwi_iter_next(it), seen++) {
        size_t kl, vl;
        const char *k = kiwi_iter_key(it, &kl), *v = kiwi_iter_value(it, &vl);
        int n = kl == 6 ? atoi(k + 1) : -1;
        const char *w = n >= 0 && n < RKEYS ? model[n] : NULL;
        if (snap && n >= 0 && n < RKEYS) {
            snprintf(want, sizeof want, "a-%d-padding", n);
            w = want;
        }
        bad += w == NULL || vl != strlen(w) || memcmp(v, w, vl) != 0;
    }
    bad += kiwi_iter_status(it, NULL) != KIWI_OK;
    kiwi_iter_destroy(it);
    return bad + (seen != live);
}

/* n gets of keys that C (the newest file) does not hold: each consults C, then B or A. */
static void gets_past_newest(kiwi_db *db, int n, int *cursor)
{
    char key[32];
    while (n > 0) {
        int k = (*cursor)++ % RKEYS;
        if (k % 3 == 0)
            continue;
        snprintf(key, sizeof key, "g%05d", k);
        char *v = NULL;
        size_t vl;
        kiwi_get(db, NULL, key, strlen(key), &v, &vl, NULL);
        kiwi_free(v);
        n--;
    }
}

/* Gets past the newest file, 100 at a time, until `want` read-triggered compactions have run
 * (at most `limit` gets); returns how many gets it took. */
static int gets_until_read_compactions(kiwi_db *db, unsigned long long want, int limit,
                                       int *cursor)
{
    int n = 0;
    while (n < limit && dbtest_stat(db, "read_compactions") < want) {
        gets_past_newest(db, 100, cursor);
        n += 100;
        if (dbtest_stat(db, "compactions_running") > 0)
            wait_stat(db, "compactions_running", 0); /* let it finish before charging more */
    }
    return n;
}

/* Gets that consult several files spend the first file's budget (its size + 1 MiB, at 128 bytes
 * a bloom probe in vain, 4 KiB a block search): a compaction (reason "reads") then leaves the
 * keys in one level. Gets answered by the first file consulted charge nothing. Data and a
 * snapshot taken before are intact. */
static void test_reads_trigger_compaction(void)
{
    char *dir = ctest_tmpdir("creads");
    char *model[RKEYS] = {0};
    const kiwi_snapshot *snap = NULL;
    kiwi_db *db = open_three_files(dir, model, &snap);
    if (!db)
        return;
    char key[32];
    for (int i = 0; i < 10000; i++) { /* found in C: were they charged, 10000 x 128 > 1 MiB */
        snprintf(key, sizeof key, "g%05d", (i * 3) % RKEYS);
        char *v = NULL;
        size_t vl;
        CHECK(kiwi_get(db, NULL, key, strlen(key), &v, &vl, NULL) == KIWI_OK);
        kiwi_free(v);
    }
    CHECK(no_compaction_after_a_while(db));
    int cursor = 0;
    gets_past_newest(db, 250, &cursor); /* at most 250 x 4 KiB < 1 MiB: not spent yet */
    CHECK(no_compaction_after_a_while(db));
    CHECK_EQ_U64(level_files(db, 0), 3);
    int n = 250 + gets_until_read_compactions(db, 1, 20000, &cursor);
    printf("  # read-triggered compaction after %d gets past the newest file\n", n);
    CHECK(wait_stat(db, "read_compactions", 1));
    CHECK(n > 4000 && n < 12000); /* ~(1 MiB + the three files) / 128 */
    CHECK_EQ_U64(dbtest_stat(db, "read_compactions"), 1);
    CHECK_EQ_U64(level_files(db, 0), 0);
    CHECK(level_files(db, 1) >= 1);
    CHECK_EQ_U64(level_files(db, 2) + level_files(db, 3), 0);
    CHECK_EQ_U64(check_three_files(db, model, NULL), 0);
    CHECK_EQ_U64(check_three_files(db, model, snap), 0); /* the snapshot kept its versions */
    gets_past_newest(db, 10000, &cursor); /* one file per key now: nothing to charge */
    sleep_ms(300);
    CHECK_EQ_U64(dbtest_stat(db, "compactions"), 1);
    kiwi_snapshot_release(db, snap);
    kiwi_close(db);
    for (int k = 0; k < RKEYS; k++)
        free(model[k]);
    ctest_rmtree(dir);
}

enum { SCAN_KEYS = 300, SCAN_VLEN = 8192 };

/* Full scans (8 KiB values); returns the number of wrong entries. */
static int scan_all(kiwi_db *db, int times)
{
    int bad = 0;
    for (int t = 0; t < times; t++) {
        kiwi_iter *it = kiwi_iter_create(db, NULL);
        int n = 0;
        for (kiwi_iter_seek_to_first(it); kiwi_iter_valid(it); kiwi_iter_next(it), n++) {
            size_t vl;
            const char *v = kiwi_iter_value(it, &vl);
            bad += vl != SCAN_VLEN || v[0] != 'a' + n % 26 || v[SCAN_VLEN - 1] != v[0];
        }
        bad += n != SCAN_KEYS || kiwi_iter_status(it, NULL) != KIWI_OK;
        kiwi_iter_destroy(it);
    }
    return bad;
}

static void put_scan_keys(kiwi_db *db, int from, int to, char *val)
{
    char key[32];
    for (int k = from; k < to; k++) {
        snprintf(key, sizeof key, "s%05d", k);
        memset(val, 'a' + k % 26, SCAN_VLEN);
        kiwi_put(db, NULL, key, strlen(key), val, SCAN_VLEN, NULL);
    }
    CHECK(kiwi_flush(db, NULL) == KIWI_OK);
}

/* Iterators sample about once per MiB read and charge that MiB to the first of the files
 * overlapping the sample, only when two or more do: scans over disjoint L0 files compact
 * nothing; once a file overlapping them all is added, a few scans compact L0. */
static void test_iterator_triggers_compaction(void)
{
    char *dir = ctest_tmpdir("citreads");
    static const char *const settings[] = {NO_BACKGROUND_COMPACTION, NULL};
    kiwi_db *db = open_with(dir, settings);
    if (!db)
        return;
    char *val = malloc(SCAN_VLEN);
    for (int file = 0; file < 3; file++) /* disjoint: keys [100 f, 100 f + 100) */
        put_scan_keys(db, 100 * file, 100 * file + 100, val);
    CHECK_EQ_U64(scan_all(db, 20), 0); /* 48 MiB read, every sample in one file */
    CHECK(no_compaction_after_a_while(db));
    put_scan_keys(db, 0, SCAN_KEYS, val); /* overlaps all three */
    CHECK_EQ_U64(level_files(db, 0), 4);
    int scans = 0, bad = 0;
    for (; scans < 200 && dbtest_stat(db, "read_compactions") == 0; scans++) {
        bad += scan_all(db, 1);
        /* a scan that spent a budget woke the compaction thread: on a loaded machine it may
         * start a while later, and scans meanwhile would be counted against the budget */
        for (int i = 0; i < 40 && dbtest_stat(db, "read_compactions") == 0 &&
                        dbtest_stat(db, "compactions_running") == 0; i++)
            sleep_ms(5);
        if (dbtest_stat(db, "compactions_running") > 0)
            wait_stat(db, "compactions_running", 0);
    }
    printf("  # read-triggered compaction after %d full scans\n", scans);
    CHECK(wait_stat(db, "read_compactions", 1));
    CHECK(scans <= 10); /* ~6 MiB of samples (the new file + 1 MiB, then all four) a 4.8 */
    CHECK_EQ_U64(dbtest_stat(db, "gets"), 0);
    CHECK_EQ_U64(level_files(db, 0), 0);
    CHECK(level_files(db, 1) >= 1);
    bad += scan_all(db, 1);
    CHECK_EQ_U64(bad, 0);
    free(val);
    kiwi_close(db);
    ctest_rmtree(dir);
}

/* "old-k" padded to 3500 bytes: 600 of them make a 2 MiB last-level file. */
static size_t old_value(int k, char *buf)
{
    int n = snprintf(buf, 64, "old-%d-", k);
    memset(buf + n, 'x', 3500 - (size_t)n);
    return 3500;
}

/* A spent L0 file that overlaps nothing in L1..L2 is moved down level by level (it stays spent)
 * until it meets the 2 MiB last-level file it is read with; merging with that costs more than
 * the file's budget, so it waits until its reads have paid for the merge too (about 2 MiB more,
 * 128 bytes a get, 4 KiB for the ~1% the bloom filter lets through: ~13000 gets). A snapshot
 * taken before the new writes keeps its view. */
static void test_read_compaction_sinks_to_overlap(void)
{
    char *dir = ctest_tmpdir("csink");
    static const char *const settings[] = {NO_BACKGROUND_COMPACTION, NULL};
    kiwi_db *db = open_with(dir, settings);
    if (!db)
        return;
    char key[32], val[3500];
    for (int k = 0; k < RKEYS; k++) {
        snprintf(key, sizeof key, "g%05d", k);
        kiwi_put(db, NULL, key, strlen(key), val, old_value(k, val), NULL);
    }
    CHECK(kiwi_compact_range(db, NULL, 0, NULL, 0, NULL) == KIWI_OK); /* all in L3 */
    const kiwi_snapshot *snap = kiwi_snapshot_create(db);
    for (int k = 0; k < RKEYS; k += 3) { /* like file C of open_three_files */
        snprintf(key, sizeof key, "g%05d", k);
        snprintf(val, sizeof val, "new-%d", k);
        kiwi_put(db, NULL, key, strlen(key), val, strlen(val), NULL);
    }
    CHECK(kiwi_flush(db, NULL) == KIWI_OK);
    CHECK_EQ_U64(level_files(db, 0), 1);
    unsigned long long before = dbtest_stat(db, "compactions");
    int cursor = 0; /* gets of keys the L0 file lacks: it, then the L3 file */
    int moved = gets_until_read_compactions(db, 2, 30000, &cursor);
    int merged = gets_until_read_compactions(db, 3, 60000, &cursor);
    printf("  # read-triggered: two moves after %d gets, the merge after %d more\n", moved,
           merged);
    CHECK(wait_stat(db, "read_compactions", 3)); /* L0 -> L1 -> L2 moved, L2 -> L3 merged */
    CHECK(merged > 8000); /* re-armed with the merge's cost; without that: at once */
    CHECK_EQ_U64(dbtest_stat(db, "read_compactions"), 3);
    CHECK_EQ_U64(dbtest_stat(db, "trivial_moves"), 2);
    CHECK_EQ_U64(dbtest_stat(db, "compactions") - before, 3);
    CHECK_EQ_U64(level_files(db, 0) + level_files(db, 1) + level_files(db, 2), 0);
    int bad = 0;
    kiwi_read_options ro = {snap, true};
    for (int k = 0; k < RKEYS; k++) {
        snprintf(key, sizeof key, "g%05d", k);
        for (int view = 0; view < 2; view++) {
            size_t want = view == 0 && k % 3 == 0 ? (size_t)snprintf(val, sizeof val, "new-%d", k)
                                                  : old_value(k, val);
            char *v = NULL;
            size_t vl = 0;
            bad += kiwi_get(db, view ? &ro : NULL, key, strlen(key), &v, &vl, NULL) != KIWI_OK ||
                   vl != want || memcmp(v, val, vl) != 0;
            kiwi_free(v);
        }
    }
    CHECK_EQ_U64(bad, 0);
    kiwi_snapshot_release(db, snap);
    kiwi_close(db);
    ctest_rmtree(dir);
}

/* Readers on several threads charge the same file at once (gets and a scanning iterator): the
 * budget is spent once, one compaction runs, every read is right throughout (TSan). */
static kiwi_db *g_rdb;
static char **g_rmodel;

static void *charging_reader(void *arg)
{
    int t = (int)(uintptr_t)arg, bad = 0;
    char key[32];
    for (int i = 0; i < 4000; i++) { /* 16000 gets, ~1.6 MB charged: more than the budget */
        int k = (i * 7 + t * 101) % RKEYS;
        snprintf(key, sizeof key, "g%05d", k);
        char *v = NULL;
        size_t vl = 0;
        kiwi_status st = kiwi_get(g_rdb, NULL, key, strlen(key), &v, &vl, NULL);
        const char *w = g_rmodel[k];
        bad += w == NULL ? st != KIWI_NOT_FOUND
                         : st != KIWI_OK || vl != strlen(w) || memcmp(v, w, vl) != 0;
        kiwi_free(v);
        if (t == 0 && i % 500 == 0)
            bad += check_three_files(g_rdb, g_rmodel, NULL);
    }
    return (void *)(uintptr_t)bad;
}

static void test_concurrent_charging(void)
{
    char *dir = ctest_tmpdir("crconc");
    char *model[RKEYS] = {0};
    const kiwi_snapshot *snap = NULL;
    kiwi_db *db = open_three_files(dir, model, &snap);
    if (!db)
        return;
    g_rdb = db;
    g_rmodel = model;
    pthread_t th[4];
    for (int t = 0; t < 4; t++)
        pthread_create(&th[t], NULL, charging_reader, (void *)(uintptr_t)t);
    uintptr_t bad = 0;
    for (int t = 0; t < 4; t++) {
        void *r = NULL;
        pthread_join(th[t], &r);
        bad += (uintptr_t)r;
    }
    CHECK_EQ_U64(bad, 0);
    CHECK(wait_stat(db, "read_compactions", 1));
    CHECK_EQ_U64(dbtest_stat(db, "read_compactions"), 1);
    CHECK_EQ_U64(level_files(db, 0), 0);
    CHECK_EQ_U64(check_three_files(db, model, NULL), 0);
    CHECK_EQ_U64(check_three_files(db, model, snap), 0);
    kiwi_snapshot_release(db, snap);
    kiwi_close(db);
    for (int k = 0; k < RKEYS; k++)
        free(model[k]);
    ctest_rmtree(dir);
}

int main(void)
{
    RUN(test_reads_trigger_compaction);
    RUN(test_iterator_triggers_compaction);
    RUN(test_read_compaction_sinks_to_overlap);
    RUN(test_concurrent_charging);
    return ctest_summary();
}
