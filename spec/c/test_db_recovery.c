/*
 * test_db_recovery.c: a db reopened over damaged or crash-left files, through kiwi.h: a WAL
 * ending in half a record (a torn tail: every earlier write kept, counted in the stats, writes
 * after recovery durable); a preallocated WAL copied while open (zeros after the last record are
 * the end of the log, a last record cut short is a torn tail, a clean close trims the space);
 * a corrupt SSTable data block (gets and iterators report CORRUPTION naming the file, other
 * blocks still read). The shared open/put/get helpers are in db_fixture.h.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctest.h"
#include "db_fixture.h"
#include "kiwi.h"

static char *newest_with_suffix(const char *dir, const char *suffix)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "ls %s/*.%s | sort | tail -n 1", dir, suffix);
    FILE *p = popen(cmd, "r");
    static char path[4096];
    path[0] = 0;
    if (p && fgets(path, sizeof path, p))
        path[strcspn(path, "\n")] = 0;
    if (p)
        pclose(p);
    return path;
}

static void test_torn_wal_tail(void)
{
    char *dir = ctest_tmpdir("torn");
    kiwi_db *db = open_db(dir, "prod", NULL);
    if (!db) {
        CHECK(db != NULL);
        return;
    }
    for (int i = 0; i < 100; i++) {
        char k[16];
        snprintf(k, sizeof k, "t%03d", i);
        put(db, k, strlen(k), k, strlen(k));
    }
    kiwi_close(db);
    char *log = newest_with_suffix(dir, "log");
    struct stat sb;
    CHECK(stat(log, &sb) == 0 && sb.st_size > 0);
    /* append half a record: a header announcing 100 bytes, then 3 bytes */
    int fd = open(log, O_WRONLY | O_APPEND);
    const char torn[] = {100, 0, 0, 0, 1, 2, 3, 4, 'a', 'b', 'c'};
    CHECK(write(fd, torn, sizeof torn) == (ssize_t)sizeof torn);
    close(fd);
    db = open_db(dir, "prod", NULL);
    CHECK(db != NULL);
    if (db) {
        for (int i = 0; i < 100; i++) {
            char k[16];
            snprintf(k, sizeof k, "t%03d", i);
            CHECK(get_is(db, NULL, k, strlen(k), k, strlen(k)) == 1);
        }
        char *stats = kiwi_property(db, "stats");
        CHECK(stats && strstr(stats, "\"recovered_torn_bytes\":11"));
        kiwi_free(stats);
        put(db, "after", 5, "1", 1);
        kiwi_close(db);
        db = open_db(dir, "prod", NULL);
        CHECK(db && get_is(db, NULL, "after", 5, "1", 1) == 1);
        CHECK(db && get_is(db, NULL, "t099", 4, "t099", 4) == 1);
        if (db)
            kiwi_close(db);
    }
    ctest_rmtree(dir);
}

/* Copies dir to a fresh directory while the db is open: what a killed process leaves on disk
 * (the page cache is the files' content). Returns the copy's path (malloc'd). */
static char *copy_dir(const char *dir, const char *name)
{
    char *copy = ctest_tmpdir(name);
    char cmd[8400];
    snprintf(cmd, sizeof cmd, "cp -r %s/. %s/", dir, copy);
    CHECK(system(cmd) == 0);
    return copy;
}

/* Zeroes the last `n` bytes before the run of zeros that ends the file at path. */
static void zero_before_tail(const char *path, size_t n)
{
    FILE *f = fopen(path, "r+b");
    struct stat sb;
    if (f == NULL || stat(path, &sb) != 0)
        return;
    char *data = malloc((size_t)sb.st_size);
    size_t len = fread(data, 1, (size_t)sb.st_size, f);
    size_t end = len;
    while (end > 0 && data[end - 1] == 0)
        end--;
    memset(data + (end > n ? end - n : 0), 0, end > n ? n : end);
    fseek(f, 0, SEEK_SET);
    fwrite(data, 1, len, f);
    fclose(f);
    free(data);
}

/* Sync writes preallocate WAL space (wal.md): a crash leaves zeros after the last record, which
 * recovery reads as the end of the log, not as damage; a last record cut short there is a torn
 * tail; a clean close trims the space. 300 records of ~30 bytes pass the log's first page, so
 * the synced appends reserve a 64 KiB step. */
