#!/usr/bin/env bash
# Many hosts, one collector, on booted hosts (issue 13): two SFTP hosts (Debian 12 and 13,
# systemd as PID 1 in nspawn, the real ssh, rsyslog with rsyslog-gnutls, and sftpctl units)
# forward over TLS with mutual certificates to a collector (Debian 12) on a private bridge
# made here. Sessions on both are reported once each at the collector, naming their host;
# the collector stopped (rsyslog and watcher) while both hosts serve sessions and one host
# reboots with lines queued → every report after it returns, none twice; a forwarder with a
# certificate of another CA, or of the CA with a name not permitted, never reaches a report.
#   tests/hosts/fleet.sh SFTPCTL_DEB
# FLEET_OUTAGE_SECS (default 30) is how long the collector stays down (the issue's 5 minutes,
# shortened; the queues are the real ones).
set -euo pipefail
deb=${1:?usage: fleet.sh SFTPCTL_DEB}
outage=${FLEET_OUTAGE_SECS:-30}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

work=$(mktemp -d /tmp/sftpctl-fleet.XXXXXX)
trap 'fleet_cleanup; rm -rf "$work"' EXIT
SSH_OPTS=(-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes
    -o ConnectTimeout=10 -o IdentitiesOnly=yes -o LogLevel=ERROR)
SPOOL=/var/spool/sftpctl/mail
LABELS=(sftp-a sftp-b collector)
SUITES=(bookworm trixie bookworm)

grep_all() { grep "$@" >/dev/null; }

# certtool (gnutls-bin) on this machine: a CA, and a certificate for each name.
ca_new() {
    local dir=$1
    mkdir -p "$dir"
    certtool --generate-privkey --key-type=ecdsa --outfile "$dir/ca.key" 2>/dev/null
    printf 'cn = "fleet test CA"\nca\ncert_signing_key\nexpiration_days = 30\n' >"$dir/ca.tmpl"
    certtool --generate-self-signed --load-privkey "$dir/ca.key" --template "$dir/ca.tmpl" --outfile "$dir/ca.pem" 2>/dev/null
}
ca_issue() {
    local dir=$1 cn=$2
    certtool --generate-privkey --key-type=ecdsa --outfile "$dir/$cn.key" 2>/dev/null
    chmod 600 "$dir/$cn.key"
    printf 'cn = "%s"\ndns_name = "%s"\ntls_www_server\ntls_www_client\nsigning_key\nexpiration_days = 30\n' "$cn" "$cn" >"$dir/$cn.tmpl"
    certtool --generate-certificate --load-privkey "$dir/$cn.key" --load-ca-certificate "$dir/ca.pem" \
        --load-ca-privkey "$dir/ca.key" --template "$dir/$cn.tmpl" --outfile "$dir/$cn.pem" 2>/dev/null
}

# The collector's mails whose subject names USER@HOST and that mention FILE.
reports() {
    local who=$1 file=$2
    guest_use collector
    in_guest sh -c "grep -l -F 'Subject: SFTP $who:' $SPOOL/*.eml 2>/dev/null | xargs -r grep -l -F '$file' | wc -l"
}

sftp_put() {
    local label=$1 user=$2 file=$3
    guest_use "$label"
    guest_sh "echo '$file of $label' > /root/up/$file"
    in_guest sh -c "cd /root/up && echo 'put $file' | sftp -b - -i /root/keys/$user ${SSH_OPTS[*]} $user@127.0.0.1" >/dev/null ||
        fail "$user cannot upload $file on $label"
}

# What the forwarders' rsyslog said and what waits in their queues (after a failure).
forwarders_diag() {
    local l
    for l in sftp-a sftp-b; do
        guest_use "$l"
        echo "--- $l: rsyslog's journal (last 15), queue ---" >&2
        in_guest journalctl -u rsyslog.service -b --no-pager -n 15 >&2 2>&1 || true
        in_guest ls -la /var/spool/sftpctl/forward >&2 2>&1 || true
        in_guest journalctl -b --no-pager -n 30 -t rsyslogd >&2 2>&1 || true
    done
    guest_use collector
    echo "--- collector: rsyslogd's messages, log file, watcher ---" >&2
    in_guest journalctl -b --no-pager -n 30 -t rsyslogd >&2 2>&1 || true
    in_guest sh -c 'grep -c . /var/log/sftp.log; echo "lines naming down-: $(grep -c down- /var/log/sftp.log)"; grep sftpctl-accounts /var/log/sftp.log | cut -c1-160' >&2 2>&1 || true
    in_guest journalctl -b --no-pager -n 20 -u sftpctl-watch.service >&2 2>&1 || true
}

s_rootfs() {
    local i
    for i in 0 1 2; do
        tarballs[i]=$("$here/rootfs.sh" "${SUITES[i]}")
    done
    keep tarballs
}

