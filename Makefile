# tokend - one plain Makefile.
#
#   make            build the engine library and every program into bin/
#   make deps       install the missing Debian packages (apt-get; no-op when present)
#   make test       deps + build + every test suite, ending with
#                   "N passed, N failed, N skipped" (under CI=true a skip fails)
#   make run        deps + build + start bin/tokend on its defaults (data in ./var)
#   make bench      tokend vs Redis, one generator, one table (bench/run.sh, docs/bench.md)
#   make bench-tls  verify/s over TLS: tokend vs plain tokend and Redis with TLS (bench/tls.sh)
#   make bench-scale  a primary and NATS-fed replicas on this machine: verify/s, replication
#                   delay, the revocation barrier's cost (bench/scale.sh, docs/scale.md, "Measured on one machine")
#   make install    the programs, man pages, docs, example configuration and systemd unit
#                   into PREFIX (/usr/local) under DESTDIR; make uninstall (docs/install.md)
#   SANITIZE=address,undefined make test   the same under ASan/UBSan (objects in build/san)
#   SOAK=1 make test                         longer crash/soak runs

CC       ?= cc
PKGS     := libevent libevent_pthreads libevent_openssl lmdb msgpack libsodium libssl libcrypto \
            jansson inih libnats liburing
# Every package make test (and .ci/run) uses: the build, jq (the README's
# quickstart, run by test_quickstart), redis-server (test_tokenbench's Redis
# modes run against a real one), clang-14 + libclang-rt-14-dev (make fuzz-smoke),
# nginx and caddy (test_gateways: the documented gateway configurations, for
# real), prometheus (promtool checks /metrics in test_http), nodejs
# (the OpenAPI lint; on these machines nodejs is NodeSource's, which carries npm),
# chromium, chromium-driver and python3-selenium (test_portal walks the
# self-service page in a real headless browser); systemd (systemd-analyze
# verify and security on the installed unit), groff-base and man-db (the man
# pages rendered with warnings on) and strace (tokend's system calls against
# the unit's filter) for test_install; openssl (the command: test_tls makes
# its CA and certificates with it); nats-server and libnats-dev (replication:
# the NATS C client, and test_repl's JetStream servers); liburing-dev (the
# loop turn's reads and sends in one io_uring submission each, net/sockq.c).
DEB_PKGS := build-essential pkg-config libevent-dev liblmdb-dev libmsgpack-dev \
            libsodium-dev libssl-dev libcmocka-dev libjansson-dev libinih-dev clang-14 libclang-rt-14-dev jq \
            redis-server nginx caddy prometheus nodejs chromium chromium-driver python3-selenium \
            systemd groff-base man-db strace openssl nats-server libnats-dev liburing-dev

WARN     := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
            -Wpointer-arith -Wformat=2
ifeq ($(CI),true)
WARN     += -Werror
endif
OPT      ?= -O2
CFLAGS   ?= $(OPT) -g
CPPFLAGS += -I. -D_GNU_SOURCE
ALL_CFLAGS = -std=c11 $(WARN) $(CFLAGS) -MMD -MP \
             $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS   += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread -lm -ldl

ifneq ($(SANITIZE),)
BUILD    := build/san
BIN      := build/san/bin
ALL_CFLAGS += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS  += -fsanitize=$(SANITIZE)
else
BUILD    := build/rel
BIN      := bin
endif

LIB_SRC   := $(wildcard core/*.c store/*.c net/*.c)
LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/%.o)
LIB       := $(BUILD)/libtokend.a
PROG_SRC  := $(wildcard tools/*.c bench/*.c)
PROGS     := $(patsubst %.c,$(BIN)/%,$(notdir $(PROG_SRC)))
TSUP_SRC  := $(wildcard tests/support/*.c)
TSUP_OBJ  := $(TSUP_SRC:%.c=$(BUILD)/%.o)
TEST_SRC  := $(wildcard tests/*/test_*.c)
TESTS     := $(TEST_SRC:%.c=$(BUILD)/%)

.PHONY: all deps test run bench clean
.SECONDARY:
all: $(LIB) $(PROGS)

# Installs only what is missing; dpkg -s is quiet and fast when all is there.
deps:
	@missing=""; for p in $(DEB_PKGS); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BIN)/%: $(BUILD)/tools/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $< $(LIB) $(LDLIBS) -o $@

