/*
 * bench_leveldb.c: the LevelDB adapter of kiwi_bench, through LevelDB's C API (leveldb/c.h). It
 * owns the mapping of the bench's equal settings onto LevelDB's options. Compiled in only with
 * -DKIWI_BENCH_LEVELDB (the Makefile passes it when the header exists, and links -lleveldb).
 */
#include "bench.h"

#ifdef KIWI_BENCH_LEVELDB

#include <leveldb/c.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    leveldb_t *db;
    leveldb_options_t *opts;
    leveldb_filterpolicy_t *bloom;
    leveldb_cache_t *cache;
    leveldb_readoptions_t *ro;
    leveldb_writeoptions_t *wo, *wo_sync;
} ldb;

static void check(char *err, const char *what, const char *k, size_t klen)
{
    if (err)
        bench_die("leveldb: %s: key %.*s: %s", what, (int)klen, k, err);
}

static void l_version(char *out, size_t cap)
{
    snprintf(out, cap, "LevelDB %d.%d", leveldb_major_version(), leveldb_minor_version());
}

static void l_settings(const config *c, char *out, size_t cap)
{
    snprintf(out, cap,
             "`write_buffer_size=%.0f`, `block_size=%ld`, `compression=none`, "
             "`filter_policy=bloom(%d)`, `block_cache=LRU(%.0f)`, `max_open_files=1000` "
             "(default: every table open, its index and filter in memory), "
             "`verify_checksums=true`, `fill_cache=true`",
             c->write_buffer_mb * 1048576.0, c->block_size, c->bloom_bits,
             c->cache_mb * 1048576.0);
}

static void *l_open(const config *c, const char *dir)
{
    ldb *d = calloc(1, sizeof *d);
    char *err = NULL;
    if (!d)
        bench_die("out of memory");
    d->opts = leveldb_options_create();
    d->bloom = leveldb_filterpolicy_create_bloom(c->bloom_bits);
    d->cache = leveldb_cache_create_lru((size_t)(c->cache_mb * 1048576.0));
    leveldb_options_set_create_if_missing(d->opts, 1);
    leveldb_options_set_compression(d->opts, leveldb_no_compression);
    leveldb_options_set_block_size(d->opts, (size_t)c->block_size);
    leveldb_options_set_filter_policy(d->opts, d->bloom);
    leveldb_options_set_cache(d->opts, d->cache);
    leveldb_options_set_write_buffer_size(d->opts, (size_t)(c->write_buffer_mb * 1048576.0));
    d->ro = leveldb_readoptions_create();
    leveldb_readoptions_set_verify_checksums(d->ro, 1);
    leveldb_readoptions_set_fill_cache(d->ro, 1);
    d->wo = leveldb_writeoptions_create();
    d->wo_sync = leveldb_writeoptions_create();
    leveldb_writeoptions_set_sync(d->wo_sync, 1);
    d->db = leveldb_open(d->opts, dir, &err);
    if (err)
        bench_die("leveldb_open %s: %s", dir, err);
    return d;
}

static void l_close(void *db)
{
    ldb *d = db;
    leveldb_close(d->db);
    leveldb_options_destroy(d->opts);
    leveldb_filterpolicy_destroy(d->bloom);
    leveldb_cache_destroy(d->cache);
    leveldb_readoptions_destroy(d->ro);
    leveldb_writeoptions_destroy(d->wo);
    leveldb_writeoptions_destroy(d->wo_sync);
    free(d);
}

static void l_put(void *db, bool sync, const char *k, size_t klen, const char *v, size_t vlen)
{
    ldb *d = db;
    char *err = NULL;
    leveldb_put(d->db, sync ? d->wo_sync : d->wo, k, klen, v, vlen, &err);
    check(err, "leveldb_put", k, klen);
}

static void l_del(void *db, const char *k, size_t klen)
{
    ldb *d = db;
    char *err = NULL;
    leveldb_delete(d->db, d->wo, k, klen, &err);
    check(err, "leveldb_delete", k, klen);
}

