/*
 * skiplist.c: the concurrent skip list of skiplist.h: lock-free readers, CAS-linked inserts.
 *
 * Node layout in the arena (one allocation, 8-byte aligned):
 *
 *     +--------+-----+---------+---------+-----+-------------+----------------------+
 *     | height | pad | next[0] | next[1] | ... | next[h - 1] | entry bytes ...      |
 *     +--------+-----+---------+---------+-----+-------------+----------------------+
 *       u32      u32   8 bytes each (atomic pointers)          entry_size bytes
 *
 * The invariants are numbered in skiplist.h; comments below cite them as (1), (2), ...
 */
#include "skiplist.h"

#include <stdatomic.h>
#include <stdint.h>

struct kw_sl_node {
    uint32_t height;                      /* tower height, 1..MAX; fixed before publication */
    _Atomic(struct kw_sl_node *) next[];  /* next[i]: successor at level i, NULL at the end */
};

struct kw_skiplist {
    kw_arena *arena;             /* owns the list and every node */
    kw_skiplist_key_fn key_of;   /* the sort key of an entry */
    kw_skiplist_cmp_fn compare;  /* order of keys */
    _Atomic int max_height;      /* tallest tower so far; only grows (5) */
    kw_sl_node *head;            /* sentinel of height MAX with no entry */
    /* tail[i]: the node most recently linked last at level i (NULL: none yet). A hint for
     * appends (keys above every key in the list), never trusted: it may be stale, and the CAS
     * of sl_link_level re-walks from it when it is. */
    _Atomic(kw_sl_node *) tail[KW_SKIPLIST_MAX_HEIGHT];
};

/* ---- nodes ------------------------------------------------------------------------------ */

static kw_sl_node *sl_next(const kw_sl_node *n, int level)
{
    /* Acquire pairs with the release CAS that published the successor (1). The cast drops the
     * const the reader holds: loading from an atomic does not modify it. */
    return atomic_load_explicit((_Atomic(kw_sl_node *) *)&n->next[level], memory_order_acquire);
}

static const char *sl_entry(const kw_sl_node *n)
{
    return (const char *)&n->next[n->height];
}

char *kw_sl_node_entry(kw_sl_node *node)
{
    return (char *)&node->next[node->height];
}

static kw_sl_node *sl_alloc_node(kw_arena *arena, int height, size_t entry_size)
{
    size_t size = sizeof(kw_sl_node) + (size_t)height * sizeof(_Atomic(kw_sl_node *)) + entry_size;
    kw_sl_node *n = kw_arena_alloc(arena, size);
    n->height = (uint32_t)height;
    for (int i = 0; i < height; i++)
        atomic_init(&n->next[i], NULL);
    return n;
}

/* ---- random heights ----------------------------------------------------------------------- */

/* Per-thread xorshift64 state: the only mutable state outside a list, and private to a thread.
 * The initial-exec model makes it a fixed offset from the thread pointer even in the Lua module,
 * a shared object, where the default model costs a __tls_get_addr call per access (two per
 * insert); glibc keeps static TLS room for such small variables of dlopen()ed objects. */
static _Thread_local uint64_t sl_rng_state __attribute__((tls_model("initial-exec")));

