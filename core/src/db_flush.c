/*
 * db_flush.c: the flush pipeline: immutable memtables become L0 SSTables.
 *
 * `flush_max_workers` threads take the oldest PENDING job, build its SSTable with the mutex
 * released, and mark it BUILT. Commits happen strictly in queue (memtable) order: whoever finds
 * the head of the queue BUILT and no commit running becomes the committer, and writes one
 * manifest edit for the run of consecutive BUILT jobs at the head (so a later flush that finishes
 * first waits for the earlier one, and recovery never sees a hole). The edit also advances the
 * log number to the first WAL still holding unflushed data; older WALs are deleted only after the
 * edit is synced.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "env.h"
#include "killpoint.h"
#include "table.h"

void kw_flush_enqueue(kiwi_db *db, kw_memtable *mem, uint64_t first_wal)
{
    kw_flush_job *j = kw_calloc(1, sizeof *j);
    j->mem = mem;
    j->first_wal = first_wal;
    j->file_number = kw_vset_new_file_number(db->vs);
    j->state = FLUSH_PENDING;
    if (db->jobs_tail)
        db->jobs_tail->next = j;
    else
        db->jobs_head = j;
    db->jobs_tail = j;
    db->njobs++;
    db->flushes_enqueued++;
    pthread_cond_signal(&db->flush_cv);
}

static kw_flush_job *next_pending(kiwi_db *db)
{
    for (kw_flush_job *j = db->jobs_head; j; j = j->next)
        if (j->state == FLUSH_PENDING)
            return j;
    return NULL;
}

/* Builds the job's SSTable. Runs with mu released; `topts` was copied under mu. */
static kiwi_status build_table(kiwi_db *db, kw_flush_job *j, const kw_table_options *topts,
                               char **errmsg)
{
    if (kw_memtable_entries(j->mem) == 0)
        return KIWI_OK;
    char *path = kw_numbered_path(db->path, j->file_number, "sst");
    kw_table_builder *b = NULL;
    kiwi_status st = kw_table_builder_create(path, topts, &b, errmsg);
    if (st == KIWI_OK) {
        kw_iter *it = kw_memtable_iter(j->mem);
        uint64_t half = kw_memtable_entries(j->mem) / 2, n = 0;
        for (kw_iter_seek_to_first(it); kw_iter_valid(it); kw_iter_next(it)) {
            kw_table_builder_add(b, kw_iter_key(it), kw_iter_value(it));
            if (++n == half)
                kw_kill_point("sst.mid_write");
        }
        kw_iter_destroy(it);
        kw_table_props props;
        memset(&props, 0, sizeof props);
        st = kw_table_builder_finish(b, &props, errmsg);
        if (st == KIWI_OK) {
            kw_edit_file *f = &j->file;
            f->level = 0;
            f->number = j->file_number;
            f->size = props.file_size;
            f->smallest = props.smallest;
            f->smallest_len = props.smallest_len;
            f->largest = props.largest;
            f->largest_len = props.largest_len;
            props.smallest = props.largest = NULL; /* ownership moved to the job */
            f->min_seq = props.min_seq;
            f->max_seq = props.max_seq;
            f->entries = props.entries;
            f->tombstones = props.tombstones;
            j->has_file = true;
        }
        kw_table_props_free(&props);
    }
    free(path);
    return st;
}

static void free_job(kw_flush_job *j)
{
    kw_memtable_unref(j->mem);
    if (j->has_file) {
        free(j->file.smallest);
        free(j->file.largest);
    }
    free(j);
}

static void remove_wals_below(kiwi_db *db, uint64_t from, uint64_t to)
{
    for (uint64_t n = from; n < to; n++) {
        char *path = kw_numbered_path(db->path, n, "log");
        if (kw_path_exists(path)) {
            kw_kill_point("file.before_delete");
            kw_remove_file(path, NULL);
            kw_kill_point("file.after_delete");
        }
        free(path);
    }
}

void kw_db_commit_begin(kiwi_db *db)
{
    while (db->committing)
        pthread_cond_wait(&db->done_cv, &db->mu);
    db->committing = true;
}

void kw_db_commit_end(kiwi_db *db)
{
    db->committing = false;
    pthread_cond_broadcast(&db->done_cv);
}

/* Commits the BUILT jobs at the head of the queue, in order. If another commit (a compaction's)
 * is running, it calls this again when it ends. REQUIRES: mu held. */
