/*
 * db_rotate.c: making room for writes in the active memtable: new WAL files, memtable rotation,
 * and the throttles that hold writers back while flushes and compactions catch up (a 1 ms
 * slowdown per write past the L0 slowdown trigger, a stall while a full memtable cannot rotate).
 *
 * Once the db is open (db.c creates the first WAL), only the write leader calls in here
 * (db_group.c), with mu held, so the WAL and the active memtable have one owner; a stall waits on
 * done_cv, which flushes and compactions signal.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <time.h>

#include "db.h"
#include "env.h"

kiwi_status kw_db_new_wal(kiwi_db *db, char **errmsg)
{
    uint64_t number = kw_vset_new_file_number(db->vs);
    char *path = kw_numbered_path(db->path, number, "log");
    kw_wal_writer *w = NULL;
    /* db->mu is held: the setting cannot change under us; it applies from the next log on */
    kiwi_status st = db->opts.wal_writes_mapped ? kw_wal_writer_create_mapped(path, &w, errmsg)
                                                : kw_wal_writer_create(path, &w, errmsg);
    free(path);
    if (st != KIWI_OK)
        return st;
    if (db->wal)
        kw_wal_writer_close(db->wal, false, NULL); /* its bytes are in the OS already */
    db->wal = w;
    db->wal_number = number;
    return KIWI_OK;
}

kiwi_status kw_db_rotate(kiwi_db *db, char **errmsg)
{
    kw_wal_writer *old_wal = db->wal;
    db->wal = NULL; /* keep it open until the new one exists */
    kiwi_status st = kw_db_new_wal(db, errmsg);
    if (st != KIWI_OK) {
        db->wal = old_wal;
        return st;
    }
    kw_wal_writer_close(old_wal, false, NULL);
    kw_flush_enqueue(db, db->mem, db->mem_first_wal); /* takes over our reference */
    db->mem = kw_memtable_create(db->wal_number);
    db->mem_first_wal = db->wal_number;
    atomic_fetch_add(&db->stats.rotations, 1);
    kw_db_install_super(db);
    return KIWI_OK;
}

/* Per-entry memory beyond key and value: skip-list node and tower, varint lengths, trailer. */
#define ENTRY_OVERHEAD 48

/* Full by entries in dev mode, by bytes in prod. Bytes are counted from the entries (user bytes
 * plus a per-entry overhead), not from the arena's blocks, so a limit smaller than an arena
 * block still lets entries in (an empty memtable is never full). */
static bool memtable_full(const kiwi_db *db)
{
    uint64_t entries = kw_memtable_entries(db->mem);
    if (entries == 0)
        return false;
    if (kw_options_is_dev(&db->opts))
        return entries >= db->opts.max_memtable_entries;
    double bytes = (double)kw_memtable_user_bytes(db->mem) + (double)entries * ENTRY_OVERHEAD;
    return bytes >= db->opts.max_memtable_size_mb * 1024.0 * 1024.0;
}

/* Why a full memtable cannot rotate now, or NULL: writes go on into a memtable with room, and
 * wait only when it is full and flushing it would overload L0 or the flush queue (LevelDB's
 * rule). REQUIRES: mu. */
static const char *stall_cause(const kiwi_db *db, bool want_rotation)
{
    if (!want_rotation)
        return NULL;
    if (db->njobs >= db->opts.max_immutable_memtables)
        return "immutable_memtables";
    if (db->vs->current->nfiles[0] >= db->opts.l0_stop_writes_trigger)
        return "l0_files";
    return NULL;
}

/* Each write is delayed once by 1 ms while L0 is past the slowdown trigger (LevelDB's rule):
 * it hands the CPU to compaction and spreads a stall into a slope. REQUIRES: mu. */
static void maybe_slow_down(kiwi_db *db)
{
    size_t l0 = db->vs->current->nfiles[0];
    if (l0 < db->opts.l0_slowdown_writes_trigger || l0 >= db->opts.l0_stop_writes_trigger)
        return;
    if (atomic_fetch_add(&db->stats.slowdowns, 1) % 1000 == 0)
        kw_db_event(db, "warn", "write_slowdown",
                    "{\"cause\":\"l0_files\",\"l0_files\":%zu,\"trigger\":%u,"
                    "\"slowdowns\":%llu}",
                    l0, db->opts.l0_slowdown_writes_trigger,
                    (unsigned long long)atomic_load(&db->stats.slowdowns));
    pthread_mutex_unlock(&db->mu);
    uint64_t t0 = kw_now_micros();
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
    atomic_fetch_add(&db->stats.slowdown_micros, kw_now_micros() - t0);
    pthread_mutex_lock(&db->mu);
}

/* Ensures the active memtable has room, rotating it (force: whenever it is not empty).
 * Slows down or stalls while L0 or the flush queue is too long, with events and counters.
 * REQUIRES: mu held, caller is the leader. */
kiwi_status kw_db_make_room(kiwi_db *db, bool force, char **errmsg)
{
    uint64_t stall_start = 0;
    kiwi_status st = KIWI_OK;
    if (!force)
        maybe_slow_down(db);
    for (;;) {
        if (db->bg_status != KIWI_OK) {
            st = kw_error(errmsg, db->bg_status, "writes are refused after a background error: %s",
                          kw_error_detail(db->bg_errmsg));
            break;
        }
        bool want = force ? kw_memtable_entries(db->mem) > 0 : memtable_full(db);
        const char *cause = force ? NULL : stall_cause(db, want);
        if (cause == NULL && force && want && db->njobs >= db->opts.max_immutable_memtables)
            cause = "immutable_memtables";
        if (cause != NULL) {
            if (stall_start == 0) {
                stall_start = kw_now_micros();
                atomic_fetch_add(&db->stats.stalls, 1);
                db->stalled = true;
                kw_db_event(db, "warn", "write_stall",
                            "{\"cause\":\"%s\",\"l0_files\":%zu,\"l0_stop_trigger\":%u,"
                            "\"immutable\":%zu,\"immutable_limit\":%u}",
                            cause, db->vs->current->nfiles[0], db->opts.l0_stop_writes_trigger,
                            db->njobs, db->opts.max_immutable_memtables);
            }
            kw_compact_schedule(db);
            pthread_cond_wait(&db->done_cv, &db->mu);
            continue;
        }
        if (!want)
            break;
        st = kw_db_rotate(db, errmsg);
        if (st != KIWI_OK || force)
            break;
    }
    if (stall_start) {
        uint64_t us = kw_now_micros() - stall_start;
        atomic_fetch_add(&db->stats.stall_micros, us);
        db->stalled = false;
        kw_db_event(db, "info", "write_stall_end", "{\"micros\":%" PRIu64 "}", us);
    }
    return st;
}

/* Whether a write can go into the active memtable at once: no background error, no 1 ms slowdown
 * due, and room (so no rotation, which creates a file, and no stall). REQUIRES: mu. */
bool kw_db_has_room_now(const kiwi_db *db)
{
    return db->bg_status == KIWI_OK && !memtable_full(db) &&
           db->vs->current->nfiles[0] < db->opts.l0_slowdown_writes_trigger;
}
