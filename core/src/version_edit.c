/*
 * version_edit.c: kw_version_edit, one manifest record, and its msgpack map encoding (packed with
 * msgpack-c, decoded strictly through kw_mp_reader). Format: version_edit.h and
 * docs/internals/manifest.md.
 */
#include "version_edit.h"

#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h" /* kw_mp_reader */

#define ADD_FIELDS 9 /* [level, number, size, smallest, largest, min_seq, max_seq, entries, tombs] */
#define DEL_FIELDS 2 /* [level, number] */

/* ---- building ---------------------------------------------------------------------------------- */

void kw_edit_init(kw_version_edit *e)
{
    *e = (kw_version_edit){0};
}

void kw_edit_free(kw_version_edit *e)
{
    for (size_t i = 0; i < e->n_added; i++) {
        free(e->added[i].smallest);
        free(e->added[i].largest);
    }
    free(e->added);
    free(e->deleted);
    kw_edit_init(e);
}

void kw_edit_set_log_number(kw_version_edit *e, uint64_t n)
{
    e->has_log_number = true;
    e->log_number = n;
}

void kw_edit_set_next_file(kw_version_edit *e, uint64_t n)
{
    e->has_next_file = true;
    e->next_file = n;
}

void kw_edit_set_last_seq(kw_version_edit *e, uint64_t s)
{
    e->has_last_seq = true;
    e->last_seq = s;
}

void kw_edit_add_file(kw_version_edit *e, const kw_edit_file *f)
{
    e->added = kw_realloc(e->added, (e->n_added + 1) * sizeof *e->added);
    kw_edit_file *dst = &e->added[e->n_added++];
    *dst = *f;
    dst->smallest = kw_memdup(f->smallest, f->smallest_len);
    dst->largest = kw_memdup(f->largest, f->largest_len);
}

void kw_edit_delete_file(kw_version_edit *e, uint32_t level, uint64_t number)
{
    e->deleted = kw_realloc(e->deleted, (e->n_deleted + 1) * sizeof *e->deleted);
    e->deleted[e->n_deleted].level = level;
    e->deleted[e->n_deleted].number = number;
    e->n_deleted++;
}

/* ---- encoding ---------------------------------------------------------------------------------- */

static int buf_write(void *data, const char *buf, size_t len)
{
    kw_buf_append(data, buf, len);
    return 0;
}

static void pack_key(msgpack_packer *pk, const char *name)
{
    size_t n = strlen(name);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, name, n);
}

static void pack_bin(msgpack_packer *pk, const char *p, size_t n)
{
    msgpack_pack_bin(pk, n);
    msgpack_pack_bin_body(pk, p, n);
}

static void pack_added(msgpack_packer *pk, const kw_edit_file *f)
{
    msgpack_pack_array(pk, ADD_FIELDS);
    msgpack_pack_uint32(pk, f->level);
    msgpack_pack_uint64(pk, f->number);
    msgpack_pack_uint64(pk, f->size);
    pack_bin(pk, f->smallest, f->smallest_len);
    pack_bin(pk, f->largest, f->largest_len);
    msgpack_pack_uint64(pk, f->min_seq);
    msgpack_pack_uint64(pk, f->max_seq);
    msgpack_pack_uint64(pk, f->entries);
    msgpack_pack_uint64(pk, f->tombstones);
}

void kw_edit_encode(const kw_version_edit *e, kw_buf *out)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, buf_write);
    size_t fields = (size_t)e->has_log_number + e->has_next_file + e->has_last_seq +
                    (e->n_added > 0) + (e->n_deleted > 0);
    msgpack_pack_map(&pk, fields);
    if (e->has_log_number) {
        pack_key(&pk, "log");
        msgpack_pack_uint64(&pk, e->log_number);
    }
    if (e->has_next_file) {
        pack_key(&pk, "next_file");
        msgpack_pack_uint64(&pk, e->next_file);
    }
    if (e->has_last_seq) {
        pack_key(&pk, "last_seq");
        msgpack_pack_uint64(&pk, e->last_seq);
    }
    if (e->n_added > 0) {
        pack_key(&pk, "add");
        msgpack_pack_array(&pk, e->n_added);
        for (size_t i = 0; i < e->n_added; i++)
            pack_added(&pk, &e->added[i]);
    }
    if (e->n_deleted > 0) {
        pack_key(&pk, "del");
        msgpack_pack_array(&pk, e->n_deleted);
        for (size_t i = 0; i < e->n_deleted; i++) {
            msgpack_pack_array(&pk, DEL_FIELDS);
            msgpack_pack_uint32(&pk, e->deleted[i].level);
            msgpack_pack_uint64(&pk, e->deleted[i].number);
        }
    }
}

/* ---- decoding ---------------------------------------------------------------------------------- */

static bool fail(kw_mp_reader *r, size_t at, const char *err)
{
    r->off = at;
    if (r->err == NULL)
        r->err = err;
    return false;
}

static bool read_level(kw_mp_reader *r, uint32_t *level)
{
    size_t at = r->off;
    uint64_t v;
    if (!kw_mp_read_uint(r, &v))
        return false;
    if (v > UINT32_MAX)
        return fail(r, at, "level out of range");
    *level = (uint32_t)v;
    return true;
}

