/*
 * fuzz_common.h: what every libFuzzer target in spec/fuzz/ shares: a private scratch directory,
 * writing an input to a file, the oracle check (FUZZ_CHECK aborts, which libFuzzer reports as a
 * crash and saves the input), and CRC repair for WAL-framed inputs.
 *
 * CRC repair: a mutated input almost never has good checksums, so without help the fuzzer would
 * only ever test the checksum checks. Each target runs an input as it is *and* with every
 * checksum it can locate recomputed, so mutations reach the decoders behind the checksums.
 *
 * Each target is one process running one input at a time; the scratch directory (under
 * $FUZZ_TMPDIR, else /dev/shm, else /tmp) is per process and removed at exit. It is the one
 * piece of process-wide state here.
 */
#ifndef KIWI_FUZZ_COMMON_H
#define KIWI_FUZZ_COMMON_H

#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "coding.h"
#include "common.h"
#include "crc32c.h"
#include "wal.h"

/* An oracle: a broken invariant aborts (a libFuzzer crash, input saved). */
#define FUZZ_CHECK(cond)                                                                       \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "%s:%d: fuzz invariant failed: %s\n", __FILE__, __LINE__, #cond);  \
            abort();                                                                           \
        }                                                                                      \
    } while (0)

/* An error result must be well-formed: a known status and a message saying what went wrong. */
#define FUZZ_CHECK_ERROR(st, msg)                                                              \
    do {                                                                                       \
        FUZZ_CHECK((st) != KIWI_OK);                                                           \
        FUZZ_CHECK((msg) != NULL && (msg)[0] != '\0');                                         \
    } while (0)

static char fuzz_dir_path[512];

static inline int fuzz_rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static inline void fuzz_rmtree(const char *path)
{
    nftw(path, fuzz_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static inline void fuzz_cleanup(void)
{
    if (fuzz_dir_path[0] != '\0')
        fuzz_rmtree(fuzz_dir_path);
}

/* The process's scratch directory, made on first use. */
static inline const char *fuzz_dir(void)
{
    if (fuzz_dir_path[0] != '\0')
        return fuzz_dir_path;
    const char *base = getenv("FUZZ_TMPDIR");
    if (base == NULL || *base == '\0')
        base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(fuzz_dir_path, sizeof fuzz_dir_path, "%s/kiwi-fuzz-XXXXXX", base);
    if (mkdtemp(fuzz_dir_path) == NULL) {
        perror("kiwi fuzz: mkdtemp");
        abort();
    }
    atexit(fuzz_cleanup);
    return fuzz_dir_path;
}

/* Writes data to <scratch>/<name> (replacing it) and returns the path in a static buffer. */
static inline const char *fuzz_write_file(const char *name, const void *data, size_t size)
{
    static char path[1024];
    snprintf(path, sizeof path, "%s/%s", fuzz_dir(), name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        perror(path);
        abort();
    }
    const char *p = data;
    while (size > 0) {
        ssize_t n = write(fd, p, size);
        if (n <= 0) {
            perror(path);
            abort();
        }
        p += n;
        size -= (size_t)n;
    }
    close(fd);
    return path;
}

/* A malloc'd copy of exactly size bytes (ASan sees any read past the end). */
static inline char *fuzz_copy(const uint8_t *data, size_t size)
{
    char *c = kw_malloc(size ? size : 1);
    if (size)
        memcpy(c, data, size);
    return c;
}

/* Recomputes the CRC of every WAL record whose length fits in the buffer (wal.h framing).
 * Returns true when a byte changed. */
static inline bool fuzz_fix_wal_crcs(char *buf, size_t size)
{
    bool changed = false;
    size_t off = 0;
    while (size - off >= KW_WAL_HEADER_SIZE) {
        uint32_t len = kw_decode_fixed32(buf + off);
        if (len > size - off - KW_WAL_HEADER_SIZE)
            break;
        uint32_t crc = kw_crc32c(buf + off + KW_WAL_HEADER_SIZE, len);
        if (kw_decode_fixed32(buf + off + 4) != crc) {
            kw_encode_fixed32(buf + off + 4, crc);
            changed = true;
        }
        off += KW_WAL_HEADER_SIZE + len;
    }
    return changed;
}

/* A slice lies inside [base, base + size) (an empty slice may sit at the end). */
static inline bool fuzz_inside(kw_slice s, const char *base, size_t size)
{
    if (s.size == 0)
        return s.data == NULL || (s.data >= base && s.data <= base + size);
    return s.data >= base && s.size <= size && s.data - base <= (ptrdiff_t)(size - s.size);
}

#endif /* KIWI_FUZZ_COMMON_H */
