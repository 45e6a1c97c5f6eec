/*
 * test_table_data.c: how an SSTable's data blocks are read (table.h, cache.md §3a), one thread:
 * in place in the mapping with each block's CRC checked once per open (the default), through
 * the data tier (data_reads = cached: hits, fill_cache = false, corrupt blocks never cached),
 * switching modes live, and lookups that must not wait for the disk (kw_table_get_resident).
 */
#include "table_fixture.h"

/* ---- data tier ------------------------------------------------------------------------------- */

static void test_table_data_hits(void)
{
    char *dir = ctest_tmpdir("tcache");
    char *path = make_table(dir);
    kw_block_cache *bc = cached_cache(1u << 30, 1u << 30, 1u << 30);
    kw_table *t;
    char *err = NULL;
    char **errp = &err;
    CHECK_OK(kw_table_open_cached(path, 42, bc, &t, &err), errp);
    CHECK(kw_table_cache(t) == bc);
    const kw_table_props *p = kw_table_properties(t);
    CHECK_EQ_U64(stats(bc->index).inserts, 1); /* warmed at open */
    CHECK_EQ_U64(stats(bc->bloom).inserts, 1);
    CHECK(stats(bc->bloom).usage >= p->filter_size && stats(bc->index).usage >= p->index_size);
    kw_table_lookup_info info;
    CHECK(get_i(t, 5, true, &info, &err) == KIWI_OK);
    CHECK(info.bloom_cache == KW_CACHE_HIT && info.index_cache == KW_CACHE_HIT &&
          info.data_cache == KW_CACHE_MISS && info.block_read);
    CHECK(get_i(t, 6, true, &info, &err) == KIWI_OK); /* the same block */
    CHECK(info.data_cache == KW_CACHE_HIT);
    kw_cache_stats d = stats(bc->data);
    CHECK_EQ_U64(d.hits, 1);
    CHECK_EQ_U64(d.misses, 1);
    CHECK_EQ_U64(d.inserts, 1);
    /* the charge: the copy (a 24-byte header + the block) + the entry */
    CHECK_EQ_U64(d.usage, 24 + info.block_size + kw_cache_entry_overhead());
    kw_lookup r; /* the old API: the value points into the map, also on a hit */
    kw_slice v;
    CHECK(kw_table_get(t, kw_slice_make("key00000010", 11), KW_MAX_SEQ, &r, &v, &info, &err) ==
          KIWI_OK);
    CHECK(r == KW_LOOKUP_FOUND && info.data_cache == KW_CACHE_HIT && v.size == 40 &&
          memcmp(v.data, "v5 ", 3) == 0);
    CHECK(get_i(t, NKEYS - 1, true, &info, &err) == KIWI_OK && info.data_cache == KW_CACHE_MISS);
    CHECK(kw_table_get(t, kw_slice_make("key00000011", 11), KW_MAX_SEQ, &r, &v, &info, &err) ==
              KIWI_OK &&
          r == KW_LOOKUP_MISS);
    CHECK(!info.bloom_may_contain || info.data_cache == KW_CACHE_HIT);
    if (!info.bloom_may_contain)
        CHECK(info.index_cache == KW_CACHE_NONE && info.data_cache == KW_CACHE_NONE);
    kw_table_unref(t);
    kw_block_cache_destroy(bc);
    free(err);
    free(path);
    ctest_rmtree(dir);
}

static void test_table_fill_cache_false(void)
{
    char *dir = ctest_tmpdir("tcache");
    char *path = make_table(dir);
    kw_block_cache *bc = cached_cache(1u << 30, 1u << 30, 1u << 30);
    kw_table *t;
    char *err = NULL;
    char **errp = &err;
    CHECK_OK(kw_table_open_cached(path, 42, bc, &t, &err), errp);
    kw_table_lookup_info info;
    for (int round = 0; round < 2; round++) {
        CHECK(get_i(t, 100, false, &info, &err) == KIWI_OK);
        CHECK(info.data_cache == KW_CACHE_MISS);
    }
    CHECK_EQ_U64(stats(bc->data).inserts, 0);
    CHECK_EQ_U64(scan(t, false), NKEYS);
    CHECK_EQ_U64(stats(bc->data).inserts, 0);
    CHECK(get_i(t, 100, true, &info, &err) == KIWI_OK && info.data_cache == KW_CACHE_MISS);
    CHECK(get_i(t, 100, false, &info, &err) == KIWI_OK && info.data_cache == KW_CACHE_HIT);
    CHECK_EQ_U64(stats(bc->data).inserts, 1);
    CHECK_EQ_U64(scan(t, true), NKEYS); /* a filling scan inserts every block */
    CHECK_EQ_U64(stats(bc->data).entries, kw_table_properties(t)->data_blocks);
    kw_table_unref(t);
    kw_block_cache_destroy(bc);
    free(err);
    free(path);
    ctest_rmtree(dir);
}

