/*
 * test_introspection.c: kiwi_property and kiwi_trace JSON, and live settings changed under load
 * taking effect (shown in stats).
 */
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctest.h"
#include "env.h"
#include "kiwi.h"

static kiwi_db *open_dev(const char *dir, const char *entries)
{
    kiwi_options *o = kiwi_options_create("dev");
    kiwi_options_set(o, "max_memtable_entries", entries, NULL);
    kiwi_db *db = NULL;
    char *err = NULL;
    if (kiwi_open(dir, o, &db, &err) != KIWI_OK)
        fprintf(stderr, "open: %s\n", err);
    kiwi_free(err);
    kiwi_options_destroy(o);
    return db;
}

/* The number after "name": inside the object that follows `within` (NULL: the whole text). */
static double num_after(const char *json, const char *within, const char *name)
{
    const char *p = within ? strstr(json, within) : json;
    char pat[96];
    snprintf(pat, sizeof pat, "\"%s\":", name);
    p = p ? strstr(p, pat) : NULL;
    return p ? strtod(p + strlen(pat), NULL) : -1;
}

static double stat_num(kiwi_db *db, const char *within, const char *name)
{
    char *s = kiwi_property(db, "stats");
    double v = s ? num_after(s, within, name) : -1;
    kiwi_free(s);
    return v;
}

static int put(kiwi_db *db, const char *k, const char *v)
{
    return kiwi_put(db, NULL, k, strlen(k), v, strlen(v), NULL);
}

static void test_trace_each_layer(void)
{
    char *dir = ctest_tmpdir("trace");
    kiwi_db *db = open_dev(dir, "1000");
    if (!db) {
        CHECK(db != NULL);
        return;
    }
    put(db, "deep", "1");
    CHECK(kiwi_compact_range(db, NULL, 0, NULL, 0, NULL) == KIWI_OK); /* to the last level */
    put(db, "l0key", "2");
    CHECK(kiwi_flush(db, NULL) == KIWI_OK); /* an L0 file */
    put(db, "memkey", "3");
    kiwi_delete(db, NULL, "gone", 4, NULL);

    char *t = kiwi_trace(db, "memkey", 6);
    CHECK(t && strstr(t, "{\"layer\":\"memtable\"") && strstr(t, "\"result\":\"found\"") &&
          strstr(t, "\"value\":\"3\"") && strstr(t, "\"layer\":\"sstable\"") == NULL);
    kiwi_free(t);

    t = kiwi_trace(db, "l0key", 5);
    CHECK(t && strstr(t, "\"layer\":\"sstable\",\"level\":0") &&
          strstr(t, "\"bloom\":\"maybe\"") && strstr(t, "\"block\":{\"index\":0,\"offset\":0") &&
          strstr(t, "\"result\":\"found\",\"value\":\"2\""));
    kiwi_free(t);

    t = kiwi_trace(db, "deep", 4);
    CHECK(t && strstr(t, "\"level\":0,\"id\":") && strstr(t, "\"in_range\":false") &&
          strstr(t, "\"level\":3") && strstr(t, "\"cache\":{\"bloom\":") &&
          strstr(t, "\"data\":\"mapped\"") && strstr(t, "\"value\":\"1\""));
    kiwi_free(t);

    t = kiwi_trace(db, "gone", 4); /* a tombstone answers in the memtable */
    CHECK(t && strstr(t, "\"result\":\"deleted\""));
    kiwi_free(t);
    t = kiwi_trace(db, "nope", 4);
    CHECK(t && strstr(t, "],\"result\":\"miss\"}"));
    kiwi_free(t);
    t = kiwi_trace(db, "bin\0\x01\xff", 6);
    CHECK(t && strstr(t, "\"key\":\"bin\\u0000\\u0001\\u00ff\""));
    kiwi_free(t);

    /* in place (the default): the block is checked once, the data tier is not asked */
    const char *bc = "\"block_cache\":{\"data\":";
    char *v = NULL;
    size_t vl;
    double hits0 = stat_num(db, bc, "hits");
    CHECK(kiwi_get(db, NULL, "deep", 4, &v, &vl, NULL) == KIWI_OK);
    kiwi_free(v);
    double verified = stat_num(db, bc, "verified_blocks");
    CHECK(verified >= 1);
    CHECK(kiwi_get(db, NULL, "deep", 4, &v, &vl, NULL) == KIWI_OK);
    kiwi_free(v);
    CHECK(stat_num(db, bc, "hits") == hits0 && stat_num(db, bc, "verified_blocks") == verified);
    /* data_reads=cached, live: the second read of the block is a data-tier hit */
    CHECK(kiwi_set_option(db, "data_reads", "cached", NULL) == KIWI_OK);
    CHECK(kiwi_get(db, NULL, "deep", 4, &v, &vl, NULL) == KIWI_OK);
    kiwi_free(v);
    CHECK(kiwi_get(db, NULL, "deep", 4, &v, &vl, NULL) == KIWI_OK);
    kiwi_free(v);
    CHECK(stat_num(db, bc, "hits") >= hits0 + 1);
    t = kiwi_trace(db, "deep", 4);
    CHECK(t && strstr(t, "\"data\":\"hit\""));
    kiwi_free(t);
    CHECK(kiwi_set_option(db, "data_reads", "sometimes", NULL) == KIWI_INVALID_ARGUMENT);
    CHECK(kiwi_set_option(db, "data_reads", "in_place", NULL) == KIWI_OK);

    /* listings */
    char *levels = kiwi_property(db, "levels");
    CHECK(levels && strstr(levels, "\"smallest\":\"deep\"") && strstr(levels, "\"largest\":\"l0key\""));
    kiwi_free(levels);
    char *mems = kiwi_property(db, "memtables");
    CHECK(mems && strstr(mems, "\"state\":\"active\"") && strstr(mems, "\"num_entries\":2"));
    kiwi_free(mems);
    CHECK(kiwi_property(db, "sstable:999999") == NULL);
    CHECK(kiwi_property(db, "memtable:abc") == NULL);
    kiwi_close(db);
    ctest_rmtree(dir);
}

