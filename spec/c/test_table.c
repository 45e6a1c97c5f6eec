/*
 * test_table.c: blocks and SSTables: build from sorted internal keys, reopen, compare every get,
 * seek and iteration with a sorted-array model (table_model_fixture.h); properties; bloom;
 * truncated and damaged blocks; index keys stored prefix-compressed (the reader's copy path, and
 * no search in place); the index's key-prefix search against a scan. Corrupt tables, builder
 * errors and injected I/O faults are in test_table_faults.c; reads through a block cache are in
 * test_table_cache.c (one thread) and test_cache.c (threads).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block.h"
#include "block_builder.h"
#include "coding.h"
#include "crc32c.h"
#include "ctest.h"
#include "dbformat.h"
#include "env.h"
#include "table.h"
#include "table_model_fixture.h"

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Mixed data: empty key, NUL bytes, several versions with tombstones, one 1 MiB value. */
static void model_mixed(model *m)
{
    static const struct { const char *k; size_t n; } special[] = {
        {"", 0}, {"\0", 1}, {"\0\0", 2}, {"a", 1}, {"a\0b", 3}, {"a\0c", 3}, {"apple", 5}};
    uint64_t seq = 1;
    for (size_t i = 0; i < sizeof special / sizeof special[0]; i++)
        for (int v = 0; v < 3; v++)
            model_add(m, special[i].k, special[i].n, seq++, v == 1 ? KW_TYPE_DELETE : KW_TYPE_VALUE,
                      10 + i);
    model_add(m, "big", 3, seq++, KW_TYPE_VALUE, 1u << 20);
    for (int i = 0; i < 600; i++) {
        char k[32];
        int n = snprintf(k, sizeof k, "key%05d", i * 2); /* odd numbers stay absent */
        int versions = 1 + (int)(rnd() % 4);
        for (int v = 0; v < versions; v++)
            model_add(m, k, (size_t)n, seq++, rnd() % 3 == 0 ? KW_TYPE_DELETE : KW_TYPE_VALUE,
                      rnd() % 40);
    }
    qsort(m->e, m->n, sizeof *m->e, cmp_entry);
}

/* ---- blocks -------------------------------------------------------------------------------- */

static void test_block_roundtrip(void)
{
    model m = {0};
    for (int i = 0; i < 200; i++) {
        char k[16];
        int n = snprintf(k, sizeof k, "b%04d", i);
        model_add(&m, k, (size_t)n, 5, KW_TYPE_VALUE, (size_t)i % 7);
    }
    int intervals[] = {1, 2, 16, 1000};
    for (int r = 0; r < 4; r++) {
        kw_block_builder bb;
        kw_block_builder_init(&bb, intervals[r]);
        for (size_t i = 0; i < m.n; i++)
            kw_block_builder_add(&bb, ek(&m.e[i]), kw_slice_make(m.e[i].val, m.e[i].vlen));
        size_t estimate = kw_block_builder_size_estimate(&bb);
        kw_slice c = kw_block_builder_finish(&bb);
        CHECK_EQ_U64(c.size, estimate);
        CHECK_EQ_U64(c.size, kw_block_builder_size_estimate(&bb));
        kw_block blk;
        CHECK(kw_block_parse(&blk, c, "mem", 0, "block", NULL) == KIWI_OK);
        kw_iter *it = kw_block_iter_new(&blk);
        size_t i = 0;
        for (kw_iter_seek_to_first(it); kw_iter_valid(it); kw_iter_next(it), i++)
            CHECK(same(kw_iter_key(it), m.e[i].key, m.e[i].klen) &&
                  same(kw_iter_value(it), m.e[i].val, m.e[i].vlen));
        CHECK_EQ_U64(i, m.n);
        for (kw_iter_seek_to_last(it); kw_iter_valid(it); kw_iter_prev(it)) {
            i--;
            CHECK(same(kw_iter_key(it), m.e[i].key, m.e[i].klen));
        }
        CHECK_EQ_U64(i, 0);
        for (size_t j = 0; j < m.n; j++) {
            kw_iter_seek(it, ek(&m.e[j]));
            CHECK(kw_iter_valid(it) && same(kw_iter_key(it), m.e[j].key, m.e[j].klen));
        }
        CHECK(kw_iter_status(it, NULL) == KIWI_OK);
        kw_iter_destroy(it);
        kw_block_builder_free(&bb);
    }
    /* an empty block: [u32 0] */
    kw_block_builder bb;
    kw_block_builder_init(&bb, 16);
    kw_slice c = kw_block_builder_finish(&bb);
    CHECK_EQ_U64(c.size, 4);
    kw_block blk;
    CHECK(kw_block_parse(&blk, c, "mem", 0, "block", NULL) == KIWI_OK);
    kw_iter *it = kw_block_iter_new(&blk);
    kw_iter_seek_to_first(it);
    CHECK(!kw_iter_valid(it));
    kw_iter_seek(it, ek(&m.e[0]));
    CHECK(!kw_iter_valid(it) && kw_iter_status(it, NULL) == KIWI_OK);
    kw_iter_destroy(it);
    kw_block_builder_free(&bb);
    model_free(&m);
}

