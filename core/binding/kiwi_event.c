/*
 * kiwi_event.c: engine events (kiwi_options_set_event_handler) carried to Lua.
 *
 * The engine calls lkiwi_event_cb from whatever thread did the work (a flush worker, the commit
 * thread, the opening thread), sometimes under its own mutex, so the callback only copies the
 * event into its db's sink: a FIFO bounded at LKIWI_EVENTS_MAX (more are dropped and counted),
 * guarded by the state mutex. If the db has a handler (kiwi.open's on_event) it also wakes the
 * loop; the state's async callback then calls handler(level, event, fields_json) on the main
 * thread for every queued event. Dropped events surface as one synthetic event
 * ("warn", "events_dropped", {"count": n}) ahead of the next delivered ones. db:poll_events_raw()
 * takes the queue directly, for programs that do not run the loop.
 *
 * A sink belongs to its db userdata and is freed by its __gc (after kiwi_close, which is the last
 * time the engine calls it). Delivery finds the db userdata of a sink through a registry table
 * with weak values (sink address -> db userdata), so a handler never keeps its db alive.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "binding.h"

static const char SINKS_KEY = 'e'; /* registry: sink lightuserdata -> db userdata (weak values) */

typedef struct lkiwi_event {
    struct lkiwi_event *next;
    const char *level, *event, *fields; /* point into the same allocation */
} lkiwi_event;

struct lkiwi_sink {
    lkiwi_state *st;
    /* ---- guarded by st->mu ---- */
    lkiwi_event *head, *tail;
    unsigned n;
    unsigned long dropped;
    bool has_handler;
    atomic_uint queued; /* n (or 1 for drops), readable without the lock: a hint */
    lkiwi_sink *prev, *next; /* st->sinks */
};

static lkiwi_event *event_new(const char *level, const char *event, const char *fields)
{
    size_t l1 = strlen(level) + 1, l2 = strlen(event) + 1, l3 = strlen(fields) + 1;
    lkiwi_event *e = (lkiwi_event *)malloc(sizeof *e + l1 + l2 + l3);
    if (e == NULL)
        return NULL;
    char *p = (char *)(e + 1);
    e->next = NULL;
    e->level = memcpy(p, level, l1);
    e->event = memcpy(p + l1, event, l2);
    e->fields = memcpy(p + l1 + l2, fields, l3);
    return e;
}

static void events_free(lkiwi_event *e)
{
    while (e != NULL) {
        lkiwi_event *next = e->next;
        free(e);
        e = next;
    }
}

void lkiwi_event_cb(void *ctx, const char *level, const char *event, const char *fields_json)
{
    lkiwi_sink *s = (lkiwi_sink *)ctx;
    lkiwi_state *st = s->st;
    lkiwi_event *e = event_new(level ? level : "info", event ? event : "event",
                               fields_json ? fields_json : "{}");
    pthread_mutex_lock(&st->mu);
    if (e == NULL || s->n >= LKIWI_EVENTS_MAX || st->dead) {
        s->dropped++;
        atomic_store_explicit(&s->queued, s->n + 1, memory_order_relaxed);
        pthread_mutex_unlock(&st->mu);
        free(e);
        return;
    }
    if (s->tail != NULL)
        s->tail->next = e;
    else
        s->head = e;
    s->tail = e;
    s->n++;
    atomic_store_explicit(&s->queued, s->n, memory_order_relaxed);
    if (s->has_handler) {
        st->events_pending = true;
        lkiwi_state_wake(st);
    }
    pthread_mutex_unlock(&st->mu);
}

lkiwi_sink *lkiwi_sink_new(lkiwi_state *st)
{
    lkiwi_sink *s = (lkiwi_sink *)calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->st = st;
    pthread_mutex_lock(&st->mu);
    s->next = st->sinks;
    if (st->sinks != NULL)
        st->sinks->prev = s;
    st->sinks = s;
    pthread_mutex_unlock(&st->mu);
    return s;
}

