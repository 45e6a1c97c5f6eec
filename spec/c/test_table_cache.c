/*
 * test_table_cache.c: SSTables read through a block cache (table.h, cache.h), one thread: the
 * answers are those of the uncached reader (the oracle, itself checked against a model in
 * test_table.c) under every budget and both data_reads modes; the index and filter published, evicted (read in place, rebuilt only after a bounded
 * number of reads), too small for their tier (read in place, never rebuilt), off and on again;
 * thrash between tables bounded; erase on unref. Data blocks (in place, through the data tier,
 * resident-only reads) are in test_table_data.c; threads in test_cache.c (run under TSan).
 */
#include "table_fixture.h"

/* ---- mixed data: the same answers as the uncached reader ----------------------------------- */

typedef struct {
    kw_buf ikey;
    size_t vlen;
} mixed;

static int cmp_mixed(const void *a, const void *b)
{
    const mixed *x = a, *y = b;
    return kw_ikey_compare(kw_slice_make(x->ikey.data, x->ikey.len),
                           kw_slice_make(y->ikey.data, y->ikey.len));
}

static void add_mixed(mixed *m, size_t *n, const char *k, size_t klen, uint64_t seq, bool del,
                      size_t vlen)
{
    kw_buf_init(&m[*n].ikey);
    kw_ikey_append(&m[*n].ikey, kw_slice_make(k, klen), seq, del ? KW_TYPE_DELETE : KW_TYPE_VALUE);
    m[(*n)++].vlen = del ? 0 : vlen;
}

/* The empty key, NUL bytes, versions with tombstones, a 1 MiB value, 600 keys with 1-4
 * versions; in 256-byte blocks. Returns the path; the sorted entries go to out and count. */
static char *make_mixed_table(const char *dir, mixed **out, size_t *count)
{
    static const struct { const char *k; size_t n; } special[] = {
        {"", 0}, {"\0", 1}, {"\0\0", 2}, {"a", 1}, {"a\0b", 3}, {"a\0c", 3}, {"apple", 5}};
    mixed *m = calloc(4000, sizeof *m);
    size_t n = 0;
    uint64_t seq = 1, x = 88172645463325252ull;
    for (size_t i = 0; i < sizeof special / sizeof special[0]; i++)
        for (int v = 0; v < 3; v++)
            add_mixed(m, &n, special[i].k, special[i].n, seq++, v == 1, 10 + i);
    add_mixed(m, &n, "big", 3, seq++, false, 1u << 20);
    for (int i = 0; i < 600; i++) {
        char k[32];
        int kl = snprintf(k, sizeof k, "key%05d", i * 2); /* odd numbers stay absent */
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        for (uint64_t v = 0; v < 1 + x % 4; v++)
            add_mixed(m, &n, k, (size_t)kl, seq++, (x >> (8 + v)) % 3 == 0, (x >> 20) % 40);
    }
    qsort(m, n, sizeof *m, cmp_mixed);
    char *path = kw_join_path(dir, "000005.sst");
    kw_table_options o;
    kw_table_options_default(&o);
    o.block_size = 256;
    kw_table_builder *b;
    CHECK(kw_table_builder_create(path, &o, &b, NULL) == KIWI_OK);
    char *val = malloc(1u << 20);
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < m[i].vlen; j++)
            val[j] = (char)('a' + (i + j) % 26);
        kw_table_builder_add(b, kw_slice_make(m[i].ikey.data, m[i].ikey.len),
                             kw_slice_make(val, m[i].vlen));
    }
    CHECK(kw_table_builder_finish(b, NULL, NULL) == KIWI_OK);
    free(val);
    *out = m;
    *count = n;
    return path;
}

/* get_ex of (uk, seq) answers the same through t as through plain. */
static void same_get(kw_table *t, kw_table *plain, kw_slice uk, uint64_t seq, bool fill)
{
    kw_lookup r1, r2;
    kw_buf v1, v2;
    kw_buf_init(&v1);
    kw_buf_init(&v2);
    CHECK(kw_table_get_ex(t, uk, seq, fill, &r1, &v1, NULL, NULL) == KIWI_OK);
    CHECK(kw_table_get_ex(plain, uk, seq, true, &r2, &v2, NULL, NULL) == KIWI_OK);
    CHECK(r1 == r2 && v1.len == v2.len && (v1.len == 0 || memcmp(v1.data, v2.data, v1.len) == 0));
    kw_buf_free(&v1);
    kw_buf_free(&v2);
}

