/*
 * test_crash.c: the crash loop. A child process writes (puts, deletes of its own earlier keys,
 * one-op batches, every 16th write synced, flushes and compactions running on tiny memtables
 * and files) and reports each acknowledged operation on a pipe; it dies by SIGKILL, and the
 * parent reopens the db and checks that every acknowledged operation survived (DESIGN §4: a
 * process crash loses nothing, synced or not), that nothing unwritten appeared, and that the db
 * opens every time. State accumulates across cycles in one directory.
 *
 * Two kinds of cycle:
 *  - random: the parent kills the child after 30..430 ms;
 *  - kill points (only in the build/crash flavour, compiled with -DKIWI_KILL_POINTS): the child
 *    arms one named point (KIWI_KILL_POINT, KIWI_KILL_AFTER = 1..5) and the engine kills itself
 *    there: after a WAL append, around the WAL fsync, in the middle of an SSTable, before/after
 *    a manifest commit, in the middle of a compaction, around file deletion, before CURRENT moves.
 * Cycle counts: KIWI_CRASH_CYCLES per kind (default 25 random, and 7 per kill point in the crash
 * build: 102 cycles). After each cycle the current cycle is checked in full and earlier ones by
 * a sample; at the end everything is checked.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ctest.h"
#include "dbtest.h"
#include "killpoint.h"
#include "kiwi.h"

#define MAX_OPS 200000

typedef struct {
    int cycle;
    int i;        /* the key's index */
    int op_index; /* the operation's index in its cycle */
    char op;      /* 'p' put, 'd' delete */
} ack;

static unsigned char **g_state; /* g_state[cycle][i]: 0 unknown, 1 put, 2 deleted */
static int *g_last_op;
static int g_cycles;
static long g_acks;

static kiwi_db *open_tiny(const char *dir)
{
    static const char *const settings[] = {"max_memtable_size_mb", "0.0625",
                                           "target_file_size_mb", "0.03125",
                                           "level_base_mb", "0.125",
                                           "l0_compaction_threshold", "3", NULL};
    return dbtest_open(dir, "prod", settings);
}

static void key_of(int cycle, int i, char *k) { snprintf(k, 32, "c%03d-%07d", cycle, i); }
static void value_of(int cycle, int i, char *v)
{
    snprintf(v, 96, "v-%d-%d-some-padding-to-fill-blocks-faster", cycle, i);
}

static void child(const char *dir, int cycle, int fd)
{
    kiwi_db *db = open_tiny(dir);
    if (!db)
        _exit(3);
    char key[32], val[96];
    ack a;
    for (int i = 0; i < MAX_OPS; i++) {
        kiwi_write_options wo = {i % 16 == 0};
        a.cycle = cycle;
        a.i = i;
        a.op_index = i;
        a.op = 'p';
        if (i % 7 == 3 && i > 10) { /* delete an earlier key of this cycle */
            a.i = i - 10;
            a.op = 'd';
            key_of(cycle, a.i, key);
            if (kiwi_delete(db, &wo, key, strlen(key), NULL) != KIWI_OK)
                _exit(4);
        } else if (i % 11 == 5) { /* a one-op batch */
            key_of(cycle, i, key);
            value_of(cycle, i, val);
            kiwi_batch *b = kiwi_batch_create();
            kiwi_batch_put(b, key, strlen(key), val, strlen(val));
            if (kiwi_write(db, &wo, b, NULL) != KIWI_OK)
                _exit(4);
            kiwi_batch_destroy(b);
        } else {
            key_of(cycle, i, key);
            value_of(cycle, i, val);
            if (kiwi_put(db, &wo, key, strlen(key), val, strlen(val), NULL) != KIWI_OK)
                _exit(4);
        }
        if (write(fd, &a, sizeof a) != (ssize_t)sizeof a)
            _exit(5);
        if (i % 2000 == 1999 && kiwi_compact_range(db, NULL, 0, NULL, 0, NULL) != KIWI_OK)
            _exit(6);
    }
    _exit(0);
}

/* Checks cycle c: every key (full) or every 50th (sample). Returns the number of bad keys. */
static int verify_cycle(kiwi_db *db, int c, bool full)
{
    int bad = 0;
    char key[32], want[96];
    for (int i = 0; i <= g_last_op[c] && i < MAX_OPS; i += full ? 1 : 50) {
        unsigned char st_want = g_state[c][i];
        char *v = NULL;
        size_t vl = 0;
        key_of(c, i, key);
        kiwi_status st = kiwi_get(db, NULL, key, strlen(key), &v, &vl, NULL);
        if (st_want == 1) {
            value_of(c, i, want);
            if (st != KIWI_OK || vl != strlen(want) || memcmp(v, want, vl) != 0) {
                if (bad < 5)
                    fprintf(stderr, "cycle %d: acknowledged put %s lost (status %d)\n", c, key,
                            st);
                bad++;
            }
        } else if (st_want == 2 && st != KIWI_NOT_FOUND) {
            if (bad < 5)
                fprintf(stderr, "cycle %d: acknowledged delete of %s undone\n", c, key);
            bad++;
        } else if (st != KIWI_OK && st != KIWI_NOT_FOUND) {
            bad++;
        }
        kiwi_free(v);
    }
    return bad;
}

