/*
 * test_compaction.c: leveled compaction through the public API.
 *  - a model check (random puts/deletes/snapshots with background compaction, reopen) for gets,
 *    scans and snapshots;
 *  - a long write load with overwrites and deletes while reader threads check every read against
 *    the latest acknowledged value; L0 stays bounded; after compact_range the on-disk size is
 *    within 2x of the live data and no tombstone is left;
 *  - an iterator opened before heavy compaction still reads its whole snapshot (files pinned);
 *  - a snapshot held across compactions keeps seeing its data;
 *  - compact_range: into the last level in one pass, writing the data once, dropping kept
 *    tombstones. Read-triggered compaction is in test_read_compaction.c.
 * Sizes shrink under sanitizers (the test runs plain, under ASan+UBSan and under TSan).
 */
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>

#include "ctest.h"
#include "dbtest.h"
#include "kiwi.h"

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define SCALE 10
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define SCALE 10
#endif
#endif
#ifndef SCALE
#define SCALE 1
#endif

static kiwi_db *open_small(const char *dir)
{
    kiwi_options *o = kiwi_options_create("prod");
    /* tiny memtables and files so that a few hundred thousand writes build several levels */
    kiwi_options_set(o, "max_memtable_size_mb", "0.25", NULL);
    kiwi_options_set(o, "target_file_size_mb", "0.25", NULL);
    kiwi_options_set(o, "level_base_mb", "1", NULL);
    kiwi_options_set(o, "l0_compaction_threshold", "4", NULL);
    kiwi_options_set(o, "l0_slowdown_writes_trigger", "8", NULL);
    kiwi_options_set(o, "l0_stop_writes_trigger", "12", NULL);
    kiwi_db *db = NULL;
    char *err = NULL;
    if (kiwi_open(dir, o, &db, &err) != KIWI_OK)
        fprintf(stderr, "open: %s\n", err);
    kiwi_free(err);
    kiwi_options_destroy(o);
    return db;
}

static unsigned long long l0_files(kiwi_db *db)
{
    char *s = kiwi_property(db, "stats");
    const char *p = s ? strstr(s, "{\"level\":0,\"files\":") : NULL;
    unsigned long long v = p ? strtoull(p + strlen("{\"level\":0,\"files\":"), NULL, 10) : 0;
    kiwi_free(s);
    return v;
}

static unsigned long long dir_sst_bytes(const char *dir)
{
    DIR *d = opendir(dir);
    unsigned long long n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len > 4 && strcmp(e->d_name + len - 4, ".sst") == 0) {
            char path[4096];
            struct stat sb;
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            if (stat(path, &sb) == 0)
                n += (unsigned long long)sb.st_size;
        }
    }
    if (d)
        closedir(d);
    return n;
}

/* ---- load with concurrent readers ---- */

#define KEYSPACE 20000
static atomic_uint g_version[KEYSPACE]; /* 0 = never written; odd = deleted; even = a value */
static atomic_uint g_seq[KEYSPACE];     /* seqlock: odd while a write of the key is in flight */
static kiwi_db *g_db;
static atomic_bool g_stop;
static atomic_int g_bad;

static void value_for(unsigned k, unsigned ver, char *buf, size_t n)
{
    snprintf(buf, n, "value-%u-%u-padding-padding-padding", k, ver);
}

static void *reader(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    while (!atomic_load(&g_stop)) {
        unsigned k = (unsigned)rand_r(&seed) % KEYSPACE;
        unsigned s1 = atomic_load(&g_seq[k]);
        unsigned before = atomic_load(&g_version[k]);
        char key[32], *v = NULL;
        size_t vl = 0;
        snprintf(key, sizeof key, "key%08u", k);
        kiwi_status st = kiwi_get(g_db, NULL, key, strlen(key), &v, &vl, NULL);
        unsigned s2 = atomic_load(&g_seq[k]);
        if (s1 == s2 && s1 % 2 == 0 && before != 0) { /* no write raced with this read */
            if (before % 2 == 1) {
                if (st != KIWI_NOT_FOUND)
                    atomic_fetch_add(&g_bad, 1);
            } else {
                char want[96];
                value_for(k, before, want, sizeof want);
                if (st != KIWI_OK || vl != strlen(want) || memcmp(v, want, vl) != 0)
                    atomic_fetch_add(&g_bad, 1);
            }
        } else if (st != KIWI_OK && st != KIWI_NOT_FOUND) {
            atomic_fetch_add(&g_bad, 1);
        }
        kiwi_free(v);
    }
    return NULL;
}