static bool same_entry(kw_iter *a, kw_iter *b)
{
    return kw_iter_valid(a) && kw_iter_valid(b) &&
           kw_slice_compare(kw_iter_key(a), kw_iter_key(b)) == 0 &&
           kw_slice_compare(kw_iter_value(a), kw_iter_value(b)) == 0;
}

/* Forward and backward iteration and a seek to every key: the same through t as through plain. */
static void same_iteration(kw_table *t, kw_table *plain, bool fill)
{
    kw_iter *a = kw_table_iter_ex(t, fill), *b = kw_table_iter(plain), *s = kw_table_iter(t);
    size_t n = 0;
    for (kw_iter_seek_to_first(a), kw_iter_seek_to_first(b); kw_iter_valid(b);
         kw_iter_next(a), kw_iter_next(b), n++) {
        CHECK(same_entry(a, b));
        kw_iter_seek(s, kw_iter_key(b));
        CHECK(same_entry(s, b));
    }
    CHECK(!kw_iter_valid(a) && n > 0);
    for (kw_iter_seek_to_last(a), kw_iter_seek_to_last(b); kw_iter_valid(b);
         kw_iter_prev(a), kw_iter_prev(b), n--)
        CHECK(same_entry(a, b));
    CHECK(!kw_iter_valid(a) && n == 0);
    CHECK(kw_iter_status(a, NULL) == KIWI_OK && kw_iter_status(s, NULL) == KIWI_OK);
    kw_iter_destroy(a);
    kw_iter_destroy(b);
    kw_iter_destroy(s);
}

/* A data tier too small for most blocks (constant eviction; the 1 MiB block never fits), the
 * index tier off and a filter read in place; the index read in place; tiers that hold all. */
static void test_table_mixed_same_answers(void)
{
    char *dir = ctest_tmpdir("tcache");
    mixed *m;
    size_t n;
    char *path = make_mixed_table(dir, &m, &n);
    kw_table *plain;
    CHECK(kw_table_open(path, 5, &plain, NULL) == KIWI_OK);
    size_t budgets[3][3] = {{2000, 0, 64}, {2000, 100, 1u << 30}, {1u << 30, 1u << 30, 1u << 30}};
    for (int run = 0; run < 6; run++) {
        int b = run % 3, mode = run / 3;
        kw_block_cache *bc = mode_cache(mode, budgets[b][0], budgets[b][1], budgets[b][2]);
        kw_table *t;
        CHECK(kw_table_open_cached(path, 5, bc, &t, NULL) == KIWI_OK);
        for (int pass = 0; pass < 2; pass++) /* the second pass hits where the tiers can */
            for (size_t i = 0; i < n; i++) {
                kw_slice ik = kw_slice_make(m[i].ikey.data, m[i].ikey.len);
                uint64_t s = kw_ikey_seq(ik);
                same_get(t, plain, kw_ikey_user(ik), s, pass == 0);
                same_get(t, plain, kw_ikey_user(ik), s - 1, pass == 0);
                same_get(t, plain, kw_ikey_user(ik), KW_MAX_SEQ, true);
            }
        same_get(t, plain, kw_slice_make("key00001", 8), KW_MAX_SEQ, true); /* absent */
        same_iteration(t, plain, b != 1);
        CHECK(kw_table_verify(t, NULL) == KIWI_OK);
        kw_cache_stats d = stats(bc->data);
        CHECK(d.usage <= d.capacity && (mode == 0 ? d.inserts == 0 && d.misses == 0 : d.hits > 0));
        if (b < 2 && mode == 1)
            CHECK(d.evictions > 100);
        if (b == 1)
            CHECK_EQ_U64(stats(bc->index).inserts, 0); /* in place: never built for the tier */
        kw_table_unref(t);
        kw_block_cache_destroy(bc);
    }
    kw_table_unref(plain);
    for (size_t i = 0; i < n; i++)
        kw_buf_free(&m[i].ikey);
    free(m);
    free(path);
    ctest_rmtree(dir);
}

/* ---- index and filter tiers ----------------------------------------------------------------- */

/* Whether n reads in place before the tier served again is the table's wait for a small part
 * (1024 reads), give or take the uses counted per slot in batches of KW_LEASE_BATCH. */
static bool waited(int n)
{
    return n >= 1024 - (KW_LEASE_BATCH - 1) * KW_LEASE_SLOTS &&
           n <= 1024 + KW_LEASE_BATCH * KW_LEASE_SLOTS + 2;
}

