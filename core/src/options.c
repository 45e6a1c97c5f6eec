/*
 * options.c: the settings table, defaults per mode, validation and JSON rendering.
 */
#include "options.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

typedef enum { T_UINT, T_DOUBLE, T_BOOL, T_ENUM } setting_type;

typedef struct {
    const char *name;
    setting_type type;
    double min, max;         /* T_UINT / T_DOUBLE range (inclusive; exclusive for fpr below) */
    bool live;               /* may change on a running db */
    const char *dev_default; /* as a config.json string */
    const char *prod_default;
    const char *choices;     /* T_ENUM: '|'-separated */
} setting;

static const setting SETTINGS[] = {
    {"max_memtable_entries", T_UINT, 1, 1e9, true, "10", "1000000", NULL},
    {"max_memtable_size_mb", T_DOUBLE, 0.0625, 4096, true, "64", "64", NULL},
    {"l0_compaction_threshold", T_UINT, 2, 1000, true, "10", "4", NULL},
    {"l0_slowdown_writes_trigger", T_UINT, 2, 10000, true, "20", "20", NULL},
    {"l0_stop_writes_trigger", T_UINT, 2, 10000, true, "30", "30", NULL},
    {"target_file_size_mb", T_DOUBLE, 0.015625, 1024, true, "0.0625", "8", NULL},
    {"level_base_mb", T_DOUBLE, 0.0625, 65536, true, "0.25", "256", NULL},
    {"level_size_ratio", T_UINT, 2, 100, true, "10", "10", NULL},
    {"compaction_workers", T_UINT, 1, 8, false, "2", "2", NULL},
    {"bloom_fpr_dev", T_DOUBLE, 0.0001, 0.5, true, "0.05", "0.05", NULL},
    {"bloom_fpr_prod", T_DOUBLE, 0.0001, 0.5, true, "0.01", "0.01", NULL},
    {"flush_max_workers", T_UINT, 1, 16, false, "2", "2", NULL},
    {"max_levels", T_UINT, 1, KW_MAX_LEVELS - 1, false, "3", "3", NULL},
    {"block_size", T_UINT, 256, 1048576, true, "4096", "4096", NULL},
    {"max_immutable_memtables", T_UINT, 1, 64, true, "4", "4", NULL},
    {"block_cache_data_mb", T_DOUBLE, 0, 1048576, true, "8", "64", NULL},
    {"block_cache_index_mb", T_DOUBLE, 0, 1048576, true, "2", "16", NULL},
    {"block_cache_bloom_mb", T_DOUBLE, 0, 1048576, true, "2", "16", NULL},
    {"data_reads", T_ENUM, 0, 0, true, "in_place", "in_place", "in_place|cached"},
    {"sync_writes", T_BOOL, 0, 0, true, "false", "false", NULL},
    {"wal_writes", T_ENUM, 0, 0, true, "mapped", "mapped", "mapped|write"},
    {"sync_waits", T_ENUM, 0, 0, true, "yield", "yield", "yield|block"},
    {"wal_recovery", T_ENUM, 0, 0, false, "tolerate_tail", "tolerate_tail",
     "tolerate_tail|skip_corrupt"},
    {"compression", T_ENUM, 0, 0, false, "none", "none", "none"},
};
#define N_SETTINGS (sizeof SETTINGS / sizeof SETTINGS[0])

static const setting *find_setting(const char *name)
{
    for (size_t i = 0; i < N_SETTINGS; i++)
        if (strcmp(SETTINGS[i].name, name) == 0)
            return &SETTINGS[i];
    return NULL;
}

static kiwi_status parse_uint(const setting *s, const char *v, uint64_t *out, char **errmsg)
{
    char *end = NULL;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (*v == '\0' || *v == '-' || *end != '\0' || errno != 0)
        return kw_error(errmsg, KIWI_INVALID_ARGUMENT,
                        "setting %s: '%s' is not a whole number (allowed %.0f..%.0f)", s->name, v,
                        s->min, s->max);
    if ((double)x < s->min || (double)x > s->max)
        return kw_error(errmsg, KIWI_INVALID_ARGUMENT,
                        "setting %s: %llu is out of range (allowed %.0f..%.0f)", s->name, x,
                        s->min, s->max);
    *out = x;
    return KIWI_OK;
}

