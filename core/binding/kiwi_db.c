/*
 * kiwi_db.c: the Lua type kiwi.db: open, close (with its children), and the engine calls (put,
 * delete, get, write, flush, compact_range, set_option, property_json, trace_json). Each method
 * checks its arguments the same way in both modes, then either runs the engine call inline
 * (blocking) or, inside a task, hands it to kiwi_dbtask.c, which yields.
 *
 * Methods return true / a value, nil for a missing key, or nil, msg, code on a runtime failure;
 * misuse (wrong types, a closed db, a dead snapshot) raises. db:close() is idempotent, like the
 * __close it shares its code with; every other method on a closed db raises
 * "attempt to use a closed kiwi db". A close waits for the worker jobs still using the db.
 */
#include <string.h>

#include "binding.h"

/* The type test of every db method, on the hot path of each call (lkiwi_checktagged; only
 * db_open writes db_tag's address). */
static const char db_tag;

static lkiwi_db *todb(lua_State *L, int arg)
{
    return (lkiwi_db *)lkiwi_checktagged(L, arg, sizeof(lkiwi_db), &db_tag, LKIWI_DB);
}

lkiwi_db *lkiwi_checkdb(lua_State *L, int arg)
{
    lkiwi_db *d = todb(L, arg);
    if (d->db == NULL || d->closing)
        luaL_error(L, "attempt to use a closed kiwi db");
    return d;
}

/* ---- children --------------------------------------------------------------------------------- */

void lkiwi_db_adopt(lua_State *L, int dbidx, int idx)
{
    idx = lua_absindex(L, idx);
    lua_getiuservalue(L, dbidx, 1); /* -- children */
    lua_pushvalue(L, idx);
    lua_pushboolean(L, 1);
    lua_rawset(L, -3);
    lua_pop(L, 1);
}

void lkiwi_db_disown(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    if (lua_getiuservalue(L, idx, 1) == LUA_TUSERDATA       /* -- dbud */
        && lua_getiuservalue(L, -1, 1) == LUA_TTABLE) {     /* -- dbud children */
        lua_pushvalue(L, idx);
        lua_pushnil(L);
        lua_rawset(L, -3);
    }
    lua_pop(L, 2);
}

/* Destroys the C objects of every live child of the db userdata at idx (before kiwi_close) and
 * marks them dead. idle: no worker job uses the db any more; otherwise an iterator or snapshot a
 * job still uses is only marked, and kiwi_close frees its engine object. */
