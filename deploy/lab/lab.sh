#!/usr/bin/env bash
# A two-node penha pair, a client and backends in network namespaces on one machine; and an
# ECMP lab: three penha nodes announcing one VIP by BGP to a router (ecmp-*).
#
#   lab.sh up NAME     build the lab NAME (namespaces NAME-a, NAME-b: the nodes; NAME-c: the
#                      client, which also holds the bridge that joins them)
#   lab.sh down NAME   stop everything in it and delete it
#   lab.sh probe NAME ADDRESS PORT SECONDS [PERIOD_MS [TIMEOUT_MS]]
#                      from the client, a new connection every PERIOD_MS (20) for SECONDS (at most
#                      60), each given TIMEOUT_MS (200); prints "MILLISECONDS ANSWER" per attempt,
#                      "none" for a failure
#   lab.sh fast [TRIALS]
#                      build penha and measure, TRIALS times each (default 5, at most 20), a penha
#                      pair and a keepalived pair at advert 10 ms: each node's CPU over 4 s idle,
#                      then the gap a dead master host leaves (see RESULTS.md); PENHA=BINARY
#                      measures that binary instead of building, BACKUP_PRIORITY=P gives node b
#                      priority P (default 100; node a has 254)
#   lab.sh demo        build penha, run a pair sharing a VIP, kill the master and print how
#                      long the VIP was unreachable; cleans up after itself
#   lab.sh ecmp-up NAME [off]
#                      the ECMP lab NAME (issue 21): a router NAME-r running BIRD 2 that spreads
#                      the VIP 203.0.113.10 over the nodes announcing it (multipath,
#                      fib_multipath_hash_policy=1), three nodes NAME-n1..n3 (192.0.2.1-3 on a
#                      bridge in the router, the VIP on lo) each running BIRD, an echo backend on
#                      127.0.0.1:9000 and penha with deploy/examples/ecmp-node.conf (with "off":
#                      without its second_chance), a client NAME-c (198.51.100.2 and the
#                      sources 198.51.100.10-209) and NAME-s, three servers on the bridge that
#                      the nodes can share (192.0.2.50-52 port 9000, each answering its name
#                      and the node that asked); PENHA=BINARY runs that binary instead of building
#   lab.sh ecmp-down NAME
#                      stop everything in it and delete it
#   lab.sh ecmp-measure [STREAMS [FLOWS]]
#                      in a fresh ECMP lab per trial, with and without second_chance: the spread
#                      of FLOWS connections (default 3000, at most 5000) over the three nodes; then
#                      STREAMS (default 1000, at most 2000) long-lived byte-checked connections and
#                      a new connection every 5 ms through 3 -> 2 (SIGTERM: withdraw and drain),
#                      2 -> 3 (a node joins) and the death of a node (kill -9 of its processes,
#                      its link down); then, per change (and none) and with maglev, round-robin
#                      or round-robin with sync among the nodes over three shared servers, the
#                      share of 200 clients (one connection each before and after the change)
#                      that reached the same server; see
#                      RESULTS.md. PENHA=BINARY as for ecmp-up
#   lab.sh switchover-measure [TRIALS [REPEATS]]
#                      issue 20's side by side, TRIALS times (default 3, at most 10): in a fresh
#                      two-node lab per run, a penha pair without second_chance (as before issue
#                      20), the same with second_chance and drain 20, and keepalived moving the
#                      VIP with HAProxy (TCP mode) serving it, advert 100 ms, node a master; from
#                      the client 200 long-lived connections echoing checked lines, 200 keep-alive
#                      HTTP/1.1 sessions (a request every 100 ms, each answer checked) and a new
#                      connection every 5 ms given 10 ms to connect; events: SIGTERM on the master
#                      (keepalived: its keepalived, and HAProxy's soft stop), its priority lowered
#                      below the backup's (penha: on the control socket; keepalived: the file and
#                      SIGHUP), and a local step REPEATS times on the master (default 10, at most
#                      50; penha: SIGTERM, wait for the exit, start again, as systemctl restart;
#                      HAProxy: haproxy -x SOCKET -sf OLD), and an upgrade REPEATS times on the
#                      master (penha upgrade -C SOCKET; HAProxy: -x -sf again). Prints per run
#                      the connections alive at the end, reset and otherwise lost, the bytes
#                      checked, the failed probes and the longest gap between two probes that
#                      connected, when the old process exited and how many upgrades failed
#                      (with why); see RESULTS.md. Builds penha with -c release unless
#                      PENHA=BINARY; HAPROXY_RELOAD=sf reloads without -x; EVENTS="upgrade"
#                      and SETUPS="penha penha-sc" run only those (words of sigterm priority
#                      restart upgrade, and of penha penha-sc keepalived); needs keepalived and
#                      haproxy (Debian's)
#
# Addresses come from the documentation ranges only and exist only inside the namespaces:
#   node a 192.0.2.1 2001:db8::1, node b 192.0.2.2 2001:db8::2, client 192.0.2.100 2001:db8::100,
#   the VIP in the demo 192.0.2.10. Each node runs a backend on 127.0.0.1:8080 that answers
#   "node-a" or "node-b". Needs root (or CAP_NET_ADMIN), iproute2 and python3; the ECMP lab also
#   BIRD 2 (Debian's bird2) and ss. The switchover lab adds a server on 127.0.0.1:9000 in each
#   node (echo, or HTTP/1.1 keep-alive for connections that start with "GET ").
set -euo pipefail

backend_program='
import socket, sys
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", 8080))
server.listen(128)
while True:
    connection, _ = server.accept()
    try:
        connection.sendall(sys.argv[1].encode() + b"\n")
    finally:
        connection.close()
'

up() {
    local name=$1 index=1 node
    for node in a b c; do
        ip netns add "$name-$node"
        ip -n "$name-$node" link set lo up
        # No duplicate address detection: a tentative link-local address cannot be bound yet,
        # and VRRP over IPv6 speaks from it (RFC 5798 section 5.1.2.1).
        ip netns exec "$name-$node" sysctl -qw net.ipv6.conf.default.accept_dad=0 net.ipv6.conf.all.accept_dad=0
    done
    ip -n "$name-c" link add br0 type bridge mcast_snooping 0
    ip -n "$name-c" link set br0 up
    # Where br_netfilter is loaded (Docker loads it), every frame on the bridge would go
    # through iptables too, and the sender of each advert pays for it: no switch does that.
    ip netns exec "$name-c" sysctl -qw net.bridge.bridge-nf-call-iptables=0 net.bridge.bridge-nf-call-ip6tables=0 \
        net.bridge.bridge-nf-call-arptables=0 2>/dev/null || true
    ip -n "$name-c" addr add 192.0.2.100/24 dev br0
    ip -n "$name-c" addr add 2001:db8::100/64 dev br0 nodad
    for node in a b; do
        # veth names are global until moved: keep them short and unique to this lab (a
        # subshell's own process id: a deleted namespace's veths go away asynchronously).
        local inner="v$BASHPID$node" outer="v$BASHPID${node}x"
        ip link add "$inner" type veth peer name "$outer"
        ip link set "$inner" netns "$name-$node"
        ip link set "$outer" netns "$name-c"
        ip -n "$name-$node" link set "$inner" name eth0
        ip -n "$name-$node" addr add "192.0.2.$index/24" dev eth0
        ip -n "$name-$node" addr add "2001:db8::$index/64" dev eth0 nodad
        ip -n "$name-$node" link set eth0 up
        ip -n "$name-c" link set "$outer" master br0
        ip -n "$name-c" link set "$outer" up
        setsid ip netns exec "$name-$node" python3 -c "$backend_program" "node-$node" </dev/null >/dev/null 2>&1 &
        disown
        index=$((index + 1))
    done
    # Wait (bounded) until both backends answer.
    for node in a b; do
        for _ in $(seq 50); do
            ip netns exec "$name-$node" python3 -c 'import socket; socket.create_connection(("127.0.0.1", 8080), 1)' \
                2>/dev/null && break
            sleep 0.1
        done
    done
}

# Whether the namespace NAME exists. (awk reads the whole list: `grep -q` could stop early and,
# with pipefail, ip's SIGPIPE would make it look missing.)
namespace_exists() {
    ip netns list 2>/dev/null | awk -v name="$1" '$1 == name { found = 1 } END { exit !found }'
}

down() {
    local name=$1 node
    for node in a b c; do
        if namespace_exists "$name-$node"; then
            ip netns pids "$name-$node" | xargs -r kill -9 2>/dev/null || true
            ip netns del "$name-$node"
        fi
    done
}

# Prints which node answers on ADDRESS:PORT from the client, or "none".
ask() {
    local name=$1 address=$2 port=$3
    ip netns exec "$name-c" python3 -c '
import socket, sys
try:
    print(socket.create_connection((sys.argv[1], int(sys.argv[2])), 0.2).recv(64).decode().strip() or "none")
except OSError:
    print("none")
' "$address" "$port"
}

