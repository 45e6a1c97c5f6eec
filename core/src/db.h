/*
 * db.h: the kiwi_db handle and what the db_*.c files share.
 *
 * Files: db.c (open, recovery, close), db_write.c (public write calls, commit thread),
 * db_group.c (writer queue, group commit, gathering; db_group.h), db_rotate.c (new WALs, memtable
 * rotation, slowdowns and stalls), db_flush.c (flush pipeline, ordered commits, obsolete-file
 * cleanup), db_read.c (point reads, snapshots), db_iter.c (merging and user iterators),
 * db_property.c (stats, introspection JSON, trace).
 *
 * Concurrency (DESIGN §4):
 *  - `mu` guards every field under "guarded by mu". It is never held across disk I/O except the
 *    rare manifest rewrite; long work (WAL append, memtable insert, SSTable build, manifest sync)
 *    runs with mu released by exactly one owner (the write leader, a flush worker, the committer).
 *  - Readers take mu only to pin a kw_super (the active memtable, the immutable memtables and the
 *    current version, reference counted together), then read with no lock.
 *  - Sequence numbers: the write leader assigns them under mu; `visible_seq` (atomic) is
 *    published after the group's memtable inserts finish, so a reader never sees half a batch.
 */
#ifndef KW_DB_H
#define KW_DB_H

#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdint.h>

#include "batch.h"
#include "lock.h"
#include "memtable.h"
#include "options.h"
#include "version.h"
#include "wal.h"

/* A consistent set of layers for readers: pinned with one reference. */
typedef struct kw_super {
    atomic_int refs;
    kw_memtable *mem;    /* active memtable */
    kw_memtable **imm;   /* immutable memtables, newest first */
    size_t nimm;
    kw_version *version; /* SSTables */
} kw_super;

/* One immutable memtable on its way to an SSTable. */
typedef enum { FLUSH_PENDING, FLUSH_BUILDING, FLUSH_BUILT, FLUSH_FAILED } kw_flush_state;

typedef struct kw_flush_job {
    kw_memtable *mem;          /* holds a reference */
    uint64_t first_wal;        /* lowest WAL number holding this memtable's data */
    uint64_t file_number;      /* SSTable number, assigned at rotation (memtable order) */
    kw_flush_state state;
    bool has_file;             /* false when the memtable was empty */
    kw_edit_file file;         /* the built SSTable's metadata */
    uint64_t micros;           /* build time */
    struct kw_flush_job *next; /* FIFO: oldest first */
} kw_flush_job;

/* A writer waiting in the group-commit queue. */
typedef struct kw_writer {
    kiwi_batch *batch;        /* NULL: a flush request (rotate the memtable) */
    bool sync;
    bool done;
    bool async;               /* kiwi_write_async: heap node, completion by callback */
    kiwi_status status;
    char *errmsg;
    sem_t wake;               /* thread writers wait here: posted when done or made the head
                               * (a gathering head also when a writer ends its gathering) */
    kiwi_write_done_fn done_fn; /* async writers */
    void *done_ctx;
    struct kw_writer *next;
} kw_writer;

typedef struct kiwi_snapshot {
    uint64_t seq;
    struct kiwi_snapshot *prev, *next;
} kw_snapshot_node;

typedef struct kw_stats {
    atomic_uint_fast64_t puts, deletes, batches, gets, get_hits, get_misses;
    atomic_uint_fast64_t user_bytes_written;  /* keys + values given to writes */
    atomic_uint_fast64_t wal_bytes, wal_writes, wal_syncs, write_groups;
    atomic_uint_fast64_t flushes, flush_bytes, flush_micros, flush_entries;
    atomic_uint_fast64_t rotations, stalls, stall_micros;
    atomic_uint_fast64_t iterators_created, snapshots_created;
    atomic_uint_fast64_t recovered_records, recovered_torn_bytes, recovered_skipped;
    atomic_uint_fast64_t memtable_hits, sstable_reads, bloom_negatives;
    atomic_uint_fast64_t compactions, compaction_bytes_read, compaction_bytes_written;
    atomic_uint_fast64_t compaction_micros, compaction_dropped_versions;
    atomic_uint_fast64_t compaction_dropped_tombstones, trivial_moves, manual_compactions;
    atomic_uint_fast64_t read_compactions; /* picked because a file's read budget ran out */
    atomic_uint_fast64_t slowdowns, slowdown_micros;
} kw_stats;

struct kiwi_db {
    char *path;
    kw_lock *lock;
    kiwi_options opts;             /* live-changed fields are written under mu */
    uint64_t open_micros;

    pthread_mutex_t mu;
    pthread_cond_t flush_cv;       /* flush workers wait for work here */
    pthread_cond_t done_cv;        /* flush progress / commits (stalled writers, kiwi_flush) */
    pthread_cond_t async_cv;       /* the commit thread waits for an async writer at the head */

    /* ---- guarded by mu ---- */
    bool closing;
    kiwi_status bg_status;         /* first background error: writes refused after it */
    char *bg_errmsg;
    kw_writer *writers_head, *writers_tail;
    kw_memtable *mem;
    uint64_t mem_first_wal;        /* lowest WAL holding the active memtable's data */
    kw_wal_writer *wal;
    uint64_t wal_number;
    uint64_t last_seq;             /* last sequence assigned */
    kw_flush_job *jobs_head, *jobs_tail; /* immutable memtables, oldest first */
    size_t njobs;
    bool committing;               /* a worker is writing the manifest */
    uint64_t flushes_enqueued;     /* jobs ever queued */
    uint64_t flushes_committed;    /* jobs ever committed (in queue order) */
    bool stop_workers;
    kw_super *super;               /* current reader view (one reference held here) */
    kw_vset *vs;
    kw_block_cache *cache;         /* three tiers; budgets follow the options */
    kw_snapshot_node snapshots;    /* circular list sentinel */
    size_t nsnapshots;
    struct kiwi_iter *iters;       /* live iterators (freed at close) */
    bool stalled;

