#!/usr/bin/env bash
# A two-node penha pair, a client and backends in network namespaces on one machine.
#
#   lab.sh up NAME     build the lab NAME (namespaces NAME-a, NAME-b: the nodes; NAME-c: the
#                      client, which also holds the bridge that joins them)
#   lab.sh down NAME   stop everything in it and delete it
#   lab.sh probe NAME ADDRESS PORT SECONDS
#                      from the client, a new connection every 20 ms for SECONDS (at most 60),
#                      each given 200 ms; prints "MILLISECONDS ANSWER" per attempt, "none" for a failure
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
    ip -n "$name-c" addr add 192.0.2.100/24 dev br0
    ip -n "$name-c" addr add 2001:db8::100/64 dev br0 nodad
    for node in a b; do
        # veth names are global until moved: keep them short and unique to this lab.
        local inner="v$$$node" outer="v$$${node}x"
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
    local name=$1 address=$2 port=$3 seconds=$4
    ip netns exec "$name-c" python3 -c '
import socket, sys, time
address, port, seconds = sys.argv[1], int(sys.argv[2]), min(float(sys.argv[3]), 60.0)
period, start, slot = 0.02, time.monotonic(), 0
while time.monotonic() - start < seconds:
    wait = start + slot * period - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    began = time.monotonic()
    try:
        with socket.create_connection((address, port), 0.2) as connection:
            connection.settimeout(0.2)
            answer = connection.recv(64).decode().strip() or "none"
    except OSError:
        answer = "none"
    print(f"{(began - start) * 1000:.0f} {answer}", flush=True)
    # A slow attempt skips the slots it overran: one connection at a time, every 20 ms at most.
    slot = max(slot + 1, int((time.monotonic() - start) / period) + 1)
' "$address" "$port" "$seconds"
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

case "${1:-}" in
    up) up "$2" ;;
    down) down "$2" ;;
    ask) ask "$2" "$3" "$4" ;;
    probe) probe "$2" "$3" "$4" "$5" ;;
    demo) demo ;;
    *) echo "usage: $0 up NAME | down NAME | ask NAME ADDRESS PORT | probe NAME ADDRESS PORT SECONDS | demo" >&2; exit 2 ;;
esac
