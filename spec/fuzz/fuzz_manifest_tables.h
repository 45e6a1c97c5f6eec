/*
 * fuzz_manifest_tables.h: the SSTables every directory of the manifest target holds, so that a
 * manifest naming them gets past opening its tables and into the rest of recovery. Shared by
 * fuzz_manifest.c (writes them into each directory) and gen_seeds.c (manifest seeds name them).
 *
 * Table i is file number 5 + 2i and holds user keys "<'a'+i>00" .. "<'a'+i>09", one put each,
 * sequences 10i+1 .. 10i+10.
 */
#ifndef KIWI_FUZZ_MANIFEST_TABLES_H
#define KIWI_FUZZ_MANIFEST_TABLES_H

#include <stdio.h>

#include "dbformat.h"
#include "table.h"

#define FUZZ_MANIFEST_TABLES 2
#define FUZZ_MANIFEST_KEYS 10

static inline uint64_t fuzz_manifest_table_number(int i)
{
    return 5 + 2 * (uint64_t)i;
}

static inline void fuzz_manifest_ikey(int i, int k, kw_buf *out)
{
    char u[8];
    int n = snprintf(u, sizeof u, "%c%02d", 'a' + i, k);
    kw_ikey_append(out, kw_slice_make(u, (size_t)n), 10 * (uint64_t)i + (uint64_t)k + 1,
                   KW_TYPE_VALUE);
}

/* The smallest and largest internal keys of table i. */
static inline void fuzz_manifest_table_range(int i, kw_buf *lo, kw_buf *hi)
{
    fuzz_manifest_ikey(i, 0, lo);
    fuzz_manifest_ikey(i, FUZZ_MANIFEST_KEYS - 1, hi);
}

static inline kiwi_status fuzz_manifest_build_table(const char *path, int i, kw_table_props *props,
                                                    char **errmsg)
{
    kw_table_options o;
    kw_table_options_default(&o);
    o.block_size = 64;
    kw_table_builder *b;
    kiwi_status st = kw_table_builder_create(path, &o, &b, errmsg);
    if (st != KIWI_OK)
        return st;
    kw_buf k;
    kw_buf_init(&k);
    for (int j = 0; j < FUZZ_MANIFEST_KEYS; j++) {
        kw_buf_clear(&k);
        fuzz_manifest_ikey(i, j, &k);
        kw_table_builder_add(b, kw_slice_make(k.data, k.len), kw_slice_make("value", 5));
    }
    kw_buf_free(&k);
    return kw_table_builder_finish(b, props, errmsg);
}

#endif /* KIWI_FUZZ_MANIFEST_TABLES_H */
