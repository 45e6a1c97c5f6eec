/*
 * bench_main.c: kiwi_bench's command line and its loop. Workloads are grouped (a group starts
 * at a workload that needs a fresh db and runs on until the next one); for every round, every
 * group runs on every engine in turn (kiwi, leveldb, rocksdb), each on a fresh directory, and
 * ends with a full compaction. One measured workload is run_row. docs/benchmarks.md ("Method")
 * explains the choices.
 *
 *   kiwi_bench [--benchmarks=a,b,c] [--engines=kiwi,leveldb,rocksdb] [--num=N] [--reads=N]
 *              [--sync_num=N] [--value_size=N] [--rounds=R] [--quick] [--db=DIR]
 *              [--write_buffer_mb=X] [--cache_mb=X] [--index_cache_mb=X] [--bloom_cache_mb=X]
 *              [--bloom_bits=N] [--block_size=N] [--mode=prod|dev] [--set=name=value]...
 *              [--markdown=FILE|none] [--keep_db]
 *
 * --db defaults to a new /tmp/kiwi_bench.XXXXXX of this run (removed at the end unless
 * --keep_db), so two runs, or anyone else's files, never share a directory.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench.h"

#define SETTLE_WINDOW_US 200000 /* background work is over after a window with no writes */
#define SETTLE_CPU_SECS 0.01    /* and under 10 ms of CPU (5% of one core) */
#define SETTLE_MAX_SECS 600.0

static const engine *const BUILT[] = {
    &kiwi_engine,
#ifdef KIWI_BENCH_LEVELDB
    &leveldb_engine,
#endif
#ifdef KIWI_BENCH_ROCKSDB
    &rocksdb_engine,
#endif
};
#define NBUILT ((int)(sizeof BUILT / sizeof BUILT[0]))

typedef struct {
    config cfg;
    const workload *list[MAX_ROWS];
    bool group_end[MAX_ROWS];
    int rows;
    const engine *engines[MAX_ENGINES];
    int nengines;
    uint32_t *tag;
    result *rs;
    compaction_result *cs;
    bool used_wchar; /* the file system of --db does not account write_bytes */
} bench;

/* ---- waiting for background work ------------------------------------------------------------- */

/* Waits until the engine's background threads are idle: a window in which the process wrote
 * nothing to storage and used almost no CPU (the caller sleeps). Returns the seconds waited. */
static double settle(void)
{
    double t0 = now();
    io_counters a = io_now();
    double c0 = cpu_now();
    for (;;) {
        usleep(SETTLE_WINDOW_US);
        io_counters b = io_now();
        double c1 = cpu_now();
        if ((b.write_bytes == a.write_bytes && c1 - c0 < SETTLE_CPU_SECS) ||
            now() - t0 > SETTLE_MAX_SECS)
            break;
        a = b;
        c0 = c1;
    }
    return now() - t0 - SETTLE_WINDOW_US * 1e-6; /* the last, quiet window is not work */
}

/* ---- one measured workload ------------------------------------------------------------------- */

static double live_bytes(const bench *b)
{
    long live = 0;
    for (long k = 0; k < b->cfg.num; k++)
        live += b->tag[k] != 0;
    return (double)live * (double)(KEY_SIZE + b->cfg.value_size);
}

/* Bytes written to storage between two readings: write_bytes, or wchar (the bytes passed to
 * write calls) where the file system of --db does not account write_bytes (the report says so). */
static double written(const bench *b, io_counters a, io_counters c)
{
    if (b->used_wchar)
        return (double)(c.wchar - a.wchar);
    return (double)(c.write_bytes - a.write_bytes);
}

