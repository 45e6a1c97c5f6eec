/*
 * gen_seeds.c: writes the seed corpus of every fuzz target (`make fuzz-seeds`), using the
 * engine's own writers so the seeds are exactly what kiwi produces:
 *     <out>/wal/seed-*        WAL files (kw_wal_writer + kiwi_batch)
 *     <out>/table/seed-*      SSTables (kw_table_builder)
 *     <out>/manifest/seed-*   manifests (framed version edits) and bare edit payloads
 *     <out>/msgpack/seed-*    batch payloads and kw_mp_reader scripts (fuzz_msgpack.c format)
 *     <out>/config/seed-*     config.json files
 * Usage: gen_seeds <out-dir>. Deterministic: the same seeds every run.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "batch.h"
#include "crc32c.h"
#include "dbformat.h"
#include "env.h"
#include "fuzz_manifest_tables.h"
#include "table.h"
#include "version_edit.h"
#include "wal.h"

static const char *out_dir;
static char tmp_dir[512];

static void die(const char *what, const char *err)
{
    fprintf(stderr, "gen_seeds: %s: %s\n", what, err ? err : "failed");
    exit(1);
}

static void write_seed(const char *target, const char *name, const void *data, size_t size)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", out_dir, target);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/%s/seed-%s", out_dir, target, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || (size > 0 && fwrite(data, 1, size, f) != size) || fclose(f) != 0)
        die(path, strerror(errno));
}

/* Copies a file the engine wrote into the corpus. */
static void copy_seed(const char *target, const char *name, const char *path)
{
    char *data = NULL, *err = NULL;
    size_t size = 0;
    if (kw_read_file(path, &data, &size, &err) != KIWI_OK)
        die(path, err);
    write_seed(target, name, data, size);
    free(data);
}

static char *tmp_path(const char *name)
{
    return kw_join_path(tmp_dir, name);
}

/* ---- WAL ------------------------------------------------------------------------------------- */

static kiwi_batch *sample_batch(uint64_t seq, int puts, int dels, size_t vlen)
{
    kiwi_batch *b = kiwi_batch_create();
    char key[32];
    char *val = kw_calloc(1, vlen + 1);
    memset(val, 'v', vlen);
    for (int i = 0; i < puts; i++) {
        int n = snprintf(key, sizeof key, "key%03d", i);
        kiwi_batch_put(b, key, (size_t)n, val, vlen);
    }
    for (int i = 0; i < dels; i++) {
        int n = snprintf(key, sizeof key, "gone%d", i);
        kiwi_batch_delete(b, key, (size_t)n);
    }
    free(val);
    kw_batch_set_sequence(b, seq);
    return b;
}

/* Writes the batches as a log and returns its path (malloc'd). */
static char *write_log(const char *name, kiwi_batch **batches, int n)
{
    char *path = tmp_path(name), *err = NULL;
    kw_wal_writer *w;
    if (kw_wal_writer_create(path, &w, &err) != KIWI_OK)
        die(path, err);
    for (int i = 0; i < n; i++)
        if (kw_wal_writer_add(w, kw_batch_payload(batches[i]), &err) != KIWI_OK)
            die(path, err);
    if (kw_wal_writer_close(w, false, &err) != KIWI_OK)
        die(path, err);
    return path;
}

static void wal_seeds(void)
{
    kiwi_batch *b[4] = {sample_batch(1, 3, 1, 5), sample_batch(5, 0, 0, 0),
                        sample_batch(5, 1, 2, 300), sample_batch(8, 40, 10, 1)};
    char *path = write_log("a.log", b, 4);
    copy_seed("wal", "four-batches", path);
    char *data = NULL, *err = NULL;
    size_t size = 0;
    if (kw_read_file(path, &data, &size, &err) != KIWI_OK)
        die(path, err);
    write_seed("wal", "torn-tail", data, size - 7);
    data[20] ^= 0x40; /* inside the first payload: a checksum mismatch before good records */
    write_seed("wal", "bad-crc-first", data, size);
    free(data);
    free(path);
    path = write_log("b.log", b, 1);
    copy_seed("wal", "one-batch", path);
    free(path);
    write_seed("wal", "empty", "", 0);
    /* a record that is not a batch: 0x90 (an empty array), framed */
    char rec[9] = {1, 0, 0, 0, 0, 0, 0, 0, (char)0x90};
    kw_encode_fixed32(rec + 4, kw_crc32c(rec + 8, 1));
    write_seed("wal", "not-a-batch", rec, sizeof rec);
    for (int i = 0; i < 4; i++)
        kiwi_batch_destroy(b[i]);
}

