/*
 * bench_rocksdb.c: the RocksDB adapter of kiwi_bench, through RocksDB's C API (rocksdb/c.h). It
 * owns the mapping of the bench's equal settings onto RocksDB's options; everything not listed
 * in r_settings is RocksDB's default. Compiled in only with -DKIWI_BENCH_ROCKSDB (the Makefile
 * passes it when the header exists, and links -lrocksdb).
 */
#include "bench.h"

#ifdef KIWI_BENCH_ROCKSDB

#include <rocksdb/c.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    rocksdb_t *db;
    rocksdb_options_t *opts;
    rocksdb_block_based_table_options_t *table;
    rocksdb_cache_t *cache;
    rocksdb_readoptions_t *ro;
    rocksdb_writeoptions_t *wo, *wo_sync;
} rdb;

static void check(char *err, const char *what, const char *k, size_t klen)
{
    if (err)
        bench_die("rocksdb: %s: key %.*s: %s", what, (int)klen, k, err);
}

static void r_version(char *out, size_t cap)
{
    /* The C API has no version call (rocksdb/version.h is C++): ask the package. */
    char v[64];
    first_line("dpkg-query -W -f='${Version}' librocksdb-dev 2>/dev/null", v, sizeof v);
    snprintf(out, cap, "RocksDB %s (librocksdb-dev)", v[0] ? v : "?");
}

static void r_settings(const config *c, char *out, size_t cap)
{
    snprintf(out, cap,
             "`write_buffer_size=%.0f`, block-based table: `block_size=%ld`, "
             "`filter_policy=bloom_full(%d)`, `block_cache=LRU(%.0f)` "
             "(`cache_index_and_filter_blocks=false`, the default: index and filter in the "
             "table readers), `compression=none`, `verify_checksums=true` (default), "
             "`fill_cache=true`, `Get` through `rocksdb_get_pinned` (no copy of the value); "
             "everything else RocksDB's defaults",
             c->write_buffer_mb * 1048576.0, c->block_size, c->bloom_bits,
             c->cache_mb * 1048576.0);
}

static void *r_open(const config *c, const char *dir)
{
    rdb *d = calloc(1, sizeof *d);
    char *err = NULL;
    if (!d)
        bench_die("out of memory");
    d->opts = rocksdb_options_create();
    d->table = rocksdb_block_based_options_create();
    d->cache = rocksdb_cache_create_lru((size_t)(c->cache_mb * 1048576.0));
    rocksdb_block_based_options_set_block_size(d->table, (size_t)c->block_size);
    rocksdb_block_based_options_set_filter_policy(d->table, /* the table options own it */
                                                  rocksdb_filterpolicy_create_bloom_full(
                                                      (double)c->bloom_bits));
    rocksdb_block_based_options_set_block_cache(d->table, d->cache);
    rocksdb_options_set_block_based_table_factory(d->opts, d->table);
    rocksdb_options_set_create_if_missing(d->opts, 1);
    rocksdb_options_set_compression(d->opts, rocksdb_no_compression);
    rocksdb_options_set_write_buffer_size(d->opts, (size_t)(c->write_buffer_mb * 1048576.0));
    d->ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_verify_checksums(d->ro, 1);
    rocksdb_readoptions_set_fill_cache(d->ro, 1);
    d->wo = rocksdb_writeoptions_create();
    d->wo_sync = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(d->wo_sync, 1);
    d->db = rocksdb_open(d->opts, dir, &err);
    if (err)
        bench_die("rocksdb_open %s: %s", dir, err);
    return d;
}

static void r_close(void *db)
{
    rdb *d = db;
    rocksdb_close(d->db);
    rocksdb_options_destroy(d->opts);
    rocksdb_block_based_options_destroy(d->table);
    rocksdb_cache_destroy(d->cache);
    rocksdb_readoptions_destroy(d->ro);
    rocksdb_writeoptions_destroy(d->wo);
    rocksdb_writeoptions_destroy(d->wo_sync);
    free(d);
}

static void r_put(void *db, bool sync, const char *k, size_t klen, const char *v, size_t vlen)
{
    rdb *d = db;
    char *err = NULL;
    rocksdb_put(d->db, sync ? d->wo_sync : d->wo, k, klen, v, vlen, &err);
    check(err, "rocksdb_put", k, klen);
}

static void r_del(void *db, const char *k, size_t klen)
{
    rdb *d = db;
    char *err = NULL;
    rocksdb_delete(d->db, d->wo, k, klen, &err);
    check(err, "rocksdb_delete", k, klen);
}

