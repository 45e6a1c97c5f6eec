/*
 * db_property.c: introspection as JSON (kiwi_property, kiwi_trace), live settings
 * (kiwi_set_option) and manual compaction's entry point.
 *
 * Every key or value inside the JSON is written with kw_json_string (json.h), so binary bytes
 * survive as \u00XX escapes. Entry listings are capped at ENTRY_LIMIT with "truncated": true.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "compaction.h"
#include "db.h"
#include "dbformat.h"
#include "env.h"
#include "json.h"

#define ENTRY_LIMIT 10000

#define LOAD(f) ((unsigned long long)atomic_load(&db->stats.f))
#define LOAD_DB(f) ((unsigned long long)atomic_load(&db->f)) /* counters kept outside stats */

static void stats_json(kiwi_db *db, kw_buf *b)
{
    kw_super *s = kw_super_acquire(db);
    pthread_mutex_lock(&db->mu);
    size_t njobs = db->njobs, nsnap = db->nsnapshots;
    uint32_t running = db->compactions_running;
    kiwi_options opts = db->opts;
    uint64_t last_seq = db->last_seq, wal_number = db->wal_number;
    bool stalled = db->stalled;
    const char *bg = db->bg_status == KIWI_OK ? NULL : db->bg_errmsg;
    char *bgcopy = bg ? kw_strdup(bg) : NULL;
    pthread_mutex_unlock(&db->mu);

    uint64_t mem_bytes = kw_memtable_approx_bytes(s->mem), mem_entries = kw_memtable_entries(s->mem);
    uint64_t imm_bytes = 0, imm_entries = 0;
    for (size_t i = 0; i < s->nimm; i++) {
        imm_bytes += kw_memtable_approx_bytes(s->imm[i]);
        imm_entries += kw_memtable_entries(s->imm[i]);
    }
    uint64_t disk = 0, files = 0;
    kw_buf_printf(b, "{\"puts\":%llu,\"deletes\":%llu,\"batches\":%llu,\"gets\":%llu,"
                     "\"get_hits\":%llu,\"get_misses\":%llu,\"user_bytes_written\":%llu,"
                     "\"wal_bytes\":%llu,\"wal_writes\":%llu,\"wal_syncs\":%llu,"
                     "\"write_groups\":%llu,\"gathers\":%llu,\"gather_timeouts\":%llu,"
                     "\"gather_handoffs\":%llu,\"gather_micros\":%llu,"
                     "\"sync_waits_yielded\":%llu,\"sync_waits_blocked\":%llu,"
                     "\"sync_yield_backoffs\":%llu,"
                     "\"flushes\":%llu,\"flush_bytes\":%llu,"
                     "\"flush_micros\":%llu,\"flush_entries\":%llu,\"rotations\":%llu,"
                     "\"stalls\":%llu,\"stall_micros\":%llu,\"stalled\":%s,"
                     "\"iterators_created\":%llu,\"snapshots_created\":%llu,"
                     "\"recovered_records\":%llu,\"recovered_torn_bytes\":%llu,"
                     "\"recovered_skipped_records\":%llu,\"memtable_hits\":%llu,"
                     "\"sstable_reads\":%llu,\"bloom_negatives\":%llu,"
                     "\"compactions\":%llu,\"compaction_bytes_read\":%llu,"
                     "\"compaction_bytes_written\":%llu,\"compaction_micros\":%llu,"
                     "\"compaction_dropped_versions\":%llu,"
                     "\"compaction_dropped_tombstones\":%llu,\"trivial_moves\":%llu,"
                     "\"manual_compactions\":%llu,\"read_compactions\":%llu,"
                     "\"slowdowns\":%llu,\"slowdown_micros\":%llu,",
                  LOAD(puts), LOAD(deletes), LOAD(batches), LOAD(gets), LOAD(get_hits),
                  LOAD(get_misses), LOAD(user_bytes_written), LOAD(wal_bytes), LOAD(wal_writes),
                  LOAD(wal_syncs), LOAD(write_groups), LOAD_DB(gathers),
                  LOAD_DB(gather_timeouts), LOAD_DB(gather_handoffs), LOAD_DB(gather_micros),
                  LOAD_DB(sync_waits_yielded), LOAD_DB(sync_waits_blocked),
                  LOAD_DB(sync_yield_backoffs),
                  LOAD(flushes), LOAD(flush_bytes),
                  LOAD(flush_micros), LOAD(flush_entries), LOAD(rotations), LOAD(stalls),
                  LOAD(stall_micros), stalled ? "true" : "false", LOAD(iterators_created),
                  LOAD(snapshots_created), LOAD(recovered_records), LOAD(recovered_torn_bytes),
                  LOAD(recovered_skipped), LOAD(memtable_hits), LOAD(sstable_reads),
                  LOAD(bloom_negatives), LOAD(compactions), LOAD(compaction_bytes_read),
                  LOAD(compaction_bytes_written), LOAD(compaction_micros),
                  LOAD(compaction_dropped_versions), LOAD(compaction_dropped_tombstones),
                  LOAD(trivial_moves), LOAD(manual_compactions), LOAD(read_compactions),
                  LOAD(slowdowns),
                  LOAD(slowdown_micros));
    kw_buf_printf(b, "\"last_sequence\":%llu,\"visible_sequence\":%llu,\"wal_number\":%llu,"
                     "\"memtable_bytes\":%llu,\"memtable_entries\":%llu,"
                     "\"immutable_memtables\":%zu,\"immutable_bytes\":%llu,"
                     "\"immutable_entries\":%llu,\"snapshots\":%zu,\"uptime_micros\":%llu,"
                     "\"levels\":[",
                  (unsigned long long)last_seq, (unsigned long long)atomic_load(&db->visible_seq),
                  (unsigned long long)wal_number, (unsigned long long)mem_bytes,
                  (unsigned long long)mem_entries, njobs, (unsigned long long)imm_bytes,
                  (unsigned long long)imm_entries, nsnap,
                  (unsigned long long)(kw_now_micros() - db->open_micros));
    uint64_t deepest = 0;
    for (int l = 0; l <= (int)opts.max_levels && l < KW_MAX_LEVELS; l++) {
        uint64_t bytes = kw_version_level_bytes(s->version, l);
        disk += bytes;
        files += s->version->nfiles[l];
        if (bytes)
            deepest = bytes;
        kw_buf_printf(b, "%s{\"level\":%d,\"files\":%zu,\"bytes\":%llu,\"score\":%.3f}",
                      l ? "," : "", l, s->version->nfiles[l], (unsigned long long)bytes,
                      kw_compaction_score(s->version, &opts, l));
    }
    uint64_t user = atomic_load(&db->stats.user_bytes_written);
    uint64_t written = atomic_load(&db->stats.wal_bytes) + atomic_load(&db->stats.flush_bytes) +
                       atomic_load(&db->stats.compaction_bytes_written);
    uint64_t uncharged = 0;
    for (int l = 0; l < KW_MAX_LEVELS; l++)
        for (size_t i = 0; i < s->version->nfiles[l]; i++)
            uncharged += kw_table_uncharged_bytes(s->version->files[l][i]->table);
    kw_cache_stats cd, ci, cb;
    kw_cache_get_stats(db->cache->data, &cd);
    kw_cache_get_stats(db->cache->index, &ci);
    kw_cache_get_stats(db->cache->bloom, &cb);
    uint64_t mem_total = mem_bytes + imm_bytes;
    uint64_t pool = kw_arena_pool_bytes(); /* process-wide: idle memtable blocks (arena.h) */
    uint64_t total = mem_total + cd.usage + ci.usage + cb.usage + uncharged + pool;
    kw_buf_printf(b, "],\"memory\":{\"memtables\":%llu,\"block_cache_data\":%llu,"
                     "\"block_cache_index\":%llu,\"block_cache_bloom\":%llu,"
                     "\"tables_uncharged\":%llu,\"memtable_pool\":%llu,\"total\":%llu},"
                     "\"block_cache\":",
                  (unsigned long long)mem_total, (unsigned long long)cd.usage,
                  (unsigned long long)ci.usage, (unsigned long long)cb.usage,
                  (unsigned long long)uncharged, (unsigned long long)pool,
                  (unsigned long long)total);
    kw_block_cache_stats_json(db->cache, b);
    kw_buf_printf(b, ",\"sstables\":%llu,\"sstable_bytes\":%llu,\"compactions_running\":%u,"
                     "\"write_amplification\":%.3f,\"space_amplification\":%.3f,"
                     "\"background_error\":",
                  (unsigned long long)files, (unsigned long long)disk, running,
                  user ? (double)written / (double)user : 0.0,
                  deepest ? (double)disk / (double)deepest : 0.0);
    if (bgcopy)
        kw_json_string(b, bgcopy, strlen(bgcopy));
    else
        kw_buf_printf(b, "null");
    kw_buf_push(b, '}');
    free(bgcopy);
    kw_super_release(s);
}

