/*
 * kiwi_loop.c: the task side of kiwi.core: the loop state of a lua_State, how a task's engine call
 * leaves the loop thread (a uv worker job, or kiwi_write_async), and how its completion comes back
 * and resumes exactly that task.
 *
 *   task (loop thread)            worker / engine thread            loop thread
 *   ------------------            ----------------------            -----------
 *   lkiwi_submit_work  --queue-->  work_cb: run the engine call --> after_work_cb ---+
 *   lkiwi_submit_write --queue-->  commit thread: write_done    --> async_cb --------+
 *     yields WAIT                    (completion queue, mutex)                        |
 *                                                         complete: finish(a) pushes the
 *                                                         results; dispatcher(co, ...) resumes
 *
 * The dispatcher is the Lua function task.lua registers with core.set_dispatch; it resumes the
 * coroutine only if that task is still waiting, so a dead or abandoned task is never resumed.
 * Every callback into Lua runs on the main thread (lua_State *L of the state), never on a
 * coroutine's. When the lua_State closes (state_gc) the state turns `dead`: completions arriving
 * later free their request and touch no Lua; the state itself is freed with the last request.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* luv.h declares `lua_State *(*luv_acquire_vm)()`, not a prototype: keep -Werror quiet on it. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#include <luv/luv.h>
#pragma GCC diagnostic pop

#include "binding.h"

/* Addresses used as registry keys and markers (constants, not state). */
static const char WAIT_KEY = 'w';     /* the value a task yields while kiwi waits for it */
static const char RAISE_KEY = 'r';    /* first resume value: raise the second */
static const char TASKS_KEY = 't';    /* registry: the weak-keyed table of task coroutines */
static const char DISPATCH_KEY = 'd'; /* registry: the dispatcher function */
static const char STATE_KEY = 's';    /* registry: the state box */

#define DRAIN_MAX 512 /* completions delivered per async callback: the loop stays responsive */
#define DRAIN_BUDGET_NS 1000000 /* ... and no new delivery starts after 1 ms in one callback */

#define STATE_OF(h) ((lkiwi_state *)((char *)(h) - offsetof(lkiwi_state, async)))

/* ---- the state ------------------------------------------------------------------------------- */

/* The registry's box holding the state pointer (NULL once the Lua state is closing). */
typedef struct {
    lkiwi_state *st;
} state_box;

lkiwi_state *lkiwi_state_get(lua_State *L)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &STATE_KEY); /* -- box */
    state_box *box = (state_box *)lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (box == NULL || box->st == NULL) {
        luaL_error(L, "kiwi.core: the loop state is gone (the Lua state is closing)");
        return NULL; /* not reached */
    }
    return box->st;
}

static void state_destroy(lkiwi_state *st)
{
    pthread_mutex_destroy(&st->mu);
    pthread_cond_destroy(&st->idle_cv);
    free(st);
}

/* Frees st if it is dead, its handle closed and no request is left. REQUIRES: st->mu held;
 * releases it. */
static void state_unlock_maybe_free(lkiwi_state *st)
{
    bool last = st->dead && st->handle_closed && st->nreqs == 0;
    pthread_mutex_unlock(&st->mu);
    if (last)
        state_destroy(st);
}

void lkiwi_state_wake(lkiwi_state *st)
{
    if (!st->signalled && !st->dead) {
        st->signalled = true;
        uv_async_send(&st->async);
    }
}

/* ---- requests -------------------------------------------------------------------------------- */

lkiwi_areq *lkiwi_areq_new(lua_State *L, lkiwi_db *d)
{
    lkiwi_state *st = lkiwi_state_get(L);
    lkiwi_areq *a = (lkiwi_areq *)calloc(1, sizeof *a);
    if (a == NULL) {
        luaL_error(L, "not enough memory");
        return NULL; /* not reached */
    }
    a->st = st;
    a->d = d;
    a->co_ref = LUA_NOREF;
    a->refs[0] = a->refs[1] = LUA_NOREF;
    pthread_mutex_lock(&st->mu);
    st->nreqs++;
    pthread_mutex_unlock(&st->mu);
    return a;
}

void lkiwi_areq_anchor(lua_State *L, lkiwi_areq *a, int slot, int idx)
{
    lua_pushvalue(L, idx);
    a->refs[slot] = luaL_ref(L, LUA_REGISTRYINDEX);
}