$(BIN)/%: $(BUILD)/bench/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $< $(LIB) $(LDLIBS) -o $@

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(TSUP_OBJ) $(LIB)
	$(CC) $(LDFLAGS) $< $(TSUP_OBJ) $(LIB) $(LDLIBS) -lcmocka -o $@

# test_tls runs test_server's and test_http's bad-input tests again over TLS.
$(BUILD)/tests/net/test_tls: | $(BUILD)/tests/net/test_server $(BUILD)/tests/net/test_http
# test_sockq runs the server, concurrency and HTTP verify suites again with
# io_uring off (the fallback path).
$(BUILD)/tests/net/test_sockq: | $(BUILD)/tests/net/test_server $(BUILD)/tests/net/test_concurrency \
                                 $(BUILD)/tests/net/test_verify_http

# The fault injector test_faults LD_PRELOADs into the real bin/tokend
# (tests/preload/fault.c): a shared object, never linked into a program,
# built without the sanitizers (it only forwards calls, or fails them).
PRELOAD := $(BUILD)/tests/preload/libfault.so
$(PRELOAD): tests/preload/fault.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -O1 -g -fPIC -shared $(WARN) $< -ldl -o $@
$(BUILD)/tests/net/test_faults: $(PRELOAD)

test: deps
	@$(MAKE) --no-print-directory all $(TESTS)
	@BIN=$(BIN) tests/run.sh $(TESTS)

# Foreground, on the defaults (127.0.0.1:7070, data in ./var); Ctrl-C stops it cleanly.
# TOKEND_FLAGS="--listen 127.0.0.1:7071" make run  passes flags through.
run: deps
	@$(MAKE) --no-print-directory all
	$(BIN)/tokend $(TOKEND_FLAGS)

bench: deps
	@$(MAKE) --no-print-directory bench-deps all
	@BIN=$(BIN) bench/run.sh

clean:
	rm -rf build bin

-include $(LIB_OBJ:.o=.d) $(TSUP_OBJ:.o=.d) $(TEST_SRC:%.c=$(BUILD)/%.d) \
         $(PROG_SRC:%.c=$(BUILD)/%.d)

