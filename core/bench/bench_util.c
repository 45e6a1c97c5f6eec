/*
 * bench_util.c: kiwi_bench's small helpers: errors, clocks, the random source, keys and values,
 * the process's I/O counters, and the db directory (size, removal, the safety check).
 *
 * Values are a pure function of (key index, tag), so reads are verified without storing them:
 * [u32 key index][u32 tag] (little-endian) followed by value_size - 8 bytes taken from a pattern
 * of printable random bytes at an offset hashed from (key, tag). The pattern is the one
 * piece of process-wide state: filled once by values_init before any thread starts, read-only
 * afterwards. Making a value is one 100-byte copy and checking one is two memcmp, so verifying
 * every read costs every engine the same few nanoseconds. The pattern is 16 KiB so that it stays
 * in the L1/L2 cache: with a 1 MiB pattern, value checks were 23% of kiwi's readseq samples
 * (perf; 6% with 16 KiB), harness cost that pulls every ratio towards 1. (The header, not the
 * offset, is what tells values apart.)
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#define PATTERN_SIZE (16 << 10)
#define MAX_VALUE_SIZE (1 << 19)

static char pattern[PATTERN_SIZE + MAX_VALUE_SIZE]; /* written once by values_init */

void bench_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("kiwi_bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        bench_die("out of memory (%zu bytes)", n);
    return p;
}

double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* splitmix64: the bench's only random source; deterministic per seed. */
uint64_t mix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* A random key index in [0, n) congruent to t mod nt (threads write disjoint keys). */
long pick_key(uint64_t *rng, long n, int t, int nt)
{
    long k = (long)(mix64(rng) % (uint64_t)n);
    k = k - k % nt + t;
    return k >= n ? k - nt : k;
}

/* "%016ld" of k (0 <= k < 10^16) into out, which holds KEY_SIZE + 2 bytes. */
void format_key(char *out, long k)
{
    for (int i = KEY_SIZE - 1; i >= 0; i--, k /= 10)
        out[i] = (char)('0' + k % 10);
    out[KEY_SIZE] = 0;
}

long parse_key(const char *k, size_t klen, long num)
{
    if (klen != KEY_SIZE)
        return -1;
    long x = 0;
    for (int i = 0; i < KEY_SIZE; i++) {
        if (k[i] < '0' || k[i] > '9')
            return -1;
        x = x * 10 + (k[i] - '0');
    }
    return x < num ? x : -1;
}

void values_init(long value_size)
{
    uint64_t s = 0x6b697769; /* "kiwi" */
    for (size_t i = 0; i < sizeof pattern; i += 8) {
        uint64_t r = mix64(&s);
        for (int j = 0; j < 8; j++)
            pattern[i + (size_t)j] = (char)(' ' + (r >> (8 * j) & 0xff) % 95);
    }
    if (value_size < VALUE_HEADER || value_size > MAX_VALUE_SIZE)
        bench_die("--value_size must be in [%d, %d]", VALUE_HEADER, MAX_VALUE_SIZE);
}

static const char *value_body(long size, long k, uint32_t tag)
{
    uint64_t s = ((uint64_t)k << 24) ^ tag;
    return pattern + mix64(&s) % PATTERN_SIZE; /* pattern has size bytes after any offset */
}

static void value_header(char *out, long k, uint32_t tag)
{
    uint32_t h[2] = {(uint32_t)k, tag}; /* x86-64 and every target here: little-endian */
    memcpy(out, h, VALUE_HEADER);
}

void make_value(char *out, long size, long k, uint32_t tag)
{
    value_header(out, k, tag);
    memcpy(out + VALUE_HEADER, value_body(size, k, tag), (size_t)(size - VALUE_HEADER));
}

bool value_matches(const char *v, size_t vlen, long size, long k, uint32_t tag)
{
    char h[VALUE_HEADER];
    value_header(h, k, tag);
    return (long)vlen == size && memcmp(v, h, VALUE_HEADER) == 0 &&
           memcmp(v + VALUE_HEADER, value_body(size, k, tag), (size_t)(size - VALUE_HEADER)) == 0;
}

/* ---- /proc/self/io and the directory --------------------------------------------------------- */

io_counters io_now(void)
{
    io_counters c = {0, 0};
    FILE *f = fopen("/proc/self/io", "r");
    char line[128];
    while (f && fgets(line, sizeof line, f)) {
        sscanf(line, "write_bytes: %" SCNu64, &c.write_bytes);
        sscanf(line, "wchar: %" SCNu64, &c.wchar);
    }
    if (f)
        fclose(f);
    return c;
}