static uint64_t sl_rng_next(void)
{
    uint64_t x = sl_rng_state;
    if (x == 0) {
        /* Seed from this thread's slot address (distinct per live thread), mixed by splitmix64. */
        x = (uint64_t)(uintptr_t)&sl_rng_state;
        x = (x ^ (x >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
        x = (x ^ (x >> 27)) * UINT64_C(0x94D049BB133111EB);
        x ^= x >> 31;
        if (x == 0)
            x = 1;
    }
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    sl_rng_state = x;
    return x;
}

/* Height h with probability (1/4)^(h-1) * 3/4, capped at MAX. */
static int sl_random_height(void)
{
    uint64_t r = sl_rng_next();
    int h = 1;
    while (h < KW_SKIPLIST_MAX_HEIGHT && (r & 3) == 0) {
        h++;
        r >>= 2;
    }
    return h;
}

/* ---- the list ----------------------------------------------------------------------------- */

kw_skiplist *kw_skiplist_create(kw_arena *arena, kw_skiplist_key_fn key_of,
                                kw_skiplist_cmp_fn compare)
{
    kw_skiplist *sl = kw_arena_alloc(arena, sizeof *sl);
    sl->arena = arena;
    sl->key_of = key_of;
    sl->compare = compare;
    atomic_init(&sl->max_height, 1);
    sl->head = sl_alloc_node(arena, KW_SKIPLIST_MAX_HEIGHT, 0);
    for (int i = 0; i < KW_SKIPLIST_MAX_HEIGHT; i++)
        atomic_init(&sl->tail[i], NULL);
    return sl;
}

int kw_skiplist_height(const kw_skiplist *sl)
{
    return atomic_load_explicit((_Atomic int *)&sl->max_height, memory_order_relaxed);
}

kw_sl_node *kw_skiplist_new_node(kw_skiplist *sl, size_t entry_size)
{
    return sl_alloc_node(sl->arena, sl_random_height(), entry_size);
}

/* compare(key of n, key); n == NULL (the end) sorts after every key. */
static int sl_cmp_node(const kw_skiplist *sl, const kw_sl_node *n, kw_slice key)
{
    if (n == NULL)
        return 1;
    return sl->compare(sl->key_of(sl_entry(n)), key);
}

/* The first node >= key, or NULL. Lock-free. */
static kw_sl_node *sl_find_ge(const kw_skiplist *sl, kw_slice key)
{
    const kw_sl_node *x = sl->head;
    const kw_sl_node *known_ge = NULL; /* a node already compared >= key: skip re-comparing it */
    int level = kw_skiplist_height(sl) - 1;
    for (;;) {
        kw_sl_node *next = sl_next(x, level);
        if (next != NULL && next != known_ge && sl_cmp_node(sl, next, key) < 0) {
            x = next; /* still before key: move right */
        } else if (level == 0) {
            return next;
        } else {
            known_ge = next;
            level--;
        }
    }
}

/* The last node < key, or the head when there is none. Lock-free. */
static const kw_sl_node *sl_find_lt(const kw_skiplist *sl, kw_slice key)
{
    const kw_sl_node *x = sl->head;
    int level = kw_skiplist_height(sl) - 1;
    for (;;) {
        kw_sl_node *next = sl_next(x, level);
        if (next != NULL && sl_cmp_node(sl, next, key) < 0)
            x = next;
        else if (level == 0)
            return x;
        else
            level--;
    }
}

/* The last node, or the head when the list is empty. */
static const kw_sl_node *sl_find_last(const kw_skiplist *sl)
{
    const kw_sl_node *x = sl->head;
    int level = kw_skiplist_height(sl) - 1;
    for (;;) {
        kw_sl_node *next = sl_next(x, level);
        if (next != NULL)
            x = next;
        else if (level == 0)
            return x;
        else
            level--;
    }
}

bool kw_skiplist_contains(const kw_skiplist *sl, kw_slice key)
{
    kw_sl_node *n = sl_find_ge(sl, key);
    return n != NULL && sl_cmp_node(sl, n, key) == 0;
}

/* ---- insert ------------------------------------------------------------------------------- */

/*
 * Walks level `level` right from *prev (a node < key, or the head) and leaves *prev = last node
 * < key and *next = first node >= key (or NULL). Returns false if *next has a key equal to key.
 * `bound` is a node already known to be > key (the splice's next one level up), or NULL: the
 * walk stops there without comparing it again. While the current node is compared, the two
 * nodes the walk may visit next are prefetched: the one after it (if it is < key) and the one
 * below the previous node (if not): a random insert into a large list is bound by these cache
 * misses, and fetching both overlaps them (fillrandom +15%, memtable.md).
 */
static bool sl_find_splice_bounded(const kw_skiplist *sl, kw_slice key, int level,
                                   kw_sl_node **prev, kw_sl_node **next, const kw_sl_node *bound)
{
    kw_sl_node *x = *prev;
    for (;;) {
        kw_sl_node *n = sl_next(x, level);
        int c = 1;
        if (n != NULL && n != bound) {
            /* both ways the walk can go after comparing n: down from x, right from n */
            if (level > 0)
                __builtin_prefetch(sl_next(x, level - 1));
            __builtin_prefetch(sl_next(n, level));
            c = sl_cmp_node(sl, n, key);
        }
        if (c < 0) {
            x = n;
            continue;
        }
        *prev = x;
        *next = n;
        return c != 0;
    }
}

static bool sl_find_splice(const kw_skiplist *sl, kw_slice key, int level, kw_sl_node **prev,
                           kw_sl_node **next)
{
    return sl_find_splice_bounded(sl, key, level, prev, next, NULL);
}

/* Raises max_height to at least h (CAS loop; it only grows (5)). Returns the new value. */
static int sl_raise_height(kw_skiplist *sl, int h)
{
    int cur = atomic_load_explicit(&sl->max_height, memory_order_relaxed);
    while (h > cur) {
        if (atomic_compare_exchange_weak_explicit(&sl->max_height, &cur, h, memory_order_relaxed,
                                                  memory_order_relaxed))
            return h;
    }
    return cur;
}

/* Links node at one level between the splice prev[level]/next[level], re-finding the splice on
 * CAS failure. Returns false only at level 0 when an equal key appeared concurrently. */
static bool sl_link_level(kw_skiplist *sl, kw_sl_node *node, kw_slice key, int level,
                          kw_sl_node **prev, kw_sl_node **next)
{
    for (;;) {
        /* The node is not reachable at this level yet, so a relaxed store suffices: the release
         * CAS below orders it before the publication (1)(6). */
        atomic_store_explicit(&node->next[level], next[level], memory_order_relaxed);
        kw_sl_node *expected = next[level];
        if (atomic_compare_exchange_strong_explicit(&prev[level]->next[level], &expected, node,
                                                    memory_order_acq_rel, memory_order_acquire))
            return true;
        /* Another insert changed prev's link: prev is still < key (3), so re-walk from it. */
        if (!sl_find_splice(sl, key, level, &prev[level], &next[level]) && level == 0)
            return false;
    }
}

/* An append (key above the last node's): the splice at every level is (tail, NULL) as far as
 * the hints know. True if it applies. Each tail used is compared < key, which is all the
 * linking needs: a concurrent insert may have linked a node after a tail (even one above key,
 * after our look at level 0), and the CAS of sl_link_level then fails and re-walks right from
 * the tail, which is < key. */
static bool sl_append_splice(const kw_skiplist *sl, kw_slice key, int top, kw_sl_node **prev,
                             kw_sl_node **next)
{
    kw_sl_node *last = atomic_load_explicit(&sl->tail[0], memory_order_acquire);
    if (last == NULL || sl_next(last, 0) != NULL || sl_cmp_node(sl, last, key) >= 0)
        return false;
    const kw_sl_node *checked = last;
    for (int level = 0; level < top; level++) {
        kw_sl_node *t = atomic_load_explicit(&sl->tail[level], memory_order_acquire);
        if (t != NULL && t != checked) {
            if (sl_cmp_node(sl, t, key) >= 0)
                return false; /* a racing insert moved the hint past key: search instead */
            checked = t;
        }
        prev[level] = t != NULL ? t : sl->head;
        next[level] = NULL;
    }
    return true;
}

bool kw_skiplist_insert(kw_skiplist *sl, kw_sl_node *node)
{
    kw_slice key = sl->key_of(sl_entry(node));
    int height = (int)node->height;
    int top = sl_raise_height(sl, height);

    /* The splice at every level: an append's from the tail hints, else found top-down from the
     * head (prev[top] is the head). */
    kw_sl_node *prev[KW_SKIPLIST_MAX_HEIGHT + 1] = {NULL}; /* levels < height <= top are set */
    kw_sl_node *next[KW_SKIPLIST_MAX_HEIGHT + 1] = {NULL};
    if (!sl_append_splice(sl, key, top, prev, next)) {
        prev[top] = sl->head;
        next[top] = NULL;
        for (int level = top - 1; level >= 0; level--) {
            prev[level] = prev[level + 1];
            /* next[level + 1] compared > key one level up (not equal: that returned already) */
            if (!sl_find_splice_bounded(sl, key, level, &prev[level], &next[level],
                                        next[level + 1]))
                return false; /* an equal key is linked at this level, hence at level 0 (2) */
        }
    }

    /* Bottom-up: once linked at level 0 the entry is visible; upper levels only speed up
     * searches (2). A node linked with nothing after it is the new tail hint of its level. */
    for (int level = 0; level < height; level++) {
        if (!sl_link_level(sl, node, key, level, prev, next))
            return false; /* only possible at level 0, before anything was linked */
        if (next[level] == NULL)
            atomic_store_explicit(&sl->tail[level], node, memory_order_release);
    }
    return true;
}

/* ---- iterator ----------------------------------------------------------------------------- */

void kw_skiplist_iter_init(kw_skiplist_iter *it, const kw_skiplist *sl)
{
    it->list = sl;
    it->node = NULL;
}

bool kw_skiplist_iter_valid(const kw_skiplist_iter *it)
{
    return it->node != NULL;
}

const char *kw_skiplist_iter_entry(const kw_skiplist_iter *it)
{
    return sl_entry(it->node);
}

void kw_skiplist_iter_next(kw_skiplist_iter *it)
{
    it->node = sl_next(it->node, 0);
}

void kw_skiplist_iter_prev(kw_skiplist_iter *it)
{
    /* No back pointers: search for the last node before the current key, as LevelDB does. */
    const kw_skiplist *sl = it->list;
    const kw_sl_node *x = sl_find_lt(sl, sl->key_of(sl_entry(it->node)));
    it->node = x == sl->head ? NULL : x;
}

void kw_skiplist_iter_seek(kw_skiplist_iter *it, kw_slice key)
{
    it->node = sl_find_ge(it->list, key);
}

void kw_skiplist_iter_seek_to_first(kw_skiplist_iter *it)
{
    it->node = sl_next(it->list->head, 0);
}

void kw_skiplist_iter_seek_to_last(kw_skiplist_iter *it)
{
    const kw_sl_node *x = sl_find_last(it->list);
    it->node = x == it->list->head ? NULL : x;
}
