/*
 * test_cache.c: the sharded LRU cache (cache.h): LRU order and eviction under the budget, pinned
 * entries surviving eviction/erase/replace/shrink, exact counters, erase_file, zero budget,
 * touch and batched miss counts, the buffer pool, 4 threads; leases: publish, retire, batches,
 * readers against a retiring writer; tables read by 4 threads while a fifth resizes every tier
 * and evicts the published index and filter. The whole file also runs under TSan (make
 * test-tsan); single-threaded table tests are in test_table_cache.c.
 */
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "table_fixture.h" /* the table helpers, stats() */

/* ---- values that count their deletions -------------------------------------------------------- */

static int deleted; /* atomic: threads delete too */

typedef struct {
    uint64_t file, offset; /* the key it was inserted under: checked on every hit */
    char pad[16];
} val;

static void del_val(void *v)
{
    __atomic_fetch_add(&deleted, 1, __ATOMIC_RELAXED);
    free(v);
}

static val *mkval(uint64_t file, uint64_t offset)
{
    val *v = calloc(1, sizeof *v);
    v->file = file;
    v->offset = offset;
    return v;
}

/* insert + release; true if kept */
static bool put_val(kw_cache *c, uint64_t file, uint64_t off, size_t charge)
{
    val *v = mkval(file, off);
    kw_cache_handle *h = kw_cache_insert(c, file, off, v, charge, del_val);
    if (h == NULL) {
        free(v);
        return false;
    }
    kw_cache_release(c, h);
    return true;
}

/* lookup + release; true on a hit (whose value must carry its key) */
static bool has(kw_cache *c, uint64_t file, uint64_t off)
{
    kw_cache_handle *h = kw_cache_lookup(c, file, off);
    if (h == NULL)
        return false;
    const val *v = kw_cache_value(h);
    CHECK(v->file == file && v->offset == off);
    kw_cache_release(c, h);
    return true;
}

/* ---- the cache ------------------------------------------------------------------------------- */

static void test_lru_order(void)
{
    deleted = 0;
    kw_cache *c = kw_cache_create(300);
    for (uint64_t k = 1; k <= 3; k++) /* keys spread over shards: LRU is still global */
        CHECK(put_val(c, k, k * 4096, 100));
    CHECK(has(c, 1, 4096)); /* 1 becomes the most recent: order 2, 3, 1 */
    CHECK(put_val(c, 4, 4 * 4096, 100));
    CHECK(!has(c, 2, 2 * 4096)); /* the least recently used went */
    CHECK(has(c, 3, 3 * 4096) && has(c, 1, 4096) && has(c, 4, 4 * 4096)); /* now 3, 1, 4 */
    CHECK(put_val(c, 5, 5 * 4096, 200)); /* needs two: 3 and 1 */
    CHECK(!has(c, 3, 3 * 4096) && !has(c, 1, 4096));
    CHECK(has(c, 4, 4 * 4096) && has(c, 5, 5 * 4096));
    kw_cache_stats s = stats(c);
    CHECK_EQ_U64(s.evictions, 3);
    CHECK_EQ_U64(s.usage, 300);
    CHECK_EQ_U64(s.entries, 2);
    CHECK_EQ_U64(deleted, 3);
    for (int i = 0; i < 1000; i++) /* under the budget at every step */
        CHECK(put_val(c, 10 + (uint64_t)i % 7, (uint64_t)i, 1 + (size_t)i % 150) &&
              stats(c).usage <= 300);
    kw_cache_destroy(c);
    CHECK_EQ_U64(deleted, 1005); /* every value freed exactly once */
}

