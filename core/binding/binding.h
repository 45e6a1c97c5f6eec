/*
 * binding.h: what the files of the Lua C module kiwi.core share (the only C in kiwi that includes
 * lua.h and uv.h). One file per Lua type: kiwi_db.c, kiwi_iter.c, kiwi_snapshot.c, kiwi_batch.c;
 * the engine calls as requests (kiwi_req.c); the task side — the per-lua_State loop state, the
 * uv_async completion queue, worker jobs and yields (kiwi_loop.c) and the db calls made from a
 * task (kiwi_dbtask.c); engine events (kiwi_event.c); the module entry with the small helpers
 * (kiwi_core.c). docs/internals/binding.md tells the
 * whole story.
 *
 * Lifetimes follow Lua 5.4's liolib.c: a handle is created closed (its C pointer NULL) and opened
 * afterwards, so a failure midway leaves something __gc can handle; close is idempotent and shared
 * by __close (the db's __gc also frees its event queue); a method on a closed handle raises
 * "attempt to use a closed kiwi <type>".
 *
 * Parent and children: the db userdata keeps, in its first user value, a weak-keyed table of its
 * live iterators and snapshots. Each child keeps the db userdata in its own first user value (so
 * the db is never collected before its children). db:close() and the db's __gc invalidate every
 * child (destroy the C object, mark it dead) before kiwi_close, so a child used afterwards raises
 * and never touches freed memory.
 *
 * Two modes, one set of methods: a call made from a kiwi task (a coroutine that lua/kiwi/task.lua
 * registered in core.tasks, running where it may yield) that has to wait hands the engine call to
 * a thread (a uv worker, or the engine's commit thread for writes) and yields; the completion
 * resumes exactly that coroutine from the loop thread. Any other caller blocks. Results are the
 * same either way.
 *
 * Errors: runtime failures return nil, msg, code (code = kiwi_status_name); misuse raises.
 */
#ifndef KIWI_BINDING_H
#define KIWI_BINDING_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <lauxlib.h>
#include <lua.h>
#include <uv.h>

#include "kiwi.h"

#define LKIWI_DB "kiwi.db"
#define LKIWI_ITER "kiwi.iter"
#define LKIWI_SNAPSHOT "kiwi.snapshot"
#define LKIWI_BATCH "kiwi.batch"
#define LKIWI_BOX "kiwi.box"

/* ---- handles --------------------------------------------------------------------------------- */

typedef struct lkiwi_state lkiwi_state; /* one per lua_State: kiwi_loop.c */
typedef struct lkiwi_sink lkiwi_sink;   /* one per db: its queued engine events, kiwi_event.c */

/* kiwi.db. User values: 1 = table {child userdata = true} with weak keys, 2 = the path string,
 * 3 = the event handler (a function called as handler(level, event, fields_json)) or nil. */
typedef struct {
    const void *tag;   /* the address of kiwi_db.c's db_tag: its fast type test (todb) */
    kiwi_db *db;       /* NULL: closed (or not open yet) */
    lkiwi_sink *sink;  /* engine events of this db; NULL until open starts. Freed by __gc only */
    lkiwi_state *st;   /* the loop state of the lua_State that made it */
    kiwi_batch *scratch; /* a one-operation batch task writes reuse while they go in inline
                          * (loop thread); NULL: none now. Freed by __gc */
    int working;       /* worker jobs on this db whose work has not finished (guarded by st->mu) */
    bool has_handler;  /* an on_event handler was given (user value 3) */
    bool opening;      /* a task's open job is in flight */
    bool closing;      /* close started (in a task: the close job is in flight) */
} lkiwi_db;

/* kiwi.snapshot. User value 1 = the db userdata. */
typedef struct {
    const kiwi_snapshot *snap; /* NULL: released */
    kiwi_db *db;               /* the owner; meaningful only while snap != NULL */
    bool dbclosed;             /* released because its db closed */
    int pins;                  /* worker reads in flight through it (loop thread only) */
    const kiwi_snapshot *deferred; /* released by the user while pinned: freed at the last unpin */
} lkiwi_snapshot;

