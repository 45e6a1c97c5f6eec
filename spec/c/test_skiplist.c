/*
 * test_skiplist.c: the skip list (skiplist.c) and the memtable over it (memtable.c), single
 * thread: order both ways, seek semantics, appends mixed with inserts, versioned get,
 * tombstones, awkward keys, a 1 MiB value, counters, reference counting.
 * The concurrent tests are in test_skiplist_concurrent.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "ctest.h"
#include "dbformat.h"
#include "memtable.h"
#include "skiplist.h"
#include "skiplist_fixture.h"

/* ---- helpers ------------------------------------------------------------------------------ */

/* An internal key in a caller buffer (kw_buf). */
static kw_slice ikey(kw_buf *b, kw_slice ukey, uint64_t seq, kw_value_type t)
{
    kw_buf_clear(b);
    kw_ikey_append(b, ukey, seq, t);
    return kw_slice_make(b->data, b->len);
}

static kw_slice S(const char *s)
{
    return kw_slice_make(s, strlen(s));
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void test_raw_order_and_seek(void)
{
    kw_arena *a = kw_arena_create(0);
    kw_skiplist *sl = kw_skiplist_create(a, raw_key, kw_slice_compare);
    kw_skiplist_iter it;
    kw_skiplist_iter_init(&it, sl);
    kw_skiplist_iter_seek_to_first(&it);
    CHECK(!kw_skiplist_iter_valid(&it));
    kw_skiplist_iter_seek_to_last(&it);
    CHECK(!kw_skiplist_iter_valid(&it));
    CHECK_EQ_U64(kw_skiplist_height(sl), 1);

    enum { N = 3000 };
    uint64_t *keys = malloc(N * sizeof *keys);
    uint64_t s = 42;
    size_t n = 0;
    for (int i = 0; i < N; i++) {
        uint64_t k = (rng_next(&s) % 1000000) * 2 + 2; /* even, so odd values fall between */
        char kb[8];
        be64(kb, k);
        bool fresh = !kw_skiplist_contains(sl, kw_slice_make(kb, 8));
        CHECK(raw_insert(sl, kb, 8) == fresh); /* a duplicate is refused */
        if (fresh)
            keys[n++] = k;
    }
    qsort(keys, n, sizeof *keys, cmp_u64);
    CHECK(kw_skiplist_height(sl) > 1 && kw_skiplist_height(sl) <= KW_SKIPLIST_MAX_HEIGHT);

    size_t i = 0;
    for (kw_skiplist_iter_seek_to_first(&it); kw_skiplist_iter_valid(&it);
         kw_skiplist_iter_next(&it), i++) {
        char kb[8];
        be64(kb, keys[i]);
        CHECK(i < n && slice_eq(raw_key(kw_skiplist_iter_entry(&it)), kw_slice_make(kb, 8)));
    }
    CHECK_EQ_U64(i, n);
    for (kw_skiplist_iter_seek_to_last(&it); kw_skiplist_iter_valid(&it);
         kw_skiplist_iter_prev(&it)) {
        char kb[8];
        be64(kb, keys[--i]);
        CHECK(slice_eq(raw_key(kw_skiplist_iter_entry(&it)), kw_slice_make(kb, 8)));
    }
    CHECK_EQ_U64(i, 0);

    /* Seek: exact hit, a key between two entries, before the first, after the last. */
    for (size_t j = 0; j < n; j += 97) {
        char kb[8], want[8];
        be64(kb, keys[j]);
        kw_skiplist_iter_seek(&it, kw_slice_make(kb, 8));
        CHECK(kw_skiplist_iter_valid(&it) &&
              slice_eq(raw_key(kw_skiplist_iter_entry(&it)), kw_slice_make(kb, 8)));
        be64(kb, keys[j] - 1);
        kw_skiplist_iter_seek(&it, kw_slice_make(kb, 8));
        be64(want, keys[j]);
        CHECK(kw_skiplist_iter_valid(&it) &&
              slice_eq(raw_key(kw_skiplist_iter_entry(&it)), kw_slice_make(want, 8)));
    }
    char kb[8];
    be64(kb, 0);
    kw_skiplist_iter_seek(&it, kw_slice_make(kb, 8));
    be64(kb, keys[0]);
    CHECK(kw_skiplist_iter_valid(&it) &&
          slice_eq(raw_key(kw_skiplist_iter_entry(&it)), kw_slice_make(kb, 8)));
    be64(kb, keys[n - 1] + 1);
    kw_skiplist_iter_seek(&it, kw_slice_make(kb, 8));
    CHECK(!kw_skiplist_iter_valid(&it));
    be64(kb, keys[0]);
    kw_skiplist_iter_seek(&it, kw_slice_make(kb, 8));
    kw_skiplist_iter_prev(&it);
    CHECK(!kw_skiplist_iter_valid(&it)); /* prev of the first entry */
    free(keys);
    kw_arena_destroy(a);
}

/* ---- memtable, single thread -------------------------------------------------------------- */

/* Appends (keys above every key so far: the tail-hint path) mixed with inserts in the middle
 * and at the front: every key is found by a search (which uses every level), the order is
 * strict, equal keys are refused on both paths. */
static void test_appends_and_inserts(void)
{
    kw_arena *a = kw_arena_create(0);
    kw_skiplist *sl = kw_skiplist_create(a, raw_key, kw_slice_compare);
    enum { N = 20000 };
    uint64_t rng = 7;
    char k[8];
    size_t inserted = 0;
    for (uint64_t i = 0; i < N; i++) {
        be64(k, 1000000 + i * 4); /* ascending: appends */
        CHECK(raw_insert(sl, k, 8));
        inserted++;
        if (i % 7 == 3) { /* somewhere below the tail, never equal to an append */
            be64(k, 1000000 + (rng_next(&rng) % (i + 1)) * 4 + 1 + i % 3);
            if (!kw_skiplist_contains(sl, kw_slice_make(k, 8))) {
                CHECK(raw_insert(sl, k, 8));
                inserted++;
            }
        }
        if (i % 1000 == 0) { /* before every key */
            be64(k, i);
            CHECK(raw_insert(sl, k, 8));
            inserted++;
        }
    }
    be64(k, 1000000 + (N - 1) * 4); /* the tail again: refused on the append path */
    CHECK(!raw_insert(sl, k, 8));
    be64(k, 1000000);
    CHECK(!raw_insert(sl, k, 8));
    for (uint64_t i = 0; i < N; i++) {
        be64(k, 1000000 + i * 4);
        CHECK(kw_skiplist_contains(sl, kw_slice_make(k, 8)));
    }
    kw_skiplist_iter it;
    kw_skiplist_iter_init(&it, sl);
    size_t n = 0;
    kw_slice prev = {NULL, 0};
    for (kw_skiplist_iter_seek_to_first(&it); kw_skiplist_iter_valid(&it);
         kw_skiplist_iter_next(&it), n++) {
        kw_slice cur = raw_key(kw_skiplist_iter_entry(&it));
        CHECK(prev.data == NULL || kw_slice_compare(prev, cur) < 0);
        prev = cur;
    }
    CHECK_EQ_U64(n, inserted);
    kw_arena_destroy(a);
}

static void test_memtable_order(void)
{
    kw_memtable *m = kw_memtable_create(7);
    CHECK_EQ_U64(kw_memtable_id(m), 7);
    enum { N = 2000 };
    uint64_t s = 9;
    for (uint64_t seq = 1; seq <= N; seq++) {
        char k[16];
        int kn = snprintf(k, sizeof k, "k%03u", (unsigned)(rng_next(&s) % 500));
        kw_memtable_add(m, seq, seq % 5 ? KW_TYPE_VALUE : KW_TYPE_DELETE,
                        kw_slice_make(k, (size_t)kn), S("v"));
    }
    CHECK_EQ_U64(kw_memtable_entries(m), N);
    CHECK_EQ_U64(kw_memtable_tombstones(m), N / 5);

    kw_iter *it = kw_memtable_iter(m);
    CHECK(!kw_iter_valid(it));
    kw_buf prev;
    kw_buf_init(&prev);
    size_t count = 0;
    for (kw_iter_seek_to_first(it); kw_iter_valid(it); kw_iter_next(it), count++) {
        kw_slice k = kw_iter_key(it);
        CHECK(count == 0 || kw_ikey_compare(kw_slice_make(prev.data, prev.len), k) < 0);
        kw_buf_clear(&prev);
        kw_buf_append(&prev, k.data, k.size);
    }
    CHECK_EQ_U64(count, N);
    for (kw_iter_seek_to_last(it); kw_iter_valid(it); kw_iter_prev(it), count--) {
        kw_slice k = kw_iter_key(it);
        CHECK(count == N || kw_ikey_compare(k, kw_slice_make(prev.data, prev.len)) < 0);
        kw_buf_clear(&prev);
        kw_buf_append(&prev, k.data, k.size);
    }
    CHECK_EQ_U64(count, 0);
    CHECK(kw_iter_status(it, NULL) == KIWI_OK);
    kw_buf_free(&prev);
    kw_iter_destroy(it);
    kw_memtable_unref(m);
}

static void test_memtable_seek(void)
{
    kw_memtable *m = kw_memtable_create(1);
    kw_buf b;
    kw_buf_init(&b);
    kw_memtable_add(m, 5, KW_TYPE_VALUE, S("b"), S("b5"));
    kw_memtable_add(m, 9, KW_TYPE_VALUE, S("b"), S("b9"));
    kw_memtable_add(m, 3, KW_TYPE_VALUE, S("d"), S("d3"));
    kw_iter *it = kw_memtable_iter(m);

    kw_iter_seek(it, ikey(&b, S("b"), 9, KW_TYPE_VALUE)); /* exact */
    CHECK(kw_iter_valid(it) && slice_eq(kw_iter_value(it), S("b9")));
    kw_iter_seek(it, ikey(&b, S("b"), 7, KW_TYPE_FOR_SEEK)); /* between versions */
    CHECK(kw_iter_valid(it) && slice_eq(kw_iter_value(it), S("b5")));
    CHECK(kw_iter_valid(it) && kw_ikey_seq(kw_iter_key(it)) == 5);
    kw_iter_seek(it, ikey(&b, S("c"), KW_MAX_SEQ, KW_TYPE_FOR_SEEK)); /* between keys */
    CHECK(kw_iter_valid(it) && slice_eq(kw_ikey_user(kw_iter_key(it)), S("d")));
    kw_iter_seek(it, ikey(&b, S("a"), 1, KW_TYPE_FOR_SEEK)); /* before the first */
    CHECK(kw_iter_valid(it) && slice_eq(kw_iter_value(it), S("b9")));
    kw_iter_prev(it);
    CHECK(!kw_iter_valid(it));
    kw_iter_seek(it, ikey(&b, S("d"), 2, KW_TYPE_FOR_SEEK)); /* after the last */
    CHECK(!kw_iter_valid(it));
    kw_iter_seek_to_last(it);
    CHECK(kw_iter_valid(it) && slice_eq(kw_iter_value(it), S("d3")));
    kw_iter_prev(it);
    CHECK(kw_iter_valid(it) && slice_eq(kw_iter_value(it), S("b5")));

    /* The iterator's reference keeps the memtable alive after the creator lets go. */
    kw_memtable_unref(m);
    kw_iter_seek_to_first(it);
    CHECK(kw_iter_valid(it) && slice_eq(kw_iter_value(it), S("b9")));
    kw_iter_destroy(it);
    kw_buf_free(&b);
}

static void test_memtable_get_versions(void)
{
    kw_memtable *m = kw_memtable_create(2);
    kw_memtable_add(m, 10, KW_TYPE_VALUE, S("k"), S("v10"));
    kw_memtable_add(m, 20, KW_TYPE_DELETE, S("k"), S(""));
    kw_memtable_add(m, 30, KW_TYPE_VALUE, S("k"), S("v30"));
    kw_memtable_add(m, 15, KW_TYPE_VALUE, S("ka"), S("ka15"));
    kw_memtable_add(m, 25, KW_TYPE_VALUE, S("j"), S("j25"));

    kw_slice v = S("untouched");
    CHECK(kw_memtable_get(m, S("k"), 5, &v) == KW_LOOKUP_MISS); /* older than every version */
    CHECK(slice_eq(v, S("untouched")));
    for (uint64_t seq = 10; seq < 20; seq++)
        CHECK(kw_memtable_get(m, S("k"), seq, &v) == KW_LOOKUP_FOUND && slice_eq(v, S("v10")));
    for (uint64_t seq = 20; seq < 30; seq++)
        CHECK(kw_memtable_get(m, S("k"), seq, &v) == KW_LOOKUP_DELETED);
    CHECK(kw_memtable_get(m, S("k"), 30, &v) == KW_LOOKUP_FOUND && slice_eq(v, S("v30")));
    CHECK(kw_memtable_get(m, S("k"), KW_MAX_SEQ, &v) == KW_LOOKUP_FOUND && slice_eq(v, S("v30")));
    CHECK(kw_memtable_get(m, S("k"), KW_MAX_SEQ, NULL) == KW_LOOKUP_FOUND);
    /* Neighbours sharing a prefix never answer for each other. */
    CHECK(kw_memtable_get(m, S("ka"), 14, &v) == KW_LOOKUP_MISS);
    CHECK(kw_memtable_get(m, S("ka"), 15, &v) == KW_LOOKUP_FOUND && slice_eq(v, S("ka15")));
    CHECK(kw_memtable_get(m, S("kb"), KW_MAX_SEQ, &v) == KW_LOOKUP_MISS);
    CHECK(kw_memtable_get(m, S("i"), KW_MAX_SEQ, &v) == KW_LOOKUP_MISS);
    CHECK(kw_memtable_get(m, S("j"), 24, &v) == KW_LOOKUP_MISS);
    CHECK(kw_memtable_get(m, S("zzz"), KW_MAX_SEQ, &v) == KW_LOOKUP_MISS);

    CHECK_EQ_U64(kw_memtable_entries(m), 5);
    CHECK_EQ_U64(kw_memtable_tombstones(m), 1);
    CHECK_EQ_U64(kw_memtable_user_bytes(m), 1 + 3 + 1 + 0 + 1 + 3 + 2 + 4 + 1 + 3);
    kw_memtable_unref(m);
}

static void test_memtable_awkward_keys(void)
{
    kw_memtable *m = kw_memtable_create(3);
    kw_slice v;
    CHECK(kw_memtable_get(m, S(""), KW_MAX_SEQ, &v) == KW_LOOKUP_MISS); /* empty memtable */

    kw_memtable_add(m, 1, KW_TYPE_VALUE, S(""), S("empty"));
    kw_memtable_add(m, 2, KW_TYPE_VALUE, kw_slice_make("a\0b", 3), kw_slice_make("x\0y", 3));
    kw_memtable_add(m, 3, KW_TYPE_VALUE, kw_slice_make("a\0c", 3), S("ac"));
    kw_memtable_add(m, 4, KW_TYPE_VALUE, kw_slice_make("a", 1), S("a"));
    kw_memtable_add(m, 5, KW_TYPE_VALUE, kw_slice_make("\0", 1), S("nul"));

    CHECK(kw_memtable_get(m, S(""), KW_MAX_SEQ, &v) == KW_LOOKUP_FOUND && slice_eq(v, S("empty")));
    CHECK(kw_memtable_get(m, kw_slice_make("a\0b", 3), 9, &v) == KW_LOOKUP_FOUND &&
          slice_eq(v, kw_slice_make("x\0y", 3)));
    CHECK(kw_memtable_get(m, kw_slice_make("a\0c", 3), 9, &v) == KW_LOOKUP_FOUND &&
          slice_eq(v, S("ac")));
    CHECK(kw_memtable_get(m, kw_slice_make("a\0", 2), 9, &v) == KW_LOOKUP_MISS);
    CHECK(kw_memtable_get(m, kw_slice_make("\0", 1), 9, &v) == KW_LOOKUP_FOUND &&
          slice_eq(v, S("nul")));

    /* Order: "" < "\0" < "a" < "a\0b" < "a\0c". */
    const char *want[] = {"", "\0", "a", "a\0b", "a\0c"};
    size_t wlen[] = {0, 1, 1, 3, 3};
    kw_iter *it = kw_memtable_iter(m);
    size_t i = 0;
    for (kw_iter_seek_to_first(it); kw_iter_valid(it); kw_iter_next(it), i++)
        CHECK(i < 5 && slice_eq(kw_ikey_user(kw_iter_key(it)), kw_slice_make(want[i], wlen[i])));
    CHECK_EQ_U64(i, 5);
    kw_iter_destroy(it);

    /* A key longer than get's stack buffer, and a 1 MiB value. */
    size_t big = 1u << 20;
    char *kbuf = malloc(1000), *vbuf = malloc(big);
    memset(kbuf, 'K', 1000);
    for (size_t j = 0; j < big; j++)
        vbuf[j] = (char)(j * 7 + 3);
    size_t before = kw_memtable_approx_bytes(m);
    kw_memtable_add(m, 6, KW_TYPE_VALUE, kw_slice_make(kbuf, 1000), kw_slice_make(vbuf, big));
    CHECK(kw_memtable_approx_bytes(m) >= before + big);
    CHECK(kw_memtable_get(m, kw_slice_make(kbuf, 1000), 6, &v) == KW_LOOKUP_FOUND);
    CHECK(v.size == big && memcmp(v.data, vbuf, big) == 0);
    CHECK(kw_memtable_get(m, kw_slice_make(kbuf, 999), 6, &v) == KW_LOOKUP_MISS);
    CHECK_EQ_U64(kw_memtable_user_bytes(m), 5 + 6 + 5 + 2 + 4 + 1000 + big);
    free(kbuf);
    free(vbuf);
    kw_memtable_unref(m);
}

int main(void)
{
    RUN(test_raw_order_and_seek);
    RUN(test_appends_and_inserts);
    RUN(test_memtable_order);
    RUN(test_memtable_seek);
    RUN(test_memtable_get_versions);
    RUN(test_memtable_awkward_keys);
    return ctest_summary();
}