static void test_load_with_readers(void)
{
    char *dir = ctest_tmpdir("cload");
    g_db = open_small(dir);
    CHECK(g_db != NULL);
    if (!g_db)
        return;
    memset(g_version, 0, sizeof g_version);
    memset(g_seq, 0, sizeof g_seq);
    atomic_store(&g_stop, false);
    atomic_store(&g_bad, 0);
    pthread_t r[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&r[i], NULL, reader, (void *)(uintptr_t)(i + 7));
    unsigned seed = 42;
    const int N = 2000000 / SCALE; /* 2M writes plain, 200k under sanitizers */
    unsigned long long max_l0 = 0;
    for (int i = 0; i < N; i++) {
        unsigned k = (unsigned)rand_r(&seed) % KEYSPACE;
        char key[32], val[96];
        snprintf(key, sizeof key, "key%08u", k);
        unsigned ver = atomic_load(&g_version[k]);
        atomic_fetch_add(&g_seq[k], 1);
        if (rand_r(&seed) % 5 == 0) {
            unsigned nv = ver % 2 == 1 ? ver + 2 : ver + 1;
            if (kiwi_delete(g_db, NULL, key, strlen(key), NULL) != KIWI_OK)
                atomic_fetch_add(&g_bad, 1);
            atomic_store(&g_version[k], nv);
        } else {
            unsigned nv = ver % 2 == 0 ? ver + 2 : ver + 1;
            value_for(k, nv, val, sizeof val);
            if (kiwi_put(g_db, NULL, key, strlen(key), val, strlen(val), NULL) != KIWI_OK)
                atomic_fetch_add(&g_bad, 1);
            atomic_store(&g_version[k], nv);
        }
        atomic_fetch_add(&g_seq[k], 1);
        if (i % 5000 == 0) {
            unsigned long long l0 = l0_files(g_db);
            if (l0 > max_l0)
                max_l0 = l0;
        }
    }
    atomic_store(&g_stop, true);
    for (int i = 0; i < 2; i++)
        pthread_join(r[i], NULL);
    CHECK(atomic_load(&g_bad) == 0);
    printf("load: %d writes, max L0 files %llu, compactions %llu (read-triggered %llu), "
           "stalls %llu, slowdowns %llu\n",
           N, max_l0, dbtest_stat(g_db, "compactions"), dbtest_stat(g_db, "read_compactions"),
           dbtest_stat(g_db, "stalls"), dbtest_stat(g_db, "slowdowns"));
    CHECK(max_l0 <= 12); /* the stop trigger bounds L0 */
    CHECK(dbtest_stat(g_db, "compactions") > 0);

    CHECK(kiwi_compact_range(g_db, NULL, 0, NULL, 0, NULL) == KIWI_OK);
    unsigned long long live = 0;
    for (unsigned k = 0; k < KEYSPACE; k++) {
        unsigned ver = atomic_load(&g_version[k]);
        if (ver != 0 && ver % 2 == 0) {
            char val[96];
            value_for(k, ver, val, sizeof val);
            live += 11 + strlen(val);
        }
    }
    unsigned long long disk = dir_sst_bytes(dir);
    printf("after compact_range: live %llu bytes, sstables %llu bytes (%.2fx)\n", live, disk,
           (double)disk / (double)live);
    CHECK(disk <= 2 * live);
    char *levels = kiwi_property(g_db, "levels");
    CHECK(levels && strstr(levels, "\"tombstones\":1") == NULL);
    /* every file at the bottom after a full compaction: no tombstone survives */
    const char *p = levels;
    int tomb = 0;
    while (p && (p = strstr(p, "\"tombstones\":")) != NULL) {
        p += strlen("\"tombstones\":");
        tomb += atoi(p);
    }
    CHECK(tomb == 0);
    kiwi_free(levels);
    /* every key reads back after a reopen */
    kiwi_close(g_db);
    g_db = open_small(dir);
    CHECK(g_db != NULL);
    if (g_db) {
        int bad = 0;
        for (unsigned k = 0; k < KEYSPACE; k++) {
            char key[32], *v = NULL;
            size_t vl;
            snprintf(key, sizeof key, "key%08u", k);
            unsigned ver = atomic_load(&g_version[k]);
            kiwi_status st = kiwi_get(g_db, NULL, key, strlen(key), &v, &vl, NULL);
            if (ver == 0 || ver % 2 == 1) {
                bad += st != KIWI_NOT_FOUND;
            } else {
                char want[96];
                value_for(k, ver, want, sizeof want);
                bad += st != KIWI_OK || vl != strlen(want) || memcmp(v, want, vl) != 0;
            }
            kiwi_free(v);
        }
        CHECK(bad == 0);
        kiwi_close(g_db);
    }
    ctest_rmtree(dir);
}