/* The walk of one scan over an engine iterator: what a worker needs to step it (a copy of it
 * travels with a fill job). lo/hi point into strings anchored by the kiwi.iter's user values. */
typedef struct {
    kiwi_iter *it;
    bool reverse;
    const char *lo; /* inclusive lower bound, NULL: open */
    size_t lolen;
    const char *hi; /* exclusive upper bound, NULL: open */
    size_t hilen;
} lkiwi_cursor;

/* Pairs copied out of an engine iterator by a fill job: entries [u32 klen][u32 vlen][key][value]
 * back to back in data[0..len); pos is the read offset of the next pair. */
typedef struct {
    char *data;
    size_t len, cap, pos;
    uint32_t n; /* pairs not read yet */
} lkiwi_buf;

/* kiwi.iter: one scan. User values: 1 = the db userdata, 2 = lower bound string, 3 = upper bound
 * string (both anchor the cursor's lo/hi), 4 = the snapshot userdata read through, if any. */
typedef enum { LKIWI_SCAN_START, LKIWI_SCAN_RUN, LKIWI_SCAN_DONE } lkiwi_scan_state;

typedef struct {
    lkiwi_cursor cur;  /* cur.it NULL: closed, or finished (state DONE) and already destroyed */
    bool closed;       /* closed by the user or by its db: further use raises */
    bool dbclosed;     /* closed because its db closed */
    bool job;          /* a fill job is in flight: a worker owns cur.it until it is delivered */
    lkiwi_scan_state state; /* START: not positioned; RUN: at the last pair fetched */
    lua_Integer limit;  /* < 0: no limit */
    lua_Integer count;  /* pairs returned so far */
    lua_Integer fetched; /* pairs read from the engine (returned + buffered) */
    lkiwi_buf buf;      /* pairs fetched by fill jobs, not returned yet */
    uint32_t batch;     /* size of the next fill job (grows to LKIWI_FILL_MAX) */
    bool eof;           /* a fill job met the end of the range; eof_status says how */
    kiwi_status eof_status;
    char *eof_msg;      /* owned */
} lkiwi_iter;

/* kiwi.batch: independent of any db. */
typedef struct {
    const void *tag;   /* the address of kiwi_batch.c's batch_tag: its fast type test */
    kiwi_batch *batch; /* NULL: closed */
    int writing;       /* task writes of it in flight (loop thread): it must not change */
    bool close_pending; /* closed while writing: destroyed when the last write is delivered */
} lkiwi_batch;

/* ---- the request path -------------------------------------------------------------------------
 * Every engine call that may wait (disk, fsync, background work) is described by an lkiwi_req,
 * executed by lkiwi_req_run — pure C, no Lua state, so it runs inline (blocking) or on a uv
 * worker thread — and turned into Lua results by lkiwi_req_push. Borrowed pointers (key, val,
 * batch) must stay alive until the request finishes: inline they are anchored on the Lua stack,
 * in a task the request owns copies or holds references (lkiwi_areq). */
typedef enum {
    LKIWI_REQ_PUT,
    LKIWI_REQ_DELETE,
    LKIWI_REQ_GET,
    LKIWI_REQ_WRITE,
    LKIWI_REQ_FLUSH,
    LKIWI_REQ_COMPACT,
    LKIWI_REQ_CLOSE,
    LKIWI_REQ_OPEN,     /* key = path; opts; result in `opened` */
    LKIWI_REQ_PROPERTY, /* key = name; out = JSON or NULL */
    LKIWI_REQ_TRACE     /* out = JSON or NULL */
} lkiwi_req_op;

typedef struct {
    lkiwi_req_op op;
    kiwi_db *db;
    const kiwi_write_options *wopts; /* NULL: the db's default (points at wo_store when set) */
    kiwi_write_options wo_store;
    const kiwi_read_options *ropts; /* NULL: defaults (points at ro_store when set) */
    kiwi_read_options ro_store;
    const char *key; /* borrowed; compact: start (NULL = open) */
    size_t klen;
    const char *val; /* borrowed; put: value; compact: end (NULL = open) */
    size_t vlen;
    kiwi_batch *batch; /* borrowed; write */
    const kiwi_options *opts; /* borrowed; open */
    /* results */
    kiwi_status status;
    char *errmsg; /* owned by the request until lkiwi_req_push */
    char *out;    /* get: the value; property/trace: JSON (owned until lkiwi_req_push) */
    size_t outlen;
    bool has_out;     /* property/trace: out is set (NULL JSON means an unknown name) */
    kiwi_db *opened;  /* open: the handle */
} lkiwi_req;

