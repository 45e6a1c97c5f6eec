/*
 * version.c: versions, file metadata lifetimes, and the manifest-backed version set.
 */
#include "version.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dbformat.h"
#include "env.h"
#include "killpoint.h"

/* ---- file metadata ---------------------------------------------------------------------- */

static kw_file_meta *meta_from_edit(const char *dir, const kw_edit_file *f)
{
    kw_file_meta *m = kw_calloc(1, sizeof *m);
    atomic_init(&m->refs, 0);
    atomic_init(&m->obsolete, false);
    m->number = f->number;
    m->size = f->size;
    m->smallest = kw_memdup(f->smallest, f->smallest_len);
    m->smallest_len = f->smallest_len;
    m->largest = kw_memdup(f->largest, f->largest_len);
    m->largest_len = f->largest_len;
    m->min_seq = f->min_seq;
    m->max_seq = f->max_seq;
    m->entries = f->entries;
    m->tombstones = f->tombstones;
    m->path = kw_numbered_path(dir, f->number, "sst");
    m->read_granted = f->size + KW_COMPACTION_FIXED_BYTES; /* the least its compaction costs */
    atomic_init(&m->read_budget, (int_fast64_t)m->read_granted);
    return m;
}

static void meta_ref(kw_file_meta *m)
{
    atomic_fetch_add(&m->refs, 1);
}

static void meta_free(kw_file_meta *m)
{
    if (m->table)
        kw_table_unref(m->table);
    if (atomic_load(&m->obsolete)) {
        kw_kill_point("file.before_delete");
        kw_remove_file(m->path, NULL); /* best effort: a leftover is removed at next open */
        kw_kill_point("file.after_delete");
    }
    free(m->smallest);
    free(m->largest);
    free(m->path);
    free(m);
}

static void meta_unref(kw_file_meta *m)
{
    if (atomic_fetch_sub(&m->refs, 1) == 1)
        meta_free(m);
}

void kw_file_meta_unref(kw_file_meta *m)
{
    meta_unref(m);
}

static void meta_to_edit(const kw_file_meta *m, uint32_t level, kw_edit_file *f)
{
    f->level = level;
    f->number = m->number;
    f->size = m->size;
    f->smallest = m->smallest;
    f->smallest_len = m->smallest_len;
    f->largest = m->largest;
    f->largest_len = m->largest_len;
    f->min_seq = m->min_seq;
    f->max_seq = m->max_seq;
    f->entries = m->entries;
    f->tombstones = m->tombstones;
}

/* ---- versions --------------------------------------------------------------------------- */

static kw_version *version_new(void)
{
    kw_version *v = kw_calloc(1, sizeof *v);
    atomic_init(&v->refs, 1);
    return v;
}

void kw_version_ref(kw_version *v)
{
    atomic_fetch_add(&v->refs, 1);
}

void kw_version_unref(kw_version *v)
{
    if (v == NULL || atomic_fetch_sub(&v->refs, 1) != 1)
        return;
    for (int l = 0; l < KW_MAX_LEVELS; l++) {
        for (size_t i = 0; i < v->nfiles[l]; i++)
            meta_unref(v->files[l][i]);
        free(v->files[l]);
    }
    free(v);
}

uint64_t kw_version_level_bytes(const kw_version *v, int level)
{
    uint64_t n = 0;
    for (size_t i = 0; i < v->nfiles[level]; i++)
        n += v->files[level][i]->size;
    return n;
}

static void level_push(kw_version *v, int level, kw_file_meta *m)
{
    v->files[level] = kw_realloc(v->files[level], (v->nfiles[level] + 1) * sizeof(kw_file_meta *));
    v->files[level][v->nfiles[level]++] = m;
    meta_ref(m);
}

static int cmp_newest_first(const void *a, const void *b)
{
    const kw_file_meta *x = *(kw_file_meta *const *)a, *y = *(kw_file_meta *const *)b;
    return x->number < y->number ? 1 : (x->number > y->number ? -1 : 0);
}

static int cmp_smallest(const void *a, const void *b)
{
    const kw_file_meta *x = *(kw_file_meta *const *)a, *y = *(kw_file_meta *const *)b;
    int r = kw_ikey_compare(kw_slice_make(x->smallest, x->smallest_len),
                            kw_slice_make(y->smallest, y->smallest_len));
    if (r == 0)
        r = x->number < y->number ? -1 : (x->number > y->number ? 1 : 0);
    return r;
}

