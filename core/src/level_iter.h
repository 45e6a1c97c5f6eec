/*
 * level_iter.h: an internal iterator over one sorted run of SSTables (a level L1 and up).
 *
 * The files of such a level are disjoint and sorted by key, so one iterator serves the whole
 * level: a seek binary-searches the files by their largest internal key and opens (a table
 * iterator over) only the file the target falls in; next/prev move into the neighbouring file
 * when one file runs out. At most one table iterator is open at a time. Errors are sticky: the
 * first table error makes the level iterator invalid and is what status() reports.
 * docs/internals/iteration.md describes it.
 */
#ifndef KW_LEVEL_ITER_H
#define KW_LEVEL_ITER_H

#include "iterator.h"
#include "version.h"

/* files[0..n): sorted by key, non-overlapping in internal-key order, every table open. The array
 * and the files are borrowed: REQUIRES they outlive the iterator (e.g. a pinned kw_version).
 * fill_cache is passed to every table iterator (kw_table_iter_ex). */
kw_iter *kw_level_iter_create(kw_file_meta *const *files, size_t n, bool fill_cache);

#endif /* KW_LEVEL_ITER_H */