void lkiwi_areq_free(lkiwi_areq *a)
{
    lkiwi_state *st = a->st;
    lkiwi_req_discard(&a->r);
    if (a->r.opened != NULL) /* opened for a task that never took it (the state closed) */
        kiwi_close(a->r.opened);
    free(a->copy);
    if (a->own_batch != NULL)
        kiwi_batch_destroy(a->own_batch);
    if (a->opts != NULL)
        kiwi_options_destroy(a->opts);
    free(a->fill.buf.data);
    kiwi_free(a->fill.errmsg);
    free(a);
    pthread_mutex_lock(&st->mu);
    st->nreqs--;
    state_unlock_maybe_free(st);
}

/* Releases the Lua references of a. */
static void areq_unref(lua_State *L, lkiwi_areq *a)
{
    luaL_unref(L, LUA_REGISTRYINDEX, a->co_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, a->refs[0]);
    luaL_unref(L, LUA_REGISTRYINDEX, a->refs[1]);
    a->co_ref = a->refs[0] = a->refs[1] = LUA_NOREF;
}

/* Releases the Lua references of a and frees it. Loop thread, live state. */
static void areq_drop(lua_State *L, lkiwi_areq *a)
{
    areq_unref(L, a);
    lkiwi_areq_free(a);
}

/* ---- delivery (loop thread) ------------------------------------------------------------------ */

/* Protected: (lightuserdata a) -- . Runs finish, moves its results onto the waiting coroutine's
 * own stack, then calls dispatcher(co), which resumes it with no arguments: the continuation
 * finds the results on its stack. (Passing them as resume arguments would leave copies on the
 * main thread's stack for as long as the task runs, keeping handles from being collected.) */
static int deliver_p(lua_State *L)
{
    lkiwi_areq *a = (lkiwi_areq *)lua_touserdata(L, 1);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &DISPATCH_KEY); /* -- a fn */
    lua_rawgeti(L, LUA_REGISTRYINDEX, a->co_ref);     /* -- a fn co */
    lua_State *co = lua_tothread(L, 3);
    int n = a->finish != NULL ? a->finish(L, a) : lkiwi_req_push(L, &a->r);
    if (co != NULL && lua_status(co) == LUA_YIELD && lua_gettop(co) == 0 &&
        lua_checkstack(co, n))
        lua_xmove(L, co, n);
    else
        lua_pop(L, n); /* the task is gone: nobody takes the results */
    areq_unref(L, a); /* before the task runs on: what it dropped may be collected meanwhile */
    if (lua_isnil(L, 2))
        return 0; /* no dispatcher: no task can be waiting */
    lua_call(L, 1, 0);
    return 0;
}

/* Delivers one completion on the loop thread, or frees it if the state is closing. */
static void complete(lkiwi_state *st, lkiwi_areq *a)
{
    if (a->is_write && --st->writes_pending == 0 && !st->dead)
        uv_unref((uv_handle_t *)&st->async);
    if (st->dead) {
        lkiwi_areq_free(a);
        return;
    }
    lua_State *L = st->L;
    int top = lua_gettop(L);
    lua_pushcfunction(L, deliver_p);
    lua_pushlightuserdata(L, a);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        fprintf(stderr, "kiwi: delivering a completion failed: %s\n", msg ? msg : "(error object)");
    }
    lua_settop(L, top);
    areq_drop(L, a);
}

/* Puts the undelivered rest of a drained list back at the head of the queue (oldest first still)
 * and asks for another callback. */
static void requeue(lkiwi_state *st, lkiwi_areq *list)
{
    lkiwi_areq *last = list;
    while (last->next != NULL)
        last = last->next;
    pthread_mutex_lock(&st->mu);
    last->next = st->done_head;
    if (st->done_head == NULL)
        st->done_tail = last;
    st->done_head = list;
    lkiwi_state_wake(st);
    pthread_mutex_unlock(&st->mu);
}

/* Delivers queued completions: at most DRAIN_MAX, and none after DRAIN_BUDGET_NS; the rest wait
 * for the next loop iteration, so timers and sockets get their turn in between. */
static void async_cb(uv_async_t *h)
{
    lkiwi_state *st = STATE_OF(h);
    pthread_mutex_lock(&st->mu);
    st->signalled = false;
    lkiwi_areq *list = st->done_head, *last = NULL;
    int n = 0;
    for (lkiwi_areq *a = list; a != NULL && n < DRAIN_MAX; a = a->next, n++)
        last = a;
    if (last != NULL) {
        st->done_head = last->next;
        if (st->done_head == NULL)
            st->done_tail = NULL;
        else
            lkiwi_state_wake(st); /* more than DRAIN_MAX: continue in the next loop iteration */
        last->next = NULL;
    } else {
        list = NULL;
    }
    bool events = st->events_pending;
    st->events_pending = false;
    pthread_mutex_unlock(&st->mu);
    uint64_t deadline = uv_hrtime() + DRAIN_BUDGET_NS;
    while (list != NULL) {
        lkiwi_areq *a = list;
        list = a->next;
        complete(st, a);
        if (list != NULL && uv_hrtime() > deadline) {
            requeue(st, list);
            break;
        }
    }
    if (events)
        lkiwi_events_deliver_all(st->L, st);
}

