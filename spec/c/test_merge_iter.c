/*
 * test_merge_iter.c: the read path's iterators against sorted models.
 *  - merging iterator (merge_iter.c): random children (some empty, duplicate user keys across
 *    children, even identical internal keys), random walks of seeks (present and missing keys),
 *    first/last, next/prev with direction switches, checked entry by entry (value included, so
 *    the tie rule "the child listed first wins" is checked too);
 *  - level iterator (level_iter.c): real SSTables with gaps between them, seeks into the gaps,
 *    before the first and past the last key, prev/next across file boundaries, an empty level,
 *    and a corrupt data block that stops the iterator with a sticky CORRUPTION.
 * The db iterator over a db with files on L0..L3 (background threads) is in test_merge_iter_db.c.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctest.h"
#include "dbformat.h"
#include "level_iter.h"
#include "merge_iter.h"
#include "merge_iter_fixture.h"
#include "table.h"

/* ---- a model: entries sorted by (internal key, child) ---------------------------------------- */

typedef struct {
    kw_buf ikey;
    kw_buf value;
    size_t child;
} entry;

typedef struct {
    entry *e;
    size_t n, cap;
} model;

static entry *model_push(model *m, kw_slice value, size_t child)
{
    if (m->n == m->cap) {
        m->cap = m->cap ? 2 * m->cap : 64;
        m->e = realloc(m->e, m->cap * sizeof *m->e);
    }
    entry *e = &m->e[m->n++];
    kw_buf_init(&e->ikey);
    kw_buf_init(&e->value);
    kw_buf_append(&e->value, value.data, value.size);
    e->child = child;
    return e;
}

static void model_add(model *m, kw_slice ukey, uint64_t seq, kw_value_type t, kw_slice value,
                      size_t child)
{
    kw_ikey_append(&model_push(m, value, child)->ikey, ukey, seq, t);
}

static void model_add_ikey(model *m, kw_slice ikey, kw_slice value, size_t child)
{
    kw_buf_append(&model_push(m, value, child)->ikey, ikey.data, ikey.size);
}

static kw_slice ik(const entry *e)
{
    return kw_slice_make(e->ikey.data, e->ikey.len);
}

static int entry_cmp(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    int c = kw_ikey_compare(ik(x), ik(y));
    if (c == 0)
        c = x->child < y->child ? -1 : x->child > y->child;
    return c;
}

static void model_sort(model *m)
{
    if (m->n > 1)
        qsort(m->e, m->n, sizeof(entry), entry_cmp);
}

static void model_free(model *m)
{
    for (size_t i = 0; i < m->n; i++) {
        kw_buf_free(&m->e[i].ikey);
        kw_buf_free(&m->e[i].value);
    }
    free(m->e);
    memset(m, 0, sizeof *m);
}

