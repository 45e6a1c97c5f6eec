/*
 * compaction.c: choosing compactions and merging their inputs (policy in compaction.h and
 * docs/internals/compaction.md). Knows versions and tables; nothing about threads or the db.
 */
#include "compaction.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "dbformat.h"
#include "env.h"
#include "killpoint.h"
#include "merge_iter.h"
#include "table.h"

#define TOMBSTONE_DENSE 0.25 /* a file this full of tombstones is compacted first */

static kw_slice user_smallest(const kw_file_meta *m)
{
    return kw_ikey_user(kw_slice_make(m->smallest, m->smallest_len));
}

static kw_slice user_largest(const kw_file_meta *m)
{
    return kw_ikey_user(kw_slice_make(m->largest, m->largest_len));
}

/* Does m's user-key range meet [start, end]? NULL bounds are open. */
static bool overlaps(const kw_file_meta *m, const kw_slice *start, const kw_slice *end)
{
    if (start && kw_slice_compare(user_largest(m), *start) < 0)
        return false;
    if (end && kw_slice_compare(user_smallest(m), *end) > 0)
        return false;
    return true;
}

static double level_target_bytes(const kiwi_options *o, int level)
{
    double t = o->level_base_mb * 1024.0 * 1024.0;
    for (int l = 1; l < level; l++)
        t *= o->level_size_ratio;
    return t;
}

double kw_compaction_score(const kw_version *v, const kiwi_options *o, int level)
{
    if (level >= (int)o->max_levels)
        return 0; /* the last level is never compacted out */
    if (level == 0)
        return (double)v->nfiles[0] / o->l0_compaction_threshold;
    return (double)kw_version_level_bytes(v, level) / level_target_bytes(o, level);
}

static kw_compaction *compaction_new(int level)
{
    kw_compaction *c = kw_calloc(1, sizeof *c);
    c->level = level;
    c->output_level = level + 1;
    return c;
}

/* Adds m, a file of `level`, to the inputs (which: 0 for the upper levels, 1 for the output
 * level). */
static void add_input_at(kw_compaction *c, int which, int level, kw_file_meta *m)
{
    size_t n = c->ninputs[which];
    c->inputs[which] = kw_realloc(c->inputs[which], (n + 1) * sizeof(kw_file_meta *));
    c->inputs[which][n] = m;
    if (which == 0) {
        c->input_levels = kw_realloc(c->input_levels, (n + 1) * sizeof(int));
        c->input_levels[n] = level;
    }
    c->ninputs[which] = n + 1;
    atomic_fetch_add(&m->refs, 1); /* released in kw_compaction_free */
}

static void add_input(kw_compaction *c, int which, kw_file_meta *m)
{
    add_input_at(c, which, which ? c->output_level : c->level, m);
}

static bool is_input(const kw_compaction *c, const kw_file_meta *m)
{
    for (size_t i = 0; i < c->ninputs[0]; i++)
        if (c->inputs[0][i] == m)
            return true;
    return false;
}

/* The user-key range covered by the level inputs. */
static void input_range(const kw_compaction *c, kw_slice *lo, kw_slice *hi)
{
    for (size_t i = 0; i < c->ninputs[0]; i++) {
        kw_slice s = user_smallest(c->inputs[0][i]), l = user_largest(c->inputs[0][i]);
        if (i == 0 || kw_slice_compare(s, *lo) < 0)
            *lo = s;
        if (i == 0 || kw_slice_compare(l, *hi) > 0)
            *hi = l;
    }
}

/* Adds the files of level+1 that overlap the level inputs, and decides on a trivial move. */
static void add_overlapping_below(kw_compaction *c, const kw_version *v)
{
    kw_slice lo = {NULL, 0}, hi = {NULL, 0};
    input_range(c, &lo, &hi);
    int below = c->output_level;
    for (size_t i = 0; i < v->nfiles[below]; i++)
        if (overlaps(v->files[below][i], &lo, &hi))
            add_input(c, 1, v->files[below][i]);
    c->trivial_move = c->ninputs[0] == 1 && c->ninputs[1] == 0 && !c->manual;
}

/* For L1+: the file to compact: the densest in tombstones if one is dense enough, else the first
 * file after the cursor (wrapping around). */
