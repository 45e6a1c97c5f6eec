/*
 * db_group.c: the writer queue and group commit: leader election, group formation, the commit of
 * a group (WAL and memtable), the gathering of synced groups, and the wake-ups of members and of
 * the next leader. The public write calls (db_write.c) enter here; making room in the memtable
 * (rotation, slowdowns, stalls) is db_rotate.c's.
 *
 * Group commit (LevelDB's design, DESIGN §4): each writer enqueues itself; the writer at the head
 * is the leader. The leader makes room (rotating a full memtable, stalling while too many
 * immutable memtables wait for flush), takes the writers queued behind it into its group,
 * assigns their sequence numbers, and with the mutex released appends every batch to the WAL with
 * one writev and — if any member asked for sync — one fdatasync, then inserts the group into the
 * memtable. It then publishes the group's last sequence (readers never see half a group), marks
 * the members done and wakes the next leader.
 *
 * Gathering: a leader whose group will fdatasync first waits, briefly and bounded, until as many
 * sync writers are queued as were writing at once around the last synced group, so writers just
 * woken from one fdatasync share the next instead of splitting into groups of 1 and n-1. A lone
 * sync writer (the last group saw one) never waits. docs/internals/write_path.md has the numbers.
 */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db.h"
#include "db_group.h"
#include "env.h"
#include "killpoint.h"

#define MAX_GROUP_BYTES (1u << 20) /* a group stops growing past 1 MiB of payload */
#define MAX_GROUP_SIZE 256
/* Waiting by yielding (write_path.md): a thread that waits for a group's fdatasync yields the CPU
 * in a loop, for up to SPIN_SYNCS recent fdatasync times, before it blocks; only while
 * fdatasyncs are short (a wake-up from a blocked wait is then a good part of one), and only
 * while its yields stay fast (a slow one means other threads want this CPU). One yield that
 * lasts longer than CONTENDED_YIELD_US means the CPU is contended (a yielding thread then waits
 * out other threads' time slices, ~3 ms here, where a blocked one would be woken at once; on a
 * quiet machine no yield took over 200 us): every thread stops yielding for
 * YIELD_BACKOFF_MIN_US, doubled while it repeats, up to YIELD_BACKOFF_MAX_US. */
#define SPIN_SYNCS 2
#define SPIN_SYNC_MAX_US 1000
#define SLOW_YIELD_US 20
#define SLOW_YIELDS_MAX 3
#define CONTENDED_YIELD_US 1000
#define YIELD_BACKOFF_MIN_US 10000
#define YIELD_BACKOFF_MAX_US 1000000

typedef struct {
    kw_memtable *mem;
    uint64_t puts, deletes;
} insert_ctx;

static void insert_op(void *arg, uint64_t seq, kw_value_type type, kw_slice key, kw_slice value)
{
    insert_ctx *c = arg;
    kw_memtable_add(c->mem, seq, type, key, value);
    if (type == KW_TYPE_VALUE)
        c->puts++;
    else
        c->deletes++;
}

/* Appends the group to the WAL and the memtable. Runs with mu released. */
static kiwi_status commit_group(kiwi_db *db, kw_writer **group, size_t n, bool sync,
                                kw_wal_writer *wal, kw_memtable *mem, uint64_t *sync_us,
                                char **errmsg)
{
    kw_slice parts[MAX_GROUP_SIZE];
    uint64_t bytes = 0;
    for (size_t i = 0; i < n; i++) {
        parts[i] = kw_batch_payload(group[i]->batch);
        bytes += parts[i].size + KW_WAL_HEADER_SIZE;
    }
    if (sync) /* inside the file's length, the fdatasync below commits no size change */
        kw_wal_writer_reserve(wal, bytes);
    kiwi_status st = sync ? kw_wal_writer_add_synced(wal, parts, n, errmsg)
                     : n == 1 ? kw_wal_writer_add(wal, parts[0], errmsg)
                              : kw_wal_writer_add_many(wal, parts, n, errmsg);
    kw_kill_point("wal.after_append");
    if (st == KIWI_OK && sync) {
        kw_kill_point("wal.before_sync");
        uint64_t t0 = kw_now_micros();
        st = kw_wal_writer_sync(wal, errmsg);
        *sync_us = kw_now_micros() - t0;
        atomic_fetch_add(&db->stats.wal_syncs, 1);
        kw_kill_point("wal.after_sync");
    }
    if (st != KIWI_OK)
        return st;
    atomic_fetch_add(&db->stats.wal_bytes, bytes);
    atomic_fetch_add(&db->stats.wal_writes, 1);
    insert_ctx c = {mem, 0, 0};
    uint64_t user_bytes = 0;
    for (size_t i = 0; i < n && st == KIWI_OK; i++) {
        st = kw_batch_iterate(parts[i], insert_op, &c, NULL, NULL, errmsg);
        user_bytes += group[i]->batch->user_bytes;
    }
    atomic_fetch_add(&db->stats.puts, c.puts);
    atomic_fetch_add(&db->stats.deletes, c.deletes);
    atomic_fetch_add(&db->stats.user_bytes_written, user_bytes);
    return st;
}