static void test_live_settings_under_load(void)
{
    char *dir = ctest_tmpdir("live");
    kiwi_db *db = open_dev(dir, "1000");
    if (!db) {
        CHECK(db != NULL);
        return;
    }
    char k[32];
    for (int i = 0; i < 3000; i++) {
        snprintf(k, sizeof k, "k%06d", i);
        put(db, k, "v");
    }
    double rot0 = stat_num(db, NULL, "rotations");
    CHECK(kiwi_set_option(db, "max_memtable_entries", "100", NULL) == KIWI_OK);
    for (int i = 0; i < 3000; i++) {
        snprintf(k, sizeof k, "m%06d", i);
        put(db, k, "v");
    }
    double rot1 = stat_num(db, NULL, "rotations");
    CHECK(rot1 - rot0 >= 29); /* 3000 writes / 100 per memtable */

    double syncs0 = stat_num(db, NULL, "wal_syncs");
    CHECK(kiwi_set_option(db, "sync_writes", "true", NULL) == KIWI_OK);
    for (int i = 0; i < 20; i++)
        put(db, "s", "v"); /* default options: now synced */
    CHECK(stat_num(db, NULL, "wal_syncs") >= syncs0 + 20);
    CHECK(kiwi_set_option(db, "sync_writes", "false", NULL) == KIWI_OK);

    CHECK(kiwi_set_option(db, "block_cache_data_mb", "0", NULL) == KIWI_OK);
    CHECK(stat_num(db, "\"block_cache\":{\"data\":", "capacity") == 0);
    CHECK(kiwi_set_option(db, "block_cache_data_mb", "1", NULL) == KIWI_OK);
    CHECK(stat_num(db, "\"block_cache\":{\"data\":", "capacity") == 1048576);

    /* a lower L0 threshold makes compaction run */
    CHECK(kiwi_set_option(db, "l0_compaction_threshold", "1000", NULL) == KIWI_OK);
    double comp0 = stat_num(db, NULL, "compactions");
    for (int r = 0; r < 5; r++) {
        for (int i = 0; i < 50; i++) {
            snprintf(k, sizeof k, "r%d-%04d", r, i);
            put(db, k, "v");
        }
        kiwi_flush(db, NULL);
    }
    CHECK(stat_num(db, "{\"level\":0,", "files") >= 5);
    CHECK(kiwi_set_option(db, "l0_compaction_threshold", "2", NULL) == KIWI_OK);
    for (int i = 0; i < 200 && stat_num(db, "{\"level\":0,", "files") >= 2; i++) {
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    CHECK(stat_num(db, "{\"level\":0,", "files") < 2);
    CHECK(stat_num(db, NULL, "compactions") > comp0);
    /* new SSTables follow the bloom FPR and block size set live */
    CHECK(kiwi_set_option(db, "bloom_fpr_dev", "0.5", NULL) == KIWI_OK);
    CHECK(kiwi_set_option(db, "block_size", "256", NULL) == KIWI_OK);
    for (int i = 0; i < 100; i++) {
        snprintf(k, sizeof k, "f1-%04d", i);
        put(db, k, "v");
    }
    kiwi_flush(db, NULL);
    CHECK(kiwi_set_option(db, "bloom_fpr_dev", "0.0001", NULL) == KIWI_OK);
    CHECK(kiwi_set_option(db, "block_size", "65536", NULL) == KIWI_OK);
    CHECK(kiwi_set_option(db, "l0_compaction_threshold", "1000", NULL) == KIWI_OK);
    for (int i = 0; i < 100; i++) {
        snprintf(k, sizeof k, "f2-%04d", i);
        put(db, k, "v");
    }
    kiwi_flush(db, NULL);
    char *lv = kiwi_property(db, "levels");
    const char *f1 = lv ? strstr(lv, "\"smallest\":\"f1-0000\"") : NULL;
    const char *f2 = lv ? strstr(lv, "\"smallest\":\"f2-0000\"") : NULL;
    CHECK(f1 && f2);
    if (f1 && f2) {
        double blocks1 = num_after(f1, NULL, "data_blocks"), blocks2 = num_after(f2, NULL, "data_blocks");
        double bloom1 = num_after(f1, NULL, "filter_bytes"), bloom2 = num_after(f2, NULL, "filter_bytes");
        printf("live settings: blocks %g -> %g, filter bytes %g -> %g\n", blocks1, blocks2, bloom1,
               bloom2);
        CHECK(blocks1 > blocks2 && blocks2 == 1);
        CHECK(bloom2 > 5 * bloom1);
    }
    kiwi_free(lv);
    char *opts = kiwi_property(db, "options");
    CHECK(opts && strstr(opts, "\"l0_compaction_threshold\":1000") &&
          strstr(opts, "\"max_memtable_entries\":100") && strstr(opts, "\"block_cache_data_mb\":1"));
    kiwi_free(opts);
    /* refusals name the setting */
    char *err = NULL;
    CHECK(kiwi_set_option(db, "compaction_workers", "4", &err) == KIWI_INVALID_ARGUMENT);
    CHECK(err && strstr(err, "compaction_workers cannot change on a running db"));
    CHECK(kiwi_set_option(db, "block_cache_data_mb", "-1", &err) == KIWI_INVALID_ARGUMENT);
    CHECK(err && strstr(err, "block_cache_data_mb") && strstr(err, "out of range"));
    kiwi_free(err);
    kiwi_close(db);
    ctest_rmtree(dir);
}

/* Every setting kiwi_settings_describe lists accepts its own dev and prod defaults. */
static void test_settings_describe(void)
{
    char *d = kiwi_settings_describe();
    CHECK(d && d[0] == '[');
    int n = 0;
    const char *p = d;
    kiwi_options *dev = kiwi_options_create("dev"), *prod = kiwi_options_create("prod");
    while ((p = strstr(p, "{\"name\":\"")) != NULL) {
        char name[64] = "", dv[64] = "", pv[64] = "";
        CHECK(sscanf(p, "{\"name\":\"%63[^\"]\"", name) == 1);
        const char *q = strstr(p, "\"dev\":\"");
        CHECK(q && sscanf(q, "\"dev\":\"%63[^\"]\",\"prod\":\"%63[^\"]\"", dv, pv) == 2);
        char *err = NULL;
        CHECK(kiwi_options_set(dev, name, dv, &err) == KIWI_OK);
        CHECK(kiwi_options_set(prod, name, pv, &err) == KIWI_OK);
        if (err)
            fprintf(stderr, "%s: %s\n", name, err);
        kiwi_free(err);
        n++;
        p++;
    }
    CHECK(n >= 20);
    CHECK(strstr(d, "\"name\":\"flush_max_workers\",\"type\":\"uint\",\"min\":1,\"max\":16,"));
    kiwi_options_destroy(dev);
    kiwi_options_destroy(prod);
    kiwi_free(d);
}

/* Prod mode rotates by bytes; the limit changes live. */
static void test_live_memtable_bytes(void)
{
    char *dir = ctest_tmpdir("livemb");
    kiwi_db *db = NULL;
    CHECK(kiwi_open(dir, NULL, &db, NULL) == KIWI_OK); /* prod defaults: 64 MiB */
    if (!db)
        return;
    char k[32], v[200];
    memset(v, 'x', sizeof v - 1);
    v[sizeof v - 1] = 0;
    for (int i = 0; i < 2000; i++) {
        snprintf(k, sizeof k, "a%06d", i);
        put(db, k, v);
    }
    CHECK(stat_num(db, NULL, "rotations") == 0);
    CHECK(kiwi_set_option(db, "max_memtable_size_mb", "0.0625", NULL) == KIWI_OK); /* 64 KiB */
    for (int i = 0; i < 2000; i++) {
        snprintf(k, sizeof k, "b%06d", i);
        put(db, k, v);
    }
    /* ~2000 * 260 bytes = 520 KB over 64 KiB memtables: about 8 rotations */
    CHECK(stat_num(db, NULL, "rotations") >= 6);
    kiwi_close(db);
    ctest_rmtree(dir);
}

/* ---- a key in an immutable memtable: hold a flush in the middle of its SSTable write ---- */

static atomic_bool g_hold;    /* while set, writes to .sst files wait */
static atomic_bool g_held;    /* a flush is waiting */
static ssize_t (*g_real_write)(int, const void *, size_t);

static bool is_sst(int fd)
{
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0)
        return false;
    path[n] = 0;
    return strstr(path, ".sst") != NULL;
}

