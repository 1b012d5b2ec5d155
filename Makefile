# sftpctl — build, test, install, benchmark.
CARGO  ?= cargo
PREFIX ?= /usr/local

.PHONY: build test lint check install bench clean

build:
	$(CARGO) build --release

# What CI runs (as root: the end-to-end tests start private sshd and rsyslogd instances).
test:
	$(CARGO) build
	$(CARGO) nextest run --no-fail-fast

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

check: lint test

install: build
	install -D -m 0755 target/release/sftpctl $(DESTDIR)$(PREFIX)/sbin/sftpctl

# Speed and memory targets are shown here, never asserted in tests.
bench:
	$(CARGO) bench --bench watch
	$(CARGO) bench --bench provision
	$(CARGO) bench --bench perms

clean:
	$(CARGO) clean
