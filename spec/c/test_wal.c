/*
 * test_wal.c: the framed record log: round trips, group appends, torn tails, corruption before the
 * tail in both recovery modes, missing and empty files, callback errors and failed appends;
 * preallocation (reserve, trim, no fallocate) and the rules for reading preallocated logs, with
 * simulated process and machine crashes.
 */
#include <errno.h>
#include <sys/stat.h>

#include "coding.h"
#include "crc32c.h"
#include "ctest.h"
#include "env.h"
#include "wal.h"

/* ---- helpers ---- */

/* Deterministic payload i of size n. */
static char *make_payload(int i, size_t n)
{
    char *p = malloc(n ? n : 1);
    for (size_t j = 0; j < n; j++)
        p[j] = (char)(i * 31 + (int)(j * 7) + (int)(j >> 8));
    return p;
}

typedef struct {
    size_t n;
    int ids[64];         /* which expected record each delivered one matched (-1: none) */
    uint64_t offsets[64];
    const char **want;   /* expected payloads */
    const size_t *want_len;
    size_t want_count;
    size_t fail_at;      /* return an error on this call (SIZE_MAX: never) */
} reader;

static kiwi_status collect(void *ctx, kw_slice payload, uint64_t offset, char **errmsg)
{
    reader *r = ctx;
    if (r->n == r->fail_at)
        return kw_error(errmsg, KIWI_INVALID_ARGUMENT, "callback refused record at %" PRIu64,
                        offset);
    int id = -1;
    for (size_t i = 0; i < r->want_count && id < 0; i++) {
        if (r->want_len[i] == payload.size &&
            (payload.size == 0 || memcmp(r->want[i], payload.data, payload.size) == 0))
            id = (int)i;
    }
    if (r->n < 64) {
        r->ids[r->n] = id;
        r->offsets[r->n] = offset;
    }
    r->n++;
    return KIWI_OK;
}

static void reader_init(reader *r, const char **want, const size_t *len, size_t count)
{
    memset(r, 0, sizeof *r);
    r->want = want;
    r->want_len = len;
    r->want_count = count;
    r->fail_at = SIZE_MAX;
}

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

