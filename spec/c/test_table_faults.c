/*
 * test_table_faults.c: SSTables that are damaged or fail to be written: a corrupt data block
 * (checked lazily: gets, iteration and verify report it with the block's offset), corrupt filter,
 * properties and index blocks, footer, magic and footer CRC, a properties map announcing 2^32 - 1
 * pairs, truncated and missing files; builder errors (empty table, keys out of order, bad options,
 * a missing directory, abandon); injected write and fdatasync failures that leave no file. The
 * model and checks are in table_model_fixture.h; valid tables are in test_table.c.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include "coding.h"
#include "crc32c.h"
#include "ctest.h"
#include "dbformat.h"
#include "env.h"
#include "table.h"
#include "table_model_fixture.h"

/* ---- corruption ------------------------------------------------------------------------------ */

static void flip_byte(const char *path, uint64_t off)
{
    FILE *f = fopen(path, "r+b");
    fseek(f, (long)off, SEEK_SET);
    int c = fgetc(f);
    fseek(f, (long)off, SEEK_SET);
    fputc(c ^ 0x40, f);
    fclose(f);
}

/* The footer's handle i (0 filter, 1 props, 2 index): offset and size. */
static void footer_handle(const char *path, int i, uint64_t *off, uint64_t *size)
{
    char *data;
    size_t len;
    kw_read_file(path, &data, &len, NULL);
    *off = kw_decode_fixed64(data + len - 64 + 16 * i);
    *size = kw_decode_fixed64(data + len - 64 + 16 * i + 8);
    free(data);
}

static void expect_open_corrupt(const char *path, const char *needle)
{
    kw_table *t = NULL;
    char *err = NULL;
    CHECK(kw_table_open(path, 3, &t, &err) == KIWI_CORRUPTION);
    CHECK(t == NULL);
    CHECK(err != NULL && strncmp(err, "corruption: ", 12) == 0 && strstr(err, path) != NULL);
    if (err == NULL || strstr(err, needle) == NULL)
        fprintf(stderr, "  message %s lacks '%s'\n", err ? err : "(null)", needle);
    CHECK(err != NULL && strstr(err, needle) != NULL);
    free(err);
}

static void test_corrupt_data_block(void)
{
    char *dir = ctest_tmpdir("table");
    char *path = kw_join_path(dir, "000003.sst");
    model m = {0};
    many_model(&m, 5000);
    char *err = NULL;
    char **errp = &err; /* CHECK_OK(x, &err) trips -Werror=address */
    CHECK_OK(build(path, &m, NULL, NULL, &err), errp);
    kw_table *t;
    CHECK_OK(kw_table_open(path, 3, &t, &err), errp);
    kw_table_lookup_info info;
    kw_lookup r;
    kw_slice v;
    kw_slice uk = kw_ikey_user(ek(&m.e[2000]));
    CHECK_OK(kw_table_get(t, uk, KW_MAX_SEQ, &r, &v, &info, &err), errp);
    uint64_t bad_off = info.block_offset;
    kw_table_unref(t);
    flip_byte(path, bad_off + info.block_size / 2);

    CHECK_OK(kw_table_open(path, 3, &t, &err), errp); /* data blocks are checked lazily */
    char want[512];
    snprintf(want, sizeof want, "corruption: %s: block at offset %llu: checksum mismatch", path,
             (unsigned long long)bad_off);
    int bad = 0, good = 0;
    for (size_t i = 0; i < m.n; i++) {
        uk = kw_ikey_user(ek(&m.e[i]));
        kiwi_status st = kw_table_get(t, uk, KW_MAX_SEQ, &r, &v, &info, &err);
        if (info.block_offset == bad_off) {
            bad++;
            CHECK(st == KIWI_CORRUPTION && err != NULL && strcmp(err, want) == 0);
        } else {
            good++;
            CHECK(st == KIWI_OK && r != KW_LOOKUP_MISS);
        }
    }
    CHECK(bad > 0 && good > 4000);
    kw_iter *it = kw_table_iter(t); /* iteration stops at the bad block with the error */
    size_t n = 0;
    for (kw_iter_seek_to_first(it); kw_iter_valid(it); kw_iter_next(it))
        n++;
    CHECK(n < m.n && n > 0);
    CHECK(kw_iter_status(it, &err) == KIWI_CORRUPTION && strcmp(err, want) == 0);
    kw_iter_destroy(it);
    CHECK(kw_table_verify(t, &err) == KIWI_CORRUPTION && strcmp(err, want) == 0);
    kw_table_unref(t);
    free(err);
    free(path);
    model_free(&m);
    ctest_rmtree(dir);
}