/* ---- worker jobs ----------------------------------------------------------------------------- */

static void work_cb(uv_work_t *w)
{
    lkiwi_areq *a = (lkiwi_areq *)w; /* work is the first member */
    if (a->run != NULL)
        a->run(a);
    else
        lkiwi_req_run(&a->r);
    if (a->d != NULL)
        lkiwi_db_work_end(a->d); /* the last touch of the db handle on this thread */
}

static void after_work_cb(uv_work_t *w, int status)
{
    lkiwi_areq *a = (lkiwi_areq *)w;
    complete(a->st, a);
}

void lkiwi_db_work_begin(lkiwi_db *d)
{
    pthread_mutex_lock(&d->st->mu);
    d->working++;
    pthread_mutex_unlock(&d->st->mu);
}

void lkiwi_db_work_end(lkiwi_db *d)
{
    lkiwi_state *st = d->st;
    pthread_mutex_lock(&st->mu);
    d->working--;
    /* every change: a close job waits for "only me left" (1), a blocking close for 0 */
    pthread_cond_broadcast(&st->idle_cv);
    pthread_mutex_unlock(&st->mu);
}

void lkiwi_db_wait_idle(lkiwi_db *d, int allowed)
{
    lkiwi_state *st = d->st;
    pthread_mutex_lock(&st->mu);
    while (d->working > allowed)
        pthread_cond_wait(&st->idle_cv, &st->mu);
    pthread_mutex_unlock(&st->mu);
}

/* ---- yielding -------------------------------------------------------------------------------- */

void lkiwi_check_raise(lua_State *L)
{
    if (lua_gettop(L) >= 2 && lua_touserdata(L, 1) == (void *)&RAISE_KEY) {
        lua_settop(L, 2);
        lua_error(L);
    }
}

int lkiwi_push_raise(lua_State *L, const char *msg)
{
    lua_pushlightuserdata(L, (void *)&RAISE_KEY);
    lua_pushstring(L, msg);
    return 2;
}

/* The default continuation: the resume values are the results. */
static int resume_k(lua_State *L, int status, lua_KContext ctx)
{
    lkiwi_check_raise(L);
    return lua_gettop(L);
}

static int yield(lua_State *L, lua_KFunction k, lua_KContext kctx)
{
    lua_settop(L, 0); /* what the request needs is anchored by references */
    lua_pushlightuserdata(L, (void *)&WAIT_KEY);
    return lua_yieldk(L, 1, kctx, k != NULL ? k : resume_k);
}

int lkiwi_submit_work(lua_State *L, lkiwi_areq *a, lua_KFunction k, lua_KContext kctx)
{
    lkiwi_state *st = a->st;
    lua_pushthread(L);
    a->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    if (a->d != NULL)
        lkiwi_db_work_begin(a->d);
    int rc = uv_queue_work(st->loop, &a->work, work_cb, after_work_cb);
    if (rc != 0) {
        if (a->d != NULL)
            lkiwi_db_work_end(a->d);
        areq_drop(L, a);
        return luaL_error(L, "kiwi: cannot queue work on the loop: %s", uv_strerror(rc));
    }
    return yield(L, k, kctx);
}

/* Called once by the engine (commit thread) when the write is durable or failed. */
static void write_done(void *ctx, kiwi_status status, char *errmsg)
{
    lkiwi_areq *a = (lkiwi_areq *)ctx;
    lkiwi_state *st = a->st;
    a->r.status = status;
    a->r.errmsg = errmsg;
    pthread_mutex_lock(&st->mu);
    if (st->dead) {
        pthread_mutex_unlock(&st->mu);
        lkiwi_areq_free(a);
        return;
    }
    if (st->done_tail != NULL)
        st->done_tail->next = a;
    else
        st->done_head = a;
    st->done_tail = a;
    lkiwi_state_wake(st);
    pthread_mutex_unlock(&st->mu);
}

int lkiwi_submit_write(lua_State *L, lkiwi_areq *a)
{
    lkiwi_state *st = a->st;
    lua_pushthread(L);
    a->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    a->is_write = true;
    if (st->writes_pending++ == 0)
        uv_ref((uv_handle_t *)&st->async); /* pending writes keep the loop alive */
    kiwi_status s = kiwi_write_async(a->r.db, a->r.wopts, a->r.batch, write_done, a);
    if (s != KIWI_OK) {
        if (--st->writes_pending == 0)
            uv_unref((uv_handle_t *)&st->async);
        areq_drop(L, a);
        return -1;
    }
    return yield(L, NULL, 0);
}