/* Runs every operation over a (possibly corrupt) block: must never read out of bounds. */
static int exercise_block(const char *data, size_t size, kw_slice probe)
{
    kw_block blk;
    if (kw_block_parse(&blk, kw_slice_make(data, size), "mem", 0, "block", NULL) != KIWI_OK)
        return 1;
    kw_iter *it = kw_block_iter_new(&blk);
    int steps = 0;
    for (kw_iter_seek_to_first(it); kw_iter_valid(it) && steps < 10000; kw_iter_next(it))
        steps++;
    for (kw_iter_seek_to_last(it); kw_iter_valid(it) && steps < 20000; kw_iter_prev(it))
        steps++;
    kw_iter_seek(it, probe);
    if (kw_iter_valid(it))
        kw_iter_prev(it);
    char *msg = NULL;
    int bad = kw_iter_status(it, &msg) == KIWI_CORRUPTION;
    if (bad && (msg == NULL || strstr(msg, "corruption: mem: block at offset 0") != msg))
        bad = 100;
    free(msg);
    kw_iter_destroy(it);
    return bad;
}

static void test_block_corrupt(void)
{
    model m = {0};
    for (int i = 0; i < 60; i++) {
        char k[16];
        int n = snprintf(k, sizeof k, "c%03d", i);
        model_add(&m, k, (size_t)n, 9, KW_TYPE_VALUE, (size_t)i % 5);
    }
    kw_block_builder bb;
    kw_block_builder_init(&bb, 4);
    for (size_t i = 0; i < m.n; i++)
        kw_block_builder_add(&bb, ek(&m.e[i]), kw_slice_make(m.e[i].val, m.e[i].vlen));
    kw_slice c = kw_block_builder_finish(&bb);
    int detected = 0, malformed_msgs = 0;
    for (size_t cut = 0; cut < c.size; cut++) { /* every truncation, in an exact-size buffer */
        char *p = kw_memdup(c.data, cut);
        int r = exercise_block(p, cut, ek(&m.e[30]));
        malformed_msgs += r == 100;
        free(p);
    }
    for (int round = 0; round < 3000; round++) { /* random byte damage */
        char *p = kw_memdup(c.data, c.size);
        int flips = 1 + (int)(rnd() % 3);
        for (int f = 0; f < flips; f++)
            p[rnd() % c.size] = (char)rnd();
        int r = exercise_block(p, c.size, ek(&m.e[rnd() % m.n]));
        detected += r != 0;
        malformed_msgs += r == 100;
        free(p);
    }
    CHECK(detected > 100); /* most damage is seen as corruption; none may crash (ASan) */
    CHECK_EQ_U64(malformed_msgs, 0);
    kw_block_builder_free(&bb);
    model_free(&m);
}