static void run_row(bench *b, run_ctx *x, int row, uint64_t seed, result *r, const char *dir)
{
    const workload *w = b->list[row];
    memset(r, 0, sizeof *r);
    r->wamp = r->samp = -1;
    void *snap = x->e->snap(x->db);
    io_counters io0 = io_now();
    double cpu0 = cpu_now(), t0 = now();
    w->run(x, r, seed, (uint32_t)row + 1);
    r->secs = now() - t0;
    /* Untimed: the last memtable to disk and the background work the workload caused, so the
     * window counts every byte the workload made the engine write (see Method). */
    if (w->writes)
        x->e->flush(x->db);
    r->settle = settle();
    r->cpu = cpu_now() - cpu0;
    r->written = written(b, io0, io_now());
    double live = live_bytes(b);
    if (w->writes == 1 && r->user_bytes > 0)
        r->wamp = r->written / r->user_bytes;
    if (live > 0)
        r->samp = (double)dir_size(dir) / live;
    x->e->describe(x->db, snap, w->counters, r->note, NOTE_CAP);
}

/* The full compaction that ends a group: timed, with what it wrote and the space after it. */
static void compact_all(bench *b, run_ctx *x, compaction_result *c, const char *dir)
{
    c->live = live_bytes(b);
    c->before = (double)dir_size(dir);
    io_counters io0 = io_now();
    double t0 = now();
    x->e->compact_all(x->db);
    settle();
    c->secs = now() - t0 - SETTLE_WINDOW_US * 1e-6;
    c->written = written(b, io0, io_now());
    c->after = (double)dir_size(dir);
}

/* Rows first..last (one group) on engine e, from a fresh directory. */
static void run_group(bench *b, int round, int first, int last, int eng)
{
    const engine *e = b->engines[eng];
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/%s", b->cfg.db, e->name);
    remove_tree(dir, false);
    sync(); /* the previous engine's dirty pages are not this one's writeback */
    memset(b->tag, 0, (size_t)b->cfg.num * sizeof *b->tag);
    run_ctx x = {&b->cfg, e, e->open(&b->cfg, dir), b->tag};
    for (int row = first; row <= last; row++) {
        size_t at = ((size_t)round * (size_t)b->rows + (size_t)row) * (size_t)b->nengines + eng;
        result *r = &b->rs[at];
        run_row(b, &x, row, 301 + 1000003ull * (uint64_t)round + 7919ull * (uint64_t)row, r, dir);
        fprintf(stderr, "[round %d/%d] %-12s %-8s %9ld ops in %8.3f s: %10.0f ops/s  %s\n",
                round + 1, b->cfg.rounds, b->list[row]->name, e->name, r->ops, r->secs,
                r->secs > 0 ? (double)r->ops / r->secs : 0, r->note);
        if (row == last) {
            compaction_result *c = &b->cs[at];
            compact_all(b, &x, c, dir);
            fprintf(stderr, "[round %d/%d] full compaction on %s: %.2f s, %.1f -> %.1f MiB "
                            "(live %.1f MiB)\n",
                    round + 1, b->cfg.rounds, e->name, c->secs, c->before / 1048576.0,
                    c->after / 1048576.0, c->live / 1048576.0);
        }
    }
    e->close(x.db);
    if (!b->cfg.keep_db)
        remove_tree(dir, false);
}

/* ---- command line ---------------------------------------------------------------------------- */

static long parse_long(const char *arg, const char *v, long min, long max)
{
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || *end || end == v || x < min || x > max)
        bench_die("%s: expected an integer in [%ld, %ld]", arg, min, max);
    return x;
}

static double parse_double(const char *arg, const char *v, double min)
{
    char *end;
    double x = strtod(v, &end);
    if (*end || end == v || !(x >= min))
        bench_die("%s: expected a number >= %g", arg, min);
    return x;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: kiwi_bench [--benchmarks=a,b,c] [--engines=kiwi,leveldb,rocksdb] [--num=N]\n"
            "         [--reads=N] [--sync_num=N] [--value_size=N] [--rounds=R] [--quick]\n"
            "         [--db=DIR] [--write_buffer_mb=X] [--cache_mb=X] [--index_cache_mb=X]\n"
            "         [--bloom_cache_mb=X] [--bloom_bits=N] [--block_size=N] [--mode=prod|dev]\n"
            "         [--set=name=value]... [--markdown=FILE|none] [--keep_db]\n"
            "benchmarks: %s\n--quick: --num=100000 --rounds=1 --markdown=none (later flags "
            "win)\n",
            DEFAULT_BENCHMARKS);
    exit(2);
}