/* An iterator and a snapshot taken before heavy rewriting keep their view. */
static void test_pinned_iterator_and_snapshot(void)
{
    char *dir = ctest_tmpdir("cpin");
    kiwi_db *db = open_small(dir);
    if (!db) {
        CHECK(db != NULL);
        return;
    }
    const int N = 20000 / SCALE * 2;
    char key[32], val[64];
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "p%08d", i);
        snprintf(val, sizeof val, "old-%d-padding-padding-padding-padding", i);
        kiwi_put(db, NULL, key, strlen(key), val, strlen(val), NULL);
    }
    CHECK(kiwi_flush(db, NULL) == KIWI_OK);
    const kiwi_snapshot *snap = kiwi_snapshot_create(db);
    kiwi_iter *it = kiwi_iter_create(db, NULL);
    kiwi_iter_seek_to_first(it);
    /* rewrite and delete everything, several times, with compactions */
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < N; i++) {
            snprintf(key, sizeof key, "p%08d", i);
            if (round == 2 && i % 2) {
                kiwi_delete(db, NULL, key, strlen(key), NULL);
            } else {
                snprintf(val, sizeof val, "new%d-%d-padding-padding-padding", round, i);
                kiwi_put(db, NULL, key, strlen(key), val, strlen(val), NULL);
            }
        }
        CHECK(kiwi_compact_range(db, NULL, 0, NULL, 0, NULL) == KIWI_OK);
    }
    /* the iterator still walks the original data, from files compaction has replaced */
    int n = 0, bad = 0;
    for (; kiwi_iter_valid(it); kiwi_iter_next(it), n++) {
        size_t vl;
        const char *v = kiwi_iter_value(it, &vl);
        snprintf(val, sizeof val, "old-%d-padding-padding-padding-padding", n);
        bad += vl != strlen(val) || memcmp(v, val, vl) != 0;
    }
    CHECK(n == N);
    CHECK(bad == 0);
    CHECK(kiwi_iter_status(it, NULL) == KIWI_OK);
    kiwi_iter_destroy(it);
    /* the snapshot sees the old values through gets */
    kiwi_read_options ro = {snap, true};
    bad = 0;
    for (int i = 0; i < N; i += 97) {
        char *v = NULL;
        size_t vl;
        snprintf(key, sizeof key, "p%08d", i);
        snprintf(val, sizeof val, "old-%d-padding-padding-padding-padding", i);
        bad += kiwi_get(db, &ro, key, strlen(key), &v, &vl, NULL) != KIWI_OK ||
               vl != strlen(val) || memcmp(v, val, vl) != 0;
        kiwi_free(v);
    }
    CHECK(bad == 0);
    kiwi_snapshot_release(db, snap);
    /* and without the snapshot, a full compaction drops the old versions */
    CHECK(kiwi_compact_range(db, NULL, 0, NULL, 0, NULL) == KIWI_OK);
    CHECK(dbtest_stat(db, "compaction_dropped_versions") > 0);
    char *v = NULL;
    size_t vl;
    CHECK(kiwi_get(db, NULL, "p00000001", 9, &v, &vl, NULL) == KIWI_NOT_FOUND);
    CHECK(kiwi_get(db, NULL, "p00000002", 9, &v, &vl, NULL) == KIWI_OK);
    kiwi_free(v);
    kiwi_close(db);
    ctest_rmtree(dir);
}

