/*
 * fuzz_manifest.c: libFuzzer target for the manifest reader: kw_edit_decode (one version edit),
 * kw_wal_read over a file of framed edits, and recovery from it (kw_vset_open). The input is
 * read three ways:
 *
 *   1. as one edit payload: kw_edit_decode. A failure is KIWI_CORRUPTION with a message and
 *      leaves the edit empty; a success re-encodes to bytes that decode to the same edit, and
 *      encoding is stable (encode(decode(encode(e))) == encode(e)).
 *   2. as a manifest file (framed edits), as it is and with every record's CRC repaired: each
 *      record the reader delivers goes through the checks of 1.
 *   3. the CRC-repaired file as MANIFEST-000001 of a directory whose CURRENT names it and which
 *      holds two real SSTables (fuzz_manifest_tables.h): kw_vset_open must succeed or fail
 *      cleanly; when it succeeds, every live file has an open table, and opening the directory
 *      again (recovering from the manifest the first open wrote) gives the same version, log
 *      number and last sequence.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_common.h"
#include "fuzz_manifest_tables.h"
#include "version.h"
#include "version_edit.h"
#include "wal.h"

/* ---- 1: one edit ----------------------------------------------------------------------------- */

static bool bytes_eq(const char *a, size_t an, const char *b, size_t bn)
{
    return an == bn && (an == 0 || memcmp(a, b, an) == 0);
}

static bool edits_equal(const kw_version_edit *a, const kw_version_edit *b)
{
    if (a->has_log_number != b->has_log_number || a->has_next_file != b->has_next_file ||
        a->has_last_seq != b->has_last_seq || a->n_added != b->n_added ||
        a->n_deleted != b->n_deleted)
        return false;
    if ((a->has_log_number && a->log_number != b->log_number) ||
        (a->has_next_file && a->next_file != b->next_file) ||
        (a->has_last_seq && a->last_seq != b->last_seq))
        return false;
    for (size_t i = 0; i < a->n_added; i++) {
        const kw_edit_file *x = &a->added[i], *y = &b->added[i];
        if (x->level != y->level || x->number != y->number || x->size != y->size ||
            x->min_seq != y->min_seq || x->max_seq != y->max_seq || x->entries != y->entries ||
            x->tombstones != y->tombstones ||
            !bytes_eq(x->smallest, x->smallest_len, y->smallest, y->smallest_len) ||
            !bytes_eq(x->largest, x->largest_len, y->largest, y->largest_len))
            return false;
    }
    for (size_t i = 0; i < a->n_deleted; i++)
        if (a->deleted[i].level != b->deleted[i].level ||
            a->deleted[i].number != b->deleted[i].number)
            return false;
    return true;
}

static bool edit_is_empty(const kw_version_edit *e)
{
    return !e->has_log_number && !e->has_next_file && !e->has_last_seq && e->n_added == 0 &&
           e->n_deleted == 0 && e->added == NULL && e->deleted == NULL;
}

static void check_edit(kw_slice payload)
{
    kw_version_edit e, again;
    kw_edit_init(&e);
    char *err = NULL;
    kiwi_status st = kw_edit_decode(payload, &e, &err);
    if (st != KIWI_OK) {
        FUZZ_CHECK(st == KIWI_CORRUPTION);
        FUZZ_CHECK_ERROR(st, err);
        FUZZ_CHECK(edit_is_empty(&e));
        free(err);
        return;
    }
    FUZZ_CHECK(err == NULL);
    kw_buf enc, enc2;
    kw_buf_init(&enc);
    kw_buf_init(&enc2);
    kw_edit_encode(&e, &enc);
    kw_edit_init(&again);
    FUZZ_CHECK(kw_edit_decode(kw_slice_make(enc.data, enc.len), &again, NULL) == KIWI_OK);
    FUZZ_CHECK(edits_equal(&e, &again));
    kw_edit_encode(&again, &enc2);
    FUZZ_CHECK(bytes_eq(enc.data, enc.len, enc2.data, enc2.len));
    kw_buf_free(&enc);
    kw_buf_free(&enc2);
    kw_edit_free(&again);
    kw_edit_free(&e);
}

/* ---- 2: a file of framed edits --------------------------------------------------------------- */

static kiwi_status on_record(void *ctx, kw_slice payload, uint64_t offset, char **errmsg)
{
    (void)ctx;
    (void)offset;
    (void)errmsg;
    check_edit(payload);
    return KIWI_OK;
}

