# Shared by the booted-host tests (sourced, bash): boot a Debian root filesystem with systemd as
# PID 1 in systemd-nspawn, run commands inside, power it off and boot it again, and run named
# steps that print PASS/FAIL with their time. FACTS.md "Booted hosts" has why the flags are
# these: `-b --register=no --keep-unit` (no system bus here) and `--private-network` (the
# guest's port 22 and watcher stay off this machine's loopback).
#
# Globals: GUEST_DIR (the root filesystem), GUEST_NAME, GUEST_LOG (console), NSPAWN_PID,
# INIT_PID (the guest's systemd, for nsenter), TIMINGS (lines "name seconds status").
#
# Several guests on one private network (a bridge made by the test, nothing outside this
# machine: the guests get no default route):
#   net_create                     bridge NET_BRIDGE (sft-br-PID), a free 10.X.Y.0/24 as
#                                  NET_PREFIX (10.X.Y), this machine is NET_HOST_ADDR (.1)
#   guest_add LABEL TARBALL        unpacks a guest with address NET_PREFIX.(10+n) and hostname
#                                  LABEL, and selects it (LABEL: a-z, 0-9, -)
#   guest_use LABEL                selects a guest: GUEST_DIR, GUEST_NAME, GUEST_LOG,
#                                  NSPAWN_PID, INIT_PID, GUEST_ADDR, GUEST_BRIDGE are its
#                                  own, so guest_boot, in_guest, guest_sh, guest_poweroff and
#                                  guest_diagnostics act on it
#   guest_boot_all                 boots every added guest (selecting each in turn)
#   guest_addr LABEL               prints a guest's address (for ssh, inventories, configs)
#   fleet_cleanup                  powers every guest off, removes their trees and the bridge
#                                  (call it from an EXIT trap: it also runs after a failure)
# The selection lives in the scalars above, and each guest's copy in the GUESTS_* arrays
# (label → value); guest_use/guest_boot save the selected guest back, and `keep` carries the
# arrays across steps like any other variable.

GUEST_DIR=
GUEST_NAME=
GUEST_LOG=
NSPAWN_PID=
INIT_PID=
GUEST_ADDR=
GUEST_BRIDGE=
TIMINGS=()
STEP_FAILURES=()
STEP_RC=0
STEP_XFAIL=()

# Steps run in subshells: what a step must hand to later ones is kept in this file
# (`keep VAR…`) and read back after each step.
STATE_FILE=$(mktemp /tmp/sftpctl-hosts-state.XXXXXX)
keep() { declare -p "$@" | sed "s/^declare /declare -g /" >>"$STATE_FILE"; }

