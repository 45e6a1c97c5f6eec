/*
 * kiwi_core.c: the entry of the Lua C module kiwi.core (luaopen_kiwi_core) and the helpers the
 * per-type files share: strict byte-string arguments, option tables, the failure triple, and
 * to-be-closed boxes for temporary C memory.
 *
 * The module table: open(path, mode, settings, on_event), batch(), status_name(code), version,
 * db_methods (the __index table of kiwi.db, which lua/kiwi/init.lua extends with the methods
 * written in Lua), and the task side (kiwi_loop.c): WAIT, tasks, set_dispatch(fn), pending().
 */
#include <string.h>

#include "binding.h"

/* ---- arguments -------------------------------------------------------------------------------- */

const char *lkiwi_optbytes(lua_State *L, int arg, size_t *len)
{
    if (lua_isnoneornil(L, arg)) {
        *len = 0;
        return NULL;
    }
    return lkiwi_checkbytes(L, arg, len);
}

int lkiwi_optboolfield(lua_State *L, int arg, const char *name)
{
    int t = lua_getfield(L, arg, name); /* opts -- opts v */
    int r = -1;
    if (t == LUA_TBOOLEAN)
        r = lua_toboolean(L, -1);
    else if (t != LUA_TNIL)
        luaL_error(L, "bad option '%s' (boolean expected, got %s)", name, luaL_typename(L, -1));
    lua_pop(L, 1);
    return r;
}

/* ---- results ---------------------------------------------------------------------------------- */

#define LKIWI_PUSH_COPY_MAX 2048 /* values up to this size are pushed from a stack copy */

/* Protected body of lkiwi_push_owned: (lightuserdata p, integer n) -- string */
static int push_bytes(lua_State *L)
{
    const char *p = (const char *)lua_touserdata(L, 1);
    size_t n = (size_t)lua_tointeger(L, 2);
    if (n == 0)
        lua_pushliteral(L, "");
    else
        lua_pushlstring(L, p, n);
    return 1;
}

void lkiwi_push_owned(lua_State *L, char *p, size_t n)
{
    if (n <= LKIWI_PUSH_COPY_MAX) {
        /* small (the common value): copy to the C stack and free first, so a memory error raised
         * by the push leaks nothing, without the cost of a protected call */
        char copy[LKIWI_PUSH_COPY_MAX];
        if (n > 0)
            memcpy(copy, p, n);
        kiwi_free(p);
        lua_pushlstring(L, copy, n);
        return;
    }
    lua_pushcfunction(L, push_bytes);
    lua_pushlightuserdata(L, p);
    lua_pushinteger(L, (lua_Integer)n);
    int rc = lua_pcall(L, 2, 1, 0); /* -- string | err */
    kiwi_free(p);
    if (rc != LUA_OK)
        lua_error(L);
}

int lkiwi_push_fail(lua_State *L, kiwi_status st, char *errmsg)
{
    lua_pushnil(L);
    if (errmsg != NULL)
        lkiwi_push_owned(L, errmsg, strlen(errmsg));
    else
        lua_pushstring(L, kiwi_status_name(st));
    lua_pushstring(L, kiwi_status_name(st)); /* -- nil msg code */
    return 3;
}

/* ---- boxes ------------------------------------------------------------------------------------ */

typedef struct {
    void *p;
    void (*fn)(void *);
} lkiwi_box;

static int box_close(lua_State *L)
{
    lkiwi_box *b = (lkiwi_box *)luaL_checkudata(L, 1, LKIWI_BOX);
    if (b->p != NULL) {
        void *p = b->p;
        b->p = NULL;
        b->fn(p);
    }
    return 0;
}

void **lkiwi_newbox(lua_State *L, void (*fn)(void *))
{
    lkiwi_box *b = (lkiwi_box *)lua_newuserdatauv(L, sizeof *b, 0);
    b->p = NULL;
    b->fn = fn;
    luaL_setmetatable(L, LKIWI_BOX);
    lua_toclose(L, -1);
    return &b->p;
}

/* ---- classes ---------------------------------------------------------------------------------- */

void lkiwi_newclass(lua_State *L, const char *name, const luaL_Reg *meta, const luaL_Reg *methods)
{
    luaL_newmetatable(L, name); /* sets __name */
    /* the registry keeps the metatable alive: its address stays its own (lkiwi_toudata) */
    const void *mt = lua_topointer(L, -1);
    lua_pushlightuserdata(L, (void *)mt);
    luaL_setfuncs(L, meta, 1);
    if (methods != NULL) {
        lua_newtable(L);
        lua_pushlightuserdata(L, (void *)mt);
        luaL_setfuncs(L, methods, 1);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
}

void *lkiwi_toudata(lua_State *L, int arg, const char *tname)
{
    void *p = lua_touserdata(L, arg);
    if (p != NULL && lua_getmetatable(L, arg)) {
        const void *mt = lua_topointer(L, -1);
        lua_pop(L, 1);
        if (mt == lua_touserdata(L, lua_upvalueindex(LKIWI_UP_META)))
            return p;
    }
    return luaL_checkudata(L, arg, tname); /* another type, or no such upvalue: the slow test */
}

/* ---- module ----------------------------------------------------------------------------------- */

/* core.status_name(n): the status name of a kiwi_status number (for tools and tests). */
static int core_status_name(lua_State *L)
{
    lua_pushstring(L, kiwi_status_name((kiwi_status)luaL_checkinteger(L, 1)));
    return 1;
}

static const luaL_Reg box_meta[] = {
    {"__gc", box_close},
    {"__close", box_close},
    {NULL, NULL},
};

static const luaL_Reg core_funcs[] = {
    {"open", lkiwi_db_open},
    {"batch", lkiwi_batch_new},
    {"status_name", core_status_name},
    {NULL, NULL},
};

int luaopen_kiwi_core(lua_State *L);

int luaopen_kiwi_core(lua_State *L)
{
    lkiwi_newclass(L, LKIWI_BOX, box_meta, NULL);
    lkiwi_db_register(L);
    lkiwi_iter_register(L);
    lkiwi_snapshot_register(L);
    lkiwi_batch_register(L);

    luaL_newlib(L, core_funcs);
    lkiwi_loop_register(L); /* the loop state; WAIT, tasks, set_dispatch, pending */
    lua_pushliteral(L, KIWI_VERSION_STRING);
    lua_setfield(L, -2, "version");
    luaL_getmetatable(L, LKIWI_DB);
    lua_getfield(L, -1, "__index");
    lua_setfield(L, -3, "db_methods");
    lua_pop(L, 1); /* -- core */
    return 1;
}