static void test_table_corrupt_never_cached(void)
{
    char *dir = ctest_tmpdir("tcache");
    char *path = make_table(dir);
    kw_table *t;
    char *err = NULL;
    char **errp = &err;
    kw_table_lookup_info info;
    CHECK_OK(kw_table_open(path, 42, &t, &err), errp);
    CHECK(get_i(t, 500, true, &info, &err) == KIWI_OK);
    kw_table_unref(t);
    flip_byte(path, info.block_offset + 7);
    kw_block_cache *bc = cached_cache(1u << 30, 1u << 30, 1u << 30);
    CHECK_OK(kw_table_open_cached(path, 42, bc, &t, &err), errp);
    for (int round = 0; round < 3; round++) {
        CHECK(get_i(t, 500, true, &info, &err) == KIWI_CORRUPTION);
        CHECK(err != NULL && strstr(err, "checksum mismatch") != NULL);
        CHECK(info.data_cache == KW_CACHE_MISS);
    }
    kiwi_status st;
    CHECK(scan_st(t, true, &st) < NKEYS && st == KIWI_CORRUPTION); /* stops at the bad block */
    CHECK_EQ_U64(stats(bc->data).inserts, stats(bc->data).entries);
    kw_cache_handle *h = kw_cache_lookup(bc->data, 42, info.block_offset);
    CHECK(h == NULL);
    CHECK(get_i(t, 0, true, &info, &err) == KIWI_OK); /* other blocks are fine */
    kw_table_unref(t);
    kw_block_cache_destroy(bc);
    free(err);
    free(path);
    ctest_rmtree(dir);
}

/* ---- data blocks in place -------------------------------------------------------------------- */

/* The default mode: blocks come from the mapping, each CRC checked once, the tier untouched;
 * a corrupt block fails every read (it is never marked checked), its neighbours do not. */
static void test_table_in_place_checked_once(void)
{
    char *dir = ctest_tmpdir("tcache");
    char *path = make_table(dir);
    kw_block_cache *bc = kw_block_cache_create(1u << 30, 1u << 30, 1u << 30);
    kw_table *t;
    char *err = NULL;
    char **errp = &err;
    kw_table_lookup_info info, other;
    CHECK_OK(kw_table_open_cached(path, 42, bc, &t, &err), errp);
    CHECK(get_i(t, 5, true, &info, &err) == KIWI_OK && info.data_cache == KW_CACHE_MAPPED);
    CHECK(get_i(t, 6, true, &other, &err) == KIWI_OK && other.data_cache == KW_CACHE_MAPPED);
    CHECK(info.block_index == other.block_index); /* the same block: checked once */
    CHECK_EQ_U64(bc->verified, 1);
    CHECK(get_i(t, NKEYS - 1, true, &info, &err) == KIWI_OK);
    CHECK_EQ_U64(bc->verified, 2);
    CHECK_EQ_U64(scan(t, true), NKEYS);
    CHECK_EQ_U64(bc->verified, kw_table_properties(t)->data_blocks);
    CHECK_EQ_U64(scan(t, true), NKEYS);
    CHECK_EQ_U64(bc->verified, kw_table_properties(t)->data_blocks);
    kw_cache_stats d = stats(bc->data);
    CHECK(d.inserts == 0 && d.hits == 0 && d.misses == 0 && d.usage == 0);
    CHECK(get_i(t, 500, true, &info, &err) == KIWI_OK);
    kw_table_unref(t);

    flip_byte(path, info.block_offset + 7);
    kw_block_cache *fresh = kw_block_cache_create(1u << 30, 1u << 30, 1u << 30);
    kw_table *plain;
    CHECK_OK(kw_table_open_cached(path, 42, fresh, &t, &err), errp);
    CHECK_OK(kw_table_open(path, 42, &plain, &err), errp); /* no cache: the same rule */
    for (int round = 0; round < 3; round++) {
        CHECK(get_i(t, 500, true, &info, &err) == KIWI_CORRUPTION);
        CHECK(err != NULL && strstr(err, "checksum mismatch") != NULL);
        CHECK(get_i(plain, 500, true, &info, &err) == KIWI_CORRUPTION);
        CHECK(get_i(t, 0, true, &other, &err) == KIWI_OK);
    }
    CHECK_EQ_U64(fresh->verified, 1); /* block 0 only */
    kiwi_status st;
    CHECK(scan_st(t, true, &st) < NKEYS && st == KIWI_CORRUPTION);
    CHECK(scan_st(t, true, &st) < NKEYS && st == KIWI_CORRUPTION); /* still, after a scan */
    CHECK(kw_table_verify(t, NULL) == KIWI_CORRUPTION);
    kw_table_unref(t);
    kw_table_unref(plain);
    kw_block_cache_destroy(fresh);
    kw_block_cache_destroy(bc);
    free(err);
    free(path);
    ctest_rmtree(dir);
}