probe() {
    local name=$1 address=$2 port=$3 seconds=$4 period=${5:-20} timeout=${6:-200}
    ip netns exec "$name-c" python3 -c '
import socket, sys, time
address, port, seconds = sys.argv[1], int(sys.argv[2]), min(float(sys.argv[3]), 60.0)
# Bounded: a period of 1 ms to 1 s, a timeout of 1 ms to 1 s.
period = min(max(float(sys.argv[4]), 1.0), 1000.0) / 1000
timeout = min(max(float(sys.argv[5]), 1.0), 1000.0) / 1000
start, slot = time.monotonic(), 0
while time.monotonic() - start < seconds:
    wait = start + slot * period - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    began = time.monotonic()
    try:
        with socket.create_connection((address, port), timeout) as connection:
            connection.settimeout(timeout)
            answer = connection.recv(64).decode().strip() or "none"
    except OSError:
        answer = "none"
    print(f"{(began - start) * 1000:.0f} {answer}", flush=True)
    # A slow attempt skips the slots it overran: one connection at a time, one per period at most.
    slot = max(slot + 1, int((time.monotonic() - start) / period) + 1)
' "$address" "$port" "$seconds" "$period" "$timeout"
}

demo() {
    cd "$(dirname "$0")/../.."
    echo "==> building penha"
    swift build 2>&1 | tail -n 1
    local penha name=penha-lab-$$ pids=()
    penha="$(swift build --show-bin-path)/penha"
    trap 'for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; down '"$name" EXIT
    up "$name"
    local vrrp="vrrp interface eth0 vrid 51 vip 192.0.2.10/24 advert 100ms"
    echo "==> node a: penha with '$vrrp priority 200'"
    echo "==> node b: penha with '$vrrp priority 100'"
    ip netns exec "$name-a" "$penha" -f -C "/tmp/$name-a.sock" -O "$vrrp priority 200" 192.0.2.10:80 127.0.0.1:8080 \
        2>"/tmp/$name-a.log" &
    local master=$!
    pids+=($!)
    ip netns exec "$name-b" "$penha" -f -C "/tmp/$name-b.sock" -O "$vrrp priority 100" 192.0.2.10:80 127.0.0.1:8080 \
        2>"/tmp/$name-b.log" &
    pids+=($!)
    disown -a
    sleep 1.5
    echo "  the client reaches the VIP at: $(ask "$name" 192.0.2.10 80)"
    for node in a b; do
        echo "==> penha status on node $node"
        "$penha" status -C "/tmp/$name-$node.sock" | sed 's/^/  /'
    done
    echo "==> kill -9 the master (node a) and probe the VIP every 20 ms"
    local start end answer
    kill -9 "$master"
    start=$(date +%s.%N)
    for _ in $(seq 250); do
        answer=$(ask "$name" 192.0.2.10 80)
        [ "$answer" = node-b ] && break
        sleep 0.02
    done
    end=$(date +%s.%N)
    echo "  the VIP answered from $answer after $(python3 -c "print(f'{$end - $start:.2f}')") s"
    echo "  (advert 100 ms: Master_Down_Interval for priority 100 is 3 x 0.1 s + 0.06 s skew)"
    echo "==> node b's log"
    sed 's/^/  /' "/tmp/$name-b.log"
    rm -f "/tmp/$name-a.log" "/tmp/$name-b.log" "/tmp/$name-a.sock" "/tmp/$name-b.sock"
}

