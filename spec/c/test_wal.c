/*
 * test_wal.c: the framed record log: round trips, group appends, torn tails, corruption before the
 * tail in both recovery modes, missing and empty files, callback errors and failed appends.
 * Preallocation (reserve, trim, no fallocate) and the rules for reading preallocated logs, with
 * simulated process and machine crashes, are in test_wal_prealloc.c; the shared payloads and
 * reader callback in wal_fixture.h.
 */
#include <errno.h>

#include "coding.h"
#include "ctest.h"
#include "env.h"
#include "wal.h"
#include "wal_fixture.h"

/* ---- helpers ---- */

/* Writes `count` records of the given sizes to path with kw_wal_writer_add; fills payloads and
 * each record's offset. */
static void write_log(const char *path, const size_t *sizes, size_t count, char **payloads,
                      uint64_t *offsets)
{
    kw_wal_writer *w;
    char *err = NULL;
    if (kw_wal_writer_create(path, &w, &err) != KIWI_OK) {
        fprintf(stderr, "create: %s\n", err);
        exit(2);
    }
    for (size_t i = 0; i < count; i++) {
        payloads[i] = make_payload((int)i, sizes[i]);
        offsets[i] = kw_wal_writer_size(w);
        if (kw_wal_writer_add(w, kw_slice_make(payloads[i], sizes[i]), &err) != KIWI_OK) {
            fprintf(stderr, "add: %s\n", err);
            exit(2);
        }
    }
    kw_wal_writer_close(w, true, NULL);
}

static void flip_byte(const char *path, uint64_t at)
{
    char *data;
    size_t len;
    if (kw_read_file(path, &data, &len, NULL) != KIWI_OK || at >= len)
        exit(2);
    data[at] ^= 0x5a;
    FILE *f = fopen(path, "wb");
    fwrite(data, 1, len, f);
    fclose(f);
    free(data);
}

static void poke_u32(const char *path, uint64_t at, uint32_t v)
{
    char *data;
    size_t len;
    if (kw_read_file(path, &data, &len, NULL) != KIWI_OK || at + 4 > len)
        exit(2);
    kw_encode_fixed32(data + at, v);
    FILE *f = fopen(path, "wb");
    fwrite(data, 1, len, f);
    fclose(f);
    free(data);
}

static uint64_t size_of(const char *path)
{
    uint64_t n = 0;
    kw_file_size_of(path, &n, NULL);
    return n;
}

/* ---- round trips ---- */

static void test_round_trip_varied_sizes(void)
{
    char *dir = ctest_tmpdir("wal");
    char *path = kw_join_path(dir, "000001.log");
    enum { N = 9 };
    size_t sizes[N] = {0, 1, 2, 116, 4096, 0, 65537, 1 << 20, 3};
    char *payloads[N];
    uint64_t offsets[N];
    write_log(path, sizes, N, payloads, offsets);

    uint64_t total = 0;
    for (int i = 0; i < N; i++)
        total += KW_WAL_HEADER_SIZE + sizes[i];
    CHECK_EQ_U64(size_of(path), total);

    reader r;
    reader_init(&r, (const char **)payloads, sizes, N);
    kw_wal_read_stats st;
    char *err = NULL, **errp = &err;
    CHECK_OK(kw_wal_read(path, KW_WAL_TOLERATE_TAIL, collect, &r, &st, &err), errp);
    CHECK_EQ_U64(r.n, N);
    for (int i = 0; i < N; i++) {
        /* records 0 and 5 are both empty: either id is a match */
        CHECK(r.ids[i] == i || (sizes[i] == 0 && r.ids[i] >= 0 && sizes[r.ids[i]] == 0));
        CHECK_EQ_U64(r.offsets[i], offsets[i]);
    }
    CHECK_EQ_U64(st.records, N);
    CHECK_EQ_U64(st.good_bytes, total);
    CHECK(!st.torn_tail);
    CHECK_EQ_U64(st.torn_bytes, 0);
    CHECK_EQ_U64(st.skipped_records, 0);
    free_payloads(payloads, N);
    free(path);
    ctest_rmtree(dir);
}

