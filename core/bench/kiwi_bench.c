/*
 * kiwi_bench.c: the db_bench-style benchmark of kiwi. It owns the workloads, their verification,
 * the measurement of throughput and amplification, and the generated docs/benchmarks.md. It uses
 * only the public API (kiwi.h), like any C user.
 *
 *   kiwi_bench [--benchmarks=a,b,c] [--num=N] [--reads=N] [--sync_num=N] [--value_size=N]
 *              [--db=DIR] [--mode=prod|dev] [--set=name=value]... [--rounds=R]
 *              [--markdown=FILE|none] [--keep_db]
 *
 * Honesty rules: every operation is performed and checked for its status; every read checks that
 * the key is found exactly when it must be, and every VERIFY_EVERY-th read compares the value in
 * full. To check without storing values, the bench keeps one tag per key index (the number of the
 * workload that last wrote it, 0 = absent) and a value is a pure function of (key index, tag).
 * Any mismatch aborts the run with a message naming the key. Time is CLOCK_MONOTONIC only.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "kiwi.h"

#define KEY_SIZE 16        /* "%016ld": zero-padded decimal, so key order is numeric order */
#define VERIFY_EVERY 8     /* a read value is compared byte for byte on every 8th read */
#define SEEK_NEXTS 10      /* seekrandom: one seek, then up to 10 nexts */
#define BATCH_SIZE 1000    /* fillbatch: operations per kiwi_write */
#define SYNC_THREADS 4     /* fillsync4 */
#define MAX_ROWS 32
#define MAX_ROUNDS 99
#define MAX_SETS 32
#define MAX_EVENTS 32

static const char DEFAULT_BENCHMARKS[] = "fillseq,fillrandom,overwrite,readrandom,readmissing,"
                                         "readseq,seekrandom,deleterandom,fillbatch,fillsync,"
                                         "fillsync4";

typedef struct {
    const char *benchmarks, *db, *mode, *markdown;
    long num, reads, sync_num, value_size;
    int rounds;
    bool keep_db;
    const char *sets[MAX_SETS]; /* "name=value" for kiwi_options_set */
    int nsets;
    char command[2048]; /* argv joined, for the report */
} config;

typedef struct {
    double secs;       /* the timed region: the operations only */
    long ops;          /* operations performed (entries for fillbatch and readseq) */
    double user_bytes; /* key + value bytes the operations moved (MiB/s numerator) */
    double written;    /* bytes the process wrote to storage in the workload's window */
    double wamp, samp; /* write and space amplification; < 0 when not meaningful */
    bool mbps;         /* MiB/s is meaningful for this workload */
    char note[512];
} result;

typedef struct {
    config cfg;
    kiwi_options *opts;
    kiwi_db *db;
    uint32_t *tag;     /* per key index: the workload that last wrote it; 0 = absent */
    uint32_t next_tag; /* the tag of the next writing workload */
    long live;         /* keys whose tag is not 0 */
    bool used_wchar;   /* some window fell back from write_bytes to wchar */
    const char *fs;    /* the file system type of the db directory */
    char load[2][64];  /* /proc/loadavg at the start and the end: other work on the machine */
    pthread_mutex_t ev_mu; /* guards the event table (events come from engine threads) */
    char ev_name[MAX_EVENTS][48];
    long ev_count[MAX_EVENTS];
    int nev;
} bench;

typedef struct {
    const char *name;
    bool fresh;  /* starts from an empty db, as db_bench's fresh_db workloads do */
    int writes;  /* 0 reads, 1 fills (write amplification is reported), 2 deletes */
    int counters; /* engine counters in the notes: 0 none, 1 write path, 2 point reads */
    void (*run)(bench *, result *, uint64_t seed);
} workload;