/* Zeroes r and sets its op and db. */
void lkiwi_req_init(lkiwi_req *r, lkiwi_req_op op, kiwi_db *db);
/* Runs the engine call. Touches no Lua state: safe on a worker thread. */
void lkiwi_req_run(lkiwi_req *r);
/* Pushes the Lua results and frees what the request owns, even if a push raises (memory error).
 * put/delete/write/flush/compact/close: true | nil, msg, code. get: value | nil | nil, msg, code.
 * property/trace: JSON string | nil. Returns the number of results pushed. */
int lkiwi_req_push(lua_State *L, lkiwi_req *r);
/* Frees what the request owns without pushing anything. */
void lkiwi_req_discard(lkiwi_req *r);

/* ---- task requests (kiwi_loop.c) ----------------------------------------------------------------
 * An lkiwi_areq is one engine call made from a task: a worker job (uv_queue_work: `run` on a uv
 * worker) or an async write (kiwi_write_async; the engine's commit thread calls back). Either way
 * the completion reaches the loop thread, where `finish` updates the handles and pushes the values
 * the task is resumed with; then the dispatcher (task.lua) resumes the coroutine, if it still
 * waits. Lua values the request depends on are anchored by registry references until then. */
#define LKIWI_FILL_FIRST 32u        /* pairs fetched by the first fill job of a scan */
#define LKIWI_FILL_MAX 1024u        /* the most pairs per fill job */
#define LKIWI_FILL_BYTES (256u << 10) /* a fill job stops after this many bytes */

typedef struct lkiwi_areq lkiwi_areq;
typedef void (*lkiwi_run_fn)(lkiwi_areq *a);
typedef int (*lkiwi_finish_fn)(lua_State *L, lkiwi_areq *a);

/* A fill job: the iterator's cursor (copied) and what it fetched. */
typedef struct {
    lkiwi_cursor cur;
    bool first;   /* position the cursor before reading */
    uint32_t max; /* pairs to fetch at most */
    lkiwi_buf buf;
    bool eof;
    kiwi_status status;
    char *errmsg;
} lkiwi_fill;

struct lkiwi_areq {
    uv_work_t work;         /* worker jobs */
    lkiwi_req r;            /* the engine call and its outcome */
    lkiwi_state *st;
    lkiwi_db *d;            /* the db it works on (anchored by refs[0]); NULL: none */
    lkiwi_run_fn run;       /* worker thread, no Lua; NULL: lkiwi_req_run(&r) */
    lkiwi_finish_fn finish; /* loop thread; NULL: lkiwi_req_push(&r) */
    void *obj;              /* the iter / snapshot / batch handle involved (anchored by refs[1]) */
    int co_ref;             /* the waiting coroutine */
    int refs[2];            /* anchored Lua values, LUA_NOREF if unused */
    char *copy;             /* owned copy of the key (and value) bytes */
    kiwi_batch *own_batch;  /* put/delete: the one-operation batch written */
    kiwi_options *opts;     /* open: owned options */
    lkiwi_fill fill;        /* iterator fill jobs */
    bool is_write;          /* an async write: counted in st->writes_pending */
    lkiwi_areq *next;       /* the completion queue */
};

/* The loop state of one lua_State (created by luaopen_kiwi_core, freed after the state closes
 * and the last request is gone). Completions and events reach the loop thread through `async`. */
