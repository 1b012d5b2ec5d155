#!/usr/bin/env bash
# contrib/ansible/site.yml run by the real ansible-playbook over ssh against two booted guests
# (Debian 12 and Debian 13 under systemd in nspawn) on a private bridge made here: the first
# run changes and sets the hosts up, the second changes nothing, --check with one more user
# reports apply as changed and changes nothing. Named steps print PASS/FAIL and their time.
#   tests/hosts/ansible.sh ANSIBLE_PLAYBOOK SFTPCTL_DEB
# Needs root, systemd-container and debootstrap (root filesystems cached by rootfs.sh).
set -euo pipefail
playbook_bin=${1:?usage: ansible.sh ANSIBLE_PLAYBOOK SFTPCTL_DEB}
deb=${2:?usage: ansible.sh ANSIBLE_PLAYBOOK SFTPCTL_DEB}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

# The controller's files: keys, known_hosts, inventory, ansible's own home (never /root/.ssh
# or /root/.ansible of this machine).
work=$(mktemp -d /tmp/sftpctl-ansible.XXXXXX)
trap 'fleet_cleanup; rm -rf "$work"' EXIT
run_start=$(now)
SSH_OPTS=(-F /dev/null -o UserKnownHostsFile="$work/known_hosts" -o StrictHostKeyChecking=accept-new
    -o BatchMode=yes -o ConnectTimeout=10 -o IdentitiesOnly=yes -o LogLevel=ERROR)
# Debian 12 and 13: the role must work with both OpenSSH (9.2, 10.0) and target Pythons (3.11,
# 3.13), and the lead's collector test reuses this pair of releases.
SUITES=(bookworm trixie)
LABELS=(sftp-a sftp-b)

grep_all() { grep "$@" >/dev/null; }