static ssize_t holding_write(int fd, const void *b, size_t n)
{
    while (atomic_load(&g_hold) && is_sst(fd)) {
        atomic_store(&g_held, true);
        usleep(1000);
    }
    return g_real_write(fd, b, n);
}

static void *flush_thread(void *db)
{
    kiwi_flush(db, NULL);
    return NULL;
}

static void test_trace_immutable(void)
{
    char *dir = ctest_tmpdir("traceimm");
    kiwi_db *db = open_dev(dir, "1000");
    if (!db) {
        CHECK(db != NULL);
        return;
    }
    g_real_write = kw_syscalls.write;
    atomic_store(&g_hold, true);
    kw_syscalls.write = holding_write;
    put(db, "imm", "4");
    pthread_t t;
    pthread_create(&t, NULL, flush_thread, db); /* rotates, then the build waits */
    for (int i = 0; i < 5000 && !atomic_load(&g_held); i++)
        usleep(1000);
    CHECK(atomic_load(&g_held));
    put(db, "other", "5"); /* the new active memtable */
    char *tr = kiwi_trace(db, "imm", 3);
    CHECK(tr && strstr(tr, "{\"layer\":\"memtable\",\"id\":") &&
          strstr(tr, "\"result\":\"miss\"},{\"layer\":\"immutable\"") &&
          strstr(tr, "\"layer\":\"immutable\",\"id\":") &&
          strstr(tr, "],\"result\":\"found\",\"value\":\"4\""));
    kiwi_free(tr);
    char *mems = kiwi_property(db, "memtables");
    CHECK(mems && strstr(mems, "\"state\":\"immutable\""));
    kiwi_free(mems);
    atomic_store(&g_hold, false);
    pthread_join(t, NULL);
    kw_syscalls.write = g_real_write;
    tr = kiwi_trace(db, "imm", 3); /* now in L0 */
    CHECK(tr && strstr(tr, "\"layer\":\"sstable\",\"level\":0") && strstr(tr, "\"value\":\"4\""));
    kiwi_free(tr);
    kiwi_close(db);
    ctest_rmtree(dir);
}

int main(void)
{
    RUN(test_trace_immutable);
    RUN(test_live_memtable_bytes);
    RUN(test_settings_describe);
    RUN(test_trace_each_layer);
    RUN(test_live_settings_under_load);
    return ctest_summary();
}
