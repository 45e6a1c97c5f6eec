/*
 * kiwi_iter.c: the Lua type kiwi.iter and db:scan(start, stop, opts), the bounded, limited,
 * optionally reversed walk over one consistent view of the db.
 *
 *     for k, v in db:scan("a", "b", { reverse = true, limit = 10 }) do ... end
 *
 * db:scan returns (step, nil, nil, iter): a C closure for the generic for, and the kiwi.iter as
 * its to-be-closed value, so `break` (or an error in the loop body) destroys the engine iterator
 * at once (Lua 5.4's io.lines does the same with its file). Reaching the end destroys it too.
 *
 * The range is [lo, hi): lo = max(start, prefix), hi = min(stop, successor(prefix)), where the
 * successor of a prefix is the smallest string greater than every string starting with it. Forward
 * scans seek to lo and stop at the first key >= hi; reverse scans start at the last key < hi and
 * stop below lo. The bound strings live in the iter's user values, which keeps lo/hi valid.
 *
 * An engine error met while scanning (a corrupt block) raises the engine's message ("corruption:
 * <file> ..."): a generic for has no way to return nil, msg, code.
 */
#include <string.h>

#include "binding.h"

static int bytes_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int r = n ? memcmp(a, b, n) : 0;
    if (r != 0)
        return r;
    return alen < blen ? -1 : (alen > blen ? 1 : 0);
}

static lkiwi_iter *toiter(lua_State *L, int arg)
{
    return (lkiwi_iter *)luaL_checkudata(L, arg, LKIWI_ITER);
}

static void destroy_engine_iter(lkiwi_iter *it)
{
    if (it->it != NULL) {
        kiwi_iter_destroy(it->it);
        it->it = NULL;
    }
}

/* Called by the db before kiwi_close. */
void lkiwi_iter_invalidate(lkiwi_iter *it)
{
    destroy_engine_iter(it);
    if (!it->closed)
        it->dbclosed = true;
    it->closed = true;
    it->state = LKIWI_SCAN_DONE;
}

/* ---- stepping --------------------------------------------------------------------------------- */

/* The end of the scan: release the engine iterator early, return nil. */
static int finish(lua_State *L, lkiwi_iter *it)
{
    destroy_engine_iter(it);
    it->state = LKIWI_SCAN_DONE;
    lua_pushnil(L);
    return 1;
}

/* The engine iterator went invalid: the end, or an error (raised). */
static int finish_checked(lua_State *L, lkiwi_iter *it)
{
    char *errmsg = NULL;
    kiwi_status st = kiwi_iter_status(it->it, &errmsg);
    destroy_engine_iter(it);
    it->state = LKIWI_SCAN_DONE;
    if (st == KIWI_OK) {
        kiwi_free(errmsg);
        lua_pushnil(L);
        return 1;
    }
    if (errmsg != NULL)
        lkiwi_push_owned(L, errmsg, strlen(errmsg));
    else
        lua_pushstring(L, kiwi_status_name(st));
    return lua_error(L);
}

/* First step: forward to the first key >= lo; reverse to the last key < hi. */
static void position(lkiwi_iter *it)
{
    if (!it->reverse) {
        if (it->lo != NULL)
            kiwi_iter_seek(it->it, it->lo, it->lolen);
        else
            kiwi_iter_seek_to_first(it->it);
        return;
    }
    if (it->hi == NULL) {
        kiwi_iter_seek_to_last(it->it);
        return;
    }
    kiwi_iter_seek(it->it, it->hi, it->hilen);
    if (kiwi_iter_valid(it->it)) {
        kiwi_iter_prev(it->it);
    } else if (kiwi_iter_status(it->it, NULL) == KIWI_OK) {
        kiwi_iter_seek_to_last(it->it); /* every key is < hi */
    }
}