/* ---- SSTables -------------------------------------------------------------------------------- */

typedef struct {
    const char *name;
    size_t block_size;
    int restart_interval;
    int keys;          /* user keys */
    int versions;      /* per key, newest first */
    size_t value_len;
    bool binary_keys;  /* include an empty key and keys with 0x00 / 0xff bytes */
} table_spec;

static void build_table(const table_spec *s)
{
    char *path = tmp_path("t.sst"), *err = NULL;
    kw_table_options o;
    kw_table_options_default(&o);
    o.block_size = s->block_size;
    o.restart_interval = s->restart_interval;
    kw_table_builder *b;
    if (kw_table_builder_create(path, &o, &b, &err) != KIWI_OK)
        die(path, err);
    kw_buf ikey, ukey;
    kw_buf_init(&ikey);
    kw_buf_init(&ukey);
    char *val = kw_malloc(s->value_len + 1);
    for (int k = 0; k < s->keys; k++) {
        kw_buf_clear(&ukey);
        if (s->binary_keys && k == 0) {
            /* the empty user key sorts first */
        } else if (s->binary_keys && k == s->keys - 1) {
            kw_buf_append(&ukey, "\xff\xff\x00\x01", 4);
        } else {
            kw_buf_printf(&ukey, "user:%04d", k * 7);
            if (s->binary_keys)
                kw_buf_push(&ukey, '\0');
        }
        for (int v = s->versions; v >= 1; v--) {
            uint64_t seq = (uint64_t)k * 10 + (uint64_t)v;
            kw_value_type type = (k + v) % 5 == 0 ? KW_TYPE_DELETE : KW_TYPE_VALUE;
            kw_buf_clear(&ikey);
            kw_ikey_append(&ikey, kw_slice_make(ukey.data, ukey.len), seq, type);
            size_t vlen = type == KW_TYPE_DELETE ? 0 : s->value_len + (size_t)(k % 3);
            val = kw_realloc(val, vlen + 1);
            memset(val, 'a' + k % 26, vlen);
            kw_table_builder_add(b, kw_slice_make(ikey.data, ikey.len), kw_slice_make(val, vlen));
        }
    }
    if (kw_table_builder_finish(b, NULL, &err) != KIWI_OK)
        die(path, err);
    copy_seed("table", s->name, path);
    free(val);
    kw_buf_free(&ikey);
    kw_buf_free(&ukey);
    free(path);
}

static void table_seeds(void)
{
    static const table_spec specs[] = {
        {"one-entry", 4096, 16, 1, 1, 3, false},
        {"multi-block", 128, 4, 30, 2, 6, false},
        {"restart-1", 64, 1, 12, 1, 4, false},
        {"one-block-versions", 4096, 16, 6, 4, 8, false},
        {"big-values", 512, 16, 5, 1, 700, false},
        {"binary-keys", 96, 2, 10, 2, 2, true},
    };
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++)
        build_table(&specs[i]);
    /* the two tables the manifest target's directories hold */
    for (int i = 0; i < FUZZ_MANIFEST_TABLES; i++) {
        char *path = tmp_path("m.sst"), *err = NULL;
        if (fuzz_manifest_build_table(path, i, NULL, &err) != KIWI_OK)
            die(path, err);
        char name[32];
        snprintf(name, sizeof name, "manifest-table-%d", i);
        copy_seed("table", name, path);
        free(path);
    }
}

/* ---- manifests ------------------------------------------------------------------------------- */