static void test_counters_exact(void)
{
    deleted = 0;
    kw_cache *c = kw_cache_create(1000);
    CHECK(put_val(c, 1, 0, 400));
    CHECK(put_val(c, 1, 100, 400));
    CHECK(has(c, 1, 0) && !has(c, 1, 50) && !has(c, 2, 0));
    kw_cache_handle *h = kw_cache_lookup(c, 1, 100); /* pinned */
    CHECK(!put_val(c, 9, 9, 1001));                      /* larger than the budget */
    CHECK(put_val(c, 1, 200, 400));                      /* evicts (1, 0), not the pinned one */
    kw_cache_stats s = stats(c);
    CHECK_EQ_U64(s.hits, 2);
    CHECK_EQ_U64(s.misses, 2);
    CHECK_EQ_U64(s.inserts, 3);
    CHECK_EQ_U64(s.rejects, 1);
    CHECK_EQ_U64(s.evictions, 1);
    CHECK_EQ_U64(s.usage, 800);
    CHECK_EQ_U64(s.pinned, 400);
    CHECK_EQ_U64(s.capacity, 1000);
    CHECK_EQ_U64(s.entries, 2);
    kw_cache_release(c, h);
    CHECK_EQ_U64(stats(c).pinned, 0);
    kw_cache_erase(c, 1, 100);
    kw_cache_erase(c, 1, 12345); /* absent: no-op */
    s = stats(c);
    CHECK_EQ_U64(s.entries, 1);
    CHECK_EQ_U64(s.usage, 400);
    CHECK_EQ_U64(s.evictions, 1); /* erase is not an eviction */
    CHECK_EQ_U64(deleted, 2);
    kw_cache_destroy(c);
}

static void test_pinned_survive(void)
{
    deleted = 0;
    kw_cache *c = kw_cache_create(200);
    val *a = mkval(7, 1);
    kw_cache_handle *ha = kw_cache_insert(c, 7, 1, a, 100, del_val);
    CHECK(ha != NULL && kw_cache_value(ha) == a);
    for (uint64_t i = 0; i < 50; i++) /* pressure: only unpinned entries go */
        CHECK(put_val(c, 8, i, 100));
    CHECK(has(c, 7, 1));
    kw_cache_handle *ha2 = kw_cache_lookup(c, 7, 1); /* a second pin */
    kw_cache_erase_file(c, 7);                       /* detached, not freed */
    CHECK(!has(c, 7, 1));
    CHECK_EQ_U64(deleted, 49);
    CHECK(((val *)kw_cache_value(ha))->offset == 1); /* still readable (ASan would object) */
    CHECK_EQ_U64(stats(c).usage, 200);               /* still held, still counted */
    CHECK_EQ_U64(stats(c).pinned, 100);
    kw_cache_release(c, ha);
    CHECK_EQ_U64(deleted, 49);
    kw_cache_release(c, ha2); /* the last pin frees it */
    CHECK_EQ_U64(deleted, 50);
    CHECK_EQ_U64(stats(c).usage, 100);
    CHECK_EQ_U64(stats(c).pinned, 0);

    val *b1 = mkval(5, 5), *b2 = mkval(5, 5); /* replace while pinned */
    kw_cache_handle *h1 = kw_cache_insert(c, 5, 5, b1, 50, del_val);
    kw_cache_handle *h2 = kw_cache_insert(c, 5, 5, b2, 60, del_val);
    CHECK(kw_cache_value(h1) == b1 && kw_cache_value(h2) == b2);
    kw_cache_handle *h3 = kw_cache_lookup(c, 5, 5);
    CHECK(h3 != NULL && kw_cache_value(h3) == b2);
    /* b1 still counts (210 > 200), so the unpinned (8, 49) was evicted */
    CHECK_EQ_U64(stats(c).entries, 1);
    CHECK_EQ_U64(deleted, 51);
    CHECK_EQ_U64(stats(c).usage, 110);
    kw_cache_release(c, h1); /* frees b1 */
    CHECK_EQ_U64(deleted, 52);
    kw_cache_release(c, h2);
    kw_cache_release(c, h3);
    CHECK_EQ_U64(deleted, 52);
    kw_cache_destroy(c);
    CHECK_EQ_U64(deleted, 53);
}

static void test_capacity_shrink(void)
{
    deleted = 0;
    kw_cache *c = kw_cache_create(1000);
    for (uint64_t i = 0; i < 10; i++)
        CHECK(put_val(c, 1, i, 100));
    kw_cache_handle *h0 = kw_cache_lookup(c, 1, 0); /* the oldest, pinned */
    kw_cache_set_capacity(c, 350);
    kw_cache_stats s = stats(c);
    CHECK_EQ_U64(s.capacity, 350);
    CHECK_EQ_U64(s.usage, 300); /* the pinned one + the two most recent */
    CHECK_EQ_U64(s.evictions, 7);
    CHECK(has(c, 1, 8) && has(c, 1, 9) && !has(c, 1, 1) && !has(c, 1, 7));
    kw_cache_set_capacity(c, 0); /* everything unpinned goes at once */
    CHECK_EQ_U64(stats(c).usage, 100);
    CHECK_EQ_U64(stats(c).entries, 1);
    kw_cache_release(c, h0); /* over budget: goes at release */
    s = stats(c);
    CHECK_EQ_U64(s.usage, 0);
    CHECK_EQ_U64(s.entries, 0);
    CHECK_EQ_U64(deleted, 10);
    kw_cache_set_capacity(c, 500); /* grows back: keeps again */
    CHECK(put_val(c, 2, 2, 500) && has(c, 2, 2));
    kw_cache_destroy(c);
}