# CPU time (user and system, every thread) the processes PIDS have used so far, in
# milliseconds, from the scheduler's nanosecond counts: /proc/PID/stat counts 10 ms ticks,
# too coarse for the 10 ms that 0.25% of a core over 4 s allows.
cpu_milliseconds() {
    local pid
    for pid; do cat /proc/"$pid"/task/*/schedstat; done | awk '{ sum += $1 } END { printf "%.1f", sum / 1e6 }'
}

# From probe output on stdin: milliseconds from the last attempt node a answered to the
# first node b answered after it, or "none".
gap_milliseconds() {
    python3 -c '
import sys
attempts = [line.split() for line in sys.stdin if len(line.split()) == 2]
last_a = None
for milliseconds, answer in attempts:
    if answer == "node-a":
        last_a = int(milliseconds)
    elif answer == "node-b" and last_a is not None:
        print(int(milliseconds) - last_a)
        break
else:
    print("none")
'
}

# One node of the keepalived pair: keepalived moves the VIP, a VRRP-less proxy on every
# address serves it: penha (to 127.0.0.1:8080), or with PROXY "haproxy" HAProxy (to
# 127.0.0.1:9000, start_haproxy). ADVERT: keepalived's advert_int (0.01 unless given).
# Prints the process ids whose CPU counts (keepalived and its VRRP child).
start_keepalived() {
    local name=$1 node=$2 priority=$3 penha=$4 advert=${5:-0.01} proxy=${6:-penha} directory="/tmp/$1-$2"
    mkdir -p "$directory"
    cat >"$directory/keepalived.conf" <<CONF
global_defs {
    router_id $name-$node
    vrrp_version 3
}
vrrp_instance VI_1 {
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority $priority
    advert_int $advert
    virtual_ipaddress {
        192.0.2.10/24
    }
}
CONF
    if [ "$proxy" = haproxy ]; then
        start_haproxy "$name" "$node" >/dev/null
    else
        setsid ip netns exec "$name-$node" "$penha" -f -C "$directory/penha.sock" 0.0.0.0:80 127.0.0.1:8080 \
            </dev/null >/dev/null 2>&1 &
    fi
    setsid ip netns exec "$name-$node" keepalived --dont-fork --log-console --no-syslog --vrrp \
        --use-file "$directory/keepalived.conf" --pid "$directory/keepalived.pid" \
        --vrrp_pid "$directory/vrrp.pid" </dev/null >"$directory/log" 2>&1 &
    local parent=$!
    for _ in $(seq 50); do
        [ -s "$directory/vrrp.pid" ] && break
        sleep 0.1
    done
    echo "$parent $(cat "$directory/vrrp.pid" 2>/dev/null)"
}

# HAProxy on node NODE of lab NAME, TCP mode, every address port 80 to 127.0.0.1:9000; with
# OLD (a process id), a reload: the new process takes the listeners over from the old one's
# stats socket (-x, so that no connection waiting to be accepted is lost; not with
# HAPROXY_RELOAD=sf) and tells it to finish its connections and exit (-sf). Waits (at most
# 5 s) until it serves the stats socket and port 80; prints its process id and writes it to
# haproxy.pid.
start_haproxy() {
    local name=$1 node=$2 old=${3:-} directory="/tmp/$1-$2"
    cat >"$directory/haproxy.cfg" <<CONF
global
    stats socket $directory/haproxy.sock mode 600 level admin expose-fd listeners
    maxconn 4000
defaults
    mode tcp
    timeout connect 2s
    timeout client 120s
    timeout server 120s
frontend vip
    bind :80
    default_backend local
backend local
    server local 127.0.0.1:9000
CONF
    local reload=()
    [ -n "$old" ] && reload=(-sf "$old")
    # HAPROXY_RELOAD=sf: without -x, as before HAProxy 1.8.
    [ -n "$old" ] && [ "${HAPROXY_RELOAD:-}" != sf ] && reload=(-x "$directory/haproxy.sock" "${reload[@]}")
    setsid ip netns exec "$name-$node" haproxy -db -f "$directory/haproxy.cfg" "${reload[@]}" \
        </dev/null >>"$directory/haproxy.log" 2>&1 &
    local pid=$!
    for _ in $(seq 50); do
        [[ "$(ip netns exec "$name-$node" ss -Hxl)" == *"$directory/haproxy.sock"* ]] &&
            [[ "$(ip netns exec "$name-$node" ss -Htlnp '( sport = :80 )')" == *"pid=$pid,"* ]] && break
        sleep 0.1
    done
    echo "$pid" >"$directory/haproxy.pid"
    echo "$pid"
}

# The vrrp line of the penha pair's nodes, with PRIORITY, ADVERT (10ms unless given) and WORDS
# (more of the line: "second_chance 192.0.2.2").
penha_vrrp_line() {
    echo "vrrp interface eth0 vrid 51 vip 192.0.2.10/24 advert ${2:-10ms} priority $1${3:+ $3}"
}

# One node of the penha pair, to SERVER (127.0.0.1:8080 unless given), with the vrrp line of
# penha_vrrp_line PRIORITY ADVERT WORDS and, with DRAIN, "drain DRAIN"; its log goes on
# after a restart. Prints penha's process id.
start_penha() {
    local name=$1 node=$2 priority=$3 penha=$4 advert=${5:-10ms} server=${6:-127.0.0.1:8080} words=${7:-} drain=${8:-}
    local options=(-O "$(penha_vrrp_line "$priority" "$advert" "$words")")
    [ -n "$drain" ] && options+=(-O "drain $drain")
    setsid ip netns exec "$name-$node" "$penha" -f -C "/tmp/$name-$node.sock" "${options[@]}" \
        192.0.2.10:80 "$server" </dev/null >/dev/null 2>>"/tmp/$name-$node.log" &
    echo $!
}

# One trial of `fast` in lab NAME: prints "GAP_MS CPU_A_MS CPU_B_MS".
fast_trial() {
    local kind=$1 name=$2 penha=$3 pids_a pids_b
    up "$name"
    pids_a=$("start_$kind" "$name" a 254 "$penha")
    pids_b=$("start_$kind" "$name" b "$backup_priority" "$penha")
    for _ in $(seq 50); do
        [ "$(ask "$name" 192.0.2.10 80)" = node-a ] && break
        sleep 0.1
    done
    sleep 1
    local before_a before_b
    before_a=$(cpu_milliseconds $pids_a)
    before_b=$(cpu_milliseconds $pids_b)
    sleep 4
    local cpu_a cpu_b
    cpu_a=$(awk "BEGIN { print $(cpu_milliseconds $pids_a) - $before_a }")
    cpu_b=$(awk "BEGIN { print $(cpu_milliseconds $pids_b) - $before_b }")
    # A dead host: its link goes down, so it sends nothing and answers nothing (a killed
    # process would leave a kernel that still answers ARP for the VIP and resets connections).
    probe "$name" 192.0.2.10 80 1.5 5 10 >"/tmp/$name.probe" &
    local prober=$!
    sleep 0.5
    ip -n "$name-a" link set eth0 down
    wait "$prober"
    echo "$(gap_milliseconds <"/tmp/$name.probe") $cpu_a $cpu_b"
    rm -rf "/tmp/$name.probe" "/tmp/$name-a" "/tmp/$name-b" /tmp/"$name"-?.sock /tmp/"$name"-?.log
    down "$name"
}

fast() {
    local trials=${1:-5}
    [ "$trials" -ge 1 ] && [ "$trials" -le 20 ] || { echo "fast: TRIALS must be 1 to 20" >&2; exit 2; }
    local penha=${PENHA:-} name=penha-fast-$$ kind trial
    backup_priority=${BACKUP_PRIORITY:-100}
    [ "$backup_priority" -ge 1 ] && [ "$backup_priority" -le 253 ] || { echo "fast: BACKUP_PRIORITY must be 1 to 253" >&2; exit 2; }
    if [ -z "$penha" ]; then
        cd "$(dirname "$0")/../.."
        swift build 2>&1 | tail -n 1
        penha="$(swift build --show-bin-path)/penha"
    fi
    # One lab per trial: a deleted namespace's devices go away asynchronously.
    trap 'for kind in penha keepalived; do for trial in $(seq '"$trials"'); do down '"$name"'-$kind$trial; done; done
          rm -rf /tmp/'"$name"'*' EXIT
    echo "advert 10 ms, node a priority 254 (master), node b $backup_priority; probe every 5 ms, 10 ms connect timeout"
    echo "gap: last probe node a answered to the first node b answered after its link went down"
    # Alternately, so that both meet the same load on a shared machine; the load average
    # after each trial says how busy it was.
    for trial in $(seq "$trials"); do
        for kind in penha keepalived; do
            read -r gap cpu_a cpu_b < <(fast_trial "$kind" "$name-$kind$trial" "$penha")
            printf '%-10s trial %d: gap %4s ms; idle CPU over 4 s: a %5.1f ms (%.2f%%), b %5.1f ms (%.2f%%); load %s\n' \
                "$kind" "$trial" "$gap" "$cpu_a" "$(awk "BEGIN { print $cpu_a / 40 }")" \
                "$cpu_b" "$(awk "BEGIN { print $cpu_b / 40 }")" "$(cut -d' ' -f1 /proc/loadavg)"
        done
    done
}

# The ECMP lab (issue 21): addresses 192.0.2.0/24 between the router and the nodes,
# 198.51.100.0/24 between the router and the client, the VIP 203.0.113.10.
ecmp_vip=203.0.113.10
ecmp_sources=200

echo_program='
import socket, threading
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", 9000))
server.listen(4096)
def serve(connection):
    with connection:
        while True:
            data = connection.recv(65536)
            if not data:
                return
            connection.sendall(data)
while True:
    connection, _ = server.accept()
    threading.Thread(target=serve, args=(connection,), daemon=True).start()
'

# The shared servers: 192.0.2.50-52 port 9000 each answer "server-50 NODE" (NODE: the
# address of the penha that connected) and close.
shared_servers_program='
import selectors, socket
selector = selectors.DefaultSelector()
for last in (50, 51, 52):
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("192.0.2.%d" % last, 9000))
    server.listen(1024)
    selector.register(server, selectors.EVENT_READ, b"server-%d" % last)
while True:
    for key, _ in selector.select():
        connection, peer = key.fileobj.accept()
        with connection:
            try:
                connection.sendall(key.data + b" " + peer[0].encode() + b"\n")
            except OSError:
                pass
'

# Short BGP timers and BFD at 100 ms x 3, as the README's example: a dead node is withdrawn
# in about 0.3 s rather than the hold time's 3 s.
ecmp_bgp_timers='hold time 3; keepalive time 1; connect retry time 1; connect delay time 1; error wait time 1, 2; bfd on;'
ecmp_bfd='protocol bfd { interface "*" { min rx interval 100 ms; min tx interval 100 ms; multiplier 3; }; }'

# BIRD in namespace NAMESPACE with CONFIGURATION, its files in DIRECTORY.
start_bird() {
    local namespace=$1 directory=$2 configuration=$3
    mkdir -p "$directory"
    printf 'log "%s/bird.log" all;\n%s\n' "$directory" "$configuration" >"$directory/bird.conf"
    setsid ip netns exec "$namespace" bird -f -c "$directory/bird.conf" -s "$directory/bird.ctl" -P "$directory/bird.pid" \
        </dev/null >/dev/null 2>&1 &
}

# penha on node NUMBER of lab NAME with deploy/examples/ecmp-node.conf, without its
# second_chance when SECOND_CHANCE is "off"; with SELECTION (maglev, roundrobin or sync:
# round-robin with the client table synced among the three nodes), over the three shared
# servers instead of the node's echo backend, choosing by SELECTION.
# Prints its process id.
start_ecmp_penha() {
    local name=$1 number=$2 second_chance=$3 penha=$4 selection=${5:-} directory="/tmp/$1/n$2"
    local example
    example="$(cd "$(dirname "$0")/../examples" && pwd)/ecmp-node.conf"
    if [ "$second_chance" = off ]; then
        sed 's/ interface eth0 second_chance .*//' "$example" >"$directory/penha.conf"
    else
        cp "$example" "$directory/penha.conf"
    fi
    if [ -n "$selection" ]; then
        sed -i '/^server 0 /d' "$directory/penha.conf"
        # roundrobin is pen's default: a new client to the next server, a returning one to
        # the server in this node's client table.
        printf 'server %d address 192.0.2.%d port 9000\n' 0 50 1 51 2 52 >>"$directory/penha.conf"
        if [ "$selection" = maglev ]; then
            echo maglev >>"$directory/penha.conf"
        elif [ "$selection" = sync ]; then
            [ -e "/tmp/$name/sync.key" ] || (umask 077; od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"/tmp/$name/sync.key")
            echo "sync listen 192.0.2.$number:7000 $(printf 'peer 192.0.2.%d:7000 ' $(seq 3 | grep -vx "$number"))key /tmp/$name/sync.key" \
                >>"$directory/penha.conf"
        fi
    fi
    setsid ip netns exec "$name-n$number" "$penha" -f -F "$directory/penha.conf" -C "$directory/penha.sock" \
        </dev/null >/dev/null 2>>"$directory/penha.log" &
    echo $!
}

# The addresses of the nodes the router's kernel routes the VIP to, one a line.
ecmp_nexthops() {
    ip -n "$1-r" route show "$ecmp_vip/32" | grep -o 'via 192\.0\.2\.[0-9]*' | sort -u || true
}

# Waits (at most SECONDS) until the router routes the VIP over COUNT nodes; fails otherwise.
ecmp_wait_nexthops() {
    local name=$1 count=$2 seconds=$3
    for _ in $(seq $((seconds * 10))); do
        [ "$(ecmp_nexthops "$name" | wc -l)" -eq "$count" ] && return 0
        sleep 0.1
    done
    echo "ecmp: the router has not $count nexthops after $seconds s: $(ecmp_nexthops "$name" | tr '\n' ' ')" >&2
    return 1
}

