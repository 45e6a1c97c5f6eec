/*
 * test_table.c: blocks and SSTables: build from sorted internal keys, reopen, compare every get,
 * seek and iteration with a sorted-array model; properties; bloom; corruption of data blocks,
 * index, properties, footer; truncated and empty files; builder errors; index keys stored
 * prefix-compressed (the reader's copy path, and no search in place). Reads through a block
 * cache are in test_table_cache.c (one thread) and test_cache.c (threads).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include "block.h"
#include "block_builder.h"
#include "coding.h"
#include "crc32c.h"
#include "ctest.h"
#include "dbformat.h"
#include "env.h"
#include "table.h"

/* ---- the model: a sorted array of (internal key, value) ---------------------------------- */

typedef struct {
    char *key; /* internal key */
    size_t klen;
    char *val;
    size_t vlen;
} entry;

typedef struct {
    entry *e;
    size_t n, cap;
} model;

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static kw_slice ek(const entry *e) { return kw_slice_make(e->key, e->klen); }

static void model_add(model *m, const char *uk, size_t uklen, uint64_t seq, kw_value_type type,
                      size_t vlen)
{
    if (m->n == m->cap) {
        m->cap = m->cap ? 2 * m->cap : 64;
        m->e = realloc(m->e, m->cap * sizeof *m->e);
    }
    entry *e = &m->e[m->n++];
    kw_buf b;
    kw_buf_init(&b);
    kw_ikey_append(&b, kw_slice_make(uk, uklen), seq, type);
    e->key = b.data;
    e->klen = b.len;
    e->vlen = type == KW_TYPE_VALUE ? vlen : 0;
    e->val = malloc(e->vlen + 1);
    for (size_t i = 0; i < e->vlen; i++)
        e->val[i] = (char)('a' + (seq + i) % 26);
}

static int cmp_entry(const void *a, const void *b)
{
    return kw_ikey_compare(ek(a), ek(b));
}

static void model_free(model *m)
{
    for (size_t i = 0; i < m->n; i++) {
        free(m->e[i].key);
        free(m->e[i].val);
    }
    free(m->e);
}

/* The first entry >= target, or m->n. */
static size_t model_lower_bound(const model *m, kw_slice target)
{
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (kw_ikey_compare(ek(&m->e[mid]), target) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static kw_lookup model_get(const model *m, kw_slice uk, uint64_t seq, const entry **found)
{
    kw_buf t;
    kw_buf_init(&t);
    kw_ikey_append(&t, uk, seq, KW_TYPE_FOR_SEEK);
    size_t i = model_lower_bound(m, kw_slice_make(t.data, t.len));
    kw_buf_free(&t);
    if (i == m->n || kw_slice_compare(kw_ikey_user(ek(&m->e[i])), uk) != 0)
        return KW_LOOKUP_MISS;
    *found = &m->e[i];
    return kw_ikey_type(ek(&m->e[i])) == KW_TYPE_VALUE ? KW_LOOKUP_FOUND : KW_LOOKUP_DELETED;
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

static kiwi_status build(const char *path, const model *m, const kw_table_options *o,
                         kw_table_props *props, char **err)
{
    kw_table_builder *b;
    kiwi_status st = kw_table_builder_create(path, o, &b, err);
    if (st != KIWI_OK)
        return st;
    for (size_t i = 0; i < m->n; i++)
        kw_table_builder_add(b, ek(&m->e[i]), kw_slice_make(m->e[i].val, m->e[i].vlen));
    return kw_table_builder_finish(b, props, err);
}

static bool same(kw_slice a, const char *p, size_t n)
{
    return a.size == n && (n == 0 || memcmp(a.data, p, n) == 0);
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

static void check_gets(kw_table *t, const model *m, const char *uk, size_t uklen, uint64_t seq)
{
    const entry *want = NULL;
    kw_lookup expect = model_get(m, kw_slice_make(uk, uklen), seq, &want);
    kw_lookup got;
    kw_slice v;
    char *err = NULL;
    kw_table_lookup_info info;
    kiwi_status st = kw_table_get(t, kw_slice_make(uk, uklen), seq, &got, &v, &info, &err);
    CHECK(st == KIWI_OK);
    CHECK(got == expect);
    if (got == KW_LOOKUP_FOUND && expect == KW_LOOKUP_FOUND)
        CHECK(same(v, want->val, want->vlen));
    if (expect != KW_LOOKUP_MISS)
        CHECK(info.bloom_may_contain && info.block_read);
    free(err);
}

static void check_iteration(kw_table *t, const model *m, size_t seek_stride)
{
    kw_iter *it = kw_table_iter(t);
    size_t i = 0;
    for (kw_iter_seek_to_first(it); kw_iter_valid(it); kw_iter_next(it), i++)
        if (i < m->n && !(same(kw_iter_key(it), m->e[i].key, m->e[i].klen) &&
                          same(kw_iter_value(it), m->e[i].val, m->e[i].vlen)))
            break;
    CHECK_EQ_U64(i, m->n);
    for (kw_iter_seek_to_last(it); kw_iter_valid(it); kw_iter_prev(it)) {
        i--;
        if (!same(kw_iter_key(it), m->e[i].key, m->e[i].klen))
            break;
    }
    CHECK_EQ_U64(i, 0);
    for (size_t j = 0; j < m->n; j += seek_stride) {
        kw_iter_seek(it, ek(&m->e[j])); /* exact */
        CHECK(kw_iter_valid(it) && same(kw_iter_key(it), m->e[j].key, m->e[j].klen));
        /* between: user key + "\0" sorts after every version of the key, before the next */
        kw_buf k;
        kw_buf_init(&k);
        kw_buf_append(&k, m->e[j].key, m->e[j].klen - KW_TRAILER_SIZE);
        kw_buf_push(&k, '\0');
        kw_ikey_append(&k, kw_slice_make(NULL, 0), KW_MAX_SEQ, KW_TYPE_VALUE);
        size_t want = model_lower_bound(m, kw_slice_make(k.data, k.len));
        kw_iter_seek(it, kw_slice_make(k.data, k.len));
        if (want == m->n)
            CHECK(!kw_iter_valid(it));
        else
            CHECK(kw_iter_valid(it) && same(kw_iter_key(it), m->e[want].key, m->e[want].klen));
        if (want < m->n && want > 0 && kw_iter_valid(it)) { /* prev crosses back */
            kw_iter_prev(it);
            CHECK(kw_iter_valid(it) &&
                  same(kw_iter_key(it), m->e[want - 1].key, m->e[want - 1].klen));
        }
        kw_buf_free(&k);
    }
    CHECK(kw_iter_status(it, NULL) == KIWI_OK);
    kw_iter_destroy(it);
}

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

static void many_model(model *m, int n)
{
    for (int i = 0; i < n; i++) {
        char k[16];
        int len = snprintf(k, sizeof k, "k%08d", i * 2);
        model_add(m, k, (size_t)len, (uint64_t)i + 1, i % 10 == 0 ? KW_TYPE_DELETE : KW_TYPE_VALUE,
                  8);
    }
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
    RUN(test_block_roundtrip);
    RUN(test_block_corrupt);
    RUN(test_table_mixed);
    RUN(test_table_many);
    RUN(test_corrupt_data_block);
    RUN(test_corrupt_meta);
    RUN(test_compressed_index);
    RUN(test_builder_errors);
    RUN(test_io_faults);
    return ctest_summary();
}