/* ---- tasks ----------------------------------------------------------------------------------- */

bool lkiwi_in_task(lua_State *L)
{
    if (!lua_isyieldable(L))
        return false;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &TASKS_KEY); /* -- tasks */
    lua_pushthread(L);
    lua_rawget(L, -2); /* -- tasks task|nil */
    bool r = lua_toboolean(L, -1);
    lua_pop(L, 2);
    return r;
}

/* core.set_dispatch(fn): the function completions call as fn(co, results...). */
static int core_set_dispatch(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_settop(L, 1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &DISPATCH_KEY);
    return 0;
}

/* core.pending() -> requests in flight (worker jobs and async writes not yet delivered). */
static int core_pending(lua_State *L)
{
    lkiwi_state *st = lkiwi_state_get(L);
    pthread_mutex_lock(&st->mu);
    size_t n = st->nreqs;
    pthread_mutex_unlock(&st->mu);
    lua_pushinteger(L, (lua_Integer)n);
    return 1;
}

/* __gc of the state box: the lua_State is closing. */
static void on_async_closed(uv_handle_t *h)
{
    lkiwi_state *st = STATE_OF(h);
    pthread_mutex_lock(&st->mu);
    st->handle_closed = true;
    state_unlock_maybe_free(st);
}

static int state_gc(lua_State *L)
{
    state_box *box = (state_box *)lua_touserdata(L, 1);
    lkiwi_state *st = box->st;
    if (st == NULL)
        return 0;
    box->st = NULL;
    pthread_mutex_lock(&st->mu);
    st->dead = true;
    lkiwi_areq *list = st->done_head;
    st->done_head = st->done_tail = NULL;
    st->nreqs++; /* hold the state while freeing the list below */
    pthread_mutex_unlock(&st->mu);
    while (list != NULL) {
        lkiwi_areq *a = list;
        list = a->next;
        lkiwi_areq_free(a);
    }
    uv_close((uv_handle_t *)&st->async, on_async_closed);
    pthread_mutex_lock(&st->mu);
    st->nreqs--;
    state_unlock_maybe_free(st);
    return 0;
}

static const luaL_Reg loop_funcs[] = {
    {"set_dispatch", core_set_dispatch},
    {"pending", core_pending},
    {NULL, NULL},
};

/* Creates the state (after luv, so luv's loop exists and is finalized after the state) and adds
 * WAIT, tasks, set_dispatch and pending to the module table at the top of the stack. */
void lkiwi_loop_register(lua_State *L)
{
    int mod = lua_gettop(L);
    /* package.loaded.luv if already required, else open the luv we link (Debian's luv.so is
     * this same shared library), so require("luv") and kiwi share one loop either way */
    luaL_requiref(L, "luv", luaopen_luv, 0);
    lua_pop(L, 1);
    luv_ctx_t *ctx = luv_context(L);
    if (ctx->loop == NULL) {
        luaL_error(L, "kiwi.core: luv has no loop");
        return; /* not reached */
    }

    state_box *box = (state_box *)lua_newuserdatauv(L, sizeof *box, 0); /* -- box */
    box->st = NULL;
    lua_newtable(L);
    lua_pushcfunction(L, state_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lkiwi_state *st = (lkiwi_state *)calloc(1, sizeof *st);
    if (st == NULL) {
        luaL_error(L, "not enough memory");
        return; /* not reached */
    }
    st->loop = ctx->loop;
    st->loop_mode = &ctx->mode;
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
    st->L = lua_tothread(L, -1);
    lua_pop(L, 1);
    pthread_mutex_init(&st->mu, NULL);
    pthread_cond_init(&st->idle_cv, NULL);
    int rc = uv_async_init(st->loop, &st->async, async_cb);
    if (rc != 0) {
        state_destroy(st);
        luaL_error(L, "kiwi.core: uv_async_init: %s", uv_strerror(rc));
        return; /* not reached */
    }
    st->async.data = NULL; /* not a luv handle: luv's close walk leaves it alone */
    uv_unref((uv_handle_t *)&st->async);
    box->st = st;
    lua_rawsetp(L, LUA_REGISTRYINDEX, &STATE_KEY); /* -- */

    lua_newtable(L); /* the tasks: weak keys */
    lua_newtable(L);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &TASKS_KEY);
    lua_setfield(L, mod, "tasks");
    lua_pushlightuserdata(L, (void *)&WAIT_KEY);
    lua_setfield(L, mod, "WAIT");
    luaL_setfuncs(L, loop_funcs, 0);
}
