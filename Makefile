# kiwi: build, test, check, bench, install. Every task has a target; `make help` lists them.
#
# Layout of outputs (all under build/, never tracked):
#   build/release/   -O2 objects, libkiwi.a, the Lua module kiwi/core.so, C tests and benches
#   build/asan/      the same C tests under AddressSanitizer + UndefinedBehaviorSanitizer
#   build/tsan/      the concurrency tests under ThreadSanitizer
# Sources are found by wildcard: a new core/src/*.c joins libkiwi, a new spec/c/test_*.c becomes
# a test program, so adding a file never needs an edit here.

SHELL := /bin/bash
CC ?= cc
LUA ?= lua5.4
DATA ?= ./data
PREFIX ?= /usr/local

LUA_CFLAGS := $(shell pkg-config --cflags lua5.4 2>/dev/null || echo -I/usr/include/lua5.4)
WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter
BASE_CFLAGS := -std=gnu11 -g -fPIC -pthread -D_GNU_SOURCE $(WARN) -Icore/include -Icore/src
OPT ?= -O2
LIBS := -lmsgpackc -lpthread -lm

CORE_SRC := $(sort $(wildcard core/src/*.c))
CORE_HDR := $(wildcard core/src/*.h) core/include/kiwi.h
BINDING_SRC := $(sort $(wildcard core/binding/*.c))
CTEST_SRC := $(sort $(wildcard spec/c/test_*.c))
CTEST_NAMES := $(notdir $(basename $(CTEST_SRC)))
# Tests that exercise threads; they also run under ThreadSanitizer.
TSAN_TESTS := $(filter test_skiplist test_concurrency test_group_commit test_arena test_crc32c test_compaction test_read_compaction test_cache test_merge_iter test_merge_iter_db test_group_gather test_skiplist_concurrent,$(CTEST_NAMES))

REL := build/release
ASAN := build/asan
TSAN := build/tsan
CRASH := build/crash

.PHONY: all help bootstrap lib module run test test-c test-asan test-tsan test-crash crashtest \
        test-lua test-lua-asan test-lua-tsan test-valgrind check \
        check-cc check-tidy check-cppcheck check-lua bench clean install uninstall

all: lib module

help:
	@echo "make            build libkiwi and the Lua module"
	@echo "make run        start the kiwi REPL on $(DATA)"
	@echo "make test       every test: C tests (plain, ASan+UBSan, TSan) and busted specs"
	@echo "make check      -Werror build, clang-tidy, cppcheck, luacheck"
	@echo "make bench      db_bench-style benchmark (writes docs/benchmarks.md)"
	@echo "make bench-sync-probe  the ceiling of multi-threaded sync writes here, without kiwi"
	@echo "make install    install the Lua module and the kiwi command under $(PREFIX)"

bootstrap:
	@scripts/bootstrap

# ---- objects per build flavour ------------------------------------------------------------
define flavour
$(1)/obj/%.o: core/src/%.c $(CORE_HDR) | $(1)/obj
	$$(CC) $$(BASE_CFLAGS) $(2) -c $$< -o $$@
$(1)/libkiwi.a: $$(patsubst core/src/%.c,$(1)/obj/%.o,$$(CORE_SRC))
	@rm -f $$@
	ar rcs $$@ $$^
$(1)/test/%: spec/c/%.c spec/c/ctest.h spec/c/dbtest.h $(1)/libkiwi.a | $(1)/test
	$$(CC) $$(BASE_CFLAGS) $(2) -Ispec/c $$< $(1)/libkiwi.a $$(LIBS) -o $$@
$(1)/obj $(1)/test:
	@mkdir -p $$@
endef

$(eval $(call flavour,$(REL),$(OPT)))
# (the flags live in variables: a comma inside $(call ...) would split the argument)
ASAN_FLAGS := -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
TSAN_FLAGS := -O1 -fsanitize=thread
CRASH_FLAGS := -O2 -DKIWI_KILL_POINTS
$(eval $(call flavour,$(ASAN),$$(ASAN_FLAGS)))
$(eval $(call flavour,$(TSAN),$$(TSAN_FLAGS)))
$(eval $(call flavour,$(CRASH),$$(CRASH_FLAGS)))

lib: bootstrap-quiet $(REL)/libkiwi.a

# The Lua module kiwi.core: libkiwi + the binding, linked with luv so luv_loop(L) is available.
module: $(REL)/kiwi/core.so

# The module exports luaopen_kiwi_core alone (core/binding/exports.map): calls inside it, into
# the engine and between binding files, are then direct calls, not PLT jumps (~190 of the ~3,870
# instructions of a blocking Lua put; docs/internals/binding.md).
MODULE_MAP := core/binding/exports.map
MODULE_LDFLAGS := -Wl,--version-script=$(MODULE_MAP)

$(REL)/kiwi/core.so: $(BINDING_SRC) $(wildcard core/binding/*.h) $(REL)/libkiwi.a $(MODULE_MAP)
	@mkdir -p $(REL)/kiwi
	$(CC) $(BASE_CFLAGS) $(OPT) $(LUA_CFLAGS) -shared $(BINDING_SRC) $(REL)/libkiwi.a \
	  -llua5.4-luv $(LIBS) $(MODULE_LDFLAGS) -o $@
	@# a Lua module cannot be linked with --no-undefined (Lua's symbols come from the
	@# interpreter), so prove here that every engine symbol resolved
	@LUA_CPATH="$(CURDIR)/$(REL)/?.so" $(LUA) -e 'require("kiwi.core")' || { rm -f $@; exit 1; }
	@# and that the version script took: the entry point is the only symbol it defines
	@test "$$(nm -D --defined-only $@ | awk '{print $$3}')" = luaopen_kiwi_core || \
	  { echo "$@ exports more than luaopen_kiwi_core (see $(MODULE_MAP))" >&2; rm -f $@; exit 1; }

.PHONY: bootstrap-quiet
bootstrap-quiet:
	@scripts/bootstrap

# ---- run ----------------------------------------------------------------------------------
LUA_ENV := LUA_PATH="$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;$(CURDIR)/web/?.lua;;" \
           LUA_CPATH="$(CURDIR)/$(REL)/?.so;;"

run: all
	@$(LUA_ENV) $(LUA) scripts/kiwi repl --data $(DATA)

# ---- tests --------------------------------------------------------------------------------
test: bootstrap-quiet
	@rm -f build/test-results
	@$(MAKE) --no-print-directory test-c test-asan test-tsan test-crash test-valgrind fuzz-regress \
	  test-lua test-lua-asan test-lua-tsan
	@awk '{p+=$$1; f+=$$2} END {printf "total: %d passed, %d failed\n", p, f}' build/test-results

test-c: $(addprefix $(REL)/test/,$(CTEST_NAMES))
	@scripts/run-ctests $(REL)/test $(CTEST_NAMES)

test-asan: $(addprefix $(ASAN)/test/,$(CTEST_NAMES))
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  scripts/run-ctests $(ASAN)/test $(CTEST_NAMES)

test-tsan: $(addprefix $(TSAN)/test/,$(TSAN_TESTS))
	@TSAN_OPTIONS=halt_on_error=1 scripts/run-ctests $(TSAN)/test $(TSAN_TESTS)

# The crash loop: random SIGKILLs plus every named kill point (build/crash has them compiled in).
# make test runs a short loop; `make crashtest CYCLES=N` runs N cycles of each kind.
test-crash: $(CRASH)/test/test_crash
	@scripts/run-ctests $(CRASH)/test test_crash

crashtest: $(CRASH)/test/test_crash
	KIWI_CRASH_CYCLES=$(or $(CYCLES),200) $(CRASH)/test/test_crash

# valgrind: no leak and no invalid access across open / write / read / flush / compact / close,
# the fault paths and the corruption paths.
VALGRIND_TESTS := test_introspection test_faults test_corruption
test-valgrind: $(addprefix $(REL)/test/,$(VALGRIND_TESTS))
	@pass=0; fail=0; for t in $(VALGRIND_TESTS); do \
	  if valgrind --quiet --leak-check=full --errors-for-leak-kinds=definite,indirect \
	       --error-exitcode=1 $(REL)/test/$$t > build/valgrind-$$t.log 2>&1; then \
	    pass=$$((pass+1)); echo "ok   valgrind $$t"; \
	  else fail=$$((fail+1)); echo "FAIL valgrind $$t"; tail -40 build/valgrind-$$t.log; fi; \
	done; echo "$$pass $$fail" >> build/test-results; \
	echo "valgrind: $$pass passed, $$fail failed"; [ $$fail -eq 0 ]

# The busted specs against an ASan+UBSan build of the engine and binding (lua5.4 itself is not
# instrumented, so libasan is preloaded).
ASAN_MODULE := $(ASAN)/kiwi/core.so
$(ASAN_MODULE): $(BINDING_SRC) $(wildcard core/binding/*.h) $(ASAN)/libkiwi.a $(MODULE_MAP)
	@mkdir -p $(ASAN)/kiwi
	$(CC) $(BASE_CFLAGS) $(ASAN_FLAGS) $(LUA_CFLAGS) -shared $(BINDING_SRC) $(ASAN)/libkiwi.a \
	  -llua5.4-luv $(LIBS) $(MODULE_LDFLAGS) -o $@

test-lua-asan: $(ASAN_MODULE) all
	@LUA_PATH="$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;$(CURDIR)/web/?.lua;;" \
	 LUA_CPATH="$(CURDIR)/$(ASAN)/?.so;;" KIWI_LUA="$(LUA)" KIWI_MODULE_DIR="$(CURDIR)/$(ASAN)" \
	 KIWI_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)" \
	 ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	 scripts/run-specs spec

# The busted specs against a TSan build of the engine and binding (lua5.4, libuv and luv are not
# instrumented: TSan sees their locks through its pthread interceptors, not their atomics).
# A task's yield leaves the binding's C frames by longjmp (lua_yieldk), which TSan's shadow call
# stack never sees return: it would grow by a few frames per yield until TSan aborts (~16k
# yields). So the binding's memory accesses are instrumented but not its function entries and
# exits (its frames are missing from reports; the engine's are all there). ASLR is off for the
# run (setarch -R, inherited by child processes): GCC 12's TSan runtime does not re-exec itself
# without it, and a mapping placed outside the ranges it shadows made one CI run die with
# "ThreadSanitizer failed to allocate ... (errno: 12)".
TSAN_MODULE := $(TSAN)/kiwi/core.so
$(TSAN_MODULE): $(BINDING_SRC) $(wildcard core/binding/*.h) $(TSAN)/libkiwi.a $(MODULE_MAP)
	@mkdir -p $(TSAN)/kiwi
	$(CC) $(BASE_CFLAGS) $(TSAN_FLAGS) --param tsan-instrument-func-entry-exit=0 $(LUA_CFLAGS) \
	  -shared $(BINDING_SRC) $(TSAN)/libkiwi.a -llua5.4-luv $(LIBS) $(MODULE_LDFLAGS) -o $@

test-lua-tsan: $(TSAN_MODULE) all
	@LUA_PATH="$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;$(CURDIR)/web/?.lua;;" \
	 LUA_CPATH="$(CURDIR)/$(TSAN)/?.so;;" KIWI_LUA="$(LUA)" KIWI_MODULE_DIR="$(CURDIR)/$(TSAN)" \
	 KIWI_PRELOAD="$$($(CC) -print-file-name=libtsan.so)" KIWI_SPEC_WRAP="setarch $$(uname -m) -R" \
	 TSAN_OPTIONS="halt_on_error=1 exitcode=66" \
	 scripts/run-specs spec

test-lua: all $(REL)/kiwi_bench
	@$(LUA_ENV) KIWI_LUA="$(LUA)" scripts/run-specs spec

# ---- quality gates ------------------------------------------------------------------------
check: bootstrap-quiet check-cc check-tidy check-cppcheck check-lua
	@echo "make check: clean"

check-cc:
	@$(MAKE) --no-print-directory -B lib module OPT=-O2 >/dev/null

check-tidy:
	@scripts/run-tidy $(BASE_CFLAGS) $(LUA_CFLAGS) -- $(CORE_SRC) $(BINDING_SRC)

check-cppcheck:
	cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
	  --inline-suppr --std=c11 -D__GNUC__ -Icore/include -Icore/src core/src core/binding

check-lua:
	luacheck --quiet lua spec scripts/kiwi

# ---- bench --------------------------------------------------------------------------------
# kiwi_bench (every core/bench/*.c) runs db_bench's workloads on kiwi and, side by side, on
# LevelDB and RocksDB through their C APIs, and writes docs/benchmarks.md. `scripts/bootstrap
# bench` installs the peers (as root); each one is compiled in only when its header exists, so
# without them kiwi runs alone and the report says so. The peer flags are recorded in
# bench.flags, so kiwi_bench is rebuilt when a peer appears or goes.
#   make bench                       N = 1,000,000, 3 rounds (several minutes)
#   make bench-quick                 --quick: N = 100,000, 1 round, docs/benchmarks.md untouched
#   make bench BENCH_ARGS='--engines=kiwi --benchmarks=fillrandom,readrandom'
BENCH_SRC := $(sort $(wildcard core/bench/*.c))
BENCH_HDR := $(wildcard core/bench/*.h)
BENCH_LEVELDB = $(wildcard /usr/include/leveldb/c.h)
BENCH_ROCKSDB = $(wildcard /usr/include/rocksdb/c.h)
BENCH_DEFS = $(if $(BENCH_LEVELDB),-DKIWI_BENCH_LEVELDB) $(if $(BENCH_ROCKSDB),-DKIWI_BENCH_ROCKSDB)
BENCH_LIBS = $(if $(BENCH_LEVELDB),-lleveldb) $(if $(BENCH_ROCKSDB),-lrocksdb)
BENCH_ARGS ?=

.PHONY: bench-quick bench-build bench-flags-check bench-sync-probe

bench:
	@scripts/bootstrap bench || echo "make bench: LevelDB/RocksDB not installed; kiwi runs alone" >&2
	@$(MAKE) --no-print-directory bench-build
	$(REL)/kiwi_bench $(BENCH_ARGS)

bench-quick:
	@$(MAKE) --no-print-directory bench BENCH_ARGS="--quick $(BENCH_ARGS)"

bench-build: $(REL)/kiwi_bench

$(REL)/bench.flags: bench-flags-check
	@mkdir -p $(@D)
	@echo '$(BENCH_DEFS) $(BENCH_LIBS)' | cmp -s - $@ || echo '$(BENCH_DEFS) $(BENCH_LIBS)' > $@

$(REL)/kiwi_bench: $(BENCH_SRC) $(BENCH_HDR) $(REL)/libkiwi.a $(REL)/bench.flags
	$(CC) $(BASE_CFLAGS) $(OPT) $(BENCH_DEFS) $(BENCH_SRC) $(REL)/libkiwi.a $(BENCH_LIBS) \
	  $(LIBS) -o $@

# The ceiling of multi-threaded sync writes on this machine, without kiwi (core/bench/probe/
# sync_probe.c; docs/benchmarks.md quotes it): one thread, an ideal group of 4, two groups of 2,
# four independent syncers.   make bench-sync-probe [SYNC_PROBE_ARGS='DIR ROUNDS OPS']
SYNC_PROBE_ARGS ?= build 5 2000

bench-sync-probe: $(REL)/sync_probe
	$(REL)/sync_probe $(SYNC_PROBE_ARGS)

$(REL)/sync_probe: core/bench/probe/sync_probe.c
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) $(OPT) $< -o $@

# ---- fuzz ---------------------------------------------------------------------------------
# libFuzzer targets (spec/fuzz/fuzz_*.c; docs/internals/fuzzing.md), built with clang against a
# libkiwi instrumented for coverage, ASan and UBSan in build/fuzz/. The driver is spec/fuzz/run.
#   make fuzz                   every target for SECONDS (default 60) each, one at a time
#   make fuzz SECONDS=600 FUZZ_TARGETS=table
#   make fuzz-regress           every seed and regression input through its target once
#   make fuzz-seeds             regenerates spec/fuzz/corpus/*/seed-* (spec/fuzz/gen_seeds.c)
FUZZ := build/fuzz
FUZZ_CC ?= clang
SECONDS ?= 60
FUZZ_ALL := $(patsubst spec/fuzz/fuzz_%.c,%,$(sort $(wildcard spec/fuzz/fuzz_*.c)))
FUZZ_TARGETS ?= $(FUZZ_ALL)
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS := -std=gnu11 -g -O1 -fno-omit-frame-pointer -pthread -D_GNU_SOURCE \
  -Icore/include -Icore/src $(FUZZ_SAN)
# core objects: warnings are gcc's -Werror job (make check); here they must not stop a build
FUZZ_CORE_CFLAGS := $(FUZZ_CFLAGS) $(filter-out -Werror,$(WARN)) -fsanitize=fuzzer-no-link
FUZZ_HDR := $(wildcard spec/fuzz/*.h)
FUZZ_LIBS_config := $(LUA_CFLAGS) -llua5.4

.PHONY: fuzz fuzz-build fuzz-regress fuzz-seeds

fuzz: fuzz-build
	@FUZZ_BUILD=$(FUZZ) spec/fuzz/run fuzz $(SECONDS) $(FUZZ_TARGETS)

fuzz-regress: fuzz-build
	@FUZZ_BUILD=$(FUZZ) spec/fuzz/run regress $(FUZZ_TARGETS)

fuzz-build: $(addprefix $(FUZZ)/fuzz_,$(FUZZ_TARGETS))

fuzz-seeds: $(FUZZ)/gen_seeds
	$(FUZZ)/gen_seeds spec/fuzz/corpus

$(FUZZ)/obj/%.o: core/src/%.c $(CORE_HDR) | $(FUZZ)/obj
	$(FUZZ_CC) $(FUZZ_CORE_CFLAGS) -c $< -o $@

$(FUZZ)/libkiwi.a: $(patsubst core/src/%.c,$(FUZZ)/obj/%.o,$(CORE_SRC))
	@rm -f $@
	ar rcs $@ $^

$(FUZZ)/fuzz_%: spec/fuzz/fuzz_%.c $(FUZZ_HDR) $(FUZZ)/libkiwi.a
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(WARN) -fsanitize=fuzzer $< $(FUZZ)/libkiwi.a \
	  $(FUZZ_LIBS_$*) $(LIBS) -o $@

$(FUZZ)/gen_seeds: spec/fuzz/gen_seeds.c $(FUZZ)/libkiwi.a
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(WARN) -fsanitize=fuzzer-no-link $< $(FUZZ)/libkiwi.a $(LIBS) -o $@

$(FUZZ)/obj:
	@mkdir -p $@

# ---- install ------------------------------------------------------------------------------
LUA_LIBDIR := $(PREFIX)/lib/lua/5.4
LUA_SHAREDIR := $(PREFIX)/share/lua/5.4

install: all
	install -d $(LUA_LIBDIR)/kiwi $(LUA_SHAREDIR)/kiwi $(PREFIX)/bin $(PREFIX)/include
	install -m 0755 $(REL)/kiwi/core.so $(LUA_LIBDIR)/kiwi/core.so
	install -m 0644 lua/kiwi/*.lua $(LUA_SHAREDIR)/kiwi/
	install -m 0644 core/include/kiwi.h $(PREFIX)/include/kiwi.h
	install -m 0755 scripts/kiwi $(PREFIX)/bin/kiwi

uninstall:
	rm -rf $(LUA_LIBDIR)/kiwi $(LUA_SHAREDIR)/kiwi $(PREFIX)/bin/kiwi $(PREFIX)/include/kiwi.h

clean:
	rm -rf build
