/*
 * merge_iter.c: the merging iterator (see merge_iter.h), a binary heap of children.
 *
 * Order: entries are ranked by (internal key, child index): kw_ikey_compare first, and on equal
 * keys the lower child index comes first (the child listed first wins). Every position below is
 * relative to that total order, so forward and reverse walks are exact mirrors even when two
 * children hold the same internal key.
 *
 * Heap invariants (docs/internals/iteration.md):
 *   - heap[0..len) holds exactly the children that are valid; each entry caches the child's
 *     current key (valid until that child moves, and only the top child is ever moved without
 *     rebuilding the heap).
 *   - FORWARD: a min-heap; every entry ranks >= its parent. Every child stands on its first
 *     entry ranking > the previous output, so the top is the next output.
 *   - REVERSE: a max-heap; every entry ranks <= its parent. Every child stands on its last entry
 *     ranking < the previous output.
 *   - The iterator is valid <=> len > 0; the current entry is the top's.
 * A step moves only the top child and sifts it down (O(log n) comparisons). A change of
 * direction re-positions every other child around the current entry (one seek each) and
 * rebuilds the heap in O(n).
 */
#include "merge_iter.h"

#include <stdlib.h>

#include "dbformat.h"

enum { FORWARD, REVERSE };

typedef struct {
    kw_slice key; /* the child's current key */
    size_t idx;   /* the child's index in child[] */
} heap_ent;

typedef struct {
    kw_iter base;
    kw_iter **child;
    size_t n;
    heap_ent *heap; /* n slots; the first len are the heap */
    size_t len;
    int dir;
} merge_iter;

/* Does a rank before b in the total order (key, then child index)? */
static inline bool ranks_before(const heap_ent *a, const heap_ent *b)
{
    int c = kw_ikey_compare(a->key, b->key);
    return c < 0 || (c == 0 && a->idx < b->idx);
}

/* Should a sit above b in the heap of the current direction? */
static inline bool above(const merge_iter *m, const heap_ent *a, const heap_ent *b)
{
    return m->dir == FORWARD ? ranks_before(a, b) : ranks_before(b, a);
}

static void sift_down(merge_iter *m, size_t i)
{
    heap_ent e = m->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m->len)
            break;
        if (c + 1 < m->len && above(m, &m->heap[c + 1], &m->heap[c]))
            c++;
        if (!above(m, &m->heap[c], &e))
            break;
        m->heap[i] = m->heap[c];
        i = c;
    }
    m->heap[i] = e;
}

/* The heap of every valid child, for the current direction. */
static void rebuild(merge_iter *m)
{
    m->len = 0;
    for (size_t i = 0; i < m->n; i++) {
        if (kw_iter_valid(m->child[i])) {
            m->heap[m->len].key = kw_iter_key(m->child[i]);
            m->heap[m->len].idx = i;
            m->len++;
        }
    }
    for (size_t i = m->len / 2; i-- > 0;)
        sift_down(m, i);
}

/* After the top child moved: refresh its key and sift it down, or drop it if it ran out. */
static void fix_top(merge_iter *m)
{
    kw_iter *c = m->child[m->heap[0].idx];
    if (kw_iter_valid(c)) {
        m->heap[0].key = kw_iter_key(c);
    } else {
        m->heap[0] = m->heap[--m->len];
        if (m->len == 0)
            return;
    }
    sift_down(m, 0);
}

static bool m_valid(kw_iter *it)
{
    return ((merge_iter *)it)->len > 0;
}

static void m_seek_to_first(kw_iter *it)
{
    merge_iter *m = (merge_iter *)it;
    for (size_t i = 0; i < m->n; i++)
        kw_iter_seek_to_first(m->child[i]);
    m->dir = FORWARD;
    rebuild(m);
}

static void m_seek_to_last(kw_iter *it)
{
    merge_iter *m = (merge_iter *)it;
    for (size_t i = 0; i < m->n; i++)
        kw_iter_seek_to_last(m->child[i]);
    m->dir = REVERSE;
    rebuild(m);
}

static void m_seek(kw_iter *it, kw_slice target)
{
    merge_iter *m = (merge_iter *)it;
    for (size_t i = 0; i < m->n; i++)
        kw_iter_seek(m->child[i], target);
    m->dir = FORWARD;
    rebuild(m);
}

/* Every child but the current one moves to its first entry ranking after the current entry
 * (key K of child cur): a child listed before cur passes an entry equal to K, one listed after
 * stops on it. The current child's key stays valid: it does not move. */
static void turn_forward(merge_iter *m)
{
    size_t cur = m->heap[0].idx;
    kw_slice key = m->heap[0].key;
    for (size_t i = 0; i < m->n; i++) {
        kw_iter *c = m->child[i];
        if (i == cur)
            continue;
        kw_iter_seek(c, key);
        if (i < cur && kw_iter_valid(c) && kw_ikey_compare(kw_iter_key(c), key) == 0)
            kw_iter_next(c);
    }
    m->dir = FORWARD;
    rebuild(m);
}

/* Every child but the current one moves to its last entry ranking before the current entry: a
 * child listed before cur keeps an entry equal to K, one listed after steps before it. */
static void turn_reverse(merge_iter *m)
{
    size_t cur = m->heap[0].idx;
    kw_slice key = m->heap[0].key;
    for (size_t i = 0; i < m->n; i++) {
        kw_iter *c = m->child[i];
        if (i == cur)
            continue;
        kw_iter_seek(c, key);
        if (!kw_iter_valid(c))
            kw_iter_seek_to_last(c); /* every entry ranks before K (errors are sticky) */
        else if (!(i < cur && kw_ikey_compare(kw_iter_key(c), key) == 0))
            kw_iter_prev(c);
    }
    m->dir = REVERSE;
    rebuild(m);
}

static void m_next(kw_iter *it)
{
    merge_iter *m = (merge_iter *)it;
    if (m->dir != FORWARD)
        turn_forward(m);
    kw_iter_next(m->child[m->heap[0].idx]);
    fix_top(m);
}

static void m_prev(kw_iter *it)
{
    merge_iter *m = (merge_iter *)it;
    if (m->dir != REVERSE)
        turn_reverse(m);
    kw_iter_prev(m->child[m->heap[0].idx]);
    fix_top(m);
}

static kw_slice m_key(kw_iter *it)
{
    return ((merge_iter *)it)->heap[0].key;
}

static kw_slice m_value(kw_iter *it)
{
    merge_iter *m = (merge_iter *)it;
    return kw_iter_value(m->child[m->heap[0].idx]);
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
    free(m->heap);
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
    m->heap = kw_calloc(n ? n : 1, sizeof(heap_ent));
    for (size_t i = 0; i < n; i++)
        m->child[i] = children[i];
    m->n = n;
    m->dir = FORWARD;
    return &m->base;
}
