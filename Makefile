# moonwire build. One static library per component (wire, sandbox, omemo,
# runtime), one binary `moonwire`, cmocka unit tests, pytest suites.
# `make deps` installs every Debian package the project needs; `make test`
# and `make demo` call it first so a fresh Debian 12 machine needs nothing else.

BUILD    ?= build
.DEFAULT_GOAL := all
CC       ?= cc
PYTHON   ?= /usr/bin/python3
PKGS      = libstrophe libomemo-c lua5.4 libseccomp openssl sqlite3 libcjson expat
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN      = -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wno-unused-parameter
OPT      ?= -O2 -g
CFLAGS   := $(OPT) -std=gnu11 $(WARN) -D_GNU_SOURCE -fstack-protector-strong -fPIE \
            -I. $(PKG_CFLAGS) $(EXTRA_CFLAGS)
# curve25519_donna: omemo/curve.c replaces libomemo-c's own X25519 with
# OpenSSL's; fe_edy_to_montx: omemo/edconv.c remembers its Ed25519 to
# Curve25519 conversions.  The executable must export both for the
# interposition to work.
INTERPOSED = curve25519_donna fe_edy_to_montx
LDFLAGS  += -pie -Wl,-z,relro,-z,now $(foreach s,$(INTERPOSED),-Wl,-u,$(s) -Wl,--export-dynamic-symbol=$(s)) $(EXTRA_LDFLAGS)
LIBS      = $(PKG_LIBS) -lm

# Debian packages: build, run, test, demo and bench.
DEB_PKGS = build-essential pkg-config libstrophe-dev libomemo-c-dev libexpat1-dev \
	liblua5.4-dev lua5.4 libseccomp-dev libssl-dev libsqlite3-dev sqlite3 \
	libcjson-dev libcmocka-dev prosody ejabberd python3-omemo python3-oldmemo python3-twomemo \
	python3-slixmpp python3-xmlschema python3-pytest openssh-client \
	openssh-server bubblewrap clang libclang-rt-14-dev valgrind systemd \
	mandoc debhelper dpkg-dev lintian adduser profanity tmux time strace

COMPONENTS = wire sandbox omemo runtime
# Link order: a component may use only those to its right.
LINK_ORDER = runtime omemo sandbox wire

define component_rules
$(1)_SRCS := $$(filter-out runtime/cli/main.c sandbox/zygote_main.c,$$(wildcard $(1)/*.c $(1)/*/*.c))
$(1)_OBJS := $$(patsubst %.c,$(BUILD)/%.o,$$($(1)_SRCS))
$(BUILD)/lib$(1).a: $$($(1)_OBJS)
	@mkdir -p $$(dir $$@)
	rm -f $$@ && ar rcs $$@ $$^
endef
$(foreach c,$(COMPONENTS),$(eval $(call component_rules,$(c))))

COMPONENT_LIBS = $(foreach c,$(LINK_ORDER),$(BUILD)/lib$(c).a)

UNIT_SRCS  = $(wildcard tests/unit/test_*.c)
UNIT_BINS  = $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRCS))
FUZZ_SRCS  = $(wildcard tests/fuzz/fuzz_*.c)

.PHONY: all deps test unit pytest e2e-ejabberd deployed demo bench asan clean fuzz fuzz-smoke fuzz-build fuzz-bins check-deps soak
all: $(BUILD)/moonwire $(BUILD)/moonwire-zygote $(UNIT_BINS)

$(BUILD)/%.o: %.c $(wildcard */*.h */*/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/moonwire: $(BUILD)/runtime/cli/main.o $(COMPONENT_LIBS)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LIBS)

# The zygote as a program of its own (sandbox/zygote_main.c): only the
# sandbox and wire code a worker runs, and only their libraries mapped, so
# that forking a worker from it is cheap (spec/sandbox.md, "Processes").
# The supervisor finds it next to the moonwire binary.
ZYGOTE_LIBS = $(shell pkg-config --libs lua5.4 libseccomp 2>/dev/null) -lm
$(BUILD)/moonwire-zygote: $(BUILD)/sandbox/zygote_main.o $(BUILD)/libsandbox.a $(BUILD)/libwire.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(ZYGOTE_LIBS)

