/*
 * kiwi_dbtask.c: the db calls made from a kiwi task. kiwi_db.c checks the arguments exactly as in
 * blocking mode, then hands the prepared lkiwi_req here:
 *
 *   get            kiwi_get_nowait first (memtables; no thread hop); only when the answer needs an
 *                  SSTable read does a worker run kiwi_get
 *   put / delete   a one-operation batch (the db's reused scratch batch), kiwi_write_nowait first:
 *                  a non-sync write with nothing to wait for is done inline, no thread hop; else
 *                  (KIWI_BUSY) it is queued with kiwi_write_async and the task yields
 *   write          the user's batch, the same way; while queued it must not change until the
 *                  write is delivered (b->writing)
 *   open / close   kiwi_open / kiwi_close on a worker; close first waits for the db's other jobs
 *   flush, compact_range, trace, property "sstable:<id>"   on a worker
 *
 * A request owns copies of the key and value bytes and anchors the Lua values it depends on (the
 * db, a snapshot, a batch) with registry references until it is delivered.
 */
#include <stdlib.h>
#include <string.h>

#include "binding.h"

/* A request for d carrying a copy of r, its borrowed bytes copied into the request. */
static lkiwi_areq *request_from(lua_State *L, lkiwi_db *d, const lkiwi_req *r)
{
    lkiwi_areq *a = lkiwi_areq_new(L, d);
    a->r = *r;
    if (r->wopts != NULL)
        a->r.wopts = &a->r.wo_store;
    if (r->ropts != NULL)
        a->r.ropts = &a->r.ro_store;
    size_t n = (r->key ? r->klen : 0) + (r->val ? r->vlen : 0);
    if (n > 0) {
        a->copy = (char *)malloc(n);
        if (a->copy == NULL) {
            lkiwi_areq_free(a);
            luaL_error(L, "not enough memory");
        }
    }
    if (r->key != NULL) {
        if (r->klen > 0)
            memcpy(a->copy, r->key, r->klen);
        a->r.key = r->klen > 0 ? a->copy : "";
    }
    if (r->val != NULL) {
        if (r->vlen > 0)
            memcpy(a->copy + (r->key ? r->klen : 0), r->val, r->vlen);
        a->r.val = r->vlen > 0 ? a->copy + (r->key ? r->klen : 0) : "";
    }
    return a;
}

int lkiwi_task_call(lua_State *L, lkiwi_db *d, const lkiwi_req *r)
{
    lkiwi_areq *a = request_from(L, d, r);
    lkiwi_areq_anchor(L, a, 0, 1); /* the db */
    return lkiwi_submit_work(L, a, NULL, 0);
}

/* ---- reads ------------------------------------------------------------------------------------ */

static int get_finish(lua_State *L, lkiwi_areq *a)
{
    if (a->obj != NULL)
        lkiwi_snapshot_unpin((lkiwi_snapshot *)a->obj);
    return lkiwi_req_push(L, &a->r);
}

int lkiwi_task_get(lua_State *L, lkiwi_db *d, lkiwi_req *r)
{
    r->status = kiwi_get_nowait(r->db, r->ropts, r->key, r->klen, &r->out, &r->outlen,
                                &r->errmsg);
    if (r->status != KIWI_BUSY)
        return lkiwi_req_push(L, r); /* answered from memory */
    lkiwi_req_discard(r);
    lkiwi_areq *a = request_from(L, d, r);
    a->finish = get_finish;
    lkiwi_areq_anchor(L, a, 0, 1);
    if (r->ropts != NULL && r->ropts->snapshot != NULL) {
        lua_getfield(L, 3, "snapshot"); /* checked by lkiwi_check_ropts: a live kiwi.snapshot */
        lkiwi_snapshot *s = (lkiwi_snapshot *)lua_touserdata(L, -1);
        lkiwi_areq_anchor(L, a, 1, -1);
        lua_pop(L, 1);
        lkiwi_snapshot_pin(s);
        a->obj = s;
    }
    return lkiwi_submit_work(L, a, NULL, 0);
}

/* ---- writes ----------------------------------------------------------------------------------- */

/* kiwi_write_nowait's outcome st as the task's results: 1 (true) or 3 (nil, msg, code) pushed;
 * -1 when it did nothing: KIWI_BUSY (queue the write), or a refusal (invalid argument, closed)
 * whose message the blocking call gives in its own words, failing at once as well. */
static int nowait_results(lua_State *L, kiwi_status st, char *errmsg)
{
    if (st == KIWI_OK) {
        kiwi_free(errmsg);
        lua_pushboolean(L, 1);
        return 1;
    }
    if (st == KIWI_BUSY || st == KIWI_INVALID_ARGUMENT || st == KIWI_CLOSED) {
        kiwi_free(errmsg);
        return -1;
    }
    return lkiwi_push_fail(L, st, errmsg); /* the write was tried and failed: kiwi_write's words */
}

