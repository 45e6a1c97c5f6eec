/*
 * db_iter.c: kiwi_iter, the user-facing iterator: one snapshot of the user keys, newest visible
 * version of each, tombstones hidden.
 *
 * It walks a merging iterator over every layer of a pinned view (kw_super). Internal keys come
 * newest version first within a user key. Forward, the first visible version (sequence <= the
 * iterator's sequence) of a key decides: a value is shown, a tombstone hides the key; older
 * versions are skipped. Backward, versions of a key arrive oldest first, so the iterator keeps
 * the last visible version it saw and decides when it crosses into the previous user key.
 * Children of the merge: the active memtable, each immutable memtable, each L0 file (they
 * overlap), then one level iterator (level_iter.h) per non-empty level L1+ (sorted runs).
 * Direction invariants (as LevelDB's DBIter):
 *   FORWARD: the merging iterator stands on the entry that produced the current key.
 *   REVERSE: it stands just before every entry of the current key.
 * What the user sees (cur_key, cur_value): FORWARD, slices of the merge's current entry, which
 * stays put until this iterator moves, so nothing is copied; REVERSE, copies (key, value
 * buffers), since the merge has already moved past the entry. Moving forward copies only the
 * user key being left (into skip), to recognise its older versions after the merge moved.
 * Read sampling (as LevelDB's): every entry read counts its key and value bytes down; about once
 * per MiB (a random distance) the current key is a sample, which charges that MiB to the first
 * of the files overlapping it when two or more do (read-triggered compaction, compaction.h).
 */
#include <stdlib.h>
#include <string.h>

#include "compaction.h"
#include "db.h"
#include "dbformat.h"
#include "level_iter.h"
#include "merge_iter.h"

enum { FORWARD, REVERSE };

struct kiwi_iter {
    kiwi_db *db;
    kw_super *view;
    kw_iter *merge;
    uint64_t seq;
    int dir;
    bool valid;
    kw_slice cur_key;   /* current user key: into the merge (FORWARD) or key (REVERSE) */
    kw_slice cur_value; /* current value: into the merge (FORWARD) or value (REVERSE) */
    kw_buf key;   /* REVERSE: copy of the current user key */
    kw_buf value; /* REVERSE: copy of the current value */
    kw_buf skip;  /* scratch: a user key to skip past */
    kw_buf seek;  /* scratch: an internal seek key */
    kiwi_status status;
    char *errmsg;
    int64_t sample_left; /* bytes to read before the next read sample */
    uint32_t rng;        /* xorshift32 state for the sample periods (never 0) */
    struct kiwi_iter *prev, *next; /* the db's list of live iterators (guarded by db->mu) */
};

/* ---- read sampling (read-triggered compaction, compaction.h) ------------------------------ */

#define SAMPLE_PERIOD KW_READ_SAMPLE_BYTES /* mean bytes (keys + values) between samples */

/* The next distance between samples: uniform in [0, 2 * SAMPLE_PERIOD), so that a scan with a
 * regular layout does not sample the same positions every time. */
static int64_t sample_period(kiwi_iter *it)
{
    uint32_t x = it->rng;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    it->rng = x;
    return (int64_t)(x % (2u * SAMPLE_PERIOD));
}

/* A sample at user key ukey: charges the first file a read of ukey would consult when several
 * files of the view hold ukey in their range. */
static __attribute__((noinline)) void read_sample(kiwi_iter *it, kw_slice ukey)
{
    it->sample_left += sample_period(it);
    kw_file_meta *m = kw_compaction_sample_file(it->view->version, ukey);
    if (m) /* it stands for the bytes read since the previous sample: their mean */
        kw_db_charge_read(it->db, m, KW_READ_SAMPLE_BYTES);
}

/* Accounts one entry read from the merge (every version and tombstone counts: each was read). */
static inline void count_read(kiwi_iter *it, kw_slice ikey, kw_slice value)
{
    it->sample_left -= (int64_t)(ikey.size + value.size);
    if (it->sample_left < 0)
        read_sample(it, kw_ikey_user(ikey));
}

static bool parse_entry(kiwi_iter *it, kw_slice ikey)
{
    if (ikey.size >= KW_TRAILER_SIZE)
        return true;
    it->status = kw_error(&it->errmsg, KIWI_CORRUPTION, "internal key of %zu bytes is too short",
                          ikey.size);
    it->valid = false;
    return false;
}

static void set_buf(kw_buf *b, kw_slice s)
{
    kw_buf_clear(b);
    kw_buf_append(b, s.data, s.size);
}

static void check_status(kiwi_iter *it)
{
    if (it->status == KIWI_OK && !kw_iter_valid(it->merge))
        it->status = kw_iter_status(it->merge, &it->errmsg);
    if (it->status != KIWI_OK)
        it->valid = false;
}