static int verify(const char *dir, bool everything)
{
    kiwi_db *db = open_tiny(dir);
    if (!db)
        return -1;
    int bad = 0;
    for (int c = 0; c < g_cycles; c++)
        bad += verify_cycle(db, c, everything || c == g_cycles - 1);
    kiwi_close(db);
    return bad;
}

/* Runs one cycle; `point` NULL for a random kill. Returns 1 if the kill point fired. */
static int run_cycle(const char *dir, const char *point)
{
    int cycle = g_cycles;
    g_state = realloc(g_state, sizeof *g_state * (size_t)(cycle + 1));
    g_last_op = realloc(g_last_op, sizeof *g_last_op * (size_t)(cycle + 1));
    g_state[cycle] = calloc(MAX_OPS, 1);
    g_last_op[cycle] = -1;
    g_cycles++;
    int fds[2];
    if (pipe(fds) != 0)
        return 0;
    /* Chosen before the fork: a child's rand() would repeat the parent's next value. The point
     * at open (CURRENT switch) is reached once per open, so it always fires at the first hit. */
    int hits = point && strcmp(point, "manifest.before_current") == 0 ? 1 : 1 + rand() % 5;
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        if (point) {
            char after[8];
            snprintf(after, sizeof after, "%d", hits);
            setenv("KIWI_KILL_POINT", point, 1);
            setenv("KIWI_KILL_AFTER", after, 1);
        }
        child(dir, cycle, fds[1]);
    }
    close(fds[1]);
    long wait_ms = point ? 3000 : 30 + rand() % 400;
    struct timespec ts = {wait_ms / 1000, (wait_ms % 1000) * 1000000L};
    int status = 0, fired = 0;
    if (point) { /* poll for the child's own death, then give up and kill it */
        for (long t = 0; t < wait_ms; t += 10) {
            if (waitpid(pid, &status, WNOHANG) == pid) {
                fired = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
                if (getenv("KIWI_CRASH_DEBUG"))
                    fprintf(stderr, "%s: child status %#x after %ld ms\n", point, status, t);
                break;
            }
            struct timespec tick = {0, 10000000L};
            nanosleep(&tick, NULL);
        }
    } else {
        nanosleep(&ts, NULL);
    }
    kill(pid, SIGKILL);
    ack a;
    while (read(fds[0], &a, sizeof a) == (ssize_t)sizeof a) {
        g_state[a.cycle][a.i] = a.op == 'p' ? 1 : 2;
        g_last_op[a.cycle] = a.op_index;
        g_acks++;
    }
    close(fds[0]);
    waitpid(pid, &status, 0);
    CHECK(WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) == 0));
    /* The operation in flight at the kill was not acknowledged: it may or may not have landed.
     * If it was a delete, its key may be gone. */
    int next = g_last_op[cycle] + 1;
    if (next % 7 == 3 && next > 10 && g_state[cycle][next - 10] == 1)
        g_state[cycle][next - 10] = 0;
    return fired;
}

static void test_crash_loop(void)
{
    char *dir = ctest_tmpdir("crash");
    srand((unsigned)time(NULL));
    const char *env = getenv("KIWI_CRASH_CYCLES");
    int per_kind = env ? atoi(env) : 0;
    int random_cycles = per_kind ? per_kind : 25;
    int bad = 0;
    for (int i = 0; i < random_cycles && bad == 0; i++) {
        run_cycle(dir, NULL);
        bad = verify(dir, false);
        CHECK(bad == 0);
    }
    int point_cycles = 0, fired = 0;
#ifdef KIWI_KILL_POINTS
    static const char *points[] = {KW_KILL_POINT_NAMES};
    int per_point = per_kind ? per_kind : 7;
    for (size_t p = 0; p < sizeof points / sizeof points[0] && bad == 0; p++) {
        int fired_here = 0;
        for (int i = 0; i < per_point && bad == 0; i++, point_cycles++) {
            fired_here += run_cycle(dir, points[p]);
            bad = verify(dir, false);
            CHECK(bad == 0);
        }
        printf("kill point %-26s fired %d of %d cycles\n", points[p], fired_here, per_point);
        fflush(stdout);
        CHECK(fired_here > 0); /* every point is reached */
        fired += fired_here;
    }
#endif
    if (bad == 0)
        CHECK(verify(dir, true) == 0);
    printf("crash: %d random + %d kill-point cycles (%d fired), %ld acknowledged ops verified\n",
           random_cycles, point_cycles, fired, g_acks);
    for (int c = 0; c < g_cycles; c++)
        free(g_state[c]);
    free(g_state);
    free(g_last_op);
    ctest_rmtree(dir);
}

int main(void)
{
    RUN(test_crash_loop);
    return ctest_summary();
}
