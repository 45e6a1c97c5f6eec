/*
 * wal.h: the record log used by the write-ahead log (NNNNNN.log) and the manifest
 * (MANIFEST-NNNNNN): a sequence of framed records.
 *
 * Record framing (all little-endian):
 *     [u32 length of payload][u32 CRC32C of payload][payload: length bytes]
 * A record (or a group of records) is written with a single write(2) or writev(2), or copied
 * into a shared mapping of the file (a mapped log, the db's WAL by default), so after a process
 * crash a record is either whole or a torn tail at the end of the file.
 *
 * Reading: every whole record with a good CRC is handed to the callback in order. At the end of
 * the file, a record whose header or payload runs past EOF, or whose CRC fails and which ends
 * exactly at EOF, is a *torn tail*: it is reported in the stats (torn_tail, torn_bytes), not an
 * error, and the caller may cut it off (kw_truncate_file). A bad record before the tail is
 * KIWI_CORRUPTION naming the file and the record's offset — unless mode is KW_WAL_SKIP_CORRUPT,
 * which skips it when its length field is plausible (the next record starts right after it),
 * counts it in skipped_records/skipped_bytes and goes on; a corrupt length there ends the read
 * as a torn tail would.
 */
#ifndef KW_WAL_H
#define KW_WAL_H

#include <stdbool.h>
#include <stdint.h>

#include "common.h"
#include "env.h"

#define KW_WAL_HEADER_SIZE 8
#define KW_WAL_MAX_RECORD (512u * 1024u * 1024u) /* a longer length field is corrupt */

typedef struct kw_wal_writer kw_wal_writer;

/* Creates a new log file (truncating any file of that name). */
kiwi_status kw_wal_writer_create(const char *path, kw_wal_writer **out, char **errmsg);
/* A log whose appends are copies into a mapping (kw_file_create_mapped): no system call per
 * append; the file is preallocated a step ahead, so it must be read with
 * kw_wal_read_preallocated. */
kiwi_status kw_wal_writer_create_mapped(const char *path, kw_wal_writer **out, char **errmsg);
/* Appends one framed record with one system call: write(2) of header and payload side by side
 * when the payload is small (up to 4 KiB), else writev(2) of the two (the payload not copied).
 * A mapped log copies both into the mapping instead (a system call only when a preallocation
 * step is due), and refuses an empty payload: its zero header would read as unwritten space. */
kiwi_status kw_wal_writer_add(kw_wal_writer *w, kw_slice payload, char **errmsg);
/* Appends several framed records with one writev(2) (group commit), or one copy each into a
 * mapped log. */
kiwi_status kw_wal_writer_add_many(kw_wal_writer *w, const kw_slice *payloads, size_t count,
                                   char **errmsg);
/* Appends records that the caller fdatasyncs next: as kw_wal_writer_add (one record) or
 * kw_wal_writer_add_many, except that a mapped log gets them with pwritev(2) rather than copies
 * into its mapping (kw_file_appendv_synced; wal.md, "Synced appends"), and a preallocated log
 * is zeroed a little ahead (kw_file_zero_ahead; wal.md, "Zeroing ahead"). */
kiwi_status kw_wal_writer_add_synced(kw_wal_writer *w, const kw_slice *payloads, size_t count,
                                     char **errmsg);
kiwi_status kw_wal_writer_sync(kw_wal_writer *w, char **errmsg); /* fdatasync */
uint64_t kw_wal_writer_size(const kw_wal_writer *w);
const char *kw_wal_writer_path(const kw_wal_writer *w);
/* Makes room for `bytes` more of appends inside the file's length, preallocating (fallocate)
 * a step ahead when they would not fit, so the fdatasync after them commits no size change: the
 * db calls it before a synced append. Best effort: where the file system cannot preallocate, the
 * log grows append by append. A log written so must be read with kw_wal_read_preallocated. */