    atomic_uint_fast64_t visible_seq; /* readers see sequences <= this */

    /* compaction (db_compact.c), guarded by mu */
    pthread_cond_t compact_cv;     /* compaction threads wait for work here */
    bool level_busy[KW_MAX_LEVELS]; /* reserved by a running compaction */
    kw_buf cursor[KW_MAX_LEVELS];  /* round-robin position per level */
    uint32_t compactions_running;
    bool stop_compactors;
    pthread_t *compactors;
    uint32_t ncompactors;

    /* group commit gathering (db_group.c), guarded by mu */
    size_t sync_queued;            /* sync writers in the writer queue */
    size_t sync_seen;              /* sync writers at once around the last synced group */
    uint64_t sync_micros_avg;      /* recent fdatasync duration (moving average), 0: unknown */
    kw_writer *gatherer;           /* the queue head while it gathers, else NULL */
    size_t gather_target;          /* it gathers until this many sync writers are queued */
    uint64_t gather_start;         /* when it started (microseconds) */
    /* gatherings started; ended by the bound; ended by an arriving writer taking the group over;
     * total microseconds (atomic: read without mu) */
    atomic_uint_fast64_t gathers, gather_timeouts, gather_handoffs, gather_micros;
    /* waits of sync thread writers (members and gathering heads): ended by the post while the
     * writer was yielding; blocked (sync_waits "block", long fdatasyncs, or yields turned slow) */
    atomic_uint_fast64_t sync_waits_yielded, sync_waits_blocked;
    /* yielding suspended because one yield lasted over CONTENDED_YIELD_US (the CPU is contended):
     * how often; until when (microseconds); for how long the last time (doubles while it
     * repeats) */
    atomic_uint_fast64_t sync_yield_backoffs, yield_resume_at, yield_backoff_us;

    pthread_t committer;           /* leads groups of async writers */
    bool has_committer;
    bool stop_committer;           /* guarded by mu */
    pthread_t *workers;
    uint32_t nworkers;
    kw_stats stats;
};

/* db.c */
void kw_db_event(kiwi_db *db, const char *level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void kw_db_set_bg_error(kiwi_db *db, kiwi_status st, const char *msg); /* REQUIRES: mu */

/* db_read.c: reader views */
kw_super *kw_super_acquire(kiwi_db *db);  /* pins the current view (takes mu briefly) */
void kw_super_release(kw_super *s);
void kw_db_install_super(kiwi_db *db);    /* REQUIRES: mu; rebuilds db->super */
uint64_t kw_db_read_seq(kiwi_db *db, const kiwi_read_options *ro);
/* Charges `bytes` of wasted read work to m (kw_file_charge_read); wakes a compaction thread
 * when that spends m's budget (once per arming). Takes mu only then. */
void kw_db_charge_read(kiwi_db *db, kw_file_meta *m, int_fast64_t bytes);

/* db_rotate.c */
kiwi_status kw_db_new_wal(kiwi_db *db, char **errmsg); /* REQUIRES: mu */
/* Makes the active memtable immutable and queues it for flush. REQUIRES: mu. */
kiwi_status kw_db_rotate(kiwi_db *db, char **errmsg);
/* Gives the active memtable room (force: rotates it unless empty), slowing down or stalling as
 * L0 and the flush queue require. REQUIRES: mu; the caller leads the writer queue. */
kiwi_status kw_db_make_room(kiwi_db *db, bool force, char **errmsg);
bool kw_db_has_room_now(const kiwi_db *db); /* a write fits at once, nothing owed; REQUIRES: mu */

/* db_write.c */
kiwi_status kw_db_start_committer(kiwi_db *db, char **errmsg);
void kw_db_stop_committer(kiwi_db *db); /* after the writer queue has drained */

/* db_flush.c */
kiwi_status kw_flush_start_workers(kiwi_db *db, char **errmsg);
void kw_flush_stop_workers(kiwi_db *db);
void kw_flush_enqueue(kiwi_db *db, kw_memtable *mem, uint64_t first_wal); /* REQUIRES: mu */
/* Waits until every job queued so far is committed; REQUIRES: mu. */
kiwi_status kw_flush_wait(kiwi_db *db, char **errmsg);

/* Serializes manifest writers (flush commits and compaction commits). REQUIRES: mu. */
void kw_db_commit_begin(kiwi_db *db);
void kw_db_commit_end(kiwi_db *db);
void kw_flush_try_commit(kiwi_db *db); /* REQUIRES: mu */

/* db_compact.c */
kiwi_status kw_compact_start_workers(kiwi_db *db, char **errmsg);
void kw_compact_stop_workers(kiwi_db *db);
void kw_compact_schedule(kiwi_db *db); /* REQUIRES: mu; wakes a compaction thread */
uint64_t kw_db_smallest_snapshot(kiwi_db *db); /* REQUIRES: mu */

/* db_iter.c */
void kw_db_iters_close_all(kiwi_db *db); /* REQUIRES: mu */

#endif /* KW_DB_H */