static void test_corrupt_meta(void)
{
    char *dir = ctest_tmpdir("table");
    char *path = kw_join_path(dir, "000004.sst");
    model m = {0};
    many_model(&m, 3000);
    char *err = NULL;
    char **errp = &err; /* CHECK_OK(x, &err) trips -Werror=address */
    static const char *const names[3] = {"filter block", "properties block", "index block"};
    for (int i = 0; i < 3; i++) { /* a byte inside each meta block */
        CHECK_OK(build(path, &m, NULL, NULL, &err), errp);
        uint64_t off, size;
        footer_handle(path, i, &off, &size);
        flip_byte(path, off + size / 2);
        char needle[256];
        snprintf(needle, sizeof needle, "%s at offset %llu: checksum mismatch", names[i],
                 (unsigned long long)off);
        expect_open_corrupt(path, needle);
    }
    /* a properties block whose map announces 2^32 - 1 pairs, CRC repaired: refused before
     * msgpack-c would allocate for them (fuzz regression open-props-huge-container) */
    CHECK_OK(build(path, &m, NULL, NULL, &err), errp);
    uint64_t poff, psize;
    footer_handle(path, 1, &poff, &psize);
    char *data;
    size_t len;
    CHECK_OK(kw_read_file(path, &data, &len, &err), errp);
    memcpy(data + poff, "\xdf\xff\xff\xff\xff", 5);
    kw_encode_fixed32(data + poff + psize + 1,
                      kw_crc32c_extend(kw_crc32c(data + poff, psize), data + poff + psize, 1));
    FILE *f = fopen(path, "wb");
    fwrite(data, 1, len, f);
    fclose(f);
    free(data);
    expect_open_corrupt(path, "properties block at offset");
    expect_open_corrupt(path, "not a msgpack map");
    kw_table_props bp;
    CHECK_OK(build(path, &m, NULL, &bp, &err), errp);
    uint64_t foff = bp.file_size - 64;
    flip_byte(path, foff + 3); /* a handle */
    expect_open_corrupt(path, "footer at offset");
    CHECK_OK(build(path, &m, NULL, NULL, &err), errp);
    flip_byte(path, foff + 60); /* the magic */
    expect_open_corrupt(path, "bad magic number");
    CHECK_OK(build(path, &m, NULL, NULL, &err), errp);
    flip_byte(path, foff + 53); /* the footer CRC */
    expect_open_corrupt(path, "checksum mismatch");

    uint64_t cuts[] = {bp.file_size - 1, bp.file_size - 64, bp.file_size / 2, 63, 1, 0};
    for (int i = 0; i < 6; i++) {
        CHECK_OK(build(path, &m, NULL, NULL, &err), errp);
        CHECK(truncate(path, (off_t)cuts[i]) == 0);
        expect_open_corrupt(path, "footer");
    }
    kw_table *t;
    char *missing = kw_join_path(dir, "nope.sst");
    CHECK(kw_table_open(missing, 9, &t, &err) == KIWI_IO_ERROR);
    free(missing);
    kw_table_props_free(&bp);
    free(err);
    free(path);
    model_free(&m);
    ctest_rmtree(dir);
}

/* ---- builder errors -------------------------------------------------------------------------- */