# ansible-playbook with a clean, test-local environment; output in $work/NAME.out.
play() {
    local name=$1
    shift
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$work/home" LANG=C.UTF-8 \
        ANSIBLE_HOME="$work/home/.ansible" ANSIBLE_LOCAL_TEMP="$work/home/tmp" \
        ANSIBLE_NOCOLOR=1 ANSIBLE_RETRY_FILES_ENABLED=0 ANSIBLE_HOST_KEY_CHECKING=1 \
        ANSIBLE_CONFIG="$work/ansible.cfg" \
        "$playbook_bin" -i "$work/inventory.ini" -e "@$work/vars.yml" "$repo/contrib/ansible/site.yml" "$@" \
        >"$work/$name.out" 2>&1 || { tail -60 "$work/$name.out" >&2; fail "ansible-playbook $name failed"; }
    sed -n '/^PLAY RECAP/,$p' "$work/$name.out" | sed '/^$/d; s/^/  | /'
}
# recap NAME HOST FIELD: a count from PLAY RECAP.
recap() {
    sed -n '/^PLAY RECAP/,$p' "$work/$1.out" | awk -v h="$2" -v f="$3" '
        $1 == h { for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == f) print kv[2] } }'
}
# The hosts of a task that reported changed: "changed: [HOST]" lines under TASK [NAME].
changed_in_task() {
    awk -v t="TASK [sftpctl : $2]" '
        index($0, "TASK [") == 1 { on = index($0, t) == 1; next }
        on && /^changed: \[/ { sub(/^changed: \[/, ""); sub(/\].*/, ""); print }' "$work/$1.out" | sort
}

s_rootfs() {
    local i
    for i in 0 1; do
        tarballs[i]=$("$here/rootfs.sh" "${SUITES[i]}")
        echo "  ${tarballs[i]}"
    done
    keep tarballs
}

s_network() {
    net_create
    echo "  bridge $NET_BRIDGE, this machine $NET_HOST_ADDR/24"
}

s_guests() {
    ssh-keygen -q -t ed25519 -N '' -C ansible-test -f "$work/root_key"
    local i
    for i in 0 1; do
        guest_add "${LABELS[i]}" "${tarballs[i]}"
        install -d -m 0700 "$GUEST_DIR/root/.ssh"
        install -m 0600 "$work/root_key.pub" "$GUEST_DIR/root/.ssh/authorized_keys"
        echo "  ${LABELS[i]}: Debian ${SUITES[i]}, $GUEST_ADDR"
    done
    guest_hosts_all
}

s_boot() {
    guest_boot_all
    local l
    for l in "${LABELS[@]}"; do
        ssh "${SSH_OPTS[@]}" -i "$work/root_key" "root@$(guest_addr "$l")" true ||
            fail "no ssh to $l over the bridge"
    done
    # Guests reach each other (the collector's path) and nothing else: no default route.
    guest_use sftp-a
    in_guest bash -c "exec 3<>/dev/tcp/$(guest_addr sftp-b)/22" || fail "sftp-a cannot reach sftp-b"
    [[ -z $(nsenter -t "$INIT_PID" -n ip -4 route show default) ]] || fail "sftp-a has a default route"
}

s_setup_files() {
    local k
    for k in admin alice bob; do ssh-keygen -q -t ed25519 -N '' -C "$k" -f "$work/$k"; done
    cat >"$work/users.toml" <<EOF
[[user]]
name = "alice"
keys = ["$(cat "$work/alice.pub")"]
EOF
    { cat "$work/users.toml"; printf '\n[[user]]\nname = "bob"\nkeys = ["%s"]\n' "$(cat "$work/bob.pub")"; } >"$work/users2.toml"
    cat >"$work/inventory.ini" <<EOF
[sftp_hosts]
sftp-a ansible_host=$(guest_addr sftp-a)
sftp-b ansible_host=$(guest_addr sftp-b)

[sftp_hosts:vars]
ansible_user=root
ansible_python_interpreter=/usr/bin/python3
ansible_ssh_private_key_file=$work/root_key
ansible_ssh_common_args='-F /dev/null -o UserKnownHostsFile=$work/known_hosts -o StrictHostKeyChecking=accept-new'
EOF
    cat >"$work/vars.yml" <<EOF
sftpctl_deb: $deb
sftpctl_users_file: $work/users.toml
sftpctl_config:
  admin: sftpadmin
  mail:
    from: "sftp reports <reports@example.org>"
sftpctl_admin_keys:
  - "$(cat "$work/admin.pub")"
EOF
    mkdir -p "$work/home/tmp"
    : >"$work/ansible.cfg"
}

# The config template on the controller alone: keys and values that try to end their line
# and add a setting stay one string each (TOML read back by Python's tomllib).
s_template_escaping() {
    cat >"$work/escape.yml" <<'EOF'
- hosts: localhost
  connection: local
  gather_facts: false
  vars:
    sftpctl_config:
      admin: "x\"\nroot = \"/\"\n# "
      "we ird\"] = 1\n[sshd": "tab\there é \\ \u0001"
      mail:
        to: ["a@b.example", "c\"\n[pam]"]
        retry_max_secs: 60
        x_flag: true
  tasks:
    - ansible.builtin.template:
        src: "{{ repo }}/contrib/ansible/roles/sftpctl/templates/sftpctl.toml.j2"
        dest: "{{ out }}"
        mode: "0600"
EOF
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$work/home" LANG=C.UTF-8 ANSIBLE_HOME="$work/home/.ansible" \
        ANSIBLE_LOCAL_TEMP="$work/home/tmp" ANSIBLE_NOCOLOR=1 ANSIBLE_CONFIG="$work/ansible.cfg" \
        ANSIBLE_LOCALHOST_WARNING=0 ANSIBLE_INVENTORY_UNPARSED_WARNING=0 \
        "$playbook_bin" -e repo="$repo" -e out="$work/escape.toml" "$work/escape.yml" >"$work/escape.out" 2>&1 ||
        { cat "$work/escape.out" >&2; fail "the template run failed"; }
    /usr/bin/python3 - "$work/escape.toml" <<'PY' || fail "the template let a value out: $(cat "$work/escape.toml")"
import sys, tomllib
c = tomllib.load(open(sys.argv[1], "rb"))
assert c == {
    "admin": 'x"\nroot = "/"\n# ',
    'we ird"] = 1\n[sshd': "tab\there é \\ \x01",
    "mail": {"to": ["a@b.example", 'c"\n[pam]'], "retry_max_secs": 60, "x_flag": True},
}, c
PY
    sed 's/^/  | /' "$work/escape.toml"
}

etc_sums() { guest_sh 'find /etc /sftp-root /var/cache -xdev -type f -print0 2>/dev/null | sort -z | xargs -0 sha256sum; getent passwd | sort'; }

# --check before anything is installed: every part reports that it would change, and the hosts
# stay as they were (no package, no config, no account, no file).
s_check_fresh() {
    local l
    for l in "${LABELS[@]}"; do guest_use "$l"; etc_sums >"$work/fresh-before-$l"; done
    play check-fresh --check
    local task hosts
    for task in "Keep the .deb on the host" "Install the package (check mode)" "Write the config from sftpctl_config" \
        "Init (check mode, after a package or config change)" "Apply (check mode, after a package or config change)"; do
        hosts=$(changed_in_task check-fresh "$task" | tr '\n' ' ')
        [[ $hosts == "sftp-a sftp-b " ]] || fail "check mode on fresh hosts: '$task' changed on '$hosts', not on both"
    done
    for l in "${LABELS[@]}"; do
        (($(recap check-fresh "$l" failed) == 0)) || fail "$l: failed tasks"
        guest_use "$l"
        in_guest dpkg -s sftpctl >/dev/null 2>&1 && fail "$l: check mode installed sftpctl"
        in_guest test -e /etc/sftpctl && fail "$l: check mode made /etc/sftpctl"
        etc_sums >"$work/fresh-after-$l"
        diff "$work/fresh-before-$l" "$work/fresh-after-$l" >&2 || fail "$l: check mode changed files"
    done
}

# The shipped example: the playbook and role parse, the example inventory names its two hosts.
s_example_inventory() {
    local out
    out=$(cd "$repo/contrib/ansible" && env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$work/home" LANG=C.UTF-8 \
        ANSIBLE_HOME="$work/home/.ansible" ANSIBLE_LOCAL_TEMP="$work/home/tmp" ANSIBLE_CONFIG="$work/ansible.cfg" \
        sh -c '"$1" -i inventory.example.yml site.yml --syntax-check && "$1" -i inventory.example.yml site.yml --list-hosts' - "$playbook_bin" 2>&1) ||
        fail "syntax check: $out"
    grep_all -x ' *sftp-eu' <<<"$out" && grep_all -x ' *sftp-us' <<<"$out" || fail "the example inventory's hosts: $out"
}

s_first_run() {
    play first
    local l
    for l in "${LABELS[@]}"; do
        (($(recap first "$l" changed) > 0)) || fail "$l: the first run reported no change"
        (($(recap first "$l" failed) == 0)) || fail "$l: failed tasks"
    done
}

s_hosts_set_up() {
    local l out
    printf 'a file\n' >"$work/up.txt"
    for l in "${LABELS[@]}"; do
        guest_use "$l"
        out=$(in_guest sftpctl doctor 2>&1) || { echo "$out" | grep -Ev '^ok' >&2; fail "$l: doctor fails"; }
        echo "  $l: doctor: $(grep -c '^ok' <<<"$out") ok lines"
        in_guest sftpctl list-users --json | /usr/bin/python3 -c 'import json, sys; assert [u["name"] for u in json.load(sys.stdin)] == ["alice"]' ||
            fail "$l: alice is not the one managed user"
        in_guest id -nG alice | grep_all -w sftp-only || fail "$l: alice is not jailed: $(in_guest id alice)"
        in_guest test -d /sftp-root/alice/data || fail "$l: no jail for alice"
        [[ $(in_guest stat -c %U:%a /sftp-root/alice) == root:755 ]] || fail "$l: alice's jail is not root's 755"
        in_guest grep -q '^admin = "sftpadmin"' /etc/sftpctl/sftpctl.toml || fail "$l: the config is not the role's"
        in_guest id sftpadmin >/dev/null || fail "$l: no admin account"
        in_guest systemctl is-active --quiet sftpctl-watch.service || fail "$l: the watcher is not running"
        # A client over the bridge, as a client would come.
        printf 'put %s /data/up.txt\nls /data\n' "$work/up.txt" |
            sftp -b - "${SSH_OPTS[@]}" -i "$work/alice" "alice@$GUEST_ADDR" >/dev/null || fail "$l: alice cannot sftp in"
        in_guest cmp -s /sftp-root/alice/data/up.txt - <"$work/up.txt" || fail "$l: alice's upload is not in her jail"
        ssh "${SSH_OPTS[@]}" -i "$work/admin" "sftpadmin@$GUEST_ADDR" true || fail "$l: the admin's key does not log in"
        echo "  $l: alice uploaded over sftp, admin logs in"
    done
}


s_second_run() {
    play second
    local l
    for l in "${LABELS[@]}"; do
        [[ $(recap second "$l" changed) == 0 ]] || { grep -E '^(TASK|changed)' "$work/second.out" >&2; fail "$l: the second run changed something"; }
        [[ $(recap second "$l" failed) == 0 ]] || fail "$l: failed tasks"
    done
}

s_check_mode() {
    local l
    for l in "${LABELS[@]}"; do guest_use "$l"; etc_sums >"$work/before-$l"; done
    sed -i "s|^sftpctl_users_file: .*|sftpctl_users_file: $work/users2.toml|" "$work/vars.yml"
    play check --check
    local hosts
    hosts=$(changed_in_task check "Apply, dry run (exit 3 = would change)" | tr '\n' ' ')
    [[ $hosts == "sftp-a sftp-b " ]] || fail "check mode did not report apply as changed on both hosts (got: '$hosts')"
    for l in "${LABELS[@]}"; do
        [[ $(recap check "$l" changed) == 1 ]] || fail "$l: check mode reported $(recap check "$l" changed) changes, not 1 (apply)"
        guest_use "$l"
        in_guest id bob >/dev/null 2>&1 && fail "$l: check mode created bob"
        etc_sums >"$work/after-$l"
        diff "$work/before-$l" "$work/after-$l" >&2 || fail "$l: check mode changed files"
    done
    grep -A3 '^TASK \[sftpctl : Apply, dry run' "$work/check.out" | grep -E '^(changed|ok)' | sed 's/^/  | /'
}

# A config with a key sftpctl does not know fails the run and leaves every host's config as it
# was; a good change is written, restarts the watcher (it reads the config), and init, whose
# files do not depend on mail.from, reports no change.
s_config_change() {
    local l pids=()
    sed "s|^sftpctl_users_file: .*|sftpctl_users_file: $work/users.toml|" "$work/vars.yml" >"$work/vars.good"
    cp "$work/vars.good" "$work/vars.yml"
    sed -i 's|^  mail:$|  no_such_key: 1\n  mail:|' "$work/vars.yml"
    for l in "${LABELS[@]}"; do guest_use "$l"; etc_sums >"$work/before-$l"; done
    if (play bad-config) >/dev/null 2>&1; then fail "a config with an unknown key was accepted"; fi
    grep_all 'unknown field `no_such_key`' "$work/bad-config.out" || fail "sftpctl's message is not in the output: $(tail -20 "$work/bad-config.out")"
    echo "  refused: $(grep -o 'unknown field `no_such_key`[^"]*' "$work/bad-config.out" | head -1)"
    for l in "${LABELS[@]}"; do
        guest_use "$l"
        etc_sums >"$work/after-$l"
        diff "$work/before-$l" "$work/after-$l" >&2 || fail "$l: the bad config changed files"
        pids+=("$(in_guest systemctl show -p MainPID --value sftpctl-watch.service)")
    done
    sed 's|^    from: .*|    from: "other reports <other@example.org>"|' "$work/vars.good" >"$work/vars.yml"
    play config-change
    local i hosts
    for task in "Write the config from sftpctl_config" "Restart the watcher"; do
        hosts=$(awk -v t="RUNNING HANDLER [sftpctl : $task]" 'index($0, t) == 1 { on = 1; next } index($0, "TASK [") == 1 || index($0, "RUNNING HANDLER [") == 1 { on = 0 } on && /^changed: \[/ { sub(/^changed: \[/, ""); sub(/\].*/, ""); print }' "$work/config-change.out" | sort | tr '\n' ' ')
        [[ $task == Restart* ]] || hosts=$(changed_in_task config-change "$task" | tr '\n' ' ')
        [[ $hosts == "sftp-a sftp-b " ]] || fail "'$task' changed on '$hosts', not on both"
    done
    [[ -z $(changed_in_task config-change Init) ]] || fail "init ran for a mail.from change"
    for i in 0 1; do
        l=${LABELS[i]}
        [[ $(recap config-change "$l" changed) == 2 ]] || fail "$l: $(recap config-change "$l" changed) changes, not 2 (config, watcher restart)"
        guest_use "$l"
        in_guest grep -qF 'from = "other reports <other@example.org>"' /etc/sftpctl/sftpctl.toml || fail "$l: the new mail.from is not written"
        watcher_restarted() { [[ $(in_guest systemctl show -p MainPID --value sftpctl-watch.service) != "${pids[i]}" ]]; }
        watcher_restarted && in_guest systemctl is-active --quiet sftpctl-watch.service || fail "$l: the watcher was not restarted"
    done
}

echo "fleet runs with Ansible: $("$playbook_bin" --version | sed -n 1p)"
step rootfs s_rootfs
needed
step network s_network
needed
step guests s_guests
needed
step boot s_boot
needed
step setup-files s_setup_files
needed
step template-escaping s_template_escaping
step example-inventory s_example_inventory
step check-mode-fresh-hosts s_check_fresh
step first-run s_first_run
needed
step hosts-set-up s_hosts_set_up
step second-run-no-change s_second_run
step check-mode s_check_mode
step config-change s_config_change
TIMINGS+=("whole-run $(elapsed "$run_start") -")
if summary; then
    echo "PASS: fleet runs with Ansible"
else
    exit 1
fi
