/*
 * test_skiplist_concurrent.c: the concurrent skip list (skiplist.c) and memtable (memtable.c)
 * under threads, run plain, under ASan+UBSan and under ThreadSanitizer: writers inserting
 * disjoint keys while readers iterate and get, checking order and that every visible entry is
 * complete; and writers racing on the same keys, checking each key is inserted exactly once.
 * The single-thread tests are in test_skiplist.c.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "ctest.h"
#include "dbformat.h"
#include "memtable.h"
#include "skiplist.h"
#include "skiplist_fixture.h"

/* ThreadSanitizer slows this test ~10x: fewer keys there keep it under a second. */
#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif

#ifdef UNDER_TSAN
#define PER_WRITER 10000
#else
#define PER_WRITER 50000
#endif
#define WRITERS 4
#define READERS 2

/* ---- concurrent: disjoint writers, checking readers --------------------------------------- */

/* Key k is "key%08u", written at seq k + 1 with a value derived from k alone. */
static size_t make_key(char *out, uint32_t k)
{
    return (size_t)snprintf(out, 16, "key%08u", (unsigned)k);
}

static size_t make_value(char *out, uint32_t k)
{
    size_t n = 8 + k % 57;
    for (size_t i = 0; i < n; i++)
        out[i] = (char)(k * 31 + i * 7);
    return n;
}

static bool value_ok(kw_slice v, uint32_t k)
{
    char want[64];
    size_t n = make_value(want, k);
    return v.size == n && memcmp(v.data, want, n) == 0;
}

typedef struct {
    kw_memtable *m;
    int id;                     /* writer id: writes keys k with k % WRITERS == id */
    _Atomic uint32_t done;      /* keys written so far, in increasing k (release) */
    _Atomic int *writers_left;  /* readers stop when it hits 0 */
    struct conc_state *state;
    int failures;               /* checks failed in this thread */
} conc_arg;

typedef struct conc_state {
    conc_arg writers[WRITERS];
} conc_state;

static void *writer_main(void *p)
{
    conc_arg *w = p;
    char k[16], v[64];
    for (uint32_t j = 0; j < PER_WRITER; j++) {
        uint32_t key = j * WRITERS + (uint32_t)w->id;
        size_t kn = make_key(k, key), vn = make_value(v, key);
        kw_memtable_add(w->m, key + 1, KW_TYPE_VALUE, kw_slice_make(k, kn), kw_slice_make(v, vn));
        atomic_store_explicit(&w->done, j + 1, memory_order_release);
    }
    atomic_fetch_sub(w->writers_left, 1);
    return NULL;
}

/* One forward pass: strictly ordered, every entry complete. Returns entries seen. */
static size_t reader_scan(kw_iter *it, int *failures)
{
    kw_buf prev;
    kw_buf_init(&prev);
    size_t seen = 0;
    for (kw_iter_seek_to_first(it); kw_iter_valid(it); kw_iter_next(it), seen++) {
        kw_slice ik = kw_iter_key(it);
        if (seen && kw_ikey_compare(kw_slice_make(prev.data, prev.len), ik) >= 0)
            (*failures)++;
        kw_slice u = kw_ikey_user(ik);
        uint32_t k = 0;
        bool digits = u.size == 11 && memcmp(u.data, "key", 3) == 0;
        for (size_t i = 3; digits && i < 11; i++) {
            digits = u.data[i] >= '0' && u.data[i] <= '9';
            k = k * 10 + (uint32_t)(u.data[i] - '0');
        }
        if (!digits || kw_ikey_seq(ik) != (uint64_t)k + 1 ||
            kw_ikey_type(ik) != KW_TYPE_VALUE || !value_ok(kw_iter_value(it), k))
            (*failures)++;
        kw_buf_clear(&prev);
        kw_buf_append(&prev, ik.data, ik.size);
    }
    kw_buf_free(&prev);
    return seen;
}

/* Point gets: every key a writer has reported done must be found, with its value. */
static void reader_gets(conc_arg *r, uint64_t *rng)
{
    for (int i = 0; i < 200; i++) {
        int w = (int)(rng_next(rng) % WRITERS);
        uint32_t done = atomic_load_explicit(&r->state->writers[w].done, memory_order_acquire);
        uint32_t j = (uint32_t)(rng_next(rng) % PER_WRITER);
        uint32_t key = j * WRITERS + (uint32_t)w;
        char k[16];
        size_t kn = make_key(k, key);
        kw_slice v;
        kw_lookup res = kw_memtable_get(r->m, kw_slice_make(k, kn), KW_MAX_SEQ, &v);
        if (j < done && (res != KW_LOOKUP_FOUND || !value_ok(v, key)))
            r->failures++;
        if (res == KW_LOOKUP_FOUND && !value_ok(v, key))
            r->failures++;
        if (res == KW_LOOKUP_DELETED)
            r->failures++;
    }
}

