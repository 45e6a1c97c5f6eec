/*
 * bench_kiwi.c: the kiwi adapter of kiwi_bench, through the public API (kiwi.h) only, like any C
 * user. It owns the mapping of the bench's equal settings onto kiwi's options, the engine event
 * counts and the counters from the "stats" property that explain a workload.
 */
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "kiwi.h"

#define MAX_EVENTS 32

typedef struct {
    kiwi_db *db;
    kiwi_options *opts;
    pthread_mutex_t ev_mu; /* guards the event table (events come from engine threads) */
    char ev_name[MAX_EVENTS][48];
    long ev_count[MAX_EVENTS];
    int nev;
} kdb;

typedef struct {
    char *stats; /* the "stats" property JSON before the workload */
    long ev[MAX_EVENTS];
} ksnap;

static void check(kiwi_status st, char *err, const char *what, const char *k, size_t klen)
{
    if (st != KIWI_OK)
        bench_die("kiwi: %s: key %.*s: %s", what, (int)klen, k, err ? err : kiwi_status_name(st));
}

static void on_event(void *ctx, const char *level, const char *event, const char *fields)
{
    kdb *d = ctx;
    if (strcmp(level, "error") == 0)
        fprintf(stderr, "kiwi_bench: kiwi error event %s %s\n", event, fields);
    size_t n = strlen(event);
    if (strcmp(level, "debug") == 0 || (n > 6 && strcmp(event + n - 6, "_start") == 0))
        return; /* a "_start" has its "_end" */
    pthread_mutex_lock(&d->ev_mu);
    int i = 0;
    while (i < d->nev && strcmp(d->ev_name[i], event) != 0)
        i++;
    if (i == d->nev && d->nev < MAX_EVENTS)
        snprintf(d->ev_name[d->nev++], sizeof d->ev_name[0], "%s", event);
    if (i < d->nev)
        d->ev_count[i]++;
    pthread_mutex_unlock(&d->ev_mu);
}

/* ---- settings ---------------------------------------------------------------------------------
 * The false-positive rate a bloom filter of b bits per key reaches with the best k:
 * p = exp(-b ln(2)^2); kiwi sizes its filters from p by the inverse (bloom.h), so it gets back b
 * bits per key (10 -> p = 0.00819, k = 7). */
static double bloom_fpr(int bits)
{
    return exp(-(double)bits * M_LN2 * M_LN2);
}

typedef struct {
    char name[40], value[40];
} kv_setting;