/* ---- small helpers --------------------------------------------------------------------------- */

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("kiwi_bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        die("out of memory (%zu bytes)", n);
    return p;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* splitmix64: the bench's only random source; deterministic per seed. */
static uint64_t mix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* "%016ld" of k (0 <= k < 10^16) into out, which holds KEY_SIZE + 2 bytes. */
static void format_key(char *out, long k)
{
    for (int i = KEY_SIZE - 1; i >= 0; i--, k /= 10)
        out[i] = (char)('0' + k % 10);
    out[KEY_SIZE] = 0;
}

/* The value of key k written by workload `tag`: printable pseudo-random bytes whose second half
 * repeats the first, so it compresses to about 50% as db_bench's values do. */
static void make_value(char *out, long size, long k, uint32_t tag)
{
    uint64_t s = ((uint64_t)k << 20) ^ tag, r = 0;
    long half = (size + 1) / 2;
    for (long i = 0; i < half; i++) {
        if (i % 8 == 0)
            r = mix64(&s);
        out[i] = (char)(' ' + (r >> (8 * (i % 8)) & 0xff) % 95);
    }
    for (long i = half; i < size; i++)
        out[i] = out[i - half];
}

/* A random key index in [0, n) congruent to t mod nt (threads write disjoint keys). */
static long pick_key(uint64_t *rng, long n, int t, int nt)
{
    long k = (long)(mix64(rng) % (uint64_t)n);
    k = k - k % nt + t;
    return k >= n ? k - nt : k;
}

static void check(kiwi_status st, char *err, const char *what, long k)
{
    if (st != KIWI_OK)
        die("%s: key %016ld: %s", what, k, err ? err : kiwi_status_name(st));
}

/* The full comparison, done on the sampled reads. */
static void verify_value(const bench *b, const char *what, long k, const char *v, size_t vlen,
                         bool full)
{
    if ((long)vlen != b->cfg.value_size)
        die("%s: key %016ld: value has %zu bytes, expected %ld", what, k, vlen,
            b->cfg.value_size);
    if (!full)
        return;
    char expect[b->cfg.value_size];
    make_value(expect, b->cfg.value_size, k, b->tag[k]);
    if (memcmp(expect, v, vlen) != 0)
        die("%s: key %016ld: wrong value (expected the one written by workload #%u)", what, k,
            b->tag[k]);
}

/* ---- the file system: /proc/self/io, directory size and removal ------------------------------ */

typedef struct {
    uint64_t write_bytes, wchar;
} io_counters;

static io_counters io_now(void)
{
    io_counters c = {0, 0};
    FILE *f = fopen("/proc/self/io", "r");
    char line[128];
    while (f && fgets(line, sizeof line, f)) {
        sscanf(line, "write_bytes: %" SCNu64, &c.write_bytes);
        sscanf(line, "wchar: %" SCNu64, &c.wchar);
    }
    if (f)
        fclose(f);
    return c;
}

/* Sums the sizes of regular files under path (if size) and removes everything under it (if rm). */
static void walk(const char *path, uint64_t *size, bool rm)
{
    DIR *d = opendir(path);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char p[4096];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", path, e->d_name);
        if (lstat(p, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode))
            walk(p, size, rm);
        else if (size && S_ISREG(st.st_mode))
            *size += (uint64_t)st.st_size;
        if (rm && remove(p) != 0)
            die("remove %s: %s", p, strerror(errno));
    }
    closedir(d);
}

static uint64_t dir_size(const char *path)
{
    uint64_t n = 0;
    walk(path, &n, false);
    return n;
}

/* Refuse to wipe a non-empty directory that does not look like a kiwi db. */
static void check_db_dir(const char *path)
{
    char p[4096];
    DIR *d = opendir(path);
    if (!d)
        return;
    int entries = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        entries += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    snprintf(p, sizeof p, "%s/CURRENT", path);
    bool current = access(p, F_OK) == 0;
    snprintf(p, sizeof p, "%s/LOCK", path);
    if (entries > 0 && !current && access(p, F_OK) != 0)
        die("--db=%s is not empty and holds no kiwi db (no CURRENT or LOCK); refusing to wipe it",
            path);
}

/* ---- events ---------------------------------------------------------------------------------- */

static void on_event(void *ctx, const char *level, const char *event, const char *fields)
{
    bench *b = ctx;
    if (strcmp(level, "error") == 0)
        fprintf(stderr, "kiwi_bench: engine error event %s %s\n", event, fields);
    size_t n = strlen(event);
    if (strcmp(level, "debug") == 0 || (n > 6 && strcmp(event + n - 6, "_start") == 0))
        return; /* a "_start" has its "_end" */
    pthread_mutex_lock(&b->ev_mu);
    int i = 0;
    while (i < b->nev && strcmp(b->ev_name[i], event) != 0)
        i++;
    if (i == b->nev && b->nev < MAX_EVENTS)
        snprintf(b->ev_name[b->nev++], sizeof b->ev_name[0], "%s", event);
    if (i < b->nev)
        b->ev_count[i]++;
    pthread_mutex_unlock(&b->ev_mu);
}

static void events_snapshot(bench *b, long *counts)
{
    pthread_mutex_lock(&b->ev_mu);
    memcpy(counts, b->ev_count, sizeof b->ev_count);
    pthread_mutex_unlock(&b->ev_mu);
}

/* A counter from the "stats" property JSON, or -1 if absent (after is the text before it). */
static long long stat_num(const char *json, const char *after, const char *name)
{
    char pat[96];
    const char *p = json ? strstr(json, after) : NULL;
    snprintf(pat, sizeof pat, "\"%s\":", name);
    p = p ? strstr(p, pat) : NULL;
    return p ? strtoll(p + strlen(pat), NULL, 10) : -1;
}

/* Appends the engine counters that explain a workload: WAL syncs and write groups for writes,
 * SSTable block reads and bloom negatives for reads, and the shape of the tree afterwards. */