static bool read_tuple(kw_mp_reader *r, uint32_t want)
{
    size_t at = r->off;
    uint32_t n;
    if (!kw_mp_read_array(r, &n))
        return false;
    return n == want ? true : fail(r, at, "wrong number of fields in a file entry");
}

static bool read_added(kw_mp_reader *r, kw_edit_file *f)
{
    kw_slice lo, hi;
    if (!read_tuple(r, ADD_FIELDS) || !read_level(r, &f->level) ||
        !kw_mp_read_uint(r, &f->number) || !kw_mp_read_uint(r, &f->size) ||
        !kw_mp_read_bin(r, &lo) || !kw_mp_read_bin(r, &hi) || !kw_mp_read_uint(r, &f->min_seq) ||
        !kw_mp_read_uint(r, &f->max_seq) || !kw_mp_read_uint(r, &f->entries) ||
        !kw_mp_read_uint(r, &f->tombstones))
        return false;
    /* kw_edit_add_file copies; these point into the payload until then */
    f->smallest = (char *)lo.data;
    f->smallest_len = lo.size;
    f->largest = (char *)hi.data;
    f->largest_len = hi.size;
    return true;
}

static bool read_add_list(kw_mp_reader *r, kw_version_edit *e)
{
    uint32_t n;
    if (!kw_mp_read_array(r, &n))
        return false;
    for (uint32_t i = 0; i < n; i++) {
        kw_edit_file f;
        if (!read_added(r, &f))
            return false;
        kw_edit_add_file(e, &f);
    }
    return true;
}

static bool read_del_list(kw_mp_reader *r, kw_version_edit *e)
{
    uint32_t n;
    if (!kw_mp_read_array(r, &n))
        return false;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t level;
        uint64_t number;
        if (!read_tuple(r, DEL_FIELDS) || !read_level(r, &level) || !kw_mp_read_uint(r, &number))
            return false;
        kw_edit_delete_file(e, level, number);
    }
    return true;
}

static const char ERR_UNKNOWN_KEY[] = "unknown key";

enum { F_LOG = 1, F_NEXT = 2, F_SEQ = 4, F_ADD = 8, F_DEL = 16 };

static bool key_is(kw_slice key, const char *name)
{
    return key.size == strlen(name) && memcmp(key.data, name, key.size) == 0;
}

/* Reads the value of one map entry; `seen` catches a key given twice. */
static bool read_field(kw_mp_reader *r, kw_version_edit *e, unsigned *seen)
{
    size_t at = r->off;
    kw_slice key;
    if (!kw_mp_read_str(r, &key))
        return false;
    unsigned bit = key_is(key, "log")         ? F_LOG
                   : key_is(key, "next_file") ? F_NEXT
                   : key_is(key, "last_seq")  ? F_SEQ
                   : key_is(key, "add")       ? F_ADD
                   : key_is(key, "del")       ? F_DEL
                                              : 0;
    if (bit == 0)
        return fail(r, at, ERR_UNKNOWN_KEY);
    if (*seen & bit)
        return fail(r, at, "duplicate key");
    *seen |= bit;
    switch (bit) {
    case F_LOG:
        e->has_log_number = true;
        return kw_mp_read_uint(r, &e->log_number);
    case F_NEXT:
        e->has_next_file = true;
        return kw_mp_read_uint(r, &e->next_file);
    case F_SEQ:
        e->has_last_seq = true;
        return kw_mp_read_uint(r, &e->last_seq);
    case F_ADD:
        return read_add_list(r, e);
    default:
        return read_del_list(r, e);
    }
}

/* Names the key (printable ASCII only, at most 64 bytes) so a newer format is recognizable. */
static kiwi_status unknown_key_error(const kw_mp_reader *at_key, char **errmsg)
{
    kw_mp_reader k;
    kw_mp_reader_init(&k, kw_slice_make(at_key->data, at_key->size));
    k.off = at_key->off;
    kw_slice key = kw_slice_make("", 0);
    kw_mp_read_str(&k, &key);
    kw_mp_reader_destroy(&k);
    char name[65];
    size_t n = key.size < 64 ? key.size : 64;
    for (size_t i = 0; i < n; i++)
        name[i] = key.data[i] >= 0x20 && key.data[i] < 0x7f ? key.data[i] : '?';
    name[n] = '\0';
    return kw_error(errmsg, KIWI_CORRUPTION,
                    "version edit: byte %zu of %zu: unknown key \"%s\" (written by a newer kiwi?)",
                    at_key->off, at_key->size, name);
}

kiwi_status kw_edit_decode(kw_slice payload, kw_version_edit *e, char **errmsg)
{
    kw_mp_reader r;
    kw_mp_reader_init(&r, payload);
    uint32_t n;
    unsigned seen = 0;
    bool ok = kw_mp_read_map(&r, &n);
    for (uint32_t i = 0; ok && i < n; i++)
        ok = read_field(&r, e, &seen);
    if (ok && r.off != r.size)
        ok = fail(&r, r.off, "trailing bytes after the map");
    kiwi_status st = KIWI_OK;
    if (!ok) {
        kw_edit_free(e); /* leaves e empty and reusable */
        if (r.err == ERR_UNKNOWN_KEY)
            st = unknown_key_error(&r, errmsg);
        else
            st = kw_error(errmsg, KIWI_CORRUPTION, "version edit: byte %zu of %zu: %s", r.off,
                          r.size, r.err ? r.err : "invalid");
    }
    kw_mp_reader_destroy(&r);
    return st;
}
