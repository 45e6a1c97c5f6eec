/*
 * bench.h: the shared types of kiwi_bench, the side-by-side db_bench-style benchmark of kiwi,
 * LevelDB and RocksDB (docs/benchmarks.md describes the method).
 *
 * The program is split along these seams:
 *   bench_main.c       command line, the round x group x engine loop, one measured workload
 *   bench_util.c       errors, clocks, keys and values, /proc/self/io, directory size
 *   bench_workloads.c  the workloads and their verification, written against `engine` below
 *   bench_kiwi.c       the engine adapters: kiwi through kiwi.h only, the peers through their C
 *   bench_leveldb.c    APIs (compiled in only with -DKIWI_BENCH_LEVELDB / -DKIWI_BENCH_ROCKSDB,
 *   bench_rocksdb.c    which the Makefile passes when the headers exist)
 *   bench_report.c     medians, the tables, the machine's facts and docs/benchmarks.md
 *
 * Every engine is driven through the same `engine` function table, so each operation costs the
 * same one indirect call whatever the engine. Adapters die (bench_die) on any error status.
 */
#ifndef KIWI_BENCH_H
#define KIWI_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define KEY_SIZE 16      /* "%016ld": zero-padded decimal, so key order is numeric order */
#define VALUE_HEADER 8   /* a value starts with [u32 key index][u32 tag] (verification) */
#define SEEK_NEXTS 10    /* seekrandom: one seek, then up to 10 nexts */
#define BATCH_SIZE 1000  /* fillbatch: operations per batch write */
#define SYNC_THREADS 4   /* fillsync4 */
#define MAX_ROWS 32
#define MAX_ROUNDS 99
#define MAX_SETS 32
#define MAX_ENGINES 3
#define NOTE_CAP 640

/* ---- configuration ----------------------------------------------------------------------------
 * The equal settings every engine gets (docs/benchmarks.md, "Settings"). */
typedef struct {
    const char *benchmarks, *db, *mode, *markdown, *engines;
    long num, reads, sync_num, value_size;
    int rounds;
    bool keep_db, quick;
    double write_buffer_mb; /* kiwi max_memtable_size_mb, LevelDB/RocksDB write_buffer_size */
    double cache_mb;        /* data block cache: every engine */
    double index_cache_mb;  /* kiwi's index and bloom tiers (the peers keep these in their */
    double bloom_cache_mb;  /* table readers, outside the block cache) */
    int bloom_bits;         /* bits per key; kiwi gets the false-positive rate it implies */
    long block_size;
    const char *sets[MAX_SETS]; /* extra kiwi settings, "name=value" */
    int nsets;
    char command[2048]; /* argv joined, for the report */
} config;

/* ---- engines ----------------------------------------------------------------------------------
 * One function table per engine. `db`, `batch`, `it` and `snap` are the adapter's own handles.
 * get returns true when found and sets *val and *vlen to bytes that stay valid until
 * release(*hold). describe appends to `out` what the engine says about the workload between
 * snap (taken before it; freed by describe) and now: counters (0: tree shape only, 1: write
 * path, 2: point reads). */
typedef struct {
    const char *name;
    void (*version)(char *out, size_t cap);
    void (*settings)(const config *c, char *out, size_t cap); /* the options as applied */
    void *(*open)(const config *c, const char *dir);
    void (*close)(void *db);
    void (*put)(void *db, bool sync, const char *k, size_t klen, const char *v, size_t vlen);
    void (*del)(void *db, const char *k, size_t klen);
    bool (*get)(void *db, const char *k, size_t klen, const char **val, size_t *vlen,
                void **hold);
    void (*release)(void *hold);
    void *(*batch_create)(void);
    void (*batch_put)(void *batch, const char *k, size_t klen, const char *v, size_t vlen);
    void (*batch_write)(void *db, void *batch);
    void (*batch_clear)(void *batch);
    void (*batch_destroy)(void *batch);
    void *(*iter_create)(void *db);
    void (*iter_seek)(void *it, const char *k, size_t klen);
    void (*iter_seek_first)(void *it);
    void (*iter_next)(void *it);
    bool (*iter_valid)(void *it);
    const char *(*iter_key)(void *it, size_t *len);
    const char *(*iter_value)(void *it, size_t *len);
    void (*iter_check)(void *it, const char *what); /* dies if the iterator hit an error */
    void (*iter_destroy)(void *it);
    void (*flush)(void *db);       /* memtable to an SSTable; returns when it is written */
    void (*compact_all)(void *db); /* a full compaction of the whole key range; waits */
    void *(*snap)(void *db);
    void (*describe)(void *db, void *snap, int counters, char *out, size_t cap);
} engine;

