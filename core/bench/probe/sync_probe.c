/*
 * sync_probe.c: what this machine allows sync writers from several threads, without kiwi.
 *
 * The benchmark's target "4 threads doing fillsync >= 3x one thread" depends on the disk and on
 * the scheduler as much as on the engine. This probe measures the ceiling with the simplest
 * possible commit structures, in one process, on the file system of DIR:
 *
 *   1 thread        write a 116-byte record (16 B key + 100 B value), fdatasync, repeat
 *   1 group of 4    4 threads in lockstep: the last to arrive writes all 4 records with one
 *                   pwrite, fdatasyncs once, and wakes the 3 others with one futex broadcast
 *                   (ideal group commit: every fdatasync carries 4 writes, no queue, no copy)
 *   ... yielding    the same, the 3 waiting threads polling with sched_yield (for up to 1 ms)
 *                   before they sleep on the futex: the broadcast then finds them running, and
 *                   no wake-up of a sleeping thread is in the cycle (kiwi's sync_waits = yield)
 *   2 groups of 2   two such pairs, each with its own fdatasync on the shared file, so two
 *                   fdatasyncs are in flight at once (pipelined or parallel commits)
 *   4 x 1           4 threads, each its own write and fdatasync (no grouping at all)
 *
 * Records go to a preallocated file at increasing offsets, as a WAL's do. Each configuration runs
 * ROUNDS times, interleaved; the report gives medians and the ratio to one thread.
 *
 * Usage: sync_probe [DIR [ROUNDS [OPS]]]   (defaults: ., 5, 2000 ops per configuration)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define RECORD 116
#define MAX_GROUP 4
#define MAX_THREADS 4
#define MAX_ROUNDS 99
#define FILE_BYTES ((off_t)64 << 20)
#define YIELD_US 1000 /* "yielding": how long a waiter polls before it sleeps */

typedef struct {
    pthread_mutex_t mu;
    int arrived;         /* under mu */
    int size;            /* threads per commit */
    bool yield;          /* waiters poll with sched_yield before they sleep */
    _Atomic uint32_t gen; /* commits done; waiters sleep on it */
} group;

typedef struct {
    int fd;
    _Atomic long offset; /* next record offset, shared by the groups */
    long per_thread;
    group groups[MAX_THREADS];
} probe;

typedef struct {
    probe *p;
    group *g;
} worker;

static char probe_path[4096]; /* the probe file, removed on exit and on failure */

static void die(const char *what)
{
    fprintf(stderr, "sync_probe: %s: %s\n", what, strerror(errno));
    unlink(probe_path);
    exit(1);
}

static double now_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void futex_wait(_Atomic uint32_t *word, uint32_t expect)
{
    syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, expect, NULL, NULL, 0);
}

static void futex_wake_all(_Atomic uint32_t *word)
{
    syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL, NULL, 0);
}

/* The last of the group's members to arrive commits for all of them. */
static void commit(probe *p, group *g)
{
    char buf[RECORD * MAX_GROUP];
    memset(buf, 'v', sizeof buf);
    size_t n = (size_t)RECORD * (size_t)g->size;
    long off = atomic_fetch_add(&p->offset, (long)n);
    if (pwrite(p->fd, buf, n, (off_t)off) != (ssize_t)n)
        die("pwrite");
    if (fdatasync(p->fd) != 0)
        die("fdatasync");
}

static void *run_worker(void *arg)
{
    worker *w = arg;
    group *g = w->g;
    for (long i = 0; i < w->p->per_thread; i++) {
        pthread_mutex_lock(&g->mu);
        uint32_t gen = atomic_load(&g->gen);
        if (++g->arrived == g->size) {
            g->arrived = 0;
            commit(w->p, g); /* under mu: the members cannot leave before it is durable */
            atomic_fetch_add(&g->gen, 1);
            pthread_mutex_unlock(&g->mu);
            futex_wake_all(&g->gen);
            continue;
        }
        pthread_mutex_unlock(&g->mu);
        double until = g->yield ? now_seconds() + YIELD_US * 1e-6 : 0;
        while (atomic_load(&g->gen) == gen && now_seconds() < until)
            sched_yield();
        while (atomic_load(&g->gen) == gen)
            futex_wait(&g->gen, gen);
    }
    return NULL;
}

