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
 *
 * Outside a task each step moves the engine iterator inline. Inside a task a step that needs the
 * engine hands a fill job to a worker: it positions or advances the iterator and copies up to
 * `batch` pairs (32 at first, doubling to LKIWI_FILL_MAX, at most LKIWI_FILL_BYTES) into a
 * buffer; the task yields once per job and the following steps are served from the buffer with
 * no thread hop, so a scan of 1M keys costs about a thousand hops. The engine iterator always sits
 * on the last pair fetched, so inline steps and fill jobs can alternate on one scan.
 */
#include <stdio.h>
#include <stdlib.h>
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
    return (lkiwi_iter *)lkiwi_toudata(L, arg, LKIWI_ITER);
}

static void destroy_engine_iter(lkiwi_iter *it)
{
    if (it->cur.it != NULL) {
        kiwi_iter_destroy(it->cur.it);
        it->cur.it = NULL;
    }
}

/* Frees the prefetched pairs and the end-of-scan message. */
static void drop_buffer(lkiwi_iter *it)
{
    free(it->buf.data);
    memset(&it->buf, 0, sizeof it->buf);
    kiwi_free(it->eof_msg);
    it->eof_msg = NULL;
}

void lkiwi_iter_invalidate(lkiwi_iter *it, bool idle)
{
    if (it->cur.it != NULL) {
        if (!it->job || idle)
            kiwi_iter_destroy(it->cur.it);
        it->cur.it = NULL; /* destroyed, or kiwi_close frees it after the fill job's work */
    }
    drop_buffer(it);
    if (!it->closed)
        it->dbclosed = true;
    it->closed = true;
    it->state = LKIWI_SCAN_DONE;
}

/* ---- the cursor: inline steps and fill jobs walk the engine iterator with these --------------- */

/* First step: forward to the first key >= lo; reverse to the last key < hi. */
static void cursor_position(const lkiwi_cursor *c)
{
    if (!c->reverse) {
        if (c->lo != NULL)
            kiwi_iter_seek(c->it, c->lo, c->lolen);
        else
            kiwi_iter_seek_to_first(c->it);
        return;
    }
    if (c->hi == NULL) {
        kiwi_iter_seek_to_last(c->it);
        return;
    }
    kiwi_iter_seek(c->it, c->hi, c->hilen);
    if (kiwi_iter_valid(c->it)) {
        kiwi_iter_prev(c->it);
    } else if (kiwi_iter_status(c->it, NULL) == KIWI_OK) {
        kiwi_iter_seek_to_last(c->it); /* every key is < hi */
    }
}

static void cursor_move(const lkiwi_cursor *c, bool first)
{
    if (first)
        cursor_position(c);
    else if (c->reverse)
        kiwi_iter_prev(c->it);
    else
        kiwi_iter_next(c->it);
}

/* The pair under the cursor, if it is valid and inside the range. */
static bool cursor_read(const lkiwi_cursor *c, const char **k, size_t *klen, const char **v,
                        size_t *vlen)
{
    if (!kiwi_iter_valid(c->it))
        return false;
    *k = kiwi_iter_key(c->it, klen);
    if (!c->reverse && c->hi != NULL && bytes_cmp(*k, *klen, c->hi, c->hilen) >= 0)
        return false;
    if (c->reverse && c->lo != NULL && bytes_cmp(*k, *klen, c->lo, c->lolen) < 0)
        return false;
    *v = kiwi_iter_value(c->it, vlen);
    return true;
}

/* ---- fill jobs (worker thread) ---------------------------------------------------------------- */

static void buf_append(lkiwi_buf *b, const char *k, size_t klen, const char *v, size_t vlen)
{
    size_t need = b->len + 8 + klen + vlen;
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < need)
            cap *= 2;
        char *p = (char *)realloc(b->data, cap);
        if (p == NULL) { /* as the engine does: no honest recovery from this */
            fputs("kiwi: out of memory in a scan\n", stderr);
            abort();
        }
        b->data = p;
        b->cap = cap;
    }
    uint32_t lens[2] = {(uint32_t)klen, (uint32_t)vlen};
    memcpy(b->data + b->len, lens, 8);
    if (klen)
        memcpy(b->data + b->len + 8, k, klen);
    if (vlen)
        memcpy(b->data + b->len + 8 + klen, v, vlen);
    b->len = need;
    b->n++;
}

