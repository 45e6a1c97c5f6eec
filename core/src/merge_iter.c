/*
 * merge_iter.c: the merging iterator (see merge_iter.h). Direction switching follows the classic
 * LSM approach: when the direction changes, every child other than the current one is
 * re-positioned relative to the current key, so all children stand on the same side of it.
 * Children are few (memtables + L0 files + one run per level), so a linear scan picks the
 * smallest/largest; a heap is a later optimisation.
 */
#include "merge_iter.h"

#include <stdlib.h>

#include "dbformat.h"

enum { FORWARD, REVERSE };

typedef struct {
    kw_iter base;
    kw_iter **child;
    size_t n;
    kw_iter *current;
    int dir;
} merge_iter;

static void find_smallest(merge_iter *m)
{
    kw_iter *best = NULL;
    kw_slice bk = {NULL, 0};
    for (size_t i = 0; i < m->n; i++) {
        kw_iter *c = m->child[i];
        if (!kw_iter_valid(c))
            continue;
        kw_slice k = kw_iter_key(c);
        if (best == NULL || kw_ikey_compare(k, bk) < 0) {
            best = c;
            bk = k;
        }
    }
    m->current = best;
}

static void find_largest(merge_iter *m)
{
    kw_iter *best = NULL;
    kw_slice bk = {NULL, 0};
    for (size_t i = m->n; i-- > 0;) {
        kw_iter *c = m->child[i];
        if (!kw_iter_valid(c))
            continue;
        kw_slice k = kw_iter_key(c);
        if (best == NULL || kw_ikey_compare(k, bk) > 0) {
            best = c;
            bk = k;
        }
    }
    m->current = best;
}

static bool m_valid(kw_iter *it)
{
    return ((merge_iter *)it)->current != NULL;
}

static void m_seek_to_first(kw_iter *it)
{
    merge_iter *m = (merge_iter *)it;
    for (size_t i = 0; i < m->n; i++)
        kw_iter_seek_to_first(m->child[i]);
    find_smallest(m);
    m->dir = FORWARD;
}

static void m_seek_to_last(kw_iter *it)
{
    merge_iter *m = (merge_iter *)it;
    for (size_t i = 0; i < m->n; i++)
        kw_iter_seek_to_last(m->child[i]);
    find_largest(m);
    m->dir = REVERSE;
}

static void m_seek(kw_iter *it, kw_slice target)
{
    merge_iter *m = (merge_iter *)it;
    for (size_t i = 0; i < m->n; i++)
        kw_iter_seek(m->child[i], target);
    find_smallest(m);
    m->dir = FORWARD;
}

static void m_next(kw_iter *it)
{
    merge_iter *m = (merge_iter *)it;
    if (m->dir != FORWARD) {
        /* Every other child stands before key(); move each to the first entry after it. */
        kw_slice key = kw_iter_key(m->current);
        for (size_t i = 0; i < m->n; i++) {
            kw_iter *c = m->child[i];
            if (c == m->current)
                continue;
            kw_iter_seek(c, key);
            if (kw_iter_valid(c) && kw_ikey_compare(kw_iter_key(c), key) == 0)
                kw_iter_next(c);
        }
        m->dir = FORWARD;
    }
    kw_iter_next(m->current);
    find_smallest(m);
}

static void m_prev(kw_iter *it)
{
    merge_iter *m = (merge_iter *)it;
    if (m->dir != REVERSE) {
        /* Every other child stands after key(); move each to the last entry before it. */
        kw_slice key = kw_iter_key(m->current);
        for (size_t i = 0; i < m->n; i++) {
            kw_iter *c = m->child[i];
            if (c == m->current)
                continue;
            kw_iter_seek(c, key);
            if (kw_iter_valid(c))
                kw_iter_prev(c);
            else
                kw_iter_seek_to_last(c);
        }
        m->dir = REVERSE;
    }
    kw_iter_prev(m->current);
    find_largest(m);
}

static kw_slice m_key(kw_iter *it)
{
    return kw_iter_key(((merge_iter *)it)->current);
}

static kw_slice m_value(kw_iter *it)
{
    return kw_iter_value(((merge_iter *)it)->current);
}

static kiwi_status m_status(kw_iter *it, char **errmsg)
{
    merge_iter *m = (merge_iter *)it;
    for (size_t i = 0; i < m->n; i++) {
        kiwi_status st = kw_iter_status(m->child[i], errmsg);
        if (st != KIWI_OK)
            return st;
    }
    return KIWI_OK;
}

static void m_destroy(kw_iter *it)
{
    merge_iter *m = (merge_iter *)it;
    for (size_t i = 0; i < m->n; i++)
        kw_iter_destroy(m->child[i]);
    free(m->child);
    free(m);
}

static const kw_iter_ops MERGE_OPS = {
    m_valid, m_seek_to_first, m_seek_to_last, m_seek, m_next, m_prev,
    m_key,   m_value,         m_status,       m_destroy,
};

kw_iter *kw_merge_iter_create(kw_iter **children, size_t n)
{
    merge_iter *m = kw_calloc(1, sizeof *m);
    m->base.ops = &MERGE_OPS;
    m->child = kw_calloc(n ? n : 1, sizeof(kw_iter *));
    for (size_t i = 0; i < n; i++)
        m->child[i] = children[i];
    m->n = n;
    m->dir = FORWARD;
    return &m->base;
}
