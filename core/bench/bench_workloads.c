/*
 * bench_workloads.c: db_bench's workloads, written once against the `engine` table so every
 * engine runs exactly the same operations, and their verification.
 *
 * Honesty rules: every operation is performed and checked for its status (the adapters die on
 * an error); every read checks that the key is found exactly when it must be and compares the
 * whole value with the one the bench wrote (x->tag records which workload last wrote each key,
 * and a value is a pure function of key and tag); iterators must return exactly the live keys,
 * in order. Any mismatch aborts the run with a message naming the engine and the key.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

const char DEFAULT_BENCHMARKS[] = "fillseq,fillrandom,overwrite,readrandom,readmissing,readseq,"
                                  "seekrandom,deleterandom,fillbatch,fillsync,fillsync4";

static void wrong_value(const run_ctx *x, const char *what, long k, size_t vlen)
{
    bench_die("%s on %s: key %016ld: wrong value (%zu bytes; expected the %ld bytes written by "
              "workload #%u)",
              what, x->e->name, k, vlen, x->cfg->value_size, x->tag[k]);
}

/* ---- writes ---------------------------------------------------------------------------------- */

typedef struct {
    run_ctx *x;
    long count; /* operations of this thread */
    bool random, sync;
    int batch;  /* > 1: batch writes of this many operations */
    int thread, nthreads;
    uint64_t seed;
    uint32_t tag;
} writer;

static void *writer_main(void *arg)
{
    writer *w = arg;
    run_ctx *x = w->x;
    const engine *e = x->e;
    long vs = x->cfg->value_size, num = x->cfg->num;
    char key[KEY_SIZE + 2], *val = xmalloc((size_t)vs);
    void *batch = w->batch > 1 ? e->batch_create() : NULL;
    uint64_t rng = w->seed;
    long i = 0;
    while (i < w->count) {
        long m = batch ? w->batch : 1;
        for (long j = 0; j < m && i < w->count; j++, i++) {
            long k = w->random ? pick_key(&rng, num, w->thread, w->nthreads) : i;
            format_key(key, k);
            make_value(val, vs, k, w->tag);
            if (batch)
                e->batch_put(batch, key, KEY_SIZE, val, (size_t)vs);
            else
                e->put(x->db, w->sync, key, KEY_SIZE, val, (size_t)vs);
            x->tag[k] = w->tag; /* threads write disjoint keys */
        }
        if (batch) {
            e->batch_write(x->db, batch);
            e->batch_clear(batch);
        }
    }
    if (batch)
        e->batch_destroy(batch);
    free(val);
    return NULL;
}

static void fill(run_ctx *x, result *r, uint64_t seed, uint32_t tag, bool random, bool sync,
                 int batch, int nthreads, long count_per_thread)
{
    writer w[SYNC_THREADS];
    pthread_t th[SYNC_THREADS];
    for (int t = 0; t < nthreads; t++) {
        w[t] = (writer){x, count_per_thread, random, sync, batch, t, nthreads, seed + (uint64_t)t,
                        tag};
        if (nthreads > 1 && pthread_create(&th[t], NULL, writer_main, &w[t]) != 0)
            bench_die("pthread_create: %s", strerror(errno));
    }
    if (nthreads == 1)
        writer_main(&w[0]);
    for (int t = 0; nthreads > 1 && t < nthreads; t++)
        pthread_join(th[t], NULL);
    r->ops = count_per_thread * nthreads;
    r->user_bytes = (double)r->ops * (double)(KEY_SIZE + x->cfg->value_size);
    r->mbps = true;
}

static void run_fillseq(run_ctx *x, result *r, uint64_t seed, uint32_t tag)
{
    fill(x, r, seed, tag, false, false, 1, 1, x->cfg->num);
}

static void run_fillrandom(run_ctx *x, result *r, uint64_t seed, uint32_t tag)
{
    fill(x, r, seed, tag, true, false, 1, 1, x->cfg->num);
}

static void run_fillbatch(run_ctx *x, result *r, uint64_t seed, uint32_t tag)
{
    fill(x, r, seed, tag, false, false, BATCH_SIZE, 1, x->cfg->num);
}

static void run_fillsync(run_ctx *x, result *r, uint64_t seed, uint32_t tag)
{
    fill(x, r, seed, tag, true, true, 1, 1, x->cfg->sync_num);
}

static void run_fillsync4(run_ctx *x, result *r, uint64_t seed, uint32_t tag)
{
    fill(x, r, seed, tag, true, true, 1, SYNC_THREADS, x->cfg->sync_num);
}

static void run_deleterandom(run_ctx *x, result *r, uint64_t seed, uint32_t tag)
{
    char key[KEY_SIZE + 2];
    for (long i = 0; i < x->cfg->num; i++) {
        long k = pick_key(&seed, x->cfg->num, 0, 1);
        format_key(key, k);
        x->e->del(x->db, key, KEY_SIZE);
        x->tag[k] = 0;
    }
    r->ops = x->cfg->num;
}

/* ---- point reads ----------------------------------------------------------------------------- */

