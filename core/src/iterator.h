/*
 * iterator.h: the internal iterator interface shared by memtables, SSTables, the merging iterator
 * and the db iterator.
 *
 * An internal iterator walks internal keys (dbformat.h) in kw_ikey_compare order, including every
 * version and every tombstone. It is a struct whose first member is `kw_iter`; the ops table is
 * the implementation. An iterator starts invalid. key()/value() are valid until the iterator moves
 * or is destroyed. Not thread-safe. status() reports the first error (e.g. a corrupt block) that
 * made the iterator invalid; an iterator that hits an error becomes invalid.
 */
#ifndef KW_ITERATOR_H
#define KW_ITERATOR_H

#include "common.h"

typedef struct kw_iter kw_iter;

typedef struct {
    bool (*valid)(kw_iter *);
    void (*seek_to_first)(kw_iter *);
    void (*seek_to_last)(kw_iter *);
    void (*seek)(kw_iter *, kw_slice ikey);     /* first entry >= ikey */
    void (*next)(kw_iter *);                    /* REQUIRES: valid */
    void (*prev)(kw_iter *);                    /* REQUIRES: valid */
    kw_slice (*key)(kw_iter *);                 /* REQUIRES: valid; an internal key */
    kw_slice (*value)(kw_iter *);               /* REQUIRES: valid */
    kiwi_status (*status)(kw_iter *, char **errmsg);
    void (*destroy)(kw_iter *);
} kw_iter_ops;

struct kw_iter {
    const kw_iter_ops *ops;
};

static inline bool kw_iter_valid(kw_iter *it) { return it->ops->valid(it); }
static inline void kw_iter_seek_to_first(kw_iter *it) { it->ops->seek_to_first(it); }
static inline void kw_iter_seek_to_last(kw_iter *it) { it->ops->seek_to_last(it); }
static inline void kw_iter_seek(kw_iter *it, kw_slice k) { it->ops->seek(it, k); }
static inline void kw_iter_next(kw_iter *it) { it->ops->next(it); }
static inline void kw_iter_prev(kw_iter *it) { it->ops->prev(it); }
static inline kw_slice kw_iter_key(kw_iter *it) { return it->ops->key(it); }
static inline kw_slice kw_iter_value(kw_iter *it) { return it->ops->value(it); }
static inline kiwi_status kw_iter_status(kw_iter *it, char **errmsg)
{
    return it->ops->status(it, errmsg);
}
static inline void kw_iter_destroy(kw_iter *it)
{
    if (it)
        it->ops->destroy(it);
}

#endif /* KW_ITERATOR_H */