# The topology, BIRDs and backends of lab NAME; no penha yet.
ecmp_build() {
    local name=$1 part number
    for part in r c n1 n2 n3 s; do
        ip netns add "$name-$part"
        ip -n "$name-$part" link set lo up
        mkdir -p "/tmp/$name/$part"
    done
    ip netns exec "$name-r" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.fib_multipath_hash_policy=1
    ip netns exec "$name-r" sysctl -qw net.bridge.bridge-nf-call-iptables=0 2>/dev/null || true
    ip -n "$name-r" link add br0 type bridge
    ip -n "$name-r" addr add 192.0.2.254/24 dev br0
    ip -n "$name-r" link set br0 up
    for part in c n1 n2 n3 s; do
        # veth names are global until moved: short and unique to this lab.
        local inner="v$BASHPID$part" outer="v$BASHPID${part}x"
        ip link add "$inner" type veth peer name "$outer"
        ip link set "$inner" netns "$name-$part"
        ip link set "$outer" netns "$name-r"
        ip -n "$name-$part" link set "$inner" name eth0
        ip -n "$name-$part" link set eth0 up
        [ "$part" = c ] || ip -n "$name-r" link set "$outer" master br0
        ip -n "$name-r" link set "$outer" up
        [ "$part" = c ] && ip -n "$name-r" addr add 198.51.100.1/24 dev "$outer"
    done
    ip -n "$name-c" addr add 198.51.100.2/24 dev eth0
    for number in $(seq 0 $((ecmp_sources - 1))); do
        ip -n "$name-c" addr add "198.51.100.$((10 + number))/24" dev eth0
    done
    ip -n "$name-c" route add default via 198.51.100.1
    for number in 50 51 52; do ip -n "$name-s" addr add "192.0.2.$number/24" dev eth0; done
    setsid ip netns exec "$name-s" python3 -c "$shared_servers_program" </dev/null >/dev/null 2>&1 &
    start_bird "$name-r" "/tmp/$name/r" "router id 192.0.2.254;
protocol device { }
protocol kernel { merge paths on; ipv4 { import none; export all; }; }
$ecmp_bfd
template bgp node { local 192.0.2.254 as 65000; $ecmp_bgp_timers ipv4 { import all; export none; }; }
protocol bgp n1 from node { neighbor 192.0.2.1 as 65001; }
protocol bgp n2 from node { neighbor 192.0.2.2 as 65001; }
protocol bgp n3 from node { neighbor 192.0.2.3 as 65001; }"
    for number in 1 2 3; do
        ip -n "$name-n$number" addr add "192.0.2.$number/24" dev eth0
        ip -n "$name-n$number" addr add "$ecmp_vip/32" dev lo
        ip -n "$name-n$number" route add default via 192.0.2.254
        setsid ip netns exec "$name-n$number" python3 -c "$echo_program" </dev/null >/dev/null 2>&1 &
        start_bird "$name-n$number" "/tmp/$name/n$number" "router id 192.0.2.$number;
protocol device { }
protocol kernel penha { kernel table 201; learn; ipv4 { import all; export none; }; }
$ecmp_bfd
protocol bgp uplink {
    local 192.0.2.$number as 65001; neighbor 192.0.2.254 as 65000; $ecmp_bgp_timers
    ipv4 { import none; export where proto = \"penha\"; };
}"
    done
    disown -a
    # Each node's permanent neighbour entries for its peers: the second chance reads only these.
    local hardware other
    for number in 1 2 3; do
        hardware=$(ip netns exec "$name-n$number" cat /sys/class/net/eth0/address)
        for other in 1 2 3; do
            [ "$other" = "$number" ] && continue
            ip -n "$name-n$other" neigh replace "192.0.2.$number" lladdr "$hardware" nud permanent dev eth0
        done
    done
    for number in 1 2 3; do
        for _ in $(seq 50); do
            ip netns exec "$name-n$number" python3 -c 'import socket; socket.create_connection(("127.0.0.1", 9000), 1)' \
                2>/dev/null && break
            sleep 0.1
        done
    done
    for _ in $(seq 50); do
        ip netns exec "$name-s" python3 -c 'import socket; socket.create_connection(("192.0.2.52", 9000), 1)' \
            2>/dev/null && break
        sleep 0.1
    done
}

ecmp_down() {
    local name=$1 part
    for part in c n1 n2 n3 s r; do
        if namespace_exists "$name-$part"; then
            ip netns pids "$name-$part" | xargs -r kill -9 2>/dev/null || true
            ip netns del "$name-$part"
        fi
    done
    rm -rf "/tmp/$name"
}

ecmp_penha_binary() {
    if [ -n "${PENHA:-}" ]; then
        echo "$PENHA"
    else
        (cd "$(dirname "$0")/../.." && swift build >&2 && echo "$(swift build --show-bin-path)/penha")
    fi
}

ecmp_up() {
    local name=$1 second_chance=${2:-on} penha number
    penha=$(ecmp_penha_binary)
    # A lab that did not come up is deleted; one that did stays until ecmp-down.
    trap 'ecmp_down '"$name" EXIT
    ecmp_build "$name"
    for number in 1 2 3; do start_ecmp_penha "$name" "$number" "$second_chance" "$penha" >/dev/null; done
    disown -a
    ecmp_wait_nexthops "$name" 3 30
    trap - EXIT
    echo "the router routes $ecmp_vip over: $(ecmp_nexthops "$name" | tr '\n' ' ')"
    echo "try: ip netns exec $name-c python3 -c 'import socket; c = socket.create_connection((\"$ecmp_vip\", 80)); c.sendall(b\"hi\\n\"); print(c.recv(9))'"
}

# The client's load: STREAMS long-lived connections, each sending a checked line every 100 ms
# or so and reading it back byte for byte, for SECONDS (at most 60); beside them a new
# connection every 5 ms (one at a time, each given 200 ms to connect and echo). Sources cycle
# through 198.51.100.10 on. Prints "connected" once the streams are open, then a summary:
#   streams ALIVE RESETS OTHER BYTES
#   new ATTEMPTS FAILED FAILURE_WINDOW_MS
# and up to 5 lines saying why and when connections broke.
load_program='
import hashlib, selectors, socket, sys, threading, time
address, streams, seconds, sources = sys.argv[1], int(sys.argv[2]), min(float(sys.argv[3]), 60.0), int(sys.argv[4])
def source(index):
    return ("198.51.100.%d" % (10 + index % sources), 0)
connections = [socket.create_connection((address, 80), 2, source(index)) for index in range(streams)]
for connection in connections:
    connection.settimeout(3)
print("connected", flush=True)
start = time.monotonic()
# The failure window: from the start of the first failed new connection to the end of the
# last (successes in between are new connections the router sent to a live node).
attempts, failed, first_failure, last_failure_end, why = 0, 0, None, None, []
def probe():
    global attempts, failed, first_failure, last_failure_end
    slot = 0
    while time.monotonic() - start < seconds:
        wait = start + slot * 0.005 - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        began = time.monotonic()
        try:
            with socket.create_connection((address, 80), 0.2, source(attempts)) as connection:
                connection.settimeout(0.2)
                connection.sendall(b"ping\n")
                if connection.recv(16) != b"ping\n":
                    raise OSError("bad echo")
        except OSError as error:
            failed += 1
            first_failure = began if first_failure is None else first_failure
            last_failure_end = time.monotonic()
            if len(why) < 5:
                why.append("new connection failed at %.2f s: %s" % (began - start, error))
        attempts += 1
        slot = max(slot + 1, int((time.monotonic() - start) / 0.005) + 1)
prober = threading.Thread(target=probe)
prober.start()
alive, checked, broken, resets = [True] * streams, 0, [], 0
def lose(index, error):
    global resets
    alive[index] = False
    resets += isinstance(error, ConnectionResetError)
    broken.append("stream %d broke at %.2f s: %s" % (index, time.monotonic() - start, error))
# Each round sends a line on every live connection, then reads the echoes as they come, for
# at most 3 s: a dead node'"'"'s connections cost one wait together, not one each.
number = 0
while time.monotonic() - start < seconds:
    expected, received, poller = {}, {}, selectors.DefaultSelector()
    for index, connection in enumerate(connections):
        if not alive[index]:
            continue
        line = b"%d %d " % (index, number) + hashlib.sha256(b"%d-%d" % (index, number)).hexdigest().encode() + b"\n"
        try:
            connection.sendall(line)
        except OSError as error:
            lose(index, error)
            continue
        expected[index], received[index] = line, b""
        poller.register(connection, selectors.EVENT_READ, index)
    deadline = time.monotonic() + 3
    while expected and time.monotonic() < deadline:
        for key, _ in poller.select(max(deadline - time.monotonic(), 0)):
            index = key.data
            try:
                chunk = connections[index].recv(len(expected[index]) - len(received[index]))
                if not chunk:
                    raise OSError("closed by the other end")
                received[index] += chunk
                if not expected[index].startswith(received[index]):
                    raise OSError("bytes differ")
            except OSError as error:
                lose(index, error)
            else:
                if received[index] != expected[index]:
                    continue
                checked += len(expected[index])
            poller.unregister(connections[index])
            del expected[index]
    for index in expected:
        lose(index, OSError("timed out"))
    poller.close()
    number += 1
    time.sleep(0.1)
prober.join()
window = 0 if first_failure is None else last_failure_end - first_failure
print("streams %d %d %d %d" % (sum(alive), resets, streams - sum(alive) - resets, checked))
print("new %d %d %.0f" % (attempts, failed, window * 1000))
print("\n".join(broken[:5] + why), flush=True)
'

# From the client: FLOWS connections held open at once; prints how many each node holds.
ecmp_spread() {
    local name=$1 flows=$2 penha=$3 number
    ecmp_build "$name"
    for number in 1 2 3; do start_ecmp_penha "$name" "$number" on "$penha" >/dev/null; done
    disown -a
    ecmp_wait_nexthops "$name" 3 30
    ip netns exec "$name-c" python3 -c '
import socket, sys, time
flows, sources = int(sys.argv[1]), int(sys.argv[2])
held = [socket.create_connection(("'"$ecmp_vip"'", 80), 5, ("198.51.100.%d" % (10 + index % sources), 0)) for index in range(flows)]
print("held", flush=True)
time.sleep(3)
' "$flows" "$ecmp_sources" >"/tmp/$name/spread" &
    local holder=$!
    for _ in $(seq 300); do
        grep -q held "/tmp/$name/spread" 2>/dev/null && break
        sleep 0.1
    done
    sleep 0.5
    local counts=()
    for number in 1 2 3; do
        counts+=("$(ip netns exec "$name-n$number" ss -Htn state established '( sport = :80 )' | wc -l)")
    done
    wait "$holder" || true
    echo "${counts[*]}"
    ecmp_down "$name"
}

# One trial: CHANGE (leave, join or kill) under load in a fresh lab NAME, second chance
# SECOND_CHANCE (on or off). Prints the load's summary.
ecmp_trial() {
    local name=$1 change=$2 second_chance=$3 streams=$4 penha=$5 number pids=()
    ecmp_build "$name"
    local first=3
    [ "$change" = join ] && first=2
    for number in $(seq "$first"); do pids+=("$(start_ecmp_penha "$name" "$number" "$second_chance" "$penha")"); done
    disown -a
    ecmp_wait_nexthops "$name" "$first" 30
    if [ "$second_chance" = on ]; then
        for number in $(seq "$first"); do
            for _ in $(seq 50); do
                grep -q "go on to 2 peers" "/tmp/$name/n$number/penha.log" 2>/dev/null && break
                sleep 0.1
            done
        done
    fi
    ip netns exec "$name-c" python3 -c "$load_program" "$ecmp_vip" "$streams" 10 "$ecmp_sources" >"/tmp/$name/load" 2>&1 &
    local load=$!
    for _ in $(seq 600); do
        grep -qs connected "/tmp/$name/load" && break
        kill -0 "$load" 2>/dev/null || break
        sleep 0.1
    done
    sleep 3
    case "$change" in
        leave) kill -TERM "${pids[2]}" ;;
        join) start_ecmp_penha "$name" 3 "$second_chance" "$penha" >/dev/null; disown -a ;;
        kill)
            # A dead host: nothing of it answers (a killed penha alone would leave a kernel that
            # resets its connections, and a BIRD whose session ends at once).
            # The link first: killed first, its kernel would close penha's connections.
            ip -n "$name-n3" link set eth0 down
            ip netns pids "$name-n3" | xargs -r kill -9 ;;
    esac
    # The load ends by itself (10 s, its connections time out in 3 s); bounded anyway.
    for _ in $(seq 300); do
        kill -0 "$load" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$load" 2>/dev/null || true
    local nexthops
    nexthops=$(ecmp_nexthops "$name" | wc -l)
    awk -v change="$change" -v second_chance="$second_chance" -v streams="$streams" -v nexthops="$nexthops" '
        $1 == "streams" && NF == 5 { alive = $2; resets = $3; lost = $4; bytes = $5 }
        $1 == "new" && NF == 4 { attempts = $2; failed = $3; window = $4 }
        /broke|failed at|Error|rror:/ { why = why "    " $0 "\n" }
        END {
            printf "%-5s second_chance %-3s: streams alive %s of %d (reset %s, otherwise lost %s, %s bytes checked); new connections %s, failed %s within %s ms; router nexthops after %s\n",
                change, second_chance, alive, streams, resets, lost, bytes, attempts, failed, window, nexthops
            printf "%s", why
        }' "/tmp/$name/load"
    ecmp_down "$name"
}