struct lkiwi_state {
    uv_loop_t *loop;        /* luv's loop: luv_loop(L) */
    const int *loop_mode;   /* luv's ctx->mode: < 0 while the loop is not running */
    lua_State *L;           /* the main thread: every callback into Lua runs on it */
    uv_async_t async;       /* ref'd only while async writes are pending (writes_pending > 0) */
    pthread_mutex_t mu;
    pthread_cond_t idle_cv; /* a db's working count went down */
    /* ---- guarded by mu ---- */
    lkiwi_areq *done_head, *done_tail; /* completed async writes, oldest first */
    bool signalled;         /* uv_async_send was called and the callback has not run yet */
    bool events_pending;    /* some sink queued an event since the last delivery */
    lkiwi_sink *sinks;      /* every live sink */
    bool dead;              /* the lua_State is closing: drop completions, touch no Lua */
    bool handle_closed;     /* uv_close of async finished */
    size_t nreqs;           /* requests allocated and not freed */
    /* ---- loop thread only ---- */
    size_t writes_pending;  /* async writes submitted and not delivered */
};

/* Wakes the loop (the async callback runs soon). REQUIRES: st->mu held. */
void lkiwi_state_wake(lkiwi_state *st);

/* The loop state of L's lua_State (created by luaopen_kiwi_core). */
lkiwi_state *lkiwi_state_get(lua_State *L);
/* True if L is a kiwi task that may yield here (registered in core.tasks, yieldable). */
bool lkiwi_in_task(lua_State *L);
/* A zeroed request for L's state and the db handle d (or NULL). */
lkiwi_areq *lkiwi_areq_new(lua_State *L, lkiwi_db *d);
/* Anchors the value at idx in slot 0 or 1 of a->refs. */
void lkiwi_areq_anchor(lua_State *L, lkiwi_areq *a, int slot, int idx);
/* Frees a request and what it owns (not its Lua references). Any thread. */
void lkiwi_areq_free(lkiwi_areq *a);
/* Queues a as a worker job and yields the task L; resumed with what a->finish pushes. The
 * continuation k (NULL: return the resume values) runs when the task is resumed. */
int lkiwi_submit_work(lua_State *L, lkiwi_areq *a, lua_KFunction k, lua_KContext kctx);
/* Queues a->r (op WRITE, batch set) with kiwi_write_async and yields. If the engine refuses it
 * before queueing, frees a and returns -1 without yielding (the caller runs the blocking call to
 * get the same error message). */
int lkiwi_submit_write(lua_State *L, lkiwi_areq *a);
/* In a resumed continuation: raises if the dispatcher passed an error (LKIWI_RAISE, msg). */
void lkiwi_check_raise(lua_State *L);
/* Pushes (LKIWI_RAISE marker, msg): resume values that make the continuation raise msg. */
int lkiwi_push_raise(lua_State *L, const char *msg);
/* A db job began / its work ended (worker side). lkiwi_db_wait_idle blocks until no job of d is
 * working. */
void lkiwi_db_work_begin(lkiwi_db *d);
void lkiwi_db_work_end(lkiwi_db *d);
/* Blocks until at most `allowed` jobs of d are working (0 from the loop thread; 1 from the close
 * job, which counts itself). */
void lkiwi_db_wait_idle(lkiwi_db *d, int allowed);
void lkiwi_loop_register(lua_State *L); /* creates the state; called by luaopen_kiwi_core */

/* ---- engine events (kiwi_event.c) ------------------------------------------------------------ */
#define LKIWI_EVENTS_MAX 1024 /* events queued per db; more are dropped and counted */

/* A sink for db d's events, registered with the state; the engine calls lkiwi_event_cb(sink). */
lkiwi_sink *lkiwi_sink_new(lkiwi_state *st);
void lkiwi_event_cb(void *ctx, const char *level, const char *event, const char *fields_json);
/* Unregisters and frees (after kiwi_close, or when open failed). */
void lkiwi_sink_free(lkiwi_sink *s);
/* The db userdata at idx owns sink s and has a handler (user value 3): deliver on the loop. */
void lkiwi_sink_attach(lua_State *L, lkiwi_sink *s, int idx, bool has_handler);
/* Delivers queued events of every sink with a handler (the loop's async callback). */
void lkiwi_events_deliver_all(lua_State *L, lkiwi_state *st);
/* True if the sink holds events (a racy hint: an atomic read, no lock). */
bool lkiwi_sink_pending(const lkiwi_sink *s);
/* Delivers the queued events of the db at idx to its handler now, if it has one. */
void lkiwi_events_deliver_db(lua_State *L, int idx);
int lkiwi_db_poll_events(lua_State *L); /* db:poll_events_raw() */