/* ---- tables: contents ------------------------------------------------------------------------ */

static void test_table_mixed(void)
{
    char *dir = ctest_tmpdir("table");
    char *path = kw_join_path(dir, "000001.sst");
    model m = {0};
    model_mixed(&m);
    kw_table_options o;
    kw_table_options_default(&o);
    o.block_size = 256; /* many blocks, versions of one key split across them */
    kw_table_props bp;
    char *err = NULL;
    char **errp = &err; /* CHECK_OK(x, &err) trips -Werror=address */
    CHECK_OK(build(path, &m, &o, &bp, &err), errp);
    kw_table *t;
    CHECK_OK(kw_table_open(path, 1, &t, &err), errp);
    const kw_table_props *p = kw_table_properties(t);
    uint64_t tomb = 0, kb = 0, vb = 0;
    for (size_t i = 0; i < m.n; i++) {
        tomb += kw_ikey_type(ek(&m.e[i])) == KW_TYPE_DELETE;
        kb += m.e[i].klen;
        vb += m.e[i].vlen;
    }
    CHECK_EQ_U64(p->entries, m.n);
    CHECK_EQ_U64(p->tombstones, tomb);
    CHECK_EQ_U64(p->raw_key_bytes, kb);
    CHECK_EQ_U64(p->raw_value_bytes, vb);
    CHECK_EQ_U64(p->min_seq, 1);
    CHECK_EQ_U64(p->max_seq, m.n);
    CHECK(p->data_blocks > 20 && p->data_blocks == bp.data_blocks);
    CHECK(same(kw_slice_make(p->smallest, p->smallest_len), m.e[0].key, m.e[0].klen));
    CHECK(same(kw_slice_make(p->largest, p->largest_len), m.e[m.n - 1].key, m.e[m.n - 1].klen));
    CHECK_EQ_U64(p->file_size, bp.file_size);
    uint64_t fsize = 0;
    CHECK(kw_file_size_of(path, &fsize, NULL) == KIWI_OK && fsize == p->file_size);
    CHECK(p->index_size == bp.index_size && p->filter_size == bp.filter_size);
    CHECK(kw_table_number(t) == 1 && strcmp(kw_table_path(t), path) == 0);

    for (size_t i = 0; i < m.n; i++) {
        kw_slice uk = kw_ikey_user(ek(&m.e[i]));
        uint64_t s = kw_ikey_seq(ek(&m.e[i]));
        uint64_t seqs[] = {s, s - 1, s + 1, 0, KW_MAX_SEQ, UINT64_MAX};
        for (int j = 0; j < 6; j++)
            check_gets(t, &m, uk.data, uk.size, seqs[j]);
    }
    for (int i = 0; i < 600; i++) { /* absent keys: between, before, after */
        char k[32];
        int n = snprintf(k, sizeof k, "key%05d", i * 2 + 1);
        check_gets(t, &m, k, (size_t)n, KW_MAX_SEQ);
    }
    check_gets(t, &m, "zzzz", 4, KW_MAX_SEQ);
    check_gets(t, &m, "\0\0\0", 3, KW_MAX_SEQ);
    check_iteration(t, &m, 1);
    CHECK(kw_table_verify(t, &err) == KIWI_OK);

    kw_iter *it = kw_table_iter(t); /* the iterator keeps the table alive */
    kw_table_unref(t);
    kw_iter_seek_to_first(it);
    CHECK(kw_iter_valid(it) && same(kw_iter_key(it), m.e[0].key, m.e[0].klen));
    kw_iter_destroy(it);
    kw_table_props_free(&bp);
    free(err);
    free(path);
    model_free(&m);
    ctest_rmtree(dir);
}

