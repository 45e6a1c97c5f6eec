/*
 * db_write.c: the write path: validation, the writer queue with group commit, memtable rotation
 * and write stalls.
 *
 * Group commit (LevelDB's design, DESIGN §4): each writer enqueues itself; the writer at the head
 * is the leader. The leader makes room (rotating a full memtable, stalling while too many
 * immutable memtables wait for flush), takes the writers queued behind it into its group,
 * assigns their sequence numbers, and with the mutex released appends every batch to the WAL with
 * one writev and — if any member asked for sync — one fdatasync, then inserts the group into the
 * memtable. It then publishes the group's last sequence (readers never see half a group), marks
 * the members done and wakes the next leader.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db.h"
#include "env.h"
#include "killpoint.h"

#define MAX_GROUP_BYTES (1u << 20) /* a group stops growing past 1 MiB of payload */
#define MAX_GROUP_SIZE 256

kiwi_status kw_db_new_wal(kiwi_db *db, char **errmsg)
{
    uint64_t number = kw_vset_new_file_number(db->vs);
    char *path = kw_numbered_path(db->path, number, "log");
    kw_wal_writer *w = NULL;
    kiwi_status st = kw_wal_writer_create(path, &w, errmsg);
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
static kiwi_status make_room(kiwi_db *db, bool force, char **errmsg)
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

typedef struct {
    kw_memtable *mem;
    uint64_t puts, deletes;
} insert_ctx;

static void insert_op(void *arg, uint64_t seq, kw_value_type type, kw_slice key, kw_slice value)
{
    insert_ctx *c = arg;
    kw_memtable_add(c->mem, seq, type, key, value);
    if (type == KW_TYPE_VALUE)
        c->puts++;
    else
        c->deletes++;
}

/* Appends the group to the WAL and the memtable. Runs with mu released. */
static kiwi_status commit_group(kiwi_db *db, kw_writer **group, size_t n, bool sync,
                                kw_wal_writer *wal, kw_memtable *mem, char **errmsg)
{
    kw_slice parts[MAX_GROUP_SIZE];
    uint64_t bytes = 0;
    for (size_t i = 0; i < n; i++) {
        parts[i] = kw_batch_payload(group[i]->batch);
        bytes += parts[i].size + KW_WAL_HEADER_SIZE;
    }
    if (sync) /* inside the file's length, the fdatasync below commits no size change */
        kw_wal_writer_reserve(wal, bytes);
    kiwi_status st = n == 1 ? kw_wal_writer_add(wal, parts[0], errmsg)
                            : kw_wal_writer_add_many(wal, parts, n, errmsg);
    kw_kill_point("wal.after_append");
    if (st == KIWI_OK && sync) {
        kw_kill_point("wal.before_sync");
        st = kw_wal_writer_sync(wal, errmsg);
        atomic_fetch_add(&db->stats.wal_syncs, 1);
        kw_kill_point("wal.after_sync");
    }
    if (st != KIWI_OK)
        return st;
    atomic_fetch_add(&db->stats.wal_bytes, bytes);
    atomic_fetch_add(&db->stats.wal_writes, 1);
    insert_ctx c = {mem, 0, 0};
    uint64_t user_bytes = 0;
    for (size_t i = 0; i < n && st == KIWI_OK; i++) {
        st = kw_batch_iterate(parts[i], insert_op, &c, NULL, NULL, errmsg);
        user_bytes += group[i]->batch->user_bytes;
    }
    atomic_fetch_add(&db->stats.puts, c.puts);
    atomic_fetch_add(&db->stats.deletes, c.deletes);
    atomic_fetch_add(&db->stats.user_bytes_written, user_bytes);
    return st;
}

/* Leader: picks its group from the queue head. REQUIRES: mu held. */
static size_t pick_group(kiwi_db *db, kw_writer **group, bool *sync)
{
    size_t n = 0;
    uint64_t bytes = 0;
    *sync = false;
    for (kw_writer *w = db->writers_head; w && n < MAX_GROUP_SIZE; w = w->next) {
        if (w->batch == NULL) /* a flush request ends the group */
            break;
        size_t sz = kw_batch_payload(w->batch).size;
        if (n > 0 && bytes + sz > MAX_GROUP_BYTES)
            break;
        bytes += sz;
        *sync = *sync || w->sync;
        group[n++] = w;
    }
    return n;
}

/* Marks a group member done. A thread writer is woken; an async writer is moved to the
 * `completed` list, whose callbacks run after the mutex is released. REQUIRES: mu held. */
static void finish_writer(kw_writer *w, kiwi_status st, const char *msg, kw_writer **completed)
{
    w->done = true;
    w->status = st;
    if (st != KIWI_OK && msg)
        w->errmsg = kw_strdup(msg);
    if (w->async) {
        w->next = *completed;
        *completed = w;
    } else {
        pthread_cond_signal(&w->cv);
    }
}

/* Wakes whoever must lead next: a thread writer at the head leads itself, an async writer at
 * the head is led by the commit thread. REQUIRES: mu held. */
static void wake_next_leader(kiwi_db *db)
{
    kw_writer *h = db->writers_head;
    if (h == NULL) {
        db->writers_tail = NULL;
        if (db->closing)
            pthread_cond_broadcast(&db->done_cv);
    } else if (h->async) {
        pthread_cond_signal(&db->async_cv);
    } else {
        pthread_cond_signal(&h->cv);
    }
}

/* Runs the async writers' callbacks (mutex released) and frees their nodes. */
static void run_completions(kw_writer *completed)
{
    while (completed) {
        kw_writer *w = completed;
        completed = w->next;
        char *msg = w->errmsg;
        if (w->status != KIWI_OK && msg == NULL)
            msg = kw_strdup(kiwi_status_name(w->status));
        w->done_fn(w->done_ctx, w->status, w->status == KIWI_OK ? NULL : msg);
        if (w->status == KIWI_OK)
            free(msg);
        free(w);
    }
}

/* Commits group[0..n) (group[0] is the queue head): assigns the sequences, appends to the WAL
 * and the memtable with mu released, then publishes the last sequence, or on failure sets the
 * background error. REQUIRES: mu held; the group is at the head of the queue. */
static kiwi_status commit_locked(kiwi_db *db, kw_writer **group, size_t n, bool sync, char **err)
{
    for (size_t i = 0; i < n; i++) {
        kw_batch_set_sequence(group[i]->batch, db->last_seq + 1);
        db->last_seq += group[i]->batch->count;
    }
    uint64_t last = db->last_seq;
    kw_wal_writer *wal = db->wal;
    kw_memtable *mem = db->mem;
    atomic_fetch_add(&db->stats.write_groups, 1);
    pthread_mutex_unlock(&db->mu);
    kiwi_status st = commit_group(db, group, n, sync, wal, mem, err);
    pthread_mutex_lock(&db->mu);
    if (st == KIWI_OK)
        atomic_store(&db->visible_seq, last);
    else
        kw_db_set_bg_error(db, st, *err);
    return st;
}

/* Leads one group starting at `leader` (the queue head): makes room, commits the group, dequeues
 * it and finishes every member but the leader itself. Returns the group's status; *err gets its
 * message. REQUIRES: mu held; leader == db->writers_head. */
static kiwi_status lead_group(kiwi_db *db, kw_writer *leader, kw_writer **completed, char **err)
{
    kw_writer *group[MAX_GROUP_SIZE];
    size_t n = 1;
    group[0] = leader;
    kiwi_status st = make_room(db, leader->batch == NULL, err);
    if (st == KIWI_OK && leader->batch != NULL) {
        bool gsync = false;
        n = pick_group(db, group, &gsync);
        st = commit_locked(db, group, n, gsync, err);
    }
    for (size_t i = 0; i < n; i++) {
        db->writers_head = group[i]->next;
        if (group[i] != leader)
            finish_writer(group[i], st, *err, completed);
    }
    wake_next_leader(db);
    return st;
}

static void enqueue_writer(kiwi_db *db, kw_writer *w)
{
    if (db->writers_tail)
        db->writers_tail->next = w;
    else
        db->writers_head = w;
    db->writers_tail = w;
}

/* Runs one write (batch) or, with batch == NULL, a memtable rotation for kiwi_flush. */
static kiwi_status db_write(kiwi_db *db, bool sync, kiwi_batch *batch, char **errmsg)
{
    kw_writer w;
    memset(&w, 0, sizeof w);
    w.batch = batch;
    w.sync = sync;
    pthread_cond_init(&w.cv, NULL);
    pthread_mutex_lock(&db->mu);
    if (db->closing) {
        pthread_mutex_unlock(&db->mu);
        pthread_cond_destroy(&w.cv);
        return kw_error(errmsg, KIWI_CLOSED, "the db at %s is closed", db->path);
    }
    /* The queue links writers that live on their callers' stacks: each caller waits below until
     * it has been dequeued (done) before its frame can go away. */
    enqueue_writer(db, &w); // cppcheck-suppress autoVariables
    while (!w.done && db->writers_head != &w)
        pthread_cond_wait(&w.cv, &db->mu);
    if (w.done) { /* a leader committed us */
        pthread_mutex_unlock(&db->mu);
        pthread_cond_destroy(&w.cv);
        if (w.status != KIWI_OK && errmsg) { /* the leader's message, status name first */
            free(*errmsg);
            *errmsg = w.errmsg ? w.errmsg : kw_strdup(kiwi_status_name(w.status));
            w.errmsg = NULL;
        }
        free(w.errmsg);
        return w.status;
    }
    char *err = NULL;
    kw_writer *completed = NULL;
    kiwi_status st = lead_group(db, &w, &completed, &err);
    pthread_mutex_unlock(&db->mu);
    pthread_cond_destroy(&w.cv);
    run_completions(completed);
    if (st != KIWI_OK && errmsg) {
        free(*errmsg);
        *errmsg = err;
        err = NULL;
    }
    free(err);
    return st;
}

/* The commit thread leads groups whose head is an async writer. */
static void *commit_thread(void *arg)
{
    kiwi_db *db = arg;
    pthread_mutex_lock(&db->mu);
    for (;;) {
        while (!db->stop_committer && !(db->writers_head && db->writers_head->async))
            pthread_cond_wait(&db->async_cv, &db->mu);
        if (db->writers_head == NULL || !db->writers_head->async)
            break; /* stopping, and no async writer is left at the head */
        kw_writer *leader = db->writers_head;
        char *err = NULL;
        kw_writer *completed = NULL;
        kiwi_status st = lead_group(db, leader, &completed, &err);
        finish_writer(leader, st, err, &completed);
        free(err);
        pthread_mutex_unlock(&db->mu);
        run_completions(completed);
        pthread_mutex_lock(&db->mu);
    }
    pthread_mutex_unlock(&db->mu);
    return NULL;
}

kiwi_status kw_db_start_committer(kiwi_db *db, char **errmsg)
{
    int rc = pthread_create(&db->committer, NULL, commit_thread, db);
    if (rc != 0)
        return kw_error(errmsg, KIWI_IO_ERROR, "cannot start the commit thread: %s", strerror(rc));
    db->has_committer = true;
    return KIWI_OK;
}

void kw_db_stop_committer(kiwi_db *db)
{
    if (!db->has_committer)
        return;
    pthread_mutex_lock(&db->mu);
    db->stop_committer = true;
    pthread_cond_broadcast(&db->async_cv);
    pthread_mutex_unlock(&db->mu);
    pthread_join(db->committer, NULL);
    db->has_committer = false;
}

kiwi_status kiwi_write_async(kiwi_db *db, const kiwi_write_options *wo, kiwi_batch *batch,
                             kiwi_write_done_fn done, void *ctx)
{
    if (db == NULL || batch == NULL || done == NULL)
        return KIWI_INVALID_ARGUMENT;
    char *err = NULL;
    kiwi_status st = kw_batch_check(batch, &err);
    free(err);
    if (st != KIWI_OK)
        return st;
    if (batch->count == 0) {
        done(ctx, KIWI_OK, NULL);
        return KIWI_OK;
    }
    kw_writer *w = kw_calloc(1, sizeof *w);
    w->batch = batch;
    w->sync = wo ? wo->sync : db->opts.sync_writes;
    w->async = true;
    w->done_fn = done;
    w->done_ctx = ctx;
    pthread_mutex_lock(&db->mu);
    if (db->closing) {
        pthread_mutex_unlock(&db->mu);
        free(w);
        return KIWI_CLOSED;
    }
    enqueue_writer(db, w);
    atomic_fetch_add(&db->stats.batches, batch->count > 1 ? 1 : 0);
    if (db->writers_head == w)
        pthread_cond_signal(&db->async_cv);
    pthread_mutex_unlock(&db->mu);
    return KIWI_OK;
}

static bool default_sync(kiwi_db *db, const kiwi_write_options *wo)
{
    return wo ? wo->sync : db->opts.sync_writes;
}

static kiwi_status check_key(const char *key, size_t klen, char **errmsg)
{
    if (key == NULL && klen > 0)
        return kw_error(errmsg, KIWI_INVALID_ARGUMENT, "key is NULL");
    if (klen > KIWI_MAX_KEY_SIZE)
        return kw_error(errmsg, KIWI_INVALID_ARGUMENT, "key of %zu bytes exceeds the limit of %u",
                        klen, KIWI_MAX_KEY_SIZE);
    return KIWI_OK;
}

kiwi_status kiwi_put(kiwi_db *db, const kiwi_write_options *wo, const char *key, size_t klen,
                     const char *val, size_t vlen, char **errmsg)
{
    if (db == NULL)
        return kw_error(errmsg, KIWI_INVALID_ARGUMENT, "db is NULL");
    kiwi_status st = check_key(key, klen, errmsg);
    if (st != KIWI_OK)
        return st;
    if (val == NULL && vlen > 0)
        return kw_error(errmsg, KIWI_INVALID_ARGUMENT, "value is NULL");
    if (vlen > KIWI_MAX_VALUE_SIZE)
        return kw_error(errmsg, KIWI_INVALID_ARGUMENT,
                        "value of %zu bytes exceeds the limit of %u", vlen, KIWI_MAX_VALUE_SIZE);
    kiwi_batch b;
    kw_batch_init(&b);
    kiwi_batch_put(&b, key ? key : "", klen, val ? val : "", vlen);
    st = db_write(db, default_sync(db, wo), &b, errmsg);
    kw_batch_free(&b);
    return st;
}

kiwi_status kiwi_delete(kiwi_db *db, const kiwi_write_options *wo, const char *key, size_t klen,
                        char **errmsg)
{
    if (db == NULL)
        return kw_error(errmsg, KIWI_INVALID_ARGUMENT, "db is NULL");
    kiwi_status st = check_key(key, klen, errmsg);
    if (st != KIWI_OK)
        return st;
    kiwi_batch b;
    kw_batch_init(&b);
    kiwi_batch_delete(&b, key ? key : "", klen);
    st = db_write(db, default_sync(db, wo), &b, errmsg);
    kw_batch_free(&b);
    return st;
}

kiwi_status kiwi_write(kiwi_db *db, const kiwi_write_options *wo, kiwi_batch *batch,
                       char **errmsg)
{
    if (db == NULL || batch == NULL)
        return kw_error(errmsg, KIWI_INVALID_ARGUMENT, "db or batch is NULL");
    kiwi_status st = kw_batch_check(batch, errmsg); /* oversized operations were refused */
    if (st != KIWI_OK || batch->count == 0)
        return st;
    st = db_write(db, default_sync(db, wo), batch, errmsg);
    if (st == KIWI_OK)
        atomic_fetch_add(&db->stats.batches, 1);
    return st;
}

/* Whether a write can go in at once: nobody queued or leading, no background error, no 1 ms
 * slowdown due, and room in the active memtable (so no rotation, which creates a file, and no
 * stall). REQUIRES: mu. */
static bool can_write_now(const kiwi_db *db)
{
    return db->writers_head == NULL && db->bg_status == KIWI_OK && !memtable_full(db) &&
           db->vs->current->nfiles[0] < db->opts.l0_slowdown_writes_trigger;
}

kiwi_status kiwi_write_nowait(kiwi_db *db, const kiwi_write_options *wo, kiwi_batch *batch,
                              char **errmsg)
{
    if (db == NULL || batch == NULL)
        return kw_error(errmsg, KIWI_INVALID_ARGUMENT, "db or batch is NULL");
    kiwi_status st = kw_batch_check(batch, errmsg);
    if (st != KIWI_OK || batch->count == 0)
        return st;
    if (default_sync(db, wo))
        return KIWI_BUSY; /* an fdatasync is a wait */
    pthread_mutex_lock(&db->mu);
    if (db->closing) {
        pthread_mutex_unlock(&db->mu);
        return kw_error(errmsg, KIWI_CLOSED, "the db at %s is closed", db->path);
    }
    if (!can_write_now(db)) {
        pthread_mutex_unlock(&db->mu);
        return KIWI_BUSY;
    }
    /* Lead a group of one: at the head of the queue, writers arriving meanwhile wait behind
     * this one exactly as behind any leader, and kiwi_close waits for it. */
    kw_writer w;
    memset(&w, 0, sizeof w);
    w.batch = batch;
    enqueue_writer(db, &w); // cppcheck-suppress autoVariables
    kw_writer *group[1] = {&w};
    char *err = NULL;
    st = commit_locked(db, group, 1, false, &err);
    db->writers_head = w.next;
    wake_next_leader(db);
    pthread_mutex_unlock(&db->mu);
    if (st == KIWI_OK) /* counted as kiwi_write_async counts (the binding's other path) */
        atomic_fetch_add(&db->stats.batches, batch->count > 1 ? 1 : 0);
    if (st != KIWI_OK && errmsg) {
        free(*errmsg);
        *errmsg = err;
        err = NULL;
    }
    free(err);
    return st;
}

kiwi_status kiwi_flush(kiwi_db *db, char **errmsg)
{
    if (db == NULL)
        return kw_error(errmsg, KIWI_INVALID_ARGUMENT, "db is NULL");
    kiwi_status st = db_write(db, false, NULL, errmsg); /* rotates through the writer queue */
    if (st != KIWI_OK)
        return st;
    pthread_mutex_lock(&db->mu);
    st = kw_flush_wait(db, errmsg);
    pthread_mutex_unlock(&db->mu);
    return st;
}