static kiwi_status parse_double(const setting *s, const char *v, double *out, char **errmsg)
{
    char *end = NULL;
    errno = 0;
    double x = strtod(v, &end);
    if (*v == '\0' || *end != '\0' || errno != 0 || !isfinite(x))
        return kw_error(errmsg, KIWI_INVALID_ARGUMENT,
                        "setting %s: '%s' is not a number (allowed %g..%g)", s->name, v, s->min,
                        s->max);
    if (x < s->min || x > s->max)
        return kw_error(errmsg, KIWI_INVALID_ARGUMENT,
                        "setting %s: %g is out of range (allowed %g..%g)", s->name, x, s->min,
                        s->max);
    *out = x;
    return KIWI_OK;
}

static kiwi_status parse_bool(const setting *s, const char *v, bool *out, char **errmsg)
{
    if (strcmp(v, "true") == 0 || strcmp(v, "1") == 0) {
        *out = true;
        return KIWI_OK;
    }
    if (strcmp(v, "false") == 0 || strcmp(v, "0") == 0) {
        *out = false;
        return KIWI_OK;
    }
    return kw_error(errmsg, KIWI_INVALID_ARGUMENT,
                    "setting %s: '%s' is not a boolean (allowed true or false)", s->name, v);
}

static kiwi_status parse_enum(const setting *s, const char *v, char **errmsg)
{
    size_t n = strlen(v);
    const char *p = s->choices;
    while (p && *p) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, v, n) == 0)
            return KIWI_OK;
        p = bar ? bar + 1 : NULL;
    }
    return kw_error(errmsg, KIWI_INVALID_ARGUMENT, "setting %s: '%s' is not one of %s", s->name,
                    v, s->choices);
}

/* Stores a parsed value into the struct field that belongs to the setting. */
static void store(kiwi_options *o, const setting *s, uint64_t u, double d, bool b, const char *v)
{
    const char *n = s->name;
    if (strcmp(n, "max_memtable_entries") == 0) o->max_memtable_entries = u;
    else if (strcmp(n, "max_memtable_size_mb") == 0) o->max_memtable_size_mb = d;
    else if (strcmp(n, "l0_compaction_threshold") == 0) o->l0_compaction_threshold = (uint32_t)u;
    else if (strcmp(n, "l0_slowdown_writes_trigger") == 0) o->l0_slowdown_writes_trigger = (uint32_t)u;
    else if (strcmp(n, "l0_stop_writes_trigger") == 0) o->l0_stop_writes_trigger = (uint32_t)u;
    else if (strcmp(n, "target_file_size_mb") == 0) o->target_file_size_mb = d;
    else if (strcmp(n, "level_base_mb") == 0) o->level_base_mb = d;
    else if (strcmp(n, "level_size_ratio") == 0) o->level_size_ratio = (uint32_t)u;
    else if (strcmp(n, "compaction_workers") == 0) o->compaction_workers = (uint32_t)u;
    else if (strcmp(n, "bloom_fpr_dev") == 0) o->bloom_fpr_dev = d;
    else if (strcmp(n, "bloom_fpr_prod") == 0) o->bloom_fpr_prod = d;
    else if (strcmp(n, "flush_max_workers") == 0) o->flush_max_workers = (uint32_t)u;
    else if (strcmp(n, "max_levels") == 0) o->max_levels = (uint32_t)u;
    else if (strcmp(n, "block_size") == 0) o->block_size = (uint32_t)u;
    else if (strcmp(n, "max_immutable_memtables") == 0) o->max_immutable_memtables = (uint32_t)u;
    else if (strcmp(n, "block_cache_data_mb") == 0) o->block_cache_data_mb = d;
    else if (strcmp(n, "block_cache_index_mb") == 0) o->block_cache_index_mb = d;
    else if (strcmp(n, "block_cache_bloom_mb") == 0) o->block_cache_bloom_mb = d;
    else if (strcmp(n, "data_reads") == 0) o->data_reads_cached = strcmp(v, "cached") == 0;
    else if (strcmp(n, "sync_writes") == 0) o->sync_writes = b;
    else if (strcmp(n, "wal_writes") == 0) o->wal_writes_mapped = strcmp(v, "mapped") == 0;
    else if (strcmp(n, "sync_waits") == 0) o->sync_waits_yield = strcmp(v, "yield") == 0;
    else if (strcmp(n, "wal_recovery") == 0)
        o->wal_recovery = strcmp(v, "skip_corrupt") == 0 ? KW_WAL_SKIP_CORRUPT : KW_WAL_TOLERATE_TAIL;
    else if (strcmp(n, "compression") == 0) snprintf(o->compression, sizeof o->compression, "%s", v);
}