/* Compacting a sub-range leaves the rest readable; a trivial move happens for disjoint files. */
static void test_range_and_moves(void)
{
    char *dir = ctest_tmpdir("crange");
    kiwi_db *db = open_small(dir);
    if (!db) {
        CHECK(db != NULL);
        return;
    }
    char key[32], val[128];
    memset(val, 'x', sizeof val);
    for (int batch = 0; batch < 6; batch++) { /* disjoint key ranges, one flush each */
        for (int i = 0; i < 500; i++) {
            snprintf(key, sizeof key, "r%d-%05d", batch, i);
            kiwi_put(db, NULL, key, strlen(key), val, sizeof val, NULL);
        }
        CHECK(kiwi_flush(db, NULL) == KIWI_OK);
    }
    CHECK(kiwi_compact_range(db, "r2", 2, "r3~", 3, NULL) == KIWI_OK);
    CHECK(kiwi_compact_range(db, NULL, 0, NULL, 0, NULL) == KIWI_OK);
    CHECK(dbtest_stat(db, "trivial_moves") > 0 || dbtest_stat(db, "compactions") > 0);
    int bad = 0;
    for (int batch = 0; batch < 6; batch++)
        for (int i = 0; i < 500; i += 7) {
            char *v = NULL;
            size_t vl;
            snprintf(key, sizeof key, "r%d-%05d", batch, i);
            bad += kiwi_get(db, NULL, key, strlen(key), &v, &vl, NULL) != KIWI_OK ||
                   vl != sizeof val;
            kiwi_free(v);
        }
    CHECK(bad == 0);
    CHECK(l0_files(db) == 0);
    kiwi_close(db);
    ctest_rmtree(dir);
}

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

/* Checks every key of the model (NULL = absent) with gets and one full scan. */
static int check_model(kiwi_db *db, char **model, int nkeys)
{
    int bad = 0, live = 0;
    char key[32];
    for (int k = 0; k < nkeys; k++) {
        snprintf(key, sizeof key, "m%05d", k);
        char *v = NULL;
        size_t vl = 0;
        kiwi_status st = kiwi_get(db, NULL, key, strlen(key), &v, &vl, NULL);
        if (model[k] == NULL)
            bad += st != KIWI_NOT_FOUND;
        else
            bad += st != KIWI_OK || vl != strlen(model[k]) || memcmp(v, model[k], vl) != 0;
        live += model[k] != NULL;
        kiwi_free(v);
    }
    int seen = 0;
    kiwi_iter *it = kiwi_iter_create(db, NULL);
    for (kiwi_iter_seek_to_first(it); kiwi_iter_valid(it); kiwi_iter_next(it))
        seen++;
    kiwi_iter_destroy(it);
    return bad + (seen != live);
}

/* Random writes, flushes and background compactions interleaved with kiwi_compact_range of
 * random sub-ranges: a manual compaction takes files from every level above the last one and
 * must take every file that overlaps what it took (or an older version left above would shadow
 * a newer one moved to the last level). Every key is checked against a model after each one. */