static kw_file_meta *pick_file(const kw_version *v, int level, const kw_buf *cursor,
                               const char **reason)
{
    kw_file_meta *best = NULL;
    double best_density = TOMBSTONE_DENSE;
    for (size_t i = 0; i < v->nfiles[level]; i++) {
        kw_file_meta *m = v->files[level][i];
        double d = m->entries ? (double)m->tombstones / (double)m->entries : 0;
        if (d >= best_density) {
            best = m;
            best_density = d;
        }
    }
    if (best) {
        *reason = "tombstones";
        return best;
    }
    *reason = "level_size";
    for (size_t i = 0; cursor->len && i < v->nfiles[level]; i++)
        if (kw_slice_compare(user_smallest(v->files[level][i]),
                             kw_slice_make(cursor->data, cursor->len)) > 0)
            return v->files[level][i];
    return v->files[level][0];
}

/* ---- read-triggered compaction -------------------------------------------------------- */

/* The file of sorted level `level` whose range holds ukey, or NULL. */
static kw_file_meta *level_file_holding(const kw_version *v, int level, kw_slice ukey)
{
    size_t lo = 0, hi = v->nfiles[level];
    while (lo < hi) { /* first file whose largest user key >= ukey */
        size_t mid = (lo + hi) / 2;
        if (kw_slice_compare(user_largest(v->files[level][mid]), ukey) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == v->nfiles[level] || kw_slice_compare(user_smallest(v->files[level][lo]), ukey) > 0)
        return NULL;
    return v->files[level][lo];
}

kw_file_meta *kw_compaction_sample_file(const kw_version *v, kw_slice ukey)
{
    kw_file_meta *first = NULL;
    for (size_t i = 0; i < v->nfiles[0]; i++) { /* newest first */
        if (!overlaps(v->files[0][i], &ukey, &ukey))
            continue;
        if (first)
            return first;
        first = v->files[0][i];
    }
    for (int l = 1; l < KW_MAX_LEVELS; l++) {
        kw_file_meta *m = level_file_holding(v, l, ukey);
        if (m == NULL)
            continue;
        if (first)
            return first;
        first = m;
    }
    return NULL; /* at most one file holds ukey: nothing to flatten */
}

static bool budget_spent(kw_file_meta *m)
{
    return atomic_load_explicit(&m->read_budget, memory_order_relaxed) <= 0;
}

/* The read-triggered compaction of m, a spent file of `level`. */
static kw_compaction *read_compaction(const kw_version *v, int level, kw_file_meta *m)
{
    kw_compaction *c = compaction_new(level);
    c->reason = "reads";
    c->read_triggered = true;
    if (level == 0) {
        for (size_t i = 0; i < v->nfiles[0]; i++)
            add_input(c, 0, v->files[0][i]);
    } else {
        add_input(c, 0, m);
    }
    add_overlapping_below(c, v);
    return c;
}

/* Have m's reads paid for c? If not, grants m the difference (it wakes a compaction thread again
 * when spent) and says no. */
static bool reads_paid_for(kw_file_meta *m, const kw_compaction *c)
{
    uint64_t cost = kw_compaction_input_bytes(c) + KW_COMPACTION_FIXED_BYTES;
    if (m->read_granted >= cost) /* always so for a move: it costs the file's size at most */
        return true;
    int_fast64_t more = (int_fast64_t)(cost - m->read_granted);
    m->read_granted = cost;
    return atomic_fetch_add_explicit(&m->read_budget, more, memory_order_relaxed) + more <= 0;
}

/* The read-triggered compaction of the first spent file, upper levels first, that has paid for
 * it; NULL if none. */
static kw_compaction *pick_read_triggered(const kw_version *v, const kiwi_options *o,
                                          const bool *busy)
{
    for (int l = 0; l < (int)o->max_levels && l + 1 < KW_MAX_LEVELS; l++) {
        if (busy[l] || busy[l + 1])
            continue;
        for (size_t i = 0; i < v->nfiles[l]; i++) {
            kw_file_meta *m = v->files[l][i];
            if (!budget_spent(m))
                continue;
            kw_compaction *c = read_compaction(v, l, m);
            if (reads_paid_for(m, c))
                return c;
            kw_compaction_free(c);
        }
    }
    return NULL;
}

/* ---- picking ------------------------------------------------------------------------------ */

kw_compaction *kw_compaction_pick(const kw_version *v, const kiwi_options *o, const bool *busy,
                                  kw_buf *cursor)
{
    int best = -1;
    double best_score = 1.0;
    for (int l = 0; l < (int)o->max_levels && l + 1 < KW_MAX_LEVELS; l++) {
        if (busy[l] || busy[l + 1] || v->nfiles[l] == 0)
            continue;
        double s = kw_compaction_score(v, o, l);
        if (s >= best_score) {
            best = l;
            best_score = s;
        }
    }
    if (best < 0)
        return pick_read_triggered(v, o, busy);
    kw_compaction *c = compaction_new(best);
    c->score = best_score;
    if (best == 0) {
        c->reason = "l0_files";
        for (size_t i = 0; i < v->nfiles[0]; i++)
            add_input(c, 0, v->files[0][i]);
    } else {
        add_input(c, 0, pick_file(v, best, &cursor[best], &c->reason));
    }
    add_overlapping_below(c, v);
    return c;
}

kw_compaction *kw_compaction_range(const kw_version *v, int level, int max_levels,
                                   const kw_slice *start, const kw_slice *end)
{
    kw_compaction *c = compaction_new(level);
    c->manual = true;
    c->reason = "manual";
    for (size_t i = 0; i < v->nfiles[level]; i++)
        if (overlaps(v->files[level][i], start, end))
            add_input(c, 0, v->files[level][i]);
    if (c->ninputs[0] == 0) {
        kw_compaction_free(c);
        return NULL;
    }
    if (level >= max_levels) { /* the last level: rewrite in place */
        c->output_level = level;
        c->reason = "manual_last_level";
        return c;
    }
    if (level == 0) {
        /* L0 files overlap each other: an older L0 file outside the range may hold older
         * versions of keys inside it, so take every L0 file older than the newest input. */
        kw_compaction_free(c);
        c = compaction_new(0);
        c->manual = true;
        c->reason = "manual";
        for (size_t i = 0; i < v->nfiles[0]; i++)
            add_input(c, 0, v->files[0][i]);
    }
    add_overlapping_below(c, v);
    return c;
}

/* Adds every file of levels 1..last-1 that meets [lo, hi] and is not an input yet; returns how
 * many were added. */
static size_t add_upper_overlaps(kw_compaction *c, const kw_version *v, int last,
                                 const kw_slice *lo, const kw_slice *hi)
{
    size_t added = 0;
    for (int l = 1; l < last; l++)
        for (size_t i = 0; i < v->nfiles[l]; i++) {
            kw_file_meta *m = v->files[l][i];
            if (overlaps(m, lo, hi) && !is_input(c, m)) {
                add_input_at(c, 0, l, m);
                added++;
            }
        }
    return added;
}

kw_compaction *kw_compaction_range_to_last(const kw_version *v, int max_levels,
                                           const kw_slice *start, const kw_slice *end)
{
    int last = max_levels;
    kw_compaction *c = compaction_new(0);
    c->manual = true;
    c->reason = "manual_to_last_level";
    c->output_level = last;
    bool l0 = false;
    for (size_t i = 0; i < v->nfiles[0]; i++)
        l0 = l0 || overlaps(v->files[0][i], start, end);
    for (size_t i = 0; l0 && i < v->nfiles[0]; i++)
        add_input_at(c, 0, 0, v->files[0][i]);
    add_upper_overlaps(c, v, last, start, end);
    if (c->ninputs[0] == 0) {
        kw_compaction_free(c);
        return NULL;
    }
    /* grow to a closed set: whatever overlaps the inputs' range joins them */
    for (;;) {
        kw_slice lo = {NULL, 0}, hi = {NULL, 0};
        input_range(c, &lo, &hi);
        if (add_upper_overlaps(c, v, last, &lo, &hi) == 0)
            break;
    }
    c->level = last;
    for (size_t i = 0; i < c->ninputs[0]; i++)
        c->level = c->input_levels[i] < c->level ? c->input_levels[i] : c->level;
    add_overlapping_below(c, v);
    return c;
}

size_t kw_compaction_drop_inputs_from(kw_compaction *c, uint64_t min_number)
{
    size_t k = 0;
    for (size_t i = 0; i < c->ninputs[0]; i++) {
        kw_file_meta *m = c->inputs[0][i];
        if (m->number >= min_number) {
            kw_file_meta_unref(m);
            continue;
        }
        c->inputs[0][k] = m;
        c->input_levels[k] = c->input_levels[i];
        k++;
    }
    c->ninputs[0] = k;
    return k;
}

void kw_compaction_done(const kw_compaction *c, kw_buf *cursor)
{
    kw_slice lo = {NULL, 0}, hi = {NULL, 0};
    if (c->level == 0 || c->ninputs[0] == 0 || c->output_level > c->level + 1 ||
        c->read_triggered) /* the round robin goes on where size compactions left it */
        return;
    input_range(c, &lo, &hi);
    kw_buf_clear(&cursor[c->level]);
    kw_buf_append(&cursor[c->level], hi.data, hi.size);
}

void kw_compaction_free(kw_compaction *c)
{
    if (c == NULL)
        return;
    for (int w = 0; w < 2; w++) {
        for (size_t i = 0; i < c->ninputs[w]; i++)
            kw_file_meta_unref(c->inputs[w][i]);
        free(c->inputs[w]);
    }
    free(c->input_levels);
    free(c);
}

uint64_t kw_compaction_input_bytes(const kw_compaction *c)
{
    uint64_t n = 0;
    for (int w = 0; w < 2; w++)
        for (size_t i = 0; i < c->ninputs[w]; i++)
            n += c->inputs[w][i]->size;
    return n;
}

/* ---- the merge --------------------------------------------------------------------------- */

/* May a level below `out_level` hold ukey? */
static bool deeper_may_hold(const kw_version *v, int out_level, kw_slice ukey)
{
    for (int l = out_level + 1; l < KW_MAX_LEVELS; l++) {
        for (size_t i = 0; i < v->nfiles[l]; i++) {
            const kw_file_meta *m = v->files[l][i];
            if (kw_slice_compare(ukey, user_smallest(m)) >= 0 &&
                kw_slice_compare(ukey, user_largest(m)) <= 0)
                return true;
        }
    }
    return false;
}

typedef struct {
    const kw_compaction *c;
    const char *dir;
    kw_table_options topts;
    uint64_t target;
    pthread_mutex_t *mu;
    kw_new_file_fn new_file;
    void *ctx;
    kw_version_edit *edit;
    kw_compaction_stats *stats;
    kw_table_builder *b;
    uint64_t number;
    uint64_t *outputs; /* numbers written, for cleanup on failure */
    size_t noutputs;
} run_ctx;

static kiwi_status finish_output(run_ctx *r, char **errmsg)
{
    kw_table_props p;
    memset(&p, 0, sizeof p);
    kiwi_status st = kw_table_builder_finish(r->b, &p, errmsg);
    r->b = NULL;
    if (st != KIWI_OK)
        return st;
    kw_edit_file f = {(uint32_t)r->c->output_level, r->number, p.file_size, p.smallest,
                      p.smallest_len, p.largest, p.largest_len, p.min_seq, p.max_seq, p.entries,
                      p.tombstones};
    kw_edit_add_file(r->edit, &f);
    r->stats->bytes_out += p.file_size;
    kw_table_props_free(&p);
    return KIWI_OK;
}

static kiwi_status start_output(run_ctx *r, char **errmsg)
{
    pthread_mutex_lock(r->mu);
    r->number = r->new_file(r->ctx);
    pthread_mutex_unlock(r->mu);
    r->outputs = kw_realloc(r->outputs, (r->noutputs + 1) * sizeof(uint64_t));
    r->outputs[r->noutputs++] = r->number;
    char *path = kw_numbered_path(r->dir, r->number, "sst");
    kiwi_status st = kw_table_builder_create(path, &r->topts, &r->b, errmsg);
    free(path);
    return st;
}

static kw_iter *input_iter(const kw_compaction *c)
{
    size_t n = c->ninputs[0] + c->ninputs[1], k = 0;
    kw_iter **children = kw_calloc(n ? n : 1, sizeof(kw_iter *));
    for (int w = 0; w < 2; w++)
        for (size_t i = 0; i < c->ninputs[w]; i++)
            children[k++] = kw_table_iter_ex(c->inputs[w][i]->table, false); /* no cache churn */
    kw_iter *it = kw_merge_iter_create(children, k);
    free(children);
    return it;
}

static kiwi_status merge(run_ctx *r, uint64_t smallest_snapshot, const kw_version *deeper,
                         char **errmsg)
{
    const kw_compaction *c = r->c;
    kw_iter *it = input_iter(c);
    kw_buf cur; /* current user key */
    kw_buf_init(&cur);
    bool have_cur = false;
    uint64_t last_seq_for_key = KW_MAX_SEQ + 1;
    kiwi_status st = KIWI_OK;
    for (kw_iter_seek_to_first(it); kw_iter_valid(it) && st == KIWI_OK; kw_iter_next(it)) {
        kw_slice ikey = kw_iter_key(it);
        if (ikey.size < KW_TRAILER_SIZE) {
            st = kw_error(errmsg, KIWI_CORRUPTION, "compaction input holds a %zu-byte key",
                          ikey.size);
            break;
        }
        r->stats->entries_in++;
        kw_slice ukey = kw_ikey_user(ikey);
        bool new_key = !have_cur || kw_slice_compare(ukey, kw_slice_make(cur.data, cur.len)) != 0;
        if (new_key) {
            kw_buf_clear(&cur);
            kw_buf_append(&cur, ukey.data, ukey.size);
            have_cur = true;
            last_seq_for_key = KW_MAX_SEQ + 1;
        }
        uint64_t seq = kw_ikey_seq(ikey);
        bool drop = false;
        if (last_seq_for_key <= smallest_snapshot) {
            drop = true; /* a newer version is visible to every reader */
            r->stats->dropped_versions++;
        } else if (kw_ikey_type(ikey) == KW_TYPE_DELETE && seq <= smallest_snapshot &&
                   !deeper_may_hold(deeper, c->output_level, ukey)) {
            drop = true; /* nothing older exists anywhere: the tombstone has done its work */
            r->stats->dropped_tombstones++;
        }
        last_seq_for_key = seq;
        if (drop)
            continue;
        if (r->b && new_key && kw_table_builder_file_size(r->b) >= r->target)
            st = finish_output(r, errmsg);
        if (st == KIWI_OK && r->b == NULL)
            st = start_output(r, errmsg);
        if (st == KIWI_OK) {
            kw_table_builder_add(r->b, ikey, kw_iter_value(it));
            if (++r->stats->entries_out == 100)
                kw_kill_point("compaction.mid");
        }
    }
    if (st == KIWI_OK)
        st = kw_iter_status(it, errmsg);
    if (st == KIWI_OK && r->b)
        st = finish_output(r, errmsg);
    kw_iter_destroy(it);
    kw_buf_free(&cur);
    return st;
}

kiwi_status kw_compaction_run(const kw_compaction *c, const char *dir, const kiwi_options *o,
                              uint64_t smallest_snapshot, const kw_version *deeper,
                              pthread_mutex_t *mu, kw_new_file_fn new_file, void *ctx,
                              kw_version_edit *edit, kw_compaction_stats *stats, char **errmsg)
{
    memset(stats, 0, sizeof *stats);
    stats->bytes_in = kw_compaction_input_bytes(c);
    for (int w = 0; w < 2; w++)
        for (size_t i = 0; i < c->ninputs[w]; i++)
            kw_edit_delete_file(edit, (uint32_t)(w ? c->output_level : c->input_levels[i]),
                                c->inputs[w][i]->number);
    if (c->trivial_move) {
        const kw_file_meta *m = c->inputs[0][0];
        kw_edit_file f = {(uint32_t)c->output_level, m->number, m->size, m->smallest,
                          m->smallest_len, m->largest, m->largest_len, m->min_seq, m->max_seq,
                          m->entries, m->tombstones};
        kw_edit_add_file(edit, &f);
        return KIWI_OK;
    }
    run_ctx r;
    memset(&r, 0, sizeof r);
    r.c = c;
    r.dir = dir;
    kw_table_options_default(&r.topts);
    r.topts.block_size = o->block_size;
    r.topts.bloom_fpr = kw_options_bloom_fpr(o);
    r.target = (uint64_t)(o->target_file_size_mb * 1024.0 * 1024.0);
    r.mu = mu;
    r.new_file = new_file;
    r.ctx = ctx;
    r.edit = edit;
    r.stats = stats;
    kiwi_status st = merge(&r, smallest_snapshot, deeper, errmsg);
    if (st != KIWI_OK) {
        if (r.b)
            kw_table_builder_abandon(r.b);
        for (size_t i = 0; i < r.noutputs; i++) {
            char *path = kw_numbered_path(dir, r.outputs[i], "sst");
            kw_remove_file(path, NULL);
            free(path);
        }
    }
    free(r.outputs);
    return st;
}
