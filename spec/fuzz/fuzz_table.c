/*
 * fuzz_table.c: libFuzzer target for the SSTable reader (table.c, table_iter.c, block.c, bloom.c
 * reading, cache.c through the block cache). The input is a whole .sst file.
 *
 * Each input runs as it is and, when that changes anything, with every checksum the harness can
 * locate repaired (the footer, the three meta blocks, and every data block the index names), so
 * mutations reach the parsers behind the CRCs. Each version is opened four ways: without a
 * cache; with roomy tiers (and other tables' entries in the data tier); with a data tier
 * smaller than most blocks and the index and bloom tiers off; with tiers too small to keep the
 * index or the filter. Then: gets, full forward and backward scans, seeks, a next/prev walk
 * driven by the input, kw_table_verify.
 *
 * Oracles, always: no crash, leak or undefined behaviour; errors are KIWI_CORRUPTION with a
 * message; the four ways agree on every status, every entry, every lookup result and value;
 * kw_table_get and kw_table_get_ex (no fill) agree.
 * Oracles for a well-formed table (verify passes, keys strictly increase, every restart point is
 * an entry with no shared prefix, types are put/delete, the bloom filter admits every key): the
 * backward scan is the forward scan reversed, the walk visits the entries it should, every seek
 * lands on the first entry >= its target and every get answers what the sorted entry list
 * says. A table that is damaged but still passes its CRCs may give wrong answers (block.h); it
 * must never crash.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "block.h"
#include "bloom.h"
#include "cache.h"
#include "dbformat.h"
#include "fuzz_common.h"
#include "table.h"

#define MAX_ENTRIES 20000
#define PROBES_PER_ENTRY 3
#define MAX_PROBED_ENTRIES 24

/* ---- the entry list ------------------------------------------------------------------------ */

typedef struct {
    size_t koff, klen, voff, vlen; /* into bytes */
} entry;

typedef struct {
    kw_buf bytes;
    entry *e;
    size_t n, cap;
    kiwi_status st; /* the scan's final status */
} entries;

static void entries_init(entries *l)
{
    memset(l, 0, sizeof *l);
    kw_buf_init(&l->bytes);
}

static void entries_free(entries *l)
{
    kw_buf_free(&l->bytes);
    free(l->e);
}

static void entries_add(entries *l, kw_slice k, kw_slice v)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->e = kw_realloc(l->e, l->cap * sizeof *l->e);
    }
    entry *e = &l->e[l->n++];
    e->koff = l->bytes.len;
    e->klen = k.size;
    kw_buf_append(&l->bytes, k.data, k.size);
    e->voff = l->bytes.len;
    e->vlen = v.size;
    kw_buf_append(&l->bytes, v.data, v.size);
}

/* (bytes.data is NULL while every key and value so far was empty) */
static kw_slice ekey(const entries *l, size_t i)
{
    return kw_slice_make(l->bytes.data ? l->bytes.data + l->e[i].koff : "", l->e[i].klen);
}

static kw_slice evalue(const entries *l, size_t i)
{
    return kw_slice_make(l->bytes.data ? l->bytes.data + l->e[i].voff : "", l->e[i].vlen);
}

static bool slice_eq(kw_slice a, kw_slice b)
{
    return a.size == b.size && (a.size == 0 || memcmp(a.data, b.data, a.size) == 0);
}

static bool entries_equal(const entries *a, const entries *b)
{
    if (a->st != b->st || a->n != b->n)
        return false;
    for (size_t i = 0; i < a->n; i++)
        if (!slice_eq(ekey(a, i), ekey(b, i)) || !slice_eq(evalue(a, i), evalue(b, i)))
            return false;
    return true;
}