static bool r_get(void *db, const char *k, size_t klen, const char **val, size_t *vlen,
                  void **hold)
{
    rdb *d = db;
    char *err = NULL;
    rocksdb_pinnableslice_t *p = rocksdb_get_pinned(d->db, d->ro, k, klen, &err);
    check(err, "rocksdb_get_pinned", k, klen);
    if (!p)
        return false;
    *val = rocksdb_pinnableslice_value(p, vlen);
    *hold = p;
    return true;
}

static void r_release(void *hold)
{
    rocksdb_pinnableslice_destroy(hold);
}

static void *r_batch_create(void)
{
    return rocksdb_writebatch_create();
}

static void r_batch_put(void *b, const char *k, size_t klen, const char *v, size_t vlen)
{
    rocksdb_writebatch_put(b, k, klen, v, vlen);
}

static void r_batch_write(void *db, void *b)
{
    rdb *d = db;
    char *err = NULL;
    rocksdb_write(d->db, d->wo, b, &err);
    check(err, "rocksdb_write", "(batch)", 7);
}

static void r_batch_clear(void *b)
{
    rocksdb_writebatch_clear(b);
}

static void r_batch_destroy(void *b)
{
    rocksdb_writebatch_destroy(b);
}

static void *r_iter_create(void *db)
{
    rdb *d = db;
    return rocksdb_create_iterator(d->db, d->ro);
}

static void r_iter_seek(void *it, const char *k, size_t klen)
{
    rocksdb_iter_seek(it, k, klen);
}

static void r_iter_seek_first(void *it)
{
    rocksdb_iter_seek_to_first(it);
}

static void r_iter_next(void *it)
{
    rocksdb_iter_next(it);
}

static bool r_iter_valid(void *it)
{
    return rocksdb_iter_valid(it) != 0;
}

static const char *r_iter_key(void *it, size_t *len)
{
    return rocksdb_iter_key(it, len);
}

static const char *r_iter_value(void *it, size_t *len)
{
    return rocksdb_iter_value(it, len);
}

static void r_iter_check(void *it, const char *what)
{
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    if (err)
        bench_die("%s on rocksdb: iterator error: %s", what, err);
}

static void r_iter_destroy(void *it)
{
    rocksdb_iter_destroy(it);
}

static void r_flush(void *db)
{
    rdb *d = db;
    char *err = NULL;
    rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
    rocksdb_flushoptions_set_wait(fo, 1);
    rocksdb_flush(d->db, fo, &err);
    rocksdb_flushoptions_destroy(fo);
    check(err, "rocksdb_flush", "", 0);
}

static void r_compact_all(void *db)
{
    rocksdb_compact_range(((rdb *)db)->db, NULL, 0, NULL, 0);
}

static void *r_snap(void *db)
{
    return NULL;
}

static long r_property(rdb *d, const char *name)
{
    char *v = rocksdb_property_value(d->db, name);
    long x = v ? strtol(v, NULL, 10) : -1;
    rocksdb_free(v);
    return x;
}

/* The tree's shape (files per level, up to the deepest non-empty one) and, after point reads,
 * the memory of the table readers (index and filter blocks, outside the block cache). */
static void r_describe(void *db, void *snap, int counters, char *out, size_t cap)
{
    rdb *d = db;
    char shape[128] = "", name[64];
    long files[7];
    int deepest = 0;
    for (int level = 0; level < 7; level++) {
        snprintf(name, sizeof name, "rocksdb.num-files-at-level%d", level);
        files[level] = r_property(d, name);
        deepest = files[level] > 0 ? level : deepest;
    }
    for (int level = 0; level <= deepest; level++) {
        size_t used = strlen(shape);
        snprintf(shape + used, sizeof shape - used, "%s%ld", level ? "/" : "", files[level]);
    }
    if (counters == 2)
        note_append(out, "table readers %.1f MiB in memory",
                    (double)r_property(d, "rocksdb.estimate-table-readers-mem") / 1048576.0);
    note_append(out, "files per level %s", shape);
}

const engine rocksdb_engine = {
    "rocksdb",      r_version,         r_settings,        r_open,         r_close,
    r_put,          r_del,             r_get,             r_release,      r_batch_create,
    r_batch_put,    r_batch_write,     r_batch_clear,     r_batch_destroy, r_iter_create,
    r_iter_seek,    r_iter_seek_first, r_iter_next,       r_iter_valid,   r_iter_key,
    r_iter_value,   r_iter_check,      r_iter_destroy,    r_flush,        r_compact_all,
    r_snap,         r_describe,
};

#else
typedef int rocksdb_not_built; /* ISO C wants a declaration in every translation unit */
#endif /* KIWI_BENCH_ROCKSDB */
