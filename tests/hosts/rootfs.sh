#!/usr/bin/env bash
# Builds (once) a Debian 12 root filesystem with systemd, sshd, rsyslog and logrotate for the
# booted-host test, cached as a tar: later runs unpack it in seconds.
#   tests/booted/rootfs.sh [CACHE_DIR]   (default /var/cache/sftpctl-test)
# Prints the path of the tar. Needs debootstrap and network access to the Debian mirror.
set -euo pipefail
cache=${1:-/var/cache/sftpctl-test}
suite=bookworm
packages=systemd-sysv,dbus,openssh-server,openssh-client,rsyslog,logrotate,msmtp,ca-certificates
tarball=$cache/debian-$suite-sftpctl-v1.tar
if [[ -s $tarball ]]; then
    echo "$tarball"
    exit 0
fi
mirror=$(awk '/^URIs:/ {print $2; exit} /^deb / {print $2; exit}' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}
mkdir -p "$cache"
work=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
debootstrap --variant=minbase --include=$packages "$suite" "$work/root" "$mirror" >"$work/log" 2>&1 ||
    { tail -20 "$work/log" >&2; exit 1; }
tar -C "$work/root" -cf "$tarball.part" .
mv "$tarball.part" "$tarball"
echo "$tarball"