static void version_sort(kw_version *v)
{
    if (v->nfiles[0] > 1)
        qsort(v->files[0], v->nfiles[0], sizeof(kw_file_meta *), cmp_newest_first);
    for (int l = 1; l < KW_MAX_LEVELS; l++)
        if (v->nfiles[l] > 1)
            qsort(v->files[l], v->nfiles[l], sizeof(kw_file_meta *), cmp_smallest);
}

static bool edit_deletes(const kw_version_edit *e, int level, uint64_t number)
{
    for (size_t i = 0; i < e->n_deleted; i++)
        if (e->deleted[i].level == (uint32_t)level && e->deleted[i].number == number)
            return true;
    return false;
}

static bool edit_adds(const kw_version_edit *e, uint64_t number)
{
    for (size_t i = 0; i < e->n_added; i++)
        if (e->added[i].number == number)
            return true;
    return false;
}

/* base + edit -> a new version. Added metas are given in `added` (one per e->added). Files the
 * edit deletes are marked obsolete, unless the edit adds them again (a move to another level:
 * the same meta then lives on at its new level). */
static kw_version *version_apply(const kw_version *base, const kw_version_edit *e,
                                 kw_file_meta **added)
{
    kw_version *v = version_new();
    for (int l = 0; l < KW_MAX_LEVELS; l++) {
        for (size_t i = 0; base && i < base->nfiles[l]; i++) {
            kw_file_meta *m = base->files[l][i];
            if (!edit_deletes(e, l, m->number))
                level_push(v, l, m);
            else if (!edit_adds(e, m->number))
                atomic_store(&m->obsolete, true);
        }
    }
    for (size_t i = 0; i < e->n_added; i++)
        level_push(v, (int)e->added[i].level, added[i]);
    version_sort(v);
    return v;
}

static kiwi_status check_edit(const kw_version *base, const kw_version_edit *e, char **errmsg)
{
    for (size_t i = 0; i < e->n_added; i++)
        if (e->added[i].level >= KW_MAX_LEVELS)
            return kw_error(errmsg, KIWI_CORRUPTION, "version edit adds file %" PRIu64
                            " at level %u (max %d)", e->added[i].number, e->added[i].level,
                            KW_MAX_LEVELS - 1);
    for (size_t i = 0; i < e->n_deleted; i++) {
        uint32_t l = e->deleted[i].level;
        bool found = false;
        for (size_t j = 0; base && l < KW_MAX_LEVELS && j < base->nfiles[l]; j++)
            found = found || base->files[l][j]->number == e->deleted[i].number;
        if (!found)
            return kw_error(errmsg, KIWI_CORRUPTION,
                            "version edit deletes file %" PRIu64 " at level %u, which is not live",
                            e->deleted[i].number, l);
    }
    return KIWI_OK;
}

/* ---- manifest files ---------------------------------------------------------------------- */

static char *manifest_path(const char *dir, uint64_t number)
{
    char name[64];
    snprintf(name, sizeof name, "MANIFEST-%06" PRIu64, number);
    return kw_join_path(dir, name);
}

static void snapshot_edit(const kw_vset *vs, kw_version_edit *e)
{
    kw_edit_set_log_number(e, vs->log_number);
    kw_edit_set_next_file(e, vs->next_file);
    kw_edit_set_last_seq(e, vs->last_seq);
    for (int l = 0; l < KW_MAX_LEVELS; l++) {
        for (size_t i = 0; i < vs->current->nfiles[l]; i++) {
            kw_edit_file f;
            meta_to_edit(vs->current->files[l][i], (uint32_t)l, &f);
            kw_edit_add_file(e, &f);
        }
    }
}

/* Writes a new manifest holding the whole current state and points CURRENT at it. */
static kiwi_status start_new_manifest(kw_vset *vs, char **errmsg)
{
    uint64_t number = vs->next_file++;
    char *path = manifest_path(vs->dir, number);
    kw_wal_writer *w = NULL;
    kw_version_edit e;
    kw_edit_init(&e);
    snapshot_edit(vs, &e);
    kw_buf payload;
    kw_buf_init(&payload);
    kw_edit_encode(&e, &payload);
    kiwi_status st = kw_wal_writer_create(path, &w, errmsg);
    if (st == KIWI_OK)
        st = kw_wal_writer_add(w, kw_slice_make(payload.data, payload.len), errmsg);
    if (st == KIWI_OK)
        st = kw_wal_writer_sync(w, errmsg);
    if (st == KIWI_OK) {
        kw_kill_point("manifest.before_current");
        char current[80];
        int n = snprintf(current, sizeof current, "MANIFEST-%06" PRIu64 "\n", number);
        st = kw_write_file_atomic(vs->dir, "CURRENT", current, (size_t)n, errmsg);
    }
    kw_edit_free(&e);
    kw_buf_free(&payload);
    if (st != KIWI_OK) {
        if (w)
            kw_wal_writer_close(w, false, NULL);
        kw_remove_file(path, NULL);
        free(path);
        return st;
    }
    free(path);
    if (vs->manifest) {
        char *old = manifest_path(vs->dir, vs->manifest_number);
        kw_wal_writer_close(vs->manifest, false, NULL);
        kw_remove_file(old, NULL);
        free(old);
    }
    vs->manifest = w;
    vs->manifest_number = number;
    vs->manifest_edits = 1;
    return KIWI_OK;
}