static void invalidate_children(lua_State *L, int idx, bool idle)
{
    if (lua_getiuservalue(L, idx, 1) != LUA_TTABLE) { /* -- children */
        lua_pop(L, 1);
        return;
    }
    lua_pushnil(L);
    while (lua_next(L, -2) != 0) { /* -- children child true */
        lkiwi_iter *it = (lkiwi_iter *)luaL_testudata(L, -2, LKIWI_ITER);
        lkiwi_snapshot *s = (lkiwi_snapshot *)luaL_testudata(L, -2, LKIWI_SNAPSHOT);
        if (it != NULL)
            lkiwi_iter_invalidate(it, idle);
        else if (s != NULL)
            lkiwi_snapshot_invalidate(s, idle);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

/* ---- open / close ----------------------------------------------------------------------------- */

static void options_free(void *p)
{
    kiwi_options_destroy((kiwi_options *)p);
}

/* Applies every name = value of the settings table at arg; on failure pushes the triple. */
static int apply_settings(lua_State *L, int arg, kiwi_options *opts)
{
    lua_pushnil(L);
    while (lua_next(L, arg) != 0) { /* -- name value */
        if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "bad settings table (string names and string values expected)");
        char *errmsg = NULL;
        kiwi_status st =
            kiwi_options_set(opts, lua_tostring(L, -2), lua_tostring(L, -1), &errmsg);
        if (st != KIWI_OK)
            return lkiwi_push_fail(L, st, errmsg);
        lua_pop(L, 1);
    }
    return 0;
}

/*
** core.open(path, mode, settings, on_event) -> db | nil, msg, code. mode is "dev" or "prod";
** settings maps setting names to string values (lua/kiwi/init.lua converts them); on_event, if a
** function, receives the engine's events as on_event(level, event, fields_json). The handle is
** created closed and opened last, so every early return leaves a handle __gc can ignore. In a
** task the kiwi_open itself runs on a worker (recovery reads files).
*/
int lkiwi_db_open(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    const char *mode = luaL_optstring(L, 2, "dev");
    bool has_settings = lkiwi_opttable(L, 3);
    bool has_handler = !lua_isnoneornil(L, 4);
    if (has_handler)
        luaL_checktype(L, 4, LUA_TFUNCTION);
    lkiwi_state *st = lkiwi_state_get(L);

    lkiwi_db *d = (lkiwi_db *)lua_newuserdatauv(L, sizeof *d, 3); /* -- db */
    memset(d, 0, sizeof *d);
    d->tag = &db_tag;
    d->st = st;
    d->has_handler = has_handler;
    luaL_setmetatable(L, LKIWI_DB);
    int dbidx = lua_gettop(L);
    lua_newtable(L); /* the children, weak keys */
    lua_newtable(L);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_setiuservalue(L, dbidx, 1);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, dbidx, 2);
    if (has_handler) {
        lua_pushvalue(L, 4);
        lua_setiuservalue(L, dbidx, 3);
    }

    void **box = lkiwi_newbox(L, options_free); /* -- db box */
    int boxidx = lua_gettop(L);
    kiwi_options *opts = kiwi_options_create(mode);
    if (opts == NULL) {
        lua_pushnil(L);
        lua_pushfstring(L, "invalid argument: unknown mode '%s' (expected dev or prod)", mode);
        lua_pushstring(L, kiwi_status_name(KIWI_INVALID_ARGUMENT));
        return 3;
    }
    *box = opts;
    if (has_settings) {
        int n = apply_settings(L, 3, opts);
        if (n > 0)
            return n;
    }
    d->sink = lkiwi_sink_new(st);
    if (d->sink == NULL)
        return luaL_error(L, "not enough memory");
    kiwi_options_set_event_handler(opts, lkiwi_event_cb, d->sink);
    lkiwi_sink_attach(L, d->sink, dbidx, has_handler);

    if (lkiwi_in_task(L)) {
        *box = NULL; /* the request owns the options now */
        /* no to-be-closed slot may stay open across the yield (Lua 5.4.4's lua_settop can use a
         * stale stack pointer after running a __close) */
        lua_closeslot(L, boxidx);
        return lkiwi_task_open(L, d, dbidx, path, opts);
    }
    char *errmsg = NULL;
    kiwi_db *db = NULL;
    kiwi_status s = kiwi_open(path, opts, &db, &errmsg);
    if (s != KIWI_OK)
        return lkiwi_push_fail(L, s, errmsg);
    d->db = db;
    lua_pushvalue(L, dbidx);
    lkiwi_db_after_call(L, dbidx, d);
    return 1;
}

void lkiwi_db_after_call(lua_State *L, int dbidx, lkiwi_db *d)
{
    /* cheapest tests first: this runs after every blocking call */
    if (!d->has_handler || d->sink == NULL || !lkiwi_sink_pending(d->sink))
        return;
    if (*d->st->loop_mode >= 0)
        return; /* the loop runs: its async callback delivers */
    int ismain = lua_pushthread(L);
    lua_pop(L, 1);
    if (ismain)
        lkiwi_events_deliver_db(L, dbidx);
}

/* Invalidates the children and closes the engine handle inline; returns the kiwi_close status.
 * Waits first for worker jobs still using the db (tasks' reads, scans, flushes). */
static kiwi_status db_release(lua_State *L, int idx, lkiwi_db *d)
{
    if (d->db == NULL || d->closing)
        return KIWI_OK;
    d->closing = true;
    lkiwi_db_wait_idle(d, 0);
    invalidate_children(L, idx, true);
    lkiwi_req r;
    lkiwi_req_init(&r, LKIWI_REQ_CLOSE, d->db);
    lkiwi_req_run(&r);
    d->db = NULL; /* closed from here on, whatever kiwi_close says */
    d->closing = false;
    return r.status;
}