/* First entry whose internal key is >= target (m->n when none). */
static size_t model_lower_bound(const model *m, kw_slice target)
{
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (kw_ikey_compare(ik(&m->e[mid]), target) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* ---- a child over a sorted array of model entries -------------------------------------------- */

typedef struct {
    kw_iter base;
    model m; /* owned; sorted, internal keys unique */
    size_t pos; /* m.n: invalid */
} vec_iter;

static bool v_valid(kw_iter *it) { return ((vec_iter *)it)->pos < ((vec_iter *)it)->m.n; }
static void v_first(kw_iter *it) { ((vec_iter *)it)->pos = 0; }
static void v_last(kw_iter *it)
{
    vec_iter *v = (vec_iter *)it;
    v->pos = v->m.n ? v->m.n - 1 : 0;
}
static void v_seek(kw_iter *it, kw_slice t)
{
    vec_iter *v = (vec_iter *)it;
    v->pos = model_lower_bound(&v->m, t);
}
static void v_next(kw_iter *it) { ((vec_iter *)it)->pos++; }
static void v_prev(kw_iter *it)
{
    vec_iter *v = (vec_iter *)it;
    v->pos = v->pos == 0 ? v->m.n : v->pos - 1;
}
static kw_slice v_key(kw_iter *it) { return ik(&((vec_iter *)it)->m.e[((vec_iter *)it)->pos]); }
static kw_slice v_value(kw_iter *it)
{
    vec_iter *v = (vec_iter *)it;
    return kw_slice_make(v->m.e[v->pos].value.data, v->m.e[v->pos].value.len);
}
static kiwi_status v_status(kw_iter *it, char **errmsg) { return KIWI_OK; }
static void v_destroy(kw_iter *it)
{
    model_free(&((vec_iter *)it)->m);
    free(it);
}
static const kw_iter_ops VEC_OPS = {v_valid, v_first, v_last,   v_seek,   v_next,
                                    v_prev,  v_key,   v_value, v_status, v_destroy};

/* ---- the random walk ------------------------------------------------------------------------- */

/* Random user key over {a,b}, 1..4 bytes: many duplicates and prefix pairs ("ab" < "aba"). */
static void random_ukey(char *buf, size_t *len, size_t maxlen)
{
    *len = 1 + rnd(maxlen);
    for (size_t i = 0; i < *len; i++)
        buf[i] = rnd(2) ? 'b' : 'a';
}

/* Is `it` exactly where the model says (p == m->n: invalid)? */
static bool at(kw_iter *it, const model *m, size_t p)
{
    if (p >= m->n)
        return !kw_iter_valid(it);
    if (!kw_iter_valid(it))
        return false;
    kw_slice k = kw_iter_key(it), v = kw_iter_value(it);
    const entry *e = &m->e[p];
    return k.size == e->ikey.len && memcmp(k.data, e->ikey.data, k.size) == 0 &&
           v.size == e->value.len && memcmp(v.data, e->value.data, v.size) == 0;
}

/* nops random operations on it, each checked against the model m (sorted by entry_cmp). The
 * seek targets come from seek_key(). Returns the number of mismatches. */
static int walk(kw_iter *it, const model *m, int nops, void (*seek_key)(kw_buf *))
{
    size_t p = m->n;
    int bad = 0;
    kw_buf t;
    kw_buf_init(&t);
    for (int op = 0; op < nops && bad < 5; op++) {
        int r = (int)rnd(10);
        if (r == 0) {
            kw_iter_seek_to_first(it);
            p = 0;
        } else if (r == 1) {
            kw_iter_seek_to_last(it);
            p = m->n ? m->n - 1 : 0;
        } else if (r <= 3 || p >= m->n) {
            kw_buf_clear(&t);
            seek_key(&t);
            kw_iter_seek(it, kw_slice_make(t.data, t.len));
            p = model_lower_bound(m, kw_slice_make(t.data, t.len));
        } else if (r <= 6) {
            kw_iter_next(it);
            p++;
        } else {
            kw_iter_prev(it);
            p = p == 0 ? m->n : p - 1;
        }
        if (!at(it, m, p)) {
            fprintf(stderr, "walk: op %d (kind %d): wrong position, model at %zu of %zu\n", op,
                    r, p, m->n);
            bad++;
        }
    }
    kw_buf_free(&t);
    return bad;
}

static void seek_ab(kw_buf *t)
{
    char k[8];
    size_t len;
    random_ukey(k, &len, 5); /* one letter longer than stored keys: some are missing */
    kw_ikey_append(t, kw_slice_make(k, len), rnd(40), KW_TYPE_FOR_SEEK);
}

static void test_merge_random(void)
{
    int bad = 0;
    for (int trial = 0; trial < 300 && bad == 0; trial++) {
        size_t nchild = rnd(9);
        kw_iter *children[8];
        model all = {0};
        for (size_t c = 0; c < nchild; c++) {
            vec_iter *v = kw_calloc(1, sizeof *v);
            v->base.ops = &VEC_OPS;
            size_t n = rnd(4) == 0 ? 0 : rnd(40);
            for (size_t i = 0; i < n; i++) {
                char k[8], val[32];
                size_t len;
                random_ukey(k, &len, 4);
                uint64_t seq = 1 + rnd(32);
                kw_value_type type = rnd(4) ? KW_TYPE_VALUE : KW_TYPE_DELETE;
                int vl = snprintf(val, sizeof val, "c%zu:%zu", c, i);
                model_add(&v->m, kw_slice_make(k, len), seq, type, kw_slice_make(val, (size_t)vl),
                          c);
            }
            model_sort(&v->m);
            size_t w = 0; /* one child never holds one internal key twice */
            for (size_t i = 0; i < v->m.n; i++) {
                if (w > 0 && kw_ikey_compare(ik(&v->m.e[w - 1]), ik(&v->m.e[i])) == 0) {
                    kw_buf_free(&v->m.e[i].ikey);
                    kw_buf_free(&v->m.e[i].value);
                    continue;
                }
                v->m.e[w++] = v->m.e[i];
            }
            v->m.n = w;
            for (size_t i = 0; i < v->m.n; i++)
                model_add_ikey(&all, ik(&v->m.e[i]),
                               kw_slice_make(v->m.e[i].value.data, v->m.e[i].value.len), c);
            v->pos = v->m.n;
            children[c] = &v->base;
        }
        model_sort(&all);
        kw_iter *m = kw_merge_iter_create(children, nchild);
        CHECK(!kw_iter_valid(m));
        bad += walk(m, &all, 200, seek_ab);
        /* a full pass each way */
        size_t cnt = 0;
        for (kw_iter_seek_to_first(m); kw_iter_valid(m); kw_iter_next(m))
            bad += !at(m, &all, cnt++);
        CHECK_EQ_U64(cnt, all.n);
        cnt = 0;
        for (kw_iter_seek_to_last(m); kw_iter_valid(m); kw_iter_prev(m))
            bad += !at(m, &all, all.n - 1 - cnt++);
        CHECK_EQ_U64(cnt, all.n);
        CHECK(kw_iter_status(m, NULL) == KIWI_OK);
        kw_iter_destroy(m);
        model_free(&all);
    }
    CHECK(bad == 0);
}

/* Identical internal keys in two children: forward the first-listed child comes first, reverse
 * the exact mirror, and a direction switch on either copy moves to the other. */
static void test_merge_ties(void)
{
    kw_iter *children[2];
    for (size_t c = 0; c < 2; c++) {
        vec_iter *v = kw_calloc(1, sizeof *v);
        v->base.ops = &VEC_OPS;
        const char *keys[] = {"a", "b", "c"};
        for (size_t i = 0; i < 3; i++) {
            char val[8];
            snprintf(val, sizeof val, "%zu%s", c, keys[i]);
            model_add(&v->m, kw_slice_make(keys[i], 1), 5, KW_TYPE_VALUE, kw_slice_make(val, 2),
                      c);
        }
        v->pos = 3;
        children[c] = &v->base;
    }
    kw_iter *m = kw_merge_iter_create(children, 2);
    const char *fwd[] = {"0a", "1a", "0b", "1b", "0c", "1c"};
    int i = 0;
    for (kw_iter_seek_to_first(m); kw_iter_valid(m); kw_iter_next(m), i++)
        CHECK(i < 6 && memcmp(kw_iter_value(m).data, fwd[i], 2) == 0);
    CHECK(i == 6);
    for (kw_iter_seek_to_last(m); kw_iter_valid(m); kw_iter_prev(m))
        CHECK(i > 0 && memcmp(kw_iter_value(m).data, fwd[--i], 2) == 0);
    CHECK(i == 0);
    kw_iter_seek_to_first(m);
    kw_iter_next(m); /* 1a */
    kw_iter_next(m); /* 0b */
    kw_iter_prev(m);
    CHECK(kw_iter_valid(m) && memcmp(kw_iter_value(m).data, "1a", 2) == 0);
    kw_iter_prev(m);
    CHECK(kw_iter_valid(m) && memcmp(kw_iter_value(m).data, "0a", 2) == 0);
    kw_iter_next(m);
    CHECK(kw_iter_valid(m) && memcmp(kw_iter_value(m).data, "1a", 2) == 0);
    kw_iter_prev(m);
    kw_iter_prev(m);
    CHECK(!kw_iter_valid(m));
    kw_iter_destroy(m);
    kw_iter_destroy(kw_merge_iter_create(NULL, 0));
}

/* ---- level iterator over real SSTables ------------------------------------------------------- */

#define NFILES 6
#define PER_FILE 100 /* file f holds keys k(f*PER_FILE + 3j) for 3j < 60: gaps after each file */

static void level_key(kw_buf *b, int i, uint64_t seq)
{
    char k[16];
    int n = snprintf(k, sizeof k, "k%05d", i);
    kw_ikey_append(b, kw_slice_make(k, (size_t)n), seq, KW_TYPE_VALUE);
}

typedef struct {
    char *dir;
    kw_file_meta meta[NFILES];
    kw_file_meta *files[NFILES];
    model m;
} level_fixture;

/* Builds the files (small blocks: several per file); corrupt_file >= 0 gets a flipped byte in
 * its first data block before it is opened. */
static bool level_setup(level_fixture *fx, int corrupt_file)
{
    memset(fx, 0, sizeof *fx);
    fx->dir = ctest_tmpdir("level-iter");
    kw_table_options o;
    kw_table_options_default(&o);
    o.block_size = 128;
    for (int f = 0; f < NFILES; f++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%06d.sst", fx->dir, f + 1);
        kw_table_builder *b;
        char *err = NULL;
        if (kw_table_builder_create(path, &o, &b, &err) != KIWI_OK)
            return false;
        for (int j = 0; 3 * j < 60; j++) {
            kw_buf k;
            kw_buf_init(&k);
            int i = f * PER_FILE + 3 * j;
            level_key(&k, i, 7);
            char val[24];
            int vl = snprintf(val, sizeof val, "value-%d", i);
            kw_table_builder_add(b, kw_slice_make(k.data, k.len), kw_slice_make(val, (size_t)vl));
            model_add_ikey(&fx->m, kw_slice_make(k.data, k.len), kw_slice_make(val, (size_t)vl), 0);
            kw_buf_free(&k);
        }
        if (kw_table_builder_finish(b, NULL, &err) != KIWI_OK)
            return false;
        if (f == corrupt_file) {
            int fd = open(path, O_RDWR);
            char c;
            if (fd < 0 || pread(fd, &c, 1, 20) != 1)
                return false;
            c ^= 0x40;
            if (pwrite(fd, &c, 1, 20) != 1)
                return false;
            close(fd);
        }
        kw_file_meta *fm = &fx->meta[f];
        if (kw_table_open(path, (uint64_t)f + 1, &fm->table, &err) != KIWI_OK)
            return false;
        const kw_table_props *p = kw_table_properties(fm->table);
        fm->number = (uint64_t)f + 1;
        fm->smallest = p->smallest;
        fm->smallest_len = p->smallest_len;
        fm->largest = p->largest;
        fm->largest_len = p->largest_len;
        fx->files[f] = fm;
    }
    return true;
}

static void level_teardown(level_fixture *fx)
{
    for (int f = 0; f < NFILES; f++)
        if (fx->meta[f].table)
            kw_table_unref(fx->meta[f].table);
    model_free(&fx->m);
    ctest_rmtree(fx->dir);
}

static void seek_level(kw_buf *t)
{
    level_key(t, (int)rnd(NFILES * PER_FILE + 50) - 10, rnd(2) ? 7 : 3); /* 3: after seq 7 */
}

static bool key_is(kw_iter *it, int i)
{
    kw_buf k;
    kw_buf_init(&k);
    level_key(&k, i, 7);
    bool ok = kw_iter_valid(it) && kw_iter_key(it).size == k.len &&
              memcmp(kw_iter_key(it).data, k.data, k.len) == 0;
    kw_buf_free(&k);
    return ok;
}

static void test_level_iter(void)
{
    level_fixture fx;
    CHECK(level_setup(&fx, -1));
    if (fx.m.n == 0)
        return;
    kw_iter *it = kw_level_iter_create(fx.files, NFILES, true);
    CHECK(!kw_iter_valid(it));
    kw_iter_seek_to_first(it);
    CHECK(key_is(it, 0));
    kw_iter_seek_to_last(it);
    CHECK(key_is(it, (NFILES - 1) * PER_FILE + 57));
    /* a gap between file 1 and file 2 lands on file 2's first key; prev crosses back */
    kw_buf t;
    kw_buf_init(&t);
    level_key(&t, PER_FILE + 80, 7);
    kw_iter_seek(it, kw_slice_make(t.data, t.len));
    CHECK(key_is(it, 2 * PER_FILE));
    kw_iter_prev(it);
    CHECK(key_is(it, PER_FILE + 57));
    kw_iter_next(it);
    CHECK(key_is(it, 2 * PER_FILE));
    /* the largest key of a file at an older sequence sorts after it: the next file's first */
    kw_buf_clear(&t);
    level_key(&t, PER_FILE + 57, 3);
    kw_iter_seek(it, kw_slice_make(t.data, t.len));
    CHECK(key_is(it, 2 * PER_FILE));
    kw_buf_clear(&t);
    level_key(&t, NFILES * PER_FILE, 7); /* past the last key */
    kw_iter_seek(it, kw_slice_make(t.data, t.len));
    CHECK(!kw_iter_valid(it));
    kw_buf_free(&t);
    /* full passes both ways cross every boundary */
    size_t n = 0;
    for (kw_iter_seek_to_first(it); kw_iter_valid(it); kw_iter_next(it))
        CHECK(at(it, &fx.m, n++));
    CHECK_EQ_U64(n, fx.m.n);
    for (kw_iter_seek_to_last(it); kw_iter_valid(it); kw_iter_prev(it))
        CHECK(at(it, &fx.m, --n));
    CHECK_EQ_U64(n, 0);
    CHECK_EQ_U64(walk(it, &fx.m, 3000, seek_level), 0);
    CHECK(kw_iter_status(it, NULL) == KIWI_OK);
    kw_iter_destroy(it);

    /* the level inside a merge with an interleaving child */
    vec_iter *v = kw_calloc(1, sizeof *v);
    v->base.ops = &VEC_OPS;
    model all = {0};
    for (size_t i = 0; i < fx.m.n; i++)
        model_add_ikey(&all, ik(&fx.m.e[i]),
                       kw_slice_make(fx.m.e[i].value.data, fx.m.e[i].value.len), 1);
    for (int i = 0; i < NFILES * PER_FILE; i += 7) {
        kw_buf k;
        kw_buf_init(&k);
        level_key(&k, i, 9);
        model_add_ikey(&v->m, kw_slice_make(k.data, k.len), kw_slice_make("mem", 3), 0);
        model_add_ikey(&all, kw_slice_make(k.data, k.len), kw_slice_make("mem", 3), 0);
        kw_buf_free(&k);
    }
    model_sort(&all);
    v->pos = v->m.n;
    kw_iter *children[2] = {&v->base, kw_level_iter_create(fx.files, NFILES, false)};
    kw_iter *m = kw_merge_iter_create(children, 2);
    CHECK_EQ_U64(walk(m, &all, 3000, seek_level), 0);
    kw_iter_destroy(m);
    model_free(&all);

    it = kw_level_iter_create(fx.files, 0, true); /* an empty level */
    kw_iter_seek_to_first(it);
    CHECK(!kw_iter_valid(it));
    kw_iter_seek_to_last(it);
    CHECK(!kw_iter_valid(it));
    kw_iter_seek(it, ik(&fx.m.e[0]));
    CHECK(!kw_iter_valid(it));
    kw_iter_destroy(it);
    level_teardown(&fx);
}

static void test_level_iter_corruption(void)
{
    level_fixture fx;
    CHECK(level_setup(&fx, 2));
    if (fx.m.n == 0)
        return;
    kw_iter *it = kw_level_iter_create(fx.files, NFILES, true);
    size_t n = 0;
    for (kw_iter_seek_to_first(it); kw_iter_valid(it); kw_iter_next(it))
        n++;
    CHECK_EQ_U64(n, 2 * 20); /* files 0 and 1, then the bad block of file 2 */
    char *err = NULL;
    CHECK(kw_iter_status(it, &err) == KIWI_CORRUPTION);
    CHECK(err != NULL && strstr(err, "000003.sst") != NULL);
    free(err);
    kw_iter_seek(it, ik(&fx.m.e[fx.m.n - 1])); /* file 5 is fine, but the error is sticky */
    CHECK(!kw_iter_valid(it));
    kw_iter_destroy(it);
    level_teardown(&fx);
}

int main(void)
{
    RUN(test_merge_random);
    RUN(test_merge_ties);
    RUN(test_level_iter);
    RUN(test_level_iter_corruption);
    return ctest_summary();
}