void lkiwi_sink_free(lkiwi_sink *s)
{
    lkiwi_state *st = s->st;
    pthread_mutex_lock(&st->mu);
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        st->sinks = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    lkiwi_event *list = s->head;
    pthread_mutex_unlock(&st->mu);
    events_free(list);
    free(s);
}

bool lkiwi_sink_pending(const lkiwi_sink *s)
{
    return atomic_load_explicit(&s->queued, memory_order_relaxed) != 0;
}

/* Pushes the weak sink table. */
static void push_sinks(lua_State *L)
{
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &SINKS_KEY) == LUA_TTABLE)
        return;
    lua_pop(L, 1);
    lua_newtable(L);
    lua_newtable(L);
    lua_pushliteral(L, "v");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &SINKS_KEY); /* -- sinks */
}

void lkiwi_sink_attach(lua_State *L, lkiwi_sink *s, int idx, bool has_handler)
{
    idx = lua_absindex(L, idx);
    push_sinks(L);
    lua_pushvalue(L, idx);
    lua_rawsetp(L, -2, s);
    lua_pop(L, 1);
    pthread_mutex_lock(&s->st->mu);
    s->has_handler = has_handler;
    if (has_handler && (s->head != NULL || s->dropped > 0)) {
        s->st->events_pending = true;
        lkiwi_state_wake(s->st);
    }
    pthread_mutex_unlock(&s->st->mu);
}

/* Takes the queue of s: its events and the count dropped since the last take. REQUIRES: mu. */
static lkiwi_event *take(lkiwi_sink *s, unsigned long *dropped)
{
    lkiwi_event *list = s->head;
    s->head = s->tail = NULL;
    s->n = 0;
    atomic_store_explicit(&s->queued, 0, memory_order_relaxed);
    *dropped = s->dropped;
    s->dropped = 0;
    return list;
}

/* Calls handler (at hidx) for the dropped count and each event, each call protected. Frees the
 * events. */
static void call_handler(lua_State *L, int hidx, lkiwi_event *list, unsigned long dropped)
{
    char fields[64];
    snprintf(fields, sizeof fields, "{\"count\":%lu}", dropped);
    lkiwi_event synthetic = {list, "warn", "events_dropped", fields};
    for (lkiwi_event *e = dropped > 0 ? &synthetic : list; e != NULL; e = e->next) {
        lua_pushvalue(L, hidx);
        lua_pushstring(L, e->level);
        lua_pushstring(L, e->event);
        lua_pushstring(L, e->fields);
        if (lua_pcall(L, 3, 0, 0) != LUA_OK) {
            const char *msg = lua_tostring(L, -1);
            fprintf(stderr, "kiwi: on_event handler failed: %s\n", msg ? msg : "(error object)");
            lua_pop(L, 1);
        }
    }
    events_free(list);
}

typedef struct {
    lkiwi_sink *sink;
    lkiwi_event *list;
    unsigned long dropped;
} taken;

void lkiwi_events_deliver_all(lua_State *L, lkiwi_state *st)
{
    int top = lua_gettop(L);
    push_sinks(L);
    int sinks = lua_gettop(L);
    size_t n = 0, cap = 0;
    taken *t = NULL;
    pthread_mutex_lock(&st->mu);
    for (lkiwi_sink *s = st->sinks; s != NULL; s = s->next)
        if (s->has_handler && (s->head != NULL || s->dropped > 0))
            cap++;
    if (cap > 0)
        t = (taken *)malloc(cap * sizeof *t);
    for (lkiwi_sink *s = st->sinks; t != NULL && s != NULL && n < cap; s = s->next)
        if (s->has_handler && (s->head != NULL || s->dropped > 0)) {
            t[n].sink = s;
            t[n].list = take(s, &t[n].dropped);
            n++;
        }
    pthread_mutex_unlock(&st->mu);
    /* Anchor every db first: a handler may run the GC, and a db's __gc frees its sink. */
    if (!lua_checkstack(L, (int)n + 8))
        n = 0; /* cannot happen with a sane number of dbs; the events are dropped below */
    for (size_t i = 0; i < n; i++)
        lua_rawgetp(L, sinks, t[i].sink); /* -- db | nil */
    for (size_t i = 0; i < n; i++) {
        int db = sinks + 1 + (int)i;
        if (lua_isnil(L, db) || lua_getiuservalue(L, db, 3) != LUA_TFUNCTION) {
            lua_pop(L, lua_isnil(L, db) ? 0 : 1);
            events_free(t[i].list);
            continue;
        }
        call_handler(L, lua_gettop(L), t[i].list, t[i].dropped);
        lua_pop(L, 1);
    }
    free(t);
    lua_settop(L, top);
}

