/*
 * test_corruption.c: damaged files of every type — WAL, SSTable (data, index, filter,
 * properties, footer), manifest, CURRENT — give a clear "corruption:" (or "io error:") naming
 * the file, or a documented recovery; never a crash, a hang, or a wrong value returned silently.
 *
 * A pristine db (SSTables at two levels plus unflushed WAL data) is built once; each case copies
 * it, damages one file, opens the copy and reads every key. Then 300 random single-byte flips and
 * truncations over all files check the "never a wrong value" rule.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctest.h"
#include "kiwi.h"

#define NKEYS 3000

static char *g_pristine;

static void key_of(int i, char *k) { snprintf(k, 32, "key%06d", i); }
static void val_of(int i, char *v) { snprintf(v, 64, "value-%d-abcdefghijklmnopqrstuvwxyz", i); }

static kiwi_db *open_db(const char *dir, const char *recovery, char **err)
{
    kiwi_options *o = kiwi_options_create("prod");
    kiwi_options_set(o, "max_memtable_size_mb", "0.0625", NULL);
    if (recovery)
        kiwi_options_set(o, "wal_recovery", recovery, NULL);
    kiwi_db *db = NULL;
    kiwi_status st = kiwi_open(dir, o, &db, err);
    kiwi_options_destroy(o);
    return st == KIWI_OK ? db : NULL;
}

static void build_pristine(void)
{
    g_pristine = ctest_tmpdir("pristine");
    kiwi_db *db = open_db(g_pristine, NULL, NULL);
    char k[32], v[64];
    for (int i = 0; i < NKEYS; i++) {
        key_of(i, k);
        val_of(i, v);
        kiwi_put(db, NULL, k, strlen(k), v, strlen(v), NULL);
        if (i == NKEYS / 2)
            kiwi_compact_range(db, NULL, 0, NULL, 0, NULL); /* a deeper level too */
    }
    kiwi_close(db); /* the last writes stay in the WAL */
}

static char *copy_db(void)
{
    char *dir = ctest_tmpdir("corrupt");
    char cmd[8400];
    snprintf(cmd, sizeof cmd, "cp -a %s/. %s/", g_pristine, dir);
    if (system(cmd) != 0)
        fprintf(stderr, "copy failed\n");
    return dir;
}

/* The path of the newest file in dir whose name contains `part` (static buffer). */
static const char *file_with(const char *dir, const char *part)
{
    static char path[4200];
    char best[256] = "";
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL)
        if (strstr(e->d_name, part) && strcmp(e->d_name, best) > 0)
            snprintf(best, sizeof best, "%s", e->d_name);
    if (d)
        closedir(d);
    snprintf(path, sizeof path, "%s/%s", dir, best);
    return path;
}

static long file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
}

static void flip(const char *path, long off)
{
    int fd = open(path, O_RDWR);
    unsigned char b;
    if (fd >= 0 && pread(fd, &b, 1, off) == 1) {
        b ^= 0x5a;
        if (pwrite(fd, &b, 1, off) != 1)
            fprintf(stderr, "pwrite failed\n");
    }
    if (fd >= 0)
        close(fd);
}

static void truncate_to(const char *path, long len)
{
    if (truncate(path, len) != 0)
        fprintf(stderr, "truncate failed\n");
}

typedef struct {
    int opened;    /* 1 if the db opened */
    int wrong;     /* values returned that differ from what was written */
    int errors;    /* gets that failed with a status */
    int missing;   /* keys not found */
} outcome;

/* Opens dir and reads every key; err receives the open error. */
static outcome read_all(const char *dir, const char *recovery, char **err)
{
    outcome o = {0, 0, 0, 0};
    kiwi_db *db = open_db(dir, recovery, err);
    if (!db)
        return o;
    o.opened = 1;
    char k[32], v[64];
    for (int i = 0; i < NKEYS; i++) {
        char *got = NULL, *gerr = NULL;
        size_t gl = 0;
        key_of(i, k);
        val_of(i, v);
        kiwi_status st = kiwi_get(db, NULL, k, strlen(k), &got, &gl, &gerr);
        if (st == KIWI_OK && (gl != strlen(v) || memcmp(got, v, gl) != 0))
            o.wrong++;
        else if (st == KIWI_NOT_FOUND)
            o.missing++;
        else if (st != KIWI_OK) {
            o.errors++;
            if (strncmp(gerr, "corruption: ", 12) != 0)
                o.wrong++; /* a damaged block must say corruption */
        }
        kiwi_free(got);
        kiwi_free(gerr);
    }
    kiwi_close(db);
    return o;
}

static void expect_open_error(const char *what, const char *dir, const char *file_part)
{
    char *err = NULL;
    outcome o = read_all(dir, NULL, &err);
    if (o.opened || !err || (strncmp(err, "corruption: ", 12) != 0 &&
                             strncmp(err, "io error: ", 10) != 0) ||
        !strstr(err, file_part)) {
        fprintf(stderr, "%s: opened=%d err=%s\n", what, o.opened, err ? err : "(none)");
        CHECK(!"open must fail naming the damaged file");
    }
    kiwi_free(err);
}