static void file_json(kw_buf *b, const kw_file_meta *m, int level)
{
    kw_slice sm = kw_slice_make(m->smallest, m->smallest_len);
    kw_slice lg = kw_slice_make(m->largest, m->largest_len);
    kw_buf_printf(b, "{\"id\":%llu,\"level\":%d,\"size\":%llu,\"num_entries\":%llu,"
                     "\"tombstones\":%llu,\"min_seq\":%llu,\"max_seq\":%llu,\"smallest\":",
                  (unsigned long long)m->number, level, (unsigned long long)m->size,
                  (unsigned long long)m->entries, (unsigned long long)m->tombstones,
                  (unsigned long long)m->min_seq, (unsigned long long)m->max_seq);
    kw_slice su = kw_ikey_user(sm), lu = kw_ikey_user(lg);
    kw_json_string(b, su.data, su.size);
    kw_buf_printf(b, ",\"largest\":");
    kw_json_string(b, lu.data, lu.size);
    const kw_table_props *p = m->table ? kw_table_properties(m->table) : NULL;
    if (p)
        kw_buf_printf(b, ",\"data_blocks\":%llu,\"index_bytes\":%llu,\"filter_bytes\":%llu",
                      (unsigned long long)p->data_blocks, (unsigned long long)p->index_size,
                      (unsigned long long)p->filter_size);
    kw_buf_push(b, '}');
}

