/*
 * db_read.c: reader views (kw_super), snapshots and point reads.
 *
 * A get pins the current view (mutex held only to take a reference), then asks each layer in
 * order, newest first: the active memtable, the immutable memtables, L0 files newest first, then
 * L1.. where at most one file per level can hold the key. The first layer that knows the key
 * (a value or a tombstone) answers. A get that consults a second SSTable charges the first one
 * what consulting it cost in vain (read-triggered compaction, compaction.h): a file that keeps
 * making reads look further gets compacted with what lies below it.
 */
#include <stdlib.h>
#include <string.h>

#include "compaction.h"
#include "db.h"
#include "dbformat.h"

/* ---- views ------------------------------------------------------------------------------ */

void kw_db_install_super(kiwi_db *db)
{
    kw_super *s = kw_calloc(1, sizeof *s);
    atomic_init(&s->refs, 1);
    s->mem = db->mem;
    kw_memtable_ref(s->mem);
    s->imm = kw_calloc(db->njobs ? db->njobs : 1, sizeof(kw_memtable *));
    /* jobs are oldest first; the view wants newest first */
    size_t i = db->njobs;
    for (kw_flush_job *j = db->jobs_head; j; j = j->next) {
        s->imm[--i] = j->mem;
        kw_memtable_ref(j->mem);
    }
    s->nimm = db->njobs;
    s->version = kw_vset_current(db->vs);
    kw_super *old = db->super;
    db->super = s;
    if (old)
        kw_super_release(old);
}

kw_super *kw_super_acquire(kiwi_db *db)
{
    pthread_mutex_lock(&db->mu);
    kw_super *s = db->super;
    atomic_fetch_add(&s->refs, 1);
    pthread_mutex_unlock(&db->mu);
    return s;
}

