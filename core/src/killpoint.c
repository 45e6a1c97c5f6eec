/*
 * killpoint.c: the crash-test build's kill points (see killpoint.h). Compiled to nothing unless
 * KIWI_KILL_POINTS is defined.
 */
#include "killpoint.h"

#ifdef KIWI_KILL_POINTS
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static atomic_long g_hits;

void kw_kill_point(const char *name)
{
    const char *armed = getenv("KIWI_KILL_POINT");
    if (armed == NULL || strcmp(armed, name) != 0)
        return;
    const char *after = getenv("KIWI_KILL_AFTER");
    long n = after ? atol(after) : 1;
    if (atomic_fetch_add(&g_hits, 1) + 1 >= n)
        kill(getpid(), SIGKILL);
}
#else
typedef int kw_killpoint_unused; /* ISO C forbids an empty translation unit */
#endif