static void levels_json(kiwi_db *db, kw_buf *b)
{
    kw_super *s = kw_super_acquire(db);
    kw_buf_push(b, '[');
    for (int l = 0; l <= (int)db->opts.max_levels && l < KW_MAX_LEVELS; l++) {
        kw_buf_printf(b, "%s{\"level\":%d,\"files\":[", l ? "," : "", l);
        for (size_t i = 0; i < s->version->nfiles[l]; i++) {
            if (i)
                kw_buf_push(b, ',');
            file_json(b, s->version->files[l][i], l);
        }
        kw_buf_printf(b, "]}");
    }
    kw_buf_push(b, ']');
    kw_super_release(s);
}

static void memtable_summary(kw_buf *b, kw_memtable *m, const char *state)
{
    kw_buf_printf(b, "{\"id\":%llu,\"state\":\"%s\",\"num_entries\":%llu,\"tombstones\":%llu,"
                     "\"bytes\":%llu,\"user_bytes\":%llu}",
                  (unsigned long long)kw_memtable_id(m), state,
                  (unsigned long long)kw_memtable_entries(m),
                  (unsigned long long)kw_memtable_tombstones(m),
                  (unsigned long long)kw_memtable_approx_bytes(m),
                  (unsigned long long)kw_memtable_user_bytes(m));
}

static void memtables_json(kiwi_db *db, kw_buf *b)
{
    kw_super *s = kw_super_acquire(db);
    kw_buf_push(b, '[');
    memtable_summary(b, s->mem, "active");
    for (size_t i = 0; i < s->nimm; i++) {
        kw_buf_push(b, ',');
        memtable_summary(b, s->imm[i], "immutable");
    }
    kw_buf_push(b, ']');
    kw_super_release(s);
}

/* Lists every entry of an internal iterator: key, seq, type, value. */
static void entries_json(kw_buf *b, kw_iter *it)
{
    size_t n = 0;
    kw_buf_printf(b, "\"entries\":[");
    for (kw_iter_seek_to_first(it); kw_iter_valid(it) && n < ENTRY_LIMIT; kw_iter_next(it), n++) {
        kw_slice k = kw_iter_key(it);
        if (k.size < KW_TRAILER_SIZE)
            break;
        kw_slice u = kw_ikey_user(k), v = kw_iter_value(it);
        bool del = kw_ikey_type(k) == KW_TYPE_DELETE;
        kw_buf_printf(b, "%s{\"key\":", n ? "," : "");
        kw_json_string(b, u.data, u.size);
        kw_buf_printf(b, ",\"seq\":%llu,\"type\":\"%s\"", (unsigned long long)kw_ikey_seq(k),
                      del ? "delete" : "put");
        if (!del) {
            kw_buf_printf(b, ",\"value\":");
            kw_json_string(b, v.data, v.size);
        }
        kw_buf_push(b, '}');
    }
    bool truncated = kw_iter_valid(it);
    char *err = NULL;
    kiwi_status st = kw_iter_status(it, &err);
    kw_buf_printf(b, "],\"truncated\":%s,\"error\":", truncated ? "true" : "false");
    if (st != KIWI_OK && err)
        kw_json_string(b, err, strlen(err));
    else
        kw_buf_printf(b, "null");
    free(err);
}