static void free_payloads(char **p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(p[i]);
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

/* ---- preallocation ---- */

static uint64_t disk_length(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
}

static void test_reserve_preallocates_and_close_trims(void)
{
    char *dir = ctest_tmpdir("wal");
    char *path = kw_join_path(dir, "000011.log");
    kw_wal_writer *w;
    char *err = NULL, **errp = &err;
    CHECK_OK(kw_wal_writer_create(path, &w, &err), errp);
    enum { N = 40 };
    char *payloads[N];
    size_t sizes[N];
    uint64_t data = 0, max_over = 0;
    for (int i = 0; i < N; i++) {
        sizes[i] = (size_t)(1 + i * 977 % 9000); /* never empty: see wal.h */
        payloads[i] = make_payload(i, sizes[i]);
        kw_wal_writer_reserve(w, KW_WAL_HEADER_SIZE + sizes[i]);
        uint64_t alloc = kw_wal_writer_allocated(w);
        uint64_t step = data < 65536 ? 65536 : (data > 1048576 ? 1048576 : data);
        CHECK(alloc >= data + KW_WAL_HEADER_SIZE + sizes[i]); /* the append fits */
        CHECK(alloc <= data + KW_WAL_HEADER_SIZE + sizes[i] + step); /* a step at most */
        CHECK_EQ_U64(disk_length(path), alloc);             /* the file's length is set */
        if (alloc - data > max_over)
            max_over = alloc - data;
        CHECK_OK(kw_wal_writer_add(w, kw_slice_make(payloads[i], sizes[i]), &err), errp);
        data += KW_WAL_HEADER_SIZE + sizes[i];
        CHECK_EQ_U64(kw_wal_writer_size(w), data); /* the size counts records only */
    }
    CHECK(max_over >= 64 * 1024);
    CHECK_OK(kw_wal_writer_sync(w, &err), errp);
    /* what a crash leaves: the records, then zeros to the preallocated length */
    uint64_t length = disk_length(path);
    CHECK(length > data);
    reader r;
    reader_init(&r, (const char **)payloads, sizes, N);
    kw_wal_read_stats st;
    CHECK_OK(kw_wal_read_preallocated(path, KW_WAL_TOLERATE_TAIL, collect, &r, &st, &err), errp);
    CHECK_EQ_U64(r.n, N);
    CHECK(r.ids[0] == 0 && r.ids[N - 1] == N - 1);
    CHECK(!st.torn_tail && st.good_bytes == data && st.prealloc_bytes == length - data);
    /* a clean close gives the space back */
    CHECK_OK(kw_wal_writer_close(w, true, &err), errp);
    CHECK_EQ_U64(disk_length(path), data);
    reader_init(&r, (const char **)payloads, sizes, N);
    CHECK_OK(kw_wal_read(path, KW_WAL_TOLERATE_TAIL, collect, &r, &st, &err), errp);
    CHECK(r.n == N && !st.torn_tail && st.good_bytes == data);
    free_payloads(payloads, N);
    free(path);
    ctest_rmtree(dir);
}

static int g_fallocate_calls;

static int fallocate_unsupported(int fd, int mode, off_t off, off_t len)
{
    g_fallocate_calls++;
    errno = EOPNOTSUPP;
    return -1;
}

/* Where the file system cannot preallocate, the log grows record by record as before. */
static void test_reserve_without_fallocate(void)
{
    char *dir = ctest_tmpdir("wal");
    char *path = kw_join_path(dir, "000012.log");
    kw_wal_writer *w;
    char *err = NULL, **errp = &err;
    CHECK_OK(kw_wal_writer_create(path, &w, &err), errp);
    g_fallocate_calls = 0;
    kw_syscalls.fallocate = fallocate_unsupported;
    for (int i = 0; i < 5; i++) {
        kw_wal_writer_reserve(w, 100);
        CHECK_OK(kw_wal_writer_add(w, kw_slice_make("0123456789", 10), &err), errp);
    }
    kw_syscalls_reset();
    CHECK_EQ_U64(g_fallocate_calls, 1); /* tried once, then not again for this log */
    CHECK_EQ_U64(kw_wal_writer_allocated(w), 5 * (KW_WAL_HEADER_SIZE + 10));
    CHECK_EQ_U64(disk_length(path), 5 * (KW_WAL_HEADER_SIZE + 10));
    CHECK_OK(kw_wal_writer_close(w, true, &err), errp);
    free(path);
    ctest_rmtree(dir);
}

/* ---- reading preallocated logs (wal.h rules a-d) ---- */

/* Lays records of the given sizes end to end into buf (zeroed to cap first); returns where the
 * data ends. */
static size_t lay_records(char *buf, size_t cap, const size_t *sizes, char **payloads, size_t n,
                          uint64_t *offsets)
{
    memset(buf, 0, cap);
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        offsets[i] = off;
        kw_encode_fixed32(buf + off, (uint32_t)sizes[i]);
        kw_encode_fixed32(buf + off + 4, kw_crc32c(payloads[i], sizes[i]));
        memcpy(buf + off + KW_WAL_HEADER_SIZE, payloads[i], sizes[i]);
        off += KW_WAL_HEADER_SIZE + sizes[i];
    }
    return off;
}

/* Reads buf as a preallocated log; returns the status, fills r and st. */
static kiwi_status read_pre(const char *buf, size_t size, kw_wal_recovery_mode mode, reader *r,
                            char **payloads, const size_t *sizes, size_t n, kw_wal_read_stats *st,
                            char **err)
{
    reader_init(r, (const char **)payloads, sizes, n);
    return kw_wal_read_buffer_preallocated("t.log", buf, size, mode, collect, r, st, err);
}