# From the client: one connection per source address (the first CLIENTS of 198.51.100.10-209),
# one at a time, each given 2 s; prints "SOURCE SERVER NODE" per client ("none none" for a failure).
affinity_program='
import socket, sys
address, clients = sys.argv[1], int(sys.argv[2])
for index in range(clients):
    source = "198.51.100.%d" % (10 + index)
    try:
        with socket.create_connection((address, 80), 2, (source, 0)) as connection:
            connection.settimeout(2)
            answer = connection.recv(64).decode().split()
        print(source, *(answer if len(answer) == 2 else ["none", "none"]))
    except OSError:
        print(source, "none", "none")
'

# One affinity trial in a fresh lab NAME: CLIENTS clients connect once, then CHANGE (none,
# leave, join or kill, as in ecmp_trial, once the router has followed), then once more; the nodes
# choose among the shared servers by SELECTION. Prints the shares that reached the same
# server and the same node.
ecmp_affinity_trial() {
    local name=$1 change=$2 selection=$3 clients=$4 penha=$5 number pids=() first=3 after=3
    ecmp_build "$name"
    [ "$change" = join ] && first=2
    case "$change" in leave | kill) after=2 ;; esac
    for number in $(seq "$first"); do pids+=("$(start_ecmp_penha "$name" "$number" on "$penha" "$selection")"); done
    disown -a
    ecmp_wait_nexthops "$name" "$first" 30
    # The sync's sessions connect, and its updates and full copies travel, in the background:
    # 2 s for them before each pass (without the wait, 17-24% of the clients moved).
    [ "$selection" = sync ] && sleep 2
    ip netns exec "$name-c" python3 -c "$affinity_program" "$ecmp_vip" "$clients" >"/tmp/$name/before"
    case "$change" in
        none) ;;
        leave) kill -TERM "${pids[2]}" ;;
        join) start_ecmp_penha "$name" 3 on "$penha" "$selection" >/dev/null; disown -a ;;
        kill)
            ip -n "$name-n3" link set eth0 down
            ip netns pids "$name-n3" | xargs -r kill -9 ;;
    esac
    ecmp_wait_nexthops "$name" "$after" 30
    [ "$selection" = sync ] && sleep 2
    ip netns exec "$name-c" python3 -c "$affinity_program" "$ecmp_vip" "$clients" >"/tmp/$name/after"
    awk -v change="$change" -v selection="$selection" '
        NR == FNR { server[$1] = $2; node[$1] = $3; next }
        { clients++; failed += $2 == "none"; same_server += $2 != "none" && $2 == server[$1]; same_node += $3 != "none" && $3 == node[$1] }
        END {
            printf "%-5s %-10s: %d clients, same server after %d (%.1f%%), same node %d (%.1f%%), failed %d\n",
                change, selection, clients, same_server, 100 * same_server / clients, same_node, 100 * same_node / clients, failed
        }' "/tmp/$name/before" "/tmp/$name/after"
    ecmp_down "$name"
}

ecmp_measure() {
    local streams=${1:-1000} flows=${2:-3000} penha change second_chance trial=0 name=penha-ecmp-$$
    [ "$streams" -ge 1 ] && [ "$streams" -le 2000 ] || { echo "ecmp-measure: STREAMS must be 1 to 2000" >&2; exit 2; }
    [ "$flows" -ge 3 ] && [ "$flows" -le 5000 ] || { echo "ecmp-measure: FLOWS must be 3 to 5000" >&2; exit 2; }
    penha=$(ecmp_penha_binary)
    # Every connection holds a descriptor in the client and two in penha.
    ulimit -n "$(ulimit -Hn)"
    trap 'for trial in $(seq 0 18); do ecmp_down '"$name"'-$trial; done' EXIT
    echo "spread of $flows connections over nodes 1 2 3: $(ecmp_spread "$name-0" "$flows" "$penha" </dev/null | tail -n 1)"
    for change in leave join kill; do
        for second_chance in on off; do
            trial=$((trial + 1))
            # One lab per trial, in a subshell: its own veth names (a deleted namespace's
            # devices go away asynchronously).
            (ecmp_trial "$name-$trial" "$change" "$second_chance" "$streams" "$penha" </dev/null) || true
        done
    done
    echo "returning clients over the shared servers 192.0.2.50-52 (second_chance on):"
    for change in none leave join kill; do
        for selection in maglev roundrobin sync; do
            trial=$((trial + 1))
            (ecmp_affinity_trial "$name-$trial" "$change" "$selection" "$ecmp_sources" "$penha" </dev/null) || true
        done
    done
}