/* kw_table_get_resident of key i: the status; on KIWI_OK the answer equals get_i's. */
static kiwi_status resident_i(kw_table *t, int i, kw_table_lookup_info *info)
{
    char k[16], want[41];
    ukey(k, i);
    snprintf(want, sizeof want, "v%-39d", i);
    kw_lookup r = KW_LOOKUP_DELETED;
    kw_buf v;
    kw_buf_init(&v);
    char *err = NULL;
    kiwi_status st = kw_table_get_resident(t, kw_slice_make(k, strlen(k)), KW_MAX_SEQ, &r, &v,
                                           info, &err);
    if (st == KIWI_OK)
        CHECK(r == KW_LOOKUP_FOUND && v.len == 40 && memcmp(v.data, want, 40) == 0);
    if (st == KIWI_BUSY)
        CHECK(err == NULL && v.len == 0);
    kw_buf_free(&v);
    free(err);
    return st;
}

/* Drops the file's pages that nothing maps from the page cache (it was synced: all clean). */
static void drop_pages(const char *path)
{
    int fd = open(path, O_RDONLY);
    CHECK(fd >= 0 && posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0);
    close(fd);
}

/* A read that must not wait for the disk answers from memory or says KIWI_BUSY: published
 * filter and index, a block in the page cache; not a block the kernel dropped, nor a part that
 * lives only in the map. */
