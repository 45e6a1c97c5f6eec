/*
 * merge_iter.h: an internal iterator that merges N sorted internal iterators into one sorted
 * stream (every version of every key from every layer), in both directions.
 *
 * It owns its children and destroys them with itself. Children are compared with
 * kw_ikey_compare; on equal keys the child listed first wins (callers list newer layers first,
 * though equal internal keys never occur across layers since sequences are unique).
 */
#ifndef KW_MERGE_ITER_H
#define KW_MERGE_ITER_H

#include "iterator.h"

/* Takes ownership of children[0..n) (the array itself is copied). */
kw_iter *kw_merge_iter_create(kw_iter **children, size_t n);

#endif /* KW_MERGE_ITER_H */