static void add_setting(kv_setting *out, int *n, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void add_setting(kv_setting *out, int *n, const char *name, const char *fmt, ...)
{
    va_list ap;
    snprintf(out[*n].name, sizeof out[*n].name, "%s", name);
    va_start(ap, fmt);
    vsnprintf(out[*n].value, sizeof out[*n].value, fmt, ap);
    va_end(ap);
    (*n)++;
}

/* The settings kiwi_bench gives kiwi (out holds at least 16). */
static int kiwi_settings_list(const config *c, kv_setting *out)
{
    int n = 0;
    add_setting(out, &n, "max_memtable_size_mb", "%g", c->write_buffer_mb);
    add_setting(out, &n, "max_memtable_entries", "%d", 1000000000); /* peers: size only */
    add_setting(out, &n, "block_size", "%ld", c->block_size);
    add_setting(out, &n, strcmp(c->mode, "dev") == 0 ? "bloom_fpr_dev" : "bloom_fpr_prod",
                "%.6g", bloom_fpr(c->bloom_bits));
    add_setting(out, &n, "block_cache_data_mb", "%g", c->cache_mb);
    add_setting(out, &n, "block_cache_index_mb", "%g", c->index_cache_mb);
    add_setting(out, &n, "block_cache_bloom_mb", "%g", c->bloom_cache_mb);
    add_setting(out, &n, "compression", "%s", "none");
    add_setting(out, &n, "sync_writes", "%s", "false");
    return n;
}

static void k_settings(const config *c, char *out, size_t cap)
{
    kv_setting s[16];
    int n = kiwi_settings_list(c, s);
    size_t used = (size_t)snprintf(out, cap, "mode `%s`", c->mode);
    for (int i = 0; i < n && used < cap; i++)
        used += (size_t)snprintf(out + used, cap - used, ", `%s=%s`", s[i].name, s[i].value);
    for (int i = 0; i < c->nsets && used < cap; i++)
        used += (size_t)snprintf(out + used, cap - used, ", `%s`", c->sets[i]);
}

static void k_version(char *out, size_t cap)
{
    snprintf(out, cap, "kiwi %s", KIWI_VERSION_STRING);
}

static void set_option(kiwi_options *o, const char *name, const char *value)
{
    char *err = NULL;
    if (kiwi_options_set(o, name, value, &err) != KIWI_OK)
        bench_die("kiwi: setting %s=%s: %s", name, value, err);
}

/* ---- life ------------------------------------------------------------------------------------ */

static void *k_open(const config *c, const char *dir)
{
    kdb *d = calloc(1, sizeof *d);
    kv_setting s[16];
    char *err = NULL;
    if (!d)
        bench_die("out of memory");
    pthread_mutex_init(&d->ev_mu, NULL);
    d->opts = kiwi_options_create(c->mode);
    if (!d->opts)
        bench_die("--mode=%s: unknown mode (dev or prod)", c->mode);
    int n = kiwi_settings_list(c, s);
    for (int i = 0; i < n; i++)
        set_option(d->opts, s[i].name, s[i].value);
    for (int i = 0; i < c->nsets; i++) {
        char name[128];
        const char *eq = strchr(c->sets[i], '=');
        snprintf(name, sizeof name, "%.*s", (int)(eq - c->sets[i]), c->sets[i]);
        set_option(d->opts, name, eq + 1);
    }
    kiwi_options_set_event_handler(d->opts, on_event, d);
    if (kiwi_open(dir, d->opts, &d->db, &err) != KIWI_OK)
        bench_die("kiwi_open %s: %s", dir, err);
    return d;
}

static void k_close(void *db)
{
    kdb *d = db;
    kiwi_status st = kiwi_close(d->db);
    if (st != KIWI_OK)
        bench_die("kiwi_close: %s (the first background error)", kiwi_status_name(st));
    kiwi_options_destroy(d->opts);
    pthread_mutex_destroy(&d->ev_mu);
    free(d);
}

/* ---- writes and reads ------------------------------------------------------------------------ */

static void k_put(void *db, bool sync, const char *k, size_t klen, const char *v, size_t vlen)
{
    kiwi_write_options wo = {.sync = sync};
    char *err = NULL;
    check(kiwi_put(((kdb *)db)->db, &wo, k, klen, v, vlen, &err), err, "kiwi_put", k, klen);
}

static void k_del(void *db, const char *k, size_t klen)
{
    kiwi_write_options wo = {.sync = false};
    char *err = NULL;
    check(kiwi_delete(((kdb *)db)->db, &wo, k, klen, &err), err, "kiwi_delete", k, klen);
}

static bool k_get(void *db, const char *k, size_t klen, const char **val, size_t *vlen,
                  void **hold)
{
    kiwi_read_options ro = {.snapshot = NULL, .fill_cache = true};
    char *v = NULL, *err = NULL;
    kiwi_status st = kiwi_get(((kdb *)db)->db, &ro, k, klen, &v, vlen, &err);
    if (st == KIWI_NOT_FOUND)
        return false;
    check(st, err, "kiwi_get", k, klen);
    *val = v;
    *hold = v;
    return true;
}

static void k_release(void *hold)
{
    kiwi_free(hold);
}

static void *k_batch_create(void)
{
    return kiwi_batch_create();
}

static void k_batch_put(void *b, const char *k, size_t klen, const char *v, size_t vlen)
{
    kiwi_batch_put(b, k, klen, v, vlen);
}

static void k_batch_write(void *db, void *b)
{
    kiwi_write_options wo = {.sync = false};
    char *err = NULL;
    check(kiwi_write(((kdb *)db)->db, &wo, b, &err), err, "kiwi_write", "(batch)", 7);
}

static void k_batch_clear(void *b)
{
    kiwi_batch_clear(b);
}

static void k_batch_destroy(void *b)
{
    kiwi_batch_destroy(b);
}

/* ---- iterators ------------------------------------------------------------------------------- */

static void *k_iter_create(void *db)
{
    kiwi_read_options ro = {.snapshot = NULL, .fill_cache = true};
    kiwi_iter *it = kiwi_iter_create(((kdb *)db)->db, &ro);
    if (!it)
        bench_die("kiwi_iter_create returned NULL");
    return it;
}

static void k_iter_seek(void *it, const char *k, size_t klen)
{
    kiwi_iter_seek(it, k, klen);
}

static void k_iter_seek_first(void *it)
{
    kiwi_iter_seek_to_first(it);
}

static void k_iter_next(void *it)
{
    kiwi_iter_next(it);
}

static bool k_iter_valid(void *it)
{
    return kiwi_iter_valid(it);
}

static const char *k_iter_key(void *it, size_t *len)
{
    return kiwi_iter_key(it, len);
}

static const char *k_iter_value(void *it, size_t *len)
{
    return kiwi_iter_value(it, len);
}

static void k_iter_check(void *it, const char *what)
{
    char *err = NULL;
    if (kiwi_iter_status(it, &err) != KIWI_OK)
        bench_die("%s on kiwi: iterator error: %s", what, err);
}

static void k_iter_destroy(void *it)
{
    kiwi_iter_destroy(it);
}

/* ---- maintenance ----------------------------------------------------------------------------- */

static void k_flush(void *db)
{
    char *err = NULL;
    if (kiwi_flush(((kdb *)db)->db, &err) != KIWI_OK)
        bench_die("kiwi_flush: %s", err);
}

static void k_compact_all(void *db)
{
    char *err = NULL;
    if (kiwi_compact_range(((kdb *)db)->db, NULL, 0, NULL, 0, &err) != KIWI_OK)
        bench_die("kiwi_compact_range: %s", err);
}

/* ---- what the engine says about a workload --------------------------------------------------- */

static void *k_snap(void *db)
{
    kdb *d = db;
    ksnap *s = xmalloc(sizeof *s);
    s->stats = kiwi_property(d->db, "stats");
    pthread_mutex_lock(&d->ev_mu);
    memcpy(s->ev, d->ev_count, sizeof s->ev);
    pthread_mutex_unlock(&d->ev_mu);
    return s;
}

/* A number from the "stats" JSON: the first "name": after the text `after`; -1 if absent. */
static long long stat_num(const char *json, const char *after, const char *name)
{
    char pat[96];
    const char *p = json ? strstr(json, after) : NULL;
    snprintf(pat, sizeof pat, "\"%s\":", name);
    p = p ? strstr(p, pat) : NULL;
    return p ? strtoll(p + strlen(pat), NULL, 10) : -1;
}

/* d[i] = the growth of counter names[i] from s0 to s1; false if one is missing. */
static bool stat_deltas(const char *s0, const char *s1, const char *const *names, int n,
                        long long *d)
{
    for (int i = 0; i < n; i++) {
        long long a = stat_num(s0, "{", names[i]), c = stat_num(s1, "{", names[i]);
        if (a < 0 || c < 0)
            return false;
        d[i] = c - a;
    }
    return true;
}

/* Group commit's gathering of synced groups (fillsync4), when the workload gathered at all. */
static void note_gathers(char *out, const char *s0, const char *s1)
{
    static const char *const names[] = {"gathers", "gather_handoffs", "gather_timeouts",
                                        "gather_micros"};
    long long d[4];
    if (stat_deltas(s0, s1, names, 4, d) && d[0] > 0)
        note_append(out, "gathers %lld (%lld handed over, %lld at the bound, %.0f us each)", d[0],
                    d[1], d[2], (double)d[3] / (double)d[0]);
}

/* How sync writers' waits ended (write_path.md, "Waiting by yielding"), when any did. */
static void note_sync_waits(char *out, const char *s0, const char *s1)
{
    static const char *const names[] = {"sync_waits_yielded", "sync_waits_blocked",
                                        "sync_yield_backoffs"};
    long long d[3];
    if (stat_deltas(s0, s1, names, 3, d) && d[0] + d[1] > 0)
        note_append(out, "sync waits %lld yielded, %lld blocked, %lld back-offs", d[0], d[1],
                    d[2]);
}

static void note_counters(char *out, const char *s0, const char *s1, int counters)
{
    static const char *const wnames[] = {"wal_syncs", "write_groups", "stalls", "compactions"};
    static const char *const rnames[] = {"sstable_reads", "bloom_negatives", "memtable_hits"};
    const char *const *names = counters == 1 ? wnames : rnames;
    int n = counters == 1 ? 4 : counters == 2 ? 3 : 0;
    for (int i = 0; i < n; i++) {
        long long a = stat_num(s0, "{", names[i]), c = stat_num(s1, "{", names[i]);
        if (a >= 0 && c >= 0)
            note_append(out, "%s %lld", names[i], c - a);
    }
    if (counters == 1) {
        note_gathers(out, s0, s1);
        note_sync_waits(out, s0, s1);
    }
    if (counters == 2) {
        long long ix = stat_num(s1, "\"memory\":", "block_cache_index");
        long long bl = stat_num(s1, "\"memory\":", "block_cache_bloom");
        long long un = stat_num(s1, "\"memory\":", "tables_uncharged");
        if (ix >= 0 && bl >= 0 && un >= 0)
            note_append(out, "index %.1f MiB + bloom %.1f MiB + tables %.1f MiB in memory",
                        (double)ix / 1048576.0, (double)bl / 1048576.0, (double)un / 1048576.0);
    }
}

static void note_levels(char *out, const char *s1)
{
    char shape[128] = "", after[32];
    for (int level = 0; level < 16; level++) {
        snprintf(after, sizeof after, "\"level\":%d,", level);
        long long files = stat_num(s1, after, "files");
        if (files < 0)
            break;
        size_t used = strlen(shape);
        snprintf(shape + used, sizeof shape - used, "%s%lld", level ? "/" : "", files);
    }
    if (shape[0])
        note_append(out, "files per level %s", shape);
}

static void k_describe(void *db, void *snap, int counters, char *out, size_t cap)
{
    kdb *d = db;
    ksnap *s0 = snap;
    char *s1 = kiwi_property(d->db, "stats");
    long ev1[MAX_EVENTS];
    note_counters(out, s0->stats, s1, counters);
    note_levels(out, s1);
    pthread_mutex_lock(&d->ev_mu);
    memcpy(ev1, d->ev_count, sizeof ev1);
    int nev = d->nev;
    pthread_mutex_unlock(&d->ev_mu);
    for (int i = 0; i < nev; i++)
        if (ev1[i] > s0->ev[i])
            note_append(out, "%s x%ld", d->ev_name[i], ev1[i] - s0->ev[i]);
    kiwi_free(s1);
    kiwi_free(s0->stats);
    free(s0);
}

const engine kiwi_engine = {
    "kiwi",         k_version,         k_settings,        k_open,         k_close,
    k_put,          k_del,             k_get,             k_release,      k_batch_create,
    k_batch_put,    k_batch_write,     k_batch_clear,     k_batch_destroy, k_iter_create,
    k_iter_seek,    k_iter_seek_first, k_iter_next,       k_iter_valid,   k_iter_key,
    k_iter_value,   k_iter_check,      k_iter_destroy,    k_flush,        k_compact_all,
    k_snap,         k_describe,
};
