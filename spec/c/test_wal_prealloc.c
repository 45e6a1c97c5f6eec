/*
 * test_wal_prealloc.c: preallocated logs: reserve grows the file a step ahead of the records and
 * a clean close trims it; a file system without fallocate gets a log that grows record by
 * record; reading preallocated space (wal.h rules a-d: zeros end the log, a zero header or a
 * block of zeros inside a record is a torn tail, other damage is corruption), and randomized
 * simulated process and machine crashes that must always yield a prefix holding every synced
 * record. The shared payloads and reader callback are in wal_fixture.h.
 */
#include <errno.h>
#include <sys/stat.h>

#include "coding.h"
#include "crc32c.h"
#include "ctest.h"
#include "env.h"
#include "wal.h"
#include "wal_fixture.h"

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
    RUN(test_reserve_preallocates_and_close_trims);
    RUN(test_reserve_without_fallocate);
    RUN(test_preallocated_rules);
    RUN(test_preallocated_crash_simulation);
    return ctest_summary();
}
