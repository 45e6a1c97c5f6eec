/*
 * table_model_fixture.h: what the SSTable tests share (test_table.c, test_table_faults.c): a
 * sorted-array model of (internal key, value) entries, building a table from it, and the checks
 * of a table's gets and iteration against the model.
 */
#ifndef KIWI_TABLE_MODEL_FIXTURE_H
#define KIWI_TABLE_MODEL_FIXTURE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctest.h"
#include "dbformat.h"
#include "table.h"

/* ---- the model: a sorted array of (internal key, value) ---------------------------------- */

typedef struct {
    char *key; /* internal key */
    size_t klen;
    char *val;
    size_t vlen;
} entry;

typedef struct {
    entry *e;
    size_t n, cap;
} model;

static inline kw_slice ek(const entry *e) { return kw_slice_make(e->key, e->klen); }

static inline void model_add(model *m, const char *uk, size_t uklen, uint64_t seq,
                             kw_value_type type, size_t vlen)
{
    if (m->n == m->cap) {
        m->cap = m->cap ? 2 * m->cap : 64;
        m->e = realloc(m->e, m->cap * sizeof *m->e);
    }
    entry *e = &m->e[m->n++];
    kw_buf b;
    kw_buf_init(&b);
    kw_ikey_append(&b, kw_slice_make(uk, uklen), seq, type);
    e->key = b.data;
    e->klen = b.len;
    e->vlen = type == KW_TYPE_VALUE ? vlen : 0;
    e->val = malloc(e->vlen + 1);
    for (size_t i = 0; i < e->vlen; i++)
        e->val[i] = (char)('a' + (seq + i) % 26);
}

static inline int cmp_entry(const void *a, const void *b)
{
    return kw_ikey_compare(ek(a), ek(b));
}

static inline void model_free(model *m)
{
    for (size_t i = 0; i < m->n; i++) {
        free(m->e[i].key);
        free(m->e[i].val);
    }
    free(m->e);
}

/* The first entry >= target, or m->n. */
static inline size_t model_lower_bound(const model *m, kw_slice target)
{
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (kw_ikey_compare(ek(&m->e[mid]), target) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static inline kw_lookup model_get(const model *m, kw_slice uk, uint64_t seq, const entry **found)
{
    kw_buf t;
    kw_buf_init(&t);
    kw_ikey_append(&t, uk, seq, KW_TYPE_FOR_SEEK);
    size_t i = model_lower_bound(m, kw_slice_make(t.data, t.len));
    kw_buf_free(&t);
    if (i == m->n || kw_slice_compare(kw_ikey_user(ek(&m->e[i])), uk) != 0)
        return KW_LOOKUP_MISS;
    *found = &m->e[i];
    return kw_ikey_type(ek(&m->e[i])) == KW_TYPE_VALUE ? KW_LOOKUP_FOUND : KW_LOOKUP_DELETED;
}

static inline kiwi_status build(const char *path, const model *m, const kw_table_options *o,
                                kw_table_props *props, char **err)
{
    kw_table_builder *b;
    kiwi_status st = kw_table_builder_create(path, o, &b, err);
    if (st != KIWI_OK)
        return st;
    for (size_t i = 0; i < m->n; i++)
        kw_table_builder_add(b, ek(&m->e[i]), kw_slice_make(m->e[i].val, m->e[i].vlen));
    return kw_table_builder_finish(b, props, err);
}

static inline bool same(kw_slice a, const char *p, size_t n)
{
    return a.size == n && (n == 0 || memcmp(a.data, p, n) == 0);
}

static inline void many_model(model *m, int n)
{
    for (int i = 0; i < n; i++) {
        char k[16];
        int len = snprintf(k, sizeof k, "k%08d", i * 2);
        model_add(m, k, (size_t)len, (uint64_t)i + 1, i % 10 == 0 ? KW_TYPE_DELETE : KW_TYPE_VALUE,
                  8);
    }
}

/* ---- checks of a table against the model ------------------------------------------------- */

static inline void check_gets(kw_table *t, const model *m, const char *uk, size_t uklen,
                              uint64_t seq)
{
    const entry *want = NULL;
    kw_lookup expect = model_get(m, kw_slice_make(uk, uklen), seq, &want);
    kw_lookup got;
    kw_slice v;
    char *err = NULL;
    kw_table_lookup_info info;
    kiwi_status st = kw_table_get(t, kw_slice_make(uk, uklen), seq, &got, &v, &info, &err);
    CHECK(st == KIWI_OK);
    CHECK(got == expect);
    if (got == KW_LOOKUP_FOUND && expect == KW_LOOKUP_FOUND)
        CHECK(same(v, want->val, want->vlen));
    if (expect != KW_LOOKUP_MISS)
        CHECK(info.bloom_may_contain && info.block_read);
    free(err);
}

static inline void check_iteration(kw_table *t, const model *m, size_t seek_stride)
{
    kw_iter *it = kw_table_iter(t);
    size_t i = 0;
    for (kw_iter_seek_to_first(it); kw_iter_valid(it); kw_iter_next(it), i++)
        if (i < m->n && !(same(kw_iter_key(it), m->e[i].key, m->e[i].klen) &&
                          same(kw_iter_value(it), m->e[i].val, m->e[i].vlen)))
            break;
    CHECK_EQ_U64(i, m->n);
    for (kw_iter_seek_to_last(it); kw_iter_valid(it); kw_iter_prev(it)) {
        i--;
        if (!same(kw_iter_key(it), m->e[i].key, m->e[i].klen))
            break;
    }
    CHECK_EQ_U64(i, 0);
    for (size_t j = 0; j < m->n; j += seek_stride) {
        kw_iter_seek(it, ek(&m->e[j])); /* exact */
        CHECK(kw_iter_valid(it) && same(kw_iter_key(it), m->e[j].key, m->e[j].klen));
        /* between: user key + "\0" sorts after every version of the key, before the next */
        kw_buf k;
        kw_buf_init(&k);
        kw_buf_append(&k, m->e[j].key, m->e[j].klen - KW_TRAILER_SIZE);
        kw_buf_push(&k, '\0');
        kw_ikey_append(&k, kw_slice_make(NULL, 0), KW_MAX_SEQ, KW_TYPE_VALUE);
        size_t want = model_lower_bound(m, kw_slice_make(k.data, k.len));
        kw_iter_seek(it, kw_slice_make(k.data, k.len));
        if (want == m->n)
            CHECK(!kw_iter_valid(it));
        else
            CHECK(kw_iter_valid(it) && same(kw_iter_key(it), m->e[want].key, m->e[want].klen));
        if (want < m->n && want > 0 && kw_iter_valid(it)) { /* prev crosses back */
            kw_iter_prev(it);
            CHECK(kw_iter_valid(it) &&
                  same(kw_iter_key(it), m->e[want - 1].key, m->e[want - 1].klen));
        }
        kw_buf_free(&k);
    }
    CHECK(kw_iter_status(it, NULL) == KIWI_OK);
    kw_iter_destroy(it);
}

#endif /* KIWI_TABLE_MODEL_FIXTURE_H */