void lkiwi_events_deliver_db(lua_State *L, int idx)
{
    lkiwi_db *d = (lkiwi_db *)lua_touserdata(L, idx);
    if (d == NULL || d->sink == NULL)
        return;
    idx = lua_absindex(L, idx);
    lkiwi_state *st = d->st;
    unsigned long dropped;
    pthread_mutex_lock(&st->mu);
    if (!d->sink->has_handler || (d->sink->head == NULL && d->sink->dropped == 0)) {
        pthread_mutex_unlock(&st->mu);
        return;
    }
    lkiwi_event *list = take(d->sink, &dropped);
    pthread_mutex_unlock(&st->mu);
    lua_getiuservalue(L, idx, 3); /* -- handler */
    call_handler(L, lua_gettop(L), list, dropped);
    lua_pop(L, 1);
}

/* Protected body of poll: (db, lightuserdata list, integer dropped) -- { {level, event, json}... }
 * The list is freed by the caller. */
static int poll_push(lua_State *L)
{
    const lkiwi_event *list = (const lkiwi_event *)lua_touserdata(L, 2);
    unsigned long dropped = (unsigned long)lua_tointeger(L, 3);
    lua_newtable(L);
    int i = 0;
    if (dropped > 0) {
        lua_createtable(L, 3, 0);
        lua_pushliteral(L, "warn");
        lua_rawseti(L, -2, 1);
        lua_pushliteral(L, "events_dropped");
        lua_rawseti(L, -2, 2);
        lua_pushfstring(L, "{\"count\":%I}", (lua_Integer)dropped);
        lua_rawseti(L, -2, 3);
        lua_rawseti(L, -2, ++i);
    }
    for (const lkiwi_event *e = list; e != NULL; e = e->next) {
        lua_createtable(L, 3, 0);
        lua_pushstring(L, e->level);
        lua_rawseti(L, -2, 1);
        lua_pushstring(L, e->event);
        lua_rawseti(L, -2, 2);
        lua_pushstring(L, e->fields);
        lua_rawseti(L, -2, 3);
        lua_rawseti(L, -2, ++i);
    }
    return 1;
}

/* db:poll_events_raw() -> { {level, event, fields_json}, ... }: takes the queued events (also of
 * a closed db), oldest first. */
int lkiwi_db_poll_events(lua_State *L)
{
    lkiwi_db *d = (lkiwi_db *)luaL_checkudata(L, 1, LKIWI_DB);
    if (d->sink == NULL) {
        lua_newtable(L);
        return 1;
    }
    unsigned long dropped;
    pthread_mutex_lock(&d->st->mu);
    lkiwi_event *list = take(d->sink, &dropped);
    pthread_mutex_unlock(&d->st->mu);
    lua_pushcfunction(L, poll_push);
    lua_pushvalue(L, 1);
    lua_pushlightuserdata(L, list);
    lua_pushinteger(L, (lua_Integer)dropped);
    int rc = lua_pcall(L, 3, 1, 0);
    events_free(list);
    if (rc != LUA_OK)
        return lua_error(L);
    return 1;
}
