#!/usr/bin/env bash
# The Debian package under a real systemd: boots a minimal Debian 12 root with systemd as
# PID 1 in a container and runs the package through install, start, status, reloads good and
# refused, a refused restart, the watchdog, two services on one VIP, the sandbox's rating,
# an upgrade, stop, remove and purge, asserting at each step what systemd reports.
#   deploy/systemd-test.sh PACKAGE.deb
# A shell script beside package.sh, not an XCTest: it needs the .deb that package.sh builds
# (a release build of several minutes, which CI makes once for both), and everything it
# does is systemctl, apt and journalctl inside the container.
#
# The root is debootstrap --variant=minbase from the Debian mirror apt uses here, with only
# the package's dependencies, systemd and iproute2 (no procps: reload must not need it); it is
# cached in /var/cache/penha-ci, keyed by a hash of that list. The container has no network
# but a namespace this script makes and deletes, holding a veth pair for VRRP.
# Needs root; skips when not root unless PENHA_REQUIRE_NETNS=1.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    if [ "${PENHA_REQUIRE_NETNS:-}" = 1 ]; then
        echo "systemd-test: PENHA_REQUIRE_NETNS=1 but not running as root" >&2
        exit 1
    fi
    echo "systemd-test: skipped: needs root (debootstrap, systemd-nspawn, a network namespace); CI runs it as root"
    exit 0
fi
deb=$(realpath "${1:?usage: deploy/systemd-test.sh PACKAGE.deb}")
for tool in debootstrap systemd-nspawn nsenter ip; do
    command -v "$tool" >/dev/null || { echo "systemd-test: $tool is needed (apt-get install debootstrap systemd-container iproute2)" >&2; exit 2; }
done
started=$SECONDS

# --- the root, cached ---------------------------------------------------------------------
suite=bookworm
packages="systemd,systemd-sysv,dbus,iproute2,libssl3,libnl-3-200,libnl-route-3-200,libbpf1"
mirror=$({ grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources || true; grep -hs '^deb ' /etc/apt/sources.list || true; } \
    | awk '$2 !~ /security/ { print $2; exit }')
mirror=${mirror:-http://deb.debian.org/debian}
cache=/var/cache/penha-ci
# The key names what the image holds: the list and the two changes made to it below.
key=$(echo "$suite minbase $packages no-sources no-getty" | sha256sum | cut -c1-16)
image="$cache/$suite-$key"
if [ ! -d "$image" ]; then
    echo "==> debootstrap --variant=minbase $suite from $mirror (cached as $image)"
    mkdir -p "$cache"
    rm -rf "$image.partial"
    debootstrap --variant=minbase --include="$packages" "$suite" "$image.partial" "$mirror" > "$cache/debootstrap.log" 2>&1 \
        || { tail -n 20 "$cache/debootstrap.log" >&2; exit 1; }
    # Nothing from outside once built: no mirror to reach, no login prompt to wait on.
    rm -f "$image.partial/etc/apt/sources.list"
    ln -sf /dev/null "$image.partial/etc/systemd/system/console-getty.service"
    mv "$image.partial" "$image"
fi

work=$(mktemp -d /var/tmp/penha-systemd.XXXXXX)
namespace="penha-ci-$$"
nspawn=""
cleanup() {
    if [ -n "$nspawn" ] && kill -0 "$nspawn" 2>/dev/null; then
        kill -TERM "$nspawn" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$nspawn" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$nspawn" 2>/dev/null || true
        wait "$nspawn" 2>/dev/null || true
    fi
    ip netns delete "$namespace" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
cp -a "$image" "$work/root"
cp "$deb" "$work/root/root/penha.deb"

# --- the network: a namespace of its own, a veth pair for VRRP -----------------------------
ip netns add "$namespace"
ip -n "$namespace" link set lo up
ip -n "$namespace" link add v0 type veth peer name v1
ip -n "$namespace" address add 192.0.2.1/24 dev v0
ip -n "$namespace" address add 192.0.2.2/24 dev v1
ip -n "$namespace" link set v0 up
ip -n "$namespace" link set v1 up

# --- boot ----------------------------------------------------------------------------------
# CAP_NET_ADMIN for the VIP: nspawn grants it with --private-network, not with a namespace given.
systemd-nspawn --quiet -D "$work/root" -b --register=no --keep-unit --network-namespace-path="/run/netns/$namespace" \
    --capability=CAP_NET_ADMIN --machine=penha-ci < /dev/null > "$work/console.log" 2>&1 &
nspawn=$!
# The container's PID 1 is nspawn's child that runs systemd (a first child of its own exits).
leader=""
for _ in $(seq 100); do
    for child in $(cat "/proc/$nspawn/task/$nspawn/children" 2>/dev/null); do
        [ "$(cat "/proc/$child/comm" 2>/dev/null)" = systemd ] && leader=$child
    done
    [ -n "$leader" ] && break
    sleep 0.2
done
[ -n "$leader" ] || { cat "$work/console.log" >&2; echo "systemd-test: the container did not start" >&2; exit 1; }

# A command inside the container, as a root shell there would run it.
inside() {
    nsenter -t "$leader" -m -u -i -n -p -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"
}
state=""
for _ in $(seq 150); do
    state=$(inside systemctl is-system-running 2>/dev/null || true)
    case "$state" in running|degraded) break ;; esac
    sleep 0.2
done
case "$state" in running|degraded) ;; *) cat "$work/console.log" >&2; echo "systemd-test: boot did not finish ($state)" >&2; exit 1 ;; esac
echo "==> booted $(inside systemctl --version | head -n 1) as PID 1 in $((SECONDS - started)) s"