/* One step: pushes key, value (returns 2) or nil at the end (returns 1). */
static int step(lua_State *L, lkiwi_iter *it)
{
    if (it->closed)
        return luaL_error(L, it->dbclosed ? "attempt to use a kiwi iter whose db is closed"
                                          : "attempt to use a closed kiwi iter");
    if (it->state == LKIWI_SCAN_DONE) {
        lua_pushnil(L);
        return 1;
    }
    if (it->limit >= 0 && it->count >= it->limit)
        return finish(L, it);
    if (it->state == LKIWI_SCAN_START) {
        position(it);
        it->state = LKIWI_SCAN_RUN;
    } else if (it->reverse) {
        kiwi_iter_prev(it->it);
    } else {
        kiwi_iter_next(it->it);
    }
    if (!kiwi_iter_valid(it->it))
        return finish_checked(L, it);
    size_t klen, vlen;
    const char *key = kiwi_iter_key(it->it, &klen);
    if (!it->reverse && it->hi != NULL && bytes_cmp(key, klen, it->hi, it->hilen) >= 0)
        return finish(L, it);
    if (it->reverse && it->lo != NULL && bytes_cmp(key, klen, it->lo, it->lolen) < 0)
        return finish(L, it);
    const char *val = kiwi_iter_value(it->it, &vlen);
    it->count++;
    lua_pushlstring(L, key, klen);
    lua_pushlstring(L, val, vlen);
    return 2;
}

/* The generic-for function: the iter is upvalue 1; (state, control) are ignored. */
static int scan_step(lua_State *L)
{
    return step(L, (lkiwi_iter *)lua_touserdata(L, lua_upvalueindex(1)));
}

/* it:next() -> key, value | nil */
static int iter_next(lua_State *L)
{
    return step(L, toiter(L, 1));
}

/* it:close(), __gc, __close: idempotent. */
static int iter_close(lua_State *L)
{
    lkiwi_iter *it = toiter(L, 1);
    if (it->closed)
        return 0;
    destroy_engine_iter(it);
    it->closed = true;
    it->state = LKIWI_SCAN_DONE;
    lkiwi_db_disown(L, 1);
    return 0;
}

static int iter_tostring(lua_State *L)
{
    lkiwi_iter *it = toiter(L, 1);
    const char *state = it->closed ? "closed" : it->state == LKIWI_SCAN_DONE ? "done" : "open";
    lua_pushfstring(L, "kiwi.iter (%s, %I returned)", state, it->count);
    return 1;
}

/* ---- db:scan ---------------------------------------------------------------------------------- */

/* Pushes the successor of the prefix at idx, or nothing (returns 0) if it has none (empty or all
 * 0xff bytes: no upper bound). */
static int push_successor(lua_State *L, int idx)
{
    size_t n;
    const char *p = lua_tolstring(L, idx, &n);
    while (n > 0 && (unsigned char)p[n - 1] == 0xff)
        n--;
    if (n == 0)
        return 0;
    luaL_Buffer b;
    char *s = luaL_buffinitsize(L, &b, n);
    memcpy(s, p, n);
    s[n - 1] = (char)((unsigned char)s[n - 1] + 1);
    luaL_pushresultsize(&b, n);
    return 1;
}

/* Bytewise comparison of the strings in two stack slots. */
static int compare_slots(lua_State *L, int a, int b)
{
    size_t alen, blen;
    const char *as = lua_tolstring(L, a, &alen);
    const char *bs = lua_tolstring(L, b, &blen);
    return bytes_cmp(as, alen, bs, blen);
}

/* The scan options at arg 4 (table or nil). Leaves prefix (or nil) at the top; fills the rest. */
static void scan_options(lua_State *L, lkiwi_db *d, lkiwi_iter *it, kiwi_read_options *ro,
                         const kiwi_read_options **rop)
{
    *rop = NULL;
    if (!lkiwi_opttable(L, 4)) {
        lua_pushnil(L);
        return;
    }
    it->reverse = lkiwi_optboolfield(L, 4, "reverse") == 1;
    if (lua_getfield(L, 4, "limit") != LUA_TNIL) {
        int isint;
        lua_Integer n = lua_tointegerx(L, -1, &isint);
        if (!isint || n < 0)
            luaL_error(L, "bad option 'limit' (non-negative integer expected)");
        it->limit = n;
    }
    lua_pop(L, 1);
    *rop = lkiwi_check_ropts(L, 4, d, ro);
    int t = lua_getfield(L, 4, "prefix"); /* -- prefix */
    if (t != LUA_TNIL && t != LUA_TSTRING)
        luaL_error(L, "bad option 'prefix' (string expected, got %s)", luaL_typename(L, -1));
}