static void add_file(kw_version_edit *e, uint32_t level, int table)
{
    kw_edit_file f;
    memset(&f, 0, sizeof f);
    f.level = level;
    f.number = fuzz_manifest_table_number(table);
    f.size = 1000;
    kw_buf lo, hi;
    kw_buf_init(&lo);
    kw_buf_init(&hi);
    fuzz_manifest_table_range(table, &lo, &hi);
    f.smallest = lo.data;
    f.smallest_len = lo.len;
    f.largest = hi.data;
    f.largest_len = hi.len;
    f.min_seq = 1;
    f.max_seq = 20;
    f.entries = 10;
    f.tombstones = 1;
    kw_edit_add_file(e, &f);
    kw_buf_free(&lo);
    kw_buf_free(&hi);
}

static void encode_edit(const kw_version_edit *e, kw_buf *framed, kw_buf *bare)
{
    kw_buf p;
    kw_buf_init(&p);
    kw_edit_encode(e, &p);
    char head[KW_WAL_HEADER_SIZE];
    kw_encode_fixed32(head, (uint32_t)p.len);
    kw_encode_fixed32(head + 4, kw_crc32c(p.data, p.len));
    kw_buf_append(framed, head, sizeof head);
    kw_buf_append(framed, p.data, p.len);
    if (bare != NULL)
        kw_buf_append(bare, p.data, p.len);
    kw_buf_free(&p);
}

static void manifest_seeds(void)
{
    kw_buf m, bare;
    kw_buf_init(&m);
    kw_buf_init(&bare);
    kw_version_edit e;
    /* a snapshot: both tables at L0 and L1 */
    kw_edit_init(&e);
    kw_edit_set_log_number(&e, 3);
    kw_edit_set_next_file(&e, 20);
    kw_edit_set_last_seq(&e, 100);
    add_file(&e, 0, 0);
    add_file(&e, 1, 1);
    encode_edit(&e, &m, &bare);
    write_seed("manifest", "edit-snapshot", bare.data, bare.len);
    write_seed("manifest", "snapshot", m.data, m.len);
    kw_edit_free(&e);
    /* a move of table 0 to L1, then a delete of table 1, then a new log number */
    kw_edit_init(&e);
    kw_edit_delete_file(&e, 0, fuzz_manifest_table_number(0));
    add_file(&e, 1, 0);
    encode_edit(&e, &m, NULL);
    kw_edit_free(&e);
    kw_edit_init(&e);
    kw_edit_delete_file(&e, 1, fuzz_manifest_table_number(1));
    kw_edit_set_last_seq(&e, 200);
    encode_edit(&e, &m, NULL);
    kw_edit_free(&e);
    kw_edit_init(&e);
    kw_edit_set_log_number(&e, 9);
    encode_edit(&e, &m, NULL);
    kw_edit_free(&e);
    write_seed("manifest", "move-delete", m.data, m.len);
    write_seed("manifest", "torn-tail", m.data, m.len - 3);
    kw_buf_clear(&bare);
    kw_edit_init(&e);
    kw_edit_delete_file(&e, 6, 12345);
    kw_edit_set_next_file(&e, UINT64_MAX);
    encode_edit(&e, &bare, NULL);
    kw_edit_free(&e);
    write_seed("manifest", "edit-delete-unknown", bare.data + 8, bare.len - 8);
    write_seed("manifest", "empty-map", "\x80", 1);
    kw_buf_free(&m);
    kw_buf_free(&bare);
}

/* ---- msgpack --------------------------------------------------------------------------------- */

