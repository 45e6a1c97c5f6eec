/*
 * killpoint.h: named crash points for the crash-test build.
 *
 * kw_kill_point("wal.after_append") marks a moment where a crash is interesting. In a build
 * compiled with -DKIWI_KILL_POINTS (make's build/crash flavour) it kills the process with SIGKILL
 * when the environment variable KIWI_KILL_POINT names that point and the point has been reached
 * KIWI_KILL_AFTER times (default 1). In every other build it is an empty inline function.
 * The points are listed in docs/internals/durability.md and in KW_KILL_POINTS below.
 */
#ifndef KW_KILLPOINT_H
#define KW_KILLPOINT_H

/* Every point, for drivers that iterate over them. */
#define KW_KILL_POINT_NAMES                                                                     \
    "wal.after_append", "wal.before_sync", "wal.after_sync", "sst.mid_write",                  \
        "sst.before_commit", "manifest.after_commit", "compaction.mid",                        \
        "compaction.before_commit", "file.before_delete", "file.after_delete",                 \
        "manifest.before_current"

#ifdef KIWI_KILL_POINTS
void kw_kill_point(const char *name);
#else
static inline void kw_kill_point(const char *name)
{
    (void)name;
}
#endif

#endif /* KW_KILLPOINT_H */