s_network() {
    net_create
    echo "  bridge $NET_BRIDGE, this machine $NET_HOST_ADDR/24"
}

s_guests() {
    ca_new "$work/pki"
    ca_new "$work/rogue"
    local i l
    for l in "${LABELS[@]}" intruder; do ca_issue "$work/pki" "$l"; done
    ca_issue "$work/rogue" sftp-a
    for i in 0 1 2; do
        l=${LABELS[i]}
        guest_add "$l" "${tarballs[i]}"
        install -d -m 0755 "$GUEST_DIR/etc/sftpctl/tls"
        install -m 0644 "$work/pki/ca.pem" "$GUEST_DIR/etc/sftpctl/tls/ca.pem"
        install -m 0644 "$work/pki/$l.pem" "$GUEST_DIR/etc/sftpctl/tls/host.pem"
        install -m 0600 "$work/pki/$l.key" "$GUEST_DIR/etc/sftpctl/tls/host.key"
        cp "$deb" "$GUEST_DIR/root/sftpctl.deb"
        echo "  $l: Debian ${SUITES[i]}, $GUEST_ADDR"
    done
    guest_hosts_all
    guest_boot_all
}

s_install() {
    local l
    for l in "${LABELS[@]}"; do
        guest_use "$l"
        in_guest dpkg -i /root/sftpctl.deb >/dev/null
        in_guest mkdir -p /root/keys /root/up
    done
    guest_use collector
    cat >"$GUEST_DIR/etc/sftpctl/sftpctl.toml" <<EOF
admin = "sftpadmin"

[collect]
enabled = true
listen = "0.0.0.0:6514"
permitted = ["sftp-a", "sftp-b"]
EOF
    in_guest sftpctl init >/dev/null
    local l2
    for l2 in sftp-a sftp-b; do
        guest_use "$l2"
        cat >"$GUEST_DIR/etc/sftpctl/sftpctl.toml" <<EOF
admin = "sftpadmin"

[forward]
to = "collector:6514"
retry_secs = 2
EOF
        in_guest sftpctl init >/dev/null
    done
}