now() { echo "${EPOCHREALTIME/,/.}"; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

# Unpacks TAR into a new directory under /srv (never /tmp: FACTS.md) and gives it a machine id.
guest_unpack() {
    local tarball=$1 label=$2
    GUEST_DIR=$(mktemp -d "/srv/sftpctl-host-$label.XXXXXX")
    GUEST_NAME=$(basename "$GUEST_DIR" | tr -c 'a-zA-Z0-9\n' -)
    GUEST_LOG=$GUEST_DIR.console
    tar -C "$GUEST_DIR" -xf "$tarball"
    systemd-machine-id-setup --root="$GUEST_DIR" >/dev/null
    keep GUEST_DIR GUEST_NAME GUEST_LOG
}

# Boots GUEST_DIR and waits until systemd says running (or degraded) and ssh is active.
guest_boot() {
    : >>"$GUEST_LOG"
    echo "--- boot $(date -u +%T) ---" >>"$GUEST_LOG"
    local net=(--private-network)
    [[ -n ${GUEST_BRIDGE:-} ]] && net=(--network-bridge="$GUEST_BRIDGE")
    systemd-nspawn -q -D "$GUEST_DIR" -M "$GUEST_NAME" -b --register=no --keep-unit "${net[@]}" >>"$GUEST_LOG" 2>&1 &
    NSPAWN_PID=$!
    INIT_PID=
    local p child
    for _ in $(seq 150); do
        # The guest's PID 1 is nspawn's child (or grandchild) named systemd, and PID 1 of its
        # namespace: a unit's process that PID 1 has just forked is named systemd too for a
        # moment (taking one made nsenter fail once: "cannot open /proc/N/ns/net").
        for child in $(pgrep -P "$NSPAWN_PID" || true); do
            for p in "$child" $(pgrep -P "$child" || true); do
                if [[ $(cat "/proc/$p/comm" 2>/dev/null) == systemd ]] &&
                    [[ $(awk '/^NSpid:/ {print $NF}' "/proc/$p/status" 2>/dev/null) == 1 ]]; then
                    INIT_PID=$p
                    break 2
                fi
            done
        done
        [[ -n $INIT_PID ]] && break
        kill -0 "$NSPAWN_PID" 2>/dev/null || break
        sleep 0.2
    done
    keep NSPAWN_PID INIT_PID
    if [[ -z $INIT_PID ]]; then
        echo "the guest's systemd did not start; console:" >&2
        tail -40 "$GUEST_LOG" >&2
        return 1
    fi
    [[ -z ${GUEST_ADDR:-} ]] || guest_net_up
    local state=
    for _ in $(seq 300); do
        state=$(in_guest systemctl is-system-running 2>/dev/null || true)
        if [[ $state == running || $state == degraded ]] && in_guest systemctl is-active --quiet ssh.service; then
            keep NSPAWN_PID INIT_PID
            guest_save
            return 0
        fi
        sleep 0.2
    done
    echo "the guest did not finish booting (systemctl is-system-running: $state)" >&2
    return 1
}

# Runs a command in every namespace of the guest, with a clean environment.
in_guest() {
    nsenter -t "$INIT_PID" -a env -i PATH=/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"
}

# `sh -c SCRIPT` in the guest.
guest_sh() { in_guest sh -c "$1"; }

# Clean shutdown: systemctl poweroff, then wait for nspawn to exit (SIGKILL after 40 s).
guest_poweroff() {
    [[ -n $NSPAWN_PID ]] || return 0
    if kill -0 "$NSPAWN_PID" 2>/dev/null; then
        if [[ -n $INIT_PID ]]; then
            in_guest systemctl poweroff --no-block >/dev/null 2>&1 || kill -TERM "$NSPAWN_PID" 2>/dev/null || true
        else
            kill -TERM "$NSPAWN_PID" 2>/dev/null || true
        fi
        for _ in $(seq 200); do kill -0 "$NSPAWN_PID" 2>/dev/null || break; sleep 0.2; done
        if kill -0 "$NSPAWN_PID" 2>/dev/null; then
            echo "the guest did not power off within 40 s: killed" >&2
            kill -KILL "$NSPAWN_PID" 2>/dev/null || true
        fi
    fi
    wait "$NSPAWN_PID" 2>/dev/null || true
    NSPAWN_PID=
    INIT_PID=
    keep NSPAWN_PID INIT_PID
    guest_save
    # /run is not a tmpfs on these machines: nspawn leaves this empty dir behind.
    rmdir "/run/systemd/nspawn/propagate/$GUEST_NAME" 2>/dev/null || true
}

guest_cleanup() {
    guest_poweroff
    if [[ -n $GUEST_DIR && -d $GUEST_DIR ]]; then
        rm -rf --one-file-system "$GUEST_DIR" "$GUEST_LOG"
    fi
    rm -f "$STATE_FILE"
}

# What to read when something failed: the end of the console and of the guest's journal.
guest_diagnostics() {
    echo "--- console (last 30 lines) ---"
    tail -30 "$GUEST_LOG" 2>/dev/null || true
    if [[ -n $INIT_PID ]] && kill -0 "$INIT_PID" 2>/dev/null; then
        echo "--- guest: systemctl --failed ---"
        in_guest systemctl --failed --no-pager 2>&1 || true
        echo "--- guest journal (last 120 lines) ---"
        in_guest journalctl -b --no-pager -n 120 2>&1 || true
    fi
}

# step NAME FUNCTION [ARGS]: runs FUNCTION in a subshell with errexit (a failing command
# fails the step and is named), prints "PASS NAME (1.23 s)" or "FAIL NAME (…)", records the
# time. A step named in XFAIL (name=reason) is expected to fail until another branch is
# merged: its failure prints XFAIL and does not fail the run; its success prints XPASS and does
# (remove it from XFAIL). Always returns 0 and leaves the step's status in STEP_RC: called
# inside `||`/`&&`/`if`, bash would ignore errexit in the step's subshell too.
declare -A XFAIL=()
step() {
    local name=$1 start rc
    shift
    start=$(now)
    echo "=== $name"
    set +e
    (
        set -eE
        trap 'echo "  failed: $BASH_COMMAND (line $LINENO, exit $?)" >&2' ERR
        "$@"
    )
    rc=$?
    set -e
    # shellcheck disable=SC1090
    . "$STATE_FILE"
    local took status
    took=$(elapsed "$start")
    if [[ $rc == 0 ]]; then
        status=PASS
        if [[ -n ${XFAIL[$name]:-} ]]; then
            status=XPASS
            STEP_FAILURES+=("$name (passes now: remove it from XFAIL in tests/hosts/acceptance.sh)")
        fi
    elif [[ -n ${XFAIL[$name]:-} ]]; then
        status=XFAIL
        STEP_XFAIL+=("$name: ${XFAIL[$name]}")
    else
        status=FAIL
        STEP_FAILURES+=("$name")
        guest_diagnostics >&2
    fi
    TIMINGS+=("$name $took $status")
    echo "$status $name ($took s)"
    STEP_RC=$rc
}

# After a step the later ones cannot do without: stop here when it failed.
needed() {
    if [[ $STEP_RC != 0 ]]; then
        summary || true
        exit 1
    fi
}

# fail MESSAGE: ends the current step.
fail() {
    echo "  $*" >&2
    exit 1
}

# wait_for WHAT SECONDS COMMAND...: polls every 0.1 s. A single COMMAND string is eval'ed
# each time (for conditions with $(…) that must be read again).
wait_for() {
    local what=$1 seconds=$2
    shift 2
    local deadline
    deadline=$(awk -v n="$(now)" -v s="$seconds" 'BEGIN { printf "%.3f", n + s }')
    while :; do
        if (($# == 1)); then
            if eval "$1" >/dev/null 2>&1; then return 0; fi
        elif "$@" >/dev/null 2>&1; then
            return 0
        fi
        if awk -v n="$(now)" -v d="$deadline" 'BEGIN { exit !(n > d) }'; then
            echo "  timed out after $seconds s waiting for $what" >&2
            return 1
        fi
        sleep 0.1
    done
}

summary() {
    echo "--- timings (seconds) ---"
    printf '%s\n' "${TIMINGS[@]}" | awk '{ printf "%-34s %7s  %s\n", $1, $2, $3 }'
    if ((${#STEP_XFAIL[@]})); then
        echo "--- expected failures (wait for other branches) ---"
        printf '  %s\n' "${STEP_XFAIL[@]}"
    fi
    if ((${#STEP_FAILURES[@]})); then
        echo "--- failed ---"
        printf '  %s\n' "${STEP_FAILURES[@]}"
        return 1
    fi
}

# ---------------------------------------------------------------------------------------------
# Several guests on one bridge (see the header).

NET_BRIDGE=
NET_PREFIX=
NET_HOST_ADDR=
GUEST_LABELS=()
declare -A GUESTS_DIR=() GUESTS_NAME=() GUESTS_LOG=() GUESTS_NSPAWN_PID=() GUESTS_INIT_PID=() GUESTS_ADDR=()
GUEST_LABEL=

# A bridge with a /24 that no route of this machine touches; the lock keeps two runs from
# picking the same one between the check and `ip addr add`.
net_create() {
    NET_BRIDGE=sft-br-$$
    exec 8>/run/sftpctl-test-net.lock
    flock 8
    local used candidate
    used=$(ip -4 route show table all; ip -4 addr show)
    NET_PREFIX=
    for _ in $(seq 50); do
        candidate=10.$((200 + RANDOM % 50)).$((RANDOM % 256))
        grep -qF "$candidate." <<<"$used" || { NET_PREFIX=$candidate; break; }
    done
    [[ -n $NET_PREFIX ]] || { flock -u 8; echo "net_create: found no free 10.x.y.0/24" >&2; return 1; }
    NET_HOST_ADDR=$NET_PREFIX.1
    ip link add "$NET_BRIDGE" type bridge
    keep NET_BRIDGE NET_PREFIX NET_HOST_ADDR
    ip addr add "$NET_HOST_ADDR/24" dev "$NET_BRIDGE"
    ip link set "$NET_BRIDGE" up
    flock -u 8
    exec 8>&-
}

# Saves the selected guest's scalars into the arrays.
guest_save() {
    [[ -n $GUEST_LABEL ]] || return 0
    GUESTS_DIR[$GUEST_LABEL]=$GUEST_DIR
    GUESTS_NAME[$GUEST_LABEL]=$GUEST_NAME
    GUESTS_LOG[$GUEST_LABEL]=$GUEST_LOG
    GUESTS_NSPAWN_PID[$GUEST_LABEL]=$NSPAWN_PID
    GUESTS_INIT_PID[$GUEST_LABEL]=$INIT_PID
    GUESTS_ADDR[$GUEST_LABEL]=$GUEST_ADDR
    keep GUEST_LABELS GUESTS_DIR GUESTS_NAME GUESTS_LOG GUESTS_NSPAWN_PID GUESTS_INIT_PID GUESTS_ADDR
}

guest_use() {
    local label=$1
    [[ -n ${GUESTS_DIR[$label]+x} ]] || { echo "guest_use: no guest '$label'" >&2; return 1; }
    guest_save
    GUEST_LABEL=$label
    GUEST_DIR=${GUESTS_DIR[$label]}
    GUEST_NAME=${GUESTS_NAME[$label]}
    GUEST_LOG=${GUESTS_LOG[$label]}
    NSPAWN_PID=${GUESTS_NSPAWN_PID[$label]}
    INIT_PID=${GUESTS_INIT_PID[$label]}
    GUEST_ADDR=${GUESTS_ADDR[$label]}
    GUEST_BRIDGE=$NET_BRIDGE
    keep GUEST_LABEL GUEST_DIR GUEST_NAME GUEST_LOG NSPAWN_PID INIT_PID GUEST_ADDR GUEST_BRIDGE
}

guest_addr() {
    [[ -n ${GUESTS_ADDR[$1]:-} ]] || { echo "guest_addr: no guest '$1'" >&2; return 1; }
    echo "${GUESTS_ADDR[$1]}"
}

guest_add() {
    local label=$1 tarball=$2
    [[ -n $NET_BRIDGE ]] || { echo "guest_add: call net_create first" >&2; return 1; }
    [[ $label =~ ^[a-z0-9][a-z0-9-]{0,20}$ ]] || { echo "guest_add: bad label '$label'" >&2; return 1; }
    [[ -z ${GUESTS_DIR[$label]+x} ]] || { echo "guest_add: '$label' exists" >&2; return 1; }
    guest_save
    guest_unpack "$tarball" "$label"
    # The machine name is the guest's hostname (reports name the host): the label, unique per
    # run for nspawn's own per-machine paths.
    GUEST_NAME=$label-$$
    GUEST_LOG=$GUEST_DIR.console
    echo "$label" >"$GUEST_DIR/etc/hostname"
    GUEST_LABELS+=("$label")
    GUEST_ADDR=$NET_PREFIX.$((10 + ${#GUEST_LABELS[@]}))
    printf '%s %s\n' "$NET_HOST_ADDR" sftpctl-test-host >>"$GUEST_DIR/etc/hosts"
    GUEST_LABEL=$label
    GUESTS_DIR[$label]=$GUEST_DIR
    guest_save
    keep GUEST_LABEL GUEST_DIR GUEST_NAME GUEST_LOG
    guest_use "$label"
}

# Names every guest in every guest's /etc/hosts (LABEL → address), before they boot.
guest_hosts_all() {
    local l m
    for l in "${GUEST_LABELS[@]}"; do
        for m in "${GUEST_LABELS[@]}"; do
            printf '%s %s\n' "${GUESTS_ADDR[$m]}" "$m" >>"${GUESTS_DIR[$l]}/etc/hosts"
        done
    done
}

# The guest's end of nspawn's veth (host0) gets GUEST_ADDR; run with only the guest's network
# namespace entered, so this machine's `ip` does it (the guest needs no network tools).
guest_net_up() {
    local _
    for _ in $(seq 50); do
        nsenter -t "$INIT_PID" -n ip link show host0 >/dev/null 2>&1 && break
        sleep 0.1
    done
    nsenter -t "$INIT_PID" -n ip addr replace "$GUEST_ADDR/24" dev host0
    nsenter -t "$INIT_PID" -n ip link set host0 up
    nsenter -t "$INIT_PID" -n ip link set lo up
}

guest_boot_all() {
    local l
    for l in "${GUEST_LABELS[@]}"; do
        guest_use "$l"
        guest_boot
        guest_save
    done
}

fleet_cleanup() {
    local l
    guest_save
    for l in "${GUEST_LABELS[@]}"; do
        guest_use "$l"
        guest_poweroff
        if [[ -n $GUEST_DIR && -d $GUEST_DIR ]]; then
            rm -rf --one-file-system "$GUEST_DIR" "$GUEST_LOG"
        fi
        guest_save
    done
    if [[ -n $NET_BRIDGE ]]; then
        ip link del "$NET_BRIDGE" 2>/dev/null || true
    fi
    rm -f "$STATE_FILE"
}