static void read_random(run_ctx *x, result *r, uint64_t seed, bool missing)
{
    const char *what = missing ? "readmissing" : "readrandom";
    const engine *e = x->e;
    char key[KEY_SIZE + 2];
    long found = 0;
    for (long i = 0; i < x->cfg->reads; i++) {
        long k = pick_key(&seed, x->cfg->num, 0, 1);
        size_t vlen = 0, klen = KEY_SIZE;
        const char *val;
        void *hold;
        format_key(key, k);
        if (missing)
            key[klen++] = '.'; /* every written key has exactly KEY_SIZE bytes */
        bool hit = e->get(x->db, key, klen, &val, &vlen, &hold);
        if (hit && (missing || x->tag[k] == 0))
            bench_die("%s on %s: key %.*s is absent but get found it", what, e->name, (int)klen,
                      key);
        if (!hit && !missing && x->tag[k] != 0)
            bench_die("%s on %s: key %016ld was written but get says not found", what, e->name,
                      k);
        if (hit) {
            if (!value_matches(val, vlen, x->cfg->value_size, k, x->tag[k]))
                wrong_value(x, what, k, vlen);
            e->release(hold);
            found++;
        }
    }
    r->ops = x->cfg->reads;
    snprintf(r->note, sizeof r->note, "%ld of %ld found", found, r->ops);
}

static void run_readrandom(run_ctx *x, result *r, uint64_t seed, uint32_t tag)
{
    read_random(x, r, seed, false);
}

static void run_readmissing(run_ctx *x, result *r, uint64_t seed, uint32_t tag)
{
    read_random(x, r, seed, true);
}

/* ---- iterators ------------------------------------------------------------------------------- */

/* The first live key index >= k, or num. */
static long next_live(const run_ctx *x, long k)
{
    while (k < x->cfg->num && x->tag[k] == 0)
        k++;
    return k;
}

/* The iterator must be at key index `expect` (or invalid when expect == num), with its value. */
static void check_position(run_ctx *x, void *it, long expect, const char *what)
{
    const engine *e = x->e;
    if (expect >= x->cfg->num) {
        if (e->iter_valid(it))
            bench_die("%s on %s: iterator valid past the last key", what, e->name);
        return;
    }
    if (!e->iter_valid(it)) {
        e->iter_check(it, what);
        bench_die("%s on %s: iterator ended before key %016ld", what, e->name, expect);
    }
    size_t klen, vlen;
    const char *k = e->iter_key(it, &klen);
    long idx = parse_key(k, klen, x->cfg->num);
    if (idx != expect)
        bench_die("%s on %s: iterator at key %.*s, expected %016ld", what, e->name, (int)klen, k,
                  expect);
    const char *v = e->iter_value(it, &vlen);
    if (!value_matches(v, vlen, x->cfg->value_size, idx, x->tag[idx]))
        wrong_value(x, what, idx, vlen);
}

static void run_readseq(run_ctx *x, result *r, uint64_t seed, uint32_t tag)
{
    const engine *e = x->e;
    void *it = e->iter_create(x->db);
    long n = 0, expect = next_live(x, 0);
    for (e->iter_seek_first(it); e->iter_valid(it); e->iter_next(it), n++) {
        check_position(x, it, expect, "readseq");
        expect = next_live(x, expect + 1);
    }
    e->iter_check(it, "readseq");
    if (expect < x->cfg->num)
        bench_die("readseq on %s: iterator ended early, key %016ld was never returned", e->name,
                  expect);
    e->iter_destroy(it);
    r->ops = n;
    r->user_bytes = (double)n * (double)(KEY_SIZE + x->cfg->value_size);
    r->mbps = true;
    snprintf(r->note, sizeof r->note, "%ld entries, all keys of the db", n);
}

static void run_seekrandom(run_ctx *x, result *r, uint64_t seed, uint32_t tag)
{
    const engine *e = x->e;
    void *it = e->iter_create(x->db); /* one iterator for every seek, as RocksDB's db_bench */
    char key[KEY_SIZE + 2];
    long nexts = 0;
    for (long i = 0; i < x->cfg->reads; i++) {
        long k = pick_key(&seed, x->cfg->num, 0, 1), expect = next_live(x, k);
        format_key(key, k);
        e->iter_seek(it, key, KEY_SIZE);
        check_position(x, it, expect, "seekrandom");
        for (int j = 0; j < SEEK_NEXTS && e->iter_valid(it); j++, nexts++) {
            e->iter_next(it);
            expect = next_live(x, expect + 1);
            check_position(x, it, expect, "seekrandom (next)");
        }
    }
    e->iter_check(it, "seekrandom");
    e->iter_destroy(it);
    r->ops = x->cfg->reads;
    snprintf(r->note, sizeof r->note, "ops = seeks, each followed by up to %d nexts (%ld nexts)",
             SEEK_NEXTS, nexts);
}

/* ---- the table ------------------------------------------------------------------------------- */

static const workload WORKLOADS[] = {
    {"fillseq", true, 1, 1, run_fillseq},          {"fillrandom", true, 1, 1, run_fillrandom},
    {"overwrite", false, 1, 1, run_fillrandom},    {"fillbatch", true, 1, 1, run_fillbatch},
    {"fillsync", true, 1, 1, run_fillsync},        {"fillsync4", true, 1, 1, run_fillsync4},
    {"readrandom", false, 0, 2, run_readrandom},   {"readmissing", false, 0, 2, run_readmissing},
    {"readseq", false, 0, 0, run_readseq},         {"seekrandom", false, 0, 0, run_seekrandom},
    {"deleterandom", false, 2, 1, run_deleterandom},
};

const workload *find_workload(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof WORKLOADS / sizeof WORKLOADS[0]; i++)
        if (strlen(WORKLOADS[i].name) == len && strncmp(WORKLOADS[i].name, name, len) == 0)
            return &WORKLOADS[i];
    return NULL;
}