static void note_stats(result *r, const char *s0, const char *s1, int counters)
{
    static const char *const wnames[] = {"wal_syncs", "write_groups", "stalls"};
    static const char *const rnames[] = {"sstable_reads", "bloom_negatives", "memtable_hits"};
    const char *const *names = counters == 1 ? wnames : rnames;
    for (int i = 0; i < 3 && counters; i++) {
        long long a = stat_num(s0, "{", names[i]), c = stat_num(s1, "{", names[i]);
        size_t used = strlen(r->note);
        if (a >= 0 && c >= 0)
            snprintf(r->note + used, sizeof r->note - used, "%s%s %lld", used ? "; " : "",
                     names[i], c - a);
    }
    long long l0 = stat_num(s1, "\"level\":0,", "files"), n = stat_num(s1, "{", "sstables");
    size_t used = strlen(r->note);
    if (l0 >= 0 && n >= 0)
        snprintf(r->note + used, sizeof r->note - used, "%sSSTables after: %lld (%lld in L0)",
                 used ? "; " : "", n, l0);
}

/* ---- the db's life --------------------------------------------------------------------------- */

static const char *fs_name(long type)
{
    switch (type) {
    case 0xEF53: return "ext4";
    case 0x58465342: return "xfs";
    case 0x9123683E: return "btrfs";
    case 0x01021994: return "tmpfs (nothing reaches a disk)";
    case 0x794C7630: return "overlayfs";
    default: return "other";
    }
}

static void close_db(bench *b)
{
    if (!b->db)
        return;
    kiwi_status st = kiwi_close(b->db);
    b->db = NULL;
    if (st != KIWI_OK)
        die("kiwi_close: %s (the first background error)", kiwi_status_name(st));
}

static void open_fresh_db(bench *b)
{
    char *err = NULL;
    close_db(b);
    walk(b->cfg.db, NULL, true);
    memset(b->tag, 0, (size_t)b->cfg.num * sizeof *b->tag);
    b->live = 0;
    if (kiwi_open(b->cfg.db, b->opts, &b->db, &err) != KIWI_OK)
        die("kiwi_open %s: %s", b->cfg.db, err);
    struct statfs sf;
    b->fs = statfs(b->cfg.db, &sf) == 0 ? fs_name((long)sf.f_type) : "?";
}

/* ---- write workloads ------------------------------------------------------------------------- */

typedef struct {
    bench *b;
    long count;     /* operations of this thread */
    bool random, sync;
    int batch;      /* > 1: kiwi_write batches of this many operations */
    int thread, nthreads;
    uint64_t seed;
    uint32_t tag;
} writer;

static void *writer_main(void *arg)
{
    writer *w = arg;
    bench *b = w->b;
    long vs = b->cfg.value_size;
    char key[KEY_SIZE + 2], *val = xmalloc((size_t)vs), *err = NULL;
    kiwi_write_options wo = {.sync = w->sync};
    kiwi_batch *batch = w->batch > 1 ? kiwi_batch_create() : NULL;
    uint64_t rng = w->seed;
    long i = 0;
    while (i < w->count) {
        long m = batch ? w->batch : 1, k = 0;
        for (long j = 0; j < m && i < w->count; j++, i++) {
            k = w->random ? pick_key(&rng, b->cfg.num, w->thread, w->nthreads) : i;
            format_key(key, k);
            make_value(val, vs, k, w->tag);
            if (batch)
                kiwi_batch_put(batch, key, KEY_SIZE, val, (size_t)vs);
            else
                check(kiwi_put(b->db, &wo, key, KEY_SIZE, val, (size_t)vs, &err), err, "kiwi_put",
                      k);
            b->tag[k] = w->tag;
        }
        if (batch) {
            check(kiwi_write(b->db, &wo, batch, &err), err, "kiwi_write (batch ending at)", k);
            kiwi_batch_clear(batch);
        }
    }
    if (batch)
        kiwi_batch_destroy(batch);
    free(val);
    kiwi_free(err);
    return NULL;
}

static void fill(bench *b, result *r, uint64_t seed, bool random, bool sync, int batch,
                 int nthreads, long count_per_thread)
{
    writer w[SYNC_THREADS];
    pthread_t th[SYNC_THREADS];
    uint32_t tag = b->next_tag++;
    for (int t = 0; t < nthreads; t++) {
        w[t] = (writer){b, count_per_thread, random, sync, batch, t, nthreads, seed + (uint64_t)t,
                        tag};
        if (nthreads > 1 && pthread_create(&th[t], NULL, writer_main, &w[t]) != 0)
            die("pthread_create: %s", strerror(errno));
    }
    if (nthreads == 1)
        writer_main(&w[0]);
    for (int t = 0; nthreads > 1 && t < nthreads; t++)
        pthread_join(th[t], NULL);
    r->ops = count_per_thread * nthreads;
    r->user_bytes = (double)r->ops * (double)(KEY_SIZE + b->cfg.value_size);
    r->mbps = true;
}