extern const engine kiwi_engine;
#ifdef KIWI_BENCH_LEVELDB
extern const engine leveldb_engine;
#endif
#ifdef KIWI_BENCH_ROCKSDB
extern const engine rocksdb_engine;
#endif

/* ---- results --------------------------------------------------------------------------------- */
typedef struct {
    double secs;       /* the timed region: the operations only */
    long ops;          /* operations performed (entries for fillbatch and readseq) */
    double user_bytes; /* key + value bytes the operations moved (MiB/s numerator) */
    double written;    /* bytes the process wrote to storage in the workload's window */
    double cpu;        /* process CPU seconds (all threads) in the window */
    double settle;     /* seconds of background work after the workload (untimed) */
    double wamp, samp; /* write and space amplification; < 0 when not meaningful */
    bool mbps;         /* MiB/s is meaningful for this workload */
    char note[NOTE_CAP];
} result;

/* A full compaction at the end of a group (one engine, one round). */
typedef struct {
    double live, before, after; /* live user bytes; directory bytes before and after */
    double secs, written;       /* the compaction call (plus settling) and what it wrote */
} compaction_result;

/* ---- workloads ------------------------------------------------------------------------------- */
typedef struct {
    const config *cfg;
    const engine *e;
    void *db;
    uint32_t *tag; /* per key index: the workload that last wrote it (row + 1); 0 = absent */
} run_ctx;

typedef struct {
    const char *name;
    bool fresh;   /* starts from an empty db: begins a group */
    int writes;   /* 0 reads, 1 fills (write amplification is reported), 2 deletes */
    int counters; /* engine counters in the notes: 0 none, 1 write path, 2 point reads */
    void (*run)(run_ctx *x, result *r, uint64_t seed, uint32_t tag);
} workload;

extern const char DEFAULT_BENCHMARKS[];
const workload *find_workload(const char *name, size_t len);

/* ---- utilities (bench_util.c) ---------------------------------------------------------------- */
void bench_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void *xmalloc(size_t n);
double now(void);
double cpu_now(void); /* process CPU seconds, user + system, all threads */
uint64_t mix64(uint64_t *state);
long pick_key(uint64_t *rng, long n, int t, int nt);
void format_key(char *out, long k);
long parse_key(const char *k, size_t klen, long num); /* -1 if not a key the bench writes */
void values_init(long value_size);
void make_value(char *out, long size, long k, uint32_t tag);
bool value_matches(const char *v, size_t vlen, long size, long k, uint32_t tag);

typedef struct {
    uint64_t write_bytes, wchar;
} io_counters;
io_counters io_now(void);
bool io_accounted(const char *dir); /* false: write_bytes stays 0 there, count wchar */
uint64_t dir_size(const char *path); /* regular files, engine info logs (LOG*) excluded */
void remove_tree(const char *path, bool keep_top);
void check_db_dir(const char *path);
const char *fs_name(const char *path);
void first_line(const char *cmd, char *out, size_t cap);
void note_append(char *note, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- report (bench_report.c) ----------------------------------------------------------------- */
typedef struct {
    const config *cfg;
    const workload *const *list; /* the rows */
    int rows, rounds, nengines;
    const engine *const *engines;
    const result *rs;            /* [round][row][engine] */
    const compaction_result *cs; /* [round][row][engine], set on a group's last row only */
    const bool *group_end;       /* [row] */
    const char *fs;
    char load[2][64];
    double total_secs, total_mib;
    bool used_wchar;
} report;

const result *res_at(const report *p, int round, int row, int eng);
void print_report(FILE *f, const report *p, bool markdown);
void write_markdown(const report *p);

#endif /* KIWI_BENCH_H */