$(BUILD)/tests/%: tests/unit/%.c $(COMPONENT_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(COMPONENT_LIBS) $(LIBS) -lcmocka

deps:
	@./tests/lib/install-deps.sh $(DEB_PKGS)

unit: all
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; MOONWIRE=$(CURDIR)/$(BUILD)/moonwire $$t; done

PYTEST_TARGETS ?= tests
pytest: all
	MOONWIRE=$(CURDIR)/$(BUILD)/moonwire $(PYTHON) -m pytest -q -p no:cacheprovider $(PYTEST_TARGETS) $(PYTEST_ARGS)

# The suites that drive the sandbox again, as the shipped systemd unit runs
# the agent (issue 10): as the system user moonwire-test (created when
# missing) under exactly the unit's AmbientCapabilities,
# CapabilityBoundingSet and NoNewPrivileges (parsed from
# runtime/dist/moonwire-agent.service), from a copy in a temporary
# directory under /tmp.  Needs root.  DEPLOYED_TARGETS picks suites.
DEPLOYED_TARGETS ?= tests/test_deployed.py tests/test_broker.py tests/test_hostile.py \
	tests/test_scripts.py tests/e2e
deployed: all
	$(PYTHON) tests/lib/as-deployed.py --moonwire $(CURDIR)/$(BUILD)/moonwire \
		$(DEPLOYED_TARGETS) -- $(PYTEST_ARGS)

# The end-to-end suite again through ejabberd (Debian 23.01; issue 11):
# what goes on the wire must work on both servers.  Root only (ejabberdctl);
# tests that need Prosody itself (TLS with a private CA, its restart) are
# skipped there with their reason (tests/conftest.py, prosody_only).
e2e-ejabberd: all
	MW_XMPP_SERVER=ejabberd MOONWIRE=$(CURDIR)/$(BUILD)/moonwire $(PYTHON) -m pytest -q \
		-p no:cacheprovider tests/e2e $(PYTEST_ARGS)

# Targets that install packages first re-enter make, so that pkg-config
# flags are computed after the packages exist (fresh machines).
# The passes run in two lanes side by side (tests/lib/lanes.sh: one after
# another they kept this 2-core machine a quarter busy for 45 minutes).
# The deployed pass's system user is created first: test_deb checks that
# /etc/passwd does not change under it.
TEST_LANE_LOCAL   ?= deployed pytest fuzz-smoke
TEST_LANE_EJABBERD ?= e2e-ejabberd asan
test: deps
	$(MAKE) -j$$(nproc) all
	$(MAKE) unit
	$(PYTHON) tests/lib/as-deployed.py --ensure-user
	MAKE="$(MAKE)" ./tests/lib/lanes.sh local "$(TEST_LANE_LOCAL)" ejabberd "$(TEST_LANE_EJABBERD)"

# Sanitizer build: the unit tests and the suites that drive the moonwire
# binary, against an ASan+UBSan build.
# tests/reliability quick cases: the agent end to end (crash storm at 60
# jobs, server faults, storage faults, a 2,000-message flood).
# (Not tests/test_deb.py: it builds and checks its own package, whatever
# the binary under test.)
ASAN_PYTEST = $(filter-out tests/test_deb.py,$(wildcard tests/test_*.py)) tests/e2e tests/omemo \
	tests/reliability/test_crash.py tests/reliability/test_server_faults.py \
	tests/reliability/test_storage.py tests/reliability/test_load.py
asan: export MW_CRASH_JOBS ?= 60
asan: export MW_CRASH_KILLS ?= 15
asan: export MW_FLOOD_MSGS ?= 2000
asan: export MW_FLOOD_STRANGER_MSGS ?= 40
asan: export MW_FLOOD_RSS_MB ?= 1024
asan:
	$(MAKE) BUILD=build-asan EXTRA_CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
		EXTRA_LDFLAGS="-fsanitize=address,undefined" OPT="-O1 -g" \
		PYTEST_TARGETS="$(ASAN_PYTEST)" unit pytest

# Long reliability runs (issue 6): 5,000 crash-storm jobs with ~600 kills,
# the agent under valgrind for 1,000 jobs, the 10,000-message flood.
soak: all
	MW_CRASH_JOBS=$${MW_CRASH_JOBS:-5000} MW_VALGRIND_JOBS=$${MW_VALGRIND_JOBS:-1000} \
	MOONWIRE=$(CURDIR)/$(BUILD)/moonwire $(PYTHON) -m pytest -q -s -p no:cacheprovider \
		tests/reliability $(PYTEST_ARGS)

demo: deps
	$(MAKE) all
	@./tests/lib/demo.sh $(CURDIR)/$(BUILD)/moonwire

bench: deps
	$(MAKE) all
	@$(PYTHON) tests/bench/run.py --moonwire $(CURDIR)/$(BUILD)/moonwire

# libFuzzer targets (tests/fuzz/README.md): built with clang into
# build-fuzz, the component libraries instrumented too, then each target
# runs FUZZ_SECONDS on a scratch copy of its corpus.  fuzz-smoke: 5 s each (make test; the campaigns are `make fuzz`).
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_SAN      = -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer \
		-fno-sanitize-recover=undefined
# clang warns where gcc does not: vprintf-style helpers without a format
# attribute, and libseccomp's SCMP_A* macros (partial initializers).
FUZZ_NOWARN   = -Wno-format-nonliteral -Wno-missing-field-initializers
FUZZ_BINS     = $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRCS))

