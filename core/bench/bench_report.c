/*
 * bench_report.c: kiwi_bench's output. It owns the medians over rounds, the tables (throughput
 * with the ratio kiwi / best peer, amplification, full compactions, per-run details), the
 * machine's facts and the generated part of docs/benchmarks.md (everything below MARKER; the
 * hand-written part above it is kept byte for byte).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#define MARKER "<!-- kiwi_bench output: everything below this line is generated -->"

const result *res_at(const report *p, int round, int row, int eng)
{
    return &p->rs[(round * p->rows + row) * p->nengines + eng];
}

static const compaction_result *comp_at(const report *p, int round, int row, int eng)
{
    return &p->cs[(round * p->rows + row) * p->nengines + eng];
}

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

typedef enum { M_OPS_S, M_MIB_S, M_WRITTEN, M_WAMP, M_SAMP, M_CPU, M_SETTLE } metric;

static double metric_of(const result *x, metric m)
{
    double secs = x->secs > 0 ? x->secs : 1e-9;
    switch (m) {
    case M_OPS_S: return (double)x->ops / secs;
    case M_MIB_S: return x->user_bytes / secs / 1048576.0;
    case M_WRITTEN: return x->written / 1048576.0;
    case M_WAMP: return x->wamp;
    case M_SAMP: return x->samp;
    case M_CPU: return x->cpu;
    default: return x->settle;
    }
}

/* The median of one metric of (row, engine) over the rounds; lo/hi (if not NULL) get the range. */
static double med(const report *p, int row, int eng, metric m, double *lo, double *hi)
{
    double v[MAX_ROUNDS];
    for (int i = 0; i < p->rounds; i++)
        v[i] = metric_of(res_at(p, i, row, eng), m);
    double x = median(v, p->rounds);
    if (lo)
        *lo = v[0], *hi = v[p->rounds - 1];
    return x;
}

typedef enum { C_LIVE, C_BEFORE, C_AFTER, C_SECS, C_WRITTEN } cmetric;

static double cmed(const report *p, int row, int eng, cmetric m)
{
    double v[MAX_ROUNDS];
    for (int i = 0; i < p->rounds; i++) {
        const compaction_result *c = comp_at(p, i, row, eng);
        v[i] = m == C_LIVE ? c->live : m == C_BEFORE ? c->before : m == C_AFTER ? c->after
               : m == C_SECS ? c->secs : c->written;
    }
    return median(v, p->rounds);
}

/* ---- the tables ------------------------------------------------------------------------------ */

static void fmt_amp(char *out, size_t cap, double x)
{
    if (x < 0)
        snprintf(out, cap, "-");
    else
        snprintf(out, cap, "%.2f", x);
}

/* The best peer's median ops/s of a row (index in *best), or 0 when kiwi runs alone. */
static double best_peer(const report *p, int row, int *best)
{
    double top = 0;
    *best = -1;
    for (int eng = 0; eng < p->nengines; eng++) {
        double x = med(p, row, eng, M_OPS_S, NULL, NULL);
        if (strcmp(p->engines[eng]->name, "kiwi") != 0 && x > top)
            top = x, *best = eng;
    }
    return top;
}

static int kiwi_index(const report *p)
{
    for (int eng = 0; eng < p->nengines; eng++)
        if (strcmp(p->engines[eng]->name, "kiwi") == 0)
            return eng;
    return -1;
}

static void print_throughput(FILE *f, const report *p)
{
    int ki = kiwi_index(p);
    fprintf(f, "| workload | ops |");
    for (int eng = 0; eng < p->nengines; eng++)
        fprintf(f, " %s ops/s | %s µs/op |", p->engines[eng]->name, p->engines[eng]->name);
    fprintf(f, " kiwi / best peer |\n|---|---:|");
    for (int eng = 0; eng < p->nengines; eng++)
        fprintf(f, "---:|---:|");
    fprintf(f, "---|\n");
    for (int row = 0; row < p->rows; row++) {
        fprintf(f, "| %s | %ld |", p->list[row]->name, res_at(p, p->rounds - 1, row, 0)->ops);
        for (int eng = 0; eng < p->nengines; eng++) {
            double x = med(p, row, eng, M_OPS_S, NULL, NULL);
            fprintf(f, " %.0f | %.3f |", x, x > 0 ? 1e6 / x : 0);
        }
        int best;
        double top = best_peer(p, row, &best);
        if (ki < 0 || best < 0) {
            fprintf(f, " - (no peer ran) |\n");
            continue;
        }
        double ratio = med(p, row, ki, M_OPS_S, NULL, NULL) / top;
        fprintf(f, " %s%.2fx%s (%s) |\n", ratio < 1 ? "**" : "", ratio, ratio < 1 ? "**" : "",
                p->engines[best]->name);
    }
}

