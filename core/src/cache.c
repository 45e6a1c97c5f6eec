/*
 * cache.c: the sharded LRU cache and the leases of cache.h (the three-tier block cache built
 * from it is in block_cache.c).
 *
 * Per shard (under its mutex): a chained hash table of every entry lookups can find, and an LRU
 * list of those entries nobody pins, oldest first. An entry's refs count its handles plus one
 * while it is in the cache. Invariants, per entry:
 *   - in_cache <=> it is in its shard's hash table;
 *   - on the LRU list <=> in_cache && refs == 1 (pinned entries are on no list);
 *   - freed exactly when refs reaches 0 (only after it left the cache).
 * Per shard: the LRU list is sorted by tick (ticks come from one atomic clock and are taken under
 * the shard mutex), and oldest[shard] mirrors the tick of its head so that an evictor can pick
 * the globally least recently used shard tail without taking every lock. The 16 mirrors share
 * two cache lines (one scan per eviction reads just those) and are written only when a head
 * changes.
 * Global: usage == the sum of charges of entries not yet freed; pinned (per shard) == the sum of
 * charges of entries with a handle held.
 */
#include "cache.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct kw_cache_handle {
    kw_cache_handle *next_hash;   /* chain in the shard's bucket */
    kw_cache_handle *prev, *next; /* LRU links; NULL when not on the LRU list */
    uint64_t file, offset;        /* the key */
    uint64_t hash;
    uint64_t tick;                /* when it last joined the LRU list */
    void *value;
    size_t charge;
    kw_cache_deleter deleter;
    uint32_t refs;                /* handles, + 1 while in_cache (shard mutex) */
    bool in_cache;
};

typedef struct {
    _Alignas(64) pthread_mutex_t mu; /* own cache line: shards do not share one */
    kw_cache_handle **buckets;     /* nbuckets chains, a power of two */
    size_t nbuckets;
    kw_cache_handle lru;           /* sentinel: lru.next oldest unpinned entry, lru.prev newest */
    _Atomic uint64_t *oldest;      /* &cache->oldest[this shard]: tick of lru.next, or UINT64_MAX */
    /* counters: written under mu, read by anyone */
    _Atomic uint64_t hits, misses, inserts, evictions, rejects, entries, pinned;
} shard;

struct kw_cache {
    shard shards[KW_CACHE_SHARDS];
    _Alignas(64) _Atomic uint64_t oldest[KW_CACHE_SHARDS]; /* see shard.oldest */
    _Atomic size_t capacity;
    _Atomic uint64_t usage;        /* see the invariants above */
    _Atomic uint64_t clock;        /* LRU ticks */
};

/* ---- helpers --------------------------------------------------------------------------------- */

static void bump(_Atomic uint64_t *x, int64_t d) /* REQUIRES: the shard mutex (one writer) */
{
    atomic_store_explicit(x, atomic_load_explicit(x, memory_order_relaxed) + (uint64_t)d,
                          memory_order_relaxed);
}

static uint64_t load(const _Atomic uint64_t *x)
{
    return atomic_load_explicit(x, memory_order_relaxed);
}

