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

#include "db.h"
#include "env.h"

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

static bool memtable_full(const kiwi_db *db)
{
    if (kw_options_is_dev(&db->opts))
        return kw_memtable_entries(db->mem) >= db->opts.max_memtable_entries;
    return (double)kw_memtable_approx_bytes(db->mem) >=
           db->opts.max_memtable_size_mb * 1024.0 * 1024.0;
}

/* Ensures the active memtable has room, rotating it (force: whenever it is not empty).
 * Stalls while too many immutable memtables wait. REQUIRES: mu held, caller is the leader. */
static kiwi_status make_room(kiwi_db *db, bool force, char **errmsg)
{
    uint64_t stall_start = 0;
    kiwi_status st = KIWI_OK;
    for (;;) {
        if (db->bg_status != KIWI_OK) {
            st = kw_error(errmsg, db->bg_status, "writes are refused after a background error: %s",
                          db->bg_errmsg);
            break;
        }
        bool want = force ? kw_memtable_entries(db->mem) > 0 : memtable_full(db);
        if (!want)
            break;
        if (db->njobs >= db->opts.max_immutable_memtables) {
            if (stall_start == 0) {
                stall_start = kw_now_micros();
                atomic_fetch_add(&db->stats.stalls, 1);
                db->stalled = true;
                kw_db_event(db, "warn", "write_stall",
                            "{\"cause\":\"immutable memtables waiting for flush\","
                            "\"immutable\":%zu,\"limit\":%u}",
                            db->njobs, db->opts.max_immutable_memtables);
            }
            pthread_cond_wait(&db->done_cv, &db->mu);
            continue;
        }
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
    kiwi_status st = n == 1 ? kw_wal_writer_add(wal, parts[0], errmsg)
                            : kw_wal_writer_add_many(wal, parts, n, errmsg);
    if (st == KIWI_OK && sync) {
        st = kw_wal_writer_sync(wal, errmsg);
        atomic_fetch_add(&db->stats.wal_syncs, 1);
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

static void finish_writer(kw_writer *w, kiwi_status st, const char *msg)
{
    w->done = true;
    w->status = st;
    if (st != KIWI_OK && msg)
        w->errmsg = kw_strdup(msg);
    pthread_cond_signal(&w->cv);
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
    if (db->writers_tail)
        db->writers_tail->next = &w;
    else
        db->writers_head = &w; // cppcheck-suppress autoVariables
    db->writers_tail = &w;     // cppcheck-suppress autoVariables
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

    /* We are the leader. */
    char *err = NULL;
    kw_writer *group[MAX_GROUP_SIZE];
    size_t n = 1;
    group[0] = &w;
    kiwi_status st = make_room(db, batch == NULL, &err);
    if (st == KIWI_OK && batch != NULL) {
        bool gsync = false;
        n = pick_group(db, group, &gsync);
        for (size_t i = 0; i < n; i++) {
            kw_batch_set_sequence(group[i]->batch, db->last_seq + 1);
            db->last_seq += group[i]->batch->count;
        }
        uint64_t last = db->last_seq;
        kw_wal_writer *wal = db->wal;
        kw_memtable *mem = db->mem;
        atomic_fetch_add(&db->stats.write_groups, 1);
        pthread_mutex_unlock(&db->mu);
        st = commit_group(db, group, n, gsync, wal, mem, &err);
        pthread_mutex_lock(&db->mu);
        if (st == KIWI_OK)
            atomic_store(&db->visible_seq, last);
        else
            kw_db_set_bg_error(db, st, err);
    }
    /* Dequeue the group, wake its members and the next leader. */
    for (size_t i = 0; i < n; i++) {
        db->writers_head = group[i]->next;
        if (group[i] != &w)
            finish_writer(group[i], st, err);
    }
    if (db->writers_head == NULL)
        db->writers_tail = NULL;
    else
        pthread_cond_signal(&db->writers_head->cv);
    if (db->writers_head == NULL && db->closing)
        pthread_cond_broadcast(&db->done_cv);
    pthread_mutex_unlock(&db->mu);
    pthread_cond_destroy(&w.cv);
    if (st != KIWI_OK && errmsg) {
        free(*errmsg);
        *errmsg = err;
        err = NULL;
    }
    free(err);
    return st;
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