static void test_range_to_last_level_model(void)
{
    char *dir = ctest_tmpdir("crmodel");
    /* tiny everything: a few hundred KB spread over L0..L3 in many small files */
    static const char *const settings[] = {
        "max_memtable_size_mb", "0.0625", "target_file_size_mb", "0.015625",
        "level_base_mb", "0.0625", "l0_compaction_threshold", "2", NULL};
    kiwi_db *db = open_with(dir, settings);
    if (!db)
        return;
    enum { NKEYS = 3000, ROUNDS = 40, WINDOW = 500 };
    char **model = calloc(NKEYS, sizeof *model);
    unsigned rng = 12345;
    char key[32], val[64];
    int bad = 0;
    for (int round = 0; round < ROUNDS * SCALE; round++) {
        rng = rng * 1103515245u + 12345u;
        int w = (int)((rng >> 8) % (NKEYS - WINDOW)); /* narrow files: writes in one window */
        for (int i = 0; i < 1200; i++) {
            rng = rng * 1103515245u + 12345u;
            int k = w + (int)((rng >> 8) % WINDOW);
            snprintf(key, sizeof key, "m%05d", k);
            free(model[k]);
            model[k] = NULL;
            if ((rng >> 4) % 5 == 0) {
                kiwi_delete(db, NULL, key, strlen(key), NULL);
            } else {
                snprintf(val, sizeof val, "r%d-i%d-%0*d", round, i, (int)(rng % 40), 7);
                kiwi_put(db, NULL, key, strlen(key), val, strlen(val), NULL);
                model[k] = strdup(val);
            }
        }
        CHECK(kiwi_flush(db, NULL) == KIWI_OK);
        struct timespec ts = {0, 5 * 1000 * 1000}; /* let background compactions move files */
        nanosleep(&ts, NULL);
        if (round % 2 == 1) {
            rng = rng * 1103515245u + 12345u;
            int a = (int)((rng >> 8) % NKEYS), b = a + (int)((rng >> 3) % 150);
            char lo[32], hi[32];
            snprintf(lo, sizeof lo, "m%05d", a);
            snprintf(hi, sizeof hi, "m%05d", b);
            CHECK(kiwi_compact_range(db, lo, strlen(lo), hi, strlen(hi), NULL) == KIWI_OK);
        }
        bad += check_model(db, model, NKEYS);
    }
    CHECK(bad == 0);
    printf("  # %llu compactions, %llu manual\n", dbtest_stat(db, "compactions"),
           dbtest_stat(db, "manual_compactions"));
    CHECK(kiwi_compact_range(db, NULL, 0, NULL, 0, NULL) == KIWI_OK);
    CHECK(check_model(db, model, NKEYS) == 0);
    CHECK(l0_files(db) == 0);
    for (int k = 0; k < NKEYS; k++)
        free(model[k]);
    free(model);
    kiwi_close(db);
    ctest_rmtree(dir);
}

/* A full kiwi_compact_range writes the data once: everything above the last level goes straight
 * into it (before: once per level, ~3x the data for a tree held in L0). */
static void test_range_writes_once(void)
{
    char *dir = ctest_tmpdir("cronce");
    static const char *const settings[] = {"max_memtable_size_mb", "0.25",
                                           "target_file_size_mb", "0.25",
                                           NO_BACKGROUND_COMPACTION, NULL};
    kiwi_db *db = open_with(dir, settings);
    if (!db)
        return;
    char key[32], val[100];
    memset(val, 'v', sizeof val);
    for (int i = 0; i < 20000; i++) {
        snprintf(key, sizeof key, "w%07d", (i * 7919) % 20000);
        kiwi_put(db, NULL, key, strlen(key), val, sizeof val, NULL);
    }
    CHECK(kiwi_flush(db, NULL) == KIWI_OK);
    unsigned long long before = dir_sst_bytes(dir);
    CHECK(l0_files(db) > 4);
    CHECK(kiwi_compact_range(db, NULL, 0, NULL, 0, NULL) == KIWI_OK);
    unsigned long long written = dbtest_stat(db, "compaction_bytes_written");
    printf("  # compact_range: %llu bytes of L0 SSTables, %llu bytes written\n", before, written);
    CHECK(written <= before + before / 10);
    CHECK(l0_files(db) == 0);
    char *lv = kiwi_property(db, "levels");
    /* only the last level holds files */
    CHECK(lv && strstr(lv, "{\"level\":1,\"files\":[]}") && strstr(lv, "{\"level\":2,\"files\":[]}"));
    kiwi_free(lv);
    int bad = 0;
    for (int i = 0; i < 20000; i += 13) {
        char *v = NULL;
        size_t vl;
        snprintf(key, sizeof key, "w%07d", i);
        bad += kiwi_get(db, NULL, key, strlen(key), &v, &vl, NULL) != KIWI_OK || vl != sizeof val;
        kiwi_free(v);
    }
    CHECK(bad == 0);
    kiwi_close(db);
    ctest_rmtree(dir);
}