/* Leader: picks its group from the queue head. REQUIRES: mu held. */
static size_t pick_group(kiwi_db *db, kw_writer **group, bool *sync)
{
    size_t n = 0;
    uint64_t bytes = 0;
    *sync = false;
    for (kw_writer *w = db->writers_head; w && n < MAX_GROUP_SIZE; w = w->next) {
        if (w->batch == NULL) /* a flush request ends the group */
            break;
        size_t sz = kw_batch_payload(w->batch).size;
        if (n > 0 && bytes + sz > MAX_GROUP_BYTES)
            break;
        bytes += sz;
        *sync = *sync || w->sync;
        group[n++] = w;
    }
    return n;
}

/* What a leader does once it has released mu: post the thread writers it finished and the thread
 * writer it made the head, and run the async writers' callbacks. */
typedef struct {
    kw_writer *post[MAX_GROUP_SIZE + 1];
    size_t nposts;
    kw_writer *completed; /* async writers, linked by next */
} wakeups;

static void wakeups_init(wakeups *wk) /* not zeroed: only post[0..nposts) is ever read */
{
    wk->nposts = 0;
    wk->completed = NULL;
}

/* Marks a group member done. A thread writer is posted and an async writer's callback runs once
 * the leader has released mu (a writer woken while mu is held would only block on it again).
 * REQUIRES: mu held. */
static void finish_writer(kw_writer *w, kiwi_status st, const char *msg, wakeups *wk)
{
    w->done = true;
    w->status = st;
    if (st != KIWI_OK && msg)
        w->errmsg = kw_strdup(msg);
    if (w->async) {
        w->next = wk->completed;
        wk->completed = w;
    } else {
        wk->post[wk->nposts++] = w;
    }
}

/* Wakes whoever must lead next: a thread writer at the head leads itself (posted with the
 * wakeups: it cannot stop being the head meanwhile, since only the head leads), an async writer
 * at the head is led by the commit thread. REQUIRES: mu held. */
static void wake_next_leader(kiwi_db *db, wakeups *wk)
{
    kw_writer *h = db->writers_head;
    if (h == NULL) {
        db->writers_tail = NULL;
        if (db->closing)
            pthread_cond_broadcast(&db->done_cv);
    } else if (h->async) {
        pthread_cond_signal(&db->async_cv);
    } else {
        wk->post[wk->nposts++] = h;
    }
}

/* Posts the thread writers (each may return and free its node at once, so none is touched after
 * its post), then runs the async writers' callbacks and frees their nodes. REQUIRES: mu
 * released. */
static void run_wakeups(wakeups *wk)
{
    for (size_t i = 0; i < wk->nposts; i++)
        sem_post(&wk->post[i]->wake);
    kw_writer *completed = wk->completed;
    while (completed) {
        kw_writer *w = completed;
        completed = w->next;
        char *msg = w->errmsg;
        if (w->status != KIWI_OK && msg == NULL)
            msg = kw_strdup(kiwi_status_name(w->status));
        w->done_fn(w->done_ctx, w->status, w->status == KIWI_OK ? NULL : msg);
        if (w->status == KIWI_OK)
            free(msg);
        free(w);
    }
}

/* Commits group[0..n) (group[0] is the queue head): assigns the sequences, appends to the WAL
 * and the memtable with mu released, then publishes the last sequence, or on failure sets the
 * background error. REQUIRES: mu held; the group is at the head of the queue. */