static void parse_arg(config *c, const char *a)
{
    const char *eq = strchr(a, '='), *v = eq ? eq + 1 : "";
    size_t n = eq ? (size_t)(eq - a) : strlen(a);
#define IS(name) (n == strlen(name) && strncmp(a, name, n) == 0)
    if (IS("--benchmarks")) c->benchmarks = v;
    else if (IS("--engines")) c->engines = v;
    else if (IS("--num")) c->num = parse_long(a, v, 16, 1000000000);
    else if (IS("--reads")) c->reads = parse_long(a, v, 0, 1000000000);
    else if (IS("--sync_num")) c->sync_num = parse_long(a, v, 0, 1000000000);
    else if (IS("--value_size")) c->value_size = parse_long(a, v, VALUE_HEADER, 1 << 19);
    else if (IS("--rounds")) c->rounds = (int)parse_long(a, v, 1, MAX_ROUNDS);
    else if (IS("--quick")) c->num = 100000, c->rounds = 1, c->markdown = NULL, c->quick = true;
    else if (IS("--db") && *v) c->db = v;
    else if (IS("--write_buffer_mb")) c->write_buffer_mb = parse_double(a, v, 0.0625);
    else if (IS("--cache_mb")) c->cache_mb = parse_double(a, v, 0);
    else if (IS("--index_cache_mb")) c->index_cache_mb = parse_double(a, v, 0);
    else if (IS("--bloom_cache_mb")) c->bloom_cache_mb = parse_double(a, v, 0);
    else if (IS("--bloom_bits")) c->bloom_bits = (int)parse_long(a, v, 1, 30);
    else if (IS("--block_size")) c->block_size = parse_long(a, v, 256, 1 << 20);
    else if (IS("--mode")) c->mode = v;
    else if (IS("--markdown")) c->markdown = *v && strcmp(v, "none") != 0 ? v : NULL;
    else if (IS("--keep_db")) c->keep_db = true;
    else if (IS("--set") && strchr(v, '=') && c->nsets < MAX_SETS) c->sets[c->nsets++] = v;
    else usage();
#undef IS
}

static void parse_args(config *c, int argc, char **argv)
{
    struct stat st;
    *c = (config){.benchmarks = DEFAULT_BENCHMARKS, .db = NULL, .mode = "prod",
                  .engines = "kiwi,leveldb,rocksdb", .num = 1000000, .reads = -1,
                  .sync_num = 2000, .value_size = 100, .rounds = 5, .write_buffer_mb = 64,
                  .cache_mb = 8, .index_cache_mb = 16, .bloom_cache_mb = 16, .bloom_bits = 10,
                  .block_size = 4096};
    c->markdown = stat("docs", &st) == 0 && S_ISDIR(st.st_mode) ? "docs/benchmarks.md" : NULL;
    for (int i = 0; i < argc; i++) {
        size_t used = strlen(c->command);
        snprintf(c->command + used, sizeof c->command - used, "%s%s", i ? " " : "", argv[i]);
    }
    for (int i = 1; i < argc; i++)
        parse_arg(c, argv[i]);
    if (c->reads < 0)
        c->reads = c->num;
}