/* Tombstones in the db's SSTables (the sum over the "levels" property's files). */
static unsigned long long sst_tombstones(kiwi_db *db)
{
    char *lv = kiwi_property(db, "levels");
    unsigned long long sum = 0;
    for (const char *p = lv; p && (p = strstr(p, "\"tombstones\":")) != NULL;) {
        p += strlen("\"tombstones\":");
        sum += strtoull(p, NULL, 10);
    }
    kiwi_free(lv);
    return sum;
}

/* Tombstones that a snapshot kept in last-level files are dropped by a later compact_range of
 * their range, even when what it moves down from above overlaps other files only: the second
 * pass rewrites the last level's other files in the range. */
static void test_range_drops_kept_tombstones(void)
{
    char *dir = ctest_tmpdir("crtomb");
    static const char *const settings[] = {"target_file_size_mb", "0.015625",
                                           NO_BACKGROUND_COMPACTION, NULL};
    kiwi_db *db = open_with(dir, settings);
    if (!db)
        return;
    char key[32], val[100];
    memset(val, 'v', sizeof val);
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof key, "a%03d", i);
        kiwi_put(db, NULL, key, strlen(key), val, sizeof val, NULL);
    }
    CHECK(kiwi_compact_range(db, NULL, 0, NULL, 0, NULL) == KIWI_OK);
    const kiwi_snapshot *snap = kiwi_snapshot_create(db);
    for (int i = 500; i < 600; i++) {
        snprintf(key, sizeof key, "a%03d", i);
        kiwi_delete(db, NULL, key, strlen(key), NULL);
    }
    CHECK(kiwi_compact_range(db, NULL, 0, NULL, 0, NULL) == KIWI_OK);
    CHECK(sst_tombstones(db) == 100); /* the snapshot still needs them */
    kiwi_snapshot_release(db, snap);
    kiwi_put(db, NULL, "a000", 4, "new", 3, NULL); /* far from the tombstones */
    CHECK(kiwi_compact_range(db, "a000", 4, "a999", 4, NULL) == KIWI_OK);
    CHECK_EQ_U64(sst_tombstones(db), 0);
    char *v = NULL;
    size_t vl = 0;
    CHECK(kiwi_get(db, NULL, "a000", 4, &v, &vl, NULL) == KIWI_OK && vl == 3);
    kiwi_free(v);
    CHECK(kiwi_get(db, NULL, "a550", 4, &v, &vl, NULL) == KIWI_NOT_FOUND);
    CHECK(kiwi_get(db, NULL, "a650", 4, &v, &vl, NULL) == KIWI_OK && vl == sizeof val);
    kiwi_free(v);
    kiwi_close(db);
    ctest_rmtree(dir);
}

int main(void)
{
    RUN(test_load_with_readers);
    RUN(test_pinned_iterator_and_snapshot);
    RUN(test_range_and_moves);
    RUN(test_range_to_last_level_model);
    RUN(test_range_writes_once);
    RUN(test_range_drops_kept_tombstones);
    return ctest_summary();
}