$(BUILD)/fuzz/%: tests/fuzz/%.c tests/fuzz/fuzzlib.h $(COMPONENT_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -fsanitize=fuzzer -o $@ $< $(COMPONENT_LIBS) $(LIBS)

fuzz-bins: $(FUZZ_BINS)

fuzz-build:
	$(MAKE) BUILD=build-fuzz CC=$(FUZZ_CC) OPT="-O1 -g" \
		EXTRA_CFLAGS="$(FUZZ_SAN) $(FUZZ_NOWARN)" \
		EXTRA_LDFLAGS="-fsanitize=address,undefined" fuzz-bins

fuzz: deps
	$(MAKE) fuzz-build
	@./tests/fuzz/run.sh build-fuzz $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-smoke:
	FUZZ_SEED=$${FUZZ_SEED:-1} $(MAKE) fuzz FUZZ_SECONDS=5

clean:
	rm -rf build build-asan build-fuzz $(addprefix build-,$(CROSS_ARCHES))

# Cross builds (issue 14; README "Building for arm64").  `make cross
# ARCH=arm64` (ARCH defaults to arm64, the only target so far) installs what
# it needs, as `make deps` does (tests/lib/install-cross-deps.sh: dpkg
# --add-architecture, Debian's cross compiler, the target's -dev packages of
# every library we link, qemu-user and qemu-system), builds moonwire and the
# unit tests for the target in build-$(ARCH) (never mixed with the native
# build/), checks with file(1) that every binary is for the target, runs
# the unit tests under qemu-user (tests/lib/cross-test.sh: test_sandbox is
# skipped there, with its reason printed, as qemu-user runs no seccomp
# filter), and then test_filter and test_sandbox in a throwaway VM with
# Debian's kernel for the target (tests/lib/cross-vm.sh).
# pkg-config reads the target's multiarch directory only.
# cross-build, cross-test and cross-vm do the parts alone, without installing.
ARCH ?= arm64
CROSS_ARCHES          = arm64
CROSS_TRIPLET_arm64   = aarch64-linux-gnu
CROSS_QEMU_arm64      = qemu-aarch64
CROSS_FILE_arm64      = ARM aarch64
CROSS_TRIPLET  = $(CROSS_TRIPLET_$(ARCH))
CROSS_BUILD    = build-$(ARCH)
CROSS_PKG_CONFIG_LIBDIR = /usr/lib/$(CROSS_TRIPLET)/pkgconfig:/usr/share/pkgconfig
CROSS_DEB_PKGS = gcc-$(CROSS_TRIPLET) file qemu-user qemu-system-arm cpio \
	$(addsuffix :$(ARCH),libc6-dev libstrophe-dev libomemo-c-dev libexpat1-dev liblua5.4-dev \
	libseccomp-dev libssl-dev libsqlite3-dev libcjson-dev libcmocka-dev)
CROSS_ENV = env -u PKG_CONFIG_PATH -u PKG_CONFIG_SYSROOT_DIR \
	PKG_CONFIG_LIBDIR=$(CROSS_PKG_CONFIG_LIBDIR)

.PHONY: cross cross-deps cross-build cross-test cross-vm cross-check-arch
cross-check-arch:
	@case " $(CROSS_ARCHES) " in *" $(ARCH) "*) ;; *) \
		echo "make cross: ARCH=$(ARCH) is not a cross target (known: $(CROSS_ARCHES))" >&2; \
		exit 1;; esac