static void test_add_many_is_one_group(void)
{
    char *dir = ctest_tmpdir("wal");
    char *path = kw_join_path(dir, "000002.log");
    kw_wal_writer *w;
    char *err = NULL, **errp = &err;
    CHECK_OK(kw_wal_writer_create(path, &w, &err), errp);
    CHECK(strcmp(kw_wal_writer_path(w), path) == 0);
    enum { N = 40 };
    char *payloads[N];
    size_t sizes[N];
    kw_slice parts[N];
    for (int i = 0; i < N; i++) {
        sizes[i] = (size_t)(i * 13 % 300);
        payloads[i] = make_payload(i + 100, sizes[i]);
        parts[i] = kw_slice_make(payloads[i], sizes[i]);
    }
    CHECK_OK(kw_wal_writer_add_many(w, parts, 30, &err), errp);   /* a group of 30 */
    CHECK_OK(kw_wal_writer_add(w, parts[30], &err), errp);         /* a single record */
    CHECK_OK(kw_wal_writer_add_many(w, parts + 31, 9, &err), errp); /* a group of 9 */
    CHECK_OK(kw_wal_writer_add_many(w, parts, 0, &err), errp);      /* nothing */
    CHECK_OK(kw_wal_writer_sync(w, &err), errp);
    uint64_t total = 0;
    for (int i = 0; i < N; i++)
        total += KW_WAL_HEADER_SIZE + sizes[i];
    CHECK_EQ_U64(kw_wal_writer_size(w), total);
    CHECK_OK(kw_wal_writer_close(w, false, &err), errp);

    reader r;
    reader_init(&r, (const char **)payloads, sizes, N);
    kw_wal_read_stats st;
    CHECK_OK(kw_wal_read(path, KW_WAL_TOLERATE_TAIL, collect, &r, &st, &err), errp);
    CHECK_EQ_U64(r.n, N);
    for (int i = 0; i < N; i++)
        CHECK(r.ids[i] == i || (sizes[i] == 0 && r.ids[i] >= 0 && sizes[r.ids[i]] == 0));
    CHECK_EQ_U64(st.good_bytes, total);
    CHECK(!st.torn_tail);
    free_payloads(payloads, N);
    free(path);
    ctest_rmtree(dir);
}

/* ---- torn tails ---- */

/* Five records; the file is cut to `cut` bytes (or the last byte of the file is flipped when
 * cut == 0), and both modes must report a torn tail after record 4. */
static void check_torn(uint64_t (*where)(const uint64_t *offsets, const size_t *sizes),
                       bool flip_last)
{
    char *dir = ctest_tmpdir("wal");
    char *path = kw_join_path(dir, "000003.log");
    size_t sizes[5] = {10, 0, 200, 33, 500};
    char *payloads[5];
    uint64_t offsets[5];
    write_log(path, sizes, 5, payloads, offsets);
    uint64_t full = size_of(path);
    if (flip_last)
        flip_byte(path, full - 1);
    else
        CHECK_OK(kw_truncate_file(path, where(offsets, sizes), NULL), (char **)NULL);
    uint64_t size = size_of(path);
    for (int mode = 0; mode < 2; mode++) {
        reader r;
        reader_init(&r, (const char **)payloads, sizes, 5);
        kw_wal_read_stats st;
        char *err = NULL, **errp = &err;
        CHECK_OK(kw_wal_read(path, (kw_wal_recovery_mode)mode, collect, &r, &st, &err), errp);
        CHECK_EQ_U64(r.n, 4);
        for (int i = 0; i < 4; i++)
            CHECK_EQ_U64(r.ids[i], i);
        CHECK_EQ_U64(st.records, 4);
        CHECK(st.torn_tail);
        CHECK_EQ_U64(st.good_bytes, offsets[4]);
        CHECK_EQ_U64(st.torn_bytes, size - offsets[4]);
        CHECK_EQ_U64(st.skipped_records, 0);
    }
    /* cutting the tail off leaves a clean log */
    CHECK_OK(kw_truncate_file(path, offsets[4], NULL), (char **)NULL);
    reader r;
    reader_init(&r, (const char **)payloads, sizes, 5);
    kw_wal_read_stats st;
    CHECK_OK(kw_wal_read(path, KW_WAL_TOLERATE_TAIL, collect, &r, &st, NULL), (char **)NULL);
    CHECK(!st.torn_tail && st.records == 4);
    free_payloads(payloads, 5);
    free(path);
    ctest_rmtree(dir);
}