static void test_erase_file(void)
{
    deleted = 0;
    kw_cache *c = kw_cache_create(1u << 30);
    for (uint64_t f = 1; f <= 3; f++)
        for (uint64_t off = 0; off < 3000; off++) /* grows every shard's table */
            CHECK(put_val(c, f, off * 4096, 10));
    kw_cache_handle *h = kw_cache_lookup(c, 2, 4096);
    kw_cache_erase_file(c, 2);
    kw_cache_stats s = stats(c);
    CHECK_EQ_U64(s.entries, 6000);
    CHECK_EQ_U64(deleted, 2999);
    CHECK_EQ_U64(s.usage, 6001 * 10);
    int found1 = 0, found2 = 0;
    for (uint64_t off = 0; off < 3000; off++) {
        found1 += has(c, 1, off * 4096) && has(c, 3, off * 4096);
        found2 += has(c, 2, off * 4096);
    }
    CHECK_EQ_U64(found1, 3000);
    CHECK_EQ_U64(found2, 0);
    kw_cache_release(c, h);
    CHECK_EQ_U64(deleted, 3000);
    kw_cache_erase_file(c, 99); /* nothing */
    CHECK_EQ_U64(stats(c).entries, 6000);
    kw_cache_destroy(c);
    CHECK_EQ_U64(deleted, 9000);
}

static void test_zero_budget(void)
{
    kw_cache *c = kw_cache_create(0);
    val *v = mkval(1, 1);
    CHECK(kw_cache_insert(c, 1, 1, v, 0 + 1, del_val) == NULL); /* not kept: still ours */
    free(v);
    CHECK(!has(c, 1, 1));
    kw_cache_stats s = stats(c);
    CHECK_EQ_U64(s.rejects, 1);
    CHECK_EQ_U64(s.misses, 1);
    CHECK_EQ_U64(s.usage, 0);
    CHECK_EQ_U64(s.entries, 0);
    CHECK(strcmp(kw_cache_result_name(KW_CACHE_OFF), "off") == 0 &&
          strcmp(kw_cache_result_name(KW_CACHE_HIT), "hit") == 0 &&
          strcmp(kw_cache_result_name(KW_CACHE_MISS), "miss") == 0 &&
          strcmp(kw_cache_result_name(KW_CACHE_NONE), "none") == 0);
    kw_cache_destroy(c);

    kw_block_cache *bc = kw_block_cache_create(100, 0, 7);
    CHECK(kw_cache_capacity(bc->data) == 100 && kw_cache_capacity(bc->index) == 0 &&
          kw_cache_capacity(bc->bloom) == 7);
    kw_buf b;
    kw_buf_init(&b);
    kw_block_cache_stats_json(bc, &b);
    kw_buf_push(&b, '\0');
    CHECK(strstr(b.data, "{\"data\":{\"hits\":0,") == b.data);
    CHECK(strstr(b.data, "\"index\":{") && strstr(b.data, "\"bloom\":{") &&
          strstr(b.data, "\"capacity\":7,\"entries\":0},"
                         "\"data_reads\":\"in_place\",\"verified_blocks\":0}"));
    kw_buf_free(&b);
    kw_block_cache_destroy(bc);
}

/* ---- threads --------------------------------------------------------------------------------- */

typedef struct {
    kw_cache *c;
    uint64_t seed;
    uint64_t lookups;
} worker;

