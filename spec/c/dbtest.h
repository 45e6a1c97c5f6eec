/*
 * dbtest.h: helpers shared by the C tests that drive a whole db through kiwi.h.
 *
 * dbtest_stat(db, name): the unsigned number after "name": in kiwi_property(db, "stats")
 * (the first occurrence; 0 if absent).
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

#endif /* KIWI_DBTEST_H */