# --- assertions ----------------------------------------------------------------------------
passed=0
failed=0
pass() { passed=$((passed + 1)); echo "  ok: $1"; }
fail() {
    failed=$((failed + 1))
    echo "  FAILED: $1" >&2
    inside journalctl --no-pager -n 30 -u 'penha*' >&2 || true
}
# check DESCRIPTION COMMAND...: the command succeeds.
check() {
    local what=$1
    shift
    if "$@"; then pass "$what"; else fail "$what"; fi
}
# wait_for DESCRIPTION COMMAND...: the command succeeds within 20 seconds.
wait_for() {
    local what=$1
    shift
    for _ in $(seq 100); do
        if "$@" >/dev/null 2>&1; then pass "$what"; return; fi
        sleep 0.2
    done
    fail "$what (not within 20 s)"
}
property() { inside systemctl show -P "$2" "$1"; }
# A command whose output is shown only when it fails.
quietly() {
    local out
    out=$("$@" 2>&1) || { echo "$out" >&2; return 1; }
}
holds_vip() { inside ip -4 -o address show dev v0 | grep -q ' 192\.0\.2\.10/'; }
# An HTTP request to ADDRESS PORT from inside (bash's /dev/tcp: the root has no curl); prints the answer.
http_get() {
    inside timeout 5 bash -c "exec 3<>/dev/tcp/$1/$2 && printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3 && cat <&3"
}
serves() { http_get "$1" "$2" | grep -q '^penha_connections_total'; }
conf() { inside tee "/etc/penha/$1.conf" > /dev/null; }

# Conditions the steps check or wait for.
status_shows_master() { inside systemctl status penha | grep -q 'Status: "MASTER'; }
watchdog_armed() { [ "$(property penha WatchdogUSec)" = 30s ] && [ "$(property penha WatchdogTimestampMonotonic)" -gt 0 ]; }
runs_as_penha() {
    [ "$(property penha User)" = penha ] && ! inside grep -q '^Uid:[[:space:]]*0[[:space:]]' "/proc/$(property penha MainPID)/status"
}
restarted() { [ "$(property penha MainPID)" != "$pid" ] && [ "$(property penha@tls MainPID)" != "$tls" ]; }
unchanged() { [ "$(inside systemctl is-active penha)" = active ] && [ "$(property penha MainPID)" = "$pid" ]; }
blacklist_is() { [ "$(inside penha ctl /run/penha/penha.sock blacklist)" = "$1" ]; }
journal_err_has() { inside journalctl -u penha -p err -o cat | grep -qF "$1"; }
status_has() { grep -qF "$1" <<< "$(inside systemctl status --full penha || true)"; }
no_vip() { ! holds_vip; }
failed_once() { [ "$(inside systemctl is-active penha || true)" = failed ] && [ "$(property penha NRestarts)" = 0 ]; }
refused_with() { [ "$status" -ne 0 ] && grep -qF "$1" <<< "$output"; }
all_stopped() { [ "$(inside systemctl is-active penha penha@tls | sort -u)" = inactive ]; }
no_penha_process() { ! inside sh -c 'grep -qx penha /proc/[0-9]*/comm 2>/dev/null'; }
# What the package made goes; the operator's own files stay.
purged() {
    inside sh -c '! ls /etc/systemd/system/*.wants/penha* 2>/dev/null && ! test -e /etc/penha/penha.conf \
        && ! test -e /etc/penha/sync.key && ! test -e /var/log/penha && ! test -e /var/log/private/penha && test -s /etc/penha/tls.conf'
}
no_unit_files() { [ -z "$(inside systemctl list-unit-files --no-legend 'penha*' 2>/dev/null)" ]; }
frobnicate="unknown command 'frobnicate'"