static void test_table_get_resident(void)
{
    char *dir = ctest_tmpdir("tcache");
    char *path = make_table(dir);
    kw_block_cache *bc = kw_block_cache_create(1u << 30, 1u << 30, 1u << 30);
    kw_table *t;
    char *err = NULL;
    char **errp = &err;
    kw_table_lookup_info info;
    CHECK_OK(kw_table_open_cached(path, 42, bc, &t, &err), errp);
    drop_pages(path); /* after open: what open read ahead but did not map goes too; the first
                       * block is far from the meta blocks at the end, whose pages open maps */
    kw_block_loc loc;
    char k[16];
    ukey(k, 5);
    kw_buf tk;
    kw_buf_init(&tk);
    kw_ikey_append(&tk, kw_slice_make(k, strlen(k)), KW_MAX_SEQ, KW_TYPE_FOR_SEEK);
    CHECK_OK(kw_table_index_search_resident(t, kw_slice_make(tk.data, tk.len), &loc, &err), errp);
    kw_buf_free(&tk);
    bool dropped = !kw_mmap_resident(&t->map, loc.offset, loc.size + KW_TABLE_TRAILER_SIZE);
    if (dropped)
        CHECK(resident_i(t, 5, &info) == KIWI_BUSY);
    else
        printf("the kernel kept the dropped pages: the BUSY case is not exercised\n");
    CHECK(get_i(t, 5, true, &info, &err) == KIWI_OK); /* faults the block in */
    CHECK(resident_i(t, 5, &info) == KIWI_OK && info.data_cache == KW_CACHE_MAPPED);
    CHECK(info.block_index == loc.index);
    char absent[16];
    snprintf(absent, sizeof absent, "key%08d", 1401); /* odd: never written */
    kw_lookup r;
    kw_buf v;
    kw_buf_init(&v);
    kiwi_status st = kw_table_get_resident(t, kw_slice_make(absent, 11), KW_MAX_SEQ, &r, &v,
                                           &info, NULL);
    CHECK((st == KIWI_OK && r == KW_LOOKUP_MISS) || (st == KIWI_BUSY && info.bloom_may_contain));
    kw_table_unref(t);
    kw_block_cache_destroy(bc);

    /* a filter that lives only in the map, or an index read in place: always BUSY */
    size_t budgets[2][3] = {{1u << 30, 1u << 30, 0}, {1u << 30, 100, 1u << 30}};
    for (int b = 0; b < 2; b++) {
        bc = kw_block_cache_create(budgets[b][0], budgets[b][1], budgets[b][2]);
        CHECK_OK(kw_table_open_cached(path, 42, bc, &t, &err), errp);
        CHECK(get_i(t, 700, true, &info, &err) == KIWI_OK);
        CHECK(resident_i(t, 700, &info) == KIWI_BUSY);
        kw_table_unref(t);
        kw_block_cache_destroy(bc);
    }
    /* cached mode: a data-tier hit answers even when the page cache lost the block */
    bc = cached_cache(1u << 30, 1u << 30, 1u << 30);
    CHECK_OK(kw_table_open_cached(path, 42, bc, &t, &err), errp);
    CHECK(get_i(t, 900, true, &info, &err) == KIWI_OK && info.data_cache == KW_CACHE_MISS);
    CHECK(resident_i(t, 900, &info) == KIWI_OK && info.data_cache == KW_CACHE_HIT);
    kw_table_unref(t);
    kw_block_cache_destroy(bc);
    kw_buf_free(&v);
    free(err);
    free(path);
    ctest_rmtree(dir);
}

/* The mode changes at run time: a cached read misses then hits; back in place the tier is
 * not asked (its copy ages out or goes with the table). */
static void test_table_data_reads_switch(void)
{
    char *dir = ctest_tmpdir("tcache");
    char *path = make_table(dir);
    kw_block_cache *bc = kw_block_cache_create(1u << 30, 1u << 30, 1u << 30);
    kw_table *t;
    char *err = NULL;
    char **errp = &err;
    kw_table_lookup_info info;
    CHECK_OK(kw_table_open_cached(path, 42, bc, &t, &err), errp);
    CHECK(kw_block_cache_data_reads(bc) == KW_DATA_READS_IN_PLACE);
    CHECK(get_i(t, 9, true, &info, &err) == KIWI_OK && info.data_cache == KW_CACHE_MAPPED);
    kw_block_cache_set_data_reads(bc, KW_DATA_READS_CACHED);
    CHECK(kw_block_cache_data_reads(bc) == KW_DATA_READS_CACHED);
    CHECK(get_i(t, 9, true, &info, &err) == KIWI_OK && info.data_cache == KW_CACHE_MISS);
    CHECK(get_i(t, 9, true, &info, &err) == KIWI_OK && info.data_cache == KW_CACHE_HIT);
    kw_buf js;
    kw_buf_init(&js);
    kw_block_cache_stats_json(bc, &js);
    kw_buf_push(&js, '\0');
    CHECK(strstr(js.data, "\"data_reads\":\"cached\",\"verified_blocks\":1}") != NULL);
    kw_buf_free(&js);
    kw_block_cache_set_data_reads(bc, KW_DATA_READS_IN_PLACE);
    CHECK(get_i(t, 9, true, &info, &err) == KIWI_OK && info.data_cache == KW_CACHE_MAPPED);
    CHECK_EQ_U64(stats(bc->data).hits, 1);
    CHECK_EQ_U64(stats(bc->data).entries, 1);
    kw_table_unref(t);
    CHECK_EQ_U64(stats(bc->data).entries, 0);
    kw_block_cache_destroy(bc);
    free(err);
    free(path);
    ctest_rmtree(dir);
}

int main(void)
{
    RUN(test_table_data_hits);
    RUN(test_table_fill_cache_false);
    RUN(test_table_corrupt_never_cached);
    RUN(test_table_in_place_checked_once);
    RUN(test_table_data_reads_switch);
    RUN(test_table_get_resident);
    return ctest_summary();
}
