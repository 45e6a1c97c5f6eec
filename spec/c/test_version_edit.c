/*
 * test_version_edit.c: the manifest record: round trips with all, some and no fields; the
 * encoding read back by plain msgpack-c as a map; strict rejection of damaged or unknown input.
 */
#include <msgpack.h>

#include "ctest.h"
#include "version_edit.h"

static kw_edit_file file_of(uint32_t level, uint64_t number, const char *lo, size_t lolen,
                            const char *hi, size_t hilen)
{
    kw_edit_file f = {level, number, 4096 + number, (char *)lo, lolen, (char *)hi, hilen,
                      10 * number, 10 * number + 9, 100 + number, number % 3};
    return f;
}

static bool same_file(const kw_edit_file *a, const kw_edit_file *b)
{
    return a->level == b->level && a->number == b->number && a->size == b->size &&
           a->smallest_len == b->smallest_len && a->largest_len == b->largest_len &&
           memcmp(a->smallest, b->smallest, a->smallest_len) == 0 &&
           memcmp(a->largest, b->largest, a->largest_len) == 0 && a->min_seq == b->min_seq &&
           a->max_seq == b->max_seq && a->entries == b->entries &&
           a->tombstones == b->tombstones;
}

static bool same_edit(const kw_version_edit *a, const kw_version_edit *b)
{
    if (a->has_log_number != b->has_log_number || a->has_next_file != b->has_next_file ||
        a->has_last_seq != b->has_last_seq || a->n_added != b->n_added ||
        a->n_deleted != b->n_deleted)
        return false;
    if ((a->has_log_number && a->log_number != b->log_number) ||
        (a->has_next_file && a->next_file != b->next_file) ||
        (a->has_last_seq && a->last_seq != b->last_seq))
        return false;
    for (size_t i = 0; i < a->n_added; i++)
        if (!same_file(&a->added[i], &b->added[i]))
            return false;
    for (size_t i = 0; i < a->n_deleted; i++)
        if (a->deleted[i].level != b->deleted[i].level ||
            a->deleted[i].number != b->deleted[i].number)
            return false;
    return true;
}

/* Encodes e, decodes the bytes into a fresh edit and compares. */
static void check_round_trip(const kw_version_edit *e)
{
    kw_buf buf;
    kw_buf_init(&buf);
    kw_edit_encode(e, &buf);
    kw_version_edit d;
    kw_edit_init(&d);
    char *err = NULL, **errp = &err;
    CHECK_OK(kw_edit_decode(kw_slice_make(buf.data, buf.len), &d, &err), errp);
    CHECK(same_edit(e, &d));
    kw_edit_free(&d);
    kw_buf_free(&buf);
}

/* An edit with every field, binary keys included. */
static void full_edit(kw_version_edit *e)
{
    kw_edit_init(e);
    kw_edit_set_log_number(e, 12);
    kw_edit_set_next_file(e, 40);
    kw_edit_set_last_seq(e, (UINT64_C(1) << 56) - 1);
    kw_edit_file a = file_of(0, 17, "a\0\0\0\0\0\0\0\1", 9, "z\xff\0\0\0\0\0\0\1", 9);
    kw_edit_file b = file_of(3, 1ULL << 40, "", 0, "\0", 1);
    kw_edit_add_file(e, &a);
    kw_edit_add_file(e, &b);
    kw_edit_delete_file(e, 0, 9);
    kw_edit_delete_file(e, 6, 1ULL << 33);
}

static void test_round_trip_all_fields(void)
{
    kw_version_edit e;
    full_edit(&e);
    CHECK_EQ_U64(e.n_added, 2);
    check_round_trip(&e);
    kw_edit_free(&e);
    CHECK(e.n_added == 0 && e.added == NULL && !e.has_log_number); /* reusable */
}

static void test_round_trip_some_fields(void)
{
    kw_version_edit e;
    kw_edit_init(&e);
    kw_edit_set_last_seq(&e, 0);
    check_round_trip(&e);
    kw_edit_delete_file(&e, 1, 2);
    check_round_trip(&e);
    kw_edit_free(&e);

    kw_edit_init(&e);
    kw_edit_file f = file_of(2, 5, "k", 1, "m", 1);
    kw_edit_add_file(&e, &f);
    kw_edit_set_next_file(&e, 6);
    check_round_trip(&e);
    kw_edit_free(&e);
}