/* Copies up to f->max pairs (or LKIWI_FILL_BYTES) out of the engine iterator. */
static void fill_run(lkiwi_areq *a)
{
    lkiwi_fill *f = &a->fill;
    for (uint32_t i = 0; i < f->max && f->buf.len < LKIWI_FILL_BYTES; i++) {
        cursor_move(&f->cur, f->first && i == 0);
        const char *k, *v;
        size_t klen, vlen;
        if (!cursor_read(&f->cur, &k, &klen, &v, &vlen)) {
            f->eof = true;
            f->status = kiwi_iter_valid(f->cur.it) ? KIWI_OK
                                                   : kiwi_iter_status(f->cur.it, &f->errmsg);
            return;
        }
        buf_append(&f->buf, k, klen, v, vlen);
    }
}

/* Loop thread: the job's pairs become the iter's buffer; resumes the task with the iter. */
static int fill_finish(lua_State *L, lkiwi_areq *a)
{
    lkiwi_iter *it = (lkiwi_iter *)a->obj;
    lkiwi_fill *f = &a->fill;
    it->job = false;
    if (it->closed) { /* by the user meanwhile (its engine iterator waited for us), or by the db */
        destroy_engine_iter(it);
        lua_rawgeti(L, LUA_REGISTRYINDEX, a->refs[1]);
        lkiwi_db_disown(L, -1);
        lua_pop(L, 1);
        return lkiwi_push_raise(L, it->dbclosed ? "attempt to use a kiwi iter whose db is closed"
                                                : "attempt to use a closed kiwi iter");
    }
    free(it->buf.data);
    it->buf = f->buf;
    memset(&f->buf, 0, sizeof f->buf);
    it->fetched += it->buf.n;
    it->state = LKIWI_SCAN_RUN;
    if (f->eof) {
        it->eof = true;
        it->eof_status = f->status;
        it->eof_msg = f->errmsg; /* malloc'd by the engine: kiwi_free is free */
        f->errmsg = NULL;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, a->refs[1]); /* the continuation steps it again */
    return 1;
}

static int step(lua_State *L, lkiwi_iter *it, int itidx);

static int fill_k(lua_State *L, int status, lua_KContext ctx)
{
    lkiwi_check_raise(L);
    return step(L, toiter(L, 1), 1);
}