# The switchover lab (issue 20): on each node a server on 127.0.0.1:9000 that echoes what it
# gets, or, when a connection starts with "GET ", answers each HTTP/1.1 request on it (keep-
# alive) with its path and a newline as the body.
switchover_backend_program='
import selectors, socket
selector = selectors.DefaultSelector()
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", 9000))
server.listen(4096)
server.setblocking(False)
selector.register(server, selectors.EVENT_READ, None)
def close(connection):
    selector.unregister(connection)
    connection.close()
while True:
    for key, _ in selector.select():
        if key.data is None:
            try:
                connection, _ = server.accept()
            except OSError:
                continue
            connection.setblocking(False)
            # [unanswered request bytes, HTTP or not (None: nothing read yet)]
            selector.register(connection, selectors.EVENT_READ, [b"", None])
            continue
        connection, state = key.fileobj, key.data
        try:
            data = connection.recv(65536)
            if not data:
                close(connection)
                continue
            if state[1] is None:
                state[1] = data.startswith(b"GET ")
            if not state[1]:
                connection.sendall(data)
                continue
            state[0] += data
            while b"\r\n\r\n" in state[0]:
                head, state[0] = state[0].split(b"\r\n\r\n", 1)
                body = head.split(b" ", 2)[1] + b"\n"
                connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            if len(state[0]) > 65536:
                close(connection)
        except OSError:
            close(connection)
'

# The client's load for the switchover lab, to ADDRESS:PORT until the file STOP exists (at
# most SECONDS, 600 at most): STREAMS long-lived connections, each sending a checked line
# (80 bytes) every 500 ms and reading it back byte for byte; SESSIONS keep-alive HTTP/1.1
# sessions, each sending a request every 100 ms and checking the whole answer; a reply has
# 2 s. Beside them, in a process of its own (so that the others cannot delay it), a new
# connection every 5 ms, each given 10 ms to connect, then closed. Prints "connected" once
# the connections are open; at the end:
#   streams ALIVE RESETS OTHER BYTES_CHECKED
#   http ALIVE RESETS OTHER ANSWERS_CHECKED BYTES_CHECKED
#   probes ATTEMPTS FAILED LONGEST_GAP_MS (between two successful connects)
# then up to 3 lines per class saying why and when connections broke, up to 5 windows of
# failed probes, and "closed" once it has closed its connections.
switchover_load_program='
import errno, hashlib, heapq, os, select, selectors, socket, sys, time
address, port, streams, sessions, stop = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
limit = min(float(sys.argv[6]), 600.0)
STREAM_PERIOD, SESSION_PERIOD, ANSWER_WITHIN, PROBE_PERIOD, PROBE_TIMEOUT = 0.5, 0.1, 2.0, 0.005, 0.010
def over(start):
    return os.path.exists(stop) or time.monotonic() - start > limit
def probe(report, start):
    attempts, failed, longest, last, why, slot = 0, 0, 0.0, start, [], 0
    poller = select.poll()
    while not over(start):
        wait = start + slot * PROBE_PERIOD - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        began = time.monotonic()
        attempt = socket.socket()
        attempt.setblocking(False)
        try:
            code = attempt.connect_ex((address, port))
            if code not in (0, errno.EINPROGRESS):
                raise OSError(code, os.strerror(code))
            poller.register(attempt, select.POLLOUT)
            ready = poller.poll(PROBE_TIMEOUT * 1000)
            poller.unregister(attempt)
            if not ready:
                raise OSError("no connection within 10 ms")
            code = attempt.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                raise OSError(code, os.strerror(code))
            longest, last = max(longest, began - last), began
        except OSError as error:
            failed += 1
            # Failures within 100 ms of each other make one window.
            moment = began - start
            if why and moment - why[-1][1] < 0.1:
                why[-1][1], why[-1][2] = moment, why[-1][2] + 1
            else:
                why.append([moment, moment, 1, error])
        finally:
            attempt.close()
        attempts += 1
        # A slow attempt skips the slots it overran: one at a time, one per period at most.
        slot = max(slot + 1, int((time.monotonic() - start) / PROBE_PERIOD) + 1)
    longest = max(longest, time.monotonic() - last)
    windows = ["probes failed %d from %.2f s to %.2f s: %s\n" % (count, first, last, error) for first, last, count, error in why[:5]]
    os.write(report, ("probes %d %d %.0f\n" % (attempts, failed, longest * 1000) + "".join(windows)).encode())
classes = ["streams"] * streams + ["http"] * sessions
connections = [socket.create_connection((address, port), 2) for _ in classes]
for connection in connections:
    connection.setblocking(False)
print("connected", flush=True)
start = time.monotonic()
reading, writing = os.pipe()
prober = os.fork()
if prober == 0:
    os.close(reading)
    probe(writing, start)
    os._exit(0)
os.close(writing)
def message(index, number):
    digest = hashlib.sha256(b"%d-%d" % (index, number)).hexdigest().encode()
    if classes[index] == "streams":
        line = b"%d %d %s\n" % (index, number, digest[:64])
        return line, line
    path = b"/%d/%d/%s" % (index, number, digest[:32])
    body = path + b"\n"
    return (b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path, address.encode()),
            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
count = len(classes)
alive, numbers, expected, received, sent_at = [True] * count, [0] * count, [None] * count, [b""] * count, [0.0] * count
resets, other, checked, answers, why = {"streams": 0, "http": 0}, {"streams": 0, "http": 0}, {"streams": 0, "http": 0}, {"streams": 0, "http": 0}, {"streams": [], "http": []}
def lose(index, error):
    kind = classes[index]
    alive[index] = False
    if isinstance(error, ConnectionResetError):
        resets[kind] += 1
    else:
        other[kind] += 1
    if len(why[kind]) < 3:
        why[kind].append("%s %d broke at %.2f s: %s" % (kind, index, time.monotonic() - start, error))
    try:
        selector.unregister(connections[index])
    except (KeyError, ValueError):
        pass
selector = selectors.DefaultSelector()
# Spread over the period: every connection sends at its own moment.
due = [(start + (index % 50) * (STREAM_PERIOD if classes[index] == "streams" else SESSION_PERIOD) / 50, index) for index in range(count)]
heapq.heapify(due)
for index, connection in enumerate(connections):
    selector.register(connection, selectors.EVENT_READ, index)
next_look = start
while True:
    now = time.monotonic()
    if now >= next_look:
        next_look = now + 0.05
        if over(start):
            break
        for index in range(count):
            if alive[index] and expected[index] is not None and now - sent_at[index] > ANSWER_WITHIN:
                lose(index, OSError("no answer within 2 s"))
    while due and due[0][0] <= now:
        _, index = heapq.heappop(due)
        if not alive[index]:
            continue
        request, expected[index] = message(index, numbers[index])
        received[index], sent_at[index] = b"", now
        try:
            if connections[index].send(request) != len(request):
                raise OSError("short send")
        except OSError as error:
            lose(index, error)
    timeout = min(next_look, due[0][0] if due else next_look) - time.monotonic()
    for key, _ in selector.select(max(timeout, 0)):
        index = key.data
        if not alive[index]:
            continue
        try:
            chunk = connections[index].recv(4096)
            if not chunk:
                raise OSError("closed by the other end")
            if expected[index] is None:
                raise OSError("bytes nobody asked for")
            received[index] += chunk
            if not expected[index].startswith(received[index]):
                raise OSError("bytes differ")
        except OSError as error:
            lose(index, error)
            continue
        if received[index] == expected[index]:
            kind = classes[index]
            checked[kind] += len(expected[index])
            answers[kind] += 1
            expected[index] = None
            numbers[index] += 1
            period = STREAM_PERIOD if kind == "streams" else SESSION_PERIOD
            heapq.heappush(due, (sent_at[index] + period, index))
probes = os.fdopen(reading).read()
os.waitpid(prober, 0)
for kind in ("streams", "http"):
    alive_count = sum(1 for index in range(count) if classes[index] == kind and alive[index])
    extra = " %d" % answers[kind] if kind == "http" else ""
    print("%s %d %d %d%s %d" % (kind, alive_count, resets[kind], other[kind], extra, checked[kind]))
print(probes, end="")
for kind in ("streams", "http"):
    print("".join(w + "\n" for w in why[kind]), end="")
for connection in connections:
    connection.close()
print("closed", flush=True)
'

