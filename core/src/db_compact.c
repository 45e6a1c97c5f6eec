/*
 * db_compact.c: running compactions in the db: background threads, commits through the
 * manifest, manual kiwi_compact_range, and the snapshot horizon. The policy and the merge live in
 * compaction.c.
 *
 * Readers wake the threads (kw_db_charge_read) when a file's read budget runs out; the picker
 * then chooses a read-triggered compaction if nothing size- or count-triggered is due.
 * A compaction reserves its two levels (level_busy) under the mutex, runs with the mutex
 * released, then commits its edit under the single-committer rule shared with flushes
 * (kw_db_commit_begin/end). Input files stay pinned by the compaction and by any reader's view;
 * they are deleted when the last version holding them is released.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compaction.h"
#include "db.h"
#include "env.h"
#include "killpoint.h"

uint64_t kw_db_smallest_snapshot(kiwi_db *db)
{
    if (db->snapshots.next != &db->snapshots)
        return db->snapshots.next->seq; /* oldest: snapshots are kept in creation order */
    return atomic_load(&db->visible_seq);
}

void kw_compact_schedule(kiwi_db *db)
{
    pthread_cond_broadcast(&db->compact_cv);
}

static uint64_t new_file_number(void *ctx)
{
    kiwi_db *db = ctx;
    return kw_vset_new_file_number(db->vs);
}

static void remove_outputs(kiwi_db *db, const kw_compaction *c, const kw_version_edit *e)
{
    if (c->trivial_move)
        return;
    for (size_t i = 0; i < e->n_added; i++) {
        char *path = kw_numbered_path(db->path, e->added[i].number, "sst");
        kw_remove_file(path, NULL);
        free(path);
    }
}

static void account(kiwi_db *db, const kw_compaction *c, const kw_compaction_stats *cs,
                    uint64_t us)
{
    atomic_fetch_add(&db->stats.compactions, 1);
    atomic_fetch_add(&db->stats.compaction_micros, us);
    if (c->read_triggered)
        atomic_fetch_add(&db->stats.read_compactions, 1);
    if (c->trivial_move) {
        atomic_fetch_add(&db->stats.trivial_moves, 1);
        return;
    }
    atomic_fetch_add(&db->stats.compaction_bytes_read, cs->bytes_in);
    atomic_fetch_add(&db->stats.compaction_bytes_written, cs->bytes_out);
    atomic_fetch_add(&db->stats.compaction_dropped_versions, cs->dropped_versions);
    atomic_fetch_add(&db->stats.compaction_dropped_tombstones, cs->dropped_tombstones);
}

/* Runs c and commits it. REQUIRES: mu held and c's levels free; returns with mu held. */
static kiwi_status run_compaction(kiwi_db *db, kw_compaction *c, char **errmsg)
{
    int lvl = c->level, out = c->output_level;
    for (int l = lvl; l <= out; l++)
        db->level_busy[l] = true;
    db->compactions_running++;
    uint64_t smallest = kw_db_smallest_snapshot(db);
    kw_version *deeper = kw_vset_current(db->vs);
    kiwi_options opts = db->opts;
    kw_db_event(db, "info", "compaction_start",
                "{\"level\":%d,\"output_level\":%d,\"reason\":\"%s\",\"inputs\":%zu,"
                "\"inputs_below\":%zu,\"bytes\":%" PRIu64 ",\"trivial_move\":%s}",
                lvl, out, c->reason, c->ninputs[0], c->ninputs[1],
                kw_compaction_input_bytes(c), c->trivial_move ? "true" : "false");
    pthread_mutex_unlock(&db->mu);

    uint64_t t0 = kw_now_micros();
    kw_version_edit edit;
    kw_edit_init(&edit);
    kw_compaction_stats cs;
    char *err = NULL;
    kiwi_status st = kw_compaction_run(c, db->path, &opts, smallest, deeper, &db->mu,
                                       new_file_number, db, &edit, &cs, &err);
    pthread_mutex_lock(&db->mu);
    if (st == KIWI_OK) {
        kw_db_commit_begin(db);
        kw_kill_point("compaction.before_commit");
        st = kw_vset_log_and_apply(db->vs, &edit, &db->mu, &err);
        kw_db_commit_end(db);
        if (st != KIWI_OK)
            remove_outputs(db, c, &edit);
    }
    uint64_t us = kw_now_micros() - t0;
    if (st == KIWI_OK) {
        kw_db_install_super(db);
        kw_compaction_done(c, db->cursor);
        account(db, c, &cs, us);
        kw_db_event(db, "info", "compaction_end",
                    "{\"level\":%d,\"output_level\":%d,\"outputs\":%zu,\"bytes_in\":%" PRIu64
                    ",\"bytes_out\":%" PRIu64 ",\"dropped_versions\":%" PRIu64
                    ",\"dropped_tombstones\":%" PRIu64 ",\"ms\":%.3f}",
                    lvl, out, edit.n_added, cs.bytes_in, cs.bytes_out, cs.dropped_versions,
                    cs.dropped_tombstones, us / 1000.0);
    } else {
        kw_db_event(db, "error", "compaction_failed", "{\"level\":%d,\"error\":\"%s\"}", lvl,
                    err ? err : "");
        kw_db_set_bg_error(db, st, err);
        if (errmsg) {
            free(*errmsg);
            *errmsg = err;
            err = NULL;
        }
    }
    free(err);
    kw_edit_free(&edit);
    kw_version_unref(deeper);
    for (int l = lvl; l <= out; l++)
        db->level_busy[l] = false;
    db->compactions_running--;
    kw_flush_try_commit(db); /* a flush may have waited for our commit */
    pthread_cond_broadcast(&db->done_cv);
    pthread_cond_broadcast(&db->compact_cv);
    return st;
}