static void run_fillseq(bench *b, result *r, uint64_t seed)
{
    fill(b, r, seed, false, false, 1, 1, b->cfg.num);
}

static void run_fillrandom(bench *b, result *r, uint64_t seed)
{
    fill(b, r, seed, true, false, 1, 1, b->cfg.num);
}

static void run_fillbatch(bench *b, result *r, uint64_t seed)
{
    fill(b, r, seed, false, false, BATCH_SIZE, 1, b->cfg.num);
}

static void run_fillsync(bench *b, result *r, uint64_t seed)
{
    fill(b, r, seed, true, true, 1, 1, b->cfg.sync_num);
}

static void run_fillsync4(bench *b, result *r, uint64_t seed)
{
    fill(b, r, seed, true, true, 1, SYNC_THREADS, b->cfg.sync_num);
}

static void run_deleterandom(bench *b, result *r, uint64_t seed)
{
    char key[KEY_SIZE + 2], *err = NULL;
    kiwi_write_options wo = {.sync = false};
    for (long i = 0; i < b->cfg.num; i++) {
        long k = pick_key(&seed, b->cfg.num, 0, 1);
        format_key(key, k);
        check(kiwi_delete(b->db, &wo, key, KEY_SIZE, &err), err, "kiwi_delete", k);
        b->tag[k] = 0;
    }
    r->ops = b->cfg.num;
}

/* ---- read workloads -------------------------------------------------------------------------- */

static void read_random(bench *b, result *r, uint64_t seed, bool missing)
{
    const char *what = missing ? "readmissing" : "readrandom";
    kiwi_read_options ro = {.snapshot = NULL, .fill_cache = true};
    char key[KEY_SIZE + 2], *val = NULL, *err = NULL;
    long found = 0;
    for (long i = 0; i < b->cfg.reads; i++) {
        long k = pick_key(&seed, b->cfg.num, 0, 1);
        size_t vlen = 0, klen = KEY_SIZE;
        format_key(key, k);
        if (missing)
            key[klen++] = '.'; /* every written key has exactly KEY_SIZE bytes */
        kiwi_status st = kiwi_get(b->db, &ro, key, klen, &val, &vlen, &err);
        if (st == KIWI_OK && (missing || b->tag[k] == 0))
            die("%s: key %.*s is absent but kiwi_get found it", what, (int)klen, key);
        if (st == KIWI_NOT_FOUND && !missing && b->tag[k] != 0)
            die("%s: key %016ld was written but kiwi_get says not found", what, k);
        if (st != KIWI_OK && st != KIWI_NOT_FOUND)
            check(st, err, what, k);
        if (st == KIWI_OK) {
            verify_value(b, what, k, val, vlen, i % VERIFY_EVERY == 0);
            kiwi_free(val);
            found++;
        }
    }
    kiwi_free(err);
    r->ops = b->cfg.reads;
    snprintf(r->note, sizeof r->note, "%ld of %ld found", found, r->ops);
}

static void run_readrandom(bench *b, result *r, uint64_t seed)
{
    read_random(b, r, seed, false);
}

static void run_readmissing(bench *b, result *r, uint64_t seed)
{
    read_random(b, r, seed, true);
}

/* The key index of an iterator position; aborts on a key the bench never wrote. */
static long iter_index(const bench *b, kiwi_iter *it, const char *what)
{
    size_t klen;
    const char *k = kiwi_iter_key(it, &klen);
    char buf[KEY_SIZE + 1], *end;
    if (klen != KEY_SIZE)
        die("%s: iterator returned a %zu-byte key", what, klen);
    memcpy(buf, k, KEY_SIZE);
    buf[KEY_SIZE] = 0;
    long idx = strtol(buf, &end, 10);
    if (*end || idx < 0 || idx >= b->cfg.num)
        die("%s: iterator returned key %s, never written", what, buf);
    return idx;
}

/* The first live key index >= k, or num. */
static long next_live(const bench *b, long k)
{
    while (k < b->cfg.num && b->tag[k] == 0)
        k++;
    return k;
}

static void check_position(bench *b, kiwi_iter *it, long expect, const char *what, bool full)
{
    char *err = NULL;
    if (expect >= b->cfg.num) {
        if (kiwi_iter_valid(it))
            die("%s: iterator valid past the last key", what);
        return;
    }
    if (!kiwi_iter_valid(it)) {
        kiwi_status st = kiwi_iter_status(it, &err);
        die("%s: iterator ended before key %016ld (%s)", what, expect,
            st != KIWI_OK ? err : "status ok");
    }
    long idx = iter_index(b, it, what);
    if (idx != expect)
        die("%s: iterator at key %016ld, expected %016ld", what, idx, expect);
    size_t vlen;
    const char *v = kiwi_iter_value(it, &vlen);
    verify_value(b, what, idx, v, vlen, full);
}