/*
** db:scan(start, stop, opts) -> step, nil, nil, iter
** opts = { reverse = bool, limit = n, prefix = str, snapshot = snap, fill_cache = bool }
*/
int lkiwi_db_scan(lua_State *L)
{
    lkiwi_db *d = lkiwi_checkdb(L, 1);
    size_t len;
    int lo = lkiwi_optbytes(L, 2, &len) != NULL ? 2 : 0; /* stack slots of the bounds, 0: open */
    int hi = lkiwi_optbytes(L, 3, &len) != NULL ? 3 : 0;
    lua_settop(L, 4);

    lkiwi_iter *it = (lkiwi_iter *)lua_newuserdatauv(L, sizeof *it, 4); /* -- iter */
    memset(it, 0, sizeof *it);
    it->closed = true; /* created closed, opened below */
    it->state = LKIWI_SCAN_DONE;
    it->limit = -1;
    luaL_setmetatable(L, LKIWI_ITER);
    int itidx = lua_gettop(L);

    kiwi_read_options ro;
    const kiwi_read_options *rop;
    scan_options(L, d, it, &ro, &rop); /* -- iter prefix */
    int prefix = lua_gettop(L);
    if (!lua_isnil(L, prefix)) {
        if (lo == 0 || compare_slots(L, prefix, lo) > 0)
            lo = prefix;
        if (push_successor(L, prefix)) { /* -- iter prefix succ */
            int succ = lua_gettop(L);
            if (hi == 0 || compare_slots(L, succ, hi) < 0)
                hi = succ;
        }
    }

    lua_pushvalue(L, 1);
    lua_setiuservalue(L, itidx, 1);
    if (lo != 0) {
        lua_pushvalue(L, lo);
        lua_setiuservalue(L, itidx, 2);
        it->lo = lua_tolstring(L, lo, &it->lolen);
    }
    if (hi != 0) {
        lua_pushvalue(L, hi);
        lua_setiuservalue(L, itidx, 3);
        it->hi = lua_tolstring(L, hi, &it->hilen);
    }
    if (rop != NULL && rop->snapshot != NULL) {
        lua_getfield(L, 4, "snapshot");
        lua_setiuservalue(L, itidx, 4);
    }
    lkiwi_db_adopt(L, 1, itidx);

    it->closed = false;
    bool empty = it->lo != NULL && it->hi != NULL &&
                 bytes_cmp(it->lo, it->lolen, it->hi, it->hilen) >= 0;
    if (!empty) {
        it->it = kiwi_iter_create(d->db, rop);
        if (it->it == NULL)
            return lkiwi_push_fail(L, KIWI_CLOSED, NULL);
        it->state = LKIWI_SCAN_START;
    }

    lua_pushvalue(L, itidx);
    lua_pushcclosure(L, scan_step, 1); /* -- ... step */
    lua_pushnil(L);
    lua_pushnil(L);
    lua_pushvalue(L, itidx); /* -- ... step nil nil iter */
    return 4;
}

static const luaL_Reg iter_meta[] = {
    {"__gc", iter_close},
    {"__close", iter_close},
    {"__tostring", iter_tostring},
    {NULL, NULL},
};

static const luaL_Reg iter_methods[] = {
    {"next", iter_next},
    {"close", iter_close},
    {NULL, NULL},
};

void lkiwi_iter_register(lua_State *L)
{
    lkiwi_newclass(L, LKIWI_ITER, iter_meta, iter_methods);
}