static void *compaction_worker(void *arg)
{
    kiwi_db *db = arg;
    pthread_mutex_lock(&db->mu);
    while (!db->stop_compactors) {
        kw_compaction *c = NULL;
        if (db->bg_status == KIWI_OK)
            c = kw_compaction_pick(db->vs->current, &db->opts, db->level_busy, db->cursor);
        if (c == NULL) {
            pthread_cond_wait(&db->compact_cv, &db->mu);
            continue;
        }
        run_compaction(db, c, NULL);
        kw_compaction_free(c);
    }
    pthread_mutex_unlock(&db->mu);
    return NULL;
}

kiwi_status kw_compact_start_workers(kiwi_db *db, char **errmsg)
{
    uint32_t n = db->opts.compaction_workers;
    db->compactors = kw_calloc(n, sizeof(pthread_t));
    for (uint32_t i = 0; i < n; i++) {
        int rc = pthread_create(&db->compactors[i], NULL, compaction_worker, db);
        if (rc != 0)
            return kw_error(errmsg, KIWI_IO_ERROR, "cannot start compaction thread: %s",
                            strerror(rc));
        kw_name_thread(db->compactors[i], "kiwi-compact");
        db->ncompactors++;
    }
    pthread_mutex_lock(&db->mu);
    kw_compact_schedule(db); /* the tree may already need work after recovery */
    pthread_mutex_unlock(&db->mu);
    return KIWI_OK;
}

void kw_compact_stop_workers(kiwi_db *db)
{
    pthread_mutex_lock(&db->mu);
    db->stop_compactors = true;
    pthread_cond_broadcast(&db->compact_cv);
    pthread_mutex_unlock(&db->mu);
    for (uint32_t i = 0; i < db->ncompactors; i++)
        pthread_join(db->compactors[i], NULL);
    free(db->compactors);
    db->compactors = NULL;
    db->ncompactors = 0;
}

/* Is any level 0..last reserved by a running compaction? REQUIRES: mu held. */
static bool levels_busy(const kiwi_db *db, int last)
{
    for (int l = 0; l <= last; l++)
        if (db->level_busy[l])
            return true;
    return false;
}

kiwi_status kiwi_compact_range(kiwi_db *db, const char *start, size_t slen, const char *end,
                               size_t elen, char **errmsg)
{
    if (db == NULL)
        return kw_error(errmsg, KIWI_INVALID_ARGUMENT, "db is NULL");
    kiwi_status st = kiwi_flush(db, errmsg); /* memtables first: the range may live there */
    if (st != KIWI_OK)
        return st;
    kw_slice s = kw_slice_make(start ? start : "", slen), e = kw_slice_make(end ? end : "", elen);
    atomic_fetch_add(&db->stats.manual_compactions, 1);
    pthread_mutex_lock(&db->mu);
    int last = (int)db->opts.max_levels;
    /* Two passes: everything above the last level in the range goes straight into it (data
     * written once, merged with the last-level files it overlaps), then the last level's other
     * files in the range (not written by the first pass) are rewritten in place, to drop what no
     * reader needs any more (e.g. tombstones a released snapshot kept). */
    uint64_t first_new = UINT64_MAX; /* files numbered from here on were written by pass 0 */
    for (int pass = 0; pass < 2 && st == KIWI_OK; pass++) {
        while (levels_busy(db, last) && !db->stop_compactors && db->bg_status == KIWI_OK)
            pthread_cond_wait(&db->done_cv, &db->mu);
        if (db->bg_status != KIWI_OK) {
            st = kw_error(errmsg, db->bg_status, "compaction refused after a background error: %s",
                          kw_error_detail(db->bg_errmsg));
            break;
        }
        const kw_slice *sp = start ? &s : NULL, *ep = end ? &e : NULL;
        kw_compaction *c = pass == 0 ? kw_compaction_range_to_last(db->vs->current, last, sp, ep)
                                     : kw_compaction_range(db->vs->current, last, last, sp, ep);
        if (pass == 1 && c != NULL && kw_compaction_drop_inputs_from(c, first_new) == 0) {
            kw_compaction_free(c);
            c = NULL;
        }
        if (c == NULL)
            continue;
        if (pass == 0)
            first_new = db->vs->next_file;
        st = run_compaction(db, c, errmsg);
        kw_compaction_free(c);
    }
    pthread_mutex_unlock(&db->mu);
    return st;
}
