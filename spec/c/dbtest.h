/*
 * dbtest.h: helpers shared by the C tests that drive a whole db through kiwi.h.
 *
 * dbtest_stat(db, name): the unsigned number after "name": in kiwi_property(db, "stats")
 * (the first occurrence; 0 if absent).
 * dbtest_open(dir, mode, settings): opens dir in mode ("dev"/"prod") with the settings given as
 * name, value, ..., NULL (settings may be NULL); NULL after printing the error on failure.
 */
#ifndef KIWI_DBTEST_H
#define KIWI_DBTEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiwi.h"

static inline unsigned long long dbtest_stat(kiwi_db *db, const char *name)
{
    char *s = kiwi_property(db, "stats");
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", name);
    const char *p = s ? strstr(s, pat) : NULL;
    unsigned long long v = p ? strtoull(p + strlen(pat), NULL, 10) : 0;
    kiwi_free(s);
    return v;
}

static inline kiwi_db *dbtest_open(const char *dir, const char *mode,
                                   const char *const *settings)
{
    kiwi_options *o = kiwi_options_create(mode);
    for (size_t i = 0; settings != NULL && settings[i] != NULL; i += 2)
        kiwi_options_set(o, settings[i], settings[i + 1], NULL);
    kiwi_db *db = NULL;
    char *err = NULL;
    if (kiwi_open(dir, o, &db, &err) != KIWI_OK)
        fprintf(stderr, "open %s: %s\n", dir, err);
    kiwi_free(err);
    kiwi_options_destroy(o);
    return db;
}

#endif /* KIWI_DBTEST_H */