/* ---- replay ------------------------------------------------------------------------------ */

typedef struct {
    kw_vset *vs;
    kw_version *v; /* version being rebuilt (metas without tables) */
    const char *path;
} replay_ctx;

static kiwi_status replay_record(void *arg, kw_slice payload, uint64_t offset, char **errmsg)
{
    replay_ctx *c = arg;
    kw_version_edit e;
    kw_edit_init(&e);
    kiwi_status st = kw_edit_decode(payload, &e, errmsg);
    if (st == KIWI_OK)
        st = check_edit(c->v, &e, errmsg);
    if (st != KIWI_OK) {
        kw_edit_free(&e);
        return kw_error(errmsg, st, "%s: record at offset %" PRIu64 ": %s", c->path, offset,
                        errmsg && *errmsg ? kw_error_detail(*errmsg) : "bad version edit");
    }
    kw_file_meta **added = kw_calloc(e.n_added ? e.n_added : 1, sizeof(kw_file_meta *));
    for (size_t i = 0; i < e.n_added; i++)
        added[i] = meta_from_edit(c->vs->dir, &e.added[i]);
    kw_version *nv = version_apply(c->v, &e, added);
    for (int l = 0; l < KW_MAX_LEVELS; l++) /* replay must not delete files */
        for (size_t i = 0; i < c->v->nfiles[l]; i++)
            atomic_store(&c->v->files[l][i]->obsolete, false);
    free(added);
    kw_version_unref(c->v);
    c->v = nv;
    if (e.has_log_number)
        c->vs->log_number = e.log_number;
    if (e.has_next_file)
        c->vs->next_file = e.next_file;
    if (e.has_last_seq)
        c->vs->last_seq = e.last_seq;
    kw_edit_free(&e);
    return KIWI_OK;
}

static kiwi_status read_current(const char *dir, uint64_t *number, char **errmsg)
{
    char *path = kw_join_path(dir, "CURRENT");
    char *data = NULL;
    size_t len = 0;
    kiwi_status st = kw_read_file(path, &data, &len, errmsg);
    if (st == KIWI_OK) {
        char *end = NULL;
        bool ok = len > 10 && strncmp(data, "MANIFEST-", 9) == 0 && data[9] >= '0' &&
                  data[9] <= '9';
        unsigned long long n = ok ? strtoull(data + 9, &end, 10) : 0;
        if (!ok || end != data + len - 1 || *end != '\n')
            st = kw_error(errmsg, KIWI_CORRUPTION, "%s: does not name a manifest", path);
        *number = n;
    }
    free(data);
    free(path);
    return st;
}

static kiwi_status open_tables(kw_version *v, kw_block_cache *cache, char **errmsg)
{
    for (int l = 0; l < KW_MAX_LEVELS; l++) {
        for (size_t i = 0; i < v->nfiles[l]; i++) {
            kw_file_meta *m = v->files[l][i];
            if (m->table)
                continue;
            kiwi_status st = kw_table_open_cached(m->path, m->number, cache, &m->table, errmsg);
            if (st != KIWI_OK)
                return st;
        }
    }
    return KIWI_OK;
}

kiwi_status kw_vset_open(const char *dir, kw_block_cache *cache, kw_vset **out, bool *created,
                         char **errmsg)
{
    kw_vset *vs = kw_calloc(1, sizeof *vs);
    vs->dir = kw_strdup(dir);
    vs->cache = cache;
    vs->next_file = 2;
    vs->current = version_new();
    char *current_path = kw_join_path(dir, "CURRENT");
    bool exists = kw_path_exists(current_path);
    free(current_path);
    *created = !exists;
    kiwi_status st = KIWI_OK;
    if (exists) {
        uint64_t number = 0;
        st = read_current(dir, &number, errmsg);
        if (st == KIWI_OK) {
            char *path = manifest_path(dir, number);
            replay_ctx c = {vs, vs->current, path};
            kw_wal_read_stats stats;
            st = kw_wal_read(path, KW_WAL_TOLERATE_TAIL, replay_record, &c, &stats, errmsg);
            vs->current = c.v;
            if (st == KIWI_OK && stats.records == 0)
                st = kw_error(errmsg, KIWI_CORRUPTION, "%s: manifest holds no records", path);
            if (vs->next_file <= number)
                vs->next_file = number + 1;
            free(path);
        }
        if (st == KIWI_OK)
            st = open_tables(vs->current, vs->cache, errmsg);
    }
    if (st == KIWI_OK)
        st = start_new_manifest(vs, errmsg);
    if (st != KIWI_OK) {
        kw_vset_close(vs);
        return st;
    }
    *out = vs;
    return KIWI_OK;
}