static uint64_t hash_key(uint64_t file, uint64_t offset)
{
    uint64_t h = file * UINT64_C(0x9E3779B97F4A7C15) ^ offset; /* splitmix64's finaliser */
    h = (h ^ (h >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    h = (h ^ (h >> 27)) * UINT64_C(0x94D049BB133111EB);
    return h ^ (h >> 31);
}

static shard *shard_of(kw_cache *c, uint64_t hash)
{
    return &c->shards[hash >> 60]; /* KW_CACHE_SHARDS == 16: the top 4 bits */
}

/* The link that points at the entry for the key (or the chain's terminating NULL). */
static kw_cache_handle **find_slot(shard *s, uint64_t file, uint64_t offset, uint64_t hash)
{
    kw_cache_handle **slot = &s->buckets[hash & (s->nbuckets - 1)];
    while (*slot != NULL && ((*slot)->file != file || (*slot)->offset != offset))
        slot = &(*slot)->next_hash;
    return slot;
}

static void grow(shard *s)
{
    size_t n = s->nbuckets * 2;
    kw_cache_handle **b = kw_calloc(n, sizeof(kw_cache_handle *));
    for (size_t i = 0; i < s->nbuckets; i++) {
        kw_cache_handle *e = s->buckets[i];
        while (e != NULL) {
            kw_cache_handle *next = e->next_hash;
            e->next_hash = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
            e = next;
        }
    }
    free(s->buckets);
    s->buckets = b;
    s->nbuckets = n;
}

static void set_oldest(shard *s)
{
    uint64_t t = s->lru.next != &s->lru ? s->lru.next->tick : UINT64_MAX;
    if (atomic_load_explicit(s->oldest, memory_order_relaxed) != t) /* keep the line shared */
        atomic_store_explicit(s->oldest, t, memory_order_relaxed);
}

static void lru_remove(shard *s, kw_cache_handle *e)
{
    e->prev->next = e->next;
    e->next->prev = e->prev;
    e->prev = e->next = NULL;
    set_oldest(s);
}

static void lru_append(kw_cache *c, shard *s, kw_cache_handle *e)
{
    e->tick = atomic_fetch_add_explicit(&c->clock, 1, memory_order_relaxed);
    e->next = &s->lru;
    e->prev = s->lru.prev;
    e->prev->next = e;
    s->lru.prev = e;
    set_oldest(s);
}

/* Takes e (found at *slot) out of the cache. Returns true if it is now unreferenced and must be
 * freed (after the mutex is released). REQUIRES: s->mu, e in_cache. */
static bool detach(shard *s, kw_cache_handle **slot, kw_cache_handle *e)
{
    *slot = e->next_hash;
    e->next_hash = NULL;
    e->in_cache = false;
    bump(&s->entries, -1);
    if (e->refs == 1)
        lru_remove(s, e);
    return --e->refs == 0;
}

static void free_entry(kw_cache *c, kw_cache_handle *e)
{
    atomic_fetch_sub_explicit(&c->usage, e->charge, memory_order_relaxed);
    if (e->deleter != NULL)
        e->deleter(e->value);
    free(e);
}

/* Evicts the oldest unpinned entry across the shards; false if there is none. */
static bool evict_one(kw_cache *c)
{
    int best = -1;
    uint64_t best_tick = UINT64_MAX;
    for (int i = 0; i < KW_CACHE_SHARDS; i++) {
        uint64_t t = load(&c->oldest[i]);
        if (t < best_tick) {
            best_tick = t;
            best = i;
        }
    }
    if (best < 0)
        return false;
    shard *s = &c->shards[best];
    kw_cache_handle *victim = NULL;
    pthread_mutex_lock(&s->mu);
    kw_cache_handle *e = s->lru.next;
    if (e != &s->lru) { /* else another thread took it meanwhile: the caller retries */
        bool unreferenced = detach(s, find_slot(s, e->file, e->offset, e->hash), e);
        if (unreferenced)
            victim = e;
        bump(&s->evictions, 1);
    }
    pthread_mutex_unlock(&s->mu);
    if (victim != NULL)
        free_entry(c, victim);
    return true;
}

static void evict_to_budget(kw_cache *c)
{
    while (load(&c->usage) > atomic_load_explicit(&c->capacity, memory_order_relaxed) &&
           evict_one(c)) {
    }
}

/* ---- the API --------------------------------------------------------------------------------- */

kw_cache *kw_cache_create(size_t capacity)
{
    void *mem = NULL;
    if (posix_memalign(&mem, 64, sizeof(kw_cache)) != 0)
        mem = NULL;
    if (mem == NULL)
        abort(); /* the kw_malloc policy: allocation failure is fatal */
    kw_cache *c = mem;
    memset(c, 0, sizeof *c);
    for (int i = 0; i < KW_CACHE_SHARDS; i++) {
        shard *s = &c->shards[i];
        pthread_mutex_init(&s->mu, NULL);
        s->nbuckets = 16;
        s->buckets = kw_calloc(s->nbuckets, sizeof(kw_cache_handle *));
        s->lru.next = s->lru.prev = &s->lru;
        s->oldest = &c->oldest[i];
        atomic_init(s->oldest, UINT64_MAX);
    }
    atomic_init(&c->capacity, capacity);
    atomic_init(&c->clock, 1);
    return c;
}

void kw_cache_destroy(kw_cache *c)
{
    if (c == NULL)
        return;
    for (int i = 0; i < KW_CACHE_SHARDS; i++) {
        shard *s = &c->shards[i];
        for (size_t b = 0; b < s->nbuckets; b++) {
            kw_cache_handle *e = s->buckets[b];
            while (e != NULL) {
                kw_cache_handle *next = e->next_hash;
                free_entry(c, e);
                e = next;
            }
        }
        free(s->buckets);
        pthread_mutex_destroy(&s->mu);
    }
    free(c);
}

kw_cache_handle *kw_cache_lookup(kw_cache *c, uint64_t file, uint64_t offset)
{
    uint64_t h = hash_key(file, offset);
    shard *s = shard_of(c, h);
    pthread_mutex_lock(&s->mu);
    kw_cache_handle *e = *find_slot(s, file, offset, h);
    if (e != NULL) {
        if (e->refs == 1) { /* first pin: off the LRU list */
            lru_remove(s, e);
            bump(&s->pinned, (int64_t)e->charge);
        }
        e->refs++;
        bump(&s->hits, 1);
    } else {
        bump(&s->misses, 1);
    }
    pthread_mutex_unlock(&s->mu);
    return e;
}

kw_cache_handle *kw_cache_insert(kw_cache *c, uint64_t file, uint64_t offset, void *value,
                                 size_t charge, kw_cache_deleter deleter)
{
    uint64_t h = hash_key(file, offset);
    shard *s = shard_of(c, h);
    if (charge > atomic_load_explicit(&c->capacity, memory_order_relaxed)) {
        pthread_mutex_lock(&s->mu);
        bump(&s->rejects, 1);
        pthread_mutex_unlock(&s->mu);
        return NULL;
    }
    kw_cache_handle *e = kw_calloc(1, sizeof *e);
    e->file = file;
    e->offset = offset;
    e->hash = h;
    e->value = value;
    e->charge = charge;
    e->deleter = deleter;
    e->refs = 2; /* the cache's and the returned handle's */
    e->in_cache = true;
    atomic_fetch_add_explicit(&c->usage, charge, memory_order_relaxed);

    kw_cache_handle *old_free = NULL;
    pthread_mutex_lock(&s->mu);
    kw_cache_handle **slot = find_slot(s, file, offset, h);
    if (*slot != NULL) {
        kw_cache_handle *old = *slot;
        if (detach(s, slot, old))
            old_free = old;
    }
    e->next_hash = *slot;
    *slot = e;
    bump(&s->entries, 1);
    bump(&s->inserts, 1);
    bump(&s->pinned, (int64_t)charge);
    if (load(&s->entries) > s->nbuckets)
        grow(s);
    pthread_mutex_unlock(&s->mu);
    if (old_free != NULL)
        free_entry(c, old_free);
    evict_to_budget(c);
    return e;
}

void *kw_cache_value(const kw_cache_handle *h)
{
    return h->value;
}

void kw_cache_release(kw_cache *c, kw_cache_handle *e)
{
    if (e == NULL)
        return;
    shard *s = shard_of(c, e->hash);
    bool unreferenced = false;
    pthread_mutex_lock(&s->mu);
    e->refs--;
    if (e->in_cache && e->refs == 1) {
        lru_append(c, s, e);
        bump(&s->pinned, -(int64_t)e->charge);
    } else if (e->refs == 0) { /* detached while pinned: its memory goes now */
        bump(&s->pinned, -(int64_t)e->charge);
        unreferenced = true;
    }
    pthread_mutex_unlock(&s->mu);
    if (unreferenced)
        free_entry(c, e);
    evict_to_budget(c); /* a shrink that happened while e was pinned takes effect now */
}

void kw_cache_erase(kw_cache *c, uint64_t file, uint64_t offset)
{
    uint64_t h = hash_key(file, offset);
    shard *s = shard_of(c, h);
    kw_cache_handle *victim = NULL;
    pthread_mutex_lock(&s->mu);
    kw_cache_handle **slot = find_slot(s, file, offset, h);
    if (*slot != NULL) {
        kw_cache_handle *e = *slot;
        if (detach(s, slot, e))
            victim = e;
    }
    pthread_mutex_unlock(&s->mu);
    if (victim != NULL)
        free_entry(c, victim);
}

void kw_cache_erase_file(kw_cache *c, uint64_t file)
{
    for (int i = 0; i < KW_CACHE_SHARDS; i++) {
        shard *s = &c->shards[i];
        kw_cache_handle *victims = NULL; /* linked through next_hash */
        pthread_mutex_lock(&s->mu);
        for (size_t b = 0; b < s->nbuckets; b++) {
            kw_cache_handle **slot = &s->buckets[b];
            while (*slot != NULL) {
                kw_cache_handle *e = *slot;
                if (e->file != file) {
                    slot = &e->next_hash;
                    continue;
                }
                if (detach(s, slot, e)) { /* *slot now points past e */
                    e->next_hash = victims;
                    victims = e;
                }
            }
        }
        pthread_mutex_unlock(&s->mu);
        while (victims != NULL) {
            kw_cache_handle *next = victims->next_hash;
            free_entry(c, victims);
            victims = next;
        }
    }
}

bool kw_cache_touch(kw_cache *c, uint64_t file, uint64_t offset, uint64_t hits)
{
    uint64_t h = hash_key(file, offset);
    shard *s = shard_of(c, h);
    pthread_mutex_lock(&s->mu);
    kw_cache_handle *e = *find_slot(s, file, offset, h);
    if (e != NULL && e->refs == 1) { /* unpinned: to the most recent end */
        lru_remove(s, e);
        lru_append(c, s, e);
    }
    bump(&s->hits, (int64_t)hits);
    pthread_mutex_unlock(&s->mu);
    return e != NULL;
}

void kw_cache_count_misses(kw_cache *c, uint64_t file, uint64_t offset, uint64_t n)
{
    shard *s = shard_of(c, hash_key(file, offset));
    pthread_mutex_lock(&s->mu);
    bump(&s->misses, (int64_t)n);
    pthread_mutex_unlock(&s->mu);
}

void kw_cache_set_capacity(kw_cache *c, size_t capacity)
{
    atomic_store_explicit(&c->capacity, capacity, memory_order_relaxed);
    evict_to_budget(c);
}

size_t kw_cache_capacity(const kw_cache *c)
{
    return atomic_load_explicit(&c->capacity, memory_order_relaxed);
}

void kw_cache_get_stats(const kw_cache *c, kw_cache_stats *out)
{
    memset(out, 0, sizeof *out);
    for (int i = 0; i < KW_CACHE_SHARDS; i++) {
        const shard *s = &c->shards[i];
        out->hits += load(&s->hits);
        out->misses += load(&s->misses);
        out->inserts += load(&s->inserts);
        out->evictions += load(&s->evictions);
        out->rejects += load(&s->rejects);
        out->entries += load(&s->entries);
        out->pinned += load(&s->pinned);
    }
    out->usage = load(&c->usage);
    out->capacity = kw_cache_capacity(c);
}

size_t kw_cache_entry_overhead(void)
{
    return sizeof(kw_cache_handle);
}

const char *kw_cache_result_name(kw_cache_result r)
{
    switch (r) {
    case KW_CACHE_OFF:
        return "off";
    case KW_CACHE_HIT:
        return "hit";
    case KW_CACHE_MISS:
        return "miss";
    case KW_CACHE_MAPPED:
        return "mapped";
    case KW_CACHE_NONE:
        break;
    }
    return "none";
}

/* ---- leases ---------------------------------------------------------------------------------- *
 * A slot's word: bits 0-15 count the readers inside a section that entered through this slot;
 * bits 16 + 12 i .. 27 + 12 i are use counter i (0 .. 3). The leave that brings a counter to
 * KW_LEASE_BATCH takes the batch out in the same atomic step, so a counter stays below it. Why the drain is enough (cache.md section 5): a reader adds to its slot, then
 * loads the pointer; the retirer swaps the pointer out, then reads each slot (all seq_cst). A
 * reader that got the old pointer added before the swap, so the retirer cannot see its slot at
 * zero until that reader has left; a reader that adds later loads NULL or a newer value. Seeing
 * each slot at zero once, one after the other, is therefore enough. */

#define READERS_MASK UINT64_C(0xFFFF)
#define COUNTER_SHIFT(i) (16 + 12 * (i))
#define COUNTER_MASK UINT64_C(0xFFF)

typedef struct {
    _Alignas(64) uint64_t word; /* atomic; own cache line */
} lease_slot;

struct kw_lease {
    lease_slot slots[KW_LEASE_SLOTS];
    _Alignas(64) void *pub[KW_LEASE_PARTS]; /* atomic: published values */
    int refs;                               /* atomic */
};

kw_lease *kw_lease_create(void)
{
    void *mem = NULL;
    if (posix_memalign(&mem, 64, sizeof(kw_lease)) != 0 || mem == NULL)
        abort(); /* the kw_malloc policy */
    kw_lease *l = mem;
    memset(l, 0, sizeof *l);
    l->refs = 1;
    return l;
}

void kw_lease_ref(kw_lease *l)
{
    __atomic_fetch_add(&l->refs, 1, __ATOMIC_RELAXED);
}

void kw_lease_unref(kw_lease *l)
{
    if (l != NULL && __atomic_fetch_sub(&l->refs, 1, __ATOMIC_ACQ_REL) == 1)
        free(l);
}

size_t kw_lease_bytes(void)
{
    return sizeof(kw_lease);
}

void kw_lease_publish(kw_lease *l, int part, void *value)
{
    __atomic_store_n(&l->pub[part], value, __ATOMIC_SEQ_CST);
}

void kw_lease_retire(kw_lease *l, int part, void *value)
{
    void *expect = value;
    __atomic_compare_exchange_n(&l->pub[part], &expect, NULL, false, __ATOMIC_SEQ_CST,
                                __ATOMIC_RELAXED);
    /* even if another value replaced it: a reader may still hold this one */
    for (int i = 0; i < KW_LEASE_SLOTS; i++)
        for (int spins = 0; __atomic_load_n(&l->slots[i].word, __ATOMIC_SEQ_CST) & READERS_MASK;)
            if (++spins > 100)
                sched_yield(); /* the reader was preempted inside its section */
}

void *kw_lease_enter(kw_lease *l, int part, kw_lease_section *s)
{
    int cpu = sched_getcpu(); /* any slot is correct; one per CPU keeps the line local */
    lease_slot *slot = &l->slots[(unsigned)(cpu < 0 ? 0 : cpu) % KW_LEASE_SLOTS];
    __atomic_fetch_add(&slot->word, 1, __ATOMIC_SEQ_CST);
    s->word = &slot->word;
    return __atomic_load_n(&l->pub[part], __ATOMIC_SEQ_CST);
}

bool kw_lease_leave(kw_lease_section *s, int counter)
{
    if (counter < 0) {
        __atomic_fetch_sub(s->word, 1, __ATOMIC_RELEASE);
        return false;
    }
    uint64_t one = UINT64_C(1) << COUNTER_SHIFT(counter), old, next;
    bool batch;
    old = __atomic_load_n(s->word, __ATOMIC_RELAXED);
    do { /* one reader out, one use in; a full batch is taken out in the same step */
        next = old - 1 + one;
        batch = ((next >> COUNTER_SHIFT(counter)) & COUNTER_MASK) == KW_LEASE_BATCH;
        if (batch)
            next -= (uint64_t)KW_LEASE_BATCH * one;
    } while (!__atomic_compare_exchange_n(s->word, &old, next, true, __ATOMIC_RELEASE,
                                          __ATOMIC_RELAXED));
    return batch;
}
