/*
 * db_write.c: the public write calls: kiwi_put, kiwi_delete, kiwi_write, kiwi_write_nowait,
 * kiwi_write_async and kiwi_flush (argument checks, the sync default, the batches counter), and
 * the commit thread that leads groups of async writers. Every write goes through the writer queue
 * with group commit (db_group.c).
 */
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "db_group.h"

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
        kw_group_lead_async(db);
    }
    pthread_mutex_unlock(&db->mu);
    return NULL;
}

kiwi_status kw_db_start_committer(kiwi_db *db, char **errmsg)
{
    int rc = pthread_create(&db->committer, NULL, commit_thread, db);
    if (rc != 0)
        return kw_error(errmsg, KIWI_IO_ERROR, "cannot start the commit thread: %s", strerror(rc));
    kw_name_thread(db->committer, "kiwi-commit");
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
    kw_group_enqueue_async(db, w);
    atomic_fetch_add(&db->stats.batches, batch->count > 1 ? 1 : 0);
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

/* Stack room for the payload of a single put or delete: header, op, key and value up to ~480
 * bytes; a larger one moves to the heap as it grows. The batch lives until kw_group_write
 * returns, after the WAL and the memtable have copied it. */
#define SINGLE_OP_STORAGE 512

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
    char storage[SINGLE_OP_STORAGE]; /* the batch of a small put allocates nothing */
    kiwi_batch b;
    kw_batch_init_borrowed(&b, storage, sizeof storage);
    kiwi_batch_put(&b, key ? key : "", klen, val ? val : "", vlen);
    st = kw_group_write(db, default_sync(db, wo), &b, errmsg);
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
    char storage[SINGLE_OP_STORAGE];
    kiwi_batch b;
    kw_batch_init_borrowed(&b, storage, sizeof storage);
    kiwi_batch_delete(&b, key ? key : "", klen);
    st = kw_group_write(db, default_sync(db, wo), &b, errmsg);
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
    st = kw_group_write(db, default_sync(db, wo), batch, errmsg);
    if (st == KIWI_OK)
        atomic_fetch_add(&db->stats.batches, 1);
    return st;
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
    st = kw_group_write_now(db, batch, errmsg);
    if (st == KIWI_OK) /* counted as kiwi_write_async counts (the binding's other path) */
        atomic_fetch_add(&db->stats.batches, batch->count > 1 ? 1 : 0);
    return st;
}

kiwi_status kiwi_flush(kiwi_db *db, char **errmsg)
{
    if (db == NULL)
        return kw_error(errmsg, KIWI_INVALID_ARGUMENT, "db is NULL");
    kiwi_status st = kw_group_write(db, false, NULL, errmsg); /* rotates through the writer queue */
    if (st != KIWI_OK)
        return st;
    pthread_mutex_lock(&db->mu);
    st = kw_flush_wait(db, errmsg);
    pthread_mutex_unlock(&db->mu);
    return st;
}