kiwi_status kw_options_apply(kiwi_options *o, const char *name, const char *value, bool live,
                             char **errmsg)
{
    if (name == NULL || value == NULL)
        return kw_error(errmsg, KIWI_INVALID_ARGUMENT, "setting name and value must not be NULL");
    if (strcmp(name, "mode") == 0)
        return kw_error(errmsg, KIWI_INVALID_ARGUMENT,
                        "setting mode: choose the mode with kiwi_options_create(\"dev\"|\"prod\")"
                        "%s", live ? "; it cannot change on a running db" : "");
    const setting *s = find_setting(name);
    if (s == NULL)
        return kw_error(errmsg, KIWI_INVALID_ARGUMENT, "unknown setting '%s'", name);
    if (live && !s->live)
        return kw_error(errmsg, KIWI_INVALID_ARGUMENT,
                        "setting %s cannot change on a running db (set it before open)", name);
    uint64_t u = 0;
    double d = 0;
    bool b = false;
    kiwi_status st = KIWI_OK;
    switch (s->type) {
    case T_UINT: st = parse_uint(s, value, &u, errmsg); break;
    case T_DOUBLE: st = parse_double(s, value, &d, errmsg); break;
    case T_BOOL: st = parse_bool(s, value, &b, errmsg); break;
    case T_ENUM: st = parse_enum(s, value, errmsg); break;
    }
    if (st != KIWI_OK)
        return st;
    store(o, s, u, d, b, value);
    return KIWI_OK;
}

bool kw_options_defaults(kiwi_options *o, const char *mode)
{
    if (mode == NULL)
        mode = "prod";
    bool dev = strcmp(mode, "dev") == 0;
    if (!dev && strcmp(mode, "prod") != 0)
        return false;
    memset(o, 0, sizeof *o);
    snprintf(o->mode, sizeof o->mode, "%s", mode);
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const setting *s = &SETTINGS[i];
        kiwi_status st =
            kw_options_apply(o, s->name, dev ? s->dev_default : s->prod_default, false, NULL);
        (void)st; /* the defaults are valid by construction (test_options checks) */
    }
    return true;
}

bool kw_options_is_dev(const kiwi_options *o)
{
    return strcmp(o->mode, "dev") == 0;
}

double kw_options_bloom_fpr(const kiwi_options *o)
{
    return kw_options_is_dev(o) ? o->bloom_fpr_dev : o->bloom_fpr_prod;
}