/* Whether the file system under dir accounts write_bytes: writes and syncs a 256 KiB probe file
 * and looks for it in the counter (tmpfs and some network file systems never count). */
bool io_accounted(const char *dir)
{
    char path[4096 + 16], buf[4096];
    snprintf(path, sizeof path, "%s/.io_probe", dir);
    memset(buf, 'x', sizeof buf);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        bench_die("%s: %s", path, strerror(errno));
    io_counters a = io_now();
    for (int i = 0; i < 64; i++)
        if (write(fd, buf, sizeof buf) != (ssize_t)sizeof buf)
            bench_die("%s: write: %s", path, strerror(errno));
    fdatasync(fd);
    io_counters b = io_now();
    close(fd);
    unlink(path);
    return b.write_bytes - a.write_bytes >= 64 * sizeof buf;
}

/* An engine's text diagnostics (LevelDB's LOG, LOG.old; RocksDB's LOG, LOG.old.<time>). */
static bool is_info_log(const char *name)
{
    return strcmp(name, "LOG") == 0 || strncmp(name, "LOG.old", 7) == 0;
}

/* Sums the sizes of regular files under path (if size) and removes everything under it (if rm). */
static void walk(const char *path, uint64_t *size, bool rm)
{
    DIR *d = opendir(path);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char p[4096];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", path, e->d_name);
        if (lstat(p, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode))
            walk(p, size, rm);
        else if (size && S_ISREG(st.st_mode) && !is_info_log(e->d_name))
            *size += (uint64_t)st.st_size;
        if (rm && remove(p) != 0)
            bench_die("remove %s: %s", p, strerror(errno));
    }
    closedir(d);
}

uint64_t dir_size(const char *path)
{
    uint64_t n = 0;
    walk(path, &n, false);
    return n;
}

void remove_tree(const char *path, bool keep_top)
{
    walk(path, NULL, true);
    if (!keep_top)
        rmdir(path);
}

/* True if path is missing, empty, or holds a db (CURRENT or LOCK). */
static bool looks_like_db(const char *path)
{
    char p[4096 + 16]; /* path (< 4096) + "/CURRENT" */
    DIR *d = opendir(path);
    if (!d)
        return true;
    int entries = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        entries += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    snprintf(p, sizeof p, "%s/CURRENT", path);
    bool current = access(p, F_OK) == 0;
    snprintf(p, sizeof p, "%s/LOCK", path);
    return entries == 0 || current || access(p, F_OK) == 0;
}

/* --db holds one directory per engine (kiwi/, leveldb/, rocksdb/) and nothing else: refuse to
 * wipe anything that does not look like that. */
void check_db_dir(const char *path)
{
    static const char *const names[] = {"kiwi", "leveldb", "rocksdb"};
    DIR *d = opendir(path);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        bool ok = false;
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            ok = ok || strcmp(e->d_name, names[i]) == 0;
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", path, e->d_name);
        if (!ok || !looks_like_db(p))
            bench_die("--db=%s holds %s, which is not a db this bench made; refusing to wipe it",
                      path, e->d_name);
    }
    closedir(d);
}

const char *fs_name(const char *path)
{
    struct statfs sf;
    if (statfs(path, &sf) != 0)
        return "?";
    switch ((long)sf.f_type) {
    case 0xEF53: return "ext4";
    case 0x58465342: return "xfs";
    case 0x9123683E: return "btrfs";
    case 0x01021994: return "tmpfs (nothing reaches a disk)";
    case 0x794C7630: return "overlayfs";
    default: return "other";
    }
}

/* The first line of `cmd`'s output, or "?". */
void first_line(const char *cmd, char *out, size_t cap)
{
    FILE *p = popen(cmd, "r");
    snprintf(out, cap, "?");
    if (p && fgets(out, (int)cap, p))
        out[strcspn(out, "\n")] = 0;
    if (p)
        pclose(p);
}

void note_append(char *note, const char *fmt, ...)
{
    size_t used = strlen(note);
    if (used + 2 >= NOTE_CAP)
        return;
    if (used > 0) {
        memcpy(note + used, "; ", 3);
        used += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(note + used, NOTE_CAP - used, fmt, ap);
    va_end(ap);
}
