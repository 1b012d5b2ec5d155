#!/usr/bin/env bash
# Builds (once) a Debian root filesystem with systemd, sshd, rsyslog and logrotate for the
# booted-host tests, cached as a tar: later runs unpack it in seconds.
#   tests/hosts/rootfs.sh SUITE [CACHE_DIR]   (SUITE: bookworm | trixie; default cache
#   /var/cache/sftpctl-test)
# Prints the path of the tar. Needs debootstrap, the Debian archive keyring (it holds the trixie
# keys on Debian 12 too) and network access to the Debian mirror for the first run.
# The cache name carries a hash of the package list: changing the list builds a new tar.
set -euo pipefail
suite=${1:?usage: rootfs.sh SUITE [CACHE_DIR]}
cache=${2:-/var/cache/sftpctl-test}
case $suite in
bookworm | trixie) ;;
*) echo "rootfs.sh: unknown suite '$suite' (bookworm or trixie)" >&2; exit 2 ;;
esac
# The .deb's Depends (openssh-server, rsyslog, logrotate) are here: the guest has no network,
# so `dpkg -i` must find them installed. procps: pgrep/ps for the session checks.
packages=systemd-sysv,dbus,openssh-server,openssh-client,rsyslog,logrotate,msmtp,ca-certificates,procps,python3,rsyslog-gnutls,gnutls-bin,iproute2
tag=$(printf '%s' "$packages" | sha256sum | cut -c1-8)
tarball=$cache/debian-$suite-sftpctl-$tag.tar
if [[ -s $tarball ]]; then
    echo "$tarball"
    exit 0
fi
mirror=$(awk '/^URIs:/ {print $2; exit} /^deb / {print $2; exit}' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
mkdir -p "$cache"
# Two tests may ask for the same suite at once: one builds, the other waits for it.
exec 9>"$cache/.lock-$suite"
flock 9
if [[ -s $tarball ]]; then
    echo "$tarball"
    exit 0
fi
work=$(mktemp -d "$cache/build.XXXXXX")
# debootstrap mounts /proc (and more) inside; never let rm walk into a mount. The cleanup
# keeps the script's exit status: under `set -e -o pipefail` a grep that finds no mount
# (debootstrap unmounted them itself) used to make a good build exit 1.
cleanup() {
    local rc=$?
    set +e +o pipefail
    grep -o " $work/root[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l
    rm -rf --one-file-system "$work"
    exit "$rc"
}
trap cleanup EXIT
start=$(date +%s)
debootstrap --variant=minbase --keyring="$keyring" --include=$packages "$suite" "$work/root" "$mirror" >"$work/log" 2>&1 ||
    { tail -20 "$work/log" >&2; echo "rootfs.sh: debootstrap $suite failed (log above)" >&2; exit 1; }
# Nothing in the tar should depend on the build machine: apt lists are useless offline.
rm -rf "$work/root/var/lib/apt/lists/"* "$work/root/var/cache/apt/archives/"*.deb
tar -C "$work/root" -cf "$tarball.part" .
mv "$tarball.part" "$tarball"
# Tars of this suite with another package list are stale now.
find "$cache" -maxdepth 1 -name "debian-$suite-sftpctl-*.tar" ! -name "$(basename "$tarball")" -delete
echo "rootfs.sh: debootstrap $suite took $(( $(date +%s) - start )) s" >&2
echo "$tarball"