/* ---- helpers (kiwi_core.c) ---------------------------------------------------------------- */

/* The two checks below run on every put and get (inline: no call of their own).
 * A key or value argument: a Lua string only. Lua would silently turn the number 1 into "1"; a
 * store that sorts bytes should not guess, so numbers raise like any other non-string. */
static inline const char *lkiwi_checkbytes(lua_State *L, int arg, size_t *len)
{
    if (lua_type(L, arg) != LUA_TSTRING)
        luaL_typeerror(L, arg, "string");
    return lua_tolstring(L, arg, len);
}
/* As lkiwi_checkbytes, but nil or none gives NULL. */
const char *lkiwi_optbytes(lua_State *L, int arg, size_t *len);
/* An options argument: a table, or nil/none (returns false). Raises for anything else. One type
 * test on the hot path (no options, or a table). */
static inline bool lkiwi_opttable(lua_State *L, int arg)
{
    int t = lua_type(L, arg);
    if (t == LUA_TTABLE)
        return true;
    if (t == LUA_TNONE || t == LUA_TNIL)
        return false;
    luaL_checktype(L, arg, LUA_TTABLE); /* raises the usual message */
    return true;
}
/* Field `name` of the options table at arg as a boolean: -1 absent, 0 false, 1 true. Raises if
 * the field is present and not a boolean. */
int lkiwi_optboolfield(lua_State *L, int arg, const char *name);

/* Pushes nil, msg, code for a failure and frees errmsg (msg defaults to the status name). */
int lkiwi_push_fail(lua_State *L, kiwi_status st, char *errmsg);
/* Pushes a copy of p[0..n) as a Lua string, then frees p with kiwi_free, also when the push
 * raises a memory error (a small value is copied to the C stack and freed before the push; a
 * large one is pushed in a protected call). p may be NULL when n == 0. */
void lkiwi_push_owned(lua_State *L, char *p, size_t n);

/* A to-be-closed box for temporary C memory (lauxlib's UBox idea): pushes a userdata whose
 * __close/__gc calls fn(p) once if p is still set, and marks the slot to-be-closed. Returns the
 * slot holding p; set it after the allocation, clear it to take ownership back. */
void **lkiwi_newbox(lua_State *L, void (*fn)(void *));

/* Registers a metatable: __name, __index = methods, plus the metamethods in meta. Every function
 * registered gets upvalue LKIWI_UP_META: the metatable's address as a light userdata. Leaves
 * nothing on the stack. */
void lkiwi_newclass(lua_State *L, const char *name, const luaL_Reg *meta, const luaL_Reg *methods);
#define LKIWI_UP_META 1
/* The userdata at arg if its metatable is tname's; raises luaL_checkudata's error otherwise. When
 * the running function is a method or metamethod of tname's class (its upvalue LKIWI_UP_META is
 * that metatable's address), the test compares two addresses instead of looking tname up in the
 * registry: the cost of a method call drops by a third. */
void *lkiwi_toudata(lua_State *L, int arg, const char *tname);
/* The type test of the types whose methods run per key (kiwi.db, kiwi.batch): the userdata at
 * arg if it is a full userdata of exactly `size` bytes whose first field holds `tag`, the address
 * of a static of the type's file, written only where the type makes its userdata (Lua code cannot
 * write into a userdata's memory). Two API calls: lua_touserdata is NULL for anything but a
 * userdata, and lua_rawlen is 0 for a light userdata (a bare pointer, never dereferenced here)
 * and a full userdata's block size. Anything else goes to lkiwi_toudata (five calls), which
 * returns it or raises luaL_checkudata's error for tname. */
static inline void *lkiwi_checktagged(lua_State *L, int arg, size_t size, const void *tag,
                                      const char *tname)
{
    void *p = lua_touserdata(L, arg);
    if (p != NULL && lua_rawlen(L, arg) == size && *(const void *const *)p == tag)
        return p;
    return lkiwi_toudata(L, arg, tname);
}