void kw_wal_writer_reserve(kw_wal_writer *w, uint64_t bytes);
uint64_t kw_wal_writer_allocated(const kw_wal_writer *w); /* the file's length (>= size) */
/* Gives back preallocated space (ftruncate to the size), optionally syncs, then closes and
 * frees (always frees). */
kiwi_status kw_wal_writer_close(kw_wal_writer *w, bool sync, char **errmsg);

typedef enum {
    KW_WAL_TOLERATE_TAIL = 0, /* default: cut a torn tail, fail on corruption before it */
    KW_WAL_SKIP_CORRUPT       /* also skip corrupt records before the tail (with a warning) */
} kw_wal_recovery_mode;

typedef struct {
    uint64_t records;         /* whole records delivered */
    uint64_t good_bytes;      /* offset just past the last good record */
    bool torn_tail;           /* a torn record was found at the end */
    uint64_t torn_bytes;      /* bytes from good_bytes to EOF */
    uint64_t skipped_records; /* KW_WAL_SKIP_CORRUPT only */
    uint64_t skipped_bytes;
    uint64_t prealloc_bytes;  /* kw_wal_read_preallocated: zeros after the end (not torn) */
} kw_wal_read_stats;

/* Called for each whole record, in file order; a non-OK return stops the read and is returned.
 * `offset` is the record's offset in the file. payload is valid only during the call. */
typedef kiwi_status (*kw_wal_record_fn)(void *ctx, kw_slice payload, uint64_t offset,
                                        char **errmsg);

kiwi_status kw_wal_read(const char *path, kw_wal_recovery_mode mode, kw_wal_record_fn fn,
                        void *ctx, kw_wal_read_stats *stats, char **errmsg);
/* kw_wal_read over size bytes already in memory (the fuzzer, tools): the same rules and results;
 * `name` stands for the path in messages. data may be NULL when size is 0. */
kiwi_status kw_wal_read_buffer(const char *name, const char *data, size_t size,
                               kw_wal_recovery_mode mode, kw_wal_record_fn fn, void *ctx,
                               kw_wal_read_stats *stats, char **errmsg);

/* Reading a log whose writer preallocated space (kw_wal_writer_reserve: the db's WALs). After a
 * crash such a file may hold, past its last record, zeros (space never written) and — after a
 * machine crash only — zero blocks among the last writes, since blocks of unsynced appends may
 * reach the disk in any order once the file's length already covers them. Every rule above
 * holds, and at the first record that is not whole and good:
 *   a. only zero bytes from there to EOF: the end of the log, not a torn tail; counted in
 *      prealloc_bytes;
 *   b. a zero header (length 0, CRC 0, which no writer produces) with data after it: space never
 *      written, so nothing after it was ever synced (an fdatasync covers every earlier byte):
 *      the log ends there as at a torn tail;
 *   c. (as above) a record running past EOF, or with a bad CRC ending at EOF: a torn tail;
 *   d. a bad CRC with only zeros after the record; or a bad record that a whole zero 4 KiB block
 *      (aligned in the file) overlaps — the record and the next header, or only the header when
 *      the length is bad: a write cut short, or a block never written: a torn tail;
 *   otherwise (a bad record that no zeros explain) corruption as above. The price:
 *   damage that zeroes a whole aligned 4 KiB block of a synced record, or a header, reads as
 *   unwritten space and is cut as a torn tail (counted and logged) rather than reported. */
kiwi_status kw_wal_read_preallocated(const char *path, kw_wal_recovery_mode mode,
                                     kw_wal_record_fn fn, void *ctx, kw_wal_read_stats *stats,
                                     char **errmsg);
kiwi_status kw_wal_read_buffer_preallocated(const char *name, const char *data, size_t size,
                                            kw_wal_recovery_mode mode, kw_wal_record_fn fn,
                                            void *ctx, kw_wal_read_stats *stats, char **errmsg);

#endif /* KW_WAL_H */