static void msgpack_seeds(void)
{
    kw_buf s;
    kw_buf_init(&s);
    kiwi_batch *b = sample_batch(42, 2, 1, 3);
    kw_buf_push(&s, 0); /* mode: batch */
    kw_slice p = kw_batch_payload(b);
    kw_buf_append(&s, p.data, p.size);
    write_seed("msgpack", "batch", s.data, s.len);
    /* the ops alone (the target also tries them behind a batch head) */
    kw_buf_clear(&s);
    kw_buf_push(&s, 2);
    kw_buf_append(&s, p.data + KW_BATCH_HEADER_SIZE, p.size - KW_BATCH_HEADER_SIZE);
    write_seed("msgpack", "ops", s.data, s.len);
    kiwi_batch_destroy(b);
    /* a script over a version edit: map, then str/uint pairs, then the add array */
    kw_version_edit e;
    kw_edit_init(&e);
    kw_edit_set_log_number(&e, 7);
    add_file(&e, 2, 1);
    kw_buf enc;
    kw_buf_init(&enc);
    kw_edit_encode(&e, &enc);
    kw_edit_free(&e);
    /* ops: 0 array, 1 map, 2 uint, 3 bin, 4 str */
    static const char script[] = {1, 4, 2, 4, 0, 0, 2, 2, 2, 3, 3, 2, 2, 2, 2};
    kw_buf_clear(&s);
    kw_buf_push(&s, 1);                          /* mode: script */
    kw_buf_push(&s, (char)(sizeof script - 1)); /* k = 1 + byte % 16 */
    kw_buf_append(&s, script, sizeof script);
    kw_buf_append(&s, enc.data, enc.len);
    write_seed("msgpack", "script-edit", s.data, s.len);
    kw_buf_free(&enc);
    /* every container and scalar form */
    static const char forms[] = "\x01\x04\x00\x01\x02\x03\x04"
                                "\xdc\x00\x01\x07\xdd\x00\x00\x00\x01\xcc\xff"
                                "\xde\x00\x01\xd9\x01x\xcd\x01\x00\xc4\x02hi\xc5\x00\x01z"
                                "\xa3str\xcf\x00\x00\x00\x00\x00\x00\x00\x01\xd0\x05\xd3\xff";
    write_seed("msgpack", "forms", forms, sizeof forms - 1);
    kw_buf_free(&s);
}

/* ---- config.json ----------------------------------------------------------------------------- */

static void config_seeds(void)
{
    static const struct {
        const char *name, *text;
    } seeds[] = {
        {"empty-object", "{}\n"},
        {"typical", "{\n  \"mode\": \"prod\",\n  \"max_memtable_entries\": 50000,\n"
                    "  \"bloom_fpr_prod\": 0.01,\n  \"sync_writes\": true,\n"
                    "  \"log_level\": \"info\",\n  \"log_file_max_mb\": 16\n}\n"},
        {"every-lua-setting", "{\"log_level\": \"debug\", \"log_to_file\": false, "
                              "\"log_file_max_mb\": 0.5, \"log_files_keep\": 2, "
                              "\"log_to_stderr\": true, \"log_port\": -1}"},
        {"engine-settings", "{\"max_levels\": 4, \"block_size\": 4096, \"wal_recovery\": "
                            "\"skip_corrupt\", \"compression\": \"none\", "
                            "\"block_cache_data_mb\": 8.5, \"target_file_size_mb\": 2}"},
        {"wrong-type", "{\"max_levels\": \"four\"}"},
        {"out-of-range", "{\"log_files_keep\": 5000}"},
        {"unknown-key", "{\"no_such_setting\": 1}"},
        {"nested", "{\"log_level\": {\"a\": [1, 2, {\"b\": null}]}}"},
        {"array", "[1, 2, 3]"},
        {"not-json", "{\"mode\": dev}"},
        {"numbers", "{\"log_file_max_mb\": 1e3, \"log_port\": 65535.0, \"max_levels\": -0}"},
        {"whitespace", "  \n\t "},
    };
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++)
        write_seed("config", seeds[i].name, seeds[i].text, strlen(seeds[i].text));
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: gen_seeds <out-dir>\n");
        return 2;
    }
    out_dir = argv[1];
    mkdir(out_dir, 0755);
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/kiwi-seeds-XXXXXX");
    if (mkdtemp(tmp_dir) == NULL)
        die("mkdtemp", strerror(errno));
    wal_seeds();
    table_seeds();
    manifest_seeds();
    msgpack_seeds();
    config_seeds();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
    if (system(cmd) != 0)
        die("rm", tmp_dir);
    printf("gen_seeds: wrote the seed corpus under %s\n", out_dir);
    return 0;
}
