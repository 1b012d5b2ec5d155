#!/usr/bin/env bash
# The watcher's hardened unit on a booted Debian 12 (systemd as PID 1, in systemd-nspawn):
# `sftpctl init` and `add-user` inside, the unit started by init, a real sftp session inside
# the guest, then: the unit is active, a report was spooled, shared write fixed the upload
# (and put setgid back on a directory), and the journal shows no denied call.
#   tests/booted/watcher.sh SFTPCTL_BINARY
# SFTPCTL_BOOTED_OVERRIDE="[Service] lines" adds a drop-in to the unit after init (used to
# measure what the sandbox cannot do without, e.g. CapabilityBoundingSet=~CAP_FSETID).
# Needs root, systemd-container and debootstrap (the root filesystem is cached, see rootfs.sh).
set -euo pipefail
bin=${1:?usage: watcher.sh SFTPCTL_BINARY}
here=$(cd "$(dirname "$0")" && pwd)
tarball=$("$here/rootfs.sh")
dir=$(mktemp -d /srv/sftpctl-booted.XXXXXX)
name=$(basename "$dir" | tr -c 'a-zA-Z0-9\n' -)
nspawn_pid=
init_pid=
log=$dir.console
cleanup() {
    if [[ -n $nspawn_pid ]] && kill -0 "$nspawn_pid" 2>/dev/null; then
        if [[ -n ${init_pid:-} ]]; then
            nsenter -t "$init_pid" -a systemctl poweroff --no-block >/dev/null 2>&1 || true
        else
            kill -TERM "$nspawn_pid" 2>/dev/null || true
        fi
        for _ in $(seq 100); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$nspawn_pid" 2>/dev/null || true
    fi
    rm -rf "$dir" "$log"
    rmdir "/run/systemd/nspawn/propagate/$name" 2>/dev/null || true
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; echo "--- guest journal (sftpctl-watch) ---" >&2; in_guest journalctl -u sftpctl-watch --no-pager -n 60 >&2 || true; exit 1; }

tar -C "$dir" -xf "$tarball"
install -m 0755 "$bin" "$dir/usr/local/sbin/sftpctl"
# A machine id and no console login: the guest boots straight to multi-user.
systemd-machine-id-setup --root="$dir" >/dev/null
systemd-nspawn -q -D "$dir" -M "$name" -b --register=no --keep-unit --private-network >"$log" 2>&1 &
nspawn_pid=$!

for _ in $(seq 100); do
    # The guest's PID 1 is nspawn's child (or grandchild) named systemd.
    for p in $(pgrep -P "$nspawn_pid" || true) $(pgrep -P "$(pgrep -P "$nspawn_pid" | head -1)" 2>/dev/null || true); do
        if [[ $(cat "/proc/$p/comm" 2>/dev/null) == systemd ]]; then init_pid=$p; fi
    done
    [[ -n $init_pid ]] && break
    sleep 0.2
done
[[ -n $init_pid ]] || { cat "$log" >&2; echo "FAIL: the guest's systemd did not start" >&2; exit 1; }
in_guest() { nsenter -t "$init_pid" -a env -i PATH=/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin "$@"; }
state=
for _ in $(seq 300); do
    state=$(in_guest systemctl is-system-running 2>/dev/null || true)
    [[ $state == running || $state == degraded ]] && in_guest systemctl is-active --quiet ssh.service && break
    sleep 0.2
done
echo "guest booted: $state"
[[ $state == running || $state == degraded ]] || fail "the guest did not finish booting ($state)"

in_guest sftpctl init >/dev/null || fail "sftpctl init"
in_guest systemctl is-active --quiet sftpctl-watch.service || fail "the watcher's unit is not active after init"
if [[ -n ${SFTPCTL_BOOTED_OVERRIDE:-} ]]; then
    mkdir -p "$dir/etc/systemd/system/sftpctl-watch.service.d"
    printf '[Service]\n%s\n' "$SFTPCTL_BOOTED_OVERRIDE" >"$dir/etc/systemd/system/sftpctl-watch.service.d/zz-test.conf"
    in_guest systemctl daemon-reload
    in_guest systemctl restart sftpctl-watch.service
    echo "override: $SFTPCTL_BOOTED_OVERRIDE"
fi
in_guest ssh-keygen -q -t ed25519 -N '' -f /root/alice
in_guest sftpctl add-user alice --key /root/alice.pub >/dev/null || fail "add-user"

in_guest sh -c 'umask 022; mkdir -p /root/up && echo "contract" > /root/up/contract.txt'
in_guest sh -c 'cd /root/up && sftp -b - -i /root/alice -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes alice@127.0.0.1' >/dev/null <<'SFTP' || fail "sftp session"
put contract.txt /data/contract.txt
mkdir /data/folder
chmod 0770 /data/folder
SFTP

for _ in $(seq 100); do
    mode=$(in_guest stat -c %a /sftp-root/alice/data/contract.txt)
    dmode=$(in_guest stat -c %a /sftp-root/alice/data/folder)
    [[ $mode == 66? && $dmode == 27?0 ]] && break
    sleep 0.1
done
echo "upload mode $mode, directory mode $dmode"
[[ $(( 8#$mode & 8#060 )) == $(( 8#060 )) ]] || fail "shared write did not make the upload group-writable (mode $mode)"
[[ $(( 8#$dmode & 8#2000 )) != 0 ]] || fail "shared write did not put setgid back on the directory (mode $dmode)"

# One report per session, written when the session closes.
for _ in $(seq 100); do
    eml=$(in_guest sh -c 'ls /var/spool/sftpctl/mail/*.eml 2>/dev/null | head -1' || true)
    [[ -n $eml ]] && break
    sleep 0.2
done
[[ -n $eml ]] || fail "no report spooled in /var/spool/sftpctl/mail"
in_guest grep -q contract.txt "$eml" || fail "the report does not name the upload"
echo "report spooled: $eml"

in_guest systemctl is-active --quiet sftpctl-watch.service || fail "the watcher stopped"
denied=$(in_guest journalctl -u sftpctl-watch --no-pager -o cat | grep -Ei 'permission denied|operation not permitted|read-only file system|EPERM|EACCES' || true)
[[ -z $denied ]] || fail "the sandbox denied something: $denied"
in_guest systemd-analyze security sftpctl-watch.service --no-pager | tail -1
echo "PASS: hardened watcher works on a booted host"