static void read_framed(const char *buf, size_t size)
{
    kw_wal_read_stats stats;
    char *err = NULL;
    kiwi_status st =
        kw_wal_read_buffer("MANIFEST", buf, size, KW_WAL_TOLERATE_TAIL, on_record, NULL, &stats,
                           &err);
    if (st != KIWI_OK)
        FUZZ_CHECK_ERROR(st, err);
    free(err);
}

/* ---- 3: recovery ----------------------------------------------------------------------------- */

static char *table_bytes[FUZZ_MANIFEST_TABLES];
static size_t table_size[FUZZ_MANIFEST_TABLES];

static void build_tables(void)
{
    for (int i = 0; i < FUZZ_MANIFEST_TABLES; i++) {
        char name[32];
        snprintf(name, sizeof name, "build-%d.sst", i);
        char *path = kw_join_path(fuzz_dir(), name), *err = NULL;
        if (fuzz_manifest_build_table(path, i, NULL, &err) != KIWI_OK ||
            kw_read_file(path, &table_bytes[i], &table_size[i], &err) != KIWI_OK) {
            fprintf(stderr, "fuzz_manifest: %s\n", err);
            abort();
        }
        remove(path);
        free(path);
    }
}

/* A fresh directory: CURRENT, MANIFEST-000001 = buf, the tables. */
static const char *make_db_dir(const char *buf, size_t size)
{
    static char dir[600];
    snprintf(dir, sizeof dir, "%s/db", fuzz_dir());
    fuzz_rmtree(dir);
    if (mkdir(dir, 0755) != 0) {
        perror(dir);
        abort();
    }
    fuzz_write_file("db/CURRENT", "MANIFEST-000001\n", 16);
    fuzz_write_file("db/MANIFEST-000001", buf, size);
    for (int i = 0; i < FUZZ_MANIFEST_TABLES; i++) {
        char name[64];
        snprintf(name, sizeof name, "db/%06llu.sst",
                 (unsigned long long)fuzz_manifest_table_number(i));
        fuzz_write_file(name, table_bytes[i], table_size[i]);
    }
    return dir;
}

static bool versions_equal(const kw_version *a, const kw_version *b)
{
    for (int l = 0; l < KW_MAX_LEVELS; l++) {
        if (a->nfiles[l] != b->nfiles[l])
            return false;
        for (size_t i = 0; i < a->nfiles[l]; i++) {
            const kw_file_meta *x = a->files[l][i], *y = b->files[l][i];
            if (x->number != y->number || x->size != y->size || x->min_seq != y->min_seq ||
                x->max_seq != y->max_seq || x->entries != y->entries ||
                x->tombstones != y->tombstones ||
                !bytes_eq(x->smallest, x->smallest_len, y->smallest, y->smallest_len) ||
                !bytes_eq(x->largest, x->largest_len, y->largest, y->largest_len))
                return false;
        }
    }
    return true;
}

static void recover(const char *buf, size_t size)
{
    const char *dir = make_db_dir(buf, size);
    kw_vset *vs = NULL;
    bool created = true;
    char *err = NULL;
    kiwi_status st = kw_vset_open(dir, NULL, &vs, &created, &err);
    if (st != KIWI_OK) {
        FUZZ_CHECK_ERROR(st, err);
        FUZZ_CHECK(vs == NULL);
        free(err);
        return;
    }
    FUZZ_CHECK(!created);
    for (int l = 0; l < KW_MAX_LEVELS; l++)
        for (size_t i = 0; i < vs->current->nfiles[l]; i++)
            FUZZ_CHECK(vs->current->files[l][i]->table != NULL);
    /* recovery from what recovery wrote gives the same state */
    kw_vset *vs2 = NULL;
    st = kw_vset_open(dir, NULL, &vs2, &created, &err);
    if (st != KIWI_OK)
        fprintf(stderr, "fuzz_manifest: reopen failed: %s\n", err);
    FUZZ_CHECK(st == KIWI_OK && !created);
    FUZZ_CHECK(versions_equal(vs->current, vs2->current));
    FUZZ_CHECK(vs2->log_number == vs->log_number && vs2->last_seq == vs->last_seq);
    kw_vset_close(vs2);
    kw_vset_close(vs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (table_bytes[0] == NULL)
        build_tables();
    char *buf = fuzz_copy(data, size);
    check_edit(kw_slice_make(buf, size));
    read_framed(buf, size);
    if (fuzz_fix_wal_crcs(buf, size))
        read_framed(buf, size);
    recover(buf, size);
    free(buf);
    return 0;
}