cross: cross-deps
	$(MAKE) cross-build ARCH=$(ARCH)
	$(MAKE) cross-test ARCH=$(ARCH)
	$(MAKE) cross-vm ARCH=$(ARCH)

cross-deps: cross-check-arch
	@./tests/lib/install-cross-deps.sh $(ARCH) $(CROSS_DEB_PKGS)

cross-build: cross-check-arch
	@command -v $(CROSS_TRIPLET)-gcc >/dev/null || { echo "make cross-build: no" \
		"$(CROSS_TRIPLET)-gcc (make cross ARCH=$(ARCH) installs it)" >&2; exit 1; }
	@missing=$$(for p in $(PKGS) cmocka; do $(CROSS_ENV) pkg-config --exists $$p || echo $$p; done); \
	if [ -n "$$missing" ]; then echo "make cross-build: no $(ARCH) pkg-config file for:" \
		$$missing "(make cross ARCH=$(ARCH) installs them)" >&2; exit 1; fi
	$(CROSS_ENV) $(MAKE) BUILD=$(CROSS_BUILD) CC=$(CROSS_TRIPLET)-gcc all
	@set -e; for b in $(CROSS_BUILD)/moonwire $(CROSS_BUILD)/moonwire-zygote $(CROSS_BUILD)/tests/test_*; do \
		f=$$(file -b $$b); case "$$f" in *"$(CROSS_FILE_$(ARCH))"*) ;; *) \
		echo "make cross-build: $$b is not a $(ARCH) executable: $$f" >&2; exit 1;; esac; done; \
	echo "make cross-build: $(CROSS_BUILD)/moonwire: $$(file -b $(CROSS_BUILD)/moonwire | cut -d, -f1-2)"

cross-test: cross-check-arch
	@./tests/lib/cross-test.sh $(CURDIR)/$(CROSS_BUILD) $(CROSS_QEMU_$(ARCH))

CROSS_VM_TESTS ?= test_filter test_sandbox
cross-vm: cross-check-arch
	@./tests/lib/cross-vm.sh $(CURDIR)/$(CROSS_BUILD) $(ARCH) $(CROSS_VM_TESTS)