static bool l_get(void *db, const char *k, size_t klen, const char **val, size_t *vlen,
                  void **hold)
{
    ldb *d = db;
    char *err = NULL;
    char *v = leveldb_get(d->db, d->ro, k, klen, vlen, &err);
    check(err, "leveldb_get", k, klen);
    *val = v;
    *hold = v;
    return v != NULL;
}

static void l_release(void *hold)
{
    leveldb_free(hold);
}

static void *l_batch_create(void)
{
    return leveldb_writebatch_create();
}

static void l_batch_put(void *b, const char *k, size_t klen, const char *v, size_t vlen)
{
    leveldb_writebatch_put(b, k, klen, v, vlen);
}

static void l_batch_write(void *db, void *b)
{
    ldb *d = db;
    char *err = NULL;
    leveldb_write(d->db, d->wo, b, &err);
    check(err, "leveldb_write", "(batch)", 7);
}

static void l_batch_clear(void *b)
{
    leveldb_writebatch_clear(b);
}

static void l_batch_destroy(void *b)
{
    leveldb_writebatch_destroy(b);
}

static void *l_iter_create(void *db)
{
    ldb *d = db;
    return leveldb_create_iterator(d->db, d->ro);
}

static void l_iter_seek(void *it, const char *k, size_t klen)
{
    leveldb_iter_seek(it, k, klen);
}

static void l_iter_seek_first(void *it)
{
    leveldb_iter_seek_to_first(it);
}

static void l_iter_next(void *it)
{
    leveldb_iter_next(it);
}

static bool l_iter_valid(void *it)
{
    return leveldb_iter_valid(it) != 0;
}

static const char *l_iter_key(void *it, size_t *len)
{
    return leveldb_iter_key(it, len);
}

static const char *l_iter_value(void *it, size_t *len)
{
    return leveldb_iter_value(it, len);
}

static void l_iter_check(void *it, const char *what)
{
    char *err = NULL;
    leveldb_iter_get_error(it, &err);
    if (err)
        bench_die("%s on leveldb: iterator error: %s", what, err);
}

static void l_iter_destroy(void *it)
{
    leveldb_iter_destroy(it);
}

/* LevelDB's C API has no flush. DBImpl::CompactRange always compacts the memtable first and then
 * only the files overlapping the range: a range past every key the bench writes ("~" sorts after
 * the digits) therefore flushes the memtable, waits for it, and compacts nothing else. */
static void l_flush(void *db)
{
    leveldb_compact_range(((ldb *)db)->db, "~", 1, "~", 1);
}

static void l_compact_all(void *db)
{
    leveldb_compact_range(((ldb *)db)->db, NULL, 0, NULL, 0);
}

static void *l_snap(void *db)
{
    return NULL;
}

/* The tree's shape: files per level, up to the deepest non-empty one. */
static void l_describe(void *db, void *snap, int counters, char *out, size_t cap)
{
    ldb *d = db;
    char shape[128] = "", name[64];
    long files[7];
    int deepest = 0;
    for (int level = 0; level < 7; level++) {
        snprintf(name, sizeof name, "leveldb.num-files-at-level%d", level);
        char *v = leveldb_property_value(d->db, name);
        files[level] = v ? strtol(v, NULL, 10) : -1;
        deepest = files[level] > 0 ? level : deepest;
        leveldb_free(v);
    }
    for (int level = 0; level <= deepest; level++) {
        size_t used = strlen(shape);
        snprintf(shape + used, sizeof shape - used, "%s%ld", level ? "/" : "", files[level]);
    }
    note_append(out, "files per level %s", shape);
}

const engine leveldb_engine = {
    "leveldb",      l_version,         l_settings,        l_open,         l_close,
    l_put,          l_del,             l_get,             l_release,      l_batch_create,
    l_batch_put,    l_batch_write,     l_batch_clear,     l_batch_destroy, l_iter_create,
    l_iter_seek,    l_iter_seek_first, l_iter_next,       l_iter_valid,   l_iter_key,
    l_iter_value,   l_iter_check,      l_iter_destroy,    l_flush,        l_compact_all,
    l_snap,         l_describe,
};

#else
typedef int leveldb_not_built; /* ISO C wants a declaration in every translation unit */
#endif /* KIWI_BENCH_LEVELDB */