int lkiwi_db_push_close(lua_State *L, int idx, kiwi_status st)
{
    if (st == KIWI_OK) {
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_getiuservalue(L, idx, 2); /* -- path */
    lua_pushnil(L);
    lua_pushfstring(L, "%s: closing %s: the first background error", kiwi_status_name(st),
                    lua_tostring(L, -2));
    lua_pushstring(L, kiwi_status_name(st)); /* -- path nil msg code */
    lua_remove(L, -4);
    return 3;
}

/* db:close() -> true | nil, msg, code. Idempotent; in a task the close runs on a worker. */
static int db_close(lua_State *L)
{
    lkiwi_db *d = todb(L, 1);
    if (d->db != NULL && !d->closing && lkiwi_in_task(L)) {
        d->closing = true;
        invalidate_children(L, 1, false);
        return lkiwi_task_close(L, d, 1);
    }
    kiwi_status st = db_release(L, 1, d);
    int n = lkiwi_db_push_close(L, 1, st);
    lkiwi_db_after_call(L, 1, d);
    return n;
}

/* __close: close quietly. */
static int db_close_quietly(lua_State *L)
{
    db_release(L, 1, todb(L, 1));
    return 0;
}

/* __gc: close quietly and free the event sink. Only when the Lua state closes can a job still be
 * in flight here (requests anchor their db): then wait for its work and leave the engine handle
 * and the sink to it. */
static int db_gc(lua_State *L)
{
    lkiwi_db *d = todb(L, 1);
    if (d->scratch != NULL) { /* never in flight: a queued write owns its own batch */
        kiwi_batch_destroy(d->scratch);
        d->scratch = NULL;
    }
    if (d->opening || d->closing) {
        lkiwi_db_wait_idle(d, 0);
        d->sink = NULL; /* an open job's handle is closed when its request is freed */
        return 0;
    }
    db_release(L, 1, d);
    if (d->sink != NULL) {
        lkiwi_sink_free(d->sink);
        d->sink = NULL;
    }
    return 0;
}

static int db_tostring(lua_State *L)
{
    lkiwi_db *d = todb(L, 1);
    lua_getiuservalue(L, 1, 2);
    if (d->db == NULL)
        lua_pushfstring(L, "kiwi.db (closed) %s", lua_tostring(L, -1));
    else
        lua_pushfstring(L, "kiwi.db (%p) %s", (void *)d->db, lua_tostring(L, -1));
    return 1;
}

/* ---- options ---------------------------------------------------------------------------------- */

/* Write options at arg: NULL (db default) or r->wo_store filled from { sync = bool }. */
static void check_wopts(lua_State *L, int arg, lkiwi_req *r)
{
    if (!lkiwi_opttable(L, arg))
        return;
    int sync = lkiwi_optboolfield(L, arg, "sync");
    if (sync < 0)
        return;
    r->wo_store.sync = sync != 0;
    r->wopts = &r->wo_store;
}

const kiwi_read_options *lkiwi_check_ropts(lua_State *L, int arg, lkiwi_db *d,
                                           kiwi_read_options *ro)
{
    if (!lkiwi_opttable(L, arg))
        return NULL;
    ro->snapshot = NULL;
    ro->fill_cache = lkiwi_optboolfield(L, arg, "fill_cache") != 0;
    if (lua_getfield(L, arg, "snapshot") != LUA_TNIL) { /* -- snap */
        lkiwi_snapshot *s = (lkiwi_snapshot *)luaL_testudata(L, -1, LKIWI_SNAPSHOT);
        if (s == NULL) {
            luaL_error(L, "bad option 'snapshot' (kiwi.snapshot expected, got %s)",
                       luaL_typename(L, -1));
            return NULL; /* not reached: luaL_error does not return */
        }
        if (s->snap == NULL)
            luaL_error(L, s->dbclosed ? "attempt to use a kiwi snapshot whose db is closed"
                                      : "attempt to use a released kiwi snapshot");
        if (s->db != d->db)
            luaL_error(L, "bad option 'snapshot' (the snapshot belongs to another kiwi db)");
        ro->snapshot = s->snap;
    }
    lua_pop(L, 1);
    return ro;
}

/* ---- the engine calls ------------------------------------------------------------------------ */

/* The results of a request run inline; then queued events go to the handler if no loop runs
 * to hand them over. */
static int run_done(lua_State *L, lkiwi_db *d, lkiwi_req *r)
{
    int n = lkiwi_req_push(L, r);
    lkiwi_db_after_call(L, 1, d);
    return n;
}

/* The blocking way: run inline, then run_done. */
static int run(lua_State *L, lkiwi_db *d, lkiwi_req *r)
{
    lkiwi_req_run(r);
    return run_done(L, d, r);
}

/* run() for a put: the engine call made directly and `true` pushed on success, without the
 * request's dispatch and result switch (~70 instructions of a ~3,500-instruction put). */
static int put_blocking(lua_State *L, lkiwi_db *d, lkiwi_req *r)
{
    r->status = kiwi_put(r->db, r->wopts, r->key, r->klen, r->val, r->vlen, &r->errmsg);
    if (r->status != KIWI_OK)
        return run_done(L, d, r);
    lua_pushboolean(L, 1);
    lkiwi_db_after_call(L, 1, d);
    return 1;
}

/* The blocking get: a value that fits in LKIWI_GET_BUF is read into a stack buffer and pushed
 * from there (kiwi_get_into: no malloc and free of a copy per get); a larger one, a miss or a
 * failure take the request's way. */
#define LKIWI_GET_BUF 2048
static int get_blocking(lua_State *L, lkiwi_db *d, lkiwi_req *r)
{
    char buf[LKIWI_GET_BUF];
    r->status = kiwi_get_into(r->db, r->ropts, r->key, r->klen, buf, sizeof buf, &r->out,
                              &r->outlen, &r->errmsg);
    if (r->status != KIWI_OK || r->out != buf)
        return run_done(L, d, r);
    r->out = NULL; /* the stack's: a memory error raised by the push leaks nothing */
    lua_pushlstring(L, buf, r->outlen);
    lkiwi_db_after_call(L, 1, d);
    return 1;
}

/* db:put(key, value, wopts) -> true | nil, msg, code */
static int db_put(lua_State *L)
{
    lkiwi_db *d = lkiwi_checkdb(L, 1);
    lkiwi_req r;
    lkiwi_req_init(&r, LKIWI_REQ_PUT, d->db);
    r.key = lkiwi_checkbytes(L, 2, &r.klen);
    r.val = lkiwi_checkbytes(L, 3, &r.vlen);
    check_wopts(L, 4, &r);
    if (lkiwi_in_task(L)) {
        int n = lkiwi_task_write_one(L, d, &r); /* yields, or -1: refused, fail inline */
        if (n >= 0)
            return n;
    }
    return put_blocking(L, d, &r);
}

/* db:delete(key, wopts) -> true | nil, msg, code (deleting a missing key is not an error) */
static int db_delete(lua_State *L)
{
    lkiwi_db *d = lkiwi_checkdb(L, 1);
    lkiwi_req r;
    lkiwi_req_init(&r, LKIWI_REQ_DELETE, d->db);
    r.key = lkiwi_checkbytes(L, 2, &r.klen);
    check_wopts(L, 3, &r);
    if (lkiwi_in_task(L)) {
        int n = lkiwi_task_write_one(L, d, &r);
        if (n >= 0)
            return n;
    }
    return run(L, d, &r);
}

/* db:get(key, ropts) -> value | nil | nil, msg, code */
static int db_get(lua_State *L)
{
    lkiwi_db *d = lkiwi_checkdb(L, 1);
    lkiwi_req r;
    lkiwi_req_init(&r, LKIWI_REQ_GET, d->db);
    r.key = lkiwi_checkbytes(L, 2, &r.klen);
    r.ro_store.fill_cache = true;
    r.ropts = lkiwi_check_ropts(L, 3, d, &r.ro_store);
    if (lkiwi_in_task(L))
        return lkiwi_task_get(L, d, &r);
    return get_blocking(L, d, &r);
}

/* db:write(batch, wopts) -> true | nil, msg, code: all of the batch or none of it */
static int db_write(lua_State *L)
{
    lkiwi_db *d = lkiwi_checkdb(L, 1);
    lkiwi_batch *b = lkiwi_checkbatch(L, 2);
    if (b->writing > 0)
        luaL_error(L, "attempt to write a kiwi batch that a task is writing");
    lkiwi_req r;
    lkiwi_req_init(&r, LKIWI_REQ_WRITE, d->db);
    r.batch = b->batch;
    check_wopts(L, 3, &r);
    if (lkiwi_in_task(L)) {
        int n = lkiwi_task_write_batch(L, d, &r, b);
        if (n >= 0)
            return n;
    }
    return run(L, d, &r);
}

/* db:flush() -> true | nil, msg, code: every memtable is in an SSTable on return */
static int db_flush(lua_State *L)
{
    lkiwi_db *d = lkiwi_checkdb(L, 1);
    lkiwi_req r;
    lkiwi_req_init(&r, LKIWI_REQ_FLUSH, d->db);
    if (lkiwi_in_task(L))
        return lkiwi_task_call(L, d, &r);
    return run(L, d, &r);
}

/* db:compact_range(start, stop) -> true | nil, msg, code (nil bounds are open) */
static int db_compact_range(lua_State *L)
{
    lkiwi_db *d = lkiwi_checkdb(L, 1);
    lkiwi_req r;
    lkiwi_req_init(&r, LKIWI_REQ_COMPACT, d->db);
    r.key = lkiwi_optbytes(L, 2, &r.klen);
    r.val = lkiwi_optbytes(L, 3, &r.vlen);
    if (lkiwi_in_task(L))
        return lkiwi_task_call(L, d, &r);
    return run(L, d, &r);
}

/* db:set_option(name, value) -> true | nil, msg, code (both strings) */
static int db_set_option(lua_State *L)
{
    lkiwi_db *d = lkiwi_checkdb(L, 1);
    const char *name = luaL_checkstring(L, 2);
    const char *value = lkiwi_checkbytes(L, 3, &(size_t){0});
    char *errmsg = NULL;
    kiwi_status st = kiwi_set_option(d->db, name, value, &errmsg);
    if (st != KIWI_OK)
        return lkiwi_push_fail(L, st, errmsg);
    lua_pushboolean(L, 1);
    return 1;
}

/* Pushes the JSON text json (owned) or nil. */
static int push_json(lua_State *L, char *json)
{
    if (json == NULL)
        lua_pushnil(L);
    else
        lkiwi_push_owned(L, json, strlen(json));
    return 1;
}

/* db:property_json(name) -> JSON string | nil (unknown name). "sstable:<id>" reads the whole
 * file: in a task it runs on a worker; the other properties are answered from memory. */
static int db_property_json(lua_State *L)
{
    lkiwi_db *d = lkiwi_checkdb(L, 1);
    const char *name = luaL_checkstring(L, 2);
    if (strncmp(name, "sstable:", 8) == 0 && lkiwi_in_task(L)) {
        lkiwi_req r;
        lkiwi_req_init(&r, LKIWI_REQ_PROPERTY, d->db);
        r.key = name;
        r.klen = strlen(name) + 1; /* with its NUL: the worker reads it as a C string */
        return lkiwi_task_call(L, d, &r);
    }
    return push_json(L, kiwi_property(d->db, name));
}

/* db:trace_json(key) -> JSON string | nil. A trace may read blocks: in a task, on a worker. */
static int db_trace_json(lua_State *L)
{
    lkiwi_db *d = lkiwi_checkdb(L, 1);
    size_t klen;
    const char *key = lkiwi_checkbytes(L, 2, &klen);
    if (lkiwi_in_task(L)) {
        lkiwi_req r;
        lkiwi_req_init(&r, LKIWI_REQ_TRACE, d->db);
        r.key = key;
        r.klen = klen;
        return lkiwi_task_call(L, d, &r);
    }
    return push_json(L, kiwi_trace(d->db, key, klen));
}

/* db:is_closed() -> boolean */
static int db_is_closed(lua_State *L)
{
    lkiwi_db *d = todb(L, 1);
    lua_pushboolean(L, d->db == NULL || d->closing);
    return 1;
}

/* db:path() -> the path it was opened with */
static int db_path(lua_State *L)
{
    todb(L, 1);
    lua_getiuservalue(L, 1, 2);
    return 1;
}

static const luaL_Reg db_meta[] = {
    {"__gc", db_gc},
    {"__close", db_close_quietly},
    {"__tostring", db_tostring},
    {NULL, NULL},
};

static const luaL_Reg db_methods[] = {
    {"put", db_put},
    {"get", db_get},
    {"delete", db_delete},
    {"write", db_write},
    {"scan", lkiwi_db_scan},
    {"snapshot", lkiwi_db_snapshot},
    {"flush", db_flush},
    {"compact_range", db_compact_range},
    {"set_option", db_set_option},
    {"property_json", db_property_json},
    {"trace_json", db_trace_json},
    {"is_closed", db_is_closed},
    {"poll_events_raw", lkiwi_db_poll_events},
    {"path", db_path},
    {"close", db_close},
    {NULL, NULL},
};

void lkiwi_db_register(lua_State *L)
{
    lkiwi_newclass(L, LKIWI_DB, db_meta, db_methods);
}
