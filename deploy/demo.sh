#!/usr/bin/env bash
# Demo of penha's main job: two small web backends on loopback and penha in front of them,
# showing round-robin, client tracking and failover. Installs what it needs, builds,
# runs, and leaves nothing running. The packages it installs are also all that
# `swift build && swift test` needs, so the README's two commands set up a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

# The demo's, then what `swift test` needs too (TLS certificates, network namespaces,
# keepalived and pen's log tools to interoperate with, Prometheus' parser, strace to count
# system calls), as .ci/run installs them.
packages=(libssl-dev libnl-3-dev libnl-route-3-dev libbpf-dev python3 curl openssl iproute2 keepalived pen python3-prometheus-client strace nginx-light bird2)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    echo "==> installing ${missing[*]}"
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

echo "==> building penha"
swift build 2>&1 | tail -n 1
penha="$(swift build --show-bin-path)/penha"

workdir=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$workdir"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Waits (at most 5 s) until something answers on a port.
wait_for() {
    for _ in $(seq 50); do
        curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0
        sleep 0.1
    done
    echo "nothing answers on port $1" >&2
    return 1
}

start_backend() {
    local name=$1 port=$2
    mkdir -p "$workdir/$name"
    echo "hello from $name" > "$workdir/$name/index.html"
    python3 -m http.server "$port" --bind 127.0.0.1 --directory "$workdir/$name" >/dev/null 2>&1 &
    pids+=($!)
    wait_for "$port"
}

start_penha() {
    "$penha" -f -C "$workdir/penha.sock" "$@" 2>>"$workdir/penha.log" &
    penha_pid=$!
    pids+=($penha_pid)
    wait_for "$listen"
}

stop_penha() { kill "$penha_pid"; wait "$penha_pid" 2>/dev/null || true; }

ask() { curl -s --max-time 5 "$@" "http://127.0.0.1:$listen/" || echo "(no answer)"; }

alpha=$(free_port); beta=$(free_port); listen=$(free_port)
start_backend alpha "$alpha"
start_backend beta "$beta"

echo
echo "==> penha -r 127.0.0.1:$listen 127.0.0.1:$alpha 127.0.0.1:$beta   (round-robin, no tracking)"
start_penha -r "127.0.0.1:$listen" "127.0.0.1:$alpha" "127.0.0.1:$beta"
for i in 1 2 3 4; do echo "  request $i: $(ask)"; done
stop_penha

echo
echo "==> penha 127.0.0.1:$listen 127.0.0.1:$alpha 127.0.0.1:$beta   (pen's default: clients go back to their server)"
start_penha "127.0.0.1:$listen" "127.0.0.1:$alpha" "127.0.0.1:$beta"
for i in 1 2 3; do echo "  client 127.0.0.2, request $i: $(ask --interface 127.0.0.2)"; done
for i in 1 2 3; do echo "  client 127.0.0.3, request $i: $(ask --interface 127.0.0.3)"; done

victim=$(ask --interface 127.0.0.3 | awk '{print $3}')
echo
echo "==> backend $victim, the one client 127.0.0.3 uses, goes down: the client fails over,"
echo "    and $victim is blacklisted for 30 s"
victim_pid=${pids[0]}
[ "$victim" = beta ] && victim_pid=${pids[1]}
kill "$victim_pid"
wait "$victim_pid" 2>/dev/null || true
for i in 1 2 3; do echo "  client 127.0.0.3, request $i: $(ask --interface 127.0.0.3)"; done

echo
echo "==> penha status"
"$penha" status -C "$workdir/penha.sock" | sed 's/^/  /'
stop_penha

echo
echo "==> penha's log"
sed 's/^/  /' "$workdir/penha.log"
echo
echo "Done. penha is at $penha; 'penha --help' lists pen's options."