# ---- tokenbench ----
# bin/tokenbench (docs/bench.md) is several modules in bench/tokenbench/; the
# bench/*.c rule above makes one program per file, so it has its own rule.
# make bench also needs gnuplot (the chart): installed by bench-deps only,
# never by make deps / make test. Redis (the comparison) and jq are in
# DEB_PKGS as well (make test uses them); listed here so bench-deps alone
# gives bench/run.sh everything it checks for.
BENCH_PKGS := redis-server gnuplot-nox jq wrk nginx
TB_SRC     := $(wildcard bench/tokenbench/*.c)
TB_OBJ     := $(TB_SRC:%.c=$(BUILD)/%.o)
TB_MODOBJ  := $(filter-out $(BUILD)/bench/tokenbench/main.o,$(TB_OBJ))

.PHONY: bench-deps
all: $(BIN)/tokenbench

# make bench-http: tokend's HTTP verification against nginx return 204 and the
# binary listener, one generator (bench/http.sh, docs/bench.md); wrk cross-checks.
.PHONY: bench-http
bench-http: deps
	@$(MAKE) --no-print-directory bench-deps all
	@BIN=$(BIN) bench/http.sh

# make bench-tls: verify/s over TLS against plain tokend and against Redis with
# TLS, one generator (bench/tls.sh, docs/bench.md).
.PHONY: bench-tls
bench-tls: deps
	@$(MAKE) --no-print-directory bench-deps all
	@BIN=$(BIN) bench/tls.sh

# make bench-scale: nats-server, a primary with --publish and BENCH_REPLICAS (2)
# replicas on this machine; verify/s alone and together, the replication delay,
# deletes/s with and without --revocation-barrier (bench/scale.sh).
.PHONY: bench-scale
bench-scale: deps
	@$(MAKE) --no-print-directory bench-deps all
	@BIN=$(BIN) bench/scale.sh

bench-deps:
	@missing=""; for p in $(BENCH_PKGS); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

$(BIN)/tokenbench: $(TB_OBJ) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $(TB_OBJ) $(LIB) $(LDLIBS) -o $@

# Unit tests of tokenbench's modules link them (all but main.o).
$(BUILD)/tests/bench/test_tbunits: $(BUILD)/tests/bench/test_tbunits.o $(TB_MODOBJ) \
                                   $(TSUP_OBJ) $(LIB)
	$(CC) $(LDFLAGS) $< $(TB_MODOBJ) $(TSUP_OBJ) $(LIB) $(LDLIBS) -lcmocka -o $@

-include $(TB_OBJ:.o=.d)

# ---- fuzzing ----
# libFuzzer targets for every parser of untrusted bytes: tests/fuzz/fuzz_<name>.c
# (tests/fuzz/README.md says what each checks).
#   make fuzz         each target for FUZZ_SECONDS (60) s; FUZZ_TARGETS="mp elog" for some
#   make fuzz-smoke   each target for 10 s (CI); non-zero if any target finds a crash
# Built with clang into build/fuzz/. The library sources are compiled again,
# with coverage instrumentation and ASan + UBSan, into build/fuzz/obj: the
# build/rel objects carry no coverage and are never linked into a fuzzer.
FUZZ_CC      ?= clang-14
FUZZ_SECONDS ?= 60
FUZZ_MAX_LEN ?= 4096
FUZZ         := build/fuzz
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_CFLAGS  := -std=c11 -O1 -g $(FUZZ_SAN) -MMD -MP $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
FUZZ_WARN    := $(WARN)
FUZZ_TARGETS ?= $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_LIB_OBJ := $(LIB_SRC:%.c=$(FUZZ)/obj/%.o)
FUZZ_BINS    := $(FUZZ_TARGETS:%=$(FUZZ)/fuzz_%)

# The page's files are in the binary (.incbin in net/portal_files.c): the
# object follows them, which -MMD cannot see.
PORTAL_FILES := $(wildcard net/portal/*)
$(BUILD)/net/portal_files.o $(FUZZ)/obj/net/portal_files.o: $(PORTAL_FILES)

.PHONY: fuzz fuzz-smoke fuzz-build

# Coverage feedback (and comparison tracing) comes from the library only; the
# harnesses' own checks are not instrumented, so they neither cost trace
# calls on every comparison nor count as new behaviour. The library's
# warnings are shown but never fatal here: -Werror on those sources belongs
# to their own (gcc) build, and clang warns about things gcc does not.
$(FUZZ_LIB_OBJ): FUZZ_CFLAGS += -fsanitize=fuzzer-no-link
$(FUZZ_LIB_OBJ): FUZZ_WARN := $(filter-out -Werror,$(WARN))

$(FUZZ)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_WARN) $(FUZZ_CFLAGS) -c $< -o $@

$(FUZZ)/libtokend.a: $(FUZZ_LIB_OBJ)
	rm -f $@ && ar rcs $@ $^

$(FUZZ)/fuzz_%: $(FUZZ)/obj/tests/fuzz/fuzz_%.o $(FUZZ)/libtokend.a
	$(FUZZ_CC) -fsanitize=fuzzer $(FUZZ_SAN) $< $(FUZZ)/libtokend.a $(LDLIBS) -o $@

$(FUZZ)/gen_corpus: $(FUZZ)/obj/tests/fuzz/gen_corpus.o $(FUZZ)/libtokend.a
	$(FUZZ_CC) $(FUZZ_SAN) $< $(FUZZ)/libtokend.a $(LDLIBS) -o $@

# Seeds are regenerated whenever the generator (or the library) changes.
$(FUZZ)/seeds/.stamp: $(FUZZ)/gen_corpus
	rm -rf $(FUZZ)/seeds && $(FUZZ)/gen_corpus $(FUZZ)/seeds && touch $@

fuzz-build: $(FUZZ_BINS) $(FUZZ)/seeds/.stamp

fuzz: deps
	@$(MAKE) --no-print-directory fuzz-build
	@tests/fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_MAX_LEN) $(FUZZ_BINS)

fuzz-smoke: deps
	@$(MAKE) --no-print-directory fuzz-build
	@tests/fuzz/run.sh 10 $(FUZZ_MAX_LEN) $(FUZZ_BINS)

-include $(FUZZ_LIB_OBJ:.o=.d) $(wildcard $(FUZZ)/obj/tests/fuzz/*.d)

# ---- install ----
# make install: bin/tokend, bin/tokenctl, bin/tokenreplay, their man pages,
# the docs, the example configuration and the systemd unit (docs/install.md).
#   make install   [PREFIX=/usr/local] [DESTDIR=]
#   make uninstall [PREFIX=/usr/local] [DESTDIR=]
# It builds first (all), copies files and nothing more: no apt, no chown, no
# systemctl, so with DESTDIR (a staging root) it needs no root. The unit
# goes to $(PREFIX)/lib/systemd/system whatever the PREFIX (/usr/local/lib/
# systemd/system and /usr/lib/systemd/system are both on systemd's search
# path), with @BINDIR@ in its ExecStart replaced. /etc/tokend/tokend.conf is
# installed only when absent: an operator's configuration is never
# overwritten (the example is also in $(docdir)). uninstall removes what
# install put except /etc/tokend/tokend.conf, and never the data
# (/var/lib/tokend).
PREFIX      ?= /usr/local
bindir      ?= $(PREFIX)/bin
man1dir     ?= $(PREFIX)/share/man/man1
docdir      ?= $(PREFIX)/share/doc/tokend
unitdir     ?= $(PREFIX)/lib/systemd/system
CONFDIR     := /etc/tokend
INSTALL     ?= install
INST_PROGS  := tokend tokenctl tokenreplay
INST_MAN    := $(INST_PROGS:%=docs/man/%.1)
INST_DOCS   := README.md $(wildcard docs/*.md) docs/openapi.yaml

.PHONY: install uninstall
install: all
	$(INSTALL) -d $(DESTDIR)$(bindir) $(DESTDIR)$(man1dir) $(DESTDIR)$(docdir) \
	  $(DESTDIR)$(unitdir)
	$(INSTALL) -m 0755 $(INST_PROGS:%=$(BIN)/%) $(DESTDIR)$(bindir)/
	$(INSTALL) -m 0644 $(INST_MAN) $(DESTDIR)$(man1dir)/
	$(INSTALL) -m 0644 $(INST_DOCS) $(DESTDIR)$(docdir)/
	sed 's|@BINDIR@|$(bindir)|g' tools/tokend.service > $(DESTDIR)$(unitdir)/tokend.service
	chmod 0644 $(DESTDIR)$(unitdir)/tokend.service
	@if [ ! -f docs/tokend.conf ]; then \
	  echo "install: no docs/tokend.conf: no configuration installed"; \
	else \
	  echo "$(INSTALL) -m 0644 docs/tokend.conf $(DESTDIR)$(docdir)/tokend.conf"; \
	  $(INSTALL) -m 0644 docs/tokend.conf $(DESTDIR)$(docdir)/tokend.conf || exit 1; \
	  if [ -e $(DESTDIR)$(CONFDIR)/tokend.conf ]; then \
	    echo "install: kept $(DESTDIR)$(CONFDIR)/tokend.conf (the example is in $(DESTDIR)$(docdir)/tokend.conf)"; \
	  else \
	    echo "$(INSTALL) -m 0644 docs/tokend.conf $(DESTDIR)$(CONFDIR)/tokend.conf"; \
	    { [ -d $(DESTDIR)$(CONFDIR) ] || $(INSTALL) -d -m 0755 $(DESTDIR)$(CONFDIR); } && \
	    $(INSTALL) -m 0644 docs/tokend.conf $(DESTDIR)$(CONFDIR)/tokend.conf || exit 1; \
	  fi; \
	fi

uninstall:
	rm -f $(INST_PROGS:%=$(DESTDIR)$(bindir)/%) $(INST_MAN:docs/man/%=$(DESTDIR)$(man1dir)/%) \
	  $(DESTDIR)$(unitdir)/tokend.service
	rm -f $(addprefix $(DESTDIR)$(docdir)/,$(notdir $(INST_DOCS)) tokend.conf)
	rmdir $(DESTDIR)$(docdir) 2>/dev/null || true
	@echo "uninstall: kept $(DESTDIR)$(CONFDIR)/tokend.conf and the data (/var/lib/tokend)"