static void run_readseq(bench *b, result *r, uint64_t seed)
{
    kiwi_read_options ro = {.snapshot = NULL, .fill_cache = true};
    kiwi_iter *it = kiwi_iter_create(b->db, &ro);
    char *err = NULL;
    long n = 0, expect = next_live(b, 0);
    double bytes = 0;
    if (!it)
        die("readseq: kiwi_iter_create returned NULL");
    for (kiwi_iter_seek_to_first(it); kiwi_iter_valid(it); kiwi_iter_next(it), n++) {
        check_position(b, it, expect, "readseq", n % VERIFY_EVERY == 0);
        size_t klen, vlen;
        kiwi_iter_key(it, &klen);
        kiwi_iter_value(it, &vlen);
        bytes += (double)(klen + vlen);
        expect = next_live(b, expect + 1);
    }
    check(kiwi_iter_status(it, &err), err, "readseq: iterator status after", expect);
    if (expect < b->cfg.num)
        die("readseq: iterator ended early, key %016ld was never returned", expect);
    kiwi_iter_destroy(it);
    r->ops = n;
    r->user_bytes = bytes;
    r->mbps = true;
    snprintf(r->note, sizeof r->note, "%ld entries, all keys of the db", n);
}

static void run_seekrandom(bench *b, result *r, uint64_t seed)
{
    kiwi_read_options ro = {.snapshot = NULL, .fill_cache = true};
    kiwi_iter *it = kiwi_iter_create(b->db, &ro);
    char key[KEY_SIZE + 2];
    long nexts = 0;
    if (!it)
        die("seekrandom: kiwi_iter_create returned NULL");
    for (long i = 0; i < b->cfg.reads; i++) {
        long k = pick_key(&seed, b->cfg.num, 0, 1), expect = next_live(b, k);
        format_key(key, k);
        kiwi_iter_seek(it, key, KEY_SIZE);
        bool full = i % VERIFY_EVERY == 0;
        check_position(b, it, expect, "seekrandom", full);
        for (int j = 0; j < SEEK_NEXTS && kiwi_iter_valid(it); j++, nexts++) {
            kiwi_iter_next(it);
            expect = next_live(b, expect + 1);
            check_position(b, it, expect, "seekrandom (next)", full);
        }
    }
    kiwi_iter_destroy(it);
    r->ops = b->cfg.reads;
    snprintf(r->note, sizeof r->note, "ops = seeks, each followed by up to %d nexts (%ld nexts)",
             SEEK_NEXTS, nexts);
}

static const workload WORKLOADS[] = {
    {"fillseq", true, 1, 1, run_fillseq},          {"fillrandom", true, 1, 1, run_fillrandom},
    {"overwrite", false, 1, 1, run_fillrandom},    {"fillbatch", true, 1, 1, run_fillbatch},
    {"fillsync", true, 1, 1, run_fillsync},        {"fillsync4", true, 1, 1, run_fillsync4},
    {"readrandom", false, 0, 2, run_readrandom},   {"readmissing", false, 0, 2, run_readmissing},
    {"readseq", false, 0, 0, run_readseq},         {"seekrandom", false, 0, 0, run_seekrandom},
    {"deleterandom", false, 2, 1, run_deleterandom},
};

static const workload *find_workload(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof WORKLOADS / sizeof WORKLOADS[0]; i++)
        if (strlen(WORKLOADS[i].name) == len && strncmp(WORKLOADS[i].name, name, len) == 0)
            return &WORKLOADS[i];
    return NULL;
}

/* ---- one measured workload ------------------------------------------------------------------- */

static void run_row(bench *b, const workload *w, uint64_t seed, result *r)
{
    long ev0[MAX_EVENTS], ev1[MAX_EVENTS];
    char *err = NULL;
    memset(r, 0, sizeof *r);
    r->wamp = r->samp = -1;
    if (w->fresh)
        open_fresh_db(b);
    events_snapshot(b, ev0);
    char *stats0 = kiwi_property(b->db, "stats");
    io_counters io0 = io_now();
    double t0 = now();
    w->run(b, r, seed);
    r->secs = now() - t0;
    /* Untimed: get the last memtable to disk, so the write window counts its bytes (see Method). */
    if (w->writes && kiwi_flush(b->db, &err) != KIWI_OK)
        die("%s: kiwi_flush: %s", w->name, err);
    io_counters io1 = io_now();
    r->written = (double)(io1.write_bytes - io0.write_bytes);
    if (r->written == 0 && io1.wchar > io0.wchar) { /* no block-layer accounting here */
        r->written = (double)(io1.wchar - io0.wchar);
        b->used_wchar = true;
        strncat(r->note, r->note[0] ? "; written = wchar" : "written = wchar",
                sizeof r->note - strlen(r->note) - 1);
    }
    b->live = 0;
    for (long k = 0; k < b->cfg.num; k++)
        b->live += b->tag[k] != 0;
    double live_bytes = (double)b->live * (double)(KEY_SIZE + b->cfg.value_size);
    if (w->writes == 1 && r->user_bytes > 0)
        r->wamp = r->written / r->user_bytes;
    if (live_bytes > 0)
        r->samp = (double)dir_size(b->cfg.db) / live_bytes;
    char *stats1 = kiwi_property(b->db, "stats");
    note_stats(r, stats0, stats1, w->counters);
    kiwi_free(stats0);
    kiwi_free(stats1);
    events_snapshot(b, ev1);
    for (int i = 0; i < b->nev && i < MAX_EVENTS; i++) {
        size_t used = strlen(r->note);
        if (ev1[i] > ev0[i] && used + 64 < sizeof r->note)
            snprintf(r->note + used, sizeof r->note - used, "%s%s x%ld", used ? "; " : "",
                     b->ev_name[i], ev1[i] - ev0[i]);
    }
    kiwi_free(err);
}