static void *cache_worker(void *arg)
{
    worker *w = arg;
    uint64_t x = w->seed;
    kw_cache_handle *held[4] = {NULL, NULL, NULL, NULL};
    for (int i = 0; i < 20000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        uint64_t file = x % 5, off = (x >> 8) % 300, op = (x >> 20) % 16;
        if (op < 9) {
            w->lookups++;
            kw_cache_handle *h = kw_cache_lookup(w->c, file, off);
            if (h != NULL) {
                const val *v = kw_cache_value(h);
                CHECK(v->file == file && v->offset == off);
                int slot = (int)((x >> 30) % 4); /* keep some pinned a while */
                kw_cache_release(w->c, held[slot]);
                held[slot] = h;
            }
        } else if (op < 15) {
            put_val(w->c, file, off, 1 + (x >> 40) % 200);
        } else if ((x >> 44) % 8 == 0) {
            kw_cache_erase_file(w->c, file);
        } else {
            kw_cache_erase(w->c, file, off);
        }
        if (i % 5000 == 0 && w->seed == 1) /* one thread also resizes */
            kw_cache_set_capacity(w->c, (size_t)(5000 + (x >> 50) % 20000));
    }
    for (int s = 0; s < 4; s++)
        kw_cache_release(w->c, held[s]);
    return NULL;
}

static void test_threads(void)
{
    deleted = 0;
    kw_cache *c = kw_cache_create(10000);
    pthread_t th[4];
    worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (worker){c, (uint64_t)i + 1, 0};
        pthread_create(&th[i], NULL, cache_worker, &w[i]);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    kw_cache_stats s = stats(c);
    CHECK_EQ_U64(s.hits + s.misses, w[0].lookups + w[1].lookups + w[2].lookups + w[3].lookups);
    CHECK_EQ_U64(s.pinned, 0);
    CHECK(s.usage <= s.capacity);
    CHECK_EQ_U64((uint64_t)deleted + s.entries, s.inserts); /* every kept value: freed or here */
    CHECK(s.evictions > 0 && s.hits > 0);
    kw_cache_destroy(c);
    CHECK_EQ_U64(deleted, s.inserts);
}

/* ---- touch, batched counts, the pool --------------------------------------------------------- */

static void test_touch_and_count(void)
{
    deleted = 0;
    kw_cache *c = kw_cache_create(300);
    for (uint64_t k = 1; k <= 3; k++)
        CHECK(put_val(c, k, 0, 100));
    CHECK(kw_cache_touch(c, 1, 0, 64)); /* 1 becomes the most recent: 2, 3, 1 */
    CHECK(!kw_cache_touch(c, 9, 0, 5)); /* absent: the hits still count */
    CHECK(put_val(c, 4, 0, 100));
    CHECK(!has(c, 2, 0) && has(c, 1, 0));
    kw_cache_count_misses(c, 7, 7, 10);
    kw_cache_stats s = stats(c);
    CHECK_EQ_U64(s.hits, 64 + 5 + 1);
    CHECK_EQ_U64(s.misses, 10 + 1);
    kw_cache_handle *h = kw_cache_lookup(c, 3, 0); /* pinned: a touch leaves it pinned */
    CHECK(kw_cache_touch(c, 3, 0, 1));
    CHECK_EQ_U64(stats(c).pinned, 100);
    kw_cache_release(c, h);
    kw_cache_destroy(c);
}

static void test_pool(void)
{
    kw_block_cache *bc = kw_block_cache_create(1u << 20, 0, 0);
    size_t cap, cap2, cap3;
    char *a = kw_block_cache_alloc(bc, 4200, &cap);
    CHECK_EQ_U64(cap, 4352); /* 4200 rounded up to 256 */
    memset(a, 1, cap);
    kw_block_cache_recycle(bc, a, cap);
    char *b = kw_block_cache_alloc(bc, 4100, &cap2); /* the same class: a again */
    CHECK(b == a && cap2 == 4352);
    char *big = kw_block_cache_alloc(bc, 100000, &cap3); /* past the classes: exact, freed */
    CHECK_EQ_U64(cap3, 100000);
    memset(big, 2, cap3);
    kw_block_cache_recycle(bc, big, cap3);
    char *z = kw_block_cache_alloc(bc, 0, &cap3);
    CHECK_EQ_U64(cap3, 256);
    kw_block_cache_recycle(bc, z, cap3);
    char *many[100];
    for (int i = 0; i < 100; i++) /* more than the pool keeps: the rest is freed (ASan: no leak) */
        many[i] = kw_block_cache_alloc(bc, 4096, &cap);
    for (int i = 0; i < 100; i++)
        kw_block_cache_recycle(bc, many[i], cap);
    kw_block_cache_recycle(bc, b, cap2);
    kw_block_cache_destroy(bc); /* frees what the pool kept */
}

/* ---- leases ---------------------------------------------------------------------------------- */

