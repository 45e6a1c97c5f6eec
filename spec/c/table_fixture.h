/*
 * table_fixture.h: what the table-through-a-cache tests share (test_table_cache.c,
 * test_table_data.c): a table of NKEYS keys with known values, gets and scans that check them,
 * cache stats, byte flips, and block caches in either data_reads mode.
 */
#ifndef KIWI_TABLE_FIXTURE_H
#define KIWI_TABLE_FIXTURE_H

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "coding.h"
#include "ctest.h"
#include "dbformat.h"
#include "env.h"
#include "table.h"

/* ---- a table of NKEYS keys ------------------------------------------------------------------- */

#define NKEYS 20000

static inline void ukey(char *buf, int i)
{
    snprintf(buf, 16, "key%08d", i * 2);
}

/* A table of NKEYS keys (value "v<i>" padded to 40 bytes) in dir; returns its path. */
static inline char *make_table(const char *dir)
{
    char *path = kw_join_path(dir, "000042.sst");
    kw_table_builder *b;
    char *err = NULL;
    CHECK(kw_table_builder_create(path, NULL, &b, &err) == KIWI_OK);
    for (int i = 0; i < NKEYS; i++) {
        char k[16], v[41];
        ukey(k, i);
        snprintf(v, sizeof v, "v%-39d", i);
        kw_buf ik;
        kw_buf_init(&ik);
        kw_ikey_append(&ik, kw_slice_make(k, strlen(k)), (uint64_t)i + 1, KW_TYPE_VALUE);
        kw_table_builder_add(b, kw_slice_make(ik.data, ik.len), kw_slice_make(v, 40));
        kw_buf_free(&ik);
    }
    CHECK(kw_table_builder_finish(b, NULL, &err) == KIWI_OK);
    free(err);
    return path;
}

/* get_ex of key i: status, and on success the value checked. */
static inline kiwi_status get_i(kw_table *t, int i, bool fill, kw_table_lookup_info *info, char **err)
{
    char k[16], want[41];
    ukey(k, i);
    snprintf(want, sizeof want, "v%-39d", i);
    kw_lookup r;
    kw_buf v;
    kw_buf_init(&v);
    kiwi_status st = kw_table_get_ex(t, kw_slice_make(k, strlen(k)), KW_MAX_SEQ, fill, &r, &v,
                                     info, err);
    if (st == KIWI_OK)
        CHECK(r == KW_LOOKUP_FOUND && v.len == 40 && memcmp(v.data, want, 40) == 0);
    kw_buf_free(&v);
    return st;
}

static inline void free_value(void *v)
{
    free(v);
}

/* Inserts a dummy value of the given charge, and releases it; true if kept. */
static inline bool put(kw_cache *c, uint64_t file, uint64_t off, size_t charge)
{
    void *v = malloc(8);
    kw_cache_handle *h = kw_cache_insert(c, file, off, v, charge, free_value);
    if (h == NULL)
        free(v);
    kw_cache_release(c, h);
    return h != NULL;
}

static inline kw_cache_stats stats(const kw_cache *c)
{
    kw_cache_stats s;
    kw_cache_get_stats(c, &s);
    return s;
}

static inline void flip_byte(const char *path, uint64_t off)
{
    FILE *f = fopen(path, "r+b");
    fseek(f, (long)off, SEEK_SET);
    int ch = fgetc(f);
    fseek(f, (long)off, SEEK_SET);
    fputc(ch ^ 0x40, f);
    fclose(f);
}

/* The footer's index handle. */
static inline void index_handle(const char *path, uint64_t *off, uint64_t *size)
{
    char *data;
    size_t len;
    CHECK(kw_read_file(path, &data, &len, NULL) == KIWI_OK);
    *off = kw_decode_fixed64(data + len - 64 + 32);
    *size = kw_decode_fixed64(data + len - 64 + 40);
    free(data);
}

/* Scans the table; the number of entries (each value checked) and the iterator's status. */
static inline size_t scan_st(kw_table *t, bool fill, kiwi_status *st)
{
    kw_iter *it = kw_table_iter_ex(t, fill);
    size_t n = 0;
    for (kw_iter_seek_to_first(it); kw_iter_valid(it); kw_iter_next(it), n++) {
        char want[41];
        snprintf(want, sizeof want, "v%-39zu", n);
        kw_slice got = kw_iter_value(it);
        if (got.size != 40 || memcmp(got.data, want, 40) != 0)
            break;
    }
    *st = kw_iter_status(it, NULL);
    kw_iter_destroy(it);
    return n;
}

static inline size_t scan(kw_table *t, bool fill)
{
    kiwi_status st;
    size_t n = scan_st(t, fill, &st);
    CHECK(st == KIWI_OK);
    return n;
}

/* A block cache whose tables read data blocks through the data tier. */
static inline kw_block_cache *cached_cache(size_t data, size_t index, size_t bloom)
{
    kw_block_cache *bc = kw_block_cache_create(data, index, bloom);
    kw_block_cache_set_data_reads(bc, KW_DATA_READS_CACHED);
    return bc;
}

/* Either data_reads mode (mode 0: in place, 1: cached). */
static inline kw_block_cache *mode_cache(int mode, size_t data, size_t index, size_t bloom)
{
    return mode == 1 ? cached_cache(data, index, bloom) : kw_block_cache_create(data, index, bloom);
}

#endif /* KIWI_TABLE_FIXTURE_H */