static kiwi_status commit_locked(kiwi_db *db, kw_writer **group, size_t n, bool sync, char **err)
{
    for (size_t i = 0; i < n; i++) {
        kw_batch_set_sequence(group[i]->batch, db->last_seq + 1);
        db->last_seq += group[i]->batch->count;
    }
    uint64_t last = db->last_seq;
    kw_wal_writer *wal = db->wal;
    kw_memtable *mem = db->mem;
    atomic_fetch_add(&db->stats.write_groups, 1);
    uint64_t sync_us = 0;
    pthread_mutex_unlock(&db->mu);
    kiwi_status st = commit_group(db, group, n, sync, wal, mem, &sync_us, err);
    pthread_mutex_lock(&db->mu);
    if (sync_us > 0) /* a moving average over about the last 8 fdatasyncs */
        db->sync_micros_avg = db->sync_micros_avg == 0
                                  ? sync_us
                                  : (db->sync_micros_avg * 7 + sync_us) / 8;
    if (st == KIWI_OK)
        atomic_store(&db->visible_seq, last);
    else
        kw_db_set_bg_error(db, st, *err);
    return st;
}

static bool is_sync_writer(const kw_writer *w)
{
    return w->sync && w->batch != NULL;
}

/* Whether the group a leader would pick from the queue head now includes w. REQUIRES: mu. */
static bool group_includes(kiwi_db *db, const kw_writer *w)
{
    kw_writer *group[MAX_GROUP_SIZE];
    bool sync;
    size_t n = pick_group(db, group, &sync);
    return n > 0 && group[n - 1] == w;
}

/* Ends the head's gathering (by the head, or by the writer taking its group over). */
static void end_gathering(kiwi_db *db)
{
    db->gatherer = NULL;
    db->gather_target = 0;
    atomic_fetch_add(&db->gather_micros, kw_now_micros() - db->gather_start);
}

/* Appends w to the queue. While the head gathers: a thread writer that brings the queued sync
 * writers to the target, and that the head's group would include, takes the group over (returns
 * true: it commits the group from the head to itself, the head becomes a member); when an async
 * writer reaches the target or a flush request (which ends any group) arrives, the head is woken
 * to lead. REQUIRES: mu. */
static bool enqueue_writer(kiwi_db *db, kw_writer *w)
{
    if (db->writers_tail)
        db->writers_tail->next = w;
    else
        db->writers_head = w;
    db->writers_tail = w;
    if (is_sync_writer(w))
        db->sync_queued++;
    if (db->gatherer == NULL || (w->batch != NULL && db->sync_queued < db->gather_target))
        return false;
    kw_writer *head = db->gatherer; /* the queue head */
    if (!w->async && w->batch != NULL && !head->async && group_includes(db, w)) {
        end_gathering(db);
        atomic_fetch_add(&db->gather_handoffs, 1);
        return true;
    }
    if (head->async)
        pthread_cond_signal(&db->async_cv);
    else
        sem_post(&head->wake);
    return false;
}

static void dequeue_head(kiwi_db *db)
{
    if (is_sync_writer(db->writers_head))
        db->sync_queued--;
    db->writers_head = db->writers_head->next;
}

/* How long a thread writer that waits for a synced group yields before it blocks, in
 * microseconds (see SPIN_SYNCS; 0: it blocks at once): nothing unless it is a sync writer, the
 * sync_waits setting is "yield", recent fdatasyncs were short and yielding is not suspended.
 * REQUIRES: mu. */
static uint64_t yield_budget(const kiwi_db *db, const kw_writer *w)
{
    if (!w->sync || !db->opts.sync_waits_yield || db->sync_micros_avg == 0 ||
        db->sync_micros_avg > SPIN_SYNC_MAX_US ||
        kw_now_micros() < atomic_load_explicit(&db->yield_resume_at, memory_order_relaxed))
        return 0;
    return SPIN_SYNCS * db->sync_micros_avg;
}

/* Stops all yielding for a while (doubling the pause while yields keep being contended). */
static void suspend_yielding(kiwi_db *db, uint64_t now)
{
    uint64_t b = atomic_load_explicit(&db->yield_backoff_us, memory_order_relaxed);
    b = b == 0 ? YIELD_BACKOFF_MIN_US : (b * 2 < YIELD_BACKOFF_MAX_US ? b * 2 : YIELD_BACKOFF_MAX_US);
    atomic_store_explicit(&db->yield_backoff_us, b, memory_order_relaxed);
    atomic_store_explicit(&db->yield_resume_at, now + b, memory_order_relaxed);
    atomic_fetch_add(&db->sync_yield_backoffs, 1);
}

/* Yields the CPU in a loop until sem is posted (true: the post is taken), the budget passes or
 * the yields turn slow (false: the caller blocks instead). A post then finds the thread running,
 * not asleep: on a VM, waking a blocked thread costs tens of microseconds. A yield is timed as
 * soon as it returns, before the post is looked for: a contended yield lasts a time slice
 * (milliseconds), long enough for the post to have come meanwhile, and it must suspend yielding
 * all the same. */
