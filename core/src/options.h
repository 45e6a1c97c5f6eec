/*
 * options.h: kiwi_options, the engine's settings: defaults per mode, parsing and validation of
 * config.json-style name/value strings, and which settings may change on a running db.
 *
 * One table (options.c) declares every setting once: its name, type, range, whether it can
 * change live, and its dev/prod defaults. kiwi_options_set, kiwi_set_option and the "options"
 * property all read that table, so a setting cannot be valid in one place and unknown in another.
 */
#ifndef KW_OPTIONS_H
#define KW_OPTIONS_H

#include <stdbool.h>
#include <stdint.h>

#include "common.h"
#include "wal.h"

#define KW_MAX_LEVELS 7 /* L0 .. L6; the max_levels setting picks how many are used (default 3) */

struct kiwi_options {
    char mode[8];                  /* "dev" or "prod" */
    uint64_t max_memtable_entries; /* dev: rotate the memtable after this many entries */
    double max_memtable_size_mb;   /* prod: rotate the memtable after this many MiB */
    uint32_t l0_compaction_threshold; /* L0 files that trigger an L0 -> L1 compaction */
    uint32_t l0_slowdown_writes_trigger; /* L0 files at which each write is delayed 1 ms */
    uint32_t l0_stop_writes_trigger;  /* L0 files at which writes wait for compaction */
    double target_file_size_mb;    /* compaction output files (L1+) are cut at this size */
    double level_base_mb;          /* L1's target size; L(n+1) = L(n) * level_size_ratio */
    uint32_t level_size_ratio;
    uint32_t compaction_workers;   /* background compaction threads */
    double bloom_fpr_dev;          /* bloom false-positive rate of new SSTables in dev mode */
    double bloom_fpr_prod;         /* ... in prod mode */
    uint32_t flush_max_workers;    /* threads building SSTables from immutable memtables */
    uint32_t max_levels;           /* deepest level index (L0..L<max_levels>) */
    uint32_t block_size;           /* SSTable data block target size, bytes */
    uint32_t max_immutable_memtables; /* writers stall while this many wait for flush */
    double block_cache_data_mb;    /* budget of the data-block tier */
    double block_cache_index_mb;   /* budget of the index tier */
    double block_cache_bloom_mb;   /* budget of the bloom-filter tier */
    bool data_reads_cached;        /* "cached": data blocks through the data tier; "in_place" */
    bool sync_writes;              /* default of kiwi_write_options.sync */
    bool wal_writes_mapped;        /* "mapped": WAL appends copied into a shared mapping; "write" */
    bool sync_waits_yield;         /* "yield": writers waiting for a short fdatasync yield the CPU
                                    * in a loop before they block; "block" */
    kw_wal_recovery_mode wal_recovery; /* "tolerate_tail" or "skip_corrupt" */
    char compression[8];           /* "none" (zstd/lz4 are not built yet) */
    kiwi_event_fn event_fn;        /* may be NULL */
    void *event_ctx;
};

/* Fills o with the defaults of mode ("dev" or "prod"); false for an unknown mode. */
bool kw_options_defaults(kiwi_options *o, const char *mode);

/* Validates and applies one setting. `live` = the db is running: settings that cannot change
 * live are refused with a message saying so. */
kiwi_status kw_options_apply(kiwi_options *o, const char *name, const char *value, bool live,
                             char **errmsg);

/* True in dev mode (memtables rotate by entries instead of bytes). */
bool kw_options_is_dev(const kiwi_options *o);
/* The bloom FPR for new SSTables in the current mode. */
double kw_options_bloom_fpr(const kiwi_options *o);

/* Appends the settings as one JSON object. */
void kw_options_to_json(const kiwi_options *o, kw_buf *out);

#endif /* KW_OPTIONS_H */