static void test_preallocated_rules(void)
{
    enum { N = 6, CAP = 32768 };
    size_t sizes[N] = {100, 200, 300, 9000, 150, 120};
    char *payloads[N];
    for (int i = 0; i < N; i++)
        payloads[i] = make_payload(i + 1, sizes[i]); /* no payload byte run is a zero block */
    uint64_t off[N];
    char *buf = malloc(CAP);
    reader r;
    kw_wal_read_stats st;
    char *err = NULL;
    /* a: records, then zeros: the end of the log, not a torn tail */
    size_t end = lay_records(buf, CAP, sizes, payloads, N, off);
    CHECK(read_pre(buf, CAP, KW_WAL_TOLERATE_TAIL, &r, payloads, sizes, N, &st, &err) == KIWI_OK);
    CHECK(r.n == N && !st.torn_tail && st.good_bytes == end && st.prealloc_bytes == CAP - end);
    /* b: a zero header with data after it: space never written; the log ends there */
    memset(buf + off[2], 0, KW_WAL_HEADER_SIZE);
    CHECK(read_pre(buf, CAP, KW_WAL_TOLERATE_TAIL, &r, payloads, sizes, N, &st, &err) == KIWI_OK);
    CHECK(r.n == 2 && st.torn_tail && st.good_bytes == off[2] && st.torn_bytes == CAP - off[2]);
    /* d: the last write cut short (a process killed while the kernel copied it) */
    lay_records(buf, CAP, sizes, payloads, N, off);
    memset(buf + off[5] + 50, 0, CAP - off[5] - 50);
    CHECK(read_pre(buf, CAP, KW_WAL_SKIP_CORRUPT, &r, payloads, sizes, N, &st, &err) == KIWI_OK);
    CHECK(r.n == 5 && st.torn_tail && st.good_bytes == off[5] && st.prealloc_bytes == 0);
    /* d: a block of record 3 never reached the disk, later records did (a machine crash) */
    lay_records(buf, CAP, sizes, payloads, N, off);
    size_t block = (off[3] / 4096 + 1) * 4096;
    CHECK(block + 4096 <= off[4]); /* record 3 covers a whole block */
    memset(buf + block, 0, 4096);
    CHECK(read_pre(buf, CAP, KW_WAL_TOLERATE_TAIL, &r, payloads, sizes, N, &st, &err) == KIWI_OK);
    CHECK(r.n == 3 && st.torn_tail && st.good_bytes == off[3]);
    /* the same damage without zeros is corruption: a flipped byte, a bad length */
    lay_records(buf, CAP, sizes, payloads, N, off);
    buf[block + 100] ^= 0x5a;
    CHECK(read_pre(buf, CAP, KW_WAL_TOLERATE_TAIL, &r, payloads, sizes, N, &st, &err) ==
          KIWI_CORRUPTION);
    CHECK(r.n == 3 && err != NULL && strstr(err, "t.log: record at offset") != NULL);
    CHECK(read_pre(buf, CAP, KW_WAL_SKIP_CORRUPT, &r, payloads, sizes, N, &st, &err) == KIWI_OK);
    CHECK(r.n == 5 && r.ids[3] == 4 && st.skipped_records == 1 && st.prealloc_bytes == CAP - end);
    lay_records(buf, CAP, sizes, payloads, N, off);
    kw_encode_fixed32(buf + off[1], 0xfffffff0u);
    CHECK(read_pre(buf, CAP, KW_WAL_TOLERATE_TAIL, &r, payloads, sizes, N, &st, &err) ==
          KIWI_CORRUPTION);
    CHECK(r.n == 1 && err != NULL && strstr(err, "exceeds the limit") != NULL);
    /* an empty buffer, and one of zeros only */
    CHECK(read_pre(buf, 0, KW_WAL_TOLERATE_TAIL, &r, payloads, sizes, N, &st, &err) == KIWI_OK);
    memset(buf, 0, CAP);
    CHECK(read_pre(buf, CAP, KW_WAL_TOLERATE_TAIL, &r, payloads, sizes, N, &st, &err) == KIWI_OK);
    CHECK(r.n == 0 && !st.torn_tail && st.prealloc_bytes == CAP);
    kiwi_free(err);
    free(buf);
    free_payloads(payloads, N);
}