/* Gets of keys i, i+1, ... (each answer checked) until one is served by the index tier (hit);
 * returns how many were not. */
static int gets_until_index_hit(kw_table *t, int i, int limit)
{
    kw_table_lookup_info info;
    int n = 0;
    for (; n < limit; n++) {
        CHECK(get_i(t, (i + n) % NKEYS, true, &info, NULL) == KIWI_OK);
        if (info.index_cache == KW_CACHE_HIT)
            break;
    }
    return n;
}

/* Published: gets do no lookup. Evicted: read in place, rebuilt only after about 1024 reads
 * (the table's retry count for an index this small). Too small: in place, never rebuilt. Off:
 * private. On again. A rebuild is checked again. */
static void test_table_index_tier(void)
{
    char *dir = ctest_tmpdir("tcache");
    char *path = make_table(dir);
    uint64_t ioff, isize;
    index_handle(path, &ioff, &isize);
    kw_block_cache *bc = kw_block_cache_create(1u << 20, 1u << 20, 1u << 20);
    kw_table *t;
    char *err = NULL;
    char **errp = &err;
    kw_table_lookup_info info;
    CHECK_OK(kw_table_open_cached(path, 42, bc, &t, &err), errp);
    uint64_t own = kw_table_uncharged_bytes(t); /* no private index */
    kw_cache_stats s = stats(bc->index);
    for (int i = 0; i < 10; i++)
        CHECK(get_i(t, i, true, &info, &err) == KIWI_OK && info.index_cache == KW_CACHE_HIT);
    CHECK_EQ_U64(stats(bc->index).hits + stats(bc->index).misses, s.hits + s.misses);

    kw_cache_erase(bc->index, 42, ioff); /* as if evicted */
    CHECK(get_i(t, 7, true, &info, &err) == KIWI_OK && info.index_cache == KW_CACHE_MISS);
    int n = gets_until_index_hit(t, 8, 5000);
    CHECK(waited(n));
    CHECK_EQ_U64(stats(bc->index).inserts, 2); /* open, then one rebuild */

    kw_cache_set_capacity(bc->index, 100); /* smaller than the index: in place, never rebuilt */
    s = stats(bc->index);
    for (int i = 0; i < 3000; i++) {
        CHECK(get_i(t, i * 7 % NKEYS, true, &info, &err) == KIWI_OK);
        CHECK(info.index_cache == KW_CACHE_MISS);
    }
    CHECK_EQ_U64(stats(bc->index).inserts, 2);
    CHECK_EQ_U64(stats(bc->index).rejects, 0);
    CHECK_EQ_U64(stats(bc->index).usage, 0);
    CHECK(stats(bc->index).misses - s.misses >= 3000 - (KW_LEASE_BATCH - 1) * KW_LEASE_SLOTS);
    CHECK_EQ_U64(scan(t, true), NKEYS);
    CHECK_EQ_U64(kw_table_uncharged_bytes(t), own); /* nothing private either */

    kw_cache_set_capacity(bc->index, 0); /* off: a private index, built once */
    CHECK(get_i(t, 11, true, &info, &err) == KIWI_OK && info.index_cache == KW_CACHE_OFF);
    CHECK(kw_table_uncharged_bytes(t) > own + isize);
    kw_cache_set_capacity(bc->index, 1u << 20); /* on again: in place, then the tier serves */
    CHECK(get_i(t, 12, true, &info, &err) == KIWI_OK && info.index_cache == KW_CACHE_MISS);
    n = gets_until_index_hit(t, 13, 5000);
    CHECK(waited(n));

    /* a rebuild is checked again: damage the index on disk (the map is shared), evict it; the
     * reads in place trust the check made at open, the rebuild after them finds the damage */
    flip_byte(path, ioff + isize / 2);
    CHECK(get_i(t, 14, true, &info, &err) == KIWI_OK); /* the cached copy is still good */
    kw_cache_erase(bc->index, 42, ioff);
    bool found = false;
    for (int i = 0; i < 3000 && !found; i++) {
        kw_lookup r;
        kw_buf v;
        kw_buf_init(&v);
        char k[16];
        ukey(k, i);
        if (kw_table_get_ex(t, kw_slice_make(k, strlen(k)), KW_MAX_SEQ, true, &r, &v, NULL,
                            &err) == KIWI_CORRUPTION)
            found = strstr(err, "index block at offset") && strstr(err, "checksum mismatch");
        kw_buf_free(&v);
    }
    CHECK(found);
    kw_table_unref(t);
    kw_block_cache_destroy(bc);
    free(err);
    free(path);
    ctest_rmtree(dir);
}