# Whether node NODE of lab NAME holds the VIP on eth0. (Not `ip | grep -q`: with pipefail,
# ip killed by SIGPIPE when grep stops early would make a held VIP look missing.)
holds_vip() {
    [[ "$(ip -n "$1-$2" -o addr show dev eth0)" == *" 192.0.2.10/24 "* ]]
}

# Seconds since the epoch, to the millisecond.
now_seconds() {
    date +%s.%3N
}

# Whether process PID is running: not gone and not a zombie. The nodes' processes are
# reparented (started in command substitutions, or by penha upgrade), and the init that
# adopts them may reap them seconds later: kill -0 would count that time as the exit's.
process_running() {
    local state
    # (An empty PID would read /proc//stat, the system's.)
    [[ "$1" =~ ^[0-9]+$ ]] || return 1
    state=$(awk '{ sub(/^.*\) /, ""); print $1 }' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$state" ] && [ "$state" != Z ]
}

# The local step REPEATS times on node a of lab NAME, which serves the VIP, under the load:
# HOW is "restart" (penha's SIGTERM, wait for the exit as systemd does, at most 30 s, start
# again with START..., wait until it is master again), "upgrade" (`penha upgrade -C SOCKET`
# in the node, as an operator runs it outside systemd: the running penha's arguments plus
# --takeover, in a new process that takes the listener, the connections and the VRRP state;
# its exit status is counted, and the old process is watched every 20 ms until it is gone,
# 5 s at most after penha upgrade returned; then 0.5 s) or "haproxy-sf" (a new HAProxy takes
# the old one's listeners; -sf; the old one watched for 5 s). Prints "STEPS GONE_IN_1S
# LONGEST_S LINGERING LEFT FAILED": how many old processes were gone within 1 s of the
# handover (penha's restart: the VIP leaving node a; HAProxy: the new process serving;
# penha's upgrade: penha upgrade starting, so an upper bound that includes the new process's
# start: the handover itself takes tens of milliseconds, less than watching it from here
# with ss would), the longest one that exited while watched took, how many were still running
# when the watch ended, how many are still running at the end and how many upgrades exited
# non-zero (the old process serves on; their reasons, the first three, go to the file
# REASONS).
local_steps() {
    local name=$1 how=$2 repeats=$3 old=$4 reasons=$5 step olds=() took=() failed=0
    shift 5
    for step in $(seq "$repeats"); do
        local handover="" exited=""
        case "$how" in
            restart)
                kill -TERM "$old"
                for _ in $(seq 600); do
                    [ -z "$handover" ] && ! holds_vip "$name" a && handover=$(now_seconds)
                    process_running "$old" || { exited=$(now_seconds); break; }
                    sleep 0.05
                done
                olds+=("$old")
                old=$("$@")
                for _ in $(seq 200); do holds_vip "$name" a && break; sleep 0.05; done
                sleep 0.5
                ;;
            upgrade)
                local log="/tmp/$name-a.log" logged status upgrader
                logged=$(stat -c %s "$log")
                handover=$(now_seconds)
                # Its stderr (and so the new process's log) to the node's log: a pipe to this
                # shell would be held open by the new process.
                ip netns exec "$name-a" "$1" upgrade -C "/tmp/$name-a.sock" >"/tmp/$name/upgrade" 2>>"$log" &
                upgrader=$!
                # Bounded: penha upgrade waits at most 5 s for each step of the handover and
                # 5 s for the old process to exit.
                for _ in $(seq 1000); do
                    process_running "$old" || { exited=$(now_seconds); break; }
                    kill -0 "$upgrader" 2>/dev/null || break
                    sleep 0.02
                done
                status=0
                wait "$upgrader" || status=$?
                if [ "$status" -ne 0 ]; then
                    failed=$((failed + 1))
                    [ "$failed" -le 3 ] && echo "upgrade $step failed (exit $status): $(tail -c +"$((logged + 1))" "$log" | tail -n 2 | tr '\n' ' ')" >>"$reasons"
                    sleep 0.5
                    continue
                fi
                # Exited after penha upgrade returned: watched on, 5 s at most.
                for _ in $(seq 100); do
                    [ -n "$exited" ] && break
                    process_running "$old" || { exited=$(now_seconds); break; }
                    sleep 0.05
                done
                olds+=("$old")
                old=$(awk '$1 == "upgraded:" { print $NF }' "/tmp/$name/upgrade")
                sleep 0.5
                ;;
            haproxy-sf)
                olds+=("$old")
                old=$(start_haproxy "$name" a "$old")
                handover=$(now_seconds)
                for _ in $(seq 100); do
                    process_running "${olds[-1]}" || { exited=$(now_seconds); break; }
                    sleep 0.05
                done
                ;;
        esac
        # Exited before the handover was seen: at the handover.
        took+=("${exited:+$exited-${handover:-$exited}}")
    done
    local left=0
    for step in "${olds[@]}"; do process_running "$step" && left=$((left + 1)); done
    printf '%s\n' "${took[@]}" | awk -v steps="$repeats" -v left="$left" -v failed="$failed" '
        $0 == "" && NR <= steps - failed { lingering++; next }
        $0 == "" { next }
        { split($0, times, "-"); took = times[1] - times[2]; took = (took < 0 ? 0 : took)
          gone += (took <= 1); longest = (took > longest ? took : longest) }
        END { printf "%d %d %.2f %d %d %d\n", steps, gone, longest, lingering, left, failed }'
}