static bool yield_until_posted(kiwi_db *db, sem_t *sem, uint64_t budget_us)
{
    if (budget_us == 0)
        return false;
    uint64_t start = kw_now_micros();
    bool contended = false;
    int yields = 0, slow = 0;
    for (;;) {
        if (sem_trywait(sem) == 0) {
            /* after fast yields, yielding works: a later suspension starts short */
            if (yields > 0 && !contended &&
                atomic_load_explicit(&db->yield_backoff_us, memory_order_relaxed) != 0)
                atomic_store_explicit(&db->yield_backoff_us, 0, memory_order_relaxed);
            return true;
        }
        uint64_t before = kw_now_micros();
        if (contended || before - start >= budget_us)
            return false;
        kw_syscalls.sched_yield();
        yields++;
        uint64_t took = kw_now_micros() - before;
        if (took > CONTENDED_YIELD_US) {
            suspend_yielding(db, before + took);
            contended = true;
        } else if (took > SLOW_YIELD_US && ++slow >= SLOW_YIELDS_MAX) {
            return false;
        }
    }
}

/* Counts a sync writer's wait in the stats: ended while yielding, or blocked. */
static void count_wait(kiwi_db *db, const kw_writer *w, bool yielded)
{
    if (w->sync)
        atomic_fetch_add(yielded ? &db->sync_waits_yielded : &db->sync_waits_blocked, 1);
}

/* Waits for w's post (yielding first for up to budget_us, then blocked). */
static void writer_wait(kiwi_db *db, kw_writer *w, uint64_t budget_us)
{
    bool yielded = yield_until_posted(db, &w->wake, budget_us);
    count_wait(db, w, yielded);
    if (yielded)
        return;
    while (sem_wait(&w->wake) != 0) /* EINTR */
        ;
}

/* How many queued sync writers the leader should wait for, or 0 not to wait: only when the group
 * will fdatasync, and fewer sync writers are queued than were seen around the last synced group.
 * REQUIRES: mu; the queue is not empty. */
static size_t gather_target(const kiwi_db *db)
{
    if (db->sync_queued == 0 || db->sync_micros_avg == 0 || db->closing ||
        db->writers_tail->batch == NULL)
        return 0;
    size_t want = db->sync_seen < MAX_GROUP_SIZE ? db->sync_seen : MAX_GROUP_SIZE;
    return want > db->sync_queued ? want : 0;
}

/* Microseconds from now to a CLOCK_REALTIME deadline, 0 if it has passed. */
static uint64_t micros_until(const struct timespec *deadline)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t us = (int64_t)(deadline->tv_sec - now.tv_sec) * 1000000 +
                 (deadline->tv_nsec - now.tv_nsec) / 1000;
    return us > 0 ? (uint64_t)us : 0;
}

/* One wait of a gathering leader, mu released meanwhile: the commit thread waits on async_cv, a
 * thread writer on its own semaphore. Returns false once the deadline has passed. */
static bool gather_wait(kiwi_db *db, kw_writer *leader, const struct timespec *deadline)
{
    if (leader->async)
        return pthread_cond_timedwait(&db->async_cv, &db->mu, deadline) != ETIMEDOUT;
    uint64_t budget = yield_budget(db, leader);
    uint64_t left = micros_until(deadline);
    bool to_deadline = budget >= left; /* the deadline is one fdatasync away at most */
    if (to_deadline)
        budget = left;
    pthread_mutex_unlock(&db->mu);
    bool yielded = yield_until_posted(db, &leader->wake, budget);
    if (yielded || !to_deadline || budget == 0) /* not counted: yielding up to the deadline */
        count_wait(db, leader, yielded);
    if (yielded) {
        pthread_mutex_lock(&db->mu);
        return true;
    }
    int rc;
    do
        rc = sem_timedwait(&leader->wake, deadline);
    while (rc != 0 && errno == EINTR);
    bool timed_out = rc != 0 && errno == ETIMEDOUT;
    pthread_mutex_lock(&db->mu);
    return !timed_out;
}

typedef enum {
    GATHER_LEAD,   /* no wait, or the target was met: the leader commits */
    GATHER_MISSED, /* the bound passed first: the leader commits what came */
    GATHER_TAKEN   /* a writer took the group over: the leader is a member of it */
} gather_result;

