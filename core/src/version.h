/*
 * version.h: versions of the LSM tree (which SSTables are live at each level) and the version set
 * that persists them through the manifest.
 *
 * A kw_version is immutable once installed and reference counted: a reader or iterator pins the
 * version it started with, so the files it reads stay mapped. A kw_file_meta is shared by every
 * version that contains it; when an edit removes it, it is marked obsolete, and the SSTable is
 * deleted from disk when the last version holding it is released — never while a reader uses it.
 *
 * Levels: L0 holds flushed files, which may overlap; they are ordered newest first (highest file
 * number first, since file numbers are handed out in memtable order). L1.. are sorted runs
 * ordered by smallest key, non-overlapping.
 *
 * The version set owns the manifest (MANIFEST-NNNNNN, WAL-framed version edits) and CURRENT.
 * Thread safety: kw_vset_* functions require the caller's db mutex (`mu`) to be held;
 * kw_vset_log_and_apply releases it while it writes and syncs the manifest, and the caller must
 * ensure only one log_and_apply runs at a time.
 */
#ifndef KW_VERSION_H
#define KW_VERSION_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "options.h"
#include "table.h"
#include "version_edit.h"
#include "wal.h"

typedef struct kw_file_meta {
    atomic_int refs;      /* versions holding this file */
    atomic_bool obsolete; /* removed from the live set: delete the file at refs == 0 */
    uint64_t number;
    uint64_t size;
    char *smallest; /* internal keys, malloc'd */
    size_t smallest_len;
    char *largest;
    size_t largest_len;
    uint64_t min_seq, max_seq;
    uint64_t entries, tombstones;
    kw_table *table; /* open reader (mmapped); NULL only while a manifest is being replayed */
    char *path;
    /* Read-triggered compaction (compaction.h): bytes of read work wasted because of this file
     * (reads that consulted it first, then another file) that it may still cause before it asks
     * to be compacted. Readers only subtract (relaxed atomics, kw_file_charge_read); the picker
     * adds when it re-arms. <= 0: spent. Starts at size + KW_COMPACTION_FIXED_BYTES. */
    atomic_int_fast64_t read_budget;
    uint64_t read_granted; /* total budget given so far; guarded by the db mutex (the picker) */
} kw_file_meta;

/* What any compaction costs beyond its input bytes (file creation, two fsyncs, a manifest
 * record, a new version), in bytes of merging: about 1 MiB. */
#define KW_COMPACTION_FIXED_BYTES (1 << 20)

typedef struct kw_version {
    atomic_int refs;
    kw_file_meta **files[KW_MAX_LEVELS]; /* per level, in the order described above */
    size_t nfiles[KW_MAX_LEVELS];
} kw_version;

void kw_file_meta_unref(kw_file_meta *m); /* for holders outside versions (compactions) */

void kw_version_ref(kw_version *v);
void kw_version_unref(kw_version *v);
uint64_t kw_version_level_bytes(const kw_version *v, int level);

typedef struct kw_vset {
    char *dir;
    kw_version *current;     /* guarded by the db mutex; holds one reference */
    uint64_t log_number;     /* WALs numbered below this are obsolete */
    uint64_t next_file;      /* next file number to hand out */
    uint64_t last_seq;       /* last sequence recorded in the manifest */
    uint64_t manifest_number;
    kw_wal_writer *manifest; /* the open manifest */
    uint64_t manifest_edits; /* records written to it */
    kw_block_cache *cache;   /* tables are opened with it (may be NULL); not owned */
} kw_vset;

/* Opens the version set of dir: reads CURRENT and replays the manifest it names (a torn last
 * record is ignored: it was never committed), opens every live SSTable, then starts a fresh
 * manifest holding the whole state and switches CURRENT to it. With no CURRENT the db is new.
 * *created tells which happened. */
kiwi_status kw_vset_open(const char *dir, kw_block_cache *cache, kw_vset **out, bool *created,
                         char **errmsg);
void kw_vset_close(kw_vset *vs);

/* Allocates a file number. REQUIRES: mu held. */
uint64_t kw_vset_new_file_number(kw_vset *vs);

/* Applies edit to the current version: fills in next_file/last_seq if unset, opens the tables of
 * added files, appends the edit to the manifest and syncs it (with mu released), then installs
 * the new version. On failure nothing is installed. REQUIRES: mu held; one caller at a time. */
kiwi_status kw_vset_log_and_apply(kw_vset *vs, kw_version_edit *edit, pthread_mutex_t *mu,
                                  char **errmsg);

/* The current version with a reference the caller must drop. REQUIRES: mu held. */
kw_version *kw_vset_current(kw_vset *vs);

/* Is `number` a live SSTable in the current version? REQUIRES: mu held. */
bool kw_vset_is_live_table(kw_vset *vs, uint64_t number);

#endif /* KW_VERSION_H */
