/*
 * test_crash.c: SIGKILL at random moments while a child process writes with flushes and
 * compactions running; after each kill the db must open and hold every write the child had
 * acknowledged (DESIGN §4: a process crash loses nothing, synced or not).
 *
 * The child writes keys "c<cycle>-<i>" (puts, some deletes of its own earlier keys, some
 * batches, every 16th write with sync) into a db with tiny memtables and files, so flushes and
 * compactions are in progress at most moments, and reports each acknowledged operation on a
 * pipe. The parent kills it after a random delay, reopens the db and checks every acknowledged
 * operation of every cycle so far (state accumulates across cycles, in the same directory).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ctest.h"
#include "kiwi.h"

#define CYCLES 25
#define MAX_OPS 400000

typedef struct {
    int cycle;
    int i;      /* the key's index */
    int op_index; /* the operation's index in its cycle */
    char op;    /* 'p' put, 'd' delete */
} ack;

static ack *g_acks;
static size_t g_nacks;

static kiwi_db *open_tiny(const char *dir)
{
    kiwi_options *o = kiwi_options_create("prod");
    kiwi_options_set(o, "max_memtable_size_mb", "0.0625", NULL);
    kiwi_options_set(o, "target_file_size_mb", "0.03125", NULL);
    kiwi_options_set(o, "level_base_mb", "0.125", NULL);
    kiwi_options_set(o, "l0_compaction_threshold", "3", NULL);
    kiwi_db *db = NULL;
    char *err = NULL;
    if (kiwi_open(dir, o, &db, &err) != KIWI_OK)
        fprintf(stderr, "open %s: %s\n", dir, err);
    kiwi_free(err);
    kiwi_options_destroy(o);
    return db;
}

static void value_of(int cycle, int i, char *buf, size_t n)
{
    snprintf(buf, n, "v-%d-%d-some-padding-to-fill-blocks-faster", cycle, i);
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
        if (i % 7 == 3 && i > 10) { /* delete an earlier key of this cycle */
            a.i = i - 10;
            a.op = 'd';
            snprintf(key, sizeof key, "c%02d-%07d", cycle, a.i);
            if (kiwi_delete(db, &wo, key, strlen(key), NULL) != KIWI_OK)
                _exit(4);
        } else if (i % 11 == 5) { /* a batch of one put (atomic unit) */
            a.op = 'p';
            snprintf(key, sizeof key, "c%02d-%07d", cycle, i);
            value_of(cycle, i, val, sizeof val);
            kiwi_batch *b = kiwi_batch_create();
            kiwi_batch_put(b, key, strlen(key), val, strlen(val));
            if (kiwi_write(db, &wo, b, NULL) != KIWI_OK)
                _exit(4);
            kiwi_batch_destroy(b);
        } else {
            a.op = 'p';
            snprintf(key, sizeof key, "c%02d-%07d", cycle, i);
            value_of(cycle, i, val, sizeof val);
            if (kiwi_put(db, &wo, key, strlen(key), val, strlen(val), NULL) != KIWI_OK)
                _exit(4);
        }
        if (write(fd, &a, sizeof a) != (ssize_t)sizeof a)
            _exit(5);
    }
    _exit(0);
}

/* The state after every acknowledged op: for each (cycle, i): 1 put, 2 deleted, 0 unknown. */
static int verify(const char *dir, int cycles_done)
{
    kiwi_db *db = open_tiny(dir);
    if (!db)
        return -1;
    static unsigned char state[CYCLES][MAX_OPS];
    memset(state, 0, sizeof state);
    int last_op[CYCLES];
    for (int c = 0; c < CYCLES; c++)
        last_op[c] = -1;
    for (size_t n = 0; n < g_nacks; n++) {
        state[g_acks[n].cycle][g_acks[n].i] = g_acks[n].op == 'p' ? 1 : 2;
        last_op[g_acks[n].cycle] = g_acks[n].op_index;
    }
    /* The operation in flight at the kill was not acknowledged: it may or may not have landed.
     * If it was a delete, its key may be gone. */
    for (int c = 0; c < cycles_done; c++) {
        int next = last_op[c] + 1;
        if (next % 7 == 3 && next > 10 && state[c][next - 10] == 1)
            state[c][next - 10] = 0;
    }
    int bad = 0;
    char key[32], want[96];
    for (int c = 0; c < cycles_done; c++) {
        for (int i = 0; i < MAX_OPS; i++) {
            if (state[c][i] == 0)
                continue;
            char *v = NULL;
            size_t vl = 0;
            snprintf(key, sizeof key, "c%02d-%07d", c, i);
            kiwi_status st = kiwi_get(db, NULL, key, strlen(key), &v, &vl, NULL);
            if (state[c][i] == 1) {
                value_of(c, i, want, sizeof want);
                if (st != KIWI_OK || vl != strlen(want) || memcmp(v, want, vl) != 0) {
                    if (bad < 5)
                        fprintf(stderr, "cycle %d: acknowledged put %s lost (status %d)\n", c,
                                key, st);
                    bad++;
                }
            } else if (st != KIWI_NOT_FOUND) {
                if (bad < 5)
                    fprintf(stderr, "cycle %d: acknowledged delete %s undone\n", c, key);
                bad++;
            }
            kiwi_free(v);
        }
    }
    char *stats = kiwi_property(db, "stats");
    const char *lv = stats ? strstr(stats, "\"levels\":") : NULL;
    if (lv && cycles_done == CYCLES)
        printf("final shape: %.*s\n", (int)(strchr(lv, ']') - lv + 1), lv);
    kiwi_free(stats);
    kiwi_close(db);
    return bad;
}

static void test_kill_cycles(void)
{
    char *dir = ctest_tmpdir("crash");
    g_acks = malloc(sizeof(ack) * (size_t)MAX_OPS * 4);
    g_nacks = 0;
    srand((unsigned)time(NULL));
    size_t cap = (size_t)MAX_OPS * 4;
    int cycles_done = 0;
    for (int cycle = 0; cycle < CYCLES; cycle++) {
        int fds[2];
        if (pipe(fds) != 0) {
            CHECK(!"pipe");
            break;
        }
        pid_t pid = fork();
        if (pid == 0) {
            close(fds[0]);
            child(dir, cycle, fds[1]);
        }
        close(fds[1]);
        struct timespec ts = {0, (long)(30 + rand() % 400) * 1000000L};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        ack a;
        ssize_t r;
        while ((r = read(fds[0], &a, sizeof a)) == (ssize_t)sizeof a)
            if (g_nacks < cap)
                g_acks[g_nacks++] = a;
        close(fds[0]);
        int status = 0;
        waitpid(pid, &status, 0);
        CHECK(WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) == 0));
        cycles_done = cycle + 1;
        int bad = verify(dir, cycles_done);
        CHECK(bad == 0);
        if (bad != 0)
            break;
    }
    printf("crash: %d kill cycles, %zu acknowledged operations verified\n", cycles_done, g_nacks);
    free(g_acks);
    ctest_rmtree(dir);
}

int main(void)
{
    RUN(test_kill_cycles);
    return ctest_summary();
}