/* A bloom tier too small for the filter: probed in place, never copied; same answers as the
 * uncached reader; misses counted. Then a big enough tier takes it after the wait. */
static void test_table_bloom_in_place(void)
{
    char *dir = ctest_tmpdir("tcache");
    char *path = make_table(dir);
    kw_block_cache *bc = kw_block_cache_create(1u << 30, 1u << 30, 100);
    kw_table *t, *plain;
    CHECK(kw_table_open_cached(path, 42, bc, &t, NULL) == KIWI_OK);
    CHECK(kw_table_open(path, 42, &plain, NULL) == KIWI_OK);
    int gets = 0, ruled_out = 0;
    for (int i = 0; i < NKEYS; i += 3, gets += 2) {
        kw_table_lookup_info a, b;
        CHECK(get_i(t, i, true, &a, NULL) == KIWI_OK && a.bloom_cache == KW_CACHE_MISS);
        char k[16];
        snprintf(k, sizeof k, "key%08d", i * 2 + 1); /* absent */
        kw_lookup r1, r2;
        kw_slice v;
        CHECK(kw_table_get(t, kw_slice_make(k, 11), KW_MAX_SEQ, &r1, &v, &a, NULL) == KIWI_OK);
        CHECK(kw_table_get(plain, kw_slice_make(k, 11), KW_MAX_SEQ, &r2, &v, &b, NULL) == KIWI_OK);
        CHECK(r1 == KW_LOOKUP_MISS && r2 == KW_LOOKUP_MISS);
        CHECK(a.bloom_may_contain == b.bloom_may_contain && a.bloom_cache == KW_CACHE_MISS);
        ruled_out += !a.bloom_may_contain;
    }
    CHECK(ruled_out > gets / 4);
    kw_cache_stats s = stats(bc->bloom);
    CHECK_EQ_U64(s.inserts, 0);
    CHECK_EQ_U64(s.rejects, 0);
    CHECK_EQ_U64(s.usage, 0);
    CHECK(s.misses >= (uint64_t)gets - (KW_LEASE_BATCH - 1) * KW_LEASE_SLOTS && s.misses <= (uint64_t)gets);
    kw_cache_set_capacity(bc->bloom, 1u << 30);
    kw_table_lookup_info info;
    int n = 0;
    for (; n < 5000; n++) {
        CHECK(get_i(t, n, true, &info, NULL) == KIWI_OK);
        if (info.bloom_cache == KW_CACHE_HIT)
            break;
    }
    CHECK(waited(n));
    CHECK_EQ_U64(stats(bc->bloom).inserts, 1);
    kw_table_unref(t);
    kw_table_unref(plain);
    kw_block_cache_destroy(bc);
    free(path);
    ctest_rmtree(dir);
}

/* Six tables whose indexes each fit a quarter of the tier but not all together, read round
 * robin: LRU evicts an index before its next use. Each table reads in place after finding its
 * index gone and rebuilds only after its retry count: a few rebuilds, not one per get. */
static void test_table_index_thrash_bounded(void)
{
    char *dir = ctest_tmpdir("tcache");
    char *path = make_table(dir);
    kw_block_cache *bc = kw_block_cache_create(1u << 30, 1u << 30, 1u << 30);
    kw_table *t[6];
    CHECK(kw_table_open_cached(path, 50, bc, &t[0], NULL) == KIWI_OK);
    uint64_t charge = stats(bc->index).usage;
    kw_table_unref(t[0]);
    kw_cache_set_capacity(bc->index, charge * 9 / 2);
    for (int k = 0; k < 6; k++)
        CHECK(kw_table_open_cached(path, 50 + (uint64_t)k, bc, &t[k], NULL) == KIWI_OK);
    uint64_t opened = stats(bc->index).inserts;
    for (int round = 0; round < 1500; round++)
        for (int k = 0; k < 6; k++)
            CHECK(get_i(t[k], (round * 7 + k) % NKEYS, true, NULL, NULL) == KIWI_OK);
    kw_cache_stats s = stats(bc->index);
    CHECK(s.inserts - opened <= 12); /* without the wait: one per get, 9000 */
    CHECK(s.usage <= s.capacity);
    for (int k = 0; k < 6; k++)
        kw_table_unref(t[k]);
    CHECK_EQ_U64(stats(bc->index).usage, 0);
    kw_block_cache_destroy(bc);
    free(path);
    ctest_rmtree(dir);
}