static void test_current(void)
{
    char *dir = copy_db();
    char path[4200];
    snprintf(path, sizeof path, "%s/CURRENT", dir);
    FILE *f = fopen(path, "w");
    fputs("garbage\n", f);
    fclose(f);
    expect_open_error("CURRENT garbage", dir, "CURRENT");
    truncate_to(path, 0);
    expect_open_error("CURRENT empty", dir, "CURRENT");
    f = fopen(path, "w");
    fputs("MANIFEST-999999\n", f);
    fclose(f);
    expect_open_error("CURRENT names a missing manifest", dir, "MANIFEST-999999");
    ctest_rmtree(dir);
}

static void test_manifest(void)
{
    char *dir = copy_db();
    const char *m = file_with(dir, "MANIFEST-");
    flip(m, file_size(m) / 2);
    expect_open_error("manifest byte flipped", dir, "MANIFEST-");
    ctest_rmtree(dir);
    dir = copy_db();
    m = file_with(dir, "MANIFEST-");
    truncate_to(m, 0);
    expect_open_error("manifest empty", dir, "MANIFEST-");
    ctest_rmtree(dir);
}

static void test_sstable_parts(void)
{
    /* footer, then the last data-ish byte regions: the tail holds index/props/filter */
    const long from_end[] = {1, 8, 30, 63, 70, 200};
    for (size_t i = 0; i < sizeof from_end / sizeof from_end[0]; i++) {
        char *dir = copy_db();
        const char *sst = file_with(dir, ".sst");
        flip(sst, file_size(sst) - from_end[i]);
        char *err = NULL;
        outcome o = read_all(dir, NULL, &err);
        CHECK(o.wrong == 0);
        if (o.opened) { /* a byte the open does not check: reads that touch it say so */
            CHECK(o.errors + o.missing == 0 || o.errors > 0);
        } else {
            CHECK(err && strncmp(err, "corruption: ", 12) == 0 && strstr(err, ".sst"));
        }
        kiwi_free(err);
        ctest_rmtree(dir);
    }
    /* a data block: the open succeeds, the gets that touch it fail with corruption */
    char *dir = copy_db();
    const char *sst = file_with(dir, ".sst");
    flip(sst, 100);
    char *err = NULL;
    outcome o = read_all(dir, NULL, &err);
    CHECK(o.opened && o.wrong == 0 && o.errors > 0);
    kiwi_free(err);
    ctest_rmtree(dir);
    /* a truncated table */
    dir = copy_db();
    sst = file_with(dir, ".sst");
    truncate_to(sst, file_size(sst) / 2);
    expect_open_error("sstable truncated", dir, ".sst");
    ctest_rmtree(dir);
}

static void test_wal(void)
{
    char *dir = copy_db();
    const char *log = file_with(dir, ".log");
    long size = file_size(log);
    CHECK(size > 1000);
    flip(log, size / 3); /* a record well before the tail */
    expect_open_error("WAL record corrupted", dir, ".log");
    /* the documented recovery mode skips it and keeps the rest */
    char *err = NULL;
    outcome o = read_all(dir, "skip_corrupt", &err);
    CHECK(o.opened && o.wrong == 0 && o.errors == 0);
    CHECK(o.missing > 0 && o.missing < 20); /* one record's keys are lost, nothing else */
    kiwi_free(err);
    ctest_rmtree(dir);
    /* a truncated tail is cut: every whole record is kept */
    dir = copy_db();
    log = file_with(dir, ".log");
    truncate_to(log, file_size(log) - 5);
    o = read_all(dir, NULL, &err);
    CHECK(o.opened && o.wrong == 0 && o.errors == 0 && o.missing == 1);
    kiwi_free(err);
    ctest_rmtree(dir);
}

static void test_random_damage(void)
{
    unsigned seed = 12345;
    int opened = 0, refused = 0;
    const char *parts[] = {".sst", ".log", "MANIFEST-", "CURRENT"};
    for (int round = 0; round < 300; round++) {
        char *dir = copy_db();
        const char *path = file_with(dir, parts[rand_r(&seed) % 4]);
        long size = file_size(path);
        if (size > 0) {
            if (rand_r(&seed) % 5 == 0)
                truncate_to(path, (long)(rand_r(&seed) % (unsigned)size));
            else
                flip(path, (long)(rand_r(&seed) % (unsigned)size));
        }
        char *err = NULL;
        outcome o = read_all(dir, NULL, &err);
        if (o.wrong) {
            fprintf(stderr, "round %d: %s damaged: %d wrong values\n", round, path, o.wrong);
            CHECK(!"a wrong value was returned silently");
        }
        if (o.opened)
            opened++;
        else
            refused++;
        kiwi_free(err);
        ctest_rmtree(dir);
    }
    printf("random damage: 300 rounds, %d opened (damage detected on read or harmless), "
           "%d refused at open\n", opened, refused);
}

int main(void)
{
    build_pristine();
    RUN(test_current);
    RUN(test_manifest);
    RUN(test_sstable_parts);
    RUN(test_wal);
    RUN(test_random_damage);
    ctest_rmtree(g_pristine);
    return ctest_summary();
}