/* Forward: the first visible, live user entry at or after the merge position, skipping the user
 * key in it->skip when has_skip. */
static void find_next(kiwi_iter *it, bool has_skip)
{
    while (kw_iter_valid(it->merge)) {
        kw_slice ikey = kw_iter_key(it->merge);
        if (!parse_entry(it, ikey))
            return;
        kw_slice ukey = kw_ikey_user(ikey);
        kw_slice value = kw_iter_value(it->merge);
        count_read(it, ikey, value);
        if (kw_ikey_seq(ikey) <= it->seq) {
            bool hidden = has_skip &&
                          kw_slice_compare(ukey, kw_slice_make(it->skip.data, it->skip.len)) <= 0;
            if (!hidden) {
                if (kw_ikey_type(ikey) == KW_TYPE_DELETE) {
                    set_buf(&it->skip, ukey);
                    has_skip = true;
                } else {
                    it->cur_key = ukey; /* the merge stays here until the iterator moves */
                    it->cur_value = value;
                    it->valid = true;
                    return;
                }
            }
        }
        kw_iter_next(it->merge);
    }
    it->valid = false;
    check_status(it);
}

/* Backward: the newest visible version of the previous live user key. */
static void find_prev(kiwi_iter *it)
{
    kw_value_type vt = KW_TYPE_DELETE;
    while (kw_iter_valid(it->merge)) {
        kw_slice ikey = kw_iter_key(it->merge);
        if (!parse_entry(it, ikey))
            return;
        kw_slice value = kw_iter_value(it->merge);
        count_read(it, ikey, value);
        if (kw_ikey_seq(ikey) <= it->seq) {
            kw_slice ukey = kw_ikey_user(ikey);
            if (vt != KW_TYPE_DELETE &&
                kw_slice_compare(ukey, kw_slice_make(it->key.data, it->key.len)) < 0)
                break; /* crossed into an earlier key: the saved one is the answer */
            vt = kw_ikey_type(ikey);
            if (vt == KW_TYPE_DELETE) {
                kw_buf_clear(&it->key);
                kw_buf_clear(&it->value);
            } else {
                set_buf(&it->key, ukey);
                set_buf(&it->value, value);
            }
        }
        kw_iter_prev(it->merge);
    }
    if (vt == KW_TYPE_DELETE) {
        it->valid = false;
        it->dir = FORWARD;
        check_status(it);
    } else {
        it->cur_key = kw_slice_make(it->key.data, it->key.len);
        it->cur_value = kw_slice_make(it->value.data, it->value.len);
        it->valid = true;
    }
}

kiwi_iter *kiwi_iter_create(kiwi_db *db, const kiwi_read_options *ro)
{
    if (db == NULL)
        return NULL;
    pthread_mutex_lock(&db->mu);
    if (db->closing) {
        pthread_mutex_unlock(&db->mu);
        return NULL;
    }
    kiwi_iter *it = kw_calloc(1, sizeof *it);
    it->db = db;
    it->seq = kw_db_read_seq(db, ro);
    bool fill_cache = ro ? ro->fill_cache : true;
    /* deterministic per db: the n-th iterator samples the same way in every run */
    uint64_t nth = atomic_fetch_add(&db->stats.iterators_created, 1) + 1;
    it->rng = (uint32_t)(nth * 2654435761u) | 1;
    it->sample_left = sample_period(it);
    it->view = db->super;
    atomic_fetch_add(&it->view->refs, 1);
    it->next = db->iters;
    if (db->iters)
        db->iters->prev = it;
    db->iters = it;
    pthread_mutex_unlock(&db->mu);

    kw_super *s = it->view;
    const kw_version *v = s->version;
    size_t n = 1 + s->nimm;
    n += v->nfiles[0] + KW_MAX_LEVELS;
    kw_iter **children = kw_calloc(n, sizeof(kw_iter *));
    size_t k = 0;
    children[k++] = kw_memtable_iter(s->mem);
    for (size_t i = 0; i < s->nimm; i++)
        children[k++] = kw_memtable_iter(s->imm[i]);
    for (size_t i = 0; i < v->nfiles[0]; i++) /* L0 files overlap: one child each */
        children[k++] = kw_table_iter_ex(v->files[0][i]->table, fill_cache);
    for (int l = 1; l < KW_MAX_LEVELS; l++) /* the view pins v, so its file arrays live on */
        if (v->nfiles[l] > 0)
            children[k++] = kw_level_iter_create(v->files[l], v->nfiles[l], fill_cache);
    it->merge = kw_merge_iter_create(children, k);
    free(children);
    kw_buf_init(&it->key);
    kw_buf_init(&it->value);
    kw_buf_init(&it->skip);
    kw_buf_init(&it->seek);
    return it;
}

