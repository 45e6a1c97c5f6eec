/*
 * env_internal.h: helpers shared by the file-system layer's two files (env.c, env_file.c); not
 * for the rest of the engine, which uses env.h.
 */
#ifndef KW_ENV_INTERNAL_H
#define KW_ENV_INTERNAL_H

#include <stddef.h>
#include <sys/types.h>

#include "common.h"

/* The error for a failed operation on path: "<op> <path>: <strerror>", its status from errno
 * (ENOSPC and EDQUOT: KIWI_NO_SPACE). */
kiwi_status kw_env_io_error(char **errmsg, const char *op, const char *path, int err);
/* open(2) with O_CLOEXEC, retrying EINTR; returns the fd or -1 with errno set. */
int kw_env_open_retry(const char *path, int flags, mode_t mode);
/* Runs an fd operation (fsync, fdatasync) retrying EINTR; returns 0 or errno. */
int kw_env_retry_fd_op(int (*op)(int), int fd);
/* Writes all n bytes at fd's position, continuing short writes. */
kiwi_status kw_env_write_all(int fd, const char *path, const void *data, size_t n, char **errmsg);
/* The system's page size (cached). */
size_t kw_env_page_size(void);

#endif /* KW_ENV_INTERNAL_H */
