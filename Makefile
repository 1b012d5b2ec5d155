# sftpctl — build, test, install, benchmark.
CARGO  ?= cargo
PREFIX ?= /usr/local

.PHONY: build test test-hosts lint check install deb deb-package bench clean

build:
	$(CARGO) build --release

# What CI runs (as root: the end-to-end tests start private sshd and rsyslogd instances).
test:
	$(CARGO) build
	$(CARGO) nextest run --no-fail-fast

# The booted-host acceptance tests alone (Debian 12 and 13 under systemd-nspawn; root,
# debootstrap and systemd-container; `make test` runs them too when SFTPCTL_TEST_BOOTED=1).
test-hosts:
	$(CARGO) build
	SFTPCTL_TEST_BOOTED=1 $(CARGO) nextest run --no-fail-fast --test e2e_hosts --success-output final

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

check: lint test

install: build
	install -D -m 0755 target/release/sftpctl $(DESTDIR)$(PREFIX)/sbin/sftpctl

# The Debian package, built with plain dpkg-deb (on every Debian machine: CI installs nothing
# more). `deb-package` packages any binary, e.g. the booted-host tests' debug build:
#   make deb-package BIN=target/debug/sftpctl DEB_DIR=/tmp/x
BIN     ?= target/release/sftpctl
DEB_DIR ?= target/debian

deb: build
	$(MAKE) deb-package

deb-package:
	sh templates/debian/build-deb.sh $(BIN) $(DEB_DIR)

# Speed and memory targets are shown here, never asserted in tests.
bench:
	$(CARGO) bench --bench watch
	$(CARGO) bench --bench render
	$(CARGO) bench --bench provision
	$(CARGO) bench --bench perms
	$(CARGO) bench --bench digest
	$(CARGO) bench --bench report
	$(CARGO) bench --bench fleet

clean:
	$(CARGO) clean
