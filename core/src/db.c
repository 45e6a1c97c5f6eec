/*
 * db.c: opening a db (lock, manifest, WAL replay, garbage removal), closing it, events and the
 * background-error state.
 */
#include "db.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "env.h"

void kw_db_event(kiwi_db *db, const char *level, const char *event, const char *fmt, ...)
{
    if (db->opts.event_fn == NULL)
        return;
    char fields[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(fields, sizeof fields, fmt, ap);
    va_end(ap);
    db->opts.event_fn(db->opts.event_ctx, level, event, fields);
}

void kw_db_set_bg_error(kiwi_db *db, kiwi_status st, const char *msg)
{
    if (db->bg_status != KIWI_OK)
        return;
    db->bg_status = st;
    db->bg_errmsg = kw_strdup(msg ? msg : kiwi_status_name(st));
    pthread_cond_broadcast(&db->done_cv);
}

/* ---- recovery -------------------------------------------------------------------------- */

typedef struct {
    kiwi_db *db;
    uint64_t max_seq;
    const char *path; /* the WAL being replayed */
} replay_ctx;

static void replay_op(void *arg, uint64_t seq, kw_value_type type, kw_slice key, kw_slice value)
{
    replay_ctx *c = arg;
    kw_memtable_add(c->db->mem, seq, type, key, value);
    if (seq > c->max_seq)
        c->max_seq = seq;
}

static kiwi_status replay_record(void *arg, kw_slice payload, uint64_t offset, char **errmsg)
{
    replay_ctx *c = arg;
    /* WALs at or above the manifest's log number hold only data no SSTable has, so every
     * record is applied; kw_batch_iterate validates the whole record before the first op. */
    kiwi_status st = kw_batch_iterate(payload, replay_op, c, NULL, NULL, errmsg);
    if (st != KIWI_OK)
        return kw_error(errmsg, st, "%s: record at offset %" PRIu64 ": %s", c->path, offset,
                        errmsg && *errmsg ? kw_error_detail(*errmsg) : "bad batch");
    atomic_fetch_add(&c->db->stats.recovered_records, 1);
    return KIWI_OK;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : (x > y ? 1 : 0);
}

/* Parses "NNNNNN.<suffix>"; true on a match. */
static bool parse_numbered(const char *name, const char *suffix, uint64_t *number)
{
    char *end = NULL;
    if (name[0] < '0' || name[0] > '9')
        return false;
    unsigned long long n = strtoull(name, &end, 10);
    if (end == NULL || *end != '.' || strcmp(end + 1, suffix) != 0)
        return false;
    *number = n;
    return true;
}

static kiwi_status replay_one_wal(kiwi_db *db, uint64_t number, replay_ctx *c, char **errmsg)
{
    char *path = kw_numbered_path(db->path, number, "log");
    kw_wal_read_stats rs;
    memset(&rs, 0, sizeof rs);
    c->path = path;
    /* a WAL may end in space preallocated for synced appends (db_group.c): read it so */
    kiwi_status st =
        kw_wal_read_preallocated(path, db->opts.wal_recovery, replay_record, c, &rs, errmsg);
    if (st == KIWI_OK && rs.torn_tail) {
        atomic_fetch_add(&db->stats.recovered_torn_bytes, rs.torn_bytes);
        kw_db_event(db, "warn", "wal_torn_tail",
                    "{\"file\":\"%s\",\"good_bytes\":%" PRIu64 ",\"cut_bytes\":%" PRIu64 "}",
                    path, rs.good_bytes, rs.torn_bytes);
        st = kw_truncate_file(path, rs.good_bytes, errmsg);
    }
    if (st == KIWI_OK && rs.skipped_records) {
        atomic_fetch_add(&db->stats.recovered_skipped, rs.skipped_records);
        kw_db_event(db, "warn", "wal_corrupt_records_skipped",
                    "{\"file\":\"%s\",\"records\":%" PRIu64 ",\"bytes\":%" PRIu64 "}", path,
                    rs.skipped_records, rs.skipped_bytes);
    }
    if (st == KIWI_OK)
        kw_db_event(db, "info", "wal_replayed",
                    "{\"file\":\"%s\",\"records\":%" PRIu64 ",\"preallocated_bytes\":%" PRIu64
                    "}",
                    path, rs.records, rs.prealloc_bytes);
    free(path);
    return st;
}

/* Replays every WAL the manifest does not cover into the active memtable. */
static kiwi_status recover_wals(kiwi_db *db, char **names, size_t count, char **errmsg)
{
    uint64_t *logs = kw_calloc(count ? count : 1, sizeof *logs);
    size_t nlogs = 0;
    uint64_t max_number = 0;
    for (size_t i = 0; i < count; i++) {
        uint64_t n;
        if (parse_numbered(names[i], "log", &n)) {
            if (n > max_number)
                max_number = n;
            if (n >= db->vs->log_number)
                logs[nlogs++] = n;
        }
    }
    qsort(logs, nlogs, sizeof *logs, cmp_u64);
    replay_ctx c = {db, db->vs->last_seq, NULL};
    kiwi_status st = KIWI_OK;
    for (size_t i = 0; i < nlogs && st == KIWI_OK; i++)
        st = replay_one_wal(db, logs[i], &c, errmsg);
    if (st == KIWI_OK) {
        db->last_seq = c.max_seq;
        db->mem_first_wal = nlogs ? logs[0] : 0;
        if (db->vs->next_file <= max_number)
            db->vs->next_file = max_number + 1;
    }
    free(logs);
    return st;
}

/* Removes files no one owns: SSTables outside the live set (an interrupted flush or compaction),
 * WALs below the log number, old manifests and temp files. */
static void remove_garbage(kiwi_db *db, char **names, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        const char *name = names[i];
        uint64_t n = 0;
        bool drop = false;
        size_t len = strlen(name);
        if (parse_numbered(name, "sst", &n))
            drop = !kw_vset_is_live_table(db->vs, n);
        else if (parse_numbered(name, "log", &n))
            drop = n < db->vs->log_number;
        else if (strncmp(name, "MANIFEST-", 9) == 0)
            drop = strtoull(name + 9, NULL, 10) != db->vs->manifest_number;
        else if (len > 4 && strcmp(name + len - 4, ".tmp") == 0)
            drop = true;
        if (!drop)
            continue;
        char *path = kw_join_path(db->path, name);
        if (kw_remove_file(path, NULL) == KIWI_OK)
            kw_db_event(db, "info", "garbage_removed", "{\"file\":\"%s\"}", path);
        free(path);
    }
}