# One trial in a fresh lab NAME: SETUP (penha: a penha pair as before issue 20; penha-sc: the
# same with second_chance and drain 20; keepalived: keepalived moves the VIP, HAProxy serves
# it), node a (priority 200) master, node b (100) backup, advert 100 ms; the load of
# switchover_load_program through the VIP; 3 s in, EVENT (sigterm: on the master; priority:
# the master's lowered to 50, so that b preempts; restart: the local step REPEATS times on
# the master, local_steps; upgrade: `penha upgrade` REPEATS times on the master, HAProxy's
# -sf as for restart, which is how it runs a new binary); the load ends 12 s after the event
# (4 s after the last step).
# Prints one line of figures.
switchover_trial() {
    local setup=$1 event=$2 name=$3 penha=$4 repeats=$5 directory="/tmp/$3" node
    mkdir -p "$directory"
    up "$name"
    # The probes alone make up to 120,000 connections: ports enough, and reusable.
    ip netns exec "$name-c" sysctl -qw net.ipv4.tcp_tw_reuse=1 net.ipv4.ip_local_port_range="1024 65000"
    for node in a b; do
        setsid ip netns exec "$name-$node" python3 -c "$switchover_backend_program" </dev/null >/dev/null 2>&1 &
    done
    disown -a
    for node in a b; do
        for _ in $(seq 50); do
            ip netns exec "$name-$node" python3 -c 'import socket; socket.create_connection(("127.0.0.1", 9000), 1)' \
                2>/dev/null && break
            sleep 0.1
        done
    done
    local words_a="" words_b="" master keepalived_a start_a=()
    if [ "$setup" = penha-sc ]; then
        # Each node's permanent neighbour entry for its peer: the second chance reads only these.
        ip -n "$name-a" neigh replace 192.0.2.2 lladdr "$(ip netns exec "$name-b" cat /sys/class/net/eth0/address)" nud permanent dev eth0
        ip -n "$name-b" neigh replace 192.0.2.1 lladdr "$(ip netns exec "$name-a" cat /sys/class/net/eth0/address)" nud permanent dev eth0
        words_a="second_chance 192.0.2.2"
        words_b="second_chance 192.0.2.1"
    fi
    if [ "$setup" = keepalived ]; then
        read -r keepalived_a _ < <(start_keepalived "$name" a 200 "$penha" 0.1 haproxy)
        start_keepalived "$name" b 100 "$penha" 0.1 haproxy >/dev/null
        master=$(cat "/tmp/$name-a/haproxy.pid")
    else
        start_a=(start_penha "$name" a 200 "$penha" 100ms 127.0.0.1:9000 "$words_a" 20)
        master=$("${start_a[@]}")
        start_penha "$name" b 100 "$penha" 100ms 127.0.0.1:9000 "$words_b" 20 >/dev/null
    fi
    disown -a
    for _ in $(seq 100); do holds_vip "$name" a && break; sleep 0.1; done
    holds_vip "$name" a || {
        echo "$setup $event: node a did not become master; IPv4 on a: $(ip -4 -n "$name-a" -o addr show dev eth0 | awk '{ print $4 }' | xargs)," \
            "on b: $(ip -4 -n "$name-b" -o addr show dev eth0 | awk '{ print $4 }' | xargs); $(tail -n 3 "/tmp/$name-a.log" "/tmp/$name-a/log" 2>/dev/null)" >&2
        return 1
    }
    # The backup reads its peer's neighbour entry once a second; the announcements settle.
    sleep 1.5
    ip netns exec "$name-c" python3 -c "$switchover_load_program" 192.0.2.10 80 200 200 "$directory/stop" 600 \
        >"$directory/load" 2>&1 &
    local load=$!
    for _ in $(seq 300); do
        grep -qs connected "$directory/load" && break
        kill -0 "$load" 2>/dev/null || break
        sleep 0.1
    done
    grep -qs connected "$directory/load" || { echo "$setup $event: the load did not connect: $(head -c 300 "$directory/load")" >&2; return 1; }
    sleep 3
    local extra=""
    : >"$directory/steps"
    case "$setup-$event" in
        keepalived-sigterm)
            # The master node stops: keepalived resigns, HAProxy finishes its connections (soft stop).
            kill -TERM "$keepalived_a"
            kill -USR1 "$master" ;;
        *-sigterm) kill -TERM "$master" ;;
        keepalived-priority)
            sed -i 's/priority 200/priority 50/' "/tmp/$name-a/keepalived.conf"
            kill -HUP "$keepalived_a" ;;
        *-priority) "$penha" ctl "/tmp/$name-a.sock" $(penha_vrrp_line 50 100ms "$words_a") >/dev/null ;;
        keepalived-restart | keepalived-upgrade) extra=$(local_steps "$name" haproxy-sf "$repeats" "$master" "$directory/steps") ;;
        *-restart) extra=$(local_steps "$name" restart "$repeats" "$master" "$directory/steps" "${start_a[@]}") ;;
        *-upgrade) extra=$(local_steps "$name" upgrade "$repeats" "$master" "$directory/steps" "$penha") ;;
    esac
    case "$event" in restart | upgrade) sleep 4 ;; *) sleep 12 ;; esac
    touch "$directory/stop"
    for _ in $(seq 200); do
        kill -0 "$load" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$load" 2>/dev/null || true
    local ended exited=""
    ended=$(now_seconds)
    if [ "$event" = sigterm ]; then
        if ! process_running "$master"; then
            exited="old master gone before the load ended"
        else
            for _ in $(seq 100); do
                process_running "$master" || { exited=$(awk "BEGIN { printf \"old master exited %.1f s after the load ended\", $(now_seconds) - $ended }"); break; }
                sleep 0.05
            done
            [ -n "$exited" ] || exited="old master still running 5 s after the load ended"
        fi
    fi
    # What the upgrades moved (node a's log: "[Balancer] handed over to pid N: the listener
    # and N connections") and whether node b ever took the VIP meanwhile.
    local moved="" b_master=""
    if [ "$event" = upgrade ] && [ "$setup" != keepalived ]; then
        # (The successor repeats the line after "took over from pid N: ".)
        moved=$({ grep -o '\] handed over to pid [0-9]*: the listener and [0-9]* connections' "/tmp/$name-a.log" || true; } | awk '
            { count++; low = (count == 1 || $10 < low ? $10 : low); high = ($10 > high ? $10 : high) }
            END { printf "%d handovers", count; if (count) printf " of %d-%d connections", low, high }')
        b_master=$(grep -c -- '-> MASTER' "/tmp/$name-b.log" || true)
    fi
    awk -v setup="$setup" -v event="$event" -v extra="$extra" -v exited="$exited" -v moved="$moved" -v b_master="$b_master" '
        $1 == "streams" && NF == 5 { streams = sprintf("streams alive %d reset %d other %d bytes %d", $2, $3, $4, $5) }
        $1 == "http" && NF == 6 { http = sprintf("http alive %d reset %d other %d answers %d bytes %d", $2, $3, $4, $5, $6) }
        $1 == "probes" && NF == 4 { probes = sprintf("probes %d failed %d longest gap %d ms", $2, $3, $4) }
        / broke at |failed |rror/ { why = why "    " $0 "\n" }
        END {
            split(extra, steps, " ")
            if (extra != "") exited = sprintf("%d steps: old process gone within 1 s of the handover %d, longest %s s, still running when the watch ended %d, at the end %d", steps[1], steps[2], steps[3], steps[4], steps[5])
            if (moved != "") exited = exited sprintf(", upgrades failed %d; %s; node b master %d times", steps[6], moved, b_master)
            printf "%-10s %-8s: %s; %s; %s%s\n", setup, event, streams, http, probes, exited == "" ? "" : "; " exited
            printf "%s", why
        }' "$directory/load" "$directory/steps"
    down "$name"
    rm -rf "$directory" "/tmp/$name-a" "/tmp/$name-b" /tmp/"$name"-?.sock /tmp/"$name"-?.log
}

# The trial running now, for the exit trap.
switchover_running=""

# Ends process PID and its descendants: a trial's command substitutions (local_steps) are
# subshells of their own that would go on after it. Each process's children are listed
# before it ends (an orphan's parent is no longer it) and end after it (so it starts no more).
end_tree() {
    local children child
    children=$(ps -o pid= --ppid "$1" || true)
    kill "$1" 2>/dev/null || true
    for child in $children; do end_tree "$child"; done
}

switchover_measure() {
    local trials=${1:-3} repeats=${2:-10} penha=${PENHA:-} name=penha-sw-$$ trial setup event number=0 failed=0
    local events=(${EVENTS:-sigterm priority restart upgrade}) setups=(${SETUPS:-penha penha-sc keepalived})
    [ "$trials" -ge 1 ] && [ "$trials" -le 10 ] || { echo "switchover-measure: TRIALS must be 1 to 10" >&2; exit 2; }
    [ "$repeats" -ge 1 ] && [ "$repeats" -le 50 ] || { echo "switchover-measure: REPEATS must be 1 to 50" >&2; exit 2; }
    for event in "${events[@]}"; do
        [[ " sigterm priority restart upgrade " == *" $event "* ]] || { echo "switchover-measure: no event '$event' (sigterm, priority, restart, upgrade)" >&2; exit 2; }
    done
    for setup in "${setups[@]}"; do
        [[ " penha penha-sc keepalived " == *" $setup "* ]] || { echo "switchover-measure: no setup '$setup' (penha, penha-sc, keepalived)" >&2; exit 2; }
    done
    if [ -z "$penha" ]; then
        cd "$(dirname "$0")/../.."
        swift build -c release 2>&1 | tail -n 1
        penha="$(swift build -c release --show-bin-path)/penha"
    fi
    # The running trial first, so that it starts nothing more; then every lab. (Values, not
    # this function's variables: the trap may run after it has returned.)
    trap '[ -n "$switchover_running" ] && end_tree "$switchover_running"
          for number in $(seq '"$((trials * ${#events[@]} * ${#setups[@]}))"'); do down '"$name"'-$number; done; rm -rf /tmp/'"$name"'-*' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    ulimit -n "$(ulimit -Hn)"
    echo "node a priority 200 (master), node b 100, advert 100 ms; 200 streams, 200 HTTP sessions, a probe every 5 ms (10 ms to connect); $repeats local steps"
    for trial in $(seq "$trials"); do
        for event in "${events[@]}"; do
            for setup in "${setups[@]}"; do
                number=$((number + 1))
                # One lab per trial, in a subshell: its own veth names (a deleted namespace's
                # devices go away asynchronously). In the background, so that a signal to this
                # shell ends the wait at once.
                (switchover_trial "$setup" "$event" "$name-$number" "$penha" "$repeats" </dev/null) &
                switchover_running=$!
                wait "$switchover_running" || failed=$((failed + 1))
                switchover_running=""
                # A trial that failed left its lab.
                down "$name-$number"
                rm -rf "/tmp/$name-$number" /tmp/"$name-$number"-?*
                echo "  (trial $trial, load $(cut -d' ' -f1 /proc/loadavg))"
            done
        done
    done
    [ "$failed" -eq 0 ] || { echo "switchover-measure: $failed runs failed" >&2; exit 1; }
}

case "${1:-}" in
    up) up "$2" ;;
    down) down "$2" ;;
    ask) ask "$2" "$3" "$4" ;;
    probe) probe "$2" "$3" "$4" "$5" "${6:-20}" "${7:-200}" ;;
    fast) fast "${2:-5}" ;;
    demo) demo ;;
    ecmp-up) ecmp_up "$2" "${3:-on}" ;;
    ecmp-down) ecmp_down "$2" ;;
    ecmp-measure) ecmp_measure "${2:-1000}" "${3:-3000}" ;;
    switchover-measure) switchover_measure "${2:-3}" "${3:-10}" ;;
    *) echo "usage: $0 up NAME | down NAME | ask NAME ADDRESS PORT | probe NAME ADDRESS PORT SECONDS [PERIOD_MS [TIMEOUT_MS]] | fast [TRIALS] | demo | ecmp-up NAME [off] | ecmp-down NAME | ecmp-measure [STREAMS [FLOWS]] | switchover-measure [TRIALS [REPEATS]]" >&2; exit 2 ;;
esac