/* Random logs in preallocated space, synced up to a random record, then a simulated crash:
 *  - process crash: the data is whole up to a random cut (the last write may be cut short);
 *  - machine crash: any block after the sync point may have reached the disk or not (zeros).
 * Reading must never fail and must deliver exactly a prefix that contains every synced record
 * (in SKIP_CORRUPT mode: original records only, in order, every synced one first). */
static void test_preallocated_crash_simulation(void)
{
    enum { MAXN = 40, CAP = 160 * 1024 };
    char *buf = malloc(CAP);
    unsigned seed = 12345;
    int failures = 0;
    for (int iter = 0; iter < 400 && failures < 5; iter++) {
        size_t n = 1 + rand_r(&seed) % MAXN, sizes[MAXN];
        char *payloads[MAXN];
        uint64_t off[MAXN];
        for (size_t i = 0; i < n; i++) {
            sizes[i] = 1 + (rand_r(&seed) % 4 == 0 ? rand_r(&seed) % 9000 : rand_r(&seed) % 300);
            payloads[i] = make_payload((int)(iter * 100 + i), sizes[i]);
        }
        size_t end = lay_records(buf, CAP, sizes, payloads, n, off);
        size_t synced = rand_r(&seed) % (n + 1); /* records 0 .. synced-1 are durable */
        size_t sync_end = synced < n ? off[synced] : end;
        bool machine = iter % 2;
        if (machine) {
            for (size_t b = sync_end / 4096 * 4096; b < end; b += 4096) {
                size_t from = b < sync_end ? sync_end : b;
                if (rand_r(&seed) % 3 == 0)
                    memset(buf + from, 0, b + 4096 - from);
            }
        } else {
            size_t cut = sync_end + rand_r(&seed) % (end - sync_end + 1);
            memset(buf + cut, 0, CAP - cut);
        }
        size_t size = end + rand_r(&seed) % (CAP - end + 1);
        for (int mode = 0; mode < 2; mode++) {
            reader r;
            kw_wal_read_stats st;
            char *err = NULL;
            kiwi_status s = read_pre(buf, size, (kw_wal_recovery_mode)mode, &r, payloads, sizes,
                                     n, &st, &err);
            bool ok = s == KIWI_OK && r.n >= synced && st.good_bytes <= size;
            for (size_t i = 0; ok && i < r.n; i++) /* ids: record i, or a twin of equal bytes */
                ok = r.ids[i] >= 0 && (mode == 1 || r.offsets[i] == off[i]) &&
                     (i == 0 || r.offsets[i] > r.offsets[i - 1]);
            for (size_t i = 0; ok && i < synced; i++)
                ok = r.offsets[i] == off[i];
            ok = ok && (st.torn_tail ? st.torn_bytes == size - st.good_bytes
                                     : st.good_bytes + st.prealloc_bytes == size);
            if (!ok && failures++ < 5)
                fprintf(stderr, "iter %d (%s crash, mode %d): status %d, %zu of %zu records, "
                        "%zu synced, err %s\n", iter, machine ? "machine" : "process", mode, (int)s,
                        r.n, n, synced, err ? err : "-");
            kiwi_free(err);
        }
        free_payloads(payloads, n);
    }
    CHECK(failures == 0);
    free(buf);
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
    RUN(test_reserve_preallocates_and_close_trims);
    RUN(test_reserve_without_fallocate);
    RUN(test_preallocated_rules);
    RUN(test_preallocated_crash_simulation);
    return ctest_summary();
}