static void iter_free(kiwi_iter *it)
{
    kw_iter_destroy(it->merge);
    kw_super_release(it->view);
    kw_buf_free(&it->key);
    kw_buf_free(&it->value);
    kw_buf_free(&it->skip);
    kw_buf_free(&it->seek);
    free(it->errmsg);
    free(it);
}

static void unlink_iter(kiwi_db *db, kiwi_iter *it)
{
    if (it->prev)
        it->prev->next = it->next;
    else
        db->iters = it->next;
    if (it->next)
        it->next->prev = it->prev;
}

void kiwi_iter_destroy(kiwi_iter *it)
{
    if (it == NULL)
        return;
    kiwi_db *db = it->db;
    pthread_mutex_lock(&db->mu);
    unlink_iter(db, it);
    pthread_mutex_unlock(&db->mu);
    iter_free(it);
}

void kw_db_iters_close_all(kiwi_db *db)
{
    kiwi_iter *it = db->iters;
    db->iters = NULL;
    while (it) {
        kiwi_iter *next = it->next;
        iter_free(it);
        it = next;
    }
}

void kiwi_iter_seek_to_first(kiwi_iter *it)
{
    it->dir = FORWARD;
    kw_iter_seek_to_first(it->merge);
    find_next(it, false);
}

void kiwi_iter_seek_to_last(kiwi_iter *it)
{
    it->dir = REVERSE;
    kw_iter_seek_to_last(it->merge);
    find_prev(it);
}

void kiwi_iter_seek(kiwi_iter *it, const char *key, size_t klen)
{
    it->dir = FORWARD;
    kw_buf_clear(&it->seek);
    kw_ikey_append(&it->seek, kw_slice_make(key ? key : "", klen), it->seq, KW_TYPE_FOR_SEEK);
    kw_iter_seek(it->merge, kw_slice_make(it->seek.data, it->seek.len));
    find_next(it, false);
}

void kiwi_iter_next(kiwi_iter *it)
{
    if (!it->valid)
        return;
    set_buf(&it->skip, it->cur_key); /* before the merge moves: cur_key may point into it */
    if (it->dir == REVERSE) {
        /* The merge stands before the current key's entries: step onto them. */
        if (kw_iter_valid(it->merge))
            kw_iter_next(it->merge);
        else
            kw_iter_seek_to_first(it->merge);
        it->dir = FORWARD;
    } else {
        kw_iter_next(it->merge);
    }
    find_next(it, true);
}

void kiwi_iter_prev(kiwi_iter *it)
{
    if (!it->valid)
        return;
    if (it->dir == FORWARD) {
        /* Step back past every entry of the current key (a copy: the merge is moving). */
        set_buf(&it->skip, it->cur_key);
        kw_slice cur = kw_slice_make(it->skip.data, it->skip.len);
        for (;;) {
            kw_iter_prev(it->merge);
            if (!kw_iter_valid(it->merge)) {
                it->valid = false;
                check_status(it);
                return;
            }
            if (kw_slice_compare(kw_ikey_user(kw_iter_key(it->merge)), cur) < 0)
                break;
        }
        it->dir = REVERSE;
    }
    find_prev(it);
}

void kiwi_iter_seek_for_prev(kiwi_iter *it, const char *key, size_t klen)
{
    kiwi_iter_seek(it, key, klen);
    if (!it->valid) {
        if (it->status == KIWI_OK)
            kiwi_iter_seek_to_last(it);
        return;
    }
    if (it->cur_key.size == klen && (klen == 0 || memcmp(it->cur_key.data, key, klen) == 0))
        return;
    kiwi_iter_prev(it);
}

bool kiwi_iter_valid(const kiwi_iter *it)
{
    return it && it->valid;
}

const char *kiwi_iter_key(const kiwi_iter *it, size_t *len)
{
    if (!it->valid) { /* cur_key may point into an entry the merge has left */
        *len = 0;
        return "";
    }
    *len = it->cur_key.size;
    return it->cur_key.data ? it->cur_key.data : "";
}

const char *kiwi_iter_value(const kiwi_iter *it, size_t *len)
{
    if (!it->valid) {
        *len = 0;
        return "";
    }
    *len = it->cur_value.size;
    return it->cur_value.data ? it->cur_value.data : "";
}

kiwi_status kiwi_iter_status(const kiwi_iter *it, char **errmsg)
{
    if (it->status != KIWI_OK && errmsg) {
        free(*errmsg);
        *errmsg = kw_strdup(it->errmsg ? it->errmsg : kiwi_status_name(it->status));
    }
    return it->status;
}
