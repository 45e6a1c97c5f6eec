/*
 * skiplist.h: a concurrent skip list of byte entries over an arena, the index of the memtable.
 *
 * An entry is an opaque run of bytes stored inline in its node, right after the node's tower of
 * next pointers. The list does not know the entry format: the owner supplies key_of (the sort key
 * stored in an entry) and compare (three-way order of two keys). The memtable stores
 * [varint32 ikey length][internal key][varint32 value length][value] and orders by
 * kw_ikey_compare, but the tests also use plain byte keys.
 *
 * Thread safety
 * -------------
 * Any number of threads may insert at the same time, and any number of readers (iterators,
 * contains) may run concurrently with them. Readers take no lock and never write shared memory:
 * they follow next pointers with acquire loads. Inserters take no lock either: each one finds the
 * splice (predecessor and successor) of its new node at every level, then links the node with one
 * compare-and-swap per level, from level 0 upwards; when a CAS fails because another insert got
 * in between, it re-finds the splice at that level only, starting from the old predecessor (still
 * smaller than the key, since nodes never move or disappear), and tries again. Nothing is ever
 * removed, so there is no ABA problem and no memory reclamation: the arena frees every node at
 * once when the list is no longer used.
 *
 * Invariants
 * ----------
 * (1) A node is fully initialized (height, entry bytes, next[0]) before it is published at level
 *     0: the publishing CAS is a release, every traversal load is an acquire, so a reader that
 *     sees a pointer to the node sees everything written to it before the CAS.
 * (2) A node published at level i is already linked at every level < i (levels are linked
 *     bottom-up, in program order, each with a release CAS). So a reader that finds the node at
 *     level i and descends never meets an unset next pointer, and the level-0 list alone always
 *     holds every published entry.
 * (3) Nodes are never removed or modified (apart from their next pointers) before the whole list
 *     is destroyed; an entry pointer stays valid as long as the arena lives.
 * (4) At every level the list is sorted strictly ascending by compare(); no two entries have
 *     equal keys (an insert of an equal key is refused).
 * (5) max_height only grows. A reader may read a stale value, which is harmless: a taller head
 *     level simply holds NULL or a sparse subset of the level below.
 * (6) A node's next[i] is written before the node becomes reachable at level i and afterwards
 *     changes only by CAS, each time to a node that sorts between the two it separates.
 *
 * Lifetime: the list and all its nodes live in the arena passed to kw_skiplist_create; there is
 * no destroy function, destroying the arena frees everything. The caller must not destroy the
 * arena while any thread still uses the list.
 */
#ifndef KW_SKIPLIST_H
#define KW_SKIPLIST_H

#include <stdbool.h>
#include <stddef.h>

#include "arena.h"
#include "common.h"

#define KW_SKIPLIST_MAX_HEIGHT 12

typedef struct kw_skiplist kw_skiplist;
typedef struct kw_sl_node kw_sl_node;

/* The sort key stored in an entry (a view into the entry bytes). */
typedef kw_slice (*kw_skiplist_key_fn)(const char *entry);
/* Three-way order of two keys: <0, 0, >0. */
typedef int (*kw_skiplist_cmp_fn)(kw_slice a, kw_slice b);

/* Creates an empty list inside arena. The list lives until the arena is destroyed. */
kw_skiplist *kw_skiplist_create(kw_arena *arena, kw_skiplist_key_fn key_of,
                                kw_skiplist_cmp_fn compare);

/* Allocates an unpublished node with a random height and room for entry_size bytes of entry.
 * Thread-safe. The caller fills kw_sl_node_entry(node) and then calls kw_skiplist_insert. */
kw_sl_node *kw_skiplist_new_node(kw_skiplist *sl, size_t entry_size);

/* The entry bytes of a node (writable until the node is inserted). */
char *kw_sl_node_entry(kw_sl_node *node);

/* Links node into the list. Thread-safe against other inserts and readers. Returns false (and
 * leaves the list unchanged; the node's memory stays in the arena) when an entry with an equal key
 * is already present. REQUIRES: node came from kw_skiplist_new_node(sl) and was not inserted. */
bool kw_skiplist_insert(kw_skiplist *sl, kw_sl_node *node);

/* True if an entry with a key equal to key is present. Lock-free. */
bool kw_skiplist_contains(const kw_skiplist *sl, kw_slice key);

/* The current height of the tallest node (1 for an empty list). */
int kw_skiplist_height(const kw_skiplist *sl);

/*
 * A position in the list. Not thread-safe itself, but any number of iterators may run at once and
 * concurrently with inserts; an iterator sees every entry published before it moves and may or may
 * not see entries inserted while it moves. No allocation: it is a plain value.
 */
typedef struct {
    const kw_skiplist *list; /* the list walked */
    const kw_sl_node *node;  /* current node; NULL when not valid */
} kw_skiplist_iter;

void kw_skiplist_iter_init(kw_skiplist_iter *it, const kw_skiplist *sl); /* starts invalid */
bool kw_skiplist_iter_valid(const kw_skiplist_iter *it);
const char *kw_skiplist_iter_entry(const kw_skiplist_iter *it); /* REQUIRES: valid */
void kw_skiplist_iter_next(kw_skiplist_iter *it);                 /* REQUIRES: valid */
void kw_skiplist_iter_prev(kw_skiplist_iter *it);                 /* REQUIRES: valid */
void kw_skiplist_iter_seek(kw_skiplist_iter *it, kw_slice key);   /* first entry >= key */
void kw_skiplist_iter_seek_to_first(kw_skiplist_iter *it);
void kw_skiplist_iter_seek_to_last(kw_skiplist_iter *it);

#endif /* KW_SKIPLIST_H */