# --- install -------------------------------------------------------------------------------
echo "==> install"
output=$(inside env DEBIAN_FRONTEND=noninteractive apt-get install -y -q /root/penha.deb 2>&1) || { echo "$output" >&2; exit 1; }
check "a first install with the sample says what to do" grep -q 'edit /etc/penha/penha.conf' <<< "$output"
check "and leaves the unit disabled" [ "$(inside systemctl is-enabled penha || true)" = disabled ]
check "and stopped, not failed" [ "$(inside systemctl is-active penha || true)" = inactive ]
check "the sync key: 64 hex digits, root's alone" \
    inside sh -c '[ "$(stat -c %a:%U /etc/penha/sync.key)" = 600:root ] && grep -qxE "[0-9a-f]{64}" /etc/penha/sync.key'
check "the man page is in section 8" inside test -s /usr/share/man/man8/penha.8.gz
check "the examples README names are installed" inside test -s /usr/share/doc/penha/examples/active-active-a.conf \
    -a -s /usr/share/doc/penha/examples/web.conf -a -s /usr/share/doc/penha/examples/node-b.conf
check "no procps: reload cannot lean on kill(1)" inside sh -c '! test -e /bin/kill && ! test -e /usr/bin/kill'

# --- start ---------------------------------------------------------------------------------
echo "==> start"
# Its own metrics on loopback are its server: a request to the VIP comes back as metrics.
conf penha <<'CONF'
listen 192.0.2.10:80
vrrp interface v0 vrid 51 priority 200 vip 192.0.2.10/24 advert 100ms
metrics 127.0.0.1:9101
server 0 address 127.0.0.1 port 9101
blacklist 30
sync listen 192.0.2.1:7000 peer 192.0.2.2:7000 key /etc/penha/sync.key
log /var/log/penha/penha.log
CONF
output=$(inside penha check -F /etc/penha/penha.conf 2>&1) || true
check "as root the check passes with no warning (the key is a credential, the log in LogsDirectory): $output" \
    [ "$output" = "configuration ok" ]
check "systemctl enable --now penha" inside systemctl enable --now penha
check "active" [ "$(inside systemctl is-active penha)" = active ]
check "as the dynamic user penha, not root" runs_as_penha
wait_for "VRRP master: the VIP is on v0" holds_vip
wait_for "systemctl status shows the role" status_shows_master
check "the VIP serves" serves 192.0.2.10 80
wait_for "the connection log is written under /var/log/penha" inside test -s /var/log/penha/penha.log
check "the directory the package made became the unit's (/var/log/private/penha)" inside test -L /var/log/penha
check "the watchdog is armed (WatchdogSec=30s)" watchdog_armed
pid=$(property penha MainPID)

# --- reload ---------------------------------------------------------------------------------
echo "==> reload"
inside sed -i 's/^blacklist 30$/blacklist 31/' /etc/penha/penha.conf
check "a good reload succeeds" inside systemctl reload penha
check "and applies" blacklist_is 31
echo frobnicate | inside tee -a /etc/penha/penha.conf > /dev/null
output=$(inside systemctl reload penha 2>&1) && status=0 || status=$?
check "a refused reload fails: $output" refused_with 'Job for penha.service failed'
check "and leaves penha running" unchanged
check "as it was" blacklist_is 31
check "the journal says why, at priority err" journal_err_has "reload failed, configuration unchanged: /etc/penha/penha.conf:8: $frobnicate"

# --- restart ---------------------------------------------------------------------------------
echo "==> restart"
inside sh -c 'penha check -F /etc/penha/penha.conf && systemctl restart penha' > /dev/null 2>&1 || true
check "check && restart refuses the broken file and keeps penha" unchanged
output=$(inside env DEBIAN_FRONTEND=noninteractive dpkg -i /root/penha.deb 2>&1) || true
check "an upgrade with the broken file says so" grep -q 'penha.service not restarted' <<< "$output"
check "and keeps penha running" unchanged
output=$(inside systemctl restart penha 2>&1) && status=0 || status=$?
check "a plain restart with the broken file fails" refused_with 'Job for penha.service failed'
sleep 3
check "once: failed, not restarted" failed_once
check "systemctl status shows the check's error" status_has "penha: /etc/penha/penha.conf:8: $frobnicate"
check "journalctl -p err has it" journal_err_has "penha: /etc/penha/penha.conf:8: $frobnicate"
check "the stopped master handed the VIP over" no_vip
inside sed -i '/^frobnicate$/d' /etc/penha/penha.conf
check "the fixed file starts" inside systemctl start penha
wait_for "master again" holds_vip

