/*
 * lock.c: the LOCK file (fcntl, across processes) plus the in-process table of owned directories.
 */
#include "lock.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "env.h"

struct kw_lock {
    int fd;
    char *canon; /* canonical directory path, the key in the table */
    kw_lock *next;
};

static pthread_mutex_t g_lock_mu = PTHREAD_MUTEX_INITIALIZER;
static kw_lock *g_locks; /* guarded by g_lock_mu */

static bool held_in_process(const char *canon)
{
    for (kw_lock *l = g_locks; l; l = l->next)
        if (strcmp(l->canon, canon) == 0)
            return true;
    return false;
}

kiwi_status kw_lock_acquire(const char *dir, kw_lock **out, char **errmsg)
{
    char canon[PATH_MAX];
    if (realpath(dir, canon) == NULL)
        return kw_error(errmsg, kw_status_from_errno(errno), "realpath %s: %s", dir,
                        strerror(errno));
    char *path = kw_join_path(canon, "LOCK");
    kiwi_status st = KIWI_OK;
    pthread_mutex_lock(&g_lock_mu);
    if (held_in_process(canon)) {
        st = kw_error(errmsg, KIWI_BUSY, "%s is already open in this process", canon);
        goto out;
    }
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        st = kw_error(errmsg, kw_status_from_errno(errno), "open %s: %s", path, strerror(errno));
        goto out;
    }
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    if (fcntl(fd, F_SETLK, &fl) != 0) {
        int e = errno;
        close(fd);
        if (e == EACCES || e == EAGAIN)
            st = kw_error(errmsg, KIWI_BUSY, "%s is locked by another process", path);
        else
            st = kw_error(errmsg, KIWI_IO_ERROR, "lock %s: %s", path, strerror(e));
        goto out;
    }
    kw_lock *l = kw_malloc(sizeof *l);
    l->fd = fd;
    l->canon = kw_strdup(canon);
    l->next = g_locks;
    g_locks = l;
    *out = l;
out:
    pthread_mutex_unlock(&g_lock_mu);
    free(path);
    return st;
}

void kw_lock_release(kw_lock *l)
{
    if (l == NULL)
        return;
    pthread_mutex_lock(&g_lock_mu);
    for (kw_lock **p = &g_locks; *p; p = &(*p)->next) {
        if (*p == l) {
            *p = l->next;
            break;
        }
    }
    pthread_mutex_unlock(&g_lock_mu);
    close(l->fd); /* drops the fcntl lock */
    free(l->canon);
    free(l);
}