int lkiwi_task_write_one(lua_State *L, lkiwi_db *d, const lkiwi_req *r)
{
    /* the one-operation batch: the db's scratch batch, reused while writes go in inline */
    kiwi_batch *b = d->scratch != NULL ? d->scratch : kiwi_batch_create();
    d->scratch = NULL;
    kiwi_batch_clear(b);
    if (r->op == LKIWI_REQ_PUT)
        kiwi_batch_put(b, r->key, r->klen, r->val, r->vlen);
    else
        kiwi_batch_delete(b, r->key, r->klen);
    char *errmsg = NULL;
    kiwi_status st = kiwi_write_nowait(r->db, r->wopts, b, &errmsg);
    if (st != KIWI_BUSY) {
        /* keep it for the next write, unless a big value grew its buffer */
        if (r->klen + r->vlen <= LKIWI_SCRATCH_MAX)
            d->scratch = b;
        else
            kiwi_batch_destroy(b);
        return nowait_results(L, st, errmsg);
    }
    /* it must wait (a sync write, writers queued, a slowdown or stall, a full memtable): the
     * commit thread writes it and the task yields; the request owns the batch from here */
    lkiwi_areq *a = lkiwi_areq_new(L, d);
    a->r = *r;
    if (r->wopts != NULL)
        a->r.wopts = &a->r.wo_store;
    a->r.op = LKIWI_REQ_WRITE;
    a->r.key = a->r.val = NULL;
    a->own_batch = b;
    a->r.batch = b;
    return lkiwi_submit_write(L, a);
}

static int batch_finish(lua_State *L, lkiwi_areq *a)
{
    lkiwi_batch_written((lkiwi_batch *)a->obj);
    return lkiwi_req_push(L, &a->r);
}

int lkiwi_task_write_batch(lua_State *L, lkiwi_db *d, const lkiwi_req *r, lkiwi_batch *b)
{
    char *errmsg = NULL;
    kiwi_status st = kiwi_write_nowait(r->db, r->wopts, b->batch, &errmsg);
    if (st != KIWI_BUSY)
        return nowait_results(L, st, errmsg); /* done inline, or refused: -1 */
    lkiwi_areq *a = lkiwi_areq_new(L, d);
    a->r = *r;
    if (r->wopts != NULL)
        a->r.wopts = &a->r.wo_store;
    a->obj = b;
    a->finish = batch_finish;
    lkiwi_areq_anchor(L, a, 1, 2); /* the batch userdata */
    b->writing++;
    int n = lkiwi_submit_write(L, a); /* yields; returns only if refused */
    b->writing--;
    return n;
}

/* ---- open / close ----------------------------------------------------------------------------- */

static int open_finish(lua_State *L, lkiwi_areq *a)
{
    lkiwi_db *d = a->d;
    d->opening = false;
    if (a->r.status != KIWI_OK) {
        char *msg = a->r.errmsg;
        a->r.errmsg = NULL;
        return lkiwi_push_fail(L, a->r.status, msg);
    }
    d->db = a->r.opened;
    a->r.opened = NULL;
    lua_rawgeti(L, LUA_REGISTRYINDEX, a->refs[0]);
    return 1;
}

int lkiwi_task_open(lua_State *L, lkiwi_db *d, int dbidx, const char *path, kiwi_options *opts)
{
    lkiwi_areq *a = lkiwi_areq_new(L, d);
    a->opts = opts;
    a->copy = strdup(path);
    if (a->copy == NULL) {
        lkiwi_areq_free(a);
        return luaL_error(L, "not enough memory");
    }
    a->r.op = LKIWI_REQ_OPEN;
    a->r.key = a->copy;
    a->r.opts = opts;
    a->finish = open_finish;
    lkiwi_areq_anchor(L, a, 0, dbidx);
    d->opening = true;
    return lkiwi_submit_work(L, a, NULL, 0);
}

/* Worker: wait until the close job is the db's only job, then kiwi_close. */
static void close_run(lkiwi_areq *a)
{
    lkiwi_db_wait_idle(a->d, 1);
    lkiwi_req_run(&a->r);
}

static int close_finish(lua_State *L, lkiwi_areq *a)
{
    lkiwi_db *d = a->d;
    d->db = NULL;
    d->closing = false;
    lua_rawgeti(L, LUA_REGISTRYINDEX, a->refs[0]); /* -- db */
    int idx = lua_gettop(L);
    int n = lkiwi_db_push_close(L, idx, a->r.status);
    lua_remove(L, idx);
    return n;
}

int lkiwi_task_close(lua_State *L, lkiwi_db *d, int dbidx)
{
    lkiwi_areq *a = lkiwi_areq_new(L, d);
    a->r.op = LKIWI_REQ_CLOSE;
    a->r.db = d->db;
    a->run = close_run;
    a->finish = close_finish;
    lkiwi_areq_anchor(L, a, 0, dbidx);
    return lkiwi_submit_work(L, a, NULL, 0);
}