void kw_flush_try_commit(kiwi_db *db)
{
    while (!db->committing && db->bg_status == KIWI_OK && db->jobs_head &&
           db->jobs_head->state == FLUSH_BUILT) {
        db->committing = true;
        kw_version_edit edit;
        kw_edit_init(&edit);
        size_t k = 0;
        kw_flush_job *j = db->jobs_head;
        for (; j && j->state == FLUSH_BUILT; j = j->next, k++)
            if (j->has_file)
                kw_edit_add_file(&edit, &j->file);
        uint64_t new_log = j ? j->first_wal : db->mem_first_wal;
        uint64_t old_log = db->vs->log_number;
        kw_edit_set_log_number(&edit, new_log);
        kw_edit_set_last_seq(&edit, atomic_load(&db->visible_seq));
        char *err = NULL;
        kw_kill_point("sst.before_commit");
        kiwi_status st = kw_vset_log_and_apply(db->vs, &edit, &db->mu, &err);
        kw_edit_free(&edit);
        if (st == KIWI_OK) {
            for (size_t i = 0; i < k && db->jobs_head; i++) {
                kw_flush_job *done = db->jobs_head;
                db->jobs_head = done->next;
                if (db->jobs_head == NULL)
                    db->jobs_tail = NULL;
                db->njobs--;
                db->flushes_committed++;
                free_job(done);
            }
            kw_db_install_super(db);
            remove_wals_below(db, old_log, new_log);
            kw_compact_schedule(db);
        } else {
            kw_db_event(db, "error", "flush_commit_failed", "{\"error\":\"%s\"}", err);
            kw_db_set_bg_error(db, st, err);
        }
        free(err);
        kw_db_commit_end(db);
    }
}

static void run_job(kiwi_db *db, kw_flush_job *j)
{
    j->state = FLUSH_BUILDING;
    kw_table_options topts;
    kw_table_options_default(&topts);
    topts.block_size = db->opts.block_size;
    topts.bloom_fpr = kw_options_bloom_fpr(&db->opts);
    uint64_t entries = kw_memtable_entries(j->mem);
    kw_db_event(db, "info", "flush_start",
                "{\"memtable\":%" PRIu64 ",\"file\":%" PRIu64 ",\"entries\":%" PRIu64 "}",
                kw_memtable_id(j->mem), j->file_number, entries);
    pthread_mutex_unlock(&db->mu);
    char *err = NULL;
    uint64_t t0 = kw_now_micros();
    kiwi_status st = build_table(db, j, &topts, &err);
    uint64_t us = kw_now_micros() - t0;
    pthread_mutex_lock(&db->mu);
    j->micros = us;
    if (st == KIWI_OK) {
        j->state = FLUSH_BUILT;
        atomic_fetch_add(&db->stats.flushes, 1);
        atomic_fetch_add(&db->stats.flush_micros, us);
        atomic_fetch_add(&db->stats.flush_entries, entries);
        atomic_fetch_add(&db->stats.flush_bytes, j->has_file ? j->file.size : 0);
        kw_db_event(db, "info", "flush_end",
                    "{\"file\":%" PRIu64 ",\"entries\":%" PRIu64 ",\"bytes\":%" PRIu64
                    ",\"ms\":%.3f}",
                    j->file_number, entries, j->has_file ? j->file.size : 0, us / 1000.0);
    } else {
        j->state = FLUSH_FAILED;
        kw_db_event(db, "error", "flush_failed", "{\"file\":%" PRIu64 ",\"error\":\"%s\"}",
                    j->file_number, err);
        kw_db_set_bg_error(db, st, err);
    }
    free(err);
    kw_flush_try_commit(db);
    pthread_cond_broadcast(&db->done_cv);
}

static void *flush_worker(void *arg)
{
    kiwi_db *db = arg;
    pthread_mutex_lock(&db->mu);
    for (;;) {
        kw_flush_job *j = NULL;
        while (!db->stop_workers && db->bg_status == KIWI_OK && (j = next_pending(db)) == NULL)
            pthread_cond_wait(&db->flush_cv, &db->mu);
        if (db->stop_workers || db->bg_status != KIWI_OK)
            break;
        run_job(db, j);
    }
    pthread_mutex_unlock(&db->mu);
    return NULL;
}

kiwi_status kw_flush_start_workers(kiwi_db *db, char **errmsg)
{
    uint32_t n = db->opts.flush_max_workers;
    db->workers = kw_calloc(n, sizeof(pthread_t));
    for (uint32_t i = 0; i < n; i++) {
        int rc = pthread_create(&db->workers[i], NULL, flush_worker, db);
        if (rc != 0) {
            kw_flush_stop_workers(db);
            return kw_error(errmsg, KIWI_IO_ERROR, "cannot start flush thread: %s", strerror(rc));
        }
        kw_name_thread(db->workers[i], "kiwi-flush");
        db->nworkers++;
    }
    return KIWI_OK;
}

void kw_flush_stop_workers(kiwi_db *db)
{
    pthread_mutex_lock(&db->mu);
    db->stop_workers = true;
    pthread_cond_broadcast(&db->flush_cv);
    pthread_mutex_unlock(&db->mu);
    for (uint32_t i = 0; i < db->nworkers; i++)
        pthread_join(db->workers[i], NULL);
    free(db->workers);
    db->workers = NULL;
    db->nworkers = 0;
}

kiwi_status kw_flush_wait(kiwi_db *db, char **errmsg)
{
    uint64_t target = db->flushes_enqueued;
    while (db->flushes_committed < target && db->bg_status == KIWI_OK && !db->stop_workers)
        pthread_cond_wait(&db->done_cv, &db->mu);
    if (db->bg_status != KIWI_OK)
        return kw_error(errmsg, db->bg_status, "flush failed: %s", db->bg_errmsg);
    if (db->flushes_committed < target)
        return kw_error(errmsg, KIWI_CLOSED, "the db at %s is closing", db->path);
    return KIWI_OK;
}
