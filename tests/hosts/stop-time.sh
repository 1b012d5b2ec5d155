#!/usr/bin/env bash
# Measures how long the watcher takes to stop when rsyslog restarts right after a report was
# spooled (issue 10, "slow stop"): boots SUITE, sets up alice, then N times: a session, wait for
# its .eml, `systemctl restart rsyslog`, and reads from the guest's journal the time from
# systemd's "Stopping sftpctl-watch.service" to the watcher's "stopped" line.
#   tests/hosts/stop-time.sh SUITE SFTPCTL_BINARY [N] [DIRTY_MIB]
# DIRTY_MIB (default 0): write that much unsynced data in the guest before each session, as a
# busy host has (an upload, a package install): it makes a whole-filesystem sync slow.
set -euo pipefail
suite=${1:?usage: stop-time.sh SUITE SFTPCTL_BINARY [N] [DIRTY_MIB]}
bin=${2:?usage: stop-time.sh SUITE SFTPCTL_BINARY [N] [DIRTY_MIB]}
n=${3:-10}
dirty=${4:-0}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
trap guest_cleanup EXIT
guest_unpack "$("$here/rootfs.sh" "$suite")" "$suite-stop"
install -m 0755 "$bin" "$GUEST_DIR/usr/local/sbin/sftpctl"
guest_boot
in_guest sftpctl init >/dev/null
in_guest mkdir -p /root/keys /root/up
in_guest ssh-keygen -q -t ed25519 -N '' -f /root/keys/alice
in_guest sftpctl add-user alice --key /root/keys/alice.pub >/dev/null
opts="-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes"
sleep 11 # out of rsyslog's start-limit window
for i in $(seq "$n"); do
    if ((dirty > 0)); then
        in_guest sh -c "dd if=/dev/zero of=/var/tmp/dirty-$i bs=1M count=$dirty status=none"
    fi
    before=$(in_guest sh -c 'ls /var/spool/sftpctl/mail/*.eml 2>/dev/null | wc -l')
    in_guest sh -c "echo $i > /root/up/f$i.txt; cd /root/up && echo 'put f$i.txt /data/f$i.txt' | sftp -b - -i /root/keys/alice $opts alice@127.0.0.1 >/dev/null"
    for _ in $(seq 100); do
        [[ $(in_guest sh -c 'ls /var/spool/sftpctl/mail/*.eml 2>/dev/null | wc -l') -gt $before ]] && break
        sleep 0.05
    done
    mark=$(in_guest journalctl --show-cursor -n 0 -q | sed -n 's/^-- cursor: //p')
    in_guest systemctl restart rsyslog.service
    in_guest journalctl --after-cursor="$mark" -o short-unix --no-pager |
        awk -v i="$i" '/Stopping sftpctl-watch/ && !s { s = $1 } /sftpctl watch: stopped/ && !e { e = $1 }
            END { printf "restart %2d: watcher stop %.3f s\n", i, e - s }'
    in_guest rm -f /var/tmp/dirty-$i
    sleep 2.2 # five restarts in 10 s hit the start limit
done
