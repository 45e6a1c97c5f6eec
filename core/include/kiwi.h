/*
 * kiwi.h: the public C API of the kiwi LSM-tree key-value store. The one header a C user includes.
 *
 * Conventions (in the spirit of LevelDB's c.h and LMDB's lmdb.h):
 *  - All handles are opaque. Keys and values are byte strings with explicit lengths; embedded NUL
 *    bytes are allowed. Keys may be empty (length 0); a key is at most KIWI_MAX_KEY_SIZE bytes and
 *    a value at most KIWI_MAX_VALUE_SIZE bytes.
 *  - Every call that can fail returns a kiwi_status. Where `errmsg` is not NULL, a failure stores a
 *    malloc'd, NUL-terminated message there (free it with kiwi_free). The message starts with the
 *    status name ("corruption: ...") and names the file, offset or setting involved. If *errmsg
 *    already holds a message it is freed and replaced.
 *  - Nothing is global: two kiwi_db handles on two directories share no state.
 *  - Every function is thread-safe unless its comment says otherwise. A kiwi_iter and a kiwi_batch
 *    are not: use each from one thread at a time.
 *  - Memory exhaustion is not reported as a status: the engine prints a message and aborts, as a
 *    half-applied allocation failure inside a storage engine cannot be recovered honestly.
 *
 * Durability (DESIGN §4): a write with sync=true is on stable storage when the call returns; a
 * write with sync=false has reached the operating system (a write(2) to the WAL), so a crash of
 * the process loses nothing and only a crash of the machine may lose the last unsynced writes.
 */
#ifndef KIWI_H
#define KIWI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KIWI_VERSION_MAJOR 0
#define KIWI_VERSION_MINOR 1
#define KIWI_VERSION_PATCH 0
#define KIWI_VERSION_STRING "0.1.0"

#define KIWI_MAX_KEY_SIZE (64u * 1024u)          /* 64 KiB */
#define KIWI_MAX_VALUE_SIZE (256u * 1024u * 1024u) /* 256 MiB */

typedef struct kiwi_db kiwi_db; /* all opaque */
typedef struct kiwi_options kiwi_options;
typedef struct kiwi_batch kiwi_batch;
typedef struct kiwi_iter kiwi_iter;
typedef struct kiwi_snapshot kiwi_snapshot;

typedef enum {
    KIWI_OK = 0,
    KIWI_NOT_FOUND,
    KIWI_CORRUPTION,
    KIWI_IO_ERROR,
    KIWI_INVALID_ARGUMENT,
    KIWI_BUSY,
    KIWI_CLOSED,
    KIWI_NO_SPACE
} kiwi_status;

/* "ok", "not found", "corruption", "io error", "invalid argument", "busy", "closed", "no space".
 * Never NULL; an out-of-range value gives "unknown". */
const char *kiwi_status_name(kiwi_status);

typedef struct {
    bool sync; /* durable on return (fdatasync of the WAL) */
} kiwi_write_options;

typedef struct {
    const kiwi_snapshot *snapshot; /* NULL: the latest data */
    bool fill_cache;               /* read blocks go into the block cache */
} kiwi_read_options;
/* NULL options mean the defaults: the db's sync_writes default; latest data, fill the cache. */

/* ---- options ---------------------------------------------------------------------------------
 * Names and values are the config.json settings, as strings ("10", "0.01", "true"). mode is "dev"
 * or "prod"; NULL means "prod" (dev mode has tiny memtables for watching the tree work; prod is
 * what a program should run with). kiwi_options_create returns NULL for an unknown mode.
 * kiwi_options_set validates type and range and fails with KIWI_INVALID_ARGUMENT naming the
 * setting and the allowed range. Not thread-safe: set options before sharing the handle. */
kiwi_options *kiwi_options_create(const char *mode);
/* Every setting as a JSON array (kiwi_free it): [{"name", "type" ("uint", "number", "bool",
 * "enum"), "min", "max" (numbers; null for bool/enum), "choices" (enum: array, else null),
 * "live" (bool), "dev", "prod" (defaults, as config.json strings)}, ...]. The one table
 * kiwi_options_set and kiwi_set_option validate against, for tools that validate config.json
 * before opening. */
char *kiwi_settings_describe(void);
kiwi_status kiwi_options_set(kiwi_options *, const char *name, const char *value, char **errmsg);
void kiwi_options_destroy(kiwi_options *);

/* ---- open / close ----------------------------------------------------------------------------
 * kiwi_open creates the directory if missing, takes the LOCK (KIWI_BUSY if another process or
 * another handle in this process owns it), reads the manifest, replays the WALs and deletes files
 * the manifest does not own. NULL options mean kiwi_options_create("prod").
 * kiwi_close waits for background work, syncs the WAL, releases the lock and frees the handle,
 * including any iterators and snapshots still open (using them afterwards is undefined in C; the
 * Lua binding tracks them and raises). It returns the first background error, if any. */