/* "a / b / c" of one metric over the engines, in engine order. */
static void print_per_engine(FILE *f, const report *p, int row, metric m)
{
    fputs(" ", f);
    for (int eng = 0; eng < p->nengines; eng++) {
        char s[32];
        double x = med(p, row, eng, m, NULL, NULL);
        if (m == M_WRITTEN)
            snprintf(s, sizeof s, "%.1f", x);
        else
            fmt_amp(s, sizeof s, x);
        fprintf(f, "%s%s", eng ? " / " : "", s);
    }
    fputs(" |", f);
}

static void engine_names(FILE *f, const report *p)
{
    for (int eng = 0; eng < p->nengines; eng++)
        fprintf(f, "%s%s", eng ? " / " : "", p->engines[eng]->name);
}

static void print_amplification(FILE *f, const report *p)
{
    fprintf(f, "| workload | written MiB (");
    engine_names(f, p);
    fprintf(f, ") | W-amp (");
    engine_names(f, p);
    fprintf(f, ") | S-amp after the workload (");
    engine_names(f, p);
    fprintf(f, ") |\n|---|---:|---:|---:|\n");
    for (int row = 0; row < p->rows; row++) {
        fprintf(f, "| %s |", p->list[row]->name);
        print_per_engine(f, p, row, M_WRITTEN);
        print_per_engine(f, p, row, M_WAMP);
        print_per_engine(f, p, row, M_SAMP);
        fputc('\n', f);
    }
}

static void print_compactions(FILE *f, const report *p)
{
    fprintf(f, "| group (its workloads) | engine | live MiB | dir MiB before | S-amp before | "
               "compaction s | written MiB | dir MiB after | S-amp after |\n"
               "|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for (int first = 0, row = 0; row < p->rows; row++) {
        if (!p->group_end[row])
            continue;
        char group[256] = "";
        for (int i = first; i <= row; i++) {
            size_t used = strlen(group);
            snprintf(group + used, sizeof group - used, "%s%s", i > first ? ", " : "",
                     p->list[i]->name);
        }
        for (int eng = 0; eng < p->nengines; eng++) {
            double live = cmed(p, row, eng, C_LIVE), before = cmed(p, row, eng, C_BEFORE);
            double after = cmed(p, row, eng, C_AFTER);
            fprintf(f, "| %s | %s | %.1f | %.1f | %.2f | %.2f | %.1f | %.1f | %.2f |\n", group,
                    p->engines[eng]->name, live / 1048576.0, before / 1048576.0,
                    live > 0 ? before / live : 0, cmed(p, row, eng, C_SECS),
                    cmed(p, row, eng, C_WRITTEN) / 1048576.0, after / 1048576.0,
                    live > 0 ? after / live : 0);
        }
        first = row + 1;
    }
}

static void print_details(FILE *f, const report *p)
{
    fprintf(f, "| workload | engine | ops/s over the rounds | MiB/s | CPU s | background s | "
               "notes (last round) |\n|---|---|---|---:|---:|---:|---|\n");
    for (int row = 0; row < p->rows; row++)
        for (int eng = 0; eng < p->nengines; eng++) {
            const result *last = res_at(p, p->rounds - 1, row, eng);
            double lo, hi, mid = med(p, row, eng, M_OPS_S, &lo, &hi);
            char mb[32] = "-";
            if (last->mbps)
                snprintf(mb, sizeof mb, "%.3g", med(p, row, eng, M_MIB_S, NULL, NULL));
            fprintf(f, "| %s | %s | ", p->list[row]->name, p->engines[eng]->name);
            if (p->rounds > 1)
                fprintf(f, "%.0f to %.0f (median %.0f)", lo, hi, mid);
            else
                fprintf(f, "%.0f", mid);
            fprintf(f, " | %s | %.2f | %.2f | %s |\n", mb, med(p, row, eng, M_CPU, NULL, NULL),
                    med(p, row, eng, M_SETTLE, NULL, NULL), last->note);
        }
}

void print_report(FILE *f, const report *p, bool markdown)
{
    const char *h = markdown ? "### " : "";
    fprintf(f, "%sThroughput (median of %d round%s)\n\n", h, p->rounds, p->rounds > 1 ? "s" : "");
    const char *missing = "";
#if !defined(KIWI_BENCH_LEVELDB) && !defined(KIWI_BENCH_ROCKSDB)
    missing = "leveldb, rocksdb";
#elif !defined(KIWI_BENCH_LEVELDB)
    missing = "leveldb";
#elif !defined(KIWI_BENCH_ROCKSDB)
    missing = "rocksdb";
#endif
    if (missing[0])
        fprintf(f, "Peers not built into this kiwi_bench (their headers were missing): %s.\n\n",
                missing);
    print_throughput(f, p);
    fprintf(f, "\n%sWrite and space amplification (medians)\n\n", h);
    print_amplification(f, p);
    fprintf(f, "\n%sFull compaction at the end of each group (medians)\n\n", h);
    print_compactions(f, p);
    fprintf(f, "\n%sPer engine and workload\n\n", h);
    print_details(f, p);
    const char *wchar = " (wchar: the file system of --db does not account write_bytes, so every "
                        "written figure is the bytes passed to write calls)";
    fprintf(f, "\nThe whole run took %.1f s and the process wrote %.1f MiB to storage%s.\n",
            p->total_secs, p->total_mib, p->used_wchar ? wchar : "");
}