static uint64_t mid_header(const uint64_t *offsets, const size_t *sizes)
{
    return offsets[4] + 5;
}

static uint64_t mid_payload(const uint64_t *offsets, const size_t *sizes)
{
    return offsets[4] + KW_WAL_HEADER_SIZE + sizes[4] / 2;
}

static uint64_t header_only(const uint64_t *offsets, const size_t *sizes)
{
    return offsets[4] + KW_WAL_HEADER_SIZE;
}

static uint64_t one_byte(const uint64_t *offsets, const size_t *sizes)
{
    return offsets[4] + 1;
}

static void test_torn_in_header(void)
{
    check_torn(mid_header, false);
    check_torn(one_byte, false);
}

static void test_torn_in_payload(void)
{
    check_torn(mid_payload, false);
    check_torn(header_only, false);
}

static void test_torn_bad_crc_at_eof(void)
{
    check_torn(NULL, true);
}

/* ---- corruption before the tail ---- */

static void test_corruption_before_tail(void)
{
    char *dir = ctest_tmpdir("wal");
    char *path = kw_join_path(dir, "000004.log");
    size_t sizes[5] = {40, 50, 60, 70, 80};
    char *payloads[5];
    uint64_t offsets[5];
    write_log(path, sizes, 5, payloads, offsets);
    flip_byte(path, offsets[1] + KW_WAL_HEADER_SIZE + 7); /* inside record 2's payload */

    reader r;
    reader_init(&r, (const char **)payloads, sizes, 5);
    kw_wal_read_stats st;
    char *err = NULL;
    CHECK(kw_wal_read(path, KW_WAL_TOLERATE_TAIL, collect, &r, &st, &err) == KIWI_CORRUPTION);
    char want[4200];
    snprintf(want, sizeof want, "corruption: %s: record at offset %" PRIu64 ": checksum mismatch",
             path, offsets[1]);
    CHECK(err != NULL && strcmp(err, want) == 0);
    CHECK_EQ_U64(r.n, 1); /* record 1 was delivered before the damage was seen */

    reader_init(&r, (const char **)payloads, sizes, 5);
    char **errp = &err;
    CHECK_OK(kw_wal_read(path, KW_WAL_SKIP_CORRUPT, collect, &r, &st, &err), errp);
    CHECK_EQ_U64(r.n, 4);
    CHECK(r.ids[0] == 0 && r.ids[1] == 2 && r.ids[2] == 3 && r.ids[3] == 4);
    CHECK_EQ_U64(r.offsets[1], offsets[2]);
    CHECK_EQ_U64(st.records, 4);
    CHECK_EQ_U64(st.skipped_records, 1);
    CHECK_EQ_U64(st.skipped_bytes, KW_WAL_HEADER_SIZE + sizes[1]);
    CHECK(!st.torn_tail);
    CHECK_EQ_U64(st.good_bytes, size_of(path));
    kiwi_free(err);
    free_payloads(payloads, 5);
    free(path);
    ctest_rmtree(dir);
}