static bool memtable_json(kiwi_db *db, uint64_t id, kw_buf *b)
{
    kw_super *s = kw_super_acquire(db);
    kw_memtable *m = NULL;
    const char *state = "active";
    if (kw_memtable_id(s->mem) == id)
        m = s->mem;
    for (size_t i = 0; m == NULL && i < s->nimm; i++)
        if (kw_memtable_id(s->imm[i]) == id) {
            m = s->imm[i];
            state = "immutable";
        }
    if (m) {
        memtable_summary(b, m, state);
        b->len--; /* reopen the object */
        kw_buf_push(b, ',');
        kw_iter *it = kw_memtable_iter(m);
        entries_json(b, it);
        kw_iter_destroy(it);
        kw_buf_push(b, '}');
    }
    kw_super_release(s);
    return m != NULL;
}

static bool sstable_json(kiwi_db *db, uint64_t id, kw_buf *b)
{
    kw_super *s = kw_super_acquire(db);
    bool found = false;
    for (int l = 0; l < KW_MAX_LEVELS && !found; l++) {
        for (size_t i = 0; i < s->version->nfiles[l] && !found; i++) {
            kw_file_meta *m = s->version->files[l][i];
            if (m->number != id)
                continue;
            found = true;
            file_json(b, m, l);
            b->len--;
            kw_buf_printf(b, ",\"path\":");
            kw_json_string(b, m->path, strlen(m->path));
            kw_buf_push(b, ',');
            kw_iter *it = kw_table_iter(m->table);
            entries_json(b, it);
            kw_iter_destroy(it);
            kw_buf_push(b, '}');
        }
    }
    kw_super_release(s);
    return found;
}

static bool parse_id(const char *s, uint64_t *id)
{
    char *end = NULL;
    if (*s < '0' || *s > '9')
        return false;
    *id = strtoull(s, &end, 10);
    return *end == '\0';
}

char *kiwi_property(kiwi_db *db, const char *name)
{
    if (db == NULL || name == NULL)
        return NULL;
    kw_buf b;
    kw_buf_init(&b);
    uint64_t id = 0;
    bool ok = true;
    if (strcmp(name, "stats") == 0)
        stats_json(db, &b);
    else if (strcmp(name, "levels") == 0)
        levels_json(db, &b);
    else if (strcmp(name, "memtables") == 0)
        memtables_json(db, &b);
    else if (strcmp(name, "options") == 0) {
        pthread_mutex_lock(&db->mu);
        kw_options_to_json(&db->opts, &b);
        pthread_mutex_unlock(&db->mu);
    } else if (strncmp(name, "memtable:", 9) == 0 && parse_id(name + 9, &id))
        ok = memtable_json(db, id, &b);
    else if (strncmp(name, "sstable:", 8) == 0 && parse_id(name + 8, &id))
        ok = sstable_json(db, id, &b);
    else
        ok = false;
    if (!ok) {
        kw_buf_free(&b);
        return NULL;
    }
    kw_buf_push(&b, '\0');
    return b.data;
}

/* ---- trace ------------------------------------------------------------------------------- */

static const char *lookup_name(kw_lookup r)
{
    return r == KW_LOOKUP_FOUND ? "found" : (r == KW_LOOKUP_DELETED ? "deleted" : "miss");
}

static bool trace_memtable(kw_buf *b, kw_memtable *m, const char *layer, kw_slice key,
                           uint64_t seq, kw_slice *value, kw_lookup *res)
{
    *res = kw_memtable_get(m, key, seq, value);
    kw_buf_printf(b, "{\"layer\":\"%s\",\"id\":%llu,\"result\":\"%s\"},", layer,
                  (unsigned long long)kw_memtable_id(m), lookup_name(*res));
    return *res != KW_LOOKUP_MISS;
}