static kiwi_status check_dir(const char *path, char **errmsg)
{
    if (path == NULL || *path == '\0')
        return kw_error(errmsg, KIWI_INVALID_ARGUMENT, "the data directory path is empty");
    struct stat sb;
    if (stat(path, &sb) == 0 && !S_ISDIR(sb.st_mode))
        return kw_error(errmsg, KIWI_INVALID_ARGUMENT, "%s exists and is not a directory", path);
    return kw_mkdir_p(path, errmsg);
}

static kiwi_db *db_alloc(const char *path, const kiwi_options *opts)
{
    kiwi_db *db = kw_calloc(1, sizeof *db);
    db->path = kw_strdup(path);
    if (opts)
        db->opts = *opts;
    else
        kw_options_defaults(&db->opts, "prod");
    pthread_mutex_init(&db->mu, NULL);
    pthread_cond_init(&db->flush_cv, NULL);
    pthread_cond_init(&db->done_cv, NULL);
    pthread_cond_init(&db->async_cv, NULL);
    pthread_cond_init(&db->compact_cv, NULL);
    for (int l = 0; l < KW_MAX_LEVELS; l++)
        kw_buf_init(&db->cursor[l]);
    db->snapshots.next = db->snapshots.prev = &db->snapshots;
    db->open_micros = kw_now_micros();
    return db;
}

static void db_free(kiwi_db *db)
{
    if (db->super)
        kw_super_release(db->super);
    if (db->mem)
        kw_memtable_unref(db->mem);
    if (db->wal)
        kw_wal_writer_close(db->wal, true, NULL);
    while (db->jobs_head) {
        kw_flush_job *j = db->jobs_head;
        db->jobs_head = j->next;
        kw_memtable_unref(j->mem);
        if (j->has_file) {
            free(j->file.smallest);
            free(j->file.largest);
        }
        free(j);
    }
    for (kw_snapshot_node *s = db->snapshots.next; s != &db->snapshots;) {
        kw_snapshot_node *next = s->next;
        free(s);
        s = next;
    }
    db->snapshots.next = db->snapshots.prev = &db->snapshots;
    kw_vset_close(db->vs);
    kw_block_cache_destroy(db->cache); /* after every table is closed */
    kw_lock_release(db->lock);
    pthread_mutex_destroy(&db->mu);
    pthread_cond_destroy(&db->flush_cv);
    pthread_cond_destroy(&db->done_cv);
    pthread_cond_destroy(&db->async_cv);
    pthread_cond_destroy(&db->compact_cv);
    for (int l = 0; l < KW_MAX_LEVELS; l++)
        kw_buf_free(&db->cursor[l]);
    free(db->bg_errmsg);
    free(db->path);
    free(db);
}