static void parse_list(bench *b)
{
    const char *s = b->cfg.benchmarks;
    while (*s) {
        size_t n = strcspn(s, ",");
        if (n > 0) {
            const workload *w = find_workload(s, n);
            if (!w)
                bench_die("unknown benchmark '%.*s' (known: %s)", (int)n, s, DEFAULT_BENCHMARKS);
            if (b->rows == MAX_ROWS)
                bench_die("at most %d benchmarks per run", MAX_ROWS);
            b->list[b->rows++] = w;
        }
        s += n + (s[n] == ',');
    }
    if (b->rows == 0)
        bench_die("--benchmarks is empty");
    if (!b->list[0]->fresh)
        bench_die("the first benchmark must start a fresh db (fillseq, fillrandom, fillbatch, "
                  "fillsync or fillsync4); '%s' works on the db a fill leaves",
                  b->list[0]->name);
    for (int row = 0; row < b->rows; row++)
        b->group_end[row] = row == b->rows - 1 || b->list[row + 1]->fresh;
}

/* --engines, in the fixed order kiwi, leveldb, rocksdb; an engine not built is reported. */
static void parse_engines(bench *b)
{
    for (int i = 0; i < NBUILT; i++) {
        const char *p = strstr(b->cfg.engines, BUILT[i]->name);
        size_t n = strlen(BUILT[i]->name);
        if (p && (p == b->cfg.engines || p[-1] == ',') && (p[n] == 0 || p[n] == ','))
            b->engines[b->nengines++] = BUILT[i];
    }
    if (b->nengines == 0)
        bench_die("--engines=%s selects no engine this binary has", b->cfg.engines);
}

int main(int argc, char **argv)
{
    static bench b; /* large; static only to keep it off the stack */
    parse_args(&b.cfg, argc, argv);
    parse_list(&b);
    parse_engines(&b);
    values_init(b.cfg.value_size);
    static char tmpdir[] = "/tmp/kiwi_bench.XXXXXX"; /* default: private to this run */
    if (!b.cfg.db && !(b.cfg.db = mkdtemp(tmpdir)))
        bench_die("mkdtemp %s: %s", tmpdir, strerror(errno));
    check_db_dir(b.cfg.db);
    if (mkdir(b.cfg.db, 0755) != 0 && errno != EEXIST)
        bench_die("--db=%s: %s", b.cfg.db, strerror(errno));
    b.used_wchar = !io_accounted(b.cfg.db);
    size_t cells = (size_t)(b.cfg.rounds * b.rows * b.nengines);
    b.tag = calloc((size_t)b.cfg.num, sizeof *b.tag);
    b.rs = calloc(cells, sizeof *b.rs);
    b.cs = calloc(cells, sizeof *b.cs);
    if (!b.tag || !b.rs || !b.cs)
        bench_die("out of memory");
    report p = {&b.cfg, b.list, b.rows, b.cfg.rounds, b.nengines, b.engines, b.rs, b.cs,
                b.group_end, fs_name(b.cfg.db), {"", ""}, 0, 0, false};
    first_line("cut -d' ' -f1-3 /proc/loadavg", p.load[0], sizeof p.load[0]);
    io_counters io0 = io_now();
    double t0 = now();
    for (int round = 0; round < b.cfg.rounds; round++)
        for (int first = 0, last = 0; first < b.rows; first = last + 1) {
            for (last = first; !b.group_end[last]; last++)
                ;
            for (int eng = 0; eng < b.nengines; eng++)
                run_group(&b, round, first, last, eng);
        }
    first_line("cut -d' ' -f1-3 /proc/loadavg", p.load[1], sizeof p.load[1]);
    p.total_secs = now() - t0;
    p.total_mib = written(&b, io0, io_now()) / 1048576.0;
    p.used_wchar = b.used_wchar;
    if (!b.cfg.keep_db)
        remove_tree(b.cfg.db, false);
    else
        fprintf(stderr, "kept the dbs under %s\n", b.cfg.db);
    print_report(stdout, &p, false);
    if (b.cfg.markdown) {
        write_markdown(&p);
        fprintf(stderr, "wrote %s\n", b.cfg.markdown);
    }
    free(b.tag);
    free(b.rs);
    free(b.cs);
    return 0;
}