/* ---- report ---------------------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of v[0..n) (sorts v). */
static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof v[0], cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* One metric of one row over the rounds. */
typedef enum { M_OPS_S, M_MIB_S, M_WRITTEN, M_WAMP, M_SAMP } metric;

static double row_metric(const result *rs, int rounds, int rows, int row, metric m, double *lo,
                         double *hi)
{
    double v[MAX_ROUNDS];
    for (int i = 0; i < rounds; i++) {
        const result *x = &rs[i * rows + row];
        double secs = x->secs > 0 ? x->secs : 1e-9;
        v[i] = m == M_OPS_S     ? (double)x->ops / secs
               : m == M_MIB_S   ? x->user_bytes / secs / 1048576.0
               : m == M_WRITTEN ? x->written / 1048576.0
               : m == M_WAMP    ? x->wamp
                                : x->samp;
    }
    double med = median(v, rounds);
    if (lo)
        *lo = v[0], *hi = v[rounds - 1];
    return med;
}

static void print_table(FILE *f, const workload **list, int rows, int rounds, const result *rs)
{
    fprintf(f, "| workload | ops | ops/s | µs/op | MiB/s | written MiB | W-amp | S-amp | notes |\n"
               "|---|---:|---:|---:|---:|---:|---:|---:|---|\n");
    for (int row = 0; row < rows; row++) {
        const result *last = &rs[(rounds - 1) * rows + row];
        double lo, hi, ops_s = row_metric(rs, rounds, rows, row, M_OPS_S, &lo, &hi);
        double wa = row_metric(rs, rounds, rows, row, M_WAMP, NULL, NULL);
        double sa = row_metric(rs, rounds, rows, row, M_SAMP, NULL, NULL);
        char mb[32] = "-", was[32] = "-", sas[32] = "-";
        if (last->mbps)
            snprintf(mb, sizeof mb, "%.3g", row_metric(rs, rounds, rows, row, M_MIB_S, NULL, NULL));
        if (wa >= 0)
            snprintf(was, sizeof was, "%.2f", wa);
        if (sa >= 0)
            snprintf(sas, sizeof sas, "%.2f", sa);
        fprintf(f, "| %s | %ld | %.0f | %.3f | %s | %.1f | %s | %s | ", list[row]->name, last->ops,
                ops_s, ops_s > 0 ? 1e6 / ops_s : 0, mb,
                row_metric(rs, rounds, rows, row, M_WRITTEN, NULL, NULL), was, sas);
        if (rounds > 1)
            fprintf(f, "median of %d rounds, ops/s %.0f to %.0f; ", rounds, lo, hi);
        fprintf(f, "%s |\n", last->note);
    }
}

/* The first line of `cmd`'s output, or "?". */
static void first_line(const char *cmd, char *out, size_t cap)
{
    FILE *p = popen(cmd, "r");
    snprintf(out, cap, "?");
    if (p && fgets(out, (int)cap, p))
        out[strcspn(out, "\n")] = 0;
    if (p)
        pclose(p);
}

static void print_machine(FILE *f, const bench *b)
{
    char cpu[256], mem[256], date[64];
    struct utsname u;
    time_t t = time(NULL);
    first_line("grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'", cpu, sizeof cpu);
    first_line("grep -m1 MemTotal /proc/meminfo | awk '{printf \"%.1f GiB\", $2/1048576}'", mem,
               sizeof mem);
    strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime(&t));
    uname(&u);
    fprintf(f, "| | |\n|---|---|\n| CPU | %s, %ld online CPUs (nproc) |\n| Memory | %s |\n",
            cpu, sysconf(_SC_NPROCESSORS_ONLN), mem);
    fprintf(f, "| Kernel | %s %s %s |\n| Date | %s |\n", u.sysname, u.release, u.machine, date);
    fprintf(f, "| File system of `--db` | %s |\n", b->fs);
    fprintf(f, "| Load average (1, 5, 15 min) | at start %s; at end %s |\n", b->load[0],
            b->load[1]);
    char rev[64], dirty[256];
    first_line("git rev-parse --short HEAD 2>/dev/null", rev, sizeof rev);
    first_line("git status --porcelain -- core 2>/dev/null | wc -l", dirty, sizeof dirty);
    fprintf(f, "| kiwi | %s, git %s%s, mode `%s`", KIWI_VERSION_STRING, rev,
            strcmp(dirty, "0") == 0 ? "" : " plus uncommitted changes under core/", b->cfg.mode);
    for (int i = 0; i < b->cfg.nsets; i++)
        fprintf(f, ", `%s`", b->cfg.sets[i]);
    fprintf(f, " |\n| Compiler | gcc %s, -O2 |\n| num, reads, sync_num, value_size | %ld, %ld, "
               "%ld, %ld |\n| Command | `%s` |\n\n",
            __VERSION__, b->cfg.num, b->cfg.reads, b->cfg.sync_num, b->cfg.value_size,
            b->cfg.command);
}