/* The index read in place trusts what open checked, but never reads out of bounds: a handle
 * changed on disk under the mapping (the offset of block 5 rewritten past the data blocks) is
 * reported as corruption by the get that uses it. */
static void test_table_in_place_changed_file(void)
{
    char *dir = ctest_tmpdir("tcache");
    char *path = make_table(dir);
    uint64_t ioff, isize;
    index_handle(path, &ioff, &isize);
    kw_block_cache *bc = kw_block_cache_create(0, 100, 0); /* the index is read in place */
    kw_table *t;
    char *err = NULL;
    CHECK(kw_table_open_cached(path, 42, bc, &t, NULL) == KIWI_OK);
    kw_table_lookup_info info;
    int key = 0;
    for (; key < NKEYS; key++) /* a key of block 5 */
        if (get_i(t, key, true, &info, NULL) == KIWI_OK && info.block_index == 5)
            break;
    CHECK(info.block_index == 5 && info.index_cache == KW_CACHE_MISS);
    char *data;
    size_t len;
    CHECK(kw_read_file(path, &data, &len, NULL) == KIWI_OK);
    const char *b = data + ioff;
    uint32_t nrestarts = kw_decode_fixed32(b + isize - 4);
    uint32_t e = kw_decode_fixed32(b + isize - 4 - 4 * (size_t)nrestarts + 4 * 5);
    size_t at = ioff + e + 3 + (uint8_t)b[e + 1]; /* [0][klen][vlen][key] then the offset */
    CHECK(b[e] == 0 && (uint8_t)b[e + 2] < 0x80 && (uint8_t)b[at - ioff] >= 0x80);
    free(data);
    FILE *f = fopen(path, "r+b"); /* a 3-byte varint (block 5 starts past 16 KiB): 2^21 - 1 */
    fseek(f, (long)at, SEEK_SET);
    fwrite("\xff\xff\x7f", 1, 3, f);
    fclose(f);
    kw_lookup r;
    kw_buf v;
    kw_buf_init(&v);
    char k[16];
    ukey(k, key);
    CHECK(kw_table_get_ex(t, kw_slice_make(k, strlen(k)), KW_MAX_SEQ, true, &r, &v, NULL, &err) ==
          KIWI_CORRUPTION);
    CHECK(err != NULL && strstr(err, "runs past the data blocks") != NULL);
    kw_buf_free(&v);
    CHECK(get_i(t, 0, true, &info, NULL) == KIWI_OK); /* block 0 is untouched */
    kw_table_unref(t);
    kw_block_cache_destroy(bc);
    free(err);
    free(path);
    ctest_rmtree(dir);
}

/* ---- unref ----------------------------------------------------------------------------------- */

static void test_table_erase_on_unref(void)
{
    char *dir = ctest_tmpdir("tcache");
    char *path = make_table(dir);
    kw_block_cache *bc = cached_cache(1u << 30, 1u << 30, 1u << 30);
    kw_table *t, *other;
    char *err = NULL;
    char **errp = &err;
    kw_table_lookup_info info;
    CHECK_OK(kw_table_open_cached(path, 42, bc, &t, &err), errp);
    CHECK_OK(kw_table_open_cached(path, 43, bc, &other, &err), errp); /* another file number */
    for (int i = 0; i < NKEYS; i += 1000)
        CHECK(get_i(t, i, true, &info, &err) == KIWI_OK && get_i(other, i, true, &info, &err) == KIWI_OK);
    uint64_t data_entries = stats(bc->data).entries;
    CHECK(data_entries >= 40);
    /* other files' entries make the tier large: each table's blocks are then erased one by
     * one (offsets from its index) rather than by a walk of the tier; both must be exact */
    for (uint64_t i = 0; i < 2000; i++)
        CHECK(put(bc->data, 7, i * 4096, 100));
    kw_iter *it = kw_table_iter(t); /* holds a reference: nothing erased yet */
    kw_iter_seek_to_first(it);
    kw_table_unref(t);
    CHECK_EQ_U64(stats(bc->data).entries, data_entries + 2000);
    CHECK(kw_iter_valid(it) && memcmp(kw_iter_value(it).data, "v0 ", 3) == 0);
    kw_iter_destroy(it); /* the last reference: table 42's entries go from every tier */
    CHECK_EQ_U64(stats(bc->data).entries, data_entries / 2 + 2000);
    CHECK_EQ_U64(stats(bc->index).entries, 1);
    CHECK_EQ_U64(stats(bc->bloom).entries, 1);
    CHECK(get_i(other, 0, true, &info, &err) == KIWI_OK && info.data_cache == KW_CACHE_HIT);
    kw_table_unref(other);
    CHECK_EQ_U64(stats(bc->data).entries, 2000);
    CHECK_EQ_U64(stats(bc->data).usage, 2000 * 100);
    kw_cache_erase_file(bc->data, 7);
    for (int tier = 0; tier < 3; tier++) {
        kw_cache *c = tier == 0 ? bc->data : tier == 1 ? bc->index : bc->bloom;
        CHECK_EQ_U64(stats(c).entries, 0);
        CHECK_EQ_U64(stats(c).usage, 0);
    }
    kw_block_cache_destroy(bc);
    free(err);
    free(path);
    ctest_rmtree(dir);
}

