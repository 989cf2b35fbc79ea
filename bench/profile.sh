#!/usr/bin/env bash
# Instruction profile of penha under a short fixed load (valgrind callgrind: repeatable counts
# on a noisy machine). Usage: bench/profile.sh PENHA_BINARY [close|ka] [SECONDS]
# Prints the top functions (self and inclusive) and leaves callgrind.out in $OUT (default /tmp).
# PROFILER=strace counts system calls instead (strace -c), to compare the kernel work per
# request with pen's: `MAXCONN=9900 PROFILER=strace bench/profile.sh /usr/bin/pen close 5`.
set -euo pipefail
PENHA=$1 KIND=${2:-close} SECONDS_=${3:-10} OUT=${OUT:-/tmp}
# pen takes the same options; its -x 0 would admit nobody, so MAXCONN=9900 for pen.
MAXCONN=${MAXCONN:-0}
BENCH=$(cd "$(dirname "$0")" && pwd)
LIB="python3 $BENCH/benchlib.py"
export PATH=$PATH:/usr/sbin
tool=valgrind
[ "${PROFILER:-callgrind}" = strace ] && tool=strace
command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install $tool)" >&2; exit 1; }

TMP=$(mktemp -d /tmp/penha-profile.XXXXXX)
PIDS=()
cleanup() {
    local pid i
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || continue
        for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    pgrep -af "$TMP" >&2 && echo "warning: processes left running" >&2
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

read -r P_B1 P_B2 P_LB <<<"$($LIB freeports 3)"
mkdir -p "$TMP/www"; head -c 100 /dev/zero | tr '\0' x >"$TMP/www/small"
chmod 755 "$TMP" "$TMP/www"; chmod 644 "$TMP/www/small"
for port in "$P_B1" "$P_B2"; do
    cat >"$TMP/nginx-$port.conf" <<EOF
daemon off; worker_processes 1; pid $TMP/nginx-$port.pid; error_log $TMP/nginx-$port.err warn;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 100000000;
       server { listen 127.0.0.1:$port; root $TMP/www; } }
EOF
    nginx -e "$TMP/nginx-$port.err" -c "$TMP/nginx-$port.conf" &
    PIDS+=($!)
done

# Debian 12's valgrind 3.19 cannot read the DWARF 5 that Swift emits ("unhandled dwarf2 abbrev
# form"); profile a copy without debug info (the symbol table keeps the function names).
strip --strip-debug -o "$TMP/penha" "$PENHA"
PENHA=$TMP/penha
balancer=("$PENHA" -f -r -x "$MAXCONN" -c 40000 -O tcp_nodelay "127.0.0.1:$P_LB" "127.0.0.1:$P_B1" "127.0.0.1:$P_B2")
# Both tools write their output when the balancer exits (on SIGTERM).
if [ "${PROFILER:-callgrind}" = strace ]; then
    strace -f -c -o "$OUT/strace.penha-$KIND" "${balancer[@]}" 2>"$TMP/valgrind.log" &
else
    valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out.penha-$KIND" "${balancer[@]}" \
        2>"$TMP/valgrind.log" &
fi
VG=$!
PIDS=("$VG" "${PIDS[@]}")
for i in $(seq 300); do curl -sf --max-time 2 -o /dev/null "http://127.0.0.1:$P_LB/small" && break; sleep 0.2; done

args=(-t1 -c10 -d"${SECONDS_}s" --timeout 10s)
[ "$KIND" = close ] && args+=(-H "Connection: close")
timeout $((SECONDS_ + 30)) wrk "${args[@]}" "http://127.0.0.1:$P_LB/small" | tee "$TMP/wrk.out" | grep -E 'requests in|Requests/sec'
# Under strace the balancer is strace's child; valgrind runs it in its own process.
pkill -TERM -P "$VG" 2>/dev/null || kill -TERM "$VG"
for i in $(seq 300); do kill -0 "$VG" 2>/dev/null || break; sleep 0.1; done
if [ "${PROFILER:-callgrind}" = strace ]; then
    cat "$OUT/strace.penha-$KIND"
    exit 0
fi
grep -E 'Collected' "$TMP/valgrind.log" || tail -5 "$TMP/valgrind.log"
echo "--- top by self instructions"
callgrind_annotate "$OUT/callgrind.out.penha-$KIND" 2>/dev/null | sed -n '1,40p' | cut -c1-200
echo "--- top by inclusive instructions"
callgrind_annotate --inclusive=yes "$OUT/callgrind.out.penha-$KIND" 2>/dev/null | sed -n '1,60p' | cut -c1-200