#define MARKER "<!-- kiwi_bench output: everything below this line is generated -->"

typedef struct {
    char *data;
    size_t len;
} kw_text;

/* The existing file up to and including the MARKER line; empty if there is none. */
static kw_text read_head(const char *path)
{
    kw_text t = {NULL, 0};
    FILE *f = fopen(path, "r");
    char line[4096];
    size_t cap = 0;
    bool found = false;
    while (f && !found && fgets(line, sizeof line, f)) {
        size_t n = strlen(line);
        found = strncmp(line, MARKER, strlen(MARKER)) == 0;
        if (t.len + n + 1 > cap) {
            cap = 2 * (t.len + n + 1);
            char *p = realloc(t.data, cap);
            if (!p)
                die("out of memory");
            t.data = p;
        }
        memcpy(t.data + t.len, line, n);
        t.len += n;
    }
    if (f)
        fclose(f);
    if (!found)
        t.len = 0;
    return t;
}

static void write_markdown(const bench *b, const workload **list, int rows, const result *rs,
                           double total_mib, double total_secs)
{
    kw_text head = read_head(b->cfg.markdown);
    FILE *f = fopen(b->cfg.markdown, "w");
    if (!f)
        die("--markdown=%s: %s", b->cfg.markdown, strerror(errno));
    if (head.len > 0)
        fwrite(head.data, 1, head.len, f);
    else
        fputs("# Benchmarks\n\n" MARKER "\n", f);
    free(head.data);
    fprintf(f, "\n## Machine\n\n");
    print_machine(f, b);
    fputs("## Results\n\n", f);
    print_table(f, list, rows, b->cfg.rounds, rs);
    fprintf(f, "\nThe whole run took %.1f s and the process wrote %.1f MiB to storage%s, "
               "including what no workload window covers (closing and reopening the db).\n",
            total_secs, total_mib, b->used_wchar ? " (some windows counted wchar)" : "");
    if (fclose(f) != 0)
        die("--markdown=%s: %s", b->cfg.markdown, strerror(errno));
}

/* ---- command line ---------------------------------------------------------------------------- */

static long parse_long(const char *arg, const char *v, long min)
{
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || *end || end == v || x < min)
        die("%s: expected an integer >= %ld", arg, min);
    return x;
}

static void usage(void)
{
    fprintf(stderr, "usage: kiwi_bench [--benchmarks=a,b,c] [--num=N] [--reads=N] [--sync_num=N]\n"
                    "         [--value_size=N] [--db=DIR] [--mode=prod|dev] [--set=name=value]\n"
                    "         [--rounds=R] [--markdown=FILE|none] [--keep_db]\n"
                    "benchmarks: %s\n",
            DEFAULT_BENCHMARKS);
    exit(2);
}

static void parse_args(config *c, int argc, char **argv)
{
    struct stat st;
    *c = (config){.benchmarks = DEFAULT_BENCHMARKS, .db = "/tmp/kiwi_bench", .mode = "prod",
                  .num = 1000000, .reads = -1, .sync_num = 2000, .value_size = 100, .rounds = 1};
    c->markdown = stat("docs", &st) == 0 && S_ISDIR(st.st_mode) ? "docs/benchmarks.md" : NULL;
    for (int i = 0; i < argc; i++) {
        size_t used = strlen(c->command);
        snprintf(c->command + used, sizeof c->command - used, "%s%s", i ? " " : "", argv[i]);
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *eq = strchr(a, '='), *v = eq ? eq + 1 : "";
        size_t n = eq ? (size_t)(eq - a) : strlen(a);
#define IS(name) (n == strlen(name) && strncmp(a, name, n) == 0)
        if (IS("--benchmarks")) c->benchmarks = v;
        else if (IS("--num")) c->num = parse_long(a, v, 16);
        else if (IS("--reads")) c->reads = parse_long(a, v, 0);
        else if (IS("--sync_num")) c->sync_num = parse_long(a, v, 0);
        else if (IS("--value_size")) c->value_size = parse_long(a, v, 1);
        else if (IS("--rounds")) c->rounds = (int)parse_long(a, v, 1);
        else if (IS("--db") && *v) c->db = v;
        else if (IS("--mode")) c->mode = v;
        else if (IS("--markdown")) c->markdown = *v && strcmp(v, "none") != 0 ? v : NULL;
        else if (IS("--keep_db")) c->keep_db = true;
        else if (IS("--set") && strchr(v, '=') && c->nsets < MAX_SETS) c->sets[c->nsets++] = v;
        else usage();
#undef IS
    }
    if (c->reads < 0)
        c->reads = c->num;
    if (c->rounds > MAX_ROUNDS || c->value_size > 1 << 20 || c->num > 1000000000)
        die("--rounds is at most %d, --value_size at most 1 MiB, --num at most 10^9", MAX_ROUNDS);
}