static void test_corrupt_length_before_tail(void)
{
    char *dir = ctest_tmpdir("wal");
    char *path = kw_join_path(dir, "000005.log");
    size_t sizes[5] = {40, 50, 60, 70, 80};
    char *payloads[5];
    uint64_t offsets[5];
    write_log(path, sizes, 5, payloads, offsets);

    /* a length no writer produces: corruption, or in skip mode the end of the readable log */
    poke_u32(path, offsets[1], 0xfffffff0u);
    reader r;
    reader_init(&r, (const char **)payloads, sizes, 5);
    kw_wal_read_stats st;
    char *err = NULL;
    CHECK(kw_wal_read(path, KW_WAL_TOLERATE_TAIL, collect, &r, &st, &err) == KIWI_CORRUPTION);
    char want[4200];
    snprintf(want, sizeof want, "corruption: %s: record at offset %" PRIu64 ": length %u exceeds",
             path, offsets[1], 0xfffffff0u);
    CHECK(err != NULL && strncmp(err, want, strlen(want)) == 0);
    reader_init(&r, (const char **)payloads, sizes, 5);
    char **errp = &err;
    CHECK_OK(kw_wal_read(path, KW_WAL_SKIP_CORRUPT, collect, &r, &st, &err), errp);
    CHECK_EQ_U64(r.n, 1);
    CHECK(st.torn_tail);
    CHECK_EQ_U64(st.good_bytes, offsets[1]);
    CHECK_EQ_U64(st.torn_bytes, size_of(path) - offsets[1]);

    /* a plausible-looking length (ends inside the file) that does not land on a record */
    poke_u32(path, offsets[1], (uint32_t)sizes[1] + 3);
    reader_init(&r, (const char **)payloads, sizes, 5);
    CHECK(kw_wal_read(path, KW_WAL_TOLERATE_TAIL, collect, &r, &st, &err) == KIWI_CORRUPTION);
    CHECK(err != NULL && strstr(err, "checksum mismatch") != NULL);
    reader_init(&r, (const char **)payloads, sizes, 5);
    CHECK_OK(kw_wal_read(path, KW_WAL_SKIP_CORRUPT, collect, &r, &st, &err), errp);
    CHECK_EQ_U64(r.n, 1);
    CHECK(st.torn_tail);
    CHECK_EQ_U64(st.skipped_records, 0);
    kiwi_free(err);
    free_payloads(payloads, 5);
    free(path);
    ctest_rmtree(dir);
}

/* ---- edge cases ---- */

static void test_empty_and_missing_files(void)
{
    char *dir = ctest_tmpdir("wal");
    char *path = kw_join_path(dir, "000006.log");
    kw_wal_writer *w;
    char *err = NULL, **errp = &err;
    CHECK_OK(kw_wal_writer_create(path, &w, &err), errp);
    CHECK_OK(kw_wal_writer_close(w, true, &err), errp);
    reader r;
    reader_init(&r, NULL, NULL, 0);
    kw_wal_read_stats st;
    CHECK_OK(kw_wal_read(path, KW_WAL_TOLERATE_TAIL, collect, &r, &st, &err), errp);
    CHECK_EQ_U64(r.n, 0);
    CHECK(st.records == 0 && st.good_bytes == 0 && !st.torn_tail);

    char *missing = kw_join_path(dir, "000099.log");
    CHECK(kw_wal_read(missing, KW_WAL_TOLERATE_TAIL, collect, &r, &st, &err) == KIWI_IO_ERROR);
    CHECK(err != NULL && strncmp(err, "io error: ", 10) == 0 && strstr(err, missing) != NULL);
    kiwi_free(err);
    free(missing);
    free(path);
    ctest_rmtree(dir);
}

static void test_callback_error_stops_the_read(void)
{
    char *dir = ctest_tmpdir("wal");
    char *path = kw_join_path(dir, "000007.log");
    size_t sizes[4] = {5, 6, 7, 8};
    char *payloads[4];
    uint64_t offsets[4];
    write_log(path, sizes, 4, payloads, offsets);
    reader r;
    reader_init(&r, (const char **)payloads, sizes, 4);
    r.fail_at = 2;
    kw_wal_read_stats st;
    char *err = NULL;
    CHECK(kw_wal_read(path, KW_WAL_TOLERATE_TAIL, collect, &r, &st, &err) ==
          KIWI_INVALID_ARGUMENT);
    char want[64];
    snprintf(want, sizeof want, "invalid argument: callback refused record at %" PRIu64,
             offsets[2]);
    CHECK(err != NULL && strcmp(err, want) == 0);
    CHECK_EQ_U64(r.n, 2);
    CHECK_EQ_U64(st.records, 2);
    kiwi_free(err);
    free_payloads(payloads, 4);
    free(path);
    ctest_rmtree(dir);
}

/* ---- failed appends ---- */