s_clients() {
    local l u
    for l in sftp-a sftp-b; do
        guest_use "$l"
        u=client-${l#sftp-}
        in_guest ssh-keygen -q -t ed25519 -N '' -f "/root/keys/$u"
        in_guest sftpctl add-user "$u" --key "/root/keys/$u.pub" >/dev/null
    done
    guest_use collector
    wait_for "both hosts' accounts at the collector" 30 \
        "in_guest grep -q client-a /var/lib/sftpctl/fleet/accounts.json && in_guest grep -q client-b /var/lib/sftpctl/fleet/accounts.json" ||
        { forwarders_diag; guest_use collector; fail "the collector has no accounts of the hosts: $(in_guest cat /var/lib/sftpctl/fleet/accounts.json 2>&1)"; }
}

s_sessions() {
    sftp_put sftp-a client-a contract-a.pdf
    sftp_put sftp-b client-b taxes-b.pdf
    wait_for "sftp-a's report at the collector" 30 '[[ $(reports client-a@sftp-a contract-a.pdf) == 1 ]]' ||
        fail "no report of sftp-a"
    wait_for "sftp-b's report at the collector" 30 '[[ $(reports client-b@sftp-b taxes-b.pdf) == 1 ]]' ||
        fail "no report of sftp-b"
    guest_use collector
    # The watcher writes the hosts' last lines at most every 5 s.
    wait_for "doctor's fleet lines" 15 \
        "in_guest sftpctl doctor 2>&1 | grep -q '^ok   host sftp-a: last line' && in_guest sftpctl doctor 2>&1 | grep -q '^ok   host sftp-b: last line'" ||
        fail "doctor: $(in_guest sftpctl doctor 2>&1 | grep host)"
    in_guest sftpctl doctor 2>&1 | grep '^ok   host' | sed 's/^/  /'
    # The sessions' logins (sshd → journald → rsyslog on each host) at the collector, once each.
    local n
    logins() { in_guest sftpctl report --logins --format csv 2>/dev/null | grep -c ",$1,accepted," || true; }
    wait_for "both hosts' logins at the collector" 30 '[[ $(logins client-a@sftp-a) -ge 1 && $(logins client-b@sftp-b) -ge 1 ]]' ||
        fail "logins at the collector: $(in_guest sftpctl report --logins 2>&1 | tail -5)"
    n=$(logins client-a@sftp-a)
    [[ $n == 1 ]] || fail "client-a@sftp-a's one login counted $n times"
    echo "  report --logins at the collector: client-a@sftp-a and client-b@sftp-b, once each"
}

# A TLS client on this machine with CERT/KEY sends one forged forwarded line to the
# collector; the collector must never take it.
forge() {
    local dir=$1 name=$2 marker=$3 addr line frame
    addr=$(guest_addr collector)
    line="2026-01-01T00:00:00.000000+00:00 sftp-a [uid=1001 pid=4242 exe=/usr/lib/openssh/sftp-server] internal-sftp[4242]: open \"/data/$marker\" flags READ mode 0666"
    frame="<13>2026-01-01T00:00:00.000000+00:00 sftp-a sftpctl-forward: $line"
    { printf '%s %s' "${#frame}" "$frame"; sleep 2; } |
        timeout 10 gnutls-cli --x509cafile "$work/pki/ca.pem" --x509certfile "$dir/$name.pem" \
            --x509keyfile "$dir/$name.key" -p 6514 "$addr" --sni-hostname collector \
            --verify-hostname collector >"$work/forge-$marker.out" 2>&1 || true
}

s_refused() {
    forge "$work/rogue" sftp-a forged-by-other-ca
    forge "$work/pki" intruder forged-by-intruder
    sleep 2
    guest_use collector
    ! in_guest grep -q forged- /var/log/sftpctl/sftp.log 2>/dev/null || fail "a forged line reached the collector's log"
    ! in_guest sh -c "grep -l forged- $SPOOL/*.eml" >/dev/null 2>&1 || fail "a forged line reached a report"
    grep -h -i -m1 -E 'handshake|alert|error|closed' "$work"/forge-*.out | sed 's/^/  gnutls-cli: /' || true
}

s_outage() {
    guest_use collector
    # syslog.socket first: else the next line journald relays starts rsyslog again.
    in_guest systemctl stop syslog.socket rsyslog.service sftpctl-watch.service
    local i
    for i in 1 2 3; do
        sftp_put sftp-a client-a "down-a-$i.pdf"
        sftp_put sftp-b client-b "down-b-$i.pdf"
    done
    # sftp-a reboots with its lines queued.
    guest_use sftp-a
    guest_poweroff
    guest_boot
    guest_save
    sftp_put sftp-a client-a down-a-after-reboot.pdf
    sleep "$outage"
    guest_use collector
    [[ $(in_guest sh -c "grep -l -F down- $SPOOL/*.eml 2>/dev/null | wc -l") == 0 ]] || fail "a report while the collector was down"
    in_guest systemctl start syslog.socket rsyslog.service sftpctl-watch.service
    # The queued lines pour in at once: the watcher must be listening before rsyslog runs
    # (its unit is ordered before rsyslog and says READY=1 once its socket is bound).
    local ready started
    ready=$(in_guest systemctl show -p ActiveEnterTimestampMonotonic --value sftpctl-watch.service)
    started=$(in_guest systemctl show -p ExecMainStartTimestampMonotonic --value rsyslog.service)
    ((ready > 0 && ready <= started)) || fail "rsyslog started (${started} µs) before the watcher was ready (${ready} µs)"
    for i in 1 2 3; do
        wait_for "down-a-$i" 60 "[[ \$(reports client-a@sftp-a down-a-$i.pdf) -ge 1 ]]" || { forwarders_diag; fail "down-a-$i.pdf was not reported"; }
        wait_for "down-b-$i" 60 "[[ \$(reports client-b@sftp-b down-b-$i.pdf) -ge 1 ]]" || { forwarders_diag; fail "down-b-$i.pdf was not reported"; }
    done
    wait_for "down-a-after-reboot" 60 '[[ $(reports client-a@sftp-a down-a-after-reboot.pdf) -ge 1 ]]' || fail "the session after the reboot was not reported"
    sleep 3
    for i in 1 2 3; do
        [[ $(reports client-a@sftp-a "down-a-$i.pdf") == 1 ]] || fail "down-a-$i.pdf reported $(reports client-a@sftp-a "down-a-$i.pdf") times"
        [[ $(reports client-b@sftp-b "down-b-$i.pdf") == 1 ]] || fail "down-b-$i.pdf reported twice"
    done
    guest_use collector
    local incomplete
    incomplete=$(in_guest sh -c "grep -l INCOMPLETE $SPOOL/*.eml 2>/dev/null | wc -l")
    [[ $incomplete == 0 ]] || fail "$incomplete report(s) incomplete"
    echo "  $(in_guest sh -c "ls $SPOOL/*.eml | wc -l") reports at the collector, none twice, none incomplete (collector down ${outage} s, sftp-a rebooted)"
}

step rootfs s_rootfs
needed
step network s_network
needed
step guests s_guests
needed
step install-and-init s_install
needed
step clients s_clients
needed
step sessions-of-two-hosts s_sessions
step forwarders-without-a-valid-certificate s_refused
step collector-outage-and-a-reboot s_outage

if summary; then
    echo "PASS: many hosts, one collector"
else
    exit 1
fi