static void test_table_many(void)
{
    char *dir = ctest_tmpdir("table");
    char *path = kw_join_path(dir, "000002.sst");
    model m = {0};
    many_model(&m, 100000);
    char *err = NULL;
    char **errp = &err; /* CHECK_OK(x, &err) trips -Werror=address */
    kw_table_props bp;
    CHECK_OK(build(path, &m, NULL, &bp, &err), errp);
    CHECK(bp.data_blocks > 200);
    CHECK_EQ_U64(bp.tombstones, 10000);
    kw_table *t;
    CHECK_OK(kw_table_open(path, 2, &t, &err), errp);
    for (size_t i = 0; i < m.n; i++) {
        kw_slice uk = kw_ikey_user(ek(&m.e[i]));
        uint64_t s = kw_ikey_seq(ek(&m.e[i]));
        check_gets(t, &m, uk.data, uk.size, KW_MAX_SEQ);
        if (i % 97 == 0)
            check_gets(t, &m, uk.data, uk.size, s - 1);
    }
    int ruled_out = 0, absent = 20000;
    for (int i = 0; i < absent; i++) {
        char k[16];
        int len = snprintf(k, sizeof k, "k%08d", i * 10 + 1);
        kw_lookup r;
        kw_slice v;
        kw_table_lookup_info info;
        CHECK(kw_table_get(t, kw_slice_make(k, (size_t)len), KW_MAX_SEQ, &r, &v, &info, NULL) ==
              KIWI_OK);
        CHECK(r == KW_LOOKUP_MISS);
        ruled_out += !info.bloom_may_contain;
        CHECK(info.bloom_may_contain == info.block_read);
    }
    printf("bloom ruled out %d of %d absent keys (fpr %.4f)\n", ruled_out, absent,
           1.0 - (double)ruled_out / absent);
    CHECK(ruled_out > absent * 95 / 100);
    check_iteration(t, &m, 13);
    CHECK(kw_table_verify(t, &err) == KIWI_OK);
    kw_table_unref(t);
    kw_table_props_free(&bp);
    free(err);
    free(path);
    model_free(&m);
    ctest_rmtree(dir);
}

/* Rewrites the index block with prefix-compressed keys (restart interval 16) and a fresh
 * footer: still a valid table; the reader must reassemble the keys. */
static void test_compressed_index(void)
{
    char *dir = ctest_tmpdir("table");
    char *path = kw_join_path(dir, "000005.sst");
    model m = {0};
    many_model(&m, 20000);
    char *err = NULL;
    char **errp = &err; /* CHECK_OK(x, &err) trips -Werror=address */
    CHECK_OK(build(path, &m, NULL, NULL, &err), errp);
    char *data;
    size_t len;
    CHECK_OK(kw_read_file(path, &data, &len, &err), errp);
    uint64_t ioff = kw_decode_fixed64(data + len - 64 + 32);
    uint64_t isize = kw_decode_fixed64(data + len - 64 + 40);
    kw_block blk;
    CHECK_OK(kw_block_parse(&blk, kw_slice_make(data + ioff, isize), path, ioff, "index", &err),
             errp);
    kw_block_builder bb;
    kw_block_builder_init(&bb, 16);
    kw_iter *it = kw_block_iter_new(&blk);
    for (kw_iter_seek_to_first(it); kw_iter_valid(it); kw_iter_next(it))
        kw_block_builder_add(&bb, kw_iter_key(it), kw_iter_value(it));
    kw_iter_destroy(it);
    kw_slice c = kw_block_builder_finish(&bb);
    CHECK(c.size < isize);
    kw_buf out;
    kw_buf_init(&out);
    kw_buf_append(&out, data, ioff);
    kw_buf_append(&out, c.data, c.size);
    char tr[5] = {0};
    kw_encode_fixed32(tr + 1, kw_crc32c_extend(kw_crc32c(c.data, c.size), tr, 1));
    kw_buf_append(&out, tr, 5);
    char footer[64];
    memcpy(footer, data + len - 64, 64);
    kw_encode_fixed64(footer + 40, c.size);
    kw_encode_fixed32(footer + 52, kw_crc32c(footer, 52));
    kw_buf_append(&out, footer, 64);
    FILE *f = fopen(path, "wb");
    fwrite(out.data, 1, out.len, f);
    fclose(f);
    kw_table *t;
    CHECK_OK(kw_table_open(path, 5, &t, &err), errp);
    for (size_t i = 0; i < m.n; i += 7) {
        kw_slice uk = kw_ikey_user(ek(&m.e[i]));
        check_gets(t, &m, uk.data, uk.size, KW_MAX_SEQ);
    }
    check_iteration(t, &m, 11);
    CHECK(kw_table_verify(t, &err) == KIWI_OK);
    kw_table_unref(t);
    kw_block_builder_free(&bb);
    kw_buf_free(&out);
    free(data);
    free(err);
    free(path);
    model_free(&m);
    ctest_rmtree(dir);
}

