/*
 * compaction.h: leveled compaction: choosing what to compact and merging it.
 *
 * Policy (docs/internals/compaction.md):
 *  - L0 (overlapping flushed files) is compacted into L1 when it holds l0_compaction_threshold
 *    files: all L0 files plus the L1 files they overlap.
 *  - L1..L(max_levels-1) each have a target size: level_base_mb for L1, times level_size_ratio
 *    per level. A level over its target compacts ONE file (plus the files of the next level it
 *    overlaps) into the next level: the file densest in tombstones if any file is at least 25%
 *    tombstones, otherwise the next file after the level's last compacted key (round robin), so
 *    no compaction rewrites a whole level. A file that overlaps nothing below is moved, not
 *    rewritten. The last level is never compacted out.
 *  - The level with the highest score (size / target, or L0 files / threshold) >= 1 goes first;
 *    a compaction Ln -> Ln+1 reserves both levels, so compactions that share no level run in
 *    parallel.
 *  - Read-triggered (reason "reads"), when no level scores >= 1: a file whose read budget is
 *    spent (kw_file_meta.read_budget <= 0, see kw_file_charge_read) and whose reads have paid
 *    for its compaction (budget granted >= input bytes + KW_COMPACTION_FIXED_BYTES; else the
 *    difference is granted and the file waits). An L0 file is compacted by the L0 rule (all L0
 *    files + the L1 files they overlap), a file of L1.. with the files of the next level it
 *    overlaps (moved when it overlaps none; it stays spent, so it keeps sinking until it meets
 *    the files it is read with). Upper levels first.
 * The merge drops a version when a newer version of the same key is visible to every live
 * snapshot, and a tombstone when no snapshot needs it and no deeper level may hold the key.
 * Outputs are cut at target_file_size_mb, always between two user keys (all versions of a key
 * stay in one file, so a point read consults one file per sorted level).
 */
#ifndef KW_COMPACTION_H
#define KW_COMPACTION_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "options.h"
#include "version.h"

typedef struct {
    int level;                  /* input level */
    int output_level;           /* level + 1, or level itself for a last-level (manual) rewrite */
    kw_file_meta **inputs[2];   /* [0]: files of `level`, [1]: overlapping files of level+1 */
    size_t ninputs[2];
    int *input_levels;          /* the level of each inputs[0] file (`level`, except for a
                                 * manual compaction into the last level, which takes files
                                 * from every level above it) */
    bool trivial_move;          /* one input file, nothing below it overlaps: just move it */
    bool manual;                /* from kiwi_compact_range */
    bool read_triggered;        /* a file's read budget ran out (reason "reads") */
    const char *reason;         /* "l0_files", "level_size", "tombstones", "reads", "manual" */
    double score;
} kw_compaction;

/* Scores and picks the most urgent compaction in v whose levels are not in `busy`, else a
 * read-triggered one (a spent read budget that paid for it; budgets that did not are re-armed);
 * NULL if nothing needs compacting. `cursor[level]` is the level's round-robin position (the
 * largest user key last compacted there, malloc'd; updated by kw_compaction_done).
 * REQUIRES: the db mutex (it writes read_granted). */
kw_compaction *kw_compaction_pick(const kw_version *v, const kiwi_options *o, const bool *busy,
                                  kw_buf *cursor);

/* A manual compaction of `level` restricted to user keys [start, end] (NULL = open end);
 * NULL when the level holds no file in the range. For the last level (level == max_levels) the
 * files are rewritten in place, which drops shadowed versions and tombstones no snapshot needs. */
kw_compaction *kw_compaction_range(const kw_version *v, int level, int max_levels,
                                   const kw_slice *start, const kw_slice *end);

/* A manual compaction of user keys [start, end] straight into the last level (max_levels):
 * every file above it that overlaps the range, then every file above it that overlaps what was
 * taken (until nothing more overlaps: a version left above the last level would shadow a newer
 * one moved below it), plus the last-level files they overlap. With L0 involved all L0 files
 * are taken (they overlap each other). One pass writes the data once, instead of once per level.
 * NULL when no level above the last holds a file in the range. */
kw_compaction *kw_compaction_range_to_last(const kw_version *v, int max_levels,
                                           const kw_slice *start, const kw_slice *end);

/* Drops the level inputs whose file number is >= min_number (files written after a point);
 * returns how many are left. For a manual last-level rewrite after a pass that just wrote them. */
size_t kw_compaction_drop_inputs_from(kw_compaction *c, uint64_t min_number);

/* Records the largest key of the compaction's level inputs as the level's cursor. */
void kw_compaction_done(const kw_compaction *c, kw_buf *cursor);
void kw_compaction_free(kw_compaction *c);
uint64_t kw_compaction_input_bytes(const kw_compaction *c);

/* Read costs, in bytes of compaction work (docs/internals/compaction.md, "Read-triggered
 * compaction", has the measurements): a file consulted in vain costs a bloom probe when its
 * filter ruled the key out, a data block search otherwise; an iterator sample stands for the
 * ~1 MiB read through overlapping files since the previous one. */
#define KW_READ_COST_PROBE 128
#define KW_READ_COST_BLOCK 4096
#define KW_READ_SAMPLE_BYTES (1 << 20)

/* Charges `bytes` of wasted read work to m, the first file a read consulted when it had to
 * consult another one too. True for exactly one charge per arming: the one that spent the
 * budget (the caller then wakes a compaction thread). Thread-safe and cheap: one relaxed load,
 * then one relaxed subtraction while the budget lasts (a spent file's counter is not written
 * again, so its cache line stays shared among readers). */
static inline bool kw_file_charge_read(kw_file_meta *m, int_fast64_t bytes)
{
    if (atomic_load_explicit(&m->read_budget, memory_order_relaxed) <= 0)
        return false;
    int_fast64_t old = atomic_fetch_sub_explicit(&m->read_budget, bytes, memory_order_relaxed);
    return old > 0 && old <= bytes;
}

/* For an iterator's read sample at user key ukey: the first file a point read would consult
 * (the newest L0 file holding ukey in its range, else the one of the highest level) when at
 * least two files of v hold ukey in their range; NULL otherwise. */
kw_file_meta *kw_compaction_sample_file(const kw_version *v, kw_slice ukey);

/* Per-level score as used by the picker (for stats). */
double kw_compaction_score(const kw_version *v, const kiwi_options *o, int level);

typedef struct {
    uint64_t entries_in, entries_out;
    uint64_t dropped_versions, dropped_tombstones;
    uint64_t bytes_in, bytes_out;
} kw_compaction_stats;

/* Allocates a file number (REQUIRES: the caller's db mutex). */
typedef uint64_t (*kw_new_file_fn)(void *ctx);

/* Merges the inputs into new SSTables in `dir` and describes them in `edit` (inputs deleted,
 * outputs added at level + 1). smallest_snapshot: the oldest sequence any reader may still read
 * at. `deeper`: the version used to decide whether a tombstone may be dropped (levels below the
 * output level). new_file is called with `mu` held (this function takes and releases it). On
 * failure every output written is removed. Runs without mu otherwise. */
kiwi_status kw_compaction_run(const kw_compaction *c, const char *dir, const kiwi_options *o,
                              uint64_t smallest_snapshot, const kw_version *deeper,
                              pthread_mutex_t *mu, kw_new_file_fn new_file, void *ctx,
                              kw_version_edit *edit, kw_compaction_stats *stats, char **errmsg);

#endif /* KW_COMPACTION_H */