/* ---- the machine and the settings ------------------------------------------------------------ */

static void print_machine(FILE *f, const report *p)
{
    char cpu[256], mem[64], date[64], nproc[32], rev[64], dirty[32], ver[128];
    struct utsname u;
    time_t t = time(NULL);
    first_line("grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'", cpu, sizeof cpu);
    first_line("grep -m1 MemTotal /proc/meminfo | awk '{printf \"%.1f GiB\", $2/1048576}'", mem,
               sizeof mem);
    first_line("nproc", nproc, sizeof nproc);
    first_line("git rev-parse --short HEAD 2>/dev/null", rev, sizeof rev);
    first_line("git status --porcelain -- core 2>/dev/null | wc -l", dirty, sizeof dirty);
    strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime(&t));
    uname(&u);
    fprintf(f, "| | |\n|---|---|\n| CPU | %s |\n| nproc | %s |\n| Memory | %s |\n", cpu, nproc,
            mem);
    fprintf(f, "| Kernel | %s %s %s |\n| Date | %s |\n", u.sysname, u.release, u.machine, date);
    fprintf(f, "| File system of `--db` | %s |\n", p->fs);
    fprintf(f, "| Load average (1, 5, 15 min) | at start %s; at end %s |\n", p->load[0],
            p->load[1]);
    fprintf(f, "| git revision | %s%s |\n", rev,
            strcmp(dirty, "0") == 0 ? "" : " plus uncommitted changes under core/");
    fprintf(f, "| Compiler | gcc %s, -O2 |\n| Engines | ", __VERSION__);
    for (int eng = 0; eng < p->nengines; eng++) {
        p->engines[eng]->version(ver, sizeof ver);
        fprintf(f, "%s%s", eng ? ", " : "", ver);
    }
    fprintf(f, " |\n| num, reads, sync_num, value_size | %ld, %ld, %ld, %ld |\n",
            p->cfg->num, p->cfg->reads, p->cfg->sync_num, p->cfg->value_size);
    fprintf(f, "| Command | `%s` |\n\n", p->cfg->command);
}

static void print_settings(FILE *f, const report *p)
{
    char s[1024];
    for (int eng = 0; eng < p->nengines; eng++) {
        p->engines[eng]->settings(p->cfg, s, sizeof s);
        fprintf(f, "- **%s**: %s.\n", p->engines[eng]->name, s);
    }
#ifndef KIWI_BENCH_LEVELDB
    fprintf(f, "- **leveldb**: not built (no `leveldb/c.h` when kiwi_bench was compiled): kiwi "
               "ran without this peer.\n");
#endif
#ifndef KIWI_BENCH_ROCKSDB
    fprintf(f, "- **rocksdb**: not built (no `rocksdb/c.h` when kiwi_bench was compiled): kiwi "
               "ran without this peer.\n");
#endif
    fputc('\n', f);
}

/* ---- docs/benchmarks.md ---------------------------------------------------------------------- */

/* The existing file up to and including the MARKER line; NULL if there is none. */
static char *read_head(const char *path, size_t *len)
{
    FILE *f = fopen(path, "r");
    char line[8192], *data = NULL;
    size_t cap = 0;
    bool found = false;
    *len = 0;
    while (f && !found && fgets(line, sizeof line, f)) {
        size_t n = strlen(line);
        found = strncmp(line, MARKER, strlen(MARKER)) == 0;
        if (*len + n + 1 > cap) {
            cap = 2 * (*len + n + 1);
            data = realloc(data, cap);
            if (!data)
                bench_die("out of memory");
        }
        memcpy(data + *len, line, n);
        *len += n;
    }
    if (f)
        fclose(f);
    if (!found) {
        free(data);
        return NULL;
    }
    return data;
}

void write_markdown(const report *p)
{
    size_t len;
    char *head = read_head(p->cfg->markdown, &len);
    FILE *f = fopen(p->cfg->markdown, "w");
    if (!f)
        bench_die("--markdown=%s: %s", p->cfg->markdown, strerror(errno));
    if (head)
        fwrite(head, 1, len, f);
    else
        fputs("# Benchmarks\n\n" MARKER "\n", f);
    free(head);
    fprintf(f, "\n## Machine\n\n");
    print_machine(f, p);
    fprintf(f, "## Settings\n\n");
    print_settings(f, p);
    fprintf(f, "## Results\n\n");
    print_report(f, p, true);
    if (fclose(f) != 0)
        bench_die("--markdown=%s: %s", p->cfg->markdown, strerror(errno));
}