void kw_vset_close(kw_vset *vs)
{
    if (vs == NULL)
        return;
    if (vs->manifest)
        kw_wal_writer_close(vs->manifest, true, NULL);
    kw_version_unref(vs->current);
    free(vs->dir);
    free(vs);
}

uint64_t kw_vset_new_file_number(kw_vset *vs)
{
    return vs->next_file++;
}

kw_version *kw_vset_current(kw_vset *vs)
{
    kw_version_ref(vs->current);
    return vs->current;
}

bool kw_vset_is_live_table(kw_vset *vs, uint64_t number)
{
    for (int l = 0; l < KW_MAX_LEVELS; l++)
        for (size_t i = 0; i < vs->current->nfiles[l]; i++)
            if (vs->current->files[l][i]->number == number)
                return true;
    return false;
}

kiwi_status kw_vset_log_and_apply(kw_vset *vs, kw_version_edit *edit, pthread_mutex_t *mu,
                                  char **errmsg)
{
    kiwi_status st = check_edit(vs->current, edit, errmsg);
    if (st != KIWI_OK)
        return st;
    if (!edit->has_next_file)
        kw_edit_set_next_file(edit, vs->next_file);
    if (!edit->has_last_seq)
        kw_edit_set_last_seq(edit, vs->last_seq);
    kw_buf payload;
    kw_buf_init(&payload);
    kw_edit_encode(edit, &payload);
    kw_file_meta **added = kw_calloc(edit->n_added ? edit->n_added : 1, sizeof(kw_file_meta *));

    /* A file the edit moves (deletes at one level, adds at another) keeps its meta and table. */
    bool *moved = kw_calloc(edit->n_added ? edit->n_added : 1, sizeof(bool));
    for (size_t i = 0; i < edit->n_added; i++) {
        for (int l = 0; l < KW_MAX_LEVELS && !moved[i]; l++)
            for (size_t j = 0; j < vs->current->nfiles[l] && !moved[i]; j++)
                if (vs->current->files[l][j]->number == edit->added[i].number) {
                    added[i] = vs->current->files[l][j];
                    moved[i] = true;
                }
    }
    pthread_mutex_unlock(mu);
    for (size_t i = 0; i < edit->n_added && st == KIWI_OK; i++) {
        if (moved[i])
            continue;
        added[i] = meta_from_edit(vs->dir, &edit->added[i]);
        st = kw_table_open_cached(added[i]->path, added[i]->number, vs->cache, &added[i]->table,
                                  errmsg);
    }
    if (st == KIWI_OK)
        st = kw_wal_writer_add(vs->manifest, kw_slice_make(payload.data, payload.len), errmsg);
    if (st == KIWI_OK)
        st = kw_wal_writer_sync(vs->manifest, errmsg);
    if (st == KIWI_OK)
        kw_kill_point("manifest.after_commit");
    pthread_mutex_lock(mu);

    if (st == KIWI_OK) {
        kw_version *nv = version_apply(vs->current, edit, added);
        kw_version_unref(vs->current);
        vs->current = nv;
        if (edit->has_log_number)
            vs->log_number = edit->log_number;
        vs->next_file = edit->next_file > vs->next_file ? edit->next_file : vs->next_file;
        vs->last_seq = edit->last_seq > vs->last_seq ? edit->last_seq : vs->last_seq;
        vs->manifest_edits++;
    } else {
        for (size_t i = 0; i < edit->n_added; i++)
            if (added[i] && !moved[i])
                meta_free(added[i]);
    }
    free(moved);
    free(added);
    kw_buf_free(&payload);
    /* A long manifest is rewritten as one snapshot record (keeps reopen fast). */
    if (st == KIWI_OK && vs->manifest_edits > 1000) {
        kiwi_status st2 = start_new_manifest(vs, NULL);
        (void)st2; /* the old manifest stays valid if this fails */
    }
    return st;
}
