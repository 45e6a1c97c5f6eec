/*
 * kiwi_batch.c: the Lua type kiwi.batch, made by kiwi.batch(): puts and deletes recorded in
 * memory and applied atomically by db:write(batch). A batch belongs to no db and can be written
 * to several. b:close() (also __gc and __close) frees it; other methods on a closed batch raise.
 */
#include "binding.h"

/* b:put runs once per key: the tagged type test (lkiwi_checktagged; only lkiwi_batch_new writes
 * batch_tag's address). */
static const char batch_tag;

static lkiwi_batch *tobatch(lua_State *L, int arg)
{
    return (lkiwi_batch *)lkiwi_checktagged(L, arg, sizeof(lkiwi_batch), &batch_tag, LKIWI_BATCH);
}

lkiwi_batch *lkiwi_checkbatch(lua_State *L, int arg)
{
    lkiwi_batch *b = tobatch(L, arg);
    if (b->batch == NULL || b->close_pending)
        luaL_error(L, "attempt to use a closed kiwi batch");
    return b;
}

/* A batch that may change: open and not being written by a task. */
static lkiwi_batch *checkmutable(lua_State *L, int arg)
{
    lkiwi_batch *b = lkiwi_checkbatch(L, arg);
    if (b->writing > 0)
        luaL_error(L, "attempt to change a kiwi batch while a task writes it");
    return b;
}

void lkiwi_batch_written(lkiwi_batch *b)
{
    if (--b->writing == 0 && b->close_pending) {
        kiwi_batch_destroy(b->batch);
        b->batch = NULL;
        b->close_pending = false;
    }
}

/* core.batch() -> batch */
int lkiwi_batch_new(lua_State *L)
{
    lkiwi_batch *b = (lkiwi_batch *)lua_newuserdatauv(L, sizeof *b, 0); /* -- batch */
    b->tag = &batch_tag;
    b->batch = NULL;
    b->writing = 0;
    b->close_pending = false;
    luaL_setmetatable(L, LKIWI_BATCH);
    b->batch = kiwi_batch_create();
    return 1;
}

/* b:put(key, value) -> b */
static int batch_put(lua_State *L)
{
    lkiwi_batch *b = checkmutable(L, 1);
    size_t klen, vlen;
    const char *key = lkiwi_checkbytes(L, 2, &klen);
    const char *val = lkiwi_checkbytes(L, 3, &vlen);
    kiwi_batch_put(b->batch, key, klen, val, vlen);
    lua_settop(L, 1);
    return 1;
}

/* b:delete(key) -> b */
static int batch_delete(lua_State *L)
{
    lkiwi_batch *b = checkmutable(L, 1);
    size_t klen;
    const char *key = lkiwi_checkbytes(L, 2, &klen);
    kiwi_batch_delete(b->batch, key, klen);
    lua_settop(L, 1);
    return 1;
}

/* b:clear() -> b */
static int batch_clear(lua_State *L)
{
    kiwi_batch_clear(checkmutable(L, 1)->batch);
    lua_settop(L, 1);
    return 1;
}

/* b:count() -> integer: operations recorded */
static int batch_count(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)kiwi_batch_count(lkiwi_checkbatch(L, 1)->batch));
    return 1;
}

/* b:close(), __gc, __close: idempotent. A batch a task is writing is destroyed when that write
 * is delivered (the request anchors it, so only a closing Lua state meets that in __gc, and
 * leaves the batch to the process exit). */
static int batch_close(lua_State *L)
{
    lkiwi_batch *b = tobatch(L, 1);
    if (b->writing > 0) {
        b->close_pending = true;
        return 0;
    }
    if (b->batch != NULL) {
        kiwi_batch_destroy(b->batch);
        b->batch = NULL;
    }
    return 0;
}

static int batch_tostring(lua_State *L)
{
    lkiwi_batch *b = tobatch(L, 1);
    if (b->batch == NULL || b->close_pending)
        lua_pushliteral(L, "kiwi.batch (closed)");
    else
        lua_pushfstring(L, "kiwi.batch (%I ops)", (lua_Integer)kiwi_batch_count(b->batch));
    return 1;
}

static const luaL_Reg batch_meta[] = {
    {"__gc", batch_close},
    {"__close", batch_close},
    {"__tostring", batch_tostring},
    {NULL, NULL},
};

static const luaL_Reg batch_methods[] = {
    {"put", batch_put},
    {"delete", batch_delete},
    {"clear", batch_clear},
    {"count", batch_count},
    {"close", batch_close},
    {NULL, NULL},
};

void lkiwi_batch_register(lua_State *L)
{
    lkiwi_newclass(L, LKIWI_BATCH, batch_meta, batch_methods);
}