static void test_builder_errors(void)
{
    char *dir = ctest_tmpdir("table");
    char *path = kw_join_path(dir, "000006.sst");
    char *err = NULL;
    char **errp = &err; /* CHECK_OK(x, &err) trips -Werror=address */
    kw_table_builder *b;
    /* empty tables are rejected at finish and leave no file */
    CHECK_OK(kw_table_builder_create(path, NULL, &b, &err), errp);
    CHECK(kw_table_builder_finish(b, NULL, &err) == KIWI_INVALID_ARGUMENT);
    CHECK(err != NULL && strstr(err, "at least one entry") != NULL);
    CHECK(!kw_path_exists(path));
    /* out of order */
    model m = {0};
    many_model(&m, 100);
    CHECK_OK(kw_table_builder_create(path, NULL, &b, &err), errp);
    kw_table_builder_add(b, ek(&m.e[5]), kw_slice_make("", 0));
    kw_table_builder_add(b, ek(&m.e[4]), kw_slice_make("", 0));
    kw_table_builder_add(b, ek(&m.e[6]), kw_slice_make("", 0));
    CHECK(kw_table_builder_finish(b, NULL, &err) == KIWI_INVALID_ARGUMENT);
    CHECK(err != NULL && strstr(err, "does not sort after") != NULL && strstr(err, path));
    CHECK(!kw_path_exists(path));
    /* a key shorter than its trailer */
    CHECK_OK(kw_table_builder_create(path, NULL, &b, &err), errp);
    kw_table_builder_add(b, kw_slice_make("short", 5), kw_slice_make("", 0));
    CHECK(kw_table_builder_finish(b, NULL, &err) == KIWI_INVALID_ARGUMENT);
    /* abandon removes the partial file */
    kw_table_options o;
    kw_table_options_default(&o);
    o.block_size = 64;
    CHECK_OK(kw_table_builder_create(path, &o, &b, &err), errp);
    for (size_t i = 0; i < m.n; i++)
        kw_table_builder_add(b, ek(&m.e[i]), kw_slice_make("v", 1));
    CHECK_EQ_U64(kw_table_builder_entries(b), m.n);
    CHECK(kw_table_builder_file_size(b) > 0);
    CHECK(kw_path_exists(path));
    kw_table_builder_abandon(b);
    CHECK(!kw_path_exists(path));
    /* bad options */
    kw_table_options_default(&o);
    o.restart_interval = 0;
    CHECK(kw_table_builder_create(path, &o, &b, &err) == KIWI_INVALID_ARGUMENT);
    kw_table_options_default(&o);
    o.bloom_fpr = 1.5;
    CHECK(kw_table_builder_create(path, &o, &b, &err) == KIWI_INVALID_ARGUMENT);
    CHECK(!kw_path_exists(path));
    /* a directory that does not exist */
    char *nodir = kw_join_path(dir, "no/such/dir.sst");
    CHECK(kw_table_builder_create(nodir, NULL, &b, &err) == KIWI_IO_ERROR);
    free(nodir);
    /* a one-entry table with restart interval 1 and tiny blocks */
    o.bloom_fpr = 0.5;
    o.restart_interval = 1;
    o.block_size = 1;
    model one = {0};
    many_model(&one, 1);
    kw_table_props bp;
    CHECK_OK(build(path, &one, &o, &bp, &err), errp);
    CHECK_EQ_U64(bp.data_blocks, 1);
    kw_table *t;
    CHECK_OK(kw_table_open(path, 6, &t, &err), errp);
    check_iteration(t, &one, 1);
    kw_table_props copy;
    kw_table_props_copy(&copy, kw_table_properties(t));
    CHECK(copy.entries == 1 && copy.smallest_len == one.e[0].klen);
    kw_table_props_free(&copy);
    kw_table_unref(t);
    kw_table_props_free(&bp);
    model_free(&one);
    model_free(&m);
    free(err);
    free(path);
    ctest_rmtree(dir);
}

/* ---- injected I/O faults ------------------------------------------------------------------- */

static int writes_left;
static ssize_t failing_writev(int fd, const struct iovec *iov, int n)
{
    if (writes_left-- <= 0) {
        errno = ENOSPC;
        return -1;
    }
    return writev(fd, iov, n);
}
static ssize_t failing_write(int fd, const void *p, size_t n)
{
    if (writes_left-- <= 0) {
        errno = ENOSPC;
        return -1;
    }
    return write(fd, p, n);
}
static int failing_fdatasync(int fd)
{
    errno = EIO;
    return -1;
}

static void test_io_faults(void)
{
    char *dir = ctest_tmpdir("table");
    char *path = kw_join_path(dir, "000007.sst");
    model m = {0};
    many_model(&m, 3000);
    char *err = NULL;
    char **errp = &err; /* CHECK_OK(x, &err) trips -Werror=address */
    writes_left = 1000000; /* count the writes of a good build */
    kw_syscalls.writev = failing_writev;
    kw_syscalls.write = failing_write;
    CHECK_OK(build(path, &m, NULL, NULL, &err), errp);
    kw_syscalls_reset();
    int total = 1000000 - writes_left;
    CHECK(total > 6);
    /* fail the first data block, one in the middle, the filter, properties, index, footer */
    int budgets[] = {0, total / 2, total - 4, total - 3, total - 2, total - 1};
    for (int i = 0; i < 6; i++) {
        writes_left = budgets[i];
        kw_syscalls.writev = failing_writev;
        kw_syscalls.write = failing_write;
        kiwi_status st = build(path, &m, NULL, NULL, &err);
        kw_syscalls_reset();
        CHECK(st == KIWI_NO_SPACE);
        CHECK(err != NULL && strstr(err, path) != NULL);
        CHECK(!kw_path_exists(path));
    }
    kw_syscalls.fdatasync = failing_fdatasync;
    kiwi_status st = build(path, &m, NULL, NULL, &err);
    kw_syscalls_reset();
    CHECK(st == KIWI_IO_ERROR && err != NULL && strstr(err, "fdatasync") != NULL);
    CHECK(!kw_path_exists(path));
    free(err);
    free(path);
    model_free(&m);
    ctest_rmtree(dir);
}

int main(void)
{
    RUN(test_corrupt_data_block);
    RUN(test_corrupt_meta);
    RUN(test_builder_errors);
    RUN(test_io_faults);
    return ctest_summary();
}