static void test_round_trip_empty_edit(void)
{
    kw_version_edit e;
    kw_edit_init(&e);
    kw_buf buf;
    kw_buf_init(&buf);
    kw_edit_encode(&e, &buf);
    CHECK_EQ_U64(buf.len, 1);
    CHECK((unsigned char)buf.data[0] == 0x80); /* {} */
    check_round_trip(&e);
    kw_buf_free(&buf);
}

static const msgpack_object *map_get(const msgpack_object *map, const char *key)
{
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object_kv *kv = &map->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == strlen(key) &&
            memcmp(kv->key.via.str.ptr, key, strlen(key)) == 0)
            return &kv->val;
    }
    return NULL;
}

static void test_encoding_is_a_plain_msgpack_map(void)
{
    kw_version_edit e;
    full_edit(&e);
    kw_buf buf;
    kw_buf_init(&buf);
    kw_edit_encode(&e, &buf);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    CHECK(msgpack_unpack_next(&u, buf.data, buf.len, &off) == MSGPACK_UNPACK_SUCCESS);
    CHECK_EQ_U64(off, buf.len);
    const msgpack_object *m = &u.data;
    CHECK(m->type == MSGPACK_OBJECT_MAP && m->via.map.size == 5);
    const msgpack_object *v = map_get(m, "log");
    CHECK(v && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER && v->via.u64 == 12);
    v = map_get(m, "next_file");
    CHECK(v && v->via.u64 == 40);
    v = map_get(m, "last_seq");
    CHECK(v && v->via.u64 == (UINT64_C(1) << 56) - 1);
    v = map_get(m, "add");
    CHECK(v && v->type == MSGPACK_OBJECT_ARRAY && v->via.array.size == 2);
    if (v && v->type == MSGPACK_OBJECT_ARRAY && v->via.array.size == 2) {
        const msgpack_object *f = &v->via.array.ptr[1];
        CHECK(f->type == MSGPACK_OBJECT_ARRAY && f->via.array.size == 9);
        CHECK(f->via.array.ptr[0].via.u64 == 3 && f->via.array.ptr[1].via.u64 == 1ULL << 40);
        CHECK(f->via.array.ptr[3].type == MSGPACK_OBJECT_BIN &&
              f->via.array.ptr[3].via.bin.size == 0);
        CHECK(f->via.array.ptr[4].type == MSGPACK_OBJECT_BIN &&
              f->via.array.ptr[4].via.bin.size == 1);
    }
    v = map_get(m, "del");
    CHECK(v && v->type == MSGPACK_OBJECT_ARRAY && v->via.array.size == 2);
    if (v && v->type == MSGPACK_OBJECT_ARRAY && v->via.array.size == 2) {
        const msgpack_object *d = &v->via.array.ptr[1];
        CHECK(d->via.array.size == 2 && d->via.array.ptr[0].via.u64 == 6 &&
              d->via.array.ptr[1].via.u64 == 1ULL << 33);
    }
    msgpack_unpacked_destroy(&u);
    kw_buf_free(&buf);
    kw_edit_free(&e);
}

/* Expects KIWI_CORRUPTION mentioning needle, and the edit left empty. */
static void expect_corrupt(const char *data, size_t n, const char *needle, int line)
{
    kw_version_edit d;
    kw_edit_init(&d);
    char *err = NULL;
    kiwi_status st = kw_edit_decode(kw_slice_make(data, n), &d, &err);
    bool empty = !d.has_log_number && !d.has_next_file && !d.has_last_seq && d.n_added == 0 &&
                 d.n_deleted == 0 && d.added == NULL && d.deleted == NULL;
    if (st != KIWI_CORRUPTION || !empty || err == NULL ||
        strncmp(err, "corruption: version edit: ", 26) != 0 ||
        (needle && strstr(err, needle) == NULL)) {
        fprintf(stderr, "line %d: n=%zu status %d empty %d err %s (wanted \"%s\")\n", line, n,
                (int)st, empty, err ? err : "(null)", needle ? needle : "");
        ctest_failures_in_test++;
    }
    kw_edit_free(&d);
    kiwi_free(err);
}