kiwi_status kiwi_open(const char *path, const kiwi_options *, kiwi_db **out, char **errmsg);
kiwi_status kiwi_close(kiwi_db *);

/* ---- writes ---------------------------------------------------------------------------------- */
kiwi_status kiwi_put(kiwi_db *, const kiwi_write_options *, const char *key, size_t klen,
                     const char *val, size_t vlen, char **errmsg);
/* Deleting a missing key is not an error: it writes a tombstone and returns KIWI_OK. */
kiwi_status kiwi_delete(kiwi_db *, const kiwi_write_options *, const char *key, size_t klen,
                        char **errmsg);

/* ---- reads ------------------------------------------------------------------------------------
 * On KIWI_OK *val is a malloc'd copy of the value (free it with kiwi_free) and *vlen its length;
 * KIWI_NOT_FOUND when the key is absent or deleted. */
kiwi_status kiwi_get(kiwi_db *, const kiwi_read_options *, const char *key, size_t klen,
                     char **val, size_t *vlen, char **errmsg);

/* Like kiwi_get, but answers only from memory and does not wait for the disk: the memtables,
 * and SSTables whose bloom filter and index are in the block cache and whose data block is a
 * data-tier hit or wholly in the page cache (mincore: the kernel could still drop a page in
 * between, a window of microseconds). KIWI_OK / KIWI_NOT_FOUND as kiwi_get, or KIWI_BUSY (with
 * no message, nothing counted in stats) when the answer may need a read from the disk — then
 * call kiwi_get, e.g. on a worker thread. Used by the Lua binding so a read inside a task
 * returns without a thread hop whenever it can. */
kiwi_status kiwi_get_nowait(kiwi_db *, const kiwi_read_options *, const char *key, size_t klen,
                            char **val, size_t *vlen, char **errmsg);

/* Like kiwi_get, without an allocation when the value fits in the caller's buffer: on KIWI_OK
 * *val == buf when *vlen <= cap (the value is in buf; nothing to free), else *val is a malloc'd
 * copy as kiwi_get's (free it with kiwi_free). For callers that copy the value on at once (the
 * Lua binding pushes it as a string from a stack buffer). */
kiwi_status kiwi_get_into(kiwi_db *, const kiwi_read_options *, const char *key, size_t klen,
                          char *buf, size_t cap, char **val, size_t *vlen, char **errmsg);

/* ---- atomic batches ---------------------------------------------------------------------------
 * A batch records puts and deletes; kiwi_write applies all of them or none, with consecutive
 * sequence numbers, as one WAL record. Later operations in a batch win over earlier ones.
 * A batch is not thread-safe. kiwi_batch_count returns the number of operations recorded. */
kiwi_batch *kiwi_batch_create(void);
void kiwi_batch_put(kiwi_batch *, const char *key, size_t klen, const char *val, size_t vlen);
void kiwi_batch_delete(kiwi_batch *, const char *key, size_t klen);
void kiwi_batch_clear(kiwi_batch *);
size_t kiwi_batch_count(const kiwi_batch *);
void kiwi_batch_destroy(kiwi_batch *);
kiwi_status kiwi_write(kiwi_db *, const kiwi_write_options *, kiwi_batch *, char **errmsg);

/* Asynchronous write: queues the batch in the same group-commit queue as kiwi_write and returns
 * at once. KIWI_OK: queued; `done` will be called. Another status: refused before queueing,
 * `done` is not called: KIWI_INVALID_ARGUMENT (a NULL argument, or an operation over the size
 * limits — kiwi_write on the same batch returns the message) or KIWI_CLOSED. A db-owned commit
 * thread leads groups of queued async writers, so many writers share one WAL write and one
 * fdatasync without each holding a thread. `done(ctx, status, errmsg)` is called exactly once,
 * from an engine thread, when the write is durable per `wo` (errmsg is NULL on success,
 * otherwise a malloc'd message the callee must kiwi_free) — except for an empty batch, which
 * completes at once: `done(ctx, KIWI_OK, NULL)` runs on the caller's thread before this returns.
 * The batch must stay alive and unchanged until `done` runs. Writes queued before kiwi_close
 * completes are finished (their `done` runs) before kiwi_close returns. */
typedef void (*kiwi_write_done_fn)(void *ctx, kiwi_status status, char *errmsg);
kiwi_status kiwi_write_async(kiwi_db *, const kiwi_write_options *, kiwi_batch *,
                             kiwi_write_done_fn done, void *ctx);
