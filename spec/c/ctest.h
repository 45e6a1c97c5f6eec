/*
 * ctest.h: the tiny harness of kiwi's C tests (spec/c/test_*.c).
 *
 *     static void test_roundtrip(void) { CHECK(x == 1); CHECK_EQ_U64(a, b); }
 *     int main(void) { RUN(test_roundtrip); return ctest_summary(); }
 *
 * CHECK failures print file:line and the expression and count as failures; the program keeps
 * going to the next test. ctest_summary prints "N passed, N failed" and returns the exit code.
 * ctest_tmpdir() makes a fresh directory under $TMPDIR (or /tmp) for a test and returns its path
 * (removed with ctest_rmtree).
 */
#ifndef KIWI_CTEST_H
#define KIWI_CTEST_H

#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int ctest_failures_in_test;
static int ctest_passed;
static int ctest_failed;

#define CHECK(cond)                                                                            \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);           \
            ctest_failures_in_test++;                                                          \
        }                                                                                      \
    } while (0)

#define CHECK_EQ_U64(a, b)                                                                     \
    do {                                                                                       \
        uint64_t ctest_a = (uint64_t)(a), ctest_b = (uint64_t)(b);                             \
        if (ctest_a != ctest_b) {                                                              \
            fprintf(stderr, "%s:%d: CHECK failed: %s == %s (%" PRIu64 " != %" PRIu64 ")\n",    \
                    __FILE__, __LINE__, #a, #b, ctest_a, ctest_b);                             \
            ctest_failures_in_test++;                                                          \
        }                                                                                      \
    } while (0)

/* Fails (and stops the test) when a kiwi_status is not KIWI_OK, printing errmsg if set. */
#define CHECK_OK(expr, errmsg_ptr)                                                             \
    do {                                                                                       \
        int ctest_st = (int)(expr);                                                            \
        if (ctest_st != 0) {                                                                   \
            char **ctest_e = (errmsg_ptr);                                                     \
            fprintf(stderr, "%s:%d: %s returned %d: %s\n", __FILE__, __LINE__, #expr, ctest_st, \
                    ctest_e != NULL && *ctest_e != NULL ? *ctest_e : "(no message)");          \
            ctest_failures_in_test++;                                                          \
            return;                                                                            \
        }                                                                                      \
    } while (0)

#define RUN(fn)                                                                                \
    do {                                                                                       \
        ctest_failures_in_test = 0;                                                            \
        fn();                                                                                  \
        if (ctest_failures_in_test) {                                                          \
            fprintf(stderr, "FAIL %s\n", #fn);                                                 \
            ctest_failed++;                                                                    \
        } else {                                                                               \
            ctest_passed++;                                                                    \
        }                                                                                      \
    } while (0)

static inline int ctest_summary(void)
{
    printf("%d passed, %d failed\n", ctest_passed, ctest_failed);
    return ctest_failed ? 1 : 0;
}

static inline char *ctest_tmpdir(const char *name)
{
    const char *base = getenv("TMPDIR");
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, "%s/kiwi-%s-XXXXXX", base && *base ? base : "/tmp", name);
    char *d = mkdtemp(tmpl);
    if (d == NULL) {
        perror("mkdtemp");
        exit(2);
    }
    return strdup(d);
}

static inline int ctest_rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static inline void ctest_rmtree(char *dir)
{
    nftw(dir, ctest_rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(dir);
}

#endif /* KIWI_CTEST_H */