/* ---- the index's prefix search ------------------------------------------------------------- */

/* The first index entry >= target, by a plain scan. */
static uint32_t scan_lower_bound(const kw_table_index *ix, kw_slice target)
{
    uint32_t i = 0;
    while (i < ix->nblocks &&
           kw_ikey_compare(kw_slice_make(ix->entries[i].key, ix->entries[i].key_len), target) < 0)
        i++;
    return i;
}

static void check_bound(const kw_table_index *ix, const char *uk, size_t n, uint64_t seq,
                        int *bad)
{
    kw_buf t;
    kw_buf_init(&t);
    kw_ikey_append(&t, kw_slice_make(uk, n), seq, KW_TYPE_VALUE);
    kw_slice target = kw_slice_make(t.data, t.len);
    uint32_t got = kw_table_index_lower_bound(ix, target), want = scan_lower_bound(ix, target);
    if (got != want && (*bad)++ < 5)
        printf("lower bound of a %zu-byte key (seq %llu): %u, want %u\n", n,
               (unsigned long long)seq, got, want);
    kw_buf_free(&t);
}

/* Every model key exactly, its neighbours (seq +-1, + "\0", one byte shorter, last byte + 1)
 * and random binary keys: the prefix search agrees with a scan of the entries. */
static void check_index_search(const model *m, const kw_table_index *ix)
{
    int bad = 0;
    char k[64];
    for (size_t i = 0; i < m->n; i++) {
        kw_slice uk = kw_ikey_user(ek(&m->e[i]));
        uint64_t seq = kw_ikey_seq(ek(&m->e[i]));
        memcpy(k, uk.data, uk.size);
        check_bound(ix, k, uk.size, seq, &bad);
        check_bound(ix, k, uk.size, seq + 1, &bad);
        check_bound(ix, k, uk.size, seq - 1, &bad);
        check_bound(ix, k, uk.size, KW_MAX_SEQ, &bad);
        k[uk.size] = '\0';
        check_bound(ix, k, uk.size + 1, KW_MAX_SEQ, &bad);
        if (uk.size > 0) {
            check_bound(ix, k, uk.size - 1, 0, &bad);
            k[uk.size - 1] = (char)((unsigned char)k[uk.size - 1] + 1);
            check_bound(ix, k, uk.size, KW_MAX_SEQ, &bad);
        }
    }
    for (int i = 0; i < 20000; i++) {
        size_t n = rnd() % 24;
        for (size_t j = 0; j < n; j++)
            k[j] = (char)(rnd() % 4 == 0 ? 0xFF : rnd() % 3 == 0 ? 0 : 'a' + rnd() % 3);
        check_bound(ix, k, n, rnd() % 100, &bad);
    }
    memset(k, 0xFF, 40);
    check_bound(ix, k, 40, 0, &bad);
    check_bound(ix, k, 0, KW_MAX_SEQ, &bad);
    CHECK(bad == 0);
}

static void add_versions(model *m, const char *uk, size_t n, uint64_t *seq, int versions)
{
    for (int v = 0; v < versions; v++)
        model_add(m, uk, n, (*seq)++, KW_TYPE_VALUE, 300);
}