/* ---- per type --------------------------------------------------------------------------------- */

/* kiwi_db.c */
void lkiwi_db_register(lua_State *L);
int lkiwi_db_open(lua_State *L); /* core.open(path, mode, settings) */
lkiwi_db *lkiwi_checkdb(lua_State *L, int arg); /* an open db; raises otherwise */
/* Read options at arg (table or nil) into *ro; returns ro, or NULL when arg is nil. A snapshot
 * must be live and belong to d. */
const kiwi_read_options *lkiwi_check_ropts(lua_State *L, int arg, lkiwi_db *d,
                                           kiwi_read_options *ro);
/* Adds the userdata at idx to the live children of the db userdata at dbidx. */
void lkiwi_db_adopt(lua_State *L, int dbidx, int idx);
/* Removes the userdata at idx from the children of the db in its user value 1 (if any). */
void lkiwi_db_disown(lua_State *L, int idx);
/* After a blocking call on the db userdata at dbidx: delivers queued events to its handler when
 * no loop runs to do it (L is the main thread and the luv loop is not running). */
void lkiwi_db_after_call(lua_State *L, int dbidx, lkiwi_db *d);
/* Pushes what db:close() returns for status st (the db userdata at idx names the path). */
int lkiwi_db_push_close(lua_State *L, int idx, kiwi_status st);

/* kiwi_dbtask.c: the db calls made from a task. Each answers inline when the engine can do so
 * without waiting (kiwi_get_nowait, kiwi_write_nowait), or copies or anchors what it needs,
 * queues the work and yields; a -1 return means "not done, do it the blocking way" (the engine
 * refused the write up front, so the blocking call fails at once with its own message). */
int lkiwi_task_open(lua_State *L, lkiwi_db *d, int dbidx, const char *path, kiwi_options *opts);
int lkiwi_task_close(lua_State *L, lkiwi_db *d, int dbidx);
int lkiwi_task_get(lua_State *L, lkiwi_db *d, lkiwi_req *r); /* memory first, then a worker */
int lkiwi_task_write_one(lua_State *L, lkiwi_db *d, const lkiwi_req *r); /* put / delete */
#define LKIWI_SCRATCH_MAX (64u << 10) /* a write bigger than this does not keep the scratch batch */
int lkiwi_task_write_batch(lua_State *L, lkiwi_db *d, const lkiwi_req *r, lkiwi_batch *b);
int lkiwi_task_call(lua_State *L, lkiwi_db *d, const lkiwi_req *r); /* any other op: a worker */

/* kiwi_iter.c */
void lkiwi_iter_register(lua_State *L);
int lkiwi_db_scan(lua_State *L); /* db:scan(start, stop, opts) */
/* The db is closing: mark the iter dead; destroy its engine iterator unless a fill job still uses
 * it and the db is not idle (kiwi_close frees it then). */
void lkiwi_iter_invalidate(lkiwi_iter *it, bool idle);

/* kiwi_snapshot.c */
void lkiwi_snapshot_register(lua_State *L);
int lkiwi_db_snapshot(lua_State *L); /* db:snapshot() */
lkiwi_snapshot *lkiwi_checksnapshot(lua_State *L, int arg); /* a live snapshot; raises otherwise */
/* The db is closing: mark the snapshot dead; release it unless a read still uses it and the db is
 * not idle (kiwi_close releases it then). */
void lkiwi_snapshot_invalidate(lkiwi_snapshot *s, bool idle);
/* A worker read through s begins / was delivered (loop thread). */
void lkiwi_snapshot_pin(lkiwi_snapshot *s);
void lkiwi_snapshot_unpin(lkiwi_snapshot *s);

/* kiwi_batch.c */
void lkiwi_batch_register(lua_State *L);
int lkiwi_batch_new(lua_State *L); /* core.batch() */
lkiwi_batch *lkiwi_checkbatch(lua_State *L, int arg); /* an open batch; raises otherwise */
/* A task's write of b was delivered: b may change again (and is destroyed if closed meanwhile). */
void lkiwi_batch_written(lkiwi_batch *b);

#endif /* KIWI_BINDING_H */