static void test_lease(void)
{
    kw_lease *l = kw_lease_create();
    kw_lease_section s;
    int a = 1, b = 2;
    CHECK(kw_lease_enter(l, 0, &s) == NULL);
    CHECK(!kw_lease_leave(&s, -1));
    kw_lease_publish(l, 0, &a);
    CHECK(kw_lease_enter(l, 0, &s) == &a);
    kw_lease_leave(&s, -1);
    CHECK(kw_lease_enter(l, 1, &s) == NULL); /* parts are independent */
    kw_lease_leave(&s, -1);
    kw_lease_retire(l, 0, &b); /* not the published one: stays */
    CHECK(kw_lease_enter(l, 0, &s) == &a);
    kw_lease_leave(&s, -1);
    kw_lease_retire(l, 0, &a);
    CHECK(kw_lease_enter(l, 0, &s) == NULL);
    kw_lease_leave(&s, -1);
    /* one batch per KW_LEASE_BATCH uses of a counter in a slot: pinned to one CPU, exact */
    cpu_set_t old, one;
    pthread_getaffinity_np(pthread_self(), sizeof old, &old);
    CPU_ZERO(&one);
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
        if (CPU_ISSET(cpu, &old)) {
            CPU_SET(cpu, &one);
            break;
        }
    pthread_setaffinity_np(pthread_self(), sizeof one, &one);
    int batches[KW_LEASE_COUNTERS] = {0};
    for (int i = 0; i < 10 * KW_LEASE_BATCH; i++)
        for (int c = 0; c < KW_LEASE_COUNTERS; c++) {
            kw_lease_enter(l, 0, &s);
            batches[c] += kw_lease_leave(&s, c);
        }
    pthread_setaffinity_np(pthread_self(), sizeof old, &old);
    for (int c = 0; c < KW_LEASE_COUNTERS; c++)
        CHECK_EQ_U64(batches[c], 10);
    kw_lease_ref(l);
    kw_lease_unref(l);
    CHECK(kw_lease_bytes() >= KW_LEASE_SLOTS * 64);
    kw_lease_unref(l);
}

/* Readers use whatever value is published while a writer keeps publishing new ones and
 * retiring (then poisoning and freeing) the old: a reader must never see a poisoned or freed
 * value (ASan: use after free; TSan: a race with the poisoning). */
typedef struct {
    int magic;
    int serial;
} lval;

typedef struct {
    kw_lease *l;
    int stop;    /* atomic */
    long uses;   /* by the reader */
    long leaves;
    long batches;
    int bad;
} lease_run;

static void *lease_reader(void *arg)
{
    lease_run *r = arg;
    while (!__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE)) {
        kw_lease_section s;
        const lval *v = kw_lease_enter(r->l, 0, &s);
        if (v != NULL) {
            r->bad += v->magic != 0x5eed;
            __atomic_store_n(&r->uses, r->uses + 1, __ATOMIC_RELAXED); /* the writer reads it */
        }
        r->batches += kw_lease_leave(&s, v != NULL ? 0 : 1);
        r->leaves++;
    }
    return NULL;
}

/* Whether every reader has used some published values (so the writer ran long enough). */
static bool all_used(lease_run *r, int n)
{
    for (int i = 0; i < n; i++)
        if (__atomic_load_n(&r[i].uses, __ATOMIC_RELAXED) < 1000)
            return false;
    return true;
}

static void test_lease_threads(void)
{
    lease_run r[3];
    pthread_t th[3];
    kw_lease *l = kw_lease_create();
    for (int i = 0; i < 3; i++) {
        r[i] = (lease_run){l, 0, 0, 0, 0, 0};
        pthread_create(&th[i], NULL, lease_reader, &r[i]);
    }
    lval *prev = NULL;
    for (int i = 0; i < 3000 || !all_used(r, 3); i++) {
        lval *v = malloc(sizeof *v);
        v->magic = 0x5eed;
        v->serial = i;
        kw_lease_publish(l, 0, v);
        if (prev != NULL) {
            kw_lease_retire(l, 0, prev);
            prev->magic = 0; /* poison: a reader still using it would see this */
            free(prev);
        }
        prev = v;
        if (i % 500 == 0) { /* sometimes nothing is published for a while */
            kw_lease_retire(l, 0, prev);
            free(prev);
            prev = NULL;
            sched_yield();
        }
    }
    for (int i = 0; i < 3; i++)
        __atomic_store_n(&r[i].stop, 1, __ATOMIC_RELEASE);
    long uses = 0, leaves = 0, batches = 0; /* a slot's counters are shared by its readers */
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ_U64(r[i].bad, 0);
        uses += r[i].uses;
        leaves += r[i].leaves;
        batches += r[i].batches;
    }
    CHECK(uses >= 3000 && batches * KW_LEASE_BATCH <= leaves);
    CHECK(batches * KW_LEASE_BATCH >= leaves - 2 * (KW_LEASE_BATCH - 1) * KW_LEASE_SLOTS);
    if (prev != NULL) {
        kw_lease_retire(l, 0, prev);
        free(prev);
    }
    kw_lease_unref(l);
}