static void *reader_main(void *p)
{
    conc_arg *r = p;
    uint64_t rng = 0x1234567ull + (uint64_t)r->id;
    kw_iter *it = kw_memtable_iter(r->m);
    while (atomic_load(r->writers_left) > 0) {
        reader_scan(it, &r->failures);
        reader_gets(r, &rng);
        /* A short backward walk from the end: strictly descending. */
        kw_buf prev;
        kw_buf_init(&prev);
        int steps = 0;
        for (kw_iter_seek_to_last(it); kw_iter_valid(it) && steps < 200; kw_iter_prev(it)) {
            kw_slice ik = kw_iter_key(it);
            if (steps++ && kw_ikey_compare(ik, kw_slice_make(prev.data, prev.len)) >= 0)
                r->failures++;
            kw_buf_clear(&prev);
            kw_buf_append(&prev, ik.data, ik.size);
        }
        kw_buf_free(&prev);
    }
    kw_iter_destroy(it);
    return NULL;
}

static void test_concurrent_writers_and_readers(void)
{
    kw_memtable *m = kw_memtable_create(4);
    _Atomic int writers_left = WRITERS;
    conc_state st;
    conc_arg readers[READERS];
    pthread_t wt[WRITERS], rt[READERS];
    for (int i = 0; i < WRITERS; i++) {
        st.writers[i] = (conc_arg){.m = m, .id = i, .writers_left = &writers_left, .state = &st};
        atomic_init(&st.writers[i].done, 0);
    }
    for (int i = 0; i < READERS; i++) {
        readers[i] = (conc_arg){.m = m, .id = i, .writers_left = &writers_left, .state = &st};
        CHECK(pthread_create(&rt[i], NULL, reader_main, &readers[i]) == 0);
    }
    for (int i = 0; i < WRITERS; i++)
        CHECK(pthread_create(&wt[i], NULL, writer_main, &st.writers[i]) == 0);
    for (int i = 0; i < WRITERS; i++)
        pthread_join(wt[i], NULL);
    for (int i = 0; i < READERS; i++) {
        pthread_join(rt[i], NULL);
        CHECK_EQ_U64(readers[i].failures, 0);
    }

    /* Every key exactly once, in order, and the counters exact. */
    const uint32_t total = WRITERS * PER_WRITER;
    int failures = 0;
    kw_iter *it = kw_memtable_iter(m);
    CHECK_EQ_U64(reader_scan(it, &failures), total);
    CHECK_EQ_U64(failures, 0);
    uint32_t k = 0;
    for (kw_iter_seek_to_first(it); kw_iter_valid(it); kw_iter_next(it), k++) {
        char want[16];
        size_t n = make_key(want, k);
        if (!slice_eq(kw_ikey_user(kw_iter_key(it)), kw_slice_make(want, n))) {
            CHECK(!"key sequence has a gap or a duplicate");
            break;
        }
    }
    kw_iter_destroy(it);
    uint64_t bytes = 0;
    for (uint32_t i = 0; i < total; i++)
        bytes += 11 + 8 + i % 57;
    CHECK_EQ_U64(kw_memtable_entries(m), total);
    CHECK_EQ_U64(kw_memtable_tombstones(m), 0);
    CHECK_EQ_U64(kw_memtable_user_bytes(m), bytes);
    CHECK(kw_memtable_approx_bytes(m) >= bytes);
    kw_memtable_unref(m);
}

/* ---- concurrent: writers racing on the same keys ------------------------------------------ */

#define RACE_KEYS 4000

typedef struct {
    kw_skiplist *sl;
    uint64_t seed;
    int won; /* inserts that returned true */
} race_arg;

static void *race_main(void *p)
{
    race_arg *r = p;
    /* Each thread inserts every key, in its own shuffled order. */
    uint32_t *order = malloc(RACE_KEYS * sizeof *order);
    for (uint32_t i = 0; i < RACE_KEYS; i++)
        order[i] = i;
    for (uint32_t i = RACE_KEYS - 1; i > 0; i--) {
        uint32_t j = (uint32_t)(rng_next(&r->seed) % (i + 1)), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (uint32_t i = 0; i < RACE_KEYS; i++) {
        char kb[8];
        be64(kb, order[i]);
        r->won += raw_insert(r->sl, kb, 8);
    }
    free(order);
    return NULL;
}

static void test_concurrent_equal_keys(void)
{
    kw_arena *a = kw_arena_create(0);
    kw_skiplist *sl = kw_skiplist_create(a, raw_key, kw_slice_compare);
    race_arg args[WRITERS];
    pthread_t t[WRITERS];
    for (int i = 0; i < WRITERS; i++) {
        args[i] = (race_arg){.sl = sl, .seed = 77 + (uint64_t)i * 1000003, .won = 0};
        CHECK(pthread_create(&t[i], NULL, race_main, &args[i]) == 0);
    }
    int won = 0;
    for (int i = 0; i < WRITERS; i++) {
        pthread_join(t[i], NULL);
        won += args[i].won;
    }
    CHECK_EQ_U64(won, RACE_KEYS); /* each key inserted by exactly one thread */
    kw_skiplist_iter it;
    kw_skiplist_iter_init(&it, sl);
    uint64_t i = 0;
    for (kw_skiplist_iter_seek_to_first(&it); kw_skiplist_iter_valid(&it);
         kw_skiplist_iter_next(&it), i++) {
        char kb[8];
        be64(kb, i);
        CHECK(slice_eq(raw_key(kw_skiplist_iter_entry(&it)), kw_slice_make(kb, 8)));
    }
    CHECK_EQ_U64(i, RACE_KEYS);
    kw_arena_destroy(a);
}

int main(void)
{
    RUN(test_concurrent_writers_and_readers);
    RUN(test_concurrent_equal_keys);
    return ctest_summary();
}