static void test_preallocated_wal_recovery(void)
{
    char *dir = ctest_tmpdir("prealloc");
    kiwi_db *db = open_db(dir, "prod", NULL);
    if (!db) {
        CHECK(db != NULL);
        return;
    }
    kiwi_write_options wo = {true};
    char k[16];
    for (int i = 0; i < 300; i++) {
        snprintf(k, sizeof k, "p%03d", i);
        CHECK(kiwi_put(db, &wo, k, strlen(k), k, strlen(k), NULL) == KIWI_OK);
    }
    struct stat sb;
    CHECK(stat(newest_with_suffix(dir, "log"), &sb) == 0 && sb.st_size >= 65536);
    char *crashed = copy_dir(dir, "prealloc-a"), *torn = copy_dir(dir, "prealloc-b");
    kiwi_close(db);
    CHECK(stat(newest_with_suffix(dir, "log"), &sb) == 0 && sb.st_size < 65536); /* trimmed */
    db = open_db(crashed, "prod", NULL);
    CHECK(db != NULL);
    for (int i = 0; db && i < 300; i++) {
        snprintf(k, sizeof k, "p%03d", i);
        CHECK(get_is(db, NULL, k, strlen(k), k, strlen(k)) == 1);
    }
    char *stats = db ? kiwi_property(db, "stats") : NULL;
    CHECK(stats && strstr(stats, "\"recovered_torn_bytes\":0,") &&
          strstr(stats, "\"recovered_records\":300,"));
    kiwi_free(stats);
    if (db)
        kiwi_close(db);
    zero_before_tail(newest_with_suffix(torn, "log"), 3); /* the end of the last value */
    db = open_db(torn, "prod", NULL);
    CHECK(db != NULL);
    if (db) {
        CHECK(get_is(db, NULL, "p298", 4, "p298", 4) == 1);
        CHECK(get_is(db, NULL, "p299", 4, NULL, 0) == 0); /* cut as a torn tail */
        stats = kiwi_property(db, "stats");
        CHECK(stats && strstr(stats, "\"recovered_records\":299,") &&
              !strstr(stats, "\"recovered_torn_bytes\":0,"));
        kiwi_free(stats);
        kiwi_close(db);
    }
    ctest_rmtree(crashed);
    ctest_rmtree(torn);
    ctest_rmtree(dir);
}

static void test_corrupt_sstable_block(void)
{
    char *dir = ctest_tmpdir("corrupt");
    kiwi_db *db = open_db(dir, "prod", NULL);
    if (!db) {
        CHECK(db != NULL);
        return;
    }
    char k[16], v[128];
    memset(v, 'v', sizeof v);
    for (int i = 0; i < 2000; i++) {
        snprintf(k, sizeof k, "c%05d", i);
        put(db, k, strlen(k), v, sizeof v);
    }
    CHECK(kiwi_flush(db, NULL) == KIWI_OK);
    kiwi_close(db);
    char *sst = newest_with_suffix(dir, "sst");
    int fd = open(sst, O_RDWR);
    char byte;
    CHECK(pread(fd, &byte, 1, 100) == 1); /* inside the first data block */
    byte ^= 0x40;
    CHECK(pwrite(fd, &byte, 1, 100) == 1);
    close(fd);
    db = open_db(dir, "prod", NULL);
    CHECK(db != NULL);
    if (db) {
        char *val = NULL, *err = NULL;
        size_t vl;
        CHECK(kiwi_get(db, NULL, "c00000", 6, &val, &vl, &err) == KIWI_CORRUPTION);
        CHECK(err && strncmp(err, "corruption: ", 12) == 0 && strstr(err, sst));
        kiwi_free(err);
        kiwi_free(val);
        CHECK(get_is(db, NULL, "c01999", 6, v, sizeof v) == 1); /* other blocks still read */
        kiwi_iter *it = kiwi_iter_create(db, NULL);
        kiwi_iter_seek_to_first(it);
        CHECK(!kiwi_iter_valid(it));
        err = NULL;
        CHECK(kiwi_iter_status(it, &err) == KIWI_CORRUPTION);
        kiwi_free(err);
        kiwi_iter_destroy(it);
        kiwi_close(db);
    }
    ctest_rmtree(dir);
}

int main(void)
{
    RUN(test_torn_wal_tail);
    RUN(test_preallocated_wal_recovery);
    RUN(test_corrupt_sstable_block);
    return ctest_summary();
}
