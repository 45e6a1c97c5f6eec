/*
 * db_group.h: the writer queue with group commit (db_group.c), as the public write calls
 * (db_write.c) use it. The queue itself (kw_writer, the queue and gathering fields of kiwi_db)
 * is declared in db.h.
 */
#ifndef KW_DB_GROUP_H
#define KW_DB_GROUP_H

#include "db.h"

/* Runs one write (batch) or, with batch == NULL, a memtable rotation for kiwi_flush: queues a
 * thread writer and returns once a leader (this thread or another) has committed it. The batch
 * has been checked and is not empty. KIWI_CLOSED once the db is closing. */
kiwi_status kw_group_write(kiwi_db *db, bool sync, kiwi_batch *batch, char **errmsg);

/* Writes batch, not synced, as a group of one led by this thread when it can go in at once
 * (nobody queued, room in the memtable, nothing owed); else KIWI_BUSY, having done nothing.
 * The batch has been checked and is not empty. */
kiwi_status kw_group_write_now(kiwi_db *db, kiwi_batch *batch, char **errmsg);

/* Appends the async writer w (a heap node, completed by its callback) to the queue, waking the
 * commit thread when w is the head. REQUIRES: mu; the db is not closing. */
void kw_group_enqueue_async(kiwi_db *db, kw_writer *w);

/* The commit thread's turn: leads one group from the async writer at the queue head, then runs
 * the members' wake-ups and callbacks with mu released. REQUIRES: mu (held again on return);
 * the head is an async writer. */
void kw_group_lead_async(kiwi_db *db);

#endif /* KW_DB_GROUP_H */