static int parse_list(const char *s, const workload **list)
{
    int rows = 0;
    while (*s) {
        size_t n = strcspn(s, ",");
        if (n > 0) {
            const workload *w = find_workload(s, n);
            if (!w)
                die("unknown benchmark '%.*s' (known: %s)", (int)n, s, DEFAULT_BENCHMARKS);
            if (rows == MAX_ROWS)
                die("at most %d benchmarks per run", MAX_ROWS);
            list[rows++] = w;
        }
        s += n + (s[n] == ',');
    }
    if (rows == 0)
        die("--benchmarks is empty");
    if (!list[0]->fresh)
        die("the first benchmark must start a fresh db (fillseq, fillrandom, fillbatch, fillsync "
            "or fillsync4); '%s' works on the db a fill leaves", list[0]->name);
    return rows;
}

static void setup_options(bench *b)
{
    char *err = NULL;
    b->opts = kiwi_options_create(b->cfg.mode);
    if (!b->opts)
        die("--mode=%s: unknown mode (dev or prod)", b->cfg.mode);
    for (int i = 0; i < b->cfg.nsets; i++) {
        char name[128];
        const char *eq = strchr(b->cfg.sets[i], '=');
        snprintf(name, sizeof name, "%.*s", (int)(eq - b->cfg.sets[i]), b->cfg.sets[i]);
        if (kiwi_options_set(b->opts, name, eq + 1, &err) != KIWI_OK)
            die("--set=%s: %s", b->cfg.sets[i], err);
    }
    kiwi_options_set_event_handler(b->opts, on_event, b);
}

int main(int argc, char **argv)
{
    static bench b; /* large (event table); static only to keep it off the stack */
    const workload *list[MAX_ROWS];
    parse_args(&b.cfg, argc, argv);
    int rows = parse_list(b.cfg.benchmarks, list), rounds = b.cfg.rounds;
    check_db_dir(b.cfg.db);
    pthread_mutex_init(&b.ev_mu, NULL);
    setup_options(&b);
    b.tag = calloc((size_t)b.cfg.num, sizeof *b.tag);
    result *rs = calloc((size_t)(rounds * rows), sizeof *rs);
    if (!b.tag || !rs)
        die("out of memory");
    b.next_tag = 1;
    first_line("cut -d' ' -f1-3 /proc/loadavg", b.load[0], sizeof b.load[0]);
    io_counters io0 = io_now();
    double t0 = now();
    for (int round = 0; round < rounds; round++) {
        for (int row = 0; row < rows; row++) {
            result *r = &rs[round * rows + row];
            run_row(&b, list[row], 301 + 1000003ull * (uint64_t)round + 7919ull * (uint64_t)row, r);
            fprintf(stderr, "[round %d/%d] %-12s %9ld ops in %8.3f s: %10.0f ops/s  %s\n",
                    round + 1, rounds, list[row]->name, r->ops, r->secs,
                    r->secs > 0 ? (double)r->ops / r->secs : 0, r->note);
        }
    }
    close_db(&b);
    first_line("cut -d' ' -f1-3 /proc/loadavg", b.load[1], sizeof b.load[1]);
    double total_secs = now() - t0;
    double total_mib = (double)(io_now().write_bytes - io0.write_bytes) / 1048576.0;
    if (!b.cfg.keep_db) {
        walk(b.cfg.db, NULL, true);
        rmdir(b.cfg.db);
    }
    printf("kiwi %s, mode %s, num %ld, value_size %ld, %d round(s)\n\n", KIWI_VERSION_STRING,
           b.cfg.mode, b.cfg.num, b.cfg.value_size, rounds);
    print_table(stdout, list, rows, rounds, rs);
    printf("\nwhole run: %.1f s, %.1f MiB written by the process\n", total_secs, total_mib);
    if (b.cfg.markdown) {
        write_markdown(&b, list, rows, rs, total_mib, total_secs);
        fprintf(stderr, "wrote %s\n", b.cfg.markdown);
    }
    kiwi_options_destroy(b.opts);
    free(b.tag);
    free(rs);
    return 0;
}
