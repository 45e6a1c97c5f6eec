/*
 * binding.h: what the files of the Lua C module kiwi.core share (the only C in kiwi that includes
 * lua.h). One file per Lua type: kiwi_db.c, kiwi_iter.c, kiwi_snapshot.c, kiwi_batch.c; the
 * request path (kiwi_req.c) and the module entry with the small helpers (kiwi_core.c).
 *
 * Lifetimes follow Lua 5.4's liolib.c: a handle is created closed (its C pointer NULL) and opened
 * afterwards, so a failure midway leaves something __gc can handle; __gc and __close share one
 * idempotent function; a method on a closed handle raises "attempt to use a closed kiwi <type>".
 *
 * Parent and children: the db userdata keeps, in its first user value, a weak-keyed table of its
 * live iterators and snapshots. Each child keeps the db userdata in its own first user value (so
 * the db is never collected before its children). db:close() and the db's __gc invalidate every
 * child (destroy the C object, mark it dead) before kiwi_close, so a child used afterwards raises
 * and never touches freed memory.
 *
 * Errors: runtime failures return nil, msg, code (code = kiwi_status_name); misuse raises.
 */
#ifndef KIWI_BINDING_H
#define KIWI_BINDING_H

#include <stdbool.h>
#include <stddef.h>

#include <lauxlib.h>
#include <lua.h>

#include "kiwi.h"

#define LKIWI_DB "kiwi.db"
#define LKIWI_ITER "kiwi.iter"
#define LKIWI_SNAPSHOT "kiwi.snapshot"
#define LKIWI_BATCH "kiwi.batch"
#define LKIWI_BOX "kiwi.box"

/* ---- handles --------------------------------------------------------------------------------- */

/* kiwi.db. User values: 1 = table {child userdata = true} with weak keys, 2 = the path string. */
typedef struct {
    kiwi_db *db; /* NULL: closed */
} lkiwi_db;

/* kiwi.snapshot. User value 1 = the db userdata. */
typedef struct {
    const kiwi_snapshot *snap; /* NULL: released */
    kiwi_db *db;               /* the owner; meaningful only while snap != NULL */
    bool dbclosed;             /* released because its db closed */
} lkiwi_snapshot;

/* kiwi.iter: one scan. User values: 1 = the db userdata, 2 = lower bound string, 3 = upper bound
 * string (both anchor the lo/hi pointers below), 4 = the snapshot userdata read through, if any. */
typedef enum { LKIWI_SCAN_START, LKIWI_SCAN_RUN, LKIWI_SCAN_DONE } lkiwi_scan_state;

typedef struct {
    kiwi_iter *it;    /* NULL: closed, or finished (state DONE) and already destroyed */
    bool closed;      /* closed by the user or by its db: further use raises */
    bool dbclosed;    /* closed because its db closed */
    lkiwi_scan_state state;
    bool reverse;
    lua_Integer limit; /* < 0: no limit */
    lua_Integer count; /* pairs returned so far */
    const char *lo;    /* inclusive lower bound, NULL: open */
    size_t lolen;
    const char *hi;    /* exclusive upper bound, NULL: open */
    size_t hilen;
} lkiwi_iter;

/* kiwi.batch: independent of any db. */
typedef struct {
    kiwi_batch *batch; /* NULL: closed */
} lkiwi_batch;

/* ---- the request path -------------------------------------------------------------------------
 * Every engine call that may wait (disk, fsync, background work) is described by an lkiwi_req,
 * executed by lkiwi_req_run — pure C, no Lua state, so the async issue can run it on a luv
 * worker thread (uv_queue_work) and finish it on the loop thread — and turned into Lua results by
 * lkiwi_req_push. Today the methods run it inline (blocking). Borrowed pointers (key, val, batch)
 * must stay alive until the request finishes: inline they are anchored on the Lua stack; the async
 * version will anchor them with references in the request. */
typedef enum {
    LKIWI_REQ_PUT,
    LKIWI_REQ_DELETE,
    LKIWI_REQ_GET,
    LKIWI_REQ_WRITE,
    LKIWI_REQ_FLUSH,
    LKIWI_REQ_COMPACT,
    LKIWI_REQ_CLOSE
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
    /* results */
    kiwi_status status;
    char *errmsg; /* owned by the request until lkiwi_req_push */
    char *out;    /* get: the value (owned until lkiwi_req_push) */
    size_t outlen;
} lkiwi_req;

/* Zeroes r and sets its op and db. */
void lkiwi_req_init(lkiwi_req *r, lkiwi_req_op op, kiwi_db *db);
/* Runs the engine call. Touches no Lua state: safe on a worker thread. */
void lkiwi_req_run(lkiwi_req *r);
/* Pushes the Lua results and frees what the request owns, even if a push raises (memory error).
 * put/delete/write/flush/compact/close: true | nil, msg, code. get: value | nil | nil, msg, code.
 * Returns the number of results pushed. */
int lkiwi_req_push(lua_State *L, lkiwi_req *r);

/* ---- helpers (kiwi_core.c) ---------------------------------------------------------------- */

/* A key or value argument: a Lua string only (numbers are not converted); raises otherwise. */
const char *lkiwi_checkbytes(lua_State *L, int arg, size_t *len);
/* As lkiwi_checkbytes, but nil or none gives NULL. */
const char *lkiwi_optbytes(lua_State *L, int arg, size_t *len);
/* An options argument: a table, or nil/none (returns false). Raises for anything else. */
bool lkiwi_opttable(lua_State *L, int arg);
/* Field `name` of the options table at arg as a boolean: -1 absent, 0 false, 1 true. Raises if
 * the field is present and not a boolean. */
int lkiwi_optboolfield(lua_State *L, int arg, const char *name);

/* Pushes nil, msg, code for a failure and frees errmsg (msg defaults to the status name). */
int lkiwi_push_fail(lua_State *L, kiwi_status st, char *errmsg);
/* Pushes a copy of p[0..n) as a Lua string, then frees p with kiwi_free, also when the push
 * raises a memory error (the push runs in a protected call). p may be NULL when n == 0. */
void lkiwi_push_owned(lua_State *L, char *p, size_t n);

/* A to-be-closed box for temporary C memory (lauxlib's UBox idea): pushes a userdata whose
 * __close/__gc calls fn(p) once if p is still set, and marks the slot to-be-closed. Returns the
 * slot holding p; set it after the allocation, clear it to take ownership back. */
void **lkiwi_newbox(lua_State *L, void (*fn)(void *));

/* Registers a metatable: __name, __index = methods, plus the metamethods in meta. Leaves nothing
 * on the stack. */
void lkiwi_newclass(lua_State *L, const char *name, const luaL_Reg *meta, const luaL_Reg *methods);

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

/* kiwi_iter.c */
void lkiwi_iter_register(lua_State *L);
int lkiwi_db_scan(lua_State *L); /* db:scan(start, stop, opts) */
void lkiwi_iter_invalidate(lkiwi_iter *it);

/* kiwi_snapshot.c */
void lkiwi_snapshot_register(lua_State *L);
int lkiwi_db_snapshot(lua_State *L); /* db:snapshot() */
lkiwi_snapshot *lkiwi_checksnapshot(lua_State *L, int arg); /* a live snapshot; raises otherwise */
void lkiwi_snapshot_invalidate(lkiwi_snapshot *s);

/* kiwi_batch.c */
void lkiwi_batch_register(lua_State *L);
int lkiwi_batch_new(lua_State *L); /* core.batch() */
lkiwi_batch *lkiwi_checkbatch(lua_State *L, int arg); /* an open batch; raises otherwise */

#endif /* KIWI_BINDING_H */
