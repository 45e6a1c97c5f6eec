/*
 * kiwi_snapshot.c: the Lua type kiwi.snapshot, made by db:snapshot(). Reads through it
 * (db:get(k, { snapshot = s }), db:scan(..., { snapshot = s })) see the db as it was when it was
 * taken. snap:release() is idempotent and shared with __gc and __close; a released snapshot, or
 * one whose db has closed, raises when used.
 */
#include "binding.h"

static lkiwi_snapshot *tosnap(lua_State *L, int arg)
{
    return (lkiwi_snapshot *)lkiwi_toudata(L, arg, LKIWI_SNAPSHOT);
}

lkiwi_snapshot *lkiwi_checksnapshot(lua_State *L, int arg)
{
    lkiwi_snapshot *s = tosnap(L, arg);
    if (s->snap == NULL)
        luaL_error(L, s->dbclosed ? "attempt to use a kiwi snapshot whose db is closed"
                                  : "attempt to use a released kiwi snapshot");
    return s;
}

/* Called by the db before kiwi_close: the snapshot dies with it. A snapshot a worker read still
 * uses is left to kiwi_close, unless the db is idle (every read finished its work). */
void lkiwi_snapshot_invalidate(lkiwi_snapshot *s, bool idle)
{
    const kiwi_snapshot *snap = s->snap != NULL ? s->snap : s->deferred;
    if (snap == NULL)
        return;
    if (s->pins == 0 || idle)
        kiwi_snapshot_release(s->db, snap);
    s->snap = NULL;
    s->deferred = NULL;
    s->db = NULL;
    s->dbclosed = true;
}

void lkiwi_snapshot_pin(lkiwi_snapshot *s)
{
    s->pins++;
}

void lkiwi_snapshot_unpin(lkiwi_snapshot *s)
{
    if (--s->pins == 0 && s->deferred != NULL) {
        kiwi_snapshot_release(s->db, s->deferred);
        s->deferred = NULL;
        s->db = NULL;
    }
}

/* db:snapshot() -> snapshot | nil, msg, code */
int lkiwi_db_snapshot(lua_State *L)
{
    lkiwi_db *d = lkiwi_checkdb(L, 1);
    lkiwi_snapshot *s = (lkiwi_snapshot *)lua_newuserdatauv(L, sizeof *s, 1); /* -- snap */
    s->snap = NULL; /* created released: nothing for __gc to do until the end */
    s->db = NULL;
    s->dbclosed = false;
    s->pins = 0;
    s->deferred = NULL;
    luaL_setmetatable(L, LKIWI_SNAPSHOT);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);
    lkiwi_db_adopt(L, 1, -1);
    const kiwi_snapshot *snap = kiwi_snapshot_create(d->db);
    if (snap == NULL)
        return lkiwi_push_fail(L, KIWI_CLOSED, NULL);
    s->snap = snap;
    s->db = d->db;
    return 1;
}

/* snap:release(), __gc, __close: idempotent. While a task's read through it is in flight the
 * engine snapshot is released when that read is delivered (a request anchors the snapshot, so
 * __gc never meets a pinned one, except when the Lua state closes: kiwi_close frees it then). */
static int snap_release(lua_State *L)
{
    lkiwi_snapshot *s = tosnap(L, 1);
    if (s->snap == NULL)
        return 0;
    if (s->pins > 0) {
        s->deferred = s->snap;
    } else {
        kiwi_snapshot_release(s->db, s->snap);
        s->db = NULL;
    }
    s->snap = NULL;
    lkiwi_db_disown(L, 1);
    return 0;
}

/* snap:sequence() -> integer: the sequence number the snapshot reads at */
static int snap_sequence(lua_State *L)
{
    lkiwi_snapshot *s = lkiwi_checksnapshot(L, 1);
    lua_pushinteger(L, (lua_Integer)kiwi_snapshot_sequence(s->snap));
    return 1;
}

/* snap:is_released() -> boolean */
static int snap_is_released(lua_State *L)
{
    lua_pushboolean(L, tosnap(L, 1)->snap == NULL);
    return 1;
}

static int snap_tostring(lua_State *L)
{
    lkiwi_snapshot *s = tosnap(L, 1);
    if (s->snap == NULL)
        lua_pushliteral(L, "kiwi.snapshot (released)");
    else
        lua_pushfstring(L, "kiwi.snapshot (seq %I)",
                        (lua_Integer)kiwi_snapshot_sequence(s->snap));
    return 1;
}

static const luaL_Reg snap_meta[] = {
    {"__gc", snap_release},
    {"__close", snap_release},
    {"__tostring", snap_tostring},
    {NULL, NULL},
};

static const luaL_Reg snap_methods[] = {
    {"release", snap_release},
    {"sequence", snap_sequence},
    {"is_released", snap_is_released},
    {NULL, NULL},
};

void lkiwi_snapshot_register(lua_State *L)
{
    lkiwi_newclass(L, LKIWI_SNAPSHOT, snap_meta, snap_methods);
}