/* ops/s of `ngroups` groups of `size` threads doing `ops` sync writes in all. */
static double run_config(const char *path, int ngroups, int size, bool yield, long ops)
{
    probe p;
    memset(&p, 0, sizeof p);
    p.fd = open(path, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
    if (p.fd < 0)
        die(path);
    if (posix_fallocate(p.fd, 0, FILE_BYTES) != 0 || fsync(p.fd) != 0)
        die("preallocating the probe file");
    int nthreads = ngroups * size;
    p.per_thread = ops / nthreads;
    worker workers[MAX_THREADS];
    pthread_t threads[MAX_THREADS];
    for (int i = 0; i < ngroups; i++) {
        pthread_mutex_init(&p.groups[i].mu, NULL);
        p.groups[i].size = size;
        p.groups[i].yield = yield;
    }
    double t0 = now_seconds();
    for (int i = 0; i < nthreads; i++) {
        workers[i] = (worker){&p, &p.groups[i / size]};
        if (pthread_create(&threads[i], NULL, run_worker, &workers[i]) != 0)
            die("pthread_create");
    }
    for (int i = 0; i < nthreads; i++)
        pthread_join(threads[i], NULL);
    double elapsed = now_seconds() - t0;
    for (int i = 0; i < ngroups; i++)
        pthread_mutex_destroy(&p.groups[i].mu);
    close(p.fd);
    return (double)(p.per_thread * nthreads) / elapsed;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, long n)
{
    qsort(v, (size_t)n, sizeof *v, compare_doubles);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : ".";
    long rounds = argc > 2 ? strtol(argv[2], NULL, 10) : 5;
    long ops = argc > 3 ? strtol(argv[3], NULL, 10) : 2000;
    if (rounds < 1 || rounds > MAX_ROUNDS || ops < MAX_THREADS) {
        fprintf(stderr, "usage: sync_probe [DIR [ROUNDS (1-%d) [OPS (>= %d)]]]\n", MAX_ROUNDS,
                MAX_THREADS);
        return 2;
    }
    snprintf(probe_path, sizeof probe_path, "%s/sync_probe.%ld.dat", dir, (long)getpid());
    const char *path = probe_path;
    static const struct {
        const char *name;
        int ngroups, size;
        bool yield;
    } configs[] = {{"1 thread", 1, 1, false},
                   {"1 group of 4", 1, 4, false},
                   {"1 group of 4, yielding waits", 1, 4, true},
                   {"2 groups of 2", 2, 2, false},
                   {"4 x 1", 4, 1, false}};
    enum { NCONFIGS = sizeof configs / sizeof configs[0] };
    double results[NCONFIGS][MAX_ROUNDS];
    for (long r = 0; r < rounds; r++) {
        for (int c = 0; c < NCONFIGS; c++)
            results[c][r] =
                run_config(path, configs[c].ngroups, configs[c].size, configs[c].yield, ops);
        fprintf(stderr, "round %ld/%ld: %.0f %.0f %.0f %.0f %.0f ops/s\n", r + 1, rounds,
                results[0][r], results[1][r], results[2][r], results[3][r], results[4][r]);
    }
    unlink(path);
    double base = median(results[0], rounds);
    printf("| configuration | sync writes/s (median of %ld) | ratio to 1 thread |\n", rounds);
    printf("|---|---:|---:|\n");
    for (int c = 0; c < NCONFIGS; c++) {
        double m = c == 0 ? base : median(results[c], rounds);
        printf("| %s | %.0f | %.2f |\n", configs[c].name, m, m / base);
    }
    printf("\nfdatasync + write, 1 thread: %.0f us per op\n", 1e6 / base);
    return 0;
}