static bool trace_table(kw_buf *b, kw_file_meta *m, int level, kw_slice key, uint64_t seq,
                        kw_slice *value, kw_buf *valbuf, kw_lookup *res)
{
    kw_slice su = kw_ikey_user(kw_slice_make(m->smallest, m->smallest_len));
    kw_slice lu = kw_ikey_user(kw_slice_make(m->largest, m->largest_len));
    bool in_range = kw_slice_compare(su, key) <= 0 && kw_slice_compare(key, lu) <= 0;
    kw_buf_printf(b, "{\"layer\":\"sstable\",\"level\":%d,\"id\":%llu,\"in_range\":%s", level,
                  (unsigned long long)m->number, in_range ? "true" : "false");
    *res = KW_LOOKUP_MISS;
    if (in_range) {
        kw_table_lookup_info info;
        memset(&info, 0, sizeof info);
        char *err = NULL;
        kiwi_status st = kw_table_get_ex(m->table, key, seq, false, res, valbuf, &info, &err);
        *value = kw_slice_make(valbuf->data, valbuf->len);
        kw_buf_printf(b, ",\"bloom\":\"%s\",\"cache\":{\"bloom\":\"%s\",\"index\":\"%s\","
                         "\"data\":\"%s\"}",
                      info.bloom_may_contain ? "maybe" : "negative",
                      kw_cache_result_name(info.bloom_cache),
                      kw_cache_result_name(info.index_cache),
                      kw_cache_result_name(info.data_cache));
        if (info.block_read)
            kw_buf_printf(b, ",\"block\":{\"index\":%u,\"offset\":%llu,\"size\":%llu}",
                          info.block_index, (unsigned long long)info.block_offset,
                          (unsigned long long)info.block_size);
        if (st != KIWI_OK) {
            kw_buf_printf(b, ",\"error\":");
            kw_json_string(b, err ? err : "", err ? strlen(err) : 0);
        }
        free(err);
    }
    kw_buf_printf(b, ",\"result\":\"%s\"},", lookup_name(*res));
    return *res != KW_LOOKUP_MISS;
}

char *kiwi_trace(kiwi_db *db, const char *key, size_t klen)
{
    if (db == NULL || (key == NULL && klen > 0))
        return NULL;
    kw_slice k = kw_slice_make(key ? key : "", klen);
    uint64_t seq = atomic_load(&db->visible_seq);
    kw_super *s = kw_super_acquire(db);
    kw_buf b;
    kw_buf_init(&b);
    kw_buf_printf(&b, "{\"key\":");
    kw_json_string(&b, k.data, k.size);
    kw_buf_printf(&b, ",\"sequence\":%llu,\"steps\":[", (unsigned long long)seq);
    kw_slice value = {NULL, 0};
    kw_buf valbuf; /* a value found in an SSTable (trace reads never fill the cache) */
    kw_buf_init(&valbuf);
    kw_lookup res = KW_LOOKUP_MISS;
    bool done = trace_memtable(&b, s->mem, "memtable", k, seq, &value, &res);
    for (size_t i = 0; !done && i < s->nimm; i++)
        done = trace_memtable(&b, s->imm[i], "immutable", k, seq, &value, &res);
    for (int l = 0; !done && l < KW_MAX_LEVELS; l++)
        for (size_t i = 0; !done && i < s->version->nfiles[l]; i++)
            done = trace_table(&b, s->version->files[l][i], l, k, seq, &value, &valbuf, &res);
    if (b.data[b.len - 1] == ',')
        b.len--;
    kw_buf_printf(&b, "],\"result\":\"%s\"", lookup_name(res));
    if (res == KW_LOOKUP_FOUND) {
        kw_buf_printf(&b, ",\"value\":");
        kw_json_string(&b, value.data, value.size);
    }
    kw_buf_printf(&b, "}");
    kw_buf_push(&b, '\0');
    kw_buf_free(&valbuf);
    kw_super_release(s);
    return b.data;
}

/* ---- live settings ------------------------------------------------- */

kiwi_status kiwi_set_option(kiwi_db *db, const char *name, const char *value, char **errmsg)
{
    if (db == NULL)
        return kw_error(errmsg, KIWI_INVALID_ARGUMENT, "db is NULL");
    pthread_mutex_lock(&db->mu);
    kiwi_options next = db->opts;
    kiwi_status st = kw_options_apply(&next, name, value, true, errmsg);
    if (st == KIWI_OK) {
        const double mb = 1024.0 * 1024.0;
        if (next.block_cache_data_mb != db->opts.block_cache_data_mb)
            kw_cache_set_capacity(db->cache->data, (size_t)(next.block_cache_data_mb * mb));
        if (next.block_cache_index_mb != db->opts.block_cache_index_mb)
            kw_cache_set_capacity(db->cache->index, (size_t)(next.block_cache_index_mb * mb));
        if (next.block_cache_bloom_mb != db->opts.block_cache_bloom_mb)
            kw_cache_set_capacity(db->cache->bloom, (size_t)(next.block_cache_bloom_mb * mb));
        kw_block_cache_set_data_reads(db->cache, next.data_reads_cached ? KW_DATA_READS_CACHED
                                                                        : KW_DATA_READS_IN_PLACE);
        db->opts = next;
        pthread_cond_broadcast(&db->done_cv); /* a raised limit may end a stall */
        kw_compact_schedule(db);              /* a lowered threshold may call for compaction */
    }
    pthread_mutex_unlock(&db->mu);
    if (st == KIWI_OK)
        kw_db_event(db, "info", "option_set", "{\"name\":\"%s\",\"value\":\"%s\"}", name, value);
    return st;
}