/* In a task: a worker fetches the next pairs; the task yields meanwhile. */
static int submit_fill(lua_State *L, lkiwi_iter *it, int itidx)
{
    lua_getiuservalue(L, itidx, 1); /* -- db */
    lkiwi_db *d = (lkiwi_db *)lua_touserdata(L, -1);
    lua_pop(L, 1);
    lkiwi_areq *a = lkiwi_areq_new(L, d);
    a->run = fill_run;
    a->finish = fill_finish;
    a->obj = it;
    a->fill.cur = it->cur;
    a->fill.first = it->state == LKIWI_SCAN_START;
    a->fill.max = it->batch;
    if (it->limit >= 0 && it->limit - it->fetched < (lua_Integer)a->fill.max)
        a->fill.max = (uint32_t)(it->limit - it->fetched);
    lkiwi_areq_anchor(L, a, 1, itidx);
    it->job = true;
    it->batch = it->batch * 2 > LKIWI_FILL_MAX ? LKIWI_FILL_MAX : it->batch * 2;
    return lkiwi_submit_work(L, a, fill_k, 0);
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

/* The end of the scan with status st (message msg, owned; NULL: the status name): nil, or the
 * error raised. */
static int finish_status(lua_State *L, lkiwi_iter *it, kiwi_status st, char *msg)
{
    destroy_engine_iter(it);
    it->state = LKIWI_SCAN_DONE;
    if (st == KIWI_OK) {
        kiwi_free(msg);
        lua_pushnil(L);
        return 1;
    }
    if (msg != NULL)
        lkiwi_push_owned(L, msg, strlen(msg));
    else
        lua_pushstring(L, kiwi_status_name(st));
    return lua_error(L);
}

/* Returns the next prefetched pair. */
static int pop_buffered(lua_State *L, lkiwi_iter *it)
{
    lkiwi_buf *b = &it->buf;
    uint32_t lens[2];
    memcpy(lens, b->data + b->pos, 8);
    const char *k = b->data + b->pos + 8;
    b->pos += 8 + (size_t)lens[0] + lens[1];
    b->n--;
    it->count++;
    lua_pushlstring(L, k, lens[0]);
    lua_pushlstring(L, k + lens[0], lens[1]);
    if (b->n == 0) {
        free(b->data);
        memset(b, 0, sizeof *b);
    }
    return 2;
}

/* One step: pushes key, value (returns 2) or nil at the end (returns 1). itidx holds the iter. */
static int step(lua_State *L, lkiwi_iter *it, int itidx)
{
    if (it->closed)
        return luaL_error(L, it->dbclosed ? "attempt to use a kiwi iter whose db is closed"
                                          : "attempt to use a closed kiwi iter");
    if (it->buf.n > 0)
        return pop_buffered(L, it);
    if (it->state == LKIWI_SCAN_DONE) {
        lua_pushnil(L);
        return 1;
    }
    if (it->eof) {
        char *msg = it->eof_msg;
        it->eof_msg = NULL;
        return finish_status(L, it, it->eof_status, msg);
    }
    if (it->limit >= 0 && it->fetched >= it->limit)
        return finish(L, it);
    if (it->job)
        return luaL_error(L, "attempt to use a kiwi iter that another task is reading");
    if (lkiwi_in_task(L))
        return submit_fill(L, it, itidx);
    cursor_move(&it->cur, it->state == LKIWI_SCAN_START);
    it->state = LKIWI_SCAN_RUN;
    const char *key, *val;
    size_t klen, vlen;
    if (!cursor_read(&it->cur, &key, &klen, &val, &vlen)) {
        if (kiwi_iter_valid(it->cur.it))
            return finish(L, it); /* past the bound */
        char *errmsg = NULL;
        kiwi_status st = kiwi_iter_status(it->cur.it, &errmsg);
        return finish_status(L, it, st, errmsg);
    }
    it->count++;
    it->fetched++;
    lua_pushlstring(L, key, klen);
    lua_pushlstring(L, val, vlen);
    return 2;
}

/* The generic-for function: the iter is upvalue 1; (state, control) are ignored. */
static int scan_step(lua_State *L)
{
    lua_settop(L, 0);
    lua_pushvalue(L, lua_upvalueindex(1));
    return step(L, (lkiwi_iter *)lua_touserdata(L, 1), 1);
}

/* it:next() -> key, value | nil */
static int iter_next(lua_State *L)
{
    lkiwi_iter *it = toiter(L, 1);
    lua_settop(L, 1);
    return step(L, it, 1);
}

/* it:close(), __gc, __close: idempotent. With a fill job in flight the engine iterator is
 * destroyed when the job is delivered (only a closing Lua state meets that in __gc, and leaves it
 * to kiwi_close). */
static int iter_close(lua_State *L)
{
    lkiwi_iter *it = toiter(L, 1);
    if (it->closed)
        return 0;
    drop_buffer(it);
    it->closed = true;
    it->state = LKIWI_SCAN_DONE;
    if (it->job)
        return 0;
    destroy_engine_iter(it);
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
    it->cur.reverse = lkiwi_optboolfield(L, 4, "reverse") == 1;
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
    it->batch = LKIWI_FILL_FIRST;
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
        it->cur.lo = lua_tolstring(L, lo, &it->cur.lolen);
    }
    if (hi != 0) {
        lua_pushvalue(L, hi);
        lua_setiuservalue(L, itidx, 3);
        it->cur.hi = lua_tolstring(L, hi, &it->cur.hilen);
    }
    if (rop != NULL && rop->snapshot != NULL) {
        lua_getfield(L, 4, "snapshot");
        lua_setiuservalue(L, itidx, 4);
    }
    lkiwi_db_adopt(L, 1, itidx);

    it->closed = false;
    bool empty = it->cur.lo != NULL && it->cur.hi != NULL &&
                 bytes_cmp(it->cur.lo, it->cur.lolen, it->cur.hi, it->cur.hilen) >= 0;
    if (!empty) {
        it->cur.it = kiwi_iter_create(d->db, rop);
        if (it->cur.it == NULL)
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