/* Same answers with no cache, all tiers off, tiny tiers (constant eviction, filter or index
 * read in place), and tiers that hold everything. */
static void test_table_same_results(void)
{
    char *dir = ctest_tmpdir("tcache");
    char *path = make_table(dir);
    size_t budgets[4][3] = {
        {0, 0, 0}, {9000, 1u << 20, 100}, {9000, 100, 1u << 20}, {1u << 30, 1u << 30, 1u << 30}};
    kw_table *plain;
    char *err = NULL;
    char **errp = &err;
    CHECK_OK(kw_table_open(path, 42, &plain, &err), errp);
    for (int run = 0; run < 8; run++) {
        int b = run % 4, mode = run / 4;
        kw_block_cache *bc = mode_cache(mode, budgets[b][0], budgets[b][1], budgets[b][2]);
        kw_table *t;
        CHECK_OK(kw_table_open_cached(path, 42, bc, &t, &err), errp);
        for (int i = 0; i < NKEYS; i += 7) {
            kw_table_lookup_info a, c;
            CHECK(get_i(t, i, true, &c, &err) == KIWI_OK && get_i(plain, i, true, &a, &err) == KIWI_OK);
            CHECK(a.block_offset == c.block_offset && a.block_index == c.block_index &&
                  a.bloom_may_contain == c.bloom_may_contain);
            if (b == 0)
                CHECK(c.data_cache == (mode == 1 ? KW_CACHE_OFF : KW_CACHE_MAPPED) &&
                      c.index_cache == KW_CACHE_OFF && c.bloom_cache == KW_CACHE_OFF);
            if (mode == 0)
                CHECK(c.data_cache == KW_CACHE_MAPPED && a.data_cache == KW_CACHE_MAPPED);
            char k[16];
            snprintf(k, sizeof k, "key%08d", i * 2 + 1); /* absent */
            kw_lookup r1, r2;
            kw_slice v1, v2;
            CHECK(kw_table_get(t, kw_slice_make(k, 11), KW_MAX_SEQ, &r1, &v1, NULL, NULL) == KIWI_OK);
            CHECK(kw_table_get(plain, kw_slice_make(k, 11), KW_MAX_SEQ, &r2, &v2, NULL, NULL) == KIWI_OK);
            CHECK(r1 == KW_LOOKUP_MISS && r2 == KW_LOOKUP_MISS);
        }
        CHECK_EQ_U64(scan(t, true), NKEYS);
        if (b == 1 && mode == 1)
            CHECK(stats(bc->data).evictions > 100 && stats(bc->data).usage <= 9000);
        if (mode == 0)
            CHECK(stats(bc->data).inserts == 0 &&
                  bc->verified == kw_table_properties(t)->data_blocks);
        kw_table_unref(t);
        kw_block_cache_destroy(bc);
    }
    kw_table_unref(plain);
    free(err);
    free(path);
    ctest_rmtree(dir);
}

int main(void)
{
    RUN(test_table_mixed_same_answers);
    RUN(test_table_index_tier);
    RUN(test_table_bloom_in_place);
    RUN(test_table_index_thrash_bounded);
    RUN(test_table_in_place_changed_file);
    RUN(test_table_erase_on_unref);
    RUN(test_table_same_results);
    return ctest_summary();
}