static kiwi_status db_recover(kiwi_db *db, char **errmsg)
{
    bool created = false;
    const double mb = 1024.0 * 1024.0;
    db->cache = kw_block_cache_create((size_t)(db->opts.block_cache_data_mb * mb),
                                      (size_t)(db->opts.block_cache_index_mb * mb),
                                      (size_t)(db->opts.block_cache_bloom_mb * mb));
    kw_block_cache_set_data_reads(db->cache, db->opts.data_reads_cached ? KW_DATA_READS_CACHED
                                                                        : KW_DATA_READS_IN_PLACE);
    kiwi_status st = kw_vset_open(db->path, db->cache, &db->vs, &created, errmsg);
    if (st != KIWI_OK)
        return st;
    char **names = NULL;
    size_t count = 0;
    st = kw_list_dir(db->path, &names, &count, errmsg);
    if (st != KIWI_OK)
        return st;
    db->mem = kw_memtable_create(db->vs->next_file);
    st = recover_wals(db, names, count, errmsg);
    if (st == KIWI_OK) {
        remove_garbage(db, names, count);
        st = kw_db_new_wal(db, errmsg);
    }
    kw_free_names(names, count);
    if (st != KIWI_OK)
        return st;
    if (db->mem_first_wal == 0)
        db->mem_first_wal = db->wal_number;
    atomic_store(&db->visible_seq, db->last_seq);
    kw_db_event(db, "info", "open",
                "{\"path\":\"%s\",\"created\":%s,\"last_seq\":%" PRIu64
                ",\"recovered_records\":%" PRIu64 ",\"sstables\":%zu}",
                db->path, created ? "true" : "false", db->last_seq,
                (uint64_t)atomic_load(&db->stats.recovered_records), db->vs->current->nfiles[0]);
    return KIWI_OK;
}

kiwi_status kiwi_open(const char *path, const kiwi_options *opts, kiwi_db **out, char **errmsg)
{
    if (out == NULL)
        return kw_error(errmsg, KIWI_INVALID_ARGUMENT, "kiwi_open: out is NULL");
    *out = NULL;
    kiwi_status st = check_dir(path, errmsg);
    if (st != KIWI_OK)
        return st;
    kiwi_db *db = db_alloc(path, opts);
    st = kw_lock_acquire(path, &db->lock, errmsg);
    if (st == KIWI_OK)
        st = db_recover(db, errmsg);
    if (st == KIWI_OK) {
        pthread_mutex_lock(&db->mu);
        kw_db_install_super(db);
        pthread_mutex_unlock(&db->mu);
        st = kw_flush_start_workers(db, errmsg);
    }
    if (st == KIWI_OK)
        st = kw_db_start_committer(db, errmsg);
    if (st == KIWI_OK)
        st = kw_compact_start_workers(db, errmsg);
    if (st != KIWI_OK) {
        kw_compact_stop_workers(db);
        kw_db_stop_committer(db);
        kw_flush_stop_workers(db);
        db_free(db);
        return st;
    }
    *out = db;
    return KIWI_OK;
}

kiwi_status kiwi_close(kiwi_db *db)
{
    if (db == NULL)
        return KIWI_INVALID_ARGUMENT;
    pthread_mutex_lock(&db->mu);
    db->closing = true;
    while (db->writers_head != NULL) /* queued writes (thread and async) finish first */
        pthread_cond_wait(&db->done_cv, &db->mu);
    kw_db_iters_close_all(db);
    pthread_mutex_unlock(&db->mu);
    kw_db_stop_committer(db);
    kw_compact_stop_workers(db);
    kw_flush_stop_workers(db);
    kiwi_status st = db->bg_status;
    char *err = NULL;
    if (db->wal) {
        kiwi_status cst = kw_wal_writer_close(db->wal, true, &err);
        db->wal = NULL;
        if (st == KIWI_OK)
            st = cst;
    }
    kw_db_event(db, st == KIWI_OK ? "info" : "error", "close", "{\"path\":\"%s\",\"status\":\"%s\"}",
                db->path, kiwi_status_name(st));
    free(err);
    db_free(db);
    return st;
}