static void test_truncated_payload_rejected(void)
{
    kw_version_edit e;
    full_edit(&e);
    kw_buf buf;
    kw_buf_init(&buf);
    kw_edit_encode(&e, &buf);
    for (size_t n = 0; n < buf.len; n++)
        expect_corrupt(buf.data, n, NULL, __LINE__);
    kw_buf_push(&buf, 0); /* and a trailing byte */
    expect_corrupt(buf.data, buf.len, "trailing bytes", __LINE__);
    kw_buf_free(&buf);
    kw_edit_free(&e);
}

/* Packs a one-entry map {key: uint}. */
static void pack_one(msgpack_sbuffer *sb, const char *key, uint64_t v)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str_with_body(&pk, key, strlen(key));
    msgpack_pack_uint64(&pk, v);
}

static void test_unknown_and_malformed_fields_rejected(void)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    pack_one(&sb, "compression", 1);
    expect_corrupt(sb.data, sb.size, "byte 1 of 14: unknown key \"compression\"", __LINE__);
    msgpack_sbuffer_clear(&sb);

    /* a duplicate key */
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "log", 3);
    msgpack_pack_uint64(&pk, 1);
    msgpack_pack_str_with_body(&pk, "log", 3);
    msgpack_pack_uint64(&pk, 2);
    expect_corrupt(sb.data, sb.size, "duplicate key", __LINE__);
    msgpack_sbuffer_clear(&sb);

    /* a file entry with 8 fields */
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str_with_body(&pk, "add", 3);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_array(&pk, 8);
    for (int i = 0; i < 8; i++)
        msgpack_pack_uint8(&pk, 1);
    expect_corrupt(sb.data, sb.size, "wrong number of fields", __LINE__);
    msgpack_sbuffer_clear(&sb);

    /* a level beyond uint32 */
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str_with_body(&pk, "del", 3);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_uint64(&pk, 1ULL << 32);
    msgpack_pack_uint8(&pk, 1);
    expect_corrupt(sb.data, sb.size, "level out of range", __LINE__);
    msgpack_sbuffer_clear(&sb);

    /* wrong types: a string number, a key given as bin, an array instead of the map */
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str_with_body(&pk, "next_file", 9);
    msgpack_pack_str_with_body(&pk, "7", 1);
    expect_corrupt(sb.data, sb.size, "expected unsigned integer", __LINE__);
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_bin_with_body(&pk, "log", 3);
    msgpack_pack_uint8(&pk, 1);
    expect_corrupt(sb.data, sb.size, "expected str", __LINE__);
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_array(&pk, 0);
    expect_corrupt(sb.data, sb.size, "expected map", __LINE__);
    msgpack_sbuffer_clear(&sb);

    /* a huge declared count is refused before anything is allocated for it */
    expect_corrupt("\xdf\xff\xff\xff\xff\xa3log\x01", 10, "element count exceeds", __LINE__);
    msgpack_sbuffer_destroy(&sb);
}

static void test_decode_failure_leaves_edit_reusable(void)
{
    kw_version_edit e;
    full_edit(&e);
    kw_buf buf;
    kw_buf_init(&buf);
    kw_edit_encode(&e, &buf);
    kw_version_edit d;
    kw_edit_init(&d);
    /* cut inside the "del" list: "add" entries were already decoded and must be released */
    CHECK(kw_edit_decode(kw_slice_make(buf.data, buf.len - 2), &d, NULL) == KIWI_CORRUPTION);
    CHECK(d.n_added == 0 && d.added == NULL);
    char *err = NULL, **errp = &err;
    CHECK_OK(kw_edit_decode(kw_slice_make(buf.data, buf.len), &d, &err), errp);
    CHECK(same_edit(&e, &d));
    kw_edit_free(&d);
    kw_edit_free(&e);
    kw_buf_free(&buf);
}

int main(void)
{
    RUN(test_round_trip_all_fields);
    RUN(test_round_trip_some_fields);
    RUN(test_round_trip_empty_edit);
    RUN(test_encoding_is_a_plain_msgpack_map);
    RUN(test_truncated_payload_rejected);
    RUN(test_unknown_and_malformed_fields_rejected);
    RUN(test_decode_failure_leaves_edit_reusable);
    return ctest_summary();
}