/* The first entry >= target in a sorted list (n if none). */
static size_t lower_bound(const entries *l, kw_slice target)
{
    size_t lo = 0, hi = l->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (kw_ikey_compare(ekey(l, mid), target) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* ---- scans --------------------------------------------------------------------------------- */

static kiwi_status iter_status(kw_iter *it)
{
    char *err = NULL;
    kiwi_status st = kw_iter_status(it, &err);
    if (st != KIWI_OK)
        FUZZ_CHECK_ERROR(st, err);
    free(err);
    return st;
}

static void scan(kw_table *t, bool forward, bool fill, entries *out)
{
    entries_init(out);
    kw_iter *it = kw_table_iter_ex(t, fill);
    if (forward)
        kw_iter_seek_to_first(it);
    else
        kw_iter_seek_to_last(it);
    while (kw_iter_valid(it) && out->n < MAX_ENTRIES) {
        kw_slice k = kw_iter_key(it);
        FUZZ_CHECK(k.size >= KW_TRAILER_SIZE);
        entries_add(out, k, kw_iter_value(it));
        if (forward)
            kw_iter_next(it);
        else
            kw_iter_prev(it);
    }
    out->st = iter_status(it);
    kw_iter_destroy(it);
}

/* ---- well-formedness (the gate for the strong oracles) ------------------------------------- */

/* Every restart point of the block is the offset of an entry whose shared prefix is 0. */
static bool restarts_aligned(kw_slice contents)
{
    kw_block b;
    if (kw_block_parse(&b, contents, "fuzz.sst", 0, "block", NULL) != KIWI_OK)
        return false;
    kw_block_iter it;
    kw_block_iter_init(&it, &b);
    uint32_t r = 0;
    bool ok = true;
    for (kw_iter_seek_to_first(&it.base); ok && it.valid; kw_iter_next(&it.base)) {
        uint32_t roff = r < b.num_restarts
                            ? kw_decode_fixed32(b.data + b.restarts_off + 4 * (size_t)r)
                            : UINT32_MAX;
        if (roff == it.current) {
            uint32_t shared = 1;
            kw_decode_varint32(b.data + it.current, b.data + b.restarts_off, &shared);
            ok = shared == 0;
            r++;
        } else if (roff < it.current) {
            ok = false; /* a restart point inside an entry */
        }
    }
    ok = ok && it.status == KIWI_OK && r == b.num_restarts;
    kw_block_iter_cleanup(&it);
    return ok;
}

/* The data blocks named by the index (found from the footer), each with aligned restarts. */
static bool blocks_aligned(const char *buf, size_t size)
{
    const char *f = buf + size - KW_TABLE_FOOTER_SIZE;
    uint64_t ioff = kw_decode_fixed64(f + 32), isize = kw_decode_fixed64(f + 40);
    kw_block ib;
    if (kw_block_parse(&ib, kw_slice_make(buf + ioff, isize), "fuzz.sst", ioff, "index", NULL) !=
        KIWI_OK)
        return false;
    kw_block_iter it;
    kw_block_iter_init(&it, &ib);
    bool ok = true;
    for (kw_iter_seek_to_first(&it.base); ok && it.valid; kw_iter_next(&it.base)) {
        uint64_t off = 0, bsize = 0;
        const char *p = kw_decode_varint64(it.value.data, it.value.data + it.value.size, &off);
        ok = p && kw_decode_varint64(p, it.value.data + it.value.size, &bsize) && off <= size &&
             bsize <= size - off && restarts_aligned(kw_slice_make(buf + off, bsize));
    }
    kw_block_iter_cleanup(&it);
    return ok;
}

/* Called only for a table that opened and verified, so the footer handles are in bounds. */
static bool well_formed(const char *buf, size_t size, const entries *fwd, const entries *bwd)
{
    if (fwd->st != KIWI_OK || bwd->st != KIWI_OK || fwd->n == 0 || fwd->n >= MAX_ENTRIES)
        return false;
    const char *f = buf + size - KW_TABLE_FOOTER_SIZE;
    kw_slice filter = kw_slice_make(buf + kw_decode_fixed64(f), kw_decode_fixed64(f + 8));
    for (size_t i = 0; i < fwd->n; i++) {
        kw_slice k = ekey(fwd, i);
        if (kw_ikey_type(k) > KW_TYPE_VALUE || !kw_bloom_may_contain(filter, kw_ikey_user(k)))
            return false;
        if (i > 0 && kw_ikey_compare(ekey(fwd, i - 1), k) >= 0)
            return false;
    }
    return blocks_aligned(buf, size);
}

/* ---- probes -------------------------------------------------------------------------------- */

typedef struct {
    kw_buf ikeys;     /* probe internal keys back to back */
    size_t *off, *len;
    size_t n, cap;
} probes;

static void probe_add(probes *p, kw_slice ukey, uint64_t seq, kw_value_type type)
{
    if (p->n == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 64;
        p->off = kw_realloc(p->off, p->cap * sizeof *p->off);
        p->len = kw_realloc(p->len, p->cap * sizeof *p->len);
    }
    p->off[p->n] = p->ikeys.len;
    kw_ikey_append(&p->ikeys, ukey, seq, type);
    p->len[p->n] = p->ikeys.len - p->off[p->n];
    p->n++;
}

static kw_slice probe(const probes *p, size_t i)
{
    return kw_slice_make(p->ikeys.data + p->off[i], p->len[i]);
}

/* Probes around sampled entries (the key itself, newer and older sequences, the next and the
 * previous user key) and a few fixed ones. */
static void make_probes(const entries *fwd, probes *p)
{
    memset(p, 0, sizeof *p);
    kw_buf_init(&p->ikeys);
    probe_add(p, kw_slice_make("", 0), KW_MAX_SEQ, KW_TYPE_FOR_SEEK);
    probe_add(p, kw_slice_make("\xff\xff\xff\xff", 4), KW_MAX_SEQ, KW_TYPE_FOR_SEEK);
    size_t step = fwd->n / MAX_PROBED_ENTRIES + 1;
    kw_buf tmp;
    kw_buf_init(&tmp);
    for (size_t i = 0; i < fwd->n; i += step) {
        kw_slice k = ekey(fwd, i), u = kw_ikey_user(k);
        uint64_t seq = kw_ikey_seq(k);
        probe_add(p, u, seq, KW_TYPE_FOR_SEEK);
        probe_add(p, u, KW_MAX_SEQ, KW_TYPE_FOR_SEEK);
        probe_add(p, u, seq > 0 ? seq - 1 : 0, KW_TYPE_FOR_SEEK);
        kw_buf_clear(&tmp);
        kw_buf_append(&tmp, u.data, u.size);
        kw_buf_push(&tmp, '\0'); /* the smallest user key after u */
        probe_add(p, kw_slice_make(tmp.data, tmp.len), KW_MAX_SEQ, KW_TYPE_FOR_SEEK);
        if (u.size > 0) /* a prefix of u: sorts before it */
            probe_add(p, kw_slice_make(u.data, u.size - 1), 0, KW_TYPE_DELETE);
    }
    kw_buf_free(&tmp);
}

static void probes_free(probes *p)
{
    kw_buf_free(&p->ikeys);
    free(p->off);
    free(p->len);
}

/* ---- one opened table ---------------------------------------------------------------------- */

typedef struct {
    kiwi_status st;
    kw_lookup result;
    kw_buf value;
} get_result;

/* What one way of opening saw; compared across ways. */
typedef struct {
    kiwi_status open_st;
    entries fwd, bwd;
    kiwi_status verify_st;
    get_result *gets;   /* one per probe */
    entries seeks;      /* the entry each seek landed on (an empty key: invalid) */
} observation;

static void obs_free(observation *o, size_t nprobes)
{
    entries_free(&o->fwd);
    entries_free(&o->bwd);
    entries_free(&o->seeks);
    for (size_t i = 0; o->gets && i < nprobes; i++)
        kw_buf_free(&o->gets[i].value);
    free(o->gets);
}

static void do_get(kw_table *t, kw_slice ikey, get_result *g)
{
    kw_slice u = kw_ikey_user(ikey);
    uint64_t seq = kw_ikey_seq(ikey);
    kw_lookup r1 = KW_LOOKUP_MISS, r2 = KW_LOOKUP_MISS;
    kw_slice v1;
    char *e1 = NULL, *e2 = NULL;
    kw_table_lookup_info info;
    kiwi_status s1 = kw_table_get(t, u, seq, &r1, &v1, &info, &e1);
    kw_buf_init(&g->value);
    kiwi_status s2 = kw_table_get_ex(t, u, seq, false, &r2, &g->value, NULL, &e2);
    FUZZ_CHECK(s1 == s2);
    if (s1 != KIWI_OK) {
        FUZZ_CHECK_ERROR(s1, e1);
        FUZZ_CHECK_ERROR(s2, e2);
    } else {
        FUZZ_CHECK(r1 == r2);
        if (r1 == KW_LOOKUP_FOUND) {
            FUZZ_CHECK(slice_eq(v1, kw_slice_make(g->value.data, g->value.len)));
            FUZZ_CHECK(info.block_read);
        }
    }
    free(e1);
    free(e2);
    g->st = s1;
    g->result = s1 == KIWI_OK ? r1 : KW_LOOKUP_MISS;
}

static void do_seeks(kw_table *t, const probes *p, entries *out)
{
    entries_init(out);
    kw_iter *it = kw_table_iter(t);
    for (size_t i = 0; i < p->n; i++) {
        kw_iter_seek(it, probe(p, i));
        if (kw_iter_valid(it))
            entries_add(out, kw_iter_key(it), kw_iter_value(it));
        else
            entries_add(out, kw_slice_make("", 0), kw_slice_make("", 0));
    }
    out->st = iter_status(it);
    kw_iter_destroy(it);
}

/* next/prev steps chosen by the input's bytes, checked against the forward list. */
static void walk(kw_table *t, const entries *fwd, const uint8_t *data, size_t size)
{
    kw_iter *it = kw_table_iter(t);
    kw_iter_seek_to_first(it);
    size_t pos = 0;
    for (size_t i = 0; i < size && i < 256 && kw_iter_valid(it); i++) {
        FUZZ_CHECK(pos < fwd->n && slice_eq(kw_iter_key(it), ekey(fwd, pos)));
        if ((data[i] & 1) && pos > 0) {
            kw_iter_prev(it);
            pos--;
        } else {
            kw_iter_next(it);
            pos++;
        }
    }
    if (!kw_iter_valid(it))
        FUZZ_CHECK(iter_status(it) != KIWI_OK || pos == fwd->n);
    kw_iter_destroy(it);
}

static uint64_t table_number = 1;

static void observe(const char *path, kw_block_cache *cache, const probes *p, observation *o)
{
    memset(o, 0, sizeof *o);
    kw_table *t = NULL;
    char *err = NULL;
    o->open_st = kw_table_open_cached(path, table_number++, cache, &t, &err);
    if (o->open_st != KIWI_OK) {
        FUZZ_CHECK(o->open_st == KIWI_CORRUPTION);
        FUZZ_CHECK_ERROR(o->open_st, err);
        FUZZ_CHECK(t == NULL);
        free(err);
        return;
    }
    const kw_table_props *props = kw_table_properties(t);
    FUZZ_CHECK(props->data_blocks >= 1 && props->entries >= 1);
    scan(t, true, true, &o->fwd);
    scan(t, false, false, &o->bwd);
    o->gets = kw_calloc(p->n ? p->n : 1, sizeof *o->gets);
    for (size_t i = 0; i < p->n; i++)
        do_get(t, probe(p, i), &o->gets[i]);
    do_seeks(t, p, &o->seeks);
    o->verify_st = kw_table_verify(t, &err);
    if (o->verify_st != KIWI_OK)
        FUZZ_CHECK_ERROR(o->verify_st, err);
    free(err);
    kw_table_unref(t);
}

static void check_same(const observation *a, const observation *b, size_t nprobes)
{
    FUZZ_CHECK(a->open_st == b->open_st);
    if (a->open_st != KIWI_OK)
        return;
    FUZZ_CHECK(entries_equal(&a->fwd, &b->fwd));
    FUZZ_CHECK(entries_equal(&a->bwd, &b->bwd));
    FUZZ_CHECK(entries_equal(&a->seeks, &b->seeks));
    FUZZ_CHECK(a->verify_st == b->verify_st);
    for (size_t i = 0; i < nprobes; i++) {
        FUZZ_CHECK(a->gets[i].st == b->gets[i].st && a->gets[i].result == b->gets[i].result);
        FUZZ_CHECK(slice_eq(kw_slice_make(a->gets[i].value.data, a->gets[i].value.len),
                            kw_slice_make(b->gets[i].value.data, b->gets[i].value.len)));
    }
}

/* The strong oracles against the sorted forward list. */
static void check_model(const observation *o, const probes *p)
{
    const entries *f = &o->fwd;
    FUZZ_CHECK(o->bwd.n == f->n);
    for (size_t i = 0; i < f->n; i++) {
        FUZZ_CHECK(slice_eq(ekey(&o->bwd, i), ekey(f, f->n - 1 - i)));
        FUZZ_CHECK(slice_eq(evalue(&o->bwd, i), evalue(f, f->n - 1 - i)));
    }
    FUZZ_CHECK(o->seeks.st == KIWI_OK && o->seeks.n == p->n);
    for (size_t i = 0; i < p->n; i++) {
        kw_slice target = probe(p, i);
        size_t want = lower_bound(f, target);
        if (want == f->n)
            FUZZ_CHECK(o->seeks.e[i].klen == 0);
        else
            FUZZ_CHECK(slice_eq(ekey(&o->seeks, i), ekey(f, want)) &&
                       slice_eq(evalue(&o->seeks, i), evalue(f, want)));
        /* get: the newest version <= seq of the probe's user key */
        const get_result *g = &o->gets[i];
        FUZZ_CHECK(g->st == KIWI_OK);
        kw_slice u = kw_ikey_user(target);
        if (want == f->n || !slice_eq(kw_ikey_user(ekey(f, want)), u)) {
            FUZZ_CHECK(g->result == KW_LOOKUP_MISS);
        } else if (kw_ikey_type(ekey(f, want)) == KW_TYPE_DELETE) {
            FUZZ_CHECK(g->result == KW_LOOKUP_DELETED);
        } else {
            FUZZ_CHECK(g->result == KW_LOOKUP_FOUND);
            FUZZ_CHECK(slice_eq(kw_slice_make(g->value.data, g->value.len), evalue(f, want)));
        }
    }
}

#define WAYS 4

static void free_dummy(void *v)
{
    free(v);
}

/* Entries of other tables in the data tier, so that closing a table takes the path that erases
 * its blocks one by one (table.c erase_cached) rather than walking the tier. */
static void prefill(kw_block_cache *bc)
{
    for (uint64_t i = 0; i < 64; i++)
        kw_cache_release(bc->data, kw_cache_insert(bc->data, UINT64_MAX - i, 0, kw_malloc(8), 8,
                                                   free_dummy));
}

static void check_table(const char *buf, size_t size, const uint8_t *data)
{
    const char *path = fuzz_write_file("fuzz.sst", buf, size);
    /* no cache; roomy tiers; data tier smaller than most blocks with index and bloom off;
     * tiers too small to keep an index or filter (rebuilt per use, probed in the map) */
    kw_block_cache *caches[WAYS] = {NULL, kw_block_cache_create(16 << 10, 64 << 10, 4 << 10),
                                    kw_block_cache_create(1 << 10, 0, 0),
                                    kw_block_cache_create(2 << 10, 256, 64)};
    prefill(caches[1]);
    /* the probes come from the first way's forward scan */
    observation first;
    probes none;
    memset(&none, 0, sizeof none);
    kw_buf_init(&none.ikeys);
    observe(path, NULL, &none, &first);
    probes p;
    make_probes(&first.fwd, &p);
    obs_free(&first, none.n);
    probes_free(&none);

    observation o[WAYS];
    for (int w = 0; w < WAYS; w++) {
        observe(path, caches[w], &p, &o[w]);
        if (w > 0)
            check_same(&o[0], &o[w], p.n);
    }
    if (o[0].open_st == KIWI_OK && o[0].verify_st == KIWI_OK &&
        well_formed(buf, size, &o[0].fwd, &o[0].bwd)) {
        check_model(&o[0], &p);
        kw_table *t = NULL;
        FUZZ_CHECK(kw_table_open_cached(path, table_number++, caches[1], &t, NULL) == KIWI_OK);
        walk(t, &o[0].fwd, data, size);
        kw_table_unref(t);
    }
    for (int w = 0; w < WAYS; w++) {
        obs_free(&o[w], p.n);
        kw_block_cache_destroy(caches[w]);
    }
    probes_free(&p);
}

/* ---- CRC repair ---------------------------------------------------------------------------- */

static bool fix_block_crc(char *buf, size_t size, uint64_t off, uint64_t bsize)
{
    if (off > size || bsize > size - off || size - off - bsize < KW_TABLE_TRAILER_SIZE)
        return false;
    char *trailer = buf + off + bsize;
    uint32_t crc = kw_crc32c_extend(kw_crc32c(buf + off, bsize), trailer, 1);
    if (kw_decode_fixed32(trailer + 1) == crc)
        return false;
    kw_encode_fixed32(trailer + 1, crc);
    return true;
}

/* Data blocks (from the index), then the meta blocks, then the footer. */
static bool fix_table_crcs(char *buf, size_t size)
{
    if (size < KW_TABLE_FOOTER_SIZE)
        return false;
    char *f = buf + size - KW_TABLE_FOOTER_SIZE;
    bool changed = false;
    uint64_t ioff = kw_decode_fixed64(f + 32), isize = kw_decode_fixed64(f + 40);
    kw_block ib;
    if (ioff <= size && isize <= size - ioff &&
        kw_block_parse(&ib, kw_slice_make(buf + ioff, isize), "fuzz.sst", ioff, "index", NULL) ==
            KIWI_OK) {
        kw_block_iter it;
        kw_block_iter_init(&it, &ib);
        for (kw_iter_seek_to_first(&it.base); it.valid; kw_iter_next(&it.base)) {
            uint64_t off = 0, bsize = 0;
            const char *p = kw_decode_varint64(it.value.data, it.value.data + it.value.size, &off);
            if (p && kw_decode_varint64(p, it.value.data + it.value.size, &bsize))
                changed |= fix_block_crc(buf, size, off, bsize);
        }
        kw_block_iter_cleanup(&it);
    }
    for (int i = 0; i < 3; i++)
        changed |= fix_block_crc(buf, size, kw_decode_fixed64(f + 16 * i),
                                 kw_decode_fixed64(f + 16 * i + 8));
    uint32_t crc = kw_crc32c(f, 52);
    if (kw_decode_fixed32(f + 52) != crc) {
        kw_encode_fixed32(f + 52, crc);
        changed = true;
    }
    return changed;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = fuzz_copy(data, size);
    check_table(buf, size, data);
    if (fix_table_crcs(buf, size))
        check_table(buf, size, data);
    free(buf);
    return 0;
}
