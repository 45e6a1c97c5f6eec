/*
 * lock.h: one owner per data directory (DESIGN §3 LOCK).
 *
 * kw_lock_acquire takes an fcntl write lock on <dir>/LOCK (which excludes other processes) and
 * registers the directory's canonical path in a process-wide table (fcntl locks never conflict
 * within one process, so a second open from this process would otherwise succeed). Either
 * conflict is KIWI_BUSY. The process-wide table is the engine's only global state; it is guarded
 * by its own mutex.
 */
#ifndef KW_LOCK_H
#define KW_LOCK_H

#include "common.h"

typedef struct kw_lock kw_lock;

kiwi_status kw_lock_acquire(const char *dir, kw_lock **out, char **errmsg);
void kw_lock_release(kw_lock *l);

#endif /* KW_LOCK_H */