void kw_options_to_json(const kiwi_options *o, kw_buf *out)
{
    kw_buf_printf(out, "{\"mode\":\"%s\",\"max_memtable_entries\":%llu,"
                       "\"max_memtable_size_mb\":%g,\"l0_compaction_threshold\":%u,"
                       "\"l0_slowdown_writes_trigger\":%u,\"l0_stop_writes_trigger\":%u,"
                       "\"target_file_size_mb\":%g,\"level_base_mb\":%g,\"level_size_ratio\":%u,"
                       "\"compaction_workers\":%u,"
                       "\"bloom_fpr_dev\":%g,\"bloom_fpr_prod\":%g,\"flush_max_workers\":%u,"
                       "\"max_levels\":%u,\"block_size\":%u,\"max_immutable_memtables\":%u,"
                       "\"block_cache_data_mb\":%g,\"block_cache_index_mb\":%g,"
                       "\"block_cache_bloom_mb\":%g,\"data_reads\":\"%s\","
                       "\"sync_writes\":%s,\"wal_writes\":\"%s\",\"sync_waits\":\"%s\","
                       "\"wal_recovery\":\"%s\","
                       "\"compression\":",
                  o->mode, (unsigned long long)o->max_memtable_entries, o->max_memtable_size_mb,
                  o->l0_compaction_threshold, o->l0_slowdown_writes_trigger,
                  o->l0_stop_writes_trigger, o->target_file_size_mb, o->level_base_mb,
                  o->level_size_ratio, o->compaction_workers, o->bloom_fpr_dev, o->bloom_fpr_prod,
                  o->flush_max_workers, o->max_levels, o->block_size, o->max_immutable_memtables,
                  o->block_cache_data_mb, o->block_cache_index_mb, o->block_cache_bloom_mb,
                  o->data_reads_cached ? "cached" : "in_place", o->sync_writes ? "true" : "false",
                  o->wal_writes_mapped ? "mapped" : "write", o->sync_waits_yield ? "yield" : "block",
                  o->wal_recovery == KW_WAL_SKIP_CORRUPT ? "skip_corrupt" : "tolerate_tail");
    kw_json_string(out, o->compression, strlen(o->compression));
    kw_buf_push(out, '}');
}

/* ---- public API ---- */

static const char *type_name(setting_type t)
{
    switch (t) {
    case T_UINT: return "uint";
    case T_DOUBLE: return "number";
    case T_BOOL: return "bool";
    case T_ENUM: return "enum";
    }
    return "unknown";
}

char *kiwi_settings_describe(void)
{
    kw_buf b;
    kw_buf_init(&b);
    kw_buf_push(&b, '[');
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const setting *s = &SETTINGS[i];
        bool ranged = s->type == T_UINT || s->type == T_DOUBLE;
        kw_buf_printf(&b, "%s{\"name\":\"%s\",\"type\":\"%s\",", i ? "," : "", s->name,
                      type_name(s->type));
        if (ranged)
            kw_buf_printf(&b, "\"min\":%.17g,\"max\":%.17g,", s->min, s->max);
        else
            kw_buf_printf(&b, "\"min\":null,\"max\":null,");
        if (s->type == T_ENUM) {
            kw_buf_printf(&b, "\"choices\":[");
            const char *p = s->choices;
            for (int n = 0; p && *p; n++) {
                const char *bar = strchr(p, '|');
                size_t len = bar ? (size_t)(bar - p) : strlen(p);
                kw_buf_printf(&b, "%s\"%.*s\"", n ? "," : "", (int)len, p);
                p = bar ? bar + 1 : NULL;
            }
            kw_buf_printf(&b, "],");
        } else {
            kw_buf_printf(&b, "\"choices\":null,");
        }
        kw_buf_printf(&b, "\"live\":%s,\"dev\":\"%s\",\"prod\":\"%s\"}",
                      s->live ? "true" : "false", s->dev_default, s->prod_default);
    }
    kw_buf_push(&b, ']');
    kw_buf_push(&b, '\0');
    return b.data;
}

kiwi_options *kiwi_options_create(const char *mode)
{
    kiwi_options *o = kw_malloc(sizeof *o);
    if (!kw_options_defaults(o, mode)) {
        free(o);
        return NULL;
    }
    return o;
}

kiwi_status kiwi_options_set(kiwi_options *o, const char *name, const char *value, char **errmsg)
{
    if (o == NULL)
        return kw_error(errmsg, KIWI_INVALID_ARGUMENT, "options handle is NULL");
    return kw_options_apply(o, name, value, false, errmsg);
}

void kiwi_options_set_event_handler(kiwi_options *o, kiwi_event_fn fn, void *ctx)
{
    o->event_fn = fn;
    o->event_ctx = ctx;
}

void kiwi_options_destroy(kiwi_options *o)
{
    free(o);
}