/* Like kiwi_write, but only when the write can be done at once on the calling thread without
 * waiting: a non-sync write (per `wo`), no other writer queued or leading, no write slowdown or
 * stall due, and room in the active memtable. Then the batch is appended to the WAL (one
 * system call: in the OS on return, as DESIGN §4 asks of a non-sync write) and to the memtable, and
 * the status is kiwi_write's. Otherwise it returns KIWI_BUSY (with no message) having done
 * nothing — call kiwi_write or kiwi_write_async then; a sync write always gets KIWI_BUSY. An
 * empty batch returns KIWI_OK; an operation over the size limits KIWI_INVALID_ARGUMENT, as with
 * kiwi_write. Used by the Lua binding so a task's non-sync write needs no thread hop. */
kiwi_status kiwi_write_nowait(kiwi_db *, const kiwi_write_options *, kiwi_batch *, char **errmsg);

/* ---- iterators --------------------------------------------------------------------------------
 * An iterator sees one consistent snapshot (the read options' snapshot, or the state at creation)
 * and pins the files it reads. It starts invalid: position it with a seek. key/value pointers are
 * valid until the iterator moves or is destroyed. kiwi_iter_create returns NULL if the db is
 * closed. Not thread-safe. */
kiwi_iter *kiwi_iter_create(kiwi_db *, const kiwi_read_options *);
void kiwi_iter_seek(kiwi_iter *, const char *key, size_t klen); /* first key >= key */
void kiwi_iter_seek_for_prev(kiwi_iter *, const char *key, size_t klen); /* last key <= key */
void kiwi_iter_seek_to_first(kiwi_iter *);
void kiwi_iter_seek_to_last(kiwi_iter *);
void kiwi_iter_next(kiwi_iter *); /* REQUIRES: valid */
void kiwi_iter_prev(kiwi_iter *); /* REQUIRES: valid */
bool kiwi_iter_valid(const kiwi_iter *);
const char *kiwi_iter_key(const kiwi_iter *, size_t *len);
const char *kiwi_iter_value(const kiwi_iter *, size_t *len);
/* KIWI_OK, or the first error (e.g. a corrupt block) that made the iterator invalid. */
kiwi_status kiwi_iter_status(const kiwi_iter *, char **errmsg);
void kiwi_iter_destroy(kiwi_iter *);

/* ---- snapshots --------------------------------------------------------------------------------
 * A snapshot names a sequence number; reads through it see the db as it was then. Release every
 * snapshot (kiwi_close releases the rest). kiwi_snapshot_create returns NULL if the db is closed. */
const kiwi_snapshot *kiwi_snapshot_create(kiwi_db *);
uint64_t kiwi_snapshot_sequence(const kiwi_snapshot *);
void kiwi_snapshot_release(kiwi_db *, const kiwi_snapshot *);

/* ---- maintenance ------------------------------------------------------------------------------ */
kiwi_status kiwi_flush(kiwi_db *, char **errmsg); /* memtables to SSTables, waits */
kiwi_status kiwi_compact_range(kiwi_db *, const char *start, size_t slen, const char *end,
                               size_t elen, char **errmsg); /* NULL = open end */
/* Change a setting on the running db (the names of kiwi_options_set). Settings that cannot change
 * live fail with KIWI_INVALID_ARGUMENT saying so. */
kiwi_status kiwi_set_option(kiwi_db *, const char *name, const char *value, char **errmsg);

/* ---- introspection ----------------------------------------------------------------------------
 * JSON text, kiwi_free it; NULL if the name is unknown. Keys and values inside are JSON strings in
 * which every byte outside printable ASCII (and '"' and '\\') is escaped as \u00XX, so a binary
 * key round-trips byte for byte. Names: "stats", "levels", "memtables", "memtable:<id>",
 * "sstable:<id>", "options". */
char *kiwi_property(kiwi_db *, const char *name);
char *kiwi_trace(kiwi_db *, const char *key, size_t klen); /* JSON: the lookup, step by step */

/* ---- events -----------------------------------------------------------------------------------
 * The core reports events (flush, compaction, stall, recovery, corruption) through a callback.
 * It is called from the thread that did the work (a background thread, or the caller's), must not
 * call back into the db, and must return quickly. level: "debug", "info", "warn", "error".
 * event: a short name ("flush_end"); fields_json: a JSON object with the event's fields. */
typedef void (*kiwi_event_fn)(void *ctx, const char *level, const char *event,
                              const char *fields_json);
/* Install the handler in the options before kiwi_open, so recovery events are seen too. */
void kiwi_options_set_event_handler(kiwi_options *, kiwi_event_fn fn, void *ctx);

void kiwi_free(void *);

#ifdef __cplusplus
}
#endif
#endif /* KIWI_H */
