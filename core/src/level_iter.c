/*
 * level_iter.c: the level iterator (level_iter.h): one internal iterator over a sorted run of
 * SSTables that opens only the file it stands in.
 *
 * Invariants:
 *   - `table` is NULL or a table iterator over files[idx]; it is kept open while the level
 *     iterator moves inside that file, so repeated seeks into one file reuse it.
 *   - valid <=> status OK, table != NULL and the table iterator is valid.
 *   - Files are disjoint and sorted (internal-key order), so "the first file whose largest key
 *     is >= target" holds the first entry >= target, or that entry is the first of a later file
 *     (only an empty file, which a flush or compaction never writes, would make it later).
 *   - An error of the table iterator is copied here (status, errmsg) before the table iterator
 *     is dropped, and is sticky: no later call moves the iterator again.
 */
#include "level_iter.h"

#include <stdlib.h>

#include "dbformat.h"

typedef struct {
    kw_iter base;
    kw_file_meta *const *files;
    size_t n;
    bool fill_cache;
    size_t idx;     /* the file `table` iterates */
    kw_iter *table; /* NULL: positioned nowhere */
    kiwi_status status;
    char *errmsg;
} level_iter;

static void close_table(level_iter *it)
{
    kw_iter_destroy(it->table);
    it->table = NULL;
}

/* A table iterator over files[i], reusing the open one when it is that file's. */
static void open_file(level_iter *it, size_t i)
{
    if (it->table != NULL && it->idx == i)
        return;
    close_table(it);
    it->table = kw_table_iter_ex(it->files[i]->table, it->fill_cache);
    it->idx = i;
}

/* The first file whose largest internal key is >= target (n when none). */
static size_t find_file(const level_iter *it, kw_slice target)
{
    size_t lo = 0, hi = it->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const kw_file_meta *f = it->files[mid];
        if (kw_ikey_compare(kw_slice_make(f->largest, f->largest_len), target) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The table iterator ran out (or failed): keep its error, or step into the next (forward) or
 * previous file until an entry is found or the level ends. */
static void settle(level_iter *it, bool forward)
{
    while (it->table != NULL && !kw_iter_valid(it->table)) {
        it->status = kw_iter_status(it->table, &it->errmsg);
        if (it->status != KIWI_OK) {
            close_table(it);
            return;
        }
        if (forward ? it->idx + 1 >= it->n : it->idx == 0) {
            close_table(it);
            return;
        }
        open_file(it, forward ? it->idx + 1 : it->idx - 1);
        if (forward)
            kw_iter_seek_to_first(it->table);
        else
            kw_iter_seek_to_last(it->table);
    }
}

static bool l_valid(kw_iter *base)
{
    level_iter *it = (level_iter *)base;
    return it->status == KIWI_OK && it->table != NULL && kw_iter_valid(it->table);
}

static void l_seek_to_first(kw_iter *base)
{
    level_iter *it = (level_iter *)base;
    if (it->status != KIWI_OK || it->n == 0)
        return;
    open_file(it, 0);
    kw_iter_seek_to_first(it->table);
    settle(it, true);
}

static void l_seek_to_last(kw_iter *base)
{
    level_iter *it = (level_iter *)base;
    if (it->status != KIWI_OK || it->n == 0)
        return;
    open_file(it, it->n - 1);
    kw_iter_seek_to_last(it->table);
    settle(it, false);
}

static void l_seek(kw_iter *base, kw_slice target)
{
    level_iter *it = (level_iter *)base;
    if (it->status != KIWI_OK)
        return;
    size_t i = find_file(it, target);
    if (i >= it->n) { /* past the level's last key */
        close_table(it);
        return;
    }
    open_file(it, i);
    kw_iter_seek(it->table, target);
    settle(it, true);
}

static void l_next(kw_iter *base)
{
    level_iter *it = (level_iter *)base;
    kw_iter_next(it->table);
    settle(it, true);
}

static void l_prev(kw_iter *base)
{
    level_iter *it = (level_iter *)base;
    kw_iter_prev(it->table);
    settle(it, false);
}

static kw_slice l_key(kw_iter *base)
{
    return kw_iter_key(((level_iter *)base)->table);
}

static kw_slice l_value(kw_iter *base)
{
    return kw_iter_value(((level_iter *)base)->table);
}

static kiwi_status l_status(kw_iter *base, char **errmsg)
{
    level_iter *it = (level_iter *)base;
    if (it->status == KIWI_OK)
        return KIWI_OK;
    if (errmsg != NULL) {
        free(*errmsg);
        *errmsg = kw_strdup(it->errmsg ? it->errmsg : kiwi_status_name(it->status));
    }
    return it->status;
}

static void l_destroy(kw_iter *base)
{
    level_iter *it = (level_iter *)base;
    close_table(it);
    free(it->errmsg);
    free(it);
}

static const kw_iter_ops LEVEL_OPS = {
    l_valid, l_seek_to_first, l_seek_to_last, l_seek,   l_next,
    l_prev,  l_key,           l_value,        l_status, l_destroy,
};

kw_iter *kw_level_iter_create(kw_file_meta *const *files, size_t n, bool fill_cache)
{
    level_iter *it = kw_calloc(1, sizeof *it);
    it->base.ops = &LEVEL_OPS;
    it->files = files;
    it->n = n;
    it->fill_cache = fill_cache;
    it->idx = n;
    it->status = KIWI_OK;
    return &it->base;
}