/* ---- tables ---------------------------------------------------------------------------------- */

/* 4 readers (gets and scans) while a fifth thread resizes every tier and evicts the table's
 * published index and filter (their deleters wait out the readers inside a lease section). */
typedef struct {
    kw_table *t;
    kw_block_cache *bc;
    int id;
    int failures;
} reader;

static int stop_resizer;

static void *table_reader(void *arg)
{
    reader *r = arg;
    uint64_t x = (uint64_t)r->id * 7919 + 1;
    for (int i = 0; i < 3000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        char *err = NULL;
        if (get_i(r->t, (int)(x % NKEYS), (x >> 32) % 4 != 0, NULL, &err) != KIWI_OK)
            r->failures++;
        free(err);
        if (i % 1000 == 999) {
            kiwi_status st;
            r->failures += scan_st(r->t, (x >> 40) % 2 == 0, &st) != NKEYS || st != KIWI_OK;
        }
    }
    return NULL;
}

static void *resizer(void *arg)
{
    kw_block_cache *bc = arg;
    size_t sizes[] = {0, 5000, 100000, 1u << 20};
    for (int i = 0; !__atomic_load_n(&stop_resizer, __ATOMIC_ACQUIRE); i++) {
        kw_cache_set_capacity(bc->data, sizes[i % 4]);
        kw_cache_set_capacity(bc->index, sizes[(i / 3) % 4]);
        kw_cache_set_capacity(bc->bloom, sizes[(i / 5) % 4]);
        if (i % 2 == 1) {
            kw_cache_erase_file(bc->index, 42);
            kw_cache_erase_file(bc->bloom, 42);
        }
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static void test_table_threads(void)
{
    char *dir = ctest_tmpdir("cache");
    char *path = make_table(dir);
    kw_block_cache *bc = kw_block_cache_create(100000, 1u << 20, 1u << 20);
    kw_table *t;
    char *err = NULL;
    char **errp = &err;
    CHECK_OK(kw_table_open_cached(path, 42, bc, &t, &err), errp);
    pthread_t th[5];
    reader rd[4];
    stop_resizer = 0;
    pthread_create(&th[4], NULL, resizer, bc);
    for (int i = 0; i < 4; i++) {
        rd[i] = (reader){t, bc, i, 0};
        pthread_create(&th[i], NULL, table_reader, &rd[i]);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    __atomic_store_n(&stop_resizer, 1, __ATOMIC_RELEASE);
    pthread_join(th[4], NULL);
    for (int i = 0; i < 4; i++)
        CHECK_EQ_U64(rd[i].failures, 0);
    for (int tier = 0; tier < 3; tier++) {
        kw_cache *c = tier == 0 ? bc->data : tier == 1 ? bc->index : bc->bloom;
        CHECK_EQ_U64(stats(c).pinned, 0);
        CHECK(stats(c).usage <= stats(c).capacity);
    }
    kw_table_unref(t);
    CHECK_EQ_U64(stats(bc->data).usage + stats(bc->index).usage + stats(bc->bloom).usage, 0);
    kw_block_cache_destroy(bc);
    free(err);
    free(path);
    ctest_rmtree(dir);
}

int main(void)
{
    RUN(test_lru_order);
    RUN(test_counters_exact);
    RUN(test_pinned_survive);
    RUN(test_capacity_shrink);
    RUN(test_erase_file);
    RUN(test_zero_budget);
    RUN(test_threads);
    RUN(test_touch_and_count);
    RUN(test_pool);
    RUN(test_lease);
    RUN(test_lease_threads);
    RUN(test_table_threads);
    return ctest_summary();
}