# Installation (issue 14).  PREFIX (default /usr/local) and DESTDIR as
# usual; the binary is taken from $(BUILD)/moonwire, built when missing
# (MOONWIRE_BIN=PATH installs another build without involving make's
# rules for it).  The example configuration goes to the documentation,
# not to etc: /etc/moonwire/agent.conf is the administrator's (the unit
# names that path whatever the prefix), and a file under PREFIX/etc would
# be read by nothing.  The unit is generated with ExecStart= and
# Documentation= pointing into PREFIX; PREFIX/lib/systemd/system is on
# systemd's search path for /usr/local and /usr.  `make uninstall` (same
# PREFIX and DESTDIR) removes exactly the files install writes, then the
# directories of moonwire's own that are left empty.
PREFIX     ?= /usr/local
DESTDIR    ?=
INSTALL    ?= install
BINDIR      = $(PREFIX)/bin
DATADIR     = $(PREFIX)/share/moonwire
DOCDIR      = $(PREFIX)/share/doc/moonwire
MANDIR      = $(PREFIX)/share/man
UNITDIR     = $(PREFIX)/lib/systemd/system
BASHCOMPDIR = $(PREFIX)/share/bash-completion/completions
MOONWIRE_BIN ?= $(BUILD)/moonwire
ZYGOTE_BIN  ?= $(dir $(MOONWIRE_BIN))moonwire-zygote
MAN1        = man/moonwire.1 man/moonwire-zygote.1
MAN5        = man/moonwire-agent.conf.5 man/moonwire-policy.5
INST_SCRIPTS = $(wildcard scripts/*.lua)
INST_SPEC    = $(wildcard spec/*.md)
# Every file install writes, as installed (without DESTDIR).
INSTALLED_FILES = $(BINDIR)/moonwire $(BINDIR)/moonwire-zygote $(UNITDIR)/moonwire-agent.service \
	$(DOCDIR)/README.md $(DOCDIR)/agent.conf.example \
	$(addprefix $(DOCDIR)/,$(INST_SPEC)) \
	$(addprefix $(DATADIR)/,$(INST_SCRIPTS)) \
	$(addprefix $(MANDIR)/man1/,$(notdir $(MAN1))) \
	$(addprefix $(MANDIR)/man5/,$(notdir $(MAN5))) \
	$(BASHCOMPDIR)/moonwire

.PHONY: install uninstall installed-files lint-man
install: $(MOONWIRE_BIN) $(ZYGOTE_BIN)
	$(INSTALL) -d -m 0755 $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) \
		$(DESTDIR)$(DOCDIR)/spec $(DESTDIR)$(DATADIR)/scripts \
		$(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(BASHCOMPDIR)
	$(INSTALL) -m 0755 $(MOONWIRE_BIN) $(DESTDIR)$(BINDIR)/moonwire
	$(INSTALL) -m 0755 $(ZYGOTE_BIN) $(DESTDIR)$(BINDIR)/moonwire-zygote
	sed -e 's|/usr/local/bin/moonwire|$(BINDIR)/moonwire|g' \
		-e 's|/usr/local/share/doc/moonwire|$(DOCDIR)|g' \
		-e 's|^Documentation=|Documentation=man:moonwire(1) man:moonwire-agent.conf(5) |' \
		runtime/dist/moonwire-agent.service > $(DESTDIR)$(UNITDIR)/moonwire-agent.service.tmp
	chmod 0644 $(DESTDIR)$(UNITDIR)/moonwire-agent.service.tmp
	mv -f $(DESTDIR)$(UNITDIR)/moonwire-agent.service.tmp $(DESTDIR)$(UNITDIR)/moonwire-agent.service
	$(INSTALL) -m 0644 README.md runtime/dist/agent.conf.example $(DESTDIR)$(DOCDIR)/
	$(INSTALL) -m 0644 $(INST_SPEC) $(DESTDIR)$(DOCDIR)/spec/
	$(INSTALL) -m 0644 $(INST_SCRIPTS) $(DESTDIR)$(DATADIR)/scripts/
	$(INSTALL) -m 0644 $(MAN1) $(DESTDIR)$(MANDIR)/man1/
	$(INSTALL) -m 0644 $(MAN5) $(DESTDIR)$(MANDIR)/man5/
	$(INSTALL) -m 0644 runtime/dist/moonwire.bash $(DESTDIR)$(BASHCOMPDIR)/moonwire

uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED_FILES))
	@for d in $(DESTDIR)$(DOCDIR)/spec $(DESTDIR)$(DOCDIR) $(DESTDIR)$(DATADIR)/scripts \
		$(DESTDIR)$(DATADIR); do \
		if [ -d "$$d" ]; then echo "rmdir --ignore-fail-on-non-empty $$d"; \
			rmdir --ignore-fail-on-non-empty "$$d"; fi; done

# The list uninstall removes, one path a line (tests/test_install.py).
installed-files:
	@printf '%s\n' $(INSTALLED_FILES)

# The man pages through mandoc's linter (tests/test_man.py does the same
# in make pytest, and fails on any warning).
lint-man:
	mandoc -T lint -W warning $(MAN1) $(MAN5)

# The Debian package (issue 14; README "Debian package", debian/).
# `make deb` copies the committed tree (git archive HEAD) to
# $(BUILD)/deb/moonwire-VERSION, runs dpkg-buildpackage -b there, and
# lintian over the result, which fails the target on an error:
# $(BUILD)/deb/moonwire_VERSION_ARCH.deb, nothing written outside
# $(BUILD)/deb.  A dirty tree (uncommitted changes to tracked files, as
# `git describe --dirty` counts them; untracked files are never packaged)
# is refused; DEB_ALLOW_DIRTY=1 builds it anyway, with those changes, and
# warns.  VERSION is debian/changelog's, which must equal MW_VERSION in
# runtime/cli/main.c (what `moonwire --version` prints).
DEB_DIR      = $(BUILD)/deb
DEB_VERSION  = $(shell dpkg-parsechangelog -l debian/changelog -S Version 2>/dev/null)
# (the file that defines MW_VERSION, wherever the CLI's main.c lives)
MW_VERSION_FILE = $(firstword $(shell grep -rl --include='*.c' '^\#define MW_VERSION "' runtime))
MW_VERSION   = $(if $(MW_VERSION_FILE),$(shell sed -n 's/^\#define MW_VERSION "\([^"]*\)".*/\1/p' $(MW_VERSION_FILE)))
DEB_ARCH     = $(shell dpkg --print-architecture 2>/dev/null)
DEB_FILE     = $(DEB_DIR)/moonwire_$(DEB_VERSION)_$(DEB_ARCH).deb
DEB_ALLOW_DIRTY ?=
DEB_JOBS     ?= $(shell nproc 2>/dev/null || echo 1)

.PHONY: deb deb-file
deb:
	@set -e; \
	for t in dpkg-buildpackage dh lintian; do command -v $$t >/dev/null || { \
		echo "make deb: $$t missing (make deps installs it)" >&2; exit 1; }; done; \
	if [ "$(DEB_VERSION)" != "$(MW_VERSION)" ]; then \
		echo "make deb: debian/changelog says $(DEB_VERSION) but $(MW_VERSION_FILE) MW_VERSION is $(MW_VERSION): add a changelog entry (dch -v $(MW_VERSION))" >&2; exit 1; fi; \
	if ! git -C "$(CURDIR)" rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
		echo "make deb: not a git checkout: cannot tell whether the tree is clean" >&2; exit 1; fi; \
	dirty=$$(git -C "$(CURDIR)" status --porcelain --untracked-files=no); \
	treeish=HEAD; \
	if [ -n "$$dirty" ]; then \
		if [ "$(DEB_ALLOW_DIRTY)" != 1 ]; then \
			echo "make deb: refusing to build from a dirty tree (uncommitted changes):" >&2; \
			echo "$$dirty" >&2; \
			echo "make deb: commit them, or DEB_ALLOW_DIRTY=1 to package the working tree as it is" >&2; \
			exit 1; fi; \
		echo "make deb: WARNING: dirty tree: packaging uncommitted changes to tracked files:" >&2; \
		echo "$$dirty" >&2; \
		treeish=$$(git -C "$(CURDIR)" -c user.name="make deb" -c user.email=make-deb@localhost \
			stash create "make deb"); fi; \
	src=$(DEB_DIR)/moonwire-$(DEB_VERSION); \
	rm -rf $(DEB_DIR); mkdir -p $$src; \
	git -C "$(CURDIR)" archive --format=tar $$treeish | tar -x -C $$src; \
	echo "make deb: building $(DEB_FILE) from $$(git -C "$(CURDIR)" rev-parse --short HEAD)$${dirty:+ + uncommitted changes} in $$src"; \
	(cd $$src && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u MAKEOVERRIDES \
		dpkg-buildpackage -b -us -uc -j$(DEB_JOBS)) > $(DEB_DIR)/build.log 2>&1 || { \
		tail -n 40 $(DEB_DIR)/build.log >&2; echo "make deb: dpkg-buildpackage failed (whole log: $(DEB_DIR)/build.log)" >&2; exit 1; }; \
	echo "make deb: lintian"; \
	lintian --fail-on error --info $(DEB_DIR)/moonwire_$(DEB_VERSION)_$(DEB_ARCH).changes; \
	echo "make deb: $(DEB_FILE)"

# The path `make deb` writes (tests/test_deb.py).
deb-file:
	@echo $(DEB_FILE)