static ssize_t write_enospc(int fd, const void *buf, size_t n)
{
    /* half the record reaches the file, then the disk is full */
    ssize_t r = write(fd, buf, n / 2);
    (void)r;
    errno = ENOSPC;
    return -1;
}

/* writev's twin of write_enospc: the first half of what was asked reaches the file. */
static ssize_t writev_enospc(int fd, const struct iovec *iov, int cnt)
{
    size_t total = 0;
    for (int i = 0; i < cnt; i++)
        total += iov[i].iov_len;
    size_t half = total / 2;
    for (int i = 0; i < cnt && half > 0; i++) {
        size_t n = iov[i].iov_len < half ? iov[i].iov_len : half;
        ssize_t r = write(fd, iov[i].iov_base, n);
        (void)r;
        half -= n;
    }
    errno = ENOSPC;
    return -1;
}

static ssize_t writev_eio(int fd, const struct iovec *iov, int cnt)
{
    errno = EIO;
    return -1;
}

static void test_failed_append_is_sticky(void)
{
    char *dir = ctest_tmpdir("wal");
    char *path = kw_join_path(dir, "000008.log");
    kw_wal_writer *w;
    char *err = NULL, **errp = &err;
    CHECK_OK(kw_wal_writer_create(path, &w, &err), errp);
    CHECK_OK(kw_wal_writer_add(w, kw_slice_make("first", 5), &err), errp);
    kw_syscalls.write = write_enospc;
    kw_syscalls.writev = writev_enospc;
    kiwi_status st = kw_wal_writer_add(w, kw_slice_make("second record", 13), &err);
    kw_syscalls_reset();
    CHECK(st == KIWI_NO_SPACE);
    /* the log may now end in half a record: later appends must not bury it mid-file */
    CHECK(kw_wal_writer_add(w, kw_slice_make("third", 5), &err) == KIWI_NO_SPACE);
    CHECK(err != NULL && strstr(err, "an earlier append failed") != NULL);
    CHECK(kw_wal_writer_add_many(w, &(kw_slice){"x", 1}, 1, &err) == KIWI_NO_SPACE);
    kw_wal_writer_close(w, false, NULL);

    reader r;
    reader_init(&r, NULL, NULL, 0);
    kw_wal_read_stats rs;
    CHECK_OK(kw_wal_read(path, KW_WAL_TOLERATE_TAIL, collect, &r, &rs, &err), errp);
    CHECK_EQ_U64(rs.records, 1);
    CHECK(rs.torn_tail);

    /* the same for a group */
    CHECK_OK(kw_wal_writer_create(path, &w, &err), errp);
    kw_syscalls.writev = writev_eio;
    st = kw_wal_writer_add_many(w, (kw_slice[]){{"a", 1}, {"b", 1}}, 2, &err);
    kw_syscalls_reset();
    CHECK(st == KIWI_IO_ERROR);
    CHECK(kw_wal_writer_add(w, kw_slice_make("c", 1), &err) == KIWI_IO_ERROR);
    kw_wal_writer_close(w, false, NULL);

    /* an oversized record is refused without writing anything */
    CHECK_OK(kw_wal_writer_create(path, &w, &err), errp);
    kw_slice huge = kw_slice_make("", (size_t)KW_WAL_MAX_RECORD + 1);
    CHECK(kw_wal_writer_add(w, huge, &err) == KIWI_INVALID_ARGUMENT);
    CHECK_EQ_U64(kw_wal_writer_size(w), 0);
    CHECK_OK(kw_wal_writer_add(w, kw_slice_make("ok", 2), &err), errp); /* not sticky */
    kw_wal_writer_close(w, true, NULL);
    kiwi_free(err);
    free(path);
    ctest_rmtree(dir);
}

int main(void)
{
    RUN(test_round_trip_varied_sizes);
    RUN(test_add_many_is_one_group);
    RUN(test_torn_in_header);
    RUN(test_torn_in_payload);
    RUN(test_torn_bad_crc_at_eof);
    RUN(test_corruption_before_tail);
    RUN(test_corrupt_length_before_tail);
    RUN(test_empty_and_missing_files);
    RUN(test_callback_error_stops_the_read);
    RUN(test_failed_append_is_sticky);
    return ctest_summary();
}
