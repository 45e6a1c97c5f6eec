/*
 * fuzz_config.c: libFuzzer target for the config.json loader (lua/kiwi/config.lua), by
 * embedding Lua 5.4. The input is the text of a config.json.
 *
 * At start-up one Lua state loads spec/fuzz/config_harness.lua (which requires kiwi.config from
 * lua/; LUA_PATH, or ./lua/ when run from the repository root). Per input the file is written
 * to the scratch directory and the harness function runs under lua_pcall: any Lua error, i.e.
 * the loader raising instead of returning nil, msg or an oracle of the harness failing, is
 * printed and aborts (a crash for libFuzzer). The harness hands every accepted engine setting
 * to kiwi_options_set (the engine's own parser, instrumented like the rest of libkiwi) through
 * the C function engine_set.
 *
 * Coverage: the Lua interpreter is not instrumented, so libFuzzer would be blind to which Lua
 * lines ran. A line hook feeds libFuzzer's extra counters (the __libfuzzer_extra_counters
 * section) with (previous line, line) pairs of the Lua code, so inputs that take new paths
 * through config.lua are kept. kiwi.core is not loaded (require fails, as when config.lua runs
 * without the binding): engine names and ranges are checked by the engine via engine_set.
 */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "kiwi.h"

#define LUA_EDGES 8192 /* a power of two */

__attribute__((section("__libfuzzer_extra_counters"), used)) static uint8_t lua_edges[LUA_EDGES];

static lua_State *L;
static int harness_ref = LUA_NOREF;
static uintptr_t prev_line;

static void line_hook(lua_State *l, lua_Debug *ar)
{
    if (!lua_getinfo(l, "S", ar))
        return;
    uintptr_t here = ((uintptr_t)ar->source * 31u) ^ ((uintptr_t)ar->currentline * 2654435761u);
    uint8_t *c = &lua_edges[(here ^ prev_line) & (LUA_EDGES - 1)];
    if (*c < 255)
        (*c)++;
    prev_line = here >> 1;
}

/* engine_set(mode, name, value): kiwi_options_set on fresh options; returns ok, message. */
static int engine_set(lua_State *l)
{
    const char *mode = luaL_checkstring(l, 1);
    const char *name = luaL_checkstring(l, 2);
    const char *value = luaL_checkstring(l, 3);
    kiwi_options *o = kiwi_options_create(mode);
    FUZZ_CHECK(o != NULL); /* the harness only passes dev or prod */
    char *err = NULL;
    kiwi_status st = kiwi_options_set(o, name, value, &err);
    kiwi_options_destroy(o);
    if (st != KIWI_OK)
        FUZZ_CHECK_ERROR(st, err);
    lua_pushboolean(l, st == KIWI_OK);
    lua_pushstring(l, err != NULL ? err : "");
    free(err);
    return 2;
}

static void die_lua(const char *what)
{
    fprintf(stderr, "fuzz_config: %s: %s\n", what, lua_tostring(L, -1));
    abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    L = luaL_newstate();
    luaL_openlibs(L);
    /* kiwi.config from ./lua unless LUA_PATH says otherwise; kiwi.core is never loaded */
    const char *setup =
        "if not os.getenv('LUA_PATH') then\n"
        "  package.path = './lua/?.lua;./lua/?/init.lua;' .. package.path\n"
        "end\n"
        "package.preload['kiwi.core'] = function() error('no kiwi.core in the fuzz harness') end\n";
    if (luaL_dostring(L, setup) != LUA_OK)
        die_lua("setup");
    const char *harness = getenv("FUZZ_CONFIG_HARNESS");
    if (luaL_loadfile(L, harness ? harness : "spec/fuzz/config_harness.lua") != LUA_OK ||
        lua_pcall(L, 0, 1, 0) != LUA_OK)
        die_lua("loading config_harness.lua (run from the repository root)");
    harness_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_sethook(L, line_hook, LUA_MASKLINE, 0);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write_file("config.json", data, size);
    prev_line = 0;
    lua_rawgeti(L, LUA_REGISTRYINDEX, harness_ref);
    lua_pushstring(L, path);
    lua_pushstring(L, fuzz_dir());
    lua_pushcfunction(L, engine_set);
    if (lua_pcall(L, 3, 0, 0) != LUA_OK) {
        fprintf(stderr, "fuzz_config: input of %zu bytes: %s\n", size, lua_tostring(L, -1));
        abort();
    }
    return 0;
}
