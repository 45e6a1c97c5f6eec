/*
 * kiwi_req.c: the request path of kiwi.core. An lkiwi_req describes one engine call that may wait;
 * lkiwi_req_run executes it without touching Lua (so a worker thread can run it), lkiwi_req_push
 * turns its outcome into Lua results and frees what it owns. Modelled on luv's lreq.c: the whole
 * lifecycle of a request is these three functions.
 */
#include <string.h>

#include "binding.h"

void lkiwi_req_init(lkiwi_req *r, lkiwi_req_op op, kiwi_db *db)
{
    *r = (lkiwi_req){.op = op, .db = db}; /* the rest zero: inline stores, no memset call */
}

void lkiwi_req_run(lkiwi_req *r)
{
    switch (r->op) {
    case LKIWI_REQ_PUT:
        r->status = kiwi_put(r->db, r->wopts, r->key, r->klen, r->val, r->vlen, &r->errmsg);
        break;
    case LKIWI_REQ_DELETE:
        r->status = kiwi_delete(r->db, r->wopts, r->key, r->klen, &r->errmsg);
        break;
    case LKIWI_REQ_GET:
        r->status = kiwi_get(r->db, r->ropts, r->key, r->klen, &r->out, &r->outlen, &r->errmsg);
        break;
    case LKIWI_REQ_WRITE:
        r->status = kiwi_write(r->db, r->wopts, r->batch, &r->errmsg);
        break;
    case LKIWI_REQ_FLUSH:
        r->status = kiwi_flush(r->db, &r->errmsg);
        break;
    case LKIWI_REQ_COMPACT:
        r->status = kiwi_compact_range(r->db, r->key, r->klen, r->val, r->vlen, &r->errmsg);
        break;
    case LKIWI_REQ_CLOSE:
        /* kiwi_close has no errmsg; a failure is the first background error. */
        r->status = kiwi_close(r->db);
        r->db = NULL;
        break;
    case LKIWI_REQ_OPEN:
        r->status = kiwi_open(r->key, r->opts, &r->opened, &r->errmsg);
        break;
    case LKIWI_REQ_PROPERTY:
        r->out = kiwi_property(r->db, r->key);
        r->has_out = true;
        r->status = KIWI_OK;
        break;
    case LKIWI_REQ_TRACE:
        r->out = kiwi_trace(r->db, r->key, r->klen);
        r->has_out = true;
        r->status = KIWI_OK;
        break;
    }
}

void lkiwi_req_discard(lkiwi_req *r)
{
    kiwi_free(r->out);
    kiwi_free(r->errmsg);
    r->out = NULL;
    r->errmsg = NULL;
}

int lkiwi_req_push(lua_State *L, lkiwi_req *r)
{
    char *out = r->out, *errmsg = r->errmsg;
    r->out = NULL;
    r->errmsg = NULL;
    if (r->status == KIWI_OK) {
        kiwi_free(errmsg); /* an engine may leave none on success; be safe */
        if (r->op == LKIWI_REQ_GET) {
            lkiwi_push_owned(L, out, r->outlen);
            return 1;
        }
        if (r->op == LKIWI_REQ_PROPERTY || r->op == LKIWI_REQ_TRACE) {
            if (out == NULL)
                lua_pushnil(L);
            else
                lkiwi_push_owned(L, out, strlen(out));
            return 1;
        }
        kiwi_free(out);
        lua_pushboolean(L, 1);
        return 1;
    }
    kiwi_free(out);
    if (r->op == LKIWI_REQ_GET && r->status == KIWI_NOT_FOUND) {
        kiwi_free(errmsg);
        lua_pushnil(L);
        return 1;
    }
    if (r->op == LKIWI_REQ_CLOSE && errmsg == NULL)
        return lkiwi_push_fail(L, r->status, NULL);
    return lkiwi_push_fail(L, r->status, errmsg);
}