/* The head waits until gather_target's count is queued, a flush request arrives, or one recent
 * fdatasync time has passed: the break-even, since waiting longer than the fdatasync a wait hopes
 * to save cannot pay (and a shorter bound lets the timer of a head whose group was taken over
 * fire during that group's fdatasync, which measurably slows it). REQUIRES: mu; leader is the
 * head. */
static gather_result gather(kiwi_db *db, kw_writer *leader)
{
    size_t target = gather_target(db);
    if (target == 0)
        return GATHER_LEAD;
    uint64_t ns = db->sync_micros_avg * 1000;
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline); /* the clock of sem_timedwait and async_cv */
    deadline.tv_sec += (time_t)(ns / 1000000000);
    deadline.tv_nsec += (long)(ns % 1000000000);
    if (deadline.tv_nsec >= 1000000000) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000;
    }
    db->gatherer = leader;
    db->gather_target = target;
    db->gather_start = kw_now_micros();
    atomic_fetch_add(&db->gathers, 1);
    bool timed_out = false;
    while (!timed_out && db->gatherer == leader && db->sync_queued < target &&
           db->writers_tail->batch != NULL)
        timed_out = !gather_wait(db, leader, &deadline);
    if (db->gatherer != leader) /* taken over (the taker may even be gathering again by now) */
        return GATHER_TAKEN;
    atomic_fetch_add(&db->gather_timeouts, timed_out ? 1 : 0);
    end_gathering(db);
    return timed_out ? GATHER_MISSED : GATHER_LEAD;
}

/* Dequeues group[0..n) (the queue head onwards), finishes every member but `self`, notes how many
 * sync writers were writing at once (with `missed`, only those that came within the bound), and
 * wakes the next leader. REQUIRES: mu. */
static void finish_group(kiwi_db *db, kw_writer **group, size_t n, const kw_writer *self,
                         bool gsync, bool missed, kiwi_status st, const char *err, wakeups *wk)
{
    size_t nsync = 0;
    for (size_t i = 0; i < n; i++) {
        nsync += is_sync_writer(group[i]) ? 1 : 0;
        dequeue_head(db);
        if (group[i] != self)
            finish_writer(group[i], st, err, wk);
    }
    if (gsync && st == KIWI_OK) /* the sync writers in the group and those queued behind it */
        db->sync_seen = nsync + (missed ? 0 : db->sync_queued);
    wake_next_leader(db, wk);
}

/* Commits the group that starts at the queue head, which includes `self` (the head, or the writer
 * that took a gathering over), and finishes it. REQUIRES: mu. */
static kiwi_status commit_from_head(kiwi_db *db, kw_writer *self, bool missed, wakeups *wk,
                                    char **err)
{
    kw_writer *group[MAX_GROUP_SIZE];
    bool gsync = false;
    size_t n = pick_group(db, group, &gsync);
    kiwi_status st = commit_locked(db, group, n, gsync, err);
    finish_group(db, group, n, self, gsync, missed, st, *err, wk);
    return st;
}

/* Leads one group from `leader` (the queue head): makes room, gathers, commits; a flush request
 * only makes room. Member wakeups go to *wk, the status to *st, its message to *err. Returns false
 * having done nothing more when a writer took the gathered group over: leader is a member of it
 * now. REQUIRES: mu; leader == db->writers_head. */
static bool lead_group(kiwi_db *db, kw_writer *leader, wakeups *wk, kiwi_status *st, char **err)
{
    *st = kw_db_make_room(db, leader->batch == NULL, err);
    if (*st != KIWI_OK || leader->batch == NULL) {
        finish_group(db, &leader, 1, leader, false, false, *st, *err, wk);
        return true;
    }
    gather_result g = gather(db, leader);
    if (g == GATHER_TAKEN)
        return false;
    *st = commit_from_head(db, leader, g == GATHER_MISSED, wk, err);
    return true;
}

/* A thread writer's result once a leader has committed it (done). */
static kiwi_status member_result(kw_writer *w, char **errmsg)
{
    sem_destroy(&w->wake); /* nobody posts it any more */
    if (w->status != KIWI_OK && errmsg) { /* the leader's message, status name first */
        free(*errmsg);
        *errmsg = w->errmsg ? w->errmsg : kw_strdup(kiwi_status_name(w->status));
        w->errmsg = NULL;
    }
    free(w->errmsg);
    return w->status;
}