# --- two services on one VIP -----------------------------------------------------------------
echo "==> penha@tls beside penha"
conf tls <<'CONF'
listen 192.0.2.10:8443
freebind
server 0 address 127.0.0.1 port 9101
CONF
check "systemctl enable --now penha@tls" inside systemctl enable --now penha@tls
check "it serves the VIP penha holds" serves 192.0.2.10 8443
check "its reload is its own" inside systemctl reload penha@tls
check "each has its control socket" inside test -S /run/penha/penha.sock -a -S /run/penha/tls.sock
check "they share the user penha" [ "$(property penha@tls User)" = penha ]
check "penha status reads an instance's socket" quietly inside penha status -C /run/penha/tls.sock

# --- the sandbox -----------------------------------------------------------------------------
echo "==> systemd-analyze security"
exposure=$(inside systemd-analyze security penha 2>/dev/null | sed -n 's/.*Overall exposure level for penha.service: \([0-9.]*\).*/\1/p')
check "exposure $exposure is at most 3.0" awk -v e="$exposure" 'BEGIN { exit !(e != "" && e <= 3.0) }'

# --- stop, remove, purge -----------------------------------------------------------------------
echo "==> stop, remove, purge"
check "systemctl stop penha" inside systemctl stop penha
check "stopped: the VIP is handed over" no_vip
check "penha@tls runs on" [ "$(inside systemctl is-active penha@tls)" = active ]
inside systemctl start penha
wait_for "master again" holds_vip
pid=$(property penha MainPID)
tls=$(property penha@tls MainPID)
# A connection through the VIP held open across the upgrade, asking only after it (within the
# metrics server's 10 s for a request): answered only if the upgrade handed it over. Its server
# is a penha outside the units (its metrics), which the upgrade leaves alone.
inside systemd-run --quiet --unit=penha-ci-backend /usr/sbin/penha -f -C /run/penha-ci-backend.sock \
    -O "metrics 127.0.0.1:9102" 127.0.0.1:9998 127.0.0.1:9
inside sed -i 's/^server 0 address 127.0.0.1 port 9101$/server 0 address 127.0.0.1 port 9102/' /etc/penha/penha.conf
wait_for "a backend outside the units" serves 127.0.0.1 9102
check "penha takes it as its server" inside systemctl reload penha
inside rm -f /tmp/upgraded /tmp/held.out
inside bash -c 'exec 3<>/dev/tcp/192.0.2.10/80 || exit 1
    for _ in $(seq 80); do [ -e /tmp/upgraded ] && break; sleep 0.1; done
    printf "GET /metrics HTTP/1.0\r\n\r\n" >&3 && timeout 5 cat <&3 > /tmp/held.out' &
held=$!
sleep 0.5
inside env DEBIAN_FRONTEND=noninteractive dpkg -i /root/penha.deb > /dev/null 2>&1
inside touch /tmp/upgraded
wait "$held" || true
check "an upgrade starts a new process for each penha whose file passes" restarted
check "and they run" [ "$(inside systemctl is-active penha penha@tls | sort -u)" = active ]
check "it handed the connections over (SIGUSR2): one held through it is answered after it" \
    inside grep -q '^penha_connections_total' /tmp/held.out
wait_for "the old main processes are gone" inside sh -c "! test -e /proc/$pid && ! test -e /proc/$tls"
inside systemctl stop penha-ci-backend
wait_for "master again" holds_vip
check "apt-get remove penha" quietly inside env DEBIAN_FRONTEND=noninteractive apt-get remove -y -q penha
check "every penha stopped" all_stopped
check "no penha process left" no_penha_process
check "the VIP is not held from a deleted binary" no_vip
check "the key stays until purge" inside test -e /etc/penha/sync.key
check "apt-get purge penha" quietly inside env DEBIAN_FRONTEND=noninteractive apt-get purge -y -q penha
check "purged: no enable links, conffile, key or logs; the operator's tls.conf stays" purged
check "no unit left" no_unit_files

echo "==> install over a configuration put in place first"
inside cp /etc/penha/tls.conf /etc/penha/penha.conf
check "apt-get install keeping it (--force-confold, as configuration management does)" \
    quietly inside env DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o Dpkg::Options::=--force-confold /root/penha.deb
check "a configuration that passes is enabled and started" \
    [ "$(inside systemctl is-enabled penha)/$(inside systemctl is-active penha)" = enabled/active ]
check "apt-get purge penha" quietly inside env DEBIAN_FRONTEND=noninteractive apt-get purge -y -q penha

echo "systemd-test: $((SECONDS - started)) s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