/* The key sets: 0 = binary keys of 0..12 bytes (NULs, 0xFF, the empty key, one key in many
 * versions); 1 = keys sharing 14 bytes; 2 = keys that differ only after 9 bytes equal between
 * "A" and "B" (equal prefixes); 3 = 3-byte keys after a 20-byte shared part. */
static void index_model(model *m, int set)
{
    uint64_t seq = 1;
    char k[64];
    for (int i = 0; i < 3000; i++) {
        int n = 0;
        if (set == 0) {
            n = (int)(rnd() % 13);
            for (int j = 0; j < n; j++)
                k[j] = (char)(rnd() % 5 == 0 ? 0 : rnd() % 5 == 0 ? 0xFF : rnd());
        } else if (set == 1) {
            n = snprintf(k, sizeof k, "tenant-000042/%06d", (int)(rnd() % 1000000));
        } else if (set == 2) {
            n = snprintf(k, sizeof k, "Axxxxxxxx%05d", i);
        } else {
            n = snprintf(k, sizeof k, "%s%03d", "shared-part-20-bytes", i % 1000);
        }
        add_versions(m, k, (size_t)n, &seq, 1);
    }
    if (set == 0) {
        add_versions(m, "", 0, &seq, 3);
        add_versions(m, "\x80\0\0", 3, &seq, 60); /* one user key across several blocks */
    }
    if (set == 2) {
        add_versions(m, "A", 1, &seq, 1);
        add_versions(m, "B", 1, &seq, 1);
    }
    qsort(m->e, m->n, sizeof *m->e, cmp_entry);
    size_t w = 0; /* drop repeated internal keys (random user keys can repeat) */
    for (size_t i = 0; i < m->n; i++) {
        if (w > 0 && kw_ikey_compare(ek(&m->e[w - 1]), ek(&m->e[i])) == 0) {
            free(m->e[i].key);
            free(m->e[i].val);
            continue;
        }
        m->e[w++] = m->e[i];
    }
    m->n = w;
}

static bool has_equal_prefixes(const kw_table_index *ix)
{
    for (uint32_t i = 1; i < ix->nblocks; i++)
        if (kw_table_index_prefixes(ix)[i] == kw_table_index_prefixes(ix)[i - 1])
            return true;
    return false;
}

static void test_index_prefix_search(void)
{
    static const uint32_t want_shared[] = {0, 14, 0, 20};
    char *dir = ctest_tmpdir("table");
    for (int set = 0; set < 4; set++) {
        char name[32];
        snprintf(name, sizeof name, "%06d.sst", 10 + set);
        char *path = kw_join_path(dir, name), *err = NULL;
        char **errp = &err;
        model m = {0};
        index_model(&m, set);
        CHECK_OK(build(path, &m, NULL, NULL, &err), errp);
        kw_table *t;
        CHECK_OK(kw_table_open(path, (uint64_t)(10 + set), &t, &err), errp);
        kw_index_ref r;
        kw_cache_result res;
        CHECK_OK(kw_table_index_acquire(t, &r, &res, &err), errp);
        const kw_table_index *ix = r.array;
        CHECK(ix != NULL && ix->nblocks > 50);
        CHECK_EQ_U64(ix->shared_len, want_shared[set]);
        if (set == 0 || set == 2)
            CHECK(has_equal_prefixes(ix)); /* the whole-key tie-break runs */
        check_index_search(&m, ix);
        check_iteration(t, &m, 5);
        kw_table_index_release(t, &r);
        kw_table_unref(t);
        model_free(&m);
        free(path);
        free(err);
    }
    ctest_rmtree(dir);
}

int main(void)
{
    RUN(test_block_roundtrip);
    RUN(test_block_corrupt);
    RUN(test_table_mixed);
    RUN(test_table_many);
    RUN(test_compressed_index);
    RUN(test_index_prefix_search);
    return ctest_summary();
}
