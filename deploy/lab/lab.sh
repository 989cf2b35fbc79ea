#!/usr/bin/env bash
# A two-node penha pair, a client and backends in network namespaces on one machine.
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
#
# Addresses come from the documentation ranges only and exist only inside the namespaces:
#   node a 192.0.2.1 2001:db8::1, node b 192.0.2.2 2001:db8::2, client 192.0.2.100 2001:db8::100,
#   the VIP in the demo 192.0.2.10. Each node runs a backend on 127.0.0.1:8080 that answers
#   "node-a" or "node-b". Needs root (or CAP_NET_ADMIN), iproute2 and python3.
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

down() {
    local name=$1 node
    for node in a b c; do
        if ip netns list | grep -qw "$name-$node"; then
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

# One node of the keepalived pair: keepalived moves the VIP, a VRRP-less penha on every
# address serves it. Prints the process ids whose CPU counts (keepalived and its VRRP child).
start_keepalived() {
    local name=$1 node=$2 priority=$3 penha=$4 directory="/tmp/$1-$2"
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
    advert_int 0.01
    virtual_ipaddress {
        192.0.2.10/24
    }
}
CONF
    setsid ip netns exec "$name-$node" "$penha" -f -C "$directory/penha.sock" 0.0.0.0:80 127.0.0.1:8080 \
        </dev/null >/dev/null 2>&1 &
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

# One node of the penha pair. Prints penha's process id.
start_penha() {
    local name=$1 node=$2 priority=$3 penha=$4
    setsid ip netns exec "$name-$node" "$penha" -f -C "/tmp/$name-$node.sock" \
        -O "vrrp interface eth0 vrid 51 vip 192.0.2.10/24 advert 10ms priority $priority" \
        192.0.2.10:80 127.0.0.1:8080 </dev/null >/dev/null 2>"/tmp/$name-$node.log" &
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

case "${1:-}" in
    up) up "$2" ;;
    down) down "$2" ;;
    ask) ask "$2" "$3" "$4" ;;
    probe) probe "$2" "$3" "$4" "$5" "${6:-20}" "${7:-200}" ;;
    fast) fast "${2:-5}" ;;
    demo) demo ;;
    *) echo "usage: $0 up NAME | down NAME | ask NAME ADDRESS PORT | probe NAME ADDRESS PORT SECONDS [PERIOD_MS [TIMEOUT_MS]] | fast [TRIALS] | demo" >&2; exit 2 ;;
esac