void kw_super_release(kw_super *s)
{
    if (atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    kw_memtable_unref(s->mem);
    for (size_t i = 0; i < s->nimm; i++)
        kw_memtable_unref(s->imm[i]);
    free(s->imm);
    kw_version_unref(s->version);
    free(s);
}

uint64_t kw_db_read_seq(kiwi_db *db, const kiwi_read_options *ro)
{
    if (ro && ro->snapshot)
        return ro->snapshot->seq;
    return atomic_load(&db->visible_seq);
}

/* ---- snapshots -------------------------------------------------------------------------- */

const kiwi_snapshot *kiwi_snapshot_create(kiwi_db *db)
{
    if (db == NULL)
        return NULL;
    kw_snapshot_node *s = kw_calloc(1, sizeof *s);
    pthread_mutex_lock(&db->mu);
    if (db->closing) {
        pthread_mutex_unlock(&db->mu);
        free(s);
        return NULL;
    }
    s->seq = atomic_load(&db->visible_seq);
    s->prev = db->snapshots.prev; /* newest at the tail */
    s->next = &db->snapshots;
    s->prev->next = s;
    db->snapshots.prev = s;
    db->nsnapshots++;
    pthread_mutex_unlock(&db->mu);
    atomic_fetch_add(&db->stats.snapshots_created, 1);
    return s;
}

uint64_t kiwi_snapshot_sequence(const kiwi_snapshot *s)
{
    return s ? s->seq : 0;
}

void kiwi_snapshot_release(kiwi_db *db, const kiwi_snapshot *snap)
{
    if (db == NULL || snap == NULL)
        return;
    kw_snapshot_node *s = (kw_snapshot_node *)snap;
    pthread_mutex_lock(&db->mu);
    s->prev->next = s->next;
    s->next->prev = s->prev;
    db->nsnapshots--;
    pthread_mutex_unlock(&db->mu);
    free(s);
}

/* ---- point reads ------------------------------------------------------------------------ */

/* Finds the files of a sorted level (L1+) whose key range may hold ukey: at most one. */
static kw_file_meta *level_file_for(const kw_version *v, int level, kw_slice ukey)
{
    size_t lo = 0, hi = v->nfiles[level];
    while (lo < hi) { /* first file whose largest user key >= ukey */
        size_t mid = (lo + hi) / 2;
        kw_file_meta *m = v->files[level][mid];
        kw_slice largest = kw_ikey_user(kw_slice_make(m->largest, m->largest_len));
        if (kw_slice_compare(largest, ukey) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == v->nfiles[level])
        return NULL;
    kw_file_meta *m = v->files[level][lo];
    kw_slice smallest = kw_ikey_user(kw_slice_make(m->smallest, m->smallest_len));
    return kw_slice_compare(smallest, ukey) <= 0 ? m : NULL;
}

static bool key_in_range(const kw_file_meta *m, kw_slice ukey)
{
    kw_slice s = kw_ikey_user(kw_slice_make(m->smallest, m->smallest_len));
    kw_slice l = kw_ikey_user(kw_slice_make(m->largest, m->largest_len));
    return kw_slice_compare(s, ukey) <= 0 && kw_slice_compare(ukey, l) <= 0;
}

void kw_db_charge_read(kiwi_db *db, kw_file_meta *m, int_fast64_t bytes)
{
    if (!kw_file_charge_read(m, bytes))
        return;
    pthread_mutex_lock(&db->mu); /* under mu: a worker between its pick and its wait sees it */
    kw_compact_schedule(db);
    pthread_mutex_unlock(&db->mu);
}

/* The SSTables a get consulted so far: when it consults a second one, the first one is charged
 * what consulting it cost in vain (compaction.h). */
typedef struct {
    kw_file_meta *first;
    int_fast64_t first_cost; /* KW_READ_COST_PROBE or KW_READ_COST_BLOCK */
    int n;
} consulted_files;

static inline void consult(kiwi_db *db, consulted_files *cf, kw_file_meta *m)
{
    if (++cf->n == 1)
        cf->first = m;
    else if (cf->n == 2)
        kw_db_charge_read(db, cf->first, cf->first_cost);
}

/* How a point read reads tables: filling the data tier or not; `resident`: only from memory,
 * KIWI_BUSY when a table would have to wait for the disk (kw_table_get_resident). */
typedef struct {
    bool fill_cache;
    bool resident;
} read_how;

static kiwi_status table_lookup(kiwi_db *db, kw_file_meta *m, kw_slice ukey, uint64_t seq,
                                read_how how, kw_lookup *res, kw_buf *value,
                                consulted_files *cf, char **errmsg)
{
    kw_table_lookup_info info;
    consult(db, cf, m);
    kiwi_status st =
        how.resident ? kw_table_get_resident(m->table, ukey, seq, res, value, &info, errmsg)
                     : kw_table_get_ex(m->table, ukey, seq, how.fill_cache, res, value, &info,
                                       errmsg);
    if (st == KIWI_BUSY) /* counted by the read that answers instead */
        return st;
    if (!info.bloom_may_contain)
        atomic_fetch_add(&db->stats.bloom_negatives, 1);
    if (info.block_read)
        atomic_fetch_add(&db->stats.sstable_reads, 1);
    if (cf->n == 1)
        cf->first_cost = info.bloom_may_contain ? KW_READ_COST_BLOCK : KW_READ_COST_PROBE;
    return st;
}

/* Looks ukey up in the view; on KW_LOOKUP_FOUND the value is copied into *value. A lookup that
 * consults a second file charges the first one it consulted (read-triggered compaction; a
 * resident read that ends in KIWI_BUSY may have charged it, and the read that answers instead
 * charges it again: a budget is a heuristic, not an account). */
static kiwi_status view_get(kiwi_db *db, kw_super *s, kw_slice ukey, uint64_t seq, read_how how,
                            kw_lookup *res, kw_buf *value, char **errmsg)
{
    kw_slice mv = {NULL, 0};
    *res = kw_memtable_get(s->mem, ukey, seq, &mv);
    for (size_t i = 0; *res == KW_LOOKUP_MISS && i < s->nimm; i++)
        *res = kw_memtable_get(s->imm[i], ukey, seq, &mv);
    if (*res != KW_LOOKUP_MISS) {
        atomic_fetch_add(&db->stats.memtable_hits, 1);
        if (*res == KW_LOOKUP_FOUND)
            kw_buf_append(value, mv.data, mv.size);
        return KIWI_OK;
    }
    const kw_version *v = s->version;
    consulted_files cf = {NULL, KW_READ_COST_PROBE, 0};
    for (size_t i = 0; i < v->nfiles[0]; i++) {
        kw_file_meta *m = v->files[0][i];
        if (m->min_seq > seq || !key_in_range(m, ukey))
            continue;
        kiwi_status st = table_lookup(db, m, ukey, seq, how, res, value, &cf, errmsg);
        if (st != KIWI_OK || *res != KW_LOOKUP_MISS)
            return st;
    }
    for (int l = 1; l < KW_MAX_LEVELS; l++) {
        kw_file_meta *m = level_file_for(v, l, ukey);
        if (m == NULL)
            continue;
        kiwi_status st = table_lookup(db, m, ukey, seq, how, res, value, &cf, errmsg);
        if (st != KIWI_OK || *res != KW_LOOKUP_MISS)
            return st;
    }
    return KIWI_OK;
}

/* kiwi_get, kiwi_get_nowait and kiwi_get_into: the view's answer, counted in stats unless
 * KIWI_BUSY. The value is copied into buf (cap bytes) when buf is given and it fits, else into
 * a malloc'd copy. */
static kiwi_status point_get(kiwi_db *db, const kiwi_read_options *ro, const char *key,
                             size_t klen, bool resident, char *buf, size_t cap, char **val,
                             size_t *vlen, char **errmsg)
{
    *val = NULL;
    *vlen = 0;
    uint64_t seq = kw_db_read_seq(db, ro);
    read_how how = {ro ? ro->fill_cache : true, resident};
    kw_super *s = kw_super_acquire(db);
    kw_lookup res = KW_LOOKUP_MISS;
    kw_buf value;
    if (buf != NULL)
        kw_buf_init_borrowed(&value, buf, cap); /* moves to the heap if the value outgrows it */
    else
        kw_buf_init(&value);
    kiwi_status st =
        view_get(db, s, kw_slice_make(key ? key : "", klen), seq, how, &res, &value, errmsg);
    kw_super_release(s);
    if (st != KIWI_BUSY)
        atomic_fetch_add(&db->stats.gets, 1);
    if (st == KIWI_OK && res == KW_LOOKUP_FOUND) {
        *vlen = value.len;
        *val = value.data ? value.data : kw_memdup("", 0); /* ownership moves to the caller */
        value.data = NULL;
        atomic_fetch_add(&db->stats.get_hits, 1);
    } else if (st == KIWI_OK) {
        st = KIWI_NOT_FOUND;
        atomic_fetch_add(&db->stats.get_misses, 1);
    }
    kw_buf_free(&value);
    return st;
}

kiwi_status kiwi_get(kiwi_db *db, const kiwi_read_options *ro, const char *key, size_t klen,
                     char **val, size_t *vlen, char **errmsg)
{
    if (db == NULL || val == NULL || vlen == NULL || (key == NULL && klen > 0))
        return kw_error(errmsg, KIWI_INVALID_ARGUMENT, "kiwi_get: NULL argument");
    return point_get(db, ro, key, klen, false, NULL, 0, val, vlen, errmsg);
}

kiwi_status kiwi_get_nowait(kiwi_db *db, const kiwi_read_options *ro, const char *key,
                            size_t klen, char **val, size_t *vlen, char **errmsg)
{
    if (db == NULL || val == NULL || vlen == NULL || (key == NULL && klen > 0))
        return kw_error(errmsg, KIWI_INVALID_ARGUMENT, "kiwi_get_nowait: NULL argument");
    return point_get(db, ro, key, klen, true, NULL, 0, val, vlen, errmsg);
}

kiwi_status kiwi_get_into(kiwi_db *db, const kiwi_read_options *ro, const char *key,
                          size_t klen, char *buf, size_t cap, char **val, size_t *vlen,
                          char **errmsg)
{
    if (db == NULL || val == NULL || vlen == NULL || (key == NULL && klen > 0) ||
        (buf == NULL && cap > 0))
        return kw_error(errmsg, KIWI_INVALID_ARGUMENT, "kiwi_get_into: NULL argument");
    return point_get(db, ro, key, klen, false, buf, cap, val, vlen, errmsg);
}