/* Runs one write (batch) or, with batch == NULL, a memtable rotation for kiwi_flush. */
kiwi_status kw_group_write(kiwi_db *db, bool sync, kiwi_batch *batch, char **errmsg)
{
    kw_writer w;
    memset(&w, 0, sizeof w);
    w.batch = batch;
    w.sync = sync;
    sem_init(&w.wake, 0, 0);
    pthread_mutex_lock(&db->mu);
    if (db->closing) {
        pthread_mutex_unlock(&db->mu);
        sem_destroy(&w.wake);
        return kw_error(errmsg, KIWI_CLOSED, "the db at %s is closed", db->path);
    }
    /* The queue links writers that live on their callers' stacks: a writer that is not the head
     * waits for the post sent after it was dequeued (done) or made the head, and its frame stays
     * until then. The post orders the leader's writes to w before our reads. */
    bool take_over = enqueue_writer(db, &w); // cppcheck-suppress autoVariables
    if (!take_over && db->writers_head != &w) {
        uint64_t budget = yield_budget(db, &w);
        pthread_mutex_unlock(&db->mu);
        writer_wait(db, &w, budget);
        if (w.done) /* a leader committed us */
            return member_result(&w, errmsg);
        pthread_mutex_lock(&db->mu); /* we are the head: lead */
    }
    char *err = NULL;
    kiwi_status st = KIWI_OK;
    wakeups wk;
    wakeups_init(&wk);
    if (take_over) {
        st = commit_from_head(db, &w, false, &wk, &err);
    } else if (!lead_group(db, &w, &wk, &st, &err)) {
        while (!w.done) { /* taken over; a stale gathering post may wake us early */
            uint64_t budget = yield_budget(db, &w);
            pthread_mutex_unlock(&db->mu);
            writer_wait(db, &w, budget);
            pthread_mutex_lock(&db->mu);
        }
        pthread_mutex_unlock(&db->mu);
        return member_result(&w, errmsg);
    }
    pthread_mutex_unlock(&db->mu);
    run_wakeups(&wk);
    sem_destroy(&w.wake); /* gathering may have left posts on it; nobody posts it any more */
    if (st != KIWI_OK && errmsg) {
        free(*errmsg);
        *errmsg = err;
        err = NULL;
    }
    free(err);
    return st;
}

void kw_group_enqueue_async(kiwi_db *db, kw_writer *w)
{
    enqueue_writer(db, w);
    if (db->writers_head == w)
        pthread_cond_signal(&db->async_cv);
}

void kw_group_lead_async(kiwi_db *db)
{
    kw_writer *leader = db->writers_head;
    char *err = NULL;
    wakeups wk;
    wakeups_init(&wk);
    kiwi_status st = KIWI_OK;
    lead_group(db, leader, &wk, &st, &err); /* an async head is never taken over */
    finish_writer(leader, st, err, &wk);
    free(err);
    pthread_mutex_unlock(&db->mu);
    run_wakeups(&wk);
    pthread_mutex_lock(&db->mu);
}

/* Whether a write can go in at once: nobody queued or leading, and room in the active memtable
 * with nothing owed (kw_db_has_room_now). REQUIRES: mu. */
static bool can_write_now(const kiwi_db *db)
{
    return db->writers_head == NULL && kw_db_has_room_now(db);
}

kiwi_status kw_group_write_now(kiwi_db *db, kiwi_batch *batch, char **errmsg)
{
    pthread_mutex_lock(&db->mu);
    if (db->closing) {
        pthread_mutex_unlock(&db->mu);
        return kw_error(errmsg, KIWI_CLOSED, "the db at %s is closed", db->path);
    }
    if (!can_write_now(db)) {
        pthread_mutex_unlock(&db->mu);
        return KIWI_BUSY;
    }
    /* Lead a group of one: at the head of the queue, writers arriving meanwhile wait behind
     * this one exactly as behind any leader, and kiwi_close waits for it. */
    kw_writer w;
    memset(&w, 0, sizeof w);
    w.batch = batch;
    enqueue_writer(db, &w); // cppcheck-suppress autoVariables
    kw_writer *group[1] = {&w};
    char *err = NULL;
    kiwi_status st = commit_locked(db, group, 1, false, &err);
    dequeue_head(db);
    wakeups wk;
    wakeups_init(&wk);
    wake_next_leader(db, &wk);
    pthread_mutex_unlock(&db->mu);
    run_wakeups(&wk);
    if (st != KIWI_OK && errmsg) {
        free(*errmsg);
        *errmsg = err;
        err = NULL;
    }
    free(err);
    return st;
}
